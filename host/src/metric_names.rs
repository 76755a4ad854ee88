//! The metric names every host uses, in the Prometheus conventions
//! (resilience4j's where they map), with their labels: the host library's
//! `metrics` feature, `tripswitch proxy --metrics`, and the Envoy filter
//! (through `tripswitch-core`, which includes this file: the published
//! crate depends on no other of the workspace's).

/// Counter: calls admitted, by `breaker`.
pub const ADMITTED: &str = "tripswitch_admitted_calls_total";
/// Counter: admitted calls that ended, by `breaker` and `outcome`
/// (`success`, `failure`, `ignored`: cancelled).
pub const CALLS: &str = "tripswitch_calls_total";
/// Counter: calls refused, by `breaker` and `reason` (`open`,
/// `half-open-full`, `forced-open`, `storage-unavailable`).
pub const NOT_PERMITTED: &str = "tripswitch_not_permitted_calls_total";
/// Gauge: 1 for the breaker's state, 0 for the others, by `breaker` and `state`.
pub const STATE: &str = "tripswitch_state";
/// Counter: state changes, by `breaker`, `from`, `to` and `remote`
/// (`true` when another process made it: sum `remote="false"` over a
/// fleet to count each change once).
pub const TRANSITIONS: &str = "tripswitch_transitions_total";
/// Gauge: the window's failure rate in percent, by `breaker` (NaN while
/// the window holds no calls, or the breaker has no window).
pub const FAILURE_RATE: &str = "tripswitch_failure_rate";
/// Gauge: the window's slow-call rate in percent, by `breaker` (NaN as above).
pub const SLOW_CALL_RATE: &str = "tripswitch_slow_call_rate";
/// Gauge: calls the window holds now, by `breaker`.
pub const WINDOW_CALLS: &str = "tripswitch_window_calls";
/// Counter: notices, by `breaker` and `kind` (`window-restarted`), each
/// counted by the one process that did it.
pub const NOTICES: &str = "tripswitch_notices_total";

/// Whether a metric counts up or is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only grows.
    Counter,
    /// Set to a value.
    Gauge,
}

/// Every metric: its name, kind and help text (Prometheus' `# HELP`).
pub const ALL: [(&str, Kind, &str); 9] = [
    (ADMITTED, Kind::Counter, "Calls the breaker admitted."),
    (
        CALLS,
        Kind::Counter,
        "Admitted calls that ended, by outcome (ignored: cancelled).",
    ),
    (
        NOT_PERMITTED,
        Kind::Counter,
        "Calls the breaker refused, by reason.",
    ),
    (
        STATE,
        Kind::Gauge,
        "1 for the breaker's state, 0 for the others.",
    ),
    (
        TRANSITIONS,
        Kind::Counter,
        "State changes; remote=\"true\" when another process made it.",
    ),
    (
        FAILURE_RATE,
        Kind::Gauge,
        "The window's failure rate in percent (NaN: no calls in it, or no window).",
    ),
    (
        SLOW_CALL_RATE,
        Kind::Gauge,
        "The window's slow-call rate in percent (NaN: no calls in it, or no window).",
    ),
    (WINDOW_CALLS, Kind::Gauge, "Calls the window holds."),
    (
        NOTICES,
        Kind::Counter,
        "What a breaker did besides changing state, by kind (window-restarted).",
    ),
];
