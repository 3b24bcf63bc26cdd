//! `harambee ledger verify --replay-training`: every worker's recorded update replayed from
//! the recipe it signed, on the public corpus, and every fraud entry's evidence checked the
//! same way (docs/verification.md).

use std::path::Path;

use anyhow::{Context, Result, bail};
use harambee_identity::TrainingRecipe;
use harambee_ledger::Entry;
use harambee_server::Replayer;

use crate::ledger::{Kept, KeptModels, Opened, Verification, open};

/// What replaying the workers' training found.
#[derive(Debug, Default)]
pub(crate) struct TrainingReplay {
    /// Recorded updates that replayed bit for bit.
    pub(crate) matched: u64,
    /// Recorded updates with a recipe.
    pub(crate) recorded: u64,
    /// Updates not replayed, and why (their base model is no longer kept).
    pub(crate) not_replayed: Vec<String>,
    /// Fraud entries the replay confirms: (round, participant, claimed, replayed).
    pub(crate) frauds: Vec<(u64, u64, String, String)>,
}

impl TrainingReplay {
    pub(crate) fn print(&self) {
        println!(
            "training replayed from the workers' signed recipes, matching bit for bit: {} of {}",
            self.matched, self.recorded
        );
        for why in &self.not_replayed {
            println!("  not replayed: {why}");
        }
        for (round, participant, claimed, replayed) in &self.frauds {
            println!(
                "fraud confirmed: round {round}, participant {participant} sent {claimed}, but its signed recipe gives {replayed}"
            );
        }
    }
}

/// Replays every update and fraud entry of the federation at `dir` on the corpus at `data`
/// (default: the federation's `training.replay_data`); what does not replay is a problem.
pub(crate) fn check(dir: &Path, data: Option<&Path>, v: &mut Verification) -> Result<()> {
    let Opened {
        folder,
        state,
        entries,
        ..
    } = open(dir)?;
    let config = folder.config()?;
    if config.training.verification.is_none() {
        bail!(
            "{} does not run verifiable training (its charter sets no verification): its workers' training cannot be replayed",
            dir.display()
        );
    }
    let Some(data) = data.or(config.training.replay_data.as_deref()) else {
        bail!("--replay-training needs the public corpus: pass --data DIR");
    };
    let replayer = Replayer::new(&config.model, data)
        .with_context(|| format!("loading the public corpus at {}", data.display()))?;
    let mut models = KeptModels::open(&folder, &state, &config)?;
    let mut t = TrainingReplay::default();
    for entry in entries.iter().filter_map(|e| Entry::parse(e).ok()) {
        match entry {
            Entry::UpdateCommitment {
                round,
                participant,
                update_digest,
                recipe: Some(recipe),
                ..
            } => {
                t.recorded += 1;
                let at = format!("round {round}, participant {participant}");
                match replay(&replayer, &mut models, round, &recipe)? {
                    Err(why) => t.not_replayed.push(format!("{at}: {why}")),
                    Ok(replayed) if replayed == update_digest => t.matched += 1,
                    Ok(replayed) => v.replay_problems.push(format!(
                        "{at}: the recorded update {update_digest} does not replay (its signed recipe gives {replayed}), yet it was aggregated"
                    )),
                }
            }
            Entry::Fraud {
                round,
                participant,
                recipe,
                claimed,
                replayed,
                ..
            } => match replay(&replayer, &mut models, round, &recipe)? {
                Err(why) => t
                    .not_replayed
                    .push(format!("fraud in round {round}, participant {participant}: {why}")),
                Ok(ours) if ours == replayed && ours != claimed => {
                    t.frauds.push((round, participant, claimed, replayed));
                }
                Ok(ours) => v.replay_problems.push(format!(
                    "the fraud entry against participant {participant} in round {round} does not hold: its recipe gives {ours}, the entry says {replayed}, the worker sent {claimed}"
                )),
            },
            _ => {}
        }
    }
    v.training = Some(t);
    Ok(())
}

/// The digest `recipe` gives from round `round`'s base (the model after round `round − 1`),
/// or why it cannot be computed.
fn replay(
    replayer: &Replayer,
    models: &mut KeptModels,
    round: u64,
    recipe: &TrainingRecipe,
) -> Result<std::result::Result<String, String>> {
    let before = round.saturating_sub(1);
    let base = match models.get(before)? {
        Kept::Model(base) => base,
        Kept::Missing => return Ok(Err(format!("the model after round {before} is not kept"))),
        Kept::Corrupt(e) => {
            return Ok(Err(format!(
                "the model after round {before} is corrupt: {e}"
            )));
        }
    };
    Ok(replayer
        .replay(&base, recipe)
        .map(|p| p.digest().to_hex())
        .map_err(|e| e.to_string()))
}
