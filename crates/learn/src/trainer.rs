//! Local training and evaluation, behind the [`Trainer`] trait.

use burn::nn::loss::CrossEntropyLoss;
use burn::optim::{AdamWConfig, GradientsParams, SgdConfig, momentum::MomentumConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};
use harambee_params::{Layout, ParamSet};
use harambee_strategy::FitConfig;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

use crate::burn_io::{ProximalTerm, export, import, layout_of};
use crate::model::{Cnn, Input, LangId, Mlp, ModelKind, Net};
use crate::{Dataset, Features, LearnError};

/// Examples per forward pass during evaluation: large batches amortise per-call overhead.
const EVAL_BATCH: usize = 1000;

/// The local optimiser.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Optimizer {
    /// Stochastic gradient descent, with heavy-ball momentum when `momentum > 0`.
    Sgd {
        /// Momentum (0 for plain SGD, as in McMahan et al.).
        momentum: f32,
    },
    /// AdamW (Loshchilov and Hutter 2019).
    AdamW {
        /// Decoupled weight decay.
        weight_decay: f32,
    },
}

impl Default for Optimizer {
    fn default() -> Self {
        Optimizer::Sgd { momentum: 0.0 }
    }
}

/// A participant's local optimiser state between rounds: AdamW's moments (or SGD's momentum)
/// over the flat parameter vector, and the step count for AdamW's bias correction.
#[derive(Debug, Clone, PartialEq)]
pub struct InnerState {
    m: Vec<f32>,
    v: Vec<f32>,
    t: u64,
}

impl InnerState {
    /// A fresh state for `n` parameters.
    pub fn new(n: usize) -> Self {
        Self {
            m: vec![0.0; n],
            v: vec![0.0; n],
            t: 0,
        }
    }

    /// Parameters the state is sized for.
    pub fn len(&self) -> usize {
        self.m.len()
    }

    /// True for a state of no parameters.
    pub fn is_empty(&self) -> bool {
        self.m.is_empty()
    }

    /// Optimiser steps taken so far.
    pub fn steps(&self) -> u64 {
        self.t
    }

    /// One step of `optimizer` on `params` with gradient `grad`. AdamW as in Loshchilov and
    /// Hutter (β₁ 0.9, β₂ 0.999, ε 1e-8, decay `lr · λ · w`, PyTorch's defaults).
    pub fn step(&mut self, optimizer: Optimizer, params: &mut [f32], grad: &[f32], lr: f32) {
        self.t += 1;
        match optimizer {
            Optimizer::Sgd { momentum } => {
                for ((w, m), g) in params.iter_mut().zip(&mut self.m).zip(grad) {
                    *m = momentum * *m + g;
                    *w -= lr * *m;
                }
            }
            Optimizer::AdamW { weight_decay } => {
                let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
                let t = self.t.min(i32::MAX as u64) as i32;
                let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
                let values = params.iter_mut().zip(&mut self.m).zip(&mut self.v);
                for (((w, m), v), &g) in values.zip(grad) {
                    *m = b1 * *m + (1.0 - b1) * g;
                    *v = b2 * *v + (1.0 - b2) * g * g;
                    *w -= lr * (weight_decay * *w + (*m / c1) / ((*v / c2).sqrt() + eps));
                }
            }
        }
    }
}

/// Epochs to run: `epochs`, or as many as `local_steps` steps need when a step count is set.
pub(crate) fn epochs_to_run(config: &FitConfig, examples: usize, batch: usize) -> u32 {
    if config.local_steps == 0 {
        return config.epochs.max(1);
    }
    let per_epoch = examples.div_ceil(batch.max(1)).max(1) as u32;
    config.local_steps.div_ceil(per_epoch)
}

/// What local training produced.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// The trained parameters.
    pub params: ParamSet,
    /// Examples trained on (per epoch).
    pub num_samples: u64,
    /// Mean loss over the last epoch.
    pub mean_loss: f32,
    /// Optimiser steps taken.
    pub steps: u64,
}

/// Accuracy and loss on a data set, overall and per class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Mean cross-entropy.
    pub loss: f64,
    /// Fraction classified correctly.
    pub accuracy: f64,
    /// Examples evaluated.
    pub examples: usize,
    /// Per class: (correct, total).
    pub per_class: Vec<(usize, usize)>,
}

