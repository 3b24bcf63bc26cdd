//! The coordinator's round logic as a sans-IO state machine.
//!
//! [`Coordinator`] owns no socket, no clock and no unseeded randomness (the design of
//! quinn-proto and rustls): time arrives as a [`Tick`] argument, inputs arrive through
//! [`Coordinator::handle_event`] and [`Coordinator::handle_timeout`], and what the outside world
//! must do is pulled with [`Coordinator::poll_action`] and [`Coordinator::poll_timeout`]. The
//! simulator and the network service drive this same core, so a dropout, a late update or a
//! crash is a short deterministic test.
//!
//! One round: the core opens it ([`Action::OpenRound`]) with participants chosen from the seed,
//! validates each result as it arrives ([`EventOutcome`] says what happened), aggregates with
//! the federation's [`Strategy`](harambee_strategy::Strategy) once every selected participant
//! has answered, or at the deadline with at least the quorum, and reports the new global model
//! ([`Action::CloseRound`]). Below the quorum at the deadline the round is opened again with a
//! fresh selection. A steward may pause the federation ([`Event::Pause`]): the open round runs
//! to its end and no other opens until [`Event::Resume`].
//!
//! [`Buffered`] is the asynchronous alternative (FedBuff): no rounds, a buffer of K results
//! from whichever versions participants started from, weighted by staleness.
//!
//! Call order: after constructing, and after every `handle_*` call, drain `poll_action` until
//! it returns `None`, then arm a timer for `poll_timeout`.
//!
//! ```
//! use harambee_coordinator::{Action, Coordinator, CoordinatorConfig, Event, Tick};
//! use harambee_params::ParamSet;
//! use harambee_strategy::{FedAvg, FitResult, ParticipantId};
//!
//! let global = ParamSet::from_tensors([("w", vec![1], vec![0.0])]).unwrap();
//! let config = CoordinatorConfig { rounds: 1, min_participants: 1, ..Default::default() };
//! let mut core = Coordinator::new(config, Box::new(FedAvg::default()), global);
//! let now = Tick(0);
//! let _ = core.handle_event(now, Event::Enrol(ParticipantId(7)));
//! let Some(Action::OpenRound(open)) = core.poll_action() else { panic!() };
//! let trained = ParamSet::from_tensors([("w", vec![1], vec![1.5])]).unwrap();
//! let result = FitResult { participant: ParticipantId(7), params: trained, num_samples: 10, train_loss: 0.1 };
//! let digest = result.params.digest();
//! let _ = core.handle_event(now, Event::Result { round: open.round, result, digest });
//! let Some(Action::CloseRound(closed)) = core.poll_action() else { panic!() };
//! assert_eq!(closed.global.values(), &[1.5]);
//! assert!(matches!(core.poll_action(), Some(Action::Finished { .. })));
//! ```

mod buffered;
mod core;
mod download;
mod types;

pub use crate::buffered::{
    Buffered, BufferedAction, BufferedConfig, BufferedContribution, BufferedDp, apply_buffer,
    apply_buffer_privately, staleness_weight, weighted_change,
};
pub use crate::core::Coordinator;
pub use crate::download::published_step;
pub use crate::types::{
    Action, Contribution, CoordinatorConfig, CoreError, Event, EventOutcome, OpenRound, Refusal,
    RestorePoint, RoundOutcome, RoundSummary, Tick,
};
