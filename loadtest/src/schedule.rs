//! The open-loop arrival schedule: request `i` is due at `i / rate` seconds after the start,
//! whatever happened to the earlier ones. Latency is measured from that due time, so a slow
//! server cannot slow the arrivals down and hide its own stalls (coordinated omission).

use std::time::Duration;

/// Fixed-rate arrivals.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    rate: f64,
}

impl Schedule {
    /// `rate` requests per second (> 0).
    pub fn new(rate: f64) -> anyhow::Result<Self> {
        anyhow::ensure!(rate > 0.0 && rate.is_finite(), "--rate must be a positive number of requests per second");
        Ok(Self { rate })
    }

    /// When request `i` (from 0) is due, after the start.
    pub fn due(&self, i: u64) -> Duration {
        Duration::from_secs_f64(i as f64 / self.rate)
    }

    /// How many requests are due in the first `window`.
    pub fn count_within(&self, window: Duration) -> u64 {
        (window.as_secs_f64() * self.rate).ceil() as u64
    }

    /// How late a request due at `due` is when it completes at `done` (both after the start):
    /// its latency as the user sees it.
    pub fn latency(due: Duration, done: Duration) -> Duration {
        done.saturating_sub(due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrivals_are_evenly_spaced() {
        let s = Schedule::new(200.0).unwrap();
        assert_eq!(s.due(0), Duration::ZERO);
        assert_eq!(s.due(1), Duration::from_millis(5));
        assert_eq!(s.due(200), Duration::from_secs(1));
        assert_eq!(s.due(2_000_000), Duration::from_secs(10_000));
        assert_eq!(s.count_within(Duration::from_secs(10)), 2_000);
        // Every request of the window is due inside it.
        let n = s.count_within(Duration::from_millis(12));
        assert_eq!(n, 3);
        assert!(s.due(n - 1) < Duration::from_millis(12) && s.due(n) >= Duration::from_millis(12));
    }

    #[test]
    fn fractional_rates_work() {
        let s = Schedule::new(0.5).unwrap();
        assert_eq!(s.due(3), Duration::from_secs(6));
        assert_eq!(s.count_within(Duration::from_secs(5)), 3);
    }

    #[test]
    fn latency_counts_from_the_due_time_not_the_send_time() {
        // Due at 10 ms, sent late at 40 ms (the generator was stalled), answered at 45 ms:
        // the user waited 35 ms, not 5.
        assert_eq!(Schedule::latency(Duration::from_millis(10), Duration::from_millis(45)), Duration::from_millis(35));
        assert_eq!(Schedule::latency(Duration::from_millis(10), Duration::from_millis(5)), Duration::ZERO);
    }

    #[test]
    fn rejects_nonsense_rates() {
        assert!(Schedule::new(0.0).is_err());
        assert!(Schedule::new(-1.0).is_err());
        assert!(Schedule::new(f64::INFINITY).is_err());
    }
}
