//! The finance dashboard at `/finance` (`docs/finance.md`, "Dashboard"): server-rendered
//! HTML over the finance service layer ([`super::finance`]), every asset served by the binary,
//! plain forms that work without JavaScript.
//!
//! - Vietnamese first; `?lang=en` (or `?lang=vi`) switches and is remembered in a cookie.
//! - Login with username and password (role `finance`, or `admin` read only), limited like the
//!   wardens' logins (`app::staff::password_login`). The staff token lives in the
//!   `iparking_finance` cookie (`HttpOnly`, `SameSite=Strict`, `Path=/finance`); logout (a
//!   POST; `GET /finance/logout` only shows the button) revokes it.
//! - Every POST must come from our own pages ([`post_allowed`]: Fetch Metadata and `Origin`,
//!   as OWASP's CSRF cheat sheet has it), else 403; `SameSite` is not the only guard.
//! - Every interpolated string goes through [`esc`]; pages carry a strict
//!   `Content-Security-Policy` (no script at all).
//! - Errors are HTML pages (`text/html`), which the JSON error middleware lets through.

use std::fmt::Write as _;

use axum::{
    Router,
    body::Bytes,
    extract::{ConnectInfo, Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use chrono::{DateTime, Datelike, Months, NaiveDate, Utc};
use iparking_mobile_api::{
    ClosePeriod, DiscrepancyView, PeriodView, ReconciliationQuery, ReconciliationReport, RevenueChannel, RevenueQuery,
    RevenueReport, RevenueRow, RevenueSums, StaffRole,
};

use super::{AppState, csv::csv_response};
use crate::app::finance::{
    periods::{close_period, period},
    reconciliation::{discrepancies_csv, reconciliation, resolve_discrepancy},
    revenue::{self, revenue_report},
};
use crate::app::staff::password_login;
use crate::{App, auth::token_hash, domain::tariff::LOCAL_TZ, error::AppError, store::Principal};

/// The session cookie (a staff token).
pub const SESSION_COOKIE: &str = "iparking_finance";
/// The language cookie (`vi` or `en`).
pub const LANG_COOKIE: &str = "iparking_finance_lang";
/// The device name of dashboard tokens.
const DEVICE: &str = "finance-dashboard";
/// Longest form body read.
const FORM_MAX: usize = 16 * 1024;

const CSS: &str = include_str!("finance_web.css");

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// The dashboard's routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/finance", get(revenue_page))
        .route("/finance/", get(|| async { see_other("/finance") }))
        .route("/finance/login", get(login_page).post(login_submit))
        .route("/finance/logout", get(logout_page).post(logout))
        .route("/finance/revenue.csv", get(revenue_csv))
        .route("/finance/streets/{id}", get(street_page))
        .route("/finance/reconciliation", get(reconciliation_page))
        .route("/finance/reconciliation.csv", get(reconciliation_csv))
        .route("/finance/discrepancies/{id}/resolve", post(resolve_submit))
        .route("/finance/periods", get(period_index))
        .route("/finance/periods/{month}", get(period_page))
        .route("/finance/periods/{month}/close", post(close_submit))
        .route("/finance/assets/finance.css", get(stylesheet))
}

// ---- pure helpers ------------------------------------------------------------------------

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole number with `.` between thousands: `1250000` → `1.250.000`.
pub fn group_thousands(v: i64) -> String {
    crate::domain::money::group_digits(v, '.')
}

/// An amount of VND: `1.250.000 ₫`.
pub fn money(v: i64) -> String {
    format!("{} ₫", group_thousands(v))
}

/// An optional amount (`—` when there is none).
fn money_opt(v: Option<i64>) -> String {
    v.map_or_else(|| "—".to_owned(), money)
}

/// One horizontal bar of a chart, in pixels from the left of the bar area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bar {
    /// Left edge.
    pub x: u32,
    /// Width.
    pub width: u32,
}

/// Scales values to bars in an area `width` pixels wide. Returns the zero baseline and one bar
/// per value: the span from the smallest (or 0) to the largest (or 0) value fills the area,
/// positive bars grow right of the baseline, negative ones left. A value other than zero
/// gets at least one pixel.
pub fn scale_bars(values: &[i64], width: u32) -> (u32, Vec<Bar>) {
    let lo = values.iter().copied().min().unwrap_or(0).min(0);
    let hi = values.iter().copied().max().unwrap_or(0).max(0);
    let span = i128::from(hi) - i128::from(lo);
    if span == 0 || width == 0 {
        return (0, values.iter().map(|_| Bar { x: 0, width: 0 }).collect());
    }
    let w = i128::from(width);
    let at = |v: i64| -> u32 {
        let px = (i128::from(v) - i128::from(lo)) * w / span;
        u32::try_from(px.clamp(0, w)).unwrap_or(width)
    };
    let base = at(0);
    let bars = values
        .iter()
        .map(|&v| {
            let end = at(v);
            let (mut x, mut bw) = if end >= base { (base, end - base) } else { (end, base - end) };
            if v != 0 && bw == 0 {
                bw = 1;
                if v < 0 && x > 0 {
                    x -= 1;
                } else if v > 0 && x + 1 > width {
                    x = width - 1;
                }
            }
            Bar { x, width: bw }
        })
        .collect();
    (base, bars)
}

/// An inline SVG bar chart of `(label, value)` rows, values shown as money.
pub fn bar_chart(title: &str, rows: &[(String, i64)]) -> String {
    const LABEL_W: u32 = 200;
    const AREA_W: u32 = 460;
    const VALUE_W: u32 = 160;
    const ROW_H: u32 = 30;
    let values: Vec<i64> = rows.iter().map(|r| r.1).collect();
    let (base, bars) = scale_bars(&values, AREA_W);
    let width = LABEL_W + AREA_W + VALUE_W;
    let height = ROW_H * u32::try_from(rows.len()).unwrap_or(0) + 10;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {width} {height}\" \
         width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"{t}\"><title>{t}</title>",
        t = esc(title)
    );
    for (i, ((label, value), bar)) in rows.iter().zip(&bars).enumerate() {
        let y = u32::try_from(i).unwrap_or(0) * ROW_H + 5;
        let class = if *value < 0 { "bar neg" } else { "bar" };
        let _ = write!(
            s,
            "<g><text class=\"label\" x=\"{lx}\" y=\"{ty}\" text-anchor=\"end\">{label}</text>\
             <rect class=\"{class}\" x=\"{bx}\" y=\"{by}\" width=\"{bw}\" height=\"20\" rx=\"2\"/>\
             <text class=\"value\" x=\"{vx}\" y=\"{ty}\">{value}</text></g>",
            lx = LABEL_W - 10,
            ty = y + 15,
            label = esc(label),
            bx = LABEL_W + bar.x,
            by = y,
            bw = bar.width,
            vx = LABEL_W + AREA_W + 10,
            value = esc(&money(*value)),
        );
    }
    if values.iter().any(|v| *v < 0) {
        let x = LABEL_W + base;
        let _ = write!(s, "<line class=\"axis\" x1=\"{x}\" y1=\"0\" x2=\"{x}\" y2=\"{height}\"/>");
    }
    s.push_str("</svg>");
    s
}

/// Percent-encodes a query component (everything but the unreserved characters).
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'+' {
            out.push(b' ');
        } else if b == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex_val(bytes[i + 1]), hex_val(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 2;
        } else {
            out.push(b);
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Parses `application/x-www-form-urlencoded` (form bodies and query strings).
pub fn parse_urlencoded(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().trim_matches('"').to_owned())
}

/// Whether a POST comes from our own pages, by OWASP's CSRF cheat sheet (a Fetch Metadata
/// resource isolation policy, then Origin verification):
/// - `Sec-Fetch-Site`, when sent, must be `same-origin`, or `none` (the user's own action,
///   e.g. a reload). `same-site` is refused too: a sibling subdomain is another site here.
/// - `Origin`, when sent, must name this host ([`origin_allowed`]).
/// - One of the two must be sent. Browsers send `Origin` with every form POST (and
///   current ones `Sec-Fetch-Site` too), so a POST with neither comes from no page of ours.
pub fn post_allowed(headers: &HeaderMap) -> bool {
    let fetch_site = headers.get("sec-fetch-site");
    if let Some(site) = fetch_site {
        let Ok(site) = site.to_str() else { return false };
        if !(site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none")) {
            return false;
        }
    }
    match headers.get(header::ORIGIN) {
        Some(_) => origin_allowed(headers),
        None => fetch_site.is_some(),
    }
}

/// Whether the request's `Origin` names the host of the request (`Host`), default ports
/// aside. `Origin: null` never matches, and neither does a missing `Origin`.
pub fn origin_allowed(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else { return false };
    let (Ok(origin), Some(host)) = (origin.to_str(), headers.get(header::HOST).and_then(|h| h.to_str().ok())) else {
        return false;
    };
    let Some((scheme, authority)) = origin.split_once("://") else { return false };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => "80",
        "https" => "443",
        _ => return false,
    };
    let with_port = |a: &str| -> String {
        let a = a.trim().to_ascii_lowercase();
        // An IPv6 literal's colons are inside brackets.
        let has_port = a.rsplit_once(':').is_some_and(|(h, p)| !p.is_empty() && !h.ends_with(':') && !p.contains(']'));
        if has_port { a } else { format!("{a}:{default_port}") }
    };
    !authority.contains('/') && with_port(authority) == with_port(host)
}

