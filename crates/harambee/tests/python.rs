//! Python participants (the `harambee` package, built with maturin) in real federations:
//! beside a Rust participant, killed and restarted mid-round, returning every kind of bad
//! result, training a custom model started from a safetensors file, and (where PyTorch is
//! installed) the PyTorch example.
//!
//! They need a Python with the package installed: `HARAMBEE_PACKAGE_PYTHON` (CI builds the
//! wheel and sets it; see docs/python.md to do it by hand). Without it they say so and pass.
//! The PyTorch test also needs `HARAMBEE_TORCH_PYTHON`, a Python with the package and torch.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use common::{harambee, ok, read, repo, spawn, wait_exit, wait_for};
use harambee_params::ParamSet;

/// The Python named by `var`, or `None` (and a note) when it is unset.
fn python(var: &str) -> Option<String> {
    let found = std::env::var(var).ok();
    if found.is_none() {
        eprintln!(
            "skipped: set {var} to a Python with the harambee package (docs/python.md) to run this test"
        );
    }
    found
}

/// A Python process running `script` with `args`.
fn python_command(python: &str, script: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(python);
    command
        .arg(script)
        .args(args)
        .env("HARAMBEE_LOG", "info")
        // Two cores are shared by every process of a test: one thread each.
        .env("OMP_NUM_THREADS", "1");
    command
}

/// A federation folder made by `harambee init` with `args`, served in the background.
struct Federation {
    root: tempfile::TempDir,
    coordinator: Child,
}

impl Federation {
    /// A federation of `model` for `rounds` rounds that waits for `members` and needs all of
    /// them in every round, one local epoch each.
    fn start(model: &str, rounds: u32, members: u32, deadline_s: u32) -> Self {
        Self::start_in(
            tempfile::tempdir().unwrap(),
            model,
            rounds,
            members,
            deadline_s,
        )
    }

    fn start_in(
        root: tempfile::TempDir,
        model: &str,
        rounds: u32,
        members: u32,
        deadline_s: u32,
    ) -> Self {
        let fed = root.path().join("fed");
        let (rounds, members, deadline_s) = (
            rounds.to_string(),
            members.to_string(),
            deadline_s.to_string(),
        );
        let init = [
            "init",
            fed.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--no-dashboard",
            "--model",
            model,
            "--rounds",
            &rounds,
            "--min-participants",
            &members,
            "--quorum",
            &members,
            "--epochs",
            "1",
            "--deadline-s",
            &deadline_s,
        ];
        ok(&harambee(&init));
        let coordinator = spawn(
            Command::new(env!("CARGO_BIN_EXE_harambee")).args(["serve", fed.to_str().unwrap()]),
            &root.path().join("serve.log"),
        );
        Self { root, coordinator }
    }

    fn fed(&self) -> PathBuf {
        self.root.path().join("fed")
    }

