//! Card charges: sessions paid by card, refunds through the processor, the payments
//! sweeper, the settlement import, and the processor's events. See docs/payments.md for
//! every failure case.
//!
//! A card charge is recorded (`pending`) and the driver's idempotency key claimed before the
//! processor is called, with our own key `charge-{id}`: whatever happens next (timeout, crash,
//! lost answer), a retry with the same key, a webhook or the sweeper reaches the same intent
//! and settles the charge exactly once.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::{Keyed, keyed};
use crate::{
    App,
    domain::{
        charge::{ChargeStatus, RefundStatus},
        money::Vnd,
    },
    error::AppError,
    live::mirror,
    payments::{ChargeRequest, ChargeResult, IntentState, PaymentError, PaymentGateway},
    store::{
        StoreError,
        cards::{
            ChargePlan, ChargeRow, MarkOutcome, NewCharge, RefundRow, RefundSettle, SettleOutcome, SettlementPage,
        },
        drivers::{IdemClaim, SessionRow},
    },
};

pub fn gateway(app: &App) -> Result<std::sync::Arc<dyn PaymentGateway>, AppError> {
    app.payments.clone().ok_or_else(|| {
        AppError::not_found(
            "payments_disabled",
            "Máy chủ này chưa cấu hình thanh toán thẻ.",
            "Card payments are not configured on this server.",
        )
    })
}

pub fn unavailable(e: &PaymentError) -> AppError {
    crate::warn_throttled!(error = %e, "payment processor unavailable");
    AppError::unavailable("payment processor")
}

/// The driver's customer at the processor, created on first use.
pub async fn customer(app: &App, gw: &dyn PaymentGateway, driver_id: i64) -> Result<String, AppError> {
    if let Some(c) = app.store.processor_customer(driver_id).await? {
        return Ok(c);
    }
    // Our key per driver: two concurrent first setups reach one customer.
    let created = gw.create_customer(driver_id, &format!("customer-{driver_id}")).await.map_err(|e| unavailable(&e))?;
    Ok(app.store.put_processor_customer(driver_id, &created, gw.name(), app.clock.now()).await?)
}

/// Records a charge for `plan` and drives it (used by session start and extend when the
/// driver pays by card). The driver's idempotency key is claimed with the charge: a retry
/// with it resumes this charge (see [`advance_charge`]), never makes another.
pub async fn pay_by_card(
    app: &App,
    claim: &IdemClaim,
    driver_id: i64,
    card_id: Option<i64>,
    amount: Vnd,
    plan: ChargePlan,
    warnings: Vec<String>,
) -> Result<Keyed<ChargeAnswer>, AppError> {
    gateway(app)?;
    let card_id = card_id.ok_or_else(|| {
        AppError::bad_request(
            "card_required",
            "Thanh toán bằng thẻ cần card_id (thẻ đã lưu).",
            "Paying by card needs a card_id (a saved card).",
        )
    })?;
    if !app.store.cards(driver_id).await?.iter().any(|c| c.id == card_id) {
        return Err(card_not_found());
    }
    let now = app.clock.now();
    let deadline = now + Duration::from_std(app.settings.charge_action_timeout).unwrap_or(Duration::minutes(15));
    let new = NewCharge { driver_id, card_id, amount, plan, action_deadline: deadline };
    let charge = match keyed(app.store.create_charge(&new, claim, now).await)? {
        Keyed::Done(c) => c,
        Keyed::Taken => return Ok(Keyed::Taken),
    };
    advance_charge(app, charge, warnings).await.map(Keyed::Done)
}

