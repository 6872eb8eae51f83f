//! Finance: revenue reports from the ledger, reconciliation, discrepancies, period close,
//! adjustments, carrier settlements and refund requests (`docs/finance.md`).
//!
//! The `pub` functions without an HTTP extractor are the service layer: the JSON routes and
//! the dashboard (`finance_web`) both call them.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use iparking_mobile_api::{
    ClosePeriod, DiscrepancyView, PeriodView, ReconciliationQuery, ReconciliationReport, RevenueQuery, RevenueReport,
};

use crate::{App, error::AppError, store::Principal};

/// The revenue report for a caller (scope applied).
pub async fn revenue_report(app: &App, p: &Principal, q: &RevenueQuery) -> Result<RevenueReport, AppError> {
    let _ = (app, p, q);
    Err(AppError::internal(&"revenue_report: work in progress"))
}

/// The report as CSV (UTF-8 with BOM).
pub fn revenue_csv(r: &RevenueReport) -> String {
    let _ = r;
    String::new()
}

/// Runs the reconciliation of a day or month and returns it (scope applied).
pub async fn reconciliation(
    app: &App,
    p: &Principal,
    q: &ReconciliationQuery,
) -> Result<ReconciliationReport, AppError> {
    let _ = (app, p, q);
    Err(AppError::internal(&"reconciliation: work in progress"))
}

/// Discrepancies as CSV (UTF-8 with BOM).
pub fn discrepancies_csv(d: &[DiscrepancyView]) -> String {
    let _ = d;
    String::new()
}

/// Resolves a discrepancy with a note (audited).
pub async fn resolve_discrepancy(app: &App, p: &Principal, id: i64, note: &str) -> Result<DiscrepancyView, AppError> {
    let _ = (app, p, id, note);
    Err(AppError::internal(&"resolve_discrepancy: work in progress"))
}

/// A month's state (`YYYY-MM`).
pub async fn period(app: &App, p: &Principal, month: &str) -> Result<PeriodView, AppError> {
    let _ = (app, p, month);
    Err(AppError::internal(&"period: work in progress"))
}

/// Closes a month (`YYYY-MM`).
pub async fn close_period(app: &App, p: &Principal, month: &str, body: &ClosePeriod) -> Result<PeriodView, AppError> {
    let _ = (app, p, month, body);
    Err(AppError::internal(&"close_period: work in progress"))
}

/// A CSV download: `text/csv; charset=utf-8`, attachment named `filename`.
pub fn csv_response(filename: &str, body: String) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    r
}
