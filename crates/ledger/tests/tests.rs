//! The ledger's Merkle tree against an independent implementation, its proofs under random
//! trees, and its audit against tampering.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use harambee_identity::{Identity, TrainingRecipe, UpdateStatement};
use harambee_ledger::merkle::{self, Hash};
use harambee_ledger::{Entry, Ledger, audit};
use harambee_params::Digest;
use proptest::prelude::*;

fn leaves(n: usize) -> Vec<Hash> {
    (0..n)
        .map(|i| merkle::leaf_hash(format!("leaf-{i}").as_bytes()))
        .collect()
}

fn hexes(v: &[Hash]) -> Vec<String> {
    v.iter().map(hex::encode).collect()
}

#[test]
fn roots_and_proofs_agree_with_an_independent_python_implementation_for_every_size_to_300() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/rfc6962.py");
    let out = Command::new("python3")
        .args([script, "300"])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut sizes = 0;
    for line in text.lines() {
        let expected: serde_json::Value = serde_json::from_str(line).unwrap();
        let n = expected["n"].as_u64().unwrap() as usize;
        let l = leaves(n);
        let root = merkle::root(&l);
        assert_eq!(hex::encode(root), expected["root"], "root of {n}");
        for (m, path) in expected["paths"].as_object().unwrap() {
            let m: usize = m.parse().unwrap();
            let ours = merkle::inclusion_proof(&l, m);
            assert_eq!(serde_json::json!(hexes(&ours)), *path, "path of {m} in {n}");
            assert!(merkle::verify_inclusion(
                &l[m], m as u64, n as u64, &ours, &root
            ));
        }
        for (m, proof) in expected["consistency"].as_object().unwrap() {
            let m: usize = m.parse().unwrap();
            let ours = merkle::consistency_proof(&l, m);
            assert_eq!(
                serde_json::json!(hexes(&ours)),
                *proof,
                "consistency {m} to {n}"
            );
            assert!(
                merkle::verify_consistency(
                    m as u64,
                    n as u64,
                    &merkle::root(&l[..m]),
                    &root,
                    &ours
                ),
                "{m} to {n}"
            );
        }
        sizes += 1;
    }
    assert_eq!(sizes, 300);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn every_inclusion_proof_verifies_and_a_wrong_one_does_not(n in 1usize..200, pick in any::<prop::sample::Index>()) {
        let l = leaves(n);
        let root = merkle::root(&l);
        let m = pick.index(n);
        let proof = merkle::inclusion_proof(&l, m);
        prop_assert!(merkle::verify_inclusion(&l[m], m as u64, n as u64, &proof, &root));
        let other = merkle::leaf_hash(b"not in the tree");
        prop_assert!(!merkle::verify_inclusion(&other, m as u64, n as u64, &proof, &root));
        if n > 1 {
            prop_assert!(!merkle::verify_inclusion(&l[m], ((m + 1) % n) as u64, n as u64, &proof, &root));
        }
    }

    #[test]
    fn every_consistency_proof_verifies_and_a_rewritten_history_does_not(n in 2usize..200, pick in any::<prop::sample::Index>()) {
        let l = leaves(n);
        let m = 1 + pick.index(n - 1);
        let proof = merkle::consistency_proof(&l, m);
        let (old, new) = (merkle::root(&l[..m]), merkle::root(&l));
        prop_assert!(merkle::verify_consistency(m as u64, n as u64, &old, &new, &proof));
        let mut rewritten = l.clone();
        rewritten[pick.index(m)] = merkle::leaf_hash(b"rewritten");
        prop_assert!(!merkle::verify_consistency(m as u64, n as u64, &merkle::root(&rewritten[..m]), &new, &proof));
    }
}

