//! A month's revenue by street and channel, against a real PostgreSQL.
//!
//! Target (issue 7): over 1,000,000 sessions, the revenue report (`Store::revenue` with
//! dimensions street and channel) takes no more than 1.5× a plain hand-written SQL
//! `GROUP BY` answering the same question over the same data, measured in the same run.
//!
//! Data (seeded once into the database of `IPARKING_BENCH_PG_URL`, then reused while the
//! marker table `bench_finance_seed` says the size matches): Hanoi's pilot registry extended
//! to 4 districts, 40 streets and 400 points; 1,000,000 sessions started in November 2026
//! (Hanoi time) plus 100,000 in October and December, paid 60% by SMS, 20% from the wallet,
//! 10% by card and 10% in cash to a warden; 20% extended once (a second ledger transaction),
//! 5% of the wallet and card sessions refunded one turn. The ledger is what the services
//! write: each payment a transaction with its postings (revenue posting with channel and
//! point; the SMS carrier's share as a `carrier_fee` posting attributed to the point), the
//! wallets topped up beforehand, every account's balance equal to the sum of its postings.
//!
//! Measured, in this order, in the same run:
//! - `baseline_sql`: the most direct hand-written query — postings of the month's ledger
//!   transactions joined to their accounts, points, streets and districts, grouped by street
//!   and channel (gross, carrier share, postings counted);
//! - `store_revenue`: `PgStore::revenue` with dimensions `[Street, Channel]`;
//! - `http_revenue`: `GET /v1/finance/revenue?…&group_by=street,channel` of the real
//!   `iparking serve` (release build) on the same database, as a finance token;
//! - `naive_sessions_sql` (informative): charged minus refunded of the sessions started in the
//!   month, by street and session channel (`app`, `sms`, `warden`) — a second copy of the
//!   amounts, which the reports must not use, but the cheapest possible answer.
//!
//! Before timing, the bench checks that the baseline, the store and the endpoint give the
//! same rows. Criterion measures each in turn; then, for the figures the target is judged
//! on, all of them run in turn for 9 rounds (so load from other work on the machine falls on
//! all alike). It prints the medians and ratios and exits non-zero if `store_revenue` takes
//! more than 1.5× `baseline_sql`. `IPARKING_BENCH_NO_HTTP=1` skips the server;
//! `IPARKING_BENCH_EXPLAIN=1` prints `EXPLAIN (ANALYZE, BUFFERS)` of the baseline.
//!
//! Run: `./scripts/bench-finance` (starts a private PostgreSQL), or with your own database:
//! `IPARKING_BENCH_PG_URL=postgres://… cargo bench -p iparking --bench finance_revenue`.
//! The database must be empty or a previous seed of this bench: seeding drops and recreates
//! the `public` schema of a previous bench seed of another size.

use std::{
    collections::BTreeMap,
    hint::black_box,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use chrono::{DateTime, TimeZone, Utc};
use criterion::{Criterion, SamplingMode};
use iparking::{
    domain::tariff::LOCAL_TZ,
    import::PointDraft,
    registry, seed,
    store::{
        PgStore, Store,
        finance::{FinanceStore, RevenueDim, RevenueFilter, RevenueRaw},
    },
};
use iparking_mobile_api::VehicleClass;
use sqlx::{PgPool, Row, postgres::PgPoolOptions};
use tokio::runtime::Runtime;

/// Sessions started in the reported month.
const SESSIONS: i64 = 1_000_000;
/// Sessions started in the neighbouring months (half in October, half in December).
const NEIGHBOURS: i64 = 100_000;
/// Bumped when the seed's shape changes (forces a reseed).
const SEED_VERSION: i32 = 1;
const POINTS: usize = 400;
const STREETS_PER_DISTRICT: usize = 10;
const DRIVERS: i64 = 20_000;
const WARDENS: i64 = 20;
/// The most `store_revenue` may take, as a multiple of `baseline_sql`.
const MAX_RATIO: f64 = 1.5;

/// The reported month, November 2026 in Hanoi: `[from, to)`.
fn month() -> (DateTime<Utc>, DateTime<Utc>) {
    let local = |m| LOCAL_TZ.with_ymd_and_hms(2026, m, 1, 0, 0, 0).unwrap().with_timezone(&Utc);
    (local(11), local(12))
}

/// One row of the report, as compared between the three ways of getting it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Line {
    district_code: String,
    street_id: i64,
    street_name: String,
    channel: String,
    gross: i64,
    carrier_share: i64,
    postings: i64,
}

// ---- seeding -----------------------------------------------------------------------------