/// Takes a charge as far as it can go now: charges the card (same key on every attempt),
/// settles a success, records a decline or a 3-D Secure step, and answers from the charge's
/// state (so a retry with the same `Idempotency-Key` gets the same answer, in its own
/// language). A processor outage answers 503 and leaves the charge open: the same request
/// again resumes it, and so does the sweeper.
pub async fn advance_charge(app: &App, charge: ChargeRow, warnings: Vec<String>) -> Result<ChargeAnswer, AppError> {
    let gw = gateway(app)?;
    let mut client_secret = None;
    if charge.status.is_open() {
        let result = if charge.status == ChargeStatus::RequiresAction
            && let Some(pi) = &charge.intent_id
        {
            // Waiting for 3-D Secure: ask where it stands instead of charging again.
            gw.intent(pi).await.map(|st| st.map(classify))
        } else {
            let customer = charge.customer_id.clone().ok_or_else(|| {
                AppError::internal(&format!("charge {} has a card but no processor customer", charge.id))
            })?;
            let req = ChargeRequest {
                customer: &customer,
                payment_method: &charge.payment_method_id,
                amount: charge.amount,
                metadata: charge_metadata(&charge),
                idempotency_key: &charge.processor_key(),
            };
            gw.charge(&req).await.map(Some)
        };
        match result {
            Err(PaymentError::Unavailable(cause)) => {
                tracing::warn!(charge.id = charge.id, error = %cause, "card charge outcome unknown; left for a retry or the sweeper");
                return Err(AppError::unavailable("payment processor"));
            }
            Err(PaymentError::Refused { code, .. }) => {
                app.store
                    .mark_charge(charge.id, None, ChargeStatus::Failed, Some(&code), None, app.clock.now())
                    .await?;
            }
            Ok(None) => {}
            Ok(Some(result)) => {
                client_secret = apply_result(app, &charge, result, None).await?;
            }
        }
    }
    let charge = app.store.charge(charge.id).await?.ok_or_else(|| AppError::internal(&"charge vanished"))?;
    charge_answer(app, charge, client_secret, warnings).await
}

fn charge_metadata(c: &ChargeRow) -> Vec<(&'static str, String)> {
    let purpose = match c.plan {
        ChargePlan::Start { .. } => "session_start",
        ChargePlan::Extend { .. } => "session_extend",
    };
    vec![("purpose", purpose.into()), ("charge_id", c.id.to_string()), ("driver_id", c.driver_id.to_string())]
}

/// Maps an intent's status to a charge result.
fn classify(st: IntentState) -> ChargeResult {
    match st.status.as_str() {
        "succeeded" => ChargeResult::Succeeded(st),
        "requires_action" | "requires_confirmation" | "requires_payment_method" => ChargeResult::RequiresAction(st),
        "canceled" => ChargeResult::Declined { code: "canceled".into(), message: String::new(), intent: Some(st) },
        _ => ChargeResult::Processing(st),
    }
}

/// Records what the processor said about a charge; settles a success (and submits the
/// refund if it could not be given). Returns the client secret of a 3-D Secure step.
async fn apply_result(
    app: &App,
    charge: &ChargeRow,
    result: ChargeResult,
    event: Option<(&str, &str)>,
) -> Result<Option<String>, AppError> {
    let now = app.clock.now();
    match result {
        ChargeResult::Succeeded(st) => {
            settle(app, charge.id, &st.id, st.charge.as_deref(), event).await?;
            Ok(None)
        }
        ChargeResult::RequiresAction(st) => {
            app.store.mark_charge(charge.id, Some(&st.id), ChargeStatus::RequiresAction, None, event, now).await?;
            Ok(st.client_secret)
        }
        ChargeResult::Processing(st) => {
            app.store.mark_charge(charge.id, Some(&st.id), ChargeStatus::Pending, None, event, now).await?;
            Ok(None)
        }
        ChargeResult::Declined { intent, code, .. } => {
            tracing::info!(charge.id = charge.id, payment.code = %code, "card charge declined");
            let status = if code == "canceled" { ChargeStatus::Canceled } else { ChargeStatus::Failed };
            app.store
                .mark_charge(charge.id, intent.as_ref().map(|i| i.id.as_str()), status, Some(&code), event, now)
                .await?;
            Ok(None)
        }
    }
}

