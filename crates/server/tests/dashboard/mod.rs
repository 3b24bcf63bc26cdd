//! The dashboard's HTTP side of a coordinator in-process: the API and `/metrics` against the
//! federation's real state, hostile requests refused without changing anything, and stewards'
//! signed requests that really pause, resume and remove.

use harambee_dashboard::api::{
    AdminReply, CurrentRound, FederationInfo, Member, MemberState, Phase, RoundDetail, RoundPage,
    TreeHeadInfo,
};
use harambee_dashboard::{DashboardClient, Reply, StewardRequest, unix_ms};
use harambee_identity::Identity;
use harambee_params::{Digest, Encoding, ParamSet};
use harambee_proto::{CoordinatorClient, v1};
use harambee_server::{FederationFolder, Ready, ServeOptions};
use harambee_store::{SqliteState, StateStore};
use tonic::Code;
use tonic::transport::Channel;

use super::{Running, call, chunks, client, enrol, fetch_global, submit, update};
use harambee_proto::auth::method;

/// A federation of two participants, three rounds, quorum 1, with a steward and a dashboard.
async fn start_with_dashboard(steward: &Identity) -> (Running, String, FederationFolder) {
    let dir = tempfile::tempdir().unwrap();
    let folder = FederationFolder::new(dir.path());
    let mut config = super::config(2);
    config.rounds.rounds = 3;
    config.http = Some("127.0.0.1:0".parse().unwrap());
    let mut charter = super::charter(None);
    charter.max_rounds = 3;
    charter.members.push(harambee_charter::Member {
        name: "the steward".into(),
        public_key: steward.public().to_string(),
        role: harambee_charter::Role::Steward,
    });
    let invite = folder.init(config, &charter).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let f = folder.clone();
    tokio::spawn(async move {
        let _ = harambee_server::serve_with(&f, ServeOptions::default(), move |r: Ready| {
            let _ = tx.send(r);
        })
        .await;
    });
    let ready = rx.await.unwrap();
    let url = format!("http://{}", ready.dashboard.unwrap());
    (
        Running {
            _dir: dir,
            invite,
            addr: ready.grpc,
        },
        url,
        folder,
    )
}

/// One participant's part of the open round: its task, the global model, a signed update.
struct Trained {
    header: v1::UpdateHeader,
    bytes: Vec<u8>,
}

