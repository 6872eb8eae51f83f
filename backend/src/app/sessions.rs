//! Parking sessions bought by drivers in the app: start, extend, stop, correct the plate.
//! Each money-moving call claims its `Idempotency-Key` in the same transaction as its
//! effect, and stores its answer there, rendered by the caller ([`Render`]).

use chrono::{DateTime, Duration, Utc};
use iparking_mobile_api::{Channel, ExtendSession, PaymentSource, PointStatus, QuoteView, StartSession, StopQuote};

use super::{
    Keyed,
    charges::{self, ChargeAnswer},
    keyed,
    points::{class_not_allowed, no_tariff, point_for, point_ref},
    quotes::quote_view,
};
use crate::{
    App,
    domain::{
        city::distance_m,
        ledger::{Entry, Unbalanced},
        money::Vnd,
        plate::Plate,
        session::SessionChannel,
        tariff::{QuoteError, Tariff, local_time_for_people, resolve},
    },
    error::AppError,
    live::mirror,
    store::{
        StoreResult,
        cards::ChargePlan,
        drivers::{
            ChangeOutcome, CorrectPlate, DriverPrincipal, IdemClaim, NewSession, PricedChange, SessionRow, StartOutcome,
        },
    },
};

/// Renders the answer of a session change for its key, inside the transaction that stores
/// both: the session as written, the warnings for the driver, and the time of the call.
pub type Render<'a> = dyn Fn(&SessionRow, &[String], DateTime<Utc>) -> StoreResult<(u16, String)> + Send + Sync + 'a;

/// A start's outcome.
#[derive(Debug)]
pub enum Started {
    /// Paid from the wallet: the answer stored with the key (status, JSON).
    Wallet(u16, String),
    /// Paid by card: where the charge stands.
    ByCard(Box<ChargeAnswer>),
    /// The key was already claimed: nothing was written; answer the key's first answer.
    KeyTaken,
}

/// An extension's outcome.
#[derive(Debug)]
pub enum Changed {
    /// Paid from the wallet: the answer stored with the key (status, JSON).
    Stored(u16, String),
    /// Paid by card: where the charge stands.
    ByCard(Box<ChargeAnswer>),
    /// The key was already claimed: nothing was written; answer the key's first answer.
    KeyTaken,
}

/// A stop's outcome.
#[derive(Debug)]
pub enum Stopped {
    /// Stopped now: the answer stored with the key (status, JSON).
    Stored(u16, String),
    /// It had already ended: answered as it is.
    AlreadyEnded(Box<SessionRow>),
    /// The key was already claimed: nothing was written; answer the key's first answer.
    KeyTaken,
}

/// A plate typo can be fixed this long after the start.
pub const PLATE_CORRECTION_WINDOW_MIN: i64 = 5;
/// Farther than this from the point, the answer carries a warning.
pub const LOCATION_WARNING_M: f64 = 300.0;

/// The turns a driver asked for: exactly one of `minutes` (rounded up to whole turns) or
/// `turns`, and more than none.
pub fn requested_turns(t: &Tariff, minutes: Option<u32>, turns: Option<u32>) -> Result<u32, AppError> {
    let n = match (minutes, turns) {
        (Some(m), None) => t.turns_for_minutes(m),
        (None, Some(n)) => n,
        _ => {
            return Err(AppError::bad_request(
                "invalid_duration",
                "Gửi một trong hai: minutes (số phút) hoặc turns (số lượt).",
                "Give exactly one of minutes or turns.",
            ));
        }
    };
    if n == 0 {
        return Err(AppError::from(QuoteError::ZeroDuration));
    }
    Ok(n)
}

/// 402 for a wallet that cannot pay `price`.
pub fn insufficient(balance: Vnd, price: Vnd) -> AppError {
    let missing = (price - balance).max(Vnd::ZERO);
    AppError::payment_required(
        "insufficient_funds",
        format!("Số dư ví không đủ: cần {}, còn thiếu {}.", price.display(false), missing.display(false)),
        format!("Not enough in the wallet: {} needed, {} missing.", price.display(true), missing.display(true)),
    )
    .with_details(serde_json::json!({ "price": price.get(), "balance": balance.get(), "missing": missing.get() }))
}

