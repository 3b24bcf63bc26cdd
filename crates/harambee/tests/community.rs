//! Community compute over the network: `harambee serve` under a community charter hands
//! shards and DiLoCo rounds to `harambee join` workers, which come and go while it trains.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use common::{harambee, join_command, read, repo, spawn, wait_exit, wait_for};
use harambee_ledger::Entry;
use harambee_store::{SqliteState, StateStore};

/// Inner steps per round (DiLoCo's H).
const H: u32 = 20;
const ROUNDS: u32 = 36;

struct Community {
    root: tempfile::TempDir,
}

impl Community {
    fn new() -> Self {
        Self::with("char-transformer:1:32:4:32", &format!("diloco:{H}")).unwrap()
    }

    /// `harambee init --mode community` with `model` and `strategy`; its error text if refused.
    fn with(model: &str, strategy: &str) -> Result<Self, String> {
        let root = tempfile::tempdir().unwrap();
        let fed = root.path().join("fed");
        let mut args = vec![
            "init",
            fed.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--no-dashboard",
            "--mode",
            "community",
            "--model",
            model,
            "--strategy",
            strategy,
            "--min-participants",
            "2",
            "--quorum",
            "2",
            "--deadline-s",
            "60",
            "--batch",
            "16",
            "--seed",
            "5",
        ];
        let rounds = ROUNDS.to_string();
        args.extend(["--rounds", &rounds]);
        // Read only by the language identifier, which a community charter refuses.
        let languages = repo().join("data/udhr");
        args.extend(["--classes-from", languages.to_str().unwrap()]);
        let out = harambee(&args);
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        // A killed worker is counted gone after 3 s without a call, not the default 90 s.
        let config = fed.join("federation.toml");
        let text = fs::read_to_string(&config).unwrap();
        fs::write(
            &config,
            text.replace("liveness_timeout_s = 90.0", "liveness_timeout_s = 3.0"),
        )
        .unwrap();
        Ok(Self { root })
    }

    fn fed(&self) -> PathBuf {
        self.root.path().join("fed")
    }

    fn log(&self, name: &str) -> PathBuf {
        self.root.path().join(format!("{name}.log"))
    }

    fn serve(&self) -> Child {
        let mut command = Command::new(env!("CARGO_BIN_EXE_harambee"));
        command
            .arg("serve")
            .arg(self.fed())
            .args(["--linger-s", "1"]);
        let child = spawn(&mut command, &self.log("serve"));
        wait_for(
            &self.log("serve"),
            "coordinator listening",
            Duration::from_secs(60),
        );
        child
    }

    /// A worker holding the bundled plays; returns once it has enrolled.
    fn join(&self, k: usize) -> Child {
        let key = self.root.path().join(format!("w{k}.pem"));
        assert!(
            harambee(&["keygen", "--out", key.to_str().unwrap()])
                .status
                .success()
        );
        let mut command = join_command(
            &self.fed(),
            &key,
            &repo().join("data/shakespeare"),
            &format!("w{k}"),
        );
        command
            .arg("--state")
            .arg(self.root.path().join(format!("w{k}.state")));
        let child = spawn(&mut command, &self.log(&format!("w{k}")));
        wait_for(
            &self.log(&format!("w{k}")),
            "enrolled",
            Duration::from_secs(60),
        );
        child
    }

    fn entries(&self) -> Vec<Entry> {
        let (entries, _) = SqliteState::open(&self.fed().join("state.db"))
            .unwrap()
            .ledger()
            .unwrap();
        entries.iter().map(|e| Entry::parse(e).unwrap()).collect()
    }
}

