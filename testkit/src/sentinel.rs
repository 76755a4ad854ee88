//! Redis Sentinel for the tests: three sentinels on free loopback ports
//! watching one master, tuned so that a failover takes seconds.

use std::time::{Duration, Instant};

use crate::{RedisServer, free_port};

/// The master name the sentinels watch.
pub const MASTER: &str = "tripswitch-master";

/// Three `redis-server --sentinel` processes; killed when dropped.
pub struct Sentinels {
    /// Their ports.
    pub ports: Vec<u16>,
    dir: std::path::PathBuf,
    children: Vec<std::process::Child>,
}

impl Sentinels {
    /// Starts three sentinels (quorum 2) watching the master on
    /// `master_port`; `password`, if any, is the master's and the sentinels'
    /// own. Returns when every sentinel knows `replicas` replicas.
    pub fn start(master_port: u16, replicas: usize, password: Option<&str>) -> Sentinels {
        let dir = std::env::temp_dir().join(format!(
            "tripswitch-sentinels-{}-{master_port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("creating the sentinels' folder");
        let mut ports = Vec::new();
        let mut children = Vec::new();
        for n in 0..3 {
            let port = free_port();
            let mut conf = format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                 sentinel monitor {MASTER} 127.0.0.1 {master_port} 2\n\
                 sentinel down-after-milliseconds {MASTER} 1000\n\
                 sentinel failover-timeout {MASTER} 2000\n\
                 sentinel parallel-syncs {MASTER} 1\n",
                dir = dir.display()
            );
            if let Some(password) = password {
                conf.push_str(&format!(
                    "sentinel auth-pass {MASTER} {password}\nrequirepass {password}\n"
                ));
            }
            let path = dir.join(format!("sentinel-{n}.conf"));
            std::fs::write(&path, conf).expect("writing a sentinel's config");
            let child = std::process::Command::new("redis-server")
                .arg(&path)
                .arg("--sentinel")
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("starting redis-server --sentinel");
            ports.push(port);
            children.push(child);
        }
        let sentinels = Sentinels {
            ports,
            dir,
            children,
        };
        sentinels.wait_for("every sentinel to know the replicas", || {
            sentinels.ports.iter().all(|&port| {
                sentinels
                    .ask(port, password, &["SENTINEL", "REPLICAS", MASTER])
                    .is_some_and(|out| out.matches("flags").count() >= replicas)
                    && sentinels
                        .ask(port, password, &["SENTINEL", "MASTER", MASTER])
                        .is_some()
                    && sentinels
                        .ask(port, password, &["SENTINEL", "SENTINELS", MASTER])
                        .is_some_and(|out| out.matches("flags").count() >= 2)
            })
        });
        sentinels
    }

    /// `redis://127.0.0.1:PORT/` for each sentinel (with the password, if any).
    pub fn urls(&self, password: Option<&str>) -> Vec<String> {
        self.ports
            .iter()
            .map(|port| match password {
                Some(password) => format!("redis://:{password}@127.0.0.1:{port}/"),
                None => format!("redis://127.0.0.1:{port}/"),
            })
            .collect()
    }

    /// The master's port as the first sentinel tells it.
    pub fn master_port(&self, password: Option<&str>) -> Option<u16> {
        let out = self.ask(
            self.ports[0],
            password,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER],
        )?;
        out.lines().nth(1)?.trim().parse().ok()
    }

    /// Waits until every sentinel names `server` as the master.
    pub fn wait_for_master(&self, server: &RedisServer, password: Option<&str>) {
        self.wait_for("the sentinels to promote the replica", || {
            self.ports.iter().all(|&port| {
                self.ask(
                    port,
                    password,
                    &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER],
                )
                .and_then(|out| out.lines().nth(1).map(|l| l.trim().to_string()))
                .is_some_and(|p| p == server.port.to_string())
            }) && server.cli(&["ROLE"]).starts_with("master")
        });
    }

    fn wait_for(&self, what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(Instant::now() < deadline, "waited 30 s for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn ask(&self, port: u16, password: Option<&str>, args: &[&str]) -> Option<String> {
        crate::redis_cli(port, password, args)
    }
}

impl Drop for Sentinels {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
