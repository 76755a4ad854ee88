//! Making a breaker: its knobs (pybreaker's names) as a builder and as a
//! [`Config`] a user can load from their own configuration file.

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::backend::Backend;
use crate::bindings::wit;
use crate::breaker::{CircuitBreaker, Exclusion, Inner};
use crate::clock::{Clock, SystemClock};
use crate::error::Error;
use crate::listener::Listener;
use crate::runtime::Runtime;
use crate::storage::{AsyncStorage, MemoryStorage, Storage};
use crate::types::State;

/// A breaker's knobs; every one left unset takes the component's default.
#[derive(Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct Config {
    /// Consecutive failures that open the circuit.
    pub fail_max: Option<u32>,
    /// How long the circuit stays open before a trial, in ms.
    pub reset_timeout_ms: Option<u64>,
    /// Trial successes in half-open that close the circuit.
    pub success_threshold: Option<u32>,
    /// Trials allowed in flight at once in half-open.
    pub half_open_max_calls: Option<u32>,
    /// How long a trial may run before its slot is forfeited, in ms.
    pub trial_timeout_ms: Option<u64>,
    /// What calls meet while the storage fails.
    pub fallback_state: Option<State>,
    /// The failure rate (percent, 1-100) at which the window opens the circuit.
    pub failure_rate_threshold: Option<u8>,
    /// Calls the window must hold before its rates count.
    pub minimum_calls: Option<u32>,
    /// A time window of this many ms.
    pub window_ms: Option<u64>,
    /// A count window of the last this many calls.
    pub window_calls: Option<u32>,
    /// A call reported more than this many ms after its permit is slow.
    pub slow_call_ms: Option<u64>,
    /// The slow-call rate (percent, 1-100) at which the window opens the circuit.
    pub slow_call_rate_threshold: Option<u8>,
    /// Each open after a failed trial waits this many times the one before.
    pub backoff_multiplier: Option<f64>,
    /// The longest an open waits, in ms.
    pub max_reset_timeout_ms: Option<u64>,
    /// How long an instance may hold window outcomes before merging them, in ms.
    pub flush_interval_ms: Option<u64>,
}

impl From<&Config> for wit::Config {
    fn from(config: &Config) -> Self {
        wit::Config {
            fail_max: config.fail_max,
            reset_timeout_ms: config.reset_timeout_ms,
            success_threshold: config.success_threshold,
            half_open_max_calls: config.half_open_max_calls,
            trial_timeout_ms: config.trial_timeout_ms,
            fallback_state: config.fallback_state.map(Into::into),
            failure_rate_threshold: config.failure_rate_threshold,
            minimum_calls: config.minimum_calls,
            window_ms: config.window_ms,
            window_calls: config.window_calls,
            slow_call_ms: config.slow_call_ms,
            slow_call_rate_threshold: config.slow_call_rate_threshold,
            backoff_multiplier: config.backoff_multiplier,
            max_reset_timeout_ms: config.max_reset_timeout_ms,
            flush_interval_ms: config.flush_interval_ms,
        }
    }
}

impl From<wit::Settings> for Config {
    /// The component's effective configuration: every default filled in; a
    /// rule that does not apply stays unset (fail-max when a failure-rate
    /// rule replaces the consecutive one, a window or slow-call rule not set).
    fn from(settings: wit::Settings) -> Self {
        Config {
            fail_max: settings.consecutive.then_some(settings.fail_max),
            reset_timeout_ms: Some(settings.reset_timeout_ms),
            success_threshold: Some(settings.success_threshold),
            half_open_max_calls: Some(settings.half_open_max_calls),
            trial_timeout_ms: Some(settings.trial_timeout_ms),
            fallback_state: Some(settings.fallback_state.into()),
            failure_rate_threshold: settings.failure_rate_threshold,
            minimum_calls: Some(settings.minimum_calls),
            window_ms: settings.window_ms,
            window_calls: settings.window_calls,
            slow_call_ms: settings.slow_call_ms,
            slow_call_rate_threshold: Some(settings.slow_call_rate_threshold),
            backoff_multiplier: Some(settings.backoff_multiplier),
            max_reset_timeout_ms: settings.max_reset_timeout_ms,
            flush_interval_ms: Some(settings.flush_interval_ms),
        }
    }
}

/// Builds a [`CircuitBreaker`]; every knob left unset takes the component's default.
#[must_use]
pub struct Builder {
    name: String,
    config: Config,
    runtime: Option<Runtime>,
    storage: Option<Backend>,
    clock: Arc<dyn Clock>,
    listeners: Vec<Arc<dyn Listener>>,
    exclusions: Vec<Exclusion>,
}

impl Builder {
    /// A builder for a breaker named `name` (its key in the storage).
    pub(crate) fn new(name: String) -> Builder {
        Builder {
            name,
            config: Config::default(),
            runtime: None,
            storage: None,
            clock: Arc::new(SystemClock),
            listeners: Vec::new(),
            exclusions: Vec::new(),
        }
    }

    /// Takes every knob from `config` (a knob it leaves unset is unset here too).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Consecutive failures that open the circuit.
    pub fn fail_max(mut self, failures: u32) -> Self {
        self.config.fail_max = Some(failures);
        self
    }

    /// How long the circuit stays open before a trial.
    pub fn reset_timeout(mut self, timeout: Duration) -> Self {
        self.config.reset_timeout_ms = Some(crate::millis(timeout));
        self
    }

