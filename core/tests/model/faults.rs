//! Breakers over storages that conflict, fail, fail now and then, or hold
//! a corrupt record: the fallback and its degraded answers, the errors, and
//! the repair of a corrupt record, whose generation never goes back.

use std::cell::Cell;

use proptest::collection::vec;
use proptest::prelude::*;
use tripswitch_core::breaker::{
    Breaker, BreakerError, Change, Denial, Holds, MAX_ATTEMPTS, Refusal, Reported, Stored,
};
use tripswitch_core::config::Config;
use tripswitch_core::machine::{self, Action, Outcome, Permit, Reason, Record, Rejection, State};
use tripswitch_core::record;

use crate::KEY;
use crate::ports::{
    Broken, Reply, Scripted, Stubborn, check_degraded, check_unavailable, corrupt_bytes, first_look,
};
use crate::reference::stored_snapshot;
use crate::storage::{Shared, acquire, check_shared, instances, operate};
use crate::strategies::{
    Op, Try, action, any_record, attempt, config, fallback, ops, settings, start, tiny,
};

fn gave_up(message: &str) -> bool {
    message.contains(&format!("gave up after {MAX_ATTEMPTS} conflicting writes"))
}

/// Whether `got` failed as a storage error of `operation` from the storage's
/// "disk on fire".
fn failed<T>(got: &Result<T, BreakerError>, operation: &str) -> bool {
    matches!(got, Err(BreakerError::Storage(m))
        if m.contains(KEY) && m.contains(&format!("storage {operation} failed")) && m.contains("disk on fire"))
}

