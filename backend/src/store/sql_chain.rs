//! The SQL of [`super::chain::ChainStore`], shared by both databases.

/// Rows per multi-row statement (3 binds each).
pub(crate) const CHAIN_CHUNK: usize = 500;

#[derive(sqlx::FromRow)]
pub(crate) struct ChainTxRow {
    pub id: i64,
    pub chain_seq: Option<i64>,
    pub chain_hash: Option<String>,
    pub kind: String,
    pub session_id: Option<i64>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

#[derive(sqlx::FromRow)]
pub(crate) struct ChainPostingRow {
    pub transaction_id: i64,
    pub kind: String,
    pub r#ref: String,
    pub amount: i64,
    pub channel: Option<String>,
    pub point_id: Option<i64>,
}

#[derive(sqlx::FromRow)]
pub(crate) struct DigestSqlRow {
    pub day: String,
    pub from_seq: i64,
    pub to_seq: i64,
    pub transactions: i64,
    pub moved: i64,
    pub last_hash: String,
    pub made_at: chrono::DateTime<chrono::Utc>,
}

impl From<DigestSqlRow> for super::chain::DigestRow {
    fn from(r: DigestSqlRow) -> Self {
        Self {
            day: r.day,
            from_seq: r.from_seq,
            to_seq: r.to_seq,
            transactions: r.transactions,
            moved: r.moved,
            last_hash: r.last_hash,
            made_at: r.made_at,
        }
    }
}

/// `rows` with their postings (read in chunks of ids), as the chain sees them.
pub(crate) fn with_postings(
    rows: Vec<ChainTxRow>,
    postings: Vec<ChainPostingRow>,
) -> Vec<crate::domain::ledger_chain::ChainTx> {
    let mut by_tx: std::collections::HashMap<i64, Vec<crate::domain::ledger_chain::ChainPosting>> =
        std::collections::HashMap::new();
    for p in postings {
        by_tx.entry(p.transaction_id).or_default().push(crate::domain::ledger_chain::ChainPosting {
            account_kind: p.kind,
            account_ref: p.r#ref,
            amount: p.amount,
            channel: p.channel,
            point_id: p.point_id,
        });
    }
    rows.into_iter()
        .map(|r| crate::domain::ledger_chain::ChainTx {
            postings: by_tx.remove(&r.id).unwrap_or_default(),
            id: r.id,
            seq: r.chain_seq,
            hash: r.chain_hash,
            kind: r.kind,
            session_id: r.session_id,
            created_at: r.created_at,
        })
        .collect()
}

/// `SELECT … postings … WHERE transaction_id IN ($1, …, $n)` for `n` ids, in posting order.
pub(crate) fn postings_sql(n: usize) -> String {
    let marks: Vec<String> = (1..=n).map(|i| format!("${i}")).collect();
    format!(
        "SELECT p.transaction_id, a.kind, a.ref, p.amount, p.channel, p.point_id FROM postings p JOIN accounts a ON a.id = p.account_id \
         WHERE p.transaction_id IN ({}) ORDER BY p.transaction_id, p.id",
        marks.join(", ")
    )
}

/// `UPDATE ledger_transactions … FROM (VALUES (id, seq, hash), …)` for `n` rows (both
/// databases name a VALUES list's columns `column1`, `column2`, …).
pub(crate) fn seal_sql(n: usize) -> String {
    let values: Vec<String> = (0..n).map(|i| format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3)).collect();
    format!(
        "UPDATE ledger_transactions SET chain_seq = v.column2, chain_hash = v.column3 \
         FROM (VALUES {}) AS v WHERE ledger_transactions.id = v.column1",
        values.join(", ")
    )
}

