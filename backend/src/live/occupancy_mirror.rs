//! A node's copy of the occupancy counters, for the free spaces of nearby searches only.
//!
//! A nearby search lists up to a hundred points with their free spaces. Reading the
//! counters from Redis (`HMGET`) cost a round trip on every search, and the search is the
//! busiest read of the API. The free spaces of a search are a guide: a start takes its space
//! with the atomic check-and-take in Redis, whatever the list said, and a full point answers
//! `409 point_full` with free alternatives read from Redis itself. So while searches come
//! in, each node keeps a copy of the counters and answers searches from it.
//!
//! How the copy follows Redis: every script that changes a counter also logs the change (the
//! change counter up by one, and the point's member of a sorted set scored with it). Every
//! [`POLL_EVERY`] the node asks, in one script, for the points changed since the last change
//! it saw and their counters now ([`POLL`]), so its cost follows the city's changes, not its
//! size. The first look, and any look after a reset of the counters (a rebuild sets a new
//! epoch), reads the whole hash (`HSCAN`, in pages, so Redis never stalls behind it). The
//! node uses the bulk connection, so the hot path never queues behind it.
//!
//! What keeps a search's answer honest:
//! - **Age.** The copy is used only while its last complete look started less than
//!   [`MAX_AGE`] ago. Otherwise (no searches for a while, a Redis that fails or stalls, or
//!   lost its data) the search reads Redis, as without the copy.
//! - **The node's own writes.** A point this node writes (a start, a stop, an extension of
//!   capacity, a warden's cash session) is marked before the write is sent and again when it
//!   is answered. A search that lists a marked point reads Redis. A mark goes only when a
//!   look that started after it completes. So a driver who starts or stops on a node sees it
//!   on that node's next search, at once.
//! - **Resets.** A rebuild's reset of the counters on this node drops the copy; on the other
//!   nodes the new epoch does, at their next look.
//!
//! What it does not promise: another node's writes reach this node's searches within
//! [`POLL_EVERY`] or so (at most [`MAX_AGE`]), not at once. The one-point read
//! (`GET /v1/points/{code}`) and the start's alternatives always read Redis.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, MutexGuard, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use redis::aio::ConnectionManager;

/// How often the node asks Redis for the changes, while searches come in.
pub const POLL_EVERY: Duration = Duration::from_millis(250);
/// A copy whose last complete look started longer ago than this is not used.
pub const MAX_AGE: Duration = Duration::from_secs(1);
/// The copy is kept for this long after the last search; then the node drops it and stops
/// asking.
const WANTED_FOR: Duration = Duration::from_secs(10);
/// The copy is read whole again this often, whatever the change log says: a change that
/// was never logged (by a node of a version before the log, during a rolling upgrade; a
/// change counter restored from an older backup) is wrong in it for this long at most.
const WHOLE_READ_EVERY: Duration = Duration::from_secs(30);
/// Fields per `HSCAN` page of a whole read.
const PAGE: usize = 500;
/// Changes answered per look (more wait for the next ask, at once). Below Lua's limit on
/// `unpack`.
const CHANGES_PER_LOOK: usize = 4_000;

/// The changes since a version, and their counters now: KEYS[1] the counters, KEYS[2] the
/// change set, KEYS[3] the epoch, KEYS[4] the change counter; ARGV[1] the last version
/// seen, ARGV[2] at most this many. Answers the epoch (nil when the counters were lost), the
/// change counter, the changed points with their versions, then their counters.
pub const POLL: &str = r"
local epoch = redis.call('GET', KEYS[3])
local version = tonumber(redis.call('GET', KEYS[4]) or '0')
local ch = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf', 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
local points = {}
for i = 1, #ch, 2 do points[#points + 1] = ch[i] end
local counts = {}
if #points > 0 then counts = redis.call('HMGET', KEYS[1], unpack(points)) end
return {epoch, version, ch, counts}";

/// The keys of the counters and their change log, under a prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    /// The counters: one hash, field = point id.
    pub counts: String,
    /// The change counter.
    pub version: String,
    /// The change set: member = point id, score = the change counter at its last change.
    pub changes: String,
    /// A token set at every reset of the counters.
    pub epoch: String,
}

impl Keys {
    /// The keys under `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            counts: format!("{prefix}occupancy"),
            version: format!("{prefix}occupancy:version"),
            changes: format!("{prefix}occupancy:changes"),
            epoch: format!("{prefix}occupancy:epoch"),
        }
    }
}

/// The copy, its marks and its age.
#[derive(Debug)]
pub struct OccupancyMirror {
    inner: Mutex<Inner>,
    /// Milliseconds since `born` of the last search (0: none yet).
    wanted_ms: AtomicU64,
    born: Instant,
    hits: AtomicU64,
    reads: AtomicU64,
    whole_reads: AtomicU64,
}

