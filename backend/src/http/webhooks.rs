//! Webhooks from outside parties: the mobile carriers' SMS gateway.

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
};
use chrono::Duration;
use iparking_mobile_api::{Channel, ErrorBody, PointStatus, QuoteView, SmsDelivery, SmsReply, VehicleClass};
use sha2::{Digest, Sha256};

use super::{
    AppState,
    extract::{Json, Path},
};
use crate::{
    Carrier,
    app::quotes::quote_view,
    domain::{
        ledger::Entry,
        money::Vnd,
        phone::Phone,
        session::SessionChannel,
        sms_command::SmsCommand,
        tariff::{LOCAL_TZ, Line, Priced, Tariff, resolve},
    },
    error::AppError,
    store::{
        StoreError,
        drivers::{NewSession, PricedChange, SessionRow, SmsIncoming, SmsPlan},
    },
};

/// Constant-time comparison: the secret's length and content do not leak through timing.
fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn local_hm(t: chrono::DateTime<chrono::Utc>) -> String {
    t.with_timezone(&LOCAL_TZ).format("%H:%M %d/%m").to_string()
}

fn say(english: bool, vi: String, en: String) -> String {
    if english { en } else { vi }
}

/// A mobile-originated SMS purchase, e.g. `IP25HK 001 30A12345`: starts one turn for the
/// plate at the point, or extends the plate's active SMS session there. Authenticated by the
/// carrier's shared secret (`X-Carrier-Secret`); a repeated delivery of the same message id
/// does nothing again and gets the same reply. Mistakes are answered 200 with a reply that
/// explains them (the carrier sends it back to the driver).
#[utoipa::path(
    post, path = "/webhooks/sms/{carrier}", tag = "webhooks", request_body = SmsDelivery,
    params(("carrier" = String, Path, description = "Carrier name"), ("X-Carrier-Secret" = String, Header, description = "The carrier's shared secret")),
    responses(
        (status = 200, description = "Processed; `reply` goes back to the sender", body = SmsReply),
        (status = 400, description = "Malformed delivery", body = ErrorBody),
        (status = 401, description = "Wrong or missing secret", body = ErrorBody),
        (status = 404, description = "Unknown carrier", body = ErrorBody),
    )
)]
pub async fn sms_delivery(
    State(app): State<AppState>,
    Path(carrier): Path<String>,
    headers: HeaderMap,
    Json(body): Json<SmsDelivery>,
) -> Result<Json<SmsReply>, AppError> {
    let carrier: Carrier = app
        .settings
        .carriers
        .iter()
        .find(|c| c.name == carrier)
        .cloned()
        .ok_or_else(|| AppError::not_found("carrier_not_found", "Không có nhà mạng này.", "No such carrier."))?;
    let secret = headers.get("x-carrier-secret").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !same_secret(secret, &carrier.secret) {
        return Err(AppError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Sai khóa bí mật của nhà mạng.",
            "Wrong carrier secret.",
        ));
    }
    if body.message_id.is_empty() || body.message_id.len() > 100 || body.text.len() > 480 {
        return Err(AppError::bad_request(
            "invalid_body",
            "message_id cần 1–100 ký tự; tin nhắn tối đa 480 ký tự.",
            "message_id needs 1–100 characters; text at most 480.",
        ));
    }
    let sender = match Phone::parse(&body.from) {
        Ok(p) => p,
        Err(e) => return Err(AppError::bad_request(e.code, e.vi, e.en)),
    };
    let msg = SmsIncoming {
        carrier: carrier.name.clone(),
        message_id: body.message_id.clone(),
        sender_hash: hex::encode(Sha256::digest(sender.as_str().as_bytes())),
        sender: sender.as_str().to_owned(),
    };
    let now = app.clock.now();
    let refuse = |reply: String| {
        let app = app.clone();
        let msg = msg.clone();
        async move {
            let reply = app.store.sms_refuse(&msg, &reply, now).await?;
            Ok::<_, AppError>(Json(SmsReply { reply, outcome: "refused".into(), session_id: None, duplicate: false }))
        }
    };
    let cmd = match SmsCommand::parse(&body.text) {
        Ok(c) => c,
        Err(e) => {
            let english = body.text.trim_end().to_uppercase().ends_with(" EN");
            return refuse(say(english, format!("iParking: {}", e.vi), format!("iParking: {}", e.en))).await;
        }
    };
    let en = cmd.english;
    let Some(point) = app.store.point(&cmd.point_code).await? else {
        return refuse(say(
            en,
            format!("iParking: không có điểm đỗ {}. Kiểm tra mã trên biển báo.", cmd.point_code),
            format!("iParking: no parking point {}. Check the code on the signboard.", cmd.point_code),
        ))
        .await;
    };
    // The SMS keyword prices cars (the pilot's channel); other classes use the app.
    let class = VehicleClass::Car;
    if point.status == PointStatus::Closed || !point.vehicle_classes.contains(&class) {
        return refuse(say(
            en,
            format!("iParking: điểm {} không nhận ô tô qua SMS lúc này.", point.code),
            format!("iParking: point {} does not take cars by SMS now.", point.code),
        ))
        .await;
    }
    let book = app.tariffs();
    let pref = crate::app::points::point_ref(&point);
    let Some(tariff) = resolve(&book.tariffs, &pref, class, now).cloned() else {
        return refuse(say(
            en,
            format!("iParking: chưa có biểu giá tại {}.", point.code),
            format!("iParking: no tariff at {}.", point.code),
        ))
        .await;
    };
    let wrong_price = |due: Vnd| match SmsCommand::message_for(due, &point.district_code, &point.code, &cmd.plate) {
        Some(message) => say(
            en,
            format!("iParking: lượt này giá {}. Hãy nhắn {message}.", due.display(false)),
            format!("iParking: this turn costs {}. Send {message}.", due.display(true)),
        ),
        // A price no keyword can carry: never suggest a message that would be refused.
        None => say(
            en,
            format!(
                "iParking: lượt này giá {}, không mua được qua SMS. Hãy dùng ứng dụng iParking.",
                due.display(false)
            ),
            format!("iParking: this turn costs {}, which SMS cannot pay. Use the iParking app.", due.display(true)),
        ),
    };
    // A turn priced 0 (the daily cap or a block already paid) is given for the driver's usual
    // message, whatever price its keyword carries: nothing is charged and the reply says so.
    let ok_reply = |p: &Priced, extended: bool| {
        let verb_vi = if extended { "gia hạn" } else { "đỗ" };
        let verb_en = if extended { "extended" } else { "parked" };
        let head_vi = format!(
            "iParking: xe {} {verb_vi} tại {} ({}) đến {}.",
            cmd.plate.as_str(),
            point.code,
            point.name,
            local_hm(p.until)
        );
        let head_en = format!(
            "iParking: {} {verb_en} at {} ({}) until {}.",
            cmd.plate.as_str(),
            point.code,
            point.name,
            local_hm(p.until)
        );
        if p.total == Vnd::ZERO {
            let (why_vi, why_en) = free_turn_reason(p);
            say(
                en,
                format!("{head_vi} Lượt này miễn phí{why_vi}, không thu phí. Nhắn lại để gia hạn."),
                format!("{head_en} This turn is free{why_en}: nothing charged. Send again to extend."),
            )
        } else {
            say(
                en,
                format!("{head_vi} Phí {}. Nhắn lại để gia hạn.", p.total.display(false)),
                format!("{head_en} Charged {}. Send again to extend.", p.total.display(true)),
            )
        }
    };
    let tariffs = book.clone();
    let decide = |active: Option<&SessionRow>, occupied: i64| -> SmsPlan {
        match active {
            Some(s) if s.point_id != point.id => SmsPlan::Refuse(say(
                en,
                format!("iParking: xe {} đang đỗ tại điểm {}.", s.plate.as_str(), s.point_code),
                format!("iParking: {} is already parked at point {}.", s.plate.as_str(), s.point_code),
            )),
            Some(s) if s.channel != SessionChannel::Sms => SmsPlan::Refuse(say(
                en,
                "iParking: lượt đỗ này được mua qua ứng dụng; hãy gia hạn trong ứng dụng.".into(),
                "iParking: this session was bought in the app; extend it in the app.".into(),
            )),
            Some(s) => {
                let Some(t) = tariffs.get(s.tariff_id) else {
                    return SmsPlan::Refuse("iParking: loi he thong / system error".into());
                };
                match t.price(s.started_at, s.turns, 1, Channel::Sms) {
                    Ok(p) if p.total == cmd.price || p.total == Vnd::ZERO => SmsPlan::Extend(
                        PricedChange {
                            turns: s.turns + 1,
                            paid_until: p.until,
                            expires_at: p.until + Duration::minutes(i64::from(t.grace_minutes)),
                            amount: p.total,
                            entry: Entry::sms_payment(
                                "sms_extend",
                                &carrier.name,
                                point.id,
                                p.total,
                                carrier.share_percent,
                            )
                            .ok()
                            .filter(|e| !e.is_empty()),
                            quote: serde_json::to_string(&quote_view(t, &point.code, class, Channel::Sms, &p, false))
                                .ok(),
                        },
                        ok_reply(&p, true),
                    ),
                    Ok(p) => SmsPlan::Refuse(wrong_price(p.total)),
                    Err(_) => SmsPlan::Refuse(say(
                        en,
                        "iParking: đã đạt thời gian đỗ tối đa.".into(),
                        "iParking: the longest stay has been reached.".into(),
                    )),
                }
            }
            None if occupied >= i64::from(point.capacity) => SmsPlan::Refuse(say(
                en,
                format!("iParking: điểm {} đã hết chỗ.", point.code),
                format!("iParking: point {} is full.", point.code),
            )),
            None => start_plan(&tariff, &point, &cmd, &carrier, &msg, now, class, &wrong_price, &ok_reply),
        }
    };
    let outcome = match app.store.sms_purchase(&msg, point.id, &cmd.plate, &decide, now).await {
        Ok(o) => o,
        // A concurrent delivery of the same message committed first: answer its result.
        Err(StoreError::Conflict(c)) if c == "sms_messages_pkey" => {
            let reply = app.store.sms_refuse(&msg, "", now).await?;
            return Ok(Json(SmsReply { reply, outcome: "duplicate".into(), session_id: None, duplicate: true }));
        }
        Err(e) => return Err(e.into()),
    };
    if !outcome.duplicate {
        let closed: Vec<&SessionRow> = outcome.expired.iter().collect();
        let session: Vec<&SessionRow> = outcome.session.iter().collect();
        let (opened, updated): (&[&SessionRow], &[&SessionRow]) = match outcome.outcome.as_str() {
            "started" => (&session, &[]),
            "extended" => (&[], &session),
            _ => (&[], &[]),
        };
        crate::live::mirror(app.live.as_ref(), opened, updated, &closed).await;
        tracing::info!(carrier = %carrier.name, sms.outcome = %outcome.outcome, session.id = ?outcome.session.as_ref().map(|s| s.id), "SMS purchase");
    }
    Ok(Json(SmsReply {
        reply: outcome.reply,
        outcome: outcome.outcome,
        session_id: outcome.session.map(|s| s.id),
        duplicate: outcome.duplicate,
    }))
}

