//! The breaker's knobs: their defaults (the one place they live) and their validation.

use crate::machine::State;

/// Consecutive failures that open the circuit, unless configured.
pub const DEFAULT_FAIL_MAX: u32 = 5;
/// Time the circuit stays open before a trial, unless configured.
pub const DEFAULT_RESET_TIMEOUT_MS: u64 = 60_000;
/// Trial successes that close the circuit, unless configured.
pub const DEFAULT_SUCCESS_THRESHOLD: u32 = 1;
/// Trials in flight at once in half-open, unless configured.
pub const DEFAULT_HALF_OPEN_MAX_CALLS: u32 = 1;
/// What acquire follows when the storage fails, unless configured.
pub const DEFAULT_FALLBACK_STATE: State = State::Closed;
/// The longest breaker name, in bytes.
pub const MAX_NAME_BYTES: usize = 256;

/// A configuration as a host sends it: every field optional.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// See [`Config::fail_max`].
    pub fail_max: Option<u32>,
    /// See [`Config::reset_timeout_ms`].
    pub reset_timeout_ms: Option<u64>,
    /// See [`Config::success_threshold`].
    pub success_threshold: Option<u32>,
    /// See [`Config::half_open_max_calls`].
    pub half_open_max_calls: Option<u32>,
    /// See [`Config::trial_timeout_ms`].
    pub trial_timeout_ms: Option<u64>,
    /// See [`Config::fallback_state`].
    pub fallback_state: Option<State>,
}

/// A complete, valid configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Consecutive failures that open the circuit.
    pub fail_max: u32,
    /// Time the circuit stays open before a trial, in ms.
    pub reset_timeout_ms: u64,
    /// Trial successes in half-open that close the circuit.
    pub success_threshold: u32,
    /// Trials allowed in flight at once in half-open.
    pub half_open_max_calls: u32,
    /// Time after which an unreported trial's slot is forfeited, in ms.
    pub trial_timeout_ms: u64,
    /// What acquire follows when the storage fails.
    pub fallback_state: State,
}

/// A refused configuration: the field's name (as in the WIT) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// The field, as the WIT names it.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Invalid {
    Invalid {
        field,
        reason: reason.into(),
    }
}

fn at_least_one<T: PartialEq + From<u8> + Copy>(
    field: &'static str,
    value: Option<T>,
    default: T,
    unit: &str,
) -> Result<T, Invalid> {
    match value {
        Some(v) if v == T::from(0) => {
            Err(invalid(field, format!("must be at least 1{unit}, got 0")))
        }
        Some(v) => Ok(v),
        None => Ok(default),
    }
}

impl Config {
    /// Checks a breaker's name and options and fills in the defaults.
    pub fn resolve(name: &str, options: &Options) -> Result<Config, Invalid> {
        if name.is_empty() {
            return Err(invalid("name", "must not be empty"));
        }
        if name.len() > MAX_NAME_BYTES {
            return Err(invalid(
                "name",
                format!("must be at most {MAX_NAME_BYTES} bytes, got {}", name.len()),
            ));
        }
        let reset_timeout_ms = at_least_one(
            "reset-timeout-ms",
            options.reset_timeout_ms,
            DEFAULT_RESET_TIMEOUT_MS,
            " ms",
        )?;
        let fallback_state = match options.fallback_state.unwrap_or(DEFAULT_FALLBACK_STATE) {
            State::HalfOpen => {
                return Err(invalid(
                    "fallback-state",
                    "must be closed, open, forced-open or disabled, got half-open",
                ));
            }
            state => state,
        };
        Ok(Config {
            fail_max: at_least_one("fail-max", options.fail_max, DEFAULT_FAIL_MAX, "")?,
            reset_timeout_ms,
            success_threshold: at_least_one(
                "success-threshold",
                options.success_threshold,
                DEFAULT_SUCCESS_THRESHOLD,
                "",
            )?,
            half_open_max_calls: at_least_one(
                "half-open-max-calls",
                options.half_open_max_calls,
                DEFAULT_HALF_OPEN_MAX_CALLS,
                "",
            )?,
            trial_timeout_ms: at_least_one(
                "trial-timeout-ms",
                options.trial_timeout_ms,
                reset_timeout_ms,
                " ms",
            )?,
            fallback_state,
        })
    }

    /// Whether a failing storage means calls are admitted.
    pub fn fallback_admits(&self) -> bool {
        matches!(self.fallback_state, State::Closed | State::Disabled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_every_absent_field() {
        let config = Config::resolve("db", &Options::default()).unwrap();
        assert_eq!(
            config,
            Config {
                fail_max: 5,
                reset_timeout_ms: 60_000,
                success_threshold: 1,
                half_open_max_calls: 1,
                trial_timeout_ms: 60_000,
                fallback_state: State::Closed,
            }
        );
    }

    #[test]
    fn trial_timeout_follows_the_reset_timeout() {
        let options = Options {
            reset_timeout_ms: Some(250),
            ..Options::default()
        };
        assert_eq!(
            Config::resolve("db", &options).unwrap().trial_timeout_ms,
            250
        );
    }

    #[test]
    fn every_zero_names_its_field() {
        let cases: [(&str, Options); 5] = [
            (
                "fail-max",
                Options {
                    fail_max: Some(0),
                    ..Options::default()
                },
            ),
            (
                "reset-timeout-ms",
                Options {
                    reset_timeout_ms: Some(0),
                    ..Options::default()
                },
            ),
            (
                "success-threshold",
                Options {
                    success_threshold: Some(0),
                    ..Options::default()
                },
            ),
            (
                "half-open-max-calls",
                Options {
                    half_open_max_calls: Some(0),
                    ..Options::default()
                },
            ),
            (
                "trial-timeout-ms",
                Options {
                    trial_timeout_ms: Some(0),
                    ..Options::default()
                },
            ),
        ];
        for (field, options) in cases {
            let err = Config::resolve("db", &options).unwrap_err();
            assert_eq!(err.field, field);
            assert!(err.reason.contains("at least 1"), "{err:?}");
        }
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(
            Config::resolve("", &Options::default()).unwrap_err().field,
            "name"
        );
        let long = "x".repeat(257);
        let err = Config::resolve(&long, &Options::default()).unwrap_err();
        assert!(err.reason.contains("257"), "{err:?}");
        assert!(Config::resolve(&"x".repeat(256), &Options::default()).is_ok());
    }

    #[test]
    fn half_open_is_no_fallback() {
        let options = Options {
            fallback_state: Some(State::HalfOpen),
            ..Options::default()
        };
        assert_eq!(
            Config::resolve("db", &options).unwrap_err().field,
            "fallback-state"
        );
    }
}
