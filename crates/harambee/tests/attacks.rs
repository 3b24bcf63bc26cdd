//! A hostile world against a real `harambee serve`: one member of the federation turned
//! adversary, strangers who know only what the ledger and the dashboard publish, and idle
//! sockets. Each attack must be refused with a clear status while three honest communities
//! (real `harambee join` processes) train to the end, and the ledger must verify afterwards.
//! The attacks run on loopback only, bounded in count and time.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::fs;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use common::{
    COMMUNITIES, LANGUAGES, client, corpus, harambee, join_community, read, spawn, wait_exit,
};
use harambee_identity::{Identity, TrainingRecipe, UpdateStatement};
use harambee_params::{Digest, Encoding, Layout, ParamSet, UpdateCodec};
use harambee_proto::auth::{self, method};
use harambee_proto::{CallProof, CoordinatorClient, Invite, v1};
use tokio::io::AsyncReadExt;
use tonic::Code;
use tonic::transport::Channel;

/// Fails the test unless `result` is a refusal with one of `codes` whose message says `words`.
fn refused<T: std::fmt::Debug>(
    attack: &str,
    result: Result<T, tonic::Status>,
    codes: &[Code],
    words: &str,
) {
    let status = result.expect_err(attack);
    assert!(
        codes.contains(&status.code()) && status.message().contains(words),
        "{attack}: expected {codes:?} saying {words:?}, got {status:?}"
    );
    println!(
        "refused  {attack}: {:?} {}",
        status.code(),
        status.message()
    );
}

/// The limits the attacks are sized against, written into `federation.toml`.
fn tighten_limits(fed: &Path) {
    let path = fed.join("federation.toml");
    let mut config: toml::Table = fs::read_to_string(&path).unwrap().parse().unwrap();
    let limits = config
        .entry("limits")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .unwrap();
    // Three communities, the adversary and one Sybil; a second Sybil is one too many.
    limits.insert("max_participants".into(), toml::Value::Integer(5));
    limits.insert("handshake_timeout_s".into(), toml::Value::Float(2.0));
    limits.insert("liveness_timeout_s".into(), toml::Value::Float(15.0));
    limits.insert("max_connections".into(), toml::Value::Integer(48));
    fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
}

/// The adversary: an enrolled member who attacks while taking part, and strangers.
struct Adversary {
    invite: Invite,
    me: Identity,
    c: CoordinatorClient<Channel>,
}

impl Adversary {
    fn call<M: prost::Message>(&self, method: &str, m: M) -> tonic::Request<M> {
        auth::signed(&self.me, &self.invite.federation_id, method, m)
    }

    fn key(&self) -> Vec<u8> {
        self.me.public().to_bytes().to_vec()
    }

    /// A second connection under the same key, to make calls at the same time.
    fn twin(&self) -> Adversary {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        self.me.save(&path).unwrap();
        Adversary {
            c: client(&self.invite),
            me: Identity::load(&path).unwrap(),
            invite: self.invite.clone(),
        }
    }

    /// Enrols `other`, or the adversary's own key.
    async fn enrol(&mut self, other: Option<&Identity>) -> Result<v1::EnrolReply, tonic::Status> {
        let id = other.unwrap_or(&self.me);
        let r = v1::EnrolRequest {
            public_key: id.public().to_bytes().to_vec(),
            invite_token: self.invite.token.clone(),
            name: "adversary".into(),
            signature: id.sign_enrolment(&self.invite.federation_id).to_vec(),
            data_root: Vec::new(),
        };
        let r = auth::signed(id, &self.invite.federation_id, method::ENROL, r);
        self.c.enrol(r).await.map(tonic::Response::into_inner)
    }

    /// The adversary's enrolment again with a data commitment: `root` as sent, signed over
    /// `signed_root` (none: the plain enrolment statement).
    async fn commit_data(
        &mut self,
        root: &[u8],
        signed_root: Option<&[u8; 32]>,
    ) -> Result<v1::EnrolReply, tonic::Status> {
        let fed = &self.invite.federation_id;
        let signature = match signed_root {
            Some(r) => self.me.sign_enrolment_with_data(fed, r),
            None => self.me.sign_enrolment(fed),
        };
        let r = v1::EnrolRequest {
            public_key: self.key(),
            invite_token: self.invite.token.clone(),
            name: "adversary".into(),
            signature: signature.to_vec(),
            data_root: root.to_vec(),
        };
        let r = auth::signed(&self.me, fed, method::ENROL, r);
        self.c.enrol(r).await.map(tonic::Response::into_inner)
    }

    /// A signed update of `params` claiming `samples`, submitted with a valid call proof.
    async fn submit(
        &mut self,
        task: &v1::Task,
        params: &ParamSet,
        samples: u64,
    ) -> Result<v1::SubmitReply, tonic::Status> {
        let data = Encoding::F32.encode(params);
        self.submit_encoded(task, "f32", params, data, samples)
            .await
    }

    /// An update in `encoding` whose signed digest is `update`'s, of the bytes given, claiming
    /// `samples`.
    async fn submit_encoded(
        &mut self,
        task: &v1::Task,
        encoding: &str,
        update: &ParamSet,
        data: Vec<u8>,
        samples: u64,
    ) -> Result<v1::SubmitReply, tonic::Status> {
        self.submit_signed(task, encoding, update, data, samples, None)
            .await
    }

    /// `params` in f32, signed with a training recipe.
    async fn submit_with_recipe(
        &mut self,
        task: &v1::Task,
        params: &ParamSet,
        recipe: TrainingRecipe,
    ) -> Result<v1::SubmitReply, tonic::Status> {
        let data = Encoding::F32.encode(params);
        self.submit_signed(task, "f32", params, data, 10, Some(recipe))
            .await
    }

    async fn submit_signed(
        &mut self,
        task: &v1::Task,
        encoding: &str,
        update: &ParamSet,
        data: Vec<u8>,
        samples: u64,
        recipe: Option<TrainingRecipe>,
    ) -> Result<v1::SubmitReply, tonic::Status> {
        let signed = self.me.sign(UpdateStatement {
            federation: self.invite.federation_id.clone(),
            round: task.round,
            base: Digest(task.base_digest.as_slice().try_into().unwrap()),
            update: update.digest(),
            num_samples: samples,
            recipe,
        });
        let header = v1::UpdateHeader {
            public_key: self.key(),
            round: task.round,
            attempt: task.attempt,
            base_digest: task.base_digest.clone(),
            update_digest: update.digest().0.to_vec(),
            num_samples: samples,
            train_loss: 1.0,
            encoding: encoding.into(),
            total_bytes: data.len() as u64,
            signature: signed.signature.to_vec(),
        };
        let chunks = data
            .chunks(harambee_proto::CHUNK_BYTES)
            .map(<[u8]>::to_vec)
            .collect();
        self.stream(header, chunks, true).await
    }

