//! Buffered asynchronous aggregation (FedBuff, Nguyen et al. 2022) as a sans-IO state
//! machine, beside the synchronous [`Coordinator`](crate::Coordinator).
//!
//! There are no rounds to wait for. Up to `concurrency` participants train at once, each from
//! whichever model version was current when it was given work ([`BufferedAction::Assign`]).
//! Every result is turned into its change from the version it started from, weighted by its
//! staleness `s` (versions published since) as `1 / sqrt(1 + s)`, and buffered. Every
//! `buffer` results the core takes one step, `global += server_lr · Σ wᵢ Δᵢ / K`, publishes a
//! new version ([`BufferedAction::Step`], with each contribution's base version and
//! staleness, what a ledger records), and gives the freed participants new work.
//!
//! Like the synchronous core it owns no clock, socket or unseeded randomness: who is given
//! work next is drawn from the seed, and results are taken in the order the driver delivers
//! them (the simulator's virtual clock, a service's arrival order). The same inputs give the
//! same versions.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use harambee_params::{Digest, ParamSet};
use harambee_strategy::{FitResult, ParticipantId};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

use crate::Refusal;

/// FedBuff's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BufferedConfig {
    /// Seed for who is given work next.
    pub seed: u64,
    /// Versions to publish before finishing (each is one aggregation step).
    pub versions: u64,
    /// Results aggregated per step (K).
    pub buffer: usize,
    /// Participants training at once, at most.
    pub concurrency: usize,
    /// The server learning rate applied to the buffered mean change.
    pub server_lr: f32,
    /// Results whose staleness exceeds this are refused (they would weigh little anyway).
    pub max_staleness: u64,
}

impl Default for BufferedConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            versions: 100,
            buffer: 10,
            concurrency: 13,
            server_lr: 1.0,
            max_staleness: 100,
        }
    }
}

/// One result in a step, as the ledger records it.
#[derive(Debug, Clone, PartialEq)]
pub struct BufferedContribution {
    /// Who trained.
    pub participant: ParticipantId,
    /// The version it trained from.
    pub base_version: u64,
    /// Versions published between its start and its arrival.
    pub staleness: u64,
    /// Its weight, `1 / sqrt(1 + staleness)`.
    pub weight: f32,
    /// Examples it trained on.
    pub num_samples: u64,
    /// Digest of its parameters.
    pub digest: Digest,
    /// Its mean training loss.
    pub train_loss: f32,
}

/// What the driver must do.
#[derive(Debug, Clone)]
pub enum BufferedAction {
    /// Give `participant` work: train from `global` (version `version`).
    Assign {
        /// Who.
        participant: ParticipantId,
        /// The version it starts from.
        version: u64,
        /// That version's parameters.
        global: Arc<ParamSet>,
    },
    /// A new version was published.
    Step {
        /// Its number (from 1).
        version: u64,
        /// The version it was computed from.
        base: Digest,
        /// The buffered results it applied, in arrival order.
        contributions: Vec<BufferedContribution>,
        /// The new parameters.
        global: Arc<ParamSet>,
    },
    /// Every version is published.
    Finished {
        /// The final parameters.
        global: Arc<ParamSet>,
    },
}

/// The staleness weight of FedBuff: `1 / sqrt(1 + s)`.
pub fn staleness_weight(staleness: u64) -> f32 {
    1.0 / ((1 + staleness) as f32).sqrt()
}

/// The FedBuff state machine.
pub struct Buffered {
    config: BufferedConfig,
    global: Arc<ParamSet>,
    version: u64,
    participants: BTreeSet<ParticipantId>,
    /// Who is training, and from which version.
    training: BTreeMap<ParticipantId, u64>,
    /// The versions someone still trains from (or the current one).
    versions: BTreeMap<u64, Arc<ParamSet>>,
    /// Weighted changes waiting for the next step, with what the ledger records of them.
    buffer: Vec<(ParamSet, BufferedContribution)>,
    rng: ChaCha20Rng,
    actions: VecDeque<BufferedAction>,
    finished: bool,
}

impl Buffered {
    /// A FedBuff coordinator starting from `global` (version 0).
    pub fn new(config: BufferedConfig, global: ParamSet) -> Self {
        let global = Arc::new(global);
        let rng = ChaCha20Rng::seed_from_u64(config.seed ^ 0x0FED_B0FF);
        Self {
            versions: BTreeMap::from([(0, Arc::clone(&global))]),
            config,
            global,
            version: 0,
            participants: BTreeSet::new(),
            training: BTreeMap::new(),
            buffer: Vec::new(),
            rng,
            actions: VecDeque::new(),
            finished: false,
        }
    }

