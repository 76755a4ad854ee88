//! The `tripswitch` command: a live demo of the breaker, status and operator
//! commands on a shared store, the HTTP proxy, and the component itself.

mod args;
mod demo;
mod operate;
mod proxy;
mod store;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    match args::Cli::parse().run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tripswitch: {error:#}");
            ExitCode::FAILURE
        }
    }
}
