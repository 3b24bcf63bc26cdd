//! The transparency ledger: an append-only log of typed, canonically encoded entries
//! ([`Entry`]), hashed into a Merkle tree exactly as RFC 6962 does ([`merkle`]), with tree
//! heads signed by the coordinator ([`TreeHead`]).
//!
//! Because the hashing is RFC 6962's, inclusion and consistency proofs are the ones
//! Certificate Transparency tools understand: a participant can check that its own update
//! commitment is in the log ([`Ledger::inclusion_proof`]), and anyone holding an old tree head
//! can check that the log only grew ([`Ledger::consistency_proof`]). [`audit`] checks a whole
//! ledger offline: every entry canonical, every tree head signed and matching, every update
//! commitment signed by an enrolled participant who was selected, every round's inputs equal
//! to its commitments, every round starting where the previous one ended.
//!
//! ```
//! use harambee_ledger::{Entry, Ledger, merkle};
//!
//! let mut ledger = Ledger::default();
//! for round in 1..=3 {
//!     ledger.append(&Entry::Release { rounds: round, model_digest: "00".repeat(32) });
//! }
//! let proof = ledger.inclusion_proof(1, 3);
//! let leaf = merkle::leaf_hash(ledger.entry(1).unwrap());
//! assert!(merkle::verify_inclusion(&leaf, 1, 3, &proof, &ledger.root_at(3)));
//! ```

mod audit;
mod entry;
pub mod merkle;
mod witness;

use harambee_identity::{Identity, PublicKey};
use thiserror::Error;

pub use audit::{Audit, AuditedRound, AuditedStep, Finding, audit};
pub use entry::{BufferedInput, Entry};
pub use merkle::Hash;
pub use witness::{UpdatePromise, Witness, check_witness};

/// What can be wrong with a ledger.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// Bytes that are not a canonical entry.
    #[error("{0}")]
    BadEntry(String),
    /// A tree head whose signature does not verify.
    #[error("tree head of size {0}: bad signature")]
    BadTreeHead(u64),
}

/// The log: entries and their leaf hashes.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    entries: Vec<Vec<u8>>,
    leaves: Vec<Hash>,
}

impl Ledger {
    /// A ledger holding these entry bytes, in order.
    pub fn from_entries(entries: Vec<Vec<u8>>) -> Self {
        let leaves = entries.iter().map(|e| merkle::leaf_hash(e)).collect();
        Self { entries, leaves }
    }

    /// Appends an entry; returns its index.
    pub fn append(&mut self, entry: &Entry) -> u64 {
        let bytes = entry.to_bytes();
        self.leaves.push(merkle::leaf_hash(&bytes));
        self.entries.push(bytes);
        self.entries.len() as u64 - 1
    }

    /// Entries held.
    pub fn len(&self) -> u64 {
        self.entries.len() as u64
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The bytes of entry `index`.
    pub fn entry(&self, index: u64) -> Option<&[u8]> {
        self.entries.get(index as usize).map(Vec::as_slice)
    }

    /// Every entry's bytes.
    pub fn entries(&self) -> &[Vec<u8>] {
        &self.entries
    }

    /// The root of the tree of the first `size` entries.
    pub fn root_at(&self, size: u64) -> Hash {
        merkle::root(&self.leaves[..(size as usize).min(self.leaves.len())])
    }

    /// The audit path of entry `index` in the tree of the first `size` entries.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Vec<Hash> {
        merkle::inclusion_proof(
            &self.leaves[..(size as usize).min(self.leaves.len())],
            index as usize,
        )
    }

    /// Proof that the tree of `first` entries is a prefix of the tree of `second`.
    pub fn consistency_proof(&self, first: u64, second: u64) -> Vec<Hash> {
        merkle::consistency_proof(
            &self.leaves[..(second as usize).min(self.leaves.len())],
            first as usize,
        )
    }

    /// Signs the current tree head.
    pub fn sign_head(&self, key: &Identity, timestamp_ms: u64) -> TreeHead {
        let size = self.len();
        let root = self.root_at(size);
        TreeHead {
            size,
            root,
            timestamp_ms,
            signature: key
                .sign_raw(&TreeHead::statement(size, &root, timestamp_ms))
                .to_vec(),
        }
    }
}

/// A signed statement of the log's size and root at a moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeHead {
    /// Entries covered.
    pub size: u64,
    /// Their Merkle root.
    pub root: Hash,
    /// When it was signed (milliseconds since the Unix epoch).
    pub timestamp_ms: u64,
    /// The coordinator's ed25519 signature over [`TreeHead::statement`].
    pub signature: Vec<u8>,
}

impl TreeHead {
    /// The signed bytes: the 22 bytes `harambee.tree-head.v1\0`, the size (`u64` LE), the
    /// root (32 bytes), the timestamp (`u64` LE).
    pub fn statement(size: u64, root: &Hash, timestamp_ms: u64) -> Vec<u8> {
        let mut out = b"harambee.tree-head.v1\0".to_vec();
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(root);
        out.extend_from_slice(&timestamp_ms.to_le_bytes());
        out
    }

    /// Checks the signature.
    pub fn verify(&self, key: &PublicKey) -> Result<(), LedgerError> {
        key.verify_raw(
            &Self::statement(self.size, &self.root, self.timestamp_ms),
            &self.signature,
        )
        .map_err(|_| LedgerError::BadTreeHead(self.size))
    }
}
