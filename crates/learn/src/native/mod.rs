//! Hand-written training for the 2NN and the CNN: the measured hot path.
//!
//! A profile of burn's flex back-end on these models shows its per-operation overhead at
//! batch 10 (2NN) and its generic convolution (CNN) dominating the step. Here both models
//! are written as a few large matrix products on the `gemm` crate, forward and backward by
//! hand, on the same parameter layout as the burn models (the tests check that one step of
//! each engine gives the same parameters). Parameters and gradients stay in flat buffers, so
//! the optimiser is one pass and nothing is allocated per step once the scratch is warm.

mod cnn;
pub(crate) mod fixed;
mod gemm;
mod layers;
mod mlp;

use harambee_params::{Layout, ParamSet};
use harambee_strategy::FitConfig;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha20Rng;
use rayon::prelude::*;

use crate::trainer::{
    Evaluation, Optimizer, TrainOutcome, Trainer, check_layout, check_training_input,
};
use crate::{BurnTrainer, Dataset, LearnError, ModelKind};

/// Examples per forward pass when evaluating; batches run in parallel.
const EVAL_BATCH: usize = 250;

/// A model written by hand: forward and backward over one batch.
trait Net: Send + Sync {
    type Scratch: Default + Send;

    fn classes(&self) -> usize;

    /// Logits `[batch, classes]`.
    fn forward(&self, params: &[f32], x: &[f32], batch: usize, s: &mut Self::Scratch) -> Vec<f32>;

    /// Writes the gradient of the batch's mean loss into `grad` (every entry, so it needs no
    /// zeroing); returns the summed loss.
    fn loss_and_grad(
        &self,
        params: &[f32],
        x: &[f32],
        labels: &[u32],
        grad: &mut [f32],
        s: &mut Self::Scratch,
    ) -> f32;
}

enum Arch {
    Mlp(mlp::Mlp),
    Cnn(cnn::Cnn),
}

/// The hand-written [`Trainer`] for logistic regression, the 2NN and the CNN. Initial
/// parameters come from the burn model, so both engines start from the same point.
pub struct NativeTrainer {
    arch: Arch,
    optimizer: Optimizer,
    reference: BurnTrainer,
    /// Reproducible training's kernel; `None` trains on the faster `gemm` kernels.
    kernel: Option<fixed::Kernel>,
}

impl NativeTrainer {
    /// A trainer for `kind` (logreg, 2nn or cnn) sized for `data`.
    pub fn new(kind: ModelKind, data: &Dataset, optimizer: Optimizer) -> Result<Self, LearnError> {
        let reference = BurnTrainer::new(kind, data, optimizer, 0)?;
        let layout = reference.layout();
        let arch = match (kind, data.image_shape()) {
            (ModelKind::LogReg | ModelKind::Mlp2nn, _) => Arch::Mlp(mlp::Mlp::new(layout)),
            (ModelKind::Cnn, Some(image)) => Arch::Cnn(cnn::Cnn::new(layout, image)),
            _ => {
                return Err(LearnError::Incompatible {
                    model: kind.name(),
                    data: data.kind(),
                });
            }
        };
        Ok(Self {
            arch,
            optimizer,
            reference,
            kernel: None,
        })
    }

    /// The same trainer training reproducibly on `kernel` (`None`: fast again). Every
    /// product then sums in a fixed order and the loss uses the portable `libm`, so one
    /// training run gives the same bits on any x86-64 machine, thread count and kernel;
    /// the optimiser already starts afresh each call. About 2–4× slower than `gemm` (see
    /// docs/verification.md).
    pub fn reproducible(mut self, kernel: Option<fixed::Kernel>) -> Self {
        self.kernel = kernel;
        self
    }
}

impl Trainer for NativeTrainer {
    fn layout(&self) -> &Layout {
        self.reference.layout()
    }

    fn init(&self, seed: u64) -> ParamSet {
        self.reference.init(seed)
    }

