//! `harambee demo`: language communities, each holding the Universal Declaration of Human
//! Rights in a few of its own languages, train one language identifier together, for real:
//! a coordinator process and one participant process per community on this machine, talking
//! gRPC over TLS on loopback exactly as they would across the world.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use harambee_identity::Identity;
use harambee_learn::ModelTask;
use harambee_learn::udhr::{Language, load_corpus};
use harambee_params::ParamSet;
use harambee_proto::{CoordinatorClient, Invite, v1};
use harambee_server::FederationFolder;
use harambee_sim::{DatasetName, SimConfig, Workload};
use indicatif::{ProgressBar, ProgressStyle};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::cli::{DemoArgs, InitArgs};

/// The demo's noise multiplier under `--private`: what eight communities can afford and
/// still learn. It buys little formal privacy (the run prints its ε); DP pays off with
/// thousands of participants, as docs/privacy.md measures.
const PRIVATE_NOISE_MULTIPLIER: f64 = 0.01;

pub(crate) fn run(args: DemoArgs, process_start: Instant) -> Result<()> {
    if args.simulated {
        return crate::demo_sim::run(args, process_start);
    }
    if args.community {
        return crate::demo_community::run(args);
    }
    if let Some(model) = args.llm.clone() {
        return crate::demo_llm::run(args, model);
    }
    if args.participants() < 2 {
        bail!("--participants must be at least 2: a federation of one is local training");
    }
    let dir = args.dir.clone().unwrap_or_else(default_dir);
    let corpus = load_corpus(&args.data_dir(), None).with_context(|| {
        format!(
            "reading {} (run from the repository root, or pass --data-dir)",
            args.data_dir().display()
        )
    })?;
    let languages = corpus.languages.clone();
    let init = InitArgs {
        name: "Harambee demo: language identification".into(),
        listen: "127.0.0.1:0".parse()?,
        http: Some("127.0.0.1:0".parse()?),
        model: "langid".into(),
        classes_from: args.data_dir(),
        rounds: args.rounds(),
        min_participants: args.participants(),
        quorum: args.participants().div_ceil(2),
        deadline_s: 120.0,
        epochs: 3,
        batch: 32,
        lr: Some(0.05),
        seed: args.seed,
        strategy: Some(if args.private {
            // Adaptive clipping from a generous bound: it settles on the median update norm.
            format!("dp-adaptive:100:{PRIVATE_NOISE_MULTIPLIER}")
        } else {
            "fedavg".into()
        }),
        data_licence: "the UDHR texts' own terms (see data/README.md)".into(),
        model_licence: "Apache-2.0".into(),
        privacy: args.private.then(|| "secagg,distributed-dp".into()),
        ..InitArgs::defaults(&dir)?
    };
    let folder = FederationFolder::new(&dir);
    let mut config = crate::federation::config_from(&init)?;
    // Each round's eight updates take 34 MB; the demo keeps the last two rounds' worth.
    config.limits.keep_update_rounds = Some(2);
    let charter = crate::federation::charter_from(&init, &config)?;
    let dashboard = config.http;
    let invite = folder.init(config, &charter)?;
    println!("{}", headline(args.participants(), &languages));
    println!(
        "A coordinator and {} participant processes talk gRPC over TLS on loopback; each community keeps its texts.",
        args.participants()
    );
    println!(
        "Federation folder (state, blobs, keys, logs, final model): {}\n",
        dir.display()
    );

    let communities = assign_languages(languages.len(), args.participants());
    let exe = std::env::current_exe().context("finding the harambee executable")?;
    let mut coordinator = serve(&exe, &dir, args.stay)?;
    let mut participants = Vec::new();
    for (k, held) in communities.iter().enumerate() {
        let home = dir.join("participants").join(format!("community-{k}"));
        let data = home.join("data");
        write_community_data(&args.data_dir(), &languages, held, &data)?;
        let codes: Vec<&str> = held.iter().map(|&i| languages[i].code.as_str()).collect();
        println!("  community {k}: {}", codes.join(", "));
        let name = format!("community-{k}");
        participants.push(join(&exe, &folder, &home, &data, &name, &[])?);
    }
    println!(
        "\nStatus: {} (gRPC GetStatus; logs in {})",
        invite.coordinator,
        dir.display()
    );
    if let Some(http) = dashboard {
        println!("Dashboard: http://{http}/ (open it in a browser to watch the rounds live)");
    }
    println!();

    let runtime = tokio::runtime::Runtime::new()?;
    let line = |r: &v1::RoundStatus| {
        let accuracy = if r.accuracy >= 0.0 {
            format!("{:5.1}%", 100.0 * r.accuracy)
        } else {
            "  n/a ".into()
        };
        format!(
            "{} updates, train loss {:.3}, accuracy on the communities' held-out text {accuracy}",
            r.contributors, r.train_loss
        )
    };
    let rounds = RoundReport {
        line: &line,
        after: &mut |_| Ok(()),
    };
    let status = runtime.block_on(watch_progress(
        &invite,
        args.rounds(),
        &mut coordinator,
        rounds,
    ));
    conclude(
        Ending {
            status,
            members: participants,
            dir: &dir,
            stay: args.stay.then_some(dashboard).flatten(),
            runtime: &runtime,
            coordinator: &mut coordinator,
        },
        |_| report(&args, &folder, &languages),
    )?;
    if args.private {
        print_privacy(args.rounds());
    }
    Ok(())
}

