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
    http::{HeaderMap, request::Parts},
    response::Response,
};
use iparking_mobile_api::StaffRole;

use chrono::{DateTime, Utc};

use super::{AppState, extract::Staff, idempotency::Idempotency};
use crate::{
    error::AppError,
    store::drivers::IdemClaim,
    store::{PointRecord, Principal},
};

/// Largest photo accepted.
pub const PHOTO_MAX_BYTES: usize = 5 * 1024 * 1024;
/// Most photos per violation.
pub const PHOTOS_MAX: usize = 5;
/// Largest violation form (5 photos and the fields).
pub const VIOLATION_BODY_MAX: usize = PHOTOS_MAX * PHOTO_MAX_BYTES + 256 * 1024;
/// Largest sync batch (base64 photos included).
pub const SYNC_BODY_MAX: usize = 48 * 1024 * 1024;
/// Most actions per sync batch.
pub const SYNC_MAX_ACTIONS: usize = 100;
/// A device clock may run this far ahead of ours.
pub const DEVICE_CLOCK_SKEW_SECS: i64 = 300;
/// Longest violation note.
pub const NOTE_MAX_CHARS: usize = 500;

// ---- who ---------------------------------------------------------------------------------

/// A warden or an inspector (admins and finance staff are refused on warden routes).
#[derive(Debug, Clone)]
pub struct Warden(pub Principal);

impl FromRequestParts<AppState> for Warden {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let Staff(p) = Staff::from_request_parts(parts, state).await?;
        if !matches!(p.role, StaffRole::Warden | StaffRole::Inspector) {
            return Err(AppError::forbidden(
                "Chỉ nhân viên kiểm soát (warden, inspector) dùng được chức năng này.",
                "Only wardens and inspectors may do this.",
            ));
        }
        Ok(Warden(p))
    }
}

impl Warden {
    /// Refuses a point outside the assignment.
    pub fn require_point(&self, p: &PointRecord) -> Result<(), AppError> {
        if self.0.covers_point(&p.district_code, p.street_id) { Ok(()) } else { Err(outside_assignment(&p.code)) }
    }

    /// Refuses inspectors: only wardens take cash and keep shifts.
    pub fn require_cash_role(&self) -> Result<(), AppError> {
        if self.0.role == StaffRole::Warden {
            Ok(())
        } else {
            Err(AppError::forbidden(
                "Chỉ nhân viên thu (warden) được thu tiền và mở ca.",
                "Only wardens take cash and keep shifts.",
            ))
        }
    }
}

fn outside_assignment(code: &str) -> AppError {
    AppError::forbidden(
        format!("Điểm {code} không thuộc địa bàn được phân công cho bạn."),
        format!("Point {code} is outside your assignment."),
    )
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

/// Renders the answer (status, JSON body) of a keyed call from what it came to: the store
/// writes it with the key in the effect's transaction (issue 30, bug 7).
pub type Render<'a, T> = dyn Fn(T) -> Result<(u16, String), AppError> + Send + Sync + 'a;

/// How a warden's action is applied: at what time (now online; the device's time from a
/// sync batch), from which sync action, under which key, and how its answer is rendered for
/// the key (stored with it in the action's transaction).
pub struct Applying<'a, T> {
    /// The action's time.
    pub at: DateTime<Utc>,
    /// The sync action it comes from (offline).
    pub action_id: Option<&'a str>,
    /// The key claimed with it.
    pub idem: Option<&'a IdemClaim>,
    /// Its answer for the key.
    pub render: &'a Render<'a, T>,
}

impl<T> Clone for Applying<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Applying<'_, T> {}

impl<'a, T> Applying<'a, T> {
    /// Online, now, under the call's key.
    pub fn online(now: DateTime<Utc>, idem: &'a IdemClaim, render: &'a Render<'a, T>) -> Self {
        Applying { at: now, action_id: None, idem: Some(idem), render }
    }
}
