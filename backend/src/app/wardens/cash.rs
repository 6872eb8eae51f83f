//! Cash taken on a driver's behalf (thanh toán hộ): a new session or an extension, priced
//! by the tariff, posted from the warden's cash to the point's revenue, with a slip anyone
//! can check by its number and code.

use chrono::{DateTime, Duration, Utc};
use iparking_mobile_api::{
    CashPaymentView, Channel, PointStatus, ReceiptCheckView, ReceiptStatus, ReceiptView, WardenExtendSession,
    WardenPayment, WardenStartSession,
};

use super::{Applying, Warden, render_failed, same_code, verification_code};
use crate::{
    App,
    app::{
        points::{class_not_allowed, no_tariff, point_for, point_ref},
        quotes::quote_view,
        sessions::{priced_extension, requested_turns, tariff_of},
        views::session_view,
    },
    domain::{ledger::Entry, plate::Plate, tariff::resolve},
    error::AppError,
    live::mirror,
    store::{
        drivers::{NewSession, SessionRow},
        wardens::{CashContext, CashOutcome, ReceiptRow, ShiftRule},
    },
};

/// The price of extending a session at a point the warden covers, before the driver pays it
/// (channel `warden`): the new turns continue the stay, as the extension will charge them.
pub async fn extension_quote(
    app: &App,
    w: &Warden,
    session_id: i64,
    minutes: Option<u32>,
    turns: Option<u32>,
) -> Result<iparking_mobile_api::QuoteView, AppError> {
    w.require_cash_role()?;
    // The query's rules are the drivers' extension quote's (the same documented query); the
    // payment's own cap (48 turns) is the extension's to enforce.
    let session = app.store.session(session_id).await?.ok_or_else(session_not_found)?;
    let point = match app.index().point_by_id(session.point_id) {
        Some(p) => p,
        None => point_for(app, &session.point_code).await?,
    };
    w.require_point(&point)?;
    if !session.active || session.expires_at <= app.clock.now() {
        return Err(AppError::conflict(
            "session_ended",
            "Lượt đỗ đã kết thúc; hãy thu cho lượt mới.",
            "This parking session has ended; take payment for a new one.",
        ));
    }
    let tariff = tariff_of(app, &session)?;
    let add = requested_turns(&tariff, minutes, turns)?;
    let p = tariff.price(session.started_at, session.turns, add, Channel::Warden).map_err(AppError::from)?;
    Ok(quote_view(&tariff, &session.point_code, session.vehicle_class, Channel::Warden, &p, false))
}

/// The warden's prepaid float: balance and latest movements.
pub async fn float(app: &App, w: &Warden) -> Result<iparking_mobile_api::WardenFloatView, AppError> {
    w.require_cash_role()?;
    let (balance, lines) = app.store.warden_float(w.0.staff_id, 20).await?;
    Ok(iparking_mobile_api::WardenFloatView {
        balance: balance.get(),
        movements: lines
            .into_iter()
            .map(|(transaction_id, kind, amount, at)| iparking_mobile_api::FloatMovement {
                transaction_id,
                kind,
                amount,
                at,
            })
            .collect(),
    })
}

/// A warden's badge number: what slips and their public page show instead of the name.
pub fn badge(staff_id: i64) -> String {
    format!("NV-{staff_id:04}")
}

