//! What a participant keeps of the ledger so that it does not rest on the coordinator's word
//! alone: every tree head it is shown, checked to extend the last one it kept, and every
//! promise it is given with an acknowledgement, checked to be signed. They go, one JSON line
//! each, into a witness file beside the state file, for `harambee ledger verify --witness`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use harambee_identity::PublicKey;
use harambee_ledger::{Hash, TreeHead, UpdatePromise, Witness, merkle};
use harambee_proto::v1;

use crate::ParticipantError;

/// The witness file and the last tree head in it.
pub(crate) struct Witnesses {
    path: PathBuf,
    coordinator: PublicKey,
    last: Option<(u64, Hash)>,
}

impl Witnesses {
    /// Opens (or starts) the witness file at `path`, remembering its last tree head.
    pub(crate) fn open(path: &Path, coordinator: PublicKey) -> Result<Self, ParticipantError> {
        let last = match std::fs::read_to_string(path) {
            Ok(text) => text
                .lines()
                .filter_map(|l| match Witness::parse_line(l) {
                    Ok(Witness::Head(h)) => Some((h.size, h.root)),
                    _ => None,
                })
                .next_back(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(ParticipantError::Setup(format!("{}: {e}", path.display()))),
        };
        Ok(Self {
            path: path.to_path_buf(),
            coordinator,
            last,
        })
    }

    /// The size of the last tree head kept (0: none).
    pub(crate) fn since(&self) -> u64 {
        self.last.map_or(0, |(size, _)| size)
    }

    /// Checks a tree head the coordinator served: signed by it, and consistent with the last
    /// one kept (the ledger only grew). Keeps it. An inconsistent head is proof that the
    /// coordinator rewrote its ledger: the participant stops, and its witness file is the
    /// evidence.
    pub(crate) fn keep_head(&mut self, reply: &v1::TreeHeadReply) -> Result<(), ParticipantError> {
        if reply.size == 0 {
            return Ok(());
        }
        let root: Hash = reply
            .root
            .as_slice()
            .try_into()
            .map_err(|_| forked("a tree head whose root is not 32 bytes".into()))?;
        let head = TreeHead {
            size: reply.size,
            root,
            timestamp_ms: reply.timestamp_ms,
            signature: reply.signature.clone(),
        };
        head.verify(&self.coordinator).map_err(|_| {
            forked(format!(
                "a tree head of size {} not signed by the coordinator's key",
                head.size
            ))
        })?;
        if let Some((size, old_root)) = self.last {
            let proof: Vec<Hash> = reply
                .consistency
                .iter()
                .filter_map(|h| h.as_slice().try_into().ok())
                .collect();
            if head.size < size
                || !merkle::verify_consistency(size, head.size, &old_root, &root, &proof)
            {
                return Err(forked(format!(
                    "the ledger of {} entries does not extend the one of {size} entries it signed before",
                    head.size
                )));
            }
            if head.size == size {
                return Ok(());
            }
        }
        self.append(&Witness::Head(head))?;
        self.last = Some((reply.size, root));
        Ok(())
    }

    /// Checks and keeps the promise given with an acknowledgement. A promise that does not
    /// verify is logged, not fatal: the update is held either way, and the auditor sees the
    /// gap.
    pub(crate) fn keep_promise(&self, promise: UpdatePromise) -> Result<(), ParticipantError> {
        if let Err(why) = promise.verify(&self.coordinator) {
            tracing::error!(
                round = promise.round,
                why,
                "the coordinator's promise to record the update does not verify"
            );
            return Ok(());
        }
        self.append(&Witness::Promise(promise))
    }

    fn append(&self, witness: &Witness) -> Result<(), ParticipantError> {
        let err =
            |e: std::io::Error| ParticipantError::Setup(format!("{}: {e}", self.path.display()));
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(err)?;
        writeln!(file, "{}", witness.to_line()).map_err(err)?;
        file.sync_data().map_err(err)
    }
}

fn forked(what: String) -> ParticipantError {
    ParticipantError::Setup(format!(
        "the coordinator served {what}: its ledger is not the one it committed to; stopping (keep the witness file as evidence)"
    ))
}
