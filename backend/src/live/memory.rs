//! In-process live state: the embedded default (one node).

use std::{collections::HashMap, sync::Mutex};

use async_trait::async_trait;

use super::{LiveError, LiveState};

/// Live state in this process's memory.
#[derive(Default)]
pub struct MemoryLive {
    occupancy: Mutex<HashMap<i64, i64>>,
}

impl MemoryLive {
    /// An empty live state.
    pub fn new() -> Self {
        Self::default()
    }

    fn occupancy(&self) -> std::sync::MutexGuard<'_, HashMap<i64, i64>> {
        // A poisoned lock means a panic mid-update of a plain counter map; the map is
        // still consistent (every update is a single insert), so keep serving.
        self.occupancy.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl LiveState for MemoryLive {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn ping(&self) -> Result<(), LiveError> {
        Ok(())
    }

    async fn occupancy(&self, point_ids: &[i64]) -> Result<Vec<i64>, LiveError> {
        let map = self.occupancy();
        Ok(point_ids.iter().map(|id| map.get(id).copied().unwrap_or(0)).collect())
    }

    async fn try_occupy(&self, point_id: i64, capacity: i64) -> Result<bool, LiveError> {
        let mut map = self.occupancy();
        let n = map.entry(point_id).or_insert(0);
        if *n < capacity {
            *n += 1;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    async fn release(&self, point_id: i64) -> Result<(), LiveError> {
        let mut map = self.occupancy();
        if let Some(n) = map.get_mut(&point_id) {
            *n = (*n - 1).max(0);
        }
        Ok(())
    }

    async fn reset_occupancy(&self, counts: &[(i64, i64)]) -> Result<(), LiveError> {
        let mut map = self.occupancy();
        map.clear();
        map.extend(counts.iter().copied());
        Ok(())
    }
}
