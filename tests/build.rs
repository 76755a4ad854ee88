//! Builds the components the tests load: the deliberately broken breaker of
//! the runaway tests, and the proxy plugins composed over test fixtures (a
//! service whose answers the path chooses, a stand-in keyvalue store).

use std::path::PathBuf;
use std::{env, fs};

use tripswitch_componentize::{Plugins, component, plug, plugin};

fn main() {
    if let Err(message) = build() {
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}

fn build() -> Result<(), String> {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest.parent().expect("tests/ lives in the workspace");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let write = |name: &str, bytes: &[u8]| {
        let path = out.join(name);
        fs::write(&path, bytes).map_err(|e| format!("writing {}: {e}", path.display()))
    };
    write(
        "runaway.wasm",
        &component(root, "tests/fixtures/runaway", "tripswitch-runaway-guest")?,
    )?;
    let plugins = Plugins::build(root)?;
    for (name, bytes) in plugins.files() {
        write(name, bytes)?;
    }
    let service = plugin(root, "tripswitch-fixture-service")?;
    let store = plugin(root, "tripswitch-fixture-kv-store")?;
    // What `wasmtime serve` runs: the middleware with in-memory storage in
    // front of the service; the Spin artifact with the stand-in store.
    write("service.wasm", &service)?;
    write("local-app.wasm", &plug(&plugins.local, &[&service])?)?;
    // The Spin storage adapter on the stand-in store, for its own tests.
    write(
        "kv-storage-on-store.wasm",
        &plug(&plugins.kv_storage, &[&store])?,
    )?;
    write(
        "spin-app.wasm",
        &plug(&plug(&plugins.spin, &[&store])?, &[&service])?,
    )?;
    Ok(())
}
