//! A participant's side of a secure round: its update leaves the machine only masked, as one
//! of four signed steps of SecAgg+ ([`harambee_secagg`]).

use std::sync::Arc;

use harambee_identity::{PublicKey, UpdateStatement};
use harambee_params::{Digest, ParamSet};
use harambee_proto::auth::{body_digest, method};
use harambee_proto::secagg::{self as wire, signing_bytes, step};
use harambee_proto::{chunk_ranges, v1};
use harambee_secagg::{Client, FixedPoint, KeyAdvert, Survivors};
use harambee_strategy::UpdatePrivacy;
use prost::Message;
use sha2::{Digest as _, Sha256};
use tonic::{Code, Status};

use crate::ParticipantError;
use crate::client::{RetryError, RoundEnd, Session};

/// What the participant trained, for its secure round.
pub(crate) struct Trained<'a> {
    pub(crate) global: &'a ParamSet,
    pub(crate) params: ParamSet,
    pub(crate) train_loss: f32,
}

/// Runs the protocol for one round. A round whose protocol fails (too few participants
/// left) is refused, not an error: the coordinator opens it again.
pub(crate) async fn run(
    session: &Session,
    task: &v1::Task,
    settings: &v1::SecAggSettings,
    federation: &str,
    trained: Trained<'_>,
) -> Result<RoundEnd, ParticipantError> {
    match protocol(session, task, settings, federation, trained).await {
        Ok(contributors) => {
            tracing::info!(
                round = task.round,
                contributors,
                "secure aggregation complete"
            );
            Ok(RoundEnd::Acknowledged(None))
        }
        Err(RetryError::Final(s))
            if matches!(s.code(), Code::FailedPrecondition | Code::PermissionDenied) =>
        {
            tracing::warn!(
                round = task.round,
                reason = s.message(),
                "secure round ended without this participant"
            );
            Ok(RoundEnd::Refused(s.message().to_string()))
        }
        Err(e) => Err(e.into_error("secure aggregation")),
    }
}

fn invalid(what: impl Into<String>) -> RetryError {
    RetryError::Final(Status::invalid_argument(what.into()))
}

/// The four steps; returns how many participants the sum covered.
async fn protocol(
    session: &Session,
    task: &v1::Task,
    settings: &v1::SecAggSettings,
    federation: &str,
    trained: Trained<'_>,
) -> Result<u32, RetryError> {
    let config = wire::config_of(settings).map_err(|e| invalid(e.to_string()))?;
    let words = encode_update(settings, &trained)?;
    if words.len() != config.dimension {
        return Err(invalid(format!(
            "the coordinator sums {} values, this update has {}",
            config.dimension,
            words.len()
        )));
    }
    let mut client = Client::new(config.clone(), settings.index, &mut rand::rng())
        .map_err(|e| invalid(e.to_string()))?;
    let call = |step| StepCall {
        session,
        task,
        settings,
        step,
    };

    let advert = client.advertise().map_err(|e| invalid(e.to_string()))?;
    let reply = call(step::KEYS)
        .send(v1::sec_agg_request::Step::Keys(wire::keys_to_wire(&advert)))
        .await?;
    let Some(v1::sec_agg_reply::Next::Roster(roster)) = reply.next else {
        return Err(invalid("the coordinator answered step 1 without a roster"));
    };
    let roster = checked_roster(&roster, &settings.session)?;

    let sealed = client
        .share_keys(&roster, &mut rand::rng())
        .map_err(|e| invalid(e.to_string()))?;
    let reply = call(step::SHARES)
        .send(v1::sec_agg_request::Step::Shares(wire::shares_to_wire(
            &sealed,
        )))
        .await?;
    let Some(v1::sec_agg_reply::Next::Inbox(inbox)) = reply.next else {
        return Err(invalid("the coordinator answered step 2 without shares"));
    };

    let masked = client
        .mask_input(&words, &wire::shares_from_wire(&inbox))
        .map_err(|e| invalid(e.to_string()))?;
    let survivors = send_masked(
        session,
        task,
        federation,
        trained.global,
        &masked.values,
        trained.train_loss,
    )
    .await?;

    let unmask = client
        .unmask(&survivors)
        .map_err(|e| invalid(e.to_string()))?;
    let reply = call(step::UNMASK)
        .send(v1::sec_agg_request::Step::Unmask(wire::unmask_to_wire(
            &unmask,
        )))
        .await?;
    match reply.next {
        Some(v1::sec_agg_reply::Next::Done(done)) if done.summed => Ok(done.contributors),
        _ => Err(invalid("the coordinator did not confirm the sum")),
    }
}

/// The update as the round asks: `Δ = local − global`, clipped and noised when DP says,
/// with the within-clip report appended, in fixed point.
fn encode_update(
    settings: &v1::SecAggSettings,
    trained: &Trained<'_>,
) -> Result<Vec<u32>, RetryError> {
    let mut delta = trained
        .params
        .sub(trained.global)
        .map_err(|e| invalid(e.to_string()))?;
    let privacy = (settings.clip > 0.0).then_some(UpdatePrivacy {
        clip: settings.clip,
        noise_std: settings.noise_std,
        report_within_clip: settings.report_within_clip,
        report_noise_std: settings.report_noise_std,
    });
    // The noise comes from the operating system: noise anyone could regenerate protects nothing.
    let within = privacy.map_or(0.0, |p| p.apply(&mut delta, &mut rand::rng()));
    let mut values = delta.into_values();
    if settings.report_within_clip {
        values.push(within as f32);
    }
    let fixed = FixedPoint {
        range: settings.range,
        max_summands: settings.participants,
    };
    fixed.check().map_err(|e| invalid(e.to_string()))?;
    let (words, clipped) = fixed.encode(&values);
    if clipped > 0 {
        tracing::warn!(
            clipped,
            range = settings.range,
            "coordinates clipped to the fixed-point range"
        );
    }
    Ok(words)
}

