//! LoRA fine-tuning end to end on the tiny Llama fixture: a simulated federation lowers
//! held-out loss on the bundled UDHR text; FFA-LoRA's average is exact where standard LoRA's
//! is not; adapters round-trip through PEFT's layout (and load in PEFT where it is installed).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use harambee_learn::{Optimizer, Partition, Trainer};
use harambee_llm::{
    Checkpoint, LanguageTexts, LoraSettings, LoraTrainer, TextTokenizer, TokenCorpus, Variant,
    device, factor_name, load_base, peft,
};
use harambee_params::ParamSet;
use harambee_sim::{SimConfig, Simulation, Workload};
use harambee_strategy::FitConfig;

const CONTEXT: usize = 32;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn llama() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama")
}

fn trainer(variant: Variant) -> LoraTrainer {
    let checkpoint = Checkpoint::open(&llama()).expect("opens");
    let base = load_base(&checkpoint, &device("cpu").expect("cpu")).expect("loads");
    let mut lora = LoraSettings::new(4);
    lora.variant = variant;
    lora.seed = 5;
    let adam = Optimizer::AdamW { weight_decay: 0.0 };
    LoraTrainer::new(Arc::new(base), lora, adam, CONTEXT).expect("trainer")
}

fn corpus(languages: &[&str]) -> TokenCorpus {
    let only: Vec<String> = languages.iter().map(|s| s.to_string()).collect();
    let texts = LanguageTexts::load(&root().join("data/udhr"), Some(&only)).expect("UDHR");
    let tokenizer = TextTokenizer::load(&llama().join("tokenizer.json")).expect("tokenizer");
    TokenCorpus::build(&texts, &tokenizer, CONTEXT).expect("chunks")
}

#[test]
fn a_simulated_federation_of_four_lowers_held_out_loss() {
    let corpus = corpus(&["swh", "yor", "hin", "amh", "zul", "tam", "hau_NG", "ben"]);
    let trainer = Arc::new(trainer(Variant::Standard));
    let config = SimConfig {
        clients: 4,
        fraction: 1.0,
        rounds: 6,
        batch: 16,
        lr: 1e-2,
        optimizer: Optimizer::AdamW { weight_decay: 0.0 },
        partition: Partition::Natural {
            classes_per_participant: 2,
        },
        eval_every: 1,
        seed: 3,
        ..SimConfig::default()
    };
    let init = trainer.init(config.seed);
    let before = trainer
        .evaluate_all(&init, &corpus.split.test)
        .expect("evaluates");
    let workload = Workload {
        split: corpus.split.clone(),
        languages: None,
        source: root().join("data/udhr"),
    };
    let mut sim =
        Simulation::with_trainer(config, workload, trainer.clone(), Instant::now()).expect("sim");
    let mut losses = vec![before.loss];
    let summary = sim
        .run(&mut |r: &harambee_sim::RoundRecord| {
            losses.push(r.loss.expect("evaluated every round"))
        })
        .expect("runs");
    assert_eq!(summary.rounds, 6);
    // Lower every two rounds, and well below the base at the end.
    for pair in losses.windows(3) {
        assert!(
            pair[2] < pair[0],
            "held-out loss did not fall over two rounds: {losses:?}"
        );
    }
    let last = *losses.last().expect("rounds ran");
    assert!(
        last < before.loss - 0.2,
        "held-out loss {last} barely below the base's {}: {losses:?}",
        before.loss
    );
    // Bits per character fall for every language.
    let base_bits = corpus.per_language(trainer.as_ref(), &init).expect("bits");
    let tuned_bits = corpus
        .per_language(trainer.as_ref(), sim.global())
        .expect("bits");
    for (b, a) in base_bits.iter().zip(&tuned_bits) {
        assert!(
            a.bits_per_char < b.bits_per_char,
            "{}: {} → {}",
            b.code,
            b.bits_per_char,
            a.bits_per_char
        );
    }
}

/// `scale · B A` of every site, flattened: the change the adapters make to the weights.
fn weight_deltas(trainer: &LoraTrainer, params: &ParamSet) -> Vec<f64> {
    let full = trainer.full_adapters(params).expect("full");
    let lora = trainer.lora();
    let config = trainer.model().config();
    let mut out = Vec::new();
    for (layer, target) in lora.sites(config) {
        let (d_in, d_out) = target.dims(config);
        let a = full.tensor(&factor_name(layer, target, 'A')).expect("A");
        let b = full.tensor(&factor_name(layer, target, 'B')).expect("B");
        for o in 0..d_out {
            for i in 0..d_in {
                let v: f64 = (0..lora.rank)
                    .map(|r| f64::from(b[o * lora.rank + r]) * f64::from(a[r * d_in + i]))
                    .sum();
                out.push(v * f64::from(lora.scale()));
            }
        }
    }
    out
}

