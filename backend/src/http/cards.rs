//! Saved cards, sessions paid by card, refunds through the processor, the payments sweeper
//! and the settlement import. See docs/payments.md for every failure case.
//!
//! A card charge is recorded (`pending`) and the driver's idempotency key claimed before the
//! processor is called, with our own key `charge-{id}`: whatever happens next (timeout, crash,
//! lost answer), a retry with the same key, a webhook or the sweeper reaches the same intent
//! and settles the charge exactly once.

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Duration, Utc};
use iparking_mobile_api::{
    CardChargeView, CardSetupView, CardView, CloseAccountView, ErrorBody, RefundView, StaffRefundRequest,
    StaffRefundView,
};
use serde::Serialize;

use super::{
    AppState,
    drivers::{Driver, Idempotency, parse_json},
    extract::{Json, Path, Staff},
    finance::{answered, rendered},
    sessions::session_view,
};
use crate::{
    domain::money::Vnd,
    error::AppError,
    live::mirror,
    payments::{ChargeRequest, ChargeResult, IntentState, PaymentError, PaymentGateway},
    store::{
        StoreError,
        cards::{
            ChargePlan, ChargeRow, CloseAccount, MarkOutcome, NewCharge, RefundRow, RefundSettle, SavedCard,
            SessionRefund, SettleOutcome, SettlementPage,
        },
        drivers::SessionRow,
    },
};

fn gateway(app: &AppState) -> Result<std::sync::Arc<dyn PaymentGateway>, AppError> {
    app.payments.clone().ok_or_else(|| {
        AppError::not_found(
            "payments_disabled",
            "Máy chủ này chưa cấu hình thanh toán thẻ.",
            "Card payments are not configured on this server.",
        )
    })
}

fn unavailable(e: &PaymentError) -> AppError {
    crate::warn_throttled!(error = %e, "payment processor unavailable");
    AppError::unavailable("payment processor")
}

fn card_view(c: &SavedCard) -> CardView {
    CardView {
        id: c.id,
        brand: c.brand.clone(),
        last4: c.last4.clone(),
        exp_month: c.exp_month,
        exp_year: c.exp_year,
        created_at: c.created_at,
    }
}

/// The API view of a refund.
pub fn refund_view(r: &RefundRow) -> RefundView {
    RefundView {
        id: r.id,
        amount: r.amount.get(),
        status: r.status.clone(),
        reason: r.reason.clone(),
        session_id: r.session_id,
        created_at: r.created_at,
    }
}

/// The driver's customer at the processor, created on first use.
async fn customer(app: &AppState, gw: &dyn PaymentGateway, driver_id: i64) -> Result<String, AppError> {
    if let Some(c) = app.store.processor_customer(driver_id).await? {
        return Ok(c);
    }
    // Our key per driver: two concurrent first setups reach one customer.
    let created = gw.create_customer(driver_id, &format!("customer-{driver_id}")).await.map_err(|e| unavailable(&e))?;
    Ok(app.store.put_processor_customer(driver_id, &created, gw.name(), app.clock.now()).await?)
}

