use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{
    FedAvg, FedOpt, FedProx, FitConfig, Robust, RobustRule, ServerOptimizer, Strategy,
    StrategyError,
};

/// A strategy as configuration names it: `fedavg`, `fedprox`, `fedavgm`, `fedadam`, `fedyogi`,
/// `fedadagrad`, with the server-side settings each one needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "name")]
#[non_exhaustive]
pub enum StrategyConfig {
    /// [`FedAvg`].
    FedAvg,
    /// [`FedProx`] with proximal weight `mu`.
    FedProx {
        /// μ.
        mu: f32,
    },
    /// FedAvgM: server momentum.
    FedAvgM {
        /// Server learning rate η.
        server_lr: f32,
        /// Momentum β.
        momentum: f32,
    },
    /// FedAdam.
    FedAdam {
        /// Server learning rate η.
        server_lr: f32,
        /// Adaptivity floor τ.
        tau: f32,
    },
    /// FedYogi.
    FedYogi {
        /// Server learning rate η.
        server_lr: f32,
        /// Adaptivity floor τ.
        tau: f32,
    },
    /// FedAdagrad.
    FedAdagrad {
        /// Server learning rate η.
        server_lr: f32,
        /// Adaptivity floor τ.
        tau: f32,
    },
    /// DP-FedAvg ([`DpFedAvg`](crate::privacy::DpFedAvg)): updates clipped to `clip`, Gaussian
    /// noise of `noise_multiplier · clip` on their sum.
    #[serde(rename = "dp-fedavg")]
    DpFedAvg {
        /// L2 clipping bound (the first round's, with adaptive clipping).
        clip: f64,
        /// Noise standard deviation over the clipping bound.
        noise_multiplier: f64,
        /// Who adds the noise: the coordinator (default) or the participants.
        #[serde(default)]
        noise: crate::privacy::NoisePlacement,
        /// Adapt the bound to a quantile of the update norms (Andrew et al. 2021).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        adaptive: Option<crate::privacy::AdaptiveClipping>,
    },
    /// A robust rule ([`Robust`]): `{ name = "robust", rule = "median" }`,
    /// `{ name = "robust", rule = "krum", f = 2 }`, ...
    Robust(RobustRule),
    /// [`DiLoCo`](crate::DiLoCo): `inner_steps` (H) local steps per round, then Nesterov
    /// momentum on the mean pseudo-gradient.
    DiLoCo {
        /// H.
        inner_steps: u32,
        /// Outer learning rate η.
        outer_lr: f32,
        /// Outer Nesterov momentum μ.
        momentum: f32,
    },
}

impl StrategyConfig {
    /// Builds the strategy.
    pub fn build(
        &self,
        fraction: f64,
        min_participants: usize,
        fit: FitConfig,
    ) -> Result<Box<dyn Strategy>, StrategyError> {
        if !(fraction > 0.0 && fraction <= 1.0) {
            return Err(StrategyError::InvalidSetting {
                name: "fraction",
                reason: format!("{fraction} must be in (0, 1]"),
            });
        }
        let opt = |o, lr, tau| FedOpt::new(fraction, min_participants, fit.clone(), o, lr, tau);
        Ok(match *self {
            StrategyConfig::FedAvg => Box::new(FedAvg::new(fraction, min_participants, fit)),
            StrategyConfig::FedProx { mu } => {
                Box::new(FedProx::new(fraction, min_participants, fit, mu)?)
            }
            StrategyConfig::FedAvgM {
                server_lr,
                momentum,
            } => Box::new(opt(
                ServerOptimizer::Momentum { momentum },
                server_lr,
                1e-3,
            )?),
            StrategyConfig::FedAdam { server_lr, tau } => {
                Box::new(opt(ServerOptimizer::Adam, server_lr, tau)?)
            }
            StrategyConfig::FedYogi { server_lr, tau } => {
                Box::new(opt(ServerOptimizer::Yogi, server_lr, tau)?)
            }
            StrategyConfig::FedAdagrad { server_lr, tau } => {
                Box::new(opt(ServerOptimizer::Adagrad, server_lr, tau)?)
            }
            StrategyConfig::Robust(rule) => {
                Box::new(Robust::new(fraction, min_participants, fit, rule)?)
            }
            StrategyConfig::DiLoCo {
                inner_steps,
                outer_lr,
                momentum,
            } => Box::new(crate::DiLoCo::new(
                fraction,
                min_participants,
                fit,
                inner_steps,
                outer_lr,
                momentum,
            )?),
            StrategyConfig::DpFedAvg {
                clip,
                noise_multiplier,
                noise,
                adaptive,
            } => {
                let dp = crate::privacy::DpFedAvg::new(
                    fraction,
                    min_participants,
                    fit,
                    clip,
                    noise_multiplier,
                )?
                .with_placement(noise);
                Box::new(match adaptive {
                    Some(a) => dp.with_adaptive_clipping(a)?,
                    None => dp,
                })
            }
        })
    }
}

