//! The federated-learning simulator: N virtual participants in one process, driving the same
//! coordinator core ([`harambee_coordinator::Coordinator`]) the network service runs.
//!
//! A [`Workload`] names the data, the model and how the data is split; a [`SimConfig`] adds the
//! federation's settings; [`Simulation::run`] plays the rounds. Memory stays bounded: a
//! participant is an index set into one shared data set, and no model is kept for idle
//! participants. Local training of a round's participants runs in parallel across cores.
//! With [`SimConfig::secure_aggregation`] the round's participants and the coordinator run
//! SecAgg+ ([`harambee_secagg`]) and the core sees only the sum. Everything is deterministic
//! from the seed, except secret noise and secret keys, which come from the operating system. Each round yields a [`RoundRecord`] (written as
//! JSON lines and CSV by [`MetricsWriter`]), and the run a [`Summary`]. With
//! [`SimConfig::timing`], a simulated clock gives each participant a speed and links
//! ([`Timing`]) and each round the time it would take, so a run reports its simulated time to
//! the target accuracy under synchronous rounds, over-selection or a deadline.
//!
//! ```no_run
//! use harambee_sim::{SimConfig, Simulation, Workload};
//!
//! let config = SimConfig { rounds: 5, clients: 20, fraction: 0.25, ..SimConfig::default() };
//! let workload = Workload::load(&config).unwrap();
//! let mut sim = Simulation::new(config, workload).unwrap();
//! let summary = sim.run(&mut |record: &harambee_sim::RoundRecord| {
//!     println!("round {} accuracy {:?}", record.round, record.accuracy);
//! }).unwrap();
//! println!("best accuracy {:.3}", summary.best_accuracy);
//! ```

mod attack;
mod clock;
mod config;
mod error;
mod metrics;
mod secure;
mod simulation;
mod workload;

pub use attack::Attack;
pub use clock::{Profile, Timing, take_first};
pub use config::{DatasetName, PrivacySettings, SimConfig};
pub use error::SimError;
pub use harambee_learn::multilingual::LanguageLoss;
pub use metrics::{MetricsWriter, RoundRecord, Summary, peak_rss_bytes};
pub use secure::{SecAggCost, range_for, secure_sum, session_for};
pub use simulation::{FedBuffSettings, LocalBaseline, Observer, Simulation};
pub use workload::Workload;
