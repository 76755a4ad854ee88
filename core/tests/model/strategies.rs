//! The generators the property tests draw from: configurations, records,
//! clock steps and the steps of a run.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use tripswitch_core::config::Config;
use tripswitch_core::machine::{Action, Outcome, Reason, Record, State};

/// A clock step: a few ms, or around a timeout (-1, exactly, +1), or far.
#[derive(Clone, Copy, Debug)]
pub enum Wait {
    Ms(u64),
    Reset(u64),
    Trial(u64),
    Far,
}

impl Wait {
    pub fn ms(self, cfg: &Config) -> u64 {
        match self {
            Wait::Ms(ms) => ms,
            Wait::Reset(d) => cfg.reset_timeout_ms + d - 1,
            Wait::Trial(d) => cfg.trial_timeout_ms + d - 1,
            Wait::Far => 10_000,
        }
    }
}

/// How an acquire asks: plainly, or at a version the host names.
#[derive(Clone, Copy, Debug)]
pub enum Ask {
    /// `acquire`: always loads.
    Plain,
    /// `acquire_at_version` with the stored version: loads only if the
    /// instance's cached version is another.
    Current,
    /// `acquire_at_version` with a version the storage has not reached
    /// (stored + 1 + k), so never the cached one: loads.
    Ahead(u64),
    /// A host that reads the stored version for free: where it kept an
    /// answer that still holds (its `holds` names the stored version, and
    /// now is before its end), it answers with it, calling no component;
    /// otherwise as `Current`. (Where no host cache is kept, simply as
    /// `Current`.)
    Reuse,
}

/// One step; the `usize` picks the breaker instance (mod their number).
#[derive(Clone, Debug)]
pub enum Op {
    Acquire(usize, Ask),
    Report(Index, Outcome, usize),
    Operate(Action, usize),
    Snapshot(usize),
    Wait(Wait),
}

/// The default settings (PROPTEST_CASES still applies), without writing
/// regression files next to this one.
pub fn settings() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

pub fn config() -> impl Strategy<Value = Config> {
    (1..=4u32, 1..=50u64, 1..=3u32, 1..=3u32, 1..=50u64).prop_map(
        |(fail_max, reset_timeout_ms, success_threshold, half_open_max_calls, trial_timeout_ms)| {
            Config {
                fail_max,
                reset_timeout_ms,
                success_threshold,
                half_open_max_calls,
                trial_timeout_ms,
                fallback_state: State::Closed,
                ..Config::default()
            }
        },
    )
}

/// The smallest configuration: every count and timeout 1.
pub fn tiny() -> Config {
    Config {
        fail_max: 1,
        reset_timeout_ms: 1,
        success_threshold: 1,
        half_open_max_calls: 1,
        trial_timeout_ms: 1,
        fallback_state: State::Closed,
        ..Config::default()
    }
}

pub fn start() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), Just(1_700_000_000_000u64)]
}

pub fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        2 => Just(Outcome::Success),
        3 => Just(Outcome::Failure),
        1 => Just(Outcome::Ignored),
    ]
}

pub fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        Just(Action::Open),
        Just(Action::Close),
        Just(Action::HalfOpen),
        Just(Action::ForceOpen),
        Just(Action::Disable),
    ]
}

fn wait() -> impl Strategy<Value = Wait> {
    prop_oneof![
        3 => (0..4u64).prop_map(Wait::Ms),
        2 => (0..3u64).prop_map(Wait::Reset),
        2 => (0..3u64).prop_map(Wait::Trial),
        1 => Just(Wait::Far),
    ]
}

fn ask() -> impl Strategy<Value = Ask> {
    prop_oneof![
        2 => Just(Ask::Plain),
        2 => Just(Ask::Current),
        2 => Just(Ask::Reuse),
        1 => (0..3u64).prop_map(Ask::Ahead),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..3usize, ask()).prop_map(|(w, a)| Op::Acquire(w, a)),
        5 => (any::<Index>(), outcome(), 0..3usize).prop_map(|(i, o, w)| Op::Report(i, o, w)),
        1 => (action(), 0..3usize).prop_map(|(a, w)| Op::Operate(a, w)),
        1 => (0..3usize).prop_map(Op::Snapshot),
        4 => wait().prop_map(Op::Wait),
    ]
}

pub fn ops() -> impl Strategy<Value = Vec<Op>> {
    vec(op(), 1..70)
}

/// A time in ms: small, a plausible Unix time, anything, or near u64::MAX.
pub fn moment() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => 0..200u64,
        1 => Just(1_700_000_000_000u64),
        2 => any::<u64>(),
        1 => (u64::MAX - 200)..=u64::MAX,
    ]
}

