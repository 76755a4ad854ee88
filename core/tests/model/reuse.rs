//! What a host may reuse: how long each kind of answer holds, acquiring at a
//! host-named version, and quiet successes.

use std::cell::Cell;

use proptest::collection::vec;
use proptest::prelude::*;
use tripswitch_core::breaker::{Admission, Breaker, Denial, Holds, MAX_ATTEMPTS, Refusal};
use tripswitch_core::config::Config;
use tripswitch_core::machine::{self, Action, Outcome, Permit, Record, Rejection, State};

use crate::KEY;
use crate::ports::{Broken, Reply, Scripted, corrupt_bytes};
use crate::reference::absolute;
use crate::storage::{Answered, Peek, Shared, check_shared, instances, operate};
use crate::strategies::{any_record, config, fallback, settings, tiny};

/// How long `answer` holds (none: ask again next time).
pub fn holds_of(answer: &Answered) -> Option<Holds> {
    match answer {
        Ok(admission) => admission.holds,
        Err(refusal) => refusal.holds,
    }
}

/// Whether a host may reuse `answer` at `now`, `version` being stored: it
/// holds, at that version, and its time is not up.
pub fn holds_at(answer: &Answered, version: u64, now: u64) -> bool {
    holds_of(answer).is_some_and(|h| h.version == version && h.until_ms.is_none_or(|u| now < u))
}

/// What a host reusing `kept` (an answer that holds) at `now` answers: an
/// admission issued now, a rejection with the ms left until the answer ends.
pub fn reuse(kept: &Answered, now: u64) -> Answered {
    let left = |ms: u64| {
        holds_of(kept)
            .and_then(|h| h.until_ms)
            .map_or(ms, |until| until - now)
    };
    match kept {
        Ok(admission) => Ok(Admission {
            permit: Permit {
                issued_at_ms: now,
                ..admission.permit
            },
            ..admission.clone()
        }),
        Err(refusal) => Err(Refusal {
            denial: match &refusal.denial {
                Denial::Rejected(Rejection::Open(ms)) => {
                    Denial::Rejected(Rejection::Open(left(*ms)))
                }
                Denial::Rejected(Rejection::HalfOpenFull(ms)) => {
                    Denial::Rejected(Rejection::HalfOpenFull(left(*ms)))
                }
                other => other.clone(),
            },
            ..refusal.clone()
        }),
    }
}

/// The decision behind an answer that holds, as `machine::acquire` gives it.
fn decision(answer: &Answered) -> Result<Permit, Rejection> {
    match answer {
        Ok(admission) => Ok(admission.permit),
        Err(Refusal {
            denial: Denial::Rejected(rejection),
            ..
        }) => Err(rejection.clone()),
        Err(refusal) => panic!("{refusal:?} holds no decision"),
    }
}

/// What a host reusing `kept` at `now` answers is what the component
/// answers, asked afresh (a new instance, so no cache of its own): the same
/// answer, holds, quiet success and refusing state included, and no write.
/// So reuse never admits a call the component would reject. Returns the
/// reused answer.
pub fn check_reuse(shared: &Shared, kept: &Answered, now: u64) -> Result<Answered, TestCaseError> {
    let (version, stored) = shared.stored();
    prop_assert!(
        holds_at(kept, version, now),
        "reused {:?} at {} with version {} stored",
        kept,
        now,
        version
    );
    let reused = reuse(kept, now);
    let peek = Peek {
        shared,
        swaps: Cell::new(0),
    };
    let fresh = Breaker::new(KEY.to_owned(), shared.cfg.clone(), &peek);
    let asked = fresh.acquire(now);
    prop_assert_eq!(
        peek.swaps.get(),
        0,
        "the component wrote where a host reuses"
    );
    prop_assert_eq!(
        &asked,
        &reused,
        "reusing {:?} at {} on {:?}",
        kept,
        now,
        stored
    );
    Ok(reused)
}

