//! Command-line arguments.

use std::path::{Path, PathBuf};

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
    /// Run a language-identification federation on this machine: a coordinator and one
    /// process per community, over gRPC with TLS; report per-language accuracy.
    Demo(DemoArgs),
    /// Measure the performance targets against baselines measured in the same run.
    Bench(BenchArgs),
    /// Create a member's ed25519 key (PKCS#8 PEM, owner-only) and print its public key.
    Keygen(KeygenArgs),
    /// Make a federation folder: settings, coordinator key, TLS certificates, an invite.
    Init(InitArgs),
    /// Run the coordinator of a federation folder (resumes where it stopped).
    Serve(ServeArgs),
    /// As a steward, issue one member's single-use invite (recorded in the federation's
    /// state; works while the coordinator runs).
    Invite(InviteArgs),
    /// Join a federation as a participant: train on local data, send signed updates.
    Join(JoinArgs),
    /// Audit a federation's transparency ledger, offline.
    Ledger(LedgerArgs),
    /// Publish a finished federation's model: weights, model card, ledger, tree head.
    Export(ExportArgs),
    /// Change a federation's charter: stewards sign, k of n signatures apply it.
    Charter(CharterArgs),
    /// As a steward, pause or resume a running federation or remove a member, through its
    /// dashboard, with a request signed by your key.
    Admin(AdminArgs),
    /// Pretrained models: fetch one from the Hugging Face hub, or show a folder's
    /// architecture and the digest a charter pins.
    Model(ModelArgs),
}

/// `harambee model`.
#[derive(Debug, Args)]
pub(crate) struct ModelArgs {
    #[command(subcommand)]
    pub(crate) command: ModelCommand,
}

/// What to do with a pretrained model.
#[derive(Debug, Subcommand)]
pub(crate) enum ModelCommand {
    /// Download ORG/NAME's config.json, tokenizer.json and safetensors weights from the
    /// Hugging Face hub into a folder (on machines that reach huggingface.co; HF_TOKEN for
    /// gated models).
    Fetch {
        /// The model's hub id, e.g. HuggingFaceTB/SmolLM2-135M.
        id: String,
        /// The folder to write.
        #[arg(long)]
        out: PathBuf,
        /// A branch, tag or commit.
        #[arg(long, default_value = "main")]
        revision: String,
    },
    /// Show a model folder's architecture, its files and its digest.
    Inspect {
        /// The model folder.
        dir: PathBuf,
    },
}

/// `harambee admin`.
#[derive(Debug, Args)]
pub(crate) struct AdminArgs {
    #[command(subcommand)]
    pub(crate) command: AdminCommand,
    /// The dashboard's URL, as `harambee serve` printed it (http://HOST:PORT).
    #[arg(long, global = true)]
    pub(crate) url: Option<String>,
    /// The steward's key (a key the charter names as a steward).
    #[arg(long, global = true)]
    pub(crate) key: Option<PathBuf>,
    /// Why, for the record.
    #[arg(long, global = true)]
    pub(crate) reason: Option<String>,
}

/// A steward's change to a running federation.
#[derive(Debug, Subcommand)]
pub(crate) enum AdminCommand {
    /// Let the open round finish and open no other until resumed.
    Pause,
    /// Open rounds again.
    Resume,
    /// Stop selecting a participant and refuse its updates from now on.
    Remove {
        /// The participant's number (the dashboard's # column).
        participant: u64,
    },
}

/// `harambee charter`.
#[derive(Debug, Args)]
pub(crate) struct CharterArgs {
    #[command(subcommand)]
    pub(crate) command: CharterCommand,
}

/// Amending a charter.
#[derive(Debug, Subcommand)]
pub(crate) enum CharterCommand {
    /// As a steward, sign the replacement of the federation's charter by a proposed one;
    /// prints PUBLIC_KEY=SIGNATURE.
    Sign {
        /// The federation folder (for the charter in force).
        dir: PathBuf,
        /// The proposed charter.
        #[arg(long)]
        proposed: PathBuf,
        /// The steward's key.
        #[arg(long)]
        key: PathBuf,
    },
    /// Apply an amendment with the stewards' signatures (coordinator stopped): recorded in
    /// the ledger, then in force from the next start.
    Amend {
        /// The federation folder.
        dir: PathBuf,
        /// The proposed charter.
        #[arg(long)]
        proposed: PathBuf,
        /// A steward's PUBLIC_KEY=SIGNATURE line, once per steward.
        #[arg(long)]
        signature: Vec<String>,
    },
}

