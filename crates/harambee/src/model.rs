//! `harambee model fetch` and `inspect`: getting a pretrained base, and the facts about it a
//! federation pins.

use std::path::Path;

use anyhow::{Context, Result, bail};
use harambee_llm::Checkpoint;
use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Repo, RepoType};

use crate::cli::{ModelArgs, ModelCommand};

pub(crate) fn run(args: ModelArgs) -> Result<()> {
    match args.command {
        ModelCommand::Fetch { id, out, revision } => fetch(&id, &out, &revision),
        ModelCommand::Inspect { dir } => inspect(&dir),
    }
}

/// Files a model folder may carry besides its weights; copied when the hub has them.
const OPTIONAL: [&str; 5] = [
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
    "LICENSE",
    "README.md",
];

fn fetch(id: &str, out: &Path, revision: &str) -> Result<()> {
    let api = ApiBuilder::from_env()
        .with_progress(true)
        .build()
        .context("setting up the Hugging Face hub client")?;
    let repo = api.repo(Repo::with_revision(
        id.to_string(),
        RepoType::Model,
        revision.to_string(),
    ));
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let get = |name: &str| -> Result<()> {
        let cached = repo
            .get(name)
            .with_context(|| format!("downloading {name} of {id} (does this machine reach huggingface.co? is HF_TOKEN set for a gated model?)"))?;
        std::fs::copy(&cached, out.join(name))
            .with_context(|| format!("copying {name} into {}", out.display()))?;
        Ok(())
    };
    get("config.json")?;
    get("tokenizer.json")?;
    if get("model.safetensors").is_err() {
        get("model.safetensors.index.json")
            .context("the repository has neither model.safetensors nor a sharded index")?;
        let index: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
            out.join("model.safetensors.index.json"),
        )?)?;
        let mut shards: Vec<&str> = index["weight_map"]
            .as_object()
            .context("the index has no weight_map")?
            .values()
            .filter_map(|v| v.as_str())
            .collect();
        shards.sort_unstable();
        shards.dedup();
        for shard in shards {
            if shard.contains('/') || shard.starts_with('.') {
                bail!("the index names shard {shard:?}, which is not a file name");
            }
            get(shard)?;
        }
    }
    for name in OPTIONAL {
        let _ = get(name);
    }
    println!("fetched {id} ({revision}) into {}", out.display());
    inspect(out)
}

fn inspect(dir: &Path) -> Result<()> {
    let checkpoint = Checkpoint::open(dir)?;
    let c = checkpoint.config();
    println!(
        "{}: {} ({:?}), {} parameters: {} blocks, width {}, {} heads ({} key-value), head width {}, feed-forward {}, vocabulary {}, rotary θ {}, {} embeddings",
        dir.display(),
        c.model_type,
        c.family(),
        c.num_parameters(),
        c.num_hidden_layers,
        c.hidden_size,
        c.num_attention_heads,
        c.kv_heads(),
        c.head_width(),
        c.intermediate_size,
        c.vocab_size,
        c.theta(),
        if c.tie_word_embeddings {
            "tied"
        } else {
            "separate output"
        },
    );
    print!("{}", checkpoint.manifest()?);
    println!(
        "digest (SHA-256 of the lines above, which a charter pins): {}",
        checkpoint.digest()?
    );
    Ok(())
}
