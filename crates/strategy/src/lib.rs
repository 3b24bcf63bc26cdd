//! How a federation turns participants' results into the next global model.
//!
//! One [`Strategy`] trait, in the shape Flower made familiar (configure the round, aggregate
//! its results) but pure: a strategy never samples participants, reads a clock or does IO.
//! The coordinator picks participants deterministically and owns deadlines; the strategy only
//! says how many it wants ([`Strategy::sample_size`]), what they should do ([`FitConfig`]), and
//! how to combine what came back ([`Strategy::aggregate_fit`]). Failures arrive as
//! [`Failure`] values, and "keep the previous model" is an explicit [`Aggregate`] variant.
//!
//! Rules: [`FedAvg`] (McMahan et al. 2017, weighted by samples), [`FedProx`] (Li et al. 2020:
//! FedAvg plus a proximal term in local training), and the server optimisers of Reddi et al.
//! 2021 in [`FedOpt`]: FedAvgM, FedAdam, FedYogi and FedAdagrad, all stepping on the
//! pseudo-gradient `Δ = mean(local) − global`. For federations open to participants who may
//! lie, [`Robust`] combines updates with a [`RobustRule`]: coordinate-wise median and trimmed
//! mean, Krum and Multi-Krum, Bulyan, norm bounding and centered clipping, each documented with
//! the assumption it rests on. For community compute, [`DiLoCo`] (Douillard et al. 2023) asks
//! each worker for `H` inner optimiser steps ([`FitConfig::local_steps`]) and steps the global
//! model with Nesterov momentum on the averaged pseudo-gradient. [`StrategyConfig`] builds any of them from configuration.
//! [`privacy`] holds the RDP accountant for differentially private federations.
//!
//! ```
//! use harambee_params::ParamSet;
//! use harambee_strategy::{Aggregate, FedAvg, FitResult, ParticipantId, Strategy};
//!
//! let global = ParamSet::from_tensors([("w", vec![2], vec![0.0, 0.0])]).unwrap();
//! let result = |id, v: f32, n| FitResult {
//!     participant: ParticipantId(id),
//!     params: ParamSet::from_tensors([("w", vec![2], vec![v, v])]).unwrap(),
//!     num_samples: n,
//!     train_loss: 0.0,
//! };
//! let mut fedavg = FedAvg::default();
//! let out = fedavg.aggregate_fit(1, &global, &[result(1, 1.0, 10), result(2, 4.0, 20)], &[]);
//! let Ok(Aggregate::Updated(p)) = out else { panic!() };
//! assert_eq!(p.values(), &[3.0, 3.0]);
//! ```

mod config;
mod diloco;
mod error;
mod fedavg;
mod fedopt;
pub mod privacy;
mod robust;
mod types;

pub use config::StrategyConfig;
pub use diloco::DiLoCo;
pub use error::StrategyError;
pub use fedavg::{FedAvg, FedProx};
pub use fedopt::{FedOpt, ServerOptimizer};
pub use robust::{Robust, RobustRule};
pub use types::{
    Aggregate, Failure, FailureReason, FitConfig, FitResult, ParticipantId, SecureSum, Strategy,
    UpdatePrivacy,
};