/// `harambee export`.
#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// The federation folder.
    pub(crate) dir: PathBuf,
    /// Where to write the release.
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// For a fine-tuned pretrained model: also write the base with the adapters merged in
    /// (merged/, a `transformers` folder), from this copy of the base (checked against the
    /// charter's digest).
    #[arg(long)]
    pub(crate) merge_with: Option<PathBuf>,
}

/// `harambee ledger`.
#[derive(Debug, Args)]
pub(crate) struct LedgerArgs {
    #[command(subcommand)]
    pub(crate) command: LedgerCommand,
}

/// What to do with a ledger.
#[derive(Debug, Subcommand)]
pub(crate) enum LedgerCommand {
    /// Check every signature, the Merkle tree, each round's rules, and recompute each round
    /// whose updates are kept; exit 1 if anything is wrong.
    Verify {
        /// The federation folder.
        dir: PathBuf,
        /// The coordinator key to trust (hex), as the federation published it; without it,
        /// the genesis entry's key is used and printed for comparison.
        #[arg(long)]
        coordinator_key: Option<String>,
        /// A witness file a participant kept (`*.witness.jsonl` beside its state): the
        /// ledger must agree with every tree head and promise in it; repeat for several.
        #[arg(long)]
        witness: Vec<PathBuf>,
        /// Verifiable training: also replay every worker's recorded update from its signed
        /// recipe on the public corpus, bit for bit, and check every fraud entry's evidence.
        #[arg(long)]
        replay_training: bool,
        /// With --replay-training: the public corpus (default: the federation's
        /// training.replay_data).
        #[arg(long, requires = "replay_training")]
        data: Option<PathBuf>,
    },
    /// The ledger's history, one line per entry.
    Show {
        /// The federation folder.
        dir: PathBuf,
    },
    /// An inclusion proof of a participant's update commitment, against the latest tree head.
    Prove {
        /// The federation folder.
        dir: PathBuf,
        /// The round.
        #[arg(long)]
        round: u64,
        /// The participant's public key (hex).
        #[arg(long)]
        participant: String,
    },
    /// In a dispute: check that a data set is the one a member committed to (the Merkle root
    /// of its examples in the ledger); exit 1 if it is not.
    CheckData {
        /// The federation folder.
        dir: PathBuf,
        /// The member's participant number.
        #[arg(long)]
        participant: u64,
        /// The data the member handed over, as it passed it to `harambee join --data`.
        #[arg(long)]
        data: PathBuf,
    },
}

