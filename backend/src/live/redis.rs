//! Redis live state: production, shared by every API node.
//!
//! Keys live under a prefix (default `ipk:`) so several deployments or test runs can share
//! one Redis. Occupancy is one hash, `{prefix}occupancy`, field = point id; the
//! check-and-take of a space is a Lua script, so it is atomic across nodes.
//!
//! Calls fail fast when Redis is down or stalls (half a second to connect, half a second
//! for an answer): the hot paths then answer from the database or without live data. The
//! rebuilds' large atomic replacements go over a second connection with a longer answer
//! timeout, so they neither time out on a large city nor queue the hot path behind them.
//!
//! Each node also keeps two copies: the rosters its plate checks read (`roster_cache`, kept
//! true by Redis's invalidations) and the occupancy counters for its nearby searches
//! (`occupancy_mirror`, which asks Redis for the counters changed since its last look, every
//! 0.25 s while searches come in).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use redis::{Script, aio::ConnectionManager};

use super::{
    LiveError, LiveState, OtpCheck, PlateEntry, PlateLookup, Probe, occupancy_mirror,
    occupancy_mirror::{MirrorStats, OccupancyMirror},
    opaque_key,
    roster_cache::{CacheStats, Cached, Roster, RosterCache, track_forever},
};

/// Connecting (or reconnecting) gives up after this long: a Redis that is down costs a call
/// this much at most, never seconds.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// A hot-path call gives up after this long without an answer (a stalled Redis, a network
/// partition): Redis answers these in well under a millisecond.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);
/// The rebuilds' atomic replacements of the whole occupancy hash and plate index.
const BULK_RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts to connect at start before the node refuses to start.
const START_ATTEMPTS: u32 = 3;

const UNLOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0";

// Every change of a counter is also logged for the nodes' copies (`occupancy_mirror`): the
// change counter `{prefix}occupancy:version` goes up, and the point's member of the sorted set
// `{prefix}occupancy:changes` takes the counter's new value as its score (one member a point,
// so the set never outgrows the city). A node asks for the points changed since the last
// value it saw, so its cost follows the changes, not the city's size.
// In the scripts below, KEYS[1] (or KEYS[2]) is the counters, the next two keys the change
// counter and the change set.
const TRY_OCCUPY: &str = r"
local n = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if n < tonumber(ARGV[2]) then
  redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
  redis.call('ZADD', KEYS[3], redis.call('INCR', KEYS[2]), ARGV[1])
  return 1
end
return 0";

const RELEASE: &str = r"
local n = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if n > 0 then
  redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
  redis.call('ZADD', KEYS[3], redis.call('INCR', KEYS[2]), ARGV[1])
end
return 0";

const ADJUST: &str = r"
local n = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') + tonumber(ARGV[2])
if n < 0 then n = 0 end
redis.call('HSET', KEYS[1], ARGV[1], n)
redis.call('ZADD', KEYS[3], redis.call('INCR', KEYS[2]), ARGV[1])
return n";

const RATE: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n";

const CHECK_OTP: &str = r"
local code = redis.call('HGET', KEYS[1], 'code')
if not code then return -2 end
if code == ARGV[1] then redis.call('DEL', KEYS[1]) return -1 end
local left = redis.call('HINCRBY', KEYS[1], 'attempts', -1)
if left <= 0 then redis.call('DEL', KEYS[1]) return 0 end
return left";

