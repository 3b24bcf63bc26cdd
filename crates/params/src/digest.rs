use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::ParamSet;

/// Domain separation, so a parameter digest can never collide with another hashed structure.
const DOMAIN: &[u8] = b"harambee.params.v1\0";

/// A SHA-256 digest of a [`ParamSet`] in its canonical form.
///
/// The canonical form, in order (integers little-endian):
/// 1. the 19 bytes `harambee.params.v1\0`;
/// 2. the number of tensors, `u32`;
/// 3. for each tensor in layout order: its name's byte length (`u32`) and UTF-8 bytes, its rank
///    (`u32`), each dimension (`u64`), then its values as IEEE-754 `f32` little-endian.
///
/// The digest therefore changes with any name, shape, order or bit of any value (including the
/// sign of zero and NaN payloads), and is the same on every platform.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    pub(crate) fn of_params(params: &ParamSet) -> Self {
        let mut h = Sha256::new();
        h.update(DOMAIN);
        h.update((params.layout().tensors().len() as u32).to_le_bytes());
        for (spec, values) in params.iter() {
            h.update((spec.name.len() as u32).to_le_bytes());
            h.update(spec.name.as_bytes());
            h.update((spec.shape.len() as u32).to_le_bytes());
            for &d in &spec.shape {
                h.update((d as u64).to_le_bytes());
            }
            hash_f32s(&mut h, values);
        }
        Digest(h.finalize().into())
    }

    /// SHA-256 of arbitrary bytes (used for encoded blobs).
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Digest(Sha256::digest(bytes).into())
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex characters.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Digest(out))
    }
}

/// Feeds values through a fixed stack buffer: one pass, no allocation the size of the model.
fn hash_f32s(h: &mut Sha256, values: &[f32]) {
    let mut buf = [0u8; 4096];
    for chunk in values.chunks(buf.len() / 4) {
        for (dst, v) in buf.chunks_exact_mut(4).zip(chunk) {
            dst.copy_from_slice(&v.to_le_bytes());
        }
        h.update(&buf[..chunk.len() * 4]);
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", &self.to_hex()[..16])
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}
