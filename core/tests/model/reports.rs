//! What a report reads, writes and returns: a decision to write nothing is
//! confirmed by a load, a report that can never write touches no storage,
//! and `Reported` says whether the report tripped the circuit and the state
//! after it.

use tripswitch_core::breaker::{Breaker, BreakerError, Reported};
use tripswitch_core::config::Config;
use tripswitch_core::machine::{self, Action, Outcome, Permit, Record, State};

use crate::KEY;
use crate::ports::{Reply, Scripted};
use crate::storage::{Heard, Shared, check_shared, instances, operate};
use crate::strategies::tiny;

/// Once a bug: `Breaker::report` decided on its cached record when that was
/// at least as new as the permit; a success in closed with a cached count of
/// 0 wrote nothing, although another instance had counted failures since.
/// The reset was lost: failure, success, failure tripped fail-max = 2. Now a
/// decision to write nothing is confirmed with one load, and the success
/// resets the count.
#[test]
fn a_success_reported_through_a_stale_instance_resets_the_count() {
    let cfg = Config {
        fail_max: 2,
        reset_timeout_ms: 1_000,
        trial_timeout_ms: 1_000,
        ..tiny()
    };
    let shared = Shared::new(&cfg, 2, 0);
    let breakers = instances(&cfg, &shared, 2);
    let (a, b) = (&breakers[0], &breakers[1]);
    let late = b.acquire(0).unwrap();
    let first = a.acquire(0).unwrap();
    a.report(&first.permit, Outcome::Failure, 1).unwrap();
    assert_eq!(shared.stored().1.failures, 1);
    let loads = shared.loads(1);
    assert_eq!(
        b.report(&late.permit, Outcome::Success, 2),
        Ok(Reported {
            tripped: false,
            state: State::Closed
        })
    );
    assert_eq!(
        shared.loads(1),
        loads + 1,
        "the cached decision is confirmed by one load"
    );
    assert_eq!(
        shared.stored().1.failures,
        0,
        "a success reported after a failure resets the count"
    );
    let second = a.acquire(3).unwrap();
    assert_eq!(
        a.report(&second.permit, Outcome::Failure, 3),
        Ok(Reported {
            tripped: false,
            state: State::Closed
        }),
        "no two consecutive failures"
    );
    assert_eq!(shared.stored().1.state, State::Closed);
    check_shared(&shared).unwrap();
}

/// Once a bug: `Breaker::report` dropped a permit whose generation was older
/// than its cached record's without a storage call. But the cache can be
/// newer than the storage: after the key vanished, the missing record reads
/// as generation 0, and the failures of permits issued on it, reported
/// through an instance that had cached generation 1, were all lost; the
/// circuit never opened. Now the cached decision to write nothing is
/// confirmed with one load, which finds the key gone, and the failure counts.
#[test]
fn a_failure_reported_after_the_key_vanished_counts() {
    let cfg = Config {
        fail_max: 2,
        reset_timeout_ms: 1_000,
        trial_timeout_ms: 1_000,
        ..tiny()
    };
    let shared = Shared::new(&cfg, 2, 0);
    let breakers = instances(&cfg, &shared, 2);
    let (a, b) = (&breakers[0], &breakers[1]);
    operate(&shared, a, Action::Close, 0).unwrap();
    assert_eq!(shared.known_generation(0), 1);
    // The key vanishes (expired, flushed): `a` still caches generation 1.
    shared.entries.borrow_mut().remove(KEY);

    shared.now.set(1);
    let first = b.acquire(1).unwrap();
    assert_eq!(first.permit.generation, 0, "issued on the missing record");
    let loads = shared.loads(0);
    a.report(&first.permit, Outcome::Failure, 1).unwrap();
    assert_eq!(
        shared.loads(0),
        loads + 1,
        "the cache showed the permit stale: one load confirms it"
    );
    let (_, stored) = shared.stored();
    assert_eq!(
        (stored.state, stored.failures, stored.generation),
        (State::Closed, 1, 2),
        "the failure counts, in a record that starts above generation 1"
    );

    shared.now.set(2);
    let second = b.acquire(2).unwrap();
    let loads = shared.loads(0);
    assert_eq!(
        a.report(&second.permit, Outcome::Failure, 2),
        Ok(Reported {
            tripped: true,
            state: State::Open
        })
    );
    assert_eq!(shared.loads(0), loads, "the cache now says to write");
    let (_, stored) = shared.stored();
    assert_eq!(
        (stored.state, stored.generation, stored.opened_at_ms),
        (State::Open, 3, Some(2)),
        "the fail-max-th failure opens"
    );
    check_shared(&shared).unwrap();
    let local: Vec<Heard> = shared
        .heard
        .borrow()
        .iter()
        .filter(|h| !h.change.remote)
        .cloned()
        .collect();
    assert_eq!(local.len(), 1, "{local:?}");
    let trip = local[0].change;
    assert_eq!(
        (local[0].instance, trip.previous, trip.current, trip.at_ms),
        (0, State::Closed, State::Open, 2)
    );
}

