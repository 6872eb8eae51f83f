//! Money movements under concurrency at one point (issue 30, bug 8): many drivers starting,
//! extending and stopping sessions at one parking point at once, through the real server.
//!
//! On PostgreSQL a start locked the point's row `FOR UPDATE` and then needed the point's
//! revenue account, while an extension or a stop held that account and, inserting its
//! postings, needed a share lock on the same point row for their foreign key: a deadlock,
//! answered 503 after PostgreSQL's second of `deadlock_timeout`. The lock order is now one
//! everywhere (docs/decisions/0013-lock-order.md), and this test holds it to that: no call
//! answers 503, and PostgreSQL's log (this run's part of it) has no `deadlock detected`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use iparking_mobile_api::{Client, ClientError, CreatePoint, CreateStreet, ExtendSession, StartSession, VehicleClass};
use iparking_tests::{Db, Live, TestApp};

/// Drivers working at the one point at once.
const DRIVERS: usize = 12;
/// How long they keep at it.
const RUN_FOR: Duration = Duration::from_secs(12);

/// What the drivers' calls were answered.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    unavailable: AtomicU64,
}

/// The byte length of PostgreSQL's log now (which `scripts/test` names; the test fails
/// without it: it never skips), so that only what this run adds to it is read.
fn pg_log_len() -> u64 {
    let path = std::env::var("IPARKING_TEST_PG_LOG").expect("IPARKING_TEST_PG_LOG (set by scripts/test)");
    std::fs::metadata(&path).unwrap_or_else(|e| panic!("reading {path}: {e}")).len()
}

/// PostgreSQL's log from byte `from` on.
fn pg_log_since(from: u64) -> String {
    let path = std::env::var("IPARKING_TEST_PG_LOG").expect("IPARKING_TEST_PG_LOG (set by scripts/test)");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let from = usize::try_from(from).unwrap_or(usize::MAX).min(bytes.len());
    String::from_utf8_lossy(&bytes[from..]).into_owned()
}

async fn one_point(t: &TestApp, code: &str, capacity: i32) {
    let street = t
        .admin
        .create_street(&CreateStreet { district_code: "HK".into(), name: "Phố Đồng Thời".into() })
        .await
        .expect("street");
    t.admin
        .create_point(&CreatePoint {
            code: code.into(),
            name: format!("Điểm thử {code}"),
            street_id: street.id,
            lat: 21.0247,
            lon: 105.8471,
            curb: None,
            capacity,
            vehicle_classes: vec![VehicleClass::Car],
        })
        .await
        .expect("create point");
}

/// Sends a call until it is answered other than 503, counting each answer; the same
/// idempotency key every time, as the documentation tells clients to retry.
async fn until_answered<T, F, Fut>(tally: &Tally, what: &str, mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    loop {
        match call().await {
            Ok(v) => {
                tally.ok.fetch_add(1, Ordering::Relaxed);
                return v;
            }
            Err(ClientError::Api { status: 503, .. }) => {
                tally.unavailable.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

/// One driver's loop until `deadline`: start, extend by a turn, stop.
async fn park_repeatedly(d: Client, n: usize, point: String, deadline: Instant, tally: Arc<Tally>) -> u64 {
    let plate = format!("30A{:05}", 70_000 + n);
    let mut rounds = 0u64;
    while Instant::now() < deadline {
        let body = StartSession {
            point_code: point.clone(),
            plate: plate.clone(),
            vehicle_class: Some(VehicleClass::Car),
            minutes: None,
            turns: Some(1),
            payment: None,
            card_id: None,
            lat: None,
            lon: None,
        };
        let key = format!("start-{n}-{rounds}");
        let s = until_answered(&tally, "start", || d.start_session(&body, &key)).await;
        let more = ExtendSession { minutes: None, turns: Some(1), ..Default::default() };
        let key = format!("extend-{n}-{rounds}");
        until_answered(&tally, "extend", || d.extend_session(s.id, &more, &key)).await;
        let key = format!("stop-{n}-{rounds}");
        until_answered(&tally, "stop", || d.stop_session(s.id, &key)).await;
        rounds += 1;
    }
    rounds
}

/// Starts, extensions and stops by many drivers at one point, for a bounded time: every
/// call answered (none 503), the ledger sound, and on PostgreSQL no deadlock in its log.
async fn starts_extends_and_stops_at_one_point(db: Db, live: Live) {
    let t = TestApp::start(db, live).await;
    let log_from = (db == Db::Postgres).then(pg_log_len);
    one_point(&t, "HK970", i32::try_from(DRIVERS * 2).unwrap_or(i32::MAX)).await;
    let mut drivers = Vec::with_capacity(DRIVERS);
    for n in 0..DRIVERS {
        drivers.push(t.funded_driver(&format!("09130{n:05}"), 10_000_000).await);
    }

    let tally = Arc::new(Tally::default());
    let deadline = Instant::now() + RUN_FOR;
    let handles: Vec<_> = drivers
        .into_iter()
        .enumerate()
        .map(|(n, d)| tokio::spawn(park_repeatedly(d, n, "HK970".into(), deadline, tally.clone())))
        .collect();
    let mut rounds = 0;
    for h in handles {
        rounds += h.await.expect("driver task");
    }
    let (ok, unavailable) = (tally.ok.load(Ordering::Relaxed), tally.unavailable.load(Ordering::Relaxed));
    let deadlocks = log_from.map(|from| pg_log_since(from).matches("deadlock detected").count());
    eprintln!(
        "{db:?}: {rounds} rounds of start, extend and stop by {DRIVERS} drivers in {RUN_FOR:?}; \
         {ok} calls answered, {unavailable} answered 503; deadlocks in PostgreSQL's log: {deadlocks:?}"
    );
    assert!(rounds >= DRIVERS as u64, "each driver parked at least once ({rounds} rounds)");
    assert_eq!(unavailable, 0, "calls answered 503 (deadlocks in PostgreSQL's log: {deadlocks:?})");
    assert_eq!(deadlocks.unwrap_or(0), 0, "PostgreSQL detected deadlocks");
    assert_eq!(t.sql_i64("SELECT count(*) FROM sessions WHERE status = 'active'").await, 0, "every session stopped");
    t.assert_ledger_sound().await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_extends_and_stops_at_one_point_postgres_redis() {
    starts_extends_and_stops_at_one_point(Db::Postgres, Live::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_extends_and_stops_at_one_point_sqlite_memory() {
    starts_extends_and_stops_at_one_point(Db::Sqlite, Live::Memory).await;
}
