use std::sync::Arc;
use std::time::Instant;

use harambee_coordinator::{
    Action, Coordinator, CoordinatorConfig, Event, EventOutcome, OpenRound, Tick,
};
use std::sync::Mutex;

use harambee_learn::{
    Dataset, Evaluation, InnerState, Partition, Trainer, participant_seed, trainer_for,
};
use harambee_params::{Digest, Encoding, ParamSet};
use harambee_strategy::{Failure, FailureReason, FitConfig, FitResult, ParticipantId};
use rayon::prelude::*;

use crate::metrics::{RoundRecord, Summary, peak_rss_bytes};
use crate::{DatasetName, SimConfig, SimError, Workload};
use harambee_learn::multilingual::LanguageLoss;

mod buffered;

pub use buffered::FedBuffSettings;

/// Sees each round as it completes (a progress display, a metrics file).
pub trait Observer {
    /// A round opened with `participants` selected.
    fn round_opened(&mut self, _round: u64, _participants: usize) {}
    /// One participant finished local training.
    fn participant_trained(&mut self) {}
    /// A round closed.
    fn round_closed(&mut self, record: &RoundRecord);
}

impl<F: FnMut(&RoundRecord)> Observer for F {
    fn round_closed(&mut self, record: &RoundRecord) {
        self(record)
    }
}

/// A participant's local-only model, for comparison with the federation's.
#[derive(Debug, Clone)]
pub struct LocalBaseline {
    /// The participant.
    pub participant: ParticipantId,
    /// Classes it holds (names).
    pub classes: Vec<String>,
    /// Its local-only model on the whole test set.
    pub evaluation: Evaluation,
}

/// A federated simulation: the coordinator core, a trainer, and virtual participants that are
/// index sets into one shared training set.
pub struct Simulation {
    config: SimConfig,
    workload: Workload,
    trainer: Arc<dyn Trainer>,
    participants: Vec<Vec<usize>>,
    core: Coordinator,
    created: Instant,
    startup_s: Option<f64>,
    /// Virtual time: moves only when a deadline has to pass.
    now: Tick,
    /// The most recent participant failure, to explain a stopped federation.
    last_failure: Option<String>,
    /// Which participants are malicious.
    attacker: Vec<bool>,
    /// The training set with flipped labels, for label-flipping attackers.
    flipped: Option<Arc<Dataset>>,
    /// Each participant's local optimiser state, kept between its rounds as a DiLoCo worker
    /// keeps its inner AdamW moments (trainers that start afresh each round ignore it).
    inner: Vec<Mutex<Option<InnerState>>>,
    /// Per participant: what its compressed updates left out so far (error feedback), empty
    /// until it first trains under a lossy encoding.
    residuals: Vec<Mutex<Vec<f32>>>,
    /// Simulated time: each participant's speed and links, and how many results a round
    /// waits for (it selects more with over-selection).
    clock: Option<Clock>,
}

/// The simulated clock of a run with [`SimConfig::timing`].
struct Clock {
    timing: crate::Timing,
    profiles: Vec<crate::Profile>,
    /// Results a round needs: what it would select without over-selection.
    wanted: usize,
    /// Simulated seconds since the first round opened.
    now_s: f64,
}

impl Simulation {
    /// Partitions the data and prepares the coordinator; nothing trains yet.
    pub fn new(config: SimConfig, workload: Workload) -> Result<Self, SimError> {
        Self::with_start(config, workload, Instant::now())
    }

    /// As [`new`](Self::new), counting start-up time from `process_start`.
    pub fn with_start(
        config: SimConfig,
        workload: Workload,
        process_start: Instant,
    ) -> Result<Self, SimError> {
        config.validate()?;
        let trainer: Arc<dyn Trainer> = trainer_for(
            config.model,
            &workload.split.train,
            config.optimizer,
            config.embedding_dim,
            config.burn_only,
        )?
        .into();
        Self::with_trainer(config, workload, trainer, process_start)
    }

