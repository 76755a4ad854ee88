//! One test per item of the README's semantics list, through the real
//! component in wasmtime, on a virtual clock.

use std::time::Duration;

use tripswitch::{CallError, MemoryStorage, Rejected, State, StateChange};
use tripswitch_tests::{Flaky, Heard, Recorder, T0, advance, builder, clock, fail, succeed};

/// 1. closed: the fail-max-th consecutive failure opens; a success resets the
///    count, writing only when the count was not 0.
#[test]
fn closed_counts_consecutive_failures_and_a_success_resets_them() {
    let clock = clock();
    let storage = Flaky::default();
    let breaker = builder("s1", &clock)
        .fail_max(3)
        .storage(storage.clone())
        .build()
        .unwrap();
    assert!(matches!(
        fail(&breaker),
        Err(CallError::Failed { tripped: false, .. })
    ));
    assert!(matches!(
        fail(&breaker),
        Err(CallError::Failed { tripped: false, .. })
    ));
    assert_eq!(breaker.snapshot().unwrap().failures, 2);
    storage.take_counts();
    succeed(&breaker).unwrap();
    assert_eq!(
        storage.take_counts(),
        (1, 1),
        "a success after failures writes once"
    );
    succeed(&breaker).unwrap();
    assert_eq!(
        storage.take_counts(),
        (1, 0),
        "a success with no failures writes nothing"
    );
    assert_eq!(breaker.snapshot().unwrap().failures, 0);

    for _ in 0..2 {
        fail(&breaker).unwrap_err();
    }
    assert!(matches!(
        fail(&breaker),
        Err(CallError::Failed { tripped: true, .. })
    ));
    let snapshot = breaker.snapshot().unwrap();
    assert_eq!(snapshot.state, State::Open);
    assert_eq!(snapshot.opened_at_ms, Some(T0));
}

/// 1. a success resets failures counted while it ran when the storage can
///    tell its version without a round trip (memory storage).
#[test]
fn a_success_resets_failures_counted_while_it_ran() {
    let clock = clock();
    let breaker = builder("s1b", &clock).fail_max(2).build().unwrap();
    let slow = breaker.acquire().unwrap();
    fail(&breaker).unwrap_err();
    slow.success().unwrap();
    assert_eq!(breaker.snapshot().unwrap().failures, 0);
    fail(&breaker).unwrap_err();
    assert_eq!(breaker.state().unwrap(), State::Closed);
}

/// 1. with a storage that cannot tell its version without a round trip
///    (Redis), a success costs no second round trip: it resets the failures
///    counted before it was admitted, not those counted while it ran.
#[test]
fn over_an_opaque_storage_a_success_resets_what_it_saw_at_admission() {
    let clock = clock();
    let storage = Flaky::default();
    let breaker = builder("s1c", &clock)
        .fail_max(3)
        .storage(storage.clone())
        .build()
        .unwrap();
    let slow = breaker.acquire().unwrap();
    fail(&breaker).unwrap_err();
    storage.take_counts();
    slow.success().unwrap();
    assert_eq!(
        storage.take_counts(),
        (0, 0),
        "no round trip for the report"
    );
    assert_eq!(breaker.snapshot().unwrap().failures, 1);
    succeed(&breaker).unwrap();
    assert_eq!(breaker.snapshot().unwrap().failures, 0);
}

/// 2. open: rejected with the time left; the first acquire at opened-at +
///    reset-timeout is a trial.
#[test]
fn open_rejects_until_the_reset_timeout_then_admits_a_trial() {
    let clock = clock();
    let breaker = builder("s2", &clock)
        .fail_max(1)
        .reset_timeout(Duration::from_millis(1000))
        .build()
        .unwrap();
    fail(&breaker).unwrap_err();
    advance(&clock, 400);
    let mut ran = false;
    let rejected = breaker.call(|| {
        ran = true;
        Ok::<(), ()>(())
    });
    assert!(!ran, "a rejected call does not run");
    match rejected {
        Err(CallError::Rejected(Rejected::Open { retry_after })) => {
            assert_eq!(retry_after, Duration::from_millis(600))
        }
        other => panic!("expected an open rejection, got {other:?}"),
    }
    advance(&clock, 599);
    assert!(breaker.acquire().is_err());
    advance(&clock, 1);
    let permit = breaker.acquire().unwrap();
    assert!(permit.is_trial());
    assert_eq!(breaker.snapshot().unwrap().state, State::HalfOpen);
    permit.success().unwrap();
    assert_eq!(breaker.state().unwrap(), State::Closed);
}

