//! Shamir secret sharing of 32-byte secrets over the prime field GF(2^61 − 1).
//!
//! A secret is cut into five 7-byte limbs, each below the field's modulus, and each limb is
//! shared with its own random polynomial of degree `threshold − 1`. A holder's share is the
//! five polynomials evaluated at its point `x` (its participant index plus one, never zero).
//! Any `threshold` shares give the secret back by Lagrange interpolation at zero; fewer are
//! consistent with every possible secret. Arithmetic uses no secret-dependent branches or
//! table look-ups.

use rand::CryptoRng;
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

/// The field's modulus, the Mersenne prime 2^61 − 1.
pub const MODULUS: u64 = (1 << 61) - 1;

/// Bytes per limb: 7 bytes (56 bits) always lie below the 61-bit modulus.
const LIMB_BYTES: usize = 7;

/// Limbs per secret: five 7-byte limbs cover 32 bytes (with three bytes to spare).
pub const LIMBS: usize = 5;

/// One holder's share of one 32-byte secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Zeroize)]
pub struct Share {
    /// The holder's evaluation point, never 0 (0 is where the secret sits).
    pub x: u64,
    /// The limbs' polynomials evaluated at `x`, each below [`MODULUS`].
    pub y: [u64; LIMBS],
}

/// Why shares could not be combined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShamirError {
    /// Fewer shares than the threshold.
    #[error("{got} shares cannot recover a secret shared with threshold {threshold}")]
    TooFew {
        /// Shares given.
        got: usize,
        /// Shares needed.
        threshold: usize,
    },
    /// Two shares at the same point, a share at zero, or a value outside the field.
    #[error("malformed share set: {0}")]
    Malformed(&'static str),
    /// The extra shares do not lie on the polynomial the first ones define.
    #[error("share at x = {x} is inconsistent with the others")]
    Inconsistent {
        /// The point whose share disagrees.
        x: u64,
    },
    /// The limbs decode to more than 32 bytes.
    #[error("the recovered value is not a 32-byte secret")]
    NotASecret,
}

fn add(a: u64, b: u64) -> u64 {
    reduce(u128::from(a) + u128::from(b))
}

fn sub(a: u64, b: u64) -> u64 {
    reduce(u128::from(a) + u128::from(MODULUS) - u128::from(b))
}

fn mul(a: u64, b: u64) -> u64 {
    reduce(u128::from(a) * u128::from(b))
}

/// Reduces a value below 2^122 modulo 2^61 − 1 without branching on it.
fn reduce(v: u128) -> u64 {
    let m = u128::from(MODULUS);
    let folded = (v & m) + (v >> 61);
    let folded = (folded & m) + (folded >> 61);
    // `folded` < 2^62: subtract the modulus once when it is at least the modulus.
    let r = folded as u64;
    let (minus, borrow) = r.overflowing_sub(MODULUS);
    let keep_r = u64::from(borrow).wrapping_neg();
    (r & keep_r) | (minus & !keep_r)
}

/// a^(p−2): the inverse by Fermat's little theorem, a fixed sequence of multiplications.
fn inverse(a: u64) -> u64 {
    let mut result = 1u64;
    let mut base = a;
    let mut exp = MODULUS - 2;
    while exp > 0 {
        let bit = exp & 1;
        let product = mul(result, base);
        let take = bit.wrapping_neg();
        result = (product & take) | (result & !take);
        base = mul(base, base);
        exp >>= 1;
    }
    result
}

fn limbs_of(secret: &[u8; 32]) -> [u64; LIMBS] {
    let mut padded = [0u8; LIMBS * LIMB_BYTES];
    padded[..32].copy_from_slice(secret);
    let mut limbs = [0u64; LIMBS];
    for (limb, chunk) in limbs.iter_mut().zip(padded.chunks_exact(LIMB_BYTES)) {
        let mut bytes = [0u8; 8];
        bytes[..LIMB_BYTES].copy_from_slice(chunk);
        *limb = u64::from_le_bytes(bytes);
    }
    padded.zeroize();
    limbs
}

fn secret_of(limbs: &[u64; LIMBS]) -> Result<[u8; 32], ShamirError> {
    let mut padded = [0u8; LIMBS * LIMB_BYTES];
    for (limb, chunk) in limbs.iter().zip(padded.chunks_exact_mut(LIMB_BYTES)) {
        if *limb >> (8 * LIMB_BYTES) != 0 {
            return Err(ShamirError::NotASecret);
        }
        chunk.copy_from_slice(&limb.to_le_bytes()[..LIMB_BYTES]);
    }
    if padded[32..].iter().any(|&b| b != 0) {
        return Err(ShamirError::NotASecret);
    }
    let mut secret = [0u8; 32];
    secret.copy_from_slice(&padded[..32]);
    padded.zeroize();
    Ok(secret)
}

