//! Verifiable training's spot checks (docs/verification.md): a drawn share of each round's
//! updates is replayed before it is accepted. One that does not replay is refused, recorded
//! in the ledger as fraud with its sender's own signed statement as the evidence, and its
//! sender removed; the round goes on with the others.
//!
//! A replay is training, so it does not run on the coordinator's thread: the update is
//! checked and the draw made here ([`Driver::draw_spot_check`]), the replay runs on a blocking
//! thread ([`SpotCheck::run`]), and its verdict comes back with the update to
//! [`Driver::accept`]. While one of a member's updates is being replayed, it may not start
//! another, so no member can make the coordinator replay more than one update at a time.

use harambee_identity::TrainingRecipe;

use super::updates::refusal_status;

use super::*;

/// A replay the draw picked: the recipe the worker signed, from the round's base.
pub(crate) struct SpotCheck {
    replayer: Arc<crate::Replayer>,
    base: Arc<ParamSet>,
    recipe: TrainingRecipe,
    /// Who, for [`Driver::spot_check_ended`] if the call is abandoned.
    pub(crate) participant: u64,
}

impl SpotCheck {
    /// Replays the recipe: the digest it gives, and how long it took.
    pub(crate) fn run(&self) -> Result<(Digest, Duration), Rejection> {
        let started = Instant::now();
        let params = self
            .replayer
            .replay(&self.base, &self.recipe)
            .map_err(|e| {
                Rejection::internal(format!("the coordinator could not replay the update: {e}"))
            })?;
        Ok((params.digest(), started.elapsed()))
    }
}

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

    /// Draws whether to replay an update, with the charter's probability, and if so checks
    /// it as [`Driver::accept`] will (nothing is trained for an update that would be
    /// refused anyway). The draw happens only once the whole update is here, so a worker
    /// cannot know whether its update is checked.
    pub(crate) fn draw_spot_check(
        &mut self,
        h: &v1::UpdateHeader,
        bytes: &[u8],
    ) -> Result<Option<SpotCheck>, Rejection> {
        let (Some(replayer), Some(rule)) = (&self.replayer, self.config.training.verification)
        else {
            return Ok(None);
        };
        if rand::random::<f64>() >= rule.replay_fraction {
            return Ok(None);
        }
        let replayer = Arc::clone(replayer);
        let id = self.check_header(h)?;
        let base = Arc::clone(self.core.global());
        let recipe = self
            .open_recipe(id)
            .ok_or_else(|| Rejection::internal("no recipe for a selected worker"))?;
        let result = self.decode_signed(h, id, &base, bytes, Some(recipe))?;
        self.core
            .check_result(h.round, &result)
            .map_err(refusal_status)?;
        if !self.replaying.insert(id.0) {
            return Err(Rejection::not_now(
                "another update of yours is being replayed; wait for its answer",
            ));
        }
        Ok(Some(SpotCheck {
            replayer,
            base,
            recipe,
            participant: id.0,
        }))
    }

    /// A member's replay is over (answered, or its call abandoned).
    pub(crate) fn spot_check_ended(&mut self, participant: u64) {
        self.replaying.remove(&participant);
    }

    /// The verdict of an update's replay, if it was drawn: it stands, or it is fraud against
    /// the `recipe` it was signed with.
    pub(super) fn judge(
        &mut self,
        h: &v1::UpdateHeader,
        (id, recipe): (ParticipantId, Option<TrainingRecipe>),
        claimed: Digest,
        verdict: Option<(Digest, Duration)>,
    ) -> Result<(), Rejection> {
        let (Some((replayed, took)), Some(recipe)) = (verdict, recipe) else {
            return Ok(());
        };
        if replayed == claimed {
            tracing::info!(
                round = h.round,
                participant = id.0,
                ms = took.as_secs_f64() * 1e3,
                "spot check: the update replays bit for bit"
            );
            return Ok(());
        }
        let base = self.core.global().digest();
        self.record_fraud(h, id, base, recipe, claimed, replayed)?;
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
