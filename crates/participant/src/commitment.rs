//! A member's commitment to its local data set: a Merkle root over its examples, sent once
//! its data is loaded and recorded in the ledger (`data-commitment`), so that in a dispute
//! an auditor given the data can check it is the data the member committed to
//! (`harambee ledger check-data`). The root reveals nothing of the data beyond its size.

use harambee_learn::Split;
use harambee_ledger::merkle;

/// The RFC 6962 Merkle root over the sorted leaf hashes of every example, training and
/// held-out (each tagged with its split): a commitment to the set, whatever order its files
/// were read in.
pub fn data_root(split: &Split) -> [u8; 32] {
    merkle::set_root(split.tagged_examples())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use harambee_learn::{Dataset, Features};

    use super::*;

    fn split(labels: &[u32], pixels: &[u8]) -> Split {
        let set = |labels: &[u32], pixels: &[u8]| {
            Arc::new(Dataset {
                features: Features::Pixels {
                    height: 1,
                    width: 2,
                    values: pixels.to_vec(),
                },
                labels: labels.to_vec(),
                class_names: vec!["a".into(), "b".into()],
            })
        };
        Split {
            train: set(labels, pixels),
            test: set(&[0], &[9, 9]),
        }
    }

    #[test]
    fn the_root_commits_to_the_set_not_its_order() {
        let root = data_root(&split(&[0, 1], &[1, 2, 3, 4]));
        assert_eq!(root, data_root(&split(&[1, 0], &[3, 4, 1, 2])));
        assert_ne!(
            root,
            data_root(&split(&[0, 1], &[1, 2, 3, 5])),
            "a pixel changed"
        );
        assert_ne!(
            root,
            data_root(&split(&[1, 1], &[1, 2, 3, 4])),
            "a label changed"
        );
        assert_ne!(root, data_root(&split(&[0], &[1, 2])), "an example removed");
    }
}
