//! FedBuff in the simulator: the coordinator crate's [`Buffered`] core driven by the
//! simulated clock. Participants train whenever they are given work, from whichever version
//! was current then, and their results arrive in the order their speeds and links say; each
//! published version is one record, as a round is in the synchronous simulator.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;
use std::time::Instant;

use harambee_coordinator::{Buffered, BufferedAction, BufferedConfig, BufferedDp};
use harambee_learn::participant_seed;
use harambee_params::ParamSet;
use harambee_strategy::{FitConfig, FitResult, ParticipantId};
use serde::{Deserialize, Serialize};

use super::{Observer, Progress, Simulation};
use crate::{RoundRecord, SimError, Summary};

/// FedBuff's settings in a simulation (`--fedbuff K[:CONCURRENCY[:SERVER_LR]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FedBuffSettings {
    /// Results aggregated per version (K).
    pub buffer: usize,
    /// Participants training at once.
    pub concurrency: usize,
    /// The server learning rate.
    pub server_lr: f32,
}

impl Default for FedBuffSettings {
    fn default() -> Self {
        Self {
            buffer: 10,
            concurrency: 13,
            server_lr: 1.0,
        }
    }
}

impl std::str::FromStr for FedBuffSettings {
    type Err = SimError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            SimError::InvalidSetting(format!(
                "--fedbuff {s}: expected K[:CONCURRENCY[:SERVER_LR]], e.g. 10:13:1.0"
            ))
        };
        let mut parts = s.split(':');
        let mut settings = Self::default();
        settings.buffer = parts.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
        settings.concurrency = match parts.next() {
            Some(c) => c.parse().map_err(|_| bad())?,
            None => settings.buffer + settings.buffer.div_ceil(3),
        };
        if let Some(lr) = parts.next() {
            settings.server_lr = lr.parse().map_err(|_| bad())?;
        }
        if parts.next().is_some()
            || settings.buffer == 0
            || settings.concurrency < settings.buffer
            || !(settings.server_lr.is_finite() && settings.server_lr > 0.0)
        {
            return Err(bad());
        }
        Ok(settings)
    }
}

/// A training in flight: when it arrives, who, and from which version.
type InFlight = Reverse<(u64, u64)>;

impl Simulation {
    /// Runs FedBuff until the configured number of versions, or the target accuracy.
    pub(crate) fn run_buffered(
        &mut self,
        settings: &FedBuffSettings,
        observer: &mut dyn Observer,
    ) -> Result<Summary, SimError> {
        let config = BufferedConfig {
            seed: self.config.seed,
            versions: self.config.rounds,
            buffer: settings.buffer,
            concurrency: settings.concurrency.min(self.participants.len()),
            server_lr: settings.server_lr,
            max_staleness: 10 * settings.concurrency as u64,
            download: self.config.download_encoding,
            dp: BufferedDp::for_strategy(&self.config.strategy)
                .map_err(SimError::InvalidSetting)?,
        };
        let mut core = Buffered::new(config, (**self.core.global()).clone());
        core.enrol((0..self.participants.len() as u64).map(ParticipantId));
        let fit = self.fit_config();
        let mut arrivals: BinaryHeap<InFlight> = BinaryHeap::new();
        let mut bases: BTreeMap<u64, (u64, Arc<ParamSet>)> = BTreeMap::new();
        let mut progress = Progress::default();
        let mut assignments = 0u64;
        let mut since_step = Instant::now();
        let mut assigned_since_step = 0u64;
        let mut now_us = 0u64;
        let mut train_s = 0.0;
        loop {
            while let Some(action) = core.poll_action() {
                match action {
                    BufferedAction::Assign {
                        participant,
                        version,
                        global,
                    } => {
                        let seconds = self.arrival_seconds(participant, &fit);
                        let at = now_us + (seconds * 1e6) as u64;
                        arrivals.push(Reverse((at, participant.0)));
                        bases.insert(participant.0, (version, global));
                        assignments += 1;
                        assigned_since_step += 1;
                    }
                    BufferedAction::Step {
                        version,
                        contributions,
                        global,
                        ..
                    } => {
                        self.set_clock(now_us as f64 / 1e6);
                        let record = self.step_record(
                            version,
                            &contributions,
                            &global,
                            (since_step, train_s, assigned_since_step),
                        )?;
                        let evaluation = record.1;
                        let record = record.0;
                        progress.add(&record, evaluation, self.config.target_accuracy);
                        observer.round_closed(&record);
                        (since_step, train_s, assigned_since_step) = (Instant::now(), 0.0, 0);
                        if progress.rounds_to_target.is_some() {
                            return Ok(self.finish_buffered(progress, &global));
                        }
                    }
                    BufferedAction::Finished { global } => {
                        return Ok(self.finish_buffered(progress, &global));
                    }
                }
            }
            let Some(Reverse((at, p))) = arrivals.pop() else {
                return Err(SimError::InvalidSetting(
                    "FedBuff ran out of participants to give work to".into(),
                ));
            };
            now_us = at;
            let Some((version, base)) = bases.remove(&p) else {
                continue;
            };
            let started = Instant::now();
            let seed = participant_seed(self.config.seed ^ version, assignments, p);
            let trained = self.train_from(ParticipantId(p), &base, &fit, seed);
            train_s += started.elapsed().as_secs_f64();
            observer.participant_trained();
            match trained {
                Ok((result, digest)) => {
                    if let Err(refusal) = core.result(result, digest) {
                        tracing::warn!(participant = p, %refusal, "result refused");
                    }
                }
                Err(reason) => {
                    tracing::warn!(participant = p, ?reason, "participant failed");
                    core.leave(ParticipantId(p));
                }
            }
        }
    }

