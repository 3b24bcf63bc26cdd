//! A small causal transformer over characters, and its trainer.
//!
//! Examples are chunks of `context + 1` character ids ([`crate::shakespeare`] makes them): the
//! model reads the first `context` and predicts each next one. The inner optimiser is written
//! here over flat buffers, not taken from burn, so that its moments can outlive one call to
//! [`Trainer::train_resuming`]: a DiLoCo worker keeps its AdamW state from one outer round to
//! the next, as in Douillard et al. 2023.

use std::fmt;
use std::str::FromStr;

use burn::module::Module;
use burn::nn::attention::generate_autoregressive_mask;
use burn::nn::loss::CrossEntropyLoss;
use burn::nn::transformer::{
    TransformerEncoder, TransformerEncoderConfig, TransformerEncoderInput,
};
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};
use harambee_params::{Layout, ParamSet};
use harambee_strategy::FitConfig;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

use crate::burn_io::{export, export_grads, import, layout_of};
use crate::trainer::{
    Evaluation, InnerState, Optimizer, TrainOutcome, Trainer, check_layout, check_training_input,
    with_burn_rng,
};
use crate::{Dataset, Features, LearnError};

/// Chunks per forward pass when evaluating.
const EVAL_BATCH: usize = 64;

/// The sizes of a [`ModelKind::CharTransformer`](crate::ModelKind::CharTransformer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransformerShape {
    /// Transformer blocks.
    pub layers: usize,
    /// Model width (d_model); the feed-forward layer is four times wider.
    pub width: usize,
    /// Attention heads; must divide `width`.
    pub heads: usize,
    /// Characters the model sees at once (and the training chunk length minus one).
    pub context: usize,
}

impl Default for TransformerShape {
    /// Tiny on purpose: 2 layers, width 64, 4 heads, context 64 (about 105k parameters), so a
    /// comparison of several runs fits minutes on two CPU cores.
    fn default() -> Self {
        Self {
            layers: 2,
            width: 64,
            heads: 4,
            context: 64,
        }
    }
}

impl fmt::Display for TransformerShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self;
        write!(f, "{}:{}:{}:{}", s.layers, s.width, s.heads, s.context)
    }
}

impl FromStr for TransformerShape {
    type Err = LearnError;

    /// `LAYERS:WIDTH:HEADS:CONTEXT`, e.g. `2:64:4:64`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            LearnError::InvalidSetting(format!(
                "transformer shape {s:?}: expected LAYERS:WIDTH:HEADS:CONTEXT (positive, heads dividing width), e.g. 2:64:4:64"
            ))
        };
        let n: Vec<usize> = s
            .split(':')
            .map(|p| p.parse().map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        let [layers, width, heads, context] = n[..] else {
            return Err(bad());
        };
        let shape = Self {
            layers,
            width,
            heads,
            context,
        };
        shape.validate().map_err(|_| bad())?;
        Ok(shape)
    }
}

impl TransformerShape {
    /// Refuses zero sizes and heads that do not divide the width.
    pub fn validate(&self) -> Result<(), LearnError> {
        let s = self;
        if s.layers == 0
            || s.width == 0
            || s.heads == 0
            || s.context == 0
            || !s.width.is_multiple_of(s.heads)
        {
            return Err(LearnError::InvalidSetting(format!(
                "transformer shape {s}: sizes must be positive and heads must divide width"
            )));
        }
        Ok(())
    }
}

/// Token and position embeddings, pre-norm transformer blocks with a causal mask, a final
/// layer norm and a linear head to the next character's logits.
#[derive(Module, Debug)]
pub(crate) struct CharTransformer {
    tokens: Embedding,
    positions: Embedding,
    blocks: TransformerEncoder,
    norm: LayerNorm,
    head: Linear,
}

impl CharTransformer {
    pub(crate) fn new(shape: TransformerShape, vocab: usize, device: &Device) -> Self {
        let w = shape.width;
        Self {
            tokens: EmbeddingConfig::new(vocab, w).init(device),
            positions: EmbeddingConfig::new(shape.context, w).init(device),
            // No dropout: runs must repeat exactly from the seed, and the model is too small
            // to need it.
            blocks: TransformerEncoderConfig::new(w, 4 * w, shape.heads, shape.layers)
                .with_dropout(0.0)
                .with_norm_first(true)
                .init(device),
            norm: LayerNormConfig::new(w).init(device),
            head: LinearConfig::new(w, vocab).init(device),
        }
    }

    /// Logits `[batch · len, vocab]` for ids `[batch, len]`.
    fn forward(&self, ids: Tensor<2, Int>) -> Tensor<2> {
        let [batch, len] = ids.dims();
        let device = ids.device();
        let positions = Tensor::<1, Int>::arange(0..len as i64, &device).reshape([1, len]);
        let width = self.tokens.weight.dims()[1];
        let x = self.tokens.forward(ids)
            + self
                .positions
                .forward(positions)
                .expand([batch, len, width]);
        let mask = generate_autoregressive_mask(batch, len, &device);
        let x = self
            .blocks
            .forward(TransformerEncoderInput::new(x).mask_attn(mask));
        let logits = self.head.forward(self.norm.forward(x));
        let vocab = logits.dims()[2];
        logits.reshape([batch * len, vocab])
    }
}

/// The [`Trainer`] of the character-level transformer.
#[derive(Debug, Clone)]
pub struct CharLmTrainer {
    shape: TransformerShape,
    vocab: usize,
    optimizer: Optimizer,
    layout: Layout,
    device: Device,
}

