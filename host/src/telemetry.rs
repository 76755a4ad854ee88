//! What a breaker does, for the dashboards a service already has: counters
//! and a state gauge through the `metrics` facade (feature `metrics`), and
//! `tracing` events for state changes and storage outages (feature
//! `tracing`). Every breaker built with either feature carries this
//! listener; with no recorder or subscriber installed each hook costs an
//! atomic load, and one installed later sees what follows.

use crate::error::Error;
#[cfg(feature = "metrics")]
use crate::error::Rejected;
use crate::listener::Listener;
#[cfg(feature = "metrics")]
use crate::types::State;
use crate::types::StateChange;

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

/// The listener behind the `metrics` and `tracing` features, one per breaker:
/// the keys of its hot counters are made once, so a call allocates nothing.
pub(crate) struct Telemetry {
    #[cfg(feature = "metrics")]
    keys: Keys,
}

#[cfg(feature = "metrics")]
struct Keys {
    breaker: metrics::SharedString,
    success: metrics::Key,
    failure: metrics::Key,
    /// By reason, in [`Rejected::KINDS`]' order.
    not_permitted: Vec<metrics::Key>,
}

#[cfg(feature = "metrics")]
static METADATA: metrics::Metadata<'static> =
    metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

impl Telemetry {
    /// The listener for the breaker named `breaker`.
    pub(crate) fn new(breaker: &str) -> Telemetry {
        #[cfg(feature = "metrics")]
        {
            let name = metrics::SharedString::from_shared(std::sync::Arc::<str>::from(breaker));
            let key = |metric: &'static str, label: &'static str, value: &'static str| {
                metrics::Key::from_parts(
                    metric,
                    vec![
                        metrics::Label::new("breaker", name.clone()),
                        metrics::Label::from_static_parts(label, value),
                    ],
                )
            };
            Telemetry {
                keys: Keys {
                    success: key(names::CALLS, "outcome", "success"),
                    failure: key(names::CALLS, "outcome", "failure"),
                    not_permitted: Rejected::KINDS
                        .iter()
                        .map(|reason| key(names::NOT_PERMITTED, "reason", reason))
                        .collect(),
                    breaker: name,
                },
            }
        }
        #[cfg(not(feature = "metrics"))]
        {
            let _ = breaker;
            Telemetry {}
        }
    }
}

/// Adds one to the counter `key` in whichever recorder is installed now.
#[cfg(feature = "metrics")]
fn count(key: &metrics::Key) {
    metrics::with_recorder(|recorder| recorder.register_counter(key, &METADATA).increment(1));
}

impl Listener for Telemetry {
    #[cfg(feature = "metrics")]
    fn success(&self, _breaker: &str) {
        count(&self.keys.success);
    }

    #[cfg(feature = "metrics")]
    fn failure(&self, _breaker: &str, _tripped: bool) {
        count(&self.keys.failure);
    }

    #[cfg(feature = "metrics")]
    fn rejected(&self, _breaker: &str, rejected: &Rejected) {
        count(&self.keys.not_permitted[rejected.kind_index()]);
    }

    fn state_change(&self, breaker: &str, change: &StateChange) {
        #[cfg(feature = "metrics")]
        {
            let breaker = self.keys.breaker.clone();
            metrics::counter!(
                names::TRANSITIONS,
                "breaker" => breaker.clone(),
                "from" => change.previous.as_str(),
                "to" => change.current.as_str(),
                "remote" => if change.remote { "true" } else { "false" }
            )
            .increment(1);
            for state in State::ALL {
                let value = if state == change.current { 1.0 } else { 0.0 };
                metrics::gauge!(names::STATE, "breaker" => breaker.clone(), "state" => state.as_str())
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
