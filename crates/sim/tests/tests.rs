//! End-to-end simulations on the bundled data: they learn, they are reproducible, and they
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.
//! write what they promise.

use std::path::{Path, PathBuf};

use harambee_learn::{ModelKind, Partition};
use harambee_sim::{DatasetName, MetricsWriter, RoundRecord, SimConfig, Simulation, Workload};
use harambee_strategy::{ParticipantId, StrategyConfig};

fn bundled(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data")
        .join(name)
}

fn mnist_config() -> SimConfig {
    SimConfig {
        dataset: DatasetName::Mnist,
        data_dir: Some(bundled("mnist")),
        model: ModelKind::Mlp2nn,
        clients: 50,
        fraction: 0.2,
        rounds: 5,
        seed: 11,
        ..SimConfig::default()
    }
}

fn run(config: SimConfig) -> (harambee_sim::Summary, Vec<RoundRecord>) {
    let (summary, _, records) = final_model(config);
    (summary, records)
}

#[test]
fn fedavg_on_mnist_rises_well_above_chance() {
    let (summary, records) = run(mnist_config());
    assert_eq!(records.len(), 5);
    let first = records[0].accuracy.unwrap();
    // Chance is 0.1; five short rounds on the 6,000-image subset land around 0.6.
    assert!(
        summary.final_accuracy > 0.5,
        "final accuracy {}",
        summary.final_accuracy
    );
    assert!(
        summary.final_accuracy > first,
        "accuracy did not rise: {first} → {}",
        summary.final_accuracy
    );
    assert!(records.iter().all(|r| r.participants == 10));
    assert_eq!(records[0].bytes_up, 10 * 199_210 * 4);
}

#[test]
fn the_same_seed_gives_the_same_model_and_another_seed_does_not() {
    let config = SimConfig {
        rounds: 2,
        ..mnist_config()
    };
    let (a, _) = run(config.clone());
    let (b, _) = run(config.clone());
    assert_eq!(a.final_digest, b.final_digest);
    let (c, _) = run(SimConfig { seed: 12, ..config });
    assert_ne!(a.final_digest, c.final_digest);
}

#[test]
fn target_accuracy_stops_the_run_and_is_reported() {
    let (summary, records) = run(SimConfig {
        rounds: 50,
        target_accuracy: Some(0.8),
        ..mnist_config()
    });
    let reached = summary
        .rounds_to_target
        .expect("0.8 is reachable on the subset");
    assert_eq!(records.len() as u64, reached);
    assert!(records.last().unwrap().accuracy.unwrap() >= 0.8);
}

#[test]
fn every_strategy_and_non_iid_partition_runs() {
    for (strategy, partition) in [
        ("fedprox", Partition::Shards),
        ("fedavgm", Partition::Dirichlet { alpha: 0.5 }),
        ("fedadam", Partition::Iid),
        ("fedyogi", Partition::Iid),
        ("fedadagrad", Partition::Iid),
    ] {
        let config = SimConfig {
            model: ModelKind::LogReg,
            rounds: 2,
            strategy: strategy.parse::<StrategyConfig>().unwrap(),
            partition,
            ..mnist_config()
        };
        let (summary, _) = run(config);
        assert!(
            summary.final_accuracy > 0.2,
            "{strategy} on {partition}: {}",
            summary.final_accuracy
        );
    }
}

#[test]
fn metrics_files_hold_one_line_per_round() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = MetricsWriter::create(dir.path()).unwrap();
    let config = SimConfig {
        rounds: 3,
        ..mnist_config()
    };
    let workload = Workload::load(&config).unwrap();
    let mut sim = Simulation::new(config, workload).unwrap();
    let summary = sim
        .run(&mut |r: &RoundRecord| writer.record(r).unwrap())
        .unwrap();
    writer.summary(&summary).unwrap();
    let jsonl = std::fs::read_to_string(dir.path().join("rounds.jsonl")).unwrap();
    let rows: Vec<RoundRecord> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[2].round, 3);
    let csv = std::fs::read_to_string(dir.path().join("rounds.csv")).unwrap();
    assert!(csv.starts_with("round,accuracy,loss,train_loss,wall_s,train_s,aggregate_s,eval_s,bytes_up,bytes_down,participants"));
    assert_eq!(csv.lines().count(), 4);
    let back: harambee_sim::Summary =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(back.final_digest, summary.final_digest);
}

