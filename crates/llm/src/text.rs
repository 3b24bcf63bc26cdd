//! Plain UTF-8 text as a causal language model's examples: tokenised with the model's own
//! `tokenizer.json`, cut into chunks of `context + 1` tokens (the model reads the first
//! `context` and predicts each next one), labelled by language, every tenth chunk of each
//! language held out. Bits per character divide the bits of a language's predicted tokens by
//! the characters they cover, so they compare across tokenisers and scripts.

use std::path::Path;
use std::sync::Arc;

use harambee_learn::udhr::{Corpus, Language};
use harambee_learn::{Split, TokenSet, Trainer};
use harambee_params::ParamSet;
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use crate::LlmError;

/// Token ids, and each token's byte range in the text.
pub type Encoded = (Vec<u32>, Vec<(usize, usize)>);

/// A model's tokenizer (`tokenizer.json`).
pub struct TextTokenizer {
    inner: Tokenizer,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TextTokenizer({} tokens)", self.vocab_size())
    }
}

impl TextTokenizer {
    /// Loads `tokenizer.json`.
    pub fn load(path: &Path) -> Result<Self, LlmError> {
        let inner = Tokenizer::from_file(path)
            .map_err(|e| LlmError::bad(path, format!("not a tokenizer: {e}")))?;
        Ok(Self { inner })
    }

    /// Tokens in the vocabulary, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The ids of `text` (no special tokens added) and each token's byte range in it.
    pub fn encode(&self, text: &str) -> Result<Encoded, LlmError> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| LlmError::InvalidSetting(format!("tokenising: {e}")))?;
        Ok((encoding.get_ids().to_vec(), encoding.get_offsets().to_vec()))
    }

    /// The text of `ids`.
    pub fn decode(&self, ids: &[u32]) -> Result<String, LlmError> {
        self.inner
            .decode(ids, false)
            .map_err(|e| LlmError::InvalidSetting(format!("decoding: {e}")))
    }
}

/// Text by language, ready to tokenise.
#[derive(Debug, Clone)]
pub struct LanguageTexts {
    /// The languages, in label order.
    pub languages: Vec<Language>,
    /// Each language's text.
    pub texts: Vec<String>,
}

impl LanguageTexts {
    /// The UDHR corpus: each language's sentences joined by newlines.
    pub fn from_udhr(corpus: &Corpus) -> Self {
        let texts = (0..corpus.languages.len())
            .map(|label| {
                String::from_utf8_lossy(&harambee_learn::multilingual::language_text(corpus, label))
                    .into_owned()
            })
            .collect();
        Self {
            languages: corpus.languages.clone(),
            texts,
        }
    }

    /// A folder of `.txt` files, one language (or source) per file, named by its stem; a
    /// folder in the UDHR layout (`index.tsv`) is read as the UDHR corpus.
    pub fn load(dir: &Path, only: Option<&[String]>) -> Result<Self, LlmError> {
        if dir.join("index.tsv").is_file() {
            let corpus = harambee_learn::udhr::load_corpus(dir, only)
                .map_err(|e| LlmError::InvalidSetting(e.to_string()))?;
            return Ok(Self::from_udhr(&corpus));
        }
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(LlmError::io(dir))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "txt"))
            .collect();
        files.sort();
        let (mut languages, mut texts) = (Vec::new(), Vec::new());
        for path in files {
            let code = path
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            if only.is_some_and(|o| !o.contains(&code)) {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(LlmError::io(&path))?;
            let text =
                String::from_utf8(bytes).map_err(|_| LlmError::bad(&path, "not UTF-8 text"))?;
            languages.push(Language {
                name: code.clone(),
                code,
                region: "text".into(),
            });
            texts.push(text);
        }
        if texts.is_empty() {
            return Err(LlmError::bad(dir, "no .txt files (and no UDHR index.tsv)"));
        }
        Ok(Self { languages, texts })
    }
}

