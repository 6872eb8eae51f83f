//! SMS purchases (docs/sms.md): a message such as `IP25HK 001 30A12345`, delivered by a
//! carrier, starts one turn for the plate at the point or extends the plate's active SMS
//! session there, charged to the phone's balance. Mistakes are answered with a reply that
//! explains them (the carrier sends it back to the driver); a repeated delivery of the same
//! message does nothing again and gets the same reply.

use chrono::{DateTime, Duration, Utc};
use iparking_mobile_api::{Channel, PointStatus, QuoteView, SmsDelivery, SmsReply, VehicleClass};
use sha2::{Digest, Sha256};

use crate::{
    App, Carrier,
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
        PointRecord, StoreError,
        drivers::{NewSession, PricedChange, SessionRow, SmsIncoming, SmsPlan},
    },
};

fn local_hm(t: DateTime<Utc>) -> String {
    t.with_timezone(&LOCAL_TZ).format("%H:%M %d/%m").to_string()
}

fn say(english: bool, vi: String, en: String) -> String {
    if english { en } else { vi }
}

/// One turn an SMS asks for: its tariff, point, command and carrier, the class it prices
/// (cars) and when.
#[derive(Clone, Copy)]
struct Turn<'a> {
    tariff: &'a Tariff,
    point: &'a PointRecord,
    cmd: &'a SmsCommand,
    carrier: &'a Carrier,
    class: VehicleClass,
    now: DateTime<Utc>,
}

/// Applies one delivered message from `carrier` (already authenticated, its fields within
/// their limits) and returns the reply for the sender.
pub async fn purchase(app: &App, carrier: &Carrier, delivery: &SmsDelivery) -> Result<SmsReply, AppError> {
    let sender = match Phone::parse(&delivery.from) {
        Ok(p) => p,
        Err(e) => return Err(AppError::bad_request(e.code, e.vi, e.en)),
    };
    let msg = SmsIncoming {
        carrier: carrier.name.clone(),
        message_id: delivery.message_id.clone(),
        sender_hash: hex::encode(Sha256::digest(sender.as_str().as_bytes())),
        sender: sender.as_str().to_owned(),
    };
    let now = app.clock.now();
    let refuse = |reply: String| {
        let msg = &msg;
        async move {
            let reply = app.store.sms_refuse(msg, &reply, now).await?;
            Ok::<_, AppError>(SmsReply { reply, outcome: "refused".into(), session_id: None, duplicate: false })
        }
    };
    let cmd = match SmsCommand::parse(&delivery.text) {
        Ok(c) => c,
        Err(e) => {
            let english = delivery.text.trim_end().to_uppercase().ends_with(" EN");
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
            None => start_plan(
                &Turn { tariff: &tariff, point: &point, cmd: &cmd, carrier, class, now },
                &msg,
                &wrong_price,
                &ok_reply,
            ),
        }
    };
    let outcome = match app.store.sms_purchase(&msg, point.id, &cmd.plate, &decide, now).await {
        Ok(o) => o,
        // A concurrent delivery of the same message committed first: answer its result.
        Err(StoreError::Conflict(c)) if c == "sms_messages_pkey" => {
            let reply = app.store.sms_refuse(&msg, "", now).await?;
            return Ok(SmsReply { reply, outcome: "duplicate".into(), session_id: None, duplicate: true });
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
    Ok(SmsReply {
        reply: outcome.reply,
        outcome: outcome.outcome,
        session_id: outcome.session.map(|s| s.id),
        duplicate: outcome.duplicate,
    })
}

/// The plan for a message that starts a session: one turn, paid at the keyword's price.
fn start_plan(
    turn: &Turn<'_>,
    msg: &SmsIncoming,
    wrong_price: &dyn Fn(Vnd) -> String,
    ok_reply: &dyn Fn(&Priced, bool) -> String,
) -> SmsPlan {
    let Turn { tariff, point, cmd, carrier, class, now } = *turn;
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
