//! The protocol end to end: exact sums, dropouts at every step, failures below the
//! threshold, tampering, and what the server gets to see.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use common::{Inboxes, keys_and_shares};

use harambee_secagg::{Client, Config, SecAggError, Server, Sum, Survivors};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// Where in the protocol a participant stops answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DropAt {
    /// Sends no keys.
    Keys,
    /// Gets a roster, sends no shares.
    Shares,
    /// Gets its shares, sends no masked input.
    Masked,
    /// Is named a survivor, sends no unmasking.
    Unmasking,
}

struct Outcome {
    result: Result<Sum, SecAggError>,
    inputs: Vec<Vec<u32>>,
    masked: Vec<Vec<u32>>,
}

/// Runs one round of `n` participants with `dim` random words each; those in `dropped` stop
/// answering at `at`.
fn run(config: &Config, dropped: &BTreeSet<u32>, at: DropAt, seed: u64) -> Outcome {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let n = config.participants;
    let inputs: Vec<Vec<u32>> = (0..n)
        .map(|_| (0..config.dimension).map(|_| rng.random()).collect())
        .collect();
    let mut clients: Vec<Client> = (0..n)
        .map(|i| Client::new(config.clone(), i, &mut rng).unwrap())
        .collect();
    let mut server = Server::new(config.clone()).unwrap();
    let alive = |i: u32, step: DropAt| !(dropped.contains(&i) && at == step);
    let mut masked = Vec::new();
    let result = (|| {
        for c in clients.iter_mut().filter(|c| alive(c.id(), DropAt::Keys)) {
            server.receive_keys(c.advertise()?)?;
        }
        let rosters = server.close_keys()?;
        for c in clients.iter_mut() {
            if let Some(roster) = rosters
                .get(&c.id())
                .filter(|_| alive(c.id(), DropAt::Shares))
            {
                let sealed = c.share_keys(roster, &mut rng)?;
                server.receive_shares(c.id(), sealed)?;
            }
        }
        let inboxes = server.close_shares()?;
        for c in clients.iter_mut() {
            if let Some(inbox) = inboxes
                .get(&c.id())
                .filter(|_| alive(c.id(), DropAt::Masked))
            {
                let m = c.mask_input(&inputs[c.id() as usize], inbox)?;
                masked.push(m.values.clone());
                server.receive_masked(m)?;
            }
        }
        let survivors = server.close_masked()?;
        for c in clients.iter_mut() {
            if survivors.ids.contains(&c.id()) && alive(c.id(), DropAt::Unmasking) {
                server.receive_unmasking(c.unmask(&survivors)?)?;
            }
        }
        server.finish()
    })();
    Outcome {
        result,
        inputs,
        masked,
    }
}

fn plain_sum(inputs: &[Vec<u32>], who: &[u32]) -> Vec<u32> {
    let mut sum = vec![0u32; inputs[0].len()];
    for &i in who {
        sum.iter_mut()
            .zip(&inputs[i as usize])
            .for_each(|(s, v)| *s = s.wrapping_add(*v));
    }
    sum
}

fn random_subset(n: u32, k: usize, seed: u64) -> BTreeSet<u32> {
    let mut ids: Vec<u32> = (0..n).collect();
    rand::seq::SliceRandom::shuffle(ids.as_mut_slice(), &mut ChaCha20Rng::seed_from_u64(seed));
    ids.into_iter().take(k).collect()
}

#[test]
fn without_dropouts_the_sum_is_exact() {
    let config = Config::recommended([1; 32], 12, 257);
    let out = run(&config, &BTreeSet::new(), DropAt::Keys, 1);
    let sum = out.result.unwrap();
    assert_eq!(sum.contributors, (0..12).collect::<Vec<_>>());
    assert_eq!(sum.values, plain_sum(&out.inputs, &sum.contributors));
}

#[test]
fn a_hundred_participants_survive_thirty_percent_dropping_at_each_step() {
    let config = Config::recommended([2; 32], 100, 64);
    assert!(config.degree < 99, "the graph must be sparse: {config:?}");
    for (k, at) in [
        DropAt::Keys,
        DropAt::Shares,
        DropAt::Masked,
        DropAt::Unmasking,
    ]
    .into_iter()
    .enumerate()
    {
        let dropped = random_subset(100, 30, k as u64);
        let out = run(&config, &dropped, at, 10 + k as u64);
        let sum = out
            .result
            .unwrap_or_else(|e| panic!("dropping at {at:?}: {e}"));
        let expected: Vec<u32> = match at {
            // A participant that dropped after sending its masked input is still summed.
            DropAt::Unmasking => (0..100).collect(),
            _ => (0..100).filter(|i| !dropped.contains(i)).collect(),
        };
        assert_eq!(sum.contributors, expected, "{at:?}");
        assert_eq!(sum.values, plain_sum(&out.inputs, &expected), "{at:?}");
    }
}

