//! The stepped engine driven as an async host drives it: several operations
//! in flight per instance, their steps performed out of order, a storage
//! that fails between steps (cleanly, or after applying a write), another
//! writer that conflicts at every write, and operations abandoned midway.
//! Whatever the schedule: nothing panics, every operation ends in a bounded
//! number of steps, a wrong result is a clean error, generations never go
//! back, each instance tells a chain of changes, and no outcome counts
//! twice (exactly once when no write's fate was left unknown).

use proptest::prelude::*;
use proptest::sample::Index;
use tripswitch_core::answer::{BreakerError, Change, MAX_ATTEMPTS, Stored, Swap};
use tripswitch_core::config::{Config, Options};
use tripswitch_core::engine::{Answer, Engine, Found, Known, Operation, Request, Step};
use tripswitch_core::machine::{Outcome, Permit, Record, State};
use tripswitch_core::record;

use crate::KEY;
use crate::strategies::settings;

/// The storage all instances share: one key, versions that never repeat.
#[derive(Default)]
struct Store {
    entry: Option<Stored>,
    versions: u64,
    /// The highest generation ever stored.
    generation: u64,
}

impl Store {
    fn swap(&mut self, expected: Option<u64>, data: &[u8]) -> Swap {
        if self.entry.as_ref().map(|e| e.version) != expected {
            return Swap::Conflict(self.entry.clone());
        }
        let written = record::decode(data).expect("the engine writes valid records");
        assert!(
            written.generation >= self.generation,
            "generation went back: {} after {}",
            written.generation,
            self.generation
        );
        self.generation = written.generation;
        self.versions += 1;
        self.entry = Some(Stored {
            version: self.versions,
            data: data.to_vec(),
        });
        Swap::Written(self.versions)
    }

    /// Another writer rewrites the record as it is: a new version.
    fn bump(&mut self) {
        if let Some(entry) = self.entry.clone() {
            self.swap(Some(entry.version), &entry.data);
        }
    }

    fn record(&self) -> Record {
        self.entry.as_ref().map_or_else(Record::default, |e| {
            record::decode(&e.data).expect("the store holds valid records")
        })
    }
}

/// What the host does to a step it performs.
#[derive(Clone, Copy, Debug)]
enum Fault {
    None,
    /// The storage fails and applies nothing.
    Fail,
    /// Another writer writes first: a write conflicts.
    Bump,
    /// A write is applied, and its reply lost: the storage reports a failure.
    Lost,
}

/// One move of the schedule.
#[derive(Clone, Debug)]
enum Move {
    /// Opens an operation on an instance.
    Open(usize, Kind, bool),
    /// Performs the step of one operation in flight.
    Advance(Index, Fault),
    /// Abandons one operation in flight.
    Abandon(Index),
    /// Resumes an operation of an instance with a result for another step.
    Misuse(usize),
    /// The clock moves on.
    Tick(u64),
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Acquire,
    Report(Outcome),
    Flush,
    Snapshot,
}

fn a_move() -> impl Strategy<Value = Move> {
    let kind = prop_oneof![
        1 => Just(Kind::Acquire),
        3 => Just(Kind::Report(Outcome::Failure)),
        2 => Just(Kind::Report(Outcome::Success)),
        1 => Just(Kind::Flush),
        1 => Just(Kind::Snapshot),
    ];
    let fault = prop_oneof![
        6 => Just(Fault::None),
        1 => Just(Fault::Fail),
        1 => Just(Fault::Bump),
        1 => Just(Fault::Lost),
    ];
    prop_oneof![
        3 => (0..3usize, kind, any::<bool>()).prop_map(|(i, k, v)| Move::Open(i, k, v)),
        6 => (any::<Index>(), fault).prop_map(|(i, f)| Move::Advance(i, f)),
        1 => any::<Index>().prop_map(Move::Abandon),
        1 => (0..3usize).prop_map(Move::Misuse),
        1 => (0..400u64).prop_map(Move::Tick),
    ]
}

