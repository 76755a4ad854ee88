//! `cargo xtask bench-telemetry`: the host's `call` bench built without the
//! `metrics` and `tracing` features and with them (no recorder or
//! subscriber installed), run alternately in one sitting; prints a table.

use std::collections::BTreeMap;

use crate::{cargo, run, target_dir};

/// The calls compared, as the bench names them.
const CALLS: [&str; 3] = ["success", "failure", "rejection"];
/// How many times each build runs.
const ROUNDS: usize = 3;

/// Criterion's mean for `call/<name>` from its last run, in ns.
fn mean(name: &str) -> Result<f64, String> {
    let path = target_dir()
        .join("criterion")
        .join("call")
        .join(name)
        .join("new")
        .join("estimates.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    // {"mean":{"confidence_interval":{...},"point_estimate":X,...
    let at = text
        .find("\"point_estimate\":")
        .ok_or_else(|| format!("{}: no point_estimate", path.display()))?;
    let rest = &text[at + "\"point_estimate\":".len()..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end]
        .parse()
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Runs both builds alternately and prints the ranges of their means.
pub fn telemetry() -> Result<(), String> {
    let filter = format!("^call/({})$", CALLS.join("|"));
    let mut means: BTreeMap<(&str, &str), Vec<f64>> = BTreeMap::new();
    for round in 0..ROUNDS {
        for (label, features) in [("without", None), ("with", Some("metrics,tracing"))] {
            let mut command = cargo();
            command.args(["bench", "-p", "tripswitch", "--bench", "call"]);
            if let Some(features) = features {
                command.args(["--features", features]);
            }
            command.args(["--", &filter]);
            run(
                &format!("bench round {}: {label} metrics and tracing", round + 1),
                &mut command,
            )?;
            for call in CALLS {
                means.entry((call, label)).or_default().push(mean(call)?);
            }
        }
    }
    let range = |values: &[f64]| {
        let low = values.iter().copied().fold(f64::INFINITY, f64::min);
        let high = values.iter().copied().fold(0.0, f64::max);
        format!("{low:.1}-{high:.1} ns")
    };
    println!("| call | without the features | with them, nothing installed |");
    println!("|---|---|---|");
    for call in CALLS {
        println!(
            "| {call} | {} | {} |",
            range(&means[&(call, "without")]),
            range(&means[&(call, "with")])
        );
    }
    Ok(())
}
