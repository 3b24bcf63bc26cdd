//! What participants keep so that the ledger does not rest on the coordinator's word alone.
//!
//! - An [`UpdatePromise`] is the coordinator's signed promise, given with each acknowledgement,
//!   that the update's commitment will be in the ledger (as Certificate Transparency's signed
//!   certificate timestamp promises a certificate's inclusion).
//! - A [`Witness`] line is a signed tree head or a promise, as a participant saw it, one JSON
//!   object per line. A coordinator that later rewrites or truncates its ledger cannot make it
//!   agree with the heads it signed before, nor drop an update it promised:
//!   [`check_witness`] names both.
//!
//! ```
//! use harambee_identity::Identity;
//! use harambee_ledger::{Entry, Ledger, Witness, check_witness};
//!
//! let coordinator = Identity::generate().unwrap();
//! let mut ledger = Ledger::default();
//! ledger.append(&Entry::Release { rounds: 1, model_digest: "00".repeat(32) });
//! let seen = Witness::Head(ledger.sign_head(&coordinator, 1)).to_line();
//! let line = Witness::parse_line(&seen).unwrap();
//! assert!(check_witness(&ledger, &line, &coordinator.public()).is_ok());
//! // The same log cut short no longer agrees with what was seen.
//! let truncated = Ledger::default();
//! assert!(check_witness(&truncated, &line, &coordinator.public()).is_err());
//! ```

use harambee_identity::{Identity, PublicKey};
use serde::{Deserialize, Serialize};

use crate::{Entry, Ledger, TreeHead};

/// Domain separation for promises: never mistaken for a tree head or anything a member signs.
const PROMISE_DOMAIN: &[u8] = b"harambee.update-promise.v1\0";

/// The coordinator's signed promise to record an acknowledged update's commitment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdatePromise {
    /// The federation.
    pub federation: String,
    /// The round and attempt the update was for.
    pub round: u64,
    /// The attempt.
    pub attempt: u32,
    /// The participant's number.
    pub participant: u64,
    /// The update's digest (hex), as its commitment will record it.
    pub update_digest: String,
    /// When the coordinator acknowledged it (milliseconds since the Unix epoch).
    pub timestamp_ms: u64,
    /// The coordinator's ed25519 signature over [`UpdatePromise::statement`] (hex).
    pub signature: String,
}

impl UpdatePromise {
    /// The signed bytes: the domain tag, the federation id's length (`u32` LE) and bytes, the
    /// round (`u64` LE), the attempt (`u32` LE), the participant (`u64` LE), the update
    /// digest's 64 hex characters, and the timestamp (`u64` LE).
    pub fn statement(&self) -> Vec<u8> {
        let mut out = PROMISE_DOMAIN.to_vec();
        out.extend_from_slice(&(self.federation.len() as u32).to_le_bytes());
        out.extend_from_slice(self.federation.as_bytes());
        out.extend_from_slice(&self.round.to_le_bytes());
        out.extend_from_slice(&self.attempt.to_le_bytes());
        out.extend_from_slice(&self.participant.to_le_bytes());
        out.extend_from_slice(self.update_digest.as_bytes());
        out.extend_from_slice(&self.timestamp_ms.to_le_bytes());
        out
    }

    /// Signs it with the coordinator's key (the signature field is replaced).
    pub fn signed(mut self, coordinator: &Identity) -> Self {
        self.signature = hex::encode(coordinator.sign_raw(&self.statement()));
        self
    }

    /// Checks the coordinator's signature.
    pub fn verify(&self, coordinator: &PublicKey) -> Result<(), String> {
        let signature = hex::decode(&self.signature).map_err(|e| format!("signature: {e}"))?;
        coordinator
            .verify_raw(&self.statement(), &signature)
            .map_err(|_| "the promise is not signed by the coordinator's key".into())
    }
}

/// One thing a participant saw and kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Witness {
    /// A signed tree head.
    Head(TreeHead),
    /// A promise given with an acknowledgement.
    Promise(UpdatePromise),
}

/// A witness line as written: `{"head": {...}}` or `{"promise": {...}}`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Line {
    Head {
        size: u64,
        root: String,
        timestamp_ms: u64,
        signature: String,
    },
    Promise(UpdatePromise),
}

impl Witness {
    /// The line to append to a witness file.
    pub fn to_line(&self) -> String {
        let line = match self {
            Witness::Head(h) => Line::Head {
                size: h.size,
                root: hex::encode(h.root),
                timestamp_ms: h.timestamp_ms,
                signature: hex::encode(&h.signature),
            },
            Witness::Promise(p) => Line::Promise(p.clone()),
        };
        serde_json::to_string(&line).unwrap_or_default()
    }

    /// Parses one line of a witness file (untrusted text: any error is a message).
    pub fn parse_line(text: &str) -> Result<Self, String> {
        let line: Line = serde_json::from_str(text).map_err(|e| e.to_string())?;
        Ok(match line {
            Line::Head {
                size,
                root,
                timestamp_ms,
                signature,
            } => {
                let root = hex::decode(&root)
                    .ok()
                    .and_then(|r| <[u8; 32]>::try_from(r).ok())
                    .ok_or("root: not 32 bytes of hex")?;
                let signature = hex::decode(&signature).map_err(|e| format!("signature: {e}"))?;
                Witness::Head(TreeHead {
                    size,
                    root,
                    timestamp_ms,
                    signature,
                })
            }
            Line::Promise(p) => Witness::Promise(p),
        })
    }
}

/// Checks one witness against a ledger: a head must be signed by the coordinator and be the
/// ledger's root at its size (so the ledger only grew since); a promise must be signed and
/// its update committed in the ledger. The error says what the coordinator did.
pub fn check_witness(
    ledger: &Ledger,
    witness: &Witness,
    coordinator: &PublicKey,
) -> Result<(), String> {
    match witness {
        Witness::Head(head) => {
            head.verify(coordinator).map_err(|_| {
                format!(
                    "a tree head of size {} is not signed by the coordinator",
                    head.size
                )
            })?;
            if head.size > ledger.len() {
                return Err(format!(
                    "the coordinator signed a tree of {} entries, but this ledger holds {}: it was truncated",
                    head.size,
                    ledger.len()
                ));
            }
            if ledger.root_at(head.size) != head.root {
                return Err(format!(
                    "the coordinator signed another tree of {} entries than this ledger's first {}: its history was rewritten",
                    head.size, head.size
                ));
            }
            Ok(())
        }
        Witness::Promise(p) => {
            p.verify(coordinator)?;
            let kept = ledger
                .entries()
                .iter()
                .any(|bytes| match Entry::parse(bytes) {
                    Ok(Entry::UpdateCommitment {
                        round,
                        attempt,
                        participant,
                        update_digest,
                        ..
                    }) => {
                        round == p.round
                            && attempt == p.attempt
                            && participant == p.participant
                            && update_digest == p.update_digest
                    }
                    // A buffered result's promise names round `base_version + 1`.
                    Ok(Entry::BufferedStep { inputs, .. }) => inputs.iter().any(|i| {
                        i.base_version.checked_add(1) == Some(p.round)
                            && i.attempt == p.attempt
                            && i.participant == p.participant
                            && i.update_digest == p.update_digest
                    }),
                    _ => false,
                });
            if kept {
                Ok(())
            } else {
                Err(format!(
                    "the coordinator promised to record participant {}'s update {} of round {} (attempt {}), and the ledger has no such commitment",
                    p.participant, p.update_digest, p.round, p.attempt
                ))
            }
        }
    }
}
