use std::path::PathBuf;

use harambee_learn::LearnError;
use harambee_params::ParamsError;
use thiserror::Error;

/// What can go wrong loading, tokenising or fine-tuning a pretrained model.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LlmError {
    /// A file of the model folder could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// A file of the model folder is not what the Hugging Face layout says it should be.
    #[error("{path}: {reason}")]
    BadModel {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The architecture is not one we implement.
    #[error("{0}")]
    Unsupported(String),
    /// A setting is out of range.
    #[error("invalid setting: {0}")]
    InvalidSetting(String),
    /// Parameters (adapters) do not fit the model.
    #[error("adapters do not fit the model: {0}")]
    Params(#[from] ParamsError),
}

impl LlmError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |error| LlmError::Io { path, error }
    }

    pub(crate) fn bad(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        LlmError::BadModel {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

impl From<LlmError> for LearnError {
    fn from(e: LlmError) -> Self {
        match e {
            LlmError::Params(p) => LearnError::Params(p),
            other => LearnError::InvalidSetting(other.to_string()),
        }
    }
}
