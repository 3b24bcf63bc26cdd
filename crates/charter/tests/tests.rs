//! Charters: canonical hashes, enforcement, member keys in one written form, amendments that
//! need k of n distinct stewards of one federation, and the folder's lock and atomic save.
#![allow(clippy::unwrap_used)]

use harambee_charter::{
    Amendment, Charter, CharterError, Enrolment, FolderLock, Member, Role, normalise_key,
};
use harambee_identity::{Identity, PublicKey};
use proptest::prelude::*;

/// The federation the amendments below are signed for.
const FEDERATION: &str = "4f1d0c3a9b2e8d7c6a5b4f3e2d1c0b9a";

fn charter(stewards: &[&Identity], threshold: usize) -> Charter {
    Charter {
        name: "test".into(),
        task: "digits".into(),
        data_licence: "CC-BY-4.0".into(),
        model_licence: "Apache-2.0".into(),
        enrolment: Enrolment::Members,
        strategies: vec!["fedavg".into(), "median".into()],
        min_quorum: 2,
        max_deadline_s: 600.0,
        max_rounds: 50,
        amendment_threshold: threshold,
        privacy: None,
        secure_aggregation: None,
        mode: Default::default(),
        max_samples: None,
        base_model: None,
        update_encoding: None,
        buffered: None,
        download_encoding: None,
        verification: None,
        members: stewards
            .iter()
            .enumerate()
            .map(|(i, s)| Member {
                name: format!("steward {i}"),
                public_key: s.public().to_string(),
                role: Role::Steward,
            })
            .collect(),
    }
}

#[test]
fn the_hash_ignores_formatting_and_follows_content() {
    let s = Identity::generate().unwrap();
    let c = charter(&[&s], 1);
    let text = toml::to_string(&c).unwrap();
    let reformatted = format!("# a comment\n\n{}", text.replace(" = ", "   =   "));
    assert_eq!(Charter::parse(&reformatted).unwrap().hash(), c.hash());
    let mut other = c.clone();
    other.max_rounds += 1;
    assert_ne!(other.hash(), c.hash());
    assert!(Charter::parse("name = 1").is_err());
    assert!(
        Charter::parse(&format!("{text}\nunknown = 3\n")).is_err(),
        "unknown keys are refused"
    );
}

#[test]
fn the_charter_is_enforced() {
    let s = Identity::generate().unwrap();
    let c = charter(&[&s], 1);
    assert!(c.check("fedavg", 2, 60.0, 10).is_ok());
    assert!(c.check("median", 3, 600.0, 50).is_ok());
    assert!(matches!(
        c.check("fedadam", 2, 60.0, 10),
        Err(CharterError::Forbidden(_))
    ));
    assert!(
        c.check("fedavg", 1, 60.0, 10).is_err(),
        "quorum below the charter's"
    );
    assert!(c.check("fedavg", 2, 601.0, 10).is_err(), "deadline beyond");
    assert!(c.check("fedavg", 2, 60.0, 51).is_err(), "rounds beyond");
    assert!(c.may_train(&s.public().to_string()));
    assert!(
        !c.may_train(&Identity::generate().unwrap().public().to_string()),
        "members only"
    );
}

