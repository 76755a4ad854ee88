//! `tripswitch demo`: a breaker with memory storage in front of a simulated
//! flaky dependency, printing each call's fate and each state change as it
//! happens, then a summary.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use tripswitch::{
    CallError, CircuitBreaker, Clock, Listener, ManualClock, StateChange, SystemClock,
};

/// The demo's scenario. Breaker knobs left unset take the component's defaults.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// How long the demo runs, in ms.
    #[arg(long, default_value_t = 6000)]
    duration_ms: u64,
    /// Time between two calls, in ms.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    interval_ms: u64,
    /// When the dependency is down, as START..END in ms from the demo's start.
    #[arg(long, default_value = "1000..3000", value_parser = parse_range)]
    outage: Range<u64>,
    /// Share of calls that fail while the dependency is down (0 to 1).
    #[arg(long, default_value_t = 1.0, value_parser = parse_rate)]
    outage_failure_rate: f64,
    /// While the dependency is down, every other call fails (a 50 % rate
    /// that never makes two failures in a row); overrides --outage-failure-rate.
    #[arg(long)]
    outage_alternating: bool,
    /// Share of calls that fail while the dependency is up (0 to 1).
    #[arg(long, default_value_t = 0.05, value_parser = parse_rate)]
    failure_rate: f64,
    /// Seed of the simulated failures, for a repeatable run.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Runs on a virtual clock: the same run, without waiting.
    #[arg(long = "virtual")]
    virtual_clock: bool,
    /// The breaker's name (its key in the store).
    #[arg(long, default_value = "dependency")]
    name: String,
    #[command(flatten)]
    store: crate::store::StoreArgs,
    /// Breaker: consecutive failures that open the circuit [3; none with
    /// --failure-rate-threshold].
    #[arg(long)]
    fail_max: Option<u32>,
    /// Breaker: how long the circuit stays open before a trial, in ms.
    #[arg(long, default_value_t = 1000)]
    reset_timeout_ms: u64,
    /// Breaker: trial successes that close the circuit [component default].
    #[arg(long)]
    success_threshold: Option<u32>,
    /// Breaker: trials in flight at once in half-open [component default].
    #[arg(long)]
    half_open_max_calls: Option<u32>,
    /// Breaker: the window's failure rate (percent) that opens the circuit.
    #[arg(long)]
    failure_rate_threshold: Option<u8>,
    /// Breaker: calls the window must hold before its rates count [component default].
    #[arg(long)]
    minimum_calls: Option<u32>,
    /// Breaker: a time window of this many ms [component default].
    #[arg(long)]
    window_ms: Option<u64>,
    /// Breaker: a count window of the last this many calls.
    #[arg(long)]
    window_calls: Option<u32>,
    /// Breaker: a call slower than this many ms is slow.
    #[arg(long)]
    slow_call_ms: Option<u64>,
    /// Breaker: the window's slow-call rate (percent) that opens the circuit.
    #[arg(long)]
    slow_call_rate_threshold: Option<u8>,
    /// Breaker: each open after a failed trial waits this many times longer.
    #[arg(long)]
    backoff_multiplier: Option<f64>,
    /// Breaker: the longest an open waits, in ms.
    #[arg(long)]
    max_reset_timeout_ms: Option<u64>,
}

/// The demo's fail-max: the flag, else 3 unless a failure-rate rule replaces it.
fn fail_max(args: &DemoArgs) -> Option<u32> {
    args.fail_max
        .or_else(|| args.failure_rate_threshold.is_none().then_some(3))
}

fn parse_range(text: &str) -> Result<Range<u64>, String> {
    let (start, end) = text
        .split_once("..")
        .ok_or_else(|| format!("expected START..END in ms, got {text:?}"))?;
    let number = |s: &str| {
        s.trim()
            .parse::<u64>()
            .map_err(|e| format!("{s:?} is not a whole number of ms: {e}"))
    };
    let range = number(start)?..number(end)?;
    if range.start > range.end {
        return Err(format!(
            "the outage ends ({}) before it starts ({})",
            range.end, range.start
        ));
    }
    Ok(range)
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        Ok(rate) => Err(format!("{rate} is not between 0 and 1")),
        Err(e) => Err(format!("{text:?} is not a number: {e}")),
    }
}

/// The demo's tallies.
#[derive(Default)]
struct Tally {
    calls: u64,
    succeeded: u64,
    failed: u64,
    rejected: u64,
    trials: u64,
    transitions: BTreeMap<String, u64>,
}

/// Prints state changes as they happen and counts them.
struct Printer {
    start_ms: u64,
    tally: Arc<Mutex<Tally>>,
}

impl Listener for Printer {
    fn state_change(&self, _breaker: &str, change: &StateChange) {
        let at = change.at_ms.saturating_sub(self.start_ms);
        say!(
            "  {}  state {} -> {} ({})",
            stamp(at),
            change.previous,
            change.current,
            change.reason
        );
        let key = format!("{} -> {}", change.previous, change.current);
        *self
            .tally
            .lock()
            .unwrap()
            .transitions
            .entry(key)
            .or_default() += 1;
    }
}

/// Prints a line; a closed stdout (`| head`) ends the demo quietly.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::demo::emit(format_args!($($arg)*))
    };
}
use say;

/// Writes one line to stdout, exiting quietly if the reader has gone.
pub(crate) fn emit(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(error) = out.write_fmt(line).and_then(|()| out.write_all(b"\n")) {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("tripswitch: writing to stdout: {error}");
        std::process::exit(1);
    }
}

