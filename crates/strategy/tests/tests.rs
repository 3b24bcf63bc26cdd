//! Strategy tests: each rule against values computed by hand, and FedAvg's algebraic laws.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use harambee_params::ParamSet;
use harambee_strategy::{
    Aggregate, FedAvg, FedOpt, FitConfig, FitResult, ParticipantId, ServerOptimizer, Strategy,
    StrategyConfig,
};
use proptest::prelude::*;

fn params(v: &[f32]) -> ParamSet {
    ParamSet::from_tensors([("w", vec![v.len()], v.to_vec())]).unwrap()
}

fn result(id: u64, v: &[f32], n: u64) -> FitResult {
    FitResult {
        participant: ParticipantId(id),
        params: params(v),
        num_samples: n,
        train_loss: 0.0,
    }
}

fn updated(a: Aggregate) -> Vec<f32> {
    match a {
        Aggregate::Updated(p) => p.values().to_vec(),
        other => panic!("expected an update, got {other:?}"),
    }
}

fn close(a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() < 1e-5, "expected {b:?}, got {a:?}");
    }
}

#[test]
fn fedavg_weights_by_samples() {
    let mut s = FedAvg::default();
    let out = s.aggregate_fit(
        1,
        &params(&[0.0, 0.0]),
        &[result(1, &[1.0, 2.0], 1), result(2, &[3.0, 6.0], 3)],
        &[],
    );
    close(&updated(out.unwrap()), &[2.5, 5.0]);
}

#[test]
fn no_results_keeps_the_previous_model() {
    let mut s = FedAvg::default();
    assert!(matches!(
        s.aggregate_fit(1, &params(&[1.0]), &[], &[]),
        Ok(Aggregate::KeepPrevious { .. })
    ));
}

#[test]
fn sample_size_respects_fraction_and_minimum() {
    let s = FedAvg::new(0.1, 3, FitConfig::default());
    assert_eq!(s.sample_size(100), 10);
    assert_eq!(s.sample_size(10), 3);
    assert_eq!(s.sample_size(2), 2);
}

#[test]
fn fedavgm_accumulates_velocity() {
    // Δ = mean − global = 1 each round; β = 0.5, η = 1: v₁ = 1, x₁ = 1; then Δ = 1 again:
    // v₂ = 0.5·1 + 1 = 1.5, x₂ = 2.5.
    let mut s = FedOpt::new(
        1.0,
        1,
        FitConfig::default(),
        ServerOptimizer::Momentum { momentum: 0.5 },
        1.0,
        1e-3,
    )
    .unwrap();
    let x1 = updated(
        s.aggregate_fit(1, &params(&[0.0]), &[result(1, &[1.0], 1)], &[])
            .unwrap(),
    );
    close(&x1, &[1.0]);
    let x2 = updated(
        s.aggregate_fit(2, &params(&x1), &[result(1, &[2.0], 1)], &[])
            .unwrap(),
    );
    close(&x2, &[2.5]);
}

#[test]
fn fedadam_first_step_by_hand() {
    // Δ = 2, m = 0.1·2 = 0.2, v = 0.99·τ² + 0.01·4 with τ = 0.1: 0.0099 + 0.04 = 0.0499,
    // x = 0 + 1·0.2 / (√0.0499 + 0.1).
    let mut s = FedOpt::new(
        1.0,
        1,
        FitConfig::default(),
        ServerOptimizer::Adam,
        1.0,
        0.1,
    )
    .unwrap();
    let x = updated(
        s.aggregate_fit(1, &params(&[0.0]), &[result(1, &[2.0], 5)], &[])
            .unwrap(),
    );
    close(&x, &[0.2 / (0.0499f32.sqrt() + 0.1)]);
}

