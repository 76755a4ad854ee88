//! pybreaker 1.4.1's test suite, behaviour by behaviour (Redis aside), and its known bugs 1–8
//! shown absent, through the real component on a virtual clock.
//!
//! The behaviours are the "Its test suite, as behaviours to keep" list of
//! `pybreaker-semantics.md`; `throw_new_error_on_trip` maps to
//! `CallError::Failed { tripped: true }`. Each `bugN_*` test shows that
//! pybreaker's known bug N does not happen here.

use std::cell::Cell;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::{Arc, Barrier, mpsc};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tripswitch::{
    CallError, CircuitBreaker, Error, MemoryStorage, Reason, Rejected, State, StateChange,
};
use tripswitch_tests::{
    Boom, Faulty, Heard, Ran, Recorder, T0, advance, builder, clock, fail, hammer, succeed,
};

/// A state change as the breaker's own listener hears it.
fn local(previous: State, current: State, at: u64, generation: u64, reason: Reason) -> StateChange {
    StateChange {
        previous,
        current,
        at_ms: T0 + at,
        generation,
        reason,
        remote: false,
    }
}

/// The failure count the storage holds now.
fn failures(breaker: &CircuitBreaker) -> u32 {
    breaker.snapshot().unwrap().failures
}

// ---------------------------------------------------------------------------
// pybreaker's test suite

/// test_successful_call: the value comes back; fail counter 0; closed.
#[test]
fn a_successful_call_returns_its_value() {
    let clock = clock();
    let breaker = builder("py-success", &clock).build().unwrap();
    assert_eq!(breaker.call(|| Ok::<_, Boom>(42)).unwrap(), 42);
    let snapshot = breaker.snapshot().unwrap();
    assert_eq!((snapshot.state, snapshot.failures), (State::Closed, 0));
}

/// test_one_failed_call: the original error comes back; counter 1; still closed.
#[test]
fn one_failure_returns_the_original_error_and_counts_one() {
    let clock = clock();
    let breaker = builder("py-one-failure", &clock).build().unwrap();
    match fail(&breaker) {
        Err(CallError::Failed {
            error: Boom,
            tripped: false,
        }) => {}
        other => panic!("expected the call's own error, got {other:?}"),
    }
    let snapshot = breaker.snapshot().unwrap();
    assert_eq!((snapshot.state, snapshot.failures), (State::Closed, 1));
}

/// test_one_successful_call_after_failed_call: a success resets the counter.
#[test]
fn a_success_after_a_failure_resets_the_counter() {
    let clock = clock();
    let breaker = builder("py-reset", &clock).fail_max(2).build().unwrap();
    fail(&breaker).unwrap_err();
    assert_eq!(failures(&breaker), 1);
    succeed(&breaker).unwrap();
    assert_eq!(failures(&breaker), 0);
    // The reset is real: it again takes two failures to open.
    fail(&breaker).unwrap_err();
    assert_eq!(breaker.state().unwrap(), State::Closed);
    fail(&breaker).unwrap_err();
    assert_eq!(breaker.state().unwrap(), State::Open);
}

/// test_several_failed_calls: with fail_max 3 the first two failures return
/// the original error, the third opens, the next call is rejected unrun.
#[test]
fn the_fail_max_th_failure_opens_and_the_next_call_does_not_run() {
    let clock = clock();
    let breaker = builder("py-fail-max", &clock).fail_max(3).build().unwrap();
    let ran = Cell::new(0);
    let attempt = || {
        breaker.call(|| {
            ran.set(ran.get() + 1);
            Err::<(), _>(Boom)
        })
    };
    for expected in 1..=2 {
        assert!(matches!(
            attempt(),
            Err(CallError::Failed {
                error: Boom,
                tripped: false
            })
        ));
        let snapshot = breaker.snapshot().unwrap();
        assert_eq!(
            (snapshot.state, snapshot.failures),
            (State::Closed, expected)
        );
    }
    assert!(matches!(
        attempt(),
        Err(CallError::Failed {
            error: Boom,
            tripped: true
        })
    ));
    assert_eq!(breaker.state().unwrap(), State::Open);
    assert_eq!(ran.get(), 3);
    assert!(matches!(
        attempt(),
        Err(CallError::Rejected(Rejected::Open { .. }))
    ));
    assert_eq!(ran.get(), 3, "a rejected call does not run");
}