// The plate index (one hash, field = opaque plate key) and the point rosters (a hash per
// point, `{prefix}roster:{point}`, field = session id, value = `plate|entry json`) change
// together in one script, so they never disagree. (The roster keys are derived inside the
// scripts: fine on one Redis; a Redis Cluster needs a hash tag in the prefix.) The scripts
// answer the other point whose roster they changed (0 for none), so the node drops its copy
// of it at once (see `roster_cache`).
/// SET_PLATE's body (KEYS[1] the plate index, ARGV[1] the opaque plate, ARGV[2] the entry,
/// ARGV[3] the prefix, ARGV[4] the plate), shared with OPEN_SESSION; `moved` is the point
/// the plate's earlier entry left.
macro_rules! set_plate_lua {
    () => {
        r"
local moved = 0
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  local o = cjson.decode(old)
  moved = o.point_id
  redis.call('HDEL', ARGV[3] .. 'roster:' .. o.point_id, o.session_id)
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local e = cjson.decode(ARGV[2])
redis.call('HSET', ARGV[3] .. 'roster:' .. e.point_id, e.session_id, ARGV[4] .. '|' .. ARGV[2])
"
    };
}

const SET_PLATE: &str = concat!(set_plate_lua!(), "return moved");

// A session started: its plate's entry (as SET_PLATE) and its point's counter up by one (as
// ADJUST; KEYS[2] the occupancy hash, KEYS[3] and KEYS[4] its change log, ARGV[5] the
// point), in one script and one round trip.
const OPEN_SESSION: &str = concat!(
    set_plate_lua!(),
    r"
local n = tonumber(redis.call('HGET', KEYS[2], ARGV[5]) or '0') + 1
redis.call('HSET', KEYS[2], ARGV[5], n)
redis.call('ZADD', KEYS[4], redis.call('INCR', KEYS[3]), ARGV[5])
return moved"
);

const CLEAR_PLATE: &str = r"
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v then
  local o = cjson.decode(v)
  if o.session_id == tonumber(ARGV[2]) then
    redis.call('HDEL', KEYS[1], ARGV[1])
    redis.call('HDEL', ARGV[3] .. 'roster:' .. o.point_id, o.session_id)
    return o.point_id
  end
end
return 0";

/// A rebuild stages this many sessions of the plate index and rosters a round trip.
const STAGE_PAGE: usize = 2_000;
/// A staged key lives this long unless swapped in (a rebuild that died half-way).
const STAGE_TTL_SECS: i64 = 600;

// A rebuild's swap: the old index and rosters go, the staged ones take their place.
// KEYS[1] the plate index; ARGV[1] the prefix, ARGV[2] the stage's prefix, ARGV[3] 1 if an
// index was staged, ARGV[4] n, ARGV[5..5+n) the staged points, the rest the rosters there
// were. A script that fails part-way is not rolled back, so every staged key is checked
// first (one that expired or was evicted fails the swap, and the old state stays whole).
const SWAP_PLATES: &str = r"
local n = tonumber(ARGV[4])
if ARGV[3] == '1' and redis.call('EXISTS', ARGV[2] .. 'plates') == 0 then
  return redis.error_reply('IPKSTAGE the staged plate index is gone')
end
for i = 5, 4 + n do
  if redis.call('EXISTS', ARGV[2] .. 'roster:' .. ARGV[i]) == 0 then
    return redis.error_reply('IPKSTAGE a staged roster is gone')
  end
end
redis.call('UNLINK', KEYS[1])
for i = 5 + n, #ARGV do redis.call('UNLINK', ARGV[1] .. 'roster:' .. ARGV[i]) end
if ARGV[3] == '1' then
  redis.call('RENAME', ARGV[2] .. 'plates', KEYS[1])
  redis.call('PERSIST', KEYS[1])
end
for i = 5, 4 + n do
  local to = ARGV[1] .. 'roster:' .. ARGV[i]
  redis.call('RENAME', ARGV[2] .. 'roster:' .. ARGV[i], to)
  redis.call('PERSIST', to)
end
return n";

