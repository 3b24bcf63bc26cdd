use std::path::PathBuf;

use harambee_params::Digest;
use thiserror::Error;

/// What can go wrong with stored data.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The file system refused.
    #[error("{path}: {error}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error (shown in the message, so not chained as a source).
        error: std::io::Error,
    },
    /// No blob with this digest is stored.
    #[error("no blob {0} in the store")]
    Missing(Digest),
    /// A stored blob's bytes no longer hash to its name: the disk or someone altered it.
    #[error("blob {expected} is corrupt: its bytes hash to {actual}")]
    Corrupt {
        /// The name (digest) it was stored under.
        expected: Digest,
        /// What its bytes hash to now.
        actual: Digest,
    },
    /// The state database refused or holds something unreadable.
    #[error("state database {path}: {reason}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        reason: String,
    },
}