/// Settles a successful charge and follows up: live state for a session paid, the refund
/// for one that could not be given.
async fn settle(
    app: &App,
    charge_id: i64,
    intent_id: &str,
    charge_ref: Option<&str>,
    event: Option<(&str, &str)>,
) -> Result<SettleOutcome, AppError> {
    let outcome = app.store.settle_charge(charge_id, intent_id, charge_ref, event, app.clock.now()).await?;
    match &outcome {
        SettleOutcome::Applied(row, expired, started) => {
            let closed: Vec<_> = expired.iter().collect();
            if *started {
                mirror(app.live.as_ref(), &[row], &[], &closed).await;
            } else {
                mirror(app.live.as_ref(), &[], &[row], &closed).await;
            }
            tracing::info!(
                charge.id = charge_id,
                session.id = row.id,
                amount_vnd = row.amount_charged.get(),
                "card payment applied"
            );
        }
        SettleOutcome::RefundDue { refund_id, reason } => {
            tracing::warn!(charge.id = charge_id, reason = %reason, "card paid but not applicable: refunding");
            submit_refund(app, *refund_id).await;
        }
        _ => {}
    }
    Ok(outcome)
}

/// Sends a refund to the processor (our key `refund-{id}`, so retries never refund twice).
/// If the processor is down, the refund stays `pending` for the sweeper.
pub async fn submit_refund(app: &App, refund_id: i64) {
    let Some(gw) = app.payments.clone() else { return };
    let refund = match app.store.refund(refund_id).await {
        Ok(Some(r)) if r.status == RefundStatus::Pending => r,
        Ok(_) => return,
        Err(e) => {
            tracing::warn!(error = %e, refund.id = refund_id, "refund not submitted (database); the sweeper will");
            return;
        }
    };
    let meta = vec![("refund_id", refund.id.to_string()), ("driver_id", refund.driver_id.to_string())];
    let now = app.clock.now();
    let result = gw.refund(&refund.intent_id, refund.amount, meta, &refund.processor_key()).await;
    let outcome = match result {
        Ok(state) => {
            let mut r = app.store.refund_submitted(refund.id, &state.id, now).await;
            if r.is_ok() && matches!(state.status.as_str(), "succeeded" | "failed" | "canceled") {
                r = app
                    .store
                    .settle_refund(refund.id, &state.status, state.failure_reason.as_deref(), None, now)
                    .await
                    .map(|_| ());
            }
            r
        }
        Err(PaymentError::Refused { code, .. }) => {
            // The processor will not refund this (e.g. the charge is too old): the amount
            // goes to the driver's wallet instead.
            tracing::warn!(refund.id = refund.id, payment.code = %code, "refund refused by the processor: credited to the wallet");
            app.store.settle_refund(refund.id, "failed", Some(&code), None, now).await.map(|_| ())
        }
        Err(PaymentError::Unavailable(cause)) => {
            tracing::warn!(refund.id = refund.id, error = %cause, "refund not submitted; the sweeper will retry");
            Ok(())
        }
    };
    if let Err(e) = outcome {
        tracing::warn!(error = %e, refund.id = refund.id, "refund state not recorded; the sweeper will retry");
    }
}

/// Where a charge stands, once [`advance_charge`] has taken it as far as it can go now.
#[derive(Debug)]
pub enum ChargeAnswer {
    /// Paid and applied to its session (a start or an extension).
    Applied {
        /// The plan was a start (else an extension).
        started: bool,
        /// The session as paid.
        session: SessionRow,
        /// Warnings for the driver (e.g. far from the point).
        warnings: Vec<String>,
    },
    /// Waiting: for 3-D Secure, or for the processor's answer.
    InProgress {
        /// The charge.
        charge: ChargeRow,
        /// The client secret of a 3-D Secure step, when known.
        client_secret: Option<String>,
    },
    /// The card was declined.
    Declined {
        /// The processor's decline code.
        code: String,
        /// The charge.
        charge_id: i64,
    },
    /// Paid, but no longer applicable (the point filled, the plate parked, the session
    /// ended): refunded to the card.
    PaidNotApplied {
        /// Why (`plate_active`, `point_full`, `session_ended`, `session_changed`, …).
        reason: String,
        /// The charge.
        charge_id: i64,
        /// Its refunds.
        refunds: Vec<RefundRow>,
    },
    /// Cancelled (3-D Secure not finished in time) or abandoned.
    Canceled {
        /// The charge.
        charge_id: i64,
        /// Its status.
        status: ChargeStatus,
    },
}