/// A permit the instance's cache shows stale (older than the cached
/// generation) is no longer dropped unseen: like every decision to write
/// nothing made from the cache, it is confirmed with one load, and writes
/// nothing. Only a report that can never write (a non-trial `ignored`)
/// skips the storage.
#[test]
fn a_report_the_cache_shows_stale_is_confirmed_by_one_load() {
    let cfg = tiny();
    let shared = Shared::new(&cfg, 1, 0);
    let breakers = instances(&cfg, &shared, 1);
    let breaker = &breakers[0];
    let old = breaker.acquire(0).unwrap().permit;
    operate(&shared, breaker, Action::Close, 0).unwrap();
    assert!(
        shared.known_generation(0) > old.generation,
        "the cache shows the permit stale"
    );
    let old_trial = Permit { trial: true, ..old };
    let stored = shared.stored();
    for (permit, outcome, loads) in [
        (&old, Outcome::Success, 1),
        (&old, Outcome::Failure, 1),
        (&old_trial, Outcome::Success, 1),
        (&old_trial, Outcome::Failure, 1),
        (&old_trial, Outcome::Ignored, 1),
        (&old, Outcome::Ignored, 0),
    ] {
        let before = shared.loads(0);
        let case = format!("{outcome:?} of {permit:?}");
        assert_eq!(
            breaker.report(permit, outcome, 1),
            Ok(Reported {
                tripped: false,
                state: State::Closed
            }),
            "{case}"
        );
        assert_eq!(shared.loads(0) - before, loads, "{case}: loads");
        assert_eq!(
            shared.stored(),
            stored,
            "{case}: a stale permit writes nothing"
        );
    }
    check_shared(&shared).unwrap();
}

/// A report that can never write, a non-trial `ignored`, returns at once,
/// telling the state the instance last saw (closed before its first look):
/// no load, no compare-and-swap, no event, whatever is stored, whether the
/// instance has a cache or not, whatever the permit's generation, and even
/// when the storage fails every call. A trial's `ignored` frees its slot, so
/// it does go to the storage.
#[test]
fn a_report_that_can_never_write_touches_no_storage() {
    let cfg = tiny();
    let open = Record {
        state: State::Open,
        opened_at_ms: Some(0),
        generation: 3,
        ..Record::default()
    };
    let permit = |generation, trial| Permit {
        generation,
        trial,
        issued_at_ms: 5,
    };
    for stored in [None, Some(&open)] {
        for warm in [false, true] {
            for failing in [false, true] {
                let case = format!("stored {stored:?}, warm {warm}, failing {failing}");
                let port = Scripted::holding(stored, 4);
                let breaker = Breaker::new(KEY.to_owned(), cfg.clone(), &port);
                let stored_state = stored.map_or(State::Closed, |r| r.state);
                let seen = if warm {
                    breaker.snapshot(0).unwrap();
                    port.events.take();
                    stored_state
                } else {
                    State::Closed
                };
                port.load_fails.set(failing);
                if failing {
                    port.reply.set(Reply::Fail);
                }
                let calls = (port.loads.get(), port.swaps.get());
                for generation in [0, 2, 3, 4] {
                    let never = permit(generation, false);
                    assert!(machine::report_never_writes(&never, Outcome::Ignored));
                    assert_eq!(
                        breaker.report(&never, Outcome::Ignored, 5),
                        Ok(Reported {
                            tripped: false,
                            state: seen
                        }),
                        "{case}"
                    );
                }
                assert_eq!((port.loads.get(), port.swaps.get()), calls, "{case}");
                assert_eq!(port.events.take(), vec![], "{case}");

                // A trial's ignored, of the stored generation: not a
                // never-writing report. No slot is held, so it writes
                // nothing, and that is confirmed by one load.
                let trial = permit(3, true);
                assert!(!machine::report_never_writes(&trial, Outcome::Ignored));
                let got = breaker.report(&trial, Outcome::Ignored, 5);
                assert_eq!(
                    (port.loads.get(), port.swaps.get()),
                    (calls.0 + 1, calls.1),
                    "{case}: a trial's ignored"
                );
                if failing {
                    assert!(
                        matches!(&got, Err(BreakerError::Storage(m)) if m.contains("storage load failed")),
                        "{case}: {got:?}"
                    );
                } else {
                    assert_eq!(
                        got,
                        Ok(Reported {
                            tripped: false,
                            state: stored_state
                        }),
                        "{case}"
                    );
                }
            }
        }
    }
}

