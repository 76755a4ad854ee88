//! The HTTP plugin's settings: `TRIPSWITCH_*` variables, parsed the same way
//! by the middleware (inside every host) and by `tripswitch proxy` (which
//! checks them before it serves).
//!
//! Also the one line every host logs a state change as, and the answer
//! every proxy gives a refused request (`reply`).
//!
//! Only the names and the syntax live here. Which values a breaker accepts,
//! and the defaults of the knobs left unset, live in the breaker component.

#![warn(missing_docs)]

mod json;
mod reply;

pub use reply::{Refusal, Refused, TRIPSWITCH_HEADER, refusal};

use std::fmt;

/// Every variable of ours starts with this.
pub const PREFIX: &str = "TRIPSWITCH_";

/// The breaker's name (its storage key); default [`DEFAULT_BREAKER`].
pub const BREAKER: &str = "TRIPSWITCH_BREAKER";
/// Consecutive failures that open the circuit.
pub const FAIL_MAX: &str = "TRIPSWITCH_FAIL_MAX";
/// How long the circuit stays open before a trial, in ms.
pub const RESET_TIMEOUT_MS: &str = "TRIPSWITCH_RESET_TIMEOUT_MS";
/// Trial successes in half-open that close the circuit.
pub const SUCCESS_THRESHOLD: &str = "TRIPSWITCH_SUCCESS_THRESHOLD";
/// Trials allowed in flight at once in half-open.
pub const HALF_OPEN_MAX_CALLS: &str = "TRIPSWITCH_HALF_OPEN_MAX_CALLS";
/// How long a trial may run before its slot is forfeited, in ms.
pub const TRIAL_TIMEOUT_MS: &str = "TRIPSWITCH_TRIAL_TIMEOUT_MS";
/// What the breaker does when its storage fails: closed, open or forced-open.
pub const FALLBACK_STATE: &str = "TRIPSWITCH_FALLBACK_STATE";
/// Response statuses counted as failures; default [`DEFAULT_FAILURE_STATUS`].
pub const FAILURE_STATUS: &str = "TRIPSWITCH_FAILURE_STATUS";
/// The key-value store the Spin storage adapter opens; default "default".
pub const KV_STORE: &str = "TRIPSWITCH_KV_STORE";
/// The failure rate (percent) at which the window opens the circuit.
pub const FAILURE_RATE_THRESHOLD: &str = "TRIPSWITCH_FAILURE_RATE_THRESHOLD";
/// Calls the window must hold before its rates count.
pub const MINIMUM_CALLS: &str = "TRIPSWITCH_MINIMUM_CALLS";
/// A time window of this many ms.
pub const WINDOW_MS: &str = "TRIPSWITCH_WINDOW_MS";
/// A count window of the last this many calls.
pub const WINDOW_CALLS: &str = "TRIPSWITCH_WINDOW_CALLS";
/// A call that takes longer than this many ms is slow.
pub const SLOW_CALL_MS: &str = "TRIPSWITCH_SLOW_CALL_MS";
/// The slow-call rate (percent) at which the window opens the circuit.
pub const SLOW_CALL_RATE_THRESHOLD: &str = "TRIPSWITCH_SLOW_CALL_RATE_THRESHOLD";
/// Each open after a failed trial waits this many times the one before.
pub const BACKOFF_MULTIPLIER: &str = "TRIPSWITCH_BACKOFF_MULTIPLIER";
/// The longest an open waits, in ms.
pub const MAX_RESET_TIMEOUT_MS: &str = "TRIPSWITCH_MAX_RESET_TIMEOUT_MS";

/// Every variable we read, for the message about an unknown one.
pub const KNOWN: [&str; 17] = [
    BREAKER,
    FAIL_MAX,
    RESET_TIMEOUT_MS,
    SUCCESS_THRESHOLD,
    HALF_OPEN_MAX_CALLS,
    TRIAL_TIMEOUT_MS,
    FALLBACK_STATE,
    FAILURE_STATUS,
    KV_STORE,
    FAILURE_RATE_THRESHOLD,
    MINIMUM_CALLS,
    WINDOW_MS,
    WINDOW_CALLS,
    SLOW_CALL_MS,
    SLOW_CALL_RATE_THRESHOLD,
    BACKOFF_MULTIPLIER,
    MAX_RESET_TIMEOUT_MS,
];

