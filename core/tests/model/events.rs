//! State-change events: a new instance takes itself for closed, and every
//! `Change` tells the record's generation and reason, and the time the
//! change was made (the writer's, as a remote observer tells it too).

use tripswitch_core::breaker::{Breaker, Change, Denial, Holds, Refusal, Reported};
use tripswitch_core::config::Config;
use tripswitch_core::machine::{Action, Outcome, Permit, Reason, Record, Rejection, State};

use crate::KEY;
use crate::ports::Scripted;
use crate::storage::{Heard, Shared, check_shared, instances, operate};
use crate::strategies::tiny;

/// The reason a record in `state` was left with by the machine.
fn reason_of(state: State) -> Reason {
    match state {
        State::Closed => Reason::Recovered,
        State::Open => Reason::Tripped,
        State::HalfOpen => Reason::TimeoutElapsed,
        State::ForcedOpen | State::Disabled => Reason::Operator,
    }
}

/// A new instance takes the breaker for closed: its first look, by whatever
/// call, fires one remote event closed -> found if it finds another state,
/// telling the record's generation, reason and change time, and none if it
/// finds closed or nothing; looking again at the same state fires nothing
/// more. (A report that can never write makes no look: see reports.rs.)
#[test]
fn a_new_instance_takes_itself_for_closed() {
    let cfg = Config {
        reset_timeout_ms: 100,
        trial_timeout_ms: 100,
        ..tiny()
    };
    let now = 50;
    let states = [
        State::Closed,
        State::Open,
        State::HalfOpen,
        State::ForcedOpen,
        State::Disabled,
    ];
    let found: Vec<Option<Record>> = std::iter::once(None)
        .chain(states.map(|state| {
            Some(Record {
                state,
                opened_at_ms: Some(0),
                generation: 2,
                reason: reason_of(state),
                changed_at_ms: 40,
                ..Record::default()
            })
        }))
        .collect();
    let remote = |r: &Record| Change {
        previous: State::Closed,
        current: r.state,
        at_ms: 40,
        generation: 2,
        reason: reason_of(r.state),
        remote: true,
    };
    for rec in &found {
        for call in ["snapshot", "acquire", "acquire at version", "report"] {
            let port = Scripted::holding(rec.as_ref(), 7);
            let breaker = Breaker::new(KEY.to_owned(), cfg.clone(), &port);
            match call {
                "snapshot" => drop(breaker.snapshot(now).unwrap()),
                "acquire" => drop(breaker.acquire(now)),
                "acquire at version" => drop(breaker.acquire_at_version(now, 7)),
                _ => {
                    // A success that writes nothing on any of these records,
                    // so the report is one load and no write.
                    let permit = Permit {
                        generation: 2,
                        trial: false,
                        issued_at_ms: now,
                    };
                    let state = rec.as_ref().map_or(State::Closed, |r| r.state);
                    assert_eq!(
                        breaker.report(&permit, Outcome::Success, now),
                        Ok(Reported {
                            tripped: false,
                            state
                        })
                    );
                    assert_eq!(port.swaps.get(), 0, "{call} on {rec:?}: no write");
                }
            }
            assert_eq!(port.loads.get(), 1, "{call} on {rec:?}: one first look");
            let want = match rec {
                Some(r) if r.state != State::Closed => vec![remote(r)],
                _ => vec![],
            };
            assert_eq!(port.events.take(), want, "{call} on {rec:?}");
            breaker.snapshot(now + 1).unwrap();
            assert_eq!(
                port.events.take(),
                vec![],
                "{call} on {rec:?}: a second look"
            );
        }
    }

    // An operator action through a new instance: the remote event of its first
    // look comes before the local one of its write.
    let open = found[2].clone().unwrap();
    let port = Scripted::holding(Some(&open), 7);
    let breaker = Breaker::new(KEY.to_owned(), cfg.clone(), &port);
    breaker.operate(Action::Close, now).unwrap();
    assert_eq!(
        port.events.take(),
        vec![
            remote(&open),
            Change {
                previous: State::Open,
                current: State::Closed,
                at_ms: now,
                generation: 3,
                reason: Reason::Operator,
                remote: false,
            },
        ]
    );
    // On an absent key, only the write's local event.
    let port = Scripted::holding(None, 0);
    let breaker = Breaker::new(KEY.to_owned(), cfg.clone(), &port);
    breaker.operate(Action::ForceOpen, now).unwrap();
    assert_eq!(
        port.events.take(),
        vec![Change {
            previous: State::Closed,
            current: State::ForcedOpen,
            at_ms: now,
            generation: 1,
            reason: Reason::Operator,
            remote: false,
        }]
    );

    // Two instances on one storage: the one that did not trip the circuit
    // learns of it on its first look, at the time it tripped.
    let shared = Shared::new(&cfg, 2, 0);
    let breakers = instances(&cfg, &shared, 2);
    let admission = breakers[0].acquire(0).unwrap();
    breakers[0]
        .report(&admission.permit, Outcome::Failure, 0)
        .unwrap();
    shared.now.set(1);
    assert_eq!(
        breakers[1].acquire(1),
        Err(Refusal {
            denial: Denial::Rejected(Rejection::Open(99)),
            state: State::Open,
            holds: Some(Holds {
                version: 1,
                until_ms: Some(100)
            }),
        })
    );
    check_shared(&shared).unwrap();
    let tripped = Change {
        previous: State::Closed,
        current: State::Open,
        at_ms: 0,
        generation: 1,
        reason: Reason::Tripped,
        remote: false,
    };
    assert_eq!(
        *shared.heard.borrow(),
        vec![
            Heard {
                instance: 0,
                change: tripped,
            },
            Heard {
                instance: 1,
                change: Change {
                    remote: true,
                    ..tripped
                },
            },
        ]
    );
}

