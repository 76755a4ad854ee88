//! Whose window shape a shared record follows when the instances sharing it
//! are configured differently (a deploy that changes `window-ms` or
//! `window-calls`, or adds or drops the rate rules). The shape in place holds
//! while instances configured with it write the record; an instance of
//! another config counts nothing in the window (its consecutive rule keeps
//! counting). Once none has written for [`LEASE_MS`] (the old config's
//! instances are gone), the next instance of another config restarts the
//! window with its own shape. A record that never had a window takes any
//! instance's shape at once. Outcomes an instance holds renew nothing until
//! they are merged: with a flush interval of a minute or more, another
//! config may take the window over from a live one.

use crate::skew::AHEAD_MS;
use crate::window::Shape;

/// How long a window shape holds against another config once no instance
/// configured with it writes the record.
pub const LEASE_MS: u64 = 60_000;

/// The window shape a record follows, and when it was last written by an
/// instance configured with it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Shaping {
    /// The shape (none: no window).
    pub shape: Option<Shape>,
    /// When an instance configured with it last wrote the record, in Unix
    /// ms (0: never; a record that never had a window, or one from before
    /// format 4).
    pub seen_ms: u64,
}

/// How an instance's window meets a record's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fit {
    /// The record follows this instance's shape.
    Same,
    /// This instance's shape replaces the record's, whose window restarts;
    /// `told` when it replaces one an instance had kept (not a fresh
    /// record's).
    Adopt {
        /// The restart is news.
        told: bool,
    },
    /// Another config's shape holds: this instance counts nothing in the
    /// window.
    Defer,
}

impl Shaping {
    /// How an instance with window `ours` meets this shaping at `now`.
    pub fn fit(&self, ours: Option<Shape>, now: u64) -> Fit {
        if ours == self.shape {
            return Fit::Same;
        }
        if *self == Shaping::default() {
            return Fit::Adopt { told: false };
        }
        if now >= self.seen_ms.saturating_add(LEASE_MS) || self.stamped_ahead(now) {
            return Fit::Adopt { told: true };
        }
        Fit::Defer
    }

    /// Whether the last write's time is farther ahead of `now` than a clock
    /// is trusted (see [`crate::skew`]): it counts as long past.
    fn stamped_ahead(&self, now: u64) -> bool {
        self.seen_ms > now.saturating_add(AHEAD_MS)
    }

    /// The shaping after a write at `now` by an instance with window `ours`
    /// that fits as `fit` (a record that never had a window keeps none).
    pub fn written(&self, ours: Option<Shape>, fit: Fit, now: u64) -> Shaping {
        match fit {
            Fit::Same if *self == Shaping::default() => *self,
            Fit::Same if self.stamped_ahead(now) => Shaping {
                seen_ms: now,
                ..*self
            },
            Fit::Same => Shaping {
                seen_ms: self.seen_ms.max(now),
                ..*self
            },
            Fit::Adopt { .. } => Shaping {
                shape: ours,
                seen_ms: now,
            },
            Fit::Defer => *self,
        }
    }

    /// How a shape reads in a message.
    pub fn describe(shape: Option<Shape>) -> String {
        match shape {
            Some(shape) => format!("{} ({})", shape.describe(), shape.field()),
            None => "no window".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIME: Option<Shape> = Some(Shape::Time { ms: 30_000 });
    const CALLS: Option<Shape> = Some(Shape::Calls { calls: 100 });

    #[test]
    fn a_fresh_record_takes_any_shape_silently() {
        let fresh = Shaping::default();
        assert_eq!(fresh.fit(TIME, 5), Fit::Adopt { told: false });
        assert_eq!(fresh.fit(None, 5), Fit::Same);
    }

    #[test]
    fn a_shape_holds_while_its_instances_write_then_is_taken_over() {
        let kept = Shaping {
            shape: TIME,
            seen_ms: 2_000,
        };
        assert_eq!(kept.fit(TIME, 2_000), Fit::Same);
        assert_eq!(kept.fit(CALLS, 2_000 + LEASE_MS - 1), Fit::Defer);
        assert_eq!(kept.fit(None, 2_000 + LEASE_MS - 1), Fit::Defer);
        assert_eq!(kept.fit(CALLS, 2_000 + LEASE_MS), Fit::Adopt { told: true });
        let legacy = Shaping {
            shape: CALLS,
            seen_ms: 0,
        };
        assert_eq!(legacy.fit(TIME, LEASE_MS), Fit::Adopt { told: true });
    }

    #[test]
    fn a_write_stamped_too_far_ahead_holds_nothing() {
        let ahead = Shaping {
            shape: TIME,
            seen_ms: u64::MAX,
        };
        assert_eq!(ahead.fit(CALLS, 5_000), Fit::Adopt { told: true });
        assert_eq!(ahead.written(TIME, Fit::Same, 5_000).seen_ms, 5_000);
        let near = Shaping {
            shape: TIME,
            seen_ms: 5_000 + AHEAD_MS,
        };
        assert_eq!(near.fit(CALLS, 5_000), Fit::Defer, "trusted");
    }

    #[test]
    fn a_write_refreshes_or_replaces_the_shaping() {
        let kept = Shaping {
            shape: TIME,
            seen_ms: 2_000,
        };
        assert_eq!(kept.written(TIME, Fit::Same, 3_000).seen_ms, 3_000);
        assert_eq!(kept.written(TIME, Fit::Same, 1_500).seen_ms, 2_000);
        assert_eq!(kept.written(CALLS, Fit::Defer, 3_000), kept);
        assert_eq!(
            kept.written(CALLS, Fit::Adopt { told: true }, 70_000),
            Shaping {
                shape: CALLS,
                seen_ms: 70_000
            }
        );
        let none = Shaping::default();
        assert_eq!(none.written(None, Fit::Same, 3_000), none);
    }
}