#[test]
fn fedyogi_and_fedadagrad_first_step_by_hand() {
    // Yogi: v = τ² − 0.01·Δ²·sign(τ² − Δ²) = 0.01 + 0.01·4 = 0.05.
    let mut y = FedOpt::new(
        1.0,
        1,
        FitConfig::default(),
        ServerOptimizer::Yogi,
        1.0,
        0.1,
    )
    .unwrap();
    let x = updated(
        y.aggregate_fit(1, &params(&[0.0]), &[result(1, &[2.0], 5)], &[])
            .unwrap(),
    );
    close(&x, &[0.2 / (0.05f32.sqrt() + 0.1)]);
    // Adagrad: v = τ² + Δ² = 4.01.
    let mut a = FedOpt::new(
        1.0,
        1,
        FitConfig::default(),
        ServerOptimizer::Adagrad,
        1.0,
        0.1,
    )
    .unwrap();
    let x = updated(
        a.aggregate_fit(1, &params(&[0.0]), &[result(1, &[2.0], 5)], &[])
            .unwrap(),
    );
    close(&x, &[0.2 / (4.01f32.sqrt() + 0.1)]);
}

#[test]
fn config_parses_names_and_refuses_unknown_ones() {
    for name in [
        "fedavg",
        "fedprox",
        "fedavgm",
        "fedadam",
        "fedyogi",
        "fedadagrad",
    ] {
        let cfg: StrategyConfig = name.parse().unwrap();
        let s = cfg.build(0.5, 1, FitConfig::default()).unwrap();
        assert_eq!(s.name(), name);
    }
    assert!("fedmagic".parse::<StrategyConfig>().is_err());
    assert!(
        StrategyConfig::FedAvg
            .build(0.0, 1, FitConfig::default())
            .is_err()
    );
    assert!(
        StrategyConfig::FedProx { mu: -1.0 }
            .build(1.0, 1, FitConfig::default())
            .is_err()
    );
}

#[test]
fn fedprox_asks_participants_for_the_proximal_term() {
    let s = StrategyConfig::FedProx { mu: 0.1 }
        .build(1.0, 1, FitConfig::default())
        .unwrap();
    assert_eq!(s.configure_fit(1).proximal_mu, 0.1);
}

proptest! {
    /// With β = 0 and η = 1, FedAvgM is exactly FedAvg.
    #[test]
    fn fedavgm_without_momentum_is_fedavg(a in prop::collection::vec(-10f32..10.0, 4), b in prop::collection::vec(-10f32..10.0, 4), g in prop::collection::vec(-10f32..10.0, 4)) {
        let results = [result(1, &a, 2), result(2, &b, 5)];
        let mut avg = FedAvg::default();
        let mut m = FedOpt::new(1.0, 1, FitConfig::default(), ServerOptimizer::Momentum { momentum: 0.0 }, 1.0, 1e-3).unwrap();
        let x = updated(avg.aggregate_fit(1, &params(&g), &results, &[]).unwrap());
        let y = updated(m.aggregate_fit(1, &params(&g), &results, &[]).unwrap());
        for (p, q) in x.iter().zip(&y) { prop_assert!((p - q).abs() < 1e-4); }
    }
}

#[test]
fn fedopt_state_restored_continues_exactly() {
    let adam = || {
        FedOpt::new(
            1.0,
            1,
            FitConfig::default(),
            ServerOptimizer::Adam,
            1.0,
            0.1,
        )
        .unwrap()
    };
    let mut uninterrupted = adam();
    let g1 = updated(
        uninterrupted
            .aggregate_fit(1, &params(&[0.0, 1.0]), &[result(1, &[2.0, 0.0], 5)], &[])
            .unwrap(),
    );
    let state: Vec<(String, ParamSet)> = uninterrupted
        .state()
        .into_iter()
        .map(|(n, p)| (n.to_string(), p))
        .collect();
    assert_eq!(state.len(), 2, "Adam keeps m and v");
    let g2 = updated(
        uninterrupted
            .aggregate_fit(2, &params(&g1), &[result(1, &[1.0, 1.0], 5)], &[])
            .unwrap(),
    );

    let mut restarted = adam();
    restarted.restore_state(state).unwrap();
    let again = updated(
        restarted
            .aggregate_fit(2, &params(&g1), &[result(1, &[1.0, 1.0], 5)], &[])
            .unwrap(),
    );
    assert_eq!(again, g2, "bit for bit");
    assert!(
        adam()
            .restore_state(vec![("w".into(), params(&[0.0]))])
            .is_err()
    );
    assert!(
        FedAvg::default()
            .restore_state(vec![("m".into(), params(&[0.0]))])
            .is_err()
    );
}