/// Where to go after login: a dashboard path only (never another site).
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if (n == "/finance" || n.starts_with("/finance?") || n.starts_with("/finance/"))
                && !n.contains("//")
                && !n.contains('\\')
                && !n.starts_with("/finance/login")
                && !n.starts_with("/finance/logout")
                && n.chars().all(|c| !c.is_control()) =>
        {
            n.to_owned()
        }
        _ => "/finance".to_owned(),
    }
}

/// A calendar month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Month {
    first: NaiveDate,
}

impl Month {
    /// From `YYYY-MM`.
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 7 || b[4] != b'-' || !b.iter().enumerate().all(|(i, c)| i == 4 || c.is_ascii_digit()) {
            return None;
        }
        let year: i32 = s[..4].parse().ok()?;
        let month: u32 = s[5..].parse().ok()?;
        if year < 1970 {
            return None;
        }
        NaiveDate::from_ymd_opt(year, month, 1).map(|first| Self { first })
    }

    /// The month of a day.
    pub fn of(day: NaiveDate) -> Self {
        Self { first: day.with_day(1).unwrap_or(day) }
    }

    /// First day.
    pub fn first(self) -> NaiveDate {
        self.first
    }

    /// Last day.
    pub fn last(self) -> NaiveDate {
        self.next().first.pred_opt().unwrap_or(self.first)
    }

    /// The month before.
    pub fn prev(self) -> Self {
        Self { first: self.first.checked_sub_months(Months::new(1)).unwrap_or(self.first) }
    }

    /// The month after.
    pub fn next(self) -> Self {
        Self { first: self.first.checked_add_months(Months::new(1)).unwrap_or(self.first) }
    }

    /// `YYYY-MM`.
    pub fn key(self) -> String {
        self.first.format("%Y-%m").to_string()
    }

    fn label(self, lang: Lang) -> String {
        match lang {
            Lang::Vi => format!("tháng {}", self.first.format("%m/%Y")),
            Lang::En => self.first.format("%B %Y").to_string(),
        }
    }
}

// ---- language ----------------------------------------------------------------------------

/// The page language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// Vietnamese (the default).
    Vi,
    /// English.
    En,
}

impl Lang {
    fn t(self, vi: &'static str, en: &'static str) -> &'static str {
        match self {
            Lang::Vi => vi,
            Lang::En => en,
        }
    }

    fn code(self) -> &'static str {
        self.t("vi", "en")
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "vi" => Some(Lang::Vi),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    fn day(self, d: NaiveDate) -> String {
        d.format(self.t("%d/%m/%Y", "%Y-%m-%d")).to_string()
    }

    fn time(self, t: DateTime<Utc>) -> String {
        t.with_timezone(&LOCAL_TZ).format(self.t("%H:%M %d/%m/%Y", "%Y-%m-%d %H:%M")).to_string()
    }
}

fn channel_label(c: RevenueChannel, lang: Lang) -> &'static str {
    match c {
        RevenueChannel::Sms => lang.t("SMS (tài khoản điện thoại)", "SMS (phone balance)"),
        RevenueChannel::Wallet => lang.t("Ví iParking", "iParking wallet"),
        RevenueChannel::Card => lang.t("Thẻ (tài xế trả)", "Card (paid by driver)"),
        RevenueChannel::WardenCash => lang.t("Tiền mặt (thanh toán hộ)", "Cash via warden"),
        RevenueChannel::Adjustment => lang.t("Điều chỉnh", "Adjustment"),
    }
}

fn section_label(s: &str, lang: Lang) -> String {
    match s {
        "processor" => lang.t("Cổng thanh toán thẻ", "Card processor"),
        "carrier" => lang.t("Nhà mạng", "Carriers"),
        "cash" => lang.t("Tiền mặt", "Cash"),
        "ledger" => lang.t("Sổ cái", "Ledger"),
        other => return other.to_owned(),
    }
    .to_owned()
}

fn kind_label(k: &str, lang: Lang) -> String {
    match k {
        "missing_at_processor" => lang.t("Không có ở cổng thanh toán", "Missing at processor"),
        "missing_in_ledger" => lang.t("Không có trong sổ cái", "Missing in ledger"),
        "amount_mismatch" => lang.t("Lệch số tiền", "Amount mismatch"),
        "payout_failed" => lang.t("Chuyển tiền về thất bại", "Payout failed"),
        "missing_in_settlement" => lang.t("Nhà mạng chưa đối soát", "Missing in settlement"),
        "settlement_missing" => lang.t("Thiếu file đối soát nhà mạng", "Settlement file missing"),
        "cash_difference" => lang.t("Chênh lệch tiền mặt ca trực", "Shift cash difference"),
        "warden_flag" => lang.t("Cảnh báo từ thiết bị cầm tay", "Handheld flag"),
        "unbalanced_transaction" => lang.t("Bút toán không cân", "Unbalanced transaction"),
        "balance_mismatch" => lang.t("Số dư lệch bút toán", "Balance mismatch"),
        "street_revenue_mismatch" => lang.t("Doanh thu tuyến phố lệch", "Street revenue mismatch"),
        other => return other.to_owned(),
    }
    .to_owned()
}

fn status_label(s: &str, lang: Lang) -> String {
    match s {
        "open" => lang.t("Chưa xử lý", "Open"),
        "resolved" => lang.t("Đã xử lý", "Resolved"),
        "cleared" => lang.t("Đã tự khớp", "Cleared"),
        "closed" => lang.t("Đã khóa sổ", "Closed"),
        other => return other.to_owned(),
    }
    .to_owned()
}

fn role_label(r: StaffRole, lang: Lang) -> &'static str {
    match r {
        StaffRole::Finance => lang.t("Tài chính", "Finance"),
        StaffRole::Admin => lang.t("Quản trị (chỉ xem)", "Admin (read only)"),
        StaffRole::Warden => "warden",
        StaffRole::Inspector => "inspector",
    }
}

// ---- request context, responses ------------------------------------------------------------

/// What every page needs from the request.
struct Ctx {
    lang: Lang,
    /// Set the language cookie (the query chose a language).
    remember_lang: bool,
    path: String,
    query: Vec<(String, String)>,
    secure: bool,
}

impl Ctx {
    fn new(headers: &HeaderMap, uri: &Uri) -> Self {
        let query = parse_urlencoded(uri.query().unwrap_or(""));
        let asked = field(&query, "lang").and_then(Lang::parse);
        let lang = asked.or_else(|| cookie(headers, LANG_COOKIE).as_deref().and_then(Lang::parse)).unwrap_or(Lang::Vi);
        let secure = headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"));
        Self { lang, remember_lang: asked.is_some(), path: uri.path().to_owned(), query, secure }
    }

    fn t(&self, vi: &'static str, en: &'static str) -> &'static str {
        self.lang.t(vi, en)
    }

    fn param(&self, name: &str) -> Option<&str> {
        field(&self.query, name)
    }

    /// This page in the other language.
    fn other_lang_href(&self) -> String {
        let other = match self.lang {
            Lang::Vi => "en",
            Lang::En => "vi",
        };
        let mut q: Vec<String> =
            self.query.iter().filter(|(k, _)| k != "lang").map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect();
        q.push(format!("lang={other}"));
        format!("{}?{}", self.path, q.join("&"))
    }

    /// The path and query of this request (for the login's way back).
    fn here(&self) -> String {
        let q: Vec<String> =
            self.query.iter().filter(|(k, _)| k != "lang").map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect();
        if q.is_empty() { self.path.clone() } else { format!("{}?{}", self.path, q.join("&")) }
    }

    fn cookie_attrs(&self) -> &'static str {
        if self.secure {
            "; Path=/finance; HttpOnly; SameSite=Strict; Secure"
        } else {
            "; Path=/finance; HttpOnly; SameSite=Strict"
        }
    }

    /// An HTML answer with the dashboard's headers.
    fn html(&self, status: StatusCode, body: String) -> Response {
        let mut r = (status, body).into_response();
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
        h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
        h.insert(header::CONTENT_LANGUAGE, HeaderValue::from_static(self.lang.code()));
        self.add_lang_cookie(&mut r);
        r
    }

    fn add_lang_cookie(&self, r: &mut Response) {
        if self.remember_lang {
            let v = format!("{LANG_COOKIE}={}{}; Max-Age=31536000", self.lang.code(), self.cookie_attrs());
            if let Ok(v) = HeaderValue::from_str(&v) {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
        }
    }

    /// A 303 to `location`, keeping a language just chosen.
    fn redirect(&self, location: &str) -> Response {
        let mut r = see_other(location);
        self.add_lang_cookie(&mut r);
        r
    }

    /// An error page for a service error.
    fn error_page(&self, user: Option<&Principal>, month: Option<Month>, e: &AppError) -> Response {
        let title = self.t("Không thực hiện được", "Something went wrong");
        let mut body = String::new();
        let _ = write!(
            body,
            "<h1>{}</h1><p class=\"flash error\" role=\"alert\">{} <code>{}</code></p><p><a href=\"/finance\">{}</a></p>",
            esc(title),
            esc(e.message(self.lang == Lang::En)),
            esc(e.code),
            esc(self.t("Về trang doanh thu", "Back to revenue")),
        );
        self.html(e.status, layout(self, user, month, title, &body))
    }
}

