//! `POST /v1/finance/adjustments` and `GET /v1/finance/adjustments`.

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
};
use iparking_mobile_api::{AdjustmentRequest, AdjustmentView, ErrorBody};

use super::periods::MonthQuery;
use crate::{
    app::{
        Keyed,
        finance::{
            adjustments::{adjust, adjustment_view, adjustments},
            city_writer,
        },
    },
    error::AppError,
    http::{
        AppState,
        extract::{Json, Query, Staff},
        idempotency::{Idempotency, answered, rendered},
        input::parse_json,
    },
    store::finance::AdjustmentRow,
};

/// Posts a correction between two ledger accounts in an open month (never an edit of a
/// past entry), with reason and author. City-wide finance; needs an `Idempotency-Key`. A
/// warden's float is topped up this way: debit `cash_office`, credit `warden_float` with the
/// warden's `staff_id`.
#[utoipa::path(
    post, path = "/v1/finance/adjustments", tag = "finance", request_body = AdjustmentRequest,
    security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, description = "Unique per adjustment")),
    responses(
        (status = 201, description = "Posted", body = AdjustmentView),
        (status = 400, description = "Bad account, amount, reason or period", body = ErrorBody),
        (status = 403, description = "Not city-wide finance", body = ErrorBody),
        (status = 404, description = "Unknown point, staff member or discrepancy", body = ErrorBody),
        (status = 409, description = "The month is closed", body = ErrorBody),
    )
)]
pub async fn post_adjustment(
    State(app): State<AppState>,
    Staff(p): Staff,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    city_writer(&p)?;
    let idem =
        Idempotency::from_request(format!("staff:{}", p.staff_id), &headers, "POST", "/v1/finance/adjustments", &body)?;
    if let Some(replayed) = idem.replay(&app).await? {
        return Ok(replayed);
    }
    let req: AdjustmentRequest = parse_json(&headers, &body)?;
    // The answer is rendered inside the adjustment's transaction and stored with its key
    // there: a crash after the commit leaves the key answered.
    let answer = |row: &AdjustmentRow| rendered(StatusCode::CREATED, &adjustment_view(row.clone()));
    match adjust(&app, &p, &req, idem.claim(), &answer).await? {
        Keyed::Done(view) => answered(rendered(StatusCode::CREATED, &view)),
        Keyed::Taken => idem.replay_taken(&app).await,
    }
}

/// The adjustments booked in a month, in the caller's scope: staff scoped to districts see
/// only the adjustments of their districts (those moving a point's revenue there, or
/// correcting one of their discrepancies); city-wide ones only city-wide staff.
#[utoipa::path(
    get, path = "/v1/finance/adjustments", tag = "finance", params(MonthQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "Adjustments", body = Vec<AdjustmentView>),
        (status = 400, description = "Bad month", body = ErrorBody),
        (status = 403, description = "Not finance or admin", body = ErrorBody),
    )
)]
pub async fn list_adjustments(
    State(app): State<AppState>,
    Staff(p): Staff,
    Query(q): Query<MonthQuery>,
) -> Result<Json<Vec<AdjustmentView>>, AppError> {
    Ok(Json(adjustments(&app, &p, &q.month).await?))
}
