//! The breaker's events as log lines on stderr (which Spin and `wasmtime
//! serve` keep as the app's log), in the format every tripswitch host uses.

mod bindings {
    wit_bindgen::generate!({
        world: "tripswitch:plugins/log-events",
        path: ["../../wit", "../wit"],
        generate_all,
    });
}

use bindings::exports::tripswitch::breaker::events::Guest;
use bindings::tripswitch::breaker::types::{Notice, State, StateChange};
use tripswitch_plugin_settings::state_change_line;

struct Component;

impl Guest for Component {
    fn state_changed(change: StateChange) {
        let name = |state: State| match state {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half-open",
            State::ForcedOpen => "forced-open",
            State::Disabled => "disabled",
        };
        eprintln!(
            "{}",
            state_change_line(
                &change.breaker,
                name(change.previous),
                name(change.current),
                change.remote
            )
        );
    }

    fn noticed(_breaker: String, notice: Notice) {
        // The message names the breaker.
        eprintln!("tripswitch: {}", notice.message);
    }
}

bindings::export!(Component with_types_in bindings);
