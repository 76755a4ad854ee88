//! Property tests of the guest: `machine` against a reference model, and `Breaker`s over shared, conflicting, failing and flaky storages.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use tripswitch_guest::breaker::{Breaker, Denied, Grant, MAX_ATTEMPTS, Port, Stored, Swap};
use tripswitch_guest::config::Config;
use tripswitch_guest::machine::{
    self, Action, Outcome, Permit, Record, Rejection, Snapshot, State,
};
use tripswitch_guest::record;

/// The one storage key every breaker in these tests shares.
const KEY: &str = "shared";

// ---------------------------------------------------------------------------
// The reference model, written from the rules in machine.rs's module doc.

/// A half-open trial slot: the permit holding it and when that permit was issued.
#[derive(Clone, Debug)]
struct Slot {
    holder: u64,
    issued: u64,
}

#[derive(Clone, Debug)]
enum Phase {
    Closed { failures: u32 },
    Open { since: u64 },
    HalfOpen { successes: u32, slots: Vec<Slot> },
    ForcedOpen,
    Disabled,
}

/// A permit as the model issued it; `id` tells any two permits apart.
#[derive(Clone, Copy, Debug)]
struct Ticket {
    id: u64,
    generation: u64,
    trial: bool,
    issued: u64,
}

#[derive(Debug)]
struct Model {
    cfg: Config,
    phase: Phase,
    generation: u64,
    tickets: u64,
}

impl Model {
    fn new(cfg: &Config) -> Model {
        Model {
            cfg: cfg.clone(),
            phase: Phase::Closed { failures: 0 },
            generation: 0,
            tickets: 0,
        }
    }

    fn state(&self) -> State {
        match self.phase {
            Phase::Closed { .. } => State::Closed,
            Phase::Open { .. } => State::Open,
            Phase::HalfOpen { .. } => State::HalfOpen,
            Phase::ForcedOpen => State::ForcedOpen,
            Phase::Disabled => State::Disabled,
        }
    }

    /// Moves to `phase`; a change of state starts a new generation.
    fn enter(&mut self, phase: Phase) {
        let before = self.state();
        self.phase = phase;
        if self.state() != before {
            self.generation += 1;
        }
    }

    fn live(&self, slot: &Slot, now: u64) -> bool {
        now < slot.issued + self.cfg.trial_timeout_ms
    }

    /// Issue times of the trials in flight at `now`, oldest first.
    fn live_trials(&self, now: u64) -> Vec<u64> {
        let Phase::HalfOpen { slots, .. } = &self.phase else {
            return Vec::new();
        };
        let mut live: Vec<u64> = slots
            .iter()
            .filter(|s| self.live(s, now))
            .map(|s| s.issued)
            .collect();
        live.sort_unstable();
        live
    }

    fn ticket(&mut self, trial: bool, now: u64) -> Ticket {
        self.tickets += 1;
        Ticket {
            id: self.tickets,
            generation: self.generation,
            trial,
            issued: now,
        }
    }

    fn take_slot(&mut self, now: u64) -> Result<Ticket, Rejection> {
        let ticket = self.ticket(true, now);
        if let Phase::HalfOpen { slots, .. } = &mut self.phase {
            slots.push(Slot {
                holder: ticket.id,
                issued: now,
            });
        }
        Ok(ticket)
    }

    fn acquire(&mut self, now: u64) -> Result<Ticket, Rejection> {
        let ready_at = |since: u64| since + self.cfg.reset_timeout_ms;
        match self.phase {
            Phase::Closed { .. } | Phase::Disabled => Ok(self.ticket(false, now)),
            Phase::ForcedOpen => Err(Rejection::ForcedOpen),
            Phase::Open { since } if now < ready_at(since) => {
                Err(Rejection::Open(ready_at(since) - now))
            }
            Phase::Open { .. } => {
                self.enter(Phase::HalfOpen {
                    successes: 0,
                    slots: Vec::new(),
                });
                self.take_slot(now)
            }
            Phase::HalfOpen { .. } => {
                let live = self.live_trials(now);
                if live.len() >= self.cfg.half_open_max_calls as usize {
                    Err(Rejection::HalfOpenFull(
                        live[0] + self.cfg.trial_timeout_ms - now,
                    ))
                } else {
                    self.take_slot(now)
                }
            }
        }
    }

    /// Counts what became of a call; true if anything changed.
    fn report(&mut self, ticket: &Ticket, outcome: Outcome, now: u64) -> bool {
        if ticket.generation != self.generation {
            return false;
        }
        let cfg = self.cfg.clone();
        match (&mut self.phase, ticket.trial) {
            (Phase::Closed { failures }, false) => match outcome {
                Outcome::Success if *failures > 0 => *failures = 0,
                Outcome::Failure if *failures + 1 >= cfg.fail_max => {
                    self.enter(Phase::Open { since: now })
                }
                Outcome::Failure => *failures += 1,
                Outcome::Success | Outcome::Ignored => return false,
            },
            (Phase::HalfOpen { successes, slots }, true) => {
                let Some(at) = slots
                    .iter()
                    .position(|s| s.holder == ticket.id && now < s.issued + cfg.trial_timeout_ms)
                else {
                    return false;
                };
                slots.remove(at);
                match outcome {
                    Outcome::Ignored => {}
                    Outcome::Failure => self.enter(Phase::Open { since: now }),
                    Outcome::Success if *successes + 1 >= cfg.success_threshold => {
                        self.enter(Phase::Closed { failures: 0 })
                    }
                    Outcome::Success => *successes += 1,
                }
            }
            _ => return false,
        }
        true
    }

    /// Whether reporting a success for `ticket` now would change nothing.
    fn success_is_idle(&self, ticket: &Ticket) -> bool {
        ticket.generation != self.generation
            || match self.phase {
                Phase::Closed { failures } => !ticket.trial && failures == 0,
                Phase::Disabled | Phase::Open { .. } | Phase::ForcedOpen => true,
                Phase::HalfOpen { .. } => !ticket.trial,
            }
    }

    /// Whether acquire answers alike whenever it is asked, as long as nothing
    /// changes: a non-trial permit of this generation (closed or disabled).
    fn answers_alike_at_any_time(&self) -> bool {
        matches!(self.phase, Phase::Closed { .. } | Phase::Disabled)
    }

    /// An operator action sets the phase and always starts a new generation
    /// (once, even when the state changes too), voiding every permit before it.
    fn operate(&mut self, action: Action, now: u64) {
        self.phase = match action {
            Action::Open => Phase::Open { since: now },
            Action::Close => Phase::Closed { failures: 0 },
            Action::HalfOpen => Phase::HalfOpen {
                successes: 0,
                slots: Vec::new(),
            },
            Action::ForceOpen => Phase::ForcedOpen,
            Action::Disable => Phase::Disabled,
        };
        self.generation += 1;
    }

    /// What a snapshot at `now` says: effective state, retry-after, trials in flight.
    fn view(&self, now: u64) -> (State, Option<u64>, u32) {
        let max = self.cfg.half_open_max_calls as usize;
        match self.phase {
            Phase::Open { since } if now >= since + self.cfg.reset_timeout_ms => {
                (State::HalfOpen, None, 0)
            }
            Phase::Open { since } => (
                State::Open,
                Some(since + self.cfg.reset_timeout_ms - now),
                0,
            ),
            Phase::HalfOpen { .. } => {
                let live = self.live_trials(now);
                let retry = (live.len() >= max).then(|| live[0] + self.cfg.trial_timeout_ms - now);
                (State::HalfOpen, retry, live.len() as u32)
            }
            _ => (self.state(), None, 0),
        }
    }
}

// ---------------------------------------------------------------------------
// Comparing the implementation with the model.

type Answer = Result<(u64, bool, u64), Rejection>;

fn permit_answer(answer: &Result<Permit, Rejection>) -> Answer {
    answer
        .as_ref()
        .map(|p| (p.generation, p.trial, p.issued_at_ms))
        .map_err(Clone::clone)
}

fn ticket_answer(answer: &Result<Ticket, Rejection>) -> Answer {
    answer
        .as_ref()
        .map(|t| (t.generation, t.trial, t.issued))
        .map_err(Clone::clone)
}

/// The stored record says what the model says.
fn check_record(model: &Model, rec: &Record, now: u64) -> Result<(), TestCaseError> {
    prop_assert_eq!(rec.state, model.state(), "state; record {:?}", rec);
    prop_assert_eq!(
        rec.generation,
        model.generation,
        "generation; record {:?}",
        rec
    );
    match &model.phase {
        Phase::Closed { failures } => prop_assert_eq!(rec.failures, *failures, "failures"),
        Phase::Open { since } => prop_assert_eq!(rec.opened_at_ms, Some(*since), "opened-at"),
        Phase::HalfOpen { successes, .. } => {
            prop_assert_eq!(rec.successes, *successes, "successes");
            let mut live: Vec<u64> = rec
                .trials
                .iter()
                .copied()
                .filter(|&t| now < t + model.cfg.trial_timeout_ms)
                .collect();
            live.sort_unstable();
            prop_assert_eq!(
                live,
                model.live_trials(now),
                "live trials; record {:?}",
                rec
            );
        }
        Phase::ForcedOpen | Phase::Disabled => {}
    }
    check_snapshot(model, &machine::snapshot(&model.cfg, rec, now), now)
}

/// A snapshot says what the model says.
fn check_snapshot(model: &Model, snap: &Snapshot, now: u64) -> Result<(), TestCaseError> {
    let (state, retry_after, in_flight) = model.view(now);
    prop_assert_eq!(snap.state, state, "effective state; {:?}", snap);
    prop_assert_eq!(snap.retry_after_ms, retry_after, "retry-after; {:?}", snap);
    prop_assert_eq!(
        snap.trials_in_flight,
        in_flight,
        "trials in flight; {:?}",
        snap
    );
    prop_assert_eq!(snap.generation, model.generation, "snapshot generation");
    match &model.phase {
        Phase::Closed { failures } => prop_assert_eq!(snap.failures, *failures),
        Phase::HalfOpen { successes, .. } => prop_assert_eq!(snap.successes, *successes),
        Phase::Open { .. } if state == State::HalfOpen => prop_assert_eq!(snap.successes, 0),
        _ => {}
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Generators.

/// A clock step: a few ms, or around a timeout (-1, exactly, +1), or far.
#[derive(Clone, Copy, Debug)]
enum Wait {
    Ms(u64),
    Reset(u64),
    Trial(u64),
    Far,
}

impl Wait {
    fn ms(self, cfg: &Config) -> u64 {
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
enum Ask {
    /// `acquire`: always loads.
    Plain,
    /// `acquire_at_version` with the stored version: loads only if the
    /// instance's cached version is another.
    Current,
    /// `acquire_at_version` with a version the storage has not reached
    /// (stored + 1 + k), so never the cached one: loads.
    Ahead(u64),
    /// A host that reads the stored version for free: where it kept a
    /// reusable grant of that version, it answers with it, calling no
    /// component; otherwise as `Current`. (Where no host cache is kept,
    /// simply as `Current`.)
    Reuse,
}

/// One step; the `usize` picks the breaker instance (mod their number).
#[derive(Clone, Debug)]
enum Op {
    Acquire(usize, Ask),
    Report(Index, Outcome, usize),
    Operate(Action, usize),
    Snapshot(usize),
    Wait(Wait),
}

/// The default settings (PROPTEST_CASES still applies), without writing
/// regression files next to this one.
fn settings() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn config() -> impl Strategy<Value = Config> {
    (1..=4u32, 1..=50u64, 1..=3u32, 1..=3u32, 1..=50u64).prop_map(
        |(fail_max, reset_timeout_ms, success_threshold, half_open_max_calls, trial_timeout_ms)| {
            Config {
                fail_max,
                reset_timeout_ms,
                success_threshold,
                half_open_max_calls,
                trial_timeout_ms,
                fallback_state: State::Closed,
            }
        },
    )
}

fn start() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), Just(1_700_000_000_000u64)]
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        2 => Just(Outcome::Success),
        3 => Just(Outcome::Failure),
        1 => Just(Outcome::Ignored),
    ]
}

