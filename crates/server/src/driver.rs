//! The durable driver around the sans-IO core: it feeds the core only what is already on
//! disk, and writes down every action the core takes before anyone hears of it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harambee_charter::Charter;
use harambee_coordinator::{Action, Coordinator, Event, EventOutcome, Refusal, RestorePoint, Tick};
use harambee_identity::{Identity, PublicKey, SignedUpdate, UpdateStatement};
use harambee_ledger::{Entry, Ledger, TreeHead};
use harambee_params::{Digest, Encoding, Layout, ParamSet};
use harambee_proto::v1;
use harambee_store::{
    BlobStore, ClosedRoundRecord, FsBlobStore, HeadRecord, OpenRoundRecord, SqliteState,
    StateStore, UpdateRecord,
};
use harambee_strategy::{FitConfig, FitResult, ParticipantId};
use sha2::{Digest as _, Sha256};
use tokio::sync::watch;
use tonic::Status;

use crate::fault::{FaultPoint, pause_at};
use crate::secure::{MaskedCommitment, SecureRound};
use crate::{FederationConfig, FederationFolder, ServerError};

mod view;
pub(crate) use view::CoordinatorView;

/// The round a participant may be asked to train for, as published to long polls.
#[derive(Debug, Clone)]
pub(crate) struct OpenTask {
    pub(crate) round: u64,
    pub(crate) attempt: u32,
    pub(crate) selected: BTreeSet<u64>,
    pub(crate) base: Digest,
    pub(crate) config: FitConfig,
    pub(crate) deadline: Instant,
    /// Secure aggregation's settings for the round (the index is each participant's own).
    pub(crate) secagg: Option<v1::SecAggSettings>,
    /// Community mode: each selected worker trains on the shard numbered by its rank among
    /// the selected, of as many shards as there are selected workers.
    pub(crate) sharded: bool,
}

/// What long polls watch: the open round, or the end.
#[derive(Debug, Clone, Default)]
pub(crate) struct Board {
    pub(crate) open: Option<OpenTask>,
    pub(crate) finished: Option<String>,
}

/// The current global parameters, encoded once for every fetch.
#[derive(Debug, Clone)]
pub(crate) struct Published {
    pub(crate) digest: Digest,
    pub(crate) bytes: Arc<Vec<u8>>,
}

/// The core, its storage, and what the service publishes.
pub(crate) struct Driver {
    core: Coordinator,
    config: FederationConfig,
    state: Arc<dyn StateStore>,
    blobs: Arc<dyn BlobStore>,
    layout: Layout,
    started: Instant,
    /// Enrolled keys and their ids.
    keys: HashMap<[u8; 32], ParticipantId>,
    names: BTreeMap<u64, String>,
    last_seen: HashMap<u64, Instant>,
    /// Long polls open per participant: a participant waiting for a task is alive.
    waiting: HashMap<u64, u32>,
    published: Published,
    board: watch::Sender<Board>,
    model_path: std::path::PathBuf,
    /// A storage failure after which the process must restart from disk.
    fatal: Option<String>,
    /// The transparency ledger, as committed.
    ledger: Ledger,
    /// Enrolment entries in the ledger (participants 0..this are recorded).
    logged_enrolments: u64,
    /// The coordinator's key: it signs the ledger's tree heads.
    key: Identity,
    /// The rules in force.
    charter: Charter,
    /// The open round's secure aggregation, when the federation runs it.
    secure: Option<SecureRound>,
    /// Bumped whenever a secure-aggregation step closes, for the calls waiting on it.
    secure_board: watch::Sender<u64>,
    /// Participants a steward removed: never selected again, their calls refused.
    removed: BTreeSet<u64>,
    /// What `/metrics` reports.
    metrics: harambee_dashboard::Metrics,
    /// The latest signed tree head.
    head: Option<HeadRecord>,
    /// When the open round opened in this process (for its duration).
    opened_at: Option<Instant>,
    /// How long the core's last timed call took: when it closed a round, its aggregation.
    core_busy: Duration,
}

