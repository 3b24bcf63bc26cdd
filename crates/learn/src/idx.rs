//! The IDX format of MNIST and Fashion-MNIST (LeCun et al.), optionally gzipped.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flate2::read::GzDecoder;

use crate::{Dataset, Features, LearnError, Split};

/// Magic numbers: unsigned bytes, 3 dimensions (images) or 1 (labels).
const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

/// Loads an MNIST-style directory holding `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
/// `t10k-images-idx3-ubyte` and `t10k-labels-idx1-ubyte`, each plain or with `.gz`.
pub fn load_idx_dir(dir: &Path, class_names: Vec<String>) -> Result<Split, LearnError> {
    // Decompressing the two halves on two threads halves the start-up time.
    let (train, test) = rayon::join(
        || load_pair(dir, "train", &class_names),
        || load_pair(dir, "t10k", &class_names),
    );
    let (train, test) = (train?, test?);
    Ok(Split {
        train: Arc::new(train),
        test: Arc::new(test),
    })
}

/// The ten digit names, for MNIST.
pub fn digit_names() -> Vec<String> {
    (0..10).map(|d| d.to_string()).collect()
}

/// Fashion-MNIST's ten class names.
pub fn fashion_names() -> Vec<String> {
    [
        "t-shirt",
        "trouser",
        "pullover",
        "dress",
        "coat",
        "sandal",
        "shirt",
        "sneaker",
        "bag",
        "ankle-boot",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn load_pair(dir: &Path, prefix: &str, class_names: &[String]) -> Result<Dataset, LearnError> {
    let images_path = find(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let labels_path = find(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let images = read_maybe_gz(&images_path)?;
    let labels = read_maybe_gz(&labels_path)?;
    let (n, rows, cols, pixels) =
        parse_images(&images).map_err(|reason| bad(&images_path, reason))?;
    let labels = parse_labels(&labels).map_err(|reason| bad(&labels_path, reason))?;
    if labels.len() != n {
        return Err(bad(
            &labels_path,
            format!("{} labels for {n} images", labels.len()),
        ));
    }
    if let Some(l) = labels.iter().find(|&&l| l as usize >= class_names.len()) {
        return Err(bad(
            &labels_path,
            format!("label {l} outside the {} classes", class_names.len()),
        ));
    }
    Ok(Dataset {
        features: Features::Pixels {
            height: rows,
            width: cols,
            values: pixels.to_vec(),
        },
        labels: labels.into_iter().map(u32::from).collect(),
        class_names: class_names.to_vec(),
    })
}

fn find(dir: &Path, stem: &str) -> Result<PathBuf, LearnError> {
    for name in [format!("{stem}.gz"), stem.to_string()] {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(LearnError::Io {
        path: dir.join(format!("{stem}.gz")),
        error: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "not found (run scripts/fetch-data.sh for the full data sets)",
        ),
    })
}

fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, LearnError> {
    let io = |error| LearnError::Io {
        path: path.to_path_buf(),
        error,
    };
    let mut raw = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut raw))
        .map_err(io)?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        GzDecoder::new(&raw[..]).read_to_end(&mut out).map_err(io)?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn bad(path: &Path, reason: String) -> LearnError {
    LearnError::BadData {
        path: path.to_path_buf(),
        reason,
    }
}

fn be_u32(bytes: &[u8], at: usize) -> Result<u32, String> {
    bytes
        .get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| "truncated header".to_string())
}

/// Parses an IDX image file: `(count, rows, cols, pixels)`.
pub fn parse_images(bytes: &[u8]) -> Result<(usize, usize, usize, &[u8]), String> {
    let magic = be_u32(bytes, 0)?;
    if magic != IMAGES_MAGIC {
        return Err(format!("not an IDX image file (magic {magic:#010x})"));
    }
    let (n, rows, cols) = (
        be_u32(bytes, 4)? as usize,
        be_u32(bytes, 8)? as usize,
        be_u32(bytes, 12)? as usize,
    );
    let size = n
        .checked_mul(rows)
        .and_then(|v| v.checked_mul(cols))
        .ok_or("dimensions overflow")?;
    let body = &bytes[16..];
    if body.len() != size {
        return Err(format!(
            "expected {size} pixel bytes for {n}×{rows}×{cols}, found {}",
            body.len()
        ));
    }
    Ok((n, rows, cols, body))
}

/// Parses an IDX label file.
pub fn parse_labels(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let magic = be_u32(bytes, 0)?;
    if magic != LABELS_MAGIC {
        return Err(format!("not an IDX label file (magic {magic:#010x})"));
    }
    let n = be_u32(bytes, 4)? as usize;
    let body = &bytes[8..];
    if body.len() != n {
        return Err(format!("expected {n} labels, found {}", body.len()));
    }
    Ok(body.to_vec())
}