/// 404 for a session that is not there, or is another driver's.
pub fn session_not_found() -> AppError {
    AppError::not_found("session_not_found", "Không tìm thấy lượt đỗ này.", "No such parking session.")
}

/// 409 for a point closed (by the city, for works or an event).
pub fn point_closed(code: &str) -> AppError {
    AppError::conflict("point_closed", format!("Điểm {code} đang tạm đóng."), format!("Point {code} is closed."))
}

/// 409 for a change to a session that has ended.
pub fn session_ended() -> AppError {
    AppError::conflict(
        "session_ended",
        "Lượt đỗ đã kết thúc; hãy bắt đầu lượt mới.",
        "This parking session has ended; start a new one.",
    )
}

/// The refund policy: whole turns not yet started are refunded, priced as the difference
/// between the stay bought and the stay used (so caps and tiers stay consistent). A started
/// turn is used; at least one turn is always kept.
pub fn unused_turns_refund(tariff: &Tariff, row: &SessionRow, now: DateTime<Utc>) -> Result<Vnd, QuoteError> {
    let elapsed = (now - row.started_at).num_seconds().max(0) as u64;
    let turn_secs = u64::from(tariff.turn_minutes) * 60;
    let used = u32::try_from(elapsed.div_ceil(turn_secs)).unwrap_or(u32::MAX).max(1);
    if used >= row.turns {
        return Ok(Vnd::ZERO);
    }
    let bought = tariff.price(row.started_at, 0, row.turns, Channel::App)?.total;
    let kept = tariff.price(row.started_at, 0, used, Channel::App)?.total;
    let still_held = row.amount_charged - row.amount_refunded;
    Ok((bought - kept).min(still_held).max(Vnd::ZERO))
}

/// 409 `plate_active`: where and until when only for the driver's own session; for
/// someone else's, only that the plate is parked (where another person's car is, and until
/// when, is theirs to know).
fn plate_active(other: &SessionRow, driver_id: i64, now: DateTime<Utc>) -> AppError {
    if other.driver_id != Some(driver_id) {
        return AppError::conflict(
            "plate_active",
            "Biển số này đã có một lượt đỗ đang chạy.",
            "This plate already has an active parking session.",
        );
    }
    let until = local_time_for_people(other.paid_until, now);
    AppError::conflict(
        "plate_active",
        format!("Xe này đang có lượt đỗ của bạn tại điểm {} đến {until}.", other.point_code),
        format!("You already parked this vehicle at point {} until {until}.", other.point_code),
    )
    .with_details(serde_json::json!({
        "point_code": other.point_code,
        "session_id": other.id,
        "paid_until": other.paid_until,
    }))
}