#[test]
fn an_amendment_takes_effect_with_k_of_n_stewards_and_not_one_short() {
    let stewards: Vec<Identity> = (0..3).map(|_| Identity::generate().unwrap()).collect();
    let refs: Vec<&Identity> = stewards.iter().collect();
    let current = charter(&refs, 2);
    let mut proposed = current.clone();
    proposed.max_rounds = 100;
    let sign = |s: &Identity| {
        (
            s.public().to_string(),
            Amendment::sign(s, FEDERATION, &current, &proposed),
        )
    };
    let amendment = |signatures: Vec<(String, String)>| Amendment {
        amends: current.hash(),
        charter: proposed.clone(),
        signatures,
    };

    let two = amendment(vec![sign(&stewards[0]), sign(&stewards[2])]);
    assert_eq!(current.apply(FEDERATION, &two).unwrap().max_rounds, 100);

    let one = amendment(vec![sign(&stewards[0])]);
    assert_eq!(
        current.apply(FEDERATION, &one),
        Err(CharterError::NotEnoughSignatures {
            valid: 1,
            required: 2
        })
    );
    // The same steward twice is one signature.
    let twice = amendment(vec![sign(&stewards[1]), sign(&stewards[1])]);
    assert!(current.apply(FEDERATION, &twice).is_err());
    // A stranger's signature does not count.
    let stranger = Identity::generate().unwrap();
    let with_stranger = amendment(vec![sign(&stewards[0]), sign(&stranger)]);
    assert!(current.apply(FEDERATION, &with_stranger).is_err());
    // A signature over another proposal does not count.
    let mut other = proposed.clone();
    other.max_rounds = 1000;
    let wrong = (
        stewards[1].public().to_string(),
        Amendment::sign(&stewards[1], FEDERATION, &current, &other),
    );
    assert!(
        current
            .apply(FEDERATION, &amendment(vec![sign(&stewards[0]), wrong]))
            .is_err()
    );
    // An amendment of another charter is refused.
    let stale = Amendment {
        amends: "00".repeat(32),
        ..two
    };
    assert!(matches!(
        current.apply(FEDERATION, &stale),
        Err(CharterError::WrongBase { .. })
    ));
}

