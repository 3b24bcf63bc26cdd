//! The decoder-only transformer of the Llama family, on burn: token embedding, blocks of
//! RMSNorm, grouped-query attention with rotary positions and SwiGLU, a final RMSNorm and the
//! output head. The base weights are frozen constants; LoRA factors, when given, are the only
//! tensors autodiff tracks, so a backward pass computes the activations' gradients and the
//! factors' and never a weight-sized gradient.
//!
//! Weights are held as `[in, out]` so a projection is one `x · W`; the checkpoint's
//! PyTorch `[out, in]` is transposed once, at load.

use std::collections::BTreeMap;

use burn::tensor::activation::silu;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rand_distr::{Distribution, Normal};

use crate::checkpoint::HostTensor;
use crate::lora::Target;
use crate::{HfConfig, LlmError};

/// A linear projection: `x · W (+ b)`.
pub(crate) struct Projection {
    /// `[in, out]`.
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
}

struct Block {
    input_norm: Tensor<1>,
    post_norm: Tensor<1>,
    /// q, k, v, o, gate, up, down: indexed by [`Target`].
    projections: Vec<Projection>,
}

/// LoRA factors for some projections: `x · A · B · scale` is added to their output.
pub(crate) struct Adapters {
    /// Per `(layer, target)`: `A` as `[in, rank]` and `B` as `[rank, out]`.
    pub(crate) factors: BTreeMap<(usize, Target), (Tensor<2>, Tensor<2>)>,
    pub(crate) scale: f32,
}

impl Adapters {
    /// No adapters: the base model alone.
    pub(crate) fn none() -> Self {
        Self {
            factors: BTreeMap::new(),
            scale: 0.0,
        }
    }
}

/// A pretrained base model on a device.
pub struct BaseModel {
    config: HfConfig,
    /// `[vocab, hidden]`.
    embed: Tensor<2>,
    blocks: Vec<Block>,
    norm: Tensor<1>,
    /// `[hidden, vocab]`; `None` when tied to the embedding.
    head: Option<Tensor<2>>,
    device: Device,
}

impl std::fmt::Debug for BaseModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BaseModel")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Takes the named tensors out of a checkpoint's map, checking their shapes.
struct Weights<'a> {
    tensors: &'a mut BTreeMap<String, HostTensor>,
    device: &'a Device,
}

impl Weights<'_> {
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<HostTensor, LlmError> {
        let tensor = self
            .tensors
            .remove(name)
            .ok_or_else(|| LlmError::Unsupported(format!("the checkpoint has no tensor {name}")))?;
        if tensor.shape != shape {
            return Err(LlmError::Unsupported(format!(
                "tensor {name} has shape {:?}; the config implies {shape:?}",
                tensor.shape
            )));
        }
        Ok(tensor)
    }

    fn vector(&mut self, name: &str, len: usize) -> Result<Tensor<1>, LlmError> {
        let t = self.take(name, &[len])?;
        Ok(Tensor::from_data(
            TensorData::new(t.values, [len]),
            self.device,
        ))
    }

    /// A `[out, in]` matrix, transposed to `[in, out]`.
    fn matrix_transposed(
        &mut self,
        name: &str,
        d_in: usize,
        d_out: usize,
    ) -> Result<Tensor<2>, LlmError> {
        let t = self.take(name, &[d_out, d_in])?;
        let values = harambee_params::transpose(&t.values, d_out, d_in);
        Ok(Tensor::from_data(
            TensorData::new(values, [d_in, d_out]),
            self.device,
        ))
    }

    fn projection(
        &mut self,
        prefix: &str,
        target: Target,
        config: &HfConfig,
        bias: bool,
    ) -> Result<Projection, LlmError> {
        let (d_in, d_out) = target.dims(config);
        let name = format!("{prefix}.{}", target.path());
        Ok(Projection {
            weight: self.matrix_transposed(&format!("{name}.weight"), d_in, d_out)?,
            bias: if bias {
                Some(self.vector(&format!("{name}.bias"), d_out)?)
            } else {
                None
            },
        })
    }
}

