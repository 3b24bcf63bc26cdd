//! The door every call passes: a rate limit per connection before anything is known of the
//! caller, then the caller's proof (its signature over the method, the body's digest, a
//! timestamp and a fresh nonce; see `harambee_proto::auth`), then a rate limit per member.
//!
//! A public key is public (the ledger and the dashboard publish every member's), so it proves
//! nothing; only a signature does. Because a member's limiter is charged only after its proof
//! checks out, a flood sent under a victim's key costs the flooder's connection, never the
//! victim. Memory is bounded: limiters forget idle keys, and a member's replay window holds
//! only the nonces of its last few minutes, of calls whose signature verified.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Mutex;

use crate::rejection::Rejection;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use harambee_identity::PublicKey;
use harambee_proto::{CallProof, ProofError};

use crate::Limits;

/// Keys a limiter tracks before it is asked to forget the idle ones.
const TRACKED_KEYS: usize = 10_000;
/// Calls remembered per member within the replay window; beyond it the member is sending
/// faster than any participant needs to, and is refused until old nonces expire.
const NONCES_PER_MEMBER: usize = 20_000;

/// A member's calls within the clock window, as (timestamp, nonce), oldest first.
type ReplayWindow = BTreeSet<(u64, [u8; 16])>;

/// What a proof must cover: the method and the body's digest, at a moment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Call<'a> {
    pub(crate) method: &'a str,
    pub(crate) body: &'a [u8; 32],
    pub(crate) now_ms: u64,
}

/// Authentication and rate limits, shared by every handler.
pub(crate) struct Gate {
    federation: String,
    skew_ms: u64,
    per_connection: DefaultKeyedRateLimiter<SocketAddr>,
    per_member: DefaultKeyedRateLimiter<[u8; 32]>,
    /// Per member, the (timestamp, nonce) pairs seen within the window.
    seen: Mutex<HashMap<[u8; 32], ReplayWindow>>,
}

impl Gate {
    pub(crate) fn new(federation: &str, limits: &Limits) -> Self {
        let at_least_one = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        let (per_second, burst) = (
            at_least_one(limits.requests_per_second),
            at_least_one(limits.burst),
        );
        // A connection carries one member's calls, plus its enrolment and status polls.
        let per_connection = at_least_one(limits.requests_per_second.saturating_mul(2));
        let connection_burst = at_least_one(limits.burst.saturating_mul(2));
        Self {
            federation: federation.to_string(),
            skew_ms: (limits.clock_skew_s.max(1.0) * 1000.0) as u64,
            per_connection: RateLimiter::keyed(
                Quota::per_second(per_connection).allow_burst(connection_burst),
            ),
            per_member: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Charges the caller's connection; refuses it when it sends too fast.
    pub(crate) fn throttle(&self, remote: Option<SocketAddr>) -> Result<(), Rejection> {
        let remote = remote.unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0));
        if self.per_connection.len() > TRACKED_KEYS {
            self.per_connection.retain_recent();
        }
        self.per_connection.check_key(&remote).map_err(|_| {
            Rejection::too_many(
                "rate limit: too many requests on this connection; back off and retry",
            )
        })
    }

    /// Checks a call's proof: present, fresh, and signed by the key it names over this
    /// federation, method and body. Returns it, for [`Gate::admit`] once the caller's
    /// membership is known.
    pub(crate) fn verify(
        &self,
        proof: Result<Option<CallProof>, ProofError>,
        call: Call<'_>,
    ) -> Result<CallProof, Rejection> {
        let proof = proof
            .map_err(|e| Rejection::unauthenticated(format!("malformed call proof: {e}")))?
            .ok_or_else(|| {
                Rejection::unauthenticated(format!(
                    "this call carries no proof of its sender ({}): sign it with the member's key (docs/protocol.md, \"Authentication\")",
                    harambee_proto::auth::PROOF_METADATA
                ))
            })?;
        if proof.timestamp_ms.abs_diff(call.now_ms) > self.skew_ms {
            return Err(Rejection::unauthenticated(format!(
                "the call is timestamped {} ms from the coordinator's clock (at most {} allowed): check this machine's clock",
                i128::from(proof.timestamp_ms) - i128::from(call.now_ms),
                self.skew_ms
            )));
        }
        let key = PublicKey::from_bytes(&proof.key)
            .map_err(|_| Rejection::unauthenticated("the call proof names no valid ed25519 key"))?;
        key.verify_raw(
            &proof.message(&self.federation, call.method, call.body),
            &proof.signature,
        )
        .map_err(|_| {
            Rejection::unauthenticated(
                "bad call signature: it must cover this federation, the method, the timestamp, the nonce and the request's digest",
            )
        })?;
        Ok(proof)
    }

    /// Admits a verified call of an enrolled member: refuses a replay, then charges the
    /// member's rate limit. Only members get here, so strangers never grow this memory.
    pub(crate) fn admit(&self, proof: &CallProof, now_ms: u64) -> Result<(), Rejection> {
        self.remember(proof, now_ms)?;
        if self.per_member.len() > TRACKED_KEYS {
            self.per_member.retain_recent();
        }
        self.per_member.check_key(&proof.key).map_err(|_| {
            Rejection::too_many(
                "rate limit: too many requests from this member; back off and retry",
            )
        })
    }

    /// Refuses a (timestamp, nonce) already seen from this key; forgets those older than the
    /// window, which the timestamp check refuses anyway.
    fn remember(&self, proof: &CallProof, now_ms: u64) -> Result<(), Rejection> {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let window = seen.entry(proof.key).or_default();
        let horizon = now_ms.saturating_sub(self.skew_ms);
        while window.first().is_some_and(|(t, _)| *t < horizon) {
            window.pop_first();
        }
        if window.len() >= NONCES_PER_MEMBER {
            return Err(Rejection::too_many(
                "too many calls from this member within the replay window; back off and retry",
            ));
        }
        if !window.insert((proof.timestamp_ms, proof.nonce)) {
            return Err(Rejection::unauthenticated(
                "replayed call: this proof's nonce was already used; sign each call anew",
            ));
        }
        Ok(())
    }
}

/// Refuses a body that names another key than the one its proof verified.
pub(crate) fn same_key(named: &[u8], proved: &[u8; 32]) -> Result<(), Rejection> {
    if named == proved {
        Ok(())
    } else {
        Err(Rejection::not_permitted(
            "the request names another key than the one that signed the call",
        ))
    }
}

/// Milliseconds since the Unix epoch, the clock proofs are timestamped with.
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
