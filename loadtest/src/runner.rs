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
    /// and their wait counts in their latency).
    Open { rate: f64, max_in_flight: usize },
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
        Model::Open { rate, max_in_flight } => {
            open(scenario, Schedule::new(rate).expect("rate checked"), max_in_flight, warmup, duration).await
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
        .spawn(move || pace(start_std, schedule, total, due_tx))
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

/// Hands arrival `i` over at its due time (never before): sleeps to the next due time, then
/// hands over every arrival that is due by then.
fn pace(start: Instant, schedule: Schedule, total: u64, tx: tokio::sync::mpsc::UnboundedSender<u64>) {
    let mut i = 0;
    while i < total {
        let due = start + schedule.due(i);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
            continue;
        }
        if tx.send(i).is_err() {
            return;
        }
        i += 1;
    }
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
        let pacer = std::thread::spawn(move || pace(start, schedule, 400, tx));
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
    fn the_pacer_stops_when_nobody_listens() {
        let schedule = Schedule::new(1_000_000.0).unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        drop(rx);
        // Would hand over a billion arrivals; returns at the first refused one.
        pace(Instant::now(), schedule, 1_000_000_000, tx);
    }
}