#[test]
fn dropouts_at_every_step_in_one_round() {
    let config = Config::recommended([3; 32], 100, 16);
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    // 8 at each step: 32 in all, and the sum is over the 76 that sent a masked input.
    let mut order: Vec<u32> = (0..100).collect();
    rand::seq::SliceRandom::shuffle(order.as_mut_slice(), &mut rng);
    let groups: Vec<BTreeSet<u32>> = order
        .chunks(8)
        .take(4)
        .map(|c| c.iter().copied().collect())
        .collect();
    // Run by hand: each group drops at its own step.
    let n = 100;
    let inputs: Vec<Vec<u32>> = (0..n)
        .map(|_| (0..16).map(|_| rng.random()).collect())
        .collect();
    let mut clients: Vec<Client> = (0..n)
        .map(|i| Client::new(config.clone(), i, &mut rng).unwrap())
        .collect();
    let mut server = Server::new(config.clone()).unwrap();
    for c in clients.iter_mut().filter(|c| !groups[0].contains(&c.id())) {
        server.receive_keys(c.advertise().unwrap()).unwrap();
    }
    let rosters = server.close_keys().unwrap();
    for c in clients.iter_mut().filter(|c| !groups[1].contains(&c.id())) {
        if let Some(roster) = rosters.get(&c.id()) {
            let sealed = c.share_keys(roster, &mut rng).unwrap();
            server.receive_shares(c.id(), sealed).unwrap();
        }
    }
    let inboxes = server.close_shares().unwrap();
    for c in clients.iter_mut().filter(|c| !groups[2].contains(&c.id())) {
        if let Some(inbox) = inboxes.get(&c.id()) {
            server
                .receive_masked(c.mask_input(&inputs[c.id() as usize], inbox).unwrap())
                .unwrap();
        }
    }
    let survivors = server.close_masked().unwrap();
    assert_eq!(survivors.ids.len(), 76);
    for c in clients.iter_mut().filter(|c| !groups[3].contains(&c.id())) {
        if survivors.ids.contains(&c.id()) {
            server
                .receive_unmasking(c.unmask(&survivors).unwrap())
                .unwrap();
        }
    }
    let sum = server.finish().unwrap();
    assert_eq!(sum.contributors, survivors.ids);
    assert_eq!(sum.values, plain_sum(&inputs, &sum.contributors));
}

#[test]
fn below_the_threshold_the_round_fails_and_no_sum_comes_out() {
    let config = Config::recommended([5; 32], 100, 8);
    for at in [DropAt::Keys, DropAt::Shares, DropAt::Masked] {
        let out = run(&config, &random_subset(100, 60, 7), at, 8);
        assert!(
            matches!(out.result, Err(SecAggError::TooFewSurvivors { .. })),
            "dropping 60% at {at:?}: {:?}",
            out.result.map(|s| s.contributors)
        );
    }
    // 60 of 100 silent at the last step: too few holders answer for some secret.
    let out = run(&config, &random_subset(100, 60, 9), DropAt::Unmasking, 10);
    assert!(
        matches!(out.result, Err(SecAggError::TooFewShares { .. })),
        "{:?}",
        out.result.map(|s| s.contributors)
    );
}

