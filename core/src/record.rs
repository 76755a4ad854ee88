//! The stored bytes of a breaker's record (format 4; formats 1 to 3 are
//! read too, and written as format 4 at the next change).
//!
//! ```text
//! byte 0     format: 4 (1 from tripswitch 0.1, 2 from contract 0.2's first
//!            release, 3 from contract 0.3's first builds; read but never
//!            written)
//! byte 1     state: 0 closed, 1 open, 2 half-open, 3 forced-open, 4 disabled
//! varint     failures
//! varint     successes
//! varint     generation
//! varint     opened-at-ms + 1 (0 = none)
//! varint     number of trials in flight, then one varint per trial: its issue time (ms)
//! byte       (format 2+) reason: 0 tripped, 1 trial-failed, 2 recovered,
//!            3 timeout-elapsed, 4 operator, 5 failure-rate, 6 slow-call-rate
//! varint     (format 2+) when the state last changed (ms)
//! varint     (format 3) opens in a row
//! varint     (format 3) retry-at-ms + 1 (0 = none)
//! byte       (format 3) window: 0 none, 1 time, 2 calls; then
//!            time:  varint window ms, varint head bucket index, then ten
//!                   buckets of varint calls, failed, slow (by index mod 10)
//!            calls: varint window calls, varint calls kept, then the calls,
//!                   oldest first, four to a byte (2 bits: failed, slow)
//! byte       (format 4) the window shape the record follows: 0 none,
//!            1 time, 2 calls; then (1, 2) varint window ms or calls
//! varint     (format 4) when an instance with that shape last wrote (ms)
//! ```
//! Varints are unsigned LEB128 (7 bits a byte, low bits first). A fresh
//! closed record is 14 bytes. Window counts, when kept, have the shape the
//! record follows. A format-3 record follows its counts' shape (none without
//! counts), written by nobody. Formats 1 and 2 have no backoff (an open
//! lasts the reset timeout from opened-at) and no window. A format-1 record's reason is the one its state
//! implies (open: tripped, half-open: timeout-elapsed, closed: recovered,
//! forced-open and disabled: operator) and its change time is its opened-at
//! (0 if none).

use std::collections::VecDeque;

use crate::machine::{Reason, Record, State};
use crate::shaping::Shaping;
use crate::window::{BUCKETS, Bucket, Counts, Shape};

/// The format byte this build writes.
pub const FORMAT: u8 = 4;
/// The format of tripswitch 0.1, which this build reads.
pub const FORMAT_1: u8 = 1;
/// The format of contract 0.2's first records, which this build reads.
pub const FORMAT_2: u8 = 2;
/// The format of contract 0.3's first builds, which this build reads.
pub const FORMAT_3: u8 = 3;

/// Encodes a record.
pub fn encode(record: &Record) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 6 * record.trials.len());
    out.push(FORMAT);
    out.push(state_code(record.state));
    put(&mut out, u64::from(record.failures));
    put(&mut out, u64::from(record.successes));
    put(&mut out, record.generation);
    put(
        &mut out,
        record.opened_at_ms.map_or(0, |t| t.saturating_add(1)),
    );
    put(&mut out, record.trials.len() as u64);
    for &trial in &record.trials {
        put(&mut out, trial);
    }
    out.push(reason_code(record.reason));
    put(&mut out, record.changed_at_ms);
    put(&mut out, u64::from(record.opens));
    put(
        &mut out,
        record.retry_at_ms.map_or(0, |t| t.saturating_add(1)),
    );
    match &record.window {
        None => out.push(0),
        Some(Counts::Time { ms, head, buckets }) => {
            out.push(1);
            put(&mut out, *ms);
            put(&mut out, *head);
            for bucket in buckets.iter() {
                put(&mut out, u64::from(bucket.calls));
                put(&mut out, u64::from(bucket.failed));
                put(&mut out, u64::from(bucket.slow));
            }
        }
        Some(Counts::Calls { calls, ring }) => {
            out.push(2);
            put(&mut out, u64::from(*calls));
            put(&mut out, ring.len() as u64);
            let mut packed = vec![0u8; ring.len().div_ceil(4)];
            for (i, flags) in ring.iter().enumerate() {
                packed[i / 4] |= (flags & 3) << ((i % 4) * 2);
            }
            out.extend_from_slice(&packed);
        }
    }
    match record.shaping.shape {
        None => out.push(0),
        Some(Shape::Time { ms }) => {
            out.push(1);
            put(&mut out, ms);
        }
        Some(Shape::Calls { calls }) => {
            out.push(2);
            put(&mut out, u64::from(calls));
        }
    }
    put(&mut out, record.shaping.seen_ms);
    out
}

