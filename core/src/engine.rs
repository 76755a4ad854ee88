//! One breaker as a sans-I/O engine: the host opens an operation with what
//! it knows of the stored entry, the engine answers with the next step (read
//! the key, write one record by compare-and-swap, or done), and the host
//! performs each step however its world does I/O and passes back what it
//! found. The engine keeps, between operations, the last record it saw, the
//! state it last told, and the window outcomes it holds; an operation in
//! flight is a value the host keeps ([`Operation`]), so operations may
//! interleave. The decisions are `machine`'s.

use std::borrow::Cow;

use crate::answer::{
    Admission, BreakerError, Change, Denial, Holds, MAX_ATTEMPTS, Notice, NoticeKind, Refusal,
    Reported, Stored, Swap,
};
use crate::config::Config;
use crate::machine::{self, Action, Held, Outcome, Permit, Record, Rejection, Snapshot, State};
use crate::record;
use crate::shaping::{Fit, LEASE_MS, Shaping};
use crate::window::Shape;

/// Outcomes an instance holds at most before it merges them, however young.
pub const MAX_HELD: usize = 1024;

/// What a host knows of the stored entry when it opens an operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Known {
    /// Nothing: the engine reads when its answer depends on the entry, and
    /// otherwise writes from the record it last saw (a stale one meets a
    /// conflict).
    Nothing,
    /// The key is absent.
    Absent,
    /// The entry the host read.
    Entry(Stored),
    /// The stored version, which the host knows for free (0: absent): the
    /// engine reads the entry unless the record it last saw is that version.
    Version(u64),
}

/// What an operation asks of a breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// Asks to make a call.
    Acquire,
    /// Records what became of a permitted call.
    Report {
        /// The permit acquire gave.
        permit: Permit,
        /// What became of the call.
        outcome: Outcome,
    },
    /// The breaker's state, read fresh.
    Snapshot,
    /// An operator's action.
    Operate(Action),
    /// Merges the window outcomes the engine holds into the record.
    Flush,
}

/// What the host found doing the step it was asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// The entry read (none: the key is absent).
    Read(Option<Stored>),
    /// What the compare-and-swap did.
    Swapped(Swap),
    /// The storage failed: its message.
    Failed(String),
}

/// What the host does next.
#[derive(Debug)]
pub enum Step {
    /// Read the breaker's key, then resume the operation with [`Found::Read`].
    Read(Operation),
    /// Write one record, then resume the operation with [`Found::Swapped`].
    Write(Write),
    /// The operation ended.
    Done(Done),
}

/// A compare-and-swap the engine asks for.
#[derive(Debug)]
pub struct Write {
    /// The operation, to resume with the swap's result.
    pub operation: Operation,
    /// The version the key must have (none: it must be absent).
    pub expected: Option<u64>,
    /// The encoded record to write.
    pub data: Vec<u8>,
    /// The operation's answer if the write lands (none: the operation goes
    /// on after it), so that a host may answer its caller before resuming.
    pub answer: Option<Answer>,
}

/// An ended operation.
#[derive(Clone, Debug, PartialEq)]
pub struct Done {
    /// The answer to what was asked.
    pub answer: Answer,
    /// The state changes the operation saw or made, in order, each once.
    pub changes: Vec<Change>,
    /// What else the operation did that a host logs and counts.
    pub notices: Vec<Notice>,
    /// When the host should flush the outcomes the engine holds (none: it
    /// holds none).
    pub flush_by_ms: Option<u64>,
}

/// The answer to each kind of request.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// Acquire's.
    Acquired(Result<Admission, Refusal>),
    /// Report's.
    Reported(Result<Reported, BreakerError>),
    /// Snapshot's.
    Snapshot(Result<Snapshot, BreakerError>),
    /// Operate's.
    Operated(Result<(), BreakerError>),
    /// Flush's.
    Flushed(Result<(), BreakerError>),
}

/// A result that does not answer the step the operation awaits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Misuse(pub String);

impl std::fmt::Display for Misuse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Misuse {}

/// An operation in flight: what it was asked, where it stands, and what it
/// has seen. The host keeps it between steps and gives it back to
/// [`Engine::resume`] with what it found.
#[derive(Debug)]
pub struct Operation {
    request: Request,
    stage: Stage,
    awaiting: Awaiting,
    /// Compare-and-swaps tried.
    tries: usize,
    /// Operations the engine had opened before this one, and this one.
    serial: u64,
    /// The engine's cached record is the stored entry as of this operation
    /// (the host said so, or the operation read or wrote it).
    current: bool,
    changes: Vec<Change>,
    notices: Vec<Notice>,
}

impl Operation {
    /// What the operation was asked.
    pub fn request(&self) -> Request {
        self.request
    }

