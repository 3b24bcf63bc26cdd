//! A federation of real processes on loopback: `harambee init`, `serve` and `join`, killed
//! with SIGKILL at chosen moments, restarted, and compared with an uninterrupted run.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use common::{
    COMMUNITIES, LANGUAGES, corpus, harambee, join_community, read, spawn, wait_exit, wait_for,
};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use harambee_store::{BlobStore, SqliteState, StateStore};

struct Federation {
    root: tempfile::TempDir,
}

impl Federation {
    fn new(rounds: u32, quorum: u32, deadline_s: f64) -> Self {
        Self::new_with(rounds, quorum, deadline_s, &[])
    }

    fn new_with(rounds: u32, quorum: u32, deadline_s: f64, extra: &[&str]) -> Self {
        Self::with_communities(rounds, quorum, deadline_s, extra, &COMMUNITIES)
    }

    fn with_communities(
        rounds: u32,
        quorum: u32,
        deadline_s: f64,
        extra: &[&str],
        communities: &[&[&str]; 3],
    ) -> Self {
        let root = tempfile::tempdir().unwrap();
        corpus(&root.path().join("classes"), &LANGUAGES);
        for (k, codes) in communities.iter().enumerate() {
            corpus(&root.path().join(format!("p{k}/data")), codes);
            let out = harambee(&[
                "keygen",
                "--out",
                root.path().join(format!("p{k}/key.pem")).to_str().unwrap(),
            ]);
            assert!(out.status.success());
        }
        let fed = root.path().join("fed");
        let out = harambee(
            &[
                "init",
                fed.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
                "--classes-from",
                root.path().join("classes").to_str().unwrap(),
                "--rounds",
                &rounds.to_string(),
                "--min-participants",
                "3",
                "--quorum",
                &quorum.to_string(),
                "--deadline-s",
                &deadline_s.to_string(),
                "--epochs",
                "1",
                "--seed",
                "11",
            ]
            .iter()
            .chain(extra)
            .copied()
            .collect::<Vec<_>>(),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { root }
    }

    fn fed(&self) -> PathBuf {
        self.root.path().join("fed")
    }

    fn log(&self, name: &str) -> PathBuf {
        self.root.path().join(format!("{name}.log"))
    }

    /// `harambee serve`, its output in `name.log`; returns once it listens.
    fn serve(&self, name: &str, pause_at: Option<&str>, extra: &[&str]) -> Child {
        let mut command = Command::new(env!("CARGO_BIN_EXE_harambee"));
        command
            .arg("serve")
            .arg(self.fed())
            .args(["--linger-s", "1"])
            .args(extra);
        if let Some(point) = pause_at {
            command.env("HARAMBEE_PAUSE_AT", point);
        }
        let child = spawn(&mut command, &self.log(name));
        wait_for(
            &self.log(name),
            "coordinator listening",
            Duration::from_secs(60),
        );
        child
    }

    /// `harambee join` for community `k`; returns once it has enrolled, so that enrolment
    /// order (and so participant ids) is the same in every run.
    fn join(&self, k: usize, extra: &[&str]) -> Child {
        let mut command = join_community(self.root.path(), k);
        command.args(extra);
        let log = self.log(&format!("p{k}"));
        let child = spawn(&mut command, &log);
        wait_for(&log, "enrolled", Duration::from_secs(60));
        child
    }

    fn model_digest(&self) -> String {
        let bytes = fs::read(self.fed().join("model.safetensors")).unwrap();
        harambee_params::ParamSet::from_safetensors(&bytes)
            .unwrap()
            .digest()
            .to_hex()
    }

    fn state(&self) -> SqliteState {
        SqliteState::open(&self.fed().join("state.db")).unwrap()
    }
}

/// Rounds whose update a participant's log says was acknowledged.
fn acknowledged(log: &Path) -> Vec<u64> {
    read(log)
        .lines()
        .filter(|l| l.contains("update acknowledged"))
        .filter_map(|l| {
            l.split("round=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// Runs a federation to the end, optionally stopping the coordinator with SIGKILL at
/// `pause_at` and restarting it. Returns the final model's digest.
fn run(pause_at: Option<&str>) -> (Federation, String) {
    let f = Federation::new(2, 3, 60.0);
    let mut coordinator = f.serve("serve", pause_at, &[]);
    let mut participants: Vec<Child> = (0..3).map(|k| f.join(k, &[])).collect();
    if let Some(point) = pause_at {
        wait_for(
            &f.log("serve"),
            &format!("paused at {point}"),
            Duration::from_secs(120),
        );
        // The coordinator pauses holding its driver, so no update is accepted from here on;
        // an acknowledgement already sent may still be on its way into a participant's log.
        let snapshot = || -> Vec<Vec<u64>> {
            (0..3)
                .map(|k| acknowledged(&f.log(&format!("p{k}"))))
                .collect()
        };
        let mut before = snapshot();
        if point != "before-update" {
            let until = std::time::Instant::now() + Duration::from_secs(30);
            while before.iter().all(|r| r.is_empty()) && std::time::Instant::now() < until {
                std::thread::sleep(Duration::from_millis(100));
                before = snapshot();
            }
            assert!(
                before.iter().any(|r| !r.is_empty()),
                "{point}: some update should have been acknowledged"
            );
        }
        coordinator.kill().unwrap(); // SIGKILL
        coordinator.wait().unwrap();
        coordinator = f.serve("restart", None, &[]);
        // Every update acknowledged before the kill is in the restarted coordinator's state.
        let state = f.state();
        for (k, rounds) in before.iter().enumerate() {
            for &round in rounds {
                let held = state.updates(round, 0).unwrap();
                let closed = state
                    .closed_rounds()
                    .unwrap()
                    .iter()
                    .any(|r| r.round == round);
                assert!(
                    closed || held.iter().any(|u| u.participant == k as u64),
                    "participant {k}'s acknowledged update for round {round} was lost"
                );
            }
        }
    }
    assert!(wait_exit(&mut coordinator, Duration::from_secs(180)).success());
    for p in &mut participants {
        assert!(wait_exit(p, Duration::from_secs(60)).success());
    }
    let digest = f.model_digest();
    (f, digest)
}

#[test]
fn a_coordinator_killed_at_any_point_resumes_to_the_same_model() {
    let (reference, expected) = run(None);
    let rounds = reference.state().closed_rounds().unwrap();
    assert_eq!(rounds.len(), 2);
    assert!(rounds.iter().all(|r| r.contributors == 3));
    for point in ["before-update", "mid-upload", "aggregation"] {
        let (f, digest) = run(Some(point));
        assert_eq!(
            digest,
            expected,
            "killed at {point}, the federation must end with the uninterrupted model\n{}",
            read(&f.log("restart"))
        );
        assert!(read(&f.log("restart")).contains("federation finished"));
    }
}

/// A buffered (FedBuff) coordinator killed after it took a version's results but before it
/// stored the version resumes from disk: the acknowledged results make that version again,
/// their senders' retries are answered "held", the run ends, and the ledger verifies against
/// every member's witness file, promises included.
#[test]
fn a_buffered_coordinator_killed_mid_version_loses_no_acknowledged_result() {
    let f = Federation::new_with(6, 1, 60.0, &["--fedbuff", "2:3:1.0:10"]);
    let mut coordinator = f.serve("serve", Some("aggregation"), &[]);
    let mut participants: Vec<Child> = (0..3).map(|k| f.join(k, &[])).collect();
    wait_for(
        &f.log("serve"),
        "paused at aggregation",
        Duration::from_secs(120),
    );
    coordinator.kill().unwrap(); // SIGKILL
    coordinator.wait().unwrap();
    let held = f.state().updates_of_round(1).unwrap();
    assert_eq!(held.len(), 2, "the version's two results were stored");
    let mut coordinator = f.serve("restart", None, &[]);
    assert!(wait_exit(&mut coordinator, Duration::from_secs(180)).success());
    for p in &mut participants {
        assert!(wait_exit(p, Duration::from_secs(60)).success());
    }
    assert!(read(&f.log("restart")).contains("buffered again the acknowledged updates"));
    let mut args = vec![
        "ledger".to_string(),
        "verify".into(),
        f.fed().to_str().unwrap().into(),
    ];
    for k in 0..3 {
        let file = f
            .root
            .path()
            .join(format!("p{k}/key.pem.state.witness.jsonl"));
        assert!(file.is_file(), "community {k} kept no witness file");
        args.extend(["--witness".into(), file.to_str().unwrap().into()]);
    }
    let out = harambee(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("matching: 6 of 6"), "{said}");
    // The first version applied exactly the two results stored before the kill.
    let out = harambee(&["ledger", "show", f.fed().to_str().unwrap()]);
    let shown = String::from_utf8_lossy(&out.stdout);
    let first = shown.lines().find(|l| l.contains("version 1:")).unwrap();
    for u in &held {
        assert!(first.contains(&format!("p{} ", u.participant)), "{first}");
    }
}

/// DP-FedBuff over the network: under a charter with a privacy budget, each version clips
/// every change, takes at most one result per member and adds noise; every version records
/// the ε spent, within the budget, and the auditor checks the inputs and says why the steps
/// cannot be recomputed.
#[test]
fn a_buffered_federation_under_a_privacy_budget_records_its_epsilon_each_version() {
    let f = Federation::new_with(
        4,
        1,
        60.0,
        &[
            "--fedbuff",
            "2:3:1.0:10",
            "--strategy",
            "dp-fedavg:1.0:1.0",
            "--privacy-epsilon",
            "60",
            "--privacy-delta",
            "1e-5",
        ],
    );
    let mut coordinator = f.serve("serve", None, &[]);
    let mut participants: Vec<Child> = (0..3).map(|k| f.join(k, &[])).collect();
    assert!(wait_exit(&mut coordinator, Duration::from_secs(180)).success());
    for p in &mut participants {
        assert!(wait_exit(p, Duration::from_secs(60)).success());
    }
    let (entries, _) = f.state().ledger().unwrap();
    let mut epsilons = Vec::new();
    for e in &entries {
        if let Ok(harambee_ledger::Entry::BufferedStep {
            epsilon, inputs, ..
        }) = harambee_ledger::Entry::parse(e)
        {
            epsilons.push(epsilon.expect("each version records its ε"));
            let members: std::collections::BTreeSet<u64> =
                inputs.iter().map(|i| i.participant).collect();
            assert_eq!(
                members.len(),
                inputs.len(),
                "one result per member a version"
            );
        }
    }
    let shown = harambee(&["ledger", "show", f.fed().to_str().unwrap()]);
    assert_eq!(
        epsilons.len(),
        4,
        "{}",
        String::from_utf8_lossy(&shown.stdout)
    );
    assert!(
        epsilons.windows(2).all(|w| w[0] < w[1]) && epsilons[3] <= 60.0,
        "{epsilons:?}"
    );
    let (ok, text) = verify(&f.fed());
    assert!(ok, "{text}");
    assert!(text.contains("dp-fedavg adds noise"), "{text}");
}

fn verify(dir: &Path) -> (bool, String) {
    let out = harambee(&["ledger", "verify", dir.to_str().unwrap()]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A copy of the federation folder to tamper with.
fn copy_of(f: &Federation, name: &str) -> PathBuf {
    let to = f.root.path().join(name);
    let ok = Command::new("cp")
        .arg("-r")
        .arg(f.fed())
        .arg(&to)
        .status()
        .unwrap();
    assert!(ok.success());
    to
}

fn sql(dir: &Path, statement: &str) {
    let db = rusqlite::Connection::open(dir.join("state.db")).unwrap();
    db.execute_batch(statement).unwrap();
}

#[test]
fn the_ledger_verifies_and_each_tampering_is_named() {
    let (f, _) = run(None);
    let (ok, text) = verify(&f.fed());
    assert!(ok, "{text}");
    assert!(text.contains("matching: 2 of 2"), "{text}");

    // Each member committed to its local data: an auditor handed a member's data recognises
    // it, and another member's data is not it.
    let fed = f.fed();
    let check = |participant: &str, k: usize| {
        let data = f.root.path().join(format!("p{k}/data"));
        harambee(&[
            "ledger",
            "check-data",
            fed.to_str().unwrap(),
            "--participant",
            participant,
            "--data",
            data.to_str().unwrap(),
        ])
    };
    let out = check("0", 0);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("is the data participant 0 committed to"),
        "{said}"
    );
    let out = check("1", 0);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("is not the data it committed to"), "{said}");

    // The release: weights that are the ledger's, and a model card that says how to check.
    let release = f.root.path().join("release");
    let out = harambee(&[
        "export",
        f.fed().to_str().unwrap(),
        "--out",
        release.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let card = fs::read_to_string(release.join("README.md")).unwrap();
    for needle in [
        "## Contributors",
        "p0",
        "harambee ledger verify",
        "tree head: size",
    ] {
        assert!(
            card.contains(needle),
            "{needle} missing from the model card:\n{card}"
        );
    }
    let exported = harambee_params::ParamSet::from_safetensors(
        &fs::read(release.join("model.safetensors")).unwrap(),
    )
    .unwrap();
    assert_eq!(exported.digest().to_hex(), f.model_digest());
    assert!(
        fs::read_to_string(release.join("ledger.jsonl"))
            .unwrap()
            .contains("\"type\":\"release\"")
    );

    // An update swapped: one kept update blob replaced by another's bytes.
    let swapped = copy_of(&f, "swapped");
    let state = SqliteState::open(&swapped.join("state.db")).unwrap();
    let updates = state.updates(2, 0).unwrap();
    let blobs = harambee_store::FsBlobStore::open(&swapped.join("blobs")).unwrap();
    let other = fs::read(blobs.path_of(&updates[1].blob)).unwrap();
    fs::write(blobs.path_of(&updates[0].blob), other).unwrap();
    let (ok, text) = verify(&swapped);
    assert!(
        !ok && text.contains("round 2:") && text.contains("corrupt"),
        "{text}"
    );

    // A round's result altered in the ledger.
    let altered = copy_of(&f, "altered");
    sql(
        &altered,
        "UPDATE ledger SET entry = CAST(replace(CAST(entry AS TEXT), '\"output\":\"', '\"output\":\"00') AS BLOB)
         WHERE CAST(entry AS TEXT) LIKE '{\"type\":\"round-result\",\"round\":1,%'",
    );
    let (ok, text) = verify(&altered);
    assert!(
        !ok && text.contains("does not match the stored entries"),
        "{text}"
    );
    assert!(
        text.contains("round 1: recomputing the aggregate"),
        "{text}"
    );

    // A single byte of a kept update, of a kept model, of the released model.
    let flip = |path: &Path| {
        let mut bytes = fs::read(path).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x10;
        fs::write(path, bytes).unwrap();
    };
    let flipped = copy_of(&f, "flipped-update");
    let state = SqliteState::open(&flipped.join("state.db")).unwrap();
    let blobs = harambee_store::FsBlobStore::open(&flipped.join("blobs")).unwrap();
    flip(&blobs.path_of(&state.updates(1, 0).unwrap()[2].blob));
    let (ok, text) = verify(&flipped);
    assert!(
        !ok && text.contains("round 1:") && text.contains("corrupt"),
        "{text}"
    );
    let flipped = copy_of(&f, "flipped-global");
    let state = SqliteState::open(&flipped.join("state.db")).unwrap();
    let blobs = harambee_store::FsBlobStore::open(&flipped.join("blobs")).unwrap();
    flip(&blobs.path_of(&state.closed_rounds().unwrap()[0].global_blob));
    let (ok, text) = verify(&flipped);
    assert!(
        !ok && text.contains("round 2: the kept starting model"),
        "{text}"
    );
    let flipped = copy_of(&f, "flipped-model");
    flip(&flipped.join("model.safetensors"));
    let (ok, text) = verify(&flipped);
    assert!(!ok && text.contains("model.safetensors"), "{text}");

    // An update commitment dropped.
    let dropped = copy_of(&f, "dropped");
    sql(
        &dropped,
        "DELETE FROM ledger WHERE idx = (SELECT MIN(idx) FROM ledger WHERE CAST(entry AS TEXT) LIKE '%update-commitment%')",
    );
    let (ok, text) = verify(&dropped);
    assert!(
        !ok && text.contains("round 1: the result's inputs are not the committed updates"),
        "{text}"
    );

    // A participant's signature forged (a byte of it changed).
    let forged = copy_of(&f, "forged");
    sql(
        &forged,
        "UPDATE ledger SET entry = CAST(replace(CAST(entry AS TEXT), '\"signature\":\"', '\"signature\":\"ff') AS BLOB)
         WHERE idx = (SELECT MAX(idx) FROM ledger WHERE CAST(entry AS TEXT) LIKE '%update-commitment%')",
    );
    let (ok, text) = verify(&forged);
    assert!(
        !ok && text.contains("round 2: participant") && text.contains("signature"),
        "{text}"
    );
}

#[test]
fn a_participant_killed_mid_round_leaves_the_round_to_the_quorum() {
    // Quorum 2 of 3, a short deadline: the round closes without the dead participant.
    let f = Federation::new(2, 2, 3.0);
    let mut coordinator = f.serve("serve", None, &[]);
    let mut alive: Vec<Child> = (0..2).map(|k| f.join(k, &[])).collect();
    let mut doomed = f.join(2, &[]);
    // Round 1 completes with everyone; the third participant dies as round 2 opens.
    wait_for(&f.log("serve"), "round=2", Duration::from_secs(60));
    doomed.kill().unwrap();
    doomed.wait().unwrap();
    assert!(
        wait_exit(&mut coordinator, Duration::from_secs(120)).success(),
        "{}",
        read(&f.log("serve"))
    );
    for p in &mut alive {
        assert!(wait_exit(p, Duration::from_secs(60)).success());
    }
    let rounds = f.state().closed_rounds().unwrap();
    assert_eq!(rounds.len(), 2);
    assert_eq!(
        rounds[1].contributors, 2,
        "round 2 closed at quorum without the killed participant"
    );
    assert!(f.fed().join("model.safetensors").is_file());
}

#[test]
fn plaintext_needs_insecure_on_both_sides_and_is_warned_about() {
    let f = Federation::new(1, 3, 60.0);
    let mut coordinator = f.serve("serve", None, &["--insecure"]);
    assert!(
        read(&f.log("serve")).contains("--insecure"),
        "{}",
        read(&f.log("serve"))
    );
    let mut participants: Vec<Child> = (0..3).map(|k| f.join(k, &["--insecure"])).collect();
    assert!(wait_exit(&mut coordinator, Duration::from_secs(120)).success());
    for p in &mut participants {
        assert!(wait_exit(p, Duration::from_secs(60)).success());
    }
    assert!(read(&f.log("p0")).contains("--insecure"));
}

#[test]
fn a_silent_participant_stops_holding_rounds_up_and_rejoins_after_restarting() {
    // A long deadline, a short liveness timeout: only the latter can close round 2.
    let f = Federation::new(4, 2, 600.0);
    let config = f.fed().join("federation.toml");
    let text = fs::read_to_string(&config).unwrap();
    fs::write(
        &config,
        text.replace("liveness_timeout_s = 90.0", "liveness_timeout_s = 2.0"),
    )
    .unwrap();
    let mut coordinator = f.serve("serve", None, &[]);
    let mut alive: Vec<Child> = (0..2).map(|k| f.join(k, &[])).collect();
    let mut doomed = f.join(2, &[]);
    wait_for(
        &f.log("serve"),
        "round opened round=2",
        Duration::from_secs(60),
    );
    doomed.kill().unwrap();
    doomed.wait().unwrap();
    wait_for(
        &f.log("serve"),
        "round closed round=2",
        Duration::from_secs(60),
    );
    assert!(read(&f.log("serve")).contains("counted as gone"));

    // Restarted with the same key and state file, it picks up where the federation is.
    fs::rename(f.log("p2"), f.log("p2-before")).unwrap();
    let mut back = f.join(2, &[]);
    assert!(
        wait_exit(&mut coordinator, Duration::from_secs(120)).success(),
        "{}",
        read(&f.log("serve"))
    );
    for p in alive.iter_mut().chain([&mut back]) {
        assert!(wait_exit(p, Duration::from_secs(60)).success());
    }
    let rounds = f.state().closed_rounds().unwrap();
    assert_eq!(rounds.len(), 4);
    assert_eq!(rounds[1].contributors, 2);
    assert_eq!(
        rounds[3].contributors, 3,
        "the restarted participant trains again"
    );
    let after = acknowledged(&f.log("p2"));
    assert!(after.contains(&4), "{after:?}");
    assert!(!after.contains(&1), "it does not redo a round it finished");
}

#[test]
fn the_charter_changes_only_with_k_of_n_stewards_and_participants_hold_to_theirs() {
    let keys = tempfile::tempdir().unwrap();
    let stewards: Vec<(PathBuf, String)> = (0..3)
        .map(|i| {
            let path = keys.path().join(format!("steward{i}.key"));
            let out = harambee(&["keygen", "--out", path.to_str().unwrap()]);
            (
                path,
                String::from_utf8(out.stdout).unwrap().trim().to_string(),
            )
        })
        .collect();
    let mut extra = vec!["--amendment-threshold", "2"];
    for (_, public) in &stewards {
        extra.extend(["--steward", public.as_str()]);
    }
    let f = Federation::new_with(2, 3, 60.0, &extra);
    let fed = f.fed();
    // The first start writes the genesis, with the charter, into the ledger.
    let mut coordinator = f.serve("serve", None, &[]);
    coordinator.kill().unwrap();
    coordinator.wait().unwrap();
    let old_invite = f.root.path().join("old-invite.toml");
    fs::copy(fed.join("invite.toml"), &old_invite).unwrap();

    let proposed = f.root.path().join("proposed.toml");
    let current = fs::read_to_string(fed.join("charter.toml")).unwrap();
    fs::write(
        &proposed,
        current.replace("max_rounds = 2", "max_rounds = 4"),
    )
    .unwrap();
    let sign = |i: usize| {
        let out = harambee(&[
            "charter",
            "sign",
            fed.to_str().unwrap(),
            "--proposed",
            proposed.to_str().unwrap(),
            "--key",
            stewards[i].0.to_str().unwrap(),
        ]);
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let amend = |signatures: &[String]| {
        let mut args = vec![
            "charter".to_string(),
            "amend".into(),
            fed.to_str().unwrap().into(),
            "--proposed".into(),
            proposed.to_str().unwrap().into(),
        ];
        for s in signatures {
            args.extend(["--signature".into(), s.clone()]);
        }
        harambee(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    // Refused, saying `why`, and nothing changes.
    let refused = |signatures: &[String], why: &str| {
        let out = amend(signatures);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(why), "{stderr}");
        assert_eq!(
            fs::read_to_string(fed.join("charter.toml")).unwrap(),
            current
        );
    };
    // One signature short.
    refused(&[sign(0)], "requires 2");
    // One steward's line again with its key in upper case is still one steward.
    refused(&[sign(0), sign(0).to_ascii_uppercase()], "requires 2");
    // Two of three while the folder is held, as a live coordinator holds it.
    let held = harambee_charter::FolderLock::acquire(&fed, "the coordinator").unwrap();
    refused(&[sign(0), sign(2)], "stop it");
    drop(held);
    // Two of three: in force, and recorded in the ledger.
    let out = amend(&[sign(0), sign(2)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        fs::read_to_string(fed.join("charter.toml"))
            .unwrap()
            .contains("max_rounds = 4")
    );
    let (ok, text) = verify(&fed);
    assert!(ok, "{text}");
    // Editing charter.toml by hand is refused at the next start.
    let amended = fs::read_to_string(fed.join("charter.toml")).unwrap();
    fs::write(
        fed.join("charter.toml"),
        amended.replace("max_rounds = 4", "max_rounds = 9"),
    )
    .unwrap();
    let out = harambee(&["serve", fed.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("charter amend"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs::write(fed.join("charter.toml"), amended).unwrap();

    // A participant that accepted the old charter refuses to train under the new one.
    let mut coordinator = f.serve("serve-again", None, &[]);
    let home = f.root.path().join("p0");
    let out = harambee(&[
        "join",
        "--invite",
        old_invite.to_str().unwrap(),
        "--key",
        home.join("key.pem").to_str().unwrap(),
        "--data",
        home.join("data").to_str().unwrap(),
        "--give-up-after-s",
        "10",
    ]);
    let _ = coordinator.kill();
    let _ = coordinator.wait();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refusing to train"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_privacy_budget_in_the_charter_bounds_the_rounds_and_each_round_records_its_epsilon() {
    let dp = ["--strategy", "dp-fedavg:1.0:1.0", "--privacy-delta", "1e-5"];
    // Too small a budget for the planned rounds: refused, saying how many would fit.
    let root = tempfile::tempdir().unwrap();
    let classes = root.path().join("classes");
    corpus(&classes, &LANGUAGES);
    let mut args = vec![
        "init",
        "x",
        "--listen",
        "127.0.0.1:0",
        "--rounds",
        "2",
        "--min-participants",
        "3",
        "--quorum",
        "3",
    ];
    args.extend([
        "--classes-from",
        classes.to_str().unwrap(),
        "--privacy-epsilon",
        "5",
    ]);
    args.extend(dp);
    let out = Command::new(env!("CARGO_BIN_EXE_harambee"))
        .args(&args)
        .current_dir(root.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("at most 1 rounds fit"), "{stderr}");

    // Within the budget: the federation runs and every round's result records its ε.
    let mut extra = vec!["--privacy-epsilon", "30"];
    extra.extend(dp);
    let f = Federation::new_with(2, 3, 60.0, &extra);
    let mut coordinator = f.serve("serve", None, &[]);
    let mut participants: Vec<Child> = (0..3).map(|k| f.join(k, &[])).collect();
    assert!(
        wait_exit(&mut coordinator, Duration::from_secs(120)).success(),
        "{}",
        read(&f.log("serve"))
    );
    for p in &mut participants {
        assert!(wait_exit(p, Duration::from_secs(60)).success());
    }
    let (entries, _) = f.state().ledger().unwrap();
    let epsilons: Vec<f64> = entries
        .iter()
        .filter_map(|e| match harambee_ledger::Entry::parse(e).unwrap() {
            harambee_ledger::Entry::RoundResult { epsilon, .. } => epsilon,
            _ => None,
        })
        .collect();
    assert_eq!(epsilons.len(), 2);
    assert!(
        epsilons[0] < epsilons[1] && epsilons[1] <= 30.0,
        "{epsilons:?}"
    );
    let (ok, text) = verify(&f.fed());
    assert!(ok, "{text}");
}

/// Runs a two-round federation of three communities holding the same languages (so the same
/// number of examples: FedAvg's weights are equal) with `extra` init flags.
fn run_with(extra: &[&str]) -> Federation {
    const SAME: [&[&str]; 3] = [&["swh", "hin", "eng"]; 3];
    let f = Federation::with_communities(2, 3, 60.0, extra, &SAME);
    let mut coordinator = f.serve("serve", None, &[]);
    let mut participants: Vec<Child> = (0..3).map(|k| f.join(k, &[])).collect();
    assert!(
        wait_exit(&mut coordinator, Duration::from_secs(180)).success(),
        "{}",
        read(&f.log("serve"))
    );
    for (k, p) in participants.iter_mut().enumerate() {
        assert!(
            wait_exit(p, Duration::from_secs(60)).success(),
            "{}",
            read(&f.log(&format!("p{k}")))
        );
    }
    f
}

fn model(f: &Federation) -> harambee_params::ParamSet {
    harambee_params::ParamSet::from_safetensors(
        &fs::read(f.fed().join("model.safetensors")).unwrap(),
    )
    .unwrap()
}

#[test]
fn secure_aggregation_over_the_network_gives_the_plain_model_and_hides_each_update() {
    let plain = run_with(&[]);
    let secure = run_with(&["--privacy", "secagg", "--secagg-range", "4"]);
    assert!(read(&secure.log("serve")).contains("secure aggregation complete"));
    // Every participant hears that its masked update was summed, even when its last poll
    // comes after the round closed; none reports its rounds as refused.
    for k in 0..3 {
        let log = read(&secure.log(&format!("p{k}")));
        assert!(log.contains("secure aggregation complete"), "{log}");
        assert!(!log.contains("ended without this participant"), "{log}");
    }

    // The same model up to the fixed-point rounding (the communities hold equally many
    // examples, so FedAvg's weights are equal and its blind unweighted mean is the same rule).
    let (a, b) = (model(&plain), model(&secure));
    let worst = a
        .values()
        .iter()
        .zip(b.values())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-4, "largest difference {worst}");
    assert_ne!(
        plain.model_digest(),
        secure.model_digest(),
        "fixed point rounds a little"
    );

    // What the coordinator recorded for participant 0 in round 1 is its masked update, which
    // is not its update: the plain federation kept that update (same seed, same base, same
    // training), and its fixed-point encoding shares almost no word with the masked one.
    let blob = |f: &Federation| {
        let u = f
            .state()
            .updates(1, 0)
            .unwrap()
            .into_iter()
            .find(|u| u.participant == 0)
            .unwrap();
        harambee_store::FsBlobStore::open(&f.fed().join("blobs"))
            .unwrap()
            .get(&u.blob)
            .unwrap()
    };
    let folder = harambee_server::FederationFolder::new(&plain.fed());
    let config = folder.config().unwrap();
    let trainer = config.model.trainer().unwrap();
    let init = trainer.init(config.rounds.seed);
    let update = harambee_params::Encoding::F32
        .decode(trainer.layout(), &blob(&plain))
        .unwrap();
    let delta = update.sub(&init).unwrap();
    let fixed = harambee_secagg::FixedPoint {
        range: 1.0,
        max_summands: 3,
    };
    let (plain_words, _) = fixed.encode(delta.values());
    let masked = blob(&secure);
    let masked_words: Vec<u32> = masked
        .chunks_exact(4)
        .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
        .collect();
    assert_eq!(masked_words.len(), plain_words.len());
    let same = masked_words
        .iter()
        .zip(&plain_words)
        .filter(|(m, p)| m == p)
        .count();
    assert!(
        same * 1000 < plain_words.len(),
        "{same} of {} words unmasked",
        plain_words.len()
    );

    // The rounds' training loss is the contributors' own (no samples are reported blind).
    for r in secure.state().closed_rounds().unwrap() {
        assert!(r.train_loss > 0.0, "round {} has no training loss", r.round);
    }

    // The ledger verifies, with each commitment signed by its participant, and says why no
    // round can be recomputed.
    let (ok, text) = verify(&secure.fed());
    assert!(ok, "{text}");
    assert!(text.contains("secure aggregation"), "{text}");
}

#[test]
fn a_charter_that_requires_secure_aggregation_is_enforced() {
    let f = Federation::new_with(1, 3, 60.0, &["--privacy", "secagg"]);
    // Turning it off in the settings behind the charter's back is refused at start.
    let path = f.fed().join("federation.toml");
    let text = read(&path).replace("secure_aggregation = true", "secure_aggregation = false");
    fs::write(&path, text).unwrap();
    let out = harambee(&["serve", f.fed().to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("requires secure aggregation"), "{stderr}");
    // And a rule that needs every update cannot run blind.
    let root = tempfile::tempdir().unwrap();
    corpus(&root.path().join("classes"), &LANGUAGES);
    let out = harambee(&[
        "init",
        root.path().join("fed").to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--classes-from",
        root.path().join("classes").to_str().unwrap(),
        "--strategy",
        "median",
        "--privacy",
        "secagg",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("combines individual updates"), "{stderr}");
}
