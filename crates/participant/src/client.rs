use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use harambee_identity::{Identity, PublicKey, TrainingRecipe, UpdateStatement};
use harambee_learn::{DataKind, ModelKind, ModelTask, Optimizer, task_seed};
use harambee_ledger::UpdatePromise;
use harambee_params::{Digest, Encoding, Layout, ParamSet, UpdateCodec};
use harambee_proto::auth::{body_digest, method};
use harambee_proto::{CHUNK_BYTES, CoordinatorClient, Invite, chunk_ranges, v1};
use harambee_strategy::FitConfig;
use tokio_stream::StreamExt;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};

use crate::local::{BuiltIn, Fitted, LocalTrainer, RoundSpec, Training};
use crate::witness::Witnesses;
use crate::{LocalState, ParticipantError};

/// How to join.
#[derive(Debug)]
pub struct JoinOptions {
    /// The invite (coordinator URL, CA certificate, token).
    pub invite: Invite,
    /// Overrides the invite's coordinator URL.
    pub coordinator: Option<String>,
    /// The member's key.
    pub identity: Identity,
    /// What trains: the built-in trainer on the member's data, or the member's own code.
    pub training: Training,
    /// A display name.
    pub name: String,
    /// Where to remember progress across restarts.
    pub state_path: PathBuf,
    /// Plain-text gRPC (only against an `--insecure` coordinator).
    pub insecure: bool,
    /// Stop retrying a call after this long without success.
    pub give_up_after: Duration,
}

/// What a participant did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JoinReport {
    /// Its id in the federation.
    pub participant_id: u64,
    /// Rounds whose update the coordinator acknowledged.
    pub acknowledged: Vec<u64>,
    /// Rounds whose update was refused (late, or moved on), with the reason.
    pub refused: Vec<(u64, String)>,
    /// How the federation ended, as the coordinator said.
    pub finish_message: String,
}

/// Whether a failed call is worth repeating.
fn transient(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable
            | Code::Unknown
            | Code::Cancelled
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
    )
}

#[derive(Clone)]
pub(crate) struct Session {
    client: CoordinatorClient<Channel>,
    pub(crate) identity: Arc<Identity>,
    /// The federation every call's proof names.
    federation: String,
    give_up_after: Duration,
}

impl Session {
    /// Calls `f` until it succeeds or fails for good, backing off between tries.
    pub(crate) async fn retry<T, F, Fut>(
        &self,
        what: &'static str,
        mut f: F,
    ) -> Result<T, RetryError>
    where
        F: FnMut(CoordinatorClient<Channel>) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let started = Instant::now();
        let mut delay = Duration::from_millis(100);
        loop {
            match f(self.client.clone()).await {
                Ok(v) => return Ok(v),
                Err(s) if transient(&s) => {
                    if started.elapsed() > self.give_up_after {
                        return Err(RetryError::GaveUp(ParticipantError::GaveUp {
                            what,
                            seconds: started.elapsed().as_secs_f64(),
                            last: s.message().to_string(),
                        }));
                    }
                    tracing::info!(what, code = ?s.code(), message = s.message(), "call failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(s) => return Err(RetryError::Final(s)),
            }
        }
    }

    pub(crate) fn key(&self) -> Vec<u8> {
        self.identity.public().to_bytes().to_vec()
    }

    /// `inner` as a request that proves this member makes the call now (see
    /// [`harambee_proto::auth::prove`]); each retry signs anew.
    pub(crate) fn prove<T>(&self, method: &str, body: [u8; 32], inner: T) -> tonic::Request<T> {
        harambee_proto::auth::prove(&self.identity, &self.federation, method, body, inner)
    }

    /// A unary request with its proof (see [`Session::prove`]).
    pub(crate) fn signed<M: prost::Message>(&self, method: &str, message: M) -> tonic::Request<M> {
        self.prove(method, body_digest(&message), message)
    }
}

pub(crate) enum RetryError {
    GaveUp(ParticipantError),
    Final(Status),
}

impl RetryError {
    pub(crate) fn into_error(self, what: &'static str) -> ParticipantError {
        match self {
            RetryError::GaveUp(e) => e,
            RetryError::Final(s) => ParticipantError::Refused {
                what,
                status: format!("{:?}: {}", s.code(), s.message()),
            },
        }
    }
}

fn channel(options: &JoinOptions) -> Result<Channel, ParticipantError> {
    let url = options
        .coordinator
        .clone()
        .unwrap_or_else(|| options.invite.coordinator.clone());
    let url = if options.insecure {
        url.replacen("https://", "http://", 1)
    } else if url.starts_with("https://") {
        url
    } else {
        // Never fall back to clear text on a URL's say-so: the update, the key's calls and
        // the model would all travel readable and alterable.
        return Err(ParticipantError::Setup(format!(
            "coordinator {url}: only https:// is used; pass --insecure to speak plain text to an --insecure coordinator"
        )));
    };
    let bad =
        |e: tonic::transport::Error| ParticipantError::Setup(format!("coordinator {url}: {e}"));
    let mut endpoint = Endpoint::from_shared(url.clone())
        .map_err(bad)?
        .connect_timeout(Duration::from_secs(5))
        // A dead link is noticed within about ten seconds, even in the middle of an upload.
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true);
    if options.insecure {
        tracing::warn!(
            "--insecure: plain-text gRPC; anyone on the network path can read and alter the traffic"
        );
    } else {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&options.invite.ca_certificate))
            .domain_name(options.invite.server_name.clone());
        endpoint = endpoint.tls_config(tls).map_err(bad)?;
    }
    Ok(endpoint.connect_lazy())
}

