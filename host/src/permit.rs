//! The right to make one call, and recording what became of it.

use crate::bindings::wit;
use crate::breaker::CircuitBreaker;
use crate::detach::{Finish, on_pool, wait};
use crate::error::Error;
use crate::types::Outcome;

/// The right to make one call. Report it with [`success`](Permit::success),
/// [`failure`](Permit::failure) or [`ignore`](Permit::ignore); dropped
/// unreported it records `ignored` (`failure` while the thread panics).
#[must_use = "an unreported permit records `ignored` when dropped"]
pub struct Permit {
    breaker: CircuitBreaker,
    permit: wit::Permit,
    /// When a success may go unreported, as the component said.
    quiet: Quiet,
    /// The storage's message when the fallback admitted the call.
    degraded: Option<Box<str>>,
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
    /// The permit of an admission.
    pub(crate) fn new(breaker: CircuitBreaker, admission: &wit::Admission) -> Permit {
        Permit {
            breaker,
            permit: admission.permit,
            quiet: Quiet::of(admission.quiet_success, admission.holds.map(|h| h.version)),
            degraded: admission.degraded.as_deref().map(Box::from),
            reported: false,
            handed_out: false,
        }
    }

    /// The permit of an admission the memo reused (never degraded).
    pub(crate) fn reused(
        breaker: CircuitBreaker,
        permit: wit::Permit,
        quiet_success: bool,
        at: u64,
    ) -> Permit {
        Permit {
            breaker,
            permit,
            quiet: Quiet::of(quiet_success, Some(at)),
            degraded: None,
            reported: false,
            handed_out: false,
        }
    }

    /// Marks the permit as in the caller's hands.
    pub(crate) fn hand_out(&mut self) {
        self.handed_out = true;
    }

    /// Whether this is a half-open trial.
    pub fn is_trial(&self) -> bool {
        self.permit.trial
    }

    /// The breaker's generation when the permit was issued.
    pub fn generation(&self) -> u64 {
        self.permit.generation
    }

    /// Why the call was admitted though the storage failed (the fallback
    /// state admits): the storage's message; none when the storage answered.
    pub fn degraded(&self) -> Option<&str> {
        self.degraded.as_deref()
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
        if self.skipped(outcome) {
            return Ok(false);
        }
        wait(self.record(outcome))
    }

    /// Records `outcome`, awaiting the storage (see
    /// [`CircuitBreaker::acquire_async`]); returns whether it opened the
    /// circuit. Dropped before it answers, the report still ends.
    pub async fn report_async(mut self, outcome: Outcome) -> Result<bool, Error> {
        self.reported = true;
        if self.breaker.offloads() {
            return on_pool(move || wait(self.record(outcome))).await;
        }
        Finish::new(async move { self.record(outcome).await }).await
    }

    /// Records `outcome`, telling the listeners (not the caller) of an error;
    /// returns whether it opened the circuit.
    pub fn report_quietly(mut self, outcome: Outcome) -> bool {
        self.reported = true;
        // A skipped success needs no future (the healthy call's path).
        !self.skipped(outcome) && self.record_blocking(outcome)
    }

    /// [`record_quietly`](Self::record_quietly), waited for: apart, so that
    /// the healthy call's frame holds no operation's future.
    #[inline(never)]
    fn record_blocking(&self, outcome: Outcome) -> bool {
        wait(self.record_quietly(outcome))
    }

    /// [`report_quietly`](Self::report_quietly), awaiting the storage; the
    /// report ends even if this future is dropped.
    pub async fn report_quietly_async(mut self, outcome: Outcome) -> bool {
        self.reported = true;
        if self.breaker.offloads() {
            return on_pool(move || wait(self.record_quietly(outcome))).await;
        }
        Finish::new(async move { self.record_quietly(outcome).await }).await
    }

    async fn record_quietly(&self, outcome: Outcome) -> bool {
        match self.record(outcome).await {
            Ok(tripped) => tripped,
            // A storage outage is told once, when it starts.
            Err(Error::Storage { .. }) => false,
            Err(error) => {
                let name = self.breaker.name();
                self.breaker
                    .listeners()
                    .iter()
                    .for_each(|l| l.error(name, &error));
                false
            }
        }
    }

    /// Whether the component said this report may be skipped: then it is,
    /// and the listeners hear of the success.
    fn skipped(&self, outcome: Outcome) -> bool {
        let breaker = &self.breaker;
        let skip = outcome == Outcome::Success
            && match self.quiet {
                Quiet::Never => false,
                Quiet::Always => true,
                Quiet::While(version) => breaker.unchanged_since(version),
            };
        if skip {
            let name = breaker.name();
            breaker.listeners().iter().for_each(|l| l.success(name));
        }
        skip
    }

    /// Reports to the component unless it said the report may be skipped,
    /// and tells the listeners.
    async fn record(&self, outcome: Outcome) -> Result<bool, Error> {
        if self.skipped(outcome) {
            return Ok(false);
        }
        let breaker = &self.breaker;
        let name = breaker.name();
        let listeners = breaker.listeners();
        let reported = breaker
            .report_to_component(self.permit, outcome, |answer| {
                if outcome == Outcome::Failure {
                    let tripped = answer.as_ref().is_ok_and(|r| r.tripped);
                    listeners.iter().for_each(|l| l.failure(name, tripped));
                }
            })
            .await;
        // The call ended so whether or not the report was recorded, as a
        // failure is told (inside the report) either way.
        match outcome {
            Outcome::Success => listeners.iter().for_each(|l| l.success(name)),
            Outcome::Ignored => listeners.iter().for_each(|l| l.ignored(name)),
            Outcome::Failure => {}
        }
        Ok(reported?.tripped)
    }
}

/// When a success may go unreported: never, always (the permit was decided
/// on no stored version), or while the stored version is still this one.
#[derive(Clone, Copy, Debug)]
enum Quiet {
    Never,
    Always,
    While(u64),
}

impl Quiet {
    fn of(quiet_success: bool, decided_at: Option<u64>) -> Quiet {
        match (quiet_success, decided_at) {
            (false, _) => Quiet::Never,
            (true, None) => Quiet::Always,
            (true, Some(version)) => Quiet::While(version),
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.reported {
            self.reported = true;
            let outcome = if self.handed_out && std::thread::panicking() {
                Outcome::Failure
            } else {
                Outcome::Ignored
            };
            if self.breaker.awaits() {
                // An async storage is not waited on here (this may be an
                // async runtime's thread): the report runs in the background.
                let rest = Permit {
                    breaker: self.breaker.clone(),
                    permit: self.permit,
                    quiet: self.quiet,
                    degraded: None,
                    reported: true,
                    handed_out: self.handed_out,
                };
                blocking::unblock(move || wait(rest.record_quietly(outcome))).detach();
            } else {
                wait(self.record_quietly(outcome));
            }
        }
    }
}

/// A permit held across an await: if the future is dropped, its `ignored`
/// report runs on the blocking pool when the storage may block.
pub(crate) struct Offloaded(Option<Permit>, bool);

impl Offloaded {
    /// Holds `permit`; `offload` says whether its report may block.
    pub fn new(permit: Permit, offload: bool) -> Offloaded {
        Offloaded(Some(permit), offload)
    }

    /// The permit, once the call has ended.
    pub fn take(&mut self) -> Permit {
        self.0.take().expect("the permit is taken once")
    }
}

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
