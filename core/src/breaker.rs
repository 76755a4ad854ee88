//! One breaker over a storage: the compare-and-swap loop, the per-instance
//! cache of the last record seen, and state-change events. The decisions are
//! `machine`'s; the storage and the event sink come in through [`Port`].

use std::cell::RefCell;

use crate::config::Config;
use crate::machine::{
    self, Action, Held, Outcome, Permit, Reason, Record, Rejection, Snapshot, State,
};
use crate::record;

/// Writes tried against conflicting writers before a change gives up.
pub const MAX_ATTEMPTS: usize = 64;
/// Outcomes an instance holds at most before it merges them, however young.
pub const MAX_HELD: usize = 1024;

/// A stored value and its version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// Grows with every write.
    pub version: u64,
    /// The encoded record.
    pub data: Vec<u8>,
}

/// What a compare-and-swap did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Swap {
    /// Written, with the new version.
    Written(u64),
    /// Not written; the current entry.
    Conflict(Option<Stored>),
}

/// What a breaker needs from its host: a versioned register and an event sink.
pub trait Port {
    /// Reads a key.
    fn load(&self, key: &str) -> Result<Option<Stored>, String>;
    /// Writes a key if its version is `expected` (none: absent).
    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<u64>,
        data: &[u8],
    ) -> Result<Swap, String>;
    /// Tells the host that a breaker changed state.
    fn state_changed(&self, breaker: &str, change: &Change);
}

/// A change of state, as one instance saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    /// The state this instance last knew.
    pub previous: State,
    /// The state now stored.
    pub current: State,
    /// When the change was made (the record's change time).
    pub at_ms: u64,
    /// The generation of the record holding the change.
    pub generation: u64,
    /// Why it changed.
    pub reason: Reason,
    /// Another instance wrote it.
    pub remote: bool,
}

/// How long an answer stays the component's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Holds {
    /// The stored version it was decided on (0: absent).
    pub version: u64,
    /// The first instant at which it no longer holds (none: no time bound).
    pub until_ms: Option<u64>,
}

/// An admitted call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admission {
    /// The permit.
    pub permit: Permit,
    /// How long this answer holds.
    pub holds: Option<Holds>,
    /// Whether reporting a success would change nothing while the stored
    /// version is still the one the permit was decided on.
    pub quiet_success: bool,
    /// The storage failed and the fallback admitted the call: its message.
    pub degraded: Option<String>,
}

/// Why a call was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denial {
    /// The breaker rejected the call.
    Rejected(Rejection),
    /// The storage failed and the fallback state rejects, or every try for
    /// a trial slot was lost.
    StorageUnavailable(String),
}

/// A refused call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Why.
    pub denial: Denial,
    /// The state that refused.
    pub state: State,
    /// How long this answer holds.
    pub holds: Option<Holds>,
}

/// What a report did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reported {
    /// The report opened the circuit.
    pub tripped: bool,
    /// The stored state after the report.
    pub state: State,
}

/// Why a breaker could not do what it was asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BreakerError {
    /// The storage failed.
    Storage(String),
    /// The stored record cannot be read.
    Corrupt(String),
    /// Other writers won every one of [`MAX_ATTEMPTS`] tries.
    Contended(String),
    /// The stored record keeps a window of another shape than this
    /// breaker's config: processes sharing a breaker must agree on it.
    Mismatch(String),
}

impl BreakerError {
    /// The error's message.
    pub fn message(&self) -> &str {
        match self {
            BreakerError::Storage(m)
            | BreakerError::Corrupt(m)
            | BreakerError::Contended(m)
            | BreakerError::Mismatch(m) => m,
        }
    }
}

/// What a load found under the breaker's key.
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
struct Holding {
    /// The generation they were reported under.
    generation: u64,
    /// When the first of them was reported.
    since_ms: u64,
    /// In the order they were reported.
    outcomes: Vec<Held>,
    /// The cached record's version the projection was made on.
    base_version: u64,
    /// The cached record with every held outcome merged: what a merge
    /// would write if nobody else wrote meanwhile.
    projected: Record,
}

