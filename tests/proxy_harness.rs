//! What the proxy tests share: a `tripswitch proxy` process of the test's
//! own, the knobs it gets, and its scraped metrics.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tripswitch::telemetry::names;
use tripswitch_testkit::Log;
use tripswitch_testkit::http::{self, Response};
use tripswitch_tests::tripswitch_binary;

/// Consecutive failures that open the circuit, as the proxies are told.
pub const FAIL_MAX: usize = 3;
/// How long the circuit stays open, in ms, as the proxies are told.
pub const RESET_TIMEOUT_MS: u64 = 1000;

/// The plugin every proxy in these tests serves: the one place the tests
/// choose it. `Some(file)` is given as `--plugin`; `None` leaves the proxy
/// its embedded plugin (the middleware composed with the breaker), which is
/// what an operator runs.
pub fn plugin() -> Option<PathBuf> {
    None
}

/// The knobs every proxy gets, and a variable of tripswitch's own tooling
/// that shares the prefix but is not a setting (it must not stop the proxy).
pub fn knobs() -> [(&'static str, String); 3] {
    [
        ("TRIPSWITCH_FAIL_MAX", FAIL_MAX.to_string()),
        ("TRIPSWITCH_RESET_TIMEOUT_MS", RESET_TIMEOUT_MS.to_string()),
        ("TRIPSWITCH_WASMTIME", "/nowhere/wasmtime".to_string()),
    ]
}

/// A `tripswitch proxy` command with the test plugin and none of this
/// process's own `TRIPSWITCH_*` variables.
pub fn proxy_command(upstream: &str, extra: &[&str], env: &[(&str, impl AsRef<str>)]) -> Command {
    let mut command = Command::new(tripswitch_binary());
    command
        .args(["proxy", "--listen", "127.0.0.1:0", "--upstream", upstream])
        .args(extra);
    if let Some(plugin) = plugin() {
        command.arg("--plugin").arg(plugin);
    }
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TRIPSWITCH_") {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().map(|(name, value)| (name, value.as_ref())));
    command
}

/// A running proxy process; killed when dropped.
pub struct Proxy {
    child: Child,
    /// The port it accepts requests on.
    pub port: u16,
    /// The `--metrics` listener's port, if it was asked for.
    metrics_port: Option<u16>,
    stderr: Log,
}

impl Proxy {
    /// Starts a proxy and waits for its "listening" line.
    pub fn start(upstream: &str, extra: &[&str]) -> Proxy {
        Proxy::spawn(proxy_command(upstream, extra, &knobs()))
    }

    /// Starts a proxy that may open at most `files` files (`ulimit -n`).
    pub fn start_with_open_files(files: u32, upstream: &str, extra: &[&str]) -> Proxy {
        let proxy = proxy_command(upstream, extra, &knobs());
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit -n {files} && exec \"$0\" \"$@\""))
            .arg(proxy.get_program())
            .args(proxy.get_args());
        for (name, value) in proxy.get_envs() {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        Proxy::spawn(command)
    }

    /// Runs `command` and waits for its "listening" line.
    fn spawn(mut command: Command) -> Proxy {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting tripswitch proxy");
        let stderr = Log::collect(child.stderr.take().unwrap(), |_| {});
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("reading the proxy's stdout");
        let port_after = |text: &str, end: char| {
            line.split(text)
                .nth(1)
                .and_then(|rest| rest.split(end).next())
                .and_then(|port| port.parse::<u16>().ok())
        };
        let port = port_after("listening on http://127.0.0.1:", ',');
        let metrics_port = port_after("metrics on http://127.0.0.1:", '/');
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(100));
            panic!(
                "the proxy did not start: stdout {line:?}, stderr {:?}",
                stderr.text()
            );
        };
        Proxy {
            child,
            port,
            metrics_port,
            stderr,
        }
    }

    /// `method path` on the metrics listener.
    pub fn metrics_request(&self, method: &str, path: &str) -> Response {
        let port = self
            .metrics_port
            .expect("the proxy was started with --metrics");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        http::request(addr, method, path).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// Scrapes `/metrics` and parses it as Prometheus text.
    pub fn scrape(&self) -> Scrape {
        let reply = self.metrics_request("GET", "/metrics");
        assert_eq!(reply.status, 200, "{reply:?}");
        assert!(
            reply
                .header("content-type")
                .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
            "{reply:?}"
        );
        let lines = reply.body.lines().map(|line| Ok(line.to_owned()));
        Scrape(prometheus_parse::Scrape::parse(lines).expect("Prometheus text"))
    }

    /// `GET path` through the proxy, on a fresh connection.
    pub fn get(&self, path: &str) -> Response {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        http::get(addr, path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// The address it accepts requests on.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// What it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// Waits up to 5 s for the proxy to write `text` to stderr.
    pub fn wait_for_stderr(&self, text: &str) {
        self.stderr.wait_for(text);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A parsed scrape of a proxy's `/metrics`.
pub struct Scrape(prometheus_parse::Scrape);

impl Scrape {
    /// The value of `metric` with exactly these labels (besides `breaker="upstream"`), if present.
    pub fn get(&self, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found = self.0.samples.iter().find(|sample| {
            sample.metric == metric
                && sample.labels.get("breaker") == Some("upstream")
                && labels.iter().all(|(k, v)| sample.labels.get(k) == Some(*v))
                && sample.labels.len() == labels.len() + 1
        })?;
        Some(match found.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{metric} is not a number: {other:?}"),
        })
    }

    /// Like [`get`](Self::get), and the metric must be there.
    pub fn value(&self, metric: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(metric, labels)
            .unwrap_or_else(|| panic!("no {metric}{labels:?} in {:#?}", self.0.samples))
    }

    /// The state whose gauge reads 1, checking that every other reads 0.
    pub fn state(&self) -> String {
        let on: Vec<&str> = tripswitch::State::ALL
            .map(tripswitch::State::as_str)
            .into_iter()
            .filter(
                |state| match self.value(names::STATE, &[("state", state)]) {
                    1.0 => true,
                    0.0 => false,
                    other => panic!("state gauge {state} reads {other}"),
                },
            )
            .collect();
        assert_eq!(on.len(), 1, "{on:?}");
        on[0].to_owned()
    }

    /// A transition's count, by whether it was made elsewhere (0 if never seen).
    pub fn transitions(&self, from: &str, to: &str, remote: bool) -> f64 {
        let remote = if remote { "true" } else { "false" };
        self.get(
            names::TRANSITIONS,
            &[("from", from), ("to", to), ("remote", remote)],
        )
        .unwrap_or(0.0)
    }
}

/// `Retry-After` in whole seconds.
pub fn retry_after(reply: &Response) -> u64 {
    reply
        .header("retry-after")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After in seconds: {reply:?}"))
}

/// Sleeps for a `Retry-After` the proxy gave, in seconds.
pub fn wait_retry_after(seconds: u64) {
    assert!(
        (1..=RESET_TIMEOUT_MS.div_ceil(1000)).contains(&seconds),
        "Retry-After {seconds} s for a {RESET_TIMEOUT_MS} ms reset timeout"
    );
    std::thread::sleep(Duration::from_secs(seconds));
}
