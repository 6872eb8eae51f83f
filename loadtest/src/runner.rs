//! The load models: closed loop (N workers, each sends the next request when the last one is
//! answered) and open loop (arrivals on a fixed schedule, latency from the due time).

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use rand::{SeedableRng, rngs::SmallRng};
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::{
    scenarios::{Scenario, Steps},
    schedule::Schedule,
    stats::{Recorder, Summary},
};

/// How load is offered.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Model {
    /// `concurrency` workers back to back.
    Closed { concurrency: usize },
    /// `rate` arrivals per second; at most `max_in_flight` outstanding (later arrivals wait,
    /// and their wait counts in their latency). The pacer wakes at most once every
    /// `pace_us` microseconds and hands over every arrival due by then (see [`pace`]).
    Open { rate: f64, max_in_flight: usize, pace_us: u64 },
}

/// What a run measured: the whole operation and, for multi-step scenarios, each step.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub total: Summary,
    pub steps: BTreeMap<String, Summary>,
    /// Open loop: requests due in the window that were still unanswered at the drain deadline.
    pub unfinished: u64,
}

#[derive(Default)]
struct Acc {
    total: Recorder,
    steps: BTreeMap<&'static str, Recorder>,
}

impl Acc {
    fn add(&mut self, latency: Duration, r: Result<(), String>, steps: &mut Steps) {
        self.total.record(latency, r);
        for (name, d, r) in steps.drain(..) {
            self.steps.entry(name).or_default().record(d, r);
        }
    }
    fn merge(&mut self, other: &Acc) {
        self.total.merge(&other.total);
        for (k, v) in &other.steps {
            self.steps.entry(k).or_default().merge(v);
        }
    }
    fn outcome(&self, secs: f64, unfinished: u64) -> Outcome {
        Outcome {
            total: self.total.summary(secs),
            steps: self.steps.iter().map(|(k, v)| ((*k).to_owned(), v.summary(secs))).collect(),
            unfinished,
        }
    }
}

/// Runs `warmup` unrecorded, then records for `duration`.
pub async fn run(scenario: Arc<Scenario>, model: Model, warmup: Duration, duration: Duration) -> Outcome {
    match model {
        Model::Closed { concurrency } => closed(scenario, concurrency, warmup, duration).await,
        Model::Open { rate, max_in_flight, pace_us } => {
            let schedule = Schedule::new(rate).expect("rate checked");
            open(scenario, schedule, max_in_flight, Duration::from_micros(pace_us), warmup, duration).await
        }
    }
}

async fn closed(scenario: Arc<Scenario>, concurrency: usize, warmup: Duration, duration: Duration) -> Outcome {
    let start = Instant::now();
    let (record_from, end) = (start + warmup, start + warmup + duration);
    let mut handles = Vec::with_capacity(concurrency);
    for w in 0..concurrency {
        let s = scenario.clone();
        handles.push(tokio::spawn(async move {
            let mut rng = SmallRng::seed_from_u64(w as u64 + 1);
            let mut acc = Acc::default();
            let mut steps = Steps::new();
            loop {
                let t = Instant::now();
                if t >= end {
                    break;
                }
                let r = s.once(w, &mut rng, &mut steps).await;
                if t >= record_from {
                    acc.add(t.elapsed(), r, &mut steps);
                } else {
                    steps.clear();
                }
            }
            acc
        }));
    }
    let mut acc = Acc::default();
    for h in handles {
        if let Ok(a) = h.await {
            acc.merge(&a);
        }
    }
    acc.outcome(duration.as_secs_f64(), 0)
}