/// Live state in Redis.
#[derive(Clone)]
pub struct RedisLive {
    conn: ConnectionManager,
    /// For the rebuilds' large replacements (longer answer timeout).
    bulk: ConnectionManager,
    /// Set when a write of the mirrored state failed (see [`LiveState::take_failed_writes`]).
    failed_writes: Arc<AtomicBool>,
    prefix: String,
    occupancy_key: String,
    /// The counters' change log: the change counter and the change set (see TRY_OCCUPY).
    version_key: String,
    changes_key: String,
    /// Set at each reset of the counters: a node's copy from before it is dropped.
    epoch_key: String,
    try_occupy: Script,
    release: Script,
    adjust: Script,
    rate: Script,
    check_otp: Script,
    clear_plate: Script,
    set_plate: Script,
    open_session: Script,
    swap_plates: Script,
    unlock: Script,
    plates_key: String,
    /// The rebuild mark: when the last completed rebuild started. Gone = the data was lost.
    built_key: String,
    /// The rebuild lock (one rebuild at a time across nodes).
    lock_key: String,
    /// This node's copy of the point rosters, kept true by Redis.
    rosters: Arc<RosterCache>,
    /// This node's copy of the occupancy counters, for nearby searches.
    mirror: Arc<OccupancyMirror>,
}

fn err(e: redis::RedisError) -> LiveError {
    LiveError(e.to_string())
}

impl RedisLive {
    /// Connects to `redis://…`; every key starts with `prefix`.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, LiveError> {
        let client = redis::Client::open(url).map_err(err)?;
        // No retries inside a reconnection: the next call (or the watchdog's next probe)
        // tries again, so a call never waits for more than one attempt.
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(0);
        let conn = connect_with_retries(&client, config.clone()).await?;
        let bulk = connect_with_retries(&client, config.set_response_timeout(Some(BULK_RESPONSE_TIMEOUT))).await?;
        // The roster copy listens on a connection of its own, in RESP3 (invalidations arrive
        // as push messages on it).
        let info = redis::IntoConnectionInfo::into_connection_info(url).map_err(err)?;
        let resp3 = info.redis_settings().clone().set_protocol(redis::ProtocolVersion::RESP3);
        let tracking = redis::Client::open(info.set_redis_settings(resp3)).map_err(err)?;
        let rosters = Arc::new(RosterCache::new(prefix));
        tokio::spawn(track_forever(tracking, Arc::downgrade(&rosters), CONNECT_TIMEOUT));
        let keys = occupancy_mirror::Keys::new(prefix);
        let mirror = occupancy_mirror::spawn(bulk.clone(), keys.clone());
        Ok(Self {
            conn,
            bulk,
            failed_writes: Arc::new(AtomicBool::new(false)),
            prefix: prefix.to_owned(),
            occupancy_key: keys.counts,
            version_key: keys.version,
            changes_key: keys.changes,
            epoch_key: keys.epoch,
            try_occupy: Script::new(TRY_OCCUPY),
            release: Script::new(RELEASE),
            adjust: Script::new(ADJUST),
            rate: Script::new(RATE),
            check_otp: Script::new(CHECK_OTP),
            clear_plate: Script::new(CLEAR_PLATE),
            set_plate: Script::new(SET_PLATE),
            open_session: Script::new(OPEN_SESSION),
            swap_plates: Script::new(SWAP_PLATES),
            unlock: Script::new(UNLOCK),
            plates_key: format!("{prefix}plates"),
            built_key: format!("{prefix}live:built"),
            lock_key: format!("{prefix}live:rebuild-lock"),
            rosters,
            mirror,
        })
    }

    /// Adds the keys every script that changes a counter takes, in this order: the counters,
    /// then their change log (see TRY_OCCUPY).
    fn counter_keys<'a, 'b>(&self, call: &'b mut redis::ScriptInvocation<'a>) -> &'b mut redis::ScriptInvocation<'a> {
        call.key(&self.occupancy_key).key(&self.version_key).key(&self.changes_key)
    }

    /// A call of a script whose first keys are the counter keys (`counter_keys`).
    fn counter_call<'a>(&self, script: &'a Script) -> redis::ScriptInvocation<'a> {
        let mut call = script.prepare_invoke();
        self.counter_keys(&mut call);
        call
    }

    /// The counters of this node's occupancy copy.
    pub fn occupancy_mirror_stats(&self) -> MirrorStats {
        self.mirror.stats()
    }

    /// The counters of this node's roster copy.
    pub fn roster_cache_stats(&self) -> CacheStats {
        self.rosters.stats()
    }

    /// A point's roster, read from Redis and decoded.
    async fn read_roster(&self, point_id: i64) -> Result<Roster, LiveError> {
        let mut c = self.conn.clone();
        // The roster's values only (each holds its plate and session): half the reply of
        // HGETALL, and no map to build.
        let lines: Vec<String> = redis::cmd("HVALS")
            .arg(format!("{}roster:{point_id}", self.prefix))
            .query_async(&mut c)
            .await
            .map_err(err)?;
        let mut out = Vec::with_capacity(lines.len());
        for v in lines {
            let (plate, json) = v.split_once('|').ok_or_else(|| LiveError("corrupt roster entry".into()))?;
            let entry = serde_json::from_str::<PlateEntry>(json).map_err(|e| LiveError(e.to_string()))?;
            out.push((plate.to_owned(), entry));
        }
        out.sort_by_key(|(_, e)| e.session_id);
        Ok(out.into())
    }

    /// A failed write of a roster: it may have been applied (an answer that timed out), and
    /// which rosters it touched is not known, so the node's whole copy goes.
    fn roster_write_failed(&self, e: redis::RedisError) -> LiveError {
        self.rosters.written_all();
        self.write_failed(e)
    }

    /// A failed write of the mirrored state: remembered for the watchdog.
    fn write_failed(&self, e: redis::RedisError) -> LiveError {
        self.failed_writes.store(true, Ordering::Relaxed);
        err(e)
    }

    /// The bulk connection, checked: it is idle between rebuilds, so after a Redis restart
    /// its first call finds the old connection dropped; that call is tried once more, on
    /// the new connection.
    async fn bulk(&self) -> Result<ConnectionManager, LiveError> {
        let mut c = self.bulk.clone();
        let ping = redis::cmd("PING");
        let first: Result<String, _> = ping.query_async(&mut c).await;
        match first {
            Ok(_) => Ok(c),
            Err(e) if e.is_unrecoverable_error() => {
                let _: String = ping.query_async(&mut c).await.map_err(err)?;
                Ok(c)
            }
            Err(e) => Err(err(e)),
        }
    }
}