/// The answer for a charge in its current state.
async fn charge_answer(
    app: &App,
    charge: ChargeRow,
    client_secret: Option<String>,
    warnings: Vec<String>,
) -> Result<ChargeAnswer, AppError> {
    Ok(match charge.status {
        ChargeStatus::Succeeded => {
            let session = match charge.session_id {
                Some(id) => app.store.session(id).await?,
                None => None,
            }
            .ok_or_else(|| AppError::internal(&format!("charge {} succeeded without a session", charge.id)))?;
            ChargeAnswer::Applied { started: matches!(charge.plan, ChargePlan::Start { .. }), session, warnings }
        }
        ChargeStatus::RequiresAction | ChargeStatus::Pending => ChargeAnswer::InProgress { charge, client_secret },
        ChargeStatus::Failed => ChargeAnswer::Declined {
            code: charge.failure_code.clone().unwrap_or_else(|| "card_declined".into()),
            charge_id: charge.id,
        },
        ChargeStatus::RefundDue => {
            let refunds = app
                .store
                .driver_refunds(charge.driver_id)
                .await?
                .into_iter()
                .filter(|r| r.charge_id == Some(charge.id));
            ChargeAnswer::PaidNotApplied {
                reason: charge.failure_code.clone().unwrap_or_default(),
                charge_id: charge.id,
                refunds: refunds.collect(),
            }
        }
        ChargeStatus::Canceled | ChargeStatus::Abandoned => {
            ChargeAnswer::Canceled { charge_id: charge.id, status: charge.status }
        }
    })
}

/// The client secret of a charge waiting for 3-D Secure: the one just given, or the
/// processor's.
pub async fn client_secret(app: &App, c: &ChargeRow, given: Option<String>) -> Option<String> {
    if c.status != ChargeStatus::RequiresAction {
        return None;
    }
    if given.is_some() {
        return given;
    }
    let (Some(gw), Some(pi)) = (&app.payments, &c.intent_id) else { return None };
    gw.intent(pi).await.ok().flatten().and_then(|st| st.client_secret)
}

/// A saved card of the driver that is not there.
pub fn card_not_found() -> AppError {
    AppError::not_found("card_not_found", "Không tìm thấy thẻ này.", "No such saved card.")
}

/// Whether wallet money that no card can take back may go back to the demo's sandbox: only
/// with the sandbox on and no real processor.
pub fn sandbox_refunds(app: &App) -> bool {
    app.payments.as_ref().is_none_or(|g| g.is_sandbox()) && app.settings.sandbox_payments
}

/// What one sweep did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct SweepReport {
    /// Charges found paid and settled (session given, or refunded).
    pub charges_settled: u32,
    /// Charges found declined.
    pub charges_failed: u32,
    /// Charges whose 3-D Secure was not finished in time, cancelled.
    pub charges_canceled: u32,
    /// Charges that never reached the processor.
    pub charges_abandoned: u32,
    /// Refunds (re)submitted.
    pub refunds_submitted: u32,
    /// Top-ups found paid without their webhook, credited.
    pub topups_credited: u32,
    /// Items left for the next sweep (processor unavailable).
    pub deferred: u32,
}

