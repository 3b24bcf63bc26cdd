//! `config.json` of a Hugging Face checkpoint, for the decoder-only architectures we
//! implement: Llama (2 and 3, and SmolLM2, which is Llama-shaped) and Qwen2 (Qwen2.5 too).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::LlmError;

/// The architecture families we implement. They share one block (RMSNorm, rotary positions,
/// grouped-query attention, SwiGLU); Qwen2 adds a bias to the query, key and value projections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// `model_type = "llama"`: Llama 2 and 3, SmolLM and SmolLM2, TinyLlama.
    Llama,
    /// `model_type = "qwen2"`: Qwen2 and Qwen2.5.
    Qwen2,
}

/// The fields of `config.json` the forward pass needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HfConfig {
    /// `llama` or `qwen2`.
    pub model_type: String,
    /// Model width.
    pub hidden_size: usize,
    /// Width of the SwiGLU feed-forward layer.
    pub intermediate_size: usize,
    /// Transformer blocks.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key and value heads (grouped-query attention); the query heads when absent.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Width of one head; `hidden_size / num_attention_heads` when absent.
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// Tokens in the vocabulary (rows of the embedding).
    pub vocab_size: usize,
    /// RMSNorm's epsilon.
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// Rotary embedding base.
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    /// Rotary scaling, which we do not implement (Llama 3.1's long-context scaling).
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    /// Rotary settings as transformers 5 writes them (`rope_theta`, `rope_type`), in
    /// place of the top-level `rope_theta`.
    #[serde(default)]
    pub rope_parameters: Option<serde_json::Value>,
    /// Whether the output head reuses the token embedding.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Bias on the attention projections (Llama's flag; Qwen2 always has q, k, v biases).
    #[serde(default)]
    pub attention_bias: bool,
    /// Bias on the MLP projections.
    #[serde(default)]
    pub mlp_bias: bool,
    /// The longest context the model was trained for.
    #[serde(default = "default_positions")]
    pub max_position_embeddings: usize,
}

fn default_eps() -> f64 {
    1e-6
}

fn default_theta() -> f64 {
    10_000.0
}

fn default_positions() -> usize {
    2048
}

impl HfConfig {
    /// Reads and checks `config.json`.
    pub fn load(path: &Path) -> Result<Self, LlmError> {
        let text = std::fs::read_to_string(path).map_err(LlmError::io(path))?;
        let config: HfConfig = serde_json::from_str(&text)
            .map_err(|e| LlmError::bad(path, format!("not a transformer config: {e}")))?;
        config.validate().map_err(|e| LlmError::bad(path, e))?;
        Ok(config)
    }

    /// The family, from `model_type`.
    pub fn family(&self) -> Family {
        if self.model_type == "qwen2" {
            Family::Qwen2
        } else {
            Family::Llama
        }
    }

    /// Key and value heads.
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Width of one attention head.
    pub fn head_width(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// The rotary base: `rope_parameters.rope_theta` where transformers 5 puts it, else
    /// the top-level `rope_theta`.
    pub fn theta(&self) -> f64 {
        self.rope_parameters
            .as_ref()
            .and_then(|p| p.get("rope_theta"))
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(self.rope_theta)
    }

    /// Whether q, k and v carry a bias.
    pub fn qkv_bias(&self) -> bool {
        self.family() == Family::Qwen2 || self.attention_bias
    }

    /// Parameters of the whole model.
    pub fn num_parameters(&self) -> usize {
        let (h, i, v) = (self.hidden_size, self.intermediate_size, self.vocab_size);
        let (q, kv) = (
            self.num_attention_heads * self.head_width(),
            self.kv_heads() * self.head_width(),
        );
        let attention = h * q + 2 * h * kv + q * h + if self.qkv_bias() { q + 2 * kv } else { 0 };
        let block = attention + 3 * h * i + 2 * h;
        let head = if self.tie_word_embeddings { 0 } else { v * h };
        v * h + self.num_hidden_layers * block + h + head
    }

    /// Refuses architectures we do not implement and impossible sizes.
    pub fn validate(&self) -> Result<(), String> {
        if !matches!(self.model_type.as_str(), "llama" | "qwen2") {
            return Err(format!(
                "model_type {:?} is not implemented; supported: llama (Llama 2/3, SmolLM2) and qwen2 (Qwen2, Qwen2.5)",
                self.model_type
            ));
        }
        if let Some(scaling) = &self.rope_scaling
            && !scaling.is_null()
        {
            return Err(format!(
                "rope_scaling {scaling} is not implemented (plain rotary positions only)"
            ));
        }
        if let Some(kind) = self
            .rope_parameters
            .as_ref()
            .and_then(|p| p.get("rope_type"))
            .and_then(serde_json::Value::as_str)
            && kind != "default"
        {
            return Err(format!(
                "rope_type {kind:?} is not implemented (plain rotary positions only)"
            ));
        }
        let sizes = [
            self.hidden_size,
            self.intermediate_size,
            self.num_hidden_layers,
            self.num_attention_heads,
            self.kv_heads(),
            self.head_width(),
            self.vocab_size,
        ];
        if sizes.contains(&0) {
            return Err("sizes must be positive".into());
        }
        if !self.num_attention_heads.is_multiple_of(self.kv_heads()) {
            return Err(format!(
                "{} attention heads are not a multiple of {} key-value heads",
                self.num_attention_heads,
                self.kv_heads()
            ));
        }
        if !self.head_width().is_multiple_of(2) {
            return Err("rotary positions need an even head width".into());
        }
        Ok(())
    }
}
