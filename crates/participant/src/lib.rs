//! The participant runtime: what `harambee join` runs on a member's machine.
//!
//! [`join`] connects to the coordinator named by an [`Invite`] (TLS, checked against the
//! federation's own certificate authority), enrols with the member's ed25519 key, then loops:
//! ask for a task (long poll), fetch the global parameters (streamed, checked against their
//! digest), evaluate them on local held-out data and report it, train on local data, sign the
//! update statement, and upload the update in chunks. Data never leaves the machine; only
//! parameters and a few numbers travel.
//!
//! What trains is a [`LocalTrainer`]: Harambee's built-in trainer for the federation's model
//! ([`Training::BuiltIn`]), or the member's own code ([`Training::Own`], which is how the
//! Python package's `fit` and `evaluate` run). Everything else is this one runtime.
//!
//! In a federation that runs secure aggregation the update never leaves the machine as it
//! is: the participant masks it and takes part in the four signed steps of SecAgg+.
//!
//! In community mode (a community charter) the member is a worker on a shared corpus: each
//! task names its shard of the training chunks and a number of inner steps, and the local
//! optimiser's state carries over from one round to the next.
//!
//! Network errors and coordinator restarts are retried with exponential backoff. The last
//! finished (round, attempt) is kept in a small state file, so a restarted participant does
//! not train a round twice; if it retrains one whose update was already acknowledged, the
//! coordinator answers "already exists" and that counts as done.
//!
//! Once its data is loaded, a member with Harambee's built-in trainer commits to it: a
//! Merkle root over its examples ([`data_root`]), signed with its enrolment and recorded in
//! the ledger, which an auditor given the data in a dispute can check.
//!
//! The participant also keeps, beside its state file (`*.witness.jsonl`), every tree head of
//! the ledger it is shown (checked to extend the last one) and every promise to record its
//! updates, for `harambee ledger verify --witness`. Training is seeded by
//! (federation seed, round, attempt, participant), so a retrained update is the same update.

mod client;
mod commitment;
mod error;
mod local;
mod pretrained;
mod secure;
mod state;
mod witness;

pub use client::{JoinOptions, JoinReport, join};
pub use commitment::data_root;
pub use error::ParticipantError;
pub use harambee_proto::Invite;
pub use local::{Fitted, LocalTrainer, RoundSpec, Training};
pub use state::LocalState;
