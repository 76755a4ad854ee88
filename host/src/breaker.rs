//! The circuit breaker as a Rust user sees it: `call`, `call_async`,
//! `acquire`, snapshots and operator actions. Every decision is the
//! component's; this module carries calls to it and applies the contract's
//! generic rules (the memo over `holds`, telling each change once).

use std::any::Any;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use wasmtime::component::ResourceAny;

use crate::bindings::{exported, wit};
use crate::builder::{Builder, Config};
use crate::clock::Clock;
use crate::error::{CallError, Error, Rejected};
use crate::listener::Listener;
use crate::memo::{Answer, Memo, Reused};
use crate::permit::{Offloaded, Permit, on_pool};
use crate::runtime::{Instance, Runtime};
use crate::storage::{Storage, StorageError, SwapResult};
use crate::tell::Teller;
use crate::types::{Action, Outcome, Snapshot, State};

/// The most steps one operation may take: the component's own bound (a read
/// to settle, a read, and every try of a merge and of a write) with room to
/// spare; a component that asks for more is broken, and its instance is
/// discarded.
const MAX_STEPS: usize = 512;

/// A predicate over a call's error: true counts it as a success.
pub(crate) type Exclusion = Box<dyn Fn(&dyn Any) -> bool + Send + Sync>;

/// A named circuit breaker; clones share it.
#[derive(Clone)]
pub struct CircuitBreaker {
    inner: Arc<Inner>,
}

/// What a breaker is made of; built by the [`Builder`].
pub(crate) struct Inner {
    pub id: u64,
    pub name: String,
    pub config: wit::Config,
    pub runtime: Runtime,
    pub storage: Arc<dyn Storage>,
    pub clock: Arc<dyn Clock>,
    pub listeners: Vec<Arc<dyn Listener>>,
    pub exclusions: Vec<Exclusion>,
    pub teller: Teller,
    pub memo: Memo,
    /// Whether the flush thread has been asked to merge held outcomes.
    pub flush_scheduled: AtomicBool,
    /// Instances holding this breaker's window outcomes, idle or checked out.
    pub holders: AtomicUsize,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Outcomes held in idle instances are merged before the resource goes.
        let _ = flush_inner(self);
        self.runtime.retire(self.id);
    }
}

