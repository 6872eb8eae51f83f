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
    points::point_view,
};
use crate::{
    app::points::{normalise_code, point_not_found},
    app::staff::{StaffSpec, add_staff},
    domain::city,
    error::AppError,
    import,
    registry::import_drafts,
    store::{NewPoint, PointPatch, PointRecord},
};

fn street_view(s: crate::store::Street) -> StreetView {
    StreetView { id: s.id, name: s.name, district_code: s.district_code }
}

fn district_not_found(code: &str) -> AppError {
    let shown: String = code.chars().take(20).collect();
    AppError::not_found(
        "district_not_found",
        format!("Không có quận mã {shown}."),
        format!("No district with code {shown}."),
    )
}

async fn district_id(app: &AppState, code: &str) -> Result<i64, AppError> {
    app.store
        .districts()
        .await?
        .into_iter()
        .find(|d| d.code == code)
        .map(|d| d.id)
        .ok_or_else(|| district_not_found(code))
}

/// Rebuilds this node's point index after a registry write, so the next search sees it.
async fn after_registry_write(app: &AppState) {
    if let Err(e) = app.refresh_index().await {
        // The periodic refresh retries; the write itself is committed.
        tracing::warn!(error = %e, "point index refresh failed after a registry write");
    }
}

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
    admin.require_city_wide()?;
    let code = body.code.trim_matches(' ').to_owned();
    city::validate_district_code(&code).map_err(AppError::from)?;
    let name = city::validate_name("name", &body.name).map_err(AppError::from)?;
    let d = app.store.create_district(&code, &name, app.clock.now()).await?;
    Ok((StatusCode::CREATED, Json(DistrictView { code: d.code, name: d.name })))
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
    let code = body.district_code.trim().to_uppercase();
    admin.require_district(&code)?;
    let name = city::validate_name("name", &body.name).map_err(AppError::from)?;
    let district_id = district_id(&app, &code).await?;
    let s = app.store.create_street(district_id, &name, app.clock.now()).await?;
    Ok((StatusCode::CREATED, Json(street_view(s))))
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
    let code = q.district.trim().to_uppercase();
    admin.require_district(&code)?;
    let id = district_id(&app, &code).await?;
    Ok(Json(app.store.streets(Some(id)).await?.into_iter().map(street_view).collect()))
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
    let street = app
        .store
        .street(body.street_id)
        .await?
        .ok_or_else(|| AppError::not_found("street_not_found", "Không có tuyến phố này.", "No such street."))?;
    admin.require_district(&street.district_code)?;
    let code = normalise_code(&body.code);
    // Letters then digits is the code's form (400, the document's pattern); that the letters
    // are the street's district is a rule against the data (422, decision 0016).
    let letters = code.bytes().take_while(u8::is_ascii_uppercase).count();
    let well_formed = (2..=4).contains(&letters)
        && (3..=6).contains(&(code.len() - letters))
        && code.bytes().skip(letters).all(|b| b.is_ascii_digit());
    city::validate_point_code(&code, &street.district_code).map_err(|e| {
        if well_formed {
            AppError { status: StatusCode::UNPROCESSABLE_ENTITY, ..AppError::from(e) }
        } else {
            AppError::from(e)
        }
    })?;
    let name = city::validate_name("name", &body.name).map_err(AppError::from)?;
    city::validate_position(body.lat, body.lon).map_err(AppError::from)?;
    if let Some(curb) = &body.curb {
        city::validate_curb(curb).map_err(AppError::from)?;
    }
    let capacity = city::validate_capacity(i64::from(body.capacity)).map_err(AppError::from)?;
    let vehicle_classes = city::validate_classes(&body.vehicle_classes).map_err(AppError::from)?;
    let new = NewPoint {
        code,
        name,
        street_id: street.id,
        lat: body.lat,
        lon: body.lon,
        curb: body.curb,
        capacity,
        vehicle_classes,
    };
    let p = app.store.create_point(&new, app.clock.now()).await?;
    after_registry_write(&app).await;
    tracing::info!(point.code = %p.code, staff.id = admin.0.staff_id, "point created");
    Ok((StatusCode::CREATED, Json(point_view(&p, Some(0)))))
}

async fn existing_point(app: &AppState, admin: &Admin, code: &str) -> Result<PointRecord, AppError> {
    let p = app.store.point(code).await?.ok_or_else(|| point_not_found(code))?;
    admin.require_district(&p.district_code)?;
    Ok(p)
}

