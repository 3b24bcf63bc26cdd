//! The round state machine, driven by a small deterministic harness: a coordinator and N
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.
//! participants whose "training" is a pure function, so every failure is a short test.

use std::sync::Arc;

use harambee_coordinator::{
    Action, Coordinator, CoordinatorConfig, CoreError, Event, EventOutcome, OpenRound, Refusal,
    RestorePoint, RoundOutcome, RoundSummary, Tick,
};
use harambee_params::ParamSet;
use harambee_strategy::{Failure, FailureReason, FedAvg, FitConfig, FitResult, ParticipantId};

fn model(v: f32) -> ParamSet {
    ParamSet::from_tensors([("w", vec![2], vec![v, v])]).unwrap()
}

/// A participant "trains" by adding its id to every value, with `id` samples.
fn train(open: &OpenRound, p: ParticipantId) -> FitResult {
    let mut params = (*open.global).clone();
    params
        .values_mut()
        .iter_mut()
        .for_each(|v| *v += p.0 as f32);
    FitResult {
        participant: p,
        params,
        num_samples: p.0,
        train_loss: 0.5,
    }
}

struct Harness {
    core: Coordinator,
    now: Tick,
    closed: Vec<RoundSummary>,
    opened: Vec<OpenRound>,
    retried: usize,
    finished: Option<Arc<ParamSet>>,
}

impl Harness {
    /// Enrols `participants`; the first round opens once all of them are in.
    fn new(participants: u64, fraction: f64, mut config: CoordinatorConfig) -> Self {
        config.min_participants = participants as usize;
        let strategy = FedAvg::new(fraction, 1, FitConfig::default());
        let mut h = Harness {
            core: Coordinator::new(config, Box::new(strategy), model(0.0)),
            now: Tick(0),
            closed: vec![],
            opened: vec![],
            retried: 0,
            finished: None,
        };
        for p in 1..=participants {
            assert_eq!(
                h.core.handle_event(h.now, Event::Enrol(ParticipantId(p))),
                EventOutcome::Enrolled
            );
        }
        h.drain();
        h
    }

    fn drain(&mut self) {
        while let Some(a) = self.core.poll_action() {
            match a {
                Action::OpenRound(o) => self.opened.push(o),
                Action::CloseRound(s) => self.closed.push(s),
                Action::RoundRetried { .. } => self.retried += 1,
                Action::Finished { global } => self.finished = Some(global),
            }
        }
    }

    fn current(&self) -> OpenRound {
        self.opened.last().expect("a round is open").clone()
    }

    fn deliver(&mut self, p: ParticipantId) -> EventOutcome {
        let open = self.current();
        let result = train(&open, p);
        let digest = result.params.digest();
        let round = open.round;
        let out = self.core.handle_event(
            self.now,
            Event::Result {
                round,
                result,
                digest,
            },
        );
        self.drain();
        out
    }

    /// Every selected participant delivers.
    fn step(&mut self) {
        let open = self.current();
        for &p in &open.participants {
            assert_eq!(self.deliver(p), EventOutcome::Accepted);
        }
    }

    fn advance_to(&mut self, t: Tick) {
        self.now = t;
        self.core.handle_timeout(t);
        self.drain();
    }
}

fn config(rounds: u64, quorum: usize) -> CoordinatorConfig {
    CoordinatorConfig {
        seed: 42,
        rounds,
        min_participants: 3,
        quorum,
        round_timeout_ms: 1000,
        max_round_retries: 1,
        pause_when_quorum_missed: false,
        ..CoordinatorConfig::default()
    }
}

#[test]
fn rounds_run_to_the_end_and_fedavg_is_applied() {
    let mut h = Harness::new(3, 1.0, config(2, 3));
    h.step();
    // Participants 1, 2, 3 add their id, weighted by id: (1·1 + 2·2 + 3·3) / 6 = 14/6.
    assert_eq!(h.closed.len(), 1);
    assert!((h.closed[0].global.values()[0] - 14.0 / 6.0).abs() < 1e-6);
    assert!(matches!(h.closed[0].outcome, RoundOutcome::Updated(_)));
    h.step();
    assert_eq!(h.closed.len(), 2);
    assert!(h.finished.is_some());
    assert_eq!(
        h.core.handle_event(h.now, Event::Enrol(ParticipantId(9))),
        EventOutcome::Closed
    );
}

#[test]
fn no_round_opens_before_enough_participants() {
    let strategy = FedAvg::default();
    let mut core = Coordinator::new(config(1, 1), Box::new(strategy), model(0.0));
    let _ = core.handle_event(Tick(0), Event::Enrol(ParticipantId(1)));
    assert!(core.poll_action().is_none());
    assert_eq!(core.poll_timeout(), None);
}