/// The variables whose values are whole numbers (JSON numbers in a JSON
/// configuration); the others are text, but for [`DECIMAL`].
pub const NUMERIC: [&str; 12] = [
    FAIL_MAX,
    RESET_TIMEOUT_MS,
    SUCCESS_THRESHOLD,
    HALF_OPEN_MAX_CALLS,
    TRIAL_TIMEOUT_MS,
    FAILURE_RATE_THRESHOLD,
    MINIMUM_CALLS,
    WINDOW_MS,
    WINDOW_CALLS,
    SLOW_CALL_MS,
    SLOW_CALL_RATE_THRESHOLD,
    MAX_RESET_TIMEOUT_MS,
];

/// The variables whose values are decimal numbers (JSON numbers too).
pub const DECIMAL: [&str; 1] = [BACKOFF_MULTIPLIER];

/// Variables of tripswitch's own build and tests that share our prefix but
/// are not plugin settings: ignored, never reported as unknown.
pub const NOT_SETTINGS: [&str; 3] = [
    "TRIPSWITCH_COMPONENT",
    "TRIPSWITCH_WASMTIME",
    "TRIPSWITCH_ENVOY",
];

/// The breaker name used when [`BREAKER`] is unset.
pub const DEFAULT_BREAKER: &str = "upstream";
/// The failure statuses used when [`FAILURE_STATUS`] is unset.
pub const DEFAULT_FAILURE_STATUS: &str = "500-599";
/// The store the Spin adapter opens when [`KV_STORE`] is unset.
pub const DEFAULT_KV_STORE: &str = "default";

/// The state a breaker falls back to when its storage fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fallback {
    /// Admit calls.
    Closed,
    /// Reject calls (with the open circuit's answer).
    Open,
    /// Reject calls as forced open.
    ForcedOpen,
}

/// The breaker's knobs; `None` leaves the component's default.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Knobs {
    /// See [`FAIL_MAX`].
    pub fail_max: Option<u32>,
    /// See [`RESET_TIMEOUT_MS`].
    pub reset_timeout_ms: Option<u64>,
    /// See [`SUCCESS_THRESHOLD`].
    pub success_threshold: Option<u32>,
    /// See [`HALF_OPEN_MAX_CALLS`].
    pub half_open_max_calls: Option<u32>,
    /// See [`TRIAL_TIMEOUT_MS`].
    pub trial_timeout_ms: Option<u64>,
    /// See [`FALLBACK_STATE`].
    pub fallback_state: Option<Fallback>,
    /// See [`FAILURE_RATE_THRESHOLD`].
    pub failure_rate_threshold: Option<u8>,
    /// See [`MINIMUM_CALLS`].
    pub minimum_calls: Option<u32>,
    /// See [`WINDOW_MS`].
    pub window_ms: Option<u64>,
    /// See [`WINDOW_CALLS`].
    pub window_calls: Option<u32>,
    /// See [`SLOW_CALL_MS`].
    pub slow_call_ms: Option<u64>,
    /// See [`SLOW_CALL_RATE_THRESHOLD`].
    pub slow_call_rate_threshold: Option<u8>,
    /// See [`BACKOFF_MULTIPLIER`].
    pub backoff_multiplier: Option<f64>,
    /// See [`MAX_RESET_TIMEOUT_MS`].
    pub max_reset_timeout_ms: Option<u64>,
}

/// A set of HTTP statuses, as inclusive ranges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusSet(Vec<(u16, u16)>);

