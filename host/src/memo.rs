//! The component's last answer to acquire, reused while its `holds` says it
//! stands: the one reuse rule of the contract, for a storage that can tell
//! its version without a round trip.

use std::sync::Mutex;

use crate::bindings::wit;

/// An answer of the component's to acquire.
pub(crate) type Answer = Result<wit::Admission, wit::Refusal>;

/// The last answer that holds, with its terms.
#[derive(Default)]
pub(crate) struct Memo(Mutex<Option<Kept>>);

/// An answer that holds. An admission that holds is never degraded, so what
/// of it is kept is plain data.
struct Kept {
    holds: wit::Holds,
    answer: Result<(wit::Permit, bool), wit::Refusal>,
}

/// A kept answer, as the component would give it now.
pub(crate) enum Reused {
    /// An admission: its permit (issued now), whether a success is quiet, and
    /// the version it holds at.
    Admitted(wit::Permit, bool, u64),
    /// A refusal, its milliseconds counted down to now.
    Refused(wit::Refusal),
}

impl Memo {
    /// Keeps `answer` if it holds; forgets the last one otherwise.
    pub fn keep(&self, answer: &Answer) {
        let kept = match answer {
            Ok(admission) => admission.holds.map(|holds| Kept {
                holds,
                answer: Ok((admission.permit, admission.quiet_success)),
            }),
            Err(refusal) => refusal.holds.map(|holds| Kept {
                holds,
                answer: Err(refusal.clone()),
            }),
        };
        *self.lock() = kept;
    }

    /// The kept answer as the component would give it at `now`, if the
    /// stored version is still the one it holds at (0: absent).
    pub fn reuse(&self, version: u64, now: u64) -> Option<Reused> {
        let kept = self.lock();
        let Kept { holds, answer } = kept.as_ref()?;
        if holds.version != version || holds.until_ms.is_some_and(|until| now >= until) {
            return None;
        }
        Some(match answer {
            Ok((permit, quiet_success)) => Reused::Admitted(
                wit::Permit {
                    issued_at_ms: now,
                    ..*permit
                },
                *quiet_success,
                holds.version,
            ),
            Err(refusal) => {
                let left = holds.until_ms.map(|until| until - now);
                let rejection = match (&refusal.rejection, left) {
                    (wit::Rejection::Open(_), Some(ms)) => wit::Rejection::Open(ms),
                    (wit::Rejection::HalfOpenFull(_), Some(ms)) => wit::Rejection::HalfOpenFull(ms),
                    (wit::Rejection::ForcedOpen, _) => wit::Rejection::ForcedOpen,
                    (rejection, _) => rejection.clone(),
                };
                Reused::Refused(wit::Refusal {
                    rejection,
                    state: refusal.state,
                    holds: refusal.holds,
                })
            }
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Kept>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
