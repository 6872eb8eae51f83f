//! The durable record of plate checks, written off the request path.
//!
//! A check answers from the live state in well under a millisecond; writing its row in the
//! same request would make the database the bottleneck. Handlers hand the row to a channel
//! instead, and one writer task per node inserts whatever has queued in one multi-row
//! statement (group commit). A batch waits at most [`LINGER`] after its first row for more
//! (or until it has [`BATCH`] rows, or someone [flushes](CheckRecorder::flush)): under load
//! that makes a statement of hundreds of rows rather than a few, and a row costs the database
//! far less in a large statement than a statement does. A full queue makes handlers wait
//! (backpressure) rather than drop rows.

use std::{sync::Arc, time::Duration};

use tokio::sync::{mpsc, oneshot};

use crate::store::{Store, wardens::CheckRecord};

/// Most rows per batch (a store may split it into statements, in one transaction).
pub const BATCH: usize = 10_000;
/// Longest a queued row waits for others to share its insert.
pub const LINGER: Duration = Duration::from_millis(20);
/// Rows queued before handlers wait.
pub const QUEUE: usize = 20_000;
/// Rows kept while the database is unreachable; beyond this the oldest are dropped (and
/// counted in the log and the `plate_checks_dropped_total` metric).
pub const RETRY_BUFFER: usize = 200_000;

enum Msg {
    Check(CheckRecord),
    Flush(oneshot::Sender<()>),
}

/// The handle handlers record checks through.
#[derive(Clone)]
pub struct CheckRecorder {
    tx: mpsc::Sender<Msg>,
}

impl std::fmt::Debug for CheckRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckRecorder").finish_non_exhaustive()
    }
}

impl CheckRecorder {
    /// Starts the writer task for `store`.
    pub fn start(store: Arc<dyn Store>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_forever(store, rx));
        Self { tx }
    }

    /// Queues a check (waits only when the queue is full).
    pub async fn record(&self, check: CheckRecord) {
        if self.tx.send(Msg::Check(check)).await.is_err() {
            tracing::error!("plate check writer is gone; a check was not recorded");
        }
    }

    /// Waits until every check queued before this call is written (or given up on).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn write_forever(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Msg>) {
    let mut pending: Vec<CheckRecord> = Vec::new();
    let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
    let mut backoff = Duration::from_millis(100);
    loop {
        if pending.is_empty() && waiters.is_empty() {
            match rx.recv().await {
                Some(m) => take(m, &mut pending, &mut waiters),
                None => return,
            }
        }
        // Everything queued meanwhile joins this batch, and what arrives within the linger
        // (unless a flush is waiting, or the batch is full).
        let deadline = tokio::time::Instant::now() + LINGER;
        while pending.len() < RETRY_BUFFER {
            match rx.try_recv() {
                Ok(m) => take(m, &mut pending, &mut waiters),
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {
                    if !waiters.is_empty() || pending.len() >= BATCH {
                        break;
                    }
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(m)) => take(m, &mut pending, &mut waiters),
                        Ok(None) | Err(_) => break,
                    }
                }
            }
        }
        let mut failed = false;
        while !pending.is_empty() {
            let n = pending.len().min(BATCH);
            match store.record_checks(&pending[..n]).await {
                Ok(_) => {
                    pending.drain(..n);
                    backoff = Duration::from_millis(100);
                    metrics::counter!("plate_checks_recorded_total").increment(n as u64);
                }
                Err(e) => {
                    tracing::warn!(error = %e, queued = pending.len(), "plate checks not written yet; retrying");
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            if pending.len() > RETRY_BUFFER {
                let drop = pending.len() - RETRY_BUFFER;
                pending.drain(..drop);
                metrics::counter!("plate_checks_dropped_total").increment(drop as u64);
                tracing::error!(dropped = drop, "database unreachable too long: oldest plate checks dropped");
            }
            // Flush waiters are answered anyway: they must not hang while the database is down.
            for w in waiters.drain(..) {
                let _ = w.send(());
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
            continue;
        }
        for w in waiters.drain(..) {
            let _ = w.send(());
        }
    }
}

fn take(m: Msg, pending: &mut Vec<CheckRecord>, waiters: &mut Vec<oneshot::Sender<()>>) {
    match m {
        Msg::Check(c) => pending.push(c),
        Msg::Flush(w) => waiters.push(w),
    }
}