fn action() -> impl Strategy<Value = Action> {
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

fn ops() -> impl Strategy<Value = Vec<Op>> {
    vec(op(), 1..70)
}

// ---------------------------------------------------------------------------
// (a) machine against the model.

proptest! {
    #![proptest_config(settings())]

    /// Random acquires, reports (stale permits included), operator actions
    /// and clock steps give the same answers and records as the model.
    #[test]
    fn machine_agrees_with_the_model(cfg in config(), start in start(), ops in ops()) {
        let mut model = Model::new(&cfg);
        let mut rec = Record::default();
        let mut now = start;
        let mut permits: Vec<(Permit, Ticket)> = Vec::new();
        for op in &ops {
            let before = rec.clone();
            match *op {
                Op::Acquire(..) => {
                    let (write, got) = machine::acquire(&cfg, &rec, now);
                    let want = model.acquire(now);
                    prop_assert_eq!(permit_answer(&got), ticket_answer(&want), "acquire at {}", now);
                    prop_assert_eq!(
                        write.is_some(),
                        got.as_ref().is_ok_and(|p| p.trial),
                        "acquire writes exactly when it grants a trial"
                    );
                    if let (Ok(permit), Ok(ticket)) = (&got, &want) {
                        prop_assert_eq!(
                            machine::answer_is_timeless(&before, permit),
                            !ticket.trial && model.answers_alike_at_any_time(),
                            "timeless answer {:?} on {:?}", permit, before
                        );
                    }
                    if let Some(next) = write {
                        rec = next;
                    }
                    if let (Ok(permit), Ok(ticket)) = (got, want) {
                        permits.push((permit, ticket));
                    }
                }
                Op::Report(pick, outcome, _) => {
                    if permits.is_empty() {
                        continue;
                    }
                    let (permit, ticket) = permits.swap_remove(pick.index(permits.len()));
                    let write = machine::report(&cfg, &rec, &permit, outcome, now);
                    let changed = model.report(&ticket, outcome, now);
                    prop_assert_eq!(
                        write.is_some(), changed,
                        "report {:?} of {:?} at {}: write {:?}", outcome, permit, now, write
                    );
                    let never = machine::report_never_writes(&permit, outcome);
                    prop_assert_eq!(
                        never, !permit.trial && outcome == Outcome::Ignored,
                        "never-writes is exactly a non-trial ignored"
                    );
                    prop_assert!(!never || write.is_none(), "a never-writing report wrote");
                    if let Some(next) = write {
                        rec = next;
                    }
                }
                Op::Operate(action, _) => {
                    rec = machine::operate(&rec, action, now);
                    model.operate(action, now);
                }
                Op::Snapshot(_) => {}
                Op::Wait(wait) => now += wait.ms(&cfg),
            }
            let bump = rec.state != before.state || matches!(op, Op::Operate(..));
            prop_assert_eq!(
                rec.generation,
                before.generation + u64::from(bump),
                "the generation moves by one on a state change or an operator action, \
                 never otherwise: {:?} -> {:?} by {:?}", before, rec, op
            );
            check_record(&model, &rec, now)?;
        }
    }
}

// ---------------------------------------------------------------------------
// (a') timeless answers: what lets a host reuse a grant.

/// A time in ms: small, a plausible Unix time, anything, or near u64::MAX.
fn moment() -> impl Strategy<Value = u64> {
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
fn wide_config() -> impl Strategy<Value = Config> {
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
            },
        )
}

/// Any record the format can hold: any state with any counters, opened-at,
/// generation (wrapping included) and trials, consistent or not.
fn wide_record() -> impl Strategy<Value = Record> {
    (
        any_state(),
        prop_oneof![0..4u32, any::<u32>()],
        prop_oneof![0..4u32, any::<u32>()],
        prop_oneof![0..6u64, any::<u64>(), Just(u64::MAX)],
        prop::option::of(moment()),
        vec(moment(), 0..5),
    )
        .prop_map(
            |(state, failures, successes, generation, opened_at_ms, trials)| Record {
                state,
                failures,
                successes,
                opened_at_ms,
                generation,
                trials,
            },
        )
}

/// A time relative to another: so many ms later or earlier (saturating).
fn shift() -> impl Strategy<Value = (bool, u64)> {
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

/// The times to ask at besides `t0`'s shifts: the extremes, and the edges
/// where the record's own times would matter (opened-at + reset timeout,
/// each trial + trial timeout, each -1, exactly, +1), were it not closed.
fn edges(cfg: &Config, rec: &Record, t0: u64) -> Vec<u64> {
    let mut at = vec![0, 1, t0, u64::MAX - 1, u64::MAX];
    let mut around = |edge: u64| {
        at.extend([edge.saturating_sub(1), edge, edge.saturating_add(1)]);
    };
    if let Some(opened) = rec.opened_at_ms {
        around(opened.saturating_add(cfg.reset_timeout_ms));
    }
    for &trial in &rec.trials {
        around(trial.saturating_add(cfg.trial_timeout_ms));
    }
    at
}

proptest! {
    #![proptest_config(settings())]

    /// The claim behind `reusable`: whenever acquire on a record grants a
    /// permit that `answer_is_timeless` calls timeless, acquire on the same
    /// record at any other time, later or earlier, near or far, u64
    /// extremes included, writes nothing and grants the same permit, only
    /// issued then. And no trial, and no permit on an open, half-open or
    /// forced-open record, is ever called timeless, whether acquire granted
    /// it or not; a permit acquire grants on a closed or disabled record
    /// always is (so the flag is no vacuous `false`).
    #[test]
    fn a_timeless_answer_is_the_answer_at_any_time(
        cfg in wide_config(),
        rec in wide_record(),
        t0 in moment(),
        shifts in vec(shift(), 1..24),
        others in vec((any::<bool>(), prop::option::of(prop_oneof![0..6u64, any::<u64>()]), moment()), 0..6),
    ) {
        let mut times: Vec<u64> = shifts
            .iter()
            .map(|&(later, d)| if later { t0.saturating_add(d) } else { t0.saturating_sub(d) })
            .collect();
        times.extend(edges(&cfg, &rec, t0));
        let alike = matches!(rec.state, State::Closed | State::Disabled);

        let (write, answer) = machine::acquire(&cfg, &rec, t0);
        if let Ok(permit) = answer {
            let timeless = machine::answer_is_timeless(&rec, &permit);
            prop_assert_eq!(
                timeless, alike && !permit.trial,
                "timeless {:?} on {:?}", permit, rec
            );
            if timeless {
                prop_assert_eq!(&write, &None, "a timeless answer wrote");
                for &t in &times {
                    prop_assert_eq!(
                        machine::acquire(&cfg, &rec, t),
                        (None, Ok(Permit { issued_at_ms: t, ..permit })),
                        "granted {:?} at {} on {:?}, then at {}", permit, t0, rec, t
                    );
                }
            }
        }

        // At every time asked: a trial, or any grant on a record that is not
        // closed or disabled, is never timeless; one on closed or disabled is.
        for &t in &times {
            if let (_, Ok(permit)) = machine::acquire(&cfg, &rec, t) {
                prop_assert_eq!(
                    machine::answer_is_timeless(&rec, &permit),
                    alike && !permit.trial,
                    "granted {:?} on {:?} at {}", permit, rec, t
                );
            }
        }
        // And for permits acquire never gave: any trial, any generation.
        for &(trial, generation, issued_at_ms) in &others {
            let permit = Permit {
                generation: generation.unwrap_or(rec.generation),
                trial,
                issued_at_ms,
            };
            let timeless = machine::answer_is_timeless(&rec, &permit);
            prop_assert!(
                !timeless || (alike && !trial && permit.generation == rec.generation),
                "{:?} timeless on {:?}", permit, rec
            );
        }
    }
}

// ---------------------------------------------------------------------------
// (b) several breakers over one in-memory storage.

/// A state-changed event, with the instance that fired it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Heard {
    instance: usize,
    previous: State,
    current: State,
    at_ms: u64,
    remote: bool,
}

/// The storage every instance shares, and what the test learns through it.
struct Shared {
    cfg: Config,
    now: Cell<u64>,
    entries: RefCell<HashMap<String, (u64, Vec<u8>)>>,
    last_version: Cell<u64>,
    /// Per instance, the state it takes the breaker to be in: closed at
    /// first (a new instance takes itself for closed), then the state of the
    /// last entry it was handed or wrote.
    seen: RefCell<Vec<State>>,
    /// The events the implementation owes, in order.
    due: RefCell<VecDeque<Heard>>,
    heard: RefCell<Vec<Heard>>,
    problems: RefCell<Vec<String>>,
    /// Calls to fail from now on (true: fail), one per load or compare-and-swap.
    faults: RefCell<VecDeque<bool>>,
    failed_calls: Cell<usize>,
    /// Per instance, the loads it made (failed ones included).
    loads: RefCell<Vec<usize>>,
    /// Per instance, what it should have cached: the last entry it was
    /// handed or wrote (absent: version 0, the default record). A failed
    /// call leaves it as it was.
    cached: RefCell<Vec<Option<(u64, Record)>>>,
    /// True while the test runs an operator action: its write, and only it,
    /// starts a new generation without changing the state.
    operating: Cell<bool>,
}

impl Shared {
    fn new(cfg: &Config, instances: usize, start: u64) -> Rc<Shared> {
        Rc::new(Shared {
            cfg: cfg.clone(),
            now: Cell::new(start),
            entries: RefCell::new(HashMap::new()),
            last_version: Cell::new(0),
            seen: RefCell::new(vec![State::Closed; instances]),
            due: RefCell::new(VecDeque::new()),
            heard: RefCell::new(Vec::new()),
            problems: RefCell::new(Vec::new()),
            faults: RefCell::new(VecDeque::new()),
            failed_calls: Cell::new(0),
            loads: RefCell::new(vec![0; instances]),
            cached: RefCell::new(vec![None; instances]),
            operating: Cell::new(false),
        })
    }

    fn loads(&self, instance: usize) -> usize {
        self.loads.borrow()[instance]
    }

    /// The version and record `instance` should have cached.
    fn cached(&self, instance: usize) -> Option<(u64, Record)> {
        self.cached.borrow()[instance].clone()
    }

    /// The newest generation `instance` knows (0 if it knows none).
    fn known_generation(&self, instance: usize) -> u64 {
        self.cached(instance).map_or(0, |(_, r)| r.generation)
    }

    /// The version to hand `acquire_at_version` for `ask` (none: plain acquire).
    fn version_for(&self, ask: Ask) -> Option<u64> {
        let stored = self.stored().0;
        match ask {
            Ask::Plain => None,
            Ask::Current | Ask::Reuse => Some(stored),
            Ask::Ahead(k) => Some(stored + 1 + k),
        }
    }

    /// The loads `op`, run through `instance` now, should make: acquire
    /// loads unless the host names the cached version; report makes none if
    /// it can never write (a non-trial `ignored`), and otherwise loads
    /// exactly when there is no cache or the cache says to write nothing (a
    /// decision it confirms, stale permits included); operate loads only
    /// without a cache; snapshot always loads.
    fn loads_due(&self, instance: usize, op: &Op, grant: Option<&Grant>) -> usize {
        let cached = self.cached(instance);
        let now = self.now.get();
        match *op {
            Op::Acquire(_, ask) => match (self.version_for(ask), &cached) {
                (Some(asked), Some((version, _))) if asked == *version => 0,
                _ => 1,
            },
            Op::Report(_, outcome, _) => {
                let Some(grant) = grant else { return 0 };
                if machine::report_never_writes(&grant.permit, outcome) {
                    return 0;
                }
                match &cached {
                    Some((_, r))
                        if machine::report(&self.cfg, r, &grant.permit, outcome, now).is_some() =>
                    {
                        0
                    }
                    _ => 1,
                }
            }
            Op::Operate(..) => usize::from(cached.is_none()),
            Op::Snapshot(_) => 1,
            Op::Wait(_) => 0,
        }
    }

    fn problem(&self, what: String) {
        self.problems.borrow_mut().push(what);
    }

