//! Cost of one guarded call with memory storage, beside a bare closure call:
//! a success, a failure (counted, never tripping), and a rejection.

use std::hint::black_box;

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
    group.finish();
}

criterion_group!(benches, calls);
criterion_main!(benches);