proptest! {
    #![proptest_config(settings())]

    /// Against a storage that always conflicts, a change gives up after
    /// MAX_ATTEMPTS tries with a `Contended` error, and a call needing no
    /// write goes through. An acquire that gave up is refused as unavailable
    /// whatever the fallback state, in the state stored: the storage works,
    /// only the write was lost. The one load is the instance's first look,
    /// which fires a remote event if it finds other than closed; the
    /// conflicts, handing the same entry, fire none. A report that can never
    /// write (a non-trial `ignored`) makes no call at all, so no first look
    /// and no event.
    #[test]
    fn endless_conflicts_end_in_an_error(
        mut cfg in config(),
        fallback_state in fallback(),
        stored in prop::option::of(any_record()),
        attempt in attempt(),
        now in 0..200u64,
    ) {
        cfg.fallback_state = fallback_state;
        let port = Stubborn::holding(stored.as_ref(), 5);
        let seen_version = if stored.is_some() { 5 } else { 0 };
        let events = first_look(stored.as_ref());
        let rec = stored.unwrap_or_default();
        let breaker = Breaker::new(KEY.to_owned(), cfg.clone(), &port);
        let mut looked = true;
        let wrote = match attempt {
            Try::Acquire => {
                let (write, answer) = machine::acquire(&cfg, &rec, now);
                let holds = machine::holds_until(&answer, now)
                    .map(|until_ms| Holds { version: seen_version, until_ms });
                let got = breaker.acquire(now);
                match (&write, got) {
                    (None, Ok(admission)) => {
                        prop_assert_eq!(Ok(admission.permit), answer);
                        prop_assert_eq!(admission.holds, holds, "holds");
                        let quiet = machine::report(&cfg, &rec, &admission.permit, Outcome::Success, now);
                        prop_assert_eq!(admission.quiet_success, quiet.is_none(), "quiet success");
                        prop_assert_eq!(admission.degraded, None);
                    }
                    (None, Err(Refusal { denial: Denial::Rejected(rejection), state, holds: held })) => {
                        prop_assert_eq!(Err(rejection), answer);
                        prop_assert_eq!(state, rec.state, "the state that refused");
                        prop_assert_eq!(held, holds, "holds");
                    }
                    (Some(_), got @ Err(_)) => {
                        check_unavailable(&got, rec.state, "gave up after")?;
                        let Err(Refusal { denial: Denial::StorageUnavailable(message), .. }) = &got else {
                            unreachable!("checked unavailable");
                        };
                        prop_assert!(gave_up(message), "{}", message);
                    }
                    (Some(_), Ok(admission)) => prop_assert!(
                        false,
                        "a contended write admitted {:?} (fallback {:?})", admission, cfg.fallback_state
                    ),
                    (_, got) => prop_assert!(false, "write {:?}: acquire said {:?}", write, got),
                }
                write.is_some()
            }
            Try::Report { older, trial, issued, outcome } => {
                let times: Vec<u64> = rec.trials.iter().copied().chain([now]).collect();
                let permit = Permit {
                    generation: rec.generation.saturating_sub(u64::from(older)),
                    trial,
                    issued_at_ms: times[issued.index(times.len())],
                };
                let write = machine::report(&cfg, &rec, &permit, outcome, now);
                looked = !machine::report_never_writes(&permit, outcome);
                let got = breaker.report(&permit, outcome, now);
                match &got {
                    Ok(reported) => {
                        prop_assert!(write.is_none(), "no error, yet {:?} was to be written", write);
                        let state = if looked { rec.state } else { State::Closed };
                        prop_assert_eq!(*reported, Reported { tripped: false, state });
                    }
                    Err(BreakerError::Contended(message)) => {
                        prop_assert!(write.is_some() && gave_up(message), "{}", message)
                    }
                    Err(other) => prop_assert!(false, "report: {:?}", other),
                }
                write.is_some()
            }
            Try::Operate(action) => {
                let got = breaker.operate(action, now);
                prop_assert!(matches!(&got, Err(BreakerError::Contended(m)) if gave_up(m)), "{:?}", got);
                true
            }
            Try::Snapshot => {
                prop_assert_eq!(breaker.snapshot(now), Ok(stored_snapshot(&cfg, &rec, now, seen_version)));
                false
            }
        };
        let tries = if wrote { MAX_ATTEMPTS } else { 0 };
        prop_assert_eq!(port.swaps.get(), tries, "compare-and-swaps");
        prop_assert_eq!(port.loads.get(), usize::from(looked), "loads");
        let events = if looked { events } else { Vec::new() };
        prop_assert_eq!(port.events.take(), events, "events: the first look's only");
    }

    /// Against a storage that fails every call, acquire follows the fallback
    /// state: an admitting one admits, degraded, with the generation the
    /// instance last saw; a rejecting one refuses as unavailable in the
    /// fallback state. Everything else but a report that can never write (a
    /// non-trial `ignored`, which touches nothing and succeeds) fails with a
    /// `Storage` error. An instance that loaded once before the storage
    /// broke keeps that record cached through the failures, so a report the
    /// cache says writes, and an operator action, try one compare-and-swap,
    /// and the rest one load: a report the cache says writes nothing, stale
    /// permits included, is confirmed by a load, which fails. The only event
    /// is the healthy first look's, if it found other than closed.
    #[test]
    fn a_failing_storage_follows_the_fallback(
        mut cfg in config(),
        fallback_state in fallback(),
        warm_up in prop::option::of(prop::option::of(any_record())),
        attempts in vec((attempt(), 0..5u64), 1..20),
    ) {
        cfg.fallback_state = fallback_state;
        let version = 5;
        let stored = warm_up.clone().flatten();
        let port = Broken {
            entry: stored.as_ref().map(|r| Stored { version, data: record::encode(r) }),
            healthy: Cell::new(usize::from(warm_up.is_some())),
            ..Broken::default()
        };
        let breaker = Breaker::new(KEY.to_owned(), cfg.clone(), &port);
        let mut now = 1_000;
        let events = first_look(stored.as_ref());
        // What the instance caches: the record of its one healthy load, if any.
        let cached = match warm_up {
            None => None,
            Some(stored) => {
                let read = if stored.is_some() { version } else { 0 };
                let record = stored.unwrap_or_default();
                prop_assert_eq!(breaker.snapshot(now), Ok(stored_snapshot(&cfg, &record, now, read)));
                Some(record)
            }
        };
        let known = cached.as_ref().map_or(0, |r| r.generation);
        let seen = cached.as_ref().map_or(State::Closed, |r| r.state);
        let (mut loads, mut swaps) = (port.loads.get(), 0);
        for (attempt, wait) in &attempts {
            now += wait;
            match *attempt {
                Try::Acquire => {
                    loads += 1;
                    let got = breaker.acquire(now);
                    if cfg.fallback_admits() {
                        check_degraded(&got, known, now, "storage load failed: disk on fire")?;
                    } else {
                        check_unavailable(&got, cfg.fallback_state, "storage load failed: disk on fire")?;
                    }
                }
                Try::Report { older, trial, issued, outcome } => {
                    let record = cached.clone().unwrap_or_default();
                    let times: Vec<u64> = record.trials.iter().copied().chain([now]).collect();
                    let permit = Permit {
                        generation: record.generation.saturating_sub(u64::from(older)),
                        trial,
                        issued_at_ms: times[issued.index(times.len())],
                    };
                    let got = breaker.report(&permit, outcome, now);
                    match &cached {
                        _ if machine::report_never_writes(&permit, outcome) => {
                            prop_assert_eq!(got, Ok(Reported { tripped: false, state: seen }))
                        }
                        Some(r) if machine::report(&cfg, r, &permit, outcome, now).is_some() => {
                            swaps += 1;
                            prop_assert!(failed(&got, "compare-and-swap"), "{:?}", got);
                        }
                        _ => {
                            loads += 1;
                            prop_assert!(failed(&got, "load"), "{:?}", got);
                        }
                    }
                }
                Try::Operate(action) => {
                    let got = breaker.operate(action, now);
                    if cached.is_some() {
                        swaps += 1;
                        prop_assert!(failed(&got, "compare-and-swap"), "{:?}", got);
                    } else {
                        loads += 1;
                        prop_assert!(failed(&got, "load"), "{:?}", got);
                    }
                }
                Try::Snapshot => {
                    loads += 1;
                    let got = breaker.snapshot(now);
                    prop_assert!(failed(&got, "load"), "{:?}", got);
                }
            }
            prop_assert_eq!(port.loads.get(), loads, "loads after {:?}", attempt);
            prop_assert_eq!(port.swaps.get(), swaps, "compare-and-swaps after {:?}", attempt);
        }
        prop_assert_eq!(port.events.take(), events);
    }

    /// Breakers over a storage that fails now and then: a failed call writes
    /// nothing and keeps the instance's cache, acquire then follows the
    /// fallback (admitting degraded with the newest generation the instance
    /// knows, or refusing in the fallback state), a healthy call does what
    /// the machine says on the stored record, every call makes the loads its
    /// cache calls for, and the shared-storage invariants (events,
    /// generations, reasons, change times, trial limit) hold throughout.
    #[test]
    fn a_flaky_storage_is_survived(
        mut cfg in config(),
        fallback_state in fallback(),
        start in start(),
        n in 1..=3usize,
        ops in ops(),
        faults in vec(prop::bool::weighted(0.25), 0..150),
    ) {
        cfg.fallback_state = fallback_state;
        let shared = Shared::new(&cfg, n, start);
        shared.faults.borrow_mut().extend(faults);
        let breakers = instances(&cfg, &shared, n);
        let mut permits: Vec<Permit> = Vec::new();
        for op in &ops {
            let now = shared.now.get();
            let before = shared.stored();
            let failed_before = shared.failed_calls.get();
            let faulted = || shared.failed_calls.get() > failed_before;
            let mut loads_due: Option<(usize, usize)> = None;
            match *op {
                Op::Acquire(w, ask) => {
                    let w = w % n;
                    loads_due = Some((w, shared.loads(w) + shared.loads_due(w, op, None)));
                    let got = acquire(&shared, &breakers[w], ask, now);
                    if faulted() {
                        // The newest generation known: the load's, if it loaded
                        // before the storage failed.
                        let known = shared.known_generation(w);
                        if cfg.fallback_admits() {
                            check_degraded(&got, known, now, "disk on fire")?;
                        } else {
                            check_unavailable(&got, cfg.fallback_state, "disk on fire")?;
                        }
                    } else {
                        let (write, want) = machine::acquire(&cfg, &before.1, now);
                        let got_answer = match &got {
                            Ok(admission) => Ok(admission.permit),
                            Err(Refusal { denial: Denial::Rejected(rejection), state, .. }) => {
                                prop_assert_eq!(*state, before.1.state, "the state that refused");
                                Err(rejection.clone())
                            }
                            Err(other) => {
                                return Err(TestCaseError::fail(format!("healthy acquire: {other:?}")));
                            }
                        };
                        prop_assert_eq!(&got_answer, &want);
                        prop_assert_eq!(shared.stored().1, write.clone().unwrap_or(before.1.clone()));
                        // Decided on the stored record, or on the one it wrote.
                        let (version, decided) = shared.stored();
                        let holds = machine::holds_until(&want, now)
                            .map(|until_ms| Holds { version, until_ms });
                        let held = match &got {
                            Ok(admission) => admission.holds,
                            Err(refusal) => refusal.holds,
                        };
                        prop_assert_eq!(held, holds, "holds of {:?} on {:?}", got, decided);
                        if let Ok(admission) = &got {
                            prop_assert_eq!(
                                admission.quiet_success,
                                machine::success_is_quiet(breakers[w].config(), &decided, &admission.permit),
                                "quiet success of {:?} on {:?}", admission, decided
                            );
                            prop_assert_eq!(&admission.degraded, &None);
                        }
                    }
                    permits.extend(got.ok().map(|a| a.permit));
                }
                Op::Report(pick, outcome, w) => {
                    if permits.is_empty() {
                        continue;
                    }
                    let w = w % n;
                    let permit = permits.swap_remove(pick.index(permits.len()));
                    loads_due = Some((w, shared.loads(w) + shared.loads_due(w, op, Some(&permit))));
                    let seen = shared.seen(w);
                    let got = breakers[w].report(&permit, outcome, now);
                    if faulted() {
                        prop_assert!(
                            matches!(&got, Err(BreakerError::Storage(m)) if m.contains("disk on fire")),
                            "{:?}", got
                        );
                    } else {
                        let write = machine::report(&cfg, &before.1, &permit, outcome, now);
                        let tripped = write.as_ref().is_some_and(|next| machine::tripped(&before.1, next));
                        let after = write.unwrap_or(before.1.clone());
                        prop_assert_eq!(
                            &shared.stored().1, &after,
                            "report {:?} of {:?}", outcome, permit
                        );
                        let state = if machine::report_never_writes(&permit, outcome) {
                            seen
                        } else {
                            after.state
                        };
                        prop_assert_eq!(got, Ok(Reported { tripped, state }));
                    }
                }
                Op::Operate(action, w) => {
                    let w = w % n;
                    loads_due = Some((w, shared.loads(w) + shared.loads_due(w, op, None)));
                    let got = operate(&shared, &breakers[w], action, now);
                    if faulted() {
                        prop_assert!(
                            matches!(&got, Err(BreakerError::Storage(m)) if m.contains("disk on fire")),
                            "{:?}", got
                        );
                    } else {
                        prop_assert_eq!(got, Ok(()));
                        prop_assert_eq!(shared.stored().1, machine::operate(&cfg, &before.1, action, now));
                    }
                }
                Op::Snapshot(w) => {
                    let w = w % n;
                    loads_due = Some((w, shared.loads(w) + shared.loads_due(w, op, None)));
                    let got = breakers[w].snapshot(now);
                    if faulted() {
                        prop_assert!(failed(&got, "load"), "{:?}", got);
                    } else {
                        prop_assert_eq!(got, Ok(stored_snapshot(&cfg, &before.1, now, before.0)));
                    }
                }
                Op::Wait(wait) => shared.now.set(now + wait.ms(&cfg)),
            }
            if let Some((w, loads)) = loads_due {
                prop_assert_eq!(shared.loads(w), loads, "loads by instance {} for {:?}", w, op);
            }
            if faulted() {
                prop_assert_eq!(shared.stored(), before.clone(), "a failed call wrote");
            }
            check_shared(&shared)?;
            prop_assert!(shared.stored().1.generation >= before.1.generation, "generation went back");
        }
    }
}

