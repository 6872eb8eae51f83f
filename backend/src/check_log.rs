//! The durable record of plate checks, written off the request path, through a local
//! journal that survives the process (issue 34; docs/decisions/0028-check-journal.md).
//!
//! A check answers from the live state in well under a millisecond; writing its row in the
//! same request would make the database the bottleneck. So:
//! 1. **The journal.** Before a check is answered, the handler appends its row to this node's
//!    journal: a file under the data directory, one JSON line per check with a sequence
//!    number, one `write` under a lock (no task to wake: a hand-off to a journal task cost a
//!    third of the plate checks' rate). A `write` puts the bytes in the kernel's page cache:
//!    they outlive the process (a `kill -9`, a panic, the OOM killer), not the machine (no
//!    `fsync`; see the decision).
//! 2. **The database.** The rows go on in memory to the writer task, which inserts whatever
//!    has queued in one multi-row statement (`COPY` on PostgreSQL), waiting at most
//!    [`LINGER`] for more, and in the same database transaction moves this journal's mark (the
//!    last sequence number written) in `check_journal_marks`.
//! 3. **At start**, every journal under the data directory that no running node holds (each
//!    node holds its own with a file lock) is replayed: the rows after its mark are inserted,
//!    then the journal is deleted. So every answered check reaches the database once.
//!
//! While the database is unreachable the writer keeps up to [`RETRY_BUFFER`] rows in memory;
//! beyond that it lets the memory copies go and reads them back from the journal when the
//! database returns. Nothing is dropped. A journal's segment is deleted once its rows are
//! all written.

