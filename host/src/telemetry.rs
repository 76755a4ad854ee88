//! What a breaker does, for the dashboards a service already has: counters
//! and a state gauge through the `metrics` facade (feature `metrics`), and
//! `tracing` events for state changes and storage outages (feature
//! `tracing`). Every breaker built with either feature carries this
//! listener; with no recorder or subscriber installed each hook costs an
//! atomic load, and one installed later sees what follows.

use crate::error::{Error, Rejected};
use crate::listener::Listener;
use crate::types::{State, StateChange};

/// The metric names, in the Prometheus conventions (resilience4j's where they map).
pub mod names {
    /// Counter: calls that ran, by `breaker` and `outcome` (`success`, `failure`).
    pub const CALLS: &str = "tripswitch_calls_total";
    /// Counter: calls refused, by `breaker` and `reason` (`open`,
    /// `half-open-full`, `forced-open`, `storage-unavailable`).
    pub const NOT_PERMITTED: &str = "tripswitch_not_permitted_calls_total";
    /// Gauge: 1 for the breaker's state, 0 for the others, by `breaker` and `state`.
    pub const STATE: &str = "tripswitch_state";
    /// Counter: state changes, by `breaker`, `from`, `to` and `remote`
    /// (`true` when another process made it: sum `remote="false"` over a
    /// fleet to count each change once).
    pub const TRANSITIONS: &str = "tripswitch_transitions_total";
}

/// The listener behind the `metrics` and `tracing` features.
pub(crate) struct Telemetry;

/// The name a refusal is counted under.
#[cfg(feature = "metrics")]
pub(crate) fn reason(rejected: &Rejected) -> &'static str {
    match rejected {
        Rejected::Open { .. } => "open",
        Rejected::HalfOpenFull { .. } => "half-open-full",
        Rejected::ForcedOpen => "forced-open",
        Rejected::StorageUnavailable { .. } => "storage-unavailable",
    }
}

impl Listener for Telemetry {
    fn success(&self, breaker: &str) {
        #[cfg(feature = "metrics")]
        metrics::counter!(names::CALLS, "breaker" => breaker.to_string(), "outcome" => "success")
            .increment(1);
        let _ = breaker;
    }

    fn failure(&self, breaker: &str, _tripped: bool) {
        #[cfg(feature = "metrics")]
        metrics::counter!(names::CALLS, "breaker" => breaker.to_string(), "outcome" => "failure")
            .increment(1);
        let _ = breaker;
    }

    fn rejected(&self, breaker: &str, rejected: &Rejected) {
        #[cfg(feature = "metrics")]
        metrics::counter!(
            names::NOT_PERMITTED,
            "breaker" => breaker.to_string(),
            "reason" => reason(rejected)
        )
        .increment(1);
        let _ = (breaker, rejected);
    }

    fn state_change(&self, breaker: &str, change: &StateChange) {
        #[cfg(feature = "metrics")]
        {
            metrics::counter!(
                names::TRANSITIONS,
                "breaker" => breaker.to_string(),
                "from" => change.previous.as_str(),
                "to" => change.current.as_str(),
                "remote" => if change.remote { "true" } else { "false" }
            )
            .increment(1);
            for state in State::ALL {
                let value = if state == change.current { 1.0 } else { 0.0 };
                metrics::gauge!(names::STATE, "breaker" => breaker.to_string(), "state" => state.as_str())
                    .set(value);
            }
        }
        #[cfg(feature = "tracing")]
        tracing::info!(
            breaker,
            from = change.previous.as_str(),
            to = change.current.as_str(),
            reason = change.reason.as_str(),
            remote = change.remote,
            generation = change.generation,
            "circuit breaker state changed"
        );
        let _ = (breaker, change);
    }

    fn error(&self, breaker: &str, error: &Error) {
        #[cfg(feature = "tracing")]
        match error {
            Error::Storage { .. } => {
                tracing::warn!(breaker, %error, "circuit breaker storage failing; the fallback state answers")
            }
            _ => tracing::warn!(breaker, %error, "circuit breaker could not record a result"),
        }
        let _ = (breaker, error);
    }
}