impl FromStr for StrategyConfig {
    type Err = StrategyError;

    /// Parses a bare name with default settings: `fedprox` (μ = 0.01), `fedavgm` (η = 1,
    /// β = 0.9), `fedadam`/`fedyogi` (η = 0.01, τ = 1e-3), `fedadagrad` (η = 0.1, τ = 1e-3).
    ///
    /// Robust rules take their setting after a colon: `median`, `trimmed-mean[:BETA]` (0.1),
    /// `krum[:F]`, `multi-krum[:F]`, `bulyan[:F]` (F = 1), `norm-bound[:BOUND]` (the median
    /// norm), `centered-clip[:TAU]` (τ = 1, 3 iterations).
    ///
    /// DiLoCo: `diloco[:H[:OUTER_LR[:MOMENTUM]]]`, by default H = 50, η = 0.7, μ = 0.9 (the
    /// paper's outer settings).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "diloco" || s.starts_with("diloco:") {
            return diloco(s);
        }
        if let Some(rule) = robust_rule(s)? {
            return Ok(StrategyConfig::Robust(rule));
        }
        if let Some(settings) = s.strip_prefix("dp-fedavg:") {
            return dp_fedavg(s, settings, false);
        }
        if let Some(settings) = s.strip_prefix("dp-adaptive:") {
            return dp_fedavg(s, settings, true);
        }
        Ok(match s {
            "fedavg" => StrategyConfig::FedAvg,
            "fedprox" => StrategyConfig::FedProx { mu: 0.01 },
            "fedavgm" => StrategyConfig::FedAvgM {
                server_lr: 1.0,
                momentum: 0.9,
            },
            "fedadam" => StrategyConfig::FedAdam {
                server_lr: 0.01,
                tau: 1e-3,
            },
            "fedyogi" => StrategyConfig::FedYogi {
                server_lr: 0.01,
                tau: 1e-3,
            },
            "fedadagrad" => StrategyConfig::FedAdagrad {
                server_lr: 0.1,
                tau: 1e-3,
            },
            other => {
                return Err(StrategyError::InvalidSetting {
                    name: "strategy",
                    reason: format!(
                        "unknown strategy {other:?}; known: fedavg, fedprox, fedavgm, fedadam, fedyogi, fedadagrad, diloco, median, trimmed-mean, krum, multi-krum, bulyan, norm-bound, centered-clip"
                    ),
                });
            }
        })
    }
}

/// Parses `NAME[:SETTING]` as a robust rule; `None` when the name is not one.
fn robust_rule(s: &str) -> Result<Option<RobustRule>, StrategyError> {
    let (name, arg) = match s.split_once(':') {
        Some((n, a)) => (n, Some(a)),
        None => (s, None),
    };
    let number = |default: f64| -> Result<f64, StrategyError> {
        arg.map_or(Ok(default), |a| {
            a.parse().map_err(|_| StrategyError::InvalidSetting {
                name: "strategy",
                reason: format!("{s:?}: {a:?} is not a number"),
            })
        })
    };
    let count = || -> Result<usize, StrategyError> { Ok(number(1.0)?.max(0.0) as usize) };
    let rule = match name {
        "median" => RobustRule::Median,
        "trimmed-mean" => RobustRule::TrimmedMean { beta: number(0.1)? },
        "krum" => RobustRule::Krum { f: count()? },
        "multi-krum" => RobustRule::MultiKrum {
            f: count()?,
            m: None,
        },
        "bulyan" => RobustRule::Bulyan { f: count()? },
        "norm-bound" => RobustRule::NormBound {
            bound: arg.map(|_| number(0.0)).transpose()?,
        },
        "centered-clip" => RobustRule::CenteredClip {
            tau: number(1.0)?,
            iterations: 3,
        },
        _ => return Ok(None),
    };
    rule.validate()?;
    Ok(Some(rule))
}