/// The pilot (4 districts, 8 streets, 27 points, its tariffs) extended with synthetic streets
/// and points to 40 streets and 400 points.
fn registry_seed() -> registry::Seed {
    let mut s = seed::hanoi_pilot();
    let codes: Vec<String> = s.districts.iter().map(|(c, _)| c.clone()).collect();
    let pilot_streets = s.points.iter().map(|p| (&p.district, &p.street)).collect::<std::collections::BTreeSet<_>>();
    let extra_streets = STREETS_PER_DISTRICT - pilot_streets.len() / codes.len();
    let extra = POINTS - s.points.len();
    for j in 0..extra {
        let district = &codes[j % codes.len()];
        let n = j / codes.len();
        let street = n % extra_streets + 1;
        s.points.push(PointDraft {
            line: (1000 + j) as u64,
            code: format!("{district}{:03}", 101 + n),
            name: format!("Phố thử {district}-{street} – điểm {}", n + 1),
            district: district.clone(),
            street: format!("Phố thử {district}-{street}"),
            lat: 21.0 + (j % 97) as f64 * 0.0004,
            lon: 105.8 + (j % 89) as f64 * 0.0005,
            curb: None,
            capacity: 10 + (j % 11) as i32,
            vehicle_classes: vec![VehicleClass::Car, VehicleClass::Minibus, VehicleClass::Motorbike],
        });
    }
    s
}