/// The model and data kind the coordinator announced, as this participant's trainer needs.
fn task_of(spec: &v1::ModelSpec) -> Result<ModelTask, ParticipantError> {
    let model: ModelKind = spec
        .model
        .parse()
        .map_err(|e: harambee_learn::LearnError| ParticipantError::Model(e.to_string()))?;
    let data: DataKind = serde_json::from_value(serde_json::Value::String(spec.dataset.clone()))
        .map_err(|_| ParticipantError::Model(format!("unknown data kind {:?}", spec.dataset)))?;
    let optimizer: Optimizer = serde_json::from_str(&spec.optimizer).map_err(|e| {
        ParticipantError::Model(format!("unknown optimiser {:?}: {e}", spec.optimizer))
    })?;
    Ok(ModelTask {
        model,
        data,
        classes: spec.classes.clone(),
        embedding_dim: spec.embedding_dim as usize,
        optimizer,
        reproducible: spec.reproducible,
    })
}

/// What a worker under verifiable training vouches it did this round (`None` without a shard:
/// a verifiable federation always names one, and the coordinator refuses the update).
fn recipe_of(round: &RoundSpec) -> Option<TrainingRecipe> {
    let (shard_index, shard_count) = round.shard?;
    let fit = &round.fit;
    Some(TrainingRecipe {
        shard_index,
        shard_count,
        seed: round.seed,
        epochs: fit.epochs,
        local_steps: fit.local_steps,
        batch_size: fit.batch_size,
        learning_rate: fit.learning_rate,
        proximal_mu: fit.proximal_mu,
    })
}

/// Checks that the local trainer builds exactly the tensors the coordinator expects.
fn check_layout(layout: &Layout, spec: &v1::ModelSpec) -> Result<(), ParticipantError> {
    let ours: Vec<(String, Vec<u64>)> = layout
        .tensors()
        .iter()
        .map(|t| (t.name.clone(), t.shape.iter().map(|&d| d as u64).collect()))
        .collect();
    let theirs: Vec<(String, Vec<u64>)> = spec
        .tensors
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone()))
        .collect();
    if ours == theirs {
        Ok(())
    } else {
        Err(ParticipantError::Model(format!(
            "the coordinator's model has tensors {theirs:?}, this participant builds {ours:?}"
        )))
    }
}

