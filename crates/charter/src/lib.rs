//! The federation's rules: a charter (`charter.toml`) that the software enforces, with a
//! canonical hash, and amendments that take effect only when enough stewards sign them.
//!
//! A [`Charter`] states what is trained and under which licences, who may take part (named
//! members with roles, or anyone holding an invite), which strategies the coordinator may
//! use, the least quorum and the longest deadline it may set, and how many rounds it may run.
//! [`Charter::hash`] is SHA-256 over the canonical encoding (compact JSON of the parsed
//! charter, fields in declaration order), so formatting and comments never change it.
//!
//! Member keys have one written form ([`normalise_key`]: 64 lower-case hex characters of a
//! valid ed25519 key); [`Charter::parse`] writes every key that way and refuses a charter that
//! lists one key twice, in any spelling.
//!
//! An [`Amendment`] replaces the charter with a new one. It carries the hash of the charter
//! it amends and ed25519 signatures of stewards over (federation id, old hash, new hash)
//! ([`Amendment::statement`]); it takes effect only with at least
//! [`Charter::amendment_threshold`] distinct stewards of the *current* charter
//! ([`Charter::apply`]), and only in the federation it was signed for. A [`FolderLock`] keeps
//! the charter from changing under a running coordinator, and [`Charter::save`] replaces
//! `charter.toml` in one step.
//!
//! ```
//! use harambee_charter::Charter;
//!
//! let charter: Charter = toml::from_str(r#"
//!     name = "Yoruba speech"
//!     task = "speech recognition"
//!     data_licence = "CC-BY-4.0"
//!     model_licence = "Apache-2.0"
//!     enrolment = "invite"
//!     strategies = ["fedavg", "median"]
//!     min_quorum = 2
//!     max_deadline_s = 600.0
//!     max_rounds = 100
//!     amendment_threshold = 1
//!     members = []
//! "#).unwrap();
//! assert!(charter.allows_strategy("median"));
//! assert!(!charter.allows_strategy("fedadam"));
//! assert_eq!(charter.privacy, None);
//! ```

mod folder;
mod key;

use std::collections::BTreeSet;
use std::path::Path;

use harambee_identity::{Identity, PublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use thiserror::Error;

pub use folder::FolderLock;
pub use key::normalise_key;

/// What is wrong with a charter or an amendment, or what the charter forbids.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CharterError {
    /// The charter does not parse or is inconsistent.
    #[error("charter: {0}")]
    Invalid(String),
    /// An amendment is not for the charter in force.
    #[error("the amendment amends charter {amends}, but charter {current} is in force")]
    WrongBase {
        /// The hash it names.
        amends: String,
        /// The hash in force.
        current: String,
    },
    /// The charter names one key for two members (in any spelling of it).
    #[error(
        "charter: members {first:?} and {second:?} have the same key {key}; list each key once"
    )]
    DuplicateKey {
        /// The key, in its one written form.
        key: String,
        /// The member listed first.
        first: String,
        /// The member that repeats it.
        second: String,
    },
    /// Not enough valid steward signatures.
    #[error(
        "the amendment has {valid} valid steward signatures; the charter requires {required} \
         (each by a distinct steward of the charter in force, over this replacement in this \
         federation, as `harambee charter sign` makes them)"
    )]
    NotEnoughSignatures {
        /// Distinct stewards whose signature verified.
        valid: usize,
        /// The threshold.
        required: usize,
    },
    /// The federation's settings break the charter.
    #[error("the charter forbids this: {0}")]
    Forbidden(String),
    /// Another process holds the federation folder (see [`FolderLock`]).
    #[error(
        "{path} is held ({held_by}): a coordinator or another amendment is running on this \
         federation; stop it and try again"
    )]
    FolderBusy {
        /// The lock file.
        path: String,
        /// Who holds it, as the holder wrote it (may be empty).
        held_by: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

impl CharterError {
    fn io(path: &Path, e: std::io::Error) -> Self {
        CharterError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        }
    }
}

/// A member's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Governs: signs amendments; may also train.
    Steward,
    /// Trains.
    Contributor,
    /// Watches; may not train.
    Observer,
}

