//! Helpers shared by the process-level tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The repository root.
pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A UDHR corpus folder at `dest` holding `codes`, copied from the bundled subset: one
/// community's own data.
pub(crate) fn corpus(dest: &Path, codes: &[&str]) {
    let source = repo().join("data/udhr");
    let index = fs::read_to_string(source.join("index.tsv")).unwrap();
    let mut lines = vec![index.lines().next().unwrap().to_string()];
    lines.extend(
        index
            .lines()
            .filter(|l| codes.contains(&l.split('\t').next().unwrap()))
            .map(str::to_string),
    );
    fs::create_dir_all(dest.join("declaration")).unwrap();
    fs::write(dest.join("index.tsv"), lines.join("\n") + "\n").unwrap();
    for code in codes {
        let file = format!("{code}.html");
        fs::copy(
            source.join("declaration").join(&file),
            dest.join("declaration").join(&file),
        )
        .unwrap();
    }
}

/// A log file's text so far.
pub(crate) fn read(log: &Path) -> String {
    fs::read_to_string(log).unwrap_or_default()
}

/// Waits until `log` says `needle` at least `count` times; fails the test, showing the log,
/// after `patience`.
pub(crate) fn wait_for_count(log: &Path, needle: &str, count: usize, patience: Duration) {
    let until = Instant::now() + patience;
    while read(log).matches(needle).count() < count {
        assert!(
            Instant::now() < until,
            "{} never said {needle:?} {count} times:\n{}",
            log.display(),
            read(log)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `log` says `needle`.
pub(crate) fn wait_for(log: &Path, needle: &str, patience: Duration) {
    wait_for_count(log, needle, 1, patience);
}

/// Waits for a process to end; kills it and fails the test after `patience`.
pub(crate) fn wait_exit(child: &mut Child, patience: Duration) -> ExitStatus {
    let until = Instant::now() + patience;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > until {
            let _ = child.kill();
            panic!("a process did not finish in {patience:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Six languages, two communities' worth each, to keep the federation tests quick.
pub(crate) const LANGUAGES: [&str; 6] = ["swh", "yor", "hau_NG", "hin", "tam", "eng"];
/// Three communities of three languages.
pub(crate) const COMMUNITIES: [&[&str]; 3] = [
    &["swh", "yor", "hin"],
    &["hau_NG", "tam", "eng"],
    &["swh", "tam", "eng"],
];

/// Runs the `harambee` binary to completion.
pub(crate) fn harambee(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_harambee"))
        .args(args)
        .output()
        .unwrap()
}

/// A finished process's stdout and stderr; fails the test, showing them, unless it succeeded.
pub(crate) fn ok(out: &std::process::Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    text
}

/// `harambee join` with the federation's invite, a key, a data folder and a display name,
/// giving up after two minutes without an answer.
pub(crate) fn join_command(fed: &Path, key: &Path, data: &Path, name: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_harambee"));
    command
        .arg("join")
        .arg("--invite")
        .arg(fed.join("invite.toml"))
        .arg("--key")
        .arg(key)
        .arg("--data")
        .arg(data)
        .args(["--name", name, "--give-up-after-s", "120"]);
    command
}

/// `harambee join` for community `k` of the federation at `root/fed`: its key, data and name
/// under `root/p{k}`, as the process tests lay them out.
pub(crate) fn join_community(root: &Path, k: usize) -> Command {
    let home = root.join(format!("p{k}"));
    join_command(
        &root.join("fed"),
        &home.join("key.pem"),
        &home.join("data"),
        &format!("p{k}"),
    )
}

/// Spawns a command with its output (and `RUST_LOG=info`) in `log`.
pub(crate) fn spawn(command: &mut Command, log: &Path) -> Child {
    let file = fs::File::create(log).unwrap();
    command
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap()
}

/// A gRPC client of the coordinator an invite names, trusting only the federation's CA.
pub(crate) fn client(
    invite: &harambee_proto::Invite,
) -> harambee_proto::CoordinatorClient<tonic::transport::Channel> {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&invite.ca_certificate))
        .domain_name(invite.server_name.clone());
    let channel = Endpoint::from_shared(invite.coordinator.clone())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(30))
        .connect_lazy();
    harambee_proto::CoordinatorClient::new(channel).max_decoding_message_size(8 << 20)
}
