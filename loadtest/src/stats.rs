//! Recording and reporting: latency histograms (µs), outcome counts, ratios to a baseline.

use std::{collections::BTreeMap, time::Duration};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency the histograms track: 60 s (longer ones are clamped to it).
const MAX_US: u64 = 60_000_000;

/// Latencies and outcomes of one scenario (or one step of it).
#[derive(Debug, Clone)]
pub struct Recorder {
    hist: Histogram<u64>,
    ok: u64,
    errors: BTreeMap<String, u64>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// An empty recorder: 1 µs to 60 s, 3 significant digits.
    pub fn new() -> Self {
        let hist = Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds");
        Self { hist, ok: 0, errors: BTreeMap::new() }
    }

    /// One answer: its latency and, when it failed, what kind of failure.
    pub fn record(&mut self, latency: Duration, outcome: Result<(), String>) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(MAX_US).clamp(1, MAX_US);
        self.hist.saturating_record(us);
        match outcome {
            Ok(()) => self.ok += 1,
            Err(kind) => *self.errors.entry(kind).or_default() += 1,
        }
    }

    /// Adds another recorder's data to this one.
    pub fn merge(&mut self, other: &Recorder) {
        self.hist.add(&other.hist).expect("same histogram bounds");
        self.ok += other.ok;
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
    }

    /// The summary over a measured window of `seconds`.
    pub fn summary(&self, seconds: f64) -> Summary {
        let q = |p: f64| if self.hist.is_empty() { 0 } else { self.hist.value_at_quantile(p) };
        Summary {
            requests: self.ok + self.errors.values().sum::<u64>(),
            ok: self.ok,
            errors: self.errors.clone(),
            seconds,
            throughput: if seconds > 0.0 { self.ok as f64 / seconds } else { 0.0 },
            latency_us: Latency {
                p50: q(0.50),
                p90: q(0.90),
                p99: q(0.99),
                p999: q(0.999),
                max: if self.hist.is_empty() { 0 } else { self.hist.max() },
                mean: if self.hist.is_empty() { 0.0 } else { self.hist.mean() },
            },
        }
    }
}

/// Latency percentiles in microseconds (of every answer, successful or not).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

/// What a run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Answers recorded (ok + errors).
    pub requests: u64,
    /// Successful answers.
    pub ok: u64,
    /// Failures by kind (`409 no_open_shift`, `transport timeout`, …).
    pub errors: BTreeMap<String, u64>,
    /// Length of the measured window.
    pub seconds: f64,
    /// Successful answers per second.
    pub throughput: f64,
    pub latency_us: Latency,
}

/// `value / base` as a ratio (`0.42×`); `n/a` when the base is zero or missing.
pub fn ratio(value: f64, base: f64) -> String {
    if base > 0.0 && base.is_finite() && value.is_finite() {
        let r = value / base;
        if r >= 100.0 {
            format!("{r:.0}×")
        } else if r >= 10.0 {
            format!("{r:.1}×")
        } else {
            format!("{r:.2}×")
        }
    } else {
        "n/a".to_owned()
    }
}

/// A latency in µs as a short human string: `850 µs`, `3.21 ms`, `1.50 s`.
pub fn fmt_us(us: u64) -> String {
    if us < 1_000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        format!("{:.2} ms", us as f64 / 1e3)
    } else {
        format!("{:.2} s", us as f64 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_from_a_uniform_distribution() {
        let mut r = Recorder::new();
        for us in 1..=10_000u64 {
            r.record(Duration::from_micros(us), Ok(()));
        }
        let s = r.summary(2.0);
        assert_eq!(s.requests, 10_000);
        assert_eq!(s.throughput, 5_000.0);
        // 3 significant digits: within 0.1%.
        let near = |got: u64, want: u64| (got as f64 - want as f64).abs() <= want as f64 * 0.001 + 1.0;
        assert!(near(s.latency_us.p50, 5_000), "{s:?}");
        assert!(near(s.latency_us.p90, 9_000), "{s:?}");
        assert!(near(s.latency_us.p99, 9_900), "{s:?}");
        assert!(near(s.latency_us.p999, 9_990), "{s:?}");
        assert!(near(s.latency_us.max, 10_000), "{s:?}");
        assert!((s.latency_us.mean - 5_000.5).abs() < 10.0);
    }

    #[test]
    fn errors_are_counted_by_kind_and_not_as_throughput() {
        let mut a = Recorder::new();
        a.record(Duration::from_millis(1), Ok(()));
        a.record(Duration::from_millis(2), Err("503 unavailable".into()));
        let mut b = Recorder::new();
        b.record(Duration::from_millis(100), Err("503 unavailable".into()));
        b.record(Duration::from_secs(3600), Err("transport timeout".into()));
        a.merge(&b);
        let s = a.summary(1.0);
        assert_eq!((s.requests, s.ok, s.throughput), (4, 1, 1.0));
        assert_eq!(s.errors.get("503 unavailable"), Some(&2));
        assert_eq!(s.errors.get("transport timeout"), Some(&1));
        // Clamped to the histogram's top, not dropped.
        assert!(s.latency_us.max >= MAX_US - MAX_US / 1000);
    }

    #[test]
    fn an_empty_recorder_reports_zeroes() {
        let s = Recorder::new().summary(0.0);
        assert_eq!((s.requests, s.throughput, s.latency_us.p99, s.latency_us.max), (0, 0.0, 0, 0));
    }

    #[test]
    fn ratios_and_durations_format() {
        assert_eq!(ratio(420.0, 1000.0), "0.42×");
        assert_eq!(ratio(1000.0, 1000.0), "1.00×");
        assert_eq!(ratio(12_345.0, 1000.0), "12.3×");
        assert_eq!(ratio(250_000.0, 1000.0), "250×");
        assert_eq!(ratio(5.0, 0.0), "n/a");
        assert_eq!(ratio(f64::NAN, 1.0), "n/a");
        assert_eq!(fmt_us(850), "850 µs");
        assert_eq!(fmt_us(3_214), "3.21 ms");
        assert_eq!(fmt_us(1_500_000), "1.50 s");
    }
}
