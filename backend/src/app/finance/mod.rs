//! Finance's use-cases (docs/finance.md): revenue reports from the ledger, reconciliation and
//! its discrepancies, period close, adjustments, carrier settlements and refund requests.
//! The JSON routes (`http::finance`) and the dashboard (`http::finance_web`) both call them.
//!
//! Who may do what is decided here, once: [`reader`] (finance or an admin reading),
//! [`writer`] (finance, any scope) and [`city_writer`] (city-wide finance); staff scoped to
//! districts see only what belongs to theirs ([`visible`]).

pub mod adjustments;
pub mod audit;
pub mod periods;
pub mod reconciliation;
pub mod refunds;
pub mod revenue;
pub mod settlements;

use iparking_mobile_api::StaffRole;

use crate::{
    domain::finance::{self as fin, DayRange},
    error::AppError,
    store::Principal,
};

/// Finance staff, or an admin reading.
pub fn reader(p: &Principal) -> Result<(), AppError> {
    if matches!(p.role, StaffRole::Finance | StaffRole::Admin) {
        Ok(())
    } else {
        Err(AppError::forbidden("Cần quyền tài chính.", "This needs the finance role."))
    }
}

/// Finance staff (any scope).
pub fn writer(p: &Principal) -> Result<(), AppError> {
    if p.role == StaffRole::Finance {
        Ok(())
    } else {
        Err(AppError::forbidden("Cần quyền tài chính.", "This needs the finance role."))
    }
}

/// City-wide finance staff.
pub fn city_writer(p: &Principal) -> Result<(), AppError> {
    writer(p)?;
    if p.is_city_wide() {
        Ok(())
    } else {
        Err(AppError::forbidden(
            "Việc này dành cho cán bộ tài chính toàn thành phố.",
            "This is for city-wide finance staff.",
        ))
    }
}

fn out_of_scope(what: &str) -> AppError {
    AppError::forbidden_as(
        "out_of_scope",
        format!("Tài khoản của bạn không quản lý {what}."),
        format!("Your account does not cover {what}."),
    )
}

/// Whether something of a district (or of none: city-wide) is in the caller's scope.
fn visible(p: &Principal, district_code: Option<&str>) -> bool {
    p.is_city_wide() || district_code.is_some_and(|c| p.district_codes.iter().any(|d| d == c))
}

/// A report's `format`: `true` for CSV, `false` for JSON (the default).
pub fn wants_csv(format: Option<&str>) -> Result<bool, AppError> {
    match format {
        None | Some("") | Some("json") => Ok(false),
        Some("csv") => Ok(true),
        _ => Err(AppError::bad_request("invalid_format", "Định dạng là json hoặc csv.", "The format is json or csv.")),
    }
}

/// A note or reason of 1–1000 characters, trimmed; `code` names the field's error.
fn note_of(note: &str, code: &'static str) -> Result<String, AppError> {
    if !crate::domain::city::text_fits(note, 1000) {
        return Err(AppError::bad_request(
            code,
            "Cần ghi chú (1–1000 ký tự).",
            "A note is needed (1–1000 characters).",
        ));
    }
    Ok(crate::domain::city::trim_blank(note).to_owned())
}

/// A month written `YYYY-MM`, as its days.
pub fn parse_month(month: &str) -> Result<DayRange, AppError> {
    fin::parse_month(month).ok_or_else(|| {
        AppError::bad_request("invalid_period", "Tháng có dạng YYYY-MM.", "A month is written YYYY-MM.")
            .with_details(serde_json::json!({ "month": month }))
    })
}

/// Nothing can be posted into a closed month.
fn period_closed() -> AppError {
    AppError::conflict(
        "period_closed",
        "Kỳ kế toán này đã khóa sổ: không thể ghi thêm vào đó.",
        "This accounting period is closed: nothing can be posted into it.",
    )
}

/// The answer of a call made without an `Idempotency-Key` (the dashboard's forms): the
/// store keeps answers only with a key, so there is nothing to render.
fn unkeyed<R>(_: &R) -> crate::store::StoreResult<(u16, String)> {
    Ok((0, String::new()))
}
