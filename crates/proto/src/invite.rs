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
    /// The coordinator's ed25519 public key (hex), which signs the ledger's tree heads and
    /// the promises given with each acknowledgement. Absent in invites made before it was
    /// added; participants then take the key the coordinator announces.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub coordinator_key: String,
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
        write_private(path, text.as_bytes()).map_err(|e| err(e.to_string()))
    }
}

/// Writes a file that only its owner may read: an invite holds the secret that admits a
/// member, so it must not be left readable by every user of the steward's machine.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        options.mode(0o600);
        // An existing file keeps its mode through `open`: narrow it first.
        if path.exists() {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
