//! The clients' connections: at most `max` at once. At the cap, a new
//! connection takes the place of the oldest one that is waiting for a
//! request's head (a slow or silent client, or an idle keep-alive one); when
//! every connection is serving a request, accepting waits for one to end.
//! So sockets that never finish a header cannot keep anyone else out.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// The open connections, and room for more.
pub struct Connections {
    room: Arc<Semaphore>,
    open: Mutex<Open>,
}

/// The open connections by age.
#[derive(Default)]
struct Open {
    next_id: u64,
    by_age: BTreeMap<u64, Arc<Tracked>>,
}

/// One connection as the cap sees it.
#[derive(Default)]
pub struct Tracked {
    /// Requests of this connection being served now.
    serving: AtomicUsize,
    /// Whether it ever got a whole request head.
    served: AtomicBool,
    /// Told when the connection should close once idle.
    evicted: Notify,
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
        })
    }

    /// A seat for a connection just accepted: at once if there is room,
    /// else after the oldest idle connection closes, or any connection ends.
    pub async fn seat(self: &Arc<Self>) -> Seat {
        let permit = match Arc::clone(&self.room).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                self.evict_oldest_idle();
                Arc::clone(&self.room)
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed")
            }
        };
        let tracked = Arc::new(Tracked::default());
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

    /// Asks the oldest connection that serves no request to close.
    fn evict_oldest_idle(&self) {
        let mut open = self.lock();
        let oldest = open
            .by_age
            .iter()
            .find(|(_, tracked)| tracked.serving.load(Ordering::Acquire) == 0)
            .map(|(id, _)| *id);
        if let Some(tracked) = oldest.and_then(|id| open.by_age.remove(&id)) {
            tracked.evicted.notify_one();
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
    /// Marks a request of this connection as being served.
    pub fn serving(self: &Arc<Self>) -> Serving {
        self.serving.fetch_add(1, Ordering::AcqRel);
        self.served.store(true, Ordering::Release);
        Serving(Arc::clone(self))
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.serving.fetch_sub(1, Ordering::AcqRel);
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
        let _request = busy.tracked().serving();
        let idle = connections.seat().await;
        // Full: the next seat evicts the idle one, not the busy one.
        let next = tokio::spawn({
            let connections = Arc::clone(&connections);
            async move { connections.seat().await }
        });
        tokio::time::timeout(Duration::from_secs(5), idle.evicted())
            .await
            .expect("the idle connection is asked to close");
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
    async fn with_every_connection_busy_a_new_one_waits() {
        let connections = Connections::new(1);
        let busy = connections.seat().await;
        let request = busy.tracked().serving();
        let next = tokio::spawn({
            let connections = Arc::clone(&connections);
            async move { connections.seat().await }
        });
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert!(!next.is_finished(), "no idle connection to make room");
        drop(request);
        drop(busy);
        tokio::time::timeout(Duration::from_secs(5), next)
            .await
            .expect("seated once the busy connection ended")
            .unwrap();
    }
}
