//! The city's registry: districts, streets and parking points (created, changed, closed,
//! imported), and staff accounts. Every use-case here is an admin's; a district-scoped admin
//! may only touch its districts.

use iparking_mobile_api::{
    CreateDistrict, CreatePoint, CreateStaff, CreateStreet, DistrictView, ImportFormat, ImportMode, ImportReport,
    PointStatus, PointView, StaffCreated, StaffRole, StreetView, UpdatePoint,
};

use crate::{
    App,
    app::{
        points::{normalise_code, point_not_found},
        staff::{StaffSpec, add_staff},
        views::point_view,
    },
    domain::city,
    error::AppError,
    import,
    registry::import_drafts,
    store::{NewPoint, PointPatch, PointRecord, Principal},
};

/// A staff member with the `admin` role.
#[derive(Debug, Clone)]
pub struct Admin(pub Principal);

impl Admin {
    /// Refuses staff without the admin role.
    pub fn of(p: Principal) -> Result<Admin, AppError> {
        if p.role != StaffRole::Admin {
            return Err(AppError::forbidden(
                "Cần quyền quản trị (admin) cho thao tác này.",
                "This action needs the admin role.",
            ));
        }
        Ok(Admin(p))
    }

    /// Refuses unless the admin covers district `code`.
    pub fn require_district(&self, code: &str) -> Result<(), AppError> {
        if self.0.covers_district(code) {
            Ok(())
        } else {
            Err(AppError::forbidden(
                format!("Tài khoản của bạn không quản lý quận {code}."),
                format!("Your account does not manage district {code}."),
            ))
        }
    }

    /// Refuses unless the admin is city-wide.
    pub fn require_city_wide(&self) -> Result<(), AppError> {
        if self.0.district_codes.is_empty() {
            Ok(())
        } else {
            Err(AppError::forbidden(
                "Chỉ quản trị viên toàn thành phố được làm thao tác này.",
                "Only a city-wide admin may do this.",
            ))
        }
    }
}

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

async fn district_id(app: &App, code: &str) -> Result<i64, AppError> {
    app.store
        .districts()
        .await?
        .into_iter()
        .find(|d| d.code == code)
        .map(|d| d.id)
        .ok_or_else(|| district_not_found(code))
}

/// Rebuilds this node's point index after a registry write, so the next search sees it.
async fn after_registry_write(app: &App) {
    if let Err(e) = app.refresh_index().await {
        // The periodic refresh retries; the write itself is committed.
        tracing::warn!(error = %e, "point index refresh failed after a registry write");
    }
}

/// Creates a district (city-wide admins only).
pub async fn create_district(app: &App, admin: &Admin, body: &CreateDistrict) -> Result<DistrictView, AppError> {
    admin.require_city_wide()?;
    let code = body.code.trim_matches(' ').to_owned();
    city::validate_district_code(&code).map_err(AppError::from)?;
    let name = city::validate_name("name", &body.name).map_err(AppError::from)?;
    let d = app.store.create_district(&code, &name, app.clock.now()).await?;
    Ok(DistrictView { code: d.code, name: d.name })
}

/// Creates a street in a district.
pub async fn create_street(app: &App, admin: &Admin, body: &CreateStreet) -> Result<StreetView, AppError> {
    let code = body.district_code.trim().to_uppercase();
    admin.require_district(&code)?;
    let name = city::validate_name("name", &body.name).map_err(AppError::from)?;
    let district_id = district_id(app, &code).await?;
    let s = app.store.create_street(district_id, &name, app.clock.now()).await?;
    Ok(street_view(s))
}

/// The streets of a district, by name.
pub async fn streets(app: &App, admin: &Admin, district: &str) -> Result<Vec<StreetView>, AppError> {
    let code = district.trim().to_uppercase();
    admin.require_district(&code)?;
    let id = district_id(app, &code).await?;
    Ok(app.store.streets(Some(id)).await?.into_iter().map(street_view).collect())
}

/// Creates a point on a street.
pub async fn create_point(app: &App, admin: &Admin, body: &CreatePoint) -> Result<PointView, AppError> {
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
            let e = AppError::from(e);
            AppError::unprocessable(e.code, e.vi, e.en)
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
        curb: body.curb.clone(),
        capacity,
        vehicle_classes,
    };
    let p = app.store.create_point(&new, app.clock.now()).await?;
    after_registry_write(app).await;
    tracing::info!(point.code = %p.code, staff.id = admin.0.staff_id, "point created");
    Ok(point_view(&p, Some(0)))
}

