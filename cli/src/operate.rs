//! Operator commands on a shared store: `status`, and the state changes
//! `open`, `close`, `half-open`, `force-open`, `disable`. They go through the
//! component like every other change.

use std::time::{Duration, UNIX_EPOCH};

use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use clap::Args;
use tripswitch::{Action, CircuitBreaker, Snapshot, Storage};

use crate::store::StoreArgs;

/// Options of `tripswitch status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// One breaker; all breakers of the namespace when left out.
    name: Option<String>,
    /// Prints JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// The breakers' reset timeout in ms, for the time until a trial [component default].
    #[arg(long)]
    reset_timeout_ms: Option<u64>,
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

fn breaker(
    name: &str,
    storage: &Arc<dyn Storage>,
    reset_timeout_ms: Option<u64>,
) -> anyhow::Result<CircuitBreaker> {
    let mut builder = CircuitBreaker::builder(name).storage(Arc::clone(storage));
    if let Some(ms) = reset_timeout_ms {
        builder = builder.reset_timeout(Duration::from_millis(ms));
    }
    builder
        .build()
        .with_context(|| format!("making breaker {name:?}"))
}

/// Runs a state-changing command.
pub fn act(action: Action, args: &ActionArgs) -> anyhow::Result<()> {
    if args.store.redis.is_empty() {
        bail!("operator commands act on a shared store: give --redis URL");
    }
    let storage = args.store.storage()?;
    let existed = storage
        .load(&args.name)
        .with_context(|| format!("reading breaker {:?}", args.name))?
        .is_some();
    let breaker = breaker(&args.name, &storage, None)?;
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
        bail!("status reads a shared store: give --redis URL");
    };
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
        match breaker(name, &storage, args.reset_timeout_ms)?.snapshot() {
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
        "{:<24} {:<12} {:>8} {:>9} {:>6} {:<24} {:>10} {:>10}",
        "NAME", "STATE", "FAILURES", "SUCCESSES", "TRIALS", "OPENED AT", "RETRY IN", "GENERATION"
    );
    for (name, s) in &rows {
        println!(
            "{:<24} {:<12} {:>8} {:>9} {:>6} {:<24} {:>10} {:>10}",
            name,
            s.state.as_str(),
            s.failures,
            s.successes,
            s.trials_in_flight,
            s.opened_at_ms.map_or_else(|| "-".to_string(), timestamp),
            s.retry_after.map_or_else(
                || "-".to_string(),
                |wait| format!("{} ms", wait.as_millis())
            ),
            s.generation
        );
    }
    result
}

fn timestamp(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// One breaker in `status --json`: its name and its snapshot's fields.
#[derive(serde::Serialize)]
struct Row<'a> {
    name: &'a str,
    #[serde(flatten)]
    snapshot: &'a Snapshot,
}
