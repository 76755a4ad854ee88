//! The settings as a JSON object (a proxy's plugin configuration, such as
//! Envoy's): each key is a variable's name without the prefix, in lower
//! case (`fail_max` for `TRIPSWITCH_FAIL_MAX`); numbers are JSON numbers.

use serde_json::Value;

use crate::{DECIMAL, KNOWN, NUMERIC, PREFIX, Settings, SettingsError};

/// The JSON key of a variable (`TRIPSWITCH_FAIL_MAX`: `fail_max`); other
/// text is returned as it is.
pub fn key(variable: &str) -> String {
    match variable.strip_prefix(PREFIX) {
        Some(rest) => rest.to_lowercase(),
        None => variable.to_owned(),
    }
}

impl Settings {
    /// Reads the settings from a JSON object; empty text is the empty
    /// object. An unknown key, a value of the wrong type or a bad value is
    /// an error naming the key.
    pub fn from_json(text: &str) -> Result<Settings, SettingsError> {
        let whole = |problem: String| SettingsError {
            variable: "(configuration)".to_owned(),
            problem,
        };
        let value = if text.trim().is_empty() {
            Value::Object(Default::default())
        } else {
            serde_json::from_str(text).map_err(|e| whole(format!("not valid JSON: {e}")))?
        };
        let Value::Object(object) = value else {
            return Err(whole(format!(
                "a JSON object is expected, not {}",
                kind(&value)
            )));
        };
        let mut vars = Vec::with_capacity(object.len());
        for (name, value) in &object {
            let fail = |problem: String| SettingsError {
                variable: name.clone(),
                problem,
            };
            let variable = format!("{PREFIX}{}", name.to_uppercase());
            if *name != name.to_lowercase() || !KNOWN.contains(&variable.as_str()) {
                let keys: Vec<String> = KNOWN.iter().map(|known| key(known)).collect();
                return Err(fail(format!(
                    "unknown key; the known ones are {}",
                    keys.join(", ")
                )));
            }
            let text = match value {
                Value::Number(n) if NUMERIC.contains(&variable.as_str()) => match n.as_u64() {
                    Some(n) => n.to_string(),
                    None => return Err(fail(format!("{n} is not a whole number in range"))),
                },
                Value::Number(n) if DECIMAL.contains(&variable.as_str()) => n.to_string(),
                Value::String(text)
                    if !NUMERIC.contains(&variable.as_str())
                        && !DECIMAL.contains(&variable.as_str()) =>
                {
                    text.clone()
                }
                _ if NUMERIC.contains(&variable.as_str())
                    || DECIMAL.contains(&variable.as_str()) =>
                {
                    return Err(fail(format!(
                        "a JSON number is expected, not {}",
                        kind(value)
                    )));
                }
                _ => {
                    return Err(fail(format!(
                        "a JSON string is expected, not {}",
                        kind(value)
                    )));
                }
            };
            vars.push((variable, text));
        }
        Settings::from_vars(vars).map_err(|error| SettingsError {
            variable: key(&error.variable),
            problem: error.problem,
        })
    }
}

/// What kind of JSON value this is, for messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use crate::{Fallback, Knobs, Settings, key_for};

    #[test]
    fn every_key_is_its_variable_in_lower_case() {
        let settings = Settings::from_json(
            r#"{"breaker": "orders", "fail_max": 3, "reset_timeout_ms": 2500,
                "success_threshold": 2, "half_open_max_calls": 4, "trial_timeout_ms": 900,
                "fallback_state": "forced-open", "failure_status": "429,502-504",
                "kv_store": "breakers"}"#,
        )
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
        assert!(settings.failure_status.contains(429) && !settings.failure_status.contains(500));
        assert_eq!(settings.kv_store, "breakers");
    }

    #[test]
    fn the_backoff_multiplier_is_a_decimal_number() {
        let settings =
            Settings::from_json(r#"{"backoff_multiplier": 1.5, "failure_rate_threshold": 50}"#)
                .unwrap();
        assert_eq!(settings.knobs.backoff_multiplier, Some(1.5));
        assert_eq!(settings.knobs.failure_rate_threshold, Some(50));
        assert_eq!(
            Settings::from_json(r#"{"backoff_multiplier": 2}"#)
                .unwrap()
                .knobs
                .backoff_multiplier,
            Some(2.0)
        );
        let error = Settings::from_json(r#"{"backoff_multiplier": "2"}"#).unwrap_err();
        assert!(
            error.problem.contains("a JSON number is expected"),
            "{error}"
        );
    }

    #[test]
    fn nothing_or_an_empty_object_leaves_the_defaults() {
        let defaults = Settings::from_vars(Vec::<(&str, &str)>::new()).unwrap();
        assert_eq!(Settings::from_json("").unwrap(), defaults);
        assert_eq!(Settings::from_json(" {} ").unwrap(), defaults);
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (r#"{"fail_maxx": 3}"#, "fail_maxx", "unknown key"),
            (r#"{"FAIL_MAX": 3}"#, "FAIL_MAX", "unknown key"),
            (
                r#"{"fail_max": "3"}"#,
                "fail_max",
                "a JSON number is expected, not a string",
            ),
            (r#"{"fail_max": 2.5}"#, "fail_max", "not a whole number"),
            (r#"{"fail_max": -1}"#, "fail_max", "not a whole number"),
            (
                r#"{"fail_max": 99999999999}"#,
                "fail_max",
                "not a whole number",
            ),
            (
                r#"{"breaker": 7}"#,
                "breaker",
                "a JSON string is expected, not a number",
            ),
            (r#"{"breaker": " "}"#, "breaker", "empty"),
            (
                r#"{"fallback_state": "half-open"}"#,
                "fallback_state",
                "not one of",
            ),
            (
                r#"{"failure_status": "5xx"}"#,
                "failure_status",
                "not a status",
            ),
            (
                r#"[1]"#,
                "(configuration)",
                "a JSON object is expected, not an array",
            ),
            (r#"{"fail_max": 3"#, "(configuration)", "not valid JSON"),
        ];
        for (json, key, problem) in cases {
            let error = Settings::from_json(json).unwrap_err();
            assert_eq!(error.variable, key, "{json}");
            assert!(error.problem.contains(problem), "{json}: {error}");
        }
        let unknown = Settings::from_json(r#"{"fail_maxx": 3}"#).unwrap_err();
        assert!(
            unknown.problem.contains("fail_max, reset_timeout_ms"),
            "{unknown}"
        );
    }

    #[test]
    fn config_fields_name_their_keys() {
        assert_eq!(key_for("fail-max"), "fail_max");
        assert_eq!(key_for("reset-timeout-ms"), "reset_timeout_ms");
        assert_eq!(key_for("name"), "breaker");
        assert_eq!(key_for("something-new"), "(something-new)");
    }
}
