//! Failure-rate windows shared by several instances: every reported outcome
//! counts once (never lost, never twice), whatever the interleaving, the
//! conflicts and the clock; the rate rules open the circuit; the backoff
//! grows and resets; a window of another shape is an error.

use proptest::collection::vec;
use proptest::prelude::*;
use tripswitch_core::breaker::{Breaker, BreakerError};
use tripswitch_core::config::{Config, Options};
use tripswitch_core::machine::{Action, Outcome, Permit, Reason, State};
use tripswitch_core::window::Totals;

use crate::KEY;
use crate::ports::Scripted;
use crate::strategies::settings;

/// A window that never trips in these runs: its thresholds need more calls
/// than a run makes.
fn counting(window_ms: Option<u64>, window_calls: Option<u32>) -> Config {
    Config::resolve(
        KEY,
        &Options {
            failure_rate_threshold: Some(100),
            minimum_calls: Some(1_000_000),
            window_ms,
            window_calls,
            slow_call_ms: Some(5),
            ..Options::default()
        },
    )
    .unwrap()
}

/// One step of a run: an instance acquires, or a held permit is reported
/// (with an outcome, after a delay), or the clock moves.
#[derive(Clone, Debug)]
enum Step {
    Acquire(usize),
    Report(usize, Outcome, u64),
    Tick(u64),
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let outcome = prop_oneof![
        Just(Outcome::Success),
        Just(Outcome::Failure),
        Just(Outcome::Ignored)
    ];
    vec(
        prop_oneof![
            (0..4usize).prop_map(Step::Acquire),
            (0..64usize, outcome, 0..12u64).prop_map(|(p, o, d)| Step::Report(p, o, d)),
            (0..50u64).prop_map(Step::Tick),
        ],
        0..120,
    )
}

proptest! {
    #![proptest_config(settings())]

    /// Up to four instances over one storage, each with its own stale cache
    /// (so their writes conflict and are recomputed), report outcomes in any
    /// order: the window holds exactly the non-ignored outcomes reported,
    /// the failed and the slow ones among them.
    #[test]
    fn window_totals_are_the_outcomes_reported(
        time in any::<bool>(),
        n in 1..=4usize,
        steps in steps(),
    ) {
        let cfg = if time { counting(Some(100_000_000), None) } else { counting(None, Some(10_000)) };
        let storage = Scripted::holding(None, 0);
        let breakers: Vec<_> = (0..n)
            .map(|_| Breaker::new(KEY.to_owned(), cfg.clone(), &storage))
            .collect();
        let mut now = 1_000_000u64;
        let mut held: Vec<(usize, Permit)> = Vec::new();
        let mut want = Totals::default();
        for step in steps {
            match step {
                Step::Acquire(w) => {
                    let w = w % n;
                    let admission = breakers[w].acquire(now).expect("closed admits");
                    prop_assert!(!admission.quiet_success, "with a window every success counts");
                    held.push((w, admission.permit));
                }
                Step::Report(p, outcome, delay) if !held.is_empty() => {
                    let (w, permit) = held.swap_remove(p % held.len());
                    let at = permit.issued_at_ms.max(now) + delay;
                    now = at;
                    breakers[w].report(&permit, outcome, at).expect("a report");
                    if outcome != Outcome::Ignored {
                        want.calls += 1;
                        want.failed += u32::from(outcome == Outcome::Failure);
                        want.slow += u32::from(at - permit.issued_at_ms > 5);
                    }
                }
                Step::Report(..) => {}
                Step::Tick(ms) => now += ms,
            }
        }
        let snapshot = breakers[0].snapshot(now).unwrap();
        prop_assert_eq!(snapshot.state, State::Closed);
        prop_assert_eq!(snapshot.window, want);
    }
}

fn breaker(storage: &Scripted, options: Options) -> Breaker<&Scripted> {
    Breaker::new(
        KEY.to_owned(),
        Config::resolve(KEY, &options).unwrap(),
        storage,
    )
}

fn call(breaker: &Breaker<&Scripted>, outcome: Outcome, at: u64, took: u64) -> bool {
    let permit = breaker.acquire(at).expect("admitted").permit;
    breaker.report(&permit, outcome, at + took).unwrap().tripped
}

#[test]
fn the_failure_rate_opens_the_circuit_once_the_window_holds_minimum_calls() {
    let storage = Scripted::holding(None, 0);
    let rate = breaker(
        &storage,
        Options {
            failure_rate_threshold: Some(50),
            minimum_calls: Some(4),
            window_calls: Some(10),
            ..Options::default()
        },
    );
    // Three failures of three calls: 100 %, but under minimum-calls.
    for at in 1..=3 {
        assert!(!call(&rate, Outcome::Failure, at, 0));
    }
    // A fourth call makes four: 75 % >= 50 %, open.
    assert!(call(&rate, Outcome::Success, 4, 0));
    let record = storage.record().unwrap();
    assert_eq!(
        (record.state, record.reason),
        (State::Open, Reason::FailureRate)
    );
    assert_eq!(record.window, None, "an open starts the next window empty");
}