/// Reads the shaping a record follows (format 4), which its counts must have.
fn shaping(reader: &mut Reader, counts: Option<&Counts>) -> Result<Shaping, String> {
    let shape = match reader.byte("window shape")? {
        0 => None,
        1 => Some(Shape::Time {
            ms: reader.varint("window shape ms")?,
        }),
        2 => Some(Shape::Calls {
            calls: reader.u32("window shape calls")?,
        }),
        code => return Err(format!("unknown window shape {code}")),
    };
    if let Some(counts) = counts
        && shape != Some(counts.shape())
    {
        return Err(format!(
            "window counts of {} in a record that follows {}",
            counts.shape().describe(),
            Shaping::describe(shape)
        ));
    }
    Ok(Shaping {
        shape,
        seen_ms: reader.varint("shape seen")?,
    })
}

/// Reads a window's counts (format 3 and later).
fn window(reader: &mut Reader) -> Result<Option<Counts>, String> {
    match reader.byte("window kind")? {
        0 => Ok(None),
        1 => {
            let ms = reader.varint("window ms")?;
            let head = reader.varint("window head")?;
            let mut buckets = [Bucket::default(); BUCKETS];
            for bucket in &mut buckets {
                bucket.calls = reader.u32("bucket calls")?;
                bucket.failed = reader.u32("bucket failed")?;
                bucket.slow = reader.u32("bucket slow")?;
            }
            Ok(Some(Counts::Time {
                ms,
                head,
                buckets: Box::new(buckets),
            }))
        }
        2 => {
            let calls = reader.u32("window calls")?;
            let kept = reader.varint("calls kept")?;
            if kept > u64::from(calls) {
                return Err(format!("{kept} calls kept in a window of {calls}"));
            }
            let bytes = (kept as usize).div_ceil(4);
            if bytes > reader.remaining() {
                return Err(format!(
                    "{kept} calls kept exceed the {} bytes left",
                    reader.remaining()
                ));
            }
            let packed = &reader.bytes[reader.at..reader.at + bytes];
            reader.at += bytes;
            let ring: VecDeque<u8> = (0..kept as usize)
                .map(|i| (packed[i / 4] >> ((i % 4) * 2)) & 3)
                .collect();
            Ok(Some(Counts::Calls { calls, ring }))
        }
        code => Err(format!("unknown window kind {code}")),
    }
}

/// Decodes a record, or says what is wrong with the bytes.
pub fn decode(bytes: &[u8]) -> Result<Record, String> {
    let mut reader = Reader { bytes, at: 0 };
    let format = reader.byte("format byte")?;
    if !(FORMAT_1..=FORMAT).contains(&format) {
        return Err(format!(
            "unknown record format {format} (this build reads formats {FORMAT_1} to {FORMAT})"
        ));
    }
    let code = reader.byte("state")?;
    let state = state_from_code(code).ok_or_else(|| format!("unknown state code {code}"))?;
    let failures = reader.u32("failures")?;
    let successes = reader.u32("successes")?;
    let generation = reader.varint("generation")?;
    let opened_at_ms = reader.varint("opened-at")?.checked_sub(1);
    let count = reader.varint("trial count")?;
    if count > reader.remaining() as u64 {
        return Err(format!(
            "trial count {count} exceeds the {} bytes left",
            reader.remaining()
        ));
    }
    let trials = (0..count)
        .map(|_| reader.varint("trial"))
        .collect::<Result<Vec<_>, _>>()?;
    let (reason, changed_at_ms) = if format == FORMAT_1 {
        (implied_reason(state), opened_at_ms.unwrap_or(0))
    } else {
        let code = reader.byte("reason")?;
        let reason = reason_from_code(code).ok_or_else(|| format!("unknown reason code {code}"))?;
        (reason, reader.varint("changed-at")?)
    };
    let (opens, retry_at_ms, window) = if format >= FORMAT_3 {
        (
            reader.u32("opens")?,
            reader.varint("retry-at")?.checked_sub(1),
            window(&mut reader)?,
        )
    } else {
        (0, None, None)
    };
    let shaping = if format == FORMAT {
        shaping(&mut reader, window.as_ref())?
    } else {
        Shaping {
            shape: window.as_ref().map(Counts::shape),
            ..Shaping::default()
        }
    };
    if reader.remaining() != 0 {
        return Err(format!(
            "{} unexpected bytes after the record",
            reader.remaining()
        ));
    }
    Ok(Record {
        state,
        failures,
        successes,
        opened_at_ms,
        generation,
        trials,
        reason,
        changed_at_ms,
        opens,
        retry_at_ms,
        window,
        shaping,
    })
}

