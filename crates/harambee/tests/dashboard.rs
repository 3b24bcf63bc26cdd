//! The dashboard of a real federation of processes: headless Chromium watching it live over
//! WebDriver, and a steward's `harambee admin` pause that survives a `kill -9` restart.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    COMMUNITIES, LANGUAGES, corpus, harambee, join_community, read, spawn, wait_exit, wait_for,
};
use harambee_dashboard::DashboardClient;
use harambee_dashboard::api::{CurrentRound, Member, Phase, RoundPage, TreeHeadInfo};
use harambee_store::{SqliteState, StateStore};

/// A federation folder of three language communities, a steward key, and the processes.
struct Federation {
    root: tempfile::TempDir,
}

impl Federation {
    fn new(rounds: u32, epochs: u32) -> Self {
        let root = tempfile::tempdir().unwrap();
        corpus(&root.path().join("classes"), &LANGUAGES);
        for (k, codes) in COMMUNITIES.iter().enumerate() {
            corpus(&root.path().join(format!("p{k}/data")), codes);
            let key = root.path().join(format!("p{k}/key.pem"));
            assert!(
                harambee(&["keygen", "--out", key.to_str().unwrap()])
                    .status
                    .success()
            );
        }
        let f = Self { root };
        let steward = harambee(&["keygen", "--out", f.steward_key().to_str().unwrap()]);
        let steward = String::from_utf8(steward.stdout)
            .unwrap()
            .trim()
            .to_string();
        let fed = f.fed();
        let classes = f.root.path().join("classes");
        let out = harambee(&[
            "init",
            fed.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--classes-from",
            classes.to_str().unwrap(),
            "--rounds",
            &rounds.to_string(),
            "--min-participants",
            "3",
            "--quorum",
            "3",
            "--deadline-s",
            "60",
            "--epochs",
            &epochs.to_string(),
            "--seed",
            "5",
            "--steward",
            &steward,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("dashboard:   http://127.0.0.1:"));
        f
    }

    fn fed(&self) -> PathBuf {
        self.root.path().join("fed")
    }

    fn steward_key(&self) -> PathBuf {
        self.root.path().join("steward.key")
    }

    fn log(&self, name: &str) -> PathBuf {
        self.root.path().join(format!("{name}.log"))
    }

    /// `harambee serve --stay`; returns the process and the dashboard URL it printed.
    fn serve(&self, name: &str) -> (Child, String) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_harambee"));
        command
            .arg("serve")
            .arg(self.fed())
            .args(["--linger-s", "0", "--stay"]);
        let log = self.log(name);
        let child = spawn(&mut command, &log);
        wait_for(&log, "dashboard: http://", Duration::from_secs(60));
        let url = read(&log)
            .lines()
            .find_map(|l| l.strip_prefix("dashboard: "))
            .and_then(|l| l.split_whitespace().next())
            .unwrap()
            .trim_end_matches('/')
            .to_string();
        (child, url)
    }

    fn join(&self, k: usize) -> Child {
        spawn(
            &mut join_community(self.root.path(), k),
            &self.log(&format!("p{k}")),
        )
    }

    fn state(&self) -> SqliteState {
        SqliteState::open(&self.fed().join("state.db")).unwrap()
    }
}

/// A process that is killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn get<T: serde::de::DeserializeOwned>(d: &DashboardClient, path: &str) -> T {
    let reply = d.get(path).await.unwrap();
    assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    reply.json().unwrap()
}

