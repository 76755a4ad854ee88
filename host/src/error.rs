//! What can go wrong: a rejected call, a failed call, a failing breaker.

use std::fmt;
use std::time::Duration;

use crate::bindings::wit;
use crate::storage::StorageError;
use crate::types::State;

/// Why the breaker did not let a call run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejected {
    /// The circuit is open; a trial is admitted after `retry_after`.
    Open {
        /// Time until a trial call is admitted.
        retry_after: Duration,
    },
    /// Half-open with every trial slot taken.
    HalfOpenFull {
        /// Time until the oldest trial's slot is forfeited.
        retry_after: Duration,
    },
    /// An operator forced the circuit open.
    ForcedOpen,
    /// The storage failed and the fallback state rejects, or other writers
    /// won every try for a trial slot.
    StorageUnavailable {
        /// What the storage said.
        message: String,
        /// The state that refused: the fallback state, or the stored state
        /// when the storage works but was contended.
        state: State,
    },
}

impl Rejected {
    /// Every kind's name, as the contract spells the rejections, in the order of [`kind_index`](Self::kind_index).
    pub const KINDS: [&'static str; 4] = [
        "open",
        "half-open-full",
        "forced-open",
        "storage-unavailable",
    ];

    /// The kind's place in [`KINDS`](Self::KINDS).
    pub fn kind_index(&self) -> usize {
        match self {
            Rejected::Open { .. } => 0,
            Rejected::HalfOpenFull { .. } => 1,
            Rejected::ForcedOpen => 2,
            Rejected::StorageUnavailable { .. } => 3,
        }
    }

    /// The kind's name (`open`, `half-open-full`, `forced-open`, `storage-unavailable`).
    pub fn kind(&self) -> &'static str {
        Self::KINDS[self.kind_index()]
    }

    /// How long to wait before a call can be admitted, when that is known.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Rejected::Open { retry_after } | Rejected::HalfOpenFull { retry_after } => {
                Some(*retry_after)
            }
            Rejected::ForcedOpen | Rejected::StorageUnavailable { .. } => None,
        }
    }

    /// The state that rejected the call (the fallback state when the
    /// storage failed), as the component said.
    pub fn state(&self) -> State {
        match self {
            Rejected::Open { .. } => State::Open,
            Rejected::HalfOpenFull { .. } => State::HalfOpen,
            Rejected::ForcedOpen => State::ForcedOpen,
            Rejected::StorageUnavailable { state, .. } => *state,
        }
    }
}

impl From<wit::Refusal> for Rejected {
    fn from(refusal: wit::Refusal) -> Self {
        match refusal.rejection {
            wit::Rejection::Open(ms) => Rejected::Open {
                retry_after: Duration::from_millis(ms),
            },
            wit::Rejection::HalfOpenFull(ms) => Rejected::HalfOpenFull {
                retry_after: Duration::from_millis(ms),
            },
            wit::Rejection::ForcedOpen => Rejected::ForcedOpen,
            wit::Rejection::StorageUnavailable(message) => Rejected::StorageUnavailable {
                message,
                state: refusal.state.into(),
            },
        }
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejected::Open { retry_after } => {
                write!(
                    f,
                    "circuit open; retry after {} ms",
                    retry_after.as_millis()
                )
            }
            Rejected::HalfOpenFull { retry_after } => write!(
                f,
                "circuit half-open and every trial slot is taken; retry after {} ms",
                retry_after.as_millis()
            ),
            Rejected::ForcedOpen => f.write_str("circuit forced open by an operator"),
            Rejected::StorageUnavailable { message, .. } => {
                write!(
                    f,
                    "storage unavailable and the fallback state rejects: {message}"
                )
            }
        }
    }
}

impl std::error::Error for Rejected {}

/// A breaker's own failure, or its refusal of a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The breaker rejected the call.
    Rejected(Rejected),
    /// The configuration was refused: the field (as the WIT names it) and why.
    InvalidConfig {
        /// The field, e.g. `fail-max`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The storage failed.
    Storage {
        /// What failed, as the component tells it (it names the breaker).
        message: String,
        /// The storage's own error, when this process's storage raised it.
        source: Option<StorageError>,
    },
    /// The stored record cannot be read (an operator action overwrites it).
    Corrupt(String),
    /// Other writers won every compare-and-swap try.
    Contended(String),
    /// The component could not be loaded, trapped, or ran away.
    Component(String),
}

impl Error {
    /// The component's breaker error, with the storage's own error if one was raised.
    pub(crate) fn from_breaker(error: wit::BreakerError, source: Option<StorageError>) -> Self {
        match error {
            wit::BreakerError::Storage(message) => Error::Storage { message, source },
            wit::BreakerError::Corrupt(message) => Error::Corrupt(message),
            wit::BreakerError::Contended(message) => Error::Contended(message),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Rejected(rejected) => rejected.fmt(f),
            Error::InvalidConfig { field, reason } => write!(f, "invalid {field}: {reason}"),
            Error::Storage { message, .. } => write!(f, "storage: {message}"),
            Error::Corrupt(message) => write!(f, "corrupt record: {message}"),
            Error::Contended(message) => write!(f, "contended: {message}"),
            Error::Component(message) => write!(f, "breaker component: {message}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Rejected(rejected) => Some(rejected),
            Error::Storage {
                source: Some(source),
                ..
            } => Some(source),
            _ => None,
        }
    }
}

/// Why a guarded call did not return its value.
#[derive(Debug)]
pub enum CallError<E> {
    /// The call did not run: the breaker rejected it.
    Rejected(Rejected),
    /// The call ran and returned this error.
    Failed {
        /// The call's own error.
        error: E,
        /// Whether this failure opened the circuit.
        tripped: bool,
    },
    /// The call did not run: the breaker itself failed.
    Breaker(Error),
}

impl<E> CallError<E> {
    /// The call's own error, if it ran.
    pub fn into_inner(self) -> Option<E> {
        match self {
            CallError::Failed { error, .. } => Some(error),
            _ => None,
        }
    }

    /// Whether the breaker rejected the call.
    pub fn is_rejected(&self) -> bool {
        matches!(self, CallError::Rejected(_))
    }

    /// How long to wait before retrying, for a rejection that knows.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CallError::Rejected(rejected) => rejected.retry_after(),
            _ => None,
        }
    }
}

impl<E> From<Error> for CallError<E> {
    fn from(error: Error) -> Self {
        match error {
            Error::Rejected(rejected) => CallError::Rejected(rejected),
            other => CallError::Breaker(other),
        }
    }
}

impl<E: fmt::Display> fmt::Display for CallError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Rejected(rejected) => rejected.fmt(f),
            CallError::Failed {
                error,
                tripped: true,
            } => {
                write!(f, "{error} (this failure opened the circuit)")
            }
            CallError::Failed { error, .. } => error.fmt(f),
            CallError::Breaker(error) => error.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for CallError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CallError::Rejected(rejected) => Some(rejected),
            CallError::Failed { error, .. } => Some(error),
            CallError::Breaker(error) => Some(error),
        }
    }
}
