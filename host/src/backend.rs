//! A breaker's storage as its driver sees it: every step is awaited, and a
//! blocking storage's steps are done when first polled.

use std::sync::Arc;

use crate::State;
use crate::storage::{AsyncStorage, Entry, Storage, StorageError, SwapResult};

/// The storage a breaker was built with.
#[derive(Clone)]
pub(crate) enum Backend {
    /// A blocking storage: each step runs on the thread that polls it.
    Blocking(Arc<dyn Storage>),
    /// An async storage: each step is awaited.
    Async(Arc<dyn AsyncStorage>),
}

impl Backend {
    /// Reads a key.
    pub async fn load(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        match self {
            Backend::Blocking(storage) => storage.load(key),
            Backend::Async(storage) => storage.load(key).await,
        }
    }

    /// Writes a key if its version is `expected`.
    pub async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<u64>,
        data: &[u8],
    ) -> Result<SwapResult, StorageError> {
        match self {
            Backend::Blocking(storage) => storage.compare_and_swap(key, expected, data),
            Backend::Async(storage) => storage.compare_and_swap(key, expected, data).await,
        }
    }

    /// The key's version, if the storage knows it without I/O.
    pub fn peek_version(&self, key: &str) -> Option<Option<u64>> {
        match self {
            Backend::Blocking(storage) => storage.peek_version(key),
            Backend::Async(storage) => storage.peek_version(key),
        }
    }

    /// The fallback state the storage suggests.
    pub fn fallback_state(&self) -> Option<State> {
        match self {
            Backend::Blocking(storage) => storage.fallback_state(),
            Backend::Async(storage) => storage.fallback_state(),
        }
    }

    /// Whether async callers must move breaker work to the blocking pool (a
    /// blocking storage that may wait on I/O).
    pub fn offload(&self) -> bool {
        matches!(self, Backend::Blocking(storage) if storage.may_block())
    }

    /// Whether steps are awaited (an async storage).
    pub fn is_async(&self) -> bool {
        matches!(self, Backend::Async(_))
    }
}
