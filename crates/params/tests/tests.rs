//! Integration tests of the params crate: arithmetic, encodings, safetensors, digest.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use harambee_params::{Encoding, Layout, ParamSet, ParamsError, weighted_mean};
use proptest::prelude::*;

fn layout() -> Layout {
    Layout::new([("fc.weight", vec![3, 2]), ("fc.bias", vec![3])]).unwrap()
}

fn set(values: Vec<f32>) -> ParamSet {
    ParamSet::from_values(layout(), values).unwrap()
}

/// Values for the test layout (9 of them), kept in a range where f32 sums stay exact enough.
fn values() -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(-100.0f32..100.0, 9)
}

mod arithmetic {
    use super::*;

    #[test]
    fn weighted_mean_matches_hand_computed_values() {
        let a = set(vec![1., 2., 3., 4., 5., 6., 7., 8., 9.]);
        let b = set(vec![9., 8., 7., 6., 5., 4., 3., 2., 1.]);
        // Weights 1 and 3: (1*a + 3*b) / 4.
        let m = weighted_mean(&[(&a, 1.0), (&b, 3.0)]).unwrap();
        assert_eq!(m.values(), &[7.0, 6.5, 6.0, 5.5, 5.0, 4.5, 4.0, 3.5, 3.0]);
    }

    #[test]
    fn weighted_mean_refuses_bad_input() {
        let a = set(vec![0.0; 9]);
        assert_eq!(weighted_mean(&[]), Err(ParamsError::Empty));
        assert_eq!(weighted_mean(&[(&a, 0.0)]), Err(ParamsError::BadWeights));
        assert_eq!(weighted_mean(&[(&a, -1.0)]), Err(ParamsError::BadWeights));
        assert_eq!(
            weighted_mean(&[(&a, f64::NAN)]),
            Err(ParamsError::BadWeights)
        );
        let other = ParamSet::from_tensors([("x", vec![9], vec![0.0; 9])]).unwrap();
        assert_eq!(
            weighted_mean(&[(&a, 1.0), (&other, 1.0)]),
            Err(ParamsError::LayoutMismatch)
        );
    }

    #[test]
    fn large_sets_take_the_parallel_path_and_agree() {
        let n = 1 << 19;
        let layout = Layout::new([("big", vec![n])]).unwrap();
        let a = ParamSet::from_values(layout.clone(), (0..n).map(|i| i as f32).collect()).unwrap();
        let b = ParamSet::from_values(layout, vec![1.0; n]).unwrap();
        let m = weighted_mean(&[(&a, 1.0), (&b, 1.0)]).unwrap();
        for (i, v) in m.values().iter().enumerate().step_by(4097) {
            assert_eq!(*v, (i as f32 + 1.0) / 2.0);
        }
    }

    #[test]
    fn clip_and_norm() {
        let mut p = set(vec![3., 4., 0., 0., 0., 0., 0., 0., 0.]);
        assert_eq!(p.l2_norm(), 5.0);
        assert_eq!(p.clip_l2(10.0), 1.0);
        assert!((p.clip_l2(1.0) - 0.2).abs() < 1e-12);
        assert!((p.l2_norm() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn check_finite_names_the_tensor() {
        let mut v = vec![0.0; 9];
        v[7] = f32::NAN;
        assert_eq!(
            set(v).check_finite(),
            Err(ParamsError::NonFinite {
                name: "fc.bias".into(),
                index: 1
            })
        );
    }

    proptest! {
        #[test]
        fn mean_of_identical_updates_is_that_update(v in values(), w in prop::collection::vec(0.1f64..10.0, 1..8)) {
            let p = set(v);
            let inputs: Vec<_> = w.iter().map(|w| (&p, *w)).collect();
            let m = weighted_mean(&inputs).unwrap();
            for (a, b) in m.values().iter().zip(p.values()) {
                prop_assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()));
            }
        }

        #[test]
        fn one_participant_fedavg_is_its_own_update(v in values(), w in 0.1f64..1e6) {
            let p = set(v);
            let m = weighted_mean(&[(&p, w)]).unwrap();
            prop_assert_eq!(m.values(), p.values());
        }

        #[test]
        fn order_does_not_matter(sets in prop::collection::vec((values(), 1.0f64..100.0), 1..6), seed in any::<u64>()) {
            let ps: Vec<(ParamSet, f64)> = sets.into_iter().map(|(v, w)| (set(v), w)).collect();
            let forward: Vec<_> = ps.iter().map(|(p, w)| (p, *w)).collect();
            let mut shuffled = forward.clone();
            // A deterministic permutation from the seed.
            let n = shuffled.len();
            for i in 0..n { shuffled.swap(i, (seed as usize).wrapping_add(i * 7) % n); }
            let a = weighted_mean(&forward).unwrap();
            let b = weighted_mean(&shuffled).unwrap();
            for (x, y) in a.values().iter().zip(b.values()) {
                prop_assert!((x - y).abs() <= 1e-3 * (1.0 + x.abs()));
            }
        }
    }
}

mod encodings {
    use super::*;

