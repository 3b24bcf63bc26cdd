//! Charters: canonical hashes, enforcement, and amendments that need k of n stewards.
#![allow(clippy::unwrap_used)]

use harambee_charter::{Amendment, Charter, CharterError, Enrolment, Member, Role};
use harambee_identity::Identity;

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
            Amendment::sign(s, &current, &proposed),
        )
    };
    let amendment = |signatures: Vec<(String, String)>| Amendment {
        amends: current.hash(),
        charter: proposed.clone(),
        signatures,
    };

    let two = amendment(vec![sign(&stewards[0]), sign(&stewards[2])]);
    assert_eq!(current.apply(&two).unwrap().max_rounds, 100);

    let one = amendment(vec![sign(&stewards[0])]);
    assert_eq!(
        current.apply(&one),
        Err(CharterError::NotEnoughSignatures {
            valid: 1,
            required: 2
        })
    );
    // The same steward twice is one signature.
    let twice = amendment(vec![sign(&stewards[1]), sign(&stewards[1])]);
    assert!(current.apply(&twice).is_err());
    // A stranger's signature does not count.
    let stranger = Identity::generate().unwrap();
    let with_stranger = amendment(vec![sign(&stewards[0]), sign(&stranger)]);
    assert!(current.apply(&with_stranger).is_err());
    // A signature over another proposal does not count.
    let mut other = proposed.clone();
    other.max_rounds = 1000;
    let wrong = (
        stewards[1].public().to_string(),
        Amendment::sign(&stewards[1], &current, &other),
    );
    assert!(
        current
            .apply(&amendment(vec![sign(&stewards[0]), wrong]))
            .is_err()
    );
    // An amendment of another charter is refused.
    let stale = Amendment {
        amends: "00".repeat(32),
        ..two
    };
    assert!(matches!(
        current.apply(&stale),
        Err(CharterError::WrongBase { .. })
    ));
}