#[test]
fn selection_is_deterministic_from_the_seed_and_varies_by_round() {
    let run = || {
        let mut h = Harness::new(
            100,
            0.1,
            CoordinatorConfig {
                rounds: 3,
                ..config(3, 1)
            },
        );
        let mut picks = vec![];
        for _ in 0..3 {
            picks.push(h.current().participants.clone());
            h.step();
        }
        picks
    };
    let a = run();
    assert_eq!(a, run());
    assert_eq!(a[0].len(), 10);
    assert_ne!(a[0], a[1]);
}

#[test]
fn result_arrival_order_does_not_change_the_model() {
    let mut forward = Harness::new(5, 1.0, config(1, 5));
    let mut backward = Harness::new(5, 1.0, config(1, 5));
    let ps = forward.current().participants.clone();
    for &p in &ps {
        let _ = forward.deliver(p);
    }
    for &p in ps.iter().rev() {
        let _ = backward.deliver(p);
    }
    assert_eq!(
        forward.closed[0].global.digest(),
        backward.closed[0].global.digest()
    );
}

#[test]
fn bad_results_are_refused_without_changing_state() {
    let mut h = Harness::new(3, 1.0, config(1, 3));
    let open = h.current();
    let p = ParticipantId(1);
    let refuse = |h: &mut Harness, round: u64, result: FitResult| {
        let digest = result.params.digest();
        let out = h.core.handle_event(
            h.now,
            Event::Result {
                round,
                result,
                digest,
            },
        );
        h.drain();
        out
    };
    // Wrong round.
    assert_eq!(
        refuse(&mut h, 7, train(&open, p)),
        EventOutcome::Refused(Refusal::WrongRound {
            expected: 1,
            got: 7
        })
    );
    // Unknown participant.
    let stranger = train(&open, ParticipantId(99));
    assert_eq!(
        refuse(&mut h, 1, stranger),
        EventOutcome::Refused(Refusal::UnknownParticipant(ParticipantId(99)))
    );
    // Wrong shape.
    let mut wrong = train(&open, p);
    wrong.params = ParamSet::from_tensors([("w", vec![3], vec![0.0; 3])]).unwrap();
    assert_eq!(
        refuse(&mut h, 1, wrong),
        EventOutcome::Refused(Refusal::LayoutMismatch)
    );
    // NaN and infinity.
    let mut nan = train(&open, p);
    nan.params.values_mut()[1] = f32::NAN;
    assert_eq!(
        refuse(&mut h, 1, nan),
        EventOutcome::Refused(Refusal::NonFinite)
    );
    let mut inf = train(&open, p);
    inf.params.values_mut()[0] = f32::INFINITY;
    assert_eq!(
        refuse(&mut h, 1, inf),
        EventOutcome::Refused(Refusal::NonFinite)
    );
    // Zero samples.
    let mut none = train(&open, p);
    none.num_samples = 0;
    assert_eq!(
        refuse(&mut h, 1, none),
        EventOutcome::Refused(Refusal::NoSamples)
    );
    // Nothing of that changed the round: the honest results still produce the exact FedAvg.
    h.step();
    assert!((h.closed[0].global.values()[0] - 14.0 / 6.0).abs() < 1e-6);
    assert_eq!(h.closed[0].contributions.len(), 3);
}

#[test]
fn a_replayed_result_is_refused() {
    let mut h = Harness::new(3, 1.0, config(2, 3));
    assert_eq!(h.deliver(ParticipantId(1)), EventOutcome::Accepted);
    assert_eq!(
        h.deliver(ParticipantId(1)),
        EventOutcome::Refused(Refusal::Duplicate(ParticipantId(1)))
    );
}

#[test]
fn a_dropout_is_tolerated_down_to_the_quorum() {
    let mut h = Harness::new(3, 1.0, config(1, 2));
    let _ = h.deliver(ParticipantId(1));
    let _ = h.core.handle_event(h.now, Event::Leave(ParticipantId(2)));
    h.drain();
    assert!(h.closed.is_empty(), "participant 3 may still deliver");
    let _ = h.deliver(ParticipantId(3));
    assert_eq!(h.closed.len(), 1);
    assert_eq!(
        h.closed[0].failures,
        vec![Failure {
            participant: ParticipantId(2),
            reason: FailureReason::Dropped
        }]
    );
    // (1·1 + 3·3) / 4 = 2.5.
    assert!((h.closed[0].global.values()[0] - 2.5).abs() < 1e-6);
}

