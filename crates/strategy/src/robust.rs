//! Aggregation for federations open to participants who may lie.
//!
//! Every rule here works on the participants' *updates*, `Δᵢ = localᵢ − global`, and returns
//! `global + aggregate(Δ)`. None of them weighs by the claimed sample count: a liar can claim
//! any count, so each honest participant counts once.

use harambee_params::ParamSet;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::fedavg::Sampling;
use crate::{Aggregate, Failure, FitConfig, FitResult, Strategy, StrategyError};

/// A robust aggregation rule, and the assumption it rests on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "rule")]
pub enum RobustRule {
    /// Coordinate-wise median (Yin et al. 2018). Tolerates fewer than half of the updates
    /// being arbitrary, per coordinate. Cost: a selection per coordinate, O(n·d).
    Median,
    /// Coordinate-wise trimmed mean (Yin et al. 2018): per coordinate, drop the `beta·n`
    /// largest and smallest values and average the rest. Tolerates up to `beta·n` attackers
    /// (`beta < 0.5`). Cost: a sort of n values per coordinate.
    TrimmedMean {
        /// Fraction trimmed from each end.
        beta: f64,
    },
    /// Krum (Blanchard et al. 2017): the one update whose `n − f − 2` nearest neighbours are
    /// closest. Tolerates `f` attackers when `n ≥ 2f + 3`. Cost: all pairwise distances,
    /// O(n²·d); uses one update's information per round, so it learns slowly on non-IID data.
    Krum {
        /// Attackers tolerated.
        f: usize,
    },
    /// Multi-Krum: the mean of the `m` best-scored updates (`m = n − f` by default). Same
    /// assumption and cost as Krum, with less variance.
    MultiKrum {
        /// Attackers tolerated.
        f: usize,
        /// Updates averaged (default `n − f`).
        m: Option<usize>,
    },
    /// Bulyan (El Mhamdi et al. 2018): pick `n − 2f` updates by repeated Krum, then per
    /// coordinate average the `n − 4f` values closest to their median. Tolerates `f`
    /// attackers when `n ≥ 4f + 3`, including attacks that hide in a few coordinates.
    Bulyan {
        /// Attackers tolerated.
        f: usize,
    },
    /// Norm bounding (Sun et al. 2019): scale each update down to at most `bound` in L2 norm
    /// (the median norm when no bound is given), then average. Limits how far any one
    /// participant can move the model; does not stop many small lies.
    NormBound {
        /// The bound; `None` for the round's median norm.
        bound: Option<f64>,
    },
    /// Centered clipping (Karimireddy et al. 2021): starting from the previous round's
    /// aggregate, repeatedly move by the mean of the updates' differences clipped to `tau`.
    /// Tolerates a minority of attackers with bounded honest variance; O(iterations·n·d).
    CenteredClip {
        /// Clipping radius.
        tau: f64,
        /// Iterations per round.
        iterations: u32,
    },
}

impl RobustRule {
    /// The rule's short name, for logs and the ledger.
    pub fn name(self) -> &'static str {
        match self {
            RobustRule::Median => "median",
            RobustRule::TrimmedMean { .. } => "trimmed-mean",
            RobustRule::Krum { .. } => "krum",
            RobustRule::MultiKrum { .. } => "multi-krum",
            RobustRule::Bulyan { .. } => "bulyan",
            RobustRule::NormBound { .. } => "norm-bound",
            RobustRule::CenteredClip { .. } => "centered-clip",
        }
    }

    /// Checks the settings.
    pub fn validate(self) -> Result<(), StrategyError> {
        let bad = |name, reason: String| Err(StrategyError::InvalidSetting { name, reason });
        match self {
            RobustRule::TrimmedMean { beta } if !(0.0..0.5).contains(&beta) => {
                bad("beta", format!("{beta} must be in [0, 0.5)"))
            }
            RobustRule::NormBound { bound: Some(b) } if !(b.is_finite() && b > 0.0) => {
                bad("bound", format!("{b} must be finite and positive"))
            }
            RobustRule::CenteredClip { tau, iterations }
                if !(tau.is_finite() && tau > 0.0) || iterations == 0 =>
            {
                bad(
                    "tau",
                    format!("tau {tau} must be positive and iterations {iterations} at least 1"),
                )
            }
            _ => Ok(()),
        }
    }

    /// Updates the rule needs at least, for its guarantee to hold.
    pub fn min_updates(self) -> usize {
        match self {
            RobustRule::Krum { f } | RobustRule::MultiKrum { f, .. } => 2 * f + 3,
            RobustRule::Bulyan { f } => 4 * f + 3,
            _ => 1,
        }
    }
}

/// A strategy that combines updates with a [`RobustRule`].
#[derive(Debug, Clone)]
pub struct Robust {
    sampling: Sampling,
    fit: FitConfig,
    rule: RobustRule,
    /// Centered clipping's centre: the previous round's aggregate update.
    center: Option<ParamSet>,
}

