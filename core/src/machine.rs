//! The circuit breaker's transitions: pure functions from a record and an
//! input to the record to write (if any) and the answer. No I/O, no bindings.
//!
//! Rules (the README's semantics list, in code):
//! - closed: a failure counts; the fail-max-th consecutive one opens the
//!   circuit. A success resets the count (a write only if it was not 0).
//! - open: acquire before opened-at + reset-timeout is rejected; the first
//!   acquire at or after it moves to half-open and takes a trial slot.
//! - half-open: at most half-open-max-calls trials in flight; a trial
//!   success counts toward success-threshold, which closes; a trial failure
//!   re-opens. A trial not reported within trial-timeout is forfeited.
//! - `ignored` counts nothing and frees a trial slot; a permit from an older
//!   generation counts nothing.
//! - forced-open rejects everything; disabled admits everything and records
//!   nothing; operator actions set the state and reset what it implies.
//! - the generation grows by one with every state change and every operator
//!   action, so a permit from before either counts nothing.

use crate::config::Config;
use crate::shaping::Shaping;
use crate::skew;
use crate::window::{Counts, Shape, Totals};

/// Where a circuit stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Calls run; failures are counted.
    Closed,
    /// Calls are rejected until the reset timeout elapses.
    Open,
    /// Limited trial calls run.
    HalfOpen,
    /// Every call is rejected until an operator acts.
    ForcedOpen,
    /// Every call runs; nothing is recorded.
    Disabled,
}

impl State {
    /// The state's name, as the WIT spells it (`half-open`).
    pub fn name(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half-open",
            State::ForcedOpen => "forced-open",
            State::Disabled => "disabled",
        }
    }
}

/// What became of an admitted call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The call succeeded.
    Success,
    /// The call failed.
    Failure,
    /// The call was cancelled; nothing counts.
    Ignored,
}

/// An operator's command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Open the circuit now.
    Open,
    /// Close it and reset the counters.
    Close,
    /// Move to half-open.
    HalfOpen,
    /// Reject everything until another action.
    ForceOpen,
    /// Admit everything, record nothing.
    Disable,
}

/// Why the stored state last changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Failures in closed opened the circuit.
    Tripped,
    /// A failed trial re-opened it.
    TrialFailed,
    /// Trials closed it.
    Recovered,
    /// The reset timeout elapsed and a trial was admitted.
    TimeoutElapsed,
    /// An operator acted.
    Operator,
    /// The window's failure rate reached its threshold.
    FailureRate,
    /// The window's slow-call rate reached its threshold.
    SlowCallRate,
}

/// The right to make one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Permit {
    /// The generation it was issued in.
    pub generation: u64,
    /// Whether it holds a half-open trial slot.
    pub trial: bool,
    /// When it was issued (Unix ms); names its trial slot.
    pub issued_at_ms: u64,
}

/// Why a call was not admitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Open; a trial is admitted in this many ms.
    Open(u64),
    /// All trial slots taken; the oldest is forfeited in this many ms.
    HalfOpenFull(u64),
    /// Forced open by an operator.
    ForcedOpen,
}

/// Everything a breaker stores: one record per breaker, swapped whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The stored state.
    pub state: State,
    /// Consecutive failures counted while closed.
    pub failures: u32,
    /// Trial successes counted in this half-open period.
    pub successes: u32,
    /// When the circuit last opened.
    pub opened_at_ms: Option<u64>,
    /// Grows by one with every state change.
    pub generation: u64,
    /// Issue times of the trials in flight.
    pub trials: Vec<u64>,
    /// Why the state last changed.
    pub reason: Reason,
    /// When the state last changed (or an operator last acted), in Unix ms.
    pub changed_at_ms: u64,
    /// Opens in a row, each after a failed trial (0 once closed); sets the backoff.
    pub opens: u32,
    /// When a trial becomes allowed (none: a record from before format 3,
    /// whose open lasts the reset timeout from opened-at).
    pub retry_at_ms: Option<u64>,
    /// The failure-rate window's counts in this closed period (none: no
    /// window, or nothing counted yet).
    pub window: Option<Counts>,
    /// The window shape the record follows, and whose config set it.
    pub shaping: Shaping,
}