async fn answer(app: &AppState, p: PointRecord) -> Result<Json<PointView>, AppError> {
    after_registry_write(app).await;
    let occupied = app.live.occupancy(&[p.id]).await.ok().map(|o| o[0]);
    Ok(Json(point_view(&p, occupied)))
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
    let code = normalise_code(&code);
    existing_point(&app, &admin, &code).await?;
    let mut patch = PointPatch::default();
    if let Some(name) = &body.name {
        patch.name = Some(city::validate_name("name", name).map_err(AppError::from)?);
    }
    match (body.lat, body.lon) {
        (Some(lat), Some(lon)) => {
            city::validate_position(lat, lon).map_err(AppError::from)?;
            patch.position = Some((lat, lon));
        }
        (None, None) => {}
        _ => {
            return Err(AppError::bad_request(
                "invalid_coordinates",
                "Cần gửi cả lat và lon.",
                "Give both lat and lon.",
            ));
        }
    }
    if let Some(curb) = body.curb {
        if curb.is_empty() {
            patch.curb = Some(None);
        } else {
            city::validate_curb(&curb).map_err(AppError::from)?;
            patch.curb = Some(Some(curb));
        }
    }
    if let Some(c) = body.capacity {
        patch.capacity = Some(city::validate_capacity(i64::from(c)).map_err(AppError::from)?);
    }
    if let Some(classes) = &body.vehicle_classes {
        patch.vehicle_classes = Some(city::validate_classes(classes).map_err(AppError::from)?);
    }
    let p = app.store.update_point(&code, &patch, app.clock.now()).await?.ok_or_else(|| point_not_found(&code))?;
    tracing::info!(point.code = %p.code, staff.id = admin.0.staff_id, "point updated");
    answer(&app, p).await
}

async fn set_status(
    app: AppState,
    admin: Admin,
    code: String,
    status: PointStatus,
) -> Result<Json<PointView>, AppError> {
    let code = normalise_code(&code);
    existing_point(&app, &admin, &code).await?;
    let p = app.store.set_point_status(&code, status, app.clock.now()).await?.ok_or_else(|| point_not_found(&code))?;
    tracing::info!(point.code = %p.code, point.status = status.as_str(), staff.id = admin.0.staff_id, "point status set");
    answer(&app, p).await
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
    set_status(app, admin, code, PointStatus::Closed).await
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
    set_status(app, admin, code, PointStatus::Open).await
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
        AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("Tệp quá lớn (tối đa {} MB).", app.settings.import_body_limit / (1024 * 1024)),
            format!("The file is too large (at most {} MB).", app.settings.import_body_limit / (1024 * 1024)),
        )
    })?;
    // The request is well-formed; the file's content is not readable as its format (422).
    let rows = import::parse(q.format, &bytes).map_err(|e| {
        AppError::unprocessable(
            "invalid_file",
            format!("Không đọc được tệp: {}", e.0),
            format!("Cannot read the file: {}", e.0),
        )
    })?;
    let report =
        import_drafts(app.store.as_ref(), rows, q.mode.unwrap_or_default(), Some(&admin.0), app.clock.now()).await?;
    if report.imported > 0 {
        after_registry_write(&app).await;
    }
    tracing::info!(
        rows = report.rows,
        imported = report.imported,
        rejected = report.rejected.len(),
        staff.id = admin.0.staff_id,
        "points imported"
    );
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
    )
)]
pub async fn create_staff(
    State(app): State<AppState>,
    admin: Admin,
    Json(body): Json<CreateStaff>,
) -> Result<(StatusCode, Json<StaffCreated>), AppError> {
    admin.require_city_wide()?;
    let name = city::validate_name("name", &body.name).map_err(AppError::from)?;
    let spec = StaffSpec {
        name,
        role: body.role,
        districts: body.districts,
        streets: body.streets,
        username: body.username,
        password: body.password,
    };
    let created = add_staff(&app, spec).await?;
    tracing::info!(
        staff.id = created.id,
        staff.role = body.role.as_str(),
        by.staff.id = admin.0.staff_id,
        "staff created"
    );
    Ok((StatusCode::CREATED, Json(created)))
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
    admin.require_city_wide()?;
    if app.revoke_staff_token(id).await? {
        tracing::info!(token.id = id, by.staff.id = admin.0.staff_id, "token revoked");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::not_found(
            "token_not_found",
            "Không có mã truy cập này (hoặc đã bị thu hồi).",
            "No such active token.",
        ))
    }
}
