use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use harambee_params::{Digest, ParamSet};
use harambee_strategy::{
    Aggregate, Failure, FailureReason, FitResult, ParticipantId, SecureSum, Strategy,
};
use rand::SeedableRng;
use rand::seq::index;
use rand_chacha::ChaCha20Rng;

use crate::types::{
    Action, Contribution, CoordinatorConfig, CoreError, Event, EventOutcome, OpenRound, Refusal,
    RestorePoint, RoundOutcome, RoundSummary, Tick,
};

/// Where the federation stands.
#[derive(Debug)]
enum Phase {
    /// Waiting for enough participants to open round `next`.
    Waiting,
    /// A round is open.
    Training(OpenState),
    /// Done, successfully or not.
    Finished,
}

#[derive(Debug)]
struct OpenState {
    round: u64,
    attempt: u32,
    selected: BTreeSet<ParticipantId>,
    results: BTreeMap<ParticipantId, (FitResult, Digest)>,
    failures: BTreeMap<ParticipantId, Failure>,
    base: Digest,
    deadline: Tick,
}

/// The round state machine. See the crate documentation for the call order.
pub struct Coordinator {
    config: CoordinatorConfig,
    strategy: Box<dyn Strategy>,
    global: Arc<ParamSet>,
    /// The next round to open (rounds count from 1).
    next_round: u64,
    participants: BTreeSet<ParticipantId>,
    phase: Phase,
    actions: VecDeque<Action>,
    error: Option<CoreError>,
    /// Last time seen, so events without a timer can still open rounds with a deadline.
    now: Tick,
    /// A steward paused the federation: no round opens until it resumes.
    paused: bool,
    /// The attempt the next opening of `next_round` is: a round that missed its quorum and
    /// could not reopen at once (too few participants, or paused) must not reuse an attempt
    /// number, because updates are recorded per (round, attempt).
    next_attempt: u32,
    /// Members selected for an attempt that ended without a word from them. They are chosen
    /// only when too few others are left, until they deliver or call again: a swarm of
    /// silent members (a Sybil with an invite) cannot keep rounds from reaching their quorum.
    silent: BTreeSet<ParticipantId>,
}

impl Coordinator {
    /// A coordinator starting from `global`, combining results with `strategy`.
    pub fn new(config: CoordinatorConfig, strategy: Box<dyn Strategy>, global: ParamSet) -> Self {
        Self {
            config,
            strategy,
            global: Arc::new(global),
            next_round: 1,
            participants: BTreeSet::new(),
            phase: Phase::Waiting,
            actions: VecDeque::new(),
            error: None,
            now: Tick(0),
            paused: false,
            next_attempt: 0,
            silent: BTreeSet::new(),
        }
    }

    /// A coordinator that resumes after `completed` rounds from their `global` result.
    pub fn resume(
        config: CoordinatorConfig,
        strategy: Box<dyn Strategy>,
        global: ParamSet,
        completed: u64,
    ) -> Self {
        let mut core = Self::new(config, strategy, global);
        core.next_round = completed + 1;
        core
    }

    /// A coordinator restarted from durable state: `completed` rounds done with `global` their
    /// result, these participants enrolled and, when a round was open, that round reopened
    /// with the same attempt and selection (its deadline starts afresh). The driver then feeds
    /// the round's acknowledged results again as [`Event::Result`]s.
    pub fn restore(
        config: CoordinatorConfig,
        strategy: Box<dyn Strategy>,
        global: ParamSet,
        point: RestorePoint,
    ) -> Self {
        let mut core = Self::resume(config, strategy, global, point.completed);
        core.participants = point.participants.into_iter().collect();
        core.paused = point.paused;
        match point.open {
            Some((attempt, selected)) if core.next_round <= core.config.rounds => {
                core.open_with(attempt, selected.into_iter().collect());
            }
            _ => core.advance(),
        }
        core
    }

    /// Whether the core would accept `result` for `round` now, without changing anything: a
    /// driver checks first, makes the result durable, then feeds it.
    pub fn check_result(&self, round: u64, result: &FitResult) -> Result<(), Refusal> {
        self.validate(round, result)
    }

    /// The open round's attempt and selected participants, if a round is open.
    pub fn open_selection(&self) -> Option<(u64, u32, Vec<ParticipantId>)> {
        match &self.phase {
            Phase::Training(open) => Some((
                open.round,
                open.attempt,
                open.selected.iter().copied().collect(),
            )),
            _ => None,
        }
    }

    /// Results held for the open round.
    pub fn received(&self) -> usize {
        match &self.phase {
            Phase::Training(open) => open.results.len(),
            _ => 0,
        }
    }

    /// The settings.
    pub fn config(&self) -> &CoordinatorConfig {
        &self.config
    }

