//! The live state recovers by itself (issue 8: "Redis stopped mid-run → plate checks answer
//! correctly from the database, and live state is rebuilt when Redis returns"). Each node's
//! live-state watchdog (every 100 ms here) rebuilds occupancy, the plate index and the point
//! rosters from the database when Redis lost its data or answers again after being
//! unreachable; no node restarts.
//!
//! The data-loss tests use the shared test Redis (a fresh key prefix); the outage tests start
//! their own `redis-server` on a free loopback port, then kill, freeze or restart it. Every
//! test fails (never skips) when what it needs is missing.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use iparking::{App, live::RedisLive};
use iparking_mobile_api::{CheckVerdict, Client, CreateStaff, StaffRole, StartSession, VehicleClass};
use iparking_tests::{Db, Live, Options, TestApp, TestDb, WARDEN_PASSWORD};
use redis::AsyncCommands;
use tokio::{sync::oneshot, task::JoinHandle};

/// How often the watchdog of these nodes probes the live state.
const CHECK_EVERY: Duration = Duration::from_millis(100);
/// A call while Redis is down must answer within this (from the database, or without live
/// data), never hang.
const QUICK: Duration = Duration::from_secs(3);
/// The live state must be rebuilt within this of Redis answering again.
const RECOVERY: Duration = Duration::from_secs(5);

fn settings() -> iparking::Settings {
    iparking::Settings { live_check_interval: CHECK_EVERY, ..Options::default().settings }
}

fn start(point: &str, plate: &str) -> StartSession {
    StartSession {
        point_code: point.into(),
        plate: plate.into(),
        vehicle_class: Some(VehicleClass::Car),
        minutes: None,
        turns: Some(1),
        payment: None,
        card_id: None,
        lat: None,
        lon: None,
    }
}

/// Waits up to `within` for `check` to hold.
async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Awaits `call` and asserts it answered within [`QUICK`].
async fn quick<T>(what: &str, call: impl std::future::Future<Output = T>) -> T {
    let started = Instant::now();
    let out = call.await;
    let took = started.elapsed();
    assert!(took < QUICK, "{what} took {took:?} with Redis unavailable: it must fail fast, not hang");
    out
}

/// A raw connection to a Redis, to read and delete keys behind the server's back.
async fn redis_conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("Redis URL")
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"))
}

/// Every key under `prefix` (SCAN, like the server itself).
async fn keys_under(url: &str, prefix: &str) -> Vec<String> {
    let mut c = redis_conn(url).await;
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut c)
            .await
            .expect("SCAN");
        keys.extend(batch);
        if next == 0 {
            return keys;
        }
        cursor = next;
    }
}

/// Deletes every key under `prefix`: the live state loses its data (as a Redis restarted
/// without persistence, or flushed, would).
async fn delete_prefix(url: &str, prefix: &str) -> usize {
    let keys = keys_under(url, prefix).await;
    let mut c = redis_conn(url).await;
    for chunk in keys.chunks(500) {
        let _: i64 = c.del(chunk).await.expect("DEL");
    }
    keys.len()
}

/// What Redis itself holds for a point and a plate (read directly, not through the server).
struct Held {
    occupied: Option<i64>,
    plate_session: Option<i64>,
    built_at: Option<i64>,
}

async fn held(url: &str, prefix: &str, point_id: i64, plate: &str) -> Held {
    let mut c = redis_conn(url).await;
    let occupied: Option<i64> = c.hget(format!("{prefix}occupancy"), point_id).await.expect("HGET occupancy");
    let entry: Option<String> =
        c.hget(format!("{prefix}plates"), iparking::live::opaque_key(plate)).await.expect("HGET plates");
    let plate_session = entry.map(|json| {
        let v: serde_json::Value = serde_json::from_str(&json).expect("plate entry JSON");
        v["session_id"].as_i64().expect("session_id")
    });
    let built_at: Option<i64> = c.get(format!("{prefix}live:built")).await.expect("GET live:built");
    Held { occupied, plate_session, built_at }
}