/// Starts saving a card: creates the processor's setup (Stripe SetupIntent, for off-session
/// use) and returns what the app needs to collect the card. The card is saved when the
/// processor's signed webhook reports the setup succeeded (SANDBOX: at once, a play card).
/// Needs an `Idempotency-Key`.
#[utoipa::path(
    post, path = "/v1/me/cards/setups", tag = "drivers", security(("bearer" = [])),
    request_body(content = Option<super::input::EmptyBody>, content_type = "application/json", description = "None, or `{}`"),
    params(("Idempotency-Key" = String, Header, description = "Unique per setup")),
    responses(
        (status = 201, description = "Setup created", body = CardSetupView),
        (status = 400, description = "Missing Idempotency-Key", body = ErrorBody),
        (status = 404, description = "Card payments are not configured", body = ErrorBody),
        (status = 503, description = "The processor is unavailable (retry with the same key)", body = ErrorBody),
    )
)]
pub async fn create_setup(
    State(app): State<AppState>,
    Driver(d): Driver,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let gw = gateway(&app)?;
    super::input::require_empty_body(&headers, &body)?;
    let idem = match Idempotency::for_driver(&app, d.driver_id, &headers, "/v1/me/cards/setups", &body).await? {
        Ok(idem) => idem,
        Err(replayed) => return Ok(replayed),
    };
    let customer = customer(&app, gw.as_ref(), d.driver_id).await?;
    let key = format!("setup-{}-{}", d.driver_id, idem.claim().key);
    let setup = gw.create_setup(&customer, d.driver_id, &key).await.map_err(|e| match e {
        PaymentError::Unavailable(_) => unavailable(&e),
        PaymentError::Refused { code, message } => AppError::new(
            StatusCode::PAYMENT_REQUIRED,
            "payment_refused",
            "Đơn vị thanh toán từ chối yêu cầu.",
            "The payment processor refused the request.",
        )
        .with_details(serde_json::json!({ "processor_code": code, "processor_message": message })),
    })?;
    let now = app.clock.now();
    // SANDBOX: no processor will call back; the play card is saved as its webhook would, in
    // the transaction that records the setup and the key's answer.
    let sandbox_card = setup.card.as_ref().filter(|_| gw.is_sandbox());
    let view = |card: &Option<SavedCard>| CardSetupView {
        setup_id: setup.id.clone(),
        client_secret: setup.client_secret.clone(),
        status: setup.status.clone(),
        card: card.as_ref().map(card_view),
        gateway: gw.name().into(),
        sandbox: gw.is_sandbox(),
    };
    let answer = |card: &Option<SavedCard>| super::finance::rendered(StatusCode::CREATED, &view(card));
    let saved = match app
        .store
        .record_setup(&setup.id, d.driver_id, &setup.status, sandbox_card, Some(idem.claim()), &answer, now)
        .await
    {
        Ok(saved) => saved,
        Err(e) => return idem.on_store_error(&app, e).await,
    };
    let (code, json) = answer(&saved)?;
    Ok(Idempotency::stored_answer(code, json))
}

/// The driver's saved cards (brand, last four digits, expiry: never the number).
#[utoipa::path(
    get, path = "/v1/me/cards", tag = "drivers", security(("bearer" = [])),
    responses((status = 200, description = "Saved cards", body = [CardView]))
)]
pub async fn list_cards(State(app): State<AppState>, Driver(d): Driver) -> Result<Json<Vec<CardView>>, AppError> {
    Ok(Json(app.store.cards(d.driver_id).await?.iter().map(card_view).collect()))
}

fn card_not_found() -> AppError {
    AppError::not_found("card_not_found", "Không tìm thấy thẻ này.", "No such saved card.")
}

