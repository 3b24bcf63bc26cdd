//! `harambee ledger verify|show|prove`: an auditor's view of a federation folder, offline.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use harambee_identity::PublicKey;
use harambee_ledger::{Audit, Entry, Ledger, TreeHead, Witness, audit, check_witness, merkle};
use harambee_params::{Digest, Encoding};
use harambee_server::FederationFolder;
use harambee_store::{BlobStore, FsBlobStore, SqliteState, StateStore};
use harambee_strategy::{Aggregate, FitResult, ParticipantId, RobustRule, StrategyConfig};
use sha2::{Digest as _, Sha256};

use crate::cli::{LedgerArgs, LedgerCommand};

pub(crate) fn run(args: LedgerArgs) -> Result<()> {
    match args.command {
        LedgerCommand::Verify {
            dir,
            coordinator_key,
            witness,
            replay_training,
            data,
        } => {
            let pinned = coordinator_key
                .map(|k| k.parse::<PublicKey>())
                .transpose()?;
            let mut v = verify_folder(&dir, pinned.as_ref())?;
            check_witnesses(&dir, &witness, &mut v)?;
            if replay_training {
                crate::replay_training::check(&dir, data.as_deref(), &mut v)?;
            }
            v.print();
            if !v.ok() {
                bail!(
                    "the ledger does not verify ({} problems)",
                    v.problems().len()
                );
            }
            Ok(())
        }
        LedgerCommand::Show { dir } => show(&dir),
        LedgerCommand::Prove {
            dir,
            round,
            participant,
        } => prove(&dir, round, &participant),
        LedgerCommand::CheckData {
            dir,
            participant,
            data,
        } => check_data(&dir, participant, &data),
    }
}

/// Recomputes the Merkle root of a member's data set, read as the member's own runtime reads
/// it, and compares it with the root the member committed to in the ledger.
fn check_data(dir: &Path, participant: u64, data: &Path) -> Result<()> {
    let Opened {
        folder, entries, ..
    } = open(dir)?;
    let committed = entries
        .iter()
        .find_map(|e| match Entry::parse(e) {
            Ok(Entry::DataCommitment {
                participant: p,
                data_root,
            }) if p == participant => Some(data_root),
            _ => None,
        })
        .with_context(|| {
            format!("participant {participant} committed to no data in this ledger")
        })?;
    let config = folder.config()?;
    if config.pretrained.is_some() {
        bail!("checking the data of a fine-tuning federation's member is not supported yet");
    }
    let split = config
        .model
        .load_local(data)
        .with_context(|| format!("reading {} as this federation's data", data.display()))?;
    let root = hex::encode(harambee_participant::data_root(&split));
    let examples = split.train.len() + split.test.len();
    if root != committed {
        bail!(
            "{} ({examples} examples) has Merkle root {root}, but participant {participant} committed to {committed}: this is not the data it committed to",
            data.display()
        );
    }
    println!(
        "{} ({examples} examples) is the data participant {participant} committed to (Merkle root {root})",
        data.display()
    );
    Ok(())
}

/// What `ledger verify` found.
pub(crate) struct Verification {
    pub(crate) audit: Audit,
    /// Rounds whose aggregate was recomputed from the kept updates and matched.
    pub(crate) replayed: Vec<u64>,
    /// Rounds not recomputed, and why.
    pub(crate) not_replayed: Vec<(u64, String)>,
    /// Problems found beyond the ledger's own rules (settings, stored updates, aggregates,
    /// witnesses).
    pub(crate) replay_problems: Vec<String>,
    /// Witnessed tree heads and promises that agreed with the ledger, when any were given.
    pub(crate) witnessed: Option<usize>,
    /// Workers' training replayed from their recipes, when asked (`--replay-training`).
    pub(crate) training: Option<crate::replay_training::TrainingReplay>,
}

impl Verification {
    pub(crate) fn ok(&self) -> bool {
        self.audit.findings.is_empty() && self.replay_problems.is_empty()
    }

