//! Shifts: opened, counted and closed with the cash handed over.

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
};
use iparking_mobile_api::{CloseShift, ErrorBody, OpenShift, ShiftStatus, ShiftView};

use super::super::{
    AppState,
    extract::{Json, Path},
    idempotency::Idempotency,
    input::parse_json,
};
use crate::{
    domain::money::Vnd,
    error::AppError,
    store::wardens::{CloseShiftOutcome, OpenShiftOutcome, ShiftRow},
};

use super::cash::{json_answer, render_failed};
use super::{NOTE_MAX_CHARS, Warden, claim_staff};

// ---- shifts ------------------------------------------------------------------------------

fn shift_view(s: &ShiftRow) -> ShiftView {
    ShiftView {
        id: s.id,
        staff_id: s.staff_id,
        status: if s.open { ShiftStatus::Open } else { ShiftStatus::Closed },
        device: s.device.clone(),
        opened_at: s.opened_at,
        closed_at: s.closed_at,
        collections: s.collections,
        expected_cash: s.expected_cash.get(),
        declared_cash: s.declared_cash.map(Vnd::get),
        difference: s.difference.map(Vnd::get),
        late_cash: s.late_cash.get(),
        note: s.note.clone(),
        close_note: s.close_note.clone(),
    }
}

fn shift_not_found() -> AppError {
    AppError::not_found("shift_not_found", "Không có ca này.", "No such shift.")
}

fn check_note(note: Option<&str>) -> Result<Option<String>, AppError> {
    if note.is_some_and(|n| n.chars().count() > NOTE_MAX_CHARS) {
        return Err(AppError::bad_request(
            "invalid_note",
            format!("Ghi chú tối đa {NOTE_MAX_CHARS} ký tự."),
            format!("The note may be at most {NOTE_MAX_CHARS} characters."),
        ));
    }
    let note = note.map(crate::domain::city::trim_blank).filter(|n| !n.is_empty());
    Ok(note.map(str::to_owned))
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
    let note = check_note(req.note.as_deref())?;
    let device = app.store.token_device(w.0.token_id).await?.unwrap_or_else(|| "unknown".to_owned());
    let now = app.clock.now();
    let answer = |s: &ShiftRow| json_answer(StatusCode::CREATED, &shift_view(s)).map_err(render_failed);
    match app.store.open_shift(w.0.staff_id, &device, note.as_deref(), Some(idem.claim()), &answer, now).await? {
        OpenShiftOutcome::Opened(s) => {
            tracing::info!(shift.id = s.id, staff.id = w.0.staff_id, "shift opened");
            // The answer was stored with the key in the opening's transaction.
            answer(&s).map(|(status, json)| Idempotency::stored_answer(status, json)).map_err(AppError::from)
        }
        OpenShiftOutcome::AlreadyOpen(s) => Err(AppError::conflict(
            "shift_open",
            format!("Bạn đang có ca số {} chưa đóng.", s.id),
            format!("Shift {} is still open.", s.id),
        )
        .with_details(serde_json::json!({ "shift_id": s.id }))),
    }
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
    let s = app.store.shift(id).await?.filter(|s| s.staff_id == w.0.staff_id).ok_or_else(shift_not_found)?;
    Ok(Json(shift_view(&s)))
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
    if !(0..=10_000_000_000).contains(&req.cash_handed_over) {
        return Err(AppError::bad_request(
            "invalid_amount",
            "Số tiền nộp phải từ 0 đến 10 tỷ đồng.",
            "The cash handed over must be between 0 and 10,000,000,000 VND.",
        ));
    }
    let note = check_note(req.note.as_deref())?;
    let now = app.clock.now();
    let declared = Vnd(req.cash_handed_over);
    let answer = |s: &ShiftRow| json_answer(StatusCode::OK, &shift_view(s)).map_err(render_failed);
    match app.store.close_shift(id, w.0.staff_id, declared, note.as_deref(), Some(idem.claim()), &answer, now).await? {
        CloseShiftOutcome::Closed(s) => {
            tracing::info!(
                shift.id = s.id,
                staff.id = w.0.staff_id,
                expected_vnd = s.expected_cash.get(),
                declared_vnd = declared.get(),
                "shift closed"
            );
            // The answer was stored with the key in the closing's transaction.
            answer(&s).map(|(status, json)| Idempotency::stored_answer(status, json)).map_err(AppError::from)
        }
        CloseShiftOutcome::NotFound => Err(shift_not_found()),
        CloseShiftOutcome::AlreadyClosed(s) => Err(AppError::conflict(
            "shift_closed",
            format!("Ca số {} đã đóng.", s.id),
            format!("Shift {} is already closed.", s.id),
        )),
    }
}
