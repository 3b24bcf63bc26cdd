//! `harambee init`, `serve` and `join`: a federation across machines.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use harambee_charter::{
    BaseModel, Charter, Enrolment, Member, Mode, PrivacyBudget, Role, SecureAggregationRule,
    VerificationRule,
};
use harambee_identity::Identity;
use harambee_learn::udhr::load_corpus;
use harambee_learn::{DataKind, ModelKind, ModelTask, Optimizer, digit_names};
use harambee_params::ParamSet;
use harambee_participant::{Invite, JoinOptions, Training};
use harambee_server::{
    FederationConfig, FederationFolder, InitialWeights, Limits, RoundSettings, ServeOptions,
    ServeOutcome, TrainingSettings,
};
use harambee_store::{SqliteState, StateStore};
use harambee_strategy::StrategyConfig;
use sha2::{Digest as _, Sha256};

use crate::cli::{InitArgs, InviteArgs, JoinArgs, ServeArgs};

/// Settings for a new federation, from `harambee init` or the demo.
pub(crate) fn config_from(args: &InitArgs) -> Result<FederationConfig> {
    let pretrained = match crate::llm::model_dir(&args.model) {
        Some(dir) => Some(pretrained_task(args, &dir)?),
        None => None,
    };
    let initial_weights = match custom_weights_path(&args.model) {
        Some(path) => Some(custom_weights(&path)?),
        None => None,
    };
    let model: ModelKind = match (&pretrained, &initial_weights) {
        (Some(_), _) => ModelKind::Pretrained,
        (None, Some(_)) => ModelKind::Custom,
        (None, None) => args.model.parse()?,
    };
    let community = args.mode == "community";
    if community && !(model.is_native() || matches!(model, ModelKind::CharTransformer(_))) {
        bail!(
            "community mode trains --model char-transformer on a shared text corpus, or logreg, 2nn or cnn on shared images, not {model}"
        );
    }
    let (data, classes, optimizer) = match model {
        // Trained by the members' own code: Harambee reads neither their data nor a label set.
        ModelKind::Custom => (DataKind::Own, vec!["output".into()], Optimizer::default()),
        // Text, by language or from any .txt files, for the base's own tokenizer; the
        // adapters train with AdamW.
        ModelKind::Pretrained => (
            DataKind::Text,
            vec!["text".to_string()],
            Optimizer::AdamW { weight_decay: 0.0 },
        ),
        ModelKind::LangId => {
            let corpus = load_corpus(&args.classes_from, None).with_context(|| {
                format!("reading the languages of {}", args.classes_from.display())
            })?;
            let codes = corpus.languages.into_iter().map(|l| l.code).collect();
            (
                DataKind::Udhr,
                codes,
                Optimizer::AdamW { weight_decay: 0.0 },
            )
        }
        ModelKind::CharTransformer(_) if !community => bail!(
            "the char-transformer learns from a shared corpus: pass --mode community (or train it in the simulator, harambee simulate --dataset shakespeare)"
        ),
        ModelKind::CharTransformer(_) => (
            DataKind::Text,
            harambee_learn::shakespeare::alphabet(),
            Optimizer::AdamW { weight_decay: 0.0 },
        ),
        _ => (DataKind::Images, digit_names(), Optimizer::default()),
    };
    let verification = args
        .verify
        .map(|replay_fraction| VerificationRule { replay_fraction });
    if let Some(rule) = &verification {
        rule.validate()?;
        if !community {
            bail!(
                "--verify replays workers' training on a public corpus: it needs --mode community"
            );
        }
        if !model.is_native() {
            bail!(
                "--verify needs a model whose kernels are all Harambee's own, so that training replays bit for bit: logreg, 2nn or cnn, not {model} (which trains on burn, whose kernels the CPU picks at run time)"
            );
        }
        if !args.replay_data.is_dir() {
            bail!(
                "--replay-data {}: no such folder; the coordinator replays workers' training on its own copy of the public corpus",
                args.replay_data.display()
            );
        }
    }
    let default_lr = match model {
        ModelKind::CharTransformer(_) | ModelKind::Pretrained => 3e-3,
        _ => 0.05,
    };
    let listen = resolve_port(args.listen)?;
    let http = if args.no_dashboard {
        None
    } else {
        Some(resolve_port(args.http.unwrap_or_else(|| {
            // Loopback by default, whatever --listen exposes: the dashboard is plain HTTP.
            let port = if args.listen.port() == 0 {
                0
            } else {
                listen.port().saturating_add(1)
            };
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), port)
        }))?)
    };
    let mut server_names = vec!["localhost".to_string(), listen.ip().to_string()];
    server_names.extend(args.server_name.iter().cloned());
    server_names.dedup();
    let privacy: harambee_sim::PrivacySettings =
        args.privacy.as_deref().unwrap_or("none").parse()?;
    let strategy_name =
        args.strategy
            .as_deref()
            .unwrap_or(if community { "diloco" } else { "fedavg" });
    let mut strategy = strategy_name.parse::<StrategyConfig>()?;
    if community && !matches!(strategy, StrategyConfig::DiLoCo { .. }) {
        bail!(
            "community mode combines workers with DiLoCo: use --strategy diloco[:H[:OUTER_LR[:MOMENTUM]]], not {strategy}"
        );
    }
    if let Some(placement) = privacy.noise {
        match &mut strategy {
            StrategyConfig::DpFedAvg { noise, .. } => *noise = placement,
            other => bail!("--privacy {placement:?} noise needs a dp-fedavg strategy, not {other}"),
        }
    }
    Ok(FederationConfig {
        name: args.name.clone(),
        federation_id: String::new(),
        listen,
        http,
        http_allowed_hosts: Vec::new(),
        public_url: args
            .public_url
            .clone()
            .unwrap_or_else(|| format!("https://{listen}")),
        server_names,
        invite_token_sha256: String::new(),
        per_member_invites: args.per_member_invites,
        model: ModelTask {
            model,
            data,
            classes,
            embedding_dim: 64,
            optimizer,
            reproducible: verification.is_some(),
        },
        pretrained,
        initial_weights,
        rounds: RoundSettings {
            rounds: args.rounds,
            min_participants: args.min_participants,
            quorum: args.quorum,
            deadline_s: args.deadline_s,
            max_retries: 3,
            pause_when_quorum_missed: true,
            seed: args.seed,
        },
        training: TrainingSettings {
            strategy,
            fraction: args.fraction,
            epochs: args.epochs,
            batch_size: args.batch,
            learning_rate: args.lr.unwrap_or(default_lr),
            secure_aggregation: privacy.secure_aggregation,
            secagg_range: args.secagg_range,
            update_encoding: args.update_encoding.parse()?,
            download_encoding: args.download_encoding.parse()?,
            buffered: args.fedbuff.as_deref().map(str::parse).transpose()?,
            replay_data: verification
                .is_some()
                .then(|| std::path::absolute(&args.replay_data))
                .transpose()?,
            verification,
        },
        limits: Limits {
            max_samples: args.max_samples.unwrap_or(Limits::default().max_samples),
            ..Limits::default()
        },
    })
}

