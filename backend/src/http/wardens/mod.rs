//! Wardens on handhelds: login, plate checks, point rosters, cash paid on a driver's behalf
//! (thanh toán hộ) with slips, violations with photos, offline sync, shifts. See
//! `docs/wardens.md`.

pub mod auth;
pub mod cash;
pub mod checks;
pub mod shifts;
pub mod sync;
pub mod violations;

use axum::{
    extract::FromRequestParts,
    http::{HeaderMap, StatusCode, request::Parts},
    response::Response,
};

use super::{AppState, extract::Staff, idempotency::Idempotency};
pub use crate::app::wardens::{Applying, NOTE_MAX_CHARS, PHOTO_MAX_BYTES, PHOTOS_MAX, Render, Warden};
use crate::error::AppError;

/// Largest violation form (5 photos and the fields).
pub const VIOLATION_BODY_MAX: usize = PHOTOS_MAX * PHOTO_MAX_BYTES + 256 * 1024;
/// Largest sync batch (base64 photos included).
pub const SYNC_BODY_MAX: usize = 48 * 1024 * 1024;

// ---- who ---------------------------------------------------------------------------------

impl FromRequestParts<AppState> for Warden {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let Staff(p) = Staff::from_request_parts(parts, state).await?;
        Warden::of(p)
    }
}

/// `view` as a stored answer with `status`.
pub(super) fn json_answer<T: serde::Serialize>(status: StatusCode, view: &T) -> Result<(u16, String), AppError> {
    serde_json::to_string(view).map(|json| (status.as_u16(), json)).map_err(|e| AppError::internal(&e))
}

fn staff_idem(staff_id: i64, headers: &HeaderMap, path: &str, body: &[u8]) -> Result<Idempotency, AppError> {
    Idempotency::from_request(format!("staff:{staff_id}"), headers, "POST", path, body)
}

/// The key of a staff POST: `Err` carries the first answer of a replayed key.
pub(super) async fn claim_staff(
    app: &AppState,
    staff_id: i64,
    headers: &HeaderMap,
    path: &str,
    body: &[u8],
) -> Result<Result<Idempotency, Response>, AppError> {
    let idem = staff_idem(staff_id, headers, path, body)?;
    Ok(match idem.replay(app).await? {
        Some(replayed) => Err(replayed),
        None => Ok(idem),
    })
}
