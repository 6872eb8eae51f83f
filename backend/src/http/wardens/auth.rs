//! Staff login on a handheld, and logout.

use axum::{
    extract::{ConnectInfo, State},
    http::StatusCode,
};
use iparking_mobile_api::{ErrorBody, StaffRole, WardenLogin, WardenToken};

use super::super::{AppState, extract::Json};
use crate::{app::staff::password_login, error::AppError};

use super::Warden;

// ---- login -------------------------------------------------------------------------------

/// Logs a warden or inspector in with username and password on a named handheld. Failed
/// attempts are rate-limited per username and per client address, across nodes.
#[utoipa::path(
    post, path = "/v1/warden/auth/token", tag = "wardens", request_body = WardenLogin,
    responses(
        (status = 200, description = "Logged in", body = WardenToken),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "Wrong username or password", body = ErrorBody),
        (status = 403, description = "Not a warden or inspector", body = ErrorBody),
        (status = 429, description = "Too many failed attempts", body = ErrorBody),
    )
)]
pub async fn warden_login(
    State(app): State<AppState>,
    ConnectInfo(super::super::Peer(peer)): ConnectInfo<super::super::Peer>,
    Json(body): Json<WardenLogin>,
) -> Result<Json<WardenToken>, AppError> {
    let roles = [StaffRole::Warden, StaffRole::Inspector];
    let (token, p) = match password_login(&app, peer.ip(), &body.username, &body.password, &body.device, &roles).await {
        Ok(ok) => ok,
        Err(e) if e.status == StatusCode::FORBIDDEN => {
            return Err(AppError::forbidden(
                "Đăng nhập thiết bị cầm tay chỉ dành cho warden và inspector.",
                "Handheld login is for wardens and inspectors.",
            ));
        }
        Err(e) => return Err(e),
    };
    tracing::info!(staff.id = p.staff_id, token.id = p.token_id, "warden logged in");
    Ok(Json(WardenToken {
        token,
        token_id: p.token_id,
        staff_id: p.staff_id,
        name: p.name,
        role: p.role,
        districts: p.district_codes,
        streets: p.street_ids,
    }))
}

/// Revokes the token of this call.
#[utoipa::path(
    post, path = "/v1/warden/auth/logout", tag = "wardens", security(("bearer" = [])),
    responses((status = 204, description = "Logged out"), (status = 401, description = "No valid token", body = ErrorBody))
)]
pub async fn warden_logout(State(app): State<AppState>, w: Warden) -> Result<StatusCode, AppError> {
    app.revoke_staff_token(w.0.token_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