    proptest! {
        #[test]
        fn f32_round_trip_is_exact(v in values()) {
            let p = set(v);
            let bytes = Encoding::F32.encode(&p);
            prop_assert_eq!(Encoding::F32.decode(&layout(), &bytes).unwrap(), p);
        }

        #[test]
        fn f16_round_trip_is_close(v in values()) {
            let p = set(v);
            let q = Encoding::F16.decode(&layout(), &Encoding::F16.encode(&p)).unwrap();
            for (a, b) in p.values().iter().zip(q.values()) {
                prop_assert!((a - b).abs() <= 1e-3 * a.abs().max(1.0) * 100.0 / 100.0 + 0.05);
            }
        }

        /// The decoder sees untrusted bytes: it must answer with a value or an error, never panic.
        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..80)) {
            for enc in [Encoding::F32, Encoding::F16] {
                if let Ok(p) = enc.decode(&layout(), &bytes) {
                    prop_assert!(p.check_finite().is_ok());
                    prop_assert_eq!(bytes.len(), 9 * enc.bytes_per_value());
                }
            }
        }
    }

    #[test]
    fn wrong_length_and_non_finite_are_refused() {
        assert_eq!(
            Encoding::F32.decode(&layout(), &[0u8; 35]),
            Err(ParamsError::EncodedLength {
                expected: 36,
                actual: 35,
                encoding: "f32"
            })
        );
        let mut bytes = Encoding::F32.encode(&set(vec![1.0; 9]));
        bytes[0..4].copy_from_slice(&f32::INFINITY.to_le_bytes());
        assert!(matches!(
            Encoding::F32.decode(&layout(), &bytes),
            Err(ParamsError::NonFinite { .. })
        ));
    }
}

mod files_and_digests {
    use super::*;

    #[test]
    fn safetensors_round_trip_keeps_order_names_shapes_values() {
        // Names deliberately out of alphabetical order.
        let p = ParamSet::from_tensors([
            ("z.weight", vec![2, 3], vec![1., 2., 3., 4., 5., 6.]),
            ("a.bias", vec![2], vec![-1., 0.5]),
        ])
        .unwrap();
        let bytes = p.to_safetensors().unwrap();
        let q = ParamSet::from_safetensors(&bytes).unwrap();
        assert_eq!(p, q);
        assert_eq!(p.digest(), q.digest());
        let r = ParamSet::from_safetensors_with_layout(&bytes, p.layout()).unwrap();
        assert_eq!(p, r);
    }

