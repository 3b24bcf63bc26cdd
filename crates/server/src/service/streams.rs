//! The client streams, an update and a masked update: the caller's proof is checked on the
//! header, and its round on the actor, before a byte of the body is read.

use std::sync::Arc;
use std::time::Duration;

use harambee_params::Digest;

use harambee_proto::auth::{body_digest, method};
use harambee_proto::{CallProof, v1};
use tokio::sync::watch;
use tonic::{Request, Response, Status, Streaming};

use super::{Caller, Service, refusal_reason};
use crate::actor::Actor;
use crate::fault::{FaultPoint, is_armed};
use crate::gate::same_key;

/// Ends a member's replay on the coordinator's thread when dropped.
struct ReplayGuard {
    actor: Actor,
    participant: u64,
}

impl Drop for ReplayGuard {
    fn drop(&mut self) {
        let participant = self.participant;
        self.actor.tell(move |d| d.spot_check_ended(participant));
    }
}

impl Service {
    /// Receives, checks and stores one update (see the driver's `accept`).
    pub(super) async fn receive_update(
        &self,
        request: Request<Streaming<v1::UpdateChunk>>,
    ) -> Result<Response<v1::SubmitReply>, Status> {
        self.gate.throttle(request.remote_addr())?;
        let proof = CallProof::of(&request);
        let mut stream = request.into_inner();
        let header = match stream.message().await? {
            Some(v1::UpdateChunk {
                part: Some(v1::update_chunk::Part::Header(h)),
            }) => h,
            Some(_) => {
                return Err(Status::invalid_argument(
                    "the first message of an update must be its header",
                ));
            }
            None => return Err(Status::invalid_argument("empty update stream")),
        };
        let key = self.check_proof(
            proof,
            method::SUBMIT_UPDATE,
            &body_digest(&header),
            Caller::Member,
        )?;
        same_key(&header.public_key, &key)?;
        let h = header.clone();
        self.with_driver(move |d| d.check_header(&h).map(|_| ()))
            .await?;
        let total = usize::try_from(header.total_bytes).unwrap_or(usize::MAX);
        let mut bytes = Vec::with_capacity(total);
        // The crash tests' hook halfway through an upload; a trip to the actor only when armed.
        let mut halfway_checked = !is_armed(FaultPoint::MidUpload);
        while let Some(chunk) = stream.message().await? {
            match chunk.part {
                Some(v1::update_chunk::Part::Data(data)) => {
                    if bytes.len() + data.len() > total {
                        return Err(Status::invalid_argument(format!(
                            "more bytes than the header announced ({total})"
                        )));
                    }
                    self.metrics.received(data.len());
                    bytes.extend_from_slice(&data);
                    if !halfway_checked && bytes.len() * 2 >= total {
                        halfway_checked = true;
                        // On the actor's thread: a crash test's pause must not stall a
                        // runtime worker that still has acknowledgements to send.
                        self.with_driver(|d| {
                            d.mid_upload_point();
                            Ok(())
                        })
                        .await?;
                    }
                }
                Some(v1::update_chunk::Part::Header(_)) => {
                    return Err(Status::invalid_argument(
                        "a second header in one update stream",
                    ));
                }
                None => return Err(Status::invalid_argument("an update chunk with no content")),
            }
        }
        if bytes.len() < total {
            return Err(Status::invalid_argument(format!(
                "truncated stream: received {} of the {total} bytes announced",
                bytes.len()
            )));
        }
        let bytes = Arc::new(bytes);
        // Held until the update is answered: its member may not start another replay before.
        let (verdict, _replaying) = self.spot_check(&header, &bytes).await?;
        let ack = self
            .with_driver(move |d| d.accept(&header, &bytes, verdict))
            .await?;
        Ok(Response::new(v1::SubmitReply {
            accepted: true,
            received: ack.received,
            quorum: ack.quorum,
            promise_timestamp_ms: ack.promise.timestamp_ms,
            promise_signature: hex::decode(&ack.promise.signature).unwrap_or_default(),
        }))
    }

