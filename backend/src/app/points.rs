//! Parking points as the use-cases find them: by the code on the signboard.

use std::sync::Arc;

use iparking_mobile_api::VehicleClass;

use crate::{App, domain::tariff::PointRef, error::AppError, store::PointRecord};

/// Codes are typed by drivers: accept any case and stray spaces.
pub fn normalise_code(code: &str) -> String {
    code.trim_matches(' ').to_ascii_uppercase()
}

/// The point with this code (open or closed), from this node's index; from the database
/// when it was created on another node since the index was built. Its status and capacity
/// are as of the index: writers that depend on them check them again under a lock.
pub async fn point_for(app: &App, code: &str) -> Result<Arc<PointRecord>, AppError> {
    let code = normalise_code(code);
    if code.is_empty() || code.len() > 20 {
        return Err(point_not_found(&code));
    }
    if let Some(p) = app.index().point(&code) {
        return Ok(p);
    }
    app.store.point(&code).await?.map(Arc::new).ok_or_else(|| point_not_found(&code))
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

/// What a tariff is resolved by: the point's code, street and district.
pub fn point_ref(p: &PointRecord) -> PointRef<'_> {
    PointRef { code: &p.code, street_id: p.street_id, district_code: &p.district_code }
}

/// 422 for a vehicle class the point does not take (a start; a quote also lists the
/// classes it takes).
pub fn class_not_allowed(p: &PointRecord, class: VehicleClass) -> AppError {
    AppError::unprocessable(
        "vehicle_class_not_allowed",
        format!("Điểm {} không nhận loại xe {}.", p.code, class.as_str()),
        format!("Point {} does not take {} vehicles.", p.code, class.as_str()),
    )
}

/// 422 for a start that no tariff in force prices.
pub fn no_tariff(code: &str) -> AppError {
    AppError::unprocessable(
        "no_tariff",
        format!("Chưa có biểu giá cho loại xe này tại {code}."),
        format!("No tariff prices this vehicle class at {code}."),
    )
}