/// A named member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// How the member is named in the model card.
    pub name: String,
    /// Its ed25519 public key: 64 hex characters, lower case once parsed
    /// ([`normalise_key`]).
    pub public_key: String,
    /// Its role.
    pub role: Role,
}

/// Who may enrol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Enrolment {
    /// Anyone holding the invite.
    Invite,
    /// Only the listed stewards and contributors (with the invite).
    Members,
}

/// The federation's rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Charter {
    /// The federation's name.
    pub name: String,
    /// What is trained, in words.
    pub task: String,
    /// The licence under which members contribute (their updates).
    pub data_licence: String,
    /// The licence of the released model.
    pub model_licence: String,
    /// Who may enrol.
    pub enrolment: Enrolment,
    /// Strategies the coordinator may use (names, as `--strategy` takes them: `fedavg`,
    /// `median`, `krum`, ...).
    pub strategies: Vec<String>,
    /// The least quorum a round may close with.
    pub min_quorum: usize,
    /// The longest a round may stay open, in seconds.
    pub max_deadline_s: f64,
    /// The most rounds the federation may run.
    pub max_rounds: u64,
    /// Steward signatures an amendment needs (k of the n stewards).
    pub amendment_threshold: usize,
    /// Named members.
    pub members: Vec<Member>,
    /// The participant-level differential-privacy budget the released model must respect,
    /// if any. The coordinator refuses settings that would exceed it.
    #[serde(default)]
    pub privacy: Option<PrivacyBudget>,
    /// Secure aggregation, when the charter requires it: the coordinator must never see an
    /// individual update, and a round's sum must cover at least `min_survivors` participants
    /// (below that the round fails and nothing is unmasked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure_aggregation: Option<SecureAggregationRule>,
    /// Federated learning on members' private data (the default), or community compute on a
    /// shared corpus. Absent from the canonical encoding when federated, so charters written
    /// before modes existed keep their hash.
    #[serde(default, skip_serializing_if = "Mode::is_federated")]
    pub mode: Mode,
    /// The largest sample count one update may claim (its weight in FedAvg): the
    /// coordinator refuses more, and an auditor names any recorded commitment above it.
    /// Absent: the coordinator's own limit (`limits.max_samples`) applies, unrecorded here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_samples: Option<u64>,
    /// How members' updates travel (`f16`, `bf16`, `int8`, `topk:FRACTION`: the change from
    /// the round's base, compressed). The coordinator runs only with this encoding, and the
    /// ledger records each update as decoded. Absent: exact f32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_encoding: Option<String>,
    /// The pretrained model a federation fine-tunes, pinned by its digest: the coordinator
    /// runs only with this base, so the ledger says exactly what was adapted. Absent for
    /// models trained from scratch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_model: Option<BaseModel>,
    /// Buffered asynchronous aggregation (FedBuff) instead of synchronous rounds: members
    /// train whenever they are free, from whichever version is current, and every `buffer`
    /// results make a new version. Each version counts as a round against `max_rounds`.
    /// Absent: synchronous rounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffered: Option<BufferedRule>,
    /// How the global model travels to members (`f16`, `bf16`, `int8`, `topk:FRACTION`: each
    /// round's change, the published model being the previous one plus the decoded change).
    /// The coordinator runs only with this encoding. Absent: the whole model in f32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_encoding: Option<String>,
    /// Verifiable training, for community compute on public data: workers train in
    /// reproducible numerics and sign how (a training recipe), and the coordinator replays
    /// a share of each round's updates before aggregating; an update that does not replay
    /// is refused, recorded as fraud, and its sender removed. Absent: not verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerificationRule>,
}

/// How a federation checks that its workers trained as they say (docs/verification.md).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerificationRule {
    /// The share of each round's updates the coordinator replays before aggregating, in
    /// (0, 1]. Which ones is drawn when each arrives, so a worker cannot know in advance.
    pub replay_fraction: f64,
}

impl VerificationRule {
    /// Checks the fraction's range.
    pub fn validate(&self) -> Result<(), CharterError> {
        let f = self.replay_fraction;
        if !(f.is_finite() && f > 0.0 && f <= 1.0) {
            return Err(CharterError::Invalid(format!(
                "verification.replay_fraction {f} must be in (0, 1]"
            )));
        }
        Ok(())
    }
}

