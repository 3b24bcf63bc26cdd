//! Models, local training and data for Harambee.
//!
//! - [`Trainer`]: the one trait the rest of the system trains through. Parameters go in and
//!   out as [`harambee_params::ParamSet`]s in PyTorch's conventions; [`BurnTrainer`] implements
//!   it on burn's pure-Rust CPU back-end, and no burn type leaves this crate.
//! - Models ([`ModelKind`]): logistic regression, McMahan et al.'s 2NN and CNN, and a
//!   fastText-style language identifier over hashed character n-grams, and a small causal
//!   transformer over characters ([`CharLmTrainer`], shaped by [`TransformerShape`]) whose
//!   AdamW state can carry over between rounds ([`InnerState`]), as DiLoCo's workers need.
//! - Data: [`Dataset`] (dense vectors, images or token lists, with labels), the IDX loader for
//!   MNIST and Fashion-MNIST ([`load_idx_dir`]), the UDHR corpus loader ([`udhr`]), plain text as chunks
//!   of characters ([`shakespeare`]), the declarations as byte-level text labelled by language
//!   ([`multilingual`]), and
//!   [`Partition`]ers: IID, Dirichlet(α), McMahan's shards, and natural (few classes each).
//! - [`ModelTask`]: a networked federation's model and labels without data, from which the
//!   coordinator builds the model and each participant labels its own examples.
//!
//! ```no_run
//! use harambee_learn::{BurnTrainer, ModelKind, Optimizer, Partition, Trainer, digit_names, load_idx_dir};
//! use harambee_strategy::FitConfig;
//!
//! let split = load_idx_dir("data/mnist".as_ref(), digit_names()).unwrap();
//! let trainer = BurnTrainer::new(ModelKind::Mlp2nn, &split.train, Optimizer::default(), 0).unwrap();
//! let parts = Partition::Iid.split(&split.train, 10, 42).unwrap();
//! let global = trainer.init(42);
//! let out = trainer.train(&global, &split.train, &parts[0], &FitConfig::default(), 1).unwrap();
//! let eval = trainer.evaluate_all(&out.params, &split.test).unwrap();
//! println!("accuracy {:.3}", eval.accuracy);
//! ```

mod burn_io;
mod charlm;
mod data;
mod error;
mod idx;
mod model;
pub mod multilingual;
mod native;
mod partition;
pub mod shakespeare;
mod task;
pub(crate) mod trainer;
pub mod udhr;

pub use charlm::{CharLmTrainer, TransformerShape};
pub use data::{Dataset, Features, Split, TokenSet};
pub use error::LearnError;
pub use idx::{digit_names, fashion_names, load_idx_dir, parse_images, parse_labels};
pub use model::ModelKind;
pub use native::fixed::Kernel;
pub use native::{NativeTrainer, trainer_for};
pub use partition::{Partition, shard};
pub use task::{DataKind, ModelTask, participant_seed, task_seed};
pub use trainer::{BurnTrainer, Evaluation, InnerState, Optimizer, TrainOutcome, Trainer};