/// An answer whose time is up, given at `decided_at`, is not the
/// component's answer at `now` though its version is still the stored one:
/// the bound it named is tight.
pub fn check_lapsed(
    shared: &Shared,
    kept: &Answered,
    decided_at: u64,
    now: u64,
) -> Result<(), TestCaseError> {
    let (version, stored) = shared.stored();
    let until = holds_of(kept).and_then(|h| h.until_ms);
    prop_assert!(
        holds_of(kept).is_some_and(|h| h.version == version) && until.is_some_and(|u| now >= u),
        "{:?} has not lapsed at {}",
        kept,
        now
    );
    let (_, then) = machine::acquire(&shared.cfg, &stored, now);
    prop_assert_ne!(
        absolute(&then, now),
        absolute(&decision(kept), decided_at),
        "{:?}, given at {}, is still the answer at {} on {:?}",
        kept,
        decided_at,
        now,
        stored
    );
    Ok(())
}

/// `acquire_at_version` skips the load exactly when the host names the
/// version the instance has cached (0: absent), and otherwise loads; either
/// way it answers as a plain `acquire` through another instance does.
#[test]
fn acquire_at_version_loads_unless_the_version_is_the_cached_one() {
    let cfg = Config {
        fail_max: 3,
        reset_timeout_ms: 100,
        success_threshold: 1,
        half_open_max_calls: 1,
        trial_timeout_ms: 100,
        fallback_state: State::Closed,
        ..Config::default()
    };
    let shared = Shared::new(&cfg, 3, 0);
    let breakers = instances(&cfg, &shared, 3);
    let (a, writer, plain) = (&breakers[0], &breakers[1], &breakers[2]);
    let at = |now: u64| {
        shared.now.set(now);
        now
    };
    // Acquires through `a` at `version`, then plainly through `plain`;
    // checks that the answers agree, returns `a`'s loads and answer.
    let both = |version: u64, now: u64| {
        let loads = shared.loads(0);
        let got = a.acquire_at_version(at(now), version);
        let loaded = shared.loads(0) - loads;
        let want = plain.acquire(now);
        assert_eq!(got, want, "at version {version}, {now} ms");
        (loaded, got)
    };

    assert_eq!(both(0, 1).0, 1, "nothing cached yet: it loads");
    assert_eq!(both(0, 2).0, 0, "the absent entry is cached as version 0");
    assert_eq!(both(7, 3).0, 1, "not the cached version: it loads");

    let counted = writer.acquire(at(4)).unwrap();
    writer.report(&counted.permit, Outcome::Failure, 4).unwrap();
    let (version, _) = shared.stored();
    assert_eq!(version, 1);
    let (loaded, got) = both(version, 5);
    assert_eq!(loaded, 1, "the cache is older than the named version");
    assert!(!got.unwrap().quiet_success, "a failure is counted");
    let (loaded, got) = both(version, 6);
    assert_eq!(loaded, 0, "the named version is the cached one");
    assert_eq!(
        got.unwrap().holds,
        Some(Holds {
            version,
            until_ms: None
        })
    );

    // Trip the circuit through `writer`, then let the reset timeout elapse:
    // an acquire at the current version reloads, takes the trial and writes.
    for now in [7, 8] {
        let admission = writer.acquire(at(now)).unwrap();
        writer
            .report(&admission.permit, Outcome::Failure, now)
            .unwrap();
    }
    let (version, tripped) = shared.stored();
    assert_eq!(tripped.state, State::Open);
    let loads = shared.loads(0);
    let trial = a.acquire_at_version(at(200), version).unwrap();
    assert!(trial.permit.trial);
    assert_eq!(shared.loads(0), loads + 1);
    assert_eq!(trial.holds, None, "a trial took a slot: ask again");
    assert_eq!(shared.stored().1.state, State::HalfOpen);
    // The slot is taken; at the version it wrote, `a` answers from its cache.
    let loads = shared.loads(0);
    let full = a.acquire_at_version(at(201), shared.stored().0);
    assert_eq!(
        full,
        Err(Refusal {
            denial: Denial::Rejected(Rejection::HalfOpenFull(99)),
            state: State::HalfOpen,
            holds: Some(Holds {
                version: shared.stored().0,
                until_ms: Some(300)
            }),
        })
    );
    assert_eq!(shared.loads(0), loads);
    assert_eq!(plain.acquire(201), full);
    check_shared(&shared).unwrap();
}

