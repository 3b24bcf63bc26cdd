//! The privacy accountant: Rényi differential privacy of the Poisson-subsampled Gaussian
//! mechanism (Mironov 2017; Mironov, Talwar and Zhang 2019), composed over rounds and
//! converted to (ε, δ).
//!
//! One round of DP-FedAvg (McMahan et al. 2018) samples each participant with probability
//! `q`, clips each update to norm `C`, and adds Gaussian noise of standard deviation `σ·C`
//! to the sum: a subsampled Gaussian mechanism with noise multiplier `σ`. Its RDP at order
//! `α` is `log(A_α) / (α − 1)`, with `A_α` the α-th moment of the privacy-loss ratio of the
//! mixture `(1 − q)·N(0, σ²) + q·N(1, σ²)` against `N(0, σ²)`; RDP adds up over rounds; the
//! best order gives ε through the conversion of Canonne, Kamath and Steinke 2020
//! (Proposition 12): `ε = rdp + log(1 − 1/α) − log(δ·α)/(α − 1)`.

use serde::{Deserialize, Serialize};

/// The orders tried: 1.1 to 10.9 by tenths, 11 to 63, and 128 to 1024 by doubling (the
/// usual grid, so that results are comparable with other accountants).
pub fn default_orders() -> Vec<f64> {
    let mut orders: Vec<f64> = (11..110).map(|t| f64::from(t) / 10.0).collect();
    orders.extend((11..64).map(f64::from));
    orders.extend([128.0, 256.0, 512.0, 1024.0]);
    orders
}

/// An RDP accountant over a fixed grid of orders.
#[derive(Debug, Clone, PartialEq)]
pub struct RdpAccountant {
    orders: Vec<f64>,
    rdp: Vec<f64>,
}

impl Default for RdpAccountant {
    fn default() -> Self {
        let orders = default_orders();
        let rdp = vec![0.0; orders.len()];
        Self { orders, rdp }
    }
}

impl RdpAccountant {
    /// Adds `steps` rounds of the Gaussian mechanism with noise multiplier `sigma`, each
    /// participant sampled with probability `q`.
    pub fn compose_subsampled_gaussian(&mut self, q: f64, sigma: f64, steps: u64) {
        for (r, &alpha) in self.rdp.iter_mut().zip(&self.orders) {
            *r += steps as f64 * rdp_subsampled_gaussian(q, sigma, alpha);
        }
    }

    /// The smallest ε over the orders for this δ, and the order that gives it.
    pub fn epsilon(&self, delta: f64) -> (f64, f64) {
        self.orders
            .iter()
            .zip(&self.rdp)
            .map(|(&alpha, &rdp)| (epsilon_from_rdp(alpha, rdp, delta), alpha))
            .fold((f64::INFINITY, 0.0), |best, cur| {
                if cur.0 < best.0 { cur } else { best }
            })
    }
}

/// ε from RDP at one order (Canonne, Kamath and Steinke 2020, Proposition 12).
fn epsilon_from_rdp(alpha: f64, rdp: f64, delta: f64) -> f64 {
    if delta.is_nan() || delta <= 0.0 || rdp.is_nan() {
        return f64::INFINITY;
    }
    if rdp <= 0.0 || delta * delta + (-rdp).exp_m1() > 0.0 {
        // Tiny divergence: δ ≥ √(1 − e^{−KL}) already.
        return 0.0;
    }
    if alpha <= 1.01 {
        return f64::INFINITY;
    }
    (rdp + (-1.0 / alpha).ln_1p() - (delta * alpha).ln() / (alpha - 1.0)).max(0.0)
}

/// RDP at order `alpha` of one round of the Poisson-subsampled Gaussian mechanism.
pub fn rdp_subsampled_gaussian(q: f64, sigma: f64, alpha: f64) -> f64 {
    if q <= 0.0 {
        return 0.0;
    }
    if sigma <= 0.0 || !alpha.is_finite() {
        return f64::INFINITY;
    }
    if q >= 1.0 {
        return alpha / (2.0 * sigma * sigma);
    }
    let log_a = if alpha.fract() == 0.0 {
        log_a_integer(q, sigma, alpha as u64)
    } else {
        log_a_fractional(q, sigma, alpha)
    };
    log_a / (alpha - 1.0)
}

