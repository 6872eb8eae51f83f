//! Plate checks and point rosters.

use axum::extract::State;
use iparking_mobile_api::{ErrorBody, PlateCheckQuery, PlateCheckView, PointRoster, RosterVehicle};

use super::super::{
    AppState,
    extract::{Json, Path, Query},
};
use crate::{
    app::checks as check_use, app::points::point_for, domain::check::CheckSource, domain::plate::Plate, error::AppError,
};

use super::Warden;

// ---- plate checks ------------------------------------------------------------------------

/// Checks a plate at a point: valid, grace, expired, unpaid, or paid elsewhere, with the
/// near-miss plates parked there. Every check is recorded.
#[utoipa::path(
    get, path = "/v1/warden/checks", tag = "wardens", params(PlateCheckQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "The verdict", body = PlateCheckView),
        (status = 400, description = "Not a plate", body = ErrorBody),
        (status = 403, description = "Outside the assignment", body = ErrorBody),
        (status = 404, description = "Unknown point", body = ErrorBody),
    )
)]
pub async fn check_plate(
    State(app): State<AppState>,
    w: Warden,
    Query(q): Query<PlateCheckQuery>,
) -> Result<Json<PlateCheckView>, AppError> {
    let plate = Plate::parse(&q.plate).map_err(AppError::from)?;
    let point = point_for(&app, &q.point).await?;
    w.require_point(&point)?;
    let now = app.clock.now();
    Ok(Json(check_use::run_check(&app, w.0.staff_id, &plate, &point, now, CheckSource::Online).await?))
}

/// The vehicles that should be at a point (paid or in grace), and occupancy vs capacity.
#[utoipa::path(
    get, path = "/v1/warden/points/{code}/vehicles", tag = "wardens", security(("bearer" = [])),
    params(("code" = String, Path, description = "Point code")),
    responses(
        (status = 200, description = "The roster", body = PointRoster),
        (status = 403, description = "Outside the assignment", body = ErrorBody),
        (status = 404, description = "Unknown point", body = ErrorBody),
    )
)]
pub async fn point_roster(
    State(app): State<AppState>,
    w: Warden,
    Path(code): Path<String>,
) -> Result<Json<PointRoster>, AppError> {
    let point = point_for(&app, &code).await?;
    w.require_point(&point)?;
    let now = app.clock.now();
    let vehicles: Vec<RosterVehicle> = app
        .store
        .point_sessions(point.id)
        .await?
        .into_iter()
        .filter(|s| s.expires_at > now)
        .map(|s| RosterVehicle {
            session_id: s.id,
            plate: s.plate.as_str().to_owned(),
            vehicle_class: s.vehicle_class,
            channel: s.channel.as_str().to_owned(),
            started_at: s.started_at,
            paid_until: s.paid_until,
            expires_at: s.expires_at,
            verdict: crate::domain::check::time_verdict(s.paid_until, s.expires_at, now),
        })
        .collect();
    let occupied = vehicles.len() as i64;
    Ok(Json(PointRoster {
        point_code: point.code.clone(),
        point_name: point.name.clone(),
        street: point.street_name.clone(),
        district: point.district_code.clone(),
        capacity: point.capacity,
        occupied,
        free: (i64::from(point.capacity) - occupied).max(0),
        vehicles,
    }))
}
