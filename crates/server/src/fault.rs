//! Crash-test hooks. With `HARAMBEE_PAUSE_AT=POINT` set, the coordinator stops at that point of
//! a round, says so on standard error, and waits to be killed (`kill -9`) by the test that set
//! it. Unset (always, outside tests), every hook is one relaxed atomic load.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// Where a crash test may stop the coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FaultPoint {
    /// A round is open and the first update's header has arrived; nothing accepted yet.
    BeforeUpdate,
    /// Half of an update's bytes have arrived, and another update was already acknowledged.
    MidUpload,
    /// The round has been aggregated in memory, before the result is stored.
    Aggregation,
}

impl FaultPoint {
    fn name(self) -> &'static str {
        match self {
            FaultPoint::BeforeUpdate => "before-update",
            FaultPoint::MidUpload => "mid-upload",
            FaultPoint::Aggregation => "aggregation",
        }
    }
}

fn armed() -> Option<&'static str> {
    static POINT: OnceLock<Option<String>> = OnceLock::new();
    POINT
        .get_or_init(|| std::env::var("HARAMBEE_PAUSE_AT").ok())
        .as_deref()
}

/// Whether a crash test armed `point`: callers skip the work of reaching a hook otherwise.
pub(crate) fn is_armed(point: FaultPoint) -> bool {
    armed() == Some(point.name())
}

/// Stops here for good if a crash test armed this point.
pub(crate) fn pause_at(point: FaultPoint) {
    static REACHED: AtomicBool = AtomicBool::new(false);
    if armed() != Some(point.name()) || REACHED.swap(true, Ordering::Relaxed) {
        return;
    }
    eprintln!(
        "harambee: paused at {} (HARAMBEE_PAUSE_AT), waiting to be killed",
        point.name()
    );
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