/// A charter for these tests: fedavg, a quorum of 2, five rounds, anyone with the invite.
fn test_charter(members: Vec<harambee_charter::Member>) -> harambee_charter::Charter {
    harambee_charter::Charter {
        name: "test".into(),
        task: "digits".into(),
        data_licence: "CC-BY-4.0".into(),
        model_licence: "Apache-2.0".into(),
        enrolment: harambee_charter::Enrolment::Invite,
        strategies: vec!["fedavg".into()],
        min_quorum: 2,
        max_deadline_s: 60.0,
        max_rounds: 5,
        amendment_threshold: 1,
        privacy: None,
        secure_aggregation: None,
        mode: Default::default(),
        max_samples: None,
        base_model: None,
        update_encoding: None,
        buffered: None,
        download_encoding: None,
        verification: None,
        members,
    }
}

/// The genesis entry of federation `fed`, under `charter`, run by `coordinator`.
fn genesis(charter: &harambee_charter::Charter, coordinator: &Identity) -> Entry {
    Entry::Genesis {
        federation_id: "fed".into(),
        name: charter.name.clone(),
        config_sha256: "00".repeat(32),
        charter: String::from_utf8(charter.canonical_bytes()).unwrap(),
        coordinator_key: coordinator.public().to_string(),
    }
}

/// A small, valid ledger: genesis, two enrolments, one round with two signed updates, a
/// release, and a signed head.
fn small_ledger() -> (Ledger, Vec<harambee_ledger::TreeHead>, Identity) {
    small_ledger_under(&test_charter(Vec::new()))
}

/// [`small_ledger`] under another charter (each update claims 10 samples).
fn small_ledger_under(
    charter: &harambee_charter::Charter,
) -> (Ledger, Vec<harambee_ledger::TreeHead>, Identity) {
    let coordinator = Identity::generate().unwrap();
    let members = [Identity::generate().unwrap(), Identity::generate().unwrap()];
    let mut ledger = Ledger::default();
    ledger.append(&genesis(charter, &coordinator));
    for (i, m) in members.iter().enumerate() {
        ledger.append(&Entry::Enrolment {
            participant: i as u64,
            public_key: m.public().to_string(),
            name: format!("m{i}"),
        });
    }
    let base = Digest::of_bytes(b"base");
    ledger.append(&Entry::RoundOpen {
        round: 1,
        attempt: 0,
        selected: vec![0, 1],
        base: base.to_hex(),
        epochs: 1,
        batch_size: 10,
        learning_rate: 0.1,
        proximal_mu: 0.0,
        local_steps: 0,
    });
    let mut inputs = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let update = Digest::of_bytes(format!("update {i}").as_bytes());
        let signed = m.sign(UpdateStatement {
            federation: "fed".into(),
            round: 1,
            base,
            update,
            num_samples: 10,
            recipe: None,
        });
        ledger.append(&Entry::UpdateCommitment {
            round: 1,
            attempt: 0,
            participant: i as u64,
            update_digest: update.to_hex(),
            num_samples: 10,
            signature: hex::encode(signed.signature),
            recipe: None,
        });
        inputs.push(update.to_hex());
    }
    let output = Digest::of_bytes(b"output").to_hex();
    ledger.append(&Entry::RoundResult {
        round: 1,
        strategy: "fedavg".into(),
        inputs,
        output: output.clone(),
        epsilon: None,
    });
    ledger.append(&Entry::Release {
        rounds: 1,
        model_digest: output,
    });
    let head = ledger.sign_head(&coordinator, 1);
    (ledger, vec![head], coordinator)
}

// Before, a charter could not bound the sample counts, so no auditor could tell that one
// member had outweighed the federation by a number alone.
#[test]
fn a_commitment_claiming_more_samples_than_the_charter_allows_is_named() {
    for (max, clean) in [(10, true), (9, false)] {
        let charter = harambee_charter::Charter {
            max_samples: Some(max),
            ..test_charter(Vec::new())
        };
        let (ledger, heads, coordinator) = small_ledger_under(&charter);
        let report = audit(ledger.entries(), &heads, Some(&coordinator.public()));
        let named = report
            .findings
            .iter()
            .any(|f| f.problem.contains("beyond the charter's max_samples of 9"));
        assert_eq!(report.findings.is_empty(), clean, "{:?}", report.findings);
        assert_eq!(named, !clean, "{:?}", report.findings);
    }
}