    fn invite(&self) -> String {
        self.fed().join("invite.toml").display().to_string()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// A new member's key, made by the Python package's `keygen`.
    fn key(&self, python: &str, name: &str) -> String {
        let key = self.path(name).display().to_string();
        let out = Command::new(python)
            .args([
                "-c",
                "import sys, harambee; print(harambee.keygen(sys.argv[1]))",
            ])
            .arg(&key)
            .output()
            .unwrap();
        assert_eq!(ok(&out).trim().len(), 64);
        key
    }

    /// One of `examples/python` as a member with `key`, training on `shard` (I/N) of the
    /// bundled MNIST, its output in `log`.
    fn example(&self, py: &str, example: &str, key: &str, shard: &str, log: &str) -> Child {
        let (invite, data) = (self.invite(), mnist());
        let script = repo().join("examples/python").join(example);
        let args = [
            "--invite", &invite, "--key", key, "--data", &data, "--shard", shard,
        ];
        spawn(&mut python_command(py, &script, &args), &self.path(log))
    }

    /// `harambee join` with a new key on the bundled MNIST, its output in `log`.
    fn rust_member(&self, log: &str) -> Child {
        let key = self.path("r.key");
        ok(&harambee(&["keygen", "--out", key.to_str().unwrap()]));
        spawn(
            &mut common::join_command(&self.fed(), &key, Path::new(&mnist()), "rust"),
            &self.path(log),
        )
    }

    /// Waits for the coordinator to finish, then checks the ledger; returns its report.
    fn finish_and_verify(&mut self) -> String {
        let status = wait_exit(&mut self.coordinator, Duration::from_secs(300));
        assert!(
            status.success(),
            "{}",
            read(&self.root.path().join("serve.log"))
        );
        ok(&harambee(&[
            "ledger",
            "verify",
            self.fed().to_str().unwrap(),
        ]))
    }
}

impl Drop for Federation {
    fn drop(&mut self) {
        let _ = self.coordinator.kill();
        let _ = self.coordinator.wait();
    }
}

fn script(name: &str) -> PathBuf {
    repo().join("crates/harambee/tests/python").join(name)
}

fn mnist() -> String {
    repo().join("data/mnist").display().to_string()
}

#[test]
fn python_and_rust_participants_train_one_federation_and_a_killed_python_member_resumes() {
    let Some(py) = python("HARAMBEE_PACKAGE_PYTHON") else {
        return;
    };
    let mut f = Federation::start("logreg", 4, 3, 120);
    let (invite, data) = (f.invite(), mnist());
    let key_a = f.key(&py, "a.key");
    let key_b = f.key(&py, "b.key");
    let mut rust = f.rust_member("rust.log");
    let mut plain = f.example(&py, "numpy_logreg.py", &key_a, "0/2", "a.log");
    // The second Python member hangs in round 2; it is killed there and started again.
    let fits = f.path("fits.log");
    let resumable = |hang: bool| {
        let mut command = python_command(
            &py,
            &script("resumable.py"),
            &[&invite, &key_b, &data, "1/2", fits.to_str().unwrap()],
        );
        if hang {
            command.env("HANG_IN_ROUND", "2");
        }
        command
    };
    let mut first = spawn(&mut resumable(true), &f.path("b1.log"));
    wait_for(&fits, "fit start 2", Duration::from_secs(120));
    first.kill().unwrap();
    first.wait().unwrap();
    let mut second = spawn(&mut resumable(false), &f.path("b2.log"));

    for (child, log) in [
        (&mut rust, "rust.log"),
        (&mut plain, "a.log"),
        (&mut second, "b2.log"),
    ] {
        let status = wait_exit(child, Duration::from_secs(300));
        assert!(status.success(), "{log}:\n{}", read(&f.path(log)));
    }
    assert!(read(&f.path("a.log")).contains("4 updates acknowledged"));
    assert!(read(&f.path("b2.log")).contains("acknowledged [2, 3, 4]"));
    // Round 1 was trained once, before the kill; round 2 was started twice but finished
    // once, after the restart; no round was trained to the end twice.
    let fits = read(&fits);
    let lines: Vec<&str> = fits.lines().collect();
    assert_eq!(
        lines,
        [
            "fit start 1",
            "fit done 1",
            "fit start 2",
            "fit start 2",
            "fit done 2",
            "fit start 3",
            "fit done 3",
            "fit start 4",
            "fit done 4"
        ],
        "{fits}"
    );
    let verified = f.finish_and_verify();
    assert!(
        verified.contains("4 rounds, 12 update signatures verified"),
        "{verified}"
    );
    assert!(verified.contains("matching: 4 of 4"), "{verified}");
}

#[test]
fn bad_results_from_python_code_raise_clear_exceptions_and_the_round_goes_on() {
    let Some(py) = python("HARAMBEE_PACKAGE_PYTHON") else {
        return;
    };
    let mut f = Federation::start("logreg", 2, 1, 300);
    let key = f.key(&py, "m.key");
    let out = python_command(
        &py,
        &script("misbehaving.py"),
        &[&f.invite(), &key, &mnist()],
    )
    .output()
    .unwrap();
    let said = ok(&out);
    for (mistake, expected) in [
        (
            "missing",
            "InvalidUpdateError: missing tensor \"layers.0.bias\"",
        ),
        (
            "unknown",
            "InvalidUpdateError: unknown tensor \"extra.weight\"",
        ),
        (
            "shape",
            "InvalidUpdateError: tensor \"layers.0.weight\" has shape [784, 10]; the federation's is [10, 784]",
        ),
        (
            "dtype",
            "InvalidUpdateError: tensor \"layers.0.weight\" has dtype float64",
        ),
        (
            "nan",
            "InvalidUpdateError: tensor \"layers.0.bias\" holds NaN or infinite values (the first at flat index 3)",
        ),
        (
            "negative",
            "InvalidUpdateError: fit's num_samples is -5; it must be a positive number",
        ),
        ("not-a-tuple", "InvalidUpdateError: fit must return"),
        (
            "not-an-array",
            "InvalidUpdateError: tensor \"layers.0.weight\" has dtype <U7; the federation trains float32",
        ),
        (
            "loss-nan",
            "InvalidUpdateError: fit's metrics[\"loss\"] is NaN",
        ),
        // The member's own exception comes back as it was.
        ("raises", "RuntimeError: the member's own bug"),
        ("good round 1", "Stop: round 1 is done"),
        (
            "evaluate-accuracy",
            "InvalidUpdateError: evaluate's metrics[\"accuracy\"] is 1.5",
        ),
        ("good", "finished, acknowledged [2]"),
    ] {
        let line = format!("{mistake} -> {expected}");
        assert!(said.contains(&line), "no {line:?} in:\n{said}");
    }
    // Nothing bad reached the coordinator: one update a round, each recomputed.
    let verified = f.finish_and_verify();
    assert!(
        verified.contains("2 rounds, 2 update signatures verified"),
        "{verified}"
    );
    assert!(verified.contains("matching: 2 of 2"), "{verified}");
}

#[test]
fn a_custom_model_from_a_safetensors_file_is_trained_by_python_members() {
    let root = tempfile::tempdir().unwrap();
    // Initial weights as any framework would save them: the logistic regression's tensors.
    let initial = root.path().join("initial.safetensors");
    let weights = |bias: f32| {
        ParamSet::from_tensors([
            ("layers.0.weight", vec![10, 784], vec![0.0; 7840]),
            ("layers.0.bias", vec![10], vec![bias; 10]),
        ])
        .unwrap()
        .to_safetensors()
        .unwrap()
    };
    fs::write(&initial, weights(0.0)).unwrap();
    // Weights that are not finite are refused when the federation is made.
    let spoiled = root.path().join("nan.safetensors");
    fs::write(&spoiled, weights(f32::NAN)).unwrap();
    let model = format!("safetensors:{}", spoiled.display());
    let refused = harambee(&[
        "init",
        root.path().join("refused").to_str().unwrap(),
        "--model",
        &model,
    ]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("must be finite"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let Some(py) = python("HARAMBEE_PACKAGE_PYTHON") else {
        return;
    };
    let model = format!("safetensors:{}", initial.display());
    // A short deadline: the refused Rust member below stays enrolled and selected until its
    // liveness times out, so rounds close at their deadline on the two Python updates.
    let mut f = Federation::start_in(root, &model, 2, 2, 20);
    let charter = fs::read_to_string(f.fed().join("charter.toml")).unwrap();
    assert!(charter.contains("a custom model"), "{charter}");
    // Harambee's own trainer cannot train a model it does not know, and says what to do.
    ok(&harambee(&[
        "keygen",
        "--out",
        f.path("r.key").to_str().unwrap(),
    ]));
    let out = common::join_command(&f.fed(), &f.path("r.key"), Path::new(&mnist()), "rust")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("join it with your own training code"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let members: Vec<(Child, String)> = (0..2)
        .map(|i| {
            let key = f.key(&py, &format!("k{i}.key"));
            let log = format!("p{i}.log");
            let child = f.example(&py, "numpy_logreg.py", &key, &format!("{i}/2"), &log);
            (child, log)
        })
        .collect();
    for (mut child, log) in members {
        let status = wait_exit(&mut child, Duration::from_secs(300));
        assert!(status.success(), "{log}:\n{}", read(&f.path(&log)));
    }
    let verified = f.finish_and_verify();
    assert!(verified.contains("matching: 2 of 2"), "{verified}");
    // The released model has the file's layout, and it learned: its bias moved from zero.
    let released = fs::read(f.fed().join("model.safetensors")).unwrap();
    let model = ParamSet::from_safetensors(&released).unwrap();
    assert_eq!(model.layout().tensors().len(), 2);
    assert!(
        model
            .tensor("layers.0.bias")
            .unwrap()
            .iter()
            .any(|&b| b != 0.0)
    );
}

#[test]
fn the_pytorch_example_trains_the_cnn_beside_a_rust_participant() {
    let Some(py) = python("HARAMBEE_TORCH_PYTHON") else {
        return;
    };
    let mut f = Federation::start("cnn", 2, 2, 120);
    let key = f.key(&py, "t.key");
    let mut torch = f.example(&py, "pytorch_mnist.py", &key, "0/5", "torch.log");
    let mut rust = f.rust_member("rust.log");
    for (child, log) in [(&mut torch, "torch.log"), (&mut rust, "rust.log")] {
        let status = wait_exit(child, Duration::from_secs(600));
        assert!(status.success(), "{log}:\n{}", read(&f.path(log)));
    }
    // PyTorch reads the model Rust and PyTorch trained together with the same layout: after
    // one round it already recognises most digits (a mismatch would leave it at chance).
    let said = read(&f.path("torch.log"));
    let accuracy: f64 = said
        .lines()
        .find_map(|l| l.strip_prefix("round 2: the global model scores "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no evaluation in:\n{said}"));
    assert!(accuracy > 0.5, "{said}");
    let verified = f.finish_and_verify();
    assert!(verified.contains("matching: 2 of 2"), "{verified}");
}
