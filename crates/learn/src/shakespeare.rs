//! Plain text as chunks of character ids, for the character-level language model.
//!
//! The alphabet is fixed (newline and printable ASCII, 96 symbols), not read from the text, so
//! a model trained on the bundled subset and one trained on the full plays share a layout.
//! Other bytes become spaces; carriage returns are dropped. The text of every `*.txt` file in
//! a folder (in name order) is cut into chunks of `context + 1` characters that overlap by one,
//! so each chunk gives `context` next-character predictions; every tenth chunk is held out for
//! validation, at most [`MAX_VALIDATION_CHUNKS`] of them (evenly spread) so that evaluating
//! stays cheap on the full plays.

use std::path::Path;
use std::sync::Arc;

use crate::{Dataset, Features, LearnError, Split};

/// Held-out chunks kept at most; 512 chunks of 64 characters measure the loss to about 0.01.
pub const MAX_VALIDATION_CHUNKS: usize = 512;

/// The alphabet: `\n`, then the printable ASCII characters from space to `~`.
pub fn alphabet() -> Vec<String> {
    std::iter::once("\n".to_string())
        .chain((32u8..=126).map(|b| char::from(b).to_string()))
        .collect()
}

/// The id of byte `b` in [`alphabet`]; `None` for bytes that are skipped.
fn char_id(b: u8) -> Option<u32> {
    match b {
        b'\n' => Some(0),
        b'\r' => None,
        32..=126 => Some(u32::from(b) - 31),
        _ => Some(1),
    }
}

/// Encodes text as alphabet ids.
pub fn encode(text: &[u8]) -> Vec<u32> {
    text.iter().filter_map(|&b| char_id(b)).collect()
}

/// Loads every `*.txt` file in `dir` as chunks of `context + 1` characters.
pub fn load_text_dir(dir: &Path, context: usize) -> Result<Split, LearnError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |error| LearnError::Io { path, error }
    };
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(LearnError::InvalidSetting(format!(
            "{}: no .txt files; pass the folder of the plays (data/shakespeare, or fetch the full text with scripts/fetch-data.sh shakespeare)",
            dir.display()
        )));
    }
    let mut ids = Vec::new();
    for file in &files {
        let bytes = std::fs::read(file).map_err(io(file))?;
        ids.extend(encode(&bytes));
        ids.push(0);
    }
    Ok(chunk_split(&ids, context))
}

/// Cuts `ids` into chunks and holds out every tenth one.
pub fn chunk_split(ids: &[u32], context: usize) -> Split {
    let step = context.max(1);
    let starts: Vec<usize> = (0..ids.len().saturating_sub(step)).step_by(step).collect();
    let (mut train, mut held) = (Vec::new(), Vec::new());
    for (k, &s) in starts.iter().enumerate() {
        if k % 10 == 9 { &mut held } else { &mut train }.push(s);
    }
    let stride = held.len().div_ceil(MAX_VALIDATION_CHUNKS).max(1);
    let held: Vec<usize> = held.into_iter().step_by(stride).collect();
    let dataset = |starts: &[usize]| {
        let mut offsets = vec![0];
        let mut chunk_ids = Vec::with_capacity(starts.len() * (step + 1));
        for &s in starts {
            chunk_ids.extend_from_slice(&ids[s..s + step + 1]);
            offsets.push(chunk_ids.len());
        }
        Arc::new(Dataset {
            features: Features::Tokens {
                vocab: alphabet().len(),
                offsets,
                ids: chunk_ids,
            },
            labels: vec![0; starts.len()],
            class_names: alphabet(),
        })
    };
    Split {
        train: dataset(&train),
        test: dataset(&held),
    }
}