/// throw_new_error_on_trip: the tripping call reports
/// `Failed { tripped: true }`, still carrying (and chaining to) its own error.
#[test]
fn the_tripping_call_reports_tripped_with_its_own_error() {
    let clock = clock();
    let heard = Recorder::default();
    let breaker = builder("py-trip-error", &clock)
        .fail_max(2)
        .listener(heard.clone())
        .build()
        .unwrap();
    let disk_full = || breaker.call(|| Err::<(), _>(std::io::Error::other("disk full")));

    let first = disk_full().unwrap_err();
    assert!(matches!(first, CallError::Failed { tripped: false, .. }));
    assert_eq!(first.to_string(), "disk full");

    let tripping = disk_full().unwrap_err();
    assert!(matches!(tripping, CallError::Failed { tripped: true, .. }));
    assert!(!tripping.is_rejected());
    assert_eq!(tripping.retry_after(), None);
    assert_eq!(
        tripping.to_string(),
        "disk full (this failure opened the circuit)"
    );
    let source = std::error::Error::source(&tripping).expect("the cause is chained");
    assert_eq!(source.to_string(), "disk full");
    assert_eq!(tripping.into_inner().unwrap().to_string(), "disk full");
    let failures: Vec<Heard> = heard
        .take()
        .into_iter()
        .filter(|h| matches!(h, Heard::Failure(_)))
        .collect();
    assert_eq!(failures, vec![Heard::Failure(false), Heard::Failure(true)]);
}

/// test_failed_call_after_timeout: after reset_timeout a failed trial re-opens.
#[test]
fn a_failed_trial_after_the_timeout_reopens() {
    let clock = clock();
    let breaker = builder("py-trial-fails", &clock)
        .fail_max(3)
        .reset_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    for _ in 0..3 {
        fail(&breaker).unwrap_err();
    }
    assert_eq!(breaker.state().unwrap(), State::Open);
    advance(&clock, 500);
    let ran = Cell::new(0);
    let trial = breaker.call(|| {
        ran.set(ran.get() + 1);
        Err::<(), _>(Boom)
    });
    assert!(matches!(
        trial,
        Err(CallError::Failed {
            error: Boom,
            tripped: true
        })
    ));
    assert_eq!(ran.get(), 1);
    let snapshot = breaker.snapshot().unwrap();
    assert_eq!(snapshot.state, State::Open);
    assert_eq!(snapshot.opened_at_ms, Some(T0 + 500), "a new open period");
    assert_eq!(snapshot.retry_after, Some(Duration::from_millis(500)));
}

/// test_successful_after_wait: a successful trial closes; it ran exactly once.
#[test]
fn a_successful_trial_after_the_timeout_closes_and_runs_once() {
    let clock = clock();
    let breaker = builder("py-trial-succeeds", &clock)
        .fail_max(1)
        .reset_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    fail(&breaker).unwrap_err();
    advance(&clock, 499);
    assert!(fail(&breaker).unwrap_err().is_rejected());
    advance(&clock, 1);
    let ran = Cell::new(0);
    let value = breaker.call(|| {
        ran.set(ran.get() + 1);
        Ok::<_, Boom>("trial")
    });
    assert_eq!(value.unwrap(), "trial");
    assert_eq!(ran.get(), 1, "the guarded function ran exactly once");
    let snapshot = breaker.snapshot().unwrap();
    assert_eq!((snapshot.state, snapshot.failures), (State::Closed, 0));
}

/// test_failed_call_when_halfopen: a manual half_open, then a failure re-opens.
#[test]
fn manual_half_open_then_a_failure_reopens() {
    let clock = clock();
    let breaker = builder("py-manual-half-open-fail", &clock)
        .reset_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    breaker.half_open().unwrap();
    assert_eq!(breaker.state().unwrap(), State::HalfOpen);
    advance(&clock, 10);
    assert!(matches!(
        fail(&breaker),
        Err(CallError::Failed { tripped: true, .. })
    ));
    let snapshot = breaker.snapshot().unwrap();
    assert_eq!(snapshot.state, State::Open);
    assert_eq!(snapshot.opened_at_ms, Some(T0 + 10));
    assert!(fail(&breaker).unwrap_err().is_rejected());
}

/// test_successful_call_when_halfopen: a manual half_open, then a success closes.
#[test]
fn manual_half_open_then_a_success_closes() {
    let clock = clock();
    let breaker = builder("py-manual-half-open-ok", &clock).build().unwrap();
    breaker.half_open().unwrap();
    assert_eq!(breaker.state().unwrap(), State::HalfOpen);
    assert_eq!(breaker.call(|| Ok::<_, Boom>(7)).unwrap(), 7);
    let snapshot = breaker.snapshot().unwrap();
    assert_eq!((snapshot.state, snapshot.failures), (State::Closed, 0));
}

