//! One write at a time per breaker in this process, for blocking storages:
//! threads that share a breaker then do not race each other's
//! compare-and-swap (a thread that loses every race would give up as
//! contended while the breaker's own threads keep winning).

use std::sync::{Condvar, Mutex};

/// Whether a thread is writing the breaker's record, and the threads waiting to.
#[derive(Default)]
pub(crate) struct Writes {
    busy: Mutex<bool>,
    freed: Condvar,
}

/// The turn to write, given back when dropped.
pub(crate) struct Turn<'a>(&'a Writes);

impl Writes {
    /// Waits for the turn to write.
    pub fn take(&self) -> Turn<'_> {
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        while *busy {
            busy = self.freed.wait(busy).unwrap_or_else(|e| e.into_inner());
        }
        *busy = true;
        Turn(self)
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        *self.0.busy.lock().unwrap_or_else(|e| e.into_inner()) = false;
        self.0.freed.notify_one();
    }
}
