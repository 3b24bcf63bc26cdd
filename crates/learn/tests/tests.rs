//! Learn crate tests: models train on the bundled data, parameters cross the burn boundary
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.
//! unchanged, loaders refuse bad files, partitioners keep their invariants.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use harambee_learn::udhr::{TextFeatures, extract_sentences, load_corpus};
use harambee_learn::{
    BurnTrainer, Dataset, ModelKind, Optimizer, Partition, Split, Trainer, digit_names,
    load_idx_dir, parse_images, parse_labels,
};
use harambee_strategy::FitConfig;
use proptest::prelude::*;

fn repo_data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data")
        .join(rel)
}

/// The bundled MNIST subset (6,000 training and 1,000 test images), loaded once.
fn mnist() -> &'static Split {
    static SPLIT: OnceLock<Split> = OnceLock::new();
    SPLIT.get_or_init(|| {
        load_idx_dir(&repo_data("mnist"), digit_names()).expect("bundled MNIST subset")
    })
}

mod models {
    use super::*;

    #[test]
    fn layouts_follow_pytorch_conventions() {
        let t =
            BurnTrainer::new(ModelKind::Mlp2nn, &mnist().train, Optimizer::default(), 0).unwrap();
        let shapes: Vec<(String, Vec<usize>)> = t
            .layout()
            .tensors()
            .iter()
            .map(|s| (s.name.clone(), s.shape.clone()))
            .collect();
        assert_eq!(shapes[0], ("layers.0.weight".to_string(), vec![200, 784]));
        assert_eq!(shapes[1], ("layers.0.bias".to_string(), vec![200]));
        assert_eq!(t.layout().num_values(), 199_210);
        let cnn =
            BurnTrainer::new(ModelKind::Cnn, &mnist().train, Optimizer::default(), 0).unwrap();
        assert_eq!(cnn.layout().num_values(), 1_663_370);
        assert_eq!(
            cnn.layout().get("conv1.weight").unwrap().shape,
            vec![32, 1, 5, 5]
        );
        assert_eq!(
            cnn.layout().get("fc1.weight").unwrap().shape,
            vec![512, 3136]
        );
    }

    #[test]
    fn init_is_deterministic_from_the_seed() {
        let t =
            BurnTrainer::new(ModelKind::LogReg, &mnist().train, Optimizer::default(), 0).unwrap();
        assert_eq!(t.init(3).digest(), t.init(3).digest());
        assert_ne!(t.init(3).digest(), t.init(4).digest());
    }

    /// With a zero learning rate, training must hand back exactly what it was given: this
    /// guards the transposition of linear weights in both directions.
    #[test]
    fn parameters_cross_the_boundary_unchanged() {
        let t =
            BurnTrainer::new(ModelKind::Mlp2nn, &mnist().train, Optimizer::default(), 0).unwrap();
        let global = t.init(1);
        let config = FitConfig {
            epochs: 1,
            batch_size: 10,
            learning_rate: 0.0,
            proximal_mu: 0.0,
            local_steps: 0,
        };
        let out = t
            .train(&global, &mnist().train, &[0, 1, 2, 3, 4], &config, 0)
            .unwrap();
        assert_eq!(out.params.digest(), global.digest());
    }

    #[test]
    fn training_the_2nn_beats_chance_by_far() {
        let t =
            BurnTrainer::new(ModelKind::Mlp2nn, &mnist().train, Optimizer::default(), 0).unwrap();
        let global = t.init(1);
        let before = t.evaluate_all(&global, &mnist().test).unwrap();
        let indices: Vec<usize> = (0..3000).collect();
        let config = FitConfig {
            epochs: 1,
            batch_size: 10,
            learning_rate: 0.1,
            proximal_mu: 0.0,
            local_steps: 0,
        };
        let out = t
            .train(&global, &mnist().train, &indices, &config, 7)
            .unwrap();
        let after = t.evaluate_all(&out.params, &mnist().test).unwrap();
        assert!(
            before.accuracy < 0.3,
            "untrained accuracy {}",
            before.accuracy
        );
        assert!(after.accuracy > 0.85, "trained accuracy {}", after.accuracy);
        assert_eq!(out.steps, 300);
        assert_eq!(after.per_class.iter().map(|c| c.1).sum::<usize>(), 1000);
    }

