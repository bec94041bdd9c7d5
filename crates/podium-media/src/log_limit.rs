//! A rate limiter for log lines that remote input can trigger.
//!
//! A path that a peer can hit once per datagram or message must not log once per hit: a flood would become a log
//! flood (disk, log shipping, the operator's attention). [`LogLimiter`] lets one line through per interval and
//! counts the rest; the next line that gets through carries the count of those suppressed since the previous one.
//!
//! Invariants: no allocation, no lock, no clock read beyond the `now` the caller passes in; the owner holds it
//! mutably (one per worker thread or task), so it needs no atomics.

use std::time::{Duration, Instant};

/// At most one log line per interval; the rest are counted.
#[derive(Debug, Clone)]
pub struct LogLimiter {
    interval: Duration,
    next: Option<Instant>,
    suppressed: u64,
}

impl LogLimiter {
    /// A limiter letting one line through per `interval`.
    pub const fn new(interval: Duration) -> Self {
        Self { interval, next: None, suppressed: 0 }
    }

    /// Whether a line may be logged at `now`: `Some(n)` with the number of lines suppressed since the last one
    /// that got through, or `None` (this one is counted as suppressed).
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        if self.next.is_some_and(|t| now < t) {
            self.suppressed = self.suppressed.saturating_add(1);
            return None;
        }
        self.next = Some(now + self.interval);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count() {
        let mut l = LogLimiter::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(l.allow(t0), Some(0));
        for i in 1..=1000u64 {
            assert_eq!(l.allow(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(l.allow(t0 + Duration::from_secs(10)), Some(1000));
        assert_eq!(l.allow(t0 + Duration::from_secs(11)), None);
        assert_eq!(l.allow(t0 + Duration::from_secs(30)), Some(1));
    }
}
