//! The background thread that merges held window outcomes when they fall
//! due: a breaker's instances hold outcomes for at most its flush interval
//! (the component says by when), so that an idle process does not sit on them.
//! It also keeps a dropped breaker whose outcomes could not be merged at its
//! drop (its storage failing, or an instance in another thread's hands)
//! until they are, for at most [`KEEP_DROPPED`].

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use crate::breaker::{Inner, flush_inner};

/// How often the thread looks for breakers whose outcomes are due.
const TICK: Duration = Duration::from_millis(10);
/// When a flush fails (the storage is down), how long until the next try.
const RETRY_MS: u64 = 1000;

/// How long a dropped breaker is kept for its held outcomes to be merged.
pub(crate) const KEEP_DROPPED: Duration = Duration::from_secs(60);

/// A breaker with outcomes held: a live one by a weak reference, a dropped
/// one kept until its outcomes are merged or it is given up.
enum Holder {
    Live(Weak<Inner>),
    Dropped(Arc<Inner>, Instant),
}

/// Breakers with outcomes held, and when (by their own clocks) they are due.
type Due = Mutex<Vec<(Holder, u64)>>;

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
        .push((Holder::Live(Arc::downgrade(inner)), due_ms));
}

/// Keeps `inner`, whose last handle was dropped with outcomes still held,
/// until the flush thread has merged them (at most [`KEEP_DROPPED`]): tried
/// again in a second if the merge at the drop `failed`, else at the next tick.
pub(crate) fn keep_dropped(inner: Arc<Inner>, failed: bool) {
    let now = inner.clock.now_ms();
    let due_ms = if failed {
        now.saturating_add(RETRY_MS)
    } else {
        now
    };
    let give_up = Instant::now() + KEEP_DROPPED;
    due()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((Holder::Dropped(inner, give_up), due_ms));
}

fn run() {
    loop {
        std::thread::sleep(TICK);
        let mut ready: Vec<(Arc<Inner>, Option<Instant>)> = Vec::new();
        let mut looked: Vec<Arc<Inner>> = Vec::new();
        {
            let mut entries = due().lock().unwrap_or_else(|e| e.into_inner());
            let mut kept = Vec::with_capacity(entries.len());
            for (holder, due_ms) in entries.drain(..) {
                match holder {
                    Holder::Live(weak) => {
                        let Some(inner) = weak.upgrade() else {
                            continue;
                        };
                        if inner.clock.now_ms() >= due_ms {
                            ready.push((inner, None));
                        } else {
                            kept.push((Holder::Live(weak), due_ms));
                            // Dropped once the lock is released: the last
                            // reference would merge under it.
                            looked.push(inner);
                        }
                    }
                    Holder::Dropped(inner, give_up) => {
                        if inner.clock.now_ms() >= due_ms || Instant::now() >= give_up {
                            ready.push((inner, Some(give_up)));
                        } else {
                            kept.push((Holder::Dropped(inner, give_up), due_ms));
                        }
                    }
                }
            }
            *entries = kept;
        }
        drop(looked);
        for (inner, give_up) in ready {
            let failed = flush_inner(&inner).is_err();
            let merged = !failed && !inner.runtime.held(inner.id);
            // A storage that failed is tried again in a second (by the
            // breaker's clock); an instance that holds some, checked out by
            // a call meanwhile, at the next tick.
            let now = inner.clock.now_ms();
            let retry = if failed {
                now.saturating_add(RETRY_MS)
            } else {
                now
            };
            match give_up {
                None => {
                    inner.flush_scheduled.store(false, Ordering::Release);
                    if !merged {
                        schedule(&inner, retry);
                    }
                }
                // Merged, or given up: the last reference goes here.
                Some(give_up) if merged || Instant::now() >= give_up => {}
                Some(give_up) => {
                    due()
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((Holder::Dropped(inner, give_up), retry));
                }
            }
        }
    }
}