#[test]
fn a_valid_ledger_audits_clean() {
    let (ledger, heads, coordinator) = small_ledger();
    let report = audit(ledger.entries(), &heads, Some(&coordinator.public()));
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    assert_eq!(report.signatures_verified, 2);
    assert_eq!(report.rounds.len(), 1);
}

#[test]
fn any_single_byte_changed_in_any_entry_or_head_is_caught() {
    let (ledger, heads, coordinator) = small_ledger();
    let key = coordinator.public();
    for i in 0..ledger.entries().len() {
        for at in 0..ledger.entries()[i].len() {
            let mut entries = ledger.entries().to_vec();
            entries[i][at] ^= 0x01;
            let report = audit(&entries, &heads, Some(&key));
            assert!(
                !report.findings.is_empty(),
                "entry {i} byte {at} changed unnoticed"
            );
        }
    }
    let head = &heads[0];
    for at in 0..32 {
        let mut h = head.clone();
        h.root[at] ^= 1;
        assert!(
            !audit(ledger.entries(), &[h], Some(&key))
                .findings
                .is_empty()
        );
    }
    for at in 0..64 {
        let mut h = head.clone();
        h.signature[at] ^= 1;
        assert!(
            !audit(ledger.entries(), &[h], Some(&key))
                .findings
                .is_empty()
        );
    }
    let mut h = head.clone();
    h.size -= 1;
    assert!(
        !audit(ledger.entries(), &[h], Some(&key))
            .findings
            .is_empty()
    );
}

#[test]
fn a_dropped_entry_and_a_forged_signature_are_named() {
    let (ledger, heads, coordinator) = small_ledger();
    let key = coordinator.public();
    let mut dropped = ledger.entries().to_vec();
    dropped.remove(4);
    let report = audit(&dropped, &heads, Some(&key));
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.problem.contains("dropped")),
        "{:?}",
        report.findings
    );

    // Re-signed by the coordinator, a forged update signature is still caught, with its round.
    let mut forged = ledger.clone();
    let entries: Vec<Vec<u8>> = forged.entries().to_vec();
    let mut entry = Entry::parse(&entries[4]).unwrap();
    if let Entry::UpdateCommitment { signature, .. } = &mut entry {
        *signature = "ab".repeat(64);
    }
    let mut rebuilt = entries.clone();
    rebuilt[4] = entry.to_bytes();
    forged = Ledger::from_entries(rebuilt);
    let head = forged.sign_head(&coordinator, 2);
    let report = audit(forged.entries(), &[head], Some(&key));
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.round == Some(1) && f.problem.contains("signature does not verify")),
        "{:?}",
        report.findings
    );
    // Signed by someone else, the tree head itself fails.
    let stranger = Identity::generate().unwrap();
    let report = audit(
        ledger.entries(),
        &[ledger.sign_head(&stranger, 3)],
        Some(&key),
    );
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.problem.contains("signature"))
    );
}

#[test]
fn rounds_beyond_the_charters_privacy_budget_are_named() {
    let coordinator = Identity::generate().unwrap();
    let charter = harambee_charter::Charter {
        name: "dp".into(),
        strategies: vec!["dp-fedavg".into()],
        min_quorum: 1,
        privacy: Some(harambee_charter::PrivacyBudget {
            epsilon: 1.0,
            delta: 1e-5,
        }),
        ..test_charter(Vec::new())
    };
    let result = |round: u64, epsilon: Option<f64>| {
        let mut ledger = Ledger::default();
        ledger.append(&genesis(&charter, &coordinator));
        let base = Digest::of_bytes(b"base").to_hex();
        ledger.append(&Entry::RoundOpen {
            round,
            attempt: 0,
            selected: vec![],
            base,
            epochs: 1,
            batch_size: 1,
            learning_rate: 0.1,
            proximal_mu: 0.0,
            local_steps: 0,
        });
        ledger.append(&Entry::RoundResult {
            round,
            strategy: "dp-fedavg(clip=1, noise_multiplier=1)".into(),
            inputs: vec![],
            output: "11".repeat(32),
            epsilon,
        });
        let head = ledger.sign_head(&coordinator, 1);
        audit(ledger.entries(), &[head], Some(&coordinator.public()))
    };
    let over = result(1, Some(2.0));
    assert!(
        over.findings
            .iter()
            .any(|f| f.round == Some(1) && f.problem.contains("beyond the charter's budget")),
        "{:?}",
        over.findings
    );
    let missing = result(1, None);
    assert!(
        missing
            .findings
            .iter()
            .any(|f| f.problem.contains("records no ε")),
        "{:?}",
        missing.findings
    );
    let within = result(1, Some(0.5));
    assert!(
        !within.findings.iter().any(|f| f.problem.contains('ε')),
        "{:?}",
        within.findings
    );
}

