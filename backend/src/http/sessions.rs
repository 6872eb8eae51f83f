//! Parking sessions: start, extend, stop, correct the plate, history.

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
};
use chrono::{DateTime, Duration, Utc};
use iparking_mobile_api::{
    Channel, CorrectPlate as CorrectPlateBody, ErrorBody, ExtendSession, PaymentSource, PointStatus, QuoteView,
    SessionListQuery, SessionPurchase, SessionStatus, SessionView, StartSession,
};

use super::{
    AppState, cards,
    drivers::{Driver, Idempotency, Prelude, parse_json},
    extract::{Json, Path, Query},
    points::{invalid, point_for},
    prefers_english,
    tariffs::quote_view,
};
use crate::{
    domain::{
        city::distance_m,
        ledger::Entry,
        money::Vnd,
        plate::Plate,
        tariff::{PointRef, QuoteError, Tariff, local_time_for_people, resolve},
    },
    error::AppError,
    live::mirror,
    store::{
        cards::ChargePlan,
        drivers::{ChangeOutcome, CorrectPlate, NewSession, PricedChange, SessionRow, StartOutcome},
    },
};

/// A plate typo can be fixed this long after the start.
pub const PLATE_CORRECTION_WINDOW_MIN: i64 = 5;
/// Farther than this from the point, the answer carries a warning.
pub const LOCATION_WARNING_M: f64 = 300.0;

/// The API view of a session; the status is computed at `now` (an expired session the
/// expiry job has not closed yet already shows as ended).
pub fn session_view(s: &SessionRow, now: DateTime<Utc>) -> SessionView {
    let active = s.active && s.expires_at > now;
    SessionView {
        id: s.id,
        status: if active { SessionStatus::Active } else { SessionStatus::Ended },
        point_code: s.point_code.clone(),
        plate: s.plate.as_str().to_owned(),
        vehicle_class: s.vehicle_class,
        tariff_id: s.tariff_id,
        channel: s.channel.clone(),
        started_at: s.started_at,
        paid_until: s.paid_until,
        expires_at: s.expires_at,
        turns: s.turns,
        amount_charged: s.amount_charged.get(),
        amount_refunded: s.amount_refunded.get(),
        ended_at: s.ended_at.or((!active).then_some(s.paid_until)),
        end_reason: s.end_reason.clone().or_else(|| (!active).then(|| "expired".to_owned())),
        warnings: Vec::new(),
        purchases: Vec::new(),
    }
}

pub(crate) fn requested_turns(t: &Tariff, minutes: Option<u32>, turns: Option<u32>) -> Result<u32, AppError> {
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
        return Err(super::tariffs::quote_error(QuoteError::ZeroDuration));
    }
    Ok(n)
}

fn insufficient(balance: Vnd, price: Vnd) -> AppError {
    let missing = (price - balance).max(Vnd::ZERO);
    AppError::new(
        StatusCode::PAYMENT_REQUIRED,
        "insufficient_funds",
        format!("Số dư ví không đủ: cần {}, còn thiếu {}.", price.display(false), missing.display(false)),
        format!("Not enough in the wallet: {} needed, {} missing.", price.display(true), missing.display(true)),
    )
    .with_details(serde_json::json!({ "price": price.get(), "balance": balance.get(), "missing": missing.get() }))
}

fn session_not_found() -> AppError {
    AppError::not_found("session_not_found", "Không tìm thấy lượt đỗ này.", "No such parking session.")
}

fn point_closed(code: &str) -> AppError {
    AppError::conflict("point_closed", format!("Điểm {code} đang tạm đóng."), format!("Point {code} is closed."))
}

fn session_ended() -> AppError {
    AppError::conflict(
        "session_ended",
        "Lượt đỗ đã kết thúc; hãy bắt đầu lượt mới.",
        "This parking session has ended; start a new one.",
    )
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
                    Prelude::Charge(charge) => return cards::drive(&app, *charge, Vec::new()).await,
                };
            return start_keyed(&app, &d, &headers, parsed?, idem).await;
        }
    };
    // A wallet start claims its key in the write that starts the session, without a lookup
    // first (one database round trip fewer): a used key fails there and is answered its
    // first answer. A refusal before the write (the point closed since, say) is answered
    // the key's first answer too, when there is one.
    let idem = Idempotency::of_driver(d.driver_id, &headers, "/v1/sessions", &body)?;
    match start_keyed(&app, &d, &headers, req, idem.clone()).await {
        Ok(answer) => Ok(answer),
        Err(refused) => match idem.replay(&app).await? {
            Some(replayed) => Ok(replayed),
            None => Err(refused),
        },
    }
}