impl Default for Record {
    fn default() -> Self {
        Record {
            state: State::Closed,
            failures: 0,
            successes: 0,
            opened_at_ms: None,
            generation: 0,
            trials: Vec::new(),
            reason: Reason::Recovered,
            changed_at_ms: 0,
            opens: 0,
            retry_at_ms: None,
            window: None,
            shaping: Shaping::default(),
        }
    }
}

/// A breaker's state as seen at one instant (the effective state).
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// The effective state: open with its timeout elapsed reads half-open.
    pub state: State,
    /// Consecutive failures counted while closed.
    pub failures: u32,
    /// Trial successes in this half-open period.
    pub successes: u32,
    /// When the circuit last opened.
    pub opened_at_ms: Option<u64>,
    /// Live trials (not forfeited).
    pub trials_in_flight: u32,
    /// The stored generation.
    pub generation: u64,
    /// Milliseconds until a call is admitted; none if now, or if waiting will not help.
    pub retry_after_ms: Option<u64>,
    /// The stored version it was read at (0: absent); set by the storage loop.
    pub version: u64,
    /// What the failure-rate window holds now (all zero without a window).
    pub window: Totals,
    /// How long the current (or last) open lasts, in ms: the reset timeout
    /// with the backoff applied (none: never opened).
    pub open_duration_ms: Option<u64>,
    /// When a trial becomes allowed, as the record says (none: not open, or
    /// a record from before format 3, whose trial time follows the config).
    pub retry_at_ms: Option<u64>,
}

impl Record {
    /// The same record in a new state, with the generation bumped, the
    /// reason and the time noted if the state changed.
    fn moved_to(&self, state: State, reason: Reason, now: u64) -> Record {
        if state == self.state {
            return self.clone();
        }
        Record {
            state,
            generation: self.generation.wrapping_add(1),
            reason,
            changed_at_ms: now,
            window: None,
            ..self.clone()
        }
    }

    /// When the open circuit admits a trial.
    fn retry_at(&self, config: &Config) -> u64 {
        self.retry_at_ms
            .unwrap_or_else(|| self.opened_at().saturating_add(config.reset_timeout_ms))
    }

    /// Trial issue times that are still live at `now`.
    fn live_trials(&self, config: &Config, now: u64) -> Vec<u64> {
        self.trials
            .iter()
            .copied()
            .filter(|&issued| !trial_expired(config, issued, now))
            .collect()
    }

    fn opened_at(&self) -> u64 {
        self.opened_at_ms.unwrap_or(0)
    }
}

fn trial_expired(config: &Config, issued: u64, now: u64) -> bool {
    skew::trial_expired(issued, now, config.trial_timeout_ms)
}

/// Open with a new opened-at: where a trip or a failed trial leads. A
/// failed trial makes one more open in a row (the backoff grows); a trip
/// from closed is the first; an operator's open keeps the count.
fn opened(config: &Config, record: &Record, reason: Reason, now: u64) -> Record {
    let opens = match reason {
        Reason::TrialFailed => record.opens.saturating_add(1),
        Reason::Operator => record.opens,
        _ => 1,
    };
    Record {
        opened_at_ms: Some(now),
        successes: 0,
        trials: Vec::new(),
        opens,
        retry_at_ms: Some(now.saturating_add(config.open_duration_ms(opens.max(1)))),
        ..record.moved_to(State::Open, reason, now)
    }
}

/// An open record stamped by a clock ahead of `now` (its opened-at more than
/// [`skew::OPENED_AHEAD_MS`] ahead), restarted from `now` for the duration
/// its writer gave it (none: the stamps are not ahead).
fn restarted_open(record: &Record, now: u64) -> Option<Record> {
    let opened = record.opened_at_ms?;
    if opened <= now.saturating_add(skew::OPENED_AHEAD_MS) {
        return None;
    }
    let lasts = record.retry_at_ms.map(|at| at.saturating_sub(opened));
    Some(Record {
        opened_at_ms: Some(now),
        retry_at_ms: lasts.map(|ms| now.saturating_add(ms)),
        ..record.clone()
    })
}