/// The slip of a cash payment.
pub fn receipt_view(r: &ReceiptRow) -> ReceiptView {
    ReceiptView {
        number: r.number.clone(),
        verification_code: r.verification_code.clone(),
        qr_payload: format!("IPK1|{}|{}", r.number, r.verification_code),
        verify_path: format!("/v1/receipts/{}?code={}", r.number, r.verification_code),
        public_path: format!("/r/{}?code={}", r.number, r.verification_code),
        kind: r.kind.as_str().to_owned(),
        payment: if r.by_float { WardenPayment::Float } else { WardenPayment::Cash },
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
        badge: badge(r.staff_id),
        transaction_id: r.transaction_id,
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

fn no_open_shift() -> AppError {
    AppError::conflict(
        "no_open_shift",
        "Hãy mở ca trước khi thu tiền (POST /v1/warden/shifts).",
        "Open a shift before taking cash (POST /v1/warden/shifts).",
    )
}

/// At most 48 turns (48 hours) per payment.
pub fn check_turns(turns: Option<u32>, minutes: Option<u32>) -> Result<(), AppError> {
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
    let by_float = req.payment == WardenPayment::Float;
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
    let entry = if by_float {
        Entry::float_payment("float_session_start", w.0.staff_id, point.id, priced.total)
    } else {
        Entry::cash_payment("cash_session_start", w.0.staff_id, point.id, priced.total)
    }
    .map_err(|e| AppError::internal(&e))?;
    let new = NewSession {
        driver_id: None,
        plate,
        vehicle_class: class,
        point_id: point.id,
        tariff_id: tariff.id,
        channel: if by_float {
            crate::domain::session::SessionChannel::WardenFloat
        } else {
            crate::domain::session::SessionChannel::WardenCash
        },
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
        by_float,
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
        CashOutcome::FloatShort(balance) => Err(AppError::payment_required(
            "insufficient_float",
            format!("Tài khoản của bạn còn {}: không đủ để trả hộ. Hãy thu tiền mặt.", balance.display(false)),
            format!("Your float holds {}: not enough to pay. Take cash instead.", balance.display(true)),
        )
        .with_details(serde_json::json!({ "balance": balance.get() }))),
    }
}

async fn cash_result(app: &App, outcome: CashOutcome, now: DateTime<Utc>) -> Result<CashResult, AppError> {
    match &outcome {
        CashOutcome::Paid { session, receipt, expired, historic, .. } => {
            // Mirrored before the answer leaves, so a check on any node sees it at once.
            let closed: Vec<&SessionRow> = expired.iter().collect();
            if *historic {
                mirror(app.live.as_ref(), &[], &[], &closed).await;
            } else if receipt.kind == crate::domain::session::PaymentKind::Start {
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
    let by_float = req.payment == WardenPayment::Float;
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
            if by_float {
                Entry::float_payment("float_session_extend", staff_id, point_id, total)
            } else {
                Entry::cash_payment("cash_session_extend", staff_id, point_id, total)
            }
        })
    };
    let ctx = CashContext {
        staff_id,
        shift,
        issued_at: at,
        district_code: point.district_code.clone(),
        verification_code: verification_code(),
        action_id: action_id.map(str::to_owned),
        by_float,
    };
    let now = app.clock.now();
    let answer = |o: &CashOutcome| cash_view(o, now).and_then(render).map_err(render_failed);
    let outcome = app.store.cash_extend(session_id, &price, &ctx, idem, &answer, now).await?;
    cash_result(app, outcome, now).await
}

/// A slip checked by the number and the code printed on it; a wrong code answers exactly
/// like an unknown number.
pub async fn check_receipt(app: &App, number: &str, code: &str) -> Result<ReceiptCheckView, AppError> {
    let not_found = || {
        AppError::not_found(
            "receipt_not_found",
            "Không có biên lai với số và mã kiểm tra này.",
            "No receipt with this number and verification code.",
        )
    };
    if number.len() > 40 || code.len() > 16 {
        return Err(not_found());
    }
    let r = app.store.receipt(number.trim()).await?.ok_or_else(not_found)?;
    if !same_code(code, &r.verification_code) {
        return Err(not_found());
    }
    let session = match r.session_id {
        Some(id) => app.store.session(id).await?,
        None => None,
    };
    let now = app.clock.now();
    Ok(ReceiptCheckView {
        number: r.number.clone(),
        status: if r.applied { ReceiptStatus::Applied } else { ReceiptStatus::Unapplied },
        amount: r.amount.get(),
        turns: r.turns,
        // Masked as on the slip's public page: whoever holds a slip learns no more than it says.
        plate: crate::domain::receipt::masked_plate(r.plate.as_str()),
        point_code: r.point_code.clone(),
        point_name: r.point_name.clone(),
        paid_until: r.paid_until,
        session_paid_until: session.as_ref().map(|s| s.paid_until),
        session_active: session.as_ref().is_some_and(|s| s.active && s.expires_at > now),
        issued_at: r.issued_at,
    })
}
