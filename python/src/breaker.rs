//! The breaker and its permits, as the Python package drives them. The GIL
//! is released while the host and the component work. A breaker whose
//! storage's methods are coroutines is reached through its `*_async`
//! methods, which hand back a `Pending` operation for the event loop.

use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::awaiting::{Convert, Pending};
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
    /// Whether the storage's methods are coroutines (awaited by the event loop).
    awaits: bool,
}

impl Breaker {
    fn run<T: Send>(&self, py: Python<'_>, work: impl FnOnce() -> T + Send) -> T {
        run(py, self.python_storage, work)
    }

    /// Refuses a blocking call on a breaker whose storage must be awaited.
    fn blocking(&self, method: &str) -> PyResult<()> {
        blocking(self.awaits, self.inner.name(), method)
    }
}

/// Refuses a blocking call when the storage must be awaited.
fn blocking(awaits: bool, name: &str, method: &str) -> PyResult<()> {
    if awaits {
        return Err(PyTypeError::new_err(format!(
            "breaker {name:?}: its storage's methods are coroutines: {method}() cannot wait on \
             them; use the async methods (call_async)"
        )));
    }
    Ok(())
}

/// An acquire's answer as Python sees it: a `Permit` or a `Refusal`.
fn admitted(
    py: Python<'_>,
    answer: Result<tripswitch::Permit, tripswitch::Error>,
    python_storage: bool,
    awaits: bool,
) -> PyResult<Py<PyAny>> {
    match answer {
        Ok(permit) => Ok(Py::new(py, Permit::new(permit, python_storage, awaits))?.into_any()),
        Err(tripswitch::Error::Rejected(rejected)) => {
            Ok(Py::new(py, Refusal::from(rejected))?.into_any())
        }
        Err(error) => Err(to_py(error)),
    }
}

