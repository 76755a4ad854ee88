//! The HTTP middleware plugins, composed over a test service and served by
//! `wasmtime serve` (the wasmtime CLI 48.0.8 that `cargo xtask test`
//! installs), with real HTTP on loopback.
//!
//! `wasmtime serve` keeps an app instance for up to 128 requests and drops it
//! after 1 s idle, and the demo storage lives in the instance: each cycle
//! below runs within one instance's lifetime (fewer than 100 requests, never
//! more than a few hundred ms apart). The service's `/hits` counter, kept in
//! the same instance, proves it: it counts on across the whole cycle.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tripswitch_testkit::http::{Response, get};
use tripswitch_testkit::{Log, free_port};

/// A component the build script composed.
fn built(name: &str) -> PathBuf {
    Path::new(env!("OUT_DIR")).join(name)
}

/// The wasmtime CLI: `TRIPSWITCH_WASMTIME`, or the one `cargo xtask test` installs.
fn wasmtime() -> PathBuf {
    let path = std::env::var_os("TRIPSWITCH_WASMTIME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../target/tools/wasmtime-48.0.8/bin/wasmtime")
        });
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask test` (it installs wasmtime-cli 48.0.8) \
         or set TRIPSWITCH_WASMTIME",
        path.display()
    );
    path
}

/// A `wasmtime serve` process on a free loopback port; killed when dropped.
struct Serve {
    addr: SocketAddr,
    child: Child,
    /// What it wrote to stderr so far (the plugins' log).
    log: Log,
}

impl Serve {
    /// Serves `app` with `env` as its environment, once it listens.
    fn start(app: &str, env: &[(&str, &str)]) -> Serve {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut command = Command::new(wasmtime());
        command.args(["serve", "-Scli", "--addr", &addr.to_string()]);
        for (name, value) in env {
            command.arg("--env").arg(format!("{name}={value}"));
        }
        let mut child = command
            .arg(built(app))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting wasmtime serve");
        let (ready, listening) = mpsc::channel();
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Log::collect(stderr, move |line| {
            if line.contains("Serving HTTP on") {
                let _ = ready.send(());
            }
            eprintln!("[wasmtime serve] {line}");
        });
        if listening.recv_timeout(Duration::from_secs(120)).is_err() {
            let _ = child.kill();
            panic!("wasmtime serve did not start serving {app}");
        }
        Serve { addr, child, log }
    }

    /// Waits up to 5 s for `text` in what the server wrote to stderr.
    fn wait_for_log(&self, text: &str) {
        self.log.wait_for(text);
    }

    fn get(&self, path: &str) -> Response {
        get(self.addr, path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// The service's count of requests it served in this instance.
    fn hits(&self) -> u64 {
        let response = self.get("/hits");
        assert_eq!(response.status, 200, "{response:?}");
        response.body.trim().parse().expect("a count")
    }

    /// Polls `/` every 100 ms while the circuit rejects (each rejection must
    /// carry a Retry-After of at most `max_retry_after` s), and returns the
    /// first admitted response: the trial.
    fn until_admitted(&self, max_retry_after: u64) -> Response {
        for _ in 0..60 {
            let response = self.get("/");
            if response.status != 503 {
                return response;
            }
            let retry_after: u64 = response
                .header("retry-after")
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("a rejection without Retry-After: {response:?}"));
            assert!(retry_after <= max_retry_after, "{response:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the circuit never admitted a trial");
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn assert_rejected_open(response: &Response) {
    assert_eq!(response.status, 503, "{response:?}");
    assert_eq!(
        response.header("x-tripswitch"),
        Some("open"),
        "{response:?}"
    );
    assert_eq!(response.header("retry-after"), Some("1"), "{response:?}");
    assert!(
        response.body.contains("circuit \"upstream\" is open"),
        "{response:?}"
    );
}

#[test]
fn failures_open_the_circuit_rejections_skip_the_service_and_a_trial_closes_it() {
    let serve = Serve::start(
        "local-app.wasm",
        &[
            ("TRIPSWITCH_FAIL_MAX", "3"),
            ("TRIPSWITCH_RESET_TIMEOUT_MS", "1000"),
        ],
    );
    assert_eq!(serve.get("/").status, 200);
    // A 4xx is the caller's fault: it counts as a success and resets the count.
    for status in [500, 502, 404, 500, 503] {
        assert_eq!(serve.get(&format!("/status/{status}")).status, status);
    }
    assert_eq!(serve.get("/status/500").status, 500, "the third failure");
    serve.wait_for_log("tripswitch: breaker upstream: closed -> open");
    for _ in 0..5 {
        assert_rejected_open(&serve.get("/"));
    }
    let trial = serve.until_admitted(1);
    assert_eq!(trial.status, 200, "{trial:?}");
    assert_eq!(trial.body, "ok");
    serve.wait_for_log("tripswitch: breaker upstream: half-open -> closed");
    assert_eq!(
        serve.hits(),
        8,
        "no rejected request reached the service, and this is still the same instance"
    );
    assert_eq!(serve.get("/").status, 200, "closed again");
    assert_eq!(
        serve.get("/status/500").status,
        500,
        "failures count from zero"
    );
    assert_eq!(serve.get("/").status, 200);
}

#[test]
fn a_failed_trial_opens_the_circuit_again() {
    let serve = Serve::start(
        "local-app.wasm",
        &[
            ("TRIPSWITCH_FAIL_MAX", "1"),
            ("TRIPSWITCH_RESET_TIMEOUT_MS", "600"),
        ],
    );
    assert_eq!(serve.get("/status/502").status, 502);
    assert_rejected_open(&serve.get("/status/200"));
    // The trial fails: open again, for a whole reset timeout.
    let trial = {
        let mut response = serve.get("/status/504");
        for _ in 0..40 {
            if response.status != 503 {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            response = serve.get("/status/504");
        }
        response
    };
    assert_eq!(trial.status, 504, "{trial:?}");
    assert_rejected_open(&serve.get("/"));
    assert_eq!(serve.until_admitted(1).status, 200);
    assert_eq!(
        serve.hits(),
        3,
        "the first failure, the failed trial, the good trial"
    );
}

#[test]
fn the_spin_artifact_runs_its_storage_over_a_keyvalue_store() {
    // The stand-in store (tests' fixtures/kv-store) plays Spin's part.
    let serve = Serve::start(
        "spin-app.wasm",
        &[
            ("TRIPSWITCH_BREAKER", "orders"),
            ("TRIPSWITCH_FAIL_MAX", "2"),
            ("TRIPSWITCH_RESET_TIMEOUT_MS", "800"),
            ("TRIPSWITCH_FAILURE_STATUS", "502-504"),
            ("TRIPSWITCH_KV_STORE", "breakers"),
        ],
    );
    // 500 is not in the configured set: the service's own error, not an outage.
    for _ in 0..3 {
        assert_eq!(serve.get("/status/500").status, 500);
    }
    assert_eq!(serve.get("/status/503").status, 503);
    assert_eq!(serve.get("/status/504").status, 504);
    let rejected = serve.get("/");
    assert_eq!(rejected.status, 503, "{rejected:?}");
    assert_eq!(rejected.header("x-tripswitch"), Some("open"));
    assert_eq!(rejected.header("retry-after"), Some("1"));
    assert!(
        rejected.body.contains("circuit \"orders\" is open"),
        "{rejected:?}"
    );
    assert_eq!(serve.until_admitted(1).status, 200);
    assert_eq!(serve.hits(), 6);
    let failure = serve.get("/status/503");
    assert_eq!(
        (
            failure.status,
            failure.body.as_str(),
            failure.header("x-tripswitch")
        ),
        (503, "status 503", None),
        "closed: the service answered (one failure of two)"
    );
    assert_eq!(serve.get("/").status, 200);
}

#[test]
fn a_store_the_app_was_not_granted_is_named_and_the_fallback_applies() {
    // The stand-in store has no store called "missing", as Spin has no store
    // the app component was not granted.
    let serve = Serve::start(
        "spin-app.wasm",
        &[
            ("TRIPSWITCH_KV_STORE", "missing"),
            ("TRIPSWITCH_FALLBACK_STATE", "open"),
        ],
    );
    let response = serve.get("/");
    assert_eq!(response.status, 503, "{response:?}");
    assert_eq!(
        response.header("x-tripswitch"),
        Some("storage-unavailable"),
        "{response:?}"
    );
    assert!(
        response
            .body
            .contains("circuit \"upstream\" cannot reach its storage"),
        "{response:?}"
    );
    assert_eq!(response.header("retry-after"), None);
    // The detail goes to the log, not to the client.
    serve.wait_for_log("opening key-value store \"missing\": no such store");
}

#[test]
fn bad_configuration_answers_500_naming_the_setting_and_calls_nothing() {
    let cases = [
        (
            ("TRIPSWITCH_FAIL_MAX", "three"),
            "TRIPSWITCH_FAIL_MAX: \"three\" is not a whole number",
        ),
        (
            ("TRIPSWITCH_FAIL_MAXX", "3"),
            "TRIPSWITCH_FAIL_MAXX: unknown setting",
        ),
        (("TRIPSWITCH_FAIL_MAX", "0"), "TRIPSWITCH_FAIL_MAX: "),
        (
            ("TRIPSWITCH_FAILURE_STATUS", "5xx"),
            "TRIPSWITCH_FAILURE_STATUS: \"5xx\"",
        ),
    ];
    for ((name, value), expected) in cases {
        let serve = Serve::start("local-app.wasm", &[(name, value)]);
        for path in ["/", "/hits"] {
            let response = serve.get(path);
            assert_eq!(response.status, 500, "{name}={value}: {response:?}");
            assert_eq!(
                response.header("x-tripswitch"),
                Some("bad-configuration"),
                "{response:?}"
            );
            assert!(
                response.body.contains(expected),
                "{name}={value}: {:?} lacks {expected:?}",
                response.body
            );
        }
    }
}

/// The imports of a component, as `interface-name@version`, and whether each
/// has functions (an interface that only defines types needs no provider).
fn imports(component: &Path) -> Vec<(String, bool)> {
    let bytes = std::fs::read(component).expect("reading the component");
    let wit_component::DecodedWasm::Component(resolve, world) =
        wit_component::decode(&bytes).expect("decoding the component's WIT")
    else {
        panic!("{} is not a component", component.display());
    };
    resolve.worlds[world]
        .imports
        .iter()
        .map(|(key, item)| {
            let functions = match item {
                wit_parser::WorldItem::Interface { id, .. } => {
                    !resolve.interfaces[*id].functions.is_empty()
                }
                _ => true,
            };
            (resolve.name_world_key(key), functions)
        })
        .collect()
}

/// What Spin 4.1 offers an HTTP component (wasi:cli/imports@0.2.6 and
/// wasi:http@0.3.0, wasi:keyvalue@0.2.0-draft2), as far as we import it.
const SPIN_OFFERS: [&str; 19] = [
    "wasi:http/types@0.3.0",
    "wasi:http/handler@0.3.0",
    "wasi:io/poll@0.2.6",
    "wasi:io/error@0.2.6",
    "wasi:io/streams@0.2.6",
    "wasi:clocks/monotonic-clock@0.2.6",
    "wasi:clocks/wall-clock@0.2.6",
    "wasi:cli/environment@0.2.6",
    "wasi:cli/exit@0.2.6",
    "wasi:cli/stdin@0.2.6",
    "wasi:cli/stdout@0.2.6",
    "wasi:cli/stderr@0.2.6",
    "wasi:cli/terminal-input@0.2.6",
    "wasi:cli/terminal-output@0.2.6",
    "wasi:cli/terminal-stdin@0.2.6",
    "wasi:cli/terminal-stdout@0.2.6",
    "wasi:cli/terminal-stderr@0.2.6",
    "wasi:keyvalue/store@0.2.0-draft2",
    "wasi:keyvalue/atomics@0.2.0-draft2",
];

#[test]
fn the_spin_artifact_imports_only_what_spin_provides() {
    let imports = imports(&built("tripswitch-middleware-spin.wasm"));
    let mut names: Vec<&str> = imports.iter().map(|(name, _)| name.as_str()).collect();
    names.sort();
    let mut expected = SPIN_OFFERS.to_vec();
    expected.push(TYPES_ONLY);
    expected.sort();
    assert_eq!(names, expected);
    // The breaker's types interface stays an import after composition; it
    // defines types only, so no host needs to provide it.
    assert!(imports.contains(&(TYPES_ONLY.to_owned(), false)));
}

/// The one import Spin does not offer, which needs no provider.
const TYPES_ONLY: &str = "tripswitch:breaker/types@0.3.0";

#[test]
fn the_middleware_artifact_leaves_storage_events_and_counts_to_its_host() {
    let imports = imports(&built("tripswitch-middleware.wasm"));
    let names: Vec<&str> = imports.iter().map(|(name, _)| name.as_str()).collect();
    for wanted in [
        "tripswitch:breaker/storage@0.3.0",
        "tripswitch:breaker/events@0.3.0",
        "tripswitch:plugins/counted@0.1.0",
        "wasi:http/handler@0.3.0",
    ] {
        assert!(names.contains(&wanted), "{wanted} not in {names:?}");
    }
    assert!(!names.iter().any(|name| name.starts_with("wasi:keyvalue")));
    assert!(!names.contains(&"tripswitch:breaker/breaker@0.3.0"));
}
