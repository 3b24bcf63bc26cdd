//! `harambee demo --simulated`: the same language communities as the demo, simulated in
//! one process, with a comparison against each community training alone.

use std::fs;
use std::time::Instant;

use anyhow::{Context, Result};
use harambee_sim::{DatasetName, MetricsWriter, RoundRecord, SimConfig, Simulation, Workload};
use harambee_strategy::ParticipantId;

use crate::cli::DemoArgs;
use crate::progress::RoundProgress;

pub(crate) fn run(args: DemoArgs, process_start: Instant) -> Result<()> {
    let dir = args.dir.clone().unwrap_or_else(crate::demo::default_dir);
    // The bundled 40-language corpus: the demo's languages are chosen, not all 532.
    let probe = SimConfig {
        dataset: DatasetName::Udhr,
        data_dir: Some(args.data_dir()),
        ..SimConfig::default()
    };
    let workload = Workload::load(&probe)?;
    let languages = workload.languages.clone().unwrap_or_default();
    let config = SimConfig {
        data_dir: Some(workload.source.clone()),
        rounds: args.rounds(),
        seed: args.seed,
        out: Some(dir.clone()),
        ..SimConfig::language_communities(args.participants(), languages.len())
    };
    println!("{}", crate::demo::headline(args.participants(), &languages));
    println!(
        "Each community keeps its own texts; only model parameters travel. Output: {}\n",
        dir.display()
    );
    let mut sim = Simulation::with_start(config.clone(), workload, process_start)?;
    for (p, indices) in sim.participants().iter().enumerate() {
        let mut held: Vec<&str> = indices
            .iter()
            .map(|&i| {
                languages[sim.workload().split.train.labels[i] as usize]
                    .code
                    .as_str()
            })
            .collect();
        held.sort_unstable();
        held.dedup();
        println!("  community {p}: {}", held.join(", "));
    }
    println!();
    let mut writer = MetricsWriter::create(&dir)?;
    let mut write_error = None;
    let mut record = |r: &RoundRecord| {
        if let Err(e) = writer.record(r) {
            write_error.get_or_insert(e);
        }
    };
    let summary = sim.run(&mut RoundProgress::new(config.rounds, Some(&mut record)))?;
    if let Some(e) = write_error {
        return Err(e.into());
    }
    writer.summary(&summary)?;
    let model = dir.join("model.safetensors");
    fs::write(&model, sim.global().to_safetensors()?)
        .with_context(|| format!("writing {}", model.display()))?;

    crate::demo::print_language_table(&languages, summary.per_class.iter().map(|c| (c.1, c.2)));
    let ids: Vec<ParticipantId> = (0..args.participants() as u64).map(ParticipantId).collect();
    let local = sim.local_baselines(&ids)?;
    let best_local = local
        .iter()
        .map(|b| b.evaluation.accuracy)
        .fold(0.0, f64::max);
    println!(
        "\nOverall: federated {:.1}% vs the best community training alone {:.1}% (each alone only knows its own languages).",
        100.0 * summary.final_accuracy,
        100.0 * best_local
    );
    println!(
        "Final model: {} (safetensors, digest {})",
        model.display(),
        &summary.final_digest[..16]
    );
    println!("Round metrics: {}", dir.join("rounds.jsonl").display());
    Ok(())
}