impl BaseModel {
    /// Builds the model from a checkpoint's tensors (consumed as they are moved to `device`).
    pub fn from_tensors(
        config: &HfConfig,
        mut tensors: BTreeMap<String, HostTensor>,
        device: &Device,
    ) -> Result<Self, LlmError> {
        let (h, v) = (config.hidden_size, config.vocab_size);
        let mut w = Weights {
            tensors: &mut tensors,
            device,
        };
        let embed = w.take("model.embed_tokens.weight", &[v, h])?;
        let embed = Tensor::from_data(TensorData::new(embed.values, [v, h]), device);
        let mut blocks = Vec::with_capacity(config.num_hidden_layers);
        for layer in 0..config.num_hidden_layers {
            let prefix = format!("model.layers.{layer}");
            let projections = Target::ALL
                .into_iter()
                .map(|t| w.projection(&prefix, t, config, t.has_bias(config)))
                .collect::<Result<_, _>>()?;
            blocks.push(Block {
                input_norm: w.vector(&format!("{prefix}.input_layernorm.weight"), h)?,
                post_norm: w.vector(&format!("{prefix}.post_attention_layernorm.weight"), h)?,
                projections,
            });
        }
        let norm = w.vector("model.norm.weight", h)?;
        let head = if config.tie_word_embeddings {
            None
        } else {
            Some(w.matrix_transposed("lm_head.weight", h, v)?)
        };
        // A tied checkpoint may still carry a copy of the head; nothing else may be left.
        tensors.remove("lm_head.weight");
        tensors.retain(|name, _| !name.ends_with("rotary_emb.inv_freq"));
        if let Some(name) = tensors.keys().next() {
            return Err(LlmError::Unsupported(format!(
                "the checkpoint has tensor {name}, which this architecture does not use"
            )));
        }
        Ok(Self {
            config: config.clone(),
            embed,
            blocks,
            norm,
            head,
            device: device.clone(),
        })
    }

    /// A model of `config` with random weights (normal, σ 0.02; norms 1), for timing and
    /// tests: speed does not depend on the values.
    pub fn random(config: &HfConfig, seed: u64, device: &Device) -> Result<Self, LlmError> {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let normal = Normal::new(0.0f32, 0.02).expect("a valid deviation");
        let mut tensors = BTreeMap::new();
        let mut add = |name: String, shape: Vec<usize>, ones: bool| {
            let n = shape.iter().product();
            let values = if ones {
                vec![1.0; n]
            } else {
                (0..n).map(|_| normal.sample(&mut rng)).collect()
            };
            tensors.insert(name, HostTensor { shape, values });
        };
        let (h, v) = (config.hidden_size, config.vocab_size);
        add("model.embed_tokens.weight".into(), vec![v, h], false);
        for layer in 0..config.num_hidden_layers {
            let prefix = format!("model.layers.{layer}");
            for target in Target::ALL {
                let (d_in, d_out) = target.dims(config);
                let name = format!("{prefix}.{}", target.path());
                add(format!("{name}.weight"), vec![d_out, d_in], false);
                if target.has_bias(config) {
                    add(format!("{name}.bias"), vec![d_out], false);
                }
            }
            add(format!("{prefix}.input_layernorm.weight"), vec![h], true);
            add(
                format!("{prefix}.post_attention_layernorm.weight"),
                vec![h],
                true,
            );
        }
        add("model.norm.weight".into(), vec![h], true);
        if !config.tie_word_embeddings {
            add("lm_head.weight".into(), vec![v, h], false);
        }
        Self::from_tensors(config, tensors, device)
    }