impl fmt::Display for StrategyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StrategyConfig::FedAvg => write!(f, "fedavg"),
            StrategyConfig::FedProx { mu } => write!(f, "fedprox(mu={mu})"),
            StrategyConfig::FedAvgM {
                server_lr,
                momentum,
            } => {
                write!(f, "fedavgm(server_lr={server_lr}, momentum={momentum})")
            }
            StrategyConfig::FedAdam { server_lr, tau } => {
                write!(f, "fedadam(server_lr={server_lr}, tau={tau})")
            }
            StrategyConfig::FedYogi { server_lr, tau } => {
                write!(f, "fedyogi(server_lr={server_lr}, tau={tau})")
            }
            StrategyConfig::FedAdagrad { server_lr, tau } => {
                write!(f, "fedadagrad(server_lr={server_lr}, tau={tau})")
            }
            StrategyConfig::DpFedAvg {
                clip,
                noise_multiplier,
                noise,
                adaptive,
            } => {
                let bound = if adaptive.is_some() {
                    "initial clip"
                } else {
                    "clip"
                };
                write!(
                    f,
                    "dp-fedavg({bound}={clip}, noise_multiplier={noise_multiplier}"
                )?;
                if let Some(a) = adaptive {
                    write!(f, ", target quantile={}", a.target_quantile)?;
                }
                if *noise == crate::privacy::NoisePlacement::Distributed {
                    write!(f, ", distributed noise")?;
                }
                write!(f, ")")
            }
            StrategyConfig::DiLoCo {
                inner_steps,
                outer_lr,
                momentum,
            } => write!(
                f,
                "diloco(H={inner_steps}, outer_lr={outer_lr}, nesterov momentum={momentum})"
            ),
            StrategyConfig::Robust(rule) => match rule {
                RobustRule::Median => write!(f, "median"),
                RobustRule::TrimmedMean { beta } => write!(f, "trimmed-mean(beta={beta})"),
                RobustRule::Krum { f: n } => write!(f, "krum(f={n})"),
                RobustRule::MultiKrum { f: n, .. } => write!(f, "multi-krum(f={n})"),
                RobustRule::Bulyan { f: n } => write!(f, "bulyan(f={n})"),
                RobustRule::NormBound { bound: Some(b) } => write!(f, "norm-bound({b})"),
                RobustRule::NormBound { bound: None } => write!(f, "norm-bound(median)"),
                RobustRule::CenteredClip { tau, iterations } => {
                    write!(f, "centered-clip(tau={tau}, iterations={iterations})")
                }
            },
        }
    }
}

/// `dp-fedavg:CLIP:NOISE_MULTIPLIER`, or `dp-adaptive:INITIAL_CLIP:NOISE_MULTIPLIER` for
/// adaptive clipping towards the median norm (η = 0.2, σ_b = 1; set others in TOML).
fn dp_fedavg(whole: &str, settings: &str, adaptive: bool) -> Result<StrategyConfig, StrategyError> {
    let parsed: Option<(f64, f64)> = settings
        .split_once(':')
        .and_then(|(c, z)| Some((c.parse().ok()?, z.parse().ok()?)));
    let Some((clip, noise_multiplier)) = parsed else {
        let prefix = whole.split(':').next().unwrap_or("dp-fedavg");
        return Err(StrategyError::InvalidSetting {
            name: "strategy",
            reason: format!("{whole:?}: expected {prefix}:CLIP:NOISE_MULTIPLIER"),
        });
    };
    Ok(StrategyConfig::DpFedAvg {
        clip,
        noise_multiplier,
        noise: crate::privacy::NoisePlacement::Central,
        adaptive: adaptive.then_some(crate::privacy::AdaptiveClipping {
            target_quantile: 0.5,
            learning_rate: 0.2,
            count_noise_std: 1.0,
        }),
    })
}

/// `diloco[:H[:OUTER_LR[:MOMENTUM]]]`.
fn diloco(s: &str) -> Result<StrategyConfig, StrategyError> {
    let mut parts = s.split(':').skip(1);
    let bad = |part: &str| StrategyError::InvalidSetting {
        name: "strategy",
        reason: format!(
            "{s:?}: {part:?} is not a number; expected diloco[:H[:OUTER_LR[:MOMENTUM]]]"
        ),
    };
    let inner_steps = match parts.next() {
        Some(h) => h.parse().map_err(|_| bad(h))?,
        None => 50,
    };
    let mut real = |default: f32| match parts.next() {
        Some(v) => v.parse::<f32>().map_err(|_| bad(v)),
        None => Ok(default),
    };
    let outer_lr = real(0.7)?;
    let momentum = real(0.9)?;
    crate::diloco::check_settings(inner_steps, outer_lr, momentum)?;
    Ok(StrategyConfig::DiLoCo {
        inner_steps,
        outer_lr,
        momentum,
    })
}