    /// As [`with_start`](Self::with_start), training `trainer` rather than `config.model`:
    /// a model built outside this crate (a pretrained language model's adapters, say) on
    /// data it prepared. `config.model` and `config.dataset` are then not used.
    pub fn with_trainer(
        config: SimConfig,
        workload: Workload,
        trainer: Arc<dyn Trainer>,
        process_start: Instant,
    ) -> Result<Self, SimError> {
        config.validate_training()?;
        let train = &workload.split.train;
        let participants = config.partition.split(train, config.clients, config.seed)?;
        if let Some(empty) = participants.iter().position(Vec::is_empty) {
            return Err(SimError::InvalidSetting(format!(
                "participant {empty} received no examples under {}; use fewer clients or a larger alpha",
                config.partition
            )));
        }
        let fit = FitConfig {
            epochs: config.epochs,
            batch_size: config.batch,
            learning_rate: config.lr,
            proximal_mu: 0.0,
            local_steps: config.local_steps,
        };
        // Over-selection asks the core for more participants than a round needs; the clock
        // then takes the first that arrive.
        let over_select = config.timing.as_ref().map_or(1.0, |t| t.over_select);
        let clock = config.timing.as_ref().map(|timing| Clock {
            timing: timing.clone(),
            profiles: crate::Profile::draw(timing, config.clients, config.seed),
            wanted: 0,
            now_s: 0.0,
        });
        let wanted = config
            .strategy
            .build(config.fraction, 1, fit.clone())?
            .sample_size(config.clients);
        let strategy = config
            .strategy
            .build((config.fraction * over_select).min(1.0), 1, fit)?;
        let core_config = CoordinatorConfig {
            seed: config.seed,
            rounds: config.rounds,
            min_participants: config.clients,
            quorum: config.quorum.max(1),
            // Virtual time: the deadline only orders events, it is never waited for.
            round_timeout_ms: 60_000,
            max_round_retries: 10,
            pause_when_quorum_missed: false,
            download: config.download_encoding,
        };
        let core = Coordinator::new(core_config, strategy, trainer.init(config.seed));
        let attacker =
            crate::attack::choose_attackers(config.clients, config.attackers, config.seed);
        let flipped = config
            .attack
            .filter(|a| a.flips_labels())
            .map(|_| Arc::new(flip_labels(train)));
        Ok(Self {
            inner: participants.iter().map(|_| Mutex::new(None)).collect(),
            residuals: participants.iter().map(|_| Mutex::default()).collect(),
            clock: clock.map(|c| Clock { wanted, ..c }),
            attacker,
            flipped,
            config,
            workload,
            trainer,
            participants,
            core,
            created: process_start,
            startup_s: None,
            now: Tick(0),
            last_failure: None,
        })
    }

    /// The participants' example indices.
    pub fn participants(&self) -> &[Vec<usize>] {
        &self.participants
    }

    /// The data in use.
    pub fn workload(&self) -> &Workload {
        &self.workload
    }

    /// The current global parameters.
    pub fn global(&self) -> &ParamSet {
        self.core.global()
    }

    /// Runs rounds until the configured number, or the target accuracy, is reached.
    pub fn run(&mut self, observer: &mut dyn Observer) -> Result<Summary, SimError> {
        if let Some(settings) = self.config.fedbuff.clone() {
            self.startup_s
                .get_or_insert_with(|| self.created.elapsed().as_secs_f64());
            return self.run_buffered(&settings, observer);
        }
        for p in 0..self.participants.len() {
            let _ = self
                .core
                .handle_event(self.now, Event::Enrol(ParticipantId(p as u64)));
        }
        let mut progress = Progress::default();
        let mut next = self.drain()?.next;
        let mut round = RoundTally::new();
        while let Some(open) = next.take() {
            self.startup_s
                .get_or_insert_with(|| self.created.elapsed().as_secs_f64());
            if open.attempt == 0 {
                round = RoundTally::new();
            }
            let drained = self.play_attempt(&open, &mut round, observer)?;
            next = drained.next;
            if !drained.closed {
                round.retries += 1;
                continue;
            }
            let (evaluation, eval_s) = self.evaluate_if_due(open.round)?;
            let update_bytes = self
                .config
                .update_encoding
                .encoded_len(self.core.global().len()) as u64;
            let mut record = round.record(
                &open,
                (self.model_bytes(), update_bytes),
                evaluation.as_ref(),
                eval_s,
            );
            record.sim_clock_s = self.clock_s();
            tracing::debug!(round = record.round, accuracy = ?record.accuracy, participants = record.participants, wall_s = record.wall_s, "round closed");
            progress.add(&record, evaluation, self.config.target_accuracy);
            observer.round_closed(&record);
            if progress.rounds_to_target.is_some() {
                break;
            }
        }
        if let Some(e) = self.core.error() {
            return Err(self.stopped(e.clone()));
        }
        let global = Arc::clone(self.core.global());
        let mut summary = self.summary(progress, &global);
        summary.per_language = self.per_language()?;
        Ok(summary)
    }

