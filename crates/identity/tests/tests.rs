//! Keys and signed update statements: what verifies, and everything that must not.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use harambee_identity::{
    Identity, IdentityError, PublicKey, SignedUpdate, TrainingRecipe, UpdateStatement,
};
use harambee_params::Digest;
use proptest::prelude::*;

fn statement() -> UpdateStatement {
    UpdateStatement {
        federation: "udhr-langid".into(),
        round: 3,
        base: Digest::of_bytes(b"base"),
        update: Digest::of_bytes(b"update"),
        num_samples: 600,
        recipe: None,
    }
}

#[test]
fn a_signed_statement_verifies_and_every_changed_field_fails() {
    let me = Identity::generate().unwrap();
    let signed = me.sign(statement());
    signed.verify().unwrap();
    let changed = [
        UpdateStatement {
            federation: "other".into(),
            ..statement()
        },
        UpdateStatement {
            round: 4,
            ..statement()
        },
        UpdateStatement {
            base: Digest::of_bytes(b"other base"),
            ..statement()
        },
        UpdateStatement {
            update: Digest::of_bytes(b"other update"),
            ..statement()
        },
        UpdateStatement {
            num_samples: 601,
            ..statement()
        },
    ];
    for statement in changed {
        let forged = SignedUpdate {
            statement,
            ..signed.clone()
        };
        assert!(matches!(forged.verify(), Err(IdentityError::BadSignature)));
    }
}

#[test]
fn another_members_key_does_not_verify() {
    let (me, other) = (Identity::generate().unwrap(), Identity::generate().unwrap());
    let signed = SignedUpdate {
        signer: other.public(),
        ..me.sign(statement())
    };
    assert!(signed.verify().is_err());
}

#[test]
fn keys_survive_a_file_round_trip_and_are_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("me.pem");
    let me = Identity::generate().unwrap();
    me.save(&path).unwrap();
    let again = Identity::load(&path).unwrap();
    assert_eq!(me.public(), again.public());
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    assert!(matches!(
        Identity::generate().unwrap().save(&path),
        Err(IdentityError::Exists(_))
    ));
    assert_eq!(
        Identity::load(&path).unwrap().public(),
        me.public(),
        "the first key is intact"
    );
}

#[test]
fn bad_key_files_and_public_keys_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.pem");
    std::fs::write(&path, "not a key").unwrap();
    let err = Identity::load(&path).unwrap_err().to_string();
    assert!(err.contains("PKCS#8"), "{err}");
    assert!(Identity::load(&dir.path().join("missing.pem")).is_err());
    assert!("abc".parse::<PublicKey>().is_err());
    let me = Identity::generate().unwrap();
    assert_eq!(
        me.public().to_string().parse::<PublicKey>().unwrap(),
        me.public()
    );
    assert!(
        !format!("{me:?}").contains("PRIVATE"),
        "Debug must not leak the key"
    );
}

proptest! {
    /// Public keys arrive from the network: parsing never panics.
    #[test]
    fn public_key_parsing_never_panics(s in "[0-9a-f]{0,70}", bytes in any::<[u8; 32]>()) {
        let _ = s.parse::<PublicKey>();
        let _ = PublicKey::from_bytes(&bytes);
    }

    /// Any bit flipped in a signature makes it fail.
    #[test]
    fn a_flipped_signature_bit_fails(bit in 0usize..512) {
        let me = Identity::generate().unwrap();
        let mut signed = me.sign(statement());
        signed.signature[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(signed.verify().is_err());
    }
}

fn recipe(fields: [u32; 8]) -> TrainingRecipe {
    TrainingRecipe {
        shard_index: fields[0],
        shard_count: fields[1],
        seed: u64::from(fields[2]) << 32 | u64::from(fields[3]),
        epochs: fields[4],
        local_steps: fields[5],
        batch_size: fields[6],
        learning_rate: f32::from_bits(fields[7]),
        proximal_mu: 0.0,
    }
}

proptest! {
    // A worker's signature with a training recipe vouches for that recipe and no other: a
    // recipe changed in any one field, or dropped, no longer verifies (a lazy worker cannot
    // claim it was asked for less than it was).
    #[test]
    fn a_signed_recipe_verifies_only_as_signed(fields in any::<[u32; 8]>(), field in 0usize..8, delta in 1u32..) {
        let me = Identity::generate().unwrap();
        let signed = me.sign(UpdateStatement { recipe: Some(recipe(fields)), ..statement() });
        prop_assert!(signed.verify().is_ok());
        let mut changed = fields;
        changed[field] = changed[field].wrapping_add(delta);
        for other in [Some(recipe(changed)), None] {
            let forged = SignedUpdate {
                statement: UpdateStatement { recipe: other, ..statement() },
                ..signed.clone()
            };
            prop_assert!(forged.verify().is_err());
        }
    }
}
