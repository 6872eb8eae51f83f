//! Refund requests: a driver asks for the wallet's unused balance back (to the cards it came
//! from) or for a disputed session's money; finance approves or rejects with a note.

use iparking_mobile_api::{RefundRequestBody, RefundRequestView};

use super::{note_of, out_of_scope, reader, visible, writer};
use crate::{
    App,
    app::{
        Keyed,
        charges::{sandbox_refunds, submit_refund},
        keyed,
    },
    domain::{
        finance::{RequestKind, RequestStatus},
        money::Vnd,
    },
    error::AppError,
    store::{
        Principal,
        drivers::{Answer, IdemClaim},
        finance::{DecideOutcome, NewRefundRequest, RefundDecision, RefundRequestRow, RequestOutcome},
    },
};

/// A refund request as its driver and finance read it.
pub fn request_view(r: RefundRequestRow) -> RefundRequestView {
    RefundRequestView {
        id: r.id,
        kind: r.kind.as_str().to_owned(),
        amount: r.amount,
        session_id: r.session_id,
        district_code: r.district_code,
        reason: r.reason,
        status: r.status.as_str().to_owned(),
        decided_by: r.decided_by,
        decided_at: r.decided_at,
        decision_note: r.decision_note,
        refund_ids: r.refund_ids,
        to_wallet: r.to_wallet,
        to_cards: r.to_cards,
        created_at: r.created_at,
    }
}

/// A driver's request. Wallet money is held at once, in the request's transaction, where
/// `answer` is stored with the key.
pub async fn request_refund(
    app: &App,
    driver_id: i64,
    req: &RefundRequestBody,
    idem: &IdemClaim,
    answer: &Answer<'_, RefundRequestRow>,
) -> Result<Keyed<RefundRequestView>, AppError> {
    let reason = crate::domain::city::trim_blank(&req.reason);
    if !crate::domain::city::text_fits(&req.reason, 500) {
        return Err(AppError::bad_request(
            "invalid_reason",
            "Cần lý do (1–500 ký tự).",
            "Give a reason (1–500 characters).",
        ));
    }
    if req.amount.is_some_and(|a| a <= 0) {
        return Err(AppError::bad_request(
            "invalid_amount",
            "Số tiền hoàn phải là số nguyên dương (đồng).",
            "A refund must be a positive whole number of đồng.",
        ));
    }
    let kind = match (RequestKind::parse(&req.kind), req.session_id) {
        (Some(kind @ RequestKind::WalletBalance), None) | (Some(kind @ RequestKind::Session), Some(_)) => kind,
        _ => {
            return Err(AppError::bad_request(
                "invalid_kind",
                "Loại yêu cầu: wallet_balance (không kèm session_id) hoặc session (kèm session_id).",
                "The kind is wallet_balance (without session_id) or session (with session_id).",
            ));
        }
    };
    let new = NewRefundRequest {
        driver_id,
        kind,
        session_id: req.session_id,
        amount: req.amount.map(Vnd),
        reason: reason.to_owned(),
        sandbox: sandbox_refunds(app),
    };
    let outcome = match keyed(app.store.create_refund_request(&new, Some(idem), answer, app.clock.now()).await)? {
        Keyed::Done(o) => o,
        Keyed::Taken => return Ok(Keyed::Taken),
    };
    match outcome {
        RequestOutcome::Created(row) => {
            tracing::info!(driver.id = driver_id, request.id = row.id, amount_vnd = row.amount, "refund requested");
            Ok(Keyed::Done(request_view(*row)))
        }
        RequestOutcome::SessionNotFound => {
            Err(AppError::not_found("session_not_found", "Không tìm thấy lượt đỗ này.", "No such parking session."))
        }
        RequestOutcome::TooLarge(most) => Err(AppError::unprocessable(
            if kind == RequestKind::Session { "exceeds_refundable" } else { "insufficient_balance" },
            format!("Chỉ hoàn được tối đa {} đồng.", most.get()),
            format!("At most {} đồng can be refunded.", most.get()),
        )
        .with_details(serde_json::json!({ "refundable": most.get() }))),
        RequestOutcome::NotRefundable => Err(AppError::unprocessable(
            "not_refundable",
            "Khoản này không hoàn được qua ứng dụng (SMS, tiền mặt, hoặc không còn gì để hoàn).",
            "This cannot be refunded through the app (SMS, cash, or nothing left to refund).",
        )),
    }
}

