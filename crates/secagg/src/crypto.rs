//! The primitives, all from maintained crates: X25519 key agreement, HKDF-SHA256 key
//! derivation bound to the round's session, ChaCha20-Poly1305 for the shares in transit and a
//! ChaCha20 stream for the masks.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use rand::CryptoRng;
use x25519_dalek::{PublicKey, StaticSecret};

use crate::SecAggError;

/// What a derived key is for; each use gets its own HKDF label so keys never serve two ends.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Purpose {
    /// The pairwise mask between two neighbours.
    PairMask,
    /// The AEAD key that carries shares between two neighbours.
    ShareTransport,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::PairMask => b"harambee/secagg/v1/pair-mask",
            Purpose::ShareTransport => b"harambee/secagg/v1/share-transport",
        }
    }
}

/// A fresh X25519 secret from `rng` (each round's keys are new, never an identity key).
pub(crate) fn fresh_secret(rng: &mut impl CryptoRng) -> StaticSecret {
    let mut bytes = [0u8; 32];
    rng.fill_bytes(&mut bytes);
    StaticSecret::from(bytes)
}

/// Random 32 bytes, for a self-mask seed.
pub(crate) fn fresh_seed(rng: &mut impl CryptoRng) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    rng.fill_bytes(&mut bytes);
    bytes
}

/// The key `purpose` shared by the holder of `secret` and the owner of `public`, bound to the
/// round's `session`. A public key of small order (which would fix the result whatever the
/// secret) is refused.
pub(crate) fn agree(
    secret: &StaticSecret,
    public: &[u8; 32],
    session: &[u8; 32],
    purpose: Purpose,
) -> Result<[u8; 32], SecAggError> {
    let shared = secret.diffie_hellman(&PublicKey::from(*public));
    if !shared.was_contributory() {
        return Err(SecAggError::BadKey("a public key of small order"));
    }
    let mut out = [0u8; 32];
    hkdf::Hkdf::<sha2::Sha256>::new(Some(session), shared.as_bytes())
        .expand(purpose.label(), &mut out)
        .map_err(|_| SecAggError::BadKey("key derivation failed"))?;
    Ok(out)
}

/// The nonce and associated data of the message `from → to` in `session`: each direction of a
/// pair has its own nonce, and a sealed share opens only in its own round and direction.
fn framing(session: &[u8; 32], from: u32, to: u32) -> ([u8; 12], [u8; 40]) {
    let mut nonce = [0u8; 12];
    nonce[..4].copy_from_slice(&from.to_le_bytes());
    nonce[4..8].copy_from_slice(&to.to_le_bytes());
    let mut ad = [0u8; 40];
    ad[..32].copy_from_slice(session);
    ad[32..36].copy_from_slice(&from.to_le_bytes());
    ad[36..].copy_from_slice(&to.to_le_bytes());
    (nonce, ad)
}

/// Encrypts and authenticates `plaintext` from `from` to `to` under `key`.
pub(crate) fn seal(
    key: &[u8; 32],
    session: &[u8; 32],
    from: u32,
    to: u32,
    plaintext: &[u8],
) -> Result<Vec<u8>, SecAggError> {
    let (nonce, ad) = framing(session, from, to);
    ChaCha20Poly1305::new(key.into())
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &ad,
            },
        )
        .map_err(|_| SecAggError::BadShare {
            from,
            reason: "encryption failed",
        })
}

/// Opens a sealed share; any change to it, its direction or its round is refused.
pub(crate) fn open(
    key: &[u8; 32],
    session: &[u8; 32],
    from: u32,
    to: u32,
    ciphertext: &[u8],
) -> Result<Vec<u8>, SecAggError> {
    let (nonce, ad) = framing(session, from, to);
    ChaCha20Poly1305::new(key.into())
        .decrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: ciphertext,
                aad: &ad,
            },
        )
        .map_err(|_| SecAggError::BadShare {
            from,
            reason: "it does not authenticate (altered, misdirected or from another round)",
        })
}

/// Adds (`negate` false) or subtracts the ChaCha20 keystream of `seed` (zero nonce: each seed
/// is used for one stream only), read as little-endian 32-bit words, to `acc` modulo 2^32.
/// This is the protocol's hot loop; the `chacha20` crate picks AVX2 or SSE2 at run time.
pub(crate) fn apply_mask(acc: &mut [u32], seed: &[u8; 32], negate: bool) {
    use chacha20::cipher::{KeyIvInit, StreamCipher};
    let mut stream = chacha20::ChaCha20::new(seed.into(), &[0u8; 12].into());
    let mut block = [0u8; 16 * 1024];
    for chunk in acc.chunks_mut(block.len() / 4) {
        let bytes = &mut block[..chunk.len() * 4];
        bytes.fill(0);
        stream.apply_keystream(bytes);
        let words = bytes
            .chunks_exact(4)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
        // Two loops rather than a branch per word, so that each vectorises.
        if negate {
            chunk
                .iter_mut()
                .zip(words)
                .for_each(|(a, m)| *a = a.wrapping_sub(m));
        } else {
            chunk
                .iter_mut()
                .zip(words)
                .for_each(|(a, m)| *a = a.wrapping_add(m));
        }
    }
}

/// The public key of an X25519 secret.
pub(crate) fn public_of(secret: &StaticSecret) -> [u8; 32] {
    PublicKey::from(secret).to_bytes()
}