    /// The strategy (for its state between rounds).
    pub fn strategy(&self) -> &dyn Strategy {
        self.strategy.as_ref()
    }

    /// Whether a steward has paused the federation.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Whether the federation is over (finished or failed).
    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Finished)
    }

    /// Feeds an input. Drain [`poll_action`](Self::poll_action) afterwards.
    pub fn handle_event(&mut self, now: Tick, event: Event) -> EventOutcome {
        self.now = self.now.max(now);
        if matches!(self.phase, Phase::Finished) {
            return EventOutcome::Closed;
        }
        let outcome = match event {
            Event::Enrol(p) => {
                self.silent.remove(&p);
                if self.participants.insert(p) {
                    EventOutcome::Enrolled
                } else {
                    EventOutcome::AlreadyEnrolled
                }
            }
            Event::Leave(p) => {
                self.participants.remove(&p);
                if let Phase::Training(open) = &mut self.phase
                    && open.selected.contains(&p)
                    && !open.results.contains_key(&p)
                {
                    open.failures.insert(
                        p,
                        Failure {
                            participant: p,
                            reason: FailureReason::Dropped,
                        },
                    );
                }
                EventOutcome::Left
            }
            Event::Result {
                round,
                result,
                digest,
            } => match self.validate(round, &result) {
                Ok(()) => {
                    if let Phase::Training(open) = &mut self.phase {
                        self.silent.remove(&result.participant);
                        open.results.insert(result.participant, (result, digest));
                    }
                    EventOutcome::Accepted
                }
                Err(refusal) => EventOutcome::Refused(refusal),
            },
            Event::SecureSum { round, sum } => match self.validate_secure(round, &sum) {
                Ok(()) => {
                    self.close_secure_round(sum);
                    EventOutcome::Accepted
                }
                Err(refusal) => EventOutcome::Refused(refusal),
            },
            Event::Pause => {
                self.paused = true;
                EventOutcome::Paused
            }
            Event::Resume => {
                self.paused = false;
                EventOutcome::Resumed
            }
            Event::Failed { round, failure } => match &mut self.phase {
                Phase::Training(open)
                    if open.round == round
                        && open.selected.contains(&failure.participant)
                        && !open.results.contains_key(&failure.participant) =>
                {
                    open.failures.insert(failure.participant, failure);
                    EventOutcome::FailureRecorded
                }
                _ => EventOutcome::Refused(Refusal::NotSelected(failure.participant)),
            },
        };
        self.advance();
        outcome
    }

    /// Tells the core that time has passed. A call before any deadline does nothing.
    pub fn handle_timeout(&mut self, now: Tick) {
        self.now = self.now.max(now);
        let Phase::Training(open) = &mut self.phase else {
            return;
        };
        if now < open.deadline {
            return;
        }
        for p in &open.selected {
            if !open.results.contains_key(p) && !open.failures.contains_key(p) {
                self.silent.insert(*p);
                open.failures.insert(
                    *p,
                    Failure {
                        participant: *p,
                        reason: FailureReason::Late,
                    },
                );
            }
        }
        if open.results.len() >= self.config.quorum.max(1) {
            self.close_round();
        } else {
            self.retry_round();
        }
        self.advance();
    }

    /// The next thing the driver must do, if any.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called, if at all.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Tick> {
        match &self.phase {
            Phase::Training(open) => Some(open.deadline),
            _ => None,
        }
    }

    /// The fatal error that stopped the federation, if one did.
    pub fn error(&self) -> Option<&CoreError> {
        self.error.as_ref()
    }

    /// The current global parameters.
    pub fn global(&self) -> &Arc<ParamSet> {
        &self.global
    }

    /// Rounds closed so far: the results a participant can have evaluated.
    pub fn completed(&self) -> u64 {
        self.next_round.saturating_sub(1)
    }

    /// The round that is open, if one is.
    pub fn open_round(&self) -> Option<u64> {
        match &self.phase {
            Phase::Training(open) => Some(open.round),
            _ => None,
        }
    }

    /// Enrolled participants.
    pub fn participants(&self) -> impl Iterator<Item = ParticipantId> + '_ {
        self.participants.iter().copied()
    }

    /// The open round, if `round` names it.
    fn open_state(&self, round: u64) -> Result<&OpenState, Refusal> {
        match &self.phase {
            Phase::Training(open) if open.round == round => Ok(open),
            Phase::Training(open) => Err(Refusal::WrongRound {
                expected: open.round,
                got: round,
            }),
            _ => Err(Refusal::WrongRound {
                expected: 0,
                got: round,
            }),
        }
    }

    fn validate(&self, round: u64, result: &FitResult) -> Result<(), Refusal> {
        let p = result.participant;
        if !self.participants.contains(&p) {
            return Err(Refusal::UnknownParticipant(p));
        }
        let open = self.open_state(round)?;
        if !open.selected.contains(&p) || open.failures.contains_key(&p) {
            return Err(Refusal::NotSelected(p));
        }
        if open.results.contains_key(&p) {
            return Err(Refusal::Duplicate(p));
        }
        if result.params.check_same_layout(&self.global).is_err() {
            return Err(Refusal::LayoutMismatch);
        }
        if result.params.check_finite().is_err() {
            return Err(Refusal::NonFinite);
        }
        if result.num_samples == 0 {
            return Err(Refusal::NoSamples);
        }
        Ok(())
    }

    /// A secure sum must be for the open round, over selected participants that delivered
    /// nothing individually, at least a quorum of them, in the model's layout and finite.
    fn validate_secure(&self, round: u64, sum: &SecureSum) -> Result<(), Refusal> {
        let open = self.open_state(round)?;
        let mut seen = BTreeSet::new();
        for &p in &sum.contributors {
            if !open.selected.contains(&p) || open.failures.contains_key(&p) {
                return Err(Refusal::NotSelected(p));
            }
            if open.results.contains_key(&p) || !seen.insert(p) {
                return Err(Refusal::Duplicate(p));
            }
        }
        let quorum = self.config.quorum.max(1);
        if seen.len() < quorum {
            return Err(Refusal::BelowQuorum {
                got: seen.len(),
                quorum,
            });
        }
        if sum.delta_sum.check_same_layout(&self.global).is_err() {
            return Err(Refusal::LayoutMismatch);
        }
        if sum.delta_sum.check_finite().is_err() || sum.within_clip.is_some_and(|c| !c.is_finite())
        {
            return Err(Refusal::NonFinite);
        }
        Ok(())
    }

    /// Closes the open round on a secure sum: those selected but not in it dropped.
    fn close_secure_round(&mut self, mut sum: SecureSum) {
        let Phase::Training(open) = &mut self.phase else {
            return;
        };
        for p in &open.selected {
            if !sum.contributors.contains(p) {
                open.failures.entry(*p).or_insert(Failure {
                    participant: *p,
                    reason: FailureReason::Dropped,
                });
            }
        }
        sum.selected = open.selected.len();
        self.close_round_with(Some(sum));
    }

    /// Moves the state machine forward as far as it can without new input.
    fn advance(&mut self) {
        loop {
            match &self.phase {
                Phase::Waiting => {
                    if self.next_round > self.config.rounds {
                        self.finish();
                    } else if !self.paused
                        && self.participants.len() >= self.config.min_participants.max(1)
                    {
                        self.open_round_now(self.next_attempt);
                    }
                    return;
                }
                Phase::Training(open) => {
                    let answered = open.results.len() + open.failures.len();
                    if answered < open.selected.len() {
                        return;
                    }
                    // Everyone has answered: no need to wait for the deadline.
                    if open.results.len() >= self.config.quorum.max(1) {
                        self.close_round();
                    } else {
                        self.retry_round();
                    }
                }
                Phase::Finished => return,
            }
        }
    }

    fn open_round_now(&mut self, attempt: u32) {
        let round = self.next_round;
        let everyone = self.participants.len();
        let wanted = self
            .strategy
            .sample_size(everyone)
            .clamp(1, everyone.max(1));
        let (responsive, silent): (Vec<ParticipantId>, Vec<ParticipantId>) = self
            .participants
            .iter()
            .partition(|p| !self.silent.contains(p));
        let mut rng = ChaCha20Rng::seed_from_u64(selection_seed(self.config.seed, round, attempt));
        let mut sample = |pool: &[ParticipantId], n: usize| -> Vec<ParticipantId> {
            index::sample(&mut rng, pool.len(), n.min(pool.len()))
                .into_iter()
                .map(|i| pool[i])
                .collect()
        };
        // Members who answer first; silent ones only fill the places left.
        let mut chosen = sample(&responsive, wanted);
        let missing = wanted - chosen.len();
        chosen.extend(sample(&silent, missing));
        chosen.sort();
        self.open_with(attempt, chosen);
    }

    fn open_with(&mut self, attempt: u32, chosen: Vec<ParticipantId>) {
        let round = self.next_round;
        let base = self.global.digest();
        let deadline = self.now.after_ms(self.config.round_timeout_ms);
        self.actions.push_back(Action::OpenRound(OpenRound {
            round,
            attempt,
            participants: chosen.clone(),
            config: self.strategy.configure_fit(round),
            privacy: self
                .strategy
                .update_privacy(round, self.config.quorum.clamp(1, chosen.len().max(1))),
            global: Arc::clone(&self.global),
            base,
            deadline,
        }));
        self.next_attempt = attempt + 1;
        self.phase = Phase::Training(OpenState {
            round,
            attempt,
            selected: chosen.into_iter().collect(),
            results: BTreeMap::new(),
            failures: BTreeMap::new(),
            base,
            deadline,
        });
    }

    fn close_round(&mut self) {
        self.close_round_with(None);
    }

    /// Aggregates the open round: its individual results, or the secure sum given.
    fn close_round_with(&mut self, secure: Option<SecureSum>) {
        let Phase::Training(open) = std::mem::replace(&mut self.phase, Phase::Waiting) else {
            return;
        };
        // BTreeMap order: results are combined in participant order, whatever the arrival order.
        let (results, digests): (Vec<FitResult>, Vec<Digest>) = open.results.into_values().unzip();
        let failures: Vec<Failure> = open.failures.into_values().collect();
        let aggregate = match &secure {
            Some(sum) => self
                .strategy
                .aggregate_secure(open.round, &self.global, sum),
            None => self
                .strategy
                .aggregate_fit(open.round, &self.global, &results, &failures),
        };
        let mut download = None;
        let outcome = match aggregate.and_then(|a| self.published(a)) {
            Ok((Aggregate::Updated(p), bytes)) => {
                let digest = p.digest();
                self.global = Arc::new(p);
                download = bytes.map(Arc::new);
                RoundOutcome::Updated(digest)
            }
            Ok((Aggregate::KeepPrevious { reason }, _)) => RoundOutcome::Kept { reason },
            Err(error) => {
                self.fail(CoreError::Aggregation {
                    round: open.round,
                    error,
                });
                return;
            }
        };
        let contributions = match &secure {
            // No one's update was seen: each contributor stands for the sum's digest.
            Some(sum) => {
                let digest = sum.delta_sum.digest();
                sum.contributors
                    .iter()
                    .map(|&participant| Contribution {
                        participant,
                        num_samples: 0,
                        digest,
                        train_loss: 0.0,
                    })
                    .collect()
            }
            None => results
                .iter()
                .zip(digests)
                .map(|(r, digest)| Contribution {
                    participant: r.participant,
                    num_samples: r.num_samples,
                    digest,
                    train_loss: r.train_loss,
                })
                .collect(),
        };
        self.actions.push_back(Action::CloseRound(RoundSummary {
            round: open.round,
            strategy: self.strategy.name(),
            base: open.base,
            contributions,
            failures,
            outcome,
            global: Arc::clone(&self.global),
            download,
        }));
        self.next_round += 1;
        self.next_attempt = 0;
    }

    /// An aggregate as it is published: under a lossy download encoding, moved from the
    /// current model by its change as encoded, with the bytes that do so.
    #[allow(clippy::type_complexity)]
    fn published(
        &self,
        aggregate: Aggregate,
    ) -> Result<(Aggregate, Option<Vec<u8>>), harambee_strategy::StrategyError> {
        match aggregate {
            Aggregate::Updated(p) => {
                let (p, bytes) = crate::published_step(self.config.download, &self.global, p)?;
                Ok((Aggregate::Updated(p), bytes))
            }
            kept => Ok((kept, None)),
        }
    }

    fn retry_round(&mut self) {
        let Phase::Training(open) = std::mem::replace(&mut self.phase, Phase::Waiting) else {
            return;
        };
        let exhausted = open.attempt >= self.config.max_round_retries;
        let pause = exhausted && self.config.pause_when_quorum_missed;
        self.actions.push_back(Action::RoundRetried {
            round: open.round,
            received: open.results.len(),
            quorum: self.config.quorum,
            paused: pause,
        });
        if pause {
            // Waits, as a steward's pause does: the next attempt opens when one resumes.
            self.paused = true;
        } else if exhausted {
            self.fail(CoreError::QuorumNotReached {
                round: open.round,
                quorum: self.config.quorum,
                attempts: open.attempt + 1,
            });
        } else if !self.paused && self.participants.len() >= self.config.min_participants.max(1) {
            self.open_round_now(open.attempt + 1);
        }
    }

    fn fail(&mut self, error: CoreError) {
        self.error = Some(error);
        self.finish();
    }

    fn finish(&mut self) {
        self.phase = Phase::Finished;
        self.actions.push_back(Action::Finished {
            global: Arc::clone(&self.global),
        });
    }
}

/// A per-round, per-attempt seed, so selections differ between rounds but not between runs.
fn selection_seed(seed: u64, round: u64, attempt: u32) -> u64 {
    // SplitMix64 finaliser over the combined inputs: cheap and well mixed.
    let mut z = seed ^ round.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (u64::from(attempt) << 48);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