/// Tokenised chunks labelled by language, with the characters each chunk's predicted tokens
/// cover.
#[derive(Debug, Clone)]
pub struct TokenCorpus {
    /// Training and held-out chunks; labels index `languages`, class names are their codes.
    pub split: Split,
    /// The languages.
    pub languages: Vec<Language>,
    /// Per held-out chunk: the characters its predicted tokens cover.
    pub test_chars: Vec<usize>,
}

impl TokenCorpus {
    /// Tokenises `texts` and cuts chunks of `context + 1` tokens overlapping by one; every
    /// tenth chunk of each language is held out.
    pub fn build(
        texts: &LanguageTexts,
        tokenizer: &TextTokenizer,
        context: usize,
    ) -> Result<Self, LlmError> {
        if context < 2 {
            return Err(LlmError::InvalidSetting(
                "the context must be at least 2 tokens".into(),
            ));
        }
        let vocab = tokenizer.vocab_size();
        let (mut train, mut test) = (TokenSet::default(), TokenSet::default());
        let mut test_chars = Vec::new();
        for (label, text) in texts.texts.iter().enumerate() {
            let (ids, offsets) = tokenizer.encode(text)?;
            // Characters starting before each byte offset.
            let mut starts = vec![0usize; text.len() + 1];
            for (b, _) in text.char_indices() {
                starts[b + 1] = 1;
            }
            for b in 1..starts.len() {
                starts[b] += starts[b - 1];
            }
            let chars_before = |b: usize| starts[b.min(text.len())];
            for (k, s) in (0..ids.len().saturating_sub(context))
                .step_by(context)
                .enumerate()
            {
                let chunk = &ids[s..s + context + 1];
                if k % 10 == 9 {
                    let (from, to) = (offsets[s + 1].0, offsets[s + context].1);
                    test_chars.push(chars_before(to).saturating_sub(chars_before(from)));
                    test.push(chunk, label as u32);
                } else {
                    train.push(chunk, label as u32);
                }
            }
        }
        let codes: Vec<String> = texts.languages.iter().map(|l| l.code.clone()).collect();
        Ok(Self {
            split: Split {
                train: Arc::new(train.into_dataset(vocab, codes.clone())),
                test: Arc::new(test.into_dataset(vocab, codes)),
            },
            languages: texts.languages.clone(),
            test_chars,
        })
    }

    /// How well `params` predict each language's held-out text.
    pub fn per_language(
        &self,
        trainer: &dyn Trainer,
        params: &ParamSet,
    ) -> Result<Vec<LanguageBits>, LlmError> {
        let test = &self.split.test;
        let mut out = Vec::new();
        for (label, language) in self.languages.iter().enumerate() {
            let indices: Vec<usize> = (0..test.len())
                .filter(|&i| test.labels[i] as usize == label)
                .collect();
            if indices.is_empty() {
                continue;
            }
            let eval = trainer
                .evaluate(params, test, &indices)
                .map_err(|e| LlmError::InvalidSetting(e.to_string()))?;
            let tokens: usize = indices.iter().map(|&i| test.tokens(i).len() - 1).sum();
            let chars: usize = indices.iter().map(|&i| self.test_chars[i]).sum();
            let bits = eval.loss * tokens as f64 / std::f64::consts::LN_2;
            out.push(LanguageBits {
                code: language.code.clone(),
                name: language.name.clone(),
                region: language.region.clone(),
                tokens,
                chars,
                nats_per_token: eval.loss,
                bits_per_char: bits / chars.max(1) as f64,
            });
        }
        Ok(out)
    }
}

/// How well a model predicts one language's held-out text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LanguageBits {
    /// The language's code.
    pub code: String,
    /// Its name.
    pub name: String,
    /// `africa`, `india`, `world`, or `text` for a plain folder.
    pub region: String,
    /// Tokens predicted.
    pub tokens: usize,
    /// Characters those tokens cover.
    pub chars: usize,
    /// Mean cross-entropy per token, in nats.
    pub nats_per_token: f64,
    /// Bits per character.
    pub bits_per_char: f64,
}
