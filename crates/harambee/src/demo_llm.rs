//! `harambee demo --llm DIR`: language communities, each holding the Universal Declaration
//! of Human Rights in a few African and Indian languages, fine-tune one pretrained language
//! model together with LoRA, over gRPC with TLS on this machine, with the dashboard and a
//! verified ledger as in the main demo; then a table of held-out bits per character per
//! language: the base, the federation's adapters, and each community's adapters alone.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use harambee_learn::udhr::{Language, load_corpus};
use harambee_learn::{Optimizer, Trainer};
use harambee_llm::{LanguageBits, LanguageTexts, LoraTrainer, TextTokenizer, TokenCorpus};
use harambee_params::ParamSet;
use harambee_proto::v1;
use harambee_server::FederationFolder;
use harambee_strategy::FitConfig;

use crate::cli::{DemoArgs, InitArgs, LoraArgs};
use crate::demo::{
    Ending, RoundReport, conclude, join, serve, watch_progress, write_community_data,
};

/// The demo's languages when `--data-dir` does not choose: three African, three Indian,
/// three scripts, so that a small model and two cores finish in minutes.
const LANGUAGES: [&str; 6] = ["swh", "yor", "amh", "hin", "tam", "ben"];
/// Tokens per training chunk.
const CONTEXT: usize = 64;

/// Where to get a model, for `demo --llm` without one.
fn how_to_get_a_model() -> String {
    "harambee demo --llm needs a pretrained model folder (config.json, model.safetensors, tokenizer.json).\n\
     On a machine that reaches huggingface.co:\n\
     \x20   harambee model fetch HuggingFaceTB/SmolLM2-135M --out models/SmolLM2-135M   (Apache-2.0, 270 MB)\n\
     \x20   harambee demo --llm models/SmolLM2-135M\n\
     Qwen/Qwen2.5-0.5B (Apache-2.0) reads every script byte by byte. To try the machinery without\n\
     a download, the repository's tiny random Llama runs in seconds (it knows no language):\n\
     \x20   harambee demo --llm crates/llm/tests/fixtures/llama\n\
     docs/llm.md walks through it."
        .into()
}

pub(crate) fn run(args: DemoArgs, model: Option<PathBuf>) -> Result<()> {
    let Some(model) = model else {
        bail!("{}", how_to_get_a_model());
    };
    if !model.join("config.json").is_file() {
        bail!(
            "{} is not a model folder.\n{}",
            model.display(),
            how_to_get_a_model()
        );
    }
    let participants = args.participants.unwrap_or(3);
    if participants < 2 {
        bail!("--participants must be at least 2: a federation of one is local training");
    }
    let rounds = args.rounds.unwrap_or(4);
    let dir = args.dir.clone().unwrap_or_else(crate::demo::default_dir);
    let source = args
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("data/udhr"));
    let only: Option<Vec<String>> = args
        .data_dir
        .is_none()
        .then(|| LANGUAGES.iter().map(|c| c.to_string()).collect());
    let corpus = load_corpus(&source, only.as_deref()).with_context(|| {
        format!(
            "reading {} (run from the repository root, or pass --data-dir)",
            source.display()
        )
    })?;
    let languages = corpus.languages.clone();
    let init = init_args(&dir, &model, participants, rounds, args.seed, args.lora)?;
    let folder = FederationFolder::new(&dir);
    let config = crate::federation::config_from(&init)?;
    let charter = crate::federation::charter_from(&init, &config)?;
    let dashboard = config.http;
    let task = config
        .pretrained
        .clone()
        .context("a pretrained federation")?;
    let invite = folder.init(config, &charter)?;
    println!(
        "Harambee demo: {participants} language communities fine-tune {} (LoRA rank {}) on {} languages ({} African, {} Indian).",
        task.base_name,
        task.lora.rank,
        languages.len(),
        languages.iter().filter(|l| l.region == "africa").count(),
        languages.iter().filter(|l| l.region == "india").count(),
    );
    println!(
        "The charter pins the base model's digest {}; each community checks its own copy against it.",
        &task.base_sha256[..16]
    );
    println!(
        "Federation folder (state, blobs, keys, logs, adapters): {}\n",
        dir.display()
    );
    let communities = crate::demo::assign_languages(languages.len(), participants);
    let exe = std::env::current_exe().context("finding the harambee executable")?;
    let mut coordinator = serve(&exe, &dir, args.stay)?;
    let mut members = Vec::new();
    for (k, held) in communities.iter().enumerate() {
        let home = dir.join("participants").join(format!("community-{k}"));
        let data = home.join("data");
        write_community_data(&source, &languages, held, &data)?;
        let codes: Vec<&str> = held.iter().map(|&i| languages[i].code.as_str()).collect();
        println!("  community {k}: {}", codes.join(", "));
        let extra = [std::ffi::OsStr::new("--model-dir"), model.as_os_str()];
        let name = format!("community-{k}");
        members.push(join(&exe, &folder, &home, &data, &name, &extra)?);
    }
    if let Some(http) = dashboard {
        println!("\nDashboard: http://{http}/ (open it in a browser to watch the rounds live)");
    }
    println!();
    let runtime = tokio::runtime::Runtime::new()?;
    let line = |r: &v1::RoundStatus| {
        format!(
            "{} updates of adapters, train loss {:.3} nats/token",
            r.contributors, r.train_loss
        )
    };
    let report_rounds = RoundReport {
        line: &line,
        after: &mut |_| Ok(()),
    };
    let status = runtime.block_on(watch_progress(
        &invite,
        rounds,
        &mut coordinator,
        report_rounds,
    ));
    conclude(
        Ending {
            status,
            members,
            dir: &dir,
            stay: args.stay.then_some(dashboard).flatten(),
            runtime: &runtime,
            coordinator: &mut coordinator,
        },
        |_| {
            report(
                &folder,
                &model,
                &corpus_texts(&source, only.as_deref())?,
                &communities,
                &languages,
                rounds,
            )
        },
    )
}

