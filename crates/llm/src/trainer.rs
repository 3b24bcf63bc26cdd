//! [`LoraTrainer`]: a pretrained base, frozen, with LoRA adapters that are the only
//! parameters the rest of Harambee sees: they train, travel, are aggregated and recorded.

use std::collections::BTreeMap;
use std::sync::Arc;

use burn::nn::loss::CrossEntropyLoss;
use burn::tensor::{Int, Tensor, TensorData};
use harambee_learn::{
    Dataset, Evaluation, InnerState, LearnError, Optimizer, TrainOutcome, Trainer,
};
use harambee_params::{Layout, ParamSet, transpose};
use harambee_strategy::FitConfig;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha20Rng;

use crate::LlmError;
use crate::lora::{LoraSettings, Target, Variant, factor_name};
use crate::model::{Adapters, BaseModel};

/// Chunks per forward pass when evaluating.
const EVAL_BATCH: usize = 8;

/// Fine-tunes a frozen base model through its LoRA adapters.
pub struct LoraTrainer {
    model: Arc<BaseModel>,
    lora: LoraSettings,
    layout: Layout,
    /// FFA-LoRA's frozen `A` per site, `[rank, in]`; empty for standard LoRA.
    frozen_a: BTreeMap<(usize, Target), Vec<f32>>,
    optimizer: Optimizer,
    context: usize,
}

impl std::fmt::Debug for LoraTrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoraTrainer")
            .field("lora", &self.lora)
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

impl LoraTrainer {
    /// A trainer of `lora` adapters on `model`, for chunks of `context + 1` tokens.
    pub fn new(
        model: Arc<BaseModel>,
        lora: LoraSettings,
        optimizer: Optimizer,
        context: usize,
    ) -> Result<Self, LlmError> {
        lora.validate()?;
        let config = model.config();
        if context < 2 || context > config.max_position_embeddings {
            return Err(LlmError::InvalidSetting(format!(
                "context {context} must be between 2 and the model's {} positions",
                config.max_position_embeddings
            )));
        }
        let frozen_a = match lora.variant {
            Variant::Standard => BTreeMap::new(),
            Variant::Ffa => lora
                .sites(config)
                .into_iter()
                .map(|(l, t)| ((l, t), lora.initial_a(config, lora.seed, l, t)))
                .collect(),
        };
        Ok(Self {
            layout: lora.layout(config),
            model,
            lora,
            frozen_a,
            optimizer,
            context,
        })
    }

    /// The base model.
    pub fn model(&self) -> &BaseModel {
        &self.model
    }

    /// The LoRA settings.
    pub fn lora(&self) -> &LoraSettings {
        &self.lora
    }

    /// Tokens the model reads per chunk.
    pub fn context(&self) -> usize {
        self.context
    }

    /// Every factor, `A` and `B`, in PEFT's names and shapes ([`crate::full_adapters`]).
    pub fn full_adapters(&self, params: &ParamSet) -> Result<ParamSet, LlmError> {
        crate::full_adapters(self.model.config(), &self.lora, params)
    }

    fn tensor<'p>(&self, params: &'p ParamSet, name: &str) -> Result<&'p [f32], LlmError> {
        params
            .tensor(name)
            .ok_or_else(|| LlmError::InvalidSetting(format!("adapter tensor {name} is missing")))
    }

    /// The adapters of `params` on the model's device, tracked by autodiff when `track`.
    fn adapters(&self, params: &ParamSet, track: bool) -> Result<Adapters, LlmError> {
        let config = self.model.config();
        let device = self.model.device();
        let rank = self.lora.rank;
        let mut factors = BTreeMap::new();
        for (layer, target) in self.lora.sites(config) {
            let (d_in, d_out) = target.dims(config);
            let a = match self.frozen_a.get(&(layer, target)) {
                Some(a) => a.as_slice(),
                None => self.tensor(params, &factor_name(layer, target, 'A'))?,
            };
            let b = self.tensor(params, &factor_name(layer, target, 'B'))?;
            // Ours: x · Aᵀ · Bᵀ, so A is held as [in, rank] and B as [rank, out].
            let mut a = Tensor::<2>::from_data(
                TensorData::new(transpose(a, rank, d_in), [d_in, rank]),
                device,
            );
            let mut b = Tensor::<2>::from_data(
                TensorData::new(transpose(b, d_out, rank), [rank, d_out]),
                device,
            );
            if track {
                if self.lora.variant == Variant::Standard {
                    a = a.require_grad();
                }
                b = b.require_grad();
            }
            factors.insert((layer, target), (a, b));
        }
        Ok(Adapters {
            factors,
            scale: self.lora.scale(),
        })
    }

    /// The gradients of the trained factors, flat in the layout's order and shapes.
    fn gradients(&self, adapters: &Adapters, grads: &burn::tensor::Gradients) -> Vec<f32> {
        let config = self.model.config();
        let rank = self.lora.rank;
        let mut out = Vec::with_capacity(self.layout.num_values());
        let flat = |t: &Tensor<2>| -> Vec<f32> {
            match t.grad(grads) {
                Some(g) => g.into_data().iter::<f32>().collect(),
                None => vec![0.0; t.dims().iter().product()],
            }
        };
        for (layer, target) in self.lora.sites(config) {
            let (d_in, d_out) = target.dims(config);
            let (a, b) = &adapters.factors[&(layer, target)];
            if self.lora.variant == Variant::Standard {
                out.extend(transpose(&flat(a), d_in, rank));
            }
            out.extend(transpose(&flat(b), rank, d_out));
        }
        out
    }

    /// Inputs `[n, context]` and next-token targets `[n · context]` of chunks `indices`.
    fn batch(
        &self,
        data: &Dataset,
        indices: &[usize],
    ) -> Result<(Tensor<2, Int>, Tensor<1, Int>), LearnError> {
        let (len, vocab) = (self.context, self.model.config().vocab_size);
        let (mut inputs, mut targets) = (Vec::new(), Vec::new());
        for &i in indices {
            let chunk = data.tokens(i);
            if chunk.len() != len + 1 {
                return Err(LearnError::InvalidSetting(format!(
                    "chunk {i} holds {} tokens; a context of {len} needs {}",
                    chunk.len(),
                    len + 1
                )));
            }
            if let Some(&bad) = chunk.iter().find(|&&t| t as usize >= vocab) {
                return Err(LearnError::InvalidSetting(format!(
                    "token {bad} is outside the model's vocabulary of {vocab}: tokenise with the model's tokenizer.json"
                )));
            }
            inputs.extend(chunk[..len].iter().map(|&t| i64::from(t)));
            targets.extend(chunk[1..].iter().map(|&t| i64::from(t)));
        }
        let n = indices.len();
        let device = self.model.device();
        Ok((
            Tensor::from_data(TensorData::new(inputs, [n, len]), device),
            Tensor::from_data(TensorData::new(targets, [n * len]), device),
        ))
    }

    /// Logits `[n · len, vocab]` of the base with adapters `params` (none: the base alone).
    pub fn logits(
        &self,
        params: Option<&ParamSet>,
        ids: &[Vec<u32>],
    ) -> Result<Vec<Vec<f32>>, LlmError> {
        let adapters = match params {
            Some(p) => self.adapters(p, false)?,
            None => Adapters::none(),
        };
        let device = self.model.device();
        let mut out = Vec::new();
        for seq in ids {
            let ids: Vec<i64> = seq.iter().map(|&t| i64::from(t)).collect();
            let input = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, seq.len()]), device);
            let logits = self.model.forward(input, &adapters);
            out.push(logits.into_data().iter::<f32>().collect());
        }
        Ok(out)
    }

    fn check(&self, params: &ParamSet) -> Result<(), LearnError> {
        if params.layout() != &self.layout {
            return Err(LearnError::InvalidSetting(
                "the adapters' tensors are not this model's LoRA layout".into(),
            ));
        }
        Ok(())
    }
}