/// `key` with the hex digits whose bit is set in `mask` written in upper case.
fn in_case(key: &str, mask: u64) -> String {
    key.chars()
        .enumerate()
        .map(|(i, c)| {
            if mask >> (i % 64) & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

fn member(name: &str, public_key: String, role: Role) -> Member {
    Member {
        name: name.into(),
        public_key,
        role,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    // Before, keys were kept as written: the same key in two hex cases was two keys.
    #[test]
    fn a_key_in_any_hex_case_normalises_to_its_lower_case_form(bytes in any::<[u8; 32]>(), mask in any::<u64>()) {
        let lower = hex::encode(bytes);
        let written = in_case(&lower, mask);
        let is_point = PublicKey::from_bytes(&bytes).is_ok();
        prop_assert_eq!(normalise_key(&written).ok(), is_point.then_some(lower));
    }

    // Before, any string `PublicKey` parsed passed, including one with whitespace around it.
    #[test]
    fn anything_but_64_hex_characters_is_refused(
        short in "[0-9a-fA-F]{0,63}",
        long in "[0-9a-fA-F]{65,90}",
        at in 0usize..64,
        junk in "[^0-9a-fA-F]",
    ) {
        let key = Identity::generate().unwrap().public().to_string();
        prop_assert!(normalise_key(&short).is_err());
        prop_assert!(normalise_key(&long).is_err());
        let mut spoiled: Vec<char> = key.chars().collect();
        spoiled[at] = junk.chars().next().unwrap();
        prop_assert!(normalise_key(&spoiled.into_iter().collect::<String>()).is_err());
        for written in [format!(" {key}"), format!("{key}\n"), format!("0x{key}")] {
            prop_assert!(normalise_key(&written).is_err(), "{:?}", written);
        }


    }

    // Before, a steward listed once in lower and once in upper case parsed as two stewards.
    #[test]
    fn a_charter_that_lists_a_key_twice_in_any_case_is_refused(mask in any::<u64>(), role in 0usize..3) {
        let s = Identity::generate().unwrap();
        let key = s.public().to_string();
        let mut c = charter(&[&s], 1);
        let role = [Role::Steward, Role::Contributor, Role::Observer][role];
        c.members.push(member("again", in_case(&key, mask), role));
        let expected = CharterError::DuplicateKey { key, first: "steward 0".into(), second: "again".into() };
        prop_assert_eq!(c.validate(), Err(expected.clone()));
        prop_assert_eq!(Charter::parse(&toml::to_string(&c).unwrap()), Err(expected));
    }

    // Before, `may_train` compared keys as written, so case decided who was a member.
    #[test]
    fn a_parsed_charter_holds_its_keys_in_lower_case_and_hashes_as_written_in_code(mask in any::<u64>()) {
        let s = Identity::generate().unwrap();
        let key = s.public().to_string();
        let mut c = charter(&[&s], 1);
        c.members[0].public_key = in_case(&key, mask);
        let parsed = Charter::parse(&toml::to_string(&c).unwrap()).unwrap();
        prop_assert_eq!(&parsed.members[0].public_key, &key);
        prop_assert_eq!(parsed.hash(), c.hash());
        prop_assert!(c.may_train(&key) && parsed.may_train(&in_case(&key, !mask)));
    }
}

// Before, only the point was checked: y and y + p, two spellings of one key, both passed.
#[test]
fn a_non_canonical_encoding_of_a_point_is_refused() {
    let mut decodes = 0;
    for y in 0u8..19 {
        for sign in [0u8, 0x80] {
            // y + p, little-endian: p = 2^255 - 19.
            let mut bytes = [0xffu8; 32];
            bytes[0] = 0xed + y;
            bytes[31] = 0x7f | sign;
            decodes += usize::from(PublicKey::from_bytes(&bytes).is_ok());
            assert!(normalise_key(&hex::encode(bytes)).is_err(), "y = {y} + p");
        }
    }
    assert!(decodes > 0, "some of them are points, so the check matters");
}

// Before, a steward listed twice (different hex case) counted twice towards k of n.
#[test]
fn a_steward_listed_twice_counts_once_towards_the_quorum() {
    let stewards: Vec<Identity> = (0..2).map(|_| Identity::generate().unwrap()).collect();
    let refs: Vec<&Identity> = stewards.iter().collect();
    let mut current = charter(&refs, 2);
    let key = stewards[0].public().to_string();
    // Built in code, past `parse`: `apply` must still count keys, not spellings.
    current.members.push(member(
        "steward 0 again",
        key.to_ascii_uppercase(),
        Role::Steward,
    ));
    assert!(matches!(
        current.validate(),
        Err(CharterError::DuplicateKey { .. })
    ));
    let mut proposed = charter(&refs, 2);
    proposed.max_rounds = 100;
    let signature = Amendment::sign(&stewards[0], FEDERATION, &current, &proposed);
    let amendment = Amendment {
        amends: current.hash(),
        charter: proposed,
        signatures: vec![
            (key.clone(), signature.clone()),
            (key.to_ascii_uppercase(), signature.clone()),
            (in_case(&key, 0xaaaa_aaaa_aaaa_aaaa), signature),
        ],
    };
    assert_eq!(
        current.apply(FEDERATION, &amendment),
        Err(CharterError::NotEnoughSignatures {
            valid: 1,
            required: 2
        })
    );
}

// Before, the statement named no federation: a signature was valid in every federation.
#[test]
fn an_amendment_signed_for_one_federation_does_not_take_effect_in_another() {
    let s = Identity::generate().unwrap();
    let current = charter(&[&s], 1);
    let mut proposed = current.clone();
    proposed.max_rounds = 100;
    let amendment = Amendment {
        amends: current.hash(),
        charter: proposed.clone(),
        signatures: vec![(
            s.public().to_string(),
            Amendment::sign(&s, "federation-a", &current, &proposed),
        )],
    };
    assert_eq!(current.apply("federation-a", &amendment).unwrap(), proposed);
    assert_eq!(
        current.apply("federation-b", &amendment),
        Err(CharterError::NotEnoughSignatures {
            valid: 0,
            required: 1
        })
    );
    // Nor does a v1 signature, over the old bytes without a federation.
    let mut v1 = b"harambee.amendment.v1\0".to_vec();
    v1.extend_from_slice(current.hash().as_bytes());
    v1.extend_from_slice(proposed.hash().as_bytes());
    let old = Amendment {
        signatures: vec![(s.public().to_string(), hex::encode(s.sign_raw(&v1)))],
        ..amendment
    };
    assert!(current.apply("federation-a", &old).is_err());
}

#[test]
fn the_amendment_statement_is_as_documented() {
    let (old, new) = ("ab".repeat(32), "cd".repeat(32));
    let mut expected = b"harambee.amendment.v2\0".to_vec();
    expected.extend_from_slice(&3u32.to_le_bytes());
    expected.extend_from_slice(b"fed");
    expected.extend_from_slice(old.as_bytes());
    expected.extend_from_slice(new.as_bytes());
    assert_eq!(Amendment::statement("fed", &old, &new), expected);
    // The length prefix keeps ("fe", "d" + hash) from reading as ("fed", hash).
    assert_ne!(
        Amendment::statement("fe", &format!("d{old}"), &new),
        Amendment::statement("fed", &old, &new)
    );
}

// Before, nothing stopped `charter amend` while a coordinator ran on the folder.
#[test]
fn a_second_holder_of_the_folder_is_refused_until_the_first_lets_go() {
    let folder = tempfile::tempdir().unwrap();
    let coordinator = FolderLock::acquire(folder.path(), "the coordinator").unwrap();
    let refused = FolderLock::acquire(folder.path(), "`harambee charter amend`").unwrap_err();
    let CharterError::FolderBusy { held_by, .. } = &refused else {
        panic!("{refused:?}");
    };
    assert!(
        held_by.starts_with("the coordinator, process "),
        "{held_by}"
    );
    assert!(refused.to_string().contains("stop it"), "{refused}");
    drop(coordinator);
    assert!(FolderLock::acquire(folder.path(), "`harambee charter amend`").is_ok());
}

// Before, charter.toml was rewritten in place: a crash could leave half a charter.
#[test]
fn save_replaces_the_charter_whole_and_leaves_nothing_else() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("charter.toml");
    std::fs::write(&path, "the old charter").unwrap();
    let s = Identity::generate().unwrap();
    let mut c = charter(&[&s], 1);
    c.members[0].public_key.make_ascii_uppercase();
    c.save(&path).unwrap();
    let saved = Charter::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(saved.hash(), c.hash());
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains(&s.public().to_string()),
        "keys are written in lower case"
    );
    let names: Vec<_> = std::fs::read_dir(folder.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["charter.toml"]);
}

// A charter written before max_samples existed must keep its hash (the ledgers of running
// federations record it), and a maximum of zero samples admits nothing: refused.
#[test]
fn max_samples_is_optional_in_the_hash_and_must_admit_something() {
    let steward = Identity::generate().unwrap();
    let plain = charter(&[&steward], 1);
    let text = String::from_utf8(plain.canonical_bytes()).unwrap();
    assert!(!text.contains("max_samples"), "{text}");
    let bounded = Charter {
        max_samples: Some(1000),
        ..plain.clone()
    };
    assert_ne!(bounded.hash(), plain.hash());
    assert!(bounded.validate().is_ok());
    let nothing = Charter {
        max_samples: Some(0),
        ..plain
    };
    assert!(nothing.validate().is_err());
}

#[test]
fn verification_is_for_community_runs_with_a_fraction_in_range_and_absent_from_old_hashes() {
    let steward = Identity::generate().unwrap();
    let plain = charter(&[&steward], 1);
    let text = String::from_utf8(plain.canonical_bytes()).unwrap();
    assert!(!text.contains("verification"), "{text}");
    let rule = |replay_fraction| Some(harambee_charter::VerificationRule { replay_fraction });
    let community = Charter {
        mode: harambee_charter::Mode::Community,
        strategies: vec!["diloco".into()],
        verification: rule(0.25),
        ..plain.clone()
    };
    community.validate().unwrap();
    assert_ne!(community.hash(), plain.hash());
    let federated = Charter {
        verification: rule(0.25),
        ..plain
    };
    let why = federated.validate().unwrap_err().to_string();
    assert!(why.contains("public"), "{why}");
    for bad in [0.0, -0.1, 1.5, f64::NAN] {
        let c = Charter {
            verification: rule(bad),
            ..community.clone()
        };
        assert!(c.validate().is_err(), "{bad}");
    }
}
