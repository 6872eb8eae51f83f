//! Drivers: phone login with one-time codes, vehicles, the wallet.

use axum::{
    body::Bytes,
    extract::{ConnectInfo, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use iparking_mobile_api::{
    AddVehicle as AddVehicleBody, DriverToken, ErrorBody, LoggedOutEverywhere, OtpRequest, OtpSent, PushKeyView,
    PushSubscriptionBody, PushSubscriptionView, SandboxTopup, TokenRequest, VehicleView, WalletView,
};

use super::{
    AppState,
    extract::{Driver, Json, Path},
    idempotency::Idempotency,
    input::parse_json,
};
pub use crate::app::drivers::{DRIVER_TOKEN_PREFIX, MAX_VEHICLES, OTP_ATTEMPTS, OTP_TTL_SECS};
use crate::{
    app::{
        Keyed,
        drivers::{self, require_sandbox, wallet_view},
        reminders,
    },
    domain::money::Vnd,
    error::AppError,
    store::{StoreError, drivers::WalletLine},
};

/// Sends a one-time login code by SMS. Rate-limited per phone and per client address.
#[utoipa::path(
    post, path = "/v1/auth/otp", tag = "drivers", request_body = OtpRequest,
    responses(
        (status = 202, description = "Code sent", body = OtpSent),
        (status = 400, description = "Malformed phone number", body = ErrorBody),
        (status = 429, description = "Too many codes requested", body = ErrorBody),
    )
)]
pub async fn send_otp(
    State(app): State<AppState>,
    ConnectInfo(super::Peer(peer)): ConnectInfo<super::Peer>,
    Json(body): Json<OtpRequest>,
) -> Result<(StatusCode, Json<OtpSent>), AppError> {
    Ok((StatusCode::ACCEPTED, Json(drivers::send_code(&app, &body, peer.ip()).await?)))
}

/// Exchanges a phone number and its one-time code for a bearer token.
#[utoipa::path(
    post, path = "/v1/auth/token", tag = "drivers", request_body = TokenRequest,
    responses(
        (status = 200, description = "Logged in", body = DriverToken),
        (status = 400, description = "Malformed phone or code", body = ErrorBody),
        (status = 401, description = "Wrong, expired or used code", body = ErrorBody),
        (status = 429, description = "Too many wrong codes: request a new one", body = ErrorBody),
    )
)]
pub async fn create_token(
    State(app): State<AppState>,
    Json(body): Json<TokenRequest>,
) -> Result<Json<DriverToken>, AppError> {
    Ok(Json(drivers::login(&app, &body).await?))
}

/// Revokes the token of this call.
#[utoipa::path(
    post, path = "/v1/auth/logout", tag = "drivers", security(("bearer" = [])),
    responses((status = 204, description = "Logged out"), (status = 401, description = "No valid token", body = ErrorBody))
)]
pub async fn logout(State(app): State<AppState>, Driver(d): Driver) -> Result<StatusCode, AppError> {
    app.revoke_driver_token(d.token_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Logs the driver out on every device: revokes all the driver's tokens (this one too) and
/// forgets the driver's push subscriptions.
#[utoipa::path(
    post, path = "/v1/auth/logout-all", tag = "drivers", security(("bearer" = [])),
    responses(
        (status = 200, description = "Logged out everywhere", body = LoggedOutEverywhere),
        (status = 401, description = "No valid token", body = ErrorBody),
    )
)]
pub async fn logout_all(State(app): State<AppState>, Driver(d): Driver) -> Result<Json<LoggedOutEverywhere>, AppError> {
    Ok(Json(drivers::logout_everywhere(&app, d.driver_id).await?))
}

/// The server's Web Push (VAPID) public key, for the app's `pushManager.subscribe`.
#[utoipa::path(
    get, path = "/v1/push/key", tag = "drivers",
    responses(
        (status = 200, description = "The key", body = PushKeyView),
        (status = 404, description = "Web Push is not configured (reminders go by SMS)", body = ErrorBody),
    )
)]
pub async fn push_key(State(app): State<AppState>) -> Result<Json<PushKeyView>, AppError> {
    Ok(Json(reminders::push_key(&app)?))
}

/// Subscribes this browser to reminders before a session ends (Web Push). The body is the
/// browser's `PushSubscription.toJSON()` with the reminders' language. The same endpoint
/// again replaces its keys (so a retry is harmless).
#[utoipa::path(
    post, path = "/v1/me/push-subscriptions", tag = "drivers", request_body = PushSubscriptionBody,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Subscribed", body = PushSubscriptionView),
        (status = 400, description = "Not an https endpoint, or keys that are not P-256 and 16 bytes", body = ErrorBody),
        (status = 404, description = "Web Push is not configured", body = ErrorBody),
    )
)]
pub async fn subscribe_push(
    State(app): State<AppState>,
    Driver(d): Driver,
    Json(body): Json<PushSubscriptionBody>,
) -> Result<(StatusCode, Json<PushSubscriptionView>), AppError> {
    Ok((StatusCode::CREATED, Json(reminders::subscribe(&app, d.driver_id, &body).await?)))
}