/// An operation for the event loop, whose output `convert` makes Python's.
fn pending<T: Send + 'static>(
    operation: impl std::future::Future<Output = T> + Send + 'static,
    convert: impl FnOnce(Python<'_>, T) -> PyResult<Py<PyAny>> + Send + 'static,
) -> Pending {
    Pending::new(Box::pin(async move {
        let output = operation.await;
        Box::new(move |py: Python<'_>| convert(py, output)) as Convert
    }))
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
    #[pyo3(signature = (name, config, storage = None, clock = None, on_change = None, on_error = None, on_notice = None))]
    // Python's keyword arguments, one each.
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        name: String,
        config: &Bound<'_, PyDict>,
        storage: Option<&Bound<'_, PyAny>>,
        clock: Option<PyRef<'_, ManualClock>>,
        on_change: Option<Py<PyAny>>,
        on_error: Option<Py<PyAny>>,
        on_notice: Option<Py<PyAny>>,
    ) -> PyResult<Breaker> {
        let config: tripswitch::Config = pythonize::depythonize(config.as_any())
            .map_err(|e| PyValueError::new_err(format!("breaker config: {e}")))?;
        let mut config = config;
        let (mut may_block, mut python_storage, mut awaits) = (false, false, false);
        let storage = storage.map(storage::from_py).transpose()?;
        if let Some(storage::Given::Python(python)) = &storage
            && python.awaits
        {
            // Held outcomes are merged by a background thread, which cannot
            // await the loop's coroutines: the contract's rule for such a
            // host is to merge every report at once.
            match config.flush_interval_ms {
                None | Some(0) => config.flush_interval_ms = Some(0),
                Some(_) => {
                    return Err(PyValueError::new_err(
                        "flush_interval: a storage whose methods are coroutines is reached only \
                         from call_async, so held outcomes could not be merged in the background; \
                         leave it unset or pass 0",
                    ));
                }
            }
        }
        let mut builder = tripswitch::CircuitBreaker::builder(name).config(config);
        match storage {
            None => {}
            Some(storage::Given::Rust(rust)) => {
                may_block = rust.may_block();
                builder = builder.storage(rust);
            }
            Some(storage::Given::Python(python)) if python.awaits => {
                (python_storage, awaits) = (true, true);
                builder = builder.async_storage(python);
            }
            Some(storage::Given::Python(python)) => {
                (may_block, python_storage) = (true, true);
                builder = builder.storage(python);
            }
        }
        if let Some(clock) = clock {
            builder = builder.clock(clock.0.clone());
        }
        for callback in [&on_change, &on_error, &on_notice].into_iter().flatten() {
            if !callback.bind(py).is_callable() {
                return Err(PyTypeError::new_err("listener callbacks must be callable"));
            }
        }
        builder = builder.listener(Bridge {
            on_change,
            on_notice,
            on_error,
        });
        let inner = py.detach(|| builder.build()).map_err(to_py)?;
        Ok(Breaker {
            inner,
            may_block,
            python_storage,
            awaits,
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

    /// Whether the storage's methods are coroutines: the breaker is reached
    /// through its `*_async` methods, stepped on the event loop.
    #[getter]
    fn awaits(&self) -> bool {
        self.awaits
    }

    /// Asks to make a call: a `Permit`, or a `Refusal` when the call may not run.
    fn acquire(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.blocking("acquire")?;
        let answer = self.run(py, || self.inner.acquire());
        admitted(py, answer, self.python_storage, false)
    }

    /// `acquire` as an operation the event loop steps (a `Pending`).
    fn acquire_async(&self) -> Pending {
        let breaker = self.inner.clone();
        let (python_storage, awaits) = (self.python_storage, self.awaits);
        pending(
            async move { breaker.acquire_async().await },
            move |py, answer| admitted(py, answer, python_storage, awaits),
        )
    }

    /// `snapshot` as an operation the event loop steps.
    fn snapshot_async(&self) -> Pending {
        let breaker = self.inner.clone();
        pending(
            async move { breaker.snapshot_async().await },
            |py, answer| Ok(Py::new(py, Snapshot::from(answer.map_err(to_py)?))?.into_any()),
        )
    }

    /// `operate` as an operation the event loop steps.
    fn operate_async(&self, action: &str) -> PyResult<Pending> {
        let action: tripswitch::Action = action.parse().map_err(PyValueError::new_err)?;
        let breaker = self.inner.clone();
        Ok(pending(
            async move { breaker.operate_async(action).await },
            |py, answer| {
                answer.map_err(to_py)?;
                Ok(py.None())
            },
        ))
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
        self.blocking("snapshot")?;
        self.run(py, || self.inner.snapshot())
            .map(Snapshot::from)
            .map_err(to_py)
    }

    /// Operator: applies `action` (`open`, `close`, `half-open`,
    /// `force-open`, `disable`) now.
    fn operate(&self, py: Python<'_>, action: &str) -> PyResult<()> {
        let action: tripswitch::Action = action.parse().map_err(PyValueError::new_err)?;
        self.blocking("operate")?;
        self.run(py, || self.inner.operate(action)).map_err(to_py)
    }

    /// Merges the window outcomes held in memory into the record now.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        // With a storage to await, nothing is held (every report merges at once).
        if self.awaits {
            return Ok(());
        }
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
    /// Whether the storage must be awaited (reports go through `report_async`).
    awaits: bool,
}

impl Permit {
    fn new(permit: tripswitch::Permit, python_storage: bool, awaits: bool) -> Permit {
        Permit {
            python_storage,
            awaits,
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

    /// Records `outcome` as an operation the event loop steps; it ends with
    /// whether the report opened the circuit.
    fn report_async(&self, outcome: tripswitch::Outcome, quiet: bool) -> PyResult<Pending> {
        let permit = self.take()?;
        let tripped = |py: Python<'_>, tripped: bool| {
            Ok(pyo3::types::PyBool::new(py, tripped)
                .to_owned()
                .into_any()
                .unbind())
        };
        Ok(if quiet {
            pending(permit.report_quietly_async(outcome), tripped)
        } else {
            pending(permit.report_async(outcome), move |py, answer| {
                tripped(py, answer.map_err(to_py)?)
            })
        })
    }

    fn report(&self, py: Python<'_>, outcome: tripswitch::Outcome, quiet: bool) -> PyResult<bool> {
        blocking(self.awaits, "this permit's breaker", "report")?;
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

    /// Records a success, as an operation the event loop steps; it ends
    /// with whether the report opened the circuit. `quiet`: an error goes
    /// to the listeners, not the caller.
    #[pyo3(signature = (quiet = false))]
    fn success_async(&self, quiet: bool) -> PyResult<Pending> {
        self.report_async(tripswitch::Outcome::Success, quiet)
    }

    /// Records a failure, as an operation the event loop steps.
    #[pyo3(signature = (quiet = false))]
    fn failure_async(&self, quiet: bool) -> PyResult<Pending> {
        self.report_async(tripswitch::Outcome::Failure, quiet)
    }

    /// Records nothing and frees a trial slot, as an operation the event loop steps.
    #[pyo3(signature = (quiet = false))]
    fn ignore_async(&self, quiet: bool) -> PyResult<Pending> {
        self.report_async(tripswitch::Outcome::Ignored, quiet)
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
