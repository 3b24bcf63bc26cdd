//! `harambee`: one binary for every role in a federation. Today: `simulate` (many virtual
//! participants on one machine), `demo` (a small language-identification federation with a
//! per-language report), `bench` (the performance targets against baselines measured in
//! the same run) and `keygen` (a member's signing key).

mod bench;
mod cli;
mod demo;
mod keygen;
mod progress;
mod simulate;

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;

fn main() -> ExitCode {
    let process_start = Instant::now();
    // Diagnostics go to stderr, off unless RUST_LOG asks (e.g. RUST_LOG=harambee_sim=debug).
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Simulate(args) => simulate::run(args, process_start),
        cli::Command::Demo(args) => demo::run(args, process_start),
        cli::Command::Bench(args) => bench::run(args),
        cli::Command::Keygen(args) => keygen::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