/// Closed with every counter reset, the backoff included.
fn closed(record: &Record, reason: Reason, now: u64) -> Record {
    Record {
        failures: 0,
        successes: 0,
        opened_at_ms: None,
        trials: Vec::new(),
        opens: 0,
        retry_at_ms: None,
        ..record.moved_to(State::Closed, reason, now)
    }
}

/// Half-open with no trial successes yet and the given trials in flight.
fn half_opened(record: &Record, trials: Vec<u64>, reason: Reason, now: u64) -> Record {
    Record {
        successes: 0,
        trials,
        ..record.moved_to(State::HalfOpen, reason, now)
    }
}

/// The answer to an acquire, and the record to write first (if any).
pub fn acquire(
    config: &Config,
    record: &Record,
    now: u64,
) -> (Option<Record>, Result<Permit, Rejection>) {
    let permit = |generation, trial| Permit {
        generation,
        trial,
        issued_at_ms: now,
    };
    match record.state {
        State::Closed | State::Disabled => (None, Ok(permit(record.generation, false))),
        State::ForcedOpen => (None, Err(Rejection::ForcedOpen)),
        State::Open => {
            if let Some(restarted) = restarted_open(record, now) {
                let wait = restarted.retry_at(config).saturating_sub(now);
                return (Some(restarted), Err(Rejection::Open(wait)));
            }
            let ready_at = record.retry_at(config);
            if now < ready_at {
                (None, Err(Rejection::Open(ready_at - now)))
            } else {
                let next = half_opened(record, vec![now], Reason::TimeoutElapsed, now);
                let granted = permit(next.generation, true);
                (Some(next), Ok(granted))
            }
        }
        State::HalfOpen => {
            let mut trials = record.live_trials(config, now);
            if trials.len() >= config.half_open_max_calls as usize {
                let oldest = trials.iter().copied().min().unwrap_or(now);
                let free_at = oldest.saturating_add(config.trial_timeout_ms);
                return (
                    None,
                    Err(Rejection::HalfOpenFull(free_at.saturating_sub(now))),
                );
            }
            trials.push(now);
            let next = Record {
                trials,
                ..record.clone()
            };
            (Some(next), Ok(permit(record.generation, true)))
        }
    }
}

/// The record to write after a permitted call ended (none: nothing to record).
pub fn report(
    config: &Config,
    record: &Record,
    permit: &Permit,
    outcome: Outcome,
    now: u64,
) -> Option<Record> {
    if permit.generation != record.generation {
        return None;
    }
    let slow = slow(config, permit, now);
    match (record.state, permit.trial) {
        (State::Closed, false) => counted(config, record, outcome, slow, now),
        (State::HalfOpen, true) => {
            let mut trials = record.live_trials(config, now);
            let slot = trials.iter().position(|&t| t == permit.issued_at_ms)?;
            trials.swap_remove(slot);
            match outcome {
                Outcome::Ignored => Some(Record {
                    trials,
                    ..record.clone()
                }),
                Outcome::Failure => Some(opened(config, record, Reason::TrialFailed, now)),
                // A trial slower than slow-call-ms is a failed trial.
                Outcome::Success if slow => Some(opened(config, record, Reason::TrialFailed, now)),
                Outcome::Success => {
                    let successes = record.successes.saturating_add(1);
                    if successes >= config.success_threshold {
                        Some(closed(record, Reason::Recovered, now))
                    } else {
                        Some(Record {
                            successes,
                            trials,
                            ..record.clone()
                        })
                    }
                }
            }
        }
        _ => None,
    }
}

