use std::path::{Path, PathBuf};

use thiserror::Error;

/// What can stop a coordinator.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The federation's settings are wrong.
    #[error("{0}")]
    Config(String),
    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// Durable storage failed.
    #[error(transparent)]
    Store(#[from] harambee_store::StoreError),
    /// Stored parameters do not decode.
    #[error(transparent)]
    Params(#[from] harambee_params::ParamsError),
    /// The model cannot be built.
    #[error(transparent)]
    Learn(#[from] harambee_learn::LearnError),
    /// The strategy's settings are wrong.
    #[error(transparent)]
    Strategy(#[from] harambee_strategy::StrategyError),
    /// TLS material could not be made or loaded.
    #[error("TLS: {0}")]
    Tls(String),
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Transport(String),
}

impl ServerError {
    pub(crate) fn io(path: &Path, error: std::io::Error) -> Self {
        ServerError::Io {
            path: path.to_path_buf(),
            error,
        }
    }
}