    /// For the multilingual language model: the final model's bits per character on each
    /// language's held-out text.
    fn per_language(&self) -> Result<Vec<LanguageLoss>, SimError> {
        match (&self.workload.languages, self.config.dataset) {
            (Some(languages), DatasetName::UdhrText) => {
                Ok(harambee_learn::multilingual::per_language(
                    self.trainer.as_ref(),
                    self.core.global(),
                    &self.workload.split.test,
                    languages,
                )?)
            }
            _ => Ok(Vec::new()),
        }
    }

    /// One attempt at a round: train who is present, hand the results to the core, and let
    /// the deadline pass (in virtual time) when someone never answered.
    fn play_attempt(
        &mut self,
        open: &OpenRound,
        round: &mut RoundTally,
        observer: &mut dyn Observer,
    ) -> Result<Drained, SimError> {
        observer.round_opened(open.round, open.participants.len());
        let mut outcomes = self.train_round(open, observer);
        if let Some(attack) = self.config.attack {
            let mut results: Vec<(ParticipantId, &mut ParamSet)> = outcomes
                .iter_mut()
                .filter_map(|(p, o)| o.as_mut().ok().map(|(r, _)| (*p, &mut r.params)))
                .collect();
            let seed = participant_seed(
                self.config.seed ^ 0xA77A,
                open.round,
                u64::from(open.attempt),
            );
            crate::attack::corrupt(attack, &open.global, &mut results, &self.attacker, seed);
            for (p, outcome) in &mut outcomes {
                if let Ok((result, digest)) = outcome
                    && self.attacker.get(p.0 as usize).copied().unwrap_or(false)
                {
                    *digest = result.params.digest();
                }
            }
        }
        round.train_s = round.started.elapsed().as_secs_f64();
        round.dropped += open.participants.len() - outcomes.len();
        let aggregate_start = Instant::now();
        (round.accepted, round.train_loss) = (0, 0.0);
        if self.config.secure_aggregation {
            return self.play_secure(open, outcomes, round, aggregate_start);
        }
        for (participant, outcome) in outcomes {
            let event = match outcome {
                Ok((result, digest)) => {
                    round.train_loss += f64::from(result.train_loss);
                    Event::Result {
                        round: open.round,
                        result,
                        digest,
                    }
                }
                Err(reason) => {
                    // Late by the simulated clock is the round's rule, not a failure to report.
                    if reason != FailureReason::Late {
                        tracing::warn!(%participant, ?reason, "participant failed");
                        self.last_failure = Some(format!("{participant} failed: {reason:?}"));
                    }
                    Event::Failed {
                        round: open.round,
                        failure: Failure {
                            participant,
                            reason,
                        },
                    }
                }
            };
            match self.core.handle_event(self.now, event) {
                EventOutcome::Accepted => round.accepted += 1,
                EventOutcome::Refused(refusal) => {
                    tracing::warn!(%participant, %refusal, "result refused");
                    self.last_failure =
                        Some(format!("{participant}'s result was refused: {refusal}"));
                }
                _ => {}
            }
        }
        let drained = self.end_attempt(open)?;
        round.aggregate_s += aggregate_start.elapsed().as_secs_f64();
        Ok(drained)
    }