/// Through a circuit's whole cycle, written by one instance and watched by
/// another that looks only later: each event tells the generation of the
/// record holding the change, its reason, and the time the writer made it,
/// the watcher's as well as the writer's. A watcher that finds the state it
/// last saw (however many changes since) hears nothing; one that finds the
/// key gone hears a change to closed at the time it looked.
#[test]
fn a_remote_observer_tells_the_writers_time_generation_and_reason() {
    let cfg = Config {
        fail_max: 1,
        reset_timeout_ms: 10,
        success_threshold: 1,
        half_open_max_calls: 1,
        trial_timeout_ms: 10,
        fallback_state: State::Closed,
        ..Config::default()
    };
    let shared = Shared::new(&cfg, 2, 0);
    let breakers = instances(&cfg, &shared, 2);
    let (writer, watcher) = (&breakers[0], &breakers[1]);
    let at = |now: u64| {
        shared.now.set(now);
        now
    };
    let change = |previous, current, at_ms, generation, reason, remote| Change {
        previous,
        current,
        at_ms,
        generation,
        reason,
        remote,
    };
    let heard = |from: usize| -> Vec<Change> {
        let mut heard = shared.heard.borrow_mut();
        let (mine, rest): (Vec<Heard>, Vec<Heard>) =
            heard.drain(..).partition(|h| h.instance == from);
        *heard = rest;
        mine.into_iter().map(|h| h.change).collect()
    };
    let look = |now| watcher.snapshot(at(now)).unwrap();
    use State::{Closed, ForcedOpen, HalfOpen, Open};

    // A trip at 5, seen at 30.
    let permit = writer.acquire(at(5)).unwrap().permit;
    writer.report(&permit, Outcome::Failure, 5).unwrap();
    look(30);
    let trip = change(Closed, Open, 5, 1, Reason::Tripped, false);
    assert_eq!(heard(0), vec![trip]);
    assert_eq!(
        heard(1),
        vec![Change {
            remote: true,
            ..trip
        }]
    );

    // A trial at 31 (the timeout elapsed) fails at 33; seen at 40: open
    // again, nothing to tell, however many changes since.
    let trial = writer.acquire(at(31)).unwrap().permit;
    writer.report(&trial, Outcome::Failure, at(33)).unwrap();
    look(40);
    assert_eq!(heard(1), vec![], "open when last seen, open now");
    assert_eq!(
        heard(0),
        vec![
            change(Open, HalfOpen, 31, 2, Reason::TimeoutElapsed, false),
            change(HalfOpen, Open, 33, 3, Reason::TrialFailed, false),
        ]
    );

    // The next trial at 44, seen at 46; it succeeds at 47, seen at 70.
    let trial = writer.acquire(at(44)).unwrap().permit;
    look(46);
    assert_eq!(
        heard(1),
        vec![change(Open, HalfOpen, 44, 4, Reason::TimeoutElapsed, true)]
    );
    writer.report(&trial, Outcome::Success, at(47)).unwrap();
    look(70);
    assert_eq!(
        heard(1),
        vec![change(HalfOpen, Closed, 47, 5, Reason::Recovered, true)]
    );
    assert_eq!(
        heard(0),
        vec![
            change(Open, HalfOpen, 44, 4, Reason::TimeoutElapsed, false),
            change(HalfOpen, Closed, 47, 5, Reason::Recovered, false),
        ]
    );

    // An operator forces it open at 80, seen at 90.
    operate(&shared, writer, Action::ForceOpen, at(80)).unwrap();
    look(90);
    assert_eq!(
        heard(0),
        vec![change(Closed, ForcedOpen, 80, 6, Reason::Operator, false)]
    );
    assert_eq!(
        heard(1),
        vec![change(Closed, ForcedOpen, 80, 6, Reason::Operator, true)]
    );

    check_shared(&shared).unwrap();

    // The key vanishes; the watcher finds it gone at 100, and tells the
    // time of its look, in the generation the key's next record starts
    // from: one above every generation it has seen (6), so generations never
    // go back. Its snapshot reads the fresh record (generation 0), as every
    // instance does.
    shared.entries.borrow_mut().remove(KEY);
    let gone = look(100);
    assert_eq!((gone.state, gone.version, gone.generation), (Closed, 0, 0));
    assert_eq!(
        heard(1),
        vec![change(ForcedOpen, Closed, 100, 7, Reason::Recovered, true)],
        "an absent key: the time of the look"
    );
}