/// test_close: a manual close resets the counter (from closed and from open).
#[test]
fn manual_close_resets_the_counter() {
    let clock = clock();
    let breaker = builder("py-close", &clock).fail_max(3).build().unwrap();
    fail(&breaker).unwrap_err();
    fail(&breaker).unwrap_err();
    assert_eq!(failures(&breaker), 2);
    breaker.close().unwrap();
    assert_eq!(failures(&breaker), 0);
    fail(&breaker).unwrap_err();
    fail(&breaker).unwrap_err();
    assert_eq!(
        breaker.state().unwrap(),
        State::Closed,
        "the count restarted at 0"
    );

    fail(&breaker).unwrap_err();
    assert_eq!(breaker.state().unwrap(), State::Open);
    breaker.close().unwrap();
    let snapshot = breaker.snapshot().unwrap();
    assert_eq!((snapshot.state, snapshot.failures), (State::Closed, 0));
    succeed(&breaker).unwrap();
}

/// test_transition_events: closed->open, open->half-open, half-open->closed, in order.
#[test]
fn transition_events_come_in_order() {
    let clock = clock();
    let heard = Recorder::default();
    let breaker = builder("py-transitions", &clock)
        .fail_max(1)
        .reset_timeout(Duration::from_millis(100))
        .listener(heard.clone())
        .build()
        .unwrap();
    assert!(heard.changes().is_empty());
    fail(&breaker).unwrap_err();
    assert_eq!(
        heard.changes(),
        vec![local(State::Closed, State::Open, 0, 1, Reason::Tripped)]
    );
    advance(&clock, 100);
    succeed(&breaker).unwrap();
    assert_eq!(
        heard.changes(),
        vec![
            local(State::Closed, State::Open, 0, 1, Reason::Tripped),
            local(State::Open, State::HalfOpen, 100, 2, Reason::TimeoutElapsed),
            local(State::HalfOpen, State::Closed, 100, 3, Reason::Recovered),
        ]
    );
}

/// test_call_events: before_call, then success or failure; a rejected call
/// hears no before_call.
#[test]
fn call_events_before_call_success_failure() {
    let clock = clock();
    let heard = Recorder::default();
    let breaker = builder("py-call-events", &clock)
        .fail_max(2)
        .listener(heard.clone())
        .build()
        .unwrap();
    succeed(&breaker).unwrap();
    assert_eq!(heard.take(), vec![Heard::BeforeCall, Heard::Success]);
    fail(&breaker).unwrap_err();
    assert_eq!(heard.take(), vec![Heard::BeforeCall, Heard::Failure(false)]);
    fail(&breaker).unwrap_err();
    let tripped = heard.take();
    assert_eq!(tripped[..2], [Heard::BeforeCall, Heard::Failure(true)]);
    fail(&breaker).unwrap_err();
    let rejected = heard.take();
    assert!(
        matches!(rejected[..], [Heard::Rejected(Rejected::Open { .. })]),
        "{rejected:?}"
    );
}

/// The error an exclusion matches by type.
#[derive(Debug, PartialEq, Eq)]
struct NotFound;

/// test_excluded_exception (by type): an excluded error is returned, and
/// counts as a success.
#[test]
fn an_error_excluded_by_type_resets_the_counter() {
    let clock = clock();
    let heard = Recorder::default();
    let breaker = builder("py-exclude-type", &clock)
        .fail_max(2)
        .exclude::<NotFound>(|_| true)
        .listener(heard.clone())
        .build()
        .unwrap();
    fail(&breaker).unwrap_err();
    assert_eq!(failures(&breaker), 1);
    heard.take();
    match breaker.call(|| Err::<(), _>(NotFound)) {
        Err(CallError::Failed {
            error: NotFound,
            tripped: false,
        }) => {}
        other => panic!("the excluded error is still returned, got {other:?}"),
    }
    assert_eq!(heard.take(), vec![Heard::BeforeCall, Heard::Success]);
    assert_eq!(failures(&breaker), 0, "excluded counts as a success");
    for _ in 0..5 {
        breaker.call(|| Err::<(), _>(NotFound)).unwrap_err();
    }
    assert_eq!(breaker.state().unwrap(), State::Closed);
    fail(&breaker).unwrap_err();
    fail(&breaker).unwrap_err();
    assert_eq!(
        breaker.state().unwrap(),
        State::Open,
        "other types still count"
    );
}

/// test_excluded_callable_exception (by predicate): only the errors the
/// predicate picks are excluded.
#[test]
fn an_error_excluded_by_predicate_resets_the_counter() {
    use std::io::{Error as IoError, ErrorKind};
    let clock = clock();
    let breaker = builder("py-exclude-predicate", &clock)
        .fail_max(2)
        .exclude::<IoError>(|e| e.kind() == ErrorKind::NotFound)
        .build()
        .unwrap();
    let io = |kind: ErrorKind| breaker.call(|| Err::<(), _>(IoError::from(kind)));
    io(ErrorKind::PermissionDenied).unwrap_err();
    assert_eq!(failures(&breaker), 1);
    io(ErrorKind::NotFound).unwrap_err();
    assert_eq!(failures(&breaker), 0);
    io(ErrorKind::PermissionDenied).unwrap_err();
    assert!(matches!(
        io(ErrorKind::PermissionDenied),
        Err(CallError::Failed { tripped: true, .. })
    ));
}

