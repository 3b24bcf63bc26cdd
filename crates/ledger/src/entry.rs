use harambee_identity::TrainingRecipe;
use serde::{Deserialize, Serialize};

use crate::LedgerError;

/// One record of the ledger. Digests and keys are lower-case hex.
///
/// The canonical encoding (what is hashed into the tree) is compact JSON: the fields in the
/// order documented here, `type` first, no whitespace, integers as JSON integers, the learning
/// rates as the shortest decimal that reads back to the same `f32`. [`Entry::parse`] refuses
/// any bytes that are not exactly the canonical encoding of what they say.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Entry {
    /// The first entry: which federation, under which settings, run by which key.
    Genesis {
        /// The federation's id.
        federation_id: String,
        /// Its human name.
        name: String,
        /// SHA-256 of the settings file (`federation.toml`) as it was at the start.
        config_sha256: String,
        /// The charter in force, in its canonical encoding (compact JSON).
        charter: String,
        /// The coordinator's ed25519 public key, which signs every tree head.
        coordinator_key: String,
    },
    /// The charter was replaced, with the stewards' signatures that made it valid.
    Amendment {
        /// Hash of the charter replaced.
        amends: String,
        /// The new charter, canonical JSON.
        charter: String,
        /// (steward key, signature) pairs, hex.
        signatures: Vec<(String, String)>,
    },
    /// A participant joined.
    Enrolment {
        /// Its number.
        participant: u64,
        /// Its ed25519 public key.
        public_key: String,
        /// The name it gave.
        name: String,
    },
    /// A member committed to its local data: the RFC 6962 Merkle root over the sorted leaf
    /// hashes of its examples (`harambee_participant::data_root`), signed with its
    /// enrolment. An auditor given the data in a dispute recomputes it.
    DataCommitment {
        /// Who.
        participant: u64,
        /// The root, hex.
        data_root: String,
    },
    /// A round (attempt) opened.
    RoundOpen {
        /// The round.
        round: u64,
        /// The attempt.
        attempt: u32,
        /// Selected participants, ascending.
        selected: Vec<u64>,
        /// Digest of the parameters it starts from.
        base: String,
        /// Local epochs asked for.
        epochs: u32,
        /// Local batch size.
        batch_size: u32,
        /// Local learning rate.
        learning_rate: f32,
        /// FedProx's μ.
        proximal_mu: f32,
        /// Inner steps asked for (DiLoCo's H); absent when the round ran epochs instead, so
        /// entries written before it existed keep their bytes.
        #[serde(default, skip_serializing_if = "is_zero")]
        local_steps: u32,
    },
    /// A participant's update, as it vouched for it: digests and counts, never data.
    UpdateCommitment {
        /// The round.
        round: u64,
        /// The attempt.
        attempt: u32,
        /// Who.
        participant: u64,
        /// Canonical digest of the parameters it sent.
        update_digest: String,
        /// Examples it trained on.
        num_samples: u64,
        /// Its ed25519 signature over the update statement (federation, round, base, update,
        /// samples, and the recipe when there is one).
        signature: String,
        /// Under verifiable training: how the worker says it made the update, which anyone
        /// holding the public corpus can replay (`ledger verify --replay-training`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recipe: Option<TrainingRecipe>,
    },
    /// A worker's update did not replay: the coordinator replayed the recipe the worker
    /// signed, from the base it signed, and got other parameters. The update was refused
    /// before aggregation and the worker removed. The worker's own signature makes this
    /// evidence anyone can check: replay the recipe and compare.
    Fraud {
        /// The round (in progress: its round entries follow).
        round: u64,
        /// The attempt.
        attempt: u32,
        /// Who.
        participant: u64,
        /// Digest of the parameters it trained from (the previous round's result).
        base: String,
        /// What it signed it did.
        recipe: TrainingRecipe,
        /// Canonical digest of the parameters it sent and signed.
        claimed: String,
        /// Canonical digest of the parameters the recipe gives.
        replayed: String,
        /// The sample count it signed.
        num_samples: u64,
        /// Its ed25519 signature over the update statement with the recipe.
        signature: String,
    },
    /// What a round produced.
    RoundResult {
        /// The round.
        round: u64,
        /// The strategy and its settings.
        strategy: String,
        /// The combined updates' digests, in participant order.
        inputs: Vec<String>,
        /// Digest of the resulting global parameters.
        output: String,
        /// Participant-level ε spent so far (at the charter's δ), when the charter sets a
        /// privacy budget.
        epsilon: Option<f64>,
    },
    /// A version published by buffered (FedBuff) aggregation: every result it applied, each
    /// with the version it trained from, and the new parameters. Self-contained, so that an
    /// auditor checks each signature and recomputes the step from this entry alone.
    BufferedStep {
        /// The version published (from 1).
        version: u64,
        /// Digest of the version it was computed from (`version − 1`).
        base: String,
        /// The results applied, in the order they arrived.
        inputs: Vec<BufferedInput>,
        /// Digest of the new parameters.
        output: String,
        /// Participant-level ε spent so far (at the charter's δ), when the charter sets a
        /// privacy budget (DP-FedBuff); absent otherwise.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epsilon: Option<f64>,
    },
    /// The federation's final model.
    Release {
        /// Rounds completed.
        rounds: u64,
        /// Digest of the released parameters.
        model_digest: String,
    },
}

/// One result a buffered step applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferedInput {
    /// Who trained.
    pub participant: u64,
    /// The version it trained from; it signed round `base_version + 1`.
    pub base_version: u64,
    /// Which piece of work this was (the task's attempt number; its promise names it).
    pub attempt: u32,
    /// Versions published between its start and its arrival: `version − 1 − base_version`.
    /// Its weight was `1 / sqrt(1 + staleness)`.
    pub staleness: u64,
    /// Canonical digest of its parameters, as decoded.
    pub update_digest: String,
    /// Examples it trained on.
    pub num_samples: u64,
    /// Its ed25519 signature over the update statement (federation, round
    /// `base_version + 1`, the base version's digest, update, samples).
    pub signature: String,
}

impl Entry {
    /// The canonical bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising these plain fields cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses canonical bytes; anything else is refused.
    pub fn parse(bytes: &[u8]) -> Result<Self, LedgerError> {
        let entry: Entry = serde_json::from_slice(bytes)
            .map_err(|e| LedgerError::BadEntry(format!("not a ledger entry: {e}")))?;
        if entry.to_bytes() != bytes {
            return Err(LedgerError::BadEntry("not in canonical form".into()));
        }
        Ok(entry)
    }

    /// The round an entry belongs to, if any.
    pub fn round(&self) -> Option<u64> {
        match self {
            Entry::RoundOpen { round, .. }
            | Entry::UpdateCommitment { round, .. }
            | Entry::Fraud { round, .. }
            | Entry::RoundResult { round, .. } => Some(*round),
            Entry::BufferedStep { version, .. } => Some(*version),
            Entry::Release { rounds, .. } => Some(*rounds),
            Entry::Genesis { .. }
            | Entry::Enrolment { .. }
            | Entry::Amendment { .. }
            | Entry::DataCommitment { .. } => None,
        }
    }
}

/// Serde's test for leaving a zero count out of the canonical encoding.
#[allow(clippy::trivially_copy_pass_by_ref)] // serde passes a reference
fn is_zero(n: &u32) -> bool {
    *n == 0
}
