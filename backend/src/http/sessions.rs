//! Parking sessions: start, extend, stop, correct the plate, history. The HTTP side of
//! `app::sessions`: keys, bodies, views.

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use iparking_mobile_api::{
    CorrectPlate as CorrectPlateBody, ErrorBody, ExtendSession, ExtensionQuoteQuery, PaymentSource, QuoteView,
    SessionListQuery, SessionPurchase, SessionView, StartSession, StopQuote,
};

use super::{
    AppState, cards,
    extract::{Driver, Json, Path, Query},
    idempotency::{Idempotency, Prelude, rendered},
    input::parse_json,
    prefers_english,
};
use crate::{
    app::views::session_view,
    app::{
        charges,
        sessions::{self, Changed, Started, Stopped},
    },
    error::AppError,
    store::{
        StoreResult,
        drivers::{DriverPrincipal, SessionRow},
    },
};

/// A session's answer for its key: the session at `now`, with the warnings for the driver.
fn session_answer(status: StatusCode) -> impl Fn(&SessionRow, &[String], DateTime<Utc>) -> StoreResult<(u16, String)> {
    move |row, warnings, now| {
        let mut view = session_view(row, now);
        view.warnings = warnings.to_vec();
        rendered(status, &view)
    }
}

/// Starts a session paid from the wallet. One active session per plate; a full point is
/// refused with the three nearest points that have space. Needs an `Idempotency-Key`.
#[utoipa::path(
    post, path = "/v1/sessions", tag = "sessions", request_body = StartSession, security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, description = "Unique per start; retries reuse it")),
    responses(
        (status = 201, description = "Started and paid", body = SessionView),
        (status = 400, description = "Bad plate, duration, body; missing Idempotency-Key", body = ErrorBody),
        (status = 402, description = "Not enough in the wallet (details: price, balance, missing)", body = ErrorBody),
        (status = 404, description = "Unknown point", body = ErrorBody),
        (status = 409, description = "Point closed or full (details: alternatives); plate already parked", body = ErrorBody),
        (status = 422, description = "Class not allowed, no tariff, too long, key reused", body = ErrorBody),
    )
)]
pub async fn start_session(
    State(app): State<AppState>,
    Driver(d): Driver,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let parsed: Result<StartSession, AppError> = parse_json(&headers, &body);
    let req = match parsed {
        Ok(req) if req.payment != Some(PaymentSource::Card) => req,
        parsed => {
            // A card start (or a body that does not parse): the key is looked up first, as
            // a key whose first request made a card charge resumes that charge.
            let idem =
                match Idempotency::for_driver_or_charge(&app, d.driver_id, &headers, "/v1/sessions", &body).await? {
                    Prelude::Fresh(idem) => idem,
                    Prelude::Replayed(replayed) => return Ok(replayed),
                    Prelude::Charge(charge) => {
                        return cards::charge_response(&app, charges::advance_charge(&app, *charge, Vec::new()).await?)
                            .await;
                    }
                };
            return start_with_key(&app, &d, &headers, parsed?, idem).await;
        }
    };
    // A wallet start claims its key in the write that starts the session, without a lookup
    // first (one database round trip fewer): a used key fails there and is answered its
    // first answer. A refusal before the write (the point closed since, say) is answered
    // the key's first answer too, when there is one.
    let idem = Idempotency::of_driver(d.driver_id, &headers, "/v1/sessions", &body)?;
    match start_with_key(&app, &d, &headers, req, idem.clone()).await {
        Ok(answer) => Ok(answer),
        Err(refused) => match idem.replay(&app).await? {
            Some(replayed) => Ok(replayed),
            None => Err(refused),
        },
    }
}

/// [`start_session`] once its key is known new, or (a wallet start) is claimed by the write.
async fn start_with_key(
    app: &AppState,
    d: &DriverPrincipal,
    headers: &HeaderMap,
    req: StartSession,
    idem: Idempotency,
) -> Result<Response, AppError> {
    let english = prefers_english(headers);
    match sessions::start(app, d, req, english, idem.claim(), &session_answer(StatusCode::CREATED)).await? {
        Started::Wallet(status, json) => Ok(Idempotency::stored_answer(status, json)),
        Started::ByCard(answer) => cards::charge_response(app, *answer).await,
        Started::KeyTaken => idem.replay_taken(app).await,
    }
}

