//! Configuration: flags with environment fallbacks, and connecting the backends they name.

use std::{path::PathBuf, sync::Arc};

use anyhow::Context;

use crate::{
    live::{LiveState, MemoryLive, RedisLive},
    store::{PgStore, SqliteStore, Store},
};

/// Where the durable data lives.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// `postgres://…` for PostgreSQL or `sqlite://FILE`; default: SQLite under --data-dir.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,
    /// Directory of the embedded SQLite database (and, later, uploaded files).
    #[arg(long, env = "IPARKING_DATA_DIR", default_value = "./data", global = true)]
    pub data_dir: PathBuf,
    /// Most PostgreSQL connections this process opens. More than the database server can
    /// run at once add contention, not throughput (docs/operations.md, "Settings").
    #[arg(long, env = "IPARKING_DB_MAX_CONNECTIONS", default_value_t = 8, global = true)]
    pub db_max_connections: u32,
}

impl DatabaseArgs {
    /// Whether this is the embedded default (no URL given).
    pub fn is_embedded_default(&self) -> bool {
        self.database_url.is_none()
    }

    /// Connects to the configured database and applies the migrations.
    pub async fn connect(&self) -> anyhow::Result<Arc<dyn Store>> {
        let store: Arc<dyn Store> = match self.database_url.as_deref() {
            None => Arc::new(
                SqliteStore::open_in(&self.data_dir)
                    .await
                    .with_context(|| format!("opening SQLite under {}", self.data_dir.display()))?,
            ),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Arc::new(PgStore::connect(url, self.db_max_connections).await.context("connecting to PostgreSQL")?)
            }
            Some(url) if url.starts_with("sqlite:") => {
                Arc::new(SqliteStore::connect(url).await.context("opening SQLite")?)
            }
            Some(_) => anyhow::bail!("DATABASE_URL must start with postgres://, postgresql:// or sqlite:"),
        };
        store.migrate().await.context("applying migrations")?;
        Ok(store)
    }
}

/// Where the live state lives.
#[derive(Debug, Clone, clap::Args)]
pub struct LiveArgs {
    /// `redis://…` to share live state between nodes; default: in process.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Prefix of every Redis key (several deployments can share one Redis).
    #[arg(long, env = "IPARKING_REDIS_PREFIX", default_value = "ipk:")]
    pub redis_prefix: String,
}

impl LiveArgs {
    /// Connects to the configured live state.
    pub async fn connect(&self) -> anyhow::Result<Arc<dyn LiveState>> {
        Ok(match &self.redis_url {
            None => Arc::new(MemoryLive::new()),
            Some(url) => Arc::new(RedisLive::connect(url, &self.redis_prefix).await.context("connecting to Redis")?),
        })
    }
}
