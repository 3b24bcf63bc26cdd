//! Who shares secrets with whom: a Harary graph laid over a seeded random permutation
//! (Bell et al. 2020).
//!
//! Every participant gets `degree` neighbours (half on each side of it in a shuffled ring),
//! so each one's work and messages grow with its degree, about log n, not with n. Everyone
//! derives the same graph from the round's public session identifier, so the graph needs no
//! message of its own and the coordinator cannot choose it.

use rand::SeedableRng;
use rand::seq::SliceRandom;

/// The neighbour graph of one round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Graph {
    /// `position[i]`: where participant `i` sits on the shuffled ring.
    position: Vec<u32>,
    /// `at[p]`: who sits at ring position `p`.
    at: Vec<u32>,
    half: u32,
}

impl Graph {
    /// The graph over `participants` nodes with `degree` neighbours each (`degree` even, or
    /// `participants − 1` for the complete graph; checked by [`crate::Config::check`]),
    /// shuffled by `seed`.
    pub fn new(participants: u32, degree: u32, seed: [u8; 32]) -> Self {
        let mut at: Vec<u32> = (0..participants).collect();
        at.shuffle(&mut rand_chacha::ChaCha20Rng::from_seed(seed));
        let mut position = vec![0; at.len()];
        for (p, &who) in at.iter().enumerate() {
            position[who as usize] = p as u32;
        }
        Self {
            position,
            at,
            half: degree.div_ceil(2),
        }
    }

    /// Participant `i`'s neighbours, in ascending order (empty for an unknown `i`).
    pub fn neighbours(&self, i: u32) -> Vec<u32> {
        let Some(&p) = self.position.get(i as usize) else {
            return Vec::new();
        };
        let n = self.at.len() as u32;
        let mut out: Vec<u32> = (1..=self.half)
            .flat_map(|d| [(p + d) % n, (p + n - d) % n])
            .map(|q| self.at[q as usize])
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Whether `i` and `j` are neighbours (a node is not its own neighbour).
    pub fn adjacent(&self, i: u32, j: u32) -> bool {
        let n = self.at.len() as u32;
        let (Some(&pi), Some(&pj)) = (self.position.get(i as usize), self.position.get(j as usize))
        else {
            return false;
        };
        let d = pi.abs_diff(pj);
        let ring = d.min(n - d);
        i != j && ring <= self.half
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_with_the_stated_degree() {
        for (n, k) in [(10, 4), (100, 60), (101, 8), (7, 6), (8, 7), (2, 1), (2, 0)] {
            let g = Graph::new(n, k, [3; 32]);
            for i in 0..n {
                let ns = g.neighbours(i);
                assert_eq!(ns.len() as u32, k, "n {n} k {k} i {i}");
                for &j in &ns {
                    assert!(g.adjacent(i, j) && g.adjacent(j, i));
                    assert!(g.neighbours(j).contains(&i));
                }
                assert!(!g.adjacent(i, i));
            }
        }
    }

    #[test]
    fn the_seed_shuffles_the_ring() {
        let a = Graph::new(50, 4, [1; 32]);
        let b = Graph::new(50, 4, [2; 32]);
        assert_ne!(a.neighbours(0), b.neighbours(0));
        assert_eq!(a, Graph::new(50, 4, [1; 32]));
    }
}