    pub(crate) fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .audit
            .findings
            .iter()
            .map(|f| {
                let at = f.entry.map(|e| format!("entry {e}: ")).unwrap_or_default();
                format!("{at}{}", f.problem)
            })
            .collect();
        out.extend(self.replay_problems.iter().cloned());
        out
    }

    pub(crate) fn head_line(&self) -> String {
        match &self.audit.head {
            Some(h) => format!("tree head: size {}, root {}", h.size, hex::encode(h.root)),
            None => "no valid tree head".into(),
        }
    }

    pub(crate) fn print(&self) {
        let a = &self.audit;
        println!(
            "ledger: {} entries, {} rounds, {} update signatures verified",
            a.entries,
            a.rounds.len() + a.steps.len(),
            a.signatures_verified
        );
        if let Some(key) = &a.coordinator_key {
            println!("coordinator key: {key} (compare it with the key the federation published)");
        }
        println!("{}", self.head_line());
        println!(
            "rounds recomputed from the kept updates and matching: {} of {}",
            self.replayed.len(),
            a.rounds.len() + a.steps.len()
        );
        for (round, why) in &self.not_replayed {
            println!("  round {round} not recomputed: {why}");
        }
        if let Some(n) = self.witnessed {
            println!("witnessed tree heads and update promises agreeing with this ledger: {n}");
        }
        if let Some(t) = &self.training {
            t.print();
        }
        let problems = self.problems();
        if problems.is_empty() {
            println!("verified: every signature, the tree, every round's inputs and results");
        } else {
            println!("NOT VERIFIED:");
            for p in problems {
                println!("  {p}");
            }
        }
    }
}

/// A federation folder opened for auditing.
pub(crate) struct Opened {
    pub(crate) folder: FederationFolder,
    pub(crate) state: SqliteState,
    pub(crate) entries: Vec<Vec<u8>>,
    pub(crate) heads: Vec<TreeHead>,
}

pub(crate) fn open(dir: &Path) -> Result<Opened> {
    let folder = FederationFolder::new(dir);
    let state = SqliteState::open(&folder.state_path())
        .with_context(|| format!("opening the state of {}", dir.display()))?;
    let (entries, heads) = state.ledger()?;
    let heads = heads
        .into_iter()
        .map(|h| TreeHead {
            size: h.size,
            root: h.root,
            timestamp_ms: h.timestamp_ms,
            signature: h.signature,
        })
        .collect();
    Ok(Opened {
        folder,
        state,
        entries,
        heads,
    })
}

/// Checks the ledger of the federation folder at `dir`, then recomputes every round whose
/// updates are still kept and compares the result with the recorded digest.
pub(crate) fn verify_folder(dir: &Path, pinned: Option<&PublicKey>) -> Result<Verification> {
    let Opened {
        folder,
        state,
        entries,
        heads,
    } = open(dir)?;
    let report = audit(&entries, &heads, pinned);
    let mut v = Verification {
        audit: report,
        replayed: Vec::new(),
        not_replayed: Vec::new(),
        replay_problems: Vec::new(),
        witnessed: None,
        training: None,
    };
    let settings = std::fs::read(folder.config_path())
        .with_context(|| format!("reading {}", folder.config_path().display()))?;
    if let Some((_, recorded)) = &v.audit.genesis
        && hex::encode(Sha256::digest(&settings)) != *recorded
    {
        v.replay_problems
            .push("federation.toml is not the settings the genesis entry recorded".into());
        return Ok(v);
    }
    replay(&folder, &state, &mut v)?;
    check_released_model(&folder, &entries, &mut v);
    Ok(v)
}

/// Checks the ledger against what others kept of it (participants' witness files): every
/// tree head they were shown must be this ledger's root at its size, and every update the
/// coordinator promised to record must be committed in it.
pub(crate) fn check_witnesses(
    dir: &Path,
    files: &[std::path::PathBuf],
    v: &mut Verification,
) -> Result<()> {
    if files.is_empty() {
        return Ok(());
    }
    let Some(key) = v.audit.coordinator_key.as_deref() else {
        v.replay_problems
            .push("witnesses: no coordinator key to check them against".into());
        return Ok(());
    };
    let key: PublicKey = key.parse()?;
    let (entries, _) = open(dir)?.state.ledger()?;
    let ledger = Ledger::from_entries(entries);
    let mut checked = 0;
    for file in files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading witness file {}", file.display()))?;
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let at = format!("witness {} line {}", file.display(), n + 1);
            match Witness::parse_line(line) {
                Ok(w) => match check_witness(&ledger, &w, &key) {
                    Ok(()) => checked += 1,
                    Err(problem) => v.replay_problems.push(format!("{at}: {problem}")),
                },
                Err(e) => v.replay_problems.push(format!("{at}: unreadable: {e}")),
            }
        }
    }
    v.witnessed = Some(checked);
    Ok(())
}