/// When acquire's write (open -> half-open, or taking a trial slot) loses
/// every one of the MAX_ATTEMPTS (64) compare-and-swaps to conflicts, acquire
/// is refused as unavailable whatever the fallback state, in the stored
/// state, holding nothing, and took no slot. A genuine storage error, by
/// compare-and-swap or by load, still follows the fallback.
#[test]
fn a_contended_acquire_is_unavailable_whatever_the_fallback() {
    assert_eq!(MAX_ATTEMPTS, 64);
    let now = 20;
    let open = Record {
        state: State::Open,
        opened_at_ms: Some(0),
        generation: 3,
        ..Record::default()
    };
    let half_open = Record {
        state: State::HalfOpen,
        generation: 3,
        trials: vec![15],
        ..Record::default()
    };
    for fallback_state in [
        State::Closed,
        State::Open,
        State::ForcedOpen,
        State::Disabled,
    ] {
        let cfg = Config {
            reset_timeout_ms: 10,
            trial_timeout_ms: 10,
            half_open_max_calls: 2,
            fallback_state,
            ..tiny()
        };
        for rec in [&open, &half_open] {
            let (write, answer) = machine::acquire(&cfg, rec, now);
            assert!(
                write.is_some() && answer.is_ok_and(|p| p.trial),
                "a trial to write on {rec:?}"
            );
            let case = format!("fallback {fallback_state:?}, {rec:?}");

            let port = Scripted::holding(Some(rec), 5);
            port.reply.set(Reply::Conflict);
            let breaker = Breaker::new(KEY.to_owned(), cfg.clone(), &port);
            let got = breaker.acquire(now);
            check_unavailable(&got, rec.state, "gave up after 64 conflicting writes")
                .unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_eq!((port.loads.get(), port.swaps.get()), (1, 64), "{case}");
            // Nothing was taken: once the writes go through, the trial is there.
            port.reply.set(Reply::Write);
            let trial = breaker.acquire(now).unwrap();
            assert!(trial.permit.trial, "{case}");

            // A compare-and-swap that fails follows the fallback, with the
            // generation just loaded.
            let port = Scripted::holding(Some(rec), 5);
            port.reply.set(Reply::Fail);
            let breaker = Breaker::new(KEY.to_owned(), cfg.clone(), &port);
            let got = breaker.acquire(now);
            assert_eq!(port.swaps.get(), 1, "{case}");
            let says = "storage compare-and-swap failed";
            if cfg.fallback_admits() {
                check_degraded(&got, 3, now, says).unwrap_or_else(|e| panic!("{case}: {e}"));
            } else {
                check_unavailable(&got, fallback_state, says)
                    .unwrap_or_else(|e| panic!("{case}: {e}"));
            }

            // So does a load that fails, with no generation known.
            let port = Scripted::holding(Some(rec), 5);
            port.load_fails.set(true);
            let breaker = Breaker::new(KEY.to_owned(), cfg.clone(), &port);
            let got = breaker.acquire(now);
            let says = "storage load failed";
            if cfg.fallback_admits() {
                check_degraded(&got, 0, now, says).unwrap_or_else(|e| panic!("{case}: {e}"));
            } else {
                check_unavailable(&got, fallback_state, says)
                    .unwrap_or_else(|e| panic!("{case}: {e}"));
            }
        }
    }
}