    /// Enrols participants, then gives work to as many as the concurrency allows.
    pub fn enrol(&mut self, participants: impl IntoIterator<Item = ParticipantId>) {
        self.participants.extend(participants);
        self.assign();
    }

    /// A participant left: its work is forgotten, and another gets work.
    pub fn leave(&mut self, participant: ParticipantId) {
        self.participants.remove(&participant);
        self.training.remove(&participant);
        self.prune();
        self.assign();
    }

    /// A result arrives. Checked (given work, same layout, finite, samples, not too stale),
    /// weighted and buffered; a full buffer publishes a version. A result ends its sender's
    /// work whether it is taken or refused, so the sender gets new work like any other.
    /// Drain [`poll_action`](Self::poll_action) afterwards.
    pub fn result(&mut self, result: FitResult, digest: Digest) -> Result<(), Refusal> {
        let p = result.participant;
        let base_version = match self.training.remove(&p) {
            Some(version) if !self.finished => version,
            _ => return Err(Refusal::NotSelected(p)),
        };
        let taken = self.buffer_result(result, digest, base_version);
        if self.buffer.len() >= self.config.buffer.max(1) {
            self.step();
        }
        self.prune();
        self.assign();
        taken
    }

    /// Checks a result trained from `base_version` and buffers its weighted change.
    fn buffer_result(
        &mut self,
        result: FitResult,
        digest: Digest,
        base_version: u64,
    ) -> Result<(), Refusal> {
        let base = self
            .versions
            .get(&base_version)
            .ok_or(Refusal::NotSelected(result.participant))?;
        if result.params.check_same_layout(base).is_err() {
            return Err(Refusal::LayoutMismatch);
        }
        if result.params.check_finite().is_err() {
            return Err(Refusal::NonFinite);
        }
        if result.num_samples == 0 {
            return Err(Refusal::NoSamples);
        }
        let staleness = self.version - base_version;
        if staleness > self.config.max_staleness {
            return Err(Refusal::WrongRound {
                expected: self.version,
                got: base_version,
            });
        }
        let weight = staleness_weight(staleness);
        let mut change = result
            .params
            .sub(base)
            .map_err(|_| Refusal::LayoutMismatch)?;
        change.scale(weight);
        self.buffer.push((
            change,
            BufferedContribution {
                participant: result.participant,
                base_version,
                staleness,
                weight,
                num_samples: result.num_samples,
                digest,
                train_loss: result.train_loss,
            },
        ));
        Ok(())
    }

