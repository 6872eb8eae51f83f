//! Black-box tests of the wardens' handheld API (docs/wardens.md): password login, scope,
//! plate checks and their durable record, point rosters, cash paid on a driver's behalf with
//! slips, violations with photo evidence, offline sync and shifts, on SQLite + in-process
//! live state and on PostgreSQL + Redis (and two nodes sharing PostgreSQL and Redis).
//!
//! Prices depend on the Hanoi time of day and the tests run at the real time: expected
//! amounts come from the tariff engine (the session's tariff and start), never hard-coded.
//! Money is checked three ways: the answers, the accounts, and the ledger invariants.

use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use iparking_mobile_api::{
    CashPaymentView, Channel, CheckVerdict, Client, ClientError, CloseShift, OpenShift, PhotoUpload, ReceiptStatus,
    ShiftStatus, ShiftView, StaffRole, StartSession, SyncAction, SyncActionResult, SyncBatch, SyncKind, SyncStatus,
    VehicleClass, ViolationForm, ViolationKind, ViolationView, WardenExtendSession, WardenStartSession,
};
use iparking_tests::{Db, Live, Options, TestApp, WARDEN_PASSWORD, assert_error, matrix, raw};
use rand::Rng;
use serde_json::{Value, json};

// ---- helpers ---------------------------------------------------------------------------

/// `(status, code, details)` of an API error.
#[track_caller]
fn api_error(e: ClientError) -> (u16, String, Value) {
    match e {
        ClientError::Api { status, error } => (status, error.code, error.details.unwrap_or(Value::Null)),
        other => panic!("expected an API error, got {other}"),
    }
}

#[track_caller]
fn api_code(e: ClientError) -> (u16, String) {
    let (status, code, _) = api_error(e);
    (status, code)
}

/// Asserts the one error shape and the status, for answers whose code the spec leaves open.
#[track_caller]
fn assert_error_shape(answer: &(u16, Value), status: u16) {
    assert_eq!(answer.0, status, "status of {}", answer.1);
    let code = answer.1["error"]["code"].as_str().unwrap_or("");
    assert!(!code.is_empty(), "error without a code: {}", answer.1);
    assert_error(answer, status, code);
}

/// The server's now.
fn now(t: &TestApp) -> DateTime<Utc> {
    iparking::Clock::now(t.clock.as_ref())
}

/// A car start paid from the wallet.
fn app_start(point: &str, plate: &str, turns: u32) -> StartSession {
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

/// A car session paid in cash to the warden.
fn cash(point: &str, plate: &str, turns: u32) -> WardenStartSession {
    WardenStartSession {
        point_code: point.into(),
        plate: plate.into(),
        vehicle_class: VehicleClass::Car,
        turns: Some(turns),
        minutes: None,
        payment: Default::default(),
    }
}

fn cash_turns(n: u32) -> WardenExtendSession {
    WardenExtendSession { turns: Some(n), ..Default::default() }
}

/// What `add` more turns after `already` cost by a tariff for a stay from `start`.
fn price(t: &TestApp, tariff_id: i64, start: DateTime<Utc>, already: u32, add: u32, channel: Channel) -> i64 {
    let book = t.app.tariffs();
    let tariff = book.get(tariff_id).unwrap_or_else(|| panic!("tariff {tariff_id} is not loaded"));
    tariff.price(start, already, add, channel).expect("price").total.get()
}

async fn point_id(t: &TestApp, code: &str) -> i64 {
    t.app.store.point(code).await.expect("point").unwrap_or_else(|| panic!("no point {code}")).id
}

async fn count(t: &TestApp, sql: &str) -> i64 {
    t.sql_i64(&format!("SELECT COUNT(*) FROM {sql}")).await
}

/// Balance of one account (0 if it does not exist yet).
async fn balance(t: &TestApp, kind: &str, reference: &str) -> i64 {
    t.sql_i64(&format!(
        "SELECT CAST(COALESCE(SUM(balance), 0) AS BIGINT) FROM accounts WHERE kind = '{kind}' AND ref = '{reference}'"
    ))
    .await
}

/// Sum of the balances of all accounts of a kind.
async fn kind_balance(t: &TestApp, kind: &str) -> i64 {
    t.sql_i64(&format!("SELECT CAST(COALESCE(SUM(balance), 0) AS BIGINT) FROM accounts WHERE kind = '{kind}'")).await
}

async fn warden_cash(t: &TestApp, staff_id: i64) -> i64 {
    balance(t, "warden_cash", &staff_id.to_string()).await
}

async fn point_revenue(t: &TestApp, code: &str) -> i64 {
    let id = point_id(t, code).await;
    balance(t, "point_revenue", &id.to_string()).await
}

/// Row counts of everything a warden action can create (checks flushed first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counts {
    sessions: i64,
    collections: i64,
    violations: i64,
    photos: i64,
    checks: i64,
    postings: i64,
    flags: i64,
    shifts: i64,
}

async fn counts(t: &TestApp) -> Counts {
    t.flush_checks().await;
    Counts {
        sessions: count(t, "sessions").await,
        collections: count(t, "cash_collections").await,
        violations: count(t, "violations").await,
        photos: count(t, "violation_photos").await,
        checks: count(t, "plate_checks").await,
        postings: count(t, "postings").await,
        flags: count(t, "warden_flags").await,
        shifts: count(t, "warden_shifts").await,
    }
}

/// Files stored under a directory, recursively.
fn files_under(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() { files_under(&p) } else { 1 }
        })
        .sum()
}

/// `GET path` with a bearer token.
async fn get(t: &TestApp, token: &str, path: &str) -> (u16, Value) {
    raw(reqwest::Client::new().get(t.url(path)).bearer_auth(token)).await
}

/// A raw plate check.
async fn raw_check(t: &TestApp, token: &str, plate: &str, point: &str) -> (u16, Value) {
    raw(reqwest::Client::new()
        .get(t.url("/v1/warden/checks"))
        .query(&[("plate", plate), ("point", point)])
        .bearer_auth(token))
    .await
}

/// `POST path` with a bearer token, an optional Idempotency-Key and a JSON body.
async fn post(t: &TestApp, token: &str, path: &str, key: Option<&str>, body: &Value) -> (u16, Value) {
    let mut req = reqwest::Client::new().post(t.url(path)).bearer_auth(token).json(body);
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    raw(req).await
}

/// A raw login attempt.
async fn raw_login(t: &TestApp, username: &str, password: &str) -> (u16, Value) {
    raw(reqwest::Client::new()
        .post(t.url("/v1/warden/auth/token"))
        .json(&json!({"username": username, "password": password, "device": "raw-handheld"})))
    .await
}

/// A photo part of a raw form: file name, content type, bytes.
type RawPhoto<'a> = (&'a str, &'a str, Vec<u8>);

/// A raw violation form (kind `unpaid`) with `(file name, content type, bytes)` photos.
async fn raw_violation(
    t: &TestApp,
    token: &str,
    key: Option<&str>,
    plate: &str,
    point: &str,
    photos: &[RawPhoto<'_>],
) -> (u16, Value) {
    let fields = [("plate", plate), ("point", point), ("kind", "unpaid"), ("note", "Đỗ xe không trả phí")];
    raw_form(t, token, key, &fields, photos).await
}

/// A raw violation form with exactly these text fields.
async fn raw_form(
    t: &TestApp,
    token: &str,
    key: Option<&str>,
    fields: &[(&str, &str)],
    photos: &[RawPhoto<'_>],
) -> (u16, Value) {
    let mut form = reqwest::multipart::Form::new();
    for (name, value) in fields {
        form = form.text((*name).to_owned(), (*value).to_owned());
    }
    for (name, content_type, bytes) in photos {
        let part = reqwest::multipart::Part::bytes(bytes.clone())
            .file_name((*name).to_owned())
            .mime_str(content_type)
            .expect("mime");
        form = form.part("photo", part);
    }
    let mut req = reqwest::Client::new().post(t.url("/v1/warden/violations")).bearer_auth(token).multipart(form);
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    raw(req).await
}

/// A tiny JPEG: SOI, a JFIF APP0 segment, `seed`, EOI.
fn jpeg(seed: u8) -> Vec<u8> {
    let mut b = vec![0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10];
    b.extend_from_slice(b"JFIF\0");
    b.extend_from_slice(&[1, 1, 0, 0, 1, 0, 1, 0, 0, seed, 0xff, 0xd9]);
    b
}

fn upload(filename: &str, content_type: &str, bytes: Vec<u8>) -> PhotoUpload {
    PhotoUpload { filename: filename.into(), content_type: content_type.into(), bytes }
}

fn form(plate: &str, point: &str, photos: Vec<PhotoUpload>) -> ViolationForm {
    ViolationForm {
        plate: plate.into(),
        point: point.into(),
        kind: ViolationKind::Unpaid,
        note: "Không trả phí đỗ xe".into(),
        lat: Some(21.0257),
        lon: Some(105.846),
        photos,
    }
}

/// A random UUID (version 4), 8-4-4-4-12 hex.
fn uuid() -> String {
    let mut n: u128 = rand::rng().random();
    n = (n & !(0xf << 76)) | (0x4 << 76);
    n = (n & !(0x3 << 62)) | (0x2 << 62);
    let h = format!("{n:032x}");
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

fn action(id: &str, device_time: DateTime<Utc>, kind: SyncKind, payload: Value) -> SyncAction {
    SyncAction { id: id.into(), device_time, kind, payload }
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(c.get(1).copied().unwrap_or(0)) << 8)
            | u32::from(c.get(2).copied().unwrap_or(0));
        let at = |shift: u32| char::from(ALPHABET[((n >> shift) & 63) as usize]);
        out.push(at(18));
        out.push(at(12));
        out.push(if c.len() > 1 { at(6) } else { '=' });
        out.push(if c.len() > 2 { at(0) } else { '=' });
    }
    out
}

/// SHA-256 of `data`, lower-case hex (FIPS 180-4).
fn sha256_hex(data: &[u8]) -> String {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
        0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
        0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
        0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
        0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
        0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
        0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] =
        [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
    let mut msg = data.to_vec();
    let bits = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bits.to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 64];
        for (i, word) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16].wrapping_add(s0).wrapping_add(w[i - 7]).wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for (k, wi) in K.iter().zip(w.iter()) {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh.wrapping_add(s1).wrapping_add(ch).wrapping_add(*k).wrapping_add(*wi);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    }
    h.iter().map(|x| format!("{x:08x}")).collect()
}

