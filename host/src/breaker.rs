//! The circuit breaker as a Rust user sees it: `call`, `call_async`,
//! `acquire`, snapshots and operator actions. Every decision is the
//! component's; this module carries calls to it and applies the contract's
//! generic rules (the memo over `holds`, telling each change once).

use std::any::Any;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use wasmtime::component::ResourceAny;

use crate::backend::Backend;
use crate::bindings::{exported, wit};
use crate::builder::{Builder, Config};
use crate::clock::Clock;
use crate::detach::{Finish, on_pool, wait};
use crate::error::{CallError, Error, Rejected};
use crate::listener::Listener;
use crate::memo::{Answer, Memo, Reused};
use crate::permit::{Offloaded, Permit};
use crate::runtime::{Instance, Runtime, Shared};
use crate::storage::{StorageError, SwapResult};
use crate::tell::Teller;
use crate::types::{Action, Outcome, Snapshot, State};
use crate::writes::Writes;

/// The most steps one operation may take: the component's own bound (a read
/// to settle, a read, and every try of a merge and of a write) with room to
/// spare; a component that asks for more is broken, and its instance is
/// discarded.
const MAX_STEPS: usize = 512;

/// A predicate over a call's error: true counts it as a success.
pub(crate) type Exclusion = Box<dyn Fn(&dyn Any) -> bool + Send + Sync>;

/// A named circuit breaker; clones share it.
pub struct CircuitBreaker {
    inner: Arc<Inner>,
}

impl Clone for CircuitBreaker {
    fn clone(&self) -> Self {
        self.inner.handles.fetch_add(1, Ordering::Relaxed);
        CircuitBreaker {
            inner: Arc::clone(&self.inner),
        }
    }
}

/// What a breaker is made of; built by the [`Builder`].
pub(crate) struct Inner {
    pub id: u64,
    pub name: String,
    pub config: wit::Config,
    pub runtime: Runtime,
    pub storage: Backend,
    pub clock: Arc<dyn Clock>,
    pub listeners: Vec<Arc<dyn Listener>>,
    pub exclusions: Vec<Exclusion>,
    pub teller: Teller,
    pub memo: Memo,
    /// The turn to write, for a blocking storage.
    pub writes: Writes,
    /// Whether the flush thread has been asked to merge held outcomes.
    pub flush_scheduled: AtomicBool,
    /// The [`CircuitBreaker`] handles alive (the flush thread's references
    /// are none of them).
    pub handles: AtomicUsize,
}

