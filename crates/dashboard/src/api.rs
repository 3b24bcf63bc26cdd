//! The JSON the API returns: one type per shape, the same on the server and in clients.

use serde::{Deserialize, Serialize};

/// `GET /api/federation`: who the federation is and the rules it runs under.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FederationInfo {
    /// Its human name.
    pub name: String,
    /// The id signed into every enrolment, update and steward request.
    pub federation_id: String,
    /// The gRPC URL participants dial.
    pub coordinator_url: String,
    /// The coordinator's ed25519 key (hex): it signs every ledger tree head.
    pub coordinator_key: String,
    /// SHA-256 of the charter in force (hex).
    pub charter_sha256: String,
    /// The charter's key rules.
    pub charter: CharterRules,
    /// The charter's stewards: the keys whose signed requests may change the federation.
    pub stewards: Vec<Steward>,
    /// The aggregation strategy in use.
    pub strategy: String,
    /// Rounds planned.
    pub rounds: u64,
    /// Participants needed before the first round opens.
    pub min_participants: usize,
    /// Updates needed to close a round at its deadline.
    pub quorum: usize,
    /// Seconds a round stays open.
    pub deadline_s: f64,
}

/// The rules of a charter that a steward checks first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CharterRules {
    /// What is trained, in words.
    pub task: String,
    /// The licence members contribute under.
    pub data_licence: String,
    /// The licence of the released model.
    pub model_licence: String,
    /// Who may enrol: `invite` or `members`.
    pub enrolment: String,
    /// Strategies the coordinator may use.
    pub strategies: Vec<String>,
    /// The least quorum a round may close with.
    pub min_quorum: usize,
    /// The longest a round may stay open, in seconds.
    pub max_deadline_s: f64,
    /// The most rounds the federation may run.
    pub max_rounds: u64,
    /// Steward signatures an amendment needs.
    pub amendment_threshold: usize,
    /// The participant-level privacy budget, if the charter sets one.
    pub privacy: Option<PrivacyBudget>,
}

/// A differential-privacy budget (ε, δ).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PrivacyBudget {
    /// ε.
    pub epsilon: f64,
    /// δ.
    pub delta: f64,
}

/// A steward named by the charter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Steward {
    /// Its name in the charter.
    pub name: String,
    /// Its ed25519 public key (hex).
    pub public_key: String,
}

/// What a member is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    /// Enrolled and alive, not selected for the open round (or none is open).
    Idle,
    /// Selected for the open round; its update has not arrived yet.
    Training,
    /// Its update for the open round has been accepted.
    Uploaded,
    /// Silent for longer than the liveness timeout: not selected until it calls again.
    Dropped,
    /// Removed by a steward: never selected again, its updates refused.
    Removed,
}

/// `GET /api/members`: one enrolled participant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// Its number in the federation, from 0 in order of enrolment.
    pub id: u64,
    /// The name it gave.
    pub name: String,
    /// Its ed25519 public key (hex).
    pub public_key: String,
    /// Its role in the charter (`steward`, `contributor`, `observer`), if the charter names it.
    pub role: Option<String>,
    /// What it is doing now.
    pub state: MemberState,
    /// When it last called the coordinator (ms since the Unix epoch), if it is counted alive.
    pub last_seen_ms: Option<u64>,
    /// Whether it is waiting for a task right now (an open long poll).
    pub waiting: bool,
}

/// Where the federation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Waiting for enough participants to open the next round.
    Waiting,
    /// A round is open.
    Training,
    /// A steward paused the federation and no round is open.
    Paused,
    /// Every round is done; the model is released.
    Finished,
    /// The federation stopped on an error.
    Failed,
}

/// `GET /api/round`: the current round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurrentRound {
    /// Where the federation stands.
    pub phase: Phase,
    /// The open round, or the next one to open (the last one once finished).
    pub round: u64,
    /// Rounds planned.
    pub rounds: u64,
    /// The open round's attempt (0 unless it missed its quorum before).
    pub attempt: u32,
    /// Participants selected for the open round.
    pub selected: Vec<u64>,
    /// Updates accepted so far in the open round.
    pub received: u32,
    /// Updates needed to close it at its deadline.
    pub quorum: u32,
    /// When the open round's deadline falls (ms since the Unix epoch).
    pub deadline_ms: Option<u64>,
    /// Whether a steward has paused the federation (an open round still runs to its end).
    pub paused: bool,
    /// Why the federation failed, if it did.
    pub error: Option<String>,
}

/// A completed round, as listed by `GET /api/rounds`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundRow {
    /// The round, from 1.
    pub round: u64,
    /// Updates combined.
    pub contributors: u32,
    /// Sample-weighted mean training loss of the contributors.
    pub train_loss: f64,
    /// Example-weighted accuracy of the round's model on participants' held-out data, once
    /// the next round's participants have reported it.
    pub accuracy: Option<f64>,
    /// Example-weighted mean loss of the round's model on the same held-out data (for the
    /// char-transformer, the validation loss in nats per character).
    pub validation_loss: Option<f64>,
    /// Digest of the parameters after the round (hex).
    pub global_digest: String,
    /// Participant-level ε spent after this round, where the charter sets a budget.
    pub epsilon: Option<f64>,
}