/// `quiet_success` is set exactly when reporting a success would write
/// nothing on the record the permit was decided on: closed with no failure
/// counted, or disabled; never for a trial. An admission holds, at the
/// version it was decided on and without end, exactly when that record is
/// closed (failures counted or not) or disabled and the permit no trial. A
/// fallback admission, decided on no record, holds nothing, and its success
/// is quiet: there is nothing it could reset that the storage would keep.
#[test]
fn quiet_success_is_set_only_when_a_success_would_change_nothing() {
    let cfg = Config {
        fail_max: 2,
        reset_timeout_ms: 10,
        trial_timeout_ms: 10,
        ..tiny()
    };
    let shared = Shared::new(&cfg, 2, 0);
    let breakers = instances(&cfg, &shared, 2);
    let (a, b) = (&breakers[0], &breakers[1]);
    let at = |now: u64| {
        shared.now.set(now);
        now
    };
    let quiet = |admission: &Admission| {
        let decided = shared.stored();
        let now = shared.now.get();
        let write = machine::report(&cfg, &decided.1, &admission.permit, Outcome::Success, now);
        assert_eq!(
            admission.quiet_success,
            write.is_none(),
            "{admission:?} on {decided:?}"
        );
        let holds =
            !admission.permit.trial && matches!(decided.1.state, State::Closed | State::Disabled);
        assert_eq!(
            admission.holds,
            holds.then_some(Holds {
                version: decided.0,
                until_ms: None
            }),
            "{admission:?} on {decided:?}"
        );
        assert_eq!(admission.degraded, None);
        admission.quiet_success
    };
    let fail_through_b = |now: u64| {
        let admission = b.acquire(at(now)).unwrap();
        b.report(&admission.permit, Outcome::Failure, now).unwrap();
    };

    let fresh = a.acquire(at(0)).unwrap();
    assert!(quiet(&fresh), "closed, nothing counted");
    assert!(fresh.holds.is_some(), "closed: the same answer at any time");
    fail_through_b(0);
    let counted = a.acquire(at(1)).unwrap();
    assert!(!quiet(&counted), "a failure to reset");
    assert!(
        counted.holds.is_some(),
        "closed with a failure counted: still the same answer at any time"
    );
    a.report(&counted.permit, Outcome::Success, 1).unwrap();
    assert_eq!(shared.stored().1.failures, 0, "which it did");

    // Quiet at acquire promises nothing about later: `fresh` was quiet, yet
    // its success resets a failure counted since (see reports.rs).
    fail_through_b(2);
    a.report(&fresh.permit, Outcome::Success, at(2)).unwrap();
    assert_eq!(shared.stored().1.failures, 0);

    fail_through_b(3);
    fail_through_b(3);
    assert_eq!(shared.stored().1.state, State::Open);
    let trial = a.acquire(at(13)).unwrap();
    assert!(trial.permit.trial);
    assert!(!quiet(&trial), "a trial's success counts");
    assert!(trial.holds.is_none(), "a trial takes a slot");

    operate(&shared, b, Action::Disable, at(14)).unwrap();
    let disabled = a.acquire(14).unwrap();
    assert!(quiet(&disabled), "disabled records nothing");
    assert!(disabled.holds.is_some(), "disabled admits at any time");
    operate(&shared, b, Action::HalfOpen, at(15)).unwrap();
    let trial = a.acquire(15).unwrap();
    assert!(!quiet(&trial), "a trial after an operator's half-open");
    assert!(
        trial.holds.is_none(),
        "a trial after an operator's half-open"
    );
    check_shared(&shared).unwrap();

    let broken = Broken::default();
    let breaker = Breaker::new(KEY.to_owned(), cfg.clone(), &broken);
    let fallback = breaker.acquire(16).unwrap();
    assert!(
        fallback.quiet_success,
        "a degraded admission: nothing to reset"
    );
    assert_eq!(fallback.holds, None, "decided on no record");
    assert!(fallback.degraded.is_some());
}

