//! Cash (and payments) taken on a driver's behalf, with slips anyone can check:
//! `POST /v1/warden/sessions`, `POST /v1/warden/sessions/{id}/extend`,
//! `GET /v1/receipts/{number}`.

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
};
use iparking_mobile_api::{
    CashPaymentView, ErrorBody, ReceiptCheckView, ReceiptQuery, WardenExtendSession, WardenFloatView,
    WardenStartSession,
};

use super::super::{
    AppState,
    extract::{Json, Path, Query},
    idempotency::Idempotency,
    input::parse_json,
};
use super::{Applying, Warden, claim_staff, json_answer};
use crate::{
    app::wardens::cash::{CashResult, cash_extend, cash_start, check_receipt, extension_quote, float},
    error::AppError,
    store::wardens::ShiftRule,
};

/// The price of extending a session at a point the warden covers, shown before the warden
/// takes the money (`POST /v1/warden/sessions/{id}/extend` then charges exactly it).
#[utoipa::path(
    get, path = "/v1/warden/sessions/{id}/extension-quote", tag = "wardens",
    params(("id" = i64, Path, description = "Session id"), iparking_mobile_api::ExtensionQuoteQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The extension's price, line by line", body = iparking_mobile_api::QuoteView),
        (status = 400, description = "Neither or both of minutes/turns, or zero", body = ErrorBody),
        (status = 403, description = "Not a warden, or a point the warden does not cover", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 409, description = "The session has ended", body = ErrorBody),
        (status = 422, description = "Longer than the tariff's maximum stay", body = ErrorBody),
    )
)]
pub async fn warden_extension_quote(
    State(app): State<AppState>,
    w: Warden,
    Path(id): Path<i64>,
    Query(q): Query<iparking_mobile_api::ExtensionQuoteQuery>,
) -> Result<Json<iparking_mobile_api::QuoteView>, AppError> {
    Ok(Json(extension_quote(&app, &w, id, q.minutes, q.turns).await?))
}

/// The warden's prepaid float (topped up by finance): its balance and latest movements.
/// Paying from it (`payment: float`) never takes it below zero.
#[utoipa::path(
    get, path = "/v1/warden/float", tag = "wardens", security(("bearer" = [])),
    responses(
        (status = 200, description = "The float", body = WardenFloatView),
        (status = 403, description = "Not a warden", body = ErrorBody),
    )
)]
pub async fn get_float(State(app): State<AppState>, w: Warden) -> Result<Json<WardenFloatView>, AppError> {
    Ok(Json(float(&app, &w).await?))
}

/// The stored answer of an online cash payment. Rendered through a JSON value, as it
/// always was (keys in order: replays of answers stored before stay identical).
fn cash_answer(r: CashResult, status: StatusCode) -> Result<(u16, String), AppError> {
    match r {
        CashResult::Paid(view, _) => {
            json_answer(status, &serde_json::to_value(view).map_err(|e| AppError::internal(&e))?)
        }
        CashResult::Unapplied(..) => Err(AppError::internal(&"an online cash payment cannot be unapplied")),
    }
}

/// A session paid in cash to the warden on the driver's behalf (thanh toán hộ): priced by
/// the tariff, posted from the warden's cash to the point's revenue, with a slip to print.
/// Needs an open shift and an `Idempotency-Key`.
#[utoipa::path(
    post, path = "/v1/warden/sessions", tag = "wardens", request_body = WardenStartSession,
    security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, description = "Unique per payment; retries reuse it")),
    responses(
        (status = 201, description = "Paid; the session and the slip", body = CashPaymentView),
        (status = 400, description = "Bad plate, duration, body; missing Idempotency-Key", body = ErrorBody),
        (status = 403, description = "Outside the assignment, or not a warden", body = ErrorBody),
        (status = 404, description = "Unknown point", body = ErrorBody),
        (status = 409, description = "No open shift, plate already paid, point full or closed", body = ErrorBody),
        (status = 422, description = "Class not allowed, no tariff, too long, key reused", body = ErrorBody),
    )
)]
pub async fn start_cash_session(
    State(app): State<AppState>,
    w: Warden,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let idem = match claim_staff(&app, w.0.staff_id, &headers, "/v1/warden/sessions", &body).await? {
        Ok(idem) => idem,
        Err(replayed) => return Ok(replayed),
    };
    let req: WardenStartSession = parse_json(&headers, &body)?;
    let now = app.clock.now();
    let render = |r: CashResult| cash_answer(r, StatusCode::CREATED);
    let r = cash_start(&app, &w, &req, ShiftRule::OpenRequired, &Applying::online(now, idem.claim(), &render)).await?;
    // The answer was stored with the key in the payment's transaction.
    let (status, json) = render(r)?;
    Ok(Idempotency::stored_answer(status, json))
}

/// An extension of an active session paid in cash to the warden, with its own slip.
#[utoipa::path(
    post, path = "/v1/warden/sessions/{id}/extend", tag = "wardens", request_body = WardenExtendSession,
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "Session id"), ("Idempotency-Key" = String, Header, description = "Unique per payment")),
    responses(
        (status = 200, description = "Extended; the session and the slip", body = CashPaymentView),
        (status = 400, description = "Bad duration, missing Idempotency-Key", body = ErrorBody),
        (status = 403, description = "Outside the assignment, or not a warden", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 409, description = "No open shift; the session has ended", body = ErrorBody),
        (status = 422, description = "Beyond the maximum stay; key reused", body = ErrorBody),
    )
)]
pub async fn extend_cash_session(
    State(app): State<AppState>,
    w: Warden,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let path = format!("/v1/warden/sessions/{id}/extend");
    let idem = match claim_staff(&app, w.0.staff_id, &headers, &path, &body).await? {
        Ok(idem) => idem,
        Err(replayed) => return Ok(replayed),
    };
    let req: WardenExtendSession = parse_json(&headers, &body)?;
    let now = app.clock.now();
    let render = |r: CashResult| cash_answer(r, StatusCode::OK);
    let r =
        cash_extend(&app, &w, id, &req, ShiftRule::OpenRequired, &Applying::online(now, idem.claim(), &render)).await?;
    // The answer was stored with the key in the payment's transaction.
    let (status, json) = render(r)?;
    Ok(Idempotency::stored_answer(status, json))
}

/// Checks a cash slip: the number and the code printed on it. No login needed; a wrong
/// code answers exactly like an unknown number; lookups are limited per client address
/// (with the slips' pages, `/r/{number}`).
#[utoipa::path(
    get, path = "/v1/receipts/{number}", tag = "wardens", params(("number" = String, Path, description = "Receipt number"), ReceiptQuery),
    responses(
        (status = 200, description = "The slip is genuine", body = ReceiptCheckView),
        (status = 404, description = "No such slip (or a wrong code)", body = ErrorBody),
        (status = 429, description = "Too many lookups from this address", body = ErrorBody),
    )
)]
pub async fn get_receipt(
    State(app): State<AppState>,
    axum::extract::ConnectInfo(super::super::conns::Peer(peer)): axum::extract::ConnectInfo<super::super::conns::Peer>,
    Path(number): Path<String>,
    Query(q): Query<ReceiptQuery>,
) -> Result<Json<ReceiptCheckView>, AppError> {
    crate::app::receipts::count_lookup(&app, peer.ip()).await?;
    Ok(Json(check_receipt(&app, &number, &q.code).await?))
}
