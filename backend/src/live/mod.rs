//! Live state: fast, shared, rebuildable. The database stays the truth; everything here
//! can be dropped and rebuilt from it (see [`rebuild_occupancy`]).
//!
//! Two implementations: [`MemoryLive`] (in process, the embedded default) and
//! [`RedisLive`] (production, shared by every API node).

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;

use crate::store::{Store, StoreError};

mod memory;
pub mod occupancy_mirror;
mod redis;
pub mod roster_cache;

pub use memory::MemoryLive;
pub use redis::RedisLive;

/// A live-state call failed (Redis down, timed out).
#[derive(Debug, Clone, thiserror::Error)]
#[error("live state: {0}")]
pub struct LiveError(pub String);

/// Fast shared state used on hot paths.
#[async_trait]
pub trait LiveState: Send + Sync + 'static {
    /// `memory` or `redis`.
    fn backend(&self) -> &'static str;
    /// A round trip.
    async fn ping(&self) -> Result<(), LiveError>;
    /// Occupied spaces of each point, in the order asked (0 when unknown).
    async fn occupancy(&self, point_ids: &[i64]) -> Result<Vec<i64>, LiveError>;
    /// [`occupancy`](Self::occupancy) for the free spaces of a nearby search: on Redis it may
    /// come from the node's copy, up to a second behind other nodes' writes but never behind
    /// this node's own (see [`occupancy_mirror`]).
    async fn search_occupancy(&self, point_ids: &[i64]) -> Result<Vec<i64>, LiveError> {
        self.occupancy(point_ids).await
    }
    /// Takes one space if fewer than `capacity` are occupied; atomic across nodes.
    async fn try_occupy(&self, point_id: i64, capacity: i64) -> Result<bool, LiveError>;
    /// Gives one space back (never below zero).
    async fn release(&self, point_id: i64) -> Result<(), LiveError>;
    /// Replaces every occupancy counter with `counts` (points not listed become 0), atomically.
    async fn reset_occupancy(&self, counts: &[(i64, i64)]) -> Result<(), LiveError>;
    /// Moves a point's counter by `delta` (never below zero): mirrors a committed change.
    async fn adjust_occupancy(&self, point_id: i64, delta: i64) -> Result<(), LiveError>;

    /// Counts one event against `key` in a fixed window; `false` once more than `limit`
    /// events fell in the current window. Shared by every node on Redis.
    async fn rate_limit(&self, key: &str, limit: u32, window: Duration) -> Result<bool, LiveError>;
    /// Events counted against `key` in its current window (0 when none), without counting one.
    async fn rate_count(&self, key: &str) -> Result<u32, LiveError>;
    /// Stores a one-time code for `subject` (replacing an earlier one).
    async fn put_otp(&self, subject: &str, code: &str, ttl: Duration, attempts: u32) -> Result<(), LiveError>;
    /// Checks a one-time code: a match consumes it; each miss uses an attempt.
    async fn check_otp(&self, subject: &str, code: &str) -> Result<OtpCheck, LiveError>;

    /// Records the plate's active session (replacing any earlier entry).
    async fn set_active_plate(&self, plate: &str, entry: &PlateEntry) -> Result<(), LiveError>;
    /// Mirrors a session just started: its point's counter up by one
    /// ([`adjust_occupancy`](Self::adjust_occupancy)) and its plate's entry
    /// ([`set_active_plate`](Self::set_active_plate)). One round trip on Redis.
    async fn session_opened(&self, plate: &str, entry: &PlateEntry) -> Result<(), LiveError> {
        self.adjust_occupancy(entry.point_id, 1).await?;
        self.set_active_plate(plate, entry).await
    }
    /// Forgets the plate's entry if it still names `session_id` (a newer session stays).
    async fn clear_active_plate(&self, plate: &str, session_id: i64) -> Result<(), LiveError>;
    /// The plate's active session, as last recorded.
    async fn active_plate(&self, plate: &str) -> Result<Option<PlateEntry>, LiveError>;
    /// Replaces the whole plate index (and the point rosters), atomically.
    async fn reset_active_plates(&self, entries: &[(String, PlateEntry)]) -> Result<(), LiveError>;
    /// The plates with an active session at `point_id` (the point's roster, for near-miss
    /// matching), and the plate's entry if it is one of them: the plate check's hot path.
    /// On Redis, one round trip, or none when the node's copy of the roster is current
    /// ([`RosterCache`](roster_cache::RosterCache)).
    async fn plate_lookup(&self, plate: &str, point_id: i64) -> Result<PlateLookup, LiveError>;

    /// One round trip for the [watchdog](watch_forever): the live state's clock and the mark of
    /// the last completed rebuild (none: never rebuilt, or the data was lost since).
    async fn probe(&self) -> Result<Probe, LiveError>;
    /// Marks the live state as rebuilt by a rebuild that started at `started_us` (the live
    /// state's clock, from [`LiveState::probe`]).
    async fn mark_built(&self, started_us: i64) -> Result<(), LiveError>;
    /// Takes the rebuild lock under `token` for `ttl` (one rebuild at a time across nodes);
    /// `false` while someone else holds it.
    async fn lock_rebuild(&self, token: &str, ttl: Duration) -> Result<bool, LiveError>;
    /// Gives the rebuild lock back if `token` still holds it.
    async fn unlock_rebuild(&self, token: &str) -> Result<(), LiveError>;
    /// Whether a write (occupancy, plate index) failed since the last call, which clears it:
    /// the live state may then have missed a committed change.
    fn take_failed_writes(&self) -> bool;
}