impl Drop for CircuitBreaker {
    /// The last handle: outcomes still held (the storage failing, or an
    /// instance in another thread's hands) are left to the flush thread,
    /// which merges them when it can, instead of going with the breaker.
    fn drop(&mut self) {
        let inner = &self.inner;
        if inner.handles.fetch_sub(1, Ordering::AcqRel) != 1 || !inner.runtime.held(inner.id) {
            return;
        }
        let failed = flush_inner(inner).is_err();
        if failed || inner.runtime.held(inner.id) {
            crate::flusher::keep_dropped(Arc::clone(inner), failed);
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Outcomes held in idle instances are merged before the resource goes.
        let _ = flush_inner(self);
        self.runtime.retire(self.id);
    }
}

impl Inner {
    /// Runs one operation in `seat`'s instance to its end: opens it,
    /// performs each step the component asks against this breaker's storage
    /// (awaiting it, for an async storage), and resumes it with what the
    /// storage found. On an error the caller discards the instance.
    async fn drive(
        &self,
        seat: &mut impl Seat,
        resource: ResourceAny,
        request: wit::Request,
        known: wit::Known,
    ) -> Result<(wit::Answer, Effects), Error> {
        let mut storage_error = None;
        let mut steps = 0;
        // A blocking storage's writes go one at a time from the first write
        // to the operation's end (an awaited one holds nothing across steps).
        let mut turn = None;
        let now = self.clock.now_ms();
        let mut step = seat
            .within(|instance| {
                let step = instance
                    .bindings
                    .tripswitch_breaker_breaker()
                    .circuit_breaker()
                    .call_open(&mut instance.store, resource, request, &known, now);
                if let Ok(step) = &step {
                    self.note_done(instance, step);
                }
                step
            })
            .ok_or_else(|| self.broken())?
            .map_err(|e| self.trapped(e))?;
        loop {
            let (operation, found) = match step {
                exported::Step::Done(done) => {
                    let effects = Effects {
                        announced: done.changes,
                        notices: done.notices,
                        storage_error,
                        flush_by_ms: done.flush_by_ms,
                    };
                    return Ok((done.answer, effects));
                }
                _ if steps == MAX_STEPS => {
                    return Err(Error::Component(format!(
                        "breaker {:?}: the component asked for more than {MAX_STEPS} steps in \
                         one operation; its instance was discarded",
                        self.name
                    )));
                }
                exported::Step::Read(operation) => {
                    let found = match self.storage.load(&self.name).await {
                        Ok(entry) => wit::Found::Read(entry.map(wit_entry)),
                        Err(error) => wit::Found::Failed(keep(&mut storage_error, error)),
                    };
                    (operation, found)
                }
                exported::Step::Write(write) => {
                    if turn.is_none() && !self.storage.is_async() {
                        turn = Some(self.writes.take());
                    }
                    let swapped = self
                        .storage
                        .compare_and_swap(&self.name, write.expected, &write.data)
                        .await;
                    let found = match swapped {
                        Ok(SwapResult::Written(version)) => {
                            wit::Found::Swapped(wit::SwapResult::Written(version))
                        }
                        Ok(SwapResult::Conflict(entry)) => {
                            wit::Found::Swapped(wit::SwapResult::Conflict(entry.map(wit_entry)))
                        }
                        Err(error) => wit::Found::Failed(keep(&mut storage_error, error)),
                    };
                    (write.operation, found)
                }
            };
            steps += 1;
            let now = self.clock.now_ms();
            step = seat
                .within(|instance| {
                    let step = instance
                        .bindings
                        .tripswitch_breaker_breaker()
                        .circuit_breaker()
                        .call_resume(&mut instance.store, resource, operation, &found, now);
                    if let Ok(Ok(step)) = &step {
                        self.note_done(instance, step);
                    }
                    step
                })
                .ok_or_else(|| self.broken())?
                .map_err(|e| self.trapped(e))?
                .map_err(|misuse| Error::Component(format!("breaker {:?}: {misuse}", self.name)))?;
        }
    }

    /// An operation whose shared instance another operation's failure discarded.
    fn broken(&self) -> Error {
        Error::Component(format!(
            "breaker {:?}: the component failed in another operation on this instance, which \
             was discarded",
            self.name
        ))
    }

    /// Notes, when `step` ends an operation, whether `instance` holds this
    /// breaker's window outcomes after it (the component says); noted in
    /// the same call into the guest, so that operations interleaved on a
    /// shared instance note them in the order they happened.
    fn note_done(&self, instance: &mut Instance, step: &exported::Step) {
        if let exported::Step::Done(done) = step {
            let holds = done.flush_by_ms.is_some();
            self.runtime.note_holding(instance, self.id, holds);
        }
    }

    /// Notes what an operation on `instance` left: on an error, that the
    /// instance is discarded (what it holds was noted at its end).
    fn conclude(&self, instance: &mut Instance, driven: &Result<(wit::Answer, Effects), Error>) {
        if driven.is_err() {
            self.runtime.discard(instance);
        }
    }

    /// [`conclude`](Self::conclude) for a shared instance, which stops being
    /// handed out if it failed.
    fn conclude_shared(&self, shared: &Shared, driven: &Result<(wit::Answer, Effects), Error>) {
        let mut instance = shared.lock().unwrap_or_else(|e| e.into_inner());
        self.conclude(&mut instance, driven);
        drop(instance);
        if driven.is_err() {
            self.runtime.discard_shared(shared);
        }
    }

