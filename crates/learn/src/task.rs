//! What a networked federation trains, described without any data: the coordinator builds the
//! model from it (it holds no examples), and each participant loads its own examples under
//! the federation's labels.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::udhr::{TextFeatures, load_corpus};
use crate::{
    Dataset, Features, LearnError, ModelKind, Optimizer, Split, Trainer, load_idx_dir, trainer_for,
};

/// The kinds of data a federation can train on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataKind {
    /// UDHR-style text: a folder with `index.tsv` and `declaration/CODE.html`.
    Udhr,
    /// 28×28 grey-scale images in IDX files (MNIST, Fashion-MNIST).
    Images,
    /// Plain text, a folder of `*.txt` files, for the character-level language model: the
    /// corpus community mode shards among its workers ([`crate::shakespeare`]'s alphabet).
    Text,
    /// Whatever the members' own training code reads (a custom model's data): Harambee never
    /// loads it.
    Own,
}

/// The model and label set every participant of a federation shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelTask {
    /// The model.
    pub model: ModelKind,
    /// The kind of data.
    pub data: DataKind,
    /// Class names in label order (language codes, digits).
    pub classes: Vec<String>,
    /// Embedding width (text models).
    pub embedding_dim: usize,
    /// The local optimiser.
    pub optimizer: Optimizer,
    /// Verifiable training: fixed-order numerics that replay bit for bit on any machine
    /// ([`NativeTrainer::reproducible`](crate::NativeTrainer::reproducible)), only for the
    /// models whose every kernel is Harambee's own.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reproducible: bool,
}

impl ModelTask {
    /// A data set with the task's shape and labels and no examples: enough to build the
    /// model, which is all a coordinator needs.
    pub fn blank_dataset(&self) -> Dataset {
        let features = match self.data {
            DataKind::Udhr => Features::Tokens {
                vocab: TextFeatures::default().buckets,
                offsets: vec![0],
                ids: Vec::new(),
            },
            DataKind::Text => Features::Tokens {
                vocab: crate::shakespeare::alphabet().len(),
                offsets: vec![0],
                ids: Vec::new(),
            },
            DataKind::Images => Features::Pixels {
                height: 28,
                width: 28,
                values: Vec::new(),
            },
            // Never trained here: the trainer for a custom model is refused before any data.
            DataKind::Own => Features::Dense {
                dim: 0,
                values: Vec::new(),
            },
        };
        Dataset {
            features,
            labels: Vec::new(),
            class_names: self.classes.clone(),
        }
    }

    /// The trainer for this task.
    pub fn trainer(&self) -> Result<Box<dyn Trainer>, LearnError> {
        if self.reproducible {
            if !self.model.is_native() {
                return Err(LearnError::InvalidSetting(format!(
                    "verifiable training replays every product bit for bit, so it needs a model whose kernels are all Harambee's own (logreg, 2nn, cnn); {} trains on burn, whose kernels are picked at run time by the CPU",
                    self.model
                )));
            }
            let data = self.blank_dataset();
            let trainer = crate::NativeTrainer::new(self.model, &data, self.optimizer)?;
            return Ok(Box::new(
                trainer.reproducible(Some(crate::Kernel::from_env()?)),
            ));
        }
        trainer_for(
            self.model,
            &self.blank_dataset(),
            self.optimizer,
            self.embedding_dim,
            false,
        )
    }

    /// A participant's own data at `dir`, labelled by the task's classes. Text: every fifth
    /// sentence of each language is held out for evaluation. Images: the IDX train and test
    /// files as they are. Plain text: chunks of the model's context, every tenth held out.
    pub fn load_local(&self, dir: &Path) -> Result<Split, LearnError> {
        match self.data {
            DataKind::Own => Err(LearnError::InvalidSetting(
                "this federation's data is read by the members' own training code (see docs/python.md)"
                    .into(),
            )),
            DataKind::Images => load_idx_dir(dir, self.classes.clone()),
            DataKind::Text => {
                let ModelKind::CharTransformer(shape) = self.model else {
                    return Err(LearnError::InvalidSetting(format!(
                        "plain text trains the char-transformer, not {}",
                        self.model
                    )));
                };
                crate::shakespeare::load_text_dir(dir, shape.context)
            }
            DataKind::Udhr => {
                let mut corpus = load_corpus(dir, None)?;
                let labels =
                    corpus
                        .languages
                        .iter()
                        .map(|l| {
                            self.classes.iter().position(|c| *c == l.code).ok_or_else(|| {
                            LearnError::InvalidSetting(format!(
                                "{}: language {:?} is not one of the federation's {} classes",
                                dir.display(),
                                l.code,
                                self.classes.len()
                            ))
                        })
                        })
                        .collect::<Result<Vec<usize>, _>>()?;
                for (label, _) in &mut corpus.sentences {
                    *label = labels[*label];
                }
                let split = corpus.split_with_classes(&TextFeatures::default(), 5, &self.classes);
                Ok(Split {
                    train: Arc::new(split.0),
                    test: Arc::new(split.1),
                })
            }
        }
    }
}

/// A distinct, reproducible seed per (federation or run, round, participant): local shuffling
/// depends on it, so the same seed trains the same update wherever it runs.
pub fn participant_seed(seed: u64, round: u64, participant: u64) -> u64 {
    let mut z = seed ^ round.rotate_left(21) ^ participant.rotate_left(42) ^ 0x5851_F42D_4C95_7F2D;
    z = (z ^ (z >> 33)).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    z ^ (z >> 33)
}

/// The seed a networked member trains one task with: [`participant_seed`] of the federation's
/// seed, with the task's attempt mixed in (a buffered federation may give one member two
/// pieces of work from one version, which must not be the same training twice). The
/// coordinator derives it too, to replay a worker's round.
pub fn task_seed(federation_seed: u64, round: u64, participant: u64, attempt: u32) -> u64 {
    participant_seed(federation_seed, round, participant) ^ u64::from(attempt).rotate_left(7)
}