/// A closed circuit's record after a non-trial call ended: the consecutive
/// count and the window take the outcome (see [`take`]). None when nothing
/// changes.
fn counted(
    config: &Config,
    record: &Record,
    outcome: Outcome,
    slow: bool,
    now: u64,
) -> Option<Record> {
    let failed = match outcome {
        Outcome::Ignored => return None,
        Outcome::Failure => true,
        Outcome::Success => false,
    };
    let next = take(config, record.clone(), failed, slow, now);
    (next != *record).then_some(next)
}

/// A closed record after one more outcome, reported at `at`: the
/// consecutive count and the window take it; the first rule it satisfies
/// opens the circuit (the failure rate, the slow-call rate, then the
/// consecutive failures).
fn take(config: &Config, mut next: Record, failed: bool, slow: bool, at: u64) -> Record {
    next.failures = if failed {
        next.failures.saturating_add(1)
    } else {
        0
    };
    if let Some(shape) = config.window {
        let window = next.window.get_or_insert_with(|| Counts::empty(shape));
        window.add(at, failed, slow);
        let totals = window.totals(at);
        let minimum = match shape {
            Shape::Calls { calls } => config.minimum_calls.min(calls),
            Shape::Time { .. } => config.minimum_calls,
        };
        if totals.calls >= minimum {
            let reached = |part: u32, threshold: u8| {
                u64::from(part) * 100 >= u64::from(threshold) * u64::from(totals.calls)
            };
            if config
                .failure_rate_threshold
                .is_some_and(|t| reached(totals.failed, t))
            {
                return opened(config, &next, Reason::FailureRate, at);
            }
            if config.slow_call_ms.is_some()
                && reached(totals.slow, config.slow_call_rate_threshold)
            {
                return opened(config, &next, Reason::SlowCallRate, at);
            }
        }
    }
    if config.consecutive && failed && next.failures >= config.fail_max {
        return opened(config, &next, Reason::Tripped, at);
    }
    next
}

/// An outcome an instance holds before merging it into the record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    /// When it was reported (Unix ms).
    pub at_ms: u64,
    /// The call failed.
    pub failed: bool,
    /// The call was slow.
    pub slow: bool,
}

/// The outcome as an instance may hold it instead of writing it now: a
/// non-trial, non-ignored outcome of the stored generation, in closed, with
/// a window and a flush interval, whose only effect is on the window (with
/// the consecutive rule on, a success while no failure is counted). None:
/// report it now.
pub fn holdable(
    config: &Config,
    record: &Record,
    permit: &Permit,
    outcome: Outcome,
    now: u64,
) -> Option<Held> {
    if config.flush_interval_ms == 0
        || config.window.is_none()
        || permit.trial
        || record.state != State::Closed
        || permit.generation != record.generation
    {
        return None;
    }
    let failed = match outcome {
        Outcome::Ignored => return None,
        Outcome::Failure => true,
        Outcome::Success => false,
    };
    if config.consecutive && (failed || record.failures != 0) {
        return None;
    }
    Some(Held {
        at_ms: now,
        failed,
        slow: slow(config, permit, now),
    })
}

/// The record after merging outcomes held under `generation`, in the order
/// given; none when there is nothing to write (they belong to an older
/// generation, or the circuit is no longer closed: they count nowhere). The
/// first outcome that opens the circuit ends the merge; those after it
/// count nowhere, as reports after an open would.
pub fn merge(config: &Config, record: &Record, generation: u64, held: &[Held]) -> Option<Record> {
    if record.state != State::Closed || record.generation != generation {
        return None;
    }
    let next = project(config, record, held);
    (next != *record).then_some(next)
}

/// `record` with `held` merged, in order, as far as it stays closed (see
/// [`merge`], which also checks the generation).
pub fn project(config: &Config, record: &Record, held: &[Held]) -> Record {
    let mut next = record.clone();
    for outcome in held {
        absorb(config, &mut next, *outcome);
    }
    next
}

