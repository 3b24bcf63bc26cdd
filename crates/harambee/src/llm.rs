//! Pretrained language models fine-tuned with LoRA: loading one for `simulate --model
//! hf:DIR`, `init`, `join` and `export`, and the per-language bits-per-character table.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use harambee_learn::{Optimizer, Partition, Trainer};
use harambee_llm::{
    Checkpoint, LanguageBits, LanguageTexts, LoraSettings, LoraTrainer, TokenCorpus, load_base,
};
use harambee_sim::{SimConfig, Simulation, Workload};
use harambee_strategy::FitConfig;

use crate::cli::{LoraArgs, SimulateArgs};
use crate::progress::RoundProgress;

/// The folder of `hf:DIR`, or `None` for the built-in models.
pub(crate) fn model_dir(model: &str) -> Option<PathBuf> {
    model.strip_prefix("hf:").map(PathBuf::from)
}

impl LoraArgs {
    /// The LoRA settings, FFA-LoRA's shared `A` drawn from `seed`.
    pub(crate) fn settings(&self, seed: u64) -> Result<LoraSettings> {
        let Some(rank) = self.lora else {
            bail!("--model hf:DIR fine-tunes LoRA adapters: pass --lora RANK (e.g. --lora 8)");
        };
        let mut settings = LoraSettings::new(rank);
        if let Some(alpha) = self.lora_alpha {
            settings.alpha = alpha;
        }
        if let Some(targets) = &self.lora_targets {
            settings.targets = targets
                .iter()
                .map(|t| t.parse())
                .collect::<Result<_, _>>()?;
        }
        settings.variant = self.lora_variant.parse()?;
        settings.seed = seed;
        settings.validate()?;
        Ok(settings)
    }
}

/// A base model opened, loaded and wrapped in its adapters' trainer.
pub(crate) struct Loaded {
    pub(crate) checkpoint: Checkpoint,
    pub(crate) trainer: Arc<LoraTrainer>,
}

/// Opens `dir`, loads its weights onto `device` and builds the trainer.
pub(crate) fn load(
    dir: &Path,
    lora: LoraSettings,
    optimizer: Optimizer,
    context: usize,
    device: &str,
) -> Result<Loaded> {
    let checkpoint = Checkpoint::open(dir)?;
    let started = Instant::now();
    let base = load_base(&checkpoint, &harambee_llm::device(device)?)
        .with_context(|| format!("loading {}", dir.display()))?;
    let trainer = LoraTrainer::new(Arc::new(base), lora, optimizer, context)?;
    eprintln!(
        "loaded {} ({} parameters) in {:.2}s",
        dir.display(),
        checkpoint.config().num_parameters(),
        started.elapsed().as_secs_f64()
    );
    Ok(Loaded {
        checkpoint,
        trainer: Arc::new(trainer),
    })
}

/// The text to fine-tune on: `--data-dir` (a UDHR corpus or `.txt` files), by default the
/// bundled UDHR's African and Indian languages.
fn texts(data_dir: Option<&Path>, languages: &[String]) -> Result<LanguageTexts> {
    let dir = data_dir.unwrap_or(Path::new("data/udhr"));
    let default = ["africa".to_string(), "india".to_string()];
    let only: &[String] = if languages.is_empty() && data_dir.is_none() {
        &default
    } else {
        languages
    };
    let only = (!only.is_empty()).then_some(only);
    LanguageTexts::load(dir, only).with_context(|| format!("reading text from {}", dir.display()))
}

/// The simulator's settings for a language model: a few communities, each holding some of
/// the languages, AdamW, all of them every round, unless the flags say otherwise.
fn sim_defaults() -> SimConfig {
    SimConfig {
        clients: 4,
        fraction: 1.0,
        rounds: 5,
        batch: 8,
        lr: 3e-3,
        optimizer: Optimizer::AdamW { weight_decay: 0.0 },
        ..SimConfig::default()
    }
}