/// How long each kind of answer holds, and that a host reusing it within
/// that time answers as the component would, and after it not: a closed or
/// disabled admission holds at its version without end; an open refusal
/// until a trial is admitted; a full half-open one until the oldest trial
/// is forfeited; a forced-open one without end; a trial admission, a
/// degraded admission and every unavailable refusal hold nothing.
#[test]
fn each_kind_of_answer_holds_as_long_as_it_stands() {
    let cfg = Config {
        fail_max: 1,
        reset_timeout_ms: 100,
        success_threshold: 1,
        half_open_max_calls: 2,
        trial_timeout_ms: 50,
        fallback_state: State::Closed,
        ..Config::default()
    };
    let holds = |version, until_ms| Some(Holds { version, until_ms });
    let answer = |rec: Option<&Record>, cfg: &Config, now| {
        let port = Scripted::holding(rec, 7);
        let breaker = Breaker::new(KEY.to_owned(), cfg.clone(), &port);
        breaker.acquire(now)
    };
    let state = |state, opened_at_ms, trials: Vec<u64>| Record {
        state,
        opened_at_ms,
        trials,
        generation: 3,
        ..Record::default()
    };

    // Admitted, without end.
    let absent = answer(None, &cfg, 10);
    assert_eq!(
        absent.map(|a| a.holds),
        Ok(holds(0, None)),
        "absent: version 0"
    );
    let counted = Record {
        failures: 1,
        ..Record::default()
    };
    for rec in [counted, state(State::Disabled, None, vec![])] {
        let got = answer(Some(&rec), &cfg, 10).unwrap();
        assert_eq!(got.holds, holds(7, None), "{rec:?}");
        for later in [0, 11, u64::MAX] {
            assert_eq!(
                answer(Some(&rec), &cfg, later),
                reuse(&Ok(got.clone()), later),
                "{rec:?} at {later}"
            );
        }
    }

    // Refused until a trial is admitted at opened-at + reset timeout.
    let open = state(State::Open, Some(20), vec![]);
    let refused = answer(Some(&open), &cfg, 30);
    assert_eq!(
        refused,
        Err(Refusal {
            denial: Denial::Rejected(Rejection::Open(90)),
            state: State::Open,
            holds: holds(7, Some(120)),
        })
    );
    assert_eq!(answer(Some(&open), &cfg, 119), reuse(&refused, 119));
    let trial = answer(Some(&open), &cfg, 120).unwrap();
    assert!(trial.permit.trial, "a trial at the end");
    assert_eq!(trial.holds, None, "a trial admission holds nothing");

    // Full until the oldest live trial is forfeited at its issue + trial timeout.
    let full = state(State::HalfOpen, Some(0), vec![140, 130, 60]);
    let refused = answer(Some(&full), &cfg, 150);
    assert_eq!(
        refused,
        Err(Refusal {
            denial: Denial::Rejected(Rejection::HalfOpenFull(30)),
            state: State::HalfOpen,
            holds: holds(7, Some(180)),
        }),
        "the trial of 60 is forfeited already"
    );
    assert_eq!(answer(Some(&full), &cfg, 179), reuse(&refused, 179));
    let trial = answer(Some(&full), &cfg, 180).unwrap();
    assert!(trial.permit.trial, "a slot at the end");
    assert_eq!(trial.holds, None);

    // Forced open, without end.
    let forced = state(State::ForcedOpen, Some(20), vec![]);
    let refused = answer(Some(&forced), &cfg, 30);
    assert_eq!(
        refused,
        Err(Refusal {
            denial: Denial::Rejected(Rejection::ForcedOpen),
            state: State::ForcedOpen,
            holds: holds(7, None),
        })
    );
    assert_eq!(
        answer(Some(&forced), &cfg, u64::MAX),
        reuse(&refused, u64::MAX)
    );

    // The storage could not say: nothing holds.
    for fallback_state in [
        State::Closed,
        State::Disabled,
        State::Open,
        State::ForcedOpen,
    ] {
        let cfg = Config {
            fallback_state,
            ..cfg.clone()
        };
        let failing = Scripted::holding(Some(&open), 7);
        failing.load_fails.set(true);
        let corrupt = Scripted::holding(None, 0);
        corrupt.put(corrupt_bytes(), 7);
        for port in [&failing, &corrupt] {
            let got = Breaker::new(KEY.to_owned(), cfg.clone(), port).acquire(30);
            assert_eq!(holds_of(&got), None, "fallback {fallback_state:?}: {got:?}");
            assert_eq!(got.is_ok(), cfg.fallback_admits(), "{got:?}");
        }
        let contended = Scripted::holding(Some(&open), 7);
        contended.reply.set(Reply::Conflict);
        let got = Breaker::new(KEY.to_owned(), cfg.clone(), &contended).acquire(120);
        assert_eq!(contended.swaps.get(), MAX_ATTEMPTS);
        assert!(
            matches!(
                &got,
                Err(Refusal {
                    denial: Denial::StorageUnavailable(_),
                    holds: None,
                    ..
                })
            ),
            "contended: {got:?}"
        );
    }
}

