use std::path::PathBuf;

use harambee_params::ParamsError;
use thiserror::Error;

/// What can go wrong while loading data or training.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LearnError {
    /// A data file could not be read.
    #[error("cannot read {path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error (shown in the message, so not chained as a source).
        error: std::io::Error,
    },
    /// A data file is not in the expected format.
    #[error("{path}: {reason}")]
    BadData {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Parameters do not fit the model.
    #[error("parameters do not fit the model: {0}")]
    Params(#[from] ParamsError),
    /// The model cannot train on this kind of data.
    #[error("model {model} cannot use {data} data")]
    Incompatible {
        /// The model's name.
        model: &'static str,
        /// What the data is.
        data: &'static str,
    },
    /// A setting is out of range.
    #[error("invalid setting: {0}")]
    InvalidSetting(String),
    /// Training diverged (the loss became NaN or infinite).
    #[error("training diverged: the loss became {0}; lower the learning rate")]
    Diverged(f32),
}