/// How a buffered (FedBuff) federation aggregates: the whole rule, so that an auditor can
/// recompute every version from the ledger and the kept updates.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferedRule {
    /// Results per version (K).
    pub buffer: usize,
    /// Members training at once, at most.
    pub concurrency: usize,
    /// The server learning rate applied to the staleness-weighted mean change.
    pub server_lr: f32,
    /// The most versions published between a result's start and its arrival; staler
    /// results are refused.
    pub max_staleness: u64,
}

impl BufferedRule {
    /// Checks the rule's ranges.
    pub fn validate(&self) -> Result<(), CharterError> {
        let bad = |m: String| Err(CharterError::Invalid(m));
        if self.buffer == 0 || self.concurrency < self.buffer {
            return bad(format!(
                "buffered: buffer must be at least 1 and concurrency at least buffer (got {} and {})",
                self.buffer, self.concurrency
            ));
        }
        if !(self.server_lr.is_finite() && self.server_lr > 0.0) {
            return bad("buffered.server_lr must be positive".into());
        }
        Ok(())
    }
}

impl std::str::FromStr for BufferedRule {
    type Err = CharterError;

    /// `K[:CONCURRENCY[:SERVER_LR[:MAX_STALENESS]]]`, as `harambee init --fedbuff` takes it;
    /// the concurrency defaults to `K + ⌈K/3⌉`, the learning rate to 1, the staleness to 20.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            CharterError::Invalid(format!(
                "--fedbuff {s}: expected K[:CONCURRENCY[:SERVER_LR[:MAX_STALENESS]]], e.g. 3:4:1.0:20"
            ))
        };
        let mut parts = s.split(':');
        let buffer: usize = parts.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
        let mut next = |default: String| parts.next().map_or(default, str::to_string);
        let rule = BufferedRule {
            buffer,
            concurrency: next((buffer + buffer.div_ceil(3)).to_string())
                .parse()
                .map_err(|_| bad())?,
            server_lr: next("1".into()).parse().map_err(|_| bad())?,
            max_staleness: next("20".into()).parse().map_err(|_| bad())?,
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        rule.validate()?;
        Ok(rule)
    }
}

/// A pretrained base model, as a charter pins it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseModel {
    /// Its name (hub id or folder name).
    pub name: String,
    /// SHA-256 (hex) of its files' manifest (`harambee-llm`'s `Checkpoint::digest`).
    pub sha256: String,
    /// Its licence, as its publisher states it; the released adapters' model card repeats it.
    pub licence: String,
}

/// What the members pool: their data, or their compute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Each member trains on its own data, which never leaves it.
    #[default]
    Federated,
    /// Workers hold the same public corpus; the coordinator hands each a shard per round and
    /// combines their models with DiLoCo's outer step (the only strategy allowed). Workers may
    /// join and leave between rounds.
    Community,
}

impl Mode {
    /// Whether this is the default, federated mode.
    pub fn is_federated(&self) -> bool {
        *self == Mode::Federated
    }
}

/// The charter's secure-aggregation rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecureAggregationRule {
    /// The fewest participants a round's sum may cover.
    pub min_survivors: usize,
}

/// A differential-privacy budget: (ε, δ) at the level of a participant, over the federation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyBudget {
    /// ε.
    pub epsilon: f64,
    /// δ.
    pub delta: f64,
}

impl Charter {
    /// Parses `charter.toml` text, writes every member key in its one form
    /// ([`normalise_key`]), and checks it.
    pub fn parse(text: &str) -> Result<Self, CharterError> {
        let mut charter: Charter =
            toml::from_str(text).map_err(|e| CharterError::Invalid(e.to_string()))?;
        for m in &mut charter.members {
            m.public_key = member_key(m)?;
        }
        charter.validate()?;
        Ok(charter)
    }

