//! City administration: districts, streets, points, imports, staff. Every route needs the
//! `admin` role; a district-scoped admin may only touch its districts.

use axum::{
    body::{Body, to_bytes},
    extract::State,
    http::StatusCode,
};
use iparking_mobile_api::{
    CreateDistrict, CreatePoint, CreateStaff, CreateStreet, DistrictView, ErrorBody, ImportQuery, ImportReport,
    PointStatus, PointView, StaffCreated, StreetView, UpdatePoint,
};
use serde::Deserialize;
use utoipa::IntoParams;

use super::{
    AppState,
    extract::{Admin, Json, Path, Query},
};
use crate::{app::registry, error::AppError};

/// Creates a district (city-wide admins only).
#[utoipa::path(
    post, path = "/v1/admin/districts", tag = "admin", request_body = CreateDistrict,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = DistrictView),
        (status = 400, description = "Invalid code or name", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not a city-wide admin", body = ErrorBody),
        (status = 409, description = "Code taken", body = ErrorBody),
    )
)]
pub async fn create_district(
    State(app): State<AppState>,
    admin: Admin,
    Json(body): Json<CreateDistrict>,
) -> Result<(StatusCode, Json<DistrictView>), AppError> {
    Ok((StatusCode::CREATED, Json(registry::create_district(&app, &admin, &body).await?)))
}

/// Creates a street in a district.
#[utoipa::path(
    post, path = "/v1/admin/streets", tag = "admin", request_body = CreateStreet,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = StreetView),
        (status = 400, description = "Invalid name", body = ErrorBody),
        (status = 403, description = "District outside the admin's scope", body = ErrorBody),
        (status = 404, description = "No such district", body = ErrorBody),
        (status = 409, description = "The street exists in the district", body = ErrorBody),
    )
)]
pub async fn create_street(
    State(app): State<AppState>,
    admin: Admin,
    Json(body): Json<CreateStreet>,
) -> Result<(StatusCode, Json<StreetView>), AppError> {
    Ok((StatusCode::CREATED, Json(registry::create_street(&app, &admin, &body).await?)))
}

/// Query of `GET /v1/admin/streets`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreetsQuery {
    /// District code.
    pub district: String,
}

/// Streets of a district.
#[utoipa::path(
    get, path = "/v1/admin/streets", tag = "admin", params(StreetsQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Streets by name", body = [StreetView]),
        (status = 404, description = "No such district", body = ErrorBody),
    )
)]
pub async fn list_streets(
    State(app): State<AppState>,
    admin: Admin,
    Query(q): Query<StreetsQuery>,
) -> Result<Json<Vec<StreetView>>, AppError> {
    Ok(Json(registry::streets(&app, &admin, &q.district).await?))
}

/// Creates a point on a street.
#[utoipa::path(
    post, path = "/v1/admin/points", tag = "admin", request_body = CreatePoint,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = PointView),
        (status = 400, description = "Invalid field (code, coordinates, capacity, classes, curb)", body = ErrorBody),
        (status = 403, description = "District outside the admin's scope", body = ErrorBody),
        (status = 404, description = "No such street", body = ErrorBody),
        (status = 409, description = "Code taken", body = ErrorBody),
    )
)]
pub async fn create_point(
    State(app): State<AppState>,
    admin: Admin,
    Json(body): Json<CreatePoint>,
) -> Result<(StatusCode, Json<PointView>), AppError> {
    Ok((StatusCode::CREATED, Json(registry::create_point(&app, &admin, &body).await?)))
}

/// Changes a point's name, position, curb, capacity or classes.
#[utoipa::path(
    patch, path = "/v1/admin/points/{code}", tag = "admin", request_body = UpdatePoint,
    params(("code" = String, Path, description = "Signboard code")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Updated", body = PointView),
        (status = 400, description = "Invalid field", body = ErrorBody),
        (status = 403, description = "District outside the admin's scope", body = ErrorBody),
        (status = 404, description = "No such point", body = ErrorBody),
    )
)]
pub async fn update_point(
    State(app): State<AppState>,
    admin: Admin,
    Path(code): Path<String>,
    Json(body): Json<UpdatePoint>,
) -> Result<Json<PointView>, AppError> {
    Ok(Json(registry::update_point(&app, &admin, &code, &body).await?))
}