    /// Takes the state changes noted so far, for a host that tells them
    /// before the operation ends; [`Done`] carries the rest.
    pub fn take_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.changes)
    }
}

/// What the operation is doing.
#[derive(Debug)]
enum Stage {
    /// Reading the entry before anything else.
    Start,
    /// Writing an admission's record (a trial slot).
    Acquire,
    /// Writing a report's record.
    Report { permit: Permit, outcome: Outcome },
    /// Writing an operator action's record.
    Operate(Action),
    /// Merging held outcomes, taken out of the engine, then `after`.
    Merge { holding: Holding, after: After },
    /// Reading the entry to settle a doubtful merge, then merging.
    Settle(After),
}

/// What comes after a merge.
#[derive(Clone, Copy, Debug)]
enum After {
    /// Flush's answer.
    Flush,
    /// The report that had to wait for the held outcomes.
    Report { permit: Permit, outcome: Outcome },
    /// The outcome to hold, once the older generation's are merged.
    Hold {
        permit: Permit,
        held: Held,
        outcome: Outcome,
    },
    /// The merge's own report is the answer.
    Answer,
}

/// The step the operation waits on.
#[derive(Debug)]
enum Awaiting {
    Nothing,
    Read,
    Write {
        expected: Option<u64>,
        next: Box<Record>,
        output: Output,
        notice: Option<Notice>,
    },
}

/// What a decision answers, before its record is written.
#[derive(Debug)]
enum Output {
    Permit(Result<Permit, Rejection>),
    Reported(Result<Reported, BreakerError>),
    Operated,
}

/// What a read found under the breaker's key.
#[derive(Debug)]
enum Loaded {
    Absent,
    Present(u64, Record),
    Corrupt(u64, String),
}

impl Loaded {
    fn version(&self) -> u64 {
        match self {
            Loaded::Absent => 0,
            Loaded::Present(version, _) | Loaded::Corrupt(version, _) => *version,
        }
    }
}

/// What this instance last saw of the breaker.
#[derive(Debug)]
struct View {
    /// The last record loaded or written, and its version (0: absent).
    cached: Option<(u64, Record)>,
    /// The last state seen, for detecting changes another instance wrote.
    seen: State,
    /// The highest generation seen, so that a repaired record starts above it.
    generation: u64,
}

impl Default for View {
    /// A new breaker takes itself for closed: a first look that finds another
    /// state is told as a change that another instance wrote.
    fn default() -> Self {
        View {
            cached: None,
            seen: State::Closed,
            generation: 0,
        }
    }
}

/// Window outcomes this instance holds, not yet merged into the record.
#[derive(Debug)]
struct Holding {
    /// The generation they were reported under.
    generation: u64,
    /// When the first of them was reported.
    since_ms: u64,
    /// In the order they were reported.
    outcomes: Vec<Held>,
    /// The cached record's version the projection was made on (none: make
    /// it anew on the next outcome).
    base_version: Option<u64>,
    /// The cached record with every held outcome merged: what a merge
    /// would write if nobody else wrote meanwhile.
    projected: Box<Record>,
}

/// One named breaker, as one instance sees it.
#[derive(Debug)]
pub struct Engine {
    name: String,
    config: Config,
    view: View,
    held: Option<Holding>,
    /// Held outcomes whose merge may or may not have landed.
    doubt: Option<Doubt>,
    /// Operations opened so far.
    opened: u64,
}

/// Held outcomes whose merge's compare-and-swap failed without saying
/// whether it was applied (a reply lost or timed out), or whose operation
/// was abandoned while its write was out. The next look at the entry by a
/// later operation settles them: the key still at the version the write
/// expected means it was not applied (they are held again); any other
/// version cannot be told apart from an applied write, and they are
/// dropped: an outcome may go uncounted, but never counts twice, provided
/// the doubtful write can no longer land once the host reports it failed
/// (a host passes `failed` for a write only when its request is over: its
/// reply timed out on a connection the host then closed, or it never left).
#[derive(Debug)]
struct Doubt {
    expected: Option<u64>,
    holding: Holding,
    /// Only operations opened after this serial settle it.
    after: u64,
}

