//! The Python package (python/): built by `pip install ./python` (maturin,
//! in the workspace's target folder) into a virtualenv under `target/`, then
//! its pytest suite, or its benchmark beside pybreaker.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{apt_install, root, run, target_dir};

/// What the tests and the benchmark install beside the package.
const PYTEST: &str = "pytest==9.2.0";
const REDIS_PY: &str = "redis==8.1.0";
/// The pybreaker the benchmark compares with.
const PYBREAKER: &str = "pybreaker==1.4.1";

/// Makes a virtualenv at `path` (Debian keeps ensurepip apart from python3:
/// apt's python3-venv then); `why` says who needs it.
pub fn venv(path: &Path, why: &str) -> Result<(), String> {
    let make = || {
        Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(path)
            .status()
            .is_ok_and(|s| s.success())
    };
    if make() {
        return Ok(());
    }
    apt_install("python3-venv", &format!("{why} need python3 -m venv"))?;
    if make() {
        Ok(())
    } else {
        Err(format!("python3 -m venv {} failed", path.display()))
    }
}

/// The virtualenv with the package built from python/ and `extra` installed.
fn prepared(extra: &[&str]) -> Result<PathBuf, String> {
    let venv = target_dir().join("python-venv");
    if !venv.join("bin").join("pip").exists() {
        self::venv(&venv, "the Python package's tests")?;
    }
    run(
        "pip install ./python (maturin builds the extension in target/)",
        Command::new(venv.join("bin").join("pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .arg("--force-reinstall")
            .arg("--no-deps")
            .arg(root().join("python")),
    )?;
    run(
        &format!("installing {} into the virtualenv", extra.join(" ")),
        Command::new(venv.join("bin").join("pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .args(extra),
    )?;
    Ok(venv)
}

/// Runs the Python package's tests (after the workspace's, whose build has
/// the Rust worker the cross-process test starts).
pub fn test() -> Result<(), String> {
    let venv = prepared(&[PYTEST, REDIS_PY])?;
    run(
        "pytest (python/)",
        Command::new(venv.join("bin").join("pytest"))
            .args(["-q", "tests"])
            .env(
                "TRIPSWITCH_WORKER",
                target_dir().join("release").join("tripswitch-worker"),
            )
            .current_dir(root().join("python")),
    )
}

/// Runs python/bench/compare.py: tripswitch beside pybreaker in one run.
pub fn bench() -> Result<(), String> {
    let venv = prepared(&[REDIS_PY, PYBREAKER])?;
    run(
        "the Python benchmark (tripswitch beside pybreaker)",
        Command::new(venv.join("bin").join("python"))
            .arg(root().join("python").join("bench").join("compare.py")),
    )
}
