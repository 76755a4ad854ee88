//! Bad input meets clear errors: unloadable components, storages that
//! misbehave, records that are not ours. Nothing panics, traps the process
//! or loops.

use std::time::Duration;

use tripswitch::{CircuitBreaker, Error, MemoryStorage, Rejected, Runtime, State};
use tripswitch_tests::{Faulty, Heard, Recorder, builder, clock, fail, succeed};

#[test]
fn a_file_that_is_not_a_component_is_refused_by_name() {
    let dir = std::env::temp_dir().join(format!("tripswitch-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("garbage.wasm");
    std::fs::write(&path, b"definitely not wasm").unwrap();
    match Runtime::from_file(&path) {
        Err(Error::Component(message)) => {
            assert!(message.contains("garbage.wasm"), "{message}");
            assert!(message.contains("not a loadable component"), "{message}");
        }
        other => panic!("expected a component error, got {other:?}"),
    }
    match Runtime::from_file(dir.join("missing.wasm")) {
        Err(Error::Component(message)) => assert!(message.contains("missing.wasm"), "{message}"),
        other => panic!("expected a component error, got {other:?}"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_component_without_the_breaker_export_is_refused() {
    // The smallest valid component: a header and nothing else.
    let empty = b"\0asm\x0d\x00\x01\x00";
    match Runtime::from_bytes(empty) {
        Err(Error::Component(message)) => {
            assert!(
                message.contains("does not fit tripswitch:breaker"),
                "{message}"
            )
        }
        other => panic!("expected a component error, got {other:?}"),
    }
}

#[test]
fn another_copy_of_the_component_runs_from_a_file() {
    let path = std::env::temp_dir().join(format!("tripswitch-copy-{}.wasm", std::process::id()));
    std::fs::write(&path, tripswitch::COMPONENT).unwrap();
    let runtime = Runtime::from_file(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let breaker = CircuitBreaker::builder("from-file")
        .runtime(&runtime)
        .fail_max(1)
        .build()
        .unwrap();
    fail(&breaker).unwrap_err();
    assert_eq!(breaker.state().unwrap(), State::Open);
}

#[test]
fn endless_conflicts_end_in_an_error_not_a_loop() {
    let clock = clock();
    let heard = Recorder::default();
    // Every write answers a conflict, as if another writer always got there first.
    let storage = Faulty::new();
    storage.set_conflicting(true);
    let breaker = builder("contended", &clock)
        .storage(storage)
        .listener(heard.clone())
        .build()
        .unwrap();
    let permit = breaker.acquire().unwrap();
    match permit.failure() {
        Err(Error::Contended(message)) => {
            assert!(
                message.contains("gave up after 64 conflicting writes"),
                "{message}"
            )
        }
        other => panic!("expected a contended error, got {other:?}"),
    }
    match breaker.open() {
        Err(Error::Contended(message)) => assert!(message.contains("conflicting writes")),
        other => panic!("expected a contended error, got {other:?}"),
    }
    // Through `call`, the failure still reaches the caller and the listener
    // hears that it could not be recorded.
    heard.take();
    fail(&breaker).unwrap_err();
    assert!(
        heard
            .take()
            .iter()
            .any(|h| matches!(h, Heard::Error(Error::Contended(m)) if m.contains("conflicting"))),
        "the listener hears of the lost write"
    );
}

#[test]
fn a_trapping_instance_is_discarded_and_the_breaker_goes_on() {
    let clock = clock();
    let storage = Faulty::new();
    let breaker = builder("trap", &clock)
        .fail_max(2)
        .storage(storage.clone())
        .build()
        .unwrap();
    fail(&breaker).unwrap_err();
    // The next load answers far more data than a record holds.
    storage.oversize_next_load();
    match breaker.snapshot() {
        Err(Error::Component(message)) => {
            assert!(message.contains("instance was discarded"), "{message}")
        }
        other => panic!("expected a component error, got {other:?}"),
    }
    // A fresh instance serves the next call; the count survived in storage.
    assert_eq!(breaker.snapshot().unwrap().failures, 1);
    fail(&breaker).unwrap_err();
    assert_eq!(breaker.state().unwrap(), State::Open);
}

#[test]
fn records_that_are_not_ours_are_named_as_such() {
    let clock = clock();
    let storage = MemoryStorage::new();
    let cases: [(&[u8], &str); 4] = [
        (b"", "format byte missing"),
        (b"{\"state\":\"open\"}", "unknown record format 123"),
        (&[1, 1, 5], "truncated record"),
        (&[1, 0, 0, 0, 0, 0, 0, 9, 9], "unexpected bytes"),
    ];
    for (n, (bytes, why)) in cases.into_iter().enumerate() {
        let name = format!("foreign-{n}");
        storage.put(&name, bytes);
        let breaker = builder(&name, &clock)
            .storage(storage.clone())
            .build()
            .unwrap();
        match breaker.snapshot() {
            Err(Error::Corrupt(message)) => {
                assert!(message.contains(&format!("breaker {name:?}")), "{message}");
                assert!(message.contains(why), "{message}");
            }
            other => panic!("{why}: expected a corrupt-record error, got {other:?}"),
        }
        // The default fallback (closed) admits; the result cannot be recorded.
        succeed(&breaker).unwrap();
    }
}

#[test]
fn a_storage_outage_is_told_once_and_calls_follow_the_fallback() {
    let clock = clock();
    let storage = Faulty::new();
    let heard = Recorder::default();
    let breaker = builder("outage", &clock)
        .storage(storage.clone())
        .fallback_state(State::Open)
        .reset_timeout(Duration::from_millis(10))
        .listener(heard.clone())
        .build()
        .unwrap();
    storage.set_failing(true);
    for _ in 0..5 {
        assert!(matches!(
            breaker.acquire(),
            Err(Error::Rejected(Rejected::StorageUnavailable { .. }))
        ));
    }
    let errors = heard
        .take()
        .into_iter()
        .filter(|h| matches!(h, Heard::Error(_)))
        .count();
    assert_eq!(errors, 1, "one report per outage");
    storage.set_failing(false);
    succeed(&breaker).unwrap();
    storage.set_failing(true);
    breaker.acquire().unwrap_err();
    assert!(
        heard.take().iter().any(|h| matches!(h, Heard::Error(_))),
        "a new outage is told again"
    );
}

/// A listener that panics whenever a call is admitted.
struct Panicky;

impl tripswitch::Listener for Panicky {
    fn before_call(&self, _: &str) {
        panic!("a listener bug");
    }
}

/// The panic happens before the call could run: the trial slot is freed and
/// nothing is counted.
#[test]
fn a_panicking_listener_does_not_leak_a_trial_slot() {
    let clock = clock();
    let breaker = builder("panicky", &clock)
        .fail_max(1)
        .reset_timeout(Duration::from_millis(10))
        .listener(Panicky)
        .build()
        .unwrap();
    let storage_probe = breaker.clone();
    breaker.force_open().unwrap();
    breaker.half_open().unwrap();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| breaker.acquire()));
    assert!(caught.is_err(), "the listener's panic reaches the caller");
    let snapshot = storage_probe.snapshot().unwrap();
    assert_eq!(
        (snapshot.state, snapshot.trials_in_flight),
        (State::HalfOpen, 0)
    );
}

#[test]
fn a_key_that_vanishes_is_told_and_counted_from_scratch() {
    let clock = clock();
    let storage = MemoryStorage::new();
    let heard = Recorder::default();
    let breaker = builder("vanishing", &clock)
        .fail_max(1)
        .storage(storage.clone())
        .listener(heard.clone())
        .build()
        .unwrap();
    fail(&breaker).unwrap_err();
    assert!(storage.remove("vanishing"));
    assert_eq!(breaker.state().unwrap(), State::Closed);
    assert!(matches!(
        fail(&breaker),
        Err(tripswitch::CallError::Failed { tripped: true, .. })
    ));
    let changes: Vec<(State, State, bool)> = heard
        .changes()
        .iter()
        .map(|c| (c.previous, c.current, c.remote))
        .collect();
    assert_eq!(
        changes,
        vec![
            (State::Closed, State::Open, false),
            (State::Open, State::Closed, true),
            (State::Closed, State::Open, false),
        ]
    );
}

#[test]
fn breakers_built_over_time_never_count_as_runaways() {
    // Each build runs guest code; a deadline left over from an earlier call
    // must not accumulate (the epoch ticks every 10 ms of real time).
    for n in 0..15 {
        std::thread::sleep(Duration::from_millis(11));
        CircuitBreaker::builder(format!("built-{n}"))
            .build()
            .unwrap();
    }
}
