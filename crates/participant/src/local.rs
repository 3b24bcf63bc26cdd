//! What trains on the member's machine: Harambee's own trainer for the federation's model,
//! or the member's own code (the Python package's `fit` and `evaluate`). The runtime around
//! it (keys, TLS, the protocol, retries, secure aggregation, resumption) is the same.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use harambee_learn::{Evaluation, InnerState, ModelKind, ModelTask, Split, Trainer};
use harambee_params::ParamSet;
use harambee_strategy::FitConfig;

use crate::ParticipantError;

/// What one round asks of the local trainer.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundSpec {
    /// The round being trained.
    pub round: u64,
    /// Epochs or steps, batch size, learning rate, proximal weight.
    pub fit: FitConfig,
    /// The seed for this member's shuffling in this round (same on a retry, so a retrained
    /// update is the same update).
    pub seed: u64,
    /// In community mode: this worker's shard (index, count) of the shared corpus.
    pub shard: Option<(u32, u32)>,
}

/// A round's local result.
#[derive(Debug, Clone, PartialEq)]
pub struct Fitted {
    /// The trained parameters, in the federation's layout.
    pub params: ParamSet,
    /// The examples trained on: the update's weight in FedAvg.
    pub num_samples: u64,
    /// The mean training loss, as the trainer reports it (NaN when it reports none).
    pub train_loss: f32,
}

/// Trains and evaluates the federation's model on this member's data.
///
/// Calls come from a blocking thread, one at a time; the runtime checks what `fit` returns
/// (layout, finite values) before anything is signed or sent.
pub trait LocalTrainer: Send + Sync {
    /// Trains from the round's global parameters (handed over: an implementation may train
    /// in place without a copy).
    fn fit(&self, global: ParamSet, round: &RoundSpec) -> Result<Fitted, ParticipantError>;

    /// How the global parameters do on this member's held-out data; `None` when it holds
    /// none (nothing is reported then).
    fn evaluate(
        &self,
        global: ParamSet,
        round: &RoundSpec,
    ) -> Result<Option<Evaluation>, ParticipantError>;

    /// The Merkle root of the member's local data ([`data_root`](crate::data_root)), which
    /// the member commits to once it is loaded; `None` when the trainer reads data the
    /// runtime does not see (a member's own code).
    fn data_root(&self) -> Option<[u8; 32]> {
        None
    }
}

/// Where a participant's training comes from.
#[derive(Clone)]
pub enum Training {
    /// Harambee's built-in trainer for the federation's model.
    BuiltIn {
        /// The member's own data.
        data: PathBuf,
        /// For a federation fine-tuning a pretrained model: this member's copy of the base.
        model_dir: Option<PathBuf>,
        /// Where a pretrained model trains (`cpu`, or `cuda[:N]` in a CUDA build).
        device: String,
    },
    /// The member's own code.
    Own(Arc<dyn LocalTrainer>),
}

impl std::fmt::Debug for Training {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Training::BuiltIn { data, .. } => write!(f, "BuiltIn({})", data.display()),
            Training::Own(_) => f.write_str("Own"),
        }
    }
}

/// Harambee's own trainer on data loaded from disk.
pub(crate) struct BuiltIn {
    trainer: Arc<dyn Trainer>,
    split: Split,
    /// The local optimiser's state between rounds (stateless optimisers keep none).
    inner: Mutex<Option<InnerState>>,
}

impl BuiltIn {
    /// Builds the trainer the coordinator's model needs and loads the member's data.
    pub(crate) fn prepare(
        task: &ModelTask,
        pretrained: &str,
        data: &std::path::Path,
        model_dir: Option<&std::path::Path>,
        device: &str,
    ) -> Result<Self, ParticipantError> {
        let (trainer, split) = if task.model == ModelKind::Pretrained {
            crate::pretrained::prepare(pretrained, model_dir, device, task.optimizer, data)?
        } else if task.model == ModelKind::Custom {
            return Err(ParticipantError::Model(
                "this federation trains a model of its own (started from a safetensors file), which Harambee's built-in trainers do not know: join it with your own training code (see docs/python.md)".into(),
            ));
        } else {
            let trainer: Arc<dyn Trainer> = task.trainer()?.into();
            (trainer, task.load_local(data)?)
        };
        tracing::info!(
            train = split.train.len(),
            test = split.test.len(),
            "local data loaded"
        );
        if task.reproducible {
            let kernel = harambee_learn::Kernel::from_env()?.name();
            tracing::info!(
                kernel,
                "training reproducibly: this federation replays its workers' training"
            );
        }
        Ok(Self {
            trainer,
            split,
            inner: Mutex::default(),
        })
    }

    pub(crate) fn layout(&self) -> &harambee_params::Layout {
        self.trainer.layout()
    }
}

impl LocalTrainer for BuiltIn {
    fn fit(&self, global: ParamSet, round: &RoundSpec) -> Result<Fitted, ParticipantError> {
        let examples = harambee_learn::shard(self.split.train.len(), round.shard)?;
        if let Some((index, count)) = round.shard {
            tracing::info!(
                round = round.round,
                shard = index,
                of = count,
                chunks = examples.len(),
                steps = round.fit.local_steps,
                "training on a shard"
            );
        }
        // The inner optimiser's moments carry over from round to round (DiLoCo's workers
        // keep their AdamW state); a fresh process starts them anew.
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let outcome = self.trainer.train_resuming(
            &global,
            &self.split.train,
            &examples,
            &round.fit,
            round.seed,
            &mut inner,
        )?;
        Ok(Fitted {
            params: outcome.params,
            num_samples: outcome.num_samples,
            train_loss: outcome.mean_loss,
        })
    }

    fn data_root(&self) -> Option<[u8; 32]> {
        Some(crate::data_root(&self.split))
    }

    /// In community mode every worker holds the same held-out chunks, so each evaluates only
    /// its shard of them: the coordinator's weighted mean is then the loss on all of them,
    /// computed once.
    fn evaluate(
        &self,
        global: ParamSet,
        round: &RoundSpec,
    ) -> Result<Option<Evaluation>, ParticipantError> {
        if self.split.test.is_empty() {
            return Ok(None);
        }
        let held_out = harambee_learn::shard(self.split.test.len(), round.shard)?;
        Ok(Some(self.trainer.evaluate(
            &global,
            &self.split.test,
            &held_out,
        )?))
    }
}
