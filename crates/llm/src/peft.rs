//! Adapters in PEFT's layout (`adapter_config.json`, `adapter_model.safetensors`), which
//! `peft.PeftModel.from_pretrained(base, DIR)` loads, and merged weights as a `transformers`
//! folder.

use std::collections::BTreeMap;
use std::path::Path;

use harambee_params::ParamSet;
use serde::{Deserialize, Serialize};

use crate::checkpoint::read_safetensors;
use crate::lora::{LoraSettings, Target, Variant, factor_name};
use crate::{Checkpoint, LlmError, LoraTrainer};

/// The fields of PEFT's `adapter_config.json` we write and read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterConfig {
    /// `LORA`.
    pub peft_type: String,
    /// `CAUSAL_LM`.
    #[serde(default)]
    pub task_type: Option<String>,
    /// The base model's name or path.
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    /// Rank.
    pub r: usize,
    /// Scaling numerator.
    pub lora_alpha: f32,
    /// The projections adapted.
    pub target_modules: Vec<String>,
    /// Dropout (we train without).
    #[serde(default)]
    pub lora_dropout: f32,
    /// `none`: no bias trained.
    #[serde(default = "no_bias")]
    pub bias: String,
    /// False: weights are `[out, in]`.
    #[serde(default)]
    pub fan_in_fan_out: bool,
    /// Whether rsLoRA's `alpha / √r` scaling is used (we use `alpha / r`).
    #[serde(default)]
    pub use_rslora: bool,
    /// DoRA, which we do not implement.
    #[serde(default)]
    pub use_dora: bool,
    /// True for an adapter meant for inference.
    #[serde(default)]
    pub inference_mode: bool,
}

fn no_bias() -> String {
    "none".into()
}

/// Writes the adapters `params` of `trainer` to `dir` in PEFT's layout. `base` names the base
/// model (its hub id or path), as PEFT records it.
pub fn write_adapter(
    dir: &Path,
    trainer: &LoraTrainer,
    params: &ParamSet,
    base: &str,
) -> Result<(), LlmError> {
    write_adapter_for(dir, trainer.model().config(), trainer.lora(), params, base)
}

/// As [`write_adapter`], from the architecture and LoRA settings alone (no weights needed).
pub fn write_adapter_for(
    dir: &Path,
    model: &crate::HfConfig,
    lora: &LoraSettings,
    params: &ParamSet,
    base: &str,
) -> Result<(), LlmError> {
    std::fs::create_dir_all(dir).map_err(LlmError::io(dir))?;
    let mut targets = lora.targets.clone();
    targets.sort();
    let config = AdapterConfig {
        peft_type: "LORA".into(),
        task_type: Some("CAUSAL_LM".into()),
        base_model_name_or_path: Some(base.to_string()),
        r: lora.rank,
        lora_alpha: lora.alpha,
        target_modules: targets.iter().map(|t| t.name().to_string()).collect(),
        lora_dropout: 0.0,
        bias: "none".into(),
        fan_in_fan_out: false,
        use_rslora: false,
        use_dora: false,
        inference_mode: true,
    };
    let json = serde_json::to_string_pretty(&config).expect("a plain struct serialises");
    let path = dir.join("adapter_config.json");
    std::fs::write(&path, json + "\n").map_err(LlmError::io(&path))?;
    let bytes = crate::full_adapters(model, lora, params)?.to_safetensors()?;
    let path = dir.join("adapter_model.safetensors");
    std::fs::write(&path, bytes).map_err(LlmError::io(&path))?;
    Ok(())
}