    /// An update stream of `header` then `chunks`, with or without a call proof.
    async fn stream(
        &mut self,
        header: v1::UpdateHeader,
        chunks: Vec<Vec<u8>>,
        prove: bool,
    ) -> Result<v1::SubmitReply, tonic::Status> {
        let body = auth::body_digest(&header);
        let parts = std::iter::once(v1::update_chunk::Part::Header(header))
            .chain(chunks.into_iter().map(v1::update_chunk::Part::Data))
            .map(|p| v1::UpdateChunk { part: Some(p) })
            .collect::<Vec<_>>();
        let stream = tokio_stream::iter(parts);
        let request = if prove {
            auth::prove(
                &self.me,
                &self.invite.federation_id,
                method::SUBMIT_UPDATE,
                body,
                stream,
            )
        } else {
            tonic::Request::new(stream)
        };
        self.c
            .submit_update(request)
            .await
            .map(tonic::Response::into_inner)
    }

    async fn task(&mut self, after: (u64, u32)) -> v1::Task {
        loop {
            let r = self.call(
                method::GET_TASK,
                v1::TaskRequest {
                    public_key: self.key(),
                    after_round: after.0,
                    after_attempt: after.1,
                    wait_ms: 10_000,
                },
            );
            let task = self.c.get_task(r).await.unwrap().into_inner();
            if task.kind != v1::task::Kind::Wait as i32 {
                return task;
            }
        }
    }

    /// The parameters `digest` names, for a member holding `have`: the encoding the
    /// coordinator chose and the bytes as sent.
    async fn fetch_holding(&mut self, digest: &[u8], have: &ParamSet) -> (String, Vec<u8>) {
        let r = self.call(
            method::FETCH_PARAMETERS,
            v1::FetchRequest {
                public_key: self.key(),
                digest: digest.to_vec(),
                offset: 0,
                have_digest: have.digest().0.to_vec(),
            },
        );
        let mut stream = self.c.fetch_parameters(r).await.unwrap().into_inner();
        let (mut encoding, mut bytes) = (String::new(), Vec::new());
        while let Some(chunk) = stream.message().await.unwrap() {
            encoding = chunk.encoding;
            bytes.extend_from_slice(&chunk.data);
        }
        (encoding, bytes)
    }

    async fn fetch(&mut self, layout: &Layout, digest: &[u8]) -> ParamSet {
        let r = self.call(
            method::FETCH_PARAMETERS,
            v1::FetchRequest {
                public_key: self.key(),
                digest: digest.to_vec(),
                offset: 0,
                have_digest: Vec::new(),
            },
        );
        let mut stream = self.c.fetch_parameters(r).await.unwrap().into_inner();
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.message().await.unwrap() {
            bytes.extend_from_slice(&chunk.data);
        }
        Encoding::F32.decode(layout, &bytes).unwrap()
    }
}

/// Calls in a victim's name: with no proof, with the adversary's proof, with a forged one,
/// replayed, stale; and a flood of them, which must cost the flooder, never the victim.
async fn impersonate(adv: &mut Adversary, victim: &[u8], base_digest: &[u8]) {
    let fed = adv.invite.federation_id.clone();
    let beat = v1::HeartbeatRequest {
        public_key: victim.to_vec(),
    };
    refused(
        "heartbeat under a stolen public key, no proof",
        adv.c.heartbeat(beat.clone()).await,
        &[Code::Unauthenticated],
        "no proof",
    );
    refused(
        "model fetched under a stolen public key",
        adv.c
            .fetch_parameters(v1::FetchRequest {
                public_key: victim.to_vec(),
                digest: base_digest.to_vec(),
                offset: 0,
                have_digest: Vec::new(),
            })
            .await,
        &[Code::Unauthenticated],
        "no proof",
    );
    refused(
        "evaluation reported in a member's name",
        adv.c
            .report_evaluation(v1::EvaluationReport {
                public_key: victim.to_vec(),
                round: 1,
                digest: base_digest.to_vec(),
                examples: 10,
                accuracy: 0.0,
                loss: 9.0,
            })
            .await,
        &[Code::Unauthenticated],
        "no proof",
    );
    refused(
        "the adversary's own proof on a body naming the victim",
        adv.c
            .heartbeat(adv.call(method::HEARTBEAT, beat.clone()))
            .await,
        &[Code::PermissionDenied],
        "another key",
    );
    // A proof that names the victim's key, signed by the adversary.
    let mut forged = auth::signed(&adv.me, &fed, method::HEARTBEAT, beat.clone());
    let mut proof = CallProof::of(&forged).unwrap().unwrap();
    proof.key = victim.try_into().unwrap();
    proof.attach(&mut forged);
    refused(
        "a proof forged for the victim's key",
        adv.c.heartbeat(forged).await,
        &[Code::Unauthenticated],
        "bad call signature",
    );
    // A genuine call of the adversary's, sent twice.
    let own = v1::HeartbeatRequest {
        public_key: adv.key(),
    };
    let first = adv.call(method::HEARTBEAT, own.clone());
    let proof = CallProof::of(&first).unwrap().unwrap();
    adv.c.heartbeat(first).await.unwrap();
    let mut again = tonic::Request::new(own.clone());
    proof.attach(&mut again);
    refused(
        "a captured call replayed",
        adv.c.heartbeat(again).await,
        &[Code::Unauthenticated],
        "replayed",
    );
    // The same call's proof moved to another method.
    let mut moved = tonic::Request::new(v1::TaskRequest {
        public_key: adv.key(),
        ..Default::default()
    });
    proof.attach(&mut moved);
    refused(
        "a heartbeat's proof on a task request",
        adv.c.get_task(moved).await,
        &[Code::Unauthenticated],
        "bad call signature",
    );
    // An hour old, correctly signed.
    let mut stale = CallProof {
        key: adv.me.public().to_bytes(),
        timestamp_ms: harambee_dashboard::unix_ms() - 3_600_000,
        nonce: [7; 16],
        signature: [0; 64],
    };
    stale.signature =
        adv.me
            .sign_raw(&stale.message(&fed, method::HEARTBEAT, &auth::body_digest(&own)));
    let mut old = tonic::Request::new(own);
    stale.attach(&mut old);
    refused(
        "a call signed an hour ago",
        adv.c.heartbeat(old).await,
        &[Code::Unauthenticated],
        "clock",
    );
    // A flood under the victim's key, on a connection of its own: all refused, and it costs
    // that connection (its rate limit), never the victim.
    let mut flood = client(&adv.invite);
    let mut limited = 0;
    for _ in 0..400 {
        let status = flood.heartbeat(beat.clone()).await.unwrap_err();
        match status.code() {
            Code::Unauthenticated => {}
            Code::ResourceExhausted => limited += 1,
            other => panic!("flood: unexpected {other:?}: {status:?}"),
        }
    }
    println!("refused  a flood of 400 calls under the victim's key ({limited} by the rate limit)");
}

