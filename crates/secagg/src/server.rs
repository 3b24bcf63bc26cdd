//! The coordinator's side of the protocol: it routes, counts and finally unmasks the sum.

use std::collections::{BTreeMap, BTreeSet};

use x25519_dalek::StaticSecret;

use crate::crypto::{self, Purpose};
use crate::shamir::{self, Share};
use crate::{
    Config, Graph, KeyAdvert, MaskedInput, SealedShare, SecAggError, Survivors, Unmasking,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    CollectKeys,
    CollectShares,
    CollectMasked,
    CollectUnmasking,
    Done,
}

/// The unmasked sum of a round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sum {
    /// The sum of the survivors' fixed-point vectors, modulo 2^32.
    pub values: Vec<u32>,
    /// Whose vectors it sums, in ascending order.
    pub contributors: Vec<u32>,
}

/// The server's state for one round. It sees keys, ciphertexts, masked vectors and, at the
/// end, exactly the shares needed to remove the masks from the sum.
#[derive(Debug)]
pub struct Server {
    config: Config,
    graph: Graph,
    step: Step,
    adverts: BTreeMap<u32, KeyAdvert>,
    /// Participants handed a roster at the end of step 1.
    listed: BTreeSet<u32>,
    /// Sealed shares by sender (step 2).
    sealed: BTreeMap<u32, Vec<SealedShare>>,
    /// Senders of masked inputs (step 3); their vectors are summed as they arrive.
    masked: BTreeSet<u32>,
    masked_sum: Vec<u32>,
    survivors: BTreeSet<u32>,
    unmaskings: BTreeMap<u32, Unmasking>,
}

impl Server {
    /// The server of the round `config`.
    pub fn new(config: Config) -> Result<Self, SecAggError> {
        config.check()?;
        Ok(Self {
            graph: Graph::new(config.participants, config.degree, config.session),
            masked_sum: vec![0; config.dimension],
            config,
            step: Step::CollectKeys,
            adverts: BTreeMap::new(),
            listed: BTreeSet::new(),
            sealed: BTreeMap::new(),
            masked: BTreeSet::new(),
            survivors: BTreeSet::new(),
            unmaskings: BTreeMap::new(),
        })
    }