    fn train(
        &self,
        global: &ParamSet,
        data: &Dataset,
        indices: &[usize],
        config: &FitConfig,
        seed: u64,
    ) -> Result<TrainOutcome, LearnError> {
        check_training_input(self.layout(), global, indices)?;
        fixed::with_kernel(self.kernel, || match &self.arch {
            Arch::Mlp(net) => train(net, self.optimizer, global, data, indices, config, seed),
            Arch::Cnn(net) => train(net, self.optimizer, global, data, indices, config, seed),
        })
    }

    fn evaluate(
        &self,
        params: &ParamSet,
        data: &Dataset,
        indices: &[usize],
    ) -> Result<Evaluation, LearnError> {
        check_layout(self.layout(), params)?;
        Ok(match &self.arch {
            Arch::Mlp(net) => evaluate(net, params, data, indices),
            Arch::Cnn(net) => evaluate(net, params, data, indices),
        })
    }
}

fn gather(data: &Dataset, indices: &[usize], x: &mut Vec<f32>, labels: &mut Vec<u32>) {
    x.clear();
    labels.clear();
    for &i in indices {
        data.push_row(i, x);
        labels.push(data.labels[i]);
    }
}

fn train<N: Net>(
    net: &N,
    optimizer: Optimizer,
    global: &ParamSet,
    data: &Dataset,
    indices: &[usize],
    config: &FitConfig,
    seed: u64,
) -> Result<TrainOutcome, LearnError> {
    let mut params = global.values().to_vec();
    let mut grad = vec![0.0f32; params.len()];
    let mut state = OptimizerState::new(optimizer, params.len());
    let mut scratch = N::Scratch::default();
    let (mut x, mut labels) = (Vec::new(), Vec::new());
    let batch = match config.batch_size as usize {
        0 => indices.len(),
        b => b,
    };
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut order = indices.to_vec();
    let (mut steps, mut mean_loss) = (0u64, 0.0f32);
    for _ in 0..crate::trainer::epochs_to_run(config, order.len(), batch) {
        order.shuffle(&mut rng);
        let mut epoch_loss = 0.0f32;
        let mut seen = 0usize;
        for chunk in order.chunks(batch) {
            if config.local_steps > 0 && steps == u64::from(config.local_steps) {
                break;
            }
            seen += chunk.len();
            gather(data, chunk, &mut x, &mut labels);
            epoch_loss += net.loss_and_grad(&params, &x, &labels, &mut grad, &mut scratch);
            if config.proximal_mu > 0.0 {
                // FedProx: the gradient of μ/2‖w − w_global‖².
                for ((g, w), w0) in grad.iter_mut().zip(&params).zip(global.values()) {
                    *g += config.proximal_mu * (w - w0);
                }
            }
            state.step(&mut params, &grad, config.learning_rate);
            steps += 1;
        }
        mean_loss = epoch_loss / seen.max(1) as f32;
        if !mean_loss.is_finite() {
            return Err(LearnError::Diverged(mean_loss));
        }
    }
    Ok(TrainOutcome {
        params: ParamSet::from_values(global.layout().clone(), params)?,
        num_samples: indices.len() as u64,
        mean_loss,
        steps,
    })
}

fn evaluate<N: Net>(net: &N, params: &ParamSet, data: &Dataset, indices: &[usize]) -> Evaluation {
    let classes = net.classes();
    let partial: Vec<(f64, Vec<(usize, usize)>)> = indices
        .par_chunks(EVAL_BATCH)
        .map_init(
            || (N::Scratch::default(), Vec::new(), Vec::new()),
            |(scratch, x, labels), chunk| {
                gather(data, chunk, x, labels);
                let logits = net.forward(params.values(), x, chunk.len(), scratch);
                let mut per_class = vec![(0, 0); classes];
                let loss = layers::score(&logits, labels, classes, &mut per_class);
                (loss, per_class)
            },
        )
        .collect();
    let mut per_class = vec![(0usize, 0usize); classes];
    let mut loss = 0.0;
    for (l, pc) in partial {
        loss += l;
        per_class.iter_mut().zip(pc).for_each(|(a, b)| {
            a.0 += b.0;
            a.1 += b.1;
        });
    }
    let correct: usize = per_class.iter().map(|c| c.0).sum();
    let n = indices.len().max(1) as f64;
    Evaluation {
        loss: loss / n,
        accuracy: correct as f64 / n,
        examples: indices.len(),
        per_class,
    }
}