    #[test]
    fn fedprox_term_pulls_towards_the_global_model() {
        let t =
            BurnTrainer::new(ModelKind::LogReg, &mnist().train, Optimizer::default(), 0).unwrap();
        let global = t.init(1);
        let indices: Vec<usize> = (0..500).collect();
        let plain = FitConfig {
            epochs: 2,
            batch_size: 10,
            learning_rate: 0.1,
            proximal_mu: 0.0,
            local_steps: 0,
        };
        let prox = FitConfig {
            proximal_mu: 1.0,
            local_steps: 0,
            ..plain.clone()
        };
        let a = t
            .train(&global, &mnist().train, &indices, &plain, 3)
            .unwrap();
        let b = t
            .train(&global, &mnist().train, &indices, &prox, 3)
            .unwrap();
        let drift = |p: &harambee_params::ParamSet| p.sub(&global).unwrap().l2_norm();
        assert!(
            drift(&b.params) < drift(&a.params),
            "{} !< {}",
            drift(&b.params),
            drift(&a.params)
        );
    }

    #[test]
    fn cnn_and_adamw_train() {
        let t = BurnTrainer::new(
            ModelKind::Cnn,
            &mnist().train,
            Optimizer::AdamW { weight_decay: 0.0 },
            0,
        )
        .unwrap();
        let global = t.init(1);
        let indices: Vec<usize> = (0..200).collect();
        let config = FitConfig {
            epochs: 1,
            batch_size: 20,
            learning_rate: 1e-3,
            proximal_mu: 0.0,
            local_steps: 0,
        };
        let out = t
            .train(&global, &mnist().train, &indices, &config, 1)
            .unwrap();
        let test: Vec<usize> = (0..200).collect();
        let eval = t.evaluate(&out.params, &mnist().test, &test).unwrap();
        assert!(eval.accuracy > 0.4, "accuracy {}", eval.accuracy);
    }

    #[test]
    fn wrong_models_and_parameters_are_refused() {
        assert!(
            BurnTrainer::new(ModelKind::LangId, &mnist().train, Optimizer::default(), 8).is_err()
        );
        let t =
            BurnTrainer::new(ModelKind::LogReg, &mnist().train, Optimizer::default(), 0).unwrap();
        let wrong = harambee_params::ParamSet::from_tensors([("x", vec![1], vec![0.0])]).unwrap();
        assert!(t.evaluate_all(&wrong, &mnist().test).is_err());
        assert!(
            t.train(&wrong, &mnist().train, &[0], &FitConfig::default(), 0)
                .is_err()
        );
    }
}

/// Reproducible training: the same bits on every kernel and at any thread count, so that
/// anyone can replay a worker's round (docs/verification.md).
mod reproducible {
    use super::*;
    use harambee_learn::{Kernel, NativeTrainer};

    fn bits(p: &harambee_params::ParamSet) -> Vec<u32> {
        p.values().iter().map(|v| v.to_bits()).collect()
    }

