//! `GET /v1/finance/reconciliation`, `GET /v1/finance/discrepancies` and
//! `POST /v1/finance/discrepancies/{id}/resolve`.

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use iparking_mobile_api::{DiscrepancyView, ErrorBody, ReconciliationQuery, ReconciliationReport, ResolveDiscrepancy};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::{
    app::{
        Keyed,
        finance::{
            reconciliation::{discrepancies, discrepancies_csv, discrepancy_view, reconciliation, resolve},
            wants_csv, writer,
        },
    },
    error::AppError,
    http::{
        AppState,
        csv::csv_response,
        extract::{Json, Path, Query, Staff},
        idempotency::{Idempotency, answered, rendered},
        input::parse_json,
    },
    store::finance::DiscrepancyRow,
};

/// Reconciles a day or a month: our ledger against the processor's balance transactions
/// and payouts, the carriers' settlement files and the wardens' declared cash, and checks
/// the ledger's integrity. Findings are kept as discrepancies with stable ids.
#[utoipa::path(
    get, path = "/v1/finance/reconciliation", tag = "finance", params(ReconciliationQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "The reconciliation (JSON, or the discrepancies as CSV)", body = ReconciliationReport),
        (status = 400, description = "Not exactly one of date or month; bad format", body = ErrorBody),
        (status = 403, description = "Not finance or admin", body = ErrorBody),
    )
)]
pub async fn get_reconciliation(
    State(app): State<AppState>,
    Staff(p): Staff,
    Query(q): Query<ReconciliationQuery>,
) -> Result<Response, AppError> {
    let report = reconciliation(&app, &p, &q).await?;
    if wants_csv(q.format.as_deref())? {
        let name = format!("reconciliation-{}-{}.csv", report.from, report.to);
        return Ok(csv_response(&name, discrepancies_csv(&report.discrepancies)));
    }
    Ok(Json(report).into_response())
}

/// Query of `GET /v1/finance/discrepancies`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DiscrepancyQuery {
    /// `open` (default), `resolved`, `cleared` or `all`.
    pub status: Option<String>,
    /// `YYYY-MM` (default: every month).
    pub month: Option<String>,
}

/// The discrepancies (of a month) as the last reconciliation left them.
#[utoipa::path(
    get, path = "/v1/finance/discrepancies", tag = "finance", params(DiscrepancyQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "Discrepancies", body = Vec<DiscrepancyView>),
        (status = 400, description = "Bad month or status", body = ErrorBody),
        (status = 403, description = "Not finance or admin", body = ErrorBody),
    )
)]
pub async fn list_discrepancies(
    State(app): State<AppState>,
    Staff(p): Staff,
    Query(q): Query<DiscrepancyQuery>,
) -> Result<Json<Vec<DiscrepancyView>>, AppError> {
    Ok(Json(discrepancies(&app, &p, q.month.as_deref(), q.status.as_deref()).await?))
}

/// Resolves a discrepancy: who, when and the note are kept (and audited); a warden flag
/// behind it is resolved too. Needs an `Idempotency-Key`.
#[utoipa::path(
    post, path = "/v1/finance/discrepancies/{id}/resolve", tag = "finance", request_body = ResolveDiscrepancy,
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "Discrepancy id"), ("Idempotency-Key" = String, Header, description = "Unique per action")),
    responses(
        (status = 200, description = "Resolved", body = DiscrepancyView),
        (status = 400, description = "No note; missing Idempotency-Key", body = ErrorBody),
        (status = 403, description = "Not finance; another district", body = ErrorBody),
        (status = 404, description = "No such discrepancy", body = ErrorBody),
        (status = 409, description = "Already resolved, or cleared", body = ErrorBody),
    )
)]
pub async fn post_resolve(
    State(app): State<AppState>,
    Staff(p): Staff,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    writer(&p)?;
    let path = format!("/v1/finance/discrepancies/{id}/resolve");
    let idem = Idempotency::from_request(format!("staff:{}", p.staff_id), &headers, "POST", &path, &body)?;
    if let Some(replayed) = idem.replay(&app).await? {
        return Ok(replayed);
    }
    let req: ResolveDiscrepancy = parse_json(&headers, &body)?;
    let answer = |row: &DiscrepancyRow| rendered(StatusCode::OK, &discrepancy_view(row.clone()));
    match resolve(&app, &p, id, &req.note, Some(idem.claim()), &answer).await? {
        Keyed::Done(view) => answered(rendered(StatusCode::OK, &view)),
        Keyed::Taken => idem.replay_taken(&app).await,
    }
}
