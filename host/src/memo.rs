//! The component's last answer to acquire, reused while its `holds` says it
//! stands: the one reuse rule of the contract, for a storage that can tell
//! its version without a round trip.

use std::sync::Mutex;

use crate::bindings::wit;

/// An answer of the component's to acquire.
pub(crate) type Answer = Result<wit::Admission, wit::Refusal>;

/// The last answer that holds, with its terms.
#[derive(Default)]
pub(crate) struct Memo(Mutex<Option<(wit::Holds, Answer)>>);

impl Memo {
    /// Keeps `answer` if it holds; forgets the last one otherwise.
    pub fn keep(&self, answer: &Answer) {
        let holds = match answer {
            Ok(admission) => admission.holds,
            Err(refusal) => refusal.holds,
        };
        *self.lock() = holds.map(|holds| (holds, answer.clone()));
    }

    /// The kept answer as the component would give it at `now`, if the
    /// stored version is still the one it holds at (0: absent).
    pub fn reuse(&self, version: u64, now: u64) -> Option<Answer> {
        let kept = self.lock();
        let (holds, answer) = kept.as_ref()?;
        if holds.version != version || holds.until_ms.is_some_and(|until| now >= until) {
            return None;
        }
        let left = holds.until_ms.map(|until| until - now);
        Some(match answer {
            Ok(admission) => Ok(wit::Admission {
                permit: wit::Permit {
                    issued_at_ms: now,
                    ..admission.permit
                },
                ..admission.clone()
            }),
            Err(refusal) => Err(wit::Refusal {
                rejection: match (&refusal.rejection, left) {
                    (wit::Rejection::Open(_), Some(ms)) => wit::Rejection::Open(ms),
                    (wit::Rejection::HalfOpenFull(_), Some(ms)) => wit::Rejection::HalfOpenFull(ms),
                    (rejection, _) => rejection.clone(),
                },
                ..refusal.clone()
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(wit::Holds, Answer)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
