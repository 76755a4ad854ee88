//! Cost of one guarded call with memory storage, beside a bare closure call:
//! a success, a failure (counted, never tripping), and a rejection; and a
//! success and a failure with a failure-rate window (count and time).

use std::hint::black_box;

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use tripswitch::{Builder, CircuitBreaker};

fn calls(c: &mut Criterion) {
    let mut group = c.benchmark_group("call");
    group.bench_function("bare closure", |b| {
        b.iter(|| black_box(|| Ok::<u64, ()>(black_box(1)))())
    });

    let closed = CircuitBreaker::new("bench-success").unwrap();
    group.bench_function("success", |b| {
        b.iter(|| closed.call(|| Ok::<u64, ()>(black_box(1))))
    });

    let failing = CircuitBreaker::builder("bench-failure")
        .fail_max(u32::MAX)
        .build()
        .unwrap();
    group.bench_function("failure", |b| {
        b.iter(|| failing.call(|| Err::<u64, u64>(black_box(1))))
    });

    let open = CircuitBreaker::new("bench-rejection").unwrap();
    open.force_open().unwrap();
    group.bench_function("rejection", |b| {
        b.iter(|| open.call(|| Ok::<u64, ()>(black_box(1))))
    });
    // A window that never trips: a slow-call rule no call meets, and
    // consecutive failures that never reach fail-max.
    let windows: [(&str, fn(Builder) -> Builder); 2] = [
        ("count window", |b| b.window_calls(100)),
        ("time window", |b| b.window(Duration::from_secs(30))),
    ];
    for (window, shape) in windows {
        let rated = |name: &str| {
            shape(CircuitBreaker::builder(name))
                .slow_call(Duration::from_secs(3600))
                .fail_max(u32::MAX)
                .build()
                .unwrap()
        };
        let succeeding = rated(&format!("bench-{window}-success"));
        group.bench_function(format!("success, {window}"), |b| {
            b.iter(|| succeeding.call(|| Ok::<u64, ()>(black_box(1))))
        });
        let failing = rated(&format!("bench-{window}-failure"));
        group.bench_function(format!("failure, {window}"), |b| {
            b.iter(|| failing.call(|| Err::<u64, u64>(black_box(1))))
        });
    }
    group.finish();
}

criterion_group!(benches, calls);
criterion_main!(benches);