#[test]
fn a_community_round_without_inner_steps_is_named() {
    let coordinator = Identity::generate().unwrap();
    let charter = harambee_charter::Charter {
        name: "community".into(),
        task: "char-transformer".into(),
        data_licence: "public domain".into(),
        strategies: vec!["diloco".into()],
        min_quorum: 1,
        mode: harambee_charter::Mode::Community,
        ..test_charter(Vec::new())
    };
    let findings = |local_steps: u32| {
        let mut ledger = Ledger::default();
        ledger.append(&genesis(&charter, &coordinator));
        ledger.append(&Entry::RoundOpen {
            round: 1,
            attempt: 0,
            selected: vec![],
            base: Digest::of_bytes(b"base").to_hex(),
            epochs: 1,
            batch_size: 16,
            learning_rate: 3e-3,
            proximal_mu: 0.0,
            local_steps,
        });
        let head = ledger.sign_head(&coordinator, 1);
        audit(ledger.entries(), &[head], Some(&coordinator.public()))
            .findings
            .into_iter()
            .filter(|f| f.problem.contains("inner steps"))
            .count()
    };
    assert_eq!(findings(0), 1);
    assert_eq!(findings(50), 0);
}

/// A ledger of federation `fed` whose charter has one steward, then one amendment of it
/// signed by that steward for `signed_for`, and a signed head.
fn amended_ledger(signed_for: &str) -> (Ledger, Vec<harambee_ledger::TreeHead>, Identity) {
    let coordinator = Identity::generate().unwrap();
    let steward = Identity::generate().unwrap();
    let charter = test_charter(vec![harambee_charter::Member {
        name: "steward".into(),
        public_key: steward.public().to_string(),
        role: harambee_charter::Role::Steward,
    }]);
    let mut proposed = charter.clone();
    proposed.max_rounds = 10;
    let mut ledger = Ledger::default();
    ledger.append(&genesis(&charter, &coordinator));
    ledger.append(&Entry::Amendment {
        amends: charter.hash(),
        charter: String::from_utf8(proposed.canonical_bytes()).unwrap(),
        signatures: vec![(
            steward.public().to_string(),
            harambee_charter::Amendment::sign(&steward, signed_for, &charter, &proposed),
        )],
    });
    let head = ledger.sign_head(&coordinator, 1);
    (ledger, vec![head], coordinator)
}

// Before, the auditor accepted a steward's amendment signature made for another federation.
#[test]
fn an_amendment_signed_for_another_federation_is_named() {
    let (ledger, heads, coordinator) = amended_ledger("fed");
    let report = audit(ledger.entries(), &heads, Some(&coordinator.public()));
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    assert_eq!(report.amendments, 1);

    let (ledger, heads, coordinator) = amended_ledger("another federation");
    let report = audit(ledger.entries(), &heads, Some(&coordinator.public()));
    assert_eq!(report.amendments, 0);
    assert!(
        report.findings.iter().any(
            |f| f.entry == Some(1) && f.problem.contains("amendment that does not take effect")
        ),
        "{:?}",
        report.findings
    );
}

/// What a participant keeps of the ledger: tree heads and the coordinator's promises.
mod witnesses {
    use super::*;
    use harambee_ledger::{UpdatePromise, Witness, check_witness};

