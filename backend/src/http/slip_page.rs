//! A receipt's public page, `/r/{number}?code=…`: what the QR code on a warden's cash slip or
//! on a driver's receipt opens, for people (the driver, an inspector, anyone who scans it),
//! not JSON. Lookups are limited per client address (`app::receipts`). It shows what was paid,
//! where and until when, the plate masked but for its last 3 characters, the warden's badge
//! number (not the name) and the ledger transaction that moved the money. A wrong code reads
//! exactly like an unknown number: "not found".

use std::sync::Arc;

use axum::{
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

use super::{AppState, apps::Apps, prefers_english};
use crate::{
    app::{
        receipts::{Found, SessionReceipt, count_lookup, find},
        wardens::cash::badge,
    },
    domain::{money::Vnd, session::SessionChannel, tariff::LOCAL_TZ},
    store::wardens::ReceiptRow,
};

/// The query: the code printed on the slip, and optionally the language.
#[derive(Debug, Deserialize)]
pub struct SlipQuery {
    code: Option<String>,
    lang: Option<String>,
}

pub use crate::domain::receipt::masked_plate;

fn when(t: chrono::DateTime<chrono::Utc>) -> String {
    t.with_timezone(&LOCAL_TZ).format("%H:%M %d/%m/%Y").to_string()
}

/// `GET /r/{number}?code=…`: a warden's slip (`HK-…`) or a session's receipt (`IP-…`).
pub async fn slip_page(
    State(app): State<AppState>,
    axum::extract::ConnectInfo(super::Peer(peer)): axum::extract::ConnectInfo<super::Peer>,
    axum::Extension(apps): axum::Extension<Arc<Apps>>,
    Path(number): Path<String>,
    Query(q): Query<SlipQuery>,
    headers: HeaderMap,
) -> Response {
    let en = match q.lang.as_deref() {
        Some("en") => true,
        Some("vi") => false,
        _ => prefers_english(&headers),
    };
    let code = q.code.unwrap_or_default();
    if count_lookup(&app, peer.ip()).await.is_err() {
        return page(StatusCode::TOO_MANY_REQUESTS, &apps, en, &number, &code, too_many(en));
    }
    match find(&app, &number, &code).await {
        Ok(Some(Found::Slip(r))) => page(StatusCode::OK, &apps, en, &number, &code, slip(&r, en)),
        Ok(Some(Found::Session(r))) => page(StatusCode::OK, &apps, en, &number, &code, session_receipt(&r, en)),
        Ok(None) => page(StatusCode::NOT_FOUND, &apps, en, &number, &code, not_found(en)),
        Err(e) => {
            tracing::warn!(error = %e.code, "receipt page: the receipt could not be read");
            page(StatusCode::SERVICE_UNAVAILABLE, &apps, en, &number, &code, unavailable(en))
        }
    }
}

fn too_many(en: bool) -> Markup {
    html! {
        h1 { (t(en, "Tra cứu quá nhiều lần", "Too many lookups")) }
        p { (t(en, "Vui lòng thử lại sau 10 phút.", "Please try again in 10 minutes.")) }
    }
}

fn channel_words(c: SessionChannel, en: bool) -> &'static str {
    match c {
        SessionChannel::App => t(en, "Ứng dụng iParking (ví hoặc thẻ)", "The iParking app (wallet or card)"),
        SessionChannel::Sms => t(en, "SMS, trừ vào tài khoản điện thoại", "SMS, charged to the phone balance"),
        SessionChannel::WardenCash => t(en, "Tiền mặt, nhân viên thu hộ", "Cash, taken by a warden"),
        SessionChannel::WardenFloat => t(en, "Tài khoản thanh toán hộ của nhân viên", "A warden's float"),
    }
}

fn session_receipt(r: &SessionReceipt, en: bool) -> Markup {
    let status = if r.active {
        t(en, "Lượt gửi đang có hiệu lực.", "The parking session is running.")
    } else {
        t(en, "Lượt gửi đã kết thúc.", "The parking session has ended.")
    };
    html! {
        h1 { (t(en, "Biên lai gửi xe", "Parking receipt")) }
        p class={ "status " (if r.active { "ok" } else { "warn" }) } { (status) }
        dl class="slip" {
            dt { (t(en, "Số biên lai", "Receipt number")) } dd class="number" { (r.number) }
            dt { (t(en, "Đã trả", "Paid")) } dd class="amount" { (r.charged.display(en)) }
            @if r.refunded.get() > 0 {
                dt { (t(en, "Đã hoàn", "Refunded")) } dd { (r.refunded.display(en)) }
            }
            dt { (t(en, "Điểm đỗ", "Parking point")) }
            dd { (r.point_code) @if let Some((name, street)) = &r.point_name { " · " (name) ", " (street) } }
            dt { (t(en, "Bắt đầu", "Started")) } dd { (when(r.started_at)) }
            dt { (t(en, "Trả đến", "Paid until")) } dd class="until" { (when(r.paid_until)) }
            @if let Some(ended) = r.ended_at {
                dt { (t(en, "Kết thúc", "Ended")) } dd { (when(ended)) }
            }
            dt { (t(en, "Số lượt", "Turns")) } dd { (r.turns) }
            dt { (t(en, "Trả bằng", "Paid by")) } dd class="payment" { (channel_words(r.channel, en)) }
            dt { (t(en, "Biển số", "Plate")) } dd class="plate" { (masked_plate(&r.plate)) }
            dt { (t(en, "Giao dịch sổ cái", "Ledger transactions")) }
            dd class="txn" {
                @for (i, id) in r.transactions.iter().enumerate() { @if i > 0 { ", " } "#" (id) }
            }
        }
        p class="note" {
            (t(en, "Giờ Hà Nội. Biển số chỉ hiện 3 ký tự cuối.", "Hanoi time. Only the plate's last 3 characters are shown."))
        }
    }
}