#[test]
fn the_deadline_closes_a_round_at_quorum_and_marks_the_late() {
    let mut h = Harness::new(3, 1.0, config(1, 2));
    let _ = h.deliver(ParticipantId(1));
    let _ = h.deliver(ParticipantId(2));
    // A spurious early timeout does nothing.
    h.advance_to(Tick(10));
    assert!(h.closed.is_empty());
    h.advance_to(Tick(1000));
    assert_eq!(h.closed.len(), 1);
    assert_eq!(h.closed[0].failures[0].reason, FailureReason::Late);
    // A result after the round closed is refused.
    let result = train(&h.opened[0], ParticipantId(3));
    let digest = result.params.digest();
    let late = h.core.handle_event(
        h.now,
        Event::Result {
            round: 1,
            result,
            digest,
        },
    );
    assert_eq!(late, EventOutcome::Closed);
}

#[test]
fn below_quorum_the_round_is_retried_then_the_federation_fails() {
    let mut h = Harness::new(3, 1.0, config(1, 3));
    let _ = h.deliver(ParticipantId(1));
    h.advance_to(Tick(1000));
    assert_eq!(h.retried, 1);
    assert_eq!(h.current().attempt, 1);
    assert_eq!(h.current().round, 1);
    h.advance_to(Tick(2000));
    assert_eq!(h.retried, 2);
    assert!(h.finished.is_some());
    assert_eq!(
        h.core.error(),
        Some(&CoreError::QuorumNotReached {
            round: 1,
            quorum: 3,
            attempts: 2
        })
    );
}

#[test]
fn a_resumed_coordinator_continues_from_the_recorded_round() {
    let strategy = FedAvg::default();
    let mut core = Coordinator::resume(config(5, 1), Box::new(strategy), model(3.0), 4);
    for p in 1..=3 {
        let _ = core.handle_event(Tick(0), Event::Enrol(ParticipantId(p)));
    }
    let Some(Action::OpenRound(open)) = core.poll_action() else {
        panic!("expected a round")
    };
    assert_eq!(open.round, 5);
    assert_eq!(open.base, model(3.0).digest());
}

#[test]
fn a_restored_round_keeps_its_attempt_and_selection_and_takes_the_results_again() {
    let selected = vec![ParticipantId(2), ParticipantId(3)];
    let point = RestorePoint {
        completed: 1,
        participants: (1..=4).map(ParticipantId).collect(),
        open: Some((2, selected.clone())),
        paused: false,
    };
    let mut core =
        Coordinator::restore(config(3, 2), Box::new(FedAvg::default()), model(1.0), point);
    let Some(Action::OpenRound(open)) = core.poll_action() else {
        panic!("the open round is reopened")
    };
    assert_eq!(
        (open.round, open.attempt, open.participants.clone()),
        (2, 2, selected)
    );
    // Participant 1 is enrolled but was not selected for this attempt.
    let mut stranger = train(&open, ParticipantId(1));
    stranger.participant = ParticipantId(1);
    assert_eq!(
        core.check_result(2, &stranger),
        Err(Refusal::NotSelected(ParticipantId(1)))
    );
    for p in [2, 3] {
        let result = train(&open, ParticipantId(p));
        assert_eq!(core.check_result(2, &result), Ok(()));
        let digest = result.params.digest();
        assert_eq!(
            core.handle_event(
                Tick(1),
                Event::Result {
                    round: 2,
                    result,
                    digest
                }
            ),
            EventOutcome::Accepted
        );
    }
    assert!(matches!(core.poll_action(), Some(Action::CloseRound(s)) if s.round == 2));
}

#[test]
fn a_paused_federation_finishes_its_open_round_and_opens_none_until_resumed() {
    let mut h = Harness::new(3, 1.0, config(3, 1));
    assert_eq!(
        h.core.handle_event(h.now, Event::Pause),
        EventOutcome::Paused
    );
    h.drain();
    // The round already open runs to its end...
    h.step();
    assert_eq!(h.closed.len(), 1);
    // ...but no other opens, whatever happens meanwhile.
    let _ = h.core.handle_event(h.now, Event::Enrol(ParticipantId(9)));
    h.advance_to(Tick(10_000));
    assert_eq!(h.opened.len(), 1);
    assert_eq!(h.core.poll_timeout(), None);
    assert!(h.core.is_paused());
    assert_eq!(
        h.core.handle_event(h.now, Event::Resume),
        EventOutcome::Resumed
    );
    h.drain();
    assert_eq!(h.opened.len(), 2);
    assert_eq!(h.current().round, 2);
}

