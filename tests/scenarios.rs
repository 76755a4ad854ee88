//! Runs every scenario in `tests/scenarios/*.json` through the Rust host,
//! over a blocking storage and over an async one (whose every step is
//! awaited, on the instances async calls share). The
//! JavaScript and Python packages run the same files
//! (js/test/scenarios.test.js, python/tests/test_scenarios.py): a host that
//! disagrees with another on any scenario fails its tests.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tripswitch::{CircuitBreaker, Error, ManualClock, Permit, State};
use tripswitch_tests::{Awaited, Faulty, Recorder};

/// Where the virtual clock starts; scenario times are offsets from it.
const START: u64 = 1_000_000;

fn scenario_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "the scenario files are missing: {files:?}"
    );
    files
}

fn builder(name: &str, config: &Value, clock: &ManualClock) -> tripswitch::Builder {
    let mut builder = CircuitBreaker::builder(name).clock(clock.clone());
    let number = |key: &str| config.get(key).and_then(Value::as_u64);
    if let Some(n) = number("failMax") {
        builder = builder.fail_max(n as u32);
    }
    if let Some(n) = number("successThreshold") {
        builder = builder.success_threshold(n as u32);
    }
    if let Some(n) = number("halfOpenMaxCalls") {
        builder = builder.half_open_max_calls(n as u32);
    }
    if let Some(ms) = number("resetTimeoutMs") {
        builder = builder.reset_timeout(Duration::from_millis(ms));
    }
    if let Some(ms) = number("trialTimeoutMs") {
        builder = builder.trial_timeout(Duration::from_millis(ms));
    }
    if let Some(state) = config.get("fallbackState").and_then(Value::as_str) {
        builder = builder.fallback_state(state.parse::<State>().unwrap());
    }
    if let Some(n) = number("failureRateThreshold") {
        builder = builder.failure_rate_threshold(n as u8);
    }
    if let Some(n) = number("minimumCalls") {
        builder = builder.minimum_calls(n as u32);
    }
    if let Some(ms) = number("windowMs") {
        builder = builder.window(Duration::from_millis(ms));
    }
    if let Some(n) = number("windowCalls") {
        builder = builder.window_calls(n as u32);
    }
    if let Some(ms) = number("slowCallMs") {
        builder = builder.slow_call(Duration::from_millis(ms));
    }
    if let Some(n) = number("slowCallRateThreshold") {
        builder = builder.slow_call_rate_threshold(n as u8);
    }
    if let Some(ms) = number("flushIntervalMs") {
        builder = builder.flush_interval(Duration::from_millis(ms));
    }
    let multiplier = config.get("backoffMultiplier").and_then(Value::as_f64);
    let max = number("maxResetTimeoutMs");
    if multiplier.is_some() || max.is_some() {
        // A max left out is no cap.
        let max = Duration::from_millis(max.unwrap_or(u64::MAX));
        builder = builder.backoff(multiplier.unwrap_or(1.0), max);
    }
    builder
}

/// Runs a step on the breaker's first instance (0, this thread's), or on
/// another one (1: a thread of its own, so another pooled instance).
fn on_instance<T: Send>(instance: u64, step: impl FnOnce() -> T + Send) -> T {
    if instance == 0 {
        step()
    } else {
        std::thread::scope(|scope| scope.spawn(step).join().expect("the step ran"))
    }
}

