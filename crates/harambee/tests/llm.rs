//! A pretrained language model fine-tuned with LoRA over the network: `harambee serve` and
//! two `harambee join` processes on the tiny Llama fixture, each community with its own
//! languages as `.txt` files. The charter pins the base's digest; a participant with another
//! base is refused; the ledger verifies and recomputes every adapter aggregation; the export
//! holds the adapter in PEFT's layout (loaded by PEFT itself where it is installed).
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{harambee, ok, read, repo, spawn, wait_exit};

fn fixture(name: &str) -> PathBuf {
    repo().join("crates/llm/tests/fixtures").join(name)
}

/// One community's text: the UDHR of `codes`, one `.txt` file per language.
fn texts(dest: &Path, codes: &[&str]) {
    let only: Vec<String> = codes.iter().map(|c| c.to_string()).collect();
    let corpus = harambee_learn::udhr::load_corpus(&repo().join("data/udhr"), Some(&only)).unwrap();
    fs::create_dir_all(dest).unwrap();
    for (label, language) in corpus.languages.iter().enumerate() {
        let text = harambee_learn::multilingual::language_text(&corpus, label);
        fs::write(dest.join(format!("{}.txt", language.code)), text).unwrap();
    }
}

fn join(root: &Path, k: usize, model: &Path) -> Command {
    let mut command = common::join_command(
        &root.join("fed"),
        &root.join(format!("k{k}.pem")),
        &root.join(format!("d{k}")),
        &format!("p{k}"),
    );
    command.arg("--model-dir").arg(model);
    command
}

#[test]
fn three_processes_fine_tune_a_pretrained_model_and_the_ledger_recomputes_the_adapters() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let fed = root.join("fed");
    let llama = fixture("llama");
    ok(&harambee(&[
        "init",
        fed.to_str().unwrap(),
        "--model",
        &format!("hf:{}", llama.display()),
        "--lora",
        "4",
        "--context",
        "32",
        "--base-name",
        "tiny-llama",
        "--base-licence",
        "Apache-2.0",
        "--listen",
        "127.0.0.1:0",
        "--no-dashboard",
        "--min-participants",
        "2",
        "--quorum",
        "2",
        "--rounds",
        "3",
        "--epochs",
        "1",
        "--batch",
        "8",
    ]));
    let charter = fs::read_to_string(fed.join("charter.toml")).unwrap();
    assert!(
        charter.contains("[base_model]") && charter.contains("tiny-llama"),
        "{charter}"
    );
    for (k, codes) in [["swh", "hin"], ["yor", "amh"]].iter().enumerate() {
        ok(&harambee(&[
            "keygen",
            "--out",
            root.join(format!("k{k}.pem")).to_str().unwrap(),
        ]));
        texts(&root.join(format!("d{k}")), codes);
    }
    let mut coordinator = spawn(
        Command::new(env!("CARGO_BIN_EXE_harambee"))
            .arg("serve")
            .arg(&fed),
        &root.join("serve.log"),
    );
    // A member whose copy of the base is another model is refused before it trains.
    let wrong = join(root, 1, &fixture("smollm2")).output().unwrap();
    let said = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        !wrong.status.success() && said.contains("refusing to train on a different base"),
        "{said}"
    );
    let mut members: Vec<_> = (0..2)
        .map(|k| spawn(&mut join(root, k, &llama), &root.join(format!("p{k}.log"))))
        .collect();
    assert!(
        wait_exit(&mut coordinator, Duration::from_secs(300)).success(),
        "{}",
        read(&root.join("serve.log"))
    );
    for (k, m) in members.iter_mut().enumerate() {
        assert!(
            wait_exit(m, Duration::from_secs(60)).success(),
            "{}",
            read(&root.join(format!("p{k}.log")))
        );
        assert!(read(&root.join(format!("p{k}.log"))).contains("3 updates acknowledged"));
    }
    let verified = ok(&harambee(&["ledger", "verify", fed.to_str().unwrap()]));
    assert!(
        verified.contains("rounds recomputed from the kept updates and matching: 3 of 3"),
        "{verified}"
    );
    let release = root.join("release");
    let exported = ok(&harambee(&[
        "export",
        fed.to_str().unwrap(),
        "--out",
        release.to_str().unwrap(),
        "--merge-with",
        llama.to_str().unwrap(),
    ]));
    assert!(exported.contains("adapter/"), "{exported}");
    let card = fs::read_to_string(release.join("README.md")).unwrap();
    assert!(
        card.contains("tiny-llama") && card.contains("Apache-2.0"),
        "{card}"
    );
    let config = fs::read_to_string(release.join("adapter/adapter_config.json")).unwrap();
    assert!(
        config.contains("\"r\": 4") && config.contains("\"peft_type\": \"LORA\""),
        "{config}"
    );
    assert!(release.join("merged/model.safetensors").is_file());
    // Where PEFT is installed (CI: HARAMBEE_PEFT_TESTS=1), it loads the released adapter.
    if std::env::var_os("HARAMBEE_PEFT_TESTS").is_some() {
        let python = std::env::var("HARAMBEE_PYTHON").unwrap_or_else(|_| "python3".into());
        let out = Command::new(python)
            .arg(repo().join("scripts/check_peft_adapter.py"))
            .arg(&llama)
            .arg(release.join("adapter"))
            .output()
            .unwrap();
        let said = ok(&out);
        assert!(said.contains("names match"), "{said}");
    }
}

#[test]
fn the_llm_demo_fine_tunes_together_compares_with_alone_and_verifies_its_ledger() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("demo");
    let out = Command::new(env!("CARGO_BIN_EXE_harambee"))
        .current_dir(repo())
        .args(["demo", "--llm"])
        .arg(fixture("llama"))
        .args(["--rounds", "2", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let said = ok(&out);
    for needle in [
        "community 2:",
        "round   2/2",
        "federated",
        "alone",
        "Ledger verified",
        "2 of 2 rounds recomputed",
    ] {
        assert!(
            said.contains(needle),
            "the demo never said {needle:?}:\n{said}"
        );
    }
    // Without a model it says how to get one, and fails.
    let out = Command::new(env!("CARGO_BIN_EXE_harambee"))
        .current_dir(repo())
        .args(["demo", "--llm"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("harambee model fetch"),
        "{said}"
    );
}