/// The set-based seed of sessions and the ledger (one transaction). `{SESSIONS}` etc. are
/// replaced by the constants of the same name.
const SEED_SQL: &[&str] = &[
    "INSERT INTO staff (name, role, created_at)
     SELECT 'Kiểm soát viên ' || g, 'warden', TIMESTAMPTZ '2026-09-01 00:00+07' FROM generate_series(1, {WARDENS}) g",
    "INSERT INTO drivers (phone, created_at)
     SELECT '+84' || (900000000 + g), TIMESTAMPTZ '2026-09-01 00:00+07' FROM generate_series(1, {DRIVERS}) g",
    "INSERT INTO accounts (kind, ref, created_at)
     SELECT k, r, TIMESTAMPTZ '2026-09-01 00:00+07' FROM (
         SELECT 'wallet' AS k, CAST(id AS TEXT) AS r FROM drivers
         UNION ALL SELECT 'point_revenue', CAST(id AS TEXT) FROM points
         UNION ALL SELECT 'warden_cash', CAST(id AS TEXT) FROM staff WHERE role = 'warden'
         UNION ALL SELECT k, c FROM unnest(ARRAY['carrier_receivable', 'carrier_fee']) k,
                                     unnest(ARRAY['viettel', 'mobifone', 'vinaphone']) c
         UNION ALL VALUES ('processor_clearing', ''), ('refunds', 'card')) a",
    // What each session is: deterministic pseudo-random attributes from hashes of its number.
    "CREATE TEMP TABLE bench_plan ON COMMIT DROP AS
     WITH ref AS (
         SELECT (SELECT array_agg(id ORDER BY id) FROM points) AS points,
                (SELECT array_agg(id ORDER BY id) FROM drivers) AS drivers,
                (SELECT array_agg(id ORDER BY id) FROM staff WHERE role = 'warden') AS wardens,
                ARRAY['viettel', 'mobifone', 'vinaphone'] AS carriers),
     g AS (
         SELECT i, CASE WHEN i <= {SESSIONS} THEN 0 WHEN i % 2 = 1 THEN -1 ELSE 1 END AS m,
                (hashint8extended(i, 1) & 9223372036854775807) AS h1, (hashint8extended(i, 2) & 9223372036854775807) AS h2,
                (hashint8extended(i, 3) & 9223372036854775807) % 100 AS h3, (hashint8extended(i, 4) & 9223372036854775807) % 100 AS h4,
                (hashint8extended(i, 5) & 9223372036854775807) AS h5, (hashint8extended(i, 6) & 9223372036854775807) % 100 AS h6,
                (hashint8extended(i, 7) & 9223372036854775807) % 100 AS h7, (hashint8extended(i, 8) & 9223372036854775807) AS h8,
                (hashint8extended(i, 9) & 9223372036854775807) AS h9
         FROM generate_series(1, {SESSIONS} + {NEIGHBOURS}) i),
     a AS (
         SELECT i,
             CASE m WHEN 0 THEN TIMESTAMPTZ '2026-11-01 00:00+07' WHEN -1 THEN TIMESTAMPTZ '2026-10-01 00:00+07'
                    ELSE TIMESTAMPTZ '2026-12-01 00:00+07' END
                 + make_interval(secs => h1 % ((CASE m WHEN 0 THEN 30 ELSE 31 END) * 86400)) AS started_at,
             ref.points[CAST(1 + h2 % cardinality(ref.points) AS INTEGER)] AS point_id,
             CASE WHEN h3 < 60 THEN 'sms' WHEN h3 < 80 THEN 'wallet' WHEN h3 < 90 THEN 'card' ELSE 'warden_cash' END AS pay,
             CASE WHEN h4 < 80 THEN 'car' WHEN h4 < 95 THEN 'motorbike' ELSE 'minibus' END AS class,
             CAST(1 + h5 % 3 AS INTEGER) AS turns,
             h6 < 20 AS extended, h7 < 5 AS refund_wanted,
             ref.drivers[CAST(1 + h8 % cardinality(ref.drivers) AS INTEGER)] AS driver_id,
             ref.carriers[CAST(1 + h9 % 3 AS INTEGER)] AS carrier,
             ref.wardens[CAST(1 + h9 % cardinality(ref.wardens) AS INTEGER)] AS warden_id,
             '29A-' || lpad(CAST(h8 % 100000 AS TEXT), 5, '0') AS plate,
             '09' || lpad(CAST(h9 % 100000000 AS TEXT), 8, '0') AS phone
         FROM g, ref),
     b AS (
         SELECT a.*, CASE class WHEN 'car' THEN 25000 WHEN 'minibus' THEN 30000 ELSE 5000 END AS price FROM a)
     SELECT row_number() OVER (ORDER BY started_at, i) AS id, b.*,
            turns * price AS start_amount,
            CASE WHEN extended THEN price ELSE 0 END AS ext_amount,
            turns + CASE WHEN extended THEN 1 ELSE 0 END AS total_turns,
            started_at + make_interval(hours => turns + CASE WHEN extended THEN 1 ELSE 0 END) AS paid_until,
            CASE WHEN refund_wanted AND pay IN ('wallet', 'card') THEN price ELSE 0 END AS refund_amount
     FROM b",
    "INSERT INTO sessions (id, driver_id, plate, vehicle_class, point_id, tariff_id, channel, status, started_at,
         paid_until, expires_at, turns, amount_charged, amount_refunded, ended_at, end_reason, notify_phone, created_at)
     SELECT id, CASE WHEN pay IN ('wallet', 'card') THEN driver_id END, plate, class, point_id,
            (SELECT min(id) FROM tariffs),
            CASE pay WHEN 'sms' THEN 'sms' WHEN 'warden_cash' THEN 'warden' ELSE 'app' END, 'ended', started_at,
            paid_until, paid_until + INTERVAL '10 minutes', total_turns, start_amount + ext_amount, refund_amount,
            paid_until, 'expired', CASE WHEN pay = 'sms' THEN phone END, started_at
     FROM bench_plan ORDER BY id",
    // Every payment and refund, numbered in time order (the ledger is append-only).
    "CREATE TEMP TABLE bench_events ON COMMIT DROP AS
     WITH e AS (
         SELECT id AS session_id, 0 AS k, started_at AS created_at, pay, start_amount AS amount, point_id, driver_id,
                carrier, warden_id,
                CASE pay WHEN 'wallet' THEN 'session_start' WHEN 'sms' THEN 'sms_start'
                         WHEN 'card' THEN 'card_session_start' ELSE 'cash_start' END AS kind
         FROM bench_plan
         UNION ALL
         SELECT id, 1, started_at + make_interval(hours => turns) - INTERVAL '5 minutes', pay, ext_amount, point_id,
                driver_id, carrier, warden_id,
                CASE pay WHEN 'wallet' THEN 'session_extend' WHEN 'sms' THEN 'sms_extend'
                         WHEN 'card' THEN 'card_session_extend' ELSE 'cash_extend' END
         FROM bench_plan WHERE extended
         UNION ALL
         SELECT id, 2, paid_until, pay, -refund_amount, point_id, driver_id, carrier, warden_id, 'session_refund'
         FROM bench_plan WHERE refund_amount > 0)
     SELECT row_number() OVER (ORDER BY e.created_at, e.session_id, e.k) AS tx_id, e.*,
            CASE WHEN e.pay = 'sms' THEN (e.amount * 10 + 50) / 100 ELSE 0 END AS fee,
            rev.id AS rev_acc,
            CASE e.pay WHEN 'wallet' THEN w.id WHEN 'sms' THEN cr.id WHEN 'warden_cash' THEN wc.id
                       ELSE CASE WHEN e.amount > 0 THEN pc.id ELSE rf.id END END AS counter_acc,
            cf.id AS fee_acc
     FROM e
     JOIN accounts rev ON rev.kind = 'point_revenue' AND rev.ref = CAST(e.point_id AS TEXT)
     LEFT JOIN accounts w ON w.kind = 'wallet' AND w.ref = CAST(e.driver_id AS TEXT)
     LEFT JOIN accounts cr ON cr.kind = 'carrier_receivable' AND cr.ref = e.carrier
     LEFT JOIN accounts cf ON cf.kind = 'carrier_fee' AND cf.ref = e.carrier
     LEFT JOIN accounts wc ON wc.kind = 'warden_cash' AND wc.ref = CAST(e.warden_id AS TEXT)
     CROSS JOIN (SELECT id FROM accounts WHERE kind = 'processor_clearing') pc
     CROSS JOIN (SELECT id FROM accounts WHERE kind = 'refunds' AND ref = 'card') rf",
    // Wallets are topped up by card before October, enough for what they spend and 100,000 more.
    "CREATE TEMP TABLE bench_topups ON COMMIT DROP AS
     SELECT (SELECT max(tx_id) FROM bench_events) + row_number() OVER (ORDER BY w.id) AS tx_id, w.id AS wallet_acc,
            100000 + COALESCE(SUM(e.amount), 0) AS amount
     FROM accounts w LEFT JOIN bench_events e ON e.pay = 'wallet' AND e.counter_acc = w.id
     WHERE w.kind = 'wallet' GROUP BY w.id",
    "INSERT INTO ledger_transactions (id, kind, session_id, created_at)
     SELECT tx_id, 'card_topup', NULL, TIMESTAMPTZ '2026-09-30 12:00+07' FROM bench_topups
     UNION ALL
     SELECT tx_id, kind, session_id, created_at FROM bench_events ORDER BY 1",
    "INSERT INTO postings (transaction_id, account_id, amount, channel, point_id)
     SELECT t.tx_id, v.account_id, v.amount, v.channel, v.point_id
     FROM bench_topups t
     CROSS JOIN LATERAL (VALUES
         ((SELECT id FROM accounts WHERE kind = 'processor_clearing'), -t.amount, NULL::text, NULL::bigint),
         (t.wallet_acc, t.amount, NULL, NULL)) v(account_id, amount, channel, point_id)
     UNION ALL
     SELECT e.tx_id, v.account_id, v.amount, v.channel, v.point_id
     FROM bench_events e
     CROSS JOIN LATERAL (VALUES
         (e.rev_acc, e.amount, e.pay, e.point_id),
         (e.counter_acc, -(e.amount - e.fee), NULL::text, NULL::bigint),
         (e.fee_acc, -e.fee, 'sms', e.point_id)) v(account_id, amount, channel, point_id)
     WHERE v.amount <> 0
     ORDER BY 1",
    "UPDATE accounts a SET balance = s.total
     FROM (SELECT account_id, CAST(SUM(amount) AS BIGINT) AS total FROM postings GROUP BY account_id) s
     WHERE a.id = s.account_id",
    "SELECT setval('sessions_id_seq', (SELECT max(id) FROM sessions))",
    "SELECT setval('ledger_transactions_id_seq', (SELECT max(id) FROM ledger_transactions))",
];

