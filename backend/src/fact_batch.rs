//! The database's confirmation of plate checks, asked in batches.
//!
//! A check whose live verdict may lead to a fine (unpaid, expired, elsewhere) is confirmed
//! against the database before it is answered (see [`crate::app::checks::run_check`]).
//! Under load that is one statement for every such check, and on PostgreSQL a statement's
//! round trip (waking a backend, the protocol, the kernel's loopback) costs both processes
//! far more than the two index lookups it makes.
//!
//! So the questions queue here, and a dispatcher asks whatever has queued in one statement
//! ([`WardenStore::plate_facts_batch`](crate::store::wardens::WardenStore::plate_facts_batch)),
//! one statement at a time.
//! - Alone (no batch left in the last [`BUSY`]), a question is asked at once.
//! - Under load, questions queue while the statement in flight runs, and the first question
//!   of the next batch waits for more (up to [`MAX_BATCH`]) until the runtime's timers next
//!   tick ([`LINGER`]). They tick in whole milliseconds, so that is about half a millisecond
//!   on average while the node's I/O keeps waking the runtime, as under load, and up to
//!   about one otherwise.
//!   - Without the wait (more, smaller statements), PostgreSQL's backends used about 2.5
//!     times the CPU at the same rate.
//!   - A wait of a whole millisecond (up to two, with the tick) doubled the misses' median
//!     in the load test's open loop, and more than doubled the plate checks' p99
//!     in two A/B rounds (docs/decisions/0020-plate-check-costs.md).
//!
//! A batch that fails fails each of its questions with the same error, as each one's own
//! statement would have.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

use crate::{
    domain::plate::Plate,
    store::{
        Store, StoreError, StoreResult,
        wardens::{FactAsk, PlateFacts},
    },
};

/// Most questions in one statement.
pub const MAX_BATCH: usize = 64;
/// How long the first question of a batch waits for others, under load: rounded up to the
/// runtime's next timer tick (whole milliseconds): about half a millisecond on average under
/// load, up to about one.
pub const LINGER: std::time::Duration = std::time::Duration::from_micros(1);
/// Under load: the previous batch left less than this long ago.
pub const BUSY: std::time::Duration = std::time::Duration::from_millis(5);
/// Questions queued before askers wait.
pub const QUEUE: usize = 4096;

struct Question {
    ask: FactAsk,
    reply: oneshot::Sender<StoreResult<PlateFacts>>,
}

/// The handle checks ask through.
#[derive(Clone)]
pub struct FactBatcher {
    tx: mpsc::Sender<Question>,
}

impl std::fmt::Debug for FactBatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FactBatcher").finish_non_exhaustive()
    }
}

impl FactBatcher {
    /// Starts the dispatcher for `store`.
    pub fn start(store: Arc<dyn Store>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(dispatch(store, rx));
        Self { tx }
    }

    /// What the database knows of `plate` at `point_id` at `at`
    /// ([`crate::store::wardens::WardenStore::plate_facts`]), asked with whatever else is
    /// queued.
    pub async fn plate_facts(&self, plate: &Plate, point_id: i64, at: DateTime<Utc>) -> StoreResult<PlateFacts> {
        let (reply, answer) = oneshot::channel();
        let ask = FactAsk { plate: plate.clone(), point_id, at };
        self.tx.send(Question { ask, reply }).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

fn gone() -> StoreError {
    StoreError::Internal("the plate facts dispatcher is gone".into())
}

async fn dispatch(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Question>) {
    let mut last: Option<tokio::time::Instant> = None;
    // While a statement runs, questions queue in the channel and make the next batch.
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        // Under load (the last batch left moments ago) the first question waits up to
        // LINGER for company; a question alone is asked at once.
        let now = tokio::time::Instant::now();
        let busy = last.is_some_and(|t| now.duration_since(t) < BUSY);
        let deadline = now + if busy { LINGER } else { std::time::Duration::ZERO };
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(q) => batch.push(q),
                Err(_) if !busy => break,
                Err(_) => match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(q)) => batch.push(q),
                    Ok(None) | Err(_) => break,
                },
            }
        }
        last = Some(tokio::time::Instant::now());
        let (asks, replies): (Vec<FactAsk>, Vec<_>) = batch.into_iter().map(|q| (q.ask, q.reply)).unzip();
        metrics::histogram!("plate_facts_batch_size").record(asks.len() as f64);
        let answers = store.plate_facts_batch(&asks).await.and_then(|answers| {
            if answers.len() == asks.len() {
                Ok(answers)
            } else {
                Err(StoreError::Internal(format!("{} answers for {} questions", answers.len(), asks.len())))
            }
        });
        // An asker that went away (its request was dropped) needs no answer.
        match answers {
            Ok(answers) => {
                for (reply, facts) in replies.into_iter().zip(answers) {
                    let _ = reply.send(Ok(facts));
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}