/// The round the coordinator's log says opened last.
fn last_opened(log: &Path) -> u64 {
    read(log)
        .lines()
        .rev()
        .filter_map(|l| l.split("round opened round=").nth(1))
        .find_map(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn workers_come_and_go_and_the_loss_keeps_falling() {
    let c = Community::new();
    let charter = fs::read_to_string(c.fed().join("charter.toml")).unwrap();
    assert!(charter.contains("mode = \"community\""), "{charter}");
    let mut coordinator = c.serve();
    let mut workers: Vec<Child> = (0..3).map(|k| c.join(k)).collect();

    // All three train; then worker 2 is killed in the middle of training.
    wait_for(&c.log("serve"), "selected=3", Duration::from_secs(60));
    let serve = c.log("serve");
    let until = std::time::Instant::now() + Duration::from_secs(60);
    while last_opened(&serve) < 6 {
        assert!(std::time::Instant::now() < until, "{}", read(&serve));
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut killed = workers.pop().unwrap();
    killed.kill().unwrap();
    killed.wait().unwrap();
    let killed_at = last_opened(&serve);
    wait_for(&serve, "counted as gone", Duration::from_secs(60));

    // Two go on; then a new worker joins mid-training.
    let gone_at = last_opened(&serve);
    while last_opened(&serve) < gone_at + 3 {
        assert!(std::time::Instant::now() < until + Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(20));
    }
    let joined_at = last_opened(&serve);
    assert!(
        joined_at + 5 < u64::from(ROUNDS),
        "training ended too soon for the test to mean anything:\n{}",
        read(&serve)
    );
    workers.push(c.join(3));

    assert!(
        wait_exit(&mut coordinator, Duration::from_secs(300)).success(),
        "{}",
        read(&serve)
    );
    for w in &mut workers {
        assert!(wait_exit(w, Duration::from_secs(60)).success());
    }

    // The ledger shows the membership change round by round, with H recorded.
    let entries = c.entries();
    let opened: Vec<(u64, Vec<u64>, u32)> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::RoundOpen {
                round,
                selected,
                local_steps,
                ..
            } => Some((*round, selected.clone(), *local_steps)),
            _ => None,
        })
        .collect();
    assert!(opened.iter().all(|(_, _, steps)| *steps == H));
    let selected_in = |round: u64| {
        opened
            .iter()
            .rev()
            .find(|(r, _, _)| *r == round)
            .map(|(_, s, _)| s.clone())
            .unwrap()
    };
    assert!(opened.iter().any(|(_, s, _)| s == &vec![0, 1, 2]));
    assert!(
        (killed_at + 1..=joined_at).any(|r| selected_in(r) == vec![0, 1]),
        "some round after the kill trains on the two survivors: {opened:?}"
    );
    assert_eq!(
        selected_in(u64::from(ROUNDS)),
        vec![0, 1, 3],
        "the newcomer trains in the last round"
    );
    let results = entries
        .iter()
        .filter(|e| matches!(e, Entry::RoundResult { .. }))
        .count();
    assert_eq!(results, ROUNDS as usize, "every round closed");

    // Shards were reassigned as the workers changed.
    let w0 = read(&c.log("w0"));
    for shards in ["shard=0 of=3", "shard=0 of=2"] {
        assert!(
            w0.contains(shards),
            "worker 0 never trained on {shards}:\n{w0}"
        );
    }
    assert!(read(&c.log("w3")).contains("update acknowledged"));

    // The validation loss (each worker evaluating its shard of the held-out chunks) falls
    // across both changes of membership.
    let state = SqliteState::open(&c.fed().join("state.db")).unwrap();
    let loss: std::collections::BTreeMap<u64, f64> = state
        .round_evaluations()
        .unwrap()
        .into_iter()
        .map(|e| (e.round, e.loss.unwrap()))
        .collect();
    eprintln!("validation loss by round: {loss:?} (killed at {killed_at}, joined at {joined_at})");
    let at = |r: u64| *loss.range(..=r).next_back().unwrap().1;
    let (first, last) = (at(1), at(u64::from(ROUNDS)));
    assert!(
        first > at(killed_at) && at(killed_at) > at(joined_at) && at(joined_at) > last,
        "validation loss by round: {loss:?} (killed at {killed_at}, joined at {joined_at})"
    );
    assert!(first - last > 0.5, "{loss:?}");

    // Anyone can replay every DiLoCo round from the ledger and the kept updates.
    let out = harambee(&["ledger", "verify", c.fed().to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("matching: {ROUNDS} of {ROUNDS}")),
        "{text}"
    );
}

#[test]
fn a_community_charter_allows_only_diloco_and_only_models_of_a_shared_corpus() {
    let fedavg = Community::with("char-transformer", "fedavg").err().unwrap();
    assert!(fedavg.contains("diloco"), "{fedavg}");
    // The language identifier learns from each member's own languages, not a shared corpus.
    let langid = Community::with("langid", "diloco").err().unwrap();
    assert!(langid.contains("char-transformer"), "{langid}");
    assert!(Community::with("2nn", "diloco").is_ok());
}
