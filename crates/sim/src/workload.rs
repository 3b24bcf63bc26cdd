use std::path::{Path, PathBuf};

use harambee_learn::udhr::{Language, TextFeatures, load_corpus};
use harambee_learn::{ModelKind, Split, digit_names, fashion_names, load_idx_dir};

use crate::{DatasetName, SimConfig, SimError};

/// Data loaded and ready to partition.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Training and test sets.
    pub split: Split,
    /// For UDHR: the languages, in label order.
    pub languages: Option<Vec<Language>>,
    /// Where the data came from.
    pub source: PathBuf,
}

impl Workload {
    /// Loads the configured data set from `data_dir`, or else from the first of
    /// `$HARAMBEE_DATA/NAME`, `data/full/NAME` (fetched) and `data/NAME` (bundled subset).
    pub fn load(config: &SimConfig) -> Result<Self, SimError> {
        let source = match &config.data_dir {
            Some(dir) => dir.clone(),
            None => default_dir(config.dataset)?,
        };
        Self::load_from(config, &source)
    }

    /// Loads the configured data set from `dir`.
    pub fn load_from(config: &SimConfig, dir: &Path) -> Result<Self, SimError> {
        let (split, languages) = match config.dataset {
            DatasetName::Mnist => (load_idx_dir(dir, digit_names())?, None),
            DatasetName::FashionMnist => (load_idx_dir(dir, fashion_names())?, None),
            DatasetName::Udhr => {
                let only = (!config.languages.is_empty()).then_some(config.languages.as_slice());
                let corpus = load_corpus(dir, only)?;
                // Every fifth sentence of each language is held out for testing.
                (
                    corpus.split(&TextFeatures::default(), 5),
                    Some(corpus.languages),
                )
            }
            DatasetName::Shakespeare | DatasetName::UdhrText => {
                let ModelKind::CharTransformer(shape) = config.model else {
                    return Err(SimError::InvalidSetting(format!(
                        "{} is for --model char-transformer",
                        config.dataset
                    )));
                };
                if config.dataset == DatasetName::Shakespeare {
                    (
                        harambee_learn::shakespeare::load_text_dir(dir, shape.context)?,
                        None,
                    )
                } else {
                    let only =
                        (!config.languages.is_empty()).then_some(config.languages.as_slice());
                    let corpus = load_corpus(dir, only)?;
                    (
                        harambee_learn::multilingual::byte_split(&corpus, shape.context),
                        Some(corpus.languages),
                    )
                }
            }
        };
        Ok(Self {
            split,
            languages,
            source: dir.to_path_buf(),
        })
    }
}

fn default_dir(dataset: DatasetName) -> Result<PathBuf, SimError> {
    let folder = match dataset {
        DatasetName::Mnist => "mnist",
        DatasetName::FashionMnist => "fashion-mnist",
        DatasetName::Udhr | DatasetName::UdhrText => "udhr",
        DatasetName::Shakespeare => "shakespeare",
    };
    let mut candidates = Vec::new();
    if let Some(root) = std::env::var_os("HARAMBEE_DATA") {
        candidates.push(PathBuf::from(root).join(folder));
    }
    candidates.push(Path::new("data/full").join(folder));
    candidates.push(Path::new("data").join(folder));
    candidates
        .iter()
        .find(|c| c.is_dir())
        .cloned()
        .ok_or_else(|| {
            SimError::InvalidSetting(format!(
                "no {dataset} data found (looked in {}); run from the repository root, pass --data-dir, or fetch it with scripts/fetch-data.sh",
                candidates.iter().map(|c| c.display().to_string()).collect::<Vec<_>>().join(", ")
            ))
        })
}
