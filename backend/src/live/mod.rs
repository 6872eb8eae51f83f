//! Live state: fast, shared, rebuildable. The database stays the truth; everything here
//! can be dropped and rebuilt from it (see [`rebuild_occupancy`]).
//!
//! Two implementations: [`MemoryLive`] (in process, the embedded default) and
//! [`RedisLive`] (production, shared by every API node).

use std::time::Duration;

use async_trait::async_trait;

use crate::store::{Store, StoreError};

mod memory;
mod redis;

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
    /// Forgets the plate's entry if it still names `session_id` (a newer session stays).
    async fn clear_active_plate(&self, plate: &str, session_id: i64) -> Result<(), LiveError>;
    /// The plate's active session, as last recorded.
    async fn active_plate(&self, plate: &str) -> Result<Option<PlateEntry>, LiveError>;
    /// Replaces the whole plate index (and the point rosters), atomically.
    async fn reset_active_plates(&self, entries: &[(String, PlateEntry)]) -> Result<(), LiveError>;
    /// The plate's entry and the plates with an active session at `point_id` (the point's
    /// roster, for near-miss matching), in one round trip: the plate check's hot path.
    async fn plate_lookup(&self, plate: &str, point_id: i64) -> Result<PlateLookup, LiveError>;
}

/// The answer of [`LiveState::plate_lookup`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlateLookup {
    /// The plate's active session, as last recorded.
    pub entry: Option<PlateEntry>,
    /// The point's roster: (plate, entry) of each active session there.
    pub roster: Vec<(String, PlateEntry)>,
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
/// plate index. The database is the truth; if the live state is down the change is logged
/// and the next start's rebuild repairs it.
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
        failures += usize::from(live.adjust_occupancy(s.point_id, 1).await.is_err());
    }
    for s in opened.iter().chain(updated) {
        failures += usize::from(live.set_active_plate(s.plate.as_str(), &PlateEntry::of(s)).await.is_err());
    }
    if failures > 0 {
        tracing::warn!(failures, "live state not updated; it is rebuilt from the database at the next start");
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

/// Rebuilds the occupancy counters from the database: run at start, and whenever the
/// live state was lost (a Redis restart), so losing it loses nothing.
pub async fn rebuild_occupancy(store: &dyn Store, live: &dyn LiveState) -> Result<usize, RebuildError> {
    let counts = store.occupied_by_point().await?;
    live.reset_occupancy(&counts).await?;
    let active = store.active_sessions().await?;
    let plates: Vec<(String, PlateEntry)> =
        active.iter().map(|s| (s.plate.as_str().to_owned(), PlateEntry::of(s))).collect();
    live.reset_active_plates(&plates).await?;
    Ok(counts.len())
}