/// test_excluded_callable_and_types_exception (mixed): a type and a predicate
/// on one breaker; each excludes its own errors.
#[test]
fn errors_excluded_by_type_and_by_predicate_together() {
    use std::io::{Error as IoError, ErrorKind};
    let clock = clock();
    let breaker = builder("py-exclude-mixed", &clock)
        .fail_max(2)
        .exclude::<NotFound>(|_| true)
        .exclude::<IoError>(|e| e.kind() == ErrorKind::Interrupted)
        .build()
        .unwrap();
    let io = |kind: ErrorKind| breaker.call(|| Err::<(), _>(IoError::from(kind)));
    fail(&breaker).unwrap_err();
    breaker.call(|| Err::<(), _>(NotFound)).unwrap_err();
    assert_eq!(failures(&breaker), 0, "excluded by type");
    io(ErrorKind::TimedOut).unwrap_err();
    assert_eq!(failures(&breaker), 1);
    io(ErrorKind::Interrupted).unwrap_err();
    assert_eq!(failures(&breaker), 0, "excluded by predicate");
    io(ErrorKind::TimedOut).unwrap_err();
    fail(&breaker).unwrap_err();
    assert_eq!(breaker.state().unwrap(), State::Open);
}

/// test_success_threshold: two trial successes keep it half-open, the third
/// closes; a failure after two trial successes re-opens and resets them.
#[test]
fn success_threshold_three() {
    let clock = clock();
    let breaker = builder("py-success-threshold", &clock)
        .fail_max(1)
        .reset_timeout(Duration::from_millis(100))
        .success_threshold(3)
        .build()
        .unwrap();
    fail(&breaker).unwrap_err();
    advance(&clock, 100);
    for expected in 1..=2 {
        succeed(&breaker).unwrap();
        let snapshot = breaker.snapshot().unwrap();
        assert_eq!(
            (snapshot.state, snapshot.successes),
            (State::HalfOpen, expected)
        );
    }
    succeed(&breaker).unwrap();
    let snapshot = breaker.snapshot().unwrap();
    assert_eq!((snapshot.state, snapshot.successes), (State::Closed, 0));

    fail(&breaker).unwrap_err();
    advance(&clock, 100);
    succeed(&breaker).unwrap();
    succeed(&breaker).unwrap();
    assert_eq!(breaker.snapshot().unwrap().successes, 2);
    assert!(matches!(
        fail(&breaker),
        Err(CallError::Failed { tripped: true, .. })
    ));
    let snapshot = breaker.snapshot().unwrap();
    assert_eq!((snapshot.state, snapshot.successes), (State::Open, 0));
    assert_eq!(snapshot.opened_at_ms, Some(T0 + 200));
    // The next half-open period starts from zero successes.
    advance(&clock, 100);
    succeed(&breaker).unwrap();
    succeed(&breaker).unwrap();
    assert_eq!(breaker.state().unwrap(), State::HalfOpen);
    succeed(&breaker).unwrap();
    assert_eq!(breaker.state().unwrap(), State::Closed);
}

/// test_create_new_state (memory storage with a state): a breaker built on a
/// storage that already holds a state takes it, with its counters and opened_at.
#[test]
fn a_new_breaker_takes_the_stored_state_counters_and_opened_at() {
    let clock = clock();
    let storage = MemoryStorage::new();
    let make = |name: &str| {
        builder(name, &clock)
            .fail_max(3)
            .reset_timeout(Duration::from_millis(1000))
            .success_threshold(3)
            .storage(storage.clone())
            .build()
            .unwrap()
    };

    // Closed with two failures: the newcomer trips on the next one.
    let first = make("py-stored-closed");
    fail(&first).unwrap_err();
    fail(&first).unwrap_err();
    drop(first);
    let second = make("py-stored-closed");
    let snapshot = second.snapshot().unwrap();
    assert_eq!((snapshot.state, snapshot.failures), (State::Closed, 2));
    assert!(matches!(
        fail(&second),
        Err(CallError::Failed { tripped: true, .. })
    ));

    // Open since T0 + 100: the newcomer waits out the same period.
    advance(&clock, 100);
    let first = make("py-stored-open");
    for _ in 0..3 {
        fail(&first).unwrap_err();
    }
    advance(&clock, 400);
    let heard = Recorder::default();
    let second = builder("py-stored-open", &clock)
        .fail_max(3)
        .reset_timeout(Duration::from_millis(1000))
        .storage(storage.clone())
        .listener(heard.clone())
        .build()
        .unwrap();
    let snapshot = second.snapshot().unwrap();
    assert_eq!(snapshot.state, State::Open);
    assert_eq!(snapshot.failures, 3);
    assert_eq!(snapshot.opened_at_ms, Some(T0 + 100));
    assert_eq!(
        fail(&second).unwrap_err().retry_after(),
        Some(Duration::from_millis(600))
    );
    // A newcomer takes itself for closed: finding the circuit open is told
    // once, as a change another instance made, when and why it made it.
    assert_eq!(
        heard.changes(),
        vec![StateChange {
            previous: State::Closed,
            current: State::Open,
            at_ms: T0 + 100,
            generation: 1,
            reason: Reason::Tripped,
            remote: true,
        }]
    );
    advance(&clock, 600);
    assert!(second.acquire().unwrap().is_trial());

    // Half-open with one trial success: the newcomer needs two more.
    let first = make("py-stored-half-open");
    first.half_open().unwrap();
    succeed(&first).unwrap();
    drop(first);
    let second = make("py-stored-half-open");
    let snapshot = second.snapshot().unwrap();
    assert_eq!((snapshot.state, snapshot.successes), (State::HalfOpen, 1));
    succeed(&second).unwrap();
    assert_eq!(second.state().unwrap(), State::HalfOpen);
    succeed(&second).unwrap();
    assert_eq!(second.state().unwrap(), State::Closed);
}

