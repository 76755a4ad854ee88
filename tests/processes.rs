//! Four OS processes share one breaker through one Redis: their failures add
//! up to exactly fail-max, exactly half-open-max-calls trials run across
//! them, and one success closes the breaker for all; with a failure-rate
//! window, their outcomes add up in one window, exactly, and the circuit
//! opens when the combined rate crosses the threshold.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use tripswitch_tests::RedisServer;

/// One worker process and its pipes.
struct Worker {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl Worker {
    fn start(url: &str, fail_max: u32, reset_ms: u64, half_open_max: u32) -> Worker {
        let args = [fail_max, reset_ms as u32, half_open_max].map(|n| n.to_string());
        Worker::spawn(url, &args)
    }

    /// A worker whose breaker opens on a failure rate (percent) once its
    /// time window holds `minimum` calls; no fail-max; it holds outcomes up
    /// to `flush_ms` (0: none).
    fn rated(url: &str, rate: u8, minimum: u32, window_ms: u64, flush_ms: u64) -> Worker {
        let window = [rate.to_string(), minimum.to_string(), window_ms.to_string()];
        let args = ["-".to_string(), "1000".into(), "1".into()]
            .into_iter()
            .chain(window)
            .chain([flush_ms.to_string()])
            .collect::<Vec<_>>();
        Worker::spawn(url, &args)
    }

