//! Storages: memory in Rust, any Python object with `load` and
//! `compare_and_swap` (called with the GIL; coroutines too, awaited by the
//! package's event-loop driver), and what a Python Redis storage needs from
//! the Rust one (its key and its script, the one copy).

use std::sync::Arc;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use tripswitch::{AsyncStorage, Storage, StorageError, StorageFuture, SwapResult};

use crate::awaiting::handoff;

/// Memory in this process, kept in Rust; breakers given one share it.
#[pyclass(frozen, module = "tripswitch._native")]
pub struct MemoryStorage(pub tripswitch::MemoryStorage);

#[pymethods]
impl MemoryStorage {
    /// An empty storage.
    #[new]
    fn new() -> Self {
        MemoryStorage(tripswitch::MemoryStorage::new())
    }

    /// The keys stored, sorted.
    fn keys(&self) -> Vec<String> {
        self.0.keys()
    }
}

/// Redis reached from Rust (standalone or cluster), with no GIL while it
/// works; the same keys and script as `CircuitRedisStorage`.
#[pyclass(frozen, module = "tripswitch._native")]
pub struct RedisStorage(pub tripswitch::RedisStorage);

#[pymethods]
impl RedisStorage {
    /// A storage on `nodes` (one URL; several, or `cluster`, for a cluster;
    /// sentinels when `master_name` is given), over TLS with these files.
    #[new]
    #[pyo3(signature = (nodes, namespace, fallback_state, cluster, connect_timeout_ms, response_timeout_ms, master_name = None, tls_ca = None, tls_cert = None, tls_key = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        nodes: Vec<String>,
        namespace: String,
        fallback_state: Option<String>,
        cluster: bool,
        connect_timeout_ms: u64,
        response_timeout_ms: u64,
        master_name: Option<String>,
        tls_ca: Option<std::path::PathBuf>,
        tls_cert: Option<std::path::PathBuf>,
        tls_key: Option<std::path::PathBuf>,
    ) -> PyResult<Self> {
        let mut builder = if let Some(master) = master_name {
            tripswitch::RedisStorage::sentinel_builder(master, nodes)
        } else if cluster {
            tripswitch::RedisStorage::cluster_builder(nodes)
        } else {
            let [url] = <[String; 1]>::try_from(nodes).map_err(|nodes| {
                pyo3::exceptions::PyValueError::new_err(format!(
                    "url: {} addresses given for a standalone Redis; pass cluster=True",
                    nodes.len()
                ))
            })?;
            tripswitch::RedisStorage::builder(url)
        };
        if let Some(ca) = tls_ca {
            builder = builder.tls_ca(ca);
        }
        match (tls_cert, tls_key) {
            (Some(cert), Some(key)) => builder = builder.tls_client_cert(cert, key),
            (None, None) => {}
            _ => {
                return Err(pyo3::exceptions::PyValueError::new_err(
                    "tls_cert: a client certificate needs tls_key, and a key tls_cert",
                ));
            }
        }
        builder = builder
            .namespace(namespace)
            .connect_timeout(std::time::Duration::from_millis(connect_timeout_ms))
            .response_timeout(std::time::Duration::from_millis(response_timeout_ms));
        if let Some(state) = fallback_state {
            let state = state
                .parse()
                .map_err(|e: String| pyo3::exceptions::PyValueError::new_err(e))?;
            builder = builder.fallback_circuit_state(state);
        }
        builder
            .build()
            .map(RedisStorage)
            .map_err(|e| pyo3::exceptions::PyValueError::new_err(format!("url: {e}")))
    }

    /// The Redis key that holds the breaker named `name`.
    fn key(&self, name: &str) -> String {
        self.0.key(name)
    }

    /// The names of the breakers stored in this namespace, sorted.
    fn breakers(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        py.detach(|| self.0.breakers())
            .map_err(|e| crate::errors::StorageError::new_err(e.to_string()))
    }
}

/// A stored record and its version.
#[pyclass(frozen, get_all, module = "tripswitch._native")]
pub struct Entry {
    /// Grows with every write to the key and never repeats.
    version: u64,
    /// The record, as the component encoded it.
    data: Py<PyBytes>,
}

#[pymethods]
impl Entry {
    /// An entry of `version` holding `data`.
    #[new]
    fn new(version: u64, data: Py<PyBytes>) -> Self {
        Entry { version, data }
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "Entry(version={}, data=<{} bytes>)",
            self.version,
            self.data.bind(py).as_bytes().len()
        )
    }
}

