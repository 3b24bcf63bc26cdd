//! Malicious participants, for studying robust aggregation before a federation opens its
//! doors. Attackers are a fixed set of virtual participants, chosen from the seed; they
//! train (on flipped labels for [`Attack::LabelFlip`]) and then corrupt what they send.

use std::fmt;
use std::str::FromStr;

use harambee_params::ParamSet;
use harambee_strategy::ParticipantId;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha20Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

use crate::SimError;

/// What attackers do to their updates (`Δ = local − global`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Attack {
    /// Send `−scale·Δ`: push the model the other way.
    SignFlip {
        /// How hard.
        scale: f32,
    },
    /// Send `factor·Δ` ("boosting"): one participant moves the model as much as many.
    Scaling {
        /// The factor.
        factor: f32,
    },
    /// Send the global model plus Gaussian noise of standard deviation `sigma`.
    Noise {
        /// Standard deviation per coordinate.
        sigma: f32,
    },
    /// Train on labels mapped `y → C − 1 − y`, then send honestly.
    LabelFlip,
    /// "A little is enough" (Baruch et al. 2019): colluding attackers who see the honest
    /// updates send `μ − z·σ` per coordinate, with `z` chosen so that the lie stays within
    /// the spread of honest updates that a majority-based rule accepts.
    Alie,
    /// Inner-product manipulation (Xie et al. 2020): send `−ε·μ`, the honest mean reversed
    /// and shrunk, so that the aggregate's inner product with the true direction turns
    /// negative while looking small.
    Ipm {
        /// ε.
        epsilon: f32,
    },
}

impl Attack {
    /// Whether attackers train on flipped labels.
    pub fn flips_labels(self) -> bool {
        matches!(self, Attack::LabelFlip)
    }
}

impl FromStr for Attack {
    type Err = SimError;

    /// `sign-flip[:SCALE]` (4), `scaling[:FACTOR]` (10), `noise[:SIGMA]` (1), `label-flip`,
    /// `alie`, `ipm[:EPSILON]` (0.1).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, arg) = match s.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (s, None),
        };
        let number = |default: f32| -> Result<f32, SimError> {
            arg.map_or(Ok(default), |a| {
                a.parse().map_err(|_| {
                    SimError::InvalidSetting(format!("--attack {s}: {a:?} is not a number"))
                })
            })
        };
        Ok(match name {
            "sign-flip" => Attack::SignFlip {
                scale: number(4.0)?,
            },
            "scaling" => Attack::Scaling {
                factor: number(10.0)?,
            },
            "noise" => Attack::Noise {
                sigma: number(1.0)?,
            },
            "label-flip" => Attack::LabelFlip,
            "alie" => Attack::Alie,
            "ipm" => Attack::Ipm {
                epsilon: number(0.1)?,
            },
            other => {
                return Err(SimError::InvalidSetting(format!(
                    "unknown attack {other:?}; known: sign-flip, scaling, noise, label-flip, alie, ipm"
                )));
            }
        })
    }
}

impl fmt::Display for Attack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Attack::SignFlip { scale } => write!(f, "sign-flip:{scale}"),
            Attack::Scaling { factor } => write!(f, "scaling:{factor}"),
            Attack::Noise { sigma } => write!(f, "noise:{sigma}"),
            Attack::LabelFlip => write!(f, "label-flip"),
            Attack::Alie => write!(f, "alie"),
            Attack::Ipm { epsilon } => write!(f, "ipm:{epsilon}"),
        }
    }
}

/// Which of `clients` participants are attackers: exactly `round(fraction·clients)` of them,
/// chosen by a shuffle seeded from `seed`.
pub(crate) fn choose_attackers(clients: usize, fraction: f64, seed: u64) -> Vec<bool> {
    let count = (fraction * clients as f64).round() as usize;
    let mut order: Vec<usize> = (0..clients).collect();
    order.shuffle(&mut ChaCha20Rng::seed_from_u64(seed ^ 0xA77A_C4E5));
    let mut attacker = vec![false; clients];
    for &i in &order[..count.min(clients)] {
        attacker[i] = true;
    }
    attacker
}

