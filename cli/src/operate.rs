//! Operator commands on a shared store: `status`, and the state changes
//! `open`, `close`, `half-open`, `force-open`, `disable`. They go through the
//! component like every other change.

use std::time::{Duration, UNIX_EPOCH};

use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use clap::Args;
use tripswitch::{Action, CircuitBreaker, Snapshot, State, Storage};

use crate::store::StoreArgs;

/// Options of `tripswitch status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// One breaker; all breakers of the namespace when left out.
    name: Option<String>,
    /// Prints JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Refreshes the table in place once a second (JSON: a line a second)
    /// until interrupted.
    #[arg(long)]
    watch: bool,
    #[command(flatten)]
    store: StoreArgs,
}

/// Options of the state-changing commands.
#[derive(Args, Debug)]
pub struct ActionArgs {
    /// The breaker.
    name: String,
    #[command(flatten)]
    store: StoreArgs,
}

/// A breaker on the stored record, with the component's defaults: the
/// record says when a trial is allowed and what its window holds.
fn breaker(name: &str, storage: &Arc<dyn Storage>) -> anyhow::Result<CircuitBreaker> {
    CircuitBreaker::builder(name)
        .storage(Arc::clone(storage))
        .build()
        .with_context(|| format!("making breaker {name:?}"))
}

/// Runs a state-changing command.
pub fn act(action: Action, args: &ActionArgs) -> anyhow::Result<()> {
    if !args.store.shared() {
        bail!("operator commands act on a shared store: give --redis URL or --sentinel URL");
    }
    let storage = args.store.storage()?;
    let existed = storage
        .load(&args.name)
        .with_context(|| format!("reading breaker {:?}", args.name))?
        .is_some();
    let breaker = breaker(&args.name, &storage)?;
    // A corrupt record has no state to show; the action overwrites it.
    let before = breaker
        .state()
        .map_or_else(|_| "unreadable".to_string(), |s| s.to_string());
    breaker
        .operate(action)
        .with_context(|| format!("{} {:?}", action.as_str(), args.name))?;
    let after = breaker
        .state()
        .with_context(|| format!("reading breaker {:?}", args.name))?;
    if !existed {
        eprintln!(
            "note: no breaker named {:?} was stored in {}; it is now",
            args.name,
            args.store.describe()
        );
    }
    println!("{}: {before} -> {after}", args.name);
    Ok(())
}

/// Runs `status`.
pub fn status(args: &StatusArgs) -> anyhow::Result<()> {
    let Some(redis) = args.store.redis()? else {
        bail!("status reads a shared store: give --redis URL or --sentinel URL");
    };
    if !args.watch {
        return show(args, redis);
    }
    loop {
        if !args.json {
            // Home and clear: the table is redrawn in place.
            print!("\x1b[H\x1b[2J");
            println!("{} · every 1 s · Ctrl-C stops\n", args.store.describe());
        }
        // A failing read shows, and the watch goes on.
        if let Err(error) = show(args, redis.clone()) {
            eprintln!("{error:#}");
        }
        std::io::Write::flush(&mut std::io::stdout()).context("writing the table")?;
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Reads and prints the breakers once.
fn show(args: &StatusArgs, redis: tripswitch::RedisStorage) -> anyhow::Result<()> {
    let names = match &args.name {
        Some(name) => vec![name.clone()],
        None => redis
            .breakers()
            .with_context(|| format!("listing the breakers in {}", args.store.describe()))?,
    };
    let storage: Arc<dyn Storage> = Arc::new(redis);
    let mut rows = Vec::new();
    let mut unreadable = Vec::new();
    for name in &names {
        match breaker(name, &storage)?.snapshot() {
            Ok(snapshot) => rows.push((name.clone(), snapshot)),
            // One bad record does not hide the others.
            Err(error) => unreadable.push((name.clone(), error.to_string())),
        }
    }
    let result = if unreadable.is_empty() {
        Ok(())
    } else {
        Err(anyhow!("{} breaker(s) could not be read", unreadable.len()))
    };
    for (name, error) in &unreadable {
        eprintln!("{name}: {error}");
    }
    if args.json {
        let list: Vec<Row> = rows
            .iter()
            .map(|(name, snapshot)| Row { name, snapshot })
            .collect();
        let text = serde_json::to_string(&list).context("writing JSON")?;
        println!("{text}");
        return result;
    }
    if rows.is_empty() && unreadable.is_empty() {
        println!("no breakers in {}", args.store.describe());
        return result;
    }
    println!(
        "{:<24} {:<12} {:>8} {:>9} {:>6} {:<24} {:>11} {:>16} {:>10}",
        "NAME",
        "STATE",
        "FAILURES",
        "SUCCESSES",
        "TRIALS",
        "OPENED AT",
        "RETRY IN",
        "WINDOW",
        "GENERATION"
    );
    let mut estimated = false;
    for (name, s) in &rows {
        // An open record from before format 3 keeps no trial time: the
        // wait is the component's default reset timeout's, an estimate.
        let estimate = s.state == State::Open && s.retry_at_ms.is_none();
        estimated |= estimate;
        println!(
            "{:<24} {:<12} {:>8} {:>9} {:>6} {:<24} {:>11} {:>16} {:>10}",
            name,
            s.state.as_str(),
            s.failures,
            s.successes,
            s.trials_in_flight,
            s.opened_at_ms.map_or_else(|| "-".to_string(), timestamp),
            s.retry_after.map_or_else(
                || "-".to_string(),
                |wait| format!("{}{} ms", if estimate { "~" } else { "" }, wait.as_millis())
            ),
            window(s),
            s.generation
        );
    }
    if estimated {
        println!(
            "~ estimated with the default reset timeout: the record predates the trial time it now keeps"
        );
    }
    result
}

/// The window's counts: `calls/failed/slow` (`-` when it holds nothing).
fn window(s: &Snapshot) -> String {
    let w = &s.window;
    if w.calls == 0 {
        return "-".to_string();
    }
    format!("{}/{}/{}", w.calls, w.failures, w.slow_calls)
}

/// `ms` since the Unix epoch as an RFC 3339 time; past what RFC 3339 can
/// write (year 9999), the milliseconds themselves.
fn timestamp(ms: u64) -> String {
    /// 9999-12-31T23:59:59.999Z, the last instant RFC 3339 writes.
    const LAST_RFC3339_MS: u64 = 253_402_300_799_999;
    if ms > LAST_RFC3339_MS {
        return format!("{ms} ms (past year 9999)");
    }
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// One breaker in `status --json`: its name and its snapshot's fields.
#[derive(serde::Serialize)]
struct Row<'a> {
    name: &'a str,
    #[serde(flatten)]
    snapshot: &'a Snapshot,
}

#[cfg(test)]
mod tests {
    use super::timestamp;

    #[test]
    fn every_time_is_written() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(timestamp(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
        assert_eq!(
            timestamp(253_402_300_800_000),
            "253402300800000 ms (past year 9999)"
        );
        assert_eq!(
            timestamp(u64::MAX),
            format!("{} ms (past year 9999)", u64::MAX)
        );
    }
}