fn see_other(location: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The page around `body`: head, header with navigation, language switch, logout.
fn layout(ctx: &Ctx, user: Option<&Principal>, month: Option<Month>, title: &str, body: &str) -> String {
    let mut s = String::with_capacity(body.len() + 2048);
    let _ = write!(
        s,
        "<!doctype html><html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · iParking</title><link rel=\"stylesheet\" href=\"/finance/assets/finance.css\"></head><body>\
         <header class=\"top\"><a class=\"brand\" href=\"/finance\">iParking <span>{sub}</span></a>",
        lang = ctx.lang.code(),
        title = esc(title),
        sub = esc(ctx.t("Tài chính", "Finance")),
    );
    if let Some(p) = user {
        let m = month.map(|m| format!("?month={}", m.key())).unwrap_or_default();
        let period = month.map_or_else(|| "/finance/periods".to_owned(), |m| format!("/finance/periods/{}", m.key()));
        let _ = write!(
            s,
            "<nav><a href=\"/finance{m}\">{rev}</a><a href=\"/finance/reconciliation{m}\">{rec}</a>\
             <a href=\"{period}\">{per}</a></nav>",
            m = esc(&m),
            rev = esc(ctx.t("Doanh thu", "Revenue")),
            rec = esc(ctx.t("Đối soát", "Reconciliation")),
            period = esc(&period),
            per = esc(ctx.t("Khóa sổ", "Period close")),
        );
        let scope = if p.is_city_wide() {
            ctx.t("toàn thành phố", "city-wide").to_owned()
        } else {
            p.district_codes.join(", ")
        };
        let _ = write!(
            s,
            "<div class=\"who\"><span class=\"user\">{name}</span> <span class=\"role\">{role} · {scope}</span>\
             <form method=\"post\" action=\"/finance/logout\" class=\"inline\"><button type=\"submit\">{out}</button></form>",
            name = esc(&p.name),
            role = esc(role_label(p.role, ctx.lang)),
            scope = esc(&scope),
            out = esc(ctx.t("Đăng xuất", "Log out")),
        );
    } else {
        s.push_str("<div class=\"who\">");
    }
    let _ = write!(
        s,
        " <a id=\"lang-switch\" class=\"lang\" href=\"{href}\" hreflang=\"{hl}\">{label}</a></div></header><main>{body}</main>\
         <footer>{foot}</footer></body></html>",
        href = esc(&ctx.other_lang_href()),
        hl = if ctx.lang == Lang::Vi { "en" } else { "vi" },
        label = esc(ctx.t("English", "Tiếng Việt")),
        foot = esc(ctx.t(
            "Số liệu lấy từ sổ cái kép; giờ Hà Nội (UTC+7); đơn vị: đồng.",
            "Figures come from the double-entry ledger; Hanoi time (UTC+7); amounts in VND."
        )),
    );
    s
}

/// The signed-in dashboard user, or the answer to send instead (login redirect or error).
async fn require_user(app: &App, ctx: &Ctx, headers: &HeaderMap) -> Result<Principal, Response> {
    require_user_back(app, ctx, headers, &ctx.here()).await
}

/// Like [`require_user`]; after login, back to the page `back` (a form's page, not its POST).
async fn require_user_back(app: &App, ctx: &Ctx, headers: &HeaderMap, back: &str) -> Result<Principal, Response> {
    match current_user(app, headers).await {
        Ok(Some(p)) => Ok(p),
        Ok(None) => Err(ctx.redirect(&format!("/finance/login?next={}", enc(back)))),
        Err(e) => Err(ctx.error_page(None, None, &e)),
    }
}

async fn current_user(app: &App, headers: &HeaderMap) -> Result<Option<Principal>, AppError> {
    let Some(token) = cookie(headers, SESSION_COOKIE).filter(|t| !t.is_empty() && t.len() <= 256) else {
        return Ok(None);
    };
    let p = app.staff_principal(&token_hash(&token)).await?;
    let p = p.filter(|p| matches!(p.role, StaffRole::Finance | StaffRole::Admin));
    if let Some(p) = &p {
        tracing::Span::current().record("staff.id", p.staff_id);
    }
    Ok(p)
}

fn forbidden_origin(ctx: &Ctx) -> Response {
    let e = AppError::forbidden(
        "Yêu cầu không đến từ trang của bảng điều khiển (Origin hoặc Sec-Fetch-Site không khớp).",
        "The request did not come from the dashboard's pages (Origin or Sec-Fetch-Site does not match).",
    );
    ctx.error_page(None, None, &e)
}

fn read_only(ctx: &Ctx, user: &Principal, month: Option<Month>) -> Response {
    let e = AppError::forbidden("Tài khoản quản trị chỉ được xem.", "Admin accounts are read only.");
    ctx.error_page(Some(user), month, &e)
}

/// The month asked for (`month=`), or the current local month.
fn month_param(app: &App, ctx: &Ctx) -> Result<Month, AppError> {
    match ctx.param("month").filter(|m| !m.is_empty()) {
        Some(m) => Month::parse(m).ok_or_else(invalid_month),
        None => Ok(current_month(app)),
    }
}

fn current_month(app: &App) -> Month {
    Month::of(app.clock.now().with_timezone(&LOCAL_TZ).date_naive())
}

fn invalid_month() -> AppError {
    AppError::bad_request("invalid_period", "Tháng cần dạng YYYY-MM.", "A month is written YYYY-MM.")
}

fn flash(kind: &str, text: &str) -> String {
    let role = if kind == "ok" { "status" } else { "alert" };
    format!("<p class=\"flash {kind}\" role=\"{role}\">{}</p>", esc(text))
}

/// A service error shown above a page: the message and its stable code.
fn error_flash(ctx: &Ctx, prefix: &str, e: &AppError) -> String {
    format!(
        "<p class=\"flash error\" role=\"alert\">{}{} <code>{}</code></p>",
        esc(prefix),
        esc(e.message(ctx.lang == Lang::En)),
        esc(e.code)
    )
}

async fn read_form(ctx: &Ctx, headers: &HeaderMap, body: &Bytes) -> Result<Vec<(String, String)>, Response> {
    if !post_allowed(headers) {
        return Err(forbidden_origin(ctx));
    }
    if body.len() > FORM_MAX {
        let e = AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "Nội dung biểu mẫu quá lớn.",
            "The form is too large.",
        );
        return Err(ctx.error_page(None, None, &e));
    }
    let fields = parse_urlencoded(&String::from_utf8_lossy(body));
    for (name, value) in &fields {
        if let Err(e) = super::input::check_text(name, value) {
            return Err(ctx.error_page(None, None, &e));
        }
    }
    Ok(fields)
}

// ---- login, logout -------------------------------------------------------------------------

fn login_form(ctx: &Ctx, next: &str, username: &str, error: Option<&str>) -> String {
    let mut b = String::new();
    let _ = write!(
        b,
        "<section class=\"login\"><h1>{h}</h1>{err}\
         <form method=\"post\" action=\"/finance/login\" class=\"card\">\
         <input type=\"hidden\" name=\"next\" value=\"{next}\">\
         <label>{u}<input type=\"text\" name=\"username\" value=\"{uv}\" autocomplete=\"username\" required maxlength=\"64\" autofocus></label>\
         <label>{p}<input type=\"password\" name=\"password\" autocomplete=\"current-password\" required maxlength=\"128\"></label>\
         <button type=\"submit\" id=\"login-submit\">{s}</button></form>\
         <p class=\"hint\">{hint}</p></section>",
        h = esc(ctx.t("Đăng nhập tài chính", "Finance sign-in")),
        err = error.map(|e| flash("error", e)).unwrap_or_default(),
        next = esc(next),
        u = esc(ctx.t("Tên đăng nhập", "Username")),
        uv = esc(username),
        p = esc(ctx.t("Mật khẩu", "Password")),
        s = esc(ctx.t("Đăng nhập", "Sign in")),
        hint = esc(ctx.t(
            "Dành cho nhân viên tài chính (và quản trị viên, chỉ xem).",
            "For finance staff (and administrators, read only)."
        )),
    );
    b
}

async fn login_page(State(app): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let ctx = Ctx::new(&headers, &uri);
    let next = safe_next(ctx.param("next"));
    if let Ok(Some(_)) = current_user(&app, &headers).await {
        return ctx.redirect(&next);
    }
    let title = ctx.t("Đăng nhập", "Sign in");
    ctx.html(StatusCode::OK, layout(&ctx, None, None, title, &login_form(&ctx, &next, "", None)))
}