    fn entry(&self, key: &str) -> Option<Stored> {
        self.entries
            .borrow()
            .get(key)
            .map(|(version, data)| Stored {
                version: *version,
                data: data.clone(),
            })
    }

    /// The stored record and its version (absent: the default record, version 0).
    fn stored(&self) -> (u64, Record) {
        match self.entry(KEY) {
            None => (0, Record::default()),
            Some(stored) => (
                stored.version,
                record::decode(&stored.data).expect("the test storage holds only valid records"),
            ),
        }
    }

    fn state_of(entry: &Option<Stored>) -> State {
        entry.as_ref().map_or(State::Closed, |s| {
            record::decode(&s.data).map_or(State::Closed, |r| r.state)
        })
    }

    /// Every call starts here: an owed event not fired by now is missing.
    fn begin(&self, instance: usize, call: &str) -> bool {
        if let Some(owed) = self.due.borrow_mut().pop_front() {
            self.problem(format!(
                "instance {instance} did not fire {owed:?} before its {call}"
            ));
        }
        let fail = self.faults.borrow_mut().pop_front().unwrap_or(false);
        if fail {
            self.failed_calls.set(self.failed_calls.get() + 1);
        }
        fail
    }

    /// An instance is handed an entry: if its state differs from the one the
    /// instance took the breaker to be in (closed, on its first look), a
    /// remote event is owed.
    fn hand_over(&self, instance: usize, entry: &Option<Stored>) {
        self.cached.borrow_mut()[instance] = Some(match entry {
            None => (0, Record::default()),
            Some(stored) => (
                stored.version,
                record::decode(&stored.data).expect("the test storage holds only valid records"),
            ),
        });
        let state = Shared::state_of(entry);
        let previous = std::mem::replace(&mut self.seen.borrow_mut()[instance], state);
        if previous != state {
            self.due.borrow_mut().push_back(Heard {
                instance,
                previous,
                current: state,
                at_ms: self.now.get(),
                remote: true,
            });
        }
    }
}

/// One instance's view of the shared storage.
struct Handle {
    instance: usize,
    shared: Rc<Shared>,
}

impl Port for Handle {
    fn load(&self, key: &str) -> Result<Option<Stored>, String> {
        let shared = &self.shared;
        shared.loads.borrow_mut()[self.instance] += 1;
        if shared.begin(self.instance, "load") {
            return Err("disk on fire".into());
        }
        let entry = shared.entry(key);
        shared.hand_over(self.instance, &entry);
        Ok(entry)
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<u64>,
        data: &[u8],
    ) -> Result<Swap, String> {
        let shared = &self.shared;
        if shared.begin(self.instance, "compare-and-swap") {
            return Err("disk on fire".into());
        }
        let current = shared.entry(key);
        if current.as_ref().map(|s| s.version) != expected {
            shared.hand_over(self.instance, &current);
            return Ok(Swap::Conflict(current));
        }
        let old = current.map_or_else(Record::default, |s| {
            record::decode(&s.data).expect("valid stored record")
        });
        let new = match record::decode(data) {
            Ok(new) => new,
            Err(why) => {
                shared.problem(format!(
                    "instance {} wrote undecodable bytes: {why}",
                    self.instance
                ));
                return Err("bad bytes".into());
            }
        };
        let now = shared.now.get();
        let changed = old.state != new.state;
        let operator = shared.operating.get();
        if new.generation != old.generation + u64::from(changed || operator) {
            shared.problem(format!(
                "generation moved wrongly (operator action: {operator}): {old:?} -> {new:?}"
            ));
        }
        let live = new
            .trials
            .iter()
            .filter(|&&t| now < t + shared.cfg.trial_timeout_ms)
            .count();
        if live > shared.cfg.half_open_max_calls as usize {
            shared.problem(format!("{live} live trials written: {new:?}"));
        }
        let version = shared.last_version.get() + 1;
        shared.last_version.set(version);
        shared
            .entries
            .borrow_mut()
            .insert(key.to_owned(), (version, data.to_vec()));
        // The local event runs from the state the writer last saw. Over this
        // storage (valid records only) that is the state of the record the
        // write replaced: a write is computed from the writer's last look.
        let previous = std::mem::replace(&mut shared.seen.borrow_mut()[self.instance], new.state);
        if previous != old.state {
            shared.problem(format!(
                "instance {} wrote over {old:?} having last seen {previous:?}",
                self.instance
            ));
        }
        shared.cached.borrow_mut()[self.instance] = Some((version, new.clone()));
        if previous != new.state {
            shared.due.borrow_mut().push_back(Heard {
                instance: self.instance,
                previous,
                current: new.state,
                at_ms: now,
                remote: false,
            });
        }
        Ok(Swap::Written(version))
    }

    fn state_changed(
        &self,
        breaker: &str,
        previous: State,
        current: State,
        at_ms: u64,
        remote: bool,
    ) {
        let shared = &self.shared;
        let heard = Heard {
            instance: self.instance,
            previous,
            current,
            at_ms,
            remote,
        };
        if breaker != KEY {
            shared.problem(format!("event for breaker {breaker:?}"));
        }
        if previous == current {
            shared.problem(format!("event for no change: {heard:?}"));
        }
        match shared.due.borrow_mut().pop_front() {
            Some(owed) if owed == heard => {}
            owed => shared.problem(format!("heard {heard:?}, owed {owed:?}")),
        }
        shared.heard.borrow_mut().push(heard);
    }
}

/// Runs `op`'s acquire: plain, or at the version its `ask` names.
fn acquire(
    shared: &Shared,
    breaker: &Breaker<Handle>,
    ask: Ask,
    now: u64,
) -> Result<Grant, Denied> {
    match shared.version_for(ask) {
        None => breaker.acquire(now),
        Some(version) => breaker.acquire_at_version(now, version),
    }
}

/// Runs an operator action, telling the storage that its write may start a
/// new generation in the same state.
fn operate(
    shared: &Shared,
    breaker: &Breaker<Handle>,
    action: Action,
    now: u64,
) -> Result<(), String> {
    shared.operating.set(true);
    let got = breaker.operate(action, now);
    shared.operating.set(false);
    got
}

fn instances(cfg: &Config, shared: &Rc<Shared>, n: usize) -> Vec<Breaker<Handle>> {
    (0..n)
        .map(|instance| {
            let port = Handle {
                instance,
                shared: Rc::clone(shared),
            };
            Breaker::new(KEY.to_owned(), cfg.clone(), port)
        })
        .collect()
}

/// A look at the shared storage through a fresh instance, outside the
/// test's bookkeeping: loads the stored entry; a write is counted and fails.
struct Peek<'a> {
    shared: &'a Shared,
    swaps: Cell<usize>,
}

impl Port for &Peek<'_> {
    fn load(&self, key: &str) -> Result<Option<Stored>, String> {
        Ok(self.shared.entry(key))
    }

    fn compare_and_swap(&self, _key: &str, _: Option<u64>, _: &[u8]) -> Result<Swap, String> {
        self.swaps.set(self.swaps.get() + 1);
        Err("a peek writes nothing".into())
    }

    fn state_changed(&self, _: &str, _: State, _: State, _: u64, _: bool) {}
}

/// A host's reuse of `kept` (a reusable grant) at `now`: the same grant,
/// issued now.
fn reuse(kept: &Grant, now: u64) -> Grant {
    Grant {
        permit: Permit {
            issued_at_ms: now,
            ..kept.permit
        },
        ..*kept
    }
}

/// What a host reusing `kept` at `now` answers is what the component
/// answers, asked afresh (a new instance, so no cache of its own): the same
/// grant, seen version, quiet success and reusable flag included, and no
/// write. So reuse never admits a call the component would reject.
fn check_reuse(shared: &Shared, kept: &Grant, now: u64) -> Result<(), TestCaseError> {
    let (version, stored) = shared.stored();
    prop_assert_eq!(kept.seen_version, version, "reused at another version");
    let peek = Peek {
        shared,
        swaps: Cell::new(0),
    };
    let fresh = Breaker::new(KEY.to_owned(), shared.cfg.clone(), &peek);
    let asked = fresh.acquire(now);
    prop_assert_eq!(
        peek.swaps.get(),
        0,
        "the component wrote where a host reuses"
    );
    prop_assert_eq!(
        asked,
        Ok(reuse(kept, now)),
        "reusing {:?} at {} on {:?}",
        kept,
        now,
        stored
    );
    Ok(())
}

/// After every step: no problem noticed by the storage, no event still owed.
fn check_shared(shared: &Shared) -> Result<(), TestCaseError> {
    let problems = shared.problems.borrow();
    prop_assert!(problems.is_empty(), "{:?}", *problems);
    let due = shared.due.borrow();
    prop_assert!(due.is_empty(), "events never fired: {:?}", *due);
    Ok(())
}

proptest! {
    #![proptest_config(settings())]

    /// The same runs, interleaved over 2-3 instances on one storage, with
    /// plain acquires and acquires at a host-named version: the stored record
    /// follows the model, every state change fires exactly one local event
    /// from its writer, every change an instance finds fires one remote event
    /// (a first look that finds other than closed is such a change),
    /// generations move by one on a state change or an operator action and
    /// never otherwise, every call makes the loads its cache calls for, and
    /// quiet-success is set exactly when a success would write nothing on the
    /// record the permit was decided on, reusable exactly when the answer is
    /// timeless on it. Each instance's host keeps its last reusable grant and,
    /// asked with `Ask::Reuse` while the stored version is still that grant's,
    /// answers with it without calling the component (no load, no event);
    /// after every step, every grant a host could reuse is the component's
    /// own answer, asked afresh, at that time.
    #[test]
    fn breakers_sharing_a_storage_agree_with_the_model(
        cfg in config(),
        start in start(),
        n in 2..=3usize,
        ops in ops(),
    ) {
        let shared = Shared::new(&cfg, n, start);
        let breakers = instances(&cfg, &shared, n);
        let mut model = Model::new(&cfg);
        let mut grants: Vec<(Grant, Ticket)> = Vec::new();
        let mut last_generation = 0;
        // Per instance, its host's last reusable grant, kept however stale;
        // it may be reused only while the stored version is its seen version.
        let mut kept: Vec<Option<Grant>> = vec![None; n];
        for op in &ops {
            let now = shared.now.get();
            let before = shared.stored();
            // The instance the op runs through, and the loads it should make.
            let mut loads_due: Option<(usize, usize)> = None;
            match *op {
                Op::Acquire(w, ask) => {
                    let w = w % n;
                    let reused = match (ask, &kept[w]) {
                        (Ask::Reuse, Some(grant)) if grant.seen_version == before.0 => {
                            Some(reuse(grant, now))
                        }
                        _ => None,
                    };
                    let got = match reused {
                        Some(grant) => {
                            // The host answers alone: no component call, so no load.
                            loads_due = Some((w, shared.loads(w)));
                            check_reuse(&shared, &grant, now)?;
                            Ok(grant)
                        }
                        None => {
                            loads_due = Some((w, shared.loads(w) + shared.loads_due(w, op, None)));
                            acquire(&shared, &breakers[w], ask, now)
                        }
                    };
                    let want = model.acquire(now);
                    let got_answer = match &got {
                        Ok(grant) => Ok(grant.permit),
                        Err(Denied::Rejected(rejection)) => Err(rejection.clone()),
                        Err(Denied::StorageUnavailable(message)) => {
                            return Err(TestCaseError::fail(format!("storage unavailable: {message}")));
                        }
                    };
                    prop_assert_eq!(permit_answer(&got_answer), ticket_answer(&want), "acquire at {}", now);
                    if let (Ok(grant), Ok(ticket)) = (got, want) {
                        let (version, decided) = shared.stored();
                        prop_assert_eq!(grant.seen_version, version, "seen version");
                        let quiet = machine::report(&cfg, &decided, &grant.permit, Outcome::Success, now)
                            .is_none();
                        prop_assert_eq!(
                            grant.quiet_success, quiet,
                            "quiet success of {:?}, decided on {:?}", grant, decided
                        );
                        prop_assert!(
                            !grant.quiet_success || model.success_is_idle(&ticket),
                            "a quiet success that would change something: {:?}", grant
                        );
                        prop_assert_eq!(
                            grant.reusable, machine::answer_is_timeless(&decided, &grant.permit),
                            "reusable {:?}, decided on {:?}", grant, decided
                        );
                        prop_assert_eq!(
                            grant.reusable, !ticket.trial && model.answers_alike_at_any_time(),
                            "reusable {:?} against the model", grant
                        );
                        if grant.reusable {
                            kept[w] = Some(grant);
                        }
                        grants.push((grant, ticket));
                    }
                }
                Op::Report(pick, outcome, w) => {
                    if grants.is_empty() {
                        continue;
                    }
                    let w = w % n;
                    let (grant, ticket) = grants.swap_remove(pick.index(grants.len()));
                    loads_due = Some((w, shared.loads(w) + shared.loads_due(w, op, Some(&grant))));
                    let result = breakers[w].report(&grant, outcome, now);
                    prop_assert_eq!(result, Ok(()));
                    model.report(&ticket, outcome, now);
                    if outcome == Outcome::Success && grant.quiet_success && before.0 == grant.seen_version {
                        prop_assert_eq!(
                            shared.stored(), before.clone(),
                            "a quiet success reported on the storage it was decided on wrote"
                        );
                    }
                }
                Op::Operate(action, w) => {
                    let w = w % n;
                    loads_due = Some((w, shared.loads(w) + shared.loads_due(w, op, None)));
                    prop_assert_eq!(operate(&shared, &breakers[w], action, now), Ok(()));
                    model.operate(action, now);
                }
                Op::Snapshot(w) => {
                    let w = w % n;
                    loads_due = Some((w, shared.loads(w) + shared.loads_due(w, op, None)));
                    let snap = breakers[w].snapshot(now);
                    prop_assert!(snap.is_ok(), "{:?}", snap);
                    check_snapshot(&model, &snap.unwrap(), now)?;
                }
                Op::Wait(wait) => shared.now.set(now + wait.ms(&cfg)),
            }
            if let Some((w, loads)) = loads_due {
                prop_assert_eq!(shared.loads(w), loads, "loads by instance {} for {:?}", w, op);
            }
            check_shared(&shared)?;
            let (version, stored) = shared.stored();
            prop_assert!(stored.generation >= last_generation, "generation went back");
            last_generation = stored.generation;
            check_record(&model, &stored, shared.now.get())?;
            for grant in kept.iter().flatten().filter(|g| g.seen_version == version) {
                check_reuse(&shared, grant, shared.now.get())?;
            }
        }
    }
}

