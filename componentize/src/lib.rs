//! Builds the project's components for build scripts and `cargo xtask`:
//! the breaker (a `wasm32-unknown-unknown` guest encoded as a component),
//! the proxy plugins (`wasm32-wasip2` crates of the `plugins/` workspace),
//! and their compositions.

#![warn(missing_docs)]

mod compose;
mod plugins;

pub use compose::plug;
pub use plugins::{PLUGIN_TARGET, Plugins, envoy_filter, plugin};

#[path = "../../host/build/guest.rs"]
mod guest;

pub use guest::{TARGET, component};
pub(crate) use guest::{build_wasm, ensure_target, nested_cargo, watch};
