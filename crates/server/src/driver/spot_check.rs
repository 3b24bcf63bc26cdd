//! Verifiable training's spot checks (docs/verification.md): a drawn share of each round's
//! updates is replayed before it is accepted. One that does not replay is refused, recorded
//! in the ledger as fraud with its sender's own signed statement as the evidence, and its
//! sender removed; the round goes on with the others.

use harambee_identity::TrainingRecipe;

use super::*;

impl Driver {
    /// The recipe the open round `open` gave `participant`.
    pub(super) fn recipe(&self, open: &OpenTask, participant: u64) -> Option<TrainingRecipe> {
        crate::replay::recipe_for(
            self.config.rounds.seed,
            open.round,
            open.attempt,
            &open.selected,
            &open.config,
            participant,
        )
    }

    /// Under verification: the recipe the open round gave `id`, which its update must be
    /// signed with.
    pub(super) fn open_recipe(&self, id: ParticipantId) -> Option<TrainingRecipe> {
        self.config.training.verification?;
        let open = self.board.borrow().open.clone()?;
        self.recipe(&open, id.0)
    }

    /// Replays the update with the charter's probability. The draw happens only once the
    /// update is here and signed, so a worker cannot know whether its update is checked.
    pub(super) fn spot_check(
        &mut self,
        h: &v1::UpdateHeader,
        id: ParticipantId,
        base: &ParamSet,
        claimed: Digest,
        recipe: TrainingRecipe,
    ) -> Result<(), Rejection> {
        let (Some(replayer), Some(rule)) = (&self.replayer, self.config.training.verification)
        else {
            return Ok(());
        };
        if rand::random::<f64>() >= rule.replay_fraction {
            return Ok(());
        }
        let started = Instant::now();
        let replayed = replayer
            .replay(base, &recipe)
            .map_err(|e| {
                Rejection::internal(format!("the coordinator could not replay the update: {e}"))
            })?
            .digest();
        let ms = started.elapsed().as_secs_f64() * 1e3;
        if replayed == claimed {
            tracing::info!(
                round = h.round,
                participant = id.0,
                ms,
                "spot check: the update replays bit for bit"
            );
            return Ok(());
        }
        self.record_fraud(h, id, base.digest(), recipe, claimed, replayed)?;
        Err(Rejection::not_permitted(format!(
            "the update does not replay: the recipe you signed gives {replayed} from round {}'s base, not your {claimed}; this is recorded as fraud in the ledger, and participant {id} is removed",
            h.round
        )))
    }

    /// Writes the fraud entry (durable before anything else changes), then removes the
    /// worker: never selected again, its calls refused, the open round no longer waiting.
    fn record_fraud(
        &mut self,
        h: &v1::UpdateHeader,
        id: ParticipantId,
        base: Digest,
        recipe: TrainingRecipe,
        claimed: Digest,
        replayed: Digest,
    ) -> Result<(), Rejection> {
        let mut entries = self.new_enrolments().map_err(|e| self.storage_failed(e))?;
        entries.push(Entry::Fraud {
            round: h.round,
            attempt: h.attempt,
            participant: id.0,
            base: base.to_hex(),
            recipe,
            claimed: claimed.to_hex(),
            replayed: replayed.to_hex(),
            num_samples: h.num_samples,
            signature: hex::encode(&h.signature),
        });
        self.append(entries).map_err(|e| self.storage_failed(e))?;
        self.fraudulent.insert(id.0);
        self.removed.insert(id.0);
        self.last_seen.remove(&id.0);
        self.feed(Event::Leave(id));
        tracing::warn!(
            round = h.round,
            participant = id.0,
            %claimed,
            %replayed,
            "fraud: an update did not replay; recorded in the ledger, and its sender removed"
        );
        self.process_actions().map_err(|e| self.storage_failed(e))
    }
}
