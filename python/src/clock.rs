//! The virtual clock a test drives instead of sleeping.

use std::time::Duration;

use pyo3::prelude::*;

/// A clock that moves only when told, in Unix milliseconds; breakers given it read it.
#[pyclass(frozen, module = "tripswitch._native")]
pub struct ManualClock(pub tripswitch::ManualClock);

#[pymethods]
impl ManualClock {
    /// A clock that reads `start_ms`.
    #[new]
    #[pyo3(signature = (start_ms = 0))]
    fn new(start_ms: u64) -> Self {
        ManualClock(tripswitch::ManualClock::new(start_ms))
    }

    /// Moves the clock forward by `ms`.
    fn advance(&self, ms: u64) {
        self.0.advance(Duration::from_millis(ms));
    }

    /// Sets the clock to `now_ms`.
    fn set(&self, now_ms: u64) {
        self.0.set(now_ms);
    }

    /// What the clock reads, in Unix ms.
    #[getter]
    fn now_ms(&self) -> u64 {
        tripswitch::Clock::now_ms(&self.0)
    }
}
