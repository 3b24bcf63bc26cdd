//! What the core decided, written down: rounds opened and closed, the ledger's entries and
//! tree heads, retention, the released model.

use super::*;

impl Driver {
    /// Writes down and publishes whatever the core decided.
    pub(super) fn process_actions(&mut self) -> Result<(), ServerError> {
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::OpenRound(open) => {
                    self.opened_at = Some(Instant::now());
                    self.state.open_round(&OpenRoundRecord {
                        round: open.round,
                        attempt: open.attempt,
                        selected: open.participants.iter().map(|p| p.0).collect(),
                        base: open.base,
                    })?;
                    tracing::info!(
                        round = open.round,
                        attempt = open.attempt,
                        selected = open.participants.len(),
                        "round opened"
                    );
                    let deadline = self.deadline_instant(open.deadline);
                    self.secure = self.start_secure(&open, deadline)?;
                    self.secure_board.send_modify(|v| *v += 1);
                    self.board.send_replace(Board {
                        open: Some(OpenTask {
                            round: open.round,
                            attempt: open.attempt,
                            selected: open.participants.iter().map(|p| p.0).collect(),
                            base: open.base,
                            config: open.config,
                            deadline,
                            secagg: self
                                .secure
                                .as_ref()
                                .and_then(|s| s.settings_for(open.participants.first()?.0)),
                            sharded: self.charter.mode == harambee_charter::Mode::Community,
                        }),
                        ..Board::default()
                    });
                }
                Action::CloseRound(summary) => {
                    self.completed_rounds_changed();
                    pause_at(FaultPoint::Aggregation);
                    let global_blob = self.blobs.put(&Encoding::F32.encode(&summary.global))?;
                    let strategy_state = self
                        .core
                        .strategy()
                        .state()
                        .into_iter()
                        .map(|(name, p)| {
                            Ok((name.to_string(), self.blobs.put(&Encoding::F32.encode(&p))?))
                        })
                        .collect::<Result<Vec<_>, ServerError>>()?;
                    let loss = self.round_train_loss(&summary)?;
                    let record = ClosedRoundRecord {
                        round: summary.round,
                        global_digest: summary.global.digest(),
                        global_blob,
                        contributors: summary.contributions.len() as u32,
                        train_loss: loss,
                        summary: summary_json(&summary),
                    };
                    let (entries, head, ledger) = self.round_entries(&summary)?;
                    self.state
                        .close_round(&record, &strategy_state, &entries, &head)?;
                    self.ledger = ledger;
                    self.head = Some(head);
                    self.metrics
                        .round_completed(self.opened_at.unwrap_or(self.started).elapsed());
                    self.metrics.aggregated(self.core_busy);
                    self.apply_retention(summary.round)?;
                    self.published =
                        publish_step(&summary.global, summary.base, summary.download.clone());
                    tracing::info!(
                        round = summary.round,
                        contributors = record.contributors,
                        train_loss = loss,
                        digest = %record.global_digest,
                        "round closed"
                    );
                    self.board.send_modify(|b| b.open = None);
                    if let Some(secure) = self.secure.take() {
                        self.secure_summed =
                            secure.summed().map(|n| (secure.round, secure.attempt, n));
                    }
                }
                Action::RoundRetried {
                    round,
                    received,
                    quorum,
                    paused: true,
                } => {
                    tracing::error!(
                        round,
                        received,
                        quorum,
                        "round missed its quorum too often; the federation is paused until a steward resumes it (harambee admin resume)"
                    );
                }
                Action::RoundRetried {
                    round,
                    received,
                    quorum,
                    paused: false,
                } => {
                    tracing::warn!(
                        round,
                        received,
                        quorum,
                        "round missed its quorum; opening it again"
                    );
                }
                Action::Finished { global } => {
                    let error = self.core.error().map(|e| e.to_string());
                    self.finish(&global, error)?;
                }
            }
        }
        self.process_buffered()
    }

    /// The federation ended: the release entry (unless it failed), the model file, the end
    /// recorded, and everyone told.
    pub(super) fn finish(
        &mut self,
        global: &ParamSet,
        error: Option<String>,
    ) -> Result<(), ServerError> {
        self.completed_rounds_changed();
        if error.is_none() {
            self.append(vec![Entry::Release {
                rounds: self.config.rounds.rounds,
                model_digest: global.digest().to_hex(),
            }])?;
        }
        let bytes = global.to_safetensors()?;
        write_atomically(&self.model_path, &bytes)?;
        self.state.finish(error.as_deref())?;
        match &error {
            Some(e) => tracing::error!(error = %e, "federation failed"),
            None => {
                tracing::info!(model = %self.model_path.display(), "federation finished")
            }
        }
        self.board.send_replace(Board {
            finished: Some(Ending::from_record(error)),
            ..Board::default()
        });
        Ok(())
    }

    /// The round's mean training loss, weighted by samples; under secure aggregation no
    /// samples are reported, so the plain mean of the contributors' losses.
    pub(super) fn round_train_loss(
        &self,
        summary: &harambee_coordinator::RoundSummary,
    ) -> Result<f64, ServerError> {
        let samples: u64 = summary.contributions.iter().map(|c| c.num_samples).sum();
        if samples > 0 || !self.config.training.secure_aggregation {
            let weighted: f64 = summary
                .contributions
                .iter()
                .map(|c| c.num_samples as f64 * f64::from(c.train_loss))
                .sum();
            return Ok(weighted / samples.max(1) as f64);
        }
        let open = self.board.borrow().open.clone();
        let attempt = open.map_or(0, |o| o.attempt);
        let updates = self.state.updates(summary.round, attempt)?;
        let total: f64 = updates.iter().map(|u| f64::from(u.train_loss)).sum();
        Ok(total / updates.len().max(1) as f64)
    }

    /// The ledger's first entry: the federation, its settings' hash, the coordinator's key.
    pub(super) fn write_genesis(&mut self, folder: &FederationFolder) -> Result<(), ServerError> {
        let path = folder.config_path();
        let settings = std::fs::read(&path).map_err(|e| ServerError::io(&path, e))?;
        self.append(vec![Entry::Genesis {
            federation_id: self.config.federation_id.clone(),
            name: self.config.name.clone(),
            config_sha256: hex::encode(Sha256::digest(&settings)),
            charter: String::from_utf8_lossy(&self.charter.canonical_bytes()).into_owned(),
            coordinator_key: self.key.public().to_string(),
        }])
    }

    /// Appends entries with a freshly signed tree head, durably.
    pub(super) fn append(&mut self, entries: Vec<Entry>) -> Result<(), ServerError> {
        let mut ledger = self.ledger.clone();
        let bytes: Vec<Vec<u8>> = entries.iter().map(Entry::to_bytes).collect();
        for e in &entries {
            ledger.append(e);
        }
        let head = head_record(&ledger.sign_head(&self.key, unix_ms()));
        self.state.append_ledger(&bytes, &head)?;
        self.ledger = ledger;
        self.head = Some(head);
        Ok(())
    }

    /// A closed round's ledger entries (new enrolments, the round's opening, every update
    /// commitment, the result), the tree head over them, and the ledger with them appended.
    pub(super) fn round_entries(
        &mut self,
        summary: &harambee_coordinator::RoundSummary,
    ) -> Result<(Vec<Vec<u8>>, HeadRecord, Ledger), ServerError> {
        let mut entries = self.new_enrolments()?;
        let open = self.board.borrow().open.clone();
        let Some(open) = open.filter(|o| o.round == summary.round) else {
            return Err(ServerError::Config(format!(
                "round {} closed without an open record",
                summary.round
            )));
        };
        entries.push(Entry::RoundOpen {
            round: open.round,
            attempt: open.attempt,
            selected: open.selected.iter().copied().collect(),
            base: open.base.to_hex(),
            epochs: open.config.epochs,
            batch_size: open.config.batch_size,
            learning_rate: open.config.learning_rate,
            proximal_mu: open.config.proximal_mu,
            local_steps: open.config.local_steps,
        });
        let updates = self.state.updates(open.round, open.attempt)?;
        // Under secure aggregation no one's update was seen; the inputs are the signed
        // commitments to the masked updates whose sum made the round.
        let inputs: Vec<String> = if self.config.training.secure_aggregation {
            updates.iter().map(|u| u.update_digest.to_hex()).collect()
        } else {
            summary
                .contributions
                .iter()
                .map(|c| c.digest.to_hex())
                .collect()
        };
        let verified = self.config.training.verification.is_some();
        for u in updates {
            entries.push(Entry::UpdateCommitment {
                round: u.round,
                attempt: u.attempt,
                participant: u.participant,
                update_digest: u.update_digest.to_hex(),
                num_samples: u.num_samples,
                signature: hex::encode(&u.signature),
                recipe: verified
                    .then(|| self.recipe(&open, u.participant))
                    .flatten(),
            });
        }
        entries.push(Entry::RoundResult {
            round: summary.round,
            strategy: self.config.training.strategy.to_string(),
            inputs,
            output: summary.global.digest().to_hex(),
            epsilon: crate::privacy::epsilon_after(&self.charter, &self.config, summary.round),
        });
        Ok(self.with_entries(&entries))
    }

    /// Enrolment entries for the participants the ledger does not record yet; they count as
    /// recorded from now on (the caller commits them with its own entries).
    pub(super) fn new_enrolments(&mut self) -> Result<Vec<Entry>, ServerError> {
        let entries: Vec<Entry> = self
            .state
            .participants()?
            .into_iter()
            .filter(|p| p.id >= self.logged_enrolments)
            .map(|p| Entry::Enrolment {
                participant: p.id,
                public_key: hex::encode(p.public_key),
                name: p.name,
            })
            .collect();
        self.logged_enrolments += entries.len() as u64;
        Ok(entries)
    }

    /// The entries' bytes, the tree head over the ledger with them appended, and that ledger.
    pub(super) fn with_entries(&self, entries: &[Entry]) -> (Vec<Vec<u8>>, HeadRecord, Ledger) {
        let mut ledger = self.ledger.clone();
        for e in entries {
            ledger.append(e);
        }
        let head = head_record(&ledger.sign_head(&self.key, unix_ms()));
        (entries.iter().map(Entry::to_bytes).collect(), head, ledger)
    }

    /// Deletes the update blobs of the round that just left the retention window. Only after
    /// the round's result is committed, so a crash in between leaves extra blobs, never
    /// missing ones.
    pub(super) fn apply_retention(&self, closed: u64) -> Result<(), ServerError> {
        let Some(mut keep) = self.config.limits.keep_update_rounds else {
            return Ok(());
        };
        // A buffered result may wait up to max_staleness versions before it is applied; its
        // blob must outlive that wait (a restart buffers it again from the blob).
        if let Some(rule) = self.config.training.buffered {
            keep = keep.max(rule.max_staleness + 1);
        }
        let Some(expired) = closed.checked_sub(keep.max(1)) else {
            return Ok(());
        };
        for update in self.state.updates_of_round(expired)? {
            if !self.state.blob_in_use(&update.blob, expired)? {
                self.blobs.remove(&update.blob)?;
            }
        }
        Ok(())
    }
}

