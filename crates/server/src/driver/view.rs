//! The driver as the dashboard sees it: read-only views of the federation, and the stewards'
//! signed requests carried out.

use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;
use std::time::Instant;

use harambee_charter::Role;
use harambee_coordinator::Event;
use harambee_dashboard::api::{
    AdminReply, CharterRules, CurrentRound, FederationInfo, LedgerRecord, Member, MemberState,
    Overview, Phase, PrivacyBudget, PrivacySpent, RoundDetail, RoundRow, Steward, TreeHeadInfo,
    UpdateInput,
};
use harambee_dashboard::{
    AdminError, Authorised, FederationView, Gauges, StewardAction, ViewError, unix_ms,
};
use harambee_ledger::Entry;
use harambee_store::{RoundEvaluation, StewardActionRecord};
use harambee_strategy::ParticipantId;

use super::Driver;
use crate::actor::Actor;

/// Whether the federation is paused, and who was removed, after the stewards' requests that
/// took effect, in order.
pub(super) fn steward_state(actions: &[StewardActionRecord]) -> (bool, BTreeSet<u64>) {
    let mut paused = false;
    let mut removed = BTreeSet::new();
    for a in actions.iter().filter(|a| a.applied) {
        match (a.action.as_str(), a.participant) {
            ("pause", _) => paused = true,
            ("resume", _) => paused = false,
            ("remove", Some(p)) => {
                removed.insert(p);
            }
            _ => {}
        }
    }
    (paused, removed)
}

/// A monotonic instant as wall-clock milliseconds, through one fixed anchor, so that the same
/// instant always maps to the same number (the live view only changes when something did).
fn unix_at(at: Instant) -> u64 {
    static ANCHOR: OnceLock<(Instant, u64)> = OnceLock::new();
    let (anchor, anchor_ms) = *ANCHOR.get_or_init(|| (Instant::now(), unix_ms()));
    if at >= anchor {
        anchor_ms + at.duration_since(anchor).as_millis() as u64
    } else {
        anchor_ms.saturating_sub(anchor.duration_since(at).as_millis() as u64)
    }
}

fn unavailable(e: impl std::fmt::Display) -> ViewError {
    ViewError(format!("the coordinator's state could not be read: {e}"))
}

/// The dashboard's handle on a running coordinator: each view is a job for its actor (the
/// dashboard calls them from its blocking pool).
pub(crate) struct CoordinatorView {
    actor: Actor,
}

impl CoordinatorView {
    pub(crate) fn new(actor: Actor) -> Self {
        Self { actor }
    }

    fn read<T: Send + 'static>(
        &self,
        view: impl FnOnce(&Driver) -> Result<T, ViewError> + Send + 'static,
    ) -> Result<T, ViewError> {
        self.actor
            .call_blocking(move |d| Ok(view(d)))
            .map_err(unavailable)?
    }
}

impl FederationView for CoordinatorView {
    fn federation(&self) -> Result<FederationInfo, ViewError> {
        self.read(|d| Ok(d.federation_info()))
    }

    fn overview(&self) -> Result<Overview, ViewError> {
        self.read(Driver::overview)
    }

    fn rounds(&self) -> Result<Vec<RoundRow>, ViewError> {
        self.read(Driver::round_rows)
    }

    fn round(&self, round: u64) -> Result<Option<RoundDetail>, ViewError> {
        self.read(move |d| d.round_detail(round))
    }

    fn gauges(&self) -> Result<Gauges, ViewError> {
        self.read(Driver::gauges)
    }

    fn apply(&self, action: &StewardAction, by: &Authorised) -> Result<AdminReply, AdminError> {
        let (action, by) = (action.clone(), by.clone());
        self.actor
            .call_blocking(move |d| Ok(d.apply_steward(&action, &by)))
            .map_err(|e| AdminError::Unavailable(e.to_string()))?
    }
}

impl Driver {
    /// The `/metrics` registry this driver records into.
    pub(crate) fn metrics(&self) -> harambee_dashboard::Metrics {
        self.metrics.clone()
    }