async fn existing_point(app: &App, admin: &Admin, code: &str) -> Result<PointRecord, AppError> {
    let p = app.store.point(code).await?.ok_or_else(|| point_not_found(code))?;
    admin.require_district(&p.district_code)?;
    Ok(p)
}

/// A point just written, with its occupancy (after this node's index is rebuilt).
async fn written(app: &App, p: PointRecord) -> Result<PointView, AppError> {
    after_registry_write(app).await;
    let occupied = app.live.occupancy(&[p.id]).await.ok().map(|o| o[0]);
    Ok(point_view(&p, occupied))
}

/// Changes a point's name, position, curb, capacity or classes.
pub async fn update_point(app: &App, admin: &Admin, code: &str, body: &UpdatePoint) -> Result<PointView, AppError> {
    let code = normalise_code(code);
    existing_point(app, admin, &code).await?;
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
    if let Some(curb) = body.curb.clone() {
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
    written(app, p).await
}

/// Closes (it leaves nearby search and takes no new sessions) or reopens a point. Idempotent.
pub async fn set_point_status(
    app: &App,
    admin: &Admin,
    code: &str,
    status: PointStatus,
) -> Result<PointView, AppError> {
    let code = normalise_code(code);
    existing_point(app, admin, &code).await?;
    let p = app.store.set_point_status(&code, status, app.clock.now()).await?.ok_or_else(|| point_not_found(&code))?;
    tracing::info!(point.code = %p.code, point.status = status.as_str(), staff.id = admin.0.staff_id, "point status set");
    written(app, p).await
}

/// Imports points from a GeoJSON or CSV file; missing streets are created. With
/// `all_or_nothing` (the default) nothing is imported if any row is rejected; every rejected
/// row is reported with its line.
pub async fn import_points(
    app: &App,
    admin: &Admin,
    format: ImportFormat,
    mode: Option<ImportMode>,
    file: &[u8],
) -> Result<ImportReport, AppError> {
    // The request is well-formed; the file's content is not readable as its format (422).
    let rows = import::parse(format, file).map_err(|e| {
        AppError::unprocessable(
            "invalid_file",
            format!("Không đọc được tệp: {}", e.0),
            format!("Cannot read the file: {}", e.0),
        )
    })?;
    let report =
        import_drafts(app.store.as_ref(), rows, mode.unwrap_or_default(), Some(&admin.0), app.clock.now()).await?;
    if report.imported > 0 {
        after_registry_write(app).await;
    }
    tracing::info!(
        rows = report.rows,
        imported = report.imported,
        rejected = report.rejected.len(),
        staff.id = admin.0.staff_id,
        "points imported"
    );
    Ok(report)
}

/// Creates a staff member and returns its first bearer token, once (city-wide admins only).
pub async fn create_staff(app: &App, admin: &Admin, body: &CreateStaff) -> Result<StaffCreated, AppError> {
    admin.require_city_wide()?;
    let name = city::validate_name("name", &body.name).map_err(AppError::from)?;
    let spec = StaffSpec {
        name,
        role: body.role,
        districts: body.districts.clone(),
        streets: body.streets.clone(),
        username: body.username.clone(),
        password: body.password.clone(),
    };
    let created = add_staff(app, spec).await?;
    tracing::info!(
        staff.id = created.id,
        staff.role = body.role.as_str(),
        by.staff.id = admin.0.staff_id,
        "staff created"
    );
    Ok(created)
}

/// Revokes a staff token (city-wide admins only).
pub async fn revoke_token(app: &App, admin: &Admin, id: i64) -> Result<(), AppError> {
    admin.require_city_wide()?;
    if app.revoke_staff_token(id).await? {
        tracing::info!(token.id = id, by.staff.id = admin.0.staff_id, "token revoked");
        Ok(())
    } else {
        Err(AppError::not_found(
            "token_not_found",
            "Không có mã truy cập này (hoặc đã bị thu hồi).",
            "No such active token.",
        ))
    }
}