#[derive(Debug, Default)]
struct Inner {
    counts: HashMap<i64, i64>,
    /// When the read that made `counts` started; `None`: no usable copy.
    read_at: Option<Instant>,
    /// Counts marks.
    seq: u64,
    /// Points this node wrote, with the mark of the latest write's start or answer.
    marked: HashMap<i64, u64>,
    /// Counts resets: a read that a reset overtook is not used.
    resets: u64,
}

/// Counters of a node's copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MirrorStats {
    /// Searches answered from the copy.
    pub hits: u64,
    /// Complete looks at Redis (whole reads and change polls).
    pub reads: u64,
    /// Whole reads of the hash.
    pub whole_reads: u64,
}

impl Default for OccupancyMirror {
    fn default() -> Self {
        Self::new()
    }
}

impl OccupancyMirror {
    /// An empty copy: searches read Redis until the first complete read.
    pub fn new() -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            wanted_ms: AtomicU64::new(0),
            born: Instant::now(),
            hits: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            whole_reads: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The counters of `ids` from the copy, if it is fresh and none of them is marked; a
    /// search that comes here keeps the copy fresh for a while.
    pub fn get(&self, ids: &[i64]) -> Option<Vec<i64>> {
        self.wanted_ms.store(self.born.elapsed().as_millis() as u64 + 1, Ordering::Relaxed);
        let inner = self.lock();
        if inner.read_at.is_none_or(|t| t.elapsed() >= MAX_AGE) {
            return None;
        }
        if !inner.marked.is_empty() && ids.iter().any(|id| inner.marked.contains_key(id)) {
            return None;
        }
        let out = ids.iter().map(|id| inner.counts.get(id).copied().unwrap_or(0)).collect();
        drop(inner);
        self.hits.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("live_occupancy_copy_hits_total").increment(1);
        Some(out)
    }

    /// Marks the points a write of this node touches: before it is sent, and when it is
    /// answered (or failed).
    pub fn mark(&self, ids: &[i64]) {
        let mut inner = self.lock();
        inner.seq += 1;
        let seq = inner.seq;
        for &id in ids {
            if id != 0 {
                inner.marked.insert(id, seq);
            }
        }
    }

    /// Drops the copy (the counters were replaced, or the copy is no longer wanted), and the
    /// marks with it: a write answered before this, the next whole read covers; one still
    /// in flight marks its point again when answered.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.counts = HashMap::new();
        inner.read_at = None;
        inner.marked = HashMap::new();
        inner.resets += 1;
    }

    /// The counters.
    pub fn stats(&self) -> MirrorStats {
        MirrorStats {
            hits: self.hits.load(Ordering::Relaxed),
            reads: self.reads.load(Ordering::Relaxed),
            whole_reads: self.whole_reads.load(Ordering::Relaxed),
        }
    }

    fn wanted(&self) -> bool {
        let last = self.wanted_ms.load(Ordering::Relaxed);
        last != 0 && (self.born.elapsed().as_millis() as u64).saturating_sub(last) < WANTED_FOR.as_millis() as u64
    }

    /// Where a read starts: its time, the marks it will cover, the resets before it.
    fn read_started(&self) -> ReadStart {
        let inner = self.lock();
        ReadStart { at: Instant::now(), seq: inner.seq, resets: inner.resets }
    }

    /// A complete whole read: it becomes the copy, and the marks it covers go. A read that a
    /// reset overtook is dropped (it may hold counters from both sides of the reset).
    fn read_done(&self, start: ReadStart, counts: HashMap<i64, i64>) -> bool {
        let mut inner = self.lock();
        if inner.resets != start.resets {
            return false;
        }
        inner.marked.retain(|_, s| *s > start.seq);
        inner.counts = counts;
        inner.read_at = Some(start.at);
        drop(inner);
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.whole_reads.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// A page of a poll that started at `start`: its counters replace the copy's. With the
    /// poll's last page (`complete`), the copy is as new as the poll's start and the marks it
    /// covers go; until then, neither. A poll that a reset overtook, or of a copy dropped, is
    /// dropped.
    fn changes_done(&self, start: ReadStart, changes: &[(i64, i64)], complete: bool) -> bool {
        let mut inner = self.lock();
        if inner.resets != start.resets || inner.read_at.is_none() {
            return false;
        }
        inner.counts.extend(changes.iter().copied());
        if complete {
            inner.marked.retain(|_, s| *s > start.seq);
            inner.read_at = Some(start.at);
            drop(inner);
            self.reads.fetch_add(1, Ordering::Relaxed);
        }
        true
    }
}