    fn trapped(&self, error: wasmtime::Error) -> Error {
        Error::Component(format!(
            "breaker {:?}: the component failed and its instance was discarded: {error:#}",
            self.name
        ))
    }

    /// An answer of another kind than the request's.
    fn mismatched(&self) -> Error {
        Error::Component(format!(
            "breaker {:?}: the component answered another request than the one asked",
            self.name
        ))
    }
}

/// Where an operation's calls into the guest go: an instance it has to
/// itself, or a shared one, locked for each call and never across an await.
trait Seat: Send {
    /// Runs `call` on the instance, readied for it; none if it is broken.
    fn within<R>(&mut self, call: impl FnOnce(&mut Instance) -> R) -> Option<R>;
}

impl Seat for Box<Instance> {
    fn within<R>(&mut self, call: impl FnOnce(&mut Instance) -> R) -> Option<R> {
        Instance::enter(self);
        Some(call(self))
    }
}

impl Seat for Shared {
    fn within<R>(&mut self, call: impl FnOnce(&mut Instance) -> R) -> Option<R> {
        let mut instance = self.lock().unwrap_or_else(|e| e.into_inner());
        if instance.broken {
            return None;
        }
        instance.enter();
        Some(call(&mut instance))
    }
}

/// A storage entry in WIT terms.
fn wit_entry(entry: crate::storage::Entry) -> wit::Entry {
    wit::Entry {
        version: entry.version,
        data: entry.data,
    }
}

/// Keeps a storage error as the source of the breaker error the component
/// may answer with, and gives its message to the component.
fn keep(kept: &mut Option<StorageError>, error: StorageError) -> String {
    let message = error.0.clone();
    *kept = Some(error);
    message
}

/// Merges the window outcomes that idle instances hold for a breaker,
/// waiting on the storage.
pub(crate) fn flush_inner(inner: &Inner) -> Result<(), Error> {
    wait(flush_held(inner))
}

/// Merges the window outcomes that idle instances hold for a breaker. (One
/// checked out by another thread at that moment merges at its next report,
/// or at the next flush.)
async fn flush_held(inner: &Inner) -> Result<(), Error> {
    let mut results = Vec::new();
    for mut instance in inner.runtime.take_holding(inner.id) {
        let Some(&resource) = instance.breakers.get(&inner.id) else {
            continue;
        };
        let request = wit::Request::Flush;
        let flushed = inner
            .drive(&mut instance, resource, request, wit::Known::Nothing)
            .await;
        inner.conclude(&mut instance, &flushed);
        // An instance that failed is dropped here, not pooled.
        if flushed.is_ok() {
            inner.runtime.checkin(instance);
        }
        results.push(flushed);
    }
    for mut shared in inner.runtime.shared_holding(inner.id) {
        let resource = {
            let instance = shared.lock().unwrap_or_else(|e| e.into_inner());
            instance.breakers.get(&inner.id).copied()
        };
        let Some(resource) = resource else {
            continue;
        };
        let request = wit::Request::Flush;
        let flushed = inner
            .drive(&mut shared, resource, request, wit::Known::Nothing)
            .await;
        inner.conclude_shared(&shared, &flushed);
        results.push(flushed);
    }
    let mut result = Ok(());
    for flushed in results {
        let (answer, effects) = match flushed {
            Ok(done) => done,
            Err(error) => {
                result = Err(error);
                continue;
            }
        };
        match answer {
            wit::Answer::Flushed(Ok(())) => {}
            wit::Answer::Flushed(Err(error)) => {
                result = Err(Error::from_breaker(error, effects.storage_error));
            }
            _ => result = Err(inner.mismatched()),
        }
        inner.teller.changes(
            &inner.name,
            &inner.listeners,
            &effects.announced,
            &effects.notices,
        );
    }
    result
}

impl std::fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

/// What one operation produced besides its answer.
struct Effects {
    announced: Vec<wit::StateChange>,
    notices: Vec<wit::Notice>,
    storage_error: Option<StorageError>,
    /// When the instance should flush the outcomes it holds (none: it holds none).
    flush_by_ms: Option<u64>,
}

impl CircuitBreaker {
    /// Starts building a breaker named `name` (its key in the storage).
    pub fn builder(name: impl Into<String>) -> Builder {
        Builder::new(name.into())
    }

