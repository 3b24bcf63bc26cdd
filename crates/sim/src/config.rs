use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use harambee_learn::{ModelKind, Optimizer, Partition};
use harambee_params::UpdateCodec;
use harambee_strategy::StrategyConfig;
use serde::{Deserialize, Serialize};

use crate::{Attack, SimError};

/// The data sets the simulator knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetName {
    /// MNIST handwritten digits.
    Mnist,
    /// Fashion-MNIST clothing images.
    FashionMnist,
    /// The UDHR in many languages, as language identification.
    Udhr,
    /// Shakespeare's plays as plain text, for the character-level language model.
    Shakespeare,
    /// The UDHR's languages as byte-level text, for the character-level language model,
    /// with bits per character reported language by language.
    UdhrText,
}

impl DatasetName {
    /// The name, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            DatasetName::Mnist => "mnist",
            DatasetName::FashionMnist => "fashion-mnist",
            DatasetName::Udhr => "udhr",
            DatasetName::Shakespeare => "shakespeare",
            DatasetName::UdhrText => "udhr-text",
        }
    }
}

impl fmt::Display for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DatasetName {
    type Err = SimError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "mnist" => Ok(DatasetName::Mnist),
            "fashion-mnist" | "fashion" => Ok(DatasetName::FashionMnist),
            "udhr" => Ok(DatasetName::Udhr),
            "shakespeare" => Ok(DatasetName::Shakespeare),
            "udhr-text" => Ok(DatasetName::UdhrText),
            other => Err(SimError::InvalidSetting(format!(
                "unknown dataset {other:?}; known: mnist, fashion-mnist, udhr, shakespeare, udhr-text"
            ))),
        }
    }
}

/// Everything a simulation needs, as flags or a TOML file give it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// The data set.
    pub dataset: DatasetName,
    /// Where to read it; by default `data/full/NAME` when fetched, else the bundled subset.
    pub data_dir: Option<PathBuf>,
    /// The model.
    pub model: ModelKind,
    /// Virtual participants (K).
    pub clients: usize,
    /// Fraction selected per round (C).
    pub fraction: f64,
    /// Local epochs (E).
    pub epochs: u32,
    /// Local optimiser steps per round instead of epochs (0: use epochs). DiLoCo sets its own
    /// H (`--strategy diloco:H`).
    pub local_steps: u32,
    /// Local batch size (B); 0 for the whole local set.
    pub batch: u32,
    /// Local learning rate.
    pub lr: f32,
    /// The local optimiser.
    pub optimizer: Optimizer,
    /// How the training set is split among participants.
    pub partition: Partition,
    /// Rounds to run at most.
    pub rounds: u64,
    /// The aggregation strategy.
    pub strategy: StrategyConfig,
    /// Seed for everything random.
    pub seed: u64,
    /// Stop once test accuracy reaches this.
    pub target_accuracy: Option<f64>,
    /// Evaluate on the test set every this many rounds (and always on the last).
    pub eval_every: u64,
    /// Where to write `rounds.jsonl`, `rounds.csv`, `summary.json` and `model.safetensors`.
    pub out: Option<PathBuf>,
    /// Embedding width of the language-identification model.
    pub embedding_dim: usize,
    /// UDHR languages to use (codes); all in the index when empty.
    pub languages: Vec<String>,
    /// Train with burn even where a hand-written model exists (to cross-check engines).
    pub burn_only: bool,
    /// Probability that a selected participant vanishes before reporting (drawn from the
    /// seed, per round and participant). The round then closes at its deadline.
    pub dropout: f64,
    /// Results needed to close a round at its deadline; below it the round is opened again.
    pub quorum: usize,
    /// What malicious participants do, if there are any.
    pub attack: Option<Attack>,
    /// Fraction of participants that are malicious (chosen from the seed).
    pub attackers: f64,
    /// Secure aggregation: the coordinator sees only the sum of the updates (SecAgg+), and
    /// rounds are unweighted means. Needs a strategy that works on a sum (fedavg, dp-fedavg).
    pub secure_aggregation: bool,
    /// The fixed-point range of a coordinate of an update under secure aggregation, when the
    /// strategy does not clip (DP-FedAvg sets it from its bound).
    pub secagg_range: f32,
    /// How updates travel: exact f32, or their change from the round's base compressed
    /// (f16, bf16, int8, top-k), with each participant's error feedback carried between its
    /// rounds. Rounds combine the updates as decoded, and `bytes_up` counts the encoding.
    pub update_encoding: UpdateCodec,
    /// How the global model travels to members: exact f32, or each round's change encoded
    /// (the published model is the previous one plus the decoded change, as the networked
    /// coordinator publishes it). `bytes_down` counts the encoding from the second round on.
    pub download_encoding: UpdateCodec,
    /// Simulated time: participants' speeds and links, over-selection and a deadline
    /// (`[timing]` in a settings file). None: no clock, every round waits for everyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing: Option<crate::Timing>,
    /// Buffered asynchronous aggregation (FedBuff) instead of rounds: `rounds` is then the
    /// number of versions published. Needs simulated time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fedbuff: Option<crate::FedBuffSettings>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            dataset: DatasetName::Mnist,
            data_dir: None,
            model: ModelKind::Mlp2nn,
            clients: 100,
            fraction: 0.1,
            epochs: 1,
            local_steps: 0,
            batch: 10,
            lr: 0.1,
            optimizer: Optimizer::default(),
            partition: Partition::Iid,
            rounds: 100,
            strategy: StrategyConfig::FedAvg,
            seed: 0,
            target_accuracy: None,
            eval_every: 1,
            out: None,
            embedding_dim: 32,
            languages: Vec::new(),
            burn_only: false,
            dropout: 0.0,
            quorum: 1,
            attack: None,
            attackers: 0.0,
            secure_aggregation: false,
            secagg_range: 1.0,
            update_encoding: UpdateCodec::F32,
            download_encoding: UpdateCodec::F32,
            timing: None,
            fedbuff: None,
        }
    }
}

