//! The circuit breaker as a Rust user sees it: a builder, `call`,
//! `call_async`, an RAII permit, snapshots and operator actions. Every
//! decision is the component's; this module only carries calls to it.

use std::any::Any;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::component::ResourceAny;

use crate::bindings::{Announced, wit};
use crate::clock::{Clock, SystemClock};
use crate::error::{CallError, Error, Rejected};
use crate::listener::Listener;
use crate::runtime::{Instance, Runtime};
use crate::storage::{MemoryStorage, Storage};
use crate::types::{Outcome, Snapshot, State, StateChange};

type Exclusion = Box<dyn Fn(&dyn Any) -> bool + Send + Sync>;

/// A named circuit breaker; clones share it.
#[derive(Clone)]
pub struct CircuitBreaker {
    inner: Arc<Inner>,
}

struct Inner {
    id: u64,
    name: String,
    config: wit::Config,
    runtime: Runtime,
    storage: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
    listeners: Vec<Arc<dyn Listener>>,
    exclusions: Vec<Exclusion>,
    /// The newest state change told to the listeners, by storage version.
    told: Mutex<Told>,
    /// Whether the storage is failing, so an outage is told once.
    outage: AtomicBool,
    /// The component's last answer to acquire, while it holds.
    reusable: Mutex<Option<Answer>>,
}

/// An answer of the component's that holds while the stored version stays
/// the one it was given at: an admission it marked `reusable`, or a rejection
/// whose own terms bound it (forced open; open or full until a time).
#[derive(Clone, Copy)]
enum Answer {
    Admitted(wit::Permit),
    ForcedOpen { version: u64 },
    OpenUntil { version: u64, until_ms: u64 },
    FullUntil { version: u64, until_ms: u64 },
}

impl Answer {
    /// What of the component's answer at `now`, given at `version`, can be reused.
    fn of(answer: &Result<wit::Permit, wit::Rejection>, version: u64, now: u64) -> Option<Answer> {
        Some(match answer {
            Ok(permit) if permit.reusable => Answer::Admitted(*permit),
            Ok(_) | Err(wit::Rejection::StorageUnavailable(_)) => return None,
            Err(wit::Rejection::ForcedOpen) => Answer::ForcedOpen { version },
            Err(wit::Rejection::Open(ms)) => Answer::OpenUntil {
                version,
                until_ms: now.saturating_add(*ms),
            },
            Err(wit::Rejection::HalfOpenFull(ms)) => Answer::FullUntil {
                version,
                until_ms: now.saturating_add(*ms),
            },
        })
    }

    /// The same answer at `now`, if it still holds for `version`.
    fn at(self, version: u64, now: u64) -> Option<Result<wit::Permit, wit::Rejection>> {
        match self {
            Answer::Admitted(permit) if permit.seen_version == version => Some(Ok(wit::Permit {
                issued_at_ms: now,
                ..permit
            })),
            Answer::ForcedOpen { version: given } if given == version => {
                Some(Err(wit::Rejection::ForcedOpen))
            }
            Answer::OpenUntil {
                version: given,
                until_ms,
            } if given == version && now < until_ms => {
                Some(Err(wit::Rejection::Open(until_ms - now)))
            }
            Answer::FullUntil {
                version: given,
                until_ms,
            } if given == version && now < until_ms => {
                Some(Err(wit::Rejection::HalfOpenFull(until_ms - now)))
            }
            _ => None,
        }
    }
}

#[derive(Default)]
struct Told {
    version: u64,
    state: Option<State>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.runtime.retire(self.id);
    }
}

impl std::fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

/// Builds a [`CircuitBreaker`]; every knob left unset takes the component's default.
#[must_use]
pub struct Builder {
    name: String,
    config: wit::Config,
    runtime: Option<Runtime>,
    storage: Option<Arc<dyn Storage>>,
    clock: Arc<dyn Clock>,
    listeners: Vec<Arc<dyn Listener>>,
    exclusions: Vec<Exclusion>,
}

