use std::fmt;

use harambee_params::ParamSet;
use serde::{Deserialize, Serialize};

use crate::StrategyError;

/// A participant's identity within a federation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ParticipantId(pub u64);

impl fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{}", self.0)
    }
}

/// What a selected participant is asked to do in a round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitConfig {
    /// Passes over the local data (E).
    pub epochs: u32,
    /// Mini-batch size (B); 0 means the whole local set as one batch.
    pub batch_size: u32,
    /// Local learning rate.
    pub learning_rate: f32,
    /// FedProx's proximal weight μ; 0 for plain local training.
    pub proximal_mu: f32,
    /// Optimiser steps to take instead of whole epochs (DiLoCo's H inner steps); 0 means
    /// `epochs` passes. Steps run through the local data in shuffled order and wrap around.
    #[serde(default)]
    pub local_steps: u32,
}

impl Default for FitConfig {
    fn default() -> Self {
        Self {
            epochs: 1,
            batch_size: 10,
            learning_rate: 0.1,
            proximal_mu: 0.0,
            local_steps: 0,
        }
    }
}

/// A participant's result for one round: its locally trained parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct FitResult {
    /// Who trained.
    pub participant: ParticipantId,
    /// The parameters after local training (same layout as the global model).
    pub params: ParamSet,
    /// Examples trained on, FedAvg's weight.
    pub num_samples: u64,
    /// Mean training loss over the last local epoch.
    pub train_loss: f32,
}

/// Why a selected participant did not deliver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum FailureReason {
    /// It stopped answering.
    Dropped,
    /// Its result came after the round's deadline.
    Late,
    /// Its result was refused by validation; the text says why.
    Refused(String),
}

/// A selected participant that did not contribute, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Who failed.
    pub participant: ParticipantId,
    /// Why.
    pub reason: FailureReason,
}

/// What a strategy makes of a round.
#[derive(Debug, Clone, PartialEq)]
pub enum Aggregate {
    /// The new global parameters.
    Updated(ParamSet),
    /// The round produced nothing usable; the global model stays as it was.
    KeepPrevious {
        /// Why, for the logs and the ledger.
        reason: String,
    },
}

/// An aggregation rule, pure: no IO, no clock, no unseeded randomness.
pub trait Strategy: Send + Sync {
    /// A short name for logs and the ledger (`fedavg`, `fedadam`, ...).
    fn name(&self) -> &'static str;

    /// How many of `available` participants to select this round.
    fn sample_size(&self, available: usize) -> usize;

    /// The instructions for the round's participants.
    fn configure_fit(&self, round: u64) -> FitConfig;

    /// Combines the round's results into the next global parameters.
    fn aggregate_fit(
        &mut self,
        round: u64,
        global: &ParamSet,
        results: &[FitResult],
        failures: &[Failure],
    ) -> Result<Aggregate, StrategyError>;

    /// What each participant must do to its update `Δ = local − global` before it leaves the
    /// machine when the coordinator will only see a sum (secure aggregation): clip it, add a
    /// share of the noise, report whether it was within the bound. `None`: send `Δ` as it is.
    fn update_privacy(&self, _round: u64, _selected: usize) -> Option<UpdatePrivacy> {
        None
    }

    /// Combines a round whose individual updates the coordinator never saw, only their sum
    /// (secure aggregation). Rules that need each update (weights, robust statistics, server
    /// optimisers that could but do not yet) refuse, saying so.
    fn aggregate_secure(
        &mut self,
        _round: u64,
        _global: &ParamSet,
        _sum: &SecureSum,
    ) -> Result<Aggregate, StrategyError> {
        Err(StrategyError::InvalidSetting {
            name: "secure aggregation",
            reason: format!(
                "{} combines individual updates and cannot run on their sum; use fedavg or dp-fedavg",
                self.name()
            ),
        })
    }

    /// What the strategy carries from round to round (server optimiser moments), named, so a
    /// restarted coordinator continues exactly. Stateless rules keep the default: nothing.
    fn state(&self) -> Vec<(&'static str, ParamSet)> {
        Vec::new()
    }

    /// Takes back what [`state`](Self::state) gave. Names the strategy does not know are an
    /// error: they mean the state belongs to another strategy.
    fn restore_state(&mut self, state: Vec<(String, ParamSet)>) -> Result<(), StrategyError> {
        match state.first() {
            None => Ok(()),
            Some((name, _)) => Err(StrategyError::InvalidSetting {
                name: "state",
                reason: format!(
                    "{} keeps no state, but state {name:?} was given",
                    self.name()
                ),
            }),
        }
    }
}

/// The instructions a participant follows before its update is summed blind.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct UpdatePrivacy {
    /// L2 bound each update is clipped to.
    pub clip: f64,
    /// Standard deviation of the Gaussian noise each participant adds to each coordinate of
    /// its clipped update (its share of distributed DP; 0 when the coordinator adds the noise).
    pub noise_std: f64,
    /// Whether to report `1` if the update was within `clip` (before clipping), else `0`,
    /// for adaptive clipping; that count is summed blind too.
    pub report_within_clip: bool,
    /// Standard deviation of the noise each participant adds to that report.
    pub report_noise_std: f64,
}

impl UpdatePrivacy {
    /// The largest magnitude a coordinate of a transformed update should have, for a
    /// fixed-point encoding: the L2 bound (which bounds every coordinate, and is at least the
    /// report's 1) plus six standard deviations of the participant's noise.
    pub fn coordinate_bound(&self) -> f64 {
        self.clip.max(1.0) + 6.0 * self.noise_std.max(self.report_noise_std)
    }

    /// Applies the instructions to `delta` in place, drawing noise from `rng` (the operating
    /// system's generator: noise a coordinator could regenerate would protect nothing).
    /// Returns the (noised) within-clip report, or 0 when none is asked.
    pub fn apply(&self, delta: &mut ParamSet, rng: &mut impl rand::Rng) -> f64 {
        use rand_distr::{Distribution, Normal};
        let within = delta.l2_norm() <= self.clip;
        delta.clip_l2(self.clip);
        if self.noise_std > 0.0
            && let Ok(normal) = Normal::new(0.0, self.noise_std)
        {
            delta
                .values_mut()
                .iter_mut()
                .for_each(|v| *v += normal.sample(rng) as f32);
        }
        if !self.report_within_clip {
            return 0.0;
        }
        let noise = Normal::new(0.0, self.report_noise_std.max(0.0))
            .map(|n| n.sample(rng))
            .unwrap_or(0.0);
        f64::from(u8::from(within)) + noise
    }
}

/// A round's updates as secure aggregation delivers them: only their sum.
#[derive(Debug, Clone, PartialEq)]
pub struct SecureSum {
    /// The sum of the contributors' updates `Δ = local − global`, each transformed as
    /// [`UpdatePrivacy`] said.
    pub delta_sum: ParamSet,
    /// Whose updates are in the sum.
    pub contributors: Vec<ParticipantId>,
    /// How many were selected for the round.
    pub selected: usize,
    /// The sum of the contributors' within-clip reports, when they were asked for.
    pub within_clip: Option<f64>,
}
