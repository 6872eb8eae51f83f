//! The SQL behind [`CardStore`](super::cards::CardStore), shared by SQLite and PostgreSQL
//! like `sql_drivers.rs` (whose transaction helpers it uses: `post`, `claim`, `lock_plate`,
//! `insert_session`, `apply_extension`, `session_where`, `expire_in`).

use chrono::{DateTime, Utc};

use super::{
    StoreError,
    cards::{ChargeRow, RefundRow, SavedCard},
    stored_name,
};
use crate::domain::{
    charge::{RefundSource, RefundStatus},
    money::Vnd,
};

/// Columns of a charge with its card and customer.
pub const CHARGE_SELECT: &str = "SELECT c.id, c.driver_id, c.card_id, k.payment_method_id, pc.customer_id, c.amount, \
     c.plan, c.session_id, c.intent_id, c.status, c.failure_code, c.amount_refunded, c.idem_key, c.action_deadline, \
     c.created_at, c.updated_at FROM card_charges c JOIN saved_cards k ON k.id = c.card_id \
     LEFT JOIN processor_customers pc ON pc.driver_id = c.driver_id";

/// Columns of a refund.
pub const REFUND_SELECT: &str = "SELECT id, source, charge_id, intent_id, driver_id, session_id, amount, reason, \
     requested_by, processor_refund_id, status, failure_reason, created_at FROM refunds";

/// Columns of a saved card.
pub const CARD_SELECT: &str =
    "SELECT id, driver_id, payment_method_id, brand, last4, exp_month, exp_year, created_at FROM saved_cards";

