//! The blob store keeps bytes whole, names them by content, and notices tampering.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use harambee_store::{BlobStore, Digest, FsBlobStore, StoreError};
use proptest::prelude::*;

#[test]
fn put_get_contains_remove() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlobStore::open(dir.path()).unwrap();
    let d = store.put(b"hello").unwrap();
    assert_eq!(d, Digest::of_bytes(b"hello"));
    assert!(store.contains(&d).unwrap());
    assert_eq!(store.put(b"hello").unwrap(), d, "idempotent");
    store.remove(&d).unwrap();
    assert!(!store.contains(&d).unwrap());
    assert!(matches!(store.get(&d), Err(StoreError::Missing(_))));
    store.remove(&d).unwrap();
}

#[test]
fn a_tampered_blob_is_reported_not_returned() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlobStore::open(dir.path()).unwrap();
    let d = store.put(b"the update").unwrap();
    std::fs::write(store.path_of(&d), b"the updatE").unwrap();
    assert!(matches!(store.get(&d), Err(StoreError::Corrupt { .. })));
}

#[test]
fn a_reopened_store_has_everything_and_no_temporary_files() {
    let dir = tempfile::tempdir().unwrap();
    let digests: Vec<Digest> = {
        let store = FsBlobStore::open(dir.path()).unwrap();
        (0..20u8)
            .map(|i| store.put(&vec![i; 1000 + i as usize]).unwrap())
            .collect()
    };
    let store = FsBlobStore::open(dir.path()).unwrap();
    for (i, d) in digests.iter().enumerate() {
        assert_eq!(store.get(d).unwrap(), vec![i as u8; 1000 + i]);
    }
    let leftovers = walk(dir.path())
        .into_iter()
        .filter(|p| p.contains(".tmp-"))
        .count();
    assert_eq!(leftovers, 0);
}

#[test]
fn concurrent_puts_of_the_same_and_different_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlobStore::open(dir.path()).unwrap();
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let store = &store;
            s.spawn(move || {
                for i in 0..25u8 {
                    store.put(&[i; 64]).unwrap();
                    store.put(&[t, i]).unwrap();
                }
            });
        }
    });
    for i in 0..25u8 {
        assert_eq!(store.get(&Digest::of_bytes(&[i; 64])).unwrap(), vec![i; 64]);
    }
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path.display().to_string());
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn any_bytes_round_trip(blobs in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..512), 1..8)) {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).unwrap();
        let digests: Vec<Digest> = blobs.iter().map(|b| store.put(b).unwrap()).collect();
        for (b, d) in blobs.iter().zip(&digests) {
            prop_assert_eq!(&store.get(d).unwrap(), b);
        }
    }
}