impl Driver {
    /// Opens the federation at `folder`, resuming from whatever its state holds.
    pub(crate) fn open(folder: &FederationFolder) -> Result<Self, ServerError> {
        let config = folder.config()?;
        let charter = folder.charter()?;
        charter
            .check(
                &config.training.strategy.to_string(),
                config.rounds.quorum,
                config.rounds.deadline_s,
                config.rounds.rounds,
            )
            .map_err(|e| {
                ServerError::Config(format!("{e}; change federation.toml or amend the charter"))
            })?;
        crate::privacy::check_budget(&charter, &config)?;
        check_secure_aggregation(&charter, &config)?;
        let trainer = config.model.trainer()?;
        let layout = trainer.layout().clone();
        let blobs: Arc<dyn BlobStore> = Arc::new(FsBlobStore::open(&folder.blobs_path())?);
        let state: Arc<dyn StateStore> = Arc::new(SqliteState::open(&folder.state_path())?);
        let checkpoint = state.checkpoint()?;
        let load = |digest: &Digest| -> Result<ParamSet, ServerError> {
            let bytes = blobs.get(digest)?;
            Ok(Encoding::F32.decode(&layout, &bytes)?)
        };
        let global = match &checkpoint.global_blob {
            Some(d) => load(d)?,
            None => trainer.init(config.rounds.seed),
        };
        let mut strategy = config.training.strategy.build(
            config.training.fraction,
            config.rounds.quorum,
            config.fit(),
        )?;
        let saved = checkpoint
            .strategy_state
            .iter()
            .map(|(name, d)| Ok((name.clone(), load(d)?)))
            .collect::<Result<Vec<_>, ServerError>>()?;
        strategy.restore_state(saved)?;

        let (paused, removed) = view::steward_state(&state.steward_actions()?);
        let participants = state.participants()?;
        let active = || participants.iter().filter(|p| !removed.contains(&p.id));
        let open = checkpoint
            .open
            .as_ref()
            .filter(|o| o.round == checkpoint.completed + 1);
        let point = RestorePoint {
            completed: checkpoint.completed,
            participants: active().map(|p| ParticipantId(p.id)).collect(),
            open: open.map(|o| {
                (
                    o.attempt,
                    o.selected.iter().copied().map(ParticipantId).collect(),
                )
            }),
            paused,
        };
        let core = Coordinator::restore(config.core(), strategy, global, point);
        let key_path = folder.root().join("coordinator.key");
        let key = Identity::load(&key_path).map_err(|e| ServerError::Config(e.to_string()))?;
        let (entries, heads) = state.ledger()?;
        let ledger = Ledger::from_entries(entries);
        if let Some(recorded) = charter_in_force(&ledger)
            && recorded != charter.hash()
        {
            return Err(ServerError::Config(format!(
                "charter.toml (hash {}) is not the charter the ledger records ({recorded}); change it only with `harambee charter amend`",
                charter.hash()
            )));
        }
        let logged_enrolments = ledger
            .entries()
            .iter()
            .filter(|e| matches!(Entry::parse(e), Ok(Entry::Enrolment { .. })))
            .count() as u64;
        let published = publish(core.global());
        let mut driver = Self {
            core,
            state: Arc::clone(&state),
            blobs,
            layout,
            started: Instant::now(),
            keys: participants
                .iter()
                .map(|p| (p.public_key, ParticipantId(p.id)))
                .collect(),
            names: participants
                .iter()
                .map(|p| (p.id, p.name.clone()))
                .collect(),
            // Everyone gets a full liveness period after a restart to call again.
            last_seen: active().map(|p| (p.id, Instant::now())).collect(),
            waiting: HashMap::new(),
            published,
            board: watch::Sender::new(Board::default()),
            model_path: folder.model_path(),
            fatal: None,
            ledger,
            logged_enrolments,
            key,
            charter,
            config,
            secure: None,
            secure_board: watch::Sender::new(0),
            removed: removed.clone(),
            metrics: harambee_dashboard::Metrics::new(),
            head: heads.last().cloned(),
            opened_at: None,
            core_busy: Duration::ZERO,
        };
        driver.metrics.rounds_completed_before(checkpoint.completed);
        if driver.ledger.is_empty() {
            driver.write_genesis(folder)?;
        }
        if let Some(ended) = state.finished()? {
            // The restored core reaches the end again and queues what it would do there (the
            // release entry, the model file): all done and recorded already, so dropped.
            while driver.core.poll_action().is_some() {}
            driver.board.send_replace(Board {
                open: None,
                finished: Some(ended.unwrap_or_else(|| "finished".into())),
            });
            return Ok(driver);
        }
        driver.process_actions()?;
        // A secure round's protocol state lives only in memory: after a restart the open
        // round runs its protocol again from the start (nothing of it was recorded).
        if let Some(o) = open.filter(|_| !driver.config.training.secure_aggregation) {
            driver.replay(o.round, o.attempt)?;
        }
        Ok(driver)
    }

    /// Feeds the open round's acknowledged updates to the core again, as they were stored.
    fn replay(&mut self, round: u64, attempt: u32) -> Result<(), ServerError> {
        let updates = self.state.updates(round, attempt)?;
        let count = updates.len();
        for u in updates {
            let params = Encoding::F32.decode(&self.layout, &self.blobs.get(&u.blob)?)?;
            let result = FitResult {
                participant: ParticipantId(u.participant),
                params,
                num_samples: u.num_samples,
                train_loss: u.train_loss,
            };
            let now = self.now();
            match self.core.handle_event(
                now,
                Event::Result {
                    round,
                    result,
                    digest: u.update_digest,
                },
            ) {
                EventOutcome::Accepted => {}
                other => {
                    return Err(ServerError::Config(format!(
                        "stored update of participant {} for round {round} was not accepted on replay: {other:?}",
                        u.participant
                    )));
                }
            }
            self.process_actions()?;
        }
        if count > 0 {
            tracing::info!(
                round,
                attempt,
                count,
                "resumed the open round with its acknowledged updates"
            );
        }
        Ok(())
    }

