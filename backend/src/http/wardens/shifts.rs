//! Shifts: `POST /v1/warden/shifts`, `GET /v1/warden/shifts/{id}`,
//! `POST /v1/warden/shifts/{id}/close`.

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
};
use iparking_mobile_api::{CloseShift, ErrorBody, OpenShift, ShiftHistoryView, ShiftView};

use super::super::{
    AppState,
    extract::{Json, Path},
    idempotency::Idempotency,
    input::parse_json,
};
use super::{Warden, claim_staff, json_answer};
use crate::{
    app::wardens::{
        render_failed,
        shifts::{close, current, history, open, shift, shift_view},
    },
    error::AppError,
    store::wardens::ShiftRow,
};

/// The warden's open shift: where a handheld that restarted finds it again.
#[utoipa::path(
    get, path = "/v1/warden/shifts/current", tag = "wardens", security(("bearer" = [])),
    responses(
        (status = 200, description = "The open shift, with its cash so far", body = ShiftView),
        (status = 404, description = "No open shift", body = ErrorBody),
    )
)]
pub async fn current_shift(State(app): State<AppState>, w: Warden) -> Result<Json<ShiftView>, AppError> {
    Ok(Json(current(&app, &w).await?))
}

/// What the warden did in one of their shifts: plate checks, cash slips and citations,
/// newest first (at most 200 of each).
#[utoipa::path(
    get, path = "/v1/warden/shifts/{id}/history", tag = "wardens", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Shift id")),
    responses(
        (status = 200, description = "The shift's history", body = ShiftHistoryView),
        (status = 404, description = "No such shift of this warden", body = ErrorBody),
    )
)]
pub async fn shift_history(
    State(app): State<AppState>,
    w: Warden,
    Path(id): Path<i64>,
) -> Result<Json<ShiftHistoryView>, AppError> {
    Ok(Json(history(&app, &w, id).await?))
}

/// Opens a shift on this handheld (one open shift per warden). Needs an `Idempotency-Key`.
#[utoipa::path(
    post, path = "/v1/warden/shifts", tag = "wardens", request_body = OpenShift, security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, description = "Unique per shift")),
    responses(
        (status = 201, description = "Opened", body = ShiftView),
        (status = 403, description = "Not a warden", body = ErrorBody),
        (status = 409, description = "A shift is already open", body = ErrorBody),
    )
)]
pub async fn open_shift(
    State(app): State<AppState>,
    w: Warden,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    w.require_cash_role()?;
    let idem = match claim_staff(&app, w.0.staff_id, &headers, "/v1/warden/shifts", &body).await? {
        Ok(idem) => idem,
        Err(replayed) => return Ok(replayed),
    };
    let req: OpenShift = parse_json(&headers, &body)?;
    let answer = |s: &ShiftRow| json_answer(StatusCode::CREATED, &shift_view(s)).map_err(render_failed);
    let view = open(&app, &w, req.note.as_deref(), idem.claim(), &answer).await?;
    // The answer was stored with the key in the opening's transaction.
    let (status, json) = json_answer(StatusCode::CREATED, &view)?;
    Ok(Idempotency::stored_answer(status, json))
}

/// One of the warden's shifts, with its cash so far.
#[utoipa::path(
    get, path = "/v1/warden/shifts/{id}", tag = "wardens", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Shift id")),
    responses(
        (status = 200, description = "The shift", body = ShiftView),
        (status = 404, description = "No such shift of this warden", body = ErrorBody),
    )
)]
pub async fn get_shift(
    State(app): State<AppState>,
    w: Warden,
    Path(id): Path<i64>,
) -> Result<Json<ShiftView>, AppError> {
    Ok(Json(shift(&app, &w, id).await?))
}

/// Closes a shift with the cash handed over: expected cash (the shift's collections), the
/// declared amount and the difference are recorded for finance, and the cash moves to the
/// cash office in the ledger. Needs an `Idempotency-Key`.
#[utoipa::path(
    post, path = "/v1/warden/shifts/{id}/close", tag = "wardens", request_body = CloseShift,
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "Shift id"), ("Idempotency-Key" = String, Header, description = "Unique per closing")),
    responses(
        (status = 200, description = "Closed", body = ShiftView),
        (status = 400, description = "Negative or absurd amount", body = ErrorBody),
        (status = 404, description = "No such shift of this warden", body = ErrorBody),
        (status = 409, description = "Already closed", body = ErrorBody),
    )
)]
pub async fn close_shift(
    State(app): State<AppState>,
    w: Warden,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    w.require_cash_role()?;
    let path = format!("/v1/warden/shifts/{id}/close");
    let idem = match claim_staff(&app, w.0.staff_id, &headers, &path, &body).await? {
        Ok(idem) => idem,
        Err(replayed) => return Ok(replayed),
    };
    let req: CloseShift = parse_json(&headers, &body)?;
    let answer = |s: &ShiftRow| json_answer(StatusCode::OK, &shift_view(s)).map_err(render_failed);
    let view = close(&app, &w, id, &req, idem.claim(), &answer).await?;
    // The answer was stored with the key in the closing's transaction.
    let (status, json) = json_answer(StatusCode::OK, &view)?;
    Ok(Idempotency::stored_answer(status, json))
}