/// test_fail_thread_safety: 3 threads x 500 failures, fail_max 3000: exactly 1500.
#[test]
fn threads_count_every_failure() {
    let clock = clock();
    let breaker = builder("py-threads-count", &clock)
        .fail_max(3000)
        .build()
        .unwrap();
    let results = hammer(&[&breaker], 3, 500);
    assert!(results.iter().flatten().all(|&r| r == Ran::Failed(false)));
    let snapshot = breaker.snapshot().unwrap();
    assert_eq!((snapshot.state, snapshot.failures), (State::Closed, 1500));
}

/// test_fail_thread_safety (past the threshold): 3 threads x 2000 failures,
/// fail_max 3000: the count stops at exactly 3000 and one call trips.
///
/// No lock is held around the guarded call (bug 1), so a thread whose call
/// was admitted just before the trip still runs it; its late failure is
/// not counted (it belongs to the closed period that ended). Hence at most
/// `threads - 1` calls beyond fail_max run.
#[test]
fn threads_stop_at_fail_max() {
    let clock = clock();
    let breaker = builder("py-threads-stop", &clock)
        .fail_max(3000)
        .build()
        .unwrap();
    let results = hammer(&[&breaker], 3, 2000);
    let all: Vec<Ran> = results.iter().flatten().copied().collect();
    let tripped = all.iter().filter(|&&r| r == Ran::Failed(true)).count();
    let ran = all.iter().filter(|r| matches!(r, Ran::Failed(_))).count();
    assert_eq!(tripped, 1, "exactly one call opened the circuit");
    assert!((3000..=3002).contains(&ran), "{ran} calls ran");
    assert_eq!(all.len(), 6000, "every call ran or was rejected");
    for calls in &results {
        let first_rejection = calls.iter().position(|&r| r == Ran::Rejected);
        if let Some(at) = first_rejection {
            assert!(
                calls[at..].iter().all(|&r| r == Ran::Rejected),
                "once open, a thread's calls stay rejected"
            );
        }
    }
    let snapshot = breaker.snapshot().unwrap();
    assert_eq!((snapshot.state, snapshot.failures), (State::Open, 3000));
    assert_eq!(snapshot.generation, 1, "one transition");
}

/// test_half_open_thread_safety: many threads after the timeout, one trial
/// runs and the breaker's listener hears open->half-open exactly once.
#[test]
fn only_one_thread_moves_open_to_half_open() {
    let clock = clock();
    let heard = Recorder::default();
    let breaker = builder("py-threads-half-open", &clock)
        .fail_max(1)
        .reset_timeout(Duration::from_millis(100))
        .listener(heard.clone())
        .build()
        .unwrap();
    fail(&breaker).unwrap_err();
    let opened = breaker.snapshot().unwrap().generation;
    advance(&clock, 100);
    heard.take();
    let threads = 8;
    let start = Barrier::new(threads);
    let answers: Vec<_> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    start.wait();
                    breaker.acquire()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let permits: Vec<_> = answers.iter().filter_map(|a| a.as_ref().ok()).collect();
    assert_eq!(permits.len(), 1, "one trial: {answers:?}");
    assert!(permits[0].is_trial());
    assert_eq!(permits[0].generation(), opened + 1);
    for answer in &answers {
        if let Err(error) = answer {
            assert!(
                matches!(error, Error::Rejected(Rejected::HalfOpenFull { .. })),
                "{error:?}"
            );
        }
    }
    let changes = heard.changes();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(
        (changes[0].previous, changes[0].current, changes[0].at_ms),
        (State::Open, State::HalfOpen, T0 + 100)
    );
    assert_eq!(breaker.snapshot().unwrap().generation, opened + 1);
}

