//! The breaker as a proxy-wasm HTTP filter for Envoy (ABI 0.2.1): the same
//! state machine as the component (`tripswitch-core`), its record kept in
//! Envoy's shared data so that every worker of one Envoy shares one breaker.
//!
//! The glue is plain Rust, tested natively: the plugin configuration
//! (`plugin`), what a response counts as (`outcome`), the shared-data
//! register (`register`) and the metric names (`stats`). On wasm32, `filter`
//! binds them to Envoy through the `proxy-wasm` crate.

#![warn(missing_docs)]

pub mod outcome;
pub mod plugin;
pub mod register;
pub mod stats;

#[cfg(target_arch = "wasm32")]
mod filter;