mod robust {
    use super::*;
    use harambee_strategy::{Robust, RobustRule};

    fn robust(rule: RobustRule) -> Robust {
        Robust::new(1.0, 1, FitConfig::default(), rule).unwrap()
    }

    /// Seven honest updates near (1, 1) and `liars` sending (100, −100).
    fn updates(liars: usize) -> Vec<FitResult> {
        let honest = [0.9, 1.0, 1.1, 0.95, 1.05, 1.0, 1.02];
        let mut out: Vec<FitResult> = honest
            .iter()
            .enumerate()
            .map(|(i, &v)| result(i as u64, &[v, v], 10))
            .collect();
        for k in 0..liars {
            out.push(result(100 + k as u64, &[100.0, -100.0], 1_000_000));
        }
        out
    }

    fn aggregate(rule: RobustRule, results: &[FitResult]) -> Vec<f32> {
        let global = params(&vec![0.0; results[0].params.len()]);
        updated(
            robust(rule)
                .aggregate_fit(1, &global, results, &[])
                .unwrap(),
        )
    }

    fn near_one(v: &[f32], tol: f32) {
        assert!(
            v.iter().all(|x| (x - 1.0).abs() < tol),
            "{v:?} should be near 1"
        );
    }

    #[test]
    fn median_and_trimmed_mean_ignore_a_minority_of_extreme_vectors() {
        near_one(&aggregate(RobustRule::Median, &updates(3)), 0.11);
        near_one(
            &aggregate(RobustRule::TrimmedMean { beta: 0.3 }, &updates(3)),
            0.11,
        );
        // The median of an even count is the mean of the middle two.
        let even = [
            result(1, &[1.0], 1),
            result(2, &[2.0], 1),
            result(3, &[3.0], 1),
            result(4, &[10.0], 1),
        ];
        assert_eq!(aggregate(RobustRule::Median, &even), vec![2.5]);
        // FedAvg, weighted by the liars' claimed samples, is dragged away.
        let fedavg = updated(
            FedAvg::default()
                .aggregate_fit(1, &params(&[0.0, 0.0]), &updates(3), &[])
                .unwrap(),
        );
        assert!(fedavg[0] > 50.0);
    }

    #[test]
    fn krum_picks_an_honest_update_and_multi_krum_averages_honest_ones() {
        let results = updates(2);
        let krum = aggregate(RobustRule::Krum { f: 2 }, &results);
        assert!(
            results[..7]
                .iter()
                .any(|r| r.params.values() == krum.as_slice()),
            "Krum returns one honest update: {krum:?}"
        );
        near_one(
            &aggregate(RobustRule::MultiKrum { f: 2, m: None }, &results),
            0.11,
        );
    }

    #[test]
    fn bulyan_holds_with_n_at_least_4f_plus_3() {
        near_one(&aggregate(RobustRule::Bulyan { f: 1 }, &updates(1)), 0.11);
        // Too few updates for the guarantee: the model is kept, with a reason.
        let kept = robust(RobustRule::Bulyan { f: 2 })
            .aggregate_fit(1, &params(&[0.0, 0.0]), &updates(2)[..9], &[])
            .unwrap();
        assert!(
            matches!(kept, Aggregate::KeepPrevious { ref reason } if reason.contains("at least 11")),
            "{kept:?}"
        );
    }

    #[test]
    fn norm_bounding_limits_each_update_and_centered_clipping_stays_close() {
        // Bound 2: each liar's (100, −100) shrinks to norm 2, so the mean moves a little.
        let bounded = aggregate(RobustRule::NormBound { bound: Some(2.0) }, &updates(1));
        assert!(bounded.iter().all(|x| x.abs() < 2.0), "{bounded:?}");
        near_one(
            &aggregate(RobustRule::NormBound { bound: None }, &updates(0)),
            0.11,
        );
        let clipped = aggregate(
            RobustRule::CenteredClip {
                tau: 1.0,
                iterations: 5,
            },
            &updates(2),
        );
        near_one(&clipped, 0.35);
    }

