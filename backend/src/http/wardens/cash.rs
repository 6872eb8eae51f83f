//! Cash (and payments) taken on a driver's behalf, with slips anyone can check.

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
};
use chrono::{DateTime, Duration, Utc};
use iparking_mobile_api::{
    CashPaymentView, Channel, ErrorBody, PointStatus, ReceiptCheckView, ReceiptQuery, ReceiptStatus, ReceiptView,
    WardenExtendSession, WardenPayment, WardenStartSession,
};
use rand::Rng;

use super::super::{
    AppState,
    extract::{Json, Path, Query},
    idempotency::Idempotency,
    input::parse_json,
    views::session_view,
};
use crate::{
    App,
    app::points::point_for,
    app::points::{class_not_allowed, no_tariff, point_ref},
    app::quotes::quote_view,
    app::sessions::requested_turns,
    app::sessions::{priced_extension, tariff_of},
    domain::{ledger::Entry, plate::Plate, tariff::resolve},
    error::AppError,
    live::mirror,
    store::{
        StoreError,
        drivers::{NewSession, SessionRow},
        wardens::{CashContext, CashOutcome, ReceiptRow, ShiftRule},
    },
};

use super::{Applying, Warden, claim_staff};

// ---- cash --------------------------------------------------------------------------------

/// Whether a code read off a slip or a ticket is `stored` (case and surrounding spaces
/// aside). Constant-time enough: the codes are short and random; all bytes are compared
/// anyway. An empty stored code matches nothing.
pub(super) fn same_code(given: &str, stored: &str) -> bool {
    let given = given.trim().to_uppercase();
    !stored.is_empty()
        && given.len() == stored.len()
        && given.bytes().zip(stored.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

pub(super) fn verification_code() -> String {
    // Crockford base32 without I, L, O, U: easy to read off a slip.
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut rng = rand::rng();
    (0..8).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

/// The slip of a cash payment.
pub fn receipt_view(r: &ReceiptRow) -> ReceiptView {
    ReceiptView {
        number: r.number.clone(),
        verification_code: r.verification_code.clone(),
        qr_payload: format!("IPK1|{}|{}", r.number, r.verification_code),
        verify_path: format!("/v1/receipts/{}?code={}", r.number, r.verification_code),
        kind: r.kind.clone(),
        status: if r.applied { ReceiptStatus::Applied } else { ReceiptStatus::Unapplied },
        amount: r.amount.get(),
        turns: r.turns,
        paid_until: r.paid_until,
        plate: r.plate.as_str().to_owned(),
        point_code: r.point_code.clone(),
        point_name: r.point_name.clone(),
        street: r.street.clone(),
        district: r.district.clone(),
        session_id: r.session_id,
        collected_by: r.staff_id,
        collected_by_name: r.staff_name.clone(),
        shift_id: r.shift_id,
        issued_at: r.issued_at,
    }
}

/// What a cash payment came to, for the online routes and sync alike.
pub enum CashResult {
    /// Paid (maybe with flags).
    Paid(Box<CashPaymentView>, Vec<String>),
    /// Recorded in suspense (offline conflict).
    Unapplied(serde_json::Value, Vec<String>),
}

/// `view` as a stored answer with `status`.
pub(super) fn json_answer<T: serde::Serialize>(status: StatusCode, view: &T) -> Result<(u16, String), AppError> {
    serde_json::to_string(view).map(|json| (status.as_u16(), json)).map_err(|e| AppError::internal(&e))
}

/// An answer that cannot be rendered fails the store's transaction (nothing commits).
pub(super) fn render_failed(e: AppError) -> StoreError {
    StoreError::Internal(format!("answer not rendered: {} ({})", e.code, e.en))
}

fn no_open_shift() -> AppError {
    AppError::conflict(
        "no_open_shift",
        "Hãy mở ca trước khi thu tiền (POST /v1/warden/shifts).",
        "Open a shift before taking cash (POST /v1/warden/shifts).",
    )
}

pub(super) fn check_turns(turns: Option<u32>, minutes: Option<u32>) -> Result<(), AppError> {
    let too_many = turns.is_some_and(|t| t > 48) || minutes.is_some_and(|m| m > 48 * 60);
    if too_many {
        return Err(AppError::bad_request(
            "invalid_duration",
            "Tối đa 48 lượt (48 giờ) mỗi lần thu.",
            "At most 48 turns (48 hours) per payment.",
        ));
    }
    Ok(())
}

/// Takes cash for a new session at `at` (online: now, with an open shift; offline: the
/// device time).
pub async fn cash_start(
    app: &App,
    w: &Warden,
    req: &WardenStartSession,
    shift: ShiftRule,
    how: &Applying<'_, CashResult>,
) -> Result<CashResult, AppError> {
    let Applying { at, action_id, idem, render } = *how;
    w.require_cash_role()?;
    let WardenPayment::Cash = req.payment;
    check_turns(req.turns, req.minutes)?;
    let plate = Plate::parse(&req.plate).map_err(AppError::from)?;
    let point = point_for(app, &req.point_code).await?;
    w.require_point(&point)?;
    if point.status == PointStatus::Closed && shift == ShiftRule::OpenRequired {
        return Err(AppError::conflict(
            "point_closed",
            format!("Điểm {} đang tạm đóng.", point.code),
            format!("Point {} is closed.", point.code),
        ));
    }
    let class = req.vehicle_class;
    if !point.vehicle_classes.contains(&class) {
        return Err(class_not_allowed(&point, class));
    }
    let book = app.tariffs();
    let tariff = resolve(&book.tariffs, &point_ref(&point), class, at).ok_or_else(|| no_tariff(&point.code))?;
    let turns = requested_turns(tariff, req.minutes, req.turns)?;
    let priced = tariff.price(at, 0, turns, Channel::Warden).map_err(AppError::from)?;
    let quote = quote_view(tariff, &point.code, class, Channel::Warden, &priced, false);
    let entry = Entry::cash_payment("cash_session_start", w.0.staff_id, point.id, priced.total)
        .map_err(|e| AppError::internal(&e))?;
    let new = NewSession {
        driver_id: None,
        plate,
        vehicle_class: class,
        point_id: point.id,
        tariff_id: tariff.id,
        channel: crate::domain::session::SessionChannel::WardenCash,
        started_at: at,
        paid_until: priced.until,
        expires_at: priced.until + Duration::minutes(i64::from(tariff.grace_minutes)),
        turns,
        amount: priced.total,
        quote: serde_json::to_string(&quote).map_err(|e| AppError::internal(&e))?,
        entry,
        notify_phone: None,
    };
    let ctx = CashContext {
        staff_id: w.0.staff_id,
        shift,
        issued_at: at,
        district_code: point.district_code.clone(),
        verification_code: verification_code(),
        action_id: action_id.map(str::to_owned),
    };
    let now = app.clock.now();
    let answer = |o: &CashOutcome| cash_view(o, now).and_then(render).map_err(render_failed);
    let outcome = app.store.cash_start(&new, point.capacity, &ctx, idem, &answer, now).await?;
    cash_result(app, outcome, now).await
}

/// What a cash outcome comes to (its answer), without effects: rendered in the store's
/// transaction, and again after it.
fn cash_view(outcome: &CashOutcome, now: DateTime<Utc>) -> Result<CashResult, AppError> {
    match outcome {
        CashOutcome::Paid { session, receipt, flags, .. } => Ok(CashResult::Paid(
            Box::new(CashPaymentView { session: session_view(session, now), receipt: receipt_view(receipt) }),
            flags.clone(),
        )),
        CashOutcome::Unapplied { receipt, existing, flags } => Ok(CashResult::Unapplied(
            serde_json::json!({
                "receipt": receipt_view(receipt),
                "existing_session_id": existing.as_ref().map(|s| s.id),
            }),
            flags.clone(),
        )),
        CashOutcome::PlateActive(other) => Err(AppError::conflict(
            "plate_active",
            format!("Xe này đang có lượt đỗ tại điểm {}.", other.point_code),
            format!("This vehicle is already parked (paid) at point {}.", other.point_code),
        )
        .with_details(serde_json::json!({ "point_code": other.point_code, "session_id": other.id }))),
        CashOutcome::PointFull => Err(AppError::conflict(
            "point_full",
            "Điểm đã hết chỗ theo dữ liệu: kiểm tra danh sách xe tại điểm.",
            "The point is full by our records: check the point's roster.",
        )),
        CashOutcome::NoOpenShift => Err(no_open_shift()),
        CashOutcome::NotFound => Err(session_not_found()),
        CashOutcome::Ended(_) => Err(AppError::conflict(
            "session_ended",
            "Lượt đỗ đã kết thúc; hãy thu cho lượt mới.",
            "This parking session has ended; take payment for a new one.",
        )),
        CashOutcome::Refused(e) => Err(AppError::from(e.clone())),
    }
}

async fn cash_result(app: &App, outcome: CashOutcome, now: DateTime<Utc>) -> Result<CashResult, AppError> {
    match &outcome {
        CashOutcome::Paid { session, receipt, expired, historic, .. } => {
            // Mirrored before the answer leaves, so a check on any node sees it at once.
            let closed: Vec<&SessionRow> = expired.iter().collect();
            if *historic {
                mirror(app.live.as_ref(), &[], &[], &closed).await;
            } else if receipt.kind == "start" {
                mirror(app.live.as_ref(), &[session], &[], &closed).await;
            } else {
                mirror(app.live.as_ref(), &[], &[session], &closed).await;
            }
            tracing::info!(
                session.id = session.id,
                receipt.id = receipt.id,
                amount_vnd = receipt.amount.get(),
                "cash payment recorded"
            );
        }
        CashOutcome::Unapplied { receipt, flags, .. } => {
            tracing::warn!(receipt.id = receipt.id, flags = ?flags, "cash recorded in suspense");
        }
        _ => {}
    }
    cash_view(&outcome, now)
}

fn session_not_found() -> AppError {
    AppError::not_found("session_not_found", "Không tìm thấy lượt đỗ này.", "No such parking session.")
}

/// Takes cash for an extension of any active session at a point the warden covers.
pub async fn cash_extend(
    app: &App,
    w: &Warden,
    session_id: i64,
    req: &WardenExtendSession,
    shift: ShiftRule,
    how: &Applying<'_, CashResult>,
) -> Result<CashResult, AppError> {
    let Applying { at, action_id, idem, render } = *how;
    w.require_cash_role()?;
    let WardenPayment::Cash = req.payment;
    check_turns(req.turns, req.minutes)?;
    let session = app.store.session(session_id).await?.ok_or_else(session_not_found)?;
    let point = match app.index().point_by_id(session.point_id) {
        Some(p) => p,
        None => point_for(app, &session.point_code).await?,
    };
    w.require_point(&point)?;
    let tariff = tariff_of(app, &session)?;
    let add = requested_turns(&tariff, req.minutes, req.turns)?;
    let staff_id = w.0.staff_id;
    let price = |row: &SessionRow| {
        priced_extension(&tariff, row, add, Channel::Warden, |point_id, total| {
            Entry::cash_payment("cash_session_extend", staff_id, point_id, total)
        })
    };
    let ctx = CashContext {
        staff_id,
        shift,
        issued_at: at,
        district_code: point.district_code.clone(),
        verification_code: verification_code(),
        action_id: action_id.map(str::to_owned),
    };
    let now = app.clock.now();
    let answer = |o: &CashOutcome| cash_view(o, now).and_then(render).map_err(render_failed);
    let outcome = app.store.cash_extend(session_id, &price, &ctx, idem, &answer, now).await?;
    cash_result(app, outcome, now).await
}

/// The stored answer of an online cash payment. Rendered through a JSON value, as it
/// always was (keys in order: replays of answers stored before stay identical).
fn cash_answer(r: CashResult, status: StatusCode) -> Result<(u16, String), AppError> {
    match r {
        CashResult::Paid(view, _) => {
            json_answer(status, &serde_json::to_value(view).map_err(|e| AppError::internal(&e))?)
        }
        CashResult::Unapplied(..) => Err(AppError::internal(&"an online cash payment cannot be unapplied")),
    }
}

/// A session paid in cash to the warden on the driver's behalf (thanh toán hộ): priced by
/// the tariff, posted from the warden's cash to the point's revenue, with a slip to print.
/// Needs an open shift and an `Idempotency-Key`.
#[utoipa::path(
    post, path = "/v1/warden/sessions", tag = "wardens", request_body = WardenStartSession,
    security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, description = "Unique per payment; retries reuse it")),
    responses(
        (status = 201, description = "Paid; the session and the slip", body = CashPaymentView),
        (status = 400, description = "Bad plate, duration, body; missing Idempotency-Key", body = ErrorBody),
        (status = 403, description = "Outside the assignment, or not a warden", body = ErrorBody),
        (status = 404, description = "Unknown point", body = ErrorBody),
        (status = 409, description = "No open shift, plate already paid, point full or closed", body = ErrorBody),
        (status = 422, description = "Class not allowed, no tariff, too long, key reused", body = ErrorBody),
    )
)]
pub async fn start_cash_session(
    State(app): State<AppState>,
    w: Warden,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let idem = match claim_staff(&app, w.0.staff_id, &headers, "/v1/warden/sessions", &body).await? {
        Ok(idem) => idem,
        Err(replayed) => return Ok(replayed),
    };
    let req: WardenStartSession = parse_json(&headers, &body)?;
    let now = app.clock.now();
    let render = |r: CashResult| cash_answer(r, StatusCode::CREATED);
    let r = cash_start(&app, &w, &req, ShiftRule::OpenRequired, &Applying::online(now, idem.claim(), &render)).await?;
    // The answer was stored with the key in the payment's transaction.
    let (status, json) = render(r)?;
    Ok(Idempotency::stored_answer(status, json))
}