/// Starts a session for a driver: paid from the wallet in one transaction with its key and
/// its answer, or by card (the charge recorded with the key, then driven). One active
/// session per plate; a full point is refused with the three nearest points that have
/// space.
pub async fn start(
    app: &App,
    d: &DriverPrincipal,
    req: StartSession,
    english: bool,
    claim: &IdemClaim,
    render: &Render<'_>,
) -> Result<Started, AppError> {
    let plate = Plate::parse(&req.plate).map_err(AppError::from)?;
    let point = point_for(app, &req.point_code).await?;
    if point.status == PointStatus::Closed {
        return Err(point_closed(&point.code));
    }
    let class = match req.vehicle_class {
        Some(c) => c,
        None => app
            .store
            .vehicles(d.driver_id)
            .await?
            .into_iter()
            .find(|v| v.plate == plate)
            .map(|v| v.vehicle_class)
            .ok_or_else(|| {
                AppError::bad_request(
                    "vehicle_class_required",
                    "Biển số chưa đăng ký trong tài khoản: hãy cho biết loại xe (vehicle_class).",
                    "This plate is not on your account: give the vehicle_class.",
                )
            })?,
    };
    if !point.vehicle_classes.contains(&class) {
        return Err(class_not_allowed(&point, class));
    }
    let by_card = req.payment == Some(PaymentSource::Card);
    if !by_card && req.card_id.is_some() {
        return Err(AppError::bad_request(
            "invalid_payment",
            "card_id chỉ dùng khi payment là card.",
            "card_id goes with payment card.",
        ));
    }
    let now = app.clock.now();
    let book = app.tariffs();
    let tariff = resolve(&book.tariffs, &point_ref(&point), class, now).ok_or_else(|| no_tariff(&point.code))?;
    let turns = requested_turns(tariff, req.minutes, req.turns)?;
    let priced = tariff.price(now, 0, turns, Channel::App).map_err(AppError::from)?;
    let quote = quote_view(tariff, &point.code, class, Channel::App, &priced, false);
    let mut warnings = Vec::new();
    match (req.lat, req.lon) {
        (Some(lat), Some(lon)) => {
            crate::domain::city::validate_position(lat, lon).map_err(AppError::from)?;
            let d = distance_m((lat, lon), (point.lat, point.lon));
            if d > LOCATION_WARNING_M {
                warnings.push(if english {
                    format!(
                        "You are {d:.0} m from point {} ({}). Check the code on the signboard.",
                        point.code, point.name
                    )
                } else {
                    format!(
                        "Bạn đang cách điểm {} ({}) {d:.0} m. Hãy kiểm tra mã trên biển báo.",
                        point.code, point.name
                    )
                });
            }
        }
        (None, None) => {}
        _ => return Err(AppError::bad_request("invalid_coordinates", "Cần cả lat và lon.", "Give both lat and lon.")),
    }
    if by_card {
        // Paid by card: priced now, the session starts when the payment succeeds (at once,
        // or after 3-D Secure), checked again then.
        let plan = ChargePlan::Start {
            plate: plate.as_str().to_owned(),
            vehicle_class: class,
            point_id: point.id,
            capacity: point.capacity,
            tariff_id: tariff.id,
            started_at: now,
            paid_until: priced.until,
            expires_at: priced.until + Duration::minutes(i64::from(tariff.grace_minutes)),
            turns,
            quote: serde_json::to_string(&quote).map_err(|e| AppError::internal(&e))?,
        };
        let paid = charges::pay_by_card(app, claim, d.driver_id, req.card_id, priced.total, plan, warnings).await?;
        return Ok(match paid {
            Keyed::Done(answer) => Started::ByCard(Box::new(answer)),
            Keyed::Taken => Started::KeyTaken,
        });
    }
    let entry = Entry::wallet_payment("session_start", d.driver_id, point.id, priced.total)
        .map_err(|e| AppError::internal(&e))?;
    let new = NewSession {
        driver_id: Some(d.driver_id),
        plate,
        vehicle_class: class,
        point_id: point.id,
        tariff_id: tariff.id,
        channel: SessionChannel::App,
        started_at: now,
        paid_until: priced.until,
        expires_at: priced.until + Duration::minutes(i64::from(tariff.grace_minutes)),
        turns,
        amount: priced.total,
        quote: serde_json::to_string(&quote).map_err(|e| AppError::internal(&e))?,
        entry,
        notify_phone: None,
    };
    // The answer is rendered inside the start's transaction and stored with its key there.
    let answer = |row: &SessionRow| render(row, &warnings, now);
    let outcome = match keyed(app.store.start_session(&new, &point.code, Some(claim), &answer, now).await)? {
        Keyed::Done(o) => o,
        Keyed::Taken => return Ok(Started::KeyTaken),
    };
    match outcome {
        StartOutcome::Started(row, expired, (status, json)) => {
            let closed: Vec<&SessionRow> = expired.iter().collect();
            mirror(app.live.as_ref(), &[&row], &[], &closed).await;
            tracing::info!(session.id = row.id, driver.id = d.driver_id, point.code = %row.point_code, amount_vnd = row.amount_charged.get(), "session started");
            Ok(Started::Wallet(status, json))
        }
        StartOutcome::PlateActive(other) => Err(plate_active(&other, d.driver_id, now)),
        StartOutcome::PointClosed => Err(point_closed(&point.code)),
        StartOutcome::PointFull => {
            let index = app.index();
            let near = index.nearest(point.lat, point.lon, 3_000.0, 40, Some(class));
            let ids: Vec<i64> = near.iter().map(|h| h.point.id).collect();
            let occupancy = app.live.occupancy(&ids).await.unwrap_or_else(|_| vec![0; ids.len()]);
            let alternatives: Vec<serde_json::Value> = near
                .iter()
                .zip(occupancy)
                .filter(|(h, occ)| h.point.id != point.id && i64::from(h.point.capacity) > *occ)
                .take(3)
                .map(|(h, occ)| {
                    serde_json::json!({
                        "code": h.point.code,
                        "name": h.point.name,
                        "distance_m": (distance_m((point.lat, point.lon), (h.point.lat, h.point.lon)) * 10.0).round() / 10.0,
                        "free_spaces": i64::from(h.point.capacity) - occ,
                    })
                })
                .collect();
            Err(AppError::conflict(
                "point_full",
                format!("Điểm {} đã hết chỗ. Xem các điểm gần đó còn chỗ.", point.code),
                format!("Point {} is full. See the nearby points with space.", point.code),
            )
            .with_details(serde_json::json!({ "alternatives": alternatives })))
        }
        StartOutcome::InsufficientFunds { balance } => Err(insufficient(balance, priced.total)),
    }
}

