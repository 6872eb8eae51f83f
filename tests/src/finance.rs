//! Helpers of the finance suite (`tests/tests/finance_api.rs`): staff tokens, raw JSON and
//! CSV calls, Hanoi local days and months, revenue in each channel, and revenue figures read
//! straight from the ledger's postings (so a report is checked against the books, never
//! against numbers typed into the test).

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Utc};
use iparking_mobile_api::{
    CashPaymentView, Channel, Client, OpenShift, QuoteRequest, SessionView, StaffRole, StartSession, VehicleClass,
    WardenStartSession, WardenToken,
};
use serde_json::Value;

use crate::{MOBIFONE_SECRET, TestApp, VIETTEL_SECRET, raw};

/// A staff member made for a test, with the token for raw requests.
#[derive(Debug, Clone)]
pub struct Staff {
    /// Staff id.
    pub id: i64,
    /// Display name (what `resolved_by`, `closed_by`, `author` … show).
    pub name: String,
    /// Bearer token.
    pub token: String,
}

/// A staff member of `role` limited to `districts` (none: city-wide), named `name`.
pub async fn staff(t: &TestApp, role: StaffRole, districts: &[&str], name: &str) -> Staff {
    let districts: Vec<String> = districts.iter().map(|d| (*d).to_owned()).collect();
    let created = iparking::app::staff::add_staff(
        &t.app,
        iparking::app::staff::StaffSpec::new(name.to_owned(), role, &districts),
    )
    .await
    .expect("add staff");
    Staff { id: created.id, name: created.name, token: created.token }
}

/// City-wide finance staff.
pub async fn finance(t: &TestApp, name: &str) -> Staff {
    staff(t, StaffRole::Finance, &[], name).await
}

// ---- time --------------------------------------------------------------------------------

/// Asia/Ho_Chi_Minh: UTC+7, no daylight saving.
pub fn hanoi() -> FixedOffset {
    FixedOffset::east_opt(7 * 3600).expect("offset")
}

/// The server's now.
pub fn now(t: &TestApp) -> DateTime<Utc> {
    iparking::Clock::now(t.clock.as_ref())
}

/// The server's local day.
pub fn today(t: &TestApp) -> NaiveDate {
    now(t).with_timezone(&hanoi()).date_naive()
}

/// `YYYY-MM` of a day.
pub fn month_of(d: NaiveDate) -> String {
    d.format("%Y-%m").to_string()
}

/// The first day of `d`'s month.
pub fn month_start(d: NaiveDate) -> NaiveDate {
    NaiveDate::from_ymd_opt(d.year(), d.month(), 1).expect("date")
}

/// The first day of the month after `d`'s.
pub fn next_month_start(d: NaiveDate) -> NaiveDate {
    let (y, m) = if d.month() == 12 { (d.year() + 1, 1) } else { (d.year(), d.month() + 1) };
    NaiveDate::from_ymd_opt(y, m, 1).expect("date")
}

/// The first day of the month before `d`'s.
pub fn previous_month_start(d: NaiveDate) -> NaiveDate {
    let (y, m) = if d.month() == 1 { (d.year() - 1, 12) } else { (d.year(), d.month() - 1) };
    NaiveDate::from_ymd_opt(y, m, 1).expect("date")
}

/// The last day of `d`'s month.
pub fn month_end(d: NaiveDate) -> NaiveDate {
    next_month_start(d) - Duration::days(1)
}

/// A local wall-clock time as UTC.
pub fn local(at: NaiveDateTime) -> DateTime<Utc> {
    hanoi().from_local_datetime(&at).single().expect("local time").with_timezone(&Utc)
}

/// Moves the server's clock forward to a local time (which must be ahead).
pub fn advance_to(t: &TestApp, at: NaiveDateTime) {
    let by = local(at) - now(t);
    assert!(by > Duration::zero(), "the test clock only moves forward (to {at}, now {})", now(t));
    t.clock.advance(by);
}

// ---- HTTP --------------------------------------------------------------------------------

fn authed(req: reqwest::RequestBuilder, token: Option<&str>) -> reqwest::RequestBuilder {
    match token {
        Some(tok) => req.bearer_auth(tok),
        None => req,
    }
}

/// `GET path` (JSON answer).
pub async fn get(t: &TestApp, token: Option<&str>, path: &str) -> (u16, Value) {
    raw(authed(reqwest::Client::new().get(t.url(path)), token)).await
}