    /// The record of one published version, and its evaluation when one is due.
    fn step_record(
        &self,
        version: u64,
        contributions: &[harambee_coordinator::BufferedContribution],
        global: &ParamSet,
        (since, train_s, assigned): (Instant, f64, u64),
    ) -> Result<(RoundRecord, Option<harambee_learn::Evaluation>), SimError> {
        let due =
            version >= self.config.rounds || version.is_multiple_of(self.config.eval_every.max(1));
        let started = Instant::now();
        let evaluation = if due {
            Some(
                self.trainer
                    .evaluate_all(global, &self.workload.split.test)?,
            )
        } else {
            None
        };
        let eval_s = started.elapsed().as_secs_f64();
        let k = contributions.len().max(1) as f64;
        let update_bytes = self.config.update_encoding.encoded_len(global.len()) as u64;
        let record = RoundRecord {
            round: version,
            accuracy: evaluation.as_ref().map(|e| e.accuracy),
            loss: evaluation.as_ref().map(|e| e.loss),
            train_loss: contributions
                .iter()
                .map(|c| f64::from(c.train_loss))
                .sum::<f64>()
                / k,
            wall_s: since.elapsed().as_secs_f64(),
            train_s,
            aggregate_s: 0.0,
            eval_s,
            bytes_up: contributions.len() as u64 * update_bytes,
            bytes_down: assigned * (global.len() * 4) as u64,
            participants: contributions.len(),
            dropped: 0,
            retries: 0,
            secagg_client_s: 0.0,
            secagg_server_s: 0.0,
            secagg_extra_bytes: 0,
            sim_clock_s: self.clock_s(),
        };
        Ok((record, evaluation))
    }

    /// Trains `p` from `base` and hashes the result (compressed as the run says).
    fn train_from(
        &self,
        p: ParticipantId,
        base: &ParamSet,
        fit: &FitConfig,
        seed: u64,
    ) -> Result<(FitResult, harambee_params::Digest), harambee_strategy::FailureReason> {
        let indices = &self.participants[p.0 as usize];
        let mut inner = self.inner_state(p);
        let mut outcome = self
            .trainer
            .train_resuming(
                base,
                &self.workload.split.train,
                indices,
                fit,
                seed,
                &mut inner,
            )
            .map_err(|e| harambee_strategy::FailureReason::Refused(e.to_string()))?;
        if !self.config.update_encoding.is_exact() {
            outcome.params = self.compressed(p, base, &outcome.params)?;
        }
        let digest = outcome.params.digest();
        Ok((
            FitResult {
                participant: p,
                params: outcome.params,
                num_samples: outcome.num_samples,
                train_loss: outcome.mean_loss,
            },
            digest,
        ))
    }

    fn finish_buffered(&self, progress: Progress, global: &ParamSet) -> Summary {
        self.summary(progress, global)
    }
}