/// `log(a + b)` from `log a` and `log b`.
fn log_add(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a > b { (a, b) } else { (b, a) };
    if lo == f64::NEG_INFINITY {
        return hi;
    }
    hi + (lo - hi).exp().ln_1p()
}

/// For integer α: `A_α = Σᵢ C(α, i) qⁱ (1 − q)^{α−i} exp((i² − i) / 2σ²)`, in log space.
fn log_a_integer(q: f64, sigma: f64, alpha: u64) -> f64 {
    let mut log_a = f64::NEG_INFINITY;
    let mut log_binom = 0.0; // log C(α, 0)
    for i in 0..=alpha {
        if i > 0 {
            log_binom += ((alpha - i + 1) as f64).ln() - (i as f64).ln();
        }
        let i_f = i as f64;
        let term = log_binom
            + i_f * q.ln()
            + (alpha as f64 - i_f) * (-q).ln_1p()
            + (i_f * i_f - i_f) / (2.0 * sigma * sigma);
        log_a = log_add(log_a, term);
    }
    log_a
}

/// For fractional α: the two halves of the integral split at `z₀ = σ² log(1/q − 1) + ½`,
/// each a series with generalised binomial coefficients and erfc tails (Mironov, Talwar and
/// Zhang 2019, section 3.3). Terms are summed in absolute value, which bounds `A_α` from
/// above: conservative, never optimistic. A series that has not settled after 1,000 terms
/// gives infinity, which takes the order out of the minimum.
fn log_a_fractional(q: f64, sigma: f64, alpha: f64) -> f64 {
    let (mut log_a0, mut log_a1) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    let (mut last_s0, mut last_s1) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    let z0 = sigma * sigma * (1.0 / q - 1.0).ln() + 0.5;
    let mut log_coef = 0.0f64; // log |C(α, 0)|
    for step in 0..1000u32 {
        let i = f64::from(step);
        let j = alpha - i;
        let log_t0 = log_coef + i * q.ln() + j * (-q).ln_1p();
        let log_t1 = log_coef + j * q.ln() + i * (-q).ln_1p();
        let log_e0 = 0.5f64.ln() + log_erfc((i - z0) / (std::f64::consts::SQRT_2 * sigma));
        let log_e1 = 0.5f64.ln() + log_erfc((z0 - j) / (std::f64::consts::SQRT_2 * sigma));
        let log_s0 = log_t0 + (i * i - i) / (2.0 * sigma * sigma) + log_e0;
        let log_s1 = log_t1 + (j * j - j) / (2.0 * sigma * sigma) + log_e1;
        log_a0 = log_add(log_a0, log_s0);
        log_a1 = log_add(log_a1, log_s1);
        let total = log_add(log_a0, log_a1);
        if log_s0 < last_s0 && log_s1 < last_s1 && log_s0.max(log_s1) < total - 30.0 {
            return total;
        }
        (last_s0, last_s1) = (log_s0, log_s1);
        // |C(α, i + 1)| = |C(α, i)| · |α − i| / (i + 1).
        log_coef += ((alpha - i).abs() / (i + 1.0)).ln();
    }
    f64::INFINITY
}

/// `log(erfc(x))`, accurate far into the tail.
fn log_erfc(x: f64) -> f64 {
    if x < 5.0 {
        return libm::erfc(x).ln();
    }
    // The asymptotic series of erfc at infinity.
    let x2 = x * x;
    -std::f64::consts::PI.ln() / 2.0 - x.ln() - x2 - 0.5 / x2 + 0.625 / (x2 * x2)
        - 37.0 / 24.0 / (x2 * x2 * x2)
        + 353.0 / 64.0 / (x2 * x2 * x2 * x2)
}

