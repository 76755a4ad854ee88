//! The component's edge: WIT types to and from the pure ones, imports as a [`Port`].

use crate::breaker::{Breaker, Denied, Grant, Port, Stored, Swap};
use crate::config::{Config, Options};
use crate::machine::{self, Action};

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

    fn state_changed(
        &self,
        breaker: &str,
        previous: machine::State,
        current: machine::State,
        at_ms: u64,
        remote: bool,
    ) {
        events::state_changed(breaker, to_wit(previous), to_wit(current), at_ms, remote);
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

impl Resource {
    fn operate(&self, action: Action, now_ms: u64) -> Result<(), String> {
        self.0.operate(action, now_ms)
    }
}

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

    fn acquire(&self, now_ms: u64) -> Result<wit::Permit, wit::Rejection> {
        answer(self.0.acquire(now_ms))
    }

    fn acquire_at_version(
        &self,
        now_ms: u64,
        version: Option<u64>,
    ) -> Result<wit::Permit, wit::Rejection> {
        answer(self.0.acquire_at_version(now_ms, version.unwrap_or(0)))
    }

    fn report(
        &self,
        permit: wit::Permit,
        outcome: wit::Outcome,
        now_ms: u64,
    ) -> Result<(), String> {
        let grant = Grant {
            permit: machine::Permit {
                generation: permit.generation,
                trial: permit.trial,
                issued_at_ms: permit.issued_at_ms,
            },
            seen_version: permit.seen_version,
            quiet_success: permit.quiet_success,
            reusable: permit.reusable,
        };
        let outcome = match outcome {
            wit::Outcome::Success => machine::Outcome::Success,
            wit::Outcome::Failure => machine::Outcome::Failure,
            wit::Outcome::Ignored => machine::Outcome::Ignored,
        };
        self.0.report(&grant, outcome, now_ms)
    }

    fn snapshot(&self, now_ms: u64) -> Result<wit::Snapshot, String> {
        let snap = self.0.snapshot(now_ms)?;
        Ok(wit::Snapshot {
            state: to_wit(snap.state),
            failures: snap.failures,
            successes: snap.successes,
            opened_at_ms: snap.opened_at_ms,
            trials_in_flight: snap.trials_in_flight,
            generation: snap.generation,
            retry_after_ms: snap.retry_after_ms,
        })
    }

    fn open(&self, now_ms: u64) -> Result<(), String> {
        self.operate(Action::Open, now_ms)
    }

    fn close(&self, now_ms: u64) -> Result<(), String> {
        self.operate(Action::Close, now_ms)
    }

    fn half_open(&self, now_ms: u64) -> Result<(), String> {
        self.operate(Action::HalfOpen, now_ms)
    }

    fn force_open(&self, now_ms: u64) -> Result<(), String> {
        self.operate(Action::ForceOpen, now_ms)
    }

    fn disable(&self, now_ms: u64) -> Result<(), String> {
        self.operate(Action::Disable, now_ms)
    }
}

/// Acquire's answer in WIT terms.
fn answer(granted: Result<Grant, Denied>) -> Result<wit::Permit, wit::Rejection> {
    match granted {
        Ok(grant) => Ok(wit::Permit {
            generation: grant.permit.generation,
            trial: grant.permit.trial,
            issued_at_ms: grant.permit.issued_at_ms,
            seen_version: grant.seen_version,
            quiet_success: grant.quiet_success,
            reusable: grant.reusable,
        }),
        Err(Denied::Rejected(machine::Rejection::Open(ms))) => Err(wit::Rejection::Open(ms)),
        Err(Denied::Rejected(machine::Rejection::HalfOpenFull(ms))) => {
            Err(wit::Rejection::HalfOpenFull(ms))
        }
        Err(Denied::Rejected(machine::Rejection::ForcedOpen)) => Err(wit::Rejection::ForcedOpen),
        Err(Denied::StorageUnavailable(message)) => {
            Err(wit::Rejection::StorageUnavailable(message))
        }
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