impl Builder {
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
    /// (default: the storage's suggestion, else closed).
    pub fn fallback_state(mut self, state: State) -> Self {
        self.config.fallback_state = Some(state.into());
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
        self.storage = Some(Arc::new(storage));
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
            let suggested = self.storage.as_ref().and_then(|s| s.fallback_state());
            self.config.fallback_state = suggested.map(Into::into);
        }
        let breaker = CircuitBreaker {
            inner: Arc::new(Inner {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                name: self.name,
                config: self.config,
                runtime: self.runtime.unwrap_or_else(|| Runtime::embedded().clone()),
                storage: self
                    .storage
                    .unwrap_or_else(|| Arc::new(MemoryStorage::new())),
                clock: self.clock,
                listeners: self.listeners,
                exclusions: self.exclusions,
                told: Mutex::new(Told::default()),
                outage: AtomicBool::new(false),
                reusable: Mutex::new(None),
            }),
        };
        // Creating the guest resource now surfaces a refused configuration.
        let instance = breaker.inner.runtime.checkout()?;
        let (_, instance) = breaker.resource(instance)?;
        breaker.inner.runtime.checkin(instance);
        Ok(breaker)
    }
}

/// What one call into the component produced, besides its answer.
struct Effects {
    announced: Vec<Announced>,
    storage_error: Option<String>,
    storage_ok: bool,
}

impl CircuitBreaker {
    /// Starts building a breaker named `name` (its key in the storage).
    pub fn builder(name: impl Into<String>) -> Builder {
        Builder {
            name: name.into(),
            config: wit::Config {
                fail_max: None,
                reset_timeout_ms: None,
                success_threshold: None,
                half_open_max_calls: None,
                trial_timeout_ms: None,
                fallback_state: None,
            },
            runtime: None,
            storage: None,
            clock: Arc::new(SystemClock),
            listeners: Vec::new(),
            exclusions: Vec::new(),
        }
    }

    /// A breaker with every default and a memory storage of its own.
    pub fn new(name: impl Into<String>) -> Result<CircuitBreaker, Error> {
        CircuitBreaker::builder(name).build()
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Asks to make a call; the permit reports `ignored` if dropped unreported.
    pub fn acquire(&self) -> Result<Permit, Error> {
        let now = self.inner.clock.now_ms();
        let version = self.inner.storage.peek_version(&self.inner.name);
        let reused = version.and_then(|v| self.reusable_answer(v.unwrap_or(0), now));
        if let Some(answer) = reused {
            return match answer {
                Ok(permit) => Ok(self.hand_out(permit)),
                Err(rejection) => Err(self.rejected(rejection)),
            };
        }
        let (answer, effects) = self.invoke(|instance, resource| {
            let guest = instance
                .bindings
                .tripswitch_breaker_breaker()
                .circuit_breaker();
            match version {
                Some(version) => {
                    guest.call_acquire_at_version(&mut instance.store, resource, now, version)
                }
                None => guest.call_acquire(&mut instance.store, resource, now),
            }
        })?;
        let keep = version.and_then(|v| Answer::of(&answer, v.unwrap_or(0), now));
        *self
            .inner
            .reusable
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = keep;
        // The permit exists before any listener runs: a panicking listener
        // then drops it, which frees its trial slot.
        let permit = answer.map(|permit| Permit {
            breaker: self.clone(),
            permit,
            reported: false,
            handed_out: false,
        });
        self.tell_changes(effects);
        match permit {
            Ok(permit) => Ok(self.admitted(permit)),
            Err(rejection) => Err(self.rejected(rejection)),
        }
    }

    /// A rejection, told to the listeners.
    fn rejected(&self, rejection: wit::Rejection) -> Error {
        let rejected = Rejected::from(rejection);
        for listener in &self.inner.listeners {
            listener.rejected(&self.inner.name, &rejected);
        }
        Error::Rejected(rejected)
    }

    /// The component's last answer again, if it still holds at `version` and `now`.
    fn reusable_answer(
        &self,
        version: u64,
        now: u64,
    ) -> Option<Result<wit::Permit, wit::Rejection>> {
        let cached = *self
            .inner
            .reusable
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        cached.and_then(|answer| answer.at(version, now))
    }

    /// A permit for a call the component admitted, told to the listeners.
    fn hand_out(&self, permit: wit::Permit) -> Permit {
        self.admitted(Permit {
            breaker: self.clone(),
            permit,
            reported: false,
            handed_out: false,
        })
    }

    fn admitted(&self, mut permit: Permit) -> Permit {
        for listener in &self.inner.listeners {
            listener.before_call(&self.inner.name);
        }
        permit.handed_out = true;
        permit
    }

    /// Runs `f` if the breaker admits it, and records its result.
    pub fn call<T, E: 'static>(&self, f: impl FnOnce() -> Result<T, E>) -> Result<T, CallError<E>> {
        let permit = self.acquire()?;
        let result = f();
        self.finish(permit, result)
    }