    /// A breaker with every default and a memory storage of its own.
    pub fn new(name: impl Into<String>) -> Result<CircuitBreaker, Error> {
        CircuitBreaker::builder(name).build()
    }

    pub(crate) fn from_inner(inner: Inner) -> CircuitBreaker {
        CircuitBreaker {
            inner: Arc::new(inner),
        }
    }

    /// Creates the guest resource, so that a refused configuration surfaces.
    pub(crate) fn check(&self) -> Result<(), Error> {
        self.pooled()
            .map(|(_, instance)| self.inner.runtime.checkin(instance))
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The breaker's configuration as the component resolved it: every
    /// default filled in, so that no host spells one (a rule that does not
    /// apply stays unset: fail-max under a failure-rate rule alone).
    pub fn config(&self) -> Result<Config, Error> {
        let runtime = &self.inner.runtime;
        let (resource, mut instance) = self.pooled()?;
        instance.enter();
        let settings = instance
            .bindings
            .tripswitch_breaker_breaker()
            .circuit_breaker()
            .call_settings(&mut instance.store, resource)
            .map_err(|e| {
                runtime.discard(&mut instance);
                self.inner.trapped(e)
            })?;
        runtime.checkin(instance);
        Ok(settings.into())
    }

    pub(crate) fn listeners(&self) -> &[Arc<dyn Listener>] {
        &self.inner.listeners
    }

    /// Asks to make a call; the permit reports `ignored` if dropped unreported.
    pub fn acquire(&self) -> Result<Permit, Error> {
        let version = self.inner.storage.peek_version(&self.inner.name);
        // A reused answer needs no future (the healthy call's path).
        match self.reuse(version) {
            Some(answer) => answer,
            None => self.ask_blocking(version),
        }
    }

    /// [`ask`](Self::ask), waited for: apart, so that the healthy call's
    /// frame holds no operation's future.
    #[inline(never)]
    fn ask_blocking(&self, version: Option<Option<u64>>) -> Result<Permit, Error> {
        wait(self.ask(version))
    }

    /// Asks to make a call, awaiting an async storage (a blocking one that
    /// may block runs on the blocking pool). Dropped before it answers, the
    /// request still ends, and a permit it got records `ignored`.
    pub async fn acquire_async(&self) -> Result<Permit, Error> {
        let breaker = self.clone();
        if self.inner.storage.offload() {
            on_pool(move || breaker.acquire()).await
        } else {
            Finish::new(async move { breaker.admit().await }).await
        }
    }

    /// Asks the component (or the memo) for a permit.
    async fn admit(&self) -> Result<Permit, Error> {
        let version = self.inner.storage.peek_version(&self.inner.name);
        match self.reuse(version) {
            Some(answer) => answer,
            None => self.ask(version).await,
        }
    }

    /// The memo's answer while the stored `version` (if known) lets it hold.
    #[inline]
    fn reuse(&self, version: Option<Option<u64>>) -> Option<Result<Permit, Error>> {
        let now = self.inner.clock.now_ms();
        let answer = self.inner.memo.reuse(version?.unwrap_or(0), now)?;
        Some(match answer {
            Reused::Admitted(permit, quiet_success, at) => {
                Ok(self.admitted(Permit::reused(self.clone(), permit, quiet_success, at)))
            }
            Reused::Refused(refusal) => Err(self.rejected(refusal)),
        })
    }

    /// Asks the component for a permit, telling what is known of the stored version.
    async fn ask(&self, version: Option<Option<u64>>) -> Result<Permit, Error> {
        let known = match version {
            Some(version) => wit::Known::Version(version.unwrap_or(0)),
            None => wit::Known::Nothing,
        };
        let (answer, effects) = self.invoke(wit::Request::Acquire, known).await?;
        let wit::Answer::Acquired(answer) = answer else {
            return Err(self.inner.mismatched());
        };
        if version.is_some() {
            self.inner.memo.keep(&answer);
        }
        // The permit exists before any listener runs: a panicking listener
        // then drops it, which frees its trial slot.
        let permit = answer
            .as_ref()
            .ok()
            .map(|admission| Permit::new(self.clone(), admission));
        self.tell(&effects.announced, &effects.notices);
        self.note_outage(&answer, effects.storage_error);
        match (permit, answer) {
            (Some(permit), _) => Ok(self.admitted(permit)),
            (None, Err(refusal)) => Err(self.rejected(refusal)),
            (None, Ok(_)) => unreachable!("an admission always makes a permit"),
        }
    }

    /// Tells an outage when an acquire was degraded or refused for the storage.
    fn note_outage(&self, answer: &Answer, source: Option<StorageError>) {
        let failing = match answer {
            Ok(wit::Admission {
                degraded: Some(message),
                ..
            })
            | Err(wit::Refusal {
                rejection: wit::Rejection::StorageUnavailable(message),
                ..
            }) => Some(Error::Storage {
                message: message.clone(),
                source,
            }),
            _ => None,
        };
        self.inner
            .teller
            .storage(&self.inner.name, &self.inner.listeners, failing);
    }

    /// A refusal, told to the listeners.
    fn rejected(&self, refusal: wit::Refusal) -> Error {
        let rejected = Rejected::from(refusal);
        for listener in &self.inner.listeners {
            listener.rejected(&self.inner.name, &rejected);
        }
        Error::Rejected(rejected)
    }

    /// A permit handed to the caller, told to the listeners.
    fn admitted(&self, mut permit: Permit) -> Permit {
        for listener in &self.inner.listeners {
            listener.before_call(&self.inner.name);
        }
        permit.hand_out();
        permit
    }

    /// Runs `f` if the breaker admits it, and records its result.
    pub fn call<T, E: 'static>(&self, f: impl FnOnce() -> Result<T, E>) -> Result<T, CallError<E>> {
        let permit = self.acquire()?;
        let result = f();
        let tripped = permit.report_quietly(self.classify(&result));
        result.map_err(|error| CallError::Failed { error, tripped })
    }