/// The seed's claim: communities that each hold a few languages get a model that none of
/// them could train alone.
#[test]
fn federated_language_identification_beats_every_local_model() {
    // 40 bundled languages among 8 communities: 10 each, each language held twice.
    let config = SimConfig {
        data_dir: Some(bundled("udhr")),
        rounds: 6,
        seed: 7,
        embedding_dim: 16,
        ..SimConfig::language_communities(8, 40)
    };
    let workload = Workload::load(&config).unwrap();
    let mut sim = Simulation::new(config, workload).unwrap();
    let summary = sim.run(&mut |_: &RoundRecord| {}).unwrap();
    let ids: Vec<ParticipantId> = (0..8).map(ParticipantId).collect();
    let local = sim.local_baselines(&ids).unwrap();
    let best_local = local
        .iter()
        .map(|b| b.evaluation.accuracy)
        .fold(0.0, f64::max);
    assert!(
        summary.final_accuracy > 0.8,
        "federated {}",
        summary.final_accuracy
    );
    assert!(
        summary.final_accuracy > best_local + 0.3,
        "federated {} vs best local {best_local}",
        summary.final_accuracy
    );
    assert!(local.iter().all(|b| b.classes.len() <= 10));
}

#[test]
fn invalid_settings_are_clear_errors() {
    let workload = Workload::load(&mnist_config()).unwrap();
    for (bad, needle) in [
        (
            SimConfig {
                fraction: 0.0,
                ..mnist_config()
            },
            "fraction",
        ),
        (
            SimConfig {
                clients: 0,
                ..mnist_config()
            },
            "clients",
        ),
        (
            SimConfig {
                lr: f32::NAN,
                ..mnist_config()
            },
            "lr",
        ),
        (
            SimConfig {
                model: ModelKind::LangId,
                ..mnist_config()
            },
            "langid",
        ),
    ] {
        let err = Simulation::new(bad, workload.clone())
            .err()
            .expect("must be refused")
            .to_string();
        assert!(err.contains(needle), "{err:?} should mention {needle}");
    }
    let missing = SimConfig {
        data_dir: Some("/nonexistent".into()),
        ..mnist_config()
    };
    assert!(Workload::load(&missing).is_err());
}

#[test]
fn dropouts_close_rounds_at_the_deadline_with_the_quorum_and_repeat_exactly() {
    let config = SimConfig {
        model: ModelKind::LogReg,
        clients: 20,
        fraction: 0.5,
        rounds: 6,
        dropout: 0.4,
        quorum: 3,
        ..mnist_config()
    };
    let (a, records) = run(config.clone());
    assert!(
        records.iter().map(|r| r.dropped).sum::<usize>() > 0,
        "some participants must vanish"
    );
    for r in &records {
        assert!(
            r.participants >= 3,
            "round {} closed below the quorum",
            r.round
        );
        assert!(r.participants <= 10);
    }
    assert!(a.final_accuracy > 0.5, "{}", a.final_accuracy);
    let (b, _) = run(config);
    assert_eq!(a.final_digest, b.final_digest);
}

#[test]
fn an_unreachable_quorum_stops_the_federation_with_a_clear_error() {
    let config = SimConfig {
        model: ModelKind::LogReg,
        clients: 10,
        fraction: 0.5,
        rounds: 3,
        dropout: 0.9,
        quorum: 5,
        ..mnist_config()
    };
    let workload = Workload::load(&config).unwrap();
    let mut sim = Simulation::new(config, workload).unwrap();
    let err = sim.run(&mut |_: &RoundRecord| {}).unwrap_err().to_string();
    assert!(err.contains("quorum"), "{err}");
}

#[test]
fn under_a_sign_flip_attack_the_median_holds_where_fedavg_collapses() {
    let attacked = |strategy: &str| SimConfig {
        clients: 20,
        fraction: 1.0,
        rounds: 10,
        lr: 0.05,
        partition: Partition::Dirichlet { alpha: 1.0 },
        strategy: strategy.parse::<StrategyConfig>().unwrap(),
        attack: Some("sign-flip".parse().unwrap()),
        attackers: 0.2,
        ..mnist_config()
    };
    let fedavg = run(attacked("fedavg")).0.final_accuracy;
    let median = run(attacked("median")).0.final_accuracy;
    // On the bundled 6,000 images: about 75% against 9% (chance) for FedAvg.
    assert!(median > 0.6, "the median should still learn: {median}");
    assert!(median > fedavg + 0.3, "median {median} vs FedAvg {fedavg}");
}