    #[test]
    fn centered_clipping_carries_its_center_across_rounds_and_restarts() {
        let mut a = robust(RobustRule::CenteredClip {
            tau: 1.0,
            iterations: 2,
        });
        let global = params(&[0.0, 0.0]);
        let _ = a.aggregate_fit(1, &global, &updates(1), &[]).unwrap();
        let state: Vec<(String, ParamSet)> = a
            .state()
            .into_iter()
            .map(|(n, p)| (n.to_string(), p))
            .collect();
        assert_eq!(state.len(), 1);
        let mut b = robust(RobustRule::CenteredClip {
            tau: 1.0,
            iterations: 2,
        });
        b.restore_state(state).unwrap();
        let next_a = updated(a.aggregate_fit(2, &global, &updates(1), &[]).unwrap());
        let next_b = updated(b.aggregate_fit(2, &global, &updates(1), &[]).unwrap());
        assert_eq!(next_a, next_b);
    }

    #[test]
    fn robust_names_parse_with_their_settings() {
        for (text, rule) in [
            ("median", RobustRule::Median),
            ("trimmed-mean:0.2", RobustRule::TrimmedMean { beta: 0.2 }),
            ("krum:3", RobustRule::Krum { f: 3 }),
            ("bulyan", RobustRule::Bulyan { f: 1 }),
            ("norm-bound", RobustRule::NormBound { bound: None }),
            ("norm-bound:5", RobustRule::NormBound { bound: Some(5.0) }),
        ] {
            assert_eq!(
                text.parse::<StrategyConfig>().unwrap(),
                StrategyConfig::Robust(rule),
                "{text}"
            );
        }
        assert!("trimmed-mean:0.7".parse::<StrategyConfig>().is_err());
        assert!("krum:x".parse::<StrategyConfig>().is_err());
        let toml_text = "name = \"robust\"\nrule = \"krum\"\nf = 2\n";
        let parsed: StrategyConfig = toml::from_str(toml_text).unwrap();
        assert_eq!(parsed, StrategyConfig::Robust(RobustRule::Krum { f: 2 }));
    }
}

mod privacy {
    use super::*;
    use harambee_strategy::privacy::{
        DpFedAvg, RdpAccountant, noise_multiplier_for, rdp_subsampled_gaussian,
    };

    #[test]
    fn dp_fedavg_clips_each_update_and_adds_fresh_noise() {
        let global = params(&[0.0, 0.0]);
        // (30, 40) has norm 50: clipped to norm 5, i.e. (3, 4); (0.3, 0.4) stays.
        let results = [result(1, &[30.0, 40.0], 10), result(2, &[0.3, 0.4], 10)];
        let mut exact = DpFedAvg::new(1.0, 1, FitConfig::default(), 5.0, 0.0).unwrap();
        let x = updated(exact.aggregate_fit(1, &global, &results, &[]).unwrap());
        close(&x, &[1.65, 2.2]);
        let mut noisy = DpFedAvg::new(1.0, 1, FitConfig::default(), 5.0, 1.0).unwrap();
        let a = updated(noisy.aggregate_fit(1, &global, &results, &[]).unwrap());
        let b = updated(noisy.aggregate_fit(1, &global, &results, &[]).unwrap());
        assert_ne!(
            a, b,
            "noise is fresh each time, never replayable from a seed"
        );
        assert!(DpFedAvg::new(1.0, 1, FitConfig::default(), 0.0, 1.0).is_err());
        assert_eq!(
            "dp-fedavg:1.5:0.8".parse::<StrategyConfig>().unwrap(),
            StrategyConfig::DpFedAvg {
                clip: 1.5,
                noise_multiplier: 0.8,
                noise: harambee_strategy::privacy::NoisePlacement::Central,
                adaptive: None,
            }
        );
    }

