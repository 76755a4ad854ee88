//! Telling listeners what the component said: each state change once (by
//! generation, however many instances saw it), each notice, and each
//! storage outage once.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::bindings::wit;
use crate::error::Error;
use crate::listener::Listener;
use crate::types::{Notice, StateChange};

/// What one breaker has told its listeners.
#[derive(Default)]
pub(crate) struct Teller {
    /// The generation of the last change told.
    told: Mutex<Option<u64>>,
    /// Whether an outage was told and has not ended.
    outage: AtomicBool,
}

impl Teller {
    /// Tells the changes a call announced, dropping each whose generation is
    /// not newer than the last one told, then its notices.
    pub fn changes(
        &self,
        name: &str,
        listeners: &[std::sync::Arc<dyn Listener>],
        announced: &[wit::StateChange],
        notices: &[wit::Notice],
    ) {
        for notice in notices.iter().map(Notice::from) {
            listeners.iter().for_each(|l| l.notice(name, &notice));
        }
        if announced.is_empty() {
            return;
        }
        let fresh: Vec<StateChange> = {
            let mut told = self.told.lock().unwrap_or_else(|e| e.into_inner());
            announced
                .iter()
                .filter(|change| {
                    let newer = told.is_none_or(|last| change.generation > last);
                    if newer {
                        *told = Some(change.generation);
                    }
                    newer
                })
                .map(StateChange::from)
                .collect()
        };
        for change in &fresh {
            for listener in listeners {
                listener.state_change(name, change);
            }
        }
    }

    /// Notes whether the storage failed in a call (`failing`: the error to
    /// tell); an outage is told once, when it starts.
    pub fn storage(
        &self,
        name: &str,
        listeners: &[std::sync::Arc<dyn Listener>],
        failing: Option<Error>,
    ) {
        match failing {
            Some(error) => {
                if !self.outage.swap(true, Ordering::Relaxed) {
                    listeners.iter().for_each(|l| l.error(name, &error));
                }
            }
            None => {
                if self.outage.load(Ordering::Relaxed) {
                    self.outage.store(false, Ordering::Relaxed);
                }
            }
        }
    }
}
