//! The host's errors as Python exceptions.

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;

create_exception!(
    tripswitch,
    StorageError,
    PyException,
    "The breaker's storage failed (and no fallback state could answer)."
);
create_exception!(
    tripswitch,
    BreakerError,
    PyException,
    "The breaker itself failed: a corrupt record, contention, or the component."
);
create_exception!(
    tripswitch,
    ConfigError,
    PyValueError,
    "The component refused a knob; args are (field, reason), the field as the contract names it."
);

/// Adds the exception classes to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("StorageError", py.get_type::<StorageError>())?;
    m.add("BreakerError", py.get_type::<BreakerError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    Ok(())
}

/// The Python exception for a host error (a rejection is no error here:
/// the breaker hands it back as a refusal).
pub fn to_py(error: tripswitch::Error) -> PyErr {
    match error {
        tripswitch::Error::InvalidConfig { field, reason } => ConfigError::new_err((field, reason)),
        tripswitch::Error::Storage { .. } => StorageError::new_err(error.to_string()),
        other => BreakerError::new_err(other.to_string()),
    }
}
