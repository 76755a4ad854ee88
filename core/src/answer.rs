//! The values an operation on a breaker reads, writes and answers: a stored
//! entry, a compare-and-swap's result, a state change, and the answers of
//! acquire and report with their errors.

use crate::machine::{Permit, Reason, Rejection, State};

/// Writes tried against conflicting writers before a change gives up.
pub const MAX_ATTEMPTS: usize = 64;

/// A stored value and its version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// Grows with every write.
    pub version: u64,
    /// The encoded record.
    pub data: Vec<u8>,
}

/// What a compare-and-swap did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Swap {
    /// Written, with the new version.
    Written(u64),
    /// Not written; the current entry.
    Conflict(Option<Stored>),
}

/// A change of state, as one instance saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    /// The state this instance last knew.
    pub previous: State,
    /// The state now stored.
    pub current: State,
    /// When the change was made (the record's change time).
    pub at_ms: u64,
    /// The generation of the record holding the change.
    pub generation: u64,
    /// Why it changed.
    pub reason: Reason,
    /// Another instance wrote it.
    pub remote: bool,
}

/// Something an operation did that is no state change, for a host to log
/// and count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// What kind, for a metric's label.
    pub kind: NoticeKind,
    /// What happened, to log.
    pub message: String,
}

/// The kinds of notice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoticeKind {
    /// Another config's window shape replaced the stored one, which no
    /// instance configured with it wrote for a minute: the window
    /// restarted.
    WindowRestarted,
}

impl NoticeKind {
    /// The kind's name as the contract spells it (`window-restarted`).
    pub fn name(self) -> &'static str {
        match self {
            NoticeKind::WindowRestarted => "window-restarted",
        }
    }
}

/// How long an answer stays the component's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Holds {
    /// The stored version it was decided on (0: absent).
    pub version: u64,
    /// The first instant at which it no longer holds (none: no time bound).
    pub until_ms: Option<u64>,
}

/// An admitted call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admission {
    /// The permit.
    pub permit: Permit,
    /// How long this answer holds.
    pub holds: Option<Holds>,
    /// Whether reporting a success would change nothing while the stored
    /// version is still the one the permit was decided on.
    pub quiet_success: bool,
    /// The storage failed and the fallback admitted the call: its message.
    pub degraded: Option<String>,
}

/// Why a call was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denial {
    /// The breaker rejected the call.
    Rejected(Rejection),
    /// The storage failed and the fallback state rejects, or every try for
    /// a trial slot was lost.
    StorageUnavailable(String),
}

/// A refused call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Why.
    pub denial: Denial,
    /// The state that refused.
    pub state: State,
    /// How long this answer holds.
    pub holds: Option<Holds>,
}

/// What a report did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reported {
    /// The report opened the circuit.
    pub tripped: bool,
    /// The stored state after the report.
    pub state: State,
}

/// Why a breaker could not do what it was asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BreakerError {
    /// The storage failed.
    Storage(String),
    /// The stored record cannot be read.
    Corrupt(String),
    /// Other writers won every one of [`MAX_ATTEMPTS`] tries.
    Contended(String),
}

impl BreakerError {
    /// The error's message.
    pub fn message(&self) -> &str {
        match self {
            BreakerError::Storage(m) | BreakerError::Corrupt(m) | BreakerError::Contended(m) => m,
        }
    }
}