/// Where a look at Redis started.
#[derive(Debug, Clone, Copy)]
struct ReadStart {
    at: Instant,
    seq: u64,
    resets: u64,
}

/// Where the node's copy stands against Redis's change log.
#[derive(Debug, Default)]
struct Cursor {
    /// The epoch of the counters the copy was read from; `None`: read them whole next.
    epoch: Option<String>,
    /// The last change the copy holds.
    version: i64,
    /// When the copy was last read whole.
    whole_at: Option<Instant>,
}

/// Keeps the copy while searches come in, until it is dropped.
pub async fn refresh_forever(conn: ConnectionManager, keys: Keys, mirror: Weak<OccupancyMirror>) {
    let poll = redis::Script::new(POLL);
    let mut cursor = Cursor::default();
    let mut tick = tokio::time::interval(POLL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(m) = mirror.upgrade() else { return };
        if !m.wanted() {
            if cursor.epoch.take().is_some() {
                m.clear();
            }
            continue;
        }
        let mut c = conn.clone();
        // A failed or stalled look leaves the copy to age out: searches then read Redis.
        if look(&m, &mut c, &keys, &poll, &mut cursor).await.is_err() {
            cursor.epoch = None;
        }
    }
}

/// One look: the whole hash when the copy has no epoch (or was read whole long ago), else
/// the changes since its version, page by page.
async fn look(
    m: &OccupancyMirror,
    c: &mut ConnectionManager,
    keys: &Keys,
    poll: &redis::Script,
    cursor: &mut Cursor,
) -> Result<(), redis::RedisError> {
    if cursor.whole_at.is_none_or(|t| t.elapsed() >= WHOLE_READ_EVERY) {
        cursor.epoch = None;
    }
    let mut start = m.read_started();
    loop {
        if cursor.epoch.is_none() {
            // The epoch and the change counter first: any change after them, the polls see.
            let (epoch, version): (Option<String>, Option<i64>) =
                redis::pipe().get(&keys.epoch).get(&keys.version).query_async(c).await?;
            let Some(epoch) = epoch else {
                // No counters (Redis lost them; the watchdog rebuilds them): no copy.
                m.clear();
                return Ok(());
            };
            let counts = read_all(c, &keys.counts).await?;
            if m.read_done(start, counts) {
                *cursor = Cursor { epoch: Some(epoch), version: version.unwrap_or(0), whole_at: Some(Instant::now()) };
            }
            return Ok(());
        }
        let (epoch, version, changed, counts): (Option<String>, i64, Vec<String>, Vec<Option<i64>>) = poll
            .key(&keys.counts)
            .key(&keys.changes)
            .key(&keys.epoch)
            .key(&keys.version)
            .arg(cursor.version)
            .arg(CHANGES_PER_LOOK)
            .invoke_async(c)
            .await?;
        if epoch != cursor.epoch || version < cursor.version {
            // Reset (a rebuild), lost, or a change counter gone back: read the whole hash.
            m.clear();
            cursor.epoch = None;
            start = m.read_started();
            continue;
        }
        let mut changes = Vec::with_capacity(counts.len());
        for (pair, count) in changed.chunks_exact(2).zip(counts) {
            let point = pair[0].parse::<i64>().map_err(|_| bad_reply("change set member"))?;
            let version = pair[1].parse::<f64>().map_err(|_| bad_reply("change set score"))? as i64;
            cursor.version = cursor.version.max(version);
            changes.push((point, count.unwrap_or(0)));
        }
        let complete = changes.len() < CHANGES_PER_LOOK;
        if !m.changes_done(start, &changes, complete) {
            cursor.epoch = None;
            return Ok(());
        }
        if complete {
            return Ok(());
        }
    }
}

fn bad_reply(what: &str) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::UnexpectedReturnType, "occupancy change log", what.to_owned()))
}

/// Every field of the hash, page by page.
async fn read_all(c: &mut ConnectionManager, key: &str) -> Result<HashMap<i64, i64>, redis::RedisError> {
    let mut out = HashMap::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, pairs): (u64, Vec<(i64, i64)>) =
            redis::cmd("HSCAN").arg(key).arg(cursor).arg("COUNT").arg(PAGE).query_async(c).await?;
        out.extend(pairs);
        if next == 0 {
            return Ok(out);
        }
        cursor = next;
    }
}

