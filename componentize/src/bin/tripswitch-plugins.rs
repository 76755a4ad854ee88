//! Builds the shipped proxy plugins (see `Plugins`) and writes them to a
//! folder; `cargo xtask plugins` runs this.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use tripswitch_componentize::Plugins;
fn main() -> ExitCode {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: tripswitch-plugins <output folder>");
        return ExitCode::FAILURE;
    };
    match build(&out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("tripswitch-plugins: {message}");
            ExitCode::FAILURE
        }
    }
}

fn build(out: &Path) -> Result<(), String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("componentize/ lives in the workspace")?;
    let plugins = Plugins::build(root)?;
    std::fs::create_dir_all(out).map_err(|e| format!("creating {}: {e}", out.display()))?;
    for (name, bytes) in plugins.files() {
        let path = out.join(name);
        std::fs::write(&path, bytes).map_err(|e| format!("writing {}: {e}", path.display()))?;
        println!("{} ({} bytes)", path.display(), bytes.len());
    }
    Ok(())
}
