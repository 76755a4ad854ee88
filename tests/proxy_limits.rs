//! `tripswitch proxy` against hostile clients, as real processes on
//! loopback: a client that sends its body slowly or cuts it short gets 408
//! and counts as ignored (no client opens the breaker for everyone), sockets
//! that never finish a header cannot keep others out even with few files to
//! spare, requests beyond `--max-in-flight` get 503 uncounted, and an
//! upstream cannot pass for a breaker refusal.

#[allow(dead_code)]
mod proxy_harness;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use proxy_harness::*;
use tripswitch::telemetry::names;
use tripswitch_testkit::http::{self, Response};
use tripswitch_testkit::{Behaviour, Upstream};

/// A request whose head promises 100 bytes of body, and the first 10.
const PARTIAL_UPLOAD: &[u8] =
    b"POST /upload HTTP/1.1\r\nhost: proxy\r\ncontent-length: 100\r\n\r\n0123456789";

/// Scrapes until `metric{labels}` reads `value` (the plugin counts a
/// request once its answer is sent); panics after 5 s.
fn wait_for_count(proxy: &Proxy, metric: &str, labels: &[(&str, &str)], value: f64) -> Scrape {
    let start = Instant::now();
    loop {
        let scrape = proxy.scrape();
        if scrape.get(metric, labels) == Some(value) {
            return scrape;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{metric}{labels:?} never read {value}: {:?}",
            scrape.get(metric, labels)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn slow_and_cut_bodies_are_the_clients_and_count_as_ignored() {
    let upstream = Upstream::start();
    let proxy = Proxy::start(
        &upstream.url(),
        &["--body-timeout-ms", "1000", "--metrics", "127.0.0.1:0"],
    );
    // More slow uploads than fail-max: each is answered 408 once the body
    // timeout passes.
    for _ in 0..FAIL_MAX {
        let mut slow = TcpStream::connect(proxy.addr()).unwrap();
        slow.write_all(PARTIAL_UPLOAD).unwrap();
        let reply = http::read_response(&mut slow).unwrap();
        assert_eq!(reply.status, 408, "{reply:?}");
        assert_eq!(reply.header("x-tripswitch"), None, "{reply:?}");
    }
    // A body cut short: the client goes away mid-upload.
    let mut cut = TcpStream::connect(proxy.addr()).unwrap();
    cut.write_all(PARTIAL_UPLOAD).unwrap();
    cut.shutdown(std::net::Shutdown::Both).unwrap();
    drop(cut);

    let ignored = FAIL_MAX as f64 + 1.0;
    let scrape = wait_for_count(&proxy, names::CALLS, &[("outcome", "ignored")], ignored);
    assert_eq!(scrape.get(names::CALLS, &[("outcome", "failure")]), None);
    assert_eq!(scrape.state(), "closed");
    let reply = proxy.get("/");
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        upstream.hits(),
        1,
        "no partial body reached the upstream whole"
    );
}

#[test]
fn sockets_that_never_finish_a_header_keep_no_one_out() {
    let upstream = Upstream::start();
    // 256 files: the proxy fits its caps under them (96 connections).
    let proxy =
        Proxy::start_with_open_files(256, &upstream.url(), &["--header-timeout-ms", "3000"]);
    let stalled: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut socket = TcpStream::connect(proxy.addr()).unwrap();
            socket.write_all(b"GET / HTTP/1.1\r\nhost: pro").unwrap();
            socket
        })
        .collect();
    // A client with a whole request is served before the header timeout
    // would have freed anything: it took the place of an idle connection.
    let start = Instant::now();
    let reply = proxy.get("/");
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "served only after {:?}: the stalled sockets kept it out",
        start.elapsed()
    );
    // The header timeout closes a socket that never finishes its header.
    let mut last = stalled.into_iter().last().unwrap();
    last.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut rest = Vec::new();
    let closed = last.read_to_end(&mut rest);
    assert!(
        closed.is_ok()
            || closed
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the stalled socket is closed by the proxy: {closed:?}"
    );
    assert_eq!(proxy.get("/").status, 200);
    let stderr = proxy.stderr();
    assert!(
        !stderr.contains("accepting a connection"),
        "the proxy never ran out of files: {stderr}"
    );
}

#[test]
fn requests_beyond_the_in_flight_cap_get_503_and_count_nothing() {
    let upstream = Upstream::start();
    upstream.behave(Behaviour::Late(Duration::from_millis(3000), 200));
    let proxy = Proxy::start(
        &upstream.url(),
        &["--max-in-flight", "2", "--metrics", "127.0.0.1:0"],
    );
    let addr = proxy.addr();
    let slow: Vec<std::thread::JoinHandle<Response>> = (0..2)
        .map(|_| std::thread::spawn(move || http::get(addr, "/").unwrap()))
        .collect();
    let start = Instant::now();
    while upstream.hits() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the two never arrived"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let over = proxy.get("/");
    assert_eq!(over.status, 503, "{over:?}");
    assert_eq!(over.header("retry-after"), Some("1"), "{over:?}");
    assert_eq!(
        over.header("x-tripswitch"),
        None,
        "not the breaker's refusal"
    );
    for reply in slow {
        assert_eq!(reply.join().unwrap().status, 200);
    }
    let scrape = wait_for_count(&proxy, names::CALLS, &[("outcome", "success")], 2.0);
    assert_eq!(scrape.value(names::ADMITTED, &[]), 2.0);
    assert_eq!(
        scrape.get(names::NOT_PERMITTED, &[("reason", "open")]),
        None
    );
}

#[test]
fn an_upstream_cannot_pass_for_a_breaker_refusal() {
    let upstream = Upstream::start();
    upstream.behave(Behaviour::Pretend(
        503,
        "x-tripswitch: open\r\nretry-after: 7\r\n",
    ));
    let proxy = Proxy::start(&upstream.url(), &[]);
    let reply = proxy.get("/");
    assert_eq!(reply.status, 503, "{reply:?}");
    assert_eq!(reply.body, "upstream says 503\n");
    assert_eq!(reply.header("x-tripswitch"), None, "{reply:?}");
    assert_eq!(reply.header("retry-after"), Some("7"), "the upstream's own");
    // The breaker's own refusal still says so.
    for _ in 1..FAIL_MAX {
        proxy.get("/");
    }
    proxy.wait_for_stderr("closed -> open");
    let refused = proxy.get("/");
    assert_eq!(refused.header("x-tripswitch"), Some("open"), "{refused:?}");
}

#[test]
fn a_client_that_never_reads_its_answer_gives_its_slot_back() {
    let upstream = Upstream::start();
    upstream.behave(Behaviour::Bulk(32 << 20));
    let proxy = Proxy::start(
        &upstream.url(),
        &["--max-in-flight", "1", "--send-timeout-ms", "1000"],
    );
    // Asks for 32 MB and reads none of it: the sockets' buffers fill.
    let mut greedy = TcpStream::connect(proxy.addr()).unwrap();
    greedy
        .write_all(b"GET /big HTTP/1.1\r\nhost: proxy\r\n\r\n")
        .unwrap();
    let start = Instant::now();
    while upstream.hits() == 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "never sent on");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Its request holds the one slot until the send timeout drops it.
    upstream.answer(200);
    let start = Instant::now();
    loop {
        let reply = proxy.get("/");
        if reply.status == 200 {
            break;
        }
        assert_eq!(reply.status, 503, "{reply:?}");
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the unread answer kept the slot"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(greedy);
}
