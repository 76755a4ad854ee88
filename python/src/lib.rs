//! `tripswitch._native`: the tripswitch Rust host as a Python extension. The
//! Python package (python/tripswitch) builds pybreaker's API on it; every
//! decision stays the component's, every storage call and the component run
//! with the GIL released (a storage written in Python takes it back).

mod awaiting;
mod breaker;
mod bridge;
mod clock;
mod errors;
mod storage;
mod values;

use pyo3::prelude::*;

/// The extension module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<breaker::Breaker>()?;
    m.add_class::<breaker::Permit>()?;
    m.add_class::<awaiting::Pending>()?;
    m.add_class::<clock::ManualClock>()?;
    m.add_class::<storage::MemoryStorage>()?;
    m.add_class::<storage::RedisStorage>()?;
    m.add_class::<storage::Entry>()?;
    m.add_class::<storage::Written>()?;
    m.add_class::<storage::Conflict>()?;
    m.add_class::<values::Snapshot>()?;
    m.add_class::<values::StateChange>()?;
    m.add_class::<values::Refusal>()?;
    errors::register(m)?;
    storage::register_redis(m)?;
    m.add("STATES", values::state_names())?;
    m.add("ACTIONS", values::action_names())?;
    Ok(())
}