/// One step of a closed-state run: failures and ignores only, no success, no operator.
#[derive(Clone, Debug)]
enum Step {
    Acquire(usize),
    Report(Index, bool, usize),
    Wait(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => (0..3usize).prop_map(Step::Acquire),
        2 => (any::<Index>(), prop::bool::weighted(0.8), 0..3usize)
            .prop_map(|(i, failure, w)| Step::Report(i, failure, w)),
        1 => (0..3u64).prop_map(Step::Wait),
    ]
}

proptest! {
    #![proptest_config(settings())]

    /// N failures reported through any instances count N, and the
    /// fail-max-th one opens the circuit, with one local event from its reporter.
    #[test]
    fn no_failure_is_lost(
        fail_max in 1..=5u32,
        n in 2..=3usize,
        steps in vec(step(), 1..60),
    ) {
        let cfg = Config {
            fail_max,
            reset_timeout_ms: 1_000_000,
            success_threshold: 1,
            half_open_max_calls: 1,
            trial_timeout_ms: 1_000_000,
            fallback_state: State::Closed,
        };
        let shared = Shared::new(&cfg, n, 100);
        let breakers = instances(&cfg, &shared, n);
        let mut grants: Vec<Grant> = Vec::new();
        let mut failures = 0u32;
        let mut trip: Option<(usize, u64)> = None;
        for step in &steps {
            let now = shared.now.get();
            match *step {
                Step::Acquire(w) => match breakers[w % n].acquire(now) {
                    Ok(grant) => {
                        prop_assert!(trip.is_none(), "admitted while open");
                        prop_assert_eq!((grant.permit.generation, grant.permit.trial), (0, false));
                        grants.push(grant);
                    }
                    Err(Denied::Rejected(Rejection::Open(_))) => {
                        prop_assert!(trip.is_some(), "rejected while closed")
                    }
                    other => prop_assert!(false, "acquire: {:?}", other),
                },
                Step::Report(pick, failure, w) => {
                    if grants.is_empty() {
                        continue;
                    }
                    let grant = grants.swap_remove(pick.index(grants.len()));
                    let outcome = if failure { Outcome::Failure } else { Outcome::Ignored };
                    prop_assert_eq!(breakers[w % n].report(&grant, outcome, now), Ok(()));
                    if failure && trip.is_none() {
                        failures += 1;
                        if failures == fail_max {
                            trip = Some((w % n, now));
                        }
                    }
                }
                Step::Wait(ms) => shared.now.set(now + ms),
            }
            check_shared(&shared)?;
            let (_, stored) = shared.stored();
            match trip {
                None => prop_assert_eq!(
                    (stored.state, stored.failures, stored.generation),
                    (State::Closed, failures, 0)
                ),
                Some((_, at)) => prop_assert_eq!(
                    (stored.state, stored.generation, stored.opened_at_ms),
                    (State::Open, 1, Some(at))
                ),
            }
        }
        let local: Vec<Heard> = shared.heard.borrow().iter().filter(|h| !h.remote).cloned().collect();
        let expected: Vec<Heard> = trip
            .map(|(instance, at_ms)| Heard {
                instance,
                previous: State::Closed,
                current: State::Open,
                at_ms,
                remote: false,
            })
            .into_iter()
            .collect();
        prop_assert_eq!(local, expected);
    }
}

// ---------------------------------------------------------------------------
// Pathological storages.

/// A state-changed event as a single-instance port hears it:
/// (previous, current, at, remote).
type Event = (State, State, u64, bool);

/// The events a new instance owes for its first look, at `now`, finding
/// `found` (none: absent): it takes the breaker for closed, so one remote
/// event if the record is in another state, none otherwise.
fn first_look(found: Option<&Record>, now: u64) -> Vec<Event> {
    match found {
        Some(r) if r.state != State::Closed => vec![(State::Closed, r.state, now, true)],
        _ => Vec::new(),
    }
}

/// A storage whose compare-and-swap always conflicts, reporting the entry unchanged.
struct Stubborn {
    entry: Option<Stored>,
    loads: Cell<usize>,
    swaps: Cell<usize>,
    events: RefCell<Vec<Event>>,
}

impl Port for &Stubborn {
    fn load(&self, _key: &str) -> Result<Option<Stored>, String> {
        self.loads.set(self.loads.get() + 1);
        Ok(self.entry.clone())
    }

    fn compare_and_swap(&self, _key: &str, _: Option<u64>, _: &[u8]) -> Result<Swap, String> {
        self.swaps.set(self.swaps.get() + 1);
        Ok(Swap::Conflict(self.entry.clone()))
    }

    fn state_changed(&self, _: &str, previous: State, current: State, at: u64, remote: bool) {
        self.events
            .borrow_mut()
            .push((previous, current, at, remote));
    }
}

/// A storage that fails every call, but the first `healthy` loads, which
/// return `entry`.
#[derive(Default)]
struct Broken {
    entry: Option<Stored>,
    healthy: Cell<usize>,
    loads: Cell<usize>,
    swaps: Cell<usize>,
    events: RefCell<Vec<Event>>,
}

impl Port for &Broken {
    fn load(&self, _key: &str) -> Result<Option<Stored>, String> {
        self.loads.set(self.loads.get() + 1);
        if self.healthy.get() > 0 {
            self.healthy.set(self.healthy.get() - 1);
            return Ok(self.entry.clone());
        }
        Err("disk on fire".into())
    }

    fn compare_and_swap(&self, _key: &str, _: Option<u64>, _: &[u8]) -> Result<Swap, String> {
        self.swaps.set(self.swaps.get() + 1);
        Err("disk on fire".into())
    }

    fn state_changed(&self, _: &str, previous: State, current: State, at: u64, remote: bool) {
        self.events
            .borrow_mut()
            .push((previous, current, at, remote));
    }
}

fn any_state() -> impl Strategy<Value = State> {
    prop_oneof![
        Just(State::Closed),
        Just(State::Open),
        Just(State::HalfOpen),
        Just(State::ForcedOpen),
        Just(State::Disabled),
    ]
}

fn fallback() -> impl Strategy<Value = State> {
    prop_oneof![
        Just(State::Closed),
        Just(State::Open),
        Just(State::ForcedOpen),
        Just(State::Disabled),
    ]
}

fn any_record() -> impl Strategy<Value = Record> {
    (
        any_state(),
        0..4u32,
        0..3u32,
        0..6u64,
        0..100u64,
        vec(0..100u64, 0..3),
    )
        .prop_map(
            |(state, failures, successes, generation, opened_at, trials)| Record {
                state,
                failures,
                successes,
                opened_at_ms: Some(opened_at),
                generation,
                trials,
            },
        )
}

