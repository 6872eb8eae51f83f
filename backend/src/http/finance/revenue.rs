//! `GET /v1/finance/revenue`.

use axum::{
    extract::State,
    response::{IntoResponse, Response},
};
use iparking_mobile_api::{ErrorBody, RevenueQuery, RevenueReport};

use crate::{
    app::finance::{
        revenue::{revenue_csv, revenue_report},
        wants_csv,
    },
    error::AppError,
    http::{
        AppState,
        csv::csv_response,
        extract::{Json, Query, Staff},
    },
};

/// Revenue earned per district, street, point, channel, day or vehicle class (any
/// combination), from the ledger's postings. Finance staff scoped to districts see only
/// theirs. `format=csv` gives a spreadsheet (UTF-8 with BOM).
#[utoipa::path(
    get, path = "/v1/finance/revenue", tag = "finance", params(RevenueQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "The report (JSON, or CSV with format=csv)", body = RevenueReport),
        (status = 400, description = "Bad dates, range, group or format", body = ErrorBody),
        (status = 403, description = "Not finance or admin; a district outside the scope", body = ErrorBody),
        (status = 404, description = "Unknown district or street filter", body = ErrorBody),
    )
)]
pub async fn get_revenue(
    State(app): State<AppState>,
    Staff(p): Staff,
    Query(q): Query<RevenueQuery>,
) -> Result<Response, AppError> {
    let report = revenue_report(&app, &p, &q).await?;
    if wants_csv(q.format.as_deref())? {
        return Ok(csv_response(&format!("revenue-{}-{}.csv", report.from, report.to), revenue_csv(&report)));
    }
    Ok(Json(report).into_response())
}
