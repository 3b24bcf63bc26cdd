//! What a networked federation fine-tunes, without the weights: the base model's digest and
//! architecture, the LoRA settings and the context. The coordinator builds the initial
//! adapters from it alone (it needs no copy of the base); each participant checks its own
//! copy of the base against the digest before it trains.

use std::path::Path;

use harambee_params::{Layout, ParamSet};
use serde::{Deserialize, Serialize};

use crate::lora::{LoraSettings, Variant, factor_name};
use burn::tensor::Device;

use crate::{BaseModel, Checkpoint, HfConfig, LlmError};

/// A federation's pretrained base and its adapters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainedTask {
    /// What the base is called (its hub id, or its folder's name), for people.
    pub base_name: String,
    /// The base model's digest ([`Checkpoint::digest`]): every participant's copy must match.
    pub base_sha256: String,
    /// The base's architecture (its `config.json`).
    pub config: HfConfig,
    /// The adapters.
    pub lora: LoraSettings,
    /// Tokens per training chunk.
    pub context: usize,
}

impl PretrainedTask {
    /// The task of fine-tuning `checkpoint` with `lora`.
    pub fn new(
        checkpoint: &Checkpoint,
        base_name: &str,
        lora: LoraSettings,
        context: usize,
    ) -> Result<Self, LlmError> {
        let task = Self {
            base_name: base_name.to_string(),
            base_sha256: checkpoint.digest()?,
            config: checkpoint.config().clone(),
            lora,
            context,
        };
        task.validate()?;
        Ok(task)
    }

    /// The adapters' tensors, as they travel.
    pub fn layout(&self) -> Layout {
        self.lora.layout(&self.config)
    }

    /// The initial adapters: `A` drawn from `seed` as PEFT draws it, `B` zero.
    pub fn initial(&self, seed: u64) -> ParamSet {
        initial_adapters(&self.config, &self.lora, seed)
    }

    /// Refuses settings no model could have: the architecture's, LoRA's, and a context
    /// beyond the model's positions.
    pub fn validate(&self) -> Result<(), LlmError> {
        self.config
            .validate()
            .map_err(|e| LlmError::InvalidSetting(format!("pretrained.config: {e}")))?;
        self.lora.validate()?;
        if self.context < 2 || self.context > self.config.max_position_embeddings {
            return Err(LlmError::InvalidSetting(format!(
                "context {} must be between 2 and the model's {} positions",
                self.context, self.config.max_position_embeddings
            )));
        }
        Ok(())
    }

    /// Loads a participant's copy of the base at `dir` onto `device`, if it is the
    /// federation's (its digest), reading each file once.
    pub fn load_base(
        &self,
        dir: &Path,
        device: &Device,
    ) -> Result<(Checkpoint, BaseModel), LlmError> {
        let checkpoint = Checkpoint::open(dir)?;
        let tensors = checkpoint
            .load_verified(&self.base_sha256)
            .map_err(|e| match e {
                LlmError::BadModel { path, reason } => LlmError::BadModel {
                    path,
                    reason: format!("{reason} ({})", self.base_name),
                },
                other => other,
            })?;
        let base = BaseModel::from_tensors(checkpoint.config(), tensors, device)?;
        Ok((checkpoint, base))
    }
}

/// `A` from `seed` (standard LoRA) and `B` zero, in `lora`'s layout.
pub fn initial_adapters(config: &HfConfig, lora: &LoraSettings, seed: u64) -> ParamSet {
    let mut values = Vec::with_capacity(lora.layout(config).num_values());
    for (layer, target) in lora.sites(config) {
        let (_, d_out) = target.dims(config);
        if lora.variant == Variant::Standard {
            values.extend(lora.initial_a(config, seed, layer, target));
        }
        values.extend(std::iter::repeat_n(0.0, d_out * lora.rank));
    }
    ParamSet::from_values(lora.layout(config), values).expect("sized from the layout")
}

/// Every factor, `A` and `B`, in PEFT's names and shapes: for FFA-LoRA the frozen `A`
/// (from `lora.seed`) beside the trained `B`. This is what an exported adapter holds.
pub fn full_adapters(
    config: &HfConfig,
    lora: &LoraSettings,
    params: &ParamSet,
) -> Result<ParamSet, LlmError> {
    let missing =
        |name: &str| LlmError::InvalidSetting(format!("adapter tensor {name} is missing"));
    let mut tensors = Vec::new();
    for (layer, target) in lora.sites(config) {
        let (d_in, d_out) = target.dims(config);
        let a_name = factor_name(layer, target, 'A');
        let a = match lora.variant {
            Variant::Ffa => lora.initial_a(config, lora.seed, layer, target),
            Variant::Standard => params
                .tensor(&a_name)
                .ok_or_else(|| missing(&a_name))?
                .to_vec(),
        };
        tensors.push((a_name, vec![lora.rank, d_in], a));
        let b_name = factor_name(layer, target, 'B');
        let b = params
            .tensor(&b_name)
            .ok_or_else(|| missing(&b_name))?
            .to_vec();
        tensors.push((b_name, vec![d_out, lora.rank], b));
    }
    Ok(ParamSet::from_tensors(tensors)?)
}
