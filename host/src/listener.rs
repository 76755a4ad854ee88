//! Hooks that hear what a breaker does (pybreaker's listener names).

use crate::error::{Error, Rejected};
use crate::types::{Notice, StateChange};

/// Hears a breaker's calls and transitions; every hook defaults to nothing.
///
/// Hooks run on the calling thread after the breaker's own work, with no
/// lock held. On a trip the order is `failure`, then `state_change`; on a
/// trial that closes the circuit it is `state_change`, then `success`.
pub trait Listener: Send + Sync + 'static {
    /// A call was admitted and is about to run.
    fn before_call(&self, _breaker: &str) {}
    /// An admitted call succeeded (or failed with an excluded error).
    fn success(&self, _breaker: &str) {}
    /// An admitted call failed; `tripped` says whether it opened the circuit.
    fn failure(&self, _breaker: &str, _tripped: bool) {}
    /// An admitted call ended unreported (its permit dropped) or was ignored:
    /// the breaker counts nothing of it.
    fn ignored(&self, _breaker: &str) {}
    /// The breaker changed state.
    fn state_change(&self, _breaker: &str, _change: &StateChange) {}
    /// The breaker did something else worth a log line (told by the one
    /// instance that did it).
    fn notice(&self, _breaker: &str, _notice: &Notice) {}
    /// A call was rejected without running.
    fn rejected(&self, _breaker: &str, _rejected: &Rejected) {}
    /// The breaker failed where no caller could be told: a result that could
    /// not be recorded, or the start of a storage outage (once per outage).
    fn error(&self, _breaker: &str, _error: &Error) {}
}
