//! The payments jobs' manual runs: `POST /v1/admin/payments/sweep` and
//! `POST /v1/admin/settlement/import` (both also run on a schedule, under a lease).

use axum::extract::State;
use iparking_mobile_api::ErrorBody;

use crate::{
    app::{
        charges::{ImportReport, SweepReport, import_settlement, sweep},
        refunds::require_money_staff,
    },
    error::AppError,
    http::{
        AppState,
        extract::{Json, Staff},
    },
};

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
