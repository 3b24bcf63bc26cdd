//! Steward-signed HTTP requests: what is signed, how it travels, how it is checked.

use harambee_identity::{Identity, PublicKey};
use sha2::{Digest as _, Sha256};
use thiserror::Error;

/// The steward's public key (64 hex characters).
pub const HEADER_STEWARD: &str = "x-harambee-steward";
/// When the steward signed (milliseconds since the Unix epoch, decimal).
pub const HEADER_TIMESTAMP: &str = "x-harambee-timestamp";
/// A random nonce (32 hex characters, 16 bytes), never to be used twice.
pub const HEADER_NONCE: &str = "x-harambee-nonce";
/// The ed25519 signature over [`StewardRequest::to_bytes`] (128 hex characters).
pub const HEADER_SIGNATURE: &str = "x-harambee-signature";

/// How far a request's timestamp may be from the coordinator's clock, either way. Beyond it a
/// request is refused as stale, so a captured request is only good for this long, and the
/// coordinator refuses its nonce for ever anyway.
pub const MAX_SKEW_MS: u64 = 5 * 60 * 1000;

/// Domain separation: a request signature can never pass for any other signed statement.
const DOMAIN: &[u8] = b"harambee.steward-request.v1\0";

/// What a steward signs to change a federation.
///
/// Canonical bytes, in order (integers little-endian): the 28 bytes
/// `harambee.steward-request.v1\0`; then the federation id, the HTTP method (upper case) and
/// the request path (as the coordinator receives it, without a query), each as its length
/// (`u32`) and UTF-8 bytes; the SHA-256 of the body (32 bytes); the timestamp (`u64`, ms since
/// the Unix epoch); the nonce (16 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StewardRequest<'a> {
    /// The federation's id: a request for one federation is worthless at another.
    pub federation: &'a str,
    /// `POST`.
    pub method: &'a str,
    /// `/api/admin/pause`, for instance.
    pub path: &'a str,
    /// The exact body sent.
    pub body: &'a [u8],
    /// When it was signed.
    pub timestamp_ms: u64,
    /// Fresh randomness, so that two identical requests still differ.
    pub nonce: [u8; 16],
}

impl StewardRequest<'_> {
    /// The canonical bytes that are signed.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = DOMAIN.to_vec();
        for part in [self.federation, self.method, self.path] {
            out.extend_from_slice(&(part.len() as u32).to_le_bytes());
            out.extend_from_slice(part.as_bytes());
        }
        out.extend_from_slice(&Sha256::digest(self.body));
        out.extend_from_slice(&self.timestamp_ms.to_le_bytes());
        out.extend_from_slice(&self.nonce);
        out
    }

    /// Signs the request with a steward's key: the four headers to send with it.
    pub fn sign(&self, steward: &Identity) -> SignedHeaders {
        SignedHeaders {
            steward: steward.public().to_string(),
            timestamp_ms: self.timestamp_ms,
            nonce: hex::encode(self.nonce),
            signature: hex::encode(steward.sign_raw(&self.to_bytes())),
        }
    }
}

/// The signature headers of a steward's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// [`HEADER_STEWARD`].
    pub steward: String,
    /// [`HEADER_TIMESTAMP`].
    pub timestamp_ms: u64,
    /// [`HEADER_NONCE`].
    pub nonce: String,
    /// [`HEADER_SIGNATURE`].
    pub signature: String,
}

/// A request whose signature checked out, by a steward of the charter in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorised {
    /// The steward's key (hex).
    pub steward: String,
    /// The request's nonce (hex), which the coordinator must never accept again.
    pub nonce: String,
    /// When it was signed.
    pub timestamp_ms: u64,
}

