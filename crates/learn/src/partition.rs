//! Splitting a training set among participants: the federation's data heterogeneity.

use std::fmt;
use std::str::FromStr;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha20Rng;
use rand_distr::{Distribution, Gamma};
use serde::{Deserialize, Serialize};

use crate::{Dataset, LearnError};

/// How examples are dealt to participants. Every partition uses each example at most once;
/// IID, shards and Dirichlet use every example exactly once.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Partition {
    /// Shuffled and dealt evenly.
    Iid,
    /// Per class, proportions drawn from Dirichlet(α): small α, few classes per participant
    /// (Hsu et al. 2019).
    Dirichlet {
        /// Concentration α.
        alpha: f64,
    },
    /// McMahan et al. 2017's pathological split: sort by label, cut into `2 × participants`
    /// equal shards, give each participant two at random (most hold two classes).
    Shards,
    /// Natural: each participant holds only a few classes (a "community" with its own
    /// languages), classes dealt round-robin, examples of a class split among its holders.
    Natural {
        /// Classes per participant.
        classes_per_participant: usize,
    },
}

impl Partition {
    /// Deals the examples of `data` to `participants`, deterministically from `seed`.
    pub fn split(
        &self,
        data: &Dataset,
        participants: usize,
        seed: u64,
    ) -> Result<Vec<Vec<usize>>, LearnError> {
        if participants == 0 || participants > data.len() {
            return Err(LearnError::InvalidSetting(format!(
                "cannot split {} examples among {participants} participants",
                data.len()
            )));
        }
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        Ok(match *self {
            Partition::Iid => {
                let mut all: Vec<usize> = (0..data.len()).collect();
                all.shuffle(&mut rng);
                deal_evenly(&all, participants)
            }
            Partition::Shards => shards(data, participants, &mut rng),
            Partition::Dirichlet { alpha } => dirichlet(data, participants, alpha, &mut rng)?,
            Partition::Natural {
                classes_per_participant,
            } => natural(data, participants, classes_per_participant.max(1), &mut rng),
        })
    }
}

fn deal_evenly(items: &[usize], parts: usize) -> Vec<Vec<usize>> {
    let base = items.len() / parts;
    let extra = items.len() % parts;
    let mut out = Vec::with_capacity(parts);
    let mut at = 0;
    for p in 0..parts {
        let n = base + usize::from(p < extra);
        out.push(items[at..at + n].to_vec());
        at += n;
    }
    out
}

fn by_class(data: &Dataset) -> Vec<Vec<usize>> {
    let mut classes = vec![Vec::new(); data.num_classes()];
    for (i, &l) in data.labels.iter().enumerate() {
        classes[l as usize].push(i);
    }
    classes
}

fn shards(data: &Dataset, participants: usize, rng: &mut ChaCha20Rng) -> Vec<Vec<usize>> {
    // A stable sort by label, ties by index, as in the paper.
    let mut sorted: Vec<usize> = (0..data.len()).collect();
    sorted.sort_by_key(|&i| (data.labels[i], i));
    let shards = deal_evenly(&sorted, (2 * participants).min(data.len()));
    let mut order: Vec<usize> = (0..shards.len()).collect();
    order.shuffle(rng);
    let mut out = vec![Vec::new(); participants];
    for (k, s) in order.into_iter().enumerate() {
        out[k % participants].extend_from_slice(&shards[s]);
    }
    out
}

fn dirichlet(
    data: &Dataset,
    participants: usize,
    alpha: f64,
    rng: &mut ChaCha20Rng,
) -> Result<Vec<Vec<usize>>, LearnError> {
    let gamma = Gamma::new(alpha, 1.0).map_err(|_| {
        LearnError::InvalidSetting(format!("dirichlet alpha {alpha} must be positive"))
    })?;
    let mut out = vec![Vec::new(); participants];
    for mut members in by_class(data) {
        members.shuffle(rng);
        // Proportions ~ Dir(α), drawn as normalised Gamma(α, 1) samples.
        let draws: Vec<f64> = (0..participants)
            .map(|_| gamma.sample(rng).max(1e-300))
            .collect();
        let total: f64 = draws.iter().sum();
        let mut cut = 0usize;
        let mut acc = 0.0;
        for (p, d) in draws.iter().enumerate() {
            acc += d / total;
            let end = if p + 1 == participants {
                members.len()
            } else {
                (acc * members.len() as f64).round() as usize
            };
            let end = end.clamp(cut, members.len());
            out[p].extend_from_slice(&members[cut..end]);
            cut = end;
        }
    }
    Ok(out)
}