/// A shared copy and its refresher.
pub fn spawn(conn: ConnectionManager, keys: Keys) -> Arc<OccupancyMirror> {
    let mirror = Arc::new(OccupancyMirror::new());
    tokio::spawn(refresh_forever(conn, keys, Arc::downgrade(&mirror)));
    mirror
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(m: &OccupancyMirror, counts: &[(i64, i64)]) {
        let start = m.read_started();
        assert!(m.read_done(start, counts.iter().copied().collect()));
    }

    #[test]
    fn an_empty_copy_is_not_used() {
        let m = OccupancyMirror::new();
        assert_eq!(m.get(&[1, 2]), None);
        assert!(m.wanted(), "a search asks for the copy to be kept fresh");
    }

    #[test]
    fn a_fresh_copy_answers_with_zero_for_points_it_does_not_hold() {
        let m = OccupancyMirror::new();
        filled(&m, &[(1, 3), (2, 0)]);
        assert_eq!(m.get(&[2, 1, 9]), Some(vec![0, 3, 0]));
        assert_eq!(m.stats().hits, 1);
    }

    #[test]
    fn a_marked_point_is_read_from_redis_until_a_later_read_covers_it() {
        let m = OccupancyMirror::new();
        filled(&m, &[(1, 3), (2, 1)]);
        m.mark(&[2]);
        assert_eq!(m.get(&[1]), Some(vec![3]), "unmarked points still answer");
        assert_eq!(m.get(&[1, 2]), None);
        // A read that started before the write was answered does not cover it.
        let start = m.read_started();
        m.mark(&[2]);
        assert!(m.read_done(start, [(1, 3), (2, 1)].into_iter().collect()));
        assert_eq!(m.get(&[2]), None);
        // One that started after it does.
        filled(&m, &[(1, 3), (2, 2)]);
        assert_eq!(m.get(&[1, 2]), Some(vec![3, 2]));
    }

    #[test]
    fn a_reset_drops_the_copy_and_a_read_from_before_it_does_not_bring_it_back() {
        let m = OccupancyMirror::new();
        filled(&m, &[(1, 5)]);
        assert_eq!(m.get(&[1]), Some(vec![5]));
        let start = m.read_started();
        m.clear();
        assert_eq!(m.get(&[1]), None);
        assert!(!m.read_done(start, [(1, 5)].into_iter().collect()));
        assert_eq!(m.get(&[1]), None, "a read the reset overtook is not used");
        assert_eq!(m.stats().reads, 1);
        filled(&m, &[(1, 0)]);
        assert_eq!(m.get(&[1]), Some(vec![0]));
    }

    #[test]
    fn a_copy_older_than_its_age_limit_is_not_used() {
        let m = OccupancyMirror::new();
        let mut start = m.read_started();
        start.at -= MAX_AGE;
        assert!(m.read_done(start, [(1, 5)].into_iter().collect()));
        assert_eq!(m.get(&[1]), None);
    }

    #[test]
    fn changes_update_the_copy_and_cover_the_marks_before_them() {
        let m = OccupancyMirror::new();
        let start = m.read_started();
        assert!(!m.changes_done(start, &[(1, 1)], true), "no changes without a whole read first");
        filled(&m, &[(1, 3), (2, 1)]);
        m.mark(&[2]);
        let start = m.read_started();
        m.mark(&[1]);
        assert!(m.changes_done(start, &[(2, 0), (3, 4)], true));
        assert_eq!(m.get(&[2, 3]), Some(vec![0, 4]), "point 2's mark is covered");
        assert_eq!(m.get(&[1]), None, "point 1 was marked after the poll started");
        let start = m.read_started();
        m.clear();
        assert!(!m.changes_done(start, &[(1, 9)], true), "a poll a reset overtook is dropped");
        assert_eq!(m.get(&[2]), None);
        assert_eq!(m.stats(), MirrorStats { hits: 1, reads: 2, whole_reads: 1 });
    }

    #[test]
    fn a_poll_of_many_pages_covers_marks_and_age_only_with_its_last_page() {
        let m = OccupancyMirror::new();
        let mut old = m.read_started();
        old.at -= MAX_AGE;
        assert!(m.read_done(old, [(1, 1), (2, 1)].into_iter().collect()));
        assert_eq!(m.get(&[1]), None, "too old");
        m.mark(&[2]);
        let poll = m.read_started();
        m.mark(&[1]);
        assert!(m.changes_done(poll, &[(2, 5)], false));
        assert_eq!(m.get(&[3]), None, "a page does not make the copy new");
        assert_eq!(m.stats().reads, 1, "a page is not a look");
        assert!(m.changes_done(poll, &[(3, 7)], true));
        assert_eq!(m.get(&[2, 3]), Some(vec![5, 7]), "the last page covers the mark made before the poll");
        assert_eq!(m.get(&[1]), None, "a mark made after the poll started stays");
        assert_eq!(m.stats().reads, 2);
    }
}