    /// Awaits `future` if the breaker admits it, and records its result; a
    /// dropped (cancelled) call records `ignored`. With a storage that may
    /// block (Redis, or any but memory), the breaker's own storage work runs
    /// on a blocking thread pool, never on the async runtime's threads.
    pub async fn call_async<T, E: 'static>(
        &self,
        future: impl Future<Output = Result<T, E>>,
    ) -> Result<T, CallError<E>> {
        let offload = self.inner.storage.may_block();
        let permit = if offload {
            let breaker = self.clone();
            blocking::unblock(move || breaker.acquire()).await?
        } else {
            self.acquire()?
        };
        let mut pending = Offloaded(Some(permit), offload);
        let result = future.await;
        let permit = pending.0.take().expect("the permit is taken once");
        let outcome = self.classify(&result);
        let tripped = if offload {
            // Recording must finish even if this future is dropped meanwhile.
            on_pool(move || permit.report_quietly(outcome)).await
        } else {
            permit.report_quietly(outcome)
        };
        result.map_err(|error| CallError::Failed { error, tripped })
    }

    /// The breaker's state now, read from the storage.
    pub fn snapshot(&self) -> Result<Snapshot, Error> {
        let now = self.inner.clock.now_ms();
        let (answer, effects) = self.invoke(|instance, resource| {
            instance
                .bindings
                .tripswitch_breaker_breaker()
                .circuit_breaker()
                .call_snapshot(&mut instance.store, resource, now)
        })?;
        self.tell_changes(effects);
        answer.map(Snapshot::from).map_err(Error::Storage)
    }

    /// The breaker's effective state now.
    pub fn state(&self) -> Result<State, Error> {
        self.snapshot().map(|snapshot| snapshot.state)
    }

    /// Operator: opens the circuit now.
    pub fn open(&self) -> Result<(), Error> {
        self.operate(|guest, store, resource, now| guest.call_open(store, resource, now))
    }

    /// Operator: closes the circuit and resets its counters.
    pub fn close(&self) -> Result<(), Error> {
        self.operate(|guest, store, resource, now| guest.call_close(store, resource, now))
    }

    /// Operator: moves the circuit to half-open.
    pub fn half_open(&self) -> Result<(), Error> {
        self.operate(|guest, store, resource, now| guest.call_half_open(store, resource, now))
    }

    /// Operator: rejects every call until another operator action.
    pub fn force_open(&self) -> Result<(), Error> {
        self.operate(|guest, store, resource, now| guest.call_force_open(store, resource, now))
    }

    /// Operator: admits every call and records nothing.
    pub fn disable(&self) -> Result<(), Error> {
        self.operate(|guest, store, resource, now| guest.call_disable(store, resource, now))
    }

    fn operate(
        &self,
        action: impl FnOnce(
            &crate::bindings::Guest<'_>,
            &mut wasmtime::Store<crate::bindings::HostState>,
            ResourceAny,
            u64,
        ) -> wasmtime::Result<Result<(), String>>,
    ) -> Result<(), Error> {
        let now = self.inner.clock.now_ms();
        let (answer, effects) = self.invoke(|instance, resource| {
            let exports = instance.bindings.tripswitch_breaker_breaker();
            action(
                &exports.circuit_breaker(),
                &mut instance.store,
                resource,
                now,
            )
        })?;
        self.tell_changes(effects);
        answer.map_err(Error::Storage)
    }

    /// Records a finished call's result and hands it back.
    fn finish<T, E: 'static>(
        &self,
        permit: Permit,
        result: Result<T, E>,
    ) -> Result<T, CallError<E>> {
        let tripped = permit.report_quietly(self.classify(&result));
        result.map_err(|error| CallError::Failed { error, tripped })
    }

    /// What a call's result counts as: an excluded error is a success.
    fn classify<T, E: 'static>(&self, result: &Result<T, E>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(error) if self.inner.exclusions.iter().any(|excluded| excluded(error)) => {
                Outcome::Success
            }
            Err(_) => Outcome::Failure,
        }
    }

    /// Reports a permit's outcome; returns whether it opened the circuit.
    fn report(&self, permit: wit::Permit, outcome: Outcome) -> Result<bool, Error> {
        let name = &self.inner.name;
        if outcome == Outcome::Success && self.success_is_quiet(&permit) {
            self.inner.listeners.iter().for_each(|l| l.success(name));
            return Ok(false);
        }
        let now = self.inner.clock.now_ms();
        let (answer, effects) = self.invoke(|instance, resource| {
            instance
                .bindings
                .tripswitch_breaker_breaker()
                .circuit_breaker()
                .call_report(&mut instance.store, resource, permit, outcome.into(), now)
        })?;
        let tripped = effects
            .announced
            .iter()
            .any(|a| !a.remote && a.current == wit::State::Open);
        match outcome {
            Outcome::Success => {
                self.tell_changes(effects);
                self.inner.listeners.iter().for_each(|l| l.success(name));
            }
            Outcome::Failure => {
                self.inner
                    .listeners
                    .iter()
                    .for_each(|l| l.failure(name, tripped));
                self.tell_changes(effects);
            }
            Outcome::Ignored => self.tell_changes(effects),
        }
        answer.map(|()| tripped).map_err(Error::Storage)
    }

    /// Whether a success report can be skipped: the component said at acquire
    /// that it would change nothing, and the storage has not changed since (as
    /// far as it can tell without a round trip; see the README on Redis).
    fn success_is_quiet(&self, permit: &wit::Permit) -> bool {
        permit.quiet_success
            && self
                .inner
                .storage
                .peek_version(&self.inner.name)
                .is_none_or(|version| version.unwrap_or(0) == permit.seen_version)
    }

    /// Runs one call into the component on a pooled instance.
    fn invoke<R>(
        &self,
        call: impl FnOnce(&mut Instance, ResourceAny) -> wasmtime::Result<R>,
    ) -> Result<(R, Effects), Error> {
        let runtime = &self.inner.runtime;
        let (resource, mut instance) = self.resource(runtime.checkout()?)?;
        instance.store.data_mut().begin(&self.inner.storage);
        instance.enter();
        // On a trap the instance is dropped here, not returned to the pool.
        let answer = call(&mut instance, resource).map_err(|e| self.trapped(e))?;
        let state = instance.store.data_mut();
        state.storage = None;
        let effects = Effects {
            announced: std::mem::take(&mut state.announced),
            storage_error: state.storage_error.take(),
            storage_ok: state.storage_ok,
        };
        runtime.checkin(instance);
        Ok((answer, effects))
    }

    /// This breaker's guest resource in `instance`, created on first use.
    fn resource(&self, mut instance: Box<Instance>) -> Result<(ResourceAny, Box<Instance>), Error> {
        if let Some(resource) = instance.breakers.get(&self.inner.id) {
            return Ok((*resource, instance));
        }
        instance.enter();
        let created = instance
            .bindings
            .tripswitch_breaker_breaker()
            .circuit_breaker()
            .call_create(&mut instance.store, &self.inner.name, self.inner.config)
            .map_err(|e| self.trapped(e))?;
        match created {
            Ok(resource) => {
                instance.breakers.insert(self.inner.id, resource);
                Ok((resource, instance))
            }
            Err(wit::ConfigError::Invalid((field, reason))) => {
                self.inner.runtime.checkin(instance);
                Err(Error::InvalidConfig { field, reason })
            }
        }
    }

    fn trapped(&self, error: wasmtime::Error) -> Error {
        Error::Component(format!(
            "breaker {:?}: the component failed and its instance was discarded: {error:#}",
            self.inner.name
        ))
    }

    /// Tells listeners of the state changes and storage trouble one call produced.
    fn tell_changes(&self, effects: Effects) {
        let name = &self.inner.name;
        if let Some(message) = effects.storage_error {
            if !self.inner.outage.swap(true, Ordering::Relaxed) {
                let error = Error::Storage(message);
                self.inner
                    .listeners
                    .iter()
                    .for_each(|l| l.error(name, &error));
            }
        } else if effects.storage_ok {
            self.inner.outage.store(false, Ordering::Relaxed);
        }
        if effects.announced.is_empty() {
            return;
        }
        let changes: Vec<StateChange> = {
            let mut told = self.inner.told.lock().unwrap_or_else(|e| e.into_inner());
            let mut changes = Vec::new();
            for a in &effects.announced {
                // Another pooled instance may have told this change already;
                // version 0 means the key was absent: the storage started over.
                let newer = a.version > told.version || a.version == 0 || told.state.is_none();
                if !newer {
                    continue;
                }
                // Told from the state the listeners know: changes learnt at
                // once (or out of order across instances) are told as one.
                let previous = told.state.unwrap_or(State::from(a.previous));
                let current = State::from(a.current);
                if previous != current {
                    changes.push(StateChange {
                        previous,
                        current,
                        at_ms: a.at_ms,
                        remote: a.remote || previous != State::from(a.previous),
                    });
                }
                told.version = a.version;
                told.state = Some(current);
            }
            changes
        };
        for change in &changes {
            for listener in &self.inner.listeners {
                listener.state_change(name, change);
            }
        }
    }
}

