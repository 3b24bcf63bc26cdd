//! A federation across real network hosts on one machine: the coordinator in one network
//! namespace, each participant in its own, joined through a bridge by veth pairs. One
//! participant's link is slowed so its upload takes seconds, then taken down in the middle
//! of that upload and brought back: the participant resumes and the round completes.
//!
//! Needs root and iproute2 (`ip`, `tc`). Without them the test says so and passes, unless
//! `HARAMBEE_NETNS_TESTS=1` (as `.ci/run` sets) makes their absence a failure.
#![allow(clippy::unwrap_used)]

mod common;

use common::{corpus, read, wait_exit, wait_for_count};
use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Runs `ip`/`tc` arguments, panicking with their output on failure.
fn sh(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The namespaces, removed (with their links) when dropped.
struct Hosts {
    names: Vec<String>,
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "delete", n]).output();
        }
    }
}

/// Whether this machine lets us make network namespaces.
fn can_make_namespaces() -> Result<(), String> {
    let probe = format!("hbprobe{}", std::process::id() % 100_000);
    let out = Command::new("ip")
        .args(["netns", "add", &probe])
        .output()
        .map_err(|e| format!("no `ip` command: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let _ = Command::new("ip")
        .args(["netns", "delete", &probe])
        .output();
    Ok(())
}

/// Coordinator namespace with a bridge at 10.77.0.1; participant k at 10.77.0.(10+k).
fn build_hosts(participants: usize) -> Hosts {
    let tag = std::process::id() % 10_000;
    let coordinator = format!("hb{tag}c");
    let mut hosts = Hosts {
        names: vec![coordinator.clone()],
    };
    sh("ip", &["netns", "add", &coordinator]);
    let c = coordinator.as_str();
    sh("ip", &["-n", c, "link", "set", "lo", "up"]);
    sh("ip", &["-n", c, "link", "add", "br0", "type", "bridge"]);
    sh(
        "ip",
        &["-n", c, "addr", "add", "10.77.0.1/24", "dev", "br0"],
    );
    sh("ip", &["-n", c, "link", "set", "br0", "up"]);
    for k in 0..participants {
        let ns = format!("hb{tag}p{k}");
        sh("ip", &["netns", "add", &ns]);
        hosts.names.push(ns.clone());
        let (near, far) = (format!("hb{tag}v{k}c"), format!("hb{tag}v{k}p"));
        sh(
            "ip",
            &["link", "add", &near, "type", "veth", "peer", "name", &far],
        );
        sh("ip", &["link", "set", &near, "netns", c]);
        sh("ip", &["link", "set", &far, "netns", &ns]);
        sh(
            "ip",
            &["-n", c, "link", "set", &near, "master", "br0", "up"],
        );
        sh("ip", &["-n", &ns, "link", "set", "lo", "up"]);
        sh(
            "ip",
            &[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("10.77.0.{}/24", 10 + k),
                "dev",
                &far,
            ],
        );
        sh("ip", &["-n", &ns, "link", "set", &far, "up"]);
    }
    hosts
}

fn spawn_in(ns: &str, args: &[&str], log: &Path) -> Child {
    let file = fs::File::create(log).unwrap();
    Command::new("ip")
        .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_harambee")])
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap()
}

#[test]
fn a_link_cut_mid_upload_is_survived_across_network_namespaces() {
    if let Err(why) = can_make_namespaces() {
        assert!(
            std::env::var_os("HARAMBEE_NETNS_TESTS").is_none(),
            "HARAMBEE_NETNS_TESTS is set, but network namespaces are unavailable: {why}"
        );
        eprintln!("skipped: network namespaces need root and iproute2 ({why})");
        return;
    }
    let hosts = build_hosts(3);
    let tag = std::process::id() % 10_000;
    let root = tempfile::tempdir().unwrap();
    let classes = ["swh", "yor", "hau_NG", "hin", "tam", "eng"];
    corpus(&root.path().join("classes"), &classes);
    let fed = root.path().join("fed");
    let out = Command::new(env!("CARGO_BIN_EXE_harambee"))
        .args(["init", fed.to_str().unwrap(), "--listen", "10.77.0.1:7443"])
        .args([
            "--classes-from",
            root.path().join("classes").to_str().unwrap(),
        ])
        .args([
            "--rounds",
            "2",
            "--min-participants",
            "3",
            "--quorum",
            "3",
            "--deadline-s",
            "120",
            "--epochs",
            "1",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let serve_log = root.path().join("serve.log");
    let mut coordinator = spawn_in(
        &hosts.names[0],
        &["serve", fed.to_str().unwrap(), "--linger-s", "1"],
        &serve_log,
    );
    wait_for_count(
        &serve_log,
        "coordinator listening",
        1,
        Duration::from_secs(60),
    );

    // Participant 0's uplink carries its 4 MB update at 4 Mbit/s: about 8 s of upload.
    let slow = format!("hb{tag}v0p");
    sh(
        "ip",
        &[
            "netns",
            "exec",
            &hosts.names[1],
            "tc",
            "qdisc",
            "add",
            "dev",
            &slow,
            "root",
            "tbf",
            "rate",
            "4mbit",
            "burst",
            "32kbit",
            "latency",
            "400ms",
        ],
    );
    let communities: [&[&str]; 3] = [
        &["swh", "yor", "hin"],
        &["hau_NG", "tam", "eng"],
        &["swh", "tam", "eng"],
    ];
    let mut participants = Vec::new();
    for (k, codes) in communities.iter().enumerate() {
        let home = root.path().join(format!("p{k}"));
        corpus(&home.join("data"), codes);
        let key = home.join("key.pem");
        harambee_identity::Identity::generate()
            .unwrap()
            .save(&key)
            .unwrap();
        let log = root.path().join(format!("p{k}.log"));
        participants.push(spawn_in(
            &hosts.names[k + 1],
            &[
                "join",
                "--invite",
                fed.join("invite.toml").to_str().unwrap(),
                "--key",
                key.to_str().unwrap(),
                "--data",
                home.join("data").to_str().unwrap(),
                "--give-up-after-s",
                "120",
            ],
            &log,
        ));
    }
    // The fast participants' updates arrive; participant 0 is still uploading: cut its link.
    wait_for_count(&serve_log, "update accepted", 2, Duration::from_secs(120));
    assert!(
        !read(&root.path().join("p0.log")).contains("update acknowledged"),
        "the slow upload should still be in flight"
    );
    sh("ip", &["-n", &hosts.names[1], "link", "set", &slow, "down"]);
    // Longer than the participant's keep-alive timeout: its connection is declared dead.
    std::thread::sleep(Duration::from_secs(15));
    sh("ip", &["-n", &hosts.names[1], "link", "set", &slow, "up"]);

    assert!(
        wait_exit(&mut coordinator, Duration::from_secs(180)).success(),
        "{}",
        read(&serve_log)
    );
    for (k, p) in participants.iter_mut().enumerate() {
        assert!(
            wait_exit(p, Duration::from_secs(60)).success(),
            "{}",
            read(&root.path().join(format!("p{k}.log")))
        );
    }
    let p0 = read(&root.path().join("p0.log"));
    assert!(p0.contains("update acknowledged round=1"), "{p0}");
    assert!(
        p0.contains("retrying"),
        "the cut should have broken the upload: {p0}"
    );
    eprintln!("participant 0 across the cut link:\n{p0}");
    let state = harambee_store::SqliteState::open(&fed.join("state.db")).unwrap();
    let rounds = harambee_store::StateStore::closed_rounds(&state).unwrap();
    assert_eq!(rounds.len(), 2);
    assert!(
        rounds.iter().all(|r| r.contributors == 3),
        "every round completes with all three"
    );
    drop(hosts);
}
