//! Refund requests: a driver's (`POST`/`GET /v1/me/refund-requests`) and finance's
//! (`GET /v1/finance/refund-requests`, `…/{id}/approve`, `…/{id}/reject`).

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
};
use iparking_mobile_api::{ErrorBody, RefundDecision, RefundRequestBody, RefundRequestQuery, RefundRequestView};

use crate::{
    app::{
        Keyed,
        finance::{
            refunds::{Decision, decide_request, request_refund, request_view, requests, requests_of},
            writer,
        },
    },
    error::AppError,
    http::{
        AppState,
        extract::{Driver, Json, Path, Query, Staff},
        idempotency::{Idempotency, answered, rendered},
        input::parse_json,
    },
    store::{Principal, finance::RefundRequestRow},
};

/// Asks finance for a refund: the wallet's unused balance (back to the cards it came from)
/// or a disputed session. Wallet money is held at once. Needs an `Idempotency-Key`.
#[utoipa::path(
    post, path = "/v1/me/refund-requests", tag = "drivers", request_body = RefundRequestBody,
    security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, description = "Unique per request")),
    responses(
        (status = 201, description = "Waiting for finance", body = RefundRequestView),
        (status = 400, description = "Bad kind, amount or reason; missing Idempotency-Key", body = ErrorBody),
        (status = 404, description = "No such session of yours", body = ErrorBody),
        (status = 409, description = "The session already has a pending request", body = ErrorBody),
        (status = 422, description = "More than can be refunded; not refundable this way", body = ErrorBody),
    )
)]
pub async fn create_refund_request(
    State(app): State<AppState>,
    Driver(d): Driver,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let idem = match Idempotency::for_driver(&app, d.driver_id, &headers, "/v1/me/refund-requests", &body).await? {
        Ok(i) => i,
        Err(replayed) => return Ok(replayed),
    };
    let req: RefundRequestBody = parse_json(&headers, &body)?;
    // The answer is rendered inside the transaction that holds the money and stored with
    // its key there.
    let answer = |row: &RefundRequestRow| rendered(StatusCode::CREATED, &request_view(row.clone()));
    match request_refund(&app, d.driver_id, &req, idem.claim(), &answer).await? {
        Keyed::Done(view) => answered(rendered(StatusCode::CREATED, &view)),
        Keyed::Taken => idem.replay_taken(&app).await,
    }
}

/// The driver's refund requests.
#[utoipa::path(
    get, path = "/v1/me/refund-requests", tag = "drivers", security(("bearer" = [])),
    responses((status = 200, description = "Requests, oldest first", body = Vec<RefundRequestView>))
)]
pub async fn my_refund_requests(
    State(app): State<AppState>,
    Driver(d): Driver,
) -> Result<Json<Vec<RefundRequestView>>, AppError> {
    Ok(Json(requests_of(&app, d.driver_id).await?))
}

/// Refund requests waiting for (or decided by) finance, in the caller's scope.
#[utoipa::path(
    get, path = "/v1/finance/refund-requests", tag = "finance", params(RefundRequestQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "Requests, oldest first", body = Vec<RefundRequestView>),
        (status = 400, description = "Bad status", body = ErrorBody),
        (status = 403, description = "Not finance or admin", body = ErrorBody),
    )
)]
pub async fn list_refund_requests(
    State(app): State<AppState>,
    Staff(p): Staff,
    Query(q): Query<RefundRequestQuery>,
) -> Result<Json<Vec<RefundRequestView>>, AppError> {
    Ok(Json(requests(&app, &p, q.status.as_deref()).await?))
}

/// A decision: the role is checked before the key, the key before the body.
async fn decision(
    app: &AppState,
    p: &Principal,
    id: i64,
    approve: bool,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, AppError> {
    writer(p)?;
    let path = format!("/v1/finance/refund-requests/{id}/{}", if approve { "approve" } else { "reject" });
    let idem = Idempotency::from_request(format!("staff:{}", p.staff_id), headers, "POST", &path, body)?;
    if let Some(replayed) = idem.replay(app).await? {
        return Ok(replayed);
    }
    let req: RefundDecision = parse_json(headers, body)?;
    let answer = |row: &RefundRequestRow| rendered(StatusCode::OK, &request_view(row.clone()));
    match decide_request(app, p, &Decision { id, approve, note: &req.note }, idem.claim(), &answer).await? {
        Keyed::Done(view) => answered(rendered(StatusCode::OK, &view)),
        Keyed::Taken => idem.replay_taken(app).await,
    }
}

/// Approves a refund request: the money goes back through the channel it came from (cards
/// through the processor; wallet-paid turns to the wallet). Needs an `Idempotency-Key`.
#[utoipa::path(
    post, path = "/v1/finance/refund-requests/{id}/approve", tag = "finance", request_body = RefundDecision,
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "Request id"), ("Idempotency-Key" = String, Header, description = "Unique per decision")),
    responses(
        (status = 200, description = "Approved; processor refunds under way", body = RefundRequestView),
        (status = 400, description = "No note; missing Idempotency-Key", body = ErrorBody),
        (status = 403, description = "Not finance; another district", body = ErrorBody),
        (status = 404, description = "No such request", body = ErrorBody),
        (status = 409, description = "Already decided", body = ErrorBody),
    )
)]
pub async fn approve_refund_request(
    State(app): State<AppState>,
    Staff(p): Staff,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    decision(&app, &p, id, true, &headers, &body).await
}

/// Rejects a refund request: held wallet money goes back to the wallet. Needs an
/// `Idempotency-Key`.
#[utoipa::path(
    post, path = "/v1/finance/refund-requests/{id}/reject", tag = "finance", request_body = RefundDecision,
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "Request id"), ("Idempotency-Key" = String, Header, description = "Unique per decision")),
    responses(
        (status = 200, description = "Rejected", body = RefundRequestView),
        (status = 400, description = "No note; missing Idempotency-Key", body = ErrorBody),
        (status = 403, description = "Not finance; another district", body = ErrorBody),
        (status = 404, description = "No such request", body = ErrorBody),
        (status = 409, description = "Already decided", body = ErrorBody),
    )
)]
pub async fn reject_refund_request(
    State(app): State<AppState>,
    Staff(p): Staff,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    decision(&app, &p, id, false, &headers, &body).await
}