pub(super) fn summary_json(s: &harambee_coordinator::RoundSummary) -> String {
    serde_json::json!({
        "round": s.round,
        "strategy": s.strategy,
        "base": s.base.to_hex(),
        "contributions": s.contributions.iter().map(|c| serde_json::json!({
            "participant": c.participant.0, "samples": c.num_samples,
            "digest": c.digest.to_hex(), "train_loss": c.train_loss,
        })).collect::<Vec<_>>(),
        "failures": s.failures.iter().map(|f| serde_json::json!({
            "participant": f.participant.0, "reason": format!("{:?}", f.reason),
        })).collect::<Vec<_>>(),
    })
    .to_string()
}

pub(super) fn head_record(head: &TreeHead) -> HeadRecord {
    HeadRecord {
        size: head.size,
        root: head.root,
        timestamp_ms: head.timestamp_ms,
        signature: head.signature.clone(),
    }
}

pub(super) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Writes a file so that a crash leaves the old one or the new one, never a torn mix: a
/// temporary file beside it, synced, renamed over it, and the directory synced.
pub(super) fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<(), ServerError> {
    use std::io::Write as _;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let mut file = std::fs::File::create(&tmp).map_err(|e| ServerError::io(&tmp, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| ServerError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| ServerError::io(path, e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ServerError::io(dir, e))
}
