//! The Rust API: values and errors from `call`, `exclude`, the RAII permit,
//! panics, `call_async` and its cancellation, shared memory storage.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tripswitch::{CallError, CircuitBreaker, MemoryStorage, Outcome, State};
use tripswitch_tests::{Boom, Faulty, Heard, Recorder, builder, clock, fail};

/// Polls a future to completion on this thread.
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
    }
}

/// A future that is pending `n` times before it yields `value`.
struct PendingFor<T> {
    n: usize,
    value: Option<T>,
}

impl<T: Unpin> Future for PendingFor<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<T> {
        if self.n == 0 {
            Poll::Ready(self.value.take().expect("polled after completion"))
        } else {
            self.n -= 1;
            Poll::Pending
        }
    }
}

#[test]
fn call_returns_the_value_or_the_calls_own_error() {
    let clock = clock();
    let breaker = builder("values", &clock).fail_max(2).build().unwrap();
    assert_eq!(breaker.call(|| Ok::<_, Boom>("hello")).unwrap(), "hello");
    let first = fail(&breaker).unwrap_err();
    assert!(matches!(
        first,
        CallError::Failed {
            error: Boom,
            tripped: false
        }
    ));
    let second = fail(&breaker).unwrap_err();
    assert!(matches!(second, CallError::Failed { tripped: true, .. }));
    let rejected = fail(&breaker).unwrap_err();
    assert!(rejected.is_rejected());
    assert_eq!(rejected.retry_after(), Some(Duration::from_secs(60)));
    assert!(rejected.into_inner().is_none());

    let io = breaker
        .call(|| Err::<(), _>(std::io::Error::other("disk on fire")))
        .unwrap_err();
    assert_eq!(io.to_string(), "circuit open; retry after 60000 ms");
}

#[test]
fn the_tripping_error_says_so_and_keeps_its_source() {
    let clock = clock();
    let breaker = builder("source", &clock).fail_max(1).build().unwrap();
    let error = breaker
        .call(|| Err::<(), _>(std::io::Error::other("disk on fire")))
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "disk on fire (this failure opened the circuit)"
    );
    let source = std::error::Error::source(&error).unwrap();
    assert_eq!(source.to_string(), "disk on fire");
}

#[derive(Debug)]
enum DbError {
    NotFound,
    Timeout,
}

#[test]
fn excluded_errors_count_as_successes_and_still_reach_the_caller() {
    let clock = clock();
    let breaker = builder("exclude", &clock)
        .fail_max(2)
        .exclude(|e: &DbError| matches!(e, DbError::NotFound))
        .exclude(|_: &std::fmt::Error| true)
        .build()
        .unwrap();
    let timeout = breaker.call(|| Err::<(), _>(DbError::Timeout)).unwrap_err();
    assert!(matches!(
        timeout,
        CallError::Failed {
            error: DbError::Timeout,
            ..
        }
    ));
    assert_eq!(breaker.snapshot().unwrap().failures, 1);
    let not_found = breaker
        .call(|| Err::<(), _>(DbError::NotFound))
        .unwrap_err();
    assert!(matches!(
        not_found,
        CallError::Failed {
            error: DbError::NotFound,
            tripped: false
        }
    ));
    assert_eq!(
        breaker.snapshot().unwrap().failures,
        0,
        "an excluded error resets like a success"
    );
    breaker.call(|| Err::<(), _>(std::fmt::Error)).unwrap_err();
    assert_eq!(breaker.snapshot().unwrap().failures, 0);
    // A predicate for another type does not apply.
    breaker.call(|| Err::<(), _>(Boom)).unwrap_err();
    assert_eq!(breaker.snapshot().unwrap().failures, 1);
}

#[test]
fn a_panicking_call_counts_as_a_failure_and_the_panic_goes_on() {
    let clock = clock();
    let breaker = builder("panics", &clock).fail_max(1).build().unwrap();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        breaker.call(|| -> Result<(), Boom> { panic!("the call blew up") })
    }));
    assert!(caught.is_err(), "the panic reaches the caller");
    assert_eq!(breaker.state().unwrap(), State::Open);
}

#[test]
fn permits_report_explicitly_or_record_ignored_when_dropped() {
    let clock = clock();
    let heard = Recorder::default();
    let breaker = builder("permits", &clock)
        .fail_max(2)
        .listener(heard.clone())
        .build()
        .unwrap();
    let permit = breaker.acquire().unwrap();
    assert!(!permit.is_trial());
    assert!(!permit.report(Outcome::Failure).unwrap());
    drop(breaker.acquire().unwrap());
    assert_eq!(
        breaker.snapshot().unwrap().failures,
        1,
        "a dropped permit counts nothing"
    );
    assert!(
        breaker.acquire().unwrap().failure().unwrap(),
        "this failure trips"
    );
    assert_eq!(
        heard
            .take()
            .iter()
            .filter(|h| matches!(h, Heard::BeforeCall))
            .count(),
        3
    );
}