fn corpus_texts(source: &Path, only: Option<&[String]>) -> Result<LanguageTexts> {
    Ok(LanguageTexts::load(source, only)?)
}

/// `harambee init` for the demo: every community each round, standard LoRA on every
/// projection, one epoch per round.
fn init_args(
    dir: &Path,
    model: &Path,
    participants: usize,
    rounds: u64,
    seed: u64,
    rank: usize,
) -> Result<InitArgs> {
    let defaults = InitArgs::defaults(dir)?;
    Ok(InitArgs {
        name: "Harambee demo: fine-tuning a language model together".into(),
        listen: "127.0.0.1:0".parse()?,
        http: Some("127.0.0.1:0".parse()?),
        model: format!("hf:{}", model.display()),
        lora: LoraArgs {
            lora: Some(rank),
            context: CONTEXT,
            ..defaults.lora
        },
        base_licence: "as its publisher states (see the base model's card)".into(),
        rounds,
        min_participants: participants,
        quorum: participants,
        deadline_s: 3600.0,
        epochs: 1,
        batch: 8,
        lr: Some(3e-3),
        seed,
        strategy: Some("fedavg".into()),
        data_licence: "the UDHR texts' own terms (see data/README.md)".into(),
        model_licence: "the base model's licence".into(),
        ..defaults
    })
}

/// Bits per character on every language's held-out text: the base, the federation's
/// adapters, and each community's adapters trained alone for as many epochs.
fn report(
    folder: &FederationFolder,
    model: &Path,
    texts: &LanguageTexts,
    communities: &[Vec<usize>],
    languages: &[Language],
    rounds: u64,
) -> Result<()> {
    let config = folder.config()?;
    let task = config.pretrained.context("a pretrained federation")?;
    let bytes = std::fs::read(folder.model_path())?;
    let federated = ParamSet::from_safetensors_with_layout(&bytes, &task.layout())?;
    let loaded = crate::llm::load(
        model,
        task.lora.clone(),
        Optimizer::AdamW { weight_decay: 0.0 },
        task.context,
        "cpu",
    )?;
    let trainer: &LoraTrainer = &loaded.trainer;
    let tokenizer = TextTokenizer::load(&loaded.checkpoint.tokenizer_path())?;
    let corpus = TokenCorpus::build(texts, &tokenizer, task.context)?;
    let initial = task.initial(config.rounds.seed);
    let before = corpus.per_language(trainer, &initial)?;
    let after = corpus.per_language(trainer, &federated)?;
    eprintln!("training each community's adapters alone, for comparison...");
    let fit = FitConfig {
        epochs: config.training.epochs * rounds as u32,
        batch_size: config.training.batch_size,
        learning_rate: config.training.learning_rate,
        proximal_mu: 0.0,
        local_steps: 0,
    };
    let mut alone: Vec<LanguageBits> = Vec::new();
    for (k, held) in communities.iter().enumerate() {
        let indices: Vec<usize> = (0..corpus.split.train.len())
            .filter(|&i| held.contains(&(corpus.split.train.labels[i] as usize)))
            .collect();
        let seed = harambee_learn::participant_seed(config.rounds.seed, 0, k as u64);
        let own = trainer
            .train(&initial, &corpus.split.train, &indices, &fit, seed)?
            .params;
        for bits in corpus.per_language(trainer, &own)? {
            let label = languages.iter().position(|l| l.code == bits.code);
            let better = alone.iter().position(|b| b.code == bits.code);
            match (label, better) {
                // A language two communities hold: the better of them alone.
                (Some(l), Some(i))
                    if held.contains(&l) && bits.bits_per_char < alone[i].bits_per_char =>
                {
                    alone[i] = bits
                }
                (Some(l), None) if held.contains(&l) => alone.push(bits),
                _ => {}
            }
        }
    }
    crate::llm::print_bits(&before, &after, Some(&alone));
    println!(
        "\n'alone' is the better of the communities that hold the language, each training only on its own texts for {} epochs.",
        fit.epochs
    );
    println!(
        "Adapters: {} ({} values; the base's {} parameters never left any community). Release them in PEFT's layout with: harambee export {} --out DIR",
        folder.model_path().display(),
        federated.len(),
        task.config.num_parameters(),
        folder.root().display()
    );
    Ok(())
}