impl SimConfig {
    /// Language communities on the UDHR: `participants` communities share `languages`
    /// languages so that each language is held by two communities and each community by a
    /// handful, and every community trains in every round (the demo's federation).
    pub fn language_communities(participants: usize, languages: usize) -> Self {
        let per_participant = (2 * languages)
            .div_ceil(participants.max(1))
            .clamp(1, languages.max(1));
        Self {
            dataset: DatasetName::Udhr,
            model: ModelKind::LangId,
            clients: participants,
            fraction: 1.0,
            epochs: 3,
            batch: 32,
            lr: 0.05,
            optimizer: Optimizer::AdamW { weight_decay: 0.0 },
            partition: Partition::Natural {
                classes_per_participant: per_participant,
            },
            ..Self::default()
        }
    }

    /// Checks ranges that would otherwise fail deep inside a run, and that the model can
    /// train on the data set.
    pub fn validate(&self) -> Result<(), SimError> {
        self.validate_training()?;
        let char_model = matches!(self.model, ModelKind::CharTransformer(_));
        let text = matches!(
            self.dataset,
            DatasetName::Shakespeare | DatasetName::UdhrText
        );
        if char_model != text {
            return Err(SimError::InvalidSetting(format!(
                "--model {} cannot train on --dataset {}: the char-transformer and the text sets (shakespeare, udhr-text) go together",
                self.model, self.dataset
            )));
        }
        Ok(())
    }

