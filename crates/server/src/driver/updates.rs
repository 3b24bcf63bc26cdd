//! What participants send and read: the global parameters, updates (checked completely,
//! durable before acknowledged), evaluations, and the federation's status.

use super::*;

/// What an accepted update's sender hears: how the round stands, and the coordinator's
/// signed promise to record the update in the ledger.
#[derive(Debug, Clone)]
pub(crate) struct Acknowledgement {
    pub(crate) received: u32,
    pub(crate) quorum: u32,
    pub(crate) promise: UpdatePromise,
}

impl Driver {
    /// The parameters `digest` names: the current global model, or in a buffered federation
    /// a version someone still trains from. A member that holds (`have`) the model the
    /// current one was published from gets only the encoded change, under a lossy download
    /// encoding.
    pub(crate) fn parameters(&mut self, digest: &[u8], have: &[u8]) -> Result<Fetched, Rejection> {
        if self.buffered.is_some() {
            return self.buffered_parameters(digest, have);
        }
        if digest == self.published.digest.0 {
            Ok(self.current_parameters(have))
        } else {
            Err(Rejection::gone(format!(
                "parameters {} are not the current global model ({}); ask for a new task",
                hex::encode(digest),
                self.published.digest
            )))
        }
    }

    /// The current model for a member holding `have`: its change from `have` when it was
    /// published from that, else the whole model.
    pub(super) fn current_parameters(&self, have: &[u8]) -> Fetched {
        match &self.published.change {
            Some((from, change)) if from.0[..] == *have => Fetched {
                bytes: Arc::clone(change),
                encoding: self.config.training.download_encoding.to_string(),
            },
            _ => Fetched {
                bytes: Arc::clone(&self.published.bytes),
                encoding: String::new(),
            },
        }
    }

    /// Checks an update's header before its bytes are read: who, which round, how big.
    pub(crate) fn check_header(
        &mut self,
        h: &v1::UpdateHeader,
    ) -> Result<ParticipantId, Rejection> {
        if self.buffered.is_some() {
            return Ok(self.check_buffered_header(h)?.0);
        }
        let id = self.participant(&h.public_key)?;
        let (round, attempt, selected) = self.core.open_selection().ok_or_else(|| {
            Rejection::not_now(format!("no round is open; round {} is over", h.round))
        })?;
        if h.round != round || h.attempt != attempt {
            return Err(Rejection::not_now(format!(
                "late or early update: it is for round {} attempt {}, but round {round} attempt {attempt} is open",
                h.round, h.attempt
            )));
        }
        if !selected.contains(&id) {
            return Err(Rejection::not_permitted(format!(
                "participant {id} was not selected for round {round}"
            )));
        }
        if h.base_digest != self.published.digest.0 {
            return Err(Rejection::not_now(format!(
                "the update was trained from {}, not from round {round}'s base {}",
                hex::encode(&h.base_digest),
                self.published.digest
            )));
        }
        self.check_upload(h)?;
        if self.core.received() == 0 {
            pause_at(FaultPoint::BeforeUpdate);
        }
        Ok(id)
    }

    /// What every update's header is checked for, whatever its round: the federation's
    /// encoding, a sample count within bounds, the size the model and encoding make.
    pub(super) fn check_upload(&self, h: &v1::UpdateHeader) -> Result<UpdateCodec, Rejection> {
        let codec = self.update_codec(h)?;
        let (max, rule) = match self.charter.max_samples {
            Some(m) if m <= self.config.limits.max_samples => (m, "the charter's max_samples"),
            _ => (self.config.limits.max_samples, "limits.max_samples"),
        };
        if h.num_samples == 0 || h.num_samples > max {
            return Err(Rejection::out_of_range(format!(
                "num_samples {} is outside 1..={max} ({rule})",
                h.num_samples
            )));
        }
        let expected = codec.encoded_len(self.layout.num_values()) as u64;
        if h.total_bytes != expected {
            return Err(Rejection::invalid(format!(
                "wrong shape: the model has {} values ({expected} bytes in {codec}), the update announces {} bytes",
                self.layout.num_values(),
                h.total_bytes
            )));
        }
        Ok(codec)
    }

