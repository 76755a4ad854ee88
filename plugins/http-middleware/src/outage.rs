//! Storage outages as log lines: one when an outage starts (with the
//! fallback the component applied) and one when it ends, whatever the
//! fallback. What an outage is, the component says: a `degraded` admission
//! or a `storage-unavailable` refusal.

use std::cell::Cell;

use crate::bindings::tripswitch::breaker::types::{
    Admission, BreakerError, Refusal, Rejection, State,
};

/// Whether this instance is in a storage outage.
#[derive(Default)]
pub struct Outage(Cell<bool>);

impl Outage {
    /// Notes acquire's answer; logs an outage's start and end.
    pub fn note(&self, breaker: &str, answer: &Result<Admission, Refusal>) {
        let failing = match answer {
            Ok(Admission {
                degraded: Some(message),
                ..
            }) => Some((message, "the fallback admits calls".to_owned())),
            Err(Refusal {
                rejection: Rejection::StorageUnavailable(message),
                state,
                ..
            }) => Some((
                message,
                format!("the fallback state {} refuses calls", name(*state)),
            )),
            _ => None,
        };
        match failing {
            Some((message, fallback)) if !self.0.replace(true) => {
                eprintln!(
                    "tripswitch: breaker {breaker}: storage outage began ({fallback}): {message}"
                );
            }
            None if self.0.replace(false) => {
                eprintln!("tripswitch: breaker {breaker}: storage outage ended");
            }
            _ => {}
        }
    }

    /// Logs an outcome that could not be recorded, unless an outage logged
    /// already says why.
    pub fn unrecorded(&self, breaker: &str, error: &BreakerError) {
        if matches!(error, BreakerError::Storage(_)) && self.0.get() {
            return;
        }
        let (BreakerError::Storage(message)
        | BreakerError::Corrupt(message)
        | BreakerError::Contended(message)) = error;
        eprintln!("tripswitch: breaker {breaker}: could not record an outcome: {message}");
    }
}

/// A state's name as the WIT spells it.
fn name(state: State) -> &'static str {
    match state {
        State::Closed => "closed",
        State::Open => "open",
        State::HalfOpen => "half-open",
        State::ForcedOpen => "forced-open",
        State::Disabled => "disabled",
    }
}
