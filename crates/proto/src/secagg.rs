//! Secure aggregation on the wire: the protocol's messages to and from their protobuf form,
//! checked on the way in, and the bytes each step's signature covers.

use harambee_secagg::shamir::{LIMBS, Share};
use harambee_secagg::{Config, KeyAdvert, SealedShare, Unmasking};
use sha2::{Digest, Sha256};

use crate::v1;

/// Why a secure-aggregation message from the wire was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed secure-aggregation message: {0}")]
pub struct WireError(pub &'static str);

/// Step numbers, as the signatures name them.
pub mod step {
    /// Step 1: key advertisement.
    pub const KEYS: u8 = 1;
    /// Step 2: sealed shares.
    pub const SHARES: u8 = 2;
    /// Step 4: unmasking.
    pub const UNMASK: u8 = 4;
}

/// The bytes a participant signs for a step: a label, the session, the step and the SHA-256
/// of the step message's protobuf encoding.
pub fn signing_bytes(session: &[u8], step: u8, body: &[u8]) -> Vec<u8> {
    let mut out = b"harambee/secagg/v1".to_vec();
    out.extend_from_slice(session);
    out.push(step);
    out.extend_from_slice(&Sha256::digest(body));
    out
}

/// The round's protocol settings from a task's [`v1::SecAggSettings`], checked.
pub fn config_of(s: &v1::SecAggSettings) -> Result<Config, WireError> {
    let session: [u8; 32] = s
        .session
        .as_slice()
        .try_into()
        .map_err(|_| WireError("the session must be 32 bytes"))?;
    let config = Config {
        session,
        participants: s.participants,
        degree: s.degree,
        threshold: s.threshold,
        min_survivors: s.min_survivors,
        dimension: usize::try_from(s.dimension).map_err(|_| WireError("dimension too large"))?,
    };
    config
        .check()
        .map_err(|_| WireError("unsound protocol settings"))?;
    Ok(config)
}

fn key32(bytes: &[u8]) -> Result<[u8; 32], WireError> {
    bytes
        .try_into()
        .map_err(|_| WireError("a key must be 32 bytes"))
}

/// Step 1's message from an advertisement.
pub fn keys_to_wire(a: &KeyAdvert) -> v1::SecAggKeys {
    v1::SecAggKeys {
        cipher_key: a.cipher_key.to_vec(),
        mask_key: a.mask_key.to_vec(),
    }
}

/// An advertisement from step 1's message, for participant `from`.
pub fn keys_from_wire(from: u32, k: &v1::SecAggKeys) -> Result<KeyAdvert, WireError> {
    Ok(KeyAdvert {
        from,
        cipher_key: key32(&k.cipher_key)?,
        mask_key: key32(&k.mask_key)?,
    })
}

/// Sealed shares to the wire.
pub fn shares_to_wire(shares: &[SealedShare]) -> v1::SecAggShares {
    v1::SecAggShares {
        shares: shares
            .iter()
            .map(|s| v1::SealedShare {
                from: s.from,
                to: s.to,
                ciphertext: s.ciphertext.clone(),
            })
            .collect(),
    }
}

/// Sealed shares from the wire (their contents are checked by whoever opens them).
pub fn shares_from_wire(s: &v1::SecAggShares) -> Vec<SealedShare> {
    s.shares
        .iter()
        .map(|s| SealedShare {
            from: s.from,
            to: s.to,
            ciphertext: s.ciphertext.clone(),
        })
        .collect()
}

fn owner_share_to_wire((owner, share): &(u32, Share)) -> v1::OwnerShare {
    v1::OwnerShare {
        owner: *owner,
        x: share.x,
        y: share.y.to_vec(),
    }
}

fn owner_share_from_wire(s: &v1::OwnerShare) -> Result<(u32, Share), WireError> {
    let y: [u64; LIMBS] =
        s.y.as_slice()
            .try_into()
            .map_err(|_| WireError("a share must have five limbs"))?;
    Ok((s.owner, Share { x: s.x, y }))
}

/// Step 4's message from an unmasking.
pub fn unmask_to_wire(u: &Unmasking) -> v1::SecAggUnmask {
    v1::SecAggUnmask {
        seed_shares: u.seed_shares.iter().map(owner_share_to_wire).collect(),
        key_shares: u.key_shares.iter().map(owner_share_to_wire).collect(),
    }
}

/// An unmasking from step 4's message, for participant `from`.
pub fn unmask_from_wire(from: u32, u: &v1::SecAggUnmask) -> Result<Unmasking, WireError> {
    Ok(Unmasking {
        from,
        seed_shares: u
            .seed_shares
            .iter()
            .map(owner_share_from_wire)
            .collect::<Result<_, _>>()?,
        key_shares: u
            .key_shares
            .iter()
            .map(owner_share_from_wire)
            .collect::<Result<_, _>>()?,
    })
}

/// Little-endian words from masked-update bytes.
pub fn words_from_bytes(bytes: &[u8]) -> Result<Vec<u32>, WireError> {
    if !bytes.len().is_multiple_of(4) {
        return Err(WireError("masked bytes are not whole 32-bit words"));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
        .collect())
}

/// Masked words as little-endian bytes.
pub fn words_to_bytes(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn unmaskings_round_trip_or_refuse(owner in any::<u32>(), x in any::<u64>(), y in proptest::collection::vec(any::<u64>(), 0..8)) {
            let wire = v1::SecAggUnmask { seed_shares: vec![v1::OwnerShare { owner, x, y: y.clone() }], key_shares: vec![] };
            match unmask_from_wire(3, &wire) {
                Ok(u) => {
                    prop_assert_eq!(y.len(), LIMBS);
                    prop_assert_eq!(unmask_to_wire(&u), wire);
                }
                Err(_) => prop_assert_ne!(y.len(), LIMBS),
            }
        }

        #[test]
        fn words_round_trip_or_refuse(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            match words_from_bytes(&bytes) {
                Ok(w) => prop_assert_eq!(words_to_bytes(&w), bytes),
                Err(_) => prop_assert!(bytes.len() % 4 != 0),
            }
        }

        #[test]
        fn settings_decode_or_refuse(session in proptest::collection::vec(any::<u8>(), 0..40), n in 0u32..200, degree in 0u32..200, t in 0u32..200) {
            let s = v1::SecAggSettings { session, participants: n, degree, threshold: t, min_survivors: t, dimension: 10, ..Default::default() };
            if let Ok(c) = config_of(&s) {
                prop_assert!(c.check().is_ok());
            }
        }
    }
}