impl Trainer for LoraTrainer {
    fn layout(&self) -> &Layout {
        &self.layout
    }

    /// `A` drawn as PEFT draws it (from `seed`, or FFA-LoRA's shared seed), `B` zero: the
    /// adapted model starts exactly as the base.
    fn init(&self, seed: u64) -> ParamSet {
        crate::task::initial_adapters(self.model.config(), &self.lora, seed)
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
        self.check(global)?;
        if indices.is_empty() {
            return Err(LearnError::InvalidSetting("no examples to train on".into()));
        }
        let mut params = global.values().to_vec();
        let inner = state.get_or_insert_with(|| InnerState::new(params.len()));
        if inner.len() != params.len() {
            *inner = InnerState::new(params.len());
        }
        let loss_fn = CrossEntropyLoss::new(None, self.model.device());
        let batch_size = match config.batch_size as usize {
            0 => indices.len(),
            b => b,
        };
        let per_epoch = indices.len().div_ceil(batch_size) as u32;
        let epochs = match config.local_steps {
            0 => config.epochs.max(1),
            steps => steps.div_ceil(per_epoch.max(1)),
        };
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut order = indices.to_vec();
        let (mut steps, mut loss_sum, mut loss_steps) = (0u64, 0.0f64, 0u64);
        for _ in 0..epochs {
            order.shuffle(&mut rng);
            (loss_sum, loss_steps) = (0.0, 0);
            for chunk in order.chunks(batch_size) {
                if config.local_steps > 0 && steps == u64::from(config.local_steps) {
                    break;
                }
                let current = ParamSet::from_values(self.layout.clone(), params.clone())?;
                let adapters = self.adapters(&current, true)?;
                let (ids, targets) = self.batch(data, chunk)?;
                let loss = loss_fn.forward(self.model.forward(ids, &adapters), targets);
                let value = loss.clone().detach().into_scalar::<f32>();
                if !value.is_finite() {
                    return Err(LearnError::Diverged(value));
                }
                let grads = self.gradients(&adapters, &loss.backward());
                inner.step(self.optimizer, &mut params, &grads, config.learning_rate);
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

    /// Mean cross-entropy per predicted token, next-token accuracy, and per language
    /// (label) the tokens predicted right and in all.
    fn evaluate(
        &self,
        params: &ParamSet,
        data: &Dataset,
        indices: &[usize],
    ) -> Result<Evaluation, LearnError> {
        self.check(params)?;
        let adapters = self.adapters(params, false)?;
        let loss_fn = CrossEntropyLoss::new(None, self.model.device());
        let mut per_class = vec![(0usize, 0usize); data.num_classes()];
        let (mut loss_sum, mut correct, mut predicted) = (0f64, 0usize, 0usize);
        for chunk in indices.chunks(EVAL_BATCH) {
            let (ids, targets) = self.batch(data, chunk)?;
            let logits = self.model.forward(ids, &adapters);
            let n = targets.dims()[0];
            let loss = loss_fn.forward(logits.clone(), targets.clone());
            loss_sum += f64::from(loss.into_scalar::<f32>()) * n as f64;
            let guesses: Vec<i64> = logits.argmax(1).into_data().iter::<i64>().collect();
            let truth: Vec<i64> = targets.into_data().iter::<i64>().collect();
            for (k, (g, t)) in guesses.iter().zip(&truth).enumerate() {
                let label = data.labels[chunk[k / self.context]] as usize;
                let hit = usize::from(g == t);
                correct += hit;
                if let Some(c) = per_class.get_mut(label) {
                    c.0 += hit;
                    c.1 += 1;
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
