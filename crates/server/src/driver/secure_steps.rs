//! Secure aggregation's four steps around the open round: who may send what, when a step
//! closes, and how the sum reaches the core.

use super::*;

impl Driver {
    /// A receiver that changes whenever a secure-aggregation step closes.
    pub(crate) fn secure_progress(&self) -> watch::Receiver<u64> {
        self.secure_board.subscribe()
    }

    /// The open secure round, if `round` and `attempt` name it.
    pub(super) fn secure_round(
        &mut self,
        round: u64,
        attempt: u32,
    ) -> Result<&mut SecureRound, Rejection> {
        match self.secure.as_mut() {
            Some(s) if s.round == round && s.attempt == attempt => Ok(s),
            _ => Err(Rejection::not_now(format!(
                "round {round} attempt {attempt} is not running secure aggregation now"
            ))),
        }
    }

    /// Steps 1, 2 and 4 of secure aggregation: checks who sent it and its signature, hands it
    /// to the protocol. Returns the sender's index and the step, to wait on.
    pub(crate) fn secagg_step(&mut self, r: &v1::SecAggRequest) -> Result<(u32, u8), Rejection> {
        use harambee_proto::secagg::{signing_bytes, step};
        use prost::Message;
        use v1::sec_agg_request::Step as S;
        let id = self.participant(&r.public_key)?;
        let secure = self.secure_round(r.round, r.attempt)?;
        let index = secure.index_of(id).ok_or_else(|| {
            Rejection::not_permitted(format!(
                "participant {id} was not selected for round {}",
                r.round
            ))
        })?;
        let (number, body) = match &r.step {
            Some(S::Keys(k)) => (step::KEYS, k.encode_to_vec()),
            Some(S::Shares(s)) => (step::SHARES, s.encode_to_vec()),
            Some(S::Unmask(u)) => (step::UNMASK, u.encode_to_vec()),
            None => {
                return Err(Rejection::invalid(
                    "a secure-aggregation request names no step",
                ));
            }
        };
        let signer = PublicKey::from_bytes(
            r.public_key[..]
                .try_into()
                .map_err(|_| Rejection::invalid("bad key"))?,
        )
        .map_err(|e| Rejection::invalid(e.to_string()))?;
        signer
            .verify_raw(&signing_bytes(secure.session(), number, &body), &r.signature)
            .map_err(|_| Rejection::unauthenticated("bad signature on a secure-aggregation step: it must cover the session, the step and the message with this key"))?;
        if secure.already_sent(index, number) {
            return Ok((index, number));
        }
        match &r.step {
            Some(S::Keys(k)) => secure.keys(index, k, &r.public_key, &r.signature)?,
            Some(S::Shares(s)) => secure.shares(index, s)?,
            Some(S::Unmask(u)) => secure.unmask(index, u)?,
            None => {}
        }
        self.advance_secure().map_err(|e| self.storage_failed(e))?;
        Ok((index, number))
    }

    /// Whether `key` may send a masked update for (`round`, `attempt`) now: checked before
    /// a single byte of it is read.
    pub(crate) fn check_masked_caller(
        &mut self,
        key: &[u8; 32],
        round: u64,
        attempt: u32,
    ) -> Result<(), Rejection> {
        let id = self.participant(key)?;
        let secure = self.secure_round(round, attempt)?;
        secure.index_of(id).map(|_| ()).ok_or_else(|| {
            Rejection::not_permitted(format!(
                "participant {id} was not selected for round {round}"
            ))
        })
    }

