//! Refunds a driver or staff start: closing an account (the wallet back to the cards that
//! topped it up) and a staff member's refund of a disputed session. Card refunds are
//! submitted to the processor after the commit ([`crate::app::charges::submit_refund`]).

use iparking_mobile_api::{StaffRefundRequest, StaffRole};

use crate::{
    App,
    app::{
        Keyed,
        charges::{sandbox_refunds, submit_refund},
        keyed,
    },
    domain::money::Vnd,
    error::AppError,
    store::{
        Principal,
        cards::{CloseAccount, RefundRow, SessionRefund, SessionRefundOrder},
        drivers::{Answer, IdemClaim, SessionRow},
    },
};

/// Closes a driver's account: the wallet balance goes back to the cards that topped it up
/// (newest first), every token is revoked; refused while a session is active. `answer`
/// (the refunds as the transaction left them, and what is left) is stored with the key in
/// the closing transaction; the refunds and what is left are returned.
pub async fn close_account(
    app: &App,
    driver_id: i64,
    idem: &IdemClaim,
    answer: &Answer<'_, (Vec<RefundRow>, Vnd)>,
) -> Result<Keyed<(Vec<RefundRow>, Vnd)>, AppError> {
    let sandbox = sandbox_refunds(app);
    let outcome = match keyed(app.store.close_account(driver_id, sandbox, Some(idem), answer, app.clock.now()).await)? {
        Keyed::Done(o) => o,
        Keyed::Taken => return Ok(Keyed::Taken),
    };
    match outcome {
        CloseAccount::Closed(refunds, remaining) => {
            app.forget_driver_tokens(driver_id);
            for r in &refunds {
                submit_refund(app, r.id).await;
            }
            tracing::info!(driver.id = driver_id, refunds = refunds.len(), "account closed");
            Ok(Keyed::Done((refunds, remaining)))
        }
        CloseAccount::ActiveSessions => Err(AppError::conflict(
            "active_sessions",
            "Hãy kết thúc các lượt đỗ đang chạy trước khi đóng tài khoản.",
            "Stop your active parking sessions before closing the account.",
        )),
        CloseAccount::PaymentInProgress => Err(AppError::conflict(
            "payment_in_progress",
            "Một giao dịch thẻ đang chờ xử lý (ví dụ xác thực 3-D Secure); hãy thử lại sau.",
            "A card payment is still in progress (e.g. 3-D Secure); try again later.",
        )),
        CloseAccount::AlreadyClosed => {
            Err(AppError::conflict("account_closed", "Tài khoản đã đóng.", "The account is already closed."))
        }
    }
}

/// Staff who may refund a session: admin or finance.
pub fn require_refund_staff(p: &Principal) -> Result<(), AppError> {
    if matches!(p.role, StaffRole::Admin | StaffRole::Finance) {
        Ok(())
    } else {
        Err(AppError::forbidden("Cần quyền quản trị hoặc tài chính.", "This action needs the admin or finance role."))
    }
}

/// Staff who may run the payments jobs by hand: city-wide admin or finance.
pub fn require_money_staff(p: &Principal) -> Result<(), AppError> {
    if matches!(p.role, StaffRole::Admin | StaffRole::Finance) && p.district_codes.is_empty() {
        Ok(())
    } else {
        Err(AppError::forbidden(
            "Cần quyền quản trị hoặc tài chính toàn thành phố.",
            "This needs a city-wide admin or finance role.",
        ))
    }
}

/// Refunds part or all of a session (a disputed session): card-paid turns go back to their
/// cards through the processor, wallet-paid ones to the wallet; the reason and the author
/// are kept. `answer` (the session and its new refunds as the transaction left them) is
/// stored with the key there; they are returned.
pub async fn refund_session(
    app: &App,
    p: &Principal,
    id: i64,
    req: &StaffRefundRequest,
    idem: &IdemClaim,
    answer: &Answer<'_, (SessionRow, Vec<RefundRow>)>,
) -> Result<Keyed<(SessionRow, Vec<RefundRow>)>, AppError> {
    require_refund_staff(p)?;
    let reason = crate::domain::city::trim_blank(&req.reason);
    if !crate::domain::city::text_fits(&req.reason, 500) {
        return Err(AppError::bad_request(
            "invalid_reason",
            "Cần lý do hoàn tiền (1–500 ký tự).",
            "Give a refund reason (1–500 characters).",
        ));
    }
    if req.amount <= 0 {
        return Err(AppError::bad_request(
            "invalid_amount",
            "Số tiền hoàn phải là số nguyên dương (đồng).",
            "A refund must be a positive whole number of đồng.",
        ));
    }
    let session = app.store.session(id).await?.ok_or_else(|| {
        AppError::not_found("session_not_found", "Không tìm thấy lượt đỗ này.", "No such parking session.")
    })?;
    if let Some(point) = app.store.point(&session.point_code).await?
        && !p.covers_district(&point.district_code)
    {
        return Err(AppError::forbidden(
            format!("Tài khoản của bạn không quản lý quận {}.", point.district_code),
            format!("Your account does not manage district {}.", point.district_code),
        ));
    }
    let requested_by = format!("staff:{}", p.staff_id);
    let order = SessionRefundOrder { session_id: id, amount: Vnd(req.amount), reason, requested_by: &requested_by };
    let outcome = match keyed(app.store.refund_session(&order, Some(idem), answer, app.clock.now()).await)? {
        Keyed::Done(o) => o,
        Keyed::Taken => return Ok(Keyed::Taken),
    };
    match outcome {
        SessionRefund::Done(row, refunds) => {
            for r in &refunds {
                submit_refund(app, r.id).await;
            }
            tracing::info!(
                session.id = id,
                staff.id = p.staff_id,
                amount_vnd = req.amount,
                "session refunded by staff"
            );
            Ok(Keyed::Done((*row, refunds)))
        }
        SessionRefund::NotFound => {
            Err(AppError::not_found("session_not_found", "Không tìm thấy lượt đỗ này.", "No such parking session."))
        }
        SessionRefund::TooLarge { refundable } => Err(AppError::unprocessable(
            "refund_too_large",
            format!("Chỉ còn có thể hoàn tối đa {}.", refundable.display(false)),
            format!("At most {} can still be refunded.", refundable.display(true)),
        )
        .with_details(serde_json::json!({ "refundable": refundable.get() }))),
        SessionRefund::NotRefundable => Err(AppError::unprocessable(
            "not_refundable_here",
            "Lượt đỗ trả bằng SMS hoặc tiền mặt không hoàn qua đây.",
            "Sessions paid by SMS or cash are not refunded here.",
        )),
    }
}
