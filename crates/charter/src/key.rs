//! One written form per member key, so that a key cannot be listed (or counted) twice.

use harambee_identity::PublicKey;

use crate::CharterError;

/// A member's key in its one written form: 64 lower-case hex characters of a valid ed25519
/// public key, in the point's canonical encoding.
///
/// Upper-case hex is accepted and lowered; anything else (another length, whitespace, a
/// prefix, bytes that are not a point, or a non-canonical encoding of one) is refused, because
/// a key that can be written two ways can be listed twice and then counted twice towards the
/// amendment quorum.
///
/// ```
/// let key = "5DCF1C6C99E5C92FB746C21A528D8335944D9A1C80593147D33B445D927A2549";
/// assert_eq!(
///     harambee_charter::normalise_key(key).unwrap(),
///     key.to_ascii_lowercase()
/// );
/// assert!(harambee_charter::normalise_key(&format!(" {key}")).is_err());
/// ```
pub fn normalise_key(key: &str) -> Result<String, CharterError> {
    let refuse = |why: &str| {
        Err(CharterError::Invalid(format!(
            "{key:?} is not an ed25519 public key: {why}"
        )))
    };
    let mut bytes = [0u8; 32];
    if key.len() != 64 || hex::decode_to_slice(key, &mut bytes).is_err() {
        return refuse("expected exactly 64 hex characters");
    }
    if !is_canonical_encoding(&bytes) {
        return refuse("a non-canonical encoding of a point (y is not reduced modulo p)");
    }
    if PublicKey::from_bytes(&bytes).is_err() {
        return refuse("not a point on the curve");
    }
    Ok(hex::encode(bytes))
}

/// Whether the 255-bit y coordinate is below p = 2^255 - 19. The 19 values at or above it
/// decode to the same points as y - p, so they would be a second spelling of those keys.
fn is_canonical_encoding(bytes: &[u8; 32]) -> bool {
    let y_at_least_p =
        bytes[0] >= 0xed && bytes[1..31].iter().all(|&b| b == 0xff) && bytes[31] & 0x7f == 0x7f;
    !y_at_least_p
}

/// Whether two written keys are the same key (what [`normalise_key`] makes equal).
pub(crate) fn same_key(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}
