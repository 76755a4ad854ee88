//! The breaker's storage in Envoy's shared data: a versioned register, the
//! `Port` the core breaker runs on, shared by every worker of one Envoy.
//!
//! Envoy's CAS token makes each write atomic, but it is not checked for a
//! key that does not exist yet, and it is a process-wide counter. So the
//! stored value carries a version of its own (8 bytes, big-endian, before the
//! record), and the keys are created once, when the filter is first
//! configured, before any worker serves: a request never creates a key.

use tripswitch_core::breaker::{Stored, Swap};

/// Envoy's shared data, as the register uses it.
pub trait SharedData {
    /// The value under `key` and its CAS token, if there is one.
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// Writes `key` if its CAS token is still `cas` (none: unconditionally);
    /// false on a mismatch.
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool;
}

/// Tries of a write that keeps meeting other workers' writes.
const TRIES: usize = 64;

/// The shared-data key of a breaker's record.
pub fn record_key(breaker: &str) -> String {
    format!("tripswitch/{breaker}/record")
}

/// The shared-data key of the last generation logged for a breaker.
pub fn told_key(breaker: &str) -> String {
    format!("tripswitch/{breaker}/told")
}

/// A versioned register over shared data.
pub struct Register<S> {
    data: S,
}

impl<S: SharedData> Register<S> {
    /// A register over `data`.
    pub fn new(data: S) -> Self {
        Register { data }
    }

    /// Writes `value` under `key`, version 1, unless the key exists (a
    /// reload of the configuration keeps what is there). Call it where no
    /// other worker can race it: Envoy's main thread, at configure time.
    /// Returns whether it wrote.
    pub fn create(&self, key: &str, value: &[u8]) -> bool {
        self.create_raw(key, &versioned(1, value))
    }

    /// Creates a told key, with no generation told, unless it exists; the
    /// same rules as [`Register::create`].
    pub fn create_told(&self, key: &str) -> bool {
        self.create_raw(key, &0u64.to_be_bytes())
    }

    fn create_raw(&self, key: &str, bytes: &[u8]) -> bool {
        if self.data.get(key).is_some() {
            return false;
        }
        self.data.set(key, bytes, None)
    }

    /// The entry under `key`.
    pub fn load(&self, key: &str) -> Result<Option<Stored>, String> {
        match self.data.get(key) {
            None => Ok(None),
            Some((bytes, _)) => split(key, &bytes).map(Some),
        }
    }

    /// Writes `value` under `key` if its version is `expected`.
    pub fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<u64>,
        value: &[u8],
    ) -> Result<Swap, String> {
        let Some(expected) = expected else {
            return match self.load(key)? {
                Some(current) => Ok(Swap::Conflict(Some(current))),
                None => Err(missing(key)),
            };
        };
        let Some((bytes, cas)) = self.data.get(key) else {
            return Err(missing(key));
        };
        let current = split(key, &bytes)?;
        if current.version != expected {
            return Ok(Swap::Conflict(Some(current)));
        }
        let version = expected.wrapping_add(1);
        if self.data.set(key, &versioned(version, value), Some(cas)) {
            Ok(Swap::Written(version))
        } else {
            // Another worker wrote between the read and the write.
            Ok(Swap::Conflict(self.load(key)?))
        }
    }

    /// Claims the telling of `generation` under `key`: true for the first
    /// caller of this Envoy to claim it (or a later generation), false after.
    pub fn claim(&self, key: &str, generation: u64) -> bool {
        for _ in 0..TRIES {
            let Some((bytes, cas)) = self.data.get(key) else {
                return false;
            };
            let told = bytes
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_be_bytes);
            if told >= generation {
                return false;
            }
            if self.data.set(key, &generation.to_be_bytes(), Some(cas)) {
                return true;
            }
        }
        false
    }
}

fn versioned(version: u64, record: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(8 + record.len());
    bytes.extend_from_slice(&version.to_be_bytes());
    bytes.extend_from_slice(record);
    bytes
}

fn split(key: &str, bytes: &[u8]) -> Result<Stored, String> {
    match bytes.split_first_chunk::<8>() {
        Some((version, data)) => Ok(Stored {
            version: u64::from_be_bytes(*version),
            data: data.to_vec(),
        }),
        None => Err(format!(
            "shared data {key:?} holds {} bytes, too few for a version",
            bytes.len()
        )),
    }
}