proptest! {
    #![proptest_config(settings())]

    /// Over any stored record, an answer that holds is the answer a fresh
    /// instance gives at every later time before its end (issued then, the
    /// ms counting down), with no write; at its end the answer is another;
    /// and an answer holds exactly when the machine says it does, at the
    /// version read.
    #[test]
    fn a_held_answer_is_the_components_answer_while_it_holds(
        mut cfg in config(),
        fallback_state in fallback(),
        stored in prop::option::of(any_record()),
        t0 in 0..200u64,
        later in vec(0..200u64, 1..8),
    ) {
        cfg.fallback_state = fallback_state;
        let port = Scripted::holding(stored.as_ref(), 5);
        port.reply.set(Reply::Fail);
        let breaker = Breaker::new(KEY.to_owned(), cfg.clone(), &port);
        let rec = stored.clone().unwrap_or_default();
        let version = if stored.is_some() { 5 } else { 0 };
        let got = breaker.acquire(t0);
        let (write, answer) = machine::acquire(&cfg, &rec, t0);
        if write.is_some() {
            // A trial it could not write: the fallback's, holding nothing.
            prop_assert_eq!(holds_of(&got), None);
            return Ok(());
        }
        prop_assert_eq!(port.swaps.get(), 0);
        prop_assert_eq!(
            holds_of(&got),
            machine::holds_until(&answer, t0).map(|until_ms| Holds { version, until_ms })
        );
        let Some(Holds { until_ms, .. }) = holds_of(&got) else {
            return Ok(());
        };
        for dt in later {
            let t = t0 + dt;
            if until_ms.is_some_and(|u| t >= u) {
                continue;
            }
            let fresh = Breaker::new(KEY.to_owned(), cfg.clone(), &port);
            prop_assert_eq!(fresh.acquire(t), reuse(&got, t), "at {}", t);
        }
        prop_assert_eq!(port.swaps.get(), 0, "a held answer wrote");
        if let Some(end) = until_ms {
            let (_, then) = machine::acquire(&cfg, &rec, end);
            prop_assert_ne!(absolute(&then, end), absolute(&decision(&got), t0));
        }
    }
}