    fn ledger_of(rounds: u64) -> Ledger {
        let mut ledger = Ledger::default();
        for round in 1..=rounds {
            ledger.append(&Entry::UpdateCommitment {
                round,
                attempt: 0,
                participant: 3,
                update_digest: "ab".repeat(32),
                num_samples: 10,
                signature: "00".repeat(64),
                recipe: None,
            });
        }
        ledger
    }

    fn promise(coordinator: &Identity, round: u64) -> UpdatePromise {
        UpdatePromise {
            federation: "fed".into(),
            round,
            attempt: 0,
            participant: 3,
            update_digest: "ab".repeat(32),
            timestamp_ms: 7,
            signature: String::new(),
        }
        .signed(coordinator)
    }

    proptest! {
        // Witness files are untrusted text: any line parses or is refused, never a panic.
        #[test]
        fn any_text_parses_as_a_witness_or_is_refused(text in ".{0,300}") {
            let _ = Witness::parse_line(&text);
        }

        #[test]
        fn heads_and_promises_round_trip_through_their_lines(size in 1u64..20, ts in any::<u64>()) {
            let coordinator = Identity::generate().unwrap();
            let ledger = ledger_of(size);
            for w in [Witness::Head(ledger.sign_head(&coordinator, ts)), Witness::Promise(promise(&coordinator, 1))] {
                prop_assert_eq!(Witness::parse_line(&w.to_line()).unwrap(), w);
            }
        }
    }

    // What the witnesses exist for: a ledger that only grew agrees with every head signed on
    // the way; one rewritten or cut short does not, and a promised update must be there.
    #[test]
    fn a_grown_ledger_agrees_and_a_rewritten_or_truncated_one_is_named() {
        let coordinator = Identity::generate().unwrap();
        let key = coordinator.public();
        let early = Witness::Head(ledger_of(2).sign_head(&coordinator, 1));
        let late = Witness::Head(ledger_of(4).sign_head(&coordinator, 2));
        let grown = ledger_of(5);
        assert!(check_witness(&grown, &early, &key).is_ok());
        assert!(check_witness(&grown, &late, &key).is_ok());
        let truncated = ledger_of(3);
        let err = check_witness(&truncated, &late, &key).unwrap_err();
        assert!(err.contains("truncated"), "{err}");
        let mut rewritten = Ledger::default();
        rewritten.append(&Entry::Release {
            rounds: 1,
            model_digest: "00".repeat(32),
        });
        rewritten.append(&Entry::Release {
            rounds: 2,
            model_digest: "00".repeat(32),
        });
        let err = check_witness(&rewritten, &early, &key).unwrap_err();
        assert!(err.contains("rewritten"), "{err}");
        assert!(check_witness(&grown, &Witness::Promise(promise(&coordinator, 5)), &key).is_ok());
        let err = check_witness(
            &truncated,
            &Witness::Promise(promise(&coordinator, 5)),
            &key,
        )
        .unwrap_err();
        assert!(err.contains("no such commitment"), "{err}");
        // Signed by someone else: not the coordinator's word at all.
        let stranger = Identity::generate().unwrap();
        let forged = Witness::Head(ledger_of(2).sign_head(&stranger, 1));
        assert!(check_witness(&grown, &forged, &key).is_err());
        assert!(check_witness(&grown, &Witness::Promise(promise(&stranger, 1)), &key).is_err());
    }
}