/// A step the host has yet to perform.
enum Pending {
    Read(Operation),
    Write(Operation, Option<u64>, Vec<u8>),
}

struct Flight {
    instance: usize,
    pending: Pending,
    /// Steps performed so far.
    steps: usize,
    /// An accepted report's outcome, counted when the operation ends.
    outcome: Option<Outcome>,
}

/// What the runs tally.
#[derive(Default)]
struct Tally {
    /// Reports of closed-generation permits the engines took.
    failures: u64,
    calls: u64,
    /// Writes applied whose reply said failure.
    lost: u64,
    /// Operations abandoned (a report's outcome may have been held or not).
    abandoned: u64,
}

struct Run {
    config: Config,
    store: Store,
    engines: Vec<Engine>,
    /// Per instance, the last state it told.
    told: Vec<State>,
    flights: Vec<Flight>,
    permit: Permit,
    now: u64,
    tally: Tally,
}

/// Steps one operation may take at most: a read to settle a doubt, a read,
/// and every try of a merge and of a report.
const MOST_STEPS: usize = 3 + 2 * MAX_ATTEMPTS;

impl Run {
    /// `instances` engines on one store, each having looked at it once.
    fn new(config: Config, instances: usize) -> Run {
        let mut run = Run::bare(config, instances);
        for instance in 0..instances {
            let step = run.engines[instance].open(Request::Snapshot, Known::Nothing, run.now);
            run.follow(instance, step, 0, None).expect("a first look");
            run.drain().expect("a first look");
        }
        run
    }

    fn bare(config: Config, instances: usize) -> Run {
        let now = 1_000;
        Run {
            engines: (0..instances)
                .map(|_| Engine::new(KEY.to_owned(), config.clone()))
                .collect(),
            config,
            store: Store::default(),
            told: vec![State::Closed; instances],
            flights: Vec::new(),
            // Every instance starts on the absent key: generation 0.
            permit: Permit {
                generation: 0,
                trial: false,
                issued_at_ms: now,
            },
            now,
            tally: Tally::default(),
        }
    }

    fn tell(&mut self, instance: usize, changes: Vec<Change>) -> Result<(), TestCaseError> {
        for change in changes {
            prop_assert_eq!(change.previous, self.told[instance], "{:?}", change);
            prop_assert_ne!(change.previous, change.current);
            self.told[instance] = change.current;
        }
        Ok(())
    }

    fn open(&mut self, instance: usize, kind: Kind, versioned: bool) -> Result<(), TestCaseError> {
        let instance = instance % self.engines.len();
        let request = match kind {
            Kind::Acquire => Request::Acquire,
            Kind::Report(outcome) => Request::Report {
                permit: self.permit,
                outcome,
            },
            Kind::Flush => Request::Flush,
            Kind::Snapshot => Request::Snapshot,
        };
        let known = if versioned {
            Known::Version(self.store.entry.as_ref().map_or(0, |e| e.version))
        } else {
            Known::Nothing
        };
        let outcome = match kind {
            Kind::Report(outcome) => Some(outcome),
            _ => None,
        };
        let step = self.engines[instance].open(request, known, self.now);
        self.follow(instance, step, 0, outcome)
    }

    /// Keeps an operation's next step in flight, or checks its answer.
    fn follow(
        &mut self,
        instance: usize,
        step: Step,
        steps: usize,
        outcome: Option<Outcome>,
    ) -> Result<(), TestCaseError> {
        prop_assert!(steps <= MOST_STEPS, "an operation took {} steps", steps);
        let pending = match step {
            Step::Read(mut op) => {
                self.tell(instance, op.take_changes())?;
                Pending::Read(op)
            }
            Step::Write(mut write) => {
                self.tell(instance, write.operation.take_changes())?;
                Pending::Write(write.operation, write.expected, write.data)
            }
            Step::Done(done) => {
                self.tell(instance, done.changes)?;
                if let (Some(outcome), Answer::Reported(_)) = (outcome, &done.answer) {
                    // Taken, whatever the answer: held, written, or kept to
                    // merge later; a report that failed to write counts
                    // nothing, and the tally allows for it below.
                    self.accept(outcome, &done.answer);
                }
                return Ok(());
            }
        };
        self.flights.push(Flight {
            instance,
            pending,
            steps,
            outcome,
        });
        Ok(())
    }