    /// 25 AdamW steps of batch 10 (a DiLoCo worker's round) on `kernel` inside a rayon pool
    /// of `threads`.
    fn round(kind: ModelKind, kernel: Option<Kernel>, threads: usize) -> Vec<u32> {
        let data = &mnist().train;
        let optimizer = Optimizer::AdamW { weight_decay: 0.01 };
        let trainer = NativeTrainer::new(kind, data, optimizer)
            .unwrap()
            .reproducible(kernel);
        let global = trainer.init(3);
        let indices: Vec<usize> = (0..data.len()).step_by(3).collect();
        let config = FitConfig {
            epochs: 1,
            batch_size: 10,
            learning_rate: 1e-3,
            proximal_mu: 0.0,
            local_steps: 25,
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let out = pool.install(|| trainer.train(&global, data, &indices, &config, 7).unwrap());
        assert_eq!(out.steps, 25);
        bits(&out.params)
    }

    fn same_bits_everywhere(kind: ModelKind) {
        let reference = round(kind, Some(Kernel::Generic), 1);
        for kernel in Kernel::available() {
            for threads in [1, 2] {
                assert!(
                    round(kind, Some(kernel), threads) == reference,
                    "{kind}: {kernel:?} on {threads} threads differs from generic on 1"
                );
            }
        }
        // The fast kernels are a different computation: not a replay of this one.
        assert!(
            round(kind, None, 1) != reference,
            "{kind}: fast mode is gemm's"
        );
    }

    #[test]
    fn the_2nn_trains_to_the_same_bits_on_every_kernel_and_thread_count() {
        same_bits_everywhere(ModelKind::Mlp2nn);
    }

    #[test]
    fn the_cnn_trains_to_the_same_bits_on_every_kernel_and_thread_count() {
        same_bits_everywhere(ModelKind::Cnn);
    }

    #[test]
    fn reproducible_training_stays_close_to_fast_training() {
        let data = &mnist().train;
        let fast = NativeTrainer::new(ModelKind::Mlp2nn, data, Optimizer::default()).unwrap();
        let global = fast.init(3);
        let indices: Vec<usize> = (0..200).collect();
        let config = FitConfig::default();
        let a = fast.train(&global, data, &indices, &config, 1).unwrap();
        let slow = fast.reproducible(Some(Kernel::widest()));
        let b = slow.train(&global, data, &indices, &config, 1).unwrap();
        let diff = a
            .params
            .values()
            .iter()
            .zip(b.params.values())
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(diff < 1e-3, "the two numerics drift apart by {diff}");
    }
}

/// The hand-written engine must compute what burn computes: same layout, same step.
mod engines {
    use super::*;
    use harambee_learn::NativeTrainer;

    fn max_diff(a: &harambee_params::ParamSet, b: &harambee_params::ParamSet) -> f32 {
        a.values()
            .iter()
            .zip(b.values())
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    fn one_step_agrees(kind: ModelKind, optimizer: Optimizer, mu: f32) {
        let data = &mnist().train;
        let burn = BurnTrainer::new(kind, data, optimizer, 0).unwrap();
        let native = NativeTrainer::new(kind, data, optimizer).unwrap();
        assert_eq!(burn.layout(), native.layout());
        let global = burn.init(5);
        let indices: Vec<usize> = (100..110).collect();
        let config = FitConfig {
            epochs: 1,
            batch_size: 10,
            learning_rate: 0.1,
            proximal_mu: mu,
            local_steps: 0,
        };
        let a = burn.train(&global, data, &indices, &config, 1).unwrap();
        let b = native.train(&global, data, &indices, &config, 1).unwrap();
        let moved = max_diff(&a.params, &global);
        assert!(moved > 1e-4, "{kind}: the step must move the parameters");
        assert!(
            max_diff(&a.params, &b.params) < 1e-4 + moved * 1e-3,
            "{kind}: engines differ by {}",
            max_diff(&a.params, &b.params)
        );
        assert!(
            (a.mean_loss - b.mean_loss).abs() < 1e-4,
            "{kind}: loss {} vs {}",
            a.mean_loss,
            b.mean_loss
        );
        let test: Vec<usize> = (0..300).collect();
        let ea = burn.evaluate(&a.params, &mnist().test, &test).unwrap();
        let eb = native.evaluate(&a.params, &mnist().test, &test).unwrap();
        assert_eq!(ea.per_class, eb.per_class, "{kind}: evaluations differ");
        assert!((ea.loss - eb.loss).abs() < 1e-4);
    }

    #[test]
    fn native_2nn_step_equals_burn() {
        one_step_agrees(ModelKind::Mlp2nn, Optimizer::default(), 0.0);
    }

    #[test]
    fn native_logreg_with_momentum_and_fedprox_equals_burn() {
        one_step_agrees(ModelKind::LogReg, Optimizer::Sgd { momentum: 0.9 }, 0.5);
    }

    #[test]
    fn native_cnn_step_equals_burn() {
        one_step_agrees(ModelKind::Cnn, Optimizer::default(), 0.0);
    }

    #[test]
    fn native_adamw_step_equals_burn() {
        one_step_agrees(
            ModelKind::Mlp2nn,
            Optimizer::AdamW { weight_decay: 0.01 },
            0.0,
        );
    }
}

mod text {
    use super::*;

