use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::ParticipantError;

/// What a participant remembers across its own restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalState {
    /// The federation it belongs to.
    pub federation_id: String,
    /// The last (round, attempt) it finished: uploaded, or given up.
    pub done: (u64, u32),
}

impl LocalState {
    /// Reads the state file, or starts afresh when there is none. A file for another
    /// federation is an error: a key and its state belong to one federation.
    pub fn load(path: &Path, federation_id: &str) -> Result<Self, ParticipantError> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let state: Self = serde_json::from_str(&text).map_err(|e| {
                    ParticipantError::Setup(format!(
                        "{}: not a participant state file: {e}",
                        path.display()
                    ))
                })?;
                if state.federation_id != federation_id {
                    return Err(ParticipantError::Setup(format!(
                        "{} belongs to federation {}, not {federation_id}; use another --state file",
                        path.display(),
                        state.federation_id
                    )));
                }
                Ok(state)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self {
                federation_id: federation_id.into(),
                done: (0, 0),
            }),
            Err(e) => Err(ParticipantError::Setup(format!("{}: {e}", path.display()))),
        }
    }

    /// Writes it atomically (write aside, then rename).
    pub fn save(&self, path: &Path) -> Result<(), ParticipantError> {
        let err = |e: std::io::Error| ParticipantError::Setup(format!("{}: {e}", path.display()));
        let tmp = path.with_extension("tmp");
        let text =
            serde_json::to_string(self).map_err(|e| ParticipantError::Setup(e.to_string()))?;
        std::fs::write(&tmp, text).map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)
    }
}
