//! Saved cards, card charges and refunds, account closing, the staff's refunds, and the
//! sweeper's and settlement import's manual runs: the HTTP side of `app::charges`.

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use iparking_mobile_api::{
    CardChargeView, CardSetupView, CardView, CloseAccountView, ErrorBody, RefundView, StaffRefundRequest,
    StaffRefundView,
};

use super::{
    AppState,
    extract::{Driver, Json, Path, Staff},
    idempotency::{Idempotency, answered, rendered},
    input::parse_json,
};
use crate::{
    app::views::{refund_view, session_view},
    app::{
        Keyed,
        charges::{
            self, ChargeAnswer, ImportReport, SweepReport, card_not_found, customer, gateway, import_settlement,
            sandbox_refunds, submit_refund, sweep, unavailable,
        },
    },
    domain::charge::ChargeStatus,
    domain::money::Vnd,
    error::AppError,
    payments::PaymentError,
    store::{
        cards::{ChargePlan, ChargeRow, CloseAccount, RefundRow, SavedCard, SessionRefund},
        drivers::SessionRow,
    },
};

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
    let answer = |card: &Option<SavedCard>| rendered(StatusCode::CREATED, &view(card));
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

/// The API view of a charge, with its session once paid and its refunds.
async fn charge_view(app: &AppState, c: &ChargeRow, client_secret: Option<String>) -> Result<CardChargeView, AppError> {
    let now = app.clock.now();
    let session = match c.session_id.filter(|_| c.status == ChargeStatus::Succeeded) {
        Some(id) => app.store.session(id).await?.map(|s| session_view(&s, now)),
        None => None,
    };
    let secret = charges::client_secret(app, c, client_secret).await;
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
        status: c.status.as_str().to_owned(),
        amount: c.amount.get(),
        purpose: match c.plan {
            ChargePlan::Start { .. } => "session_start".into(),
            ChargePlan::Extend { .. } => "session_extend".into(),
        },
        intent_id: c.intent_id.clone(),
        client_secret: secret,
        session,
        failure_code: c.failure_code.clone(),
        refunds,
        action_deadline: c.action_deadline,
    })
}

/// The response for a charge where [`charges::drive`] left it: the session paid (201 for a
/// start, 200 for an extension), 202 with the charge while it waits, or the refusal in words.
pub async fn charge_response(app: &AppState, answer: ChargeAnswer) -> Result<Response, AppError> {
    match answer {
        ChargeAnswer::Applied { started, session, warnings } => {
            let status = if started { StatusCode::CREATED } else { StatusCode::OK };
            let mut view = session_view(&session, app.clock.now());
            view.warnings = warnings;
            Ok((status, Json(view)).into_response())
        }
        ChargeAnswer::InProgress { charge, client_secret } => {
            let view = charge_view(app, &charge, client_secret).await?;
            Ok((StatusCode::ACCEPTED, Json(view)).into_response())
        }
        ChargeAnswer::Declined { code, charge_id } => Err(declined(&code, charge_id)),
        ChargeAnswer::PaidNotApplied { reason, charge_id, refunds } => {
            let refunds: Vec<RefundView> = refunds.iter().map(refund_view).collect();
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
            .with_details(serde_json::json!({ "reason": reason, "charge_id": charge_id, "refunds": refunds })))
        }
        ChargeAnswer::Canceled { charge_id, status } => Err(AppError::conflict(
            "charge_canceled",
            "Giao dịch thẻ đã bị hủy; hãy thử lại với một Idempotency-Key mới.",
            "The card payment was cancelled; try again with a new Idempotency-Key.",
        )
        .with_details(serde_json::json!({ "charge_id": charge_id, "status": status.as_str() }))),
    }
}

/// [`charge_response`] for a charge paid under a key claimed with it: a key already taken is
/// answered its first answer.
pub async fn keyed_charge_response(
    app: &AppState,
    idem: &Idempotency,
    answer: Keyed<ChargeAnswer>,
) -> Result<Response, AppError> {
    match answer {
        Keyed::Done(answer) => charge_response(app, answer).await,
        Keyed::Taken => idem.replay_taken(app).await,
    }
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

/// A JSON 200 for ignored webhook parts.
pub fn ack(outcome: &str) -> Response {
    Json(serde_json::json!({ "received": true, "outcome": outcome })).into_response()
}
