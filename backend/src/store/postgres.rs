//! PostgreSQL: production. Many API nodes share one database.

use std::time::Duration;

use sqlx::{
    Postgres,
    migrate::Migrator,
    postgres::{PgPool, PgPoolOptions},
};

use super::{
    StoreResult, map_sqlx, sql::sql_store_impl, sql_cards::sql_card_store_impl, sql_drivers::sql_driver_store_impl,
    sql_finance::sql_finance_store_impl, sql_wardens::sql_warden_store_impl,
};

static MIGRATOR: Migrator = sqlx::migrate!("../migrations/postgres");

/// The PostgreSQL store.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

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
        Ok(Self { pool })
    }

    fn migrator(&self) -> &'static Migrator {
        &MIGRATOR
    }

    /// A writing transaction; rows are locked with `FOR UPDATE` where it matters.
    async fn begin_write(&self) -> StoreResult<sqlx::Transaction<'static, Postgres>> {
        self.pool.begin().await.map_err(map_sqlx)
    }
}

sql_store_impl!(PgStore, Postgres, "postgres");
sql_driver_store_impl!(PgStore, Postgres, " FOR UPDATE", "pg_advisory_xact_lock(hashtext($1))", true);
sql_card_store_impl!(PgStore, Postgres, " FOR UPDATE");
sql_warden_store_impl!(PgStore, Postgres, " FOR UPDATE");
sql_finance_store_impl!(
    PgStore,
    Postgres,
    " FOR UPDATE",
    "to_char((COL) AT TIME ZONE 'Asia/Ho_Chi_Minh', 'YYYY-MM-DD')"
);
