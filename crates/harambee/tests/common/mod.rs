//! Helpers shared by the process-level tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};

/// The repository root.
pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A UDHR corpus folder at `dest` holding `codes`, copied from the bundled subset: one
/// community's own data.
pub(crate) fn corpus(dest: &Path, codes: &[&str]) {
    let source = repo().join("data/udhr");
    let index = fs::read_to_string(source.join("index.tsv")).unwrap();
    let mut lines = vec![index.lines().next().unwrap().to_string()];
    lines.extend(
        index
            .lines()
            .filter(|l| codes.contains(&l.split('\t').next().unwrap()))
            .map(str::to_string),
    );
    fs::create_dir_all(dest.join("declaration")).unwrap();
    fs::write(dest.join("index.tsv"), lines.join("\n") + "\n").unwrap();
    for code in codes {
        let file = format!("{code}.html");
        fs::copy(
            source.join("declaration").join(&file),
            dest.join("declaration").join(&file),
        )
        .unwrap();
    }
}

/// A log file's text so far.
pub(crate) fn read(log: &Path) -> String {
    fs::read_to_string(log).unwrap_or_default()
}