/// The model file in the folder, if there is one, must be the model the ledger released.
fn check_released_model(folder: &FederationFolder, entries: &[Vec<u8>], v: &mut Verification) {
    let released = entries.iter().find_map(|e| match Entry::parse(e) {
        Ok(Entry::Release { model_digest, .. }) => Some(model_digest),
        _ => None,
    });
    let Some(released) = released else { return };
    let Ok(bytes) = std::fs::read(folder.model_path()) else {
        return;
    };
    match harambee_params::ParamSet::from_safetensors(&bytes) {
        Ok(p) if p.digest().to_hex() == released => {}
        Ok(p) => v.replay_problems.push(format!(
            "model.safetensors (digest {}) is not the released model ({released})",
            p.digest()
        )),
        Err(e) => v
            .replay_problems
            .push(format!("model.safetensors does not load: {e}")),
    }
}

/// Whether a round's result depends only on its inputs and base (no state carried between
/// rounds), so that it can be replayed on its own.
fn replayable(strategy: &StrategyConfig) -> bool {
    match strategy {
        StrategyConfig::FedAvg | StrategyConfig::FedProx { .. } => true,
        StrategyConfig::Robust(rule) => !matches!(rule, RobustRule::CenteredClip { .. }),
        _ => false,
    }
}

fn replay(folder: &FederationFolder, state: &SqliteState, v: &mut Verification) -> Result<()> {
    let config = folder.config()?;
    if config.training.buffered.is_some() {
        return replay_steps(folder, state, v);
    }
    let mut models = KeptModels::open(folder, state, &config)?;
    // A strategy that carries state between rounds (server momentum, DiLoCo's outer
    // Nesterov step) is replayed as one object from round 1 on; once a round cannot be
    // replayed, the state every later round starts from is unknown.
    let stateful = !replayable(&config.training.strategy);
    let mut carried: Option<Box<dyn harambee_strategy::Strategy>> = None;
    for round in v.audit.rounds.clone() {
        let r = round.round;
        if config.training.secure_aggregation {
            v.not_replayed.push((
                r,
                "secure aggregation: the coordinator never held the individual updates".into(),
            ));
            continue;
        }
        if let StrategyConfig::DpFedAvg { .. } = config.training.strategy {
            v.not_replayed.push((
                r,
                "dp-fedavg adds noise only the coordinator drew: the inputs are checked, the sum cannot be recomputed".into(),
            ));
            continue;
        }
        let mut strategy = if !stateful || r == 1 {
            config.training.strategy.build(
                config.training.fraction,
                config.rounds.quorum,
                config.fit(),
            )?
        } else if let Some(s) = carried.take() {
            s
        } else {
            v.not_replayed.push((
                r,
                format!(
                    "{} carries state between rounds, and an earlier round was not replayed",
                    config.training.strategy
                ),
            ));
            continue;
        };
        // A round 0 (a malformed ledger, named by the audit) starts from nothing kept.
        let base = match models.get(r.wrapping_sub(1))? {
            Kept::Model(m) => m,
            Kept::Corrupt(e) => {
                v.replay_problems
                    .push(format!("round {r}: the kept starting model: {e}"));
                continue;
            }
            Kept::Missing => {
                v.not_replayed
                    .push((r, "the previous round's model is not kept".into()));
                continue;
            }
        };
        if base.digest().to_hex() != round.base {
            v.replay_problems.push(format!(
                "round {r}: the kept starting model is not the recorded base"
            ));
            continue;
        }
        let kept: BTreeMap<String, Digest> = state
            .updates_of_round(r)?
            .into_iter()
            .map(|u| (u.update_digest.to_hex(), u.blob))
            .collect();
        let mut results = Vec::new();
        let mut missing = false;
        for (participant, digest, samples) in &round.inputs {
            let Some(blob) = kept.get(digest) else {
                missing = true;
                break;
            };
            let params = match models.blob(blob)? {
                Kept::Model(params) => params,
                Kept::Missing => {
                    missing = true;
                    break;
                }
                Kept::Corrupt(e) => {
                    v.replay_problems.push(format!(
                        "round {r}: participant {participant}'s update: {e}"
                    ));
                    missing = true;
                    break;
                }
            };
            if params.digest().to_hex() != *digest {
                v.replay_problems.push(format!("round {r}: the kept update of participant {participant} is not the one it committed to"));
                missing = true;
                break;
            }
            results.push(FitResult {
                participant: ParticipantId(*participant),
                params,
                num_samples: *samples,
                train_loss: 0.0,
            });
        }
        if missing {
            if !v
                .replay_problems
                .iter()
                .any(|p| p.starts_with(&format!("round {r}:")))
            {
                v.not_replayed
                    .push((r, "update blobs deleted by retention".into()));
            }
            continue;
        }
        let download = config.training.download_encoding;
        let output = match strategy.aggregate_fit(r, &base, &results, &[])? {
            Aggregate::Updated(p) => harambee_coordinator::published_step(download, &base, p)?
                .0
                .digest(),
            Aggregate::KeepPrevious { .. } => base.digest(),
        };
        if output.to_hex() == round.output {
            v.replayed.push(r);
            carried = Some(strategy);
        } else {
            v.replay_problems.push(format!(
                "round {r}: recomputing the aggregate gives {output}, but the ledger records {}",
                round.output
            ));
        }
    }
    Ok(())
}