/// Removes a saved card: it is detached at the processor and never charged again.
#[utoipa::path(
    delete, path = "/v1/me/cards/{id}", tag = "drivers", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Card id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such card (or another driver's)", body = ErrorBody),
    )
)]
pub async fn remove_card(
    State(app): State<AppState>,
    Driver(d): Driver,
    Path(id): Path<i64>,
) -> Result<StatusCode, AppError> {
    let removed = app.store.remove_card(d.driver_id, id, app.clock.now()).await?.ok_or_else(card_not_found)?;
    if let Some(gw) = &app.payments
        && let Err(e) = gw.detach_card(&removed.payment_method_id).await
    {
        // We never charge it again whatever happens; the processor keeps a dormant card.
        tracing::warn!(error = %e, card.id = removed.id, "card removed here but not detached at the processor");
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Records a charge for `plan` and drives it (used by session start and extend when the
/// driver pays by card). The driver's idempotency key is claimed with the charge: a retry
/// with it resumes this charge (see [`drive`]), never makes another.
pub async fn pay_by_card(
    app: &AppState,
    idem: Idempotency,
    driver_id: i64,
    card_id: Option<i64>,
    amount: Vnd,
    plan: ChargePlan,
    warnings: Vec<String>,
) -> Result<Response, AppError> {
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
    let charge = match app.store.create_charge(&new, idem.claim(), now).await {
        Ok(c) => c,
        Err(e) => return idem.on_store_error(app, e).await,
    };
    drive(app, charge, warnings).await
}

/// Takes a charge as far as it can go now: charges the card (same key on every attempt),
/// settles a success, records a decline or a 3-D Secure step, and answers from the charge's
/// state (so a retry with the same `Idempotency-Key` gets the same answer, in its own
/// language). A processor outage answers 503 and leaves the charge open: the same request
/// again resumes it, and so does the sweeper.
pub async fn drive(app: &AppState, charge: ChargeRow, warnings: Vec<String>) -> Result<Response, AppError> {
    let gw = gateway(app)?;
    let mut client_secret = None;
    if matches!(charge.status.as_str(), "pending" | "requires_action") {
        let result = if charge.status == "requires_action"
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
                app.store.mark_charge(charge.id, None, "failed", Some(&code), None, app.clock.now()).await?;
            }
            Ok(None) => {}
            Ok(Some(result)) => {
                client_secret = apply_result(app, &charge, result, None).await?;
            }
        }
    }
    let charge = app.store.charge(charge.id).await?.ok_or_else(|| AppError::internal(&"charge vanished"))?;
    answer(app, &charge, client_secret, warnings).await
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
    app: &AppState,
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
            app.store.mark_charge(charge.id, Some(&st.id), "requires_action", None, event, now).await?;
            Ok(st.client_secret)
        }
        ChargeResult::Processing(st) => {
            app.store.mark_charge(charge.id, Some(&st.id), "pending", None, event, now).await?;
            Ok(None)
        }
        ChargeResult::Declined { intent, code, .. } => {
            tracing::info!(charge.id = charge.id, payment.code = %code, "card charge declined");
            let status = if code == "canceled" { "canceled" } else { "failed" };
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
    app: &AppState,
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
pub async fn submit_refund(app: &AppState, refund_id: i64) {
    let Some(gw) = app.payments.clone() else { return };
    let refund = match app.store.refund(refund_id).await {
        Ok(Some(r)) if r.status == "pending" => r,
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

/// The answer for a charge in its current state.
async fn answer(
    app: &AppState,
    charge: &ChargeRow,
    client_secret: Option<String>,
    warnings: Vec<String>,
) -> Result<Response, AppError> {
    let now = app.clock.now();
    match charge.status.as_str() {
        "succeeded" => {
            let row = match charge.session_id {
                Some(id) => app.store.session(id).await?,
                None => None,
            }
            .ok_or_else(|| AppError::internal(&format!("charge {} succeeded without a session", charge.id)))?;
            let status = match charge.plan {
                ChargePlan::Start { .. } => StatusCode::CREATED,
                ChargePlan::Extend { .. } => StatusCode::OK,
            };
            let mut view = session_view(&row, now);
            view.warnings = warnings;
            Ok((status, Json(view)).into_response())
        }
        "requires_action" | "pending" => {
            let view = charge_view(app, charge, client_secret).await?;
            Ok((StatusCode::ACCEPTED, Json(view)).into_response())
        }
        "failed" => {
            let code = charge.failure_code.clone().unwrap_or_else(|| "card_declined".into());
            Err(declined(&code, charge.id))
        }
        "refund_due" => {
            let reason = charge.failure_code.clone().unwrap_or_default();
            let refunds: Vec<RefundView> = app
                .store
                .driver_refunds(charge.driver_id)
                .await?
                .iter()
                .filter(|r| r.charge_id == Some(charge.id))
                .map(refund_view)
                .collect();
            let (vi, en) = match reason.as_str() {
                "plate_active" => ("Xe này đang có lượt đỗ khác.", "This vehicle is already parked."),
                "point_full" => ("Điểm đỗ đã hết chỗ.", "The point is full."),
                "session_ended" => ("Lượt đỗ đã kết thúc.", "The session has ended."),
                "session_changed" => {
                    ("Lượt đỗ đã thay đổi trong lúc thanh toán.", "The session changed during the payment.")
                }
                _ => ("Không thể thực hiện sau khi thanh toán.", "It could no longer be given once paid."),
            };
            Err(AppError::conflict(
                "paid_not_applied",
                format!("{vi} Số tiền đã trả được hoàn lại vào thẻ."),
                format!("{en} The amount paid is refunded to the card."),
            )
            .with_details(serde_json::json!({ "reason": reason, "charge_id": charge.id, "refunds": refunds })))
        }
        _ => Err(AppError::conflict(
            "charge_canceled",
            "Giao dịch thẻ đã bị hủy; hãy thử lại với một Idempotency-Key mới.",
            "The card payment was cancelled; try again with a new Idempotency-Key.",
        )
        .with_details(serde_json::json!({ "charge_id": charge.id, "status": charge.status }))),
    }
}

/// A decline, in words a driver understands.
fn declined(code: &str, charge_id: i64) -> AppError {
    let (vi, en) = match code {
        "insufficient_funds" => ("Thẻ không đủ số dư.", "The card has insufficient funds."),
        "lost_card" | "stolen_card" => {
            ("Thẻ đã bị báo mất; hãy dùng thẻ khác.", "The card was reported lost; use another card.")
        }
        "expired_card" => ("Thẻ đã hết hạn.", "The card has expired."),
        "incorrect_cvc" | "invalid_cvc" => ("Mã CVC không đúng.", "The card's security code is wrong."),
        "authentication_required" => {
            ("Ngân hàng yêu cầu xác thực (3-D Secure).", "The bank requires authentication (3-D Secure).")
        }
        "processing_error" => ("Lỗi xử lý tại ngân hàng; hãy thử lại.", "The bank had a processing error; try again."),
        "do_not_honor" | "generic_decline" | "card_declined" => (
            "Ngân hàng từ chối thẻ; hãy liên hệ ngân hàng hoặc dùng thẻ khác.",
            "The bank declined the card; contact it or use another card.",
        ),
        _ => ("Thẻ bị từ chối.", "The card was declined."),
    };
    AppError::new(StatusCode::PAYMENT_REQUIRED, "card_declined", vi, en)
        .with_details(serde_json::json!({ "decline_code": code, "charge_id": charge_id }))
}

async fn charge_view(app: &AppState, c: &ChargeRow, client_secret: Option<String>) -> Result<CardChargeView, AppError> {
    let now = app.clock.now();
    let session = match c.session_id.filter(|_| c.status == "succeeded") {
        Some(id) => app.store.session(id).await?.map(|s| session_view(&s, now)),
        None => None,
    };
    let mut secret = client_secret;
    if secret.is_none()
        && c.status == "requires_action"
        && let (Some(gw), Some(pi)) = (&app.payments, &c.intent_id)
        && let Ok(Some(st)) = gw.intent(pi).await
    {
        secret = st.client_secret;
    }
    let refunds = app
        .store
        .driver_refunds(c.driver_id)
        .await?
        .iter()
        .filter(|r| r.charge_id == Some(c.id))
        .map(refund_view)
        .collect();
    Ok(CardChargeView {
        id: c.id,
        status: c.status.clone(),
        amount: c.amount.get(),
        purpose: match c.plan {
            ChargePlan::Start { .. } => "session_start".into(),
            ChargePlan::Extend { .. } => "session_extend".into(),
        },
        intent_id: c.intent_id.clone(),
        client_secret: secret.filter(|_| c.status == "requires_action"),
        session,
        failure_code: c.failure_code.clone(),
        refunds,
        action_deadline: c.action_deadline,
    })
}

/// One card charge of the driver: the app polls it after 3-D Secure.
#[utoipa::path(
    get, path = "/v1/me/card-charges/{id}", tag = "drivers", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Charge id")),
    responses(
        (status = 200, description = "The charge", body = CardChargeView),
        (status = 404, description = "No such charge (or another driver's)", body = ErrorBody),
    )
)]
pub async fn get_charge(
    State(app): State<AppState>,
    Driver(d): Driver,
    Path(id): Path<i64>,
) -> Result<Json<CardChargeView>, AppError> {
    let c = app.store.charge(id).await?.filter(|c| c.driver_id == d.driver_id).ok_or_else(|| {
        AppError::not_found("charge_not_found", "Không tìm thấy giao dịch thẻ.", "No such card charge.")
    })?;
    Ok(Json(charge_view(&app, &c, None).await?))
}

/// The driver's refunds, newest first.
#[utoipa::path(
    get, path = "/v1/me/refunds", tag = "drivers", security(("bearer" = [])),
    responses((status = 200, description = "Refunds", body = [RefundView]))
)]
pub async fn list_refunds(State(app): State<AppState>, Driver(d): Driver) -> Result<Json<Vec<RefundView>>, AppError> {
    Ok(Json(app.store.driver_refunds(d.driver_id).await?.iter().map(refund_view).collect()))
}

