//! The durable driver around the sans-IO core: it feeds the core only what is already on
//! disk, and writes down every action the core takes before anyone hears of it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::rejection::Rejection;
use harambee_charter::Charter;
use harambee_coordinator::{Action, Coordinator, Event, EventOutcome, Refusal, RestorePoint, Tick};
use harambee_identity::{Identity, PublicKey, SignedUpdate, UpdateStatement};
use harambee_ledger::{Entry, Ledger, TreeHead, UpdatePromise};
use harambee_params::{Digest, Encoding, Layout, ParamSet, UpdateCodec};
use harambee_proto::v1;
use harambee_store::{
    BlobStore, ClosedRoundRecord, FsBlobStore, HeadRecord, OpenRoundRecord, Redemption,
    SqliteState, StateStore, UpdateRecord,
};
use harambee_strategy::{FitConfig, FitResult, ParticipantId};
use sha2::{Digest as _, Sha256};
use tokio::sync::watch;

use crate::fault::{FaultPoint, pause_at};
use crate::secure::{MaskedCommitment, SecureRound};
use crate::{FederationConfig, FederationFolder, ServerError};

mod buffered;
mod members;
mod record;
mod secure_steps;
mod spot_check;
mod status;
mod updates;
mod view;
pub(crate) use buffered::Assignment;
pub(crate) use status::StatusSnapshot;
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

/// The enrolled keys, as the call gate reads them. Written only by the driver (at enrolment);
/// the lock is never held across anything but a set lookup or insert.
#[derive(Debug, Clone, Default)]
pub(crate) struct Roster(Arc<std::sync::RwLock<std::collections::HashSet<[u8; 32]>>>);

impl Roster {
    fn of(keys: impl Iterator<Item = [u8; 32]>) -> Self {
        Self(Arc::new(std::sync::RwLock::new(keys.collect())))
    }

    /// Whether `key` is enrolled (removed members included: their calls are refused later,
    /// by name).
    pub(crate) fn contains(&self, key: &[u8; 32]) -> bool {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(key)
    }

    fn insert(&self, key: [u8; 32]) {
        self.0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key);
    }
}

/// How a federation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Every round ran; the model is released.
    Finished,
    /// It failed, for this reason.
    Failed(String),
}

impl Ending {
    /// From what the store recorded: `None` finished, `Some(reason)` failed.
    pub(crate) fn from_record(error: Option<String>) -> Self {
        error.map_or(Ending::Finished, Ending::Failed)
    }

    /// What participants are told when they ask for a task.
    pub(crate) fn message(&self) -> &str {
        match self {
            Ending::Finished => "finished",
            Ending::Failed(why) => why,
        }
    }

    /// The failure, if it failed.
    pub(crate) fn failure(&self) -> Option<&str> {
        match self {
            Ending::Finished => None,
            Ending::Failed(why) => Some(why),
        }
    }
}

/// What long polls watch: the open round, or the end.
#[derive(Debug, Clone, Default)]
pub(crate) struct Board {
    pub(crate) open: Option<OpenTask>,
    pub(crate) finished: Option<Ending>,
    /// Set when a write failed: the coordinator must stop and restart from disk.
    pub(crate) stopped: Option<String>,
    /// In a buffered federation, each member's piece of work.
    pub(crate) assigned: Arc<BTreeMap<u64, Assignment>>,
    /// What members are told to do (a buffered federation's tasks; a round's are in `open`).
    pub(crate) fit: FitConfig,
}

/// The current global parameters, encoded once for every fetch.
#[derive(Debug, Clone)]
pub(crate) struct Published {
    pub(crate) digest: Digest,
    pub(crate) bytes: Arc<Vec<u8>>,
    /// Under a lossy download encoding: the model these were published from, and the bytes
    /// that turn it into them (members holding it download only those).
    pub(crate) change: Option<(Digest, Arc<Vec<u8>>)>,
}

/// Parameters as a fetch sends them.
#[derive(Debug, Clone)]
pub(crate) struct Fetched {
    pub(crate) bytes: Arc<Vec<u8>>,
    /// Empty for the whole model in f32; else the download encoding of the change from the
    /// model the member holds.
    pub(crate) encoding: String,
}