use std::{
    collections::VecDeque,
    io::{BufRead, Write},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use crate::{
    domain::{check::CheckSource, plate::Plate},
    store::{
        Store, StoreError,
        wardens::{CheckRecord, verdict_from_name, verdict_name},
    },
};

/// Most rows per database batch (a store may split it into statements, in one transaction).
pub const BATCH: usize = 10_000;
/// Longest a row waits for others to share its insert.
pub const LINGER: Duration = Duration::from_millis(20);
/// Rows queued before handlers wait.
pub const QUEUE: usize = 20_000;
/// Rows kept in memory while the database is unreachable; beyond this they are read back
/// from the journal when it returns.
pub const RETRY_BUFFER: usize = 200_000;
/// A journal segment is closed (and a new one begun) beyond this size.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// One journal line.
#[derive(Serialize, Deserialize)]
struct Line {
    seq: u64,
    staff: i64,
    point: i64,
    plate: String,
    verdict: String,
    session: Option<i64>,
    near: u32,
    source: String,
    at: DateTime<Utc>,
}

impl Line {
    fn new(seq: u64, c: &CheckRecord) -> Self {
        Line {
            seq,
            staff: c.staff_id,
            point: c.point_id,
            plate: c.plate.as_str().to_owned(),
            verdict: verdict_name(c.verdict).to_owned(),
            session: c.session_id,
            near: c.near_misses,
            source: c.source.as_str().to_owned(),
            at: c.checked_at,
        }
    }

    fn record(self) -> Option<(u64, CheckRecord)> {
        let verdict = verdict_from_name(&self.verdict)?;
        let source = CheckSource::from_name(&self.source)?;
        Some((
            self.seq,
            CheckRecord {
                staff_id: self.staff,
                point_id: self.point,
                plate: Plate::from_db(self.plate),
                verdict,
                session_id: self.session,
                near_misses: self.near,
                source,
                checked_at: self.at,
            },
        ))
    }
}

/// A row on its way to the writer, in sequence order; its permit bounds the queue.
struct Row {
    seq: u64,
    check: CheckRecord,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// How far the writer got: the last sequence number written, and how many batches failed.
#[derive(Clone, Copy, Default)]
struct Progress {
    written: u64,
    failures: u64,
}

/// The journal's open segment, appended to under the recorder's lock.
struct Appender {
    journal: Option<Arc<Journal>>,
    file: Option<std::fs::File>,
    seq: u64,
    size: u64,
    segment: Option<PathBuf>,
    buf: Vec<u8>,
    /// Closed segments and their last sequence numbers, deleted once written.
    closed: Arc<Mutex<VecDeque<(PathBuf, u64)>>>,
    /// To the writer; sent under the lock, so rows reach it in sequence order.
    tx: mpsc::UnboundedSender<Row>,
}

impl Appender {
    /// Journals `check` (when there is a journal) and hands it to the writer.
    fn append(&mut self, check: CheckRecord, permit: tokio::sync::OwnedSemaphorePermit) {
        self.seq += 1;
        let seq = self.seq;
        if let (Some(file), Some(journal)) = (self.file.as_mut(), &self.journal) {
            self.buf.clear();
            let _ = serde_json::to_writer(&mut self.buf, &Line::new(seq, &check));
            self.buf.push(b'\n');
            if let Err(e) = file.write_all(&self.buf) {
                // The disk refused: the row still goes to the database from memory, but a
                // crash now would lose it; said loudly.
                metrics::counter!("plate_check_journal_errors_total").increment(1);
                tracing::error!(error = %e, "plate check journal write failed");
            }
            self.size += self.buf.len() as u64;
            if self.size >= SEGMENT_BYTES {
                match open_segment(&journal.dir, seq + 1) {
                    Ok(next) => {
                        self.file = Some(next);
                        self.size = 0;
                        if let Some(old) = self.segment.replace(journal.dir.join(segment_name(seq + 1))) {
                            self.closed.lock().unwrap_or_else(|p| p.into_inner()).push_back((old, seq));
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "plate check journal: new segment not opened"),
                }
            }
        }
        if self.tx.send(Row { seq, check, _permit: permit }).is_err() {
            tracing::error!("plate check writer is gone; a check was journaled, not written");
        }
    }
}

/// The handle handlers record checks through.
#[derive(Clone)]
pub struct CheckRecorder {
    appender: Arc<Mutex<Appender>>,
    permits: Arc<tokio::sync::Semaphore>,
    progress: watch::Receiver<Progress>,
}

impl std::fmt::Debug for CheckRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckRecorder").finish_non_exhaustive()
    }
}

/// Where the writer puts its rows: the store (a test gives it a database that fails on cue).
#[async_trait::async_trait]
trait CheckSink: Send + Sync {
    async fn record_checks(&self, checks: &[CheckRecord], mark: Option<(&str, i64)>) -> Result<(), StoreError>;
}

struct StoreSink(Arc<dyn Store>);

#[async_trait::async_trait]
impl CheckSink for StoreSink {
    async fn record_checks(&self, checks: &[CheckRecord], mark: Option<(&str, i64)>) -> Result<(), StoreError> {
        self.0.record_checks(checks, mark).await.map(|_| ())
    }
}

/// The writer's sizes: [`BATCH`] and [`RETRY_BUFFER`] (smaller in the tests).
#[derive(Clone, Copy)]
struct Limits {
    batch: usize,
    retry_buffer: usize,
}

const LIMITS: Limits = Limits { batch: BATCH, retry_buffer: RETRY_BUFFER };

/// A node's own journal: its directory (named by its id), held with a lock.
struct Journal {
    id: String,
    dir: PathBuf,
    _lock: std::fs::File,
}

/// A segment's file name: `seg-` and its first sequence number.
fn segment_name(first: u64) -> String {
    format!("seg-{first:020}.jsonl")
}

/// A journal's segments, oldest first, with their first sequence numbers.
fn segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let path = e?.path();
        let first = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("seg-")?.strip_suffix(".jsonl")?.parse::<u64>().ok());
        if let Some(first) = first {
            out.push((first, path));
        }
    }
    out.sort();
    Ok(out)
}

/// Reads the rows of `dir`'s journal after sequence number `after`, at most `limit` of them.
/// A torn last line (the process died in the middle of a write, so its checks were not
/// answered) is skipped.
fn read_journal(dir: &Path, after: u64, limit: usize) -> std::io::Result<Vec<(u64, CheckRecord)>> {
    let segs = segments(dir)?;
    let mut out = Vec::new();
    for (i, (_, path)) in segs.iter().enumerate() {
        if segs.get(i + 1).is_some_and(|(next, _)| *next <= after + 1) {
            continue;
        }
        let file = std::io::BufReader::new(std::fs::File::open(path)?);
        for line in file.lines() {
            let line = line?;
            let Ok(l) = serde_json::from_str::<Line>(&line) else { continue };
            if l.seq <= after {
                continue;
            }
            if let Some(r) = l.record() {
                out.push(r);
            }
            if out.len() >= limit {
                return Ok(out);
            }
        }
    }
    Ok(out)
}

fn io_error(what: &str, dir: &Path, e: std::io::Error) -> StoreError {
    StoreError::Internal(format!("check journal {what} {}: {e}", dir.display()))
}