/// One call against a pathological storage.
#[derive(Clone, Debug)]
enum Try {
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

fn attempt() -> impl Strategy<Value = Try> {
    prop_oneof![
        2 => Just(Try::Acquire),
        3 => (prop::bool::weighted(0.2), any::<bool>(), any::<Index>(), outcome()).prop_map(
            |(older, trial, issued, outcome)| Try::Report { older, trial, issued, outcome }
        ),
        1 => action().prop_map(Try::Operate),
        1 => Just(Try::Snapshot),
    ]
}

fn gave_up(message: &str) -> bool {
    message.contains(&format!("gave up after {MAX_ATTEMPTS} conflicting writes"))
}

proptest! {
    #![proptest_config(settings())]

    /// Against a storage that always conflicts, a change gives up after
    /// MAX_ATTEMPTS tries with an error, and a call needing no write goes
    /// through. An acquire that gave up is denied as unavailable whatever the
    /// fallback state: the storage works, only the write was lost. The one
    /// load is the instance's first look, which fires a remote event if it
    /// finds other than closed; the conflicts, handing the same entry, fire
    /// none. A report that can never write (a non-trial `ignored`) makes no
    /// call at all, so no first look and no event.
    #[test]
    fn endless_conflicts_end_in_an_error(
        mut cfg in config(),
        fallback_state in fallback(),
        stored in prop::option::of(any_record()),
        attempt in attempt(),
        now in 0..200u64,
    ) {
        cfg.fallback_state = fallback_state;
        let version = 5;
        let port = Stubborn {
            entry: stored.as_ref().map(|r| Stored { version, data: record::encode(r) }),
            loads: Cell::new(0),
            swaps: Cell::new(0),
            events: RefCell::new(Vec::new()),
        };
        let seen_version = if stored.is_some() { version } else { 0 };
        let events = first_look(stored.as_ref(), now);
        let rec = stored.unwrap_or_default();
        let breaker = Breaker::new(KEY.to_owned(), cfg.clone(), &port);
        let mut looked = true;
        let wrote = match attempt {
            Try::Acquire => {
                let (write, answer) = machine::acquire(&cfg, &rec, now);
                let got = breaker.acquire(now);
                match (&write, got) {
                    (None, Ok(grant)) => {
                        prop_assert_eq!(Ok(grant.permit), answer);
                        prop_assert_eq!(grant.seen_version, seen_version);
                        let quiet = machine::report(&cfg, &rec, &grant.permit, Outcome::Success, now);
                        prop_assert_eq!(grant.quiet_success, quiet.is_none(), "quiet success");
                        prop_assert_eq!(
                            grant.reusable,
                            machine::answer_is_timeless(&rec, &grant.permit),
                            "reusable"
                        );
                    }
                    (None, Err(Denied::Rejected(rejection))) => prop_assert_eq!(Err(rejection), answer),
                    (Some(_), Err(Denied::StorageUnavailable(message))) => {
                        prop_assert!(gave_up(&message), "{}", message);
                    }
                    (Some(_), Ok(grant)) => prop_assert!(
                        false,
                        "a contended write admitted {:?} (fallback {:?})", grant, cfg.fallback_state
                    ),
                    (_, got) => prop_assert!(false, "write {:?}: acquire said {:?}", write, got),
                }
                write.is_some()
            }
            Try::Report { older, trial, issued, outcome } => {
                let times: Vec<u64> = rec.trials.iter().copied().chain([now]).collect();
                let permit = Permit {
                    generation: rec.generation.saturating_sub(u64::from(older)),
                    trial,
                    issued_at_ms: times[issued.index(times.len())],
                };
                let write = machine::report(&cfg, &rec, &permit, outcome, now);
                let got = breaker.report(&Grant { permit, seen_version, quiet_success: false, reusable: false }, outcome, now);
                match &got {
                    Ok(()) => prop_assert!(write.is_none(), "no error, yet {:?} was to be written", write),
                    Err(message) => prop_assert!(write.is_some() && gave_up(message), "{}", message),
                }
                looked = !machine::report_never_writes(&permit, outcome);
                write.is_some()
            }
            Try::Operate(action) => {
                let got = breaker.operate(action, now);
                prop_assert!(matches!(&got, Err(m) if gave_up(m)), "{:?}", got);
                true
            }
            Try::Snapshot => {
                prop_assert_eq!(breaker.snapshot(now), Ok(machine::snapshot(&cfg, &rec, now)));
                false
            }
        };
        let tries = if wrote { MAX_ATTEMPTS } else { 0 };
        prop_assert_eq!(port.swaps.get(), tries, "compare-and-swaps");
        prop_assert_eq!(port.loads.get(), usize::from(looked), "loads");
        let events = if looked { events } else { Vec::new() };
        prop_assert_eq!(port.events.take(), events, "events: the first look's only");
    }

    /// Against a storage that fails every call, acquire follows the fallback
    /// state with the generation the instance last saw, and everything else
    /// but a report that can never write (a non-trial `ignored`, which
    /// touches nothing and succeeds) reports the failure. An instance that
    /// loaded once before the storage broke keeps that record cached through
    /// the failures, so a report the cache says writes, and an operator
    /// action, try one compare-and-swap, and the rest one load: a report the
    /// cache says writes nothing, stale permits included, is confirmed by a
    /// load, which fails. The only event is the healthy first look's, if it
    /// found other than closed.
    #[test]
    fn a_failing_storage_follows_the_fallback(
        mut cfg in config(),
        fallback_state in fallback(),
        warm_up in prop::option::of(prop::option::of(any_record())),
        attempts in vec((attempt(), 0..5u64), 1..20),
    ) {
        cfg.fallback_state = fallback_state;
        let version = 5;
        let stored = warm_up.clone().flatten();
        let port = Broken {
            entry: stored.as_ref().map(|r| Stored { version, data: record::encode(r) }),
            healthy: Cell::new(usize::from(warm_up.is_some())),
            ..Broken::default()
        };
        let breaker = Breaker::new(KEY.to_owned(), cfg.clone(), &port);
        let mut now = 1_000;
        let events = first_look(stored.as_ref(), now);
        // What the instance caches: the record of its one healthy load, if any.
        let cached = match warm_up {
            None => None,
            Some(stored) => {
                let record = stored.unwrap_or_default();
                prop_assert_eq!(breaker.snapshot(now), Ok(machine::snapshot(&cfg, &record, now)));
                Some(record)
            }
        };
        let known = cached.as_ref().map_or(0, |r| r.generation);
        let (mut loads, mut swaps) = (port.loads.get(), 0);
        let failed = |got: Result<(), String>, operation: &str| match got {
            Err(m) => m.contains(&format!("storage {operation} failed")) && m.contains("disk on fire"),
            Ok(()) => false,
        };
        for (attempt, wait) in &attempts {
            now += wait;
            match *attempt {
                Try::Acquire => {
                    loads += 1;
                    match breaker.acquire(now) {
                        Ok(grant) => {
                            prop_assert!(cfg.fallback_admits(), "admitted against the fallback");
                            let permit = Permit { generation: known, trial: false, issued_at_ms: now };
                            prop_assert_eq!(grant, Grant { permit, seen_version: 0, quiet_success: false, reusable: false });
                        }
                        Err(Denied::StorageUnavailable(m)) => {
                            prop_assert!(!cfg.fallback_admits(), "rejected against the fallback");
                            prop_assert!(m.contains("storage load failed") && m.contains("disk on fire"), "{}", m);
                        }
                        other => prop_assert!(false, "acquire: {:?}", other),
                    }
                }
                Try::Report { older, trial, issued, outcome } => {
                    let record = cached.clone().unwrap_or_default();
                    let times: Vec<u64> = record.trials.iter().copied().chain([now]).collect();
                    let permit = Permit {
                        generation: record.generation.saturating_sub(u64::from(older)),
                        trial,
                        issued_at_ms: times[issued.index(times.len())],
                    };
                    let grant = Grant { permit, seen_version: 0, quiet_success: false, reusable: false };
                    let got = breaker.report(&grant, outcome, now);
                    match &cached {
                        _ if machine::report_never_writes(&permit, outcome) => prop_assert_eq!(got, Ok(())),
                        Some(r) if machine::report(&cfg, r, &permit, outcome, now).is_some() => {
                            swaps += 1;
                            prop_assert!(failed(got, "compare-and-swap"));
                        }
                        _ => {
                            loads += 1;
                            prop_assert!(failed(got, "load"));
                        }
                    }
                }
                Try::Operate(action) => {
                    let got = breaker.operate(action, now);
                    if cached.is_some() {
                        swaps += 1;
                        prop_assert!(failed(got, "compare-and-swap"));
                    } else {
                        loads += 1;
                        prop_assert!(failed(got, "load"));
                    }
                }
                Try::Snapshot => {
                    loads += 1;
                    prop_assert!(failed(breaker.snapshot(now).map(drop), "load"));
                }
            }
            prop_assert_eq!(port.loads.get(), loads, "loads after {:?}", attempt);
            prop_assert_eq!(port.swaps.get(), swaps, "compare-and-swaps after {:?}", attempt);
        }
        prop_assert_eq!(port.events.take(), events);
    }

    /// Breakers over a storage that fails now and then: a failed call writes
    /// nothing and keeps the instance's cache, acquire then follows the
    /// fallback with the newest generation the instance knows, a healthy call
    /// does what the machine says on the stored record, every call makes the
    /// loads its cache calls for, and the shared-storage invariants (events,
    /// generations, trial limit) hold throughout.
    #[test]
    fn a_flaky_storage_is_survived(
        mut cfg in config(),
        fallback_state in fallback(),
        start in start(),
        n in 1..=3usize,
        ops in ops(),
        faults in vec(prop::bool::weighted(0.25), 0..150),
    ) {
        cfg.fallback_state = fallback_state;
        let shared = Shared::new(&cfg, n, start);
        shared.faults.borrow_mut().extend(faults);
        let breakers = instances(&cfg, &shared, n);
        let mut grants: Vec<Grant> = Vec::new();
        for op in &ops {
            let now = shared.now.get();
            let before = shared.stored();
            let failed_before = shared.failed_calls.get();
            let faulted = || shared.failed_calls.get() > failed_before;
            let on_fire = |got: &Result<(), String>| matches!(got, Err(m) if m.contains("disk on fire"));
            let mut loads_due: Option<(usize, usize)> = None;
            match *op {
                Op::Acquire(w, ask) => {
                    let w = w % n;
                    loads_due = Some((w, shared.loads(w) + shared.loads_due(w, op, None)));
                    let got = acquire(&shared, &breakers[w], ask, now);
                    if faulted() {
                        match &got {
                            Ok(grant) => {
                                prop_assert!(cfg.fallback_admits(), "admitted against the fallback");
                                let permit = Permit {
                                    generation: shared.known_generation(w),
                                    trial: false,
                                    issued_at_ms: now,
                                };
                                prop_assert_eq!(
                                    *grant,
                                    Grant { permit, seen_version: 0, quiet_success: false, reusable: false },
                                    "a fallback permit carries the newest generation known"
                                );
                            }
                            Err(Denied::StorageUnavailable(m)) => {
                                prop_assert!(!cfg.fallback_admits(), "rejected against the fallback");
                                prop_assert!(m.contains("disk on fire"), "{}", m);
                            }
                            Err(other) => prop_assert!(false, "faulted acquire: {:?}", other),
                        }
                    } else {
                        let (write, want) = machine::acquire(&cfg, &before.1, now);
                        let got_answer = match &got {
                            Ok(grant) => Ok(grant.permit),
                            Err(Denied::Rejected(rejection)) => Err(rejection.clone()),
                            Err(other) => {
                                return Err(TestCaseError::fail(format!("healthy acquire: {other:?}")));
                            }
                        };
                        prop_assert_eq!(got_answer, want);
                        prop_assert_eq!(shared.stored().1, write.unwrap_or(before.1.clone()));
                        if let Ok(grant) = &got {
                            // Decided on the stored record, or on the one it wrote.
                            let (version, decided) = shared.stored();
                            prop_assert_eq!(grant.seen_version, version, "seen version");
                            prop_assert_eq!(
                                grant.quiet_success,
                                machine::success_is_quiet(&decided, &grant.permit),
                                "quiet success of {:?} on {:?}", grant, decided
                            );
                            prop_assert_eq!(
                                grant.reusable,
                                machine::answer_is_timeless(&decided, &grant.permit),
                                "reusable {:?} on {:?}", grant, decided
                            );
                        }
                    }
                    grants.extend(got.ok());
                }
                Op::Report(pick, outcome, w) => {
                    if grants.is_empty() {
                        continue;
                    }
                    let w = w % n;
                    let grant = grants.swap_remove(pick.index(grants.len()));
                    loads_due = Some((w, shared.loads(w) + shared.loads_due(w, op, Some(&grant))));
                    let got = breakers[w].report(&grant, outcome, now);
                    if faulted() {
                        prop_assert!(on_fire(&got), "{:?}", got);
                    } else {
                        prop_assert_eq!(got, Ok(()));
                        let write = machine::report(&cfg, &before.1, &grant.permit, outcome, now);
                        prop_assert_eq!(
                            shared.stored().1, write.unwrap_or(before.1.clone()),
                            "report {:?} of {:?}", outcome, grant
                        );
                    }
                }
                Op::Operate(action, w) => {
                    let w = w % n;
                    loads_due = Some((w, shared.loads(w) + shared.loads_due(w, op, None)));
                    let got = operate(&shared, &breakers[w], action, now);
                    if faulted() {
                        prop_assert!(on_fire(&got), "{:?}", got);
                    } else {
                        prop_assert_eq!(got, Ok(()));
                        prop_assert_eq!(shared.stored().1, machine::operate(&before.1, action, now));
                    }
                }
                Op::Snapshot(w) => {
                    let w = w % n;
                    loads_due = Some((w, shared.loads(w) + shared.loads_due(w, op, None)));
                    let got = breakers[w].snapshot(now);
                    if faulted() {
                        prop_assert!(on_fire(&got.map(drop)));
                    } else {
                        prop_assert_eq!(got, Ok(machine::snapshot(&cfg, &before.1, now)));
                    }
                }
                Op::Wait(wait) => shared.now.set(now + wait.ms(&cfg)),
            }
            if let Some((w, loads)) = loads_due {
                prop_assert_eq!(shared.loads(w), loads, "loads by instance {} for {:?}", w, op);
            }
            if faulted() {
                prop_assert_eq!(shared.stored(), before.clone(), "a failed call wrote");
            }
            check_shared(&shared)?;
            prop_assert!(shared.stored().1.generation >= before.1.generation, "generation went back");
        }
    }
}

// ---------------------------------------------------------------------------
// Regressions: each the minimal case the random runs above found of a bug
// since fixed, asserting the fixed behaviour.

fn tiny() -> Config {
    Config {
        fail_max: 1,
        reset_timeout_ms: 1,
        success_threshold: 1,
        half_open_max_calls: 1,
        trial_timeout_ms: 1,
        fallback_state: State::Closed,
    }
}

/// Once a bug: an operator's half-open while half-open cleared the trials but
/// kept the generation, so a trial permit issued before it still matched a
/// new trial issued in the same ms, took its slot and closed the circuit. Now
/// every operator action starts a new generation, and the old trial counts
/// nothing while the new one still does.
#[test]
fn an_operators_half_open_voids_the_trials_before_it() {
    let cfg = tiny();
    let open = machine::operate(&Record::default(), Action::Open, 0);
    let (Some(half_open), Ok(voided)) = machine::acquire(&cfg, &open, 1) else {
        panic!("the reset timeout elapsed: a trial is due");
    };
    let reset = machine::operate(&half_open, Action::HalfOpen, 1);
    assert_eq!(reset.state, half_open.state);
    assert_eq!(
        reset.generation,
        voided.generation + 1,
        "an operator action starts a new generation even in the same state"
    );
    let (Some(with_new_trial), Ok(new)) = machine::acquire(&cfg, &reset, 1) else {
        panic!("the operator freed every slot");
    };
    assert_eq!(new.issued_at_ms, voided.issued_at_ms, "the same slot name");
    let write = machine::report(&cfg, &with_new_trial, &voided, Outcome::Success, 1);
    assert_eq!(
        write, None,
        "the operator's half-open voided this trial; its report counts nothing"
    );
    let closed = machine::report(&cfg, &with_new_trial, &new, Outcome::Success, 1);
    assert_eq!(
        closed.map(|r| r.state),
        Some(State::Closed),
        "the new trial counts"
    );
}

/// Once a bug: `Breaker::report` decided on its cached record when that was
/// at least as new as the permit; a success in closed with a cached count of
/// 0 wrote nothing, although another instance had counted failures since.
/// The reset was lost: failure, success, failure tripped fail-max = 2. Now a
/// decision to write nothing is confirmed with one load, and the success
/// resets the count.
#[test]
fn a_success_reported_through_a_stale_instance_resets_the_count() {
    let cfg = Config {
        fail_max: 2,
        reset_timeout_ms: 1_000,
        trial_timeout_ms: 1_000,
        ..tiny()
    };
    let shared = Shared::new(&cfg, 2, 0);
    let breakers = instances(&cfg, &shared, 2);
    let (a, b) = (&breakers[0], &breakers[1]);
    let late = b.acquire(0).unwrap();
    let first = a.acquire(0).unwrap();
    a.report(&first, Outcome::Failure, 1).unwrap();
    assert_eq!(shared.stored().1.failures, 1);
    let loads = shared.loads(1);
    b.report(&late, Outcome::Success, 2).unwrap();
    assert_eq!(
        shared.loads(1),
        loads + 1,
        "the cached decision is confirmed by one load"
    );
    assert_eq!(
        shared.stored().1.failures,
        0,
        "a success reported after a failure resets the count"
    );
    let second = a.acquire(3).unwrap();
    a.report(&second, Outcome::Failure, 3).unwrap();
    assert_eq!(
        shared.stored().1.state,
        State::Closed,
        "no two consecutive failures"
    );
    check_shared(&shared).unwrap();
}

/// Once a bug: `Breaker::report` dropped a permit whose generation was older
/// than its cached record's without a storage call. But the cache can be
/// newer than the storage: after the key vanished, the missing record reads
/// as generation 0, and the failures of permits issued on it, reported
/// through an instance that had cached generation 1, were all lost; the
/// circuit never opened. Now the cached decision to write nothing is
/// confirmed with one load, which finds the key gone, and the failure counts.
#[test]
fn a_failure_reported_after_the_key_vanished_counts() {
    let cfg = Config {
        fail_max: 2,
        reset_timeout_ms: 1_000,
        trial_timeout_ms: 1_000,
        ..tiny()
    };
    let shared = Shared::new(&cfg, 2, 0);
    let breakers = instances(&cfg, &shared, 2);
    let (a, b) = (&breakers[0], &breakers[1]);
    operate(&shared, a, Action::Close, 0).unwrap();
    assert_eq!(shared.known_generation(0), 1);
    // The key vanishes (expired, flushed): `a` still caches generation 1.
    shared.entries.borrow_mut().remove(KEY);

    shared.now.set(1);
    let first = b.acquire(1).unwrap();
    assert_eq!(first.permit.generation, 0, "issued on the missing record");
    let loads = shared.loads(0);
    a.report(&first, Outcome::Failure, 1).unwrap();
    assert_eq!(
        shared.loads(0),
        loads + 1,
        "the cache showed the permit stale: one load confirms it"
    );
    let (_, stored) = shared.stored();
    assert_eq!(
        (stored.state, stored.failures, stored.generation),
        (State::Closed, 1, 0),
        "the failure counts"
    );

    shared.now.set(2);
    let second = b.acquire(2).unwrap();
    let loads = shared.loads(0);
    a.report(&second, Outcome::Failure, 2).unwrap();
    assert_eq!(shared.loads(0), loads, "the cache now says to write");
    let (_, stored) = shared.stored();
    assert_eq!(
        (stored.state, stored.generation, stored.opened_at_ms),
        (State::Open, 1, Some(2)),
        "the fail-max-th failure opens"
    );
    check_shared(&shared).unwrap();
    assert_eq!(
        shared
            .heard
            .borrow()
            .iter()
            .filter(|h| !h.remote)
            .cloned()
            .collect::<Vec<_>>(),
        vec![Heard {
            instance: 0,
            previous: State::Closed,
            current: State::Open,
            at_ms: 2,
            remote: false,
        }]
    );
}

/// A permit the instance's cache shows stale (older than the cached
/// generation) is no longer dropped unseen: like every decision to write
/// nothing made from the cache, it is confirmed with one load, and writes
/// nothing. Only a report that can never write (a non-trial `ignored`)
/// skips the storage.
#[test]
fn a_report_the_cache_shows_stale_is_confirmed_by_one_load() {
    let cfg = tiny();
    let shared = Shared::new(&cfg, 1, 0);
    let breakers = instances(&cfg, &shared, 1);
    let breaker = &breakers[0];
    let old = breaker.acquire(0).unwrap();
    operate(&shared, breaker, Action::Close, 0).unwrap();
    assert!(
        shared.known_generation(0) > old.permit.generation,
        "the cache shows the permit stale"
    );
    let old_trial = Grant {
        permit: Permit {
            trial: true,
            ..old.permit
        },
        ..old
    };
    let stored = shared.stored();
    for (grant, outcome, loads) in [
        (&old, Outcome::Success, 1),
        (&old, Outcome::Failure, 1),
        (&old_trial, Outcome::Success, 1),
        (&old_trial, Outcome::Failure, 1),
        (&old_trial, Outcome::Ignored, 1),
        (&old, Outcome::Ignored, 0),
    ] {
        let before = shared.loads(0);
        breaker.report(grant, outcome, 1).unwrap();
        let case = format!("{outcome:?} of {:?}", grant.permit);
        assert_eq!(shared.loads(0) - before, loads, "{case}: loads");
        assert_eq!(
            shared.stored(),
            stored,
            "{case}: a stale permit writes nothing"
        );
    }
    check_shared(&shared).unwrap();
}

// ---------------------------------------------------------------------------
// acquire-at-version and quiet-success.

/// `acquire_at_version` skips the load exactly when the host names the
/// version the instance has cached (0: absent), and otherwise loads; either
/// way it answers as a plain `acquire` through another instance does.
#[test]
fn acquire_at_version_loads_unless_the_version_is_the_cached_one() {
    let cfg = Config {
        fail_max: 3,
        reset_timeout_ms: 100,
        success_threshold: 1,
        half_open_max_calls: 1,
        trial_timeout_ms: 100,
        fallback_state: State::Closed,
    };
    let shared = Shared::new(&cfg, 3, 0);
    let breakers = instances(&cfg, &shared, 3);
    let (a, writer, plain) = (&breakers[0], &breakers[1], &breakers[2]);
    let at = |now: u64| {
        shared.now.set(now);
        now
    };
    // Acquires through `a` at `version`, then plainly through `plain`;
    // checks that the answers agree, returns `a`'s loads and answer.
    let both = |version: u64, now: u64| {
        let loads = shared.loads(0);
        let got = a.acquire_at_version(at(now), version);
        let loaded = shared.loads(0) - loads;
        let want = plain.acquire(now);
        let permit = |g: &Result<Grant, Denied>| g.clone().map(|g| g.permit);
        assert_eq!(
            permit(&got),
            permit(&want),
            "at version {version}, {now} ms"
        );
        if let (Ok(got), Ok(want)) = (&got, &want) {
            assert_eq!(got.seen_version, want.seen_version);
            assert_eq!(got.quiet_success, want.quiet_success);
            assert_eq!(got.reusable, want.reusable);
        }
        (loaded, got)
    };

    assert_eq!(both(0, 1).0, 1, "nothing cached yet: it loads");
    assert_eq!(both(0, 2).0, 0, "the absent entry is cached as version 0");
    assert_eq!(both(7, 3).0, 1, "not the cached version: it loads");

    let counted = writer.acquire(at(4)).unwrap();
    writer.report(&counted, Outcome::Failure, 4).unwrap();
    let (version, _) = shared.stored();
    assert_eq!(version, 1);
    let (loaded, got) = both(version, 5);
    assert_eq!(loaded, 1, "the cache is older than the named version");
    assert!(!got.unwrap().quiet_success, "a failure is counted");
    let (loaded, got) = both(version, 6);
    assert_eq!(loaded, 0, "the named version is the cached one");
    assert_eq!(got.unwrap().seen_version, version);

    // Trip the circuit through `writer`, then let the reset timeout elapse:
    // an acquire at the current version reloads, takes the trial and writes.
    for now in [7, 8] {
        let grant = writer.acquire(at(now)).unwrap();
        writer.report(&grant, Outcome::Failure, now).unwrap();
    }
    let (version, tripped) = shared.stored();
    assert_eq!(tripped.state, State::Open);
    let loads = shared.loads(0);
    let trial = a.acquire_at_version(at(200), version).unwrap();
    assert!(trial.permit.trial);
    assert_eq!(shared.loads(0), loads + 1);
    assert_eq!(trial.seen_version, shared.stored().0, "its own write");
    assert_eq!(shared.stored().1.state, State::HalfOpen);
    // The slot is taken; at the version it wrote, `a` answers from its cache.
    let loads = shared.loads(0);
    let full = a.acquire_at_version(at(201), shared.stored().0);
    assert_eq!(full, Err(Denied::Rejected(Rejection::HalfOpenFull(99))));
    assert_eq!(shared.loads(0), loads);
    assert_eq!(plain.acquire(201), full);
    check_shared(&shared).unwrap();
}

/// `quiet_success` is set exactly when reporting a success would write
/// nothing on the record the permit was decided on: closed with no failure
/// counted, or disabled; never for a trial, never for a fallback permit.
/// `reusable` is set exactly when that record is closed (failures counted
/// or not) or disabled and the permit no trial; never for a fallback permit.
#[test]
fn quiet_success_is_set_only_when_a_success_would_change_nothing() {
    let cfg = Config {
        fail_max: 2,
        reset_timeout_ms: 10,
        trial_timeout_ms: 10,
        ..tiny()
    };
    let shared = Shared::new(&cfg, 2, 0);
    let breakers = instances(&cfg, &shared, 2);
    let (a, b) = (&breakers[0], &breakers[1]);
    let at = |now: u64| {
        shared.now.set(now);
        now
    };
    let quiet = |grant: &Grant| {
        let decided = shared.stored();
        assert_eq!(grant.seen_version, decided.0);
        let now = shared.now.get();
        let write = machine::report(&cfg, &decided.1, &grant.permit, Outcome::Success, now);
        assert_eq!(
            grant.quiet_success,
            write.is_none(),
            "{grant:?} on {decided:?}"
        );
        assert_eq!(
            grant.reusable,
            machine::answer_is_timeless(&decided.1, &grant.permit),
            "{grant:?} on {decided:?}"
        );
        assert_eq!(
            grant.reusable,
            !grant.permit.trial && matches!(decided.1.state, State::Closed | State::Disabled),
            "{grant:?} on {decided:?}"
        );
        grant.quiet_success
    };
    let fail_through_b = |now: u64| {
        let grant = b.acquire(at(now)).unwrap();
        b.report(&grant, Outcome::Failure, now).unwrap();
    };

    let fresh = a.acquire(at(0)).unwrap();
    assert!(quiet(&fresh), "closed, nothing counted");
    assert!(fresh.reusable, "closed: the same answer at any time");
    fail_through_b(0);
    let counted = a.acquire(at(1)).unwrap();
    assert!(!quiet(&counted), "a failure to reset");
    assert!(
        counted.reusable,
        "closed with a failure counted: still timeless"
    );
    a.report(&counted, Outcome::Success, 1).unwrap();
    assert_eq!(shared.stored().1.failures, 0, "which it did");

    // Quiet at acquire promises nothing about later: `fresh` was quiet, yet
    // its success resets a failure counted since (see the regression above).
    fail_through_b(2);
    a.report(&fresh, Outcome::Success, at(2)).unwrap();
    assert_eq!(shared.stored().1.failures, 0);

    fail_through_b(3);
    fail_through_b(3);
    assert_eq!(shared.stored().1.state, State::Open);
    let trial = a.acquire(at(13)).unwrap();
    assert!(trial.permit.trial);
    assert!(!quiet(&trial), "a trial's success counts");
    assert!(!trial.reusable, "a trial takes a slot");

    operate(&shared, b, Action::Disable, at(14)).unwrap();
    let disabled = a.acquire(14).unwrap();
    assert!(quiet(&disabled), "disabled records nothing");
    assert!(disabled.reusable, "disabled admits at any time");
    operate(&shared, b, Action::HalfOpen, at(15)).unwrap();
    let trial = a.acquire(15).unwrap();
    assert!(!quiet(&trial), "a trial after an operator's half-open");
    assert!(!trial.reusable, "a trial after an operator's half-open");
    check_shared(&shared).unwrap();

    let broken = Broken::default();
    let breaker = Breaker::new(KEY.to_owned(), cfg.clone(), &broken);
    let fallback = breaker.acquire(16).unwrap();
    assert!(!fallback.quiet_success, "decided on no record");
    assert!(!fallback.reusable, "decided on no record");
}

// ---------------------------------------------------------------------------
// A new instance takes itself for closed; a contended acquire is unavailable;
// a corrupt record keeps the cache; a report that can never write touches no
// storage; repairing a corrupt record fires from the state last seen.

/// How a [`Scripted`] storage answers a compare-and-swap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reply {
    /// Writes if the expected version is the stored one, else conflicts.
    Write,
    /// Conflicts, handing the stored entry unchanged.
    Conflict,
    /// Fails.
    Fail,
}

