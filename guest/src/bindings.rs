//! The component's edge: WIT types to and from the pure ones, and the
//! exported breaker and operation resources over [`Engine`].

use std::cell::{Cell, RefCell};

use tripswitch_core::answer::{
    Admission, BreakerError, Change, Denial, Holds, Notice, NoticeKind, Refusal, Stored, Swap,
};
use tripswitch_core::config::{Config, Options};
use tripswitch_core::engine::{self, Engine, Found, Known, Request};
use tripswitch_core::machine::{self, Action, Reason};
use tripswitch_core::window::Shape;

wit_bindgen::generate!({
    path: "../wit",
    world: "tripswitch",
});

use exports::tripswitch::breaker::breaker::{
    self as exported, Guest, GuestCircuitBreaker, GuestOperation,
};
use tripswitch::breaker::types::{self as wit};

struct Component;

impl Guest for Component {
    type CircuitBreaker = Breaker;
    type Operation = Operation;
}

export!(Component);

thread_local! {
    /// Breakers made so far, so that each has an id its operations carry.
    static MADE: Cell<u64> = const { Cell::new(0) };
}

/// The exported breaker: one engine.
struct Breaker {
    id: u64,
    engine: RefCell<Engine>,
}

/// The exported operation: one in flight, and the breaker it belongs to.
struct Operation {
    breaker: u64,
    inner: engine::Operation,
}

impl GuestOperation for Operation {}

impl Breaker {
    /// A step in WIT terms; an operation goes out as a resource.
    fn step(&self, step: engine::Step) -> exported::Step {
        let operation = |inner| {
            exported::Operation::new(Operation {
                breaker: self.id,
                inner,
            })
        };
        match step {
            engine::Step::Read(op) => exported::Step::Read(operation(op)),
            engine::Step::Write(write) => exported::Step::Write(exported::Write {
                operation: operation(write.operation),
                expected: write.expected,
                data: write.data,
                answer: write.answer.map(|answer| self.answer(answer)),
            }),
            engine::Step::Done(done) => exported::Step::Done(wit::Done {
                answer: self.answer(done.answer),
                changes: done
                    .changes
                    .iter()
                    .map(|change| self.change(change))
                    .collect(),
                notices: done.notices.into_iter().map(notice).collect(),
                flush_by_ms: done.flush_by_ms,
            }),
        }
    }

    fn answer(&self, answer: engine::Answer) -> wit::Answer {
        let flush_by_ms = self.engine.borrow().flush_due();
        match answer {
            engine::Answer::Acquired(answer) => wit::Answer::Acquired(admission(answer)),
            engine::Answer::Reported(answer) => wit::Answer::Reported(
                answer
                    .map(|reported| wit::Reported {
                        tripped: reported.tripped,
                        state: to_wit(reported.state),
                        flush_by_ms,
                    })
                    .map_err(error),
            ),
            engine::Answer::Snapshot(answer) => {
                wit::Answer::Snapshot(answer.map(snapshot).map_err(error))
            }
            engine::Answer::Operated(answer) => wit::Answer::Operated(answer.map_err(error)),
            engine::Answer::Flushed(answer) => wit::Answer::Flushed(answer.map_err(error)),
        }
    }

    fn change(&self, change: &Change) -> wit::StateChange {
        wit::StateChange {
            breaker: self.engine.borrow().name().to_string(),
            previous: to_wit(change.previous),
            current: to_wit(change.current),
            at_ms: change.at_ms,
            generation: change.generation,
            reason: reason(change.reason),
            remote: change.remote,
        }
    }
}

impl GuestCircuitBreaker for Breaker {
    fn create(
        name: String,
        config: wit::Config,
    ) -> Result<exported::CircuitBreaker, wit::ConfigError> {
        let options = Options {
            fail_max: config.fail_max,
            reset_timeout_ms: config.reset_timeout_ms,
            success_threshold: config.success_threshold,
            half_open_max_calls: config.half_open_max_calls,
            trial_timeout_ms: config.trial_timeout_ms,
            fallback_state: config.fallback_state.map(from_wit),
            failure_rate_threshold: config.failure_rate_threshold,
            minimum_calls: config.minimum_calls,
            window_ms: config.window_ms,
            window_calls: config.window_calls,
            slow_call_ms: config.slow_call_ms,
            slow_call_rate_threshold: config.slow_call_rate_threshold,
            backoff_multiplier: config.backoff_multiplier,
            max_reset_timeout_ms: config.max_reset_timeout_ms,
            flush_interval_ms: config.flush_interval_ms,
        };
        let config = Config::resolve(&name, &options)
            .map_err(|e| wit::ConfigError::Invalid((e.field.to_string(), e.reason)))?;
        let id = MADE.with(|made| {
            made.set(made.get() + 1);
            made.get()
        });
        Ok(exported::CircuitBreaker::new(Breaker {
            id,
            engine: RefCell::new(Engine::new(name, config)),
        }))
    }