/// Optimiser state over flat buffers.
enum OptimizerState {
    Sgd {
        momentum: f32,
        velocity: Vec<f32>,
    },
    AdamW {
        weight_decay: f32,
        m: Vec<f32>,
        v: Vec<f32>,
        t: i32,
    },
}

impl OptimizerState {
    fn new(optimizer: Optimizer, len: usize) -> Self {
        match optimizer {
            Optimizer::Sgd { momentum } => OptimizerState::Sgd {
                momentum,
                velocity: if momentum > 0.0 {
                    vec![0.0; len]
                } else {
                    Vec::new()
                },
            },
            Optimizer::AdamW { weight_decay } => OptimizerState::AdamW {
                weight_decay,
                m: vec![0.0; len],
                v: vec![0.0; len],
                t: 0,
            },
        }
    }

    fn step(&mut self, params: &mut [f32], grad: &[f32], lr: f32) {
        match self {
            OptimizerState::Sgd { momentum, velocity } if velocity.is_empty() => {
                let _ = momentum;
                params.iter_mut().zip(grad).for_each(|(w, g)| *w -= lr * g);
            }
            OptimizerState::Sgd { momentum, velocity } => {
                for ((w, g), v) in params.iter_mut().zip(grad).zip(velocity.iter_mut()) {
                    *v = *momentum * *v + g;
                    *w -= lr * *v;
                }
            }
            OptimizerState::AdamW {
                weight_decay,
                m,
                v,
                t,
            } => {
                let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-5f32);
                *t += 1;
                let (c1, c2) = (1.0 - b1.powi(*t), 1.0 - b2.powi(*t));
                for (((w, g), m), v) in params
                    .iter_mut()
                    .zip(grad)
                    .zip(m.iter_mut())
                    .zip(v.iter_mut())
                {
                    *w -= lr * *weight_decay * *w;
                    *m = b1 * *m + (1.0 - b1) * g;
                    *v = b2 * *v + (1.0 - b2) * g * g;
                    *w -= lr * (*m / c1) / ((*v / c2).sqrt() + eps);
                }
            }
        }
    }
}

/// The fastest trainer for `kind`: hand-written for logreg, the 2NN and the CNN, burn for
/// the rest; `force_burn` picks burn everywhere (to cross-check the two).
pub fn trainer_for(
    kind: ModelKind,
    data: &Dataset,
    optimizer: Optimizer,
    embedding_dim: usize,
    force_burn: bool,
) -> Result<Box<dyn Trainer>, LearnError> {
    Ok(match kind {
        kind if kind.is_native() && !force_burn => {
            Box::new(NativeTrainer::new(kind, data, optimizer)?)
        }
        ModelKind::CharTransformer(shape) => {
            Box::new(crate::CharLmTrainer::new(shape, data, optimizer)?)
        }
        ModelKind::Pretrained => {
            return Err(LearnError::InvalidSetting(
                "a pretrained model's trainer comes from harambee-llm (--model hf:DIR --lora RANK)"
                    .into(),
            ));
        }
        ModelKind::Custom => {
            return Err(LearnError::InvalidSetting(
                "a custom model (from a safetensors file) is trained by the members' own code, not by Harambee (see docs/python.md)"
                    .into(),
            ));
        }
        _ => Box::new(BurnTrainer::new(kind, data, optimizer, embedding_dim)?),
    })
}
