//! The component's imports, served from a store's [`HostState`].

use std::sync::Arc;

use crate::storage::{Storage, SwapResult};

wasmtime::component::bindgen!({
    path: "../wit",
    world: "tripswitch",
});

pub(crate) use self::tripswitch::breaker::types as wit;
pub(crate) use exports::tripswitch::breaker::breaker::GuestCircuitBreaker as Guest;

/// A state change the component announced during one call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Announced {
    pub previous: wit::State,
    pub current: wit::State,
    pub at_ms: u64,
    pub remote: bool,
    /// The newest storage version the component had seen when it announced.
    pub version: u64,
}

/// Per-store data: what the call being served needs and what it produced.
pub(crate) struct HostState {
    /// The instance's resource limits.
    pub limits: wasmtime::StoreLimits,
    /// The storage of the breaker being served.
    pub storage: Option<Arc<dyn Storage>>,
    /// State changes announced during this call.
    pub announced: Vec<Announced>,
    /// The newest storage version seen during this call.
    pub version: u64,
    /// The last storage error seen during this call, if the storage failed.
    pub storage_error: Option<String>,
    /// Whether a storage call succeeded during this call.
    pub storage_ok: bool,
    /// Whether the guest called out since the last epoch tick.
    pub called_out: bool,
    /// Epoch ticks spent purely inside the guest during this call.
    pub guest_ticks: u32,
    /// Epoch ticks during this call, in the guest or in the host.
    pub total_ticks: u32,
}

impl HostState {
    /// A store's data, with its limits.
    pub fn new(limits: wasmtime::StoreLimits) -> Self {
        HostState {
            limits,
            storage: None,
            announced: Vec::new(),
            version: 0,
            storage_error: None,
            storage_ok: false,
            called_out: false,
            guest_ticks: 0,
            total_ticks: 0,
        }
    }

    /// Clears what one call produced, ready for the next.
    pub fn begin(&mut self, storage: &Arc<dyn Storage>) {
        self.storage = Some(Arc::clone(storage));
        self.announced.clear();
        self.version = 0;
        self.storage_error = None;
        self.storage_ok = false;
    }

    fn storage(&mut self) -> Result<&Arc<dyn Storage>, String> {
        self.called_out = true;
        self.storage
            .as_ref()
            .ok_or_else(|| "no storage is attached to this call".to_string())
    }

    fn outcome<T>(&mut self, result: Result<T, crate::StorageError>) -> Result<T, String> {
        match result {
            Ok(value) => {
                self.storage_ok = true;
                Ok(value)
            }
            Err(error) => {
                self.storage_error = Some(error.0.clone());
                Err(error.0)
            }
        }
    }
}

impl wit::Host for HostState {}

impl tripswitch::breaker::storage::Host for HostState {
    fn load(&mut self, key: String) -> Result<Option<tripswitch::breaker::storage::Entry>, String> {
        let loaded = self.storage()?.load(&key);
        let entry = self.outcome(loaded)?;
        Ok(entry.map(|entry| {
            self.version = self.version.max(entry.version);
            tripswitch::breaker::storage::Entry {
                version: entry.version,
                data: entry.data,
            }
        }))
    }

    fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<u64>,
        data: Vec<u8>,
    ) -> Result<tripswitch::breaker::storage::SwapResult, String> {
        use self::tripswitch::breaker::storage::{Entry, SwapResult as Wit};
        let swapped = self.storage()?.compare_and_swap(&key, expected, &data);
        Ok(match self.outcome(swapped)? {
            SwapResult::Written(version) => {
                self.version = self.version.max(version);
                Wit::Written(version)
            }
            SwapResult::Conflict(entry) => Wit::Conflict(entry.map(|entry| {
                self.version = self.version.max(entry.version);
                Entry {
                    version: entry.version,
                    data: entry.data,
                }
            })),
        })
    }
}

impl tripswitch::breaker::events::Host for HostState {
    fn state_changed(
        &mut self,
        _breaker: String,
        previous: wit::State,
        current: wit::State,
        at_ms: u64,
        remote: bool,
    ) {
        self.called_out = true;
        self.announced.push(Announced {
            previous,
            current,
            at_ms,
            remote,
            version: self.version,
        });
    }
}
