//! The live state's plate → active session index and occupancy follow every session change
//! and are rebuilt from the database (SQLite + in-process, PostgreSQL + Redis).

use chrono::Duration;
use iparking::live::{LiveState, PlateEntry, RedisLive};
use iparking_mobile_api::{ExtendSession, StartSession, VehicleClass};
use iparking_tests::{Live, TestApp, live_state, matrix, redis_url};

fn start(point: &str, plate: &str) -> StartSession {
    StartSession {
        point_code: point.into(),
        plate: plate.into(),
        vehicle_class: Some(VehicleClass::Car),
        minutes: None,
        turns: Some(2),
        payment: None,
        card_id: None,
        lat: None,
        lon: None,
    }
}

async fn occupied(t: &TestApp, point: &str) -> i64 {
    let id = t.app.store.point(point).await.unwrap().unwrap().id;
    t.app.live.occupancy(&[id]).await.unwrap()[0]
}

matrix!(plate_index_follows_sessions, |t| {
    let d = t.funded_driver("0912111222", 1_000_000).await;
    assert_eq!(t.app.live.active_plate("30A12345").await.unwrap(), None);
    let s = d.start_session(&start("HK008", "30A-123.45"), "p-1").await.unwrap();
    let e = t.app.live.active_plate("30A12345").await.unwrap().expect("indexed at start");
    assert_eq!(
        (e.session_id, e.point_code.as_str(), e.paid_until_us),
        (s.id, "HK008", s.paid_until.timestamp_micros())
    );
    assert_eq!(occupied(&t, "HK008").await, 1);
    // Extension moves the paid time in the index.
    let x = d
        .extend_session(s.id, &ExtendSession { minutes: None, turns: Some(1), ..Default::default() }, "p-2")
        .await
        .unwrap();
    assert_eq!(
        t.app.live.active_plate("30A12345").await.unwrap().unwrap().paid_until_us,
        x.paid_until.timestamp_micros()
    );
    // A plate correction moves the entry to the right plate.
    d.correct_plate(s.id, "30A-123.46").await.unwrap();
    assert_eq!(t.app.live.active_plate("30A12345").await.unwrap(), None);
    assert_eq!(t.app.live.active_plate("30A12346").await.unwrap().unwrap().session_id, s.id);
    // Stop clears it and frees the space.
    d.stop_session(s.id, "p-3").await.unwrap();
    assert_eq!(t.app.live.active_plate("30A12346").await.unwrap(), None);
    assert_eq!(occupied(&t, "HK008").await, 0);
    // Expiry (by the job) clears it too.
    let s2 = d.start_session(&start("HK009", "51F-123.45"), "p-4").await.unwrap();
    assert!(t.app.live.active_plate("51F12345").await.unwrap().is_some());
    t.clock.advance(Duration::hours(2) + Duration::minutes(11));
    let mut gone = false;
    for _ in 0..40 {
        if t.app.live.active_plate("51F12345").await.unwrap().is_none() {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(gone, "expired session {} still indexed", s2.id);
    assert_eq!(occupied(&t, "HK009").await, 0);
    t.assert_ledger_sound().await;
});

matrix!(lost_live_state_is_rebuilt_from_the_database, |t| {
    let d = t.funded_driver("0912333444", 1_000_000).await;
    let a = d.start_session(&start("HK010", "29H1-234.56"), "r-1").await.unwrap();
    d.start_session(&start("HK010", "30E-1234"), "r-2").await.unwrap();
    let ended = d.start_session(&start("HK011", "30A-999.99"), "r-3").await.unwrap();
    d.stop_session(ended.id, "r-4").await.unwrap();
    // Lose everything in the live state (a Redis flush, a restart of the in-process state).
    t.app.live.reset_occupancy(&[]).await.unwrap();
    t.app.live.reset_active_plates(&[]).await.unwrap();
    assert_eq!(occupied(&t, "HK010").await, 0);
    iparking::live::rebuild_occupancy(t.app.store.as_ref(), t.app.live.as_ref()).await.unwrap();
    assert_eq!(occupied(&t, "HK010").await, 2);
    assert_eq!(occupied(&t, "HK011").await, 0);
    let e = t.app.live.active_plate("29H123456").await.unwrap().unwrap();
    assert_eq!((e.session_id, e.point_code.as_str()), (a.id, "HK010"));
    assert_eq!((e.paid_until_us, e.expires_at_us), (a.paid_until.timestamp_micros(), a.expires_at.timestamp_micros()));
    let hk010 = t.app.store.point("HK010").await.unwrap().unwrap().id;
    let roster = t.app.live.plate_lookup("29H123456", hk010).await.unwrap().roster;
    assert_eq!(roster.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(), ["29H123456", "30E1234"]);
    assert!(t.app.live.active_plate("30E1234").await.unwrap().is_some());
    assert_eq!(t.app.live.active_plate("30A99999").await.unwrap(), None, "stopped sessions are not rebuilt");
});

/// Conformance of the plate index on both live states.
async fn check_plate_index(live: &dyn LiveState) {
    let e = |id: i64| PlateEntry {
        session_id: id,
        point_id: 7,
        point_code: "HK007".into(),
        paid_until_us: 100,
        expires_at_us: 700,
    };
    assert_eq!(live.active_plate("30A12345").await.unwrap(), None);
    live.set_active_plate("30A12345", &e(1)).await.unwrap();
    assert_eq!(live.active_plate("30A12345").await.unwrap(), Some(e(1)));
    // Clearing an older session leaves a newer entry alone.
    live.set_active_plate("30A12345", &e(2)).await.unwrap();
    live.clear_active_plate("30A12345", 1).await.unwrap();
    assert_eq!(live.active_plate("30A12345").await.unwrap(), Some(e(2)));
    live.clear_active_plate("30A12345", 2).await.unwrap();
    assert_eq!(live.active_plate("30A12345").await.unwrap(), None);
    live.set_active_plate("51F12345", &e(3)).await.unwrap();
    live.reset_active_plates(&[("29H123456".into(), e(4))]).await.unwrap();
    assert_eq!(live.active_plate("51F12345").await.unwrap(), None, "reset replaces everything");
    assert_eq!(live.active_plate("29H123456").await.unwrap(), Some(e(4)));

    // A session opened: its point's counter up by one, its plate's entry, its roster line;
    // the plate's earlier session leaves the roster of its point.
    let at = |id: i64, point_id: i64| PlateEntry { point_id, point_code: format!("HK{point_id:03}"), ..e(id) };
    live.reset_occupancy(&[(7, 2)]).await.unwrap();
    live.session_opened("30A55555", &at(5, 7)).await.unwrap();
    assert_eq!(live.occupancy(&[7, 8]).await.unwrap(), [3, 0]);
    assert_eq!(live.active_plate("30A55555").await.unwrap(), Some(at(5, 7)));
    let seen = live.plate_lookup("30A55555", 7).await.unwrap();
    assert_eq!(seen.entry, Some(at(5, 7)));
    assert!(seen.roster.contains(&("30A55555".to_owned(), at(5, 7))), "{:?}", seen.roster);
    live.session_opened("30A55555", &at(6, 8)).await.unwrap();
    assert_eq!(live.occupancy(&[7, 8]).await.unwrap(), [3, 1]);
    // The lookup at the point it left: not in the roster, and no entry (it is elsewhere).
    let left = live.plate_lookup("30A55555", 7).await.unwrap();
    assert!(!left.roster.iter().any(|(p, _)| p == "30A55555"), "{:?}", left.roster);
    assert_eq!(left.entry, None);
    let here = live.plate_lookup("30A55555", 8).await.unwrap();
    assert_eq!(&*here.roster, [("30A55555".to_owned(), at(6, 8))]);
    assert_eq!(here.entry, Some(at(6, 8)));
    // Read, then written by this node, then read again: the second read sees the write.
    live.set_active_plate("30A55555", &at(7, 8)).await.unwrap();
    assert_eq!(live.plate_lookup("30A55555", 8).await.unwrap().entry, Some(at(7, 8)));
    live.clear_active_plate("30A55555", 7).await.unwrap();
    assert!(live.plate_lookup("30A55555", 8).await.unwrap().roster.is_empty());
    live.session_opened("30A55555", &at(8, 8)).await.unwrap();
    assert_eq!(live.plate_lookup("30A55555", 8).await.unwrap().entry, Some(at(8, 8)));
    live.reset_active_plates(&[]).await.unwrap();
    assert_eq!(live.plate_lookup("30A55555", 8).await.unwrap(), Default::default());
}

/// Polls `what` every 10 ms for up to 3 s.
async fn within_3s<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("not within 3 s: {what}");
}

/// Two nodes on one Redis: each keeps a copy of the rosters it reads, answers repeated reads
/// from it, and drops it when any node writes that roster; a node whose tracking connection
/// is cut stops its copy, and starts over when the connection is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roster_copies_follow_every_nodes_writes_redis() {
    let prefix = format!("t:{:016x}:", rand::random::<u64>());
    let a = RedisLive::connect(&redis_url(), &prefix).await.unwrap();
    let b = RedisLive::connect(&redis_url(), &prefix).await.unwrap();
    within_3s("both nodes track", || async { a.roster_cache_stats().tracking && b.roster_cache_stats().tracking })
        .await;
    let e = |id: i64, point_id: i64| PlateEntry {
        session_id: id,
        point_id,
        point_code: format!("HK{point_id:03}"),
        paid_until_us: 100,
        expires_at_us: 700,
    };
    let on = |live: &RedisLive, point: i64| {
        let live = live.clone();
        async move { live.plate_lookup("30A12345", point).await.unwrap() }
    };

    // B reads point 7 twice: the second answer comes from its copy.
    let first = b.roster_cache_stats();
    assert!(on(&b, 7).await.roster.is_empty());
    let before = b.roster_cache_stats();
    assert_eq!(before.kept, first.kept + 1, "the first read is kept");
    assert!(on(&b, 7).await.roster.is_empty());
    let after = b.roster_cache_stats();
    assert_eq!((after.hits, after.kept), (before.hits + 1, before.kept), "{before:?} → {after:?}");

    // A starts a session there: B's copy goes, and B reads the new roster.
    a.session_opened("30A12345", &e(1, 7)).await.unwrap();
    within_3s("B sees A's start", || async { on(&b, 7).await.entry == Some(e(1, 7)) }).await;
    // A moves the plate to point 8 (a correction, a new session): both rosters change on B.
    assert_eq!(on(&b, 8).await.entry, None);
    a.set_active_plate("30A12345", &e(2, 8)).await.unwrap();
    within_3s("B sees the plate leave point 7", || async { on(&b, 7).await.roster.is_empty() }).await;
    within_3s("B sees the plate at point 8", || async { on(&b, 8).await.entry == Some(e(2, 8)) }).await;
    // A stops it.
    a.clear_active_plate("30A12345", 2).await.unwrap();
    within_3s("B sees A's stop", || async { on(&b, 8).await.roster.is_empty() }).await;
    // A rebuilds everything.
    a.reset_active_plates(&[("30A12345".into(), e(3, 7))]).await.unwrap();
    within_3s("B sees A's rebuild", || async { on(&b, 7).await.entry == Some(e(3, 7)) }).await;
    // B holds point 7 in its copy now (what a lost connection must not leave stale).
    let held = b.roster_cache_stats().hits;
    within_3s("B answers point 7 from its copy", || async {
        on(&b, 7).await.entry == Some(e(3, 7)) && b.roster_cache_stats().hits > held
    })
    .await;

    // The tracking connections are cut: no copy is used or kept until they are back.
    let mut admin = redis::Client::open(redis_url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let list: String = redis::cmd("CLIENT").arg("LIST").query_async(&mut admin).await.unwrap();
    let name = format!("name={prefix}roster:copy ");
    let ids: Vec<&str> = list
        .lines()
        .filter(|l| l.contains(&name))
        .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
        .collect();
    assert_eq!(ids.len(), 2, "one tracking connection per node: {ids:?}");
    for id in &ids {
        let _: i64 = redis::cmd("CLIENT").arg("KILL").arg("ID").arg(*id).query_async(&mut admin).await.unwrap();
    }
    // A writes at once: B's tracking connection may already be gone, so no invalidation
    // reaches B for it. B sees it all the same, because a lost connection drops the copy.
    let cut = b.roster_cache_stats();
    a.session_opened("30A12345", &e(4, 7)).await.unwrap();
    within_3s("B sees a write made as its connection was cut", || async { on(&b, 7).await.entry == Some(e(4, 7)) })
        .await;
    within_3s("B tracks again, on a new connection", || async {
        let s = b.roster_cache_stats();
        s.tracking && s.sessions > cut.sessions
    })
    .await;
    let still = b.roster_cache_stats();
    within_3s("B keeps copies again", || async {
        on(&b, 7).await;
        b.roster_cache_stats().hits > still.hits
    })
    .await;
    a.clear_active_plate("30A12345", 4).await.unwrap();
    within_3s("B follows A again", || async { on(&b, 7).await.roster.is_empty() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plate_index_conformance_memory() {
    check_plate_index(live_state(Live::Memory, None).await.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plate_index_conformance_redis() {
    check_plate_index(live_state(Live::Redis, None).await.as_ref()).await;
}

/// The same, with the node's roster copy on from the start. It keeps what it reads, so each
/// read after a write passes only if what it kept was dropped: by the node's own write, or
/// by Redis's invalidation of it, which on loopback arrives first (a copy that ignored both
/// fails here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plate_index_conformance_redis_with_the_roster_copy_on() {
    let live = RedisLive::connect(&redis_url(), &format!("t:{:016x}:", rand::random::<u64>())).await.unwrap();
    within_3s("the node tracks", || async { live.roster_cache_stats().tracking }).await;
    check_plate_index(&live).await;
    let stats = live.roster_cache_stats();
    assert!(stats.tracking && stats.kept > 0, "the copy kept what it read: {stats:?}");
    assert_eq!(stats.sessions, 1, "tracking never dropped: {stats:?}");
}

/// Two nodes on one Redis: nearby searches read a node's copy of the occupancy counters. A
/// node's own writes show in its next search at once; another node's within a second; a
/// reset drops the copy; the exact read never uses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_occupancy_follows_every_nodes_writes_redis() {
    let prefix = format!("t:{:016x}:", rand::random::<u64>());
    let a = RedisLive::connect(&redis_url(), &prefix).await.unwrap();
    let b = RedisLive::connect(&redis_url(), &prefix).await.unwrap();
    a.reset_occupancy(&[(1, 2), (2, 5)]).await.unwrap();
    // No copy yet: the first search reads Redis, and asks for a copy.
    assert_eq!(b.search_occupancy(&[1, 2, 3]).await.unwrap(), vec![2, 5, 0]);
    let hits = b.occupancy_mirror_stats().hits;
    within_3s("B answers from its copy", || async {
        b.search_occupancy(&[1, 2, 3]).await.unwrap() == vec![2, 5, 0] && b.occupancy_mirror_stats().hits > hits
    })
    .await;

    // B's own writes: its next search sees each at once, copy or not.
    assert!(b.try_occupy(1, 10).await.unwrap());
    assert_eq!(b.search_occupancy(&[1, 2]).await.unwrap(), vec![3, 5]);
    b.release(2).await.unwrap();
    assert_eq!(b.search_occupancy(&[2]).await.unwrap(), vec![4]);
    b.adjust_occupancy(3, 2).await.unwrap();
    assert_eq!(b.search_occupancy(&[3, 1]).await.unwrap(), vec![2, 3]);
    b.session_opened(
        "30A12345",
        &PlateEntry { session_id: 9, point_id: 4, point_code: "HK004".into(), paid_until_us: 100, expires_at_us: 700 },
    )
    .await
    .unwrap();
    assert_eq!(b.search_occupancy(&[4]).await.unwrap(), vec![1]);

    // A's writes reach B's searches (from B's copy: B never wrote point 5) within a second
    // or so.
    assert!(a.try_occupy(5, 10).await.unwrap());
    a.adjust_occupancy(5, 2).await.unwrap();
    within_3s("B sees A's writes", || async { b.search_occupancy(&[5]).await.unwrap() == vec![3] }).await;
    assert!(a.try_occupy(2, 10).await.unwrap());
    // Once B's copy has read its own writes, they answer from it, and still right.
    let hits = b.occupancy_mirror_stats().hits;
    within_3s("B's marks are covered by a later read", || async {
        b.search_occupancy(&[1, 2, 3, 4, 5]).await.unwrap() == vec![3, 5, 2, 1, 3]
            && b.occupancy_mirror_stats().hits > hits
    })
    .await;
    // B followed all of this by polling the change log, not by reading the whole hash again.
    let stats = b.occupancy_mirror_stats();
    assert!(stats.whole_reads == 1 && stats.reads > 1, "{stats:?}");

    // A reset on B drops B's copy at once; A's copy follows within a second or so.
    within_3s("A answers from its copy", || async {
        a.search_occupancy(&[5]).await.unwrap() == vec![3] && a.occupancy_mirror_stats().hits > 0
    })
    .await;
    b.reset_occupancy(&[(1, 7)]).await.unwrap();
    assert_eq!(b.search_occupancy(&[1, 2, 3, 4, 5]).await.unwrap(), vec![7, 0, 0, 0, 0]);
    within_3s("A's copy follows B's reset", || async {
        a.search_occupancy(&[1, 2, 3, 4, 5]).await.unwrap() == vec![7, 0, 0, 0, 0]
    })
    .await;

    // The exact read never uses a copy: A writes, and B's exact read sees it at once.
    a.adjust_occupancy(6, 4).await.unwrap();
    assert_eq!(b.occupancy(&[6, 1]).await.unwrap(), vec![4, 7]);
}

/// A rebuild of more sessions than one page of staging (5,001; point 1 holds 2,500 of them,
/// across the page boundary): every entry and every roster line is there afterwards, and
/// nothing of the old state is.
async fn check_large_reset(live: &dyn LiveState) {
    let entry = |id: i64| {
        let point_id = if id <= 2_500 { 1 } else { 2 + id % 1_000 };
        PlateEntry {
            session_id: id,
            point_id,
            point_code: format!("P{point_id:04}"),
            paid_until_us: 100 + id,
            expires_at_us: 700 + id,
        }
    };
    let plate = |id: i64| format!("30A{id:05}");
    live.set_active_plate("51F99999", &entry(9_999)).await.unwrap();
    let entries: Vec<(String, PlateEntry)> = (1..=5_001).map(|id| (plate(id), entry(id))).collect();
    live.reset_active_plates(&entries).await.unwrap();
    assert_eq!(live.active_plate("51F99999").await.unwrap(), None, "the old entry is gone");
    for id in [1, 1_999, 2_000, 2_001, 2_500, 2_501, 4_000, 5_001] {
        assert_eq!(live.active_plate(&plate(id)).await.unwrap(), Some(entry(id)), "session {id}");
        let seen = live.plate_lookup(&plate(id), entry(id).point_id).await.unwrap();
        assert_eq!(seen.entry, Some(entry(id)), "session {id}'s roster line");
    }
    let one = live.plate_lookup("30A00001", 1).await.unwrap();
    assert_eq!(one.roster.len(), 2_500);
    assert!(one.roster.iter().zip(1..).all(|((p, e), id)| *p == plate(id) && *e == entry(id)));
    let other = live.plate_lookup("30A00001", 2).await.unwrap();
    assert_eq!(other.roster.len(), 3, "sessions 3,000, 4,000 and 5,000 at point 2");
    assert_eq!(other.entry, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_of_many_pages_replaces_everything_memory() {
    let live = live_state(Live::Memory, None).await;
    check_large_reset(live.as_ref()).await;
    live.reset_active_plates(&[]).await.unwrap();
    assert!(live.plate_lookup("30A00001", 1).await.unwrap().roster.is_empty());
}

/// On Redis the rebuild stages its keys, then swaps them in: none of the stage is left, every
/// roster has its key, none of them expires, and an empty rebuild leaves no key at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_of_many_pages_replaces_everything_redis() {
    let prefix = format!("t:{:016x}:", rand::random::<u64>());
    let live = RedisLive::connect(&redis_url(), &prefix).await.unwrap();
    live.set_active_plate(
        "30A77777",
        &PlateEntry { session_id: 77, point_id: 5_555, point_code: "P5555".into(), paid_until_us: 1, expires_at_us: 2 },
    )
    .await
    .unwrap();
    check_large_reset(&live).await;
    let c = redis::Client::open(redis_url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let keys = |pattern: String| {
        let mut c = c.clone();
        async move {
            let mut out: Vec<String> = Vec::new();
            let mut cursor: u64 = 0;
            loop {
                let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(pattern.as_str())
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut c)
                    .await
                    .unwrap();
                out.extend(batch);
                if next == 0 {
                    return out;
                }
                cursor = next;
            }
        }
    };
    assert_eq!(keys(format!("{prefix}rebuild:*")).await, Vec::<String>::new(), "the stage is gone");
    let rosters = keys(format!("{prefix}roster:*")).await;
    assert_eq!(rosters.len(), 1_001, "point 1 and points 2 to 1,001");
    assert!(!rosters.contains(&format!("{prefix}roster:5555")), "the old roster is gone");
    for key in [format!("{prefix}plates"), format!("{prefix}roster:1"), format!("{prefix}roster:1001")] {
        let ttl: i64 = redis::cmd("TTL").arg(&key).query_async(&mut c.clone()).await.unwrap();
        assert_eq!(ttl, -1, "{key} never expires");
    }
    live.reset_active_plates(&[]).await.unwrap();
    assert_eq!(keys(format!("{prefix}*")).await, Vec::<String>::new(), "an empty rebuild leaves nothing");
}
