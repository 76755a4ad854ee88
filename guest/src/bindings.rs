//! The component's edge: WIT types to and from the pure ones, imports as a [`Port`].

use tripswitch_core::breaker::{
    Admission, Breaker, BreakerError, Change, Denial, Holds, Port, Refusal, Reported, Stored, Swap,
};
use tripswitch_core::config::{Config, Options};
use tripswitch_core::machine::{self, Action, Reason};

wit_bindgen::generate!({
    path: "../wit",
    world: "tripswitch",
});

use exports::tripswitch::breaker::breaker::{Guest, GuestCircuitBreaker};
use tripswitch::breaker::types::{self as wit};
use tripswitch::breaker::{events, storage};

struct Component;

impl Guest for Component {
    type CircuitBreaker = Resource;
}

export!(Component);

/// The imports, seen as the breaker's port.
struct Imports;

impl Port for Imports {
    fn load(&self, key: &str) -> Result<Option<Stored>, String> {
        storage::load(key).map(|entry| entry.map(stored))
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<u64>,
        data: &[u8],
    ) -> Result<Swap, String> {
        Ok(match storage::compare_and_swap(key, expected, data)? {
            storage::SwapResult::Written(version) => Swap::Written(version),
            storage::SwapResult::Conflict(entry) => Swap::Conflict(entry.map(stored)),
        })
    }

    fn state_changed(&self, breaker: &str, change: &Change) {
        events::state_changed(&wit::StateChange {
            breaker: breaker.to_string(),
            previous: to_wit(change.previous),
            current: to_wit(change.current),
            at_ms: change.at_ms,
            generation: change.generation,
            reason: reason(change.reason),
            remote: change.remote,
        });
    }
}

fn stored(entry: storage::Entry) -> Stored {
    Stored {
        version: entry.version,
        data: entry.data,
    }
}

/// The exported resource: one breaker.
struct Resource(Breaker<Imports>);

impl GuestCircuitBreaker for Resource {
    fn create(
        name: String,
        config: wit::Config,
    ) -> Result<exports::tripswitch::breaker::breaker::CircuitBreaker, wit::ConfigError> {
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
        Ok(exports::tripswitch::breaker::breaker::CircuitBreaker::new(
            Resource(Breaker::new(name, config, Imports)),
        ))
    }

    fn name(&self) -> String {
        self.0.name().to_string()
    }

    fn acquire(&self, now_ms: u64) -> Result<wit::Admission, wit::Refusal> {
        answer(self.0.acquire(now_ms))
    }

    fn acquire_at_version(
        &self,
        now_ms: u64,
        version: Option<u64>,
    ) -> Result<wit::Admission, wit::Refusal> {
        answer(self.0.acquire_at_version(now_ms, version.unwrap_or(0)))
    }

    fn report(
        &self,
        permit: wit::Permit,
        outcome: wit::Outcome,
        now_ms: u64,
    ) -> Result<wit::Reported, wit::BreakerError> {
        let permit = machine::Permit {
            generation: permit.generation,
            trial: permit.trial,
            issued_at_ms: permit.issued_at_ms,
        };
        let outcome = match outcome {
            wit::Outcome::Success => machine::Outcome::Success,
            wit::Outcome::Failure => machine::Outcome::Failure,
            wit::Outcome::Ignored => machine::Outcome::Ignored,
        };
        self.0
            .report(&permit, outcome, now_ms)
            .map(|Reported { tripped, state }| wit::Reported {
                tripped,
                state: to_wit(state),
                flush_by_ms: self.0.flush_due(),
            })
            .map_err(error)
    }

    fn snapshot(&self, now_ms: u64) -> Result<wit::Snapshot, wit::BreakerError> {
        let snap = self.0.snapshot(now_ms).map_err(error)?;
        Ok(wit::Snapshot {
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
        })
    }

    fn operate(&self, action: wit::Action, now_ms: u64) -> Result<(), wit::BreakerError> {
        let action = match action {
            wit::Action::Open => Action::Open,
            wit::Action::Close => Action::Close,
            wit::Action::HalfOpen => Action::HalfOpen,
            wit::Action::ForceOpen => Action::ForceOpen,
            wit::Action::Disable => Action::Disable,
        };
        self.0.operate(action, now_ms).map_err(error)
    }

    fn flush(&self, now_ms: u64) -> Result<(), wit::BreakerError> {
        self.0.flush(now_ms).map_err(error)
    }
}

/// Acquire's answer in WIT terms.
fn answer(answer: Result<Admission, Refusal>) -> Result<wit::Admission, wit::Refusal> {
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

fn error(error: BreakerError) -> wit::BreakerError {
    match error {
        BreakerError::Storage(message) => wit::BreakerError::Storage(message),
        BreakerError::Corrupt(message) => wit::BreakerError::Corrupt(message),
        BreakerError::Contended(message) => wit::BreakerError::Contended(message),
        BreakerError::Mismatch(message) => wit::BreakerError::Mismatch(message),
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