/// Merges one held outcome into a projection of the record, in place (see
/// [`merge`]); a projection that is no longer closed takes nothing more.
pub fn absorb(config: &Config, projected: &mut Record, held: Held) {
    if projected.state == State::Closed {
        *projected = take(
            config,
            std::mem::take(projected),
            held.failed,
            held.slow,
            held.at_ms,
        );
    }
}

fn slow(config: &Config, permit: &Permit, now: u64) -> bool {
    config
        .slow_call_ms
        .is_some_and(|limit| now.saturating_sub(permit.issued_at_ms) > limit)
}

/// Whether writing `next` over `record` opened the circuit: a trip from
/// closed, or a failed trial.
pub fn tripped(record: &Record, next: &Record) -> bool {
    next.state == State::Open && matches!(record.state, State::Closed | State::HalfOpen)
}

/// Until when `acquire`'s answer at `now` on an unchanged `record` stays the
/// same answer (inner none: no time bound); none when it must be asked again
/// (a trial admission, which took a slot).
pub fn holds_until(answer: &Result<Permit, Rejection>, now: u64) -> Option<Option<u64>> {
    match answer {
        Ok(permit) if permit.trial => None,
        Ok(_) | Err(Rejection::ForcedOpen) => Some(None),
        Err(Rejection::Open(ms) | Rejection::HalfOpenFull(ms)) => {
            Some(Some(now.saturating_add(*ms)))
        }
    }
}

/// Whether a report can write nothing whatever is stored: a non-trial permit
/// that ends `ignored`.
pub fn report_never_writes(permit: &Permit, outcome: Outcome) -> bool {
    !permit.trial && outcome == Outcome::Ignored
}

/// Whether reporting a success for `permit` against `record` would write
/// nothing (with a window, every success counts).
pub fn success_is_quiet(config: &Config, record: &Record, permit: &Permit) -> bool {
    permit.generation == record.generation
        && !permit.trial
        && match record.state {
            State::Closed => record.failures == 0 && config.window.is_none(),
            State::Disabled => true,
            _ => false,
        }
}

/// The record an operator action writes, whatever was stored. It always
/// starts a new generation, even when the state stays, so that permits issued
/// before it (trials above all) count nothing.
pub fn operate(config: &Config, record: &Record, action: Action, now: u64) -> Record {
    let mut next = operated(config, record, action, now);
    next.generation = record.generation.wrapping_add(1);
    next.reason = Reason::Operator;
    next.changed_at_ms = now;
    next.window = None;
    next
}

fn operated(config: &Config, record: &Record, action: Action, now: u64) -> Record {
    let by = Reason::Operator;
    match action {
        Action::Open => opened(config, record, by, now),
        Action::Close => closed(record, by, now),
        Action::HalfOpen => half_opened(record, Vec::new(), by, now),
        Action::ForceOpen => Record {
            opened_at_ms: Some(now),
            successes: 0,
            trials: Vec::new(),
            ..record.moved_to(State::ForcedOpen, by, now)
        },
        Action::Disable => Record {
            failures: 0,
            successes: 0,
            opened_at_ms: None,
            trials: Vec::new(),
            ..record.moved_to(State::Disabled, by, now)
        },
    }
}

