//! Buffered (FedBuff) federations: the FedBuff core's work handed to one member at a time,
//! each result checked against the version it trained from, and every version written down
//! (the store's closed round, the ledger's buffered step) before anyone hears of it.
//!
//! On the wire a piece of work is a task for round `v + 1` (it trains from version `v`, and
//! signs that round and that version's digest) with an attempt number unique to the piece:
//! the coordinator's restart generation in the high bits, the count of pieces given from `v`
//! in the low ones, so every member's tasks only grow. A restart forgets who was training
//! (they are given new work) but not what was acknowledged: results stored and not yet in a
//! version are buffered again before anyone is given work.

use super::updates::{Acknowledgement, refusal_status};
use super::*;
use harambee_coordinator::{Buffered, BufferedAction, BufferedContribution};
use harambee_ledger::BufferedInput;

/// The low bits of an attempt number count the pieces of work given from one version.
const GIVEN_BITS: u32 = 20;

/// One member's piece of work, as its task says it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Assignment {
    /// The round it signs: the version it trains from, plus one.
    pub(crate) round: u64,
    /// Its number.
    pub(crate) attempt: u32,
    /// The digest of the version it trains from.
    pub(crate) base: Digest,
    /// When it is given to someone else.
    pub(crate) deadline: Instant,
}

/// A result taken into the buffer, with what its ledger entry needs and the core does not
/// keep; in arrival order, as the core's buffer.
#[derive(Debug, Clone)]
struct Taken {
    participant: u64,
    attempt: u32,
    digest: Digest,
    signature: Vec<u8>,
}

/// The FedBuff core and the driver's bookkeeping around it.
pub(crate) struct BufferedRun {
    core: Buffered,
    /// This process's restart generation.
    generation: u32,
    /// Pieces of work given from the current version.
    given: u32,
    /// Who trains, on what.
    assigned: BTreeMap<u64, Assignment>,
    taken: Vec<Taken>,
    /// Old versions' parameters as fetched, encoded once while someone trains from them.
    encoded: HashMap<Digest, Published>,
}

impl BufferedRun {
    /// Participants training now, and results waiting for the next version.
    pub(crate) fn progress(&self) -> (usize, usize) {
        (self.core.training(), self.core.buffered())
    }

    /// The version published last.
    pub(crate) fn version(&self) -> u64 {
        self.core.version()
    }

    /// Whether a steward paused it.
    pub(crate) fn is_paused(&self) -> bool {
        self.core.is_paused()
    }

    /// Who trains now.
    pub(crate) fn training(&self) -> BTreeSet<u64> {
        self.assigned.keys().copied().collect()
    }

    /// A member joined, or is back: it may be given work.
    pub(crate) fn enrol(&mut self, participant: ParticipantId) {
        self.core.enrol([participant]);
    }

    /// Pauses (no new work) or resumes.
    pub(crate) fn set_paused(&mut self, paused: bool) {
        self.core.set_paused(paused);
    }

    /// The soonest deadline of a piece of work.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.assigned.values().map(|a| a.deadline).min()
    }
}

impl Driver {
    /// Starts, or resumes after a restart, a buffered federation at the version the store
    /// holds: results acknowledged but not yet applied are buffered again first, then the
    /// members are given work.
    pub(super) fn start_buffered(
        &mut self,
        checkpoint: &harambee_store::Checkpoint,
        members: impl Iterator<Item = ParticipantId>,
        paused: bool,
    ) -> Result<(), ServerError> {
        let Some(config) = self.config.buffered_core() else {
            return Ok(());
        };
        let generation = checkpoint
            .open
            .as_ref()
            .filter(|o| o.round == checkpoint.completed + 1)
            .map_or(0, |o| o.attempt + 1);
        let global = (**self.core.global()).clone();
        self.buffered = Some(BufferedRun {
            core: Buffered::restore(config, global, checkpoint.completed),
            generation,
            given: 0,
            assigned: BTreeMap::new(),
            taken: Vec::new(),
            encoded: HashMap::new(),
        });
        self.note_generation()?;
        self.replay_buffered(checkpoint.completed)?;
        let run = self.run_mut();
        run.core.set_paused(paused);
        run.core.enrol(members);
        self.process_actions()
    }

    /// Records this process's generation with the version being built, so the next restart
    /// numbers its work above it.
    fn note_generation(&self) -> Result<(), ServerError> {
        let run = self.run();
        self.state.open_round(&OpenRoundRecord {
            round: run.version() + 1,
            attempt: run.generation,
            selected: Vec::new(),
            base: run.core.global().digest(),
        })?;
        Ok(())
    }