/// The right to make one call. Report it with [`success`](Permit::success),
/// [`failure`](Permit::failure) or [`ignore`](Permit::ignore); dropped
/// unreported it records `ignored` (`failure` while the thread panics).
#[must_use = "an unreported permit records `ignored` when dropped"]
pub struct Permit {
    breaker: CircuitBreaker,
    permit: wit::Permit,
    reported: bool,
    /// Whether the caller got it (a panic before then ran no call).
    handed_out: bool,
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("breaker", &self.breaker.name())
            .field("generation", &self.permit.generation)
            .field("trial", &self.permit.trial)
            .finish()
    }
}

impl Permit {
    /// Whether this is a half-open trial.
    pub fn is_trial(&self) -> bool {
        self.permit.trial
    }

    /// The breaker's generation when the permit was issued.
    pub fn generation(&self) -> u64 {
        self.permit.generation
    }

    /// Records a success.
    pub fn success(self) -> Result<(), Error> {
        self.report(Outcome::Success).map(drop)
    }

    /// Records a failure; returns whether it opened the circuit.
    pub fn failure(self) -> Result<bool, Error> {
        self.report(Outcome::Failure)
    }

    /// Records nothing and frees a trial slot.
    pub fn ignore(self) -> Result<(), Error> {
        self.report(Outcome::Ignored).map(drop)
    }

