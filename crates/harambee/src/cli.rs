//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Harambee: train open models together. Each participant keeps its data; only model
/// updates travel.
#[derive(Debug, Parser)]
#[command(name = "harambee", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // Parsed once per process.
pub(crate) enum Command {
    /// Simulate a federation of virtual participants on this machine.
    Simulate(SimulateArgs),
    /// Run a small language-identification federation and report per-language accuracy.
    Demo(DemoArgs),
    /// Measure the performance targets against baselines measured in the same run.
    Bench(BenchArgs),
    /// Create a member's ed25519 key (PKCS#8 PEM, owner-only) and print its public key.
    Keygen(KeygenArgs),
}

/// `harambee keygen`.
#[derive(Debug, Args)]
pub(crate) struct KeygenArgs {
    /// Where to write the new private key (never overwritten).
    #[arg(long, conflicts_with = "show")]
    pub(crate) out: Option<PathBuf>,
    /// Print the public key of an existing key file instead.
    #[arg(long)]
    pub(crate) show: Option<PathBuf>,
}

/// `harambee simulate`: every flag can also come from `--config FILE` (TOML, same names with
/// underscores); flags win over the file.
#[derive(Debug, Args)]
pub(crate) struct SimulateArgs {
    /// A TOML file with the settings (see docs/simulate.md).
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// mnist, fashion-mnist or udhr.
    #[arg(long)]
    pub(crate) dataset: Option<String>,
    /// Data directory (default: data/full/NAME if fetched, else the bundled data/NAME).
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// logreg, 2nn, cnn or langid.
    #[arg(long)]
    pub(crate) model: Option<String>,
    /// Number of virtual participants (K).
    #[arg(long)]
    pub(crate) clients: Option<usize>,
    /// Fraction of participants per round (C).
    #[arg(long)]
    pub(crate) fraction: Option<f64>,
    /// Local epochs (E).
    #[arg(long)]
    pub(crate) epochs: Option<u32>,
    /// Local batch size (B); 0 for the full local set.
    #[arg(long)]
    pub(crate) batch: Option<u32>,
    /// Local learning rate.
    #[arg(long)]
    pub(crate) lr: Option<f32>,
    /// Local optimiser: sgd, sgd:MOMENTUM or adamw.
    #[arg(long)]
    pub(crate) optimizer: Option<String>,
    /// iid, shards, dirichlet:ALPHA or natural:K.
    #[arg(long)]
    pub(crate) partition: Option<String>,
    /// Maximum rounds.
    #[arg(long)]
    pub(crate) rounds: Option<u64>,
    /// fedavg, fedprox, fedavgm, fedadam, fedyogi or fedadagrad.
    #[arg(long)]
    pub(crate) strategy: Option<String>,
    /// Seed for selection, partitioning, initialisation and shuffling.
    #[arg(long)]
    pub(crate) seed: Option<u64>,
    /// Stop when test accuracy reaches this (e.g. 0.97).
    #[arg(long)]
    pub(crate) target_accuracy: Option<f64>,
    /// Evaluate every N rounds (always on the last).
    #[arg(long)]
    pub(crate) eval_every: Option<u64>,
    /// Directory for rounds.jsonl, rounds.csv, summary.json and model.safetensors.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Also train each participant alone and compare (prints a table).
    #[arg(long)]
    pub(crate) compare_local: bool,
    /// Train with burn even for the hand-written models (logreg, 2nn, cnn).
    #[arg(long)]
    pub(crate) burn_only: bool,
    /// Probability that a selected participant vanishes before reporting.
    #[arg(long)]
    pub(crate) dropout: Option<f64>,
    /// Results needed to close a round at its deadline (default 1).
    #[arg(long)]
    pub(crate) quorum: Option<usize>,
}

/// `harambee demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Keep the federation's outputs here (default: a fresh directory under runs/).
    #[arg(long)]
    pub(crate) dir: Option<PathBuf>,
    /// Participants ("language communities").
    #[arg(long, default_value_t = 8)]
    pub(crate) participants: usize,
    /// Rounds.
    #[arg(long, default_value_t = 20)]
    pub(crate) rounds: u64,
    /// Seed.
    #[arg(long, default_value_t = 7)]
    pub(crate) seed: u64,
    /// The UDHR corpus (index.tsv and declaration/); the bundled 40 languages by default.
    #[arg(long, default_value = "data/udhr")]
    pub(crate) data_dir: PathBuf,
}

/// `harambee bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// MNIST directory (default: data/full/mnist if fetched, else the bundled subset).
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// Rounds to time per workload (after one warm-up round).
    #[arg(long, default_value_t = 3)]
    pub(crate) rounds: u64,
    /// Skip the CNN round (the slow one).
    #[arg(long)]
    pub(crate) skip_cnn: bool,
    /// Also write the results as JSON here.
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
    /// Also run bench/pytorch_bench.py (needs `pip install -r bench/requirements.txt`) in this
    /// run and print plain PyTorch's numbers beside ours.
    #[arg(long)]
    pub(crate) pytorch: bool,
}