#[test]
fn every_attack_runs_and_attackers_change_the_outcome() {
    let base = SimConfig {
        model: ModelKind::LogReg,
        rounds: 2,
        ..mnist_config()
    };
    let clean = run(base.clone()).0.final_digest;
    for attack in [
        "sign-flip",
        "scaling:5",
        "noise:0.5",
        "label-flip",
        "alie",
        "ipm:0.5",
    ] {
        let config = SimConfig {
            attack: Some(attack.parse().unwrap()),
            attackers: 0.2,
            ..base.clone()
        };
        let (first, second) = (run(config.clone()).0, run(config).0);
        assert_eq!(
            first.final_digest, second.final_digest,
            "{attack} repeats from the seed"
        );
        assert_ne!(first.final_digest, clean, "{attack} changes the model");
    }
    let missing = SimConfig {
        attack: Some("alie".parse().unwrap()),
        ..base
    };
    assert!(missing.validate().is_err(), "an attack needs attackers");
}

fn final_model(
    config: SimConfig,
) -> (
    harambee_sim::Summary,
    harambee_params::ParamSet,
    Vec<RoundRecord>,
) {
    let workload = Workload::load(&config).unwrap();
    let mut sim = Simulation::new(config, workload).unwrap();
    let mut records = Vec::new();
    let summary = sim
        .run(&mut |r: &RoundRecord| records.push(r.clone()))
        .unwrap();
    (summary, sim.global().clone(), records)
}

#[test]
fn secure_aggregation_gives_the_plain_model_up_to_fixed_point_rounding() {
    // Equal shards, so FedAvg's sample weights are equal and the blind unweighted mean is the
    // same rule.
    let config = SimConfig {
        partition: Partition::Shards,
        ..mnist_config()
    };
    let (plain, plain_model, _) = final_model(config.clone());
    let (secure, secure_model, records) = final_model(SimConfig {
        secure_aggregation: true,
        ..config
    });
    let worst = plain_model
        .values()
        .iter()
        .zip(secure_model.values())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-3, "largest difference {worst}");
    assert!((plain.final_accuracy - secure.final_accuracy).abs() < 0.01);
    assert_ne!(
        plain.final_digest, secure.final_digest,
        "fixed point rounds a little"
    );
    assert!(
        records
            .iter()
            .all(|r| r.secagg_client_s > 0.0 && r.secagg_extra_bytes > 0)
    );
}

#[test]
fn secure_aggregation_survives_dropouts_and_carries_distributed_noise() {
    let (summary, _, records) = final_model(SimConfig {
        secure_aggregation: true,
        dropout: 0.3,
        strategy: "dp-adaptive:1.0:0.5".parse().unwrap(),
        ..mnist_config()
    });
    assert!(records.iter().any(|r| r.dropped > 0));
    assert!(summary.final_accuracy > 0.2, "{}", summary.final_accuracy);
    // Ten participants a round cannot afford real DP noise; a small multiplier shows that the
    // participants' noise shares arrive in the model (it differs from the noiseless run).
    let distributed_with = |z: f64| {
        let mut c = SimConfig {
            secure_aggregation: true,
            strategy: format!("dp-fedavg:1.0:{z}").parse().unwrap(),
            ..mnist_config()
        };
        "secagg,distributed-dp"
            .parse::<harambee_sim::PrivacySettings>()
            .unwrap()
            .apply_to(&mut c)
            .unwrap();
        c
    };
    let (noisy, noisy_model, _) = final_model(distributed_with(0.02));
    let (_, quiet_model, _) = final_model(distributed_with(0.0));
    assert!(noisy.final_accuracy > 0.2, "{}", noisy.final_accuracy);
    let moved = noisy_model
        .values()
        .iter()
        .zip(quiet_model.values())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(moved > 1e-3, "the noise left no trace: {moved}");
    let mut distributed = distributed_with(0.02);
    // Without secure aggregation, distributed noise is refused, as is a rule that needs
    // every update.
    distributed.secure_aggregation = false;
    assert!(
        distributed
            .validate()
            .unwrap_err()
            .to_string()
            .contains("secure aggregation")
    );
    let median = SimConfig {
        secure_aggregation: true,
        strategy: "median".parse().unwrap(),
        ..mnist_config()
    };
    let workload = Workload::load(&median).unwrap();
    let err = Simulation::new(median, workload)
        .unwrap()
        .run(&mut |_: &RoundRecord| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("individual updates"), "{err}");
}