    /// Google's dp-accounting, if installed (`pip install dp-accounting==0.6.0`; CI does and
    /// sets HARAMBEE_DP_REFERENCE=1, which makes its absence a failure).
    fn reference() -> Option<String> {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dp_reference.py");
        let out = std::process::Command::new("python3")
            .arg(script)
            .output()
            .ok()?;
        if !out.status.success() {
            assert!(
                std::env::var_os("HARAMBEE_DP_REFERENCE").is_none(),
                "dp-accounting is required here: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            eprintln!("skipped: dp-accounting is not installed (pip install dp-accounting==0.6.0)");
            return None;
        }
        Some(String::from_utf8(out.stdout).unwrap())
    }

    #[test]
    fn epsilon_agrees_with_google_dp_accounting_within_one_percent() {
        let Some(lines) = reference() else { return };
        let mut compared = 0;
        for line in lines.lines() {
            let v: Vec<f64> = line
                .split_whitespace()
                .map(|x| x.parse().unwrap())
                .collect();
            let (q, sigma, steps, delta, expected) = (v[0], v[1], v[2] as u64, v[3], v[4]);
            let mut acc = RdpAccountant::default();
            acc.compose_subsampled_gaussian(q, sigma, steps);
            let (ours, _) = acc.epsilon(delta);
            let tolerance = 0.01 * expected.abs() + 1e-9;
            assert!(
                (ours - expected).abs() <= tolerance,
                "q={q} sigma={sigma} steps={steps} delta={delta}: ours {ours}, dp-accounting {expected}"
            );
            compared += 1;
        }
        assert_eq!(compared, 96);
    }

    #[test]
    fn more_noise_or_fewer_rounds_spend_less() {
        let eps = |q, sigma, steps| {
            let mut acc = RdpAccountant::default();
            acc.compose_subsampled_gaussian(q, sigma, steps);
            acc.epsilon(1e-5).0
        };
        assert!(eps(0.01, 2.0, 100) < eps(0.01, 1.0, 100));
        assert!(eps(0.01, 1.0, 10) < eps(0.01, 1.0, 100));
        assert!(eps(0.001, 1.0, 100) < eps(0.01, 1.0, 100));
        assert_eq!(
            rdp_subsampled_gaussian(1.0, 2.0, 8.0),
            1.0,
            "no sampling: α / 2σ²"
        );
        let sigma = noise_multiplier_for(2.0, 1e-5, 0.01, 1000).unwrap();
        assert!(
            eps(0.01, sigma, 1000) <= 2.0 && eps(0.01, sigma * 0.99, 1000) > 1.99,
            "{sigma}"
        );
    }
}

mod blind {
    //! Strategies under secure aggregation: participants clip and noise, the coordinator sees
    //! only a sum.
    use super::*;
    use harambee_strategy::privacy::{AdaptiveClipping, DpFedAvg, NoisePlacement};
    use harambee_strategy::{SecureSum, Strategy, UpdatePrivacy};

    fn adaptive(count_noise_std: f64) -> AdaptiveClipping {
        AdaptiveClipping {
            target_quantile: 0.5,
            learning_rate: 0.2,
            count_noise_std,
        }
    }

    #[test]
    fn fedavg_on_a_blind_sum_is_the_unweighted_mean() {
        let global = params(&[1.0, 1.0]);
        let sum = SecureSum {
            delta_sum: params(&[3.0, -6.0]),
            contributors: vec![ParticipantId(1), ParticipantId(4), ParticipantId(7)],
            selected: 4,
            within_clip: None,
        };
        let mut fedavg = harambee_strategy::FedAvg::default();
        close(
            &updated(fedavg.aggregate_secure(1, &global, &sum).unwrap()),
            &[2.0, -1.0],
        );
        // Robust rules need the individual updates and say so.
        let mut median = "median"
            .parse::<StrategyConfig>()
            .unwrap()
            .build(1.0, 1, FitConfig::default())
            .unwrap();
        let err = median
            .aggregate_secure(1, &global, &sum)
            .unwrap_err()
            .to_string();
        assert!(err.contains("individual updates"), "{err}");
    }

