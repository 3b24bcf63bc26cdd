//! `harambee bench --verification`: what verifiable training costs on this machine, in this
//! run. A DiLoCo worker's round in reproducible numerics on each kernel against the same
//! round on the fast `gemm` kernels, and what the coordinator's spot checks add to a round at
//! a few replay fractions (docs/verification.md).

use std::time::Instant;

use anyhow::Result;
use harambee_learn::{Kernel, ModelKind, NativeTrainer, Optimizer, Trainer, shard};
use harambee_sim::{DatasetName, SimConfig, Workload};
use harambee_strategy::FitConfig;
use serde_json::{Value, json};

use crate::bench::line;
use crate::cli::BenchArgs;

/// Workers in the round the spot checks are costed for.
const WORKERS: u32 = 8;

pub(crate) fn run(args: &BenchArgs) -> Result<Vec<Value>> {
    let config = SimConfig {
        dataset: DatasetName::Mnist,
        data_dir: args.data_dir.clone(),
        ..SimConfig::default()
    };
    let data = Workload::load(&config)?.split.train;
    println!(
        "verifiable training: one DiLoCo worker's round (shard 1 of {WORKERS}, AdamW, B=10), median of {} after a warm-up\n",
        args.rounds
    );
    let mut report = Vec::new();
    for (kind, steps) in [(ModelKind::Mlp2nn, 100), (ModelKind::Cnn, 10)] {
        let optimizer = Optimizer::AdamW { weight_decay: 0.0 };
        let trainer = NativeTrainer::new(kind, &data, optimizer)?;
        let global = trainer.init(1);
        let indices = shard(data.len(), Some((1, WORKERS)))?;
        let fit = FitConfig {
            epochs: 1,
            batch_size: 10,
            learning_rate: 1e-3,
            proximal_mu: 0.0,
            local_steps: steps,
        };
        let time = |t: &NativeTrainer| -> Result<f64> {
            let mut runs = Vec::new();
            for _ in 0..=args.rounds {
                let started = Instant::now();
                t.train(&global, &data, &indices, &fit, 7)?;
                runs.push(started.elapsed().as_secs_f64());
            }
            runs.remove(0);
            runs.sort_by(f64::total_cmp);
            Ok(runs[runs.len() / 2])
        };
        let fast = time(&trainer)?;
        let (mut trainer, mut replay) = (trainer, fast);
        for kernel in Kernel::available() {
            trainer = trainer.reproducible(Some(kernel));
            let slow = time(&trainer)?;
            line(
                &format!(
                    "{kind} worker round, {steps} steps, reproducible on {} (ms)",
                    kernel.name()
                ),
                slow * 1e3,
                fast * 1e3,
                "fast (gemm)",
                fast / slow,
            );
            report.push(json!({"name": format!("reproducible_{kind}_{}", kernel.name()), "ours_s": slow, "fast_s": fast}));
            replay = slow;
        }
        // A verified round: every worker trains reproducibly (on the widest kernel), and the
        // coordinator replays each update with the charter's probability. Its expected
        // compute, from the widest kernel's time above, against the same round unverified.
        let workers = f64::from(WORKERS);
        for fraction in [0.1, 0.25, 0.5, 1.0] {
            let checks = fraction * workers * replay;
            let verified = workers * replay + checks;
            let unverified = workers * fast;
            line(
                &format!("  verified round of {WORKERS}, replaying {fraction} (ms of compute)"),
                verified * 1e3,
                unverified * 1e3,
                "unverified",
                unverified / verified,
            );
            println!(
                "    of which the coordinator's spot checks {:.1} ms ({:.0}% of the workers' own)",
                checks * 1e3,
                fraction * 100.0
            );
            report.push(json!({"name": format!("verified_round_{kind}_{fraction}"), "verified_s": verified, "unverified_s": unverified, "coordinator_s": checks}));
        }
    }
    Ok(report)
}