    /// A subscription to the board.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Board> {
        self.board.subscribe()
    }

    /// The model every participant trains, as the wire describes it.
    pub(crate) fn model_spec(&self) -> v1::ModelSpec {
        let m = &self.config.model;
        v1::ModelSpec {
            model: m.model.to_string(),
            dataset: serde_json::to_value(m.data)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            classes: m.classes.clone(),
            embedding_dim: m.embedding_dim as u32,
            optimizer: serde_json::to_string(&m.optimizer).unwrap_or_default(),
            tensors: self
                .layout
                .tensors()
                .iter()
                .map(|t| v1::TensorSpec {
                    name: t.name.clone(),
                    shape: t.shape.iter().map(|&d| d as u64).collect(),
                })
                .collect(),
            seed: self.config.rounds.seed,
        }
    }

    pub(crate) fn config(&self) -> &FederationConfig {
        &self.config
    }

    pub(crate) fn fatal(&self) -> Option<&str> {
        self.fatal.as_deref()
    }

    fn now(&self) -> Tick {
        Tick(self.started.elapsed().as_millis() as u64)
    }

    fn deadline_instant(&self, tick: Tick) -> Instant {
        self.started + Duration::from_millis(tick.0)
    }

    /// When the timer must next wake the core (or close a secure-aggregation step).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let core = self.core.poll_timeout().map(|t| self.deadline_instant(t));
        let step = self.secure.as_ref().and_then(SecureRound::deadline);
        match (core, step) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Lets the core see that time passed.
    pub(crate) fn on_timer(&mut self) -> Result<(), ServerError> {
        self.advance_secure()?;
        let now = self.now();
        self.timed(|core| core.handle_timeout(now));
        self.process_actions()
    }

    /// A receiver that changes whenever a secure-aggregation step closes.
    pub(crate) fn secure_progress(&self) -> watch::Receiver<u64> {
        self.secure_board.subscribe()
    }

    /// The open secure round, if `round` and `attempt` name it.
    fn secure_round(&mut self, round: u64, attempt: u32) -> Result<&mut SecureRound, Status> {
        match self.secure.as_mut() {
            Some(s) if s.round == round && s.attempt == attempt => Ok(s),
            _ => Err(Status::failed_precondition(format!(
                "round {round} attempt {attempt} is not running secure aggregation now"
            ))),
        }
    }

    /// Steps 1, 2 and 4 of secure aggregation: checks who sent it and its signature, hands it
    /// to the protocol. Returns the sender's index and the step, to wait on.
    pub(crate) fn secagg_step(&mut self, r: &v1::SecAggRequest) -> Result<(u32, u8), Status> {
        use harambee_proto::secagg::{signing_bytes, step};
        use prost::Message;
        use v1::sec_agg_request::Step as S;
        let id = self.participant(&r.public_key)?;
        let secure = self.secure_round(r.round, r.attempt)?;
        let index = secure.index_of(id).ok_or_else(|| {
            Status::permission_denied(format!(
                "participant {id} was not selected for round {}",
                r.round
            ))
        })?;
        let (number, body) = match &r.step {
            Some(S::Keys(k)) => (step::KEYS, k.encode_to_vec()),
            Some(S::Shares(s)) => (step::SHARES, s.encode_to_vec()),
            Some(S::Unmask(u)) => (step::UNMASK, u.encode_to_vec()),
            None => {
                return Err(Status::invalid_argument(
                    "a secure-aggregation request names no step",
                ));
            }
        };
        let signer = PublicKey::from_bytes(
            r.public_key[..]
                .try_into()
                .map_err(|_| Status::invalid_argument("bad key"))?,
        )
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
        signer
            .verify_raw(&signing_bytes(secure.session(), number, &body), &r.signature)
            .map_err(|_| Status::unauthenticated("bad signature on a secure-aggregation step: it must cover the session, the step and the message with this key"))?;
        if secure.already_sent(index, number) {
            return Ok((index, number));
        }
        match &r.step {
            Some(S::Keys(k)) => secure.keys(index, k, &r.public_key, &r.signature)?,
            Some(S::Shares(s)) => secure.shares(index, s)?,
            Some(S::Unmask(u)) => secure.unmask(index, u)?,
            None => {}
        }
        self.advance_secure().map_err(|e| self.storage_failed(e))?;
        Ok((index, number))
    }

    /// Whether `key` may send a masked update for (`round`, `attempt`) now: checked before
    /// a single byte of it is read.
    pub(crate) fn check_masked_caller(
        &mut self,
        key: &[u8; 32],
        round: u64,
        attempt: u32,
    ) -> Result<(), Status> {
        let id = self.participant(key)?;
        let secure = self.secure_round(round, attempt)?;
        secure.index_of(id).map(|_| ()).ok_or_else(|| {
            Status::permission_denied(format!(
                "participant {id} was not selected for round {round}"
            ))
        })
    }

    /// Step 3 of secure aggregation: a masked update with its signed commitment.
    pub(crate) fn secagg_masked(
        &mut self,
        h: &v1::MaskedHeader,
        bytes: Vec<u8>,
    ) -> Result<u32, Status> {
        let id = self.participant(&h.public_key)?;
        let base = self.published.digest;
        let federation = self.config.federation_id.clone();
        let secure = self.secure_round(h.round, h.attempt)?;
        let index = secure.index_of(id).ok_or_else(|| {
            Status::permission_denied(format!(
                "participant {id} was not selected for round {}",
                h.round
            ))
        })?;
        if secure.already_sent(index, 3) {
            return Ok(index);
        }
        let digest = Digest(Sha256::digest(&bytes).into());
        if digest.0[..] != h.masked_digest[..] {
            return Err(Status::invalid_argument(
                "the masked update does not hash to the announced digest: truncated or altered in transit",
            ));
        }
        if !h.train_loss.is_finite() {
            return Err(Status::invalid_argument("train_loss must be finite"));
        }
        let signer = PublicKey::from_bytes(
            h.public_key[..]
                .try_into()
                .map_err(|_| Status::invalid_argument("bad key"))?,
        )
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let signature: [u8; 64] = h
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| Status::unauthenticated("the signature must be 64 bytes"))?;
        SignedUpdate {
            statement: UpdateStatement {
                federation,
                round: h.round,
                base,
                update: digest,
                num_samples: 0,
            },
            signer,
            signature,
        }
        .verify()
        .map_err(|_| Status::unauthenticated("bad signature on the masked update's commitment"))?;
        secure.masked(
            index,
            MaskedCommitment {
                digest,
                signature: h.signature.clone(),
                train_loss: h.train_loss,
                bytes,
            },
        )?;
        self.advance_secure().map_err(|e| self.storage_failed(e))?;
        Ok(index)
    }

    /// What participant `index` hears once step `step` of round (`round`, `attempt`) closed.
    pub(crate) fn secagg_reply(
        &self,
        round: u64,
        attempt: u32,
        index: u32,
        step: u8,
    ) -> Option<Result<v1::SecAggReply, Status>> {
        match self.secure.as_ref() {
            Some(s) if s.round == round && s.attempt == attempt => s.reply(index, step),
            _ => Some(Err(Status::failed_precondition(format!(
                "round {round} attempt {attempt} is no longer running secure aggregation"
            )))),
        }
    }

    /// Closes whatever secure-aggregation step is due; when the last one gives the sum, the
    /// commitments are recorded and the core closes the round on the sum.
    fn advance_secure(&mut self) -> Result<(), ServerError> {
        let Some(secure) = self.secure.as_mut() else {
            return Ok(());
        };
        let before = secure.step().clone();
        let sum = secure.advance(Instant::now());
        let changed = *secure.step() != before;
        if let Some(sum) = sum {
            self.finish_secure(sum)?;
        }
        if changed {
            self.secure_board.send_modify(|v| *v += 1);
        }
        Ok(())
    }

    /// Records the contributors' commitments (durably, with their masked updates), then
    /// gives the core the decoded sum.
    fn finish_secure(&mut self, sum: harambee_secagg::Sum) -> Result<(), ServerError> {
        let Some(secure) = self.secure.as_ref() else {
            return Ok(());
        };
        let (round, attempt) = (secure.round, secure.attempt);
        let mut decoded = secure.fixed.decode(&sum.values);
        let within_clip = (decoded.len() > self.layout.num_values())
            .then(|| f64::from(decoded.pop().unwrap_or(0.0)));
        let mut contributors = Vec::with_capacity(sum.contributors.len());
        for &index in &sum.contributors {
            let (Some(p), Some(c)) = (secure.participant(index), secure.commitments.get(&index))
            else {
                continue;
            };
            let blob = self.blobs.put(&c.bytes)?;
            self.state.record_update(&UpdateRecord {
                round,
                attempt,
                participant: p.0,
                update_digest: c.digest,
                blob,
                num_samples: 0,
                train_loss: c.train_loss,
                signature: c.signature.clone(),
            })?;
            contributors.push(p);
        }
        let secure_sum = harambee_strategy::SecureSum {
            delta_sum: ParamSet::from_values(self.layout.clone(), decoded)?,
            contributors,
            selected: 0,
            within_clip,
        };
        let now = self.now();
        if let EventOutcome::Refused(r) = self.core.handle_event(
            now,
            Event::SecureSum {
                round,
                sum: secure_sum,
            },
        ) {
            tracing::warn!(round, refusal = %r, "the secure sum was refused");
        }
        tracing::info!(
            round,
            contributors = sum.contributors.len(),
            "secure aggregation complete"
        );
        self.process_actions()
    }

    /// SHA-256 of the charter in force.
    pub(crate) fn charter_hash(&self) -> String {
        self.charter.hash()
    }

    /// Whether the charter admits this key to train.
    pub(crate) fn admits(&self, key: &PublicKey) -> bool {
        self.charter.may_train(&key.to_string())
    }

    /// Enrols a key that proved it holds its secret half.
    pub(crate) fn enrol(&mut self, key: &PublicKey, name: &str) -> Result<ParticipantId, Status> {
        let max = self.config.limits.max_participants;
        if !self.keys.contains_key(&key.to_bytes()) && self.keys.len() as u64 >= max {
            return Err(Status::resource_exhausted(format!(
                "the federation is full: it enrols at most {max} members (limits.max_participants)"
            )));
        }
        let (record, new) = self
            .state
            .enrol(&key.to_bytes(), name)
            .map_err(|e| self.storage_failed(e.into()))?;
        let id = ParticipantId(record.id);
        self.keys.insert(record.public_key, id);
        self.names.insert(record.id, record.name);
        self.last_seen.insert(record.id, Instant::now());
        let now = self.now();
        let _ = self.core.handle_event(now, Event::Enrol(id));
        if new {
            tracing::info!(participant = id.0, name, "enrolled");
        }
        self.process_actions().map_err(|e| self.storage_failed(e))?;
        Ok(id)
    }

    /// Whether a key is enrolled (removed members too: their calls are refused later, by
    /// name).
    pub(crate) fn is_enrolled(&self, key: &[u8; 32]) -> bool {
        self.keys.contains_key(key)
    }

    /// The participant behind a key, or why there is none.
    pub(crate) fn participant(&mut self, key: &[u8]) -> Result<ParticipantId, Status> {
        let key: [u8; 32] = key
            .try_into()
            .map_err(|_| Status::invalid_argument("public_key must be 32 bytes"))?;
        let id = *self.keys.get(&key).ok_or_else(|| {
            Status::permission_denied(format!(
                "unknown key {}: enrol with an invite first",
                hex::encode(key)
            ))
        })?;
        if self.removed.contains(&id.0) {
            return Err(Status::permission_denied(format!(
                "participant {id} was removed from this federation by a steward"
            )));
        }
        if self.last_seen.insert(id.0, Instant::now()).is_none() {
            // It had been counted as gone: it is back.
            let now = self.now();
            let _ = self.core.handle_event(now, Event::Enrol(id));
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
            let now = self.now();
            let _ = self.timed(|core| core.handle_event(now, Event::Leave(ParticipantId(id))));
            tracing::warn!(
                participant = id,
                "no call for too long; counted as gone until it calls again"
            );
        }
        self.process_actions()
    }

    /// The current global parameters, if `digest` names them.
    pub(crate) fn parameters(&self, digest: &[u8]) -> Result<Arc<Vec<u8>>, Status> {
        if digest == self.published.digest.0 {
            Ok(Arc::clone(&self.published.bytes))
        } else {
            Err(Status::not_found(format!(
                "parameters {} are not the current global model ({}); ask for a new task",
                hex::encode(digest),
                self.published.digest
            )))
        }
    }

    /// Checks an update's header before its bytes are read: who, which round, how big.
    pub(crate) fn check_header(&mut self, h: &v1::UpdateHeader) -> Result<ParticipantId, Status> {
        let id = self.participant(&h.public_key)?;
        let (round, attempt, selected) = self.core.open_selection().ok_or_else(|| {
            Status::failed_precondition(format!("no round is open; round {} is over", h.round))
        })?;
        if h.round != round || h.attempt != attempt {
            return Err(Status::failed_precondition(format!(
                "late or early update: it is for round {} attempt {}, but round {round} attempt {attempt} is open",
                h.round, h.attempt
            )));
        }
        if !selected.contains(&id) {
            return Err(Status::permission_denied(format!(
                "participant {id} was not selected for round {round}"
            )));
        }
        if h.base_digest != self.published.digest.0 {
            return Err(Status::failed_precondition(format!(
                "the update was trained from {}, not from round {round}'s base {}",
                hex::encode(&h.base_digest),
                self.published.digest
            )));
        }
        let encoding: Encoding = h.encoding.parse().map_err(|_| {
            Status::invalid_argument(format!("unknown encoding {:?}; use f32 or f16", h.encoding))
        })?;
        let max = self.config.limits.max_samples;
        if h.num_samples == 0 || h.num_samples > max {
            return Err(Status::out_of_range(format!(
                "num_samples {} is outside 1..={max} (limits.max_samples)",
                h.num_samples
            )));
        }
        let expected = (self.layout.num_values() * encoding.bytes_per_value()) as u64;
        if h.total_bytes != expected {
            return Err(Status::invalid_argument(format!(
                "wrong shape: the model has {} values ({expected} bytes in {encoding}), the update announces {} bytes",
                self.layout.num_values(),
                h.total_bytes
            )));
        }
        if self.core.received() == 0 {
            pause_at(FaultPoint::BeforeUpdate);
        }
        Ok(id)
    }

    /// Whether an upload in progress should pause for a crash test (`mid-upload`).
    pub(crate) fn mid_upload_point(&self) {
        if self.core.received() >= 1 {
            pause_at(FaultPoint::MidUpload);
        }
    }

    /// Validates an update completely, stores it durably, then gives it to the core. Returns
    /// (results held this round, quorum).
    pub(crate) fn accept(
        &mut self,
        h: &v1::UpdateHeader,
        bytes: &[u8],
    ) -> Result<(u32, u32), Status> {
        let id = self.check_header(h)?;
        let encoding: Encoding = h
            .encoding
            .parse()
            .map_err(|_| Status::invalid_argument("unknown encoding"))?;
        let params = encoding
            .decode(&self.layout, bytes)
            .map_err(|e| Status::invalid_argument(format!("undecodable update: {e}")))?;
        let digest = params.digest();
        if digest.0[..] != h.update_digest[..] {
            return Err(Status::invalid_argument(format!(
                "the parameters hash to {digest}, not to the announced {}: truncated or altered in transit",
                hex::encode(&h.update_digest)
            )));
        }
        let key: [u8; 32] = h.public_key[..]
            .try_into()
            .map_err(|_| Status::invalid_argument("bad key"))?;
        let signer =
            PublicKey::from_bytes(&key).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let signature: [u8; 64] = h
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| Status::unauthenticated("the signature must be 64 bytes"))?;
        let signed = SignedUpdate {
            statement: UpdateStatement {
                federation: self.config.federation_id.clone(),
                round: h.round,
                base: self.published.digest,
                update: digest,
                num_samples: h.num_samples,
            },
            signer,
            signature,
        };
        signed
            .verify()
            .map_err(|_| Status::unauthenticated("bad signature: it does not cover this federation, round, base, update and sample count with this key"))?;
        if !h.train_loss.is_finite() {
            return Err(Status::invalid_argument("train_loss must be finite"));
        }
        let result = FitResult {
            participant: id,
            params,
            num_samples: h.num_samples,
            train_loss: h.train_loss,
        };
        self.core
            .check_result(h.round, &result)
            .map_err(refusal_status)?;

        // Durable before acknowledged: the blob, then its record, then the core.
        let blob = self
            .blobs
            .put(&Encoding::F32.encode(&result.params))
            .map_err(|e| self.storage_failed(e.into()))?;
        self.state
            .record_update(&UpdateRecord {
                round: h.round,
                attempt: h.attempt,
                participant: id.0,
                update_digest: digest,
                blob,
                num_samples: h.num_samples,
                train_loss: h.train_loss,
                signature: h.signature.clone(),
            })
            .map_err(|e| self.storage_failed(e.into()))?;
        // Counted before the core sees it: the last update closes the round.
        let received = self.core.received() as u32 + 1;
        let now = self.now();
        let outcome = self.timed(|core| {
            core.handle_event(
                now,
                Event::Result {
                    round: h.round,
                    result,
                    digest,
                },
            )
        });
        if let EventOutcome::Refused(r) = outcome {
            // Checked a moment ago under the same lock, so this cannot happen; say so loudly.
            return Err(Status::internal(format!("refused after checking: {r}")));
        }
        tracing::info!(round = h.round, participant = id.0, "update accepted");
        self.process_actions().map_err(|e| self.storage_failed(e))?;
        Ok((received, self.config.rounds.quorum as u32))
    }

    /// Records a participant's evaluation of a round's result.
    pub(crate) fn evaluation(&mut self, r: &v1::EvaluationReport) -> Result<(), Status> {
        let id = self.participant(&r.public_key)?;
        let max = self.config.limits.max_samples;
        if r.examples == 0 || r.examples > max {
            return Err(Status::out_of_range(format!(
                "examples {} is outside 1..={max} (limits.max_samples)",
                r.examples
            )));
        }
        // Only a model that exists can be evaluated: a round already closed.
        let closed = self.core.completed();
        if r.round == 0 || r.round > closed {
            return Err(Status::out_of_range(format!(
                "round {} is not a closed round (1..={closed})",
                r.round
            )));
        }
        if !(r.accuracy.is_finite() && (0.0..=1.0).contains(&r.accuracy)) {
            return Err(Status::invalid_argument("accuracy must be in [0, 1]"));
        }
        if !(r.loss.is_finite() && r.loss >= 0.0) {
            return Err(Status::invalid_argument(
                "loss must be finite and not negative",
            ));
        }
        self.state
            .record_evaluation(r.round, id.0, r.examples, r.accuracy, r.loss)
            .map_err(|e| self.storage_failed(e.into()))
    }

    /// Where the federation stands.
    pub(crate) fn status(&self) -> Result<v1::FederationStatus, Status> {
        let rounds = self
            .state
            .closed_rounds()
            .map_err(|e| Status::internal(e.to_string()))?;
        let evaluations: std::collections::HashMap<u64, harambee_store::RoundEvaluation> = self
            .state
            .round_evaluations()
            .map_err(|e| Status::internal(e.to_string()))?
            .into_iter()
            .map(|e| (e.round, e))
            .collect();
        let completed = rounds
            .iter()
            .map(|r| {
                // A round's result is evaluated by the next round's participants.
                let evaluation = evaluations.get(&r.round);
                v1::RoundStatus {
                    round: r.round,
                    contributors: r.contributors,
                    global_digest: r.global_digest.0.to_vec(),
                    accuracy: evaluation.map_or(-1.0, |e| e.accuracy),
                    train_loss: r.train_loss,
                    validation_loss: evaluation.and_then(|e| e.loss).unwrap_or(-1.0),
                }
            })
            .collect::<Vec<_>>();
        let board = self.board.borrow();
        let error = self
            .core
            .error()
            .map(|e| e.to_string())
            .or_else(|| board.finished.clone().filter(|f| f != "finished"));
        let (phase, round, selected) = match (&board.finished, self.core.open_selection()) {
            (Some(_), _) if error.is_some() => ("failed", rounds.len() as u64, 0),
            (Some(_), _) => ("finished", rounds.len() as u64, 0),
            (None, Some((round, _, selected))) => ("training", round, selected.len()),
            (None, None) => ("waiting", rounds.len() as u64 + 1, 0),
        };
        Ok(v1::FederationStatus {
            federation_id: self.config.federation_id.clone(),
            phase: phase.into(),
            round,
            rounds: self.config.rounds.rounds,
            selected: selected as u32,
            received: self.core.received() as u32,
            quorum: self.config.rounds.quorum as u32,
            enrolled: self.keys.len() as u32,
            global_digest: self.published.digest.0.to_vec(),
            completed,
            error: error.unwrap_or_default(),
        })
    }

    /// Runs a core call that may close a round, and notes how long it took: the core
    /// aggregates inside it, and has no clock of its own to say so.
    fn timed<T>(&mut self, call: impl FnOnce(&mut Coordinator) -> T) -> T {
        let started = Instant::now();
        let out = call(&mut self.core);
        self.core_busy = started.elapsed();
        out
    }

    fn storage_failed(&mut self, e: ServerError) -> Status {
        tracing::error!(error = %e, "storage failed; the coordinator must restart from disk");
        self.fatal = Some(e.to_string());
        Status::unavailable(format!("the coordinator could not store state: {e}"))
    }

    /// Writes down and publishes whatever the core decided.
    fn process_actions(&mut self) -> Result<(), ServerError> {
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
                        finished: None,
                    });
                }
                Action::CloseRound(summary) => {
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
                    self.published = publish(&summary.global);
                    tracing::info!(
                        round = summary.round,
                        contributors = record.contributors,
                        train_loss = loss,
                        digest = %record.global_digest,
                        "round closed"
                    );
                    self.board.send_modify(|b| b.open = None);
                    self.secure = None;
                }
                Action::RoundRetried {
                    round,
                    received,
                    quorum,
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
                        open: None,
                        finished: Some(error.unwrap_or_else(|| "finished".into())),
                    });
                }
            }
        }
        Ok(())
    }
}

