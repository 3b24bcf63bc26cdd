use std::sync::Arc;
use std::time::Instant;

use harambee_coordinator::{
    Action, Coordinator, CoordinatorConfig, Event, EventOutcome, OpenRound, Tick,
};
use harambee_learn::{Evaluation, Partition, Trainer, trainer_for};
use harambee_params::{Digest, Encoding, ParamSet};
use harambee_strategy::{Failure, FailureReason, FitConfig, FitResult, ParticipantId};
use rayon::prelude::*;

use crate::metrics::{RoundRecord, Summary, peak_rss_bytes};
use crate::{SimConfig, SimError, Workload};

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
        let train = &workload.split.train;
        let trainer: Arc<dyn Trainer> = trainer_for(
            config.model,
            train,
            config.optimizer,
            config.embedding_dim,
            config.burn_only,
        )?
        .into();
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
        };
        let strategy = config.strategy.build(config.fraction, 1, fit)?;
        let core_config = CoordinatorConfig {
            seed: config.seed,
            rounds: config.rounds,
            min_participants: config.clients,
            quorum: config.quorum.max(1),
            // Virtual time: the deadline only orders events, it is never waited for.
            round_timeout_ms: 60_000,
            max_round_retries: 10,
        };
        let core = Coordinator::new(core_config, strategy, trainer.init(config.seed));
        Ok(Self {
            config,
            workload,
            trainer,
            participants,
            core,
            created: process_start,
            startup_s: None,
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
        let mut now = Tick(0);
        for p in 0..self.participants.len() {
            let _ = self
                .core
                .handle_event(now, Event::Enrol(ParticipantId(p as u64)));
        }
        let model_bytes = (self.core.global().len() * Encoding::F32.bytes_per_value()) as u64;
        let (mut rounds, mut rounds_to_target) = (0u64, None);
        let (mut final_accuracy, mut best_accuracy) = (0.0f64, 0.0f64);
        let mut last_eval: Option<Evaluation> = None;
        let mut round_seconds = Vec::new();
        let mut next = self.next_open_round()?.0;
        let (mut dropped, mut retries) = (0usize, 0u32);
        let mut round_start = Instant::now();
        while let Some(open) = next.take() {
            if open.attempt == 0 {
                round_start = Instant::now();
                (dropped, retries) = (0, 0);
            }
            self.startup_s
                .get_or_insert_with(|| self.created.elapsed().as_secs_f64());
            observer.round_opened(open.round, open.participants.len());
            let outcomes = self.train_round(&open, observer);
            let train_s = round_start.elapsed().as_secs_f64();
            dropped += open.participants.len() - outcomes.len();

            let aggregate_start = Instant::now();
            let mut accepted = 0usize;
            let mut train_loss = 0.0f64;
            for (participant, outcome) in outcomes {
                let event = match outcome {
                    Ok((result, digest)) => {
                        train_loss += f64::from(result.train_loss);
                        Event::Result {
                            round: open.round,
                            result,
                            digest,
                        }
                    }
                    Err(reason) => {
                        tracing::warn!(%participant, ?reason, "participant failed");
                        Event::Failed {
                            round: open.round,
                            failure: Failure {
                                participant,
                                reason,
                            },
                        }
                    }
                };
                if self.core.handle_event(now, event) == EventOutcome::Accepted {
                    accepted += 1;
                }
            }
            if self.core.open_round() == Some(open.round) && dropped > 0 {
                // Some never answered: let the deadline pass in virtual time.
                now = open.deadline;
                self.core.handle_timeout(now);
            }
            let aggregate_s = aggregate_start.elapsed().as_secs_f64();
            let closed;
            (next, closed) = self.next_open_round()?;
            if !closed {
                retries += 1;
                continue;
            }
            rounds = open.round;

            let last_round = open.round >= self.config.rounds;
            let evaluate = last_round || open.round % self.config.eval_every.max(1) == 0;
            let eval_start = Instant::now();
            let evaluation = if evaluate {
                Some(
                    self.trainer
                        .evaluate_all(self.core.global(), &self.workload.split.test)?,
                )
            } else {
                None
            };
            let eval_s = eval_start.elapsed().as_secs_f64();
            if let Some(e) = &evaluation {
                final_accuracy = e.accuracy;
                best_accuracy = best_accuracy.max(e.accuracy);
                if rounds_to_target.is_none()
                    && self.config.target_accuracy.is_some_and(|t| e.accuracy >= t)
                {
                    rounds_to_target = Some(open.round);
                }
            }
            let record = RoundRecord {
                round: open.round,
                accuracy: evaluation.as_ref().map(|e| e.accuracy),
                loss: evaluation.as_ref().map(|e| e.loss),
                train_loss: train_loss / accepted.max(1) as f64,
                wall_s: round_start.elapsed().as_secs_f64(),
                train_s,
                aggregate_s,
                eval_s,
                bytes_up: accepted as u64 * model_bytes,
                bytes_down: open.participants.len() as u64 * model_bytes,
                participants: accepted,
                dropped,
                retries,
            };
            round_seconds.push(record.wall_s);
            tracing::debug!(
                round = record.round,
                accuracy = ?record.accuracy,
                participants = record.participants,
                wall_s = record.wall_s,
                "round closed"
            );
            observer.round_closed(&record);
            if evaluation.is_some() {
                last_eval = evaluation;
            }
            if rounds_to_target.is_some() {
                break;
            }
        }
        if let Some(e) = self.core.error() {
            return Err(SimError::Core(e.clone()));
        }
        let names = &self.workload.split.test.class_names;
        Ok(Summary {
            rounds,
            rounds_to_target,
            target_accuracy: self.config.target_accuracy,
            final_accuracy,
            best_accuracy,
            total_s: self.created.elapsed().as_secs_f64(),
            startup_s: self.startup_s.unwrap_or(0.0),
            mean_round_s: round_seconds.iter().sum::<f64>() / round_seconds.len().max(1) as f64,
            peak_rss_bytes: peak_rss_bytes(),
            per_class: last_eval
                .map(|e| {
                    e.per_class
                        .iter()
                        .zip(names)
                        .map(|((c, t), n)| (n.clone(), *c, *t))
                        .collect()
                })
                .unwrap_or_default(),
            final_digest: self.core.global().digest().to_hex(),
            config: self.config.clone(),
        })
    }

    /// Trains the round's participants in parallel; results come back in participant order.
    fn train_round(
        &self,
        open: &OpenRound,
        observer: &mut dyn Observer,
    ) -> Vec<(ParticipantId, Trained)> {
        // Participants that vanish this attempt never train and never answer.
        let present: Vec<ParticipantId> = open
            .participants
            .iter()
            .copied()
            .filter(|p| !self.drops_out(open, *p))
            .collect();
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
        self.trainer
            .train(
                &open.global,
                &self.workload.split.train,
                indices,
                &open.config,
                seed,
            )
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
            .map_err(|e| FailureReason::Refused(e.to_string()))
    }

    /// Drains the core's actions: the next round (or attempt) to run, if one opened, and
    /// whether a round closed.
    fn next_open_round(&mut self) -> Result<(Option<OpenRound>, bool), SimError> {
        let (mut next, mut closed) = (None, false);
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::OpenRound(open) => next = Some(open),
                Action::CloseRound(_) => closed = true,
                Action::RoundRetried { .. } | Action::Finished { .. } => {}
            }
        }
        match self.core.error() {
            Some(e) => Err(SimError::Core(e.clone())),
            None => Ok((next, closed)),
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

/// A participant's result with its digest, or why it failed.
type Trained = Result<(FitResult, Digest), FailureReason>;

/// A distinct, reproducible seed per (run, round, participant).
fn participant_seed(seed: u64, round: u64, participant: u64) -> u64 {
    let mut z = seed ^ round.rotate_left(21) ^ participant.rotate_left(42) ^ 0x5851_F42D_4C95_7F2D;
    z = (z ^ (z >> 33)).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    z ^ (z >> 33)
}