/// [`start_session`] once its key is known new, or (a wallet start) is claimed by the write.
async fn start_keyed(
    app: &AppState,
    d: &crate::store::drivers::DriverPrincipal,
    headers: &HeaderMap,
    req: StartSession,
    idem: Idempotency,
) -> Result<Response, AppError> {
    let english = prefers_english(headers);
    let plate = Plate::parse(&req.plate).map_err(invalid)?;
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
        return Err(AppError::unprocessable(
            "vehicle_class_not_allowed",
            format!("Điểm {} không nhận loại xe {}.", point.code, class.as_str()),
            format!("Point {} does not take {} vehicles.", point.code, class.as_str()),
        ));
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
    let pref = PointRef { code: &point.code, street_id: point.street_id, district_code: &point.district_code };
    let tariff = resolve(&book.tariffs, &pref, class, now).ok_or_else(|| {
        AppError::unprocessable(
            "no_tariff",
            format!("Chưa có biểu giá cho loại xe này tại {}.", point.code),
            format!("No tariff prices this vehicle class at {}.", point.code),
        )
    })?;
    let turns = requested_turns(tariff, req.minutes, req.turns)?;
    let priced = tariff.price(now, 0, turns, Channel::App).map_err(super::tariffs::quote_error)?;
    let quote = quote_view(tariff, &point.code, class, Channel::App, &priced, false);
    let mut warnings = Vec::new();
    match (req.lat, req.lon) {
        (Some(lat), Some(lon)) => {
            crate::domain::city::validate_position(lat, lon).map_err(invalid)?;
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
        return cards::pay_by_card(app, idem, d.driver_id, req.card_id, priced.total, plan, warnings).await;
    }
    let entry = Entry::wallet_payment("session_start", d.driver_id, point.id, priced.total)
        .map_err(|e| AppError::internal(&e))?;
    let new = NewSession {
        driver_id: Some(d.driver_id),
        plate,
        vehicle_class: class,
        point_id: point.id,
        tariff_id: tariff.id,
        channel: "app".into(),
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
    let answer = |row: &SessionRow| {
        let mut view = session_view(row, now);
        view.warnings.clone_from(&warnings);
        serde_json::to_string(&view)
            .map(|json| (StatusCode::CREATED.as_u16(), json))
            .map_err(|e| crate::store::StoreError::Internal(e.to_string()))
    };
    let outcome = match app.store.start_session(&new, &point.code, Some(idem.claim()), &answer, now).await {
        Ok(o) => o,
        Err(e) => return idem.on_store_error(app, e).await,
    };
    match outcome {
        StartOutcome::Started(row, expired, (status, json)) => {
            let closed: Vec<&SessionRow> = expired.iter().collect();
            mirror(app.live.as_ref(), &[&row], &[], &closed).await;
            tracing::info!(session.id = row.id, driver.id = d.driver_id, point.code = %row.point_code, amount_vnd = row.amount_charged.get(), "session started");
            Ok(Idempotency::stored_answer(status, json))
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

async fn own_session(app: &AppState, driver_id: i64, id: i64) -> Result<SessionRow, AppError> {
    let s = app.store.session(id).await?.ok_or_else(session_not_found)?;
    // Another driver's session answers exactly like a missing one.
    if s.driver_id != Some(driver_id) {
        return Err(session_not_found());
    }
    Ok(s)
}

fn tariff_of(app: &AppState, s: &SessionRow) -> Result<Tariff, AppError> {
    app.tariffs()
        .get(s.tariff_id)
        .cloned()
        .ok_or_else(|| AppError::internal(&format!("tariff {} of session {} is not loaded", s.tariff_id, s.id)))
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
        Prelude::Charge(charge) => return cards::drive(&app, *charge, Vec::new()).await,
    };
    let req: ExtendSession = parse_json(&headers, &body)?;
    let session = own_session(&app, d.driver_id, id).await?;
    let tariff = tariff_of(&app, &session)?;
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
        let p =
            tariff.price(session.started_at, session.turns, add, Channel::App).map_err(super::tariffs::quote_error)?;
        let quote = quote_view(&tariff, &session.point_code, session.vehicle_class, Channel::App, &p, false);
        let plan = ChargePlan::Extend {
            session_id: session.id,
            turns_before: session.turns,
            turns_after: session.turns + add,
            paid_until: p.until,
            expires_at: p.until + Duration::minutes(i64::from(tariff.grace_minutes)),
            quote: serde_json::to_string(&quote).map_err(|e| AppError::internal(&e))?,
        };
        return cards::pay_by_card(&app, idem, d.driver_id, req.card_id, p.total, plan, Vec::new()).await;
    }
    let driver_id = d.driver_id;
    let price = |row: &SessionRow| -> Result<PricedChange, QuoteError> {
        let p = tariff.price(row.started_at, row.turns, add, Channel::App)?;
        let quote = quote_view(&tariff, &row.point_code, row.vehicle_class, Channel::App, &p, false);
        Ok(PricedChange {
            turns: row.turns + add,
            paid_until: p.until,
            expires_at: p.until + Duration::minutes(i64::from(tariff.grace_minutes)),
            amount: p.total,
            entry: Entry::wallet_payment("session_extend", driver_id, row.point_id, p.total)
                .ok()
                .filter(|e| !e.is_empty()),
            quote: serde_json::to_string(&quote).ok(),
        })
    };
    let answer = |row: &SessionRow| rendered(StatusCode::OK, &session_view(row, now));
    let outcome = match app.store.extend_session(id, d.driver_id, &price, Some(idem.claim()), &answer, now).await {
        Ok(o) => o,
        Err(e) => return idem.on_store_error(&app, e).await,
    };
    match outcome {
        ChangeOutcome::Done(row) => {
            mirror(app.live.as_ref(), &[], &[&row], &[]).await;
            tracing::info!(session.id = row.id, driver.id = d.driver_id, "session extended");
            answer(&row).map(|(status, json)| Idempotency::stored_answer(status, json)).map_err(AppError::from)
        }
        ChangeOutcome::NotFound => Err(session_not_found()),
        ChangeOutcome::Ended(_) => Err(session_ended()),
        ChangeOutcome::InsufficientFunds { balance } => {
            let p =
                tariff.price(session.started_at, session.turns, add, Channel::App).map(|p| p.total).unwrap_or_default();
            Err(insufficient(balance, p))
        }
        ChangeOutcome::Refused(e) => Err(super::tariffs::quote_error(e)),
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
    let session = own_session(&app, d.driver_id, id).await?;
    let tariff = tariff_of(&app, &session)?;
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
    let answer = |row: &SessionRow| rendered(StatusCode::OK, &session_view(row, now));
    let outcome = match app.store.stop_session(id, d.driver_id, &price, Some(idem.claim()), &answer, now).await {
        Ok(o) => o,
        Err(e) => return idem.on_store_error(&app, e).await,
    };
    match outcome {
        ChangeOutcome::Done(row) => {
            mirror(app.live.as_ref(), &[], &[], &[&row]).await;
            // Card-paid turns go back to their cards.
            for r in app.store.session_refunds(row.id).await?.iter().filter(|r| r.status == "pending") {
                cards::submit_refund(&app, r.id).await;
            }
            tracing::info!(
                session.id = row.id,
                driver.id = d.driver_id,
                refund_vnd = row.amount_refunded.get(),
                "session stopped"
            );
            answer(&row).map(|(status, json)| Idempotency::stored_answer(status, json)).map_err(AppError::from)
        }
        ChangeOutcome::Ended(row) => Ok(axum::response::IntoResponse::into_response(Json(session_view(&row, now)))),
        ChangeOutcome::NotFound => Err(session_not_found()),
        ChangeOutcome::InsufficientFunds { .. } => Err(AppError::internal(&"a refund cannot lack funds")),
        ChangeOutcome::Refused(e) => Err(super::tariffs::quote_error(e)),
    }
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
    let plate = Plate::parse(&body.plate).map_err(invalid)?;
    let before = own_session(&app, d.driver_id, id).await?;
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
            Ok(Json(session_view(&row, now)))
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

/// An answer rendered for its key (status, JSON body), stored with the effect.
fn rendered<T: serde::Serialize>(status: StatusCode, view: &T) -> crate::store::StoreResult<(u16, String)> {
    serde_json::to_string(view)
        .map(|json| (status.as_u16(), json))
        .map_err(|e| crate::store::StoreError::Internal(e.to_string()))
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
    let s = own_session(&app, d.driver_id, id).await?;
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
