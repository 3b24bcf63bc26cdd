//! LoRA's settings and the adapters' names and shapes, in PEFT's conventions, so that what
//! a federation trains, records and releases is what `peft.PeftModel.from_pretrained` loads.
//!
//! An adapted projection computes `W x + (alpha / rank) · B A x`, with `A` of shape
//! `[rank, in]` and `B` of shape `[out, rank]`. Two variants:
//! - [`Variant::Standard`]: `A` and `B` both train and travel. FedAvg then averages each
//!   factor on its own, and the mean of products `B_i A_i` is not the product of means: the
//!   aggregate is an approximation.
//! - [`Variant::Ffa`] (FFA-LoRA, Sun et al. 2024): `A` stays frozen at a random value every
//!   participant draws from the federation's seed, and only `B` trains and travels. The
//!   update is then linear in `B`, so averaging `B` averages the updates exactly, and half as
//!   many numbers travel.

use std::fmt;
use std::str::FromStr;

use harambee_params::Layout;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

use crate::{HfConfig, LlmError};

/// A projection LoRA can adapt, named as in the checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Attention query.
    QProj,
    /// Attention key.
    KProj,
    /// Attention value.
    VProj,
    /// Attention output.
    OProj,
    /// SwiGLU gate.
    GateProj,
    /// SwiGLU up.
    UpProj,
    /// SwiGLU down.
    DownProj,
}

impl Target {
    /// Every projection, in the order adapters are laid out.
    pub const ALL: [Target; 7] = [
        Target::QProj,
        Target::KProj,
        Target::VProj,
        Target::OProj,
        Target::GateProj,
        Target::UpProj,
        Target::DownProj,
    ];

    /// The module's name in the checkpoint (`q_proj`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Target::QProj => "q_proj",
            Target::KProj => "k_proj",
            Target::VProj => "v_proj",
            Target::OProj => "o_proj",
            Target::GateProj => "gate_proj",
            Target::UpProj => "up_proj",
            Target::DownProj => "down_proj",
        }
    }

    /// `self_attn.q_proj`, `mlp.gate_proj`, ...: the path inside a block.
    pub fn path(self) -> String {
        let parent = match self {
            Target::QProj | Target::KProj | Target::VProj | Target::OProj => "self_attn",
            _ => "mlp",
        };
        format!("{parent}.{}", self.name())
    }

    /// Whether the projection carries a bias in a model of `config` (Qwen2's q, k, v).
    pub fn has_bias(self, config: &HfConfig) -> bool {
        match self {
            Target::QProj | Target::KProj | Target::VProj => config.qkv_bias(),
            Target::OProj => config.attention_bias,
            _ => config.mlp_bias,
        }
    }

    /// `(in, out)` of the projection in a model of `config`.
    pub fn dims(self, config: &HfConfig) -> (usize, usize) {
        let h = config.hidden_size;
        let q = config.num_attention_heads * config.head_width();
        let kv = config.kv_heads() * config.head_width();
        match self {
            Target::QProj => (h, q),
            Target::KProj | Target::VProj => (h, kv),
            Target::OProj => (q, h),
            Target::GateProj | Target::UpProj => (h, config.intermediate_size),
            Target::DownProj => (config.intermediate_size, h),
        }
    }
}

impl FromStr for Target {
    type Err = LlmError;

    /// `q_proj` or `q`, ... `down_proj` or `down`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        Target::ALL
            .into_iter()
            .find(|t| t.name() == s || t.name().trim_end_matches("_proj") == s)
            .ok_or_else(|| {
                LlmError::InvalidSetting(format!(
                    "unknown LoRA target {s:?}; known: q, k, v, o, gate, up, down (or q_proj, ...)"
                ))
            })
    }
}

/// Which factors train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// `A` and `B` train and travel; their average is an approximation.
    #[default]
    Standard,
    /// FFA-LoRA: `A` frozen at a shared random value, only `B` trains; exact averages.
    Ffa,
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Variant::Standard => "standard",
            Variant::Ffa => "ffa",
        })
    }
}