/// The reason a format-1 record's state implies.
fn implied_reason(state: State) -> Reason {
    match state {
        State::Open => Reason::Tripped,
        State::HalfOpen => Reason::TimeoutElapsed,
        State::Closed => Reason::Recovered,
        State::ForcedOpen | State::Disabled => Reason::Operator,
    }
}

fn reason_code(reason: Reason) -> u8 {
    match reason {
        Reason::Tripped => 0,
        Reason::TrialFailed => 1,
        Reason::Recovered => 2,
        Reason::TimeoutElapsed => 3,
        Reason::Operator => 4,
        Reason::FailureRate => 5,
        Reason::SlowCallRate => 6,
    }
}

fn reason_from_code(code: u8) -> Option<Reason> {
    Some(match code {
        0 => Reason::Tripped,
        1 => Reason::TrialFailed,
        2 => Reason::Recovered,
        3 => Reason::TimeoutElapsed,
        4 => Reason::Operator,
        5 => Reason::FailureRate,
        6 => Reason::SlowCallRate,
        _ => return None,
    })
}

fn state_code(state: State) -> u8 {
    match state {
        State::Closed => 0,
        State::Open => 1,
        State::HalfOpen => 2,
        State::ForcedOpen => 3,
        State::Disabled => 4,
    }
}

fn state_from_code(code: u8) -> Option<State> {
    Some(match code {
        0 => State::Closed,
        1 => State::Open,
        2 => State::HalfOpen,
        3 => State::ForcedOpen,
        4 => State::Disabled,
        _ => return None,
    })
}