#[test]
fn a_restored_paused_federation_opens_no_round() {
    let point = RestorePoint {
        completed: 1,
        participants: (1..=3).map(ParticipantId).collect(),
        open: None,
        paused: true,
    };
    let mut core =
        Coordinator::restore(config(3, 1), Box::new(FedAvg::default()), model(1.0), point);
    assert!(core.poll_action().is_none());
    let _ = core.handle_event(Tick(0), Event::Resume);
    assert!(matches!(core.poll_action(), Some(Action::OpenRound(o)) if o.round == 2));
}

/// Regression: a round that missed its quorum while too few participants were left was
/// reopened later as attempt 0 again, so a participant's second update for it collided with
/// its first in the state (updates are keyed by round and attempt).
#[test]
fn a_round_reopened_after_waiting_for_participants_takes_a_new_attempt_number() {
    let mut h = Harness::new(3, 1.0, config(3, 3));
    let first = h.current();
    assert_eq!(first.attempt, 0);
    let _ = h.core.handle_event(h.now, Event::Leave(ParticipantId(3)));
    h.drain();
    h.advance_to(Tick(5_000));
    assert_eq!(h.retried, 1);
    assert_eq!(h.opened.len(), 1, "too few participants to reopen at once");
    let _ = h.core.handle_event(h.now, Event::Enrol(ParticipantId(3)));
    h.drain();
    let again = h.current();
    assert_eq!((again.round, again.attempt), (1, 1));
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// One input a hostile or unlucky world may send.
    #[derive(Debug, Clone)]
    enum Input {
        Honest(u64),
        WrongRound(u64, u64),
        NonFinite(u64),
        Replay(u64),
        Leave(u64),
        Enrol(u64),
        Fail(u64),
        Timeout(u64),
    }

    fn input() -> impl Strategy<Value = Input> {
        prop_oneof![
            4 => (1u64..8).prop_map(Input::Honest),
            1 => (1u64..8, 0u64..6).prop_map(|(p, r)| Input::WrongRound(p, r)),
            1 => (1u64..8).prop_map(Input::NonFinite),
            1 => (1u64..8).prop_map(Input::Replay),
            1 => (1u64..8).prop_map(Input::Leave),
            1 => (1u64..10).prop_map(Input::Enrol),
            1 => (1u64..8).prop_map(Input::Fail),
            1 => (0u64..3000).prop_map(Input::Timeout),
        ]
    }

    proptest! {
        /// Whatever arrives, in whatever order: nothing panics, every closed round was
        /// aggregated from distinct selected participants with finite values, rounds close in
        /// order, and a refused input never changes what the round produces.
        #[test]
        fn any_sequence_of_inputs_keeps_the_invariants(inputs in prop::collection::vec(input(), 0..80)) {
            let mut h = Harness::new(6, 0.5, CoordinatorConfig { rounds: 4, quorum: 2, ..config(4, 2) });
            for i in inputs {
                let Some(open) = h.opened.last().cloned() else { break };
                if h.finished.is_some() {
                    break;
                }
                let p = |id| ParticipantId(id);
                let outcome = match i {
                    Input::Honest(id) => h.core.handle_event(h.now, Event::Result { round: open.round, digest: train(&open, p(id)).params.digest(), result: train(&open, p(id)) }),
                    Input::WrongRound(id, r) => {
                        let round = if r == open.round { r + 1 } else { r };
                        let result = train(&open, p(id));
                        let out = h.core.handle_event(h.now, Event::Result { round, digest: result.params.digest(), result });
                        prop_assert!(matches!(out, EventOutcome::Refused(_)), "{out:?}");
                        out
                    }
                    Input::NonFinite(id) => {
                        let mut result = train(&open, p(id));
                        result.params.values_mut()[0] = f32::NAN;
                        let out = h.core.handle_event(h.now, Event::Result { round: open.round, digest: result.params.digest(), result });
                        prop_assert!(matches!(out, EventOutcome::Refused(_)), "{out:?}");
                        out
                    }
                    Input::Replay(id) => {
                        let result = train(&open, p(id));
                        let digest = result.params.digest();
                        let _ = h.core.handle_event(h.now, Event::Result { round: open.round, result: result.clone(), digest });
                        h.drain();
                        h.core.handle_event(h.now, Event::Result { round: open.round, result, digest })
                    }
                    Input::Leave(id) => h.core.handle_event(h.now, Event::Leave(p(id))),
                    Input::Enrol(id) => h.core.handle_event(h.now, Event::Enrol(p(id))),
                    Input::Fail(id) => h.core.handle_event(h.now, Event::Failed { round: open.round, failure: Failure { participant: p(id), reason: FailureReason::Dropped } }),
                    Input::Timeout(dt) => {
                        h.advance_to(h.now.after_ms(dt));
                        EventOutcome::Closed
                    }
                };
                let _ = outcome;
                h.drain();
            }
            for (i, s) in h.closed.iter().enumerate() {
                let mut who: Vec<_> = s.contributions.iter().map(|c| c.participant).collect();
                let n = who.len();
                who.dedup();
                prop_assert_eq!(who.len(), n, "a participant counted twice");
                prop_assert!(s.global.check_finite().is_ok());
                prop_assert!(n >= 2 || matches!(s.outcome, RoundOutcome::Kept { .. }), "closed below quorum");
                if i > 0 {
                    prop_assert_eq!(s.round, h.closed[i - 1].round + 1);
                }
            }
        }
    }
}