#[test]
fn test_helpers_are_right() {
    // Known answers (FIPS 180-4, RFC 4648), so the helpers cannot hide a server bug.
    assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_eq!(sha256_hex(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    for (input, want) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foobar", "Zm9vYmFy")] {
        assert_eq!(base64(input.as_bytes()), want);
    }
    let id = uuid();
    let parts: Vec<usize> = id.split('-').map(str::len).collect();
    assert_eq!(parts, [8, 4, 4, 4, 12], "{id}");
    assert!(id.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
}

/// `PREFIX-YYYYMMDD-NNNNNN` (a receipt: `HK-20261201-000042`; a citation has two prefix parts).
#[track_caller]
fn assert_number(number: &str, prefix: &str) {
    let rest = number.strip_prefix(prefix).unwrap_or_else(|| panic!("{number} does not start with {prefix}"));
    let parts: Vec<&str> = rest.split('-').collect();
    assert_eq!(parts.len(), 2, "{number}");
    assert!(parts[0].len() == 8 && parts[0].chars().all(|c| c.is_ascii_digit()), "{number}");
    assert!(parts[1].len() == 6 && parts[1].chars().all(|c| c.is_ascii_digit()), "{number}");
}

/// Opens a shift for the warden.
async fn open_shift(w: &Client, key: &str) -> ShiftView {
    w.open_shift(&OpenShift { note: Some("Lý Thường Kiệt".into()) }, key).await.expect("open shift")
}

// ---- login -----------------------------------------------------------------------------

matrix!(login_errors_rate_limit_roles_and_logout, |t| {
    let http = reqwest::Client::new();
    let (w, login) = t.warden_with(StaffRole::Warden, "hk.login", &["HK"], &[]).await;
    assert_eq!(
        (login.role, login.districts.clone(), login.streets.clone()),
        (StaffRole::Warden, vec!["HK".into()], vec![])
    );
    assert!(!login.token.is_empty());
    assert!(w.check_plate("30A-123.45", "HK001").await.is_ok());

    // Wrong password and unknown username: the same answer.
    let a = raw_login(&t, "hk.login", "not the password at all").await;
    assert_error(&a, 401, "invalid_credentials");
    let b = raw_login(&t, "nobody.here", WARDEN_PASSWORD).await;
    assert_error(&b, 401, "invalid_credentials");
    assert_eq!(a.1["error"]["message"], b.1["error"]["message"], "nothing tells the two apart");

    // Five failures for one username, then even the right password is refused.
    let (_, victim) = t.warden_with(StaffRole::Warden, "hk.victim", &["HK"], &[]).await;
    for i in 0..5 {
        let a = raw_login(&t, "hk.victim", &format!("wrong password {i}")).await;
        assert_error(&a, 401, "invalid_credentials");
    }
    let a = raw_login(&t, "hk.victim", WARDEN_PASSWORD).await;
    assert_error(&a, 429, "rate_limited");
    // The existing token still works, and other usernames are not locked.
    let v = t.client.with_token(victim.token.clone());
    assert!(v.check_plate("30A-123.45", "HK001").await.is_ok());
    let again = t.client.warden_login("hk.login", WARDEN_PASSWORD, "second-handheld").await.expect("login");
    assert_eq!(again.staff_id, login.staff_id);
    assert_ne!(again.token, login.token);

    // Admin tokens are refused on the warden routes; driver tokens and none are not staff.
    let admin = t.admin.create_staff(&iparking_mobile_api::CreateStaff::new("Admin 2", StaffRole::Admin, vec![])).await;
    let admin_token = admin.expect("admin").token;
    let d = t.driver("0912555001").await;
    let driver_token = {
        t.client.send_otp("0912555002").await.expect("otp");
        let e164 = iparking::domain::phone::Phone::parse("0912555002").expect("phone").as_str().to_owned();
        let text = t.sms.last_to(&e164).expect("sms");
        let code: String = text.chars().filter(char::is_ascii_digit).take(6).collect();
        t.client.login("0912555002", &code).await.expect("login").token
    };
    let calls = |token: Option<&str>| {
        let with = |req: reqwest::RequestBuilder| match token {
            Some(tok) => req.bearer_auth(tok),
            None => req,
        };
        vec![
            with(http.get(t.url("/v1/warden/checks?plate=30A12345&point=HK001"))),
            with(http.get(t.url("/v1/warden/points/HK001/vehicles"))),
            with(http.post(t.url("/v1/warden/shifts")).header("Idempotency-Key", "s").json(&json!({}))),
            with(
                http.post(t.url("/v1/warden/sessions"))
                    .header("Idempotency-Key", "c")
                    .json(&json!({"point_code": "HK001", "plate": "30A12345", "vehicle_class": "car", "turns": 1})),
            ),
            with(http.post(t.url("/v1/warden/sync")).json(&json!({"actions": []}))),
        ]
    };
    for req in calls(Some(&admin_token)) {
        assert_error(&raw(req).await, 403, "forbidden");
    }
    for req in calls(Some(&driver_token)).into_iter().chain(calls(None)) {
        assert_error(&raw(req).await, 401, "unauthorized");
    }
    assert!(d.vehicles().await.is_ok(), "the driver is still logged in");
    assert_eq!(count(&t, "warden_shifts").await, 0);
    assert_eq!(count(&t, "sessions").await, 0);

    // Admins and finance staff cannot log in on a handheld, even with a password.
    for (role, username) in [(StaffRole::Admin, "adm.pw"), (StaffRole::Finance, "fin.pw")] {
        let mut body = iparking_mobile_api::CreateStaff::new(format!("{username} test"), role, vec![]);
        body.username = Some(username.into());
        body.password = Some(WARDEN_PASSWORD.into());
        t.admin.create_staff(&body).await.expect("staff with a password");
        assert_error(&raw_login(&t, username, WARDEN_PASSWORD).await, 403, "forbidden");
    }
    // Passwords are 10–128 characters.
    for (username, password) in [("short.pw", "x".repeat(9)), ("long.pw", "x".repeat(129))] {
        let mut body = iparking_mobile_api::CreateStaff::new("Bad password", StaffRole::Warden, vec!["HK".into()]);
        body.username = Some(username.into());
        body.password = Some(password);
        let created = raw(http.post(t.url("/v1/admin/staff")).bearer_auth(&admin_token).json(&body)).await;
        assert_error_shape(&created, 400);
        assert_error(&raw_login(&t, username, "x".repeat(9).as_str()).await, 401, "invalid_credentials");
    }

    // Logout revokes this token only.
    w.warden_logout().await.expect("logout");
    let a = raw_check(&t, &login.token, "30A-123.45", "HK001").await;
    assert_error(&a, 401, "unauthorized");
    assert_eq!(api_code(w.warden_logout().await.unwrap_err()), (401, "unauthorized".into()));
    let second = t.client.with_token(again.token);
    assert!(second.check_plate("30A-123.45", "HK001").await.is_ok());
});

// ---- scope -----------------------------------------------------------------------------

matrix!(scope_districts_streets_and_inspectors, |t| {
    let (hk, hk_login) = t.warden_with(StaffRole::Warden, "hk1", &["HK"], &[]).await;
    let tok = hk_login.token.clone();
    open_shift(&hk, "shift-hk1").await;
    let d = t.funded_driver("0912100001", 300_000).await;
    let dd_session = d.start_session(&app_start("DD001", "30A-100.01", 2), "dd").await.expect("start at DD001");

    // A Hoàn Kiếm warden at a Đống Đa point: refused on every route.
    assert_error(&raw_check(&t, &tok, "30A-100.01", "DD001").await, 403, "forbidden");
    assert_error(&get(&t, &tok, "/v1/warden/points/DD001/vehicles").await, 403, "forbidden");
    let body = json!({"point_code": "DD001", "plate": "30A-100.02", "vehicle_class": "car", "turns": 1});
    assert_error(&post(&t, &tok, "/v1/warden/sessions", Some("dd-cash"), &body).await, 403, "forbidden");
    let path = format!("/v1/warden/sessions/{}/extend", dd_session.id);
    assert_error(&post(&t, &tok, &path, Some("dd-ext"), &json!({"turns": 1})).await, 403, "forbidden");
    let v = raw_violation(
        &t,
        &tok,
        Some("dd-v"),
        "30A-100.03",
        "DD001",
        &[("a.png", "image/png", iparking_tests::tiny_png(1))],
    )
    .await;
    assert_error(&v, 403, "forbidden");
    // Its own district works.
    assert_eq!(hk.check_plate("30A-100.01", "HK001").await.expect("check").verdict, CheckVerdict::Elsewhere);
    assert_eq!(hk.point_roster("HK010").await.expect("roster").point_code, "HK010");
    assert_eq!(count(&t, "cash_collections").await, 0);
    assert_eq!(count(&t, "violations").await, 0);
    assert_eq!(d.session(dd_session.id).await.expect("session").paid_until, dd_session.paid_until);

    // A warden assigned to one street covers its points only.
    let streets = t.admin.streets("HK").await.expect("streets");
    let ltk = streets.iter().find(|s| s.name == "Lý Thường Kiệt").expect("Lý Thường Kiệt");
    let (street_w, street_login) = t.warden_with(StaffRole::Warden, "ltk1", &[], &[ltk.id]).await;
    assert_eq!((street_login.districts.len(), street_login.streets.clone()), (0, vec![ltk.id]));
    for code in ["HK001", "HK009"] {
        assert_eq!(street_w.check_plate("30A-100.09", code).await.expect("check").verdict, CheckVerdict::Unpaid);
    }
    assert!(street_w.point_roster("HK005").await.is_ok());
    let st = street_login.token.clone();
    for code in ["HK010", "HK017", "DD001"] {
        assert_error(&raw_check(&t, &st, "30A-100.09", code).await, 403, "forbidden");
        assert_error(&get(&t, &st, &format!("/v1/warden/points/{code}/vehicles")).await, 403, "forbidden");
    }
    open_shift(&street_w, "shift-ltk1").await;
    let body = json!({"point_code": "HK010", "plate": "30A-100.10", "vehicle_class": "car", "turns": 1});
    assert_error(&post(&t, &st, "/v1/warden/sessions", Some("ltk-cash"), &body).await, 403, "forbidden");
    assert!(street_w.warden_start_session(&cash("HK002", "30A-100.11", 1), "ltk-ok").await.is_ok());

    // An inspector checks and cites anywhere, but takes no cash and has no shifts.
    let (insp, insp_login) = t.warden_with(StaffRole::Inspector, "insp", &[], &[]).await;
    assert_eq!(insp_login.role, StaffRole::Inspector);
    for code in ["HK001", "DD001", "BD001", "HBT001"] {
        assert!(insp.check_plate("30A-100.20", code).await.is_ok(), "inspector at {code}");
    }
    assert_eq!(insp.check_plate("30A-100.01", "DD001").await.expect("check").verdict, CheckVerdict::Valid);
    assert_eq!(insp.point_roster("DD001").await.expect("roster").vehicles.len(), 1);
    let it = insp_login.token.clone();
    let body = json!({"point_code": "HK001", "plate": "30A-100.21", "vehicle_class": "car", "turns": 1});
    assert_error(&post(&t, &it, "/v1/warden/sessions", Some("i-cash"), &body).await, 403, "forbidden");
    let path = format!("/v1/warden/sessions/{}/extend", dd_session.id);
    assert_error(&post(&t, &it, &path, Some("i-ext"), &json!({"turns": 1})).await, 403, "forbidden");
    assert_error(&post(&t, &it, "/v1/warden/shifts", Some("i-shift"), &json!({})).await, 403, "forbidden");
    let cited = insp
        .create_violation(
            &form("30A-100.22", "DD002", vec![upload("p.png", "image/png", iparking_tests::tiny_png(2))]),
            "i-v",
        )
        .await;
    assert_eq!(cited.expect("inspector cites").point_code, "DD002");
    assert_eq!(count(&t, &format!("warden_shifts WHERE staff_id = {}", insp_login.staff_id)).await, 0);
    assert_eq!(count(&t, "cash_collections").await, 1, "only the street warden's cash");
    t.assert_ledger_sound().await;
});

// ---- plate checks ----------------------------------------------------------------------

matrix!(check_verdicts_valid_elsewhere_grace_expired_unpaid, |t| {
    let w = t.warden("hk.check", &["HK"]).await;
    let d = t.funded_driver("0912200001", 300_000).await;
    let s = d.start_session(&app_start("HK001", "30A-123.45", 1), "s1").await.expect("start");

    let c = w.check_plate("30a 123 45", "hk001").await.expect("check");
    assert_eq!((c.plate.as_str(), c.point_code.as_str(), c.verdict), ("30A12345", "HK001", CheckVerdict::Valid));
    assert_eq!((c.session_id, c.paid_until), (Some(s.id), Some(s.paid_until)));
    assert_eq!(c.grace_until, Some(s.paid_until + Duration::minutes(10)));
    assert_eq!(c.minutes_over, None);
    assert!(c.elsewhere.is_none() && c.near_misses.is_empty(), "{c:?}");
    assert!((c.checked_at - now(&t)).num_seconds().abs() < 60);

    // The same plate at the next point: paid elsewhere, naming where.
    let c = w.check_plate("30A-123.45", "HK002").await.expect("check");
    assert_eq!((c.verdict, c.session_id, c.paid_until), (CheckVerdict::Elsewhere, Some(s.id), Some(s.paid_until)));
    let e = c.elsewhere.expect("elsewhere");
    let hk001 = t.client.point("HK001").await.expect("point");
    assert_eq!((e.code.as_str(), e.name.as_str(), e.street.as_str()), ("HK001", hk001.name.as_str(), "Lý Thường Kiệt"));

    // Nothing for another plate.
    let c = w.check_plate("29H1-234.56", "HK001").await.expect("check");
    assert_eq!((c.plate.as_str(), c.verdict), ("29H123456", CheckVerdict::Unpaid));
    assert_eq!((c.session_id, c.paid_until, c.minutes_over), (None, None, None));
    assert!(c.elsewhere.is_none());

    // A session the driver stopped answers unpaid.
    let stopped = d.start_session(&app_start("HK003", "51F-123.45", 2), "s2").await.expect("start");
    d.stop_session(stopped.id, "stop").await.expect("stop");
    assert_eq!(w.check_plate("51F-123.45", "HK003").await.expect("check").verdict, CheckVerdict::Unpaid);

    // Five minutes past the paid time: grace.
    t.clock.advance(Duration::minutes(65));
    let c = w.check_plate("30A12345", "HK001").await.expect("check");
    assert_eq!((c.verdict, c.minutes_over, c.session_id), (CheckVerdict::Grace, Some(5), Some(s.id)));
    assert_eq!((c.paid_until, c.grace_until), (Some(s.paid_until), Some(s.paid_until + Duration::minutes(10))));

    // Fifteen minutes past: expired (whether or not the expiry job ended it yet).
    t.clock.advance(Duration::minutes(10));
    let c = w.check_plate("30A12345", "HK001").await.expect("check");
    assert_eq!((c.verdict, c.minutes_over, c.session_id), (CheckVerdict::Expired, Some(15), Some(s.id)));
    assert_eq!(c.paid_until, Some(s.paid_until));
    // After the expiry job ran, still expired, from the database.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while t.app.store.session(s.id).await.expect("session").expect("row").active {
        assert!(std::time::Instant::now() < deadline, "the session did not expire");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let c = w.check_plate("30A12345", "HK001").await.expect("check");
    assert_eq!((c.verdict, c.minutes_over, c.session_id), (CheckVerdict::Expired, Some(15), Some(s.id)));
    // Elsewhere it is no longer paid at all.
    assert_eq!(w.check_plate("30A12345", "HK002").await.expect("check").verdict, CheckVerdict::Unpaid);

    // Mistakes.
    let (_, login) = t.warden_with(StaffRole::Warden, "hk.check2", &["HK"], &[]).await;
    assert_error(&raw_check(&t, &login.token, "ABC", "HK001").await, 400, "invalid_plate");
    assert_error(&raw_check(&t, &login.token, "30A-123.45", "HK999").await, 404, "point_not_found");
    let en = raw(reqwest::Client::new()
        .get(t.url("/v1/warden/checks?plate=ABC&point=HK001"))
        .bearer_auth(&login.token)
        .header("Accept-Language", "en"))
    .await;
    assert_error(&en, 400, "invalid_plate");
    assert!(en.1["error"]["message"].as_str().unwrap_or("").contains("invalid"), "{}", en.1);
});

matrix!(check_lists_near_misses_parked_at_the_point, |t| {
    let w = t.warden("hk.near", &["HK"]).await;
    let d = t.funded_driver("0912200002", 500_000).await;
    let a = d.start_session(&app_start("HK001", "30A-123.45", 2), "a").await.expect("start");
    let b = d.start_session(&app_start("HK001", "30D-678.90", 2), "b").await.expect("start");
    let c = d.start_session(&app_start("HK001", "29AB-678.12", 2), "c").await.expect("start");
    let far = d.start_session(&app_start("HK005", "30A-123.47", 2), "far").await.expect("start");

    let near = |plate: &'static str| {
        let w = w.clone();
        async move {
            let v = w.check_plate(plate, "HK001").await.expect("check");
            let mut got: Vec<(String, i64)> = v.near_misses.iter().map(|n| (n.plate.clone(), n.session_id)).collect();
            got.sort();
            (v, got)
        }
    };
    // One character off.
    let (v, got) = near("30A-123.46").await;
    assert_eq!(v.verdict, CheckVerdict::Unpaid);
    assert_eq!(got, [("30A12345".to_owned(), a.id)]);
    let m = &v.near_misses[0];
    assert_eq!((m.paid_until, m.verdict), (a.paid_until, CheckVerdict::Valid));
    // One character dropped.
    let (_, got) = near("30A-1234").await;
    assert_eq!(got, [("30A12345".to_owned(), a.id)]);
    // O read for D (both are 0-like).
    let (_, got) = near("30O-678.90").await;
    assert_eq!(got, [("30D67890".to_owned(), b.id)]);
    // 8 read for B.
    let (_, got) = near("29A8-678.12").await;
    assert_eq!(got, [("29AB67812".to_owned(), c.id)]);
    // An exact match lists none (itself excluded); a plate far from all lists none.
    let (v, got) = near("30A-123.45").await;
    assert_eq!((v.verdict, got.len()), (CheckVerdict::Valid, 0), "{v:?}");
    let (_, got) = near("88C-999.99").await;
    assert!(got.is_empty(), "{got:?}");
    // Only plates parked at this point: 30A12347 is at HK005.
    let v = w.check_plate("30A-123.48", "HK005").await.expect("check");
    let plates: Vec<&str> = v.near_misses.iter().map(|n| n.plate.as_str()).collect();
    assert_eq!(plates, ["30A12347"]);
    assert_eq!(v.near_misses[0].session_id, far.id);
});

matrix!(checks_are_recorded_durably, |t| {
    let (w, login) = t.warden_with(StaffRole::Warden, "hk.rec", &["HK"], &[]).await;
    let (insp, insp_login) = t.warden_with(StaffRole::Inspector, "insp.rec", &[], &[]).await;
    let d = t.funded_driver("0912200003", 300_000).await;
    let s = d.start_session(&app_start("HK001", "30A-123.45", 1), "s").await.expect("start");
    let plan = [
        (&w, "30A-123.45", "HK001", CheckVerdict::Valid),
        (&w, "30A-123.45", "HK002", CheckVerdict::Elsewhere),
        (&w, "29H1-234.56", "HK001", CheckVerdict::Unpaid),
        (&w, "29H1-234.56", "HK003", CheckVerdict::Unpaid),
        (&insp, "30A-123.45", "HK001", CheckVerdict::Valid),
        (&insp, "30A-999.99", "DD001", CheckVerdict::Unpaid),
    ];
    for (c, plate, point, verdict) in plan {
        assert_eq!(c.check_plate(plate, point).await.expect("check").verdict, verdict, "{plate} at {point}");
    }
    t.flush_checks().await;
    assert_eq!(count(&t, "plate_checks").await, plan.len() as i64);
    assert_eq!(count(&t, "plate_checks WHERE source = 'online'").await, plan.len() as i64);
    let (ws, is) = (login.staff_id, insp_login.staff_id);
    assert_eq!(count(&t, &format!("plate_checks WHERE staff_id = {ws}")).await, 4);
    assert_eq!(count(&t, &format!("plate_checks WHERE staff_id = {is}")).await, 2);
    let hk001 = point_id(&t, "HK001").await;
    let hk002 = point_id(&t, "HK002").await;
    let valid = format!(
        "plate_checks WHERE verdict = 'valid' AND plate = '30A12345' AND session_id = {} AND point_id = {hk001}",
        s.id
    );
    assert_eq!(count(&t, &valid).await, 2);
    let elsewhere = format!("plate_checks WHERE verdict = 'elsewhere' AND staff_id = {ws} AND point_id = {hk002}");
    assert_eq!(count(&t, &elsewhere).await, 1);
    assert_eq!(count(&t, "plate_checks WHERE verdict = 'unpaid' AND session_id IS NULL").await, 3);
    // More checks after a flush are written too.
    for _ in 0..3 {
        w.check_plate("30A-123.45", "HK001").await.expect("check");
    }
    t.flush_checks().await;
    assert_eq!(count(&t, "plate_checks").await, plan.len() as i64 + 3);
});

// The database's confirmations of checks are asked in batches (`fact_batch`): a batch of
// questions gets, for each question, what that question asked alone gets, in its order,
// whether asked of the store in one call or through the dispatcher by concurrent checks.
matrix!(batched_confirmations_answer_each_question_as_asked_alone, |t| {
    use iparking::store::wardens::{FactAsk, PlateFacts};
    let d = t.funded_driver("0912200009", 500_000).await;
    let a = d.start_session(&app_start("HK001", "30A-123.45", 2), "fa").await.expect("start");
    let b = d.start_session(&app_start("HK002", "51F-678.90", 2), "fb").await.expect("start");
    d.stop_session(b.id, "fb-stop").await.expect("stop");
    let c = d.start_session(&app_start("HK003", "29H1-234.56", 2), "fc").await.expect("start");
    let (hk001, hk002, hk003) = (point_id(&t, "HK001").await, point_id(&t, "HK002").await, point_id(&t, "HK003").await);
    let plate = |p: &str| iparking::domain::plate::Plate::parse(p).expect("plate");
    let now = now(&t);
    let us = Duration::microseconds(1);
    let asks: Vec<FactAsk> = [
        ("30A12345", hk001, now),
        ("30A12345", hk002, now),
        ("51F67890", hk002, now),
        ("29H123456", hk001, now),
        ("29H123456", hk003, now),
        ("88C99999", hk001, now),
        // At the very start (covered: started_at <= at), and a microsecond before (not).
        ("30A12345", hk001, a.started_at),
        ("30A12345", hk001, a.started_at - us),
        ("30A12345", hk001, now),
    ]
    .into_iter()
    .map(|(p, point_id, at)| FactAsk { plate: plate(p), point_id, at })
    .collect();
    let mut alone = Vec::new();
    for q in &asks {
        alone.push(t.app.store.plate_facts(&q.plate, q.point_id, q.at).await.expect("facts"));
    }
    // What the answers are, so the comparison below is not between two empty lists.
    let ids = |f: &PlateFacts| (f.covering.as_ref().map(|s| s.session_id), f.last_here.as_ref().map(|s| s.session_id));
    let expected = [
        (Some(a.id), Some(a.id)),
        (Some(a.id), None),
        (None, Some(b.id)),
        (Some(c.id), None),
        (Some(c.id), Some(c.id)),
        (None, None),
        (Some(a.id), Some(a.id)),
        (None, None),
        (Some(a.id), Some(a.id)),
    ];
    assert_eq!(alone.iter().map(ids).collect::<Vec<_>>(), expected);
    assert_eq!(alone[1].covering.as_ref().map(|s| s.point_code.as_str()), Some("HK001"));

    let batched = t.app.store.plate_facts_batch(&asks).await.expect("batch");
    assert_eq!(batched, alone);
    assert!(t.app.store.plate_facts_batch(&[]).await.expect("empty batch").is_empty());

    // Many checks at once through the dispatcher, in a shuffled order: each gets its own.
    let mut order: Vec<usize> = (0..asks.len()).cycle().take(asks.len() * 12).collect();
    rand::seq::SliceRandom::shuffle(&mut order[..], &mut rand::rng());
    let handles: Vec<_> = order
        .iter()
        .map(|&i| {
            let (app, q) = (t.app.clone(), asks[i].clone());
            tokio::spawn(async move { app.facts.plate_facts(&q.plate, q.point_id, q.at).await })
        })
        .collect();
    for (h, &i) in handles.into_iter().zip(&order) {
        assert_eq!(h.await.expect("task").expect("facts"), alone[i], "question {i}");
    }
});

// The check log's writer hands the store batches of any size: one statement up to a store's
// chunk (500 rows on SQLite, 10,000 in one `COPY` on PostgreSQL), several in one transaction
// past that. Every row lands whole, NULL session ids and exact times included.
matrix!(check_batches_of_any_size_are_written_whole, |t| {
    use iparking::{domain::check::CheckSource, store::wardens::CheckRecord};
    let (_, login) = t.warden_with(StaffRole::Warden, "hk.batch", &["HK"], &[]).await;
    let hk001 = point_id(&t, "HK001").await;
    let at = DateTime::parse_from_rfc3339("2026-06-01T08:00:00.123456Z").unwrap().with_timezone(&Utc);
    let row = |i: i64| CheckRecord {
        staff_id: login.staff_id,
        point_id: hk001,
        plate: iparking::domain::plate::Plate::parse(&format!("30A{:05}", i)).unwrap(),
        verdict: if i % 2 == 0 { CheckVerdict::Valid } else { CheckVerdict::Unpaid },
        session_id: (i % 2 == 0).then_some(i),
        near_misses: (i % 3) as u32,
        source: if i % 5 == 0 { CheckSource::Sync } else { CheckSource::Online },
        checked_at: at + Duration::seconds(i),
    };
    for (n, offset) in [(3_i64, 0_i64), (1_201, 10), (10_003, 2_000)] {
        let rows: Vec<CheckRecord> = (offset..offset + n).map(row).collect();
        assert_eq!(t.app.store.record_checks(&rows, None).await.expect("record"), n as u64);
    }
    assert_eq!(count(&t, "plate_checks").await, 11_207);
    let expect = |f: fn(i64) -> bool| {
        [(0_i64, 3_i64), (10, 1_201), (2_000, 10_003)]
            .iter()
            .map(|&(o, n)| (o..o + n).filter(|&i| f(i)).count())
            .sum::<usize>() as i64
    };
    assert_eq!(count(&t, "plate_checks WHERE session_id IS NULL AND verdict = 'unpaid'").await, expect(|i| i % 2 == 1));
    assert_eq!(count(&t, "plate_checks WHERE source = 'sync'").await, expect(|i| i % 5 == 0));
    assert_eq!(count(&t, "plate_checks WHERE near_misses = 2").await, expect(|i| i % 3 == 2));
    // The last row of the middle batch, field by field, its time to the microsecond.
    let last = "plate_checks WHERE plate = '30A01210' AND verdict = 'valid' AND session_id = 1210 \
                AND near_misses = 1 AND source = 'sync'";
    assert_eq!(count(&t, last).await, 1);
    let stored = t.sql_text("SELECT CAST(checked_at AS TEXT) FROM plate_checks WHERE plate = '30A01210'").await;
    let stored = stored.expect("the row's time");
    let stored = DateTime::parse_from_str(stored.replace('T', " ").as_str(), "%Y-%m-%d %H:%M:%S%.f%#z");
    assert_eq!(stored.map(|s| s.with_timezone(&Utc)), Ok(at + Duration::seconds(1_210)), "the time as written");
    let times = t.sql_i64("SELECT CAST(COUNT(DISTINCT checked_at) AS BIGINT) FROM plate_checks").await;
    assert_eq!(times, 11_207, "each row keeps its own time");
});

/// Two server nodes on one PostgreSQL database and one Redis prefix.
async fn two_nodes() -> (TestApp, TestApp) {
    let a = TestApp::start(Db::Postgres, Live::Redis).await;
    let b = TestApp::start_with(
        Db::Postgres,
        Live::Redis,
        Options {
            seed_pilot: false,
            share_db: Some(a.db.clone()),
            redis_prefix: a.redis_prefix.clone(),
            clock: Some(a.clock.clone()),
            ..Options::default()
        },
    )
    .await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_see_each_others_sessions_and_share_the_login_limit() {
    let (a, b) = two_nodes().await;
    let (w, login) = b.warden_with(StaffRole::Warden, "hk.nodes", &["HK"], &[]).await;
    let d = a.funded_driver("0912300001", 300_000).await;
    // Started on node A, checked on node B at once (no sleep).
    let s = d.start_session(&app_start("HK001", "30A-123.45", 1), "s").await.expect("start");
    let c = w.check_plate("30A-123.45", "HK001").await.expect("check");
    assert_eq!((c.verdict, c.session_id, c.paid_until), (CheckVerdict::Valid, Some(s.id), Some(s.paid_until)));
    let c = w.check_plate("30A-123.45", "HK002").await.expect("check");
    assert_eq!(c.verdict, CheckVerdict::Elsewhere);
    assert_eq!(c.elsewhere.map(|e| e.code), Some("HK001".into()));
    // Cash taken on node B is valid on node A at once.
    open_shift(&w, "shift").await;
    let paid = w.warden_start_session(&cash("HK003", "29H1-234.56", 1), "cash").await.expect("cash");
    let wa = a.client.with_token(login.token.clone());
    let c = wa.check_plate("29H1-234.56", "HK003").await.expect("check");
    assert_eq!((c.verdict, c.session_id), (CheckVerdict::Valid, Some(paid.session.id)));
    // Rosters agree on both nodes.
    assert_eq!(wa.point_roster("HK003").await.expect("roster"), w.point_roster("HK003").await.expect("roster"));
    // Failed logins on node A count on node B.
    b.warden_with(StaffRole::Warden, "hk.locked", &["HK"], &[]).await;
    for i in 0..5 {
        assert_error(&raw_login(&a, "hk.locked", &format!("bad password {i}")).await, 401, "invalid_credentials");
    }
    assert_error(&raw_login(&b, "hk.locked", WARDEN_PASSWORD).await, 429, "rate_limited");
    b.flush_checks().await;
    a.flush_checks().await;
    assert_eq!(count(&a, "plate_checks").await, 3);
    a.assert_ledger_sound().await;
}

// ---- roster ----------------------------------------------------------------------------

matrix!(roster_lists_the_vehicles_that_should_be_there, |t| {
    let w = t.warden("hk.roster", &["HK"]).await;
    open_shift(&w, "shift").await;
    let d = t.funded_driver("0912400001", 500_000).await;
    let app = d.start_session(&app_start("HK003", "30A-111.11", 2), "a").await.expect("start");
    let paid = w.warden_start_session(&cash("HK003", "30A-222.22", 1), "c").await.expect("cash");
    d.start_session(&app_start("HK004", "30A-333.33", 1), "b").await.expect("start elsewhere");
    let stopped = d.start_session(&app_start("HK003", "30A-444.44", 1), "s").await.expect("start");
    d.stop_session(stopped.id, "stop").await.expect("stop");

    let point = t.client.point("HK003").await.expect("point");
    let r = w.point_roster("hk003").await.expect("roster");
    assert_eq!(
        (r.point_code.as_str(), r.point_name.as_str(), r.district.as_str()),
        ("HK003", point.name.as_str(), "HK")
    );
    assert_eq!((r.street.as_str(), r.capacity), ("Lý Thường Kiệt", point.capacity));
    assert_eq!((r.occupied, r.free), (2, i64::from(point.capacity) - 2));
    assert_eq!(Some(r.free), point.free_spaces.map(i64::from), "the roster agrees with the point's free spaces");
    let plates: Vec<&str> = r.vehicles.iter().map(|v| v.plate.as_str()).collect();
    assert_eq!(plates, ["30A22222", "30A11111"], "soonest expiry first");
    let (v0, v1) = (&r.vehicles[0], &r.vehicles[1]);
    assert_eq!(
        (v0.session_id, v0.channel.as_str(), v0.vehicle_class),
        (paid.session.id, "warden_cash", VehicleClass::Car)
    );
    assert_eq!((v0.started_at, v0.paid_until), (paid.session.started_at, paid.session.paid_until));
    assert_eq!((v1.session_id, v1.channel.as_str()), (app.id, "app"));
    assert_eq!((v1.started_at, v1.paid_until), (app.started_at, app.paid_until));
    for v in &r.vehicles {
        assert_eq!((v.verdict, v.expires_at), (CheckVerdict::Valid, v.paid_until + Duration::minutes(10)));
    }

    // The one-turn cash session runs into its grace: still there.
    t.clock.advance(Duration::minutes(65));
    let r = w.point_roster("HK003").await.expect("roster");
    let got: Vec<(&str, CheckVerdict)> = r.vehicles.iter().map(|v| (v.plate.as_str(), v.verdict)).collect();
    assert_eq!(got, [("30A22222", CheckVerdict::Grace), ("30A11111", CheckVerdict::Valid)]);
    assert_eq!((r.occupied, r.free), (2, i64::from(r.capacity) - 2));
    // Past its grace: gone.
    t.clock.advance(Duration::minutes(10));
    let r = w.point_roster("HK003").await.expect("roster");
    let plates: Vec<&str> = r.vehicles.iter().map(|v| v.plate.as_str()).collect();
    assert_eq!(plates, ["30A11111"]);
    assert_eq!((r.occupied, r.free), (1, i64::from(r.capacity) - 1));
    assert_eq!(r.occupied, r.vehicles.len() as i64);

    let (_, login) = t.warden_with(StaffRole::Warden, "hk.roster2", &["HK"], &[]).await;
    assert_error(&get(&t, &login.token, "/v1/warden/points/HK999/vehicles").await, 404, "point_not_found");
    t.assert_ledger_sound().await;
});

// ---- cash sessions ---------------------------------------------------------------------

matrix!(cash_sessions_print_slips_and_move_the_cash_in_the_ledger, |t| {
    let (w, login) = t.warden_with(StaffRole::Warden, "hk.cash", &["HK"], &[]).await;
    let tok = login.token.clone();
    let body = json!({"point_code": "HK001", "plate": "30A-246.80", "vehicle_class": "car", "turns": 2});

    // No shift: refused, nothing written.
    let a = post(&t, &tok, "/v1/warden/sessions", Some("no-shift"), &body).await;
    assert_error(&a, 409, "no_open_shift");
    assert_eq!((count(&t, "sessions").await, count(&t, "cash_collections").await), (0, 0));
    let shift = open_shift(&w, "shift-1").await;
    // No key: refused.
    let a = post(&t, &tok, "/v1/warden/sessions", None, &body).await;
    assert_error(&a, 400, "idempotency_key_required");
    let before = counts(&t).await;
    assert_eq!((before.sessions, before.collections), (0, 0));

    let paid = w.warden_start_session(&cash("HK001", "30A-246.80", 2), "cash-1").await.expect("cash session");
    let s = &paid.session;
    assert_eq!(
        (s.channel.as_str(), s.turns, s.plate.as_str(), s.point_code.as_str()),
        ("warden_cash", 2, "30A24680", "HK001")
    );
    assert_eq!(s.paid_until, s.started_at + Duration::hours(2));
    assert_eq!(s.expires_at, s.paid_until + Duration::minutes(10));
    let p1 = price(&t, s.tariff_id, s.started_at, 0, 2, Channel::Warden);
    assert!(p1 > 0);
    assert_eq!(s.amount_charged, p1);
    let r = &paid.receipt;
    assert_number(&r.number, "HK-");
    assert!(!r.verification_code.is_empty());
    assert_eq!(r.qr_payload, format!("IPK1|{}|{}", r.number, r.verification_code));
    assert!(r.verify_path.starts_with("/v1/receipts/"), "{}", r.verify_path);
    assert!(r.verify_path.contains(&r.number), "{}", r.verify_path);
    assert_eq!((r.kind.as_str(), r.status, r.amount, r.turns), ("start", ReceiptStatus::Applied, p1, 2));
    assert_eq!((r.paid_until, r.plate.as_str(), r.point_code.as_str()), (s.paid_until, "30A24680", "HK001"));
    assert_eq!((r.district.as_str(), r.street.as_str()), ("HK", "Lý Thường Kiệt"));
    assert_eq!((r.session_id, r.collected_by, r.shift_id), (Some(s.id), login.staff_id, Some(shift.id)));
    assert_eq!(r.collected_by_name, login.name);
    let row = t.app.store.session(s.id).await.expect("session").expect("row");
    assert_eq!((row.channel.as_str(), row.driver_id, row.amount_charged.get()), ("warden_cash", None, p1));

    // The ledger: the warden holds the cash for the city, the point earned it.
    assert_eq!(warden_cash(&t, login.staff_id).await, -p1);
    assert_eq!(point_revenue(&t, "HK001").await, p1);
    let coll = format!(
        "cash_collections WHERE number = '{}' AND kind = 'start' AND status = 'applied' AND staff_id = {} AND \
         shift_id = {} AND session_id = {} AND amount = {p1} AND turns = 2 AND plate = '30A24680'",
        r.number, login.staff_id, shift.id, s.id
    );
    assert_eq!(count(&t, &coll).await, 1);

    // Anyone checks the slip with its code; a wrong code or none is not found.
    let check = t.client.receipt(&r.number, &r.verification_code).await.expect("receipt");
    assert_eq!(
        (check.number.as_str(), check.status, check.amount, check.turns),
        (r.number.as_str(), ReceiptStatus::Applied, p1, 2)
    );
    assert_eq!(
        (check.plate.as_str(), check.point_code.as_str(), check.paid_until),
        ("•••••680", "HK001", s.paid_until)
    );
    assert_eq!((check.session_paid_until, check.session_active), (Some(s.paid_until), true));
    let http = reqwest::Client::new();
    let wrong = format!("{}x", r.verification_code);
    let a = raw(http.get(t.url(&format!("/v1/receipts/{}", r.number))).query(&[("code", wrong.as_str())])).await;
    assert_error(&a, 404, "receipt_not_found");
    let a = raw(http.get(t.url(&format!("/v1/receipts/{}", r.number)))).await;
    assert_error(&a, 404, "receipt_not_found");
    let a =
        raw(http.get(t.url("/v1/receipts/HK-20200101-999999")).query(&[("code", r.verification_code.as_str())])).await;
    assert_error(&a, 404, "receipt_not_found");

    // A retry with the same key answers the same slip and creates nothing.
    let after_first = counts(&t).await;
    let again = w.warden_start_session(&cash("HK001", "30A-246.80", 2), "cash-1").await.expect("replay");
    assert_eq!(again, paid);
    assert_eq!(counts(&t).await, after_first);
    assert_eq!(warden_cash(&t, login.staff_id).await, -p1);
    // The same plate again with a new key: it is already parked.
    let e = w.warden_start_session(&cash("HK002", "30A-246.80", 1), "cash-dup").await.unwrap_err();
    assert_eq!(api_code(e), (409, "plate_active".into()));
    assert_eq!(counts(&t).await, after_first);

    // An extension in cash: its own slip, paid-until moves.
    let ext = w.warden_extend_session(s.id, &cash_turns(1), "ext-1").await.expect("extend");
    let p2 = price(&t, s.tariff_id, s.started_at, 2, 1, Channel::Warden);
    assert_eq!((ext.session.id, ext.session.turns, ext.session.amount_charged), (s.id, 3, p1 + p2));
    assert_eq!(ext.session.paid_until, s.paid_until + Duration::hours(1));
    let r2 = &ext.receipt;
    assert_number(&r2.number, "HK-");
    assert_ne!(r2.number, r.number);
    assert_eq!((r2.kind.as_str(), r2.amount, r2.turns, r2.paid_until), ("extension", p2, 1, ext.session.paid_until));
    assert_eq!((r2.session_id, r2.shift_id), (Some(s.id), Some(shift.id)));
    let replay = w.warden_extend_session(s.id, &cash_turns(1), "ext-1").await.expect("replay extension");
    assert_eq!(replay, ext);
    // The first slip now shows the session's later paid-until.
    let check = t.client.receipt(&r.number, &r.verification_code).await.expect("receipt");
    assert_eq!((check.paid_until, check.session_paid_until), (s.paid_until, Some(ext.session.paid_until)));
    let ext_path = format!("/v1/warden/sessions/{}/extend", s.id);
    assert_error(&post(&t, &tok, &ext_path, None, &json!({"turns": 1})).await, 400, "idempotency_key_required");

    // A driver's app session extended in cash by the warden: the wallet is untouched.
    let d = t.funded_driver("0912500001", 200_000).await;
    let app = d.start_session(&app_start("HK002", "30A-135.79", 1), "app").await.expect("app start");
    let wallet = d.wallet().await.expect("wallet").balance;
    let ext_app = w.warden_extend_session(app.id, &cash_turns(1), "ext-app").await.expect("cash for an app session");
    let p3 = price(&t, app.tariff_id, app.started_at, 1, 1, Channel::Warden);
    assert_eq!((ext_app.session.channel.as_str(), ext_app.session.turns), ("app", 2));
    assert_eq!(ext_app.session.paid_until, app.paid_until + Duration::hours(1));
    assert_eq!(ext_app.receipt.amount, p3);
    assert_eq!(d.wallet().await.expect("wallet").balance, wallet);
    assert_eq!(d.session(app.id).await.expect("session").paid_until, app.paid_until + Duration::hours(1));

    // Checks see the paid time.
    let c = w.check_plate("30A-246.80", "HK001").await.expect("check");
    assert_eq!(
        (c.verdict, c.session_id, c.paid_until),
        (CheckVerdict::Valid, Some(s.id), Some(ext.session.paid_until))
    );
    let c = w.check_plate("30A-135.79", "HK002").await.expect("check");
    assert_eq!((c.verdict, c.paid_until), (CheckVerdict::Valid, Some(ext_app.session.paid_until)));

    // Every dong is accounted for.
    assert_eq!(warden_cash(&t, login.staff_id).await, -(p1 + p2 + p3));
    assert_eq!(point_revenue(&t, "HK001").await, p1 + p2);
    assert_eq!(point_revenue(&t, "HK002").await, app.amount_charged + p3);
    assert_eq!(count(&t, &format!("cash_collections WHERE staff_id = {}", login.staff_id)).await, 3);
    let sh = w.shift(shift.id).await.expect("shift");
    assert_eq!((sh.status, sh.collections, sh.expected_cash), (ShiftStatus::Open, 3, p1 + p2 + p3));
    t.assert_ledger_sound().await;
});

// ---- violations ------------------------------------------------------------------------

matrix!(violations_need_photo_evidence_and_reach_the_driver, |t| {
    let (w, login) = t.warden_with(StaffRole::Warden, "hk.viol", &["HK"], &[]).await;
    let tok = login.token.clone();
    let owner = t.driver("0912600001").await;
    owner.add_vehicle("30A-777.77", VehicleClass::Car).await.expect("vehicle");
    let other = t.driver("0912600002").await;
    other.add_vehicle("30A-777.78", VehicleClass::Car).await.expect("vehicle");

    let (p, j) = (iparking_tests::tiny_png(1), jpeg(1));
    let photos =
        vec![upload("a.png", "image/png", p.clone()), upload("evidence.png", "application/octet-stream", j.clone())];
    let v = w.create_violation(&form("30A-777.77", "hk001", photos), "v-1").await.expect("violation");
    assert_number(&v.number, "VP-HK-");
    assert_eq!((v.plate.as_str(), v.point_code.as_str(), v.district.as_str()), ("30A77777", "HK001", "HK"));
    assert_eq!((v.kind, v.note.as_str(), v.issued_by), (ViolationKind::Unpaid, "Không trả phí đỗ xe", login.staff_id));
    assert_eq!((v.lat, v.lon, v.street.as_str()), (Some(21.0257), Some(105.846), "Lý Thường Kiệt"));
    let got: Vec<(String, String, i64)> =
        v.photos.iter().map(|f| (f.sha256.clone(), f.content_type.clone(), f.size)).collect();
    assert_eq!(
        got,
        [
            (sha256_hex(&p), "image/png".to_owned(), p.len() as i64),
            (sha256_hex(&j), "image/jpeg".to_owned(), j.len() as i64), // by content, not by name
        ]
    );
    for f in &v.photos {
        assert_eq!(f.path, format!("/v1/warden/photos/{}", f.sha256));
    }
    assert_eq!(w.violation(&v.number).await.expect("read back"), v);
    assert_eq!(count(&t, &format!("violations WHERE number = '{}' AND plate = '30A77777'", v.number)).await, 1);
    assert_eq!(count(&t, "violation_photos").await, 2);
    assert_eq!(files_under(t.db.photos.path()), 2, "each photo stored once");

    // The photo, as staff see it; nobody else.
    assert_eq!(w.photo(&v.photos[0].sha256).await.expect("photo"), ("image/png".to_owned(), p.clone()));
    assert_eq!(w.photo(&v.photos[1].sha256).await.expect("photo"), ("image/jpeg".to_owned(), j.clone()));
    let photo_path = format!("/v1/warden/photos/{}", v.photos[0].sha256);
    assert_error(&raw(reqwest::Client::new().get(t.url(&photo_path))).await, 401, "unauthorized");
    let driver_token = {
        t.client.send_otp("0912600003").await.expect("otp");
        let e164 = iparking::domain::phone::Phone::parse("0912600003").expect("phone").as_str().to_owned();
        let text = t.sms.last_to(&e164).expect("sms");
        let code: String = text.chars().filter(char::is_ascii_digit).take(6).collect();
        t.client.login("0912600003", &code).await.expect("login").token
    };
    assert_error(&get(&t, &driver_token, &photo_path).await, 401, "unauthorized");
    let (_, dd) = t.warden_with(StaffRole::Warden, "dd.viol", &["DD"], &[]).await;
    let a = get(&t, &dd.token, &photo_path).await;
    assert!(matches!(a.0, 403 | 404), "a warden whose scope covers no violation with the photo: {a:?}");
    assert_error_shape(&a, a.0);
    let a = get(&t, &tok, &format!("/v1/warden/photos/{}", sha256_hex(b"never uploaded"))).await;
    assert_error_shape(&a, 404);

    // A retry with the same key: the same citation, nothing new.
    let again = w
        .create_violation(
            &form(
                "30A-777.77",
                "hk001",
                vec![
                    upload("a.png", "image/png", p.clone()),
                    upload("evidence.png", "application/octet-stream", j.clone()),
                ],
            ),
            "v-1",
        )
        .await
        .expect("replay");
    assert_eq!(again, v);
    let payer = t.funded_driver("0912600004", 200_000).await;
    payer.start_session(&app_start("HK001", "30A-888.88", 1), "pay").await.expect("start");
    let base = counts(&t).await;
    assert_eq!((base.violations, base.photos), (1, 2));

    // Refusals: nothing is created.
    let big = {
        let mut b = jpeg(9);
        b.resize(5 * 1024 * 1024 + 4096, 0);
        b
    };
    let cases: Vec<(Vec<RawPhoto<'_>>, u16, &str)> = vec![
        (vec![("big.jpg", "image/jpeg", big)], 413, "photo_too_large"),
        (vec![("x.jpg", "image/jpeg", b"just some text, not a picture".to_vec())], 415, "photo_not_image"),
        (
            vec![
                ("ok.png", "image/png", iparking_tests::tiny_png(7)),
                ("x.png", "image/png", b"GIF89a not a png".to_vec()),
            ],
            415,
            "photo_not_image",
        ),
        ((0..6).map(|i| ("p.png", "image/png", iparking_tests::tiny_png(20 + i))).collect(), 400, "too_many_photos"),
        (vec![], 400, "photos_required"),
    ];
    for (i, (files, status, code)) in cases.into_iter().enumerate() {
        let a = raw_violation(&t, &tok, Some(&format!("bad-{i}")), "30A-777.79", "HK001", &files).await;
        assert_error(&a, status, code);
    }
    let a =
        raw_violation(&t, &tok, None, "30A-777.79", "HK001", &[("a.png", "image/png", iparking_tests::tiny_png(3))])
            .await;
    assert_error(&a, 400, "idempotency_key_required");
    let a = raw_violation(
        &t,
        &tok,
        Some("bad-plate"),
        "XYZ",
        "HK001",
        &[("a.png", "image/png", iparking_tests::tiny_png(3))],
    )
    .await;
    assert_error(&a, 400, "invalid_plate");
    let a = raw_violation(
        &t,
        &tok,
        Some("bad-point"),
        "30A-777.79",
        "HK999",
        &[("a.png", "image/png", iparking_tests::tiny_png(3))],
    )
    .await;
    assert_error(&a, 404, "point_not_found");
    // Bad fields: an unknown kind, a note over 500 characters, a latitude without a longitude.
    let long_note = "x".repeat(501);
    let base_fields = [("plate", "30A-777.79"), ("point", "HK001")];
    let bad_fields: [&[(&str, &str)]; 3] = [
        &[("kind", "parked_badly"), ("note", "")],
        &[("kind", "unpaid"), ("note", long_note.as_str())],
        &[("kind", "unpaid"), ("note", ""), ("lat", "21.0257")],
    ];
    for (i, extra) in bad_fields.into_iter().enumerate() {
        let fields: Vec<(&str, &str)> = base_fields.iter().chain(extra).copied().collect();
        let a = raw_form(
            &t,
            &tok,
            Some(&format!("bad-field-{i}")),
            &fields,
            &[("a.png", "image/png", iparking_tests::tiny_png(3))],
        )
        .await;
        assert_error_shape(&a, 400);
    }
    // A note of exactly 500 characters is fine (checked below with the other counts).
    let max_note: String = "ư".repeat(500);

    // A plate paid at the point is not fined; paid elsewhere it is.
    let a = raw_violation(
        &t,
        &tok,
        Some("paid"),
        "30A-888.88",
        "HK001",
        &[("a.png", "image/png", iparking_tests::tiny_png(4))],
    )
    .await;
    assert_error(&a, 409, "session_valid");
    assert_eq!(counts(&t).await, base, "nothing was created by the refusals");
    assert_eq!(files_under(t.db.photos.path()), 2, "no photo of a refused citation was kept");
    let elsewhere =
        w.create_violation(&form("30A-888.88", "HK002", vec![upload("b.png", "image/png", p.clone())]), "v-2").await;
    let elsewhere = elsewhere.expect("paid at another point: cited");
    assert_ne!(elsewhere.number, v.number);
    assert_eq!(elsewhere.photos[0].sha256, v.photos[0].sha256);
    assert_eq!(files_under(t.db.photos.path()), 2, "the same photo twice is stored once");
    assert_eq!(count(&t, "violation_photos").await, 3);
    let full = ViolationForm { note: max_note.clone(), lat: None, lon: None, ..form("30A-777.80", "HK003", vec![]) };
    let full = ViolationForm { photos: vec![upload("c.jpg", "image/jpeg", jpeg(8))], ..full };
    let noted = w.create_violation(&full, "v-3").await.expect("a 500-character note");
    assert_eq!((noted.note.chars().count(), noted.lat, noted.lon), (500, None, None));

    // The driver with that plate sees that there is a citation (number, time, point; the
    // evidence opens with the ticket: tests/citations_privacy.rs); another does not.
    let mine = owner.citations().await.expect("citations");
    assert_eq!(mine.len(), 1, "{mine:?}");
    let c = &mine[0];
    assert_eq!((c.number.as_str(), c.plate.as_str(), c.point_code.as_str()), (v.number.as_str(), "30A77777", "HK001"));
    assert_eq!((c.point_name.as_str(), c.issued_at), (v.point_name.as_str(), v.issued_at));
    assert!(other.citations().await.expect("citations").is_empty());
    assert!(payer.citations().await.expect("citations").is_empty(), "the plate is not registered by the payer");
});

// ---- offline sync ----------------------------------------------------------------------

/// The stable part of a result (all but `replayed`).
fn stable(r: &SyncActionResult) -> (String, SyncStatus, Option<Value>, Option<String>, Vec<String>) {
    (r.id.clone(), r.status, r.result.clone(), r.error.as_ref().map(|e| e.code.clone()), r.flags.clone())
}

matrix!(sync_applies_each_action_once, |t| {
    let (w, login) = t.warden_with(StaffRole::Warden, "hk.sync", &["HK"], &[]).await;
    let shift = open_shift(&w, "shift").await;
    let at = now(&t);
    let photo = iparking_tests::tiny_png(5);
    let ids: Vec<String> = (0..5).map(|_| uuid()).collect();
    let batch = SyncBatch {
        actions: vec![
            action(&ids[0], at, SyncKind::Check, json!({"plate": "30A-111.22", "point": "HK001"})),
            action(
                &ids[1],
                at,
                SyncKind::CashSession,
                json!({"point_code": "HK002", "plate": "30A-333.44", "vehicle_class": "car", "turns": 1}),
            ),
            action(
                &ids[2],
                at,
                SyncKind::Violation,
                json!({"plate": "30A-555.66", "point": "HK003", "kind": "unpaid", "note": "Ngoại tuyến",
                       "lat": 21.0257, "lon": 105.8473, "photos": [base64(&photo)]}),
            ),
            action(&ids[3], at, SyncKind::Check, json!({"plate": "30A-111.22", "point": "HK999"})),
            action(&ids[4], at, SyncKind::Check, json!({"plate": "30A-111.22", "point": "DD001"})),
        ],
    };
    let before = counts(&t).await;
    let first = w.sync(&batch).await.expect("sync");
    assert_eq!(first.results.len(), 5);
    for (r, id) in first.results.iter().zip(&ids) {
        assert_eq!((&r.id, r.replayed), (id, false), "{r:?}");
    }
    let statuses: Vec<SyncStatus> = first.results.iter().map(|r| r.status).collect();
    use SyncStatus::{Applied, Rejected};
    assert_eq!(statuses, [Applied, Applied, Applied, Rejected, Rejected], "{first:?}");
    assert!(first.results[..3].iter().all(|r| r.flags.is_empty() && r.error.is_none()), "{first:?}");

    let check = first.results[0].result.clone().expect("check result");
    assert_eq!((check["verdict"].as_str(), check["plate"].as_str()), (Some("unpaid"), Some("30A11122")));
    let paid: CashPaymentView =
        serde_json::from_value(first.results[1].result.clone().expect("cash result")).expect("a cash payment");
    assert_eq!((paid.session.channel.as_str(), paid.session.plate.as_str()), ("warden_cash", "30A33344"));
    assert_eq!(paid.session.started_at, at, "an offline session starts at its device time");
    let p = price(&t, paid.session.tariff_id, at, 0, 1, Channel::Warden);
    assert_eq!(
        (paid.receipt.amount, paid.receipt.status, paid.receipt.shift_id),
        (p, ReceiptStatus::Applied, Some(shift.id))
    );
    let cited: ViolationView =
        serde_json::from_value(first.results[2].result.clone().expect("violation result")).expect("a citation");
    assert_eq!((cited.plate.as_str(), cited.point_code.as_str()), ("30A55566", "HK003"));
    assert_eq!(cited.photos.len(), 1);
    assert_eq!(
        (cited.photos[0].sha256.as_str(), cited.photos[0].content_type.as_str()),
        (sha256_hex(&photo).as_str(), "image/png")
    );
    assert_eq!(w.photo(&cited.photos[0].sha256).await.expect("photo").1, photo);
    assert_eq!(first.results[3].error.as_ref().map(|e| e.code.as_str()), Some("point_not_found"));
    assert_eq!(first.results[4].error.as_ref().map(|e| e.code.as_str()), Some("forbidden"));

    let after = counts(&t).await;
    assert_eq!(after.sessions, before.sessions + 1);
    assert_eq!(after.collections, before.collections + 1);
    assert_eq!(after.violations, before.violations + 1);
    assert_eq!(after.checks, before.checks + 1, "the applied check is recorded");
    assert_eq!(count(&t, &format!("plate_checks WHERE source = 'sync' AND staff_id = {}", login.staff_id)).await, 1);
    assert!(after.postings > before.postings);
    assert_eq!(warden_cash(&t, login.staff_id).await, -p);

    // Replayed twice: the same results, nothing done again.
    for _ in 0..2 {
        let again = w.sync(&batch).await.expect("sync again");
        assert_eq!(again.results.len(), 5);
        for (a, f) in again.results.iter().zip(&first.results) {
            assert!(a.replayed, "{a:?}");
            assert_eq!(stable(a), stable(f));
        }
        assert_eq!(counts(&t).await, after);
    }
    assert_eq!(warden_cash(&t, login.staff_id).await, -p);
    assert_eq!(w.shift(shift.id).await.expect("shift").expected_cash, p);
    // The UUIDs are the warden's own: another warden's action with the same id is new.
    let other = t.warden("hk.sync2", &["HK"]).await;
    let r = other
        .sync(&SyncBatch {
            actions: vec![action(&ids[0], at, SyncKind::Check, json!({"plate": "30A-111.22", "point": "HK001"}))],
        })
        .await
        .expect("sync");
    assert_eq!((r.results[0].status, r.results[0].replayed), (Applied, false));
    t.assert_ledger_sound().await;
});

matrix!(sync_refuses_a_malformed_batch_whole, |t| {
    let (w, login) = t.warden_with(StaffRole::Warden, "hk.sync.bad", &["HK"], &[]).await;
    open_shift(&w, "shift").await;
    let tok = login.token.clone();
    let at = now(&t);
    let good = json!({"id": uuid(), "device_time": at, "kind": "cash_session",
                      "payload": {"point_code": "HK004", "plate": "30A-404.04", "vehicle_class": "car", "turns": 1}});
    let check = |id: &str| json!({"id": id, "device_time": at, "kind": "check", "payload": {"plate": "30A-111.22", "point": "HK001"}});
    let before = counts(&t).await;

    // Two actions sharing one id.
    let dup = uuid();
    let a =
        post(&t, &tok, "/v1/warden/sync", None, &json!({"actions": [check(&dup), good.clone(), check(&dup)]})).await;
    // A rule between the batch's items: 422 (decision 0016).
    assert_error_shape(&a, 422);
    assert_eq!(
        (a.1["error"]["details"]["index"].as_i64(), a.1["error"]["details"]["id"].as_str()),
        (Some(2), Some(dup.as_str())),
        "{}",
        a.1
    );
    // A cash session with no plate.
    let bad_id = uuid();
    let no_plate = json!({"id": bad_id, "device_time": at, "kind": "cash_session",
                          "payload": {"point_code": "HK004", "vehicle_class": "car", "turns": 1}});
    let a = post(&t, &tok, "/v1/warden/sync", None, &json!({"actions": [good.clone(), no_plate]})).await;
    assert_error_shape(&a, 400);
    assert_eq!(
        (a.1["error"]["details"]["index"].as_i64(), a.1["error"]["details"]["id"].as_str()),
        (Some(1), Some(bad_id.as_str())),
        "{}",
        a.1
    );
    // A malformed plate, an id that is no UUID, a device time in the future, an unknown kind.
    let bad_plate =
        json!({"id": uuid(), "device_time": at, "kind": "check", "payload": {"plate": "ABC", "point": "HK001"}});
    let not_uuid = json!({"id": "action-1", "device_time": at, "kind": "check", "payload": {"plate": "30A-111.22", "point": "HK001"}});
    let future = json!({"id": uuid(), "device_time": at + Duration::minutes(10), "kind": "check",
                        "payload": {"plate": "30A-111.22", "point": "HK001"}});
    let bad_photo = json!({"id": uuid(), "device_time": at, "kind": "violation",
                           "payload": {"plate": "30A-555.67", "point": "HK003", "kind": "unpaid", "note": "x",
                                       "photos": [base64(b"not an image at all")]}});
    // The action's own refusal decides the status: malformed 400, a clock in the future 422
    // (a rule the document cannot state), a photo that is no image 415 (as on the form).
    for (bad, status) in [(bad_plate, 400), (not_uuid, 400), (future, 422), (bad_photo, 415)] {
        let a = post(&t, &tok, "/v1/warden/sync", None, &json!({"actions": [good.clone(), bad.clone()]})).await;
        assert_error_shape(&a, status);
        assert_eq!(a.1["error"]["details"]["index"].as_i64(), Some(1), "{bad}: {}", a.1);
    }
    let unknown = json!({"id": uuid(), "device_time": at, "kind": "teleport", "payload": {}});
    let a = post(&t, &tok, "/v1/warden/sync", None, &json!({"actions": [good.clone(), unknown]})).await;
    assert_error_shape(&a, 400);
    // More than 100 actions.
    let many: Vec<Value> = (0..101).map(|_| check(&uuid())).collect();
    let a = post(&t, &tok, "/v1/warden/sync", None, &json!({"actions": many})).await;
    assert_error_shape(&a, 400);
    assert_eq!(counts(&t).await, before, "nothing of a refused batch was applied");

    // The good action alone applies: its id was never claimed.
    let a = post(&t, &tok, "/v1/warden/sync", None, &json!({"actions": [good]})).await;
    assert_eq!(a.0, 200, "{}", a.1);
    assert_eq!(
        (a.1["results"][0]["status"].as_str(), a.1["results"][0]["replayed"].as_bool()),
        (Some("applied"), Some(false)),
        "{}",
        a.1
    );
    assert_eq!(counts(&t).await.collections, before.collections + 1);
    t.assert_ledger_sound().await;
});

matrix!(sync_cash_for_a_plate_already_paid_is_held_in_suspense, |t| {
    let (w, login) = t.warden_with(StaffRole::Warden, "hk.conflict", &["HK"], &[]).await;
    let shift = open_shift(&w, "shift").await;
    let d = t.funded_driver("0912700001", 200_000).await;
    let app = d.start_session(&app_start("HK001", "30A-606.06", 2), "app").await.expect("app start");
    t.clock.advance(Duration::minutes(2));
    let revenue = t.app.store.ledger_report().await.expect("report").revenue_vs_sessions;
    let before = counts(&t).await;

    let id = uuid();
    let batch = SyncBatch {
        actions: vec![action(
            &id,
            now(&t) - Duration::minutes(1),
            SyncKind::CashSession,
            json!({"point_code": "HK001", "plate": "30A-606.06", "vehicle_class": "car", "turns": 1}),
        )],
    };
    let r = w.sync(&batch).await.expect("sync");
    let res = &r.results[0];
    assert_eq!((res.id.as_str(), res.status, res.replayed), (id.as_str(), SyncStatus::Conflict, false), "{res:?}");
    assert!(res.flags.iter().any(|f| f == "already_paid"), "{:?}", res.flags);

    // No second session: the driver's stands, untouched.
    assert_eq!(count(&t, "sessions WHERE plate = '30A60606'").await, 1);
    let s = d.session(app.id).await.expect("session");
    assert_eq!((s.paid_until, s.turns, s.amount_charged), (app.paid_until, app.turns, app.amount_charged));
    // The cash is recorded on an unapplied slip, posted to suspense, and flagged.
    let after = counts(&t).await;
    assert_eq!(
        (after.sessions, after.collections, after.flags),
        (before.sessions, before.collections + 1, before.flags + 1)
    );
    let unapplied =
        format!("cash_collections WHERE status = 'unapplied' AND plate = '30A60606' AND staff_id = {}", login.staff_id);
    assert_eq!(count(&t, &unapplied).await, 1);
    let amount = t.sql_i64(&format!("SELECT amount FROM {unapplied}")).await;
    let collection_id = t.sql_i64(&format!("SELECT id FROM {unapplied}")).await;
    assert!(amount > 0);
    let flag = format!(
        "warden_flags WHERE kind = 'already_paid' AND staff_id = {} AND collection_id = {collection_id}",
        login.staff_id
    );
    assert_eq!(count(&t, &flag).await, 1);
    assert_eq!(warden_cash(&t, login.staff_id).await, -amount);
    assert_eq!(kind_balance(&t, "unapplied_cash").await, amount);
    assert_eq!(point_revenue(&t, "HK001").await, app.amount_charged, "no revenue from the unapplied cash");
    assert_eq!(t.app.store.ledger_report().await.expect("report").revenue_vs_sessions, revenue);
    // It belongs to the shift and is owed by the warden.
    let sh = w.shift(shift.id).await.expect("shift");
    assert_eq!((sh.collections, sh.expected_cash), (1, amount));
    // Replayed: the same conflict, nothing again.
    let again = w.sync(&batch).await.expect("sync again");
    assert!(again.results[0].replayed);
    assert_eq!(stable(&again.results[0]), stable(res));
    assert_eq!(counts(&t).await, after);
    t.assert_ledger_sound().await;
});

// ---- shifts ----------------------------------------------------------------------------

matrix!(shifts_open_collect_and_close_with_the_cash, |t| {
    let (w, login) = t.warden_with(StaffRole::Warden, "hk.shift", &["HK"], &[]).await;
    let tok = login.token.clone();
    let (_, other) = t.warden_with(StaffRole::Warden, "hk.shift2", &["HK"], &[]).await;

    let a = post(&t, &tok, "/v1/warden/shifts", Some("open-1"), &json!({"note": "Ca sáng"})).await;
    assert!(matches!(a.0, 200 | 201), "{a:?}");
    let shift: ShiftView = serde_json::from_value(a.1.clone()).expect("a shift");
    assert_eq!(
        (shift.status, shift.staff_id, shift.device.as_str()),
        (ShiftStatus::Open, login.staff_id, "test-handheld")
    );
    assert_eq!((shift.collections, shift.expected_cash, shift.late_cash), (0, 0, 0));
    assert_eq!((shift.closed_at, shift.declared_cash, shift.difference), (None, None, None));
    assert_eq!(shift.note.as_deref(), Some("Ca sáng"));
    // The same key again: the same shift. A second shift: refused.
    let again = post(&t, &tok, "/v1/warden/shifts", Some("open-1"), &json!({"note": "Ca sáng"})).await;
    assert_eq!((again.0, &again.1), (a.0, &a.1));
    assert_error(&post(&t, &tok, "/v1/warden/shifts", Some("open-2"), &json!({})).await, 409, "shift_open");
    assert_error(&post(&t, &tok, "/v1/warden/shifts", None, &json!({})).await, 400, "idempotency_key_required");
    assert_eq!(count(&t, "warden_shifts").await, 1);
    let device = format!("warden_shifts WHERE id = {} AND device = 'test-handheld' AND status = 'open'", shift.id);
    assert_eq!(count(&t, &device).await, 1);

    // Cash adds to what the warden should hand over.
    let a1 = w.warden_start_session(&cash("HK001", "30A-700.01", 2), "c1").await.expect("cash");
    let a2 = w.warden_start_session(&cash("HK010", "30A-700.02", 1), "c2").await.expect("cash");
    let expected = a1.receipt.amount + a2.receipt.amount;
    let sh = w.shift(shift.id).await.expect("shift");
    assert_eq!((sh.collections, sh.expected_cash), (2, expected));
    assert_eq!(warden_cash(&t, login.staff_id).await, -expected);
    let close_path = format!("/v1/warden/shifts/{}/close", shift.id);

    // Refusals change nothing.
    let a = post(&t, &tok, &close_path, Some("close-neg"), &json!({"cash_handed_over": -1})).await;
    assert_error(&a, 400, "invalid_amount");
    let a = post(&t, &other.token, &close_path, Some("close-other"), &json!({"cash_handed_over": expected})).await;
    assert_error_shape(&a, 404);
    assert_error_shape(&get(&t, &other.token, &format!("/v1/warden/shifts/{}", shift.id)).await, 404);
    assert_error(
        &post(&t, &tok, &close_path, None, &json!({"cash_handed_over": expected})).await,
        400,
        "idempotency_key_required",
    );
    assert_eq!(w.shift(shift.id).await.expect("shift"), sh);
    assert_eq!(warden_cash(&t, login.staff_id).await, -expected);
    assert_eq!(kind_balance(&t, "cash_office").await, 0);

    // Closing 5,000 short.
    let handed = expected - 5_000;
    let body = CloseShift { cash_handed_over: handed, note: Some("Thiếu 5.000đ".into()) };
    let closed = w.close_shift(shift.id, &body, "close-1").await.expect("close");
    assert_eq!(
        (closed.status, closed.expected_cash, closed.declared_cash, closed.difference),
        (ShiftStatus::Closed, expected, Some(handed), Some(-5_000))
    );
    assert!(closed.closed_at.is_some());
    assert_eq!(closed.close_note.as_deref(), Some("Thiếu 5.000đ"));
    assert_eq!(w.close_shift(shift.id, &body, "close-1").await.expect("replay"), closed);
    assert_eq!(w.shift(shift.id).await.expect("shift"), closed);
    let row = format!(
        "warden_shifts WHERE id = {} AND status = 'closed' AND expected_cash = {expected} AND declared_cash = {handed} \
         AND difference = -5000",
        shift.id
    );
    assert_eq!(count(&t, &row).await, 1);
    // The handed-over cash is at the cash office; the warden still owes the shortfall.
    assert_eq!(warden_cash(&t, login.staff_id).await, -5_000);
    assert_eq!(kind_balance(&t, "cash_office").await, -handed);

    // Closed: no second close, no cash.
    let a = post(&t, &tok, &close_path, Some("close-2"), &json!({"cash_handed_over": 5_000})).await;
    assert_error(&a, 409, "shift_closed");
    let body = json!({"point_code": "HK002", "plate": "30A-700.03", "vehicle_class": "car", "turns": 1});
    assert_error(&post(&t, &tok, "/v1/warden/sessions", Some("c3"), &body).await, 409, "no_open_shift");
    assert_eq!(warden_cash(&t, login.staff_id).await, -5_000);
    // A new shift starts from nothing.
    let next = open_shift(&w, "open-3").await;
    assert_ne!(next.id, shift.id);
    assert_eq!((next.status, next.collections, next.expected_cash), (ShiftStatus::Open, 0, 0));
    t.assert_ledger_sound().await;
});

// ---- session rules and offline conflicts -----------------------------------------------

/// A one-space point on a test street in Hoàn Kiếm.
async fn one_space_point(t: &TestApp, code: &str) {
    let street = t
        .admin
        .create_street(&iparking_mobile_api::CreateStreet {
            district_code: "HK".into(), name: "Phố Thử Nghiệm".into()
        })
        .await
        .expect("street");
    t.admin
        .create_point(&iparking_mobile_api::CreatePoint {
            code: code.into(),
            name: format!("Điểm thử {code}"),
            street_id: street.id,
            lat: 21.0240,
            lon: 105.8500,
            curb: None,
            capacity: 1,
            vehicle_classes: vec![VehicleClass::Car],
        })
        .await
        .expect("point");
}

matrix!(cash_sessions_follow_the_session_rules, |t| {
    let (w, login) = t.warden_with(StaffRole::Warden, "hk.rules", &["HK"], &[]).await;
    let tok = login.token.clone();
    open_shift(&w, "shift").await;
    one_space_point(&t, "HK901").await;
    t.admin.close_point("HK002").await.expect("close");
    let first = w.warden_start_session(&cash("HK901", "30A-901.01", 1), "fill").await.expect("cash");
    // Minutes round up to whole turns.
    let body = WardenStartSession { minutes: Some(61), turns: None, ..cash("HK003", "30A-901.02", 0) };
    let by_minutes = w.warden_start_session(&body, "minutes").await.expect("cash by minutes");
    assert_eq!((by_minutes.session.turns, by_minutes.receipt.turns), (2, 2));
    assert_eq!(by_minutes.session.paid_until, by_minutes.session.started_at + Duration::hours(2));
    let before = counts(&t).await;
    let cash_before = warden_cash(&t, login.staff_id).await;
    assert_eq!(cash_before, -(first.receipt.amount + by_minutes.receipt.amount));

    let car =
        |point: &str, plate: &str| json!({"point_code": point, "plate": plate, "vehicle_class": "car", "turns": 1});
    let cases = [
        (car("HK901", "30A-901.03"), 409, "point_full"),
        (car("HK002", "30A-901.03"), 409, "point_closed"),
        (car("HK999", "30A-901.03"), 404, "point_not_found"),
        (car("HK004", "30A-901.01"), 409, "plate_active"),
        (
            json!({"point_code": "HK001", "plate": "29B1-123.45", "vehicle_class": "motorbike", "turns": 1}),
            422,
            "vehicle_class_not_allowed",
        ),
        (car("HK001", "ABC-123"), 400, "invalid_plate"),
        (
            json!({"point_code": "HK001", "plate": "30A-901.03", "vehicle_class": "car", "turns": 0}),
            400,
            "invalid_duration",
        ),
        (json!({"point_code": "HK001", "plate": "30A-901.03", "vehicle_class": "car"}), 400, "invalid_duration"),
    ];
    for (i, (body, status, code)) in cases.iter().enumerate() {
        let a = post(&t, &tok, "/v1/warden/sessions", Some(&format!("bad-{i}")), body).await;
        assert_error(&a, *status, code);
    }
    assert_eq!(counts(&t).await, before, "nothing changed");
    assert_eq!(warden_cash(&t, login.staff_id).await, cash_before);
    let ext = format!("/v1/warden/sessions/{}/extend", first.session.id);
    assert_error(&post(&t, &tok, &ext, Some("ext-0"), &json!({"turns": 0})).await, 400, "invalid_duration");
    assert_error_shape(
        &post(&t, &tok, "/v1/warden/sessions/999999/extend", Some("ext-x"), &json!({"turns": 1})).await,
        404,
    );
    assert_eq!(counts(&t).await, before);
    t.assert_ledger_sound().await;
});

matrix!(sync_conflicts_are_applied_safely_and_flagged, |t| {
    let (w, login) = t.warden_with(StaffRole::Warden, "hk.offline", &["HK"], &[]).await;
    let staff = login.staff_id;
    one_space_point(&t, "HK901").await;
    let d = t.funded_driver("0912800001", 300_000).await;
    d.start_session(&app_start("HK901", "30A-901.09", 4), "fill").await.expect("fill HK901");
    let earlier = d.start_session(&app_start("HK005", "30A-905.05", 1), "earlier").await.expect("start");
    let one =
        |point: &str, plate: &str| json!({"point_code": point, "plate": plate, "vehicle_class": "car", "turns": 1});

    // Cash taken before any shift: recorded, flagged, attached to no shift.
    let t0 = now(&t);
    let r = w
        .sync(&SyncBatch { actions: vec![action(&uuid(), t0, SyncKind::CashSession, one("HK001", "30A-801.01"))] })
        .await
        .expect("sync");
    assert_eq!(r.results[0].status, SyncStatus::Conflict, "{r:?}");
    assert!(r.results[0].flags.iter().any(|f| f == "outside_shift"), "{r:?}");
    assert_eq!(count(&t, "sessions WHERE plate = '30A80101' AND status = 'active'").await, 1, "the car was paid for");
    assert_eq!(count(&t, "cash_collections WHERE plate = '30A80101' AND shift_id IS NULL").await, 1);
    assert_eq!(count(&t, &format!("warden_flags WHERE kind = 'outside_shift' AND staff_id = {staff}")).await, 1);

    // A shift; cash at a point that was full by our records: the session is recorded anyway.
    let shift = open_shift(&w, "shift-1").await;
    t.clock.advance(Duration::minutes(1));
    let over = uuid();
    let r = w
        .sync(&SyncBatch { actions: vec![action(&over, now(&t), SyncKind::CashSession, one("HK901", "30A-801.02"))] })
        .await
        .expect("sync");
    assert_eq!(r.results[0].status, SyncStatus::Conflict, "{r:?}");
    assert!(r.results[0].flags.iter().any(|f| f == "over_capacity"), "{r:?}");
    let hk901 = point_id(&t, "HK901").await;
    assert_eq!(count(&t, &format!("sessions WHERE point_id = {hk901} AND status = 'active'")).await, 2);
    assert_eq!(count(&t, &format!("warden_flags WHERE kind = 'over_capacity' AND shift_id = {}", shift.id)).await, 1);

    // A cash extension recorded offline extends the session.
    let paid: CashPaymentView = serde_json::from_value(r.results[0].result.clone().expect("result")).expect("payment");
    let sid = paid.session.id;
    let r = w
        .sync(&SyncBatch {
            actions: vec![action(&uuid(), now(&t), SyncKind::CashExtension, json!({"session_id": sid, "turns": 1}))],
        })
        .await
        .expect("sync");
    assert_eq!((r.results[0].status, r.results[0].flags.len()), (SyncStatus::Applied, 0), "{r:?}");
    let row = t.app.store.session(sid).await.expect("session").expect("row");
    assert_eq!((row.turns, row.paid_until), (2, paid.session.paid_until + Duration::hours(1)));
    let ext_price = price(&t, row.tariff_id, row.started_at, 1, 1, Channel::Warden);
    assert_eq!(row.amount_charged.get(), paid.receipt.amount + ext_price);

    // A violation for a plate that was paid at its device time (and is not now) is not issued.
    t.clock.advance(Duration::minutes(80));
    let c = w.check_plate("30A-905.05", "HK005").await.expect("check");
    assert_eq!(c.verdict, CheckVerdict::Expired);
    let violations = count(&t, "violations").await;
    let r = w
        .sync(&SyncBatch {
            actions: vec![action(
                &uuid(),
                earlier.started_at + Duration::minutes(30),
                SyncKind::Violation,
                json!({"plate": "30A-905.05", "point": "HK005", "kind": "unpaid", "note": "",
                       "photos": [base64(&jpeg(3))]}),
            )],
        })
        .await
        .expect("sync");
    assert_ne!(r.results[0].status, SyncStatus::Applied, "{r:?}");
    assert!(r.results[0].flags.iter().any(|f| f == "paid_at_device_time"), "{r:?}");
    assert_eq!(count(&t, "violations").await, violations, "no citation");

    // Cash taken during the shift but synced after it closed: late cash of that shift.
    t.clock.advance(Duration::minutes(5));
    let expected = w.shift(shift.id).await.expect("shift").expected_cash;
    let closed =
        w.close_shift(shift.id, &CloseShift { cash_handed_over: expected, note: None }, "close").await.expect("close");
    assert_eq!(closed.difference, Some(0));
    let during = now(&t) - Duration::minutes(3);
    let r = w
        .sync(&SyncBatch { actions: vec![action(&uuid(), during, SyncKind::CashSession, one("HK003", "30A-801.03"))] })
        .await
        .expect("sync");
    assert_eq!(r.results[0].status, SyncStatus::Conflict, "{r:?}");
    assert!(r.results[0].flags.iter().any(|f| f == "after_shift_close"), "{r:?}");
    let late: CashPaymentView = serde_json::from_value(r.results[0].result.clone().expect("result")).expect("payment");
    assert_eq!(late.receipt.shift_id, Some(shift.id));
    let sh = w.shift(shift.id).await.expect("shift");
    assert_eq!((sh.status, sh.expected_cash, sh.late_cash), (ShiftStatus::Closed, expected, late.receipt.amount));
    assert_eq!(
        count(&t, &format!("warden_flags WHERE kind = 'after_shift_close' AND shift_id = {}", shift.id)).await,
        1
    );
    // The late cash is still owed by the warden.
    let outside = t.sql_i64("SELECT amount FROM cash_collections WHERE plate = '30A80101'").await;
    assert_eq!(warden_cash(&t, staff).await, -(outside + late.receipt.amount));

    // Cash whose paid time was over when it synced: priced then, recorded as ended.
    let shift2 = open_shift(&w, "shift-2").await;
    t.clock.advance(Duration::hours(3));
    let then = now(&t) - Duration::hours(2);
    let r = w
        .sync(&SyncBatch { actions: vec![action(&uuid(), then, SyncKind::CashSession, one("HK004", "30A-801.04"))] })
        .await
        .expect("sync");
    assert_eq!((r.results[0].status, r.results[0].flags.len()), (SyncStatus::Applied, 0), "{r:?}");
    let old: CashPaymentView = serde_json::from_value(r.results[0].result.clone().expect("result")).expect("payment");
    assert_eq!(old.session.started_at, then);
    assert_eq!(old.receipt.amount, price(&t, old.session.tariff_id, then, 0, 1, Channel::Warden));
    assert_eq!(old.receipt.shift_id, Some(shift2.id));
    assert_eq!(count(&t, "sessions WHERE plate = '30A80104' AND status = 'ended'").await, 1);
    t.assert_ledger_sound().await;
});

matrix!(login_is_limited_per_client_address, |t| {
    let (_, login) = t.warden_with(StaffRole::Warden, "hk.addr", &["HK"], &[]).await;
    // Fifty failures from one address, each for another username (none reaches 5).
    for i in 0..50 {
        let a = raw_login(&t, &format!("guess.{i}"), "not the password").await;
        assert_error(&a, 401, "invalid_credentials");
    }
    assert_error(&raw_login(&t, "hk.addr", WARDEN_PASSWORD).await, 429, "rate_limited");
    // Tokens already issued keep working.
    assert!(t.client.with_token(login.token).check_plate("30A-123.45", "HK001").await.is_ok());
});
