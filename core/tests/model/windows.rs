//! Failure-rate windows shared by several instances: every reported outcome
//! counts once (never lost, never twice), whatever the interleaving, the
//! conflicts and the clock; the rate rules open the circuit; the backoff
//! grows and resets; a window of another shape is an error.

use proptest::collection::vec;
use proptest::prelude::*;
use tripswitch_core::breaker::{Breaker, NoticeKind};
use tripswitch_core::config::{Config, Options};
use tripswitch_core::machine::{Action, Outcome, Permit, Reason, State};
use tripswitch_core::shaping::LEASE_MS;
use tripswitch_core::window::{Shape, Totals};

use crate::KEY;
use crate::ports::Scripted;
use crate::strategies::settings;

/// A window that never trips in these runs: its thresholds need more calls
/// than a run makes.
fn counting(window_ms: Option<u64>, window_calls: Option<u32>, flush_interval_ms: u64) -> Config {
    Config::resolve(
        KEY,
        &Options {
            failure_rate_threshold: Some(100),
            minimum_calls: Some(1_000_000),
            window_ms,
            window_calls,
            slow_call_ms: Some(5),
            flush_interval_ms: Some(flush_interval_ms),
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
    Flush(usize),
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
            (0..4usize).prop_map(Step::Flush),
        ],
        0..120,
    )
}