    /// Step 3 of secure aggregation: a masked update with its signed commitment.
    pub(crate) fn secagg_masked(
        &mut self,
        h: &v1::MaskedHeader,
        bytes: Vec<u8>,
    ) -> Result<u32, Rejection> {
        let id = self.participant(&h.public_key)?;
        let base = self.published.digest;
        let federation = self.config.federation_id.clone();
        let secure = self.secure_round(h.round, h.attempt)?;
        let index = secure.index_of(id).ok_or_else(|| {
            Rejection::not_permitted(format!(
                "participant {id} was not selected for round {}",
                h.round
            ))
        })?;
        if secure.already_sent(index, 3) {
            return Ok(index);
        }
        let digest = Digest(Sha256::digest(&bytes).into());
        if digest.0[..] != h.masked_digest[..] {
            return Err(Rejection::invalid(
                "the masked update does not hash to the announced digest: truncated or altered in transit",
            ));
        }
        if !h.train_loss.is_finite() {
            return Err(Rejection::invalid("train_loss must be finite"));
        }
        let signer = PublicKey::from_bytes(
            h.public_key[..]
                .try_into()
                .map_err(|_| Rejection::invalid("bad key"))?,
        )
        .map_err(|e| Rejection::invalid(e.to_string()))?;
        let signature: [u8; 64] = h
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| Rejection::unauthenticated("the signature must be 64 bytes"))?;
        SignedUpdate {
            statement: UpdateStatement {
                federation,
                round: h.round,
                base,
                update: digest,
                num_samples: 0,
                recipe: None,
            },
            signer,
            signature,
        }
        .verify()
        .map_err(|_| {
            Rejection::unauthenticated("bad signature on the masked update's commitment")
        })?;
        secure.masked(
            index,
            MaskedCommitment {
                digest,
                signature: h.signature.clone(),
                train_loss: h.train_loss,
                bytes,
            },
        )?;
        self.advance_secure().map_err(|e| self.storage_failed(e))?;
        Ok(index)
    }

    /// What participant `index` hears once step `step` of round (`round`, `attempt`) closed.
    pub(crate) fn secagg_reply(
        &self,
        round: u64,
        attempt: u32,
        index: u32,
        step: u8,
    ) -> Option<Result<v1::SecAggReply, Rejection>> {
        match self.secure.as_ref() {
            Some(s) if s.round == round && s.attempt == attempt => s.reply(index, step),
            _ if step == harambee_proto::secagg::step::UNMASK
                && self
                    .secure_summed
                    .is_some_and(|(r, a, _)| r == round && a == attempt) =>
            {
                let contributors = self.secure_summed.map_or(0, |(_, _, n)| n);
                Some(Ok(v1::SecAggReply {
                    next: Some(v1::sec_agg_reply::Next::Done(v1::SecAggDone {
                        summed: true,
                        contributors,
                    })),
                }))
            }
            _ => Some(Err(Rejection::not_now(format!(
                "round {round} attempt {attempt} is no longer running secure aggregation"
            )))),
        }
    }

    /// Closes whatever secure-aggregation step is due; when the last one gives the sum, the
    /// commitments are recorded and the core closes the round on the sum.
    pub(super) fn advance_secure(&mut self) -> Result<(), ServerError> {
        let Some(secure) = self.secure.as_mut() else {
            return Ok(());
        };
        let before = secure.step().clone();
        let sum = secure.advance(Instant::now());
        let changed = *secure.step() != before;
        if let Some(sum) = sum {
            self.finish_secure(sum)?;
        }
        if changed {
            self.secure_board.send_modify(|v| *v += 1);
        }
        Ok(())
    }

    /// Records the contributors' commitments (durably, with their masked updates), then
    /// gives the core the decoded sum.
    pub(super) fn finish_secure(&mut self, sum: harambee_secagg::Sum) -> Result<(), ServerError> {
        let Some(secure) = self.secure.as_ref() else {
            return Ok(());
        };
        let (round, attempt) = (secure.round, secure.attempt);
        let mut decoded = secure.fixed.decode(&sum.values);
        let within_clip = (decoded.len() > self.layout.num_values())
            .then(|| f64::from(decoded.pop().unwrap_or(0.0)));
        let mut contributors = Vec::with_capacity(sum.contributors.len());
        for &index in &sum.contributors {
            let (Some(p), Some(c)) = (secure.participant(index), secure.commitments.get(&index))
            else {
                continue;
            };
            let blob = self.blobs.put(&c.bytes)?;
            self.state.record_update(&UpdateRecord {
                round,
                attempt,
                participant: p.0,
                update_digest: c.digest,
                blob,
                num_samples: 0,
                train_loss: c.train_loss,
                signature: c.signature.clone(),
            })?;
            contributors.push(p);
        }
        let secure_sum = harambee_strategy::SecureSum {
            delta_sum: ParamSet::from_values(self.layout.clone(), decoded)?,
            contributors,
            selected: 0,
            within_clip,
        };
        let now = self.now();
        if let EventOutcome::Refused(r) = self.core.handle_event(
            now,
            Event::SecureSum {
                round,
                sum: secure_sum,
            },
        ) {
            tracing::warn!(round, refusal = %r, "the secure sum was refused");
        }
        tracing::info!(
            round,
            contributors = sum.contributors.len(),
            "secure aggregation complete"
        );
        self.process_actions()
    }

    /// Starts the protocol for a round that opened, when the federation runs secure
    /// aggregation. Steps after the first get `limits.secagg_step_s` each; the first gets
    /// whatever that leaves of the round's deadline (at least half of it) for training.
    pub(super) fn start_secure(
        &self,
        open: &harambee_coordinator::OpenRound,
        deadline: Instant,
    ) -> Result<Option<SecureRound>, ServerError> {
        if !self.config.training.secure_aggregation {
            return Ok(None);
        }
        let step = Duration::from_secs_f64(self.config.limits.secagg_step_s);
        let round_s = Duration::from_secs_f64(self.config.rounds.deadline_s);
        let keys_deadline = Instant::now()
            + round_s
                .saturating_sub(3 * step)
                .max(round_s / 2)
                .min(deadline.saturating_duration_since(Instant::now()));
        let min_survivors = self
            .charter
            .secure_aggregation
            .map_or(0, |r| r.min_survivors)
            .max(self.config.rounds.quorum);
        SecureRound::new(
            open,
            &self.config.federation_id,
            min_survivors,
            self.config.training.secagg_range,
            keys_deadline,
            step,
        )
        .map(Some)
        .map_err(|e| {
            ServerError::Config(format!("secure aggregation for round {}: {e}", open.round))
        })
    }
}

/// A federation whose charter requires secure aggregation must run it, and secure aggregation
/// needs a strategy that works on a sum.
pub(super) fn check_secure_aggregation(
    charter: &Charter,
    config: &FederationConfig,
) -> Result<(), ServerError> {
    if charter.secure_aggregation.is_some() && !config.training.secure_aggregation {
        return Err(ServerError::Config(
            "the charter requires secure aggregation: set training.secure_aggregation = true"
                .into(),
        ));
    }
    let blind = matches!(
        config.training.strategy,
        harambee_strategy::StrategyConfig::FedAvg
            | harambee_strategy::StrategyConfig::DpFedAvg { .. }
    );
    if config.training.secure_aggregation && !blind {
        return Err(ServerError::Config(format!(
            "secure aggregation needs fedavg or dp-fedavg; {} combines individual updates",
            config.training.strategy
        )));
    }
    Ok(())
}
