//! Cost of one guarded call with memory storage, beside a bare closure call:
//! a success, a failure (counted, never tripping), and a rejection; and a
//! success and a failure with a failure-rate window (count and time).

use std::hint::black_box;

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use tripswitch::CircuitBreaker;

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
    // Windows that never trip: a failure-rate rule whose minimum no run
    // reaches (a count window's minimum is its size: it gets successes only).
    let time_window = |name: &str, flush: Duration| {
        CircuitBreaker::builder(name)
            .failure_rate_threshold(100)
            .minimum_calls(u32::MAX)
            .window(Duration::from_secs(30))
            .flush_interval(flush)
            .build()
            .unwrap()
    };
    let held = Duration::from_secs(1);
    let cases = [
        (
            "success, time window, held",
            time_window("bench-tw-s", held),
            true,
        ),
        (
            "failure, time window, held",
            time_window("bench-tw-f", held),
            false,
        ),
        (
            "success, time window, flush 0",
            time_window("bench-tw0-s", Duration::ZERO),
            true,
        ),
        (
            "failure, time window, flush 0",
            time_window("bench-tw0-f", Duration::ZERO),
            false,
        ),
        (
            "success, count window, held",
            CircuitBreaker::builder("bench-cw-s")
                .failure_rate_threshold(100)
                .window_calls(100)
                .build()
                .unwrap(),
            true,
        ),
    ];
    for (label, breaker, succeeds) in &cases {
        group.bench_function(*label, |b| {
            b.iter(|| {
                breaker.call(|| {
                    if *succeeds {
                        Ok::<u64, u64>(black_box(1))
                    } else {
                        Err(black_box(1))
                    }
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, calls);
criterion_main!(benches);