/// 3. half-open: trials are limited; successes close at the threshold; a
///    failure re-opens; an unreported trial is forfeited after trial-timeout.
#[test]
fn half_open_limits_trials_and_decides_on_their_outcome() {
    let clock = clock();
    let breaker = builder("s3", &clock)
        .fail_max(1)
        .reset_timeout(Duration::from_millis(100))
        .half_open_max_calls(2)
        .success_threshold(2)
        .trial_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    fail(&breaker).unwrap_err();
    advance(&clock, 100);
    let first = breaker.acquire().unwrap();
    let second = breaker.acquire().unwrap();
    match breaker.acquire() {
        Err(tripswitch::Error::Rejected(Rejected::HalfOpenFull { retry_after })) => {
            assert_eq!(retry_after, Duration::from_millis(50))
        }
        other => panic!("expected half-open-full, got {other:?}"),
    }
    assert_eq!(breaker.snapshot().unwrap().trials_in_flight, 2);
    first.success().unwrap();
    let snapshot = breaker.snapshot().unwrap();
    assert_eq!((snapshot.state, snapshot.successes), (State::HalfOpen, 1));
    second.success().unwrap();
    assert_eq!(breaker.state().unwrap(), State::Closed);

    // A trial failure re-opens with a new opened-at.
    fail(&breaker).unwrap_err();
    advance(&clock, 100);
    assert!(matches!(
        fail(&breaker),
        Err(CallError::Failed { tripped: true, .. })
    ));
    assert_eq!(breaker.snapshot().unwrap().opened_at_ms, Some(T0 + 200));

    // A trial that never reports is forfeited after the trial timeout.
    advance(&clock, 100);
    let stuck_one = breaker.acquire().unwrap();
    let stuck_two = breaker.acquire().unwrap();
    assert!(breaker.acquire().is_err());
    advance(&clock, 50);
    let fresh = breaker.acquire().unwrap();
    assert!(fresh.is_trial());
    // The forfeited trials' late reports count nothing.
    stuck_one.failure().unwrap();
    stuck_two.failure().unwrap();
    assert_eq!(breaker.state().unwrap(), State::HalfOpen);
    fresh.success().unwrap();
    assert_eq!(breaker.snapshot().unwrap().successes, 1);
}

/// 4. ignored counts nothing and frees a trial slot; a permit from an older
///    generation counts nothing.
#[test]
fn ignored_frees_a_slot_and_stale_permits_count_nothing() {
    let clock = clock();
    let breaker = builder("s4", &clock)
        .fail_max(2)
        .reset_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let stale = breaker.acquire().unwrap();
    fail(&breaker).unwrap_err();
    breaker.acquire().unwrap().ignore().unwrap();
    assert_eq!(
        breaker.snapshot().unwrap().failures,
        1,
        "ignored counts nothing"
    );
    fail(&breaker).unwrap_err();
    assert_eq!(breaker.state().unwrap(), State::Open);
    let generation = breaker.snapshot().unwrap().generation;
    assert!(!stale.failure().unwrap(), "a stale failure trips nothing");
    assert_eq!(breaker.snapshot().unwrap().generation, generation);

    advance(&clock, 100);
    let trial = breaker.acquire().unwrap();
    assert!(breaker.acquire().is_err());
    drop(trial); // dropped unreported: ignored, the slot is free again
    let again = breaker.acquire().unwrap();
    assert!(again.is_trial());
    assert_eq!(breaker.state().unwrap(), State::HalfOpen);
    again.success().unwrap();
    assert_eq!(breaker.state().unwrap(), State::Closed);
}

/// 5. two breakers with one name on one storage behave as two processes:
///    no count is lost, no more trials than allowed.
#[test]
fn two_breakers_on_one_storage_share_every_count() {
    let clock = clock();
    let storage = MemoryStorage::new();
    let make = || {
        builder("s5", &clock)
            .fail_max(4)
            .reset_timeout(Duration::from_millis(100))
            .storage(storage.clone())
            .build()
            .unwrap()
    };
    let (a, b) = (make(), make());
    // Interleave permits so that each write races the other's.
    let pa = a.acquire().unwrap();
    let pb = b.acquire().unwrap();
    pa.failure().unwrap();
    pb.failure().unwrap();
    assert_eq!(a.snapshot().unwrap().failures, 2);
    fail(&b).unwrap_err();
    assert!(matches!(
        fail(&a),
        Err(CallError::Failed { tripped: true, .. })
    ));
    assert_eq!(b.state().unwrap(), State::Open);
    assert!(b.acquire().is_err());
    advance(&clock, 100);
    let trial = b.acquire().unwrap();
    assert!(matches!(
        a.acquire(),
        Err(tripswitch::Error::Rejected(Rejected::HalfOpenFull { .. }))
    ));
    trial.success().unwrap();
    assert_eq!(a.state().unwrap(), State::Closed);
}

