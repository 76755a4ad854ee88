//! The clients' connections: at most `max` at once. At the cap, a new
//! connection takes the place of the oldest one that is waiting for a
//! request's head (a slow or silent client, or an idle keep-alive one); when
//! every connection is serving a request, accepting waits until one ends or
//! goes idle. So sockets that never finish a header cannot keep anyone out.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// Set in [`Tracked::serving`] once a connection is evicted: it takes no
/// more requests.
const EVICTED: usize = 1 << (usize::BITS - 1);

/// The open connections, and room for more.
pub struct Connections {
    room: Arc<Semaphore>,
    open: Mutex<Open>,
    /// Told when a connection stops serving requests (it may be evicted).
    went_idle: Arc<Notify>,
}

/// The open connections by age.
#[derive(Default)]
struct Open {
    next_id: u64,
    by_age: BTreeMap<u64, Arc<Tracked>>,
}

/// One connection as the cap sees it.
pub struct Tracked {
    /// Requests of this connection being served now, and [`EVICTED`].
    serving: AtomicUsize,
    /// Whether it ever got a whole request head.
    served: AtomicBool,
    /// Told when the connection should close.
    evicted: Notify,
    went_idle: Arc<Notify>,
}

/// A connection's place under the cap: frees it when dropped.
pub struct Seat {
    id: u64,
    tracked: Arc<Tracked>,
    connections: Arc<Connections>,
    _permit: OwnedSemaphorePermit,
}

/// A request being served: its connection is not idle until it is dropped.
pub struct Serving(Arc<Tracked>);

impl Connections {
    /// Room for `max` connections.
    pub fn new(max: usize) -> Arc<Connections> {
        Arc::new(Connections {
            room: Arc::new(Semaphore::new(max)),
            open: Mutex::new(Open::default()),
            went_idle: Arc::new(Notify::new()),
        })
    }

    /// A seat for a connection just accepted: at once if there is room,
    /// else once the oldest idle connection has closed, or any connection
    /// has ended.
    pub async fn seat(self: &Arc<Self>) -> Seat {
        let permit = loop {
            if let Ok(permit) = Arc::clone(&self.room).try_acquire_owned() {
                break permit;
            }
            let went_idle = self.went_idle.notified();
            let mut went_idle = std::pin::pin!(went_idle);
            went_idle.as_mut().enable();
            let evicting = self.evict_oldest_idle();
            tokio::select! {
                permit = Arc::clone(&self.room).acquire_owned() => {
                    break permit.expect("the semaphore is never closed");
                }
                // Every connection was serving: try again once one is idle.
                () = went_idle, if !evicting => {}
            }
        };
        let tracked = Arc::new(Tracked {
            serving: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            evicted: Notify::new(),
            went_idle: Arc::clone(&self.went_idle),
        });
        let mut open = self.lock();
        let id = open.next_id;
        open.next_id += 1;
        open.by_age.insert(id, Arc::clone(&tracked));
        Seat {
            id,
            tracked,
            connections: Arc::clone(self),
            _permit: permit,
        }
    }

    /// Asks the oldest connection that serves no request to close; whether
    /// there was one.
    fn evict_oldest_idle(&self) -> bool {
        let mut open = self.lock();
        let oldest = open.by_age.iter().find_map(|(id, tracked)| {
            // Evicted only if still idle: a request that starts after this
            // finds the connection evicted.
            tracked
                .serving
                .compare_exchange(0, EVICTED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
                .then_some(*id)
        });
        match oldest.and_then(|id| open.by_age.remove(&id)) {
            Some(tracked) => {
                tracked.evicted.notify_one();
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Seat {
    /// The connection's own record, for [`Serving`] marks from its requests.
    pub fn tracked(&self) -> Arc<Tracked> {
        Arc::clone(&self.tracked)
    }

    /// Waits until the connection is asked to close.
    pub async fn evicted(&self) {
        self.tracked.evicted.notified().await;
    }

    /// Whether it never got a whole request head: closing it loses nothing.
    pub fn never_served(&self) -> bool {
        !self.tracked.served.load(Ordering::Acquire)
    }
}

impl Tracked {
    /// Marks a request of this connection as being served; none when the
    /// connection was evicted (the request is refused, the connection closes).
    pub fn serving(self: &Arc<Self>) -> Option<Serving> {
        let before = self.serving.fetch_add(1, Ordering::AcqRel);
        if before & EVICTED != 0 {
            self.serving.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        self.served.store(true, Ordering::Release);
        Some(Serving(Arc::clone(self)))
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if self.0.serving.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.went_idle.notify_waiters();
        }
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.connections.lock().by_age.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn the_oldest_idle_connection_makes_room() {
        let connections = Connections::new(2);
        let busy = connections.seat().await;
        let _request = busy.tracked().serving().unwrap();
        let idle = connections.seat().await;
        // Full: the next seat evicts the idle one, not the busy one.
        let next = tokio::spawn({
            let connections = Arc::clone(&connections);
            async move { connections.seat().await }
        });
        tokio::time::timeout(Duration::from_secs(5), idle.evicted())
            .await
            .expect("the idle connection is asked to close");
        assert!(
            idle.tracked().serving().is_none(),
            "an evicted connection takes no more requests"
        );
        assert!(!next.is_finished(), "no seat until the idle one closes");
        drop(idle);
        let seated = tokio::time::timeout(Duration::from_secs(5), next)
            .await
            .expect("seated once the idle connection closed")
            .unwrap();
        drop(seated);
        drop(busy);
    }

    #[tokio::test]
    async fn with_every_connection_busy_a_new_one_waits_for_one_to_go_idle() {
        let connections = Connections::new(1);
        let busy = connections.seat().await;
        let request = busy.tracked().serving().unwrap();
        let next = tokio::spawn({
            let connections = Arc::clone(&connections);
            async move { connections.seat().await }
        });
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert!(!next.is_finished(), "no idle connection to make room");
        // The busy connection answers and idles (keep-alive): it is evicted.
        drop(request);
        tokio::time::timeout(Duration::from_secs(5), busy.evicted())
            .await
            .expect("the connection that went idle is asked to close");
        drop(busy);
        tokio::time::timeout(Duration::from_secs(5), next)
            .await
            .expect("seated once the evicted connection closed")
            .unwrap();
    }
}
