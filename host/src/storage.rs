//! Where breakers keep their records: the storage contracts (blocking and
//! async), and memory storage.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use rustc_hash::FxHashMap;

/// A stored record and its version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Grows with every write to the key (a storage must never reuse one).
    pub version: u64,
    /// The breaker's record, encoded by the component.
    pub data: Vec<u8>,
}

/// What a compare-and-swap did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SwapResult {
    /// Written, with the new version.
    Written(u64),
    /// Not written: the key's current entry (none: absent).
    Conflict(Option<Entry>),
}

/// A storage failure, with a message that says what went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageError(pub String);

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StorageError {}

/// A versioned register per key, in which breakers keep their records.
///
/// Implement it to keep breakers anywhere: `load` reads a key, and
/// `compare_and_swap` writes it only if its version is still `expected`
/// (none: the key must be absent), returning the current entry otherwise.
/// Versions must grow with every write to a key and never repeat, even
/// after the key is removed: breakers reuse answers while a version stays.
pub trait Storage: Send + Sync + 'static {
    /// Reads a key; none when it is absent.
    fn load(&self, key: &str) -> Result<Option<Entry>, StorageError>;

    /// Writes `data` under `key` if its version is `expected`.
    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<u64>,
        data: &[u8],
    ) -> Result<SwapResult, StorageError>;

    /// The key's current version (inner none: absent), for a storage that can
    /// tell it without a round trip; none otherwise. A breaker then skips
    /// reloading a record it already holds.
    fn peek_version(&self, _key: &str) -> Option<Option<u64>> {
        None
    }

    /// The fallback state this storage suggests to breakers that set none
    /// (pybreaker's `fallback_circuit_state`).
    fn fallback_state(&self) -> Option<crate::State> {
        None
    }

    /// Whether a call may wait on I/O, so that `call_async` should run the
    /// breaker's storage work on a blocking thread pool (true unless overridden).
    fn may_block(&self) -> bool {
        true
    }
}

impl<S: Storage + ?Sized> Storage for Arc<S> {
    fn load(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        (**self).load(key)
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<u64>,
        data: &[u8],
    ) -> Result<SwapResult, StorageError> {
        (**self).compare_and_swap(key, expected, data)
    }

    fn peek_version(&self, key: &str) -> Option<Option<u64>> {
        (**self).peek_version(key)
    }

    fn fallback_state(&self) -> Option<crate::State> {
        (**self).fallback_state()
    }

    fn may_block(&self) -> bool {
        (**self).may_block()
    }
}

/// What an [`AsyncStorage`] step returns: a boxed future of its result.
pub type StorageFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StorageError>> + Send + 'a>>;

/// A versioned register per key that breakers await: the same contract as
/// [`Storage`] (versions grow with every write and never repeat), for
/// storages whose I/O is asynchronous. `call_async`, `acquire_async` and the
/// tower layer await its steps on the caller's task, with no thread of
/// their own; the blocking calls wait on them. ([`MemoryStorage`] serves
/// both kinds of call as a [`Storage`]: it never waits, so async calls run
/// it inline.)
///
/// Its futures may be polled on any thread, outside the runtime that made
/// them: a call dropped in the middle of a breaker operation finishes that
/// operation on a background thread (so that no count is lost). A storage
/// built on tokio spawns its I/O on its runtime's handle and awaits the
/// join handle. Every step should end by a deadline of the storage's own:
/// the breaker waits as long as the future does.
pub trait AsyncStorage: Send + Sync + 'static {
    /// Reads a key; none when it is absent.
    fn load<'a>(&'a self, key: &'a str) -> StorageFuture<'a, Option<Entry>>;

    /// Writes `data` under `key` if its version is `expected`.
    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        expected: Option<u64>,
        data: &'a [u8],
    ) -> StorageFuture<'a, SwapResult>;

    /// The key's current version, when the storage knows it without I/O
    /// (see [`Storage::peek_version`]).
    fn peek_version(&self, _key: &str) -> Option<Option<u64>> {
        None
    }

    /// The fallback state this storage suggests to breakers that set none.
    fn fallback_state(&self) -> Option<crate::State> {
        None
    }
}