/// Trains and evaluates one model architecture. Parameters go in and out as [`ParamSet`]s in
/// PyTorch's conventions; no other type of the ML library crosses this boundary.
pub trait Trainer: Send + Sync {
    /// The model's tensor names and shapes.
    fn layout(&self) -> &Layout;

    /// Fresh parameters, deterministically from `seed`.
    fn init(&self, seed: u64) -> ParamSet;

    /// Trains from `global` on the examples `indices` of `data`, as `config` says.
    fn train(
        &self,
        global: &ParamSet,
        data: &Dataset,
        indices: &[usize],
        config: &FitConfig,
        seed: u64,
    ) -> Result<TrainOutcome, LearnError>;

    /// As [`train`](Self::train), with the local optimiser continuing from `state` (what this
    /// participant's previous call left there; `None` the first time) and leaving its new state
    /// there. A DiLoCo worker keeps its inner AdamW moments across outer rounds this way.
    /// Trainers whose optimiser starts afresh each round keep the default, which ignores it.
    fn train_resuming(
        &self,
        global: &ParamSet,
        data: &Dataset,
        indices: &[usize],
        config: &FitConfig,
        seed: u64,
        state: &mut Option<InnerState>,
    ) -> Result<TrainOutcome, LearnError> {
        let _ = state;
        self.train(global, data, indices, config, seed)
    }

    /// Evaluates `params` on the examples `indices` of `data`.
    fn evaluate(
        &self,
        params: &ParamSet,
        data: &Dataset,
        indices: &[usize],
    ) -> Result<Evaluation, LearnError>;

    /// Evaluates `params` on every example of `data`.
    fn evaluate_all(&self, params: &ParamSet, data: &Dataset) -> Result<Evaluation, LearnError> {
        let all: Vec<usize> = (0..data.len()).collect();
        self.evaluate(params, data, &all)
    }
}

/// The architecture with the sizes it was built for.
#[derive(Debug, Clone, PartialEq)]
enum Arch {
    Mlp(Vec<usize>),
    Cnn {
        image: (usize, usize),
        classes: usize,
    },
    LangId {
        vocab: usize,
        dim: usize,
        classes: usize,
    },
}

/// A [`Trainer`] on burn's pure-Rust CPU back-end (`flex`).
#[derive(Debug, Clone)]
pub struct BurnTrainer {
    kind: ModelKind,
    arch: Arch,
    optimizer: Optimizer,
    layout: Layout,
    device: Device,
}

/// Calls `$body` with `$net` bound to a freshly built module of the trainer's architecture.
macro_rules! with_net {
    ($self:expr, $device:expr, |$net:ident| $body:expr) => {
        match &$self.arch {
            Arch::Mlp(sizes) => {
                let $net = with_burn_rng(|| Mlp::new(sizes, $device));
                $body
            }
            Arch::Cnn { image, classes } => {
                let $net = with_burn_rng(|| Cnn::new(*image, *classes, $device));
                $body
            }
            Arch::LangId {
                vocab,
                dim,
                classes,
            } => {
                let $net = with_burn_rng(|| LangId::new(*vocab, *dim, *classes, $device));
                $body
            }
        }
    };
}

impl BurnTrainer {
    /// A trainer for `kind` sized for `data` (input size, image shape, vocabulary, classes).
    /// `embedding_dim` sizes the language-identification model's vectors.
    pub fn new(
        kind: ModelKind,
        data: &Dataset,
        optimizer: Optimizer,
        embedding_dim: usize,
    ) -> Result<Self, LearnError> {
        let classes = data.num_classes();
        let incompatible = || LearnError::Incompatible {
            model: kind.name(),
            data: data.kind(),
        };
        let arch = match (kind, data.input_dim(), data.image_shape(), &data.features) {
            (ModelKind::LogReg, Some(dim), _, _) => Arch::Mlp(vec![dim, classes]),
            (ModelKind::Mlp2nn, Some(dim), _, _) => Arch::Mlp(vec![dim, 200, 200, classes]),
            (ModelKind::Cnn, _, Some(image), _) => Arch::Cnn { image, classes },
            (ModelKind::LangId, _, _, Features::Tokens { vocab, .. }) => Arch::LangId {
                vocab: *vocab,
                dim: embedding_dim,
                classes,
            },
            _ => return Err(incompatible()),
        };
        let device = Device::flex();
        let mut trainer = Self {
            kind,
            arch,
            optimizer,
            layout: Layout::new::<String>([]).map_err(LearnError::Params)?,
            device,
        };
        trainer.layout =
            with_burn_rng(|| with_net!(trainer, &trainer.device, |net| layout_of(&net)));
        Ok(trainer)
    }