    fn accept(&mut self, outcome: Outcome, answer: &Answer) {
        let consecutive = self.config.window.is_none();
        if consecutive && !matches!(answer, Answer::Reported(Ok(_))) {
            return;
        }
        self.tally.calls += 1;
        if outcome == Outcome::Failure {
            self.tally.failures += 1;
        }
    }

    fn advance(&mut self, index: &Index, fault: Fault) -> Result<(), TestCaseError> {
        if self.flights.is_empty() {
            return Ok(());
        }
        self.advance_at(index.index(self.flights.len()), fault)
    }

    /// Performs every step in flight, without faults, until none is left.
    fn drain(&mut self) -> Result<(), TestCaseError> {
        let mut guard = 0;
        while !self.flights.is_empty() {
            guard += 1;
            prop_assert!(guard < 100_000, "operations never ended");
            self.advance_at(0, Fault::None)?;
        }
        Ok(())
    }

    fn advance_at(&mut self, position: usize, fault: Fault) -> Result<(), TestCaseError> {
        let flight = self.flights.swap_remove(position);
        let found = match (&flight.pending, fault) {
            (_, Fault::Fail) => Found::Failed("the storage is down".into()),
            (Pending::Read(_), Fault::Bump) => {
                self.store.bump();
                Found::Read(self.store.entry.clone())
            }
            (Pending::Read(_), _) => Found::Read(self.store.entry.clone()),
            (Pending::Write(_, expected, data), fault) => {
                if let Fault::Bump = fault {
                    self.store.bump();
                }
                match (self.store.swap(*expected, data), fault) {
                    (Swap::Written(_), Fault::Lost) => {
                        self.tally.lost += 1;
                        Found::Failed("the reply was lost".into())
                    }
                    (swap, _) => Found::Swapped(swap),
                }
            }
        };
        let op = match flight.pending {
            Pending::Read(op) | Pending::Write(op, ..) => op,
        };
        let step = self.engines[flight.instance]
            .resume(op, found, self.now)
            .map_err(|e| TestCaseError::fail(format!("the driver answered right: {e}")))?;
        self.follow(flight.instance, step, flight.steps + 1, flight.outcome)
    }

    fn abandon(&mut self, index: &Index) {
        if self.flights.is_empty() {
            return;
        }
        let flight = self.flights.swap_remove(index.index(self.flights.len()));
        let op = match flight.pending {
            Pending::Read(op) => op,
            Pending::Write(op, ..) => op,
        };
        self.tally.abandoned += 1;
        // An abandoned report's outcome may have been held already: the
        // tally counts it, as an upper bound.
        if let Some(outcome) = flight.outcome
            && self.config.window.is_some()
        {
            self.tally.calls += 1;
            if outcome == Outcome::Failure {
                self.tally.failures += 1;
            }
        }
        self.engines[flight.instance].abandon(op);
    }

    /// A result for another step than the one awaited is refused with an
    /// error naming both, and the engine goes on.
    fn misuse(&mut self, instance: usize) -> Result<(), TestCaseError> {
        let instance = instance % self.engines.len();
        let step = self.engines[instance].open(Request::Snapshot, Known::Nothing, self.now);
        let Step::Read(op) = step else {
            return Err(TestCaseError::fail(
                "a snapshot with nothing known reads first",
            ));
        };
        let refused = self.engines[instance].resume(op, Found::Swapped(Swap::Written(7)), self.now);
        let message = match refused {
            Err(misuse) => misuse.0,
            Ok(_) => return Err(TestCaseError::fail("a wrong result was taken")),
        };
        prop_assert!(
            message.contains("awaits a read") && message.contains("compare-and-swap"),
            "{}",
            message
        );
        Ok(())
    }