    /// Whether a steward removed the participant holding this key.
    pub(crate) fn removed_key(&self, key: &[u8; 32]) -> bool {
        self.keys
            .get(key)
            .is_some_and(|id| self.removed.contains(&id.0))
    }

    fn federation_info(&self) -> FederationInfo {
        let c = &self.charter;
        FederationInfo {
            name: self.config.name.clone(),
            federation_id: self.config.federation_id.clone(),
            coordinator_url: self.config.public_url.clone(),
            coordinator_key: self.key.public().to_string(),
            charter_sha256: c.hash(),
            charter: CharterRules {
                task: c.task.clone(),
                data_licence: c.data_licence.clone(),
                model_licence: c.model_licence.clone(),
                enrolment: format!("{:?}", c.enrolment).to_lowercase(),
                strategies: c.strategies.clone(),
                min_quorum: c.min_quorum,
                max_deadline_s: c.max_deadline_s,
                max_rounds: c.max_rounds,
                amendment_threshold: c.amendment_threshold,
                privacy: c.privacy.map(|b| PrivacyBudget {
                    epsilon: b.epsilon,
                    delta: b.delta,
                }),
            },
            stewards: c
                .members
                .iter()
                .filter(|m| m.role == Role::Steward)
                .map(|m| Steward {
                    name: m.name.clone(),
                    public_key: m.public_key.clone(),
                })
                .collect(),
            strategy: self.config.training.strategy.to_string(),
            rounds: self.config.rounds.rounds,
            min_participants: self.config.rounds.min_participants,
            quorum: self.config.rounds.quorum,
            deadline_s: self.config.rounds.deadline_s,
        }
    }

    fn completed(&self) -> Result<u64, ViewError> {
        Ok(self.state.checkpoint().map_err(unavailable)?.completed)
    }

    fn current_round(&self, completed: u64) -> CurrentRound {
        // Before the board is borrowed: `failure` reads it too.
        let error = self.failure();
        let board = self.board.borrow();
        let open = self.core.open_selection();
        let (phase, round) = match (&board.finished, &open) {
            (Some(_), _) if error.is_some() => (Phase::Failed, completed),
            (Some(_), _) => (Phase::Finished, completed),
            (None, Some((round, ..))) => (Phase::Training, *round),
            (None, None) if self.is_paused() => (Phase::Paused, completed + 1),
            (None, None) => (Phase::Waiting, completed + 1),
        };
        let (attempt, selected) = open
            .map(|(_, attempt, selected)| (attempt, selected.iter().map(|p| p.0).collect()))
            .unwrap_or_default();
        CurrentRound {
            phase,
            round,
            rounds: self.config.rounds.rounds,
            attempt,
            selected,
            received: self.received() as u32,
            quorum: self.config.rounds.quorum as u32,
            deadline_ms: board.open.as_ref().map(|o| unix_at(o.deadline)),
            paused: self.is_paused(),
            error,
        }
    }

    fn members(&self) -> Result<Vec<Member>, ViewError> {
        let open = self.core.open_selection();
        let selected: BTreeSet<u64> = match (&open, &self.buffered) {
            (Some((_, _, s)), _) => s.iter().map(|p| p.0).collect(),
            (None, Some(run)) => run.training(),
            (None, None) => BTreeSet::new(),
        };
        let uploaded: BTreeSet<u64> = match &open {
            Some((round, attempt, _)) => self
                .state
                .updates(*round, *attempt)
                .map_err(unavailable)?
                .iter()
                .map(|u| u.participant)
                .collect(),
            None => BTreeSet::new(),
        };
        let keys: HashMap<u64, String> = self
            .keys
            .iter()
            .map(|(key, id)| (id.0, hex::encode(key)))
            .collect();
        let members = self
            .names
            .iter()
            .map(|(&id, name)| {
                let public_key = keys.get(&id).cloned().unwrap_or_default();
                let alive = self.last_seen.contains_key(&id);
                let state = if self.removed.contains(&id) {
                    MemberState::Removed
                } else if selected.contains(&id) && uploaded.contains(&id) {
                    MemberState::Uploaded
                } else if !alive {
                    MemberState::Dropped
                } else if selected.contains(&id) {
                    MemberState::Training
                } else {
                    MemberState::Idle
                };
                let role = self
                    .charter
                    .members
                    .iter()
                    .find(|m| m.public_key == public_key)
                    .map(|m| format!("{:?}", m.role).to_lowercase());
                Member {
                    id,
                    name: name.clone(),
                    public_key,
                    role,
                    state,
                    last_seen_ms: self.last_seen.get(&id).map(|&t| unix_at(t)),
                    waiting: self.waiting.contains_key(&id),
                }
            })
            .collect();
        Ok(members)
    }

