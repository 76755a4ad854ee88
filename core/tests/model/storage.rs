//! The in-memory storage several breaker instances share, which keeps the
//! books: the events each instance owes, the loads it makes, what it should
//! have cached, and every write checked for its generation, reason, change
//! time and trial count.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use proptest::prelude::*;
use tripswitch_core::breaker::{
    Admission, Breaker, BreakerError, Change, Notice, Port, Refusal, Stored, Swap,
};
use tripswitch_core::config::Config;
use tripswitch_core::machine::{self, Action, Permit, Reason, Record, State};
use tripswitch_core::record;

use crate::KEY;
use crate::strategies::{Ask, Op};

/// A state-changed event, with the instance that fired it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heard {
    pub instance: usize,
    pub change: Change,
}

/// The reason a write that moved the state from `old` to `new` must note,
/// if no operator acted (none: no such transition is the machine's).
fn reason_for(old: State, new: State) -> Option<Reason> {
    Some(match (old, new) {
        (State::Closed, State::Open) => Reason::Tripped,
        (State::HalfOpen, State::Open) => Reason::TrialFailed,
        (State::HalfOpen, State::Closed) => Reason::Recovered,
        (State::Open, State::HalfOpen) => Reason::TimeoutElapsed,
        _ => return None,
    })
}

/// The storage every instance shares, and what the test learns through it.
pub struct Shared {
    pub cfg: Config,
    pub now: Cell<u64>,
    pub entries: RefCell<HashMap<String, (u64, Vec<u8>)>>,
    last_version: Cell<u64>,
    /// Per instance, the state it takes the breaker to be in: closed at
    /// first (a new instance takes itself for closed), then the state of the
    /// last entry it was handed or wrote.
    seen: RefCell<Vec<State>>,
    /// The events the implementation owes, in order.
    due: RefCell<VecDeque<Heard>>,
    pub heard: RefCell<Vec<Heard>>,
    problems: RefCell<Vec<String>>,
    /// Calls to fail from now on (true: fail), one per load or compare-and-swap.
    pub faults: RefCell<VecDeque<bool>>,
    pub failed_calls: Cell<usize>,
    /// Per instance, the loads it made (failed ones included).
    loads: RefCell<Vec<usize>>,
    /// Per instance, what it should have cached: the last entry it was
    /// handed or wrote (absent: version 0, the default record). A failed
    /// call leaves it as it was.
    cached: RefCell<Vec<Option<(u64, Record)>>>,
    /// True while the test runs an operator action: its write, and only it,
    /// starts a new generation without changing the state.
    operating: Cell<bool>,
    /// Per instance, the highest generation it was handed or wrote: a
    /// record below it was made anew after its key was lost, and the
    /// instance tells its changes, and writes it, above it (by one plus its
    /// own generation, so that they keep their order).
    highest: RefCell<Vec<u64>>,
}

