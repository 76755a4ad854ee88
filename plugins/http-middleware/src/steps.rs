//! Runs the breaker's operations to their end over the storage this
//! component imports, and tells the state changes each one saw through the
//! events import: the breaker decides, this module only carries its steps.

use crate::bindings::tripswitch::breaker::breaker::{CircuitBreaker, Step};
use crate::bindings::tripswitch::breaker::types::{Answer, Found, Known, Request};
use crate::bindings::tripswitch::breaker::{events, storage};

/// Runs `request` on `breaker` (whose storage key is `name`) at `now_ms`.
pub fn run(breaker: &CircuitBreaker, name: &str, request: Request, now_ms: u64) -> Answer {
    let mut step = breaker.open(request, &Known::Nothing, now_ms);
    loop {
        let (operation, found) = match step {
            Step::Done(done) => {
                for change in &done.changes {
                    events::state_changed(change);
                }
                for notice in &done.notices {
                    events::noticed(name, notice);
                }
                return done.answer;
            }
            Step::Read(operation) => {
                let found = match storage::load(name) {
                    Ok(entry) => Found::Read(entry),
                    Err(message) => Found::Failed(message),
                };
                (operation, found)
            }
            Step::Write(write) => {
                let found = match storage::compare_and_swap(name, write.expected, &write.data) {
                    Ok(swapped) => Found::Swapped(swapped),
                    Err(message) => Found::Failed(message),
                };
                (write.operation, found)
            }
        };
        step = match breaker.resume(operation, &found, super::now_ms()) {
            Ok(step) => step,
            // This module answers each step as asked: the component would
            // only refuse a result for another step.
            Err(message) => unreachable!("the breaker refused a step's result: {message}"),
        };
    }
}