/// Polls `check` until it returns something; fails the test after `patience`.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    patience: Duration,
    mut check: impl FnMut() -> F,
) -> T {
    let until = Instant::now() + patience;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < until, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Chromium and its WebDriver, or why the browser test cannot run.
fn browser() -> Result<(PathBuf, PathBuf), String> {
    let find = |names: &[&str]| {
        names
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or_else(|| format!("none of {names:?} is installed"))
    };
    Ok((
        find(&["/usr/bin/chromium", "/usr/bin/chromium-browser"])?,
        find(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"])?,
    ))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What the page shows, read in one script.
const READ_PAGE: &str = r##"
const chart = document.getElementById("chart");
return {
  round: Number(document.getElementById("round-number").textContent) || 0,
  phase: document.getElementById("phase").className.replace("badge ", ""),
  points: Number(chart.dataset.points) || 0,
  marks: chart.querySelectorAll("[data-round]").length,
  members: document.querySelectorAll("#members tbody tr").length,
  ledger: document.getElementById("head-size").textContent,
  live: document.getElementById("connection").textContent,
  marker: window.harambeeTestMarker ?? null,
  overflow: document.documentElement.scrollWidth - window.innerWidth,
};
"##;

#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
struct Page {
    round: u64,
    phase: String,
    points: u64,
    marks: u64,
    members: u64,
    ledger: String,
    live: String,
    marker: Option<u64>,
    overflow: i64,
}

async fn read_page(client: &fantoccini::Client) -> Page {
    serde_json::from_value(client.execute(READ_PAGE, vec![]).await.unwrap()).unwrap()
}

#[test]
fn headless_chromium_watches_the_rounds_advance_live_without_a_reload() {
    let (chromium, chromedriver) = match browser() {
        Ok(found) => found,
        Err(why) => {
            assert!(
                std::env::var_os("HARAMBEE_BROWSER_TESTS").is_none(),
                "HARAMBEE_BROWSER_TESTS is set, but the browser is missing: {why} (apt-get install chromium chromium-driver)"
            );
            eprintln!(
                "skipped: the browser test needs Debian's chromium and chromium-driver ({why})"
            );
            return;
        }
    };
    let rounds = 5;
    // Three local epochs: rounds long enough (about a second each here) for the page's
    // half-second samples to show each one.
    let f = Federation::new(rounds, 3);
    let (coordinator, url) = f.serve("serve");
    let coordinator = Killed(coordinator);
    let port = free_port();
    let driver = Killed(
        Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let profile = tempfile::tempdir().unwrap();
    let rt = runtime();
    let client = rt.block_on(async {
        let webdriver = format!("http://127.0.0.1:{port}");
        eventually("chromedriver", Duration::from_secs(30), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
        })
        .await;
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                    "--window-size=1280,1100",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        fantoccini::ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&webdriver)
            .await
            .unwrap()
    });

    let seen = rt.block_on(async {
        client.goto(&format!("{url}/")).await.unwrap();
        // Before anyone joins: round 1, waiting, an empty chart.
        let first = eventually("the page to go live", Duration::from_secs(30), || async {
            let p = read_page(&client).await;
            (p.live == "Live" && p.phase == "waiting").then_some(p)
        })
        .await;
        assert_eq!((first.round, first.points, first.marks), (1, 0, 0));
        // A mark that a reload would wipe.
        client
            .execute("window.harambeeTestMarker = 7;", vec![])
            .await
            .unwrap();
        let mut participants: Vec<Killed> = (0..3).map(|k| Killed(f.join(k))).collect();
        // Follow the page until the federation finishes, noting each state it showed.
        let mut seen: Vec<Page> = vec![first];
        let until = Instant::now() + Duration::from_secs(240);
        let finished = loop {
            let p = read_page(&client).await;
            if seen.last() != Some(&p) {
                seen.push(p.clone());
            }
            if p.phase == "finished" && p.points == u64::from(rounds) {
                break p;
            }
            assert!(
                Instant::now() < until,
                "the page never showed the end: {seen:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        for p in &mut participants {
            assert!(wait_exit(&mut p.0, Duration::from_secs(60)).success());
        }
        assert_eq!(finished.marker, Some(7), "the page was never reloaded");
        assert_eq!(finished.members, 3);
        seen
    });
    // The round number advanced while training ran, and the chart gained points as it did.
    let training: Vec<&Page> = seen.iter().filter(|p| p.phase == "training").collect();
    let rounds_shown: Vec<u64> = dedup(training.iter().map(|p| p.round));
    assert!(
        rounds_shown.len() >= 3 && rounds_shown.windows(2).all(|w| w[0] < w[1]),
        "rounds shown while training: {rounds_shown:?}\n{seen:#?}"
    );
    let points_shown = dedup(training.iter().map(|p| p.points));
    eprintln!(
        "while training, the page showed rounds {rounds_shown:?} and chart points {points_shown:?}"
    );
    assert!(
        points_shown.len() >= 2 && points_shown.windows(2).all(|w| w[0] < w[1]),
        "chart points shown while training: {points_shown:?}"
    );
    assert!(
        seen.iter()
            .all(|p| p.marker.is_none() || p.marker == Some(7))
    );
    // Accuracy marks (once evaluated) and loss marks: more marks than rounds by the end.
    let last = seen.last().unwrap();
    assert!(last.marks > u64::from(rounds), "{last:?}");

    // What the page and the API say is what the state holds.
    let state = f.state();
    let (entries, _) = state.ledger().unwrap();
    assert_eq!(last.ledger, entries.len().to_string());
    let d = DashboardClient::new(&url).unwrap();
    rt.block_on(async {
        let page: RoundPage = get(&d, "/api/rounds").await;
        let closed = state.closed_rounds().unwrap();
        assert_eq!(page.total as usize, closed.len());
        let updates: usize = (1..=u64::from(rounds))
            .map(|r| state.updates_of_round(r).unwrap().len())
            .sum();
        let metrics = d.get("/metrics").await.unwrap().text();
        assert!(
            metrics.contains(&format!("harambee_rounds_completed_total {}", closed.len())),
            "{metrics}"
        );
        assert!(
            metrics.contains(&format!("harambee_updates_accepted_total {updates}")),
            "{metrics}"
        );
        let head: TreeHeadInfo = get(&d, "/api/ledger/head").await;
        assert_eq!(head.size, entries.len() as u64);
    });

    // Screenshots of the finished federation (HARAMBEE_DASHBOARD_SCREENSHOT=docs/dashboard.png
    // refreshes the documentation's), wide and at a phone's width, where nothing may overflow.
    let keep = std::env::var_os("HARAMBEE_DASHBOARD_SCREENSHOT").map(PathBuf::from);
    for (width, height, suffix) in [(1280, 1700, ""), (390, 2600, "-phone")] {
        let phone = rt.block_on(async {
            client.set_window_size(width, height).await.unwrap();
            eventually(
                "the layout at this width",
                Duration::from_secs(10),
                || async {
                    let p = read_page(&client).await;
                    (p.overflow <= 0).then_some(p)
                },
            )
            .await
        });
        assert_eq!(phone.marker, Some(7));
        let shot = rt.block_on(client.screenshot()).unwrap();
        assert!(shot.starts_with(b"\x89PNG"), "a PNG");
        fs::write(f.root.path().join(format!("dashboard{suffix}.png")), &shot).unwrap();
        if let Some(path) = &keep {
            let stem = path.file_stem().unwrap().to_string_lossy();
            fs::write(path.with_file_name(format!("{stem}{suffix}.png")), &shot).unwrap();
        }
    }
    rt.block_on(client.close()).unwrap();
    drop(driver);
    drop(coordinator);
}

/// Consecutive duplicates removed.
fn dedup(values: impl Iterator<Item = u64>) -> Vec<u64> {
    let mut out: Vec<u64> = Vec::new();
    for v in values {
        if out.last() != Some(&v) {
            out.push(v);
        }
    }
    out
}

#[test]
fn a_stewards_pause_from_the_cli_holds_across_a_restart_until_resumed() {
    let f = Federation::new(2, 1);
    let (coordinator, url) = f.serve("serve");
    let mut coordinator = Killed(coordinator);
    let key = f.steward_key();
    let admin = |args: &[&str]| {
        let mut all = vec!["admin"];
        all.extend_from_slice(args);
        all.extend(["--url", &url, "--key", key.to_str().unwrap()]);
        let out = harambee(&all);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    // Only a steward's key is heard.
    let p0_key = f.root.path().join("p0/key.pem");
    let out = harambee(&[
        "admin",
        "pause",
        "--url",
        &url,
        "--key",
        p0_key.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a steward"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ok, text) = admin(&["pause", "--reason", "checking the data first"]);
    assert!(
        ok && text.contains("pause: done; the federation is paused"),
        "{text}"
    );

    // Everyone joins, and still no round opens.
    let mut participants: Vec<Killed> = (0..3).map(|k| Killed(f.join(k))).collect();
    let d = DashboardClient::new(&url).unwrap();
    let rt = runtime();
    rt.block_on(async {
        eventually("three members waiting", Duration::from_secs(60), || async {
            let members: Vec<Member> = get(&d, "/api/members").await;
            (members.len() == 3 && members.iter().all(|m| m.waiting)).then_some(())
        })
        .await;
        let round: CurrentRound = get(&d, "/api/round").await;
        assert_eq!((round.phase, round.round), (Phase::Paused, 1), "{round:?}");
    });

    // Killed and restarted, the coordinator is still paused.
    coordinator.0.kill().unwrap();
    coordinator.0.wait().unwrap();
    let (restarted, url2) = f.serve("restart");
    let _restarted = Killed(restarted);
    let d = DashboardClient::new(&url2).unwrap();
    rt.block_on(async {
        let round: CurrentRound = get(&d, "/api/round").await;
        assert_eq!(
            (round.phase, round.paused),
            (Phase::Paused, true),
            "{round:?}"
        );
    });
    let (ok, text) = admin(&["resume"]);
    assert!(
        ok && text.contains("resume: done; the federation is running"),
        "{text}"
    );
    for p in &mut participants {
        assert!(
            wait_exit(&mut p.0, Duration::from_secs(180)).success(),
            "{}",
            read(&f.log("restart"))
        );
    }
    assert_eq!(f.state().closed_rounds().unwrap().len(), 2);

    // Regression: a finished federation's coordinator, started again (as `--stay` invites),
    // appended a second release entry at its first timer tick (every 2 s).
    let size = f.state().ledger().unwrap().0.len();
    drop(_restarted);
    let (again, _) = f.serve("again");
    let _again = Killed(again);
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        f.state().ledger().unwrap().0.len(),
        size,
        "{}",
        read(&f.log("again"))
    );

    let actions = f.state().steward_actions().unwrap();
    assert_eq!(
        actions
            .iter()
            .map(|a| (a.action.as_str(), a.applied))
            .collect::<Vec<_>>(),
        [("pause", true), ("resume", true)]
    );
}