/// Extends an active session: the new turns continue the stay (hour count, block, cap) at the
/// tariff the session was bought with. Needs an `Idempotency-Key`.
#[utoipa::path(
    post, path = "/v1/sessions/{id}/extend", tag = "sessions", request_body = ExtendSession, security(("bearer" = [])),
    params(("id" = i64, Path, description = "Session id"), ("Idempotency-Key" = String, Header, description = "Unique per extension")),
    responses(
        (status = 200, description = "Extended and paid", body = SessionView),
        (status = 400, description = "Bad duration, missing Idempotency-Key", body = ErrorBody),
        (status = 402, description = "Not enough in the wallet", body = ErrorBody),
        (status = 404, description = "No such session (or another driver's)", body = ErrorBody),
        (status = 409, description = "The session has ended", body = ErrorBody),
        (status = 422, description = "Beyond the maximum stay; key reused", body = ErrorBody),
    )
)]
pub async fn extend_session(
    State(app): State<AppState>,
    Driver(d): Driver,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let path = format!("/v1/sessions/{id}/extend");
    let idem = match Idempotency::for_driver_or_charge(&app, d.driver_id, &headers, &path, &body).await? {
        Prelude::Fresh(idem) => idem,
        Prelude::Replayed(replayed) => return Ok(replayed),
        Prelude::Charge(charge) => {
            return cards::charge_response(&app, charges::advance_charge(&app, *charge, Vec::new()).await?).await;
        }
    };
    let req: ExtendSession = parse_json(&headers, &body)?;
    match sessions::extend(&app, &d, id, req, idem.claim(), &session_answer(StatusCode::OK)).await? {
        Changed::Stored(status, json) => Ok(Idempotency::stored_answer(status, json)),
        Changed::ByCard(answer) => cards::charge_response(&app, *answer).await,
        Changed::KeyTaken => idem.replay_taken(&app).await,
    }
}

/// Stops a session and refunds the unused whole turns to the wallet (see docs/sessions.md).
/// Stopping a session that has already ended answers it as it is: stop is safe to retry.
#[utoipa::path(
    post, path = "/v1/sessions/{id}/stop", tag = "sessions", security(("bearer" = [])),
    request_body(content = Option<super::input::EmptyBody>, content_type = "application/json", description = "None, or `{}`"),
    params(("id" = i64, Path, description = "Session id"), ("Idempotency-Key" = String, Header, description = "Unique per stop")),
    responses(
        (status = 200, description = "Stopped (or already ended)", body = SessionView),
        (status = 400, description = "Missing Idempotency-Key", body = ErrorBody),
        (status = 404, description = "No such session (or another driver's)", body = ErrorBody),
    )
)]
pub async fn stop_session(
    State(app): State<AppState>,
    Driver(d): Driver,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    super::input::require_empty_body(&headers, &body)?;
    let idem =
        match Idempotency::for_driver(&app, d.driver_id, &headers, &format!("/v1/sessions/{id}/stop"), &body).await? {
            Ok(idem) => idem,
            Err(replayed) => return Ok(replayed),
        };
    match sessions::stop(&app, &d, id, idem.claim(), &session_answer(StatusCode::OK)).await? {
        Stopped::Stored(status, json) => Ok(Idempotency::stored_answer(status, json)),
        Stopped::AlreadyEnded(row) => Ok(Json(session_view(&row, app.clock.now())).into_response()),
        Stopped::KeyTaken => idem.replay_taken(&app).await,
    }
}

/// Corrects a mistyped plate within 5 minutes of the start, once.
#[utoipa::path(
    patch, path = "/v1/sessions/{id}", tag = "sessions", request_body = CorrectPlateBody, security(("bearer" = [])),
    params(("id" = i64, Path, description = "Session id")),
    responses(
        (status = 200, description = "Corrected", body = SessionView),
        (status = 400, description = "Not a plate", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 409, description = "Ended, or the new plate is parked elsewhere", body = ErrorBody),
        (status = 422, description = "Too late (5 minutes) or already corrected", body = ErrorBody),
    )
)]
pub async fn correct_plate(
    State(app): State<AppState>,
    Driver(d): Driver,
    Path(id): Path<i64>,
    Json(body): Json<CorrectPlateBody>,
) -> Result<Json<SessionView>, AppError> {
    let row = sessions::correct_plate(&app, &d, id, &body.plate).await?;
    Ok(Json(session_view(&row, app.clock.now())))
}

