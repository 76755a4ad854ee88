//! The values a breaker hands out: states, outcomes, snapshots, state changes.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::bindings::wit;

/// Where a circuit stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
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
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
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

/// An operator's command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub enum Action {
    /// Open the circuit now.
    Open,
    /// Close it and reset its counters.
    Close,
    /// Move it to half-open, admitting trials.
    HalfOpen,
    /// Reject every call until another action.
    ForceOpen,
    /// Admit every call and record nothing.
    Disable,
}

impl Action {
    /// Every action, in declaration order.
    pub const ALL: [Action; 5] = [
        Action::Open,
        Action::Close,
        Action::HalfOpen,
        Action::ForceOpen,
        Action::Disable,
    ];

    /// The action's name as the WIT spells it (`force-open`).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Open => "open",
            Action::Close => "close",
            Action::HalfOpen => "half-open",
            Action::ForceOpen => "force-open",
            Action::Disable => "disable",
        }
    }
}

impl FromStr for Action {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Action::ALL
            .into_iter()
            .find(|action| action.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
                format!("unknown action {s:?}: expected one of {}", known.join(", "))
            })
    }
}

impl From<Action> for wit::Action {
    fn from(action: Action) -> Self {
        match action {
            Action::Open => wit::Action::Open,
            Action::Close => wit::Action::Close,
            Action::HalfOpen => wit::Action::HalfOpen,
            Action::ForceOpen => wit::Action::ForceOpen,
            Action::Disable => wit::Action::Disable,
        }
    }
}

/// Why a breaker's state last changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub enum Reason {
    /// Failures in closed opened the circuit.
    Tripped,
    /// A failed trial re-opened it.
    TrialFailed,
    /// Trials closed it.
    Recovered,
    /// The reset timeout elapsed and a trial was admitted.
    TimeoutElapsed,
    /// An operator acted.
    Operator,
    /// The window's failure rate reached its threshold.
    FailureRate,
    /// The window's slow-call rate reached its threshold.
    SlowCallRate,
}

impl Reason {
    /// The reason's name as the WIT spells it (`trial-failed`).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Tripped => "tripped",
            Reason::TrialFailed => "trial-failed",
            Reason::Recovered => "recovered",
            Reason::TimeoutElapsed => "timeout-elapsed",
            Reason::Operator => "operator",
            Reason::FailureRate => "failure-rate",
            Reason::SlowCallRate => "slow-call-rate",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<wit::Reason> for Reason {
    fn from(reason: wit::Reason) -> Self {
        match reason {
            wit::Reason::Tripped => Reason::Tripped,
            wit::Reason::TrialFailed => Reason::TrialFailed,
            wit::Reason::Recovered => Reason::Recovered,
            wit::Reason::TimeoutElapsed => Reason::TimeoutElapsed,
            wit::Reason::Operator => Reason::Operator,
            wit::Reason::FailureRate => Reason::FailureRate,
            wit::Reason::SlowCallRate => Reason::SlowCallRate,
        }
    }
}

/// A breaker's state as seen at one instant.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
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
    /// Grows by one with every state change and every operator action.
    pub generation: u64,
    /// How long until a call is admitted; none if now, or if waiting will not help.
    #[cfg_attr(
        feature = "serde",
        serde(rename = "retry_after_ms", with = "millis_opt")
    )]
    pub retry_after: Option<Duration>,
    /// The stored version it was read at (0: the key is absent).
    pub version: u64,
    /// What the failure-rate window holds now (all zero without a window).
    pub window: WindowTotals,
    /// How long the current (or last) open lasts, the backoff applied
    /// (none: never opened).
    #[cfg_attr(
        feature = "serde",
        serde(rename = "open_duration_ms", with = "millis_opt")
    )]
    pub open_duration: Option<Duration>,
    /// When a trial becomes allowed, in Unix ms, as the record says (none:
    /// not open, or a record from before format 3).
    pub retry_at_ms: Option<u64>,
}

/// What a failure-rate window holds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct WindowTotals {
    /// Calls counted.
    pub calls: u32,
    /// Of those, failed.
    pub failures: u32,
    /// Of those, slow.
    pub slow_calls: u32,
    /// Failed calls in percent of calls (none: no calls).
    pub failure_rate: Option<f32>,
    /// Slow calls in percent of calls (none: no calls).
    pub slow_call_rate: Option<f32>,
}

/// `Option<Duration>` as whole milliseconds in serialized form.
#[cfg(feature = "serde")]
mod millis_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        value.map(crate::millis).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
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
            version: s.version,
            window: WindowTotals {
                calls: s.window_calls,
                failures: s.window_failures,
                slow_calls: s.window_slow_calls,
                failure_rate: s.failure_rate,
                slow_call_rate: s.slow_call_rate,
            },
            open_duration: s.open_duration_ms.map(Duration::from_millis),
            retry_at_ms: s.retry_at_ms,
        }
    }
}

/// One state transition, as a listener hears of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct StateChange {
    /// The state before (as this process last knew it).
    pub previous: State,
    /// The state after.
    pub current: State,
    /// When the change was made, by whichever process made it, in Unix ms.
    pub at_ms: u64,
    /// The generation of the record that holds the change.
    pub generation: u64,
    /// Why it changed.
    pub reason: Reason,
    /// Whether another instance or process wrote it.
    pub remote: bool,
}

impl From<&wit::StateChange> for StateChange {
    fn from(change: &wit::StateChange) -> Self {
        StateChange {
            previous: change.previous.into(),
            current: change.current.into(),
            at_ms: change.at_ms,
            generation: change.generation,
            reason: change.reason.into(),
            remote: change.remote,
        }
    }
}

/// The kinds of [`Notice`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NoticeKind {
    /// Another config's window shape replaced the stored one, which no
    /// instance configured with it wrote for a minute: the window
    /// restarted.
    WindowRestarted,
}

impl NoticeKind {
    /// The kind's name as the WIT spells it (`window-restarted`).
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::WindowRestarted => "window-restarted",
        }
    }
}

/// Something a breaker did that is no state change, as a listener hears of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// What kind.
    pub kind: NoticeKind,
    /// What happened, in words.
    pub message: String,
}

impl From<&wit::Notice> for Notice {
    fn from(notice: &wit::Notice) -> Self {
        Notice {
            kind: match notice.kind {
                wit::NoticeKind::WindowRestarted => NoticeKind::WindowRestarted,
            },
            message: notice.message.clone(),
        }
    }
}
