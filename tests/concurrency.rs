//! Concurrency: threads on one breaker, or on two sharing a storage, count every failure exactly,
//! stop at fail_max, take exactly half_open_max_calls trials, and hear each transition once.
//!
//! (f) and (g) pin down two defects found while writing these: a breaker's
//! own transition told to its listener as remote, and a call admitted in
//! half-open without a trial slot when the writes keep losing races.
//!
//! Every race starts at a `Barrier`; nothing sleeps; time is a virtual clock
//! moved only by the main thread while no other thread is running.

use std::collections::HashMap;
use std::sync::{Barrier, Mutex};
use std::time::Duration;

use tripswitch::{
    CircuitBreaker, Error, MemoryStorage, Outcome, Permit, Rejected, Runtime, State, StateChange,
};
use tripswitch_tests::{
    Faulty, Heard, Pause, Ran, Recorder, T0, advance, builder, clock, fail, hammer,
};

/// How many of the things heard match.
fn count(heard: &[Heard], matches: impl Fn(&Heard) -> bool) -> usize {
    heard.iter().filter(|h| matches(h)).count()
}

/// Checks a run that never reached fail_max: every failure ran and counted.
fn assert_all_counted(results: &[Vec<Ran>], heard: &[Vec<Heard>], expected: usize) {
    let all: Vec<Ran> = results.iter().flatten().copied().collect();
    assert_eq!(all.len(), expected);
    assert!(all.iter().all(|&r| r == Ran::Failed(false)));
    let heard: Vec<Heard> = heard.iter().flatten().cloned().collect();
    assert_eq!(count(&heard, |h| *h == Heard::Failure(false)), expected);
    assert_eq!(count(&heard, |h| *h == Heard::BeforeCall), expected);
    assert_eq!(
        count(&heard, |h| matches!(h, Heard::Error(_))),
        0,
        "no result was lost: {:?}",
        heard.iter().find(|h| matches!(h, Heard::Error(_)))
    );
    assert_eq!(heard.len(), 2 * expected, "nothing else was heard");
}

/// Checks a run past fail_max: the count stops at exactly fail_max with one
/// trip. A call admitted just before the trip still runs (no lock is held
/// around calls), but its late failure is not counted, so at most one call
/// per thread beyond fail_max runs.
fn assert_stopped_at(results: &[Vec<Ran>], heard: &[Vec<Heard>], fail_max: usize) {
    let all: Vec<Ran> = results.iter().flatten().copied().collect();
    let ran = count_ran(&all);
    let tripped = all.iter().filter(|&&r| r == Ran::Failed(true)).count();
    assert_eq!(tripped, 1, "exactly one call opened the circuit");
    assert!(
        (fail_max..fail_max + results.len()).contains(&ran),
        "{ran} calls ran for fail_max {fail_max} on {} threads",
        results.len()
    );
    for calls in results {
        if let Some(at) = calls.iter().position(|&r| r == Ran::Rejected) {
            assert!(
                calls[at..].iter().all(|&r| r == Ran::Rejected),
                "once rejected, a thread stays rejected"
            );
        }
    }
    let heard: Vec<Heard> = heard.iter().flatten().cloned().collect();
    assert_eq!(count(&heard, |h| *h == Heard::BeforeCall), ran);
    assert_eq!(count(&heard, |h| matches!(h, Heard::Failure(_))), ran);
    assert_eq!(count(&heard, |h| *h == Heard::Failure(true)), 1);
    assert_eq!(
        count(&heard, |h| matches!(
            h,
            Heard::Rejected(Rejected::Open { .. })
        )),
        all.len() - ran
    );
    let errors: Vec<&Heard> = heard
        .iter()
        .filter(|h| matches!(h, Heard::Error(_)))
        .collect();
    assert!(errors.is_empty(), "errors told: {errors:?}");
}

fn count_ran(all: &[Ran]) -> usize {
    all.iter().filter(|r| matches!(r, Ran::Failed(_))).count()
}