/// `harambee simulate --model hf:DIR --lora RANK`.
pub(crate) fn simulate(mut args: SimulateArgs, dir: PathBuf, start: Instant) -> Result<()> {
    args.model = None;
    let (lora_args, device) = (args.lora.clone(), args.device.clone());
    let (data_dir, compare_local) = (args.data_dir.take(), args.compare_local);
    let partition_given = args.partition.is_some();
    let languages = args.languages.take().unwrap_or_default();
    let mut config = crate::simulate::config_from(args, sim_defaults())?;
    let lora = lora_args.settings(config.seed)?;
    let loaded = load(&dir, lora, config.optimizer, lora_args.context, &device)?;
    let texts = texts(data_dir.as_deref(), &languages)?;
    let tokenizer = harambee_llm::TextTokenizer::load(&loaded.checkpoint.tokenizer_path())?;
    let corpus = TokenCorpus::build(&texts, &tokenizer, lora_args.context)?;
    if !partition_given {
        config.partition = Partition::Natural {
            classes_per_participant: texts.languages.len().div_ceil(config.clients),
        };
    }
    let trainer = loaded.trainer.clone();
    let init = trainer.init(config.seed);
    eprintln!(
        "fine-tuning {} ({} parameters, frozen) with LoRA rank {} ({}, {} adapter values: {:.2}% of the model travels) on {} languages ({} training / {} held-out chunks of {} tokens), {} participants, {} partition, {}",
        dir.display(),
        loaded.checkpoint.config().num_parameters(),
        trainer.lora().rank,
        trainer.lora().variant,
        init.len(),
        100.0 * init.len() as f64 / loaded.checkpoint.config().num_parameters() as f64,
        texts.languages.len(),
        corpus.split.train.len(),
        corpus.split.test.len(),
        lora_args.context,
        config.clients,
        config.partition,
        config.strategy,
    );
    let before = corpus.per_language(trainer.as_ref(), &init)?;
    let workload = Workload {
        split: corpus.split.clone(),
        languages: None,
        source: data_dir.unwrap_or_else(|| PathBuf::from("data/udhr")),
    };
    let mut sim = Simulation::with_trainer(config.clone(), workload, trainer.clone(), start)?;
    let mut progress = RoundProgress::new(config.rounds, None).with_loss();
    let summary = sim.run(&mut progress)?;
    let after = corpus.per_language(trainer.as_ref(), sim.global())?;
    let alone = if compare_local {
        Some(alone(&sim, &corpus, trainer.as_ref(), &config)?)
    } else {
        None
    };
    print_bits(&before, &after, alone.as_deref());
    if let Some(out) = &config.out {
        std::fs::create_dir_all(out)?;
        harambee_llm::peft::write_adapter(
            &out.join("adapter"),
            &trainer,
            sim.global(),
            &dir.display().to_string(),
        )?;
        println!("adapter in {} (PEFT layout)", out.join("adapter").display());
    }
    println!(
        "{} rounds; {:.1}s per round; peak memory {:.0} MiB; final adapters digest {}",
        summary.rounds,
        summary.mean_round_s,
        summary.peak_rss_bytes as f64 / (1024.0 * 1024.0),
        summary.final_digest
    );
    Ok(())
}

/// Each participant trained alone for as many epochs as the federation ran, scored on the
/// languages it holds.
fn alone(
    sim: &Simulation,
    corpus: &TokenCorpus,
    trainer: &LoraTrainer,
    config: &SimConfig,
) -> Result<Vec<LanguageBits>> {
    eprintln!(
        "training each of {} participants alone for comparison...",
        sim.participants().len()
    );
    let init = trainer.init(config.seed);
    let fit = FitConfig {
        epochs: config.epochs * config.rounds.min(u64::from(u32::MAX)) as u32,
        batch_size: config.batch,
        learning_rate: config.lr,
        proximal_mu: 0.0,
        local_steps: 0,
    };
    let train = &corpus.split.train;
    let mut out = Vec::new();
    for (p, indices) in sim.participants().iter().enumerate() {
        let seed = harambee_learn::participant_seed(config.seed, 0, p as u64);
        let trained = trainer.train(&init, train, indices, &fit, seed)?;
        let held: Vec<u32> = indices.iter().map(|&i| train.labels[i]).collect();
        for bits in corpus.per_language(trainer, &trained.params)? {
            let label = corpus.languages.iter().position(|l| l.code == bits.code);
            if label.is_some_and(|l| held.contains(&(l as u32))) {
                out.push(bits);
            }
        }
    }
    Ok(out)
}

/// The per-language table: bits per character before fine-tuning, after, and (when
/// measured) with each community's adapters trained alone.
pub(crate) fn print_bits(
    before: &[LanguageBits],
    after: &[LanguageBits],
    alone: Option<&[LanguageBits]>,
) {
    print!(
        "\n{:<34} {:>7} {:>11} {:>10} {:>10}",
        "language", "region", "chars/token", "before", "federated"
    );
    if alone.is_some() {
        print!(" {:>10}", "alone");
    }
    println!("   (held-out bits per character)");
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (mut b_all, mut a_all, mut l_all) = (Vec::new(), Vec::new(), Vec::new());
    for (b, a) in before.iter().zip(after) {
        print!(
            "{:<34} {:>7} {:>11.2} {:>10.3} {:>10.3}",
            format!("{} ({})", b.name, b.code),
            b.region,
            b.chars as f64 / b.tokens.max(1) as f64,
            b.bits_per_char,
            a.bits_per_char
        );
        b_all.push(b.bits_per_char);
        a_all.push(a.bits_per_char);
        if let Some(alone) = alone {
            match alone.iter().find(|l| l.code == b.code) {
                Some(l) => {
                    print!(" {:>10.3}", l.bits_per_char);
                    l_all.push(l.bits_per_char);
                }
                None => print!(" {:>10}", "-"),
            }
        }
        println!();
    }
    print!(
        "{:<34} {:>7} {:>11} {:>10.3} {:>10.3}",
        "mean",
        "",
        "",
        mean(&b_all),
        mean(&a_all)
    );
    if alone.is_some() {
        print!(" {:>10.3}", mean(&l_all));
    }
    println!();
}
