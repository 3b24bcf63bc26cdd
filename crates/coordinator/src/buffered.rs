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
use harambee_strategy::privacy::NoisePlacement;
use harambee_strategy::{FitResult, ParticipantId, StrategyConfig};
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
    /// How each new version travels to members (see [`published_step`](crate::published_step)).
    #[serde(default)]
    pub download: harambee_params::UpdateCodec,
    /// Participant-level differential privacy: each change clipped, each step's sum noised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dp: Option<BufferedDp>,
}

/// DP-FedBuff: every result's change is clipped to L2 norm `clip` before its staleness
/// weight (at most 1) scales it, a participant contributes at most one result to a step,
/// and Gaussian noise of standard deviation `noise_multiplier · clip` is added to each step's
/// sum. A step is then the Gaussian mechanism with sensitivity `clip` (FedBuff with DP, as
/// Nguyen et al. 2022 describe it).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BufferedDp {
    /// The L2 bound on one result's change.
    pub clip: f64,
    /// The noise's standard deviation over the bound.
    pub noise_multiplier: f64,
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
            download: harambee_params::UpdateCodec::F32,
            dp: None,
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
        /// Under a lossy download encoding, the bytes that turn version `version − 1` into
        /// this one.
        download: Option<Arc<Vec<u8>>>,
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
    /// A steward paused the federation: no one is given new work until it resumes.
    paused: bool,
}

impl BufferedDp {
    /// What buffered aggregation does under `strategy`: plain FedBuff for `fedavg`, DP-FedBuff
    /// for `dp-fedavg` with central noise and a fixed bound; anything else is refused, with
    /// the reason.
    pub fn for_strategy(strategy: &StrategyConfig) -> Result<Option<Self>, String> {
        match strategy {
            StrategyConfig::FedAvg => Ok(None),
            StrategyConfig::DpFedAvg {
                clip,
                noise_multiplier,
                noise: NoisePlacement::Central,
                adaptive: None,
            } => Ok(Some(BufferedDp {
                clip: *clip,
                noise_multiplier: *noise_multiplier,
            })),
            other => Err(format!(
                "buffered aggregation applies the staleness-weighted mean change itself: it runs with fedavg, or dp-fedavg with central noise and a fixed bound, not {other}"
            )),
        }
    }
}

/// A result's change from the version it trained from, weighted by its staleness:
/// `(trained − base) / sqrt(1 + s)`. The core and an auditor who recomputes a step both use
/// this, so their floating-point operations are the same ones in the same order.
pub fn weighted_change(
    trained: &ParamSet,
    base: &ParamSet,
    staleness: u64,
) -> Result<ParamSet, harambee_params::ParamsError> {
    let mut change = trained.sub(base)?;
    change.scale(staleness_weight(staleness));
    Ok(change)
}

/// DP-FedBuff's step: the changes (each clipped to `clip` before its weight) summed in the
/// order given, Gaussian noise of standard deviation `noise_multiplier · clip` added to the
/// sum, then `global + server_lr / K · noised sum`.
pub fn apply_buffer_privately(
    global: &ParamSet,
    changes: &[ParamSet],
    server_lr: f32,
    dp: BufferedDp,
) -> Result<ParamSet, harambee_strategy::StrategyError> {
    let mut sum = vec![0.0f32; global.len()];
    for change in changes {
        change.check_same_layout(global)?;
        sum.iter_mut()
            .zip(change.values())
            .for_each(|(s, v)| *s += v);
    }
    harambee_strategy::privacy::add_gaussian_noise(&mut sum, dp.noise_multiplier * dp.clip)?;
    let k = changes.len().max(1) as f32;
    let mut next = global.clone();
    next.values_mut()
        .iter_mut()
        .zip(&sum)
        .for_each(|(x, s)| *x += server_lr / k * s);
    Ok(next)
}

