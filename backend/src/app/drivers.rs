//! Drivers' accounts: phone login with one-time codes, vehicles, the wallet (and its
//! SANDBOX top-ups, for the demo only).

use std::net::IpAddr;

use iparking_mobile_api::{
    AddVehicle as AddVehicleBody, DriverToken, LoggedOutEverywhere, OtpRequest, OtpSent, TokenRequest, VehicleView,
    WalletMovement, WalletView,
};
use rand::Rng;

use crate::{
    App,
    app::{Keyed, keyed},
    auth::token_hash,
    domain::{ledger::Entry, money::Vnd, phone::Phone, plate::Plate},
    error::AppError,
    live::OtpCheck,
    store::drivers::{AddVehicle, IdemClaim, Vehicle, WALLET_ANSWER_LINES, WalletAnswer, WalletLine},
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
pub async fn send_code(app: &App, req: &OtpRequest, peer: IpAddr) -> Result<OtpSent, AppError> {
    let phone = Phone::parse(&req.phone).map_err(AppError::from)?;
    let s = &app.settings;
    let by_ip = app.live.rate_limit(&format!("otp-ip:{peer}"), s.otp_per_ip, s.otp_window).await?;
    let by_phone = app.live.rate_limit(&format!("otp-phone:{}", phone.as_str()), s.otp_per_phone, s.otp_window).await?;
    if !by_ip || !by_phone {
        return Err(AppError::too_many_requests(
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
    Ok(OtpSent { phone: phone.masked(), expires_in_seconds: OTP_TTL_SECS })
}

/// Exchanges a phone number and its one-time code for a bearer token.
pub async fn login(app: &App, req: &TokenRequest) -> Result<DriverToken, AppError> {
    let phone = Phone::parse(&req.phone).map_err(AppError::from)?;
    // Spaces around the code are fine (pasted from the SMS); the document says so.
    let code = req.code.trim_matches(' ');
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AppError::bad_request("invalid_code", "Mã gồm 6 chữ số.", "The code has 6 digits."));
    }
    match app.live.check_otp(phone.as_str(), code).await? {
        OtpCheck::Valid => {}
        OtpCheck::Wrong(left) => {
            return Err(AppError::unauthorized_as(
                "otp_invalid",
                format!("Mã không đúng. Còn {left} lần thử."),
                format!("Wrong code. {left} attempts left."),
            )
            .with_details(serde_json::json!({ "attempts_left": left })));
        }
        OtpCheck::Locked => {
            return Err(AppError::too_many_requests(
                "otp_locked",
                "Nhập sai quá nhiều lần. Hãy yêu cầu mã mới.",
                "Too many wrong codes. Request a new code.",
            ));
        }
        OtpCheck::Missing => {
            return Err(AppError::unauthorized_as(
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
    Ok(DriverToken { token, driver_id })
}

/// A vehicle as its driver sees it.
pub fn vehicle_view(v: Vehicle) -> VehicleView {
    VehicleView {
        id: v.id,
        plate: v.plate.as_str().to_owned(),
        vehicle_class: v.vehicle_class,
        created_at: v.created_at,
    }
}

/// Logs the driver out on every device: every token revoked (in the database, and at once
/// in this node's token cache; other nodes' caches within their few seconds), and the
/// driver's push subscriptions forgotten.
pub async fn logout_everywhere(app: &App, driver_id: i64) -> Result<LoggedOutEverywhere, AppError> {
    let tokens_revoked = app.store.revoke_driver_tokens(driver_id, app.clock.now()).await?;
    app.forget_driver_tokens(driver_id);
    Ok(LoggedOutEverywhere { tokens_revoked })
}

/// The driver's vehicles.
pub async fn vehicles(app: &App, driver_id: i64) -> Result<Vec<VehicleView>, AppError> {
    Ok(app.store.vehicles(driver_id).await?.into_iter().map(vehicle_view).collect())
}

/// Registers a vehicle (at most [`MAX_VEHICLES`] per account).
pub async fn add_vehicle(app: &App, driver_id: i64, req: &AddVehicleBody) -> Result<VehicleView, AppError> {
    let plate = Plate::parse(&req.plate).map_err(AppError::from)?;
    match app.store.add_vehicle(driver_id, &plate, req.vehicle_class, MAX_VEHICLES, app.clock.now()).await? {
        AddVehicle::Added(v) => Ok(vehicle_view(v)),
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

/// Removes a vehicle. Another driver's vehicle is not found, as if it did not exist.
pub async fn remove_vehicle(app: &App, driver_id: i64, id: i64) -> Result<(), AppError> {
    if app.store.remove_vehicle(driver_id, id, app.clock.now()).await? {
        Ok(())
    } else {
        Err(AppError::not_found("vehicle_not_found", "Không có xe này.", "No such vehicle."))
    }
}

/// The wallet's balance and latest movements.
pub async fn wallet(app: &App, driver_id: i64) -> Result<WalletView, AppError> {
    let (balance, lines) = app.store.wallet(driver_id, WALLET_ANSWER_LINES).await?;
    Ok(wallet_view(balance, &lines, app.settings.sandbox_payments))
}

/// A wallet as drivers see it.
pub fn wallet_view(balance: Vnd, lines: &[WalletLine], sandbox: bool) -> WalletView {
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

/// SANDBOX top-ups are for the demo only: off in production, where top-ups go through the
/// card processor.
pub fn require_sandbox(app: &App) -> Result<(), AppError> {
    if app.settings.sandbox_payments {
        Ok(())
    } else {
        Err(AppError::not_found(
            "sandbox_disabled",
            "Máy chủ này không bật cổng thanh toán thử nghiệm.",
            "The sandbox payment gateway is off on this server.",
        ))
    }
}

/// SANDBOX (demo only): credits play money to the wallet. `answer` is rendered from the
/// wallet inside the credit's transaction and stored with the key there (a crash after the
/// commit leaves the key answered); it is returned.
pub async fn sandbox_topup(
    app: &App,
    driver_id: i64,
    amount: i64,
    idem: &IdemClaim,
    answer: &WalletAnswer<'_>,
) -> Result<Keyed<(u16, String)>, AppError> {
    require_sandbox(app)?;
    if !(1_000..=10_000_000).contains(&amount) {
        return Err(AppError::bad_request(
            "invalid_amount",
            "Số tiền nạp thử phải từ 1.000 đến 10.000.000 đồng.",
            "A sandbox top-up must be between 1,000 and 10,000,000 VND.",
        ));
    }
    let entry = Entry::sandbox_topup(driver_id, Vnd(amount)).map_err(|e| AppError::internal(&e))?;
    match keyed(app.store.sandbox_topup(driver_id, &entry, Some(idem), answer, app.clock.now()).await)? {
        Keyed::Done(Some(stored)) => Ok(Keyed::Done(stored)),
        Keyed::Done(None) => Err(AppError::internal(&"a keyed top-up without its answer")),
        Keyed::Taken => Ok(Keyed::Taken),
    }
}
