use std::sync::Arc;

/// What one example looks like.
#[derive(Debug, Clone, PartialEq)]
pub enum Features {
    /// Fixed-size real vectors, `dim` values each, stored row after row.
    Dense {
        /// Values per example.
        dim: usize,
        /// All values.
        values: Vec<f32>,
    },
    /// Grey-scale images, one byte per pixel (0–255, read as [0, 1]), row-major. Bytes, not
    /// floats: a quarter of the memory, and no conversion pass at start-up.
    Pixels {
        /// Image height.
        height: usize,
        /// Image width.
        width: usize,
        /// All pixels, image after image.
        values: Vec<u8>,
    },
    /// Variable-length lists of token ids (hashed n-grams), example `i` at
    /// `ids[offsets[i]..offsets[i + 1]]`; ids are below `vocab`.
    Tokens {
        /// Number of distinct ids.
        vocab: usize,
        /// Start of each example, plus the end.
        offsets: Vec<usize>,
        /// All ids.
        ids: Vec<u32>,
    },
}

/// A labelled data set held in memory. Participants refer to it by index sets, so a thousand
/// virtual participants cost a thousand index lists, not a thousand copies.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// The examples.
    pub features: Features,
    /// One label per example, below `class_names.len()`.
    pub labels: Vec<u32>,
    /// A name per class (digits, language codes).
    pub class_names: Vec<String>,
}

impl Dataset {
    /// The number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the set holds no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The number of classes.
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// A short word for the kind of data, for messages.
    pub fn kind(&self) -> &'static str {
        match self.features {
            Features::Pixels { .. } => "image",
            Features::Dense { .. } => "vector",
            Features::Tokens { .. } => "text",
        }
    }

    /// Example `i` in one canonical byte form, for commitments to a data set: its label (u32
    /// little-endian), then its features (vectors: f32 little-endian; images: the height and
    /// width as u32, then the pixels; text: the id count as u32, then the ids as u32). Equal
    /// examples give equal bytes, whatever order or file they were read from.
    pub fn example_bytes(&self, i: usize) -> Vec<u8> {
        let mut out = self.labels[i].to_le_bytes().to_vec();
        match &self.features {
            Features::Dense { dim, values } => {
                for v in &values[i * dim..(i + 1) * dim] {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
            Features::Pixels {
                height,
                width,
                values,
            } => {
                let n = height * width;
                out.extend_from_slice(&(*height as u32).to_le_bytes());
                out.extend_from_slice(&(*width as u32).to_le_bytes());
                out.extend_from_slice(&values[i * n..(i + 1) * n]);
            }
            Features::Tokens { offsets, ids, .. } => {
                let example = &ids[offsets[i]..offsets[i + 1]];
                out.extend_from_slice(&(example.len() as u32).to_le_bytes());
                for id in example {
                    out.extend_from_slice(&id.to_le_bytes());
                }
            }
        }
        out
    }

    /// Values per example for vectors and images (`None` for text).
    pub fn input_dim(&self) -> Option<usize> {
        match &self.features {
            Features::Dense { dim, .. } => Some(*dim),
            Features::Pixels { height, width, .. } => Some(height * width),
            Features::Tokens { .. } => None,
        }
    }

    /// Height and width for images.
    pub fn image_shape(&self) -> Option<(usize, usize)> {
        match &self.features {
            Features::Pixels { height, width, .. } => Some((*height, *width)),
            _ => None,
        }
    }

    /// Appends example `i`'s features as floats (pixels scaled to [0, 1]); nothing for text.
    pub(crate) fn push_row(&self, i: usize, out: &mut Vec<f32>) {
        match &self.features {
            Features::Dense { dim, values } => {
                out.extend_from_slice(&values[i * dim..(i + 1) * dim])
            }
            Features::Pixels {
                height,
                width,
                values,
            } => {
                let n = height * width;
                out.extend(
                    values[i * n..(i + 1) * n]
                        .iter()
                        .map(|&p| f32::from(p) * (1.0 / 255.0)),
                );
            }
            Features::Tokens { .. } => {}
        }
    }

    /// Token ids of example `i` (empty for images and dense vectors).
    pub fn tokens(&self, i: usize) -> &[u32] {
        match &self.features {
            Features::Tokens { offsets, ids, .. } => &ids[offsets[i]..offsets[i + 1]],
            Features::Dense { .. } | Features::Pixels { .. } => &[],
        }
    }

    /// A new data set with only the examples at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let features = match &self.features {
            Features::Dense { dim, values } => Features::Dense {
                dim: *dim,
                values: gather_rows(values, *dim, indices),
            },
            Features::Pixels {
                height,
                width,
                values,
            } => Features::Pixels {
                height: *height,
                width: *width,
                values: gather_rows(values, height * width, indices),
            },
            Features::Tokens { vocab, .. } => {
                let mut offsets = vec![0];
                let mut ids = Vec::new();
                for &i in indices {
                    ids.extend_from_slice(self.tokens(i));
                    offsets.push(ids.len());
                }
                Features::Tokens {
                    vocab: *vocab,
                    offsets,
                    ids,
                }
            }
        };
        Dataset {
            features,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            class_names: self.class_names.clone(),
        }
    }
}

/// A training set and a test set that share classes.
#[derive(Debug, Clone)]
pub struct Split {
    /// Examples to train on (and to partition among participants).
    pub train: Arc<Dataset>,
    /// Held-out examples for evaluation.
    pub test: Arc<Dataset>,
}

impl Split {
    /// Every example's canonical bytes ([`Dataset::example_bytes`]) after its split's tag
    /// (`train\0` or `test\0`): what a commitment to the whole data set hashes.
    pub fn tagged_examples(&self) -> impl Iterator<Item = Vec<u8>> + '_ {
        let sets = [
            (b"train\0".as_slice(), &self.train),
            (b"test\0".as_slice(), &self.test),
        ];
        sets.into_iter().flat_map(|(tag, set)| {
            (0..set.len()).map(move |i| [tag, &set.example_bytes(i)].concat())
        })
    }
}

/// The rows `indices` (each `n` values long) of a row-major buffer, in that order.
fn gather_rows<T: Copy>(values: &[T], n: usize, indices: &[usize]) -> Vec<T> {
    indices
        .iter()
        .flat_map(|&i| values[i * n..(i + 1) * n].iter().copied())
        .collect()
}

/// Token sequences with labels, appended one by one, then made a [`Dataset`]: how the text
/// loaders (and the pretrained models' tokenised text) build theirs.
#[derive(Debug, Clone, Default)]
pub struct TokenSet {
    offsets: Vec<usize>,
    ids: Vec<u32>,
    labels: Vec<u32>,
}

impl TokenSet {
    /// Appends one sequence with its label.
    pub fn push(&mut self, ids: &[u32], label: u32) {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        self.ids.extend_from_slice(ids);
        self.offsets.push(self.ids.len());
        self.labels.push(label);
    }

    /// The data set of the sequences so far, over a vocabulary of `vocab` tokens.
    pub fn into_dataset(mut self, vocab: usize, class_names: Vec<String>) -> Dataset {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        Dataset {
            features: Features::Tokens {
                vocab,
                offsets: self.offsets,
                ids: self.ids,
            },
            labels: self.labels,
            class_names,
        }
    }
}
