//! The gRPC face of the coordinator: authenticate, check cheaply, hand the work to the actor
//! that owns the driver, and turn its domain answers (a [`Rejection`]) into gRPC statuses: the
//! only place where they meet.

use std::pin::Pin;
use std::time::Duration;

use harambee_identity::PublicKey;
use harambee_proto::auth::{body_digest, method};
use harambee_proto::{CallProof, CoordinatorService, chunk_ranges, v1};
use tokio::sync::watch;
use tokio_stream::{Stream, StreamExt};
use tonic::{Code, Request, Response, Status, Streaming};

use harambee_dashboard::{Metrics, RefusalReason};

use crate::actor::Actor;
use crate::driver::{Assignment, Board, Driver, Roster, StatusSnapshot};
use crate::gate::{Call, Gate, same_key, unix_ms};
use crate::rejection::{Rejection, Why};

mod streams;

/// The coordinator's gRPC service.
pub(crate) struct Service {
    actor: Actor,
    /// The enrolled keys, read without the actor.
    roster: Roster,
    board: watch::Receiver<Board>,
    /// What `GetStatus` answers.
    status: watch::Receiver<StatusSnapshot>,
    /// Bumped whenever a secure-aggregation step closes.
    secure_progress: watch::Receiver<u64>,
    gate: Gate,
    max_wait_ms: u32,
    federation_id: String,
    spec: v1::ModelSpec,
    charter_sha256: String,
    coordinator_key: String,
    metrics: Metrics,
}

/// How strongly a call must prove its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// An enrolled member: full proof, nonce remembered, member's rate limit.
    Member,
    /// A key asking to enrol: it signs like a member, but a stranger's nonces are not
    /// remembered (enrolment is idempotent, and strangers must not grow our memory).
    Stranger,
}

impl Service {
    /// The service of `driver`, read once here before the driver moves to its `actor`.
    pub(crate) fn new(driver: &Driver, actor: Actor) -> Self {
        let config = driver.config();
        Self {
            actor,
            roster: driver.roster(),
            board: driver.subscribe(),
            status: driver.status_snapshots(),
            secure_progress: driver.secure_progress(),
            gate: Gate::new(&config.federation_id, &config.limits),
            max_wait_ms: config.limits.max_wait_ms,
            federation_id: config.federation_id.clone(),
            spec: driver.model_spec(),
            charter_sha256: driver.charter_hash(),
            coordinator_key: driver.coordinator_key(),
            metrics: driver.metrics(),
        }
    }

    /// Runs `f` on the driver, on the actor's thread (it may write to disk).
    async fn with_driver<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Driver) -> Result<T, Rejection> + Send + 'static,
    ) -> Result<T, Status> {
        Ok(self.actor.call(f).await?)
    }

    /// A unary call's body, once its connection is within its rate and its proof shows
    /// that the key the body names made the call now.
    fn authenticate<M: prost::Message>(
        &self,
        request: Request<M>,
        method: &str,
        caller: Caller,
        named_key: impl FnOnce(&M) -> &[u8],
    ) -> Result<M, Status> {
        self.gate.throttle(request.remote_addr())?;
        let proof = CallProof::of(&request);
        let body = body_digest(request.get_ref());
        let key = self.check_proof(proof, method, &body, caller)?;
        let body = request.into_inner();
        same_key(named_key(&body), &key)?;
        Ok(body)
    }

    /// The key a call's proof shows, once it checks out (see `Gate::verify`).
    fn check_proof(
        &self,
        proof: Result<Option<CallProof>, harambee_proto::ProofError>,
        method: &str,
        body: &[u8; 32],
        caller: Caller,
    ) -> Result<[u8; 32], Status> {
        let now_ms = unix_ms();
        let call = Call {
            method,
            body,
            now_ms,
        };
        let proof = self.gate.verify(proof, call)?;
        if caller == Caller::Member {
            if !self.roster.contains(&proof.key) {
                return Err(Rejection::not_permitted(format!(
                    "unknown key {}: enrol with an invite first",
                    hex::encode(proof.key)
                ))
                .into());
            }
            self.gate.admit(&proof, now_ms)?;
        }
        Ok(proof.key)
    }
}