impl<S: AsyncStorage + ?Sized> AsyncStorage for Arc<S> {
    fn load<'a>(&'a self, key: &'a str) -> StorageFuture<'a, Option<Entry>> {
        (**self).load(key)
    }

    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        expected: Option<u64>,
        data: &'a [u8],
    ) -> StorageFuture<'a, SwapResult> {
        (**self).compare_and_swap(key, expected, data)
    }

    fn peek_version(&self, key: &str) -> Option<Option<u64>> {
        (**self).peek_version(key)
    }

    fn fallback_state(&self) -> Option<crate::State> {
        (**self).fallback_state()
    }
}

/// Storage in this process's memory; clones share it, so breakers given
/// clones of one `MemoryStorage` share their state.
#[derive(Clone, Debug, Default)]
pub struct MemoryStorage {
    entries: Arc<Mutex<Entries>>,
}

/// The entries, and the last version handed out to any key: a key that is
/// removed and written again never gets a version it had before.
#[derive(Debug, Default)]
struct Entries {
    map: FxHashMap<String, Entry>,
    last_version: u64,
}

impl Entries {
    fn next_version(&mut self) -> u64 {
        self.last_version += 1;
        self.last_version
    }
}

impl MemoryStorage {
    /// An empty storage.
    pub fn new() -> Self {
        Self::default()
    }

    /// The keys stored, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.lock().map.keys().cloned().collect();
        keys.sort();
        keys
    }

    /// Overwrites a key whatever its version (for tests and repairs).
    pub fn put(&self, key: &str, data: &[u8]) -> u64 {
        let mut entries = self.lock();
        let version = entries.next_version();
        entries.map.insert(
            key.to_string(),
            Entry {
                version,
                data: data.to_vec(),
            },
        );
        version
    }

    /// Removes a key (for tests and repairs); true if it was there.
    pub fn remove(&self, key: &str) -> bool {
        self.lock().map.remove(key).is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // A panic elsewhere while holding the lock leaves the map intact.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Storage for MemoryStorage {
    fn load(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        Ok(self.lock().map.get(key).cloned())
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<u64>,
        data: &[u8],
    ) -> Result<SwapResult, StorageError> {
        let mut entries = self.lock();
        let matches = match (entries.map.get(key), expected) {
            (Some(entry), Some(version)) => entry.version == version,
            (None, None) => true,
            _ => false,
        };
        if !matches {
            return Ok(SwapResult::Conflict(entries.map.get(key).cloned()));
        }
        let version = entries.next_version();
        let entry = entries.map.entry(key.to_string()).or_insert_with(|| Entry {
            version,
            data: Vec::new(),
        });
        entry.version = version;
        entry.data.clear();
        entry.data.extend_from_slice(data);
        Ok(SwapResult::Written(version))
    }

    fn peek_version(&self, key: &str) -> Option<Option<u64>> {
        Some(self.lock().map.get(key).map(|entry| entry.version))
    }

    fn may_block(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_grow_and_conflicts_return_the_current_entry() {
        let storage = MemoryStorage::new();
        assert_eq!(storage.load("a"), Ok(None));
        assert_eq!(
            storage.compare_and_swap("a", Some(1), b"x"),
            Ok(SwapResult::Conflict(None))
        );
        assert_eq!(
            storage.compare_and_swap("a", None, b"x"),
            Ok(SwapResult::Written(1))
        );
        let current = Entry {
            version: 1,
            data: b"x".to_vec(),
        };
        assert_eq!(
            storage.compare_and_swap("a", None, b"y"),
            Ok(SwapResult::Conflict(Some(current.clone())))
        );
        assert_eq!(
            storage.compare_and_swap("a", Some(7), b"y"),
            Ok(SwapResult::Conflict(Some(current)))
        );
        assert_eq!(
            storage.compare_and_swap("a", Some(1), b"y"),
            Ok(SwapResult::Written(2))
        );
        assert_eq!(storage.load("a").unwrap().unwrap().data, b"y");
        assert_eq!(storage.put("a", b"z"), 3);
        assert_eq!(storage.keys(), vec!["a".to_string()]);
    }
}