async fn point_id(app: &App, code: &str) -> i64 {
    app.store.point(code).await.expect("point").expect("the pilot's point").id
}

// ---- Redis lost its data ------------------------------------------------------------------

async fn lost_data_is_rebuilt(db: Db) {
    let t = TestApp::start_with(db, Live::Redis, Options { settings: settings(), ..Options::default() }).await;
    let url = iparking_tests::redis_url();
    let prefix = t.redis_prefix.clone().expect("a Redis prefix");
    let d = t.funded_driver("0912700001", 300_000).await;
    let w = t.warden("hk.recovery", &["HK"]).await;
    let s = d.start_session(&start("HK003", "30A-321.45"), "s-1").await.expect("start");
    let capacity = t.client.point("HK003").await.expect("point").capacity;
    let id = point_id(&t.app, "HK003").await;
    let before = held(&url, &prefix, id, "30A32145").await;
    assert_eq!((before.occupied, before.plate_session), (Some(1), Some(s.id)));
    let built_before = before.built_at.expect("the start's rebuild marks the live state built");

    assert!(delete_prefix(&url, &prefix).await >= 3, "occupancy, plates, roster and mark were there");

    // Nothing but the watchdog rebuilds occupancy: the API shows it back, from Redis.
    let c = &t.client;
    eventually("free spaces count the session again", RECOVERY, || async move {
        c.point("HK003").await.expect("point").free_spaces == Some(capacity - 1)
    })
    .await;
    let (u, p) = (&url, &prefix);
    eventually("the plate index is back in Redis", RECOVERY, || async move {
        held(u, p, id, "30A32145").await.plate_session == Some(s.id)
    })
    .await;
    let after = held(&url, &prefix, id, "30A32145").await;
    assert_eq!(after.occupied, Some(1));
    assert!(after.built_at.is_some_and(|b| b > built_before), "the rebuild marked the live state built again");
    let roster: Vec<String> = redis_conn(&url).await.hvals(format!("{prefix}roster:{id}")).await.expect("roster");
    assert_eq!(roster.len(), 1, "the point's roster is back");
    assert!(roster[0].starts_with("30A32145|"), "{roster:?}");

    let c = w.check_plate("30A-321.45", "HK003").await.expect("check");
    assert_eq!((c.verdict, c.session_id), (CheckVerdict::Valid, Some(s.id)));
    let near = t.client.nearby_points(&iparking_mobile_api::NearbyQuery {
        lat: 21.0245,
        lon: 105.8530,
        radius_m: Some(3_000.0),
        limit: Some(100),
        vehicle_class: None,
    });
    let near = near.await.expect("nearby");
    let hk3 = near.points.iter().find(|p| p.point.code == "HK003").expect("HK003 is near");
    assert_eq!(hk3.point.free_spaces, Some(capacity - 1), "nearby search counts the session");
    let metrics = reqwest::get(t.metrics_url()).await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("live_rebuilds_total{reason=\"data_lost\"}"), "no rebuild counted:\n{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_data_is_rebuilt_sqlite() {
    lost_data_is_rebuilt(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_data_is_rebuilt_postgres() {
    lost_data_is_rebuilt(Db::Postgres).await;
}

// ---- a Redis of the test's own, stopped and started again -----------------------------------

/// A `redis-server` child process on a loopback port, without persistence (as deployed).
struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts one on a free port.
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("addr").port();
        let mut server = Self { port, dir: tempfile::tempdir().expect("temp dir"), child: None };
        server.restart().await;
        server
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts it (again, empty) on the same port and waits until it answers.
    async fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = self.dir.path().join("redis.log");
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run redis-server ({e}): this test needs the Redis server binary on PATH. \
                     ./scripts/test installs it (Debian package redis-server)."
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(client) = redis::Client::open(self.url())
                && let Ok(mut c) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING").query_async::<String>(&mut c).await.is_ok()
            {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("redis-server exited ({status}) on port {}: {}", self.port, read_log(&log));
            }
            assert!(Instant::now() < deadline, "redis-server did not answer on port {}: {}", self.port, read_log(&log));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: gone at once, nothing saved.
    fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("kill redis-server");
        child.wait().expect("reap redis-server");
    }

    /// SIGSTOP / SIGCONT: a Redis that stalls (connections stay open, nothing answers).
    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap_or_else(|e| panic!("cannot run `kill` ({e}): this test needs it on PATH to freeze redis-server"));
        assert!(status.success(), "kill {sig} {pid}: {status}");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|_| "(no log)".into())
}