fn stamp(ms: u64) -> String {
    format!("+{}.{:03}s", ms / 1000, ms % 1000)
}

/// The simulated dependency failed.
#[derive(Debug)]
struct Unavailable;

/// Runs the demo.
pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let virtual_clock = ManualClock::new(SystemClock.now_ms());
    let clock: Arc<dyn Clock> = if args.virtual_clock {
        Arc::new(virtual_clock.clone())
    } else {
        Arc::new(SystemClock)
    };
    let start_ms = clock.now_ms();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let config = tripswitch::Config {
        fail_max: fail_max(args),
        success_threshold: args.success_threshold,
        half_open_max_calls: args.half_open_max_calls,
        failure_rate_threshold: args.failure_rate_threshold,
        minimum_calls: args.minimum_calls,
        window_ms: args.window_ms,
        window_calls: args.window_calls,
        slow_call_ms: args.slow_call_ms,
        slow_call_rate_threshold: args.slow_call_rate_threshold,
        backoff_multiplier: args.backoff_multiplier,
        max_reset_timeout_ms: args.max_reset_timeout_ms,
        ..tripswitch::Config::default()
    };
    let builder = CircuitBreaker::builder(args.name.clone())
        .config(config)
        .storage(args.store.storage()?)
        .reset_timeout(Duration::from_millis(args.reset_timeout_ms))
        .clock(clock.clone())
        .listener(Printer {
            start_ms,
            tally: tally.clone(),
        });
    let breaker = builder
        .build()
        .with_context(|| format!("making the demo's breaker {:?}", args.name))?;

    let rule = match (fail_max(args), args.failure_rate_threshold) {
        (Some(n), None) => format!("fail-max {n}"),
        (None, Some(rate)) => format!("failure rate {rate} %"),
        (Some(n), Some(rate)) => format!("fail-max {n} or failure rate {rate} %"),
        (None, None) => "the default rule".to_string(),
    };
    say!(
        "breaker {:?} in {}: {rule}, reset-timeout {} ms; a call every {} ms for {} ms; \
         dependency down from {} to {} ms{}; seed {}{}",
        breaker.name(),
        args.store.describe(),
        args.reset_timeout_ms,
        args.interval_ms,
        args.duration_ms,
        args.outage.start,
        args.outage.end,
        if args.outage_alternating {
            ", every other call failing"
        } else {
            ""
        },
        args.seed,
        if args.virtual_clock {
            " (virtual clock)"
        } else {
            ""
        },
    );
    let mut rng = fastrand::Rng::with_seed(args.seed);
    let wall_start = Instant::now();
    let calls = args.duration_ms / args.interval_ms;
    for n in 0..calls {
        let offset = n * args.interval_ms;
        if args.virtual_clock {
            virtual_clock.set(start_ms + offset);
        } else {
            let due = wall_start + Duration::from_millis(offset);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        let down = args.outage.contains(&offset);
        let rate = if down {
            args.outage_failure_rate
        } else {
            args.failure_rate
        };
        let fails = if down && args.outage_alternating {
            n % 2 == 1
        } else {
            rng.f64() < rate
        };
        let mut trial = false;
        // The call's own fate, and a note if the breaker could not record it.
        let mut unrecorded = None;
        let mut degraded = None;
        let result = match breaker.acquire() {
            Ok(permit) => {
                trial = permit.is_trial();
                degraded = permit.degraded().map(str::to_owned);
                let recorded = if fails {
                    permit.failure()
                } else {
                    permit.success().map(|()| false)
                };
                let tripped = recorded.unwrap_or_else(|error| {
                    unrecorded = Some(error);
                    false
                });
                if fails {
                    Err(CallError::Failed {
                        error: Unavailable,
                        tripped,
                    })
                } else {
                    Ok(())
                }
            }
            Err(error) => Err(CallError::from(error)),
        };
        let at = clock.now_ms().saturating_sub(start_ms);
        let mut tally = tally.lock().unwrap();
        tally.calls += 1;
        tally.trials += u64::from(trial);
        let kind = if trial { "trial" } else { "call " };
        let fate = match &result {
            Ok(()) => {
                tally.succeeded += 1;
                "ok".to_string()
            }
            Err(CallError::Failed { tripped, .. }) => {
                tally.failed += 1;
                if *tripped {
                    "failed, tripped the breaker".into()
                } else {
                    "failed".into()
                }
            }
            Err(CallError::Rejected(rejected)) => {
                tally.rejected += 1;
                format!("rejected: {rejected}")
            }
            // The storage failed (the fallback state decided) or the result
            // could not be recorded: shown, and the demo goes on.
            Err(CallError::Breaker(error)) => format!("breaker error: {error}"),
        };
        drop(tally);
        let mut note = degraded.map_or_else(String::new, |why| {
            format!(" (admitted by the fallback: {why})")
        });
        if let Some(error) = unrecorded {
            note.push_str(&format!(" (not recorded: {error})"));
        }
        say!("  {}  {kind} #{:<4} {fate}{note}", stamp(at), n + 1);
    }

    let tally = tally.lock().unwrap();
    say!("");
    say!("summary");
    let rows = [
        ("calls", tally.calls),
        ("admitted", tally.succeeded + tally.failed),
        ("  succeeded", tally.succeeded),
        ("  failed", tally.failed),
        ("  trials", tally.trials),
        ("rejected", tally.rejected),
        ("transitions", tally.transitions.values().sum()),
    ];
    for (label, value) in rows {
        say!("  {label:<22}{value:>6}");
    }
    for (transition, count) in &tally.transitions {
        say!("    {transition:<20}{count:>6}");
    }
    Ok(())
}