/// `add` turns continuing a session's stay (hour count, block, cap) at the tariff it was
/// bought with, priced for `channel`, with its receipt and the payment `entry` makes for the
/// point and the amount: an extension in the app or in cash alike.
pub fn priced_extension(
    tariff: &Tariff,
    row: &SessionRow,
    add: u32,
    channel: Channel,
    entry: impl Fn(i64, Vnd) -> Result<Entry, Unbalanced>,
) -> Result<PricedChange, QuoteError> {
    let p = tariff.price(row.started_at, row.turns, add, channel)?;
    let quote = quote_view(tariff, &row.point_code, row.vehicle_class, channel, &p, false);
    Ok(PricedChange {
        turns: row.turns + add,
        paid_until: p.until,
        expires_at: p.until + Duration::minutes(i64::from(tariff.grace_minutes)),
        amount: p.total,
        entry: entry(row.point_id, p.total).ok().filter(|e| !e.is_empty()),
        quote: serde_json::to_string(&quote).ok(),
    })
}

/// The driver's session; another driver's answers exactly like a missing one.
pub async fn own_session(app: &App, driver_id: i64, id: i64) -> Result<SessionRow, AppError> {
    let s = app.store.session(id).await?.ok_or_else(session_not_found)?;
    // Another driver's session answers exactly like a missing one.
    if s.driver_id != Some(driver_id) {
        return Err(session_not_found());
    }
    Ok(s)
}

/// The tariff a session was bought with.
pub fn tariff_of(app: &App, s: &SessionRow) -> Result<Tariff, AppError> {
    app.tariffs()
        .get(s.tariff_id)
        .cloned()
        .ok_or_else(|| AppError::internal(&format!("tariff {} of session {} is not loaded", s.tariff_id, s.id)))
}

