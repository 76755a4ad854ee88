//! The breaker's storage over `wasi:keyvalue@0.2.0-draft2` store and atomics
//! (as Spin provides them, shared by all instances of an app).
//!
//! A key's value is its version (8 bytes, little-endian) followed by the
//! breaker's record; each write takes max(previous + 1, the clock in µs), so
//! versions never repeat, even after a key is deleted; compare-and-swap reads the value through an atomics
//! `cas` handle, checks the version and swaps, and the store refuses the swap
//! if the value changed since the handle was made.
//!
//! Caveat: Spin's SQLite store treats a swap on a key that does not exist yet
//! as a plain write, so two instances creating the same breaker's first
//! record at the same moment can both succeed (the later one wins; one
//! fresh record is lost, never a count on an existing one).

mod bindings {
    wit_bindgen::generate!({
        world: "tripswitch:plugins/kv-storage",
        path: ["../../wit", "../wit"],
        generate_all,
    });
}

use std::cell::OnceCell;
use std::rc::Rc;

use bindings::exports::tripswitch::breaker::storage::{Entry, Guest, SwapResult};
use bindings::wasi::keyvalue::atomics::{self, Cas, CasError};
use bindings::wasi::keyvalue::store::{self, Bucket, Error};
use tripswitch_plugin_settings::Settings;

thread_local! {
    /// The opened store, once per instance.
    static BUCKET: OnceCell<Result<Rc<Bucket>, String>> = const { OnceCell::new() };
}

/// The store named by the settings, opened at first use.
fn bucket() -> Result<Rc<Bucket>, String> {
    BUCKET.with(|cell| {
        cell.get_or_init(|| {
            let settings = Settings::from_vars(std::env::vars()).map_err(|e| e.to_string())?;
            store::open(&settings.kv_store).map(Rc::new).map_err(|e| {
                format!(
                    "opening key-value store {:?}: {}",
                    settings.kv_store,
                    describe(&e)
                )
            })
        })
        .clone()
    })
}

fn describe(error: &Error) -> String {
    match error {
        Error::NoSuchStore => "no such store (is it granted to the app component?)".into(),
        Error::AccessDenied => "access denied".into(),
        Error::Other(message) => message.clone(),
    }
}

/// Splits a stored value into its entry.
fn decode(key: &str, value: Vec<u8>) -> Result<Entry, String> {
    if value.len() < 8 {
        return Err(format!(
            "key {key:?} holds {} bytes, not a tripswitch entry",
            value.len()
        ));
    }
    let version = u64::from_le_bytes(value[..8].try_into().expect("8 bytes"));
    Ok(Entry {
        version,
        data: value[8..].to_vec(),
    })
}

fn encode(version: u64, data: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(8 + data.len());
    value.extend_from_slice(&version.to_le_bytes());
    value.extend_from_slice(data);
    value
}

/// Reads the value a cas handle saw.
fn current(key: &str, cas: &Cas) -> Result<Option<Entry>, String> {
    cas.current()
        .map_err(|e| format!("reading {key:?}: {}", describe(&e)))?
        .map(|value| decode(key, value))
        .transpose()
}

struct Component;

impl Guest for Component {
    fn load(key: String) -> Result<Option<Entry>, String> {
        let bucket = bucket()?;
        bucket
            .get(&key)
            .map_err(|e| format!("reading {key:?}: {}", describe(&e)))?
            .map(|value| decode(&key, value))
            .transpose()
    }

    fn compare_and_swap(
        key: String,
        expected: Option<u64>,
        data: Vec<u8>,
    ) -> Result<SwapResult, String> {
        let bucket = bucket()?;
        let cas =
            Cas::new(&bucket, &key).map_err(|e| format!("watching {key:?}: {}", describe(&e)))?;
        let seen = current(&key, &cas)?;
        if seen.as_ref().map(|entry| entry.version) != expected {
            return Ok(SwapResult::Conflict(seen));
        }
        // Versions never repeat, even after the key is deleted or lost: a
        // key (re)created starts from the clock, in µs.
        let version = expected.unwrap_or(0).saturating_add(1).max(now_micros());
        match atomics::swap(cas, &encode(version, &data)) {
            Ok(()) => Ok(SwapResult::Written(version)),
            Err(CasError::CasFailed(_)) => Ok(SwapResult::Conflict(Self::load(key)?)),
            Err(CasError::StoreError(e)) => Err(format!("writing {key:?}: {}", describe(&e))),
        }
    }
}

/// Unix time in µs (0 if the clock is before 1970).
fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
        })
}

bindings::export!(Component with_types_in bindings);
