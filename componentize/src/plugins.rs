//! Builds the crates of the `plugins/` workspace, which `wasm32-wasip2`
//! turns into components directly.

use std::path::Path;

use crate::{build_wasm, ensure_target, nested_cargo, watch};

/// The target the plugins are built for.
pub const PLUGIN_TARGET: &str = "wasm32-wasip2";

/// Builds `package` of the `plugins/` workspace under `root` and returns the
/// component, or a message that says what went wrong.
pub fn plugin(root: &Path, package: &str) -> Result<Vec<u8>, String> {
    plugin_for(root, package, PLUGIN_TARGET)
}

/// Builds `package` of the `plugins/` workspace for `target`.
fn plugin_for(root: &Path, package: &str, target: &str) -> Result<Vec<u8>, String> {
    let plugins = root.join("plugins");
    for watched in ["Cargo.toml", "Cargo.lock", "wit"] {
        watch(&plugins.join(watched));
    }
    watch(&root.join("wit"));
    // Every crate of the workspace: a plugin may use any of them.
    for entry in std::fs::read_dir(&plugins).into_iter().flatten().flatten() {
        if entry.path().join("Cargo.toml").exists() {
            watch(&entry.path());
        }
    }
    watch(&plugins.join("fixtures"));
    // The core crate, which the Envoy filter builds on (and the metric
    // names it includes from the host crate).
    watch(&root.join("core"));
    watch(&root.join("host").join("src").join("metric_names.rs"));
    ensure_target(target)?;
    let target_dir = root.join("target").join("plugins-build");
    let mut command = nested_cargo(root, &target_dir);
    command
        .arg("--manifest-path")
        .arg(plugins.join("Cargo.toml"));
    build_wasm(command, &target_dir, package, target)
}

/// Builds the Envoy filter (`plugins/envoy/`): a proxy-wasm core module for
/// `wasm32-unknown-unknown`, not a component.
pub fn envoy_filter(root: &Path) -> Result<Vec<u8>, String> {
    plugin_for(root, "tripswitch-envoy", crate::TARGET)
}

/// The shipped proxy plugins.
pub struct Plugins {
    /// Middleware + breaker; imports `tripswitch:breaker/storage` and
    /// `events` and `tripswitch:plugins/counted`, for hosts that provide
    /// them (`tripswitch proxy`).
    pub middleware: Vec<u8>,
    /// Middleware + breaker + the `wasi:keyvalue` storage adapter + events
    /// as log lines + counts told to nobody, for Spin.
    pub spin: Vec<u8>,
    /// Middleware + breaker + storage in the component's own memory + events
    /// as log lines + counts told to nobody, for demo hosts such as
    /// `wasmtime serve`.
    pub local: Vec<u8>,
    /// The `wasi:keyvalue` storage adapter alone.
    pub kv_storage: Vec<u8>,
    /// The in-memory storage adapter alone.
    pub memory_storage: Vec<u8>,
    /// The events as log lines on stderr, alone.
    pub log_events: Vec<u8>,
    /// The middleware's counts told to nobody, alone.
    pub counted_none: Vec<u8>,
    /// The Envoy filter, a proxy-wasm module.
    pub envoy: Vec<u8>,
}

impl Plugins {
    /// Builds the breaker and the plugin crates, and composes them.
    pub fn build(root: &Path) -> Result<Plugins, String> {
        let breaker = crate::component(root, "guest", "tripswitch-guest")?;
        let middleware = Plugins::middleware(root, &breaker)?;
        let kv_storage = plugin(root, "tripswitch-kv-storage")?;
        let memory_storage = plugin(root, "tripswitch-memory-storage")?;
        let log_events = plugin(root, "tripswitch-log-events")?;
        let counted_none = plugin(root, "tripswitch-counted-none")?;
        Ok(Plugins {
            spin: crate::plug(&middleware, &[&kv_storage, &log_events, &counted_none])?,
            local: crate::plug(&middleware, &[&memory_storage, &log_events, &counted_none])?,
            middleware,
            kv_storage,
            memory_storage,
            log_events,
            counted_none,
            envoy: envoy_filter(root)?,
        })
    }

    /// Builds the middleware and composes it with `breaker` (the component).
    pub fn middleware(root: &Path, breaker: &[u8]) -> Result<Vec<u8>, String> {
        crate::plug(&plugin(root, "tripswitch-http-middleware")?, &[breaker])
    }

    /// Each plugin with its file name.
    pub fn files(&self) -> [(&'static str, &[u8]); 8] {
        [
            ("tripswitch-middleware.wasm", &self.middleware),
            ("tripswitch-middleware-spin.wasm", &self.spin),
            ("tripswitch-middleware-local.wasm", &self.local),
            ("tripswitch-kv-storage.wasm", &self.kv_storage),
            ("tripswitch-memory-storage.wasm", &self.memory_storage),
            ("tripswitch-log-events.wasm", &self.log_events),
            ("tripswitch-counted-none.wasm", &self.counted_none),
            ("tripswitch-envoy.wasm", &self.envoy),
        ]
    }
}