/// A storage a test sets by hand.
struct Scripted {
    entry: RefCell<Option<Stored>>,
    reply: Cell<Reply>,
    load_fails: Cell<bool>,
    loads: Cell<usize>,
    swaps: Cell<usize>,
    events: RefCell<Vec<Event>>,
}

impl Scripted {
    /// Holding `record` (none: nothing) at `version`, writing when asked.
    fn holding(record: Option<&Record>, version: u64) -> Scripted {
        Scripted {
            entry: RefCell::new(record.map(|r| Stored {
                version,
                data: record::encode(r),
            })),
            reply: Cell::new(Reply::Write),
            load_fails: Cell::new(false),
            loads: Cell::new(0),
            swaps: Cell::new(0),
            events: RefCell::new(Vec::new()),
        }
    }

    /// Replaces the stored bytes, as another writer would.
    fn put(&self, data: Vec<u8>, version: u64) {
        *self.entry.borrow_mut() = Some(Stored { version, data });
    }
}

impl Port for &Scripted {
    fn load(&self, _key: &str) -> Result<Option<Stored>, String> {
        self.loads.set(self.loads.get() + 1);
        if self.load_fails.get() {
            return Err("disk on fire".into());
        }
        Ok(self.entry.borrow().clone())
    }

    fn compare_and_swap(
        &self,
        _key: &str,
        expected: Option<u64>,
        data: &[u8],
    ) -> Result<Swap, String> {
        self.swaps.set(self.swaps.get() + 1);
        let current = self.entry.borrow().clone();
        match self.reply.get() {
            Reply::Fail => Err("disk on fire".into()),
            Reply::Write if current.as_ref().map(|s| s.version) == expected => {
                let version = expected.unwrap_or(0) + 1;
                self.put(data.to_vec(), version);
                Ok(Swap::Written(version))
            }
            Reply::Write | Reply::Conflict => Ok(Swap::Conflict(current)),
        }
    }