impl Shared {
    pub fn new(cfg: &Config, instances: usize, start: u64) -> Rc<Shared> {
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
            highest: RefCell::new(vec![0; instances]),
        })
    }

    pub fn loads(&self, instance: usize) -> usize {
        self.loads.borrow()[instance]
    }

    /// The state `instance` last saw (closed before its first look).
    pub fn seen(&self, instance: usize) -> State {
        self.seen.borrow()[instance]
    }

    /// The version and record `instance` should have cached.
    pub fn cached(&self, instance: usize) -> Option<(u64, Record)> {
        self.cached.borrow()[instance].clone()
    }

    /// The newest generation `instance` knows (0 if it knows none).
    pub fn known_generation(&self, instance: usize) -> u64 {
        self.cached(instance).map_or(0, |(_, r)| r.generation)
    }

    /// The version to hand `acquire_at_version` for `ask` (none: plain acquire).
    pub fn version_for(&self, ask: Ask) -> Option<u64> {
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
    pub fn loads_due(&self, instance: usize, op: &Op, permit: Option<&Permit>) -> usize {
        let cached = self.cached(instance);
        let now = self.now.get();
        match *op {
            Op::Acquire(_, ask) => match (self.version_for(ask), &cached) {
                (Some(asked), Some((version, _))) if asked == *version => 0,
                _ => 1,
            },
            Op::Report(_, outcome, _) => {
                let Some(permit) = permit else { return 0 };
                if machine::report_never_writes(permit, outcome) {
                    return 0;
                }
                match &cached {
                    Some((_, r))
                        if machine::report(&self.cfg, r, permit, outcome, now).is_some() =>
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

    pub fn entry(&self, key: &str) -> Option<Stored> {
        self.entries
            .borrow()
            .get(key)
            .map(|(version, data)| Stored {
                version: *version,
                data: data.clone(),
            })
    }

    /// The stored record and its version (absent: the default record, version 0).
    pub fn stored(&self) -> (u64, Record) {
        match self.entry(KEY) {
            None => (0, Record::default()),
            Some(stored) => (
                stored.version,
                record::decode(&stored.data).expect("the test storage holds only valid records"),
            ),
        }
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
    /// remote event is owed, telling the record's generation, reason and
    /// change time (the writer's), or, for an absent key, the time of this
    /// look.
    fn hand_over(&self, instance: usize, entry: &Option<Stored>) {
        let (version, found) = match entry {
            None => (0, Record::default()),
            Some(stored) => (
                stored.version,
                record::decode(&stored.data).expect("the test storage holds only valid records"),
            ),
        };
        let at_ms = if entry.is_some() {
            found.changed_at_ms
        } else {
            self.now.get()
        };
        let highest = self.highest.borrow()[instance];
        let generation = if entry.is_some() && found.generation < highest {
            highest + 1 + found.generation
        } else {
            found.generation
        };
        self.highest.borrow_mut()[instance] = highest.max(found.generation);
        let previous = std::mem::replace(&mut self.seen.borrow_mut()[instance], found.state);
        if previous != found.state {
            self.due.borrow_mut().push_back(Heard {
                instance,
                change: Change {
                    previous,
                    current: found.state,
                    at_ms,
                    generation,
                    reason: found.reason,
                    remote: true,
                },
            });
        }
        self.cached.borrow_mut()[instance] = Some((version, found));
    }

    /// Checks a write of `new` over `old` at `now`: the generation moves by
    /// one on a state change or an operator action and never otherwise; a
    /// state change notes the machine's reason for it and now, an operator
    /// action the operator and now, and any other write keeps both; no more
    /// live trials than the limit. A write that creates the key (`created`)
    /// may start above: once a key vanished, the writer's next record starts
    /// above every generation it has seen, so generations never go back. A
    /// record below the generations the writer saw (made anew after its key
    /// was lost) is lifted above them first (by one plus its generation).
    fn check_write(&self, writer: usize, old: &Record, new: &Record, now: u64, created: bool) {
        let changed = old.state != new.state;
        let operator = self.operating.get();
        let highest = self.highest.borrow()[writer];
        let base = if !created && old.generation < highest {
            highest + 1 + old.generation
        } else {
            old.generation
        };
        let due = base + u64::from(changed || operator);
        if new.generation != due && !(created && new.generation > due) {
            self.problem(format!(
                "generation moved wrongly (operator action: {operator}): {old:?} -> {new:?}"
            ));
        }
        let noted = (new.reason, new.changed_at_ms);
        let due = if operator {
            Some((Reason::Operator, now))
        } else if changed {
            reason_for(old.state, new.state).map(|reason| (reason, now))
        } else {
            Some((old.reason, old.changed_at_ms))
        };
        if due != Some(noted) {
            self.problem(format!(
                "noted {noted:?}, due {due:?} (operator action: {operator}): {old:?} -> {new:?}"
            ));
        }
        let live = new
            .trials
            .iter()
            .filter(|&&t| now < t + self.cfg.trial_timeout_ms)
            .count();
        if live > self.cfg.half_open_max_calls as usize {
            self.problem(format!("{live} live trials written: {new:?}"));
        }
    }
}

/// One instance's view of the shared storage.
pub struct Handle {
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
        let created = current.is_none();
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
        shared.check_write(self.instance, &old, &new, now, created);
        {
            let mut highest = shared.highest.borrow_mut();
            highest[self.instance] = highest[self.instance].max(new.generation);
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
        if previous != new.state {
            shared.due.borrow_mut().push_back(Heard {
                instance: self.instance,
                change: Change {
                    previous,
                    current: new.state,
                    at_ms: now,
                    generation: new.generation,
                    reason: new.reason,
                    remote: false,
                },
            });
        }
        shared.cached.borrow_mut()[self.instance] = Some((version, new));
        Ok(Swap::Written(version))
    }

    fn state_changed(&self, breaker: &str, change: &Change) {
        let shared = &self.shared;
        let heard = Heard {
            instance: self.instance,
            change: *change,
        };
        if breaker != KEY {
            shared.problem(format!("event for breaker {breaker:?}"));
        }
        if change.previous == change.current {
            shared.problem(format!("event for no change: {heard:?}"));
        }
        match shared.due.borrow_mut().pop_front() {
            Some(owed) if owed == heard => {}
            owed => shared.problem(format!("heard {heard:?}, owed {owed:?}")),
        }
        shared.heard.borrow_mut().push(heard);
    }

    fn noticed(&self, _: &str, notice: &Notice) {
        // The instances share one config: no window restarts.
        self.shared
            .problem(format!("instance {} noticed {notice:?}", self.instance));
    }
}

/// What acquire answers.
pub type Answered = Result<Admission, Refusal>;

/// Runs `op`'s acquire: plain, or at the version its `ask` names.
pub fn acquire(shared: &Shared, breaker: &Breaker<Handle>, ask: Ask, now: u64) -> Answered {
    match shared.version_for(ask) {
        None => breaker.acquire(now),
        Some(version) => breaker.acquire_at_version(now, version),
    }
}

/// Runs an operator action, telling the storage that its write may start a
/// new generation in the same state.
pub fn operate(
    shared: &Shared,
    breaker: &Breaker<Handle>,
    action: Action,
    now: u64,
) -> Result<(), BreakerError> {
    shared.operating.set(true);
    let got = breaker.operate(action, now);
    shared.operating.set(false);
    got
}

pub fn instances(cfg: &Config, shared: &Rc<Shared>, n: usize) -> Vec<Breaker<Handle>> {
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
pub struct Peek<'a> {
    pub shared: &'a Shared,
    pub swaps: Cell<usize>,
}

impl Port for &Peek<'_> {
    fn load(&self, key: &str) -> Result<Option<Stored>, String> {
        Ok(self.shared.entry(key))
    }

    fn compare_and_swap(&self, _key: &str, _: Option<u64>, _: &[u8]) -> Result<Swap, String> {
        self.swaps.set(self.swaps.get() + 1);
        Err("a peek writes nothing".into())
    }

    fn state_changed(&self, _: &str, _: &Change) {}

    fn noticed(&self, _: &str, notice: &Notice) {
        panic!("a peek notices nothing: {notice:?}");
    }
}

/// After every step: no problem noticed by the storage, no event still owed.
pub fn check_shared(shared: &Shared) -> Result<(), TestCaseError> {
    let problems = shared.problems.borrow();
    prop_assert!(problems.is_empty(), "{:?}", *problems);
    let due = shared.due.borrow();
    prop_assert!(due.is_empty(), "events never fired: {:?}", *due);
    Ok(())
}
