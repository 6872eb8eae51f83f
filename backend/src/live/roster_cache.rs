//! A node's copy of the point rosters its plate checks read, kept true by Redis.
//!
//! A plate check needs one thing from the live state: the roster of the point (the plates
//! parked there with their paid time). Reading it from Redis costs a round trip, and
//! decoding every line of it, on every check. Rosters change far less often than they are
//! read (a start, an extension or a stop changes one; wardens check the same street again
//! and again), so each node keeps the rosters it has read, decoded, and Redis tells it when
//! one changes: server-assisted client-side caching in broadcast mode
//! (`CLIENT TRACKING ON BCAST PREFIX {prefix}roster:`), on a connection of its own that only
//! listens ([`track_forever`]).
//!
//! What keeps a copy true:
//! - Redis sends the key of every roster written, by any node, before it answers the write.
//!   The node drops that roster.
//! - The node's own writes drop the rosters they touch as soon as Redis answers (and a
//!   write that failed, which may still have been applied, drops the whole copy). So a
//!   node never answers from a roster older than its own last write.
//! - A roster read from Redis is kept only if no invalidation came while it was read (an
//!   epoch counts them): a read that raced a write is used for that check and not kept.
//! - While the listening connection is down, or not yet tracking, nothing is kept and
//!   every check reads Redis, as without the copy. When it comes back the copy starts
//!   empty, because invalidations may have been missed in between. A closed connection
//!   stops the copy at once; one that dies silently (a partition, a frozen Redis) stops it
//!   at the next failed ping, within about 0.75 s.
//!
//! What it does not promise: another node's write reaches this node's copy as fast as the
//! invalidation crosses the network (well under a millisecond on one site), not at the
//! instant of the write; and for up to 0.75 s when the connection dies silently. A check
//! trusts the live state only for "valid" and "grace"; every verdict that may lead to a fine
//! is confirmed against the database. So in that window a check can still answer "valid"
//! or "grace" for a session just stopped or extended, or miss a plate just parked from its
//! near misses; it never fines a car that has paid.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, MutexGuard, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use redis::{PushInfo, PushKind, Value};

use super::PlateEntry;

/// A point's roster, decoded: (plate, entry) of each active session there, by session id.
pub type Roster = Arc<[(String, PlateEntry)]>;

/// Rosters kept before the copy starts over (a whole city's points, with room).
const MAX_ROSTERS: usize = 200_000;
/// The listening connection is pinged this often; a ping that fails (or takes longer than
/// the connect timeout) stops the copy. So a connection that dies silently (a partition, a
/// frozen Redis) stops it within about 0.75 s; one that is closed stops it at once.
const PING_EVERY: Duration = Duration::from_millis(250);

/// The rosters a node has read, while Redis tracks them for it.
#[derive(Debug)]
pub struct RosterCache {
    /// `{prefix}roster:`: the keys Redis reports, and the prefix tracked.
    key_prefix: String,
    inner: Mutex<Inner>,
    hits: AtomicU64,
    kept: AtomicU64,
    /// Times Redis started tracking for this node.
    sessions: AtomicU64,
}

#[derive(Debug, Default)]
struct Inner {
    /// Redis is tracking the rosters for this node: copies may be kept and used.
    tracking: bool,
    /// Counts invalidations (and starts and stops of tracking).
    epoch: u64,
    rosters: HashMap<i64, Roster>,
}

/// What the copy has for a point.
#[derive(Debug)]
pub enum Cached {
    /// The roster, as Redis has it.
    Roster(Roster),
    /// Not kept: read Redis, then [`RosterCache::keep`] it with this epoch.
    Read(u64),
    /// Not tracking: read Redis, keep nothing.
    Off,
}

/// Counters of the copy, for tests and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Whether Redis tracks the rosters for this node now.
    pub tracking: bool,
    /// Checks answered from the copy.
    pub hits: u64,
    /// Rosters read from Redis and kept.
    pub kept: u64,
    /// Times Redis started tracking for this node (once per tracking connection).
    pub sessions: u64,
}