    fn state_changed(&self, _: &str, previous: State, current: State, at: u64, remote: bool) {
        self.events
            .borrow_mut()
            .push((previous, current, at, remote));
    }
}

/// Bytes that are no record.
fn corrupt_bytes() -> Vec<u8> {
    let bytes = vec![0xff];
    assert!(record::decode(&bytes).is_err());
    bytes
}

/// A new instance takes the breaker for closed: its first look, by whatever
/// call, fires one remote event closed -> found if it finds another state,
/// and none if it finds closed or nothing; looking again at the same state
/// fires nothing more. (A report that can never write makes no look: see
/// `a_report_that_can_never_write_touches_no_storage`.)
#[test]
fn a_new_instance_takes_itself_for_closed() {
    let cfg = Config {
        reset_timeout_ms: 100,
        trial_timeout_ms: 100,
        ..tiny()
    };
    let now = 50;
    let states = [
        State::Closed,
        State::Open,
        State::HalfOpen,
        State::ForcedOpen,
        State::Disabled,
    ];
    let found: Vec<Option<Record>> = std::iter::once(None)
        .chain(states.map(|state| {
            Some(Record {
                state,
                opened_at_ms: Some(0),
                generation: 2,
                ..Record::default()
            })
        }))
        .collect();
    for rec in &found {
        for call in ["snapshot", "acquire", "acquire at version", "report"] {
            let port = Scripted::holding(rec.as_ref(), 7);
            let breaker = Breaker::new(KEY.to_owned(), cfg.clone(), &port);
            match call {
                "snapshot" => drop(breaker.snapshot(now).unwrap()),
                "acquire" => drop(breaker.acquire(now)),
                "acquire at version" => drop(breaker.acquire_at_version(now, 7)),
                _ => {
                    // A success that writes nothing on any of these records,
                    // so the report is one load and no write.
                    let permit = Permit {
                        generation: 2,
                        trial: false,
                        issued_at_ms: now,
                    };
                    let grant = Grant {
                        permit,
                        seen_version: 7,
                        quiet_success: false,
                        reusable: false,
                    };
                    breaker.report(&grant, Outcome::Success, now).unwrap();
                    assert_eq!(port.swaps.get(), 0, "{call} on {rec:?}: no write");
                }
            }
            assert_eq!(port.loads.get(), 1, "{call} on {rec:?}: one first look");
            let want = match rec {
                Some(r) if r.state != State::Closed => vec![(State::Closed, r.state, now, true)],
                _ => vec![],
            };
            assert_eq!(port.events.take(), want, "{call} on {rec:?}");
            breaker.snapshot(now + 1).unwrap();
            assert_eq!(
                port.events.take(),
                vec![],
                "{call} on {rec:?}: a second look"
            );
        }
    }

    // An operator action through a new instance: the remote event of its first
    // look comes before the local one of its write.
    let open = found[2].clone().unwrap();
    let port = Scripted::holding(Some(&open), 7);
    let breaker = Breaker::new(KEY.to_owned(), cfg.clone(), &port);
    breaker.operate(Action::Close, now).unwrap();
    assert_eq!(
        port.events.take(),
        vec![
            (State::Closed, State::Open, now, true),
            (State::Open, State::Closed, now, false),
        ]
    );
    // On an absent key, only the write's local event.
    let port = Scripted::holding(None, 0);
    let breaker = Breaker::new(KEY.to_owned(), cfg.clone(), &port);
    breaker.operate(Action::ForceOpen, now).unwrap();
    assert_eq!(
        port.events.take(),
        vec![(State::Closed, State::ForcedOpen, now, false)]
    );

    // Two instances on one storage: the one that did not trip the circuit
    // learns of it on its first look.
    let shared = Shared::new(&cfg, 2, 0);
    let breakers = instances(&cfg, &shared, 2);
    let grant = breakers[0].acquire(0).unwrap();
    breakers[0].report(&grant, Outcome::Failure, 0).unwrap();
    shared.now.set(1);
    assert_eq!(
        breakers[1].acquire(1),
        Err(Denied::Rejected(Rejection::Open(99)))
    );
    check_shared(&shared).unwrap();
    assert_eq!(
        *shared.heard.borrow(),
        vec![
            Heard {
                instance: 0,
                previous: State::Closed,
                current: State::Open,
                at_ms: 0,
                remote: false,
            },
            Heard {
                instance: 1,
                previous: State::Closed,
                current: State::Open,
                at_ms: 1,
                remote: true,
            },
        ]
    );
}

/// When acquire's write (open -> half-open, or taking a trial slot) loses
/// every one of the MAX_ATTEMPTS (64) compare-and-swaps to conflicts, acquire
/// is denied as unavailable whatever the fallback state, and took no slot.
/// A genuine storage error, by compare-and-swap or by load, still follows
/// the fallback.
#[test]
fn a_contended_acquire_is_unavailable_whatever_the_fallback() {
    assert_eq!(MAX_ATTEMPTS, 64);
    let now = 20;
    let open = Record {
        state: State::Open,
        opened_at_ms: Some(0),
        generation: 3,
        ..Record::default()
    };
    let half_open = Record {
        state: State::HalfOpen,
        generation: 3,
        trials: vec![15],
        ..Record::default()
    };
    for fallback_state in [
        State::Closed,
        State::Open,
        State::ForcedOpen,
        State::Disabled,
    ] {
        let cfg = Config {
            reset_timeout_ms: 10,
            trial_timeout_ms: 10,
            half_open_max_calls: 2,
            fallback_state,
            ..tiny()
        };
        for rec in [&open, &half_open] {
            let (write, answer) = machine::acquire(&cfg, rec, now);
            assert!(
                write.is_some() && answer.is_ok_and(|p| p.trial),
                "a trial to write on {rec:?}"
            );
            let case = format!("fallback {fallback_state:?}, {rec:?}");

            let port = Scripted::holding(Some(rec), 5);
            port.reply.set(Reply::Conflict);
            let breaker = Breaker::new(KEY.to_owned(), cfg.clone(), &port);
            match breaker.acquire(now) {
                Err(Denied::StorageUnavailable(m)) => assert!(
                    m.contains("gave up after 64 conflicting writes"),
                    "{case}: {m}"
                ),
                other => panic!("{case}: a contended acquire said {other:?}"),
            }
            assert_eq!((port.loads.get(), port.swaps.get()), (1, 64), "{case}");
            // Nothing was taken: once the writes go through, the trial is there.
            port.reply.set(Reply::Write);
            let trial = breaker.acquire(now).unwrap();
            assert!(trial.permit.trial, "{case}");

            // A compare-and-swap that fails follows the fallback, with the
            // generation just loaded.
            let fallback_permit = |generation| {
                Ok(Grant {
                    permit: Permit {
                        generation,
                        trial: false,
                        issued_at_ms: now,
                    },
                    seen_version: 0,
                    quiet_success: false,
                    reusable: false,
                })
            };
            let port = Scripted::holding(Some(rec), 5);
            port.reply.set(Reply::Fail);
            let breaker = Breaker::new(KEY.to_owned(), cfg.clone(), &port);
            let got = breaker.acquire(now);
            assert_eq!(port.swaps.get(), 1, "{case}");
            if cfg.fallback_admits() {
                assert_eq!(got, fallback_permit(3), "{case}");
            } else {
                assert!(
                    matches!(&got, Err(Denied::StorageUnavailable(m))
                        if m.contains("storage compare-and-swap failed")),
                    "{case}: {got:?}"
                );
            }

            // So does a load that fails, with no generation known.
            let port = Scripted::holding(Some(rec), 5);
            port.load_fails.set(true);
            let breaker = Breaker::new(KEY.to_owned(), cfg.clone(), &port);
            let got = breaker.acquire(now);
            if cfg.fallback_admits() {
                assert_eq!(got, fallback_permit(0), "{case}");
            } else {
                assert!(
                    matches!(&got, Err(Denied::StorageUnavailable(m))
                        if m.contains("storage load failed")),
                    "{case}: {got:?}"
                );
            }
        }
    }
}