/// The pretrained base at `dir` and its LoRA settings (FFA-LoRA's shared `A` from the
/// federation's seed).
fn pretrained_task(args: &InitArgs, dir: &Path) -> Result<harambee_llm::PretrainedTask> {
    let checkpoint = harambee_llm::Checkpoint::open(dir)?;
    let name = match &args.base_name {
        Some(name) => name.clone(),
        None => dir.file_name().map_or_else(
            || dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        ),
    };
    let lora = args.lora.settings(args.seed)?;
    Ok(harambee_llm::PretrainedTask::new(
        &checkpoint,
        &name,
        lora,
        args.lora.context,
    )?)
}

/// The file of `--model safetensors:FILE`.
fn custom_weights_path(model: &str) -> Option<PathBuf> {
    model.strip_prefix("safetensors:").map(PathBuf::from)
}

/// The name a custom model's initial weights take in the federation's folder.
const INITIAL_WEIGHTS_FILE: &str = "initial.safetensors";

/// A custom model's initial weights: read and checked now (f32 tensors, finite values), so a
/// bad file is refused at `init`, not at the first round.
fn custom_weights(path: &Path) -> Result<InitialWeights> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let params = ParamSet::from_safetensors(&bytes)
        .with_context(|| format!("{}: not a safetensors file of f32 tensors", path.display()))?;
    if params.is_empty() {
        bail!("{}: holds no parameters", path.display());
    }
    params
        .check_finite()
        .with_context(|| format!("{}: the initial weights must be finite", path.display()))?;
    Ok(InitialWeights {
        file: INITIAL_WEIGHTS_FILE.into(),
        sha256: hex::encode(Sha256::digest(&bytes)),
    })
}