/// Implements [`super::chain::ChainStore`] for a store with a `pool` and `begin_write`.
macro_rules! sql_chain_store_impl {
    ($store:ty, $db:ty, lock = $lock:literal $(,)?) => {
        impl $store {
            /// `rows` with their postings, read in chunks of ids.
            async fn chain_postings(
                conn: &mut <$db as sqlx::Database>::Connection,
                rows: Vec<$crate::store::sql_chain::ChainTxRow>,
            ) -> $crate::store::StoreResult<Vec<$crate::domain::ledger_chain::ChainTx>> {
                let mut postings = Vec::new();
                for chunk in rows.chunks($crate::store::sql_chain::CHAIN_CHUNK) {
                    let sql = $crate::store::sql_chain::postings_sql(chunk.len());
                    let mut q =
                        sqlx::query_as::<_, $crate::store::sql_chain::ChainPostingRow>(sqlx::AssertSqlSafe(sql));
                    for r in chunk {
                        q = q.bind(r.id);
                    }
                    postings.extend(q.fetch_all(&mut *conn).await.map_err($crate::store::map_sqlx)?);
                }
                Ok($crate::store::sql_chain::with_postings(rows, postings))
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::chain::ChainStore for $store {
            async fn seal_ledger(
                &self,
                key: &[u8],
                cutoff: chrono::DateTime<chrono::Utc>,
                limit: i64,
            ) -> $crate::store::StoreResult<u64> {
                let mut tx = self.begin_write().await?;
                let (mut seq, mut hash): (i64, String) =
                    sqlx::query_as(concat!("SELECT seq, hash FROM ledger_chain_head WHERE id = 1", $lock))
                        .fetch_one(&mut *tx)
                        .await
                        .map_err($crate::store::map_sqlx)?;
                let rows: Vec<$crate::store::sql_chain::ChainTxRow> = sqlx::query_as(
                    "SELECT id, chain_seq, chain_hash, kind, session_id, created_at FROM ledger_transactions \
                     WHERE chain_seq IS NULL AND created_at < $1 ORDER BY created_at, id LIMIT $2",
                )
                .bind(cutoff)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await
                .map_err($crate::store::map_sqlx)?;
                if rows.is_empty() {
                    tx.rollback().await.map_err($crate::store::map_sqlx)?;
                    return Ok(0);
                }
                let txs = Self::chain_postings(&mut tx, rows).await?;
                let mut sealed = Vec::with_capacity(txs.len());
                for t in &txs {
                    seq += 1;
                    hash = $crate::domain::ledger_chain::link(
                        &hash,
                        &$crate::domain::ledger_chain::canonical_line(key, seq, t),
                    );
                    sealed.push((t.id, seq, hash.clone()));
                }
                for chunk in sealed.chunks($crate::store::sql_chain::CHAIN_CHUNK) {
                    let sql = $crate::store::sql_chain::seal_sql(chunk.len());
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for (id, s, h) in chunk {
                        q = q.bind(*id).bind(*s).bind(h.as_str());
                    }
                    q.execute(&mut *tx).await.map_err($crate::store::map_sqlx)?;
                }
                sqlx::query("UPDATE ledger_chain_head SET seq = $1, hash = $2 WHERE id = 1")
                    .bind(seq)
                    .bind(&hash)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::store::map_sqlx)?;
                tx.commit().await.map_err($crate::store::map_sqlx)?;
                Ok(sealed.len() as u64)
            }

            async fn chain_head(&self) -> $crate::store::StoreResult<(i64, String)> {
                sqlx::query_as("SELECT seq, hash FROM ledger_chain_head WHERE id = 1")
                    .fetch_one(&self.pool)
                    .await
                    .map_err($crate::store::map_sqlx)
            }

            async fn chain_txs(
                &self,
                from_seq: i64,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::domain::ledger_chain::ChainTx>> {
                let rows: Vec<$crate::store::sql_chain::ChainTxRow> = sqlx::query_as(
                    "SELECT id, chain_seq, chain_hash, kind, session_id, created_at FROM ledger_transactions \
                     WHERE chain_seq >= $1 ORDER BY chain_seq LIMIT $2",
                )
                .bind(from_seq)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::store::map_sqlx)?;
                let mut conn = self.pool.acquire().await.map_err($crate::store::map_sqlx)?;
                Self::chain_postings(&mut conn, rows).await
            }

            async fn chain_link(&self, seq: i64) -> $crate::store::StoreResult<Option<(i64, String)>> {
                sqlx::query_as("SELECT id, chain_hash FROM ledger_transactions WHERE chain_seq = $1")
                    .bind(seq)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::store::map_sqlx)
            }

            async fn unsealed(&self, before: chrono::DateTime<chrono::Utc>) -> $crate::store::StoreResult<i64> {
                sqlx::query_scalar(
                    "SELECT COUNT(*) FROM ledger_transactions WHERE chain_seq IS NULL AND created_at < $1",
                )
                .bind(before)
                .fetch_one(&self.pool)
                .await
                .map_err($crate::store::map_sqlx)
            }

            async fn first_ledger_time(&self) -> $crate::store::StoreResult<Option<chrono::DateTime<chrono::Utc>>> {
                sqlx::query_scalar("SELECT created_at FROM ledger_transactions ORDER BY created_at LIMIT 1")
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::store::map_sqlx)
            }

            async fn max_seq_between(
                &self,
                from: chrono::DateTime<chrono::Utc>,
                to: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<Option<i64>> {
                sqlx::query_scalar(
                    "SELECT MAX(chain_seq) FROM ledger_transactions WHERE created_at >= $1 AND created_at < $2",
                )
                .bind(from)
                .bind(to)
                .fetch_one(&self.pool)
                .await
                .map_err($crate::store::map_sqlx)
            }

            async fn seq_totals(&self, from_seq: i64, to_seq: i64) -> $crate::store::StoreResult<(i64, i64)> {
                let txs: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM ledger_transactions WHERE chain_seq >= $1 AND chain_seq <= $2",
                )
                .bind(from_seq)
                .bind(to_seq)
                .fetch_one(&self.pool)
                .await
                .map_err($crate::store::map_sqlx)?;
                let moved: i64 = sqlx::query_scalar(
                    "SELECT CAST(COALESCE(SUM(p.amount), 0) AS BIGINT) FROM ledger_transactions t \
                     JOIN postings p ON p.transaction_id = t.id \
                     WHERE t.chain_seq >= $1 AND t.chain_seq <= $2 AND p.amount > 0",
                )
                .bind(from_seq)
                .bind(to_seq)
                .fetch_one(&self.pool)
                .await
                .map_err($crate::store::map_sqlx)?;
                Ok((txs, moved))
            }

            async fn insert_digest(&self, d: &$crate::store::chain::DigestRow) -> $crate::store::StoreResult<bool> {
                let n = sqlx::query(
                    "INSERT INTO ledger_digests (day, from_seq, to_seq, transactions, moved, last_hash, made_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (day) DO NOTHING",
                )
                .bind(&d.day)
                .bind(d.from_seq)
                .bind(d.to_seq)
                .bind(d.transactions)
                .bind(d.moved)
                .bind(&d.last_hash)
                .bind(d.made_at)
                .execute(&self.pool)
                .await
                .map_err($crate::store::map_sqlx)?
                .rows_affected();
                Ok(n == 1)
            }

            async fn digests(&self, limit: i64) -> $crate::store::StoreResult<Vec<$crate::store::chain::DigestRow>> {
                let rows: Vec<$crate::store::sql_chain::DigestSqlRow> = sqlx::query_as(
                    "SELECT day, from_seq, to_seq, transactions, moved, last_hash, made_at FROM ledger_digests \
                     ORDER BY day DESC LIMIT $1",
                )
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::store::map_sqlx)?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn digest(&self, day: &str) -> $crate::store::StoreResult<Option<$crate::store::chain::DigestRow>> {
                let row: Option<$crate::store::sql_chain::DigestSqlRow> = sqlx::query_as(
                    "SELECT day, from_seq, to_seq, transactions, moved, last_hash, made_at FROM ledger_digests \
                     WHERE day = $1",
                )
                .bind(day)
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::store::map_sqlx)?;
                Ok(row.map(Into::into))
            }
        }
    };
}

pub(crate) use sql_chain_store_impl;
