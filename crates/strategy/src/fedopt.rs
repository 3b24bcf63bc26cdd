use harambee_params::ParamSet;
use serde::{Deserialize, Serialize};

use crate::fedavg::{Sampling, fedavg_mean};
use crate::{Aggregate, Failure, FitConfig, FitResult, Strategy, StrategyError};

/// The server-side optimiser of an adaptive federated strategy (Reddi et al. 2021, Alg. 2).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
#[non_exhaustive]
pub enum ServerOptimizer {
    /// Heavy-ball momentum on the pseudo-gradient: `v ← βv + Δ; x ← x + η v` (FedAvgM, Hsu et
    /// al. 2019). With β = 0 and η = 1 this is FedAvg.
    Momentum {
        /// β.
        momentum: f32,
    },
    /// Adagrad: `v ← v + Δ²`.
    Adagrad,
    /// Adam: `v ← β₂v + (1−β₂)Δ²`.
    Adam,
    /// Yogi: `v ← v − (1−β₂)Δ² sign(v − Δ²)`, which grows `v` more cautiously than Adam.
    Yogi,
}

/// A FedOpt strategy: average the participants' models, treat `Δ = mean − global` as a
/// gradient, and step the global model with a server optimiser.
#[derive(Debug, Clone)]
pub struct FedOpt {
    sampling: Sampling,
    fit: FitConfig,
    optimizer: ServerOptimizer,
    server_lr: f32,
    beta1: f32,
    beta2: f32,
    tau: f32,
    /// First moment (or velocity for momentum); created on the first round.
    m: Option<ParamSet>,
    /// Second moment; created on the first round.
    v: Option<ParamSet>,
}

impl FedOpt {
    /// A FedOpt strategy. `server_lr` is η; for the adaptive optimisers β₁ = 0.9, β₂ = 0.99 and
    /// τ (the adaptivity floor) as given, the defaults of Reddi et al.
    pub fn new(
        fraction: f64,
        min_participants: usize,
        fit: FitConfig,
        optimizer: ServerOptimizer,
        server_lr: f32,
        tau: f32,
    ) -> Result<Self, StrategyError> {
        let positive = |name, v: f32| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(StrategyError::InvalidSetting {
                    name,
                    reason: format!("{v} must be finite and positive"),
                })
            }
        };
        positive("server_lr", server_lr)?;
        positive("tau", tau)?;
        if let ServerOptimizer::Momentum { momentum } = optimizer
            && !(0.0..1.0).contains(&momentum)
        {
            return Err(StrategyError::InvalidSetting {
                name: "server_momentum",
                reason: format!("{momentum} must be in [0, 1)"),
            });
        }
        Ok(Self {
            sampling: Sampling {
                fraction,
                min_participants,
            },
            fit,
            optimizer,
            server_lr,
            beta1: 0.9,
            beta2: 0.99,
            tau,
            m: None,
            v: None,
        })
    }

    fn step(&mut self, global: &ParamSet, delta: &ParamSet) -> ParamSet {
        let zeros = || ParamSet::zeros(global.layout().clone());
        let m = self.m.get_or_insert_with(zeros);
        let mut next = global.clone();
        let (eta, b1, b2, tau) = (self.server_lr, self.beta1, self.beta2, self.tau);
        if let ServerOptimizer::Momentum { momentum } = self.optimizer {
            for ((x, m), d) in next
                .values_mut()
                .iter_mut()
                .zip(m.values_mut())
                .zip(delta.values())
            {
                *m = momentum * *m + d;
                *x += eta * *m;
            }
            return next;
        }
        let v = self.v.get_or_insert_with(|| {
            // Reddi et al. start v at τ² so the first steps are not huge.
            let mut v = ParamSet::zeros(global.layout().clone());
            v.values_mut().fill(tau * tau);
            v
        });
        let optimizer = self.optimizer;
        let values = next
            .values_mut()
            .iter_mut()
            .zip(m.values_mut())
            .zip(v.values_mut());
        for (((x, m), v), &d) in values.zip(delta.values()) {
            *m = b1 * *m + (1.0 - b1) * d;
            let d2 = d * d;
            *v = match optimizer {
                ServerOptimizer::Adagrad => *v + d2,
                ServerOptimizer::Adam => b2 * *v + (1.0 - b2) * d2,
                ServerOptimizer::Yogi => *v - (1.0 - b2) * d2 * (*v - d2).signum(),
                ServerOptimizer::Momentum { .. } => unreachable!("handled above"),
            };
            *x += eta * *m / (v.sqrt() + tau);
        }
        next
    }
}

impl Strategy for FedOpt {
    fn name(&self) -> &'static str {
        match self.optimizer {
            ServerOptimizer::Momentum { .. } => "fedavgm",
            ServerOptimizer::Adagrad => "fedadagrad",
            ServerOptimizer::Adam => "fedadam",
            ServerOptimizer::Yogi => "fedyogi",
        }
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
        let Some(mean) = fedavg_mean(results)? else {
            return Ok(Aggregate::KeepPrevious {
                reason: "no results".into(),
            });
        };
        let delta = mean.sub(global)?;
        Ok(Aggregate::Updated(self.step(global, &delta)))
    }

    fn state(&self) -> Vec<(&'static str, ParamSet)> {
        [("m", &self.m), ("v", &self.v)]
            .into_iter()
            .filter_map(|(name, moment)| moment.clone().map(|p| (name, p)))
            .collect()
    }

    fn restore_state(&mut self, state: Vec<(String, ParamSet)>) -> Result<(), StrategyError> {
        for (name, moment) in state {
            match name.as_str() {
                "m" => self.m = Some(moment),
                "v" => self.v = Some(moment),
                other => {
                    return Err(StrategyError::InvalidSetting {
                        name: "state",
                        reason: format!("{} keeps m and v, not {other:?}", self.name()),
                    });
                }
            }
        }
        Ok(())
    }
}
