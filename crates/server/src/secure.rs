//! A round's secure aggregation on the coordinator: the SecAgg+ server state machine, the
//! step deadlines, and what each participant is told when a step closes. The driver owns one
//! of these while a secure round is open; the gRPC service feeds it and waits on it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::rejection::Rejection;
use harambee_coordinator::OpenRound;
use harambee_params::Digest;
use harambee_proto::secagg as wire;
use harambee_proto::v1;
use harambee_secagg::{
    Config, FixedPoint, MaskedInput, SealedShare, SecAggError, Server, Sum, Survivors,
};
use harambee_strategy::ParticipantId;
use sha2::{Digest as _, Sha256};

/// Where the round's protocol stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Collecting step `n` (1 to 4).
    Collecting(u8),
    /// Over: the sum came out (how many contributed), or why not.
    Over(Result<usize, String>),
}

/// A participant's signed commitment to its masked update, for the ledger.
#[derive(Debug, Clone)]
pub(crate) struct MaskedCommitment {
    pub(crate) digest: Digest,
    pub(crate) signature: Vec<u8>,
    pub(crate) train_loss: f32,
    pub(crate) bytes: Vec<u8>,
}

/// One round's secure aggregation.
pub(crate) struct SecureRound {
    pub(crate) round: u64,
    pub(crate) attempt: u32,
    selected: Vec<ParticipantId>,
    settings: v1::SecAggSettings,
    pub(crate) fixed: FixedPoint,
    server: Server,
    step: Step,
    deadline: Instant,
    step_timeout: Duration,
    waiting_for: BTreeSet<u32>,
    /// Who sent each step, so a retried call is answered again rather than refused.
    sent: BTreeMap<u8, BTreeSet<u32>>,
    adverts: BTreeMap<u32, v1::RosterEntry>,
    rosters: BTreeMap<u32, Vec<v1::RosterEntry>>,
    inboxes: BTreeMap<u32, Vec<SealedShare>>,
    survivors: Option<Survivors>,
    pub(crate) commitments: BTreeMap<u32, MaskedCommitment>,
}

/// The session of a round: public, and different for every federation, round and attempt.
pub(crate) fn session_of(federation: &str, round: u64, attempt: u32, base: &Digest) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"harambee/secagg/session/v1");
    h.update(federation.as_bytes());
    h.update(round.to_le_bytes());
    h.update(attempt.to_le_bytes());
    h.update(base.0);
    h.finalize().into()
}

fn refused(e: SecAggError) -> Rejection {
    match e {
        SecAggError::OutOfOrder(_) => Rejection::not_now(e.to_string()),
        _ => Rejection::invalid(e.to_string()),
    }
}

impl SecureRound {
    /// The protocol for `open`, with at least `min_survivors` contributors (the charter's and
    /// the quorum's), steps after the first given `step_timeout` each, and the first lasting
    /// until `keys_deadline` (participants train before they advertise).
    pub(crate) fn new(
        open: &OpenRound,
        federation: &str,
        min_survivors: usize,
        range: f32,
        keys_deadline: Instant,
        step_timeout: Duration,
    ) -> Result<Self, SecAggError> {
        let n = open.participants.len() as u32;
        let report = open.privacy.is_some_and(|p| p.report_within_clip);
        let session = session_of(federation, open.round, open.attempt, &open.base);
        let mut config = Config::recommended(session, n, open.global.len() + usize::from(report));
        config.min_survivors =
            (min_survivors as u32).clamp(config.threshold, n.max(config.threshold));
        let privacy = open.privacy;
        let fixed = FixedPoint {
            range: privacy.map_or(range, |p| p.coordinate_bound() as f32),
            max_summands: n,
        };
        let settings = v1::SecAggSettings {
            session: session.to_vec(),
            index: 0,
            participants: n,
            degree: config.degree,
            threshold: config.threshold,
            min_survivors: config.min_survivors,
            dimension: config.dimension as u64,
            range: fixed.range,
            clip: privacy.map_or(0.0, |p| p.clip),
            noise_std: privacy.map_or(0.0, |p| p.noise_std),
            report_within_clip: report,
            report_noise_std: privacy.map_or(0.0, |p| p.report_noise_std),
        };
        Ok(Self {
            round: open.round,
            attempt: open.attempt,
            selected: open.participants.clone(),
            settings,
            fixed,
            server: Server::new(config)?,
            step: Step::Collecting(1),
            deadline: keys_deadline,
            step_timeout,
            waiting_for: (0..n).collect(),
            sent: BTreeMap::new(),
            adverts: BTreeMap::new(),
            rosters: BTreeMap::new(),
            inboxes: BTreeMap::new(),
            survivors: None,
            commitments: BTreeMap::new(),
        })
    }