#[test]
fn call_async_records_the_result_after_the_future_completes() {
    let clock = clock();
    let breaker = builder("async", &clock).fail_max(1).build().unwrap();
    let ok = block_on(breaker.call_async(PendingFor {
        n: 3,
        value: Some(Ok::<_, Boom>(5)),
    }));
    assert_eq!(ok.unwrap(), 5);

    // While the future is pending, nothing has been recorded yet.
    let mut call = Box::pin(breaker.call_async(PendingFor {
        n: 1,
        value: Some(Err::<(), _>(Boom)),
    }));
    let mut context = Context::from_waker(Waker::noop());
    assert!(call.as_mut().poll(&mut context).is_pending());
    assert_eq!(breaker.state().unwrap(), State::Closed);
    match call.as_mut().poll(&mut context) {
        Poll::Ready(Err(CallError::Failed { tripped: true, .. })) => {}
        other => panic!("expected the failure to trip, got {other:?}"),
    }
    assert_eq!(breaker.state().unwrap(), State::Open);
}

#[test]
fn a_cancelled_async_call_records_ignored_and_frees_its_trial() {
    let clock = clock();
    let breaker = builder("cancel", &clock)
        .fail_max(1)
        .reset_timeout(Duration::from_millis(10))
        .build()
        .unwrap();
    fail(&breaker).unwrap_err();
    tripswitch_tests::advance(&clock, 10);
    let mut trial = Box::pin(breaker.call_async(PendingFor {
        n: usize::MAX,
        value: Some(Ok::<(), Boom>(())),
    }));
    let mut context = Context::from_waker(Waker::noop());
    assert!(trial.as_mut().poll(&mut context).is_pending());
    assert_eq!(breaker.snapshot().unwrap().trials_in_flight, 1);
    drop(trial);
    let snapshot = breaker.snapshot().unwrap();
    assert_eq!(
        (snapshot.state, snapshot.trials_in_flight),
        (State::HalfOpen, 0)
    );
    assert!(breaker.acquire().unwrap().is_trial());
}

#[test]
fn clones_share_one_breaker_and_memory_storage_is_shared_by_clones() {
    let clock = clock();
    let storage = MemoryStorage::new();
    let a = builder("shared", &clock)
        .fail_max(2)
        .storage(storage.clone())
        .build()
        .unwrap();
    let a_clone = a.clone();
    fail(&a).unwrap_err();
    assert_eq!(a_clone.snapshot().unwrap().failures, 1);
    let b = builder("shared", &clock)
        .fail_max(2)
        .storage(storage.clone())
        .build()
        .unwrap();
    fail(&b).unwrap_err();
    assert_eq!(a.state().unwrap(), State::Open);
    assert_eq!(storage.keys(), vec!["shared".to_string()]);
    // A breaker with its own default storage shares nothing.
    let alone = builder("shared", &clock).build().unwrap();
    assert_eq!(alone.state().unwrap(), State::Closed);
}

#[test]
fn breakers_and_permits_cross_threads() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<CircuitBreaker>();
    assert_send_sync::<tripswitch::Permit>();
    let breaker = CircuitBreaker::new("threads").unwrap();
    let permit = breaker.acquire().unwrap();
    std::thread::spawn(move || permit.success().unwrap())
        .join()
        .unwrap();
}

#[test]
fn many_breakers_come_and_go() {
    // Dropped breakers retire their guest resources; nothing accumulates errors.
    let clock = clock();
    for n in 0..300 {
        let breaker = builder(&format!("short-lived-{n}"), &clock)
            .build()
            .unwrap();
        breaker.call(|| Ok::<_, Boom>(())).unwrap();
    }
    let last = builder("survivor", &clock).fail_max(1).build().unwrap();
    fail(&last).unwrap_err();
    assert_eq!(last.state().unwrap(), State::Open);
}