    fn tree_head(&self) -> Option<TreeHeadInfo> {
        let head = self.head.as_ref()?;
        let key = self.key.public().to_string();
        let folder = self
            .model_path
            .parent()
            .map_or_else(|| "DIR".into(), |p| p.display().to_string());
        Some(TreeHeadInfo {
            size: head.size,
            root: hex::encode(head.root),
            timestamp_ms: head.timestamp_ms,
            signature: hex::encode(&head.signature),
            verify: format!("harambee ledger verify {folder} --coordinator-key {key}"),
            coordinator_key: key,
        })
    }

    fn overview(&self) -> Result<Overview, ViewError> {
        let completed = self.completed()?;
        Ok(Overview {
            round: self.current_round(completed),
            members: self.members()?,
            head: self.tree_head(),
            privacy: self.charter.privacy.map(|b| PrivacySpent {
                epsilon_budget: b.epsilon,
                delta: b.delta,
                epsilon_spent: crate::privacy::epsilon_after(
                    &self.charter,
                    &self.config,
                    completed,
                )
                .unwrap_or(0.0),
            }),
            rounds_completed: completed,
        })
    }

    /// ε after each round, as its ledger entry records it.
    fn epsilons(&self) -> HashMap<u64, f64> {
        const PREFIX: &[u8] = br#"{"type":"round-result""#;
        self.ledger
            .entries()
            .iter()
            .filter(|bytes| bytes.starts_with(PREFIX))
            .filter_map(|bytes| match Entry::parse(bytes) {
                Ok(Entry::RoundResult {
                    round,
                    epsilon: Some(e),
                    ..
                }) => Some((round, e)),
                _ => None,
            })
            .collect()
    }

    fn round_rows(&self) -> Result<Vec<RoundRow>, ViewError> {
        let evaluations: HashMap<u64, RoundEvaluation> = self
            .state
            .round_evaluations()
            .map_err(unavailable)?
            .into_iter()
            .map(|e| (e.round, e))
            .collect();
        let epsilon = if self.charter.privacy.is_some() {
            self.epsilons()
        } else {
            HashMap::new()
        };
        Ok(self
            .state
            .closed_rounds()
            .map_err(unavailable)?
            .into_iter()
            .map(|r| RoundRow {
                round: r.round,
                contributors: r.contributors,
                train_loss: r.train_loss,
                accuracy: evaluations.get(&r.round).map(|e| e.accuracy),
                validation_loss: evaluations.get(&r.round).and_then(|e| e.loss),
                global_digest: r.global_digest.to_hex(),
                epsilon: epsilon.get(&r.round).copied(),
            })
            .collect())
    }

