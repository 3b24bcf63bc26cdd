use std::sync::Arc;

use harambee_params::{Digest, ParamSet};
use harambee_strategy::{
    Failure, FailureReason, FitConfig, FitResult, ParticipantId, SecureSum, StrategyError,
    UpdatePrivacy,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A point in time, in milliseconds since an epoch the driver chooses (virtual in simulation,
/// a monotonic clock in the service).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Tick(pub u64);

impl Tick {
    /// `self + ms`, saturating.
    pub fn after_ms(self, ms: u64) -> Tick {
        Tick(self.0.saturating_add(ms))
    }
}

/// The coordinator's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoordinatorConfig {
    /// Seed for participant selection: the same seed gives the same selections.
    pub seed: u64,
    /// Rounds to run before finishing.
    pub rounds: u64,
    /// Participants that must be enrolled before a round opens.
    pub min_participants: usize,
    /// Results needed to aggregate when the deadline passes.
    pub quorum: usize,
    /// Milliseconds from opening a round to its deadline.
    pub round_timeout_ms: u64,
    /// Times a round that missed its quorum is opened again before the federation fails.
    pub max_round_retries: u32,
    /// When a round has missed its quorum `max_round_retries + 1` times: pause the federation
    /// (a steward resumes it once enough members are back) instead of failing it.
    #[serde(default)]
    pub pause_when_quorum_missed: bool,
    /// How the global model travels to members: exact f32, or its change from the round's
    /// base, encoded (the published model is then the base plus the decoded change; see
    /// [`published_step`](crate::published_step)).
    #[serde(default)]
    pub download: harambee_params::UpdateCodec,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            rounds: 10,
            min_participants: 2,
            quorum: 1,
            round_timeout_ms: 600_000,
            max_round_retries: 3,
            pause_when_quorum_missed: false,
            download: harambee_params::UpdateCodec::F32,
        }
    }
}

/// An input to the core.
#[derive(Debug, Clone)]
pub enum Event {
    /// A participant joined (already authenticated by the driver).
    Enrol(ParticipantId),
    /// A participant left or was declared gone by the driver.
    Leave(ParticipantId),
    /// A participant's result for a round.
    Result {
        /// The round it trained for.
        round: u64,
        /// What it trained.
        result: FitResult,
        /// The canonical digest of `result.params`. The driver computes it where it is cheap
        /// (while receiving the bytes, or on the training thread), so the core does not hash
        /// every update again on its single thread.
        digest: Digest,
    },
    /// The round's updates as secure aggregation delivers them: only their sum. It closes
    /// the round; the selected participants left out of it count as dropped.
    SecureSum {
        /// The round it sums.
        round: u64,
        /// The sum and who is in it.
        sum: SecureSum,
    },
    /// A steward paused the federation: an open round runs to its end, but no round opens
    /// until [`Event::Resume`].
    Pause,
    /// A steward resumed a paused federation: rounds open again.
    Resume,
    /// A selected participant reported that it cannot deliver.
    Failed {
        /// The round.
        round: u64,
        /// Who and why.
        failure: Failure,
    },
}

/// Why a result was refused. The core's state is unchanged by a refused result.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The participant is not enrolled.
    #[error("participant {0} is not enrolled")]
    UnknownParticipant(ParticipantId),
    /// The result is for another round than the one open.
    #[error("result for round {got}, but round {expected} is open")]
    WrongRound {
        /// The open round (0 when none is).
        expected: u64,
        /// The round the result names.
        got: u64,
    },
    /// The participant was not selected for this round.
    #[error("participant {0} was not selected for this round")]
    NotSelected(ParticipantId),
    /// The participant already delivered a result this round (a replay).
    #[error("participant {0} already delivered this round")]
    Duplicate(ParticipantId),
    /// The parameters do not match the model's names and shapes.
    #[error("the update's tensors do not match the model's names and shapes")]
    LayoutMismatch,
    /// A secure sum over fewer participants than the round's quorum.
    #[error("a sum over {got} participants, below the quorum of {quorum}")]
    BelowQuorum {
        /// Participants in the sum.
        got: usize,
        /// The quorum.
        quorum: usize,
    },
    /// The parameters hold NaN or infinite values.
    #[error("the update holds NaN or infinite values")]
    NonFinite,
    /// The result claims zero training examples.
    #[error("the update claims zero training examples")]
    NoSamples,
}

/// What an event did, so drivers can answer participants precisely.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum EventOutcome {
    /// A participant was enrolled.
    Enrolled,
    /// The participant was already enrolled; nothing changed.
    AlreadyEnrolled,
    /// A participant left.
    Left,
    /// A result was validated and kept for aggregation.
    Accepted,
    /// A failure was recorded.
    FailureRecorded,
    /// The federation is paused (or already was): no round opens.
    Paused,
    /// The federation is running (or already was): rounds open.
    Resumed,
    /// The input was refused, for the stated reason.
    Refused(Refusal),
    /// The federation has finished or failed; nothing more is accepted.
    Closed,
}

