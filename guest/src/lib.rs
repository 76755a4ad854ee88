//! The tripswitch circuit breaker component: the WIT bindings over
//! `tripswitch-core`, on wasm32.

#![warn(missing_docs)]

#[cfg(target_arch = "wasm32")]
mod bindings;