/// What the breaker looks like at `now`, without changing anything.
pub fn snapshot(config: &Config, record: &Record, now: u64) -> Snapshot {
    let trials = record.live_trials(config, now);
    let mut snap = Snapshot {
        state: record.state,
        failures: record.failures,
        successes: record.successes,
        opened_at_ms: record.opened_at_ms,
        trials_in_flight: trials.len() as u32,
        generation: record.generation,
        retry_after_ms: None,
        version: 0,
        window: record
            .window
            .as_ref()
            .map_or_else(Totals::default, |w| w.totals(now)),
        open_duration_ms: record.opened_at_ms.map(|opened| {
            record.retry_at_ms.map_or_else(
                || config.open_duration_ms(record.opens.max(1)),
                |at| at.saturating_sub(opened),
            )
        }),
        retry_at_ms: record.retry_at_ms.filter(|_| record.state == State::Open),
    };
    match acquire(config, record, now).1 {
        Err(Rejection::Open(ms) | Rejection::HalfOpenFull(ms)) => snap.retry_after_ms = Some(ms),
        Err(Rejection::ForcedOpen) => {}
        Ok(_) if record.state == State::Open => {
            snap.state = State::HalfOpen;
            snap.successes = 0;
        }
        Ok(_) => {}
    }
    snap
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config {
            fail_max: 3,
            reset_timeout_ms: 1000,
            success_threshold: 2,
            half_open_max_calls: 2,
            trial_timeout_ms: 500,
            fallback_state: State::Closed,
            ..Config::default()
        }
    }

    fn open_at(at: u64) -> Record {
        Record {
            state: State::Open,
            failures: 3,
            opened_at_ms: Some(at),
            generation: 1,
            ..Record::default()
        }
    }

    fn closed_permit(record: &Record) -> Permit {
        acquire(&config(), record, 0).1.unwrap()
    }

    #[test]
    fn closed_admits_without_writing() {
        let (write, permit) = acquire(&config(), &Record::default(), 7);
        assert_eq!(write, None);
        assert_eq!(
            permit,
            Ok(Permit {
                generation: 0,
                trial: false,
                issued_at_ms: 7
            })
        );
    }

    #[test]
    fn failures_count_and_the_fail_max_th_opens() {
        let cfg = config();
        let mut record = Record::default();
        for expected in 1..=2 {
            let permit = closed_permit(&record);
            record = report(&cfg, &record, &permit, Outcome::Failure, 10).unwrap();
            assert_eq!((record.state, record.failures), (State::Closed, expected));
        }
        let permit = closed_permit(&record);
        record = report(&cfg, &record, &permit, Outcome::Failure, 10).unwrap();
        assert_eq!(record.state, State::Open);
        assert_eq!(record.opened_at_ms, Some(10));
        assert_eq!(record.generation, 1);
    }

    #[test]
    fn success_resets_failures_and_writes_only_when_needed() {
        let cfg = config();
        let clean = Record::default();
        assert_eq!(
            report(&cfg, &clean, &closed_permit(&clean), Outcome::Success, 0),
            None
        );
        let dirty = Record {
            failures: 2,
            ..Record::default()
        };
        let after = report(&cfg, &dirty, &closed_permit(&dirty), Outcome::Success, 0).unwrap();
        assert_eq!(after.failures, 0);
    }

    #[test]
    fn open_rejects_with_time_left_then_admits_one_trial() {
        let cfg = config();
        let record = open_at(100);
        assert_eq!(acquire(&cfg, &record, 600).1, Err(Rejection::Open(500)));
        let (write, permit) = acquire(&cfg, &record, 1100);
        let write = write.unwrap();
        assert_eq!(write.state, State::HalfOpen);
        assert_eq!(write.trials, vec![1100]);
        assert_eq!(write.generation, 2);
        assert!(permit.unwrap().trial);
    }

    #[test]
    fn half_open_limits_trials_and_forfeits_expired_ones() {
        let cfg = config();
        let record = Record {
            state: State::HalfOpen,
            generation: 2,
            trials: vec![100, 200],
            ..Record::default()
        };
        assert_eq!(
            acquire(&cfg, &record, 300).1,
            Err(Rejection::HalfOpenFull(300))
        );
        let (write, permit) = acquire(&cfg, &record, 600);
        assert_eq!(write.unwrap().trials, vec![200, 600]);
        assert!(permit.unwrap().trial);
    }

    #[test]
    fn trial_successes_close_at_the_threshold() {
        let cfg = config();
        let record = Record {
            state: State::HalfOpen,
            generation: 2,
            trials: vec![100, 200],
            opened_at_ms: Some(0),
            ..Record::default()
        };
        let first = Permit {
            generation: 2,
            trial: true,
            issued_at_ms: 100,
        };
        let record = report(&cfg, &record, &first, Outcome::Success, 150).unwrap();
        assert_eq!((record.state, record.successes), (State::HalfOpen, 1));
        let second = Permit {
            issued_at_ms: 200,
            ..first
        };
        let record = report(&cfg, &record, &second, Outcome::Success, 250).unwrap();
        assert_eq!(record.state, State::Closed);
        assert_eq!(record.generation, 3);
        assert_eq!((record.failures, record.successes), (0, 0));
    }

    #[test]
    fn trial_failure_reopens_and_forfeited_trial_counts_nothing() {
        let cfg = config();
        let record = Record {
            state: State::HalfOpen,
            generation: 2,
            trials: vec![100],
            ..Record::default()
        };
        let permit = Permit {
            generation: 2,
            trial: true,
            issued_at_ms: 100,
        };
        let reopened = report(&cfg, &record, &permit, Outcome::Failure, 300).unwrap();
        assert_eq!(reopened.state, State::Open);
        assert_eq!(reopened.opened_at_ms, Some(300));
        assert_eq!(report(&cfg, &record, &permit, Outcome::Failure, 600), None);
    }

    #[test]
    fn stale_generation_and_ignored_count_nothing() {
        let cfg = config();
        let record = open_at(0);
        let old = Permit {
            generation: 0,
            trial: false,
            issued_at_ms: 0,
        };
        assert_eq!(report(&cfg, &record, &old, Outcome::Failure, 1), None);
        let closed = Record::default();
        assert_eq!(
            report(&cfg, &closed, &closed_permit(&closed), Outcome::Ignored, 1),
            None
        );
    }

    #[test]
    fn forced_open_rejects_and_disabled_records_nothing() {
        let cfg = config();
        let forced = operate(&config(), &Record::default(), Action::ForceOpen, 5);
        assert_eq!(
            acquire(&cfg, &forced, u64::MAX).1,
            Err(Rejection::ForcedOpen)
        );
        let disabled = operate(&config(), &forced, Action::Disable, 6);
        let (write, permit) = acquire(&cfg, &disabled, 7);
        assert_eq!(write, None);
        assert_eq!(
            report(&cfg, &disabled, &permit.unwrap(), Outcome::Failure, 8),
            None
        );
    }

    #[test]
    fn generation_moves_with_the_state_and_with_every_operator_action() {
        let cfg = config();
        let mut record = Record::default();
        let permit = closed_permit(&record);
        record = report(&cfg, &record, &permit, Outcome::Failure, 1).unwrap();
        assert_eq!(record.generation, 0, "a count is no transition");
        let closed = operate(&config(), &record, Action::Close, 1);
        assert_eq!(closed.generation, 1);
        assert_eq!(report(&cfg, &closed, &permit, Outcome::Failure, 2), None);
        let opened = operate(&config(), &closed, Action::Open, 2);
        assert_eq!(opened.generation, 2);
        assert_eq!(operate(&config(), &opened, Action::Open, 3).generation, 3);
    }

    #[test]
    fn a_trial_voided_by_an_operator_cannot_take_a_new_trials_slot() {
        let cfg = config();
        let (first, trial) = acquire(&cfg, &open_at(0), 1000);
        let (first, trial) = (first.unwrap(), trial.unwrap());
        let reset = operate(&config(), &first, Action::HalfOpen, 1000);
        let (second, _) = acquire(&cfg, &reset, 1000);
        assert_eq!(
            report(&cfg, &second.unwrap(), &trial, Outcome::Success, 1000),
            None
        );
    }

    #[test]
    fn snapshot_reads_an_elapsed_open_as_half_open() {
        let cfg = config();
        let record = open_at(0);
        let before = snapshot(&cfg, &record, 400);
        assert_eq!(before.state, State::Open);
        assert_eq!(before.retry_after_ms, Some(600));
        let after = snapshot(&cfg, &record, 1000);
        assert_eq!(after.state, State::HalfOpen);
        assert_eq!(after.retry_after_ms, None);
        assert_eq!(
            snapshot(&cfg, &operate(&config(), &record, Action::ForceOpen, 0), 0).retry_after_ms,
            None
        );
    }
}