/// `Reported` through one instance: `tripped` exactly for the report that
/// opened the circuit (the fail-max-th failure, a failed trial), and the
/// stored state after the report, whether it wrote or not.
#[test]
fn a_report_says_whether_it_tripped_and_the_state_after() {
    let cfg = Config {
        fail_max: 2,
        reset_timeout_ms: 10,
        success_threshold: 1,
        half_open_max_calls: 2,
        trial_timeout_ms: 10,
        fallback_state: State::Closed,
        ..Config::default()
    };
    let shared = Shared::new(&cfg, 2, 0);
    let breakers = instances(&cfg, &shared, 2);
    let (a, b) = (&breakers[0], &breakers[1]);
    let reported = |tripped, state| Ok(Reported { tripped, state });
    let at = |now: u64| {
        shared.now.set(now);
        now
    };

    let first = a.acquire(at(0)).unwrap().permit;
    let second = a.acquire(0).unwrap().permit;
    let third = a.acquire(0).unwrap().permit;
    assert_eq!(
        a.report(&first, Outcome::Success, 0),
        reported(false, State::Closed)
    );
    assert_eq!(
        a.report(&first, Outcome::Failure, at(1)),
        reported(false, State::Closed),
        "counted"
    );
    assert_eq!(
        b.report(&second, Outcome::Failure, at(2)),
        reported(true, State::Open),
        "the trip"
    );
    assert_eq!(
        a.report(&third, Outcome::Failure, at(3)),
        reported(false, State::Open),
        "a stale permit, decided afresh after a conflict"
    );

    let trial = a.acquire(at(12)).unwrap().permit;
    let other = a.acquire(12).unwrap().permit;
    assert!(trial.trial && other.trial);
    assert_eq!(
        a.report(&trial, Outcome::Ignored, at(13)),
        reported(false, State::HalfOpen),
        "a freed slot"
    );
    assert_eq!(
        b.report(&other, Outcome::Failure, at(14)),
        reported(true, State::Open),
        "a failed trial"
    );

    let trial = b.acquire(at(24)).unwrap().permit;
    assert_eq!(
        a.report(&trial, Outcome::Success, at(25)),
        reported(false, State::Closed),
        "recovered"
    );
    assert_eq!(
        a.report(&trial, Outcome::Failure, at(26)),
        reported(false, State::Closed),
        "a trial of a generation gone counts nothing"
    );

    operate(&shared, b, Action::Disable, at(27)).unwrap();
    let disabled = a.acquire(27).unwrap().permit;
    assert_eq!(
        a.report(&disabled, Outcome::Failure, at(28)),
        reported(false, State::Disabled)
    );
    operate(&shared, b, Action::ForceOpen, at(29)).unwrap();
    assert_eq!(
        a.report(&disabled, Outcome::Failure, at(30)),
        reported(false, State::ForcedOpen),
        "the state after, as stored, though this instance last saw disabled"
    );
    check_shared(&shared).unwrap();
}
