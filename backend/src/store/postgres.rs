//! PostgreSQL: production. Many API nodes share one database.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::domain::money::Vnd;
use sqlx::{
    Postgres,
    migrate::Migrator,
    postgres::{PgPool, PgPoolOptions},
};

use chrono::{DateTime, SubsecRound, Utc};

use super::{
    StoreError, StoreResult,
    cds::sql_cds_store_impl,
    drivers::{IdemClaim, NewSession, StartAnswer, StartOutcome},
    map_sqlx,
    sql::sql_store_impl,
    sql_cards::sql_card_store_impl,
    sql_chain::sql_chain_store_impl,
    sql_drivers::sql_driver_store_impl,
    sql_finance::sql_finance_store_impl,
    sql_wardens::sql_warden_store_impl,
};

/// The embedded migrations. A version the database has and this build does not know is a
/// newer release's (migrations only expand: docs/decisions/0015-rolling-upgrades.md), so it
/// is ignored: a node of the previous release keeps running, and restarts, during a rolling
/// upgrade.
static MIGRATOR: std::sync::LazyLock<Migrator> = std::sync::LazyLock::new(|| {
    let mut m = sqlx::migrate!("../migrations/postgres");
    m.set_ignore_missing(true);
    m
});

/// The PostgreSQL store.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Session ids reserved from `sessions_id_seq` for one-call starts (see
    /// [`PgStore::start_in_one`]), handed out in ascending order.
    session_ids: Arc<Mutex<Vec<i64>>>,
}

/// How many session ids a node reserves at a time: one round trip per this many starts.
/// Ids left unused when the node stops are gaps, as a sequence's own cache leaves.
const SESSION_ID_BLOCK: i64 = 16;

impl PgStore {
    /// Connects to `postgres://…`. The pool is lazy-tolerant: a database that is down
    /// makes calls fail with `Unavailable` (503) instead of killing the process.
    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(3))
            // sqlx pings every connection it hands out by default: one more round trip per
            // transaction or query, a fifth of a plate check's miss under load. Only a
            // connection idle for a while is pinged (and replaced if the server went away);
            // one in use moments ago fails on its first query like any other, and the
            // call answers 503.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= Duration::from_secs(1) {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect(url)
            .await
            .map_err(map_sqlx)?;
        Ok(Self { pool, session_ids: Arc::default() })
    }

    fn migrator(&self) -> &'static Migrator {
        &MIGRATOR
    }

    /// A writing transaction; rows are locked with `FOR UPDATE` where it matters.
    async fn begin_write(&self) -> StoreResult<sqlx::Transaction<'static, Postgres>> {
        self.pool.begin().await.map_err(map_sqlx)
    }

    /// A session id from the node's reserve, refilled from `sessions_id_seq` a block at a
    /// time. Ids are unique across nodes; like the sequence's own per-connection cache,
    /// they follow start order within a node only.
    async fn reserve_session_id(&self) -> StoreResult<i64> {
        if let Some(id) = self.session_ids.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Ok(id);
        }
        let ids: Vec<i64> = sqlx::query_scalar("SELECT nextval('sessions_id_seq') FROM generate_series(1, $1)")
            .bind(SESSION_ID_BLOCK)
            .fetch_all(&self.pool)
            .await
            .map_err(map_sqlx)?;
        let mut reserve = self.session_ids.lock().unwrap_or_else(|e| e.into_inner());
        reserve.extend(ids);
        // Highest first: `pop` hands them out in ascending order.
        reserve.sort_unstable_by(|a, b| b.cmp(a));
        let id = reserve.pop().ok_or_else(|| StoreError::Internal("nextval returned no rows".into()))?;
        Ok(id)
    }

    /// A session start in one round trip: `iparking_try_start_session2` (migrations 0012, 0015,
    /// 0016)
    /// makes the checks and writes of the statement path in `sql_drivers.rs`, in one
    /// implicit transaction. The answer is rendered first, from the row as it will be stored
    /// (a reserved id, times at the database's microsecond precision), and stored with the
    /// key by the same call. It returns its refusals, leaving nothing written (its key taken
    /// back), so that they are not errors in PostgreSQL's log: a key already used
    /// (`Conflict("idempotency_keys_pkey")`, replayed by the caller) and a wallet that lacks
    /// money too, whether its read found it or its debit did after a concurrent one.
    /// `None`: the call is not for this path
    /// (a session past its expiry is still open there, or the point's code changed):
    /// nothing was written, and the caller runs the statement path.
    async fn start_in_one(
        &self,
        new: &NewSession,
        c: &IdemClaim,
        point_code: &str,
        answer: &StartAnswer<'_>,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<StartOutcome>> {
        let id = self.reserve_session_id().await?;
        let row = new.row(
            id,
            point_code.to_owned(),
            new.started_at.trunc_subsecs(6),
            new.paid_until.trunc_subsecs(6),
            new.expires_at.trunc_subsecs(6),
        );
        let (status, body) = answer(&row)?;
        let postings = &new.entry.postings;
        // 1-based, for the function's arrays.
        let lock_order: Vec<i32> = new.entry.lock_order().into_iter().map(|i| i as i32 + 1).collect();
        let kinds: Vec<&str> = postings.iter().map(|p| p.account.kind.as_str()).collect();
        let refs: Vec<&str> = postings.iter().map(|p| p.account.reference.as_str()).collect();
        let amounts: Vec<i64> = postings.iter().map(|p| p.amount.get()).collect();
        let channels: Vec<Option<&str>> = postings.iter().map(|p| p.revenue.map(|(c, _)| c.as_str())).collect();
        let points: Vec<Option<i64>> = postings.iter().map(|p| p.revenue.map(|(_, point)| point)).collect();
        let done: Result<Option<String>, _> = sqlx::query_scalar(
            "SELECT iparking_try_start_session2($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
             $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28)",
        )
        .bind(id)
        .bind(new.driver_id)
        .bind(new.plate.as_str())
        .bind(new.vehicle_class.as_str())
        .bind(new.point_id)
        .bind(point_code)
        .bind(new.tariff_id)
        .bind(new.channel.as_str())
        .bind(row.started_at)
        .bind(row.paid_until)
        .bind(row.expires_at)
        .bind(new.turns as i32)
        .bind(new.amount.get())
        .bind(new.notify_phone.as_deref())
        .bind(now)
        .bind(new.entry.kind)
        .bind(&new.quote)
        .bind(kinds)
        .bind(refs)
        .bind(amounts)
        .bind(channels)
        .bind(points)
        .bind(lock_order)
        .bind(&c.scope)
        .bind(&c.key)
        .bind(&c.request_hash)
        .bind(i32::from(status))
        .bind(&body)
        .fetch_one(&self.pool)
        .await;
        let number = |m: &str| {
            m.parse::<i64>().map_err(|_| StoreError::Internal(format!("iparking_try_start_session2 said {m:?}")))
        };
        let refusal = match done.map_err(map_sqlx)? {
            None => return Ok(Some(StartOutcome::Started(row, Vec::new(), (status, body)))),
            Some(refusal) => refusal,
        };
        let (code, detail) = refusal.split_once(':').unwrap_or((refusal.as_str(), ""));
        Ok(Some(match code {
            "IPK01" => StartOutcome::PointClosed,
            "IPK02" => match session_where(&self.pool, "s.id = $1", number(detail)?).await? {
                Some(active) if active.active => StartOutcome::PlateActive(active),
                // Stopped since the call saw it: nothing was written; the statement path
                // decides again under the locks.
                _ => return Ok(None),
            },
            "IPK03" => StartOutcome::PointFull,
            "IPK05" => StartOutcome::InsufficientFunds { balance: Vnd(number(detail)?) },
            "IPK09" => return Ok(None),
            "IPK10" => return Err(StoreError::Conflict("idempotency_keys_pkey".into())),
            _ => return Err(StoreError::Internal(format!("iparking_try_start_session2 said {refusal:?}"))),
        }))
    }
}