    fn name(&self) -> String {
        self.engine.borrow().name().to_string()
    }

    fn settings(&self) -> wit::Settings {
        settings(self.engine.borrow().config())
    }

    fn open(&self, request: wit::Request, known: wit::Known, now_ms: u64) -> exported::Step {
        let request = match request {
            wit::Request::Acquire => Request::Acquire,
            wit::Request::Report(report) => Request::Report {
                permit: machine::Permit {
                    generation: report.permit.generation,
                    trial: report.permit.trial,
                    issued_at_ms: report.permit.issued_at_ms,
                },
                outcome: match report.outcome {
                    wit::Outcome::Success => machine::Outcome::Success,
                    wit::Outcome::Failure => machine::Outcome::Failure,
                    wit::Outcome::Ignored => machine::Outcome::Ignored,
                },
            },
            wit::Request::Snapshot => Request::Snapshot,
            wit::Request::Operate(action) => Request::Operate(match action {
                wit::Action::Open => Action::Open,
                wit::Action::Close => Action::Close,
                wit::Action::HalfOpen => Action::HalfOpen,
                wit::Action::ForceOpen => Action::ForceOpen,
                wit::Action::Disable => Action::Disable,
            }),
            wit::Request::Flush => Request::Flush,
        };
        let known = match known {
            wit::Known::Nothing => Known::Nothing,
            wit::Known::Absent => Known::Absent,
            wit::Known::Entry(entry) => Known::Entry(stored(entry)),
            wit::Known::Version(version) => Known::Version(version),
        };
        let step = self.engine.borrow_mut().open(request, known, now_ms);
        self.step(step)
    }

    fn resume(
        &self,
        operation: exported::Operation,
        found: wit::Found,
        now_ms: u64,
    ) -> Result<exported::Step, String> {
        let operation: Operation = operation.into_inner();
        let name = self.name();
        if operation.breaker != self.id {
            return Err(format!(
                "breaker {name:?}: the operation was opened by another breaker"
            ));
        }
        let found = match found {
            wit::Found::Read(entry) => Found::Read(entry.map(stored)),
            wit::Found::Swapped(wit::SwapResult::Written(version)) => {
                Found::Swapped(Swap::Written(version))
            }
            wit::Found::Swapped(wit::SwapResult::Conflict(entry)) => {
                Found::Swapped(Swap::Conflict(entry.map(stored)))
            }
            wit::Found::Failed(message) => Found::Failed(message),
        };
        let step = self
            .engine
            .borrow_mut()
            .resume(operation.inner, found, now_ms)
            .map_err(|misuse| misuse.0)?;
        Ok(self.step(step))
    }

    fn abandon(&self, operation: exported::Operation) {
        let operation: Operation = operation.into_inner();
        if operation.breaker == self.id {
            self.engine.borrow_mut().abandon(operation.inner);
        }
    }
}

fn stored(entry: wit::Entry) -> Stored {
    Stored {
        version: entry.version,
        data: entry.data,
    }
}

/// The effective configuration in WIT terms.
fn settings(config: &Config) -> wit::Settings {
    let (window_ms, window_calls) = match config.window {
        Some(Shape::Time { ms }) => (Some(ms), None),
        Some(Shape::Calls { calls }) => (None, Some(calls)),
        None => (None, None),
    };
    wit::Settings {
        fail_max: config.fail_max,
        consecutive: config.consecutive,
        reset_timeout_ms: config.reset_timeout_ms,
        success_threshold: config.success_threshold,
        half_open_max_calls: config.half_open_max_calls,
        trial_timeout_ms: config.trial_timeout_ms,
        fallback_state: to_wit(config.fallback_state),
        failure_rate_threshold: config.failure_rate_threshold,
        minimum_calls: config.minimum_calls,
        window_ms,
        window_calls,
        slow_call_ms: config.slow_call_ms,
        slow_call_rate_threshold: config.slow_call_rate_threshold,
        backoff_multiplier: config.backoff_multiplier,
        max_reset_timeout_ms: (config.max_reset_timeout_ms != u64::MAX)
            .then_some(config.max_reset_timeout_ms),
        flush_interval_ms: config.flush_interval_ms,
    }
}

