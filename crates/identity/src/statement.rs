use ed25519_dalek::Signature;
use harambee_params::Digest;

use crate::{IdentityError, PublicKey};

/// Domain separation: these signatures can never be mistaken for another signed structure.
const DOMAIN: &[u8] = b"harambee.update-statement.v1\0";

/// What a participant vouches for when it submits an update.
///
/// Canonical bytes, in order (integers little-endian): the 29 bytes
/// `harambee.update-statement.v1\0`; the federation id's length (`u32`) and UTF-8 bytes; the
/// round (`u64`); the base digest (32 bytes); the update digest (32 bytes); the sample count
/// (`u64`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateStatement {
    /// The federation's id (its charter's name or hash).
    pub federation: String,
    /// The round the update is for.
    pub round: u64,
    /// Digest of the global parameters the participant started from.
    pub base: Digest,
    /// Digest of the parameters it submits.
    pub update: Digest,
    /// Examples it trained on (FedAvg's weight, so it must be vouched for too).
    pub num_samples: u64,
}

impl UpdateStatement {
    /// The canonical bytes that are signed.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(DOMAIN.len() + 4 + self.federation.len() + 8 + 64 + 8);
        out.extend_from_slice(DOMAIN);
        out.extend_from_slice(&(self.federation.len() as u32).to_le_bytes());
        out.extend_from_slice(self.federation.as_bytes());
        out.extend_from_slice(&self.round.to_le_bytes());
        out.extend_from_slice(&self.base.0);
        out.extend_from_slice(&self.update.0);
        out.extend_from_slice(&self.num_samples.to_le_bytes());
        out
    }
}

/// An update statement with its signer and signature, as it travels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedUpdate {
    /// What is vouched for.
    pub statement: UpdateStatement,
    /// Who vouches.
    pub signer: PublicKey,
    /// The ed25519 signature over [`UpdateStatement::to_bytes`].
    pub signature: [u8; 64],
}

impl SignedUpdate {
    /// Checks the signature (strictly: no malleable signatures, no weak keys).
    pub fn verify(&self) -> Result<(), IdentityError> {
        let signature = Signature::from_bytes(&self.signature);
        self.signer
            .0
            .verify_strict(&self.statement.to_bytes(), &signature)
            .map_err(|_| IdentityError::BadSignature)
    }
}
