//! The coordinator as a service: the sans-IO round core of `harambee-coordinator`, driven by
//! a gRPC server (tonic, TLS by rustls) and made durable by `harambee-store`.
//!
//! - [`FederationFolder`]: a federation on disk: `federation.toml` ([`FederationConfig`]),
//!   the coordinator's key, its own certificate authority and TLS certificate, an invite for
//!   participants, the SQLite state and the blob store. [`FederationFolder::init`] makes one.
//! - [`serve`]: runs the coordinator until the federation finishes. It resumes from the
//!   folder's state, so `kill -9` at any moment loses nothing that was acknowledged. Where
//!   `federation.toml` sets `http`, it also serves the steward's dashboard, the JSON API and
//!   `/metrics` (the `harambee-dashboard` crate) over the same driver; stewards' signed
//!   requests to pause, resume or remove a member are recorded in the state and survive a
//!   restart.
//!
//! Every update is checked before it is accepted (enrolled key, open round and attempt,
//! selection, base digest, exact size, decodable, finite, digest, ed25519 signature over the
//! federation, round, base, update and sample count) and is durable (blob fsynced, row
//! committed) before the participant hears "accepted". The core only ever sees what is
//! already on disk, so a restart replays the same inputs and reaches the same state.
//!
//! With `training.secure_aggregation` the coordinator never sees an update: each round runs
//! SecAgg+ ([`harambee_secagg`]) over four signed steps, and the core gets only the sum. The
//! ledger then records each participant's signed commitment to its masked update.

mod actor;
mod config;
mod driver;
mod error;
mod fault;
mod folder;
mod gate;
mod listener;
mod privacy;
mod rejection;
mod replay;
mod secure;
mod serve;
mod service;

pub use config::{FederationConfig, InitialWeights, Limits, RoundSettings, TrainingSettings};
pub use error::ServerError;
pub use folder::FederationFolder;
pub use replay::Replayer;
pub use serve::{Ready, ServeOptions, ServeOutcome, serve, serve_with};