/// The local trainer the options ask for, and the layout it trains. The built-in trainer must
/// build exactly the coordinator's tensors; the member's own code trains whatever the
/// coordinator announced, and what it returns is checked against that each round.
async fn local_trainer(
    spec: &v1::ModelSpec,
    training: Training,
) -> Result<(Arc<dyn LocalTrainer>, Layout), ParticipantError> {
    let announced = Layout::new(spec.tensors.iter().map(|t| {
        (
            t.name.clone(),
            t.shape.iter().map(|&d| d as usize).collect::<Vec<_>>(),
        )
    }))
    .map_err(|e| ParticipantError::Model(format!("the coordinator's layout: {e}")))?;
    match training {
        Training::Own(_) if spec.reproducible => Err(ParticipantError::Model(
            "this federation verifies training by replaying it with Harambee's reproducible trainer, so its workers train with that trainer: join with harambee join --data DIR, not your own training code".into(),
        )),
        Training::Own(local) => Ok((local, announced)),
        Training::BuiltIn {
            data,
            model_dir,
            device,
        } => {
            let task = task_of(spec)?;
            let pretrained = spec.pretrained.clone();
            let built = tokio::task::spawn_blocking(move || {
                BuiltIn::prepare(&task, &pretrained, &data, model_dir.as_deref(), &device)
            })
            .await
            .map_err(|e| ParticipantError::Setup(e.to_string()))??;
            check_layout(built.layout(), spec)?;
            Ok((Arc::new(built), announced))
        }
    }
}

/// The encoding the coordinator announced for updates (empty: f32).
fn update_codec(spec: &v1::ModelSpec) -> Result<UpdateCodec, ParticipantError> {
    match spec.update_encoding.as_str() {
        "" => Ok(UpdateCodec::F32),
        name => name.parse().map_err(|e| {
            ParticipantError::Model(format!(
                "the coordinator asks for update encoding {name:?}, which this participant does not know: {e}"
            ))
        }),
    }
}

/// What local training returned, before it is signed: the federation's layout, finite values.
fn check_fitted(fitted: &Fitted, layout: &Layout) -> Result<(), ParticipantError> {
    if fitted.params.layout() != layout {
        return Err(ParticipantError::Model(
            "local training returned parameters in another layout than the federation's".into(),
        ));
    }
    if let Some((spec, _)) = fitted
        .params
        .iter()
        .find(|(_, values)| values.iter().any(|v| !v.is_finite()))
    {
        return Err(ParticipantError::Model(format!(
            "local training returned NaN or infinite values in tensor {}",
            spec.name
        )));
    }
    Ok(())
}

/// Joins the federation and trains until it finishes.
pub async fn join(options: JoinOptions) -> Result<JoinReport, ParticipantError> {
    let session = Session {
        client: CoordinatorClient::new(channel(&options)?)
            .max_decoding_message_size(2 * CHUNK_BYTES)
            .max_encoding_message_size(2 * CHUNK_BYTES),
        identity: Arc::new(options.identity),
        federation: options.invite.federation_id.clone(),
        give_up_after: options.give_up_after,
    };
    let federation = options.invite.federation_id.clone();
    let enrol = v1::EnrolRequest {
        public_key: session.key(),
        invite_token: options.invite.token.clone(),
        name: options.name.clone(),
        signature: session.identity.sign_enrolment(&federation).to_vec(),
        data_root: Vec::new(),
    };
    let reply = session
        .retry("enrolment", |mut c| {
            let r = session.signed(method::ENROL, enrol.clone());
            async move { c.enrol(r).await.map(tonic::Response::into_inner) }
        })
        .await
        .map_err(|e| e.into_error("enrolment"))?;
    if reply.federation_id != federation {
        return Err(ParticipantError::Setup(format!(
            "the coordinator runs federation {}, but the invite is for {federation}",
            reply.federation_id
        )));
    }
    if reply.charter_sha256 != options.invite.charter_sha256 {
        return Err(ParticipantError::Setup(format!(
            "the coordinator runs under charter {}, but the invite you accepted names charter {}; refusing to train (ask the stewards for the amended charter and a new invite)",
            reply.charter_sha256, options.invite.charter_sha256
        )));
    }
    let coordinator_key = coordinator_key(&options.invite, &reply)?;
    let mut witnesses = Witnesses::open(
        &options.state_path.with_extension("witness.jsonl"),
        coordinator_key,
    )?;
    let spec = reply
        .model
        .ok_or_else(|| ParticipantError::Model("the coordinator sent no model".into()))?;
    let (local, layout) = local_trainer(&spec, options.training).await?;
    if let Some(root) = local.data_root() {
        commit_data(&session, enrol, &federation, root).await?;
    }
    tracing::info!(participant = reply.participant_id, "enrolled");
    let mut state = LocalState::load(&options.state_path, &federation)?;
    let mut report = JoinReport {
        participant_id: reply.participant_id,
        ..Default::default()
    };
    let ctx = RoundContext {
        session: &session,
        local,
        layout,
        codec: update_codec(&spec)?,
        residual: std::sync::Mutex::default(),
        held: std::sync::Mutex::default(),
        spec: &spec,
        federation: &federation,
        participant: reply.participant_id,
    };
    loop {
        let request = v1::TaskRequest {
            public_key: session.key(),
            after_round: state.done.0,
            after_attempt: state.done.1,
            wait_ms: 20_000,
        };
        let next = session
            .retry("a task", |mut c| {
                let r = session.signed(method::GET_TASK, request.clone());
                async move { c.get_task(r).await.map(tonic::Response::into_inner) }
            })
            .await
            .map_err(|e| e.into_error("a task"))?;
        match v1::task::Kind::try_from(next.kind) {
            Ok(v1::task::Kind::Finished) => {
                // The released ledger's head too, so the witness covers the whole history.
                keep_tree_head(&session, &mut witnesses).await?;
                report.finish_message = next.message;
                return Ok(report);
            }
            Ok(v1::task::Kind::Train) => {
                keep_tree_head(&session, &mut witnesses).await?;
                match ctx.run_round(&next).await? {
                    RoundEnd::Acknowledged(promise) => {
                        if let Some(promise) = promise {
                            witnesses.keep_promise(promise)?;
                        }
                        report.acknowledged.push(next.round);
                    }
                    RoundEnd::Refused(why) => report.refused.push((next.round, why)),
                    RoundEnd::MovedOn => {}
                }
                state.done = (next.round, next.attempt);
                state.save(&options.state_path)?;
            }
            _ => {}
        }
    }
}

