//! Why the coordinator refused a call, in the federation's terms. The driver and its parts
//! answer with a [`Rejection`]; only `service.rs`, the edge that speaks gRPC, turns it into a
//! status code.

use std::fmt;

/// The class of a refusal: what the caller did, and so whether trying again can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Why {
    /// The request is malformed or inconsistent: never retry it as it is.
    Invalid,
    /// A number is outside what the federation allows.
    OutOfRange,
    /// The caller did not prove who it is, or the proof is wrong, stale or replayed.
    Unauthenticated,
    /// The caller is known but may not do this (not enrolled, removed, not selected).
    NotPermitted,
    /// Not now: the round, attempt or step it names is not the one open.
    NotNow,
    /// Already done: the coordinator holds this update.
    AlreadyHeld,
    /// What it asks for is no longer there (the round moved on).
    Gone,
    /// Too many calls, or the federation is full: back off.
    TooMany,
    /// The coordinator cannot serve now (storage failed, shutting down): retry later.
    Unavailable,
    /// The coordinator broke one of its own invariants: a bug to report, not the caller's.
    Internal,
}

/// A refused call: why, and what to tell the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub(crate) why: Why,
    pub(crate) message: String,
}

impl Rejection {
    fn new(why: Why, message: impl Into<String>) -> Self {
        Self {
            why,
            message: message.into(),
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(Why::Invalid, message)
    }

    pub(crate) fn out_of_range(message: impl Into<String>) -> Self {
        Self::new(Why::OutOfRange, message)
    }

    pub(crate) fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(Why::Unauthenticated, message)
    }

    pub(crate) fn not_permitted(message: impl Into<String>) -> Self {
        Self::new(Why::NotPermitted, message)
    }

    pub(crate) fn not_now(message: impl Into<String>) -> Self {
        Self::new(Why::NotNow, message)
    }

    pub(crate) fn already_held(message: impl Into<String>) -> Self {
        Self::new(Why::AlreadyHeld, message)
    }

    pub(crate) fn gone(message: impl Into<String>) -> Self {
        Self::new(Why::Gone, message)
    }

    pub(crate) fn too_many(message: impl Into<String>) -> Self {
        Self::new(Why::TooMany, message)
    }

    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        Self::new(Why::Unavailable, message)
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(Why::Internal, message)
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