// ---------------------------------------------------------------------------
// pybreaker's known bugs, absent here

/// Bug 1: no lock is held for the guarded call. Two calls meet inside `call`
/// at a barrier, which only works if both are inside at once. (The channel
/// timeout only turns a deadlock into a failure; it proves nothing.)
#[test]
fn bug1_calls_through_one_breaker_run_at_the_same_time() {
    let clock = clock();
    let breaker = builder("py-bug1", &clock).build().unwrap();
    let inside = Arc::new(Barrier::new(2));
    let (done, finished) = mpsc::channel();
    for _ in 0..2 {
        let (breaker, inside, done) = (breaker.clone(), inside.clone(), done.clone());
        // Not scoped: if calls were serialised these threads would never end.
        std::thread::spawn(move || {
            let answer = breaker.call(|| {
                inside.wait();
                Ok::<_, Boom>(())
            });
            done.send(answer.is_ok()).unwrap();
        });
    }
    for _ in 0..2 {
        let ok = finished
            .recv_timeout(Duration::from_secs(60))
            .expect("the two calls never met inside `call`: calls are serialised");
        assert!(ok);
    }
}

/// Bug 2: no double trip, no double trial, between two breakers that share
/// a storage as two processes would. Interleaved by hand with permits.
#[test]
fn bug2_two_workers_at_the_threshold_trip_once_and_trial_once() {
    let clock = clock();
    let storage = MemoryStorage::new();
    let make = || {
        builder("py-bug2", &clock)
            .fail_max(3)
            .reset_timeout(Duration::from_millis(100))
            .storage(storage.clone())
            .build()
            .unwrap()
    };
    let (a, b) = (make(), make());
    fail(&a).unwrap_err();
    fail(&b).unwrap_err();
    let pa = a.acquire().unwrap();
    let pb = b.acquire().unwrap();
    assert!(pa.failure().unwrap(), "a's failure is the third: it trips");
    advance(&clock, 10);
    assert!(
        !pb.failure().unwrap(),
        "b's failure belongs to the closed period"
    );
    let snapshot = b.snapshot().unwrap();
    assert_eq!(snapshot.state, State::Open);
    assert_eq!(snapshot.generation, 1, "one trip");
    assert_eq!(snapshot.opened_at_ms, Some(T0), "not re-opened by b");

    advance(&clock, 90);
    let trial = a.acquire().unwrap();
    assert!(trial.is_trial());
    assert!(matches!(
        b.acquire(),
        Err(Error::Rejected(Rejected::HalfOpenFull { .. }))
    ));
    trial.success().unwrap();
    assert_eq!(b.state().unwrap(), State::Closed);
}

