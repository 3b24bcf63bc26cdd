use harambee_params::{ParamSet, weighted_mean};

use crate::{Aggregate, Failure, FitConfig, FitResult, Strategy, StrategyError};

/// How many participants a round wants: a fraction of those available, at least a minimum.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sampling {
    pub(crate) fraction: f64,
    pub(crate) min_participants: usize,
}

impl Sampling {
    pub(crate) fn size(&self, available: usize) -> usize {
        let wanted = (self.fraction * available as f64).round() as usize;
        wanted.max(self.min_participants).min(available)
    }
}

/// The sample-weighted mean of the results, or an explicit "keep" when none came back.
pub(crate) fn fedavg_mean(results: &[FitResult]) -> Result<Option<ParamSet>, StrategyError> {
    if results.is_empty() {
        return Ok(None);
    }
    let inputs: Vec<(&ParamSet, f64)> = results
        .iter()
        .map(|r| (&r.params, r.num_samples as f64))
        .collect();
    Ok(Some(weighted_mean(&inputs)?))
}

/// Federated averaging (McMahan et al. 2017): the new model is the mean of the participants'
/// models, each weighted by its number of training examples.
#[derive(Debug, Clone, PartialEq)]
pub struct FedAvg {
    sampling: Sampling,
    fit: FitConfig,
}

impl FedAvg {
    /// FedAvg selecting `fraction` of available participants (at least `min_participants`) and
    /// asking each to train as `fit` says.
    pub fn new(fraction: f64, min_participants: usize, fit: FitConfig) -> Self {
        Self {
            sampling: Sampling {
                fraction,
                min_participants,
            },
            fit,
        }
    }
}

impl Default for FedAvg {
    fn default() -> Self {
        Self::new(1.0, 1, FitConfig::default())
    }
}

impl Strategy for FedAvg {
    fn name(&self) -> &'static str {
        "fedavg"
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
        _global: &ParamSet,
        results: &[FitResult],
        _failures: &[Failure],
    ) -> Result<Aggregate, StrategyError> {
        Ok(match fedavg_mean(results)? {
            Some(p) => Aggregate::Updated(p),
            None => Aggregate::KeepPrevious {
                reason: "no results".into(),
            },
        })
    }

    /// Under secure aggregation the weights (sample counts) would reveal as much as they
    /// weigh, so the blind sum is an unweighted mean: `global + ΣΔ / contributors`.
    fn aggregate_secure(
        &mut self,
        _round: u64,
        global: &ParamSet,
        sum: &crate::SecureSum,
    ) -> Result<Aggregate, StrategyError> {
        if sum.contributors.is_empty() {
            return Ok(Aggregate::KeepPrevious {
                reason: "no contributors".into(),
            });
        }
        let mut next = global.clone();
        next.axpy(1.0 / sum.contributors.len() as f32, &sum.delta_sum)?;
        Ok(Aggregate::Updated(next))
    }
}

/// FedProx (Li et al. 2020): FedAvg's aggregation, with participants adding the proximal term
/// `μ/2 ‖w − w_global‖²` to their local objective, which keeps heterogeneous participants from
/// drifting far from the global model.
#[derive(Debug, Clone, PartialEq)]
pub struct FedProx {
    inner: FedAvg,
}

impl FedProx {
    /// FedProx with proximal weight `mu` (must be finite and non-negative).
    pub fn new(
        fraction: f64,
        min_participants: usize,
        mut fit: FitConfig,
        mu: f32,
    ) -> Result<Self, StrategyError> {
        if !(mu.is_finite() && mu >= 0.0) {
            return Err(StrategyError::InvalidSetting {
                name: "proximal_mu",
                reason: format!("{mu} is not a finite non-negative number"),
            });
        }
        fit.proximal_mu = mu;
        Ok(Self {
            inner: FedAvg::new(fraction, min_participants, fit),
        })
    }
}

impl Strategy for FedProx {
    fn name(&self) -> &'static str {
        "fedprox"
    }

    fn sample_size(&self, available: usize) -> usize {
        self.inner.sample_size(available)
    }

    fn configure_fit(&self, round: u64) -> FitConfig {
        self.inner.configure_fit(round)
    }

    fn aggregate_fit(
        &mut self,
        round: u64,
        global: &ParamSet,
        results: &[FitResult],
        failures: &[Failure],
    ) -> Result<Aggregate, StrategyError> {
        self.inner.aggregate_fit(round, global, results, failures)
    }
}