    proptest! {
        /// Model files may be hostile: reading arbitrary bytes gives a value or an error.
        #[test]
        fn safetensors_reader_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256), header in 0u64..200) {
            let mut framed = header.to_le_bytes().to_vec();
            framed.extend_from_slice(&bytes);
            for input in [&bytes[..], &framed[..]] {
                if let Ok(p) = ParamSet::from_safetensors(input) {
                    prop_assert_eq!(ParamSet::from_safetensors(&p.to_safetensors().unwrap()).unwrap(), p);
                }
            }
        }

        #[test]
        fn safetensors_round_trips_any_values(v in values()) {
            let p = set(v);
            prop_assert_eq!(ParamSet::from_safetensors(&p.to_safetensors().unwrap()).unwrap(), p);
        }
    }

    #[test]
    fn safetensors_garbage_is_an_error() {
        assert!(ParamSet::from_safetensors(b"not a safetensors file").is_err());
        assert!(ParamSet::from_safetensors(&[]).is_err());
    }

    /// Guards the canonical form: if this value changes, every ledger ever written breaks.
    #[test]
    fn digest_is_stable_across_runs_and_platforms() {
        let p = set(vec![1., 2., 3., 4., 5., 6., 7., 8., 9.]);
        assert_eq!(
            p.digest().to_hex(), // Computed independently from the documented canonical form with Python's hashlib.
            "21cbb64ea5b16a2fef1a36200fbf58940fadd410b6d2524dcc551b33e286a7d7"
        );
    }

    #[test]
    fn digest_sees_names_shapes_and_values() {
        let p = set(vec![0.0; 9]);
        let mut q = p.clone();
        q.values_mut()[8] = -0.0;
        assert_ne!(p.digest(), q.digest(), "sign of zero must count");
        let renamed = ParamSet::from_tensors([
            ("fc.weight", vec![3, 2], vec![0.0; 6]),
            ("fc.bias2", vec![3], vec![0.0; 3]),
        ])
        .unwrap();
        assert_ne!(p.digest(), renamed.digest());
        let reshaped = ParamSet::from_tensors([
            ("fc.weight", vec![2, 3], vec![0.0; 6]),
            ("fc.bias", vec![3], vec![0.0; 3]),
        ])
        .unwrap();
        assert_ne!(p.digest(), reshaped.digest());
    }
}

mod compressed_updates {
    use super::*;
    use harambee_params::{INT8_BLOCK, UpdateCodec};

    const LOSSY: [&str; 5] = ["f16", "bf16", "int8", "topk:0.3", "topk:1"];

    fn codecs() -> Vec<UpdateCodec> {
        std::iter::once("f32")
            .chain(LOSSY)
            .map(|c| c.parse().unwrap())
            .collect()
    }

    /// A model of `n` values.
    fn model(values: Vec<f32>) -> ParamSet {
        let n = values.len();
        ParamSet::from_tensors([("w", vec![n], values)]).unwrap()
    }

    proptest! {
        /// What the encoder says the receiver decodes is what it decodes, bit for bit: the
        /// participant signs that, and the ledger's recomputation depends on it.
        #[test]
        fn the_receiver_decodes_exactly_what_the_sender_signs(
            base in prop::collection::vec(-10.0f32..10.0, 1..700),
            seed in any::<u64>(),
        ) {
            let change: Vec<f32> = base
                .iter()
                .enumerate()
                .map(|(i, _)| ((seed.wrapping_mul(i as u64 + 1) >> 40) as f32 / 1e6) - 8.0)
                .collect();
            let update = model(base.iter().zip(&change).map(|(b, c)| b + c * 0.01).collect());
            let base = model(base);
            for codec in codecs() {
                let (bytes, signed) = codec.encode(&base, &update, None).unwrap();
                prop_assert_eq!(bytes.len(), codec.encoded_len(base.len()));
                let decoded = codec.decode(&base, &bytes).unwrap();
                prop_assert_eq!(decoded.digest(), signed.digest(), "{}", codec);
            }
        }

        /// Untrusted bytes of any length and content: a decoded update or an error, never a
        /// panic, and never a non-finite value.
        #[test]
        fn decoding_untrusted_bytes_never_panics(
            bytes in prop::collection::vec(any::<u8>(), 0..120),
            n in 1usize..20,
        ) {
            let base = model(vec![0.5; n]);
            for codec in codecs() {
                if let Ok(update) = codec.decode(&base, &bytes) {
                    prop_assert!(update.check_finite().is_ok());
                    prop_assert_eq!(bytes.len(), codec.encoded_len(n));
                }
            }
        }

        /// Int8 is within half a step of each block's scale; f16 and bf16 within their
        /// precision; top-k sends exactly the largest changes and leaves the rest alone.
        #[test]
        fn each_code_is_as_close_as_it_promises(
            change in prop::collection::vec(-1.0f32..1.0, 1..600),
        ) {
            let base = model(vec![0.0; change.len()]);
            let update = model(change.clone());
            let decode = |c: &str| {
                let codec: UpdateCodec = c.parse().unwrap();
                codec.encode(&base, &update, None).unwrap().1
            };
            let int8 = decode("int8");
            for (block, got) in change.chunks(INT8_BLOCK).zip(int8.values().chunks(INT8_BLOCK)) {
                let scale = block.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 127.0;
                for (want, got) in block.iter().zip(got) {
                    prop_assert!((want - got).abs() <= scale * 0.5001 + 1e-7);
                }
            }
            for (c, relative) in [("f16", 1.0 / 1024.0), ("bf16", 1.0 / 128.0)] {
                for (want, got) in change.iter().zip(decode(c).values()) {
                    prop_assert!((want - got).abs() <= want.abs() * relative + 1e-4, "{c}");
                }
            }
            let top = decode("topk:0.3");
            let k = "topk:0.3".parse::<UpdateCodec>().unwrap().kept(change.len());
            let sent: Vec<usize> = (0..change.len()).filter(|&i| top.values()[i] != 0.0).collect();
            prop_assert!(sent.len() <= k);
            let smallest_sent = sent.iter().map(|&i| change[i].abs()).fold(f32::INFINITY, f32::min);
            for (&got, &want) in top.values().iter().zip(&change) {
                if got == 0.0 && want != 0.0 {
                    prop_assert!(want.abs() <= smallest_sent);
                } else {
                    prop_assert_eq!(got, want);
                }
            }
        }

        /// Error feedback loses nothing over time: what was sent over the rounds plus what is
        /// still held back adds up to every change that was made.
        #[test]
        fn error_feedback_carries_what_was_left_out(
            changes in prop::collection::vec(prop::collection::vec(-1.0f32..1.0, 50), 1..6),
        ) {
            for codec in ["int8", "topk:0.1"] {
                let codec: UpdateCodec = codec.parse().unwrap();
                let base = model(vec![0.0; 50]);
                let mut residual = Vec::new();
                let mut sent = [0.0f32; 50];
                let mut made = [0.0f32; 50];
                for change in &changes {
                    let (_, decoded) = codec.encode(&base, &model(change.clone()), Some(&mut residual)).unwrap();
                    sent.iter_mut().zip(decoded.values()).for_each(|(s, d)| *s += d);
                    made.iter_mut().zip(change).for_each(|(m, c)| *m += c);
                }
                for i in 0..50 {
                    prop_assert!((sent[i] + residual[i] - made[i]).abs() < 1e-4, "{codec}");
                }
            }
        }
    }