    /// Awaits `future` if the breaker admits it, and records its result; a
    /// dropped (cancelled) call records `ignored`. An async storage is
    /// awaited on this task; with a blocking storage that may block (any but
    /// memory), the breaker's storage work runs on a blocking thread pool,
    /// never on the async runtime's threads.
    pub async fn call_async<T, E: 'static>(
        &self,
        future: impl Future<Output = Result<T, E>>,
    ) -> Result<T, CallError<E>> {
        let (result, tripped) = self
            .guard(|| future, |result| self.classify(result))
            .await?;
        result.map_err(|error| CallError::Failed { error, tripped })
    }

    /// Starts `start`'s future if the breaker admits it, awaits it, and
    /// reports what `classify` makes of its result; returns the result and
    /// whether it opened the circuit. A dropped future records `ignored`.
    /// Recording ends even if this future is dropped meanwhile.
    pub(crate) async fn guard<F: Future>(
        &self,
        start: impl FnOnce() -> F,
        classify: impl FnOnce(&F::Output) -> Outcome,
    ) -> Result<(F::Output, bool), Error> {
        let permit = self.acquire_async().await?;
        let mut pending = Offloaded::new(permit, self.inner.storage.offload());
        let result = start().await;
        let permit = pending.take();
        let outcome = classify(&result);
        Ok((result, permit.report_quietly_async(outcome).await))
    }

    /// The breaker's state now, read from the storage.
    pub fn snapshot(&self) -> Result<Snapshot, Error> {
        wait(self.look())
    }

    /// The breaker's state now, awaiting the storage (see [`acquire_async`](Self::acquire_async)).
    pub async fn snapshot_async(&self) -> Result<Snapshot, Error> {
        let breaker = self.clone();
        if self.inner.storage.offload() {
            on_pool(move || breaker.snapshot()).await
        } else {
            Finish::new(async move { breaker.look().await }).await
        }
    }