fn put(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn byte(&mut self, what: &str) -> Result<u8, String> {
        let byte = *self
            .bytes
            .get(self.at)
            .ok_or_else(|| format!("truncated record: {what} missing at byte {}", self.at))?;
        self.at += 1;
        Ok(byte)
    }

    fn varint(&mut self, what: &str) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte(what)?;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                break;
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(format!("{what} overflows 64 bits"))
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        let value = self.varint(what)?;
        u32::try_from(value).map_err(|_| format!("{what} {value} overflows 32 bits"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_fresh_record_is_fourteen_bytes() {
        assert_eq!(
            encode(&Record::default()),
            vec![4, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn a_format_3_record_follows_its_counts_shape_written_by_nobody() {
        let bare = decode(&[3, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0]).unwrap();
        assert_eq!(bare.shaping, Shaping::default());
        let mut calls = vec![3, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 2, 5, 1, 0b01];
        let counted = decode(&calls).unwrap();
        assert_eq!(
            counted.shaping,
            Shaping {
                shape: Some(Shape::Calls { calls: 5 }),
                ..Shaping::default()
            }
        );
        calls.push(0);
        assert!(decode(&calls).unwrap_err().contains("1 unexpected bytes"));
    }

    #[test]
    fn counts_of_another_shape_than_the_record_follows_are_refused() {
        let mut record = Record {
            window: Some(Counts::empty(Shape::Calls { calls: 5 })),
            ..Record::default()
        };
        record.shaping.shape = Some(Shape::Time { ms: 1000 });
        assert_eq!(
            decode(&encode(&record)).unwrap_err(),
            "window counts of a 5-call window in a record that follows \
             a 1000 ms time window (window-ms)"
        );
    }

    #[test]
    fn a_format_2_record_reads_with_no_backoff_and_no_window() {
        let open = decode(&[2, 1, 3, 0, 4, 11, 0, 0, 10]).unwrap();
        assert_eq!(open.state, State::Open);
        assert_eq!((open.opens, open.retry_at_ms, open.window), (0, None, None));
        assert_eq!(open.generation, 4);
    }

    #[test]
    fn a_format_1_record_reads_with_the_reason_its_state_implies() {
        let open = decode(&[1, 1, 3, 0, 1, 11, 0]).unwrap();
        assert_eq!(open.state, State::Open);
        assert_eq!(open.reason, Reason::Tripped);
        assert_eq!((open.opened_at_ms, open.changed_at_ms), (Some(10), 10));
        let cases = [
            (0, Reason::Recovered),
            (2, Reason::TimeoutElapsed),
            (3, Reason::Operator),
            (4, Reason::Operator),
        ];
        for (code, reason) in cases {
            assert_eq!(decode(&[1, code, 0, 0, 0, 0, 0]).unwrap().reason, reason);
        }
        assert_eq!(decode(&[1, 0, 0, 0, 0, 0, 0]).unwrap().changed_at_ms, 0);
    }

    #[test]
    fn corrupt_bytes_say_what_is_wrong() {
        let cases: [(&[u8], &str); 15] = [
            (&[], "format byte missing"),
            (&[9], "unknown record format 9"),
            (&[1, 7], "unknown state code 7"),
            (&[1, 0, 0x80], "truncated record: failures"),
            (
                &[1, 0, 0xff, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0],
                "overflows 32 bits",
            ),
            (&[1, 0, 0, 0, 0, 0, 200, 1], "trial count 200"),
            (&[1, 0, 0, 0, 0, 0, 0, 42], "1 unexpected bytes"),
            (&[2, 0, 0, 0, 0, 0, 0], "reason missing"),
            (&[2, 0, 0, 0, 0, 0, 0, 9, 0], "unknown reason code 9"),
            (&[2, 0, 0, 0, 0, 0, 0, 2, 0, 1], "1 unexpected bytes"),
            (&[3, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0], "window kind missing"),
            (
                &[3, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 7],
                "unknown window kind 7",
            ),
            (
                &[3, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 2, 3, 4],
                "4 calls kept in a window of 3",
            ),
            (
                &[3, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 2, 9, 9],
                "9 calls kept exceed",
            ),
            (
                &[3, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1, 100, 0],
                "bucket calls missing",
            ),
        ];
        for (bytes, message) in cases {
            let err = decode(bytes).unwrap_err();
            assert!(err.contains(message), "{bytes:?}: {err}");
        }
        let eleven = [0xffu8; 11];
        let mut overlong = vec![1, 0, 0, 0];
        overlong.extend_from_slice(&eleven);
        assert!(
            decode(&overlong)
                .unwrap_err()
                .contains("generation overflows 64 bits")
        );
    }

    fn any_state() -> impl Strategy<Value = State> {
        prop_oneof![
            Just(State::Closed),
            Just(State::Open),
            Just(State::HalfOpen),
            Just(State::ForcedOpen),
            Just(State::Disabled),
        ]
    }

    fn any_reason() -> impl Strategy<Value = Reason> {
        prop_oneof![
            Just(Reason::Tripped),
            Just(Reason::TrialFailed),
            Just(Reason::Recovered),
            Just(Reason::TimeoutElapsed),
            Just(Reason::Operator),
            Just(Reason::FailureRate),
            Just(Reason::SlowCallRate),
        ]
    }

    fn any_window() -> impl Strategy<Value = Option<Counts>> {
        let bucket =
            (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(calls, failed, slow)| Bucket {
                calls,
                failed,
                slow,
            });
        let time = (
            any::<u64>(),
            any::<u64>(),
            proptest::array::uniform10(bucket),
        )
            .prop_map(|(ms, head, buckets)| Counts::Time {
                ms,
                head,
                buckets: Box::new(buckets),
            });
        let calls = (1u32..200).prop_flat_map(|calls| {
            proptest::collection::vec(0u8..4, 0..=calls as usize).prop_map(move |ring| {
                Counts::Calls {
                    calls,
                    ring: ring.into(),
                }
            })
        });
        proptest::option::of(prop_oneof![time, calls])
    }

    proptest! {
        #[test]
        fn every_record_round_trips(
            state in any_state(),
            failures: u32,
            successes: u32,
            generation: u64,
            opened_at_ms in proptest::option::of(0..u64::MAX),
            trials in proptest::collection::vec(any::<u64>(), 0..8),
            reason in any_reason(),
            changed_at_ms: u64,
            opens: u32,
            retry_at_ms in proptest::option::of(0..u64::MAX),
            window in any_window(),
            seen_ms: u64,
        ) {
            let shaping = Shaping { shape: window.as_ref().map(Counts::shape), seen_ms };
            let record = Record {
                state, failures, successes, opened_at_ms, generation, trials, reason, changed_at_ms,
                opens, retry_at_ms, window, shaping,
            };
            prop_assert_eq!(decode(&encode(&record)), Ok(record));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Err(problem) = decode(&bytes) {
                prop_assert!(!problem.is_empty());
            }
        }

        #[test]
        fn damaged_records_never_panic(
            state in any_state(),
            generation: u64,
            trials in proptest::collection::vec(any::<u64>(), 0..8),
            window in any_window(),
            cut in any::<proptest::sample::Index>(),
            flips in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 0..4),
        ) {
            let shaping = Shaping { shape: window.as_ref().map(Counts::shape), ..Shaping::default() };
            let record = Record { state, generation, trials, window, shaping, ..Record::default() };
            let mut bytes = encode(&record);
            for (at, byte) in flips {
                let at = at.index(bytes.len());
                bytes[at] = byte;
            }
            bytes.truncate(cut.index(bytes.len() + 1));
            if let Err(problem) = decode(&bytes) {
                prop_assert!(!problem.is_empty());
            }
        }
    }
}
