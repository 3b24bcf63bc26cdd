use std::net::SocketAddr;
use std::path::Path;

use harambee_coordinator::{BufferedConfig, CoordinatorConfig};
use harambee_learn::{ModelKind, ModelTask};
use harambee_llm::PretrainedTask;
use harambee_params::{Layout, ParamSet, UpdateCodec};
use harambee_strategy::{FitConfig, StrategyConfig};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::ServerError;

/// A federation's settings: `federation.toml` in its folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationConfig {
    /// A human name.
    pub name: String,
    /// The id signed into every enrolment and update (random, made by `harambee init`).
    pub federation_id: String,
    /// Where the coordinator listens.
    pub listen: SocketAddr,
    /// Where the dashboard, its JSON API and `/metrics` listen (plain HTTP; loopback unless
    /// an operator chooses otherwise). None: no dashboard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<SocketAddr>,
    /// Host names the dashboard answers to besides its own address (a reverse proxy's public
    /// name, `localhost:9000` for a tunnel); a name without a port is allowed on any port.
    /// Every other `Host` is refused, against DNS rebinding.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http_allowed_hosts: Vec<String>,
    /// The URL participants use (put in the invite).
    pub public_url: String,
    /// Names and addresses the TLS certificate is issued for; the first is the one clients
    /// check.
    pub server_names: Vec<String>,
    /// SHA-256 (hex) of the invite token: the coordinator never stores the token itself.
    pub invite_token_sha256: String,
    /// Admit only members holding their own single-use invite (`harambee invite`), each
    /// redeemed by the first key that enrols with it; the shared token of `invite.toml` is
    /// then refused. Off: the shared token admits anyone who holds it (up to
    /// `limits.max_participants`), and per-member invites work too.
    #[serde(default)]
    pub per_member_invites: bool,
    /// What is trained.
    pub model: ModelTask,
    /// For `model.model = "pretrained"`: the base model (its digest must be the charter's
    /// `base_model`) and the LoRA adapters that train.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretrained: Option<PretrainedTask>,
    /// For `model.model = "custom"`: the safetensors file in the federation's folder that
    /// gives the tensors and their initial values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_weights: Option<InitialWeights>,
    /// How rounds run.
    pub rounds: RoundSettings,
    /// What participants do each round, and how results are combined.
    pub training: TrainingSettings,
    /// Protection against misbehaving clients.
    #[serde(default)]
    pub limits: Limits,
}

/// A custom model's starting point (`harambee init --model safetensors:FILE`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitialWeights {
    /// The file's name in the federation's folder (`initial.safetensors`).
    pub file: String,
    /// SHA-256 (hex) of the file: a coordinator or auditor refuses a file that changed.
    pub sha256: String,
}

impl InitialWeights {
    /// The parameters in the file under `root`, after checking its digest.
    pub fn load(&self, root: &Path) -> Result<ParamSet, ServerError> {
        let path = root.join(&self.file);
        let bytes = std::fs::read(&path).map_err(|e| ServerError::io(&path, e))?;
        let found = hex::encode(Sha256::digest(&bytes));
        if found != self.sha256 {
            return Err(ServerError::Config(format!(
                "{}: SHA-256 {found}, but federation.toml's initial_weights names {}; the initial model must not change once a federation exists",
                path.display(),
                self.sha256
            )));
        }
        ParamSet::from_safetensors(&bytes)
            .map_err(|e| ServerError::Config(format!("{}: {e}", path.display())))
    }
}

/// How rounds run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoundSettings {
    /// Rounds to run.
    pub rounds: u64,
    /// Participants enrolled before the first round opens.
    pub min_participants: usize,
    /// Results needed to close a round at its deadline.
    pub quorum: usize,
    /// Seconds from opening a round to its deadline.
    pub deadline_s: f64,
    /// Times a round that misses its quorum is opened again before the federation pauses
    /// (or fails, see `pause_when_quorum_missed`).
    pub max_retries: u32,
    /// After `max_retries` missed quorums, pause the federation until a steward resumes it
    /// (`harambee admin resume`), rather than end it as failed: a federation whose members
    /// went quiet for a while, or that a swarm of silent enrolments crowded, waits for them.
    #[serde(default = "pause_by_default")]
    pub pause_when_quorum_missed: bool,
    /// Seed for selection, the initial model and participants' shuffling.
    pub seed: u64,
}