/// Closes a point: it leaves nearby search and takes no new sessions. Idempotent.
#[utoipa::path(
    post, path = "/v1/admin/points/{code}/close", tag = "admin",
    params(("code" = String, Path, description = "Signboard code")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Closed", body = PointView),
        (status = 404, description = "No such point", body = ErrorBody),
    )
)]
pub async fn close_point(
    State(app): State<AppState>,
    admin: Admin,
    Path(code): Path<String>,
) -> Result<Json<PointView>, AppError> {
    Ok(Json(registry::set_point_status(&app, &admin, &code, PointStatus::Closed).await?))
}

/// Reopens a closed point. Idempotent.
#[utoipa::path(
    post, path = "/v1/admin/points/{code}/open", tag = "admin",
    params(("code" = String, Path, description = "Signboard code")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Open", body = PointView),
        (status = 404, description = "No such point", body = ErrorBody),
    )
)]
pub async fn open_point(
    State(app): State<AppState>,
    admin: Admin,
    Path(code): Path<String>,
) -> Result<Json<PointView>, AppError> {
    Ok(Json(registry::set_point_status(&app, &admin, &code, PointStatus::Open).await?))
}

/// Imports points from a GeoJSON or CSV file sent as the body.
///
/// GeoJSON: a FeatureCollection of `Point` or `LineString` (curb) features whose
/// properties are `code`, `name`, `district`, `street`, `capacity`, `vehicle_classes`.
/// CSV: a header row with `code,name,district,street,lat,lon,capacity,vehicle_classes`
/// and optionally `curb` (JSON list of `[lon, lat]`). Missing streets are created.
/// `mode=all_or_nothing` (default) imports nothing if any row is rejected;
/// `mode=valid_only` imports the valid rows. Either way every rejected row is reported
/// with its line.
#[utoipa::path(
    post, path = "/v1/admin/points/import", tag = "admin", params(ImportQuery),
    request_body(content = String, content_type = "text/csv", description = "The file"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every row imported", body = ImportReport),
        (status = 400, description = "The file cannot be read", body = ErrorBody),
        (status = 413, description = "The file is too large", body = ErrorBody),
        (status = 422, description = "Some rows were rejected (see `rejected`; with all_or_nothing nothing was imported), or the file cannot be read as its format (`invalid_file`, error shape)", body = ImportReport),
    )
)]
pub async fn import_points(
    State(app): State<AppState>,
    admin: Admin,
    Query(q): Query<ImportQuery>,
    body: Body,
) -> Result<(StatusCode, Json<ImportReport>), AppError> {
    let bytes = to_bytes(body, app.settings.import_body_limit).await.map_err(|_| {
        AppError::payload_too_large(
            "payload_too_large",
            format!("Tệp quá lớn (tối đa {} MB).", app.settings.import_body_limit / (1024 * 1024)),
            format!("The file is too large (at most {} MB).", app.settings.import_body_limit / (1024 * 1024)),
        )
    })?;
    let report = registry::import_points(&app, &admin, q.format, q.mode, &bytes).await?;
    let status = if report.rejected.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    Ok((status, Json(report)))
}

/// Creates a staff member and returns its first bearer token, once (city-wide admins only).
#[utoipa::path(
    post, path = "/v1/admin/staff", tag = "admin", request_body = CreateStaff,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created; the token is shown only now", body = StaffCreated),
        (status = 400, description = "Invalid name", body = ErrorBody),
        (status = 403, description = "Not a city-wide admin", body = ErrorBody),
        (status = 404, description = "Unknown district", body = ErrorBody),
        (status = 422, description = "A data reader given a district or street (it reads the whole city)", body = ErrorBody),
    )
)]
pub async fn create_staff(
    State(app): State<AppState>,
    admin: Admin,
    Json(body): Json<CreateStaff>,
) -> Result<(StatusCode, Json<StaffCreated>), AppError> {
    Ok((StatusCode::CREATED, Json(registry::create_staff(&app, &admin, &body).await?)))
}

/// Revokes a staff token (city-wide admins only).
#[utoipa::path(
    delete, path = "/v1/admin/tokens/{id}", tag = "admin",
    params(("id" = i64, Path, description = "Token id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 403, description = "Not a city-wide admin", body = ErrorBody),
        (status = 404, description = "No such active token", body = ErrorBody),
    )
)]
pub async fn revoke_token(
    State(app): State<AppState>,
    admin: Admin,
    Path(id): Path<i64>,
) -> Result<StatusCode, AppError> {
    registry::revoke_token(&app, &admin, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