/// A record of tripswitch 0.1 (format 1) has no reason or change time: an
/// instance finding one tells the reason its state implies and its
/// opened-at as the change time.
#[test]
fn a_format_1_record_tells_the_reason_its_state_implies() {
    let cfg = tiny();
    // Format 1, open, 3 failures, 0 successes, generation 1, opened at 10, no trials.
    let port = Scripted::holding(None, 0);
    port.put(vec![1, 1, 3, 0, 1, 11, 0], 4);
    let breaker = Breaker::new(KEY.to_owned(), cfg, &port);
    let snapshot = breaker.snapshot(10).unwrap();
    assert_eq!((snapshot.state, snapshot.version), (State::Open, 4));
    assert_eq!(
        port.events.take(),
        vec![Change {
            previous: State::Closed,
            current: State::Open,
            at_ms: 10,
            generation: 1,
            reason: Reason::Tripped,
            remote: true,
        }]
    );
}

/// After its key is lost, a newcomer makes the record anew from generation
/// 0; an instance that saw later generations lifts it above them (by one
/// plus its generation) at its next write, and tells the newcomer's changes
/// in the lifted generation, so that no host drops them as old.
#[test]
fn a_record_made_anew_after_its_key_was_lost_is_lifted_above_the_generations_seen() {
    let cfg = Config {
        fail_max: 1,
        reset_timeout_ms: 1_000,
        trial_timeout_ms: 1_000,
        ..tiny()
    };
    let shared = Shared::new(&cfg, 2, 0);
    let breakers = instances(&cfg, &shared, 2);
    let (old, newcomer) = (&breakers[0], &breakers[1]);
    for _ in 0..3 {
        operate(&shared, old, Action::Close, 0).unwrap();
    }
    assert_eq!(shared.known_generation(0), 3);
    shared.heard.borrow_mut().clear();
    // The key vanishes (evicted, flushed, a failover that lost it).
    shared.entries.borrow_mut().remove(KEY);
    shared.now.set(1);
    let permit = newcomer.acquire(1).unwrap().permit;
    assert!(
        newcomer
            .report(&permit, Outcome::Failure, 1)
            .unwrap()
            .tripped
    );
    assert_eq!(shared.stored().1.generation, 1, "made anew");
    shared.now.set(2);
    assert!(old.acquire(2).is_err(), "open");
    let (_, stored) = shared.stored();
    assert_eq!(
        (stored.state, stored.generation),
        (State::Open, 5),
        "3 + 1 + 1"
    );
    let told: Vec<Change> = shared
        .heard
        .borrow()
        .iter()
        .filter(|h| h.instance == 0)
        .map(|h| h.change)
        .collect();
    assert_eq!(
        told,
        vec![Change {
            previous: State::Closed,
            current: State::Open,
            at_ms: 1,
            generation: 5,
            reason: Reason::Tripped,
            remote: true,
        }]
    );
    // The newcomer goes on from the lifted record.
    shared.now.set(1_001);
    let trial = newcomer.acquire(1_001).unwrap().permit;
    assert!(trial.trial && trial.generation == 6, "{trial:?}");
    check_shared(&shared).unwrap();
}