/// The answer of [`LiveState::probe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// The live state's clock (Unix microseconds): one clock for every node.
    pub now_us: i64,
    /// When the last completed rebuild started (its clock); `None` if there is none, or the
    /// live state lost its data since (a Redis restarted empty or flushed).
    pub built_at_us: Option<i64>,
}

/// The answer of [`LiveState::plate_lookup`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlateLookup {
    /// The plate's active session at this point, as last recorded (`None` when it has none
    /// here, even if it has one elsewhere).
    pub entry: Option<PlateEntry>,
    /// The point's roster: (plate, entry) of each active session there, by session id.
    pub roster: roster_cache::Roster,
}

/// What the live state knows of a plate's active session (for plate checks on hot paths).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PlateEntry {
    /// Session id.
    pub session_id: i64,
    /// Point id.
    pub point_id: i64,
    /// Point code.
    pub point_code: String,
    /// Paid until (Unix microseconds: exact, like the database).
    pub paid_until_us: i64,
    /// Paid until plus grace (Unix microseconds).
    pub expires_at_us: i64,
}

impl PlateEntry {
    /// The entry of a session.
    pub fn of(s: &crate::store::drivers::SessionRow) -> Self {
        Self {
            session_id: s.id,
            point_id: s.point_id,
            point_code: s.point_code.clone(),
            paid_until_us: s.paid_until.timestamp_micros(),
            expires_at_us: s.expires_at.timestamp_micros(),
        }
    }
}

/// Result of checking a one-time code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtpCheck {
    /// It matched and is now used up.
    Valid,
    /// It did not match; attempts left.
    Wrong(u32),
    /// Too many misses: the code is gone.
    Locked,
    /// No code (never sent, expired or used).
    Missing,
}

/// Live-state keys never carry personal data: phone numbers and the like are hashed.
pub fn opaque_key(subject: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(subject.as_bytes())[..12])
}

/// Mirrors committed session changes in the live state: spaces taken and freed, and the
/// plate index. The database is the truth; if the live state is down the change is logged,
/// and the [watchdog](watch_forever) rebuilds the live state once it answers again.
pub async fn mirror(
    live: &dyn LiveState,
    opened: &[&crate::store::drivers::SessionRow],
    updated: &[&crate::store::drivers::SessionRow],
    closed: &[&crate::store::drivers::SessionRow],
) {
    let mut failures = 0;
    for s in closed {
        failures += usize::from(live.adjust_occupancy(s.point_id, -1).await.is_err());
        failures += usize::from(live.clear_active_plate(s.plate.as_str(), s.id).await.is_err());
    }
    for s in opened {
        failures += usize::from(live.session_opened(s.plate.as_str(), &PlateEntry::of(s)).await.is_err());
    }
    for s in updated {
        failures += usize::from(live.set_active_plate(s.plate.as_str(), &PlateEntry::of(s)).await.is_err());
    }
    if failures > 0 {
        crate::warn_throttled!(failures, "live state not updated; it is rebuilt from the database once it answers");
    }
}