/// Finds payments left half-done (an answer lost, a crash between the processor and our
/// write, a webhook never delivered) and completes or refunds them. Safe to run on every
/// node: the job takes a lease, and every step is idempotent.
pub async fn sweep(app: &App) -> Result<SweepReport, AppError> {
    let gw = gateway(app)?;
    let mut report = SweepReport::default();
    let now = app.clock.now();
    let after = Duration::from_std(app.settings.sweep_after).unwrap_or(Duration::minutes(2));
    for charge in app.store.open_charges(now - after, 200).await? {
        match sweep_charge(app, gw.as_ref(), &charge, now).await {
            Ok(Some(word)) => match word {
                "settled" => report.charges_settled += 1,
                "failed" => report.charges_failed += 1,
                "canceled" => report.charges_canceled += 1,
                "abandoned" => report.charges_abandoned += 1,
                _ => {}
            },
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(charge.id = charge.id, error = %e, "sweeper: charge left for next time");
                report.deferred += 1;
            }
        }
    }
    for refund in app.store.unsubmitted_refunds(now - Duration::seconds(30), 200).await? {
        submit_refund(app, refund.id).await;
        match app.store.refund(refund.id).await? {
            Some(r) if r.status != RefundStatus::Pending => report.refunds_submitted += 1,
            _ => report.deferred += 1,
        }
    }
    for pi in app.store.uncredited_topups(now - Duration::days(1), now - after).await? {
        match gw.intent(&pi).await {
            Ok(Some(st)) if st.status == "succeeded" => {
                let event = format!("sweep:{pi}:succeeded");
                let outcome = app
                    .store
                    .apply_intent_event(&event, "payment_intent.succeeded", &pi, "succeeded", st.charge.as_deref(), now)
                    .await?;
                if matches!(outcome, crate::store::drivers::IntentEventOutcome::Credited { .. }) {
                    report.topups_credited += 1;
                }
            }
            Ok(_) => {}
            Err(_) => report.deferred += 1,
        }
    }
    if report != SweepReport::default() {
        tracing::info!(?report, "payments sweep");
    }
    Ok(report)
}

async fn sweep_charge(
    app: &App,
    gw: &dyn PaymentGateway,
    charge: &ChargeRow,
    now: DateTime<Utc>,
) -> Result<Option<&'static str>, PaymentError> {
    let db = |e: StoreError| PaymentError::Unavailable(e.to_string());
    let state = match &charge.intent_id {
        Some(pi) => gw.intent(pi).await?,
        None => {
            let Some(customer) = &charge.customer_id else { return Ok(None) };
            let since = charge.created_at.timestamp() - 600;
            let id = charge.id.to_string();
            gw.customer_intents(customer, since).await?.into_iter().find(|st| st.metadata.get("charge_id") == Some(&id))
        }
    };
    let Some(st) = state else {
        // The processor never saw it: nothing was charged.
        app.store
            .mark_charge(charge.id, None, ChargeStatus::Abandoned, Some("never_reached_processor"), None, now)
            .await
            .map_err(db)?;
        return Ok(Some("abandoned"));
    };
    match st.status.as_str() {
        "succeeded" => {
            settle(app, charge.id, &st.id, st.charge.as_deref(), None)
                .await
                .map_err(|e| PaymentError::Unavailable(e.to_string()))?;
            Ok(Some("settled"))
        }
        "canceled" => {
            app.store
                .mark_charge(charge.id, Some(&st.id), ChargeStatus::Canceled, Some("canceled"), None, now)
                .await
                .map_err(db)?;
            Ok(Some("canceled"))
        }
        "requires_payment_method" if charge.status == ChargeStatus::Pending && !st.needs_authentication() => {
            // Declined off-session and never taken on-session.
            app.store
                .mark_charge(charge.id, Some(&st.id), ChargeStatus::Failed, Some("card_declined"), None, now)
                .await
                .map_err(db)?;
            Ok(Some("failed"))
        }
        "requires_action" | "requires_confirmation" | "requires_payment_method" => {
            if now < charge.action_deadline {
                app.store
                    .mark_charge(charge.id, Some(&st.id), ChargeStatus::RequiresAction, None, None, now)
                    .await
                    .map_err(db)?;
                return Ok(None);
            }
            match gw.cancel_intent(&st.id).await {
                Ok(after) if after.status == "succeeded" => {
                    settle(app, charge.id, &st.id, after.charge.as_deref(), None)
                        .await
                        .map_err(|e| PaymentError::Unavailable(e.to_string()))?;
                    Ok(Some("settled"))
                }
                Ok(_) => {
                    app.store
                        .mark_charge(
                            charge.id,
                            Some(&st.id),
                            ChargeStatus::Canceled,
                            Some("authentication_timeout"),
                            None,
                            now,
                        )
                        .await
                        .map_err(db)?;
                    Ok(Some("canceled"))
                }
                Err(PaymentError::Refused { .. }) => {
                    // It could not be cancelled: it completed meanwhile. Look again.
                    if let Some(again) = gw.intent(&st.id).await?
                        && again.status == "succeeded"
                    {
                        settle(app, charge.id, &again.id, again.charge.as_deref(), None)
                            .await
                            .map_err(|e| PaymentError::Unavailable(e.to_string()))?;
                        return Ok(Some("settled"));
                    }
                    Ok(None)
                }
                Err(e) => Err(e),
            }
        }
        _ => Ok(None),
    }
}

