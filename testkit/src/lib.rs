//! Test helpers: `redis-server` processes (standalone, cluster with or
//! without replicas, Sentinel, TLS with a test CA) that tests start on free
//! loopback ports, a minimal HTTP client, an HTTP upstream, a real Envoy, a
//! relay that swallows a server's replies, the collected output
//! of child processes, and a memory storage with faults on demand.

mod awaited;
pub mod envoy;
mod faulty;
pub mod http;
mod log;
mod sentinel;
mod silent;
mod swallow;
pub mod tls;
mod upstream;

pub use awaited::Awaited;
pub use faulty::{Faulty, OVERSIZED_BYTES, Pause};
pub use log::Log;
pub use sentinel::{MASTER as SENTINEL_MASTER, Sentinels};
pub use silent::Silent;
pub use swallow::Swallow;
pub use upstream::{Behaviour, Upstream};

use std::time::Duration;

/// A `redis-server` process of the test's own, on a free loopback port, in a
/// scratch folder; killed when dropped.
pub struct RedisServer {
    /// The port it listens on.
    pub port: u16,
    dir: std::path::PathBuf,
    extra: Vec<String>,
    child: Option<std::process::Child>,
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("binding a loopback port")
}

/// Runs `redis-cli` against the server on `port` (with `password`, if any);
/// what it printed, if it ran and succeeded.
pub(crate) fn redis_cli(port: u16, password: Option<&str>, args: &[&str]) -> Option<String> {
    let mut command = std::process::Command::new(redis_binary("redis-cli"));
    command
        .args(["-h", "127.0.0.1", "-p"])
        .arg(port.to_string());
    if let Some(password) = password {
        command.args(["--no-auth-warning", "-a", password]);
    }
    let out = command.args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn redis_binary(name: &str) -> String {
    let found = std::process::Command::new(name).arg("--version").output();
    if found.is_err() {
        panic!("{name} is not installed: run `cargo xtask test`, which installs redis-server");
    }
    name.to_string()
}

impl RedisServer {
    /// Starts a standalone server.
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// Starts a server with extra `redis-server` options.
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("tripswitch-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating the server's folder");
        let mut server = RedisServer {
            port,
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        server.resume();
        server
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts the server again on its port and folder (after [`stop`](Self::stop)).
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "the server is already running");
        let child = std::process::Command::new(redis_binary("redis-server"))
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("starting redis-server");
        self.child = Some(child);
        for _ in 0..500 {
            if self
                .try_cli(&["PING"])
                .is_some_and(|out| out.trim() == "PONG")
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "redis-server on port {} did not answer PING within 5 s",
            self.port
        );
    }

    /// Saves the data set to disk and stops the server (connections are refused after).
    pub fn stop(&mut self) {
        let _ = self.try_cli(&["SHUTDOWN", "SAVE"]);
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }

    /// Kills the server at once (SIGKILL): nothing is saved, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections hang until [`thaw`](Self::thaw).
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Unfreezes the server (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("the server is running").id();
        let status = std::process::Command::new("kill")
            .arg(signal)
            .arg(pid.to_string())
            .status()
            .expect("running kill");
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// Runs `redis-cli` against this server and returns what it printed.
    pub fn cli(&self, args: &[&str]) -> String {
        self.try_cli(args)
            .unwrap_or_else(|| panic!("redis-cli {args:?} failed on port {}", self.port))
    }

    fn try_cli(&self, args: &[&str]) -> Option<String> {
        // A server started with --requirepass is asked with it.
        let password = self
            .extra
            .iter()
            .position(|a| a == "--requirepass")
            .map(|at| self.extra[at + 1].as_str());
        redis_cli(self.port, password, args)
    }

    /// How many times each command ran since the last [`reset_stats`](Self::reset_stats),
    /// leaving out the stats commands themselves.
    pub fn command_counts(&self) -> std::collections::BTreeMap<String, u64> {
        self.cli(&["INFO", "commandstats"])
            .lines()
            .filter_map(|line| {
                let (name, rest) = line.trim().strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = rest
                    .strip_prefix("calls=")?
                    .split(',')
                    .next()?
                    .parse()
                    .ok()?;
                (!name.starts_with("info") && !name.starts_with("config"))
                    .then(|| (name.to_string(), calls))
            })
            .collect()
    }

    /// Like [`command_counts`](Self::command_counts), leaving out the
    /// commands tripswitch's compare-and-swap script runs inside Redis (HGET,
    /// TIME, HSET): what clients sent, each a round trip.
    pub fn client_command_counts(&self) -> std::collections::BTreeMap<String, u64> {
        let mut counts = self.command_counts();
        counts.retain(|name, _| !["hget", "hset", "time"].contains(&name.as_str()));
        counts
    }

    /// Zeroes the command counters.
    pub fn reset_stats(&self) {
        self.cli(&["CONFIG", "RESETSTAT"]);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // Killed, not asked: a frozen server (a test that failed between
        // freeze and thaw) would never answer SHUTDOWN.
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis cluster of three masters, made with `redis-cli --cluster create`.
pub struct RedisCluster {
    /// Its nodes (with replicas: the masters first, as created).
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three cluster-enabled servers and joins them into one cluster.
    pub fn start() -> RedisCluster {
        RedisCluster::start_with_replicas(0)
    }

    /// Starts three masters with `replicas` replicas each (a node timeout of
    /// 1 s, so that a failover takes seconds) and joins them into one cluster.
    pub fn start_with_replicas(replicas: usize) -> RedisCluster {
        RedisCluster::start_with(replicas, &[])
    }

    /// Like [`start_with_replicas`](Self::start_with_replicas), each node
    /// with extra `redis-server` options (`--requirepass` is used to join them).
    pub fn start_with(replicas: usize, extra: &[&str]) -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..3 * (1 + replicas))
            .map(|_| {
                let mut options =
                    vec!["--cluster-enabled", "yes", "--cluster-node-timeout", "1000"];
                options.extend_from_slice(extra);
                RedisServer::start_with(&options)
            })
            .collect();
        let password = extra
            .iter()
            .position(|a| *a == "--requirepass")
            .and_then(|at| extra.get(at + 1));
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let mut create = std::process::Command::new(redis_binary("redis-cli"));
        if let Some(password) = password {
            create.args(["--no-auth-warning", "-a", password]);
        }
        let created = create
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("running redis-cli --cluster create");
        assert!(
            created.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        let cluster = RedisCluster { nodes };
        let ready = |cluster: &RedisCluster| {
            cluster.nodes.iter().all(|n| {
                n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok")
                    && (replicas == 0
                        || n.cli(&["ROLE"]).lines().next() != Some("slave")
                        || n.cli(&["INFO", "replication"])
                            .contains("master_link_status:up"))
            })
        };
        for _ in 0..1500 {
            if ready(&cluster) {
                return cluster;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the cluster did not reach cluster_state:ok (replicas in sync) within 15 s");
    }

    /// Every node's URL.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}