/// Numbers no participant may send: sample counts that would take FedAvg over, counts that
/// overflow a sum, rounds that do not exist, an oversized stream, and unauthenticated ones.
async fn bad_numbers(adv: &mut Adversary, task: &v1::Task, base: &ParamSet) {
    refused(
        "an update claiming 10^15 samples",
        adv.submit(task, base, 1_000_000_000_000_000).await,
        &[Code::OutOfRange],
        "max_samples",
    );
    refused(
        "an update claiming no samples",
        adv.submit(task, base, 0).await,
        &[Code::OutOfRange],
        "max_samples",
    );
    let report = |examples: u64, round: u64, loss: f64| v1::EvaluationReport {
        public_key: adv.key(),
        round,
        digest: task.base_digest.clone(),
        examples,
        accuracy: 0.5,
        loss,
    };
    for (attack, r, words) in [
        (
            "an evaluation of u64::MAX examples",
            report(u64::MAX, 1, 1.0),
            "max_samples",
        ),
        (
            "an evaluation of a round that never was",
            report(10, 1 << 40, 1.0),
            "not a closed round",
        ),
        (
            "an evaluation with a negative loss",
            report(10, 1, -1.0),
            "loss",
        ),
    ] {
        let r = adv.call(method::REPORT_EVALUATION, r);
        refused(
            attack,
            adv.c.report_evaluation(r).await,
            &[Code::OutOfRange, Code::InvalidArgument],
            words,
        );
    }
    let status = adv.c.get_status(v1::StatusRequest {}).await.unwrap();
    assert!(status.into_inner().error.is_empty(), "status still answers");

    let honest = Encoding::F32.encode(base);
    let header = v1::UpdateHeader {
        public_key: adv.key(),
        round: task.round,
        attempt: task.attempt,
        base_digest: task.base_digest.clone(),
        update_digest: base.digest().0.to_vec(),
        num_samples: 1,
        train_loss: 1.0,
        encoding: "f32".into(),
        total_bytes: honest.len() as u64,
        signature: vec![0; 64],
    };
    refused(
        "an update stream without a call proof",
        adv.stream(header.clone(), vec![honest.clone()], false)
            .await,
        &[Code::Unauthenticated],
        "no proof",
    );
    refused(
        "an update announcing a terabyte",
        adv.stream(
            v1::UpdateHeader {
                total_bytes: 1 << 40,
                ..header.clone()
            },
            vec![],
            true,
        )
        .await,
        &[Code::InvalidArgument],
        "wrong shape",
    );
    refused(
        "a 4 MiB message in an update stream",
        adv.stream(header, vec![vec![0; 4 << 20]], true).await,
        &[
            Code::ResourceExhausted,
            Code::OutOfRange,
            Code::InvalidArgument,
        ],
        "",
    );
    let masked = tokio_stream::iter([
        v1::MaskedChunk {
            part: Some(v1::masked_chunk::Part::Header(v1::MaskedHeader {
                public_key: adv.key(),
                round: task.round,
                total_bytes: 1 << 30,
                ..Default::default()
            })),
        },
        v1::MaskedChunk {
            part: Some(v1::masked_chunk::Part::Data(vec![0; 1024])),
        },
    ]);
    refused(
        "a masked secure-aggregation stream without a call proof",
        adv.c.sec_agg_masked(masked).await,
        &[Code::Unauthenticated],
        "no proof",
    );
}