/// What one settlement import stored.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[schema(as = SettlementImportReport)]
pub struct ImportReport {
    /// Balance transactions stored (new or updated).
    pub balance_transactions: usize,
    /// Payouts stored.
    pub payouts: usize,
    /// Pages fetched.
    pub pages: usize,
}

#[derive(Clone, Copy)]
enum SettlementKind {
    BalanceTransactions,
    Payouts,
}

/// Objects are listed again this far back, so their status changes (pending → available,
/// in transit → paid) are picked up.
const SETTLEMENT_LOOKBACK_SECS: i64 = 3 * 24 * 3600;

/// Imports the processor's balance transactions and payouts, page by page. Each page is
/// stored with the run's progress in one transaction, so an interrupted import resumes after
/// the last page stored.
pub async fn import_settlement(app: &App) -> Result<ImportReport, AppError> {
    let gw = gateway(app)?;
    let mut report = ImportReport::default();
    for kind in [SettlementKind::BalanceTransactions, SettlementKind::Payouts] {
        let name = match kind {
            SettlementKind::BalanceTransactions => "balance_transactions",
            SettlementKind::Payouts => "payouts",
        };
        let state = app.store.import_state(name).await?;
        let (run_from, mut cursor) = match state.run {
            Some((from, cursor, _)) => (from, cursor),
            None => ((state.high_water - SETTLEMENT_LOOKBACK_SECS).max(0), None),
        };
        loop {
            let (page, has_more) = match kind {
                SettlementKind::BalanceTransactions => {
                    let p =
                        gw.balance_transactions(run_from, cursor.as_deref(), 100).await.map_err(|e| unavailable(&e))?;
                    (SettlementPage::Balance(p.items), p.has_more)
                }
                SettlementKind::Payouts => {
                    let p = gw.payouts(run_from, cursor.as_deref(), 100).await.map_err(|e| unavailable(&e))?;
                    (SettlementPage::Payouts(p.items), p.has_more)
                }
            };
            let last = match &page {
                SettlementPage::Balance(items) => items.last().map(|t| t.id.clone()),
                SettlementPage::Payouts(items) => items.last().map(|p| p.id.clone()),
            };
            let done = !has_more || last.is_none();
            let n = app.store.import_page(name, run_from, &page, done, app.clock.now()).await?;
            report.pages += 1;
            match kind {
                SettlementKind::BalanceTransactions => report.balance_transactions += n,
                SettlementKind::Payouts => report.payouts += n,
            }
            if done {
                break;
            }
            cursor = last;
        }
    }
    tracing::info!(?report, "settlement import");
    Ok(report)
}

