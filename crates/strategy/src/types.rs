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
}

impl Default for FitConfig {
    fn default() -> Self {
        Self {
            epochs: 1,
            batch_size: 10,
            learning_rate: 0.1,
            proximal_mu: 0.0,
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