/// `POST path` with a JSON body and an optional Idempotency-Key.
pub async fn post(t: &TestApp, token: Option<&str>, path: &str, key: Option<&str>, body: &Value) -> (u16, Value) {
    let mut req = authed(reqwest::Client::new().post(t.url(path)), token).json(body);
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    raw(req).await
}

/// `POST path` with a `text/csv` body and an optional Idempotency-Key.
pub async fn post_csv(t: &TestApp, token: Option<&str>, path: &str, key: Option<&str>, csv: &str) -> (u16, Value) {
    let mut req = authed(reqwest::Client::new().post(t.url(path)), token)
        .header("content-type", "text/csv; charset=utf-8")
        .body(csv.to_owned());
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    raw(req).await
}

/// A raw download: status, headers and the body's bytes.
pub async fn download(t: &TestApp, token: &str, path: &str) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let resp = reqwest::Client::new().get(t.url(path)).bearer_auth(token).send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.expect("body").to_vec();
    (status, headers, body)
}

// ---- revenue in each channel -------------------------------------------------------------

/// A car start for `turns` turns paid from the wallet.
pub fn car(point: &str, plate: &str, turns: u32) -> StartSession {
    StartSession {
        point_code: point.into(),
        plate: plate.into(),
        vehicle_class: Some(VehicleClass::Car),
        minutes: None,
        turns: Some(turns),
        payment: None,
        card_id: None,
        lat: None,
        lon: None,
    }
}

/// A car start for `minutes` minutes paid from the wallet.
pub fn car_minutes(point: &str, plate: &str, minutes: u32) -> StartSession {
    StartSession { minutes: Some(minutes), turns: None, ..car(point, plate, 1) }
}

/// A wallet session (asserting it started).
pub async fn wallet_session(d: &Client, body: &StartSession, key: &str) -> SessionView {
    d.start_session(body, key).await.unwrap_or_else(|e| panic!("wallet session at {}: {e}", body.point_code))
}

/// The SMS price of one turn at a point now.
pub async fn sms_price(t: &TestApp, point: &str) -> i64 {
    let q = QuoteRequest {
        point_code: point.into(),
        vehicle_class: VehicleClass::Car,
        start: Some(now(t)),
        minutes: Some(60),
        amount: None,
        channel: Some(Channel::Sms),
    };
    t.client.quote(&q).await.expect("sms quote").total
}

/// Delivers an SMS from a carrier (`viettel` or `mobifone`) buying one turn for `plate` at
/// `point` (e.g. `HK010`); asserts the turn was sold and returns `(session id, price)`.
pub async fn sms_turn(t: &TestApp, carrier: &str, message_id: &str, point: &str, plate: &str) -> (i64, i64) {
    let secret = match carrier {
        "viettel" => VIETTEL_SECRET,
        "mobifone" => MOBIFONE_SECRET,
        other => panic!("no test carrier {other}"),
    };
    let price = sms_price(t, point).await;
    let district: String = point.chars().take_while(char::is_ascii_alphabetic).collect();
    let number = &point[district.len()..];
    let text = format!("IP{}{district} {number} {plate}", price / 1000);
    let (status, body) = raw(reqwest::Client::new()
        .post(t.url(&format!("/webhooks/sms/{carrier}")))
        .header("X-Carrier-Secret", secret)
        .json(&serde_json::json!({"message_id": message_id, "from": "0987654321", "text": text})))
    .await;
    assert_eq!(status, 200, "sms {message_id}: {body}");
    assert!(matches!(body["outcome"].as_str(), Some("started" | "extended")), "sms {message_id} ({text}): {body}");
    let session = body["session_id"].as_i64().unwrap_or_else(|| panic!("sms {message_id}: no session: {body}"));
    (session, price)
}

/// A warden of `districts`, logged in, with an open shift.
pub async fn warden_on_shift(t: &TestApp, username: &str, districts: &[&str]) -> (Client, WardenToken, i64) {
    let (w, login) = t.warden_with(StaffRole::Warden, username, districts, &[]).await;
    let shift = w.open_shift(&OpenShift { note: None }, &format!("open-{username}")).await.expect("open shift");
    (w, login, shift.id)
}

