//! Builds a guest crate of this workspace for `wasm32-unknown-unknown` and
//! turns its core module into a component, for build scripts.

#![warn(missing_docs)]

use std::path::Path;
use std::process::Command;

/// The target guests are built for.
pub const TARGET: &str = "wasm32-unknown-unknown";

/// Builds `package`, the guest crate in `dir` of the workspace at `root`, and
/// returns it encoded as a component, or a message that says what went wrong.
pub fn component(root: &Path, dir: &str, package: &str) -> Result<Vec<u8>, String> {
    let sources = [format!("{dir}/src"), format!("{dir}/Cargo.toml")];
    for watched in ["wit", "Cargo.lock", &sources[0], &sources[1]] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    ensure_target()?;
    encode(&build(root, package)?)
}

/// Adds the wasm target through rustup when it is missing.
fn ensure_target() -> Result<(), String> {
    let Ok(installed) = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
    else {
        // No rustup: the toolchain may still have the target; the build says if not.
        return Ok(());
    };
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.trim() == TARGET)
    {
        return Ok(());
    }
    let added = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status();
    match added {
        Ok(status) if status.success() => Ok(()),
        _ => Err(format!(
            "the {TARGET} target is missing and `rustup target add {TARGET}` failed; \
             add it by hand (no network?), or set TRIPSWITCH_COMPONENT to a built component"
        )),
    }
}

/// Builds the guest's core module and returns its bytes.
fn build(root: &Path, package: &str) -> Result<Vec<u8>, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target_dir = root.join("target").join("guest-build");
    let status = Command::new(cargo)
        .current_dir(root)
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            package,
            "--target",
            TARGET,
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_TARGET_DIR")
        // A small stack: the guest recurses nowhere, and memory is per instance.
        .env("CARGO_ENCODED_RUSTFLAGS", "-Clink-arg=-zstack-size=65536")
        .env("CARGO_PROFILE_RELEASE_LTO", "true")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
        .env("CARGO_PROFILE_RELEASE_PANIC", "abort")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true")
        .status()
        .map_err(|e| format!("running cargo to build {package}: {e}"))?;
    if !status.success() {
        return Err(format!(
            "building {package} for {TARGET} failed; see the output above"
        ));
    }
    let module = target_dir
        .join(TARGET)
        .join("release")
        .join(format!("{}.wasm", package.replace('-', "_")));
    std::fs::read(&module).map_err(|e| format!("reading {}: {e}", module.display()))
}

/// Turns a core module (with wit-bindgen's type section) into a component.
fn encode(module: &[u8]) -> Result<Vec<u8>, String> {
    wit_component::ComponentEncoder::default()
        .module(module)
        .and_then(|encoder| encoder.validate(true).encode())
        .map_err(|e| format!("encoding the guest as a component: {e:#}"))
}
