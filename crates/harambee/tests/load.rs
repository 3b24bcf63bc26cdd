//! Load: a coordinator process (TLS, SQLite, fsync on every update) and 1,000 concurrent
//! lightweight participants, each on its own TLS connection, in this process. They do not
//! train; they return the global model nudged, signed like any update. Bounded in count and
//! time; prints rounds per second, upload latency percentiles and the coordinator's peak
//! memory (`cargo test --release -p harambee --test load -- --nocapture`). Only functional
//! outcomes are asserted: timings on a shared machine are not pass/fail.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::client;
use harambee_identity::{Identity, UpdateStatement};
use harambee_params::{Digest, Encoding, Layout};
use harambee_proto::auth::{self, method};
use harambee_proto::{Invite, v1};

const PARTICIPANTS: usize = 1000;
const ROUNDS: u64 = 5;

/// One participant: enrol, then answer every task until the end. Returns upload latencies.
async fn participant(invite: Arc<Invite>, latencies: Arc<Mutex<Vec<Duration>>>) {
    let me = Identity::generate().unwrap();
    let key = me.public().to_bytes().to_vec();
    let mut c = client(&invite);
    let spec = c
        .enrol(call(
            &me,
            &invite.federation_id,
            method::ENROL,
            v1::EnrolRequest {
                public_key: key.clone(),
                invite_token: invite.token.clone(),
                name: String::new(),
                signature: me.sign_enrolment(&invite.federation_id).to_vec(),
                data_root: Vec::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .model
        .unwrap();
    let layout = Layout::new(spec.tensors.iter().map(|t| {
        (
            t.name.clone(),
            t.shape.iter().map(|&d| d as usize).collect::<Vec<_>>(),
        )
    }))
    .unwrap();
    let mut done = (0, 0);
    loop {
        let task = c
            .get_task(call(
                &me,
                &invite.federation_id,
                method::GET_TASK,
                v1::TaskRequest {
                    public_key: key.clone(),
                    after_round: done.0,
                    after_attempt: done.1,
                    wait_ms: 20_000,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        if task.kind == v1::task::Kind::Finished as i32 {
            return;
        }
        if task.kind != v1::task::Kind::Train as i32 {
            continue;
        }
        done = (task.round, task.attempt);
        let mut stream = c
            .fetch_parameters(call(
                &me,
                &invite.federation_id,
                method::FETCH_PARAMETERS,
                v1::FetchRequest {
                    public_key: key.clone(),
                    digest: task.base_digest.clone(),
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
        let mut params = Encoding::F32.decode(&layout, &bytes).unwrap();
        params.values_mut().iter_mut().for_each(|v| *v += 1e-3);
        let base = Digest(task.base_digest.as_slice().try_into().unwrap());
        let signed = me.sign(UpdateStatement {
            federation: invite.federation_id.clone(),
            round: task.round,
            base,
            update: params.digest(),
            num_samples: 10,
            recipe: None,
        });
        let data = Encoding::F32.encode(&params);
        let header = v1::UpdateHeader {
            public_key: key.clone(),
            round: task.round,
            attempt: task.attempt,
            base_digest: task.base_digest.clone(),
            update_digest: params.digest().0.to_vec(),
            num_samples: 10,
            train_loss: 1.0,
            encoding: "f32".into(),
            total_bytes: data.len() as u64,
            signature: signed.signature.to_vec(),
        };
        let body = auth::body_digest(&header);
        let parts = [
            v1::update_chunk::Part::Header(header),
            v1::update_chunk::Part::Data(data),
        ];
        let started = Instant::now();
        let stream = tokio_stream::iter(parts.map(|p| v1::UpdateChunk { part: Some(p) }));
        let reply = c
            .submit_update(auth::prove(
                &me,
                &invite.federation_id,
                method::SUBMIT_UPDATE,
                body,
                stream,
            ))
            .await;
        match reply {
            Ok(_) => latencies.lock().unwrap().push(started.elapsed()),
            // The round closed at its quorum before this update arrived: refused, as it must be.
            Err(s) if s.code() == tonic::Code::FailedPrecondition => {}
            Err(s) => panic!("upload failed: {s:?}"),
        }
    }
}

/// A unary request signed by `id`: every call proves its sender.
fn call<M: prost::Message>(
    id: &Identity,
    federation: &str,
    method: &str,
    m: M,
) -> tonic::Request<M> {
    auth::signed(id, federation, method, m)
}

fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

#[test]
fn a_thousand_participants_complete_rounds_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let fed = dir.path().join("fed");
    let out = Command::new(env!("CARGO_BIN_EXE_harambee"))
        .args([
            "init",
            fed.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--model",
            "logreg",
        ])
        .args([
            "--rounds",
            &ROUNDS.to_string(),
            "--min-participants",
            &PARTICIPANTS.to_string(),
        ])
        .args(["--quorum", "50", "--fraction", "0.1", "--deadline-s", "60"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = dir.path().join("serve.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_harambee"))
        .args(["serve", fed.to_str().unwrap(), "--linger-s", "5"])
        .env("RUST_LOG", "warn")
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("coordinator listening")
    {
        assert!(Instant::now() < until, "the coordinator did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let invite = Arc::new(Invite::load(&fed.join("invite.toml")).unwrap());
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let (first_open, finished) = runtime.block_on(async {
        let tasks: Vec<_> = (0..PARTICIPANTS)
            .map(|_| tokio::spawn(participant(Arc::clone(&invite), Arc::clone(&latencies))))
            .collect();
        // When round 1 opened: all enrolled.
        let mut status = client(&invite);
        let first_open = loop {
            match status.get_status(v1::StatusRequest {}).await {
                Ok(s) if s.get_ref().phase != "waiting" => break started.elapsed(),
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let all = tokio::time::timeout(Duration::from_secs(300), futures_all(tasks)).await;
        assert!(all.is_ok(), "participants did not finish in 300 s");
        (first_open, started.elapsed())
    });
    let peak = peak_rss_mb(server.id());
    assert!(
        server.wait().unwrap().success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let state = harambee_store::SqliteState::open(&fed.join("state.db")).unwrap();
    let rounds = harambee_store::StateStore::closed_rounds(&state).unwrap();
    assert_eq!(rounds.len() as u64, ROUNDS);
    assert!(rounds.iter().all(|r| r.contributors >= 50));

    let mut l = latencies.lock().unwrap().clone();
    l.sort();
    let pct = |p: f64| l[((l.len() as f64 * p) as usize).min(l.len() - 1)].as_secs_f64() * 1000.0;
    let training = (finished - first_open).as_secs_f64();
    println!(
        "{PARTICIPANTS} participants: all enrolled after {:.2} s; {ROUNDS} rounds in {training:.2} s ({:.2} rounds/s); {} uploads, latency p50 {:.1} ms, p99 {:.1} ms; coordinator peak RSS {:.0} MB",
        first_open.as_secs_f64(),
        ROUNDS as f64 / training,
        l.len(),
        pct(0.5),
        pct(0.99),
        peak.unwrap_or(f64::NAN)
    );
    // Bounded: 1,000 connections and a model of 7,850 values need far less than this.
    if let Some(mb) = peak {
        assert!(mb < 1024.0, "coordinator peak RSS {mb:.0} MB");
    }
}

async fn futures_all(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for t in tasks {
        t.await.unwrap();
    }
}
