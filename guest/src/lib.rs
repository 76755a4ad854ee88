//! The tripswitch circuit breaker component: a pure state machine
//! (`machine`), its defaults (`config`), its stored bytes (`record`), the
//! storage loop (`breaker`) and, on wasm32, the component bindings.

#![warn(missing_docs)]

pub mod breaker;
pub mod config;
pub mod machine;
pub mod record;

#[cfg(target_arch = "wasm32")]
mod bindings;
