//! Simulated time: how long each virtual participant takes to download the model, train and
//! upload its update, and so how long a round lasts under a given way of waiting for them.
//!
//! Every participant gets a fixed profile from the seed: a compute speed and an uplink and
//! downlink drawn log-normally around the medians, and a slow tail (a fraction of the
//! participants several times slower, as old phones on poor links are). A round then lasts
//! until the results it waits for have arrived:
//!
//! - synchronous FedAvg waits for every selected participant;
//! - with over-selection it selects more and closes on the first ones to arrive;
//! - with a deadline it takes what arrived by then (and opens again below the quorum).
//!
//! Real training still happens (that is where accuracy comes from); only the clock is
//! simulated, so a run reports its simulated time to the target accuracy.

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rand_distr::{Distribution, LogNormal};
use serde::{Deserialize, Serialize};

use crate::SimError;

/// The settings of simulated time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timing {
    /// Seconds one example takes for one epoch at the median speed.
    pub seconds_per_example: f64,
    /// The spread (σ of the logarithm) of compute speeds and link rates around their medians.
    pub sigma: f64,
    /// The fraction of participants in the slow tail.
    pub slow_fraction: f64,
    /// How many times slower the slow tail computes and communicates.
    pub slow_factor: f64,
    /// The median uplink, in Mbit/s.
    pub uplink_mbps: f64,
    /// The median downlink, in Mbit/s.
    pub downlink_mbps: f64,
    /// Select this many times the participants a round needs, and close it on the first
    /// that arrive (1: wait for everyone selected).
    pub over_select: f64,
    /// Close a round this many simulated seconds after it opens with what has arrived.
    pub deadline_s: Option<f64>,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            seconds_per_example: 0.002,
            sigma: 0.5,
            slow_fraction: 0.1,
            slow_factor: 10.0,
            uplink_mbps: 5.0,
            downlink_mbps: 20.0,
            over_select: 1.0,
            deadline_s: None,
        }
    }
}

impl Timing {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), SimError> {
        let positive = |x: f64| x.is_finite() && x > 0.0;
        let ok = positive(self.seconds_per_example)
            && self.sigma.is_finite()
            && self.sigma >= 0.0
            && (0.0..=1.0).contains(&self.slow_fraction)
            && self.slow_factor.is_finite()
            && self.slow_factor >= 1.0
            && positive(self.uplink_mbps)
            && positive(self.downlink_mbps)
            && self.over_select.is_finite()
            && self.over_select >= 1.0
            && self.deadline_s.is_none_or(positive);
        if ok {
            Ok(())
        } else {
            Err(SimError::InvalidSetting(format!(
                "simulated time needs positive rates and costs, sigma >= 0, a slow fraction in [0, 1], a slow factor and over-selection >= 1, and a positive deadline: {self:?}"
            )))
        }
    }
}

/// One participant's fixed speed and links.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    /// Examples per second for one epoch.
    pub examples_per_s: f64,
    /// Uplink, bytes per second.
    pub up_bytes_per_s: f64,
    /// Downlink, bytes per second.
    pub down_bytes_per_s: f64,
}

impl Profile {
    /// Every participant's profile, deterministically from `seed`.
    pub fn draw(timing: &Timing, participants: usize, seed: u64) -> Vec<Profile> {
        let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0x7157_C10C);
        let spread = LogNormal::new(0.0, timing.sigma).unwrap_or_else(|_| {
            LogNormal::new(0.0, 0.0).unwrap_or_else(|_| unreachable!("σ = 0 is valid"))
        });
        let mut profiles: Vec<Profile> = (0..participants)
            .map(|_| Profile {
                examples_per_s: spread.sample(&mut rng) / timing.seconds_per_example,
                up_bytes_per_s: spread.sample(&mut rng) * timing.uplink_mbps * 1e6 / 8.0,
                down_bytes_per_s: spread.sample(&mut rng) * timing.downlink_mbps * 1e6 / 8.0,
            })
            .collect();
        // The slow tail: an exact count, chosen from the seed.
        let slow = (timing.slow_fraction * participants as f64).round() as usize;
        for i in rand::seq::index::sample(&mut rng, participants, slow.min(participants)) {
            let p = &mut profiles[i];
            p.examples_per_s /= timing.slow_factor;
            p.up_bytes_per_s /= timing.slow_factor;
            p.down_bytes_per_s /= timing.slow_factor;
        }
        profiles
    }

    /// Seconds from a round's opening until this participant's update has arrived: download
    /// `down` bytes, train on `examples` example-epochs, upload `up` bytes.
    pub fn seconds(&self, down: u64, examples: u64, up: u64) -> f64 {
        down as f64 / self.down_bytes_per_s
            + examples as f64 / self.examples_per_s
            + up as f64 / self.up_bytes_per_s
    }
}

/// Which of a round's participants (with their arrival times) the round takes, and when it
/// closes: the first `wanted` to arrive, none after the deadline. When fewer than `wanted`
/// arrive, the round lasts until the deadline (or until the last arrival, without one).
pub fn take_first(
    mut arrivals: Vec<(u64, f64)>,
    wanted: usize,
    deadline_s: Option<f64>,
) -> (Vec<u64>, f64) {
    arrivals.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    let in_time: Vec<(u64, f64)> = arrivals
        .into_iter()
        .filter(|(_, t)| deadline_s.is_none_or(|d| *t <= d))
        .take(wanted)
        .collect();
    let closes = match (in_time.len() == wanted, deadline_s) {
        (false, Some(deadline)) => deadline,
        _ => in_time
            .last()
            .map_or(deadline_s.unwrap_or(0.0), |(_, t)| *t),
    };
    let mut taken: Vec<u64> = in_time.into_iter().map(|(p, _)| p).collect();
    taken.sort_unstable();
    (taken, closes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn profiles_repeat_from_the_seed_and_the_slow_tail_is_exact() {
        let timing = Timing::default();
        let a = Profile::draw(&timing, 200, 7);
        assert_eq!(a, Profile::draw(&timing, 200, 7));
        assert_ne!(a, Profile::draw(&timing, 200, 8));
        let median = {
            let mut s: Vec<f64> = a.iter().map(|p| p.examples_per_s).collect();
            s.sort_by(f64::total_cmp);
            s[100]
        };
        // Half a unit of σ around the median, slow ones ten times slower.
        assert!(
            (median * timing.seconds_per_example - 1.0).abs() < 0.3,
            "{median}"
        );
        let slow = a
            .iter()
            .filter(|p| p.examples_per_s * timing.seconds_per_example < 0.2)
            .count();
        assert!((15..=30).contains(&slow), "{slow}");
    }

    #[test]
    fn a_round_takes_the_first_arrivals_before_its_deadline() {
        let arrivals = vec![(0, 5.0), (1, 1.0), (2, 3.0), (3, 9.0)];
        assert_eq!(
            take_first(arrivals.clone(), 4, None),
            (vec![0, 1, 2, 3], 9.0)
        );
        assert_eq!(take_first(arrivals.clone(), 2, None), (vec![1, 2], 3.0));
        assert_eq!(
            take_first(arrivals.clone(), 4, Some(6.0)),
            (vec![0, 1, 2], 6.0)
        );
        assert_eq!(
            take_first(arrivals.clone(), 2, Some(6.0)),
            (vec![1, 2], 3.0)
        );
        assert_eq!(take_first(arrivals, 2, Some(0.5)), (vec![], 0.5));
    }
}