/// Reads a PEFT LoRA adapter: its settings (standard LoRA over the listed targets) and its
/// factors in our layout for a model of `config`.
pub fn read_adapter(
    dir: &Path,
    model: &crate::HfConfig,
) -> Result<(LoraSettings, ParamSet), LlmError> {
    let path = dir.join("adapter_config.json");
    let text = std::fs::read_to_string(&path).map_err(LlmError::io(&path))?;
    let config: AdapterConfig = serde_json::from_str(&text)
        .map_err(|e| LlmError::bad(&path, format!("not a PEFT adapter config: {e}")))?;
    if config.peft_type != "LORA"
        || config.use_rslora
        || config.use_dora
        || config.fan_in_fan_out
        || config.bias != "none"
    {
        return Err(LlmError::bad(
            &path,
            "only plain LoRA adapters are read (peft_type LORA, no rsLoRA or DoRA, no fan_in_fan_out, bias none)",
        ));
    }
    let targets = config
        .target_modules
        .iter()
        .map(|t| t.parse())
        .collect::<Result<Vec<Target>, _>>()?;
    let settings = LoraSettings {
        rank: config.r,
        alpha: config.lora_alpha,
        targets,
        variant: Variant::Standard,
        seed: 0,
    };
    settings.validate()?;
    let path = dir.join("adapter_model.safetensors");
    let bytes = std::fs::read(&path).map_err(LlmError::io(&path))?;
    let mut tensors = BTreeMap::new();
    read_safetensors(&path, &bytes, &mut tensors)?;
    let layout = settings.layout(model);
    let mut values = Vec::with_capacity(layout.num_values());
    for spec in layout.tensors() {
        let t = tensors
            .remove(&spec.name)
            .ok_or_else(|| LlmError::bad(&path, format!("no tensor {}", spec.name)))?;
        if t.shape != spec.shape {
            return Err(LlmError::bad(
                &path,
                format!(
                    "{} has shape {:?}, the model needs {:?}",
                    spec.name, t.shape, spec.shape
                ),
            ));
        }
        values.extend(t.values);
    }
    Ok((settings, ParamSet::from_values(layout, values)?))
}

/// Writes the base with the adapters merged in (`W + alpha/r · B A`) as a `transformers`
/// folder: the checkpoint's config and tokenizer, and one `model.safetensors`.
pub fn write_merged(
    dir: &Path,
    checkpoint: &Checkpoint,
    trainer: &LoraTrainer,
    params: &ParamSet,
) -> Result<(), LlmError> {
    std::fs::create_dir_all(dir).map_err(LlmError::io(dir))?;
    let full = trainer.full_adapters(params)?;
    let lora = trainer.lora();
    let config = checkpoint.config();
    let mut tensors = checkpoint.load_tensors()?;
    for (layer, target) in lora.sites(config) {
        let (d_in, d_out) = target.dims(config);
        let a = full
            .tensor(&factor_name(layer, target, 'A'))
            .expect("full adapters hold A");
        let b = full
            .tensor(&factor_name(layer, target, 'B'))
            .expect("full adapters hold B");
        let name = format!("model.layers.{layer}.{}.weight", target.path());
        let w = tensors
            .get_mut(&name)
            .ok_or_else(|| LlmError::bad(checkpoint.dir(), format!("no tensor {name}")))?;
        let scale = lora.scale();
        for o in 0..d_out {
            let row = &mut w.values[o * d_in..(o + 1) * d_in];
            for r in 0..lora.rank {
                let coefficient = scale * b[o * lora.rank + r];
                for (w, &a) in row.iter_mut().zip(&a[r * d_in..(r + 1) * d_in]) {
                    *w += coefficient * a;
                }
            }
        }
    }
    let set = ParamSet::from_tensors(tensors.into_iter().map(|(n, t)| (n, t.shape, t.values)))?;
    let path = dir.join("model.safetensors");
    std::fs::write(&path, set.to_safetensors()?).map_err(LlmError::io(&path))?;
    for file in ["config.json", "tokenizer.json"] {
        let (from, to) = (checkpoint.dir().join(file), dir.join(file));
        std::fs::copy(&from, &to).map_err(LlmError::io(&from))?;
    }
    for optional in [
        "tokenizer_config.json",
        "special_tokens_map.json",
        "generation_config.json",
    ] {
        let from = checkpoint.dir().join(optional);
        if from.is_file() {
            std::fs::copy(&from, dir.join(optional)).map_err(LlmError::io(&from))?;
        }
    }
    Ok(())
}