#[test]
fn a_secure_sum_closes_the_round_and_bad_ones_are_refused() {
    let mut h = Harness::new(4, 1.0, config(3, 2));
    let open = h.current();
    let sum = |who: &[u64], v: f32| harambee_strategy::SecureSum {
        delta_sum: model(v),
        contributors: who.iter().map(|&p| ParticipantId(p)).collect(),
        selected: 0,
        within_clip: None,
    };
    let secure = |h: &mut Harness, s| {
        let out = h.core.handle_event(
            h.now,
            Event::SecureSum {
                round: open.round,
                sum: s,
            },
        );
        h.drain();
        out
    };
    assert_eq!(
        secure(&mut h, sum(&[1], 1.0)),
        EventOutcome::Refused(Refusal::BelowQuorum { got: 1, quorum: 2 })
    );
    assert_eq!(
        secure(&mut h, sum(&[1, 9], 1.0)),
        EventOutcome::Refused(Refusal::NotSelected(ParticipantId(9)))
    );
    assert_eq!(
        secure(&mut h, sum(&[1, 1], 1.0)),
        EventOutcome::Refused(Refusal::Duplicate(ParticipantId(1)))
    );
    assert_eq!(
        secure(&mut h, sum(&[1, 2], f32::NAN)),
        EventOutcome::Refused(Refusal::NonFinite)
    );
    assert!(h.closed.is_empty(), "refused sums change nothing");
    // Participants 1 and 3 summed to (6, 6): FedAvg's blind mean moves the model by 3.
    assert_eq!(secure(&mut h, sum(&[1, 3], 6.0)), EventOutcome::Accepted);
    let closed = h.closed.last().unwrap();
    assert_eq!(closed.global.values(), &[3.0, 3.0]);
    assert_eq!(closed.contributions.len(), 2);
    let dropped: Vec<u64> = closed.failures.iter().map(|f| f.participant.0).collect();
    assert_eq!(dropped, vec![2, 4]);
}

// Before, a round that missed its quorum too often ended the federation as failed, even when
// its members were only quiet for a while (or crowded out by silent enrolments).
#[test]
fn below_quorum_too_often_a_federation_can_pause_and_a_resume_carries_on() {
    let mut settings = config(1, 3);
    settings.pause_when_quorum_missed = true;
    let mut h = Harness::new(3, 1.0, settings);
    let _ = h.deliver(ParticipantId(1));
    h.advance_to(Tick(1000));
    h.advance_to(Tick(2000));
    assert_eq!(h.retried, 2);
    assert!(h.finished.is_none() && h.core.error().is_none());
    assert!(h.core.is_paused());
    assert_eq!(h.core.open_round(), None, "no round opens while paused");
    let _ = h.core.handle_event(h.now, Event::Resume);
    h.drain();
    assert_eq!((h.current().round, h.current().attempt), (1, 2));
}

// Before, silent members were chosen as often as anyone: a swarm of them kept every attempt
// from its quorum. Now those who stayed silent fill only the places left.
#[test]
fn members_who_stayed_silent_are_chosen_only_when_too_few_others_are_left() {
    let mut settings = config(1, 2);
    settings.max_round_retries = 5;
    // Six members, a third of them chosen each attempt.
    let mut h = Harness::new(6, 1.0 / 3.0, settings);
    let first = h.current().participants.clone();
    h.advance_to(Tick(1000));
    let second = h.current().participants.clone();
    assert!(
        second.iter().all(|p| !first.contains(p)),
        "chosen again after staying silent: {first:?} then {second:?}"
    );
    h.advance_to(Tick(2000));
    let third = h.current().participants.clone();
    assert!(
        third
            .iter()
            .all(|p| !first.contains(p) && !second.contains(p))
    );
    // Everyone has stayed silent once: the places are filled from all of them again.
    h.advance_to(Tick(3000));
    assert_eq!(h.current().participants.len(), 2);
    assert!(h.core.error().is_none());
}
