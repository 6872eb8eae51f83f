//! `GET /v1/finance/periods/{month}`, `POST /v1/finance/periods/{month}/close` and the
//! month's audit, `GET /v1/finance/audit`.

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
};
use chrono::{DateTime, Utc};
use iparking_mobile_api::{ClosePeriod, ErrorBody, PeriodView};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::{
    app::finance::{
        audit::audit,
        city_writer,
        periods::{close, period, period_view},
    },
    error::AppError,
    http::{
        AppState,
        extract::{Json, Path, Query, Staff},
        idempotency::{Idempotency, answered, rendered},
        input::parse_json,
    },
    store::finance::PeriodRow,
};

/// Query with a month.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MonthQuery {
    /// `YYYY-MM`.
    pub month: String,
}

/// A month: open, or closed (by whom, when, over which discrepancies).
#[utoipa::path(
    get, path = "/v1/finance/periods/{month}", tag = "finance", security(("bearer" = [])),
    params(("month" = String, Path, description = "YYYY-MM")),
    responses(
        (status = 200, description = "The period", body = PeriodView),
        (status = 400, description = "Bad month", body = ErrorBody),
        (status = 403, description = "Not finance or admin", body = ErrorBody),
    )
)]
pub async fn get_period(
    State(app): State<AppState>,
    Staff(p): Staff,
    Path(month): Path<String>,
) -> Result<Json<PeriodView>, AppError> {
    Ok(Json(period(&app, &p, &month).await?))
}

/// Closes a month that has ended: afterwards nothing can be posted into it. Open
/// discrepancies block it unless overridden with a reason (recorded). City-wide finance;
/// needs an `Idempotency-Key`.
#[utoipa::path(
    post, path = "/v1/finance/periods/{month}/close", tag = "finance", request_body = ClosePeriod,
    security(("bearer" = [])),
    params(("month" = String, Path, description = "YYYY-MM"), ("Idempotency-Key" = String, Header, description = "Unique per action")),
    responses(
        (status = 200, description = "Closed", body = PeriodView),
        (status = 400, description = "Bad month; override without a reason", body = ErrorBody),
        (status = 403, description = "Not city-wide finance", body = ErrorBody),
        (status = 409, description = "Not ended, already closed, or open discrepancies", body = ErrorBody),
    )
)]
pub async fn post_close(
    State(app): State<AppState>,
    Staff(p): Staff,
    Path(month): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    city_writer(&p)?;
    let path = format!("/v1/finance/periods/{month}/close");
    let idem = Idempotency::from_request(format!("staff:{}", p.staff_id), &headers, "POST", &path, &body)?;
    if let Some(replayed) = idem.replay(&app).await? {
        return Ok(replayed);
    }
    let req: ClosePeriod =
        if body.iter().all(u8::is_ascii_whitespace) { ClosePeriod::default() } else { parse_json(&headers, &body)? };
    // The answer is stored with the key in the closing transaction.
    let answer = |row: &PeriodRow| rendered(StatusCode::OK, &period_view(&row.month, Some(row.clone())));
    let view = close(&app, &p, &month, &req, Some(idem.claim()), &answer).await?;
    answered(rendered(StatusCode::OK, &view))
}

/// One finance action.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct AuditView {
    /// Id.
    pub id: i64,
    /// Staff id.
    pub staff_id: i64,
    /// Staff name.
    pub staff_name: String,
    /// `carrier_settlement`, `resolve_discrepancy`, `adjustment`, `close_period`,
    /// `approve_refund`, `reject_refund`.
    pub action: String,
    /// What it was about.
    pub subject: String,
    /// Facts.
    pub details: serde_json::Value,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// The finance actions of a month. City-wide finance.
#[utoipa::path(
    get, path = "/v1/finance/audit", tag = "finance", params(MonthQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "Audit rows, oldest first", body = Vec<AuditView>),
        (status = 400, description = "Bad month", body = ErrorBody),
        (status = 403, description = "Not city-wide finance", body = ErrorBody),
    )
)]
pub async fn list_audit(
    State(app): State<AppState>,
    Staff(p): Staff,
    Query(q): Query<MonthQuery>,
) -> Result<Json<Vec<AuditView>>, AppError> {
    let rows = audit(&app, &p, &q.month).await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| AuditView {
                id: r.id,
                staff_id: r.staff_id,
                staff_name: r.staff_name,
                action: r.action,
                subject: r.subject,
                details: serde_json::from_str(&r.details).unwrap_or(serde_json::Value::Null),
                created_at: r.created_at,
            })
            .collect(),
    ))
}