/// A server node on `db` and the Redis at `url` (the harness's `TestApp` always uses the
/// shared test Redis, so this one is assembled here the same way).
struct Node {
    app: Arc<App>,
    client: Client,
    admin: Client,
    sms: Arc<iparking::sms::OutboxSms>,
    prefix: String,
    _db: TestDb,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

impl Node {
    async fn start(db: Db, url: &str) -> Self {
        iparking_mobile_api::install_tls_provider();
        let test_db = TestDb::create(db).await;
        let store = test_db.store().await;
        iparking::registry::load_seed(
            store.as_ref(),
            iparking::seed::hanoi_pilot(),
            iparking::Clock::now(&iparking::SystemClock),
        )
        .await
        .expect("seed");
        let prefix = "recovery:".to_owned();
        let live = Arc::new(RedisLive::connect(url, &prefix).await.expect("connect to the test's Redis"));
        let sms = Arc::new(iparking::sms::OutboxSms::default());
        let mut settings = settings();
        settings.photo_dir = test_db.photos.path().to_path_buf();
        settings.check_journal_dir = Some(test_db.journal.path().to_path_buf());
        let gateways = iparking::Gateways { sms: sms.clone(), ..iparking::Gateways::default() };
        let clock = Arc::new(iparking_tests::TestClock::default());
        let app = App::with_gateways(store, live, clock, settings, gateways).await.expect("app");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel();
        let server = tokio::spawn(iparking::http::serve(listener, app.clone(), async {
            let _ = rx.await;
        }));
        let client = Client::new(format!("http://{addr}"));
        let spec = iparking::app::staff::StaffSpec::new("Test admin".into(), StaffRole::Admin, &[]);
        let admin = client.with_token(iparking::app::staff::add_staff(&app, spec).await.expect("admin").token);
        Self { app, client, admin, sms, prefix, _db: test_db, shutdown: Some(tx), server: Some(server) }
    }

    /// A driver with a sandbox top-up (logging in needs Redis: the one-time code lives there).
    async fn funded_driver(&self, phone: &str) -> Client {
        self.client.send_otp(phone).await.expect("send otp");
        let e164 = iparking::domain::phone::Phone::parse(phone).expect("phone").as_str().to_owned();
        let text = self.sms.last_to(&e164).expect("an SMS with the code");
        let code: String = text.chars().filter(char::is_ascii_digit).take(6).collect();
        let d = self.client.with_token(self.client.login(phone, &code).await.expect("login").token);
        d.sandbox_topup(500_000, "fund").await.expect("top-up");
        d
    }

    /// A warden of HK, logged in (failed logins are counted in Redis, so before it goes).
    async fn warden(&self, username: &str) -> Client {
        let mut body = CreateStaff::new(format!("{username} test"), StaffRole::Warden, vec!["HK".into()]);
        body.username = Some(username.to_owned());
        body.password = Some(WARDEN_PASSWORD.to_owned());
        self.admin.create_staff(&body).await.expect("create warden");
        let login = self.client.warden_login(username, WARDEN_PASSWORD, "handheld").await.expect("warden login");
        self.client.with_token(login.token)
    }

    async fn live_ready(&self) -> bool {
        let resp = reqwest::get(format!("{}/readyz", self.client.base())).await.expect("readyz");
        let body: serde_json::Value = resp.json().await.expect("readyz body");
        body["live_state"] == "ok"
    }

    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server");
        }
    }
}

