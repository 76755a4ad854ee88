//! One breaker over a storage: the compare-and-swap loop, the per-instance
//! cache of the last record seen, and state-change events. The decisions are
//! `machine`'s; the storage and the event sink come in through [`Port`].

use std::cell::RefCell;

use crate::config::Config;
use crate::machine::{self, Action, Outcome, Permit, Record, Rejection, Snapshot, State};
use crate::record;

/// Writes tried against conflicting writers before a change gives up.
pub const MAX_ATTEMPTS: usize = 64;

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
    fn state_changed(
        &self,
        breaker: &str,
        previous: State,
        current: State,
        at_ms: u64,
        remote: bool,
    );
}

/// A granted permit and the storage version it was granted against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The permit.
    pub permit: Permit,
    /// The version of the record the permit was decided on (0: none).
    pub seen_version: u64,
    /// Whether reporting a success would change nothing.
    pub quiet_success: bool,
    /// Whether acquire gives this answer at any time while the stored version
    /// is still `seen_version`.
    pub reusable: bool,
}

/// Why acquire did not grant a permit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denied {
    /// The breaker rejected the call.
    Rejected(Rejection),
    /// The storage failed and the fallback state rejects.
    StorageUnavailable(String),
}

/// Why a change could not be written.
enum Unwritten {
    /// The storage failed, or holds bytes that are not a record.
    Storage(String),
    /// Other writers won every one of [`MAX_ATTEMPTS`] tries.
    Contended(String),
}

