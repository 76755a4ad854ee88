//! The filter's plugin configuration: a JSON object whose keys are the
//! `TRIPSWITCH_*` variables' names without the prefix, in lower case.

use tripswitch_core::config::{Config, Options};
use tripswitch_core::machine::State;
use tripswitch_plugin_settings::{Fallback, Settings, StatusSet, key_for};

/// What one filter configuration makes: a breaker and the statuses that fail.
#[derive(Clone, Debug, PartialEq)]
pub struct Plugin {
    /// The breaker's name (its shared-data key).
    pub breaker: String,
    /// The breaker's configuration, the component's defaults filled in.
    pub config: Config,
    /// Upstream statuses counted as failures.
    pub failure_status: StatusSet,
}

impl Plugin {
    /// Reads a plugin configuration; an error names the key and the problem.
    pub fn from_json(text: &str) -> Result<Plugin, String> {
        let settings = Settings::from_json(text).map_err(|e| e.to_string())?;
        let knobs = &settings.knobs;
        let options = Options {
            fail_max: knobs.fail_max,
            reset_timeout_ms: knobs.reset_timeout_ms,
            success_threshold: knobs.success_threshold,
            half_open_max_calls: knobs.half_open_max_calls,
            trial_timeout_ms: knobs.trial_timeout_ms,
            fallback_state: knobs.fallback_state.map(|fallback| match fallback {
                Fallback::Closed => State::Closed,
                Fallback::Open => State::Open,
                Fallback::ForcedOpen => State::ForcedOpen,
            }),
            failure_rate_threshold: knobs.failure_rate_threshold,
            minimum_calls: knobs.minimum_calls,
            window_ms: knobs.window_ms,
            window_calls: knobs.window_calls,
            slow_call_ms: knobs.slow_call_ms,
            slow_call_rate_threshold: knobs.slow_call_rate_threshold,
            backoff_multiplier: knobs.backoff_multiplier,
            max_reset_timeout_ms: knobs.max_reset_timeout_ms,
            // Envoy replaces a VM without warning (a reload): merge every report.
            flush_interval_ms: Some(0),
        };
        let config = Config::resolve(&settings.breaker, &options)
            .map_err(|invalid| format!("{}: {}", key_for(invalid.field), invalid.reason))?;
        Ok(Plugin {
            breaker: settings.breaker,
            config,
            failure_status: settings.failure_status,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tripswitch_core::config::{DEFAULT_FAIL_MAX, DEFAULT_RESET_TIMEOUT_MS};

    #[test]
    fn an_empty_configuration_is_the_component_defaults() {
        let plugin = Plugin::from_json("").unwrap();
        assert_eq!(plugin.breaker, "upstream");
        assert_eq!(plugin.config.fail_max, DEFAULT_FAIL_MAX);
        assert_eq!(plugin.config.reset_timeout_ms, DEFAULT_RESET_TIMEOUT_MS);
        assert!(plugin.failure_status.contains(503) && !plugin.failure_status.contains(404));
    }

    #[test]
    fn the_keys_set_the_breaker() {
        let plugin = Plugin::from_json(
            r#"{"breaker": "orders", "fail_max": 2, "reset_timeout_ms": 1500,
                "half_open_max_calls": 3, "fallback_state": "open", "failure_status": "502-504"}"#,
        )
        .unwrap();
        assert_eq!(plugin.breaker, "orders");
        assert_eq!(plugin.config.fail_max, 2);
        assert_eq!(plugin.config.reset_timeout_ms, 1500);
        assert_eq!(plugin.config.half_open_max_calls, 3);
        assert_eq!(plugin.config.fallback_state, State::Open);
        assert!(plugin.failure_status.contains(502) && !plugin.failure_status.contains(500));
    }

    #[test]
    fn a_refused_value_names_its_key() {
        let cases = [
            (r#"{"fail_max": 0}"#, "fail_max: must be at least 1"),
            (
                r#"{"reset_timeout_ms": 0}"#,
                "reset_timeout_ms: must be at least 1 ms",
            ),
            (r#"{"failure_status": "600"}"#, "failure_status: "),
            (
                r#"{"fail_max": "5"}"#,
                "fail_max: a JSON number is expected",
            ),
            (r#"{"retries": 5}"#, "retries: unknown key"),
        ];
        for (json, start) in cases {
            let error = Plugin::from_json(json).unwrap_err();
            assert!(error.starts_with(start), "{json}: {error}");
        }
        let long = format!(r#"{{"breaker": "{}"}}"#, "b".repeat(300));
        assert!(
            Plugin::from_json(&long)
                .unwrap_err()
                .starts_with("breaker: must be at most")
        );
    }
}