/// Rewrites the attackers' parameters in place. `results` are this round's results in
/// participant order; honest ones are read (by the omniscient attacks), never changed.
pub(crate) fn corrupt(
    attack: Attack,
    global: &ParamSet,
    results: &mut [(ParticipantId, &mut ParamSet)],
    attacker: &[bool],
    round_seed: u64,
) {
    let is_attacker = |p: ParticipantId| attacker.get(p.0 as usize).copied().unwrap_or(false);
    let attackers = results.iter().filter(|(p, _)| is_attacker(*p)).count();
    if attackers == 0 {
        return;
    }
    let honest: Vec<&ParamSet> = results
        .iter()
        .filter(|(p, _)| !is_attacker(*p))
        .map(|(_, params)| &**params)
        .collect();
    let (mean, std) = honest_statistics(global, &honest);
    let any_honest = !honest.is_empty();
    drop(honest);
    let z = alie_z(results.len(), attackers);
    for (p, params) in results.iter_mut().filter(|(p, _)| is_attacker(*p)) {
        let g = global.values();
        let x = params.values_mut();
        match attack {
            Attack::SignFlip { scale } => x
                .iter_mut()
                .zip(g)
                .for_each(|(x, g)| *x = g - scale * (*x - g)),
            Attack::Scaling { factor } => x
                .iter_mut()
                .zip(g)
                .for_each(|(x, g)| *x = g + factor * (*x - g)),
            Attack::Noise { sigma } => {
                let mut rng = ChaCha20Rng::seed_from_u64(round_seed ^ p.0.rotate_left(17));
                if let Ok(normal) = Normal::new(0.0f32, sigma) {
                    x.iter_mut()
                        .zip(g)
                        .for_each(|(x, g)| *x = g + normal.sample(&mut rng));
                }
            }
            Attack::LabelFlip => {}
            Attack::Alie if any_honest => {
                for (((x, g), m), s) in x.iter_mut().zip(g).zip(&mean).zip(&std) {
                    *x = g + m - z * s;
                }
            }
            Attack::Ipm { epsilon } if any_honest => {
                x.iter_mut()
                    .zip(g)
                    .zip(&mean)
                    .for_each(|((x, g), m)| *x = g - epsilon * m);
            }
            Attack::Alie | Attack::Ipm { .. } => {}
        }
    }
}

/// Per-coordinate mean and standard deviation of the honest updates.
fn honest_statistics(global: &ParamSet, honest: &[&ParamSet]) -> (Vec<f32>, Vec<f32>) {
    let d = global.len();
    let n = honest.len().max(1) as f64;
    let mut sum = vec![0.0f64; d];
    let mut sum_sq = vec![0.0f64; d];
    for h in honest {
        for (j, (x, g)) in h.values().iter().zip(global.values()).enumerate() {
            let delta = f64::from(x - g);
            sum[j] += delta;
            sum_sq[j] += delta * delta;
        }
    }
    let mean: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
    let std = sum
        .iter()
        .zip(&sum_sq)
        .map(|(s, q)| ((q / n - (s / n).powi(2)).max(0.0)).sqrt() as f32)
        .collect();
    (mean, std)
}

/// Baruch et al.'s `z_max`: with `s = ⌊n/2 + 1⌋ − f` honest updates needed for a majority,
/// the largest `z` with `Φ(z) < (n − s)/n`.
fn alie_z(n: usize, f: usize) -> f32 {
    let s = (n / 2 + 1).saturating_sub(f);
    let p = (n - s.min(n)) as f64 / n.max(1) as f64;
    inverse_normal_cdf(p.clamp(1e-6, 1.0 - 1e-6)).max(0.0) as f32
}

/// Φ⁻¹(p) by Acklam's rational approximation (relative error below 1.2e-9).
fn inverse_normal_cdf(p: f64) -> f64 {
    const A: [f64; 6] = [
        -39.696_830_286_653_76,
        220.946_098_424_520_5,
        -275.928_510_446_968_7,
        138.357_751_867_269,
        -30.664_798_066_147_16,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -54.476_098_798_224_06,
        161.585_836_858_040_9,
        -155.698_979_859_886_6,
        66.801_311_887_719_72,
        -13.280_681_552_885_72,
    ];
    const C: [f64; 6] = [
        -0.007_784_894_002_430_293,
        -0.322_396_458_041_136_4,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        0.007_784_695_709_041_462,
        0.322_467_129_070_039_8,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_normal_matches_known_quantiles() {
        for (p, z) in [
            (0.5, 0.0),
            (0.975, 1.959_964),
            (0.84134, 0.999_98),
            (0.01, -2.326_348),
        ] {
            assert!((inverse_normal_cdf(p) - z).abs() < 1e-4, "{p}");
        }
    }

    #[test]
    fn exactly_the_fraction_are_attackers_and_the_choice_repeats() {
        let a = choose_attackers(100, 0.2, 5);
        assert_eq!(a.iter().filter(|&&x| x).count(), 20);
        assert_eq!(a, choose_attackers(100, 0.2, 5));
        assert_ne!(a, choose_attackers(100, 0.2, 6));
    }
}
