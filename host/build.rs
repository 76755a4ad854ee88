//! Builds the guest crate for wasm32-unknown-unknown, encodes it as a
//! component with `wit-component`, and leaves it in OUT_DIR for `include_bytes!`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

const TARGET: &str = "wasm32-unknown-unknown";

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest
        .parent()
        .expect("the host crate lives in the workspace");
    for watched in ["guest/src", "guest/Cargo.toml", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    println!("cargo:rerun-if-env-changed=TRIPSWITCH_COMPONENT");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR")).join("tripswitch.wasm");
    let component = match env::var_os("TRIPSWITCH_COMPONENT") {
        Some(path) => fs::read(&path).unwrap_or_else(|e| {
            fail(&format!(
                "TRIPSWITCH_COMPONENT={}: {e}",
                Path::new(&path).display()
            ))
        }),
        None => encode(&build_guest(root)),
    };
    fs::write(&out, component).unwrap_or_else(|e| fail(&format!("writing {}: {e}", out.display())));
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}

/// Adds the wasm target through rustup when it is missing.
fn ensure_target() {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match installed {
        Ok(out)
            if String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == TARGET) => {}
        Ok(_) => {
            let added = Command::new("rustup")
                .args(["target", "add", TARGET])
                .status();
            if !matches!(added, Ok(s) if s.success()) {
                fail(&format!(
                    "the {TARGET} target is missing and `rustup target add {TARGET}` failed; \
                     add it by hand, or set TRIPSWITCH_COMPONENT to a built component"
                ));
            }
        }
        // No rustup: the toolchain may still have the target; the build below says if not.
        Err(_) => {}
    }
}

/// Builds the guest core module and returns its bytes.
fn build_guest(root: &Path) -> Vec<u8> {
    ensure_target();
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target_dir = root.join("target").join("guest-build");
    let status = Command::new(cargo)
        .current_dir(root)
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            "tripswitch-guest",
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
        .unwrap_or_else(|e| fail(&format!("running cargo for the guest: {e}")));
    if !status.success() {
        fail("building the guest component (tripswitch-guest) failed; see the output above");
    }
    let module = target_dir
        .join(TARGET)
        .join("release")
        .join("tripswitch_guest.wasm");
    fs::read(&module).unwrap_or_else(|e| fail(&format!("reading {}: {e}", module.display())))
}

/// Turns the core module into a component.
fn encode(module: &[u8]) -> Vec<u8> {
    wit_component::ComponentEncoder::default()
        .module(module)
        .and_then(|encoder| encoder.validate(true).encode())
        .unwrap_or_else(|e| fail(&format!("encoding the guest as a component: {e:#}")))
}
