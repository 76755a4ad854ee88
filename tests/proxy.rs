//! `tripswitch proxy` as an operator runs it: real processes and real HTTP on
//! loopback. A flaky upstream of the test's own (its answer set by the test,
//! its hits counted) sits behind one or two proxies; failures open the
//! circuit, rejections carry `Retry-After`, a trial after it closes the
//! circuit, two proxies on one Redis share one breaker, `--metrics` serves
//! what the plugin counted (scraped and parsed as Prometheus text), and bad
//! settings stop the proxy before it listens.

#[allow(dead_code)]
mod proxy_harness;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use proxy_harness::*;
use tripswitch::telemetry::names;
use tripswitch_testkit::Upstream;
use tripswitch_tests::{RedisServer, free_port};

#[test]
fn failures_open_the_circuit_and_a_trial_closes_it() {
    let upstream = Upstream::start();
    let proxy = Proxy::start(&upstream.url(), &[]);

    assert_eq!(proxy.get("/healthy?x=1").status, 200);
    upstream.answer(500);
    for _ in 0..FAIL_MAX {
        let reply = proxy.get("/orders");
        assert_eq!(reply.status, 500, "{reply:?}");
        assert_eq!(reply.body, "upstream says 500\n");
    }
    assert_eq!(upstream.hits(), 1 + FAIL_MAX);
    proxy.wait_for_stderr("tripswitch: breaker upstream: closed -> open");

    // Open: rejected at the proxy, the upstream hears nothing.
    let rejected = proxy.get("/orders");
    assert_eq!(rejected.status, 503, "{rejected:?}");
    let retry_after = retry_after(&rejected);
    assert_eq!(proxy.get("/orders").status, 503);
    assert_eq!(upstream.hits(), 1 + FAIL_MAX);

    // After the reset timeout, one trial with a healthy upstream closes it.
    upstream.answer(200);
    wait_retry_after(retry_after);
    let trial = proxy.get("/orders");
    assert_eq!(trial.status, 200, "{trial:?}");
    assert_eq!(trial.body, "upstream says 200\n");
    proxy.wait_for_stderr("-> closed");
    for _ in 0..5 {
        assert_eq!(proxy.get("/orders").status, 200);
    }
    assert_eq!(upstream.hits(), 1 + FAIL_MAX + 1 + 5);
}

#[test]
fn metrics_tell_what_the_plugin_counted_and_read_the_state_when_scraped() {
    let upstream = Upstream::start();
    let proxy = Proxy::start(&upstream.url(), &["--metrics", "127.0.0.1:0"]);

    // The configured breaker shows from the first scrape, before any request.
    let first = proxy.scrape();
    assert_eq!(first.state(), "closed");
    assert_eq!(first.get(names::CALLS, &[("outcome", "success")]), None);
    assert_eq!(first.value(names::WINDOW_CALLS, &[]), 0.0);
    assert!(first.value(names::FAILURE_RATE, &[]).is_nan());

    assert_eq!(proxy.get("/").status, 200);
    upstream.answer(500);
    for _ in 0..FAIL_MAX {
        assert_eq!(proxy.get("/").status, 500);
    }
    let rejected = proxy.get("/");
    assert_eq!(rejected.status, 503, "{rejected:?}");
    assert_eq!(proxy.get("/").status, 503);

    let open = proxy.scrape();
    assert_eq!(open.value(names::ADMITTED, &[]), 1.0 + FAIL_MAX as f64);
    assert_eq!(open.value(names::CALLS, &[("outcome", "success")]), 1.0);
    assert_eq!(
        open.value(names::CALLS, &[("outcome", "failure")]),
        FAIL_MAX as f64
    );
    assert_eq!(open.value(names::NOT_PERMITTED, &[("reason", "open")]), 2.0);
    assert_eq!(open.state(), "open");
    assert_eq!(open.transitions("closed", "open", false), 1.0);

    // The timeout elapses with no request: the gauge, read at the scrape,
    // says half-open; nothing was counted meanwhile.
    wait_retry_after(retry_after(&rejected));
    let elapsed = proxy.scrape();
    assert_eq!(elapsed.state(), "half-open");
    assert_eq!(elapsed.transitions("open", "half-open", false), 0.0);

    upstream.answer(200);
    assert_eq!(proxy.get("/").status, 200);
    let closed = proxy.scrape();
    assert_eq!(closed.state(), "closed");
    assert_eq!(closed.value(names::CALLS, &[("outcome", "success")]), 2.0);
    assert_eq!(closed.value(names::ADMITTED, &[]), 2.0 + FAIL_MAX as f64);
    assert_eq!(closed.get(names::CALLS, &[("outcome", "ignored")]), None);
    assert_eq!(closed.transitions("open", "half-open", false), 1.0);
    assert_eq!(closed.transitions("half-open", "closed", false), 1.0);
    assert_eq!(closed.transitions("closed", "open", false), 1.0);

    // The listener serves /metrics, and only to GET and HEAD.
    assert_eq!(proxy.metrics_request("GET", "/").status, 404);
    let post = proxy.metrics_request("POST", "/metrics");
    assert_eq!(post.status, 405, "{post:?}");
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
}