/// A driver's own requests, oldest first.
pub async fn requests_of(app: &App, driver_id: i64) -> Result<Vec<RefundRequestView>, AppError> {
    let rows = app.store.refund_requests(Some(driver_id), None).await?;
    Ok(rows.into_iter().map(request_view).collect())
}

/// A district's staff see the requests about their sessions; wallet refunds are city-wide.
fn request_visible(p: &Principal, r: &RefundRequestRow) -> bool {
    p.is_city_wide() || (r.kind == RequestKind::Session && visible(p, r.district_code.as_deref()))
}

/// Requests waiting for (or decided by) finance, in the caller's scope: `pending` (the
/// default), `approved`, `rejected` or `all`.
pub async fn requests(app: &App, p: &Principal, status: Option<&str>) -> Result<Vec<RefundRequestView>, AppError> {
    reader(p)?;
    let status = match status.unwrap_or("pending") {
        "all" => None,
        s => match RequestStatus::parse(s) {
            Some(s) => Some(s),
            None => {
                return Err(AppError::bad_request(
                    "invalid_status",
                    "Trạng thái là pending, approved, rejected hoặc all.",
                    "The status is pending, approved, rejected or all.",
                ));
            }
        },
    };
    let rows = app.store.refund_requests(None, status).await?;
    Ok(rows.into_iter().filter(|r| request_visible(p, r)).map(request_view).collect())
}

/// Finance's decision on a request, with its note.
pub struct Decision<'a> {
    /// The request.
    pub id: i64,
    /// Approve (the money goes back through the channel it came from) or reject (held
    /// wallet money goes back to the wallet).
    pub approve: bool,
    /// Why.
    pub note: &'a str,
}

/// Decides a request. The answer (the request as decided; card refunds are submitted
/// afterwards and do not change it) is rendered inside the decision's transaction and
/// stored with its key.
pub async fn decide_request(
    app: &App,
    p: &Principal,
    decision: &Decision<'_>,
    idem: &IdemClaim,
    answer: &Answer<'_, RefundRequestRow>,
) -> Result<Keyed<RefundRequestView>, AppError> {
    writer(p)?;
    let (id, approve) = (decision.id, decision.approve);
    let note = note_of(decision.note, "invalid_note")?;
    let not_found =
        || AppError::not_found("refund_request_not_found", "Không có yêu cầu này.", "No such refund request.");
    let r = app.store.refund_request(id).await?.ok_or_else(not_found)?;
    if !request_visible(p, &r) {
        return Err(out_of_scope("yêu cầu này"));
    }
    let decision = RefundDecision { id, approve, staff_id: p.staff_id, note: &note, sandbox: sandbox_refunds(app) };
    let decided = app.store.decide_refund_request(&decision, Some(idem), answer, app.clock.now()).await;
    let outcome = match keyed(decided)? {
        Keyed::Done(o) => o,
        Keyed::Taken => return Ok(Keyed::Taken),
    };
    match outcome {
        DecideOutcome::Decided(row, refunds) => {
            for r in &refunds {
                submit_refund(app, r.id).await;
            }
            tracing::info!(request.id = id, staff.id = p.staff_id, approve, "refund request decided");
            Ok(Keyed::Done(request_view(*row)))
        }
        DecideOutcome::NotFound => Err(not_found()),
        DecideOutcome::AlreadyDecided(row) => Err(AppError::conflict(
            "already_decided",
            "Yêu cầu này đã được quyết định.",
            "This request has already been decided.",
        )
        .with_details(serde_json::json!({ "status": row.status, "decided_by": row.decided_by }))),
    }
}
