//! `seed`: a synthetic city (the library's `seed::synthetic`, as `iparking seed synthetic`)
//! and, on PostgreSQL, past sessions with their ledger written by set-based SQL — the approach
//! of `backend/benches/finance_revenue.rs`, adapted to the synthetic city and to the last
//! `days` days before now.

use std::{sync::Arc, time::Instant};

use anyhow::{Context, bail};
use iparking::{
    auth::token_hash,
    config::DatabaseArgs,
    domain::{ledger::Entry, money::Vnd},
    registry, seed,
    store::Store,
};
use rand::Rng;
use sqlx::postgres::PgPoolOptions;

/// Seeds `points` synthetic points (idempotent: present points are kept) and, when
/// `sessions > 0`, that many ended sessions with their ledger (PostgreSQL only; the
/// database must have no sessions or drivers yet).
pub async fn run(
    url: &str,
    points: usize,
    rng_seed: u64,
    sessions: i64,
    days: i64,
    drivers: i64,
) -> anyhow::Result<()> {
    let args =
        DatabaseArgs { database_url: Some(url.to_owned()), data_dir: std::env::temp_dir(), db_max_connections: 4 };
    let store: Arc<dyn Store> = args.connect().await?;
    let started = Instant::now();
    let r = registry::load_seed(store.as_ref(), seed::synthetic(points, rng_seed), chrono::Utc::now()).await?;
    println!(
        "registry: districts created {}, points created {}, already present {}, tariffs published {} ({:.1?})",
        r.districts_created,
        r.points_created,
        r.points_present,
        r.tariffs_published,
        started.elapsed()
    );
    if sessions == 0 {
        return Ok(());
    }
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        bail!("seeding past sessions needs PostgreSQL (set-based SQL); run with --sessions 0 on SQLite");
    }
    anyhow::ensure!(days >= 1 && drivers >= 1, "--days and --drivers must be at least 1");
    let pool = PgPoolOptions::new().max_connections(1).connect(url).await.context("connecting to PostgreSQL")?;
    let (present, present_drivers): (i64, i64) =
        sqlx::query_as("SELECT (SELECT COUNT(*) FROM sessions), (SELECT COUNT(*) FROM drivers)")
            .fetch_one(&pool)
            .await?;
    if present > 0 || present_drivers > 0 {
        bail!(
            "the database already has {present} sessions and {present_drivers} drivers; seed sessions into a fresh one"
        );
    }
    let mut tx = pool.begin().await?;
    // As a superuser, skip the per-row triggers while seeding (as the bench does): the rows
    // are consistent by construction.
    let superuser: bool =
        sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetch_one(&mut *tx).await?;
    if superuser {
        sqlx::raw_sql("SET LOCAL session_replication_role = replica").execute(&mut *tx).await?;
    }
    for (i, sql) in SESSIONS_SQL.iter().enumerate() {
        let step = Instant::now();
        let sql = fill(sql, sessions, days, drivers);
        // Only our own integers go into the text.
        let r = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
            .execute(&mut *tx)
            .await
            .with_context(|| format!("session seed step {i}:\n{sql}"))?;
        eprintln!("seed: step {i}: {} rows in {:.1?}", r.rows_affected(), step.elapsed());
    }
    tx.commit().await?;
    sqlx::raw_sql("VACUUM ANALYZE").execute(&pool).await?;
    println!("sessions: {sessions} over the last {days} days, {drivers} drivers ({:.1?} in all)", started.elapsed());
    Ok(())
}

/// Makes `count` load-test drivers (phones `+84988000001`…, created when missing), each with a
/// new bearer token and `wallet` VND of SANDBOX play money (a balanced `sandbox_topup`
/// transaction, the demo gateway's own entry: never real money), and writes the tokens, one
/// per line, to `out` (created with mode 0600: they are credentials).
pub async fn driver_tokens(url: &str, count: u32, wallet: i64, out: &std::path::Path) -> anyhow::Result<()> {
    anyhow::ensure!((1..=100_000).contains(&count), "--driver-tokens must be 1..=100000");
    anyhow::ensure!(wallet >= 0, "--wallet-vnd must not be negative");
    let args =
        DatabaseArgs { database_url: Some(url.to_owned()), data_dir: std::env::temp_dir(), db_max_connections: 4 };
    let store: Arc<dyn Store> = args.connect().await?;
    let now = chrono::Utc::now();
    let mut tokens = String::new();
    for i in 1..=count {
        let phone = format!("+84988{i:06}");
        let driver_id = store.upsert_driver(&phone, now).await?;
        let mut bytes = [0u8; 32];
        rand::rng().fill(&mut bytes);
        let token = format!("{}{}", iparking::http::drivers::DRIVER_TOKEN_PREFIX, hex::encode(bytes));
        store.create_driver_token(driver_id, &token_hash(&token), now).await?;
        if wallet > 0 {
            let entry = Entry::sandbox_topup(driver_id, Vnd(wallet)).map_err(|e| anyhow::anyhow!("{e}"))?;
            store.sandbox_topup(driver_id, &entry, None, &iparking::store::drivers::no_wallet_answer, now).await?;
        }
        tokens.push_str(&token);
        tokens.push('\n');
    }
    write_private(out, &tokens)?;
    println!("drivers: {count} tokens written to {}, {wallet} VND of sandbox play money each", out.display());
    Ok(())
}

fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let mut f = o.open(path).with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// The SQL with its placeholders replaced by numbers.
pub fn fill(sql: &str, sessions: i64, days: i64, drivers: i64) -> String {
    sql.replace("{SESSIONS}", &sessions.to_string())
        .replace("{DAYS}", &days.to_string())
        .replace("{DRIVERS}", &drivers.to_string())
        .replace("{WARDENS}", "20")
}

/// Adapted from `SEED_SQL` of `backend/benches/finance_revenue.rs`: sessions start in the
/// `{DAYS}` days before now (not a fixed month), there are no neighbouring months, classes
/// are those the synthetic city sells (90% cars, 10% motorbikes), and existing accounts
/// (e.g. a server's `processor_clearing`) are reused rather than duplicated.
const SESSIONS_SQL: &[&str] = &[
    "INSERT INTO staff (name, role, created_at)
     SELECT 'Kiểm soát viên tải ' || g, 'warden', now() - INTERVAL '{DAYS} days' - INTERVAL '1 day'
     FROM generate_series(1, {WARDENS}) g",
    "INSERT INTO drivers (phone, created_at)
     SELECT '+84' || (900000000 + g), now() - INTERVAL '{DAYS} days' - INTERVAL '1 day' FROM generate_series(1, {DRIVERS}) g",
    "INSERT INTO accounts (kind, ref, created_at)
     SELECT k, r, now() - INTERVAL '{DAYS} days' - INTERVAL '1 day' FROM (
         SELECT 'wallet' AS k, CAST(id AS TEXT) AS r FROM drivers
         UNION ALL SELECT 'point_revenue', CAST(id AS TEXT) FROM points
         UNION ALL SELECT 'warden_cash', CAST(id AS TEXT) FROM staff WHERE role = 'warden'
         UNION ALL SELECT k, c FROM unnest(ARRAY['carrier_receivable', 'carrier_fee']) k,
                                     unnest(ARRAY['viettel', 'mobifone', 'vinaphone']) c
         UNION ALL VALUES ('processor_clearing', ''), ('refunds', 'card')) a
     WHERE NOT EXISTS (SELECT 1 FROM accounts x WHERE x.kind = a.k AND x.ref = a.r)",
    "CREATE TEMP TABLE lt_plan ON COMMIT DROP AS
     WITH ref AS (
         SELECT (SELECT array_agg(id ORDER BY id) FROM points) AS points,
                (SELECT array_agg(id ORDER BY id) FROM drivers) AS drivers,
                (SELECT array_agg(id ORDER BY id) FROM staff WHERE role = 'warden') AS wardens,
                ARRAY['viettel', 'mobifone', 'vinaphone'] AS carriers,
                date_trunc('hour', now()) - INTERVAL '{DAYS} days' - INTERVAL '1 day' AS t0),
     g AS (
         SELECT i,
                (hashint8extended(i, 1) & 9223372036854775807) AS h1, (hashint8extended(i, 2) & 9223372036854775807) AS h2,
                (hashint8extended(i, 3) & 9223372036854775807) % 100 AS h3, (hashint8extended(i, 4) & 9223372036854775807) % 100 AS h4,
                (hashint8extended(i, 5) & 9223372036854775807) AS h5, (hashint8extended(i, 6) & 9223372036854775807) % 100 AS h6,
                (hashint8extended(i, 7) & 9223372036854775807) % 100 AS h7, (hashint8extended(i, 8) & 9223372036854775807) AS h8,
                (hashint8extended(i, 9) & 9223372036854775807) AS h9
         FROM generate_series(1, {SESSIONS}) i),
     a AS (
         SELECT i, ref.t0 + make_interval(secs => h1 % ({DAYS} * 86400)) AS started_at,
             ref.points[CAST(1 + h2 % cardinality(ref.points) AS INTEGER)] AS point_id,
             CASE WHEN h3 < 60 THEN 'sms' WHEN h3 < 80 THEN 'wallet' WHEN h3 < 90 THEN 'card' ELSE 'warden_cash' END AS pay,
             CASE WHEN h4 < 90 THEN 'car' ELSE 'motorbike' END AS class,
             CAST(1 + h5 % 3 AS INTEGER) AS turns,
             h6 < 20 AS extended, h7 < 5 AS refund_wanted,
             ref.drivers[CAST(1 + h8 % cardinality(ref.drivers) AS INTEGER)] AS driver_id,
             ref.carriers[CAST(1 + h9 % 3 AS INTEGER)] AS carrier,
             ref.wardens[CAST(1 + h9 % cardinality(ref.wardens) AS INTEGER)] AS warden_id,
             '29A-' || lpad(CAST(h8 % 100000 AS TEXT), 5, '0') AS plate,
             '09' || lpad(CAST(h9 % 100000000 AS TEXT), 8, '0') AS phone
         FROM g, ref),
     b AS (SELECT a.*, CASE class WHEN 'car' THEN 25000 ELSE 5000 END AS price FROM a)
     SELECT (SELECT COALESCE(max(id), 0) FROM sessions) + row_number() OVER (ORDER BY started_at, i) AS id, b.*,
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
     FROM lt_plan ORDER BY id",
    "CREATE TEMP TABLE lt_events ON COMMIT DROP AS
     WITH e AS (
         SELECT id AS session_id, 0 AS k, started_at AS created_at, pay, start_amount AS amount, point_id, driver_id,
                carrier, warden_id,
                CASE pay WHEN 'wallet' THEN 'session_start' WHEN 'sms' THEN 'sms_start'
                         WHEN 'card' THEN 'card_session_start' ELSE 'cash_start' END AS kind
         FROM lt_plan
         UNION ALL
         SELECT id, 1, started_at + make_interval(hours => turns) - INTERVAL '5 minutes', pay, ext_amount, point_id,
                driver_id, carrier, warden_id,
                CASE pay WHEN 'wallet' THEN 'session_extend' WHEN 'sms' THEN 'sms_extend'
                         WHEN 'card' THEN 'card_session_extend' ELSE 'cash_extend' END
         FROM lt_plan WHERE extended
         UNION ALL
         SELECT id, 2, paid_until, pay, -refund_amount, point_id, driver_id, carrier, warden_id, 'session_refund'
         FROM lt_plan WHERE refund_amount > 0)
     SELECT (SELECT COALESCE(max(id), 0) FROM ledger_transactions) + row_number() OVER (ORDER BY e.created_at, e.session_id, e.k) AS tx_id, e.*,
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
     CROSS JOIN (SELECT min(id) AS id FROM accounts WHERE kind = 'processor_clearing') pc
     CROSS JOIN (SELECT min(id) AS id FROM accounts WHERE kind = 'refunds' AND ref = 'card') rf",
    // Wallets topped up by card the day before the first session, enough for what they spend.
    "CREATE TEMP TABLE lt_topups ON COMMIT DROP AS
     SELECT (SELECT max(tx_id) FROM lt_events) + row_number() OVER (ORDER BY w.id) AS tx_id, w.id AS wallet_acc,
            100000 + COALESCE(SUM(e.amount), 0) AS amount
     FROM accounts w JOIN drivers d ON w.ref = CAST(d.id AS TEXT)
     LEFT JOIN lt_events e ON e.pay = 'wallet' AND e.counter_acc = w.id
     WHERE w.kind = 'wallet' GROUP BY w.id",
    "INSERT INTO ledger_transactions (id, kind, session_id, created_at)
     SELECT tx_id, 'card_topup', NULL, date_trunc('hour', now()) - INTERVAL '{DAYS} days' - INTERVAL '1 day' FROM lt_topups
     UNION ALL
     SELECT tx_id, kind, session_id, created_at FROM lt_events ORDER BY 1",
    "INSERT INTO postings (transaction_id, account_id, amount, channel, point_id)
     SELECT t.tx_id, v.account_id, v.amount, v.channel, v.point_id
     FROM lt_topups t
     CROSS JOIN LATERAL (VALUES
         ((SELECT min(id) FROM accounts WHERE kind = 'processor_clearing'), -t.amount, NULL::text, NULL::bigint),
         (t.wallet_acc, t.amount, NULL, NULL)) v(account_id, amount, channel, point_id)
     UNION ALL
     SELECT e.tx_id, v.account_id, v.amount, v.channel, v.point_id
     FROM lt_events e
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_is_filled() {
        for sql in SESSIONS_SQL {
            let s = fill(sql, 1_000_000, 30, 20_000);
            assert!(!s.contains('{'), "unfilled placeholder in:\n{s}");
        }
        assert!(fill(SESSIONS_SQL[3], 1_000_000, 30, 1).contains("generate_series(1, 1000000)"));
    }
}