impl Inner {
    /// Runs one operation on `instance` to its end: opens it, performs each
    /// step the component asks against this breaker's storage, and resumes
    /// it with what the storage found. On a trap the caller drops the
    /// instance rather than pooling it.
    fn drive(
        &self,
        instance: &mut Instance,
        resource: ResourceAny,
        request: wit::Request,
        known: wit::Known,
    ) -> Result<(wit::Answer, Effects), Error> {
        let mut storage_error = None;
        let mut steps = 0;
        instance.enter();
        let mut step = instance
            .bindings
            .tripswitch_breaker_breaker()
            .circuit_breaker()
            .call_open(
                &mut instance.store,
                resource,
                request,
                &known,
                self.clock.now_ms(),
            )
            .map_err(|e| self.trapped(e))?;
        loop {
            let (operation, found) = match step {
                exported::Step::Done(done) => {
                    let effects = Effects {
                        announced: done.changes,
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
                    let found = match self.storage.load(&self.name) {
                        Ok(entry) => wit::Found::Read(entry.map(wit_entry)),
                        Err(error) => wit::Found::Failed(keep(&mut storage_error, error)),
                    };
                    (operation, found)
                }
                exported::Step::Write(write) => {
                    let swapped =
                        self.storage
                            .compare_and_swap(&self.name, write.expected, &write.data);
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
            instance.enter();
            step = instance
                .bindings
                .tripswitch_breaker_breaker()
                .circuit_breaker()
                .call_resume(
                    &mut instance.store,
                    resource,
                    operation,
                    &found,
                    self.clock.now_ms(),
                )
                .map_err(|e| self.trapped(e))?
                .map_err(|misuse| Error::Component(format!("breaker {:?}: {misuse}", self.name)))?;
        }
    }

    /// Notes whether `instance` holds this breaker's window outcomes, as the
    /// component said after an operation.
    fn note_holding(&self, instance: &mut Instance, holds: bool) {
        if holds {
            if instance.holding.insert(self.id) {
                self.holders.fetch_add(1, Ordering::AcqRel);
            }
        } else if instance.holding.remove(&self.id) {
            self.holders.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Forgets an instance about to be discarded, with what it held.
    fn discard(&self, instance: &Instance) {
        if instance.holding.contains(&self.id) {
            self.holders.fetch_sub(1, Ordering::AcqRel);
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

/// Merges the window outcomes that idle instances hold for a breaker. (One
/// checked out by another thread at that moment merges at its next report,
/// or at the next flush.)
pub(crate) fn flush_inner(inner: &Inner) -> Result<(), Error> {
    let mut result = Ok(());
    for mut instance in inner.runtime.take_holding(inner.id) {
        let Some(&resource) = instance.breakers.get(&inner.id) else {
            continue;
        };
        let flushed = inner.drive(
            &mut instance,
            resource,
            wit::Request::Flush,
            wit::Known::Nothing,
        );
        // A trap discards the instance (and what it held).
        let (answer, effects) = match flushed {
            Ok(done) => done,
            Err(error) => {
                inner.discard(&instance);
                result = Err(error);
                continue;
            }
        };
        inner.note_holding(&mut instance, effects.flush_by_ms.is_some());
        match answer {
            wit::Answer::Flushed(Ok(())) => {}
            wit::Answer::Flushed(Err(error)) => {
                result = Err(Error::from_breaker(error, effects.storage_error));
            }
            _ => result = Err(inner.mismatched()),
        }
        inner
            .teller
            .changes(&inner.name, &inner.listeners, &effects.announced);
        inner.runtime.checkin(instance);
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
        let (_, instance) = self.resource(self.inner.runtime.checkout()?)?;
        self.inner.runtime.checkin(instance);
        Ok(())
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
        let (resource, mut instance) = self.resource(runtime.checkout()?)?;
        instance.enter();
        let settings = instance
            .bindings
            .tripswitch_breaker_breaker()
            .circuit_breaker()
            .call_settings(&mut instance.store, resource)
            .map_err(|e| {
                self.inner.discard(&instance);
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
        let now = self.inner.clock.now_ms();
        let version = self.inner.storage.peek_version(&self.inner.name);
        if let Some(answer) = version.and_then(|v| self.inner.memo.reuse(v.unwrap_or(0), now)) {
            return match answer {
                Reused::Admitted(permit, quiet_success, at) => {
                    Ok(self.admitted(Permit::reused(self.clone(), permit, quiet_success, at)))
                }
                Reused::Refused(refusal) => Err(self.rejected(refusal)),
            };
        }
        let known = match version {
            Some(version) => wit::Known::Version(version.unwrap_or(0)),
            None => wit::Known::Nothing,
        };
        let (answer, effects) = self.invoke(wit::Request::Acquire, known)?;
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
        self.tell(&effects.announced);
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
    /// dropped (cancelled) call records `ignored`. With a storage that may
    /// block (Redis, or any but memory), the breaker's own storage work runs
    /// on a blocking thread pool, never on the async runtime's threads.
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
    /// With a storage that may block, the breaker's storage work runs on a
    /// blocking thread pool.
    pub(crate) async fn guard<F: Future>(
        &self,
        start: impl FnOnce() -> F,
        classify: impl FnOnce(&F::Output) -> Outcome,
    ) -> Result<(F::Output, bool), Error> {
        let offload = self.inner.storage.may_block();
        let permit = if offload {
            let breaker = self.clone();
            blocking::unblock(move || breaker.acquire()).await?
        } else {
            self.acquire()?
        };
        let mut pending = Offloaded::new(permit, offload);
        let result = start().await;
        let permit = pending.take();
        let outcome = classify(&result);
        let tripped = if offload {
            // Recording must finish even if this future is dropped meanwhile.
            on_pool(move || permit.report_quietly(outcome)).await
        } else {
            permit.report_quietly(outcome)
        };
        Ok((result, tripped))
    }

    /// The breaker's state now, read from the storage.
    pub fn snapshot(&self) -> Result<Snapshot, Error> {
        let (answer, effects) = self.invoke(wit::Request::Snapshot, wit::Known::Nothing)?;
        let wit::Answer::Snapshot(answer) = answer else {
            return Err(self.inner.mismatched());
        };
        self.tell(&effects.announced);
        self.settle(answer, effects.storage_error)
            .map(Snapshot::from)
    }

    /// The breaker's effective state now.
    pub fn state(&self) -> Result<State, Error> {
        self.snapshot().map(|snapshot| snapshot.state)
    }

    /// Operator: applies `action` now.
    pub fn operate(&self, action: Action) -> Result<(), Error> {
        let request = wit::Request::Operate(action.into());
        let (answer, effects) = self.invoke(request, wit::Known::Nothing)?;
        let wit::Answer::Operated(answer) = answer else {
            return Err(self.inner.mismatched());
        };
        self.tell(&effects.announced);
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
    pub(crate) fn report_to_component(
        &self,
        permit: wit::Permit,
        outcome: Outcome,
        before: impl FnOnce(&Result<wit::Reported, wit::BreakerError>),
    ) -> Result<wit::Reported, Error> {
        let request = wit::Request::Report(wit::CallReport {
            permit,
            outcome: outcome.into(),
        });
        let (answer, effects) = self.invoke(request, wit::Known::Nothing)?;
        let wit::Answer::Reported(answer) = answer else {
            return Err(self.inner.mismatched());
        };
        if let Some(due) = effects.flush_by_ms {
            crate::flusher::schedule(&self.inner, due);
        }
        before(&answer);
        self.tell(&effects.announced);
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

    fn tell(&self, announced: &[wit::StateChange]) {
        self.inner
            .teller
            .changes(&self.inner.name, &self.inner.listeners, announced);
    }

    /// Runs one operation on a pooled instance, and notes whether the
    /// instance holds window outcomes after it (the component says).
    fn invoke(
        &self,
        request: wit::Request,
        known: wit::Known,
    ) -> Result<(wit::Answer, Effects), Error> {
        let runtime = &self.inner.runtime;
        let (resource, mut instance) = self.resource(runtime.checkout()?)?;
        // On a trap the instance is dropped here, not returned to the pool.
        let done = match self.inner.drive(&mut instance, resource, request, known) {
            Ok(done) => done,
            Err(error) => {
                self.inner.discard(&instance);
                return Err(error);
            }
        };
        self.inner
            .note_holding(&mut instance, done.1.flush_by_ms.is_some());
        runtime.checkin(instance);
        Ok(done)
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
            .map_err(|e| self.inner.trapped(e))?;
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
}
