//! A short-lived, per-node cache of who holds a bearer token (staff principals and
//! drivers), by token hash.
//!
//! Every authenticated call (a warden's plate check above all) resolves its bearer token.
//! Without a cache that is a database round trip per call, which on the hot path costs more
//! than the check itself. Entries live `ttl` (default 5 s: `Settings::staff_token_cache`,
//! `Settings::driver_token_cache`):
//! - a token revoked through this node is forgotten here at once;
//! - on other nodes the old answer can be used until its entry expires, so a revocation
//!   takes effect everywhere within `ttl`.
//!
//! Only found principals are cached (an unknown token always asks the database, so random
//! tokens cannot fill the cache), and the cache holds at most [`MAX_ENTRIES`]; when full it
//! is emptied, which only costs a round of lookups.

use std::{
    collections::HashMap,
    sync::RwLock,
    time::{Duration, Instant},
};

/// Most entries kept (each is a few hundred bytes).
pub const MAX_ENTRIES: usize = 10_000;

/// See the module documentation. `T` is what the token resolves to.
#[derive(Debug)]
pub struct TokenCache<T> {
    ttl: Duration,
    entries: RwLock<HashMap<String, Entry<T>>>,
}

#[derive(Debug)]
struct Entry<T> {
    value: T,
    token_id: i64,
    at: Instant,
}

impl<T: Clone> TokenCache<T> {
    /// A cache whose entries live `ttl` (zero: no caching).
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, entries: RwLock::new(HashMap::new()) }
    }

    /// The cached holder of `token_hash`, if fresh.
    pub fn get(&self, token_hash: &str) -> Option<T> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.get(token_hash).filter(|e| e.at.elapsed() < self.ttl).map(|e| e.value.clone())
    }

    /// Remembers the holder of token row `token_id`, found in the database.
    pub fn put(&self, token_hash: &str, token_id: i64, value: &T) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(token_hash) {
            entries.clear();
        }
        entries.insert(token_hash.to_owned(), Entry { value: value.clone(), token_id, at: Instant::now() });
    }

    /// Forgets the entry of a token row (revoked through this node).
    pub fn forget_token(&self, token_id: i64) {
        let mut entries = self.entries.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.retain(|_, e| e.token_id != token_id);
    }

    /// Forgets every entry whose holder matches (all of one holder's tokens revoked).
    pub fn forget_where(&self, revoked: impl Fn(&T) -> bool) {
        let mut entries = self.entries.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.retain(|_, e| !revoked(&e.value));
    }
}

#[cfg(test)]
mod tests {
    use iparking_mobile_api::StaffRole;

    use super::*;
    use crate::store::Principal;

    fn principal(token_id: i64) -> Principal {
        Principal {
            staff_id: 7,
            name: "W".into(),
            role: StaffRole::Warden,
            district_codes: vec!["HK".into()],
            street_ids: vec![],
            token_id,
        }
    }

    #[test]
    fn entries_expire_and_are_forgotten() {
        let c = TokenCache::new(Duration::from_millis(50));
        c.put("a", 1, &principal(1));
        c.put("b", 2, &principal(2));
        assert_eq!(c.get("a").map(|p| p.token_id), Some(1));
        c.forget_token(1);
        assert!(c.get("a").is_none(), "revoked through this node: gone at once");
        assert_eq!(c.get("b").map(|p| p.token_id), Some(2));
        std::thread::sleep(Duration::from_millis(60));
        assert!(c.get("b").is_none(), "expired");
        c.put("b", 2, &principal(2));
        assert!(c.get("b").is_some(), "cached again after a fresh lookup");
    }

    #[test]
    fn all_tokens_of_one_holder_are_forgotten_together() {
        let c = TokenCache::new(Duration::from_secs(60));
        c.put("a", 1, &principal(1));
        c.put("b", 2, &principal(2));
        c.put("c", 3, &principal(3));
        c.forget_where(|p| p.token_id != 2);
        assert!(c.get("a").is_none() && c.get("c").is_none());
        assert_eq!(c.get("b").map(|p| p.token_id), Some(2), "the other holder's entry stays");
    }

    #[test]
    fn zero_ttl_caches_nothing_and_size_is_bounded() {
        let off = TokenCache::new(Duration::ZERO);
        off.put("a", 1, &principal(1));
        assert!(off.get("a").is_none());
        let c = TokenCache::new(Duration::from_secs(60));
        for i in 0..MAX_ENTRIES as i64 + 5 {
            c.put(&format!("t{i}"), i, &principal(i));
        }
        assert!(c.entries.read().unwrap().len() <= MAX_ENTRIES);
        assert!(c.get(&format!("t{}", MAX_ENTRIES as i64 + 4)).is_some(), "the newest entry is kept");
    }
}