/// A compare-and-swap that wrote, with the key's new version.
#[pyclass(frozen, get_all, module = "tripswitch._native")]
pub struct Written {
    /// The version the write made.
    version: u64,
}

#[pymethods]
impl Written {
    /// The answer of a write that made `version`.
    #[new]
    fn new(version: u64) -> Self {
        Written { version }
    }

    fn __repr__(&self) -> String {
        format!("Written({})", self.version)
    }
}

/// A compare-and-swap that did not write, with the key's current entry.
#[pyclass(frozen, get_all, module = "tripswitch._native")]
pub struct Conflict {
    /// What the key holds now (none: it is absent).
    current: Option<Py<Entry>>,
}

#[pymethods]
impl Conflict {
    /// The answer of a write refused because the key holds `current`.
    #[new]
    #[pyo3(signature = (current = None))]
    fn new(current: Option<Py<Entry>>) -> Self {
        Conflict { current }
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        match &self.current {
            Some(entry) => format!("Conflict({})", entry.borrow(py).__repr__(py)),
            None => "Conflict(None)".to_string(),
        }
    }
}

/// A storage written in Python: its methods run with the GIL held.
pub struct PyStorage {
    object: Py<PyAny>,
    /// The class name, for messages.
    class: String,
    fallback: Option<tripswitch::State>,
    /// Whether it has `peek_version(key)`: it can tell a key's version for free.
    peeks: bool,
    /// Whether `load` is a coroutine function: the storage is awaited.
    pub awaits: bool,
}

impl PyStorage {
    /// Wraps `object`, which must have callable `load` and `compare_and_swap`.
    pub fn new(object: &Bound<'_, PyAny>) -> PyResult<PyStorage> {
        let class = object.get_type().name()?.to_string();
        for method in ["load", "compare_and_swap"] {
            if !object.getattr(method).is_ok_and(|m| m.is_callable()) {
                return Err(PyTypeError::new_err(format!(
                    "storage {class} has no method {method}(): a tripswitch storage needs \
                     load(key) and compare_and_swap(key, expected, data)"
                )));
            }
        }
        let fallback = match object.getattr("fallback_state") {
            Ok(value) if !value.is_none() => {
                let text: String = value.extract().map_err(|_| {
                    PyTypeError::new_err(format!("{class}.fallback_state must be a state name"))
                })?;
                Some(text.parse().map_err(|e: String| {
                    pyo3::exceptions::PyValueError::new_err(format!("{class}.fallback_state: {e}"))
                })?)
            }
            _ => None,
        };
        let peeks = object
            .getattr("peek_version")
            .is_ok_and(|m| m.is_callable());
        let awaits = object
            .py()
            .import("inspect")?
            .call_method1("iscoroutinefunction", (object.getattr("load")?,))?
            .is_truthy()?;
        Ok(PyStorage {
            object: object.clone().unbind(),
            class,
            fallback,
            peeks,
            awaits,
        })
    }