    #[test]
    fn sentences_come_from_paragraphs_with_entities_decoded() {
        let html = "<html><body><h1>Title here</h1><article><h2>Article 1</h2>\
            <p>All human beings are born free. They are endowed with reason &#x26; conscience.</p>\
            <ol><li><p>一切人生而自由。在尊严和权利上一律平等。</p></li></ol></article></body></html>";
        let s = extract_sentences(html);
        assert_eq!(s[0], "All human beings are born free.");
        assert_eq!(s[1], "They are endowed with reason & conscience.");
        assert_eq!(s[2], "一切人生而自由。");
        assert_eq!(s.len(), 4);
    }

    #[test]
    fn language_identification_learns_the_bundled_corpus() {
        let corpus = load_corpus(&repo_data("udhr"), None).unwrap();
        assert!(corpus.languages.len() >= 30);
        let africa = corpus
            .languages
            .iter()
            .filter(|l| l.region == "africa")
            .count();
        let india = corpus
            .languages
            .iter()
            .filter(|l| l.region == "india")
            .count();
        assert!(africa >= 8 && india >= 5, "africa {africa}, india {india}");
        let split = corpus.split(&TextFeatures::default(), 5);
        let t = BurnTrainer::new(
            ModelKind::LangId,
            &split.train,
            Optimizer::AdamW { weight_decay: 0.0 },
            16,
        )
        .unwrap();
        let global = t.init(1);
        let indices: Vec<usize> = (0..split.train.len()).collect();
        let config = FitConfig {
            epochs: 2,
            batch_size: 32,
            learning_rate: 0.02,
            proximal_mu: 0.0,
            local_steps: 0,
        };
        let out = t
            .train(&global, &split.train, &indices, &config, 1)
            .unwrap();
        let eval = t.evaluate_all(&out.params, &split.test).unwrap();
        assert!(
            eval.accuracy > 0.8,
            "accuracy {} over {} languages",
            eval.accuracy,
            corpus.languages.len()
        );
    }

    proptest! {
        /// Corpus files come from disk: any text yields sentences, never a panic.
        #[test]
        fn sentence_extraction_never_panics(text in ".{0,200}", wrapped in prop::bool::ANY) {
            let html = if wrapped { format!("<p>{text}</p>") } else { text };
            for s in extract_sentences(&html) {
                prop_assert!(!s.is_empty());
            }
        }
    }

    #[test]
    fn unknown_language_is_a_clear_error() {
        let err = load_corpus(&repo_data("udhr"), Some(&["xx_nope".to_string()])).unwrap_err();
        assert!(err.to_string().contains("xx_nope"), "{err}");
    }
}

mod loaders {
    use super::*;

    #[test]
    fn bundled_mnist_subset_has_the_documented_size() {
        assert_eq!(mnist().train.len(), 6000);
        assert_eq!(mnist().test.len(), 1000);
    }

    #[test]
    fn missing_directory_says_how_to_fetch() {
        let err = load_idx_dir(Path::new("/nonexistent"), digit_names()).unwrap_err();
        assert!(err.to_string().contains("fetch-data"), "{err}");
    }

    proptest! {
        /// IDX files come from disk and may be corrupt: the parsers return errors, never panic.
        #[test]
        fn idx_parsers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64), magic in prop::bool::ANY) {
            let mut b = bytes.clone();
            if magic && b.len() >= 4 { b[..4].copy_from_slice(&[0, 0, 8, 3]); }
            let _ = parse_images(&b);
            if magic && b.len() >= 4 { b[..4].copy_from_slice(&[0, 0, 8, 1]); }
            let _ = parse_labels(&b);
        }
    }
}

mod partitions {
    use super::*;

    fn sorted_union(parts: &[Vec<usize>]) -> Vec<usize> {
        let mut all: Vec<usize> = parts.iter().flatten().copied().collect();
        all.sort_unstable();
        all
    }