impl StatusSet {
    /// Parses `"500-599"`, `"502,503,504"` or a mix (`"429,500-599"`).
    pub fn parse(text: &str) -> Result<StatusSet, String> {
        let mut ranges = Vec::new();
        for part in text.split(',').map(str::trim) {
            let (low, high) = part.split_once('-').unwrap_or((part, part));
            let low = status(low.trim(), part)?;
            let high = status(high.trim(), part)?;
            if low > high {
                return Err(format!("{part:?} is an empty range"));
            }
            ranges.push((low, high));
        }
        Ok(StatusSet(ranges))
    }

    /// Whether `code` is in the set.
    pub fn contains(&self, code: u16) -> bool {
        self.0
            .iter()
            .any(|&(low, high)| (low..=high).contains(&code))
    }
}

fn status(text: &str, part: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(code) if (100..=599).contains(&code) => Ok(code),
        Ok(_) => Err(format!("{part:?}: a status is between 100 and 599")),
        Err(_) => Err(format!(
            "{part:?} is not a status or a range of statuses (like 500-599)"
        )),
    }
}

/// The plugin's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// The breaker's name.
    pub breaker: String,
    /// The breaker's knobs.
    pub knobs: Knobs,
    /// Response statuses counted as failures.
    pub failure_status: StatusSet,
    /// The key-value store the Spin adapter opens.
    pub kv_store: String,
}

/// A setting that could not be used: the variable and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingsError {
    /// The variable's name.
    pub variable: String,
    /// What is wrong with it.
    pub problem: String,
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.variable, self.problem)
    }
}

impl std::error::Error for SettingsError {}

impl Settings {
    /// Reads the settings from `(name, value)` pairs, such as the process
    /// environment; variables without our prefix are ignored, and an unknown
    /// one with it is an error (a misspelt knob must not go unnoticed).
    pub fn from_vars<I, K, V>(vars: I) -> Result<Settings, SettingsError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut settings = Settings {
            breaker: DEFAULT_BREAKER.to_owned(),
            knobs: Knobs::default(),
            failure_status: StatusSet::parse(DEFAULT_FAILURE_STATUS).expect("a valid default"),
            kv_store: DEFAULT_KV_STORE.to_owned(),
        };
        for (name, value) in vars {
            let (name, value) = (name.as_ref(), value.as_ref());
            if !name.starts_with(PREFIX) || NOT_SETTINGS.contains(&name) {
                continue;
            }
            let fail = |problem: String| SettingsError {
                variable: name.to_owned(),
                problem,
            };
            let knobs = &mut settings.knobs;
            match name {
                BREAKER if value.trim().is_empty() => {
                    return Err(fail("the breaker's name is empty".into()));
                }
                BREAKER => settings.breaker = value.trim().to_owned(),
                FAIL_MAX => knobs.fail_max = Some(number(value).map_err(fail)?),
                RESET_TIMEOUT_MS => knobs.reset_timeout_ms = Some(number(value).map_err(fail)?),
                SUCCESS_THRESHOLD => knobs.success_threshold = Some(number(value).map_err(fail)?),
                HALF_OPEN_MAX_CALLS => {
                    knobs.half_open_max_calls = Some(number(value).map_err(fail)?)
                }
                TRIAL_TIMEOUT_MS => knobs.trial_timeout_ms = Some(number(value).map_err(fail)?),
                FAILURE_RATE_THRESHOLD => {
                    knobs.failure_rate_threshold = Some(number(value).map_err(fail)?)
                }
                MINIMUM_CALLS => knobs.minimum_calls = Some(number(value).map_err(fail)?),
                WINDOW_MS => knobs.window_ms = Some(number(value).map_err(fail)?),
                WINDOW_CALLS => knobs.window_calls = Some(number(value).map_err(fail)?),
                SLOW_CALL_MS => knobs.slow_call_ms = Some(number(value).map_err(fail)?),
                SLOW_CALL_RATE_THRESHOLD => {
                    knobs.slow_call_rate_threshold = Some(number(value).map_err(fail)?)
                }
                BACKOFF_MULTIPLIER => {
                    knobs.backoff_multiplier = Some(decimal(value).map_err(fail)?)
                }
                MAX_RESET_TIMEOUT_MS => {
                    knobs.max_reset_timeout_ms = Some(number(value).map_err(fail)?)
                }
                FALLBACK_STATE => {
                    knobs.fallback_state = Some(match value.trim() {
                        "closed" => Fallback::Closed,
                        "open" => Fallback::Open,
                        "forced-open" => Fallback::ForcedOpen,
                        other => {
                            return Err(fail(format!(
                                "{other:?} is not one of closed, open, forced-open"
                            )));
                        }
                    })
                }
                FAILURE_STATUS => {
                    settings.failure_status = StatusSet::parse(value).map_err(fail)?
                }
                KV_STORE if value.trim().is_empty() => {
                    return Err(fail("the store's name is empty".into()));
                }
                KV_STORE => settings.kv_store = value.trim().to_owned(),
                _ => {
                    return Err(fail(format!(
                        "unknown setting; the known ones are {}",
                        KNOWN.join(", ")
                    )));
                }
            }
        }
        Ok(settings)
    }
}

