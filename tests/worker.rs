//! A worker process for the many-process tests: one breaker on a shared
//! Redis, driven line by line over stdin on a virtual clock.
//!
//! Usage: `tripswitch-worker URL NAMESPACE NAME FAIL_MAX RESET_MS HALF_OPEN_MAX
//! [FAILURE_RATE MINIMUM_CALLS WINDOW_MS FLUSH_INTERVAL_MS]`; a FAIL_MAX of `-`
//! leaves it unset. Commands: `clock MS`, `fail`, `succeed`, `acquire`,
//! `success`, `failure`, `state`, `window`, `flush`. Each answers one line on
//! stdout.

use std::io::{BufRead, Write};
use std::time::Duration;

use tripswitch::{CallError, CircuitBreaker, ManualClock, Permit, RedisStorage};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (fixed, window) = args.split_at(args.len().min(6));
    let [url, namespace, name, fail_max, reset_ms, half_open_max] = fixed else {
        eprintln!(
            "usage: tripswitch-worker URL NAMESPACE NAME FAIL_MAX RESET_MS HALF_OPEN_MAX \
             [FAILURE_RATE MINIMUM_CALLS WINDOW_MS FLUSH_INTERVAL_MS]"
        );
        std::process::exit(2);
    };
    let number = |text: &str| -> u64 {
        text.parse().unwrap_or_else(|e| {
            eprintln!("{text:?} is not a number: {e}");
            std::process::exit(2)
        })
    };
    let clock = ManualClock::new(0);
    let storage = RedisStorage::builder(url.clone())
        .namespace(namespace.clone())
        .response_timeout(Duration::from_secs(2))
        .build()
        .unwrap_or_else(|e| {
            eprintln!("{e}");
            std::process::exit(2)
        });
    let mut builder = CircuitBreaker::builder(name.clone())
        .reset_timeout(Duration::from_millis(number(reset_ms)))
        .half_open_max_calls(number(half_open_max) as u32)
        .storage(storage)
        .clock(clock.clone());
    if fail_max != "-" {
        builder = builder.fail_max(number(fail_max) as u32);
    }
    if let [rate, minimum, window_ms, flush_ms] = window {
        builder = builder
            .failure_rate_threshold(number(rate) as u8)
            .minimum_calls(number(minimum) as u32)
            .window(Duration::from_millis(number(window_ms)))
            .flush_interval(Duration::from_millis(number(flush_ms)));
    }
    let breaker = builder.build().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    let mut held: Option<Permit> = None;
    let stdout = std::io::stdout();
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("reading stdin");
        let answer = match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["clock", ms] => {
                clock.set(number(ms));
                "ok".to_string()
            }
            ["fail"] => match breaker.call(|| Err::<(), _>("down")) {
                Err(CallError::Failed { tripped, .. }) => format!("failed tripped={tripped}"),
                Err(CallError::Rejected(r)) => format!("rejected {:?}", r.state()),
                other => format!("error {other:?}"),
            },
            ["succeed"] => match breaker.call(|| Ok::<(), ()>(())) {
                Ok(()) => "ok".to_string(),
                Err(CallError::Rejected(r)) => format!("rejected {:?}", r.state()),
                other => format!("error {other:?}"),
            },
            ["acquire"] => match breaker.acquire() {
                Ok(permit) => {
                    let trial = permit.is_trial();
                    held = Some(permit);
                    format!("permit trial={trial}")
                }
                Err(error) => format!("rejected {error}"),
            },
            ["success"] => match held.take() {
                Some(permit) => format!("reported {:?}", permit.success()),
                None => "no permit".to_string(),
            },
            ["failure"] => match held.take() {
                Some(permit) => format!("reported {:?}", permit.failure()),
                None => "no permit".to_string(),
            },
            ["state"] => match breaker.snapshot() {
                Ok(s) => format!("{} failures={}", s.state, s.failures),
                Err(error) => format!("error {error}"),
            },
            ["flush"] => match breaker.flush() {
                Ok(()) => "ok".to_string(),
                Err(error) => format!("error {error}"),
            },
            ["window"] => match breaker.snapshot() {
                Ok(s) => format!("calls={} failed={}", s.window.calls, s.window.failures),
                Err(error) => format!("error {error}"),
            },
            other => format!("unknown command {other:?}"),
        };
        let mut out = stdout.lock();
        writeln!(out, "{answer}")
            .and_then(|()| out.flush())
            .expect("writing stdout");
    }
}
