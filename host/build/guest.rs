//! Builds the breaker guest (`guest/`, for `wasm32-unknown-unknown`) and
//! encodes it as a component. One copy: the host crate's build script and the
//! `tripswitch-componentize` crate both include this file.

use std::path::Path;
use std::process::Command;

/// The target the breaker guest is built for.
pub const TARGET: &str = "wasm32-unknown-unknown";

/// Tells cargo to rebuild when `path` changes, when run by a build script.
pub fn watch(path: &Path) {
    if std::env::var_os("OUT_DIR").is_some() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// Builds `package`, the guest crate in `dir` of the workspace at `root`, and
/// returns it encoded as a component, or a message that says what went wrong.
pub fn component(root: &Path, dir: &str, package: &str) -> Result<Vec<u8>, String> {
    let sources = [format!("{dir}/src"), format!("{dir}/Cargo.toml")];
    // The guest is bindings over `core/`, the logic.
    let logic = ["core/src", "core/Cargo.toml"];
    for watched in [
        "wit",
        "Cargo.lock",
        &sources[0],
        &sources[1],
        logic[0],
        logic[1],
    ] {
        watch(&root.join(watched));
    }
    ensure_target(TARGET)?;
    encode(&build(root, package)?)
}

/// Adds a wasm target through rustup when it is missing.
pub fn ensure_target(target: &str) -> Result<(), String> {
    let Ok(installed) = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
    else {
        // No rustup: the toolchain may still have the target; the build says if not.
        return Ok(());
    };
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.trim() == target)
    {
        return Ok(());
    }
    let added = Command::new("rustup")
        .args(["target", "add", target])
        .status();
    match added {
        Ok(status) if status.success() => Ok(()),
        _ => Err(format!(
            "the {target} target is missing and `rustup target add {target}` failed; \
             add it by hand (no network?)"
        )),
    }
}

/// Builds the guest's core module and returns its bytes.
fn build(root: &Path, package: &str) -> Result<Vec<u8>, String> {
    let target_dir = root.join("target").join("guest-build");
    let mut command = nested_cargo(root, &target_dir);
    command
        // A small stack: the guest recurses nowhere, and memory is per instance.
        .env("CARGO_ENCODED_RUSTFLAGS", "-Clink-arg=-zstack-size=65536")
        .env("CARGO_PROFILE_RELEASE_LTO", "true")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
        .env("CARGO_PROFILE_RELEASE_PANIC", "abort")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true");
    build_wasm(command, &target_dir, package, TARGET)
}

/// Runs a nested build of `package` for `target` and reads the `.wasm` it made.
pub fn build_wasm(
    mut command: Command,
    target_dir: &Path,
    package: &str,
    target: &str,
) -> Result<Vec<u8>, String> {
    let status = command
        .args(["-p", package, "--target", target])
        .status()
        .map_err(|e| format!("running cargo to build {package}: {e}"))?;
    if !status.success() {
        return Err(format!(
            "building {package} for {target} failed; see the output above"
        ));
    }
    let wasm = target_dir
        .join(target)
        .join("release")
        .join(format!("{}.wasm", package.replace('-', "_")));
    std::fs::read(&wasm).map_err(|e| format!("reading {}: {e}", wasm.display()))
}

/// `cargo build --release --locked` for a nested build: its own target
/// folder (so the outer cargo's lock is not in the way) and none of the outer
/// build's flags.
pub fn nested_cargo(root: &Path, target_dir: &Path) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(root)
        .args(["build", "--release", "--locked"])
        .arg("--target-dir")
        .arg(target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_TARGET_DIR");
    command
}

/// Turns a core module (with wit-bindgen's type section) into a component.
fn encode(module: &[u8]) -> Result<Vec<u8>, String> {
    wit_component::ComponentEncoder::default()
        .module(module)
        .and_then(|encoder| encoder.validate(true).encode())
        .map_err(|e| format!("encoding the guest as a component: {e:#}"))
}