/// A corrupt record clears nothing: acquire follows the fallback, and an
/// admitted call's permit carries the newest generation the instance knew,
/// whether the corrupt record came from a load or from a conflict; a fresh
/// instance that knows none gets generation 0.
#[test]
fn a_corrupt_record_keeps_the_cache() {
    let cfg = Config {
        reset_timeout_ms: 100,
        trial_timeout_ms: 100,
        ..tiny()
    };
    let open = Record {
        state: State::Open,
        opened_at_ms: Some(0),
        generation: 4,
        ..Record::default()
    };
    let fallback_permit = |generation, now| {
        Ok(Grant {
            permit: Permit {
                generation,
                trial: false,
                issued_at_ms: now,
            },
            seen_version: 0,
            quiet_success: false,
            reusable: false,
        })
    };
    let port = Scripted::holding(Some(&open), 1);
    let breaker = Breaker::new(KEY.to_owned(), cfg.clone(), &port);
    assert_eq!(
        breaker.acquire(10),
        Err(Denied::Rejected(Rejection::Open(90)))
    );
    port.put(corrupt_bytes(), 2);

    // Found by a load, twice: the first corrupt read cleared nothing.
    for now in [20, 21] {
        assert_eq!(breaker.acquire(now), fallback_permit(4, now));
    }
    assert_eq!(port.loads.get(), 3);
    // Found by a conflict: at the version it cached, the instance skips the
    // load, tries to take the trial, and meets the corrupt record.
    assert_eq!(breaker.acquire_at_version(200, 1), fallback_permit(4, 200));
    assert_eq!((port.loads.get(), port.swaps.get()), (3, 1));
    assert!(breaker.snapshot(201).is_err_and(|m| m.contains("corrupt")));
    assert_eq!(
        port.events.take(),
        vec![(State::Closed, State::Open, 10, true)],
        "only the first look's event"
    );

    // A fresh instance knows no generation.
    let fresh = Breaker::new(KEY.to_owned(), cfg.clone(), &port);
    assert_eq!(fresh.acquire(30), fallback_permit(0, 30));

    // A rejecting fallback says why.
    let rejecting = Config {
        fallback_state: State::Open,
        ..cfg.clone()
    };
    let breaker = Breaker::new(KEY.to_owned(), rejecting, &port);
    assert!(matches!(
        breaker.acquire(40),
        Err(Denied::StorageUnavailable(m)) if m.contains("stored record is corrupt")
    ));
}

proptest! {
    #![proptest_config(settings())]

    /// Over a record that turned corrupt, acquire follows the fallback with
    /// the generation of the last good record the instance saw (0 if none),
    /// however often it finds the corrupt one.
    #[test]
    fn a_corrupt_record_follows_the_fallback_with_the_generation_known(
        mut cfg in config(),
        fallback_state in fallback(),
        warm_up in prop::option::of(prop::option::of(any_record())),
        waits in vec(0..5u64, 1..10),
    ) {
        cfg.fallback_state = fallback_state;
        let stored = warm_up.clone().flatten();
        let port = Scripted::holding(stored.as_ref(), 5);
        let breaker = Breaker::new(KEY.to_owned(), cfg.clone(), &port);
        let mut now = 1_000;
        let known = match &warm_up {
            None => 0,
            Some(_) => {
                let record = stored.clone().unwrap_or_default();
                prop_assert_eq!(breaker.snapshot(now), Ok(machine::snapshot(&cfg, &record, now)));
                record.generation
            }
        };
        let events = first_look(stored.as_ref(), now);
        port.put(corrupt_bytes(), 6);
        for wait in &waits {
            now += wait;
            match breaker.acquire(now) {
                Ok(grant) => {
                    prop_assert!(cfg.fallback_admits(), "admitted against the fallback");
                    let permit = Permit { generation: known, trial: false, issued_at_ms: now };
                    prop_assert_eq!(grant, Grant { permit, seen_version: 0, quiet_success: false, reusable: false });
                }
                Err(Denied::StorageUnavailable(m)) => {
                    prop_assert!(!cfg.fallback_admits(), "rejected against the fallback");
                    prop_assert!(m.contains("stored record is corrupt"), "{}", m);
                }
                other => prop_assert!(false, "acquire: {:?}", other),
            }
        }
        prop_assert_eq!(port.loads.get(), usize::from(warm_up.is_some()) + waits.len());
        prop_assert_eq!(port.swaps.get(), 0);
        prop_assert_eq!(port.events.take(), events);
    }
}

/// A report that can never write, a non-trial `ignored`, returns Ok at once:
/// no load, no compare-and-swap, no event, whatever is stored, whether the
/// instance has a cache or not, whatever the permit's generation, and even
/// when the storage fails every call. A trial's `ignored` frees its slot, so
/// it does go to the storage.
#[test]
fn a_report_that_can_never_write_touches_no_storage() {
    let cfg = tiny();
    let open = Record {
        state: State::Open,
        opened_at_ms: Some(0),
        generation: 3,
        ..Record::default()
    };
    let grant = |generation, trial| Grant {
        permit: Permit {
            generation,
            trial,
            issued_at_ms: 5,
        },
        seen_version: 4,
        quiet_success: false,
        reusable: false,
    };
    for stored in [None, Some(&open)] {
        for warm in [false, true] {
            for failing in [false, true] {
                let case = format!("stored {stored:?}, warm {warm}, failing {failing}");
                let port = Scripted::holding(stored, 4);
                let breaker = Breaker::new(KEY.to_owned(), cfg.clone(), &port);
                if warm {
                    breaker.snapshot(0).unwrap();
                    port.events.take();
                }
                port.load_fails.set(failing);
                if failing {
                    port.reply.set(Reply::Fail);
                }
                let calls = (port.loads.get(), port.swaps.get());
                for generation in [0, 2, 3, 4] {
                    let never = grant(generation, false);
                    assert!(machine::report_never_writes(
                        &never.permit,
                        Outcome::Ignored
                    ));
                    assert_eq!(
                        breaker.report(&never, Outcome::Ignored, 5),
                        Ok(()),
                        "{case}"
                    );
                }
                assert_eq!((port.loads.get(), port.swaps.get()), calls, "{case}");
                assert_eq!(port.events.take(), vec![], "{case}");

                // A trial's ignored, of the stored generation: not a
                // never-writing report. No slot is held, so it writes
                // nothing, and that is confirmed by one load.
                let trial = grant(3, true);
                assert!(!machine::report_never_writes(
                    &trial.permit,
                    Outcome::Ignored
                ));
                let got = breaker.report(&trial, Outcome::Ignored, 5);
                assert_eq!(
                    (port.loads.get(), port.swaps.get()),
                    (calls.0 + 1, calls.1),
                    "{case}: a trial's ignored"
                );
                assert_eq!(got.is_err(), failing, "{case}: {got:?}");
            }
        }
    }
}

/// The action's target state.
fn target(action: Action) -> State {
    match action {
        Action::Open => State::Open,
        Action::Close => State::Closed,
        Action::HalfOpen => State::HalfOpen,
        Action::ForceOpen => State::ForcedOpen,
        Action::Disable => State::Disabled,
    }
}

/// An operator action overwrites a corrupt record. The record the change is
/// computed from is made up (closed, with the corrupt entry's version as its
/// generation), but the local event runs from the state the instance last
/// saw: an instance that saw open and closes fires open -> closed (once, it
/// fired nothing: made-up closed -> closed); a new instance, which takes
/// itself for closed, that opens fires closed -> open; an instance that saw
/// open and opens fires nothing (once, closed -> open).
#[test]
fn repairing_a_corrupt_record_fires_from_the_state_last_seen() {
    let cfg = Config {
        reset_timeout_ms: 100,
        trial_timeout_ms: 100,
        ..tiny()
    };
    let open = Record {
        state: State::Open,
        opened_at_ms: Some(0),
        generation: 2,
        ..Record::default()
    };
    let repair = |warm_up: Option<&Record>, action| {
        let port = Scripted::holding(warm_up, 1);
        let breaker = Breaker::new(KEY.to_owned(), cfg.clone(), &port);
        if warm_up.is_some() {
            breaker.snapshot(5).unwrap();
        }
        port.put(corrupt_bytes(), 2);
        breaker.operate(action, 10).unwrap();
        let made_up = Record {
            generation: 2,
            ..Record::default()
        };
        let written = machine::operate(&made_up, action, 10);
        assert_eq!(
            *port.entry.borrow(),
            Some(Stored {
                version: 3,
                data: record::encode(&written),
            }),
            "{action:?} over the corrupt record"
        );
        port.events.take()
    };
    assert_eq!(
        repair(Some(&open), Action::Close),
        vec![
            (State::Closed, State::Open, 5, true),
            (State::Open, State::Closed, 10, false),
        ],
        "saw open, closes"
    );
    assert_eq!(
        repair(None, Action::Open),
        vec![(State::Closed, State::Open, 10, false)],
        "a new instance opens"
    );
    assert_eq!(
        repair(Some(&open), Action::Open),
        vec![(State::Closed, State::Open, 5, true)],
        "saw open, opens: only the first look's event"
    );
    assert_eq!(
        repair(Some(&Record::default()), Action::Close),
        vec![],
        "saw closed, closes"
    );
}

proptest! {
    #![proptest_config(settings())]

    /// Over a record that turned corrupt, an operator action writes
    /// `machine::operate` of a made-up closed record (generation: the corrupt
    /// entry's version) at the next version; the instance fires one local
    /// event from the state it last saw (closed if it never looked) to the
    /// action's state, if they differ; a later look fires nothing. With a
    /// cache it tries the cached version first, so two compare-and-swaps and
    /// no load; without, one load and one compare-and-swap.
    #[test]
    fn an_operator_repairs_a_corrupt_record_from_the_state_last_seen(
        cfg in config(),
        warm_up in prop::option::of(prop::option::of(any_record())),
        action in action(),
        corrupt_version in 6..10u64,
    ) {
        let stored = warm_up.clone().flatten();
        let port = Scripted::holding(stored.as_ref(), 5);
        let breaker = Breaker::new(KEY.to_owned(), cfg.clone(), &port);
        let now = 1_000;
        let (seen, mut events) = match &warm_up {
            None => (State::Closed, Vec::new()),
            Some(_) => {
                let record = stored.clone().unwrap_or_default();
                prop_assert_eq!(breaker.snapshot(now), Ok(machine::snapshot(&cfg, &record, now)));
                (record.state, first_look(stored.as_ref(), now))
            }
        };
        let warm_loads = port.loads.get();
        port.put(corrupt_bytes(), corrupt_version);
        prop_assert_eq!(breaker.operate(action, now + 1), Ok(()));
        let made_up = Record { generation: corrupt_version, ..Record::default() };
        let written = machine::operate(&made_up, action, now + 1);
        prop_assert_eq!(written.state, target(action));
        prop_assert_eq!(
            port.entry.borrow().clone(),
            Some(Stored { version: corrupt_version + 1, data: record::encode(&written) })
        );
        let calls = if warm_up.is_some() { (0, 2) } else { (1, 1) };
        prop_assert_eq!((port.loads.get() - warm_loads, port.swaps.get()), calls, "loads, swaps");
        if seen != written.state {
            events.push((seen, written.state, now + 1, false));
        }
        prop_assert_eq!(port.events.take(), events);
        prop_assert_eq!(breaker.snapshot(now + 2), Ok(machine::snapshot(&cfg, &written, now + 2)));
        prop_assert_eq!(port.events.take(), Vec::<Event>::new(), "a later look");
    }
}