    /// The model trained.
    pub fn kind(&self) -> ModelKind {
        self.kind
    }

    fn train_net<N: Net>(
        &self,
        net: N,
        global: &ParamSet,
        data: &Dataset,
        indices: &[usize],
        config: &FitConfig,
        seed: u64,
    ) -> Result<TrainOutcome, LearnError> {
        let device = self.device.clone().autodiff();
        // Importing may draw the lazily initialised weights it then overwrites.
        let mut model = with_burn_rng(|| import(net, global));
        let mut optim = match self.optimizer {
            Optimizer::Sgd { momentum } if momentum > 0.0 => SgdConfig::new()
                .with_momentum(Some(
                    MomentumConfig::new().with_momentum(f64::from(momentum)),
                ))
                .init(),
            Optimizer::Sgd { .. } => SgdConfig::new().init(),
            Optimizer::AdamW { weight_decay } => {
                AdamWConfig::new().with_weight_decay(weight_decay).init()
            }
        };
        let proximal =
            (config.proximal_mu > 0.0).then(|| ProximalTerm::new(&model, config.proximal_mu));
        let loss_fn = CrossEntropyLoss::new(None, &device);
        let batch_size = match config.batch_size as usize {
            0 => indices.len().max(1),
            b => b,
        };
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut order = indices.to_vec();
        let (mut steps, mut mean_loss) = (0u64, 0.0f32);
        for _ in 0..epochs_to_run(config, order.len(), batch_size) {
            order.shuffle(&mut rng);
            let mut epoch_loss: Option<Tensor<1>> = None;
            let mut seen = 0usize;
            for chunk in order.chunks(batch_size) {
                if config.local_steps > 0 && steps == u64::from(config.local_steps) {
                    break;
                }
                seen += chunk.len();
                let (input, targets) = batch(data, chunk, &device);
                let loss = loss_fn.forward(model.forward(input), targets);
                let detached = loss.clone().detach().inner() * chunk.len() as f32;
                // The proximal term shapes the gradient but is not part of the reported loss.
                let loss = match proximal.as_ref().and_then(|p| p.penalty(&model)) {
                    Some(penalty) => loss + penalty,
                    None => loss,
                };
                epoch_loss = Some(match epoch_loss {
                    Some(sum) => sum + detached,
                    None => detached,
                });
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                model = optim.step(f64::from(config.learning_rate), model, grads);
                steps += 1;
            }
            let total = epoch_loss.map_or(0.0, |t| t.into_scalar::<f32>());
            mean_loss = total / seen.max(1) as f32;
            if !mean_loss.is_finite() {
                return Err(LearnError::Diverged(mean_loss));
            }
        }
        Ok(TrainOutcome {
            params: export(&model.valid(), &self.layout),
            num_samples: indices.len() as u64,
            mean_loss,
            steps,
        })
    }

    fn evaluate_net<N: Net>(
        &self,
        net: N,
        params: &ParamSet,
        data: &Dataset,
        indices: &[usize],
    ) -> Evaluation {
        let model = with_burn_rng(|| import(net, params));
        let loss_fn = CrossEntropyLoss::new(None, &self.device);
        let mut per_class = vec![(0usize, 0usize); data.num_classes()];
        let (mut loss_sum, mut correct) = (0f64, 0usize);
        for chunk in indices.chunks(EVAL_BATCH) {
            let (input, targets) = batch(data, chunk, &self.device);
            let logits = model.forward(input);
            let loss = loss_fn
                .forward(logits.clone(), targets)
                .into_scalar::<f32>();
            loss_sum += f64::from(loss) * chunk.len() as f64;
            let predicted = logits.argmax(1).into_data();
            for (&i, p) in chunk.iter().zip(predicted.iter::<i64>()) {
                let label = data.labels[i] as usize;
                per_class[label].1 += 1;
                if p as usize == label {
                    per_class[label].0 += 1;
                    correct += 1;
                }
            }
        }
        let n = indices.len().max(1);
        Evaluation {
            loss: loss_sum / n as f64,
            accuracy: correct as f64 / n as f64,
            examples: indices.len(),
            per_class,
        }
    }
}

impl Trainer for BurnTrainer {
    fn layout(&self) -> &Layout {
        &self.layout
    }

