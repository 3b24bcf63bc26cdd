//! Where the federation stands, as `GetStatus` reports it: a snapshot the actor publishes
//! after every job, so that readers never wait behind a write. The completed rounds are read
//! from the store again only after a round closed or an evaluation arrived.

use super::*;

/// How often evaluations that arrived are read into the status.
const EVALUATIONS_EVERY: Duration = Duration::from_millis(250);

/// The status as last published: the federation's state, and its completed rounds (shared,
/// since they change once a round and are read by every poll).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct StatusSnapshot {
    /// Everything but the completed rounds.
    pub(crate) now: v1::FederationStatus,
    /// The completed rounds, oldest first.
    pub(crate) completed: Arc<Vec<v1::RoundStatus>>,
}

impl StatusSnapshot {
    /// The status message.
    pub(crate) fn to_status(&self) -> v1::FederationStatus {
        v1::FederationStatus {
            completed: self.completed.as_ref().clone(),
            ..self.now.clone()
        }
    }
}

impl Driver {
    /// A subscription to the status snapshots.
    pub(crate) fn status_snapshots(&self) -> watch::Receiver<StatusSnapshot> {
        self.status_board.subscribe()
    }

    /// Publishes the status if it changed. A store that cannot be read keeps the last
    /// snapshot (a failed write stops the coordinator on its own path).
    pub(crate) fn publish_status(&mut self) {
        match self.status_snapshot() {
            Ok(next) => {
                self.status_board.send_if_modified(|old| {
                    let changed = *old != next;
                    if changed {
                        *old = next;
                    }
                    changed
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "the status could not be read; the last one stays")
            }
        }
    }

    /// Forgets the completed rounds read before: a round closed, or the federation ended.
    pub(super) fn completed_rounds_changed(&mut self) {
        self.completed_rounds = None;
    }

    /// Notes that an evaluation arrived. The rounds are read again at most every
    /// [`EVALUATIONS_EVERY`]: a thousand members reporting at once cost a few reads, not a
    /// thousand (the actor's ticks publish what is left within two seconds).
    pub(super) fn evaluation_arrived(&mut self) {
        self.evaluations_arrived = true;
    }

    /// Where the federation stands.
    pub(crate) fn status(&mut self) -> Result<v1::FederationStatus, Rejection> {
        Ok(self.status_snapshot()?.to_status())
    }

    fn status_snapshot(&mut self) -> Result<StatusSnapshot, Rejection> {
        let completed = self.completed_rounds()?;
        // Before the board is borrowed: `failure` reads it too.
        let error = self.failure();
        let board = self.board.borrow();
        let closed = completed.len() as u64;
        let training = self.buffered.as_ref().map(|run| run.progress().0);
        let (phase, round, selected) = match (&board.finished, self.core.open_selection()) {
            (Some(_), _) if error.is_some() => ("failed", closed, 0),
            (Some(_), _) => ("finished", closed, 0),
            (None, Some((round, _, selected))) => ("training", round, selected.len()),
            (None, None) => match training {
                Some(n) if n > 0 => ("training", closed + 1, n),
                _ => ("waiting", closed + 1, 0),
            },
        };
        let now = v1::FederationStatus {
            federation_id: self.config.federation_id.clone(),
            phase: phase.into(),
            round,
            rounds: self.config.rounds.rounds,
            selected: selected as u32,
            received: self.received() as u32,
            quorum: self
                .config
                .training
                .buffered
                .map_or(self.config.rounds.quorum, |r| r.buffer) as u32,
            enrolled: self.keys.len() as u32,
            global_digest: self.published.digest.0.to_vec(),
            completed: Vec::new(),
            error: error.unwrap_or_default(),
        };
        Ok(StatusSnapshot { now, completed })
    }

    /// The completed rounds with the accuracy and loss their participants reported.
    fn completed_rounds(&mut self) -> Result<Arc<Vec<v1::RoundStatus>>, Rejection> {
        let evaluations_due =
            self.evaluations_arrived && self.completed_read_at.elapsed() >= EVALUATIONS_EVERY;
        if let Some(rounds) = &self.completed_rounds
            && !evaluations_due
        {
            return Ok(Arc::clone(rounds));
        }
        self.completed_read_at = Instant::now();
        self.evaluations_arrived = false;
        let unreadable = |e: harambee_store::StoreError| Rejection::unavailable(e.to_string());
        let rounds = self.state.closed_rounds().map_err(unreadable)?;
        let evaluations: HashMap<u64, harambee_store::RoundEvaluation> = self
            .state
            .round_evaluations()
            .map_err(unreadable)?
            .into_iter()
            .map(|e| (e.round, e))
            .collect();
        let completed: Arc<Vec<v1::RoundStatus>> = Arc::new(
            rounds
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
                .collect(),
        );
        self.completed_rounds = Some(Arc::clone(&completed));
        Ok(completed)
    }
}