/// 6. forced-open rejects until an operator acts; disabled admits and records
///    nothing; close resets the counters.
#[test]
fn operator_states() {
    let clock = clock();
    let breaker = builder("s6", &clock).fail_max(2).build().unwrap();
    breaker.force_open().unwrap();
    advance(&clock, 10_000_000);
    assert!(matches!(
        fail(&breaker),
        Err(CallError::Rejected(Rejected::ForcedOpen))
    ));
    assert_eq!(breaker.snapshot().unwrap().retry_after, None);

    breaker.disable().unwrap();
    for _ in 0..10 {
        fail(&breaker).unwrap_err();
    }
    let snapshot = breaker.snapshot().unwrap();
    assert_eq!((snapshot.state, snapshot.failures), (State::Disabled, 0));

    breaker.close().unwrap();
    fail(&breaker).unwrap_err();
    assert_eq!(breaker.snapshot().unwrap().failures, 1);
    breaker.close().unwrap();
    assert_eq!(breaker.snapshot().unwrap().failures, 0);

    breaker.open().unwrap();
    assert_eq!(breaker.state().unwrap(), State::Open);
    breaker.half_open().unwrap();
    assert!(breaker.acquire().unwrap().is_trial());
}

/// 7. storage errors: acquire follows the fallback state, without looping.
#[test]
fn a_failing_storage_follows_the_fallback_state() {
    let clock = clock();
    let storage = Flaky::default();
    let admits = builder("s7a", &clock)
        .storage(storage.clone())
        .build()
        .unwrap();
    let rejects = builder("s7b", &clock)
        .storage(storage.clone())
        .fallback_state(State::Open)
        .build()
        .unwrap();
    let forced = builder("s7c", &clock)
        .storage(storage.clone())
        .fallback_state(State::ForcedOpen)
        .build()
        .unwrap();
    storage.set_failing(true);
    storage.take_counts();
    assert_eq!(admits.call(|| Ok::<_, ()>(7)).unwrap(), 7);
    for breaker in [&rejects, &forced] {
        match breaker.call(|| Ok::<_, ()>(7)) {
            Err(CallError::Rejected(Rejected::StorageUnavailable { message })) => {
                assert!(message.contains("connection refused"), "{message}")
            }
            other => panic!("expected storage-unavailable, got {other:?}"),
        }
    }
    let (loads, swaps) = storage.take_counts();
    assert!(
        loads <= 4 && swaps == 0,
        "no retry loop: {loads} loads, {swaps} swaps"
    );
    assert!(
        matches!(admits.snapshot(), Err(tripswitch::Error::Storage(m)) if m.contains("load failed"))
    );
    storage.set_failing(false);
    assert_eq!(rejects.call(|| Ok::<_, ()>(7)).unwrap(), 7);
}

/// 7. corrupt stored bytes are a clear error, and an operator action overwrites them.
#[test]
fn corrupt_bytes_are_reported_and_an_operator_repairs_them() {
    let clock = clock();
    let storage = MemoryStorage::new();
    storage.put("s7d", b"\x01\x09garbage");
    let breaker = builder("s7d", &clock)
        .storage(storage.clone())
        .fallback_state(State::Open)
        .build()
        .unwrap();
    match breaker.snapshot() {
        Err(tripswitch::Error::Storage(message)) => {
            assert!(
                message.contains("corrupt") && message.contains("unknown state code 9"),
                "{message}"
            )
        }
        other => panic!("expected a corrupt-record error, got {other:?}"),
    }
    assert!(matches!(
        breaker.acquire(),
        Err(tripswitch::Error::Rejected(
            Rejected::StorageUnavailable { .. }
        ))
    ));
    breaker.close().unwrap();
    assert_eq!(breaker.state().unwrap(), State::Closed);
    succeed(&breaker).unwrap();
}