/// Fetched bytes as parameters: the whole model in f32 (`encoding` empty), or the change
/// from `held` in a download encoding.
fn decode_parameters(
    layout: &Layout,
    encoding: &str,
    held: Option<&ParamSet>,
    bytes: &[u8],
) -> Result<ParamSet, String> {
    if encoding.is_empty() {
        return Encoding::F32
            .decode(layout, bytes)
            .map_err(|e| e.to_string());
    }
    let codec: UpdateCodec = encoding.parse().map_err(|e| format!("{e}"))?;
    let held = held.ok_or("a change was sent, but this member holds no model")?;
    codec.decode(held, bytes).map_err(|e| e.to_string())
}

/// Commits to the member's local data: the enrolment again, now with the data's Merkle root
/// signed into it. The coordinator records the first root a member commits to and refuses
/// any other later, so data changed behind a commitment stops the member here, not silently.
async fn commit_data(
    session: &Session,
    enrol: v1::EnrolRequest,
    federation: &str,
    root: [u8; 32],
) -> Result<(), ParticipantError> {
    let commit = v1::EnrolRequest {
        data_root: root.to_vec(),
        signature: session
            .identity
            .sign_enrolment_with_data(federation, &root)
            .to_vec(),
        ..enrol
    };
    session
        .retry("the data commitment", |mut c| {
            let r = session.signed(method::ENROL, commit.clone());
            async move { c.enrol(r).await.map(tonic::Response::into_inner) }
        })
        .await
        .map_err(|e| e.into_error("the data commitment"))?;
    tracing::info!(data_root = %hex::encode(root), "committed to the local data");
    Ok(())
}

pub(crate) enum RoundEnd {
    /// Held by the coordinator; with its promise to record it, when it gave one now.
    Acknowledged(Option<UpdatePromise>),
    Refused(String),
    /// The round closed before this participant could fetch its parameters.
    MovedOn,
}

struct RoundContext<'a> {
    session: &'a Session,
    local: Arc<dyn LocalTrainer>,
    /// The federation's parameter layout, as the coordinator announced it.
    layout: Layout,
    /// How updates travel, as the charter sets it.
    codec: UpdateCodec,
    /// What the encoding left out of the updates so far (error feedback; empty at first).
    residual: std::sync::Mutex<Vec<f32>>,
    /// The last global model fetched: under a lossy download encoding the next one arrives
    /// as its encoded change from this one.
    held: std::sync::Mutex<Option<Arc<ParamSet>>>,
    spec: &'a v1::ModelSpec,
    federation: &'a str,
    participant: u64,
}