    /// Trial successes in half-open that close the circuit.
    pub fn success_threshold(mut self, successes: u32) -> Self {
        self.config.success_threshold = Some(successes);
        self
    }

    /// Trials allowed in flight at once in half-open.
    pub fn half_open_max_calls(mut self, calls: u32) -> Self {
        self.config.half_open_max_calls = Some(calls);
        self
    }

    /// How long a trial may run before its slot is forfeited.
    pub fn trial_timeout(mut self, timeout: Duration) -> Self {
        self.config.trial_timeout_ms = Some(crate::millis(timeout));
        self
    }

    /// What calls meet while the storage fails: closed admits, open rejects
    /// (default: the storage's suggestion, else the component's default).
    pub fn fallback_state(mut self, state: State) -> Self {
        self.config.fallback_state = Some(state);
        self
    }

    /// Opens the circuit when the window's failure rate reaches `percent`
    /// (1-100); with it, consecutive failures open it only if
    /// [`fail_max`](Self::fail_max) is set too.
    pub fn failure_rate_threshold(mut self, percent: u8) -> Self {
        self.config.failure_rate_threshold = Some(percent);
        self
    }

    /// Calls the window must hold before its rates count.
    pub fn minimum_calls(mut self, calls: u32) -> Self {
        self.config.minimum_calls = Some(calls);
        self
    }

    /// A time window of this length (ten buckets of a tenth each).
    pub fn window(mut self, length: Duration) -> Self {
        self.config.window_ms = Some(crate::millis(length));
        self
    }

    /// A count window of the last `calls` calls.
    pub fn window_calls(mut self, calls: u32) -> Self {
        self.config.window_calls = Some(calls);
        self
    }

    /// A call that takes longer than `limit` is slow, whatever its outcome.
    pub fn slow_call(mut self, limit: Duration) -> Self {
        self.config.slow_call_ms = Some(crate::millis(limit));
        self
    }

    /// Opens the circuit when the window's slow-call rate reaches `percent`.
    pub fn slow_call_rate_threshold(mut self, percent: u8) -> Self {
        self.config.slow_call_rate_threshold = Some(percent);
        self
    }

    /// Each open after a failed trial waits `multiplier` times the one
    /// before, at most `max`.
    pub fn backoff(mut self, multiplier: f64, max: Duration) -> Self {
        self.config.backoff_multiplier = Some(multiplier);
        self.config.max_reset_timeout_ms = Some(crate::millis(max));
        self
    }

    /// How long the breaker may hold window outcomes before merging them
    /// into the record in one write (zero: every report writes). A
    /// background thread merges them when they are due, and dropping the
    /// last clone of the breaker merges what is held.
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.config.flush_interval_ms = Some(crate::millis(interval));
        self
    }

    /// Counts errors of type `E` for which `predicate` holds as successes.
    pub fn exclude<E: 'static>(
        mut self,
        predicate: impl Fn(&E) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.exclusions.push(Box::new(move |error: &dyn Any| {
            error.downcast_ref::<E>().is_some_and(&predicate)
        }));
        self
    }

    /// Adds a listener.
    pub fn listener(mut self, listener: impl Listener) -> Self {
        self.listeners.push(Arc::new(listener));
        self
    }

    /// Where the breaker keeps its state (default: a memory storage of its own).
    pub fn storage(mut self, storage: impl Storage) -> Self {
        self.storage = Some(Backend::Blocking(Arc::new(storage)));
        self
    }

    /// Where the breaker keeps its state, through a storage it awaits (see
    /// [`AsyncStorage`]); replaces [`storage`](Self::storage).
    pub fn async_storage(mut self, storage: impl AsyncStorage) -> Self {
        self.storage = Some(Backend::Async(Arc::new(storage)));
        self
    }

    /// Where "now" comes from (default: the system clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Runs the breaker on another build of the component.
    pub fn runtime(mut self, runtime: &Runtime) -> Self {
        self.runtime = Some(runtime.clone());
        self
    }

    /// Makes the breaker; the component checks the name and the knobs.
    pub fn build(mut self) -> Result<CircuitBreaker, Error> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        if self.config.fallback_state.is_none() {
            self.config.fallback_state = self.storage.as_ref().and_then(|s| s.fallback_state());
        }
        #[cfg(any(feature = "metrics", feature = "tracing"))]
        self.listeners
            .push(Arc::new(crate::telemetry::Telemetry::new(&self.name)));
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let runtime = self.runtime.unwrap_or_else(|| Runtime::embedded().clone());
        runtime.register(id);
        let breaker = CircuitBreaker::from_inner(Inner {
            id,
            flush_scheduled: std::sync::atomic::AtomicBool::new(false),
            handles: std::sync::atomic::AtomicUsize::new(1),
            writes: Default::default(),
            name: self.name,
            config: wit::Config::from(&self.config),
            runtime,
            storage: self
                .storage
                .unwrap_or_else(|| Backend::Blocking(Arc::new(MemoryStorage::new()))),
            clock: self.clock,
            listeners: self.listeners,
            exclusions: self.exclusions,
            teller: Default::default(),
            memo: Default::default(),
        });
        // Creating the guest resource now surfaces a refused configuration.
        breaker.check()?;
        Ok(breaker)
    }
}
