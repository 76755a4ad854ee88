//! The background thread that merges held window outcomes when they fall
//! due: a breaker's instances hold outcomes for at most its flush interval
//! (the component says by when), so that an idle process does not sit on them.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use crate::breaker::{Inner, flush_inner};

/// How often the thread looks for breakers whose outcomes are due.
const TICK: Duration = Duration::from_millis(10);
/// When a flush fails (the storage is down), how long until the next try.
const RETRY_MS: u64 = 1000;

/// Breakers with outcomes held, and when (by their own clocks) they are due.
type Due = Mutex<Vec<(Weak<Inner>, u64)>>;

fn due() -> &'static Due {
    static DUE: OnceLock<Due> = OnceLock::new();
    DUE.get_or_init(|| {
        std::thread::Builder::new()
            .name("tripswitch-flush".into())
            .spawn(run)
            .expect("spawning the flush thread");
        Mutex::new(Vec::new())
    })
}

/// Asks for `inner`'s held outcomes to be merged at `due_ms`, unless a
/// flush is already asked for.
pub(crate) fn schedule(inner: &Arc<Inner>, due_ms: u64) {
    if inner.flush_scheduled.swap(true, Ordering::AcqRel) {
        return;
    }
    due()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((Arc::downgrade(inner), due_ms));
}

fn run() {
    loop {
        std::thread::sleep(TICK);
        let ready: Vec<Arc<Inner>> = {
            let mut entries = due().lock().unwrap_or_else(|e| e.into_inner());
            let mut ready = Vec::new();
            entries.retain(|(weak, due_ms)| match weak.upgrade() {
                Some(inner) if inner.clock.now_ms() >= *due_ms => {
                    ready.push(inner);
                    false
                }
                Some(_) => true,
                None => false,
            });
            ready
        };
        for inner in ready {
            inner.flush_scheduled.store(false, Ordering::Release);
            if flush_inner(&inner).is_err() {
                let retry = inner.clock.now_ms().saturating_add(RETRY_MS);
                schedule(&inner, retry);
            } else if inner.runtime.held(inner.id) {
                // An instance that holds some was checked out by a call
                // meanwhile: try again at the next tick.
                schedule(&inner, inner.clock.now_ms());
            }
        }
    }
}