    fn spawn(url: &str, args: &[String]) -> Worker {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tripswitch-worker"))
            .args([url, "procs", "shared"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting a worker");
        let input = child.stdin.take().unwrap();
        let output = BufReader::new(child.stdout.take().unwrap());
        Worker {
            child,
            input,
            output,
        }
    }

    /// Sends a command without waiting for its answer.
    fn send(&mut self, command: &str) {
        writeln!(self.input, "{command}").expect("writing to a worker");
    }

    /// Reads the answer to the last command sent.
    fn answer(&mut self) -> String {
        let mut line = String::new();
        self.output.read_line(&mut line).expect("reading a worker");
        assert!(!line.is_empty(), "a worker exited early");
        line.trim().to_string()
    }

    fn ask(&mut self, command: &str) -> String {
        self.send(command);
        self.answer()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `command` to every worker at once, then collects the answers.
fn all(workers: &mut [Worker], command: &str) -> Vec<String> {
    workers.iter_mut().for_each(|w| w.send(command));
    workers.iter_mut().map(Worker::answer).collect()
}

#[test]
fn four_processes_share_one_breaker() {
    let server = RedisServer::start();
    let (fail_max, reset_ms, half_open_max) = (10, 1000, 2);
    let mut workers: Vec<Worker> = (0..4)
        .map(|_| Worker::start(&server.url(), fail_max, reset_ms, half_open_max))
        .collect();
    assert!(all(&mut workers, "clock 1000").iter().all(|a| a == "ok"));

    // Failures from all four add up: in turns, the tenth trips and every later call is rejected.
    let mut answers = Vec::new();
    for round in 0..4 {
        for worker in workers.iter_mut() {
            answers.push((round, worker.ask("fail")));
        }
    }
    let failed = answers
        .iter()
        .filter(|(_, a)| a.starts_with("failed"))
        .count();
    let tripped: Vec<usize> = answers
        .iter()
        .enumerate()
        .filter(|(_, (_, a))| a == "failed tripped=true")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(failed, fail_max as usize, "{answers:?}");
    assert_eq!(tripped, vec![fail_max as usize - 1], "{answers:?}");
    assert!(
        answers[fail_max as usize..]
            .iter()
            .all(|(_, a)| a == "rejected Open"),
        "{answers:?}"
    );
    assert!(
        all(&mut workers, "state")
            .iter()
            .all(|a| a == "open failures=10")
    );

    // Burst: every process asks at once after the reset timeout; exactly
    // half-open-max-calls trials are granted across them.
    all(&mut workers, &format!("clock {}", 1000 + reset_ms));
    let answers = all(&mut workers, "acquire");
    let trials: Vec<usize> = (0..4)
        .filter(|&i| answers[i] == "permit trial=true")
        .collect();
    assert_eq!(trials.len(), half_open_max as usize, "{answers:?}");
    assert!(
        answers
            .iter()
            .filter(|a| !a.starts_with("permit"))
            .all(|a| a.contains("every trial slot is taken")),
        "{answers:?}"
    );

    // One trial success closes it for everyone.
    assert_eq!(workers[trials[0]].ask("success"), "reported Ok(())");
    assert!(
        all(&mut workers, "state")
            .iter()
            .all(|a| a == "closed failures=0")
    );
    let others = all(&mut workers, "succeed");
    assert!(others.iter().all(|a| a == "ok"), "{others:?}");
    // The other trial's late report counts nothing.
    assert_eq!(workers[trials[1]].ask("failure"), "reported Ok(false)");
    assert!(
        all(&mut workers, "state")
            .iter()
            .all(|a| a == "closed failures=0")
    );
}

#[test]
fn four_processes_share_one_failure_rate_window_exactly() {
    let server = RedisServer::start();
    // Every outcome merged at once: the trip falls on the exact call.
    let mut workers: Vec<Worker> = (0..4)
        .map(|_| Worker::rated(&server.url(), 50, 20, 60_000, 0))
        .collect();
    assert!(all(&mut workers, "clock 1000").iter().all(|a| a == "ok"));

    // Worker 0 fails every call, the others succeed: worker 0 alone is at
    // 100 %, the breaker they share at 25 %, so it stays closed.
    for _ in 0..10 {
        assert_eq!(workers[0].ask("fail"), "failed tripped=false");
        for worker in &mut workers[1..] {
            assert_eq!(worker.ask("succeed"), "ok");
        }
    }
    assert!(
        all(&mut workers, "window")
            .iter()
            .all(|a| a == "calls=40 failed=10"),
        "every process reads one window holding every outcome"
    );

    // Now every call fails: 10 + k failed of 40 + k reaches 50 % at k = 20.
    let mut answers = Vec::new();
    for _ in 0..8 {
        for worker in workers.iter_mut() {
            answers.push(worker.ask("fail"));
        }
    }
    let tripped: Vec<usize> = answers
        .iter()
        .enumerate()
        .filter(|(_, a)| *a == "failed tripped=true")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(tripped, vec![19], "{answers:?}");
    assert!(
        answers[..19].iter().all(|a| a == "failed tripped=false"),
        "{answers:?}"
    );
    assert!(
        answers[20..].iter().all(|a| a == "rejected Open"),
        "{answers:?}"
    );
    assert!(
        all(&mut workers, "state")
            .iter()
            .all(|a| a.starts_with("open"))
    );
}

#[test]
fn four_processes_holding_outcomes_merge_them_exactly() {
    let server = RedisServer::start();
    let mut workers: Vec<Worker> = (0..4)
        .map(|_| Worker::rated(&server.url(), 50, 20, 60_000, 60_000))
        .collect();
    assert!(all(&mut workers, "clock 1000").iter().all(|a| a == "ok"));
    server.reset_stats();
    // What the clients sent.
    let commands = |server: &RedisServer| server.client_command_counts().values().sum::<u64>();
    // 25 calls each, one in four failing in every process: held, not written.
    for round in 0..25 {
        for worker in workers.iter_mut() {
            if round % 4 == 0 {
                assert_eq!(worker.ask("fail"), "failed tripped=false");
            } else {
                assert_eq!(worker.ask("succeed"), "ok");
            }
        }
    }
    // Held: 100 calls cost a load each, and no write.
    assert!(
        commands(&server) <= 100 + 8,
        "{:?}",
        server.command_counts()
    );
    server.reset_stats();
    // Each process, in turn, merges what it holds in one compare-and-swap
    // (and one retry, its cached version being stale); the totals are exact.
    for worker in workers.iter_mut() {
        assert_eq!(worker.ask("flush"), "ok");
    }
    let counts = server.command_counts();
    let swaps = counts.get("evalsha").copied().unwrap_or(0);
    assert!(swaps <= 4 * 2, "a swap each, a retry at most: {counts:?}");
    assert!(
        all(&mut workers, "window")
            .iter()
            .all(|a| a == "calls=100 failed=28"),
        "every outcome, once"
    );
    // Every call fails now: the rate crosses 50 % at 100 more failures
    // across the four; each process holds its own until a merge would trip
    // by what it knows, and a flush merges the rest. Then it is open for all.
    for _ in 0..25 {
        for worker in workers.iter_mut() {
            let answer = worker.ask("fail");
            assert!(
                answer.starts_with("failed") || answer == "rejected Open",
                "{answer}"
            );
        }
    }
    all(&mut workers, "flush");
    assert!(
        all(&mut workers, "state")
            .iter()
            .all(|a| a.starts_with("open"))
    );
}
