//! Offline sync: a batch of actions made without a network, each applied once.

use axum::{
    body::{Body, to_bytes},
    extract::State,
    http::HeaderMap,
};
use iparking_mobile_api::{ErrorBody, SyncBatch, SyncResultView};

use super::super::{AppState, extract::Json, input::parse_json, prefers_english};
use super::{SYNC_BODY_MAX, Warden};
use crate::{app::wardens::sync::sync, error::AppError};

/// Applies actions recorded on the handheld while offline, each exactly once whatever the
/// retries, and answers one result per action. A malformed batch changes nothing.
#[utoipa::path(
    post, path = "/v1/warden/sync", tag = "wardens", request_body = SyncBatch, security(("bearer" = [])),
    responses(
        (status = 200, description = "One result per action, in order", body = SyncResultView),
        (status = 400, description = "Malformed batch: too many, duplicate or invalid actions (details name the first)", body = ErrorBody),
        (status = 413, description = "The batch is too large", body = ErrorBody),
    )
)]
pub async fn sync_actions(
    State(app): State<AppState>,
    w: Warden,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<SyncResultView>, AppError> {
    let english = prefers_english(&headers);
    let bytes = to_bytes(body, SYNC_BODY_MAX).await.map_err(|_| {
        AppError::payload_too_large(
            "payload_too_large",
            "Gói đồng bộ quá lớn: gửi làm nhiều lần.",
            "The sync batch is too large: send it in parts.",
        )
    })?;
    let batch: SyncBatch = parse_json(&headers, &bytes)?;
    Ok(Json(sync(&app, &w, &batch, english).await?))
}
