//! `POST /v1/finance/carriers/{carrier}/settlements`.

use axum::{
    body::{Body, to_bytes},
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
};
use iparking_mobile_api::{ErrorBody, SettlementQuery, SettlementView};

use crate::{
    app::{
        Keyed,
        finance::{
            city_writer,
            settlements::{SETTLEMENT_LIMIT, Upload, settlement_view, store_settlement},
        },
    },
    error::AppError,
    http::{
        AppState,
        extract::{Path, Query, Staff},
        idempotency::{Idempotency, answered, rendered},
    },
    store::finance::SettlementRow,
};

/// Uploads a carrier's monthly settlement file (CSV: `message_id,received_at,gross,share,net`).
/// Every line is validated; one bad line refuses the file and every problem is listed. A
/// new file for the same month replaces the earlier one. City-wide finance; needs an
/// `Idempotency-Key`.
#[utoipa::path(
    post, path = "/v1/finance/carriers/{carrier}/settlements", tag = "finance", params(SettlementQuery,
        ("carrier" = String, Path, description = "Carrier name"),
        ("Idempotency-Key" = String, Header, description = "Unique per upload")),
    request_body(content = String, content_type = "text/csv", description = "The settlement file"),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Stored", body = SettlementView),
        (status = 400, description = "Bad month; missing Idempotency-Key", body = ErrorBody),
        (status = 403, description = "Not city-wide finance", body = ErrorBody),
        (status = 404, description = "Unknown carrier", body = ErrorBody),
        (status = 413, description = "Over 5 MB", body = ErrorBody),
        (status = 422, description = "Bad lines (details.lines: line, column, message)", body = ErrorBody),
    )
)]
pub async fn post_settlement(
    State(app): State<AppState>,
    Staff(p): Staff,
    Path(carrier): Path<String>,
    Query(q): Query<SettlementQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    city_writer(&p)?;
    let bytes = to_bytes(body, SETTLEMENT_LIMIT).await.map_err(|_| {
        AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "Tệp quá lớn (tối đa 5 MB).",
            "The file is too large (at most 5 MB).",
        )
    })?;
    let path = format!("/v1/finance/carriers/{carrier}/settlements?month={}", q.month);
    let idem = Idempotency::from_request(format!("staff:{}", p.staff_id), &headers, "POST", &path, &bytes)?;
    if let Some(replayed) = idem.replay(&app).await? {
        return Ok(replayed);
    }
    let answer = |row: &SettlementRow| rendered(StatusCode::CREATED, &settlement_view(row.clone()));
    let upload = Upload { carrier: &carrier, month: &q.month, file: &bytes };
    match store_settlement(&app, &p, &upload, idem.claim(), &answer).await? {
        Keyed::Done(view) => answered(rendered(StatusCode::CREATED, &view)),
        Keyed::Taken => idem.replay_taken(&app).await,
    }
}