async fn open(
    scenario: Arc<Scenario>,
    schedule: Schedule,
    max_in_flight: usize,
    quantum: Duration,
    warmup: Duration,
    duration: Duration,
) -> Outcome {
    let acc = Arc::new(Mutex::new(Acc::default()));
    let permits = Arc::new(Semaphore::new(max_in_flight.max(1)));
    let total = schedule.count_within(warmup + duration);
    // The arrivals are paced by a thread of their own: the runtime's timers tick in whole
    // milliseconds, which would send each millisecond's arrivals together, up to a
    // millisecond late, and count that lateness in every latency.
    let start_std = Instant::now();
    let start = tokio::time::Instant::from_std(start_std);
    let (due_tx, mut due_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    std::thread::Builder::new()
        .name("pacer".into())
        .spawn(move || pace(start_std, schedule, total, quantum, due_tx))
        .expect("spawning the pacer thread");
    let mut tasks = tokio::task::JoinSet::new();
    while let Some(i) = due_rx.recv().await {
        let due = schedule.due(i);
        let permit = permits.clone().acquire_owned().await.expect("semaphore open");
        let (s, acc) = (scenario.clone(), acc.clone());
        let recorded = due >= warmup;
        tasks.spawn(async move {
            let mut rng = SmallRng::seed_from_u64(i + 1);
            let mut steps = Steps::new();
            let r = s.once(i as usize, &mut rng, &mut steps).await;
            // From the due time, not the send time: queueing in the generator counts.
            let latency = Schedule::latency(due, start.elapsed());
            drop(permit);
            if recorded {
                acc.lock().expect("not poisoned").add(latency, r, &mut steps);
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    // Drain: answers still due get up to 30 s; the rest count as unfinished.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut unfinished = 0;
    loop {
        match tokio::time::timeout_at(deadline, tasks.join_next()).await {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => {
                unfinished = tasks.len() as u64;
                tasks.abort_all();
                break;
            }
        }
    }
    let acc = acc.lock().expect("not poisoned");
    acc.outcome(duration.as_secs_f64(), unfinished)
}

/// Hands arrival `i` over at its due time (never before). Sleeps to the next due time, but
/// wakes at most once every `quantum`, and then hands over every arrival that is due by
/// then: at 20,000 arrivals a second, a wake-up for each arrival (of this thread and of the
/// runtime's worker it hands over to) cost more CPU than the requests' own work on two
/// shared cores. An arrival handed over late is late by at most `quantum` (plus the
/// scheduler's delay), and that counts in its latency, which runs from its due time.
/// Returns how many times it handed arrivals over.
fn pace(
    start: Instant,
    schedule: Schedule,
    total: u64,
    quantum: Duration,
    tx: tokio::sync::mpsc::UnboundedSender<u64>,
) -> u64 {
    let mut i = 0;
    let mut rounds = 0;
    let mut not_before = start;
    while i < total {
        let wake = (start + schedule.due(i)).max(not_before);
        let now = Instant::now();
        if wake > now {
            std::thread::sleep(wake - now);
            continue;
        }
        rounds += 1;
        while i < total && start + schedule.due(i) <= now {
            if tx.send(i).is_err() {
                return rounds;
            }
            i += 1;
        }
        not_before = now + quantum;
    }
    rounds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pacer_hands_over_every_arrival_in_order_and_never_early() {
        // 2,000 a second: one every 500 µs, finer than the runtime's millisecond timers.
        let schedule = Schedule::new(2_000.0).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let start = Instant::now();
        let pacer = std::thread::spawn(move || pace(start, schedule, 400, Duration::ZERO, tx));
        let mut got = Vec::new();
        while let Some(i) = rx.blocking_recv() {
            let at = start.elapsed();
            assert!(at >= schedule.due(i), "arrival {i} handed over at {at:?}, before its due time");
            got.push((i, at));
        }
        pacer.join().unwrap();
        assert_eq!(got.iter().map(|(i, _)| *i).collect::<Vec<_>>(), (0..400).collect::<Vec<_>>());
        // Paced, not sent at once: the last one waited for its due time, 199.5 ms in. (How
        // late each one is depends on the machine's load, so it is measured in the runs,
        // not asserted here.)
        assert!(got[399].1 >= Duration::from_micros(199_500), "{:?}", got[399].1);
    }

    #[test]
    fn the_pacer_wakes_at_most_once_a_quantum_and_hands_over_all_that_is_due() {
        // One arrival every 500 µs for 200 ms, handed over every 5 ms at the finest.
        let schedule = Schedule::new(2_000.0).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let start = Instant::now();
        let pacer = std::thread::spawn(move || pace(start, schedule, 400, Duration::from_millis(5), tx));
        let mut got = Vec::new();
        while let Some(i) = rx.blocking_recv() {
            assert!(start.elapsed() >= schedule.due(i), "arrival {i} handed over before its due time");
            got.push(i);
        }
        let rounds = pacer.join().unwrap();
        assert_eq!(got, (0..400).collect::<Vec<_>>());
        // The rounds are at least 5 ms apart, and all but the last come before the last
        // arrival is due (199.5 ms): at most 41, however late the machine wakes the thread (a
        // late wake only merges rounds). Without the quantum, about 400.
        assert!((1..=41).contains(&rounds), "{rounds} rounds");
    }

    #[test]
    fn the_pacer_stops_when_nobody_listens() {
        let schedule = Schedule::new(1_000_000.0).unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        drop(rx);
        // Would hand over a billion arrivals; returns at the first refused one.
        pace(Instant::now(), schedule, 1_000_000_000, Duration::ZERO, tx);
    }
}