    /// Records `outcome`; returns whether it opened the circuit.
    pub fn report(mut self, outcome: Outcome) -> Result<bool, Error> {
        self.reported = true;
        self.breaker.report(self.permit, outcome)
    }

    /// Records `outcome`, telling listeners of an error no caller can be told.
    fn report_quietly(mut self, outcome: Outcome) -> bool {
        self.reported = true;
        self.breaker.report_or_tell(self.permit, outcome)
    }
}

impl CircuitBreaker {
    fn report_or_tell(&self, permit: wit::Permit, outcome: Outcome) -> bool {
        match self.report(permit, outcome) {
            Ok(tripped) => tripped,
            // A storage outage is told once, when it starts.
            Err(Error::Storage(_)) if self.inner.outage.load(Ordering::Relaxed) => false,
            Err(error) => {
                let name = &self.inner.name;
                self.inner
                    .listeners
                    .iter()
                    .for_each(|l| l.error(name, &error));
                false
            }
        }
    }
}

/// A permit held across an await: if the future is dropped, its `ignored`
/// report runs on the blocking pool when the storage may block.
struct Offloaded(Option<Permit>, bool);

impl Drop for Offloaded {
    fn drop(&mut self) {
        if let Some(permit) = self.0.take()
            && self.1
        {
            // Decided here: on the pool thread, nothing is panicking.
            let outcome = if std::thread::panicking() {
                Outcome::Failure
            } else {
                Outcome::Ignored
            };
            blocking::unblock(move || permit.report_quietly(outcome)).detach();
        }
    }
}

/// Runs `work` on the blocking pool; if the awaiting future is dropped, the
/// work still runs to its end.
async fn on_pool<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    struct Detach<T>(Option<blocking::Task<T>>);
    impl<T> Drop for Detach<T> {
        fn drop(&mut self) {
            if let Some(task) = self.0.take() {
                task.detach();
            }
        }
    }
    let mut task = Detach(Some(blocking::unblock(work)));
    std::future::poll_fn(|cx| {
        let running = task.0.as_mut().expect("polled after completion");
        std::pin::Pin::new(running).poll(cx)
    })
    .await
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.reported {
            let outcome = if self.handed_out && std::thread::panicking() {
                Outcome::Failure
            } else {
                Outcome::Ignored
            };
            self.breaker.report_or_tell(self.permit, outcome);
        }
    }
}
