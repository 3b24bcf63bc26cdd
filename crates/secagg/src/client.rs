//! The participant's side of the protocol.

use std::collections::{BTreeMap, BTreeSet};

use rand::CryptoRng;
use x25519_dalek::StaticSecret;
use zeroize::Zeroize;

use crate::crypto::{self, Purpose};
use crate::shamir;
use crate::{
    Config, Graph, KeyAdvert, MaskedInput, SealedShare, SecAggError, SharePair, Survivors,
    Unmasking,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Advertise,
    ShareKeys,
    MaskInput,
    Unmask,
    Done,
}

/// One participant's state for one round. Each method is one step; calling them out of order
/// is an error, and a failed step leaves the client unable to go on (start a new round).
pub struct Client {
    config: Config,
    graph: Graph,
    id: u32,
    step: Step,
    cipher_secret: StaticSecret,
    mask_secret: StaticSecret,
    self_seed: [u8; 32],
    /// Neighbours' keys as the server handed them over (step 2).
    roster: BTreeMap<u32, KeyAdvert>,
    /// Shares this client holds, by owner: its own and those neighbours sealed to it (step 3).
    held: BTreeMap<u32, SharePair>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.self_seed.zeroize();
        self.held.values_mut().for_each(Zeroize::zeroize);
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("id", &self.id)
            .field("step", &self.step)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Participant `id`'s state for the round `config`, with fresh keys drawn from `rng`
    /// (the operating system's generator in production).
    pub fn new(config: Config, id: u32, rng: &mut impl CryptoRng) -> Result<Self, SecAggError> {
        config.check()?;
        if id >= config.participants {
            return Err(SecAggError::Config(format!(
                "participant {id} is not in a round of {}",
                config.participants
            )));
        }
        Ok(Self {
            graph: Graph::new(config.participants, config.degree, config.session),
            config,
            id,
            step: Step::Advertise,
            cipher_secret: crypto::fresh_secret(rng),
            mask_secret: crypto::fresh_secret(rng),
            self_seed: crypto::fresh_seed(rng),
            roster: BTreeMap::new(),
            held: BTreeMap::new(),
        })
    }

    /// This participant's index in the round.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Starts step `expected`. Until the step succeeds the client counts as done, so that a
    /// failed step cannot be retried with other inputs.
    fn begin(&mut self, expected: Step, what: &'static str) -> Result<(), SecAggError> {
        if self.step != expected {
            return Err(SecAggError::OutOfOrder(what));
        }
        self.step = Step::Done;
        Ok(())
    }

    fn refuse(&self, reason: impl Into<String>) -> SecAggError {
        SecAggError::BadMessage {
            from: self.id,
            reason: reason.into(),
        }
    }

    /// Step 1: the public keys to send.
    pub fn advertise(&mut self) -> Result<KeyAdvert, SecAggError> {
        self.begin(Step::Advertise, "advertise is the first step")?;
        self.step = Step::ShareKeys;
        Ok(KeyAdvert {
            from: self.id,
            cipher_key: crypto::public_of(&self.cipher_secret),
            mask_key: crypto::public_of(&self.mask_secret),
        })
    }

