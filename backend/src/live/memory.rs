//! In-process live state: the embedded default (one node).

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use async_trait::async_trait;

use super::{LiveError, LiveState, OtpCheck, PlateEntry, PlateLookup, Probe, opaque_key};

/// Live state in this process's memory.
#[derive(Default)]
pub struct MemoryLive {
    occupancy: Mutex<HashMap<i64, i64>>,
    /// key -> (window end, count)
    rates: Mutex<HashMap<String, (Instant, u32)>>,
    /// subject -> (code, expires, attempts left)
    otps: Mutex<HashMap<String, (String, Instant, u32)>>,
    plates: Mutex<Plates>,
    /// When the last completed rebuild started (Unix microseconds).
    built_at_us: Mutex<Option<i64>>,
    /// The rebuild lock: (token, held until).
    rebuild_lock: Mutex<Option<(String, Instant)>>,
}

/// The plate index and the point rosters, under one lock so they never disagree.
#[derive(Default)]
struct Plates {
    by_plate: HashMap<String, PlateEntry>,
    /// point id -> session id -> (plate, entry)
    rosters: HashMap<i64, HashMap<i64, (String, PlateEntry)>>,
}

impl Plates {
    fn unlist(&mut self, e: &PlateEntry) {
        if let Some(r) = self.rosters.get_mut(&e.point_id) {
            r.remove(&e.session_id);
            if r.is_empty() {
                self.rosters.remove(&e.point_id);
            }
        }
    }

    fn insert(&mut self, plate: &str, entry: &PlateEntry) {
        if let Some(old) = self.by_plate.insert(plate.to_owned(), entry.clone()) {
            self.unlist(&old);
        }
        self.rosters.entry(entry.point_id).or_default().insert(entry.session_id, (plate.to_owned(), entry.clone()));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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

    async fn adjust_occupancy(&self, point_id: i64, delta: i64) -> Result<(), LiveError> {
        let mut map = self.occupancy();
        let n = map.entry(point_id).or_insert(0);
        *n = (*n + delta).max(0);
        Ok(())
    }

    async fn rate_limit(&self, key: &str, limit: u32, window: Duration) -> Result<bool, LiveError> {
        let now = Instant::now();
        let mut rates = lock(&self.rates);
        rates.retain(|_, (end, _)| *end > now);
        let (_, count) = rates.entry(key.to_owned()).or_insert((now + window, 0));
        *count += 1;
        Ok(*count <= limit)
    }

    async fn rate_count(&self, key: &str) -> Result<u32, LiveError> {
        let now = Instant::now();
        Ok(lock(&self.rates).get(key).filter(|(end, _)| *end > now).map_or(0, |(_, n)| *n))
    }

    async fn put_otp(&self, subject: &str, code: &str, ttl: Duration, attempts: u32) -> Result<(), LiveError> {
        lock(&self.otps).insert(opaque_key(subject), (code.to_owned(), Instant::now() + ttl, attempts));
        Ok(())
    }

    async fn check_otp(&self, subject: &str, code: &str) -> Result<OtpCheck, LiveError> {
        let key = opaque_key(subject);
        let mut otps = lock(&self.otps);
        let Some((stored, expires, left)) = otps.get_mut(&key) else { return Ok(OtpCheck::Missing) };
        if *expires <= Instant::now() {
            otps.remove(&key);
            return Ok(OtpCheck::Missing);
        }
        if stored == code {
            otps.remove(&key);
            return Ok(OtpCheck::Valid);
        }
        *left = left.saturating_sub(1);
        if *left == 0 {
            otps.remove(&key);
            return Ok(OtpCheck::Locked);
        }
        Ok(OtpCheck::Wrong(*left))
    }

    async fn set_active_plate(&self, plate: &str, entry: &PlateEntry) -> Result<(), LiveError> {
        lock(&self.plates).insert(plate, entry);
        Ok(())
    }

    async fn clear_active_plate(&self, plate: &str, session_id: i64) -> Result<(), LiveError> {
        let mut plates = lock(&self.plates);
        if plates.by_plate.get(plate).is_some_and(|e| e.session_id == session_id)
            && let Some(old) = plates.by_plate.remove(plate)
        {
            plates.unlist(&old);
        }
        Ok(())
    }

    async fn active_plate(&self, plate: &str) -> Result<Option<PlateEntry>, LiveError> {
        Ok(lock(&self.plates).by_plate.get(plate).cloned())
    }

    async fn reset_active_plates(&self, entries: &[(String, PlateEntry)]) -> Result<(), LiveError> {
        let mut plates = lock(&self.plates);
        *plates = Plates::default();
        for (plate, e) in entries {
            plates.insert(plate, e);
        }
        Ok(())
    }

    async fn plate_lookup(&self, plate: &str, point_id: i64) -> Result<PlateLookup, LiveError> {
        let plates = lock(&self.plates);
        let mut roster: Vec<(String, PlateEntry)> =
            plates.rosters.get(&point_id).map(|r| r.values().cloned().collect()).unwrap_or_default();
        roster.sort_by_key(|(_, e)| e.session_id);
        let entry = plates.by_plate.get(plate).filter(|e| e.point_id == point_id).cloned();
        Ok(PlateLookup { entry, roster: roster.into() })
    }

    async fn probe(&self) -> Result<Probe, LiveError> {
        let now_us = chrono::Utc::now().timestamp_micros();
        Ok(Probe { now_us, built_at_us: *lock(&self.built_at_us) })
    }

    async fn mark_built(&self, started_us: i64) -> Result<(), LiveError> {
        *lock(&self.built_at_us) = Some(started_us);
        Ok(())
    }

    async fn lock_rebuild(&self, token: &str, ttl: Duration) -> Result<bool, LiveError> {
        let now = Instant::now();
        let mut held = lock(&self.rebuild_lock);
        if held.as_ref().is_some_and(|(_, until)| *until > now) {
            return Ok(false);
        }
        *held = Some((token.to_owned(), now + ttl));
        Ok(true)
    }

    async fn unlock_rebuild(&self, token: &str) -> Result<(), LiveError> {
        let mut held = lock(&self.rebuild_lock);
        if held.as_ref().is_some_and(|(t, _)| t == token) {
            *held = None;
        }
        Ok(())
    }

    /// Writes to process memory cannot fail.
    fn take_failed_writes(&self) -> bool {
        false
    }
}