/// The smallest noise multiplier (to 0.1%) that keeps `steps` rounds at sampling rate `q`
/// within `(epsilon, delta)`; `None` if even σ = 1000 does not.
pub fn noise_multiplier_for(epsilon: f64, delta: f64, q: f64, steps: u64) -> Option<f64> {
    let spent = |sigma: f64| {
        let mut acc = RdpAccountant::default();
        acc.compose_subsampled_gaussian(q, sigma, steps);
        acc.epsilon(delta).0
    };
    let (mut lo, mut hi) = (0.01, 1000.0);
    if spent(hi) > epsilon {
        return None;
    }
    while hi / lo > 1.001 {
        let mid = (lo * hi).sqrt();
        if spent(mid) > epsilon {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(hi)
}

/// Where DP-FedAvg's Gaussian noise is added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoisePlacement {
    /// The coordinator adds all the noise to the sum: it sees the noiseless sum (or, without
    /// secure aggregation, each clipped update).
    #[default]
    Central,
    /// Each participant adds its share, `σ/√m` for `m` expected contributors, to its clipped
    /// update; with secure aggregation the coordinator only ever holds a noised sum.
    Distributed,
}

/// Adaptive clipping (Andrew et al. 2021): the bound follows a target quantile of the update
/// norms. Each round the participants report, privately, whether their update was within the
/// bound; with `b̃` the noised fraction within, the bound becomes `C · exp(−η (b̃ − γ))`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdaptiveClipping {
    /// The quantile `γ` of update norms the bound tracks (0.5: the median norm).
    pub target_quantile: f64,
    /// The geometric step `η`.
    pub learning_rate: f64,
    /// Standard deviation `σ_b` of the noise on the count of updates within the bound
    /// (Andrew et al. suggest the expected number of participants over 20).
    pub count_noise_std: f64,
}

/// DP-FedAvg (McMahan et al. 2018) at the level of a participant: each update is clipped to
/// L2 norm `clip`, the clipped updates are summed, Gaussian noise of standard deviation
/// `noise_multiplier · clip` is added to the sum, and the sum is divided by the number of
/// selected participants (public, so the division leaks nothing). The accountant above gives
/// the (ε, δ) spent, treating each round as Poisson sampling at the selection fraction: the
/// usual approximation for fixed-size sampling.
///
/// With [`AdaptiveClipping`] the bound moves each round, and the noise multiplier is split
/// between the update and the private count so that together they spend what
/// `noise_multiplier` alone would: `z_Δ = (z⁻² − (2σ_b)⁻²)^(−1/2)` (Andrew et al., Theorem 1).
/// With [`NoisePlacement::Distributed`] the participants add the noise, which needs secure
/// aggregation to mean anything.
///
/// The noise comes from the operating system's randomness, fresh each round: noise that
/// anyone could regenerate from a seed could be subtracted again, and would protect nobody.
/// (So a DP round cannot be recomputed by an auditor, and DP simulations do not repeat
/// exactly.)
#[derive(Debug, Clone)]
pub struct DpFedAvg {
    sampling: crate::fedavg::Sampling,
    fit: crate::FitConfig,
    clip: f64,
    noise_multiplier: f64,
    placement: NoisePlacement,
    adaptive: Option<AdaptiveClipping>,
}

fn invalid(name: &'static str, reason: String) -> crate::StrategyError {
    crate::StrategyError::InvalidSetting { name, reason }
}

impl DpFedAvg {
    /// DP-FedAvg with clipping bound `clip` and noise multiplier `noise_multiplier`, central
    /// noise and a fixed bound.
    pub fn new(
        fraction: f64,
        min_participants: usize,
        fit: crate::FitConfig,
        clip: f64,
        noise_multiplier: f64,
    ) -> Result<Self, crate::StrategyError> {
        if !(clip.is_finite()
            && clip > 0.0
            && noise_multiplier.is_finite()
            && noise_multiplier >= 0.0)
        {
            return Err(invalid(
                "dp",
                format!(
                    "clip {clip} must be positive and noise multiplier {noise_multiplier} non-negative"
                ),
            ));
        }
        Ok(Self {
            sampling: crate::fedavg::Sampling {
                fraction,
                min_participants,
            },
            fit,
            clip,
            noise_multiplier,
            placement: NoisePlacement::Central,
            adaptive: None,
        })
    }