impl FromStr for Variant {
    type Err = LlmError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "standard" | "lora" => Ok(Variant::Standard),
            "ffa" | "ffa-lora" => Ok(Variant::Ffa),
            other => Err(LlmError::InvalidSetting(format!(
                "unknown LoRA variant {other:?}; known: standard, ffa"
            ))),
        }
    }
}

/// How the base model is adapted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraSettings {
    /// The adapters' rank.
    pub rank: usize,
    /// Scaling numerator: the update is `alpha / rank · B A`.
    pub alpha: f32,
    /// The projections adapted, in every block.
    pub targets: Vec<Target>,
    /// Which factors train.
    pub variant: Variant,
    /// Seed of FFA-LoRA's shared frozen `A` (the federation's seed).
    pub seed: u64,
}

impl LoraSettings {
    /// Rank `rank`, alpha twice the rank, every projection adapted, standard LoRA.
    pub fn new(rank: usize) -> Self {
        Self {
            rank,
            alpha: 2.0 * rank as f32,
            targets: Target::ALL.to_vec(),
            variant: Variant::Standard,
            seed: 0,
        }
    }

    /// Refuses a zero rank and an empty or repeated target list.
    pub fn validate(&self) -> Result<(), LlmError> {
        if self.rank == 0 || self.rank > 4096 {
            return Err(LlmError::InvalidSetting(format!(
                "LoRA rank {} must be between 1 and 4096",
                self.rank
            )));
        }
        if !self.alpha.is_finite() || self.alpha <= 0.0 {
            return Err(LlmError::InvalidSetting(
                "LoRA alpha must be positive".into(),
            ));
        }
        let mut targets = self.targets.clone();
        targets.sort();
        targets.dedup();
        if targets.is_empty() || targets.len() != self.targets.len() {
            return Err(LlmError::InvalidSetting(
                "LoRA targets must name each projection once, at least one".into(),
            ));
        }
        Ok(())
    }

    /// `alpha / rank`.
    pub fn scale(&self) -> f32 {
        self.alpha / self.rank as f32
    }

    /// The adapted projections in layout order: block by block, in [`Target::ALL`]'s order.
    pub fn sites(&self, config: &HfConfig) -> Vec<(usize, Target)> {
        let mut targets = self.targets.clone();
        targets.sort();
        (0..config.num_hidden_layers)
            .flat_map(|layer| targets.iter().map(move |&t| (layer, t)))
            .collect()
    }

    /// The trained tensors, named as PEFT names them: `A` (`[rank, in]`, standard only) then
    /// `B` (`[out, rank]`) of every site.
    pub fn layout(&self, config: &HfConfig) -> Layout {
        let mut tensors = Vec::new();
        for (layer, target) in self.sites(config) {
            let (d_in, d_out) = target.dims(config);
            if self.variant == Variant::Standard {
                tensors.push((factor_name(layer, target, 'A'), vec![self.rank, d_in]));
            }
            tensors.push((factor_name(layer, target, 'B'), vec![d_out, self.rank]));
        }
        Layout::new(tensors).expect("adapter names are unique")
    }

    /// The initial `A` of a site, `[rank, in]`: uniform in `±1/√in`, PEFT's default
    /// (Kaiming-uniform with `a = √5`), drawn from `seed` and the site.
    pub fn initial_a(
        &self,
        config: &HfConfig,
        seed: u64,
        layer: usize,
        target: Target,
    ) -> Vec<f32> {
        let (d_in, _) = target.dims(config);
        let site = (layer as u64) << 8 | target as u64;
        let mut rng = ChaCha20Rng::seed_from_u64(seed ^ site.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let bound = 1.0 / (d_in as f32).sqrt();
        (0..self.rank * d_in)
            .map(|_| rng.random_range(-bound..bound))
            .collect()
    }
}

/// PEFT's name of a factor: `base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight`.
pub fn factor_name(layer: usize, target: Target, factor: char) -> String {
    format!(
        "base_model.model.model.layers.{layer}.{}.lora_{factor}.weight",
        target.path()
    )
}