/// Whether wallet money that no card can take back may go back to the demo's sandbox: only
/// with the sandbox on and no real processor.
pub fn sandbox_refunds(app: &crate::App) -> bool {
    app.payments.as_ref().is_none_or(|g| g.is_sandbox()) && app.settings.sandbox_payments
}

/// Closes the driver's account: the wallet balance goes back to the cards that topped it up
/// (newest first, through the processor's refund API), every token is revoked. Refused while
/// a session is active. Needs an `Idempotency-Key`.
#[utoipa::path(
    post, path = "/v1/me/close", tag = "drivers", security(("bearer" = [])),
    request_body(content = Option<super::input::EmptyBody>, content_type = "application/json", description = "None, or `{}`"),
    params(("Idempotency-Key" = String, Header, description = "Unique per closing")),
    responses(
        (status = 200, description = "Closed; refunds under way", body = CloseAccountView),
        (status = 400, description = "Missing Idempotency-Key", body = ErrorBody),
        (status = 409, description = "A session is still active", body = ErrorBody),
    )
)]
pub async fn close_account(
    State(app): State<AppState>,
    Driver(d): Driver,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    super::input::require_empty_body(&headers, &body)?;
    let idem = match Idempotency::for_driver(&app, d.driver_id, &headers, "/v1/me/close", &body).await? {
        Ok(idem) => idem,
        Err(replayed) => return Ok(replayed),
    };
    let sandbox = sandbox_refunds(&app);
    // The answer is rendered inside the closing transaction, refunds as it left them
    // (`pending`), and stored with the key there: a crash after the commit leaves the key
    // answered. The first caller gets the same answer; the refunds' progress is at
    // GET /v1/me/refunds.
    let answer = |(refunds, remaining): &(Vec<RefundRow>, Vnd)| {
        let view =
            CloseAccountView { refunds: refunds.iter().map(refund_view).collect(), remaining_balance: remaining.get() };
        rendered(StatusCode::OK, &view)
    };
    let outcome =
        match app.store.close_account(d.driver_id, sandbox, Some(idem.claim()), &answer, app.clock.now()).await {
            Ok(o) => o,
            Err(e) => return idem.on_store_error(&app, e).await,
        };
    match outcome {
        CloseAccount::Closed(refunds, remaining) => {
            app.forget_driver_tokens(d.driver_id);
            for r in &refunds {
                submit_refund(&app, r.id).await;
            }
            tracing::info!(driver.id = d.driver_id, refunds = refunds.len(), "account closed");
            answered(answer(&(refunds, remaining)))
        }
        CloseAccount::ActiveSessions => Err(AppError::conflict(
            "active_sessions",
            "Hãy kết thúc các lượt đỗ đang chạy trước khi đóng tài khoản.",
            "Stop your active parking sessions before closing the account.",
        )),
        CloseAccount::PaymentInProgress => Err(AppError::conflict(
            "payment_in_progress",
            "Một giao dịch thẻ đang chờ xử lý (ví dụ xác thực 3-D Secure); hãy thử lại sau.",
            "A card payment is still in progress (e.g. 3-D Secure); try again later.",
        )),
        CloseAccount::AlreadyClosed => {
            Err(AppError::conflict("account_closed", "Tài khoản đã đóng.", "The account is already closed."))
        }
    }
}