    /// The round's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn expect(&self, step: Step, what: &'static str) -> Result<(), SecAggError> {
        if self.step == step {
            Ok(())
        } else {
            Err(SecAggError::OutOfOrder(what))
        }
    }

    fn enough(&self, step: &'static str, remaining: usize) -> Result<(), SecAggError> {
        let needed = self.config.min_survivors as usize;
        if remaining < needed {
            return Err(SecAggError::TooFewSurvivors {
                step,
                remaining,
                needed,
            });
        }
        Ok(())
    }

    /// Step 1: records a participant's public keys.
    pub fn receive_keys(&mut self, advert: KeyAdvert) -> Result<(), SecAggError> {
        self.expect(Step::CollectKeys, "keys are collected in step 1")?;
        let from = advert.from;
        if from >= self.config.participants || self.adverts.contains_key(&from) {
            return Err(bad(from, "an unknown or repeated sender"));
        }
        self.adverts.insert(from, advert);
        Ok(())
    }

    /// Ends step 1: each participant's roster of neighbours' keys. A participant with too few
    /// neighbours left to hold its shares gets none and takes no further part.
    pub fn close_keys(&mut self) -> Result<BTreeMap<u32, Vec<KeyAdvert>>, SecAggError> {
        self.expect(Step::CollectKeys, "step 1 is already closed")?;
        self.step = Step::Done;
        let threshold = self.config.threshold as usize;
        let mut rosters = BTreeMap::new();
        for &i in self.adverts.keys() {
            let roster: Vec<KeyAdvert> = self
                .graph
                .neighbours(i)
                .iter()
                .filter_map(|j| self.adverts.get(j).cloned())
                .collect();
            if roster.len() + 1 >= threshold {
                rosters.insert(i, roster);
            }
        }
        self.enough("key advertisement", rosters.len())?;
        self.listed = rosters.keys().copied().collect();
        self.step = Step::CollectShares;
        Ok(rosters)
    }

    /// Step 2: records a participant's sealed shares, one for every neighbour on its roster.
    pub fn receive_shares(
        &mut self,
        from: u32,
        shares: Vec<SealedShare>,
    ) -> Result<(), SecAggError> {
        self.expect(Step::CollectShares, "shares are collected in step 2")?;
        if !self.listed.contains(&from) || self.sealed.contains_key(&from) {
            return Err(bad(from, "an unlisted or repeated sender"));
        }
        let expected: BTreeSet<u32> = self
            .graph
            .neighbours(from)
            .into_iter()
            .filter(|j| self.adverts.contains_key(j))
            .collect();
        let addressed: BTreeSet<u32> = shares.iter().map(|s| s.to).collect();
        if shares.iter().any(|s| s.from != from)
            || addressed != expected
            || addressed.len() != shares.len()
        {
            return Err(bad(
                from,
                "shares must go once to each neighbour on its roster",
            ));
        }
        if shares
            .iter()
            .any(|s| s.ciphertext.len() != crate::SharePair::BYTES + 16)
        {
            return Err(bad(from, "a sealed share has the wrong length"));
        }
        self.sealed.insert(from, shares);
        Ok(())
    }

    /// Ends step 2: for each participant that shared, the shares sealed to it by others that
    /// shared.
    pub fn close_shares(&mut self) -> Result<BTreeMap<u32, Vec<SealedShare>>, SecAggError> {
        self.expect(Step::CollectShares, "step 2 is not open")?;
        self.step = Step::Done;
        self.enough("key sharing", self.sealed.len())?;
        let mut inboxes: BTreeMap<u32, Vec<SealedShare>> =
            self.sealed.keys().map(|&i| (i, Vec::new())).collect();
        for share in self.sealed.values().flatten() {
            if let Some(inbox) = inboxes.get_mut(&share.to) {
                inbox.push(share.clone());
            }
        }
        self.step = Step::CollectMasked;
        Ok(inboxes)
    }

    /// Step 3: adds a participant's masked vector to the running sum.
    pub fn receive_masked(&mut self, input: MaskedInput) -> Result<(), SecAggError> {
        self.expect(Step::CollectMasked, "masked inputs are collected in step 3")?;
        let from = input.from;
        if !self.sealed.contains_key(&from) || self.masked.contains(&from) {
            return Err(bad(from, "a sender that did not share keys, or a repeat"));
        }
        if input.values.len() != self.config.dimension {
            return Err(bad(from, "a masked vector of the wrong length"));
        }
        self.masked_sum
            .iter_mut()
            .zip(&input.values)
            .for_each(|(s, v)| *s = s.wrapping_add(*v));
        self.masked.insert(from);
        Ok(())
    }

    /// Ends step 3: who sent a masked input, to be told to every one of them.
    pub fn close_masked(&mut self) -> Result<Survivors, SecAggError> {
        self.expect(Step::CollectMasked, "step 3 is not open")?;
        self.step = Step::Done;
        self.enough("masked input", self.masked.len())?;
        self.survivors = self.masked.clone();
        self.step = Step::CollectUnmasking;
        Ok(Survivors {
            ids: self.survivors.iter().copied().collect(),
        })
    }

    /// Step 4: records a survivor's shares, checking each is one it may hold and of the kind
    /// its owner's fate calls for.
    pub fn receive_unmasking(&mut self, reply: Unmasking) -> Result<(), SecAggError> {
        self.expect(Step::CollectUnmasking, "unmaskings are collected in step 4")?;
        let from = reply.from;
        if !self.survivors.contains(&from) || self.unmaskings.contains_key(&from) {
            return Err(bad(from, "a sender that is not a survivor, or a repeat"));
        }
        let point = u64::from(from) + 1;
        let mut owners = BTreeSet::new();
        let holds = |owner: u32| owner == from || self.graph.adjacent(owner, from);
        for (owner, share) in &reply.seed_shares {
            if !self.survivors.contains(owner) || !holds(*owner) || share.x != point {
                return Err(bad(from, "a self-mask share it may not hold"));
            }
            if !owners.insert(*owner) {
                return Err(bad(from, "two shares for one owner"));
            }
        }
        for (owner, share) in &reply.key_shares {
            let dropped = self.sealed.contains_key(owner) && !self.survivors.contains(owner);
            if !dropped || !holds(*owner) || share.x != point {
                return Err(bad(from, "a key share it may not hold"));
            }
            if !owners.insert(*owner) {
                return Err(bad(from, "two shares for one owner"));
            }
        }
        self.unmaskings.insert(from, reply);
        Ok(())
    }

    /// Ends the round: recovers the survivors' self-mask seeds and the dropped participants'
    /// mask keys, removes their masks and returns the sum. Fails, revealing no sum, when a
    /// secret has fewer than `threshold` shares back.
    pub fn finish(&mut self) -> Result<Sum, SecAggError> {
        self.expect(Step::CollectUnmasking, "step 4 is not open")?;
        self.step = Step::Done;
        let (seeds, keys) = self.collect_shares();
        let mut sum = std::mem::take(&mut self.masked_sum);
        for &owner in &self.survivors {
            let seed = self.recover(owner, seeds.get(&owner))?;
            crypto::apply_mask(&mut sum, &seed, true);
        }
        let dropped: Vec<u32> = self
            .sealed
            .keys()
            .copied()
            .filter(|j| !self.survivors.contains(j))
            .collect();
        for owner in dropped {
            self.remove_dangling_masks(owner, keys.get(&owner), &mut sum)?;
        }
        Ok(Sum {
            values: sum,
            contributors: self.survivors.iter().copied().collect(),
        })
    }

    /// The returned shares grouped by owner: (self-mask seed shares, key shares).
    fn collect_shares(&self) -> (BTreeMap<u32, Vec<Share>>, BTreeMap<u32, Vec<Share>>) {
        let mut seeds: BTreeMap<u32, Vec<Share>> = BTreeMap::new();
        let mut keys: BTreeMap<u32, Vec<Share>> = BTreeMap::new();
        for reply in self.unmaskings.values() {
            for (owner, share) in &reply.seed_shares {
                seeds.entry(*owner).or_default().push(*share);
            }
            for (owner, share) in &reply.key_shares {
                keys.entry(*owner).or_default().push(*share);
            }
        }
        (seeds, keys)
    }

    fn recover(&self, owner: u32, shares: Option<&Vec<Share>>) -> Result<[u8; 32], SecAggError> {
        let shares = shares.map(Vec::as_slice).unwrap_or_default();
        let needed = self.config.threshold as usize;
        shamir::combine(shares, needed).map_err(|e| match e {
            shamir::ShamirError::TooFew { got, .. } => {
                SecAggError::TooFewShares { owner, got, needed }
            }
            _ => SecAggError::BadShare {
                from: owner,
                reason: "the shares of its secret disagree",
            },
        })
    }

    /// A participant that shared its keys but sent no masked input left pairwise masks in the
    /// survivors' vectors; its recovered mask key lets the server recompute and remove them.
    fn remove_dangling_masks(
        &self,
        owner: u32,
        shares: Option<&Vec<Share>>,
        sum: &mut [u32],
    ) -> Result<(), SecAggError> {
        let secret = StaticSecret::from(self.recover(owner, shares)?);
        if crypto::public_of(&secret) != self.adverts[&owner].mask_key {
            return Err(SecAggError::BadShare {
                from: owner,
                reason: "the recovered mask key does not match the advertised one",
            });
        }
        for &k in self
            .graph
            .neighbours(owner)
            .iter()
            .filter(|k| self.survivors.contains(k))
        {
            let seed = crypto::agree(
                &secret,
                &self.adverts[&k].mask_key,
                &self.config.session,
                Purpose::PairMask,
            )?;
            // Survivor k added the stream if k < owner and subtracted it otherwise: undo that.
            crypto::apply_mask(sum, &seed, k < owner);
        }
        Ok(())
    }
}

fn bad(from: u32, reason: &str) -> SecAggError {
    SecAggError::BadMessage {
        from,
        reason: reason.to_string(),
    }
}