    fn classes_of(data: &Dataset, part: &[usize]) -> usize {
        let mut seen = vec![false; data.num_classes()];
        part.iter()
            .for_each(|&i| seen[data.labels[i] as usize] = true);
        seen.iter().filter(|s| **s).count()
    }

    #[test]
    fn every_example_is_used_exactly_once() {
        let data = &mnist().train;
        let expected: Vec<usize> = (0..data.len()).collect();
        for p in [
            Partition::Iid,
            Partition::Shards,
            Partition::Dirichlet { alpha: 0.5 },
        ] {
            let parts = p.split(data, 100, 9).unwrap();
            assert_eq!(parts.len(), 100);
            assert_eq!(sorted_union(&parts), expected, "{p}");
        }
    }

    #[test]
    fn iid_is_balanced_and_shards_give_about_two_classes() {
        let data = &mnist().train;
        let iid = Partition::Iid.split(data, 100, 1).unwrap();
        assert!(iid.iter().all(|p| p.len() == 60));
        let shards = Partition::Shards.split(data, 100, 1).unwrap();
        assert!(shards.iter().all(|p| p.len() == 60));
        let mean: f64 = shards
            .iter()
            .map(|p| classes_of(data, p) as f64)
            .sum::<f64>()
            / 100.0;
        assert!(mean <= 2.5, "mean classes per participant {mean}");
    }

    #[test]
    fn dirichlet_skew_grows_as_alpha_shrinks() {
        let data = &mnist().train;
        // Mean over participants of the largest class share: near 0.1 when balanced, near 1 when skewed.
        let skew = |alpha| {
            let parts = Partition::Dirichlet { alpha }.split(data, 20, 5).unwrap();
            let mut total = 0.0;
            let mut counted = 0.0;
            for p in parts.iter().filter(|p| !p.is_empty()) {
                let mut counts = [0usize; 10];
                p.iter().for_each(|&i| counts[data.labels[i] as usize] += 1);
                total += *counts.iter().max().unwrap() as f64 / p.len() as f64;
                counted += 1.0;
            }
            total / counted
        };
        let (low, high) = (skew(0.1), skew(100.0));
        assert!(low > 0.5, "alpha 0.1 gives max share {low}");
        assert!(high < 0.2, "alpha 100 gives max share {high}");
    }

    #[test]
    fn natural_partition_limits_classes_per_participant() {
        let data = &mnist().train;
        let parts = Partition::Natural {
            classes_per_participant: 3,
        }
        .split(data, 5, 2)
        .unwrap();
        assert!(parts.iter().all(|p| classes_of(data, p) <= 3));
        let union = sorted_union(&parts);
        let mut dedup = union.clone();
        dedup.dedup();
        assert_eq!(union, dedup, "no example twice");
    }

    #[test]
    fn partitions_are_deterministic_and_parse() {
        let data = &mnist().train;
        let p: Partition = "dirichlet:0.3".parse().unwrap();
        assert_eq!(p.split(data, 10, 4).unwrap(), p.split(data, 10, 4).unwrap());
        assert!("nonsense".parse::<Partition>().is_err());
        assert!(Partition::Iid.split(data, 0, 1).is_err());
    }
}

/// The character-level transformer on the bundled Shakespeare subset.
mod charlm {
    use super::*;
    use harambee_learn::shakespeare::{alphabet, encode, load_text_dir};
    use harambee_learn::{InnerState, TransformerShape, trainer_for};

    fn shape() -> TransformerShape {
        TransformerShape {
            layers: 1,
            width: 32,
            heads: 2,
            context: 32,
        }
    }

