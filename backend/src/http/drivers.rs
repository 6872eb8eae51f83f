//! Drivers: phone login with one-time codes, vehicles, the wallet.

use axum::{
    body::Bytes,
    extract::{ConnectInfo, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use iparking_mobile_api::{
    AddVehicle as AddVehicleBody, DriverToken, ErrorBody, OtpRequest, OtpSent, SandboxTopup, TokenRequest, VehicleView,
    WalletMovement, WalletView,
};
use rand::Rng;

use super::{
    AppState,
    extract::{Driver, Json, Path},
    idempotency::Idempotency,
    input::parse_json,
};
use crate::{
    auth::token_hash,
    domain::{ledger::Entry, money::Vnd, phone::Phone, plate::Plate},
    error::AppError,
    live::OtpCheck,
    store::{
        StoreError,
        drivers::{AddVehicle, Vehicle, WALLET_ANSWER_LINES, WalletLine},
    },
};

/// Most vehicles on one account.
pub const MAX_VEHICLES: usize = 10;
/// How long a one-time code is valid.
pub const OTP_TTL_SECS: u64 = 300;
/// Wrong codes allowed before a code is destroyed.
pub const OTP_ATTEMPTS: u32 = 5;
/// Prefix of driver tokens.
pub const DRIVER_TOKEN_PREFIX: &str = "ipk_drv_";

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
    let phone = Phone::parse(&body.phone).map_err(AppError::from)?;
    let s = &app.settings;
    let by_ip = app.live.rate_limit(&format!("otp-ip:{}", peer.ip()), s.otp_per_ip, s.otp_window).await?;
    let by_phone = app.live.rate_limit(&format!("otp-phone:{}", phone.as_str()), s.otp_per_phone, s.otp_window).await?;
    if !by_ip || !by_phone {
        return Err(AppError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "Bạn đã yêu cầu quá nhiều mã. Vui lòng thử lại sau 15 phút.",
            "Too many codes requested. Please try again in 15 minutes.",
        ));
    }
    let code = format!("{:06}", rand::rng().random_range(0..1_000_000));
    app.live.put_otp(phone.as_str(), &code, std::time::Duration::from_secs(OTP_TTL_SECS), OTP_ATTEMPTS).await?;
    let text = format!("iParking: ma dang nhap cua ban la {code}, het han sau 5 phut. Khong chia se ma nay.");
    app.sms.send(&phone, &text).await.map_err(|e| {
        tracing::warn!(error = %e, "OTP SMS failed");
        AppError::unavailable("SMS")
    })?;
    Ok((StatusCode::ACCEPTED, Json(OtpSent { phone: phone.masked(), expires_in_seconds: OTP_TTL_SECS })))
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
    let phone = Phone::parse(&body.phone).map_err(AppError::from)?;
    // Spaces around the code are fine (pasted from the SMS); the document says so.
    let code = body.code.trim_matches(' ');
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AppError::bad_request("invalid_code", "Mã gồm 6 chữ số.", "The code has 6 digits."));
    }
    match app.live.check_otp(phone.as_str(), code).await? {
        OtpCheck::Valid => {}
        OtpCheck::Wrong(left) => {
            return Err(AppError::new(
                StatusCode::UNAUTHORIZED,
                "otp_invalid",
                format!("Mã không đúng. Còn {left} lần thử."),
                format!("Wrong code. {left} attempts left."),
            )
            .with_details(serde_json::json!({ "attempts_left": left })));
        }
        OtpCheck::Locked => {
            return Err(AppError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "otp_locked",
                "Nhập sai quá nhiều lần. Hãy yêu cầu mã mới.",
                "Too many wrong codes. Request a new code.",
            ));
        }
        OtpCheck::Missing => {
            return Err(AppError::new(
                StatusCode::UNAUTHORIZED,
                "otp_expired",
                "Mã đã hết hạn hoặc đã được dùng. Hãy yêu cầu mã mới.",
                "The code has expired or was already used. Request a new one.",
            ));
        }
    }
    let now = app.clock.now();
    let driver_id = app.store.upsert_driver(phone.as_str(), now).await?;
    let mut bytes = [0u8; 32];
    rand::rng().fill(&mut bytes);
    let token = format!("{DRIVER_TOKEN_PREFIX}{}", hex::encode(bytes));
    app.store.create_driver_token(driver_id, &token_hash(&token), now).await?;
    tracing::info!(driver.id = driver_id, "driver logged in");
    Ok(Json(DriverToken { token, driver_id }))
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