async fn login_submit(
    State(app): State<AppState>,
    ConnectInfo(super::Peer(peer)): ConnectInfo<super::Peer>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let ctx = Ctx::new(&headers, &uri);
    let form = match read_form(&ctx, &headers, &body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let username = field(&form, "username").unwrap_or("");
    let password = field(&form, "password").unwrap_or("");
    let next = safe_next(field(&form, "next"));
    let roles = [StaffRole::Finance, StaffRole::Admin];
    match password_login(&app, peer.ip(), username, password, DEVICE, &roles).await {
        Ok((token, p)) => {
            tracing::info!(staff.id = p.staff_id, token.id = p.token_id, "finance dashboard login");
            let mut r = ctx.redirect(&next);
            let v = format!("{SESSION_COOKIE}={token}{}", ctx.cookie_attrs());
            if let Ok(v) = HeaderValue::from_str(&v) {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
            r
        }
        Err(e) => {
            let title = ctx.t("Đăng nhập", "Sign in");
            let msg = e.message(ctx.lang == Lang::En).to_owned();
            let page = login_form(&ctx, &next, username.trim(), Some(&msg));
            ctx.html(e.status, layout(&ctx, None, None, title, &page))
        }
    }
}

/// `GET /finance/logout` changes nothing (a link, a prefetch or another site's `<img>` must
/// not sign anyone out): signed in, a page with the logout button; signed out, the login page.
async fn logout_page(State(app): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let ctx = Ctx::new(&headers, &uri);
    let p = match current_user(&app, &headers).await {
        Ok(Some(p)) => p,
        Ok(None) => return ctx.redirect("/finance/login"),
        Err(e) => return ctx.error_page(None, None, &e),
    };
    let title = ctx.t("Đăng xuất", "Log out");
    let mut body = String::new();
    let _ = write!(
        body,
        "<section class=\"login\"><h1>{h}</h1>\
         <form method=\"post\" action=\"/finance/logout\" class=\"card\">\
         <button type=\"submit\" id=\"logout-submit\">{s}</button></form>\
         <p><a href=\"/finance\">{back}</a></p></section>",
        h = esc(title),
        s = esc(ctx.t("Đăng xuất", "Log out")),
        back = esc(ctx.t("Về trang doanh thu", "Back to revenue")),
    );
    ctx.html(StatusCode::OK, layout(&ctx, Some(&p), None, title, &body))
}

async fn logout(State(app): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let ctx = Ctx::new(&headers, &uri);
    if !post_allowed(&headers) {
        return forbidden_origin(&ctx);
    }
    match current_user(&app, &headers).await {
        Ok(Some(p)) => {
            if let Err(e) = app.revoke_staff_token(p.token_id).await {
                return ctx.error_page(None, None, &AppError::from(e));
            }
            tracing::info!(staff.id = p.staff_id, token.id = p.token_id, "finance dashboard logout");
        }
        Ok(None) => {}
        Err(e) => return ctx.error_page(None, None, &e),
    }
    let mut r = ctx.redirect("/finance/login");
    let v = format!("{SESSION_COOKIE}={}; Max-Age=0", ctx.cookie_attrs());
    if let Ok(v) = HeaderValue::from_str(&v) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

// ---- revenue ---------------------------------------------------------------------------------

async fn report(
    app: &App,
    p: &Principal,
    month: Month,
    group_by: &str,
    street: Option<i64>,
) -> Result<RevenueReport, AppError> {
    let q = RevenueQuery {
        from: Some(month.first().to_string()),
        to: Some(month.last().to_string()),
        group_by: Some(group_by.to_owned()),
        district: None,
        street,
        format: None,
    };
    revenue_report(app, p, &q).await
}

fn sums_cells(s: &RevenueSums) -> String {
    format!(
        "<td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>",
        esc(&money(s.gross)),
        esc(&money(s.carrier_share)),
        esc(&money(s.net)),
        esc(&group_thousands(s.postings)),
    )
}

fn sums_head(ctx: &Ctx) -> String {
    format!(
        "<th class=\"num\">{}</th><th class=\"num\">{}</th><th class=\"num\">{}</th><th class=\"num\">{}</th>",
        esc(ctx.t("Doanh thu", "Gross")),
        esc(ctx.t("Phần nhà mạng", "Carrier share")),
        esc(ctx.t("Thực thu", "Net")),
        esc(ctx.t("Bút toán", "Postings")),
    )
}

/// A revenue table: the first columns from `dims` (header, cell html per row), then the sums,
/// a total row and a CSV link.
fn revenue_table(
    ctx: &Ctx,
    id: &str,
    caption: &str,
    dims: &[&str],
    r: &RevenueReport,
    cells: impl Fn(&RevenueRow) -> Vec<String>,
    csv_href: &str,
) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<section id=\"{id}\"><div class=\"section-head\"><h2>{caption}</h2>\
         <a class=\"csv\" href=\"{csv}\" download>CSV</a></div>",
        id = esc(id),
        caption = esc(caption),
        csv = esc(csv_href),
    );
    if r.rows.is_empty() {
        let _ = write!(
            s,
            "<p class=\"empty\">{}</p></section>",
            esc(ctx.t("Không có doanh thu trong kỳ này.", "No revenue in this period."))
        );
        return s;
    }
    s.push_str("<div class=\"scroll\"><table><thead><tr>");
    for d in dims {
        let _ = write!(s, "<th>{}</th>", esc(d));
    }
    s.push_str(&sums_head(ctx));
    s.push_str("</tr></thead><tbody>");
    for row in &r.rows {
        s.push_str("<tr>");
        for c in cells(row) {
            let _ = write!(s, "<td>{c}</td>");
        }
        s.push_str(&sums_cells(&row.sums));
        s.push_str("</tr>");
    }
    let _ = write!(
        s,
        "</tbody><tfoot><tr><th colspan=\"{}\">{}</th>{}</tr></tfoot></table></div></section>",
        dims.len(),
        esc(ctx.t("Tổng", "Total")),
        sums_cells(&r.totals)
    );
    s
}

fn month_nav(ctx: &Ctx, base: &str, month: Month) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    format!(
        "<form class=\"month-nav\" method=\"get\" action=\"{action}\">\
         <a href=\"{base}{sep}month={prev}\" rel=\"prev\">← {prev_l}</a>\
         <label>{lbl} <input type=\"month\" name=\"month\" value=\"{cur}\" min=\"2000-01\" max=\"9999-12\"></label>\
         <button type=\"submit\">{show}</button>\
         <a href=\"{base}{sep}month={next}\" rel=\"next\">{next_l} →</a></form>",
        action = esc(base.split('?').next().unwrap_or(base)),
        base = esc(base),
        prev = month.prev().key(),
        prev_l = esc(&month.prev().label(ctx.lang)),
        lbl = esc(ctx.t("Tháng", "Month")),
        cur = month.key(),
        show = esc(ctx.t("Xem", "Show")),
        next = month.next().key(),
        next_l = esc(&month.next().label(ctx.lang)),
    )
}

fn totals_cards(ctx: &Ctx, t: &RevenueSums) -> String {
    let card = |label: &str, value: String, class: &str| {
        format!("<div class=\"stat {class}\"><span>{}</span><strong>{}</strong></div>", esc(label), esc(&value))
    };
    format!(
        "<div class=\"stats\">{}{}{}{}</div>",
        card(ctx.t("Doanh thu", "Gross revenue"), money(t.gross), "gross"),
        card(ctx.t("Phần nhà mạng", "Carrier share"), money(t.carrier_share), "share"),
        card(ctx.t("Thực thu", "Net"), money(t.net), "net"),
        card(ctx.t("Số bút toán", "Postings"), group_thousands(t.postings), "postings"),
    )
}

fn scope_note(ctx: &Ctx, scope: &[String]) -> String {
    if scope.is_empty() {
        String::new()
    } else {
        format!(
            "<p class=\"scope\">{} {}</p>",
            esc(ctx.t("Phạm vi của bạn: quận", "Your scope: districts")),
            esc(&scope.join(", "))
        )
    }
}

async fn revenue_page(State(app): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let ctx = Ctx::new(&headers, &uri);
    let p = match require_user(&app, &ctx, &headers).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let month = match month_param(&app, &ctx) {
        Ok(m) => m,
        Err(e) => return ctx.error_page(Some(&p), None, &e),
    };
    let (districts, streets, channels) = match tokio::try_join!(
        report(&app, &p, month, "district", None),
        report(&app, &p, month, "street", None),
        report(&app, &p, month, "channel", None),
    ) {
        Ok(r) => r,
        Err(e) => return ctx.error_page(Some(&p), Some(month), &e),
    };
    let mk = month.key();
    let title = format!("{} {}", ctx.t("Doanh thu", "Revenue,"), month.label(ctx.lang));
    let mut b = String::new();
    let _ = write!(b, "<h1>{}</h1>", esc(&title));
    b.push_str(&month_nav(&ctx, "/finance", month));
    b.push_str(&scope_note(&ctx, &districts.scope));
    b.push_str(&totals_cards(&ctx, &districts.totals));

    let district_name =
        |r: &RevenueRow| r.district_name.clone().or_else(|| r.district_code.clone()).unwrap_or_else(|| "—".to_owned());
    if !districts.rows.is_empty() {
        let bars: Vec<(String, i64)> = districts.rows.iter().map(|r| (district_name(r), r.sums.gross)).collect();
        let chart_title =
            format!("{} {}", ctx.t("Doanh thu theo quận,", "Revenue by district,"), month.label(ctx.lang));
        let _ = write!(b, "<figure class=\"chart-box\">{}</figure>", bar_chart(&chart_title, &bars));
    }
    b.push_str(&revenue_table(
        &ctx,
        "by-district",
        ctx.t("Theo quận", "By district"),
        &[ctx.t("Mã", "Code"), ctx.t("Quận", "District")],
        &districts,
        |r| vec![esc(r.district_code.as_deref().unwrap_or("—")), esc(&district_name(r))],
        &format!("/finance/revenue.csv?month={mk}&group_by=district"),
    ));
    b.push_str(&revenue_table(
        &ctx,
        "by-street",
        ctx.t("Theo tuyến phố", "By street"),
        &[ctx.t("Quận", "District"), ctx.t("Tuyến phố", "Street")],
        &streets,
        |r| {
            let name = esc(r.street_name.as_deref().unwrap_or("—"));
            let street = match r.street_id {
                Some(id) => format!("<a class=\"street-link\" href=\"/finance/streets/{id}?month={mk}\">{name}</a>"),
                None => name,
            };
            vec![esc(r.district_code.as_deref().unwrap_or("—")), street]
        },
        &format!("/finance/revenue.csv?month={mk}&group_by=district,street"),
    ));
    b.push_str(&revenue_table(
        &ctx,
        "by-channel",
        ctx.t("Theo kênh thanh toán", "By channel"),
        &[ctx.t("Kênh", "Channel")],
        &channels,
        |r| vec![esc(r.channel.map_or("—", |c| channel_label(c, ctx.lang)))],
        &format!("/finance/revenue.csv?month={mk}&group_by=channel"),
    ));
    ctx.html(StatusCode::OK, layout(&ctx, Some(&p), Some(month), &title, &b))
}