/// Refunds part or all of a session (a disputed session): card-paid turns go back to their
/// cards through the processor, wallet-paid ones to the wallet. Role admin or finance; the
/// reason and the author are kept. Needs an `Idempotency-Key`.
#[utoipa::path(
    post, path = "/v1/admin/sessions/{id}/refunds", tag = "admin", request_body = StaffRefundRequest,
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "Session id"), ("Idempotency-Key" = String, Header, description = "Unique per refund")),
    responses(
        (status = 201, description = "Refunded (processor refunds under way)", body = StaffRefundView),
        (status = 400, description = "Bad amount or reason; missing Idempotency-Key", body = ErrorBody),
        (status = 403, description = "Not admin or finance, or another district", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 422, description = "More than what is left to refund; not refundable here (SMS, cash)", body = ErrorBody),
    )
)]
pub async fn staff_refund(
    State(app): State<AppState>,
    Staff(p): Staff,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    use iparking_mobile_api::StaffRole;
    if !matches!(p.role, StaffRole::Admin | StaffRole::Finance) {
        return Err(AppError::forbidden(
            "Cần quyền quản trị hoặc tài chính.",
            "This action needs the admin or finance role.",
        ));
    }
    let path = format!("/v1/admin/sessions/{id}/refunds");
    let idem = Idempotency::from_request(format!("staff:{}", p.staff_id), &headers, "POST", &path, &body)?;
    if let Some(replayed) = idem.replay(&app).await? {
        return Ok(replayed);
    }
    let req: StaffRefundRequest = parse_json(&headers, &body)?;
    let reason = crate::domain::city::trim_blank(&req.reason);
    if !crate::domain::city::text_fits(&req.reason, 500) {
        return Err(AppError::bad_request(
            "invalid_reason",
            "Cần lý do hoàn tiền (1–500 ký tự).",
            "Give a refund reason (1–500 characters).",
        ));
    }
    if req.amount <= 0 {
        return Err(AppError::bad_request(
            "invalid_amount",
            "Số tiền hoàn phải là số nguyên dương (đồng).",
            "A refund must be a positive whole number of đồng.",
        ));
    }
    let session = app.store.session(id).await?.ok_or_else(|| {
        AppError::not_found("session_not_found", "Không tìm thấy lượt đỗ này.", "No such parking session.")
    })?;
    if let Some(point) = app.store.point(&session.point_code).await?
        && !p.covers_district(&point.district_code)
    {
        return Err(AppError::forbidden(
            format!("Tài khoản của bạn không quản lý quận {}.", point.district_code),
            format!("Your account does not manage district {}.", point.district_code),
        ));
    }
    let requested_by = format!("staff:{}", p.staff_id);
    let now = app.clock.now();
    // The answer is rendered inside the refund's transaction, the new refunds as it left
    // them (`pending`), and stored with the key there; the first caller gets the same.
    let answer = |(row, refunds): &(SessionRow, Vec<RefundRow>)| {
        let view =
            StaffRefundView { session: session_view(row, now), refunds: refunds.iter().map(refund_view).collect() };
        rendered(StatusCode::CREATED, &view)
    };
    let outcome = match app
        .store
        .refund_session(id, Vnd(req.amount), reason, &requested_by, Some(idem.claim()), &answer, now)
        .await
    {
        Ok(o) => o,
        Err(e) => return idem.on_store_error(&app, e).await,
    };
    match outcome {
        SessionRefund::Done(row, refunds) => {
            for r in &refunds {
                submit_refund(&app, r.id).await;
            }
            tracing::info!(
                session.id = id,
                staff.id = p.staff_id,
                amount_vnd = req.amount,
                "session refunded by staff"
            );
            answered(answer(&(*row, refunds)))
        }
        SessionRefund::NotFound => {
            Err(AppError::not_found("session_not_found", "Không tìm thấy lượt đỗ này.", "No such parking session."))
        }
        SessionRefund::TooLarge { refundable } => Err(AppError::unprocessable(
            "refund_too_large",
            format!("Chỉ còn có thể hoàn tối đa {}.", refundable.display(false)),
            format!("At most {} can still be refunded.", refundable.display(true)),
        )
        .with_details(serde_json::json!({ "refundable": refundable.get() }))),
        SessionRefund::NotRefundable => Err(AppError::unprocessable(
            "not_refundable_here",
            "Lượt đỗ trả bằng SMS hoặc tiền mặt không hoàn qua đây.",
            "Sessions paid by SMS or cash are not refunded here.",
        )),
    }
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
pub async fn sweep(app: &AppState) -> Result<SweepReport, AppError> {
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
            Some(r) if r.status != "pending" => report.refunds_submitted += 1,
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
    app: &AppState,
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
            .mark_charge(charge.id, None, "abandoned", Some("never_reached_processor"), None, now)
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
                .mark_charge(charge.id, Some(&st.id), "canceled", Some("canceled"), None, now)
                .await
                .map_err(db)?;
            Ok(Some("canceled"))
        }
        "requires_payment_method" if charge.status == "pending" && !st.needs_authentication() => {
            // Declined off-session and never taken on-session.
            app.store
                .mark_charge(charge.id, Some(&st.id), "failed", Some("card_declined"), None, now)
                .await
                .map_err(db)?;
            Ok(Some("failed"))
        }
        "requires_action" | "requires_confirmation" | "requires_payment_method" => {
            if now < charge.action_deadline {
                app.store.mark_charge(charge.id, Some(&st.id), "requires_action", None, None, now).await.map_err(db)?;
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
                        .mark_charge(charge.id, Some(&st.id), "canceled", Some("authentication_timeout"), None, now)
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
pub async fn import_settlement(app: &AppState) -> Result<ImportReport, AppError> {
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

fn require_money_staff(p: &crate::store::Principal) -> Result<(), AppError> {
    use iparking_mobile_api::StaffRole;
    if matches!(p.role, StaffRole::Admin | StaffRole::Finance) && p.district_codes.is_empty() {
        Ok(())
    } else {
        Err(AppError::forbidden(
            "Cần quyền quản trị hoặc tài chính toàn thành phố.",
            "This needs a city-wide admin or finance role.",
        ))
    }
}

/// Runs the payments sweeper now (it also runs every minute on one node).
#[utoipa::path(
    post, path = "/v1/admin/payments/sweep", tag = "admin", security(("bearer" = [])),
    responses(
        (status = 200, description = "What the sweep did", body = SweepReport),
        (status = 403, description = "Not a city-wide admin or finance", body = ErrorBody),
        (status = 404, description = "Card payments are not configured", body = ErrorBody),
    )
)]
pub async fn run_sweep(State(app): State<AppState>, Staff(p): Staff) -> Result<Json<SweepReport>, AppError> {
    require_money_staff(&p)?;
    Ok(Json(sweep(&app).await?))
}

/// Imports settlement data (balance transactions, payouts) from the processor now (it also
/// runs every 15 minutes on one node).
#[utoipa::path(
    post, path = "/v1/admin/settlement/import", tag = "admin", security(("bearer" = [])),
    responses(
        (status = 200, description = "What was imported", body = ImportReport),
        (status = 403, description = "Not a city-wide admin or finance", body = ErrorBody),
        (status = 404, description = "Card payments are not configured", body = ErrorBody),
        (status = 503, description = "The processor is unavailable (progress kept)", body = ErrorBody),
    )
)]
pub async fn run_import(State(app): State<AppState>, Staff(p): Staff) -> Result<Json<ImportReport>, AppError> {
    require_money_staff(&p)?;
    Ok(Json(import_settlement(&app).await?))
}