/// Acquire's answer in WIT terms.
fn admission(answer: Result<Admission, Refusal>) -> Result<wit::Admission, wit::Refusal> {
    let holds = |holds: Option<Holds>| {
        holds.map(|h| wit::Holds {
            version: h.version,
            until_ms: h.until_ms,
        })
    };
    match answer {
        Ok(admission) => Ok(wit::Admission {
            permit: wit::Permit {
                generation: admission.permit.generation,
                trial: admission.permit.trial,
                issued_at_ms: admission.permit.issued_at_ms,
            },
            holds: holds(admission.holds),
            quiet_success: admission.quiet_success,
            degraded: admission.degraded,
        }),
        Err(refusal) => Err(wit::Refusal {
            rejection: match refusal.denial {
                Denial::Rejected(machine::Rejection::Open(ms)) => wit::Rejection::Open(ms),
                Denial::Rejected(machine::Rejection::HalfOpenFull(ms)) => {
                    wit::Rejection::HalfOpenFull(ms)
                }
                Denial::Rejected(machine::Rejection::ForcedOpen) => wit::Rejection::ForcedOpen,
                Denial::StorageUnavailable(message) => wit::Rejection::StorageUnavailable(message),
            },
            state: to_wit(refusal.state),
            holds: holds(refusal.holds),
        }),
    }
}

fn snapshot(snap: machine::Snapshot) -> wit::Snapshot {
    wit::Snapshot {
        state: to_wit(snap.state),
        failures: snap.failures,
        successes: snap.successes,
        opened_at_ms: snap.opened_at_ms,
        trials_in_flight: snap.trials_in_flight,
        generation: snap.generation,
        retry_after_ms: snap.retry_after_ms,
        version: snap.version,
        window_calls: snap.window.calls,
        window_failures: snap.window.failed,
        window_slow_calls: snap.window.slow,
        failure_rate: snap.window.failure_rate(),
        slow_call_rate: snap.window.slow_call_rate(),
        open_duration_ms: snap.open_duration_ms,
        retry_at_ms: snap.retry_at_ms,
    }
}

fn error(error: BreakerError) -> wit::BreakerError {
    match error {
        BreakerError::Storage(message) => wit::BreakerError::Storage(message),
        BreakerError::Corrupt(message) => wit::BreakerError::Corrupt(message),
        BreakerError::Contended(message) => wit::BreakerError::Contended(message),
    }
}

fn notice(notice: Notice) -> wit::Notice {
    wit::Notice {
        kind: match notice.kind {
            NoticeKind::WindowRestarted => wit::NoticeKind::WindowRestarted,
        },
        message: notice.message,
    }
}

fn reason(reason: Reason) -> wit::Reason {
    match reason {
        Reason::Tripped => wit::Reason::Tripped,
        Reason::TrialFailed => wit::Reason::TrialFailed,
        Reason::Recovered => wit::Reason::Recovered,
        Reason::TimeoutElapsed => wit::Reason::TimeoutElapsed,
        Reason::Operator => wit::Reason::Operator,
        Reason::FailureRate => wit::Reason::FailureRate,
        Reason::SlowCallRate => wit::Reason::SlowCallRate,
    }
}

fn to_wit(state: machine::State) -> wit::State {
    match state {
        machine::State::Closed => wit::State::Closed,
        machine::State::Open => wit::State::Open,
        machine::State::HalfOpen => wit::State::HalfOpen,
        machine::State::ForcedOpen => wit::State::ForcedOpen,
        machine::State::Disabled => wit::State::Disabled,
    }
}

fn from_wit(state: wit::State) -> machine::State {
    match state {
        wit::State::Closed => machine::State::Closed,
        wit::State::Open => machine::State::Open,
        wit::State::HalfOpen => machine::State::HalfOpen,
        wit::State::ForcedOpen => machine::State::ForcedOpen,
        wit::State::Disabled => machine::State::Disabled,
    }
}