/// Seeds the database unless the marker says it already holds this seed.
async fn ensure_seeded(url: &str, pool: &PgPool) -> PgStore {
    let marker: Option<(i64, i64, i32, bool)> = if table_exists(pool, "bench_finance_seed").await {
        sqlx::query_as("SELECT sessions, neighbours, version, complete FROM bench_finance_seed")
            .fetch_optional(pool)
            .await
            .expect("reading the seed marker")
    } else {
        None
    };
    if marker == Some((SESSIONS, NEIGHBOURS, SEED_VERSION, true)) {
        eprintln!("finance_revenue: database already seeded ({SESSIONS} + {NEIGHBOURS} sessions), reusing it");
        return connect_store(url).await;
    }
    if table_exists(pool, "bench_finance_seed").await {
        eprintln!("finance_revenue: an older or unfinished bench seed: dropping the public schema");
        sqlx::raw_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
            .execute(pool)
            .await
            .expect("dropping the old seed");
    } else if table_exists(pool, "sessions").await {
        let districts: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM districts").fetch_one(pool).await.expect("counting districts");
        assert_eq!(
            districts, 0,
            "IPARKING_BENCH_PG_URL points to a database with data that is not this bench's seed; use an empty database"
        );
    }
    let started = Instant::now();
    let store = connect_store(url).await;
    store.migrate().await.expect("migrating");
    sqlx::raw_sql(
        "CREATE TABLE bench_finance_seed (sessions BIGINT NOT NULL, neighbours BIGINT NOT NULL, version INTEGER NOT NULL,
             complete BOOLEAN NOT NULL, seconds DOUBLE PRECISION, finance_token TEXT)",
    )
    .execute(pool)
    .await
    .expect("creating the seed marker");
    sqlx::query("INSERT INTO bench_finance_seed VALUES ($1, $2, $3, FALSE, NULL, NULL)")
        .bind(SESSIONS)
        .bind(NEIGHBOURS)
        .bind(SEED_VERSION)
        .execute(pool)
        .await
        .expect("writing the seed marker");
    let now = Utc.with_ymd_and_hms(2026, 9, 1, 0, 0, 0).unwrap();
    let report = registry::load_seed(&store, registry_seed(), now).await.expect("seeding the registry");
    eprintln!(
        "finance_revenue: registry: {} districts, {} points, {} tariffs",
        report.districts_created, report.points_created, report.tariffs_published
    );
    let mut tx = pool.begin().await.expect("begin");
    // As a superuser, skip the per-row triggers (foreign keys, closed periods) while seeding:
    // the rows are consistent by construction and `check_data` checks the ledger.
    let superuser: bool = sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        .fetch_one(&mut *tx)
        .await
        .expect("checking the role");
    if superuser {
        sqlx::raw_sql("SET LOCAL session_replication_role = replica").execute(&mut *tx).await.expect("replica role");
    }
    for (i, sql) in SEED_SQL.iter().enumerate() {
        let step = Instant::now();
        let sql = sql
            .replace("{SESSIONS}", &SESSIONS.to_string())
            .replace("{NEIGHBOURS}", &NEIGHBOURS.to_string())
            .replace("{DRIVERS}", &DRIVERS.to_string())
            .replace("{WARDENS}", &WARDENS.to_string());
        // Our own constants only: nothing from outside goes into the text.
        let r = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
            .execute(&mut *tx)
            .await
            .unwrap_or_else(|e| panic!("seed step {i}: {e}\n{sql}"));
        eprintln!("finance_revenue: seed step {i}: {} rows in {:.1?}", r.rows_affected(), step.elapsed());
    }
    tx.commit().await.expect("commit");
    let step = Instant::now();
    sqlx::raw_sql("VACUUM ANALYZE").execute(pool).await.expect("VACUUM ANALYZE");
    eprintln!("finance_revenue: VACUUM ANALYZE in {:.1?}", step.elapsed());
    let seconds = started.elapsed().as_secs_f64();
    sqlx::query("UPDATE bench_finance_seed SET complete = TRUE, seconds = $1")
        .bind(seconds)
        .execute(pool)
        .await
        .expect("completing the seed marker");
    eprintln!("finance_revenue: seeded in {seconds:.1} s");
    store
}