    /// Checks that the charter is self-consistent: among the rest, that every member key is an
    /// ed25519 key and that no key is listed twice, whatever the case of its hex.
    pub fn validate(&self) -> Result<(), CharterError> {
        let bad = |m: String| Err(CharterError::Invalid(m));
        if self.strategies.is_empty() {
            return bad("strategies must allow at least one strategy".into());
        }
        if self.min_quorum == 0 || self.max_rounds == 0 {
            return bad("min_quorum and max_rounds must be at least 1".into());
        }
        if !(self.max_deadline_s.is_finite() && self.max_deadline_s > 0.0) {
            return bad("max_deadline_s must be positive".into());
        }
        if self.max_samples == Some(0) {
            return bad("max_samples must be at least 1".into());
        }
        if let Some(rule) = &self.buffered {
            rule.validate()?;
        }
        if let Some(base) = &self.base_model
            && (base.sha256.len() != 64 || !base.sha256.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return bad(format!(
                "base_model.sha256 {:?} must be 64 hex digits",
                base.sha256
            ));
        }
        let mut seen: Vec<(String, &str)> = Vec::with_capacity(self.members.len());
        for m in &self.members {
            let key = member_key(m)?;
            if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key) {
                return Err(CharterError::DuplicateKey {
                    key,
                    first: first.to_string(),
                    second: m.name.clone(),
                });
            }
            seen.push((key, &m.name));
        }
        if let Some(b) = self.privacy
            && !(b.epsilon.is_finite() && b.epsilon > 0.0 && b.delta > 0.0 && b.delta < 1.0)
        {
            return bad(format!(
                "privacy budget ({}, {}) must have ε > 0 and 0 < δ < 1",
                b.epsilon, b.delta
            ));
        }
        if self.mode == Mode::Community && self.strategies.iter().any(|s| s != "diloco") {
            return bad(format!(
                "a community charter allows only the diloco strategy, not {}",
                self.strategies.join(", ")
            ));
        }
        if let Some(rule) = &self.verification {
            rule.validate()?;
            if self.mode != Mode::Community {
                return bad("verification replays workers' training, which needs their data to be public: it is for community mode".into());
            }
        }
        if self.secure_aggregation.is_some_and(|r| r.min_survivors < 2) {
            return bad("secure_aggregation.min_survivors must be at least 2: a sum of one is that one's update".into());
        }
        let stewards = self.stewards().len();
        if self.amendment_threshold == 0 || self.amendment_threshold > stewards.max(1) {
            return bad(format!(
                "amendment_threshold {} must be between 1 and the number of stewards ({stewards})",
                self.amendment_threshold
            ));
        }
        Ok(())
    }

    /// The canonical encoding: compact JSON, fields in declaration order, member keys in
    /// lower case (so a charter built in code hashes as it will once written and parsed).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.with_lower_case_keys()).unwrap_or_default()
    }

    fn with_lower_case_keys(&self) -> Charter {
        let mut charter = self.clone();
        for m in &mut charter.members {
            m.public_key.make_ascii_lowercase();
        }
        charter
    }

    /// Writes the charter to `path` (`charter.toml`) in one step: a crash leaves the old file
    /// or the new one, never a mix. Keys are written in lower case.
    pub fn save(&self, path: &Path) -> Result<(), CharterError> {
        let text = toml::to_string_pretty(&self.with_lower_case_keys())
            .map_err(|e| CharterError::Invalid(e.to_string()))?;
        folder::write_atomically(path, text.as_bytes())
    }

    /// SHA-256 of the canonical encoding, hex.
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.canonical_bytes()))
    }

    /// The stewards' distinct keys, in lower case.
    pub fn stewards(&self) -> BTreeSet<String> {
        self.members
            .iter()
            .filter(|m| m.role == Role::Steward)
            .map(|m| m.public_key.to_ascii_lowercase())
            .collect()
    }

    /// Whether the named strategy (`krum:4` counts as `krum`) is allowed.
    pub fn allows_strategy(&self, strategy: &str) -> bool {
        let name = strategy.split([':', '(']).next().unwrap_or(strategy);
        self.strategies.iter().any(|s| s == name)
    }

    /// Whether `public_key` (hex) may enrol to train.
    pub fn may_train(&self, public_key: &str) -> bool {
        match self.enrolment {
            Enrolment::Invite => !self
                .members
                .iter()
                .any(|m| key::same_key(&m.public_key, public_key) && m.role == Role::Observer),
            Enrolment::Members => self
                .members
                .iter()
                .any(|m| key::same_key(&m.public_key, public_key) && m.role != Role::Observer),
        }
    }

    /// Checks a federation's settings against the charter.
    pub fn check(
        &self,
        strategy: &str,
        quorum: usize,
        deadline_s: f64,
        rounds: u64,
    ) -> Result<(), CharterError> {
        let forbid = |m: String| Err(CharterError::Forbidden(m));
        if !self.allows_strategy(strategy) {
            return forbid(format!(
                "strategy {strategy} (allowed: {})",
                self.strategies.join(", ")
            ));
        }
        if quorum < self.min_quorum {
            return forbid(format!(
                "quorum {quorum} is below the charter's {}",
                self.min_quorum
            ));
        }
        if deadline_s > self.max_deadline_s {
            return forbid(format!(
                "a {deadline_s} s deadline is beyond the charter's {} s",
                self.max_deadline_s
            ));
        }
        if rounds > self.max_rounds {
            return forbid(format!(
                "{rounds} rounds are beyond the charter's {}",
                self.max_rounds
            ));
        }
        Ok(())
    }

    /// Applies an amendment in the federation `federation` (its id): returns the new charter,
    /// keys in their one written form, if it amends this one and at least
    /// `amendment_threshold` distinct stewards of this charter signed it for this federation.
    /// A key counts once however many times, and in whatever hex case, it appears.
    pub fn apply(&self, federation: &str, amendment: &Amendment) -> Result<Charter, CharterError> {
        let current = self.hash();
        if amendment.amends != current {
            return Err(CharterError::WrongBase {
                amends: amendment.amends.clone(),
                current,
            });
        }
        amendment.charter.validate()?;
        let statement = Amendment::statement(federation, &current, &amendment.charter.hash());
        let stewards = self.stewards();
        let mut valid: BTreeSet<String> = BTreeSet::new();
        for (key, signature) in &amendment.signatures {
            let Ok(key) = normalise_key(key) else {
                continue;
            };
            let verifies = key
                .parse::<PublicKey>()
                .ok()
                .zip(hex::decode(signature).ok())
                .is_some_and(|(k, s)| k.verify_raw(&statement, &s).is_ok());
            if verifies && stewards.contains(&key) {
                valid.insert(key);
            }
        }
        if valid.len() < self.amendment_threshold {
            return Err(CharterError::NotEnoughSignatures {
                valid: valid.len(),
                required: self.amendment_threshold,
            });
        }
        Ok(amendment.charter.with_lower_case_keys())
    }
}