/// Cash taken by a warden for a car at `point` (asserting it was applied).
pub async fn cash_session(w: &Client, point: &str, plate: &str, turns: u32, key: &str) -> CashPaymentView {
    let body = WardenStartSession {
        point_code: point.into(),
        plate: plate.into(),
        vehicle_class: VehicleClass::Car,
        turns: Some(turns),
        minutes: None,
        payment: Default::default(),
    };
    w.warden_start_session(&body, key).await.unwrap_or_else(|e| panic!("cash at {point}: {e}"))
}

// ---- the books ---------------------------------------------------------------------------

/// `FROM postings p JOIN accounts a … JOIN points/streets/districts` for the revenue postings
/// (the points' revenue accounts), filtered by `filter` (SQL over `p`, `a`, `pt`, `s`, `d`).
fn revenue_from(filter: &str) -> String {
    format!(
        "FROM postings p JOIN accounts a ON a.id = p.account_id \
         JOIN points pt ON CAST(pt.id AS TEXT) = a.ref \
         JOIN streets s ON s.id = pt.street_id JOIN districts d ON d.id = s.district_id \
         WHERE a.kind = 'point_revenue' AND ({filter})"
    )
}

/// Sum of the revenue postings matching `filter` (`1=1`: all of them).
pub async fn ledger_gross(t: &TestApp, filter: &str) -> i64 {
    t.sql_i64(&format!("SELECT CAST(COALESCE(SUM(p.amount), 0) AS BIGINT) {}", revenue_from(filter))).await
}

/// Number of revenue postings matching `filter`.
pub async fn ledger_postings(t: &TestApp, filter: &str) -> i64 {
    t.sql_i64(&format!("SELECT COUNT(*) {}", revenue_from(filter))).await
}

/// The carriers' share in the books: minus the sum of the carrier fee postings.
pub async fn ledger_carrier_share(t: &TestApp) -> i64 {
    -t.sql_i64(
        "SELECT CAST(COALESCE(SUM(p.amount), 0) AS BIGINT) FROM postings p JOIN accounts a ON a.id = p.account_id \
         WHERE a.kind = 'carrier_fee'",
    )
    .await
}

/// Balance of one account (0 when it does not exist).
pub async fn balance(t: &TestApp, kind: &str, reference: &str) -> i64 {
    t.sql_i64(&format!(
        "SELECT CAST(COALESCE(SUM(balance), 0) AS BIGINT) FROM accounts WHERE kind = '{kind}' AND ref = '{reference}'"
    ))
    .await
}

/// Sum of the balances of every account of a kind.
pub async fn kind_balance(t: &TestApp, kind: &str) -> i64 {
    t.sql_i64(&format!("SELECT CAST(COALESCE(SUM(balance), 0) AS BIGINT) FROM accounts WHERE kind = '{kind}'")).await
}

/// Rows of a table (with an optional `WHERE …` tail).
pub async fn count(t: &TestApp, table_and_filter: &str) -> i64 {
    t.sql_i64(&format!("SELECT COUNT(*) FROM {table_and_filter}")).await
}

/// A database id by SQL (e.g. a point's id by code).
pub async fn point_id(t: &TestApp, code: &str) -> i64 {
    t.sql_i64(&format!("SELECT id FROM points WHERE code = '{code}'")).await
}

/// A street's id by its name.
pub async fn street_id(t: &TestApp, name: &str) -> i64 {
    t.sql_i64(&format!("SELECT id FROM streets WHERE name = '{name}'")).await
}

/// Logs a driver in through the OTP flow, keeping the token for raw requests.
pub async fn driver_login(t: &TestApp, phone: &str) -> (Client, String) {
    t.client.send_otp(phone).await.expect("send otp");
    let e164 = iparking::domain::phone::Phone::parse(phone).expect("phone").as_str().to_owned();
    let text = t.sms.last_to(&e164).expect("an SMS with the code");
    let code: String = text.chars().filter(char::is_ascii_digit).take(6).collect();
    let token = t.client.login(phone, &code).await.expect("login").token;
    (t.client.with_token(token.clone()), token)
}

/// A random UUID (version 4) for handheld sync actions.
pub fn uuid() -> String {
    use rand::Rng;
    let mut n: u128 = rand::rng().random();
    n = (n & !(0xf << 76)) | (0x4 << 76);
    n = (n & !(0x3 << 62)) | (0x2 << 62);
    let h = format!("{n:032x}");
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// A local time as RFC 3339 with the +07:00 offset (carrier files).
pub fn rfc3339_local(at: DateTime<Utc>) -> String {
    at.with_timezone(&hanoi()).format("%Y-%m-%dT%H:%M:%S+07:00").to_string()
}