    fn plays() -> &'static Split {
        static SPLIT: OnceLock<Split> = OnceLock::new();
        SPLIT.get_or_init(|| load_text_dir(&repo_data("shakespeare"), shape().context).unwrap())
    }

    fn trainer() -> Box<dyn Trainer> {
        let kind = ModelKind::CharTransformer(shape());
        trainer_for(
            kind,
            &plays().train,
            Optimizer::AdamW { weight_decay: 0.0 },
            0,
            false,
        )
        .unwrap()
    }

    fn steps(n: u32) -> FitConfig {
        FitConfig {
            batch_size: 16,
            learning_rate: 3e-3,
            local_steps: n,
            ..FitConfig::default()
        }
    }

    #[test]
    fn the_alphabet_is_fixed_and_the_split_holds_out_a_tenth() {
        assert_eq!(alphabet().len(), 96);
        assert_eq!(encode(b"A\r\n~\t"), vec![34, 0, 95, 1]);
        let split = plays();
        let (train, test) = (split.train.len(), split.test.len());
        assert!(
            test > 100 && test <= 512 && train > 8 * test,
            "{train} / {test}"
        );
    }

    #[test]
    fn validation_loss_falls_in_a_few_steps() {
        let t = trainer();
        let global = t.init(1);
        let val: Vec<usize> = (0..64).collect();
        let before = t.evaluate(&global, &plays().test, &val).unwrap();
        // A uniform guess over 96 characters costs ln 96 = 4.56 nats.
        assert!((before.loss - 96f64.ln()).abs() < 0.5, "{}", before.loss);
        let all: Vec<usize> = (0..plays().train.len()).collect();
        let out = t
            .train(&global, &plays().train, &all, &steps(30), 7)
            .unwrap();
        assert_eq!(out.steps, 30);
        let after = t.evaluate(&out.params, &plays().test, &val).unwrap();
        assert!(
            after.loss < before.loss - 1.0,
            "{} -> {}",
            before.loss,
            after.loss
        );
    }

    #[test]
    fn adamw_state_carries_over_so_two_calls_equal_one() {
        let t = trainer();
        let global = t.init(2);
        let shard: Vec<usize> = (0..16).collect();
        // One batch is the whole shard, so the order of examples cannot differ.
        let once = t
            .train(&global, &plays().train, &shard, &steps(4), 3)
            .unwrap();
        let mut state: Option<InnerState> = None;
        let half = t
            .train_resuming(&global, &plays().train, &shard, &steps(2), 3, &mut state)
            .unwrap();
        let twice = t
            .train_resuming(
                &half.params,
                &plays().train,
                &shard,
                &steps(2),
                3,
                &mut state,
            )
            .unwrap();
        assert_eq!(state.map(|s| s.steps()), Some(4));
        let gap = |x: &harambee_params::ParamSet, y: &harambee_params::ParamSet| {
            x.values()
                .iter()
                .zip(y.values())
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max)
        };
        // Summation order within the shuffled batch moves the last digits only.
        assert!(gap(&once.params, &twice.params) < 2e-4);
        // Restarting AdamW instead moves the weights by about a learning rate.
        let fresh = t
            .train(&half.params, &plays().train, &shard, &steps(2), 3)
            .unwrap();
        assert!(gap(&once.params, &fresh.params) > 1e-3);
    }
}

/// The UDHR declarations as byte-level text, and bits per character by language.
mod multilingual {
    use super::*;
    use harambee_learn::multilingual::{VOCAB, byte_split, language_text, per_language};
    use harambee_learn::{TransformerShape, trainer_for};

    const CONTEXT: usize = 16;

    fn corpus() -> harambee_learn::udhr::Corpus {
        let only = ["swh", "hin"].map(String::from);
        load_corpus(&repo_data("udhr"), Some(&only)).unwrap()
    }

    #[test]
    fn each_language_is_cut_into_overlapping_byte_chunks_a_tenth_held_out() {
        let corpus = corpus();
        let split = byte_split(&corpus, CONTEXT);
        for (label, _) in corpus.languages.iter().enumerate() {
            let text = language_text(&corpus, label);
            // Train and held-out chunks of a language, back in text order, rebuild its text.
            let mut chunks: Vec<(usize, &[u32])> = Vec::new();
            for (set, stride) in [(&split.train, 0), (&split.test, 1)] {
                for i in (0..set.len()).filter(|&i| set.labels[i] as usize == label) {
                    chunks.push((stride, set.tokens(i)));
                }
            }
            let held = chunks.iter().filter(|(s, _)| *s == 1).count();
            let all = chunks.len();
            assert_eq!(held, all / 10, "{label}: {held} of {all} held out");
            let in_order: Vec<&[u32]> = {
                let (mut train, mut test) = (
                    chunks.iter().filter(|(s, _)| *s == 0).map(|c| c.1),
                    chunks.iter().filter(|(s, _)| *s == 1).map(|c| c.1),
                );
                (0..all)
                    .map(|k| {
                        if k % 10 == 9 {
                            test.next()
                        } else {
                            train.next()
                        }
                        .unwrap()
                    })
                    .collect()
            };
            for (k, chunk) in in_order.iter().enumerate() {
                assert_eq!(chunk.len(), CONTEXT + 1);
                let bytes: Vec<u8> = chunk.iter().map(|&b| b as u8).collect();
                assert_eq!(&bytes[..], &text[k * CONTEXT..=(k + 1) * CONTEXT]);
            }
        }
        let harambee_learn::Features::Tokens { vocab, .. } = split.train.features else {
            panic!("byte chunks are tokens");
        };
        assert_eq!(vocab, VOCAB);
    }