/// Replays every journal under `root` that no running node holds: the rows after its mark in
/// the database are written, then the journal is deleted. Returns the rows written.
pub async fn replay_orphans(store: &dyn Store, root: &Path) -> Result<u64, StoreError> {
    let Ok(entries) = std::fs::read_dir(root) else { return Ok(0) };
    let mut total = 0;
    for e in entries.flatten() {
        let dir = e.path();
        let Some(id) = dir.file_name().and_then(|n| n.to_str()).map(str::to_owned) else { continue };
        if !dir.is_dir() {
            continue;
        }
        let Ok(lock) =
            std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(dir.join("lock"))
        else {
            continue;
        };
        if lock.try_lock().is_err() {
            continue; // a running node's own
        }
        let mut mark = store.check_journal_mark(&id).await?;
        let mut rows_written = 0u64;
        loop {
            let rows = read_journal(&dir, mark, BATCH).map_err(|e| io_error("read", &dir, e))?;
            let Some(last) = rows.last().map(|(s, _)| *s) else { break };
            let records: Vec<CheckRecord> = rows.into_iter().map(|(_, r)| r).collect();
            store.record_checks(&records, Some((&id, last as i64))).await?;
            rows_written += records.len() as u64;
            mark = last;
        }
        std::fs::remove_dir_all(&dir).map_err(|e| io_error("delete", &dir, e))?;
        store.forget_check_journal(&id).await?;
        if rows_written > 0 {
            tracing::warn!(journal = %id, rows = rows_written, "plate checks of a stopped node's journal written");
        }
        total += rows_written;
    }
    Ok(total)
}

impl CheckRecorder {
    /// Replays the journals left under `journal_root` by nodes that stopped, then starts this
    /// node's journal there and the writer task for `store`. Without a root, checks are kept
    /// in memory only until written, and lost if the process dies first (for measuring what
    /// the journal costs; the rows beyond [`RETRY_BUFFER`] are then dropped).
    pub async fn start(store: Arc<dyn Store>, journal_root: Option<&Path>) -> Result<Self, StoreError> {
        let journal = match journal_root {
            Some(root) => Some(Arc::new(open_journal(store.as_ref(), root).await?)),
            None => None,
        };
        Self::with_sink(Arc::new(StoreSink(store)), journal, LIMITS)
    }

