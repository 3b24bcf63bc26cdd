//! Secure aggregation in the SecAgg+ style (Bonawitz et al. 2017; Bell et al. 2020): the
//! coordinator learns the sum of the participants' vectors and nothing about any one of them,
//! and the sum still comes out when participants drop out between any two steps, as long as
//! enough of them remain.
//!
//! The crate owns the protocol and nothing else. It is a pair of pure state machines,
//! [`Client`] and [`Server`], that take messages in and give messages out; the simulator
//! calls them directly and the gRPC service carries their messages between machines.
//!
//! # The protocol
//!
//! Participants are numbered `0..n` for the round. Each has `degree` neighbours on a
//! [`Graph`] derived from the round's public session identifier.
//!
//! 1. **Advertise keys.** Each participant makes two fresh X25519 key pairs, one to encrypt
//!    shares and one for masks, and sends both public keys ([`KeyAdvert`]).
//! 2. **Share keys.** The server hands each participant its neighbours' keys. The participant
//!    draws a self-mask seed `b`, Shamir-shares `b` and its mask secret key among itself and
//!    its neighbours (any `threshold` shares recover them), and sends each neighbour its
//!    shares encrypted with ChaCha20-Poly1305 under their agreed key ([`SealedShare`]).
//! 3. **Masked input.** The server routes the sealed shares. Each participant adds to its
//!    fixed-point vector the stream of `b` and, for each neighbour `j` that shared, ± the
//!    stream of their agreed mask key (plus below `j`, minus above), and sends the result
//!    ([`MaskedInput`]). Pairwise streams cancel in the sum; the self mask hides the vector
//!    even if a neighbour's pairwise mask is later removed.
//! 4. **Unmasking.** The server names who sent a masked input ([`Survivors`]). Each remaining
//!    participant returns, for each neighbour, its share of that neighbour's self-mask seed if
//!    the neighbour is among the survivors, or of its mask secret key if not, never both
//!    ([`Unmasking`]). The server recovers the seeds and keys, removes the self masks of the
//!    survivors and the dangling pairwise masks of the dropped, and is left with the sum.
//!
//! If fewer than `min_survivors` remain at any step, or fewer than `threshold` holders answer
//! for a secret, the round fails with [`SecAggError`] and the server learns no sum;
//! participants refuse to unmask for fewer than `min_survivors`.
//!
//! # What it assumes
//!
//! The server is honest but curious: it follows the protocol and tries to learn from what it
//! sees. Up to `threshold − 1` holders of a secret may collude with it. The threshold is a
//! majority of each secret's holders, so honest holders never give a server that lies about
//! who survived both secrets of one participant unless a majority of its neighbours collude.
//! The gRPC layer signs every step with the participants' identity keys (so the server cannot
//! substitute keys); SecAgg+'s consistency round over signed survivor lists is not
//! implemented yet. docs/privacy.md sets out the rest.

mod client;
mod crypto;
mod fixed_point;
mod graph;
mod messages;
mod server;
pub mod shamir;

pub use client::Client;
pub use fixed_point::FixedPoint;
pub use graph::Graph;
pub use messages::{KeyAdvert, MaskedInput, SealedShare, SharePair, Survivors, Unmasking};
pub use server::{Server, Sum};

/// Everything the participants and the server of one round agree on before it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The round's public identifier: it seeds the graph and binds every key, mask and sealed
    /// share to this round, so nothing carries over to another.
    pub session: [u8; 32],
    /// How many participants the round starts with (`n`), numbered `0..n`.
    pub participants: u32,
    /// Neighbours per participant: even, or `n − 1` for the complete graph.
    pub degree: u32,
    /// Shares needed to recover a secret, among the `degree + 1` holders (the owner holds one
    /// too). More than half the holders, so that no lie about who survived can earn the server
    /// both secrets of one participant from honest holders.
    pub threshold: u32,
    /// The fewest participants whose vectors may be summed; below it the round fails.
    pub min_survivors: u32,
    /// The length of every vector.
    pub dimension: usize,
}

impl Config {
    /// The settings Harambee recommends for `participants` participants: about 9·log2(n)
    /// neighbours (the complete graph up to 60 or so), a majority threshold, and at least half
    /// the participants surviving. With these a neighbourhood keeps a majority of its holders
    /// when 30% of the participants drop at random, except with negligible probability.
    pub fn recommended(session: [u8; 32], participants: u32, dimension: usize) -> Self {
        let n = participants.max(1);
        let sparse = 2 * (4.5 * f64::from(n).log2()).ceil() as u32;
        let degree = if sparse >= n - 1 { n - 1 } else { sparse };
        let threshold = degree.div_ceil(2) + 1;
        let min_survivors = (n / 2 + 1).max(threshold).min(n);
        Self {
            session,
            participants,
            degree,
            threshold: threshold.min(degree + 1),
            min_survivors,
            dimension,
        }
    }

    /// Checks that the settings make a sound round.
    pub fn check(&self) -> Result<(), SecAggError> {
        let n = self.participants;
        let bad = |reason: String| Err(SecAggError::Config(reason));
        if n < 2 {
            return bad(format!(
                "{n} participants: secure aggregation needs at least 2"
            ));
        }
        if self.degree == 0 || self.degree >= n || (self.degree % 2 == 1 && self.degree != n - 1) {
            return bad(format!(
                "degree {} must be even and below {n}, or {} for the complete graph",
                self.degree,
                n - 1
            ));
        }
        let holders = self.degree + 1;
        if self.threshold <= holders / 2 || self.threshold > holders {
            return bad(format!(
                "threshold {} must be a majority of the {holders} holders of each secret",
                self.threshold
            ));
        }
        if self.min_survivors < self.threshold || self.min_survivors > n {
            return bad(format!(
                "min_survivors {} must be between the threshold {} and {n}",
                self.min_survivors, self.threshold
            ));
        }
        Ok(())
    }
}

/// Why a step of secure aggregation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecAggError {
    /// The configuration is unsound.
    #[error("secure aggregation settings: {0}")]
    Config(String),
    /// A call came in the wrong step.
    #[error("out of order: {0}")]
    OutOfOrder(&'static str),
    /// Too few participants remain for the round to go on; nothing more is revealed.
    #[error("only {remaining} participants remain at {step}; at least {needed} are needed")]
    TooFewSurvivors {
        /// The step at which they fell short.
        step: &'static str,
        /// How many remain.
        remaining: usize,
        /// How many are needed.
        needed: usize,
    },
    /// Too few holders answered to recover one participant's secret.
    #[error("only {got} shares of participant {owner}'s secret came back; {needed} are needed")]
    TooFewShares {
        /// Whose secret.
        owner: u32,
        /// Shares received.
        got: usize,
        /// Shares needed.
        needed: usize,
    },
    /// A message names someone it may not (unknown, not a neighbour, a duplicate).
    #[error("message from participant {from} refused: {reason}")]
    BadMessage {
        /// Its sender.
        from: u32,
        /// What is wrong.
        reason: String,
    },
    /// A sealed share or a share returned for unmasking is invalid.
    #[error("share from participant {from} refused: {reason}")]
    BadShare {
        /// Its sender.
        from: u32,
        /// What is wrong.
        reason: &'static str,
    },
    /// A public key is unusable.
    #[error("bad key: {0}")]
    BadKey(&'static str),
}
