//! Secure aggregation in the simulator: the round's participants and the coordinator run the
//! real SecAgg+ state machines in this process, so the core receives only the unmasked sum,
//! exactly as a networked coordinator would.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use harambee_coordinator::OpenRound;
use harambee_params::ParamSet;
use harambee_secagg::{Client, Config, FixedPoint, SealedShare, Server};
use harambee_strategy::{ParticipantId, SecureSum, UpdatePrivacy};
use rayon::prelude::*;
use sha2::{Digest as _, Sha256};

use crate::SimError;

/// What secure aggregation cost in one round.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SecAggCost {
    /// CPU seconds of all participants' protocol steps (masking dominates), summed over
    /// participants, preparing their vectors included.
    pub client_s: f64,
    /// Seconds of the coordinator's steps (routing, summing, unmasking).
    pub server_s: f64,
    /// Bytes each participant sends, on average, beyond its plain update.
    pub extra_bytes_up: u64,
    /// Coordinates clipped by the fixed-point range, over all participants.
    pub clipped: usize,
}

/// The fixed-point range for updates under `privacy`: the clipping bound plus six standard
/// deviations of the participant's noise (the count report needs 1 plus its noise), or the
/// configured range when nothing bounds the update.
pub fn range_for(privacy: Option<&UpdatePrivacy>, default_range: f32) -> f32 {
    match privacy {
        Some(p) => p.coordinate_bound() as f32,
        None => default_range,
    }
}

/// The round's public session identifier: everything it binds differs between rounds and
/// attempts, and between federations with different seeds.
pub fn session_for(federation: &[u8], round: u64, attempt: u32) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"harambee/secagg/session/v1");
    h.update(federation);
    h.update(round.to_le_bytes());
    h.update(attempt.to_le_bytes());
    h.finalize().into()
}

/// CPU time spent by one side, summed over threads.
#[derive(Default)]
struct Clock(AtomicU64);

impl Clock {
    fn time<T>(&self, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = f();
        self.0
            .fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        out
    }

    fn seconds(&self) -> f64 {
        self.0.load(Ordering::Relaxed) as f64 * 1e-9
    }
}

/// Runs the protocol over the participants that trained: each turns its update into
/// fixed-point words (after `privacy`'s clipping and noise), and the coordinator learns only
/// the sum. Participants selected but absent from `updates` never advertise keys.
pub fn secure_sum(
    open: &OpenRound,
    updates: Vec<(ParticipantId, ParamSet)>,
    default_range: f32,
    federation: &[u8],
) -> Result<(SecureSum, SecAggCost), SimError> {
    let n = open.participants.len() as u32;
    let privacy = open.privacy;
    let report = privacy.is_some_and(|p| p.report_within_clip);
    let session = session_for(federation, open.round, open.attempt);
    let mut config = Config::recommended(session, n, open.global.len() + usize::from(report));
    config.min_survivors = config.threshold;
    let fixed = FixedPoint {
        range: range_for(privacy.as_ref(), default_range),
        max_summands: n,
    };
    let (participant, coordinator) = (Clock::default(), Clock::default());
    let index = |p: ParticipantId| open.participants.iter().position(|&q| q == p);

    // Each participant prepares its vector and its state machine, in parallel as they would.
    let prepared: Vec<(Client, Vec<u32>, usize)> = updates
        .into_par_iter()
        .filter_map(|(p, delta)| {
            let id = index(p)? as u32;
            Some(participant.time(|| prepare(&config, id, delta, privacy, report, &fixed)))
        })
        .collect::<Result<_, _>>()?;
    let clipped = prepared.iter().map(|(_, _, c)| c).sum();
    let (mut clients, inputs): (Vec<Client>, Vec<Vec<u32>>) =
        prepared.into_iter().map(|(c, w, _)| (c, w)).unzip();
    let mut server = Server::new(config)?;

    // Step 1: keys.
    let adverts = participant.time(|| {
        clients
            .iter_mut()
            .map(Client::advertise)
            .collect::<Result<Vec<_>, _>>()
    })?;
    let rosters = coordinator.time(|| {
        adverts
            .into_iter()
            .try_for_each(|a| server.receive_keys(a))?;
        server.close_keys()
    })?;
    // Step 2: sealed shares.
    let sealed: Vec<(u32, Vec<SealedShare>)> = clients
        .par_iter_mut()
        .filter_map(|c| {
            let roster = rosters.get(&c.id())?;
            Some(participant.time(|| c.share_keys(roster, &mut rand::rng()).map(|s| (c.id(), s))))
        })
        .collect::<Result<_, _>>()?;
    let share_bytes: usize = sealed
        .iter()
        .flat_map(|(_, s)| s)
        .map(|x| x.ciphertext.len() + 8)
        .sum();
    let inboxes = coordinator.time(|| {
        sealed
            .into_iter()
            .try_for_each(|(from, s)| server.receive_shares(from, s))?;
        server.close_shares()
    })?;
    // Step 3: masked inputs.
    let masked: Vec<_> = clients
        .par_iter_mut()
        .zip(&inputs)
        .filter_map(|(c, input)| {
            let inbox = inboxes.get(&c.id())?;
            Some(participant.time(|| c.mask_input(input, inbox)))
        })
        .collect::<Result<_, _>>()?;
    let survivors = coordinator.time(|| {
        masked
            .into_iter()
            .try_for_each(|m| server.receive_masked(m))?;
        server.close_masked()
    })?;
    // Step 4: unmasking.
    let unmaskings: Vec<_> = participant.time(|| {
        clients
            .iter_mut()
            .filter(|c| survivors.ids.contains(&c.id()))
            .map(|c| c.unmask(&survivors))
            .collect::<Result<_, _>>()
    })?;
    let unmask_bytes: usize = unmaskings
        .iter()
        .map(|u| 52 * (u.seed_shares.len() + u.key_shares.len()))
        .sum();
    let sum = coordinator.time(|| {
        unmaskings
            .into_iter()
            .try_for_each(|u| server.receive_unmasking(u))?;
        server.finish()
    })?;

    let mut decoded = fixed.decode(&sum.values);
    let within_clip = report.then(|| f64::from(decoded.pop().unwrap_or(0.0)));
    let senders = clients.len().max(1);
    let cost = SecAggCost {
        client_s: participant.seconds(),
        server_s: coordinator.seconds(),
        extra_bytes_up: ((64 * senders + share_bytes + unmask_bytes) / senders) as u64,
        clipped,
    };
    let sum = SecureSum {
        delta_sum: ParamSet::from_values(open.global.layout().clone(), decoded)?,
        contributors: sum
            .contributors
            .iter()
            .map(|&i| open.participants[i as usize])
            .collect(),
        selected: open.participants.len(),
        within_clip,
    };
    Ok((sum, cost))
}

/// One participant's side before the protocol: clip and noise its update as told, append its
/// within-clip report, encode in fixed point, and make fresh keys.
fn prepare(
    config: &Config,
    id: u32,
    mut delta: ParamSet,
    privacy: Option<UpdatePrivacy>,
    report: bool,
    fixed: &FixedPoint,
) -> Result<(Client, Vec<u32>, usize), SimError> {
    let mut rng = rand::rng();
    let within = privacy.map_or(0.0, |p| p.apply(&mut delta, &mut rng));
    let mut values = delta.into_values();
    if report {
        values.push(within as f32);
    }
    let (words, clipped) = fixed.encode(&values);
    Ok((Client::new(config.clone(), id, &mut rng)?, words, clipped))
}