impl Driver {
    /// Starts the protocol for a round that opened, when the federation runs secure
    /// aggregation. Steps after the first get `limits.secagg_step_s` each; the first gets
    /// whatever that leaves of the round's deadline (at least half of it) for training.
    fn start_secure(
        &self,
        open: &harambee_coordinator::OpenRound,
        deadline: Instant,
    ) -> Result<Option<SecureRound>, ServerError> {
        if !self.config.training.secure_aggregation {
            return Ok(None);
        }
        let step = Duration::from_secs_f64(self.config.limits.secagg_step_s);
        let round_s = Duration::from_secs_f64(self.config.rounds.deadline_s);
        let keys_deadline = Instant::now()
            + round_s
                .saturating_sub(3 * step)
                .max(round_s / 2)
                .min(deadline.saturating_duration_since(Instant::now()));
        let min_survivors = self
            .charter
            .secure_aggregation
            .map_or(0, |r| r.min_survivors)
            .max(self.config.rounds.quorum);
        SecureRound::new(
            open,
            &self.config.federation_id,
            min_survivors,
            self.config.training.secagg_range,
            keys_deadline,
            step,
        )
        .map(Some)
        .map_err(|e| {
            ServerError::Config(format!("secure aggregation for round {}: {e}", open.round))
        })
    }