/// Idle sockets that never speak TLS, more of them than the coordinator serves at once: every
/// one is closed (the cap at once, the rest at the handshake timeout).
async fn idle_sockets(addr: &str) {
    let mut sockets = Vec::new();
    for _ in 0..60 {
        sockets.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let started = Instant::now();
    for mut s in sockets {
        let mut byte = [0u8; 1];
        let closed = tokio::time::timeout(Duration::from_secs(20), s.read(&mut byte)).await;
        assert!(
            matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
            "an idle socket was left open: {closed:?}"
        );
    }
    println!(
        "refused  60 idle sockets: all closed within {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// The model's layout as the coordinator announced it.
fn layout_of(spec: &v1::ModelSpec) -> Layout {
    Layout::new(spec.tensors.iter().map(|t| {
        (
            t.name.clone(),
            t.shape.iter().map(|&d| d as usize).collect::<Vec<_>>(),
        )
    }))
    .unwrap()
}

/// Waits for the coordinator to finish, then for every honest member, none of which may
/// have been rate-limited.
fn finish(root: &Path, coordinator: &mut Child, honest: &mut [Child]) {
    assert!(
        wait_exit(coordinator, Duration::from_secs(300)).success(),
        "{}",
        read(&root.join("serve.log"))
    );
    for (k, p) in honest.iter_mut().enumerate() {
        let log = root.join(format!("p{k}.log"));
        assert!(
            wait_exit(p, Duration::from_secs(60)).success(),
            "{}",
            read(&log)
        );
        assert!(
            !read(&log).contains("rate limit"),
            "an honest member was rate-limited: {}",
            read(&log)
        );
    }
}

/// The class list, and the first `n` communities' data and keys under `root/p{k}`.
fn communities(root: &Path, n: usize) {
    corpus(&root.join("classes"), &LANGUAGES);
    for (k, codes) in COMMUNITIES.iter().enumerate().take(n) {
        corpus(&root.join(format!("p{k}/data")), codes);
        let key = root.join(format!("p{k}/key.pem"));
        assert!(
            harambee(&["keygen", "--out", key.to_str().unwrap()])
                .status
                .success()
        );
    }
}

/// `harambee serve FED EXTRA...`, its log in `root/serve.log`, once it listens.
fn serve(root: &Path, fed: &Path, extra: &[&str]) -> Child {
    let serve_log = root.join("serve.log");
    let coordinator = spawn(
        std::process::Command::new(env!("CARGO_BIN_EXE_harambee"))
            .arg("serve")
            .arg(fed)
            .args(extra),
        &serve_log,
    );
    common::wait_for(&serve_log, "coordinator listening", Duration::from_secs(60));
    coordinator
}

fn spawn_honest(root: &Path, k: usize) -> Child {
    let log = root.join(format!("p{k}.log"));
    let child = spawn(&mut join_community(root, k), &log);
    common::wait_for(&log, "enrolled", Duration::from_secs(60));
    child
}

#[test]
fn a_hostile_member_and_strangers_cannot_stall_take_over_or_corrupt_a_federation() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    communities(root, 3);
    let steward_key = root.join("steward.key");
    let out = harambee(&["keygen", "--out", steward_key.to_str().unwrap()]);
    let steward = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let init = |dir: &Path, stewards: &[&str]| {
        let mut args = vec!["init", dir.to_str().unwrap()];
        for s in stewards {
            args.extend(["--steward", s]);
        }
        args.extend(SETTINGS);
        let classes = root.join("classes");
        args.extend(["--classes-from", classes.to_str().unwrap()]);
        args.iter().map(|a| a.to_string()).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| harambee(&args.iter().map(String::as_str).collect::<Vec<_>>());

    // One steward listed twice, once in capitals, would count twice towards k of n.
    let shouted = steward.to_ascii_uppercase();
    let out = run(init(&root.join("twice"), &[&steward, &shouted]));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("list each key once"),
        "{said}"
    );
    println!(
        "refused  a charter listing one steward twice: {}",
        said.trim()
    );
    // A second federation under the very same charter, whose amendments must not replay here.
    let other = root.join("other");
    assert!(run(init(&other, &[&steward])).status.success());

    let fed = root.join("fed");
    let out = run(init(&fed, &[&steward]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tighten_limits(&fed);
    let mut coordinator = serve(root, &fed, &["--linger-s", "1"]);

    // An amendment while the coordinator runs, and one signed for the other federation.
    let current = fs::read_to_string(fed.join("charter.toml")).unwrap();
    let proposed = root.join("proposed.toml");
    fs::write(
        &proposed,
        current.replace("max_rounds = 3", "max_rounds = 9"),
    )
    .unwrap();
    let sign = |dir: &Path| {
        let out = harambee(&[
            "charter",
            "sign",
            dir.to_str().unwrap(),
            "--proposed",
            proposed.to_str().unwrap(),
            "--key",
            steward_key.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let amend = |signature: &str| {
        harambee(&[
            "charter",
            "amend",
            fed.to_str().unwrap(),
            "--proposed",
            proposed.to_str().unwrap(),
            "--signature",
            signature,
        ])
    };
    let out = amend(&sign(&fed));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && said.contains("stop it"), "{said}");
    println!(
        "refused  a charter amendment under a live coordinator: {}",
        said.trim()
    );
    let replayed = sign(&other);

    // Downgrade: an invite rewritten to http:// is not followed without --insecure.
    let invite = Invite::load(&fed.join("invite.toml")).unwrap();
    let mut clear = invite.clone();
    clear.coordinator = clear.coordinator.replacen("https://", "http://", 1);
    clear.save(&root.join("clear.toml")).unwrap();
    let out = harambee(&[
        "join",
        "--invite",
        root.join("clear.toml").to_str().unwrap(),
        "--key",
        root.join("p0/key.pem").to_str().unwrap(),
        "--data",
        root.join("p0/data").to_str().unwrap(),
    ]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("only https://"),
        "{said}"
    );
    println!("refused  join through an http:// invite: {}", said.trim());

    let mut honest: Vec<Child> = (0..3).map(|k| spawn_honest(root, k)).collect();
    let victim = Identity::load(&root.join("p0/key.pem"))
        .unwrap()
        .public()
        .to_bytes()
        .to_vec();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut adv = Adversary {
            c: client(&invite),
            me: Identity::generate().unwrap(),
            invite: invite.clone(),
        };
        let spec = adv.enrol(None).await.unwrap().model.unwrap();
        let layout = layout_of(&spec);
        // Sybils: one more key fits the cap; the next is refused.
        adv.enrol(Some(&Identity::generate().unwrap()))
            .await
            .unwrap();
        refused(
            "a second Sybil enrolment past limits.max_participants",
            adv.enrol(Some(&Identity::generate().unwrap())).await,
            &[Code::ResourceExhausted],
            "max_participants",
        );

        // The adversary takes part in every round it is selected for, attacking in the first.
        let mut done = (0, 0);
        let mut attacked = false;
        loop {
            let task = adv.task(done).await;
            if task.kind == v1::task::Kind::Finished as i32 {
                break;
            }
            done = (task.round, task.attempt);
            let base = adv.fetch(&layout, &task.base_digest).await;
            if !attacked {
                attacked = true;
                impersonate(&mut adv, &victim, &task.base_digest).await;
                bad_numbers(&mut adv, &task, &base).await;
                idle_sockets(invite.coordinator.trim_start_matches("https://")).await;
            }
            // Then an honest update (the base unchanged, one sample), so the round can close.
            match adv.submit(&task, &base, 1).await {
                Ok(_) => {}
                Err(s) if s.code() == Code::FailedPrecondition => {}
                Err(s) => panic!("the adversary's honest update was refused: {s:?}"),
            }
        }
        assert!(attacked, "the adversary was never selected");
    });

    finish(root, &mut coordinator, &mut honest);
    // The coordinator is gone: the amendment signed for the other federation still does
    // not take effect here.
    let out = amend(&replayed);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a replayed amendment was applied: {said}"
    );
    assert_eq!(
        fs::read_to_string(fed.join("charter.toml")).unwrap(),
        current
    );
    println!(
        "refused  an amendment signed for another federation: {}",
        said.trim()
    );

    // The ledger verifies, alone and against what each community kept of it: every tree head
    // it was shown and every promise it was given with an acknowledgement.
    let witnesses: Vec<String> = (0..3)
        .map(|k| {
            let file = root.join(format!("p{k}/key.pem.state.witness.jsonl"));
            assert!(file.is_file(), "community {k} kept no witness file");
            file.to_str().unwrap().to_string()
        })
        .collect();
    let verify = |dir: &Path| {
        let mut args = vec![
            "ledger".to_string(),
            "verify".into(),
            dir.to_str().unwrap().into(),
        ];
        for w in &witnesses {
            args.extend(["--witness".into(), w.clone()]);
        }
        let out = harambee(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let (ok, text) = verify(&fed);
    assert!(ok && text.contains("witnessed"), "{text}");

    // A coordinator that rolls its ledger back to an earlier signed head (dropping the last
    // round and the release) still has a self-consistent ledger; the witnesses catch it.
    let forked = root.join("forked");
    assert!(
        std::process::Command::new("cp")
            .arg("-r")
            .arg(&fed)
            .arg(&forked)
            .status()
            .unwrap()
            .success()
    );
    let db = rusqlite::Connection::open(forked.join("state.db")).unwrap();
    let sizes: Vec<i64> = db
        .prepare("SELECT size FROM tree_heads ORDER BY size")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    // The head before the last round closed (the last two: that round, then the release).
    let earlier = sizes[sizes.len() - 3];
    db.execute("DELETE FROM ledger WHERE idx >= ?1", [earlier])
        .unwrap();
    db.execute("DELETE FROM tree_heads WHERE size > ?1", [earlier])
        .unwrap();
    drop(db);
    let (ok, text) = verify(&forked);
    assert!(!ok && text.contains("truncated"), "{text}");
    assert!(text.contains("promised to record"), "{text}");
    println!(
        "refused  a ledger rolled back from {} to {earlier} entries: {}",
        sizes[sizes.len() - 1],
        text.lines()
            .find(|l| l.contains("truncated"))
            .unwrap_or_default()
            .trim()
    );
}

/// The federation's settings: three rounds among three communities, every result needed, at
/// most a million samples an update (a charter rule).
const SETTINGS: [&str; 17] = [
    "--max-samples",
    "1000000",
    "--listen",
    "127.0.0.1:0",
    "--no-dashboard",
    "--rounds",
    "3",
    "--min-participants",
    "3",
    "--quorum",
    "3",
    "--deadline-s",
    "60",
    "--epochs",
    "1",
    "--seed",
    "5",
];

/// Under a charter of int8 updates, a member's update in another encoding, malformed int8
/// bytes, or int8 bytes signed as something other than what they decode to are refused; a
/// proper one is taken, and the ledger recomputes every round from the decoded updates.
/// Downloads are int8 too: a member holding the previous model receives only the change,
/// which rebuilds the new model bit for bit; one holding nothing receives the whole model.
#[test]
fn compressed_updates_are_decoded_strictly_and_recorded_as_decoded() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    communities(root, 2);
    let fed = root.join("fed");
    let classes = root.join("classes");
    let mut args = vec!["init", fed.to_str().unwrap(), "--update-encoding", "int8"];
    args.extend(["--download-encoding", "int8"]);
    args.extend(["--classes-from", classes.to_str().unwrap()]);
    args.extend(SETTINGS);
    common::ok(&harambee(&args));
    let charter = fs::read_to_string(fed.join("charter.toml")).unwrap();
    assert!(charter.contains("update_encoding = \"int8\""), "{charter}");
    assert!(
        charter.contains("download_encoding = \"int8\""),
        "{charter}"
    );
    let mut coordinator = serve(root, &fed, &[]);
    let mut honest: Vec<Child> = (0..2).map(|k| spawn_honest(root, k)).collect();
    let invite = Invite::load(&fed.join("invite.toml")).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut adv = Adversary {
            c: client(&invite),
            me: Identity::generate().unwrap(),
            invite: invite.clone(),
        };
        let spec = adv.enrol(None).await.unwrap().model.unwrap();
        assert_eq!(spec.update_encoding, "int8");
        // A data commitment is taken once, signed; never a malformed one, an unsigned one,
        // or a second, different one.
        let (root, other) = ([7u8; 32], [8u8; 32]);
        refused(
            "a data root of 31 bytes",
            adv.commit_data(&root[1..], Some(&root)).await,
            &[Code::InvalidArgument],
            "32 bytes",
        );
        refused(
            "a data root the enrolment signature does not cover",
            adv.commit_data(&root, None).await,
            &[Code::Unauthenticated],
            "data root",
        );
        adv.commit_data(&root, Some(&root)).await.unwrap();
        adv.commit_data(&root, Some(&root)).await.unwrap();
        refused(
            "a second, different data root",
            adv.commit_data(&other, Some(&other)).await,
            &[Code::PermissionDenied],
            "may not change",
        );
        let layout = layout_of(&spec);
        let int8: UpdateCodec = "int8".parse().unwrap();
        let mut done = (0, 0);
        let mut attacked = false;
        let mut held: Option<ParamSet> = None;
        let mut changes = 0;
        loop {
            let task = adv.task(done).await;
            if task.kind == v1::task::Kind::Finished as i32 {
                break;
            }
            done = (task.round, task.attempt);
            let base = adv.fetch(&layout, &task.base_digest).await;
            if let Some(previous) = held.replace(base.clone())
                && previous.digest() != base.digest()
            {
                let (encoding, bytes) = adv.fetch_holding(&task.base_digest, &previous).await;
                assert_eq!(
                    encoding, "int8",
                    "holding the previous model, only the change"
                );
                assert_eq!(bytes.len(), int8.encoded_len(layout.num_values()));
                assert_eq!(int8.decode(&previous, &bytes).unwrap(), base);
                changes += 1;
            }
            let mut trained = base.clone();
            trained.values_mut().iter_mut().for_each(|v| *v += 0.01);
            let (bytes, decoded) = int8.encode(&base, &trained, None).unwrap();
            if !attacked {
                attacked = true;
                refused(
                    "an f32 update where the charter sets int8",
                    adv.submit(&task, &trained, 1).await,
                    &[Code::InvalidArgument],
                    "charter sets int8",
                );
                let mut negative_scale = bytes.clone();
                negative_scale[..4].copy_from_slice(&(-1.0f32).to_le_bytes());
                refused(
                    "int8 bytes with a negative block scale",
                    adv.submit_encoded(&task, "int8", &decoded, negative_scale, 1)
                        .await,
                    &[Code::InvalidArgument],
                    "malformed compressed update",
                );
                refused(
                    "int8 bytes one short",
                    adv.submit_encoded(&task, "int8", &decoded, bytes[1..].to_vec(), 1)
                        .await,
                    &[Code::InvalidArgument],
                    "wrong shape",
                );
                refused(
                    "int8 bytes signed as the undecoded update",
                    adv.submit_encoded(&task, "int8", &trained, bytes.clone(), 1)
                        .await,
                    &[Code::InvalidArgument],
                    "hash to",
                );
            }
            match adv.submit_encoded(&task, "int8", &decoded, bytes, 1).await {
                Ok(_) => {}
                Err(s) if s.code() == Code::FailedPrecondition => {}
                Err(s) => panic!("the proper int8 update was refused: {s:?}"),
            }
        }
        assert!(attacked, "the adversary was never selected");
        assert!(changes > 0, "the adversary never held a previous model");
    });
    finish(root, &mut coordinator, &mut honest);
    let member = read(&root.join("p0.log"));
    assert!(member.contains("encoding=\"int8\""), "{member}");
    let out = harambee(&["ledger", "verify", fed.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("recomputed from the kept updates and matching: 3 of 3"),
        "{said}"
    );
}

// Before, one invite token admitted any number of keys: a Sybil with the shared invite
// enrolled as many members as it liked. Per-member invites admit one key each.
#[test]
fn a_single_use_invite_admits_one_key_and_the_shared_token_none() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    corpus(&root.join("classes"), &LANGUAGES);
    let fed = root.join("fed");
    let classes = root.join("classes");
    let mut args = vec!["init", fed.to_str().unwrap(), "--per-member-invites"];
    args.extend(["--classes-from", classes.to_str().unwrap()]);
    args.extend(SETTINGS);
    let out = harambee(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let alice = root.join("alice.toml");
    let issue = || {
        harambee(&[
            "invite",
            fed.to_str().unwrap(),
            "--name",
            "alice",
            "--out",
            alice.to_str().unwrap(),
        ])
    };
    assert!(issue().status.success());
    assert!(!issue().status.success(), "an invite file was overwritten");
    let mut coordinator = serve(root, &fed, &[]);

    let shared = Invite::load(&fed.join("invite.toml")).unwrap();
    let own = Invite::load(&alice).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut adv = Adversary {
            c: client(&shared),
            me: Identity::generate().unwrap(),
            invite: own.clone(),
        };
        let alice_key = Identity::generate().unwrap();
        adv.enrol(Some(&alice_key)).await.unwrap();
        adv.enrol(Some(&alice_key))
            .await
            .expect("enrolling again with one's own invite is harmless");
        refused(
            "a second key with a used single-use invite",
            adv.enrol(None).await,
            &[Code::PermissionDenied],
            "already used",
        );
        adv.invite = shared.clone();
        refused(
            "the shared token where only per-member invites admit",
            adv.enrol(None).await,
            &[Code::PermissionDenied],
            "single-use invite",
        );
        adv.invite.token = "0".repeat(64);
        refused(
            "a made-up invite token",
            adv.enrol(None).await,
            &[Code::PermissionDenied],
            "not valid",
        );
    });
    coordinator.kill().unwrap();
    coordinator.wait().unwrap();
}

/// A buffered (FedBuff) federation with members of very different speeds: two real
/// `harambee join` processes and a member slowed on purpose, whose results arrive stale.
/// Its work may be delivered once, for the piece it was given, from the version it was
/// given, and before the piece's deadline; the run ends, every version records each
/// result's base version and staleness, and `ledger verify` recomputes every version from
/// the kept updates.
#[test]
fn a_buffered_federation_takes_stale_results_by_weight_and_verifies() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    communities(root, 2);
    let fed = root.join("fed");
    let classes = root.join("classes");
    let mut args = vec!["init", fed.to_str().unwrap(), "--fedbuff", "2:3:1.0:10"];
    args.extend(["--classes-from", classes.to_str().unwrap()]);
    args.extend(["--max-samples", "1000000", "--listen", "127.0.0.1:0"]);
    args.extend([
        "--no-dashboard",
        "--rounds",
        "30",
        "--min-participants",
        "1",
    ]);
    args.extend([
        "--quorum",
        "1",
        "--deadline-s",
        "3",
        "--epochs",
        "1",
        "--seed",
        "5",
    ]);
    common::ok(&harambee(&args));
    let charter = fs::read_to_string(fed.join("charter.toml")).unwrap();
    assert!(charter.contains("[buffered]"), "{charter}");
    // What FedBuff does not combine with is refused at init, with the reason.
    let other = root.join("median");
    let out = harambee(&[
        "init",
        other.to_str().unwrap(),
        "--fedbuff",
        "2",
        "--strategy",
        "median",
        "--classes-from",
        classes.to_str().unwrap(),
    ]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("runs with fedavg"),
        "{said}"
    );
    let mut coordinator = serve(root, &fed, &[]);
    let mut honest: Vec<Child> = (0..2).map(|k| spawn_honest(root, k)).collect();
    let invite = Invite::load(&fed.join("invite.toml")).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let slowed = runtime.block_on(async {
        let mut adv = Adversary {
            c: client(&invite),
            me: Identity::generate().unwrap(),
            invite: invite.clone(),
        };
        let reply = adv.enrol(None).await.unwrap();
        let layout = layout_of(&reply.model.unwrap());
        let (mut done, mut delivered, mut overran) = ((0, 0), 0, false);
        loop {
            let task = adv.task(done).await;
            if task.kind == v1::task::Kind::Finished as i32 {
                break;
            }
            done = (task.round, task.attempt);
            let base = adv.fetch(&layout, &task.base_digest).await;
            // Slowed: the fast members publish versions meanwhile.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let mut trained = base.clone();
            trained.values_mut().iter_mut().for_each(|v| *v += 0.001);
            if delivered == 0 {
                let other_piece = v1::Task {
                    attempt: task.attempt + 1,
                    ..task.clone()
                };
                refused(
                    "an update for a piece of work it was not given",
                    adv.submit(&other_piece, &trained, 10).await,
                    &[Code::FailedPrecondition],
                    "work is round",
                );
            }
            if delivered == 1 && !overran {
                // Past the piece's 3 s deadline: the piece went to another member.
                overran = true;
                tokio::time::sleep(Duration::from_millis(4000)).await;
                let late = adv.submit(&task, &trained, 10).await;
                assert!(
                    matches!(&late, Err(s) if matches!(s.code(), Code::PermissionDenied | Code::FailedPrecondition)),
                    "work delivered past its deadline must be refused: {late:?}"
                );
                continue;
            }
            match adv.submit(&task, &trained, 10).await {
                Ok(_) => {
                    if delivered == 0 {
                        refused(
                            "the same update delivered twice",
                            adv.submit(&task, &trained, 10).await,
                            &[Code::AlreadyExists],
                            "already held",
                        );
                    }
                    delivered += 1;
                }
                // Too stale, or its deadline passed: refused, and it is given new work.
                Err(s) if s.code() == Code::FailedPrecondition => {}
                Err(s) => panic!("the slowed member's update was refused: {s:?}"),
            }
        }
        assert!(delivered > 0, "the slowed member never delivered");
        reply.participant_id
    });
    finish(root, &mut coordinator, &mut honest);
    let served = read(&root.join("serve.log"));
    assert!(
        served.contains("work not delivered by its deadline"),
        "{served}"
    );
    let out = harambee(&["ledger", "verify", fed.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("recomputed from the kept updates and matching: 30 of 30"),
        "{said}"
    );
    let out = harambee(&["ledger", "show", fed.to_str().unwrap()]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert_eq!(shown.matches("version ").count(), 30, "{shown}");
    let stale = (1..=10).any(|s| shown.contains(&format!("p{slowed} (staleness {s})")));
    assert!(
        stale,
        "the slowed member's results should arrive stale: {shown}"
    );
}

/// How a lazy worker cheats from its second round on (its first it trains honestly, and is
/// not flagged).
#[derive(Debug, Clone, Copy)]
enum Laziness {
    /// Sends the base back with a little noise, without training.
    Noise,
    /// Trains half the inner steps asked for.
    FewerSteps,
    /// Trains on another worker's shard.
    OtherShard,
}

/// A lazy worker written against the protocol: it trains with the same public trainer the
/// coordinator replays with, and cheats in round 2. Returns its participant id and key.
async fn lazy_worker(invite: Invite, laziness: Laziness) -> (u64, Identity) {
    let mut adv = Adversary {
        c: client(&invite),
        me: Identity::generate().unwrap(),
        invite,
    };
    let reply = adv.enrol(None).await.unwrap();
    let spec = reply.model.unwrap();
    assert!(
        spec.reproducible,
        "the coordinator must ask for reproducible training"
    );
    let me = reply.participant_id;
    let task_model = harambee_learn::ModelTask {
        model: spec.model.parse().unwrap(),
        data: harambee_learn::DataKind::Images,
        classes: spec.classes.clone(),
        embedding_dim: spec.embedding_dim as usize,
        optimizer: serde_json::from_str(&spec.optimizer).unwrap(),
        reproducible: true,
    };
    let corpus = common::repo().join("data/mnist");
    let trainer = harambee_server::Replayer::new(&task_model, &corpus).unwrap();
    // A worker whose data is not the public corpus is stopped when it commits to it, before
    // it could train anything that would not replay; the corpus itself is taken.
    let other = [7u8; 32];
    refused(
        "a commitment to data other than the public corpus",
        adv.commit_data(&other, Some(&other)).await,
        &[Code::PermissionDenied],
        "public corpus",
    );
    let root = harambee_participant::data_root(&task_model.load_local(&corpus).unwrap());
    assert_eq!(root, trainer.corpus_root());
    adv.commit_data(&root, Some(&root)).await.unwrap();
    let layout = layout_of(&spec);
    for round in 1..=2 {
        let task = adv.task((round - 1, 0)).await;
        assert_eq!(task.round, round, "{laziness:?}");
        let base = adv.fetch(&layout, &task.base_digest).await;
        let shard = task.shard.unwrap();
        let fit = task.config.unwrap();
        let recipe = TrainingRecipe {
            shard_index: shard.index,
            shard_count: shard.count,
            seed: harambee_learn::task_seed(spec.seed, task.round, me, task.attempt),
            epochs: fit.epochs,
            local_steps: fit.local_steps,
            batch_size: fit.batch_size,
            learning_rate: fit.learning_rate,
            proximal_mu: fit.proximal_mu,
        };
        if round == 1 {
            let honest = trainer.replay(&base, &recipe).unwrap();
            if matches!(laziness, Laziness::Noise) {
                // The same update twice at once: one replay per member at a time, and one
                // update per round, so one is taken and the other refused.
                let mut twin = adv.twin();
                let (a, b) = tokio::join!(
                    adv.submit_with_recipe(&task, &honest, recipe),
                    twin.submit_with_recipe(&task, &honest, recipe)
                );
                let refused = match (a, b) {
                    (Ok(_), Err(s)) | (Err(s), Ok(_)) => s,
                    other => panic!("one copy must be taken and one refused: {other:?}"),
                };
                assert!(
                    matches!(
                        refused.code(),
                        Code::FailedPrecondition | Code::AlreadyExists
                    ),
                    "{refused:?}"
                );
            } else {
                adv.submit_with_recipe(&task, &honest, recipe)
                    .await
                    .unwrap();
            }
            continue;
        }
        let lazy = match laziness {
            Laziness::Noise => {
                let mut noisy = base.clone();
                for (i, v) in noisy.values_mut().iter_mut().enumerate() {
                    *v += 1e-3 * ((i as f32) * 0.7).sin();
                }
                noisy
            }
            Laziness::FewerSteps => {
                let half = TrainingRecipe {
                    local_steps: recipe.local_steps / 2,
                    ..recipe
                };
                let lazy = trainer.replay(&base, &half).unwrap();
                // Honest about its laziness: the recipe signed is not the round's.
                refused(
                    "an update signed with a recipe other than the round's",
                    adv.submit_with_recipe(&task, &lazy, half).await,
                    &[Code::Unauthenticated],
                    "training recipe",
                );
                lazy
            }
            Laziness::OtherShard => {
                let other = TrainingRecipe {
                    shard_index: (recipe.shard_index + 1) % recipe.shard_count,
                    ..recipe
                };
                trainer.replay(&base, &other).unwrap()
            }
        };
        refused(
            &format!("a lazy update ({laziness:?}) under the round's recipe"),
            adv.submit_with_recipe(&task, &lazy, recipe).await,
            &[Code::PermissionDenied],
            "does not replay",
        );
    }
    refuse_removed(&mut adv).await;
    (me, adv.me)
}

/// A worker removed for fraud asks for a task: refused, saying why.
async fn refuse_removed(adv: &mut Adversary) {
    let r = adv.call(
        method::GET_TASK,
        v1::TaskRequest {
            public_key: adv.key(),
            after_round: 2,
            after_attempt: 0,
            wait_ms: 100,
        },
    );
    refused(
        "a task for a worker removed for fraud",
        adv.c.get_task(r).await,
        &[Code::PermissionDenied],
        "did not replay",
    );
}

#[test]
fn lazy_workers_are_caught_by_replay_recorded_as_fraud_and_removed_while_training_goes_on() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let fed = root.join("fed");
    let mnist = common::repo().join("data/mnist");
    let mut args = vec!["init", fed.to_str().unwrap(), "--mode", "community"];
    args.extend(["--model", "2nn", "--strategy", "diloco:10", "--verify", "1"]);
    args.extend(["--replay-data", mnist.to_str().unwrap()]);
    args.extend(["--listen", "127.0.0.1:0", "--no-dashboard", "--rounds", "6"]);
    args.extend(["--min-participants", "5", "--quorum", "2", "--batch", "10"]);
    args.extend(["--deadline-s", "60", "--seed", "5"]);
    common::ok(&harambee(&args));
    let charter = fs::read_to_string(fed.join("charter.toml")).unwrap();
    assert!(charter.contains("replay_fraction = 1.0"), "{charter}");
    // A model on burn's run-time kernels cannot be replayed bit for bit: refused, with why.
    let other = root.join("transformer");
    let out = harambee(&[
        "init",
        other.to_str().unwrap(),
        "--mode",
        "community",
        "--model",
        "char-transformer",
        "--verify",
        "0.5",
    ]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && said.contains("kernels"), "{said}");

    let mut coordinator = serve(root, &fed, &[]);
    let honest_worker = |k: usize| {
        let key = root.join(format!("p{k}.pem"));
        assert!(
            harambee(&["keygen", "--out", key.to_str().unwrap()])
                .status
                .success()
        );
        let log = root.join(format!("p{k}.log"));
        let mut join = common::join_command(&fed, &key, &mnist, &format!("p{k}"));
        if k == 0 {
            join.env("HARAMBEE_KERNEL", "generic");
        }
        let child = spawn(&mut join, &log);
        common::wait_for(&log, "enrolled", Duration::from_secs(60));
        child
    };
    // Two honest workers: one on the generic kernel, one on the widest (as the coordinator).
    let mut honest: Vec<Child> = (0..2).map(honest_worker).collect();
    let invite = Invite::load(&fed.join("invite.toml")).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (lazy, keys): (Vec<u64>, Vec<Identity>) = runtime.block_on(async {
        let workers = [Laziness::Noise, Laziness::FewerSteps, Laziness::OtherShard]
            .map(|l| tokio::spawn(lazy_worker(invite.clone(), l)));
        let mut caught = Vec::new();
        for w in workers {
            caught.push(w.await.unwrap());
        }
        caught.into_iter().unzip()
    });
    // Killed and restarted (round 3 waits for workers): the removals come back from the
    // ledger's fraud entries.
    coordinator.kill().unwrap();
    coordinator.wait().unwrap();
    let mut coordinator = serve(root, &fed, &[]);
    runtime.block_on(async {
        for me in keys {
            let mut adv = Adversary {
                c: client(&invite),
                me,
                invite: invite.clone(),
            };
            refuse_removed(&mut adv).await;
        }
    });
    // Rounds open with five workers: three newcomers replace the lazy ones.
    honest.extend((2..5).map(honest_worker));
    finish(root, &mut coordinator, &mut honest);
    assert!(read(&root.join("p0.log")).contains("kernel=\"generic\""));
    let served = read(&root.join("serve.log"));
    assert!(
        served.contains("spot check: the update replays bit for bit"),
        "{served}"
    );

    // The ledger: one fraud entry per lazy worker in round 2, none of their updates after,
    // round 2 made by the two honest workers, and rounds 3–6 by five.
    use harambee_store::StateStore as _;
    let (entries, _) = harambee_store::SqliteState::open(&fed.join("state.db"))
        .unwrap()
        .ledger()
        .unwrap();
    let entries: Vec<harambee_ledger::Entry> = entries
        .iter()
        .map(|e| harambee_ledger::Entry::parse(e).unwrap())
        .collect();
    let mut frauds: Vec<u64> = entries
        .iter()
        .filter_map(|e| match e {
            harambee_ledger::Entry::Fraud {
                round: 2,
                participant,
                ..
            } => Some(*participant),
            _ => None,
        })
        .collect();
    frauds.sort_unstable();
    let mut expected = lazy.clone();
    expected.sort_unstable();
    assert_eq!(frauds, expected);
    for e in &entries {
        if let harambee_ledger::Entry::UpdateCommitment {
            round,
            participant,
            recipe,
            ..
        } = e
        {
            assert!(recipe.is_some(), "every update carries its recipe");
            assert!(
                *round == 1 || !lazy.contains(participant),
                "a lazy update in round {round}"
            );
        }
        if let harambee_ledger::Entry::RoundResult { round, inputs, .. } = e {
            assert_eq!(
                inputs.len(),
                if *round == 2 { 2 } else { 5 },
                "round {round}"
            );
        }
    }

    let shown = common::ok(&harambee(&[
        "ledger",
        "verify",
        fed.to_str().unwrap(),
        "--replay-training",
    ]));
    assert!(shown.contains("matching bit for bit: 27 of 27"), "{shown}");
    for id in &lazy {
        assert!(
            shown.contains(&format!("fraud confirmed: round 2, participant {id} ")),
            "{shown}"
        );
    }
    let listed = common::ok(&harambee(&["ledger", "show", fed.to_str().unwrap()]));
    assert_eq!(
        listed.matches("FRAUD by participant").count(),
        3,
        "{listed}"
    );
}