/// A proposed replacement of the charter, with steward signatures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Amendment {
    /// Hash of the charter it amends.
    pub amends: String,
    /// The new charter.
    pub charter: Charter,
    /// (steward public key, signature) pairs, hex.
    pub signatures: Vec<(String, String)>,
}

/// Domain separation for amendment signatures. v1 named no federation, so a signature could
/// be replayed in another federation under the same charter; v1 signatures no longer count.
const AMENDMENT_DOMAIN: &[u8] = b"harambee.amendment.v2\0";

impl Amendment {
    /// The signed bytes: the 22 bytes `harambee.amendment.v2\0`; the federation id's length
    /// (`u32`, little-endian) and UTF-8 bytes; then the old and the new charter hash as their
    /// 64 hex characters each.
    pub fn statement(federation: &str, old_hash: &str, new_hash: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            AMENDMENT_DOMAIN.len() + 4 + federation.len() + old_hash.len() + new_hash.len(),
        );
        out.extend_from_slice(AMENDMENT_DOMAIN);
        out.extend_from_slice(&(federation.len() as u32).to_le_bytes());
        out.extend_from_slice(federation.as_bytes());
        out.extend_from_slice(old_hash.as_bytes());
        out.extend_from_slice(new_hash.as_bytes());
        out
    }

    /// A steward's signature over replacing `current` by `proposed` in the federation
    /// `federation` (its id), hex.
    pub fn sign(
        steward: &Identity,
        federation: &str,
        current: &Charter,
        proposed: &Charter,
    ) -> String {
        hex::encode(steward.sign_raw(&Self::statement(
            federation,
            &current.hash(),
            &proposed.hash(),
        )))
    }
}

/// A member's key in its one written form, or why it is not a key, naming the member.
fn member_key(member: &Member) -> Result<String, CharterError> {
    normalise_key(&member.public_key).map_err(|e| match e {
        CharterError::Invalid(why) => {
            CharterError::Invalid(format!("member {:?}: {why}", member.name))
        }
        other => other,
    })
}
