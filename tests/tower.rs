//! The tower middleware on a test service (failures trip it, a refusal is
//! the typed error and the inner service is not called, a trial closes it,
//! a dropped response future frees its trial slot, poll_ready takes no
//! permit), and the axum example over real HTTP on loopback.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

use futures_lite::future::block_on;
use tower::{Layer, Service, ServiceExt, service_fn};
use tripswitch::tower::{CircuitBreakerLayer, ServiceError};
use tripswitch::{Outcome, Rejected, State};
use tripswitch_tests::{advance, builder, clock};

#[path = "../host/examples/axum.rs"]
mod example;

/// A service that fails when asked to, counting the calls it got.
fn counted(
    calls: Arc<AtomicUsize>,
) -> impl Service<bool, Response = &'static str, Error = &'static str, Future: Send>
+ Clone
+ Send
+ 'static {
    service_fn(move |fail: bool| {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::Relaxed);
            if fail { Err("down") } else { Ok("ok") }
        }
    })
}

#[test]
fn failures_trip_refusals_are_typed_and_a_trial_closes() {
    let clock = clock();
    let breaker = builder("tower", &clock).fail_max(2).build().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut service = CircuitBreakerLayer::new(breaker.clone()).layer(counted(calls.clone()));
    let mut call = |fail: bool| block_on(service.ready()).unwrap().call(fail);
    assert_eq!(block_on(call(false)).unwrap(), "ok");
    assert!(matches!(
        block_on(call(true)),
        Err(ServiceError::Inner("down"))
    ));
    assert!(matches!(
        block_on(call(true)),
        Err(ServiceError::Inner("down"))
    ));
    assert_eq!(breaker.state().unwrap(), State::Open);
    let refused = block_on(call(false)).unwrap_err();
    assert!(matches!(
        refused,
        ServiceError::Rejected(Rejected::Open { .. })
    ));
    assert_eq!(
        refused.retry_after(),
        Some(std::time::Duration::from_secs(60))
    );
    assert_eq!(
        calls.load(Ordering::Relaxed),
        3,
        "a refused call never reaches the service"
    );
    advance(&clock, 60_000);
    assert_eq!(block_on(call(false)).unwrap(), "ok", "the trial");
    assert_eq!(breaker.state().unwrap(), State::Closed);
}

#[test]
fn a_classifier_decides_and_a_dropped_future_frees_its_trial_slot() {
    let clock = clock();
    let breaker = builder("classified", &clock)
        .fail_max(1)
        .reset_timeout(std::time::Duration::from_secs(1))
        .build()
        .unwrap();
    // "ok" counts as a failure here: the classifier says so.
    let layer = CircuitBreakerLayer::new(breaker.clone()).classifier(
        |result: Result<&&'static str, &&'static str>| match result {
            Ok(&"ok") => Outcome::Failure,
            _ => Outcome::Success,
        },
    );
    let mut service = layer.layer(counted(Arc::new(AtomicUsize::new(0))));
    assert!(block_on(service.call(false)).is_ok());
    assert_eq!(
        breaker.state().unwrap(),
        State::Open,
        "the classifier's failure tripped it"
    );
    advance(&clock, 1_000);

    // A trial whose response future is dropped before it finishes.
    let pending =
        service_fn(|_: bool| std::future::pending::<Result<&'static str, &'static str>>());
    let mut stuck = CircuitBreakerLayer::new(breaker.clone()).layer(pending);
    let mut future = Box::pin(stuck.call(false));
    let mut cx = Context::from_waker(Waker::noop());
    assert!(future.as_mut().poll(&mut cx).is_pending());
    assert_eq!(breaker.snapshot().unwrap().trials_in_flight, 1);
    drop(future);
    assert_eq!(
        breaker.snapshot().unwrap().trials_in_flight,
        0,
        "dropped: ignored"
    );
}

#[test]
fn poll_ready_takes_no_permit() {
    let clock = clock();
    let breaker = builder("ready", &clock)
        .fail_max(1)
        .reset_timeout(std::time::Duration::from_secs(1))
        .build()
        .unwrap();
    breaker.open().unwrap();
    advance(&clock, 1_000);
    let mut service =
        CircuitBreakerLayer::new(breaker.clone()).layer(counted(Arc::new(AtomicUsize::new(0))));
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..3 {
        assert!(matches!(
            Service::<bool>::poll_ready(&mut service, &mut cx),
            Poll::Ready(Ok(()))
        ));
    }
    assert_eq!(breaker.snapshot().unwrap().trials_in_flight, 0);
    assert_eq!(
        block_on(service.call(false)).unwrap(),
        "ok",
        "the one trial is still free"
    );
    assert_eq!(breaker.state().unwrap(), State::Closed);
}

#[test]
fn the_axum_example_answers_503_with_retry_after_once_open() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let breaker = tripswitch::CircuitBreaker::builder("axum")
        .fail_max(3)
        .build()
        .unwrap();
    let dependency = example::Dependency::default();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = example::app(breaker.clone(), dependency.clone());
    runtime.spawn(async move { axum::serve(listener, app).await });

    let get = || tripswitch_testkit::http::get(addr, "/").unwrap();
    let healthy = get();
    assert_eq!((healthy.status, healthy.body.as_str()), (200, "ok\n"));
    dependency.0.store(true, Ordering::Relaxed);
    for _ in 0..3 {
        assert_eq!(get().status, 502);
    }
    assert_eq!(breaker.state().unwrap(), State::Open);
    let refused = get();
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.header("retry-after"), Some("60"));
    dependency.0.store(false, Ordering::Relaxed);
    assert_eq!(
        get().status,
        503,
        "open until the timeout, whatever the dependency does"
    );
}