    /// The round's mean training loss, weighted by samples; under secure aggregation no
    /// samples are reported, so the plain mean of the contributors' losses.
    fn round_train_loss(
        &self,
        summary: &harambee_coordinator::RoundSummary,
    ) -> Result<f64, ServerError> {
        let samples: u64 = summary.contributions.iter().map(|c| c.1).sum();
        if samples > 0 || !self.config.training.secure_aggregation {
            let weighted: f64 = summary
                .contributions
                .iter()
                .map(|c| c.1 as f64 * f64::from(c.3))
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
    fn write_genesis(&mut self, folder: &FederationFolder) -> Result<(), ServerError> {
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
    fn append(&mut self, entries: Vec<Entry>) -> Result<(), ServerError> {
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
    fn round_entries(
        &mut self,
        summary: &harambee_coordinator::RoundSummary,
    ) -> Result<(Vec<Vec<u8>>, HeadRecord, Ledger), ServerError> {
        let mut entries = Vec::new();
        for p in self.state.participants()? {
            if p.id >= self.logged_enrolments {
                entries.push(Entry::Enrolment {
                    participant: p.id,
                    public_key: hex::encode(p.public_key),
                    name: p.name,
                });
            }
        }
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
            summary.contributions.iter().map(|c| c.2.to_hex()).collect()
        };
        for u in updates {
            entries.push(Entry::UpdateCommitment {
                round: u.round,
                attempt: u.attempt,
                participant: u.participant,
                update_digest: u.update_digest.to_hex(),
                num_samples: u.num_samples,
                signature: hex::encode(&u.signature),
            });
        }
        entries.push(Entry::RoundResult {
            round: summary.round,
            strategy: self.config.training.strategy.to_string(),
            inputs,
            output: summary.global.digest().to_hex(),
            epsilon: crate::privacy::epsilon_after(&self.charter, &self.config, summary.round),
        });
        let enrolled = entries
            .iter()
            .filter(|e| matches!(e, Entry::Enrolment { .. }))
            .count() as u64;
        self.logged_enrolments += enrolled;
        let mut ledger = self.ledger.clone();
        for e in &entries {
            ledger.append(e);
        }
        let head = head_record(&ledger.sign_head(&self.key, unix_ms()));
        Ok((entries.iter().map(Entry::to_bytes).collect(), head, ledger))
    }

    /// Deletes the update blobs of the round that just left the retention window. Only after
    /// the round's result is committed, so a crash in between leaves extra blobs, never
    /// missing ones.
    fn apply_retention(&self, closed: u64) -> Result<(), ServerError> {
        let Some(keep) = self.config.limits.keep_update_rounds else {
            return Ok(());
        };
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

fn publish(global: &ParamSet) -> Published {
    Published {
        digest: global.digest(),
        bytes: Arc::new(Encoding::F32.encode(global)),
    }
}

fn summary_json(s: &harambee_coordinator::RoundSummary) -> String {
    serde_json::json!({
        "round": s.round,
        "strategy": s.strategy,
        "base": s.base.to_hex(),
        "contributions": s.contributions.iter().map(|(p, n, d, loss)| serde_json::json!({
            "participant": p.0, "samples": n, "digest": d.to_hex(), "train_loss": loss,
        })).collect::<Vec<_>>(),
        "failures": s.failures.iter().map(|f| serde_json::json!({
            "participant": f.participant.0, "reason": format!("{:?}", f.reason),
        })).collect::<Vec<_>>(),
    })
    .to_string()
}

/// A federation whose charter requires secure aggregation must run it, and secure aggregation
/// needs a strategy that works on a sum.
fn check_secure_aggregation(
    charter: &Charter,
    config: &FederationConfig,
) -> Result<(), ServerError> {
    if charter.secure_aggregation.is_some() && !config.training.secure_aggregation {
        return Err(ServerError::Config(
            "the charter requires secure aggregation: set training.secure_aggregation = true"
                .into(),
        ));
    }
    let blind = matches!(
        config.training.strategy,
        harambee_strategy::StrategyConfig::FedAvg
            | harambee_strategy::StrategyConfig::DpFedAvg { .. }
    );
    if config.training.secure_aggregation && !blind {
        return Err(ServerError::Config(format!(
            "secure aggregation needs fedavg or dp-fedavg; {} combines individual updates",
            config.training.strategy
        )));
    }
    Ok(())
}

/// The gRPC status for a refusal by the core.
fn refusal_status(r: Refusal) -> Status {
    let message = r.to_string();
    match r {
        Refusal::Duplicate(_) => Status::already_exists(format!("replay: {message}")),
        Refusal::WrongRound { .. } => Status::failed_precondition(message),
        Refusal::UnknownParticipant(_) | Refusal::NotSelected(_) => {
            Status::permission_denied(message)
        }
        _ => Status::invalid_argument(message),
    }
}

/// Writes a file so that a crash leaves the old one or the new one, never a torn mix: a
/// temporary file beside it, synced, renamed over it, and the directory synced.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<(), ServerError> {
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

fn head_record(head: &TreeHead) -> HeadRecord {
    HeadRecord {
        size: head.size,
        root: head.root,
        timestamp_ms: head.timestamp_ms,
        signature: head.signature.clone(),
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The hash of the charter the ledger says is in force: the genesis charter, as amended.
fn charter_in_force(ledger: &Ledger) -> Option<String> {
    let mut hash = None;
    for bytes in ledger.entries() {
        match Entry::parse(bytes) {
            Ok(Entry::Genesis { charter, .. }) | Ok(Entry::Amendment { charter, .. }) => {
                hash = Some(hex::encode(Sha256::digest(charter.as_bytes())));
            }
            _ => {}
        }
    }
    hash
}
