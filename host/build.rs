//! Builds the breaker component from `guest/` and leaves it in OUT_DIR for
//! `include_bytes!`; `TRIPSWITCH_COMPONENT` names a prebuilt one instead.
//! With the `proxy` feature, also the HTTP middleware plugin composed with
//! that breaker (`tripswitch-middleware.wasm`).

use std::path::{Path, PathBuf};
use std::{env, fs};

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest
        .parent()
        .expect("the host crate lives in the workspace");
    println!("cargo:rerun-if-env-changed=TRIPSWITCH_COMPONENT");
    let component = match env::var_os("TRIPSWITCH_COMPONENT") {
        Some(path) => {
            println!("cargo:rerun-if-changed={}", Path::new(&path).display());
            fs::read(&path)
                .map_err(|e| format!("TRIPSWITCH_COMPONENT={}: {e}", Path::new(&path).display()))
        }
        None => tripswitch_componentize::component(root, "guest", "tripswitch-guest"),
    };
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let write = |name: &str, bytes: &[u8]| {
        let path = out.join(name);
        fs::write(&path, bytes).map_err(|e| format!("writing {}: {e}", path.display()))
    };
    let written = component.and_then(|breaker| {
        write("tripswitch.wasm", &breaker)?;
        if env::var_os("CARGO_FEATURE_PROXY").is_some() {
            let middleware = tripswitch_componentize::Plugins::middleware(root, &breaker)?;
            write("tripswitch-middleware.wasm", &middleware)?;
        }
        Ok(())
    });
    if let Err(message) = written {
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}