async fn train(
    c: &mut CoordinatorClient<Channel>,
    r: &Running,
    id: &Identity,
    spec: &v1::ModelSpec,
    after: u64,
) -> Trained {
    let task = c
        .get_task(call(
            id,
            &r.invite.federation_id,
            method::GET_TASK,
            v1::TaskRequest {
                public_key: id.public().to_bytes().to_vec(),
                after_round: after,
                after_attempt: 0,
                wait_ms: 5000,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(task.kind, v1::task::Kind::Train as i32, "{task:?}");
    let base = Digest(task.base_digest.as_slice().try_into().unwrap());
    let layout = harambee_params::Layout::new(spec.tensors.iter().map(|t| {
        (
            t.name.clone(),
            t.shape.iter().map(|&d| d as usize).collect::<Vec<_>>(),
        )
    }))
    .unwrap();
    let global: ParamSet = Encoding::F32
        .decode(&layout, &fetch_global(c, r, id, &task.base_digest).await)
        .unwrap();
    let mut trained = global.clone();
    trained.values_mut()[0] += 0.25;
    let (header, bytes) = update(r, id, task.round, base, &trained);
    Trained { header, bytes }
}

async fn get<T: serde::de::DeserializeOwned>(d: &DashboardClient, path: &str) -> T {
    let reply = d.get(path).await.unwrap();
    assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    reply.json().unwrap()
}

/// A metric's value in a scrape.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("{name} missing from\n{text}"))
        .parse()
        .unwrap()
}

/// A signed admin request's headers, for `path` and `body`, by `key`.
fn signed(
    federation: &str,
    key: &Identity,
    path: &str,
    body: &[u8],
    nonce: u8,
) -> Vec<(&'static str, String)> {
    StewardRequest {
        federation,
        method: "POST",
        path,
        body,
        timestamp_ms: unix_ms(),
        nonce: [nonce; 16],
    }
    .sign(key)
    .pairs()
    .to_vec()
}

fn expect_error(reply: &Reply, status: u16, words: &str) {
    assert_eq!(reply.status, status, "{}", reply.text());
    assert!(
        reply.content_type.as_deref() == Some("application/json"),
        "{:?}",
        reply.content_type
    );
    assert!(
        reply.error().contains(words),
        "{:?} should mention {words:?}",
        reply.error()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_and_metrics_match_the_state_and_stewards_really_pause_resume_and_remove() {
    let steward = Identity::generate().unwrap();
    let outsider = Identity::generate().unwrap();
    let (r, url, folder) = start_with_dashboard(&steward).await;
    let d = DashboardClient::new(&url).unwrap();
    let mut c = client(&r);
    let (a, b) = (Identity::generate().unwrap(), Identity::generate().unwrap());

    let info: FederationInfo = get(&d, "/api/federation").await;
    assert_eq!(info.federation_id, r.invite.federation_id);
    assert_eq!(info.charter_sha256, r.invite.charter_sha256);
    assert_eq!(info.stewards.len(), 1);
    assert_eq!(info.stewards[0].public_key, steward.public().to_string());
    let round: CurrentRound = get(&d, "/api/round").await;
    assert_eq!((round.phase, round.round), (Phase::Waiting, 1));

    // Round 1: both train; a replay and a forged update are refused along the way.
    let spec = enrol(&mut c, &r, &a).await.model.unwrap();
    enrol(&mut c, &r, &b).await;
    let ta = train(&mut c, &r, &a, &spec, 0).await;
    let tb = train(&mut c, &r, &b, &spec, 0).await;
    let round: CurrentRound = get(&d, "/api/round").await;
    assert_eq!(
        (round.phase, round.round, round.received),
        (Phase::Training, 1, 0)
    );
    assert_eq!(round.selected, vec![0, 1]);
    let mut forged = ta.header.clone();
    forged.signature[3] ^= 1;
    let refused = submit(&mut c, &r, &a, chunks(forged, &ta.bytes))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    submit(&mut c, &r, &a, chunks(ta.header.clone(), &ta.bytes))
        .await
        .unwrap();
    let members: Vec<Member> = get(&d, "/api/members").await;
    assert_eq!(members[0].state, MemberState::Uploaded);
    assert_eq!(members[1].state, MemberState::Training);
    let replay = submit(&mut c, &r, &a, chunks(ta.header.clone(), &ta.bytes))
        .await
        .unwrap_err();
    assert_eq!(replay.code(), Code::AlreadyExists);
    submit(&mut c, &r, &b, chunks(tb.header.clone(), &tb.bytes))
        .await
        .unwrap();

    // The API says what the state holds.
    let state = SqliteState::open(&folder.state_path()).unwrap();
    let closed = state.closed_rounds().unwrap();
    assert_eq!(closed.len(), 1);
    let page: RoundPage = get(&d, "/api/rounds").await;
    assert_eq!((page.total, page.rounds.len()), (1, 1));
    assert_eq!(
        page.rounds[0].global_digest,
        closed[0].global_digest.to_hex()
    );
    assert_eq!(page.rounds[0].contributors, 2);
    let detail: RoundDetail = get(&d, "/api/rounds/1").await;
    assert_eq!(detail.status, "closed");
    let stored = state.updates_of_round(1).unwrap();
    assert_eq!(
        detail
            .inputs
            .iter()
            .map(|i| (i.participant, i.update_digest.clone()))
            .collect::<Vec<_>>(),
        stored
            .iter()
            .map(|u| (u.participant, u.update_digest.to_hex()))
            .collect::<Vec<_>>()
    );
    let kinds: Vec<&str> = detail
        .ledger
        .iter()
        .map(|e| e.entry["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "round-open",
            "update-commitment",
            "update-commitment",
            "round-result"
        ]
    );
    let (entries, heads) = state.ledger().unwrap();
    let head: TreeHeadInfo = get(&d, "/api/ledger/head").await;
    assert_eq!(head.size, entries.len() as u64);
    assert_eq!(head.root, hex::encode(heads.last().unwrap().root));
    assert!(head.verify.contains("--coordinator-key"));

    // /metrics counts what happened, a refused update under its reason.
    let metrics = d.get("/metrics").await.unwrap();
    assert!(
        metrics
            .content_type
            .as_deref()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = metrics.text();
    let update_bytes = ta.bytes.len() as f64;
    for (name, value) in [
        ("harambee_rounds_completed_total", closed.len() as f64),
        ("harambee_updates_accepted_total", stored.len() as f64),
        ("harambee_updates_refused_total{reason=\"replay\"}", 1.0),
        (
            "harambee_updates_refused_total{reason=\"bad_signature\"}",
            1.0,
        ),
        ("harambee_updates_refused_total{reason=\"invalid\"}", 0.0),
        ("harambee_received_bytes_total", 4.0 * update_bytes),
        ("harambee_sent_bytes_total", 2.0 * update_bytes),
        ("harambee_round_duration_seconds_count", 1.0),
        ("harambee_aggregation_seconds_count", 1.0),
        ("harambee_participants_enrolled", 2.0),
        ("harambee_participants_connected", 2.0),
        ("harambee_ledger_entries", entries.len() as f64),
        ("harambee_round", 2.0),
        ("harambee_paused", 0.0),
    ] {
        assert_eq!(sample(&text, name), value, "{name}\n{text}");
    }

    hostile_requests_change_nothing(&d, &info, &steward, &outsider, &state).await;

    // Pause while round 2 is open: it runs to its end, and round 3 does not open.
    let reply = d
        .steward_post(
            &steward,
            "/api/admin/pause",
            br#"{"reason":"checking the data"}"#.to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.json::<AdminReply>().unwrap().paused);
    let pause_again = signed(&info.federation_id, &steward, "/api/admin/pause", b"", 0xaa);
    let ta = train(&mut c, &r, &a, &spec, 1).await;
    let tb = train(&mut c, &r, &b, &spec, 1).await;
    submit(&mut c, &r, &a, chunks(ta.header, &ta.bytes))
        .await
        .unwrap();
    submit(&mut c, &r, &b, chunks(tb.header, &tb.bytes))
        .await
        .unwrap();
    let round: CurrentRound = get(&d, "/api/round").await;
    assert_eq!(
        (round.phase, round.round, round.paused),
        (Phase::Paused, 3, true)
    );
    let waiting = c
        .get_task(call(
            &a,
            &r.invite.federation_id,
            method::GET_TASK,
            v1::TaskRequest {
                public_key: a.public().to_bytes().to_vec(),
                after_round: 2,
                after_attempt: 0,
                wait_ms: 300,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(waiting.kind, v1::task::Kind::Wait as i32, "paused: no task");
    assert_eq!(state.closed_rounds().unwrap().len(), 2);

    // A second pause, signed afresh, changes nothing and says why.
    let reply = d
        .send("POST", "/api/admin/pause", &pause_again, Vec::new())
        .await
        .unwrap();
    expect_error(&reply, 409, "already paused");

    // Resume: round 3 opens.
    let reply = d
        .steward_post(&steward, "/api/admin/resume", Vec::new())
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let round: CurrentRound = get(&d, "/api/round").await;
    assert_eq!(
        (round.phase, round.round, round.paused),
        (Phase::Training, 3, false)
    );
    // The earlier pause request, replayed now that it would apply: refused, nothing changes.
    let reply = d
        .send("POST", "/api/admin/pause", &pause_again, Vec::new())
        .await
        .unwrap();
    expect_error(&reply, 409, "replayed");
    let round: CurrentRound = get(&d, "/api/round").await;
    assert!(!round.paused);

    // Remove b mid-round: its update and its calls are refused, a alone closes the round.
    let tb = train(&mut c, &r, &b, &spec, 2).await;
    let ta = train(&mut c, &r, &a, &spec, 2).await;
    let reply = d
        .steward_post(
            &steward,
            "/api/admin/remove",
            br#"{"participant":1}"#.to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json::<AdminReply>().unwrap().removed, vec![1]);
    let members: Vec<Member> = get(&d, "/api/members").await;
    assert_eq!(members[1].state, MemberState::Removed);
    let refused = submit(&mut c, &r, &b, chunks(tb.header, &tb.bytes))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(refused.message().contains("removed"), "{refused:?}");
    let again = c
        .enrol(call(
            &b,
            &r.invite.federation_id,
            method::ENROL,
            v1::EnrolRequest {
                public_key: b.public().to_bytes().to_vec(),
                invite_token: r.invite.token.clone(),
                name: "b again".into(),
                signature: b.sign_enrolment(&r.invite.federation_id).to_vec(),
                data_root: Vec::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::PermissionDenied);
    submit(&mut c, &r, &a, chunks(ta.header, &ta.bytes))
        .await
        .unwrap();
    let closed = state.closed_rounds().unwrap();
    assert_eq!(closed.len(), 3);
    assert_eq!(closed[2].contributors, 1, "round 3 closed without b");
    let text = d.get("/metrics").await.unwrap().text();
    assert_eq!(
        sample(
            &text,
            "harambee_updates_refused_total{reason=\"not_permitted\"}"
        ),
        1.0
    );
    assert_eq!(sample(&text, "harambee_updates_accepted_total"), 5.0);

    // Every signed request is on record with its outcome; the replay left no trace.
    let actions = state.steward_actions().unwrap();
    let summary: Vec<(&str, bool)> = actions
        .iter()
        .map(|a| (a.action.as_str(), a.applied))
        .collect();
    assert_eq!(
        summary,
        [
            ("remove", false),
            ("pause", true),
            ("pause", false),
            ("resume", true),
            ("remove", true)
        ]
    );
}

/// Unknown routes, bad methods and parameters, oversized and malformed bodies, unsigned,
/// wrongly signed and foreign admin requests: each a clear JSON error, and nothing changes.
async fn hostile_requests_change_nothing(
    d: &DashboardClient,
    info: &FederationInfo,
    steward: &Identity,
    outsider: &Identity,
    state: &SqliteState,
) {
    let before: CurrentRound = get(d, "/api/round").await;
    expect_error(&d.get("/nope").await.unwrap(), 404, "no route /nope");
    expect_error(&d.get("/api/rounds/99").await.unwrap(), 404, "not opened");
    expect_error(
        &d.get("/api/rounds/abc").await.unwrap(),
        400,
        "whole number",
    );
    for query in ["limit=0", "limit=501", "limit=abc", "offset=-1", "page=2"] {
        let reply = d.get(&format!("/api/rounds?{query}")).await.unwrap();
        assert_eq!(reply.status, 400, "{query}: {}", reply.text());
    }
    let page: RoundPage = get(d, "/api/rounds?offset=1&limit=1").await;
    assert!(page.rounds.is_empty());
    let reply = d
        .send("DELETE", "/api/rounds", &[], Vec::new())
        .await
        .unwrap();
    expect_error(&reply, 405, "not allowed");
    let reply = d
        .send("GET", "/api/admin/pause", &[], Vec::new())
        .await
        .unwrap();
    expect_error(&reply, 405, "not allowed");

    let pause = "/api/admin/pause";
    let fed = info.federation_id.as_str();
    // Unsigned.
    let reply = d.send("POST", pause, &[], b"{}".to_vec()).await.unwrap();
    expect_error(&reply, 401, "unsigned");
    // Signed for another path, another federation, another body.
    let resume_headers = signed(fed, steward, "/api/admin/resume", b"{}", 1);
    let reply = d
        .send("POST", pause, &resume_headers, b"{}".to_vec())
        .await
        .unwrap();
    expect_error(&reply, 401, "bad signature");
    let foreign = signed("another-federation", steward, pause, b"{}", 2);
    let reply = d
        .send("POST", pause, &foreign, b"{}".to_vec())
        .await
        .unwrap();
    expect_error(&reply, 401, "bad signature");
    let headers = signed(fed, steward, pause, b"{}", 3);
    let reply = d
        .send("POST", pause, &headers, b"{ }".to_vec())
        .await
        .unwrap();
    expect_error(&reply, 401, "bad signature");
    // A garbled signature header.
    let mut garbled = signed(fed, steward, pause, b"{}", 4);
    garbled[3].1 = "zz".repeat(64);
    let reply = d
        .send("POST", pause, &garbled, b"{}".to_vec())
        .await
        .unwrap();
    expect_error(&reply, 400, "malformed");
    // A correct signature by a key the charter does not name as a steward.
    let reply = d
        .steward_post(outsider, pause, b"{}".to_vec())
        .await
        .unwrap();
    expect_error(&reply, 403, "not a steward");
    // Signed a long time ago.
    let stale = StewardRequest {
        federation: fed,
        method: "POST",
        path: pause,
        body: b"{}",
        timestamp_ms: unix_ms() - 3_600_000,
        nonce: [5; 16],
    }
    .sign(steward)
    .pairs()
    .to_vec();
    let reply = d.send("POST", pause, &stale, b"{}".to_vec()).await.unwrap();
    expect_error(&reply, 401, "stale");
    // Too big, before anything else is looked at.
    let huge = vec![b' '; harambee_dashboard::MAX_BODY_BYTES + 1];
    let headers = signed(fed, steward, pause, &huge, 6);
    let reply = d.send("POST", pause, &headers, huge).await.unwrap();
    assert_eq!(reply.status, 413, "{}", reply.text());
    // Correctly signed, but not JSON, or not the JSON asked for.
    for (k, body) in [&b"{not json"[..], br#"{"participant":"b"}"#, b"[]"]
        .into_iter()
        .enumerate()
    {
        let path = "/api/admin/remove";
        let headers = signed(fed, steward, path, body, 10 + k as u8);
        let reply = d.send("POST", path, &headers, body.to_vec()).await.unwrap();
        expect_error(&reply, 400, "malformed JSON");
    }
    let body = br#"{"participant":42}"#;
    let headers = signed(fed, steward, "/api/admin/remove", body, 20);
    let reply = d
        .send("POST", "/api/admin/remove", &headers, body.to_vec())
        .await
        .unwrap();
    expect_error(&reply, 404, "no participant 42");

    let after: CurrentRound = get(d, "/api/round").await;
    assert_eq!(after, before, "nothing changed");
    let actions = state.steward_actions().unwrap();
    assert_eq!(
        actions.len(),
        1,
        "only the signed request that parsed is on record"
    );
    assert!(!actions[0].applied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_live_events_are_served_from_the_binary() {
    let steward = Identity::generate().unwrap();
    let (_r, url, _folder) = start_with_dashboard(&steward).await;
    let d = DashboardClient::new(&url).unwrap();
    let page = d.get("/").await.unwrap();
    assert_eq!(page.status, 200);
    let html = page.text();
    for needle in [
        "aria-live=\"polite\"",
        "id=\"chart\"",
        "/assets/dashboard.js",
    ] {
        assert!(html.contains(needle), "{needle}");
    }
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no CDN"
    );
    for asset in ["/assets/dashboard.js", "/assets/dashboard.css"] {
        let reply = d.get(asset).await.unwrap();
        assert_eq!(reply.status, 200, "{asset}");
        assert!(
            !reply.text().contains("https://"),
            "{asset} loads nothing from elsewhere"
        );
    }

    // The live stream starts with the whole picture.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("GET /api/events HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while !(seen.contains("event: overview") && seen.contains("event: chart")) {
        let n = tokio::time::timeout_at(until, stream.read(&mut buf))
            .await
            .expect("the first events arrive")
            .unwrap();
        assert!(n > 0, "the stream ended: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    assert!(seen.contains("text/event-stream"), "{seen}");
    assert!(seen.contains("\"phase\":\"waiting\""), "{seen}");
}
