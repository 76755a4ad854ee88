//! Processes whose clocks disagree share one record: one ten minutes ahead
//! among three neither takes the others' outcomes out of the window, nor
//! parks the circuit open for its lead, nor holds a trial slot nobody else
//! can forfeit. Three breakers on one storage, each on its own virtual clock.

use std::time::Duration;

use tripswitch::{CircuitBreaker, Error, ManualClock, MemoryStorage, Rejected, State};
use tripswitch_tests::{T0, builder, fail, succeed};

/// Ten minutes.
const LEAD_MS: u64 = 600_000;

/// Two clocks on time and one `LEAD_MS` ahead.
fn clocks() -> [ManualClock; 3] {
    [
        ManualClock::new(T0),
        ManualClock::new(T0),
        ManualClock::new(T0 + LEAD_MS),
    ]
}

#[test]
fn a_clock_ahead_takes_no_outcome_out_of_the_window() {
    let storage = MemoryStorage::new();
    let [a, b, fast] = clocks().map(|clock| {
        builder("skewed-window", &clock)
            .storage(storage.clone())
            .failure_rate_threshold(50)
            .minimum_calls(10)
            .window(Duration::from_secs(10))
            .flush_interval(Duration::ZERO)
            .build()
            .unwrap()
    });
    let calls = |breaker: &CircuitBreaker| {
        let window = breaker.snapshot().unwrap().window;
        (window.calls, window.failures)
    };
    succeed(&fast).unwrap();
    succeed(&fast).unwrap();
    for breaker in [&a, &b] {
        for _ in 0..3 {
            fail(breaker).unwrap_err();
            succeed(breaker).unwrap();
        }
    }
    assert_eq!(calls(&a), (14, 6), "every outcome counts");
    assert_eq!(calls(&fast), (14, 6), "the same window for all");
    fail(&b).unwrap_err();
    assert_eq!(a.state().unwrap(), State::Closed, "7 of 15");
    fail(&a).unwrap_err();
    assert_eq!(b.state().unwrap(), State::Open, "8 of 16: the rate reached");
}

#[test]
fn an_open_stamped_ahead_lasts_its_duration_and_its_trial_can_be_forfeited() {
    let storage = MemoryStorage::new();
    let clocks = clocks();
    let [a, _, fast] = clocks.clone().map(|clock| {
        builder("skewed-open", &clock)
            .storage(storage.clone())
            .fail_max(1)
            .reset_timeout(Duration::from_secs(1))
            .trial_timeout(Duration::from_secs(5))
            .build()
            .unwrap()
    });
    fail(&fast).unwrap_err();
    // The open counts from the first look of a clock on time: a second, not
    // ten minutes and a second.
    match a.acquire() {
        Err(Error::Rejected(Rejected::Open { retry_after })) => {
            assert_eq!(retry_after, Duration::from_secs(1));
        }
        other => panic!("open: {other:?}"),
    }
    clocks[0].advance(Duration::from_secs(1));
    clocks[2].advance(Duration::from_secs(1));
    // The fast clock takes the trial and never reports: the slot it stamped
    // is forfeited by the trial timeout on the others' clocks too.
    let trial = fast.acquire().unwrap();
    assert!(trial.is_trial());
    std::mem::forget(trial);
    let late = a.acquire().unwrap();
    assert!(late.is_trial(), "stamped more than a trial timeout ahead");
    late.report(tripswitch::Outcome::Success).unwrap();
    assert_eq!(a.state().unwrap(), State::Closed);
}