/// The price of extending an active session, before paying it: the new turns continue the
/// stay at the tariff it was bought with, as `POST /v1/sessions/{id}/extend` charges them.
#[utoipa::path(
    get, path = "/v1/sessions/{id}/extension-quote", tag = "sessions",
    params(("id" = i64, Path, description = "Session id"), ExtensionQuoteQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "The extension's price, line by line", body = QuoteView),
        (status = 400, description = "Neither or both of minutes/turns, or zero", body = ErrorBody),
        (status = 404, description = "No such session (or another driver's)", body = ErrorBody),
        (status = 409, description = "The session has ended", body = ErrorBody),
        (status = 422, description = "Longer than the tariff's maximum stay", body = ErrorBody),
    )
)]
pub async fn extension_quote(
    State(app): State<AppState>,
    Driver(d): Driver,
    Path(id): Path<i64>,
    Query(q): Query<ExtensionQuoteQuery>,
    headers: HeaderMap,
) -> Result<Json<QuoteView>, AppError> {
    let english = prefers_english(&headers);
    Ok(Json(sessions::extension_quote(&app, &d, id, q.minutes, q.turns, english).await?))
}

/// The session's receipt: its number and check code, and its public page (what the
/// receipt's QR code opens; anyone holding both can check it there).
#[utoipa::path(
    get, path = "/v1/sessions/{id}/receipt", tag = "sessions",
    params(("id" = i64, Path, description = "Session id")), security(("bearer" = [])),
    responses(
        (status = 200, description = "The receipt's number, code and page", body = iparking_mobile_api::SessionReceiptView),
        (status = 404, description = "No such session (or another driver's)", body = ErrorBody),
    )
)]
pub async fn session_receipt(
    State(app): State<AppState>,
    Driver(d): Driver,
    Path(id): Path<i64>,
) -> Result<Json<iparking_mobile_api::SessionReceiptView>, AppError> {
    Ok(Json(crate::app::receipts::session_receipt(&app, &d, id).await?))
}

/// What stopping an active session now would refund (its unused whole turns), before the
/// driver confirms `POST /v1/sessions/{id}/stop`.
#[utoipa::path(
    get, path = "/v1/sessions/{id}/stop-quote", tag = "sessions",
    params(("id" = i64, Path, description = "Session id")), security(("bearer" = [])),
    responses(
        (status = 200, description = "The refund if stopped now", body = StopQuote),
        (status = 404, description = "No such session (or another driver's)", body = ErrorBody),
        (status = 409, description = "The session has ended", body = ErrorBody),
    )
)]
pub async fn stop_quote(
    State(app): State<AppState>,
    Driver(d): Driver,
    Path(id): Path<i64>,
) -> Result<Json<StopQuote>, AppError> {
    Ok(Json(sessions::stop_quote(&app, &d, id).await?))
}

/// The driver's sessions, newest first.
#[utoipa::path(
    get, path = "/v1/sessions", tag = "sessions", params(SessionListQuery), security(("bearer" = [])),
    responses((status = 200, description = "Sessions", body = [SessionView]))
)]
pub async fn list_sessions(
    State(app): State<AppState>,
    Driver(d): Driver,
    Query(q): Query<SessionListQuery>,
) -> Result<Json<Vec<SessionView>>, AppError> {
    let now = app.clock.now();
    let rows = app.store.driver_sessions(d.driver_id, None, 200).await?;
    Ok(Json(rows.iter().map(|r| session_view(r, now)).filter(|v| q.status.is_none_or(|s| s == v.status)).collect()))
}

/// One session with its receipt (every purchase, line by line).
#[utoipa::path(
    get, path = "/v1/sessions/{id}", tag = "sessions", params(("id" = i64, Path, description = "Session id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The session and its receipt", body = SessionView),
        (status = 404, description = "No such session (or another driver's)", body = ErrorBody),
    )
)]
pub async fn get_session(
    State(app): State<AppState>,
    Driver(d): Driver,
    Path(id): Path<i64>,
) -> Result<Json<SessionView>, AppError> {
    let s = sessions::own_session(&app, d.driver_id, id).await?;
    let mut view = session_view(&s, app.clock.now());
    view.purchases = app
        .store
        .session_purchases(id)
        .await?
        .into_iter()
        .map(|(turns, amount, paid_until, quote, at)| SessionPurchase {
            turns,
            amount: amount.get(),
            paid_until,
            at,
            lines: serde_json::from_str::<QuoteView>(&quote).map(|q| q.lines).unwrap_or_default(),
        })
        .collect();
    Ok(Json(view))
}