impl Robust {
    /// A robust strategy selecting `fraction` of participants (at least `min_participants`).
    pub fn new(
        fraction: f64,
        min_participants: usize,
        fit: FitConfig,
        rule: RobustRule,
    ) -> Result<Self, StrategyError> {
        rule.validate()?;
        Ok(Self {
            sampling: Sampling {
                fraction,
                min_participants,
            },
            fit,
            rule,
            center: None,
        })
    }
}

impl Strategy for Robust {
    fn name(&self) -> &'static str {
        self.rule.name()
    }

    fn sample_size(&self, available: usize) -> usize {
        self.sampling.size(available)
    }

    fn configure_fit(&self, _round: u64) -> FitConfig {
        self.fit.clone()
    }

    fn aggregate_fit(
        &mut self,
        _round: u64,
        global: &ParamSet,
        results: &[FitResult],
        _failures: &[Failure],
    ) -> Result<Aggregate, StrategyError> {
        let n = results.len();
        if n < self.rule.min_updates() {
            return Ok(Aggregate::KeepPrevious {
                reason: format!(
                    "{} needs at least {} updates, {n} arrived",
                    self.rule.name(),
                    self.rule.min_updates()
                ),
            });
        }
        let deltas = results
            .iter()
            .map(|r| Ok(r.params.sub(global)?.into_values()))
            .collect::<Result<Vec<Vec<f32>>, StrategyError>>()?;
        let combined = match self.rule {
            RobustRule::Median => coordinate_wise(&deltas, median),
            RobustRule::TrimmedMean { beta } => {
                let k = (beta * n as f64).floor() as usize;
                coordinate_wise(&deltas, |v| trimmed_mean(v, k))
            }
            RobustRule::Krum { f } => deltas[krum_order(&deltas, f)[0]].clone(),
            RobustRule::MultiKrum { f, m } => {
                let order = krum_order(&deltas, f);
                let take = m.unwrap_or(n - f).clamp(1, n);
                mean_of(order[..take].iter().map(|&i| deltas[i].as_slice()))
            }
            RobustRule::Bulyan { f } => bulyan(&deltas, f),
            RobustRule::NormBound { bound } => norm_bound(&deltas, bound),
            RobustRule::CenteredClip { tau, iterations } => {
                let start = self
                    .center
                    .as_ref()
                    .map_or_else(|| vec![0.0; global.len()], |c| c.values().to_vec());
                centered_clip(&deltas, start, tau, iterations)
            }
        };
        if let RobustRule::CenteredClip { .. } = self.rule {
            self.center = Some(ParamSet::from_values(
                global.layout().clone(),
                combined.clone(),
            )?);
        }
        let mut next = global.clone();
        next.values_mut()
            .iter_mut()
            .zip(&combined)
            .for_each(|(x, d)| *x += d);
        Ok(Aggregate::Updated(next))
    }

    fn state(&self) -> Vec<(&'static str, ParamSet)> {
        self.center
            .clone()
            .map(|c| ("center", c))
            .into_iter()
            .collect()
    }

    fn restore_state(&mut self, state: Vec<(String, ParamSet)>) -> Result<(), StrategyError> {
        for (name, value) in state {
            if name == "center" && matches!(self.rule, RobustRule::CenteredClip { .. }) {
                self.center = Some(value);
            } else {
                return Err(StrategyError::InvalidSetting {
                    name: "state",
                    reason: format!("{} keeps no state named {name:?}", self.name()),
                });
            }
        }
        Ok(())
    }
}

/// Applies `reduce` to each coordinate's n values, in parallel blocks.
fn coordinate_wise(deltas: &[Vec<f32>], reduce: impl Fn(&mut [f32]) -> f32 + Sync) -> Vec<f32> {
    let d = deltas[0].len();
    let mut out = vec![0.0f32; d];
    const BLOCK: usize = 4096;
    out.par_chunks_mut(BLOCK)
        .enumerate()
        .for_each(|(b, chunk)| {
            let mut column = vec![0.0f32; deltas.len()];
            for (k, slot) in chunk.iter_mut().enumerate() {
                let j = b * BLOCK + k;
                for (c, delta) in column.iter_mut().zip(deltas) {
                    *c = delta[j];
                }
                *slot = reduce(&mut column);
            }
        });
    out
}

/// The median of `v` (the mean of the two middle values for an even count).
fn median(v: &mut [f32]) -> f32 {
    let n = v.len();
    let (_, hi, _) = v.select_nth_unstable_by(n / 2, f32::total_cmp);
    let hi = *hi;
    if n % 2 == 1 {
        hi
    } else {
        let lo = v[..n / 2].iter().copied().fold(f32::NEG_INFINITY, f32::max);
        (lo + hi) / 2.0
    }
}