impl Unwritten {
    fn message(self) -> String {
        match self {
            Unwritten::Storage(message) | Unwritten::Contended(message) => message,
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
}

impl Default for View {
    /// A new breaker takes itself for closed: a first look that finds another
    /// state is told as a change that another instance wrote.
    fn default() -> Self {
        View {
            cached: None,
            seen: State::Closed,
        }
    }
}

/// One named breaker, as one instance sees it.
pub struct Breaker<P> {
    name: String,
    config: Config,
    port: P,
    view: RefCell<View>,
}

impl<P: Port> Breaker<P> {
    /// A breaker named `name` (its storage key), with a valid configuration.
    pub fn new(name: String, config: Config, port: P) -> Self {
        Breaker {
            name,
            config,
            port,
            view: RefCell::new(View::default()),
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
    pub fn acquire(&self, now: u64) -> Result<Grant, Denied> {
        self.acquire_from(now, None)
    }

    /// Asks to make a call at `now`, reusing the cached record if the host
    /// says the stored version is still the cached one (0: absent).
    pub fn acquire_at_version(&self, now: u64, version: u64) -> Result<Grant, Denied> {
        self.acquire_from(now, Some(version))
    }

    fn acquire_from(&self, now: u64, current_version: Option<u64>) -> Result<Grant, Denied> {
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
        let fallback = |message| {
            let known = self
                .view
                .borrow()
                .cached
                .as_ref()
                .map_or(0, |(_, r)| r.generation);
            self.fallback(message, known, now)
        };
        let loaded = match cached.map_or_else(|| self.load(now), Ok) {
            Ok(Loaded::Corrupt(_, message)) | Err(message) => return fallback(message),
            Ok(loaded) => loaded,
        };
        let answer = self.write_loop(now, loaded, false, |record| {
            machine::acquire(&self.config, record, now)
        });
        match answer {
            Ok(Ok(permit)) => {
                let view = self.view.borrow();
                let (seen_version, quiet_success, reusable) =
                    view.cached.as_ref().map_or((0, false, false), |(v, r)| {
                        (
                            *v,
                            machine::success_is_quiet(r, &permit),
                            machine::answer_is_timeless(r, &permit),
                        )
                    });
                Ok(Grant {
                    permit,
                    seen_version,
                    quiet_success,
                    reusable,
                })
            }
            Ok(Err(rejection)) => Err(Denied::Rejected(rejection)),
            Err(Unwritten::Storage(message)) => fallback(message),
            // The storage works, so the fallback does not apply; the write
            // this call needed (a trial slot) was not made, so it cannot run.
            Err(Unwritten::Contended(message)) => Err(Denied::StorageUnavailable(message)),
        }
    }

    /// Records what became of a permitted call.
    ///
    /// It starts from the cached record: a write made from a stale one meets a
    /// conflict and is recomputed; a decision to write nothing is confirmed
    /// against the storage first. A report that can never write (a non-trial
    /// `ignored`) touches no storage.
    pub fn report(&self, grant: &Grant, outcome: Outcome, now: u64) -> Result<(), String> {
        if machine::report_never_writes(&grant.permit, outcome) {
            return Ok(());
        }
        let cached = self.view.borrow().cached.clone();
        let decide = |record: &Record| {
            let next = machine::report(&self.config, record, &grant.permit, outcome, now);
            (next, ())
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
                .map_err(Unwritten::message);
        }
        let start = self.load(now)?;
        self.write_loop(now, start, false, decide)
            .map_err(Unwritten::message)
    }

    /// The breaker's state at `now`, read fresh from the storage.
    pub fn snapshot(&self, now: u64) -> Result<Snapshot, String> {
        match self.load(now)? {
            Loaded::Absent => Ok(machine::snapshot(&self.config, &Record::default(), now)),
            Loaded::Present(_, record) => Ok(machine::snapshot(&self.config, &record, now)),
            Loaded::Corrupt(_, message) => Err(message),
        }
    }

    /// Applies an operator action; a corrupt stored record is overwritten.
    pub fn operate(&self, action: Action, now: u64) -> Result<(), String> {
        let cached = self.view.borrow().cached.clone();
        let start = match cached {
            Some((0, _)) => Loaded::Absent,
            Some((version, record)) => Loaded::Present(version, record),
            None => self.load(now)?,
        };
        self.write_loop(now, start, true, |record| {
            (Some(machine::operate(record, action, now)), ())
        })
        .map_err(Unwritten::message)
    }

    /// Computes and writes a change, recomputing from the current entry on conflict.
    fn write_loop<T>(
        &self,
        now: u64,
        mut current: Loaded,
        overwrite_corrupt: bool,
        mut decide: impl FnMut(&Record) -> (Option<Record>, T),
    ) -> Result<T, Unwritten> {
        for _ in 0..MAX_ATTEMPTS {
            let (expected, record) = match current {
                Loaded::Absent => (None, Record::default()),
                Loaded::Present(version, record) => (Some(version), record),
                Loaded::Corrupt(version, _) if overwrite_corrupt => (
                    Some(version),
                    Record {
                        generation: version,
                        ..Record::default()
                    },
                ),
                Loaded::Corrupt(_, message) => return Err(Unwritten::Storage(message)),
            };
            let (next, answer) = decide(&record);
            let Some(next) = next else {
                return Ok(answer);
            };
            let swapped = self
                .port
                .compare_and_swap(&self.name, expected, &record::encode(&next));
            match swapped {
                Ok(Swap::Written(version)) => {
                    self.wrote(version, next, now);
                    return Ok(answer);
                }
                Ok(Swap::Conflict(entry)) => current = self.observe(entry, now),
                Err(message) => {
                    return Err(Unwritten::Storage(
                        self.storage_error("compare-and-swap", &message),
                    ));
                }
            }
        }
        Err(Unwritten::Contended(format!(
            "breaker {:?}: gave up after {MAX_ATTEMPTS} conflicting writes",
            self.name
        )))
    }

    fn load(&self, now: u64) -> Result<Loaded, String> {
        match self.port.load(&self.name) {
            Ok(entry) => Ok(self.observe(entry, now)),
            Err(message) => Err(self.storage_error("load", &message)),
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
        let state = record.state;
        let previous = {
            let mut view = self.view.borrow_mut();
            view.cached = Some((loaded.version(), record));
            std::mem::replace(&mut view.seen, state)
        };
        if previous != state {
            self.port
                .state_changed(&self.name, previous, state, now, true);
        }
        loaded
    }

    /// Caches a record this instance wrote and fires its local event, from
    /// the state this instance last saw (a repaired corrupt record had none).
    fn wrote(&self, version: u64, record: Record, now: u64) {
        let state = record.state;
        let previous = {
            let mut view = self.view.borrow_mut();
            view.cached = Some((version, record));
            std::mem::replace(&mut view.seen, state)
        };
        if previous != state {
            self.port
                .state_changed(&self.name, previous, state, now, false);
        }
    }

    fn storage_error(&self, operation: &str, message: &str) -> String {
        format!(
            "breaker {:?}: storage {operation} failed: {message}",
            self.name
        )
    }

    /// Acquire's answer when the storage cannot say: the fallback state's.
    /// An admitted call's permit carries the newest generation this instance knows.
    fn fallback(&self, message: String, generation: u64, now: u64) -> Result<Grant, Denied> {
        if !self.config.fallback_admits() {
            return Err(Denied::StorageUnavailable(message));
        }
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
    }
}
