//! The host's listener hooks, carried to Python callables: state changes
//! (told once, by the host), notices, and errors no caller could be told.

use pyo3::prelude::*;

use crate::values::StateChange;

/// Calls `on_change(change)`, `on_notice((kind, message))` and
/// `on_error(exception)` with the GIL; an exception they raise goes to
/// `sys.unraisablehook`.
pub struct Bridge {
    pub on_change: Option<Py<PyAny>>,
    pub on_notice: Option<Py<PyAny>>,
    pub on_error: Option<Py<PyAny>>,
}

impl Bridge {
    fn call(callback: &Option<Py<PyAny>>, make: impl FnOnce(Python<'_>) -> PyResult<Py<PyAny>>) {
        let Some(callback) = callback else { return };
        // During interpreter shutdown there is no one left to tell.
        Python::try_attach(|py| {
            let callback = callback.bind(py);
            if let Err(error) = make(py).and_then(|arg| callback.call1((arg,))) {
                error.write_unraisable(py, Some(callback));
            }
        });
    }
}

impl tripswitch::Listener for Bridge {
    fn state_change(&self, _breaker: &str, change: &tripswitch::StateChange) {
        Bridge::call(&self.on_change, |py| {
            Ok(Py::new(py, StateChange::from(change))?.into_any())
        });
    }

    fn notice(&self, _breaker: &str, notice: &tripswitch::Notice) {
        Bridge::call(&self.on_notice, |py| {
            Ok((notice.kind.as_str(), notice.message.as_str())
                .into_pyobject(py)?
                .into_any()
                .unbind())
        });
    }

    fn error(&self, _breaker: &str, error: &tripswitch::Error) {
        Bridge::call(&self.on_error, |py| {
            Ok(crate::errors::to_py(error.clone())
                .into_value(py)
                .into_any())
        });
    }
}