/// Community compute: DiLoCo on the character-level transformer, on the bundled plays.
mod diloco {
    use super::*;
    use harambee_learn::{Optimizer, TransformerShape};

    fn config(strategy: &str, local_steps: u32) -> SimConfig {
        SimConfig {
            dataset: DatasetName::Shakespeare,
            data_dir: Some(bundled("shakespeare")),
            model: ModelKind::CharTransformer(TransformerShape {
                layers: 1,
                width: 32,
                heads: 2,
                context: 32,
            }),
            clients: 4,
            fraction: 1.0,
            batch: 16,
            lr: 3e-3,
            local_steps,
            optimizer: Optimizer::AdamW { weight_decay: 0.0 },
            rounds: 3,
            strategy: strategy.parse().unwrap(),
            seed: 5,
            ..SimConfig::default()
        }
    }

    #[test]
    fn diloco_trains_the_char_transformer() {
        let (_, records) = run(config("diloco:10", 0));
        let losses: Vec<f64> = records.iter().map(|r| r.loss.unwrap()).collect();
        // From ln 96 = 4.56 nats for a uniform guess.
        assert!(losses[2] < losses[0] && losses[2] < 3.6, "{losses:?}");
        // One exchange of the model per round, whatever H.
        assert_eq!(records[0].bytes_up, records[0].bytes_down);
    }

    #[test]
    fn outer_lr_one_without_momentum_is_fedavg_of_h_step_local_training() {
        let final_model = |config: SimConfig| {
            let workload = Workload::load(&config).unwrap();
            let mut sim = Simulation::new(config, workload).unwrap();
            sim.run(&mut |_: &RoundRecord| {}).unwrap();
            sim.global().values().to_vec()
        };
        let diloco = final_model(config("diloco:5:1:0", 0));
        let fedavg = final_model(config("fedavg", 5));
        let gap = diloco
            .iter()
            .zip(&fedavg)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        // FedAvg weighs by shard size, which differs by a chunk at most; DiLoCo does not.
        assert!(gap < 1e-4, "largest difference {gap}");
    }

    #[test]
    fn the_multilingual_model_reports_bits_per_character_by_language() {
        let mut c = config("diloco:5", 0);
        c.dataset = DatasetName::UdhrText;
        c.data_dir = Some(bundled("udhr"));
        c.languages = vec!["yor".into(), "tam".into()];
        c.rounds = 2;
        let (summary, records) = run(c);
        let codes: Vec<&str> = summary
            .per_language
            .iter()
            .map(|l| l.code.as_str())
            .collect();
        assert_eq!(codes, ["yor", "tam"]);
        // Tamil script takes about three bytes a character; Yoruba's tone marks some more.
        let tamil = &summary.per_language[1];
        assert!(tamil.bits_per_char > 2.0 * tamil.nats_per_byte / 2f64.ln());
        assert!(records[1].loss.unwrap() < records[0].loss.unwrap());
    }

    #[test]
    fn the_char_transformer_and_shakespeare_go_together() {
        let mut c = config("diloco", 0);
        c.dataset = DatasetName::Mnist;
        assert!(c.validate().is_err());
    }
}

