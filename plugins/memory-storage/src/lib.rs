//! The breaker's storage in the component's own memory, for demo hosts such
//! as `wasmtime serve`: state lasts as long as the instance (hosts recycle
//! instances, so production hosts need a shared storage instead).

mod bindings {
    wit_bindgen::generate!({
        world: "tripswitch:plugins/memory-storage",
        path: ["../../wit", "../wit"],
        generate_all,
    });
}

use std::cell::RefCell;
use std::collections::HashMap;

use bindings::exports::tripswitch::breaker::storage::{Entry, Guest, SwapResult};

thread_local! {
    /// Each key's version and data.
    static ENTRIES: RefCell<HashMap<String, Entry>> = RefCell::new(HashMap::new());
}

struct Component;

impl Guest for Component {
    fn load(key: String) -> Result<Option<Entry>, String> {
        Ok(ENTRIES.with(|entries| entries.borrow().get(&key).cloned()))
    }

    fn compare_and_swap(
        key: String,
        expected: Option<u64>,
        data: Vec<u8>,
    ) -> Result<SwapResult, String> {
        ENTRIES.with(|entries| {
            let mut entries = entries.borrow_mut();
            let current = entries.get(&key);
            if current.map(|entry| entry.version) != expected {
                return Ok(SwapResult::Conflict(current.cloned()));
            }
            let version = expected.unwrap_or(0) + 1;
            entries.insert(key, Entry { version, data });
            Ok(SwapResult::Written(version))
        })
    }
}

bindings::export!(Component with_types_in bindings);
