//! A memory storage with faults that a test switches on and off.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};

use tripswitch::{Entry, MemoryStorage, Storage, StorageError, SwapResult};

/// How much data (64 MiB) the load after [`Faulty::oversize_next_load`] answers.
pub const OVERSIZED_BYTES: usize = 64 << 20;

/// Where an armed [`Faulty`] storage holds its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pause {
    /// After the next load (done, its answer not yet returned).
    AfterLoad,
    /// After the next compare-and-swap that writes (written, not yet returned).
    AfterWrite,
}

/// A [`MemoryStorage`] with switchable faults and call counts; clones share
/// the memory, the faults and the counts.
///
/// With no fault on it passes every call through to memory, except that by
/// default it does not tell its version (`peek_version` answers none, as
/// Redis does) and says it may block: see [`telling_version`](Self::telling_version)
/// and [`never_blocking`](Self::never_blocking).
#[derive(Clone)]
pub struct Faulty {
    memory: MemoryStorage,
    shared: Arc<Shared>,
}

/// What clones of one [`Faulty`] share.
struct Shared {
    failing: AtomicBool,
    conflicting: AtomicBool,
    contending: AtomicBool,
    oversized: AtomicBool,
    tells_version: AtomicBool,
    may_block: AtomicBool,
    armed: Mutex<Option<Pause>>,
    paused: Barrier,
    resume: Barrier,
    loads: AtomicUsize,
    swaps: AtomicUsize,
}

impl Default for Faulty {
    fn default() -> Self {
        Faulty {
            memory: MemoryStorage::new(),
            shared: Arc::new(Shared {
                failing: AtomicBool::new(false),
                conflicting: AtomicBool::new(false),
                contending: AtomicBool::new(false),
                oversized: AtomicBool::new(false),
                tells_version: AtomicBool::new(false),
                may_block: AtomicBool::new(true),
                armed: Mutex::new(None),
                paused: Barrier::new(2),
                resume: Barrier::new(2),
                loads: AtomicUsize::new(0),
                swaps: AtomicUsize::new(0),
            }),
        }
    }
}

impl Faulty {
    /// An empty storage with no fault on.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `peek_version` from memory while not failing (none while failing), as memory does.
    pub fn telling_version(self) -> Self {
        self.shared.tells_version.store(true, Ordering::SeqCst);
        self
    }

    /// Says no call may block (`may_block` false), as memory does.
    pub fn never_blocking(self) -> Self {
        self.shared.may_block.store(false, Ordering::SeqCst);
        self
    }

    /// The memory behind, to read or rewrite records without faults or counts.
    pub fn memory(&self) -> &MemoryStorage {
        &self.memory
    }

    /// Fault "fail": every call errors (true) or passes through again (false).
    pub fn set_failing(&self, failing: bool) {
        self.shared.failing.store(failing, Ordering::SeqCst);
    }

    /// Fault "conflict": every compare-and-swap answers a conflict with the current entry.
    pub fn set_conflicting(&self, conflicting: bool) {
        self.shared.conflicting.store(conflicting, Ordering::SeqCst);
    }

    /// Fault "contend": another writer rewrites the record (same data, a new
    /// version) just before each compare-and-swap.
    pub fn set_contending(&self, contending: bool) {
        self.shared.contending.store(contending, Ordering::SeqCst);
    }

    /// Fault "pause": holds the next call that reaches `pause` until
    /// [`wait_paused`](Self::wait_paused) then [`release`](Self::release).
    pub fn pause(&self, pause: Pause) {
        *self.lock_armed() = Some(pause);
    }

    /// Waits until the armed pause holds its caller.
    pub fn wait_paused(&self) {
        self.shared.paused.wait();
    }

    /// Lets the held caller go on (after [`wait_paused`](Self::wait_paused)).
    pub fn release(&self) {
        self.shared.resume.wait();
    }

    /// Fault "forget": removes a key, as an expiry would; true if it was there
    /// (versions still never repeat).
    pub fn forget(&self, key: &str) -> bool {
        self.memory.remove(key)
    }

    /// Fault "oversize": the next load answers [`OVERSIZED_BYTES`] of data at version 1.
    pub fn oversize_next_load(&self) {
        self.shared.oversized.store(true, Ordering::SeqCst);
    }

    /// (loads, compare-and-swaps) asked for since the last call to this, failed ones included.
    pub fn take_counts(&self) -> (usize, usize) {
        (
            self.shared.loads.swap(0, Ordering::SeqCst),
            self.shared.swaps.swap(0, Ordering::SeqCst),
        )
    }

    fn check(&self, call: &str) -> Result<(), StorageError> {
        if self.shared.failing.load(Ordering::SeqCst) {
            Err(StorageError(format!(
                "connection refused (test fault \"fail\" on {call})"
            )))
        } else {
            Ok(())
        }
    }

    fn lock_armed(&self) -> std::sync::MutexGuard<'_, Option<Pause>> {
        self.shared.armed.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn hold_if(&self, pause: Pause) {
        let armed = {
            let mut armed = self.lock_armed();
            if *armed == Some(pause) {
                armed.take()
            } else {
                None
            }
        };
        if armed.is_some() {
            self.shared.paused.wait();
            self.shared.resume.wait();
        }
    }
}

impl Storage for Faulty {
    fn load(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        self.shared.loads.fetch_add(1, Ordering::SeqCst);
        self.check("load")?;
        if self.shared.oversized.swap(false, Ordering::SeqCst) {
            return Ok(Some(Entry {
                version: 1,
                data: vec![1; OVERSIZED_BYTES],
            }));
        }
        let loaded = self.memory.load(key);
        self.hold_if(Pause::AfterLoad);
        loaded
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<u64>,
        data: &[u8],
    ) -> Result<SwapResult, StorageError> {
        self.shared.swaps.fetch_add(1, Ordering::SeqCst);
        self.check("compare-and-swap")?;
        if self.shared.conflicting.load(Ordering::SeqCst) {
            return Ok(SwapResult::Conflict(self.memory.load(key)?));
        }
        if self.shared.contending.load(Ordering::SeqCst)
            && let Some(current) = self.memory.load(key)?
        {
            self.memory.put(key, &current.data);
        }
        let swapped = self.memory.compare_and_swap(key, expected, data);
        if matches!(swapped, Ok(SwapResult::Written(_))) {
            self.hold_if(Pause::AfterWrite);
        }
        swapped
    }

    fn peek_version(&self, key: &str) -> Option<Option<u64>> {
        if !self.shared.tells_version.load(Ordering::SeqCst) {
            return None;
        }
        self.check("peek_version").ok()?;
        self.memory.peek_version(key)
    }

    fn may_block(&self) -> bool {
        self.shared.may_block.load(Ordering::SeqCst)
    }
}