/// When the storage cannot say, acquire answers in the fallback state: a
/// closed or disabled fallback admits, degraded (the message names the
/// breaker), quiet, holding nothing; an open fallback refuses in state open,
/// a forced-open one in state forced-open, as unavailable, holding nothing;
/// whether the load failed, the compare-and-swap failed, or the record is
/// corrupt.
#[test]
fn the_fallback_answers_in_its_own_state() {
    let open = Record {
        state: State::Open,
        opened_at_ms: Some(0),
        generation: 3,
        ..Record::default()
    };
    for fallback_state in [
        State::Closed,
        State::Disabled,
        State::Open,
        State::ForcedOpen,
    ] {
        let cfg = Config {
            fallback_state,
            ..tiny()
        };
        let failing_load = Scripted::holding(Some(&open), 5);
        failing_load.load_fails.set(true);
        let failing_swap = Scripted::holding(Some(&open), 5);
        failing_swap.reply.set(Reply::Fail);
        let corrupt = Scripted::holding(None, 0);
        corrupt.put(corrupt_bytes(), 5);
        for (port, generation, says) in [
            (&failing_load, 0, "storage load failed: disk on fire"),
            (
                &failing_swap,
                3,
                "storage compare-and-swap failed: disk on fire",
            ),
            (&corrupt, 0, "stored record is corrupt"),
        ] {
            let breaker = Breaker::new(KEY.to_owned(), cfg.clone(), port);
            let got = breaker.acquire(10);
            let case = format!("fallback {fallback_state:?}, {says}: {got:?}");
            match fallback_state {
                State::Closed | State::Disabled => check_degraded(&got, generation, 10, says),
                _ => check_unavailable(&got, fallback_state, says),
            }
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        }
    }
}