/// Each neighbour's keys must carry its own signature: the coordinator cannot slip in keys
/// of its own to read the shares sealed for that neighbour.
fn checked_roster(roster: &v1::SecAggRoster, session: &[u8]) -> Result<Vec<KeyAdvert>, RetryError> {
    roster
        .neighbours
        .iter()
        .map(|entry| {
            let keys = v1::SecAggKeys {
                cipher_key: entry.cipher_key.clone(),
                mask_key: entry.mask_key.clone(),
            };
            let signer = <[u8; 32]>::try_from(entry.public_key.as_slice())
                .ok()
                .and_then(|k| PublicKey::from_bytes(&k).ok())
                .ok_or_else(|| {
                    invalid(format!(
                        "neighbour {} has no valid identity key",
                        entry.index
                    ))
                })?;
            signer
                .verify_raw(
                    &signing_bytes(session, step::KEYS, &keys.encode_to_vec()),
                    &entry.signature,
                )
                .map_err(|_| {
                    invalid(format!(
                        "neighbour {}'s keys are not signed by it",
                        entry.index
                    ))
                })?;
            wire::keys_from_wire(entry.index, &keys).map_err(|e| invalid(e.to_string()))
        })
        .collect()
}

/// One signed step call, retried while the coordinator is unreachable (a step the
/// coordinator already holds is answered again, not counted twice).
struct StepCall<'a> {
    session: &'a Session,
    task: &'a v1::Task,
    settings: &'a v1::SecAggSettings,
    step: u8,
}

impl StepCall<'_> {
    async fn send(&self, body: v1::sec_agg_request::Step) -> Result<v1::SecAggReply, RetryError> {
        use v1::sec_agg_request::Step as S;
        let bytes = match &body {
            S::Keys(k) => k.encode_to_vec(),
            S::Shares(s) => s.encode_to_vec(),
            S::Unmask(u) => u.encode_to_vec(),
        };
        let signature = self.session.identity.sign_raw(&signing_bytes(
            &self.settings.session,
            self.step,
            &bytes,
        ));
        let request = v1::SecAggRequest {
            public_key: self.session.key(),
            round: self.task.round,
            attempt: self.task.attempt,
            step: Some(body),
            signature: signature.to_vec(),
        };
        self.session
            .retry("a secure-aggregation step", |mut c| {
                let r = self.session.signed(method::SEC_AGG_STEP, request.clone());
                async move { c.sec_agg_step(r).await.map(tonic::Response::into_inner) }
            })
            .await
    }
}

/// Step 3: the masked update, streamed with its signed commitment; returns the survivors.
async fn send_masked(
    session: &Session,
    task: &v1::Task,
    federation: &str,
    global: &ParamSet,
    values: &[u32],
    train_loss: f32,
) -> Result<Survivors, RetryError> {
    let bytes = Arc::new(wire::words_to_bytes(values));
    let digest = Digest(Sha256::digest(bytes.as_slice()).into());
    let signed = session.identity.sign(UpdateStatement {
        federation: federation.to_string(),
        round: task.round,
        base: global.digest(),
        update: digest,
        num_samples: 0,
        recipe: None,
    });
    let header = v1::MaskedHeader {
        public_key: session.key(),
        round: task.round,
        attempt: task.attempt,
        total_bytes: bytes.len() as u64,
        masked_digest: digest.0.to_vec(),
        train_loss,
        signature: signed.signature.to_vec(),
    };
    let reply = session
        .retry("the masked update", |mut c| {
            let stream = session.prove(
                method::SEC_AGG_MASKED,
                body_digest(&header),
                masked_stream(header.clone(), Arc::clone(&bytes)),
            );
            async move {
                c.sec_agg_masked(stream)
                    .await
                    .map(tonic::Response::into_inner)
            }
        })
        .await?;
    match reply.next {
        Some(v1::sec_agg_reply::Next::Survivors(s)) => Ok(Survivors { ids: s.ids }),
        _ => Err(invalid(
            "the coordinator answered step 3 without the survivors",
        )),
    }
}

fn masked_stream(
    header: v1::MaskedHeader,
    bytes: Arc<Vec<u8>>,
) -> impl tokio_stream::Stream<Item = v1::MaskedChunk> + Send + 'static {
    let total = bytes.len();
    let header = std::iter::once(v1::MaskedChunk {
        part: Some(v1::masked_chunk::Part::Header(header)),
    });
    let data = chunk_ranges(total, 0).map(move |range| v1::MaskedChunk {
        part: Some(v1::masked_chunk::Part::Data(bytes[range].to_vec())),
    });
    tokio_stream::iter(header.chain(data))
}