/// The core, its storage, and what the service publishes.
pub(crate) struct Driver {
    core: Coordinator,
    /// A buffered (FedBuff) federation's core; the round core then stays idle.
    buffered: Option<buffered::BufferedRun>,
    /// The federation's folder.
    root: std::path::PathBuf,
    config: FederationConfig,
    state: Arc<dyn StateStore>,
    blobs: Arc<dyn BlobStore>,
    layout: Layout,
    started: Instant,
    /// Enrolled keys and their ids.
    keys: HashMap<[u8; 32], ParticipantId>,
    /// The enrolled keys, shared read-only with the call gate: a call's membership is checked
    /// before its proof is remembered, without a trip through the actor's queue.
    roster: Roster,
    names: BTreeMap<u64, String>,
    last_seen: HashMap<u64, Instant>,
    /// Long polls open per participant: a participant waiting for a task is alive.
    waiting: HashMap<u64, u32>,
    published: Published,
    /// What `GetStatus` answers, republished after every job.
    status_board: watch::Sender<StatusSnapshot>,
    /// The completed rounds as the status reports them; `None` once a round closed or an
    /// evaluation arrived since they were read.
    completed_rounds: Option<Arc<Vec<v1::RoundStatus>>>,
    /// When they were read, and whether evaluations arrived since.
    completed_read_at: Instant,
    evaluations_arrived: bool,
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
    /// The last secure round that gave its sum: (round, attempt, contributors). Its session
    /// ends with the round, but its contributors' last poll may come after; they hear
    /// "summed" from this, not "no longer running".
    secure_summed: Option<(u64, u32, u32)>,
    /// Bumped whenever a secure-aggregation step closes, for the calls waiting on it.
    secure_board: watch::Sender<u64>,
    /// Participants a steward removed: never selected again, their calls refused.
    removed: BTreeSet<u64>,
    /// Each member's commitment to its local data, as the ledger records it.
    data_roots: HashMap<u64, String>,
    /// Under verifiable training: what replays workers' updates for the spot checks.
    replayer: Option<Arc<crate::Replayer>>,
    /// Workers removed for an update that did not replay (the ledger's fraud entries).
    fraudulent: BTreeSet<u64>,
    /// Workers with an update being replayed now (one at a time each).
    replaying: BTreeSet<u64>,
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
        secure_steps::check_secure_aggregation(&charter, &config)?;
        check_base_model(&charter, &config)?;
        check_encodings(&charter, &config)?;
        check_buffered(&charter, &config)?;
        let (layout, initial) = config.initial_model(folder.root())?;
        let blobs: Arc<dyn BlobStore> = Arc::new(FsBlobStore::open(&folder.blobs_path())?);
        let state: Arc<dyn StateStore> = Arc::new(SqliteState::open(&folder.state_path())?);
        let checkpoint = state.checkpoint()?;
        let load = |digest: &Digest| -> Result<ParamSet, ServerError> {
            let bytes = blobs.get(digest)?;
            Ok(Encoding::F32.decode(&layout, &bytes)?)
        };
        let global = match &checkpoint.global_blob {
            Some(d) => load(d)?,
            None => initial,
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

        let (paused, mut removed) = view::steward_state(&state.steward_actions()?);
        let (entries, heads) = state.ledger()?;
        // Read once: the charter in force, enrolments, data commitments and frauds.
        let logged: Vec<Entry> = entries
            .iter()
            .filter_map(|e| Entry::parse(e).ok())
            .collect();
        let fraudulent: BTreeSet<u64> = logged
            .iter()
            .filter_map(|e| match e {
                Entry::Fraud { participant, .. } => Some(*participant),
                _ => None,
            })
            .collect();
        removed.extend(&fraudulent);
        let replayer = replayer_for(&charter, &config)?;
        let participants = state.participants()?;
        let active = || participants.iter().filter(|p| !removed.contains(&p.id));
        let open = checkpoint
            .open
            .as_ref()
            .filter(|o| o.round == checkpoint.completed + 1);
        // A buffered federation's round core holds no one, so it never opens a round.
        let rounds = config.training.buffered.is_none();
        let point = RestorePoint {
            completed: checkpoint.completed,
            participants: active()
                .filter(|_| rounds)
                .map(|p| ParticipantId(p.id))
                .collect(),
            open: open.filter(|_| rounds).map(|o| {
                (
                    o.attempt,
                    o.selected.iter().copied().map(ParticipantId).collect(),
                )
            }),
            paused: paused && rounds,
        };
        let core = Coordinator::restore(config.core(), strategy, global, point);
        let key_path = folder.root().join("coordinator.key");
        let key = Identity::load(&key_path).map_err(|e| ServerError::Config(e.to_string()))?;
        let ledger = Ledger::from_entries(entries);
        if let Some(recorded) = charter_in_force(&logged)
            && recorded != charter.hash()
        {
            return Err(ServerError::Config(format!(
                "charter.toml (hash {}) is not the charter the ledger records ({recorded}); change it only with `harambee charter amend`",
                charter.hash()
            )));
        }
        let logged_enrolments = logged
            .iter()
            .filter(|e| matches!(e, Entry::Enrolment { .. }))
            .count() as u64;
        let published = publish(core.global());
        let data_roots = logged
            .iter()
            .filter_map(|e| match e {
                Entry::DataCommitment {
                    participant,
                    data_root,
                } => Some((*participant, data_root.clone())),
                _ => None,
            })
            .collect();
        let mut driver = Self {
            core,
            buffered: None,
            root: folder.root().to_path_buf(),
            state: Arc::clone(&state),
            blobs,
            layout,
            started: Instant::now(),
            roster: Roster::of(participants.iter().map(|p| p.public_key)),
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
            status_board: watch::Sender::new(StatusSnapshot::default()),
            completed_rounds: None,
            completed_read_at: Instant::now(),
            evaluations_arrived: false,
            board: watch::Sender::new(Board::default()),
            model_path: folder.model_path(),
            fatal: None,
            ledger,
            logged_enrolments,
            key,
            charter,
            config,
            secure: None,
            secure_summed: None,
            secure_board: watch::Sender::new(0),
            removed: removed.clone(),
            data_roots,
            replayer,
            fraudulent,
            replaying: BTreeSet::new(),
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
                finished: Some(Ending::from_record(ended)),
                ..Board::default()
            });
            driver.publish_status();
            return Ok(driver);
        }
        driver.board.send_modify(|b| b.fit = driver.config.fit());
        driver.process_actions()?;
        if !rounds {
            let members = active().map(|p| ParticipantId(p.id));
            driver.start_buffered(&checkpoint, members, paused)?;
            driver.publish_status();
            return Ok(driver);
        }
        // A secure round's protocol state lives only in memory: after a restart the open
        // round runs its protocol again from the start (nothing of it was recorded).
        if let Some(o) = open.filter(|_| !driver.config.training.secure_aggregation) {
            driver.replay(o.round, o.attempt)?;
        }
        // Members removed while the round was open (by a steward, or for fraud) were among
        // its selected: it must not wait for them again.
        if let Some(o) = open {
            let gone: Vec<u64> = o
                .selected
                .iter()
                .filter(|p| driver.removed.contains(p))
                .copied()
                .collect();
            for p in gone {
                driver.feed(Event::Leave(ParticipantId(p)));
            }
            driver.process_actions()?;
        }
        driver.publish_status();
        Ok(driver)
    }

    /// Feeds the open round's acknowledged updates to the core again, as they were stored.
    fn replay(&mut self, round: u64, attempt: u32) -> Result<(), ServerError> {
        let updates = self.state.updates(round, attempt)?;
        let count = updates.len();
        for u in updates {
            let result = self.stored_result(&u)?;
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

    /// An acknowledged update as the store keeps it.
    fn stored_result(&self, u: &UpdateRecord) -> Result<FitResult, ServerError> {
        Ok(FitResult {
            participant: ParticipantId(u.participant),
            params: Encoding::F32.decode(&self.layout, &self.blobs.get(&u.blob)?)?,
            num_samples: u.num_samples,
            train_loss: u.train_loss,
        })
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
            update_encoding: self.config.training.update_encoding.to_string(),
            pretrained: self
                .config
                .pretrained
                .as_ref()
                .map(|p| serde_json::to_string(p).unwrap_or_default())
                .unwrap_or_default(),
            reproducible: m.reproducible,
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

    /// When the timer must next wake the core (or close a secure-aggregation step, or take
    /// back a buffered member's overdue work).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let core = self.core.poll_timeout().map(|t| self.deadline_instant(t));
        let step = self.secure.as_ref().and_then(SecureRound::deadline);
        let work = self
            .buffered
            .as_ref()
            .and_then(buffered::BufferedRun::next_deadline);
        [core, step, work].into_iter().flatten().min()
    }

    /// Lets the core see that time passed.
    pub(crate) fn on_timer(&mut self) -> Result<(), ServerError> {
        self.advance_secure()?;
        let now = self.now();
        self.timed(|core| core.handle_timeout(now));
        self.process_actions()?;
        self.expire_buffered()
    }

    /// A change of membership or of the steward's pause, given to whichever core runs the
    /// federation.
    fn feed(&mut self, event: Event) {
        if self.buffered.is_none() {
            let now = self.now();
            let _ = self.timed(|core| core.handle_event(now, event));
            return;
        }
        match event {
            Event::Leave(p) => self.buffered_leave(p),
            Event::Enrol(p) => self.run_mut().enrol(p),
            Event::Pause => self.run_mut().set_paused(true),
            Event::Resume => self.run_mut().set_paused(false),
            _ => {}
        }
    }

    /// Whether a steward paused the federation.
    pub(crate) fn is_paused(&self) -> bool {
        match &self.buffered {
            Some(run) => run.is_paused(),
            None => self.core.is_paused(),
        }
    }

    /// Results held for the open round, or for the next version.
    pub(crate) fn received(&self) -> usize {
        match &self.buffered {
            Some(run) => run.progress().1,
            None => self.core.received(),
        }
    }

    /// Rounds (versions) completed.
    pub(crate) fn versions_done(&self) -> u64 {
        match &self.buffered {
            Some(run) => run.version(),
            None => self.core.completed(),
        }
    }

    /// The coordinator's public key (hex): it signs tree heads and update promises.
    pub(crate) fn coordinator_key(&self) -> String {
        self.key.public().to_string()
    }

    /// Why the federation failed, if it did: the core's error, or the ending recorded by an
    /// earlier run.
    fn failure(&self) -> Option<String> {
        self.core.error().map(|e| e.to_string()).or_else(|| {
            let board = self.board.borrow();
            board.finished.as_ref()?.failure().map(str::to_string)
        })
    }

    /// The enrolled keys, for the call gate.
    pub(crate) fn roster(&self) -> Roster {
        self.roster.clone()
    }

    /// SHA-256 of the charter in force.
    pub(crate) fn charter_hash(&self) -> String {
        self.charter.hash()
    }

    /// Runs a core call that may close a round, and notes how long it took: the core
    /// aggregates inside it, and has no clock of its own to say so.
    fn timed<T>(&mut self, call: impl FnOnce(&mut Coordinator) -> T) -> T {
        let started = Instant::now();
        let out = call(&mut self.core);
        self.core_busy = started.elapsed();
        out
    }

    fn storage_failed(&mut self, e: ServerError) -> Rejection {
        tracing::error!(error = %e, "storage failed; the coordinator must restart from disk");
        let why = e.to_string();
        self.fatal = Some(why.clone());
        self.board.send_modify(|b| b.stopped = Some(why));
        Rejection::unavailable(format!("the coordinator could not store state: {e}"))
    }

    /// Stops the driver after a failed write outside any call (at a deadline): every later
    /// job is refused until the coordinator restarts from disk.
    pub(crate) fn stop(&mut self, e: ServerError) {
        let _ = self.storage_failed(e);
    }
}

fn publish(global: &ParamSet) -> Published {
    Published {
        digest: global.digest(),
        bytes: Arc::new(Encoding::F32.encode(global)),
        change: None,
    }
}

/// [`publish`], with the change from `base` that a lossy download encoding sends.
fn publish_step(global: &ParamSet, base: Digest, change: Option<Arc<Vec<u8>>>) -> Published {
    Published {
        change: change.map(|c| (base, c)),
        ..publish(global)
    }
}

/// The hash of the charter the ledger says is in force: the genesis charter, as amended.
fn charter_in_force(entries: &[Entry]) -> Option<String> {
    entries.iter().rev().find_map(|e| match e {
        Entry::Genesis { charter, .. } | Entry::Amendment { charter, .. } => {
            Some(hex::encode(Sha256::digest(charter.as_bytes())))
        }
        _ => None,
    })
}

/// A buffered federation runs only under a charter with the same buffered rule, and a
/// synchronous one only under a charter without one.
fn check_buffered(charter: &Charter, config: &FederationConfig) -> Result<(), ServerError> {
    if charter.buffered != config.training.buffered {
        let show = |r: Option<harambee_charter::BufferedRule>| {
            r.map_or("synchronous rounds".to_string(), |r| format!("{r:?}"))
        };
        return Err(ServerError::Config(format!(
            "the charter sets {} but federation.toml sets {}; amend the charter or fix the settings",
            show(charter.buffered),
            show(config.training.buffered)
        )));
    }
    if charter.buffered.is_some() && charter.mode == harambee_charter::Mode::Community {
        return Err(ServerError::Config(
            "buffered aggregation runs federated learning; community compute runs DiLoCo rounds"
                .into(),
        ));
    }
    Ok(())
}

/// Under the charter's verification rule (the same as federation.toml's): the replayer for
/// the spot checks, on the public corpus the settings name. Verification replays exact
/// updates of synchronous rounds, so it runs without lossy update encodings, secure
/// aggregation or buffering.
fn replayer_for(
    charter: &Charter,
    config: &FederationConfig,
) -> Result<Option<Arc<crate::Replayer>>, ServerError> {
    let training = &config.training;
    if charter.verification != training.verification {
        let show = |r: Option<harambee_charter::VerificationRule>| {
            r.map_or("no verification".to_string(), |r| format!("{r:?}"))
        };
        return Err(ServerError::Config(format!(
            "the charter sets {} but federation.toml sets {}; amend the charter or fix the settings",
            show(charter.verification),
            show(training.verification)
        )));
    }
    if training.verification.is_none() {
        return Ok(None);
    }
    let bad = |m: &str| Err(ServerError::Config(m.to_string()));
    if !config.model.reproducible {
        return bad(
            "verification needs the model trained reproducibly: set model.reproducible = true",
        );
    }
    if !training.update_encoding.is_exact()
        || training.secure_aggregation
        || training.buffered.is_some()
    {
        return bad(
            "verification replays each worker's exact update in a synchronous round: it runs without a lossy update_encoding, secure aggregation or buffering",
        );
    }
    let Some(dir) = &training.replay_data else {
        return bad(
            "verification needs training.replay_data: the public corpus, to replay updates on",
        );
    };
    let replayer = crate::Replayer::new(&config.model, dir)
        .map_err(|e| ServerError::Config(format!("training.replay_data {}: {e}", dir.display())))?;
    Ok(Some(Arc::new(replayer)))
}

/// The charter's update and download encodings are the ones the coordinator uses.
fn check_encodings(charter: &Charter, config: &FederationConfig) -> Result<(), ServerError> {
    let training = &config.training;
    for (field, chartered, ours) in [
        (
            "update_encoding",
            &charter.update_encoding,
            training.update_encoding,
        ),
        (
            "download_encoding",
            &charter.download_encoding,
            training.download_encoding,
        ),
    ] {
        let chartered: UpdateCodec = match chartered {
            Some(name) => name
                .parse()
                .map_err(|e| ServerError::Config(format!("the charter's {field}: {e}")))?,
            None => UpdateCodec::F32,
        };
        if chartered != ours {
            return Err(ServerError::Config(format!(
                "the charter sets {field} {chartered} but federation.toml uses {ours}; amend the charter or fix the settings"
            )));
        }
    }
    Ok(())
}

/// A pretrained federation runs only with the base its charter pins.
fn check_base_model(charter: &Charter, config: &FederationConfig) -> Result<(), ServerError> {
    let pinned = charter.base_model.as_ref().map(|b| b.sha256.as_str());
    let ours = config.pretrained.as_ref().map(|p| p.base_sha256.as_str());
    if pinned != ours {
        return Err(ServerError::Config(format!(
            "the charter pins base model {} but federation.toml fine-tunes {}; amend the charter or fix the settings",
            pinned.unwrap_or("(none)"),
            ours.unwrap_or("(none)")
        )));
    }
    Ok(())
}
