//! The coordinator's Prometheus metrics, in the registry of the `prometheus-client` crate.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::view::Gauges;

/// Why an update was refused: the `reason` label of `harambee_updates_refused_total`. One
/// reason per class of answer a participant gets (its gRPC status), so an operator's graph and
/// a participant's log say the same thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefusalReason {
    /// The same update again (`ALREADY_EXISTS`).
    Replay,
    /// A missing or bad signature (`UNAUTHENTICATED`).
    BadSignature,
    /// An unknown or removed key, or a participant not selected (`PERMISSION_DENIED`).
    NotPermitted,
    /// For a round or base that is not the open one: late, early or stale
    /// (`FAILED_PRECONDITION`).
    WrongRound,
    /// Malformed: wrong shape, undecodable, NaN, altered bytes, a broken stream
    /// (`INVALID_ARGUMENT`, `OUT_OF_RANGE`).
    Invalid,
    /// Too many requests from one key (`RESOURCE_EXHAUSTED`).
    RateLimited,
    /// The coordinator could not take it (storage, shutdown, anything else).
    Unavailable,
}

impl RefusalReason {
    /// Every reason; `/metrics` lists each from the start, at zero.
    pub const ALL: [RefusalReason; 7] = [
        RefusalReason::Replay,
        RefusalReason::BadSignature,
        RefusalReason::NotPermitted,
        RefusalReason::WrongRound,
        RefusalReason::Invalid,
        RefusalReason::RateLimited,
        RefusalReason::Unavailable,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            RefusalReason::Replay => "replay",
            RefusalReason::BadSignature => "bad_signature",
            RefusalReason::NotPermitted => "not_permitted",
            RefusalReason::WrongRound => "wrong_round",
            RefusalReason::Invalid => "invalid",
            RefusalReason::RateLimited => "rate_limited",
            RefusalReason::Unavailable => "unavailable",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

struct Instruments {
    registry: Registry,
    rounds_completed: Counter,
    round_duration: Histogram,
    aggregation: Histogram,
    updates_accepted: Counter,
    updates_refused: Family<ReasonLabel, Counter>,
    received_bytes: Counter,
    sent_bytes: Counter,
    connected: Gauge,
    enrolled: Gauge,
    ledger_entries: Gauge,
    round: Gauge,
    paused: Gauge,
    http_connections: Gauge,
    http_connections_refused: Counter,
}

/// The coordinator's metrics. Cheap to clone (one shared registry); recording is a few atomic
/// operations, so the hot paths record as they go.
#[derive(Clone)]
pub struct Metrics(Arc<Instruments>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric at zero (each refusal reason listed too, so dashboards
    /// show a flat line rather than nothing).
    pub fn new() -> Self {
        let i = Instruments {
            registry: Registry::with_prefix("harambee"),
            rounds_completed: Counter::default(),
            // 10 ms to about 2.8 h: a round of a tiny model to a long cross-silo one.
            round_duration: Histogram::new(exponential_buckets(0.01, 4.0, 10)),
            // 1 ms to about 4.4 min.
            aggregation: Histogram::new(exponential_buckets(0.001, 4.0, 10)),
            updates_accepted: Counter::default(),
            updates_refused: Family::default(),
            received_bytes: Counter::default(),
            sent_bytes: Counter::default(),
            connected: Gauge::default(),
            enrolled: Gauge::default(),
            ledger_entries: Gauge::default(),
            round: Gauge::default(),
            paused: Gauge::default(),
            http_connections: Gauge::default(),
            http_connections_refused: Counter::default(),
        };
        let mut i = i;
        let r = &mut i.registry;
        r.register(
            "rounds_completed",
            "Rounds whose result is recorded",
            i.rounds_completed.clone(),
        );
        r.register(
            "round_duration_seconds",
            "Seconds from a round's opening to its result",
            i.round_duration.clone(),
        );
        r.register(
            "aggregation_seconds",
            "Seconds the strategy took to combine a round's updates",
            i.aggregation.clone(),
        );
        r.register(
            "updates_accepted",
            "Updates checked, stored and acknowledged",
            i.updates_accepted.clone(),
        );
        r.register(
            "updates_refused",
            "Updates refused, by reason",
            i.updates_refused.clone(),
        );
        r.register(
            "received_bytes",
            "Update payload bytes received from participants",
            i.received_bytes.clone(),
        );
        r.register(
            "sent_bytes",
            "Parameter payload bytes sent to participants",
            i.sent_bytes.clone(),
        );
        r.register(
            "participants_connected",
            "Participants counted alive (they called within the liveness timeout)",
            i.connected.clone(),
        );
        r.register(
            "participants_enrolled",
            "Participants enrolled, removed ones included",
            i.enrolled.clone(),
        );
        r.register(
            "ledger_entries",
            "Entries in the transparency ledger",
            i.ledger_entries.clone(),
        );
        r.register(
            "round",
            "The open round, or the next to open",
            i.round.clone(),
        );
        r.register(
            "paused",
            "1 while a steward has paused the federation",
            i.paused.clone(),
        );
        r.register(
            "http_connections",
            "Connections the dashboard is serving (pages, API calls, scrapes, live streams)",
            i.http_connections.clone(),
        );
        r.register(
            "http_connections_refused",
            "Connections the dashboard closed at once because it served its maximum already",
            i.http_connections_refused.clone(),
        );
        for reason in RefusalReason::ALL {
            let _ = i.updates_refused.get_or_create(&ReasonLabel {
                reason: reason.label(),
            });
        }
        Metrics(Arc::new(i))
    }

    /// Counts rounds completed before this process started (a restarted coordinator).
    pub fn rounds_completed_before(&self, rounds: u64) {
        self.0.rounds_completed.inc_by(rounds);
    }

    /// A round's result is recorded, `took` after it opened.
    pub fn round_completed(&self, took: Duration) {
        self.0.rounds_completed.inc();
        self.0.round_duration.observe(took.as_secs_f64());
    }

    /// The strategy combined a round's updates in `took`.
    pub fn aggregated(&self, took: Duration) {
        self.0.aggregation.observe(took.as_secs_f64());
    }

    /// An update was acknowledged.
    pub fn update_accepted(&self) {
        self.0.updates_accepted.inc();
    }

    /// An update was refused.
    pub fn update_refused(&self, reason: RefusalReason) {
        self.0
            .updates_refused
            .get_or_create(&ReasonLabel {
                reason: reason.label(),
            })
            .inc();
    }

    /// Update bytes arrived.
    pub fn received(&self, bytes: usize) {
        self.0.received_bytes.inc_by(bytes as u64);
    }

    /// Parameter bytes went out.
    pub fn sent(&self, bytes: usize) {
        self.0.sent_bytes.inc_by(bytes as u64);
    }

    /// The dashboard accepted a connection; it counts as open until the guard is dropped.
    pub(crate) fn http_connection_opened(&self) -> OpenConnection {
        self.0.http_connections.inc();
        OpenConnection(Arc::clone(&self.0))
    }

    /// The dashboard closed a connection at once: it served its maximum already.
    pub(crate) fn http_connection_refused(&self) {
        self.0.http_connections_refused.inc();
    }

    /// The text a scrape gets, with the gauges set to `now`.
    pub fn encode(&self, now: &Gauges) -> String {
        let i = &self.0;
        let set = |g: &Gauge, v: u64| {
            g.set(i64::try_from(v).unwrap_or(i64::MAX));
        };
        set(&i.connected, now.connected);
        set(&i.enrolled, now.enrolled);
        set(&i.ledger_entries, now.ledger_entries);
        set(&i.round, now.round);
        set(&i.paused, u64::from(now.paused));
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &i.registry);
        text
    }

    /// The `Content-Type` of [`encode`](Self::encode)'s text.
    pub const CONTENT_TYPE: &'static str =
        prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
}

/// A connection the dashboard serves, counted in `harambee_http_connections` while it lives.
pub(crate) struct OpenConnection(Arc<Instruments>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.http_connections.dec();
    }
}