fn missing(key: &str) -> String {
    format!("shared data {key:?} is missing (the filter creates it when it is configured)")
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use super::*;

    /// Envoy's rules: a token per write from one counter; a token is checked
    /// only for a key that exists.
    #[derive(Default)]
    struct Envoy {
        map: RefCell<HashMap<String, (Vec<u8>, u32)>>,
        next_cas: RefCell<u32>,
        /// Writes another worker slips in before the next checked set.
        race: RefCell<Vec<(String, Vec<u8>)>>,
    }

    impl SharedData for &Envoy {
        fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
            self.map.borrow().get(key).cloned()
        }

        fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
            for (key, value) in self.race.borrow_mut().drain(..) {
                self.write(&key, &value);
            }
            let current = self.map.borrow().get(key).map(|(_, cas)| *cas);
            if let (Some(cas), Some(current)) = (cas, current)
                && cas != current
            {
                return false;
            }
            self.write(key, value);
            true
        }
    }

    impl Envoy {
        fn write(&self, key: &str, value: &[u8]) {
            let mut next = self.next_cas.borrow_mut();
            *next += 1;
            self.map
                .borrow_mut()
                .insert(key.to_owned(), (value.to_vec(), *next));
        }
    }

    #[test]
    fn create_writes_only_an_absent_key() {
        let envoy = Envoy::default();
        let register = Register::new(&envoy);
        assert!(register.create("k", b"first"));
        assert!(!register.create("k", b"second"), "a reload keeps the state");
        let stored = register.load("k").unwrap().unwrap();
        assert_eq!((stored.version, stored.data.as_slice()), (1, &b"first"[..]));
    }

    #[test]
    fn a_swap_needs_the_current_version_and_bumps_it() {
        let envoy = Envoy::default();
        let register = Register::new(&envoy);
        register.create("k", b"a");
        assert_eq!(
            register.compare_and_swap("k", Some(1), b"b"),
            Ok(Swap::Written(2))
        );
        let stale = register.compare_and_swap("k", Some(1), b"c").unwrap();
        assert_eq!(
            stale,
            Swap::Conflict(Some(Stored {
                version: 2,
                data: b"b".to_vec()
            }))
        );
        // A key that exists is never written as if absent.
        assert!(matches!(
            register.compare_and_swap("k", None, b"d"),
            Ok(Swap::Conflict(Some(_)))
        ));
    }

    #[test]
    fn a_write_that_loses_a_race_is_a_conflict_with_the_winner() {
        let envoy = Envoy::default();
        let register = Register::new(&envoy);
        register.create("k", b"a");
        envoy
            .race
            .borrow_mut()
            .push(("k".into(), versioned(2, b"winner")));
        let lost = register.compare_and_swap("k", Some(1), b"loser").unwrap();
        assert_eq!(
            lost,
            Swap::Conflict(Some(Stored {
                version: 2,
                data: b"winner".to_vec()
            }))
        );
    }

    #[test]
    fn a_request_never_creates_a_key() {
        let envoy = Envoy::default();
        let register = Register::new(&envoy);
        assert_eq!(register.load("k"), Ok(None));
        for expected in [None, Some(1)] {
            let error = register.compare_and_swap("k", expected, b"x").unwrap_err();
            assert!(error.contains("missing"), "{error}");
        }
        assert!(envoy.map.borrow().is_empty());
    }

    #[test]
    fn a_value_too_short_for_a_version_is_an_error() {
        let envoy = Envoy::default();
        (&envoy).set("k", b"abc", None);
        let error = Register::new(&envoy).load("k").unwrap_err();
        assert!(error.contains("3 bytes"), "{error}");
    }

    #[test]
    fn each_generation_is_claimed_once() {
        let envoy = Envoy::default();
        let register = Register::new(&envoy);
        assert!(
            !register.claim("told", 1),
            "no told key: nothing is claimed"
        );
        assert!(register.create_told("told"));
        assert!(!register.create_told("told"));
        assert!(register.claim("told", 1));
        assert!(!register.claim("told", 1));
        assert!(register.claim("told", 3));
        assert!(
            !register.claim("told", 2),
            "an older generation comes too late"
        );
        envoy
            .race
            .borrow_mut()
            .push(("told".into(), 4u64.to_be_bytes().to_vec()));
        assert!(
            !register.claim("told", 4),
            "another worker claimed it first"
        );
        assert!(register.claim("told", 5));
    }
}