async fn connect_store(url: &str) -> PgStore {
    PgStore::connect(url, 4).await.expect("connecting the store")
}

async fn table_exists(pool: &PgPool, name: &str) -> bool {
    sqlx::query_scalar::<_, bool>("SELECT to_regclass($1) IS NOT NULL")
        .bind(format!("public.{name}"))
        .fetch_one(pool)
        .await
        .expect("checking a table")
}

/// The seed's shape and the ledger's invariants (balanced transactions, balances equal to
/// the sums of postings), printed and asserted before timing.
async fn check_data(pool: &PgPool) {
    let row = sqlx::query(
        "SELECT (SELECT COUNT(*) FROM sessions) AS sessions, (SELECT COUNT(*) FROM ledger_transactions) AS txs,
                (SELECT COUNT(*) FROM postings) AS postings, (SELECT COUNT(*) FROM points) AS points,
                (SELECT COUNT(*) FROM streets) AS streets, (SELECT COUNT(*) FROM districts) AS districts,
                (SELECT COUNT(*) FROM (SELECT transaction_id FROM postings GROUP BY transaction_id
                    HAVING SUM(amount) <> 0) u) AS unbalanced,
                (SELECT COUNT(*) FROM accounts a LEFT JOIN (SELECT account_id, SUM(amount) AS s FROM postings
                    GROUP BY account_id) p ON p.account_id = a.id WHERE a.balance <> COALESCE(p.s, 0)) AS mismatched,
                (SELECT COUNT(*) FROM postings p WHERE NOT EXISTS (SELECT 1 FROM ledger_transactions t
                    WHERE t.id = p.transaction_id) OR NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = p.account_id)
                    OR (p.point_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM points pt WHERE pt.id = p.point_id)))
                    AS orphans,
                pg_size_pretty(pg_database_size(current_database())) AS size",
    )
    .fetch_one(pool)
    .await
    .expect("checking the data");
    let n = |c: &str| row.get::<i64, _>(c);
    eprintln!(
        "finance_revenue: data: {} sessions, {} ledger transactions, {} postings; {} districts, {} streets, {} points; \
         database {}",
        n("sessions"),
        n("txs"),
        n("postings"),
        n("districts"),
        n("streets"),
        n("points"),
        row.get::<String, _>("size")
    );
    assert_eq!(n("sessions"), SESSIONS + NEIGHBOURS);
    assert_eq!(n("unbalanced"), 0, "unbalanced ledger transactions");
    assert_eq!(n("orphans"), 0, "postings without their transaction, account or point");
    assert_eq!(n("mismatched"), 0, "account balances differ from the sums of their postings");
}

