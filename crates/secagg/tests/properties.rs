//! Property tests: Shamir sharing, mask cancellation, and the decoder of untrusted shares.
#![allow(clippy::unwrap_used)]

mod common;

use common::keys_and_shares;
use harambee_secagg::shamir::{self, MODULUS, ShamirError, Share};
use harambee_secagg::{Config, FixedPoint, SharePair};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha20Rng;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_threshold_of_shares_recovers_the_secret(
        secret in any::<[u8; 32]>(),
        holders in 1usize..40,
        t_frac in 0.0f64..1.0,
        seed in any::<u64>(),
    ) {
        let threshold = 1 + ((holders - 1) as f64 * t_frac) as usize;
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let points: Vec<u64> = (1..=holders as u64).map(|p| p * 7919).collect();
        let mut shares = shamir::split(&secret, threshold, &points, &mut rng);
        shares.shuffle(&mut rng);
        prop_assert_eq!(shamir::combine(&shares[..threshold], threshold).unwrap(), secret);
        // All the shares together are consistent and give the same secret.
        prop_assert_eq!(shamir::combine(&shares, threshold).unwrap(), secret);
        if threshold > 1 {
            let few = &shares[..threshold - 1];
            let refused = matches!(shamir::combine(few, threshold), Err(ShamirError::TooFew { .. }));
            prop_assert!(refused);
            // Treating fewer shares as enough interpolates a lower-degree polynomial: it does
            // not land on the secret (except with probability about 2^-61 per limb).
            let guess = shamir::combine(few, threshold - 1);
            prop_assert!(guess.map(|g| g != secret).unwrap_or(true));
        }
    }

    #[test]
    fn below_the_threshold_shares_say_nothing_about_the_secret(
        a in any::<[u8; 32]>(),
        b in any::<[u8; 32]>(),
        seed in any::<u64>(),
    ) {
        // With threshold 3, two shares of secret `a` are also two shares of secret `b` under
        // some polynomial: extend them with a third share chosen for `b`, and `b` comes out.
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let shares_a = shamir::split(&a, 3, &[1, 2, 3], &mut rng);
        let shares_b = shamir::split(&b, 2, &[9, 10], &mut rng);
        // The quadratic through (0, b) and a's first two shares, evaluated at 3, is a third
        // share that makes those two shares recover b.
        let forged = interpolate_at(&[zero_share(&b, &shares_b), shares_a[0], shares_a[1]], 3);
        let recovered = shamir::combine(&[shares_a[0], shares_a[1], forged], 3).unwrap();
        prop_assert_eq!(recovered, b);
    }

    #[test]
    fn masks_cancel_whoever_drops_before_masking(
        n in 3u32..14,
        dim in 1usize..40,
        drop_mask in any::<u16>(),
        seed in any::<u64>(),
    ) {
        let mut config = Config::recommended([seed as u8; 32], n, dim);
        config.min_survivors = config.threshold;
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let inputs: Vec<Vec<u32>> = (0..n).map(|_| (0..dim).map(|_| rand::Rng::random(&mut rng)).collect()).collect();
        let (mut clients, mut server, inboxes) = keys_and_shares(&config, &mut rng);
        // Drop whoever the bits say, but never so many that the round must fail.
        let most = (n - config.min_survivors) as usize;
        let dropped: Vec<u32> = (0..n).filter(|i| drop_mask >> i & 1 == 1).take(most).collect();
        for c in clients.iter_mut().filter(|c| !dropped.contains(&c.id())) {
            server.receive_masked(c.mask_input(&inputs[c.id() as usize], &inboxes[&c.id()]).unwrap()).unwrap();
        }
        let survivors = server.close_masked().unwrap();
        for c in clients.iter_mut().filter(|c| !dropped.contains(&c.id())) {
            server.receive_unmasking(c.unmask(&survivors).unwrap()).unwrap();
        }
        let sum = server.finish().unwrap();
        let mut expected = vec![0u32; dim];
        for &i in &sum.contributors {
            expected.iter_mut().zip(&inputs[i as usize]).for_each(|(s, v)| *s = s.wrapping_add(*v));
        }
        prop_assert_eq!(sum.values, expected);
    }

    #[test]
    fn share_pairs_decode_or_refuse_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(pair) = SharePair::from_bytes(&bytes, 0) {
            prop_assert_eq!(pair.to_bytes(), bytes);
        }
    }

    #[test]
    fn share_pairs_round_trip(owner in any::<u32>(), holder in any::<u32>(), ys in any::<[u64; 12]>()) {
        let field = |i: usize| ys[i] % MODULUS;
        let pair = SharePair {
            owner,
            holder,
            key: Share { x: field(0).max(1), y: std::array::from_fn(|l| field(1 + l)) },
            seed: Share { x: field(6).max(1), y: std::array::from_fn(|l| field(7 + l)) },
        };
        prop_assert_eq!(SharePair::from_bytes(&pair.to_bytes(), 0).unwrap(), pair);
    }

    #[test]
    fn fixed_point_sums_within_one_unit_per_summand(
        values in proptest::collection::vec(proptest::collection::vec(-2.0f32..2.0, 5), 1..30),
    ) {
        let fp = FixedPoint { range: 2.0, max_summands: 30 };
        let mut sum = vec![0u32; 5];
        for v in &values {
            let (w, _) = fp.encode(v);
            sum.iter_mut().zip(w).for_each(|(s, w)| *s = s.wrapping_add(w));
        }
        let decoded = fp.decode(&sum);
        let unit = (1.0 / fp.scale()) as f32;
        for (d, k) in decoded.iter().zip(0..5) {
            let exact: f32 = values.iter().map(|v| v[k]).sum();
            prop_assert!((d - exact).abs() <= unit * values.len() as f32 + 1e-4, "{} vs {}", d, exact);
        }
    }
}

/// A "share" at point 0 holding `secret`'s limbs, built by reading them off a real sharing
/// (combine of a degree-1 sharing gives the secret; its limbs are what sits at 0).
fn zero_share(secret: &[u8; 32], line: &[Share]) -> Share {
    let at_zero = interpolate_at(line, 0);
    debug_assert_eq!(shamir::combine(line, 2).unwrap(), *secret);
    at_zero
}

/// Lagrange interpolation through `points` evaluated at `x`, done independently of the crate
/// with u128 arithmetic.
fn interpolate_at(points: &[Share], x: u64) -> Share {
    let m = u128::from(MODULUS);
    let pow = |mut b: u128, mut e: u128| {
        let mut r = 1u128;
        while e > 0 {
            if e & 1 == 1 {
                r = r * b % m;
            }
            b = b * b % m;
            e >>= 1;
        }
        r
    };
    let sub = |a: u64, b: u64| (u128::from(a) + m - u128::from(b)) % m;
    let mut y = [0u64; 5];
    for (i, pi) in points.iter().enumerate() {
        let mut num = 1u128;
        let mut den = 1u128;
        for (j, pj) in points.iter().enumerate() {
            if i != j {
                num = num * sub(x, pj.x) % m;
                den = den * sub(pi.x, pj.x) % m;
            }
        }
        let basis = num * pow(den, m - 2) % m;
        for (acc, &v) in y.iter_mut().zip(&pi.y) {
            *acc = ((u128::from(*acc) + basis * u128::from(v)) % m) as u64;
        }
    }
    Share { x, y }
}
