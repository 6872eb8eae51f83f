//! Webhooks from outside parties: the mobile carriers' SMS gateway.

use axum::{extract::State, http::HeaderMap};
use iparking_mobile_api::{ErrorBody, SmsDelivery, SmsReply};
use sha2::{Digest, Sha256};

use super::{
    AppState,
    extract::{Json, Path},
};
use crate::{Carrier, app::sms::purchase, error::AppError};

/// Constant-time comparison: the secret's length and content do not leak through timing.
fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A mobile-originated SMS purchase, e.g. `IP25HK 001 30A12345`: starts one turn for the
/// plate at the point, or extends the plate's active SMS session there. Authenticated by the
/// carrier's shared secret (`X-Carrier-Secret`); a repeated delivery of the same message id
/// does nothing again and gets the same reply. Mistakes are answered 200 with a reply that
/// explains them (the carrier sends it back to the driver).
#[utoipa::path(
    post, path = "/webhooks/sms/{carrier}", tag = "webhooks", request_body = SmsDelivery,
    params(("carrier" = String, Path, description = "Carrier name"), ("X-Carrier-Secret" = String, Header, description = "The carrier's shared secret")),
    responses(
        (status = 200, description = "Processed; `reply` goes back to the sender", body = SmsReply),
        (status = 400, description = "Malformed delivery", body = ErrorBody),
        (status = 401, description = "Wrong or missing secret", body = ErrorBody),
        (status = 404, description = "Unknown carrier", body = ErrorBody),
    )
)]
pub async fn sms_delivery(
    State(app): State<AppState>,
    Path(carrier): Path<String>,
    headers: HeaderMap,
    Json(body): Json<SmsDelivery>,
) -> Result<Json<SmsReply>, AppError> {
    let carrier: Carrier = app
        .settings
        .carriers
        .iter()
        .find(|c| c.name == carrier)
        .cloned()
        .ok_or_else(|| AppError::not_found("carrier_not_found", "Không có nhà mạng này.", "No such carrier."))?;
    let secret = headers.get("x-carrier-secret").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !same_secret(secret, &carrier.secret) {
        return Err(AppError::unauthorized_as(
            "unauthorized",
            "Sai khóa bí mật của nhà mạng.",
            "Wrong carrier secret.",
        ));
    }
    if body.message_id.is_empty() || body.message_id.len() > 100 || body.text.len() > 480 {
        return Err(AppError::bad_request(
            "invalid_body",
            "message_id cần 1–100 ký tự; tin nhắn tối đa 480 ký tự.",
            "message_id needs 1–100 characters; text at most 480.",
        ));
    }
    Ok(Json(purchase(&app, &carrier, &body).await?))
}
