//! Extractors: JSON, query and path wrappers whose rejections use the one error shape,
//! and the authentication extractors (a driver, any staff member, an admin).

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request},
    http::{HeaderMap, StatusCode, header::AUTHORIZATION, request::Parts},
};
use serde::de::DeserializeOwned;

use super::{AppState, input};
pub use crate::app::registry::Admin;
use crate::{
    auth::token_hash,
    error::AppError,
    store::{Principal, drivers::DriverPrincipal},
};

/// A JSON body with our error shape on rejection, checked by
/// [`input::parse_json`](super::input::parse_json): one object, no control characters, no
/// key twice, and the field at fault named.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        input::require_json(req.headers())?;
        let bytes = Bytes::from_request(req, state).await.map_err(|_| {
            AppError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Nội dung yêu cầu quá lớn hoặc bị cắt.",
                "The request body is too large or was cut off.",
            )
        })?;
        input::parse_json_body(&bytes).map(Json)
    }
}

impl<T: serde::Serialize> axum::response::IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

/// The query string, with our error shape on rejection: the parameter at fault is named
/// in both languages.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AppError> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de).map(Query).map_err(input::query_error)
    }
}

/// `axum::extract::Path` with our error shape on rejection.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(AppError))]
pub struct Path<T>(pub T);

/// The token of `Authorization: Bearer …` (at most 256 characters).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let header = headers.get(AUTHORIZATION)?.to_str().ok()?;
    header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 256)
}

/// An authenticated driver.
#[derive(Debug, Clone)]
pub struct Driver(pub DriverPrincipal);

impl FromRequestParts<AppState> for Driver {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let token = bearer(&parts.headers).ok_or_else(AppError::unauthorized)?;
        let p = state.driver_principal(&token_hash(token)).await?.ok_or_else(AppError::unauthorized)?;
        Ok(Driver(p))
    }
}

/// Any authenticated staff member who works in the service: not the role `data`, whose
/// tokens read the CDS feeds only ([`MaybeStaff`] there) and nothing a staff token opens
/// elsewhere (a violation's photos, for instance, open to any staff whose scope covers them).
#[derive(Debug, Clone)]
pub struct Staff(pub Principal);

impl FromRequestParts<AppState> for Staff {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let token = bearer(&parts.headers).ok_or_else(AppError::unauthorized)?;
        let principal = state.staff_principal(&token_hash(token)).await?.ok_or_else(AppError::unauthorized)?;
        tracing::Span::current().record("staff.id", principal.staff_id);
        if principal.role == iparking_mobile_api::StaffRole::Data {
            return Err(AppError::forbidden(
                "Mã của vai trò data chỉ đọc được dữ liệu CDS (/cds/events, /cds/metrics).",
                "A token of the role data reads only the CDS feeds (/cds/events, /cds/metrics).",
            ));
        }
        Ok(Staff(principal))
    }
}

/// A staff member if the request carries a valid staff token, else `None` (never a
/// rejection: the use-case decides what an anonymous caller may do).
#[derive(Debug, Clone)]
pub struct MaybeStaff(pub Option<Principal>);

impl FromRequestParts<AppState> for MaybeStaff {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let Some(token) = bearer(&parts.headers) else { return Ok(MaybeStaff(None)) };
        let principal = state.staff_principal(&token_hash(token)).await?;
        if let Some(p) = &principal {
            tracing::Span::current().record("staff.id", p.staff_id);
        }
        Ok(MaybeStaff(principal))
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let Staff(p) = Staff::from_request_parts(parts, state).await?;
        Admin::of(p)
    }
}