/// Why a request is not accepted as a steward's.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AuthError {
    /// A signature header is missing: the request is unsigned.
    #[error(
        "unsigned request: the {0} header is missing; changes need a steward's signature (harambee admin)"
    )]
    Missing(&'static str),
    /// A signature header does not parse.
    #[error("the {header} header is malformed: {reason}")]
    Malformed {
        /// The header.
        header: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The key is not a steward's in the charter in force.
    #[error("key {0} is not a steward of this federation's charter")]
    NotSteward(String),
    /// The signature does not cover this request with this key.
    #[error(
        "bad signature: it does not cover this federation, method, path, body, timestamp and nonce with this key"
    )]
    BadSignature,
    /// The timestamp is too far from the coordinator's clock.
    #[error(
        "stale request: signed at {timestamp_ms} ms, the coordinator's clock says {now_ms} ms (at most 300 s apart); sign a fresh request and check the clock"
    )]
    Stale {
        /// When it says it was signed.
        timestamp_ms: u64,
        /// The coordinator's clock.
        now_ms: u64,
    },
}

impl SignedHeaders {
    /// Reads the four headers through `header` (a lookup by lower-case name).
    pub fn parse<'h>(header: impl Fn(&str) -> Option<&'h str>) -> Result<Self, AuthError> {
        let get = |name: &'static str| header(name).ok_or(AuthError::Missing(name));
        let timestamp_ms = get(HEADER_TIMESTAMP)?
            .parse()
            .map_err(|_| AuthError::Malformed {
                header: HEADER_TIMESTAMP,
                reason: "not a decimal count of milliseconds",
            })?;
        Ok(SignedHeaders {
            steward: get(HEADER_STEWARD)?.to_string(),
            timestamp_ms,
            nonce: get(HEADER_NONCE)?.to_string(),
            signature: get(HEADER_SIGNATURE)?.to_string(),
        })
    }

    /// The headers as (name, value) pairs, to send.
    pub fn pairs(&self) -> [(&'static str, String); 4] {
        [
            (HEADER_STEWARD, self.steward.clone()),
            (HEADER_TIMESTAMP, self.timestamp_ms.to_string()),
            (HEADER_NONCE, self.nonce.clone()),
            (HEADER_SIGNATURE, self.signature.clone()),
        ]
    }

    /// Checks that these headers sign `method path body` for `federation`, by one of
    /// `stewards` (hex keys), within [`MAX_SKEW_MS`] of `now_ms`. Replays are the caller's to
    /// refuse, by the returned nonce.
    pub fn verify(
        &self,
        federation: &str,
        method: &str,
        path: &str,
        body: &[u8],
        stewards: &[String],
        now_ms: u64,
    ) -> Result<Authorised, AuthError> {
        let key: PublicKey = self.steward.parse().map_err(|_| AuthError::Malformed {
            header: HEADER_STEWARD,
            reason: "not an ed25519 public key in 64 hex characters",
        })?;
        let nonce: [u8; 16] = hex::decode(&self.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or(AuthError::Malformed {
                header: HEADER_NONCE,
                reason: "not 16 bytes in 32 hex characters",
            })?;
        let signature = hex::decode(&self.signature).map_err(|_| AuthError::Malformed {
            header: HEADER_SIGNATURE,
            reason: "not hex",
        })?;
        let canonical = key.to_string();
        if !stewards.contains(&canonical) {
            return Err(AuthError::NotSteward(canonical));
        }
        let request = StewardRequest {
            federation,
            method,
            path,
            body,
            timestamp_ms: self.timestamp_ms,
            nonce,
        };
        key.verify_raw(&request.to_bytes(), &signature)
            .map_err(|_| AuthError::BadSignature)?;
        // Checked after the signature, so that a forged request never learns the clock.
        if self.timestamp_ms.abs_diff(now_ms) > MAX_SKEW_MS {
            return Err(AuthError::Stale {
                timestamp_ms: self.timestamp_ms,
                now_ms,
            });
        }
        Ok(Authorised {
            steward: canonical,
            nonce: hex::encode(nonce),
            timestamp_ms: self.timestamp_ms,
        })
    }
}

/// Milliseconds since the Unix epoch, by this machine's clock.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
