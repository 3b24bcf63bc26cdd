use ed25519_dalek::Signature;
use harambee_params::Digest;
use serde::{Deserialize, Serialize};

use crate::{IdentityError, PublicKey};

/// Domain separation: these signatures can never be mistaken for another signed structure.
const DOMAIN: &[u8] = b"harambee.update-statement.v1\0";

/// What a participant vouches for when it submits an update.
///
/// Canonical bytes, in order (integers little-endian): the 29 bytes
/// `harambee.update-statement.v1\0`; the federation id's length (`u32`) and UTF-8 bytes; the
/// round (`u64`); the base digest (32 bytes); the update digest (32 bytes); the sample count
/// (`u64`); then, under verifiable training, the [`TrainingRecipe`]'s bytes.
#[derive(Debug, Clone, PartialEq)]
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
    /// Under verifiable training: how the update was made, so that anyone can replay it.
    /// Its bytes follow the rest (see [`TrainingRecipe::to_bytes`]); absent, the statement's
    /// bytes are those of statements made before recipes existed.
    pub recipe: Option<TrainingRecipe>,
}

/// What a worker under verifiable training vouches it did: from the statement's base, train
/// reproducibly on shard `shard_index` of `shard_count` of the public corpus for
/// `local_steps` steps of `batch_size` examples at `learning_rate`, shuffling with `seed`,
/// the optimiser starting afresh. Together with the public data this fixes the update bit
/// for bit, so an update that does not replay is evidence against its signer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingRecipe {
    /// The shard trained on.
    pub shard_index: u32,
    /// Shards the corpus was cut into.
    pub shard_count: u32,
    /// The seed of the worker's shuffling.
    pub seed: u64,
    /// Passes over the shard (ended early by `local_steps`).
    pub epochs: u32,
    /// Optimiser steps taken (0: whole epochs).
    pub local_steps: u32,
    /// Examples per step.
    pub batch_size: u32,
    /// The local learning rate.
    pub learning_rate: f32,
    /// FedProx's μ (0 without).
    pub proximal_mu: f32,
}

impl TrainingRecipe {
    /// Its canonical bytes (little-endian; the rates as their `f32` bits): the 19 bytes
    /// `harambee.recipe.v1\0`, then shard index and count (`u32`), seed (`u64`), epochs,
    /// steps, batch size, learning rate and μ (`u32` each).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = RECIPE_DOMAIN.to_vec();
        out.extend_from_slice(&self.shard_index.to_le_bytes());
        out.extend_from_slice(&self.shard_count.to_le_bytes());
        out.extend_from_slice(&self.seed.to_le_bytes());
        for word in [
            self.epochs,
            self.local_steps,
            self.batch_size,
            self.learning_rate.to_bits(),
            self.proximal_mu.to_bits(),
        ] {
            out.extend_from_slice(&word.to_le_bytes());
        }
        out
    }
}

/// Marks the recipe's bytes inside an update statement.
const RECIPE_DOMAIN: &[u8] = b"harambee.recipe.v1\0";

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
        if let Some(recipe) = &self.recipe {
            out.extend_from_slice(&recipe.to_bytes());
        }
        out
    }
}

/// An update statement with its signer and signature, as it travels.
#[derive(Debug, Clone, PartialEq)]
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