/// Why a rebuild failed.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// Reading the truth failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing the live state failed.
    #[error(transparent)]
    Live(#[from] LiveError),
}

/// What a rebuild wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rebuilt {
    /// Points with a counter.
    pub points: usize,
    /// Active sessions indexed (plate index and rosters).
    pub sessions: usize,
}

/// Rebuilds the occupancy counters from the database: run at start, and whenever the
/// live state was lost (a Redis restart), so losing it loses nothing. Returns the number of
/// points with a counter.
pub async fn rebuild_occupancy(store: &dyn Store, live: &dyn LiveState) -> Result<usize, RebuildError> {
    Ok(rebuild(store, live).await?.points)
}

/// Rebuilds everything the live state mirrors from the database (occupancy counters, plate
/// index, point rosters) and marks it built. Each replacement is atomic and the whole is
/// idempotent, so concurrent rebuilds are safe (just wasted work).
pub async fn rebuild(store: &dyn Store, live: &dyn LiveState) -> Result<Rebuilt, RebuildError> {
    let started_us = live.probe().await?.now_us;
    rebuild_from(store, live, started_us).await
}

/// [`rebuild`], for a rebuild that started (before any read of the database) at `started_us`.
async fn rebuild_from(store: &dyn Store, live: &dyn LiveState, started_us: i64) -> Result<Rebuilt, RebuildError> {
    let counts = store.occupied_by_point().await?;
    live.reset_occupancy(&counts).await?;
    // Only what the live state holds, moved (not copied) into its entries.
    let plates: Vec<(String, PlateEntry)> = store
        .active_plates()
        .await?
        .into_iter()
        .map(|a| {
            let entry = PlateEntry {
                session_id: a.session_id,
                point_id: a.point_id,
                point_code: a.point_code,
                paid_until_us: a.paid_until.timestamp_micros(),
                expires_at_us: a.expires_at.timestamp_micros(),
            };
            (a.plate, entry)
        })
        .collect();
    live.reset_active_plates(&plates).await?;
    live.mark_built(started_us).await?;
    Ok(Rebuilt { points: counts.len(), sessions: plates.len() })
}

/// How long one node may hold the rebuild lock (a node that dies mid-rebuild lets go then;
/// a rebuild taking longer may overlap another one, which is safe).
const REBUILD_LOCK_TTL: Duration = Duration::from_secs(15);

/// What one [`Watchdog::tick`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    /// The live state answered and needs nothing.
    Fine,
    /// The live state did not answer.
    Down,
    /// This node rebuilt it, for `reason` (`returned`, `data_lost`, `writes_failed`).
    Rebuilt(Rebuilt, &'static str),
    /// A rebuild is due but another node holds the lock (or just did it): checked again at
    /// the next tick.
    Deferred,
    /// A rebuild was tried and failed (database or live state down): tried again at the next tick.
    Failed,
}

/// The live-state watchdog of one node: notices that the live state came back after being
/// unreachable (what it holds may be stale: changes made meanwhile were not mirrored), that it
/// lost its data (the rebuild mark is gone: a Redis restarted empty), or that a write to it
/// failed, and then rebuilds it from the database, one node at a time.
pub struct Watchdog {
    store: Arc<dyn Store>,
    live: Arc<dyn LiveState>,
    node: String,
    down: bool,
    /// A rebuild that started (live-state clock) at or after this covers every change this
    /// node may have failed to mirror; `None`: this node missed nothing.
    need_since: Option<i64>,
    reason: &'static str,
}

impl Watchdog {
    /// The watchdog of node `node` (its name in the rebuild lock).
    pub fn new(store: Arc<dyn Store>, live: Arc<dyn LiveState>, node: impl Into<String>) -> Self {
        Self { store, live, node: node.into(), down: false, need_since: None, reason: "returned" }
    }

