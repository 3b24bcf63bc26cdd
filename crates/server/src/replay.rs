//! Replaying a worker's training, for verifiable training (docs/verification.md): the recipe
//! it signed, from the base it signed, on the public corpus, in reproducible numerics. The
//! coordinator's spot checks and `harambee ledger verify --replay-training` both go through
//! [`Replayer::replay`], so they cannot disagree about what a recipe gives.

use std::path::Path;
use std::sync::Arc;

use harambee_identity::TrainingRecipe;
use harambee_learn::{Dataset, LearnError, ModelTask, Trainer, shard};
use harambee_params::ParamSet;
use harambee_strategy::FitConfig;

/// A reproducible trainer and the public corpus it replays on.
pub struct Replayer {
    trainer: Box<dyn Trainer>,
    corpus: Arc<Dataset>,
    /// The corpus's data root, as a worker holding the same files commits to it.
    corpus_root: [u8; 32],
}

impl Replayer {
    /// The federation's model in reproducible numerics (on the kernel `HARAMBEE_KERNEL`
    /// names, else the widest this CPU runs: all give the same bits), and the training part
    /// of the public corpus at `dir`, read as the workers read it.
    pub fn new(task: &ModelTask, dir: &Path) -> Result<Self, LearnError> {
        let task = ModelTask {
            reproducible: true,
            ..task.clone()
        };
        let trainer = task.trainer()?;
        let split = task.load_local(dir)?;
        let corpus_root = harambee_ledger::merkle::set_root(split.tagged_examples());
        Ok(Self {
            trainer,
            corpus: split.train,
            corpus_root,
        })
    }

    /// The Merkle root of the corpus (training and held-out examples), which every worker
    /// holding the same files commits to when it joins.
    pub fn corpus_root(&self) -> [u8; 32] {
        self.corpus_root
    }

    /// What `recipe` gives from `base`.
    pub fn replay(&self, base: &ParamSet, recipe: &TrainingRecipe) -> Result<ParamSet, LearnError> {
        let indices = shard(
            self.corpus.len(),
            Some((recipe.shard_index, recipe.shard_count)),
        )?;
        let config = FitConfig {
            epochs: recipe.epochs,
            batch_size: recipe.batch_size,
            learning_rate: recipe.learning_rate,
            proximal_mu: recipe.proximal_mu,
            local_steps: recipe.local_steps,
        };
        let outcome = self
            .trainer
            .train(base, &self.corpus, &indices, &config, recipe.seed)?;
        Ok(outcome.params)
    }
}

/// The recipe of a synchronous round's task: the worker's shard is its rank among the
/// `selected` (both sides sort by id), its seed the one every member derives.
pub(crate) fn recipe_for(
    federation_seed: u64,
    round: u64,
    attempt: u32,
    selected: &std::collections::BTreeSet<u64>,
    config: &FitConfig,
    participant: u64,
) -> Option<TrainingRecipe> {
    let rank = selected.iter().position(|&p| p == participant)?;
    Some(TrainingRecipe {
        shard_index: rank as u32,
        shard_count: selected.len() as u32,
        seed: harambee_learn::task_seed(federation_seed, round, participant, attempt),
        epochs: config.epochs,
        local_steps: config.local_steps,
        batch_size: config.batch_size,
        learning_rate: config.learning_rate,
        proximal_mu: config.proximal_mu,
    })
}
