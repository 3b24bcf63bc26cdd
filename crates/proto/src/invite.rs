use std::path::Path;

use serde::{Deserialize, Serialize};

/// What a steward hands a new participant (`invite.toml`): where the coordinator is, how to
/// recognise it (the federation's own certificate authority) and the secret that admits it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Invite {
    /// The federation's id; signed into every enrolment and update.
    pub federation_id: String,
    /// The coordinator's URL, `https://host:port` (or `http://` for an `--insecure` one).
    pub coordinator: String,
    /// The name the coordinator's certificate is issued to.
    pub server_name: String,
    /// The federation's CA certificate, PEM.
    pub ca_certificate: String,
    /// The secret token that admits a participant.
    pub token: String,
    /// SHA-256 of the charter the participant accepts by joining.
    pub charter_sha256: String,
}

/// An invite file that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("invite {path}: {reason}")]
pub struct InviteError {
    /// The file.
    pub path: std::path::PathBuf,
    /// What was wrong.
    pub reason: String,
}

impl Invite {
    /// Reads an invite file.
    pub fn load(path: &Path) -> Result<Self, InviteError> {
        let err = |reason: String| InviteError {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        toml::from_str(&text).map_err(|e| err(e.to_string()))
    }

    /// Writes it.
    pub fn save(&self, path: &Path) -> Result<(), InviteError> {
        let err = |reason: String| InviteError {
            path: path.to_path_buf(),
            reason,
        };
        let text = toml::to_string_pretty(self).map_err(|e| err(e.to_string()))?;
        std::fs::write(path, text).map_err(|e| err(e.to_string()))
    }
}