#[test]
fn participants_refuse_to_unmask_for_too_few_survivors() {
    let (config, mut clients, _, inboxes) = shared_round(10, 6, 4);
    assert_eq!(config.degree, 9);
    for c in &mut clients {
        c.mask_input(&[1, 2, 3, 4], &inboxes[&c.id()]).unwrap();
    }
    // A server claiming that only three survived, to learn the others' key shares.
    let lie = Survivors { ids: vec![0, 1, 2] };
    assert!(matches!(
        clients[0].unmask(&lie),
        Err(SecAggError::TooFewSurvivors { .. })
    ));
    // A list without the participant itself, or with a repeat, is refused too.
    let without = Survivors {
        ids: (1..10).collect(),
    };
    assert!(clients[0].unmask(&without).is_err()); // the failed step also ends the client
    let repeated = Survivors {
        ids: vec![1, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    };
    assert!(clients[1].unmask(&repeated).is_err());
}

#[test]
fn the_server_sees_masked_vectors_unlike_the_inputs() {
    let config = Config::recommended([7; 32], 20, 4096);
    let out = run(&config, &BTreeSet::new(), DropAt::Keys, 3);
    assert!(out.result.is_ok());
    for (input, masked) in out.inputs.iter().zip(&out.masked) {
        let equal = input.iter().zip(masked).filter(|(a, b)| a == b).count();
        // A uniform mask leaves a word unchanged with probability 2^-32.
        assert!(equal <= 1, "{equal} of 4096 words unmasked");
    }
    // An all-zero input is masked into something that looks uniform: about half the bits set.
    let (_, mut clients, _, inboxes) = shared_round(5, 8, 4096);
    let masked = clients[0].mask_input(&vec![0; 4096], &inboxes[&0]).unwrap();
    let ones: u32 = masked.values.iter().map(|w| w.count_ones()).sum();
    let fraction = f64::from(ones) / (4096.0 * 32.0);
    assert!((fraction - 0.5).abs() < 0.01, "{fraction}");
}

/// Steps 1 and 2 of a round of `n` with vectors of `dimension` in session `session`: the
/// clients, the server and each client's inbox, ready for step 3.
fn shared_round(n: u32, session: u8, dimension: usize) -> (Config, Vec<Client>, Server, Inboxes) {
    let config = Config::recommended([session; 32], n, dimension);
    let (clients, server, inboxes) = keys_and_shares(&config, &mut ChaCha20Rng::seed_from_u64(11));
    (config, clients, server, inboxes)
}

#[test]
fn altered_misdirected_or_replayed_shares_are_refused() {
    let (_, mut clients, _, inboxes) = shared_round(6, 9, 3);
    let mut altered = inboxes[&0].clone();
    altered[0].ciphertext[5] ^= 1;
    assert!(matches!(
        clients[0].mask_input(&[0; 3], &altered),
        Err(SecAggError::BadShare { .. })
    ));

    let mut misdirected = inboxes[&1].clone();
    misdirected[0].to = 2;
    assert!(clients[1].mask_input(&[0; 3], &misdirected).is_err());

    // A share meant for participant 3 handed to participant 2 as if to it fails to open.
    let mut swapped = inboxes[&2].clone();
    let mut stolen = inboxes[&3][0].clone();
    if stolen.from == 2 {
        stolen = inboxes[&3][1].clone();
    }
    stolen.to = 2;
    if let Some(slot) = swapped.iter_mut().find(|s| s.from == stolen.from) {
        *slot = stolen;
    }
    assert!(clients[2].mask_input(&[0; 3], &swapped).is_err());

    let mut repeated = inboxes[&3].clone();
    repeated.push(repeated[0].clone());
    assert!(clients[3].mask_input(&[0; 3], &repeated).is_err());

    // Shares from another round (another session) do not open.
    let (_, _, _, other) = shared_round(6, 10, 3);
    assert!(clients[4].mask_input(&[0; 3], &other[&4]).is_err());
    // A client whose step failed cannot try again with other shares.
    assert!(matches!(
        clients[0].mask_input(&[0; 3], &inboxes[&0]),
        Err(SecAggError::OutOfOrder(_))
    ));
}

#[test]
fn the_server_refuses_malformed_messages_and_wrong_order() {
    let (config, mut clients, mut server, inboxes) = shared_round(6, 9, 3);
    assert!(server.close_keys().is_err());
    let m = clients[0].mask_input(&[1, 2, 3], &inboxes[&0]).unwrap();
    let mut short = m.clone();
    short.values.pop();
    assert!(server.receive_masked(short).is_err());
    server.receive_masked(m.clone()).unwrap();
    assert!(server.receive_masked(m).is_err(), "a replayed masked input");
    let mut stranger = clients[1].mask_input(&[1, 2, 3], &inboxes[&1]).unwrap();
    stranger.from = 99;
    assert!(server.receive_masked(stranger).is_err());
    assert!(matches!(server.finish(), Err(SecAggError::OutOfOrder(_))));
    // Input of the wrong length is refused by the client before anything is sent.
    assert!(clients[2].mask_input(&[1, 2], &inboxes[&2]).is_err());
    // A configuration that would let a minority of holders recover secrets is refused.
    let mut weak = config;
    weak.threshold = 2;
    assert!(Server::new(weak).is_err());
}

#[test]
fn a_forged_unmasking_share_is_caught() {
    let (_, mut clients, mut server, inboxes) = shared_round(6, 9, 3);
    for c in &mut clients {
        let m = c.mask_input(&[1, 2, 3], &inboxes[&c.id()]).unwrap();
        server.receive_masked(m).unwrap();
    }
    let survivors = server.close_masked().unwrap();
    for c in &mut clients {
        let mut reply = c.unmask(&survivors).unwrap();
        if c.id() == 0 {
            reply.seed_shares[0].1.y[0] ^= 1;
        }
        server.receive_unmasking(reply).unwrap();
    }
    assert!(matches!(server.finish(), Err(SecAggError::BadShare { .. })));
}
