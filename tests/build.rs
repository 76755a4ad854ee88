//! Builds the deliberately broken component the runaway tests load.

use std::path::PathBuf;
use std::{env, fs};

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest.parent().expect("tests/ lives in the workspace");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR")).join("runaway.wasm");
    let built = tripswitch_componentize::component(
        root,
        "tests/fixtures/runaway",
        "tripswitch-runaway-guest",
    )
    .and_then(|bytes| {
        fs::write(&out, bytes).map_err(|e| format!("writing {}: {e}", out.display()))
    });
    if let Err(message) = built {
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}