/// How a networked demo's federation ended, and what to do about it.
pub(crate) struct Ending<'a> {
    /// The coordinator's last status, or why watching it failed.
    pub(crate) status: Result<v1::FederationStatus>,
    /// The member processes, which end once the federation does.
    pub(crate) members: Vec<Child>,
    /// The federation folder.
    pub(crate) dir: &'a Path,
    /// With `--stay`: the dashboard's address, to keep serving until Ctrl-C.
    pub(crate) stay: Option<std::net::SocketAddr>,
    /// The runtime that waits for Ctrl-C.
    pub(crate) runtime: &'a tokio::runtime::Runtime,
    /// The coordinator process, stopped at the end.
    pub(crate) coordinator: &'a mut Child,
}

/// Ends a networked demo: when the federation finished, `report` on it and verify its
/// ledger as an auditor would; with `--stay`, keep the coordinator and its dashboard up until
/// Ctrl-C; then stop the coordinator.
pub(crate) fn conclude(
    ending: Ending<'_>,
    report: impl FnOnce(&v1::FederationStatus) -> Result<()>,
) -> Result<()> {
    let Ending {
        status,
        members,
        dir,
        stay,
        runtime,
        coordinator,
    } = ending;
    for mut member in members {
        let _ = wait_or_kill(&mut member, Duration::from_secs(10));
    }
    let outcome = status.and_then(|status| {
        if status.phase != "finished" {
            bail!(
                "the federation ended as {:?}: {} (see {})",
                status.phase,
                status.error,
                dir.join("coordinator.log").display()
            );
        }
        report(&status)?;
        verify_ledger(dir)
    });
    if let Some(http) = stay
        && outcome.is_ok()
    {
        println!("\nThe coordinator and its dashboard stay up: http://{http}/ (Ctrl-C to stop)");
        runtime.block_on(tokio::signal::ctrl_c())?;
    }
    // With --stay the coordinator only stops when told; otherwise it has ended by now.
    let _ = wait_or_kill(coordinator, Duration::from_secs(10));
    outcome
}

/// What `--private` protected, in numbers, without overselling it.
fn print_privacy(rounds: u64) {
    let delta = 1e-5;
    let mut accountant = harambee_strategy::privacy::RdpAccountant::default();
    accountant.compose_subsampled_gaussian(1.0, PRIVATE_NOISE_MULTIPLIER, rounds);
    let (epsilon, _) = accountant.epsilon(delta);
    println!(
        "\nPrivacy: secure aggregation was on, so the coordinator saw only each round's sum, never a community's update."
    );
    println!(
        "Each community added its share of Gaussian noise (multiplier {PRIVATE_NOISE_MULTIPLIER}, adaptive clipping): ({epsilon:.3e}, {delta:.0e})-DP per community."
    );
    println!(
        "That ε promises next to nothing: noise that eight communities can afford is small. DP pays off with many participants (docs/privacy.md)."
    );
}