    /// Under verifiable training: whether the draw picks this update for a replay and, if it
    /// does, the replay's digest and time, computed on a blocking thread so that the
    /// coordinator's thread goes on meanwhile. The guard ends the member's replay when
    /// dropped, however the call ends.
    async fn spot_check(
        &self,
        header: &v1::UpdateHeader,
        bytes: &Arc<Vec<u8>>,
    ) -> Result<(Option<(Digest, Duration)>, Option<ReplayGuard>), Status> {
        if !self.spec.reproducible {
            return Ok((None, None));
        }
        let (h, b) = (header.clone(), Arc::clone(bytes));
        let Some(check) = self.with_driver(move |d| d.draw_spot_check(&h, &b)).await? else {
            return Ok((None, None));
        };
        let guard = ReplayGuard {
            actor: self.actor.clone(),
            participant: check.participant,
        };
        let verdict = tokio::task::spawn_blocking(move || check.run())
            .await
            .map_err(|e| Status::internal(format!("the replay stopped: {e}")))??;
        Ok((Some(verdict), Some(guard)))
    }

    /// Receives, checks and hands on one masked update (secure aggregation's step 3), then
    /// waits for the step to close.
    pub(super) async fn receive_masked(
        &self,
        request: Request<Streaming<v1::MaskedChunk>>,
    ) -> Result<Response<v1::SecAggReply>, Status> {
        self.gate.throttle(request.remote_addr())?;
        let proof = CallProof::of(&request);
        let mut stream = request.into_inner();
        let header = match stream.message().await? {
            Some(v1::MaskedChunk {
                part: Some(v1::masked_chunk::Part::Header(h)),
            }) => h,
            Some(_) => {
                return Err(Status::invalid_argument(
                    "the first message of a masked update must be its header",
                ));
            }
            None => return Err(Status::invalid_argument("empty masked-update stream")),
        };
        let key = self.check_proof(
            proof,
            method::SEC_AGG_MASKED,
            &body_digest(&header),
            Caller::Member,
        )?;
        same_key(&header.public_key, &key)?;
        let total = usize::try_from(header.total_bytes).unwrap_or(usize::MAX);
        let expected = 4 * self.masked_words();
        if total != expected && total != expected + 4 {
            return Err(Status::invalid_argument(format!(
                "wrong shape: a masked update is {expected} bytes (or 4 more with the clip report), not {total}"
            )));
        }
        // The caller must be selected for this very secure round before its bytes are read.
        let (round, attempt) = (header.round, header.attempt);
        self.with_driver(move |d| d.check_masked_caller(&key, round, attempt))
            .await?;
        let mut bytes = Vec::with_capacity(total);
        while let Some(chunk) = stream.message().await? {
            match chunk.part {
                Some(v1::masked_chunk::Part::Data(data)) if bytes.len() + data.len() <= total => {
                    bytes.extend_from_slice(&data);
                }
                Some(v1::masked_chunk::Part::Data(_)) => {
                    return Err(Status::invalid_argument(format!(
                        "more bytes than the header announced ({total})"
                    )));
                }
                _ => return Err(Status::invalid_argument("a masked chunk must hold data")),
            }
        }
        if bytes.len() < total {
            return Err(Status::invalid_argument(format!(
                "truncated stream: received {} of the {total} bytes announced",
                bytes.len()
            )));
        }
        let (round, attempt) = (header.round, header.attempt);
        let mut progress = self.secure_progress.clone();
        let received = bytes.len();
        let index = match self
            .actor
            .call(move |d| d.secagg_masked(&header, bytes))
            .await
        {
            Ok(index) => {
                self.metrics.received(received);
                self.metrics.update_accepted();
                index
            }
            Err(rejection) => {
                let status = Status::from(rejection);
                self.metrics.update_refused(refusal_reason(status.code()));
                return Err(status);
            }
        };
        self.await_step(&mut progress, round, attempt, index, 3)
            .await
    }

    /// Values in a masked update: one per parameter (a clip report adds one more).
    fn masked_words(&self) -> usize {
        self.spec
            .tensors
            .iter()
            .map(|t| t.shape.iter().product::<u64>() as usize)
            .sum()
    }

    /// Waits until step `step` of the secure round closes, then answers with what the
    /// participant needs next. Bounded by the longest wait the coordinator allows per step.
    pub(super) async fn await_step(
        &self,
        progress: &mut watch::Receiver<u64>,
        round: u64,
        attempt: u32,
        index: u32,
        step: u8,
    ) -> Result<Response<v1::SecAggReply>, Status> {
        let until = tokio::time::Instant::now() + Duration::from_secs(600);
        loop {
            let reply = self
                .with_driver(move |d| Ok(d.secagg_reply(round, attempt, index, step)))
                .await?;
            if let Some(reply) = reply {
                return reply.map(Response::new).map_err(Status::from);
            }
            match tokio::time::timeout_at(until, progress.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(Status::unavailable("the coordinator is shutting down")),
                Err(_) => return Err(Status::deadline_exceeded("the step did not close in time")),
            }
        }
    }
}