/// Runs `job` every `every` (first one interval after the start) on whichever node holds
/// the lease `name`.
pub async fn leased_forever<F, Fut>(app: AppState, name: &'static str, every: std::time::Duration, job: F)
where
    F: Fn(AppState) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ttl = Duration::from_std(every * 3).unwrap_or(Duration::minutes(5));
    // The first run is one interval after the start, not at once: a restarting fleet does
    // not sweep in a burst, and nothing is lost (the work waits in the database).
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = app.clock.now();
        match app.store.try_lease(name, &app.node_id, now + ttl, now).await {
            Ok(true) => job(app.clone()).await,
            Ok(false) => {}
            Err(e) => tracing::warn!(job = name, error = %e, "job lease not taken"),
        }
    }
}

/// A JSON 200 for ignored webhook parts.
pub fn ack(outcome: &str) -> Response {
    Json(serde_json::json!({ "received": true, "outcome": outcome })).into_response()
}

/// Handles a processor event about a card charge. `None` if the intent is not a charge's.
pub async fn charge_event(
    app: &AppState,
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
            match app.store.mark_charge(charge.id, Some(&st.id), "requires_action", None, event, now).await? {
                MarkOutcome::Duplicate => "duplicate",
                _ => "awaiting_action",
            }
        }
        "payment_intent.payment_failed" | "payment_intent.canceled" => {
            let status = if event_type.ends_with("canceled") { "canceled" } else { "failed" };
            match app.store.mark_charge(charge.id, Some(&st.id), status, Some(status), event, now).await? {
                MarkOutcome::Duplicate => "duplicate",
                _ => "updated",
            }
        }
        _ => match app.store.mark_charge(charge.id, Some(&st.id), "requires_action", None, event, now).await? {
            MarkOutcome::Duplicate => "duplicate",
            _ => "updated",
        },
    };
    Ok(Some(word))
}

/// Handles a processor event about a refund.
pub async fn refund_event(
    app: &AppState,
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
    app: &AppState,
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