/// A round the driver must run: send the global parameters to the selected participants.
#[derive(Debug, Clone)]
pub struct OpenRound {
    /// The round number, from 1.
    pub round: u64,
    /// Which attempt at this round (0 the first time).
    pub attempt: u32,
    /// Who trains, sorted.
    pub participants: Vec<ParticipantId>,
    /// What they should do.
    pub config: FitConfig,
    /// What they must do to their update when the coordinator will see only a sum, for the
    /// strategies that say (DP-FedAvg: clip, and add a share of the noise).
    pub privacy: Option<UpdatePrivacy>,
    /// The parameters they start from.
    pub global: Arc<ParamSet>,
    /// Its digest.
    pub base: Digest,
    /// When the round's deadline falls.
    pub deadline: Tick,
}

/// How a round ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RoundOutcome {
    /// New global parameters, with their digest.
    Updated(Digest),
    /// The strategy kept the previous model.
    Kept {
        /// Why.
        reason: String,
    },
}

/// One participant's part in a closed round, as the ledger and the dashboard record it.
#[derive(Debug, Clone, PartialEq)]
pub struct Contribution {
    /// Who.
    pub participant: ParticipantId,
    /// The examples it trained on (its weight; 0 under secure aggregation).
    pub num_samples: u64,
    /// Its update's digest (under secure aggregation, the sum's).
    pub digest: Digest,
    /// Its mean training loss (0 under secure aggregation).
    pub train_loss: f32,
}

/// Everything a completed round used and produced: what the ledger and the metrics record.
#[derive(Debug, Clone)]
pub struct RoundSummary {
    /// The round number.
    pub round: u64,
    /// The strategy's name.
    pub strategy: &'static str,
    /// Digest of the parameters the round started from.
    pub base: Digest,
    /// Accepted results: who, how many samples, the digest of their parameters, their loss.
    /// Under secure aggregation: each contributor with 0 samples, the digest of the sum of
    /// updates and no loss, since no one's own update was seen.
    pub contributions: Vec<Contribution>,
    /// Selected participants that did not contribute.
    pub failures: Vec<Failure>,
    /// What came of it.
    pub outcome: RoundOutcome,
    /// The global parameters after the round.
    pub global: Arc<ParamSet>,
    /// Under a lossy download encoding, the bytes that turn the base into `global`.
    pub download: Option<Arc<Vec<u8>>>,
}

/// An output of the core.
#[derive(Debug, Clone)]
pub enum Action {
    /// Run a round.
    OpenRound(OpenRound),
    /// A round is complete.
    CloseRound(RoundSummary),
    /// A round missed its quorum: it will be opened again, or (`paused`) it has missed it too
    /// often and the federation waits for a steward to resume it.
    RoundRetried {
        /// The round.
        round: u64,
        /// Results received before the deadline.
        received: usize,
        /// Results that were needed.
        quorum: usize,
        /// The federation paused itself instead of failing (see
        /// [`CoordinatorConfig::pause_when_quorum_missed`]).
        paused: bool,
    },
    /// All rounds are done (or the federation failed, see [`Coordinator::error`](crate::Coordinator::error)).
    Finished {
        /// The final global parameters.
        global: Arc<ParamSet>,
    },
}

/// A fatal error: the core keeps it, and every later call reports it.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum CoreError {
    /// The strategy failed to aggregate.
    #[error("round {round}: aggregation failed: {error}")]
    Aggregation {
        /// The round.
        round: u64,
        /// The strategy's error.
        error: StrategyError,
    },
    /// A round missed its quorum more often than allowed.
    #[error("round {round} missed its quorum of {quorum} results {attempts} times")]
    QuorumNotReached {
        /// The round.
        round: u64,
        /// The quorum.
        quorum: usize,
        /// Attempts made.
        attempts: u32,
    },
}

impl From<&Refusal> for FailureReason {
    fn from(r: &Refusal) -> Self {
        FailureReason::Refused(r.to_string())
    }
}

/// What a restarted coordinator needs besides its settings, strategy and global parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestorePoint {
    /// Rounds completed.
    pub completed: u64,
    /// Enrolled participants.
    pub participants: Vec<ParticipantId>,
    /// The round that was open: its attempt and selection.
    pub open: Option<(u32, Vec<ParticipantId>)>,
    /// Whether a steward had paused the federation (an open round still runs to its end).
    pub paused: bool,
}