    /// Asks the component for a snapshot.
    async fn look(&self) -> Result<Snapshot, Error> {
        let request = wit::Request::Snapshot;
        let (answer, effects) = self.invoke(request, wit::Known::Nothing).await?;
        let wit::Answer::Snapshot(answer) = answer else {
            return Err(self.inner.mismatched());
        };
        self.tell(&effects.announced, &effects.notices);
        self.settle(answer, effects.storage_error)
            .map(Snapshot::from)
    }

    /// The breaker's effective state now.
    pub fn state(&self) -> Result<State, Error> {
        self.snapshot().map(|snapshot| snapshot.state)
    }

    /// Operator: applies `action` now.
    pub fn operate(&self, action: Action) -> Result<(), Error> {
        wait(self.apply(action))
    }

    /// Operator: applies `action` now, awaiting the storage (see
    /// [`acquire_async`](Self::acquire_async)).
    pub async fn operate_async(&self, action: Action) -> Result<(), Error> {
        let breaker = self.clone();
        if self.inner.storage.offload() {
            on_pool(move || breaker.operate(action)).await
        } else {
            Finish::new(async move { breaker.apply(action).await }).await
        }
    }

    /// Asks the component to apply an operator action.
    async fn apply(&self, action: Action) -> Result<(), Error> {
        let request = wit::Request::Operate(action.into());
        let (answer, effects) = self.invoke(request, wit::Known::Nothing).await?;
        let wit::Answer::Operated(answer) = answer else {
            return Err(self.inner.mismatched());
        };
        self.tell(&effects.announced, &effects.notices);
        self.settle(answer, effects.storage_error)
    }

    /// Merges the window outcomes this breaker's idle instances hold into
    /// the record now (the flush thread does it when they fall due, and
    /// dropping the last clone of the breaker does it too).
    pub fn flush(&self) -> Result<(), Error> {
        flush_inner(&self.inner)
    }

    /// Operator: opens the circuit now.
    pub fn open(&self) -> Result<(), Error> {
        self.operate(Action::Open)
    }

    /// Operator: closes the circuit and resets its counters.
    pub fn close(&self) -> Result<(), Error> {
        self.operate(Action::Close)
    }

    /// Operator: moves the circuit to half-open.
    pub fn half_open(&self) -> Result<(), Error> {
        self.operate(Action::HalfOpen)
    }

    /// Operator: rejects every call until another operator action.
    pub fn force_open(&self) -> Result<(), Error> {
        self.operate(Action::ForceOpen)
    }

