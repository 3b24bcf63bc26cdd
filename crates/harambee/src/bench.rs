//! `harambee bench`: the performance targets, each beside a baseline measured in the same run.

use std::time::Instant;

use anyhow::{Context, Result};
use harambee_learn::{ModelKind, Partition};
use harambee_params::weighted_sum_into;
use harambee_sim::{DatasetName, RoundRecord, SimConfig, Simulation, Workload, peak_rss_bytes};
use serde_json::json;

use crate::cli::BenchArgs;

/// Flower 1.42 with PyTorch on this 2-core machine, from DEVELOPERS.md: the numbers to beat.
const FLOWER_2NN_ROUND_S: f64 = 1.10;
const FLOWER_CNN_ROUND_S: f64 = 24.0;
const FLOWER_STARTUP_S: f64 = 6.0;
const FLOWER_PEAK_GB: f64 = 2.2;

struct Timed {
    per_round_s: f64,
    train_s: f64,
    eval_s: f64,
    samples_per_round: f64,
    startup_s: f64,
    accuracy: f64,
}

pub(crate) fn run(args: BenchArgs) -> Result<()> {
    if args.llm {
        return crate::bench_llm::run(&args);
    }
    if args.verification {
        let report = crate::bench_verify::run(&args)?;
        if let Some(path) = &args.json {
            std::fs::write(
                path,
                serde_json::to_string_pretty(&json!({"results": report}))?,
            )?;
        }
        return Ok(());
    }
    let mut report = Vec::new();
    // PyTorch first, so its process does not share the cores with ours.
    let pytorch = if args.pytorch {
        Some(run_pytorch(&args)?)
    } else {
        None
    };
    println!(
        "harambee bench: {} cores; each line shows ours, its baseline and the ratio.\n",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let (agg_gbs, copy_gbs) = aggregation_bandwidth();
    line(
        "aggregation, 50 × 2NN updates (GB/s)",
        agg_gbs,
        copy_gbs,
        "memcpy of the same bytes",
        agg_gbs / copy_gbs,
    );
    report.push(json!({"name": "aggregation_gbs", "ours": agg_gbs, "baseline": copy_gbs, "baseline_name": "memcpy"}));

    let start = Instant::now();
    let mlp = time_rounds(&args, ModelKind::Mlp2nn, 1000, 0.05, 1, 0.1, start)?;
    let mlp_peak = peak_rss_bytes() as f64 / 1e9;
    line(
        "2NN round: 1000 clients, 50/round, E=1, B=10, with test eval (s)",
        mlp.per_round_s,
        FLOWER_2NN_ROUND_S,
        "Flower+PyTorch",
        FLOWER_2NN_ROUND_S / mlp.per_round_s,
    );
    println!(
        "    target <= 0.08 s; train {:.3}s, eval {:.3}s per round; test accuracy {:.4}",
        mlp.train_s, mlp.eval_s, mlp.accuracy
    );
    line(
        "start-up to first round (s)",
        mlp.startup_s,
        FLOWER_STARTUP_S,
        "Flower+PyTorch",
        FLOWER_STARTUP_S / mlp.startup_s.max(1e-9),
    );
    println!("    target <= 0.3 s");
    line(
        "peak memory after the 2NN runs (GB)",
        mlp_peak,
        FLOWER_PEAK_GB,
        "Flower+PyTorch",
        FLOWER_PEAK_GB / mlp_peak.max(1e-9),
    );
    println!("    target <= 0.3 GB");
    let mlp_tput = mlp.samples_per_round / mlp.train_s;
    println!(
        "  2NN local training throughput: {:.0} samples/s (both cores, 50 participants in parallel)",
        mlp_tput
    );
    report.push(json!({"name": "2nn_round_s", "ours": mlp.per_round_s, "baseline": FLOWER_2NN_ROUND_S, "train_s": mlp.train_s, "eval_s": mlp.eval_s, "samples_per_s": mlp_tput, "startup_s": mlp.startup_s, "peak_gb": mlp_peak}));

    if !args.skip_cnn {
        let cnn = time_rounds(&args, ModelKind::Cnn, 100, 0.1, 5, 0.05, Instant::now())?;
        line(
            "CNN round: 10 clients × 600 examples, E=5, B=10, with test eval (s)",
            cnn.per_round_s,
            FLOWER_CNN_ROUND_S,
            "Flower+PyTorch",
            FLOWER_CNN_ROUND_S / cnn.per_round_s,
        );
        let tput = cnn.samples_per_round / cnn.train_s;
        println!(
            "    target <= 16 s; train {:.2}s, eval {:.2}s per round; {:.0} samples/s; test accuracy {:.4}",
            cnn.train_s, cnn.eval_s, tput, cnn.accuracy
        );
        report.push(json!({"name": "cnn_round_s", "ours": cnn.per_round_s, "baseline": FLOWER_CNN_ROUND_S, "train_s": cnn.train_s, "eval_s": cnn.eval_s, "samples_per_s": tput}));
    }
    let peak = peak_rss_bytes() as f64 / 1e9;
    println!("\npeak memory of this whole bench: {:.3} GB", peak);
    if let Some(torch) = &pytorch {
        print_pytorch(torch, &report);
        report.push(json!({"name": "pytorch", "results": torch}));
    }
    if let Some(path) = &args.json {
        std::fs::write(
            path,
            serde_json::to_string_pretty(&json!({"results": report, "peak_gb": peak}))?,
        )?;
    }
    Ok(())
}

/// Runs the plain-PyTorch script on the same workloads and returns its JSON.
fn run_pytorch(args: &BenchArgs) -> Result<serde_json::Value> {
    let out = std::env::temp_dir().join(format!("harambee-pytorch-{}.json", std::process::id()));
    eprintln!("running bench/pytorch_bench.py (plain PyTorch, same workloads)...");
    let mut cmd = std::process::Command::new(&args.python);
    cmd.args(["bench/pytorch_bench.py", "--json"]).arg(&out);
    cmd.args([
        "--nn-rounds",
        &args.rounds.to_string(),
        "--cnn-rounds",
        &args.rounds.min(2).to_string(),
    ]);
    if args.skip_cnn {
        cmd.arg("--skip-cnn");
    }
    let status = cmd
        .status()
        .context("starting python3 bench/pytorch_bench.py")?;
    anyhow::ensure!(
        status.success(),
        "bench/pytorch_bench.py failed (is torch installed? pip install -r bench/requirements.txt)"
    );
    let text =
        std::fs::read_to_string(&out).with_context(|| format!("reading {}", out.display()))?;
    let _ = std::fs::remove_file(&out);
    Ok(serde_json::from_str(&text)?)
}

fn print_pytorch(torch: &serde_json::Value, ours: &[serde_json::Value]) {
    println!(
        "\nplain PyTorch {} on the same workloads, measured in this run:",
        torch["torch"].as_str().unwrap_or("?")
    );
    let find = |name: &str| {
        ours.iter()
            .find(|r| r["name"] == name)
            .and_then(|r| r["ours"].as_f64())
    };
    for r in torch["results"].as_array().into_iter().flatten() {
        let model = r["model"].as_str().unwrap_or("?");
        let theirs = r["round_s_median"].as_f64().unwrap_or(f64::NAN);
        let key = if model == "2NN" {
            "2nn_round_s"
        } else {
            "cnn_round_s"
        };
        if let Some(ours) = find(key) {
            line(
                &format!("{model} round, PyTorch (s)"),
                ours,
                theirs,
                "PyTorch",
                theirs / ours,
            );
        }
    }
    let startup = torch["startup_s"].as_f64().unwrap_or(f64::NAN);
    let peak = torch["peak_rss_mib"].as_f64().unwrap_or(f64::NAN) * 1024.0 * 1024.0 / 1e9;
    println!("  PyTorch start-up {startup:.2} s, peak memory {peak:.2} GB");
}

pub(crate) fn line(what: &str, ours: f64, baseline: f64, baseline_name: &str, ratio: f64) {
    println!("{what:<70} {ours:>10.4}   {baseline_name}: {baseline:>8.4}   ratio {ratio:>6.2}x");
}

/// Median seconds per round over `args.rounds` rounds after one warm-up round.
fn time_rounds(
    args: &BenchArgs,
    model: ModelKind,
    clients: usize,
    fraction: f64,
    epochs: u32,
    lr: f32,
    start: Instant,
) -> Result<Timed> {
    let config = SimConfig {
        dataset: DatasetName::Mnist,
        data_dir: args.data_dir.clone(),
        model,
        clients,
        fraction,
        epochs,
        batch: 10,
        lr,
        partition: Partition::Iid,
        rounds: args.rounds + 1,
        seed: 1,
        ..SimConfig::default()
    };
    let workload = Workload::load(&config)?;
    if workload.split.train.len() < 60_000 {
        eprintln!(
            "note: using the bundled subset ({} examples) from {}; fetch the full set with scripts/fetch-data.sh for the reference workload",
            workload.split.train.len(),
            workload.source.display()
        );
    }
    let mut sim = Simulation::with_start(config, workload, start)?;
    let mut records: Vec<RoundRecord> = Vec::new();
    let summary = sim.run(&mut |r: &RoundRecord| records.push(r.clone()))?;
    let timed: Vec<&RoundRecord> = records.iter().skip(1).collect();
    let median = |f: &dyn Fn(&RoundRecord) -> f64| {
        let mut v: Vec<f64> = timed.iter().map(|r| f(r)).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let samples: f64 = sim.participants().iter().map(Vec::len).sum::<usize>() as f64
        * fraction
        * f64::from(epochs);
    Ok(Timed {
        per_round_s: median(&|r| r.wall_s),
        train_s: median(&|r| r.train_s),
        eval_s: median(&|r| r.eval_s),
        samples_per_round: samples,
        startup_s: summary.startup_s,
        accuracy: summary.final_accuracy,
    })
}

/// FedAvg's inner loop on 50 updates of the 2NN's size, against copying the same bytes.
fn aggregation_bandwidth() -> (f64, f64) {
    let n = 199_210;
    let inputs: Vec<Vec<f32>> = (0..50).map(|i| vec![i as f32; n]).collect();
    let refs: Vec<(&[f32], f32)> = inputs.iter().map(|v| (v.as_slice(), 0.02)).collect();
    let mut out = vec![0.0f32; n];
    let bytes = ((inputs.len() + 1) * n * 4) as f64;
    let reps = 40;
    let t = Instant::now();
    for _ in 0..reps {
        weighted_sum_into(&mut out, &refs);
        std::hint::black_box(&out);
    }
    let agg = bytes * reps as f64 / t.elapsed().as_secs_f64() / 1e9;
    let t = Instant::now();
    for _ in 0..reps {
        for x in &inputs {
            out.copy_from_slice(x);
        }
        std::hint::black_box(&out);
    }
    let copy = bytes * reps as f64 / t.elapsed().as_secs_f64() / 1e9;
    (agg, copy)
}
