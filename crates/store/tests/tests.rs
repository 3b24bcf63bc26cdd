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

mod state {
    use harambee_store::{
        ClosedRoundRecord, Digest, HeadRecord, OpenRoundRecord, SqliteState, StateStore,
        StewardActionRecord, UpdateRecord,
    };

    fn update(participant: u64) -> UpdateRecord {
        UpdateRecord {
            round: 1,
            attempt: 0,
            participant,
            update_digest: Digest::of_bytes(&participant.to_le_bytes()),
            blob: Digest::of_bytes(b"blob"),
            num_samples: 10 + participant,
            train_loss: 0.5,
            signature: vec![7; 64],
        }
    }

    #[test]
    fn what_was_committed_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let s = SqliteState::open(&path).unwrap();
            let (a, new) = s.enrol(&[1; 32], "a").unwrap();
            assert!(new);
            assert_eq!(a.id, 0);
            let (again, new) = s.enrol(&[1; 32], "other name").unwrap();
            assert!(!new);
            assert_eq!((again.id, again.name.as_str()), (0, "a"));
            assert_eq!(s.enrol(&[2; 32], "b").unwrap().0.id, 1);
            s.open_round(&OpenRoundRecord {
                round: 1,
                attempt: 0,
                selected: vec![0, 1],
                base: Digest::of_bytes(b"base"),
            })
            .unwrap();
            s.record_update(&update(1)).unwrap();
            assert!(
                s.record_update(&update(1)).is_err(),
                "one update per participant and round"
            );
        }
        let s = SqliteState::open(&path).unwrap();
        assert_eq!(s.participants().unwrap().len(), 2);
        let cp = s.checkpoint().unwrap();
        assert_eq!(cp.completed, 0);
        assert_eq!(cp.open.as_ref().unwrap().selected, vec![0, 1]);
        assert_eq!(s.updates(1, 0).unwrap(), vec![update(1)]);

        s.close_round(
            &ClosedRoundRecord {
                round: 1,
                global_digest: Digest::of_bytes(b"g"),
                global_blob: Digest::of_bytes(b"gb"),
                contributors: 1,
                train_loss: 0.5,
                summary: "{}".into(),
            },
            &[("m".into(), Digest::of_bytes(b"m"))],
            &[b"entry".to_vec()],
            &HeadRecord {
                size: 1,
                root: [3; 32],
                timestamp_ms: 9,
                signature: vec![1; 64],
            },
        )
        .unwrap();
        let (entries, heads) = s.ledger().unwrap();
        assert_eq!(entries, vec![b"entry".to_vec()]);
        assert_eq!(heads[0].size, 1);
        let cp = s.checkpoint().unwrap();
        assert_eq!(cp.completed, 1);
        assert_eq!(cp.open, None, "closing a round closes its open record");
        assert_eq!(cp.global_blob, Some(Digest::of_bytes(b"gb")));
        assert_eq!(
            cp.strategy_state,
            vec![("m".to_string(), Digest::of_bytes(b"m"))]
        );
        assert_eq!(s.finished().unwrap(), None);
        s.finish(Some("quorum")).unwrap();
        assert_eq!(s.finished().unwrap(), Some(Some("quorum".into())));
    }

    #[test]
    fn evaluations_are_weighted_by_examples() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteState::open(&dir.path().join("s.db")).unwrap();
        assert!(s.round_evaluations().unwrap().is_empty());
        s.record_evaluation(1, 0, 10, 1.0, 2.0).unwrap();
        s.record_evaluation(1, 1, 30, 0.0, 6.0).unwrap();
        assert!((s.round_evaluations().unwrap()[0].accuracy - 0.25).abs() < 1e-12);
        s.record_evaluation(3, 0, 10, 0.5, 1.0).unwrap();
        s.record_evaluation(2, 0, 0, 0.9, 1.0).unwrap();
        let by_round: Vec<(u64, f64, Option<f64>)> = s
            .round_evaluations()
            .unwrap()
            .into_iter()
            .map(|e| (e.round, e.accuracy, e.loss))
            .collect();
        assert_eq!(by_round, vec![(1, 0.25, Some(5.0)), (3, 0.5, Some(1.0))]);
    }

    #[test]
    fn a_database_from_before_evaluation_losses_gains_the_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let old = rusqlite::Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE evaluations (
                 round INTEGER NOT NULL, participant INTEGER NOT NULL, examples INTEGER NOT NULL,
                 accuracy REAL NOT NULL, PRIMARY KEY (round, participant));
             INSERT INTO evaluations VALUES (1, 0, 10, 0.5);",
        )
        .unwrap();
        drop(old);
        let s = SqliteState::open(&path).unwrap();
        let first = s.round_evaluations().unwrap();
        assert_eq!((first[0].accuracy, first[0].loss), (0.5, None));
        s.record_evaluation(2, 0, 10, 0.75, 1.5).unwrap();
        assert_eq!(s.round_evaluations().unwrap()[1].loss, Some(1.5));
        drop(s);
        // Opening it again finds the column and leaves it be.
        assert_eq!(
            SqliteState::open(&path)
                .unwrap()
                .round_evaluations()
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn a_steward_request_is_recorded_once_and_its_nonce_never_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let pause = StewardActionRecord {
            nonce: "00ff".into(),
            steward: "ab".repeat(32),
            timestamp_ms: 1_700_000_000_000,
            action: "pause".into(),
            participant: None,
            applied: true,
            refusal: String::new(),
        };
        let remove = StewardActionRecord {
            nonce: "0100".into(),
            action: "remove".into(),
            participant: Some(4),
            applied: false,
            refusal: "no participant 4".into(),
            ..pause.clone()
        };
        {
            let s = SqliteState::open(&path).unwrap();
            assert!(s.record_steward_action(&pause).unwrap());
            assert!(s.record_steward_action(&remove).unwrap());
            let replay = StewardActionRecord {
                action: "resume".into(),
                ..pause.clone()
            };
            assert!(!s.record_steward_action(&replay).unwrap(), "a used nonce");
        }
        let s = SqliteState::open(&path).unwrap();
        assert_eq!(s.steward_actions().unwrap(), vec![pause, remove]);
    }
}
