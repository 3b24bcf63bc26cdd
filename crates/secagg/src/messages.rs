//! The messages of the four steps. They are plain data; the transport (a function call in the
//! simulator, protobuf over gRPC between machines) is the caller's business.

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::SecAggError;
use crate::shamir::{LIMBS, Share};

/// Step 1, participant → server: the round's two fresh public keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyAdvert {
    /// The sender's index in the round.
    pub from: u32,
    /// X25519 public key for encrypting shares to the sender.
    pub cipher_key: [u8; 32],
    /// X25519 public key for the sender's pairwise masks.
    pub mask_key: [u8; 32],
}

/// Step 2, participant → server → neighbour: a [`SharePair`] encrypted for one neighbour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedShare {
    /// Who made the shares.
    pub from: u32,
    /// The neighbour that can open them.
    pub to: u32,
    /// ChaCha20-Poly1305 ciphertext of [`SharePair::to_bytes`].
    pub ciphertext: Vec<u8>,
}

/// Step 3, participant → server: the masked fixed-point vector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaskedInput {
    /// The sender's index.
    pub from: u32,
    /// The vector plus its masks, modulo 2^32.
    pub values: Vec<u32>,
}

/// Step 4, server → participants: who sent a masked input, in ascending order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Survivors {
    /// Their indices.
    pub ids: Vec<u32>,
}

/// Step 4, participant → server: shares of its neighbours' secrets, for each neighbour
/// either the self-mask seed (it survived) or the mask key (it dropped), never both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unmasking {
    /// The sender's index.
    pub from: u32,
    /// (owner, share of the owner's self-mask seed), for survivors.
    pub seed_shares: Vec<(u32, Share)>,
    /// (owner, share of the owner's mask secret key), for the dropped.
    pub key_shares: Vec<(u32, Share)>,
}

/// What one participant gives one holder: a share of its mask key and of its self-mask seed.
/// It travels only sealed; its byte form is what the holder decrypts, so it is decoded as
/// untrusted input.
#[derive(Debug, Clone, PartialEq, Eq, Zeroize)]
pub struct SharePair {
    /// Whose secrets.
    pub owner: u32,
    /// Who holds this pair.
    pub holder: u32,
    /// Share of the owner's mask secret key.
    pub key: Share,
    /// Share of the owner's self-mask seed.
    pub seed: Share,
}

impl SharePair {
    /// Encoded length: owner, holder, then two shares of (x, five limbs), little-endian.
    pub const BYTES: usize = 4 + 4 + 2 * 8 * (1 + LIMBS);

    /// The fixed-length little-endian encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::BYTES);
        out.extend_from_slice(&self.owner.to_le_bytes());
        out.extend_from_slice(&self.holder.to_le_bytes());
        for share in [&self.key, &self.seed] {
            out.extend_from_slice(&share.x.to_le_bytes());
            share
                .y
                .iter()
                .for_each(|y| out.extend_from_slice(&y.to_le_bytes()));
        }
        out
    }

    /// Decodes [`Self::to_bytes`]; any other length or a value outside the field is refused.
    pub fn from_bytes(bytes: &[u8], from: u32) -> Result<Self, SecAggError> {
        let bad = |reason| SecAggError::BadShare { from, reason };
        if bytes.len() != Self::BYTES {
            return Err(bad("a share pair has the wrong length"));
        }
        let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
        let share_at = |at: usize| Share {
            x: word(at),
            y: std::array::from_fn(|l| word(at + 8 + 8 * l)),
        };
        let pair = Self {
            owner: u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
            holder: u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
            key: share_at(8),
            seed: share_at(8 + 8 * (1 + LIMBS)),
        };
        let in_field = |s: &Share| {
            s.x != 0
                && s.x < crate::shamir::MODULUS
                && s.y.iter().all(|&y| y < crate::shamir::MODULUS)
        };
        if !(in_field(&pair.key) && in_field(&pair.seed)) {
            return Err(bad("a share lies outside the field"));
        }
        Ok(pair)
    }
}
