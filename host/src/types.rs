//! The values a breaker hands out: states, outcomes, snapshots, state changes.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::bindings::wit;

/// Where a circuit stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Calls run; consecutive failures are counted.
    Closed,
    /// Calls are rejected until the reset timeout elapses.
    Open,
    /// A limited number of trial calls run; their outcome decides.
    HalfOpen,
    /// Every call is rejected until an operator changes the state.
    ForcedOpen,
    /// Every call runs and nothing is recorded.
    Disabled,
}

impl State {
    /// Every state, in declaration order.
    pub const ALL: [State; 5] = [
        State::Closed,
        State::Open,
        State::HalfOpen,
        State::ForcedOpen,
        State::Disabled,
    ];

    /// The state's name as the WIT spells it (`half-open`).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half-open",
            State::ForcedOpen => "forced-open",
            State::Disabled => "disabled",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for State {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        State::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown state {s:?}: expected closed, open, half-open, forced-open or disabled"
                )
            })
    }
}

impl From<wit::State> for State {
    fn from(state: wit::State) -> Self {
        match state {
            wit::State::Closed => State::Closed,
            wit::State::Open => State::Open,
            wit::State::HalfOpen => State::HalfOpen,
            wit::State::ForcedOpen => State::ForcedOpen,
            wit::State::Disabled => State::Disabled,
        }
    }
}

impl From<State> for wit::State {
    fn from(state: State) -> Self {
        match state {
            State::Closed => wit::State::Closed,
            State::Open => wit::State::Open,
            State::HalfOpen => wit::State::HalfOpen,
            State::ForcedOpen => wit::State::ForcedOpen,
            State::Disabled => wit::State::Disabled,
        }
    }
}

/// What became of a permitted call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It succeeded.
    Success,
    /// It failed.
    Failure,
    /// It was cancelled: nothing counts, a trial slot is freed.
    Ignored,
}

impl From<Outcome> for wit::Outcome {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Success => wit::Outcome::Success,
            Outcome::Failure => wit::Outcome::Failure,
            Outcome::Ignored => wit::Outcome::Ignored,
        }
    }
}

/// A breaker's state as seen at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The effective state: an open circuit whose timeout elapsed reads half-open.
    pub state: State,
    /// Consecutive failures counted while closed.
    pub failures: u32,
    /// Trial successes counted in this half-open period.
    pub successes: u32,
    /// When the circuit last opened, in Unix ms.
    pub opened_at_ms: Option<u64>,
    /// Trials admitted and not yet reported or forfeited.
    pub trials_in_flight: u32,
    /// Grows by one with every state change.
    pub generation: u64,
    /// How long until a call is admitted; none if now, or if waiting will not help.
    pub retry_after: Option<Duration>,
}

impl From<wit::Snapshot> for Snapshot {
    fn from(s: wit::Snapshot) -> Self {
        Snapshot {
            state: s.state.into(),
            failures: s.failures,
            successes: s.successes,
            opened_at_ms: s.opened_at_ms,
            trials_in_flight: s.trials_in_flight,
            generation: s.generation,
            retry_after: s.retry_after_ms.map(Duration::from_millis),
        }
    }
}

/// One state transition, as a listener hears of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateChange {
    /// The state before.
    pub previous: State,
    /// The state after.
    pub current: State,
    /// When it was noticed, in Unix ms.
    pub at_ms: u64,
    /// Whether another instance or process wrote it.
    pub remote: bool,
}