    fn round_detail(&self, n: u64) -> Result<Option<RoundDetail>, ViewError> {
        let result = self.round_rows()?.into_iter().find(|r| r.round == n);
        let open = self.core.open_selection().filter(|(round, ..)| *round == n);
        if result.is_none() && open.is_none() {
            return Ok(None);
        }
        let mut selected = Vec::new();
        let mut ledger = Vec::new();
        for (index, bytes) in self.ledger.entries().iter().enumerate() {
            let Ok(entry) = Entry::parse(bytes) else {
                continue;
            };
            let ours = matches!(
                &entry,
                Entry::RoundOpen { round, .. }
                    | Entry::UpdateCommitment { round, .. }
                    | Entry::Fraud { round, .. }
                    | Entry::RoundResult { round, .. } if *round == n
            );
            if !ours {
                continue;
            }
            if let Entry::RoundOpen { selected: s, .. } = &entry {
                selected.clone_from(s);
            }
            ledger.push(LedgerRecord {
                index: index as u64,
                entry: serde_json::from_slice(bytes).map_err(unavailable)?,
            });
        }
        if let Some((_, _, s)) = &open {
            selected = s.iter().map(|p| p.0).collect();
        }
        let inputs = self
            .state
            .updates_of_round(n)
            .map_err(unavailable)?
            .into_iter()
            .map(|u| UpdateInput {
                participant: u.participant,
                attempt: u.attempt,
                update_digest: u.update_digest.to_hex(),
                num_samples: u.num_samples,
                train_loss: u.train_loss,
                signature: hex::encode(&u.signature),
            })
            .collect();
        Ok(Some(RoundDetail {
            round: n,
            status: if result.is_some() { "closed" } else { "open" }.into(),
            result,
            selected,
            inputs,
            ledger,
        }))
    }

    fn gauges(&self) -> Result<Gauges, ViewError> {
        let round = self.current_round(self.completed()?);
        Ok(Gauges {
            connected: self.last_seen.len() as u64,
            enrolled: self.names.len() as u64,
            ledger_entries: self.ledger.len(),
            round: round.round,
            paused: round.paused,
        })
    }

    /// Why a steward's action cannot apply now, if it cannot.
    fn steward_refusal(&self, action: &StewardAction) -> Option<AdminError> {
        if self.board.borrow().finished.is_some() {
            return Some(AdminError::Conflict(
                "the federation is over; there is nothing left to change".into(),
            ));
        }
        match action {
            StewardAction::Pause if self.is_paused() => Some(AdminError::Conflict(
                "the federation is already paused".into(),
            )),
            StewardAction::Resume if !self.is_paused() => {
                Some(AdminError::Conflict("the federation is not paused".into()))
            }
            StewardAction::Remove { participant } if !self.names.contains_key(participant) => {
                Some(AdminError::UnknownParticipant(*participant))
            }
            StewardAction::Remove { participant } if self.removed.contains(participant) => Some(
                AdminError::Conflict(format!("participant {participant} was already removed")),
            ),
            _ => None,
        }
    }

    /// Carries out a steward's request: recorded first (its nonce, whether it applies or
    /// not, so that it can never be replayed), then applied.
    fn apply_steward(
        &mut self,
        action: &StewardAction,
        by: &Authorised,
    ) -> Result<AdminReply, AdminError> {
        let refusal = self.steward_refusal(action);
        let record = StewardActionRecord {
            nonce: by.nonce.clone(),
            steward: by.steward.clone(),
            timestamp_ms: by.timestamp_ms,
            action: action.name().into(),
            participant: match action {
                StewardAction::Remove { participant } => Some(*participant),
                _ => None,
            },
            applied: refusal.is_none(),
            refusal: refusal
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
        };
        let fresh = self
            .state
            .record_steward_action(&record)
            .map_err(|e| AdminError::Unavailable(e.to_string()))?;
        if !fresh {
            return Err(AdminError::Replay);
        }
        if let Some(refusal) = refusal {
            return Err(refusal);
        }
        match action {
            StewardAction::Pause => self.feed(Event::Pause),
            StewardAction::Resume => self.feed(Event::Resume),
            StewardAction::Remove { participant } => {
                self.removed.insert(*participant);
                self.last_seen.remove(participant);
                self.feed(Event::Leave(ParticipantId(*participant)));
            }
        }
        tracing::info!(
            action = action.name(),
            steward = %by.steward,
            "a steward's request took effect"
        );
        if let Err(e) = self.process_actions() {
            let status = self.storage_failed(e);
            return Err(AdminError::Unavailable(status.to_string()));
        }
        Ok(AdminReply {
            applied: action.name().into(),
            paused: self.is_paused(),
            removed: self.removed.iter().copied().collect(),
        })
    }
}