/// An extension of an active session paid in cash to the warden, with its own slip.
#[utoipa::path(
    post, path = "/v1/warden/sessions/{id}/extend", tag = "wardens", request_body = WardenExtendSession,
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "Session id"), ("Idempotency-Key" = String, Header, description = "Unique per payment")),
    responses(
        (status = 200, description = "Extended; the session and the slip", body = CashPaymentView),
        (status = 400, description = "Bad duration, missing Idempotency-Key", body = ErrorBody),
        (status = 403, description = "Outside the assignment, or not a warden", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 409, description = "No open shift; the session has ended", body = ErrorBody),
        (status = 422, description = "Beyond the maximum stay; key reused", body = ErrorBody),
    )
)]
pub async fn extend_cash_session(
    State(app): State<AppState>,
    w: Warden,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let path = format!("/v1/warden/sessions/{id}/extend");
    let idem = match claim_staff(&app, w.0.staff_id, &headers, &path, &body).await? {
        Ok(idem) => idem,
        Err(replayed) => return Ok(replayed),
    };
    let req: WardenExtendSession = parse_json(&headers, &body)?;
    let now = app.clock.now();
    let render = |r: CashResult| cash_answer(r, StatusCode::OK);
    let r =
        cash_extend(&app, &w, id, &req, ShiftRule::OpenRequired, &Applying::online(now, idem.claim(), &render)).await?;
    // The answer was stored with the key in the payment's transaction.
    let (status, json) = render(r)?;
    Ok(Idempotency::stored_answer(status, json))
}

