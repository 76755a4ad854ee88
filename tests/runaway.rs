//! A component that runs away or traps: the call becomes an error, the
//! instance is discarded, and the breaker (and the process) go on.

use tripswitch::{CallError, CircuitBreaker, Error, Runtime};

/// The broken component from `tests/fixtures/runaway`, built by build.rs.
const BROKEN: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/runaway.wasm"));

fn broken_breaker(name: &str) -> CircuitBreaker {
    let runtime = Runtime::from_bytes(BROKEN).unwrap();
    CircuitBreaker::builder(name)
        .runtime(&runtime)
        .build()
        .unwrap()
}

#[test]
fn a_call_that_never_returns_is_stopped_by_the_epoch_deadline() {
    let breaker = broken_breaker("runaway");
    for _ in 0..2 {
        match breaker.acquire() {
            Err(Error::Component(message)) => {
                assert!(message.contains("breaker \"runaway\""), "{message}");
                assert!(message.contains("instance was discarded"), "{message}");
                assert!(
                    message.contains("ran for over 100 ms without returning"),
                    "{message}"
                );
            }
            other => panic!("expected a component error, got {other:?}"),
        }
    }
    let mut ran = false;
    let answer = breaker.call(|| {
        ran = true;
        Ok::<(), ()>(())
    });
    assert!(!ran, "a call the breaker could not decide on does not run");
    assert!(matches!(
        answer,
        Err(CallError::Breaker(Error::Component(_)))
    ));
}

#[test]
fn a_trap_becomes_an_error_and_the_next_call_gets_a_fresh_instance() {
    let breaker = broken_breaker("trap");
    for _ in 0..3 {
        match breaker.snapshot() {
            Err(Error::Component(message)) => {
                assert!(message.contains("instance was discarded"), "{message}")
            }
            other => panic!("expected a component error, got {other:?}"),
        }
    }
    // Methods that do not trap still work on the instances made afterwards.
    breaker.open().unwrap();
}

#[test]
fn a_component_that_asks_for_steps_forever_is_stopped() {
    let breaker = broken_breaker("endless");
    match breaker.close() {
        Err(Error::Component(message)) => {
            assert!(message.contains("breaker \"endless\""), "{message}");
            assert!(message.contains("steps"), "{message}");
            assert!(message.contains("instance was discarded"), "{message}");
        }
        other => panic!("expected a component error, got {other:?}"),
    }
    breaker.open().unwrap();
}