async fn street_page(State(app): State<AppState>, Path(id): Path<String>, headers: HeaderMap, uri: Uri) -> Response {
    let ctx = Ctx::new(&headers, &uri);
    let p = match require_user(&app, &ctx, &headers).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let month = match month_param(&app, &ctx) {
        Ok(m) => m,
        Err(e) => return ctx.error_page(Some(&p), None, &e),
    };
    let not_found = || {
        AppError::not_found(
            "street_not_found",
            format!("Không có tuyến phố số {id}."),
            format!("No street with id {id}."),
        )
    };
    let Ok(street_id) = id.parse::<i64>() else { return ctx.error_page(Some(&p), Some(month), &not_found()) };
    let street = match app.store.street(street_id).await {
        Ok(Some(s)) => s,
        Ok(None) => return ctx.error_page(Some(&p), Some(month), &not_found()),
        Err(e) => return ctx.error_page(Some(&p), Some(month), &e.into()),
    };
    if !p.covers_district(&street.district_code) {
        let e = AppError::new(
            StatusCode::FORBIDDEN,
            "out_of_scope",
            format!("Quận {} nằm ngoài phạm vi của bạn.", street.district_code),
            format!("District {} is outside your scope.", street.district_code),
        );
        return ctx.error_page(Some(&p), Some(month), &e);
    }
    let district_name = match app.store.districts().await {
        Ok(all) => all.into_iter().find(|d| d.code == street.district_code).map(|d| d.name),
        Err(e) => return ctx.error_page(Some(&p), Some(month), &e.into()),
    }
    .unwrap_or_else(|| street.district_code.clone());
    let s = Some(street_id);
    let (points, days, channels) = match tokio::try_join!(
        report(&app, &p, month, "point", s),
        report(&app, &p, month, "day", s),
        report(&app, &p, month, "channel", s),
    ) {
        Ok(r) => r,
        Err(e) => return ctx.error_page(Some(&p), Some(month), &e),
    };
    let mk = month.key();
    let title = format!("{} — {}", street.name, month.label(ctx.lang));
    let mut b = String::new();
    let _ = write!(
        b,
        "<p class=\"crumbs\"><a href=\"/finance?month={mk}\">{rev}</a> › {district} › {street}</p><h1>{title}</h1>",
        rev = esc(ctx.t("Doanh thu", "Revenue")),
        district = esc(&district_name),
        street = esc(&street.name),
        title = esc(&title),
    );
    b.push_str(&month_nav(&ctx, &format!("/finance/streets/{street_id}"), month));
    b.push_str(&totals_cards(&ctx, &points.totals));
    let csv = |g: &str| format!("/finance/revenue.csv?month={mk}&group_by={g}&street={street_id}");
    b.push_str(&revenue_table(
        &ctx,
        "by-point",
        ctx.t("Theo điểm đỗ", "By parking point"),
        &[ctx.t("Mã điểm", "Point"), ctx.t("Tên", "Name")],
        &points,
        |r| vec![esc(r.point_code.as_deref().unwrap_or("—")), esc(r.point_name.as_deref().unwrap_or("—"))],
        &csv("point"),
    ));
    if !days.rows.is_empty() {
        let bars: Vec<(String, i64)> = days
            .rows
            .iter()
            .map(|r| (r.day.map_or_else(|| "—".to_owned(), |d| ctx.lang.day(d)), r.sums.gross))
            .collect();
        let chart_title = format!("{} {}", ctx.t("Doanh thu theo ngày:", "Revenue by day:"), street.name);
        let _ = write!(b, "<figure class=\"chart-box\">{}</figure>", bar_chart(&chart_title, &bars));
    }
    b.push_str(&revenue_table(
        &ctx,
        "by-day",
        ctx.t("Theo ngày", "By day"),
        &[ctx.t("Ngày", "Day")],
        &days,
        |r| vec![esc(&r.day.map_or_else(|| "—".to_owned(), |d| ctx.lang.day(d)))],
        &csv("day"),
    ));
    b.push_str(&revenue_table(
        &ctx,
        "by-channel",
        ctx.t("Theo kênh thanh toán", "By channel"),
        &[ctx.t("Kênh", "Channel")],
        &channels,
        |r| vec![esc(r.channel.map_or("—", |c| channel_label(c, ctx.lang)))],
        &csv("channel"),
    ));
    ctx.html(StatusCode::OK, layout(&ctx, Some(&p), Some(month), &title, &b))
}

async fn revenue_csv(State(app): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let ctx = Ctx::new(&headers, &uri);
    let p = match require_user(&app, &ctx, &headers).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let month = match month_param(&app, &ctx) {
        Ok(m) => m,
        Err(e) => return ctx.error_page(Some(&p), None, &e),
    };
    let street = match ctx.param("street").filter(|s| !s.is_empty()).map(str::parse::<i64>) {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => {
            let e = AppError::bad_request("invalid_query", "Mã tuyến phố không hợp lệ.", "Invalid street id.");
            return ctx.error_page(Some(&p), Some(month), &e);
        }
    };
    let q = RevenueQuery {
        from: Some(month.first().to_string()),
        to: Some(month.last().to_string()),
        group_by: Some(ctx.param("group_by").unwrap_or("").to_owned()),
        district: ctx.param("district").filter(|d| !d.is_empty()).map(str::to_owned),
        street,
        format: Some("csv".to_owned()),
    };
    match revenue_report(&app, &p, &q).await {
        Ok(r) => csv_response(&format!("revenue-{}-{}.csv", r.from, r.to), revenue::revenue_csv(&r)),
        Err(e) => ctx.error_page(Some(&p), Some(month), &e),
    }
}

// ---- reconciliation ------------------------------------------------------------------------

fn summary_rows(ctx: &Ctx, s: &iparking_mobile_api::MatchSummary, ours: &str, theirs: &str) -> String {
    format!(
        "<tr><th>{}</th><td class=\"num\">{}</td></tr><tr><th>{}</th><td class=\"num\">{}</td></tr>\
         <tr><th>{}</th><td class=\"num\">{}</td></tr><tr><th>{}</th><td class=\"num\">{}</td></tr>\
         <tr><th>{}</th><td class=\"num\">{}</td></tr>",
        esc(ctx.t("Khớp", "Matched")),
        esc(&group_thousands(s.matched)),
        esc(ours),
        esc(&money(s.ledger_total)),
        esc(theirs),
        esc(&money(s.external_total)),
        esc(ctx.t("Chênh lệch", "Difference")),
        esc(&money(s.external_total - s.ledger_total)),
        esc(ctx.t("Sai lệch chưa xử lý", "Open discrepancies")),
        esc(&group_thousands(s.open_discrepancies)),
    )
}

fn yes_no(ctx: &Ctx, v: bool) -> String {
    if v {
        format!("<span class=\"ok\">{}</span>", esc(ctx.t("Đúng", "Yes")))
    } else {
        format!("<span class=\"bad\">{}</span>", esc(ctx.t("Không", "No")))
    }
}

fn discrepancy_row(ctx: &Ctx, d: &DiscrepancyView, month: Month, can_act: bool) -> String {
    let mut s = String::new();
    let details = serde_json::to_string_pretty(&d.details).unwrap_or_default();
    let _ = write!(
        s,
        "<tr id=\"d-{id}\" class=\"status-{status}\"><td>{id}</td><td>{section}</td><td>{kind}</td>\
         <td><code>{subject}</code>",
        id = d.id,
        status = esc(&d.status),
        section = esc(&section_label(&d.section, ctx.lang)),
        kind = esc(&kind_label(&d.kind, ctx.lang)),
        subject = esc(&d.subject),
    );
    if !d.details.is_null() && d.details != serde_json::json!({}) {
        let _ = write!(
            s,
            "<details><summary>{}</summary><pre>{}</pre></details>",
            esc(ctx.t("Chi tiết", "Details")),
            esc(&details)
        );
    }
    let _ = write!(
        s,
        "</td><td>{day}</td><td>{district}</td><td class=\"num\">{exp}</td><td class=\"num\">{act}</td>\
         <td class=\"num diff\">{diff}</td><td class=\"status\"><span class=\"badge {status}\">{label}</span></td><td>",
        day = esc(&ctx.lang.day(d.day)),
        district = esc(d.district_code.as_deref().unwrap_or("—")),
        exp = esc(&money_opt(d.expected)),
        act = esc(&money_opt(d.actual)),
        diff = esc(&money_opt(d.difference)),
        status = esc(&d.status),
        label = esc(&status_label(&d.status, ctx.lang)),
    );
    if d.status == "open" && can_act {
        let _ = write!(
            s,
            "<form method=\"post\" action=\"/finance/discrepancies/{id}/resolve\" class=\"resolve\">\
             <input type=\"hidden\" name=\"month\" value=\"{mk}\">\
             <label>{note}<textarea name=\"note\" required maxlength=\"1000\" rows=\"2\"></textarea></label>\
             <button type=\"submit\">{go}</button></form>",
            id = d.id,
            mk = month.key(),
            note = esc(ctx.t("Ghi chú xử lý", "Resolution note")),
            go = esc(ctx.t("Xác nhận đã xử lý", "Mark resolved")),
        );
    } else if d.status == "resolved" {
        let _ = write!(
            s,
            "<p class=\"resolution\"><span class=\"by\">{by}</span> · <span class=\"at\">{at}</span></p>\
             <p class=\"note\">{note}</p>",
            by = esc(d.resolved_by.as_deref().unwrap_or("—")),
            at = esc(&d.resolved_at.map(|t| ctx.lang.time(t)).unwrap_or_default()),
            note = esc(d.resolution_note.as_deref().unwrap_or("")),
        );
    }
    s.push_str("</td></tr>");
    s
}

