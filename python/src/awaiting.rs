//! Breaker operations that a Python event loop drives, for a storage whose
//! methods are coroutines: the host's async operation runs until it needs
//! the storage; the coroutine the storage's method returned goes to Python,
//! which awaits it on its own loop and gives the result back; no thread.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use tripswitch::StorageError;

/// What an operation's output becomes in Python, made with the GIL.
pub type Convert = Box<dyn FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send>;

/// An operation's future, boxed.
pub type Operation = Pin<Box<dyn Future<Output = Convert> + Send>>;

thread_local! {
    /// The exchange of the operation this thread is stepping.
    static CURRENT: RefCell<Option<Arc<Exchange>>> = const { RefCell::new(None) };
}

/// Where a storage step and Python meet: the awaitable the step asks Python
/// to await, and what Python found.
#[derive(Default)]
pub struct Exchange {
    wanted: Mutex<Option<Py<PyAny>>>,
    answer: Mutex<Option<Result<Py<PyAny>, String>>>,
}

/// A breaker operation in progress, stepped by the package's event-loop
/// driver: `step()` runs it until it ends or needs an awaitable awaited.
#[pyclass(frozen, module = "tripswitch._native")]
pub struct Pending {
    operation: Mutex<Option<Operation>>,
    exchange: Arc<Exchange>,
}

impl Pending {
    /// An operation to step.
    pub fn new(operation: Operation) -> Pending {
        Pending {
            operation: Mutex::new(Some(operation)),
            exchange: Arc::default(),
        }
    }
}

#[pymethods]
impl Pending {
    /// Runs the operation on: `(True, result)` when it ended, or `(False,
    /// awaitable)` when the storage's awaitable must be awaited and its
    /// result given back (`give`, or `fail` with the exception's message).
    fn step(&self, py: Python<'_>) -> PyResult<(bool, Py<PyAny>)> {
        let mut slot = self.operation.lock().unwrap_or_else(|e| e.into_inner());
        let Some(operation) = slot.as_mut() else {
            return Err(PyRuntimeError::new_err("this breaker operation has ended"));
        };
        // Restored after, so that a step taken inside another (a listener's
        // call) leaves the outer one's exchange in place.
        let outer = CURRENT.with(|current| current.replace(Some(self.exchange.clone())));
        let polled = operation
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()));
        CURRENT.with(|current| current.replace(outer));
        match polled {
            Poll::Ready(convert) => {
                *slot = None;
                drop(slot);
                Ok((true, convert(py)?))
            }
            Poll::Pending => {
                let wanted = self
                    .exchange
                    .wanted
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
                let wanted = wanted.ok_or_else(|| {
                    PyRuntimeError::new_err(
                        "the breaker waited without asking its storage for anything",
                    )
                })?;
                Ok((false, wanted))
            }
        }
    }

    /// What the awaited storage step returned.
    fn give(&self, value: Py<PyAny>) {
        *self
            .exchange
            .answer
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Ok(value));
    }

    /// The storage step raised: its message.
    fn fail(&self, message: String) {
        *self
            .exchange
            .answer
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Err(message));
    }
}

/// Calls a storage method (`call`, with the GIL) and waits for what it
/// returned: at once for a plain value, through the stepping Python driver
/// for an awaitable. Outside a driver's step it fails (a breaker on such a
/// storage is reached only through its async methods).
pub fn handoff<'a>(
    what: &'a str,
    call: impl FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send + 'a,
) -> impl Future<Output = Result<Py<PyAny>, StorageError>> + Send + 'a {
    Handoff {
        what,
        call: Some(Box::new(call)),
        exchange: None,
    }
}

/// The future of [`handoff`].
struct Handoff<'a> {
    what: &'a str,
    #[allow(clippy::type_complexity)]
    call: Option<Box<dyn FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send + 'a>>,
    exchange: Option<Arc<Exchange>>,
}

impl Future for Handoff<'_> {
    type Output = Result<Py<PyAny>, StorageError>;

    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(exchange) = &self.exchange {
            let answer = exchange
                .answer
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            return match answer {
                Some(Ok(value)) => Poll::Ready(Ok(value)),
                Some(Err(message)) => {
                    Poll::Ready(Err(StorageError(format!("{}: {message}", self.what))))
                }
                // Polled by its own driver: the loop has not answered yet.
                None if CURRENT.with(|current| {
                    current
                        .borrow()
                        .as_ref()
                        .is_some_and(|c| Arc::ptr_eq(c, exchange))
                }) =>
                {
                    Poll::Pending
                }
                // Polled elsewhere (the operation was dropped and finishes on
                // a background thread): nobody will answer.
                None => Poll::Ready(Err(StorageError(format!(
                    "{}: the caller stopped awaiting it (cancelled)",
                    self.what
                )))),
            };
        }
        let Some(call) = self.call.take() else {
            return Poll::Ready(Err(StorageError(format!(
                "{}: polled after it ended",
                self.what
            ))));
        };
        let Some(exchange) = CURRENT.with(|current| current.borrow().clone()) else {
            return Poll::Ready(Err(StorageError(format!(
                "{} is a coroutine, which only the breaker's async calls (call_async) can await",
                self.what
            ))));
        };
        let called = Python::try_attach(|py| {
            let value = call(py)?;
            let awaitable = value.bind(py).hasattr("__await__")?;
            Ok::<_, PyErr>((value, awaitable))
        });
        match called {
            None => Poll::Ready(Err(StorageError(format!(
                "{}: the Python interpreter is shutting down",
                self.what
            )))),
            Some(Err(error)) => Poll::Ready(Err(StorageError(format!(
                "{}: {}",
                self.what,
                Python::attach(|py| crate::storage::describe(py, &error))
            )))),
            Some(Ok((value, false))) => Poll::Ready(Ok(value)),
            Some(Ok((value, true))) => {
                *exchange.wanted.lock().unwrap_or_else(|e| e.into_inner()) = Some(value);
                self.exchange = Some(exchange);
                Poll::Pending
            }
        }
    }
}
