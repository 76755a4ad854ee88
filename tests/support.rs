//! Shared helpers for the integration tests: a recording listener, a breaker
//! builder on a virtual clock, and testkit's helpers (among them `Faulty`, a
//! storage with faults on demand).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::time::Duration;

use tripswitch::{
    Builder, CallError, CircuitBreaker, Error, Listener, ManualClock, Notice, Rejected, StateChange,
};

/// The virtual clock's start: a Unix time in ms, far from zero.
pub const T0: u64 = 1_700_000_000_000;

/// A breaker builder on the virtual `clock`.
pub fn builder(name: &str, clock: &ManualClock) -> Builder {
    CircuitBreaker::builder(name).clock(clock.clone())
}

/// A fresh virtual clock at [`T0`].
pub fn clock() -> ManualClock {
    ManualClock::new(T0)
}

/// Advances a clock by whole milliseconds.
pub fn advance(clock: &ManualClock, ms: u64) {
    clock.advance(Duration::from_millis(ms));
}

/// One thing a listener heard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Heard {
    /// before_call
    BeforeCall,
    /// success
    Success,
    /// failure(tripped)
    Failure(bool),
    /// state_change
    Change(StateChange),
    /// rejected
    Rejected(Rejected),
    /// error
    Error(Error),
    /// notice
    Notice(Notice),
}

/// A listener that writes down everything it hears, in order.
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<Heard>>>);

impl Recorder {
    /// Everything heard so far, and forgets it.
    pub fn take(&self) -> Vec<Heard> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }

    /// The errors heard so far (kept).
    pub fn errors(&self) -> Vec<tripswitch::Error> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|heard| match heard {
                Heard::Error(error) => Some(error.clone()),
                _ => None,
            })
            .collect()
    }

    /// The notices heard so far (kept).
    pub fn notices(&self) -> Vec<Notice> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|heard| match heard {
                Heard::Notice(notice) => Some(notice.clone()),
                _ => None,
            })
            .collect()
    }

    /// The state changes heard so far (kept).
    pub fn changes(&self) -> Vec<StateChange> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|heard| match heard {
                Heard::Change(change) => Some(*change),
                _ => None,
            })
            .collect()
    }

    fn push(&self, heard: Heard) {
        self.0.lock().unwrap().push(heard);
    }
}

impl Listener for Recorder {
    fn before_call(&self, _: &str) {
        self.push(Heard::BeforeCall);
    }
    fn success(&self, _: &str) {
        self.push(Heard::Success);
    }
    fn failure(&self, _: &str, tripped: bool) {
        self.push(Heard::Failure(tripped));
    }
    fn state_change(&self, _: &str, change: &StateChange) {
        self.push(Heard::Change(*change));
    }
    fn rejected(&self, _: &str, rejected: &Rejected) {
        self.push(Heard::Rejected(rejected.clone()));
    }
    fn error(&self, _: &str, error: &Error) {
        self.push(Heard::Error(error.clone()));
    }
    fn notice(&self, _: &str, notice: &Notice) {
        self.push(Heard::Notice(notice.clone()));
    }
}

/// The error every test call fails with.
#[derive(Debug, PartialEq, Eq)]
pub struct Boom;

/// Runs a failing call through `breaker`.
pub fn fail(breaker: &CircuitBreaker) -> Result<(), tripswitch::CallError<Boom>> {
    breaker.call(|| Err::<(), _>(Boom))
}

/// Runs a succeeding call through `breaker`.
pub fn succeed(breaker: &CircuitBreaker) -> Result<(), tripswitch::CallError<Boom>> {
    breaker.call(|| Ok::<(), Boom>(()))
}

pub use tripswitch_testkit::{
    Awaited, Faulty, Pause, RedisCluster, RedisServer, Swallow, free_port,
};

/// What became of one failing call made by a thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ran {
    /// It ran and failed; the bool is `tripped`.
    Failed(bool),
    /// It was rejected without running.
    Rejected,
}

/// Runs `per_thread` failing calls on `threads_each` threads per breaker, all
/// released at once; returns each thread's results in order.
pub fn hammer(
    breakers: &[&CircuitBreaker],
    threads_each: usize,
    per_thread: usize,
) -> Vec<Vec<Ran>> {
    let start = Barrier::new(breakers.len() * threads_each);
    std::thread::scope(|scope| {
        let workers: Vec<_> = breakers
            .iter()
            .flat_map(|&breaker| std::iter::repeat_n(breaker, threads_each))
            .map(|breaker| {
                let start = &start;
                scope.spawn(move || {
                    start.wait();
                    (0..per_thread)
                        .map(|_| match fail(breaker) {
                            Err(CallError::Failed { tripped, .. }) => Ran::Failed(tripped),
                            Err(CallError::Rejected(Rejected::Open { .. })) => Ran::Rejected,
                            other => panic!("unexpected {other:?}"),
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    })
}

/// The `tripswitch` binary, built once per test run with the profile and
/// target folder of the running test or bench (cargo builds only this
/// crate's own binaries for its tests).
pub fn tripswitch_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        // Tests and benches run as <target>/<profile>/deps/<name>-<hash>.
        let exe = std::env::current_exe().expect("the test's own path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test runs from <target>/<profile>/deps");
        let target_dir = profile_dir.parent().expect("<target>/<profile>");
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev".to_string(),
            Some(other) => other.to_string(),
            None => panic!("no profile folder in {}", exe.display()),
        };
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "-p",
                "tripswitch-cli",
                "--bin",
                "tripswitch",
            ])
            .args(["--profile", &profile, "--target-dir"])
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("running cargo build for the tripswitch binary");
        assert!(status.success(), "building the tripswitch binary failed");
        profile_dir.join("tripswitch")
    })
}