    /// Operator: admits every call and records nothing.
    pub fn disable(&self) -> Result<(), Error> {
        self.operate(Action::Disable)
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

    /// Whether async callers move this breaker's work to the blocking pool.
    pub(crate) fn offloads(&self) -> bool {
        self.inner.storage.offload()
    }

    /// Whether this breaker awaits an async storage.
    pub(crate) fn awaits(&self) -> bool {
        self.inner.storage.is_async()
    }

    /// Whether the stored version is still `version`, or cannot be told for free.
    pub(crate) fn unchanged_since(&self, version: u64) -> bool {
        self.inner
            .storage
            .peek_version(&self.inner.name)
            .is_none_or(|now| now.unwrap_or(0) == version)
    }

    /// Reports a permit's outcome to the component; `before` runs with its
    /// answer before the state changes are told (pybreaker's order on a
    /// failure: failure, then state change).
    pub(crate) async fn report_to_component(
        &self,
        permit: wit::Permit,
        outcome: Outcome,
        before: impl FnOnce(&Result<wit::Reported, wit::BreakerError>),
    ) -> Result<wit::Reported, Error> {
        let request = wit::Request::Report(wit::CallReport {
            permit,
            outcome: outcome.into(),
        });
        let (answer, effects) = self.invoke(request, wit::Known::Nothing).await?;
        let wit::Answer::Reported(answer) = answer else {
            return Err(self.inner.mismatched());
        };
        if let Some(due) = effects.flush_by_ms {
            crate::flusher::schedule(&self.inner, due);
        }
        before(&answer);
        self.tell(&effects.announced, &effects.notices);
        self.settle(answer, effects.storage_error)
    }

    /// A component answer as the library's, noting a storage outage.
    fn settle<T>(
        &self,
        answer: Result<T, wit::BreakerError>,
        source: Option<StorageError>,
    ) -> Result<T, Error> {
        let answer = answer.map_err(|error| Error::from_breaker(error, source));
        let failing = match &answer {
            Err(error @ Error::Storage { .. }) => Some(error.clone()),
            _ => None,
        };
        self.inner
            .teller
            .storage(&self.inner.name, &self.inner.listeners, failing);
        answer
    }

    fn tell(&self, announced: &[wit::StateChange], notices: &[wit::Notice]) {
        self.inner
            .teller
            .changes(&self.inner.name, &self.inner.listeners, announced, notices);
    }

    /// Runs one operation: on a pooled instance of its own when the storage
    /// blocks (its steps are done when first polled), on a shared instance
    /// when it is awaited.
    async fn invoke(
        &self,
        request: wit::Request,
        known: wit::Known,
    ) -> Result<(wit::Answer, Effects), Error> {
        if self.inner.storage.is_async() {
            return self.invoke_shared(request, known).await;
        }
        let (resource, mut instance) = self.pooled()?;
        let driven = self.inner.drive(&mut instance, resource, request, known);
        let done = driven.await;
        self.inner.conclude(&mut instance, &done);
        // An instance that failed is dropped here, not pooled.
        if done.is_ok() {
            self.inner.runtime.checkin(instance);
        }
        done
    }

    /// Runs one operation on a shared instance, locked for each call into
    /// the guest, so that operations awaiting the storage interleave.
    async fn invoke_shared(
        &self,
        request: wit::Request,
        known: wit::Known,
    ) -> Result<(wit::Answer, Effects), Error> {
        let mut shared = self.inner.runtime.shared()?;
        let resource = {
            let mut instance = shared.lock().unwrap_or_else(|e| e.into_inner());
            self.resource(&mut instance)
        };
        let resource = match resource {
            Ok(resource) => resource,
            Err(error @ Error::InvalidConfig { .. }) => return Err(error),
            Err(error) => {
                let failed = Err(error);
                self.inner.conclude_shared(&shared, &failed);
                return failed;
            }
        };
        let done = self
            .inner
            .drive(&mut shared, resource, request, known)
            .await;
        self.inner.conclude_shared(&shared, &done);
        done
    }

    /// A pooled instance and this breaker's guest resource in it.
    fn pooled(&self) -> Result<(ResourceAny, Box<Instance>), Error> {
        let runtime = &self.inner.runtime;
        let mut instance = runtime.checkout()?;
        match self.resource(&mut instance) {
            Ok(resource) => Ok((resource, instance)),
            Err(error @ Error::InvalidConfig { .. }) => {
                runtime.checkin(instance);
                Err(error)
            }
            // A trap: the instance is dropped, not pooled.
            Err(error) => {
                runtime.discard(&mut instance);
                Err(error)
            }
        }
    }

    /// This breaker's guest resource in `instance`, created on first use.
    fn resource(&self, instance: &mut Instance) -> Result<ResourceAny, Error> {
        if let Some(resource) = instance.breakers.get(&self.inner.id) {
            return Ok(*resource);
        }
        instance.enter();
        let created = instance
            .bindings
            .tripswitch_breaker_breaker()
            .circuit_breaker()
            .call_create(&mut instance.store, &self.inner.name, self.inner.config)
            .map_err(|e| self.inner.trapped(e))?;
        match created {
            Ok(resource) => {
                instance.breakers.insert(self.inner.id, resource);
                Ok(resource)
            }
            Err(wit::ConfigError::Invalid((field, reason))) => {
                Err(Error::InvalidConfig { field, reason })
            }
        }
    }
}