    fn with_sink(sink: Arc<dyn CheckSink>, journal: Option<Arc<Journal>>, limits: Limits) -> Result<Self, StoreError> {
        let file = match &journal {
            Some(j) => Some(open_segment(&j.dir, 1).map_err(|e| io_error("open", &j.dir, e))?),
            None => None,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let (progress_tx, progress) = watch::channel(Progress::default());
        let closed = Arc::new(Mutex::new(VecDeque::new()));
        let segment = journal.as_ref().map(|j| j.dir.join(segment_name(1)));
        let appender = Appender {
            journal: journal.clone(),
            file,
            seq: 0,
            size: 0,
            segment,
            buf: Vec::with_capacity(256),
            closed: closed.clone(),
            tx,
        };
        tokio::spawn(write_forever(sink, journal, rx, progress_tx, closed, limits));
        Ok(Self {
            appender: Arc::new(Mutex::new(appender)),
            permits: Arc::new(tokio::sync::Semaphore::new(QUEUE)),
            progress,
        })
    }

    /// Journals a check and queues it for the database; returns once it is in the journal
    /// (waits longer only when the queue is full).
    pub async fn record(&self, check: CheckRecord) {
        let Ok(permit) = self.permits.clone().acquire_owned().await else { return };
        self.appender.lock().unwrap_or_else(|p| p.into_inner()).append(check, permit);
    }

    /// Waits until every check recorded before this call is written to the database (or a
    /// write failed meanwhile: the database is unreachable, and the rows wait).
    pub async fn flush(&self) {
        let upto = self.appender.lock().unwrap_or_else(|p| p.into_inner()).seq;
        let mut progress = self.progress.clone();
        let failures = progress.borrow().failures;
        let _ = progress.wait_for(|p| p.written >= upto || p.failures > failures).await;
    }
}

/// Replays the stopped nodes' journals under `root`, then makes and locks this node's own.
async fn open_journal(store: &dyn Store, root: &Path) -> Result<Journal, StoreError> {
    create_private_dir(root).map_err(|e| io_error("create", root, e))?;
    replay_orphans(store, root).await?;
    own_journal(root)
}

/// Makes and locks a new journal under `root`.
fn own_journal(root: &Path) -> Result<Journal, StoreError> {
    let id = format!("{:032x}", rand::random::<u128>());
    let dir = root.join(&id);
    create_private_dir(&dir).map_err(|e| io_error("create", &dir, e))?;
    let lock = std::fs::File::create(dir.join("lock")).map_err(|e| io_error("create", &dir, e))?;
    lock.try_lock().map_err(|e| io_error("lock", &dir, std::io::Error::other(e.to_string())))?;
    Ok(Journal { id, dir, _lock: lock })
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn open_segment(dir: &Path, first: u64) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().create(true).append(true).open(dir.join(segment_name(first)))
}

/// The writer task: inserts the rows in batches, in sequence order, moving the journal's
/// mark in the same database transaction (so the mark never passes a row not written).
async fn write_forever(
    sink: Arc<dyn CheckSink>,
    journal: Option<Arc<Journal>>,
    mut rx: mpsc::UnboundedReceiver<Row>,
    progress: watch::Sender<Progress>,
    closed: Arc<Mutex<VecDeque<(PathBuf, u64)>>>,
    Limits { batch, retry_buffer }: Limits,
) {
    let mut pending: VecDeque<(u64, CheckRecord)> = VecDeque::new();
    let mut written = 0u64;
    // Rows let go from memory while the database was unreachable: until they are written,
    // they are read back from the journal, `batch` at a time, and are written before any row
    // of memory; memory's rows up to `spilled_upto` are skipped.
    let mut spilled_upto: Option<u64> = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        if pending.is_empty() && spilled_upto.is_none() {
            match rx.recv().await {
                Some(row) => pending.push_back((row.seq, row.check)),
                None => return,
            }
        }
        // Everything queued meanwhile joins (up to the retry buffer, while the database is
        // down), and what arrives within the linger unless the batch is full (no linger while
        // catching up: the journal has rows enough).
        let deadline = tokio::time::Instant::now() + LINGER;
        while pending.len() <= retry_buffer {
            match rx.try_recv() {
                Ok(row) => pending.push_back((row.seq, row.check)),
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {
                    if pending.len() >= batch || spilled_upto.is_some() {
                        break;
                    }
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(row)) => pending.push_back((row.seq, row.check)),
                        Ok(None) | Err(_) => break,
                    }
                }
            }
        }
        if let Some(upto) = spilled_upto {
            // Catching up: the next rows after `written` come from the journal (memory's copies
            // of them, if any are left, are dropped), ahead of memory's later rows.
            while pending.front().is_some_and(|(s, _)| *s <= upto) {
                pending.pop_front();
            }
            let Some(j) = &journal else {
                spilled_upto = None;
                continue;
            };
            match read_journal(&j.dir, written, batch) {
                Ok(rows) => {
                    let rows: Vec<_> = rows.into_iter().filter(|(s, _)| *s <= upto).collect();
                    if rows.is_empty() {
                        spilled_upto = None;
                        continue;
                    }
                    for r in rows.into_iter().rev() {
                        pending.push_front(r);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "plate check journal unreadable; rows kept for the next start");
                    spilled_upto = None;
                }
            }
        }
        let mut failed = false;
        loop {
            // While catching up, only the journal's rows (up to `spilled_upto`) are ready: a row
            // of memory written now would move the mark past the journal's rows still unread.
            let ready = match spilled_upto {
                Some(upto) => pending.iter().take(batch).take_while(|(s, _)| *s <= upto).count(),
                None => pending.len().min(batch),
            };
            if ready == 0 {
                break;
            }
            let rows: Vec<CheckRecord> = pending.iter().take(ready).map(|(_, c)| c.clone()).collect();
            let last = pending[ready - 1].0;
            let mark = journal.as_ref().map(|j| (j.id.as_str(), last as i64));
            match sink.record_checks(&rows, mark).await {
                Ok(()) => {
                    pending.drain(..ready);
                    written = last;
                    backoff = Duration::from_millis(100);
                    metrics::counter!("plate_checks_recorded_total").increment(ready as u64);
                    progress.send_modify(|p| p.written = last);
                    forget_segments(&closed, written);
                }
                Err(e) => {
                    tracing::warn!(error = %e, queued = pending.len(), "plate checks not written yet; retrying");
                    failed = true;
                    break;
                }
            }
        }
        // Memory's rows pile up behind a catch-up: the journal has them too.
        let mut overflow = Overflow::default();
        overflow.limit(&mut pending, &mut spilled_upto, journal.is_some(), retry_buffer);
        if failed {
            progress.send_modify(|p| p.failures += 1);
            // Wait before retrying, taking the rows that come meanwhile: handlers never wait
            // on a full queue while the database is down (beyond the buffer, the journal holds
            // the rows; without one, the oldest go).
            let until = tokio::time::Instant::now() + backoff;
            while let Ok(Some(row)) = tokio::time::timeout_at(until, rx.recv()).await {
                pending.push_back((row.seq, row.check));
                overflow.limit(&mut pending, &mut spilled_upto, journal.is_some(), retry_buffer);
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        overflow.report();
    }
}