/// `harambee init`.
#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// The new federation folder (must not hold a federation yet).
    pub(crate) dir: PathBuf,
    /// A human name for the federation.
    #[arg(long, default_value = "harambee federation")]
    pub(crate) name: String,
    /// Where the coordinator listens; port 0 picks a free port now.
    #[arg(long, default_value = "127.0.0.1:7443")]
    pub(crate) listen: std::net::SocketAddr,
    /// Where the dashboard, its JSON API and /metrics listen (default: loopback, the port after
    /// --listen's, or a free one when that is 0).
    #[arg(long, conflicts_with = "no_dashboard")]
    pub(crate) http: Option<std::net::SocketAddr>,
    /// No dashboard, API or /metrics.
    #[arg(long)]
    pub(crate) no_dashboard: bool,
    /// The URL participants dial (default: https:// and the listening address).
    #[arg(long)]
    pub(crate) public_url: Option<String>,
    /// Extra host names or addresses for the TLS certificate (localhost and the listening
    /// address are always included).
    #[arg(long)]
    pub(crate) server_name: Vec<String>,
    /// langid (text, UDHR-style data), logreg, 2nn, cnn (28x28 images), (community mode)
    /// char-transformer[:LAYERS:WIDTH:HEADS:CONTEXT] (plain text), or hf:DIR: a pretrained
    /// language model in the Hugging Face layout fine-tuned with LoRA (--lora RANK); the
    /// charter pins its digest. Or safetensors:FILE: any model, its tensors and initial
    /// values from the file, which members train with their own code (docs/python.md).
    #[arg(long, default_value = "langid")]
    pub(crate) model: String,
    /// With --model hf:DIR: the LoRA settings.
    #[command(flatten)]
    pub(crate) lora: LoraArgs,
    /// With --model hf:DIR: the base model's name for people and the model card (default
    /// the folder's name).
    #[arg(long)]
    pub(crate) base_name: Option<String>,
    /// With --model hf:DIR: the base model's licence, as its publisher states it (the
    /// charter records it and the released adapters' model card repeats it).
    #[arg(long, default_value = "unspecified")]
    pub(crate) base_licence: String,
    /// For langid: a UDHR corpus whose index.tsv lists the federation's languages.
    #[arg(long, default_value = "data/udhr")]
    pub(crate) classes_from: PathBuf,
    /// Rounds.
    #[arg(long, default_value_t = 20)]
    pub(crate) rounds: u64,
    /// Participants enrolled before the first round.
    #[arg(long, default_value_t = 3)]
    pub(crate) min_participants: usize,
    /// Updates needed to close a round at its deadline.
    #[arg(long, default_value_t = 2)]
    pub(crate) quorum: usize,
    /// Seconds a round stays open.
    #[arg(long, default_value_t = 120.0)]
    pub(crate) deadline_s: f64,
    /// Fraction of participants selected per round.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) fraction: f64,
    /// Local epochs.
    #[arg(long, default_value_t = 3)]
    pub(crate) epochs: u32,
    /// Local batch size.
    #[arg(long, default_value_t = 32)]
    pub(crate) batch: u32,
    /// Local learning rate (default 0.05; 3e-3 for the char-transformer's AdamW).
    #[arg(long)]
    pub(crate) lr: Option<f32>,
    /// Seed for selection, the initial model and local shuffling.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// How members' updates travel: f32 (exact), or their change from the round's base as
    /// f16, bf16, int8 (per-block scales) or topk:FRACTION, with error feedback (the charter
    /// records it; docs/async.md).
    #[arg(long, default_value = "f32")]
    pub(crate) update_encoding: String,
    /// How the global model travels to members: f32 (whole, the default), or each round's
    /// change as f16, bf16, int8 or topk:FRACTION; the published model is then the previous
    /// one plus the decoded change, so members rebuild it exactly (the charter records it).
    #[arg(long, default_value = "f32")]
    pub(crate) download_encoding: String,
    /// Buffered asynchronous aggregation (FedBuff) instead of synchronous rounds:
    /// K[:CONCURRENCY[:SERVER_LR[:MAX_STALENESS]]]. Members train whenever free; every K
    /// results, weighted by staleness, make a version; --rounds counts versions (the charter
    /// records the rule; docs/async.md).
    #[arg(long)]
    pub(crate) fedbuff: Option<String>,
    /// Verifiable training (community mode, logreg, 2nn or cnn): workers train in
    /// reproducible numerics and sign their training recipe, and the coordinator replays
    /// this fraction of each round's updates on the public corpus (--replay-data) before
    /// aggregating; an update that does not replay is refused, recorded as fraud and its
    /// sender removed (the charter records the fraction; docs/verification.md).
    #[arg(long, value_name = "FRACTION")]
    pub(crate) verify: Option<f64>,
    /// With --verify: the public corpus as the coordinator reads it, to replay updates.
    #[arg(long, value_name = "DIR", default_value = "data/mnist")]
    pub(crate) replay_data: PathBuf,
    /// The aggregation strategy (as `simulate --strategy`); the charter allows it. Default
    /// fedavg, or diloco in community mode.
    #[arg(long)]
    pub(crate) strategy: Option<String>,
    /// federated: members train on their own private data. community: workers pool compute
    /// on a shared public corpus (`--model char-transformer` on a folder of .txt files, or
    /// logreg, 2nn or cnn on MNIST-format images, which each worker holds); each round the
    /// coordinator hands every worker present a shard and takes DiLoCo's outer step, and
    /// workers may join and leave between rounds.
    #[arg(long, default_value = "federated", value_parser = ["federated", "community"])]
    pub(crate) mode: String,
    /// The charter's licence for members' contributions.
    #[arg(long, default_value = "unspecified")]
    pub(crate) data_licence: String,
    /// The charter's licence for the released model.
    #[arg(long, default_value = "unspecified")]
    pub(crate) model_licence: String,
    /// A steward's public key (hex); repeat for several. Stewards sign charter amendments.
    #[arg(long)]
    pub(crate) steward: Vec<String>,
    /// Steward signatures an amendment needs (k of n).
    #[arg(long, default_value_t = 1)]
    pub(crate) amendment_threshold: usize,
    /// Admit only the charter's named members (default: anyone with the invite).
    #[arg(long)]
    pub(crate) members_only: bool,
    /// The largest sample count one update may claim, written into the charter (so the
    /// ledger's auditors check it) and the coordinator's limits.
    #[arg(long)]
    pub(crate) max_samples: Option<u64>,
    /// Admit only members holding their own single-use invite (`harambee invite`); the
    /// shared token of invite.toml is then refused.
    #[arg(long)]
    pub(crate) per_member_invites: bool,
    /// The charter's participant-level privacy budget ε (needs a dp-fedavg strategy).
    #[arg(long, requires = "privacy_delta")]
    pub(crate) privacy_epsilon: Option<f64>,
    /// The charter's δ, with --privacy-epsilon.
    #[arg(long, requires = "privacy_epsilon")]
    pub(crate) privacy_delta: Option<f64>,
    /// Privacy, as `simulate --privacy`: secagg (secure aggregation, which the charter then
    /// requires), distributed-dp (participants add the DP noise; needs secagg and a dp
    /// strategy), central-dp.
    #[arg(long)]
    pub(crate) privacy: Option<String>,
    /// Under secagg: the fewest participants a round's sum may cover (the charter's rule;
    /// default the quorum, at least 2).
    #[arg(long)]
    pub(crate) secagg_min_survivors: Option<usize>,
    /// Under secagg without DP clipping: the largest magnitude of an update's coordinate in
    /// the fixed-point encoding (larger ones are clipped to it).
    #[arg(long, default_value_t = 1.0)]
    pub(crate) secagg_range: f32,
}

