//! What the breaker hands to Python: snapshots, state changes, refusals,
//! and the names of states and actions (spelled by the host's types).

use pyo3::prelude::*;

/// A breaker's state as seen at one instant (times in Unix ms, durations in ms).
#[pyclass(frozen, get_all, module = "tripswitch._native")]
pub struct Snapshot {
    /// The effective state: an open circuit whose timeout elapsed reads half-open.
    state: &'static str,
    /// Consecutive failures counted while closed.
    failures: u32,
    /// Trial successes counted in this half-open period.
    successes: u32,
    /// When the circuit last opened.
    opened_at_ms: Option<u64>,
    /// Trials admitted and not yet reported or forfeited.
    trials_in_flight: u32,
    /// Grows by one with every state change and operator action.
    generation: u64,
    /// How long until a call is admitted (none: now, or waiting will not help).
    retry_after_ms: Option<u64>,
    /// The stored version it was read at (0: the key is absent).
    version: u64,
    /// Calls the failure-rate window holds.
    window_calls: u32,
    /// Of those, failed.
    window_failures: u32,
    /// Of those, slow.
    window_slow_calls: u32,
    /// Failed calls in percent of the window's calls (none: no calls).
    failure_rate: Option<f32>,
    /// Slow calls in percent of the window's calls (none: no calls).
    slow_call_rate: Option<f32>,
    /// How long the current (or last) open lasts, backoff applied.
    open_duration_ms: Option<u64>,
    /// When a trial becomes allowed, as the record says.
    retry_at_ms: Option<u64>,
}

#[pymethods]
impl Snapshot {
    fn __repr__(&self) -> String {
        format!(
            "Snapshot(state={:?}, failures={}, successes={}, generation={}, version={})",
            self.state, self.failures, self.successes, self.generation, self.version
        )
    }
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl From<tripswitch::Snapshot> for Snapshot {
    fn from(s: tripswitch::Snapshot) -> Self {
        Snapshot {
            state: s.state.as_str(),
            failures: s.failures,
            successes: s.successes,
            opened_at_ms: s.opened_at_ms,
            trials_in_flight: s.trials_in_flight,
            generation: s.generation,
            retry_after_ms: s.retry_after.map(millis),
            version: s.version,
            window_calls: s.window.calls,
            window_failures: s.window.failures,
            window_slow_calls: s.window.slow_calls,
            failure_rate: s.window.failure_rate,
            slow_call_rate: s.window.slow_call_rate,
            open_duration_ms: s.open_duration.map(millis),
            retry_at_ms: s.retry_at_ms,
        }
    }
}

/// One state transition, as the component told it.
#[pyclass(frozen, get_all, module = "tripswitch._native")]
pub struct StateChange {
    /// The state before (as this process last knew it).
    previous: &'static str,
    /// The state after.
    current: &'static str,
    /// When the change was made, by whichever process made it, in Unix ms.
    at_ms: u64,
    /// The generation of the record that holds the change.
    generation: u64,
    /// Why it changed (`tripped`, `trial-failed`, `failure-rate`, ...).
    reason: &'static str,
    /// Whether another instance or process wrote it.
    remote: bool,
}

#[pymethods]
impl StateChange {
    fn __repr__(&self) -> String {
        format!(
            "StateChange({:?} -> {:?}, reason={:?}, remote={})",
            self.previous,
            self.current,
            self.reason,
            if self.remote { "True" } else { "False" }
        )
    }
}

impl From<&tripswitch::StateChange> for StateChange {
    fn from(c: &tripswitch::StateChange) -> Self {
        StateChange {
            previous: c.previous.as_str(),
            current: c.current.as_str(),
            at_ms: c.at_ms,
            generation: c.generation,
            reason: c.reason.as_str(),
            remote: c.remote,
        }
    }
}

/// Why the breaker did not let a call run.
#[pyclass(frozen, get_all, module = "tripswitch._native")]
pub struct Refusal {
    /// `open`, `half-open-full`, `forced-open` or `storage-unavailable`.
    kind: &'static str,
    /// The state that refused (the fallback state when the storage failed).
    state: &'static str,
    /// How long until a call can be admitted, when that is known.
    retry_after_ms: Option<u64>,
    /// The host's description of the refusal.
    message: String,
}

impl From<tripswitch::Rejected> for Refusal {
    fn from(rejected: tripswitch::Rejected) -> Self {
        Refusal {
            kind: rejected.kind(),
            state: rejected.state().as_str(),
            retry_after_ms: rejected.retry_after().map(millis),
            message: rejected.to_string(),
        }
    }
}

/// Every state's name, in the contract's order.
pub fn state_names() -> Vec<&'static str> {
    tripswitch::State::ALL.iter().map(|s| s.as_str()).collect()
}

/// Every operator action's name, in the contract's order.
pub fn action_names() -> Vec<&'static str> {
    tripswitch::Action::ALL.iter().map(|a| a.as_str()).collect()
}