/// The plate checks' warnings left out of the log, from the node's `/metrics` (0 before the
/// first), and all the lines of that counter.
async fn warnings_skipped(_n: &Node) -> (f64, String) {
    // What the metrics listener would serve (the process's recorder; the API's listener
    // serves no metrics).
    let body = iparking::http::ops::prometheus().render();
    let all: Vec<&str> = body.lines().filter(|l| l.starts_with("log_warnings_skipped_total")).collect();
    let checks =
        all.iter().find_map(|l| l.strip_prefix(r#"log_warnings_skipped_total{module="iparking::app::checks"} "#));
    let value = checks.map_or(0.0, |v| v.trim().parse().unwrap_or_else(|_| panic!("skipped {v:?}")));
    (value, all.join("\n"))
}

/// Redis is killed mid-run: plate checks answer from the database, quickly; nearby search
/// answers without free spaces; a session still starts. Redis comes back empty on the same
/// port: the watchdog rebuilds everything, counting the session started while it was down.
async fn redis_killed_and_restarted_empty(db: Db) {
    let mut redis = RedisServer::start().await;
    let url = redis.url();
    let n = Node::start(db, &url).await;
    let d = n.funded_driver("0912700011").await;
    let w = n.warden("hk.outage").await;
    let s1 = d.start_session(&start("HK001", "30A-111.11"), "s-1").await.expect("start with Redis up");
    let capacity = n.client.point("HK001").await.expect("point").capacity;
    let id = point_id(&n.app, "HK001").await;
    let c = w.check_plate("30A-111.11", "HK001").await.expect("check");
    assert_eq!(c.verdict, CheckVerdict::Valid);

    redis.kill();
    let node = &n;
    eventually("readiness reports the live state down", RECOVERY, || async move { !node.live_ready().await }).await;

    // Plate checks: from the database, right, and quick.
    let c = quick("a plate check", w.check_plate("30A-111.11", "HK001")).await.expect("check with Redis down");
    assert_eq!((c.verdict, c.session_id), (CheckVerdict::Valid, Some(s1.id)));
    // Each says the live state is unavailable, but the log gets one line per 10 s at most:
    // of 20 checks, 19 at least are left out and counted (other tests here only add to it).
    let (before, _) = warnings_skipped(&n).await;
    for _ in 0..20 {
        let c = quick("a plate check", w.check_plate("30A-111.11", "HK001")).await.expect("check with Redis down");
        assert_eq!(c.verdict, CheckVerdict::Valid);
    }
    let (after, all) = warnings_skipped(&n).await;
    assert!(after - before >= 19.0, "the plate checks' warnings left out of the log: {before} then {after}:\n{all}");
    let c = quick("a plate check", w.check_plate("29B-999.99", "HK001")).await.expect("check with Redis down");
    assert_eq!((c.verdict, c.session_id), (CheckVerdict::Unpaid, None));
    // Nearby: no free spaces to show, but an answer.
    let p = quick("a point lookup", n.client.point("HK001")).await.expect("point with Redis down");
    assert_eq!(p.free_spaces, None);
    // A session starts (the database decides: capacity, plate, wallet); the live state
    // misses it for now.
    let s2 = quick("a session start", d.start_session(&start("HK001", "30A-222.22"), "s-2"))
        .await
        .expect("a session starts with Redis down");
    let c = quick("a plate check", w.check_plate("30A-222.22", "HK001")).await.expect("check with Redis down");
    assert_eq!((c.verdict, c.session_id), (CheckVerdict::Valid, Some(s2.id)));
    let c = quick("a plate check", w.check_plate("30A-222.22", "HK002")).await.expect("check with Redis down");
    assert_eq!(c.verdict, CheckVerdict::Elsewhere);
    // What lives in Redis itself is unavailable, and says so: one-time codes, and password
    // logins (their failed attempts are counted there). Issued tokens keep working (above).
    let e = quick("a code request", n.client.send_otp("0912700012")).await.expect_err("no code without Redis");
    assert_eq!((e.status(), e.code()), (Some(503), Some("service_unavailable")), "{e}");
    let e = quick("a warden login", n.client.warden_login("hk.outage", WARDEN_PASSWORD, "other"))
        .await
        .expect_err("no password login without Redis");
    assert_eq!((e.status(), e.code()), (Some(503), Some("service_unavailable")), "{e}");

    // Back, empty, on the same port: rebuilt within a few seconds, no restart of the node.
    redis.restart().await;
    let c = &n.client;
    eventually("free spaces count both sessions", RECOVERY, || async move {
        c.point("HK001").await.expect("point").free_spaces == Some(capacity - 2)
    })
    .await;
    // Occupancy and the plate index are replaced one after the other: wait for the marker,
    // written once both are.
    let (u, prefix) = (&url, &n.prefix);
    eventually("the rebuild is marked done", RECOVERY, || async move {
        held(u, prefix, id, "30A22222").await.built_at.is_some()
    })
    .await;
    let h = held(&url, &n.prefix, id, "30A22222").await;
    assert_eq!(h.occupied, Some(2), "Redis counts both sessions");
    assert_eq!(h.plate_session, Some(s2.id), "Redis indexes the session started while it was down");
    assert!(h.built_at.is_some(), "the rebuild marked it built");
    assert_eq!(held(&url, &n.prefix, id, "30A11111").await.plate_session, Some(s1.id));
    assert!(n.live_ready().await);
    let c = w.check_plate("30A-222.22", "HK001").await.expect("check");
    assert_eq!((c.verdict, c.session_id), (CheckVerdict::Valid, Some(s2.id)));
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_empty_sqlite() {
    redis_killed_and_restarted_empty(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_empty_postgres() {
    redis_killed_and_restarted_empty(Db::Postgres).await;
}

/// Redis stalls (SIGSTOP: connections stay open, nothing answers, as in a network
/// partition): calls give up after their timeouts instead of hanging. It resumes with its
/// data, which missed what happened meanwhile: the watchdog rebuilds it anyway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stalled_and_resumed_with_stale_data() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let n = Node::start(Db::Postgres, &url).await;
    let d = n.funded_driver("0912700021").await;
    let w = n.warden("hk.stall").await;
    let s1 = d.start_session(&start("HK004", "30A-444.44"), "s-1").await.expect("start with Redis up");
    let capacity = n.client.point("HK004").await.expect("point").capacity;
    let id = point_id(&n.app, "HK004").await;
    let built_before = held(&url, &n.prefix, id, "30A44444").await.built_at.expect("built at start");

    redis.signal("-STOP");
    let c = quick("a plate check", w.check_plate("30A-444.44", "HK004")).await.expect("check with Redis stalled");
    assert_eq!((c.verdict, c.session_id), (CheckVerdict::Valid, Some(s1.id)));
    let c = quick("a plate check", w.check_plate("29B-999.98", "HK004")).await.expect("check with Redis stalled");
    assert_eq!(c.verdict, CheckVerdict::Unpaid);
    let p = quick("a point lookup", n.client.point("HK004")).await.expect("point with Redis stalled");
    assert_eq!(p.free_spaces, None);
    let s2 = quick("a session start", d.start_session(&start("HK004", "30A-555.55"), "s-2"))
        .await
        .expect("a session starts with Redis stalled");

    redis.signal("-CONT");
    let (u, p) = (&url, &n.prefix);
    eventually("the watchdog rebuilt the live state", RECOVERY, || async move {
        held(u, p, id, "30A55555").await.built_at.is_some_and(|b| b > built_before)
    })
    .await;
    let h = held(&url, &n.prefix, id, "30A55555").await;
    assert_eq!((h.occupied, h.plate_session), (Some(2), Some(s2.id)));
    let c = &n.client;
    eventually("free spaces count both sessions", RECOVERY, || async move {
        c.point("HK004").await.expect("point").free_spaces == Some(capacity - 2)
    })
    .await;
    let c = w.check_plate("30A-555.55", "HK004").await.expect("check");
    assert_eq!((c.verdict, c.session_id), (CheckVerdict::Valid, Some(s2.id)));
    n.stop().await;
}
