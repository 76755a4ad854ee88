//! Puts the breaker component in OUT_DIR for `include_bytes!`: built from
//! `guest/` in the workspace, or, in the published package (which has no
//! guest), the copy the package ships in `component/tripswitch.wasm`.
//! `TRIPSWITCH_COMPONENT` names a prebuilt one instead. Tells dependents'
//! build scripts where it is (`DEP_TRIPSWITCH_COMPONENT`).

#[path = "build/guest.rs"]
#[allow(dead_code)]
mod guest;

use std::path::{Path, PathBuf};
use std::{env, fs};

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest.parent().unwrap_or(&manifest);
    let shipped = manifest.join("component").join("tripswitch.wasm");
    println!("cargo:rerun-if-env-changed=TRIPSWITCH_COMPONENT");
    let read = |path: &Path, what: &str| {
        println!("cargo:rerun-if-changed={}", path.display());
        fs::read(path).map_err(|e| format!("{what}={}: {e}", path.display()))
    };
    let component = match env::var_os("TRIPSWITCH_COMPONENT") {
        Some(path) => read(Path::new(&path), "TRIPSWITCH_COMPONENT"),
        None if is_guest(&root.join("guest").join("Cargo.toml")) => {
            guest::component(root, "guest", "tripswitch-guest")
        }
        None => read(&shipped, "the shipped component"),
    };
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR")).join("tripswitch.wasm");
    let written = component.and_then(|bytes| {
        fs::write(&out, bytes).map_err(|e| format!("writing {}: {e}", out.display()))
    });
    if let Err(message) = written {
        eprintln!("error: {message}");
        std::process::exit(1);
    }
    println!("cargo:component={}", out.display());
}

/// Whether `manifest` is the breaker guest's (the workspace's, beside this crate).
fn is_guest(manifest: &Path) -> bool {
    fs::read_to_string(manifest).is_ok_and(|text| text.contains("name = \"tripswitch-guest\""))
}