impl RoundContext<'_> {
    async fn run_round(&self, task: &v1::Task) -> Result<RoundEnd, ParticipantError> {
        let Some(global) = self.fetch(task).await? else {
            return Ok(RoundEnd::MovedOn);
        };
        let base = global.digest();
        let round = RoundSpec {
            round: task.round,
            fit: FitConfig::from(task.config.unwrap_or_default()),
            seed: task_seed(self.spec.seed, task.round, self.participant, task.attempt),
            shard: task.shard.as_ref().map(|s| (s.index, s.count)),
        };
        self.report_evaluation(task, &round, &global, base).await?;
        // Secure aggregation masks, and a compressed encoding sends, the difference from the
        // global model, kept here.
        let global_copy = (task.secagg.is_some() || !self.codec.is_exact()).then(|| global.clone());
        let local = Arc::clone(&self.local);
        let heartbeat = self.heartbeat_while_training();
        let fit_round = round.clone();
        let started = Instant::now();
        let outcome = tokio::task::spawn_blocking(move || local.fit(global, &fit_round)).await;
        heartbeat.abort();
        let outcome = outcome.map_err(|e| ParticipantError::Setup(e.to_string()))??;
        tracing::info!(
            round = task.round,
            seconds = started.elapsed().as_secs_f64(),
            "trained"
        );
        check_fitted(&outcome, &self.layout)?;
        if let (Some(settings), Some(global)) = (&task.secagg, &global_copy) {
            let trained = crate::secure::Trained {
                global,
                params: outcome.params,
                train_loss: outcome.train_loss,
            };
            return crate::secure::run(self.session, task, settings, self.federation, trained)
                .await;
        }
        // What is signed and recorded is the update as the coordinator decodes it; what the
        // encoding leaves out waits in the residual for the next update (error feedback),
        // which takes effect only once this one is acknowledged.
        let mut residual = self.residual.lock().map(|r| r.clone()).unwrap_or_default();
        let (bytes, sent) = match &global_copy {
            Some(global) => self
                .codec
                .encode(global, &outcome.params, Some(&mut residual))
                .map_err(|e| ParticipantError::Model(format!("encoding the update: {e}")))?,
            None => (Encoding::F32.encode(&outcome.params), outcome.params),
        };
        let digest = sent.digest();
        let signed = self.session.identity.sign(UpdateStatement {
            federation: self.federation.to_string(),
            round: task.round,
            base,
            update: digest,
            num_samples: outcome.num_samples,
            recipe: self.spec.reproducible.then(|| recipe_of(&round)).flatten(),
        });
        let header = v1::UpdateHeader {
            public_key: self.session.key(),
            round: task.round,
            attempt: task.attempt,
            base_digest: base.0.to_vec(),
            update_digest: digest.0.to_vec(),
            num_samples: outcome.num_samples,
            train_loss: outcome.train_loss,
            encoding: self.codec.to_string(),
            total_bytes: 0,
            signature: signed.signature.to_vec(),
        };
        let bytes = Arc::new(bytes);
        let header = v1::UpdateHeader {
            total_bytes: bytes.len() as u64,
            ..header
        };
        let result = self
            .session
            .retry("the update", |mut c| {
                let stream = self.session.prove(
                    method::SUBMIT_UPDATE,
                    body_digest(&header),
                    update_stream(header.clone(), Arc::clone(&bytes)),
                );
                async move {
                    c.submit_update(stream)
                        .await
                        .map(tonic::Response::into_inner)
                }
            })
            .await;
        match result {
            Ok(reply) => {
                tracing::info!(
                    round = task.round,
                    received = reply.received,
                    quorum = reply.quorum,
                    "update acknowledged"
                );
                if let Ok(mut kept) = self.residual.lock() {
                    *kept = residual;
                }
                let promise = UpdatePromise {
                    federation: self.federation.to_string(),
                    round: task.round,
                    attempt: task.attempt,
                    participant: self.participant,
                    update_digest: digest.to_hex(),
                    timestamp_ms: reply.promise_timestamp_ms,
                    signature: hex::encode(&reply.promise_signature),
                };
                Ok(RoundEnd::Acknowledged(Some(promise)))
            }
            Err(RetryError::Final(s)) if s.code() == Code::AlreadyExists => {
                if let Ok(mut kept) = self.residual.lock() {
                    *kept = residual;
                }
                tracing::info!(
                    round = task.round,
                    "update acknowledged (already held by the coordinator)"
                );
                Ok(RoundEnd::Acknowledged(None))
            }
            Err(RetryError::Final(s))
                if matches!(
                    s.code(),
                    Code::FailedPrecondition | Code::PermissionDenied | Code::NotFound
                ) =>
            {
                tracing::warn!(round = task.round, reason = s.message(), "update refused");
                Ok(RoundEnd::Refused(s.message().to_string()))
            }
            Err(e) => Err(e.into_error("the update")),
        }
    }

    /// Tells the coordinator every few seconds that this participant is alive, so long
    /// local training is not mistaken for a vanished participant.
    fn heartbeat_while_training(&self) -> tokio::task::JoinHandle<()> {
        // A clone shares the key (an `Arc`), it does not copy it.
        let session = self.session.clone();
        tokio::spawn(async move {
            let mut client = session.client.clone();
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let beat = session.signed(
                    method::HEARTBEAT,
                    v1::HeartbeatRequest {
                        public_key: session.key(),
                    },
                );
                if let Err(s) = client.heartbeat(beat).await {
                    tracing::debug!(error = s.message(), "heartbeat not delivered");
                }
            }
        })
    }

    /// The task's base parameters, streamed and checked; `None` if the round moved on. Under
    /// a lossy download encoding, the coordinator sends only the change from the model this
    /// member holds, when it was published from that one.
    async fn fetch(&self, task: &v1::Task) -> Result<Option<ParamSet>, ParticipantError> {
        let layout = self.layout.clone();
        let want = Digest(task.base_digest.as_slice().try_into().map_err(|_| {
            ParticipantError::Setup("the task's base digest is not 32 bytes".into())
        })?);
        let held = self.held.lock().map(|h| h.clone()).unwrap_or_default();
        let key = self.session.key();
        let fetched = self
            .session
            .retry("the parameters", |mut c| {
                let request = self.session.signed(
                    method::FETCH_PARAMETERS,
                    v1::FetchRequest {
                        public_key: key.clone(),
                        digest: want.0.to_vec(),
                        offset: 0,
                        have_digest: held
                            .as_ref()
                            .map(|h| h.digest().0.to_vec())
                            .unwrap_or_default(),
                    },
                );
                let (layout, held) = (layout.clone(), held.clone());
                async move {
                    let mut stream = c.fetch_parameters(request).await?.into_inner();
                    let mut bytes = Vec::new();
                    let mut encoding: Option<String> = None;
                    while let Some(chunk) = stream.next().await {
                        let chunk = chunk?;
                        let first = encoding.get_or_insert_with(|| chunk.encoding.clone());
                        let most = match first.as_str() {
                            "" => layout.num_values() * 4,
                            _ => layout.num_values() * 8,
                        };
                        if chunk.offset != bytes.len() as u64
                            || chunk.total_bytes > most as u64
                            || chunk.encoding != *first
                        {
                            return Err(Status::data_loss(
                                "parameter chunks out of order, oversized or of mixed encodings",
                            ));
                        }
                        bytes.extend_from_slice(&chunk.data);
                    }
                    let encoding = encoding.unwrap_or_default();
                    decode_parameters(&layout, &encoding, held.as_deref(), &bytes)
                        .map(|p| (p, encoding, bytes.len()))
                        .map_err(|e| Status::data_loss(format!("parameters do not decode: {e}")))
                }
            })
            .await;
        match fetched {
            Ok((params, encoding, bytes)) if params.digest() == want => {
                let encoding = if encoding.is_empty() {
                    "f32"
                } else {
                    &encoding
                };
                tracing::info!(round = task.round, bytes, encoding, "parameters fetched");
                if let Ok(mut kept) = self.held.lock() {
                    *kept = Some(Arc::new(params.clone()));
                }
                Ok(Some(params))
            }
            Ok((params, ..)) => Err(ParticipantError::Setup(format!(
                "fetched parameters hash to {}, not to the task's {want}",
                params.digest()
            ))),
            Err(RetryError::Final(s)) if s.code() == Code::NotFound => Ok(None),
            Err(e) => Err(e.into_error("the parameters")),
        }
    }

    /// Federated evaluation: how the round's starting model (the previous round's result)
    /// does on this member's held-out data.
    async fn report_evaluation(
        &self,
        task: &v1::Task,
        round: &RoundSpec,
        global: &ParamSet,
        digest: Digest,
    ) -> Result<(), ParticipantError> {
        let evaluated_round = task.round.saturating_sub(1);
        if evaluated_round == 0 {
            return Ok(());
        }
        let (local, params, spec) = (Arc::clone(&self.local), global.clone(), round.clone());
        let evaluated = tokio::task::spawn_blocking(move || local.evaluate(params, &spec))
            .await
            .map_err(|e| ParticipantError::Setup(e.to_string()))?;
        // A failing evaluation stops the participant before it trains: it is the member's
        // code or data that is wrong, and the round goes on without this member.
        let Some(eval) = evaluated? else {
            return Ok(());
        };
        let report = v1::EvaluationReport {
            public_key: self.session.key(),
            round: evaluated_round,
            digest: digest.0.to_vec(),
            examples: eval.examples as u64,
            accuracy: eval.accuracy,
            loss: eval.loss,
        };
        let mut client = self.session.client.clone();
        let report = self.session.signed(method::REPORT_EVALUATION, report);
        if let Err(s) = client.report_evaluation(report).await {
            tracing::debug!(
                round = evaluated_round,
                error = s.message(),
                "evaluation report not delivered"
            );
        }
        Ok(())
    }
}