    /// The rest of an attempt under secure aggregation: the participants that trained run the
    /// protocol with the coordinator, and the core gets only the sum.
    fn play_secure(
        &mut self,
        open: &OpenRound,
        outcomes: Vec<(ParticipantId, Trained)>,
        round: &mut RoundTally,
        aggregate_start: Instant,
    ) -> Result<Drained, SimError> {
        let mut updates = Vec::with_capacity(outcomes.len());
        for (participant, outcome) in outcomes {
            match outcome {
                Ok((result, _)) => {
                    round.train_loss += f64::from(result.train_loss);
                    updates.push((participant, result.params.sub(&open.global)?));
                }
                Err(reason) => {
                    tracing::warn!(%participant, ?reason, "participant failed");
                    self.last_failure = Some(format!("{participant} failed: {reason:?}"));
                }
            }
        }
        let federation = self.config.seed.to_le_bytes();
        match crate::secure_sum(open, updates, self.config.secagg_range, &federation) {
            Ok((sum, cost)) => {
                if cost.clipped > 0 {
                    tracing::warn!(
                        clipped = cost.clipped,
                        "coordinates clipped to the fixed-point range"
                    );
                }
                round.accepted = sum.contributors.len();
                round.secagg = cost;
                let event = Event::SecureSum {
                    round: open.round,
                    sum,
                };
                if let EventOutcome::Refused(refusal) = self.core.handle_event(self.now, event) {
                    self.last_failure = Some(format!("the secure sum was refused: {refusal}"));
                }
            }
            // Too few left to unmask: no sum, nothing revealed; the deadline passes and the
            // core opens the round again.
            Err(SimError::SecAgg(e)) => {
                tracing::warn!(round = open.round, error = %e, "secure aggregation failed");
                self.last_failure = Some(format!("secure aggregation failed: {e}"));
            }
            Err(e) => return Err(e),
        }
        let drained = self.end_attempt(open)?;
        round.aggregate_s += aggregate_start.elapsed().as_secs_f64();
        Ok(drained)
    }

    /// What the core did with the attempt's inputs; if the attempt is still open (someone
    /// never answered, or secure aggregation gave no sum) its deadline passes in virtual time.
    fn end_attempt(&mut self, open: &OpenRound) -> Result<Drained, SimError> {
        let drained = self.drain()?;
        if drained.closed || drained.retried {
            return Ok(drained);
        }
        self.now = open.deadline;
        self.core.handle_timeout(self.now);
        self.drain()
    }

    /// Evaluates the global model on the test set when the round calls for it.
    fn evaluate_if_due(&self, round: u64) -> Result<(Option<Evaluation>, f64), SimError> {
        let due =
            round >= self.config.rounds || round.is_multiple_of(self.config.eval_every.max(1));
        let start = Instant::now();
        let evaluation = if due {
            Some(
                self.trainer
                    .evaluate_all(self.core.global(), &self.workload.split.test)?,
            )
        } else {
            None
        };
        Ok((evaluation, start.elapsed().as_secs_f64()))
    }

    /// What one member downloads: the whole model at first, then each round's change in the
    /// download encoding (every member holds the previous model: the simulator keeps it).
    fn model_bytes(&self) -> u64 {
        let values = self.core.global().len();
        if self.core.completed() == 0 {
            (values * Encoding::F32.bytes_per_value()) as u64
        } else {
            self.config.download_encoding.encoded_len(values) as u64
        }
    }

    fn summary(&self, progress: Progress, global: &ParamSet) -> Summary {
        let names = &self.workload.split.test.class_names;
        // A language model's per-class figures are per next symbol; they name the classes
        // only where the alphabet is the label set (the plays), not where labels are
        // languages (udhr-text, which reports per language instead).
        let per_class = progress
            .last_eval
            .filter(|e| e.per_class.len() == names.len())
            .map(|e| {
                e.per_class
                    .iter()
                    .zip(names)
                    .map(|((c, t), n)| (n.clone(), *c, *t))
                    .collect()
            })
            .unwrap_or_default();
        Summary {
            rounds: progress.rounds,
            rounds_to_target: progress.rounds_to_target,
            target_accuracy: self.config.target_accuracy,
            final_accuracy: progress.final_accuracy,
            best_accuracy: progress.best_accuracy,
            total_s: self.created.elapsed().as_secs_f64(),
            startup_s: self.startup_s.unwrap_or(0.0),
            mean_round_s: progress.round_seconds / progress.rounds.max(1) as f64,
            sim_time_to_target_s: progress
                .sim_time_to_target_s
                .filter(|_| self.clock.is_some()),
            sim_time_s: progress.sim_time_s,
            peak_rss_bytes: peak_rss_bytes(),
            per_class,
            per_language: Vec::new(),
            final_digest: global.digest().to_hex(),
            config: self.config.clone(),
        }
    }

