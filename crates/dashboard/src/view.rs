//! What the dashboard needs from a coordinator: a read-only view and the steward's actions.

use thiserror::Error;

use crate::api::{AdminReply, FederationInfo, Overview, RoundDetail, RoundRow};
use crate::signed::Authorised;

/// A running federation, as the dashboard sees it. The coordinator implements it; every
/// method may block briefly (a lock, a SQLite read), so the dashboard calls them off the async
/// threads.
pub trait FederationView: Send + Sync + 'static {
    /// Who the federation is and its rules.
    fn federation(&self) -> Result<FederationInfo, ViewError>;
    /// What changes while it runs.
    fn overview(&self) -> Result<Overview, ViewError>;
    /// Every completed round, oldest first.
    fn rounds(&self) -> Result<Vec<RoundRow>, ViewError>;
    /// One round, open or closed; `None` if it has not opened yet.
    fn round(&self, round: u64) -> Result<Option<RoundDetail>, ViewError>;
    /// The numbers `/metrics` samples at each scrape.
    fn gauges(&self) -> Result<Gauges, ViewError>;
    /// Carries out a steward's request whose signature the dashboard has checked. The nonce
    /// in `by` must be refused if it was seen before ([`AdminError::Replay`]).
    fn apply(&self, action: &StewardAction, by: &Authorised) -> Result<AdminReply, AdminError>;
}

/// A change to the federation that only a steward may ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StewardAction {
    /// Let the open round finish, open no other.
    Pause,
    /// Open rounds again.
    Resume,
    /// Stop selecting a participant and refuse its updates, for good.
    Remove {
        /// The participant.
        participant: u64,
    },
}

impl StewardAction {
    /// Its name in the API and the records: `pause`, `resume`, `remove`.
    pub fn name(&self) -> &'static str {
        match self {
            StewardAction::Pause => "pause",
            StewardAction::Resume => "resume",
            StewardAction::Remove { .. } => "remove",
        }
    }
}

/// Values sampled at each scrape of `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Gauges {
    /// Participants counted alive (they called within the liveness timeout).
    pub connected: u64,
    /// Participants enrolled, removed ones included.
    pub enrolled: u64,
    /// Entries in the ledger.
    pub ledger_entries: u64,
    /// The open round, or the next to open.
    pub round: u64,
    /// Whether a steward paused the federation.
    pub paused: bool,
}

/// The coordinator could not answer (its storage failed).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct ViewError(pub String);

/// Why a steward's request, correctly signed, was not carried out.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AdminError {
    /// Its nonce was used before: a replayed request.
    #[error("replayed request: this nonce was already used; sign a fresh request")]
    Replay,
    /// No such participant.
    #[error("no participant {0} is enrolled")]
    UnknownParticipant(u64),
    /// It would change nothing, or cannot apply now.
    #[error("{0}")]
    Conflict(String),
    /// The coordinator could not record it.
    #[error("the coordinator could not record the request: {0}")]
    Unavailable(String),
}