/// `GET /api/rounds?offset=N&limit=M`: a page of completed rounds, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundPage {
    /// The rounds on this page.
    pub rounds: Vec<RoundRow>,
    /// Completed rounds in all.
    pub total: u64,
    /// Rounds skipped before this page.
    pub offset: u64,
    /// The most rounds a page holds.
    pub limit: u64,
}

/// One acknowledged update, as its sender committed to it: digests and counts, never data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateInput {
    /// Who sent it.
    pub participant: u64,
    /// The attempt at the round it was for.
    pub attempt: u32,
    /// Canonical digest of the parameters (hex).
    pub update_digest: String,
    /// Examples it trained on.
    pub num_samples: u64,
    /// Mean training loss it reported.
    pub train_loss: f32,
    /// Its ed25519 signature over the update statement (hex).
    pub signature: String,
}

/// One ledger entry, with its index in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerRecord {
    /// Its index (the leaf number in the Merkle tree).
    pub index: u64,
    /// The entry, as its canonical JSON says.
    pub entry: serde_json::Value,
}

/// `GET /api/rounds/{round}`: one round with its inputs and its ledger entries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundDetail {
    /// The round.
    pub round: u64,
    /// `open` while it runs, `closed` once its result is recorded.
    pub status: String,
    /// What it produced, once closed.
    pub result: Option<RoundRow>,
    /// Participants selected (for its last attempt).
    pub selected: Vec<u64>,
    /// The acknowledged updates, every attempt.
    pub inputs: Vec<UpdateInput>,
    /// The ledger entries that belong to it (opening, commitments, result).
    pub ledger: Vec<LedgerRecord>,
}

/// `GET /api/ledger/head`: the latest signed tree head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeHeadInfo {
    /// Entries it covers.
    pub size: u64,
    /// Their RFC 6962 Merkle root (hex).
    pub root: String,
    /// When the coordinator signed it (ms since the Unix epoch).
    pub timestamp_ms: u64,
    /// The coordinator's ed25519 signature over (size, root, timestamp) (hex).
    pub signature: String,
    /// The key that signed it (hex).
    pub coordinator_key: String,
    /// The command that checks the whole ledger against this head, offline.
    pub verify: String,
}

/// The privacy budget spent so far.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PrivacySpent {
    /// The charter's ε.
    pub epsilon_budget: f64,
    /// The charter's δ.
    pub delta: f64,
    /// Participant-level ε spent by the rounds completed.
    pub epsilon_spent: f64,
}

/// What changes while the federation runs: the payload of the live `overview` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Overview {
    /// The current round.
    pub round: CurrentRound,
    /// Every enrolled participant.
    pub members: Vec<Member>,
    /// The latest signed tree head, once the ledger has one.
    pub head: Option<TreeHeadInfo>,
    /// The privacy budget spent, where the charter sets one.
    pub privacy: Option<PrivacySpent>,
    /// Rounds completed.
    pub rounds_completed: u64,
}

/// A point of the accuracy and loss chart: the payload of the live `chart` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChartPoint {
    /// The round.
    pub round: u64,
    /// Its model's accuracy, once reported.
    pub accuracy: Option<f64>,
    /// Its contributors' mean training loss.
    pub train_loss: f64,
    /// Its model's loss on held-out data, once reported.
    pub validation_loss: Option<f64>,
}

impl From<&RoundRow> for ChartPoint {
    fn from(r: &RoundRow) -> Self {
        ChartPoint {
            round: r.round,
            accuracy: r.accuracy,
            train_loss: r.train_loss,
            validation_loss: r.validation_loss,
        }
    }
}

/// A steward's request to remove a member: the body of `POST /api/admin/remove`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveRequest {
    /// The participant to remove.
    pub participant: u64,
    /// Why, for the record.
    #[serde(default)]
    pub reason: Option<String>,
}

/// A steward's request to pause or resume: the body of `POST /api/admin/pause` and
/// `/api/admin/resume` (an empty body counts as `{}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PauseRequest {
    /// Why, for the record.
    #[serde(default)]
    pub reason: Option<String>,
}

/// The answer to an admin request that took effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminReply {
    /// `pause`, `resume` or `remove`.
    pub applied: String,
    /// Whether the federation is paused now.
    pub paused: bool,
    /// Participants removed so far.
    pub removed: Vec<u64>,
}

/// Every error the API returns: the HTTP status and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The HTTP status code.
    pub status: u16,
    /// What was wrong, and what to do about it.
    pub error: String,
}