    /// The same with the noise added where `placement` says.
    pub fn with_placement(mut self, placement: NoisePlacement) -> Self {
        self.placement = placement;
        self
    }

    /// The same with the bound adapted each round. The count's noise must leave some of the
    /// budget to the update: `2σ_b > z`.
    pub fn with_adaptive_clipping(
        mut self,
        adaptive: AdaptiveClipping,
    ) -> Result<Self, crate::StrategyError> {
        let AdaptiveClipping {
            target_quantile: q,
            learning_rate: eta,
            count_noise_std: sb,
        } = adaptive;
        if !((0.0..=1.0).contains(&q) && eta.is_finite() && eta > 0.0 && sb.is_finite() && sb > 0.0)
        {
            return Err(invalid(
                "adaptive clipping",
                format!("quantile {q} must be in [0, 1], step {eta} and count noise {sb} positive"),
            ));
        }
        if self.noise_multiplier > 0.0 && 2.0 * sb <= self.noise_multiplier {
            return Err(invalid(
                "adaptive clipping",
                format!(
                    "count noise {sb} leaves nothing for the update at noise multiplier {}: it needs 2σ_b > z",
                    self.noise_multiplier
                ),
            ));
        }
        self.adaptive = Some(adaptive);
        Ok(self)
    }

    /// The clipping bound the next round uses.
    pub fn clip(&self) -> f64 {
        self.clip
    }

    /// The noise multiplier applied to the updates' sum: all of `z` with a fixed bound, what
    /// the private count leaves with an adaptive one.
    pub fn update_noise_multiplier(&self) -> f64 {
        let z = self.noise_multiplier;
        match self.adaptive {
            Some(a) if z > 0.0 => (z.powi(-2) - (2.0 * a.count_noise_std).powi(-2)).powf(-0.5),
            _ => z,
        }
    }

    /// Moves the bound towards the target quantile, given the noised count within it.
    fn adapt(&mut self, within: f64, selected: usize) {
        if let Some(a) = self.adaptive {
            let fraction = within / selected.max(1) as f64;
            self.clip *= (-a.learning_rate * (fraction - a.target_quantile)).exp();
        }
    }

    /// `global + (sum + central noise) / selected`, then the bound's step.
    fn finish_round(
        &mut self,
        global: &harambee_params::ParamSet,
        mut sum: Vec<f64>,
        within: f64,
        selected: usize,
    ) -> Result<crate::Aggregate, crate::StrategyError> {
        use rand_distr::{Distribution, Normal};
        let mut rng = noise_source()?;
        let mut within = within;
        if self.placement == NoisePlacement::Central {
            let std = self.update_noise_multiplier() * self.clip;
            if std > 0.0
                && let Ok(normal) = Normal::new(0.0, std)
            {
                sum.iter_mut().for_each(|s| *s += normal.sample(&mut rng));
            }
            if let Some(a) = self.adaptive
                && let Ok(normal) = Normal::new(0.0, a.count_noise_std)
            {
                within += normal.sample(&mut rng);
            }
        }
        let mut next = global.clone();
        next.values_mut()
            .iter_mut()
            .zip(&sum)
            .for_each(|(x, s)| *x += (s / selected.max(1) as f64) as f32);
        self.adapt(within, selected);
        Ok(crate::Aggregate::Updated(next))
    }
}

/// A fresh stream for DP noise, seeded by the operating system: noise that anyone could
/// recompute from a published seed would protect no one.
fn noise_source() -> Result<rand_chacha::ChaCha20Rng, crate::StrategyError> {
    use rand::SeedableRng;
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| {
        invalid(
            "randomness",
            format!("the operating system gave no randomness for the noise: {e}"),
        )
    })?;
    Ok(rand_chacha::ChaCha20Rng::from_seed(secret))
}