impl CharLmTrainer {
    /// A trainer for chunks of `shape.context + 1` characters of `data` (its classes are the
    /// alphabet).
    pub fn new(
        shape: TransformerShape,
        data: &Dataset,
        optimizer: Optimizer,
    ) -> Result<Self, LearnError> {
        shape.validate()?;
        let Features::Tokens { vocab, .. } = data.features else {
            return Err(LearnError::Incompatible {
                model: "char-transformer",
                data: data.kind(),
            });
        };
        let device = Device::flex();
        let layout = with_burn_rng(|| layout_of(&CharTransformer::new(shape, vocab, &device)));
        Ok(Self {
            shape,
            vocab,
            optimizer,
            layout,
            device,
        })
    }

    fn net(&self, device: &Device) -> CharTransformer {
        with_burn_rng(|| CharTransformer::new(self.shape, self.vocab, device))
    }

    /// Inputs `[n, context]` and next-character targets `[n · context]` for chunks `indices`.
    fn batch(
        &self,
        data: &Dataset,
        indices: &[usize],
        device: &Device,
    ) -> Result<(Tensor<2, Int>, Tensor<1, Int>), LearnError> {
        let len = self.shape.context;
        let (mut inputs, mut targets) = (Vec::new(), Vec::new());
        for &i in indices {
            let chunk = data.tokens(i);
            if chunk.len() != len + 1 {
                return Err(LearnError::InvalidSetting(format!(
                    "chunk {i} holds {} characters; a context of {len} needs {}: load the text with the model's context",
                    chunk.len(),
                    len + 1
                )));
            }
            inputs.extend(chunk[..len].iter().map(|&t| i64::from(t)));
            targets.extend(chunk[1..].iter().map(|&t| i64::from(t)));
        }
        let n = indices.len();
        Ok((
            Tensor::from_data(TensorData::new(inputs, [n, len]), device),
            Tensor::from_data(TensorData::new(targets, [n * len]), device),
        ))
    }
}

impl Trainer for CharLmTrainer {
    fn layout(&self) -> &Layout {
        &self.layout
    }

    fn init(&self, seed: u64) -> ParamSet {
        with_burn_rng(|| {
            self.device.seed(seed);
            export(&self.net(&self.device), &self.layout)
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
        self.train_resuming(global, data, indices, config, seed, &mut None)
    }

    fn train_resuming(
        &self,
        global: &ParamSet,
        data: &Dataset,
        indices: &[usize],
        config: &FitConfig,
        seed: u64,
        state: &mut Option<InnerState>,
    ) -> Result<TrainOutcome, LearnError> {
        check_training_input(&self.layout, global, indices)?;
        let device = self.device.clone().autodiff();
        let mut model = with_burn_rng(|| import(self.net(&device), global));
        let mut params = global.values().to_vec();
        let inner = state.get_or_insert_with(|| InnerState::new(params.len()));
        if inner.len() != params.len() {
            *inner = InnerState::new(params.len());
        }
        let loss_fn = CrossEntropyLoss::new(None, &device);
        let batch_size = match config.batch_size as usize {
            0 => indices.len(),
            b => b,
        };
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut order = indices.to_vec();
        let (mut steps, mut loss_sum, mut loss_steps) = (0u64, 0.0f64, 0u64);
        let epochs = crate::trainer::epochs_to_run(config, order.len(), batch_size);
        for _ in 0..epochs {
            order.shuffle(&mut rng);
            (loss_sum, loss_steps) = (0.0, 0);
            for chunk in order.chunks(batch_size) {
                if config.local_steps > 0 && steps == u64::from(config.local_steps) {
                    break;
                }
                let (ids, targets) = self.batch(data, chunk, &device)?;
                let loss = loss_fn.forward(model.forward(ids), targets);
                let value = loss.clone().detach().into_scalar::<f32>();
                if !value.is_finite() {
                    return Err(LearnError::Diverged(value));
                }
                let grads = export_grads(&model, &loss.backward(), &self.layout);
                inner.step(self.optimizer, &mut params, &grads, config.learning_rate);
                let next = ParamSet::from_values(self.layout.clone(), params.clone())?;
                model = import(model, &next);
                (loss_sum, loss_steps) = (loss_sum + f64::from(value), loss_steps + 1);
                steps += 1;
            }
        }
        Ok(TrainOutcome {
            params: ParamSet::from_values(self.layout.clone(), params)?,
            num_samples: indices.len() as u64,
            mean_loss: (loss_sum / loss_steps.max(1) as f64) as f32,
            steps,
        })
    }

    fn evaluate(
        &self,
        params: &ParamSet,
        data: &Dataset,
        indices: &[usize],
    ) -> Result<Evaluation, LearnError> {
        check_layout(&self.layout, params)?;
        let model = with_burn_rng(|| import(self.net(&self.device), params));
        let loss_fn = CrossEntropyLoss::new(None, &self.device);
        let mut per_class = vec![(0usize, 0usize); self.vocab];
        let (mut loss_sum, mut correct, mut predicted) = (0f64, 0usize, 0usize);
        for chunk in indices.chunks(EVAL_BATCH) {
            let (ids, targets) = self.batch(data, chunk, &self.device)?;
            let logits = model.forward(ids);
            let n = targets.dims()[0];
            let loss = loss_fn.forward(logits.clone(), targets.clone());
            loss_sum += f64::from(loss.into_scalar::<f32>()) * n as f64;
            let guesses = logits.argmax(1).into_data();
            let truth = targets.into_data();
            for (g, t) in guesses.iter::<i64>().zip(truth.iter::<i64>()) {
                let t = t as usize;
                per_class[t].1 += 1;
                if g as usize == t {
                    per_class[t].0 += 1;
                    correct += 1;
                }
            }
            predicted += n;
        }
        let n = predicted.max(1) as f64;
        Ok(Evaluation {
            loss: loss_sum / n,
            accuracy: correct as f64 / n,
            examples: indices.len(),
            per_class,
        })
    }
}
