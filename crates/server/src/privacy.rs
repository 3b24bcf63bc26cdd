//! The charter's privacy budget against the federation's settings.

use harambee_charter::Charter;
use harambee_strategy::StrategyConfig;
use harambee_strategy::privacy::RdpAccountant;

use crate::{FederationConfig, ServerError};

/// The noise multiplier of a differentially private strategy, if the strategy is one.
fn noise_multiplier(config: &FederationConfig) -> Option<f64> {
    match config.training.strategy {
        StrategyConfig::DpFedAvg {
            noise_multiplier, ..
        } if noise_multiplier > 0.0 => Some(noise_multiplier),
        _ => None,
    }
}

/// Participant-level ε after `rounds` rounds at the charter's δ, when the charter sets a
/// budget and the strategy adds noise. Without amplification by subsampling (see the body).
pub(crate) fn epsilon_after(
    charter: &Charter,
    config: &FederationConfig,
    rounds: u64,
) -> Option<f64> {
    let budget = charter.privacy?;
    let z = noise_multiplier(config)?;
    let mut accountant = RdpAccountant::default();
    // No amplification by sampling: the selection follows from the federation's seed and is
    // published in the ledger, so anyone who reads it knows who took part in each round. The
    // ε claimed must hold against that reader, so every round counts as if all took part.
    accountant.compose_subsampled_gaussian(1.0, z, rounds);
    Some(accountant.epsilon(budget.delta).0)
}

/// Refuses settings whose planned rounds would spend more than the charter's budget, saying
/// how many rounds would fit.
pub(crate) fn check_budget(
    charter: &Charter,
    config: &FederationConfig,
) -> Result<(), ServerError> {
    let Some(budget) = charter.privacy else {
        return Ok(());
    };
    let forbid = |m: String| {
        Err(ServerError::Config(format!(
            "the charter forbids this: {m}"
        )))
    };
    if noise_multiplier(config).is_none() {
        return forbid(format!(
            "it sets a privacy budget of (ε = {}, δ = {}), so the strategy must add noise (dp-fedavg:CLIP:NOISE_MULTIPLIER)",
            budget.epsilon, budget.delta
        ));
    }
    let rounds = config.rounds.rounds;
    let spent = epsilon_after(charter, config, rounds).unwrap_or(f64::INFINITY);
    if spent > budget.epsilon {
        let fit = (0..rounds)
            .rev()
            .find(|&r| epsilon_after(charter, config, r).is_some_and(|e| e <= budget.epsilon))
            .unwrap_or(0);
        return forbid(format!(
            "{rounds} rounds would spend ε = {spent:.3} of a budget of {}; at most {fit} rounds fit at these settings",
            budget.epsilon
        ));
    }
    Ok(())
}
