//! Test harness: starts the real iParking server on 127.0.0.1:0 against a fresh database
//! (SQLite in a temp dir, or a new PostgreSQL database) and a fresh live state (in process,
//! or a new key prefix in Redis).
//!
//! PostgreSQL and Redis come from `IPARKING_TEST_PG_URL` and `IPARKING_TEST_REDIS_URL`,
//! which `scripts/test` sets after starting private instances. A test that needs one and
//! finds it unset **fails**: a suite that silently skips is a failing suite.
#![forbid(unsafe_code)]

pub mod fake_stripe;
pub mod finance;
pub mod webdriver;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use iparking::{
    App, Settings,
    live::{LiveState, MemoryLive, RedisLive},
    registry, seed,
    store::{PgStore, SqliteStore, Store},
};
use iparking_mobile_api::{Client, CreateStaff, StaffRole, WardenToken};
use rand::Rng;
use sqlx::{Connection, Executor, PgConnection};
use tokio::{sync::oneshot, task::JoinHandle};

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    /// A SQLite file in a temporary directory.
    Sqlite,
    /// A new database on the test PostgreSQL server.
    Postgres,
}

/// Which live state a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Live {
    /// In process.
    Memory,
    /// A fresh key prefix on the test Redis server.
    Redis,
}

/// The admin URL of the test PostgreSQL server.
pub fn pg_url() -> String {
    std::env::var("IPARKING_TEST_PG_URL").unwrap_or_else(|_| {
        panic!("IPARKING_TEST_PG_URL is not set. Run ./scripts/test, which starts PostgreSQL and Redis for the tests.")
    })
}

/// The URL of the test Redis server.
pub fn redis_url() -> String {
    std::env::var("IPARKING_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!(
            "IPARKING_TEST_REDIS_URL is not set. Run ./scripts/test, which starts PostgreSQL and Redis for the tests."
        )
    })
}

fn unique(prefix: &str) -> String {
    format!("{prefix}{:016x}", rand::rng().random::<u64>())
}

/// A database for one test; keeps its temp dir alive.
#[derive(Debug)]
pub struct TestDb {
    /// The URL the store was opened with.
    pub url: String,
    /// Where the servers on this database keep violation photos (their data directory).
    pub photos: tempfile::TempDir,
    /// Where the servers on this database journal plate checks (each its own journal).
    pub journal: tempfile::TempDir,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A new, empty, unmigrated database.
    pub async fn create(db: Db) -> Self {
        match db {
            Db::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("test.db").display());
                Self {
                    url,
                    photos: tempfile::tempdir().expect("temp dir"),
                    journal: tempfile::tempdir().expect("temp dir"),
                    _dir: Some(dir),
                }
            }
            Db::Postgres => {
                let admin = pg_url();
                let name = unique("iparking_test_");
                let mut conn = PgConnection::connect(&admin).await.expect("connect to the test PostgreSQL");
                conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .await
                    .expect("create test database");
                let _ = conn.close().await;
                let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b).to_owned();
                Self {
                    url: format!("{base}/{name}"),
                    photos: tempfile::tempdir().expect("temp dir"),
                    journal: tempfile::tempdir().expect("temp dir"),
                    _dir: None,
                }
            }
        }
    }

    /// Opens and migrates the store.
    pub async fn store(&self) -> Arc<dyn Store> {
        let store: Arc<dyn Store> = if self.url.starts_with("sqlite:") {
            Arc::new(SqliteStore::connect(&self.url).await.expect("open SQLite"))
        } else {
            Arc::new(PgStore::connect(&self.url, 8).await.expect("connect PostgreSQL"))
        };
        store.migrate().await.expect("migrate");
        store
    }
}

/// A fresh live state; for Redis, a new key prefix (or the given one, to share it).
pub async fn live_state(live: Live, prefix: Option<&str>) -> Arc<dyn LiveState> {
    match live {
        Live::Memory => Arc::new(MemoryLive::new()),
        Live::Redis => {
            let prefix = prefix.map_or_else(|| unique("t:") + ":", str::to_owned);
            Arc::new(RedisLive::connect(&redis_url(), &prefix).await.expect("connect to the test Redis"))
        }
    }
}

/// A clock tests can move forward: now is the system time plus an offset.
#[derive(Debug, Default)]
pub struct TestClock {
    offset: std::sync::Mutex<chrono::Duration>,
}

impl TestClock {
    /// Moves the clock forward.
    pub fn advance(&self, by: chrono::Duration) {
        *self.offset.lock().unwrap_or_else(|p| p.into_inner()) += by;
    }
}

impl iparking::Clock for TestClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        let offset = *self.offset.lock().unwrap_or_else(|p| p.into_inner());
        iparking::domain::tariff::truncate_micros(chrono::Utc::now() + offset)
    }
}

