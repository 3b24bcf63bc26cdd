//! The UDHR declarations as byte-level text for the character-level language model, each
//! chunk labelled by its language, and the model's bits per character language by language.
//!
//! The alphabet is the 256 byte values of UTF-8, so one model reads Latin, Ethiopic,
//! Devanagari, Tamil or Bengali script alike without a per-script table: a Devanagari
//! character takes three predictions, a Latin letter one. Bits per *character* divide the
//! bits of all of a character's bytes by the characters, so they compare across scripts;
//! bits per byte do not.
//!
//! Each language's sentences are joined by newlines and cut into chunks of `context + 1`
//! bytes that overlap by one (as [`crate::shakespeare`] cuts the plays); every tenth chunk
//! of each language is held out, so every language is in the validation set in proportion
//! to its text.

use std::sync::Arc;

use harambee_params::ParamSet;
use serde::{Deserialize, Serialize};

use crate::udhr::{Corpus, Language};
use crate::{Dataset, LearnError, Split, TokenSet, Trainer};

/// The byte alphabet's size.
pub const VOCAB: usize = 256;

/// The corpus as byte chunks of `context + 1` labelled by language (the datasets' classes are
/// the language codes, so partitions by class deal languages), every tenth chunk of each
/// language held out.
pub fn byte_split(corpus: &Corpus, context: usize) -> Split {
    let step = context.max(1);
    let (mut train, mut held) = (TokenSet::default(), TokenSet::default());
    for (label, _) in corpus.languages.iter().enumerate() {
        let text = language_text(corpus, label);
        let starts = (0..text.len().saturating_sub(step)).step_by(step);
        for (k, s) in starts.enumerate() {
            let target = if k % 10 == 9 { &mut held } else { &mut train };
            let chunk: Vec<u32> = text[s..s + step + 1]
                .iter()
                .map(|&b| u32::from(b))
                .collect();
            target.push(&chunk, label as u32);
        }
    }
    let codes: Vec<String> = corpus.languages.iter().map(|l| l.code.clone()).collect();
    Split {
        train: Arc::new(train.into_dataset(VOCAB, codes.clone())),
        test: Arc::new(held.into_dataset(VOCAB, codes)),
    }
}

/// The text of language `label` as the model reads it: its sentences joined by newlines,
/// in UTF-8.
pub fn language_text(corpus: &Corpus, label: usize) -> Vec<u8> {
    corpus
        .sentences
        .iter()
        .filter(|(l, _)| *l == label)
        .map(|(_, s)| s.as_str())
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes()
}

/// How well the model predicts one language's held-out text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LanguageLoss {
    /// The language's code.
    pub code: String,
    /// Its English name.
    pub name: String,
    /// `africa`, `india` or `world`.
    pub region: String,
    /// Bytes predicted (held-out chunks × context).
    pub bytes: usize,
    /// Characters those bytes encode (bytes that start a UTF-8 character).
    pub chars: usize,
    /// Mean cross-entropy per predicted byte, in nats.
    pub nats_per_byte: f64,
    /// Bits per character: all the bits over the language's held-out bytes, per character.
    pub bits_per_char: f64,
}

/// Evaluates `params` on each language's held-out chunks of `test` (labelled as
/// [`byte_split`] labels them, by position in `languages`).
pub fn per_language(
    trainer: &dyn Trainer,
    params: &ParamSet,
    test: &Dataset,
    languages: &[Language],
) -> Result<Vec<LanguageLoss>, LearnError> {
    let mut out = Vec::new();
    for (label, language) in languages.iter().enumerate() {
        let indices: Vec<usize> = (0..test.len())
            .filter(|&i| test.labels[i] as usize == label)
            .collect();
        if indices.is_empty() {
            continue;
        }
        let eval = trainer.evaluate(params, test, &indices)?;
        // The predicted bytes are every chunk's bytes after its first.
        let predicted = indices.iter().flat_map(|&i| &test.tokens(i)[1..]);
        let (bytes, chars) = predicted.fold((0, 0), |(b, c), &t| {
            (b + 1, c + usize::from(!is_continuation(t)))
        });
        let bits = eval.loss * bytes as f64 / std::f64::consts::LN_2;
        out.push(LanguageLoss {
            code: language.code.clone(),
            name: language.name.clone(),
            region: language.region.clone(),
            bytes,
            chars,
            nats_per_byte: eval.loss,
            bits_per_char: bits / chars.max(1) as f64,
        });
    }
    Ok(out)
}

/// Whether a byte continues a UTF-8 character (`10xxxxxx`) rather than starting one.
fn is_continuation(byte: u32) -> bool {
    byte & 0xC0 == 0x80
}
