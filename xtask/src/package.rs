//! `cargo xtask package`: the `tripswitch` crate as crates.io would ship it
//! (the component inside, since the package has no guest to build), checked
//! by building and running a project of its own against it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{cargo, component, root, run, target_dir};

/// What the scratch project runs: a breaker that trips and rejects.
const SCRATCH_MAIN: &str = r#"//! A project of a user's own, on the packaged tripswitch crate.
use std::time::Duration;

use tripswitch::{CallError, CircuitBreaker, ManualClock, State};

fn main() {
    let clock = ManualClock::new(1_000);
    let breaker = CircuitBreaker::builder("scratch")
        .fail_max(2)
        .reset_timeout(Duration::from_secs(1))
        .clock(clock.clone())
        .build()
        .expect("a valid breaker");
    for _ in 0..2 {
        assert!(breaker.call(|| Err::<(), _>("down")).is_err());
    }
    assert_eq!(breaker.state().expect("the state"), State::Open);
    match breaker.call(|| Ok::<_, ()>(1)) {
        Err(CallError::Rejected(rejected)) => {
            assert_eq!(rejected.retry_after(), Some(Duration::from_secs(1)))
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    clock.advance(Duration::from_secs(1));
    assert_eq!(breaker.call(|| Ok::<_, ()>(7)).expect("the trial runs"), 7);
    assert_eq!(breaker.state().expect("the state"), State::Closed);
    let shipped = std::env::args().nth(1).expect("the shipped component's path");
    let shipped = std::fs::read(shipped).expect("the shipped component");
    assert!(tripswitch::COMPONENT == shipped.as_slice(), "the crate embeds what it ships");
    println!("the packaged tripswitch crate works");
}
"#;

/// Packages the crate with the component the guest builds, unpacks it, and
/// builds and runs a scratch project on it; returns the `.crate` file.
pub fn package() -> Result<PathBuf, String> {
    let built = component()?;
    let bytes = std::fs::read(&built).map_err(|e| format!("reading {}: {e}", built.display()))?;
    let shipped = root().join("host").join("component");
    std::fs::create_dir_all(&shipped)
        .and_then(|()| std::fs::write(shipped.join("tripswitch.wasm"), &bytes))
        .map_err(|e| format!("writing {}: {e}", shipped.display()))?;
    run(
        "packaging the tripswitch crate",
        cargo().args([
            "package",
            "-p",
            "tripswitch",
            "--no-verify",
            "--allow-dirty",
            "--quiet",
        ]),
    )?;
    let version = env!("CARGO_PKG_VERSION");
    let packaged = target_dir()
        .join("package")
        .join(format!("tripswitch-{version}.crate"));
    let check = target_dir().join("package-check");
    let _ = std::fs::remove_dir_all(check.join(format!("tripswitch-{version}")));
    std::fs::create_dir_all(&check).map_err(|e| format!("creating {}: {e}", check.display()))?;
    run(
        "unpacking the package",
        // `-m`: the files get the time of unpacking, so that the scratch
        // project's cached build sees a component that changed since.
        Command::new("tar")
            .arg("-xmzf")
            .arg(&packaged)
            .arg("-C")
            .arg(&check),
    )?;
    let unpacked = check.join(format!("tripswitch-{version}"));
    let inside = unpacked.join("component").join("tripswitch.wasm");
    let carried =
        std::fs::read(&inside).map_err(|e| format!("reading {}: {e}", inside.display()))?;
    if carried != bytes {
        return Err(format!(
            "{} is not the component the guest builds ({})",
            inside.display(),
            built.display()
        ));
    }
    scratch(&check, &unpacked, &inside)?;
    Ok(packaged)
}

/// Builds and runs a project outside the workspace that depends on the
/// unpacked crate, as a user's own project would.
fn scratch(check: &Path, unpacked: &Path, component: &Path) -> Result<(), String> {
    let project = check.join("scratch");
    std::fs::create_dir_all(project.join("src"))
        .map_err(|e| format!("creating {}: {e}", project.display()))?;
    let manifest = format!(
        "[package]\nname = \"scratch\"\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n\
         [dependencies]\ntripswitch = {{ path = {:?} }}\n\n\
         # A project of its own, not a member of the tripswitch workspace.\n[workspace]\n",
        unpacked.display().to_string()
    );
    let write = |path: PathBuf, text: &str| {
        std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))
    };
    write(project.join("Cargo.toml"), &manifest)?;
    write(project.join("src").join("main.rs"), SCRATCH_MAIN)?;
    // The workspace's lock pins the same versions, so the build is the one tested here.
    std::fs::copy(root().join("Cargo.lock"), project.join("Cargo.lock"))
        .map_err(|e| format!("copying Cargo.lock: {e}"))?;
    run(
        "tests: a project of its own builds and runs on the packaged crate",
        cargo()
            .args(["run", "--quiet", "--manifest-path"])
            .arg(project.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(check.join("target"))
            .arg("--")
            .arg(component)
            .env_remove("TRIPSWITCH_COMPONENT")
            .current_dir(&project),
    )
}
