//! `cargo xtask`: the project's build and test entry points.
//!
//! - `cargo xtask component`: builds the breaker component and writes it to
//!   `target/components/tripswitch.wasm`.
//! - `cargo xtask test`: installs what the tests need (the wasm target,
//!   redis-server, chromium, the npm packages), then runs rustfmt, clippy,
//!   every Rust test suite and the JavaScript tests.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const WASM_TARGET: &str = "wasm32-unknown-unknown";

fn main() -> ExitCode {
    let task = std::env::args().nth(1).unwrap_or_default();
    let result = match task.as_str() {
        "component" => component().map(|path| println!("wrote {}", path.display())),
        "test" => test(),
        _ => Err(format!(
            "unknown task {task:?}\n\nusage: cargo xtask <task>\n  \
             component   build the breaker component into target/components/\n  \
             test        install what the tests need and run every test"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (the folder above this crate).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Runs a command (in the workspace root unless it names a folder), failing
/// with its description.
fn run(what: &str, command: &mut Command) -> Result<(), String> {
    eprintln!("\n==> {what}");
    if command.get_current_dir().is_none() {
        command.current_dir(root());
    }
    let status = command
        .status()
        .map_err(|e| format!("{what}: could not start {:?}: {e}", command.get_program()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Adds the wasm target when rustup lacks it.
fn ensure_wasm_target() -> Result<(), String> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|e| format!("rustup is needed to add the {WASM_TARGET} target: {e}"))?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|line| line.trim() == WASM_TARGET)
    {
        return Ok(());
    }
    run(
        &format!("adding the {WASM_TARGET} target"),
        Command::new("rustup").args(["target", "add", WASM_TARGET]),
    )
}

/// Builds the CLI (which embeds the component) and has it write the component out.
fn component() -> Result<PathBuf, String> {
    ensure_wasm_target()?;
    run(
        "building the component and the CLI",
        cargo().args(["build", "--release", "-p", "tripswitch"]),
    )?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let out = target.join("components").join("tripswitch.wasm");
    let cli = target.join("release").join("tripswitch");
    run(
        "writing the component",
        Command::new(cli).arg("component").arg("--out").arg(&out),
    )?;
    Ok(out)
}

/// Whether `program` runs (`program --version`).
fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
}

/// Installs a Debian package through apt-get when one of its programs is
/// missing; stops with a clear message when it cannot.
fn ensure_package(package: &str, programs: &[&str], why: &str) -> Result<(), String> {
    let present = |program: &str| installed(program) || Path::new(program).exists();
    if programs.iter().all(|program| present(program)) {
        return Ok(());
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0");
    if !root || !installed("apt-get") {
        return Err(format!(
            "{why} need {}; install them (Debian: apt-get install {package}) and run again",
            programs.join(" and ")
        ));
    }
    run(
        &format!("apt-get update (for {package})"),
        Command::new("apt-get").args(["update", "-qq"]),
    )?;
    run(
        &format!("installing {package}"),
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends", package])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    match programs.iter().find(|program| !present(program)) {
        None => Ok(()),
        Some(missing) => Err(format!(
            "apt-get installed {package}, yet {missing} does not run"
        )),
    }
}

/// Installs the npm package's dependencies and runs its tests (the same
/// scenario files as the Rust tests, through jco in Node).
fn js_test() -> Result<(), String> {
    let js = root().join("js");
    let npm = |args: &[&str]| {
        let mut command = Command::new("npm");
        command.args(args).current_dir(&js);
        command
    };
    if !installed("npm") {
        return Err("the JavaScript tests need Node.js and npm".into());
    }
    run("npm ci (js/)", &mut npm(&["ci", "--no-audit", "--no-fund"]))?;
    run("npm test (js/)", &mut npm(&["test"]))
}

/// Everything CI checks.
fn test() -> Result<(), String> {
    ensure_wasm_target()?;
    ensure_package(
        "redis-server",
        &["redis-server", "redis-cli"],
        "the Redis tests",
    )?;
    ensure_package("chromium", &["/usr/bin/chromium"], "the browser test")?;
    run("rustfmt", cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(
        "clippy",
        cargo().args([
            "clippy",
            "--release",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    run(
        "clippy (the component's own target)",
        cargo().args([
            "clippy",
            "--release",
            "-p",
            "tripswitch-guest",
            "-p",
            "tripswitch-runaway-guest",
            "--target",
            WASM_TARGET,
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    component()?;
    run(
        "tests: guest logic, host library, component integration, CLI",
        cargo().args(["test", "--release", "--workspace"]),
    )?;
    js_test()?;
    eprintln!("\nxtask: every check passed");
    Ok(())
}
