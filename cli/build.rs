//! Composes the HTTP middleware plugin with the breaker component that the
//! `tripswitch` crate embeds (`DEP_TRIPSWITCH_COMPONENT`), for `tripswitch
//! proxy` to embed as `tripswitch-middleware.wasm`.

use std::path::PathBuf;
use std::{env, fs};

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest
        .parent()
        .expect("the CLI crate lives in the workspace");
    let breaker = env::var_os("DEP_TRIPSWITCH_COMPONENT")
        .ok_or_else(|| "the tripswitch crate did not say where its component is".to_string())
        .and_then(|path| {
            let path = PathBuf::from(path);
            println!("cargo:rerun-if-changed={}", path.display());
            fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))
        });
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let written = breaker
        .and_then(|breaker| tripswitch_componentize::Plugins::middleware(root, &breaker))
        .and_then(|middleware| {
            let path = out.join("tripswitch-middleware.wasm");
            fs::write(&path, middleware).map_err(|e| format!("writing {}: {e}", path.display()))
        });
    if let Err(message) = written {
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}