    /// The session identifier.
    pub(crate) fn session(&self) -> &[u8] {
        &self.settings.session
    }

    /// The settings participant `p` gets with its task, if it was selected.
    pub(crate) fn settings_for(&self, p: u64) -> Option<v1::SecAggSettings> {
        let index = self.index_of(ParticipantId(p))?;
        Some(v1::SecAggSettings {
            index,
            ..self.settings.clone()
        })
    }

    /// `p`'s index in the round.
    pub(crate) fn index_of(&self, p: ParticipantId) -> Option<u32> {
        self.selected.iter().position(|&q| q == p).map(|i| i as u32)
    }

    /// The participant at `index`.
    pub(crate) fn participant(&self, index: u32) -> Option<ParticipantId> {
        self.selected.get(index as usize).copied()
    }

    /// How many contributed, once the protocol gave its sum.
    pub(crate) fn summed(&self) -> Option<u32> {
        match self.step {
            Step::Over(Ok(n)) => Some(n as u32),
            _ => None,
        }
    }

    /// When the current step closes, unless everyone answers first.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        matches!(self.step, Step::Collecting(_)).then_some(self.deadline)
    }

    /// Whether participant `index` already sent step `step` (a retry of it is answered with
    /// the step's outcome, its content ignored).
    pub(crate) fn already_sent(&self, index: u32, step: u8) -> bool {
        self.sent.get(&step).is_some_and(|s| s.contains(&index))
    }

    fn mark_sent(&mut self, index: u32, step: u8) {
        self.waiting_for.remove(&index);
        self.sent.entry(step).or_default().insert(index);
    }

    /// Where the protocol stands.
    pub(crate) fn step(&self) -> &Step {
        &self.step
    }

    fn expect(&self, index: u32, step: u8) -> Result<(), Rejection> {
        match &self.step {
            Step::Collecting(s) if *s == step => {}
            Step::Over(Err(why)) => {
                return Err(Rejection::not_now(format!(
                    "secure aggregation of this round failed: {why}"
                )));
            }
            _ => {
                return Err(Rejection::not_now(format!(
                    "step {step} of secure aggregation is not open"
                )));
            }
        }
        if !self.waiting_for.contains(&index) {
            return Err(Rejection::already_held(format!(
                "participant {index} already answered step {step}, or was left out of it"
            )));
        }
        Ok(())
    }

    /// Step 1: a participant's keys, with its signed request kept for its neighbours.
    pub(crate) fn keys(
        &mut self,
        index: u32,
        keys: &v1::SecAggKeys,
        public_key: &[u8],
        signature: &[u8],
    ) -> Result<(), Rejection> {
        self.expect(index, 1)?;
        let advert =
            wire::keys_from_wire(index, keys).map_err(|e| Rejection::invalid(e.to_string()))?;
        self.server.receive_keys(advert).map_err(refused)?;
        self.adverts.insert(
            index,
            v1::RosterEntry {
                index,
                cipher_key: keys.cipher_key.clone(),
                mask_key: keys.mask_key.clone(),
                public_key: public_key.to_vec(),
                signature: signature.to_vec(),
            },
        );
        self.mark_sent(index, 1);
        Ok(())
    }

    /// Step 2: a participant's sealed shares.
    pub(crate) fn shares(
        &mut self,
        index: u32,
        shares: &v1::SecAggShares,
    ) -> Result<(), Rejection> {
        self.expect(index, 2)?;
        self.server
            .receive_shares(index, wire::shares_from_wire(shares))
            .map_err(refused)?;
        self.mark_sent(index, 2);
        Ok(())
    }

    /// Step 3: a participant's masked update and its signed commitment.
    pub(crate) fn masked(
        &mut self,
        index: u32,
        commitment: MaskedCommitment,
    ) -> Result<(), Rejection> {
        self.expect(index, 3)?;
        let values = wire::words_from_bytes(&commitment.bytes)
            .map_err(|e| Rejection::invalid(e.to_string()))?;
        self.server
            .receive_masked(MaskedInput {
                from: index,
                values,
            })
            .map_err(refused)?;
        self.commitments.insert(index, commitment);
        self.mark_sent(index, 3);
        Ok(())
    }

    /// Step 4: a survivor's shares for unmasking.
    pub(crate) fn unmask(
        &mut self,
        index: u32,
        unmask: &v1::SecAggUnmask,
    ) -> Result<(), Rejection> {
        self.expect(index, 4)?;
        let reply =
            wire::unmask_from_wire(index, unmask).map_err(|e| Rejection::invalid(e.to_string()))?;
        self.server.receive_unmasking(reply).map_err(refused)?;
        self.mark_sent(index, 4);
        Ok(())
    }

    /// Closes the current step if everyone it waits for answered or its deadline passed.
    /// Returns the sum when the last step closes with one.
    pub(crate) fn advance(&mut self, now: Instant) -> Option<Sum> {
        let Step::Collecting(step) = self.step else {
            return None;
        };
        if !self.waiting_for.is_empty() && now < self.deadline {
            return None;
        }
        self.deadline = now + self.step_timeout;
        let closed = match step {
            1 => self.server.close_keys().map(|rosters| {
                self.rosters = rosters
                    .into_iter()
                    .map(|(i, roster)| {
                        (
                            i,
                            roster
                                .iter()
                                .filter_map(|a| self.adverts.get(&a.from).cloned())
                                .collect(),
                        )
                    })
                    .collect();
                self.waiting_for = self.rosters.keys().copied().collect();
            }),
            2 => self.server.close_shares().map(|inboxes| {
                self.waiting_for = inboxes.keys().copied().collect();
                self.inboxes = inboxes;
            }),
            3 => self.server.close_masked().map(|survivors| {
                self.waiting_for = survivors.ids.iter().copied().collect();
                self.survivors = Some(survivors);
            }),
            _ => match self.server.finish() {
                Ok(sum) => {
                    self.step = Step::Over(Ok(sum.contributors.len()));
                    return Some(sum);
                }
                Err(e) => Err(e),
            },
        };
        self.step = match closed {
            Ok(()) => Step::Collecting(step + 1),
            Err(e) => {
                tracing::warn!(round = self.round, step, error = %e, "secure aggregation failed");
                Step::Over(Err(e.to_string()))
            }
        };
        None
    }

    /// What participant `index`, having sent step `sent`, is told once that step closed; `None`
    /// while it is still open.
    pub(crate) fn reply(&self, index: u32, sent: u8) -> Option<Result<v1::SecAggReply, Rejection>> {
        use v1::sec_agg_reply::Next;
        let closed = match &self.step {
            Step::Collecting(s) => *s > sent,
            Step::Over(_) => true,
        };
        if !closed {
            return None;
        }
        if let Step::Over(Err(why)) = &self.step {
            return Some(Err(Rejection::not_now(format!(
                "secure aggregation of this round failed: {why}"
            ))));
        }
        let left_out = || {
            Rejection::not_now(format!(
                "participant {index} was left out of step {}",
                sent + 1
            ))
        };
        let next = match sent {
            1 => self.rosters.get(&index).map(|r| {
                Next::Roster(v1::SecAggRoster {
                    neighbours: r.clone(),
                })
            }),
            2 => self
                .inboxes
                .get(&index)
                .map(|i| Next::Inbox(wire::shares_to_wire(i))),
            3 => self
                .survivors
                .as_ref()
                .map(|s| Next::Survivors(v1::SecAggSurvivors { ids: s.ids.clone() })),
            _ => match &self.step {
                Step::Over(Ok(n)) => Some(Next::Done(v1::SecAggDone {
                    summed: true,
                    contributors: *n as u32,
                })),
                _ => None,
            },
        };
        Some(
            next.map(|n| v1::SecAggReply { next: Some(n) })
                .ok_or_else(left_out),
        )
    }
}