impl InitArgs {
    /// `harambee init DIR` with every other setting at its command-line default: what the
    /// demos start from, so that they follow the flags' defaults and a new flag needs no
    /// change there.
    pub(crate) fn defaults(dir: &std::path::Path) -> anyhow::Result<Self> {
        use clap::FromArgMatches;
        let command = Self::augment_args(clap::Command::new("init"));
        let matches =
            command.try_get_matches_from([std::ffi::OsStr::new("init"), dir.as_os_str()])?;
        Ok(Self::from_arg_matches(&matches)?)
    }
}

/// `harambee serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The federation folder made by `harambee init`.
    pub(crate) dir: PathBuf,
    /// Plain-text gRPC without TLS (debugging on a trusted network only).
    #[arg(long)]
    pub(crate) insecure: bool,
    /// Seconds to keep answering after the last round, so participants hear the end.
    #[arg(long, default_value_t = 3.0)]
    pub(crate) linger_s: f64,
    /// Serve the dashboard here instead of at federation.toml's `http` address.
    #[arg(long)]
    pub(crate) http: Option<std::net::SocketAddr>,
    /// Keep serving (the dashboard above all) after the federation finishes, until Ctrl-C.
    #[arg(long)]
    pub(crate) stay: bool,
}

/// `harambee join`.
#[derive(Debug, Args)]
pub(crate) struct JoinArgs {
    /// The invite file from the federation's steward.
    #[arg(long)]
    pub(crate) invite: PathBuf,
    /// The coordinator's URL (default: the invite's).
    #[arg(long)]
    pub(crate) coordinator: Option<String>,
    /// This member's key (make one with `harambee keygen --out FILE`).
    #[arg(long)]
    pub(crate) key: PathBuf,
    /// This member's data (for langid: a folder with index.tsv and declaration/*.html; for a
    /// pretrained model: a UDHR corpus or a folder of .txt files).
    #[arg(long)]
    pub(crate) data: PathBuf,
    /// For a federation fine-tuning a pretrained model: this member's copy of the base (a
    /// Hugging Face folder), checked against the digest the charter pins.
    #[arg(long)]
    pub(crate) model_dir: Option<PathBuf>,
    /// Where to train a pretrained model: cpu, or cuda[:N] in a build with `--features cuda`.
    #[arg(long, default_value = "cpu")]
    pub(crate) device: String,
    /// A display name.
    #[arg(long, default_value = "participant")]
    pub(crate) name: String,
    /// Where to remember progress (default: the key file's name + .state.json).
    #[arg(long)]
    pub(crate) state: Option<PathBuf>,
    /// Plain-text gRPC, against an --insecure coordinator.
    #[arg(long)]
    pub(crate) insecure: bool,
    /// Give up on a call after this many seconds of failed retries.
    #[arg(long, default_value_t = 600.0)]
    pub(crate) give_up_after_s: f64,
}

