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
    /// Stores a one-time code for `subject` (replacing an earlier one).
    async fn put_otp(&self, subject: &str, code: &str, ttl: Duration, attempts: u32) -> Result<(), LiveError>;
    /// Checks a one-time code: a match consumes it; each miss uses an attempt.
    async fn check_otp(&self, subject: &str, code: &str) -> Result<OtpCheck, LiveError>;
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
    Ok(counts.len())
}
