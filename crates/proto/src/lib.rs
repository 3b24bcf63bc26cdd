//! The wire contract between coordinator and participants: the Rust types and gRPC stubs
//! generated from `proto/harambee/v1/federation.proto` (the public schema, compiled at build
//! time by `protox`, so no `protoc` is needed), and the few helpers both sides share.

/// Generated from `harambee.v1`; see the `.proto` file for each message's documentation.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("harambee.v1");
}

pub use v1::coordinator_client::CoordinatorClient;
pub use v1::coordinator_server::{Coordinator as CoordinatorService, CoordinatorServer};

/// Chunk size for parameters on the wire: small enough that neither end buffers much per
/// message, large enough that per-message overhead is negligible.
pub const CHUNK_BYTES: usize = 256 * 1024;

/// The byte ranges of the wire chunks of `total` bytes, from `offset`: how every stream of
/// parameters, updates and masked updates is cut (the one chunker both ends use). Lazy, and
/// owning nothing, so a stream can copy one chunk at a time out of a shared buffer.
pub fn chunk_ranges(
    total: usize,
    offset: usize,
) -> impl Iterator<Item = std::ops::Range<usize>> + Send + 'static {
    (offset.min(total)..total)
        .step_by(CHUNK_BYTES)
        .map(move |start| start..(start + CHUNK_BYTES).min(total))
}

/// Cuts `bytes` from `offset` into wire chunks, with their offsets.
pub fn chunks(bytes: &[u8], offset: usize) -> impl Iterator<Item = (usize, &[u8])> {
    chunk_ranges(bytes.len(), offset).map(move |r| (r.start, &bytes[r]))
}

pub mod auth;
mod convert;
mod invite;
pub mod secagg;
pub use auth::{CallProof, ProofError};
pub use invite::{Invite, InviteError};
