//! The parts of the semantics list (README, "Semantics") that need more than
//! a scenario file can say: storage round trips, storages that fail or hold
//! corrupt bytes, Rust's config types and error text, listener order; through
//! the real component in wasmtime on a virtual clock. Everything a scenario
//! can say is in tests/scenarios/, run by scenarios.rs and by the JS tests,
//! and is not repeated here.

use std::time::Duration;

use tripswitch::{CallError, MemoryStorage, Reason, Rejected, State, StateChange};
use tripswitch_tests::{Faulty, Heard, Recorder, T0, advance, builder, clock, fail, succeed};

/// 1. closed: the fail-max-th consecutive failure opens; a success resets the
///    count, writing only when the count was not 0.
#[test]
fn closed_counts_consecutive_failures_and_a_success_resets_them() {
    let clock = clock();
    let storage = Faulty::new();
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

/// 1. with a storage that cannot tell its version without a round trip
///    (Redis), a success costs no second round trip: it resets the failures
///    counted before it was admitted, not those counted while it ran.
#[test]
fn over_an_opaque_storage_a_success_resets_what_it_saw_at_admission() {
    let clock = clock();
    let storage = Faulty::new();
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

/// 7. storage errors: acquire follows the fallback state, without looping.
#[test]
fn a_failing_storage_follows_the_fallback_state() {
    let clock = clock();
    let storage = Faulty::new();
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
            Err(CallError::Rejected(Rejected::StorageUnavailable { message, .. })) => {
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
        matches!(admits.snapshot(), Err(tripswitch::Error::Storage { message, .. }) if message.contains("load failed"))
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
        Err(tripswitch::Error::Corrupt(message)) => {
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

/// 9. configuration, what only Rust can say (every refused field, the 257-byte
///    name among them, is in scenarios/invalid-config.json): a `Duration`
///    under 1 ms is refused, not rounded; a 256-byte name is accepted; the
///    error reads `invalid <field>: <reason>`.
#[test]
fn invalid_configuration_names_the_field() {
    match tripswitch::CircuitBreaker::builder("x")
        .trial_timeout(Duration::from_micros(999))
        .build()
    {
        Err(tripswitch::Error::InvalidConfig { field, reason }) => {
            assert_eq!(field, "trial-timeout-ms", "{reason}");
            assert!(!reason.is_empty());
        }
        other => panic!("trial-timeout-ms: expected a config error, got {other:?}"),
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
    let change = |previous, current, at, generation, reason| {
        Heard::Change(StateChange {
            previous,
            current,
            at_ms: T0 + at,
            generation,
            reason,
            remote: false,
        })
    };
    assert_eq!(
        heard.take(),
        vec![
            Heard::BeforeCall,
            Heard::Failure(true),
            change(State::Closed, State::Open, 0, 1, Reason::Tripped)
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
            change(State::Open, State::HalfOpen, 10, 2, Reason::TimeoutElapsed),
            Heard::BeforeCall,
            change(State::HalfOpen, State::Closed, 10, 3, Reason::Recovered),
            Heard::Success,
        ]
    );
}
