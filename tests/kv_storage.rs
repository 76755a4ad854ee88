//! The Spin storage adapter (`tripswitch-kv-storage`, over
//! `wasi:keyvalue@0.2.0-draft2`) through its `tripswitch:breaker/storage`
//! export, on the stand-in keyvalue store: the versioned register's contract
//! and its errors, in wasmtime.

use std::path::Path;

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

wasmtime::component::bindgen!({
    path: "../wit",
    inline: "
        package tripswitch:kv-storage-test;

        world storage-provider {
            export tripswitch:breaker/storage@0.3.0;
        }
    ",
    world: "tripswitch:kv-storage-test/storage-provider",
    additional_derives: [PartialEq],
});

use exports::tripswitch::breaker::storage::{Entry, SwapResult};

struct Host {
    table: ResourceTable,
    wasi: WasiCtx,
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The adapter on a fresh stand-in store, with `env` as its environment.
struct Adapter {
    store: Store<Host>,
    storage: StorageProvider,
}

impl Adapter {
    fn start(env: &[(&str, &str)]) -> Adapter {
        let engine = Engine::default();
        let path = Path::new(env!("OUT_DIR")).join("kv-storage-on-store.wasm");
        let component = Component::from_file(&engine, &path).expect("loading the adapter");
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).expect("linking WASI");
        let mut wasi = WasiCtx::builder();
        wasi.inherit_stderr();
        for (name, value) in env {
            wasi.env(name, value);
        }
        let mut store = Store::new(
            &engine,
            Host {
                table: ResourceTable::new(),
                wasi: wasi.build(),
            },
        );
        let storage = StorageProvider::instantiate(&mut store, &component, &linker)
            .expect("instantiating the adapter");
        Adapter { store, storage }
    }

    fn load(&mut self, key: &str) -> Result<Option<Entry>, String> {
        let guest = self.storage.tripswitch_breaker_storage();
        guest.call_load(&mut self.store, key).expect("no trap")
    }

    fn swap(
        &mut self,
        key: &str,
        expected: Option<u64>,
        data: &[u8],
    ) -> Result<SwapResult, String> {
        let guest = self.storage.tripswitch_breaker_storage();
        guest
            .call_compare_and_swap(&mut self.store, key, expected, data)
            .expect("no trap")
    }
}

fn entry(version: u64, data: &[u8]) -> Option<Entry> {
    Some(Entry {
        version,
        data: data.to_vec(),
    })
}

/// The version a swap wrote.
fn written(result: Result<SwapResult, String>) -> u64 {
    match result {
        Ok(SwapResult::Written(version)) => version,
        other => panic!("expected a write, got {other:?}"),
    }
}

#[test]
fn it_is_a_versioned_register() {
    let mut adapter = Adapter::start(&[]);
    assert_eq!(adapter.load("orders"), Ok(None));
    let first = written(adapter.swap("orders", None, b"first"));
    assert_eq!(adapter.load("orders"), Ok(entry(first, b"first")));
    // Creating a key that exists, or writing from a stale version, conflicts
    // and hands back what is there; nothing is written.
    assert_eq!(
        adapter.swap("orders", None, b"again"),
        Ok(SwapResult::Conflict(entry(first, b"first")))
    );
    let second = written(adapter.swap("orders", Some(first), b"second"));
    assert!(second > first, "{second} after {first}");
    assert_eq!(
        adapter.swap("orders", Some(first), b"stale"),
        Ok(SwapResult::Conflict(entry(second, b"second")))
    );
    // Writing to an absent key from a version conflicts with nothing there.
    assert_eq!(
        adapter.swap("payments", Some(4), b"x"),
        Ok(SwapResult::Conflict(None))
    );
    assert_eq!(adapter.load("orders"), Ok(entry(second, b"second")));
    assert_eq!(adapter.load("payments"), Ok(None));
}

#[test]
fn versions_never_repeat_after_a_key_is_lost() {
    let mut before = Adapter::start(&[]);
    let first = written(before.swap("orders", None, b"first"));
    let second = written(before.swap("orders", Some(first), b"second"));
    // A fresh store: the key is gone, as after a delete or a lost store. A
    // host that saw `second` must not take the new record for it.
    let mut after = Adapter::start(&[]);
    let again = written(after.swap("orders", None, b"again"));
    assert!(again > second, "{again} after {second}: a version repeated");
}

#[test]
fn keys_live_in_the_configured_store() {
    // Only the store called "seeded" holds the key "short".
    assert_eq!(Adapter::start(&[]).load("short"), Ok(None));
    let mut breakers = Adapter::start(&[("TRIPSWITCH_KV_STORE", "breakers")]);
    assert_eq!(breakers.load("short"), Ok(None));
    let mut seeded = Adapter::start(&[("TRIPSWITCH_KV_STORE", "seeded")]);
    assert!(seeded.load("short").is_err());
}

#[test]
fn a_value_that_is_no_entry_is_named() {
    let mut adapter = Adapter::start(&[("TRIPSWITCH_KV_STORE", "seeded")]);
    let error = adapter.load("short").unwrap_err();
    assert_eq!(error, "key \"short\" holds 3 bytes, not a tripswitch entry");
    let error = adapter.swap("short", Some(1), b"x").unwrap_err();
    assert!(error.contains("not a tripswitch entry"), "{error}");
}

#[test]
fn a_store_that_does_not_exist_is_named() {
    let mut adapter = Adapter::start(&[("TRIPSWITCH_KV_STORE", "missing")]);
    let error = adapter.load("orders").unwrap_err();
    assert!(
        error.contains("opening key-value store \"missing\": no such store"),
        "{error}"
    );
    let error = adapter.swap("orders", None, b"x").unwrap_err();
    assert!(error.contains("no such store"), "{error}");
}

#[test]
fn bad_settings_are_named() {
    let mut adapter = Adapter::start(&[("TRIPSWITCH_KV_STOER", "x")]);
    let error = adapter.load("orders").unwrap_err();
    assert!(
        error.contains("TRIPSWITCH_KV_STOER: unknown setting"),
        "{error}"
    );
}