/// Runs one scenario, over an async storage if `awaited`; panics with the
/// step that disagreed.
fn run(path: &Path, awaited: bool) {
    let text = std::fs::read_to_string(path).unwrap();
    let scenario: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut file = path.file_name().unwrap().to_string_lossy().to_string();
    if awaited {
        file.push_str(" (awaited)");
    }
    if let Some(cases) = scenario.get("invalid").and_then(Value::as_array) {
        let clock = ManualClock::new(START);
        for case in cases {
            let name = case
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("invalid");
            match builder(name, &case["config"], &clock).build() {
                Err(Error::InvalidConfig { field, reason }) => {
                    assert_eq!(field, case["field"].as_str().unwrap(), "{file}: {case}");
                    assert!(!reason.is_empty(), "{file}: {case}: the refusal says why");
                }
                other => panic!("{file}: {case}: expected a config error, got {other:?}"),
            }
        }
        return;
    }
    let clock = ManualClock::new(START);
    // Memory that a `storage` step can make fail. It tells its version for
    // free while it works, and never blocks, as memory does.
    let storage = Faulty::new().telling_version().never_blocking();
    // One config for every breaker, or (`configs`) one each.
    let configs = scenario.get("configs").and_then(Value::as_array);
    let count = configs.map(Vec::len).unwrap_or_else(|| {
        scenario
            .get("breakers")
            .and_then(Value::as_u64)
            .unwrap_or(1) as usize
    });
    let heard: Vec<Recorder> = (0..count).map(|_| Recorder::default()).collect();
    let breakers: Vec<CircuitBreaker> = heard
        .iter()
        .enumerate()
        .map(|(i, recorder)| {
            let config = configs.map_or(&scenario["config"], |configs| &configs[i]);
            let builder = builder("scenario", config, &clock).listener(recorder.clone());
            let builder = if awaited {
                builder.async_storage(Awaited(storage.clone()))
            } else {
                builder.storage(storage.clone())
            };
            builder.build().unwrap()
        })
        .collect();
    let mut told = vec![0usize; count];
    let mut outages_told = vec![0usize; count];
    let mut notices_told = vec![0usize; count];
    let mut permits: HashMap<String, Permit> = HashMap::new();
    for (n, step) in scenario["steps"].as_array().unwrap().iter().enumerate() {
        let at = format!("{file} step {n}: {step}");
        let on = step.get("on").and_then(Value::as_u64).unwrap_or(0) as usize;
        let instance = step.get("instance").and_then(Value::as_u64).unwrap_or(0);
        let breaker = &breakers[on];
        match step["do"].as_str().unwrap() {
            "advance" => clock.advance(Duration::from_millis(step["ms"].as_u64().unwrap())),
            "storage" => storage.set_failing(step["failing"].as_bool().unwrap()),
            "acquire" => match (
                on_instance(instance, || breaker.acquire()),
                step.get("rejected"),
            ) {
                (Ok(permit), None) => {
                    let trial = step.get("trial").and_then(Value::as_bool).unwrap_or(false);
                    assert_eq!(permit.is_trial(), trial, "{at}");
                    let degraded = step
                        .get("degraded")
                        .and_then(Value::as_bool)
                        .unwrap_or(false);
                    assert_eq!(permit.degraded().is_some(), degraded, "{at}");
                    permits.insert(step["permit"].as_str().unwrap().to_string(), permit);
                }
                (Err(Error::Rejected(rejected)), Some(expected)) => {
                    assert_eq!(rejected.kind(), expected.as_str().unwrap(), "{at}");
                    if let Some(state) = step.get("state").and_then(Value::as_str) {
                        assert_eq!(rejected.state().as_str(), state, "{at}");
                    }
                    if let Some(ms) = step.get("retryAfterMs").and_then(Value::as_u64) {
                        assert_eq!(
                            rejected.retry_after(),
                            Some(Duration::from_millis(ms)),
                            "{at}"
                        );
                    }
                }
                (answer, _) => panic!("{at}: got {answer:?}"),
            },
            "report" => {
                let permit = permits.remove(step["permit"].as_str().unwrap()).expect(&at);
                let outcome = match step["outcome"].as_str().unwrap() {
                    "success" => tripswitch::Outcome::Success,
                    "failure" => tripswitch::Outcome::Failure,
                    "ignored" => tripswitch::Outcome::Ignored,
                    other => panic!("{at}: unknown outcome {other}"),
                };
                match (
                    on_instance(instance, || permit.report(outcome)),
                    step.get("error"),
                ) {
                    (Ok(tripped), None) => {
                        if let Some(expected) = step.get("tripped").and_then(Value::as_bool) {
                            assert_eq!(tripped, expected, "{at}");
                        }
                    }
                    (Err(Error::Storage { .. }), Some(kind)) => assert_eq!(kind, "storage", "{at}"),
                    (answer, _) => panic!("{at}: got {answer:?}"),
                }
            }
            "operate" => {
                let action = step["action"].as_str().unwrap().parse().expect(&at);
                on_instance(instance, || breaker.operate(action)).unwrap()
            }
            "outages" => {
                let outages = heard[on]
                    .errors()
                    .iter()
                    .filter(|e| matches!(e, Error::Storage { .. }))
                    .count();
                let fresh = outages - outages_told[on];
                outages_told[on] = outages;
                assert_eq!(fresh as u64, step["expect"].as_u64().unwrap(), "{at}");
            }
            "notices" => {
                let notices = heard[on].notices();
                let fresh: Vec<&str> = notices[notices_told[on]..]
                    .iter()
                    .map(|n| n.kind.as_str())
                    .collect();
                notices_told[on] = notices.len();
                assert_eq!(fresh, step["expect"].as_array().unwrap().to_vec(), "{at}");
            }
            "snapshot" => {
                let s = on_instance(instance, || breaker.snapshot()).unwrap();
                let offset = |ms: Option<u64>| ms.map(|ms| ms - START);
                let got = serde_json::json!({
                    "state": s.state.as_str(),
                    "failures": s.failures,
                    "successes": s.successes,
                    "openedAt": offset(s.opened_at_ms),
                    "trialsInFlight": s.trials_in_flight,
                    "generation": s.generation,
                    "retryAfterMs": s.retry_after.map(|d| d.as_millis() as u64),
                    "windowCalls": s.window.calls,
                    "windowFailures": s.window.failures,
                    "windowSlowCalls": s.window.slow_calls,
                    "failureRate": s.window.failure_rate,
                    "slowCallRate": s.window.slow_call_rate,
                    "openDurationMs": s.open_duration.map(|d| d.as_millis() as u64),
                    "retryAt": offset(s.retry_at_ms),
                });
                for (key, expected) in step["expect"].as_object().unwrap() {
                    // Numbers compare as numbers (a rate of 75 is 75.0).
                    let same = match (got[key].as_f64(), expected.as_f64()) {
                        (Some(a), Some(b)) => a == b,
                        _ => &got[key] == expected,
                    };
                    assert!(same, "{at}: {key} in {got}");
                }
            }
            "events" => {
                // Each expected change lists what it checks, in this order:
                // previous, current, remote, reason, the change's time.
                let changes = heard[on].changes();
                let expected = step["expect"].as_array().unwrap();
                let fresh: Vec<Value> = changes[told[on]..]
                    .iter()
                    .zip(expected.iter().chain(std::iter::repeat(&Value::Null)))
                    .map(|(c, wanted)| {
                        let full = [
                            Value::from(c.previous.as_str()),
                            Value::from(c.current.as_str()),
                            Value::from(c.remote),
                            Value::from(c.reason.as_str()),
                            Value::from(c.at_ms - START),
                        ];
                        let checked = wanted.as_array().map_or(3, Vec::len);
                        Value::from(full[..checked].to_vec())
                    })
                    .collect();
                told[on] = changes.len();
                assert_eq!(Value::Array(fresh), step["expect"], "{at}");
            }
            other => panic!("{at}: unknown step {other}"),
        }
    }
}

#[test]
fn every_scenario_holds_in_the_rust_host() {
    for file in scenario_files() {
        run(&file, false);
    }
}

#[test]
fn every_scenario_holds_in_the_rust_host_over_an_async_storage() {
    for file in scenario_files() {
        run(&file, true);
    }
}