// ---- the three ways of answering -----------------------------------------------------------

/// The baseline: the most direct hand-written query over the ledger.
const BASELINE_SQL: &str = "
SELECT d.code AS district_code, s.id AS street_id, s.name AS street_name, p.channel,
       CAST(COALESCE(SUM(p.amount) FILTER (WHERE a.kind = 'point_revenue'), 0) AS BIGINT) AS gross,
       CAST(COALESCE(-SUM(p.amount) FILTER (WHERE a.kind = 'carrier_fee'), 0) AS BIGINT) AS carrier_share,
       COUNT(*) FILTER (WHERE a.kind = 'point_revenue') AS postings
FROM postings p
JOIN ledger_transactions t ON t.id = p.transaction_id
JOIN accounts a ON a.id = p.account_id
JOIN points pt ON pt.id = p.point_id
JOIN streets s ON s.id = pt.street_id
JOIN districts d ON d.id = s.district_id
WHERE t.created_at >= $1 AND t.created_at < $2
GROUP BY d.id, s.id, p.channel
ORDER BY d.code, s.name, p.channel";

/// Informative: the sessions' own copy of the amounts, by street and session channel.
const NAIVE_SESSIONS_SQL: &str = "
SELECT pt.street_id, s.channel, CAST(SUM(s.amount_charged - s.amount_refunded) AS BIGINT) AS gross, COUNT(*) AS n
FROM sessions s JOIN points pt ON pt.id = s.point_id
WHERE s.started_at >= $1 AND s.started_at < $2
GROUP BY pt.street_id, s.channel";