/// Each failure has its error: `Storage` when a load or compare-and-swap
/// fails, `Corrupt` when snapshot or report meets a corrupt record (found by
/// a load, or handed back by a conflict), `Contended` after MAX_ATTEMPTS
/// conflicts; `message()` is the message each carries.
#[test]
fn each_failure_has_its_breaker_error() {
    let cfg = Config {
        fail_max: 2,
        reset_timeout_ms: 100,
        trial_timeout_ms: 100,
        ..tiny()
    };
    let closed = Record::default();
    let permit = Permit {
        generation: 0,
        trial: false,
        issued_at_ms: 1,
    };
    let storage = |got: Result<(), BreakerError>, operation: &str| match got {
        Err(error @ BreakerError::Storage(_)) => {
            let message = error.message();
            assert!(
                message.contains(KEY)
                    && message.contains(&format!("storage {operation} failed: disk on fire")),
                "{message}"
            );
        }
        other => panic!("a failed {operation}: {other:?}"),
    };

    // A failing storage: cold, every call loads and fails; warm, a write
    // fails at its compare-and-swap.
    let broken = Broken {
        healthy: Cell::new(1),
        ..Broken::default()
    };
    let breaker = Breaker::new(KEY.to_owned(), cfg.clone(), &broken);
    let cold = Breaker::new(KEY.to_owned(), cfg.clone(), &broken);
    breaker.snapshot(0).unwrap();
    storage(cold.snapshot(1).map(drop), "load");
    storage(cold.report(&permit, Outcome::Failure, 1).map(drop), "load");
    storage(cold.operate(Action::Close, 1), "load");
    storage(breaker.snapshot(1).map(drop), "load");
    storage(
        breaker.report(&permit, Outcome::Success, 1).map(drop),
        "load",
    );
    storage(
        breaker.report(&permit, Outcome::Failure, 1).map(drop),
        "compare-and-swap",
    );
    storage(breaker.operate(Action::Open, 1), "compare-and-swap");

    // A corrupt record: found by a load, or handed back by a conflict.
    let corrupt = |got: Result<(), BreakerError>, case: &str| match got {
        Err(error @ BreakerError::Corrupt(_)) => {
            let message = error.message();
            assert!(
                message.contains(KEY) && message.contains("stored record is corrupt"),
                "{case}: {message}"
            );
        }
        other => panic!("{case}: {other:?}"),
    };
    let port = Scripted::holding(Some(&closed), 1);
    let warm = Breaker::new(KEY.to_owned(), cfg.clone(), &port);
    warm.snapshot(0).unwrap();
    port.put(corrupt_bytes(), 2);
    let cold = Breaker::new(KEY.to_owned(), cfg.clone(), &port);
    corrupt(cold.snapshot(1).map(drop), "a cold snapshot");
    corrupt(
        cold.report(&permit, Outcome::Failure, 1).map(drop),
        "a cold report",
    );
    let swaps = port.swaps.get();
    corrupt(
        warm.report(&permit, Outcome::Failure, 1).map(drop),
        "a warm report that writes",
    );
    assert_eq!(port.swaps.get(), swaps + 1, "met by a conflict");
    corrupt(
        warm.report(&permit, Outcome::Success, 1).map(drop),
        "a warm report that writes nothing",
    );
    corrupt(warm.snapshot(1).map(drop), "a warm snapshot");

    // Endless conflicts.
    let contended = |got: Result<(), BreakerError>, case: &str| match got {
        Err(error @ BreakerError::Contended(_)) => {
            let message = error.message();
            assert!(
                message.contains(KEY) && gave_up(message),
                "{case}: {message}"
            );
        }
        other => panic!("{case}: {other:?}"),
    };
    let counted = Record {
        failures: 1,
        ..Record::default()
    };
    let stubborn = Stubborn::holding(Some(&counted), 3);
    let breaker = Breaker::new(KEY.to_owned(), cfg.clone(), &stubborn);
    contended(
        breaker.report(&permit, Outcome::Failure, 1).map(drop),
        "a trip",
    );
    contended(
        breaker.report(&permit, Outcome::Success, 1).map(drop),
        "a reset",
    );
    contended(breaker.operate(Action::ForceOpen, 1), "an operator action");
    assert_eq!(stubborn.swaps.get(), 3 * MAX_ATTEMPTS);
    assert_eq!(
        breaker.snapshot(1).map(|s| s.version),
        Ok(3),
        "reading works"
    );
}