/// Port 0 means "any free port": pick it now, so it is the same after every restart.
fn resolve_port(listen: SocketAddr) -> Result<SocketAddr> {
    if listen.port() != 0 {
        return Ok(listen);
    }
    let probe = TcpListener::bind(listen).with_context(|| format!("binding {listen}"))?;
    Ok(probe.local_addr()?)
}

/// The charter `harambee init` writes: the settings' limits as its rules, the named
/// stewards, the licences.
pub(crate) fn charter_from(args: &InitArgs, config: &FederationConfig) -> Result<Charter> {
    let strategy = config.training.strategy.to_string();
    let members = args
        .steward
        .iter()
        .enumerate()
        .map(|(i, key)| Member {
            name: format!("steward {i}"),
            public_key: key.trim().to_string(),
            role: Role::Steward,
        })
        .collect();
    let charter = Charter {
        name: config.name.clone(),
        task: match (&config.pretrained, config.model.data) {
            (None, DataKind::Own) => format!(
                "a custom model trained by its members' own code, from initial weights with SHA-256 {}",
                config
                    .initial_weights
                    .as_ref()
                    .map_or("(none)", |w| w.sha256.as_str())
            ),
            (Some(p), _) => format!(
                "LoRA fine-tuning (rank {}, {}) of {}",
                p.lora.rank, p.lora.variant, p.base_name
            ),
            (None, DataKind::Text) => {
                format!("{} character-level language model", config.model.model)
            }
            _ => format!(
                "{} over {} classes",
                config.model.model,
                config.model.classes.len()
            ),
        },
        data_licence: args.data_licence.clone(),
        model_licence: args.model_licence.clone(),
        enrolment: if args.members_only {
            Enrolment::Members
        } else {
            Enrolment::Invite
        },
        strategies: vec![strategy.split('(').next().unwrap_or(&strategy).to_string()],
        min_quorum: config.rounds.quorum,
        max_deadline_s: config.rounds.deadline_s,
        max_rounds: config.rounds.rounds,
        amendment_threshold: args.amendment_threshold,
        privacy: args
            .privacy_epsilon
            .zip(args.privacy_delta)
            .map(|(epsilon, delta)| PrivacyBudget { epsilon, delta }),
        secure_aggregation: config
            .training
            .secure_aggregation
            .then(|| SecureAggregationRule {
                min_survivors: args
                    .secagg_min_survivors
                    .unwrap_or(config.rounds.quorum)
                    .max(2),
            }),
        members,
        mode: if args.mode == "community" {
            Mode::Community
        } else {
            Mode::Federated
        },
        max_samples: args.max_samples,
        update_encoding: (!config.training.update_encoding.is_exact())
            .then(|| config.training.update_encoding.to_string()),
        base_model: config.pretrained.as_ref().map(|p| BaseModel {
            name: p.base_name.clone(),
            sha256: p.base_sha256.clone(),
            licence: args.base_licence.clone(),
        }),
        buffered: config.training.buffered,
        download_encoding: (!config.training.download_encoding.is_exact())
            .then(|| config.training.download_encoding.to_string()),
        verification: config.training.verification,
    };
    charter.validate()?;
    Ok(charter)
}

pub(crate) fn init(args: InitArgs) -> Result<()> {
    let config = config_from(&args)?;
    let charter = charter_from(&args, &config)?;
    let folder = FederationFolder::new(&args.dir);
    if let (Some(weights), Some(source)) =
        (&config.initial_weights, custom_weights_path(&args.model))
    {
        place_initial_weights(&folder, weights, &source)?;
    }
    let invite = folder.init(config, &charter)?;
    println!(
        "Created federation {} in {}",
        invite.federation_id,
        args.dir.display()
    );
    println!("  coordinator: {}", invite.coordinator);
    if let Some(http) = folder.config()?.http {
        println!("  dashboard:   http://{http}/ (also /api and /metrics)");
    }
    println!("  run it:      harambee serve {}", args.dir.display());
    println!(
        "  invite:      {} (give it to participants; it admits whoever holds it)",
        folder.invite_path().display()
    );
    println!(
        "  join:        harambee join --invite {} --key KEY --data DIR",
        folder.invite_path().display()
    );
    Ok(())
}