    /// Under simulated time: which of the round's participants arrive in time, by their
    /// speeds and links. Moves the clock to the attempt's close and returns `None` when it
    /// runs without a clock.
    fn arrivals(&mut self, open: &OpenRound, present: &[ParticipantId]) -> Option<Vec<u64>> {
        let down = self.model_bytes();
        let up = self
            .config
            .update_encoding
            .encoded_len(self.core.global().len()) as u64;
        let (epochs, steps, batch) = (
            u64::from(open.config.epochs.max(1)),
            u64::from(open.config.local_steps),
            u64::from(open.config.batch_size.max(1)),
        );
        let examples = |p: &ParticipantId| {
            let held = self.participants[p.0 as usize].len() as u64;
            if steps > 0 {
                steps * batch
            } else {
                epochs * held
            }
        };
        let clock = self.clock.as_ref()?;
        let arrivals = present
            .iter()
            .map(|p| {
                let profile = &clock.profiles[p.0 as usize];
                (p.0, profile.seconds(down, examples(p), up))
            })
            .collect();
        let (taken, closes) = crate::take_first(arrivals, clock.wanted, clock.timing.deadline_s);
        if let Some(clock) = self.clock.as_mut() {
            clock.now_s += closes;
        }
        Some(taken)
    }

    /// Simulated seconds so far (0 without a clock).
    fn clock_s(&self) -> f64 {
        self.clock.as_ref().map_or(0.0, |c| c.now_s)
    }

    /// Sets the simulated clock (FedBuff keeps its own event time).
    fn set_clock(&mut self, seconds: f64) {
        if let Some(clock) = self.clock.as_mut() {
            clock.now_s = seconds;
        }
    }

    /// How long `p` takes, in simulated seconds, to download the model, train as `fit` says
    /// and upload its update (1 s without a clock).
    fn arrival_seconds(&self, p: ParticipantId, fit: &FitConfig) -> f64 {
        let Some(clock) = &self.clock else {
            return 1.0;
        };
        let held = self.participants[p.0 as usize].len() as u64;
        let examples = if fit.local_steps > 0 {
            u64::from(fit.local_steps) * u64::from(fit.batch_size.max(1))
        } else {
            u64::from(fit.epochs.max(1)) * held
        };
        let up = self
            .config
            .update_encoding
            .encoded_len(self.core.global().len()) as u64;
        clock.profiles[p.0 as usize].seconds(self.model_bytes(), examples, up)
    }

    /// The local training every participant is asked for.
    fn fit_config(&self) -> FitConfig {
        FitConfig {
            epochs: self.config.epochs,
            batch_size: self.config.batch,
            learning_rate: self.config.lr,
            proximal_mu: 0.0,
            local_steps: self.config.local_steps,
        }
    }

    /// `p`'s local optimiser state, kept between its trainings.
    fn inner_state(&self, p: ParticipantId) -> std::sync::MutexGuard<'_, Option<InnerState>> {
        self.inner[p.0 as usize]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Trains the round's participants in parallel; results come back in participant order.
    /// Under simulated time only those that arrive in time train; the others are late.
    fn train_round(
        &mut self,
        open: &OpenRound,
        observer: &mut dyn Observer,
    ) -> Vec<(ParticipantId, Trained)> {
        // Participants that vanish this attempt never train and never answer.
        let mut present: Vec<ParticipantId> = open
            .participants
            .iter()
            .copied()
            .filter(|p| !self.drops_out(open, *p))
            .collect();
        let mut late = Vec::new();
        if let Some(taken) = self.arrivals(open, &present) {
            (present, late) = present.into_iter().partition(|p| taken.contains(&p.0));
        }
        let mut outcomes = self.train_present(open, &present, observer);
        outcomes.extend(late.into_iter().map(|p| (p, Err(FailureReason::Late))));
        outcomes.sort_by_key(|(p, _)| *p);
        outcomes
    }

