//! SQLite: the embedded default. One file under the data directory, WAL journal.

use std::{path::Path, str::FromStr, time::Duration};

use sqlx::{
    Sqlite,
    migrate::Migrator,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous},
};

use super::{
    StoreError, StoreResult, cds::sql_cds_store_impl, map_sqlx, sql::sql_store_impl, sql_cards::sql_card_store_impl,
    sql_chain::sql_chain_store_impl, sql_drivers::sql_driver_store_impl, sql_finance::sql_finance_store_impl,
    sql_wardens::sql_warden_store_impl,
};

/// The embedded migrations. A version the database has and this build does not know is a
/// newer release's (migrations only expand: docs/decisions/0015-rolling-upgrades.md), so it
/// is ignored: a node of the previous release keeps running, and restarts, during a rolling
/// upgrade.
static MIGRATOR: std::sync::LazyLock<Migrator> = std::sync::LazyLock::new(|| {
    let mut m = sqlx::migrate!("../migrations/sqlite");
    m.set_ignore_missing(true);
    m
});

/// The SQLite store.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` (`sqlite://path` or `sqlite::memory:`).
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Internal(format!("bad SQLite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(opts)
            .await
            .map_err(map_sqlx)?;
        Ok(Self { pool })
    }

    /// Opens `iparking.db` in `dir`, creating the directory.
    pub async fn open_in(dir: &Path) -> StoreResult<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Unavailable(format!("cannot create data directory {}: {e}", dir.display())))?;
        Self::connect(&format!("sqlite://{}", dir.join("iparking.db").display())).await
    }

    fn migrator(&self) -> &'static Migrator {
        &MIGRATOR
    }

    /// A writing transaction. `BEGIN IMMEDIATE` takes SQLite's write lock at once, so two
    /// writers queue (busy timeout) instead of deadlocking when both read then write.
    async fn begin_write(&self) -> StoreResult<sqlx::Transaction<'static, Sqlite>> {
        self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(map_sqlx)
    }

    /// PostgreSQL starts a session in one call (`PgStore::start_in_one`) to save round
    /// trips. SQLite runs in the process, where statements cost none: `None` always, and
    /// the start takes the statement path.
    #[allow(clippy::unused_async)]
    async fn start_in_one(
        &self,
        _new: &crate::store::drivers::NewSession,
        _claim: &crate::store::drivers::IdemClaim,
        _point_code: &str,
        _answer: &crate::store::drivers::StartAnswer<'_>,
        _now: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<Option<crate::store::drivers::StartOutcome>> {
        Ok(None)
    }
}

// SQLite's dialect: no row locks (a write transaction takes the database's one write lock
// at its start, `BEGIN IMMEDIATE`), so no plate lock either; no writes inside WITH; plate
// checks written by multi-row VALUES and their facts asked one by one; a local day as UTC+7
// (Hanoi has no daylight saving).
sql_store_impl!(SqliteStore, Sqlite, backend = "sqlite");
sql_driver_store_impl!(SqliteStore, Sqlite, lock = "", row_lock = "", plate_lock = "length($1)", cte_writes = false);
sql_card_store_impl!(SqliteStore, Sqlite, lock = "");
sql_warden_store_impl!(
    SqliteStore,
    Sqlite,
    lock = "",
    insert_checks = crate::store::sql_wardens::insert_checks_values,
    checks_chunk = crate::store::sql::INSERT_CHUNK,
    facts_batch = crate::store::sql_wardens::plate_facts_each::<SqliteStore>,
);
sql_finance_store_impl!(SqliteStore, Sqlite, lock = "", local_day = "date(COL, '+7 hours')");
sql_cds_store_impl!(SqliteStore, Sqlite, local_hour = "strftime('%Y-%m-%d %H', COL, '+7 hours')");
sql_chain_store_impl!(SqliteStore, Sqlite, lock = "");
