//! Proof of who makes a call: every call a member makes carries, in the
//! `x-harambee-proof-bin` metadata, its key, a timestamp, a fresh nonce and an ed25519
//! signature over [`call_message`]: the federation, the method, the timestamp, the nonce and
//! the SHA-256 of the request's protobuf bytes (for a client stream, of its header message).
//!
//! A public key alone proves nothing (the ledger and the dashboard publish every member's),
//! so a coordinator refuses a call without a valid proof, one whose timestamp is far from its
//! clock, and one whose nonce it has already seen from that key.
//!
//! This module holds the byte formats and the client's signing ([`prove`], [`signed`]),
//! shared by every client; the replay window and rate limits are the coordinator's.
//!
//! ```
//! use harambee_identity::Identity;
//! use harambee_proto::{CallProof, auth, v1};
//!
//! let me = Identity::generate().unwrap();
//! let beat = v1::HeartbeatRequest { public_key: me.public().to_bytes().to_vec() };
//! let request = auth::signed(&me, "fed-1", auth::method::HEARTBEAT, beat.clone());
//! let proof = CallProof::of(&request).unwrap().unwrap();
//! let message = proof.message("fed-1", auth::method::HEARTBEAT, &auth::body_digest(&beat));
//! assert!(me.public().verify_raw(&message, &proof.signature).is_ok());
//! // The same proof says nothing about another method.
//! let other = proof.message("fed-1", auth::method::GET_TASK, &auth::body_digest(&beat));
//! assert!(me.public().verify_raw(&other, &proof.signature).is_err());
//! ```

use harambee_identity::Identity;
use sha2::{Digest as _, Sha256};
use thiserror::Error;

/// The gRPC metadata key that carries a [`CallProof`] (binary metadata: base64 on the wire).
pub const PROOF_METADATA: &str = "x-harambee-proof-bin";

/// The methods, as gRPC paths: what a proof names, so that one call's proof cannot be
/// replayed as another's.
pub mod method {
    /// `Coordinator.Enrol`.
    pub const ENROL: &str = "/harambee.v1.Coordinator/Enrol";
    /// `Coordinator.GetTask`.
    pub const GET_TASK: &str = "/harambee.v1.Coordinator/GetTask";
    /// `Coordinator.FetchParameters`.
    pub const FETCH_PARAMETERS: &str = "/harambee.v1.Coordinator/FetchParameters";
    /// `Coordinator.SubmitUpdate` (the proof covers the header message).
    pub const SUBMIT_UPDATE: &str = "/harambee.v1.Coordinator/SubmitUpdate";
    /// `Coordinator.ReportEvaluation`.
    pub const REPORT_EVALUATION: &str = "/harambee.v1.Coordinator/ReportEvaluation";
    /// `Coordinator.Heartbeat`.
    pub const HEARTBEAT: &str = "/harambee.v1.Coordinator/Heartbeat";
    /// `Coordinator.SecAggStep`.
    pub const SEC_AGG_STEP: &str = "/harambee.v1.Coordinator/SecAggStep";
    /// `Coordinator.SecAggMasked` (the proof covers the header message).
    pub const SEC_AGG_MASKED: &str = "/harambee.v1.Coordinator/SecAggMasked";
    /// `Coordinator.GetTreeHead`.
    pub const GET_TREE_HEAD: &str = "/harambee.v1.Coordinator/GetTreeHead";
}

/// Bytes of an encoded [`CallProof`]: key, timestamp, nonce, signature.
pub const PROOF_BYTES: usize = 32 + 8 + 16 + 64;

/// Domain separation: a call proof can never be mistaken for an update statement, an
/// enrolment or a secure-aggregation step, which the same key also signs.
const DOMAIN: &[u8] = b"harambee.call.v1\0";

/// A member's proof that it makes this call now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallProof {
    /// The caller's ed25519 public key.
    pub key: [u8; 32],
    /// The caller's clock, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Fresh random bytes: a coordinator accepts each (key, nonce) once.
    pub nonce: [u8; 16],
    /// Ed25519 signature over [`call_message`].
    pub signature: [u8; 64],
}

/// A proof that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The metadata value is not [`PROOF_BYTES`] long.
    #[error("a call proof is {PROOF_BYTES} bytes, not {0}")]
    Length(usize),
}

impl CallProof {
    /// The proof's bytes, as carried in [`PROOF_METADATA`].
    pub fn to_bytes(&self) -> [u8; PROOF_BYTES] {
        let mut out = [0u8; PROOF_BYTES];
        out[..32].copy_from_slice(&self.key);
        out[32..40].copy_from_slice(&self.timestamp_ms.to_le_bytes());
        out[40..56].copy_from_slice(&self.nonce);
        out[56..].copy_from_slice(&self.signature);
        out
    }