#[allow(clippy::too_many_arguments)]
fn start_plan(
    tariff: &Tariff,
    point: &crate::store::PointRecord,
    cmd: &SmsCommand,
    carrier: &Carrier,
    msg: &SmsIncoming,
    now: chrono::DateTime<chrono::Utc>,
    class: VehicleClass,
    wrong_price: &dyn Fn(Vnd) -> String,
    ok_reply: &dyn Fn(&Priced, bool) -> String,
) -> SmsPlan {
    let p = match tariff.price(now, 0, 1, Channel::Sms) {
        Ok(p) => p,
        Err(_) => {
            return SmsPlan::Refuse(say(
                cmd.english,
                "iParking: không tính được giá lượt này. Hãy dùng ứng dụng iParking.".into(),
                "iParking: this turn cannot be priced. Use the iParking app.".into(),
            ));
        }
    };
    if p.total == Vnd::ZERO {
        // A stay whose first turn is free (a free tier) cannot be started with an empty
        // ledger entry (the store posts every start); say so, and suggest no keyword.
        return SmsPlan::Refuse(say(
            cmd.english,
            format!(
                "iParking: lượt đầu tại {} lúc này miễn phí nhưng không bắt đầu được qua SMS. Hãy dùng ứng dụng iParking.",
                point.code
            ),
            format!(
                "iParking: the first turn at {} is free now but cannot be started by SMS. Use the iParking app.",
                point.code
            ),
        ));
    }
    if p.total != cmd.price {
        return SmsPlan::Refuse(wrong_price(p.total));
    }
    let Ok(entry) = Entry::sms_payment("sms_start", &carrier.name, point.id, p.total, carrier.share_percent) else {
        return SmsPlan::Refuse("iParking: loi he thong / system error".into());
    };
    let quote: QuoteView = quote_view(tariff, &point.code, class, Channel::Sms, &p, false);
    SmsPlan::Start(
        Box::new(NewSession {
            driver_id: None,
            plate: cmd.plate.clone(),
            vehicle_class: class,
            point_id: point.id,
            tariff_id: tariff.id,
            channel: SessionChannel::Sms,
            started_at: now,
            paid_until: p.until,
            expires_at: p.until + Duration::minutes(i64::from(tariff.grace_minutes)),
            turns: 1,
            amount: p.total,
            quote: serde_json::to_string(&quote).unwrap_or_default(),
            entry,
            notify_phone: Some(msg.sender.clone()),
        }),
        ok_reply(&p, false),
    )
}

/// Why a turn costs nothing, for the reply: the daily cap or a block price is already paid.
fn free_turn_reason(p: &Priced) -> (&'static str, &'static str) {
    if p.lines.iter().any(|l| matches!(l, Line::DailyCapDiscount { .. })) {
        (" (đã đủ mức phí tối đa trong ngày)", " (the daily cap is reached)")
    } else if p.lines.iter().any(|l| matches!(l, Line::BlockDiscount { .. })) {
        (
            " (đã đủ giá trọn gói của khung giờ, như gói qua đêm)",
            " (the block price, such as the overnight block, is paid)",
        )
    } else {
        ("", "")
    }
}
