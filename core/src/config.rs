//! The breaker's knobs: their defaults (the one place they live) and their validation.

use crate::machine::State;
use crate::window::Shape;

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
/// Calls a window must hold before its rates count, unless configured.
pub const DEFAULT_MINIMUM_CALLS: u32 = 100;
/// The length of a time window, unless a window is configured.
pub const DEFAULT_WINDOW_MS: u64 = 30_000;
/// The shortest time window, in ms (ten buckets of at least 1 ms).
pub const MIN_WINDOW_MS: u64 = 10;
/// The most calls a count window keeps.
pub const MAX_WINDOW_CALLS: u32 = 10_000;
/// The slow-call rate (percent) that opens the circuit, unless configured.
pub const DEFAULT_SLOW_CALL_RATE_THRESHOLD: u8 = 100;
/// How much longer each open after a failed trial waits, unless configured.
pub const DEFAULT_BACKOFF_MULTIPLIER: f64 = 1.0;
/// How long an instance may hold window outcomes before merging them, unless configured.
pub const DEFAULT_FLUSH_INTERVAL_MS: u64 = 1000;
/// The longest breaker name, in bytes.
pub const MAX_NAME_BYTES: usize = 256;

/// A configuration as a host sends it: every field optional.
#[derive(Clone, Debug, Default, PartialEq)]
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
    /// See [`Config::failure_rate_threshold`].
    pub failure_rate_threshold: Option<u8>,
    /// See [`Config::minimum_calls`].
    pub minimum_calls: Option<u32>,
    /// A time window of this many ms (see [`Config::window`]).
    pub window_ms: Option<u64>,
    /// A count window of this many calls (see [`Config::window`]).
    pub window_calls: Option<u32>,
    /// See [`Config::slow_call_ms`].
    pub slow_call_ms: Option<u64>,
    /// See [`Config::slow_call_rate_threshold`].
    pub slow_call_rate_threshold: Option<u8>,
    /// See [`Config::backoff_multiplier`].
    pub backoff_multiplier: Option<f64>,
    /// See [`Config::max_reset_timeout_ms`].
    pub max_reset_timeout_ms: Option<u64>,
    /// See [`Config::flush_interval_ms`].
    pub flush_interval_ms: Option<u64>,
}

/// A complete, valid configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Consecutive failures that open the circuit.
    pub fail_max: u32,
    /// Whether the consecutive rule applies: always, unless a failure-rate
    /// rule is set and fail-max is not.
    pub consecutive: bool,
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
    /// The failure rate (percent) at which the window opens the circuit
    /// (none: no failure-rate rule).
    pub failure_rate_threshold: Option<u8>,
    /// Calls the window must hold before its rates count.
    pub minimum_calls: u32,
    /// The window's shape; none when no rate rule is set.
    pub window: Option<Shape>,
    /// A call reported more than this many ms after its permit is slow
    /// (none: no slow-call rule).
    pub slow_call_ms: Option<u64>,
    /// The slow-call rate (percent) at which the window opens the circuit.
    pub slow_call_rate_threshold: u8,
    /// Each open after a failed trial waits this many times the one before.
    pub backoff_multiplier: f64,
    /// The longest an open waits, in ms.
    pub max_reset_timeout_ms: u64,
    /// How long an instance may hold window outcomes before merging them
    /// into the record, in ms (0: merge every report at once).
    pub flush_interval_ms: u64,
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

impl Default for Config {
    /// Every knob at its default.
    fn default() -> Self {
        Config::resolve("default", &Options::default()).expect("the defaults are valid")
    }
}

fn at_least_one_opt(
    field: &'static str,
    value: Option<u64>,
    unit: &str,
) -> Result<Option<u64>, Invalid> {
    match value {
        Some(0) => Err(invalid(field, format!("must be at least 1{unit}, got 0"))),
        other => Ok(other),
    }
}