impl RosterCache {
    /// An empty copy, not tracking yet, of the rosters under `{prefix}roster:`.
    pub fn new(prefix: &str) -> Self {
        Self {
            key_prefix: format!("{prefix}roster:"),
            inner: Mutex::new(Inner::default()),
            hits: AtomicU64::new(0),
            kept: AtomicU64::new(0),
            sessions: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The key prefix Redis tracks.
    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    /// The copy of a point's roster, or how to read it.
    pub fn get(&self, point_id: i64) -> Cached {
        let cached = {
            let inner = self.lock();
            if !inner.tracking {
                return Cached::Off;
            }
            match inner.rosters.get(&point_id) {
                Some(r) => Cached::Roster(r.clone()),
                None => Cached::Read(inner.epoch),
            }
        };
        if matches!(cached, Cached::Roster(_)) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("live_roster_cache_hits_total").increment(1);
        }
        cached
    }

    /// Keeps a roster read from Redis, unless an invalidation came since `epoch` was given.
    pub fn keep(&self, point_id: i64, epoch: u64, roster: Roster) {
        let mut inner = self.lock();
        if !inner.tracking || inner.epoch != epoch {
            return;
        }
        if inner.rosters.len() >= MAX_ROSTERS {
            inner.rosters.clear();
        }
        inner.rosters.insert(point_id, roster);
        self.kept.fetch_add(1, Ordering::Relaxed);
    }

    /// Before this node writes rosters: a read already under way is not kept.
    pub fn before_write(&self) {
        self.lock().epoch += 1;
    }

    /// After this node wrote the rosters of `points` (0 = none): their copies go.
    pub fn written(&self, points: &[i64]) {
        let mut inner = self.lock();
        inner.epoch += 1;
        for p in points {
            inner.rosters.remove(p);
        }
    }

    /// After this node replaced every roster (a rebuild): the whole copy goes.
    pub fn written_all(&self) {
        let mut inner = self.lock();
        inner.epoch += 1;
        inner.rosters.clear();
    }

    /// Redis started or stopped tracking for this node: either way the copy starts over.
    /// Tracking starts only on a connection still `alive` (checked under the lock, so a
    /// connection lost just after it asked Redis to track never turns the copy on).
    fn set_tracking(&self, on: bool, alive: &AtomicBool) {
        let mut inner = self.lock();
        let on = on && alive.load(Ordering::SeqCst);
        if inner.tracking != on {
            tracing::info!(tracking = on, "live roster copy {}", if on { "on" } else { "off" });
        }
        if on {
            self.sessions.fetch_add(1, Ordering::Relaxed);
        }
        inner.tracking = on;
        inner.epoch += 1;
        inner.rosters.clear();
    }

    /// The tracking connection is gone: the copy stops.
    fn lost(&self, alive: &AtomicBool) {
        alive.store(false, Ordering::SeqCst);
        self.set_tracking(false, alive);
    }

    /// A message from Redis on the listening connection (`alive` is that connection's).
    fn on_push(&self, push: &PushInfo, alive: &AtomicBool) {
        match push.kind {
            PushKind::Invalidate => match push.data.first() {
                Some(Value::Array(keys)) => {
                    let mut inner = self.lock();
                    inner.epoch += 1;
                    for k in keys {
                        let id = match k {
                            Value::BulkString(b) => std::str::from_utf8(b).ok(),
                            Value::SimpleString(s) => Some(s.as_str()),
                            _ => None,
                        }
                        .and_then(|k| k.strip_prefix(self.key_prefix.as_str()))
                        .and_then(|id| id.parse::<i64>().ok());
                        match id {
                            Some(id) => {
                                inner.rosters.remove(&id);
                            }
                            // Not a roster key we know how to read: drop everything.
                            None => inner.rosters.clear(),
                        }
                    }
                }
                // A flush of the whole database (FLUSHALL, FLUSHDB), or a shape we do not
                // know: nothing kept can be trusted.
                _ => self.written_all(),
            },
            PushKind::Disconnection => self.lost(alive),
            _ => {}
        }
    }

    /// The copy's counters.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            tracking: self.lock().tracking,
            hits: self.hits.load(Ordering::Relaxed),
            kept: self.kept.load(Ordering::Relaxed),
            sessions: self.sessions.load(Ordering::Relaxed),
        }
    }
}