/// The mean of `v` without its `k` smallest and `k` largest values.
fn trimmed_mean(v: &mut [f32], k: usize) -> f32 {
    v.sort_unstable_by(f32::total_cmp);
    let kept = &v[k..v.len() - k];
    kept.iter().map(|&x| f64::from(x)).sum::<f64>() as f32 / kept.len() as f32
}

fn squared_distance(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let d = f64::from(x - y);
            d * d
        })
        .sum()
}

/// Indices of `deltas` from best to worst Krum score: the sum of squared distances to the
/// `n − f − 2` nearest others. Ties go to the lower index, so the order is deterministic.
fn krum_order(deltas: &[Vec<f32>], f: usize) -> Vec<usize> {
    let n = deltas.len();
    let distances: Vec<Vec<f64>> = (0..n)
        .into_par_iter()
        .map(|i| {
            (0..n)
                .map(|j| {
                    if i == j {
                        0.0
                    } else {
                        squared_distance(&deltas[i], &deltas[j])
                    }
                })
                .collect()
        })
        .collect();
    let neighbours = n.saturating_sub(f + 2).max(1);
    let scores: Vec<f64> = (0..n)
        .map(|i| {
            let mut others: Vec<f64> = (0..n)
                .filter(|&j| j != i)
                .map(|j| distances[i][j])
                .collect();
            others.sort_unstable_by(f64::total_cmp);
            others.iter().take(neighbours).sum()
        })
        .collect();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
    order
}

fn mean_of<'a>(vectors: impl Iterator<Item = &'a [f32]>) -> Vec<f32> {
    let mut sum: Vec<f64> = Vec::new();
    let mut count = 0usize;
    for v in vectors {
        if sum.is_empty() {
            sum = vec![0.0; v.len()];
        }
        sum.iter_mut().zip(v).for_each(|(s, &x)| *s += f64::from(x));
        count += 1;
    }
    sum.into_iter()
        .map(|s| (s / count.max(1) as f64) as f32)
        .collect()
}

/// Bulyan: `n − 2f` updates chosen by repeated Krum, then per coordinate the mean of the
/// `n − 4f` values closest to the median.
fn bulyan(deltas: &[Vec<f32>], f: usize) -> Vec<f32> {
    let n = deltas.len();
    let theta = n - 2 * f;
    let mut remaining: Vec<usize> = (0..n).collect();
    let mut chosen = Vec::with_capacity(theta);
    while chosen.len() < theta {
        let subset: Vec<Vec<f32>> = remaining.iter().map(|&i| deltas[i].clone()).collect();
        let best = krum_order(&subset, f)[0];
        chosen.push(remaining.remove(best));
    }
    chosen.sort_unstable();
    let selected: Vec<Vec<f32>> = chosen.iter().map(|&i| deltas[i].clone()).collect();
    let keep = theta - 2 * f;
    coordinate_wise(&selected, |v| {
        let m = median(&mut v.to_vec());
        v.sort_unstable_by(|a, b| (a - m).abs().total_cmp(&(b - m).abs()));
        v[..keep].iter().map(|&x| f64::from(x)).sum::<f64>() as f32 / keep as f32
    })
}

fn norm(v: &[f32]) -> f64 {
    v.iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt()
}

/// Each update scaled to at most `bound` (or the median norm), then averaged.
fn norm_bound(deltas: &[Vec<f32>], bound: Option<f64>) -> Vec<f32> {
    let norms: Vec<f64> = deltas.iter().map(|d| norm(d)).collect();
    let bound = bound.unwrap_or_else(|| {
        let mut sorted = norms.clone();
        sorted.sort_unstable_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    });
    let clipped: Vec<Vec<f32>> = deltas
        .iter()
        .zip(&norms)
        .map(|(d, &n)| {
            let scale = if n > bound { (bound / n) as f32 } else { 1.0 };
            d.iter().map(|x| x * scale).collect()
        })
        .collect();
    mean_of(clipped.iter().map(Vec::as_slice))
}

/// Centered clipping: `v ← v + mean(clip(Δᵢ − v, τ))`, `iterations` times from `start`.
fn centered_clip(deltas: &[Vec<f32>], start: Vec<f32>, tau: f64, iterations: u32) -> Vec<f32> {
    let mut v = start;
    for _ in 0..iterations {
        let mut step = vec![0.0f64; v.len()];
        for d in deltas {
            let diff_norm = d
                .iter()
                .zip(&v)
                .map(|(x, c)| f64::from(x - c).powi(2))
                .sum::<f64>()
                .sqrt();
            let scale = if diff_norm > tau {
                tau / diff_norm
            } else {
                1.0
            };
            step.iter_mut()
                .zip(d.iter().zip(&v))
                .for_each(|(s, (x, c))| *s += scale * f64::from(x - c));
        }
        let n = deltas.len() as f64;
        v.iter_mut()
            .zip(&step)
            .for_each(|(c, s)| *c += (s / n) as f32);
    }
    v
}