/// The key that signs the federation's tree heads and promises: the invite's, which the
/// steward handed over; the coordinator's own word only for invites made before it carried one.
fn coordinator_key(invite: &Invite, reply: &v1::EnrolReply) -> Result<PublicKey, ParticipantError> {
    let bad = |what: &str, e: harambee_identity::IdentityError| {
        ParticipantError::Setup(format!("{what}: not a coordinator key: {e}"))
    };
    let announced = (!reply.coordinator_key.is_empty())
        .then(|| reply.coordinator_key.parse::<PublicKey>())
        .transpose()
        .map_err(|e| bad("the coordinator's announced key", e))?;
    if invite.coordinator_key.is_empty() {
        return announced.ok_or_else(|| {
            ParticipantError::Setup(
                "neither the invite nor the coordinator names the coordinator's key".into(),
            )
        });
    }
    let pinned: PublicKey = invite
        .coordinator_key
        .parse()
        .map_err(|e| bad("the invite's coordinator_key", e))?;
    match announced {
        Some(k) if k != pinned => Err(ParticipantError::Setup(format!(
            "the coordinator announces key {k}, but the invite names {pinned}: refusing to trust it"
        ))),
        _ => Ok(pinned),
    }
}

/// Asks for the ledger's latest tree head and keeps it (checked against the last one kept).
async fn keep_tree_head(
    session: &Session,
    witnesses: &mut Witnesses,
) -> Result<(), ParticipantError> {
    let request = v1::TreeHeadRequest {
        public_key: session.key(),
        since_size: witnesses.since(),
    };
    let reply = session
        .retry("the tree head", |mut c| {
            let r = session.signed(method::GET_TREE_HEAD, request.clone());
            async move { c.get_tree_head(r).await.map(tonic::Response::into_inner) }
        })
        .await
        .map_err(|e| e.into_error("the tree head"))?;
    witnesses.keep_head(&reply)
}

/// The update as a stream: its header, then its bytes in chunks, cut lazily.
fn update_stream(
    header: v1::UpdateHeader,
    bytes: Arc<Vec<u8>>,
) -> impl tokio_stream::Stream<Item = v1::UpdateChunk> + Send + 'static {
    let total = bytes.len();
    let header = std::iter::once(v1::UpdateChunk {
        part: Some(v1::update_chunk::Part::Header(header)),
    });
    let data = chunk_ranges(total, 0).map(move |range| v1::UpdateChunk {
        part: Some(v1::update_chunk::Part::Data(bytes[range].to_vec())),
    });
    tokio_stream::iter(header.chain(data))
}