/// One named breaker, as one instance sees it.
pub struct Breaker<P> {
    name: String,
    config: Config,
    port: P,
    view: RefCell<View>,
    held: RefCell<Option<Holding>>,
}

impl<P: Port> Breaker<P> {
    /// A breaker named `name` (its storage key), with a valid configuration.
    pub fn new(name: String, config: Config, port: P) -> Self {
        Breaker {
            name,
            config,
            port,
            view: RefCell::new(View::default()),
            held: RefCell::new(None),
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

    /// Asks to make a call at `now`.
    pub fn acquire(&self, now: u64) -> Result<Admission, Refusal> {
        self.acquire_from(now, None)
    }

    /// Asks to make a call at `now`, reusing the cached record if the host
    /// says the stored version is still the cached one (0: absent).
    pub fn acquire_at_version(&self, now: u64, version: u64) -> Result<Admission, Refusal> {
        self.acquire_from(now, Some(version))
    }

    fn acquire_from(&self, now: u64, current_version: Option<u64>) -> Result<Admission, Refusal> {
        let cached = match (current_version, &self.view.borrow().cached) {
            (Some(current), Some((version, record))) if *version == current => {
                Some(if current == 0 {
                    Loaded::Absent
                } else {
                    Loaded::Present(current, record.clone())
                })
            }
            _ => None,
        };
        let loaded = match cached.map_or_else(|| self.load(now), Ok) {
            Ok(Loaded::Corrupt(_, message)) => return self.fallback(message, now),
            Err(error) => return self.fallback(error.message().to_string(), now),
            Ok(loaded) => loaded,
        };
        let answer = self.write_loop(now, loaded, false, |record| {
            machine::acquire(&self.config, record, now)
        });
        let (answer, decided_at) = match answer {
            Ok(decided) => decided,
            Err(BreakerError::Contended(message)) => {
                // The storage works, so the fallback does not apply; the write
                // this call needed (a trial slot) was not made, so it cannot run.
                return Err(Refusal {
                    denial: Denial::StorageUnavailable(message),
                    state: self.view.borrow().seen,
                    holds: None,
                });
            }
            Err(error) => return self.fallback(error.message().to_string(), now),
        };
        let holds = decided_at.and_then(|version| {
            machine::holds_until(&answer, now).map(|until_ms| Holds { version, until_ms })
        });
        let view = self.view.borrow();
        match answer {
            Ok(permit) => Ok(Admission {
                permit,
                holds,
                quiet_success: view
                    .cached
                    .as_ref()
                    .is_some_and(|(_, r)| machine::success_is_quiet(&self.config, r, &permit)),
                degraded: None,
            }),
            Err(rejection) => Err(Refusal {
                denial: Denial::Rejected(rejection),
                state: view.seen,
                holds,
            }),
        }
    }

    /// Records what became of a permitted call.
    ///
    /// It starts from the cached record: a write made from a stale one meets a
    /// conflict and is recomputed; a decision to write nothing is confirmed
    /// against the storage first. A report that can never write (a non-trial
    /// `ignored`) touches no storage.
    pub fn report(
        &self,
        permit: &Permit,
        outcome: Outcome,
        now: u64,
    ) -> Result<Reported, BreakerError> {
        if machine::report_never_writes(permit, outcome) {
            return Ok(Reported {
                tripped: false,
                state: self.view.borrow().seen,
            });
        }
        if let Some(reported) = self.hold(permit, outcome, now)? {
            return Ok(reported);
        }
        // Held outcomes go first, so that this one counts after them.
        if self.held.borrow().is_some() {
            self.merge_held(now)?;
        }
        let cached = self.view.borrow().cached.clone();
        let decide = |record: &Record| {
            if let Err(error) = self.window_matches(record) {
                return (None, Err(error));
            }
            let next = machine::report(&self.config, record, permit, outcome, now);
            let reported = match &next {
                Some(next) => Reported {
                    tripped: machine::tripped(record, next),
                    state: next.state,
                },
                None => Reported {
                    tripped: false,
                    state: record.state,
                },
            };
            (next, Ok(reported))
        };
        if let Some((version, record)) = cached
            && decide(&record).0.is_some()
        {
            let start = if version == 0 {
                Loaded::Absent
            } else {
                Loaded::Present(version, record)
            };
            return self
                .write_loop(now, start, false, decide)
                .and_then(|(r, _)| r);
        }
        let start = self.load(now)?;
        self.write_loop(now, start, false, decide)
            .and_then(|(r, _)| r)
    }

    /// Holds a window outcome instead of writing it, when the component may
    /// (see [`machine::holdable`]); merges what it holds at once when the
    /// merged counts would open the circuit, when the oldest held outcome is
    /// flush-interval old, or when it holds [`MAX_HELD`]. None: report it now.
    fn hold(
        &self,
        permit: &Permit,
        outcome: Outcome,
        now: u64,
    ) -> Result<Option<Reported>, BreakerError> {
        let held = {
            let view = self.view.borrow();
            let Some((_, record)) = view.cached.as_ref() else {
                return Ok(None);
            };
            let Some(held) = machine::holdable(&self.config, record, permit, outcome, now) else {
                return Ok(None);
            };
            self.window_matches(record)?;
            held
        };
        if self
            .held
            .borrow()
            .as_ref()
            .is_some_and(|h| h.generation != permit.generation)
        {
            self.merge_held(now)?;
        }
        let view = self.view.borrow();
        let Some((version, record)) = view.cached.as_ref() else {
            return Ok(None);
        };
        let due = {
            let mut slot = self.held.borrow_mut();
            let holding = slot.get_or_insert_with(|| Holding {
                generation: permit.generation,
                since_ms: now,
                outcomes: Vec::new(),
                base_version: *version,
                projected: record.clone(),
            });
            holding.outcomes.push(held);
            if holding.base_version == *version {
                // One more outcome on the projection.
                machine::absorb(&self.config, &mut holding.projected, held);
            } else {
                // The cached record changed (loaded since): project them all again.
                holding.projected = machine::project(&self.config, record, &holding.outcomes);
                holding.base_version = *version;
            }
            holding.projected.state != State::Closed
                || now.saturating_sub(holding.since_ms) >= self.config.flush_interval_ms
                || holding.outcomes.len() >= MAX_HELD
        };
        drop(view);
        if due {
            return self.merge_held(now).map(Some);
        }
        Ok(Some(Reported {
            tripped: false,
            state: State::Closed,
        }))
    }

    /// Merges the window outcomes this instance holds into the stored record,
    /// in one compare-and-swap; outcomes of an older generation count
    /// nowhere. Hosts call it from a timer and before they drop a breaker,
    /// so that an idle instance does not sit on outcomes.
    pub fn flush(&self, now: u64) -> Result<(), BreakerError> {
        self.merge_held(now).map(drop)
    }

    /// When the outcomes this instance holds are due to be merged (none:
    /// it holds none): a host calls [`Breaker::flush`] by then.
    pub fn flush_due(&self) -> Option<u64> {
        self.held
            .borrow()
            .as_ref()
            .map(|h| h.since_ms.saturating_add(self.config.flush_interval_ms))
    }

    fn merge_held(&self, now: u64) -> Result<Reported, BreakerError> {
        let Some(holding) = self.held.borrow_mut().take() else {
            return Ok(Reported {
                tripped: false,
                state: self.view.borrow().seen,
            });
        };
        let cached = self.view.borrow().cached.clone();
        let start = match cached {
            Some((0, _)) => Loaded::Absent,
            Some((version, record)) => Loaded::Present(version, record),
            None => match self.load(now) {
                Ok(loaded) => loaded,
                Err(error) => {
                    *self.held.borrow_mut() = Some(holding);
                    return Err(error);
                }
            },
        };
        let merged = self
            .write_loop(now, start, false, |record| {
                if let Err(error) = self.window_matches(record) {
                    return (None, Err(error));
                }
                let next =
                    machine::merge(&self.config, record, holding.generation, &holding.outcomes);
                let reported = Reported {
                    tripped: next.as_ref().is_some_and(|n| machine::tripped(record, n)),
                    state: next.as_ref().map_or(record.state, |n| n.state),
                };
                (next, Ok(reported))
            })
            .and_then(|(reported, _)| reported);
        if let Err(BreakerError::Storage(_) | BreakerError::Contended(_)) = &merged {
            // Nothing was written: keep them for the next try.
            *self.held.borrow_mut() = Some(holding);
        }
        merged
    }

    /// Whether a stored record's window has this breaker's shape (a record
    /// with none yet takes this breaker's).
    fn window_matches(&self, record: &Record) -> Result<(), BreakerError> {
        let Some(stored) = record.window.as_ref().map(|w| w.shape()) else {
            return Ok(());
        };
        if self.config.window == Some(stored) {
            return Ok(());
        }
        let ours = match self.config.window {
            Some(shape) => format!("{} ({})", shape.describe(), shape.field()),
            None => "no window (no failure-rate-threshold or slow-call-ms)".to_owned(),
        };
        Err(BreakerError::Mismatch(format!(
            "breaker {:?}: the stored record keeps {} ({}); this breaker's config has {ours}: \
             every process sharing a breaker must configure the same window",
            self.name,
            stored.describe(),
            stored.field()
        )))
    }

    /// The breaker's state at `now`, read fresh from the storage.
    pub fn snapshot(&self, now: u64) -> Result<Snapshot, BreakerError> {
        let loaded = self.load(now)?;
        let version = loaded.version();
        let record = match loaded {
            Loaded::Absent => Record::default(),
            Loaded::Present(_, record) => record,
            Loaded::Corrupt(_, message) => return Err(BreakerError::Corrupt(message)),
        };
        // What this instance holds counts in what it shows, while closed.
        let shown = self
            .held
            .borrow()
            .as_ref()
            .and_then(|h| machine::merge(&self.config, &record, h.generation, &h.outcomes))
            .filter(|merged| merged.state == State::Closed)
            .unwrap_or(record);
        let mut snapshot = machine::snapshot(&self.config, &shown, now);
        snapshot.version = version;
        Ok(snapshot)
    }

    /// Applies an operator action; a corrupt stored record is overwritten.
    /// Held outcomes are dropped: the action starts a new generation.
    pub fn operate(&self, action: Action, now: u64) -> Result<(), BreakerError> {
        self.held.borrow_mut().take();
        let cached = self.view.borrow().cached.clone();
        let start = match cached {
            Some((0, _)) => Loaded::Absent,
            Some((version, record)) => Loaded::Present(version, record),
            None => self.load(now)?,
        };
        self.write_loop(now, start, true, |record| {
            (
                Some(machine::operate(&self.config, record, action, now)),
                (),
            )
        })
        .map(drop)
    }

    /// Computes and writes a change, recomputing from the current entry on
    /// conflict. Returns the answer and, if nothing was written, the stored
    /// version it was decided on.
    fn write_loop<T>(
        &self,
        now: u64,
        mut current: Loaded,
        overwrite_corrupt: bool,
        mut decide: impl FnMut(&Record) -> (Option<Record>, T),
    ) -> Result<(T, Option<u64>), BreakerError> {
        for _ in 0..MAX_ATTEMPTS {
            let (expected, record) = match current {
                Loaded::Absent => (None, Record::default()),
                Loaded::Present(version, record) => (Some(version), record),
                Loaded::Corrupt(version, _) if overwrite_corrupt => (
                    Some(version),
                    Record {
                        generation: self.view.borrow().generation,
                        ..Record::default()
                    },
                ),
                Loaded::Corrupt(_, message) => return Err(BreakerError::Corrupt(message)),
            };
            let (next, answer) = decide(&record);
            let Some(mut next) = next else {
                return Ok((answer, Some(expected.unwrap_or(0))));
            };
            if expected.is_none() {
                next.generation = next.generation.wrapping_add(self.fresh_base());
            }
            let swapped = self
                .port
                .compare_and_swap(&self.name, expected, &record::encode(&next));
            match swapped {
                Ok(Swap::Written(version)) => {
                    self.wrote(version, next);
                    return Ok((answer, None));
                }
                Ok(Swap::Conflict(entry)) => current = self.observe(entry, now),
                Err(message) => {
                    return Err(BreakerError::Storage(
                        self.storage_error("compare-and-swap", &message),
                    ));
                }
            }
        }
        Err(BreakerError::Contended(format!(
            "breaker {:?}: gave up after {MAX_ATTEMPTS} conflicting writes",
            self.name
        )))
    }

    fn load(&self, now: u64) -> Result<Loaded, BreakerError> {
        match self.port.load(&self.name) {
            Ok(entry) => Ok(self.observe(entry, now)),
            Err(message) => Err(BreakerError::Storage(self.storage_error("load", &message))),
        }
    }

    /// Decodes an entry read from the storage, caches it, and fires a remote
    /// event if another instance changed the state since this one last looked.
    fn observe(&self, entry: Option<Stored>, now: u64) -> Loaded {
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
        let record = match &loaded {
            Loaded::Absent => Record::default(),
            Loaded::Present(_, record) => record.clone(),
            // The cache keeps the last good record; every write checks the version.
            Loaded::Corrupt(..) => return loaded,
        };
        self.remember(loaded.version(), record, true, now);
        loaded
    }

    /// Caches a record this instance wrote and fires its local event, from
    /// the state this instance last saw (a repaired corrupt record had none).
    fn wrote(&self, version: u64, record: Record) {
        let at = record.changed_at_ms;
        self.remember(version, record, false, at);
    }

    /// Caches a record and tells its state if it is not the one this
    /// instance last saw. `absent_at` is the change time told for a key that
    /// is absent (whose record has none).
    fn remember(&self, version: u64, record: Record, remote: bool, absent_at: u64) {
        let (at_ms, generation) = if version == 0 {
            // A vanished key: told in the generation its next record starts from.
            (absent_at, self.fresh_base())
        } else {
            (record.changed_at_ms, record.generation)
        };
        let change = Change {
            previous: State::Closed,
            current: record.state,
            at_ms,
            generation,
            reason: record.reason,
            remote,
        };
        let previous = {
            let mut view = self.view.borrow_mut();
            view.generation = view.generation.max(record.generation);
            view.cached = Some((version, record));
            std::mem::replace(&mut view.seen, change.current)
        };
        if previous != change.current {
            self.port
                .state_changed(&self.name, &Change { previous, ..change });
        }
    }

    /// The generation a record written onto an absent key starts from: 0 for
    /// a breaker this instance never saw stored, else one above every
    /// generation it has seen (the key vanished), so that generations never go
    /// back. Permits are decided on the absent key's fresh record (generation
    /// 0), the same in every instance.
    fn fresh_base(&self) -> u64 {
        let seen = self.view.borrow().generation;
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
    fn fallback(&self, message: String, now: u64) -> Result<Admission, Refusal> {
        let state = self.config.fallback_state;
        if !self.config.fallback_admits() {
            return Err(Refusal {
                denial: Denial::StorageUnavailable(message),
                state,
                holds: None,
            });
        }
        let generation = self
            .view
            .borrow()
            .cached
            .as_ref()
            .map_or(0, |(_, r)| r.generation);
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
    }
}
