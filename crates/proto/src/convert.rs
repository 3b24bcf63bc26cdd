//! Conversions between wire types and the domain types they carry, one place for each, so
//! that both ends read and write a message the same way.

use harambee_strategy::FitConfig;

use crate::v1;

impl From<&FitConfig> for v1::FitConfig {
    fn from(c: &FitConfig) -> Self {
        Self {
            epochs: c.epochs,
            batch_size: c.batch_size,
            learning_rate: c.learning_rate,
            proximal_mu: c.proximal_mu,
            local_steps: c.local_steps,
        }
    }
}

impl From<v1::FitConfig> for FitConfig {
    fn from(c: v1::FitConfig) -> Self {
        Self {
            epochs: c.epochs,
            batch_size: c.batch_size,
            learning_rate: c.learning_rate,
            proximal_mu: c.proximal_mu,
            local_steps: c.local_steps,
        }
    }
}