/// The driver's push subscriptions (their endpoints are not shown).
#[utoipa::path(
    get, path = "/v1/me/push-subscriptions", tag = "drivers", security(("bearer" = [])),
    responses((status = 200, description = "Subscriptions", body = [PushSubscriptionView]))
)]
pub async fn list_push_subscriptions(
    State(app): State<AppState>,
    Driver(d): Driver,
) -> Result<Json<Vec<PushSubscriptionView>>, AppError> {
    Ok(Json(reminders::subscriptions(&app, d.driver_id).await?))
}

/// Stops reminders on one browser. Another driver's subscription answers 404.
#[utoipa::path(
    delete, path = "/v1/me/push-subscriptions/{id}", tag = "drivers", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Subscription id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such subscription", body = ErrorBody),
    )
)]
pub async fn unsubscribe_push(
    State(app): State<AppState>,
    Driver(d): Driver,
    Path(id): Path<i64>,
) -> Result<StatusCode, AppError> {
    reminders::unsubscribe(&app, d.driver_id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The driver's vehicles.
#[utoipa::path(
    get, path = "/v1/me/vehicles", tag = "drivers", security(("bearer" = [])),
    responses((status = 200, description = "Vehicles", body = [VehicleView]))
)]
pub async fn list_vehicles(State(app): State<AppState>, Driver(d): Driver) -> Result<Json<Vec<VehicleView>>, AppError> {
    Ok(Json(drivers::vehicles(&app, d.driver_id).await?))
}

/// Registers a vehicle (at most 10 per account).
#[utoipa::path(
    post, path = "/v1/me/vehicles", tag = "drivers", request_body = AddVehicleBody, security(("bearer" = [])),
    responses(
        (status = 201, description = "Added", body = VehicleView),
        (status = 400, description = "Not a plate", body = ErrorBody),
        (status = 409, description = "Already registered", body = ErrorBody),
        (status = 422, description = "Too many vehicles", body = ErrorBody),
    )
)]
pub async fn add_vehicle(
    State(app): State<AppState>,
    Driver(d): Driver,
    Json(body): Json<AddVehicleBody>,
) -> Result<(StatusCode, Json<VehicleView>), AppError> {
    Ok((StatusCode::CREATED, Json(drivers::add_vehicle(&app, d.driver_id, &body).await?)))
}

/// Removes a vehicle. Another driver's vehicle answers 404, as if it did not exist.
#[utoipa::path(
    delete, path = "/v1/me/vehicles/{id}", tag = "drivers", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Vehicle id")),
    responses((status = 204, description = "Removed"), (status = 404, description = "No such vehicle", body = ErrorBody))
)]
pub async fn remove_vehicle(
    State(app): State<AppState>,
    Driver(d): Driver,
    Path(id): Path<i64>,
) -> Result<StatusCode, AppError> {
    drivers::remove_vehicle(&app, d.driver_id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The wallet's balance and latest movements.
#[utoipa::path(
    get, path = "/v1/me/wallet", tag = "drivers", security(("bearer" = [])),
    responses((status = 200, description = "Wallet", body = WalletView))
)]
pub async fn get_wallet(State(app): State<AppState>, Driver(d): Driver) -> Result<Json<WalletView>, AppError> {
    Ok(Json(drivers::wallet(&app, d.driver_id).await?))
}

/// SANDBOX (demo only): adds play money to the wallet. Off in production, where top-ups go
/// through the card processor. Needs an `Idempotency-Key`.
#[utoipa::path(
    post, path = "/v1/me/wallet/sandbox-topups", tag = "drivers", request_body = SandboxTopup,
    security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, description = "Unique per top-up; retries reuse it")),
    responses(
        (status = 201, description = "Credited (sandbox play money)", body = WalletView),
        (status = 400, description = "Amount out of range, missing Idempotency-Key", body = ErrorBody),
        (status = 404, description = "The sandbox is off on this server", body = ErrorBody),
        (status = 422, description = "Idempotency-Key reused for another request", body = ErrorBody),
    )
)]
pub async fn sandbox_topup(
    State(app): State<AppState>,
    Driver(d): Driver,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    require_sandbox(&app)?;
    let idem = match Idempotency::for_driver(&app, d.driver_id, &headers, "/v1/me/wallet/sandbox-topups", &body).await?
    {
        Ok(idem) => idem,
        Err(replayed) => return Ok(replayed),
    };
    let req: SandboxTopup = parse_json(&headers, &body)?;
    let sandbox = app.settings.sandbox_payments;
    let answer = |balance: Vnd, lines: &[WalletLine]| {
        serde_json::to_string(&wallet_view(balance, lines, sandbox))
            .map(|json| (StatusCode::CREATED.as_u16(), json))
            .map_err(|e| StoreError::Internal(e.to_string()))
    };
    match drivers::sandbox_topup(&app, d.driver_id, req.amount, idem.claim(), &answer).await? {
        Keyed::Done((status, json)) => Ok(Idempotency::stored_answer(status, json)),
        Keyed::Taken => idem.replay_taken(&app).await,
    }
}