    /// The architecture's settings.
    pub fn config(&self) -> &HfConfig {
        &self.config
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Logits `[batch · len, vocab]` for token ids `[batch, len]`.
    pub(crate) fn forward(&self, ids: Tensor<2, Int>, adapters: &Adapters) -> Tensor<2> {
        let [batch, len] = ids.dims();
        let c = &self.config;
        let mut x = self.embed.clone().select(0, ids.reshape([batch * len]));
        let (cos, sin) = self.rotary(len);
        for (layer, block) in self.blocks.iter().enumerate() {
            let project = |x: Tensor<2>, t: Target| {
                linear(
                    x,
                    &block.projections[t as usize],
                    adapters.factors.get(&(layer, t)),
                    adapters.scale,
                )
            };
            let h = rms_norm(x.clone(), &block.input_norm, c.rms_norm_eps);
            let heads =
                |x: Tensor<2>, n: usize| x.reshape([batch, len, n, c.head_width()]).swap_dims(1, 2);
            let q = rotate(
                heads(project(h.clone(), Target::QProj), c.num_attention_heads),
                &cos,
                &sin,
            );
            let k = rotate(
                heads(project(h.clone(), Target::KProj), c.kv_heads()),
                &cos,
                &sin,
            );
            let v = heads(project(h, Target::VProj), c.kv_heads());
            let (k, v) = (self.repeat_kv(k), self.repeat_kv(v));
            let options = AttentionModuleOptions {
                scale: None,
                softcap: None,
                is_causal: true,
            };
            let attended = attention(q, k, v, None, None, options)
                .swap_dims(1, 2)
                .reshape([batch * len, c.num_attention_heads * c.head_width()]);
            x = x + project(attended, Target::OProj);
            let h = rms_norm(x.clone(), &block.post_norm, c.rms_norm_eps);
            let gated = silu(project(h.clone(), Target::GateProj)) * project(h, Target::UpProj);
            x = x + project(gated, Target::DownProj);
        }
        let x = rms_norm(x, &self.norm, c.rms_norm_eps);
        match &self.head {
            Some(head) => x.matmul(head.clone()),
            None => x.matmul(self.embed.clone().transpose()),
        }
    }

    /// Grouped-query attention: each key-value head serves `heads / kv_heads` query heads.
    fn repeat_kv(&self, x: Tensor<4>) -> Tensor<4> {
        let c = &self.config;
        let repeat = c.num_attention_heads / c.kv_heads();
        if repeat == 1 {
            return x;
        }
        let [batch, kv, len, width] = x.dims();
        x.unsqueeze_dim::<5>(2)
            .expand([batch, kv, repeat, len, width])
            .reshape([batch, kv * repeat, len, width])
    }

    /// `cos` and `sin` `[1, 1, len, head_width]` of rotary positions, as Hugging Face lays
    /// them out: the frequencies twice over (the "rotate half" convention).
    fn rotary(&self, len: usize) -> (Tensor<4>, Tensor<4>) {
        let width = self.config.head_width();
        let half = width / 2;
        let theta = self.config.theta();
        // As transformers computes them: inverse frequencies and angles in f32.
        let inv: Vec<f32> = (0..half)
            .map(|i| (1.0 / theta.powf((2 * i) as f64 / width as f64)) as f32)
            .collect();
        let (mut cos, mut sin) = (
            Vec::with_capacity(len * width),
            Vec::with_capacity(len * width),
        );
        for p in 0..len {
            for j in 0..width {
                let angle = p as f32 * inv[j % half];
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        let make =
            |v: Vec<f32>| Tensor::from_data(TensorData::new(v, [1, 1, len, width]), &self.device);
        (make(cos), make(sin))
    }
}

/// `x · W + b`, plus `scale · x · A · B` when adapted.
fn linear(
    x: Tensor<2>,
    p: &Projection,
    lora: Option<&(Tensor<2>, Tensor<2>)>,
    scale: f32,
) -> Tensor<2> {
    let mut y = x.clone().matmul(p.weight.clone());
    if let Some(bias) = &p.bias {
        y = y + bias.clone().unsqueeze_dim(0);
    }
    if let Some((a, b)) = lora {
        y = y + x.matmul(a.clone()).matmul(b.clone()) * scale;
    }
    y
}

/// RMSNorm: `x / √(mean(x²) + ε) · w`, over the last dimension.
fn rms_norm(x: Tensor<2>, weight: &Tensor<1>, eps: f64) -> Tensor<2> {
    let rms = (x.clone() * x.clone()).mean_dim(1).add_scalar(eps).sqrt();
    x / rms * weight.clone().unsqueeze_dim(0)
}

/// Rotary positions, "rotate half": `x · cos + (−x₂, x₁) · sin`.
fn rotate(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
    let width = x.dims()[3];
    let half = width / 2;
    let x1 = x.clone().narrow(3, 0, half);
    let x2 = x.clone().narrow(3, half, half);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
    x * cos.clone() + rotated * sin.clone()
}
