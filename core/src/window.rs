//! The failure-rate window a record keeps: ten time buckets aligned to the
//! clock, or the last N calls. Pure data and arithmetic; the rules that read
//! it are `machine`'s.

use std::collections::VecDeque;

use crate::skew::AHEAD_MS;

/// Time buckets in a time window.
pub const BUCKETS: usize = 10;

/// A window's shape, as configured (and as stored with its counts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// The last `ms` milliseconds, in ten buckets of a tenth each.
    Time {
        /// The window's length.
        ms: u64,
    },
    /// The last `calls` calls.
    Calls {
        /// How many calls it keeps.
        calls: u32,
    },
}

impl Shape {
    /// The config field that sets this shape.
    pub fn field(self) -> &'static str {
        match self {
            Shape::Time { .. } => "window-ms",
            Shape::Calls { .. } => "window-calls",
        }
    }

    /// How it reads in a message: `a 30000 ms time window`.
    pub fn describe(self) -> String {
        match self {
            Shape::Time { ms } => format!("a {ms} ms time window"),
            Shape::Calls { calls } => format!("a {calls}-call window"),
        }
    }
}

/// What a window holds in total.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Calls counted.
    pub calls: u32,
    /// Of those, failed.
    pub failed: u32,
    /// Of those, slow.
    pub slow: u32,
}

impl Totals {
    /// Failed calls as a percentage of calls (none: no calls).
    pub fn failure_rate(&self) -> Option<f32> {
        rate(self.failed, self.calls)
    }

    /// Slow calls as a percentage of calls (none: no calls).
    pub fn slow_call_rate(&self) -> Option<f32> {
        rate(self.slow, self.calls)
    }
}

fn rate(part: u32, calls: u32) -> Option<f32> {
    (calls > 0).then(|| (f64::from(part) * 100.0 / f64::from(calls)) as f32)
}

/// One time bucket's counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    /// Calls counted in it.
    pub calls: u32,
    /// Failed calls.
    pub failed: u32,
    /// Slow calls.
    pub slow: u32,
}

/// A window's counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Counts {
    /// Time buckets: bucket `i` (counted from the epoch, `i = ms / (window / 10)`)
    /// lives at `buckets[i % 10]`; `head` is the newest bucket index written.
    Time {
        /// The window's length in ms.
        ms: u64,
        /// The newest bucket index.
        head: u64,
        /// The buckets, by index modulo ten.
        buckets: Box<[Bucket; BUCKETS]>,
    },
    /// The last calls, oldest first: bit 0 failed, bit 1 slow.
    Calls {
        /// How many calls it keeps.
        calls: u32,
        /// The calls kept.
        ring: VecDeque<u8>,
    },
}

/// A call's flags in a count window.
const FAILED: u8 = 1;
const SLOW: u8 = 2;

impl Counts {
    /// An empty window of `shape`.
    pub fn empty(shape: Shape) -> Counts {
        match shape {
            Shape::Time { ms } => Counts::Time {
                ms,
                head: 0,
                buckets: Box::new([Bucket::default(); BUCKETS]),
            },
            Shape::Calls { calls } => Counts::Calls {
                calls,
                ring: VecDeque::new(),
            },
        }
    }

    /// The window's shape.
    pub fn shape(&self) -> Shape {
        match self {
            Counts::Time { ms, .. } => Shape::Time { ms: *ms },
            Counts::Calls { calls, .. } => Shape::Calls { calls: *calls },
        }
    }

    /// Counts one call reported at `now`. A time window whose head another
    /// clock moved ahead of `now` (by up to [`AHEAD_MS`]) counts a call
    /// older than its oldest bucket in its newest; a head farther ahead is
    /// pulled back to `now`, its buckets with it.
    pub fn add(&mut self, now: u64, failed: bool, slow: bool) {
        match self {
            Counts::Time { ms, head, buckets } => {
                let bucket_ms = bucket_ms(*ms);
                let mut index = now / bucket_ms;
                if head.saturating_mul(bucket_ms) > now.saturating_add(AHEAD_MS) {
                    pull_back(head, buckets, index);
                } else if head.saturating_sub(index) >= BUCKETS as u64 {
                    index = *head;
                }
                advance(head, buckets, index);
                let bucket = &mut buckets[(index % BUCKETS as u64) as usize];
                bucket.calls = bucket.calls.saturating_add(1);
                bucket.failed = bucket.failed.saturating_add(u32::from(failed));
                bucket.slow = bucket.slow.saturating_add(u32::from(slow));
            }
            Counts::Calls { calls, ring } => {
                ring.push_back((u8::from(failed) * FAILED) | (u8::from(slow) * SLOW));
                while ring.len() > *calls as usize {
                    ring.pop_front();
                }
            }
        }
    }