fn percent(field: &'static str, value: Option<u8>) -> Result<Option<u8>, Invalid> {
    match value {
        Some(p) if p == 0 || p > 100 => Err(invalid(
            field,
            format!("must be a percentage from 1 to 100, got {p}"),
        )),
        other => Ok(other),
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
        let failure_rate_threshold =
            percent("failure-rate-threshold", options.failure_rate_threshold)?;
        let slow_call_rate_threshold =
            percent("slow-call-rate-threshold", options.slow_call_rate_threshold)?
                .unwrap_or(DEFAULT_SLOW_CALL_RATE_THRESHOLD);
        let slow_call_ms = at_least_one_opt("slow-call-ms", options.slow_call_ms, " ms")?;
        let shape = match (options.window_ms, options.window_calls) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "window-ms",
                    "window-ms and window-calls are both set; a window is one or the other",
                ));
            }
            (Some(ms), None) if ms < MIN_WINDOW_MS => {
                return Err(invalid(
                    "window-ms",
                    format!("must be at least {MIN_WINDOW_MS} ms (ten buckets), got {ms}"),
                ));
            }
            (Some(ms), None) => Shape::Time { ms },
            (None, Some(calls)) if calls == 0 || calls > MAX_WINDOW_CALLS => {
                return Err(invalid(
                    "window-calls",
                    format!("must be between 1 and {MAX_WINDOW_CALLS}, got {calls}"),
                ));
            }
            (None, Some(calls)) => Shape::Calls { calls },
            (None, None) => Shape::Time {
                ms: DEFAULT_WINDOW_MS,
            },
        };
        let rated = failure_rate_threshold.is_some() || slow_call_ms.is_some();
        let minimum_calls = at_least_one(
            "minimum-calls",
            options.minimum_calls,
            DEFAULT_MINIMUM_CALLS,
            "",
        )?;
        let backoff_multiplier = options
            .backoff_multiplier
            .unwrap_or(DEFAULT_BACKOFF_MULTIPLIER);
        if !backoff_multiplier.is_finite() || backoff_multiplier < 1.0 {
            return Err(invalid(
                "backoff-multiplier",
                format!(
                    "must be a finite number of at least 1, got {}",
                    Approximate(backoff_multiplier)
                ),
            ));
        }
        let max_reset_timeout_ms = match options.max_reset_timeout_ms {
            Some(max) if max < reset_timeout_ms => {
                return Err(invalid(
                    "max-reset-timeout-ms",
                    format!(
                        "must be at least the reset timeout ({reset_timeout_ms} ms), got {max}"
                    ),
                ));
            }
            Some(max) => max,
            None => u64::MAX,
        };
        Ok(Config {
            fail_max: at_least_one("fail-max", options.fail_max, DEFAULT_FAIL_MAX, "")?,
            consecutive: options.fail_max.is_some() || failure_rate_threshold.is_none(),
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
            failure_rate_threshold,
            minimum_calls,
            window: rated.then_some(shape),
            slow_call_ms,
            slow_call_rate_threshold,
            backoff_multiplier,
            max_reset_timeout_ms,
            flush_interval_ms: options
                .flush_interval_ms
                .unwrap_or(DEFAULT_FLUSH_INTERVAL_MS),
        })
    }

    /// How long the circuit stays open the `opens`-th time in a row (1: the
    /// first): the reset timeout, times the multiplier for each open after
    /// the first, capped at the max.
    pub fn open_duration_ms(&self, opens: u32) -> u64 {
        let scaled = self.reset_timeout_ms as f64
            * self
                .backoff_multiplier
                .powi(opens.saturating_sub(1).min(i32::MAX as u32) as i32);
        let capped = scaled.min(self.max_reset_timeout_ms as f64);
        if capped >= u64::MAX as f64 {
            u64::MAX
        } else {
            capped as u64
        }
    }

    /// Whether a failing storage means calls are admitted.
    pub fn fallback_admits(&self) -> bool {
        matches!(self.fallback_state, State::Closed | State::Disabled)
    }
}

/// A number as an error message shows it, to the thousandth: formatting
/// floats exactly would add a fifth to the component's size.
struct Approximate(f64);