/// What the writer let go of from memory in one round, said once.
#[derive(Default)]
struct Overflow {
    spilled: usize,
    dropped: usize,
}

impl Overflow {
    /// Keeps at most `retry_buffer` rows in memory: with a journal, all of them are let go and
    /// read back from the journal later (`spilled_upto`); without one, the oldest are lost.
    fn limit(
        &mut self,
        pending: &mut VecDeque<(u64, CheckRecord)>,
        spilled_upto: &mut Option<u64>,
        journaled: bool,
        retry_buffer: usize,
    ) {
        if pending.len() <= retry_buffer {
            return;
        }
        if journaled {
            if let Some(&(last, _)) = pending.back() {
                *spilled_upto = Some(spilled_upto.map_or(last, |u| u.max(last)));
            }
            self.spilled += pending.len();
            pending.clear();
        } else {
            let drop = pending.len() - retry_buffer;
            pending.drain(..drop);
            self.dropped += drop;
        }
    }

    fn report(self) {
        if self.spilled > 0 {
            metrics::counter!("plate_checks_spilled_total").increment(self.spilled as u64);
            tracing::warn!(rows = self.spilled, "plate checks wait in the journal");
        }
        if self.dropped > 0 {
            metrics::counter!("plate_checks_dropped_total").increment(self.dropped as u64);
            tracing::error!(dropped = self.dropped, "database unreachable too long: oldest plate checks dropped");
        }
    }
}

/// Deletes the closed segments whose rows are all written.
fn forget_segments(closed: &Mutex<VecDeque<(PathBuf, u64)>>, written: u64) {
    let mut closed = closed.lock().unwrap_or_else(|p| p.into_inner());
    while closed.front().is_some_and(|(_, last)| *last <= written) {
        if let Some((path, _)) = closed.pop_front()
            && let Err(e) = std::fs::remove_file(&path)
        {
            tracing::warn!(error = %e, "plate check journal segment not deleted");
        }
    }
}

#[cfg(test)]
mod tests {
    //! The writer against a database that fails on cue, with small batches and a small retry
    //! buffer, so that the spill to the journal and the catch-up from it run with a few
    //! hundred rows. The invariant: the rows reach the database once each, in sequence order,
    //! so that the journal's mark never passes a row not written.

    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use iparking_mobile_api::CheckVerdict;

    use super::*;

    /// Records what it is given (each row's point id is its number in the test), or fails
    /// while `down`; goes down by itself once it holds `down_at` rows.
    struct FlakyDb {
        down: AtomicBool,
        down_at: AtomicUsize,
        rows: Mutex<Vec<i64>>,
        marks: Mutex<Vec<i64>>,
    }

    impl Default for FlakyDb {
        fn default() -> Self {
            FlakyDb {
                down: AtomicBool::new(false),
                down_at: AtomicUsize::new(usize::MAX),
                rows: Mutex::default(),
                marks: Mutex::default(),
            }
        }
    }

    #[async_trait::async_trait]
    impl CheckSink for FlakyDb {
        async fn record_checks(&self, checks: &[CheckRecord], mark: Option<(&str, i64)>) -> Result<(), StoreError> {
            // A database call takes time: the handlers go on meanwhile.
            tokio::time::sleep(Duration::from_micros(300)).await;
            let mut rows = self.rows.lock().unwrap();
            if rows.len() >= self.down_at.load(Ordering::SeqCst) {
                self.down.store(true, Ordering::SeqCst);
            }
            if self.down.load(Ordering::SeqCst) {
                return Err(StoreError::Unavailable("down, as the test wants".into()));
            }
            rows.extend(checks.iter().map(|c| c.point_id));
            if let Some((_, m)) = mark {
                self.marks.lock().unwrap().push(m);
            }
            Ok(())
        }
    }