fn vehicle_view(v: Vehicle) -> VehicleView {
    VehicleView {
        id: v.id,
        plate: v.plate.as_str().to_owned(),
        vehicle_class: v.vehicle_class,
        created_at: v.created_at,
    }
}

/// The driver's vehicles.
#[utoipa::path(
    get, path = "/v1/me/vehicles", tag = "drivers", security(("bearer" = [])),
    responses((status = 200, description = "Vehicles", body = [VehicleView]))
)]
pub async fn list_vehicles(State(app): State<AppState>, Driver(d): Driver) -> Result<Json<Vec<VehicleView>>, AppError> {
    Ok(Json(app.store.vehicles(d.driver_id).await?.into_iter().map(vehicle_view).collect()))
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
    let plate = Plate::parse(&body.plate).map_err(AppError::from)?;
    match app.store.add_vehicle(d.driver_id, &plate, body.vehicle_class, MAX_VEHICLES, app.clock.now()).await? {
        AddVehicle::Added(v) => Ok((StatusCode::CREATED, Json(vehicle_view(v)))),
        AddVehicle::Duplicate => Err(AppError::conflict(
            "vehicle_exists",
            "Biển số này đã có trong tài khoản.",
            "This plate is already on your account.",
        )),
        AddVehicle::TooMany => Err(AppError::unprocessable(
            "too_many_vehicles",
            format!("Mỗi tài khoản có tối đa {MAX_VEHICLES} xe."),
            format!("An account can hold at most {MAX_VEHICLES} vehicles."),
        )),
    }
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
    if app.store.remove_vehicle(d.driver_id, id, app.clock.now()).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::not_found("vehicle_not_found", "Không có xe này.", "No such vehicle."))
    }
}

/// The wallet's balance and latest movements.
#[utoipa::path(
    get, path = "/v1/me/wallet", tag = "drivers", security(("bearer" = [])),
    responses((status = 200, description = "Wallet", body = WalletView))
)]
pub async fn get_wallet(State(app): State<AppState>, Driver(d): Driver) -> Result<Json<WalletView>, AppError> {
    let (balance, lines) = app.store.wallet(d.driver_id, WALLET_ANSWER_LINES).await?;
    Ok(Json(wallet_view(balance, &lines, app.settings.sandbox_payments)))
}

/// A wallet as drivers see it.
fn wallet_view(balance: Vnd, lines: &[WalletLine], sandbox: bool) -> WalletView {
    WalletView {
        balance: balance.get(),
        currency: "VND".into(),
        sandbox,
        movements: lines
            .iter()
            .map(|l| WalletMovement {
                transaction_id: l.transaction_id,
                kind: l.kind.clone(),
                amount: l.amount.get(),
                session_id: l.session_id,
                at: l.at,
            })
            .collect(),
    }
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
    if !app.settings.sandbox_payments {
        return Err(AppError::not_found(
            "sandbox_disabled",
            "Máy chủ này không bật cổng thanh toán thử nghiệm.",
            "The sandbox payment gateway is off on this server.",
        ));
    }
    let idem = match Idempotency::for_driver(&app, d.driver_id, &headers, "/v1/me/wallet/sandbox-topups", &body).await?
    {
        Ok(idem) => idem,
        Err(replayed) => return Ok(replayed),
    };
    let req: SandboxTopup = parse_json(&headers, &body)?;
    if !(1_000..=10_000_000).contains(&req.amount) {
        return Err(AppError::bad_request(
            "invalid_amount",
            "Số tiền nạp thử phải từ 1.000 đến 10.000.000 đồng.",
            "A sandbox top-up must be between 1,000 and 10,000,000 VND.",
        ));
    }
    let entry = Entry::sandbox_topup(d.driver_id, Vnd(req.amount)).map_err(|e| AppError::internal(&e))?;
    // The answer is rendered from the wallet inside the credit's transaction and stored with
    // its key there: a crash after the commit leaves the key answered.
    let sandbox = app.settings.sandbox_payments;
    let answer = |balance: Vnd, lines: &[WalletLine]| {
        serde_json::to_string(&wallet_view(balance, lines, sandbox))
            .map(|json| (StatusCode::CREATED.as_u16(), json))
            .map_err(|e| StoreError::Internal(e.to_string()))
    };
    match app.store.sandbox_topup(d.driver_id, &entry, Some(idem.claim()), &answer, app.clock.now()).await {
        Ok(Some((status, json))) => Ok(Idempotency::stored_answer(status, json)),
        Ok(None) => Err(AppError::internal(&"a keyed top-up without its answer")),
        Err(e) => idem.on_store_error(&app, e).await,
    }
}
