//! The `harambee` binary as a user runs it: flags, a TOML file, outputs, errors.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn harambee(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_harambee"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("the binary runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `harambee simulate` with DiLoCo (H = 3) over two workers of a tiny char-transformer,
/// plus `data` (the data set, rounds, output).
fn tiny_diloco(data: &[&str]) -> Output {
    let mut args = vec!["simulate"];
    args.extend(data);
    args.extend([
        "--model",
        "char-transformer:1:16:2:16",
        "--optimizer",
        "adamw",
        "--lr",
        "3e-3",
        "--clients",
        "2",
        "--fraction",
        "1",
        "--batch",
        "8",
        "--strategy",
        "diloco:3",
    ]);
    harambee(&args)
}

/// The command docs/diloco.md gives, on the bundled plays and a tiny model.
#[test]
fn simulate_runs_diloco_on_the_char_transformer() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("run");
    let out = tiny_diloco(&[
        "--dataset",
        "shakespeare",
        "--data-dir",
        "data/shakespeare",
        "--rounds",
        "2",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["config"]["strategy"]["inner_steps"], 3);
    assert!(text(&out).contains("bits/char"), "{}", text(&out));
    let refused = harambee(&[
        "simulate",
        "--dataset",
        "mnist",
        "--model",
        "char-transformer",
    ]);
    assert!(!refused.status.success());
    assert!(text(&refused).contains("go together"), "{}", text(&refused));
}

