//! `harambee export`: the released model, with its provenance, ready to publish.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};
use harambee_ledger::Entry;
use harambee_params::ParamSet;
use harambee_server::FederationFolder;
use harambee_store::{SqliteState, StateStore};

use crate::cli::ExportArgs;
use crate::ledger::short;

pub(crate) fn run(args: ExportArgs) -> Result<()> {
    let verification = crate::ledger::verify_folder(&args.dir, None)?;
    if !verification.ok() {
        verification.print();
        bail!("the ledger does not verify; nothing exported");
    }
    let folder = FederationFolder::new(&args.dir);
    let config = folder.config()?;
    let model_path = folder.model_path();
    let bytes = fs::read(&model_path).with_context(|| {
        format!(
            "reading {} (has the federation finished?)",
            model_path.display()
        )
    })?;
    let params = ParamSet::from_safetensors(&bytes)?;
    let state = SqliteState::open(&folder.state_path())?;
    let (entries, _) = state.ledger()?;
    let parsed: Vec<Entry> = entries
        .iter()
        .filter_map(|e| Entry::parse(e).ok())
        .collect();
    let released = parsed.iter().find_map(|e| match e {
        Entry::Release { model_digest, .. } => Some(model_digest.clone()),
        _ => None,
    });
    let digest = params.digest().to_hex();
    if released.as_deref() != Some(digest.as_str()) {
        bail!("model.safetensors (digest {digest}) is not the model the ledger released");
    }

    fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    fs::write(args.out.join("model.safetensors"), &bytes)?;
    let ledger_lines: String = entries
        .iter()
        .map(|e| format!("{}\n", String::from_utf8_lossy(e)))
        .collect();
    fs::write(args.out.join("ledger.jsonl"), ledger_lines)?;
    let head = verification
        .audit
        .head
        .clone()
        .context("no signed tree head")?;
    let head_json = serde_json::json!({
        "size": head.size,
        "root": hex::encode(head.root),
        "timestamp_ms": head.timestamp_ms,
        "signature": hex::encode(&head.signature),
        "coordinator_key": verification.audit.coordinator_key,
    });
    fs::write(
        args.out.join("tree-head.json"),
        serde_json::to_string_pretty(&head_json)?,
    )?;
    let card = model_card(
        &config,
        &parsed,
        &digest,
        &head_json,
        &args.dir,
        &verification,
    );
    fs::write(args.out.join("README.md"), card)?;
    println!(
        "Exported to {}: model.safetensors, README.md (model card), ledger.jsonl, tree-head.json",
        args.out.display()
    );
    if let Some(task) = &config.pretrained {
        export_adapter(task, &params, &args)?;
    }
    println!(
        "Model digest {digest}; ledger tree head size {} root {}",
        head.size,
        hex::encode(head.root)
    );
    Ok(())
}