/// Bug 2, raced: eight workers (on two breakers) all admitted at
/// fail_max - 1 report their failures at once; exactly one trips.
#[test]
fn bug2_racing_workers_at_the_threshold_trip_once() {
    let clock = clock();
    let storage = MemoryStorage::new();
    let make = || {
        builder("py-bug2-race", &clock)
            .fail_max(5)
            .storage(storage.clone())
            .build()
            .unwrap()
    };
    let (a, b) = (make(), make());
    for _ in 0..4 {
        fail(&a).unwrap_err();
    }
    let threads = 8;
    let start = Barrier::new(threads);
    let tripped: Vec<bool> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|i| {
                let (breaker, start) = (if i % 2 == 0 { &a } else { &b }, &start);
                scope.spawn(move || {
                    let permit = breaker.acquire().unwrap();
                    start.wait();
                    permit.failure().unwrap()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    assert_eq!(tripped.iter().filter(|&&t| t).count(), 1, "{tripped:?}");
    let snapshot = a.snapshot().unwrap();
    assert_eq!((snapshot.state, snapshot.failures), (State::Open, 5));
    assert_eq!(snapshot.generation, 1);
}

/// Bug 3: a breaker that notices a state change made elsewhere does not
/// rewrite the shared counters: trial successes and failures recorded by
/// the other breaker survive.
#[test]
fn bug3_noticing_a_change_erases_no_counts() {
    let clock = clock();
    let storage = MemoryStorage::new();
    let make = || {
        builder("py-bug3", &clock)
            .fail_max(3)
            .reset_timeout(Duration::from_millis(100))
            .success_threshold(3)
            .half_open_max_calls(3)
            .storage(storage.clone())
            .build()
            .unwrap()
    };
    let (a, b) = (make(), make());
    for _ in 0..3 {
        fail(&a).unwrap_err();
    }
    assert_eq!(b.state().unwrap(), State::Open, "b last saw open");
    advance(&clock, 100);
    succeed(&a).unwrap();
    succeed(&a).unwrap();
    assert_eq!(b.snapshot().unwrap().successes, 2, "b notices half-open");
    succeed(&b).unwrap();
    assert_eq!(
        a.state().unwrap(),
        State::Closed,
        "a's two trial successes and b's one make three"
    );

    // And failures: b last saw closed with no failures.
    assert_eq!(b.snapshot().unwrap().failures, 0);
    fail(&a).unwrap_err();
    fail(&a).unwrap_err();
    assert!(matches!(
        fail(&b),
        Err(CallError::Failed { tripped: true, .. })
    ));
}

/// Bug 4: opened_at keeps milliseconds, so the open period is exact.
#[test]
fn bug4_opened_at_keeps_milliseconds() {
    let clock = clock();
    let breaker = builder("py-bug4", &clock)
        .fail_max(1)
        .reset_timeout(Duration::from_millis(1000))
        .build()
        .unwrap();
    advance(&clock, 1234);
    fail(&breaker).unwrap_err();
    assert_eq!(breaker.snapshot().unwrap().opened_at_ms, Some(T0 + 1234));
    advance(&clock, 999);
    assert_eq!(
        fail(&breaker).unwrap_err().retry_after(),
        Some(Duration::from_millis(1))
    );
    advance(&clock, 1);
    assert!(breaker.acquire().unwrap().is_trial());
}

/// Bug 5: fallback "open" with the storage down rejects at once, with a
/// bounded number of storage calls, and recovers when the storage does.
#[test]
fn bug5_fallback_open_with_the_storage_down_rejects_without_looping() {
    let clock = clock();
    let storage = Faulty::new();
    let heard = Recorder::default();
    let breaker = builder("py-bug5", &clock)
        .fallback_state(State::Open)
        .storage(storage.clone())
        .listener(heard.clone())
        .build()
        .unwrap();
    storage.set_failing(true);
    storage.take_counts();
    for _ in 0..3 {
        match succeed(&breaker) {
            Err(CallError::Rejected(Rejected::StorageUnavailable { message, .. })) => {
                assert!(message.contains("connection refused"), "{message}")
            }
            other => panic!("expected storage-unavailable, got {other:?}"),
        }
    }
    let (loads, swaps) = storage.take_counts();
    assert_eq!((loads, swaps), (3, 0), "one load per call, no retry loop");
    assert!(matches!(breaker.open(), Err(Error::Storage { .. })));
    let errors = heard
        .take()
        .into_iter()
        .filter(|h| matches!(h, Heard::Error(_)))
        .count();
    assert_eq!(errors, 1, "an outage is told once");
    storage.set_failing(false);
    assert_eq!(breaker.call(|| Ok::<_, Boom>(5)).unwrap(), 5);
}

/// Bug 6: a missing record resets everything, the fail counter included.
#[test]
fn bug6_a_missing_record_resets_the_fail_counter() {
    let clock = clock();
    // Its keys can vanish (as a Redis key may expire or be deleted);
    // versions still never repeat.
    let storage = Faulty::new();
    let breaker = builder("py-bug6", &clock)
        .fail_max(3)
        .storage(storage.clone())
        .build()
        .unwrap();
    fail(&breaker).unwrap_err();
    fail(&breaker).unwrap_err();
    assert_eq!(failures(&breaker), 2);
    assert!(storage.forget("py-bug6"));
    let snapshot = breaker.snapshot().unwrap();
    assert_eq!((snapshot.state, snapshot.failures), (State::Closed, 0));
    fail(&breaker).unwrap_err();
    assert_eq!(failures(&breaker), 1, "counting restarted from 0");
    fail(&breaker).unwrap_err();
    assert!(matches!(
        fail(&breaker),
        Err(CallError::Failed { tripped: true, .. })
    ));
}

/// Bug 7: rejections say when to retry, and `state()` reads an elapsed open
/// period as half-open without waiting for a call.
#[test]
fn bug7_rejections_carry_retry_after_and_state_sees_the_elapsed_timeout() {
    let clock = clock();
    let heard = Recorder::default();
    let breaker = builder("py-bug7", &clock)
        .fail_max(1)
        .reset_timeout(Duration::from_millis(1000))
        .listener(heard.clone())
        .build()
        .unwrap();
    fail(&breaker).unwrap_err();
    advance(&clock, 250);
    let rejected = fail(&breaker).unwrap_err();
    assert_eq!(rejected.retry_after(), Some(Duration::from_millis(750)));
    assert!(matches!(
        rejected,
        CallError::Rejected(Rejected::Open { retry_after }) if retry_after == Duration::from_millis(750)
    ));
    assert_eq!(breaker.state().unwrap(), State::Open);
    let generation = breaker.snapshot().unwrap().generation;

    advance(&clock, 750);
    heard.take();
    let snapshot = breaker.snapshot().unwrap();
    assert_eq!(snapshot.state, State::HalfOpen);
    assert_eq!(snapshot.retry_after, None, "a call would be admitted now");
    assert_eq!(breaker.state().unwrap(), State::HalfOpen);
    assert_eq!(snapshot.generation, generation, "reading moved nothing");
    assert!(heard.take().is_empty());

    // With the one trial slot taken, the rejection says when it frees.
    let trial = breaker.acquire().unwrap();
    advance(&clock, 100);
    let full = succeed(&breaker).unwrap_err();
    assert_eq!(full.retry_after(), Some(Duration::from_millis(900)));
    assert!(matches!(
        full,
        CallError::Rejected(Rejected::HalfOpenFull { .. })
    ));
    trial.success().unwrap();
    assert_eq!(breaker.state().unwrap(), State::Closed);
}

/// Polls a future once with a waker that does nothing.
fn poll_once<F: Future>(future: Pin<&mut F>) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(Waker::noop()))
}

/// A future that is pending until its gate opens, then yields `value`.
fn gated<T>(gate: &Cell<bool>, value: T) -> impl Future<Output = T> + '_
where
    T: 'static,
{
    let mut value = Some(value);
    std::future::poll_fn(move |_| {
        if gate.get() {
            Poll::Ready(value.take().expect("polled after completion"))
        } else {
            Poll::Pending
        }
    })
}

/// Bug 8: `call_async` counts the result once the future has completed, not
/// when it is created or first polled; a cancelled call counts nothing.
#[test]
fn bug8_call_async_counts_the_result_after_the_future_completes() {
    let clock = clock();
    let heard = Recorder::default();
    let breaker = builder("py-bug8", &clock)
        .fail_max(2)
        .reset_timeout(Duration::from_millis(100))
        .listener(heard.clone())
        .build()
        .unwrap();
    fail(&breaker).unwrap_err();
    heard.take();

    // A success still pending has not reset the count (pybreaker: it had).
    let gate = Cell::new(false);
    let mut call = pin!(breaker.call_async(gated(&gate, Ok::<_, Boom>(1))));
    assert!(poll_once(call.as_mut()).is_pending());
    assert_eq!(heard.take(), vec![Heard::BeforeCall]);
    assert_eq!(failures(&breaker), 1);
    assert!(poll_once(call.as_mut()).is_pending());
    assert_eq!(failures(&breaker), 1);
    gate.set(true);
    assert!(matches!(poll_once(call.as_mut()), Poll::Ready(Ok(1))));
    assert_eq!(heard.take(), vec![Heard::Success]);
    assert_eq!(failures(&breaker), 0);

    // A failure counts when it completes, and may trip then.
    fail(&breaker).unwrap_err();
    let gate = Cell::new(false);
    let mut call = pin!(breaker.call_async(gated(&gate, Err::<u8, _>(Boom))));
    assert!(poll_once(call.as_mut()).is_pending());
    assert_eq!(breaker.state().unwrap(), State::Closed);
    gate.set(true);
    assert!(matches!(
        poll_once(call.as_mut()),
        Poll::Ready(Err(CallError::Failed {
            error: Boom,
            tripped: true
        }))
    ));
    assert_eq!(breaker.state().unwrap(), State::Open);

    // In half-open, a pending trial holds its slot; an unpolled future has
    // not asked for one; a cancelled trial frees its slot and counts nothing.
    advance(&clock, 100);
    let never_polled = breaker.call_async(gated(&gate, Ok::<_, Boom>(0)));
    let gate = Cell::new(false);
    let mut pending = Box::pin(breaker.call_async(gated(&gate, Ok::<_, Boom>(2))));
    assert!(poll_once(pending.as_mut()).is_pending());
    assert_eq!(breaker.snapshot().unwrap().trials_in_flight, 1);
    let mut other = pin!(breaker.call_async(gated(&gate, Ok::<_, Boom>(3))));
    assert!(matches!(
        poll_once(other.as_mut()),
        Poll::Ready(Err(CallError::Rejected(Rejected::HalfOpenFull { .. })))
    ));
    drop(pending);
    drop(never_polled);
    let snapshot = breaker.snapshot().unwrap();
    assert_eq!(
        (
            snapshot.state,
            snapshot.successes,
            snapshot.trials_in_flight
        ),
        (State::HalfOpen, 0, 0)
    );
    gate.set(true);
    let mut retry = pin!(breaker.call_async(gated(&gate, Ok::<_, Boom>(4))));
    assert!(matches!(poll_once(retry.as_mut()), Poll::Ready(Ok(4))));
    assert_eq!(breaker.state().unwrap(), State::Closed);
}
