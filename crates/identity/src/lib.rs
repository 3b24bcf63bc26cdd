//! Identities in a federation: ed25519 keys, and the statement a participant signs for every
//! update it submits.
//!
//! - [`Identity`]: a signing key, generated from the operating system's randomness and kept
//!   in a PKCS#8 PEM file (readable by OpenSSL) that only its owner may read.
//! - [`PublicKey`]: how a member is known, written as 64 hex characters.
//! - [`UpdateStatement`]: (federation, round, base digest, update digest, sample count) in a
//!   canonical byte form; [`SignedUpdate`] carries it with its signer and signature, and
//!   [`SignedUpdate::verify`] is what a coordinator checks before it accepts anything. Binding
//!   the federation, the round and the base model into the signed bytes is what makes a
//!   replayed or transplanted update fail verification.
//!
//! ```
//! use harambee_identity::{Identity, UpdateStatement};
//! use harambee_params::Digest;
//!
//! let me = Identity::generate().unwrap();
//! let statement = UpdateStatement {
//!     federation: "yoruba-asr".into(),
//!     round: 7,
//!     base: Digest::of_bytes(b"global model of round 6"),
//!     update: Digest::of_bytes(b"my update"),
//!     num_samples: 600,
//!     recipe: None,
//! };
//! let signed = me.sign(statement.clone());
//! assert!(signed.verify().is_ok());
//! let replayed = harambee_identity::SignedUpdate { statement: UpdateStatement { round: 8, ..statement }, ..signed };
//! assert!(replayed.verify().is_err());
//! ```

mod error;
mod keys;
mod statement;

pub use error::IdentityError;
pub use keys::{Identity, PublicKey};
pub use statement::{SignedUpdate, TrainingRecipe, UpdateStatement};
