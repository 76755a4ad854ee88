//! tripswitch's Redis breaker beside pybreaker 1.4.1's CircuitRedisStorage,
//! in one run against one local Redis: calls per second and Redis commands
//! per call on the success path, with 1 and with 8 concurrent callers.
//!
//! `cargo bench -p tripswitch-tests --bench redis`. It starts its own
//! redis-server and makes a Python virtualenv with pybreaker in
//! `target/bench-venv` on first use.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tripswitch::{CircuitBreaker, RedisStorage};
use tripswitch_tests::RedisServer;

const CALLS: usize = 20_000;

/// The virtualenv's python, with pybreaker 1.4.1 and redis-py installed.
fn python() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let venv = root.join("target").join("bench-venv");
    let python = venv.join("bin").join("python");
    if !python.exists() {
        let made = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv)
            .status();
        assert!(
            matches!(made, Ok(s) if s.success()),
            "python3 -m venv {}",
            venv.display()
        );
        let installed = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "pybreaker==1.4.1",
                "redis>=5,<7",
            ])
            .status();
        assert!(
            matches!(installed, Ok(s) if s.success()),
            "pip install pybreaker==1.4.1 redis"
        );
    }
    python
}

/// Redis commands clients sent since the last reset (script internals left out).
fn client_commands(server: &RedisServer) -> u64 {
    server.client_command_counts().values().sum()
}

fn tripswitch(server: &RedisServer, threads: usize, window: bool) -> (f64, f64) {
    let storage = RedisStorage::builder(server.url())
        .namespace("bench")
        .response_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let mut builder = CircuitBreaker::builder(if window { "bench-window" } else { "bench" });
    if window {
        builder = builder
            .failure_rate_threshold(50)
            .window(Duration::from_secs(30));
    }
    let breaker = builder.storage(storage).build().unwrap();
    for _ in 0..200 {
        breaker.call(|| Ok::<_, ()>(1)).unwrap();
    }
    server.reset_stats();
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                for _ in 0..CALLS / threads {
                    breaker.call(|| Ok::<_, ()>(1)).unwrap();
                }
            });
        }
    });
    let elapsed = start.elapsed().as_secs_f64();
    let per_call = client_commands(server) as f64 / CALLS as f64;
    (CALLS as f64 / elapsed, per_call)
}

fn pybreaker(server: &RedisServer, threads: usize) -> (f64, f64) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("benches")
        .join("pybreaker_redis.py");
    let out = Command::new(python())
        .arg(script)
        .args([
            server.port.to_string(),
            CALLS.to_string(),
            threads.to_string(),
        ])
        .output()
        .expect("running the pybreaker bench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let elapsed: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let per_call = client_commands(server) as f64 / CALLS as f64;
    (CALLS as f64 / elapsed, per_call)
}

fn main() {
    // `cargo test --benches` runs benches with --test: skip the work then.
    if std::env::args().any(|arg| arg == "--test") {
        return;
    }
    let server = RedisServer::start();
    println!("success path, {CALLS} calls, one local redis-server\n");
    println!("| callers | breaker | calls/s | Redis commands per call |");
    println!("|---|---|---|---|");
    for threads in [1, 8] {
        let (ts_rate, ts_cmds) = tripswitch(&server, threads, false);
        let (window_rate, window_cmds) = tripswitch(&server, threads, true);
        let (py_rate, py_cmds) = pybreaker(&server, threads);
        println!("| {threads} | tripswitch | {ts_rate:.0} | {ts_cmds:.2} |");
        println!(
            "| {threads} | tripswitch, failure-rate window | {window_rate:.0} | {window_cmds:.2} |"
        );
        println!("| {threads} | pybreaker 1.4.1 | {py_rate:.0} | {py_cmds:.2} |");
        println!("| {threads} | ratio | {:.1}x | |", ts_rate / py_rate);
    }
}