#[test]
fn consecutive_failures_still_open_it_only_when_fail_max_is_set() {
    let storage = Scripted::holding(None, 0);
    let rate_only = breaker(
        &storage,
        Options {
            failure_rate_threshold: Some(90),
            minimum_calls: Some(100),
            ..Options::default()
        },
    );
    for at in 1..=20 {
        assert!(
            !call(&rate_only, Outcome::Failure, at, 0),
            "no fail-max rule"
        );
    }
    let storage = Scripted::holding(None, 0);
    let both = breaker(
        &storage,
        Options {
            failure_rate_threshold: Some(90),
            minimum_calls: Some(100),
            fail_max: Some(3),
            ..Options::default()
        },
    );
    assert!(!call(&both, Outcome::Failure, 1, 0));
    assert!(!call(&both, Outcome::Failure, 2, 0));
    assert!(call(&both, Outcome::Failure, 3, 0));
    assert_eq!(storage.record().unwrap().reason, Reason::Tripped);
}

#[test]
fn slow_calls_open_it_and_a_slow_trial_fails() {
    let storage = Scripted::holding(None, 0);
    let slow = breaker(
        &storage,
        Options {
            slow_call_ms: Some(100),
            slow_call_rate_threshold: Some(50),
            minimum_calls: Some(2),
            reset_timeout_ms: Some(1000),
            ..Options::default()
        },
    );
    assert!(
        !call(&slow, Outcome::Success, 0, 100),
        "exactly the limit is not slow"
    );
    assert!(
        call(&slow, Outcome::Success, 200, 101),
        "one slow of two: 50 %"
    );
    assert_eq!(storage.record().unwrap().reason, Reason::SlowCallRate);
    // The trial succeeds, but slowly: a failed trial.
    assert!(call(&slow, Outcome::Success, 1301, 150));
    let record = storage.record().unwrap();
    assert_eq!(
        (record.state, record.reason),
        (State::Open, Reason::TrialFailed)
    );
}

#[test]
fn backoff_grows_with_each_failed_trial_is_capped_and_resets_on_close() {
    let storage = Scripted::holding(None, 0);
    let backoff = breaker(
        &storage,
        Options {
            fail_max: Some(1),
            reset_timeout_ms: Some(1000),
            backoff_multiplier: Some(2.0),
            max_reset_timeout_ms: Some(3000),
            ..Options::default()
        },
    );
    let retry = || {
        let record = storage.record().unwrap();
        (
            record.opens,
            record.retry_at_ms.unwrap() - record.opened_at_ms.unwrap(),
        )
    };
    let mut at = 0;
    assert!(call(&backoff, Outcome::Failure, at, 0));
    assert_eq!(retry(), (1, 1000));
    for want in [(2, 2000), (3, 3000), (4, 3000)] {
        let (_, wait) = retry();
        at += wait;
        assert!(backoff.acquire(at - 1).is_err(), "not before retry-at");
        assert!(call(&backoff, Outcome::Failure, at, 0), "the trial fails");
        assert_eq!(retry(), want);
    }
    // An operator's open keeps the count; a close resets it.
    backoff.operate(Action::Open, at).unwrap();
    assert_eq!(retry(), (4, 3000));
    backoff.operate(Action::Close, at).unwrap();
    assert!(call(&backoff, Outcome::Failure, at, 0));
    assert_eq!(retry(), (1, 1000));
}

#[test]
fn a_window_of_another_shape_is_an_error_naming_the_field() {
    let storage = Scripted::holding(None, 0);
    let calls = Options {
        failure_rate_threshold: Some(50),
        window_calls: Some(10),
        ..Options::default()
    };
    assert!(!call(
        &breaker(&storage, calls.clone()),
        Outcome::Success,
        1,
        0
    ));
    let timed = breaker(
        &storage,
        Options {
            window_calls: None,
            window_ms: Some(1000),
            ..calls.clone()
        },
    );
    let permit = timed.acquire(2).unwrap().permit;
    let Err(BreakerError::Mismatch(message)) = timed.report(&permit, Outcome::Success, 2) else {
        panic!("a mismatch");
    };
    assert!(
        message.contains("a 10-call window (window-calls)"),
        "{message}"
    );
    assert!(
        message.contains("a 1000 ms time window (window-ms)"),
        "{message}"
    );
    let none = breaker(&storage, Options::default());
    let permit = none.acquire(3).unwrap().permit;
    assert!(matches!(
        none.report(&permit, Outcome::Failure, 3),
        Err(BreakerError::Mismatch(_))
    ));
    assert_eq!(
        storage.record().unwrap().window.unwrap().totals(3).calls,
        1,
        "nothing counted"
    );
}
