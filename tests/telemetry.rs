//! The `metrics` and `tracing` features: a recorder installed after the
//! breaker was built sees the counters, the state gauge and the
//! transitions change as a scenario runs; `publish` sets the state and
//! window gauges from a snapshot that follows the clock; a subscriber hears
//! state changes at info and an outage at warn.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tripswitch::telemetry::{names, publish};
use tripswitch_tests::{Faulty, advance, builder, clock, fail, succeed};

/// Every metric the snapshotter holds, as `name{label=value,...}` and its value.
fn metrics(snapshotter: &Snapshotter) -> Vec<(String, f64)> {
    let mut all: Vec<(String, f64)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            let value = match value {
                DebugValue::Counter(n) => n as f64,
                DebugValue::Gauge(g) => g.into_inner(),
                DebugValue::Histogram(h) => h.len() as f64,
            };
            (format!("{}{{{}}}", key.name(), labels.join(",")), value)
        })
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

fn value(all: &[(String, f64)], key: &str) -> f64 {
    all.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no {key} in {all:#?}"))
}

#[test]
fn a_recorder_installed_after_the_breaker_sees_every_count() {
    let clock = clock();
    let breaker = builder("pay", &clock)
        .fail_max(2)
        .reset_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        succeed(&breaker).unwrap();
        fail(&breaker).unwrap_err();
        fail(&breaker).unwrap_err();
        succeed(&breaker).unwrap_err();
        advance(&clock, 1_000);
        succeed(&breaker).unwrap();
        // A permit dropped unreported: the call was cancelled.
        drop(breaker.acquire().unwrap());
    });
    let all = metrics(&snapshotter);
    let calls = names::CALLS;
    assert_eq!(
        value(&all, &format!("{}{{breaker=pay}}", names::ADMITTED)),
        5.0
    );
    assert_eq!(
        value(&all, &format!("{calls}{{breaker=pay,outcome=ignored}}")),
        1.0
    );
    assert_eq!(
        value(&all, &format!("{calls}{{breaker=pay,outcome=success}}")),
        2.0
    );
    assert_eq!(
        value(&all, &format!("{calls}{{breaker=pay,outcome=failure}}")),
        2.0
    );
    assert_eq!(
        value(
            &all,
            &format!("{}{{breaker=pay,reason=open}}", names::NOT_PERMITTED)
        ),
        1.0
    );
    for (from, to) in [
        ("closed", "open"),
        ("open", "half-open"),
        ("half-open", "closed"),
    ] {
        let key = format!(
            "{}{{breaker=pay,from={from},remote=false,to={to}}}",
            names::TRANSITIONS
        );
        assert_eq!(value(&all, &key), 1.0, "{key}");
    }
    for (state, expected) in [
        ("closed", 1.0),
        ("open", 0.0),
        ("half-open", 0.0),
        ("forced-open", 0.0),
    ] {
        let key = format!("{}{{breaker=pay,state={state}}}", names::STATE);
        assert_eq!(value(&all, &key), expected, "{key}");
    }
}

#[test]
fn publish_sets_the_state_and_window_gauges_from_a_snapshot() {
    let clock = clock();
    let breaker = builder("rates", &clock)
        .failure_rate_threshold(50)
        .minimum_calls(4)
        .window_calls(10)
        .reset_timeout(Duration::from_secs(1))
        .flush_interval(Duration::ZERO)
        .build()
        .unwrap();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let gauges = |state: &str| {
        let all = metrics(&snapshotter);
        let on: Vec<&str> = tripswitch::State::ALL
            .map(tripswitch::State::as_str)
            .into_iter()
            .filter(|s| {
                value(
                    &all,
                    &format!("{}{{breaker=rates,state={s}}}", names::STATE),
                ) == 1.0
            })
            .collect();
        assert_eq!(on, [state], "{all:#?}");
        let gauge = |name: &str| value(&all, &format!("{name}{{breaker=rates}}"));
        (
            gauge(names::FAILURE_RATE),
            gauge(names::SLOW_CALL_RATE),
            gauge(names::WINDOW_CALLS),
        )
    };
    metrics::with_local_recorder(&recorder, || {
        // Before any call: closed, an empty window, no rates yet.
        publish(&breaker).unwrap();
        let (failure_rate, slow_call_rate, calls) = gauges("closed");
        assert!(
            failure_rate.is_nan() && slow_call_rate.is_nan(),
            "{failure_rate} {slow_call_rate}"
        );
        assert_eq!(calls, 0.0);

        for _ in 0..3 {
            succeed(&breaker).unwrap();
        }
        fail(&breaker).unwrap_err();
        publish(&breaker).unwrap();
        assert_eq!(gauges("closed"), (25.0, 0.0, 4.0));

        // 3 failures in 6 calls: 50%, the threshold, opens the circuit.
        fail(&breaker).unwrap_err();
        fail(&breaker).unwrap_err();
        publish(&breaker).unwrap();
        gauges("open");

        // The timeout elapses with no call made: the snapshot reads half-open.
        advance(&clock, 1_000);
        let snapshot = publish(&breaker).unwrap();
        assert_eq!(snapshot.state, tripswitch::State::HalfOpen);
        gauges("half-open");
    });
}

#[test]
fn a_window_restart_is_counted_once_by_the_instance_that_made_it() {
    let clock = clock();
    let storage = tripswitch::MemoryStorage::new();
    let windowed = |window: u32| {
        builder("shape", &clock)
            .storage(storage.clone())
            .failure_rate_threshold(50)
            .window_calls(window)
            .flush_interval(Duration::ZERO)
            .build()
            .unwrap()
    };
    let (old, new) = (windowed(10), windowed(20));
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        succeed(&old).unwrap();
        // Once the old shape's instances wrote nothing for a minute, the new
        // one restarts the window; the old one then counts nothing in it.
        advance(&clock, 60_000);
        succeed(&new).unwrap();
        succeed(&old).unwrap();
        succeed(&new).unwrap();
    });
    let all = metrics(&snapshotter);
    let key = format!("{}{{breaker=shape,kind=window-restarted}}", names::NOTICES);
    assert_eq!(value(&all, &key), 1.0, "{all:#?}");
}

/// A subscriber that keeps each event's level and fields.
#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Vec<String>>>);

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={:?}", field.name(), value));
    }
}

impl tracing::Subscriber for Collect {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields(event.metadata().level().to_string());
        event.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn a_subscriber_hears_changes_at_info_and_an_outage_at_warn() {
    let clock = clock();
    let storage = Faulty::new();
    let breaker = builder("db", &clock)
        .fail_max(1)
        .storage(storage.clone())
        .build()
        .unwrap();
    // The global subscriber, not a scoped one: callsites' interest is
    // global, and the other test's thread hits the same callsites.
    let heard = Collect::default();
    tracing::subscriber::set_global_default(heard.clone()).unwrap();
    fail(&breaker).unwrap_err();
    storage.set_failing(true);
    let _ = succeed(&breaker);
    let _ = succeed(&breaker);
    let events: Vec<String> = heard
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.contains("breaker=\"db\""))
        .cloned()
        .collect();
    assert_eq!(events.len(), 2, "{events:#?}");
    assert!(
        events[0].starts_with("INFO")
            && events[0].contains("breaker=\"db\"")
            && events[0].contains("from=\"closed\"")
            && events[0].contains("to=\"open\"")
            && events[0].contains("reason=\"tripped\""),
        "{events:#?}"
    );
    assert!(
        events[1].starts_with("WARN") && events[1].contains("storage"),
        "one warning per outage: {events:#?}"
    );
}
