//! Who is in the federation: enrolment (capped), the key behind a call, liveness.

use super::*;

impl Driver {
    /// Whether an invite token admits this key: the shared token (unless the federation
    /// admits only per-member invites), or a single-use invite unused or already this key's.
    pub(crate) fn admit_invite(&mut self, token: &str, key: &[u8; 32]) -> Result<(), Rejection> {
        let hash = crate::folder::token_hash(token);
        if hash == self.config.invite_token_sha256 {
            return if self.config.per_member_invites {
                Err(Rejection::not_permitted(
                    "this federation admits members only with their own single-use invite; ask a steward for one (harambee invite)",
                ))
            } else {
                Ok(())
            };
        }
        match self
            .state
            .redeem_invite(&hash, key)
            .map_err(|e| self.storage_failed(e.into()))?
        {
            Redemption::Redeemed => Ok(()),
            Redemption::UsedByAnother => Err(Rejection::not_permitted(
                "this invite was already used by another key: each invite admits one member",
            )),
            Redemption::Unknown => Err(Rejection::not_permitted(
                "the invite token is not valid for this federation",
            )),
        }
    }

    /// Whether the charter admits this key to train.
    pub(crate) fn admits(&self, key: &PublicKey) -> bool {
        self.charter.may_train(&key.to_string())
    }

    /// Enrols a key that proved it holds its secret half.
    pub(crate) fn enrol(
        &mut self,
        key: &PublicKey,
        name: &str,
    ) -> Result<ParticipantId, Rejection> {
        let max = self.config.limits.max_participants;
        if !self.keys.contains_key(&key.to_bytes()) && self.keys.len() as u64 >= max {
            return Err(Rejection::too_many(format!(
                "the federation is full: it enrols at most {max} members (limits.max_participants)"
            )));
        }
        let (record, new) = self
            .state
            .enrol(&key.to_bytes(), name)
            .map_err(|e| self.storage_failed(e.into()))?;
        let id = ParticipantId(record.id);
        self.keys.insert(record.public_key, id);
        self.roster.insert(record.public_key);
        self.names.insert(record.id, record.name);
        self.last_seen.insert(record.id, Instant::now());
        self.feed(Event::Enrol(id));
        if new {
            tracing::info!(participant = id.0, name, "enrolled");
        }
        self.process_actions().map_err(|e| self.storage_failed(e))?;
        Ok(id)
    }

    /// Records a member's commitment to its local data: in the ledger at once (after any
    /// enrolments not yet there), the first time; the same root again is fine, another one
    /// is refused, since the data a member committed to may not change under it.
    pub(crate) fn commit_data(
        &mut self,
        id: ParticipantId,
        root: [u8; 32],
    ) -> Result<(), Rejection> {
        if let Some(replayer) = &self.replayer
            && root != replayer.corpus_root()
        {
            return Err(Rejection::not_permitted(format!(
                "this federation replays its workers' training on a public corpus with Merkle root {}, and your data's root is {}: join with the same files (as they were published), or your updates could not replay",
                hex::encode(replayer.corpus_root()),
                hex::encode(root)
            )));
        }
        let root = hex::encode(root);
        match self.data_roots.get(&id.0) {
            Some(held) if *held == root => return Ok(()),
            Some(held) => {
                return Err(Rejection::not_permitted(format!(
                    "participant {id} committed to local data with Merkle root {held}; its data may not change (this data's root is {root})"
                )));
            }
            None => {}
        }
        let mut entries = self.new_enrolments().map_err(|e| self.storage_failed(e))?;
        entries.push(Entry::DataCommitment {
            participant: id.0,
            data_root: root.clone(),
        });
        self.append(entries).map_err(|e| self.storage_failed(e))?;
        self.data_roots.insert(id.0, root);
        tracing::info!(participant = id.0, "committed to its local data");
        Ok(())
    }

    /// The participant behind a key, or why there is none.
    pub(crate) fn participant(&mut self, key: &[u8]) -> Result<ParticipantId, Rejection> {
        let key: [u8; 32] = key
            .try_into()
            .map_err(|_| Rejection::invalid("public_key must be 32 bytes"))?;
        let id = *self.keys.get(&key).ok_or_else(|| {
            Rejection::not_permitted(format!(
                "unknown key {}: enrol with an invite first",
                hex::encode(key)
            ))
        })?;
        if self.fraudulent.contains(&id.0) {
            return Err(Rejection::not_permitted(format!(
                "participant {id} was removed from this federation: an update of its did not replay (see the fraud entry in the ledger)"
            )));
        }
        if self.removed.contains(&id.0) {
            return Err(Rejection::not_permitted(format!(
                "participant {id} was removed from this federation by a steward"
            )));
        }
        if self.last_seen.insert(id.0, Instant::now()).is_none() {
            // It had been counted as gone: it is back.
            self.feed(Event::Enrol(id));
            tracing::info!(participant = id.0, "participant is back");
            self.process_actions().map_err(|e| self.storage_failed(e))?;
        }
        Ok(id)
    }

    /// Notes that `id` opened (`true`) or closed a long poll.
    pub(crate) fn long_poll(&mut self, id: u64, open: bool) {
        let count = self.waiting.entry(id).or_insert(0);
        if open {
            *count += 1;
        } else {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.waiting.remove(&id);
                if !self.removed.contains(&id) {
                    self.last_seen.insert(id, Instant::now());
                }
            }
        }
    }

    /// Participants silent for longer than the liveness timeout leave the core: they are not
    /// selected, and an open round they were selected for no longer waits for them.
    pub(crate) fn check_liveness(&mut self) -> Result<(), ServerError> {
        let timeout = Duration::from_secs_f64(self.config.limits.liveness_timeout_s);
        let gone: Vec<u64> = self
            .last_seen
            .iter()
            .filter(|(id, seen)| seen.elapsed() > timeout && !self.waiting.contains_key(id))
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.last_seen.remove(&id);
            self.feed(Event::Leave(ParticipantId(id)));
            tracing::warn!(
                participant = id,
                "no call for too long; counted as gone until it calls again"
            );
        }
        self.process_actions()
    }
}