    /// The update's encoding: the federation's, and no other.
    fn update_codec(&self, h: &v1::UpdateHeader) -> Result<UpdateCodec, Rejection> {
        let ours = self.config.training.update_encoding;
        // An empty name is f32, as in ModelSpec.
        let theirs: UpdateCodec = match h.encoding.as_str() {
            "" => UpdateCodec::F32,
            name => name.parse().map_err(|_| {
                Rejection::invalid(format!(
                    "unknown encoding {name:?}; this federation's updates travel as {ours}"
                ))
            })?,
        };
        if theirs != ours {
            return Err(Rejection::invalid(format!(
                "the update is encoded as {theirs}, but this federation's charter sets {ours}"
            )));
        }
        Ok(ours)
    }

    /// Whether an upload in progress should pause for a crash test (`mid-upload`).
    pub(crate) fn mid_upload_point(&self) {
        if self.buffered.is_none() && self.core.received() >= 1 {
            pause_at(FaultPoint::MidUpload);
        }
    }

    /// Validates an update completely, stores it durably, then gives it to the core. Returns
    /// (results held this round, quorum). Under verification, `verdict` is its replay's
    /// digest (and time) when the draw picked it ([`Driver::draw_spot_check`]).
    pub(crate) fn accept(
        &mut self,
        h: &v1::UpdateHeader,
        bytes: &[u8],
        verdict: Option<(Digest, Duration)>,
    ) -> Result<Acknowledgement, Rejection> {
        if self.buffered.is_some() {
            return self.accept_buffered(h, bytes);
        }
        let id = self.check_header(h)?;
        let base = Arc::clone(self.core.global());
        let recipe = self.open_recipe(id);
        let result = self.decode_signed(h, id, &base, bytes, recipe)?;
        let digest = result.params.digest();
        self.core
            .check_result(h.round, &result)
            .map_err(refusal_status)?;
        self.judge(h, (id, recipe), digest, verdict)?;
        self.store_update(h, id, &result, digest)?;
        // Counted before the core sees it: the last update closes the round.
        let received = self.core.received() as u32 + 1;
        let now = self.now();
        let outcome = self.timed(|core| {
            core.handle_event(
                now,
                Event::Result {
                    round: h.round,
                    result,
                    digest,
                },
            )
        });
        if let EventOutcome::Refused(r) = outcome {
            // Checked a moment ago under the same lock, so this cannot happen; say so loudly.
            return Err(Rejection::internal(format!("refused after checking: {r}")));
        }
        tracing::info!(round = h.round, participant = id.0, "update accepted");
        // Promised before the round closes, so the promise is owed even if this update closed
        // it: its commitment is among that round's entries.
        let promise = self.promise(h, id, digest);
        self.process_actions().map_err(|e| self.storage_failed(e))?;
        Ok(Acknowledgement {
            received,
            quorum: self.config.rounds.quorum as u32,
            promise,
        })
    }