    /// What the window holds at `now` (a time window's buckets older than
    /// ten tenths before `now` count nothing), or, for a time window whose
    /// head another clock moved ahead of `now`, at its head (see
    /// [`Counts::add`]).
    pub fn totals(&self, now: u64) -> Totals {
        match self {
            Counts::Time { ms, head, buckets } => {
                let newest = (now / bucket_ms(*ms)).max(*head);
                let mut totals = Totals::default();
                for back in 0..BUCKETS as u64 {
                    let Some(index) = newest.checked_sub(back) else {
                        break;
                    };
                    if index > *head || *head - index >= BUCKETS as u64 {
                        continue;
                    }
                    let bucket = buckets[(index % BUCKETS as u64) as usize];
                    totals.calls = totals.calls.saturating_add(bucket.calls);
                    totals.failed = totals.failed.saturating_add(bucket.failed);
                    totals.slow = totals.slow.saturating_add(bucket.slow);
                }
                totals
            }
            Counts::Calls { ring, .. } => {
                let mut totals = Totals {
                    calls: ring.len() as u32,
                    ..Totals::default()
                };
                for flags in ring {
                    totals.failed += u32::from(flags & FAILED);
                    totals.slow += u32::from((flags & SLOW) >> 1);
                }
                totals
            }
        }
    }
}

/// The length of one time bucket: a tenth of the window (at least 1 ms).
pub fn bucket_ms(window_ms: u64) -> u64 {
    (window_ms / BUCKETS as u64).max(1)
}

/// Moves a time window's head back to `index`, each bucket with it (the
/// newest stays the newest).
fn pull_back(head: &mut u64, buckets: &mut [Bucket; BUCKETS], index: u64) {
    let by = *head - index;
    let old = *buckets;
    for (slot, bucket) in old.iter().enumerate() {
        let at = (slot as u64 + BUCKETS as u64 - by % BUCKETS as u64) % BUCKETS as u64;
        buckets[at as usize] = *bucket;
    }
    *head = index;
}

/// Moves a time window's head to `index`, emptying the buckets it passes.
fn advance(head: &mut u64, buckets: &mut [Bucket; BUCKETS], index: u64) {
    if index <= *head {
        return;
    }
    let passed = (index - *head).min(BUCKETS as u64);
    for step in 0..passed {
        let cleared = index - step;
        buckets[(cleared % BUCKETS as u64) as usize] = Bucket::default();
    }
    *head = index;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_window_slides_in_tenths() {
        let mut window = Counts::empty(Shape::Time { ms: 1000 });
        window.add(1_000_050, true, false);
        window.add(1_000_150, false, true);
        let both = Totals {
            calls: 2,
            failed: 1,
            slow: 1,
        };
        assert_eq!(window.totals(1_000_150), both);
        assert_eq!(window.totals(1_000_999), both);
        // The first bucket (1_000_000..1_000_100) leaves at 1_001_000.
        assert_eq!(
            window.totals(1_001_000),
            Totals {
                calls: 1,
                failed: 0,
                slow: 1
            }
        );
        assert_eq!(window.totals(1_001_100), Totals::default());
        window.add(1_005_000, true, false);
        assert_eq!(window.totals(1_005_000).calls, 1, "old buckets emptied");
    }

    #[test]
    fn a_clock_behind_the_head_counts_in_the_window_and_reads_it_at_the_head() {
        let mut window = Counts::empty(Shape::Time { ms: 1000 });
        window.add(700_000, false, false);
        window.add(699_950, true, false);
        assert_eq!(window.totals(700_000).failed, 1, "in its own bucket");
        // A clock ten minutes behind: its call counts in the newest bucket,
        // and it reads the window as of the head.
        let behind = 100_000;
        window.add(behind, true, false);
        assert_eq!(window.totals(behind).failed, 2);
        assert_eq!(window.totals(700_000).failed, 2);
        assert_eq!(window.totals(701_000), Totals::default(), "it slides on");
    }

    #[test]
    fn a_head_too_far_ahead_is_pulled_back_with_its_buckets() {
        let mut window = Counts::empty(Shape::Time { ms: 1000 });
        let ahead = 5_000 + AHEAD_MS + 200;
        window.add(ahead - 100, true, false);
        window.add(ahead, false, true);
        window.add(5_000, true, false);
        let Counts::Time { head, .. } = &window else {
            unreachable!()
        };
        assert_eq!(*head, 50, "pulled back to 5000 ms");
        assert_eq!(
            window.totals(5_000),
            Totals {
                calls: 3,
                failed: 2,
                slow: 1
            }
        );
        assert_eq!(window.totals(5_800).calls, 3);
        assert_eq!(window.totals(5_900).calls, 2, "the oldest left first");
    }

    #[test]
    fn a_count_window_keeps_the_last_calls() {
        let mut window = Counts::empty(Shape::Calls { calls: 3 });
        for failed in [true, true, false, false] {
            window.add(0, failed, false);
        }
        assert_eq!(
            window.totals(0),
            Totals {
                calls: 3,
                failed: 1,
                slow: 0
            }
        );
        assert_eq!(window.totals(0).failure_rate(), Some(100.0 / 3.0));
        assert_eq!(
            Counts::empty(Shape::Calls { calls: 3 })
                .totals(0)
                .failure_rate(),
            None
        );
    }
}