#[derive(sqlx::FromRow)]
pub struct ChargeDbRow {
    id: i64,
    driver_id: i64,
    card_id: i64,
    payment_method_id: String,
    customer_id: Option<String>,
    amount: i64,
    plan: String,
    session_id: Option<i64>,
    intent_id: Option<String>,
    status: String,
    failure_code: Option<String>,
    amount_refunded: i64,
    idem_key: String,
    action_deadline: DateTime<Utc>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<ChargeDbRow> for ChargeRow {
    type Error = StoreError;
    fn try_from(r: ChargeDbRow) -> Result<Self, StoreError> {
        Ok(ChargeRow {
            plan: serde_json::from_str(&r.plan)
                .map_err(|e| StoreError::Internal(format!("charge {} has an unreadable plan: {e}", r.id)))?,
            id: r.id,
            driver_id: r.driver_id,
            card_id: r.card_id,
            payment_method_id: r.payment_method_id,
            customer_id: r.customer_id,
            amount: Vnd(r.amount),
            session_id: r.session_id,
            intent_id: r.intent_id,
            status: crate::domain::charge::ChargeStatus::parse(&r.status)
                .ok_or_else(|| StoreError::Internal(format!("charge {} has an unknown status", r.id)))?,
            failure_code: r.failure_code,
            amount_refunded: Vnd(r.amount_refunded),
            idem_key: r.idem_key,
            action_deadline: r.action_deadline,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct RefundDbRow {
    id: i64,
    source: String,
    charge_id: Option<i64>,
    intent_id: String,
    driver_id: i64,
    session_id: Option<i64>,
    amount: i64,
    reason: String,
    requested_by: String,
    processor_refund_id: Option<String>,
    status: String,
    failure_reason: Option<String>,
    created_at: DateTime<Utc>,
}

impl TryFrom<RefundDbRow> for RefundRow {
    type Error = StoreError;
    fn try_from(r: RefundDbRow) -> Result<Self, StoreError> {
        Ok(RefundRow {
            source: stored_name(RefundSource::parse, &r.source, "refund", r.id)?,
            status: stored_name(RefundStatus::parse, &r.status, "refund", r.id)?,
            id: r.id,
            charge_id: r.charge_id,
            intent_id: r.intent_id,
            driver_id: r.driver_id,
            session_id: r.session_id,
            amount: Vnd(r.amount),
            reason: r.reason,
            requested_by: r.requested_by,
            processor_refund_id: r.processor_refund_id,
            failure_reason: r.failure_reason,
            created_at: r.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct CardDbRow {
    id: i64,
    driver_id: i64,
    payment_method_id: String,
    brand: String,
    last4: String,
    exp_month: i32,
    exp_year: i32,
    created_at: DateTime<Utc>,
}

impl From<CardDbRow> for SavedCard {
    fn from(r: CardDbRow) -> Self {
        SavedCard {
            id: r.id,
            driver_id: r.driver_id,
            payment_method_id: r.payment_method_id,
            brand: r.brand,
            last4: r.last4,
            exp_month: r.exp_month,
            exp_year: r.exp_year,
            created_at: r.created_at,
        }
    }
}

/// Implements `CardStore` for `$store` (a pool in `self.pool`, `self.begin_write()`), with
/// `$lock` the row-lock suffix (`" FOR UPDATE"` or `""`).
macro_rules! sql_card_store_impl {
    ($store:ty, $db:ty, lock = $lock:expr) => {
        #[async_trait::async_trait]
        impl $crate::store::cards::CardStore for $store {
            async fn processor_customer(&self, driver_id: i64) -> $crate::store::StoreResult<Option<String>> {
                sqlx::query_scalar("SELECT customer_id FROM processor_customers WHERE driver_id = $1")
                    .bind(driver_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::store::map_sqlx)
            }

            async fn put_processor_customer(
                &self,
                driver_id: i64,
                customer: &str,
                gateway: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<String> {
                sqlx::query(
                    "INSERT INTO processor_customers (driver_id, customer_id, gateway, created_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (driver_id) DO NOTHING",
                )
                .bind(driver_id)
                .bind(customer)
                .bind(gateway)
                .bind(now)
                .execute(&self.pool)
                .await
                .map_err($crate::store::map_sqlx)?;
                sqlx::query_scalar("SELECT customer_id FROM processor_customers WHERE driver_id = $1")
                    .bind(driver_id)
                    .fetch_one(&self.pool)
                    .await
                    .map_err($crate::store::map_sqlx)
            }

            async fn record_setup(
                &self,
                setup: &$crate::store::cards::SetupRecord<'_>,
                idem: Option<&$crate::store::drivers::IdemClaim>,
                answer: &$crate::store::drivers::Answer<'_, Option<$crate::store::cards::SavedCard>>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<Option<$crate::store::cards::SavedCard>> {
                let $crate::store::cards::SetupRecord { setup_id, driver_id, status, sandbox_card } = *setup;
                let mut tx = self.begin_write().await?;
                claim(&mut tx, idem, now).await?;
                sqlx::query(
                    "INSERT INTO card_setups (id, driver_id, status, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(setup_id)
                .bind(driver_id)
                .bind(status)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err($crate::store::map_sqlx)?;
                let saved = match sandbox_card {
                    Some(card) => save_card_in(&mut tx, setup_id, card, now).await?,
                    None => None,
                };
                answer_claim(&mut tx, idem, answer, &saved).await?;
                tx.commit().await.map_err($crate::store::map_sqlx)?;
                Ok(saved)
            }

            async fn setup_driver(&self, setup_id: &str) -> $crate::store::StoreResult<Option<i64>> {
                sqlx::query_scalar("SELECT driver_id FROM card_setups WHERE id = $1")
                    .bind(setup_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::store::map_sqlx)
            }

            async fn save_card(
                &self,
                setup_id: &str,
                card: &$crate::payments::CardInfo,
                event: Option<(&str, &str)>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<Option<$crate::store::cards::SavedCard>> {
                let mut tx = self.begin_write().await?;
                if !fresh_event(&mut tx, event, setup_id, now).await? {
                    return Ok(None);
                }
                let saved = save_card_in(&mut tx, setup_id, card, now).await?;
                tx.commit().await.map_err($crate::store::map_sqlx)?;
                Ok(saved)
            }

            async fn cards(&self, driver_id: i64) -> $crate::store::StoreResult<Vec<$crate::store::cards::SavedCard>> {
                let sql = sqlx::AssertSqlSafe(format!(
                    "{} WHERE driver_id = $1 AND removed_at IS NULL ORDER BY id",
                    $crate::store::sql_cards::CARD_SELECT
                ));
                let rows: Vec<$crate::store::sql_cards::CardDbRow> =
                    sqlx::query_as(sql).bind(driver_id).fetch_all(&self.pool).await.map_err($crate::store::map_sqlx)?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn remove_card(
                &self,
                driver_id: i64,
                card_id: i64,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<Option<$crate::store::cards::SavedCard>> {
                let sql = sqlx::AssertSqlSafe(format!(
                    "{} WHERE id = $1 AND driver_id = $2 AND removed_at IS NULL",
                    $crate::store::sql_cards::CARD_SELECT
                ));
                let row: Option<$crate::store::sql_cards::CardDbRow> = sqlx::query_as(sql)
                    .bind(card_id)
                    .bind(driver_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::store::map_sqlx)?;
                if row.is_some() {
                    sqlx::query("UPDATE saved_cards SET removed_at = $3 WHERE id = $1 AND driver_id = $2")
                        .bind(card_id)
                        .bind(driver_id)
                        .bind(now)
                        .execute(&self.pool)
                        .await
                        .map_err($crate::store::map_sqlx)?;
                }
                Ok(row.map(Into::into))
            }

            async fn create_charge(
                &self,
                new: &$crate::store::cards::NewCharge,
                idem: &$crate::store::drivers::IdemClaim,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<$crate::store::cards::ChargeRow> {
                let plan = serde_json::to_string(&new.plan).map_err(|e| $crate::store::StoreError::Internal(e.to_string()))?;
                let purpose = match new.plan {
                    $crate::store::cards::ChargePlan::Start { .. } => "session_start",
                    $crate::store::cards::ChargePlan::Extend { .. } => "session_extend",
                };
                let mut tx = self.begin_write().await?;
                claim(&mut tx, Some(idem), now).await?;
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO card_charges (driver_id, card_id, purpose, amount, plan, status, idem_scope, idem_key, \
                     action_deadline, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8, $9, $9) \
                     RETURNING id",
                )
                .bind(new.driver_id)
                .bind(new.card_id)
                .bind(purpose)
                .bind(new.amount.get())
                .bind(plan)
                .bind(&idem.scope)
                .bind(&idem.key)
                .bind(new.action_deadline)
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .map_err($crate::store::map_sqlx)?;
                let row = charge_where(&mut *tx, "c.id = $1", id).await?
                    .ok_or_else(|| $crate::store::StoreError::Internal("inserted charge vanished".into()))?;
                tx.commit().await.map_err($crate::store::map_sqlx)?;
                Ok(row)
            }

            async fn charge_by_idem(&self, scope: &str, key: &str) -> $crate::store::StoreResult<Option<$crate::store::cards::ChargeRow>> {
                let sql = sqlx::AssertSqlSafe(format!(
                    "{} WHERE c.idem_scope = $1 AND c.idem_key = $2",
                    $crate::store::sql_cards::CHARGE_SELECT
                ));
                let row: Option<$crate::store::sql_cards::ChargeDbRow> = sqlx::query_as(sql)
                    .bind(scope)
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::store::map_sqlx)?;
                row.map(TryInto::try_into).transpose()
            }

            async fn charge(&self, id: i64) -> $crate::store::StoreResult<Option<$crate::store::cards::ChargeRow>> {
                charge_where(&self.pool, "c.id = $1", id).await
            }

            async fn charge_by_intent(&self, intent_id: &str) -> $crate::store::StoreResult<Option<$crate::store::cards::ChargeRow>> {
                charge_where(&self.pool, "c.intent_id = $1", intent_id.to_owned()).await
            }

            async fn mark_charge(
                &self,
                id: i64,
                intent_id: Option<&str>,
                status: $crate::domain::charge::ChargeStatus,
                failure_code: Option<&str>,
                event: Option<(&str, &str)>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<$crate::store::cards::MarkOutcome> {
                use $crate::store::cards::MarkOutcome;
                let mut tx = self.begin_write().await?;
                if !fresh_event(&mut tx, event, intent_id.unwrap_or(""), now).await? {
                    return Ok(MarkOutcome::Duplicate);
                }
                let Some(current) = lock_charge(&mut tx, id).await? else {
                    tx.commit().await.map_err($crate::store::map_sqlx)?;
                    return Ok(MarkOutcome::Unknown);
                };
                if !matches!(current.as_str(), "pending" | "requires_action") {
                    tx.commit().await.map_err($crate::store::map_sqlx)?;
                    return Ok(MarkOutcome::Final(current));
                }
                sqlx::query(
                    "UPDATE card_charges SET status = $2, intent_id = COALESCE($3, intent_id), failure_code = $4, \
                     updated_at = $5 WHERE id = $1",
                )
                .bind(id)
                .bind(status.as_str())
                .bind(intent_id)
                .bind(failure_code)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err($crate::store::map_sqlx)?;
                tx.commit().await.map_err($crate::store::map_sqlx)?;
                Ok(MarkOutcome::Updated)
            }

            async fn settle_charge(
                &self,
                id: i64,
                intent_id: &str,
                charge_ref: Option<&str>,
                event: Option<(&str, &str)>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<$crate::store::cards::SettleOutcome> {
                use $crate::store::cards::{ChargePlan, SettleOutcome};
                let mut tx = self.begin_write().await?;
                if !fresh_event(&mut tx, event, intent_id, now).await? {
                    return Ok(SettleOutcome::Duplicate);
                }
                let Some(status) = lock_charge(&mut tx, id).await? else {
                    tx.commit().await.map_err($crate::store::map_sqlx)?;
                    return Ok(SettleOutcome::Unknown);
                };
                let charge = charge_where(&mut *tx, "c.id = $1", id).await?
                    .ok_or_else(|| $crate::store::StoreError::Internal("locked charge vanished".into()))?;
                match status.as_str() {
                    "succeeded" => {
                        let session = match charge.session_id {
                            Some(s) => session_where(&mut *tx, "s.id = $1", s).await?,
                            None => None,
                        };
                        tx.commit().await.map_err($crate::store::map_sqlx)?;
                        return Ok(SettleOutcome::AlreadyApplied(session));
                    }
                    "refund_due" => {
                        tx.commit().await.map_err($crate::store::map_sqlx)?;
                        return Ok(SettleOutcome::AlreadyRefundDue(charge.failure_code.unwrap_or_default()));
                    }
                    _ => {}
                }
                sqlx::query("UPDATE card_charges SET intent_id = $2, updated_at = $3 WHERE id = $1")
                    .bind(id)
                    .bind(intent_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::store::map_sqlx)?;
                // What the charge bought, if it can still be given.
                let mut refused: Option<String> = None;
                let mut applied: Option<(i64, Vec<$crate::store::drivers::SessionRow>, bool)> = None;
                if !matches!(status.as_str(), "pending" | "requires_action" | "failed") {
                    // Given up on (abandoned, cancelled) before the success arrived. (A
                    // success after a failure is a retried intent that finally paid: applied.)
                    refused = Some(format!("late_{status}"));
                } else {
                    match &charge.plan {
                        ChargePlan::Start { plate, vehicle_class, point_id, capacity, tariff_id, started_at, paid_until, expires_at, turns, quote } => {
                            lock_plate(&mut tx, plate).await?;
                            let locked = sqlx::AssertSqlSafe(format!("SELECT id FROM points WHERE id = $1{ROW_LOCK}"));
                            sqlx::query(locked).bind(*point_id).execute(&mut *tx).await.map_err($crate::store::map_sqlx)?;
                            let expired = expire_in(&mut tx, "(s.plate = $2 OR s.point_id = $3)", Some((plate.as_str(), *point_id)), now).await?;
                            let active = session_where(&mut *tx, "s.plate = $1 AND s.status = 'active'", plate.clone()).await?;
                            let occupied: i64 =
                                sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE point_id = $1 AND status = 'active'")
                                    .bind(*point_id)
                                    .fetch_one(&mut *tx)
                                    .await
                                    .map_err($crate::store::map_sqlx)?;
                            let capacity_now: Option<i32> = sqlx::query_scalar("SELECT capacity FROM points WHERE id = $1")
                                .bind(*point_id)
                                .fetch_optional(&mut *tx)
                                .await
                                .map_err($crate::store::map_sqlx)?;
                            let capacity = capacity_now.unwrap_or(*capacity);
                            if active.is_some() {
                                refused = Some("plate_active".into());
                            } else if occupied >= i64::from(capacity) {
                                refused = Some("point_full".into());
                            } else if now >= *paid_until {
                                refused = Some("window_passed".into());
                            } else {
                                let plate = $crate::domain::plate::Plate::parse(plate)
                                    .map_err(|e| $crate::store::StoreError::Internal(format!("stored plate: {e:?}")))?;
                                let new = $crate::store::drivers::NewSession {
                                    driver_id: Some(charge.driver_id),
                                    plate,
                                    vehicle_class: *vehicle_class,
                                    point_id: *point_id,
                                    tariff_id: *tariff_id,
                                    channel: $crate::domain::session::SessionChannel::App,
                                    started_at: *started_at,
                                    paid_until: *paid_until,
                                    expires_at: *expires_at,
                                    turns: *turns,
                                    amount: charge.amount,
                                    quote: quote.clone(),
                                    entry: $crate::domain::ledger::Entry::card_payment("card_session_start", *point_id, charge.amount)
                                        .map_err(|e| $crate::store::StoreError::Internal(e.to_string()))?,
                                    notify_phone: None,
                                };
                                match insert_session(&mut tx, &new, now).await? {
                                    Ok(inserted) => applied = Some((inserted.id, expired, true)),
                                    Err(_) => return Err($crate::store::StoreError::Internal("a card payment cannot lack funds".into())),
                                }
                            }
                        }
                        ChargePlan::Extend { session_id, turns_before, turns_after, paid_until, expires_at, quote } => {
                            match lock_session(&mut tx, *session_id, charge.driver_id).await? {
                                Some(row) if row.active && row.expires_at > now && row.turns == *turns_before => {
                                    let change = $crate::store::drivers::PricedChange {
                                        turns: *turns_after,
                                        paid_until: *paid_until,
                                        expires_at: *expires_at,
                                        amount: charge.amount,
                                        entry: Some(
                                            $crate::domain::ledger::Entry::card_payment("card_session_extend", row.point_id, charge.amount)
                                                .map_err(|e| $crate::store::StoreError::Internal(e.to_string()))?,
                                        ),
                                        quote: Some(quote.clone()),
                                    };
                                    if apply_extension(&mut tx, &row, &change, now).await?.is_err() {
                                        return Err($crate::store::StoreError::Internal("a card payment cannot lack funds".into()));
                                    }
                                    applied = Some((row.id, Vec::new(), false));
                                }
                                Some(row) if !row.active || row.expires_at <= now => refused = Some("session_ended".into()),
                                _ => refused = Some("session_changed".into()),
                            }
                        }
                    }
                }
                if let Some((session_id, expired, started)) = applied {
                    sqlx::query(
                        "UPDATE card_charges SET status = 'succeeded', session_id = $2, charge_ref = $3, failure_code = NULL, \
                         updated_at = $4 WHERE id = $1",
                    )
                    .bind(id)
                    .bind(session_id)
                    .bind(charge_ref)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::store::map_sqlx)?;
                    let row = session_where(&mut *tx, "s.id = $1", session_id).await?
                        .ok_or_else(|| $crate::store::StoreError::Internal("session vanished".into()))?;
                    tx.commit().await.map_err($crate::store::map_sqlx)?;
                    return Ok(SettleOutcome::Applied(row, expired, started));
                }
                let reason = refused.unwrap_or_else(|| "not_applicable".into());
                // Paid but not given: owed back to the card, and refunded in full.
                let entry = $crate::domain::ledger::Entry::transfer(
                    "card_charge_unapplied",
                    $crate::domain::ledger::Account::processor(),
                    $crate::domain::ledger::Account::card_refunds(),
                    charge.amount,
                )
                .map_err(|e| $crate::store::StoreError::Internal(e.to_string()))?;
                if post(&mut tx, &entry, None, now).await?.is_err() {
                    return Err($crate::store::StoreError::Internal("owing back cannot overdraw".into()));
                }
                let session_ref = match &charge.plan {
                    ChargePlan::Extend { session_id, .. } => Some(*session_id),
                    ChargePlan::Start { .. } => None,
                };
                let refund = $crate::store::cards::NewRefund {
                    source: "card_charge", charge_id: Some(id), intent_id, driver_id: charge.driver_id, session_id: session_ref,
                    amount: charge.amount, reason: &reason, requested_by: "system",
                };
                let refund_id = insert_refund(&mut tx, &refund, now).await?;
                sqlx::query(
                    "UPDATE card_charges SET status = 'refund_due', failure_code = $2, charge_ref = $3, \
                     amount_refunded = amount, updated_at = $4 WHERE id = $1",
                )
                .bind(id)
                .bind(&reason)
                .bind(charge_ref)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err($crate::store::map_sqlx)?;
                tx.commit().await.map_err($crate::store::map_sqlx)?;
                Ok(SettleOutcome::RefundDue { refund_id, reason })
            }

            async fn open_charges(
                &self,
                before: chrono::DateTime<chrono::Utc>,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::cards::ChargeRow>> {
                let sql = sqlx::AssertSqlSafe(format!(
                    "{} WHERE c.status IN ('pending', 'requires_action') AND c.updated_at < $1 ORDER BY c.id LIMIT $2",
                    $crate::store::sql_cards::CHARGE_SELECT
                ));
                let rows: Vec<$crate::store::sql_cards::ChargeDbRow> = sqlx::query_as(sql)
                    .bind(before)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::store::map_sqlx)?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn refund_session(
                &self,
                refund: &$crate::store::cards::SessionRefundOrder<'_>,
                idem: Option<&$crate::store::drivers::IdemClaim>,
                answer: &$crate::store::drivers::Answer<'_, ($crate::store::drivers::SessionRow, Vec<$crate::store::cards::RefundRow>)>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<$crate::store::cards::SessionRefund> {
                use $crate::store::cards::SessionRefund;
                let $crate::store::cards::SessionRefundOrder { session_id, amount, reason, requested_by } = *refund;
                let mut tx = self.begin_write().await?;
                claim(&mut tx, idem, now).await?;
                let locked = sqlx::AssertSqlSafe(format!("SELECT id FROM sessions WHERE id = $1{ROW_LOCK}"));
                let found: Option<i64> =
                    sqlx::query_scalar(locked).bind(session_id).fetch_optional(&mut *tx).await.map_err($crate::store::map_sqlx)?;
                let Some(_) = found else { return Ok(SessionRefund::NotFound) };
                let row = session_where(&mut *tx, "s.id = $1", session_id).await?
                    .ok_or_else(|| $crate::store::StoreError::Internal("locked session vanished".into()))?;
                if row.driver_id.is_none() {
                    return Ok(SessionRefund::NotRefundable);
                }
                let refundable = row.amount_charged - row.amount_refunded;
                if amount > refundable {
                    return Ok(SessionRefund::TooLarge { refundable });
                }
                let refunds = allocate_refund(&mut tx, &row, amount, reason, requested_by, now).await?;
                sqlx::query("UPDATE sessions SET amount_refunded = amount_refunded + $2 WHERE id = $1")
                    .bind(session_id)
                    .bind(amount.get())
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::store::map_sqlx)?;
                let row = session_where(&mut *tx, "s.id = $1", session_id).await?
                    .ok_or_else(|| $crate::store::StoreError::Internal("session vanished".into()))?;
                let mut refunds = committed_refunds(&mut tx, &refunds).await?;
                refunds.sort_by_key(|r| r.id);
                let done = (row, refunds);
                answer_claim(&mut tx, idem, answer, &done).await?;
                tx.commit().await.map_err($crate::store::map_sqlx)?;
                let (row, refunds) = done;
                Ok(SessionRefund::Done(Box::new(row), refunds))
            }

            async fn close_account(
                &self,
                driver_id: i64,
                sandbox: bool,
                idem: Option<&$crate::store::drivers::IdemClaim>,
                answer: &$crate::store::drivers::Answer<'_, (Vec<$crate::store::cards::RefundRow>, $crate::domain::money::Vnd)>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<$crate::store::cards::CloseAccount> {
                use $crate::domain::{ledger::Account, money::Vnd};
                use $crate::store::cards::CloseAccount;
                let mut tx = self.begin_write().await?;
                claim(&mut tx, idem, now).await?;
                let locked = sqlx::AssertSqlSafe(format!("SELECT closed_at FROM drivers WHERE id = $1{}", $lock));
                let closed: Option<Option<chrono::DateTime<chrono::Utc>>> =
                    sqlx::query_scalar(locked).bind(driver_id).fetch_optional(&mut *tx).await.map_err($crate::store::map_sqlx)?;
                match closed {
                    None => return Err($crate::store::StoreError::Internal("closing a driver that does not exist".into())),
                    Some(Some(_)) => return Ok(CloseAccount::AlreadyClosed),
                    Some(None) => {}
                }
                let active: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM sessions WHERE driver_id = $1 AND status = 'active' AND expires_at > $2",
                )
                .bind(driver_id)
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .map_err($crate::store::map_sqlx)?;
                if active > 0 {
                    return Ok(CloseAccount::ActiveSessions);
                }
                let open: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM card_charges WHERE driver_id = $1 AND status IN ('pending', 'requires_action')",
                )
                .bind(driver_id)
                .fetch_one(&mut *tx)
                .await
                .map_err($crate::store::map_sqlx)?;
                if open > 0 {
                    return Ok(CloseAccount::PaymentInProgress);
                }
                let balance: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(balance), 0) FROM accounts WHERE kind = 'wallet' AND ref = $1")
                    .bind(driver_id.to_string())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err($crate::store::map_sqlx)?;
                let requested_by = format!("driver:{driver_id}");
                let order = $crate::store::cards::BackToOriginOrder {
                    driver_id, from: Account::wallet(driver_id), amount: Vnd(balance), sandbox, rest_to_wallet: false,
                    kind: "account_close_refund", reason: "account_closed", requested_by: &requested_by,
                };
                let back = refund_to_origin(&mut tx, &order, now).await?;
                let (refunds, left) = (back.refunds, back.left.get());
                sqlx::query("UPDATE drivers SET closed_at = $2 WHERE id = $1")
                    .bind(driver_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::store::map_sqlx)?;
                sqlx::query("UPDATE driver_tokens SET revoked_at = $2 WHERE driver_id = $1 AND revoked_at IS NULL")
                    .bind(driver_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::store::map_sqlx)?;
                // A closed account gets no more reminders on any browser.
                sqlx::query("DELETE FROM push_subscriptions WHERE driver_id = $1")
                    .bind(driver_id)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::store::map_sqlx)?;
                let done = (committed_refunds(&mut tx, &refunds).await?, Vnd(left));
                answer_claim(&mut tx, idem, answer, &done).await?;
                tx.commit().await.map_err($crate::store::map_sqlx)?;
                let (refunds, left) = done;
                Ok(CloseAccount::Closed(refunds, left))
            }

            async fn session_refunds(&self, session_id: i64) -> $crate::store::StoreResult<Vec<$crate::store::cards::RefundRow>> {
                refunds_where(&self.pool, "session_id = $1 ORDER BY id", session_id).await
            }

            async fn driver_refunds(&self, driver_id: i64) -> $crate::store::StoreResult<Vec<$crate::store::cards::RefundRow>> {
                refunds_where(&self.pool, "driver_id = $1 ORDER BY id DESC", driver_id).await
            }

            async fn refund_by_processor_id(
                &self,
                processor_refund_id: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::cards::RefundRow>> {
                refund_where(&self.pool, "processor_refund_id = $1", processor_refund_id.to_owned()).await
            }

            async fn refund(&self, id: i64) -> $crate::store::StoreResult<Option<$crate::store::cards::RefundRow>> {
                refund_where(&self.pool, "id = $1", id).await
            }

            async fn unsubmitted_refunds(
                &self,
                before: chrono::DateTime<chrono::Utc>,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::cards::RefundRow>> {
                let sql = sqlx::AssertSqlSafe(format!(
                    "{} WHERE status = 'pending' AND updated_at < $1 ORDER BY id LIMIT $2",
                    $crate::store::sql_cards::REFUND_SELECT
                ));
                let rows: Vec<$crate::store::sql_cards::RefundDbRow> = sqlx::query_as(sql)
                    .bind(before)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::store::map_sqlx)?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn refund_submitted(
                &self,
                id: i64,
                processor_refund_id: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "UPDATE refunds SET processor_refund_id = $2, status = CASE WHEN status = 'pending' THEN 'submitted' \
                     ELSE status END, updated_at = $3 WHERE id = $1",
                )
                .bind(id)
                .bind(processor_refund_id)
                .bind(now)
                .execute(&self.pool)
                .await
                .map_err($crate::store::map_sqlx)?;
                Ok(())
            }

            async fn settle_refund(
                &self,
                id: i64,
                status: &str,
                failure_reason: Option<&str>,
                event: Option<(&str, &str)>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<$crate::store::cards::RefundSettle> {
                use $crate::domain::ledger::{Account, Entry};
                use $crate::store::cards::RefundSettle;
                let mut tx = self.begin_write().await?;
                if !fresh_event(&mut tx, event, &id.to_string(), now).await? {
                    return Ok(RefundSettle::Duplicate);
                }
                let locked = sqlx::AssertSqlSafe(format!("SELECT status FROM refunds WHERE id = $1{}", $lock));
                let current: Option<String> =
                    sqlx::query_scalar(locked).bind(id).fetch_optional(&mut *tx).await.map_err($crate::store::map_sqlx)?;
                let Some(current) = current else {
                    tx.commit().await.map_err($crate::store::map_sqlx)?;
                    return Ok(RefundSettle::Unknown);
                };
                if matches!(current.as_str(), "succeeded" | "failed") {
                    tx.commit().await.map_err($crate::store::map_sqlx)?;
                    return Ok(RefundSettle::AlreadyFinal);
                }
                let refund = refund_where(&mut *tx, "id = $1", id).await?
                    .ok_or_else(|| $crate::store::StoreError::Internal("locked refund vanished".into()))?;
                let outcome = match status {
                    "succeeded" => {
                        let entry = Entry::transfer("card_refund_settled", Account::card_refunds(), Account::processor(), refund.amount)
                            .map_err(|e| $crate::store::StoreError::Internal(e.to_string()))?;
                        if post(&mut tx, &entry, refund.session_id, now).await?.is_err() {
                            return Err($crate::store::StoreError::Internal("settling cannot overdraw".into()));
                        }
                        sqlx::query("UPDATE refunds SET status = 'succeeded', updated_at = $2, settled_at = $2 WHERE id = $1")
                            .bind(id)
                            .bind(now)
                            .execute(&mut *tx)
                            .await
                            .map_err($crate::store::map_sqlx)?;
                        RefundSettle::Settled(true)
                    }
                    "failed" | "canceled" => {
                        // The card cannot take it back: the driver keeps it in the wallet.
                        let entry = Entry::transfer(
                            "card_refund_failed",
                            Account::card_refunds(),
                            Account::wallet(refund.driver_id),
                            refund.amount,
                        )
                        .map_err(|e| $crate::store::StoreError::Internal(e.to_string()))?;
                        if post(&mut tx, &entry, refund.session_id, now).await?.is_err() {
                            return Err($crate::store::StoreError::Internal("a failed refund cannot overdraw".into()));
                        }
                        sqlx::query(
                            "UPDATE refunds SET status = 'failed', failure_reason = $3, updated_at = $2, settled_at = $2 WHERE id = $1",
                        )
                        .bind(id)
                        .bind(now)
                        .bind(failure_reason.unwrap_or(status))
                        .execute(&mut *tx)
                        .await
                        .map_err($crate::store::map_sqlx)?;
                        RefundSettle::Settled(false)
                    }
                    _ => {
                        sqlx::query(
                            "UPDATE refunds SET status = CASE WHEN processor_refund_id IS NULL THEN status ELSE 'submitted' END, \
                             updated_at = $2 WHERE id = $1",
                        )
                        .bind(id)
                        .bind(now)
                        .execute(&mut *tx)
                        .await
                        .map_err($crate::store::map_sqlx)?;
                        RefundSettle::Pending
                    }
                };
                tx.commit().await.map_err($crate::store::map_sqlx)?;
                Ok(outcome)
            }

            async fn uncredited_topups(
                &self,
                from: chrono::DateTime<chrono::Utc>,
                before: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<Vec<String>> {
                sqlx::query_scalar(
                    "SELECT id FROM payment_intents WHERE credited_at IS NULL AND gateway <> 'sandbox' \
                     AND status NOT IN ('canceled') AND created_at >= $1 AND created_at < $2 ORDER BY created_at LIMIT 200",
                )
                .bind(from)
                .bind(before)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::store::map_sqlx)
            }

            async fn try_lease(
                &self,
                name: &str,
                holder: &str,
                until: chrono::DateTime<chrono::Utc>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<bool> {
                let n = sqlx::query(
                    "INSERT INTO job_leases (name, holder, until) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until \
                     WHERE job_leases.until < $4 OR job_leases.holder = excluded.holder",
                )
                .bind(name)
                .bind(holder)
                .bind(until)
                .bind(now)
                .execute(&self.pool)
                .await
                .map_err($crate::store::map_sqlx)?
                .rows_affected();
                Ok(n == 1)
            }

            async fn import_state(&self, kind: &str) -> $crate::store::StoreResult<$crate::store::cards::ImportState> {
                let row: Option<(i64, Option<i64>, Option<String>, Option<i64>)> = sqlx::query_as(
                    "SELECT high_water, run_from, cursor, run_max FROM stripe_import_state WHERE kind = $1",
                )
                .bind(kind)
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::store::map_sqlx)?;
                Ok(match row {
                    None => $crate::store::cards::ImportState::default(),
                    Some((high_water, run_from, cursor, run_max)) => $crate::store::cards::ImportState {
                        high_water,
                        run: run_from.map(|f| (f, cursor, run_max.unwrap_or(0))),
                    },
                })
            }

            async fn import_page(
                &self,
                kind: &str,
                run_from: i64,
                page: &$crate::store::cards::SettlementPage,
                done: bool,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<usize> {
                use $crate::store::cards::SettlementPage;
                let ts = |s: i64| chrono::DateTime::<chrono::Utc>::from_timestamp(s, 0).unwrap_or_default();
                let mut tx = self.begin_write().await?;
                let (count, last, newest) = match page {
                    SettlementPage::Balance(items) => {
                        for t in items {
                            sqlx::query(
                                "INSERT INTO stripe_balance_transactions (id, type, reporting_category, amount, fee, net, currency, \
                                 status, source, created, available_on, imported_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                                 ON CONFLICT (id) DO UPDATE SET status = excluded.status, imported_at = excluded.imported_at",
                            )
                            .bind(&t.id)
                            .bind(&t.type_)
                            .bind(&t.reporting_category)
                            .bind(t.amount)
                            .bind(t.fee)
                            .bind(t.net)
                            .bind(&t.currency)
                            .bind(&t.status)
                            .bind(t.source.as_deref())
                            .bind(ts(t.created))
                            .bind(ts(t.available_on))
                            .bind(now)
                            .execute(&mut *tx)
                            .await
                            .map_err($crate::store::map_sqlx)?;
                        }
                        (items.len(), items.last().map(|t| t.id.clone()), items.iter().map(|t| t.created).max())
                    }
                    SettlementPage::Payouts(items) => {
                        for p in items {
                            sqlx::query(
                                "INSERT INTO stripe_payouts (id, amount, currency, status, arrival_date, balance_transaction, created, \
                                 imported_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                                 ON CONFLICT (id) DO UPDATE SET status = excluded.status, arrival_date = excluded.arrival_date, \
                                 imported_at = excluded.imported_at",
                            )
                            .bind(&p.id)
                            .bind(p.amount)
                            .bind(&p.currency)
                            .bind(&p.status)
                            .bind(ts(p.arrival_date))
                            .bind(p.balance_transaction.as_deref())
                            .bind(ts(p.created))
                            .bind(now)
                            .execute(&mut *tx)
                            .await
                            .map_err($crate::store::map_sqlx)?;
                        }
                        (items.len(), items.last().map(|p| p.id.clone()), items.iter().map(|p| p.created).max())
                    }
                };
                let locked = sqlx::AssertSqlSafe(format!(
                    "SELECT high_water, cursor, run_max FROM stripe_import_state WHERE kind = $1{}",
                    $lock
                ));
                let state: Option<(i64, Option<String>, Option<i64>)> =
                    sqlx::query_as(locked).bind(kind).fetch_optional(&mut *tx).await.map_err($crate::store::map_sqlx)?;
                let (high_water, cursor, run_max) = state.unwrap_or((0, None, None));
                let run_max = run_max.unwrap_or(0).max(newest.unwrap_or(0));
                let cursor = last.or(cursor);
                let (high_water, run_from, cursor, run_max) = if done {
                    (high_water.max(run_max), None, None, None)
                } else {
                    (high_water, Some(run_from), cursor, Some(run_max))
                };
                sqlx::query(
                    "INSERT INTO stripe_import_state (kind, high_water, run_from, cursor, run_max, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (kind) DO UPDATE SET high_water = excluded.high_water, \
                     run_from = excluded.run_from, cursor = excluded.cursor, run_max = excluded.run_max, \
                     updated_at = excluded.updated_at",
                )
                .bind(kind)
                .bind(high_water)
                .bind(run_from)
                .bind(cursor)
                .bind(run_max)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err($crate::store::map_sqlx)?;
                tx.commit().await.map_err($crate::store::map_sqlx)?;
                Ok(count)
            }
        }

        /// Saves the card of a succeeded setup in `tx` (once per payment method): the card
        /// as saved, or `None` for a setup nobody started here.
        async fn save_card_in(
            tx: &mut sqlx::Transaction<'_, $db>,
            setup_id: &str,
            card: &$crate::payments::CardInfo,
            now: chrono::DateTime<chrono::Utc>,
        ) -> $crate::store::StoreResult<Option<$crate::store::cards::SavedCard>> {
            let driver: Option<i64> = sqlx::query_scalar("SELECT driver_id FROM card_setups WHERE id = $1")
                .bind(setup_id)
                .fetch_optional(&mut **tx)
                .await
                .map_err($crate::store::map_sqlx)?;
            let Some(driver_id) = driver else {
                return Ok(None);
            };
            sqlx::query(
                "INSERT INTO saved_cards (driver_id, payment_method_id, brand, last4, exp_month, exp_year, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (payment_method_id) DO NOTHING",
            )
            .bind(driver_id)
            .bind(&card.payment_method)
            .bind(&card.brand)
            .bind(&card.last4)
            .bind(card.exp_month)
            .bind(card.exp_year)
            .bind(now)
            .execute(&mut **tx)
            .await
            .map_err($crate::store::map_sqlx)?;
            sqlx::query("UPDATE card_setups SET status = 'succeeded', updated_at = $2 WHERE id = $1")
                .bind(setup_id)
                .bind(now)
                .execute(&mut **tx)
                .await
                .map_err($crate::store::map_sqlx)?;
            let sql = sqlx::AssertSqlSafe(format!(
                "{} WHERE payment_method_id = $1 AND driver_id = $2 AND removed_at IS NULL",
                $crate::store::sql_cards::CARD_SELECT
            ));
            let row: Option<$crate::store::sql_cards::CardDbRow> = sqlx::query_as(sql)
                .bind(&card.payment_method)
                .bind(driver_id)
                .fetch_optional(&mut **tx)
                .await
                .map_err($crate::store::map_sqlx)?;
            Ok(row.map(Into::into))
        }

        /// Records a processor event id (`(id, type)`) once; `false` if it was seen before.
        async fn fresh_event(
            tx: &mut sqlx::Transaction<'_, $db>,
            event: Option<(&str, &str)>,
            object_id: &str,
            now: chrono::DateTime<chrono::Utc>,
        ) -> $crate::store::StoreResult<bool> {
            let Some((id, kind)) = event else { return Ok(true) };
            let n = sqlx::query(
                "INSERT INTO processor_events (id, type, object_id, received_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(id)
            .bind(kind)
            .bind(object_id)
            .bind(now)
            .execute(&mut **tx)
            .await
            .map_err($crate::store::map_sqlx)?
            .rows_affected();
            Ok(n == 1)
        }

        /// Locks a charge row; returns its status.
        async fn lock_charge(tx: &mut sqlx::Transaction<'_, $db>, id: i64) -> $crate::store::StoreResult<Option<String>> {
            let locked = sqlx::AssertSqlSafe(format!("SELECT status FROM card_charges WHERE id = $1{}", $lock));
            sqlx::query_scalar(locked).bind(id).fetch_optional(&mut **tx).await.map_err($crate::store::map_sqlx)
        }

        async fn charge_where<'c, E, A>(
            conn: E,
            condition: &str,
            arg: A,
        ) -> $crate::store::StoreResult<Option<$crate::store::cards::ChargeRow>>
        where
            E: sqlx::Executor<'c, Database = $db>,
            A: for<'q> sqlx::Encode<'q, $db> + sqlx::Type<$db> + Send + 'c,
        {
            let sql = sqlx::AssertSqlSafe(format!("{} WHERE {condition}", $crate::store::sql_cards::CHARGE_SELECT));
            let row: Option<$crate::store::sql_cards::ChargeDbRow> =
                sqlx::query_as(sql).bind(arg).fetch_optional(conn).await.map_err($crate::store::map_sqlx)?;
            row.map(TryInto::try_into).transpose()
        }

        async fn refund_where<'c, E, A>(
            conn: E,
            condition: &str,
            arg: A,
        ) -> $crate::store::StoreResult<Option<$crate::store::cards::RefundRow>>
        where
            E: sqlx::Executor<'c, Database = $db>,
            A: for<'q> sqlx::Encode<'q, $db> + sqlx::Type<$db> + Send + 'c,
        {
            let sql = sqlx::AssertSqlSafe(format!("{} WHERE {condition}", $crate::store::sql_cards::REFUND_SELECT));
            let row: Option<$crate::store::sql_cards::RefundDbRow> =
                sqlx::query_as(sql).bind(arg).fetch_optional(conn).await.map_err($crate::store::map_sqlx)?;
            row.map(TryInto::try_into).transpose()
        }

        async fn refunds_where<'c, E, A>(
            conn: E,
            condition: &str,
            arg: A,
        ) -> $crate::store::StoreResult<Vec<$crate::store::cards::RefundRow>>
        where
            E: sqlx::Executor<'c, Database = $db>,
            A: for<'q> sqlx::Encode<'q, $db> + sqlx::Type<$db> + Send + 'c,
        {
            let sql = sqlx::AssertSqlSafe(format!("{} WHERE {condition}", $crate::store::sql_cards::REFUND_SELECT));
            let rows: Vec<$crate::store::sql_cards::RefundDbRow> =
                sqlx::query_as(sql).bind(arg).fetch_all(conn).await.map_err($crate::store::map_sqlx)?;
            rows.into_iter().map(TryInto::try_into).collect()
        }

        /// `refunds` as the transaction has stored them (`pending`; timestamps as the
        /// database keeps them), in their order: what a keyed call's answer is rendered from.
        async fn committed_refunds(
            tx: &mut sqlx::Transaction<'_, $db>,
            refunds: &[$crate::store::cards::RefundRow],
        ) -> $crate::store::StoreResult<Vec<$crate::store::cards::RefundRow>> {
            let mut rows = Vec::with_capacity(refunds.len());
            for r in refunds {
                rows.push(refund_where(&mut **tx, "id = $1", r.id).await?
                    .ok_or_else(|| $crate::store::StoreError::Internal("refund vanished".into()))?);
            }
            Ok(rows)
        }

        /// Records a refund to submit to the processor (`pending`).
        async fn insert_refund(
            tx: &mut sqlx::Transaction<'_, $db>,
            refund: &$crate::store::cards::NewRefund<'_>,
            now: chrono::DateTime<chrono::Utc>,
        ) -> $crate::store::StoreResult<i64> {
            let $crate::store::cards::NewRefund {
                source, charge_id, intent_id, driver_id, session_id, amount, reason, requested_by,
            } = *refund;
            sqlx::query_scalar(
                "INSERT INTO refunds (source, charge_id, intent_id, driver_id, session_id, amount, reason, requested_by, \
                 status, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9, $9) RETURNING id",
            )
            .bind(source)
            .bind(charge_id)
            .bind(intent_id)
            .bind(driver_id)
            .bind(session_id)
            .bind(amount.get())
            .bind(reason)
            .bind(requested_by)
            .bind(now)
            .fetch_one(&mut **tx)
            .await
            .map_err($crate::store::map_sqlx)
        }

        /// Sends `amount` of a driver's money held in `from` (the wallet, or a refund hold)
        /// back where it came from: card top-ups, newest first, each up to what is left of
        /// it (processor refunds to submit), then (demo only, `sandbox`) play money to the
        /// sandbox. What neither can take stays in the wallet (moved there from `from` when
        /// `rest_to_wallet`). One ledger entry of kind `kind`.
        async fn refund_to_origin(
            tx: &mut sqlx::Transaction<'_, $db>,
            order: &$crate::store::cards::BackToOriginOrder<'_>,
            now: chrono::DateTime<chrono::Utc>,
        ) -> $crate::store::StoreResult<$crate::store::cards::BackToOrigin> {
            let $crate::store::cards::BackToOriginOrder {
                driver_id, ref from, amount, sandbox, rest_to_wallet, kind, reason, requested_by,
            } = *order;
            use $crate::domain::{ledger::{Account, Entry, Posting}, money::Vnd};
            let topups: Vec<(String, i64)> = sqlx::query_as(
                "SELECT id, amount - amount_refunded FROM payment_intents WHERE driver_id = $1 AND credited_at IS NOT NULL \
                 AND gateway <> 'sandbox' AND amount > amount_refunded ORDER BY created_at DESC, id DESC",
            )
            .bind(driver_id)
            .fetch_all(&mut **tx)
            .await
            .map_err($crate::store::map_sqlx)?;
            let mut left = amount.get();
            let mut plan = Vec::new();
            for (intent, refundable) in topups {
                if left == 0 {
                    break;
                }
                let take = left.min(refundable);
                plan.push((intent, take));
                left -= take;
            }
            let to_cards: i64 = plan.iter().map(|(_, t)| t).sum();
            let to_sandbox = if sandbox { left } else { 0 };
            left -= to_sandbox;
            let to_wallet = if rest_to_wallet { left } else { 0 };
            let mut postings = vec![
                Posting::plain(from.clone(), -Vnd(to_cards + to_sandbox + to_wallet)),
                Posting::plain(Account::card_refunds(), Vnd(to_cards)),
                Posting::plain(Account::sandbox(), Vnd(to_sandbox)),
                Posting::plain(Account::wallet(driver_id), Vnd(to_wallet)),
            ];
            postings.retain(|p| p.amount != Vnd::ZERO);
            if !postings.is_empty() {
                let entry = Entry::new(kind, postings).map_err(|e| $crate::store::StoreError::Internal(e.to_string()))?;
                if post(tx, &entry, None, now).await?.is_err() {
                    return Err($crate::store::StoreError::Internal("a refund overdraws the wallet".into()));
                }
            }
            let mut refunds = Vec::new();
            for (intent, take) in plan {
                sqlx::query("UPDATE payment_intents SET amount_refunded = amount_refunded + $2 WHERE id = $1")
                    .bind(&intent)
                    .bind(take)
                    .execute(&mut **tx)
                    .await
                    .map_err($crate::store::map_sqlx)?;
                let refund = $crate::store::cards::NewRefund {
                    source: "topup", charge_id: None, intent_id: &intent, driver_id, session_id: None, amount: Vnd(take), reason, requested_by,
                };
                let id = insert_refund(tx, &refund, now).await?;
                refunds.push(refund_where(&mut **tx, "id = $1", id).await?
                    .ok_or_else(|| $crate::store::StoreError::Internal("refund vanished".into()))?);
            }
            Ok($crate::store::cards::BackToOrigin { refunds, to_cards: Vnd(to_cards), to_sandbox: Vnd(to_sandbox), left: Vnd(left) })
        }

        /// Books a refund of `amount` of a locked session: the card-paid part goes back to
        /// its charges (newest first, each up to what is left of it) as processor refunds to
        /// submit, the rest to the driver's wallet. The caller updates the session.
        async fn allocate_refund(
            tx: &mut sqlx::Transaction<'_, $db>,
            row: &$crate::store::drivers::SessionRow,
            amount: $crate::domain::money::Vnd,
            reason: &str,
            requested_by: &str,
            now: chrono::DateTime<chrono::Utc>,
        ) -> $crate::store::StoreResult<Vec<$crate::store::cards::RefundRow>> {
            use $crate::domain::{ledger::{Account, Entry, Posting}, money::Vnd};
            if amount <= Vnd::ZERO {
                return Ok(Vec::new());
            }
            // The unused turns are the newest: walk the purchases newest first, each refunded
            // the way it was paid (a card purchase to its charge, a wallet one to the wallet),
            // up to what is left of it.
            let purchases: Vec<(i64, Option<String>)> = sqlx::query_as(
                "SELECT p.amount, t.kind FROM session_purchases p \
                 LEFT JOIN ledger_transactions t ON t.id = p.transaction_id WHERE p.session_id = $1 ORDER BY p.id DESC",
            )
            .bind(row.id)
            .fetch_all(&mut **tx)
            .await
            .map_err($crate::store::map_sqlx)?;
            let charges: Vec<(i64, Option<String>, i64, i64)> = sqlx::query_as(
                "SELECT id, intent_id, amount - amount_refunded, amount_refunded FROM card_charges \
                 WHERE session_id = $1 AND status = 'succeeded' ORDER BY id DESC",
            )
            .bind(row.id)
            .fetch_all(&mut **tx)
            .await
            .map_err($crate::store::map_sqlx)?;
            let card_refunded: i64 = charges.iter().map(|c| c.3).sum();
            // What the wallet got back before, taken from the newest wallet purchases first.
            let mut wallet_refunded_before = (row.amount_refunded.get() - card_refunded).max(0);
            let mut charges = charges.into_iter();
            let mut left = amount.get();
            let mut to_wallet = 0;
            // Of which, turns paid to a warden in cash, or from a warden's float (their
            // channels lose it).
            let mut from_cash = 0;
            let mut from_float = 0;
            let mut plan = Vec::new();
            for (paid, kind) in purchases {
                if left == 0 {
                    break;
                }
                if kind.as_deref().is_some_and(|k| k.starts_with("card_")) {
                    let Some((id, intent, refundable, _)) = charges.next() else { continue };
                    let Some(intent) = intent else { continue };
                    let take = left.min(refundable);
                    if take > 0 {
                        plan.push((id, intent, take));
                        left -= take;
                    }
                } else {
                    let already = wallet_refunded_before.min(paid);
                    wallet_refunded_before -= already;
                    let take = left.min(paid - already);
                    to_wallet += take;
                    if kind.as_deref().is_some_and(|k| k.starts_with("cash_")) {
                        from_cash += take;
                    } else if kind.as_deref().is_some_and(|k| k.starts_with("float_")) {
                        from_float += take;
                    }
                    left -= take;
                }
            }
            if left > 0 {
                // Purchases do not cover it (the caller checked the total): the wallet takes the rest.
                to_wallet += left;
            }
            let left = to_wallet;
            let to_cards: i64 = plan.iter().map(|(_, _, t)| t).sum();
            let driver_id = row.driver_id.ok_or_else(|| {
                $crate::store::StoreError::Internal("refunding a session without a driver".into())
            })?;
            use $crate::domain::ledger::RevenueChannel;
            let mut postings = vec![
                Posting::revenue(row.point_id, RevenueChannel::Card, -Vnd(to_cards)),
                Posting::revenue(row.point_id, RevenueChannel::Wallet, -Vnd(left - from_cash - from_float)),
                Posting::revenue(row.point_id, RevenueChannel::WardenCash, -Vnd(from_cash)),
                Posting::revenue(row.point_id, RevenueChannel::WardenFloat, -Vnd(from_float)),
                Posting::plain(Account::card_refunds(), Vnd(to_cards)),
                Posting::plain(Account::wallet(driver_id), Vnd(left)),
            ];
            postings.retain(|p| p.amount != Vnd::ZERO);
            let entry = Entry::new("session_refund", postings).map_err(|e| $crate::store::StoreError::Internal(e.to_string()))?;
            if post(tx, &entry, Some(row.id), now).await?.is_err() {
                return Err($crate::store::StoreError::Internal("a refund cannot overdraw a wallet".into()));
            }
            let mut refunds = Vec::with_capacity(plan.len());
            for (charge_id, intent, take) in plan {
                sqlx::query("UPDATE card_charges SET amount_refunded = amount_refunded + $2, updated_at = $3 WHERE id = $1")
                    .bind(charge_id)
                    .bind(take)
                    .bind(now)
                    .execute(&mut **tx)
                    .await
                    .map_err($crate::store::map_sqlx)?;
                let refund = $crate::store::cards::NewRefund {
                    source: "card_charge", charge_id: Some(charge_id), intent_id: &intent, driver_id, session_id: Some(row.id),
                    amount: Vnd(take), reason, requested_by,
                };
                let id = insert_refund(tx, &refund, now)
                    .await?;
                refunds.push(refund_where(&mut **tx, "id = $1", id).await?
                    .ok_or_else(|| $crate::store::StoreError::Internal("refund vanished".into()))?);
            }
            Ok(refunds)
        }
    };
}

pub(crate) use sql_card_store_impl;
