//! The `tripswitch` command: a live demo of the breaker, and the component itself.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    match cli::Cli::parse().run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("tripswitch: {message}");
            ExitCode::FAILURE
        }
    }
}