/// How far the aggregate's weight change is from the mean of the participants' changes,
/// relative to the latter's size.
fn aggregation_error(variant: Variant) -> f64 {
    let trainer = trainer(variant);
    let corpus = corpus(&["swh", "hin"]);
    let train = &corpus.split.train;
    let global = trainer.init(1);
    let fit = FitConfig {
        epochs: 1,
        batch_size: 8,
        learning_rate: 2e-2,
        proximal_mu: 0.0,
        local_steps: 6,
    };
    let halves: Vec<Vec<usize>> = (0..2)
        .map(|p| (0..train.len()).filter(|i| i % 2 == p).collect())
        .collect();
    let trained: Vec<ParamSet> = halves
        .iter()
        .enumerate()
        .map(|(p, idx)| {
            trainer
                .train(&global, train, idx, &fit, p as u64)
                .expect("trains")
                .params
        })
        .collect();
    let mean =
        harambee_params::weighted_mean(&[(&trained[0], 1.0), (&trained[1], 1.0)]).expect("mean");
    let deltas: Vec<Vec<f64>> = trained.iter().map(|t| weight_deltas(&trainer, t)).collect();
    let of_mean = weight_deltas(&trainer, &mean);
    let (mut err, mut size) = (0.0, 0.0);
    for i in 0..of_mean.len() {
        let mean_of = (deltas[0][i] + deltas[1][i]) / 2.0;
        err += (of_mean[i] - mean_of).powi(2);
        size += mean_of.powi(2);
    }
    (err / size).sqrt()
}

#[test]
fn ffa_lora_averages_exactly_and_standard_lora_does_not() {
    let ffa = aggregation_error(Variant::Ffa);
    let standard = aggregation_error(Variant::Standard);
    eprintln!(
        "relative error of the averaged adapters' weight change: FFA-LoRA {ffa:.2e}, standard LoRA {standard:.2e}"
    );
    assert!(
        ffa < 1e-5,
        "FFA-LoRA's average should be exact, off by {ffa}"
    );
    assert!(
        standard > 1e-3,
        "standard LoRA's average of factors is an approximation, yet off by only {standard}"
    );
}

#[test]
fn ffa_lora_trains_only_b() {
    let trainer = trainer(Variant::Ffa);
    assert!(
        trainer
            .layout()
            .tensors()
            .iter()
            .all(|t| t.name.contains("lora_B"))
    );
    let standard = self::trainer(Variant::Standard);
    assert!(trainer.layout().num_values() < standard.layout().num_values());
}

#[test]
fn adapters_round_trip_through_peft_layout() {
    let trainer = trainer(Variant::Ffa);
    let corpus = corpus(&["swh"]);
    let fit = FitConfig {
        epochs: 1,
        batch_size: 8,
        learning_rate: 2e-2,
        proximal_mu: 0.0,
        local_steps: 3,
    };
    let indices: Vec<usize> = (0..corpus.split.train.len()).collect();
    let tuned = trainer
        .train(&trainer.init(1), &corpus.split.train, &indices, &fit, 0)
        .expect("trains")
        .params;
    let dir = tempfile::tempdir().expect("tempdir");
    peft::write_adapter(&dir.path().join("adapter"), &trainer, &tuned, "tiny-llama")
        .expect("writes");
    let config = trainer.model().config();
    let (settings, read) = peft::read_adapter(&dir.path().join("adapter"), config).expect("reads");
    assert_eq!(settings.rank, 4);
    assert_eq!(read, trainer.full_adapters(&tuned).expect("full"));
    // The same logits from the adapter as written and as trained.
    let ids = vec![corpus.split.test.tokens(0).to_vec()];
    let ours = trainer.logits(Some(&tuned), &ids).expect("logits");
    let standard = LoraTrainer::new(
        Arc::new(
            load_base(
                &Checkpoint::open(&llama()).expect("opens"),
                &device("cpu").expect("cpu"),
            )
            .expect("loads"),
        ),
        settings,
        Optimizer::AdamW { weight_decay: 0.0 },
        CONTEXT,
    )
    .expect("trainer");
    let reread = standard.logits(Some(&read), &ids).expect("logits");
    assert_eq!(ours, reread);
    // The merged model gives the same logits with no adapter at all.
    let checkpoint = Checkpoint::open(&llama()).expect("opens");
    peft::write_merged(&dir.path().join("merged"), &checkpoint, &trainer, &tuned).expect("merges");
    let merged = Checkpoint::open(&dir.path().join("merged")).expect("opens merged");
    let plain = LoraTrainer::new(
        Arc::new(load_base(&merged, &device("cpu").expect("cpu")).expect("loads")),
        LoraSettings::new(1),
        Optimizer::AdamW { weight_decay: 0.0 },
        CONTEXT,
    )
    .expect("trainer");
    let from_merged = plain.logits(None, &ids).expect("logits");
    let d = ours[0]
        .iter()
        .zip(&from_merged[0])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(d < 1e-4, "merged weights differ from base + adapter by {d}");
    // Where PEFT is installed (CI: HARAMBEE_PEFT_TESTS=1), it loads the adapter and agrees.
    if std::env::var_os("HARAMBEE_PEFT_TESTS").is_some() {
        let expected = dir.path().join("expected.json");
        let logits: Vec<Vec<Vec<f32>>> = vec![
            ours[0]
                .chunks(config.vocab_size)
                .map(<[f32]>::to_vec)
                .collect(),
        ];
        let json = serde_json::json!({"input_ids": ids, "logits": logits});
        std::fs::write(&expected, json.to_string()).expect("writes");
        let python = std::env::var("HARAMBEE_PYTHON").unwrap_or_else(|_| "python3".into());
        let status = std::process::Command::new(python)
            .arg(root().join("scripts/check_peft_adapter.py"))
            .arg(llama())
            .arg(dir.path().join("adapter"))
            .arg("--expect-logits")
            .arg(&expected)
            .status()
            .expect("runs python");
        assert!(
            status.success(),
            "PEFT did not load our adapter with the same logits"
        );
    }
}