/// A running server and clients for it.
pub struct TestApp {
    /// The app behind the server (for white-box checks of state after black-box calls).
    pub app: Arc<App>,
    /// Where it listens.
    pub addr: SocketAddr,
    /// The metrics listener's address (`GET /metrics`).
    pub metrics_addr: SocketAddr,
    /// An anonymous client.
    pub client: Client,
    /// A client holding a city-wide admin token.
    pub admin: Client,
    /// The database, kept alive for the test.
    pub db: Arc<TestDb>,
    /// The Redis prefix in use, if any.
    pub redis_prefix: Option<String>,
    /// Every SMS the server sent.
    pub sms: Arc<iparking::sms::OutboxSms>,
    /// The server's clock (`advance` it to make time pass).
    pub clock: Arc<TestClock>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

/// Shared secret of the test carrier `viettel` (10% share).
pub const VIETTEL_SECRET: &str = "test-secret-viettel";
/// Shared secret of the test carrier `mobifone` (12% share).
pub const MOBIFONE_SECRET: &str = "test-secret-mobifone";

/// The password of the wardens made by [`TestApp::warden_with`].
pub const WARDEN_PASSWORD: &str = "correct horse battery";

/// Options of [`TestApp::start_with`].
#[derive(Clone)]
pub struct Options {
    /// Load Hanoi's pilot seed first.
    pub seed_pilot: bool,
    /// Share this database instead of creating one.
    pub share_db: Option<Arc<TestDb>>,
    /// Use this Redis prefix (to share live state with another node).
    pub redis_prefix: Option<String>,
    /// Server tunables.
    pub settings: Settings,
    /// Share this clock (another node of the same test).
    pub clock: Option<Arc<TestClock>>,
    /// Send SMS through this gateway instead of the in-memory outbox.
    pub sms: Option<Arc<dyn iparking::sms::SmsGateway>>,
    /// Push webhook for reminders.
    pub push: Option<iparking::sms::PushWebhook>,
    /// Web Push sender (default: none).
    pub web_push: Option<Arc<iparking::push::WebPush>>,
    /// Card processor (default: none).
    pub payments: Option<Arc<dyn iparking::payments::PaymentGateway>>,
    /// Stripe webhook signing secret.
    pub stripe_webhook_secret: Option<String>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options").field("seed_pilot", &self.seed_pilot).finish_non_exhaustive()
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            seed_pilot: true,
            share_db: None,
            redis_prefix: None,
            settings: Settings {
                index_refresh: Duration::from_millis(100),
                expiry_interval: Duration::from_millis(200),
                sandbox_payments: true,
                carriers: vec![
                    iparking::Carrier { name: "viettel".into(), secret: VIETTEL_SECRET.into(), share_percent: 10 },
                    iparking::Carrier { name: "mobifone".into(), secret: MOBIFONE_SECRET.into(), share_percent: 12 },
                ],
                ..Settings::default()
            },
            clock: None,
            sms: None,
            push: None,
            web_push: None,
            payments: None,
            stripe_webhook_secret: None,
        }
    }
}

impl TestApp {
    /// A server on `db` and `live`, seeded with Hanoi's pilot.
    pub async fn start(db: Db, live: Live) -> Self {
        Self::start_with(db, live, Options::default()).await
    }

    /// A server with options.
    pub async fn start_with(db: Db, live: Live, opts: Options) -> Self {
        // Before any reqwest client is built in this process (tests build their own too).
        iparking_mobile_api::install_tls_provider();
        let test_db = match opts.share_db {
            Some(d) => d,
            None => Arc::new(TestDb::create(db).await),
        };
        let store = test_db.store().await;
        if opts.seed_pilot {
            registry::load_seed(store.as_ref(), seed::hanoi_pilot(), iparking::Clock::now(&iparking::SystemClock))
                .await
                .expect("seed");
        }
        let redis_prefix = match live {
            Live::Redis => Some(opts.redis_prefix.unwrap_or_else(|| unique("t:") + ":")),
            Live::Memory => None,
        };
        let live_state = live_state(live, redis_prefix.as_deref()).await;
        let clock = opts.clock.unwrap_or_default();
        let sms = Arc::new(iparking::sms::OutboxSms::default());
        let gateway: Arc<dyn iparking::sms::SmsGateway> = match opts.sms {
            Some(g) => g,
            None => sms.clone(),
        };
        let gateways = iparking::Gateways {
            sms: gateway,
            push: opts.push,
            web_push: opts.web_push,
            payments: opts.payments,
            stripe_webhook_secret: opts.stripe_webhook_secret,
        };
        let mut settings = opts.settings;
        settings.photo_dir = test_db.photos.path().to_path_buf();
        settings.check_journal_dir = Some(test_db.journal.path().to_path_buf());
        let app = App::with_gateways(store, live_state, clock.clone(), settings, gateways).await.expect("app");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel();
        let server = tokio::spawn(iparking::http::serve(listener, app.clone(), async {
            let _ = rx.await;
        }));
        // The metrics listener, as `--metrics-listen` runs it beside the API's.
        let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind metrics");
        let metrics_addr = metrics.local_addr().expect("metrics addr");
        tokio::spawn(iparking::http::serve_metrics(metrics));
        let client = Client::new(format!("http://{addr}"));
        let spec = iparking::app::staff::StaffSpec::new("Test admin".into(), StaffRole::Admin, &[]);
        let token = iparking::app::staff::add_staff(&app, spec).await.expect("admin").token;
        let admin = client.with_token(token);
        Self {
            app,
            addr,
            metrics_addr,
            client,
            admin,
            db: test_db,
            redis_prefix,
            sms,
            clock,
            shutdown: Some(tx),
            server: Some(server),
        }
    }