impl Engine {
    /// A breaker named `name` (its storage key), with a valid configuration.
    pub fn new(name: String, config: Config) -> Self {
        Engine {
            name,
            config,
            view: View::default(),
            held: None,
            doubt: None,
            opened: 0,
        }
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The breaker's configuration, defaults filled in.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// When the outcomes this instance holds are due to be merged (none:
    /// it holds none): a host flushes by then.
    pub fn flush_due(&self) -> Option<u64> {
        let held = self.held.iter();
        let doubtful = self.doubt.iter().map(|d| &d.holding);
        held.chain(doubtful)
            .map(|h| h.since_ms.saturating_add(self.config.flush_interval_ms))
            .min()
    }

    /// Opens an operation at `now` with what the host knows of the stored
    /// entry; the step says what to do next.
    pub fn open(&mut self, request: Request, known: Known, now: u64) -> Step {
        let mut op = Operation {
            request,
            stage: Stage::Start,
            awaiting: Awaiting::Nothing,
            tries: 0,
            serial: self.opened.wrapping_add(1),
            current: false,
            changes: Vec::new(),
            notices: Vec::new(),
        };
        self.opened = op.serial;
        if let Request::Report { permit, outcome } = request
            && machine::report_never_writes(&permit, outcome)
        {
            let reported = self.reported_unchanged();
            return self.done(op, Answer::Reported(Ok(reported)));
        }
        let told = match known {
            Known::Nothing => None,
            Known::Absent => Some(self.observe(None, now, &mut op)),
            Known::Entry(stored) => Some(self.observe(Some(stored), now, &mut op)),
            Known::Version(version) => match &self.view.cached {
                Some((cached, record)) if *cached == version => Some(if version == 0 {
                    Loaded::Absent
                } else {
                    Loaded::Present(version, record.clone())
                }),
                _ => {
                    // The record this instance saw is stale: read first.
                    op.awaiting = Awaiting::Read;
                    return Step::Read(op);
                }
            },
        };
        match told {
            Some(loaded) => self.begin(op, loaded, now),
            None => match request {
                // Their answers depend on the entry: read it.
                Request::Acquire | Request::Snapshot => {
                    op.awaiting = Awaiting::Read;
                    Step::Read(op)
                }
                Request::Report { permit, outcome } => self.report(op, permit, outcome, now),
                Request::Operate(action) => {
                    self.held = None;
                    op.stage = Stage::Operate(action);
                    self.write_from_cache(op, now)
                }
                Request::Flush => self.merge(op, After::Flush, now),
            },
        }
    }

    /// Goes on with an operation given what the host found doing its step
    /// at `now`; a result that does not answer that step is a [`Misuse`]
    /// (the operation ends, and held outcomes it carried go back to the
    /// engine).
    pub fn resume(&mut self, mut op: Operation, found: Found, now: u64) -> Result<Step, Misuse> {
        let awaiting = std::mem::replace(&mut op.awaiting, Awaiting::Nothing);
        Ok(match (awaiting, found) {
            (Awaiting::Read, Found::Read(entry)) => {
                let loaded = self.observe(entry, now, &mut op);
                match op.stage {
                    Stage::Start => self.begin(op, loaded, now),
                    // The look settled the doubt (see `observe`).
                    Stage::Settle(after) => self.merge(op, after, now),
                    _ => self.attempt(op, loaded, now),
                }
            }
            (
                Awaiting::Write {
                    expected,
                    next,
                    output,
                    notice,
                },
                Found::Swapped(Swap::Written(version)),
            ) => {
                op.notices.extend(notice);
                if self.doubt.as_ref().is_some_and(|d| d.expected == expected) {
                    // Of two writes expecting one version, one at most lands:
                    // this one did, so the doubtful one did not.
                    self.settle(true);
                }
                self.wrote(version, *next, &mut op.changes);
                self.finish(op, output, None, now)
            }
            (Awaiting::Write { .. }, Found::Swapped(Swap::Conflict(entry))) => {
                let loaded = self.observe(entry, now, &mut op);
                self.attempt(op, loaded, now)
            }
            (Awaiting::Write { expected, .. }, Found::Failed(message))
                if matches!(op.stage, Stage::Merge { .. }) =>
            {
                let message = self.storage_error("compare-and-swap", &message);
                let Stage::Merge { holding, after } =
                    std::mem::replace(&mut op.stage, Stage::Start)
                else {
                    unreachable!("matched as a merge")
                };
                self.doubt(expected, holding);
                self.after_merge(op, after, Err(BreakerError::Storage(message)), now)
            }
            (Awaiting::Read, Found::Failed(message)) => {
                let message = self.storage_error("load", &message);
                self.fail(op, BreakerError::Storage(message), now)
            }
            (Awaiting::Write { .. }, Found::Failed(message)) => {
                let message = self.storage_error("compare-and-swap", &message);
                self.fail(op, BreakerError::Storage(message), now)
            }
            (awaiting, found) => {
                let asked = match awaiting {
                    Awaiting::Nothing => "nothing (it has ended)",
                    Awaiting::Read => "a read",
                    Awaiting::Write { .. } => "a compare-and-swap",
                };
                let given = match found {
                    Found::Read(_) => "a read's entry",
                    Found::Swapped(_) => "a compare-and-swap's result",
                    Found::Failed(_) => "a storage failure",
                };
                if let Stage::Merge { holding, .. } = op.stage {
                    self.restore(holding);
                }
                return Err(Misuse(format!(
                    "breaker {:?}: the operation awaits {asked}, and was given {given}",
                    self.name
                )));
            }
        })
    }

    /// An operation's start, once the stored entry is known.
    fn begin(&mut self, mut op: Operation, loaded: Loaded, now: u64) -> Step {
        op.current = !matches!(loaded, Loaded::Corrupt(..));
        match op.request {
            Request::Acquire => {
                if let Loaded::Corrupt(_, message) = loaded {
                    return self.fallback(op, message, now);
                }
                op.stage = Stage::Acquire;
                self.attempt(op, loaded, now)
            }
            Request::Snapshot => {
                let answer = self.snapshot(loaded, now);
                self.done(op, Answer::Snapshot(answer))
            }
            Request::Operate(action) => {
                self.held = None;
                op.stage = Stage::Operate(action);
                self.attempt(op, loaded, now)
            }
            Request::Report { permit, outcome } => self.report(op, permit, outcome, now),
            Request::Flush => self.merge(op, After::Flush, now),
        }
    }

    /// A report: held when the engine may hold it, else written after the
    /// outcomes the engine holds.
    fn report(&mut self, op: Operation, permit: Permit, outcome: Outcome, now: u64) -> Step {
        let held = {
            let Some((_, record)) = self.view.cached.as_ref() else {
                return self.report_now(op, permit, outcome, now);
            };
            // Held outcomes go to a window that follows this instance's
            // shape, or to a fresh record's; a restart is written at once.
            let fit = record.shaping.fit(self.config.window, now);
            if !matches!(fit, Fit::Same | Fit::Adopt { told: false }) {
                return self.report_now(op, permit, outcome, now);
            }
            let Some(held) = machine::holdable(&self.config, record, &permit, outcome, now) else {
                return self.report_now(op, permit, outcome, now);
            };
            held
        };
        if self
            .held
            .as_ref()
            .is_some_and(|h| h.generation != permit.generation)
        {
            return self.merge(
                op,
                After::Hold {
                    permit,
                    held,
                    outcome,
                },
                now,
            );
        }
        self.hold(op, permit, held, outcome, now)
    }

    /// Holds a window outcome instead of writing it (see
    /// [`machine::holdable`]); merges what it holds at once when the merged
    /// counts would open the circuit, when the oldest held outcome is
    /// flush-interval old, or when it holds [`MAX_HELD`].
    fn hold(
        &mut self,
        op: Operation,
        permit: Permit,
        held: Held,
        outcome: Outcome,
        now: u64,
    ) -> Step {
        let Some((version, record)) = self.view.cached.as_ref() else {
            return self.report_now(op, permit, outcome, now);
        };
        let holding = self.held.get_or_insert_with(|| Holding {
            generation: permit.generation,
            since_ms: now,
            outcomes: Vec::new(),
            base_version: Some(*version),
            projected: Box::new(record.clone()),
        });
        holding.outcomes.push(held);
        if holding.base_version == Some(*version) {
            // One more outcome on the projection.
            machine::absorb(&self.config, &mut holding.projected, held);
        } else {
            // The cached record changed (loaded since): project them all again.
            *holding.projected = machine::project(&self.config, record, &holding.outcomes);
            holding.base_version = Some(*version);
        }
        let due = holding.projected.state != State::Closed
            || now.saturating_sub(holding.since_ms) >= self.config.flush_interval_ms
            || holding.outcomes.len() >= MAX_HELD;
        if due {
            return self.merge(op, After::Answer, now);
        }
        let reported = Reported {
            tripped: false,
            state: State::Closed,
        };
        self.done(op, Answer::Reported(Ok(reported)))
    }

    /// A report written now: after the outcomes the engine holds, so that it
    /// counts after them.
    fn report_now(&mut self, op: Operation, permit: Permit, outcome: Outcome, now: u64) -> Step {
        let settles = self.doubt.as_ref().is_some_and(|d| op.serial > d.after);
        if self.held.is_some() || settles {
            return self.merge(op, After::Report { permit, outcome }, now);
        }
        self.report_written(op, permit, outcome, now)
    }

    /// Writes a report. It starts from the cached record: a write made from a
    /// stale one meets a conflict and is recomputed; a decision to write
    /// nothing is confirmed against the storage first, unless the cached
    /// record is known to be current.
    fn report_written(
        &mut self,
        mut op: Operation,
        permit: Permit,
        outcome: Outcome,
        now: u64,
    ) -> Step {
        op.stage = Stage::Report { permit, outcome };
        let writes = self
            .view
            .cached
            .as_ref()
            .is_some_and(|(_, record)| self.decide(&op.stage, record, now).0.is_some());
        if op.current || writes {
            return self.write_from_cache(op, now);
        }
        op.awaiting = Awaiting::Read;
        Step::Read(op)
    }

    /// Merges the window outcomes the engine holds into the stored record,
    /// in one compare-and-swap, then goes on as `after` says; outcomes of an
    /// older generation count nowhere.
    fn merge(&mut self, mut op: Operation, after: After, now: u64) -> Step {
        if self.doubt.as_ref().is_some_and(|d| op.serial > d.after) {
            op.stage = Stage::Settle(after);
            op.awaiting = Awaiting::Read;
            return Step::Read(op);
        }
        let Some(holding) = self.held.take() else {
            let reported = self.reported_unchanged();
            return self.after_merge(op, after, Ok(reported), now);
        };
        op.stage = Stage::Merge { holding, after };
        op.tries = 0;
        self.write_from_cache(op, now)
    }

    /// What follows a merge that wrote, found nothing to write, or failed.
    fn after_merge(
        &mut self,
        op: Operation,
        after: After,
        merged: Result<Reported, BreakerError>,
        now: u64,
    ) -> Step {
        match (after, merged) {
            (After::Flush, merged) => self.done(op, Answer::Flushed(merged.map(drop))),
            (After::Answer, merged) => self.done(op, Answer::Reported(merged)),
            (_, Err(error)) => self.done(op, Answer::Reported(Err(error))),
            (After::Report { permit, outcome }, Ok(_)) => {
                let mut op = op;
                op.tries = 0;
                self.report_written(op, permit, outcome, now)
            }
            (
                After::Hold {
                    permit,
                    held,
                    outcome,
                },
                Ok(_),
            ) => {
                let mut op = op;
                op.tries = 0;
                self.hold(op, permit, held, outcome, now)
            }
        }
    }

    /// The operation's write loop from the cached record, or a read when
    /// there is none.
    fn write_from_cache(&mut self, mut op: Operation, now: u64) -> Step {
        let loaded = match &self.view.cached {
            Some((0, _)) => Loaded::Absent,
            Some((version, record)) => Loaded::Present(*version, record.clone()),
            None => {
                op.awaiting = Awaiting::Read;
                return Step::Read(op);
            }
        };
        self.attempt(op, loaded, now)
    }

    /// One turn of the write loop: decides from `current`, and asks to write
    /// the decision's record, or ends.
    fn attempt(&mut self, mut op: Operation, current: Loaded, now: u64) -> Step {
        if op.tries >= MAX_ATTEMPTS {
            let message = format!(
                "breaker {:?}: gave up after {MAX_ATTEMPTS} conflicting writes",
                self.name
            );
            return self.fail(op, BreakerError::Contended(message), now);
        }
        let overwrite_corrupt = matches!(op.stage, Stage::Operate(_));
        let (expected, record) = match current {
            Loaded::Absent => (None, Record::default()),
            Loaded::Present(version, record) => (Some(version), record),
            Loaded::Corrupt(version, _) if overwrite_corrupt => (
                Some(version),
                Record {
                    generation: self.view.generation,
                    ..Record::default()
                },
            ),
            Loaded::Corrupt(_, message) => {
                return self.fail(op, BreakerError::Corrupt(message), now);
            }
        };
        // A record below the generations this instance saw was made anew
        // after its key was lost: lifted above them before anything else, so
        // that its changes are told as new wherever they are seen.
        let lifted = expected.and_then(|_| self.lifted(&record));
        let record = lifted.clone().unwrap_or(record);
        let (next, output, notice) = self.decide(&op.stage, &record, now);
        let Some(mut next) = next.or(lifted) else {
            return self.finish(op, output, Some(expected.unwrap_or(0)), now);
        };
        if expected.is_none() {
            next.generation = next.generation.wrapping_add(self.fresh_base());
        }
        op.tries += 1;
        let data = record::encode(&next);
        let answer = self.answer_if_written(&op, &next, &output);
        op.awaiting = Awaiting::Write {
            expected,
            next: Box::new(next),
            output,
            notice,
        };
        Step::Write(Write {
            operation: op,
            expected,
            data,
            answer,
        })
    }

    /// The record a stage writes over `record` (none: nothing to write), its
    /// answer, and the notice to tell if it is written. The stage decides
    /// with this instance's window where the record follows it or takes it
    /// on (restarting the window), and with none where another config's
    /// window holds (see [`crate::shaping`]).
    fn decide(
        &self,
        stage: &Stage,
        record: &Record,
        now: u64,
    ) -> (Option<Record>, Output, Option<Notice>) {
        let ours = self.config.window;
        let fit = record.shaping.fit(ours, now);
        let (config, record) = match fit {
            Fit::Same => (Cow::Borrowed(&self.config), Cow::Borrowed(record)),
            Fit::Adopt { .. } => (
                Cow::Borrowed(&self.config),
                Cow::Owned(Record {
                    window: None,
                    shaping: record.shaping.written(ours, fit, now),
                    ..record.clone()
                }),
            ),
            Fit::Defer => (
                Cow::Owned(Config {
                    window: None,
                    ..self.config.clone()
                }),
                Cow::Borrowed(record),
            ),
        };
        let (mut next, output) = self.decide_with(&config, stage, &record, now);
        let mut notice = None;
        if let Some(next) = &mut next
            && fit != Fit::Defer
        {
            next.shaping = next.shaping.written(ours, Fit::Same, now);
            if let Fit::Adopt { told: true } = fit {
                notice = Some(self.window_restarted(ours));
            }
        }
        (next, output, notice)
    }

    /// What a write that restarts the window tells.
    fn window_restarted(&self, ours: Option<Shape>) -> Notice {
        Notice {
            kind: NoticeKind::WindowRestarted,
            message: format!(
                "breaker {:?}: the failure-rate window restarted with this instance's config \
                 ({}): no instance configured with the window kept before wrote for {} s; \
                 instances configured otherwise count nothing in it while this one's \
                 instances write (the consecutive rule counts as before)",
                self.name,
                Shaping::describe(ours),
                LEASE_MS / 1000,
            ),
        }
    }

    /// [`Engine::decide`] with the config and record it settled on.
    fn decide_with(
        &self,
        config: &Config,
        stage: &Stage,
        record: &Record,
        now: u64,
    ) -> (Option<Record>, Output) {
        match stage {
            // These stages read, and never decide.
            Stage::Start | Stage::Settle(_) => {
                (None, Output::Reported(Ok(self.reported_unchanged())))
            }
            Stage::Acquire => {
                let (next, answer) = machine::acquire(config, record, now);
                (next, Output::Permit(answer))
            }
            Stage::Operate(action) => (
                Some(machine::operate(config, record, *action, now)),
                Output::Operated,
            ),
            Stage::Report { permit, outcome } => {
                let next = machine::report(config, record, permit, *outcome, now);
                let reported = self.reported(record, next.as_ref());
                (next, reported)
            }
            Stage::Merge { holding, .. } => {
                let next = machine::merge(config, record, holding.generation, &holding.outcomes);
                let reported = self.reported(record, next.as_ref());
                (next, reported)
            }
        }
    }

    /// A report's answer: whether writing `next` over `record` trips.
    fn reported(&self, record: &Record, next: Option<&Record>) -> Output {
        Output::Reported(Ok(Reported {
            tripped: next.is_some_and(|n| machine::tripped(record, n)),
            state: next.map_or(record.state, |n| n.state),
        }))
    }

    /// The answer the operation ends with if `next` is written (none: it
    /// goes on).
    fn answer_if_written(&self, op: &Operation, next: &Record, output: &Output) -> Option<Answer> {
        match (&op.stage, output) {
            (_, Output::Permit(answer)) => Some(Answer::Acquired(self.admission(
                answer.clone(),
                None,
                Some(next),
            ))),
            (_, Output::Operated) => Some(Answer::Operated(Ok(()))),
            (
                Stage::Merge {
                    after: After::Flush,
                    ..
                },
                Output::Reported(r),
            ) => Some(Answer::Flushed(r.clone().map(drop))),
            (
                Stage::Merge {
                    after: After::Answer,
                    ..
                }
                | Stage::Report { .. },
                Output::Reported(r),
            ) => Some(Answer::Reported(r.clone())),
            _ => None,
        }
    }

    /// Ends a turn of the write loop: written (`decided_at` none), or
    /// decided with nothing to write at that stored version.
    fn finish(
        &mut self,
        mut op: Operation,
        output: Output,
        decided_at: Option<u64>,
        now: u64,
    ) -> Step {
        match output {
            Output::Permit(answer) => {
                let holds = decided_at.and_then(|version| {
                    machine::holds_until(&answer, now).map(|until_ms| Holds { version, until_ms })
                });
                let answer = self.admission(answer, holds, None);
                self.done(op, Answer::Acquired(answer))
            }
            Output::Operated => self.done(op, Answer::Operated(Ok(()))),
            Output::Reported(reported) => match std::mem::replace(&mut op.stage, Stage::Start) {
                Stage::Merge { holding, after } => {
                    if let Err(BreakerError::Storage(_) | BreakerError::Contended(_)) = &reported {
                        self.restore(holding);
                    }
                    self.after_merge(op, after, reported, now)
                }
                _ => self.done(op, Answer::Reported(reported)),
            },
        }
    }

    /// Acquire's answer in the breaker's terms; `written` is the record the
    /// answer's write stores (none: the cached one decides quiet successes).
    fn admission(
        &self,
        answer: Result<Permit, Rejection>,
        holds: Option<Holds>,
        written: Option<&Record>,
    ) -> Result<Admission, Refusal> {
        let record = written.or(self.view.cached.as_ref().map(|(_, r)| r));
        match answer {
            Ok(permit) => Ok(Admission {
                permit,
                holds,
                quiet_success: record
                    .is_some_and(|r| machine::success_is_quiet(&self.config, r, &permit)),
                degraded: None,
            }),
            Err(rejection) => Err(Refusal {
                denial: Denial::Rejected(rejection),
                state: written.map_or(self.view.seen, |r| r.state),
                holds,
            }),
        }
    }

    /// Ends an operation with an error: acquire's becomes the fallback
    /// state's answer; a merge keeps what it could not write.
    fn fail(&mut self, mut op: Operation, error: BreakerError, now: u64) -> Step {
        match op.request {
            Request::Acquire => match error {
                // The storage works, so the fallback does not apply; the write
                // this call needed (a trial slot) was not made, so it cannot run.
                BreakerError::Contended(message) => {
                    let refusal = Refusal {
                        denial: Denial::StorageUnavailable(message),
                        state: self.view.seen,
                        holds: None,
                    };
                    self.done(op, Answer::Acquired(Err(refusal)))
                }
                error => self.fallback(op, error.message().to_string(), now),
            },
            Request::Snapshot => self.done(op, Answer::Snapshot(Err(error))),
            Request::Operate(_) => self.done(op, Answer::Operated(Err(error))),
            Request::Report { .. } | Request::Flush => {
                match std::mem::replace(&mut op.stage, Stage::Start) {
                    Stage::Merge { holding, after } => {
                        if let BreakerError::Storage(_) | BreakerError::Contended(_) = &error {
                            // Nothing was written: keep them for the next try.
                            self.restore(holding);
                        }
                        self.after_merge(op, after, Err(error), now)
                    }
                    _ => {
                        let answer = match op.request {
                            Request::Flush => Answer::Flushed(Err(error)),
                            _ => Answer::Reported(Err(error)),
                        };
                        self.done(op, answer)
                    }
                }
            }
        }
    }

    /// Abandons an operation the host will not finish (a cancelled call): a
    /// merge's held outcomes go back to the engine, or, when its write is
    /// out, wait for the next look to tell whether it landed. A trial slot
    /// its write took is forfeited by the trial timeout.
    pub fn abandon(&mut self, mut op: Operation) {
        let awaiting = std::mem::replace(&mut op.awaiting, Awaiting::Nothing);
        if let Stage::Merge { holding, .. } = op.stage {
            match awaiting {
                Awaiting::Write { expected, .. } => self.doubt(expected, holding),
                Awaiting::Read | Awaiting::Nothing => self.restore(holding),
            }
        }
    }

    /// Keeps held outcomes whose merge may have landed until a later look
    /// tells (see [`Doubt`]); an older doubt still unsettled is dropped.
    fn doubt(&mut self, expected: Option<u64>, holding: Holding) {
        self.doubt = Some(Doubt {
            expected,
            holding,
            after: self.opened,
        });
    }

    /// Settles the doubtful merge: its outcomes are held again if it did
    /// not land, dropped otherwise.
    fn settle(&mut self, not_landed: bool) {
        if let Some(doubt) = self.doubt.take()
            && not_landed
        {
            self.restore(doubt.holding);
        }
    }

    /// Gives back held outcomes a merge could not write; outcomes held since
    /// under the same generation count after them.
    fn restore(&mut self, mut holding: Holding) {
        match self.held.take() {
            None => self.held = Some(holding),
            Some(newer) if newer.generation == holding.generation => {
                // Past MAX_HELD, the next report merges them at once.
                holding.outcomes.extend(newer.outcomes);
                holding.base_version = None;
                self.held = Some(holding);
            }
            // The generation moved on: the older outcomes count nowhere.
            Some(newer) => self.held = Some(newer),
        }
    }

    /// Ends an operation.
    fn done(&self, op: Operation, answer: Answer) -> Step {
        Step::Done(Done {
            answer,
            changes: op.changes,
            notices: op.notices,
            flush_by_ms: self.flush_due(),
        })
    }

    /// What a report that wrote nothing tells: the state last seen.
    fn reported_unchanged(&self) -> Reported {
        Reported {
            tripped: false,
            state: self.view.seen,
        }
    }

    /// The breaker's state at `now` from the entry read; what this instance
    /// holds counts in what it shows, while closed.
    fn snapshot(&self, loaded: Loaded, now: u64) -> Result<Snapshot, BreakerError> {
        let version = loaded.version();
        let record = match loaded {
            Loaded::Absent => Record::default(),
            Loaded::Present(_, record) => record,
            Loaded::Corrupt(_, message) => return Err(BreakerError::Corrupt(message)),
        };
        let shown = self
            .held
            .as_ref()
            .and_then(|h| machine::merge(&self.config, &record, h.generation, &h.outcomes))
            .filter(|merged| merged.state == State::Closed)
            .unwrap_or(record);
        let mut snapshot = machine::snapshot(&self.config, &shown, now);
        snapshot.version = version;
        Ok(snapshot)
    }

    /// Decodes an entry read from the storage, caches it, and notes a change
    /// if another instance changed the state since this one last looked.
    fn observe(&mut self, entry: Option<Stored>, now: u64, op: &mut Operation) -> Loaded {
        let loaded = match entry {
            None => Loaded::Absent,
            Some(stored) => match record::decode(&stored.data) {
                Ok(record) => Loaded::Present(stored.version, record),
                Err(why) => Loaded::Corrupt(
                    stored.version,
                    format!("breaker {:?}: stored record is corrupt: {why}", self.name),
                ),
            },
        };
        if let Some(doubt) = &self.doubt
            && op.serial > doubt.after
        {
            let version = loaded.version();
            // Another version: applied, or not to be told apart from applied.
            self.settle(version == doubt.expected.unwrap_or(0));
        }
        let record = match &loaded {
            Loaded::Absent => Record::default(),
            Loaded::Present(_, record) => record.clone(),
            // The cache keeps the last good record; every write checks the version.
            Loaded::Corrupt(..) => return loaded,
        };
        self.remember(loaded.version(), record, true, now, &mut op.changes);
        loaded
    }

    /// Caches a record this instance wrote and notes its local change, from
    /// the state this instance last saw (a repaired corrupt record had none).
    fn wrote(&mut self, version: u64, record: Record, changes: &mut Vec<Change>) {
        let at = record.changed_at_ms;
        self.remember(version, record, false, at, changes);
    }

    /// Caches a record and notes its state if it is not the one this
    /// instance last saw. `absent_at` is the change time told for a key that
    /// is absent (whose record has none).
    fn remember(
        &mut self,
        version: u64,
        record: Record,
        remote: bool,
        absent_at: u64,
        changes: &mut Vec<Change>,
    ) {
        let (at_ms, generation) = if version == 0 {
            // A vanished key: told in the generation its next record starts from.
            (absent_at, self.fresh_base())
        } else if let Some(lifted) = self.lifted(&record) {
            // Made anew after its key was lost: told in the generation this
            // instance lifts it to at its next write.
            (record.changed_at_ms, lifted.generation)
        } else {
            (record.changed_at_ms, record.generation)
        };
        let current = record.state;
        let reason = record.reason;
        self.view.generation = self.view.generation.max(record.generation);
        self.view.cached = Some((version, record));
        let previous = std::mem::replace(&mut self.view.seen, current);
        if previous != current {
            changes.push(Change {
                previous,
                current,
                at_ms,
                generation,
                reason,
                remote,
            });
        }
    }

    /// The record lifted above every generation this instance saw, its own
    /// generation added so that its changes keep their order, if it is below
    /// them (none: it is not, or the lift would overflow).
    fn lifted(&self, record: &Record) -> Option<Record> {
        if record.generation >= self.view.generation {
            return None;
        }
        let generation = self
            .view
            .generation
            .checked_add(1)?
            .checked_add(record.generation)?;
        Some(Record {
            generation,
            ..record.clone()
        })
    }

    /// The generation a record written onto an absent key starts from: 0 for
    /// a breaker this instance never saw stored, else one above every
    /// generation it has seen (the key vanished), so that generations never go
    /// back. Permits are decided on the absent key's fresh record (generation
    /// 0), the same in every instance.
    fn fresh_base(&self) -> u64 {
        let seen = self.view.generation;
        if seen == 0 { 0 } else { seen.wrapping_add(1) }
    }

    fn storage_error(&self, operation: &str, message: &str) -> String {
        format!(
            "breaker {:?}: storage {operation} failed: {message}",
            self.name
        )
    }

    /// Acquire's answer when the storage cannot say: the fallback state's.
    /// An admitted call's permit carries the newest generation this instance knows.
    fn fallback(&self, op: Operation, message: String, now: u64) -> Step {
        let state = self.config.fallback_state;
        let answer = if !self.config.fallback_admits() {
            Err(Refusal {
                denial: Denial::StorageUnavailable(message),
                state,
                holds: None,
            })
        } else {
            let generation = self.view.cached.as_ref().map_or(0, |(_, r)| r.generation);
            Ok(Admission {
                permit: Permit {
                    generation,
                    trial: false,
                    issued_at_ms: now,
                },
                holds: None,
                quiet_success: true,
                degraded: Some(message),
            })
        };
        self.done(op, Answer::Acquired(answer))
    }
}