    /// Performs every step left without faults, then flushes every instance.
    fn settle(&mut self) -> Result<(), TestCaseError> {
        self.drain()?;
        // Twice: the first look may only settle a doubt.
        for _ in 0..2 {
            for instance in 0..self.engines.len() {
                self.now += 1;
                let step = self.engines[instance].open(Request::Flush, Known::Nothing, self.now);
                self.follow(instance, step, 0, None)?;
                self.drain()?;
            }
        }
        for engine in &self.engines {
            prop_assert_eq!(engine.flush_due(), None, "every held outcome was merged");
        }
        Ok(())
    }
}

fn options_config(options: Options) -> Config {
    Config::resolve(KEY, &options).expect("a valid configuration")
}

/// The consecutive rule alone, never reached: every failure counts.
fn consecutive() -> Config {
    options_config(Options {
        fail_max: Some(1_000_000),
        ..Options::default()
    })
}

/// A count window that never opens, with held outcomes.
fn window() -> Config {
    options_config(Options {
        failure_rate_threshold: Some(100),
        window_calls: Some(10_000),
        minimum_calls: Some(10_000),
        flush_interval_ms: Some(300),
        ..Options::default()
    })
}

proptest! {
    #![proptest_config(settings())]

    /// Consecutive failures: each report is one compare-and-swap; its
    /// failure counts once, or, when its reply was lost, perhaps.
    #[test]
    fn interleaved_reports_count_once(moves in prop::collection::vec(a_move(), 1..160)) {
        let mut run = Run::new(consecutive(), 3);
        for m in &moves {
            play(&mut run, m)?;
        }
        run.settle()?;
        let stored = u64::from(run.store.record().failures);
        prop_assert!(
            stored <= run.tally.failures + run.tally.lost,
            "stored {} failures, {} reported, {} replies lost", stored, run.tally.failures, run.tally.lost
        );
        if run.tally.lost == 0 {
            // Successes reset the count: exact only in a run without them.
            let successes = moves.iter().any(|m| matches!(m, Move::Open(_, Kind::Report(Outcome::Success), _)));
            if !successes {
                prop_assert_eq!(stored, run.tally.failures);
            }
        }
    }

    /// Window outcomes held and merged by interleaved operations: never
    /// counted twice; exactly once when no merge's fate was left unknown.
    #[test]
    fn interleaved_merges_never_count_twice(moves in prop::collection::vec(a_move(), 1..160)) {
        let mut run = Run::new(window(), 3);
        for m in &moves {
            play(&mut run, m)?;
        }
        run.settle()?;
        let record = run.store.record();
        prop_assert_eq!(record.state, State::Closed);
        let totals = record.window.as_ref().map(|w| w.totals(run.now)).unwrap_or_default();
        prop_assert!(
            u64::from(totals.calls) <= run.tally.calls,
            "stored {} calls, {} reported", totals.calls, run.tally.calls
        );
        prop_assert!(u64::from(totals.failed) <= run.tally.failures);
        let unknown = run.tally.lost + run.tally.abandoned;
        let fails = moves.iter().any(|m| matches!(m, Move::Advance(_, Fault::Fail)));
        if unknown == 0 && !fails {
            prop_assert_eq!(u64::from(totals.calls), run.tally.calls);
            prop_assert_eq!(u64::from(totals.failed), run.tally.failures);
        }
    }

    /// One instance: a write that fails cleanly is settled by the next look
    /// and its outcomes merged; none is lost.
    #[test]
    fn a_clean_failure_loses_no_held_outcome(moves in prop::collection::vec(a_move(), 1..160)) {
        let mut run = Run::new(window(), 1);
        for m in &moves {
            let m = match m {
                // No other writer, no applied write left unknown.
                Move::Advance(i, Fault::Bump | Fault::Lost) => Move::Advance(*i, Fault::None),
                Move::Abandon(_) => continue,
                other => other.clone(),
            };
            // One operation in flight at a time.
            if matches!(m, Move::Open(..)) && !run.flights.is_empty() {
                continue;
            }
            play(&mut run, &m)?;
        }
        run.settle()?;
        let record = run.store.record();
        let totals = record.window.as_ref().map(|w| w.totals(run.now)).unwrap_or_default();
        prop_assert_eq!(u64::from(totals.calls), run.tally.calls);
        prop_assert_eq!(u64::from(totals.failed), run.tally.failures);
    }
}

