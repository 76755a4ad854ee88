//! One breaker over a blocking storage: drives the [`engine`](crate::engine)'s
//! steps against a host's [`Port`], and tells the state changes and notices
//! of each operation through it.

use std::cell::RefCell;

pub use crate::answer::{
    Admission, BreakerError, Change, Denial, Holds, MAX_ATTEMPTS, Notice, NoticeKind, Refusal,
    Reported, Stored, Swap,
};
use crate::config::Config;
pub use crate::engine::MAX_HELD;
use crate::engine::{Answer, Engine, Found, Known, Request, Step};
use crate::machine::{Action, Outcome, Permit, Snapshot};

/// What a breaker needs from its host: a versioned register and an event sink.
pub trait Port {
    /// Reads a key.
    fn load(&self, key: &str) -> Result<Option<Stored>, String>;
    /// Writes a key if its version is `expected` (none: absent).
    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<u64>,
        data: &[u8],
    ) -> Result<Swap, String>;
    /// Tells the host that a breaker changed state.
    fn state_changed(&self, breaker: &str, change: &Change);
    /// Tells the host that a breaker did something else worth a log line.
    fn noticed(&self, breaker: &str, notice: &Notice);
}

/// One named breaker, as one instance sees it.
pub struct Breaker<P> {
    engine: RefCell<Engine>,
    name: String,
    config: Config,
    port: P,
}

impl<P: Port> Breaker<P> {
    /// A breaker named `name` (its storage key), with a valid configuration.
    pub fn new(name: String, config: Config, port: P) -> Self {
        Breaker {
            engine: RefCell::new(Engine::new(name.clone(), config.clone())),
            name,
            config,
            port,
        }
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The breaker's configuration, defaults filled in.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Asks to make a call at `now`.
    pub fn acquire(&self, now: u64) -> Result<Admission, Refusal> {
        match self.drive(Request::Acquire, Known::Nothing, now) {
            Answer::Acquired(answer) => answer,
            other => unreachable_answer(other),
        }
    }

    /// Asks to make a call at `now`, reusing the cached record if the host
    /// says the stored version is still the cached one (0: absent).
    pub fn acquire_at_version(&self, now: u64, version: u64) -> Result<Admission, Refusal> {
        match self.drive(Request::Acquire, Known::Version(version), now) {
            Answer::Acquired(answer) => answer,
            other => unreachable_answer(other),
        }
    }

    /// Records what became of a permitted call.
    pub fn report(
        &self,
        permit: &Permit,
        outcome: Outcome,
        now: u64,
    ) -> Result<Reported, BreakerError> {
        let request = Request::Report {
            permit: *permit,
            outcome,
        };
        match self.drive(request, Known::Nothing, now) {
            Answer::Reported(answer) => answer,
            other => unreachable_answer(other),
        }
    }

    /// Merges the window outcomes this instance holds into the stored record.
    /// Hosts call it from a timer and before they drop a breaker, so that an
    /// idle instance does not sit on outcomes.
    pub fn flush(&self, now: u64) -> Result<(), BreakerError> {
        match self.drive(Request::Flush, Known::Nothing, now) {
            Answer::Flushed(answer) => answer,
            other => unreachable_answer(other),
        }
    }

    /// When the outcomes this instance holds are due to be merged (none:
    /// it holds none): a host calls [`Breaker::flush`] by then.
    pub fn flush_due(&self) -> Option<u64> {
        self.engine.borrow().flush_due()
    }

    /// The breaker's state at `now`, read fresh from the storage.
    pub fn snapshot(&self, now: u64) -> Result<Snapshot, BreakerError> {
        match self.drive(Request::Snapshot, Known::Nothing, now) {
            Answer::Snapshot(answer) => answer,
            other => unreachable_answer(other),
        }
    }

    /// Applies an operator action; a corrupt stored record is overwritten.
    /// Held outcomes are dropped: the action starts a new generation.
    pub fn operate(&self, action: Action, now: u64) -> Result<(), BreakerError> {
        match self.drive(Request::Operate(action), Known::Nothing, now) {
            Answer::Operated(answer) => answer,
            other => unreachable_answer(other),
        }
    }

    /// Runs one operation to its end, each step against the port, telling
    /// each state change before the next storage call. The engine is not
    /// borrowed during a storage call or an event.
    fn drive(&self, request: Request, known: Known, now: u64) -> Answer {
        let mut step = self.engine.borrow_mut().open(request, known, now);
        loop {
            let (op, found) = match step {
                Step::Done(done) => {
                    self.tell(&done.changes);
                    for notice in &done.notices {
                        self.port.noticed(&self.name, notice);
                    }
                    return done.answer;
                }
                Step::Read(mut op) => {
                    self.tell(&op.take_changes());
                    let found = match self.port.load(&self.name) {
                        Ok(entry) => Found::Read(entry),
                        Err(message) => Found::Failed(message),
                    };
                    (op, found)
                }
                Step::Write(mut write) => {
                    self.tell(&write.operation.take_changes());
                    let swapped =
                        self.port
                            .compare_and_swap(&self.name, write.expected, &write.data);
                    let found = match swapped {
                        Ok(swap) => Found::Swapped(swap),
                        Err(message) => Found::Failed(message),
                    };
                    (write.operation, found)
                }
            };
            step = self
                .engine
                .borrow_mut()
                .resume(op, found, now)
                .expect("the driver answers the step the engine asked");
        }
    }

    fn tell(&self, changes: &[Change]) {
        for change in changes {
            self.port.state_changed(&self.name, change);
        }
    }
}

/// An answer of another kind than the request's: the engine answers each
/// request with its own kind, so this cannot happen.
fn unreachable_answer<T>(answer: Answer) -> T {
    unreachable!("the engine answered another request: {answer:?}")
}
