//! What a breaker does, for the dashboards a service already has: counters
//! and a state gauge through the `metrics` facade (feature `metrics`), and
//! `tracing` events for state changes and storage outages (feature
//! `tracing`). Every breaker built with either feature carries this
//! listener; with no recorder or subscriber installed each hook costs an
//! atomic load, and one installed later sees what follows. The state and
//! window gauges are set at every change and whenever [`publish`] reads a
//! snapshot; a host that meters a breaker running elsewhere (a proxy's
//! plugin) records through a [`Meter`].

#[cfg(feature = "metrics")]
use crate::breaker::CircuitBreaker;
use crate::error::Error;
#[cfg(feature = "metrics")]
use crate::error::Rejected;
use crate::listener::Listener;
use crate::types::{Notice, StateChange};
#[cfg(feature = "metrics")]
use crate::types::{Outcome, Snapshot, State};

#[path = "metric_names.rs"]
pub mod names;

/// The listener behind the `metrics` and `tracing` features, one per breaker.
pub(crate) struct Telemetry {
    #[cfg(feature = "metrics")]
    meter: Meter,
}

impl Telemetry {
    /// The listener for the breaker named `breaker`.
    pub(crate) fn new(breaker: &str) -> Telemetry {
        #[cfg(feature = "metrics")]
        {
            Telemetry {
                meter: Meter::new(breaker),
            }
        }
        #[cfg(not(feature = "metrics"))]
        {
            let _ = breaker;
            Telemetry {}
        }
    }
}

/// One breaker's meters under the [`names`]: the keys of its hot counters
/// are made once, so a count allocates nothing, and each count goes to
/// whichever recorder is installed at that moment (a thread's local one
/// first).
#[cfg(feature = "metrics")]
pub struct Meter {
    breaker: metrics::SharedString,
    admitted: metrics::Key,
    success: metrics::Key,
    failure: metrics::Key,
    ignored: metrics::Key,
    /// By reason, in [`Rejected::KINDS`]' order.
    not_permitted: Vec<metrics::Key>,
}

#[cfg(feature = "metrics")]
static METADATA: metrics::Metadata<'static> =
    metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

#[cfg(feature = "metrics")]
impl Meter {
    /// The meters of the breaker named `breaker`.
    pub fn new(breaker: &str) -> Meter {
        let name = metrics::SharedString::from_shared(std::sync::Arc::<str>::from(breaker));
        let breaker = || metrics::Label::new("breaker", name.clone());
        let key = |metric: &'static str, label: &'static str, value: &'static str| {
            metrics::Key::from_parts(
                metric,
                vec![breaker(), metrics::Label::from_static_parts(label, value)],
            )
        };
        Meter {
            admitted: metrics::Key::from_parts(names::ADMITTED, vec![breaker()]),
            success: key(names::CALLS, "outcome", "success"),
            failure: key(names::CALLS, "outcome", "failure"),
            ignored: key(names::CALLS, "outcome", "ignored"),
            not_permitted: Rejected::KINDS
                .iter()
                .map(|reason| key(names::NOT_PERMITTED, "reason", reason))
                .collect(),
            breaker: name,
        }
    }

    /// Counts an admitted call.
    pub fn admitted(&self) {
        count(&self.admitted);
    }

    /// Counts an admitted call that ended with `outcome`.
    pub fn outcome(&self, outcome: Outcome) {
        count(match outcome {
            Outcome::Success => &self.success,
            Outcome::Failure => &self.failure,
            Outcome::Ignored => &self.ignored,
        });
    }

    /// Counts a call the breaker refused.
    pub fn rejected(&self, rejected: &Rejected) {
        count(&self.not_permitted[rejected.kind_index()]);
    }

    /// Counts a change of state (`remote`: another instance made it) and
    /// sets the state gauge to the new state.
    pub fn transition(&self, from: State, to: State, remote: bool) {
        metrics::counter!(
            names::TRANSITIONS,
            "breaker" => self.breaker.clone(),
            "from" => from.as_str(),
            "to" => to.as_str(),
            "remote" => if remote { "true" } else { "false" }
        )
        .increment(1);
        self.state(to);
    }

    /// Counts a notice.
    pub fn notice(&self, notice: &Notice) {
        metrics::counter!(
            names::NOTICES,
            "breaker" => self.breaker.clone(),
            "kind" => notice.kind.as_str()
        )
        .increment(1);
    }

    /// Sets the state and window gauges from a snapshot.
    pub fn snapshot(&self, snapshot: &Snapshot) {
        self.state(snapshot.state);
        let breaker = self.breaker.clone();
        let rate = |rate: Option<f32>| rate.map_or(f64::NAN, f64::from);
        metrics::gauge!(names::FAILURE_RATE, "breaker" => breaker.clone())
            .set(rate(snapshot.window.failure_rate));
        metrics::gauge!(names::SLOW_CALL_RATE, "breaker" => breaker.clone())
            .set(rate(snapshot.window.slow_call_rate));
        metrics::gauge!(names::WINDOW_CALLS, "breaker" => breaker)
            .set(f64::from(snapshot.window.calls));
    }

    /// Sets the state gauge: 1 for `current`, 0 for every other state.
    fn state(&self, current: State) {
        for state in State::ALL {
            let value = if state == current { 1.0 } else { 0.0 };
            metrics::gauge!(names::STATE, "breaker" => self.breaker.clone(), "state" => state.as_str())
                .set(value);
        }
    }
}