    /// Probes the live state once, and rebuilds it if it needs it.
    pub async fn tick(&mut self) -> Tick {
        // Taken before the probe: a failure flagged later is seen at the next tick.
        let failed_writes = self.live.take_failed_writes();
        let probe = match self.live.probe().await {
            Ok(p) => p,
            Err(e) => {
                if !self.down {
                    tracing::warn!(error = %e, "live state unavailable; it is rebuilt from the database when it answers again");
                }
                self.down = true;
                return Tick::Down;
            }
        };
        if self.down || failed_writes {
            if self.need_since.is_none() {
                self.reason = if self.down { "returned" } else { "writes_failed" };
            }
            if self.down {
                tracing::info!("live state answers again");
            }
            self.down = false;
            // Every change this node failed to mirror was committed before now.
            self.need_since = Some(self.need_since.map_or(probe.now_us, |t| t.max(probe.now_us)));
        }
        if !self.due(probe) {
            return Tick::Fine;
        }
        let reason = if probe.built_at_us.is_none() { "data_lost" } else { self.reason };
        let token = format!("{}:{}", self.node, probe.now_us);
        match self.live.lock_rebuild(&token, REBUILD_LOCK_TTL).await {
            Ok(true) => {}
            Ok(false) => return Tick::Deferred,
            Err(e) => {
                tracing::warn!(error = %e, "live state rebuild lock not taken; tried again at the next tick");
                return Tick::Failed;
            }
        }
        let started = std::time::Instant::now();
        let result = async {
            // Under the lock, again: another node may have rebuilt it meanwhile.
            let fresh = self.live.probe().await?;
            if !self.due(fresh) {
                return Ok(None);
            }
            rebuild_from(self.store.as_ref(), self.live.as_ref(), fresh.now_us).await.map(Some)
        }
        .await;
        if let Err(e) = self.live.unlock_rebuild(&token).await {
            tracing::warn!(error = %e, "live state rebuild lock not released; it expires by itself");
        }
        match result {
            Ok(Some(rebuilt)) => {
                self.need_since = None;
                metrics::counter!("live_rebuilds_total", "reason" => reason).increment(1);
                tracing::info!(
                    reason,
                    points = rebuilt.points,
                    sessions = rebuilt.sessions,
                    duration_ms = started.elapsed().as_millis() as u64,
                    "live state rebuilt"
                );
                Tick::Rebuilt(rebuilt, reason)
            }
            Ok(None) => {
                self.need_since = None;
                Tick::Deferred
            }
            Err(e) => {
                tracing::warn!(error = %e, "live state rebuild failed; tried again at the next tick");
                Tick::Failed
            }
        }
    }

    /// Whether a rebuild is due: the data is gone, or no rebuild since this node missed changes.
    fn due(&self, p: Probe) -> bool {
        match (p.built_at_us, self.need_since) {
            (None, _) => true,
            (Some(built), Some(since)) => built < since,
            (Some(_), None) => false,
        }
    }
}

