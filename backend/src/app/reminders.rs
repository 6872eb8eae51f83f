//! Reminders before a session ends: the drivers' Web Push subscriptions, and how one
//! reminder reaches its driver (Web Push to each subscribed browser; else the operator's push
//! webhook; else SMS).

use iparking_mobile_api::{PushKeyView, PushSubscriptionBody, PushSubscriptionView};

use crate::{
    App,
    domain::{phone::Phone, session::SessionChannel},
    error::AppError,
    push::{Delivery, REMINDER_TTL_SECS, SubscriptionError},
    store::drivers::{NewPushSubscription, SessionRow},
};

/// Most browsers one driver gets reminders on (the oldest subscription goes).
pub const MAX_PUSH_SUBSCRIPTIONS: usize = 10;

fn push_disabled() -> AppError {
    AppError::not_found(
        "push_disabled",
        "Máy chủ này chưa bật thông báo đẩy; nhắc giờ được gửi bằng SMS.",
        "Push notifications are not configured on this server; reminders go by SMS.",
    )
}

/// The server's VAPID public key, for the app's `pushManager.subscribe`.
pub fn push_key(app: &App) -> Result<PushKeyView, AppError> {
    let push = app.web_push.as_ref().ok_or_else(push_disabled)?;
    Ok(PushKeyView { public_key: push.public_key().to_owned() })
}

/// Stores the browser's subscription for the driver (the same endpoint again replaces it).
pub async fn subscribe(
    app: &App,
    driver_id: i64,
    body: &PushSubscriptionBody,
) -> Result<PushSubscriptionView, AppError> {
    let push = app.web_push.as_ref().ok_or_else(push_disabled)?;
    let lang = match body.lang.as_deref() {
        None | Some("vi") => "vi",
        Some("en") => "en",
        Some(_) => {
            return Err(AppError::bad_request(
                "invalid_lang",
                "Ngôn ngữ phải là vi hoặc en.",
                "The language must be vi or en.",
            ));
        }
    };
    push.check_subscription(&body.endpoint, &body.keys.p256dh, &body.keys.auth).map_err(|e| match e {
        // The reason is in English only: the Vietnamese message says what is needed instead.
        SubscriptionError::Endpoint(why) => AppError::bad_request(
            "invalid_push_endpoint",
            "Địa chỉ nhận thông báo không hợp lệ: cần địa chỉ https của dịch vụ thông báo của trình duyệt.",
            format!("The push endpoint is not valid ({why})."),
        ),
        SubscriptionError::Keys(why) => AppError::bad_request(
            "invalid_push_keys",
            "Khóa nhận thông báo không hợp lệ: cần khóa P-256 và mã bí mật 16 byte của trình duyệt.",
            format!("The push keys are not valid ({why})."),
        ),
    })?;
    let sub = NewPushSubscription { endpoint: &body.endpoint, p256dh: &body.keys.p256dh, auth: &body.keys.auth, lang };
    let id = app.store.save_push_subscription(driver_id, &sub, MAX_PUSH_SUBSCRIPTIONS, app.clock.now()).await?;
    Ok(PushSubscriptionView { id, lang: lang.to_owned() })
}

/// The driver's subscriptions.
pub async fn subscriptions(app: &App, driver_id: i64) -> Result<Vec<PushSubscriptionView>, AppError> {
    Ok(app
        .store
        .push_subscriptions(driver_id)
        .await?
        .into_iter()
        .map(|s| PushSubscriptionView { id: s.id, lang: s.lang })
        .collect())
}

/// Removes one of the driver's subscriptions (another driver's is not found).
pub async fn unsubscribe(app: &App, driver_id: i64, id: i64) -> Result<(), AppError> {
    if app.store.remove_push_subscription(driver_id, id).await? {
        Ok(())
    } else {
        Err(AppError::not_found(
            "push_subscription_not_found",
            "Không có đăng ký nhận thông báo này.",
            "No such push subscription.",
        ))
    }
}