fn render_reconciliation(
    ctx: &Ctx,
    p: &Principal,
    month: Month,
    r: &ReconciliationReport,
    notice: Option<String>,
) -> String {
    let mk = month.key();
    let title = format!("{} {}", ctx.t("Đối soát", "Reconciliation,"), month.label(ctx.lang));
    let mut b = String::new();
    let _ = write!(b, "<h1>{}</h1>", esc(&title));
    b.push_str(&month_nav(ctx, "/finance/reconciliation", month));
    if let Some(n) = notice {
        b.push_str(&n);
    }
    b.push_str(&scope_note(ctx, &r.scope));
    if r.period_closed {
        b.push_str(&flash("info", ctx.t("Kỳ này đã khóa sổ.", "This period is closed.")));
    }
    b.push_str("<div class=\"sections\">");
    if let Some(proc_) = &r.processor {
        let _ = write!(
            b,
            "<section class=\"card\" id=\"sec-processor\"><h2>{h}</h2><table class=\"kv\">{rows}\
             <tr><th>{fees}</th><td class=\"num\">{fv}</td></tr><tr><th>{pay}</th><td class=\"num\">{pv}</td></tr>\
             </table></section>",
            h = esc(ctx.t("Cổng thanh toán thẻ (Stripe)", "Card processor (Stripe)")),
            rows = summary_rows(ctx, &proc_.summary, ctx.t("Sổ sách", "Our books"), ctx.t("Stripe ghi nhận", "Stripe")),
            fees = esc(ctx.t("Phí Stripe", "Stripe fees")),
            fv = esc(&money(proc_.fees)),
            pay = esc(ctx.t("Đã chuyển về ngân hàng", "Paid out")),
            pv = esc(&money(proc_.payouts_total)),
        );
    }
    for c in &r.carriers {
        let _ = write!(
            b,
            "<section class=\"card\" id=\"sec-carrier-{id}\"><h2>{h} {name}</h2><p>{file}</p><table class=\"kv\">{rows}</table></section>",
            id = esc(&c.carrier),
            h = esc(ctx.t("Nhà mạng", "Carrier")),
            name = esc(&c.carrier),
            file = if c.settlement_received {
                esc(ctx.t("Đã nhận file đối soát.", "Settlement file received."))
            } else {
                format!("<span class=\"bad\">{}</span>", esc(ctx.t("Chưa có file đối soát.", "No settlement file.")))
            },
            rows = summary_rows(
                ctx,
                &c.summary,
                ctx.t("Sổ sách (thực thu)", "Our books (net)"),
                ctx.t("Nhà mạng báo", "Carrier")
            ),
        );
    }
    let _ = write!(
        b,
        "<section class=\"card\" id=\"sec-cash\"><h2>{h}</h2><table class=\"kv\">{rows}\
         <tr><th>{open}</th><td class=\"num\">{ov}</td></tr></table></section>",
        h = esc(ctx.t("Tiền mặt (ca trực)", "Cash (warden shifts)")),
        rows = summary_rows(
            ctx,
            &r.cash.summary,
            ctx.t("Đã thu theo biên lai", "Collected (slips)"),
            ctx.t("Đã nộp", "Declared")
        ),
        open = esc(ctx.t("Ca chưa đóng", "Shifts still open")),
        ov = esc(&group_thousands(r.cash.open_shifts)),
    );
    if let Some(l) = &r.ledger {
        let _ = write!(
            b,
            "<section class=\"card\" id=\"sec-ledger\"><h2>{h}</h2><table class=\"kv\">\
             <tr><th>{a}</th><td>{av}</td></tr><tr><th>{bl}</th><td>{bv}</td></tr><tr><th>{c}</th><td>{cv}</td></tr>\
             <tr><th>{o}</th><td class=\"num\">{ov}</td></tr></table></section>",
            h = esc(ctx.t("Toàn vẹn sổ cái", "Ledger integrity")),
            a = esc(ctx.t("Mọi bút toán cân", "Every transaction balances")),
            av = yes_no(ctx, l.transactions_balance),
            bl = esc(ctx.t("Số dư khớp bút toán", "Balances match postings")),
            bv = yes_no(ctx, l.balances_match_postings),
            c = esc(ctx.t("Doanh thu tuyến phố khớp lượt đỗ", "Street revenue matches sessions")),
            cv = yes_no(ctx, l.street_revenue_matches_sessions),
            o = esc(ctx.t("Sai lệch chưa xử lý", "Open discrepancies")),
            ov = esc(&group_thousands(l.open_discrepancies)),
        );
    }
    b.push_str("</div>");
    let open = r.discrepancies.iter().filter(|d| d.status == "open").count();
    let _ = write!(
        b,
        "<section id=\"discrepancies\"><div class=\"section-head\"><h2>{h} <span class=\"count\">({open} {ol})</span></h2>\
         <a class=\"csv\" href=\"/finance/reconciliation.csv?month={mk}\" download>CSV</a></div>",
        h = esc(ctx.t("Sai lệch", "Discrepancies")),
        ol = esc(ctx.t("chưa xử lý", "open")),
    );
    if r.discrepancies.is_empty() {
        let _ = write!(b, "<p class=\"empty\">{}</p>", esc(ctx.t("Không có sai lệch.", "No discrepancies.")));
    } else {
        let _ = write!(
            b,
            "<div class=\"scroll\"><table class=\"discrepancies\"><thead><tr><th>#</th><th>{}</th><th>{}</th><th>{}</th>\
             <th>{}</th><th>{}</th><th class=\"num\">{}</th><th class=\"num\">{}</th><th class=\"num\">{}</th><th>{}</th>\
             <th>{}</th></tr></thead><tbody>",
            esc(ctx.t("Mục", "Section")),
            esc(ctx.t("Loại", "Kind")),
            esc(ctx.t("Đối tượng", "Subject")),
            esc(ctx.t("Ngày", "Day")),
            esc(ctx.t("Quận", "District")),
            esc(ctx.t("Sổ sách", "Expected")),
            esc(ctx.t("Thực tế", "Actual")),
            esc(ctx.t("Chênh lệch", "Difference")),
            esc(ctx.t("Trạng thái", "Status")),
            esc(ctx.t("Xử lý", "Resolution")),
        );
        let can_act = p.role == StaffRole::Finance && !r.period_closed;
        for d in &r.discrepancies {
            b.push_str(&discrepancy_row(ctx, d, month, can_act));
        }
        b.push_str("</tbody></table></div>");
    }
    let _ = write!(
        b,
        "</section><p><a href=\"/finance/periods/{mk}\">{}</a></p>",
        esc(ctx.t("Khóa sổ kỳ này →", "Close this period →"))
    );
    layout(ctx, Some(p), Some(month), &title, &b)
}

async fn run_reconciliation(app: &App, p: &Principal, month: Month) -> Result<ReconciliationReport, AppError> {
    let q = ReconciliationQuery { date: None, month: Some(month.key()), format: None };
    reconciliation(app, p, &q).await
}

async fn reconciliation_page(State(app): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let ctx = Ctx::new(&headers, &uri);
    let p = match require_user(&app, &ctx, &headers).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let month = match month_param(&app, &ctx) {
        Ok(m) => m,
        Err(e) => return ctx.error_page(Some(&p), None, &e),
    };
    let report = match run_reconciliation(&app, &p, month).await {
        Ok(r) => r,
        Err(e) => return ctx.error_page(Some(&p), Some(month), &e),
    };
    let notice = ctx.param("resolved").and_then(|id| id.parse::<i64>().ok()).map(|id| {
        let text = match ctx.lang {
            Lang::Vi => format!("Đã ghi nhận xử lý sai lệch #{id}."),
            Lang::En => format!("Discrepancy #{id} resolved."),
        };
        flash("ok", &text)
    });
    ctx.html(StatusCode::OK, render_reconciliation(&ctx, &p, month, &report, notice))
}