/// A corrupt record clears nothing: acquire follows the fallback, and an
/// admitted call's permit carries the newest generation the instance knew,
/// whether the corrupt record came from a load or from a conflict; a fresh
/// instance that knows none gets generation 0.
#[test]
fn a_corrupt_record_keeps_the_cache() {
    let cfg = Config {
        reset_timeout_ms: 100,
        trial_timeout_ms: 100,
        ..tiny()
    };
    let open = Record {
        state: State::Open,
        opened_at_ms: Some(0),
        generation: 4,
        reason: Reason::Tripped,
        changed_at_ms: 3,
        ..Record::default()
    };
    let says = "stored record is corrupt";
    let port = Scripted::holding(Some(&open), 1);
    let breaker = Breaker::new(KEY.to_owned(), cfg.clone(), &port);
    assert!(matches!(
        breaker.acquire(10),
        Err(Refusal {
            denial: Denial::Rejected(Rejection::Open(90)),
            ..
        })
    ));
    port.put(corrupt_bytes(), 2);

    // Found by a load, twice: the first corrupt read cleared nothing.
    for now in [20, 21] {
        check_degraded(&breaker.acquire(now), 4, now, says).unwrap();
    }
    assert_eq!(port.loads.get(), 3);
    // Found by a conflict: at the version it cached, the instance skips the
    // load, tries to take the trial, and meets the corrupt record.
    check_degraded(&breaker.acquire_at_version(200, 1), 4, 200, says).unwrap();
    assert_eq!((port.loads.get(), port.swaps.get()), (3, 1));
    assert!(matches!(
        breaker.snapshot(201),
        Err(BreakerError::Corrupt(m)) if m.contains("corrupt")
    ));
    assert_eq!(
        port.events.take(),
        first_look(Some(&open)),
        "only the first look's event, at the record's change time"
    );

    // A fresh instance knows no generation.
    let fresh = Breaker::new(KEY.to_owned(), cfg.clone(), &port);
    check_degraded(&fresh.acquire(30), 0, 30, says).unwrap();

    // A rejecting fallback says why.
    for fallback_state in [State::Open, State::ForcedOpen] {
        let rejecting = Config {
            fallback_state,
            ..cfg.clone()
        };
        let breaker = Breaker::new(KEY.to_owned(), rejecting, &port);
        check_unavailable(&breaker.acquire(40), fallback_state, says).unwrap();
    }
}

proptest! {
    #![proptest_config(settings())]

    /// Over a record that turned corrupt, acquire follows the fallback with
    /// the generation of the last good record the instance saw (0 if none),
    /// however often it finds the corrupt one: degraded admissions, or
    /// refusals in the fallback state.
    #[test]
    fn a_corrupt_record_follows_the_fallback_with_the_generation_known(
        mut cfg in config(),
        fallback_state in fallback(),
        warm_up in prop::option::of(prop::option::of(any_record())),
        waits in vec(0..5u64, 1..10),
    ) {
        cfg.fallback_state = fallback_state;
        let stored = warm_up.clone().flatten();
        let port = Scripted::holding(stored.as_ref(), 5);
        let breaker = Breaker::new(KEY.to_owned(), cfg.clone(), &port);
        let mut now = 1_000;
        let known = match &warm_up {
            None => 0,
            Some(_) => {
                let read = if stored.is_some() { 5 } else { 0 };
                let record = stored.clone().unwrap_or_default();
                prop_assert_eq!(breaker.snapshot(now), Ok(stored_snapshot(&cfg, &record, now, read)));
                record.generation
            }
        };
        let events = if warm_up.is_some() { first_look(stored.as_ref()) } else { Vec::new() };
        port.put(corrupt_bytes(), 6);
        let says = "stored record is corrupt";
        for wait in &waits {
            now += wait;
            let got = breaker.acquire(now);
            if cfg.fallback_admits() {
                check_degraded(&got, known, now, says)?;
            } else {
                check_unavailable(&got, cfg.fallback_state, says)?;
            }
        }
        prop_assert_eq!(port.loads.get(), usize::from(warm_up.is_some()) + waits.len());
        prop_assert_eq!(port.swaps.get(), 0);
        prop_assert_eq!(port.events.take(), events);
    }
}