    /// Runs `f` with the GIL; an exception becomes the storage's error.
    fn with<T>(
        &self,
        method: &str,
        f: impl FnOnce(&Bound<'_, PyAny>) -> PyResult<T>,
    ) -> Result<T, StorageError> {
        Python::try_attach(|py| {
            f(self.object.bind(py)).map_err(|error| {
                StorageError(format!("{}.{method}: {}", self.class, describe(py, &error)))
            })
        })
        .unwrap_or_else(|| {
            Err(StorageError(format!(
                "{}.{method}: the Python interpreter is shutting down",
                self.class
            )))
        })
    }

    fn entry(&self, method: &str, value: &Bound<'_, PyAny>) -> PyResult<Option<tripswitch::Entry>> {
        if value.is_none() {
            return Ok(None);
        }
        let entry = value.cast::<Entry>().map_err(|_| {
            PyTypeError::new_err(format!(
                "{}.{method} returned {}, not a tripswitch.Entry or None",
                self.class,
                type_name(value)
            ))
        })?;
        let entry = entry.get();
        Ok(Some(tripswitch::Entry {
            version: entry.version,
            data: entry.data.bind(value.py()).as_bytes().to_vec(),
        }))
    }
}

impl PyStorage {
    /// What a compare-and-swap returned, checked.
    fn swapped(&self, value: &Bound<'_, PyAny>) -> PyResult<SwapResult> {
        if let Ok(written) = value.cast::<Written>() {
            return Ok(SwapResult::Written(written.get().version));
        }
        if let Ok(conflict) = value.cast::<Conflict>() {
            let current = match &conflict.get().current {
                Some(entry) => self.entry("compare_and_swap", entry.bind(value.py()).as_any())?,
                None => None,
            };
            return Ok(SwapResult::Conflict(current));
        }
        Err(PyTypeError::new_err(format!(
            "{}.compare_and_swap returned {}, not tripswitch.Written or tripswitch.Conflict",
            self.class,
            type_name(value)
        )))
    }
}

/// A storage whose methods are coroutines, awaited on the caller's event
/// loop by the package's driver (see `awaiting`).
impl AsyncStorage for PyStorage {
    fn load<'a>(&'a self, key: &'a str) -> StorageFuture<'a, Option<tripswitch::Entry>> {
        Box::pin(async move {
            let what = format!("{}.load", self.class);
            let object = &self.object;
            let value = handoff(&what, |py| {
                Ok(object.bind(py).call_method1("load", (key,))?.unbind())
            })
            .await?;
            self.with("load", |object| self.entry("load", value.bind(object.py())))
        })
    }

    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        expected: Option<u64>,
        data: &'a [u8],
    ) -> StorageFuture<'a, SwapResult> {
        Box::pin(async move {
            let what = format!("{}.compare_and_swap", self.class);
            let object = &self.object;
            let value = handoff(&what, |py| {
                let data = PyBytes::new(py, data);
                Ok(object
                    .bind(py)
                    .call_method1("compare_and_swap", (key, expected, data))?
                    .unbind())
            })
            .await?;
            self.with("compare_and_swap", |object| {
                self.swapped(value.bind(object.py()))
            })
        })
    }

    fn peek_version(&self, key: &str) -> Option<Option<u64>> {
        Storage::peek_version(self, key)
    }

    fn fallback_state(&self) -> Option<tripswitch::State> {
        self.fallback
    }
}

fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// `Type: message` of a Python exception.
pub(crate) fn describe(py: Python<'_>, error: &PyErr) -> String {
    let kind = error
        .get_type(py)
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "Exception".into());
    format!("{kind}: {}", error.value(py))
}

impl Storage for PyStorage {
    fn load(&self, key: &str) -> Result<Option<tripswitch::Entry>, StorageError> {
        self.with("load", |object| {
            let value = object.call_method1("load", (key,))?;
            self.entry("load", &value)
        })
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<u64>,
        data: &[u8],
    ) -> Result<SwapResult, StorageError> {
        self.with("compare_and_swap", |object| {
            let py = object.py();
            let value =
                object.call_method1("compare_and_swap", (key, expected, PyBytes::new(py, data)))?;
            self.swapped(&value)
        })
    }

    fn peek_version(&self, key: &str) -> Option<Option<u64>> {
        if !self.peeks {
            return None;
        }
        // An answer that is not a version (or an exception) cannot tell.
        self.with("peek_version", |object| {
            object
                .call_method1("peek_version", (key,))?
                .extract::<Option<u64>>()
        })
        .ok()
    }

    fn fallback_state(&self) -> Option<tripswitch::State> {
        self.fallback
    }
}

/// The storage a Python storage argument stands for.
pub enum Given {
    /// Kept in Rust: works without the GIL.
    Rust(Arc<dyn Storage>),
    /// Written in Python: its methods run with the GIL.
    Python(PyStorage),
}

/// The storage a Python storage argument stands for.
pub fn from_py(object: &Bound<'_, PyAny>) -> PyResult<Given> {
    if let Ok(memory) = object.cast::<MemoryStorage>() {
        return Ok(Given::Rust(Arc::new(memory.get().0.clone())));
    }
    if let Ok(redis) = object.cast::<RedisStorage>() {
        return Ok(Given::Rust(Arc::new(redis.get().0.clone())));
    }
    Ok(Given::Python(PyStorage::new(object)?))
}

/// The Redis key of a breaker, as the Rust `RedisStorage` spells it.
#[pyfunction]
fn redis_key(namespace: &str, name: &str) -> String {
    tripswitch::redis_key(namespace, name)
}

/// Adds what a Redis storage written in Python shares with the Rust one.
pub fn register_redis(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add(
        "REDIS_COMPARE_AND_SWAP_SCRIPT",
        tripswitch::COMPARE_AND_SWAP_SCRIPT,
    )?;
    m.add_function(wrap_pyfunction!(redis_key, m)?)?;
    Ok(())
}