async fn reconciliation_csv(State(app): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let ctx = Ctx::new(&headers, &uri);
    let p = match require_user(&app, &ctx, &headers).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let month = match month_param(&app, &ctx) {
        Ok(m) => m,
        Err(e) => return ctx.error_page(Some(&p), None, &e),
    };
    match run_reconciliation(&app, &p, month).await {
        Ok(r) => csv_response(&format!("discrepancies-{}.csv", month.key()), discrepancies_csv(&r.discrepancies)),
        Err(e) => ctx.error_page(Some(&p), Some(month), &e),
    }
}

async fn resolve_submit(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let ctx = Ctx::new(&headers, &uri);
    let form = match read_form(&ctx, &headers, &body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let month = field(&form, "month").and_then(Month::parse).unwrap_or_else(|| current_month(&app));
    let back = format!("/finance/reconciliation?month={}", month.key());
    let p = match require_user_back(&app, &ctx, &headers, &back).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    if p.role != StaffRole::Finance {
        return read_only(&ctx, &p, Some(month));
    }
    let Ok(id) = id.parse::<i64>() else {
        let e = AppError::not_found("discrepancy_not_found", "Không có sai lệch này.", "No such discrepancy.");
        return ctx.error_page(Some(&p), Some(month), &e);
    };
    let note = field(&form, "note").unwrap_or("").trim().to_owned();
    match resolve_discrepancy(&app, &p, id, &note).await {
        Ok(_) => ctx.redirect(&format!("/finance/reconciliation?month={}&resolved={id}#d-{id}", month.key())),
        Err(e) => {
            // The page again, with the reason it did not work.
            let notice = error_flash(&ctx, &format!("#{id}: "), &e);
            match run_reconciliation(&app, &p, month).await {
                Ok(r) => ctx.html(e.status, render_reconciliation(&ctx, &p, month, &r, Some(notice))),
                Err(_) => ctx.error_page(Some(&p), Some(month), &e),
            }
        }
    }
}

// ---- periods -----------------------------------------------------------------------------

fn render_period(ctx: &Ctx, p: &Principal, month: Month, v: &PeriodView, notice: Option<String>) -> String {
    let mk = month.key();
    let title = format!("{} {}", ctx.t("Khóa sổ", "Period close,"), month.label(ctx.lang));
    let mut b = String::new();
    let _ = write!(b, "<h1>{}</h1>", esc(&title));
    b.push_str(&month_nav(ctx, "/finance/periods", month));
    if let Some(n) = notice {
        b.push_str(&n);
    }
    let status = if v.status == "closed" {
        format!("<span class=\"badge closed\">{}</span>", esc(&status_label("closed", ctx.lang)))
    } else {
        format!("<span class=\"badge open\">{}</span>", esc(ctx.t("Đang mở", "Open")))
    };
    let _ = write!(
        b,
        "<section class=\"card\" id=\"period\"><table class=\"kv\"><tr><th>{}</th><td>{status}</td></tr>",
        esc(ctx.t("Trạng thái", "Status"))
    );
    if v.status == "closed" {
        let ids = if v.open_discrepancy_ids.is_empty() {
            "—".to_owned()
        } else {
            v.open_discrepancy_ids
                .iter()
                .map(|id| format!("<a href=\"/finance/reconciliation?month={mk}#d-{id}\">#{id}</a>"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = write!(
            b,
            "<tr><th>{}</th><td>{}</td></tr><tr><th>{}</th><td>{}</td></tr><tr><th>{}</th><td>{}</td></tr>\
             <tr><th>{}</th><td>{}</td></tr><tr><th>{}</th><td>{ids}</td></tr>",
            esc(ctx.t("Người khóa sổ", "Closed by")),
            esc(v.closed_by.as_deref().unwrap_or("—")),
            esc(ctx.t("Thời điểm", "Closed at")),
            esc(&v.closed_at.map(|t| ctx.lang.time(t)).unwrap_or_default()),
            esc(ctx.t("Bỏ qua sai lệch", "Override")),
            esc(if v.overridden { ctx.t("Có", "Yes") } else { ctx.t("Không", "No") }),
            esc(ctx.t("Lý do", "Reason")),
            esc(v.override_reason.as_deref().unwrap_or("—")),
            esc(ctx.t("Sai lệch còn mở khi khóa", "Open at closing")),
        );
    }
    b.push_str("</table></section>");
    if v.status != "closed" {
        if p.role == StaffRole::Finance {
            let _ = write!(
                b,
                "<section class=\"card\" id=\"close\"><h2>{h}</h2><p>{explain}</p>\
                 <form method=\"post\" action=\"/finance/periods/{mk}/close\" class=\"close\">\
                 <label class=\"check\"><input type=\"checkbox\" name=\"override_open_discrepancies\" value=\"1\"> {ov}</label>\
                 <label>{reason}<textarea name=\"reason\" maxlength=\"1000\" rows=\"3\"></textarea></label>\
                 <button type=\"submit\" class=\"danger\">{go}</button></form></section>",
                h = esc(ctx.t("Khóa sổ tháng", "Close the month")),
                explain = esc(ctx.t(
                    "Sau khi khóa sổ, không bút toán nào được ghi vào tháng này nữa. Tháng phải kết thúc và không còn sai lệch chưa xử lý (hoặc chọn bỏ qua, kèm lý do).",
                    "Once closed, nothing can be posted into this month. The month must have ended and have no open discrepancies (or override them, with a reason)."
                )),
                ov = esc(ctx.t("Khóa sổ dù còn sai lệch chưa xử lý", "Close despite open discrepancies")),
                reason = esc(ctx.t("Lý do (bắt buộc khi bỏ qua)", "Reason (required with the override)")),
                go = esc(&match ctx.lang {
                    Lang::Vi => format!("Khóa sổ {}", month.label(ctx.lang)),
                    Lang::En => format!("Close {}", month.label(ctx.lang)),
                }),
            );
        } else {
            let _ = write!(
                b,
                "<p class=\"hint\">{}</p>",
                esc(ctx.t("Tài khoản quản trị chỉ được xem.", "Admin accounts are read only."))
            );
        }
    }
    let _ = write!(
        b,
        "<p><a href=\"/finance/reconciliation?month={mk}\">{}</a></p>",
        esc(ctx.t("← Đối soát tháng này", "← This month's reconciliation"))
    );
    layout(ctx, Some(p), Some(month), &title, &b)
}

async fn period_index(State(app): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let ctx = Ctx::new(&headers, &uri);
    match month_param(&app, &ctx) {
        Ok(m) => ctx.redirect(&format!("/finance/periods/{}", m.key())),
        Err(e) => ctx.error_page(None, None, &e),
    }
}

async fn period_page(State(app): State<AppState>, Path(month): Path<String>, headers: HeaderMap, uri: Uri) -> Response {
    let ctx = Ctx::new(&headers, &uri);
    let p = match require_user(&app, &ctx, &headers).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Some(month) = Month::parse(&month) else { return ctx.error_page(Some(&p), None, &invalid_month()) };
    match period(&app, &p, &month.key()).await {
        Ok(v) => {
            let notice = ctx.param("closed").map(|_| flash("ok", ctx.t("Đã khóa sổ tháng.", "The month is closed.")));
            ctx.html(StatusCode::OK, render_period(&ctx, &p, month, &v, notice))
        }
        Err(e) => ctx.error_page(Some(&p), Some(month), &e),
    }
}

async fn close_submit(
    State(app): State<AppState>,
    Path(month): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let ctx = Ctx::new(&headers, &uri);
    let form = match read_form(&ctx, &headers, &body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let parsed = Month::parse(&month);
    let back = parsed.map_or_else(|| "/finance/periods".to_owned(), |m| format!("/finance/periods/{}", m.key()));
    let p = match require_user_back(&app, &ctx, &headers, &back).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Some(month) = parsed else { return ctx.error_page(Some(&p), None, &invalid_month()) };
    if p.role != StaffRole::Finance {
        return read_only(&ctx, &p, Some(month));
    }
    let body = ClosePeriod {
        override_open_discrepancies: field(&form, "override_open_discrepancies").is_some_and(|v| !v.is_empty()),
        reason: field(&form, "reason").map(str::trim).filter(|r| !r.is_empty()).map(str::to_owned),
    };
    match close_period(&app, &p, &month.key(), &body).await {
        Ok(_) => ctx.redirect(&format!("/finance/periods/{}?closed=1", month.key())),
        Err(e) => {
            let mut notice = error_flash(&ctx, "", &e);
            let ids: Vec<i64> = e
                .details
                .as_ref()
                .and_then(|d| d.get("ids"))
                .and_then(|v| v.as_array())
                .map(|a| a.iter().filter_map(serde_json::Value::as_i64).collect())
                .unwrap_or_default();
            if !ids.is_empty() {
                let links: Vec<String> = ids
                    .iter()
                    .map(|id| format!("<a href=\"/finance/reconciliation?month={}#d-{id}\">#{id}</a>", month.key()))
                    .collect();
                let _ = write!(
                    notice,
                    "<p class=\"open-ids\">{} {}</p>",
                    esc(ctx.t("Sai lệch còn mở:", "Open discrepancies:")),
                    links.join(", ")
                );
            }
            match period(&app, &p, &month.key()).await {
                Ok(v) => ctx.html(e.status, render_period(&ctx, &p, month, &v, Some(notice))),
                Err(_) => ctx.error_page(Some(&p), Some(month), &e),
            }
        }
    }
}

// ---- assets ----------------------------------------------------------------------------------

async fn stylesheet() -> Response {
    let mut r = CSS.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn esc_escapes_markup_and_quotes() {
        assert_eq!(
            esc("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
        assert_eq!(esc("Lý Thường Kiệt"), "Lý Thường Kiệt");
        assert_eq!(esc(""), "");
    }

    #[test]
    fn money_groups_thousands_with_dots() {
        assert_eq!(money(1_250_000), "1.250.000 ₫");
        assert_eq!(money(0), "0 ₫");
        assert_eq!(money(999), "999 ₫");
        assert_eq!(money(1_000), "1.000 ₫");
        assert_eq!(money(-5_000), "-5.000 ₫");
        assert_eq!(money(2_000_000_000), "2.000.000.000 ₫");
        assert_eq!(group_thousands(i64::MIN), "-9.223.372.036.854.775.808");
        assert_eq!(group_thousands(123_456), "123.456");
        assert_eq!(money_opt(None), "—");
    }

    #[test]
    fn bars_scale_to_the_largest_value() {
        let (base, bars) = scale_bars(&[100, 50, 0, 1], 400);
        assert_eq!(base, 0);
        assert_eq!(
            bars,
            vec![Bar { x: 0, width: 400 }, Bar { x: 0, width: 200 }, Bar { x: 0, width: 0 }, Bar { x: 0, width: 4 }]
        );
        // A tiny value still shows.
        let (_, bars) = scale_bars(&[1_000_000, 1], 100);
        assert_eq!(bars[1], Bar { x: 0, width: 1 });
        // Nothing, or only zeros: no bars.
        assert_eq!(scale_bars(&[], 100), (0, vec![]));
        assert_eq!(scale_bars(&[0, 0], 100), (0, vec![Bar { x: 0, width: 0 }; 2]));
        // Huge values do not overflow.
        let (_, bars) = scale_bars(&[i64::MAX, i64::MAX / 2], 100);
        assert_eq!(bars[0].width, 100);
        assert_eq!(bars[1].width, 49);
    }

    #[test]
    fn negative_bars_grow_left_of_the_baseline() {
        let (base, bars) = scale_bars(&[300, -100], 400);
        assert_eq!(base, 100);
        assert_eq!(bars, vec![Bar { x: 100, width: 300 }, Bar { x: 0, width: 100 }]);
        let (base, bars) = scale_bars(&[-10, -20], 100);
        assert_eq!(base, 100);
        assert_eq!(bars, vec![Bar { x: 50, width: 50 }, Bar { x: 0, width: 100 }]);
        for (v, b) in [(300, bars[0]), (-100, bars[1])] {
            assert!(b.x + b.width <= 400, "{v}: {b:?}");
        }
    }

    #[test]
    fn chart_escapes_labels_and_shows_money() {
        let svg = bar_chart("Doanh thu <b>", &[("Hoàn Kiếm".into(), 1_250_000), ("<x>".into(), -5_000)]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("Hoàn Kiếm") && svg.contains("1.250.000 ₫") && svg.contains("-5.000 ₫"));
        assert!(svg.contains("&lt;x&gt;") && svg.contains("Doanh thu &lt;b&gt;"));
        assert!(!svg.contains("<x>") && !svg.contains("<b>"));
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(svg.contains("class=\"bar neg\"") && svg.contains("class=\"axis\""));
    }

    #[test]
    fn forms_decode_percent_and_plus() {
        let f = parse_urlencoded("note=%C4%90%C3%A3+n%E1%BB%99p+%26+ok&month=2026-11&empty=&flag");
        assert_eq!(field(&f, "note"), Some("Đã nộp & ok"));
        assert_eq!(field(&f, "month"), Some("2026-11"));
        assert_eq!(field(&f, "empty"), Some(""));
        assert_eq!(field(&f, "flag"), Some(""));
        assert_eq!(field(&f, "missing"), None);
        // Broken escapes stay as they are.
        assert_eq!(parse_urlencoded("a=%zz%4")[0].1, "%zz%4");
        assert_eq!(parse_urlencoded("a=100%25")[0].1, "100%");
        let round = "Trần Hưng Đạo & co/?=#";
        assert_eq!(percent_decode(&enc(round)), round);
        assert_eq!(enc("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn cookies_are_found_by_name() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; iparking_finance=ipk_staff_abc"));
        h.append(header::COOKIE, HeaderValue::from_static("iparking_finance_lang=en"));
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("ipk_staff_abc"));
        assert_eq!(cookie(&h, LANG_COOKIE).as_deref(), Some("en"));
        assert_eq!(cookie(&h, "b"), None);
    }

    #[test]
    fn posts_need_fetch_metadata_or_origin_from_this_host() {
        let h = |origin: Option<&'static str>, site: Option<&'static str>| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
            if let Some(o) = origin {
                h.insert(header::ORIGIN, HeaderValue::from_static(o));
            }
            if let Some(s) = site {
                h.insert("sec-fetch-site", HeaderValue::from_static(s));
            }
            post_allowed(&h)
        };
        let ours = Some("http://127.0.0.1:8080");
        // A browser's form post from our page, old and new.
        assert!(h(ours, Some("same-origin")));
        assert!(h(ours, None));
        assert!(h(None, Some("same-origin")));
        assert!(h(ours, Some("none")));
        // Neither header: no page of ours sent it.
        assert!(!h(None, None));
        // Another site, by either header.
        for site in ["cross-site", "same-site", "CROSS-SITE", "bogus"] {
            assert!(!h(ours, Some(site)), "{site}");
            assert!(!h(None, Some(site)), "{site}");
        }
        assert!(!h(Some("http://evil.example"), Some("same-origin")));
        assert!(!h(Some("http://evil.example"), None));
        assert!(!h(Some("null"), None));
    }

    #[test]
    fn origin_must_name_the_host() {
        let h = |origin: Option<&'static str>, host: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_static(host));
            if let Some(o) = origin {
                h.insert(header::ORIGIN, HeaderValue::from_static(o));
            }
            origin_allowed(&h)
        };
        assert!(!h(None, "127.0.0.1:8080"));
        assert!(h(Some("http://127.0.0.1:8080"), "127.0.0.1:8080"));
        assert!(h(Some("https://finance.hanoi.gov.vn"), "finance.hanoi.gov.vn"));
        assert!(h(Some("https://finance.hanoi.gov.vn:443"), "finance.hanoi.gov.vn"));
        assert!(h(Some("http://[::1]:8080"), "[::1]:8080"));
        assert!(!h(Some("http://127.0.0.1:9090"), "127.0.0.1:8080"));
        assert!(!h(Some("http://evil.example"), "127.0.0.1:8080"));
        assert!(!h(Some("null"), "127.0.0.1:8080"));
        assert!(!h(Some("http://127.0.0.1:8080.evil.example"), "127.0.0.1:8080"));
        assert!(!h(Some("ftp://127.0.0.1:8080"), "127.0.0.1:8080"));
    }

    #[test]
    fn login_returns_only_to_dashboard_pages() {
        assert_eq!(safe_next(Some("/finance/reconciliation?month=2026-11")), "/finance/reconciliation?month=2026-11");
        assert_eq!(safe_next(Some("/finance")), "/finance");
        assert_eq!(safe_next(Some("https://evil.example/")), "/finance");
        assert_eq!(safe_next(Some("//evil.example")), "/finance");
        assert_eq!(safe_next(Some("/finance//evil.example")), "/finance");
        assert_eq!(safe_next(Some("/financeevil")), "/finance");
        assert_eq!(safe_next(Some("/finance/logout")), "/finance");
        assert_eq!(safe_next(None), "/finance");
    }

    #[test]
    fn months_parse_and_step() {
        let m = Month::parse("2026-11").unwrap();
        assert_eq!((m.first().to_string(), m.last().to_string()), ("2026-11-01".into(), "2026-11-30".into()));
        assert_eq!(m.next().key(), "2026-12");
        assert_eq!(m.next().next().key(), "2027-01");
        assert_eq!(Month::parse("2024-02").unwrap().last().to_string(), "2024-02-29");
        assert_eq!(Month::parse("2026-01").unwrap().prev().key(), "2025-12");
        for bad in ["2026-13", "2026-00", "2026-1", "26-11", "2026/11", "2026-11-01", "+202-11", ""] {
            assert_eq!(Month::parse(bad), None, "{bad}");
        }
        assert_eq!(Month::of(NaiveDate::from_ymd_opt(2026, 11, 17).unwrap()).key(), "2026-11");
        assert_eq!(m.label(Lang::Vi), "tháng 11/2026");
        assert_eq!(m.label(Lang::En), "November 2026");
    }

    #[test]
    fn language_links_keep_the_query() {
        let uri: Uri = "/finance/reconciliation?month=2026-11&lang=vi".parse().unwrap();
        let ctx = Ctx::new(&HeaderMap::new(), &uri);
        assert_eq!(ctx.lang, Lang::Vi);
        assert_eq!(ctx.other_lang_href(), "/finance/reconciliation?month=2026-11&lang=en");
        assert_eq!(ctx.here(), "/finance/reconciliation?month=2026-11");
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("iparking_finance_lang=en"));
        let ctx = Ctx::new(&h, &"/finance".parse().unwrap());
        assert_eq!((ctx.lang, ctx.remember_lang), (Lang::En, false));
        assert_eq!(ctx.other_lang_href(), "/finance?lang=vi");
    }
}
