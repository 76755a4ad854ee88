//! The `tripswitch` binary as a user runs it: the demo on a virtual clock,
//! bad options, and writing the component out.

use std::process::{Command, Output};

fn tripswitch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tripswitch"))
        .args(args)
        .output()
        .expect("the tripswitch binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn the_demo_opens_rejects_trials_and_closes() {
    let output = tripswitch(&["demo", "--virtual", "--seed", "7"]);
    assert!(output.status.success(), "{output:?}");
    let text = stdout(&output);
    for expected in [
        "state closed -> open",
        "failed, tripped the breaker",
        "rejected: circuit open; retry after",
        "state open -> half-open",
        "trial #",
        "state half-open -> closed",
        "summary",
        "transitions",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    let calls = text
        .lines()
        .find(|l| l.trim_start().starts_with("calls"))
        .unwrap();
    assert!(calls.ends_with("120"), "{calls}");
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let args = ["demo", "--virtual", "--seed", "11", "--failure-rate", "0.3"];
    let strip = |o: Output| {
        stdout(&o)
            .lines()
            .skip(1) // the header
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(tripswitch(&args)), strip(tripswitch(&args)));
}

#[test]
fn bad_options_name_the_problem() {
    let cases: [(&[&str], &str); 4] = [
        (
            &["demo", "--fail-max", "0"],
            "invalid fail-max: must be at least 1",
        ),
        (
            &["demo", "--outage", "9..3"],
            "the outage ends (3) before it starts (9)",
        ),
        (
            &["demo", "--failure-rate", "1.5"],
            "1.5 is not between 0 and 1",
        ),
        (&["demo", "--interval-ms", "0"], "--interval-ms"),
    ];
    for (args, message) in cases {
        let output = tripswitch(args);
        assert!(!output.status.success(), "{args:?} should fail");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}

#[test]
fn the_component_command_writes_the_embedded_component() {
    let path = std::env::temp_dir().join(format!("tripswitch-cli-{}.wasm", std::process::id()));
    let output = tripswitch(&["component", "--out", path.to_str().unwrap()]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(std::fs::read(&path).unwrap(), tripswitch::COMPONENT);
    std::fs::remove_file(&path).unwrap();
}