fn number<T: std::str::FromStr>(value: &str) -> Result<T, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("{value:?} is not a whole number in range"))
}

fn decimal(value: &str) -> Result<f64, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("{value:?} is not a number"))
}

/// The variable that sets a config field the breaker component names in
/// its errors (`fail-max`: `TRIPSWITCH_FAIL_MAX`, `name`: [`BREAKER`]); a
/// field no variable sets is given in parentheses.
pub fn variable_for(field: &str) -> String {
    if field == "name" {
        return BREAKER.to_owned();
    }
    let name = format!("{PREFIX}{}", field.to_uppercase().replace('-', "_"));
    if KNOWN.contains(&name.as_str()) {
        name
    } else {
        format!("({field})")
    }
}

/// The JSON configuration key that sets a config field the breaker
/// component names in its errors (`fail-max`: `fail_max`, `name`:
/// `breaker`); a field no key sets is given in parentheses.
pub fn key_for(field: &str) -> String {
    json::key(&variable_for(field))
}

/// The line a state change is logged as, in every host:
/// `tripswitch: breaker NAME: closed -> open`, marked when another process
/// (or instance) made the change.
pub fn state_change_line(breaker: &str, previous: &str, current: &str, remote: bool) -> String {
    let note = if remote { " (changed elsewhere)" } else { "" };
    format!("tripswitch: breaker {breaker}: {previous} -> {current}{note}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        Settings::from_vars(vars.iter().copied())
    }

    #[test]
    fn defaults_leave_knobs_to_the_component() {
        let settings = parse(&[
            ("PATH", "/bin"),
            ("HOME", "/"),
            ("TRIPSWITCH_COMPONENT", "breaker.wasm"),
            ("TRIPSWITCH_WASMTIME", "/usr/bin/wasmtime"),
            ("TRIPSWITCH_ENVOY", "/usr/bin/envoy"),
        ])
        .unwrap();
        assert_eq!(settings.breaker, "upstream");
        assert_eq!(settings.knobs, Knobs::default());
        assert!(settings.failure_status.contains(500) && settings.failure_status.contains(599));
        assert!(!settings.failure_status.contains(499));
        assert_eq!(settings.kv_store, "default");
    }

    #[test]
    fn every_knob_is_read() {
        let settings = parse(&[
            (BREAKER, "orders"),
            (FAIL_MAX, "3"),
            (RESET_TIMEOUT_MS, "2500"),
            (SUCCESS_THRESHOLD, "2"),
            (HALF_OPEN_MAX_CALLS, "4"),
            (TRIAL_TIMEOUT_MS, "900"),
            (FALLBACK_STATE, "forced-open"),
            (FAILURE_STATUS, "429, 502-504"),
            (KV_STORE, "breakers"),
        ])
        .unwrap();
        assert_eq!(settings.breaker, "orders");
        assert_eq!(
            settings.knobs,
            Knobs {
                fail_max: Some(3),
                reset_timeout_ms: Some(2500),
                success_threshold: Some(2),
                half_open_max_calls: Some(4),
                trial_timeout_ms: Some(900),
                fallback_state: Some(Fallback::ForcedOpen),
                ..Knobs::default()
            }
        );
        let statuses = &settings.failure_status;
        assert!(statuses.contains(429) && statuses.contains(503));
        assert!(!statuses.contains(500) && !statuses.contains(505));
        assert_eq!(settings.kv_store, "breakers");
    }

    #[test]
    fn the_window_and_backoff_knobs_are_read() {
        let settings = parse(&[
            (FAILURE_RATE_THRESHOLD, "50"),
            (MINIMUM_CALLS, "20"),
            (WINDOW_MS, "10000"),
            (WINDOW_CALLS, "100"),
            (SLOW_CALL_MS, "250"),
            (SLOW_CALL_RATE_THRESHOLD, "80"),
            (BACKOFF_MULTIPLIER, "1.5"),
            (MAX_RESET_TIMEOUT_MS, "300000"),
        ])
        .unwrap();
        assert_eq!(
            settings.knobs,
            Knobs {
                failure_rate_threshold: Some(50),
                minimum_calls: Some(20),
                window_ms: Some(10_000),
                window_calls: Some(100),
                slow_call_ms: Some(250),
                slow_call_rate_threshold: Some(80),
                backoff_multiplier: Some(1.5),
                max_reset_timeout_ms: Some(300_000),
                ..Knobs::default()
            }
        );
        assert!(parse(&[(FAILURE_RATE_THRESHOLD, "300")]).is_err(), "a u8");
        let error = parse(&[(BACKOFF_MULTIPLIER, "twice")]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "TRIPSWITCH_BACKOFF_MULTIPLIER: \"twice\" is not a number"
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        let error = parse(&[(FAIL_MAX, "three")]).unwrap_err();
        assert_eq!(error.variable, FAIL_MAX);
        assert_eq!(
            error.to_string(),
            "TRIPSWITCH_FAIL_MAX: \"three\" is not a whole number in range"
        );
        assert_eq!(
            parse(&[(FAIL_MAX, "-1")]).unwrap_err().variable,
            "TRIPSWITCH_FAIL_MAX"
        );
        assert!(parse(&[(FAIL_MAX, "99999999999")]).is_err());
        assert!(parse(&[(FALLBACK_STATE, "half-open")]).is_err());
        assert!(parse(&[(BREAKER, " ")]).is_err());
        for bad in ["", "5xx", "600", "599-500", "500-", "500,,502"] {
            let error = parse(&[(FAILURE_STATUS, bad)]).unwrap_err();
            assert_eq!(error.variable, FAILURE_STATUS, "{bad:?}");
        }
    }

    #[test]
    fn config_fields_name_their_variables() {
        assert_eq!(variable_for("fail-max"), FAIL_MAX);
        assert_eq!(variable_for("reset-timeout-ms"), RESET_TIMEOUT_MS);
        assert_eq!(variable_for("half-open-max-calls"), HALF_OPEN_MAX_CALLS);
        assert_eq!(variable_for("name"), BREAKER);
        assert_eq!(variable_for("something-new"), "(something-new)");
    }

    #[test]
    fn state_changes_read_the_same_everywhere() {
        assert_eq!(
            state_change_line("orders", "closed", "open", false),
            "tripswitch: breaker orders: closed -> open"
        );
        assert_eq!(
            state_change_line("orders", "open", "closed", true),
            "tripswitch: breaker orders: open -> closed (changed elsewhere)"
        );
    }

    #[test]
    fn an_unknown_setting_is_an_error() {
        let error = parse(&[("TRIPSWITCH_FAIL_MAXX", "3")]).unwrap_err();
        assert_eq!(error.variable, "TRIPSWITCH_FAIL_MAXX");
        assert!(error.problem.contains("unknown setting"), "{error}");
        assert!(error.problem.contains(FAIL_MAX), "{error}");
    }
}