    /// Step 2: given the neighbours' keys, shares this participant's secrets among them and
    /// itself and seals each neighbour's shares for it.
    pub fn share_keys(
        &mut self,
        roster: &[KeyAdvert],
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<SealedShare>, SecAggError> {
        self.begin(Step::ShareKeys, "share_keys follows advertise")?;
        self.check_roster(roster)?;
        self.roster = roster.iter().map(|a| (a.from, a.clone())).collect();
        let holders: Vec<u32> = self.roster.keys().copied().chain([self.id]).collect();
        let points: Vec<u64> = holders.iter().map(|&h| point_of(h)).collect();
        let t = self.config.threshold as usize;
        let key_shares = shamir::split(&self.mask_secret.to_bytes(), t, &points, rng);
        let seed_shares = shamir::split(&self.self_seed, t, &points, rng);
        let mut sealed = Vec::with_capacity(self.roster.len());
        for ((&holder, key), seed) in holders.iter().zip(key_shares).zip(seed_shares) {
            let pair = SharePair {
                owner: self.id,
                holder,
                key,
                seed,
            };
            if holder == self.id {
                self.held.insert(self.id, pair);
                continue;
            }
            let transport = crypto::agree(
                &self.cipher_secret,
                &self.roster[&holder].cipher_key,
                &self.config.session,
                Purpose::ShareTransport,
            )?;
            let mut plaintext = pair.to_bytes();
            let ciphertext = crypto::seal(
                &transport,
                &self.config.session,
                self.id,
                holder,
                &plaintext,
            );
            plaintext.zeroize();
            sealed.push(SealedShare {
                from: self.id,
                to: holder,
                ciphertext: ciphertext?,
            });
        }
        self.step = Step::MaskInput;
        Ok(sealed)
    }

    /// The roster must list distinct neighbours with distinct keys, enough of them to hold a
    /// threshold of shares.
    fn check_roster(&self, roster: &[KeyAdvert]) -> Result<(), SecAggError> {
        let mut ids = BTreeSet::new();
        let mut keys = BTreeSet::new();
        let own = [
            crypto::public_of(&self.cipher_secret),
            crypto::public_of(&self.mask_secret),
        ];
        keys.extend(own);
        for a in roster {
            if !self.graph.adjacent(self.id, a.from) {
                return Err(self.refuse(format!("participant {} is not a neighbour", a.from)));
            }
            if !ids.insert(a.from) {
                return Err(self.refuse(format!("participant {} is listed twice", a.from)));
            }
            if !keys.insert(a.cipher_key) || !keys.insert(a.mask_key) {
                return Err(self.refuse(format!("participant {} reuses a key", a.from)));
            }
        }
        let holders = roster.len() + 1;
        if holders < self.config.threshold as usize {
            return Err(SecAggError::TooFewSurvivors {
                step: "share keys",
                remaining: holders,
                needed: self.config.threshold as usize,
            });
        }
        Ok(())
    }

    /// Step 3: opens the shares neighbours sealed to it and masks `input` (already fixed-point
    /// encoded) with the self mask and one pairwise mask per neighbour that shared.
    pub fn mask_input(
        &mut self,
        input: &[u32],
        inbox: &[SealedShare],
    ) -> Result<MaskedInput, SecAggError> {
        self.begin(Step::MaskInput, "mask_input follows share_keys")?;
        if input.len() != self.config.dimension {
            return Err(self.refuse(format!(
                "input has {} values, the round sums {}",
                input.len(),
                self.config.dimension
            )));
        }
        for sealed in inbox {
            self.open_share(sealed)?;
        }
        if self.held.len() < self.config.threshold as usize {
            return Err(SecAggError::TooFewSurvivors {
                step: "masked input",
                remaining: self.held.len(),
                needed: self.config.threshold as usize,
            });
        }
        let mut values = input.to_vec();
        crypto::apply_mask(&mut values, &self.self_seed, false);
        for &j in self.held.keys().filter(|&&j| j != self.id) {
            let seed = crypto::agree(
                &self.mask_secret,
                &self.roster[&j].mask_key,
                &self.config.session,
                Purpose::PairMask,
            )?;
            // The lower index adds, the higher subtracts: the pair cancels in the sum.
            crypto::apply_mask(&mut values, &seed, self.id > j);
        }
        self.step = Step::Unmask;
        Ok(MaskedInput {
            from: self.id,
            values,
        })
    }

    fn open_share(&mut self, sealed: &SealedShare) -> Result<(), SecAggError> {
        let from = sealed.from;
        let Some(advert) = self.roster.get(&from) else {
            return Err(self.refuse(format!("a share from {from}, who is not on the roster")));
        };
        if sealed.to != self.id || self.held.contains_key(&from) {
            return Err(self.refuse(format!("a misdirected or repeated share from {from}")));
        }
        let transport = crypto::agree(
            &self.cipher_secret,
            &advert.cipher_key,
            &self.config.session,
            Purpose::ShareTransport,
        )?;
        let mut plaintext = crypto::open(
            &transport,
            &self.config.session,
            from,
            self.id,
            &sealed.ciphertext,
        )?;
        let pair = SharePair::from_bytes(&plaintext, from);
        plaintext.zeroize();
        let pair = pair?;
        let me = point_of(self.id);
        if pair.owner != from || pair.holder != self.id || pair.key.x != me || pair.seed.x != me {
            return Err(SecAggError::BadShare {
                from,
                reason: "it names another owner, holder or point",
            });
        }
        self.held.insert(from, pair);
        Ok(())
    }

    /// Step 4: for each owner whose shares it holds, the share of the self-mask seed if the
    /// owner survived, of the mask key if not. Refuses to answer for fewer than
    /// `min_survivors` survivors, or for a list that leaves itself out.
    pub fn unmask(&mut self, survivors: &Survivors) -> Result<Unmasking, SecAggError> {
        self.begin(Step::Unmask, "unmask follows mask_input")?;
        let alive: BTreeSet<u32> = survivors.ids.iter().copied().collect();
        if alive.len() != survivors.ids.len()
            || alive.iter().any(|&s| s >= self.config.participants)
        {
            return Err(self.refuse("the survivor list repeats or invents participants"));
        }
        if !alive.contains(&self.id) {
            return Err(self.refuse("the survivor list leaves out this participant"));
        }
        if alive.len() < self.config.min_survivors as usize {
            return Err(SecAggError::TooFewSurvivors {
                step: "unmasking",
                remaining: alive.len(),
                needed: self.config.min_survivors as usize,
            });
        }
        let mut reply = Unmasking {
            from: self.id,
            seed_shares: Vec::new(),
            key_shares: Vec::new(),
        };
        for (&owner, pair) in &self.held {
            if alive.contains(&owner) {
                reply.seed_shares.push((owner, pair.seed));
            } else {
                reply.key_shares.push((owner, pair.key));
            }
        }
        Ok(reply)
    }
}

/// Participant `id`'s evaluation point in every sharing: never zero.
pub(crate) fn point_of(id: u32) -> u64 {
    u64::from(id) + 1
}
