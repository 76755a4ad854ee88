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
fn a_failure_rate_trips_where_consecutive_failures_never_reach_fail_max() {
    // Every other call fails while the dependency is down: never two in a row.
    let consecutive = stdout(&tripswitch(&["demo", "--virtual", "--outage-alternating"]));
    assert!(
        !consecutive.contains("state "),
        "fail-max 3 never trips:\n{consecutive}"
    );
    let rated = tripswitch(&[
        "demo",
        "--virtual",
        "--outage-alternating",
        "--failure-rate-threshold",
        "40",
        "--minimum-calls",
        "10",
        "--window-ms",
        "1000",
    ]);
    assert!(rated.status.success(), "{rated:?}");
    let text = stdout(&rated);
    for expected in [
        "failure rate 40 %",
        "state closed -> open (failure-rate)",
        "state half-open -> closed (recovered)",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
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
    let cases: [(&[&str], &str); 5] = [
        (
            &["demo", "--fail-max", "0"],
            "invalid fail-max: must be at least 1",
        ),
        (
            &["demo", "--failure-rate-threshold", "150"],
            "invalid failure-rate-threshold: must be a percentage from 1 to 100",
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

mod shared_store {
    //! The operator commands and the demo against a real Redis.

    use super::{stdout, tripswitch};
    use tripswitch_testkit::RedisServer;

    fn redis_args(server: &RedisServer) -> Vec<String> {
        vec![
            "--redis".into(),
            server.url(),
            "--namespace".into(),
            "cli".into(),
        ]
    }

    fn run(args: &[&str], server: &RedisServer) -> std::process::Output {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.extend(redis_args(server));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        tripswitch(&refs)
    }

    #[test]
    fn operators_change_and_read_a_shared_breaker() {
        let server = RedisServer::start();
        let empty = run(&["status"], &server);
        assert!(stdout(&empty).contains("no breakers in Redis"), "{empty:?}");

        let opened = run(&["force-open", "payments"], &server);
        assert!(opened.status.success(), "{opened:?}");
        assert_eq!(stdout(&opened).trim(), "payments: closed -> forced-open");
        let table = stdout(&run(&["status"], &server));
        let row = table.lines().find(|l| l.starts_with("payments")).unwrap();
        assert!(row.contains("forced-open"), "{table}");

        for (command, state) in [
            ("open", "open"),
            ("half-open", "half-open"),
            ("disable", "disabled"),
            ("close", "closed"),
        ] {
            let out = run(&[command, "payments"], &server);
            assert!(out.status.success(), "{command}: {out:?}");
            assert!(
                stdout(&out).trim().ends_with(&format!("-> {state}")),
                "{command}: {out:?}"
            );
        }
        run(&["open", "search"], &server);
        let json = stdout(&run(&["status", "--json"], &server));
        let rows: serde_json::Value = serde_json::from_str(&json).unwrap();
        let states: Vec<(&str, &str)> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["name"].as_str().unwrap(), r["state"].as_str().unwrap()))
            .collect();
        assert_eq!(states, vec![("payments", "closed"), ("search", "open")]);
        let one = stdout(&run(&["status", "search"], &server));
        assert!(one.contains(" ms"), "time until the trial: {one}");
        assert!(!one.contains('~'), "the record keeps its trial time: {one}");
    }

    #[test]
    fn status_watch_redraws_the_table_until_interrupted() {
        use std::io::Read;
        let server = RedisServer::start();
        run(&["force-open", "payments"], &server);
        let mut args = vec!["status".to_string(), "--watch".to_string()];
        args.extend(redis_args(&server));
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tripswitch"))
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        // Read until a second frame has begun (a change between them shows).
        let mut seen = String::new();
        let mut buffer = [0u8; 4096];
        let mut changed = false;
        while seen.matches("\x1b[H\x1b[2J").count() < 3 {
            let n = stdout.read(&mut buffer).unwrap();
            assert!(n > 0, "the watch ended by itself: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buffer[..n]));
            if !changed && seen.contains("forced-open") {
                run(&["close", "payments"], &server);
                changed = true;
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let frames: Vec<&str> = seen
            .split("\x1b[H\x1b[2J")
            .filter(|f| !f.is_empty())
            .collect();
        assert!(frames[0].contains("forced-open"), "{seen}");
        assert!(
            frames[1].contains("NAME"),
            "each frame is the whole table: {seen}"
        );
        assert!(
            frames.iter().any(|f| f
                .lines()
                .any(|l| l.starts_with("payments") && l.contains("closed"))),
            "the table follows the store: {seen}"
        );
    }

    #[test]
    fn two_demos_on_one_redis_share_one_breaker() {
        let server = RedisServer::start();
        let args = |seed: &str| {
            let mut all = vec![
                "demo",
                "--virtual",
                "--seed",
                seed,
                "--duration-ms",
                "1500",
                "--outage",
                "0..1500",
            ];
            all.extend(["--redis", "", "--namespace", "demos"]);
            all.iter().map(|s| s.to_string()).collect::<Vec<String>>()
        };
        let url = server.url();
        let mut outputs = Vec::new();
        for seed in ["1", "2"] {
            let mut list = args(seed);
            let at = list.iter().position(|a| a == "--redis").unwrap() + 1;
            list[at] = url.clone();
            let refs: Vec<&str> = list.iter().map(String::as_str).collect();
            outputs.push(stdout(&tripswitch(&refs)));
        }
        // The first demo tripped the breaker; the second finds it open at its first call.
        assert!(
            outputs[0].contains("state closed -> open"),
            "{}",
            outputs[0]
        );
        let first_call = outputs[1].lines().find(|l| l.contains("#1 ")).unwrap();
        assert!(first_call.contains("rejected"), "{}", outputs[1]);
        let demos = tripswitch(&["status", "--redis", &url, "--namespace", "demos"]);
        assert!(stdout(&demos).contains("dependency"), "{demos:?}");
    }
}

mod repairs {
    //! Operators on records that are not what they should be.

    use super::{stdout, tripswitch};
    use tripswitch_testkit::RedisServer;

    #[test]
    fn an_operator_repairs_a_corrupt_record_and_status_shows_the_rest() {
        let server = RedisServer::start();
        let url = server.url();
        let with = |args: &[&str]| {
            let mut all = args.to_vec();
            all.extend(["--redis", url.as_str(), "--namespace", "fix"]);
            tripswitch(&all)
        };
        assert!(with(&["open", "good"]).status.success());
        server.cli(&["HSET", "{fix:tripswitch:broken}", "v", "3", "d", "\x01"]);
        let status = with(&["status"]);
        assert!(!status.status.success(), "a bad record is an error");
        assert!(
            stdout(&status).contains("good"),
            "the readable breakers still show"
        );
        let stderr = String::from_utf8_lossy(&status.stderr).into_owned();
        assert!(
            stderr.contains("broken: corrupt record: breaker \"broken\": stored record is corrupt"),
            "{stderr}"
        );

        let repaired = with(&["close", "broken"]);
        assert!(repaired.status.success(), "{repaired:?}");
        assert_eq!(stdout(&repaired).trim(), "broken: unreadable -> closed");
        assert!(with(&["status"]).status.success());

        let typo = with(&["force-open", "goood"]);
        let note = String::from_utf8_lossy(&typo.stderr).into_owned();
        assert!(
            note.contains("no breaker named \"goood\" was stored"),
            "{note}"
        );
    }

    #[test]
    fn a_record_past_year_9999_shows_beside_the_others() {
        use tripswitch::{Action, CircuitBreaker, ManualClock, RedisStorage};
        let server = RedisServer::start();
        let url = server.url();
        let storage = RedisStorage::builder(url.as_str())
            .namespace("far")
            .build()
            .unwrap();
        // Opened in year 10000, by a clock far ahead.
        let far = CircuitBreaker::builder("far")
            .storage(storage)
            .clock(ManualClock::new(253_402_300_800_000))
            .build()
            .unwrap();
        far.operate(Action::Open).unwrap();
        let with = |args: &[&str]| {
            let mut all = args.to_vec();
            all.extend(["--redis", url.as_str(), "--namespace", "far"]);
            tripswitch(&all)
        };
        assert!(with(&["open", "near"]).status.success());
        let status = with(&["status"]);
        assert!(status.status.success(), "{status:?}");
        let table = stdout(&status);
        let row = |name: &str| {
            table
                .lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("no {name} in {table}"))
                .to_owned()
        };
        assert!(
            row("far").contains("253402300800000 ms (past year 9999)"),
            "{table}"
        );
        assert!(row("near").contains("open"), "{table}");
    }
}

#[test]
fn the_demo_goes_on_while_its_redis_is_down() {
    let url = format!("redis://127.0.0.1:{}/", tripswitch_testkit::free_port());
    let output = tripswitch(&["demo", "--virtual", "--duration-ms", "200", "--redis", &url]);
    assert!(output.status.success(), "{output:?}");
    let text = stdout(&output);
    // The default fallback (closed) admits every call, degraded; a success
    // needs no report, a failure cannot be recorded.
    assert_eq!(
        text.matches("(admitted by the fallback: breaker \"dependency\": storage load failed")
            .count(),
        4,
        "{text}"
    );
    assert_eq!(text.matches("(not recorded: storage").count(), 1, "{text}");
    assert!(text.contains("Connection refused"), "{text}");
}

mod production_redis {
    //! The operator commands and status through TLS and through Sentinel.

    use super::{stdout, tripswitch};
    use tripswitch_testkit::tls::{Pki, tls_server};
    use tripswitch_testkit::{RedisServer, SENTINEL_MASTER, Sentinels};

    #[test]
    fn status_and_operators_reach_redis_over_tls() {
        let dir = std::env::temp_dir().join(format!("tripswitch-cli-tls-{}", std::process::id()));
        let pki = Pki::make(&dir);
        let (_server, port) = tls_server(&pki, "yes");
        let url = format!("rediss://:pw@127.0.0.1:{port}/");
        let ca = pki.file("ca.pem");
        let (cert, key) = (pki.file("client.pem"), pki.file("client.key"));
        let tls = [
            "--redis",
            &url,
            "--tls-ca",
            &ca,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ];
        let opened = tripswitch(&[&["force-open", "payments"], &tls[..]].concat());
        assert!(opened.status.success(), "{opened:?}");
        let table = stdout(&tripswitch(&[&["status"], &tls[..]].concat()));
        assert!(
            table.contains("payments") && table.contains("forced-open"),
            "{table}"
        );
        // Without the client certificate the server refuses the session.
        let refused = tripswitch(&["status", "--redis", &url, "--tls-ca", &ca]);
        assert!(!refused.status.success());
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            !stderr.contains(":pw@"),
            "no password in messages: {stderr}"
        );
        let half = tripswitch(&["status", "--redis", &url, "--tls-cert", &cert]);
        assert!(!half.status.success());
        assert!(String::from_utf8_lossy(&half.stderr).contains("--tls-key"));
    }

    #[test]
    fn status_and_operators_reach_the_master_through_sentinel() {
        let primary = RedisServer::start();
        let sentinels = Sentinels::start(primary.port, 0, None);
        let mut args = vec!["--master-name".to_string(), SENTINEL_MASTER.to_string()];
        for url in sentinels.urls(None) {
            args.extend(["--sentinel".to_string(), url]);
        }
        let with = |command: &[&str]| {
            let all: Vec<&str> = command
                .iter()
                .copied()
                .chain(args.iter().map(String::as_str))
                .collect();
            tripswitch(&all)
        };
        let opened = with(&["open", "search"]);
        assert!(opened.status.success(), "{opened:?}");
        assert_eq!(primary.cli(&["EXISTS", "{tripswitch:search}"]).trim(), "1");
        let table = stdout(&with(&["status"]));
        let row = table
            .lines()
            .find(|l| l.starts_with("search"))
            .unwrap_or_default();
        assert!(row.contains("open"), "{table}");
        let unknown = tripswitch(&[
            "status",
            "--sentinel",
            &sentinels.urls(None)[0],
            "--master-name",
            "no-such-master",
        ]);
        assert!(!unknown.status.success());
        let stderr = String::from_utf8_lossy(&unknown.stderr);
        assert!(
            stderr.contains("\"no-such-master\" via Sentinel")
                && stderr.contains("asking Sentinel"),
            "{stderr}"
        );
        let lonely = tripswitch(&["status", "--master-name", SENTINEL_MASTER]);
        assert!(!lonely.status.success(), "--master-name needs --sentinel");
    }
}