#[test]
fn two_proxies_on_one_redis_share_one_breaker() {
    let redis = RedisServer::start();
    let upstream = Upstream::start();
    let shared = [
        "--redis",
        &redis.url(),
        "--namespace",
        "proxy-test",
        "--metrics",
        "127.0.0.1:0",
    ];
    let a = Proxy::start(&upstream.url(), &shared);
    let b = Proxy::start(&upstream.url(), &shared);

    // Failures through either add up: FAIL_MAX - 1 through A, the last through B.
    upstream.answer(500);
    for _ in 1..FAIL_MAX {
        assert_eq!(a.get("/").status, 500);
    }
    assert_eq!(b.get("/").status, 500);
    assert_eq!(upstream.hits(), FAIL_MAX);
    b.wait_for_stderr("closed -> open");

    // Both reject, and the upstream hears nothing.
    let from_a = a.get("/");
    let from_b = b.get("/");
    assert_eq!((from_a.status, from_b.status), (503, 503));
    a.wait_for_stderr("tripswitch: breaker upstream: closed -> open (changed elsewhere)");
    assert_eq!(upstream.hits(), FAIL_MAX);

    // A trial through A closes the breaker for B too.
    upstream.answer(200);
    wait_retry_after(retry_after(&from_a).max(retry_after(&from_b)));
    assert_eq!(a.get("/").status, 200);
    a.wait_for_stderr("-> closed");
    assert_eq!(b.get("/").status, 200);
    assert_eq!(b.get("/").status, 200);
    assert_eq!(upstream.hits(), FAIL_MAX + 3);

    // Summed over the fleet, the changes made here (remote="false") count
    // each change once; A saw B's trip as made elsewhere.
    let (a, b) = (a.scrape(), b.scrape());
    for (from, to) in [
        ("closed", "open"),
        ("open", "half-open"),
        ("half-open", "closed"),
    ] {
        let made = a.transitions(from, to, false) + b.transitions(from, to, false);
        assert_eq!(made, 1.0, "{from} -> {to}");
    }
    assert_eq!(b.transitions("closed", "open", false), 1.0);
    assert_eq!(a.transitions("closed", "open", true), 1.0);
    assert_eq!((a.state(), b.state()), ("closed".into(), "closed".into()));
}

#[test]
fn an_upstream_that_is_down_counts_as_a_failure() {
    // Nobody listens on this port: every connection is refused.
    let down = format!("http://127.0.0.1:{}", free_port());
    let proxy = Proxy::start(&down, &[]);
    for _ in 0..FAIL_MAX {
        let reply = proxy.get("/");
        assert_eq!(reply.status, 502, "{reply:?}");
        assert!(reply.body.contains("ConnectionRefused"), "{reply:?}");
    }
    proxy.wait_for_stderr("closed -> open");
    let rejected = proxy.get("/");
    assert_eq!(rejected.status, 503, "{rejected:?}");
    retry_after(&rejected);
}