/// The demo ends as an auditor would: by verifying the federation's ledger.
fn verify_ledger(dir: &Path) -> Result<()> {
    let mut v = crate::ledger::verify_folder(dir, None)?;
    // What each community kept of the ledger while it trained: the heads it was shown and the
    // promises it was given. The ledger must agree with all of them.
    let mut witnesses: Vec<std::path::PathBuf> = std::fs::read_dir(dir.join("participants"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("key.pem.state.witness.jsonl"))
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    witnesses.sort();
    crate::ledger::check_witnesses(dir, &witnesses, &mut v)?;
    if !v.ok() {
        v.print();
        bail!("the federation's ledger does not verify");
    }
    println!(
        "\nLedger verified: {} entries, {} update signatures, every round's inputs and results; {} of {} rounds recomputed from the kept updates.",
        v.audit.entries,
        v.audit.signatures_verified,
        v.replayed.len(),
        v.audit.rounds.len()
    );
    // Say why the others were not, once per reason (retention, secure aggregation, ...).
    let mut reasons: Vec<&str> = v.not_replayed.iter().map(|(_, why)| why.as_str()).collect();
    reasons.dedup();
    for why in reasons {
        println!("  not recomputed: {why}");
    }
    if let Some(n) = v.witnessed {
        println!(
            "Witnessed: {n} tree heads and update promises that the {} communities kept agree with it.",
            witnesses.len()
        );
    }
    println!("Signed {}", v.head_line());
    println!(
        "Check it yourself: harambee ledger verify {}",
        dir.display()
    );
    Ok(())
}

/// Accuracy per language, from (correct, total) per class in label order.
pub(crate) fn print_language_table(
    languages: &[Language],
    per_class: impl Iterator<Item = (usize, usize)>,
) {
    println!("\nPer-language accuracy of the federated model on held-out sentences:\n");
    println!(
        "{:<10} {:<32} {:<7} {:>9}",
        "code", "language", "region", "accuracy"
    );
    for (lang, (correct, total)) in languages.iter().zip(per_class) {
        let acc = correct as f64 / total.max(1) as f64;
        println!(
            "{:<10} {:<32} {:<7} {:>8.1}%",
            lang.code,
            lang.name,
            lang.region,
            100.0 * acc
        );
    }
}

/// The demo's first line: who trains what.
pub(crate) fn headline(participants: usize, languages: &[Language]) -> String {
    format!(
        "Harambee demo: {participants} language communities train one language identifier over {} languages ({} African, {} Indian).",
        languages.len(),
        languages.iter().filter(|l| l.region == "africa").count(),
        languages.iter().filter(|l| l.region == "india").count(),
    )
}

/// Which languages each community holds: consecutive runs of about 2L/N languages, so each
/// language is held by about two communities and no community holds them all.
pub(crate) fn assign_languages(languages: usize, communities: usize) -> Vec<Vec<usize>> {
    let per = (2 * languages).div_ceil(communities).clamp(1, languages);
    (0..communities)
        .map(|k| {
            let start = k * languages / communities;
            (0..per).map(|j| (start + j) % languages).collect()
        })
        .collect()
}

/// A community's own corpus folder: its languages' declarations and an index of them.
pub(crate) fn write_community_data(
    source: &Path,
    languages: &[Language],
    held: &[usize],
    dest: &Path,
) -> Result<()> {
    let declarations = dest.join("declaration");
    fs::create_dir_all(&declarations)
        .with_context(|| format!("creating {}", declarations.display()))?;
    let mut index = String::from("code\tname\tregion\n");
    for &i in held {
        let l = &languages[i];
        index.push_str(&format!("{}\t{}\t{}\n", l.code, l.name, l.region));
        let file = format!("{}.html", l.code);
        fs::copy(
            source.join("declaration").join(&file),
            declarations.join(&file),
        )
        .with_context(|| format!("copying the {} declaration", l.code))?;
    }
    fs::write(dest.join("index.tsv"), index)
        .with_context(|| format!("writing {}", dest.display()))?;
    Ok(())
}

/// Starts `harambee serve` on the federation in `dir`, its log in `coordinator.log` there.
pub(crate) fn serve(exe: &Path, dir: &Path, stay: bool) -> Result<Child> {
    let mut command = Command::new(exe);
    command.arg("serve").arg(dir).args(["--linger-s", "2"]);
    if stay {
        command.arg("--stay");
    }
    spawn_logged(&mut command, &dir.join("coordinator.log"))
}

/// Starts `harambee join` as a member named `name` with a fresh key in `home` (where its log
/// goes too), its data at `data`, and `extra` arguments.
pub(crate) fn join(
    exe: &Path,
    folder: &FederationFolder,
    home: &Path,
    data: &Path,
    name: &str,
    extra: &[&std::ffi::OsStr],
) -> Result<Child> {
    fs::create_dir_all(home).with_context(|| format!("creating {}", home.display()))?;
    let key = home.join("key.pem");
    Identity::generate()?.save(&key)?;
    spawn_logged(
        Command::new(exe)
            .arg("join")
            .arg("--invite")
            .arg(folder.invite_path())
            .arg("--key")
            .arg(&key)
            .arg("--data")
            .arg(data)
            .args(["--name", name])
            .args(extra),
        &home.join("join.log"),
    )
}

pub(crate) fn spawn_logged(command: &mut Command, log: &Path) -> Result<Child> {
    let file = fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    command
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .context("starting a harambee process")
}

pub(crate) fn wait_or_kill(child: &mut Child, patience: Duration) -> Result<()> {
    let until = Instant::now() + patience;
    while Instant::now() < until {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill()?;
    child.wait()?;
    Ok(())
}

/// A TLS client for the coordinator, trusting only the federation's own CA.
pub(crate) async fn status_client(invite: &Invite) -> Result<CoordinatorClient<Channel>> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&invite.ca_certificate))
        .domain_name(invite.server_name.clone());
    let channel = Endpoint::from_shared(invite.coordinator.clone())?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(2))
        .connect_lazy();
    Ok(CoordinatorClient::new(channel))
}