/// Adds Gaussian noise of standard deviation `std` to every value, from a fresh OS-seeded
/// stream: the central noise of a Gaussian mechanism (DP-FedAvg's, and a buffered step's).
pub fn add_gaussian_noise(values: &mut [f32], std: f64) -> Result<(), crate::StrategyError> {
    use rand_distr::{Distribution, Normal};
    if std <= 0.0 {
        return Ok(());
    }
    let normal = Normal::new(0.0, std)
        .map_err(|e| invalid("noise", format!("standard deviation {std}: {e}")))?;
    let mut rng = noise_source()?;
    values
        .iter_mut()
        .for_each(|v| *v += normal.sample(&mut rng) as f32);
    Ok(())
}

impl crate::Strategy for DpFedAvg {
    fn name(&self) -> &'static str {
        "dp-fedavg"
    }

    fn sample_size(&self, available: usize) -> usize {
        self.sampling.size(available)
    }

    fn configure_fit(&self, _round: u64) -> crate::FitConfig {
        self.fit.clone()
    }

    fn aggregate_fit(
        &mut self,
        _round: u64,
        global: &harambee_params::ParamSet,
        results: &[crate::FitResult],
        failures: &[crate::Failure],
    ) -> Result<crate::Aggregate, crate::StrategyError> {
        if self.placement == NoisePlacement::Distributed {
            return Err(invalid(
                "dp",
                "distributed noise needs secure aggregation: without it the coordinator would see \
                 each update with only a share of the noise"
                    .into(),
            ));
        }
        let selected = results.len() + failures.len();
        let mut sum = vec![0.0f64; global.len()];
        let mut within = 0.0;
        for r in results {
            let mut delta = r.params.sub(global)?;
            if delta.l2_norm() <= self.clip {
                within += 1.0;
            }
            delta.clip_l2(self.clip);
            sum.iter_mut()
                .zip(delta.values())
                .for_each(|(s, &d)| *s += f64::from(d));
        }
        self.finish_round(global, sum, within, selected)
    }

    fn update_privacy(&self, _round: u64, expected: usize) -> Option<crate::UpdatePrivacy> {
        let share = match self.placement {
            NoisePlacement::Central => 0.0,
            // Calibrated to the fewest contributors the round accepts: more only add noise.
            NoisePlacement::Distributed => 1.0 / (expected.max(1) as f64).sqrt(),
        };
        Some(crate::UpdatePrivacy {
            clip: self.clip,
            noise_std: self.update_noise_multiplier() * self.clip * share,
            report_within_clip: self.adaptive.is_some(),
            report_noise_std: self.adaptive.map_or(0.0, |a| a.count_noise_std * share),
        })
    }

    fn aggregate_secure(
        &mut self,
        _round: u64,
        global: &harambee_params::ParamSet,
        sum: &crate::SecureSum,
    ) -> Result<crate::Aggregate, crate::StrategyError> {
        let values = sum
            .delta_sum
            .values()
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        let within = sum.within_clip.unwrap_or(0.0);
        self.finish_round(global, values, within, sum.selected)
    }

    fn state(&self) -> Vec<(&'static str, harambee_params::ParamSet)> {
        match self.adaptive {
            None => Vec::new(),
            Some(_) => {
                harambee_params::ParamSet::from_tensors([("clip", vec![1], vec![self.clip as f32])])
                    .map(|p| vec![("clip", p)])
                    .unwrap_or_default()
            }
        }
    }

    fn restore_state(
        &mut self,
        state: Vec<(String, harambee_params::ParamSet)>,
    ) -> Result<(), crate::StrategyError> {
        for (name, p) in state {
            match (name.as_str(), p.values()) {
                ("clip", &[c]) if self.adaptive.is_some() && c.is_finite() && c > 0.0 => {
                    self.clip = f64::from(c);
                }
                _ => {
                    return Err(invalid(
                        "state",
                        format!("dp-fedavg cannot restore {name:?}"),
                    ));
                }
            }
        }
        Ok(())
    }
}
