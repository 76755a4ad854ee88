//! The component's imports, served from a store's [`HostState`].

use std::sync::Arc;

use crate::storage::{Storage, StorageError, SwapResult};

wasmtime::component::bindgen!({
    path: "wit",
    world: "tripswitch",
});

pub(crate) use self::tripswitch::breaker::types as wit;

/// Per-store data: what the call being served needs and what it produced.
pub(crate) struct HostState {
    /// The instance's resource limits.
    pub limits: wasmtime::StoreLimits,
    /// The storage of the breaker being served.
    pub storage: Option<Arc<dyn Storage>>,
    /// State changes announced during this call.
    pub announced: Vec<wit::StateChange>,
    /// The storage's own error, if it raised one during this call.
    pub storage_error: Option<StorageError>,
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
            storage_error: None,
            called_out: false,
            guest_ticks: 0,
            total_ticks: 0,
        }
    }

    /// Clears what one call produced, ready for the next.
    pub fn begin(&mut self, storage: &Arc<dyn Storage>) {
        self.storage = Some(Arc::clone(storage));
        self.announced.clear();
        self.storage_error = None;
    }

    fn storage(&mut self) -> Result<&Arc<dyn Storage>, String> {
        self.called_out = true;
        self.storage
            .as_ref()
            .ok_or_else(|| "no storage is attached to this call".to_string())
    }

    /// A storage result for the component; the error is kept as the source
    /// of the breaker error the component may return.
    fn carry<T>(&mut self, result: Result<T, StorageError>) -> Result<T, String> {
        result.map_err(|error| {
            let message = error.0.clone();
            self.storage_error = Some(error);
            message
        })
    }
}

fn entry(entry: crate::storage::Entry) -> tripswitch::breaker::storage::Entry {
    tripswitch::breaker::storage::Entry {
        version: entry.version,
        data: entry.data,
    }
}

impl wit::Host for HostState {}

impl tripswitch::breaker::storage::Host for HostState {
    fn load(&mut self, key: String) -> Result<Option<tripswitch::breaker::storage::Entry>, String> {
        let loaded = self.storage()?.load(&key);
        Ok(self.carry(loaded)?.map(entry))
    }

    fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<u64>,
        data: Vec<u8>,
    ) -> Result<tripswitch::breaker::storage::SwapResult, String> {
        use self::tripswitch::breaker::storage::SwapResult as Wit;
        let swapped = self.storage()?.compare_and_swap(&key, expected, &data);
        Ok(match self.carry(swapped)? {
            SwapResult::Written(version) => Wit::Written(version),
            SwapResult::Conflict(found) => Wit::Conflict(found.map(entry)),
        })
    }
}

impl tripswitch::breaker::events::Host for HostState {
    fn state_changed(&mut self, change: wit::StateChange) {
        self.called_out = true;
        self.announced.push(change);
    }
}