// PostgreSQL's dialect: row locks (`FOR UPDATE`; `FOR NO KEY UPDATE` for points and sessions,
// see `sql_driver_store_impl`), a plate's lock as a transaction-scoped advisory lock, writes
// inside WITH, plate checks written by COPY and their facts asked in batches, a local day by
// the time zone.
sql_store_impl!(PgStore, Postgres, backend = "postgres");
sql_driver_store_impl!(
    PgStore,
    Postgres,
    lock = " FOR UPDATE",
    row_lock = " FOR NO KEY UPDATE",
    plate_lock = "pg_advisory_xact_lock(hashtext($1))",
    cte_writes = true,
);
sql_card_store_impl!(PgStore, Postgres, lock = " FOR UPDATE");
sql_warden_store_impl!(
    PgStore,
    Postgres,
    lock = " FOR UPDATE",
    insert_checks = crate::store::sql_wardens::insert_checks_copy,
    checks_chunk = crate::store::sql_wardens::COPY_CHUNK,
    facts_batch = plate_facts_batch,
);

async fn plate_facts_batch(
    store: &PgStore,
    asks: &[crate::store::wardens::FactAsk],
) -> StoreResult<Vec<crate::store::wardens::PlateFacts>> {
    crate::store::sql_wardens::plate_facts_json(&store.pool, asks).await
}
sql_finance_store_impl!(
    PgStore,
    Postgres,
    lock = " FOR UPDATE",
    local_day = "to_char((COL) AT TIME ZONE 'Asia/Ho_Chi_Minh', 'YYYY-MM-DD')",
);
sql_cds_store_impl!(
    PgStore,
    Postgres,
    local_hour = "to_char((COL) AT TIME ZONE 'Asia/Ho_Chi_Minh', 'YYYY-MM-DD HH24')"
);
sql_chain_store_impl!(PgStore, Postgres, lock = " FOR UPDATE");