fn play(run: &mut Run, m: &Move) -> Result<(), TestCaseError> {
    match m {
        Move::Open(instance, kind, versioned) => run.open(*instance, *kind, *versioned),
        Move::Advance(index, fault) => run.advance(index, *fault),
        Move::Abandon(index) => {
            run.abandon(index);
            Ok(())
        }
        Move::Misuse(instance) => run.misuse(*instance),
        Move::Tick(ms) => {
            run.now += ms;
            Ok(())
        }
    }
}

/// Every operation's steps conflict: it ends `contended` after the last try,
/// and a merge keeps its outcomes.
#[test]
fn conflicts_at_every_write_end_in_contended() {
    let mut run = Run::new(window(), 1);
    for _ in 0..2 {
        run.open(0, Kind::Report(Outcome::Failure), false).unwrap();
        assert!(run.flights.is_empty(), "held without a write");
        if run.store.entry.is_none() {
            // A first merge makes the key, which the other writer then bumps.
            run.open(0, Kind::Flush, false).unwrap();
            run.drain().unwrap();
        }
    }
    let step = run.engines[0].open(Request::Flush, Known::Nothing, run.now);
    run.follow(0, step, 0, None).unwrap();
    let mut tries = 0;
    while !run.flights.is_empty() {
        tries += 1;
        run.advance_at(0, Fault::Bump).unwrap();
    }
    assert_eq!(tries, MAX_ATTEMPTS);
    assert!(run.engines[0].flush_due().is_some(), "the outcome is kept");
    run.settle().unwrap();
    let totals = run.store.record().window.unwrap().totals(run.now);
    assert_eq!((totals.calls, totals.failed), (2, 2));
}

/// A merge left in doubt meets a corrupt record: the look settles the doubt
/// and the flush ends with `corrupt`, in a few steps.
#[test]
fn a_doubt_settled_on_a_corrupt_record_ends() {
    let mut run = Run::new(window(), 1);
    // The key exists; a merge onto it fails, then its bytes go bad.
    run.open(0, Kind::Report(Outcome::Failure), false).unwrap();
    run.open(0, Kind::Flush, false).unwrap();
    run.drain().unwrap();
    run.open(0, Kind::Report(Outcome::Failure), false).unwrap();
    run.open(0, Kind::Flush, false).unwrap();
    run.advance_at(0, Fault::Fail).unwrap();
    assert!(
        run.flights.is_empty(),
        "the flush ended with the storage's error"
    );
    let version = run.store.entry.as_ref().unwrap().version;
    run.store.entry = Some(Stored {
        version,
        data: vec![0xff],
    });
    let mut step = run.engines[0].open(Request::Flush, Known::Nothing, run.now);
    let mut steps = 0;
    let done = loop {
        steps += 1;
        assert!(steps < 8, "the flush never ended");
        step = match step {
            Step::Done(done) => break done,
            Step::Read(op) => run.engines[0]
                .resume(op, Found::Read(run.store.entry.clone()), run.now)
                .unwrap(),
            Step::Write(write) => {
                let swapped = run
                    .store
                    .entry
                    .clone()
                    .map_or(Swap::Written(100), |e| Swap::Conflict(Some(e)));
                run.engines[0]
                    .resume(write.operation, Found::Swapped(swapped), run.now)
                    .unwrap()
            }
        };
    };
    assert!(
        matches!(done.answer, Answer::Flushed(Err(BreakerError::Corrupt(_)))),
        "{:?}",
        done.answer
    );
    assert_eq!(run.engines[0].flush_due(), None, "nothing is left to merge");
}