/// A uniformly random field element, by rejection of the rare values at or above the modulus.
fn random_element(rng: &mut impl CryptoRng) -> u64 {
    loop {
        let v = rng.next_u64() >> 3;
        if v < MODULUS {
            return v;
        }
    }
}

/// Shares `secret` among the holders at `points` so that any `threshold` of them recover it.
///
/// # Panics
/// If `threshold` is 0 or above the number of points, or a point is 0 or not below the
/// modulus: callers derive these from a checked configuration.
pub fn split(
    secret: &[u8; 32],
    threshold: usize,
    points: &[u64],
    rng: &mut impl CryptoRng,
) -> Vec<Share> {
    assert!(
        threshold >= 1 && threshold <= points.len(),
        "threshold out of range"
    );
    assert!(points.iter().all(|&x| x != 0 && x < MODULUS), "bad point");
    let mut limbs = limbs_of(secret);
    // coefficients[l][0] is limb l; the others are random.
    let mut coefficients: Vec<[u64; LIMBS]> = (0..threshold)
        .map(|degree| {
            if degree == 0 {
                limbs
            } else {
                std::array::from_fn(|_| random_element(rng))
            }
        })
        .collect();
    let shares = points
        .iter()
        .map(|&x| Share {
            x,
            y: std::array::from_fn(|limb| evaluate(&coefficients, limb, x)),
        })
        .collect();
    coefficients.zeroize();
    limbs.zeroize();
    shares
}

/// Horner's rule for limb `limb`'s polynomial at `x`.
fn evaluate(coefficients: &[[u64; LIMBS]], limb: usize, x: u64) -> u64 {
    coefficients
        .iter()
        .rev()
        .fold(0, |acc, c| add(mul(acc, x), c[limb]))
}

/// The Lagrange interpolation of `shares` at `at`, limb by limb.
fn interpolate(shares: &[Share], at: u64) -> [u64; LIMBS] {
    let mut result = [0u64; LIMBS];
    for (i, si) in shares.iter().enumerate() {
        let mut numerator = 1u64;
        let mut denominator = 1u64;
        for (j, sj) in shares.iter().enumerate() {
            if i != j {
                numerator = mul(numerator, sub(at, sj.x));
                denominator = mul(denominator, sub(si.x, sj.x));
            }
        }
        let basis = mul(numerator, inverse(denominator));
        for (r, y) in result.iter_mut().zip(si.y) {
            *r = add(*r, mul(basis, y));
        }
    }
    result
}

/// Recovers the secret from at least `threshold` shares, and checks that every share beyond
/// the first `threshold` lies on the same polynomials (a corrupted share is named).
pub fn combine(shares: &[Share], threshold: usize) -> Result<[u8; 32], ShamirError> {
    if threshold == 0 || shares.len() < threshold {
        return Err(ShamirError::TooFew {
            got: shares.len(),
            threshold,
        });
    }
    let mut seen = std::collections::BTreeSet::new();
    for s in shares {
        if s.x == 0 || s.x >= MODULUS {
            return Err(ShamirError::Malformed(
                "a share's point is 0 or outside the field",
            ));
        }
        if s.y.iter().any(|&y| y >= MODULUS) {
            return Err(ShamirError::Malformed(
                "a share's value is outside the field",
            ));
        }
        if !seen.insert(s.x) {
            return Err(ShamirError::Malformed("two shares at the same point"));
        }
    }
    let (basis, extra) = shares.split_at(threshold);
    for s in extra {
        if interpolate(basis, s.x) != s.y {
            return Err(ShamirError::Inconsistent { x: s.x });
        }
    }
    secret_of(&interpolate(basis, 0))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn field_arithmetic_matches_u128() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        for _ in 0..1000 {
            let a = random_element(&mut rng);
            let b = random_element(&mut rng);
            let m = u128::from(MODULUS);
            assert_eq!(u128::from(mul(a, b)), u128::from(a) * u128::from(b) % m);
            assert_eq!(u128::from(add(a, b)), (u128::from(a) + u128::from(b)) % m);
            assert_eq!(
                u128::from(sub(a, b)),
                (u128::from(a) + m - u128::from(b)) % m
            );
            if a != 0 {
                assert_eq!(mul(a, inverse(a)), 1);
            }
        }
        assert_eq!(reduce(u128::from(MODULUS)), 0);
        assert_eq!(reduce(u128::from(MODULUS - 1) * u128::from(MODULUS - 1)), 1);
    }

    #[test]
    fn limbs_round_trip() {
        let secret: [u8; 32] = std::array::from_fn(|i| (i * 37 + 255) as u8);
        assert_eq!(secret_of(&limbs_of(&secret)).unwrap(), secret);
        assert_eq!(
            secret_of(&[MODULUS - 1; LIMBS]),
            Err(ShamirError::NotASecret)
        );
    }
}