proptest! {
    #![proptest_config(settings())]

    /// Up to four instances over one storage, each with its own stale cache
    /// (so their writes conflict and are recomputed), each holding outcomes
    /// and merging them at its own moments (a flush, the flush interval, a
    /// report that cannot be held), report outcomes in any order: once every
    /// instance has flushed, the window holds exactly the non-ignored
    /// outcomes reported, the failed and the slow ones among them.
    #[test]
    fn window_totals_are_the_outcomes_reported(
        time in any::<bool>(),
        flush_interval in prop_oneof![Just(0u64), 1..40u64, Just(1_000_000u64)],
        n in 1..=4usize,
        steps in steps(),
    ) {
        let cfg = if time {
            counting(Some(100_000_000), None, flush_interval)
        } else {
            counting(None, Some(10_000), flush_interval)
        };
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
                Step::Flush(w) => breakers[w % n].flush(now).expect("a flush"),
            }
        }
        for breaker in &breakers {
            breaker.flush(now).unwrap();
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

/// A failure-rate rule over the last ten calls, every report written.
fn ten_call_window() -> Options {
    Options {
        failure_rate_threshold: Some(50),
        minimum_calls: Some(2),
        window_calls: Some(10),
        flush_interval_ms: Some(0),
        ..Options::default()
    }
}

#[test]
fn another_window_shape_counts_nothing_until_the_kept_one_is_left_for_the_lease() {
    let storage = Scripted::holding(None, 0);
    let calls = ten_call_window();
    let old = breaker(&storage, calls.clone());
    let new = breaker(
        &storage,
        Options {
            window_calls: None,
            window_ms: Some(1000),
            ..calls.clone()
        },
    );
    assert!(!call(&old, Outcome::Success, 1, 0));
    // While the old config's instances write, the new one counts nothing in
    // the window, trips nothing by its rate, and errs nowhere; its failures
    // count in the consecutive rule.
    assert!(!call(&new, Outcome::Failure, 2, 0));
    assert!(!call(&new, Outcome::Failure, 3, 0));
    let record = storage.record().unwrap();
    assert_eq!(record.window.as_ref().unwrap().totals(3).calls, 1);
    assert_eq!(record.failures, 2);
    assert_eq!(record.shaping.shape, Some(Shape::Calls { calls: 10 }));
    assert_eq!(record.shaping.seen_ms, 1, "the new config renews nothing");
    assert!(!call(&old, Outcome::Success, 4, 0));
    assert_eq!(storage.record().unwrap().shaping.seen_ms, 4);
    // The old config's instances are gone: a lease after their last write,
    // the new config restarts the window with its shape, and trips on it.
    let later = 4 + LEASE_MS;
    assert!(!call(&new, Outcome::Failure, later - 1, 0));
    assert_eq!(
        storage
            .record()
            .unwrap()
            .window
            .unwrap()
            .totals(later)
            .calls,
        2
    );
    assert!(storage.notices.borrow().is_empty());
    assert!(!call(&new, Outcome::Failure, later, 0));
    let record = storage.record().unwrap();
    assert_eq!(record.shaping.shape, Some(Shape::Time { ms: 1000 }));
    assert_eq!(record.window.unwrap().totals(later).calls, 1);
    assert!(call(&new, Outcome::Failure, later + 1, 0));
    assert_eq!(storage.record().unwrap().reason, Reason::FailureRate);
    let notices = storage.notices.borrow();
    assert_eq!(notices.len(), 1, "told once: {notices:?}");
    assert_eq!(notices[0].kind, NoticeKind::WindowRestarted);
    assert!(
        notices[0]
            .message
            .contains("a 1000 ms time window (window-ms)"),
        "{}",
        notices[0].message
    );
}

#[test]
fn a_config_without_a_window_drops_the_kept_one_after_the_lease() {
    let storage = Scripted::holding(None, 0);
    let calls = ten_call_window();
    let old = breaker(&storage, calls.clone());
    let none = breaker(&storage, Options::default());
    assert!(!call(&old, Outcome::Success, 1, 0));
    assert!(!call(&none, Outcome::Failure, 2, 0));
    assert!(storage.record().unwrap().window.is_some(), "kept");
    let later = 1 + LEASE_MS;
    assert!(!call(&none, Outcome::Failure, later, 0));
    let record = storage.record().unwrap();
    assert_eq!((record.window, record.shaping.shape), (None, None));
    // A window config now defers to the no-window one for a lease.
    assert!(!call(&old, Outcome::Failure, later + 1, 0));
    assert_eq!(storage.record().unwrap().window, None, "deferred");
    assert_eq!(storage.notices.borrow().len(), 1);
}

#[test]
fn an_instance_holds_window_outcomes_until_they_are_due_or_would_trip() {
    let storage = Scripted::holding(None, 0);
    let holding = breaker(
        &storage,
        Options {
            failure_rate_threshold: Some(50),
            minimum_calls: Some(4),
            window_calls: Some(100),
            flush_interval_ms: Some(1000),
            ..Options::default()
        },
    );
    // Held: nothing written, yet this instance shows them.
    assert!(!call(&holding, Outcome::Success, 0, 0));
    assert!(!call(&holding, Outcome::Success, 10, 0));
    assert!(!call(&holding, Outcome::Failure, 20, 0));
    assert_eq!(storage.swaps.get(), 0, "held, not written");
    assert_eq!(holding.snapshot(20).unwrap().window.calls, 3);
    assert_eq!(storage.record(), None);
    // A failure that makes 2 of 4 (50 %) would open it: merged at once, and it trips.
    assert!(call(&holding, Outcome::Failure, 30, 0));
    assert_eq!(storage.record().unwrap().reason, Reason::FailureRate);

    // Held outcomes become due after the flush interval, or on a flush.
    let storage = Scripted::holding(None, 0);
    let holding = breaker(
        &storage,
        Options {
            failure_rate_threshold: Some(50),
            flush_interval_ms: Some(1000),
            ..Options::default()
        },
    );
    assert!(!call(&holding, Outcome::Success, 0, 0));
    assert!(!call(&holding, Outcome::Success, 100, 0));
    assert!(!call(&holding, Outcome::Success, 999, 0));
    let stored = |at| {
        storage
            .record()
            .and_then(|r| r.window)
            .map_or(0, |w| w.totals(at).calls)
    };
    assert_eq!(stored(999), 0);
    assert!(
        !call(&holding, Outcome::Success, 1000, 0),
        "1000 ms after the first held"
    );
    assert_eq!(stored(1000), 4);
    assert!(!call(&holding, Outcome::Failure, 1200, 0));
    assert_eq!(stored(1300), 4);
    holding.flush(1300).unwrap();
    assert_eq!(stored(1300), 5);
    holding.flush(1300).unwrap();
    assert_eq!(stored(1300), 5, "a flush with nothing held writes nothing");
}

#[test]
fn held_outcomes_of_an_older_generation_count_nowhere() {
    let storage = Scripted::holding(None, 0);
    let options = Options {
        failure_rate_threshold: Some(50),
        flush_interval_ms: Some(1000),
        ..Options::default()
    };
    let holder = breaker(&storage, options.clone());
    let operator = breaker(&storage, options);
    assert!(!call(&holder, Outcome::Success, 0, 0));
    assert!(!call(&holder, Outcome::Failure, 10, 0));
    // Another instance opens and closes the circuit meanwhile: a new generation.
    operator.operate(Action::Open, 20).unwrap();
    operator.operate(Action::Close, 30).unwrap();
    holder.flush(40).unwrap();
    let record = storage.record().unwrap();
    assert_eq!(record.state, State::Closed);
    assert_eq!(record.window, None, "the held failure counts nowhere");
}
