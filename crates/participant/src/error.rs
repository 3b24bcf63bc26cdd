use thiserror::Error;

/// What stops a participant.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ParticipantError {
    /// A setting or file is wrong.
    #[error("{0}")]
    Setup(String),
    /// The coordinator refused, for a reason retrying cannot fix.
    #[error("the coordinator refused {what}: {status}")]
    Refused {
        /// The call.
        what: &'static str,
        /// Its status code and message.
        status: String,
    },
    /// The coordinator stayed unreachable longer than allowed.
    #[error("gave up on {what} after {seconds:.0} s of retries: {last}")]
    GaveUp {
        /// The call.
        what: &'static str,
        /// How long it tried.
        seconds: f64,
        /// The last error.
        last: String,
    },
    /// The federation's model does not match what this participant can train.
    #[error("model mismatch: {0}")]
    Model(String),
    /// Local data or training failed.
    #[error(transparent)]
    Learn(#[from] harambee_learn::LearnError),
}
