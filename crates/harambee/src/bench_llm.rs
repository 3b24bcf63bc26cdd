//! `harambee bench --llm`: LoRA fine-tuning of a SmolLM2-135M-shaped model (random
//! weights: speed does not depend on their values), in tokens per second and peak memory,
//! beside PyTorch + PEFT on the same shapes measured in the same run.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use harambee_learn::{Dataset, Features, Optimizer, Trainer};
use harambee_llm::{BaseModel, HfConfig, LoraSettings, LoraTrainer};
use harambee_sim::peak_rss_bytes;
use harambee_strategy::FitConfig;
use serde_json::json;

use crate::bench::line;
use crate::cli::BenchArgs;

/// SmolLM2-135M's architecture, with `layers` blocks.
fn smollm2_135m(layers: usize) -> Result<HfConfig> {
    Ok(serde_json::from_value(json!({
        "model_type": "llama",
        "hidden_size": 576,
        "intermediate_size": 1536,
        "num_hidden_layers": layers,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "vocab_size": 49152,
        "rms_norm_eps": 1e-5,
        "rope_theta": 100000.0,
        "tie_word_embeddings": true,
        "max_position_embeddings": 2048
    }))?)
}

/// `n` random chunks of `seq + 1` tokens.
fn random_chunks(n: usize, seq: usize, vocab: usize) -> Dataset {
    // Any well-mixed sequence will do: the values do not change the work.
    let ids: Vec<u32> = (0..n * (seq + 1))
        .map(|i| (harambee_learn::participant_seed(1, i as u64, 0) % vocab as u64) as u32)
        .collect();
    Dataset {
        features: Features::Tokens {
            vocab,
            offsets: (0..=n).map(|i| i * (seq + 1)).collect(),
            ids,
        },
        labels: vec![0; n],
        class_names: vec!["text".into()],
    }
}

pub(crate) fn run(args: &BenchArgs) -> Result<()> {
    // PyTorch first, in its own process, so the two never share the cores.
    let torch = if args.pytorch {
        Some(run_pytorch(args)?)
    } else {
        None
    };
    let config = smollm2_135m(args.llm_layers)?;
    let started = Instant::now();
    let device = harambee_llm::device(&args.llm_device)?;
    let base = BaseModel::random(&config, 0, &device)?;
    let mut lora = LoraSettings::new(16);
    lora.alpha = 32.0;
    let optimizer = Optimizer::AdamW { weight_decay: 0.0 };
    let trainer = LoraTrainer::new(Arc::new(base), lora, optimizer, args.llm_seq)?;
    let build_s = started.elapsed().as_secs_f64();
    let data = random_chunks(args.llm_steps as usize + 2, args.llm_seq, config.vocab_size);
    let fit = |steps: u32| FitConfig {
        epochs: 1,
        batch_size: 1,
        learning_rate: 1e-4,
        proximal_mu: 0.0,
        local_steps: steps,
    };
    let adapters = trainer.init(0);
    let warm = trainer.train(&adapters, &data, &[0, 1], &fit(2), 0)?;
    let timed: Vec<usize> = (2..data.len()).collect();
    let t = Instant::now();
    let out = trainer.train(&warm.params, &data, &timed, &fit(args.llm_steps), 0)?;
    let step_s = t.elapsed().as_secs_f64() / out.steps.max(1) as f64;
    let tokens_per_s = args.llm_seq as f64 / step_s;
    let peak = peak_rss_bytes() as f64;
    let (total, trained) = (config.num_parameters(), adapters.len());
    println!(
        "harambee bench --llm: LoRA rank 16 (alpha 32, q/k/v/o/gate/up/down) on a SmolLM2-135M-shaped model, {} blocks, {} parameters; sequence {}, batch 1, AdamW; {} cores, device {}\n",
        args.llm_layers,
        total,
        args.llm_seq,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        args.llm_device,
    );
    println!(
        "ours: {tokens_per_s:.1} tokens/s ({step_s:.3} s per step), peak memory {:.3} GB, model built in {build_s:.1} s, loss {:.3}",
        peak / 1e9,
        out.mean_loss
    );
    println!(
        "bytes on the wire per update: {} of adapters against {} for the whole model (1/{:.0})",
        human(4 * trained),
        human(4 * total),
        total as f64 / trained as f64
    );
    let mut report = json!({
        "tokens_per_s": tokens_per_s, "step_s": step_s, "peak_rss_bytes": peak,
        "adapter_values": trained, "model_parameters": total, "layers": args.llm_layers,
        "seq": args.llm_seq, "device": args.llm_device,
    });
    if let Some(torch) = torch {
        let theirs = torch["tokens_per_s"].as_f64().unwrap_or(f64::NAN);
        let their_peak = torch["peak_rss_bytes"].as_f64().unwrap_or(f64::NAN);
        println!();
        line(
            "LoRA fine-tuning (tokens/s)",
            tokens_per_s,
            theirs,
            "PyTorch+PEFT",
            tokens_per_s / theirs,
        );
        line(
            "peak memory (GB)",
            peak / 1e9,
            their_peak / 1e9,
            "PyTorch+PEFT",
            their_peak / peak,
        );
        println!(
            "  (PyTorch {} with PEFT {}, transformers {}, attention {}, {} threads)",
            torch["torch"].as_str().unwrap_or("?"),
            torch["peft"].as_str().unwrap_or("?"),
            torch["transformers"].as_str().unwrap_or("?"),
            torch["attn_implementation"].as_str().unwrap_or("?"),
            torch["threads"]
        );
        report["pytorch"] = torch;
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}

fn human(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

/// Runs bench/pytorch_lora_bench.py on the same shapes and returns its JSON line.
fn run_pytorch(args: &BenchArgs) -> Result<serde_json::Value> {
    eprintln!("running bench/pytorch_lora_bench.py (PyTorch + PEFT, same shapes)...");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let out = std::process::Command::new(&args.python)
        .arg("bench/pytorch_lora_bench.py")
        .args(["--layers", &args.llm_layers.to_string()])
        .args(["--steps", &args.llm_steps.to_string()])
        .args(["--seq", &args.llm_seq.to_string()])
        .args(["--threads", &threads.to_string()])
        .output()
        .with_context(|| format!("starting {} bench/pytorch_lora_bench.py", args.python))?;
    anyhow::ensure!(
        out.status.success(),
        "bench/pytorch_lora_bench.py failed (pip install torch transformers peft): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .context("no JSON line from the PyTorch bench")?;
    Ok(serde_json::from_str(last)?)
}
