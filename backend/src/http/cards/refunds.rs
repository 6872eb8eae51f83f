//! Refunds: the driver's (`GET /v1/me/refunds`), closing an account (`POST /v1/me/close`)
//! and a staff member's refund of a session (`POST /v1/admin/sessions/{id}/refunds`).

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
};
use iparking_mobile_api::{CloseAccountView, ErrorBody, RefundView, StaffRefundRequest, StaffRefundView};

use crate::{
    app::{
        Keyed,
        refunds::{self, refund_session, require_refund_staff},
        views::{refund_view, session_view},
    },
    domain::money::Vnd,
    error::AppError,
    http::{
        AppState,
        extract::{Driver, Json, Path, Staff},
        idempotency::{Idempotency, answered, rendered},
        input::parse_json,
    },
    store::{cards::RefundRow, drivers::SessionRow},
};

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
    request_body(content = Option<crate::http::input::EmptyBody>, content_type = "application/json", description = "None, or `{}`"),
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
    crate::http::input::require_empty_body(&headers, &body)?;
    let idem = match Idempotency::for_driver(&app, d.driver_id, &headers, "/v1/me/close", &body).await? {
        Ok(idem) => idem,
        Err(replayed) => return Ok(replayed),
    };
    // The answer is rendered inside the closing transaction, refunds as it left them
    // (`pending`), and stored with the key there: a crash after the commit leaves the key
    // answered. The first caller gets the same answer; the refunds' progress is at
    // GET /v1/me/refunds.
    let answer = |(refunds, remaining): &(Vec<RefundRow>, Vnd)| {
        let view =
            CloseAccountView { refunds: refunds.iter().map(refund_view).collect(), remaining_balance: remaining.get() };
        rendered(StatusCode::OK, &view)
    };
    match refunds::close_account(&app, d.driver_id, idem.claim(), &answer).await? {
        Keyed::Done(closed) => answered(answer(&closed)),
        Keyed::Taken => idem.replay_taken(&app).await,
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
    require_refund_staff(&p)?;
    let path = format!("/v1/admin/sessions/{id}/refunds");
    let idem = Idempotency::from_request(format!("staff:{}", p.staff_id), &headers, "POST", &path, &body)?;
    if let Some(replayed) = idem.replay(&app).await? {
        return Ok(replayed);
    }
    let req: StaffRefundRequest = parse_json(&headers, &body)?;
    let now = app.clock.now();
    // The answer is rendered inside the refund's transaction, the new refunds as it left
    // them (`pending`), and stored with the key there; the first caller gets the same.
    let answer = |(row, refunds): &(SessionRow, Vec<RefundRow>)| {
        let view =
            StaffRefundView { session: session_view(row, now), refunds: refunds.iter().map(refund_view).collect() };
        rendered(StatusCode::CREATED, &view)
    };
    match refund_session(&app, &p, id, &req, idem.claim(), &answer).await? {
        Keyed::Done(refunded) => answered(answer(&refunded)),
        Keyed::Taken => idem.replay_taken(&app).await,
    }
}
