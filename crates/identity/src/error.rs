use std::path::PathBuf;

use thiserror::Error;

/// What can go wrong with keys and signatures.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// A key file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error (shown in the message, so not chained as a source).
        error: std::io::Error,
    },
    /// A key file exists already; keys are never overwritten.
    #[error("{0} exists already; keys are never overwritten (choose another path or remove it)")]
    Exists(PathBuf),
    /// A key file is not a PKCS#8 PEM ed25519 private key.
    #[error("{path} is not an ed25519 private key in PKCS#8 PEM form: {reason}")]
    BadKeyFile {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// A public key is not 64 hex characters of a valid ed25519 point.
    #[error("not an ed25519 public key (expected 64 hex characters): {0}")]
    BadPublicKey(String),
    /// The operating system gave no randomness.
    #[error("no randomness from the operating system: {0}")]
    NoRandomness(String),
    /// A signature does not verify for the statement and key.
    #[error("the signature does not match the update statement and the signer's key")]
    BadSignature,
}
