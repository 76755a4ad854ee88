//! Single-instance storages a test sets by hand (always conflicting,
//! always failing, scripted), and the checks of what acquire answers when
//! the storage cannot say.

use std::cell::{Cell, RefCell};

use proptest::prelude::*;
use tripswitch_core::breaker::{Admission, Change, Denial, Notice, Port, Refusal, Stored, Swap};
use tripswitch_core::machine::{Permit, Record, State};
use tripswitch_core::record;

use crate::KEY;
use crate::storage::Answered;

/// The events a new instance owes for its first look finding `found` (none:
/// absent): it takes the breaker for closed, so one remote event if the
/// record is in another state, telling the record's generation, reason and
/// change time; none otherwise.
pub fn first_look(found: Option<&Record>) -> Vec<Change> {
    match found {
        Some(r) if r.state != State::Closed => vec![Change {
            previous: State::Closed,
            current: r.state,
            at_ms: r.changed_at_ms,
            generation: r.generation,
            reason: r.reason,
            remote: true,
        }],
        _ => Vec::new(),
    }
}

/// A storage whose compare-and-swap always conflicts, reporting the entry unchanged.
pub struct Stubborn {
    pub entry: Option<Stored>,
    pub loads: Cell<usize>,
    pub swaps: Cell<usize>,
    pub events: RefCell<Vec<Change>>,
}

impl Stubborn {
    /// Holding `record` (none: nothing) at `version`.
    pub fn holding(record: Option<&Record>, version: u64) -> Stubborn {
        Stubborn {
            entry: record.map(|r| Stored {
                version,
                data: record::encode(r),
            }),
            loads: Cell::new(0),
            swaps: Cell::new(0),
            events: RefCell::new(Vec::new()),
        }
    }
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

    fn state_changed(&self, _: &str, change: &Change) {
        self.events.borrow_mut().push(*change);
    }

    fn noticed(&self, _: &str, notice: &Notice) {
        panic!("no notice expected: {notice:?}");
    }
}

/// A storage that fails every call, but the first `healthy` loads, which
/// return `entry`.
#[derive(Default)]
pub struct Broken {
    pub entry: Option<Stored>,
    pub healthy: Cell<usize>,
    pub loads: Cell<usize>,
    pub swaps: Cell<usize>,
    pub events: RefCell<Vec<Change>>,
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

    fn state_changed(&self, _: &str, change: &Change) {
        self.events.borrow_mut().push(*change);
    }

    fn noticed(&self, _: &str, notice: &Notice) {
        panic!("no notice expected: {notice:?}");
    }
}

/// How a [`Scripted`] storage answers a compare-and-swap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Writes if the expected version is the stored one, else conflicts.
    Write,
    /// Conflicts, handing the stored entry unchanged.
    Conflict,
    /// Fails.
    Fail,
}

/// A storage a test sets by hand.
pub struct Scripted {
    pub entry: RefCell<Option<Stored>>,
    pub reply: Cell<Reply>,
    pub load_fails: Cell<bool>,
    pub loads: Cell<usize>,
    pub swaps: Cell<usize>,
    pub events: RefCell<Vec<Change>>,
    pub notices: RefCell<Vec<Notice>>,
}

impl Scripted {
    /// Holding `record` (none: nothing) at `version`, writing when asked.
    pub fn holding(record: Option<&Record>, version: u64) -> Scripted {
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
            notices: RefCell::new(Vec::new()),
        }
    }

    /// Replaces the stored bytes, as another writer would.
    pub fn put(&self, data: Vec<u8>, version: u64) {
        *self.entry.borrow_mut() = Some(Stored { version, data });
    }

    /// The stored record, decoded (none: absent or corrupt).
    pub fn record(&self) -> Option<Record> {
        let entry = self.entry.borrow();
        entry.as_ref().and_then(|s| record::decode(&s.data).ok())
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

    fn state_changed(&self, _: &str, change: &Change) {
        self.events.borrow_mut().push(*change);
    }

    fn noticed(&self, _: &str, notice: &Notice) {
        self.notices.borrow_mut().push(notice.clone());
    }
}

/// Bytes that are no record.
pub fn corrupt_bytes() -> Vec<u8> {
    let bytes = vec![0xff];
    assert!(record::decode(&bytes).is_err());
    bytes
}

/// `got` is a fallback's admission: a non-trial permit of `generation`
/// issued at `now`, holding nothing (it was decided on no record), quiet (a
/// success has nothing to reset that the storage would keep), degraded by a
/// message that names the breaker and says `says`.
pub fn check_degraded(
    got: &Answered,
    generation: u64,
    now: u64,
    says: &str,
) -> Result<(), TestCaseError> {
    let Ok(Admission {
        permit,
        holds,
        quiet_success,
        degraded,
    }) = got
    else {
        return Err(TestCaseError::fail(format!(
            "the fallback admits, yet acquire said {got:?}"
        )));
    };
    let want = Permit {
        generation,
        trial: false,
        issued_at_ms: now,
    };
    prop_assert_eq!(
        *permit,
        want,
        "a fallback permit carries the generation known"
    );
    prop_assert_eq!(*holds, None, "a degraded admission holds nothing");
    prop_assert!(*quiet_success, "a degraded admission's success is quiet");
    match degraded {
        Some(message) => prop_assert!(
            message.contains(KEY) && message.contains(says),
            "degraded {:?}: should name {:?} and say {:?}",
            message,
            KEY,
            says
        ),
        None => prop_assert!(false, "a fallback admission not marked degraded: {:?}", got),
    }
    Ok(())
}

/// `got` is a refusal as unavailable, in `state`, holding nothing, with a
/// message that names the breaker and says `says`.
pub fn check_unavailable(got: &Answered, state: State, says: &str) -> Result<(), TestCaseError> {
    let Err(Refusal {
        denial: Denial::StorageUnavailable(message),
        state: refused_in,
        holds,
    }) = got
    else {
        return Err(TestCaseError::fail(format!(
            "expected unavailable, acquire said {got:?}"
        )));
    };
    prop_assert_eq!(*refused_in, state, "the state that refused");
    prop_assert_eq!(*holds, None, "an unavailable refusal holds nothing");
    prop_assert!(
        message.contains(KEY) && message.contains(says),
        "unavailable {:?}: should name {:?} and say {:?}",
        message,
        KEY,
        says
    );
    Ok(())
}