/// How a reminder went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reminded {
    /// Web Push accepted it for this many browsers.
    WebPush(usize),
    /// The operator's push webhook took it.
    Webhook,
    /// Sent by SMS.
    Sms,
}

/// Reminds the driver of `s` that its paid time ends at `until` (Hanoi time, for people):
/// Web Push to every browser the driver subscribed (a subscription the push service
/// dropped is forgotten); when none took it, the operator's push webhook; else SMS to
/// `phone`.
pub async fn remind(app: &App, s: &SessionRow, phone: &Phone, until: &str) -> Result<Reminded, String> {
    let by_sms = s.channel == SessionChannel::Sms;
    if let (Some(push), Some(driver_id), false) = (&app.web_push, s.driver_id, by_sms) {
        let subs = app.store.push_subscriptions(driver_id).await.map_err(|e| e.to_string())?;
        // Every browser at once: a slow push service does not hold up the others.
        let mut sends = tokio::task::JoinSet::new();
        for sub in subs {
            let (push, payload) = (push.clone(), push_payload(s, until, &sub.lang));
            sends.spawn(async move {
                let delivery = push.send(&sub, payload.as_bytes(), REMINDER_TTL_SECS).await;
                (sub, delivery)
            });
        }
        let mut accepted = 0;
        while let Some(Ok((sub, delivery))) = sends.join_next().await {
            match delivery {
                Delivery::Accepted => accepted += 1,
                Delivery::Gone => {
                    tracing::info!(subscription.id = sub.id, "push subscription gone: forgotten");
                    if let Err(e) = app.store.forget_push_subscription(sub.id).await {
                        tracing::warn!(error = %e, "forgetting a push subscription failed");
                    }
                }
                Delivery::Failed(why) => tracing::warn!(subscription.id = sub.id, error = %why, "push not delivered"),
            }
        }
        if accepted > 0 {
            return Ok(Reminded::WebPush(accepted));
        }
    }
    let text = reminder_text(s.plate.as_str(), &s.point_code, until, by_sms);
    if let (Some(webhook), Some(driver_id), false) = (&app.push, s.driver_id, by_sms) {
        match webhook.notify(driver_id, s.id, &text).await {
            Ok(()) => return Ok(Reminded::Webhook),
            Err(e) => tracing::warn!(session.id = s.id, error = %e, "push webhook failed: reminding by SMS"),
        }
    }
    app.sms.send(phone, &text).await.map_err(|e| e.to_string())?;
    Ok(Reminded::Sms)
}

/// The Web Push message: what the app's service worker shows, in the driver's language.
fn push_payload(s: &SessionRow, until: &str, lang: &str) -> String {
    let (title, body) = if lang == "en" {
        (
            "Your parking ends soon".to_owned(),
            format!("{} at {}: paid until {until}. Open iParking to extend.", s.plate.as_str(), s.point_code),
        )
    } else {
        (
            "Sắp hết giờ đỗ xe".to_owned(),
            format!("Xe {} tại {}: hết giờ lúc {until}. Mở iParking để gia hạn.", s.plate.as_str(), s.point_code),
        )
    };
    serde_json::json!({
        "kind": "session_ending",
        "session_id": s.id,
        "title": title,
        "body": body,
        "url": format!("/#/sessions/{}", s.id),
    })
    .to_string()
}

/// The SMS reminder's words (ASCII, one SMS): where and when the paid time ends, and how to
/// extend: by SMS for a session bought by SMS (the keyword with the price left to the
/// driver), else in the app.
pub fn reminder_text(plate: &str, point_code: &str, until: &str, by_sms: bool) -> String {
    let how = if by_sms {
        let number = &point_code[point_code.trim_end_matches(|c: char| c.is_ascii_digit()).len()..];
        let district = &point_code[..point_code.len() - number.len()];
        format!("nhan IP<gia>{district} {number} {plate} de gia han")
    } else {
        "mo ung dung iParking de gia han".to_owned()
    };
    format!("iParking: xe {plate} tai {point_code} het gio luc {until}; {how}.")
}