/// What a federation folder kept of a model or an update.
pub(crate) enum Kept<T> {
    Model(T),
    /// Deleted (retention), or never stored.
    Missing,
    /// Stored, but its bytes are not what their digest says.
    Corrupt(String),
}

/// The global models a federation folder keeps, by round or version (0: the initial model),
/// each read and decoded once however many rounds or results start from it.
pub(crate) struct KeptModels {
    layout: harambee_params::Layout,
    globals: BTreeMap<u64, Digest>,
    blobs: FsBlobStore,
    decoded: BTreeMap<u64, std::sync::Arc<harambee_params::ParamSet>>,
}

impl KeptModels {
    pub(crate) fn open(
        folder: &FederationFolder,
        state: &SqliteState,
        config: &harambee_server::FederationConfig,
    ) -> Result<Self> {
        let (layout, initial) = config.initial_model(folder.root())?;
        Ok(Self {
            layout,
            globals: state
                .closed_rounds()?
                .into_iter()
                .map(|r| (r.round, r.global_blob))
                .collect(),
            blobs: FsBlobStore::open(&folder.blobs_path())?,
            decoded: BTreeMap::from([(0, std::sync::Arc::new(initial))]),
        })
    }

    /// The model after round (or version) `n`.
    pub(crate) fn get(
        &mut self,
        n: u64,
    ) -> Result<Kept<std::sync::Arc<harambee_params::ParamSet>>> {
        if let Some(model) = self.decoded.get(&n) {
            return Ok(Kept::Model(std::sync::Arc::clone(model)));
        }
        let Some(blob) = self.globals.get(&n).copied() else {
            return Ok(Kept::Missing);
        };
        let kept = self.blob(&blob)?;
        if let Kept::Model(model) = kept {
            let model = std::sync::Arc::new(model);
            self.decoded.insert(n, std::sync::Arc::clone(&model));
            return Ok(Kept::Model(model));
        }
        Ok(match kept {
            Kept::Corrupt(e) => Kept::Corrupt(e),
            _ => Kept::Missing,
        })
    }

    /// Parameters stored as blob `digest` (an update, a model), decoded.
    fn blob(&self, digest: &Digest) -> Result<Kept<harambee_params::ParamSet>> {
        match self.blobs.get(digest) {
            Ok(bytes) => Ok(Kept::Model(Encoding::F32.decode(&self.layout, &bytes)?)),
            Err(harambee_store::StoreError::Missing(_)) => Ok(Kept::Missing),
            Err(e) => Ok(Kept::Corrupt(e.to_string())),
        }
    }
}