fn t<'a>(en: bool, vi: &'a str, english: &'a str) -> &'a str {
    if en { english } else { vi }
}

fn slip(r: &ReceiptRow, en: bool) -> Markup {
    let status = if r.applied {
        t(en, "Đã thanh toán cho lượt gửi xe.", "Paid for the parking session.")
    } else {
        t(
            en,
            "Đã thu tiền nhưng chưa áp dụng cho lượt gửi (xe đã được trả trước): bộ phận tài chính xử lý.",
            "Cash taken but not applied to a session (the car was already paid): finance settles it.",
        )
    };
    html! {
        h1 { (t(en, "Biên lai thu hộ", "Parking slip")) }
        p class={ "status " (if r.applied { "ok" } else { "warn" }) } { (status) }
        dl class="slip" {
            dt { (t(en, "Số biên lai", "Slip number")) } dd class="number" { (r.number) }
            dt { (t(en, "Số tiền", "Amount")) } dd class="amount" { (Vnd(r.amount.get()).display(en)) }
            dt { (t(en, "Điểm đỗ", "Parking point")) }
            dd { (r.point_code) " · " (r.point_name) ", " (r.street) }
            dt { (t(en, "Thu lúc", "Taken at")) } dd { (when(r.issued_at)) }
            dt { (t(en, "Trả đến", "Paid until")) } dd class="until" { (when(r.paid_until)) }
            dt { (t(en, "Số lượt", "Turns")) } dd { (r.turns) }
            dt { (t(en, "Trả bằng", "Paid by")) }
            dd class="payment" {
                (if r.by_float { t(en, "Tài khoản thanh toán hộ của nhân viên", "The warden's float") }
                 else { t(en, "Tiền mặt, nhân viên thu hộ", "Cash, taken by the warden") })
            }
            dt { (t(en, "Biển số", "Plate")) } dd class="plate" { (masked_plate(r.plate.as_str())) }
            dt { (t(en, "Số hiệu nhân viên", "Warden's badge")) } dd class="badge" { (badge(r.staff_id)) }
            dt { (t(en, "Giao dịch sổ cái", "Ledger transaction")) }
            dd class="txn" {
                @match r.transaction_id {
                    Some(id) => { "#" (id) }
                    None => { (t(en, "chưa ghi", "not posted yet")) }
                }
            }
        }
        p class="note" {
            (t(en, "Giờ Hà Nội. Biển số chỉ hiện 3 ký tự cuối.", "Hanoi time. Only the plate's last 3 characters are shown."))
        }
    }
}

fn not_found(en: bool) -> Markup {
    html! {
        h1 { (t(en, "Không tìm thấy biên lai", "Slip not found")) }
        p { (t(en, "Không có biên lai với số và mã này. Kiểm tra lại số và mã in trên biên lai.",
               "No slip has this number and code. Check the number and the code printed on the slip.")) }
    }
}

fn unavailable(en: bool) -> Markup {
    html! {
        h1 { (t(en, "Tạm thời không tra được", "Not available right now")) }
        p { (t(en, "Vui lòng thử lại sau ít phút.", "Please try again in a few minutes.")) }
    }
}

fn page(status: StatusCode, apps: &Apps, en: bool, number: &str, code: &str, body: Markup) -> Response {
    let other = if en { "vi" } else { "en" };
    let switch = format!(
        "/r/{}?code={}&lang={other}",
        percent_encoding::utf8_percent_encode(number, percent_encoding::NON_ALPHANUMERIC),
        percent_encoding::utf8_percent_encode(code, percent_encoding::NON_ALPHANUMERIC),
    );
    let markup = html! {
        (DOCTYPE)
        html lang=(if en { "en" } else { "vi" }) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="robots" content="noindex";
                title { "iParking · " (t(en, "Biên lai", "Slip")) }
                link rel="stylesheet" href={ "/assets/" (apps.warden().build()) "/slip.css" };
            }
            body class="public-slip" {
                header { span class="brand" { "iParking" } a class="lang" href=(switch) lang=(other) { (other.to_uppercase()) } }
                main { (body) }
            }
        }
    };
    let mut response = (status, axum::response::Html(markup.into_string())).into_response();
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::CONTENT_SECURITY_POLICY, apps.warden().csp().clone());
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

#[cfg(test)]
mod tests {
    use super::masked_plate;

    #[test]
    fn plates_show_only_their_last_three_characters() {
        assert_eq!(masked_plate("30A12345"), "•••••345");
        assert_eq!(masked_plate("29B1234"), "••••234");
        assert_eq!(masked_plate("AB"), "AB");
    }
}