/// A buffered federation's ledger: genesis under a charter with `rule`, two enrolments and
/// two versions of two results each; member 1's first result arrives one version stale.
fn buffered_ledger(
    rule: harambee_charter::BufferedRule,
    edit: impl Fn(u64, &mut Vec<harambee_ledger::BufferedInput>),
) -> (Ledger, Vec<harambee_ledger::TreeHead>, Identity) {
    let charter = harambee_charter::Charter {
        buffered: Some(rule),
        ..test_charter(Vec::new())
    };
    let coordinator = Identity::generate().unwrap();
    let members = [Identity::generate().unwrap(), Identity::generate().unwrap()];
    let mut ledger = Ledger::default();
    ledger.append(&genesis(&charter, &coordinator));
    for (i, m) in members.iter().enumerate() {
        ledger.append(&Entry::Enrolment {
            participant: i as u64,
            public_key: m.public().to_string(),
            name: format!("m{i}"),
        });
    }
    let versions: Vec<Digest> = (0..3)
        .map(|v| Digest::of_bytes(format!("version {v}").as_bytes()))
        .collect();
    // (version, [(participant, base version)]).
    let steps = [(1u64, [(0u64, 0u64), (0, 0)]), (2, [(1, 0), (0, 1)])];
    for (version, results) in steps {
        let mut inputs = Vec::new();
        for (k, (p, base_version)) in results.into_iter().enumerate() {
            let update = Digest::of_bytes(format!("v{version} r{k}").as_bytes());
            let signed = members[p as usize].sign(UpdateStatement {
                federation: "fed".into(),
                round: base_version + 1,
                base: versions[base_version as usize],
                update,
                num_samples: 10,
                recipe: None,
            });
            inputs.push(harambee_ledger::BufferedInput {
                participant: p,
                base_version,
                attempt: k as u32 + 1,
                staleness: version - 1 - base_version,
                update_digest: update.to_hex(),
                num_samples: 10,
                signature: hex::encode(signed.signature),
            });
        }
        edit(version, &mut inputs);
        ledger.append(&Entry::BufferedStep {
            version,
            base: versions[version as usize - 1].to_hex(),
            inputs,
            output: versions[version as usize].to_hex(),
            epsilon: None,
        });
    }
    ledger.append(&Entry::Release {
        rounds: 2,
        model_digest: versions[2].to_hex(),
    });
    let head = ledger.sign_head(&coordinator, 1);
    (ledger, vec![head], coordinator)
}

#[test]
fn buffered_steps_audit_clean_and_each_broken_rule_is_named() {
    let rule = harambee_charter::BufferedRule {
        buffer: 2,
        concurrency: 3,
        server_lr: 1.0,
        max_staleness: 1,
    };
    let findings = |rule, edit: &dyn Fn(u64, &mut Vec<harambee_ledger::BufferedInput>)| {
        let (ledger, heads, coordinator) = buffered_ledger(rule, edit);
        let report = audit(ledger.entries(), &heads, Some(&coordinator.public()));
        (
            report.findings,
            report.steps.len(),
            report.signatures_verified,
        )
    };
    let (clean, steps, signed) = findings(rule, &|_, _| {});
    assert!(clean.is_empty(), "{clean:?}");
    assert_eq!((steps, signed), (2, 4));
    let named = |rule, edit: &dyn Fn(u64, &mut Vec<harambee_ledger::BufferedInput>), words| {
        let (found, ..) = findings(rule, edit);
        assert!(
            found.iter().any(|f| f.problem.contains(words)),
            "expected {words:?} in {found:?}"
        );
    };
    // Staleness that does not follow from the versions (a stale result passed off as fresh).
    named(
        rule,
        &|v, i| {
            if v == 2 {
                i[0].staleness = 0
            }
        },
        "does not follow",
    );
    // A result staler than the charter allows.
    let strict = harambee_charter::BufferedRule {
        max_staleness: 0,
        ..rule
    };
    named(strict, &|_, _| {}, "beyond the charter's 0");
    // A signature over another base version than the one recorded.
    named(
        rule,
        &|v, i| {
            if v == 2 {
                i[1].base_version = 0;
                i[1].staleness = 1
            }
        },
        "signature does not verify",
    );
    // Fewer results than the buffer.
    named(
        rule,
        &|v, i| {
            if v == 1 {
                i.pop();
            }
        },
        "the charter's buffer is 2",
    );
    // One result counted twice.
    named(
        rule,
        &|v, i| {
            if v == 1 {
                i[1] = i[0].clone()
            }
        },
        "applied before",
    );
    // A member that never enrolled.
    named(
        rule,
        &|v, i| {
            if v == 1 {
                i[0].participant = 9
            }
        },
        "never enrolled",
    );
}

