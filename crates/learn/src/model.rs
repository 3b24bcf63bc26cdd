//! The models, as burn modules. Nothing outside this crate sees a burn type.

use std::fmt;
use std::str::FromStr;

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Embedding, EmbeddingConfig, Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::LearnError;

/// Which model to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Multinomial logistic regression (one linear layer).
    LogReg,
    /// McMahan et al. 2017's "2NN": 784-200-200-10 with ReLU (199,210 parameters on MNIST).
    #[serde(rename = "2nn")]
    Mlp2nn,
    /// McMahan et al. 2017's CNN: 5×5 conv 32, 2×2 max-pool, 5×5 conv 64, 2×2 max-pool,
    /// fc 512, fc 10, ReLU (1,663,370 parameters on MNIST).
    Cnn,
    /// fastText-style text classifier: hashed character n-grams into an embedding bag (mean),
    /// then a linear head.
    LangId,
    /// A small causal transformer predicting the next character (a character-level language
    /// model), of the given shape.
    #[serde(rename = "char-transformer")]
    CharTransformer(crate::TransformerShape),
    /// A pretrained language model fine-tuned with LoRA: the federation's `pretrained`
    /// settings name the base and the adapters, and `harambee-llm` trains them.
    Pretrained,
    /// A model of the federation's own, which members train with their own code (the Python
    /// package): its tensors and initial values come from a safetensors file
    /// (`harambee init --model safetensors:FILE`). Harambee has no trainer for it.
    Custom,
}

impl ModelKind {
    /// Whether its training is hand-written here ([`crate::NativeTrainer`]), every kernel
    /// ours, so that it can train reproducibly.
    pub fn is_native(self) -> bool {
        matches!(self, ModelKind::LogReg | ModelKind::Mlp2nn | ModelKind::Cnn)
    }

    /// The model's name, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::LogReg => "logreg",
            ModelKind::Mlp2nn => "2nn",
            ModelKind::Cnn => "cnn",
            ModelKind::LangId => "langid",
            ModelKind::CharTransformer(_) => "char-transformer",
            ModelKind::Pretrained => "pretrained",
            ModelKind::Custom => "custom",
        }
    }
}

impl fmt::Display for ModelKind {
    /// The name; the transformer with its shape (`char-transformer:2:64:4:64`), so that the
    /// text parses back to the same model.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelKind::CharTransformer(shape) => write!(f, "char-transformer:{shape}"),
            other => f.write_str(other.name()),
        }
    }
}

impl FromStr for ModelKind {
    type Err = LearnError;

    /// The names above; the transformer as `char-transformer` (2 layers, width 64, 4 heads,
    /// context 64) or `char-transformer:LAYERS:WIDTH:HEADS:CONTEXT`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(shape) = s.strip_prefix("char-transformer:") {
            return Ok(ModelKind::CharTransformer(shape.parse()?));
        }
        Ok(match s {
            "char-transformer" => ModelKind::CharTransformer(crate::TransformerShape::default()),
            "logreg" => ModelKind::LogReg,
            "2nn" | "mlp" => ModelKind::Mlp2nn,
            "cnn" => ModelKind::Cnn,
            "langid" => ModelKind::LangId,
            "pretrained" => ModelKind::Pretrained,
            "custom" => ModelKind::Custom,
            other => {
                return Err(LearnError::InvalidSetting(format!(
                    "unknown model {other:?}; known: logreg, 2nn, cnn, langid, char-transformer[:LAYERS:WIDTH:HEADS:CONTEXT]"
                )));
            }
        })
    }
}

/// A batch, already on the device. Built and consumed once per step, so the variants' size
/// difference costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Input {
    /// `[batch, features]`.
    Dense(Tensor<2>),
    /// `[batch, 1, height, width]`.
    Image(Tensor<4>),
    /// Token ids `[batch, len]` (0 is padding) and the mask `[batch, len, 1]` (1 for a token).
    Tokens {
        ids: Tensor<2, Int>,
        mask: Tensor<3>,
    },
}

/// What the trainer needs from each model.
pub(crate) trait Net: Module + Sized {
    fn forward(&self, input: Input) -> Tensor<2>;
}

/// Logistic regression and the 2NN: linear layers with ReLU between them.
#[derive(Module, Debug)]
pub(crate) struct Mlp {
    layers: Vec<Linear>,
}

impl Mlp {
    pub(crate) fn new(sizes: &[usize], device: &Device) -> Self {
        let layers = sizes
            .windows(2)
            .map(|w| LinearConfig::new(w[0], w[1]).init(device))
            .collect();
        Self { layers }
    }
}

impl Net for Mlp {
    fn forward(&self, input: Input) -> Tensor<2> {
        let mut x = match input {
            Input::Dense(x) => x,
            Input::Image(x) => x.flatten(1, 3),
            Input::Tokens { .. } => unreachable!("checked when the trainer is built"),
        };
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x);
            if i < last {
                x = relu(x);
            }
        }
        x
    }
}

/// McMahan et al.'s CNN. "Same" padding keeps 28×28 → 14×14 → 7×7, so fc1 sees 7·7·64 = 3136.
#[derive(Module, Debug)]
pub(crate) struct Cnn {
    conv1: Conv2d,
    conv2: Conv2d,
    pool: MaxPool2d,
    fc1: Linear,
    fc2: Linear,
}

impl Cnn {
    pub(crate) fn new(image: (usize, usize), classes: usize, device: &Device) -> Self {
        let conv = |c_in, c_out| {
            Conv2dConfig::new([c_in, c_out], [5, 5])
                .with_padding(PaddingConfig2d::Explicit(2, 2, 2, 2))
                .init(device)
        };
        let flat = (image.0 / 4) * (image.1 / 4) * 64;
        Self {
            conv1: conv(1, 32),
            conv2: conv(32, 64),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            fc1: LinearConfig::new(flat, 512).init(device),
            fc2: LinearConfig::new(512, classes).init(device),
        }
    }
}

impl Net for Cnn {
    fn forward(&self, input: Input) -> Tensor<2> {
        let Input::Image(x) = input else {
            unreachable!("checked when the trainer is built")
        };
        let x = self.pool.forward(relu(self.conv1.forward(x)));
        let x = self.pool.forward(relu(self.conv2.forward(x)));
        let x = relu(self.fc1.forward(x.flatten(1, 3)));
        self.fc2.forward(x)
    }
}

/// Embedding bag (mean of the n-gram vectors) and a linear head.
#[derive(Module, Debug)]
pub(crate) struct LangId {
    embedding: Embedding,
    head: Linear,
}

impl LangId {
    pub(crate) fn new(vocab: usize, dim: usize, classes: usize, device: &Device) -> Self {
        // Small initial vectors: a mean of many unit-variance vectors would start far too large.
        let init = Initializer::Normal {
            mean: 0.0,
            std: 0.1,
        };
        Self {
            // Row 0 is padding; its vector is masked out of every mean.
            embedding: EmbeddingConfig::new(vocab + 1, dim)
                .with_initializer(init)
                .init(device),
            head: LinearConfig::new(dim, classes).init(device),
        }
    }
}

impl Net for LangId {
    fn forward(&self, input: Input) -> Tensor<2> {
        let Input::Tokens { ids, mask } = input else {
            unreachable!("checked when the trainer is built")
        };
        let vectors = self.embedding.forward(ids) * mask.clone();
        let counts = mask.sum_dim(1).clamp_min(1.0);
        let bag: Tensor<3> = vectors.sum_dim(1) / counts;
        self.head.forward(bag.flatten(1, 2))
    }
}