/// Recomputes every buffered (FedBuff) version whose updates are kept: each input's change
/// from the version it trained from, weighted by the staleness recorded (and checked against
/// the versions by the audit), applied to the previous version in the recorded order, with
/// the charter's server learning rate; the result must have the recorded digest.
fn replay_steps(
    folder: &FederationFolder,
    state: &SqliteState,
    v: &mut Verification,
) -> Result<()> {
    let config = folder.config()?;
    let Some(rule) = config.training.buffered else {
        return Ok(());
    };
    if let StrategyConfig::DpFedAvg { .. } = config.training.strategy {
        for step in &v.audit.steps {
            v.not_replayed.push((
                step.version,
                "dp-fedavg adds noise only the coordinator drew: the inputs are checked, the step cannot be recomputed".into(),
            ));
        }
        return Ok(());
    }
    let mut models = KeptModels::open(folder, state, &config)?;
    for step in v.audit.steps.clone() {
        let n = step.version;
        // A version 0 (a malformed ledger, named by the audit) starts from nothing kept.
        let base = match models.get(n.wrapping_sub(1))? {
            Kept::Model(m) => m,
            Kept::Corrupt(e) => {
                v.replay_problems
                    .push(format!("version {n}: the kept previous version: {e}"));
                continue;
            }
            Kept::Missing => {
                v.not_replayed
                    .push((n, "the previous version is not kept".into()));
                continue;
            }
        };
        if base.digest().to_hex() != step.base {
            v.replay_problems.push(format!(
                "version {n}: the kept previous version is not the recorded base"
            ));
            continue;
        }
        let mut changes = Vec::with_capacity(step.inputs.len());
        for (participant, base_version, staleness, digest) in &step.inputs {
            let kept = state
                .updates_of_round(base_version.saturating_add(1))?
                .into_iter()
                .find(|u| u.participant == *participant && u.update_digest.to_hex() == *digest);
            let trained = match kept.map(|u| models.blob(&u.blob)).transpose()? {
                Some(Kept::Model(trained)) => trained,
                Some(Kept::Corrupt(e)) => {
                    v.replay_problems.push(format!(
                        "version {n}: participant {participant}'s update: {e}"
                    ));
                    break;
                }
                _ => break,
            };
            if trained.digest().to_hex() != *digest {
                v.replay_problems.push(format!("version {n}: the kept update of participant {participant} is not the one it signed"));
                break;
            }
            let Kept::Model(from) = models.get(*base_version)? else {
                break;
            };
            changes.push(harambee_coordinator::weighted_change(
                &trained, &from, *staleness,
            )?);
        }
        if changes.len() < step.inputs.len() {
            v.not_replayed.push((
                n,
                "an update or the version it trained from is not kept".into(),
            ));
            continue;
        }
        let next = harambee_coordinator::apply_buffer(&base, &changes, rule.server_lr)?;
        let download = config.training.download_encoding;
        let output = harambee_coordinator::published_step(download, &base, next)?
            .0
            .digest();
        if output.to_hex() == step.output {
            v.replayed.push(n);
        } else {
            v.replay_problems.push(format!(
                "version {n}: recomputing the buffered step gives {output}, but the ledger records {}",
                step.output
            ));
        }
    }
    Ok(())
}