/// The first connection, at start: a few attempts, then the node refuses to start.
async fn connect_with_retries(
    client: &redis::Client,
    config: redis::aio::ConnectionManagerConfig,
) -> Result<ConnectionManager, LiveError> {
    let mut attempt = 1;
    loop {
        match ConnectionManager::new_with_config(client.clone(), config.clone()).await {
            Ok(c) => return Ok(c),
            Err(e) if attempt >= START_ATTEMPTS => return Err(err(e)),
            Err(_) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

#[async_trait]
impl LiveState for RedisLive {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn ping(&self) -> Result<(), LiveError> {
        let mut c = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut c).await.map_err(err)?;
        Ok(())
    }

    async fn occupancy(&self, point_ids: &[i64]) -> Result<Vec<i64>, LiveError> {
        if point_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.conn.clone();
        let vals: Vec<Option<i64>> =
            redis::cmd("HMGET").arg(&self.occupancy_key).arg(point_ids).query_async(&mut c).await.map_err(err)?;
        Ok(vals.into_iter().map(|v| v.unwrap_or(0)).collect())
    }

    async fn search_occupancy(&self, point_ids: &[i64]) -> Result<Vec<i64>, LiveError> {
        match self.mirror.get(point_ids) {
            Some(counts) => Ok(counts),
            None => self.occupancy(point_ids).await,
        }
    }

    async fn try_occupy(&self, point_id: i64, capacity: i64) -> Result<bool, LiveError> {
        let mut c = self.conn.clone();
        self.mirror.mark(&[point_id]);
        let took: Result<i64, _> =
            self.counter_call(&self.try_occupy).arg(point_id).arg(capacity).invoke_async(&mut c).await;
        self.mirror.mark(&[point_id]);
        Ok(took.map_err(|e| self.write_failed(e))? == 1)
    }

    async fn release(&self, point_id: i64) -> Result<(), LiveError> {
        let mut c = self.conn.clone();
        self.mirror.mark(&[point_id]);
        let done: Result<i64, _> = self.counter_call(&self.release).arg(point_id).invoke_async(&mut c).await;
        self.mirror.mark(&[point_id]);
        done.map_err(|e| self.write_failed(e))?;
        Ok(())
    }

    async fn reset_occupancy(&self, counts: &[(i64, i64)]) -> Result<(), LiveError> {
        let mut c = self.bulk().await?;
        let mut pipe = redis::pipe();
        pipe.atomic().del(&self.occupancy_key).ignore().del(&self.changes_key).ignore();
        for chunk in counts.chunks(1000) {
            pipe.hset_multiple(&self.occupancy_key, chunk).ignore();
        }
        // A new epoch: every node's copy starts over from the new counters.
        pipe.incr(&self.version_key, 1)
            .ignore()
            .set(&self.epoch_key, format!("{:016x}", rand::random::<u64>()))
            .ignore();
        self.mirror.clear();
        let done: Result<(), _> = pipe.query_async(&mut c).await;
        // Cleared again once answered: a read of the copy that straddled the replacement is
        // dropped.
        self.mirror.clear();
        done.map_err(err)
    }

    async fn adjust_occupancy(&self, point_id: i64, delta: i64) -> Result<(), LiveError> {
        let mut c = self.conn.clone();
        self.mirror.mark(&[point_id]);
        let done: Result<i64, _> = self.counter_call(&self.adjust).arg(point_id).arg(delta).invoke_async(&mut c).await;
        self.mirror.mark(&[point_id]);
        done.map_err(|e| self.write_failed(e))?;
        Ok(())
    }

    async fn rate_limit(&self, key: &str, limit: u32, window: Duration) -> Result<bool, LiveError> {
        let mut c = self.conn.clone();
        let n: i64 = self
            .rate
            .key(format!("{}rate:{}", self.prefix, opaque_key(key)))
            .arg(window.as_millis() as u64)
            .invoke_async(&mut c)
            .await
            .map_err(err)?;
        Ok(n <= i64::from(limit))
    }

    async fn rate_count(&self, key: &str) -> Result<u32, LiveError> {
        let mut c = self.conn.clone();
        let n: Option<u32> = redis::cmd("GET")
            .arg(format!("{}rate:{}", self.prefix, opaque_key(key)))
            .query_async(&mut c)
            .await
            .map_err(err)?;
        Ok(n.unwrap_or(0))
    }

    async fn put_otp(&self, subject: &str, code: &str, ttl: Duration, attempts: u32) -> Result<(), LiveError> {
        let mut c = self.conn.clone();
        let key = format!("{}otp:{}", self.prefix, opaque_key(subject));
        let mut pipe = redis::pipe();
        pipe.atomic()
            .del(&key)
            .ignore()
            .hset_multiple(&key, &[("code", code.to_owned()), ("attempts", attempts.to_string())])
            .ignore()
            .pexpire(&key, ttl.as_millis() as i64)
            .ignore();
        let () = pipe.query_async(&mut c).await.map_err(err)?;
        Ok(())
    }

    async fn check_otp(&self, subject: &str, code: &str) -> Result<OtpCheck, LiveError> {
        let mut c = self.conn.clone();
        let key = format!("{}otp:{}", self.prefix, opaque_key(subject));
        let n: i64 = self.check_otp.key(key).arg(code).invoke_async(&mut c).await.map_err(err)?;
        Ok(match n {
            -1 => OtpCheck::Valid,
            -2 => OtpCheck::Missing,
            0 => OtpCheck::Locked,
            left => OtpCheck::Wrong(u32::try_from(left).unwrap_or(0)),
        })
    }

    // Plates are personal data: the index is keyed by an opaque hash of the plate.
    async fn set_active_plate(&self, plate: &str, entry: &PlateEntry) -> Result<(), LiveError> {
        let mut c = self.conn.clone();
        let json = serde_json::to_string(entry).map_err(|e| LiveError(e.to_string()))?;
        self.rosters.before_write();
        let moved: i64 = self
            .set_plate
            .key(&self.plates_key)
            .arg(opaque_key(plate))
            .arg(json)
            .arg(&self.prefix)
            .arg(plate)
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.roster_write_failed(e))?;
        self.rosters.written(&[entry.point_id, moved]);
        Ok(())
    }

    async fn session_opened(&self, plate: &str, entry: &PlateEntry) -> Result<(), LiveError> {
        let mut c = self.conn.clone();
        let json = serde_json::to_string(entry).map_err(|e| LiveError(e.to_string()))?;
        self.rosters.before_write();
        self.mirror.mark(&[entry.point_id]);
        let mut call = self.open_session.key(&self.plates_key);
        let moved: Result<i64, _> = self
            .counter_keys(&mut call)
            .arg(opaque_key(plate))
            .arg(json)
            .arg(&self.prefix)
            .arg(plate)
            .arg(entry.point_id)
            .invoke_async(&mut c)
            .await;
        self.mirror.mark(&[entry.point_id]);
        let moved = moved.map_err(|e| self.roster_write_failed(e))?;
        self.rosters.written(&[entry.point_id, moved]);
        Ok(())
    }

    async fn clear_active_plate(&self, plate: &str, session_id: i64) -> Result<(), LiveError> {
        let mut c = self.conn.clone();
        self.rosters.before_write();
        let cleared: i64 = self
            .clear_plate
            .key(&self.plates_key)
            .arg(opaque_key(plate))
            .arg(session_id)
            .arg(&self.prefix)
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.roster_write_failed(e))?;
        self.rosters.written(&[cleared]);
        Ok(())
    }

    async fn active_plate(&self, plate: &str) -> Result<Option<PlateEntry>, LiveError> {
        let mut c = self.conn.clone();
        let v: Option<String> =
            redis::cmd("HGET").arg(&self.plates_key).arg(opaque_key(plate)).query_async(&mut c).await.map_err(err)?;
        v.map(|v| serde_json::from_str(&v).map_err(|e| LiveError(e.to_string()))).transpose()
    }

    // Staged, then swapped: the new index and rosters are written page by page under keys of
    // this rebuild's own (with a TTL, so a node that dies half-way leaves nothing behind),
    // then one script replaces the old with them. The replacement stays atomic, and the node
    // never holds more than a page of commands (a rebuild's peak was the node's memory peak).
    async fn reset_active_plates(&self, entries: &[(String, PlateEntry)]) -> Result<(), LiveError> {
        let mut c = self.bulk().await?;
        // The rosters there are now (SCAN, not KEYS: it never blocks the server).
        let roster_prefix = format!("{}roster:", self.prefix);
        let pattern = format!("{roster_prefix}*");
        let mut stale: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut c)
                .await
                .map_err(err)?;
            stale.extend(keys.into_iter().filter_map(|k| k.strip_prefix(&roster_prefix).map(str::to_owned)));
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let stage = format!("{}rebuild:{:016x}:", self.prefix, rand::random::<u64>());
        let staged_plates = format!("{stage}plates");
        // The entries by point, so each page writes each roster once.
        let mut order: Vec<usize> = (0..entries.len()).collect();
        order.sort_unstable_by_key(|&i| (entries[i].1.point_id, entries[i].1.session_id));
        let mut points: Vec<i64> = Vec::new();
        for page in order.chunks(STAGE_PAGE) {
            let jsons: Vec<String> = page
                .iter()
                .map(|&i| serde_json::to_string(&entries[i].1))
                .collect::<Result<_, _>>()
                .map_err(|e| LiveError(e.to_string()))?;
            let mut pipe = redis::pipe();
            let fields: Vec<(String, &str)> =
                page.iter().zip(&jsons).map(|(&i, j)| (opaque_key(&entries[i].0), j.as_str())).collect();
            pipe.hset_multiple(&staged_plates, &fields).ignore().expire(&staged_plates, STAGE_TTL_SECS).ignore();
            drop(fields);
            let mut at = 0;
            for run in page.chunk_by(|&a, &b| entries[a].1.point_id == entries[b].1.point_id) {
                let point = entries[run[0]].1.point_id;
                let members: Vec<(i64, String)> = run
                    .iter()
                    .zip(&jsons[at..])
                    .map(|(&i, j)| (entries[i].1.session_id, format!("{}|{j}", entries[i].0)))
                    .collect();
                at += run.len();
                let key = format!("{stage}roster:{point}");
                pipe.hset_multiple(&key, &members).ignore().expire(&key, STAGE_TTL_SECS).ignore();
                if points.last() != Some(&point) {
                    points.push(point);
                }
            }
            let () = pipe.query_async(&mut c).await.map_err(err)?;
        }
        let mut swap = self.swap_plates.key(&self.plates_key);
        swap.arg(&self.prefix)
            .arg(&stage)
            .arg(i64::from(!entries.is_empty()))
            .arg(points.len())
            .arg(&points)
            .arg(&stale);
        self.rosters.before_write();
        let done: Result<i64, _> = swap.invoke_async(&mut c).await;
        self.rosters.written_all();
        done.map_err(err)?;
        Ok(())
    }

    // The plate's entry comes from the roster: a plate with a session here is in it. (The
    // plate index would tell of a session elsewhere too, but a check confirms every such
    // verdict against the database anyway.)
    async fn plate_lookup(&self, plate: &str, point_id: i64) -> Result<PlateLookup, LiveError> {
        let roster = match self.rosters.get(point_id) {
            Cached::Roster(r) => r,
            how => {
                let r = self.read_roster(point_id).await?;
                if let Cached::Read(epoch) = how {
                    self.rosters.keep(point_id, epoch, r.clone());
                }
                r
            }
        };
        let entry = roster.iter().find(|(p, _)| p == plate).map(|(_, e)| e.clone());
        Ok(PlateLookup { entry, roster })
    }

    async fn probe(&self) -> Result<Probe, LiveError> {
        let mut c = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.cmd("TIME").get(&self.built_key);
        let first: Result<((i64, i64), Option<i64>), _> = pipe.query_async(&mut c).await;
        let ((secs, micros), built) = match first {
            Ok(answer) => answer,
            // The connection was dropped (a Redis restart): the manager reconnects; ask again
            // so the watchdog sees a Redis that is back at once.
            Err(e) if e.is_unrecoverable_error() => pipe.query_async(&mut c).await.map_err(err)?,
            Err(e) => return Err(err(e)),
        };
        Ok(Probe { now_us: secs * 1_000_000 + micros, built_at_us: built })
    }

    async fn mark_built(&self, started_us: i64) -> Result<(), LiveError> {
        let mut c = self.conn.clone();
        let () = redis::cmd("SET").arg(&self.built_key).arg(started_us).query_async(&mut c).await.map_err(err)?;
        Ok(())
    }

    async fn lock_rebuild(&self, token: &str, ttl: Duration) -> Result<bool, LiveError> {
        let mut c = self.conn.clone();
        let taken: Option<String> = redis::cmd("SET")
            .arg(&self.lock_key)
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async(&mut c)
            .await
            .map_err(err)?;
        Ok(taken.is_some())
    }

    async fn unlock_rebuild(&self, token: &str) -> Result<(), LiveError> {
        let mut c = self.conn.clone();
        let _: i64 = self.unlock.key(&self.lock_key).arg(token).invoke_async(&mut c).await.map_err(err)?;
        Ok(())
    }

    fn take_failed_writes(&self) -> bool {
        self.failed_writes.swap(false, Ordering::Relaxed)
    }
}