/// The live-state watchdog job: every `every`, [`Watchdog::tick`]. Every node runs it.
pub async fn watch_forever(store: Arc<dyn Store>, live: Arc<dyn LiveState>, every: Duration, node: String) {
    let mut watchdog = Watchdog::new(store, live, node);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        watchdog.tick().await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    };

    use super::*;
    use crate::store::SqliteStore;

    /// A live state that can be taken down, lose its data, or report failed writes: the
    /// in-process state behind a switch, as one Redis shared by the nodes of a test.
    #[derive(Default)]
    struct Flaky {
        inner: MemoryLive,
        down: AtomicBool,
        failed_writes: AtomicBool,
        built: Mutex<Option<i64>>,
        rebuilds: std::sync::atomic::AtomicUsize,
    }

    impl Flaky {
        fn check(&self) -> Result<(), LiveError> {
            if self.down.load(Ordering::SeqCst) { Err(LiveError("down".into())) } else { Ok(()) }
        }
        fn lose_data(&self) {
            *self.built.lock().unwrap() = None;
        }
    }

    #[async_trait]
    impl LiveState for Flaky {
        fn backend(&self) -> &'static str {
            "flaky"
        }
        async fn ping(&self) -> Result<(), LiveError> {
            self.check()
        }
        async fn occupancy(&self, point_ids: &[i64]) -> Result<Vec<i64>, LiveError> {
            self.check()?;
            self.inner.occupancy(point_ids).await
        }
        async fn try_occupy(&self, point_id: i64, capacity: i64) -> Result<bool, LiveError> {
            self.check()?;
            self.inner.try_occupy(point_id, capacity).await
        }
        async fn release(&self, point_id: i64) -> Result<(), LiveError> {
            self.check()?;
            self.inner.release(point_id).await
        }
        async fn reset_occupancy(&self, counts: &[(i64, i64)]) -> Result<(), LiveError> {
            self.check()?;
            self.rebuilds.fetch_add(1, Ordering::SeqCst);
            self.inner.reset_occupancy(counts).await
        }
        async fn adjust_occupancy(&self, point_id: i64, delta: i64) -> Result<(), LiveError> {
            self.check()?;
            self.inner.adjust_occupancy(point_id, delta).await
        }
        async fn rate_limit(&self, key: &str, limit: u32, window: Duration) -> Result<bool, LiveError> {
            self.check()?;
            self.inner.rate_limit(key, limit, window).await
        }
        async fn rate_count(&self, key: &str) -> Result<u32, LiveError> {
            self.check()?;
            self.inner.rate_count(key).await
        }
        async fn put_otp(&self, subject: &str, code: &str, ttl: Duration, attempts: u32) -> Result<(), LiveError> {
            self.check()?;
            self.inner.put_otp(subject, code, ttl, attempts).await
        }
        async fn check_otp(&self, subject: &str, code: &str) -> Result<OtpCheck, LiveError> {
            self.check()?;
            self.inner.check_otp(subject, code).await
        }
        async fn set_active_plate(&self, plate: &str, entry: &PlateEntry) -> Result<(), LiveError> {
            self.check()?;
            self.inner.set_active_plate(plate, entry).await
        }
        async fn clear_active_plate(&self, plate: &str, session_id: i64) -> Result<(), LiveError> {
            self.check()?;
            self.inner.clear_active_plate(plate, session_id).await
        }
        async fn active_plate(&self, plate: &str) -> Result<Option<PlateEntry>, LiveError> {
            self.check()?;
            self.inner.active_plate(plate).await
        }
        async fn reset_active_plates(&self, entries: &[(String, PlateEntry)]) -> Result<(), LiveError> {
            self.check()?;
            self.inner.reset_active_plates(entries).await
        }
        async fn plate_lookup(&self, plate: &str, point_id: i64) -> Result<PlateLookup, LiveError> {
            self.check()?;
            self.inner.plate_lookup(plate, point_id).await
        }
        async fn probe(&self) -> Result<Probe, LiveError> {
            self.check()?;
            let now_us = self.inner.probe().await?.now_us;
            Ok(Probe { now_us, built_at_us: *self.built.lock().unwrap() })
        }
        async fn mark_built(&self, started_us: i64) -> Result<(), LiveError> {
            self.check()?;
            *self.built.lock().unwrap() = Some(started_us);
            Ok(())
        }
        async fn lock_rebuild(&self, token: &str, ttl: Duration) -> Result<bool, LiveError> {
            self.check()?;
            self.inner.lock_rebuild(token, ttl).await
        }
        async fn unlock_rebuild(&self, token: &str) -> Result<(), LiveError> {
            self.check()?;
            self.inner.unlock_rebuild(token).await
        }
        fn take_failed_writes(&self) -> bool {
            self.failed_writes.swap(false, Ordering::SeqCst)
        }
    }

    async fn setup() -> (tempfile::TempDir, Arc<dyn Store>, Arc<Flaky>) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in(dir.path()).await.unwrap());
        store.migrate().await.unwrap();
        let live = Arc::new(Flaky::default());
        rebuild(store.as_ref(), live.as_ref()).await.unwrap();
        (dir, store, live)
    }

    fn rebuilt(t: Tick) -> Option<&'static str> {
        match t {
            Tick::Rebuilt(_, reason) => Some(reason),
            _ => None,
        }
    }

    #[tokio::test]
    async fn a_live_state_that_answers_and_kept_its_data_is_left_alone() {
        let (_dir, store, live) = setup().await;
        let mut w = Watchdog::new(store, live.clone(), "a");
        assert_eq!(w.tick().await, Tick::Fine);
        assert_eq!(w.tick().await, Tick::Fine);
        assert_eq!(live.rebuilds.load(Ordering::SeqCst), 1, "only the start's rebuild");
    }

    #[tokio::test]
    async fn coming_back_after_being_down_rebuilds_once() {
        let (_dir, store, live) = setup().await;
        let mut w = Watchdog::new(store, live.clone(), "a");
        live.down.store(true, Ordering::SeqCst);
        assert_eq!(w.tick().await, Tick::Down);
        assert_eq!(w.tick().await, Tick::Down);
        live.down.store(false, Ordering::SeqCst);
        assert_eq!(rebuilt(w.tick().await), Some("returned"), "it kept its data, but may have missed changes");
        assert_eq!(w.tick().await, Tick::Fine);
        // Back empty (a Redis restarted without persistence): the data is lost too.
        live.down.store(true, Ordering::SeqCst);
        assert_eq!(w.tick().await, Tick::Down);
        live.lose_data();
        live.down.store(false, Ordering::SeqCst);
        assert_eq!(rebuilt(w.tick().await), Some("data_lost"));
        assert_eq!(w.tick().await, Tick::Fine);
    }

    #[tokio::test]
    async fn lost_data_and_failed_writes_are_rebuilt() {
        let (_dir, store, live) = setup().await;
        let mut w = Watchdog::new(store, live.clone(), "a");
        live.lose_data();
        assert_eq!(rebuilt(w.tick().await), Some("data_lost"));
        assert!(live.built.lock().unwrap().is_some(), "a rebuild marks it built");
        live.failed_writes.store(true, Ordering::SeqCst);
        assert_eq!(rebuilt(w.tick().await), Some("writes_failed"));
        assert_eq!(w.tick().await, Tick::Fine);
    }

    #[tokio::test]
    async fn one_node_rebuilds_at_a_time_and_a_later_rebuild_covers_the_others() {
        let (_dir, store, live) = setup().await;
        let mut a = Watchdog::new(store.clone(), live.clone(), "a");
        let mut b = Watchdog::new(store.clone(), live.clone(), "b");
        live.down.store(true, Ordering::SeqCst);
        assert_eq!((a.tick().await, b.tick().await), (Tick::Down, Tick::Down));
        live.down.store(false, Ordering::SeqCst);
        live.lose_data();
        // Another node holds the lock: both wait.
        assert!(live.lock_rebuild("c", Duration::from_secs(60)).await.unwrap());
        assert_eq!((a.tick().await, b.tick().await), (Tick::Deferred, Tick::Deferred));
        let before = live.rebuilds.load(Ordering::SeqCst);
        // It rebuilds (after both saw the live state back) and lets go: that covers both.
        rebuild(store.as_ref(), live.as_ref()).await.unwrap();
        live.unlock_rebuild("c").await.unwrap();
        assert_eq!((a.tick().await, b.tick().await), (Tick::Fine, Tick::Fine));
        assert_eq!(live.rebuilds.load(Ordering::SeqCst), before + 1, "nobody rebuilt again");
    }

    #[tokio::test]
    async fn a_failed_rebuild_is_tried_again() {
        let (_dir, store, live) = setup().await;
        let mut w = Watchdog::new(store.clone(), live.clone(), "a");
        live.lose_data();
        // A node whose database cannot be read (never migrated): its rebuild fails, and it
        // gives the lock back.
        let dir = tempfile::tempdir().unwrap();
        let unreadable: Arc<dyn Store> = Arc::new(SqliteStore::open_in(dir.path()).await.unwrap());
        let mut broken = Watchdog::new(unreadable, live.clone(), "b");
        assert_eq!(broken.tick().await, Tick::Failed, "an unmigrated database cannot be read");
        assert_eq!(rebuilt(w.tick().await), Some("data_lost"), "the lock was given back");
    }
}
