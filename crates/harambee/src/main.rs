//! `harambee`: one binary for every role in a federation: `init` (a federation folder),
//! `serve` (its coordinator), `join` (a participant), `keygen` (a member's signing key),
//! `demo` (a coordinator and several participant processes on this machine), `simulate`
//! (many virtual participants in one process), `bench` (the performance targets against
//! baselines measured in the same run) and `admin` (a steward's signed change to a running
//! federation, through its dashboard).

mod admin;
mod bench;
mod bench_llm;
mod bench_verify;
mod charter;
mod cli;
mod demo;
mod demo_community;
mod demo_llm;
mod demo_sim;
mod export;
mod federation;
mod keygen;
mod ledger;
mod llm;
mod model;
mod progress;
mod replay_training;
mod simulate;

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;

fn main() -> ExitCode {
    let process_start = Instant::now();
    let cli = cli::Cli::parse();
    // Diagnostics go to stderr: a coordinator's and a participant's log by default, the
    // other commands' only when RUST_LOG asks (e.g. RUST_LOG=harambee_sim=debug).
    let default = match cli.command {
        cli::Command::Serve(_) | cli::Command::Join(_) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        cli::Command::Simulate(args) => simulate::run(args, process_start),
        cli::Command::Demo(args) => demo::run(args, process_start),
        cli::Command::Bench(args) => bench::run(args),
        cli::Command::Keygen(args) => keygen::run(args),
        cli::Command::Init(args) => federation::init(args),
        cli::Command::Invite(args) => federation::invite(args),
        cli::Command::Serve(args) => federation::serve(args),
        cli::Command::Join(args) => federation::join(args),
        cli::Command::Ledger(args) => ledger::run(args),
        cli::Command::Export(args) => export::run(args),
        cli::Command::Charter(args) => charter::run(args),
        cli::Command::Admin(args) => admin::run(args),
        cli::Command::Model(args) => model::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