/// The action's target state.
fn target(action: Action) -> State {
    match action {
        Action::Open => State::Open,
        Action::Close => State::Closed,
        Action::HalfOpen => State::HalfOpen,
        Action::ForceOpen => State::ForcedOpen,
        Action::Disable => State::Disabled,
    }
}

/// An operator action overwrites a corrupt record. The record the change is
/// computed from is made up (closed, with the highest generation the
/// instance has seen), but the local event runs from the state the instance
/// last saw: an instance that saw open and closes fires open -> closed; a
/// new instance, which takes itself for closed, that opens fires closed ->
/// open; an instance that saw open and opens fires nothing.
#[test]
fn repairing_a_corrupt_record_fires_from_the_state_last_seen() {
    let cfg = Config {
        reset_timeout_ms: 100,
        trial_timeout_ms: 100,
        ..tiny()
    };
    let open = Record {
        state: State::Open,
        opened_at_ms: Some(0),
        generation: 2,
        reason: Reason::Tripped,
        changed_at_ms: 3,
        ..Record::default()
    };
    let repair = |warm_up: Option<&Record>, action| {
        let port = Scripted::holding(warm_up, 1);
        let breaker = Breaker::new(KEY.to_owned(), cfg.clone(), &port);
        if warm_up.is_some() {
            breaker.snapshot(5).unwrap();
        }
        port.put(corrupt_bytes(), 2);
        breaker.operate(action, 10).unwrap();
        let made_up = Record {
            generation: warm_up.map_or(0, |r| r.generation),
            ..Record::default()
        };
        let written = machine::operate(&cfg, &made_up, action, 10);
        assert_eq!(
            *port.entry.borrow(),
            Some(Stored {
                version: 3,
                data: record::encode(&written),
            }),
            "{action:?} over the corrupt record"
        );
        port.events.take()
    };
    let local = |previous, current, generation| Change {
        previous,
        current,
        at_ms: 10,
        generation,
        reason: Reason::Operator,
        remote: false,
    };
    let mut saw_open = first_look(Some(&open));
    saw_open.push(local(State::Open, State::Closed, 3));
    assert_eq!(
        repair(Some(&open), Action::Close),
        saw_open,
        "saw open, closes"
    );
    assert_eq!(
        repair(None, Action::Open),
        vec![local(State::Closed, State::Open, 1)],
        "a new instance opens"
    );
    assert_eq!(
        repair(Some(&open), Action::Open),
        first_look(Some(&open)),
        "saw open, opens: only the first look's event"
    );
    assert_eq!(
        repair(Some(&Record::default()), Action::Close),
        vec![],
        "saw closed, closes"
    );
}

