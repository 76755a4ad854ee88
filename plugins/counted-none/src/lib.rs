//! The middleware's counts told to nobody: the `counted` import plugged for
//! hosts that keep no meter of the plugin's (Spin, `wasmtime serve`), which
//! see state changes in the log instead.

mod bindings {
    wit_bindgen::generate!({
        world: "tripswitch:plugins/counted-none",
        path: ["../../wit", "../wit"],
        generate_all,
    });
}

use bindings::exports::tripswitch::plugins::counted::Guest;
use bindings::tripswitch::breaker::types::{Outcome, Refusal};

struct Component;

impl Guest for Component {
    fn admitted(_breaker: String) {}

    fn rejected(_breaker: String, _refusal: Refusal) {}

    fn reported(_breaker: String, _outcome: Outcome) {}
}

bindings::export!(Component with_types_in bindings);