/// What participants do each round, and how results are combined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingSettings {
    /// The aggregation strategy.
    pub strategy: StrategyConfig,
    /// Fraction of enrolled participants selected per round.
    pub fraction: f64,
    /// Local epochs.
    pub epochs: u32,
    /// Local batch size.
    pub batch_size: u32,
    /// Local learning rate.
    pub learning_rate: f32,
    /// Secure aggregation (SecAgg+): the coordinator sees only the sum of each round's
    /// updates. Needs a strategy that works on a sum (fedavg, dp-fedavg).
    #[serde(default)]
    pub secure_aggregation: bool,
    /// Under secure aggregation without DP clipping: the largest magnitude of a coordinate of
    /// an update in the fixed-point encoding (larger ones are clipped to it).
    #[serde(default = "default_secagg_range")]
    pub secagg_range: f32,
    /// How updates travel: exact f32, or compressed (`f16`, `bf16`, `int8`,
    /// `topk:FRACTION`); must be the charter's `update_encoding`.
    #[serde(default)]
    pub update_encoding: UpdateCodec,
    /// How the global model travels to members: exact f32, or each round's change encoded
    /// (`f16`, `bf16`, `int8`, `topk:FRACTION`), the published model being the previous one
    /// plus the decoded change; must be the charter's `download_encoding`.
    #[serde(default, skip_serializing_if = "UpdateCodec::is_exact_ref")]
    pub download_encoding: UpdateCodec,
    /// Buffered asynchronous aggregation (FedBuff) instead of synchronous rounds; must be the
    /// charter's `buffered` rule. `rounds.rounds` counts versions, `rounds.deadline_s` is how
    /// long one member's work may take before it is given to another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffered: Option<harambee_charter::BufferedRule>,
    /// Verifiable training: the share of each round's updates replayed before aggregation;
    /// must be the charter's `verification` rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<harambee_charter::VerificationRule>,
    /// Under verification: the public corpus, read as the workers read it, on which the
    /// coordinator replays their training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_data: Option<std::path::PathBuf>,
}

fn pause_by_default() -> bool {
    true
}

fn default_secagg_range() -> f32 {
    1.0
}

/// Protection against misbehaving clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest single gRPC message accepted, in bytes (one update chunk and its framing).
    pub max_message_bytes: usize,
    /// Requests per second allowed per participant key (sustained).
    pub requests_per_second: u32,
    /// Requests a participant may burst above that rate.
    pub burst: u32,
    /// Longest a `GetTask` long poll is held, in milliseconds.
    pub max_wait_ms: u32,
    /// Keep participants' update blobs for this many most recent rounds (none: forever).
    /// Their digests and signatures stay in the state either way; only rounds whose updates
    /// are kept can be recomputed by an auditor.
    pub keep_update_rounds: Option<u64>,
    /// Seconds without any call after which a participant counts as gone: it is no longer
    /// selected, and a round it was selected for stops waiting for it. Its next call brings
    /// it back. Participants send heartbeats while they train.
    pub liveness_timeout_s: f64,
    /// Under secure aggregation: how long each protocol step after the first waits for
    /// participants before it closes without them.
    pub secagg_step_s: f64,
    /// The largest sample count one update may claim (its FedAvg weight) and the most
    /// examples one evaluation report may name. Bounded so that no participant can overflow
    /// a sum or outweigh the federation by a number alone.
    pub max_samples: u64,
    /// Members the coordinator enrols at most: a Sybil with an invite cannot flood it.
    pub max_participants: u64,
    /// How far a call's timestamp may be from the coordinator's clock, in seconds; calls are
    /// refused as replays within this window too.
    pub clock_skew_s: f64,
    /// Connections served at once; more are closed as they arrive.
    pub max_connections: usize,
    /// Concurrent calls (HTTP/2 streams) on one connection.
    pub max_streams_per_connection: u32,
    /// Seconds a client has to finish its TLS handshake.
    pub handshake_timeout_s: f64,
    /// Seconds any one call may last (a long poll, an upload), after which it is cut.
    pub request_timeout_s: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 1 << 20,
            requests_per_second: 50,
            burst: 100,
            max_wait_ms: 30_000,
            keep_update_rounds: None,
            liveness_timeout_s: 90.0,
            secagg_step_s: 20.0,
            max_samples: 10_000_000,
            max_participants: 10_000,
            clock_skew_s: 300.0,
            max_connections: 4096,
            max_streams_per_connection: 64,
            handshake_timeout_s: 10.0,
            request_timeout_s: 600.0,
        }
    }
}