    /// Buffers again the results stored but not yet applied by a version (a restart came
    /// between their acknowledgement and the version), oldest round first.
    fn replay_buffered(&mut self, completed: u64) -> Result<(), ServerError> {
        let applied: BTreeSet<(u64, u32, u64)> = self
            .ledger
            .entries()
            .iter()
            .filter_map(|e| match Entry::parse(e) {
                Ok(Entry::BufferedStep { inputs, .. }) => Some(inputs),
                _ => None,
            })
            .flatten()
            .map(|i| (i.base_version.saturating_add(1), i.attempt, i.participant))
            .collect();
        let oldest = completed.saturating_sub(self.run().core.config().max_staleness);
        let mut pending = Vec::new();
        for round in oldest + 1..=completed + 1 {
            pending.extend(
                self.state
                    .updates_of_round(round)?
                    .into_iter()
                    .filter(|u| !applied.contains(&(u.round, u.attempt, u.participant))),
            );
        }
        pending.sort_by_key(|u| (u.round, u.attempt, u.participant));
        let count = pending.len();
        for u in pending {
            let base_version = u.round - 1;
            let base = Arc::new(self.version_params_stored(base_version)?);
            let result = self.stored_result(&u)?;
            self.run_mut()
                .core
                .replay(result, u.update_digest, base_version, base)
                .map_err(|r| {
                    ServerError::Config(format!(
                        "stored update of participant {} (round {}, attempt {}) was not taken on replay: {r}",
                        u.participant, u.round, u.attempt
                    ))
                })?;
            self.run_mut().taken.push(Taken {
                participant: u.participant,
                attempt: u.attempt,
                digest: u.update_digest,
                signature: u.signature,
            });
            self.process_actions()?;
        }
        if count > 0 {
            tracing::info!(count, "buffered again the acknowledged updates");
        }
        Ok(())
    }

    /// A version's parameters as the store keeps them (version 0: the initial model).
    fn version_params_stored(&self, version: u64) -> Result<ParamSet, ServerError> {
        if version == 0 {
            return Ok(self.config.initial_model(&self.root)?.1);
        }
        let round = self
            .state
            .closed_rounds()?
            .into_iter()
            .find(|r| r.round == version)
            .ok_or_else(|| ServerError::Config(format!("version {version} is not stored")))?;
        Ok(Encoding::F32.decode(&self.layout, &self.blobs.get(&round.global_blob)?)?)
    }

    pub(super) fn run(&self) -> &BufferedRun {
        self.buffered
            .as_ref()
            .unwrap_or_else(|| unreachable!("called only for buffered federations"))
    }

    pub(super) fn run_mut(&mut self) -> &mut BufferedRun {
        self.buffered
            .as_mut()
            .unwrap_or_else(|| unreachable!("called only for buffered federations"))
    }

    /// The parameters a member trains from, if `digest` names a version someone trains
    /// from now (older ones are sent whole).
    pub(super) fn buffered_parameters(
        &mut self,
        digest: &[u8],
        have: &[u8],
    ) -> Result<Fetched, Rejection> {
        if digest == self.published.digest.0 {
            return Ok(self.current_parameters(have));
        }
        let run = self.run_mut();
        let wanted = run
            .assigned
            .values()
            .find(|a| a.base.0[..] == *digest)
            .map(|a| (a.base, a.round - 1));
        let Some((base, version)) = wanted else {
            return Err(Rejection::gone(format!(
                "no one trains from parameters {} now; ask for a new task",
                hex::encode(digest)
            )));
        };
        if let Some(p) = run.encoded.get(&base) {
            return Ok(Fetched {
                bytes: Arc::clone(&p.bytes),
                encoding: String::new(),
            });
        }
        let params = run
            .core
            .version_params(version)
            .ok_or_else(|| Rejection::gone(format!("version {version} is no longer kept")))?;
        let encoded = publish(params);
        let bytes = Arc::clone(&encoded.bytes);
        run.encoded.insert(base, encoded);
        Ok(Fetched {
            bytes,
            encoding: String::new(),
        })
    }