    /// The next thing the driver must do, if any.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<BufferedAction> {
        self.actions.pop_front()
    }

    /// The current parameters.
    pub fn global(&self) -> &Arc<ParamSet> {
        &self.global
    }

    /// The current version.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Whether every version is published.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Applies the buffer: `global += server_lr · Σ wᵢ Δᵢ / K`.
    fn step(&mut self) {
        let buffered = std::mem::take(&mut self.buffer);
        let k = buffered.len() as f32;
        let mut next = (*self.global).clone();
        let mut contributions = Vec::with_capacity(buffered.len());
        for (change, contribution) in buffered {
            // Layouts were checked on arrival.
            let _ = next.axpy(self.config.server_lr / k, &change);
            contributions.push(contribution);
        }
        let base = self.global.digest();
        self.version += 1;
        self.global = Arc::new(next);
        self.versions.insert(self.version, Arc::clone(&self.global));
        self.actions.push_back(BufferedAction::Step {
            version: self.version,
            base,
            contributions,
            global: Arc::clone(&self.global),
        });
        if self.version >= self.config.versions {
            self.finished = true;
            self.training.clear();
            self.actions.push_back(BufferedAction::Finished {
                global: Arc::clone(&self.global),
            });
        }
    }

    /// Gives work to idle participants, drawn from the seed, up to the concurrency.
    fn assign(&mut self) {
        if self.finished {
            return;
        }
        let free = self
            .config
            .concurrency
            .max(1)
            .saturating_sub(self.training.len());
        if free == 0 {
            return;
        }
        let mut idle: Vec<ParticipantId> = self
            .participants
            .iter()
            .filter(|p| !self.training.contains_key(p))
            .copied()
            .collect();
        idle.shuffle(&mut self.rng);
        for p in idle.into_iter().take(free) {
            self.training.insert(p, self.version);
            self.actions.push_back(BufferedAction::Assign {
                participant: p,
                version: self.version,
                global: Arc::clone(&self.global),
            });
        }
    }

    /// Forgets versions no one trains from any more.
    fn prune(&mut self) {
        let current = self.version;
        let in_use: BTreeSet<u64> = self.training.values().copied().collect();
        self.versions
            .retain(|v, _| *v == current || in_use.contains(v));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn params(v: f32) -> ParamSet {
        ParamSet::from_tensors([("w", vec![2], vec![v, v])]).unwrap()
    }

    fn result(p: u64, v: f32) -> (FitResult, Digest) {
        let params = params(v);
        let digest = params.digest();
        (
            FitResult {
                participant: ParticipantId(p),
                params,
                num_samples: 1,
                train_loss: 0.0,
            },
            digest,
        )
    }

    fn assigned(core: &mut Buffered) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        while let Some(a) = core.poll_action() {
            if let BufferedAction::Assign {
                participant,
                version,
                ..
            } = a
            {
                out.push((participant.0, version));
            }
        }
        out
    }

    #[test]
    fn stale_results_weigh_less_and_every_k_results_publish_a_version() {
        let config = BufferedConfig {
            versions: 3,
            buffer: 2,
            concurrency: 3,
            ..BufferedConfig::default()
        };
        let mut core = Buffered::new(config, params(0.0));
        core.enrol((0..4).map(ParticipantId));
        let first = assigned(&mut core);
        assert_eq!(first.len(), 3);
        assert!(first.iter().all(|(_, v)| *v == 0));
        let (a, b, c) = (first[0].0, first[1].0, first[2].0);
        // Two fresh results: version 1 is their mean change, 1.0.
        let (r, d) = result(a, 1.0);
        core.result(r, d).unwrap();
        let (r, d) = result(b, 1.0);
        core.result(r, d).unwrap();
        let steps: Vec<BufferedAction> = std::iter::from_fn(|| core.poll_action()).collect();
        let step = steps
            .iter()
            .find_map(|s| match s {
                BufferedAction::Step {
                    version, global, ..
                } => Some((*version, global.clone())),
                _ => None,
            })
            .unwrap();
        assert_eq!(step.0, 1);
        assert_eq!(step.1.values(), &[1.0, 1.0]);
        // `c` started at version 0 and arrives after version 1: staleness 1, weight 1/√2.
        let (r, d) = result(c, 3.0);
        core.result(r, d).unwrap();
        let fresh = assigned(&mut core);
        let late = fresh.last().unwrap().0;
        let (r, d) = result(late, 1.0 + 2.0);
        core.result(r, d).unwrap();
        let step = std::iter::from_fn(|| core.poll_action())
            .find_map(|s| match s {
                BufferedAction::Step {
                    contributions,
                    global,
                    ..
                } => Some((contributions, global)),
                _ => None,
            })
            .unwrap();
        assert_eq!(step.0[0].staleness, 1);
        assert!((step.0[0].weight - 1.0 / 2f32.sqrt()).abs() < 1e-6);
        // (3·(1/√2) + 2·1) / 2 added to 1.0.
        let want = 1.0 + (3.0 / 2f32.sqrt() + 2.0) / 2.0;
        assert!(
            (step.1.values()[0] - want).abs() < 1e-5,
            "{:?}",
            step.1.values()
        );
    }

    #[test]
    fn results_from_strangers_or_twice_are_refused_and_the_core_finishes() {
        let config = BufferedConfig {
            versions: 1,
            buffer: 1,
            concurrency: 1,
            ..BufferedConfig::default()
        };
        let mut core = Buffered::new(config, params(0.0));
        core.enrol([ParticipantId(5), ParticipantId(6)]);
        let working = assigned(&mut core)[0].0;
        let idle = if working == 5 { 6 } else { 5 };
        let (r, d) = result(idle, 1.0);
        assert_eq!(
            core.result(r, d),
            Err(Refusal::NotSelected(ParticipantId(idle)))
        );
        let (mut r, d) = result(working, 1.0);
        r.params.values_mut()[0] = f32::NAN;
        assert_eq!(core.result(r, d), Err(Refusal::NonFinite));
        // The refused result ended that work; someone is given work again.
        let working = assigned(&mut core)[0].0;
        let (r, d) = result(working, 1.0);
        core.result(r, d).unwrap();
        assert!(core.is_finished());
        let (r, d) = result(working, 1.0);
        assert!(core.result(r, d).is_err());
    }
}
