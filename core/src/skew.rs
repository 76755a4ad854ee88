//! How far the times a record holds may be ahead of the reader's clock. Every
//! process stamps a shared record with its own clock; one whose clock runs
//! ahead would otherwise move a time window's head out of the others' reach
//! (their outcomes dropping out), park the circuit open past its duration,
//! and stamp trial slots that nobody else could forfeit.

/// A time a record keeps this far ahead of the reader's clock is trusted:
/// a time window's head (the reader's outcomes count in its newest bucket
/// and the window reads as of it) and when a window shape was last written.
/// Farther, the head is pulled back to the reader's clock and the shape's
/// time counts as long past.
pub const AHEAD_MS: u64 = 15 * 60_000;

/// An opened-at this far ahead of the reader's clock was stamped by a clock
/// ahead of it: the reader restarts the open from its own clock, for the
/// duration the writer gave it.
pub const OPENED_AHEAD_MS: u64 = 1_000;

/// Whether a trial stamped at `issued` is forfeited at `now`: its timeout has
/// passed, or it was stamped more than a timeout ahead of `now`.
pub fn trial_expired(issued: u64, now: u64, timeout_ms: u64) -> bool {
    now >= issued.saturating_add(timeout_ms) || issued > now.saturating_add(timeout_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trial_stamped_more_than_a_timeout_ahead_is_forfeited() {
        assert!(!trial_expired(1_000, 1_500, 1_000));
        assert!(trial_expired(1_000, 2_000, 1_000));
        assert!(!trial_expired(2_000, 1_000, 1_000), "a timeout ahead");
        assert!(trial_expired(2_001, 1_000, 1_000));
        assert!(!trial_expired(u64::MAX, u64::MAX - 1, 1_000));
    }
}