    #[test]
    fn sizes_names_and_malformed_codes() {
        let int8: UpdateCodec = "int8".parse().unwrap();
        assert_eq!(int8.encoded_len(199_210), 779 * 4 + 199_210);
        let top: UpdateCodec = "topk:0.01".parse().unwrap();
        assert_eq!(top.to_string(), "topk:0.01");
        assert_eq!(top.encoded_len(199_210), 1993 * 8);
        for bad in ["topk:0", "topk:1.5", "topk:x", "int4", "topk:1e-9"] {
            assert!(bad.parse::<UpdateCodec>().is_err(), "{bad}");
        }
        let base = model(vec![0.0; 4]);
        // Top-k indices out of order or out of range, a negative or infinite int8 scale.
        let top: UpdateCodec = "topk:0.5".parse().unwrap();
        let pairs = |i: [u32; 2]| {
            let mut b: Vec<u8> = i.iter().flat_map(|i| i.to_le_bytes()).collect();
            b.extend([1.0f32, 2.0].iter().flat_map(|v| v.to_le_bytes()));
            b
        };
        assert!(top.decode(&base, &pairs([1, 3])).is_ok());
        for wrong in [[3, 1], [1, 1], [1, 4]] {
            assert!(matches!(
                top.decode(&base, &pairs(wrong)),
                Err(ParamsError::BadCode(_))
            ));
        }
        for scale in [-1.0f32, f32::INFINITY, f32::NAN] {
            let mut bytes = scale.to_le_bytes().to_vec();
            bytes.extend([1u8; 4]);
            assert!(int8.decode(&base, &bytes).is_err(), "{scale}");
        }
        // A change that overflows the base is refused, not turned into infinity.
        let big = model(vec![f32::MAX; 4]);
        let mut bytes: Vec<u8> = [0u32, 1].iter().flat_map(|i| i.to_le_bytes()).collect();
        bytes.extend([f32::MAX, 1.0].iter().flat_map(|v| v.to_le_bytes()));
        assert!(top.decode(&big, &bytes).is_err());
    }
}