    /// Decodes untrusted bytes; any value of the right length decodes (the signature is
    /// checked separately, against [`call_message`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ProofError> {
        let bytes: &[u8; PROOF_BYTES] = bytes
            .try_into()
            .map_err(|_| ProofError::Length(bytes.len()))?;
        let mut proof = CallProof {
            key: [0; 32],
            timestamp_ms: 0,
            nonce: [0; 16],
            signature: [0; 64],
        };
        proof.key.copy_from_slice(&bytes[..32]);
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&bytes[32..40]);
        proof.timestamp_ms = u64::from_le_bytes(ts);
        proof.nonce.copy_from_slice(&bytes[40..56]);
        proof.signature.copy_from_slice(&bytes[56..]);
        Ok(proof)
    }

    /// The bytes this proof's signature must cover, for a call of `method` in `federation`
    /// whose request body (protobuf) hashes to `body`.
    pub fn message(&self, federation: &str, method: &str, body: &[u8; 32]) -> Vec<u8> {
        call_message(
            federation,
            method,
            &self.key,
            self.timestamp_ms,
            &self.nonce,
            body,
        )
    }

    /// Puts the proof into a request's metadata.
    pub fn attach<T>(&self, request: &mut tonic::Request<T>) {
        request.metadata_mut().insert_bin(
            PROOF_METADATA,
            tonic::metadata::MetadataValue::from_bytes(&self.to_bytes()),
        );
    }

    /// The proof a request carries: `Ok(None)` when it carries none.
    pub fn of<T>(request: &tonic::Request<T>) -> Result<Option<Self>, ProofError> {
        let Some(value) = request.metadata().get_bin(PROOF_METADATA) else {
            return Ok(None);
        };
        // Undecodable base64 is as wrong as a wrong length.
        let bytes = value.to_bytes().map_err(|_| ProofError::Length(0))?;
        Self::from_bytes(&bytes).map(Some)
    }
}

/// SHA-256 of a request's protobuf bytes: what a proof binds the call's content with.
pub fn body_digest(message: &impl prost::Message) -> [u8; 32] {
    Sha256::digest(message.encode_to_vec()).into()
}

/// The canonical bytes a member signs to make a call: a domain tag, then the federation and
/// the method (each length-prefixed, u32 little-endian), the key, the timestamp (u64
/// little-endian), the nonce and the body digest.
pub fn call_message(
    federation: &str,
    method: &str,
    key: &[u8; 32],
    timestamp_ms: u64,
    nonce: &[u8; 16],
    body: &[u8; 32],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(DOMAIN.len() + 8 + federation.len() + method.len() + 88);
    out.extend_from_slice(DOMAIN);
    for field in [federation, method] {
        out.extend_from_slice(&(field.len() as u32).to_le_bytes());
        out.extend_from_slice(field.as_bytes());
    }
    out.extend_from_slice(key);
    out.extend_from_slice(&timestamp_ms.to_le_bytes());
    out.extend_from_slice(nonce);
    out.extend_from_slice(body);
    out
}

/// `inner` as a request that proves `identity` makes the call now: signed over the
/// federation, the method, the current time, a fresh random nonce and `body` (the digest of
/// the request's protobuf bytes, or of a client stream's header). Sign each attempt anew: a
/// coordinator accepts a nonce once, so a retried request must not reuse a proof.
pub fn prove<T>(
    identity: &Identity,
    federation: &str,
    method: &str,
    body: [u8; 32],
    inner: T,
) -> tonic::Request<T> {
    let mut nonce = [0u8; 16];
    // Without the OS's randomness the nonce is still unique enough from the clock's
    // nanoseconds: a repeat is refused as a replay, never accepted twice.
    if getrandom::fill(&mut nonce).is_err() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        nonce.copy_from_slice(&now.to_le_bytes());
    }
    let mut proof = CallProof {
        key: identity.public().to_bytes(),
        timestamp_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        nonce,
        signature: [0; 64],
    };
    proof.signature = identity.sign_raw(&proof.message(federation, method, &body));
    let mut request = tonic::Request::new(inner);
    proof.attach(&mut request);
    request
}

/// A unary request with its proof (see [`prove`]).
pub fn signed<M: prost::Message>(
    identity: &Identity,
    federation: &str,
    method: &str,
    message: M,
) -> tonic::Request<M> {
    prove(identity, federation, method, body_digest(&message), message)
}
