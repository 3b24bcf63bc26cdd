#![allow(clippy::unwrap_used)]
//! The coordinator service in-process, over real gRPC with TLS on loopback: every kind of bad
//! input gets a clear status and changes nothing.

use std::time::Duration;

use harambee_charter::{Charter, Enrolment, Member, Role};
use harambee_identity::{Identity, UpdateStatement};
use harambee_learn::{DataKind, ModelKind, ModelTask, Optimizer, digit_names};
use harambee_params::{Digest, Encoding, ParamSet};
use harambee_proto::auth::{self, method};
use harambee_proto::{CoordinatorClient, Invite, v1};
use harambee_server::{
    FederationConfig, FederationFolder, Limits, RoundSettings, ServeOptions, TrainingSettings,
};
use harambee_strategy::StrategyConfig;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

fn config(min_participants: usize) -> FederationConfig {
    FederationConfig {
        name: "test".into(),
        federation_id: String::new(),
        listen: "127.0.0.1:0".parse().unwrap(),
        http: None,
        http_allowed_hosts: Vec::new(),
        public_url: String::new(),
        server_names: vec!["localhost".into(), "127.0.0.1".into()],
        invite_token_sha256: String::new(),
        per_member_invites: false,
        model: ModelTask {
            model: ModelKind::LogReg,
            data: DataKind::Images,
            classes: digit_names(),
            embedding_dim: 0,
            optimizer: Optimizer::default(),
            reproducible: false,
        },
        pretrained: None,
        initial_weights: None,
        rounds: RoundSettings {
            rounds: 2,
            min_participants,
            quorum: 1,
            deadline_s: 60.0,
            max_retries: 1,
            pause_when_quorum_missed: true,
            seed: 3,
        },
        training: TrainingSettings {
            strategy: StrategyConfig::FedAvg,
            fraction: 1.0,
            epochs: 1,
            batch_size: 10,
            learning_rate: 0.1,
            secure_aggregation: false,
            secagg_range: 1.0,
            update_encoding: Default::default(),
            download_encoding: Default::default(),
            verification: None,
            replay_data: None,
            buffered: None,
        },
        limits: Limits::default(),
    }
}

fn charter(members_only: Option<&Identity>) -> Charter {
    Charter {
        name: "test".into(),
        task: "digits".into(),
        data_licence: "CC-BY-4.0".into(),
        model_licence: "Apache-2.0".into(),
        enrolment: if members_only.is_some() {
            Enrolment::Members
        } else {
            Enrolment::Invite
        },
        strategies: vec!["fedavg".into()],
        min_quorum: 1,
        max_deadline_s: 60.0,
        max_rounds: 2,
        amendment_threshold: 1,
        privacy: None,
        secure_aggregation: None,
        mode: Default::default(),
        max_samples: None,
        members: members_only
            .map(|m| Member {
                name: "member".into(),
                public_key: m.public().to_string(),
                role: Role::Contributor,
            })
            .into_iter()
            .collect(),
        base_model: None,
        update_encoding: None,
        buffered: None,
        download_encoding: None,
        verification: None,
    }
}

struct Running {
    _dir: tempfile::TempDir,
    invite: Invite,
    addr: std::net::SocketAddr,
}

async fn start(min_participants: usize) -> Running {
    start_with(min_participants, &charter(None)).await
}

async fn start_with(min_participants: usize, charter: &Charter) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let folder = FederationFolder::new(dir.path());
    let invite = folder.init(config(min_participants), charter).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let f = folder.clone();
    tokio::spawn(async move {
        let _ = harambee_server::serve(&f, ServeOptions::default(), move |a| {
            let _ = tx.send(a);
        })
        .await;
    });
    let addr = rx.await.unwrap();
    Running {
        _dir: dir,
        invite,
        addr,
    }
}

fn client(r: &Running) -> CoordinatorClient<Channel> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&r.invite.ca_certificate))
        .domain_name("localhost");
    let channel = Endpoint::from_shared(format!("https://{}", r.addr))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_lazy();
    CoordinatorClient::new(channel)
}

async fn enrol(c: &mut CoordinatorClient<Channel>, r: &Running, id: &Identity) -> v1::EnrolReply {
    c.enrol(call(
        id,
        &r.invite.federation_id,
        method::ENROL,
        v1::EnrolRequest {
            public_key: id.public().to_bytes().to_vec(),
            invite_token: r.invite.token.clone(),
            name: "p".into(),
            signature: id.sign_enrolment(&r.invite.federation_id).to_vec(),
            data_root: Vec::new(),
        },
    ))
    .await
    .unwrap()
    .into_inner()
}