/// 8. exactly one state-changed per transition from the writer; the other
///    instance hears it as remote.
#[test]
fn one_event_per_transition_and_remote_ones_are_marked() {
    let clock = clock();
    let storage = MemoryStorage::new();
    let (heard_a, heard_b) = (Recorder::default(), Recorder::default());
    let make = |recorder: &Recorder| {
        builder("s8", &clock)
            .fail_max(1)
            .reset_timeout(Duration::from_millis(100))
            .storage(storage.clone())
            .listener(recorder.clone())
            .build()
            .unwrap()
    };
    let (a, b) = (make(&heard_a), make(&heard_b));
    b.snapshot().unwrap();
    fail(&a).unwrap_err();
    advance(&clock, 100);
    succeed(&a).unwrap();
    let change = |previous, current, at, remote| StateChange {
        previous,
        current,
        at_ms: T0 + at,
        remote,
    };
    assert_eq!(
        heard_a.changes(),
        vec![
            change(State::Closed, State::Open, 0, false),
            change(State::Open, State::HalfOpen, 100, false),
            change(State::HalfOpen, State::Closed, 100, false),
        ]
    );
    assert!(heard_b.changes().is_empty(), "b has not looked yet");
    a.open().unwrap();
    b.snapshot().unwrap();
    b.snapshot().unwrap();
    assert_eq!(
        heard_b.changes(),
        vec![change(State::Closed, State::Open, 100, true)],
        "b hears the state it finds, once"
    );
}

/// 9. configuration: every count >= 1, every duration >= 1 ms, a name of 1 to 256 bytes.
#[test]
fn invalid_configuration_names_the_field() {
    let cases = [
        (
            tripswitch::CircuitBreaker::builder("x").fail_max(0),
            "fail-max",
        ),
        (
            tripswitch::CircuitBreaker::builder("x").success_threshold(0),
            "success-threshold",
        ),
        (
            tripswitch::CircuitBreaker::builder("x").half_open_max_calls(0),
            "half-open-max-calls",
        ),
        (
            tripswitch::CircuitBreaker::builder("x").reset_timeout(Duration::ZERO),
            "reset-timeout-ms",
        ),
        (
            tripswitch::CircuitBreaker::builder("x").trial_timeout(Duration::from_micros(999)),
            "trial-timeout-ms",
        ),
        (
            tripswitch::CircuitBreaker::builder("x").fallback_state(State::HalfOpen),
            "fallback-state",
        ),
        (tripswitch::CircuitBreaker::builder(""), "name"),
        (tripswitch::CircuitBreaker::builder("n".repeat(257)), "name"),
    ];
    for (builder, field) in cases {
        match builder.build() {
            Err(tripswitch::Error::InvalidConfig { field: got, reason }) => {
                assert_eq!(got, field, "{reason}");
                assert!(!reason.is_empty());
            }
            other => panic!("{field}: expected a config error, got {other:?}"),
        }
    }
    let error = tripswitch::CircuitBreaker::builder("x")
        .fail_max(0)
        .build()
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid fail-max: must be at least 1, got 0"
    );
    assert!(
        tripswitch::CircuitBreaker::builder("n".repeat(256))
            .build()
            .is_ok()
    );
}

/// The defaults are the component's: 5 failures, 60 s.
#[test]
fn defaults_come_from_the_component() {
    let clock = clock();
    let breaker = builder("defaults", &clock).build().unwrap();
    for _ in 0..4 {
        fail(&breaker).unwrap_err();
    }
    assert_eq!(breaker.state().unwrap(), State::Closed);
    fail(&breaker).unwrap_err();
    assert_eq!(
        breaker.snapshot().unwrap().retry_after,
        Some(Duration::from_secs(60))
    );
    advance(&clock, 60_000);
    assert!(breaker.acquire().unwrap().is_trial());
}

/// Listener hooks come in pybreaker's order.
#[test]
fn listener_order_on_trip_and_on_a_closing_trial() {
    let clock = clock();
    let heard = Recorder::default();
    let breaker = builder("order", &clock)
        .fail_max(1)
        .reset_timeout(Duration::from_millis(10))
        .listener(heard.clone())
        .build()
        .unwrap();
    fail(&breaker).unwrap_err();
    let change = |previous, current, at| {
        Heard::Change(StateChange {
            previous,
            current,
            at_ms: T0 + at,
            remote: false,
        })
    };
    assert_eq!(
        heard.take(),
        vec![
            Heard::BeforeCall,
            Heard::Failure(true),
            change(State::Closed, State::Open, 0)
        ]
    );
    fail(&breaker).unwrap_err();
    assert_eq!(
        heard.take(),
        vec![Heard::Rejected(Rejected::Open {
            retry_after: Duration::from_millis(10)
        })]
    );
    advance(&clock, 10);
    succeed(&breaker).unwrap();
    assert_eq!(
        heard.take(),
        vec![
            change(State::Open, State::HalfOpen, 10),
            Heard::BeforeCall,
            change(State::HalfOpen, State::Closed, 10),
            Heard::Success,
        ]
    );
}