/// Checks a cash slip: the number and the code printed on it. No login needed; a wrong
/// code answers exactly like an unknown number.
#[utoipa::path(
    get, path = "/v1/receipts/{number}", tag = "wardens", params(("number" = String, Path, description = "Receipt number"), ReceiptQuery),
    responses(
        (status = 200, description = "The slip is genuine", body = ReceiptCheckView),
        (status = 404, description = "No such slip (or a wrong code)", body = ErrorBody),
    )
)]
pub async fn get_receipt(
    State(app): State<AppState>,
    Path(number): Path<String>,
    Query(q): Query<ReceiptQuery>,
) -> Result<Json<ReceiptCheckView>, AppError> {
    let not_found = || {
        AppError::not_found(
            "receipt_not_found",
            "Không có biên lai với số và mã kiểm tra này.",
            "No receipt with this number and verification code.",
        )
    };
    if number.len() > 40 || q.code.len() > 16 {
        return Err(not_found());
    }
    let r = app.store.receipt(number.trim()).await?.ok_or_else(not_found)?;
    if !same_code(&q.code, &r.verification_code) {
        return Err(not_found());
    }
    let session = match r.session_id {
        Some(id) => app.store.session(id).await?,
        None => None,
    };
    let now = app.clock.now();
    Ok(Json(ReceiptCheckView {
        number: r.number.clone(),
        status: if r.applied { ReceiptStatus::Applied } else { ReceiptStatus::Unapplied },
        amount: r.amount.get(),
        turns: r.turns,
        plate: r.plate.as_str().to_owned(),
        point_code: r.point_code.clone(),
        point_name: r.point_name.clone(),
        paid_until: r.paid_until,
        session_paid_until: session.as_ref().map(|s| s.paid_until),
        session_active: session.as_ref().is_some_and(|s| s.active && s.expires_at > now),
        issued_at: r.issued_at,
    }))
}