async fn received(c: &mut CoordinatorClient<Channel>) -> u32 {
    c.get_status(v1::StatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .received
}

/// A well-formed, signed update of `params` for `round`, as header and bytes.
fn update(
    r: &Running,
    id: &Identity,
    round: u64,
    base: Digest,
    params: &ParamSet,
) -> (v1::UpdateHeader, Vec<u8>) {
    let digest = params.digest();
    let signed = id.sign(UpdateStatement {
        federation: r.invite.federation_id.clone(),
        round,
        base,
        update: digest,
        num_samples: 10,
        recipe: None,
    });
    let bytes = Encoding::F32.encode(params);
    let header = v1::UpdateHeader {
        public_key: id.public().to_bytes().to_vec(),
        round,
        attempt: 0,
        base_digest: base.0.to_vec(),
        update_digest: digest.0.to_vec(),
        num_samples: 10,
        train_loss: 1.0,
        encoding: "f32".into(),
        total_bytes: bytes.len() as u64,
        signature: signed.signature.to_vec(),
    };
    (header, bytes)
}

/// Submits an update's parts, the call signed by `id` over the header (if the first part
/// is one).
async fn submit(
    c: &mut CoordinatorClient<Channel>,
    r: &Running,
    id: &Identity,
    parts: Vec<v1::update_chunk::Part>,
) -> Result<v1::SubmitReply, tonic::Status> {
    let body = match parts.first() {
        Some(v1::update_chunk::Part::Header(h)) => auth::body_digest(h),
        _ => [0; 32],
    };
    let stream = tokio_stream::iter(parts.into_iter().map(|p| v1::UpdateChunk { part: Some(p) }));
    let request = auth::prove(
        id,
        &r.invite.federation_id,
        method::SUBMIT_UPDATE,
        body,
        stream,
    );
    c.submit_update(request)
        .await
        .map(tonic::Response::into_inner)
}

/// A unary request signed by `id` (the proof every call carries).
fn call<M: prost::Message>(
    id: &Identity,
    federation: &str,
    method: &str,
    message: M,
) -> tonic::Request<M> {
    auth::signed(id, federation, method, message)
}

fn chunks(header: v1::UpdateHeader, bytes: &[u8]) -> Vec<v1::update_chunk::Part> {
    std::iter::once(v1::update_chunk::Part::Header(header))
        .chain(
            bytes
                .chunks(200_000)
                .map(|c| v1::update_chunk::Part::Data(c.to_vec())),
        )
        .collect()
}

async fn fetch_global(
    c: &mut CoordinatorClient<Channel>,
    r: &Running,
    id: &Identity,
    digest: &[u8],
) -> Vec<u8> {
    let mut stream = c
        .fetch_parameters(call(
            id,
            &r.invite.federation_id,
            method::FETCH_PARAMETERS,
            v1::FetchRequest {
                public_key: id.public().to_bytes().to_vec(),
                digest: digest.to_vec(),
                offset: 0,
                have_digest: Vec::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.message().await.unwrap() {
        bytes.extend_from_slice(&chunk.data);
    }
    bytes
}

/// Enrols `a` and `b` (round 1 then opens), takes `a`'s task and fetches its global model.
async fn first_round(
    c: &mut CoordinatorClient<Channel>,
    r: &Running,
    a: &Identity,
    b: &Identity,
) -> (v1::Task, ParamSet) {
    let spec = enrol(c, r, a).await.model.unwrap();
    enrol(c, r, b).await;
    let task = c
        .get_task(call(
            a,
            &r.invite.federation_id,
            method::GET_TASK,
            v1::TaskRequest {
                public_key: a.public().to_bytes().to_vec(),
                wait_ms: 5000,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(task.kind, v1::task::Kind::Train as i32, "{task:?}");
    let layout = harambee_params::Layout::new(spec.tensors.iter().map(|t| {
        (
            t.name.clone(),
            t.shape.iter().map(|&d| d as usize).collect::<Vec<_>>(),
        )
    }))
    .unwrap();
    let bytes = fetch_global(c, r, a, &task.base_digest).await;
    (task, Encoding::F32.decode(&layout, &bytes).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_a_clear_status_and_changes_nothing() {
    let r = start(2).await;
    let mut c = client(&r);
    let (a, b, stranger) = (
        Identity::generate().unwrap(),
        Identity::generate().unwrap(),
        Identity::generate().unwrap(),
    );

    // Enrolment: a wrong token or a signature by another key is refused.
    let refused = c
        .enrol(call(
            &a,
            &r.invite.federation_id,
            method::ENROL,
            v1::EnrolRequest {
                public_key: a.public().to_bytes().to_vec(),
                invite_token: "not the token".into(),
                name: "a".into(),
                signature: a.sign_enrolment(&r.invite.federation_id).to_vec(),
                data_root: Vec::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let refused = c
        .enrol(call(
            &a,
            &r.invite.federation_id,
            method::ENROL,
            v1::EnrolRequest {
                public_key: a.public().to_bytes().to_vec(),
                invite_token: r.invite.token.clone(),
                name: "a".into(),
                signature: b.sign_enrolment(&r.invite.federation_id).to_vec(),
                data_root: Vec::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");

    let (task, global) = first_round(&mut c, &r, &a, &b).await;
    assert_eq!(task.round, 1);
    let base = Digest(task.base_digest.as_slice().try_into().unwrap());
    assert_eq!(global.digest(), base);
    let mut trained = global.clone();
    trained.values_mut()[0] += 0.5;

    let expect = |result: Result<v1::SubmitReply, tonic::Status>, codes: &[Code], words: &str| {
        let status = result.unwrap_err();
        assert!(
            codes.contains(&status.code()),
            "expected {codes:?}, got {status:?}"
        );
        assert!(
            status.message().contains(words),
            "{:?} should mention {words:?}",
            status.message()
        );
    };

    // A truncated stream.
    let (h, bytes) = update(&r, &a, 1, base, &trained);
    expect(
        submit(&mut c, &r, &a, chunks(h.clone(), &bytes[..bytes.len() / 2])).await,
        &[Code::InvalidArgument],
        "truncated",
    );
    // Wrong shapes: the wrong number of bytes announced and sent.
    let short = v1::UpdateHeader {
        total_bytes: bytes.len() as u64 - 4,
        ..h.clone()
    };
    expect(
        submit(&mut c, &r, &a, chunks(short, &bytes[4..])).await,
        &[Code::InvalidArgument],
        "wrong shape",
    );
    // NaN and infinity, correctly signed.
    for bad in [f32::NAN, f32::INFINITY] {
        let mut poisoned = trained.clone();
        poisoned.values_mut()[3] = bad;
        let (h, bytes) = update(&r, &a, 1, base, &poisoned);
        expect(
            submit(&mut c, &r, &a, chunks(h, &bytes)).await,
            &[Code::InvalidArgument],
            "NaN or infinite",
        );
    }
    // An oversized message: one chunk beyond the message limit.
    let mut huge = vec![v1::update_chunk::Part::Header(h.clone())];
    huge.push(v1::update_chunk::Part::Data(vec![0u8; 2 << 20]));
    let status = submit(&mut c, &r, &a, huge).await.unwrap_err();
    assert!(
        matches!(
            status.code(),
            Code::ResourceExhausted | Code::OutOfRange | Code::InvalidArgument
        ),
        "{status:?}"
    );
    // A wrong round.
    let (h2, bytes2) = update(&r, &a, 2, base, &trained);
    expect(
        submit(&mut c, &r, &a, chunks(h2, &bytes2)).await,
        &[Code::FailedPrecondition],
        "round 1",
    );
    // A bad signature, and none at all.
    let mut forged = h.clone();
    forged.signature[5] ^= 1;
    expect(
        submit(&mut c, &r, &a, chunks(forged, &bytes)).await,
        &[Code::Unauthenticated],
        "signature",
    );
    let unsigned = v1::UpdateHeader {
        signature: Vec::new(),
        ..h.clone()
    };
    expect(
        submit(&mut c, &r, &a, chunks(unsigned, &bytes)).await,
        &[Code::Unauthenticated],
        "signature",
    );
    // Signed by someone else for a's key.
    let (hs, _) = update(&r, &stranger, 1, base, &trained);
    let transplanted = v1::UpdateHeader {
        signature: hs.signature,
        ..h.clone()
    };
    expect(
        submit(&mut c, &r, &a, chunks(transplanted, &bytes)).await,
        &[Code::Unauthenticated],
        "signature",
    );
    // An unknown key.
    let (hu, bu) = update(&r, &stranger, 1, base, &trained);
    expect(
        submit(&mut c, &r, &stranger, chunks(hu, &bu)).await,
        &[Code::PermissionDenied],
        "unknown key",
    );
    // Data before the header.
    expect(
        submit(
            &mut c,
            &r,
            &a,
            vec![v1::update_chunk::Part::Data(bytes[..10].to_vec())],
        )
        .await,
        &[Code::InvalidArgument],
        "header",
    );
    // Altered bytes under a valid header.
    let mut altered = bytes.clone();
    altered[100] ^= 0x40;
    expect(
        submit(&mut c, &r, &a, chunks(h.clone(), &altered)).await,
        &[Code::InvalidArgument],
        "altered",
    );
    assert_eq!(received(&mut c).await, 0, "nothing bad may count");

    // The genuine update is accepted once; its replay is refused.
    let reply = submit(&mut c, &r, &a, chunks(h.clone(), &bytes))
        .await
        .unwrap();
    assert!(reply.accepted);
    assert_eq!(received(&mut c).await, 1);
    expect(
        submit(&mut c, &r, &a, chunks(h, &bytes)).await,
        &[Code::AlreadyExists],
        "replay",
    );
    assert_eq!(received(&mut c).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_required_and_only_the_federation_ca_is_trusted() {
    let r = start(2).await;
    let plain = Endpoint::from_shared(format!("http://{}", r.addr))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .connect_lazy();
    let mut c = CoordinatorClient::new(plain);
    assert!(
        c.get_status(v1::StatusRequest {}).await.is_err(),
        "plain text must not reach a TLS coordinator"
    );
    // A client that trusts another CA is refused too.
    let other = tempfile::tempdir().unwrap();
    let other_invite = FederationFolder::new(other.path())
        .init(config(2), &charter(None))
        .unwrap();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&other_invite.ca_certificate))
        .domain_name("localhost");
    let channel = Endpoint::from_shared(format!("https://{}", r.addr))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_lazy();
    assert!(
        CoordinatorClient::new(channel)
            .get_status(v1::StatusRequest {})
            .await
            .is_err()
    );
    // The federation's own CA works.
    let status = client(&r)
        .get_status(v1::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.federation_id, r.invite.federation_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_charter_is_enforced_on_enrolment_and_at_start() {
    let member = Identity::generate().unwrap();
    let r = start_with(1, &charter(Some(&member))).await;
    let mut c = client(&r);
    let reply = enrol(&mut c, &r, &member).await;
    assert_eq!(reply.charter_sha256, r.invite.charter_sha256);
    let outsider = Identity::generate().unwrap();
    let refused = c
        .enrol(call(
            &outsider,
            &r.invite.federation_id,
            method::ENROL,
            v1::EnrolRequest {
                public_key: outsider.public().to_bytes().to_vec(),
                invite_token: r.invite.token.clone(),
                name: "outsider".into(),
                signature: outsider.sign_enrolment(&r.invite.federation_id).to_vec(),
                data_root: Vec::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(refused.message().contains("charter"));

    // Settings the charter forbids are refused when the folder is made.
    let dir = tempfile::tempdir().unwrap();
    let mut strict = charter(None);
    strict.max_rounds = 1;
    let err = FederationFolder::new(dir.path())
        .init(config(1), &strict)
        .unwrap_err();
    assert!(err.to_string().contains("charter forbids"), "{err}");
}

// Before, a failed write set a flag that only some paths checked: calls went on being served
// by a driver whose state no longer matched the disk. Now every later call is refused and the
// coordinator stops, to restart from what is on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failed_write_the_coordinator_accepts_nothing_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let folder = FederationFolder::new(dir.path());
    let invite = folder.init(config(2), &charter(None)).unwrap();
    let (ready, addr) = tokio::sync::oneshot::channel();
    let f = folder.clone();
    let served = tokio::spawn(async move {
        harambee_server::serve(&f, ServeOptions::default(), move |a| {
            let _ = ready.send(a);
        })
        .await
    });
    let r = Running {
        _dir: dir,
        invite,
        addr: addr.await.unwrap(),
    };
    let mut c = client(&r);
    let (a, b) = (Identity::generate().unwrap(), Identity::generate().unwrap());
    let (task, global) = first_round(&mut c, &r, &a, &b).await;
    let base = Digest(task.base_digest.as_slice().try_into().unwrap());

    // The blob store's directory becomes a file: no blob can be written any more.
    let blobs = folder.blobs_path();
    std::fs::remove_dir_all(&blobs).unwrap();
    std::fs::write(&blobs, b"not a directory").unwrap();
    let (h, bytes) = update(&r, &a, 1, base, &global);
    let refused = submit(&mut c, &r, &a, chunks(h, &bytes)).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("could not store"), "{refused:?}");
    // Any later call, on any path, is refused, and the coordinator stops.
    let beat = c
        .heartbeat(call(
            &b,
            &r.invite.federation_id,
            method::HEARTBEAT,
            v1::HeartbeatRequest {
                public_key: b.public().to_bytes().to_vec(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(beat.code(), Code::Unavailable, "{beat:?}");
    let outcome = tokio::time::timeout(Duration::from_secs(30), served)
        .await
        .expect("the coordinator stops after a failed write")
        .unwrap();
    let err = outcome.expect_err("a storage failure is an error");
    assert!(err.to_string().contains("storage failure"), "{err}");
}

mod dashboard;