    #[test]
    fn adaptive_clipping_tracks_the_median_norm() {
        // Ten participants whose updates have norms 1, 2, ..., 10: the median is 5.5.
        let global = params(&[0.0, 0.0]);
        let results: Vec<FitResult> = (1..=10).map(|k| result(k, &[k as f32, 0.0], 10)).collect();
        let mut dp = DpFedAvg::new(1.0, 1, FitConfig::default(), 100.0, 0.0)
            .unwrap()
            .with_adaptive_clipping(adaptive(1e-9))
            .unwrap();
        for round in 1..=200 {
            dp.aggregate_fit(round, &global, &results, &[]).unwrap();
        }
        assert!((4.0..=7.0).contains(&dp.clip()), "bound {}", dp.clip());
        // The bound is state: a restarted coordinator continues from it.
        let state: Vec<(String, ParamSet)> = dp
            .state()
            .into_iter()
            .map(|(n, p)| (n.to_string(), p))
            .collect();
        let mut restarted = DpFedAvg::new(1.0, 1, FitConfig::default(), 100.0, 0.0)
            .unwrap()
            .with_adaptive_clipping(adaptive(1e-9))
            .unwrap();
        restarted.restore_state(state).unwrap();
        assert!((restarted.clip() - dp.clip()).abs() < 1e-4 * dp.clip());
    }

    #[test]
    fn the_count_takes_its_share_of_the_noise() {
        let dp = DpFedAvg::new(1.0, 1, FitConfig::default(), 1.0, 1.0)
            .unwrap()
            .with_adaptive_clipping(adaptive(1.0))
            .unwrap();
        // z_Δ = (1 − 1/4)^(−1/2)
        assert!((dp.update_noise_multiplier() - 1.0 / 0.75f64.sqrt()).abs() < 1e-12);
        // A count noise too small to leave anything for the update is refused.
        let too_little = DpFedAvg::new(1.0, 1, FitConfig::default(), 1.0, 1.0)
            .unwrap()
            .with_adaptive_clipping(adaptive(0.5));
        assert!(too_little.is_err());
    }

    #[test]
    fn distributed_noise_is_shared_among_the_expected_contributors() {
        let dp = DpFedAvg::new(1.0, 1, FitConfig::default(), 2.0, 1.5)
            .unwrap()
            .with_placement(NoisePlacement::Distributed);
        let p = dp.update_privacy(1, 25).unwrap();
        assert_eq!(p.clip, 2.0);
        // 25 shares of variance (1.5·2)²/25 add up to the central variance (1.5·2)².
        assert!((p.noise_std - 1.5 * 2.0 / 5.0).abs() < 1e-12);
        // Central placement leaves participants only the clipping.
        let central = DpFedAvg::new(1.0, 1, FitConfig::default(), 2.0, 1.5).unwrap();
        assert_eq!(central.update_privacy(1, 25).unwrap().noise_std, 0.0);
        // Without secure aggregation distributed noise protects nothing: refused.
        let mut dp = dp;
        let err = dp.aggregate_fit(1, &params(&[0.0]), &[result(1, &[1.0], 1)], &[]);
        assert!(err.unwrap_err().to_string().contains("secure aggregation"));
    }

    #[test]
    fn participants_clip_noise_and_report() {
        let mut rng = rand::rng();
        let plain = UpdatePrivacy {
            clip: 1.0,
            noise_std: 0.0,
            report_within_clip: true,
            report_noise_std: 0.0,
        };
        let mut delta = params(&[3.0, 4.0]);
        assert_eq!(
            plain.apply(&mut delta, &mut rng),
            0.0,
            "norm 5 is outside the bound 1"
        );
        close(delta.values(), &[0.6, 0.8]);
        let mut small = params(&[0.3, 0.4]);
        assert_eq!(plain.apply(&mut small, &mut rng), 1.0);
        close(small.values(), &[0.3, 0.4]);
        // Noise of std 1 on 10,000 coordinates: the sample variance is near 1.
        let noisy = UpdatePrivacy {
            noise_std: 1.0,
            ..plain
        };
        let mut zeros = ParamSet::from_tensors([("w", vec![10_000], vec![0.0; 10_000])]).unwrap();
        noisy.apply(&mut zeros, &mut rng);
        let var = zeros.values().iter().map(|v| f64::from(v * v)).sum::<f64>() / 10_000.0;
        assert!((var - 1.0).abs() < 0.1, "{var}");
    }