impl From<Rejection> for Status {
    /// The one place a refusal becomes a gRPC status: the code tells a client whether to
    /// retry (`UNAVAILABLE`, `RESOURCE_EXHAUSTED`) or not.
    fn from(r: Rejection) -> Self {
        let code = match r.why {
            Why::Invalid => Code::InvalidArgument,
            Why::OutOfRange => Code::OutOfRange,
            Why::Unauthenticated => Code::Unauthenticated,
            Why::NotPermitted => Code::PermissionDenied,
            Why::NotNow => Code::FailedPrecondition,
            Why::AlreadyHeld => Code::AlreadyExists,
            Why::Gone => Code::NotFound,
            Why::TooMany => Code::ResourceExhausted,
            Why::Unavailable => Code::Unavailable,
            Why::Internal => Code::Internal,
        };
        Status::new(code, r.message)
    }
}

/// The metrics label of a refused update: the class of answer the participant got.
fn refusal_reason(code: Code) -> RefusalReason {
    match code {
        Code::AlreadyExists => RefusalReason::Replay,
        Code::Unauthenticated => RefusalReason::BadSignature,
        Code::PermissionDenied => RefusalReason::NotPermitted,
        Code::FailedPrecondition => RefusalReason::WrongRound,
        Code::InvalidArgument | Code::OutOfRange => RefusalReason::Invalid,
        Code::ResourceExhausted => RefusalReason::RateLimited,
        _ => RefusalReason::Unavailable,
    }
}

/// A participant's open long poll, counted while it lasts.
struct LongPoll {
    actor: Actor,
    id: u64,
}

impl Drop for LongPoll {
    fn drop(&mut self) {
        let id = self.id;
        self.actor.tell(move |d| d.long_poll(id, false));
    }
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<v1::ParameterChunk, Status>> + Send>>;

/// The task a participant should get now, if any is newer than what it has done.
fn task_for(board: &Board, id: u64, after: (u64, u32), parameter_bytes: u64) -> Option<v1::Task> {
    if let Some(ending) = &board.finished {
        return Some(v1::Task {
            kind: v1::task::Kind::Finished as i32,
            message: ending.message().to_string(),
            ..Default::default()
        });
    }
    if let Some(work) = board.assigned.get(&id) {
        return buffered_task(board, work, after, parameter_bytes);
    }
    let open = board.open.as_ref()?;
    if !open.selected.contains(&id) || (open.round, open.attempt) <= after {
        return None;
    }
    let rank = open.selected.iter().position(|&p| p == id).unwrap_or(0) as u32;
    Some(v1::Task {
        kind: v1::task::Kind::Train as i32,
        round: open.round,
        attempt: open.attempt,
        base_digest: open.base.0.to_vec(),
        config: Some((&open.config).into()),
        deadline_ms: open
            .deadline
            .saturating_duration_since(std::time::Instant::now())
            .as_millis() as u64,
        parameter_bytes,
        message: String::new(),
        // Each participant's index is its rank among the selected (both sides sort by id).
        secagg: open.secagg.clone().map(|settings| v1::SecAggSettings {
            index: rank,
            ..settings
        }),
        shard: open.sharded.then_some(v1::Shard {
            index: rank,
            count: open.selected.len() as u32,
        }),
    })
}

/// A buffered federation's piece of work, if the member has not done it yet: its numbers
/// grow with every piece, so `after` tells.
fn buffered_task(
    board: &Board,
    work: &Assignment,
    after: (u64, u32),
    parameter_bytes: u64,
) -> Option<v1::Task> {
    if (work.round, work.attempt) <= after {
        return None;
    }
    Some(v1::Task {
        kind: v1::task::Kind::Train as i32,
        round: work.round,
        attempt: work.attempt,
        base_digest: work.base.0.to_vec(),
        config: Some((&board.fit).into()),
        deadline_ms: work
            .deadline
            .saturating_duration_since(std::time::Instant::now())
            .as_millis() as u64,
        parameter_bytes,
        ..Default::default()
    })
}

#[tonic::async_trait]
impl CoordinatorService for Service {
    async fn enrol(
        &self,
        request: Request<v1::EnrolRequest>,
    ) -> Result<Response<v1::EnrolReply>, Status> {
        let r = self.authenticate(request, method::ENROL, Caller::Stranger, |r| &r.public_key)?;
        let key: [u8; 32] = r.public_key[..]
            .try_into()
            .map_err(|_| Status::invalid_argument("public_key must be 32 bytes"))?;
        if r.name.chars().count() > 64 {
            return Err(Status::invalid_argument("name: at most 64 characters"));
        }
        let public =
            PublicKey::from_bytes(&key).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let data_root: Option<[u8; 32]> =
            match r.data_root.len() {
                0 => None,
                _ => Some(r.data_root[..].try_into().map_err(|_| {
                    Status::invalid_argument("data_root: a Merkle root is 32 bytes")
                })?),
            };
        public
            .verify_enrolment_with_data(&self.federation_id, data_root.as_ref(), &r.signature)
            .map_err(|_| {
                Status::unauthenticated(
                    "bad enrolment signature: sign the enrolment statement (with the data root, when one is sent) with this key",
                )
            })?;
        let name = r.name.clone();
        let token = r.invite_token.clone();
        let id = self
            .with_driver(move |d| {
                if d.removed_key(&key) {
                    return Err(Rejection::not_permitted(
                        "this key was removed from the federation by a steward",
                    ));
                }
                if !d.admits(&public) {
                    return Err(Rejection::not_permitted(
                        "the charter admits only its named members (stewards and contributors) to train",
                    ));
                }
                d.admit_invite(&token, &key)?;
                let id = d.enrol(&public, &name)?;
                if let Some(root) = data_root {
                    d.commit_data(id, root)?;
                }
                Ok(id)
            })
            .await?;
        Ok(Response::new(v1::EnrolReply {
            federation_id: self.federation_id.clone(),
            participant_id: id.0,
            model: Some(self.spec.clone()),
            charter_sha256: self.charter_sha256.clone(),
            coordinator_key: self.coordinator_key.clone(),
        }))
    }