    /// Decodes an update against the parameters it trained from, and checks that it is what
    /// its sender signed (this federation, round, base, update and sample count, and under
    /// verifiable training the round's `recipe`) and that its loss is a number.
    pub(super) fn decode_signed(
        &self,
        h: &v1::UpdateHeader,
        id: ParticipantId,
        base: &ParamSet,
        bytes: &[u8],
        recipe: Option<harambee_identity::TrainingRecipe>,
    ) -> Result<FitResult, Rejection> {
        let params = self
            .update_codec(h)?
            .decode(base, bytes)
            .map_err(|e| Rejection::invalid(format!("undecodable update: {e}")))?;
        let digest = params.digest();
        if digest.0[..] != h.update_digest[..] {
            return Err(Rejection::invalid(format!(
                "the parameters hash to {digest}, not to the announced {}: truncated or altered in transit",
                hex::encode(&h.update_digest)
            )));
        }
        let key: [u8; 32] = h.public_key[..]
            .try_into()
            .map_err(|_| Rejection::invalid("bad key"))?;
        let signer = PublicKey::from_bytes(&key).map_err(|e| Rejection::invalid(e.to_string()))?;
        let signature: [u8; 64] = h
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| Rejection::unauthenticated("the signature must be 64 bytes"))?;
        let signed = SignedUpdate {
            statement: UpdateStatement {
                federation: self.config.federation_id.clone(),
                round: h.round,
                base: base.digest(),
                update: digest,
                num_samples: h.num_samples,
                recipe,
            },
            signer,
            signature,
        };
        signed.verify().map_err(|_| {
            Rejection::unauthenticated(if recipe.is_some() {
                "bad signature: it does not cover this federation, round, base, update, sample count and the round's training recipe with this key"
            } else {
                "bad signature: it does not cover this federation, round, base, update and sample count with this key"
            })
        })?;
        if !h.train_loss.is_finite() {
            return Err(Rejection::invalid("train_loss must be finite"));
        }
        Ok(FitResult {
            participant: id,
            params,
            num_samples: h.num_samples,
            train_loss: h.train_loss,
        })
    }

    /// Durable before acknowledged: the blob, then its record.
    pub(super) fn store_update(
        &mut self,
        h: &v1::UpdateHeader,
        id: ParticipantId,
        result: &FitResult,
        digest: Digest,
    ) -> Result<(), Rejection> {
        let blob = self
            .blobs
            .put(&Encoding::F32.encode(&result.params))
            .map_err(|e| self.storage_failed(e.into()))?;
        self.state
            .record_update(&UpdateRecord {
                round: h.round,
                attempt: h.attempt,
                participant: id.0,
                update_digest: digest,
                blob,
                num_samples: h.num_samples,
                train_loss: h.train_loss,
                signature: h.signature.clone(),
            })
            .map_err(|e| self.storage_failed(e.into()))
    }

    /// The coordinator's signed promise to record an update in the ledger.
    pub(super) fn promise(
        &self,
        h: &v1::UpdateHeader,
        id: ParticipantId,
        digest: Digest,
    ) -> UpdatePromise {
        UpdatePromise {
            federation: self.config.federation_id.clone(),
            round: h.round,
            attempt: h.attempt,
            participant: id.0,
            update_digest: digest.to_hex(),
            timestamp_ms: crate::gate::unix_ms(),
            signature: String::new(),
        }
        .signed(&self.key)
    }

    /// The latest signed tree head, with a consistency proof from a head of `since` entries
    /// the participant kept. A participant that kept a bigger tree than the ledger holds has
    /// caught the coordinator truncating it, and is told so.
    pub(crate) fn tree_head_since(&self, since: u64) -> Result<v1::TreeHeadReply, Rejection> {
        let Some(head) = &self.head else {
            return Ok(v1::TreeHeadReply::default());
        };
        if since > head.size {
            return Err(Rejection::out_of_range(format!(
                "you kept a tree head of {since} entries, but the ledger's latest has {}: keep your witness file, it is evidence",
                head.size
            )));
        }
        let consistency = if since == 0 {
            Vec::new()
        } else {
            self.ledger.consistency_proof(since, head.size)
        };
        Ok(v1::TreeHeadReply {
            size: head.size,
            root: head.root.to_vec(),
            timestamp_ms: head.timestamp_ms,
            signature: head.signature.clone(),
            consistency: consistency.iter().map(|h| h.to_vec()).collect(),
        })
    }

    /// Records a participant's evaluation of a round's result.
    pub(crate) fn evaluation(&mut self, r: &v1::EvaluationReport) -> Result<(), Rejection> {
        let id = self.participant(&r.public_key)?;
        let max = self.config.limits.max_samples;
        if r.examples == 0 || r.examples > max {
            return Err(Rejection::out_of_range(format!(
                "examples {} is outside 1..={max} (limits.max_samples)",
                r.examples
            )));
        }
        // Only a model that exists can be evaluated: a round already closed.
        let closed = self.versions_done();
        if r.round == 0 || r.round > closed {
            return Err(Rejection::out_of_range(format!(
                "round {} is not a closed round (1..={closed})",
                r.round
            )));
        }
        if !(r.accuracy.is_finite() && (0.0..=1.0).contains(&r.accuracy)) {
            return Err(Rejection::invalid("accuracy must be in [0, 1]"));
        }
        if !(r.loss.is_finite() && r.loss >= 0.0) {
            return Err(Rejection::invalid("loss must be finite and not negative"));
        }
        self.state
            .record_evaluation(r.round, id.0, r.examples, r.accuracy, r.loss)
            .map_err(|e| self.storage_failed(e.into()))?;
        self.evaluation_arrived();
        Ok(())
    }
}

/// The gRPC status for a refusal by the core.
pub(super) fn refusal_status(r: Refusal) -> Rejection {
    let message = r.to_string();
    match r {
        Refusal::Duplicate(_) => Rejection::already_held(format!("replay: {message}")),
        Refusal::WrongRound { .. } => Rejection::not_now(message),
        Refusal::UnknownParticipant(_) | Refusal::NotSelected(_) => {
            Rejection::not_permitted(message)
        }
        _ => Rejection::invalid(message),
    }
}
