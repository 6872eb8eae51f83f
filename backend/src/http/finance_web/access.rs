//! Who is signed in: the staff token of the session cookie, finance or admin only.

use axum::{http::HeaderMap, response::Response};
use iparking_mobile_api::StaffRole;

use super::{
    SESSION_COOKIE,
    labels::Month,
    request::{Ctx, cookie_value, enc},
};
use crate::{App, auth::token_hash, error::AppError, store::Principal};

/// The signed-in dashboard user, or the answer to send instead (login redirect or error).
pub(super) async fn require_user(app: &App, ctx: &Ctx, headers: &HeaderMap) -> Result<Principal, Response> {
    require_user_back(app, ctx, headers, &ctx.here()).await
}

/// Like [`require_user`]; after login, back to the page `back` (a form's page, not its POST).
pub(super) async fn require_user_back(
    app: &App,
    ctx: &Ctx,
    headers: &HeaderMap,
    back: &str,
) -> Result<Principal, Response> {
    match current_user(app, headers).await {
        Ok(Some(p)) => Ok(p),
        Ok(None) => Err(ctx.redirect(&format!("/finance/login?next={}", enc(back)))),
        Err(e) => Err(ctx.error_page(None, None, &e)),
    }
}

/// The user of the session cookie's token, if it is a live finance or admin token.
pub(super) async fn current_user(app: &App, headers: &HeaderMap) -> Result<Option<Principal>, AppError> {
    let Some(token) = cookie_value(headers, SESSION_COOKIE).filter(|t| !t.is_empty() && t.len() <= 256) else {
        return Ok(None);
    };
    let p = app.staff_principal(&token_hash(&token)).await?;
    let p = p.filter(|p| matches!(p.role, StaffRole::Finance | StaffRole::Admin));
    if let Some(p) = &p {
        tracing::Span::current().record("staff.id", p.staff_id);
    }
    Ok(p)
}

/// 403 for an admin's form: admins read only.
pub(super) fn read_only(ctx: &Ctx, user: &Principal, month: Option<Month>) -> Response {
    let e = AppError::forbidden("Tài khoản quản trị chỉ được xem.", "Admin accounts are read only.");
    ctx.error_page(Some(user), month, &e)
}

/// A signed-in user for the templates' tests.
#[cfg(test)]
pub(super) fn test_user(role: StaffRole, districts: &[&str]) -> Principal {
    Principal {
        staff_id: 7,
        name: "Nguyễn <Kế> & \"Toán\"".to_owned(),
        role,
        district_codes: districts.iter().map(|d| (*d).to_owned()).collect(),
        street_ids: vec![],
        token_id: 9,
    }
}