    async fn get_task(
        &self,
        request: Request<v1::TaskRequest>,
    ) -> Result<Response<v1::Task>, Status> {
        let r = self.authenticate(request, method::GET_TASK, Caller::Member, |r| &r.public_key)?;
        let key = r.public_key.clone();
        let id = self
            .with_driver(move |d| {
                let id = d.participant(&key)?.0;
                d.long_poll(id, true);
                Ok(id)
            })
            .await?;
        // Closed however the call ends, even if the client goes away mid-poll.
        let _open = LongPoll {
            actor: self.actor.clone(),
            id,
        };
        let parameter_bytes = self
            .spec
            .tensors
            .iter()
            .map(|t| t.shape.iter().product::<u64>())
            .sum::<u64>()
            * 4;
        let after = (r.after_round, r.after_attempt);
        let wait = Duration::from_millis(u64::from(r.wait_ms.min(self.max_wait_ms)));
        let until = tokio::time::Instant::now() + wait;
        let mut board = self.board.clone();
        loop {
            if let Some(task) = task_for(&board.borrow_and_update(), id, after, parameter_bytes) {
                return Ok(Response::new(task));
            }
            match tokio::time::timeout_at(until, board.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => return Err(Status::unavailable("the coordinator is shutting down")),
                Err(_) => {
                    return Ok(Response::new(v1::Task {
                        kind: v1::task::Kind::Wait as i32,
                        message: "no task for you yet; ask again".into(),
                        ..Default::default()
                    }));
                }
            }
        }
    }

    type FetchParametersStream = ChunkStream;