/// Keeps a listening connection to Redis with tracking on for `cache`, for as long as the
/// cache lives: connects, asks Redis to track the roster keys, turns the copy on, pings;
/// when the connection fails, turns the copy off and connects again.
pub async fn track_forever(client: redis::Client, cache: Weak<RosterCache>, connect_timeout: Duration) {
    let mut backoff = Duration::from_millis(100);
    let mut warned = false;
    loop {
        let Some(c) = cache.upgrade() else { return };
        let pushes = cache.clone();
        let alive = Arc::new(AtomicBool::new(true));
        let alive_in_pushes = alive.clone();
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(connect_timeout))
            .set_push_sender(move |push: PushInfo| {
                if let Some(c) = pushes.upgrade() {
                    c.on_push(&push, &alive_in_pushes);
                }
                Ok::<(), std::convert::Infallible>(())
            });
        let tracked = async {
            let mut conn = client.get_multiplexed_async_connection_with_config(&config).await?;
            // Named, so an operator (or a test) can tell it in CLIENT LIST.
            let () = redis::cmd("CLIENT")
                .arg("SETNAME")
                .arg(format!("{}copy", c.key_prefix()))
                .query_async(&mut conn)
                .await?;
            let () = redis::cmd("CLIENT")
                .arg("TRACKING")
                .arg("ON")
                .arg("BCAST")
                .arg("PREFIX")
                .arg(c.key_prefix())
                .query_async(&mut conn)
                .await?;
            Ok::<_, redis::RedisError>(conn)
        };
        match tracked.await {
            Ok(mut conn) => {
                c.set_tracking(true, &alive);
                backoff = Duration::from_millis(100);
                warned = false;
                drop(c);
                loop {
                    tokio::time::sleep(PING_EVERY).await;
                    let Some(c) = cache.upgrade() else { return };
                    let pong: Result<String, _> = redis::cmd("PING").query_async(&mut conn).await;
                    if pong.is_err() || !alive.load(Ordering::SeqCst) {
                        c.lost(&alive);
                        break;
                    }
                }
            }
            Err(e) => {
                c.lost(&alive);
                // Once per outage at warn (a Redis before 6, or one that refuses CLIENT
                // TRACKING, leaves the copy off: every check then reads Redis).
                if warned {
                    tracing::debug!(error = %e, "live roster copy: no tracking connection");
                } else {
                    tracing::warn!(error = %e, "live roster copy off: no tracking connection; checks read Redis");
                    warned = true;
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roster(plate: &str, id: i64) -> Roster {
        let e =
            PlateEntry { session_id: id, point_id: 7, point_code: "HK007".into(), paid_until_us: 1, expires_at_us: 2 };
        Arc::from(vec![(plate.to_owned(), e)])
    }

    fn invalidate(keys: &[&str]) -> PushInfo {
        PushInfo {
            kind: PushKind::Invalidate,
            data: vec![Value::Array(keys.iter().map(|k| Value::BulkString(k.as_bytes().to_vec())).collect())],
        }
    }

    impl RosterCache {
        fn push(&self, message: &PushInfo) {
            self.on_push(message, &AtomicBool::new(true));
        }
    }

    fn epoch(c: &RosterCache, point: i64) -> u64 {
        match c.get(point) {
            Cached::Read(e) => e,
            other => panic!("expected a read, got {other:?}"),
        }
    }

    #[test]
    fn nothing_is_kept_or_used_without_tracking() {
        let c = RosterCache::new("ipk:");
        assert!(matches!(c.get(7), Cached::Off));
        c.keep(7, 0, roster("30A12345", 1));
        assert!(matches!(c.get(7), Cached::Off));
        c.set_tracking(true, &AtomicBool::new(true));
        assert!(matches!(c.get(7), Cached::Read(_)), "kept before tracking began");
    }

    #[test]
    fn a_roster_is_kept_until_redis_or_this_node_changes_it() {
        let c = RosterCache::new("ipk:");
        c.set_tracking(true, &AtomicBool::new(true));
        let e = epoch(&c, 7);
        c.keep(7, e, roster("30A12345", 1));
        assert!(matches!(c.get(7), Cached::Roster(r) if r[0].0 == "30A12345"));
        // Another point's change leaves it; its own key drops it.
        c.push(&invalidate(&["ipk:roster:8"]));
        assert!(matches!(c.get(7), Cached::Roster(_)));
        c.push(&invalidate(&["ipk:roster:9", "ipk:roster:7"]));
        assert!(matches!(c.get(7), Cached::Read(_)));
        // This node's own write drops it too.
        let e = epoch(&c, 7);
        c.keep(7, e, roster("30A12345", 1));
        c.written(&[7]);
        assert!(matches!(c.get(7), Cached::Read(_)));
        assert_eq!(c.stats(), CacheStats { tracking: true, hits: 2, kept: 2, sessions: 1 });
    }

    #[test]
    fn a_read_that_raced_a_change_is_not_kept() {
        let c = RosterCache::new("ipk:");
        c.set_tracking(true, &AtomicBool::new(true));
        let e = epoch(&c, 7);
        c.push(&invalidate(&["ipk:roster:7"]));
        c.keep(7, e, roster("30A12345", 1));
        assert!(matches!(c.get(7), Cached::Read(_)), "an invalidation came during the read");
        let e = epoch(&c, 7);
        c.before_write();
        c.keep(7, e, roster("30A12345", 1));
        assert!(matches!(c.get(7), Cached::Read(_)), "this node began a write during the read");
    }

    #[test]
    fn a_flush_a_strange_key_or_a_lost_connection_drop_everything() {
        let c = RosterCache::new("ipk:");
        c.set_tracking(true, &AtomicBool::new(true));
        let fill = |p: i64| {
            let e = epoch(&c, p);
            c.keep(p, e, roster("30A12345", p));
        };
        fill(7);
        fill(8);
        c.push(&PushInfo { kind: PushKind::Invalidate, data: vec![Value::Nil] });
        assert!(matches!(c.get(7), Cached::Read(_)) && matches!(c.get(8), Cached::Read(_)));
        fill(7);
        c.push(&invalidate(&["ipk:roster:x"]));
        assert!(matches!(c.get(7), Cached::Read(_)));
        fill(7);
        c.push(&PushInfo { kind: PushKind::Disconnection, data: vec![] });
        assert!(matches!(c.get(7), Cached::Off));
        assert!(!c.stats().tracking);
    }

    #[test]
    fn a_connection_lost_before_tracking_began_never_turns_the_copy_on() {
        let c = RosterCache::new("ipk:");
        let alive = AtomicBool::new(true);
        c.on_push(&PushInfo { kind: PushKind::Disconnection, data: vec![] }, &alive);
        c.set_tracking(true, &alive);
        assert!(matches!(c.get(7), Cached::Off));
        assert_eq!(c.stats().sessions, 0);
    }
}
