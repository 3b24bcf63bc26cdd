//! Pretrained decoder-only language models in the Hugging Face layout, fine-tuned together
//! with LoRA.
//!
//! - [`Checkpoint`]: a model folder (`config.json`, `model.safetensors` or its shards,
//!   `tokenizer.json`) and its [digest](Checkpoint::digest), which a federation's charter pins.
//! - [`BaseModel`]: the Llama family's transformer on burn (Llama 2/3, SmolLM2, Qwen2 and
//!   Qwen2.5: RMSNorm, rotary positions with the config's θ, grouped-query attention,
//!   SwiGLU, Qwen2's q/k/v biases, tied embeddings), frozen.
//! - [`LoraSettings`] and [`LoraTrainer`]: low-rank adapters on the attention and MLP
//!   projections, the only parameters that train, travel and are recorded, as a
//!   [`harambee_learn::Trainer`], so every strategy, the simulator and the networked
//!   federation use them unchanged. Standard LoRA or FFA-LoRA ([`Variant`]).
//! - [`TextTokenizer`], [`LanguageTexts`] and [`TokenCorpus`]: plain text per language, the
//!   model's own tokenisation, held-out bits per character.
//! - [`peft`]: adapters written and read in PEFT's layout, and merged weights.
//!
//! ```no_run
//! use std::sync::Arc;
//! use harambee_llm::{Checkpoint, LoraSettings, LoraTrainer, load_base};
//! use harambee_learn::{Optimizer, Trainer};
//!
//! let checkpoint = Checkpoint::open("models/SmolLM2-135M".as_ref()).unwrap();
//! let base = Arc::new(load_base(&checkpoint, &harambee_llm::device("cpu").unwrap()).unwrap());
//! let trainer = LoraTrainer::new(base, LoraSettings::new(16), Optimizer::AdamW { weight_decay: 0.0 }, 256).unwrap();
//! let adapters = trainer.init(42);
//! println!("{} adapter values", adapters.len());
//! ```

mod checkpoint;
mod config;
mod error;
mod lora;
mod model;
pub mod peft;
mod task;
mod text;
mod trainer;

use burn::tensor::Device;

pub use checkpoint::{Checkpoint, HostTensor, tensors_from_bytes};
pub use config::{Family, HfConfig};
pub use error::LlmError;
pub use lora::{LoraSettings, Target, Variant, factor_name};
pub use model::BaseModel;
pub use task::{PretrainedTask, full_adapters, initial_adapters};
pub use text::{Encoded, LanguageBits, LanguageTexts, TextTokenizer, TokenCorpus};
pub use trainer::LoraTrainer;

/// The device for `name`: `cpu` (burn's pure-Rust flex back-end), or `cuda` / `cuda:N`
/// when built with the `cuda` feature. Training runs on its autodiff wrapper.
pub fn device(name: &str) -> Result<Device, LlmError> {
    match name {
        "cpu" => Ok(Device::flex().autodiff()),
        #[cfg(feature = "cuda")]
        cuda if cuda == "cuda" || cuda.starts_with("cuda:") => {
            let index: usize = cuda
                .strip_prefix("cuda:")
                .map(|i| i.parse().map_err(|_| LlmError::InvalidSetting(format!("bad device {cuda:?}"))))
                .transpose()?
                .unwrap_or(0);
            Ok(Device::cuda(index).autodiff())
        }
        #[cfg(not(feature = "cuda"))]
        cuda if cuda.starts_with("cuda") => Err(LlmError::InvalidSetting(
            "this harambee was built without CUDA: rebuild with `cargo build --release --features cuda`".into(),
        )),
        other => Err(LlmError::InvalidSetting(format!("unknown device {other:?}; known: cpu, cuda[:N]"))),
    }
}

/// Reads the checkpoint's weights onto `device`.
pub fn load_base(checkpoint: &Checkpoint, device: &Device) -> Result<BaseModel, LlmError> {
    BaseModel::from_tensors(checkpoint.config(), checkpoint.load_tensors()?, device)
}