proptest! {
    #![proptest_config(settings())]

    /// Over a record that turned corrupt, an operator action writes
    /// `machine::operate` of a made-up closed record (generation: the highest
    /// the instance has seen) at the next version; the instance fires one
    /// local event from the state it last saw (closed if it never looked) to
    /// the action's state, if they differ; a later look fires nothing. With a
    /// cache it tries the cached version first, so two compare-and-swaps and
    /// no load; without, one load and one compare-and-swap.
    #[test]
    fn an_operator_repairs_a_corrupt_record_from_the_state_last_seen(
        cfg in config(),
        warm_up in prop::option::of(prop::option::of(any_record())),
        action in action(),
        corrupt_version in 6..10u64,
    ) {
        let stored = warm_up.clone().flatten();
        let port = Scripted::holding(stored.as_ref(), 5);
        let breaker = Breaker::new(KEY.to_owned(), cfg.clone(), &port);
        let now = 1_000;
        let (seen, known, mut events) = match &warm_up {
            None => (State::Closed, 0, Vec::new()),
            Some(_) => {
                let read = if stored.is_some() { 5 } else { 0 };
                let record = stored.clone().unwrap_or_default();
                prop_assert_eq!(breaker.snapshot(now), Ok(stored_snapshot(&cfg, &record, now, read)));
                (record.state, record.generation, first_look(stored.as_ref()))
            }
        };
        let warm_loads = port.loads.get();
        port.put(corrupt_bytes(), corrupt_version);
        prop_assert_eq!(breaker.operate(action, now + 1), Ok(()));
        let made_up = Record { generation: known, ..Record::default() };
        let written = machine::operate(&cfg, &made_up, action, now + 1);
        prop_assert_eq!(written.state, target(action));
        prop_assert_eq!(written.generation, known + 1);
        prop_assert_eq!(
            port.entry.borrow().clone(),
            Some(Stored { version: corrupt_version + 1, data: record::encode(&written) })
        );
        let calls = if warm_up.is_some() { (0, 2) } else { (1, 1) };
        prop_assert_eq!((port.loads.get() - warm_loads, port.swaps.get()), calls, "loads, swaps");
        if seen != written.state {
            events.push(Change {
                previous: seen,
                current: written.state,
                at_ms: now + 1,
                generation: known + 1,
                reason: Reason::Operator,
                remote: false,
            });
        }
        prop_assert_eq!(port.events.take(), events);
        prop_assert_eq!(
            breaker.snapshot(now + 2),
            Ok(stored_snapshot(&cfg, &written, now + 2, corrupt_version + 1))
        );
        prop_assert_eq!(port.events.take(), Vec::<Change>::new(), "a later look");
    }

    /// Generations never go back through a repair: an instance that has
    /// seen records of any generations (the key vanishing between them, so
    /// the last one seen may be lower than another), then finds the record
    /// corrupt, repairs it with a generation above every generation it has
    /// seen, written or read: one above the highest.
    #[test]
    fn a_repaired_record_starts_above_every_generation_seen(
        cfg in config(),
        looks in vec(prop::option::of((any_record(), any::<bool>())), 1..8),
        action in action(),
    ) {
        let port = Scripted::holding(None, 0);
        let breaker = Breaker::new(KEY.to_owned(), cfg.clone(), &port);
        let mut now = 1_000;
        let mut version = 0;
        let mut highest = 0;
        for look in &looks {
            now += 1;
            match look {
                None => *port.entry.borrow_mut() = None,
                Some((rec, _)) => {
                    version += 1;
                    port.put(record::encode(rec), version);
                }
            }
            let seen = breaker.snapshot(now);
            prop_assert!(seen.is_ok(), "{:?}", seen);
            highest = highest.max(seen.unwrap().generation);
            if let Some((_, true)) = look {
                // This instance writes too; its write is a generation it has seen.
                prop_assert_eq!(breaker.operate(Action::Close, now), Ok(()));
                let wrote = port.record().map(|r| r.generation);
                prop_assert!(wrote.is_some(), "the write is a record");
                highest = highest.max(wrote.unwrap_or(0));
                version += 1;
            }
        }
        version += 1;
        port.put(corrupt_bytes(), version);
        prop_assert_eq!(breaker.operate(action, now + 1), Ok(()));
        let repaired = port.record();
        prop_assert!(repaired.is_some(), "the repair wrote a record");
        let repaired = repaired.unwrap();
        prop_assert_eq!(repaired.generation, highest + 1, "one above the highest seen");
        prop_assert_eq!((repaired.state, repaired.reason, repaired.changed_at_ms),
            (target(action), Reason::Operator, now + 1));
    }
}

/// A permit from before a repair counts nothing after it, even where the
/// key vanished between (an absent key reads as a fresh record), then
/// turned corrupt: the repair starts one above the highest generation the
/// instance saw, so above generation 3.
#[test]
fn a_permit_from_before_a_repair_counts_nothing_after_it() {
    let cfg = Config {
        fail_max: 1,
        reset_timeout_ms: 100,
        trial_timeout_ms: 100,
        ..tiny()
    };
    let third = Record {
        generation: 3,
        ..Record::default()
    };
    let port = Scripted::holding(Some(&third), 4);
    let breaker = Breaker::new(KEY.to_owned(), cfg.clone(), &port);
    let old = breaker.acquire(1).unwrap().permit;
    assert_eq!(old.generation, 3);
    *port.entry.borrow_mut() = None;
    let absent = breaker.snapshot(2).unwrap();
    assert_eq!((absent.state, absent.version), (State::Closed, 0));
    let highest = absent.generation.max(3);
    port.put(corrupt_bytes(), 9);
    breaker.operate(Action::Close, 3).unwrap();
    let repaired = port.record().unwrap();
    assert_eq!(
        (repaired.generation, repaired.reason, repaired.changed_at_ms),
        (highest + 1, Reason::Operator, 3),
        "one above the highest generation seen, so above 3"
    );
    assert_eq!(
        breaker.report(&old, Outcome::Failure, 4),
        Ok(Reported {
            tripped: false,
            state: State::Closed
        }),
        "the old permit is of another generation: it counts nothing"
    );
    assert_eq!(port.record(), Some(repaired));
}