/// Extends an active session: the new turns continue the stay (hour count, block, cap) at
/// the tariff the session was bought with. From the wallet, in one transaction with its key
/// and its answer, or by card.
pub async fn extend(
    app: &App,
    d: &DriverPrincipal,
    id: i64,
    req: ExtendSession,
    claim: &IdemClaim,
    render: &Render<'_>,
) -> Result<Changed, AppError> {
    let session = own_session(app, d.driver_id, id).await?;
    let tariff = tariff_of(app, &session)?;
    let add = requested_turns(&tariff, req.minutes, req.turns)?;
    let now = app.clock.now();
    if req.payment != Some(PaymentSource::Card) && req.card_id.is_some() {
        return Err(AppError::bad_request(
            "invalid_payment",
            "card_id chỉ dùng khi payment là card.",
            "card_id goes with payment card.",
        ));
    }
    if req.payment == Some(PaymentSource::Card) {
        if !session.active || session.expires_at <= now {
            return Err(session_ended());
        }
        let p = tariff.price(session.started_at, session.turns, add, Channel::App).map_err(AppError::from)?;
        let quote = quote_view(&tariff, &session.point_code, session.vehicle_class, Channel::App, &p, false);
        let plan = ChargePlan::Extend {
            session_id: session.id,
            turns_before: session.turns,
            turns_after: session.turns + add,
            paid_until: p.until,
            expires_at: p.until + Duration::minutes(i64::from(tariff.grace_minutes)),
            quote: serde_json::to_string(&quote).map_err(|e| AppError::internal(&e))?,
        };
        let paid = charges::pay_by_card(app, claim, d.driver_id, req.card_id, p.total, plan, Vec::new()).await?;
        return Ok(match paid {
            Keyed::Done(answer) => Changed::ByCard(Box::new(answer)),
            Keyed::Taken => Changed::KeyTaken,
        });
    }
    let driver_id = d.driver_id;
    let price = |row: &SessionRow| {
        priced_extension(&tariff, row, add, Channel::App, |point_id, total| {
            Entry::wallet_payment("session_extend", driver_id, point_id, total)
        })
    };
    let answer = |row: &SessionRow| render(row, &[], now);
    let outcome = match keyed(app.store.extend_session(id, d.driver_id, &price, Some(claim), &answer, now).await)? {
        Keyed::Done(o) => o,
        Keyed::Taken => return Ok(Changed::KeyTaken),
    };
    match outcome {
        ChangeOutcome::Done(row) => {
            mirror(app.live.as_ref(), &[], &[&row], &[]).await;
            tracing::info!(session.id = row.id, driver.id = d.driver_id, "session extended");
            let (status, json) = answer(&row)?;
            Ok(Changed::Stored(status, json))
        }
        ChangeOutcome::NotFound => Err(session_not_found()),
        ChangeOutcome::Ended(_) => Err(session_ended()),
        ChangeOutcome::InsufficientFunds { balance } => {
            let p =
                tariff.price(session.started_at, session.turns, add, Channel::App).map(|p| p.total).unwrap_or_default();
            Err(insufficient(balance, p))
        }
        ChangeOutcome::Refused(e) => Err(AppError::from(e)),
    }
}

/// Stops a session and refunds the unused whole turns ([`unused_turns_refund`]): to the
/// wallet, and card-paid turns to their cards. A session that has already ended is answered
/// as it is: stop is safe to retry.
pub async fn stop(
    app: &App,
    d: &DriverPrincipal,
    id: i64,
    claim: &IdemClaim,
    render: &Render<'_>,
) -> Result<Stopped, AppError> {
    let session = own_session(app, d.driver_id, id).await?;
    let tariff = tariff_of(app, &session)?;
    let now = app.clock.now();
    let driver_id = d.driver_id;
    let price = |row: &SessionRow| -> Result<PricedChange, QuoteError> {
        let refund = unused_turns_refund(&tariff, row, now)?;
        let entry = Entry::wallet_refund(driver_id, row.point_id, refund).ok().filter(|e| !e.is_empty());
        Ok(PricedChange {
            turns: row.turns,
            paid_until: row.paid_until,
            expires_at: row.expires_at,
            amount: refund,
            entry,
            quote: None,
        })
    };
    let answer = |row: &SessionRow| render(row, &[], now);
    let outcome = match keyed(app.store.stop_session(id, d.driver_id, &price, Some(claim), &answer, now).await)? {
        Keyed::Done(o) => o,
        Keyed::Taken => return Ok(Stopped::KeyTaken),
    };
    match outcome {
        ChangeOutcome::Done(row) => {
            mirror(app.live.as_ref(), &[], &[], &[&row]).await;
            // Card-paid turns go back to their cards.
            for r in app
                .store
                .session_refunds(row.id)
                .await?
                .iter()
                .filter(|r| r.status == crate::domain::charge::RefundStatus::Pending)
            {
                charges::submit_refund(app, r.id).await;
            }
            tracing::info!(
                session.id = row.id,
                driver.id = d.driver_id,
                refund_vnd = row.amount_refunded.get(),
                "session stopped"
            );
            let (status, json) = answer(&row)?;
            Ok(Stopped::Stored(status, json))
        }
        ChangeOutcome::Ended(row) => Ok(Stopped::AlreadyEnded(Box::new(row))),
        ChangeOutcome::NotFound => Err(session_not_found()),
        ChangeOutcome::InsufficientFunds { .. } => Err(AppError::internal(&"a refund cannot lack funds")),
        ChangeOutcome::Refused(e) => Err(AppError::from(e)),
    }
}

