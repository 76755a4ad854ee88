//! `tripswitch proxy` in front of an upstream, and Envoy with and without
//! the tripswitch filter, beside the upstream alone, in one run: requests
//! per second and latency (p50, p99) measured by wrk.
//!
//! `cargo bench -p tripswitch-tests --bench proxy`. Installs `wrk` with
//! apt-get when it is missing (as root; otherwise it says what to install). The upstream is a hyper server on one thread that
//! answers 200 with a short body; the proxy keeps its breaker in memory, or
//! in a redis-server the bench starts; Envoy (one worker) is the one
//! `cargo xtask test` installs, with the README's `envoy.yaml`.

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use tripswitch_testkit::envoy::{Envoy, Setup};
use tripswitch_tests::{RedisServer, tripswitch_binary};

/// The Envoy filter the build script built.
const FILTER: &str = concat!(env!("OUT_DIR"), "/tripswitch-envoy.wasm");

/// One Envoy worker in front of `upstream`, with the filter (defaults) or without.
fn envoy(upstream: SocketAddr, filter: bool) -> Envoy {
    Envoy::start(&Setup {
        filter: filter.then(|| (Path::new(FILTER), r#"{"breaker": "bench"}"#)),
        upstream_port: upstream.port(),
        concurrency: 1,
        route_timeout: Duration::from_secs(5),
        reloadable: false,
    })
}

/// How long wrk runs each case.
const SECONDS: u32 = 5;

/// Serves `200 ok` on a loopback port from a thread of its own.
fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding the upstream");
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let service = service_fn(|_: Request<hyper::body::Incoming>| async {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    addr
}

/// A `tripswitch proxy` process in front of `upstream`; killed when dropped.
struct Proxy(Child, SocketAddr);

impl Proxy {
    fn start(upstream: SocketAddr, extra: &[&str]) -> Proxy {
        let mut child = Command::new(tripswitch_binary())
            .args(["proxy", "--listen", "127.0.0.1:0", "--upstream"])
            .arg(format!("http://{upstream}"))
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting tripswitch proxy");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("tripswitch proxy exited before listening")
                .unwrap();
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let addr = rest.split([',', ' ', '/']).next().unwrap();
                break addr.parse().expect("the address the proxy printed");
            }
        };
        std::thread::spawn(move || lines.for_each(drop));
        Proxy(child, addr)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// wrk's requests/s, p50 and p99 (µs) against `addr` with `connections`.
fn wrk(addr: SocketAddr, connections: u32) -> (f64, f64, f64) {
    let output = Command::new("wrk")
        .args(["--latency", "-t1"])
        .arg(format!("-c{connections}"))
        .arg(format!("-d{SECONDS}s"))
        .arg(format!("http://{addr}/"))
        .output()
        .unwrap_or_else(|e| panic!("wrk is needed (Debian: apt-get install wrk): {e}"));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "wrk failed: {text}");
    let non_2xx = text.contains("Non-2xx");
    assert!(!non_2xx, "some requests failed: {text}");
    let field = |prefix: &str| {
        text.lines()
            .find_map(|line| line.trim().strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in wrk's output: {text}"))
            .trim()
            .to_owned()
    };
    let rps: f64 = field("Requests/sec:").parse().unwrap();
    (rps, micros(&field("50%")), micros(&field("99%")))
}

/// wrk's "123.45us" / "1.20ms" / "2.00s" in µs.
fn micros(value: &str) -> f64 {
    let (number, scale) = if let Some(n) = value.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = value.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = value.strip_suffix('s') {
        (n, 1e6)
    } else {
        panic!("a latency like 12.3us: {value:?}");
    };
    number.parse::<f64>().unwrap() * scale
}

/// Installs wrk through apt-get unless it runs already.
fn ensure_wrk() {
    let runs = || Command::new("wrk").arg("-v").output().is_ok();
    if runs() {
        return;
    }
    eprintln!("installing wrk (apt-get install wrk)");
    for args in [
        &["update", "-qq"][..],
        &["install", "-y", "-qq", "--no-install-recommends", "wrk"][..],
    ] {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "the bench needs wrk and could not install it: run `apt-get install wrk` as root"
        );
    }
    assert!(runs(), "wrk was installed but does not run");
}

fn main() {
    // `cargo bench` passes --bench; nothing else to parse.
    ensure_wrk();
    let upstream = upstream();
    let redis = RedisServer::start();
    let memory = Proxy::start(upstream, &[]);
    let shared = Proxy::start(upstream, &["--redis", &redis.url()]);
    let envoy_alone = envoy(upstream, false);
    let envoy_filter = envoy(upstream, true);
    println!("| connections | path | requests/s | p50 | p99 |");
    println!("|---|---|---|---|---|");
    for connections in [1, 16] {
        for (path, addr) in [
            ("upstream alone", upstream),
            ("tripswitch proxy, memory", memory.1),
            ("tripswitch proxy, Redis", shared.1),
            ("Envoy, no filter", envoy_alone.addr()),
            ("Envoy + tripswitch filter", envoy_filter.addr()),
        ] {
            // Warm up: connections, instances, caches.
            let _ = wrk_warm(addr);
            let (rps, p50, p99) = wrk(addr, connections);
            println!("| {connections} | {path} | {rps:.0} | {p50:.0} µs | {p99:.0} µs |");
        }
    }
}

/// A short run whose figures are thrown away.
fn wrk_warm(addr: SocketAddr) -> std::io::Result<std::process::Output> {
    Command::new("wrk")
        .args(["-t1", "-c4", "-d1s"])
        .arg(format!("http://{addr}/"))
        .output()
}
