//! Public registry reads for drivers: nearby search, one point, the districts.

use axum::extract::State;
use iparking_mobile_api::{DistrictView, ErrorBody, NearbyPoint, NearbyQuery, NearbyResponse, PointView, StreetView};

use super::{
    AppState,
    extract::{Json, Path, Query},
};
use crate::{domain::city, error::AppError, store::PointRecord};

/// Default and maximum search radius, metres.
pub const DEFAULT_RADIUS_M: f64 = 1_000.0;
/// Largest radius accepted, metres.
pub const MAX_RADIUS_M: f64 = 50_000.0;
/// Default and maximum number of results.
pub const DEFAULT_LIMIT: u32 = 20;
/// Largest `limit` accepted.
pub const MAX_LIMIT: u32 = 100;

/// The API view of a point; `occupied` comes from the live state (`None` if unreachable).
pub fn point_view(p: &PointRecord, occupied: Option<i64>) -> PointView {
    PointView {
        code: p.code.clone(),
        name: p.name.clone(),
        street: StreetView { id: p.street_id, name: p.street_name.clone(), district_code: p.district_code.clone() },
        district_name: p.district_name.clone(),
        lat: p.lat,
        lon: p.lon,
        curb: p.curb.clone(),
        capacity: p.capacity,
        free_spaces: occupied.map(|o| (i64::from(p.capacity) - o).clamp(0, i64::from(p.capacity)) as i32),
        vehicle_classes: p.vehicle_classes.clone(),
        status: p.status,
        updated_at: p.updated_at,
    }
}

/// Open points near a position, nearest first, with their free spaces.
#[utoipa::path(
    get,
    path = "/v1/points",
    tag = "points",
    params(NearbyQuery),
    responses(
        (status = 200, description = "Open points within the radius, nearest first", body = NearbyResponse),
        (status = 400, description = "Coordinates, radius or limit out of range", body = ErrorBody),
    )
)]
pub async fn nearby_points(
    State(app): State<AppState>,
    Query(q): Query<NearbyQuery>,
) -> Result<Json<NearbyResponse>, AppError> {
    city::validate_position(q.lat, q.lon).map_err(invalid)?;
    let radius_m = q.radius_m.unwrap_or(DEFAULT_RADIUS_M);
    if !(radius_m > 0.0 && radius_m <= MAX_RADIUS_M) {
        return Err(AppError::bad_request(
            "invalid_radius",
            format!("Bán kính phải lớn hơn 0 và không quá {MAX_RADIUS_M} m."),
            format!("radius_m must be greater than 0 and at most {MAX_RADIUS_M} m."),
        ));
    }
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(AppError::bad_request(
            "invalid_limit",
            format!("limit phải từ 1 đến {MAX_LIMIT}."),
            format!("limit must be between 1 and {MAX_LIMIT}."),
        ));
    }
    let hits = app.index().nearest(q.lat, q.lon, radius_m, limit as usize, q.vehicle_class);
    let ids: Vec<i64> = hits.iter().map(|h| h.point.id).collect();
    // Free spaces are a convenience: if the live state is down, still answer the search.
    let occupancy = match app.live.occupancy(&ids).await {
        Ok(o) => Some(o),
        Err(e) => {
            tracing::warn!(error = %e, "live state unavailable; answering without free spaces");
            None
        }
    };
    let points = hits
        .iter()
        .enumerate()
        .map(|(i, h)| NearbyPoint {
            distance_m: (h.distance_m * 10.0).round() / 10.0,
            point: point_view(&h.point, occupancy.as_ref().map(|o| o[i])),
        })
        .collect();
    Ok(Json(NearbyResponse { points, radius_m }))
}

/// One point by its signboard code (case-insensitive).
#[utoipa::path(
    get,
    path = "/v1/points/{code}",
    tag = "points",
    params(("code" = String, Path, description = "Signboard code, e.g. HK001")),
    responses(
        (status = 200, description = "The point", body = PointView),
        (status = 404, description = "No such point", body = ErrorBody),
    )
)]
pub async fn get_point(State(app): State<AppState>, Path(code): Path<String>) -> Result<Json<PointView>, AppError> {
    let code = normalise_code(&code);
    let p = app.store.point(&code).await?.ok_or_else(|| point_not_found(&code))?;
    let occupied = app.live.occupancy(&[p.id]).await.ok().map(|o| o[0]);
    Ok(Json(point_view(&p, occupied)))
}

/// The districts of the city.
#[utoipa::path(
    get,
    path = "/v1/districts",
    tag = "points",
    responses((status = 200, description = "Districts by code", body = [DistrictView]))
)]
pub async fn list_districts(State(app): State<AppState>) -> Result<Json<Vec<DistrictView>>, AppError> {
    let ds = app.store.districts().await?;
    Ok(Json(ds.into_iter().map(|d| DistrictView { code: d.code, name: d.name }).collect()))
}

/// Codes are typed by drivers: accept any case and stray spaces.
pub fn normalise_code(code: &str) -> String {
    code.trim().to_uppercase()
}

/// The point with this code (open or closed), from this node's index; from the database
/// when it was created on another node since the index was built. Its status and capacity
/// are as of the index: writers that depend on them check them again under a lock.
pub async fn point_for(app: &crate::App, code: &str) -> Result<std::sync::Arc<PointRecord>, AppError> {
    let code = normalise_code(code);
    if code.is_empty() || code.len() > 20 {
        return Err(point_not_found(&code));
    }
    if let Some(p) = app.index().point(&code) {
        return Ok(p);
    }
    app.store.point(&code).await?.map(std::sync::Arc::new).ok_or_else(|| point_not_found(&code))
}

/// 404 for an unknown point code.
pub fn point_not_found(code: &str) -> AppError {
    let shown: String = code.chars().take(20).collect();
    AppError::not_found(
        "point_not_found",
        format!("Không tìm thấy điểm đỗ {shown}. Kiểm tra mã trên biển báo."),
        format!("Parking point {shown} not found. Check the code on the signboard."),
    )
}

/// 400 for a domain rule broken by the caller's input.
pub fn invalid(e: city::Invalid) -> AppError {
    AppError::bad_request(e.code, e.vi, e.en)
}