/// The state changes among the things heard, without the remote flag.
fn transitions(heard: &[Heard]) -> Vec<(State, State)> {
    heard
        .iter()
        .filter_map(|h| match h {
            Heard::Change(c) => Some((c.previous, c.current)),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------
// (a) many threads, one breaker: every failure counts

#[test]
fn eight_threads_count_every_failure_exactly() {
    let clock = clock();
    let heard = Recorder::default();
    let breaker = builder("cc-count", &clock)
        .fail_max(10_000)
        .listener(heard.clone())
        .build()
        .unwrap();
    let results = hammer(&[&breaker], 8, 1000);
    assert_all_counted(&results, &[heard.take()], 8000);
    let snapshot = breaker.snapshot().unwrap();
    assert_eq!((snapshot.state, snapshot.failures), (State::Closed, 8000));
    assert_eq!(snapshot.generation, 0);
}

// ---------------------------------------------------------------------------
// (b) pybreaker's thread test: 3 threads x 2000 failures, fail_max 3000

#[test]
fn three_threads_stop_exactly_at_fail_max() {
    for run in 0..3 {
        let clock = clock();
        let heard = Recorder::default();
        let breaker = builder(&format!("cc-stop-{run}"), &clock)
            .fail_max(3000)
            .listener(heard.clone())
            .build()
            .unwrap();
        let results = hammer(&[&breaker], 3, 2000);
        let told = heard.take();
        assert_stopped_at(&results, std::slice::from_ref(&told), 3000);
        assert_eq!(transitions(&told), vec![(State::Closed, State::Open)]);
        let snapshot = breaker.snapshot().unwrap();
        assert_eq!((snapshot.state, snapshot.failures), (State::Open, 3000));
        assert_eq!(snapshot.opened_at_ms, Some(T0));
        assert_eq!(snapshot.generation, 1, "one transition");
    }
}

// ---------------------------------------------------------------------------
// (c) two breakers sharing one MemoryStorage, four threads each

fn shared_pair(
    name: &str,
    clock: &tripswitch::ManualClock,
    fail_max: u32,
) -> ([CircuitBreaker; 2], [Recorder; 2]) {
    let storage = MemoryStorage::new();
    let heard = [Recorder::default(), Recorder::default()];
    let make = |heard: &Recorder| {
        builder(name, clock)
            .fail_max(fail_max)
            .storage(storage.clone())
            .listener(heard.clone())
            .build()
            .unwrap()
    };
    ([make(&heard[0]), make(&heard[1])], heard)
}

#[test]
fn two_breakers_on_one_storage_count_every_failure_exactly() {
    let clock = clock();
    let ([a, b], heard) = shared_pair("cc-shared-count", &clock, 10_000);
    let results = hammer(&[&a, &b], 4, 500);
    assert_all_counted(&results, &[heard[0].take(), heard[1].take()], 4000);
    for breaker in [&a, &b] {
        let snapshot = breaker.snapshot().unwrap();
        assert_eq!((snapshot.state, snapshot.failures), (State::Closed, 4000));
    }
}

#[test]
fn two_breakers_on_one_storage_stop_exactly_at_fail_max() {
    for run in 0..3 {
        let clock = clock();
        let ([a, b], heard) = shared_pair(&format!("cc-shared-stop-{run}"), &clock, 3000);
        let results = hammer(&[&a, &b], 4, 1000);
        let told = [heard[0].take(), heard[1].take()];
        assert_stopped_at(&results, &told, 3000);
        for breaker in [&a, &b] {
            let snapshot = breaker.snapshot().unwrap();
            assert_eq!((snapshot.state, snapshot.failures), (State::Open, 3000));
            assert_eq!(snapshot.generation, 1, "one transition");
        }
        // The breaker whose call tripped heard it; neither heard it twice.
        let a_heard = transitions(&told[0]);
        let b_heard = transitions(&told[1]);
        assert!(
            a_heard.len() <= 1 && b_heard.len() <= 1,
            "{a_heard:?} {b_heard:?}"
        );
        assert!(!(a_heard.is_empty() && b_heard.is_empty()));
        for heard in a_heard.iter().chain(&b_heard) {
            assert_eq!(*heard, (State::Closed, State::Open));
        }
    }
}

// ---------------------------------------------------------------------------
// (d) after the reset timeout, threads race to acquire

/// Twelve threads on two breakers (one storage) race for the trials, round
/// after round, on a runtime of the test's own (so that the single-threaded
/// set-up always runs on one instance and each breaker's listener is known
/// to have heard closed->open before the race).
fn half_open_race(max_calls: u32) {
    const THREADS: usize = 12;
    let runtime = Runtime::from_bytes(tripswitch::COMPONENT).unwrap();
    for round in 0..25 {
        let clock = clock();
        let storage = MemoryStorage::new();
        let heard = [Recorder::default(), Recorder::default()];
        let make = |heard: &Recorder| {
            builder(&format!("cc-race-{max_calls}-{round}"), &clock)
                .runtime(&runtime)
                .fail_max(1)
                .reset_timeout(Duration::from_millis(100))
                .half_open_max_calls(max_calls)
                .storage(storage.clone())
                .listener(heard.clone())
                .build()
                .unwrap()
        };
        let breakers = [make(&heard[0]), make(&heard[1])];
        breakers[1].snapshot().unwrap();
        fail(&breakers[0]).unwrap_err();
        breakers[1].snapshot().unwrap();
        let opened = |remote| StateChange {
            previous: State::Closed,
            current: State::Open,
            at_ms: T0,
            generation: 1,
            reason: tripswitch::Reason::Tripped,
            remote,
        };
        assert_eq!(heard[0].changes(), vec![opened(false)]);
        assert_eq!(heard[1].changes(), vec![opened(true)]);
        let generation = breakers[0].snapshot().unwrap().generation;
        advance(&clock, 100);
        heard.iter().for_each(|h| drop(h.take()));

        let start = Barrier::new(THREADS);
        let answers: Vec<Result<Permit, Error>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..THREADS)
                .map(|i| {
                    let (breaker, start) = (&breakers[i % 2], &start);
                    scope.spawn(move || {
                        start.wait();
                        breaker.acquire()
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });

        let permits: Vec<&Permit> = answers.iter().filter_map(|a| a.as_ref().ok()).collect();
        assert_eq!(
            permits.len(),
            max_calls as usize,
            "round {round}: {answers:?}"
        );
        assert!(permits.iter().all(|p| p.is_trial()));
        assert!(permits.iter().all(|p| p.generation() == generation + 1));
        for answer in &answers {
            if let Err(error) = answer {
                let full = Error::Rejected(Rejected::HalfOpenFull {
                    retry_after: Duration::from_millis(100),
                });
                assert_eq!(*error, full, "round {round}");
            }
        }
        let snapshot = breakers[0].snapshot().unwrap();
        assert_eq!(snapshot.state, State::HalfOpen);
        assert_eq!(snapshot.trials_in_flight, max_calls);
        assert_eq!(snapshot.generation, generation + 1, "one transition");

        // Each breaker is told of the transition at most once, and the one
        // whose thread wrote it exactly once; at most one is told it is local.
        let changes: Vec<Vec<StateChange>> = heard.iter().map(Recorder::changes).collect();
        for (told, said) in changes.iter().zip(&heard) {
            assert!(told.len() <= 1, "round {round}: {told:?}");
            for change in told {
                assert_eq!(
                    (change.current, change.at_ms, change.generation),
                    (State::HalfOpen, T0 + 100, generation + 1)
                );
                // From the state the telling instance last knew: open, or
                // closed for a new instance's first look (told as remote).
                assert!(
                    change.previous == State::Open
                        || (change.previous == State::Closed && change.remote),
                    "round {round}: {change:?}"
                );
            }
            let heard = said.take();
            let admitted = count(&heard, |h| *h == Heard::BeforeCall);
            let rejected = count(&heard, |h| matches!(h, Heard::Rejected(_)));
            assert_eq!(admitted + rejected, THREADS / 2);
        }
        let told: usize = changes.iter().map(Vec::len).sum();
        let local = changes.iter().flatten().filter(|c| !c.remote).count();
        assert!(told >= 1, "round {round}: nobody heard open->half-open");
        assert!(local <= 1, "round {round}: {changes:?}");
        drop(answers);
        assert_eq!(breakers[0].snapshot().unwrap().trials_in_flight, 0);
    }
}

#[test]
fn racing_threads_get_exactly_one_trial() {
    half_open_race(1);
}

#[test]
fn racing_threads_get_exactly_three_trials() {
    half_open_race(3);
}

// ---------------------------------------------------------------------------
// (e) trials never exceed the limit while threads acquire and report

/// What one thread's first acquire of a round got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Got {
    Closed,
    Trial,
    Open,
    Full,
    Other,
}

/// A small deterministic generator, one per thread.
struct XorShift(u64);

impl XorShift {
    fn outcome(&mut self) -> Outcome {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        match self.0 % 20 {
            0..=8 => Outcome::Failure,
            9..=17 => Outcome::Success,
            _ => Outcome::Ignored,
        }
    }
}

/// Trial permits held right now, by generation, and the most ever held.
#[derive(Default)]
struct Held {
    by_generation: HashMap<u64, u32>,
    most: u32,
}

#[test]
fn trials_never_exceed_the_limit_while_threads_acquire_and_report() {
    const THREADS: usize = 6;
    const ROUNDS: usize = 300;
    const MAX_CALLS: u32 = 2;
    let clock = clock();
    let storage = MemoryStorage::new();
    let heard = [Recorder::default(), Recorder::default()];
    let make = |heard: &Recorder| {
        builder("cc-trials", &clock)
            .fail_max(3)
            .reset_timeout(Duration::from_millis(100))
            .half_open_max_calls(MAX_CALLS)
            .success_threshold(2)
            .storage(storage.clone())
            .listener(heard.clone())
            .build()
            .unwrap()
    };
    let breakers = [make(&heard[0]), make(&heard[1])];
    let held = Mutex::new(Held::default());
    let got = Mutex::new(Vec::new());
    let problems = Mutex::new(Vec::<String>::new());
    let problem = |what: String| problems.lock().unwrap().push(what);
    // Main and workers meet at each phase: start, acquired, checked, done.
    let phase = Barrier::new(THREADS + 1);

    // Takes a trial slot in the tally; false if that makes too many.
    let take = |permit: &Permit| {
        let mut held = held.lock().unwrap();
        let now = held.by_generation.entry(permit.generation()).or_default();
        *now += 1;
        let now = *now;
        held.most = held.most.max(now);
        now <= MAX_CALLS
    };
    let give_back = |permit: &Permit| {
        let mut held = held.lock().unwrap();
        *held.by_generation.get_mut(&permit.generation()).unwrap() -= 1;
    };
    let report = |permit: Permit, outcome: Outcome| {
        if permit.is_trial() {
            give_back(&permit);
        }
        if let Err(error) = permit.report(outcome) {
            problem(format!("report failed: {error}"));
        }
    };

    let mut starts = HashMap::<State, usize>::new();
    std::thread::scope(|scope| {
        for i in 0..THREADS {
            let (breaker, phase, got, take, report) =
                (&breakers[i % 2], &phase, &got, &take, &report);
            let problem = &problem;
            scope.spawn(move || {
                let mut random = XorShift(0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1));
                for round in 0..ROUNDS {
                    phase.wait();
                    // Phase 1: everybody acquires once, at the same time.
                    let first = breaker.acquire();
                    let kind = match &first {
                        Ok(permit) if permit.is_trial() => {
                            if !take(permit) {
                                problem(format!("round {round}: too many trials"));
                            }
                            Got::Trial
                        }
                        Ok(_) => Got::Closed,
                        Err(Error::Rejected(Rejected::Open { .. })) => Got::Open,
                        Err(Error::Rejected(Rejected::HalfOpenFull { .. })) => Got::Full,
                        Err(error) => {
                            problem(format!("round {round}: acquire failed: {error}"));
                            Got::Other
                        }
                    };
                    got.lock().unwrap().push(kind);
                    phase.wait();
                    phase.wait();
                    // Phase 2: report, then acquire and report a few times.
                    if let Ok(permit) = first {
                        report(permit, random.outcome());
                    }
                    for _ in 0..4 {
                        match breaker.acquire() {
                            Ok(permit) => {
                                if permit.is_trial() && !take(&permit) {
                                    problem(format!("round {round}: too many trials"));
                                }
                                report(permit, random.outcome());
                            }
                            Err(Error::Rejected(_)) => {}
                            Err(error) => problem(format!("round {round}: {error}")),
                        }
                    }
                    phase.wait();
                }
            });
        }

        for round in 0..ROUNDS {
            let expected = match breakers[round % 2].snapshot() {
                Ok(snapshot) => {
                    if snapshot.trials_in_flight != 0 {
                        problem(format!("round {round}: {snapshot:?} has trials left"));
                    }
                    snapshot.state
                }
                Err(error) => {
                    problem(format!("round {round}: snapshot failed: {error}"));
                    State::Disabled
                }
            };
            *starts.entry(expected).or_default() += 1;
            phase.wait();
            phase.wait();
            // All hold their first answer: it must be exactly the state's.
            let mut kinds = std::mem::take(&mut *got.lock().unwrap());
            kinds.sort_by_key(|k| *k as u8);
            let wanted: Vec<Got> = match expected {
                State::Closed => vec![Got::Closed; THREADS],
                State::Open => vec![Got::Open; THREADS],
                State::HalfOpen => {
                    let trials = MAX_CALLS as usize;
                    let mut wanted = vec![Got::Trial; trials];
                    wanted.extend(vec![Got::Full; THREADS - trials]);
                    wanted
                }
                _ => Vec::new(),
            };
            if kinds != wanted {
                problem(format!("round {round}: {expected} gave {kinds:?}"));
            }
            phase.wait();
            phase.wait();
            advance(&clock, 40);
        }
    });

    let problems = problems.into_inner().unwrap();
    assert!(
        problems.is_empty(),
        "{} problems, first: {:?}",
        problems.len(),
        &problems[..problems.len().min(10)]
    );
    let held = held.into_inner().unwrap();
    assert_eq!(held.most, MAX_CALLS, "the limit was reached, never passed");
    assert!(held.by_generation.values().all(|&n| n == 0));
    for state in [State::Closed, State::Open, State::HalfOpen] {
        assert!(starts.get(&state).is_some_and(|&n| n > 0), "{starts:?}");
    }
    for heard in &heard {
        let errors = count(&heard.take(), |h| matches!(h, Heard::Error(_)));
        assert_eq!(errors, 0);
    }
}

// ---------------------------------------------------------------------------
// (f) a breaker's own transition is local, whichever of its instances tells it

/// Thread 1 writes open->half-open and, before it tells the listeners,
/// thread 2 (on a second pooled instance that had seen the circuit open)
/// reads half-open. Both calls are this one breaker's: its listener hears
/// the transition once. (Which of the two tells it decides its `remote`
/// flag: here thread 2 tells it first, as remote; the README says so.)
#[test]
fn a_transition_seen_first_by_another_of_its_instances_is_told_once() {
    let runtime = Runtime::from_bytes(tripswitch::COMPONENT).unwrap();
    let clock = clock();
    // Once armed, the storage holds the next matching call (after doing it)
    // until the test lets it go, so that another call runs in between on
    // another pooled instance.
    let storage = Faulty::new();
    let heard = Recorder::default();
    let breaker = builder("cc-own-transition", &clock)
        .runtime(&runtime)
        .fail_max(1)
        .reset_timeout(Duration::from_millis(100))
        .storage(storage.clone())
        .listener(heard.clone())
        .build()
        .unwrap();
    fail(&breaker).unwrap_err();

    // A second instance: while one snapshot holds the first inside its load,
    // another snapshot has to make a new one; both have now seen "open".
    std::thread::scope(|scope| {
        storage.pause(Pause::AfterLoad);
        let held = scope.spawn(|| breaker.snapshot().unwrap().state);
        storage.wait_paused();
        assert_eq!(breaker.snapshot().unwrap().state, State::Open);
        storage.release();
        assert_eq!(held.join().unwrap(), State::Open);
    });

    advance(&clock, 100);
    let (trial, other) = std::thread::scope(|scope| {
        storage.pause(Pause::AfterWrite);
        let writer = scope.spawn(|| breaker.acquire());
        storage.wait_paused();
        let other = breaker.acquire();
        storage.release();
        (writer.join().unwrap(), other)
    });
    assert!(trial.unwrap().is_trial());
    assert!(matches!(
        other,
        Err(Error::Rejected(Rejected::HalfOpenFull { .. }))
    ));
    let changes: Vec<(State, State, u64)> = heard
        .changes()
        .iter()
        .map(|c| (c.previous, c.current, c.at_ms))
        .collect();
    assert_eq!(
        changes,
        vec![
            (State::Closed, State::Open, T0),
            (State::Open, State::HalfOpen, T0 + 100),
        ]
    );
}

// ---------------------------------------------------------------------------
// (g) a lost race for the trial slot admits no call beyond the trials

/// Half-open with its one trial slot free: taking the slot needs a write. If
/// every write loses a race the call cannot have the slot, and must not run
/// as an untracked extra call either (the storage itself never failed).
#[test]
fn half_open_admits_no_call_beyond_its_trials_when_every_write_loses_a_race() {
    let clock = clock();
    let storage = Faulty::new();
    let breaker = builder("cc-contended", &clock)
        .fail_max(1)
        .reset_timeout(Duration::from_millis(100))
        .storage(storage.clone())
        .build()
        .unwrap();
    fail(&breaker).unwrap_err();
    advance(&clock, 100);
    breaker.acquire().unwrap().ignore().unwrap();
    let snapshot = breaker.snapshot().unwrap();
    assert_eq!(
        (snapshot.state, snapshot.trials_in_flight),
        (State::HalfOpen, 0)
    );

    // From now on another writer always gets in just before each
    // compare-and-swap (as on a very busy shared store).
    storage.set_contending(true);
    let mut ran = false;
    let answer = breaker.call(|| {
        ran = true;
        Ok::<_, ()>(())
    });
    assert!(
        !ran,
        "a call ran in half-open without a trial slot: {answer:?}"
    );
    assert_eq!(breaker.snapshot().unwrap().trials_in_flight, 0);
}
