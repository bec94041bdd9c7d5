//! Counters of a [`RedisStore`](super::RedisStore)'s operations, as plain numbers (the hub exports them as metrics
//! at scrape time; this crate has no metrics dependency).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds, inclusive) of the latency buckets of [`RedisOpStats::latency_buckets`]; one more bucket
/// holds every longer operation. The default response timeout is 0.5 s.
pub const OP_LATENCY_BOUNDS: [f64; 11] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

/// What a store's operations did since it was opened (every clone of the store shares them).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RedisOpStats {
    /// Operations sent to Redis, per latency bucket ([`OP_LATENCY_BOUNDS`], then the overflow bucket); a timed-out
    /// operation counts with the time it waited.
    pub latency_buckets: [u64; OP_LATENCY_BOUNDS.len() + 1],
    /// Sum of those operations' latencies, in seconds.
    pub latency_sum_seconds: f64,
    /// Operations that failed: an error reply, a timeout, a lost connection, or refused at once by the open
    /// circuit breaker (those are not in the latency buckets).
    pub errors: u64,
    /// Times the circuit breaker was opened (or kept open) by an outage.
    pub breaker_trips: u64,
}

impl RedisOpStats {
    /// Operations sent to Redis (the latency buckets' total).
    pub fn count(&self) -> u64 {
        self.latency_buckets.iter().sum()
    }
}

/// The live counters behind [`RedisOpStats`].
#[derive(Default)]
pub(crate) struct OpCounters {
    buckets: [AtomicU64; OP_LATENCY_BOUNDS.len() + 1],
    sum_ns: AtomicU64,
    errors: AtomicU64,
    trips: AtomicU64,
}

impl OpCounters {
    /// Records an operation that went to Redis and took `elapsed`.
    pub(crate) fn record(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let bucket = OP_LATENCY_BOUNDS.iter().position(|b| secs <= *b).unwrap_or(OP_LATENCY_BOUNDS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub(crate) fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn trip(&self) {
        self.trips.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> RedisOpStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RedisOpStats {
            latency_buckets: std::array::from_fn(|i| g(&self.buckets[i])),
            latency_sum_seconds: g(&self.sum_ns) as f64 / 1e9,
            errors: g(&self.errors),
            breaker_trips: g(&self.trips),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_sum() {
        let c = OpCounters::default();
        c.record(Duration::from_micros(300));
        c.record(Duration::from_millis(1));
        c.record(Duration::from_secs(3));
        c.error();
        c.trip();
        let s = c.snapshot();
        assert_eq!(s.latency_buckets[0], 1);
        assert_eq!(s.latency_buckets[1], 1, "a bound is inclusive");
        assert_eq!(s.latency_buckets[OP_LATENCY_BOUNDS.len()], 1);
        assert_eq!(s.count(), 3);
        assert!((s.latency_sum_seconds - 3.0013).abs() < 1e-9);
        assert_eq!((s.errors, s.breaker_trips), (1, 1));
    }
}
