//! A model folder in the Hugging Face layout: `config.json`, the weights in
//! `model.safetensors` or sharded with `model.safetensors.index.json`, and `tokenizer.json`.
//! Its digest pins the exact base model in a federation's charter.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use sha2::{Digest, Sha256};

use crate::{HfConfig, LlmError};

/// A tensor read from the checkpoint, as f32 in its stored (PyTorch) orientation.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Its shape, `[out, in]` for a linear layer's weight.
    pub shape: Vec<usize>,
    /// Its values, row-major.
    pub values: Vec<f32>,
}

/// A pretrained model folder, opened and checked but not yet read.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    dir: PathBuf,
    config: HfConfig,
    weight_files: Vec<String>,
}

impl Checkpoint {
    /// Opens the folder: reads `config.json` and finds the weight files and the tokenizer.
    pub fn open(dir: &Path) -> Result<Self, LlmError> {
        if !dir.is_dir() {
            return Err(LlmError::bad(
                dir,
                "no such model folder; fetch one with `harambee model fetch ORG/NAME --out DIR` (see docs/llm.md)",
            ));
        }
        let config = HfConfig::load(&dir.join("config.json"))?;
        let weight_files = weight_files(dir)?;
        let tokenizer = dir.join("tokenizer.json");
        if !tokenizer.is_file() {
            return Err(LlmError::bad(
                tokenizer,
                "missing: the folder needs the model's tokenizer.json",
            ));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            weight_files,
        })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The architecture's settings.
    pub fn config(&self) -> &HfConfig {
        &self.config
    }

    /// `tokenizer.json`.
    pub fn tokenizer_path(&self) -> PathBuf {
        self.dir.join("tokenizer.json")
    }

    /// The files that define the model, in digest order: `config.json`, `tokenizer.json`
    /// and the weight files.
    pub fn files(&self) -> Vec<String> {
        let mut files = vec!["config.json".to_string(), "tokenizer.json".to_string()];
        files.extend(self.weight_files.iter().cloned());
        files.sort();
        files
    }

    /// The base model's digest: SHA-256 of a manifest that lists, one line per file in
    /// name order, the file's SHA-256 and its name (`sha256sum`'s format), so anyone can
    /// recompute it with standard tools.
    pub fn digest(&self) -> Result<String, LlmError> {
        Ok(hex::encode(Sha256::digest(self.manifest()?.as_bytes())))
    }

    /// The manifest [`digest`](Self::digest) hashes.
    pub fn manifest(&self) -> Result<String, LlmError> {
        Ok(self.read(false)?.0)
    }

    /// Every tensor of the checkpoint, converted to f32. One file is held in memory at a
    /// time besides the converted tensors.
    pub fn load_tensors(&self) -> Result<BTreeMap<String, HostTensor>, LlmError> {
        let mut tensors = BTreeMap::new();
        for name in &self.weight_files {
            let path = self.dir.join(name);
            let bytes = std::fs::read(&path).map_err(LlmError::io(&path))?;
            read_safetensors(&path, &bytes, &mut tensors)?;
        }
        Ok(tensors)
    }

    /// As [`load_tensors`](Self::load_tensors), reading each file once to both hash and
    /// parse it, and only if the folder's digest is `expected`: a participant's copy of the
    /// federation's base.
    pub fn load_verified(&self, expected: &str) -> Result<BTreeMap<String, HostTensor>, LlmError> {
        let (manifest, tensors) = self.read(true)?;
        let digest = hex::encode(Sha256::digest(manifest.as_bytes()));
        if digest != expected {
            return Err(LlmError::bad(
                &self.dir,
                format!(
                    "this copy of the base model has digest {digest}, but the federation fine-tunes the one with digest {expected}; refusing to train on a different base"
                ),
            ));
        }
        Ok(tensors)
    }

    /// The manifest, and with `parse` the tensors of the weight files, each file read once.
    fn read(&self, parse: bool) -> Result<(String, BTreeMap<String, HostTensor>), LlmError> {
        let (mut manifest, mut tensors) = (String::new(), BTreeMap::new());
        for name in self.files() {
            let path = self.dir.join(&name);
            let hash = if parse && self.weight_files.contains(&name) {
                let bytes = std::fs::read(&path).map_err(LlmError::io(&path))?;
                read_safetensors(&path, &bytes, &mut tensors)?;
                Sha256::digest(&bytes).to_vec()
            } else {
                hash_file(&path)?
            };
            manifest.push_str(&format!("{}  {name}\n", hex::encode(hash)));
        }
        Ok((manifest, tensors))
    }
}

/// SHA-256 of a file, streamed.
fn hash_file(path: &Path) -> Result<Vec<u8>, LlmError> {
    let mut file = std::fs::File::open(path).map_err(LlmError::io(path))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).map_err(LlmError::io(path))?;
        if n == 0 {
            return Ok(hasher.finalize().to_vec());
        }
        hasher.update(&buffer[..n]);
    }
}

/// The weight files: `model.safetensors`, or the shards the index names.
fn weight_files(dir: &Path) -> Result<Vec<String>, LlmError> {
    if dir.join("model.safetensors").is_file() {
        return Ok(vec!["model.safetensors".into()]);
    }
    let index = dir.join("model.safetensors.index.json");
    let text = std::fs::read_to_string(&index).map_err(|_| {
        LlmError::bad(
            dir,
            "no model.safetensors or model.safetensors.index.json (PyTorch .bin weights are not read: convert them to safetensors)",
        )
    })?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| LlmError::bad(&index, format!("not JSON: {e}")))?;
    let map = value
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| LlmError::bad(&index, "no weight_map"))?;
    let mut files: Vec<String> = Vec::new();
    for file in map.values() {
        let file = file
            .as_str()
            .ok_or_else(|| LlmError::bad(&index, "weight_map values must be file names"))?;
        // A shard is a plain file name beside the index, never a path elsewhere.
        if file.contains('/') || file.contains('\\') || file.starts_with('.') {
            return Err(LlmError::bad(
                &index,
                format!("shard {file:?} is not a file name"),
            ));
        }
        if !files.iter().any(|f| f == file) {
            files.push(file.to_string());
        }
    }
    files.sort();
    Ok(files)
}

/// The tensors of one safetensors file's bytes, converted to f32; `path` names it in errors.
/// Any bytes give tensors or an error, never a panic (property-tested and fuzzed).
pub fn tensors_from_bytes(
    path: &Path,
    bytes: &[u8],
) -> Result<BTreeMap<String, HostTensor>, LlmError> {
    let mut tensors = BTreeMap::new();
    read_safetensors(path, bytes, &mut tensors)?;
    Ok(tensors)
}

/// Adds the tensors of one safetensors file, converted to f32.
pub(crate) fn read_safetensors(
    path: &Path,
    bytes: &[u8],
    into: &mut BTreeMap<String, HostTensor>,
) -> Result<(), LlmError> {
    let file = SafeTensors::deserialize(bytes)
        .map_err(|e| LlmError::bad(path, format!("not a safetensors file: {e}")))?;
    for (name, view) in file.tensors() {
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(LlmError::bad(
                    path,
                    format!("tensor {name}: dtype {other:?} is not read (f32, f16 and bf16 are)"),
                ));
            }
        };
        if into.contains_key(&name) {
            return Err(LlmError::bad(path, format!("tensor {name} appears twice")));
        }
        into.insert(
            name,
            HostTensor {
                shape: view.shape().to_vec(),
                values,
            },
        );
    }
    Ok(())
}
