//! Wardens' use-cases (docs/wardens.md): cash paid on a driver's behalf (thanh toán hộ)
//! with slips anyone can check, violations with photos, and shifts. Online calls and the
//! offline sync batch apply the same actions ([`Applying`]); plate checks are
//! [`crate::app::checks`].

pub mod cash;
pub mod shifts;
pub mod sync;
pub mod violations;

use chrono::{DateTime, Utc};
use iparking_mobile_api::StaffRole;
use rand::Rng;

use crate::{
    error::AppError,
    store::{PointRecord, Principal, StoreError, drivers::IdemClaim},
};

/// Most photos with one violation.
pub const PHOTOS_MAX: usize = 5;
/// Most bytes in one photo.
pub const PHOTO_MAX_BYTES: usize = 5 * 1024 * 1024;
/// Most characters in a warden's note (a violation, a shift).
pub const NOTE_MAX_CHARS: usize = 500;

/// A staff member on street duty: a warden or an inspector.
#[derive(Debug, Clone)]
pub struct Warden(pub Principal);

impl Warden {
    /// Refuses staff who are neither wardens nor inspectors.
    pub fn of(p: Principal) -> Result<Warden, AppError> {
        if !matches!(p.role, StaffRole::Warden | StaffRole::Inspector) {
            return Err(AppError::forbidden(
                "Chỉ nhân viên kiểm soát (warden, inspector) dùng được chức năng này.",
                "Only wardens and inspectors may do this.",
            ));
        }
        Ok(Warden(p))
    }

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

/// An answer that cannot be rendered fails the store's transaction (nothing commits).
pub fn render_failed(e: AppError) -> StoreError {
    StoreError::Internal(format!("answer not rendered: {} ({})", e.code, e.en))
}

/// Whether a code read off a slip or a ticket is `stored` (case and surrounding spaces
/// aside). Constant-time enough: the codes are short and random; all bytes are compared
/// anyway. An empty stored code matches nothing.
pub fn same_code(given: &str, stored: &str) -> bool {
    let given = given.trim().to_uppercase();
    !stored.is_empty()
        && given.len() == stored.len()
        && given.bytes().zip(stored.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// A slip's or a ticket's verification code: 8 characters of Crockford base32 without I,
/// L, O, U (easy to read off paper).
pub fn verification_code() -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut rng = rand::rng();
    (0..8).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}