    /// Checks the federation's and the training's settings, whatever the model.
    pub fn validate_training(&self) -> Result<(), SimError> {
        let bad = |m: String| Err(SimError::InvalidSetting(m));
        if self.clients == 0 {
            return bad("--clients must be at least 1".into());
        }
        if !(self.fraction > 0.0 && self.fraction <= 1.0) {
            return bad(format!("--fraction {} must be in (0, 1]", self.fraction));
        }
        if let Some(timing) = &self.timing {
            timing.validate()?;
            if self.secure_aggregation {
                return bad(
                    "simulated time is not modelled under secure aggregation (its steps have their own deadlines)".into(),
                );
            }
        }
        if self.fedbuff.is_some() {
            if self.timing.is_none() {
                return bad("FedBuff runs on simulated time: add --simulated-time".into());
            }
            if self.secure_aggregation || self.attack.is_some() || self.dropout > 0.0 {
                return bad(
                    "FedBuff is simulated without secure aggregation, attacks or dropout".into(),
                );
            }
            harambee_coordinator::BufferedDp::for_strategy(&self.strategy)
                .map_err(SimError::InvalidSetting)?;
        }
        if self.secure_aggregation && !self.update_encoding.is_exact() {
            return bad(format!(
                "secure aggregation sums fixed-point updates of its own: --update-encoding {} cannot go with it",
                self.update_encoding
            ));
        }
        if !(self.lr.is_finite() && self.lr >= 0.0) {
            return bad(format!(
                "--lr {} must be a finite non-negative number",
                self.lr
            ));
        }
        if self.epochs == 0 {
            return bad("--epochs must be at least 1".into());
        }
        if self.rounds == 0 {
            return bad("--rounds must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("--dropout {} must be in [0, 1)", self.dropout));
        }
        if !(0.0..1.0).contains(&self.attackers) {
            return bad(format!("--attackers {} must be in [0, 1)", self.attackers));
        }
        if self.attack.is_some() != (self.attackers > 0.0) {
            return bad("--attack and --attackers go together: what the attackers do, and what fraction attacks".into());
        }
        if !(self.secagg_range.is_finite() && self.secagg_range > 0.0) {
            return bad(format!(
                "--secagg-range {} must be positive",
                self.secagg_range
            ));
        }
        if let StrategyConfig::DpFedAvg { noise, .. } = self.strategy
            && noise == harambee_strategy::privacy::NoisePlacement::Distributed
            && !self.secure_aggregation
        {
            return bad("distributed noise needs secure aggregation (--privacy secagg,distributed-dp): without it the coordinator would see each update with only a share of the noise".into());
        }
        if let Some(t) = self.target_accuracy
            && !(0.0..=1.0).contains(&t)
        {
            return bad(format!("--target-accuracy {t} must be in [0, 1]"));
        }
        Ok(())
    }
}

/// What `--privacy` asks for: a comma-separated list of `secagg` (secure aggregation),
/// `distributed-dp` (participants add DP-FedAvg's noise; needs `secagg`) and `central-dp`
/// (the coordinator adds it, the default), or `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PrivacySettings {
    /// Secure aggregation on.
    pub secure_aggregation: bool,
    /// Where DP-FedAvg's noise goes, when the list says.
    pub noise: Option<harambee_strategy::privacy::NoisePlacement>,
}

impl FromStr for PrivacySettings {
    type Err = SimError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        use harambee_strategy::privacy::NoisePlacement;
        let mut out = Self::default();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            match item {
                "none" => {}
                "secagg" | "secure-aggregation" => out.secure_aggregation = true,
                "distributed-dp" => out.noise = Some(NoisePlacement::Distributed),
                "central-dp" => out.noise = Some(NoisePlacement::Central),
                other => {
                    return Err(SimError::InvalidSetting(format!(
                        "unknown privacy setting {other:?}; use secagg, distributed-dp, central-dp or none"
                    )));
                }
            }
        }
        Ok(out)
    }
}

impl PrivacySettings {
    /// Applies the settings to `config`; noise placement needs a DP strategy.
    pub fn apply_to(self, config: &mut SimConfig) -> Result<(), SimError> {
        config.secure_aggregation |= self.secure_aggregation;
        if let Some(placement) = self.noise {
            match &mut config.strategy {
                StrategyConfig::DpFedAvg { noise, .. } => *noise = placement,
                other => {
                    return Err(SimError::InvalidSetting(format!(
                        "--privacy {placement:?} noise needs a dp-fedavg or dp-adaptive strategy, not {other}"
                    )));
                }
            }
        }
        Ok(())
    }
}