fn show(dir: &Path) -> Result<()> {
    use std::io::Write;
    let Opened { entries, heads, .. } = open(dir)?;
    let mut out = std::io::stdout().lock();
    for (i, bytes) in entries.iter().enumerate() {
        let line = match Entry::parse(bytes) {
            Ok(Entry::Genesis {
                federation_id,
                name,
                coordinator_key,
                ..
            }) => {
                format!(
                    "genesis: federation {federation_id} ({name}), coordinator key {coordinator_key}"
                )
            }
            Ok(Entry::Enrolment {
                participant,
                public_key,
                name,
            }) => format!("enrolment: participant {participant} {name:?} key {public_key}"),
            Ok(Entry::RoundOpen {
                round,
                attempt,
                selected,
                base,
                local_steps,
                ..
            }) => {
                let steps = if local_steps > 0 {
                    format!(", {local_steps} inner steps each")
                } else {
                    String::new()
                };
                format!(
                    "round {round} opened (attempt {attempt}): {} selected, base {}{steps}",
                    selected.len(),
                    short(&base)
                )
            }
            Ok(Entry::UpdateCommitment {
                round,
                participant,
                update_digest,
                num_samples,
                ..
            }) => {
                format!(
                    "round {round}: participant {participant} committed {} ({num_samples} examples)",
                    short(&update_digest)
                )
            }
            Ok(Entry::RoundResult {
                round,
                strategy,
                inputs,
                output,
                ..
            }) => {
                format!(
                    "round {round} result: {strategy} over {} updates -> {}",
                    inputs.len(),
                    short(&output)
                )
            }
            Ok(Entry::DataCommitment {
                participant,
                data_root,
            }) => format!(
                "participant {participant} committed to its local data: Merkle root {}",
                short(&data_root)
            ),
            Ok(Entry::Fraud {
                round,
                participant,
                recipe,
                claimed,
                replayed,
                ..
            }) => format!(
                "round {round}: FRAUD by participant {participant}: its update {} is not what its signed recipe (shard {} of {}, {} steps) gives, {}; removed",
                short(&claimed),
                recipe.shard_index,
                recipe.shard_count,
                recipe.local_steps,
                short(&replayed)
            ),
            Ok(Entry::BufferedStep {
                version,
                base,
                inputs,
                output,
                ..
            }) => {
                let from: Vec<String> = inputs
                    .iter()
                    .map(|i| format!("p{} (staleness {})", i.participant, i.staleness))
                    .collect();
                format!(
                    "version {version}: {} -> {} from {}",
                    short(&base),
                    short(&output),
                    from.join(", ")
                )
            }
            Ok(Entry::Release {
                rounds,
                model_digest,
            }) => format!("release after {rounds} rounds: model {model_digest}"),
            Ok(Entry::Amendment {
                amends,
                signatures,
                charter,
            }) => format!(
                "amendment: charter {}… replaced by {}…, signed by {} stewards",
                short(&amends),
                short(&hex::encode(Sha256::digest(charter.as_bytes()))),
                signatures.len()
            ),
            Err(e) => format!("unreadable entry: {e}"),
        };
        if writeln!(out, "{i:>5}  {line}").is_err() {
            // The reader went away (`| head`): not an error.
            return Ok(());
        }
    }
    if let Some(h) = heads.last() {
        let _ = writeln!(
            out,
            "tree head: size {}, root {}, signed at {} ms",
            h.size,
            hex::encode(h.root),
            h.timestamp_ms
        );
    }
    Ok(())
}

fn prove(dir: &Path, round: u64, participant: &str) -> Result<()> {
    let Opened { entries, heads, .. } = open(dir)?;
    let head = heads.last().context("the ledger has no signed tree head")?;
    let parsed: Vec<Option<Entry>> = entries.iter().map(|e| Entry::parse(e).ok()).collect();
    let id = parsed
        .iter()
        .find_map(|e| match e {
            Some(Entry::Enrolment {
                participant: id,
                public_key,
                ..
            }) if public_key == participant => Some(*id),
            _ => None,
        })
        .with_context(|| format!("no participant with key {participant} in the ledger"))?;
    let index = parsed
        .iter()
        .position(|e| matches!(e, Some(Entry::UpdateCommitment { round: r, participant: p, .. }) if *r == round && *p == id))
        .with_context(|| format!("participant {id} committed no update in round {round}"))?;
    let ledger = Ledger::from_entries(entries.clone());
    let proof = ledger.inclusion_proof(index as u64, head.size);
    let leaf = merkle::leaf_hash(&entries[index]);
    let ok = merkle::verify_inclusion(&leaf, index as u64, head.size, &proof, &head.root);
    let out = serde_json::json!({
        "entry": String::from_utf8_lossy(&entries[index]),
        "index": index,
        "tree_size": head.size,
        "root": hex::encode(head.root),
        "leaf_hash": hex::encode(leaf),
        "audit_path": proof.iter().map(hex::encode).collect::<Vec<_>>(),
        "tree_head_signature": hex::encode(&head.signature),
        "tree_head_timestamp_ms": head.timestamp_ms,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    if !ok {
        bail!("the inclusion proof does not verify against the latest tree head");
    }
    eprintln!(
        "verified: entry {index} is in the tree of size {} with that root (RFC 6962 audit path)",
        head.size
    );
    Ok(())
}

/// The first 16 characters of a hex string from a ledger, for display; a shorter or odd
/// string (a ledger can hold anything) is shown whole.
pub(crate) fn short(s: &str) -> &str {
    s.get(..16).unwrap_or(s)
}