    async fn fetch_parameters(
        &self,
        request: Request<v1::FetchRequest>,
    ) -> Result<Response<Self::FetchParametersStream>, Status> {
        let r = self.authenticate(request, method::FETCH_PARAMETERS, Caller::Member, |r| {
            &r.public_key
        })?;
        let (key, digest, have) = (
            r.public_key.clone(),
            r.digest.clone(),
            r.have_digest.clone(),
        );
        let fetched = self
            .with_driver(move |d| {
                d.participant(&key)?;
                d.parameters(&digest, &have)
            })
            .await?;
        let (bytes, encoding) = (fetched.bytes, fetched.encoding);
        let total = bytes.len();
        let offset = usize::try_from(r.offset).unwrap_or(usize::MAX);
        if offset > total {
            return Err(Status::out_of_range(format!(
                "offset {offset} is past the end ({total} bytes)"
            )));
        }
        // Lazily cut: one chunk is copied at a time, however large the model.
        let metrics = self.metrics.clone();
        let stream = tokio_stream::iter(chunk_ranges(total, offset)).map(move |range| {
            metrics.sent(range.len());
            Ok(v1::ParameterChunk {
                offset: range.start as u64,
                total_bytes: total as u64,
                data: bytes[range].to_vec(),
                encoding: encoding.clone(),
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn submit_update(
        &self,
        request: Request<Streaming<v1::UpdateChunk>>,
    ) -> Result<Response<v1::SubmitReply>, Status> {
        let reply = self.receive_update(request).await;
        match &reply {
            Ok(_) => self.metrics.update_accepted(),
            Err(status) => self.metrics.update_refused(refusal_reason(status.code())),
        }
        reply
    }

    async fn report_evaluation(
        &self,
        request: Request<v1::EvaluationReport>,
    ) -> Result<Response<v1::EvaluationReply>, Status> {
        let r = self.authenticate(request, method::REPORT_EVALUATION, Caller::Member, |r| {
            &r.public_key
        })?;
        self.with_driver(move |d| d.evaluation(&r)).await?;
        Ok(Response::new(v1::EvaluationReply {}))
    }

    async fn heartbeat(
        &self,
        request: Request<v1::HeartbeatRequest>,
    ) -> Result<Response<v1::HeartbeatReply>, Status> {
        let r = self.authenticate(request, method::HEARTBEAT, Caller::Member, |r| {
            &r.public_key
        })?;
        let key = r.public_key.clone();
        self.with_driver(move |d| d.participant(&key).map(|_| ()))
            .await?;
        let round = self.board.borrow().open.as_ref().map_or(0, |o| o.round);
        Ok(Response::new(v1::HeartbeatReply { round }))
    }

    async fn sec_agg_step(
        &self,
        request: Request<v1::SecAggRequest>,
    ) -> Result<Response<v1::SecAggReply>, Status> {
        let r = self.authenticate(request, method::SEC_AGG_STEP, Caller::Member, |r| {
            &r.public_key
        })?;
        let (round, attempt) = (r.round, r.attempt);
        let mut progress = self.secure_progress.clone();
        let (index, step) = self.with_driver(move |d| d.secagg_step(&r)).await?;
        self.await_step(&mut progress, round, attempt, index, step)
            .await
    }

    async fn sec_agg_masked(
        &self,
        request: Request<Streaming<v1::MaskedChunk>>,
    ) -> Result<Response<v1::SecAggReply>, Status> {
        self.receive_masked(request).await
    }

    async fn get_tree_head(
        &self,
        request: Request<v1::TreeHeadRequest>,
    ) -> Result<Response<v1::TreeHeadReply>, Status> {
        let r = self.authenticate(request, method::GET_TREE_HEAD, Caller::Member, |r| {
            &r.public_key
        })?;
        let since = r.since_size;
        Ok(Response::new(
            self.with_driver(move |d| d.tree_head_since(since)).await?,
        ))
    }

    async fn get_status(
        &self,
        request: Request<v1::StatusRequest>,
    ) -> Result<Response<v1::FederationStatus>, Status> {
        // Public, as the dashboard is: what any observer may read; limited per connection.
        self.gate.throttle(request.remote_addr())?;
        // The snapshot the actor published after its last job: no wait behind a write.
        let status = self.status.borrow().to_status();
        Ok(Response::new(status))
    }
}
