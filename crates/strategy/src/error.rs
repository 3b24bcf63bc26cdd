use harambee_params::ParamsError;
use thiserror::Error;

/// Why a strategy could not aggregate a round.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum StrategyError {
    /// A result's parameters could not be combined (layout, weights).
    #[error("cannot combine results: {0}")]
    Params(#[from] ParamsError),
    /// A configuration value is out of range.
    #[error("invalid strategy setting {name}: {reason}")]
    InvalidSetting {
        /// The setting's name.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}