/// The model card: what the model is, how it was made, by whom, and how to check it.
fn model_card(
    config: &harambee_server::FederationConfig,
    entries: &[Entry],
    digest: &str,
    head: &serde_json::Value,
    dir: &Path,
    v: &crate::ledger::Verification,
) -> String {
    let mut card = String::new();
    let m = &config.model;
    let _ = writeln!(card, "# {}\n", config.name);
    let _ = writeln!(
        card,
        "A `{}` model trained by federated learning with [Harambee](https://example.invalid/harambee): \
         each participant kept its data; only model updates travelled, and every round is recorded \
         in a signed, tamper-evident ledger (`ledger.jsonl`, RFC 6962 Merkle tree).\n",
        m.model
    );
    let _ = writeln!(card, "## Model\n");
    if let Some(task) = &config.pretrained {
        let _ = writeln!(
            card,
            "- fine-tuned from the pretrained base `{}` (SHA-256 of its files' manifest `{}`; licence: {}); only LoRA adapters (rank {}, alpha {}, {}, on {}) were trained: `adapter/` in PEFT's layout\n",
            task.base_name,
            task.base_sha256,
            base_licence(entries).unwrap_or_else(|| "see the base model's card".into()),
            task.lora.rank,
            task.lora.alpha,
            task.lora.variant,
            task.lora
                .targets
                .iter()
                .map(|t| t.name())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let _ = writeln!(
        card,
        "- architecture: `{}`; {} classes: {}",
        m.model,
        m.classes.len(),
        m.classes.join(", ")
    );
    let _ = writeln!(
        card,
        "- weights: `model.safetensors` (PyTorch conventions, linear weights `[out, in]`)"
    );
    let _ = writeln!(
        card,
        "- parameter digest (Harambee canonical SHA-256): `{digest}`\n"
    );
    let _ = writeln!(card, "## How it was trained\n");
    let _ = writeln!(
        card,
        "- federation `{}`, {} rounds, strategy `{}`",
        config.federation_id,
        v.audit.rounds.len(),
        config.training.strategy
    );
    let _ = writeln!(
        card,
        "- each round: {} local epochs, batch {}, learning rate {}; quorum {}, deadline {} s",
        config.training.epochs,
        config.training.batch_size,
        config.training.learning_rate,
        config.rounds.quorum,
        config.rounds.deadline_s
    );
    let _ = writeln!(
        card,
        "\n| round | updates combined | result digest |\n|---|---|---|"
    );
    for r in &v.audit.rounds {
        let _ = writeln!(
            card,
            "| {} | {} | `{}` |",
            r.round,
            r.inputs.len(),
            short(&r.output)
        );
    }
    let _ = writeln!(
        card,
        "\n## Contributors\n\nAs each member chose to be named at enrolment:\n"
    );
    for e in entries {
        if let Entry::Enrolment {
            participant,
            public_key,
            name,
        } = e
        {
            let _ = writeln!(
                card,
                "- {name} (participant {participant}, key `{}…`)",
                short(public_key)
            );
        }
    }
    let _ = writeln!(card, "\n## Provenance and how to verify it\n");
    let _ = writeln!(
        card,
        "- ledger tree head: size {}, root `{}`, signed by the coordinator key `{}`",
        head["size"],
        head["root"].as_str().unwrap_or_default(),
        head["coordinator_key"].as_str().unwrap_or_default()
    );
    let _ = writeln!(
        card,
        "- rounds recomputed from the kept updates at export: {} of {}",
        v.replayed.len(),
        v.audit.rounds.len()
    );
    let _ = writeln!(
        card,
        "- with the federation folder: `harambee ledger verify {}`",
        dir.display()
    );
    let _ = writeln!(
        card,
        "- a participant can check its own contribution: `harambee ledger prove {} --round N --participant KEY`",
        dir.display()
    );
    let _ = writeln!(
        card,
        "\n## Licence\n\nNot yet stated in the federation's records (the charter that will state data and model licences is not implemented yet)."
    );
    card
}

/// A fine-tuned pretrained model's adapters in PEFT's layout (`adapter/`), and with
/// `--merge-with` the base with them merged in (`merged/`).
fn export_adapter(
    task: &harambee_llm::PretrainedTask,
    params: &ParamSet,
    args: &ExportArgs,
) -> Result<()> {
    let adapter = args.out.join("adapter");
    harambee_llm::peft::write_adapter_for(
        &adapter,
        &task.config,
        &task.lora,
        params,
        &task.base_name,
    )?;
    println!(
        "  adapter/: the LoRA adapters in PEFT's layout: peft.PeftModel.from_pretrained(base, \"{}\") with base {} (digest {})",
        adapter.display(),
        task.base_name,
        task.base_sha256
    );
    if let Some(dir) = &args.merge_with {
        let (checkpoint, base) = task.load_base(dir, &harambee_llm::device("cpu")?)?;
        let trainer = harambee_llm::LoraTrainer::new(
            std::sync::Arc::new(base),
            task.lora.clone(),
            harambee_learn::Optimizer::AdamW { weight_decay: 0.0 },
            task.context,
        )?;
        let merged = args.out.join("merged");
        harambee_llm::peft::write_merged(&merged, &checkpoint, &trainer, params)?;
        println!(
            "  merged/: the base with the adapters merged in (transformers' AutoModelForCausalLM.from_pretrained(\"{}\"))",
            merged.display()
        );
    }
    Ok(())
}

/// The base model's licence, as the charter in the ledger's genesis entry records it.
fn base_licence(entries: &[Entry]) -> Option<String> {
    entries.iter().find_map(|e| match e {
        Entry::Genesis { charter, .. } => {
            serde_json::from_str::<harambee_charter::Charter>(charter)
                .ok()
                .and_then(|c| c.base_model)
                .map(|b| b.licence)
        }
        _ => None,
    })
}
