//! The simulator's clock: every latency, throttling bucket, eviction and timestamp the
//! simulator's world runs on is read here, so a test can move time instead of waiting it out.
//!
//! Two ways to drive it, both for tests:
//! - **tokio's test clock**: `now()` reads [`tokio::time::Instant`], so a test on a runtime
//!   with `start_paused = true` (tokio's `test-util`) moves the simulator with
//!   `tokio::time::advance` or auto-advance; `wall()` follows by the same amount.
//! - **manual advance**: `POST /_sim/clock {"advance_ms": N}` puts the simulator's clock N ms
//!   further ahead of the real one, at once: operations whose latency has passed complete,
//!   buckets refill, Spot evictions come due, and timestamps the simulator writes
//!   (`timeCreated`, Batch `allocationTime`...) read as that later time. `GET /_sim/clock`
//!   answers how far ahead it is.
//!
//! Entra tokens keep real time (their `exp` is checked against the wall clock the client
//! also reads), and the manual offset is not saved in a persistent simulator's state file.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use time::OffsetDateTime;

#[derive(Debug, Default)]
pub struct Clock {
    /// Manual advance, in milliseconds ahead of the real clock.
    ahead_ms: AtomicU64,
}

impl Clock {
    /// How far the manual advance has moved the clock.
    pub fn ahead(&self) -> Duration {
        Duration::from_millis(self.ahead_ms.load(Ordering::Relaxed))
    }

    /// Moves the clock `by` ahead (manual advance); never back.
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.ahead_ms
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |a| {
                Some(a.saturating_add(ms))
            })
            .ok();
    }

    /// The simulator's monotonic now: tokio's (paused in a test, else the real one) plus the
    /// manual advance.
    pub fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std() + self.ahead()
    }

    /// The simulator's wall-clock now: the real one plus however far `now()` is ahead of the
    /// real monotonic clock (a paused tokio clock moved forward, the manual advance).
    pub fn wall(&self) -> OffsetDateTime {
        let drift = self.now().saturating_duration_since(Instant::now());
        OffsetDateTime::now_utc() + drift
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_advance_moves_both_clocks_and_never_back() {
        let c = Clock::default();
        let (i0, w0) = (c.now(), c.wall());
        c.advance(Duration::from_secs(3600));
        assert_eq!(c.ahead(), Duration::from_secs(3600));
        assert!(c.now() >= i0 + Duration::from_secs(3600));
        let moved = c.wall() - w0;
        assert!(moved >= time::Duration::seconds(3599), "{moved}");
        c.advance(Duration::MAX);
        c.advance(Duration::from_secs(1));
        assert_eq!(c.ahead(), Duration::from_millis(u64::MAX), "saturates");
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_s_paused_clock_drives_it() {
        let c = Clock::default();
        let (i0, w0) = (c.now(), c.wall());
        tokio::time::advance(Duration::from_secs(90)).await;
        assert!(c.now() >= i0 + Duration::from_secs(90));
        // The wall clock moved by the paused clock's 90 s, less the real microseconds the
        // test itself took.
        let moved = c.wall() - w0;
        assert!(
            (time::Duration::seconds(89)..=time::Duration::seconds(91)).contains(&moved),
            "{moved}"
        );
        assert_eq!(c.ahead(), Duration::ZERO);
    }
}