fn natural(
    data: &Dataset,
    participants: usize,
    per: usize,
    rng: &mut ChaCha20Rng,
) -> Vec<Vec<usize>> {
    let classes = by_class(data);
    let mut class_order: Vec<usize> = (0..classes.len()).collect();
    class_order.shuffle(rng);
    // Participant p holds classes p·per .. p·per + per of the shuffled order; each time the
    // deal wraps around, it shifts by half a hand, so that participants who share classes do
    // not hold identical sets.
    let n = classes.len();
    let mut holders = vec![Vec::new(); n];
    for p in 0..participants {
        for k in 0..per {
            let position = p * per + k;
            let c = class_order[(position + (position / n) * per.div_ceil(2)) % n];
            if !holders[c].contains(&p) {
                holders[c].push(p);
            }
        }
    }
    let mut out = vec![Vec::new(); participants];
    for (c, members) in classes.iter().enumerate() {
        if holders[c].is_empty() {
            continue;
        }
        for (part, share) in holders[c]
            .iter()
            .zip(deal_evenly(members, holders[c].len()))
        {
            out[*part].extend(share);
        }
    }
    out
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Partition::Iid => write!(f, "iid"),
            Partition::Dirichlet { alpha } => write!(f, "dirichlet:{alpha}"),
            Partition::Shards => write!(f, "shards"),
            Partition::Natural {
                classes_per_participant,
            } => write!(f, "natural:{classes_per_participant}"),
        }
    }
}

impl FromStr for Partition {
    type Err = LearnError;

    /// `iid`, `shards`, `dirichlet:ALPHA` (default 0.5), `natural:K` (default 3).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, arg) = s.split_once(':').map_or((s, None), |(n, a)| (n, Some(a)));
        let bad = || {
            LearnError::InvalidSetting(format!(
                "unknown partition {s:?}; use iid, shards, dirichlet:ALPHA or natural:K"
            ))
        };
        Ok(match (name, arg) {
            ("iid", None) => Partition::Iid,
            ("shards", None) => Partition::Shards,
            ("dirichlet", a) => Partition::Dirichlet {
                alpha: a.map_or(Ok(0.5), str::parse).map_err(|_| bad())?,
            },
            ("natural", a) => Partition::Natural {
                classes_per_participant: a.map_or(Ok(3), str::parse).map_err(|_| bad())?,
            },
            _ => return Err(bad()),
        })
    }
}

/// The examples of `shard` (every `count`-th from `index` of `examples`), or all of them when
/// the round names no shard: a community worker's part of the shared corpus in one round.
pub fn shard(examples: usize, shard: Option<(u32, u32)>) -> Result<Vec<usize>, LearnError> {
    let Some((index, count)) = shard else {
        return Ok((0..examples).collect());
    };
    if count == 0 || index >= count {
        return Err(LearnError::InvalidSetting(format!(
            "the coordinator assigned shard {index} of {count}, which does not exist"
        )));
    }
    let picked: Vec<usize> = (index as usize..examples).step_by(count as usize).collect();
    if picked.is_empty() {
        return Err(LearnError::InvalidSetting(format!(
            "shard {index} of {count} of {examples} training chunks is empty: the corpus here is too small"
        )));
    }
    Ok(picked)
}

#[cfg(test)]
mod shard_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn shards_partition_the_examples_and_impossible_ones_are_refused() {
        assert_eq!(shard(5, None).unwrap(), vec![0, 1, 2, 3, 4]);
        let mut seen: Vec<usize> = (0..3)
            .flat_map(|i| shard(10, Some((i, 3))).unwrap())
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        assert_eq!(shard(10, Some((1, 3))).unwrap(), vec![1, 4, 7]);
        for bad in [(0, 0), (3, 3), (7, 8)] {
            assert!(shard(5, Some(bad)).is_err(), "{bad:?}");
        }
    }
}