/// One FedBuff step: `global + server_lr / K · Σ changes`, added in the order given.
pub fn apply_buffer(
    global: &ParamSet,
    changes: &[ParamSet],
    server_lr: f32,
) -> Result<ParamSet, harambee_params::ParamsError> {
    let k = changes.len().max(1) as f32;
    let mut next = global.clone();
    for change in changes {
        next.axpy(server_lr / k, change)?;
    }
    Ok(next)
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
            paused: false,
        }
    }

    /// A FedBuff coordinator resumed after a restart at `version`, whose parameters are
    /// `global`. Results acknowledged before the restart but not yet applied are given back
    /// with [`replay`](Self::replay); who trains is forgotten (they are given new work).
    pub fn restore(config: BufferedConfig, global: ParamSet, version: u64) -> Self {
        let mut core = Self::new(config, global);
        if version > 0 {
            let global = core
                .versions
                .remove(&0)
                .unwrap_or_else(|| Arc::clone(&core.global));
            core.versions.insert(version, global);
            core.version = version;
            core.rng = ChaCha20Rng::seed_from_u64(core.config.seed ^ 0x0FED_B0FF ^ version);
        }
        core.finished = version >= core.config.versions;
        core
    }

    /// Buffers again a result acknowledged before a restart, trained from `base` (version
    /// `base_version`); a full buffer publishes a version as it did then.
    pub fn replay(
        &mut self,
        result: FitResult,
        digest: Digest,
        base_version: u64,
        base: Arc<ParamSet>,
    ) -> Result<(), Refusal> {
        if self.finished {
            return Err(Refusal::NotSelected(result.participant));
        }
        self.versions.entry(base_version).or_insert(base);
        self.training.insert(result.participant, base_version);
        self.result(result, digest)
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
        let checked = self.check(&result);
        let Some(base_version) = self.training.remove(&p).filter(|_| !self.finished) else {
            return Err(Refusal::NotSelected(p));
        };
        let taken = checked.and_then(|_| self.buffer_result(result, digest, base_version));
        if self.buffer.len() >= self.config.buffer.max(1) {
            self.step();
        }
        self.prune();
        self.assign();
        taken
    }

    /// Whether a result would be taken, without taking it: its sender was given work and
    /// has not delivered it, the version it trained from is known, the result has the
    /// model's layout, finite values and samples, and it is not too stale. Returns the
    /// version it trained from. A driver checks before it stores, so that what it stores is
    /// taken.
    pub fn check(&self, result: &FitResult) -> Result<u64, Refusal> {
        let p = result.participant;
        let base_version = match self.training.get(&p) {
            Some(version) if !self.finished => *version,
            _ => return Err(Refusal::NotSelected(p)),
        };
        let base = self
            .versions
            .get(&base_version)
            .ok_or(Refusal::NotSelected(p))?;
        if result.params.check_same_layout(base).is_err() {
            return Err(Refusal::LayoutMismatch);
        }
        if result.params.check_finite().is_err() {
            return Err(Refusal::NonFinite);
        }
        if result.num_samples == 0 {
            return Err(Refusal::NoSamples);
        }
        if self.version - base_version > self.config.max_staleness {
            return Err(Refusal::WrongRound {
                expected: self.version,
                got: base_version,
            });
        }
        Ok(base_version)
    }

    /// Buffers the weighted change of a checked result trained from `base_version`.
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
        let staleness = self.version - base_version;
        let mut change = result
            .params
            .sub(base)
            .map_err(|_| Refusal::LayoutMismatch)?;
        if let Some(dp) = self.config.dp {
            change.clip_l2(dp.clip);
        }
        change.scale(staleness_weight(staleness));
        self.buffer.push((
            change,
            BufferedContribution {
                participant: result.participant,
                base_version,
                staleness,
                weight: staleness_weight(staleness),
                num_samples: result.num_samples,
                digest,
                train_loss: result.train_loss,
            },
        ));
        Ok(())
    }

    /// A participant's work ran past its deadline: it is forgotten (a late result is
    /// refused), its place goes to someone else, and the participant is given no more work
    /// until it is enrolled again (a driver does so when it calls again), so that a slow or
    /// vanished member does not hold a place twice.
    pub fn expire(&mut self, participant: ParticipantId) {
        if self.training.contains_key(&participant) {
            self.leave(participant);
        }
    }

    /// Pauses (no new work is given; work given runs to its end) or resumes.
    pub fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
        self.assign();
    }

    /// Whether a steward paused the federation.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// The version `participant` trains from, if it was given work.
    pub fn assignment(&self, participant: ParticipantId) -> Option<u64> {
        self.training.get(&participant).copied()
    }

    /// A version's parameters, while it is current or someone trains from it.
    pub fn version_params(&self, version: u64) -> Option<&Arc<ParamSet>> {
        self.versions.get(&version)
    }

    /// Results waiting in the buffer for the next step.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Participants training now.
    pub fn training(&self) -> usize {
        self.training.len()
    }

    /// The settings.
    pub fn config(&self) -> &BufferedConfig {
        &self.config
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
        let (changes, contributions): (Vec<ParamSet>, Vec<BufferedContribution>) =
            buffered.into_iter().unzip();
        // Layouts were checked on arrival; only the OS's randomness for DP noise may fail,
        // and then the version repeats the last (nothing is applied without its noise).
        let next = match self.config.dp {
            Some(dp) => apply_buffer_privately(&self.global, &changes, self.config.server_lr, dp),
            None => apply_buffer(&self.global, &changes, self.config.server_lr).map_err(Into::into),
        };
        let (next, download) = next
            .and_then(|next| {
                crate::published_step(self.config.download, &self.global, next).map_err(Into::into)
            })
            .unwrap_or_else(|_: harambee_strategy::StrategyError| ((*self.global).clone(), None));
        let base = self.global.digest();
        self.version += 1;
        self.global = Arc::new(next);
        self.versions.insert(self.version, Arc::clone(&self.global));
        self.actions.push_back(BufferedAction::Step {
            version: self.version,
            base,
            contributions,
            global: Arc::clone(&self.global),
            download: download.map(Arc::new),
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
        if self.finished || self.paused {
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
        // Under DP a participant contributes at most one result to a step: one whose result
        // waits in the buffer is given no work until the step is taken.
        let buffered: BTreeSet<ParticipantId> = match self.config.dp {
            Some(_) => self.buffer.iter().map(|(_, c)| c.participant).collect(),
            None => BTreeSet::new(),
        };
        let mut idle: Vec<ParticipantId> = self
            .participants
            .iter()
            .filter(|p| !self.training.contains_key(p) && !buffered.contains(p))
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

    #[test]
    fn overdue_work_goes_to_another_and_a_restart_replays_the_buffer_to_the_same_version() {
        let config = BufferedConfig {
            versions: 2,
            buffer: 2,
            concurrency: 1,
            ..BufferedConfig::default()
        };
        let mut core = Buffered::new(config.clone(), params(0.0));
        core.enrol([ParticipantId(1), ParticipantId(2)]);
        let first = assigned(&mut core)[0].0;
        core.expire(ParticipantId(first));
        let second = assigned(&mut core)[0].0;
        assert_ne!(first, second, "the overdue work went to the other member");
        let (r, d) = result(first, 1.0);
        assert_eq!(
            core.result(r, d),
            Err(Refusal::NotSelected(ParticipantId(first)))
        );
        // One result buffered, then a restart: the restored core replays it and, with one
        // more, publishes what the uninterrupted core publishes.
        let (r, d) = result(second, 1.0);
        core.result(r.clone(), d).unwrap();
        let mut restored = Buffered::restore(config, params(0.0), 0);
        restored.replay(r, d, 0, Arc::new(params(0.0))).unwrap();
        restored.enrol([ParticipantId(second)]);
        for c in [&mut core, &mut restored] {
            let next = assigned(c)[0].0;
            let (r, d) = result(next, 3.0);
            c.result(r, d).unwrap();
        }
        let global = |c: &Buffered| c.global().values().to_vec();
        assert_eq!(core.version(), 1);
        assert_eq!(global(&core), global(&restored));
        assert_eq!(global(&core), vec![2.0, 2.0]);
    }

    #[test]
    fn under_dp_changes_are_clipped_one_result_per_member_per_step_and_steps_are_noised() {
        let dp = BufferedDp {
            clip: 1.0,
            noise_multiplier: 0.0,
        };
        let config = BufferedConfig {
            versions: 2,
            buffer: 2,
            concurrency: 2,
            dp: Some(dp),
            ..BufferedConfig::default()
        };
        let mut core = Buffered::new(config.clone(), params(0.0));
        core.enrol([ParticipantId(1), ParticipantId(2)]);
        let first = assigned(&mut core);
        assert_eq!(first.len(), 2);
        // A change of norm 10·√2 is clipped to norm 1 before it counts.
        let (r, d) = result(first[0].0, 10.0);
        core.result(r, d).unwrap();
        // Its sender waits for the step: at most one result per member per step.
        assert!(assigned(&mut core).is_empty());
        let (r, d) = result(first[1].0, 0.1);
        core.result(r, d).unwrap();
        let half = 1.0 / 2f32.sqrt();
        let want = (half + 0.1) / 2.0;
        let got = core.global().values()[0];
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        assert_eq!(assigned(&mut core).len(), 2, "after the step both get work");
        // With noise, the same step lands elsewhere each time.
        let noisy = BufferedConfig {
            dp: Some(BufferedDp {
                noise_multiplier: 1.0,
                ..dp
            }),
            ..config
        };
        let step = || {
            let mut core = Buffered::new(noisy.clone(), params(0.0));
            core.enrol([ParticipantId(1), ParticipantId(2)]);
            for (p, _) in assigned(&mut core) {
                let (r, d) = result(p, 0.1);
                core.result(r, d).unwrap();
            }
            core.global().values().to_vec()
        };
        assert_ne!(step(), step());
    }

    #[test]
    fn buffered_aggregation_runs_with_fedavg_or_central_fixed_dp_fedavg_only() {
        assert_eq!(BufferedDp::for_strategy(&StrategyConfig::FedAvg), Ok(None));
        let dp: StrategyConfig = "dp-fedavg:1.0:0.5".parse().unwrap();
        assert!(BufferedDp::for_strategy(&dp).unwrap().is_some());
        let median: StrategyConfig = "median".parse().unwrap();
        assert!(BufferedDp::for_strategy(&median).is_err());
    }
}