    fn train_present(
        &self,
        open: &OpenRound,
        present: &[ParticipantId],
        observer: &mut dyn Observer,
    ) -> Vec<(ParticipantId, Trained)> {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut outcomes = Vec::with_capacity(present.len());
        rayon::in_place_scope(|scope| {
            scope.spawn(|_| {
                let results: Vec<_> = present
                    .par_iter()
                    .map_with(tx, |tx, &p| {
                        let out = self.train_one(open, p);
                        let _ = tx.send(());
                        (p, out)
                    })
                    .collect();
                outcomes = results;
            });
            // Progress from the calling thread while the pool trains.
            for () in rx.iter() {
                observer.participant_trained();
            }
        });
        outcomes
    }

    /// Whether `p` vanishes in this attempt: a draw from the seed, so runs repeat exactly.
    fn drops_out(&self, open: &OpenRound, p: ParticipantId) -> bool {
        if self.config.dropout <= 0.0 {
            return false;
        }
        let draw = participant_seed(
            self.config.seed ^ 0xD0D0,
            open.round * 64 + u64::from(open.attempt),
            p.0,
        );
        let uniform = (draw >> 11) as f64 / (1u64 << 53) as f64;
        uniform < self.config.dropout
    }

    /// Trains one participant and hashes its result on the same worker thread.
    fn train_one(&self, open: &OpenRound, p: ParticipantId) -> Trained {
        let indices = &self.participants[p.0 as usize];
        let seed = participant_seed(self.config.seed, open.round, p.0);
        let data = match &self.flipped {
            Some(flipped) if self.attacker[p.0 as usize] => flipped,
            _ => &self.workload.split.train,
        };
        let mut inner = self.inner[p.0 as usize]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.trainer
            .train_resuming(&open.global, data, indices, &open.config, seed, &mut inner)
            .map_err(|e| FailureReason::Refused(e.to_string()))
            .and_then(|mut o| {
                if !self.config.update_encoding.is_exact() {
                    o.params = self.compressed(p, &open.global, &o.params)?;
                }
                Ok(o)
            })
            .map(|o| {
                let digest = o.params.digest();
                let result = FitResult {
                    participant: p,
                    params: o.params,
                    num_samples: o.num_samples,
                    train_loss: o.mean_loss,
                };
                (result, digest)
            })
    }

    /// `p`'s update as the coordinator would decode it from the federation's encoding, with
    /// `p`'s error feedback carried to its next round.
    fn compressed(
        &self,
        p: ParticipantId,
        base: &ParamSet,
        update: &ParamSet,
    ) -> Result<ParamSet, FailureReason> {
        let mut residual = self.residuals[p.0 as usize]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (_, decoded) = self
            .config
            .update_encoding
            .encode(base, update, Some(&mut residual))
            .map_err(|e| FailureReason::Refused(e.to_string()))?;
        Ok(decoded)
    }

    fn stopped(&self, error: harambee_coordinator::CoreError) -> SimError {
        SimError::Core {
            error,
            last_failure: self.last_failure.clone(),
        }
    }

    /// Drains the core's actions: what opened next, and whether a round closed or was retried.
    fn drain(&mut self) -> Result<Drained, SimError> {
        let mut drained = Drained::default();
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::OpenRound(open) => drained.next = Some(open),
                Action::CloseRound(_) => drained.closed = true,
                Action::RoundRetried { .. } => drained.retried = true,
                Action::Finished { .. } => {}
            }
        }
        match self.core.error() {
            Some(e) => Err(self.stopped(e.clone())),
            None => Ok(drained),
        }
    }

    /// Trains each participant alone for `rounds × epochs` epochs from the initial model and
    /// evaluates it on the whole test set: what a participant gets without the federation.
    pub fn local_baselines(
        &self,
        participants: &[ParticipantId],
    ) -> Result<Vec<LocalBaseline>, SimError> {
        let init = self.trainer.init(self.config.seed);
        let fit = FitConfig {
            epochs: self.config.epochs * self.config.rounds.min(u64::from(u32::MAX)) as u32,
            batch_size: self.config.batch,
            learning_rate: self.config.lr,
            proximal_mu: 0.0,
            local_steps: 0,
        };
        let train = &self.workload.split.train;
        participants
            .par_iter()
            .map(|&p| {
                let indices = &self.participants[p.0 as usize];
                let out = self.trainer.train(
                    &init,
                    train,
                    indices,
                    &fit,
                    participant_seed(self.config.seed, 0, p.0),
                )?;
                let evaluation = self
                    .trainer
                    .evaluate_all(&out.params, &self.workload.split.test)?;
                let mut classes: Vec<String> = indices
                    .iter()
                    .map(|&i| train.class_names[train.labels[i] as usize].clone())
                    .collect();
                classes.sort();
                classes.dedup();
                Ok(LocalBaseline {
                    participant: p,
                    classes,
                    evaluation,
                })
            })
            .collect()
    }

    /// The partition in use.
    pub fn partition(&self) -> Partition {
        self.config.partition
    }
}

