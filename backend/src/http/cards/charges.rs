//! Card charges: the answer for a charge in its state (shared by session starts and
//! extensions paid by card), and `GET /v1/me/charges/{id}`.

use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use iparking_mobile_api::{CardChargeView, ErrorBody, RefundView};

use crate::{
    app::{
        Keyed,
        charges::{self, ChargeAnswer},
        views::{refund_view, session_view},
    },
    domain::charge::ChargeStatus,
    error::AppError,
    http::{
        AppState,
        extract::{Driver, Json, Path},
        idempotency::Idempotency,
    },
    store::cards::{ChargePlan, ChargeRow},
};

/// A decline, in words a driver understands.
fn declined(code: &str, charge_id: i64) -> AppError {
    let (vi, en) = match code {
        "insufficient_funds" => ("Thẻ không đủ số dư.", "The card has insufficient funds."),
        "lost_card" | "stolen_card" => {
            ("Thẻ đã bị báo mất; hãy dùng thẻ khác.", "The card was reported lost; use another card.")
        }
        "expired_card" => ("Thẻ đã hết hạn.", "The card has expired."),
        "incorrect_cvc" | "invalid_cvc" => ("Mã CVC không đúng.", "The card's security code is wrong."),
        "authentication_required" => {
            ("Ngân hàng yêu cầu xác thực (3-D Secure).", "The bank requires authentication (3-D Secure).")
        }
        "processing_error" => ("Lỗi xử lý tại ngân hàng; hãy thử lại.", "The bank had a processing error; try again."),
        "do_not_honor" | "generic_decline" | "card_declined" => (
            "Ngân hàng từ chối thẻ; hãy liên hệ ngân hàng hoặc dùng thẻ khác.",
            "The bank declined the card; contact it or use another card.",
        ),
        _ => ("Thẻ bị từ chối.", "The card was declined."),
    };
    AppError::new(StatusCode::PAYMENT_REQUIRED, "card_declined", vi, en)
        .with_details(serde_json::json!({ "decline_code": code, "charge_id": charge_id }))
}

/// The API view of a charge, with its session once paid and its refunds.
async fn charge_view(app: &AppState, c: &ChargeRow, client_secret: Option<String>) -> Result<CardChargeView, AppError> {
    let now = app.clock.now();
    let session = match c.session_id.filter(|_| c.status == ChargeStatus::Succeeded) {
        Some(id) => app.store.session(id).await?.map(|s| session_view(&s, now)),
        None => None,
    };
    let secret = charges::client_secret(app, c, client_secret).await;
    let refunds = app
        .store
        .driver_refunds(c.driver_id)
        .await?
        .iter()
        .filter(|r| r.charge_id == Some(c.id))
        .map(refund_view)
        .collect();
    Ok(CardChargeView {
        id: c.id,
        status: c.status.as_str().to_owned(),
        amount: c.amount.get(),
        purpose: match c.plan {
            ChargePlan::Start { .. } => "session_start".into(),
            ChargePlan::Extend { .. } => "session_extend".into(),
        },
        intent_id: c.intent_id.clone(),
        client_secret: secret,
        session,
        failure_code: c.failure_code.clone(),
        refunds,
        action_deadline: c.action_deadline,
    })
}

/// The response for a charge where [`charges::advance_charge`] left it: the session paid (201 for a
/// start, 200 for an extension), 202 with the charge while it waits, or the refusal in words.
pub async fn charge_response(app: &AppState, answer: ChargeAnswer) -> Result<Response, AppError> {
    match answer {
        ChargeAnswer::Applied { started, session, warnings } => {
            let status = if started { StatusCode::CREATED } else { StatusCode::OK };
            let mut view = session_view(&session, app.clock.now());
            view.warnings = warnings;
            Ok((status, Json(view)).into_response())
        }
        ChargeAnswer::InProgress { charge, client_secret } => {
            let view = charge_view(app, &charge, client_secret).await?;
            Ok((StatusCode::ACCEPTED, Json(view)).into_response())
        }
        ChargeAnswer::Declined { code, charge_id } => Err(declined(&code, charge_id)),
        ChargeAnswer::PaidNotApplied { reason, charge_id, refunds } => {
            let refunds: Vec<RefundView> = refunds.iter().map(refund_view).collect();
            let (vi, en) = match reason.as_str() {
                "plate_active" => ("Xe này đang có lượt đỗ khác.", "This vehicle is already parked."),
                "point_full" => ("Điểm đỗ đã hết chỗ.", "The point is full."),
                "session_ended" => ("Lượt đỗ đã kết thúc.", "The session has ended."),
                "session_changed" => {
                    ("Lượt đỗ đã thay đổi trong lúc thanh toán.", "The session changed during the payment.")
                }
                _ => ("Không thể thực hiện sau khi thanh toán.", "It could no longer be given once paid."),
            };
            Err(AppError::conflict(
                "paid_not_applied",
                format!("{vi} Số tiền đã trả được hoàn lại vào thẻ."),
                format!("{en} The amount paid is refunded to the card."),
            )
            .with_details(serde_json::json!({ "reason": reason, "charge_id": charge_id, "refunds": refunds })))
        }
        ChargeAnswer::Canceled { charge_id, status } => Err(AppError::conflict(
            "charge_canceled",
            "Giao dịch thẻ đã bị hủy; hãy thử lại với một Idempotency-Key mới.",
            "The card payment was cancelled; try again with a new Idempotency-Key.",
        )
        .with_details(serde_json::json!({ "charge_id": charge_id, "status": status.as_str() }))),
    }
}

/// [`charge_response`] for a charge paid under a key claimed with it: a key already taken is
/// answered its first answer.
pub async fn keyed_charge_response(
    app: &AppState,
    idem: &Idempotency,
    answer: Keyed<ChargeAnswer>,
) -> Result<Response, AppError> {
    match answer {
        Keyed::Done(answer) => charge_response(app, answer).await,
        Keyed::Taken => idem.replay_taken(app).await,
    }
}

/// One card charge of the driver: the app polls it after 3-D Secure.
#[utoipa::path(
    get, path = "/v1/me/card-charges/{id}", tag = "drivers", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Charge id")),
    responses(
        (status = 200, description = "The charge", body = CardChargeView),
        (status = 404, description = "No such charge (or another driver's)", body = ErrorBody),
    )
)]
pub async fn get_charge(
    State(app): State<AppState>,
    Driver(d): Driver,
    Path(id): Path<i64>,
) -> Result<Json<CardChargeView>, AppError> {
    let c = app.store.charge(id).await?.filter(|c| c.driver_id == d.driver_id).ok_or_else(|| {
        AppError::not_found("charge_not_found", "Không tìm thấy giao dịch thẻ.", "No such card charge.")
    })?;
    Ok(Json(charge_view(&app, &c, None).await?))
}