/// What the demo prints about a completed round, and does after printing it.
pub(crate) struct RoundReport<'a> {
    /// The line for a completed round.
    pub(crate) line: &'a dyn Fn(&v1::RoundStatus) -> String,
    /// Called with each round once its line is printed.
    pub(crate) after: &'a mut dyn FnMut(u64) -> Result<()>,
}

/// Polls the coordinator's status, drawing a bar per round, until the federation ends.
pub(crate) async fn watch_progress(
    invite: &Invite,
    rounds: u64,
    coordinator: &mut Child,
    report: RoundReport<'_>,
) -> Result<v1::FederationStatus> {
    let mut client = status_client(invite).await?;
    let style = ProgressStyle::with_template(
        "round {prefix} [{bar:30}] {pos}/{len} updates received {elapsed}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    let mut bar: Option<(u64, ProgressBar)> = None;
    let mut printed = 0usize;
    let mut last_ok = Instant::now();
    loop {
        if let Some(exit) = coordinator.try_wait()?
            && !exit.success()
        {
            bail!("the coordinator stopped ({exit}); see coordinator.log in the federation folder");
        }
        let status = match client.get_status(v1::StatusRequest {}).await {
            Ok(s) => {
                last_ok = Instant::now();
                s.into_inner()
            }
            Err(e) => {
                if last_ok.elapsed() > Duration::from_secs(30) {
                    bail!("the coordinator has not answered for 30 s: {}", e.message());
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        // Accuracy of a round's model is reported by the next round's participants, so
        // each line is printed once that report is in (or the federation is over).
        let over = status.phase == "finished" || status.phase == "failed";
        while printed < status.completed.len() {
            let r = &status.completed[printed];
            if r.accuracy < 0.0 && !over && printed + 1 == status.completed.len() {
                break;
            }
            if let Some((_, b)) = bar.take() {
                b.finish_and_clear();
            }
            println!("round {:>3}/{rounds}: {}", r.round, (report.line)(r));
            printed += 1;
            (report.after)(r.round)?;
        }
        if over {
            if let Some((_, b)) = bar.take() {
                b.finish_and_clear();
            }
            return Ok(status);
        }
        if status.phase == "training" {
            match &bar {
                Some((round, b)) if *round == status.round => {
                    b.set_position(u64::from(status.received))
                }
                _ => {
                    if let Some((_, b)) = bar.take() {
                        b.finish_and_clear();
                    }
                    let b = ProgressBar::new(u64::from(status.selected));
                    b.set_style(style.clone());
                    b.set_prefix(format!("{}/{rounds}", status.round));
                    b.set_position(u64::from(status.received));
                    bar = Some((status.round, b));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Evaluates the final model on every language's held-out sentences.
fn report(args: &DemoArgs, folder: &FederationFolder, languages: &[Language]) -> Result<()> {
    let config = folder.config()?;
    let model_path = folder.model_path();
    let bytes =
        fs::read(&model_path).with_context(|| format!("reading {}", model_path.display()))?;
    let params = ParamSet::from_safetensors(&bytes)?;
    let workload = Workload::load(&SimConfig {
        dataset: DatasetName::Udhr,
        data_dir: Some(args.data_dir()),
        ..SimConfig::default()
    })?;
    let task: &ModelTask = &config.model;
    let trainer = task.trainer()?;
    let eval = trainer.evaluate_all(&params, &workload.split.test)?;
    print_language_table(languages, eval.per_class.iter().copied());
    println!(
        "\nOverall: {:.1}% of {} held-out sentences in {} languages; no community holds more than {} of them.",
        100.0 * eval.accuracy,
        eval.examples,
        languages.len(),
        assign_languages(languages.len(), args.participants())[0].len()
    );
    println!(
        "Final model: {} (safetensors, digest {})",
        model_path.display(),
        &params.digest().to_hex()[..16]
    );
    Ok(())
}

pub(crate) fn default_dir() -> PathBuf {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    PathBuf::from("runs").join(format!("demo-{stamp}"))
}