/// The multilingual comparison's command on a tiny model: the Indian languages' table.
#[test]
fn simulate_reports_bits_per_character_for_each_udhr_language() {
    let out = tiny_diloco(&[
        "--dataset",
        "udhr-text",
        "--data-dir",
        "data/udhr",
        "--languages",
        "india",
        "--rounds",
        "1",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = text(&out);
    assert!(
        shown.contains("nats/byte") && shown.contains("bits/char"),
        "{shown}"
    );
    let rows = shown.lines().filter(|l| l.contains(" india ")).count();
    assert_eq!(rows, 10, "{shown}");
    assert!(shown.contains("Hindi (hin)"), "{shown}");
}

#[test]
fn simulate_writes_rounds_summary_and_a_loadable_model() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("run");
    let out = harambee(&[
        "simulate",
        "--dataset",
        "mnist",
        "--data-dir",
        "data/mnist",
        "--model",
        "logreg",
        "--clients",
        "20",
        "--fraction",
        "0.5",
        "--rounds",
        "3",
        "--seed",
        "3",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("final accuracy"));
    assert_eq!(
        std::fs::read_to_string(out_dir.join("rounds.jsonl"))
            .unwrap()
            .lines()
            .count(),
        3
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["rounds"], 3);
    assert!(summary["startup_s"].as_f64().unwrap() > 0.0);
    let model = std::fs::read(out_dir.join("model.safetensors")).unwrap();
    let params = harambee_params::ParamSet::from_safetensors(&model).unwrap();
    assert_eq!(
        params.digest().to_hex(),
        summary["final_digest"].as_str().unwrap()
    );
    // PyTorch convention: Linear weight is [out, in].
    assert_eq!(
        params.layout().get("layers.0.weight").unwrap().shape,
        vec![10, 784]
    );
}

#[test]
fn a_toml_file_and_the_same_flags_give_the_same_model() {
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("sim.toml");
    std::fs::write(
        &toml,
        "dataset = \"mnist\"\ndata_dir = \"data/mnist\"\nmodel = \"logreg\"\nclients = 10\nfraction = 0.5\nrounds = 2\nseed = 5\n\
         partition = { kind = \"dirichlet\", alpha = 0.5 }\nstrategy = { name = \"fedavgm\", server_lr = 1.0, momentum = 0.9 }\n",
    )
    .unwrap();
    let from_file = harambee(&["simulate", "--config", toml.to_str().unwrap()]);
    let from_flags = harambee(&[
        "simulate",
        "--dataset",
        "mnist",
        "--data-dir",
        "data/mnist",
        "--model",
        "logreg",
        "--clients",
        "10",
        "--fraction",
        "0.5",
        "--rounds",
        "2",
        "--seed",
        "5",
        "--partition",
        "dirichlet:0.5",
        "--strategy",
        "fedavgm",
    ]);
    assert!(from_file.status.success(), "{}", text(&from_file));
    assert!(from_flags.status.success(), "{}", text(&from_flags));
    let digest = |o: &Output| {
        text(o)
            .lines()
            .find(|l| l.starts_with("final model digest"))
            .map(str::to_string)
    };
    assert_eq!(digest(&from_file), digest(&from_flags));
    assert!(digest(&from_file).is_some());
}

#[test]
fn bad_settings_fail_with_a_clear_message() {
    for (args, needle) in [
        (vec!["simulate", "--dataset", "cifar"], "unknown dataset"),
        (vec!["simulate", "--model", "gpt"], "unknown model"),
        (
            vec!["simulate", "--strategy", "fedmagic"],
            "unknown strategy",
        ),
        (vec!["simulate", "--partition", "zipf"], "unknown partition"),
        (vec!["simulate", "--fraction", "1.5"], "fraction"),
        (vec!["simulate", "--optimizer", "lion"], "unknown optimizer"),
        (vec!["simulate", "--data-dir", "/nonexistent"], "fetch-data"),
        (
            vec!["simulate", "--config", "/nonexistent.toml"],
            "nonexistent.toml",
        ),
    ] {
        let out = harambee(&args);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(text(&out).contains(needle), "{args:?}: {}", text(&out));
        assert!(
            !text(&out).contains("panicked"),
            "{args:?} panicked: {}",
            text(&out)
        );
    }
}

#[test]
fn an_unknown_key_in_the_toml_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("bad.toml");
    std::fs::write(&toml, "clients = 10\nclinets = 3\n").unwrap();
    let out = harambee(&["simulate", "--config", toml.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out).contains("clinets"), "{}", text(&out));
}

#[test]
fn the_simulated_demo_trains_languages_and_compares_with_local_training() {
    let dir = tempfile::tempdir().unwrap();
    let out = harambee(&[
        "demo",
        "--simulated",
        "--rounds",
        "4",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    for needle in [
        "Swahili",
        "Yoruba",
        "Hindi",
        "Tamil",
        "Overall: federated",
        "model.safetensors",
    ] {
        assert!(t.contains(needle), "missing {needle}: {t}");
    }
    assert!(dir.path().join("model.safetensors").is_file());
}

/// `demo --community`: worker processes pool compute on the bundled plays; one leaves and one
/// joins partway, and the ledger recomputes every DiLoCo round.
#[test]
fn the_community_demo_trains_on_while_a_worker_leaves_and_another_joins() {
    let dir = tempfile::tempdir().unwrap();
    let fed = dir.path().join("fed");
    let out = harambee(&[
        "demo",
        "--community",
        "--participants",
        "2",
        "--rounds",
        "4",
        "--dir",
        fed.to_str().unwrap(),
    ]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    for needle in [
        "worker-1 left (killed)",
        "worker-2 joined",
        "round   4/4",
        "4 of 4 rounds recomputed",
        "Signed tree head: size",
    ] {
        assert!(t.contains(needle), "missing {needle}: {t}");
    }
    let released: f64 = t
        .split("Released model: ")
        .nth(1)
        .and_then(|rest| rest.split(" nats").next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    // A uniform guess over the 96 characters costs ln 96 = 4.56 nats.
    assert!(released < 3.5, "{t}");
    let charter = std::fs::read_to_string(fed.join("charter.toml")).unwrap();
    assert!(charter.contains("mode = \"community\""), "{charter}");
}

/// README command 1: a coordinator and participant processes over gRPC with TLS.
#[test]
fn the_demo_runs_a_networked_federation_of_processes() {
    let dir = tempfile::tempdir().unwrap();
    let fed = dir.path().join("fed");
    let out = harambee(&[
        "demo",
        "--participants",
        "3",
        "--rounds",
        "3",
        "--dir",
        fed.to_str().unwrap(),
    ]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    for needle in [
        "Swahili",
        "Tamil",
        "round   3/3",
        "Overall:",
        "https://127.0.0.1:",
        "Ledger verified",
        "Signed tree head: size",
    ] {
        assert!(t.contains(needle), "missing {needle}: {t}");
    }
    let overall: f64 = t
        .split("Overall: ")
        .nth(1)
        .and_then(|rest| rest.split('%').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap();
    // 40 languages: chance is 2.5%, and no community holds more than 27 of them.
    assert!(
        overall > 80.0,
        "the federated model should know the languages: {t}"
    );
    for file in [
        "model.safetensors",
        "state.db",
        "federation.toml",
        "invite.toml",
        "tls/ca.pem",
    ] {
        assert!(fed.join(file).is_file(), "{file} missing");
    }
}

/// `demo --private`: secure aggregation and distributed DP over the same processes.
#[test]
fn the_private_demo_sums_blind_and_states_its_epsilon() {
    let dir = tempfile::tempdir().unwrap();
    let fed = dir.path().join("fed");
    let out = harambee(&[
        "demo",
        "--private",
        "--participants",
        "3",
        "--rounds",
        "2",
        "--dir",
        fed.to_str().unwrap(),
    ]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    for needle in [
        "Ledger verified",
        "secure aggregation was on",
        "-DP per community",
        "secure aggregation: the coordinator never held the individual updates",
    ] {
        assert!(t.contains(needle), "missing {needle}: {t}");
    }
    let log = std::fs::read_to_string(fed.join("coordinator.log")).unwrap();
    assert!(log.contains("secure aggregation complete"), "{log}");
    let settings = std::fs::read_to_string(fed.join("federation.toml")).unwrap();
    assert!(
        settings.contains("secure_aggregation = true") && settings.contains("distributed"),
        "{settings}"
    );
}

#[test]
fn bench_runs_and_reports_each_target_beside_a_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let out = harambee(&[
        "bench",
        "--data-dir",
        "data/mnist",
        "--rounds",
        "1",
        "--skip-cnn",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    for needle in [
        "aggregation",
        "2NN round",
        "start-up",
        "peak memory",
        "ratio",
    ] {
        assert!(
            text(&out).contains(needle),
            "missing {needle}: {}",
            text(&out)
        );
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    let names: Vec<&str> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, ["aggregation_gbs", "2nn_round_s"]);
}

#[test]
fn keygen_writes_a_key_once_and_shows_its_public_half() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("member.pem");
    let key = key.to_str().unwrap();
    let made = harambee(&["keygen", "--out", key]);
    assert!(made.status.success(), "{}", text(&made));
    let public = String::from_utf8_lossy(&made.stdout).trim().to_string();
    assert_eq!(public.len(), 64);
    let shown = harambee(&["keygen", "--show", key]);
    assert_eq!(String::from_utf8_lossy(&shown.stdout).trim(), public);
    let again = harambee(&["keygen", "--out", key]);
    assert!(!again.status.success());
    assert!(
        text(&again).contains("never overwritten"),
        "{}",
        text(&again)
    );
    assert!(!harambee(&["keygen"]).status.success());
}

/// Guards the shipped examples: each must parse and pass validation.
#[test]
fn every_example_configuration_is_valid() {
    let dir = repo().join("examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let config: harambee_sim::SimConfig =
                toml::from_str(&std::fs::read_to_string(&path).unwrap())
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            config
                .validate()
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            checked += 1;
        }
    }
    assert!(checked >= 3);
}