/// What the core did after a batch of inputs.
#[derive(Default)]
struct Drained {
    next: Option<OpenRound>,
    closed: bool,
    retried: bool,
}

/// What one round (all its attempts) did and cost so far.
struct RoundTally {
    started: Instant,
    train_s: f64,
    aggregate_s: f64,
    accepted: usize,
    train_loss: f64,
    dropped: usize,
    retries: u32,
    secagg: crate::SecAggCost,
}

impl RoundTally {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            train_s: 0.0,
            aggregate_s: 0.0,
            accepted: 0,
            train_loss: 0.0,
            dropped: 0,
            retries: 0,
            secagg: crate::SecAggCost::default(),
        }
    }

    fn record(
        &self,
        open: &OpenRound,
        (model_bytes, update_bytes): (u64, u64),
        evaluation: Option<&Evaluation>,
        eval_s: f64,
    ) -> RoundRecord {
        RoundRecord {
            round: open.round,
            accuracy: evaluation.map(|e| e.accuracy),
            loss: evaluation.map(|e| e.loss),
            train_loss: self.train_loss / self.accepted.max(1) as f64,
            wall_s: self.started.elapsed().as_secs_f64(),
            train_s: self.train_s,
            aggregate_s: self.aggregate_s,
            eval_s,
            bytes_up: self.accepted as u64 * update_bytes,
            bytes_down: open.participants.len() as u64 * model_bytes,
            participants: self.accepted,
            dropped: self.dropped,
            retries: self.retries,
            secagg_client_s: self.secagg.client_s,
            secagg_server_s: self.secagg.server_s,
            secagg_extra_bytes: self.secagg.extra_bytes_up,
            sim_clock_s: 0.0,
        }
    }
}

/// The run so far, across rounds.
#[derive(Default)]
pub(crate) struct Progress {
    rounds: u64,
    rounds_to_target: Option<u64>,
    sim_time_to_target_s: Option<f64>,
    sim_time_s: f64,
    final_accuracy: f64,
    best_accuracy: f64,
    round_seconds: f64,
    last_eval: Option<Evaluation>,
}

impl Progress {
    fn add(&mut self, record: &RoundRecord, evaluation: Option<Evaluation>, target: Option<f64>) {
        self.rounds = record.round;
        self.round_seconds += record.wall_s;
        self.sim_time_s = record.sim_clock_s;
        if let Some(e) = evaluation {
            self.final_accuracy = e.accuracy;
            self.best_accuracy = self.best_accuracy.max(e.accuracy);
            if self.rounds_to_target.is_none() && target.is_some_and(|t| e.accuracy >= t) {
                self.rounds_to_target = Some(record.round);
                self.sim_time_to_target_s = Some(record.sim_clock_s);
            }
            self.last_eval = Some(e);
        }
    }
}

/// A participant's result with its digest, or why it failed.
type Trained = Result<(FitResult, Digest), FailureReason>;

/// The data set with every label `y` replaced by `C − 1 − y`.
fn flip_labels(data: &Dataset) -> Dataset {
    let classes = data.num_classes() as u32;
    let mut flipped = data.clone();
    flipped
        .labels
        .iter_mut()
        .for_each(|y| *y = classes - 1 - *y);
    flipped
}