/// The price of extending the driver's active session by `minutes` or `turns`, as
/// [`extend`] would charge it from the wallet: the new turns continue the stay.
pub async fn extension_quote(
    app: &App,
    d: &DriverPrincipal,
    id: i64,
    minutes: Option<u32>,
    turns: Option<u32>,
    english: bool,
) -> Result<QuoteView, AppError> {
    let session = own_session(app, d.driver_id, id).await?;
    if !session.active || session.expires_at <= app.clock.now() {
        return Err(session_ended());
    }
    let tariff = tariff_of(app, &session)?;
    let add = requested_turns(&tariff, minutes, turns)?;
    let p = tariff.price(session.started_at, session.turns, add, Channel::App).map_err(AppError::from)?;
    Ok(quote_view(&tariff, &session.point_code, session.vehicle_class, Channel::App, &p, english))
}

/// What stopping the driver's active session now would refund ([`unused_turns_refund`]).
pub async fn stop_quote(app: &App, d: &DriverPrincipal, id: i64) -> Result<StopQuote, AppError> {
    let session = own_session(app, d.driver_id, id).await?;
    if !session.active {
        return Err(session_ended());
    }
    let tariff = tariff_of(app, &session)?;
    let refund = unused_turns_refund(&tariff, &session, app.clock.now()).map_err(AppError::from)?;
    Ok(StopQuote {
        session_id: session.id,
        refund: refund.get(),
        currency: "VND".into(),
        paid_until: session.paid_until,
    })
}

/// Corrects a mistyped plate within [`PLATE_CORRECTION_WINDOW_MIN`] minutes of the start,
/// once.
pub async fn correct_plate(app: &App, d: &DriverPrincipal, id: i64, plate: &str) -> Result<SessionRow, AppError> {
    let plate = Plate::parse(plate).map_err(AppError::from)?;
    let before = own_session(app, d.driver_id, id).await?;
    let now = app.clock.now();
    let window = Duration::minutes(PLATE_CORRECTION_WINDOW_MIN);
    match app.store.correct_plate(id, d.driver_id, &plate, window, now).await? {
        CorrectPlate::Done(row) => {
            if before.plate != row.plate {
                if let Err(e) = app.live.clear_active_plate(before.plate.as_str(), row.id).await {
                    tracing::warn!(error = %e, "live plate index not updated");
                }
                mirror(app.live.as_ref(), &[], &[&row], &[]).await;
            }
            Ok(row)
        }
        CorrectPlate::NotFound => Err(session_not_found()),
        CorrectPlate::Ended => Err(session_ended()),
        CorrectPlate::TooLate => Err(AppError::unprocessable(
            "correction_window_passed",
            format!("Chỉ sửa biển số một lần, trong {PLATE_CORRECTION_WINDOW_MIN} phút đầu."),
            format!("A plate can be corrected once, within {PLATE_CORRECTION_WINDOW_MIN} minutes of the start."),
        )),
        CorrectPlate::PlateActive(other) => Err(plate_active(&other, d.driver_id, now)),
    }
}