/// Copies the initial weights into a new federation's folder, checking they are the file
/// that was read (and never overwriting a federation's).
fn place_initial_weights(
    folder: &FederationFolder,
    weights: &InitialWeights,
    source: &Path,
) -> Result<()> {
    if folder.config_path().exists() {
        bail!(
            "{} already holds a federation; choose an empty folder",
            folder.root().display()
        );
    }
    let bytes = std::fs::read(source).with_context(|| format!("reading {}", source.display()))?;
    if hex::encode(Sha256::digest(&bytes)) != weights.sha256 {
        bail!("{} changed while it was being read", source.display());
    }
    std::fs::create_dir_all(folder.root())?;
    let target = folder.root().join(&weights.file);
    std::fs::write(&target, &bytes).with_context(|| format!("writing {}", target.display()))?;
    Ok(())
}

pub(crate) fn serve(args: ServeArgs) -> Result<()> {
    let folder = FederationFolder::new(&args.dir);
    let options = ServeOptions {
        insecure: args.insecure,
        linger: Duration::from_secs_f64(args.linger_s.max(0.0)),
        listen: None,
        http: args.http,
        stay: args.stay,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let outcome = runtime.block_on(harambee_server::serve_with(&folder, options, |ready| {
        let scheme = if args.insecure { "http" } else { "https" };
        println!("coordinator listening on {scheme}://{}", ready.grpc);
        if let Some(http) = ready.dashboard {
            println!("dashboard: http://{http}/ (JSON API at /api, Prometheus at /metrics)");
        }
    }))?;
    match outcome {
        ServeOutcome::Finished => {
            println!(
                "federation finished; model: {}",
                folder.model_path().display()
            );
            Ok(())
        }
        ServeOutcome::Interrupted => {
            println!("stopped; `harambee serve {}` resumes", args.dir.display());
            Ok(())
        }
        ServeOutcome::Failed(e) => bail!("the federation failed: {e}"),
    }
}

/// `harambee invite`: one member's single-use invite, its token's hash recorded in the
/// federation's state (SQLite allows this beside a running coordinator, which reads it at the
/// member's enrolment).
pub(crate) fn invite(args: InviteArgs) -> Result<()> {
    let folder = FederationFolder::new(&args.dir);
    folder.config()?;
    if args.out.exists() {
        bail!("{} exists; choose another --out", args.out.display());
    }
    let mut invite = Invite::load(&folder.invite_path())?;
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    invite.token = hex::encode(secret);
    let state = SqliteState::open(&folder.state_path())?;
    let issued_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    state.issue_invite(
        &hex::encode(Sha256::digest(invite.token.as_bytes())),
        &args.name,
        issued_ms,
    )?;
    invite.save(&args.out)?;
    println!(
        "single-use invite for {} written to {} (owner-only; it admits the first key that enrols with it)",
        args.name,
        args.out.display()
    );
    Ok(())
}

pub(crate) fn join(args: JoinArgs) -> Result<()> {
    let invite = Invite::load(&args.invite)?;
    let identity = Identity::load(&args.key)?;
    let state_path = args
        .state
        .clone()
        .unwrap_or_else(|| state_beside(&args.key));
    let options = JoinOptions {
        invite,
        coordinator: args.coordinator.clone(),
        identity,
        training: Training::BuiltIn {
            data: args.data.clone(),
            model_dir: args.model_dir.clone(),
            device: args.device.clone(),
        },
        name: args.name.clone(),
        state_path,
        insecure: args.insecure,
        give_up_after: Duration::from_secs_f64(args.give_up_after_s.max(1.0)),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(harambee_participant::join(options))?;
    println!(
        "participant {}: {} updates acknowledged, {} refused; the federation says: {}",
        report.participant_id,
        report.acknowledged.len(),
        report.refused.len(),
        report.finish_message
    );
    Ok(())
}

fn state_beside(key: &Path) -> PathBuf {
    let mut name = key.file_name().unwrap_or_default().to_os_string();
    name.push(".state.json");
    key.with_file_name(name)
}