/// Simulated time: with a slow tail, synchronous rounds wait for the slowest selected
/// participant; over-selection closes on the first that arrive, and a deadline cuts the
/// wait; the clock repeats exactly from the seed, and the rounds still learn.
#[test]
fn a_slow_tail_costs_synchronous_rounds_and_over_selection_or_a_deadline_avoids_it() {
    let timing = harambee_sim::Timing {
        slow_fraction: 0.2,
        slow_factor: 20.0,
        ..harambee_sim::Timing::default()
    };
    let with = |timing: harambee_sim::Timing| SimConfig {
        timing: Some(timing),
        ..mnist_config()
    };
    let (sync, sync_records) = run(with(timing.clone()));
    let (again, _) = run(with(timing.clone()));
    assert_eq!(sync.sim_time_s, again.sim_time_s);
    assert_eq!(sync.final_digest, again.final_digest);
    // The clock only moves forward, round by round.
    assert!(
        sync_records
            .windows(2)
            .all(|w| w[1].sim_clock_s > w[0].sim_clock_s)
    );
    assert!(sync_records.iter().all(|r| r.participants == 10));

    let (over, over_records) = run(with(harambee_sim::Timing {
        over_select: 1.5,
        ..timing.clone()
    }));
    // Fifteen selected, the first ten to arrive taken.
    assert!(over_records.iter().all(|r| r.participants == 10));
    assert!(
        over.sim_time_s * 2.0 < sync.sim_time_s,
        "over-selection {} s against synchronous {} s",
        over.sim_time_s,
        sync.sim_time_s
    );
    assert!(over.final_accuracy > 0.5, "{}", over.final_accuracy);

    let per_round = over.sim_time_s / 5.0;
    let (cut, cut_records) = run(with(harambee_sim::Timing {
        deadline_s: Some(per_round),
        ..timing
    }));
    assert!(cut.sim_time_s < sync.sim_time_s);
    // A deadline takes fewer than all selected in some round, and never waits past itself.
    assert!(cut_records.iter().any(|r| r.participants < 10));
    assert!(
        cut_records
            .iter()
            .all(|r| r.sim_clock_s <= per_round * f64::from(r.retries + 1) * r.round as f64 + 1e-9)
    );
}

/// Compressed updates in the simulator: each round uploads the encoding's bytes, the rounds
/// combine the updates as decoded (with every participant's error feedback), and they learn.
#[test]
fn compressed_updates_count_their_bytes_and_still_learn() {
    for (code, bytes) in [("int8", 779 * 4 + 199_210), ("topk:0.1", 19_921 * 8)] {
        let (summary, records) = run(SimConfig {
            update_encoding: code.parse().unwrap(),
            ..mnist_config()
        });
        assert_eq!(records[0].bytes_up, 10 * bytes, "{code}");
        assert!(
            summary.final_accuracy > 0.5,
            "{code}: {}",
            summary.final_accuracy
        );
    }
}

/// FedBuff on the simulated clock: every version applies K results, some of them stale; the
/// run repeats exactly from the seed, learns, and with a slow tail publishes its versions
/// sooner than synchronous rounds close.
#[test]
fn fedbuff_publishes_versions_from_the_first_arrivals_and_repeats_exactly() {
    let timing = harambee_sim::Timing {
        slow_fraction: 0.2,
        slow_factor: 20.0,
        ..harambee_sim::Timing::default()
    };
    let with = |fedbuff: Option<&str>| SimConfig {
        timing: Some(timing.clone()),
        fedbuff: fedbuff.map(|f| f.parse().unwrap()),
        rounds: 8,
        ..mnist_config()
    };
    let (buffered, records) = run(with(Some("10:13")));
    let (again, _) = run(with(Some("10:13")));
    assert_eq!(buffered.final_digest, again.final_digest);
    assert_eq!(records.len(), 8);
    assert!(records.iter().all(|r| r.participants == 10));
    assert!(
        records
            .windows(2)
            .all(|w| w[1].sim_clock_s >= w[0].sim_clock_s)
    );
    assert!(buffered.final_accuracy > 0.5, "{}", buffered.final_accuracy);
    let (sync, _) = run(with(None));
    assert!(
        buffered.sim_time_s * 2.0 < sync.sim_time_s,
        "FedBuff {} s against synchronous {} s",
        buffered.sim_time_s,
        sync.sim_time_s
    );
    // Without a clock, or with another strategy, it is refused.
    let refused = |config: SimConfig| {
        let workload = Workload::load(&config).unwrap();
        Simulation::new(config, workload).is_err()
    };
    assert!(refused(SimConfig {
        timing: None,
        ..with(Some("10"))
    }));
    assert!(refused(SimConfig {
        strategy: StrategyConfig::Robust(harambee_strategy::RobustRule::Median),
        ..with(Some("10"))
    }));
    assert!("0".parse::<harambee_sim::FedBuffSettings>().is_err());
    assert!("10:5".parse::<harambee_sim::FedBuffSettings>().is_err());
}