/// `harambee keygen`.
#[derive(Debug, Args)]
pub(crate) struct InviteArgs {
    /// The federation folder.
    pub(crate) dir: PathBuf,
    /// Who the invite is for (recorded with it).
    #[arg(long)]
    pub(crate) name: String,
    /// Where to write the invite (never overwritten; readable by its owner only).
    #[arg(long)]
    pub(crate) out: PathBuf,
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
    /// mnist, fashion-mnist, udhr, shakespeare, or udhr-text (the UDHR languages as byte-level
    /// text for the char-transformer).
    #[arg(long)]
    pub(crate) dataset: Option<String>,
    /// Data directory (default: data/full/NAME if fetched, else the bundled data/NAME).
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// logreg, 2nn, cnn, langid, or char-transformer[:LAYERS:WIDTH:HEADS:CONTEXT] (with
    /// --dataset shakespeare or udhr-text), or hf:DIR: a pretrained language model in the
    /// Hugging Face layout, fine-tuned with LoRA (--lora RANK) on text by language
    /// (--data-dir: a UDHR corpus or a folder of .txt files; default the bundled UDHR's
    /// African and Indian languages).
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
    /// UDHR languages to keep (udhr, udhr-text): comma-separated codes, or regions (africa,
    /// india, world) standing for all of theirs. All by default.
    #[arg(long, value_delimiter = ',')]
    pub(crate) languages: Option<Vec<String>>,
    /// Local optimiser steps per round instead of epochs (DiLoCo's H comes with
    /// --strategy diloco:H).
    #[arg(long)]
    pub(crate) local_steps: Option<u32>,
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
    /// fedavg, fedprox, fedavgm, fedadam, fedyogi, fedadagrad, a robust rule: median,
    /// trimmed-mean[:BETA], krum[:F], multi-krum[:F], bulyan[:F], norm-bound[:B], centered-clip[:TAU],
    /// differential privacy: dp-fedavg:CLIP:Z, dp-adaptive:INITIAL_CLIP:Z, or community
    /// compute: diloco[:H[:OUTER_LR[:MOMENTUM]]] (H = 50, 0.7, 0.9).
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
    /// With --model hf:DIR: the LoRA fine-tuning settings.
    #[command(flatten)]
    pub(crate) lora: LoraArgs,
    /// With --model hf:DIR: where to train: cpu, or cuda[:N] in a build with
    /// `--features cuda`.
    #[arg(long, default_value = "cpu")]
    pub(crate) device: String,
    /// Train with burn even for the hand-written models (logreg, 2nn, cnn).
    #[arg(long)]
    pub(crate) burn_only: bool,
    /// Probability that a selected participant vanishes before reporting.
    #[arg(long)]
    pub(crate) dropout: Option<f64>,
    /// Results needed to close a round at its deadline (default 1).
    #[arg(long)]
    pub(crate) quorum: Option<usize>,
    /// What malicious participants do: sign-flip[:S], scaling[:F], noise[:SIGMA],
    /// label-flip, alie, ipm[:EPS].
    #[arg(long)]
    pub(crate) attack: Option<String>,
    /// Fraction of participants that are malicious (with --attack).
    #[arg(long)]
    pub(crate) attackers: Option<f64>,
    /// Privacy: a comma-separated list of secagg (secure aggregation: the coordinator sees
    /// only the sum), distributed-dp (participants add the DP noise; needs secagg and a dp
    /// strategy), central-dp.
    #[arg(long)]
    pub(crate) privacy: Option<String>,
    /// Under secagg without DP: the largest magnitude of an update's coordinate (larger ones
    /// are clipped to it in the fixed-point encoding). Default 1.
    #[arg(long)]
    pub(crate) secagg_range: Option<f32>,
    /// How updates travel: f32 (exact, the default), or their change as f16, bf16, int8
    /// (per-block scales) or topk:FRACTION, each with error feedback; bytes_up counts it.
    #[arg(long)]
    pub(crate) update_encoding: Option<String>,
    /// How the global model travels: f32 (whole, the default), or each round's change as
    /// f16, bf16, int8 or topk:FRACTION; the published model is the previous one plus the
    /// decoded change (docs/async.md); bytes_down counts it.
    #[arg(long)]
    pub(crate) download_encoding: Option<String>,
    /// Buffered asynchronous aggregation (FedBuff) instead of rounds: K[:CONCURRENCY[:SERVER_LR]]
    /// (each version applies K results, weighted by staleness; --rounds counts versions;
    /// needs simulated time).
    #[arg(long)]
    pub(crate) fedbuff: Option<String>,
    /// Simulated time (docs/async.md).
    #[command(flatten)]
    pub(crate) time: TimeArgs,
}