/// Describes every metric (type, unit, help text) to the recorder installed
/// now, for exporters that print descriptions (Prometheus' `# HELP`).
#[cfg(feature = "metrics")]
pub fn describe() {
    for (name, kind, help) in names::ALL {
        match kind {
            names::Kind::Counter => metrics::describe_counter!(name, help),
            names::Kind::Gauge => metrics::describe_gauge!(name, help),
        }
    }
}

/// Reads `breaker`'s snapshot and sets its state and window gauges: call it
/// on a timer, or before each scrape, for gauges that follow the clock (an
/// open circuit whose timeout elapsed reads half-open).
#[cfg(feature = "metrics")]
pub fn publish(breaker: &CircuitBreaker) -> Result<Snapshot, Error> {
    let snapshot = breaker.snapshot()?;
    Meter::new(breaker.name()).snapshot(&snapshot);
    Ok(snapshot)
}

/// Adds one to the counter `key` in whichever recorder is installed now.
#[cfg(feature = "metrics")]
fn count(key: &metrics::Key) {
    metrics::with_recorder(|recorder| recorder.register_counter(key, &METADATA).increment(1));
}

impl Listener for Telemetry {
    #[cfg(feature = "metrics")]
    fn before_call(&self, _breaker: &str) {
        self.meter.admitted();
    }

    #[cfg(feature = "metrics")]
    fn ignored(&self, _breaker: &str) {
        self.meter.outcome(Outcome::Ignored);
    }

    #[cfg(feature = "metrics")]
    fn success(&self, _breaker: &str) {
        self.meter.outcome(Outcome::Success);
    }

    #[cfg(feature = "metrics")]
    fn failure(&self, _breaker: &str, _tripped: bool) {
        self.meter.outcome(Outcome::Failure);
    }

    #[cfg(feature = "metrics")]
    fn rejected(&self, _breaker: &str, rejected: &Rejected) {
        self.meter.rejected(rejected);
    }

    fn state_change(&self, breaker: &str, change: &StateChange) {
        #[cfg(feature = "metrics")]
        self.meter
            .transition(change.previous, change.current, change.remote);
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

    fn notice(&self, breaker: &str, notice: &Notice) {
        #[cfg(feature = "metrics")]
        self.meter.notice(notice);
        #[cfg(feature = "tracing")]
        tracing::warn!(breaker, kind = notice.kind.as_str(), "{}", notice.message);
        let _ = (breaker, notice);
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