#[test]
fn a_buffered_step_under_a_synchronous_charter_is_named() {
    let rule = harambee_charter::BufferedRule {
        buffer: 2,
        concurrency: 3,
        server_lr: 1.0,
        max_staleness: 4,
    };
    let (ledger, _, coordinator) = buffered_ledger(rule, |_, _| {});
    // The same entries after a synchronous genesis.
    let mut entries = ledger.entries().to_vec();
    entries[0] = genesis(&test_charter(Vec::new()), &coordinator).to_bytes();
    let rebuilt = Ledger::from_entries(entries);
    let head = rebuilt.sign_head(&coordinator, 1);
    let report = audit(rebuilt.entries(), &[head], Some(&coordinator.public()));
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.problem.contains("charter sets synchronous rounds")),
        "{:?}",
        report.findings
    );
}

/// How [`verified_ledger`] is broken, if at all.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Tamper {
    None,
    /// Member 1's update carries no recipe.
    NoRecipe,
    /// Member 1 signed a recipe for member 0's shard.
    WrongShard,
    /// The fraud entry's claimed update is not what member 2 signed.
    ForgedEvidence,
    /// The fraud entry accuses member 2 of sending exactly the replay.
    NoMismatch,
    /// A round 2 in which member 2, removed for fraud, still has an update.
    UpdateAfterFraud,
}

/// A verifiable community federation of three workers: in round 1 member 2's update did not
/// replay (a fraud entry), and members 0 and 1 made the round with recipe-signed updates.
fn verified_ledger(tamper: Tamper) -> (Ledger, Vec<harambee_ledger::TreeHead>, Identity) {
    let charter = harambee_charter::Charter {
        strategies: vec!["diloco".into()],
        mode: harambee_charter::Mode::Community,
        verification: Some(harambee_charter::VerificationRule {
            replay_fraction: 0.5,
        }),
        ..test_charter(Vec::new())
    };
    let coordinator = Identity::generate().unwrap();
    let members: Vec<Identity> = (0..3).map(|_| Identity::generate().unwrap()).collect();
    let mut ledger = Ledger::default();
    ledger.append(&genesis(&charter, &coordinator));
    for (i, m) in members.iter().enumerate() {
        ledger.append(&Entry::Enrolment {
            participant: i as u64,
            public_key: m.public().to_string(),
            name: format!("w{i}"),
        });
    }
    let base = Digest::of_bytes(b"base");
    let recipe = |shard_index: u32| TrainingRecipe {
        shard_index,
        shard_count: 3,
        seed: 7 + u64::from(shard_index),
        epochs: 1,
        local_steps: 10,
        batch_size: 10,
        learning_rate: 0.05,
        proximal_mu: 0.0,
    };
    let sign = |i: usize, round: u64, update: Digest, recipe: Option<TrainingRecipe>| {
        hex::encode(
            members[i]
                .sign(UpdateStatement {
                    federation: "fed".into(),
                    round,
                    base,
                    update,
                    num_samples: 10,
                    recipe,
                })
                .signature,
        )
    };
    let lazy = Digest::of_bytes(b"lazy");
    let replayed = match tamper {
        Tamper::NoMismatch => lazy,
        _ => Digest::of_bytes(b"replayed"),
    };
    ledger.append(&Entry::Fraud {
        round: 1,
        attempt: 0,
        participant: 2,
        base: base.to_hex(),
        recipe: recipe(2),
        claimed: match tamper {
            Tamper::ForgedEvidence => Digest::of_bytes(b"other"),
            _ => lazy,
        }
        .to_hex(),
        replayed: replayed.to_hex(),
        num_samples: 10,
        signature: sign(2, 1, lazy, Some(recipe(2))),
    });
    let round_open = |round: u64| Entry::RoundOpen {
        round,
        attempt: 0,
        selected: vec![0, 1, 2],
        base: base.to_hex(),
        epochs: 1,
        batch_size: 10,
        learning_rate: 0.05,
        proximal_mu: 0.0,
        local_steps: 10,
    };
    ledger.append(&round_open(1));
    let mut inputs = Vec::new();
    for i in 0..2 {
        let update = Digest::of_bytes(format!("update {i}").as_bytes());
        let signed = match (tamper, i) {
            (Tamper::NoRecipe, 1) => None,
            (Tamper::WrongShard, 1) => Some(recipe(0)),
            _ => Some(recipe(i as u32)),
        };
        ledger.append(&Entry::UpdateCommitment {
            round: 1,
            attempt: 0,
            participant: i as u64,
            update_digest: update.to_hex(),
            num_samples: 10,
            signature: sign(i, 1, update, signed),
            recipe: signed,
        });
        inputs.push(update.to_hex());
    }
    ledger.append(&Entry::RoundResult {
        round: 1,
        strategy: "diloco".into(),
        inputs,
        output: base.to_hex(),
        epsilon: None,
    });
    if tamper == Tamper::UpdateAfterFraud {
        ledger.append(&round_open(2));
        let update = Digest::of_bytes(b"again");
        ledger.append(&Entry::UpdateCommitment {
            round: 2,
            attempt: 0,
            participant: 2,
            update_digest: update.to_hex(),
            num_samples: 10,
            signature: sign(2, 2, update, Some(recipe(2))),
            recipe: Some(recipe(2)),
        });
    }
    let head = ledger.sign_head(&coordinator, 1);
    (ledger, vec![head], coordinator)
}