/// Handles a processor event about a card charge. `None` if the intent is not a charge's.
pub async fn charge_event(
    app: &App,
    event_id: &str,
    event_type: &str,
    st: IntentState,
) -> Result<Option<&'static str>, AppError> {
    let mut charge = app.store.charge_by_intent(&st.id).await?;
    if charge.is_none()
        && let Some(id) = st.metadata.get("charge_id").and_then(|c| c.parse::<i64>().ok())
    {
        // The intent's creation answer was lost: our metadata names the charge.
        charge = app.store.charge(id).await?.filter(|c| st.metadata.get("driver_id") == Some(&c.driver_id.to_string()));
    }
    let Some(charge) = charge else { return Ok(None) };
    let event = Some((event_id, event_type));
    let now = app.clock.now();
    let word = match event_type {
        "payment_intent.succeeded" => match settle(app, charge.id, &st.id, st.charge.as_deref(), event).await? {
            SettleOutcome::Duplicate => "duplicate",
            SettleOutcome::Applied(..) => "applied",
            SettleOutcome::RefundDue { .. } => "refund_due",
            _ => "updated",
        },
        "payment_intent.payment_failed" if st.needs_authentication() => {
            // Off-session, a card needing 3-D Secure also reports a failed attempt; the
            // driver may still authenticate until the deadline (then the sweeper cancels).
            match app.store.mark_charge(charge.id, Some(&st.id), ChargeStatus::RequiresAction, None, event, now).await?
            {
                MarkOutcome::Duplicate => "duplicate",
                _ => "awaiting_action",
            }
        }
        "payment_intent.payment_failed" | "payment_intent.canceled" => {
            let status = if event_type.ends_with("canceled") { ChargeStatus::Canceled } else { ChargeStatus::Failed };
            match app.store.mark_charge(charge.id, Some(&st.id), status, Some(status.as_str()), event, now).await? {
                MarkOutcome::Duplicate => "duplicate",
                _ => "updated",
            }
        }
        _ => {
            match app.store.mark_charge(charge.id, Some(&st.id), ChargeStatus::RequiresAction, None, event, now).await?
            {
                MarkOutcome::Duplicate => "duplicate",
                _ => "updated",
            }
        }
    };
    Ok(Some(word))
}

/// Handles a processor event about a refund.
pub async fn refund_event(
    app: &App,
    event_id: &str,
    event_type: &str,
    refund_id: &str,
    status: &str,
    failure_reason: Option<&str>,
    metadata: Option<&std::collections::HashMap<String, String>>,
) -> Result<&'static str, AppError> {
    let mut row = app.store.refund_by_processor_id(refund_id).await?;
    if row.is_none()
        && let Some(id) = metadata.and_then(|m| m.get("refund_id")).and_then(|r| r.parse::<i64>().ok())
    {
        // Our refund whose submission answer was lost: our metadata names it. Only a row not
        // yet bound to a Stripe refund, of the driver the metadata names, is taken.
        let driver = metadata.and_then(|m| m.get("driver_id")).cloned();
        row =
            app.store.refund(id).await?.filter(|r| {
                r.processor_refund_id.is_none() && driver.as_deref() == Some(r.driver_id.to_string().as_str())
            });
        if let Some(r) = &row {
            app.store.refund_submitted(r.id, refund_id, app.clock.now()).await?;
        }
    }
    let Some(row) = row else { return Ok("unknown_refund") };
    let outcome =
        app.store.settle_refund(row.id, status, failure_reason, Some((event_id, event_type)), app.clock.now()).await?;
    Ok(match outcome {
        RefundSettle::Duplicate => "duplicate",
        RefundSettle::Unknown => "unknown_refund",
        RefundSettle::Pending => "updated",
        RefundSettle::Settled(true) => "refunded",
        RefundSettle::Settled(false) => "refund_failed",
        RefundSettle::AlreadyFinal => "updated",
    })
}

/// Handles `setup_intent.succeeded`: fetches the card (brand, last four) and saves it.
pub async fn setup_event(
    app: &App,
    event_id: &str,
    event_type: &str,
    setup_id: &str,
) -> Result<&'static str, AppError> {
    if app.store.setup_driver(setup_id).await?.is_none() {
        return Ok("unknown_setup");
    }
    let gw = gateway(app)?;
    // If the processor cannot be asked now, answer 503: Stripe delivers the event again.
    let setup = gw.setup(setup_id).await.map_err(|e| unavailable(&e))?;
    let Some(card) = setup.card else { return Ok("no_card") };
    Ok(match app.store.save_card(setup_id, &card, Some((event_id, event_type)), app.clock.now()).await? {
        Some(_) => "card_saved",
        None => "duplicate",
    })
}
