//! The settings against whatever an operator or an attacker can write: the
//! `TRIPSWITCH_*` variables, the Envoy filter's JSON and the failure-status
//! sets never panic, and every error names the variable or key at fault.

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use tripswitch_plugin_settings::{KNOWN, PREFIX, Settings, StatusSet};

/// A variable's JSON key, as the Envoy filter's configuration spells it.
fn key(variable: &str) -> String {
    variable
        .strip_prefix(PREFIX)
        .map_or_else(|| variable.to_owned(), str::to_lowercase)
}

/// A variable's name: mostly known ones, some near misses and strangers.
fn any_name() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => proptest::sample::select(KNOWN.to_vec()).prop_map(str::to_owned),
        1 => "TRIPSWITCH_[A-Z_]{0,12}",
        1 => any::<String>(),
    ]
}

/// A value: numbers of every size and sign, ranges, words, and noise.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|n| n.to_string()),
        "[0-9]{1,30}",
        "[0-9]{1,4}-[0-9]{1,4}(,[0-9]{1,4})*",
        "(closed|open|forced-open|half-open|disabled) ?",
        any::<String>(),
    ]
}

/// A JSON value of any type, nested a little.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any_text().prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn variables_never_panic_and_errors_name_the_variable(
        vars in proptest::collection::vec((any_name(), any_text()), 0..6)
    ) {
        if let Err(error) = Settings::from_vars(vars.iter().map(|(n, v)| (n.as_str(), v.as_str()))) {
            prop_assert!(
                vars.iter().any(|(name, _)| name == &error.variable),
                "{error} names no variable given"
            );
            prop_assert!(error.variable.starts_with(PREFIX), "{error}");
            prop_assert!(!error.problem.is_empty());
            prop_assert!(error.to_string().contains(&error.variable));
        }
    }

    #[test]
    fn json_never_panics_and_errors_name_the_key(
        entries in proptest::collection::vec((any_name(), any_json()), 0..6)
    ) {
        let object: Map<String, Value> = entries
            .iter()
            .map(|(name, value)| (key(name), value.clone()))
            .collect();
        let text = Value::Object(object.clone()).to_string();
        if let Err(error) = Settings::from_json(&text) {
            prop_assert!(
                object.contains_key(&error.variable)
                    || object.contains_key(&key(&error.variable)),
                "{error} names no key given"
            );
            prop_assert!(!error.problem.is_empty());
        }
    }

    #[test]
    fn any_text_as_json_never_panics(text in any::<String>()) {
        if let Err(error) = Settings::from_json(&text) {
            prop_assert!(!error.to_string().is_empty());
        }
    }

    #[test]
    fn status_sets_never_panic(text in any_text()) {
        if let Err(problem) = StatusSet::parse(&text) {
            prop_assert!(!problem.is_empty());
        }
    }
}

#[test]
fn a_document_that_is_not_an_object_is_named_as_such() {
    for text in ["[1]", "3", "\"x\"", "{", "null"] {
        let error = Settings::from_json(text).unwrap_err();
        assert_eq!(error.variable, "(configuration)", "{text}: {error}");
    }
    let error = Settings::from_json(&json!({"fail_max": -1}).to_string()).unwrap_err();
    assert!(error.to_string().contains("fail_max"), "{error}");
}