impl FederationConfig {
    /// The trained parameters' layout and their initial values, from the seed. A pretrained
    /// federation's adapters follow from the base's architecture and the LoRA settings, so
    /// neither the coordinator nor an auditor needs a copy of the base. A custom model's come
    /// from its initial weights in the federation's folder `root`.
    pub fn initial_model(&self, root: &Path) -> Result<(Layout, ParamSet), ServerError> {
        if let Some(initial) = &self.initial_weights {
            let params = initial.load(root)?;
            return Ok((params.layout().clone(), params));
        }
        match &self.pretrained {
            Some(task) => Ok((task.layout(), task.initial(self.rounds.seed))),
            None => {
                let trainer = self.model.trainer()?;
                Ok((trainer.layout().clone(), trainer.init(self.rounds.seed)))
            }
        }
    }

    /// Parses `federation.toml` text and checks it.
    pub fn parse(text: &str) -> Result<Self, ServerError> {
        let config: Self = toml::from_str(text)
            .map_err(|e| ServerError::Config(format!("federation.toml: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges that would otherwise fail deep inside a run.
    pub fn validate(&self) -> Result<(), ServerError> {
        let bad = |m: String| Err(ServerError::Config(m));
        if self.rounds.rounds == 0 {
            return bad("rounds.rounds must be at least 1".into());
        }
        if self.rounds.quorum == 0 || self.rounds.quorum > self.rounds.min_participants.max(1) {
            return bad(format!(
                "rounds.quorum {} must be between 1 and rounds.min_participants ({})",
                self.rounds.quorum, self.rounds.min_participants
            ));
        }
        if !(self.rounds.deadline_s.is_finite() && self.rounds.deadline_s > 0.0) {
            return bad("rounds.deadline_s must be positive".into());
        }
        if self.model.classes.is_empty() {
            return bad("model.classes must name at least one class".into());
        }
        if (self.model.model == ModelKind::Pretrained) != self.pretrained.is_some() {
            return bad(
                "model.model = \"pretrained\" and the [pretrained] settings go together".into(),
            );
        }
        if (self.model.model == ModelKind::Custom) != self.initial_weights.is_some() {
            return bad(
                "model.model = \"custom\" and the [initial_weights] file go together".into(),
            );
        }
        if self.training.secure_aggregation && !self.training.update_encoding.is_exact() {
            return bad(format!(
                "secure aggregation sums fixed-point updates of its own; training.update_encoding must be f32, not {}",
                self.training.update_encoding
            ));
        }
        if let Some(w) = &self.initial_weights
            && (w.file.is_empty() || w.file.contains(['/', '\\']) || w.file.starts_with('.'))
        {
            return bad(format!(
                "initial_weights.file {:?} must be a plain file name in the federation's folder",
                w.file
            ));
        }
        if let Some(p) = &self.pretrained
            && let Err(e) = p.validate()
        {
            return bad(format!("pretrained: {e}"));
        }
        if self.server_names.is_empty() {
            return bad("server_names must name at least one host".into());
        }
        let blind = matches!(
            self.training.strategy,
            StrategyConfig::FedAvg | StrategyConfig::DpFedAvg { .. }
        );
        if self.training.secure_aggregation && !blind {
            return bad(format!(
                "secure aggregation needs fedavg or dp-fedavg; {} combines individual updates",
                self.training.strategy
            ));
        }
        if let Some(rule) = &self.training.buffered {
            rule.validate()
                .map_err(|e| ServerError::Config(format!("training.{e}")))?;
            harambee_coordinator::BufferedDp::for_strategy(&self.training.strategy)
                .map_err(ServerError::Config)?;
            if self.training.secure_aggregation {
                return bad(
                    "buffered aggregation runs without secure aggregation: SecAgg+ sums a fixed set of members that start together (docs/async.md)"
                        .into(),
                );
            }
        }
        if !(self.limits.secagg_step_s.is_finite() && self.limits.secagg_step_s > 0.0) {
            return bad("limits.secagg_step_s must be positive".into());
        }
        if !(self.training.secagg_range.is_finite() && self.training.secagg_range > 0.0) {
            return bad("training.secagg_range must be positive".into());
        }
        if !(self.limits.liveness_timeout_s.is_finite() && self.limits.liveness_timeout_s > 0.0) {
            return bad("limits.liveness_timeout_s must be positive".into());
        }
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if !(positive(self.limits.clock_skew_s)
            && positive(self.limits.handshake_timeout_s)
            && positive(self.limits.request_timeout_s))
        {
            return bad(
                "limits.clock_skew_s, handshake_timeout_s and request_timeout_s must be positive"
                    .into(),
            );
        }
        if self.limits.request_timeout_s * 1000.0 <= f64::from(self.limits.max_wait_ms) {
            return bad("limits.request_timeout_s must be longer than limits.max_wait_ms".into());
        }
        // Sample counts are summed in u64 and weighted in f64: keep each one exact in f64 and
        // any sum of them far from overflowing.
        if self.limits.max_samples == 0 || self.limits.max_samples > 1 << 40 {
            return bad("limits.max_samples must be between 1 and 2^40".into());
        }
        if self.limits.max_participants < self.rounds.min_participants as u64 {
            return bad(format!(
                "limits.max_participants ({}) is below rounds.min_participants ({})",
                self.limits.max_participants, self.rounds.min_participants
            ));
        }
        if self.limits.max_connections == 0 || self.limits.max_streams_per_connection == 0 {
            return bad(
                "limits.max_connections and max_streams_per_connection must be at least 1".into(),
            );
        }
        if self.limits.max_message_bytes < harambee_proto::CHUNK_BYTES + 4096 {
            return bad(format!(
                "limits.max_message_bytes must be at least {} (one chunk and its framing)",
                harambee_proto::CHUNK_BYTES + 4096
            ));
        }
        Ok(())
    }

    /// The core's settings.
    pub fn core(&self) -> CoordinatorConfig {
        CoordinatorConfig {
            seed: self.rounds.seed,
            rounds: self.rounds.rounds,
            min_participants: self.rounds.min_participants,
            quorum: self.rounds.quorum,
            round_timeout_ms: (self.rounds.deadline_s * 1000.0) as u64,
            max_round_retries: self.rounds.max_retries,
            pause_when_quorum_missed: self.rounds.pause_when_quorum_missed,
            download: self.training.download_encoding,
        }
    }

    /// The FedBuff core's settings, for a buffered federation.
    pub fn buffered_core(&self) -> Option<BufferedConfig> {
        let rule = self.training.buffered?;
        Some(BufferedConfig {
            seed: self.rounds.seed,
            versions: self.rounds.rounds,
            buffer: rule.buffer,
            concurrency: rule.concurrency,
            server_lr: rule.server_lr,
            max_staleness: rule.max_staleness,
            download: self.training.download_encoding,
            dp: harambee_coordinator::BufferedDp::for_strategy(&self.training.strategy)
                .ok()
                .flatten(),
        })
    }

    /// What selected participants are told to do.
    pub fn fit(&self) -> FitConfig {
        FitConfig {
            epochs: self.training.epochs,
            batch_size: self.training.batch_size,
            learning_rate: self.training.learning_rate,
            proximal_mu: 0.0,
            local_steps: 0,
        }
    }
}