    #[test]
    fn dp_on_a_blind_sum_divides_by_the_selected() {
        let mut dp = DpFedAvg::new(1.0, 1, FitConfig::default(), 1.0, 0.0)
            .unwrap()
            .with_placement(NoisePlacement::Distributed);
        let sum = SecureSum {
            delta_sum: params(&[2.0]),
            contributors: vec![ParticipantId(1), ParticipantId(2)],
            selected: 4,
            within_clip: None,
        };
        close(
            &updated(dp.aggregate_secure(1, &params(&[0.0]), &sum).unwrap()),
            &[0.5],
        );
    }
}

/// DiLoCo's outer Nesterov step, against numbers worked by hand.
mod diloco {
    use super::*;
    use harambee_strategy::DiLoCo;

    fn diloco(h: u32, lr: f32, mu: f32) -> DiLoCo {
        DiLoCo::new(1.0, 1, FitConfig::default(), h, lr, mu).unwrap()
    }

    #[test]
    fn nesterov_outer_step_by_hand() {
        let mut s = diloco(10, 0.5, 0.9);
        let global = params(&[1.0, 2.0]);
        // Locals 0.0 and 1.0 / 1.0 and 2.0: mean (0.5, 1.5), g = global − mean = (0.5, 0.5).
        let results = [result(1, &[0.0, 1.0], 7), result(2, &[1.0, 2.0], 1)];
        // v = g = 0.5; x = 1 − 0.5·(0.5 + 0.9·0.5) = 0.525, 2 − 0.475 = 1.525.
        let x1 = updated(s.aggregate_fit(1, &global, &results, &[]).unwrap());
        close(&x1, &[0.525, 1.525]);
        // Round 2 with g = (0.1, −0.1): v = 0.9·0.5 + 0.1 = 0.55 and 0.45 − 0.1 = 0.35;
        // x = 0.525 − 0.5·(0.1 + 0.9·0.55) = 0.2275, 1.525 − 0.5·(−0.1 + 0.9·0.35) = 1.4175.
        let global = params(&x1);
        let results = [result(1, &[0.425, 1.625], 1)];
        let x2 = updated(s.aggregate_fit(2, &global, &results, &[]).unwrap());
        close(&x2, &[0.2275, 1.4175]);
    }

    #[test]
    fn asks_for_h_inner_steps_and_keeps_its_velocity_across_a_restart() {
        let mut s = diloco(50, 0.7, 0.9);
        assert_eq!(s.configure_fit(1).local_steps, 50);
        let global = params(&[1.0]);
        let out = s
            .aggregate_fit(1, &global, &[result(1, &[0.0], 1)], &[])
            .unwrap();
        let state: Vec<(String, ParamSet)> = s
            .state()
            .into_iter()
            .map(|(n, p)| (n.to_string(), p))
            .collect();
        let mut restarted = diloco(50, 0.7, 0.9);
        restarted.restore_state(state).unwrap();
        let next = params(&updated(out));
        let again = [result(1, &[0.5], 1)];
        assert_eq!(
            s.aggregate_fit(2, &next, &again, &[]),
            restarted.aggregate_fit(2, &next, &again, &[])
        );
    }

    #[test]
    fn outer_lr_one_without_momentum_is_the_mean_of_the_workers() {
        let mut s = diloco(5, 1.0, 0.0);
        let global = params(&[3.0, -1.0]);
        let results = [result(1, &[1.0, 1.0], 10), result(2, &[2.0, 4.0], 10)];
        let out = updated(s.aggregate_fit(1, &global, &results, &[]).unwrap());
        let fedavg = updated(
            FedAvg::default()
                .aggregate_fit(1, &global, &results, &[])
                .unwrap(),
        );
        close(&out, &fedavg);
    }

    #[test]
    fn parses_h_and_the_outer_settings() {
        let c: StrategyConfig = "diloco".parse().unwrap();
        assert_eq!(
            c,
            StrategyConfig::DiLoCo {
                inner_steps: 50,
                outer_lr: 0.7,
                momentum: 0.9
            }
        );
        let c: StrategyConfig = "diloco:10:1:0".parse().unwrap();
        let s = c.build(1.0, 1, FitConfig::default()).unwrap();
        assert_eq!((s.name(), s.configure_fit(1).local_steps), ("diloco", 10));
        assert!("diloco:0".parse::<StrategyConfig>().is_err());
        assert!("diloco:10:0.7:1.5".parse::<StrategyConfig>().is_err());
        assert!("diloco:x".parse::<StrategyConfig>().is_err());
    }
}