#[test]
fn verified_rounds_and_fraud_audit_clean_and_each_broken_rule_is_named() {
    let (ledger, heads, coordinator) = verified_ledger(Tamper::None);
    let report = audit(ledger.entries(), &heads, Some(&coordinator.public()));
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    assert_eq!(report.frauds, vec![(1, 2)]);
    // Two updates and the fraud's evidence.
    assert_eq!(report.signatures_verified, 3);
    for (tamper, named) in [
        (Tamper::NoRecipe, "carries no training recipe"),
        (Tamper::WrongShard, "not its own shard"),
        (
            Tamper::ForgedEvidence,
            "evidence is not participant 2's signature",
        ),
        (Tamper::NoMismatch, "its update is the replay"),
        (Tamper::UpdateAfterFraud, "removed for fraud in round 1"),
    ] {
        let (ledger, heads, coordinator) = verified_ledger(tamper);
        let report = audit(ledger.entries(), &heads, Some(&coordinator.public()));
        assert!(
            report.findings.iter().any(|f| f.problem.contains(named)),
            "{tamper:?}: {:?}",
            report.findings
        );
    }
}

proptest! {
    // Ledger entries come from whoever hands an auditor the ledger: any bytes parse as a
    // canonical entry or are refused, never a panic; a buffered step round-trips.
    #[test]
    fn any_bytes_parse_as_an_entry_or_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = Entry::parse(&bytes);
    }

    // Before, serde_json's fast float parser read some ε back one ulp off, so an honest
    // entry recording one was "not in canonical form"; floats must round-trip exactly.
    #[test]
    fn any_recorded_epsilon_round_trips(epsilon in 0.0f64..1e6) {
        let entry = Entry::RoundResult {
            round: 1,
            strategy: "dp-fedavg".into(),
            inputs: Vec::new(),
            output: "01".repeat(32),
            epsilon: Some(epsilon),
        };
        prop_assert_eq!(Entry::parse(&entry.to_bytes()).unwrap(), entry);
    }

    #[test]
    fn buffered_steps_round_trip_through_their_canonical_bytes(
        version in 1u64..1000, base_version in 0u64..1000, attempt in any::<u32>(), samples in any::<u64>()
    ) {
        let entry = Entry::BufferedStep {
            version,
            base: "ab".repeat(32),
            inputs: vec![harambee_ledger::BufferedInput {
                participant: 3,
                base_version,
                attempt,
                staleness: version.saturating_sub(base_version + 1),
                update_digest: "cd".repeat(32),
                num_samples: samples,
                signature: "ef".repeat(64),
            }],
            output: "01".repeat(32),
            epsilon: (version % 2 == 0).then_some(version as f64 / 7.0),
        };
        prop_assert_eq!(Entry::parse(&entry.to_bytes()).unwrap(), entry);
    }
}
