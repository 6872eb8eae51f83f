//! Storage of the ledger's hash chain (issue 34): each ledger transaction's place and hash
//! once sealed, the chain's head, and the daily digests. See [`crate::domain::ledger_chain`]
//! and [`crate::app::ledger_chain`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;
use crate::domain::ledger_chain::ChainTx;

/// A day's digest: the chain's segment for a Hanoi day, its last hash and totals.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DigestRow {
    /// The Hanoi day, `YYYY-MM-DD`.
    pub day: String,
    /// The segment's first place (`to_seq + 1` of the day before; greater than `to_seq` for a
    /// day without transactions).
    pub from_seq: i64,
    /// The segment's last place.
    pub to_seq: i64,
    /// Transactions in the segment.
    pub transactions: i64,
    /// Money moved: the sum of the segment's credit postings, VND.
    pub moved: i64,
    /// The hash at `to_seq`.
    pub last_hash: String,
    /// When the digest was made.
    pub made_at: DateTime<Utc>,
}

/// The chain's storage.
#[async_trait]
pub trait ChainStore: Send + Sync {
    /// Seals, in one database transaction, up to `limit` transactions not sealed yet and
    /// written before `cutoff`, in the order they were written, continuing the chain from its
    /// head; `key` makes the personal accounts' pseudonyms. Returns how many were sealed.
    async fn seal_ledger(&self, key: &[u8], cutoff: DateTime<Utc>, limit: i64) -> StoreResult<u64>;
    /// The chain's head: its last place and hash (`0` and the genesis hash when empty).
    async fn chain_head(&self) -> StoreResult<(i64, String)>;
    /// Sealed transactions from place `from_seq` on, in chain order, at most `limit`.
    async fn chain_txs(&self, from_seq: i64, limit: i64) -> StoreResult<Vec<ChainTx>>;
    /// The stored hash at `seq`, with its transaction, if any.
    async fn chain_link(&self, seq: i64) -> StoreResult<Option<(i64, String)>>;
    /// Transactions written before `before` and not sealed yet.
    async fn unsealed(&self, before: DateTime<Utc>) -> StoreResult<i64>;
    /// When the first ledger transaction was written.
    async fn first_ledger_time(&self) -> StoreResult<Option<DateTime<Utc>>>;
    /// The last place of a transaction written in `[from, to)`.
    async fn max_seq_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> StoreResult<Option<i64>>;
    /// Transactions and money moved (credits) at places `from_seq..=to_seq`.
    async fn seq_totals(&self, from_seq: i64, to_seq: i64) -> StoreResult<(i64, i64)>;
    /// Stores a digest unless the day has one (another node's); whether it was stored.
    async fn insert_digest(&self, digest: &DigestRow) -> StoreResult<bool>;
    /// Digests, latest first, at most `limit`.
    async fn digests(&self, limit: i64) -> StoreResult<Vec<DigestRow>>;
    /// One day's digest.
    async fn digest(&self, day: &str) -> StoreResult<Option<DigestRow>>;
}