#[test]
fn an_upstream_that_does_not_answer_in_time_counts_as_a_failure() {
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding");
    let silent = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let held: Vec<TcpStream> = listener.incoming().map_while(Result::ok).collect();
        drop(held);
    });
    // The plugin given explicitly: the same middleware the binary embeds.
    let plugin = Path::new(env!("OUT_DIR")).join("tripswitch-middleware.wasm");
    let plugin = plugin.to_str().expect("a UTF-8 path");
    let proxy = Proxy::start(
        &silent,
        &["--upstream-timeout-ms", "200", "--plugin", plugin],
    );
    for _ in 0..FAIL_MAX {
        let reply = proxy.get("/");
        assert_eq!(reply.status, 504, "{reply:?}");
    }
    proxy.wait_for_stderr("closed -> open");
    let rejected = proxy.get("/");
    assert_eq!(rejected.status, 503, "{rejected:?}");
    assert_eq!(rejected.header("x-tripswitch"), Some("open"));
}

/// A plugin that loops fails the requests its instance serves with 500; the
/// proxy goes on, and the next request gets a new instance. (The plugin here
/// is the test service itself, served as `--plugin`: `/loop` spins.)
#[test]
fn a_looping_plugin_fails_its_own_request_and_the_proxy_lives() {
    let upstream = Upstream::start();
    let plugin = Path::new(env!("OUT_DIR")).join("service.wasm");
    let plugin = plugin.to_str().expect("a UTF-8 path");
    let proxy = Proxy::start(&upstream.url(), &["--plugin", plugin]);
    assert_eq!(proxy.get("/").status, 200);
    let looped = proxy.get("/loop");
    assert_eq!(looped.status, 500, "{looped:?}");
    proxy.wait_for_stderr("without calling the proxy");
    for _ in 0..3 {
        assert_eq!(proxy.get("/").status, 200, "the proxy serves on");
    }
}

/// Starts a proxy that must refuse to start; returns its stderr.
fn refused(upstream: &str, extra: &[&str], env: &[(&str, &str)]) -> String {
    let mut child = proxy_command(upstream, extra, env)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting tripswitch proxy");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the proxy") {
            break status;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("{env:?} {extra:?} {upstream}: the proxy started instead of failing");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        !status.success(),
        "{env:?} {extra:?} {upstream}: exited {status}"
    );
    stderr
}

#[test]
fn a_plugin_that_cannot_be_served_stops_the_proxy_at_start() {
    let upstream = "http://127.0.0.1:9";
    let stderr = refused(upstream, &["--plugin", "/nowhere/plugin.wasm"], &[]);
    assert!(stderr.contains("reading /nowhere/plugin.wasm"), "{stderr}");
    let not_wasm = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let stderr = refused(upstream, &["--plugin", not_wasm], &[]);
    assert!(stderr.contains("is not a loadable component"), "{stderr}");
    let stderr = refused(upstream, &["--upstream-timeout-ms", "0"], &[]);
    assert!(stderr.contains("--upstream-timeout-ms"), "{stderr}");
}

#[test]
fn bad_settings_stop_the_proxy_at_start() {
    let upstream = "http://127.0.0.1:9";
    // (variables, --upstream, what stderr must say)
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a [&'a str]);
    let cases: [Case; 5] = [
        (
            &[("TRIPSWITCH_FAIL_MAXX", "3")],
            upstream,
            &["TRIPSWITCH_FAIL_MAXX", "unknown setting"],
        ),
        (
            &[("TRIPSWITCH_FAIL_MAX", "abc")],
            upstream,
            &["TRIPSWITCH_FAIL_MAX", "\"abc\" is not a whole number"],
        ),
        (
            &[("TRIPSWITCH_FAIL_MAX", "0")],
            upstream,
            &[
                "TRIPSWITCH_FAIL_MAX",
                "invalid fail-max: must be at least 1",
            ],
        ),
        (
            &[("TRIPSWITCH_RESET_TIMEOUT_MS", "0")],
            upstream,
            &["TRIPSWITCH_RESET_TIMEOUT_MS", "invalid reset-timeout-ms"],
        ),
        (
            &[],
            "ftp://127.0.0.1:9",
            &["--upstream", "http://HOST:PORT"],
        ),
    ];
    for (env, upstream, expected) in cases {
        let stderr = refused(upstream, &[], env);
        for text in expected {
            assert!(stderr.contains(text), "{env:?} {upstream}: {stderr}");
        }
    }
}
