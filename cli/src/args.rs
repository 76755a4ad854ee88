//! The command line: its parsing and dispatch.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::{demo, operate, proxy};

/// A circuit breaker whose state machine is one WebAssembly component.
#[derive(Parser)]
#[command(name = "tripswitch", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a breaker in front of a simulated flaky dependency and shows what happens.
    Demo(demo::DemoArgs),
    /// Shows the breakers of a shared store: state, counts, opened-at, time until a trial.
    Status(operate::StatusArgs),
    /// Opens a breaker now.
    Open(operate::ActionArgs),
    /// Closes a breaker and resets its counters.
    Close(operate::ActionArgs),
    /// Moves a breaker to half-open, admitting trials.
    HalfOpen(operate::ActionArgs),
    /// Rejects every call until another operator command.
    ForceOpen(operate::ActionArgs),
    /// Admits every call and records nothing.
    Disable(operate::ActionArgs),
    /// Serves an HTTP middleware plugin in front of an upstream, its breaker in memory or Redis.
    Proxy(proxy::ProxyArgs),
    /// Writes the embedded breaker component to a file.
    Component {
        /// Where to write it.
        #[arg(long, default_value = "tripswitch.wasm")]
        out: PathBuf,
    },
}

impl Cli {
    /// Runs the chosen command.
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Demo(args) => demo::run(&args),
            Command::Status(args) => operate::status(&args),
            Command::Open(args) => operate::act(tripswitch::Action::Open, &args),
            Command::Close(args) => operate::act(tripswitch::Action::Close, &args),
            Command::HalfOpen(args) => operate::act(tripswitch::Action::HalfOpen, &args),
            Command::ForceOpen(args) => operate::act(tripswitch::Action::ForceOpen, &args),
            Command::Disable(args) => operate::act(tripswitch::Action::Disable, &args),
            Command::Proxy(args) => proxy::run(&args),
            Command::Component { out } => {
                if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                }
                std::fs::write(&out, tripswitch::COMPONENT)
                    .with_context(|| format!("writing {}", out.display()))?;
                println!("{} ({} bytes)", out.display(), tripswitch::COMPONENT.len());
                Ok(())
            }
        }
    }
}
