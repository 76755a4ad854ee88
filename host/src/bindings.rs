//! The component's bindings, and the data each store keeps: the component
//! imports nothing, so a store holds only its limits and runaway counters.

wasmtime::component::bindgen!({
    path: "wit",
    world: "tripswitch",
});

pub(crate) use self::exports::tripswitch::breaker::breaker as exported;
pub(crate) use self::tripswitch::breaker::types as wit;

/// Per-store data.
pub(crate) struct HostState {
    /// The instance's resource limits.
    pub limits: wasmtime::StoreLimits,
    /// Epoch ticks spent inside the guest during this call.
    pub guest_ticks: u32,
}

impl HostState {
    /// A store's data, with its limits.
    pub fn new(limits: wasmtime::StoreLimits) -> Self {
        HostState {
            limits,
            guest_ticks: 0,
        }
    }
}