impl std::fmt::Display for Approximate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let x = self.0;
        if x.is_nan() {
            return f.write_str("NaN");
        }
        if x.is_infinite() {
            return f.write_str(if x > 0.0 { "inf" } else { "-inf" });
        }
        let sign = if x < 0.0 { "-" } else { "" };
        // Saturating: a number past u64's range shows as its largest.
        let thousandths = (x.abs() * 1000.0).round() as u64;
        let (whole, fraction) = (thousandths / 1000, thousandths % 1000);
        if fraction == 0 {
            write!(f, "{sign}{whole}")
        } else {
            let digits = format!("{fraction:03}");
            write!(f, "{sign}{whole}.{}", digits.trim_end_matches('0'))
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbers_in_messages_show_to_the_thousandth() {
        let shown = |x: f64| super::Approximate(x).to_string();
        assert_eq!(shown(0.5), "0.5");
        assert_eq!(shown(-2.0), "-2");
        assert_eq!(shown(0.0005), "0.001");
        assert_eq!(shown(1.25), "1.25");
        assert_eq!(shown(f64::NAN), "NaN");
        assert_eq!(shown(f64::NEG_INFINITY), "-inf");
        assert!(shown(1e300).starts_with(&(u64::MAX / 1000).to_string()));
    }

    use super::*;

    #[test]
    fn defaults_fill_every_absent_field() {
        let config = Config::resolve("db", &Options::default()).unwrap();
        assert_eq!(
            config,
            Config {
                fail_max: 5,
                consecutive: true,
                reset_timeout_ms: 60_000,
                success_threshold: 1,
                half_open_max_calls: 1,
                trial_timeout_ms: 60_000,
                fallback_state: State::Closed,
                failure_rate_threshold: None,
                minimum_calls: 100,
                window: None,
                slow_call_ms: None,
                slow_call_rate_threshold: 100,
                backoff_multiplier: 1.0,
                max_reset_timeout_ms: u64::MAX,
                flush_interval_ms: 1000,
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
    fn a_rate_rule_brings_a_window_and_sets_the_consecutive_rule_aside() {
        let rate = Options {
            failure_rate_threshold: Some(50),
            ..Options::default()
        };
        let config = Config::resolve("db", &rate).unwrap();
        assert_eq!(config.window, Some(Shape::Time { ms: 30_000 }));
        assert!(!config.consecutive);
        let both = Options {
            fail_max: Some(5),
            window_calls: Some(20),
            ..rate.clone()
        };
        let config = Config::resolve("db", &both).unwrap();
        assert!(config.consecutive);
        assert_eq!(config.window, Some(Shape::Calls { calls: 20 }));
        let slow = Options {
            slow_call_ms: Some(200),
            ..Options::default()
        };
        let config = Config::resolve("db", &slow).unwrap();
        assert!(
            config.consecutive,
            "the slow-call rule adds to the consecutive one"
        );
        assert!(config.window.is_some());
    }

    #[test]
    fn bad_window_and_backoff_knobs_name_their_field() {
        let cases: [(&str, Options); 9] = [
            (
                "failure-rate-threshold",
                Options {
                    failure_rate_threshold: Some(0),
                    ..Options::default()
                },
            ),
            (
                "failure-rate-threshold",
                Options {
                    failure_rate_threshold: Some(101),
                    ..Options::default()
                },
            ),
            (
                "slow-call-rate-threshold",
                Options {
                    slow_call_rate_threshold: Some(0),
                    ..Options::default()
                },
            ),
            (
                "window-ms",
                Options {
                    window_ms: Some(1000),
                    window_calls: Some(10),
                    ..Options::default()
                },
            ),
            (
                "window-ms",
                Options {
                    window_ms: Some(9),
                    ..Options::default()
                },
            ),
            (
                "window-calls",
                Options {
                    window_calls: Some(10_001),
                    ..Options::default()
                },
            ),
            (
                "backoff-multiplier",
                Options {
                    backoff_multiplier: Some(0.5),
                    ..Options::default()
                },
            ),
            (
                "backoff-multiplier",
                Options {
                    backoff_multiplier: Some(f64::NAN),
                    ..Options::default()
                },
            ),
            (
                "max-reset-timeout-ms",
                Options {
                    reset_timeout_ms: Some(1000),
                    max_reset_timeout_ms: Some(999),
                    ..Options::default()
                },
            ),
        ];
        for (field, options) in cases {
            let err = Config::resolve("db", &options).unwrap_err();
            assert_eq!(err.field, field, "{options:?}: {err:?}");
        }
        let both = Options {
            window_ms: Some(1000),
            window_calls: Some(10),
            ..Options::default()
        };
        let err = Config::resolve("db", &both).unwrap_err();
        assert!(err.reason.contains("window-calls"), "{err:?}");
    }

    #[test]
    fn backoff_multiplies_each_open_after_the_first_up_to_the_max() {
        let options = Options {
            reset_timeout_ms: Some(1000),
            backoff_multiplier: Some(2.0),
            max_reset_timeout_ms: Some(5000),
            ..Options::default()
        };
        let config = Config::resolve("db", &options).unwrap();
        let durations: Vec<u64> = (1..=5).map(|n| config.open_duration_ms(n)).collect();
        assert_eq!(durations, [1000, 2000, 4000, 5000, 5000]);
        assert_eq!(config.open_duration_ms(0), 1000);
        assert_eq!(config.open_duration_ms(u32::MAX), 5000);
        let plain = Config::resolve("db", &Options::default()).unwrap();
        assert_eq!(plain.open_duration_ms(9), 60_000);
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