    fn init(&self, seed: u64) -> ParamSet {
        // Seed and draw without another thread's draws in between.
        with_burn_rng(|| {
            self.device.seed(seed);
            with_net!(self, &self.device, |net| export(&net, &self.layout))
        })
    }

    fn train(
        &self,
        global: &ParamSet,
        data: &Dataset,
        indices: &[usize],
        config: &FitConfig,
        seed: u64,
    ) -> Result<TrainOutcome, LearnError> {
        check_training_input(&self.layout, global, indices)?;
        let device = self.device.clone().autodiff();
        with_net!(self, &device, |net| self
            .train_net(net, global, data, indices, config, seed))
    }

    fn evaluate(
        &self,
        params: &ParamSet,
        data: &Dataset,
        indices: &[usize],
    ) -> Result<Evaluation, LearnError> {
        check_layout(&self.layout, params)?;
        Ok(with_net!(self, &self.device, |net| self
            .evaluate_net(net, params, data, indices)))
    }
}

/// Refuses parameters whose names or shapes are not the model's.
pub(crate) fn check_layout(layout: &Layout, params: &ParamSet) -> Result<(), LearnError> {
    if params.layout() == layout {
        Ok(())
    } else {
        Err(LearnError::Params(
            harambee_params::ParamsError::LayoutMismatch,
        ))
    }
}

/// Runs `f` alone with burn's random generator. It is process-wide, so building a model (which
/// draws initial weights) must not interleave with another thread's seeding and drawing, or
/// the same seed would give another model.
///
/// `init` holds the lock across seeding and drawing; everything else that may draw takes it
/// just for that moment. A thread that holds it passes straight through, so `init` can build
/// a model while holding it.
pub(crate) fn with_burn_rng<T>(f: impl FnOnce() -> T) -> T {
    use std::cell::Cell;
    static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());
    thread_local!(static HOLDING: Cell<bool> = const { Cell::new(false) });
    /// Clears the per-thread mark however `f` ends, panics included.
    struct Held;
    impl Drop for Held {
        fn drop(&mut self) {
            HOLDING.set(false);
        }
    }
    if HOLDING.get() {
        return f();
    }
    let _lock = RNG
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    HOLDING.set(true);
    let _held = Held;
    f()
}

/// What every trainer checks before training: the model's layout, and some data.
pub(crate) fn check_training_input(
    layout: &Layout,
    global: &ParamSet,
    indices: &[usize],
) -> Result<(), LearnError> {
    check_layout(layout, global)?;
    if indices.is_empty() {
        return Err(LearnError::InvalidSetting(
            "no local examples to train on".into(),
        ));
    }
    Ok(())
}

/// Builds one batch on `device`: the inputs and the target classes.
fn batch(data: &Dataset, indices: &[usize], device: &Device) -> (Input, Tensor<1, Int>) {
    let n = indices.len();
    let labels: Vec<i64> = indices.iter().map(|&i| i64::from(data.labels[i])).collect();
    let targets = Tensor::<1, Int>::from_data(TensorData::new(labels, [n]), device);
    let input = match &data.features {
        Features::Dense { .. } | Features::Pixels { .. } => {
            let mut values = Vec::with_capacity(n * data.input_dim().unwrap_or(0));
            for &i in indices {
                data.push_row(i, &mut values);
            }
            match data.image_shape() {
                Some((h, w)) => Input::Image(Tensor::from_data(
                    TensorData::new(values, [n, 1, h, w]),
                    device,
                )),
                None => {
                    let dim = data.input_dim().unwrap_or(0);
                    Input::Dense(Tensor::from_data(TensorData::new(values, [n, dim]), device))
                }
            }
        }
        Features::Tokens { .. } => {
            let len = indices
                .iter()
                .map(|&i| data.tokens(i).len())
                .max()
                .unwrap_or(0)
                .max(1);
            let mut ids = vec![0i64; n * len];
            let mut mask = vec![0f32; n * len];
            for (row, &i) in indices.iter().enumerate() {
                for (k, &t) in data.tokens(i).iter().enumerate() {
                    // Shift by one: id 0 is padding.
                    ids[row * len + k] = i64::from(t) + 1;
                    mask[row * len + k] = 1.0;
                }
            }
            Input::Tokens {
                ids: Tensor::from_data(TensorData::new(ids, [n, len]), device),
                mask: Tensor::from_data(TensorData::new(mask, [n, len, 1]), device),
            }
        }
    };
    (input, targets)
}