    #[test]
    fn bits_per_character_count_every_byte_of_a_character() {
        let corpus = corpus();
        let split = byte_split(&corpus, CONTEXT);
        let shape = TransformerShape {
            layers: 1,
            width: 16,
            heads: 2,
            context: CONTEXT,
        };
        let t = trainer_for(
            ModelKind::CharTransformer(shape),
            &split.train,
            Optimizer::AdamW { weight_decay: 0.0 },
            0,
            false,
        )
        .unwrap();
        let params = t.init(3);
        let table = per_language(t.as_ref(), &params, &split.test, &corpus.languages).unwrap();
        let [swahili, hindi] = &table[..] else {
            panic!("{table:?}")
        };
        // Swahili is ASCII: a byte is a character. Devanagari takes three bytes a character.
        assert_eq!(swahili.bytes, swahili.chars);
        let ratio = hindi.bytes as f64 / hindi.chars as f64;
        assert!((2.0..3.0).contains(&ratio), "{ratio}");
        for l in &table {
            let expect = l.nats_per_byte * l.bytes as f64 / l.chars as f64 / 2f64.ln();
            assert!((l.bits_per_char - expect).abs() < 1e-9);
            // Untrained: about a uniform guess over 256 bytes, 8 bits a byte.
            assert!((l.nats_per_byte / 2f64.ln() - 8.0).abs() < 1.0, "{l:?}");
        }
        // The languages' bytes together are the held-out set's.
        let all: Vec<usize> = (0..split.test.len()).collect();
        let whole = t.evaluate(&params, &split.test, &all).unwrap();
        let bytes: usize = table.iter().map(|l| l.bytes).sum();
        let nats: f64 = table.iter().map(|l| l.nats_per_byte * l.bytes as f64).sum();
        assert_eq!(bytes, split.test.len() * CONTEXT);
        assert!((nats / bytes as f64 - whole.loss).abs() < 1e-4);
    }

    #[test]
    fn the_classes_are_the_languages_so_a_natural_split_deals_languages() {
        let corpus = corpus();
        let split = byte_split(&corpus, CONTEXT);
        assert_eq!(split.train.class_names, ["swh", "hin"]);
        let parts = Partition::Natural {
            classes_per_participant: 1,
        }
        .split(&split.train, 2, 3)
        .unwrap();
        let mut held: Vec<u32> = parts
            .iter()
            .map(|part| {
                let first = split.train.labels[part[0]];
                assert!(part.iter().all(|&i| split.train.labels[i] == first));
                first
            })
            .collect();
        held.sort_unstable();
        assert_eq!(held, [0, 1], "each community holds one whole language");
    }

    #[test]
    fn a_region_stands_for_all_its_languages() {
        let india = load_corpus(&repo_data("udhr"), Some(&["india".to_string()])).unwrap();
        assert_eq!(india.languages.len(), 10);
        assert!(india.languages.iter().all(|l| l.region == "india"));
        let mixed = ["africa", "eng"].map(String::from);
        let mixed = load_corpus(&repo_data("udhr"), Some(&mixed)).unwrap();
        assert_eq!(mixed.languages.len(), 16);
        assert!(load_corpus(&repo_data("udhr"), Some(&["atlantis".to_string()])).is_err());
    }
}