/// Simulated time: each participant gets a compute speed and links from the seed, and each
/// round the time it would take; any of these flags turns the clock on.
#[derive(Debug, Args)]
pub(crate) struct TimeArgs {
    /// Turn the simulated clock on with its defaults (σ 0.5, a slow tail of 10% ten times
    /// slower, 5 Mbit/s up and 20 down, 2 ms per example).
    #[arg(long)]
    pub(crate) simulated_time: bool,
    /// The spread (σ of the logarithm) of speeds and link rates around their medians.
    #[arg(long)]
    pub(crate) speed_sigma: Option<f64>,
    /// FRACTION:FACTOR: that fraction of participants is FACTOR times slower.
    #[arg(long)]
    pub(crate) slow_tail: Option<String>,
    /// The median uplink in Mbit/s.
    #[arg(long)]
    pub(crate) uplink_mbps: Option<f64>,
    /// The median downlink in Mbit/s.
    #[arg(long)]
    pub(crate) downlink_mbps: Option<f64>,
    /// Select this many times the participants a round needs and close it on the first to
    /// arrive.
    #[arg(long)]
    pub(crate) over_select: Option<f64>,
    /// Close each round after this many simulated seconds with what has arrived.
    #[arg(long)]
    pub(crate) virtual_deadline_s: Option<f64>,
    /// Simulated seconds one example takes for one epoch at the median speed.
    #[arg(long)]
    pub(crate) seconds_per_example: Option<f64>,
}

/// `harambee demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Keep the federation's outputs here (default: a fresh directory under runs/).
    #[arg(long)]
    pub(crate) dir: Option<PathBuf>,
    /// Participants: language communities (default 8), or with --community the workers
    /// present at the start (default 3).
    #[arg(long)]
    pub(crate) participants: Option<usize>,
    /// Rounds (default 10; 20 with --community).
    #[arg(long)]
    pub(crate) rounds: Option<u64>,
    /// Seed.
    #[arg(long, default_value_t = 7)]
    pub(crate) seed: u64,
    /// The UDHR corpus (index.tsv and declaration/; default the bundled 40 languages), or
    /// with --community a folder of .txt files (default the plays, data/full/shakespeare if
    /// fetched, else the bundled four).
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// Community compute instead: volunteers pool their machines to train a character-level
    /// language model on Shakespeare with DiLoCo; one worker leaves and a new one joins
    /// while it trains.
    #[arg(long, conflicts_with_all = ["simulated", "private"])]
    pub(crate) community: bool,
    /// Simulate the communities in this process instead of running a coordinator and
    /// participant processes over gRPC (and compare with each community training alone).
    #[arg(long)]
    pub(crate) simulated: bool,
    /// Privacy on: secure aggregation (the coordinator sees only each round's sum) and
    /// distributed differential privacy (each community adds its share of the noise).
    #[arg(long)]
    pub(crate) private: bool,
    /// Keep the coordinator and its dashboard up after training, until Ctrl-C.
    #[arg(long, conflicts_with = "simulated")]
    pub(crate) stay: bool,
    /// Fine-tune a pretrained language model instead (a Hugging Face folder: config.json,
    /// model.safetensors, tokenizer.json): communities each holding some African and Indian
    /// languages train LoRA adapters together, then compare bits per character with each
    /// community alone. Without DIR, says how to get a model.
    #[arg(long, num_args = 0..=1, value_name = "DIR", conflicts_with_all = ["simulated", "private", "community"])]
    pub(crate) llm: Option<Option<PathBuf>>,
    /// With --llm: the adapters' rank.
    #[arg(long, default_value_t = 8)]
    pub(crate) lora: usize,
}

