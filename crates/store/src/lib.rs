//! Where a federation keeps what it must never lose.
//!
//! [`BlobStore`] is content-addressed storage for parameter sets and updates: a blob's name
//! is the SHA-256 of its bytes ([`Digest`]), so a reader can always check that what it got
//! back is what was stored, and the ledger can refer to blobs by digest alone.
//! [`FsBlobStore`] is the default, on the local file system: a `put` returns only once the
//! bytes and their directory entry are on stable storage, which is what lets a coordinator
//! acknowledge an update and survive `kill -9` right after. An S3-compatible store for larger
//! deployments will implement the same trait.
//!
//! [`StateStore`] is the coordinator's durable state (enrolments, the open round and its
//! acknowledged updates, completed rounds); [`SqliteState`] keeps it in an embedded SQLite
//! database, committed before any acknowledgement, along with the stewards' signed requests
//! (pause, resume, remove a member), whose nonces it never accepts twice.
//!
//! ```
//! use harambee_store::{BlobStore, FsBlobStore};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = FsBlobStore::open(dir.path()).unwrap();
//! let digest = store.put(b"encoded update").unwrap();
//! assert_eq!(store.get(&digest).unwrap(), b"encoded update");
//! ```

mod blob;
mod error;
mod state;

pub use blob::{BlobStore, FsBlobStore};
pub use error::StoreError;
pub use harambee_params::Digest;
pub use state::{
    Checkpoint, ClosedRoundRecord, HeadRecord, OpenRoundRecord, ParticipantRecord, Redemption,
    RoundEvaluation, SqliteState, StateStore, StewardActionRecord, UpdateRecord,
};