    /// Checks a buffered update's header: the sender's piece of work, its base, then what
    /// every update is checked for. Returns the sender and the version it trained from.
    pub(super) fn check_buffered_header(
        &mut self,
        h: &v1::UpdateHeader,
    ) -> Result<(ParticipantId, u64), Rejection> {
        let id = self.participant(&h.public_key)?;
        if self.board.borrow().finished.is_some() {
            return Err(Rejection::not_now(format!(
                "the federation published its last version; round {} is over",
                h.round
            )));
        }
        let assignment = self.run().assigned.get(&id.0).cloned();
        let matches = |a: &Assignment| (a.round, a.attempt) == (h.round, h.attempt);
        if !assignment.as_ref().is_some_and(matches) {
            // A retry of an update acknowledged before a restart (or whose answer was lost):
            // it is held, and its sender hears so.
            let held = self
                .state
                .updates(h.round, h.attempt)
                .map_err(|e| Rejection::unavailable(e.to_string()))?
                .iter()
                .any(|u| u.participant == id.0 && u.update_digest.0[..] == h.update_digest[..]);
            if held {
                return Err(Rejection::already_held(format!(
                    "replay: participant {id}'s update for round {} attempt {} is already held",
                    h.round, h.attempt
                )));
            }
        }
        let assignment = assignment.ok_or_else(|| {
            Rejection::not_permitted(format!(
                "participant {id} has no work to deliver: its work was done, given to someone else after its deadline, or never given"
            ))
        })?;
        if !matches(&assignment) {
            return Err(Rejection::not_now(format!(
                "the update is for round {} attempt {}, but participant {id}'s work is round {} attempt {}",
                h.round, h.attempt, assignment.round, assignment.attempt
            )));
        }
        if h.base_digest != assignment.base.0 {
            return Err(Rejection::not_now(format!(
                "the update was trained from {}, not from its work's base {}",
                hex::encode(&h.base_digest),
                assignment.base
            )));
        }
        self.check_upload(h)?;
        Ok((id, assignment.round - 1))
    }

    /// Validates a buffered update completely, stores it durably, then gives it to the core.
    pub(super) fn accept_buffered(
        &mut self,
        h: &v1::UpdateHeader,
        bytes: &[u8],
    ) -> Result<Acknowledgement, Rejection> {
        let (id, base_version) = self.check_buffered_header(h)?;
        let base = self
            .run()
            .core
            .version_params(base_version)
            .cloned()
            .ok_or_else(|| Rejection::not_now(format!("version {base_version} is gone")))?;
        let result = self.decode_signed(h, id, &base, bytes, None)?;
        let digest = result.params.digest();
        self.run().core.check(&result).map_err(refusal_status)?;
        self.store_update(h, id, &result, digest)?;
        let run = self.run_mut();
        run.assigned.remove(&id.0);
        run.core
            .result(result, digest)
            .map_err(|r| Rejection::internal(format!("refused after checking: {r}")))?;
        run.taken.push(Taken {
            participant: id.0,
            attempt: h.attempt,
            digest,
            signature: h.signature.clone(),
        });
        let received = run.core.buffered() as u32;
        tracing::info!(
            round = h.round,
            attempt = h.attempt,
            participant = id.0,
            "update buffered"
        );
        let promise = self.promise(h, id, digest);
        self.process_actions().map_err(|e| self.storage_failed(e))?;
        Ok(Acknowledgement {
            // The version it completed reports a full buffer, not an empty one.
            received: if received == 0 {
                self.run().core.config().buffer as u32
            } else {
                received
            },
            quorum: self.run().core.config().buffer as u32,
            promise,
        })
    }