async fn baseline(pool: &PgPool, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Line> {
    // Plain SQL as one would type it in psql: planned for the dates given, each time (an
    // unnamed statement), not a cached prepared statement.
    let rows =
        sqlx::query(BASELINE_SQL).persistent(false).bind(from).bind(to).fetch_all(pool).await.expect("baseline query");
    rows.iter()
        .map(|r| Line {
            district_code: r.get("district_code"),
            street_id: r.get("street_id"),
            street_name: r.get("street_name"),
            channel: r.get("channel"),
            gross: r.get("gross"),
            carrier_share: r.get("carrier_share"),
            postings: r.get("postings"),
        })
        .collect()
}

async fn naive_sessions(pool: &PgPool, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<(i64, String, i64, i64)> {
    sqlx::query_as(NAIVE_SESSIONS_SQL)
        .persistent(false)
        .bind(from)
        .bind(to)
        .fetch_all(pool)
        .await
        .expect("naive sessions query")
}

fn filter(from: DateTime<Utc>, to: DateTime<Utc>) -> RevenueFilter {
    RevenueFilter {
        from,
        to,
        dims: vec![RevenueDim::Street, RevenueDim::Channel],
        districts: Vec::new(),
        street_id: None,
    }
}

async fn store_revenue(store: &PgStore, f: &RevenueFilter) -> Vec<RevenueRaw> {
    store.revenue(f).await.expect("store.revenue")
}

fn lines_of_store(rows: &[RevenueRaw]) -> Vec<Line> {
    let mut lines: Vec<Line> = rows
        .iter()
        .map(|r| Line {
            district_code: r.district_code.clone().expect("street rows carry the district code"),
            street_id: r.street_id.expect("street rows carry the street id"),
            street_name: r.street_name.clone().expect("street rows carry the street name"),
            channel: r.channel.clone().expect("channel rows carry the channel"),
            gross: r.gross,
            carrier_share: r.carrier_share,
            postings: r.postings,
        })
        .collect();
    lines.sort();
    lines
}

/// The real server on the seeded database, killed when dropped.
struct Server {
    child: Child,
    base: String,
    token: String,
    http: reqwest::Client,
    _data_dir: TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scratch directory (the server's `--data-dir`), removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A finance token (made once with `iparking staff add --role finance` and kept in the marker
/// table), then `iparking serve` on a free loopback port.
async fn start_server(url: &str, pool: &PgPool) -> Server {
    let bin = env!("CARGO_BIN_EXE_iparking");
    let data_dir =
        TempDir(Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("finance-bench-{}", std::process::id())));
    std::fs::create_dir_all(&data_dir.0).expect("server data dir");
    let kept: Option<String> = sqlx::query_scalar("SELECT finance_token FROM bench_finance_seed")
        .fetch_one(pool)
        .await
        .expect("reading the kept token");
    let token = match kept {
        Some(t) => t,
        None => {
            let out = Command::new(bin)
                .args(["--database-url", url, "staff", "add", "--role", "finance", "--name", "Bench finance"])
                .env("IPARKING_DATA_DIR", &data_dir.0)
                .stderr(Stdio::inherit())
                .output()
                .expect("running iparking staff add");
            assert!(out.status.success(), "iparking staff add failed");
            let token = String::from_utf8(out.stdout).expect("token").trim().to_owned();
            sqlx::query("UPDATE bench_finance_seed SET finance_token = $1")
                .bind(&token)
                .execute(pool)
                .await
                .expect("keeping the token");
            token
        }
    };
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let child = Command::new(bin)
        .args(["--database-url", url, "serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("IPARKING_DATA_DIR", &data_dir.0)
        // Never used here (no SMS is sent), but production mode needs a gateway configured.
        .env("IPARKING_SMS_GATEWAYS", "default=http://127.0.0.1:9|bench")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting iparking serve");
    iparking::sms::install_tls_provider();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(120)).build().expect("HTTP client");
    let base = format!("http://127.0.0.1:{port}");
    let mut server = Server { child, base, token, http, _data_dir: data_dir };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = server.child.try_wait().expect("server status") {
            panic!("iparking serve exited: {status}");
        }
        let ok =
            server.http.get(format!("{}/healthz", server.base)).send().await.is_ok_and(|r| r.status().is_success());
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "iparking serve did not answer /healthz within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server
}

/// `GET /v1/finance/revenue` for November 2026 by street and channel; the body, parsed.
async fn http_revenue(server: &Server) -> serde_json::Value {
    let r = server
        .http
        .get(format!("{}/v1/finance/revenue?from=2026-11-01&to=2026-11-30&group_by=street,channel", server.base))
        .bearer_auth(&server.token)
        .send()
        .await
        .expect("GET /v1/finance/revenue");
    let status = r.status();
    let body = r.text().await.expect("body");
    assert!(status.is_success(), "GET /v1/finance/revenue: {status}: {body}");
    serde_json::from_str(&body).expect("JSON body")
}

fn lines_of_http(body: &serde_json::Value) -> Vec<Line> {
    let rows = body["rows"].as_array().expect("rows");
    let s = |r: &serde_json::Value, k: &str| r[k].as_str().unwrap_or_else(|| panic!("row without {k}: {r}")).to_owned();
    let n = |r: &serde_json::Value, k: &str| r[k].as_i64().unwrap_or_else(|| panic!("row without {k}: {r}"));
    let mut lines: Vec<Line> = rows
        .iter()
        .map(|r| Line {
            district_code: s(r, "district_code"),
            street_id: n(r, "street_id"),
            street_name: s(r, "street_name"),
            channel: s(r, "channel"),
            gross: n(r, "gross"),
            carrier_share: n(r, "carrier_share"),
            postings: n(r, "postings"),
        })
        .collect();
    lines.sort();
    lines
}

// ---- report --------------------------------------------------------------------------------

const GROUP: &str = "finance_revenue";
/// Rounds of the interleaved measurement.
const ROUNDS: usize = 9;

fn explain(rt: &Runtime, pool: &PgPool, sql: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    let rows: Vec<String> = rt
        .block_on(
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXPLAIN (ANALYZE, BUFFERS) {sql}")))
                .bind(from)
                .bind(to)
                .fetch_all(pool),
        )
        .expect("EXPLAIN");
    rows.join("\n")
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let url = std::env::var("IPARKING_BENCH_PG_URL").unwrap_or_else(|_| {
        panic!(
            "IPARKING_BENCH_PG_URL is not set: this bench needs a real PostgreSQL (run ./scripts/bench-finance, \
             which starts one)"
        )
    });
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let pool = rt
        .block_on(PgPoolOptions::new().max_connections(2).connect(&url))
        .expect("connecting to IPARKING_BENCH_PG_URL");
    let store = rt.block_on(ensure_seeded(&url, &pool));
    rt.block_on(check_data(&pool));
    let (from, to) = month();
    let f = filter(from, to);

    // Same numbers before any timing.
    let expected = rt.block_on(baseline(&pool, from, to));
    let mut sorted = expected.clone();
    sorted.sort();
    let ours = lines_of_store(&rt.block_on(store_revenue(&store, &f)));
    assert_eq!(ours, sorted, "store.revenue and the baseline SQL disagree");
    let gross: i64 = expected.iter().map(|l| l.gross).sum();
    let share: i64 = expected.iter().map(|l| l.carrier_share).sum();
    let postings: i64 = expected.iter().map(|l| l.postings).sum();
    eprintln!(
        "finance_revenue: {} rows (street × channel); gross {gross} VND, carrier share {share} VND, {postings} revenue \
         postings; store.revenue gives the same rows",
        expected.len()
    );
    let naive = rt.block_on(naive_sessions(&pool, from, to));
    eprintln!(
        "finance_revenue: naive sessions query: {} rows, charged − refunded {} VND over {} sessions (sessions started \
         in the month; extensions and refunds dated after it count here, not in the ledger's month)",
        naive.len(),
        naive.iter().map(|r| r.2).sum::<i64>(),
        naive.iter().map(|r| r.3).sum::<i64>()
    );
    let server = if std::env::var_os("IPARKING_BENCH_NO_HTTP").is_some() {
        None
    } else {
        let server = rt.block_on(start_server(&url, &pool));
        let body = rt.block_on(http_revenue(&server));
        assert_eq!(lines_of_http(&body), sorted, "GET /v1/finance/revenue and the baseline SQL disagree");
        eprintln!("finance_revenue: GET /v1/finance/revenue gives the same rows");
        Some(server)
    };

    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(3))
        .measurement_time(Duration::from_secs(15))
        .configure_from_args();
    let mut g = c.benchmark_group(GROUP);
    g.sampling_mode(SamplingMode::Flat);
    g.bench_function("baseline_sql", |b| b.iter(|| black_box(rt.block_on(baseline(&pool, from, to)))));
    g.bench_function("store_revenue", |b| b.iter(|| black_box(rt.block_on(store_revenue(&store, &f)))));
    if let Some(server) = &server {
        g.bench_function("http_revenue", |b| b.iter(|| black_box(rt.block_on(http_revenue(server)))));
    }
    g.bench_function("naive_sessions_sql", |b| b.iter(|| black_box(rt.block_on(naive_sessions(&pool, from, to)))));
    g.finish();
    c.final_summary();

    // The figures the target is judged on: every way measured in turn, round after round, so
    // load from other work on the machine falls on all of them alike; medians of the rounds.
    let mut times: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    let mut time = |name, d: Duration| times.entry(name).or_default().push(d);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        black_box(rt.block_on(baseline(&pool, from, to)));
        time("baseline_sql", t.elapsed());
        let t = Instant::now();
        black_box(rt.block_on(store_revenue(&store, &f)));
        time("store_revenue", t.elapsed());
        if let Some(server) = &server {
            let t = Instant::now();
            black_box(rt.block_on(http_revenue(server)));
            time("http_revenue", t.elapsed());
        }
        let t = Instant::now();
        black_box(rt.block_on(naive_sessions(&pool, from, to)));
        time("naive_sessions_sql", t.elapsed());
    }
    drop(server);
    if std::env::var_os("IPARKING_BENCH_EXPLAIN").is_some() {
        eprintln!(
            "\n---- EXPLAIN (ANALYZE, BUFFERS) baseline_sql ----\n{}",
            explain(&rt, &pool, BASELINE_SQL, from, to)
        );
    }

    let median = |name: &str| {
        times.get(name).map(|v| {
            let mut v = v.clone();
            v.sort();
            v[v.len() / 2]
        })
    };
    let fastest = |name: &str| times.get(name).and_then(|v| v.iter().min().copied());
    let base = median("baseline_sql").expect("baseline measured");
    println!(
        "\n== {GROUP}: November 2026 by street and channel, {SESSIONS} sessions (+ {NEIGHBOURS} in Oct/Dec); \
         {ROUNDS} interleaved rounds"
    );
    println!("{:<20} {:>12} {:>12} {:>14}", "what", "median", "fastest", "vs. baseline");
    for name in ["baseline_sql", "store_revenue", "http_revenue", "naive_sessions_sql"] {
        match (median(name), fastest(name)) {
            (Some(m), Some(f)) => {
                println!("{name:<20} {:>12} {:>12} {:>13.2}×", ms(m), ms(f), m.as_secs_f64() / base.as_secs_f64())
            }
            _ => println!("{name:<20} {:>12}", "not run"),
        }
    }
    let ratio = median("store_revenue").expect("store measured").as_secs_f64() / base.as_secs_f64();
    if ratio > MAX_RATIO {
        println!("FAIL: store.revenue takes {ratio:.2}× the baseline SQL (limit {MAX_RATIO}×)");
        std::process::exit(1);
    }
    println!("OK: store.revenue takes {ratio:.2}× the baseline SQL (limit {MAX_RATIO}×)");
}