    /// A base URL for raw requests.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The metrics listener's `/metrics` (never served on the API's address).
    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.metrics_addr)
    }

    /// A raw request to `path` with the city-wide admin's token.
    pub fn admin_request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let token = self.admin.token().expect("admin token").to_owned();
        reqwest::Client::new().request(method, self.url(path)).bearer_auth(token)
    }

    /// A raw `GET path` with the token of a new, city-wide staff member of `role`.
    pub async fn staff_request(&self, role: StaffRole, path: &str) -> reqwest::RequestBuilder {
        let staff = self.staff(role, &[]).await;
        let token = staff.token().expect("staff token").to_owned();
        reqwest::Client::new().get(self.url(path)).bearer_auth(token)
    }

    /// A client holding a new token of `role` limited to `districts`.
    pub async fn staff(&self, role: StaffRole, districts: &[&str]) -> Client {
        let created = self
            .admin
            .create_staff(&CreateStaff::new(
                format!("{} test", role.as_str()),
                role,
                districts.iter().map(|d| (*d).to_owned()).collect(),
            ))
            .await
            .expect("create staff");
        self.client.with_token(created.token)
    }

    /// Logs a driver in through the real OTP flow (the code is read from the SMS outbox)
    /// and returns a client holding the driver's token.
    pub async fn driver(&self, phone: &str) -> Client {
        let token = self.driver_token(phone).await;
        self.client.with_token(token)
    }

    /// Logs a driver in through the real OTP flow and returns the new token.
    pub async fn driver_token(&self, phone: &str) -> String {
        self.client.send_otp(phone).await.expect("send otp");
        let e164 = iparking::domain::phone::Phone::parse(phone).expect("phone").as_str().to_owned();
        let text = self.sms.last_to(&e164).expect("an SMS with the code");
        let code: String = text.chars().filter(char::is_ascii_digit).take(6).collect();
        self.client.login(phone, &code).await.expect("login").token
    }

    /// A driver with a sandbox top-up of `amount`.
    pub async fn funded_driver(&self, phone: &str, amount: i64) -> Client {
        let d = self.driver(phone).await;
        d.sandbox_topup(amount, &format!("fund-{phone}")).await.expect("top-up");
        d
    }

    /// Panics unless the ledger's invariants hold: every transaction balances, balances
    /// equal their postings, no wallet is negative, revenue equals session charges.
    pub async fn assert_ledger_sound(&self) {
        let r = self.app.store.ledger_report().await.expect("ledger report");
        assert!(r.is_sound(), "ledger invariants broken: {r:?}");
    }

    /// Runs a read-only query returning one integer on the test's database, for white-box
    /// checks of tables no store method reads (cast sums to BIGINT for PostgreSQL).
    pub async fn sql_i64(&self, sql: &str) -> i64 {
        let query = sqlx::AssertSqlSafe(sql.to_owned());
        let result = if self.db.url.starts_with("sqlite:") {
            let mut conn = sqlx::SqliteConnection::connect(&self.db.url).await.expect("open SQLite");
            sqlx::query_scalar::<sqlx::Sqlite, i64>(query).fetch_one(&mut conn).await
        } else {
            let mut conn = PgConnection::connect(&self.db.url).await.expect("connect PostgreSQL");
            sqlx::query_scalar::<sqlx::Postgres, i64>(query).fetch_one(&mut conn).await
        };
        result.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Runs a statement that changes the test's database behind the server's back (to play
    /// an intruder with database access); returns the rows it touched.
    pub async fn sql_exec(&self, sql: &str) -> u64 {
        let query = sqlx::AssertSqlSafe(sql.to_owned());
        let result = if self.db.url.starts_with("sqlite:") {
            let mut conn = sqlx::SqliteConnection::connect(&self.db.url).await.expect("open SQLite");
            sqlx::query::<sqlx::Sqlite>(query).execute(&mut conn).await.map(|r| r.rows_affected())
        } else {
            let mut conn = PgConnection::connect(&self.db.url).await.expect("connect PostgreSQL");
            sqlx::query::<sqlx::Postgres>(query).execute(&mut conn).await.map(|r| r.rows_affected())
        };
        result.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Like [`TestApp::sql_i64`], for one optional text value (no row: `None`).
    pub async fn sql_text(&self, sql: &str) -> Option<String> {
        let query = sqlx::AssertSqlSafe(sql.to_owned());
        let row = if self.db.url.starts_with("sqlite:") {
            let mut conn = sqlx::SqliteConnection::connect(&self.db.url).await.expect("open SQLite");
            sqlx::query_scalar::<sqlx::Sqlite, Option<String>>(query).fetch_optional(&mut conn).await
        } else {
            let mut conn = PgConnection::connect(&self.db.url).await.expect("connect PostgreSQL");
            sqlx::query_scalar::<sqlx::Postgres, Option<String>>(query).fetch_optional(&mut conn).await
        };
        row.unwrap_or_else(|e| panic!("{sql}: {e}")).flatten()
    }

    /// Creates a staff member of `role` (warden or inspector) with a username and the
    /// password [`WARDEN_PASSWORD`], assigned to `districts` and `streets`, and logs in through
    /// the real password route. Returns a client holding the token, and the login answer.
    pub async fn warden_with(
        &self,
        role: StaffRole,
        username: &str,
        districts: &[&str],
        streets: &[i64],
    ) -> (Client, WardenToken) {
        let mut body =
            CreateStaff::new(format!("{username} test"), role, districts.iter().map(|d| (*d).to_owned()).collect());
        body.streets = streets.to_vec();
        body.username = Some(username.to_owned());
        body.password = Some(WARDEN_PASSWORD.to_owned());
        self.admin.create_staff(&body).await.expect("create warden");
        let login = self.client.warden_login(username, WARDEN_PASSWORD, "test-handheld").await.expect("warden login");
        (self.client.with_token(login.token.clone()), login)
    }

    /// A warden assigned to `districts`, logged in (see [`TestApp::warden_with`]).
    pub async fn warden(&self, username: &str, districts: &[&str]) -> Client {
        self.warden_with(StaffRole::Warden, username, districts, &[]).await.0
    }

    /// Waits until every plate check answered so far is written to the database.
    pub async fn flush_checks(&self) {
        self.app.checks.flush().await;
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Runs a test body on SQLite + in-process live state and on PostgreSQL + Redis.
///
/// ```text
/// matrix!(nearby_is_sorted, |t| { ... });
/// ```
/// makes `nearby_is_sorted::sqlite_memory` and `nearby_is_sorted::postgres_redis`.
#[macro_export]
macro_rules! matrix {
    ($name:ident, |$t:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite_memory() {
                let $t = $crate::TestApp::start($crate::Db::Sqlite, $crate::Live::Memory).await;
                $body
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres_redis() {
                let $t = $crate::TestApp::start($crate::Db::Postgres, $crate::Live::Redis).await;
                $body
            }
        }
    };
}

/// Sends a raw request and returns `(status, json body)`.
pub async fn raw(req: reqwest::RequestBuilder) -> (u16, serde_json::Value) {
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, json)
}

/// Asserts the error shape and code of a raw answer.
#[track_caller]
pub fn assert_error(answer: &(u16, serde_json::Value), status: u16, code: &str) {
    assert_eq!(answer.0, status, "status of {}", answer.1);
    assert_eq!(answer.1["error"]["code"], code, "code of {}", answer.1);
    let msg = answer.1["error"]["message"].as_str().unwrap_or("");
    assert!(!msg.is_empty(), "error without a message: {}", answer.1);
    assert_eq!(answer.1.as_object().map(|o| o.len()), Some(1), "extra top-level fields: {}", answer.1);
}

/// A tiny PNG (1×1 RGB: signature, IHDR, IEND), `seed` appended so photos differ.
pub fn tiny_png(seed: u8) -> Vec<u8> {
    let mut b = vec![0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n', 0, 0, 0, 13];
    b.extend_from_slice(b"IHDR");
    b.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0, 0x90, 0x77, 0x53, 0xde, 0, 0, 0, 0]);
    b.extend_from_slice(b"IEND");
    b.extend_from_slice(&[0xae, 0x42, 0x60, 0x82, seed]);
    b
}

/// Digits grouped by 3 the Vietnamese way (`1.250.000`), written independently of the app.
pub fn grouped(v: i64) -> String {
    let digits = v.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && c.is_ascii_digit() && (digits.len() - i).is_multiple_of(3) && !out.ends_with('-') {
            out.push('.');
        }
        out.push(c);
    }
    out
}

/// VND as the apps write it: `1.250.000 đ`.
pub fn vnd(v: i64) -> String {
    format!("{} đ", grouped(v))
}