    /// Gives pieces of work past their deadline to someone else.
    pub(super) fn expire_buffered(&mut self) -> Result<(), ServerError> {
        let Some(run) = self.buffered.as_mut() else {
            return Ok(());
        };
        let now = Instant::now();
        let overdue: Vec<u64> = run
            .assigned
            .iter()
            .filter(|(_, a)| a.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in overdue {
            run.assigned.remove(&id);
            run.core.expire(ParticipantId(id));
            // Counted as gone: its next call brings it back, with new work.
            self.last_seen.remove(&id);
            tracing::warn!(
                participant = id,
                "work not delivered by its deadline; given to another until it calls again"
            );
        }
        self.process_actions()
    }

    /// A member left (silent, or removed by a steward): its work goes to another.
    pub(super) fn buffered_leave(&mut self, id: ParticipantId) {
        let run = self.run_mut();
        run.assigned.remove(&id.0);
        run.core.leave(id);
    }

    /// Writes down and publishes what the FedBuff core decided.
    pub(super) fn process_buffered(&mut self) -> Result<(), ServerError> {
        while let Some(action) = self.buffered.as_mut().and_then(|r| r.core.poll_action()) {
            match action {
                BufferedAction::Assign {
                    participant,
                    version,
                    global,
                } => self.assign(participant, version, global.digest()),
                BufferedAction::Step {
                    version,
                    base,
                    contributions,
                    global,
                    download,
                } => {
                    self.record_step(version, base, &contributions, &global)?;
                    self.published = publish_step(&global, base, download);
                }
                BufferedAction::Finished { global } => self.finish(&global, None)?,
            }
        }
        if let Some(run) = &self.buffered
            && self.board.borrow().finished.is_none()
        {
            let assigned = &run.assigned;
            self.board.send_if_modified(|b| {
                let changed = *b.assigned != *assigned;
                if changed {
                    b.assigned = Arc::new(assigned.clone());
                }
                changed
            });
        }
        Ok(())
    }

    fn assign(&mut self, participant: ParticipantId, version: u64, base: Digest) {
        let deadline = Instant::now() + Duration::from_secs_f64(self.config.rounds.deadline_s);
        let run = self.run_mut();
        run.given += 1;
        let attempt = (run.generation << GIVEN_BITS).wrapping_add(run.given);
        run.assigned.insert(
            participant.0,
            Assignment {
                round: version + 1,
                attempt,
                base,
                deadline,
            },
        );
    }

    /// A new version: its parameters, its record and its ledger entry, in one transaction.
    fn record_step(
        &mut self,
        version: u64,
        base: Digest,
        contributions: &[BufferedContribution],
        global: &ParamSet,
    ) -> Result<(), ServerError> {
        pause_at(FaultPoint::Aggregation);
        let run = self.run_mut();
        if run.taken.len() < contributions.len() {
            return Err(ServerError::Config(format!(
                "version {version}: {} results applied but {} recorded",
                contributions.len(),
                run.taken.len()
            )));
        }
        let taken: Vec<Taken> = run.taken.drain(..contributions.len()).collect();
        let mut inputs = Vec::with_capacity(contributions.len());
        for (c, t) in contributions.iter().zip(&taken) {
            if c.participant.0 != t.participant || c.digest != t.digest {
                return Err(ServerError::Config(format!(
                    "version {version}: the buffer and its record disagree about participant {}'s update",
                    c.participant
                )));
            }
            inputs.push(BufferedInput {
                participant: t.participant,
                base_version: c.base_version,
                attempt: t.attempt,
                staleness: c.staleness,
                update_digest: c.digest.to_hex(),
                num_samples: c.num_samples,
                signature: hex::encode(&t.signature),
            });
        }
        let samples: u64 = contributions.iter().map(|c| c.num_samples).sum();
        let train_loss = contributions
            .iter()
            .map(|c| c.num_samples as f64 * f64::from(c.train_loss))
            .sum::<f64>()
            / samples.max(1) as f64;
        let global_blob = self.blobs.put(&Encoding::F32.encode(global))?;
        let record = ClosedRoundRecord {
            round: version,
            global_digest: global.digest(),
            global_blob,
            contributors: contributions.len() as u32,
            train_loss,
            summary: step_json(version, base, contributions),
        };
        let mut entries = self.new_enrolments()?;
        entries.push(Entry::BufferedStep {
            version,
            base: base.to_hex(),
            inputs,
            output: global.digest().to_hex(),
            epsilon: crate::privacy::epsilon_after(&self.charter, &self.config, version),
        });
        let (bytes, head, ledger) = self.with_entries(&entries);
        self.state.close_round(&record, &[], &bytes, &head)?;
        self.ledger = ledger;
        self.head = Some(head);
        self.completed_rounds_changed();
        self.metrics.round_completed(
            self.opened_at
                .replace(Instant::now())
                .unwrap_or(self.started)
                .elapsed(),
        );
        self.metrics.aggregated(self.core_busy);
        self.apply_retention(version)?;
        let run = self.run_mut();
        run.given = 0;
        let live: BTreeSet<Digest> = run.assigned.values().map(|a| a.base).collect();
        run.encoded.retain(|d, _| live.contains(d));
        self.note_generation()?;
        tracing::info!(
            version,
            contributors = contributions.len(),
            train_loss,
            digest = %record.global_digest,
            "version published"
        );
        Ok(())
    }
}

fn step_json(version: u64, base: Digest, contributions: &[BufferedContribution]) -> String {
    serde_json::json!({
        "round": version,
        "strategy": "fedbuff",
        "base": base.to_hex(),
        "contributions": contributions.iter().map(|c| serde_json::json!({
            "participant": c.participant.0, "samples": c.num_samples,
            "digest": c.digest.to_hex(), "train_loss": c.train_loss,
            "base_version": c.base_version, "staleness": c.staleness, "weight": c.weight,
        })).collect::<Vec<_>>(),
        "failures": [],
    })
    .to_string()
}
