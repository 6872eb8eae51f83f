//! Warnings that every request would repeat while a dependency is down.
//!
//! With Redis stopped under the load test, "live state unavailable" was logged once per plate
//! check: 47,183 lines in ten seconds, and the node spent its time writing them. Each such
//! warning site now logs at most once every [`INTERVAL`], and says how many it left out
//! since (`skipped`; `log_warnings_skipped_total{module}` counts them all). The first
//! occurrence is always logged at once, so an outage shows in the log when it begins.

use std::{
    sync::{
        OnceLock,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// At most one line per warning site in this long.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// One warning site's state: when it last logged, and how many it has left out since.
#[derive(Debug)]
pub struct Throttle {
    last_ms: AtomicI64,
    skipped: AtomicU64,
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new()
    }
}

fn now_ms() -> i64 {
    static START: OnceLock<Instant> = OnceLock::new();
    i64::try_from(START.get_or_init(Instant::now).elapsed().as_millis()).unwrap_or(i64::MAX)
}

impl Throttle {
    /// A site that has not logged yet.
    pub const fn new() -> Self {
        Self { last_ms: AtomicI64::new(i64::MIN), skipped: AtomicU64::new(0) }
    }

    /// Whether this occurrence is logged, now: if so, how many were left out before it.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(now_ms(), INTERVAL)
    }

    /// [`Self::admit`] at `now_ms` on a clock of milliseconds, with `interval`.
    pub fn admit_at(&self, now_ms: i64, interval: Duration) -> Option<u64> {
        let interval = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
        let last = self.last_ms.load(Ordering::Relaxed);
        // Of concurrent occurrences once the interval is up, one wins the exchange and logs.
        // (Before the first, `last` is i64::MIN: the difference saturates, and is up.)
        if now_ms.saturating_sub(last) >= interval
            && self.last_ms.compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            return Some(self.skipped.swap(0, Ordering::Relaxed));
        }
        self.skipped.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// `tracing::warn!`, at most once per [`INTERVAL`] for this call site, with a `skipped` field
/// counting the occurrences left out since the last line. Those are counted in
/// `log_warnings_skipped_total{module}` too (the call site's module, e.g.
/// `iparking::app::checks`).
#[macro_export]
macro_rules! warn_throttled {
    ($($rest:tt)+) => {{
        static THROTTLE: $crate::log_throttle::Throttle = $crate::log_throttle::Throttle::new();
        match THROTTLE.admit() {
            Some(skipped) => tracing::warn!(skipped, $($rest)+),
            None => metrics::counter!("log_warnings_skipped_total", "module" => module_path!()).increment(1),
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN_S: Duration = Duration::from_secs(10);

    #[test]
    fn the_first_is_logged_then_one_per_interval_with_the_count_left_out() {
        let t = Throttle::new();
        assert_eq!(t.admit_at(5_000, TEN_S), Some(0), "the first, at once");
        for ms in [5_001, 9_000, 14_999] {
            assert_eq!(t.admit_at(ms, TEN_S), None, "at {ms} ms");
        }
        assert_eq!(t.admit_at(15_000, TEN_S), Some(3), "the interval is up: three were left out");
        assert_eq!(t.admit_at(15_001, TEN_S), None);
        assert_eq!(t.admit_at(60_000, TEN_S), Some(1));
        assert_eq!(t.admit_at(60_000, TEN_S), None);
    }

    #[test]
    fn concurrent_occurrences_log_once_and_count_the_rest() {
        let t = std::sync::Arc::new(Throttle::new());
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let t = t.clone();
                std::thread::spawn(move || (0..1_000).filter(|_| t.admit_at(1_000, TEN_S).is_some()).count())
            })
            .collect();
        let logged: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(logged, 1, "one line for 8,000 occurrences inside one interval");
        assert_eq!(t.admit_at(11_000, TEN_S), Some(7_999));
    }

    #[test]
    fn on_the_real_clock_a_second_occurrence_at_once_is_left_out() {
        let t = Throttle::new();
        assert_eq!((t.admit(), t.admit(), t.admit()), (Some(0), None, None));
    }
}
