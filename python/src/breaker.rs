//! The breaker and its permits, as the Python package drives them. The GIL
//! is released while the host and the component work.

use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::bridge::Bridge;
use crate::clock::ManualClock;
use crate::errors::to_py;
use crate::storage;
use crate::values::{Refusal, Snapshot};

/// A named breaker on a storage.
#[pyclass(frozen, module = "tripswitch._native")]
pub struct Breaker {
    inner: tripswitch::CircuitBreaker,
    /// Whether the storage may wait on I/O.
    may_block: bool,
    /// Whether the storage is written in Python (called with the GIL).
    python_storage: bool,
}

impl Breaker {
    fn run<T: Send>(&self, py: Python<'_>, work: impl FnOnce() -> T + Send) -> T {
        run(py, self.python_storage, work)
    }
}

/// Runs host work: without the GIL when the storage is Rust's; with it when
/// the storage is Python's (`python_storage`), whose methods would take it
/// back at once: handing it over and back only makes threads queue for it.
fn run<T: Send>(py: Python<'_>, python_storage: bool, work: impl FnOnce() -> T + Send) -> T {
    if python_storage {
        work()
    } else {
        py.detach(work)
    }
}

#[pymethods]
impl Breaker {
    /// A breaker named `name`; `config` holds the host's `Config` fields
    /// (`fail_max`, `reset_timeout_ms`, ...), every one left out taking the
    /// component's default.
    #[new]
    #[pyo3(signature = (name, config, storage = None, clock = None, on_change = None, on_error = None))]
    fn new(
        py: Python<'_>,
        name: String,
        config: &Bound<'_, PyDict>,
        storage: Option<&Bound<'_, PyAny>>,
        clock: Option<PyRef<'_, ManualClock>>,
        on_change: Option<Py<PyAny>>,
        on_error: Option<Py<PyAny>>,
    ) -> PyResult<Breaker> {
        let config: tripswitch::Config = pythonize::depythonize(config.as_any())
            .map_err(|e| PyValueError::new_err(format!("breaker config: {e}")))?;
        let mut builder = tripswitch::CircuitBreaker::builder(name).config(config);
        let (mut may_block, mut python_storage) = (false, false);
        if let Some(storage) = storage {
            let (rust, in_python) = storage::from_py(storage)?;
            (may_block, python_storage) = (rust.may_block(), in_python);
            builder = builder.storage(rust);
        }
        if let Some(clock) = clock {
            builder = builder.clock(clock.0.clone());
        }
        for callback in [&on_change, &on_error].into_iter().flatten() {
            if !callback.bind(py).is_callable() {
                return Err(PyTypeError::new_err("listener callbacks must be callable"));
            }
        }
        builder = builder.listener(Bridge {
            on_change,
            on_error,
        });
        let inner = py.detach(|| builder.build()).map_err(to_py)?;
        Ok(Breaker {
            inner,
            may_block,
            python_storage,
        })
    }

    /// The breaker's name (its key in the storage).
    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }

    /// Whether the storage may wait on I/O (async calls then use a thread).
    #[getter]
    fn may_block(&self) -> bool {
        self.may_block
    }

    /// Whether the storage is written in Python (its reports then go one at a time).
    #[getter]
    fn python_storage(&self) -> bool {
        self.python_storage
    }

    /// Asks to make a call: a `Permit`, or a `Refusal` when the call may not run.
    fn acquire(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match self.run(py, || self.inner.acquire()) {
            Ok(permit) => Ok(Py::new(py, Permit::new(permit, self.python_storage))?.into_any()),
            Err(tripswitch::Error::Rejected(rejected)) => {
                Ok(Py::new(py, Refusal::from(rejected))?.into_any())
            }
            Err(error) => Err(to_py(error)),
        }
    }

    /// The breaker's configuration as the component resolved it, as a
    /// dict of the host's `Config` fields: every default filled in, a rule
    /// that does not apply left None.
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let config = py.detach(|| self.inner.config()).map_err(to_py)?;
        pythonize::pythonize(py, &config)
            .map_err(|e| PyRuntimeError::new_err(format!("breaker config: {e}")))
    }

    /// The breaker's state now, read from the storage.
    fn snapshot(&self, py: Python<'_>) -> PyResult<Snapshot> {
        self.run(py, || self.inner.snapshot())
            .map(Snapshot::from)
            .map_err(to_py)
    }

    /// Operator: applies `action` (`open`, `close`, `half-open`,
    /// `force-open`, `disable`) now.
    fn operate(&self, py: Python<'_>, action: &str) -> PyResult<()> {
        let action: tripswitch::Action = action.parse().map_err(PyValueError::new_err)?;
        self.run(py, || self.inner.operate(action)).map_err(to_py)
    }

    /// Merges the window outcomes held in memory into the record now.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        self.run(py, || self.inner.flush()).map_err(to_py)
    }
}

/// The right to make one call; unreported, it records `ignored` when collected.
#[pyclass(frozen, module = "tripswitch._native")]
pub struct Permit {
    permit: Mutex<Option<tripswitch::Permit>>,
    trial: bool,
    degraded: Option<Arc<str>>,
    python_storage: bool,
}

impl Permit {
    fn new(permit: tripswitch::Permit, python_storage: bool) -> Permit {
        Permit {
            python_storage,
            trial: permit.is_trial(),
            degraded: permit.degraded().map(Arc::from),
            permit: Mutex::new(Some(permit)),
        }
    }

    /// Takes the permit out, once.
    fn take(&self) -> PyResult<tripswitch::Permit> {
        self.permit
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("this permit was already reported"))
    }

    fn report(&self, py: Python<'_>, outcome: tripswitch::Outcome, quiet: bool) -> PyResult<bool> {
        let permit = self.take()?;
        if quiet {
            Ok(run(py, self.python_storage, || {
                permit.report_quietly(outcome)
            }))
        } else {
            run(py, self.python_storage, || permit.report(outcome)).map_err(to_py)
        }
    }
}

#[pymethods]
impl Permit {
    /// Whether this is a half-open trial.
    #[getter]
    fn is_trial(&self) -> bool {
        self.trial
    }

    /// Why the call was admitted though the storage failed (none: it answered).
    #[getter]
    fn degraded(&self) -> Option<&str> {
        self.degraded.as_deref()
    }

    /// Records a success; returns whether it opened the circuit (a slow call
    /// can). `quiet`: an error goes to the listeners, not the caller.
    #[pyo3(signature = (quiet = false))]
    fn success(&self, py: Python<'_>, quiet: bool) -> PyResult<bool> {
        self.report(py, tripswitch::Outcome::Success, quiet)
    }

    /// Records a failure; returns whether it opened the circuit.
    /// `quiet`: an error goes to the listeners, not the caller.
    #[pyo3(signature = (quiet = false))]
    fn failure(&self, py: Python<'_>, quiet: bool) -> PyResult<bool> {
        self.report(py, tripswitch::Outcome::Failure, quiet)
    }

    /// Records nothing and frees a trial slot.
    /// `quiet`: an error goes to the listeners, not the caller.
    #[pyo3(signature = (quiet = false))]
    fn ignore(&self, py: Python<'_>, quiet: bool) -> PyResult<()> {
        self.report(py, tripswitch::Outcome::Ignored, quiet)
            .map(drop)
    }
}