    fn check(n: i64) -> CheckRecord {
        CheckRecord {
            staff_id: 1,
            point_id: n,
            plate: Plate::from_db(format!("30A{n:05}")),
            verdict: CheckVerdict::Valid,
            session_id: Some(n),
            near_misses: 0,
            source: CheckSource::Online,
            checked_at: Utc::now(),
        }
    }

    async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    const LIMITS: Limits = Limits { batch: 7, retry_buffer: 40 };

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rows_beyond_the_retry_buffer_wait_in_the_journal_and_are_written_once_in_order() {
        let root = tempfile::tempdir().unwrap();
        let db = Arc::new(FlakyDb::default());
        let journal = Arc::new(own_journal(root.path()).unwrap());
        let recorder = CheckRecorder::with_sink(db.clone(), Some(journal.clone()), LIMITS).unwrap();

        // Up: the first rows are written.
        for n in 1..=20 {
            recorder.record(check(n)).await;
        }
        wait_for("the first rows", || db.rows.lock().unwrap().len() == 20).await;
        // Down: 500 more rows, far beyond the buffer of 40; they are let go from memory.
        db.down.store(true, Ordering::SeqCst);
        for n in 21..=520 {
            recorder.record(check(n)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(db.rows.lock().unwrap().len(), 20, "nothing written while down");
        // Up again, with checks still coming in while the journal's rows are caught up
        // (70 batches of 7).
        db.down.store(false, Ordering::SeqCst);
        for n in 521..=900 {
            recorder.record(check(n)).await;
            if n % 20 == 0 {
                tokio::task::yield_now().await;
            }
        }
        wait_for("every row", || db.rows.lock().unwrap().len() >= 900).await;
        tokio::time::sleep(Duration::from_millis(100)).await;

        let rows = db.rows.lock().unwrap().clone();
        assert_eq!(rows, (1..=900).collect::<Vec<_>>(), "every row once, in order");
        let marks = db.marks.lock().unwrap().clone();
        assert!(marks.windows(2).all(|w| w[0] < w[1]), "the mark only moves forward: {marks:?}");
        assert_eq!(marks.last(), Some(&900));
        assert!(marks.iter().all(|m| (*m as usize) <= rows.len()), "no mark past a row not written");
        // The journal's rows after its last mark: none (a restart would replay nothing).
        assert!(read_journal(&journal.dir, 900, 10).unwrap().is_empty());
        assert_eq!(read_journal(&journal.dir, 0, 1000).unwrap().len(), 900, "one segment, all rows");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_database_down_twice_during_the_catch_up_loses_and_repeats_nothing() {
        let root = tempfile::tempdir().unwrap();
        let db = Arc::new(FlakyDb::default());
        let journal = Arc::new(own_journal(root.path()).unwrap());
        let recorder = CheckRecorder::with_sink(db.clone(), Some(journal), LIMITS).unwrap();
        db.down.store(true, Ordering::SeqCst);
        for n in 1..=300 {
            recorder.record(check(n)).await;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        // Up for part of the catch-up (down again from 50 rows on), with more rows coming.
        db.down_at.store(50, Ordering::SeqCst);
        db.down.store(false, Ordering::SeqCst);
        wait_for("part of the catch-up", || db.down.load(Ordering::SeqCst)).await;
        let partial = db.rows.lock().unwrap().len();
        assert!((50..300).contains(&partial), "the catch-up interrupted ({partial} written)");
        for n in 301..=600 {
            recorder.record(check(n)).await;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        db.down_at.store(usize::MAX, Ordering::SeqCst);
        db.down.store(false, Ordering::SeqCst);
        wait_for("every row", || db.rows.lock().unwrap().len() >= 600).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(*db.rows.lock().unwrap(), (1..=600).collect::<Vec<_>>(), "every row once, in order");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_a_journal_the_oldest_rows_beyond_the_buffer_are_dropped() {
        let db = Arc::new(FlakyDb::default());
        let recorder = CheckRecorder::with_sink(db.clone(), None, LIMITS).unwrap();
        db.down.store(true, Ordering::SeqCst);
        for n in 1..=200 {
            recorder.record(check(n)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        db.down.store(false, Ordering::SeqCst);
        wait_for("the kept rows", || db.rows.lock().unwrap().len() >= LIMITS.retry_buffer).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let rows = db.rows.lock().unwrap().clone();
        assert_eq!(rows.len(), LIMITS.retry_buffer, "the buffer's worth kept: {rows:?}");
        assert_eq!(rows, (161..=200).collect::<Vec<_>>(), "the newest kept, in order");
    }
}
