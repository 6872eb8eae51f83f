//! Parking points as the use-cases find them: by the code on the signboard.

use std::sync::Arc;

use crate::{App, error::AppError, store::PointRecord};

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
