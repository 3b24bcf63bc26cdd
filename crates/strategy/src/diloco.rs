use harambee_params::ParamSet;

use crate::fedavg::Sampling;
use crate::{Aggregate, Failure, FitConfig, FitResult, Strategy, StrategyError};

/// DiLoCo's outer optimiser (Douillard et al. 2023, Alg. 1): each worker takes `H` inner
/// optimiser steps from the global model; the coordinator averages the pseudo-gradients
/// `g = global − local` and steps with Nesterov momentum SGD:
///
/// `v ← μ v + g;  x ← x − η (g + μ v)`
///
/// (PyTorch's `SGD(nesterov=True)`, the paper's outer optimiser; η = 0.7, μ = 0.9 there). With
/// η = 1 and μ = 0 it is FedAvg of the workers' models, unweighted. The pseudo-gradients are
/// averaged without weights because DiLoCo's workers hold equal shards and take the same
/// number of steps: the number of examples a shard holds says nothing about its step's worth.
///
/// Communication is one exchange of the model per `H` inner steps instead of one per step,
/// which is what makes it fit volunteers on slow links.
#[derive(Debug, Clone)]
pub struct DiLoCo {
    sampling: Sampling,
    fit: FitConfig,
    outer_lr: f32,
    momentum: f32,
    /// Outer momentum buffer; created on the first round.
    velocity: Option<ParamSet>,
}

impl DiLoCo {
    /// DiLoCo whose workers take `inner_steps` (H) local optimiser steps per round, as `fit`
    /// says otherwise (batch, learning rate); outer learning rate η and Nesterov momentum μ.
    pub fn new(
        fraction: f64,
        min_participants: usize,
        fit: FitConfig,
        inner_steps: u32,
        outer_lr: f32,
        momentum: f32,
    ) -> Result<Self, StrategyError> {
        check_settings(inner_steps, outer_lr, momentum)?;
        Ok(Self {
            sampling: Sampling {
                fraction,
                min_participants,
            },
            fit: FitConfig {
                local_steps: inner_steps,
                ..fit
            },
            outer_lr,
            momentum,
            velocity: None,
        })
    }

    /// One outer step from `global` with the mean pseudo-gradient `g`.
    fn step(&mut self, global: &ParamSet, g: &ParamSet) -> ParamSet {
        let velocity = self
            .velocity
            .get_or_insert_with(|| ParamSet::zeros(global.layout().clone()));
        let (eta, mu) = (self.outer_lr, self.momentum);
        let mut next = global.clone();
        for ((x, v), &g) in next
            .values_mut()
            .iter_mut()
            .zip(velocity.values_mut())
            .zip(g.values())
        {
            *v = mu * *v + g;
            *x -= eta * (g + mu * *v);
        }
        next
    }
}

/// Refuses settings under which the outer loop would stand still or diverge at once.
pub(crate) fn check_settings(
    inner_steps: u32,
    outer_lr: f32,
    momentum: f32,
) -> Result<(), StrategyError> {
    if inner_steps == 0 {
        return Err(StrategyError::InvalidSetting {
            name: "inner_steps",
            reason: "H must be at least 1".into(),
        });
    }
    if !(outer_lr.is_finite() && outer_lr > 0.0) {
        return Err(StrategyError::InvalidSetting {
            name: "outer_lr",
            reason: format!("{outer_lr} must be finite and positive"),
        });
    }
    if !(0.0..1.0).contains(&momentum) {
        return Err(StrategyError::InvalidSetting {
            name: "outer_momentum",
            reason: format!("{momentum} must be in [0, 1)"),
        });
    }
    Ok(())
}

impl Strategy for DiLoCo {
    fn name(&self) -> &'static str {
        "diloco"
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
        if results.is_empty() {
            return Ok(Aggregate::KeepPrevious {
                reason: "no results".into(),
            });
        }
        // g = global − mean(local) = mean(global − local).
        let mut g = global.clone();
        let share = 1.0 / results.len() as f32;
        for r in results {
            g.axpy(-share, &r.params)?;
        }
        Ok(Aggregate::Updated(self.step(global, &g)))
    }

    fn state(&self) -> Vec<(&'static str, ParamSet)> {
        self.velocity
            .clone()
            .map(|v| ("velocity", v))
            .into_iter()
            .collect()
    }

    fn restore_state(&mut self, state: Vec<(String, ParamSet)>) -> Result<(), StrategyError> {
        for (name, value) in state {
            if name != "velocity" {
                return Err(StrategyError::InvalidSetting {
                    name: "state",
                    reason: format!("diloco keeps its velocity, not {name:?}"),
                });
            }
            self.velocity = Some(value);
        }
        Ok(())
    }
}