impl DemoArgs {
    /// Participants, or the mode's default.
    pub(crate) fn participants(&self) -> usize {
        self.participants
            .unwrap_or(if self.community { 3 } else { 8 })
    }

    /// Rounds, or the mode's default.
    pub(crate) fn rounds(&self) -> u64 {
        self.rounds.unwrap_or(if self.community { 20 } else { 10 })
    }

    /// The data, or the mode's bundled default.
    pub(crate) fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| {
            if !self.community {
                PathBuf::from("data/udhr")
            } else if Path::new("data/full/shakespeare").is_dir() {
                PathBuf::from("data/full/shakespeare")
            } else {
                PathBuf::from("data/shakespeare")
            }
        })
    }
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
    /// run and print plain PyTorch's numbers beside ours (with --llm: PyTorch + PEFT's LoRA
    /// fine-tuning, bench/pytorch_lora_bench.py).
    #[arg(long)]
    pub(crate) pytorch: bool,
    /// Instead: LoRA fine-tuning of a SmolLM2-135M-shaped model (random weights), tokens per
    /// second and peak memory, and bytes on the wire per round.
    #[arg(long)]
    pub(crate) llm: bool,
    /// Instead: what verifiable training costs: a worker's round in reproducible numerics on
    /// each kernel against the fast kernels, and the coordinator's spot checks per round.
    #[arg(long)]
    pub(crate) verification: bool,
    /// With --llm: transformer blocks (30 is SmolLM2-135M; fewer for a quick look).
    #[arg(long, default_value_t = 30)]
    pub(crate) llm_layers: usize,
    /// With --llm: timed optimiser steps (after two untimed ones).
    #[arg(long, default_value_t = 5)]
    pub(crate) llm_steps: u32,
    /// With --llm: tokens per sequence.
    #[arg(long, default_value_t = 256)]
    pub(crate) llm_seq: usize,
    /// With --llm: where to train (cpu, or cuda[:N] in a CUDA build).
    #[arg(long, default_value = "cpu")]
    pub(crate) llm_device: String,
    /// The Python that runs the PyTorch baselines.
    #[arg(long, default_value = "python3")]
    pub(crate) python: String,
}

/// LoRA fine-tuning of a pretrained language model (`--model hf:DIR`).
#[derive(Debug, Clone, Args)]
pub(crate) struct LoraArgs {
    /// The adapters' rank (needed with --model hf:DIR).
    #[arg(long)]
    pub(crate) lora: Option<usize>,
    /// LoRA's alpha: the update is alpha/rank · B A (default twice the rank).
    #[arg(long)]
    pub(crate) lora_alpha: Option<f32>,
    /// The projections adapted in every block: q, k, v, o, gate, up, down (default all).
    #[arg(long, value_delimiter = ',')]
    pub(crate) lora_targets: Option<Vec<String>>,
    /// standard (A and B train; FedAvg averages each factor) or ffa (FFA-LoRA: A frozen at a
    /// shared random value, only B trains and travels; averages are exact).
    #[arg(long, default_value = "standard")]
    pub(crate) lora_variant: String,
    /// Tokens the model reads per training chunk.
    #[arg(long, default_value_t = 128)]
    pub(crate) context: usize,
}