#[test]
fn a_reused_answer_never_outlives_a_change_to_the_record() {
    let clock = clock();
    let storage = MemoryStorage::new();
    let heard = Recorder::default();
    let a = builder("reuse", &clock)
        .fail_max(2)
        .storage(storage.clone())
        .listener(heard.clone())
        .build()
        .unwrap();
    let b = builder("reuse", &clock)
        .fail_max(2)
        .storage(storage.clone())
        .build()
        .unwrap();
    for _ in 0..3 {
        a.call(|| Ok::<_, Boom>(())).unwrap();
    }
    let admitted = heard
        .take()
        .iter()
        .filter(|h| matches!(h, Heard::BeforeCall))
        .count();
    assert_eq!(
        admitted, 3,
        "reused answers are told to listeners like any other"
    );
    // Another breaker counts a failure: the record changed, a asks again.
    fail(&b).unwrap_err();
    fail(&a).unwrap_err();
    assert_eq!(a.state().unwrap(), State::Open);
    assert!(a.acquire().is_err());
    // An operator on the other breaker changes what a may do.
    b.disable().unwrap();
    assert!(a.acquire().is_ok());
    b.force_open().unwrap();
    assert!(matches!(
        a.acquire(),
        Err(tripswitch::Error::Rejected(
            tripswitch::Rejected::ForcedOpen
        ))
    ));
}

#[test]
fn window_outcomes_are_held_and_merged_by_flush_drop_and_the_flush_thread() {
    let storage = MemoryStorage::new();
    let clock = clock();
    let holding = || {
        builder("held", &clock)
            .storage(storage.clone())
            .failure_rate_threshold(50)
            .flush_interval(Duration::from_millis(100))
            .build()
            .unwrap()
    };
    let reader = builder("held", &clock)
        .storage(storage.clone())
        .failure_rate_threshold(50)
        .flush_interval(Duration::ZERO)
        .build()
        .unwrap();
    let calls = |breaker: &CircuitBreaker| breaker.snapshot().unwrap().window.calls;
    let holder = holding();
    for _ in 0..3 {
        holder.call(|| Ok::<_, ()>(())).unwrap();
    }
    assert_eq!(calls(&reader), 0, "held, not in the record");
    holder.flush().unwrap();
    assert_eq!(calls(&reader), 3);
    holder.call(|| Ok::<_, ()>(())).unwrap();
    drop(holder);
    assert_eq!(
        calls(&reader),
        4,
        "dropping the breaker merges what it held"
    );

    // The flush thread merges outcomes once they fall due on the breaker's clock.
    let holder = holding();
    holder.call(|| Ok::<_, ()>(())).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(calls(&reader), 4, "not due yet");
    clock.advance(Duration::from_millis(100));
    let start = std::time::Instant::now();
    while calls(&reader) != 5 {
        assert!(start.elapsed() < Duration::from_secs(5), "never merged");
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(holder);
}

#[test]
fn outcomes_a_dropped_breaker_could_not_merge_are_merged_once_the_storage_answers() {
    let storage = Faulty::new();
    let clock = clock();
    let windowed = |flush_ms: u64| {
        builder("dropped", &clock)
            .storage(storage.clone())
            .failure_rate_threshold(50)
            .flush_interval(Duration::from_millis(flush_ms))
            .build()
            .unwrap()
    };
    let holder = windowed(60_000);
    for _ in 0..3 {
        holder.call(|| Ok::<_, ()>(())).unwrap();
    }
    storage.set_failing(true);
    drop(holder);
    storage.set_failing(false);
    let reader = windowed(0);
    let calls = || reader.snapshot().unwrap().window.calls;
    assert_eq!(calls(), 0, "the merge at drop failed");
    // The flush thread tries again a second later (by the breaker's clock).
    clock.advance(Duration::from_secs(1));
    let start = std::time::Instant::now();
    while calls() != 3 {
        assert!(start.elapsed() < Duration::from_secs(5), "never merged");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_config_reads_every_default_as_the_component_resolved_it() {
    let plain = CircuitBreaker::new("defaults").unwrap().config().unwrap();
    assert_eq!(plain.fail_max, Some(5));
    assert_eq!(plain.reset_timeout_ms, Some(60_000));
    assert_eq!(plain.trial_timeout_ms, Some(60_000), "the reset timeout");
    assert_eq!(plain.fallback_state, Some(State::Closed));
    assert_eq!(plain.flush_interval_ms, Some(1_000));
    assert_eq!(
        (plain.failure_rate_threshold, plain.window_ms),
        (None, None)
    );
    let rated = CircuitBreaker::builder("rated")
        .failure_rate_threshold(50)
        .build()
        .unwrap()
        .config()
        .unwrap();
    assert_eq!(
        rated.fail_max, None,
        "the rate rule alone replaces fail-max"
    );
    assert_eq!(rated.window_ms, Some(30_000));
    assert_eq!(rated.minimum_calls, Some(100));
}