/// A count or limit of at least 1: small, anything, or the largest.
fn at_least_one_u32() -> impl Strategy<Value = u32> {
    prop_oneof![3 => 1..=4u32, 1 => 1..=u32::MAX, 1 => Just(u32::MAX)]
}

/// A timeout of at least 1 ms: small, anything, or the largest.
fn at_least_one_ms() -> impl Strategy<Value = u64> {
    prop_oneof![3 => 1..=100u64, 1 => 1..=u64::MAX, 1 => Just(u64::MAX)]
}

/// Any valid configuration, extremes included.
pub fn wide_config() -> impl Strategy<Value = Config> {
    (
        at_least_one_u32(),
        at_least_one_ms(),
        at_least_one_u32(),
        at_least_one_u32(),
        at_least_one_ms(),
        fallback(),
    )
        .prop_map(
            |(
                fail_max,
                reset_timeout_ms,
                success_threshold,
                half_open_max_calls,
                trial_timeout_ms,
                fallback_state,
            )| Config {
                fail_max,
                reset_timeout_ms,
                success_threshold,
                half_open_max_calls,
                trial_timeout_ms,
                fallback_state,
                ..Config::default()
            },
        )
}

/// Any record the format can hold: any state with any counters, opened-at,
/// generation (wrapping included), trials, reason and change time,
/// consistent or not.
pub fn wide_record() -> impl Strategy<Value = Record> {
    (
        (
            any_state(),
            prop_oneof![0..4u32, any::<u32>()],
            prop_oneof![0..4u32, any::<u32>()],
            prop_oneof![0..6u64, any::<u64>(), Just(u64::MAX)],
        ),
        prop::option::of(moment()),
        vec(moment(), 0..5),
        any_reason(),
        moment(),
    )
        .prop_map(
            |(
                (state, failures, successes, generation),
                opened_at_ms,
                trials,
                reason,
                changed_at_ms,
            )| Record {
                state,
                failures,
                successes,
                opened_at_ms,
                generation,
                trials,
                reason,
                changed_at_ms,
                ..Record::default()
            },
        )
}

/// A time relative to another: so many ms later or earlier (saturating).
pub fn shift() -> impl Strategy<Value = (bool, u64)> {
    (
        any::<bool>(),
        prop_oneof![
            3 => 0..3u64,
            3 => 0..1_000u64,
            1 => Just(60_000u64),
            2 => any::<u64>(),
            1 => Just(u64::MAX),
        ],
    )
}

pub fn any_state() -> impl Strategy<Value = State> {
    prop_oneof![
        Just(State::Closed),
        Just(State::Open),
        Just(State::HalfOpen),
        Just(State::ForcedOpen),
        Just(State::Disabled),
    ]
}

pub fn any_reason() -> impl Strategy<Value = Reason> {
    prop_oneof![
        Just(Reason::Tripped),
        Just(Reason::TrialFailed),
        Just(Reason::Recovered),
        Just(Reason::TimeoutElapsed),
        Just(Reason::Operator),
    ]
}

/// A fallback state: one that admits (closed, disabled) or one that rejects.
pub fn fallback() -> impl Strategy<Value = State> {
    prop_oneof![
        Just(State::Closed),
        Just(State::Open),
        Just(State::ForcedOpen),
        Just(State::Disabled),
    ]
}

/// A record with small numbers, in any state, with any reason.
pub fn any_record() -> impl Strategy<Value = Record> {
    (
        any_state(),
        0..4u32,
        0..3u32,
        0..6u64,
        0..100u64,
        vec(0..100u64, 0..3),
        any_reason(),
        0..100u64,
    )
        .prop_map(
            |(state, failures, successes, generation, opened_at, trials, reason, changed_at_ms)| {
                Record {
                    state,
                    failures,
                    successes,
                    opened_at_ms: Some(opened_at),
                    generation,
                    trials,
                    reason,
                    changed_at_ms,
                    ..Record::default()
                }
            },
        )
}

/// One call against a pathological storage.
#[derive(Clone, Debug)]
pub enum Try {
    Acquire,
    /// A permit of the stored generation (or the one before), trial or not,
    /// issued at one of the stored trial times (or now).
    Report {
        older: bool,
        trial: bool,
        issued: Index,
        outcome: Outcome,
    },
    Operate(Action),
    Snapshot,
}

pub fn attempt() -> impl Strategy<Value = Try> {
    prop_oneof![
        2 => Just(Try::Acquire),
        3 => (prop::bool::weighted(0.2), any::<bool>(), any::<Index>(), outcome()).prop_map(
            |(older, trial, issued, outcome)| Try::Report { older, trial, issued, outcome }
        ),
        1 => action().prop_map(Try::Operate),
        1 => Just(Try::Snapshot),
    ]
}
