use std::path::PathBuf;

use harambee_coordinator::CoreError;
use harambee_learn::LearnError;
use harambee_strategy::StrategyError;
use thiserror::Error;

/// Why a simulation could not run.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SimError {
    /// Data or model trouble.
    #[error(transparent)]
    Learn(#[from] LearnError),
    /// The strategy's settings are invalid.
    #[error(transparent)]
    Strategy(#[from] StrategyError),
    /// The coordinator stopped the federation.
    #[error("the federation stopped: {error}{}", last_failure.as_ref().map(|f| format!("; the last participant failure was: {f}")).unwrap_or_default())]
    Core {
        /// The coordinator's error.
        error: CoreError,
        /// Why the last participant that failed did so, when one did: often the real cause.
        last_failure: Option<String>,
    },
    /// Secure aggregation could not produce the round's sum (too many dropped, or a bad
    /// message); nothing about any one update was revealed.
    #[error("secure aggregation failed: {0}")]
    SecAgg(#[from] harambee_secagg::SecAggError),
    /// The parameters did not fit the model.
    #[error(transparent)]
    Params(#[from] harambee_params::ParamsError),
    /// A setting is out of range.
    #[error("invalid setting: {0}")]
    InvalidSetting(String),
    /// Writing results failed.
    #[error("cannot write {path}: {reason}")]
    Output {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}
