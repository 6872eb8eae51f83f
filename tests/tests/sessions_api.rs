//! Black-box tests of parking sessions (start, extend, stop, plate correction, history,
//! expiry) through the real server, on SQLite + in-process live state and on PostgreSQL +
//! Redis. Money is checked three ways: the answers, the wallet, and the ledger invariants.
//!
//! Prices depend on the Hanoi time of day, and the tests run at the real time: expected
//! amounts come from the tariff engine (the session's tariff and start), never hard-coded.

use std::{sync::Arc, time::Duration as StdDuration};

use chrono::{DateTime, Duration, Utc};
use iparking::domain::tariff::Tariff;
use iparking_mobile_api::{
    Channel, Client, ClientError, CreatePoint, CreateStreet, ExtendSession, NearbyQuery, QuoteRequest,
    SessionListQuery, SessionStatus, SessionView, StartSession, VehicleClass, WalletView,
};
use iparking_tests::{TestApp, assert_error, matrix, raw};
use serde_json::{Value, json};

// ---- helpers ---------------------------------------------------------------------------

/// A start for a car, paying `turns` turns from the wallet.
fn start(point: &str, plate: &str, turns: u32) -> StartSession {
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

fn turns(n: u32) -> ExtendSession {
    ExtendSession { minutes: None, turns: Some(n), ..Default::default() }
}

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

fn tariff(t: &TestApp, id: i64) -> Tariff {
    t.app.tariffs().get(id).cloned().unwrap_or_else(|| panic!("tariff {id} is not loaded"))
}

/// What `n` turns of a new stay cost by the session's tariff from the session's start.
fn price(t: &TestApp, s: &SessionView, n: u32) -> i64 {
    tariff(t, s.tariff_id).price(s.started_at, 0, n, Channel::App).expect("price").total.get()
}

/// A quote for a car at `point` from `start` for `minutes`.
async fn quote(t: &TestApp, point: &str, start: Option<DateTime<Utc>>, minutes: u32) -> i64 {
    t.client
        .quote(&QuoteRequest {
            point_code: point.into(),
            vehicle_class: VehicleClass::Car,
            start,
            minutes: Some(minutes),
            amount: None,
            channel: None,
        })
        .await
        .expect("quote")
        .total
}

async fn point_id(t: &TestApp, code: &str) -> i64 {
    t.app.store.point(code).await.expect("point").unwrap_or_else(|| panic!("no point {code}")).id
}

/// Occupied spaces of a point in the live state.
async fn live_occupancy(t: &TestApp, code: &str) -> i64 {
    let id = point_id(t, code).await;
    t.app.live.occupancy(&[id]).await.expect("live occupancy")[0]
}

/// Active sessions of a point in the database.
async fn db_active(t: &TestApp, code: &str) -> i64 {
    let id = point_id(t, code).await;
    t.app.store.occupied_by_point().await.expect("occupied").into_iter().find(|(p, _)| *p == id).map_or(0, |(_, n)| n)
}

async fn free_spaces(t: &TestApp, code: &str) -> i32 {
    t.client.point(code).await.expect("point view").free_spaces.expect("free spaces known")
}

async fn wallet(c: &Client) -> WalletView {
    c.wallet().await.expect("wallet")
}

async fn all_sessions(c: &Client) -> Vec<SessionView> {
    c.sessions(&SessionListQuery::default()).await.expect("sessions")
}

/// Logs a driver in like the harness does, but keeps the token for raw requests.
async fn login(t: &TestApp, phone: &str) -> (Client, String) {
    t.client.send_otp(phone).await.expect("send otp");
    let e164 = iparking::domain::phone::Phone::parse(phone).expect("phone").as_str().to_owned();
    let text = t.sms.last_to(&e164).expect("an SMS with the code");
    let code: String = text.chars().filter(char::is_ascii_digit).take(6).collect();
    let token = t.client.login(phone, &code).await.expect("login").token;
    (t.client.with_token(token.clone()), token)
}

/// A raw answer with the replay header.
struct Answer {
    status: u16,
    body: Value,
    replayed: Option<String>,
}

impl Answer {
    fn pair(&self) -> (u16, Value) {
        (self.status, self.body.clone())
    }
}

async fn send(req: reqwest::RequestBuilder) -> Answer {
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let replayed = resp.headers().get("idempotent-replayed").map(|v| v.to_str().expect("ascii").to_owned());
    let text = resp.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer { status, body, replayed }
}

/// `POST path` with a bearer token, an optional Idempotency-Key and a JSON body.
async fn post(t: &TestApp, token: &str, path: &str, key: Option<&str>, body: &Value) -> Answer {
    let mut req = reqwest::Client::new().post(t.url(path)).bearer_auth(token).json(body);
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    send(req).await
}

/// Waits up to 3 s (the expiry job runs every 200 ms in tests) for `check` to hold.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + StdDuration::from_secs(3);
    loop {
        if check().await {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
}

/// A street in Hoàn Kiếm (so the pilot's district tariff applies) with a small point on it,
/// between Lý Thường Kiệt and Trần Hưng Đạo.
async fn small_point(t: &TestApp, code: &str, capacity: i32, lat: f64, lon: f64) {
    let street = match t.admin.streets("HK").await.expect("streets").into_iter().find(|s| s.name == "Phố Thử Nghiệm")
    {
        Some(s) => s,
        None => t
            .admin
            .create_street(&CreateStreet { district_code: "HK".into(), name: "Phố Thử Nghiệm".into() })
            .await
            .expect("street"),
    };
    let p = t
        .admin
        .create_point(&CreatePoint {
            code: code.into(),
            name: format!("Điểm thử {code}"),
            street_id: street.id,
            lat,
            lon,
            curb: None,
            capacity,
            vehicle_classes: vec![VehicleClass::Car],
        })
        .await
        .expect("create point");
    assert_eq!((p.code.as_str(), p.capacity), (code, capacity));
}

/// Fires `starts` at once (each `(client, body, key)`), released together by a barrier.
async fn race(starts: Vec<(Client, StartSession, String)>) -> Vec<Result<SessionView, ClientError>> {
    let barrier = Arc::new(tokio::sync::Barrier::new(starts.len()));
    let handles: Vec<_> = starts
        .into_iter()
        .map(|(c, body, key)| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                c.start_session(&body, &key).await
            })
        })
        .collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}

// ---- start, prices, ledger --------------------------------------------------------------

matrix!(start_prices_debits_the_wallet_and_credits_the_point, |t| {
    let d = t.funded_driver("0912000001", 300_000).await;
    let before = std::time::SystemTime::now();
    let s = d.start_session(&start("hk003", "30A-123.45", 2), "start-1").await.unwrap();
    assert_eq!(s.status, SessionStatus::Active);
    assert_eq!((s.point_code.as_str(), s.plate.as_str(), s.vehicle_class), ("HK003", "30A12345", VehicleClass::Car));
    assert_eq!((s.channel.as_str(), s.turns, s.amount_refunded), ("app", 2, 0));
    assert_eq!((s.ended_at, s.end_reason.as_deref()), (None, None));
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    let started: std::time::SystemTime = s.started_at.into();
    let lag = started.duration_since(before).unwrap_or_default();
    assert!(lag < StdDuration::from_secs(60), "started at the server's now: {lag:?}");
    assert_eq!(s.paid_until, s.started_at + Duration::hours(2));
    assert_eq!(s.expires_at, s.paid_until + Duration::minutes(10), "10 minutes' grace");
    // Priced by the engine: the same as the tariff's price and a quote for the same start.
    let expected = price(&t, &s, 2);
    assert_eq!(s.amount_charged, expected);
    assert_eq!(quote(&t, "HK003", Some(s.started_at), 120).await, expected);
    let q = t
        .client
        .quote(&QuoteRequest {
            point_code: "HK003".into(),
            vehicle_class: VehicleClass::Car,
            start: Some(s.started_at),
            minutes: Some(120),
            amount: None,
            channel: None,
        })
        .await
        .unwrap();
    assert_eq!(q.tariff_id, s.tariff_id, "the session records the tariff version that priced it");

    // The wallet paid it, the point earned it.
    let w = wallet(&d).await;
    assert_eq!(w.balance, 300_000 - expected);
    assert_eq!(w.movements.len(), 2, "{:?}", w.movements);
    let m = &w.movements[0];
    assert_eq!((m.kind.as_str(), m.amount, m.session_id), ("session_start", -expected, Some(s.id)));
    assert_eq!(w.movements[1].kind, "sandbox_topup");
    let report = t.app.store.ledger_report().await.unwrap();
    assert_eq!(report.revenue_vs_sessions, (expected, expected), "point revenue = session charges");

    // The receipt: one purchase whose priced lines sum to the amount.
    let r = d.session(s.id).await.unwrap();
    assert_eq!(r.purchases.len(), 1);
    let p = &r.purchases[0];
    assert_eq!((p.turns, p.amount, p.paid_until), (2, expected, s.paid_until));
    assert_eq!(p.lines.iter().map(|l| l.amount).sum::<i64>(), p.amount);
    assert_eq!(p.lines.iter().filter_map(|l| l.turn).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(p.lines.iter().filter_map(|l| l.hour_of_stay).collect::<Vec<_>>(), [1, 2]);
    assert_eq!((r.amount_charged, r.turns, r.status), (expected, 2, SessionStatus::Active));

    // Minutes round up to whole turns.
    let body = StartSession { minutes: Some(61), turns: None, ..start("HK004", "29H1-234.56", 0) };
    let s2 = d.start_session(&body, "start-2").await.unwrap();
    assert_eq!((s2.turns, s2.plate.as_str()), (2, "29H123456"));
    assert_eq!(s2.paid_until, s2.started_at + Duration::hours(2));
    assert_eq!(s2.amount_charged, price(&t, &s2, 2));

    // A registered plate needs no class: the account's vehicle gives it (and its tariff).
    d.add_vehicle("51F-123.45", VehicleClass::Minibus).await.unwrap();
    let body = StartSession { vehicle_class: None, ..start("HK005", "51f12345", 1) };
    let bus = d.start_session(&body, "start-3").await.unwrap();
    assert_eq!(bus.vehicle_class, VehicleClass::Minibus);
    assert_ne!(bus.tariff_id, s.tariff_id, "minibuses have their own tariff");
    assert_eq!(bus.amount_charged, price(&t, &bus, 1));

    let w = wallet(&d).await;
    assert_eq!(w.balance, 300_000 - expected - s2.amount_charged - bus.amount_charged);
    t.assert_ledger_sound().await;
});

matrix!(list_and_get_sessions, |t| {
    let d = t.funded_driver("0912000002", 300_000).await;
    let a = d.start_session(&start("HK001", "30A11111", 1), "a").await.unwrap();
    let b = d.start_session(&start("HK002", "30A22222", 1), "b").await.unwrap();
    let b = d.stop_session(b.id, "stop-b").await.unwrap();
    let c = d.start_session(&start("HK003", "30A33333", 2), "c").await.unwrap();

    let ids = |v: Vec<SessionView>| v.into_iter().map(|s| s.id).collect::<Vec<_>>();
    assert_eq!(ids(all_sessions(&d).await), [c.id, b.id, a.id], "newest first");
    let active = d.sessions(&SessionListQuery { status: Some(SessionStatus::Active) }).await.unwrap();
    assert!(active.iter().all(|s| s.status == SessionStatus::Active));
    assert_eq!(ids(active), [c.id, a.id]);
    let ended = d.sessions(&SessionListQuery { status: Some(SessionStatus::Ended) }).await.unwrap();
    assert_eq!(ended.len(), 1);
    assert_eq!((ended[0].id, ended[0].end_reason.as_deref()), (b.id, Some("stopped")));
    assert_eq!(ended[0], b, "the list shows what the stop answered");
    // Raw query strings too.
    let http = reqwest::Client::new();
    let (_, token) = login(&t, "0912000002").await;
    let (status, body) = raw(http.get(t.url("/v1/sessions?status=ended")).bearer_auth(&token)).await;
    assert_eq!((status, body.as_array().map(Vec::len)), (200, Some(1)), "{body}");
    let a2 = raw(http.get(t.url("/v1/sessions?status=parked")).bearer_auth(&token)).await;
    assert_error(&a2, 400, "invalid_query");

    // One session with its receipt.
    let got = d.session(c.id).await.unwrap();
    assert_eq!((got.id, got.plate.as_str(), got.turns), (c.id, "30A33333", 2));
    assert_eq!(got.purchases.len(), 1);
    assert_eq!(got.purchases.iter().map(|p| p.amount).sum::<i64>(), got.amount_charged);
    for p in &got.purchases {
        assert_eq!(p.lines.iter().map(|l| l.amount).sum::<i64>(), p.amount);
    }
    assert_eq!(got.amount_charged, price(&t, &c, 2));

    // Another driver sees none of it.
    let other = t.funded_driver("0912000003", 50_000).await;
    assert!(all_sessions(&other).await.is_empty());
    t.assert_ledger_sound().await;
});

// ---- idempotency ------------------------------------------------------------------------

matrix!(idempotency_replays_the_first_answer_and_moves_money_once, |t| {
    let (d, token) = login(&t, "0912000010").await;
    d.sandbox_topup(500_000, "fund").await.unwrap();
    let body = json!({"point_code": "HK003", "plate": "30A-555.55", "vehicle_class": "car", "turns": 2});

    let first = post(&t, &token, "/v1/sessions", Some("k-start"), &body).await;
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(first.replayed, None);
    let id = first.body["id"].as_i64().unwrap();
    let charged = first.body["amount_charged"].as_i64().unwrap();
    let again = post(&t, &token, "/v1/sessions", Some("k-start"), &body).await;
    assert_eq!((again.status, again.replayed.as_deref()), (201, Some("true")));
    assert_eq!(again.body, first.body, "the same answer");
    let w = wallet(&d).await;
    assert_eq!(w.balance, 500_000 - charged, "charged once");
    assert_eq!(w.movements.iter().filter(|m| m.kind == "session_start").count(), 1);
    assert_eq!(all_sessions(&d).await.len(), 1);
    assert_eq!(live_occupancy(&t, "HK003").await, 1, "one space taken");

    // No key: refused before anything happens.
    let a = post(
        &t,
        &token,
        "/v1/sessions",
        None,
        &json!({"point_code": "HK004", "plate": "30A66666", "vehicle_class": "car", "turns": 1}),
    )
    .await;
    assert_error(&a.pair(), 400, "idempotency_key_required");
    // The same key with another body, or on another route: refused.
    let other = json!({"point_code": "HK003", "plate": "30A-555.55", "vehicle_class": "car", "turns": 3});
    let a = post(&t, &token, "/v1/sessions", Some("k-start"), &other).await;
    assert_error(&a.pair(), 422, "idempotency_key_reused");
    let a = post(&t, &token, &format!("/v1/sessions/{id}/extend"), Some("k-start"), &json!({"turns": 1})).await;
    assert_error(&a.pair(), 422, "idempotency_key_reused");
    let a = post(&t, &token, &format!("/v1/sessions/{id}/stop"), Some("k-start"), &json!({})).await;
    assert_error(&a.pair(), 422, "idempotency_key_reused");
    assert_eq!(wallet(&d).await.balance, 500_000 - charged, "nothing moved");
    assert_eq!(all_sessions(&d).await.len(), 1);

    // Keys belong to their driver: another driver may use the same one.
    let (_, token2) = login(&t, "0912000011").await;
    t.client.with_token(token2.clone()).sandbox_topup(100_000, "fund").await.unwrap();
    let b = post(
        &t,
        &token2,
        "/v1/sessions",
        Some("k-start"),
        &json!({"point_code": "HK004", "plate": "30A77777", "vehicle_class": "car", "turns": 1}),
    )
    .await;
    assert_eq!((b.status, b.replayed), (201, None), "{}", b.body);

    // Extend: retried with the same key, charged once.
    let ext_path = format!("/v1/sessions/{id}/extend");
    let a = post(&t, &token, &ext_path, None, &json!({"turns": 1})).await;
    assert_error(&a.pair(), 400, "idempotency_key_required");
    let e1 = post(&t, &token, &ext_path, Some("k-ext"), &json!({"turns": 1})).await;
    assert_eq!((e1.status, e1.replayed.as_deref()), (200, None), "{}", e1.body);
    let e2 = post(&t, &token, &ext_path, Some("k-ext"), &json!({"turns": 1})).await;
    assert_eq!((e2.status, e2.replayed.as_deref()), (200, Some("true")));
    assert_eq!(e2.body, e1.body);
    assert_eq!(e1.body["turns"], 3);
    let after_ext = e1.body["amount_charged"].as_i64().unwrap();
    let a = post(&t, &token, &ext_path, Some("k-ext"), &json!({"turns": 2})).await;
    assert_error(&a.pair(), 422, "idempotency_key_reused");
    let w = wallet(&d).await;
    assert_eq!(w.balance, 500_000 - after_ext);
    assert_eq!(w.movements.iter().filter(|m| m.kind == "session_extend").count(), 1);
    assert_eq!(d.session(id).await.unwrap().turns, 3);

    // Stop: retried with the same key, refunded once.
    let stop_path = format!("/v1/sessions/{id}/stop");
    let a = post(&t, &token, &stop_path, None, &json!({})).await;
    assert_error(&a.pair(), 400, "idempotency_key_required");
    let s1 = post(&t, &token, &stop_path, Some("k-stop"), &json!({})).await;
    assert_eq!((s1.status, s1.replayed.as_deref()), (200, None), "{}", s1.body);
    let s2 = post(&t, &token, &stop_path, Some("k-stop"), &json!({})).await;
    assert_eq!((s2.status, s2.replayed.as_deref()), (200, Some("true")));
    assert_eq!(s2.body, s1.body);
    let refunded = s1.body["amount_refunded"].as_i64().unwrap();
    assert!(refunded > 0, "2 unused turns: {}", s1.body);
    let w = wallet(&d).await;
    assert_eq!(w.balance, 500_000 - after_ext + refunded);
    assert_eq!(w.movements.iter().filter(|m| m.kind == "session_refund").count(), 1);
    t.assert_ledger_sound().await;
});

// A retry racing the first request (same key, same body) gets the first answer (201,
// replayed) or 409 idempotency_in_progress, never an error caused by the first request's own
// effects: the key is claimed first in the transaction.
matrix!(idempotency_holds_under_concurrent_retries, |t| {
    let (d, token) = login(&t, "0912000012").await;
    d.sandbox_topup(200_000, "fund").await.unwrap();
    let body = json!({"point_code": "HK006", "plate": "30A12121", "vehicle_class": "car", "turns": 1});
    let barrier = Arc::new(tokio::sync::Barrier::new(6));
    let mut handles = Vec::new();
    for _ in 0..6 {
        let (barrier, url, token, body) = (barrier.clone(), t.url("/v1/sessions"), token.clone(), body.clone());
        handles.push(tokio::spawn(async move {
            barrier.wait().await;
            let req = reqwest::Client::new().post(url).bearer_auth(token).header("Idempotency-Key", "same").json(&body);
            send(req).await
        }));
    }
    let mut created = Vec::new();
    for h in handles {
        let a = h.await.unwrap();
        match a.status {
            201 => created.push(a.body["id"].as_i64().unwrap()),
            _ => assert_error(&a.pair(), 409, "idempotency_in_progress"),
        }
    }
    assert!(!created.is_empty());
    assert!(created.iter().all(|id| *id == created[0]), "one session for one key: {created:?}");
    let later = post(&t, &token, "/v1/sessions", Some("same"), &body).await;
    assert_eq!((later.status, later.replayed.as_deref()), (201, Some("true")));
    assert_eq!(later.body["id"].as_i64(), Some(created[0]));
    let sessions = all_sessions(&d).await;
    assert_eq!(sessions.len(), 1);
    let w = wallet(&d).await;
    assert_eq!(w.balance, 200_000 - sessions[0].amount_charged, "charged once");
    assert_eq!((live_occupancy(&t, "HK006").await, db_active(&t, "HK006").await), (1, 1));
    t.assert_ledger_sound().await;
});

// ---- one active session per plate ----------------------------------------------------------

matrix!(one_active_session_per_plate, |t| {
    let a = t.funded_driver("0912000020", 200_000).await;
    let b = t.funded_driver("0912000021", 200_000).await;
    let s = a.start_session(&start("HK001", "30A-999.99", 1), "a1").await.unwrap();
    let wa = wallet(&a).await;

    // The same driver elsewhere: refused, naming the active session.
    let (status, code, details) = api_error(a.start_session(&start("HK005", "30A99999", 1), "a2").await.unwrap_err());
    assert_eq!((status, code.as_str()), (409, "plate_active"));
    assert_eq!(details["point_code"], "HK001");
    assert_eq!(details["session_id"], s.id);
    // In Hanoi time, never UTC.
    let e = a.with_language("en").start_session(&start("HK005", "30A99999", 1), "a3").await.unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("HK001") && !msg.contains("UTC"), "{msg}");
    let until = s.paid_until.with_timezone(&iparking::domain::tariff::LOCAL_TZ).format("%H:%M").to_string();
    assert!(msg.contains(&until), "{msg} names {until}");
    // Another driver (the plate is written differently): refused too, told neither where
    // the car is nor until when, nor the session.
    let e = b.with_language("en").start_session(&start("HK006", "30a 999 99", 1), "b1").await.unwrap_err();
    let msg = e.to_string();
    let (status, code, details) = api_error(e);
    assert_eq!((status, code.as_str()), (409, "plate_active"));
    assert!(details.is_null(), "nothing of another driver's session leaks: {details}");
    assert!(!msg.contains("HK001") && !msg.contains(&until), "{msg}");
    // The same point too.
    let e = b.start_session(&start("HK001", "30A99999", 1), "b2").await.unwrap_err();
    assert_eq!(api_code(e), (409, "plate_active".into()));

    assert_eq!(wallet(&a).await, wa, "nothing moved");
    assert_eq!(wallet(&b).await.balance, 200_000);
    assert!(all_sessions(&b).await.is_empty());
    assert_eq!(live_occupancy(&t, "HK005").await + live_occupancy(&t, "HK006").await, 0);

    // Once stopped, the plate parks again (and by another driver).
    a.stop_session(s.id, "a-stop").await.unwrap();
    let again = b.start_session(&start("HK006", "30A99999", 1), "b3").await.unwrap();
    assert_eq!((again.point_code.as_str(), again.status), ("HK006", SessionStatus::Active));
    t.assert_ledger_sound().await;
});

// One plate started at several points at once parks once; every loser is told plate_active,
// naming the point only to the winner's own driver (starts for one plate are serialised by a
// per-plate lock).
matrix!(same_plate_racing_at_several_points_parks_once, |t| {
    // Two drivers share a car and both start it at once, at six different points.
    let a = t.funded_driver("0912000022", 500_000).await;
    let b = t.funded_driver("0912000023", 500_000).await;
    let starts = (0..6)
        .map(|i| {
            let c = if i % 2 == 0 { a.clone() } else { b.clone() };
            (c, start(&format!("HK00{}", i + 1), "30A-424.24", 1), format!("race-{i}"))
        })
        .collect();
    let results = race(starts).await;
    let winner = results.iter().position(Result::is_ok).expect("one start wins");
    let mut won = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(s) => won.push(s),
            Err(e) => {
                let (status, code, details) = api_error(e);
                assert_eq!((status, code.as_str()), (409, "plate_active"), "details {details}");
                let winners_point = format!("HK00{}", winner + 1);
                if i % 2 == winner % 2 {
                    assert_eq!(details["point_code"].as_str(), Some(winners_point.as_str()), "own session: {details}");
                } else {
                    assert!(details.is_null(), "another driver's session stays private: {details}");
                }
            }
        }
    }
    assert_eq!(won.len(), 1, "exactly one start wins: {won:?}");
    let total: i64 = wallet(&a).await.balance + wallet(&b).await.balance;
    assert_eq!(total, 1_000_000 - won[0].amount_charged, "only the winner paid");
    let mut live = 0;
    for i in 1..=6 {
        live += live_occupancy(&t, &format!("HK00{i}")).await;
    }
    assert_eq!(live, 1);
    t.assert_ledger_sound().await;
});

// ---- capacity -----------------------------------------------------------------------------

matrix!(full_point_is_refused_with_alternatives_and_races_have_one_winner, |t| {
    small_point(&t, "HK901", 3, 21.0240, 105.8500).await;
    assert_eq!(free_spaces(&t, "HK901").await, 3);
    // Fill to capacity − 1.
    for (i, plate) in ["30A90001", "30A90002"].iter().enumerate() {
        let d = t.funded_driver(&format!("091200003{i}"), 100_000).await;
        d.start_session(&start("HK901", plate, 2), "fill").await.unwrap();
    }
    assert_eq!((live_occupancy(&t, "HK901").await, free_spaces(&t, "HK901").await), (2, 1));

    // Eight drivers race for the last space.
    let mut racers = Vec::new();
    for i in 0..8 {
        racers.push(t.funded_driver(&format!("091200004{i}"), 100_000).await);
    }
    let starts = racers
        .iter()
        .enumerate()
        .map(|(i, c)| (c.clone(), start("HK901", &format!("30A9100{i}"), 1), "go".into()))
        .collect();
    let results = race(starts).await;
    let mut winners = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(s) => winners.push((i, s)),
            Err(e) => {
                let (status, code, details) = api_error(e);
                assert_eq!((status, code.as_str()), (409, "point_full"), "racer {i}: {details}");
            }
        }
    }
    assert_eq!(winners.len(), 1, "exactly one wins the last space: {winners:?}");
    assert_eq!(db_active(&t, "HK901").await, 3, "active sessions = capacity");
    assert_eq!(live_occupancy(&t, "HK901").await, 3);
    assert_eq!(free_spaces(&t, "HK901").await, 0);
    for (i, c) in racers.iter().enumerate() {
        let w = wallet(c).await;
        if i == winners[0].0 {
            assert_eq!(w.balance, 100_000 - winners[0].1.amount_charged);
        } else {
            assert_eq!(w.balance, 100_000, "loser {i} paid nothing");
            assert_eq!(w.movements.len(), 1, "loser {i}: only the top-up: {:?}", w.movements);
            assert!(all_sessions(c).await.is_empty());
        }
    }

    // Full: the answer lists up to three nearest points with space, nearest first.
    let late = t.funded_driver("0912000050", 100_000).await;
    let (status, code, details) =
        api_error(late.start_session(&start("hk901", "30A92222", 1), "late").await.unwrap_err());
    assert_eq!((status, code.as_str()), (409, "point_full"));
    let alts = details["alternatives"].as_array().expect("alternatives");
    assert_eq!(alts.len(), 3, "{details}");
    let dist: Vec<f64> = alts.iter().map(|a| a["distance_m"].as_f64().unwrap()).collect();
    assert!(dist.windows(2).all(|w| w[0] <= w[1]), "ascending: {dist:?}");
    assert!(alts.iter().all(|a| a["free_spaces"].as_i64().unwrap() > 0), "{details}");
    assert!(alts.iter().all(|a| a["code"] != "HK901"), "never the full point: {details}");
    // They are the nearest open points with space, as the nearby search sees them.
    let near = t
        .client
        .nearby_points(&NearbyQuery {
            lat: 21.0240,
            lon: 105.8500,
            radius_m: Some(3000.0),
            limit: Some(10),
            vehicle_class: Some(VehicleClass::Car),
        })
        .await
        .unwrap();
    let want: Vec<(String, i64)> = near
        .points
        .iter()
        .filter(|p| p.point.code != "HK901" && p.point.free_spaces.unwrap_or(0) > 0)
        .take(3)
        .map(|p| (p.point.code.clone(), i64::from(p.point.free_spaces.unwrap())))
        .collect();
    let got: Vec<(String, i64)> =
        alts.iter().map(|a| (a["code"].as_str().unwrap().to_owned(), a["free_spaces"].as_i64().unwrap())).collect();
    assert_eq!(got, want);
    for (a, p) in
        alts.iter().zip(near.points.iter().filter(|p| p.point.code != "HK901" && p.point.free_spaces.unwrap_or(0) > 0))
    {
        assert!((a["distance_m"].as_f64().unwrap() - p.distance_m).abs() < 0.1, "{a} vs {}", p.distance_m);
        assert!(a["name"].as_str().is_some_and(|n| !n.is_empty()));
    }
    assert_eq!(wallet(&late).await.balance, 100_000);

    // From empty: eight racers, three spaces, exactly three win.
    small_point(&t, "HK902", 3, 21.0236, 105.8520).await;
    let starts = racers
        .iter()
        .enumerate()
        .map(|(i, c)| (c.clone(), start("HK902", &format!("30A9200{i}"), 1), "go2".into()))
        .collect();
    let results = race(starts).await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    for r in results.into_iter().filter_map(Result::err) {
        assert_eq!(api_code(r), (409, "point_full".into()));
    }
    assert_eq!(won, 3);
    assert_eq!((db_active(&t, "HK902").await, live_occupancy(&t, "HK902").await), (3, 3));
    t.assert_ledger_sound().await;
});

// ---- the wallet -----------------------------------------------------------------------------

matrix!(wallet_never_goes_negative_under_concurrent_spending, |t| {
    let one_turn = quote(&t, "HK001", None, 60).await;
    let d = t.funded_driver("0912000060", 2 * one_turn).await;
    let starts = (1..=6)
        .map(|i| (d.clone(), start(&format!("HK00{i}"), &format!("30A6000{i}"), 1), format!("spend-{i}")))
        .collect();
    let results = race(starts).await;
    let mut ok = 0;
    for r in results {
        match r {
            Ok(s) => {
                assert_eq!(s.amount_charged, price(&t, &s, 1));
                ok += 1;
            }
            Err(e) => {
                let (status, code, details) = api_error(e);
                assert_eq!((status, code.as_str()), (402, "insufficient_funds"), "{details}");
                let missing = details["missing"].as_i64().expect("missing");
                assert!(missing > 0, "{details}");
                assert_eq!(missing, details["price"].as_i64().unwrap() - details["balance"].as_i64().unwrap());
            }
        }
    }
    assert_eq!(ok, 2, "exactly two sessions fit the balance");
    let w = wallet(&d).await;
    assert_eq!(w.balance, 0);
    assert_eq!(w.movements.iter().filter(|m| m.kind == "session_start").count(), 2);
    assert_eq!(all_sessions(&d).await.len(), 2);
    let mut live = 0;
    for i in 1..=6 {
        live += live_occupancy(&t, &format!("HK00{i}")).await;
    }
    assert_eq!(live, 2);
    t.assert_ledger_sound().await;
});

matrix!(insufficient_balance_names_the_missing_amount, |t| {
    let d = t.funded_driver("0912000061", 10_000).await;
    let one_turn = quote(&t, "HK002", None, 60).await;
    let (status, code, details) = api_error(d.start_session(&start("HK002", "30A61000", 1), "poor").await.unwrap_err());
    assert_eq!((status, code.as_str()), (402, "insufficient_funds"));
    let charged_price = details["price"].as_i64().unwrap();
    assert_eq!(charged_price, one_turn);
    assert_eq!(details["balance"], 10_000);
    assert_eq!(details["missing"].as_i64(), Some(charged_price - 10_000));
    let w = wallet(&d).await;
    assert_eq!((w.balance, w.movements.len()), (10_000, 1));
    assert!(all_sessions(&d).await.is_empty());
    assert_eq!(live_occupancy(&t, "HK002").await, 0);

    // No wallet at all: everything is missing.
    let broke = t.driver("0912000062").await;
    let (_, code, details) = api_error(broke.start_session(&start("HK002", "30A62000", 2), "broke").await.unwrap_err());
    assert_eq!(code, "insufficient_funds");
    assert_eq!(details["balance"], 0);
    assert_eq!(details["missing"], details["price"]);
    assert!(details["price"].as_i64().unwrap() > 0);

    // An extension the wallet cannot pay.
    let exact = t.funded_driver("0912000063", one_turn).await;
    let s = exact.start_session(&start("HK002", "30A63000", 1), "s").await.unwrap();
    assert_eq!(wallet(&exact).await.balance, one_turn - s.amount_charged);
    let ext = tariff(&t, s.tariff_id).price(s.started_at, 1, 1, Channel::App).unwrap().total.get();
    let balance = wallet(&exact).await.balance;
    let (status, code, details) = api_error(exact.extend_session(s.id, &turns(1), "ext").await.unwrap_err());
    assert_eq!((status, code.as_str()), (402, "insufficient_funds"));
    assert_eq!(details["missing"].as_i64(), Some(ext - balance));
    let after = exact.session(s.id).await.unwrap();
    assert_eq!((after.turns, after.amount_charged, after.paid_until), (1, s.amount_charged, s.paid_until));
    assert_eq!(wallet(&exact).await.balance, balance);
    t.assert_ledger_sound().await;
});

// ---- plate correction --------------------------------------------------------------------------

matrix!(plate_typo_can_be_corrected_once_within_five_minutes, |t| {
    let d = t.funded_driver("0912000070", 500_000).await;
    let s1 = d.start_session(&start("HK001", "30A-111.11", 1), "s1").await.unwrap();
    let fixed = d.correct_plate(s1.id, "30A-222.22").await.unwrap();
    assert_eq!((fixed.id, fixed.plate.as_str(), fixed.status), (s1.id, "30A22222", SessionStatus::Active));
    assert_eq!((fixed.amount_charged, fixed.paid_until), (s1.amount_charged, s1.paid_until), "money untouched");
    assert_eq!(d.session(s1.id).await.unwrap().plate, "30A22222");
    // Only once.
    assert_eq!(
        api_code(d.correct_plate(s1.id, "30A-222.23").await.unwrap_err()),
        (422, "correction_window_passed".into())
    );
    // The corrected plate is the parked one; the typo is free again.
    let e = d.start_session(&start("HK003", "30A22222", 1), "dup").await.unwrap_err();
    let (status, code, details) = api_error(e);
    assert_eq!((status, code.as_str(), details["point_code"].as_str()), (409, "plate_active", Some("HK001")));
    let s2 = d.start_session(&start("HK002", "30A11111", 1), "s2").await.unwrap();

    // To a plate parked elsewhere: refused; a bad plate: refused; neither uses the one chance.
    assert_eq!(api_code(d.correct_plate(s2.id, "30a22222").await.unwrap_err()), (409, "plate_active".into()));
    assert_eq!(api_code(d.correct_plate(s2.id, "XYZ").await.unwrap_err()), (400, "invalid_plate".into()));
    assert_eq!(d.session(s2.id).await.unwrap().plate, "30A11111");
    assert_eq!(d.correct_plate(s2.id, "30A33333").await.unwrap().plate, "30A33333");

    // After 5 minutes: too late.
    let s3 = d.start_session(&start("HK004", "30A44444", 1), "s3").await.unwrap();
    t.clock.advance(Duration::minutes(6));
    assert_eq!(
        api_code(d.correct_plate(s3.id, "30A55555").await.unwrap_err()),
        (422, "correction_window_passed".into())
    );
    assert_eq!(d.session(s3.id).await.unwrap().plate, "30A44444");
    // An ended session cannot be corrected.
    let s4 = d.start_session(&start("HK005", "30A66666", 1), "s4").await.unwrap();
    d.stop_session(s4.id, "s4-stop").await.unwrap();
    assert_eq!(api_code(d.correct_plate(s4.id, "30A77777").await.unwrap_err()), (409, "session_ended".into()));

    let charged: i64 = [&s1, &s2, &s3, &s4].iter().map(|s| s.amount_charged).sum();
    assert_eq!(wallet(&d).await.balance, 500_000 - charged);
    t.assert_ledger_sound().await;
});

// ---- location warnings -----------------------------------------------------------------------

matrix!(far_from_the_point_warns, |t| {
    let d = t.funded_driver("0912000080", 300_000).await;
    let p = t.client.point("HK001").await.unwrap();
    // About 1.1 km north of the signboard.
    let far = StartSession { lat: Some(p.lat + 0.01), lon: Some(p.lon), ..start("HK001", "30A80001", 1) };
    let s = d.start_session(&far, "far").await.unwrap();
    assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
    assert!(s.warnings[0].contains("HK001"), "{}", s.warnings[0]);
    let english = d.with_language("en");
    let en = english.start_session(&StartSession { plate: "30A80002".into(), ..far.clone() }, "far-en").await.unwrap();
    assert!(en.warnings.len() == 1 && en.warnings[0].contains("HK001"), "{:?}", en.warnings);
    // About 110 m away, and exactly at the sign: no warning.
    let close = StartSession { lat: Some(p.lat + 0.001), lon: Some(p.lon), ..start("HK001", "30A80003", 1) };
    assert!(d.start_session(&close, "close").await.unwrap().warnings.is_empty());
    let at = StartSession { lat: Some(p.lat), lon: Some(p.lon), ..start("HK001", "30A80004", 1) };
    assert!(d.start_session(&at, "at").await.unwrap().warnings.is_empty());
    assert!(d.start_session(&start("HK001", "30A80005", 1), "none").await.unwrap().warnings.is_empty());

    // Half a position, or an impossible one: 400, and nothing started.
    let before = (wallet(&d).await.balance, all_sessions(&d).await.len());
    for (i, body) in [
        StartSession { lat: Some(p.lat), ..start("HK001", "30A80006", 1) },
        StartSession { lon: Some(p.lon), ..start("HK001", "30A80006", 1) },
        StartSession { lat: Some(91.0), lon: Some(p.lon), ..start("HK001", "30A80006", 1) },
    ]
    .iter()
    .enumerate()
    {
        let (status, code, _) = api_error(d.start_session(body, &format!("bad-pos-{i}")).await.unwrap_err());
        assert_eq!((status, code.as_str()), (400, "invalid_coordinates"), "{body:?}");
    }
    assert_eq!((wallet(&d).await.balance, all_sessions(&d).await.len()), before);
    t.assert_ledger_sound().await;
});

// ---- bad input and other drivers --------------------------------------------------------------

matrix!(bad_input_is_refused_and_changes_nothing, |t| {
    let (d, token) = login(&t, "0912000090").await;
    d.sandbox_topup(500_000, "fund").await.unwrap();
    t.admin.close_point("HK002").await.unwrap();
    let cases: Vec<(StartSession, u16, &str)> = vec![
        (start("HK999", "30A90909", 1), 404, "point_not_found"),
        (start("HK002", "30A90909", 1), 409, "point_closed"),
        (
            StartSession { vehicle_class: Some(VehicleClass::Motorbike), ..start("HK001", "29B1-123.45", 1) },
            422,
            "vehicle_class_not_allowed",
        ),
        (StartSession { vehicle_class: None, ..start("HK001", "30A90909", 1) }, 400, "vehicle_class_required"),
        (start("HK001", "ABC-123", 1), 400, "invalid_plate"),
        (start("HK001", "", 1), 400, "invalid_plate"),
        (StartSession { minutes: Some(60), ..start("HK001", "30A90909", 1) }, 400, "invalid_duration"),
        (StartSession { turns: None, ..start("HK001", "30A90909", 1) }, 400, "invalid_duration"),
        (start("HK001", "30A90909", 0), 400, "invalid_duration"),
        (StartSession { minutes: Some(25 * 60), turns: None, ..start("HK001", "30A90909", 0) }, 422, "stay_too_long"),
        (start("HK001", "30A90909", 25), 422, "stay_too_long"),
    ];
    for (i, (body, status, code)) in cases.iter().enumerate() {
        let e = d.start_session(body, &format!("bad-{i}")).await.unwrap_err();
        assert_eq!(api_code(e), (*status, (*code).to_owned()), "{body:?}");
    }
    // Malformed bodies, in the error shape.
    for (i, body) in [
        json!({"point_code": "HK001", "plate": "30A90909", "vehicle_class": "car", "turns": -1}),
        json!({"point_code": "HK001", "plate": "30A90909", "vehicle_class": "tank", "turns": 1}),
        json!({"point_code": "HK001", "plate": "30A90909", "vehicle_class": "car", "turns": 1, "tip": 5}),
        json!({"plate": "30A90909", "vehicle_class": "car", "turns": 1}),
    ]
    .iter()
    .enumerate()
    {
        let a = post(&t, &token, "/v1/sessions", Some(&format!("raw-{i}")), body).await;
        assert_error(&a.pair(), 400, "invalid_body");
    }
    let w = wallet(&d).await;
    assert_eq!((w.balance, w.movements.len()), (500_000, 1), "nothing moved");
    assert!(all_sessions(&d).await.is_empty(), "nothing started");
    assert_eq!(live_occupancy(&t, "HK001").await, 0);
    assert_eq!(db_active(&t, "HK001").await, 0);

    // Extending a stopped session: 409, and no money.
    let s = d.start_session(&start("HK001", "30A90909", 2), "ok").await.unwrap();
    let stopped = d.stop_session(s.id, "stop").await.unwrap();
    let before = wallet(&d).await;
    let (status, code, _) = api_error(d.extend_session(s.id, &turns(1), "ext").await.unwrap_err());
    assert_eq!((status, code.as_str()), (409, "session_ended"));
    assert_eq!(wallet(&d).await, before);
    assert_eq!(d.session(s.id).await.unwrap().turns, stopped.turns);
    // Extending too far: 422, and no money.
    let s = d.start_session(&start("HK001", "30A90910", 2), "ok2").await.unwrap();
    let before = wallet(&d).await;
    let e = d.extend_session(s.id, &turns(23), "too-long").await.unwrap_err();
    assert_eq!(api_code(e), (422, "stay_too_long".into()));
    let e = d
        .extend_session(s.id, &ExtendSession { minutes: Some(60), turns: Some(1), ..Default::default() }, "both")
        .await
        .unwrap_err();
    assert_eq!(api_code(e), (400, "invalid_duration".into()));
    assert_eq!(wallet(&d).await, before);
    assert_eq!(d.session(s.id).await.unwrap().turns, 2);

    // No token, or a wrong one: 401 on every session route.
    let http = reqwest::Client::new();
    let id = s.id;
    let routes = [
        ("POST", "/v1/sessions".to_owned()),
        ("GET", "/v1/sessions".to_owned()),
        ("GET", format!("/v1/sessions/{id}")),
        ("PATCH", format!("/v1/sessions/{id}")),
        ("POST", format!("/v1/sessions/{id}/extend")),
        ("POST", format!("/v1/sessions/{id}/stop")),
    ];
    for (method, path) in &routes {
        for bearer in [None, Some("ipk_drv_nope")] {
            let mut req = http
                .request(method.parse().unwrap(), t.url(path))
                .header("Idempotency-Key", "no-auth")
                .json(&json!({"point_code": "HK001", "plate": "30A90911", "vehicle_class": "car", "turns": 1}));
            if let Some(b) = bearer {
                req = req.bearer_auth(b);
            }
            assert_error(&raw(req).await, 401, "unauthorized");
        }
    }
    assert_eq!(wallet(&d).await, before);
    assert_eq!(all_sessions(&d).await.len(), 2);
    t.assert_ledger_sound().await;
});

matrix!(other_drivers_sessions_do_not_exist, |t| {
    let (a, _) = login(&t, "0912000100").await;
    a.sandbox_topup(200_000, "fund").await.unwrap();
    let (b, token_b) = login(&t, "0912000101").await;
    b.sandbox_topup(200_000, "fund").await.unwrap();
    let s = a.start_session(&start("HK007", "30A10010", 2), "a").await.unwrap();
    let missing = s.id + 10_000;

    let http = reqwest::Client::new();
    for id in [s.id, missing] {
        let answers = [
            raw(http.get(t.url(&format!("/v1/sessions/{id}"))).bearer_auth(&token_b)).await,
            raw(http
                .patch(t.url(&format!("/v1/sessions/{id}")))
                .bearer_auth(&token_b)
                .json(&json!({"plate": "30A10011"})))
            .await,
            raw(http
                .post(t.url(&format!("/v1/sessions/{id}/extend")))
                .bearer_auth(&token_b)
                .header("Idempotency-Key", format!("ext-{id}"))
                .json(&json!({"turns": 1})))
            .await,
            raw(http
                .post(t.url(&format!("/v1/sessions/{id}/stop")))
                .bearer_auth(&token_b)
                .header("Idempotency-Key", format!("stop-{id}"))
                .json(&json!({})))
            .await,
        ];
        for a in &answers {
            assert_error(a, 404, "session_not_found");
        }
        if id == s.id {
            // Word for word what a missing session answers: nothing says it exists.
            let gone = raw(http.get(t.url(&format!("/v1/sessions/{missing}"))).bearer_auth(&token_b)).await;
            assert_eq!(answers[0], gone);
        }
    }
    // Through the typed client too.
    assert_eq!(api_code(b.session(s.id).await.unwrap_err()), (404, "session_not_found".into()));
    assert_eq!(api_code(b.extend_session(s.id, &turns(1), "x").await.unwrap_err()), (404, "session_not_found".into()));
    assert_eq!(api_code(b.stop_session(s.id, "y").await.unwrap_err()), (404, "session_not_found".into()));
    assert_eq!(api_code(b.correct_plate(s.id, "30A10012").await.unwrap_err()), (404, "session_not_found".into()));

    // The session is untouched, and nobody paid.
    let after = a.session(s.id).await.unwrap();
    assert_eq!(
        (after.status, after.plate.as_str(), after.turns, after.amount_charged, after.amount_refunded),
        (SessionStatus::Active, "30A10010", 2, s.amount_charged, 0)
    );
    assert_eq!(wallet(&b).await.balance, 200_000);
    assert_eq!(wallet(&a).await.balance, 200_000 - s.amount_charged);
    assert_eq!(live_occupancy(&t, "HK007").await, 1);
    t.assert_ledger_sound().await;
});

// ---- extend and stop -----------------------------------------------------------------------------

matrix!(extension_continues_the_stay, |t| {
    let d = t.funded_driver("0912000110", 1_000_000).await;
    let s = d.start_session(&start("HK008", "30A11011", 2), "start").await.unwrap();
    assert_eq!(s.amount_charged, price(&t, &s, 2));
    let e = d.extend_session(s.id, &turns(1), "ext-1").await.unwrap();
    let cost = price(&t, &s, 3) - price(&t, &s, 2);
    assert_eq!(e.amount_charged - s.amount_charged, cost, "extension = price(3) − price(2)");
    let by_quotes =
        quote(&t, "HK008", Some(s.started_at), 180).await - quote(&t, "HK008", Some(s.started_at), 120).await;
    assert_eq!(cost, by_quotes);
    assert_eq!((e.id, e.turns, e.status, e.started_at), (s.id, 3, SessionStatus::Active, s.started_at));
    assert_eq!(e.paid_until, s.started_at + Duration::hours(3));
    assert_eq!(e.expires_at, e.paid_until + Duration::minutes(10));
    assert_eq!(e.tariff_id, s.tariff_id);
    let w = wallet(&d).await;
    assert_eq!(w.balance, 1_000_000 - price(&t, &s, 3));
    let m = &w.movements[0];
    assert_eq!((m.kind.as_str(), m.amount, m.session_id), ("session_extend", -cost, Some(s.id)));

    // Minutes round up: 90 minutes are 2 more turns, the 4th and 5th hours of the stay.
    let e2 = d
        .extend_session(s.id, &ExtendSession { minutes: Some(90), turns: None, ..Default::default() }, "ext-2")
        .await
        .unwrap();
    assert_eq!((e2.turns, e2.paid_until), (5, s.started_at + Duration::hours(5)));
    assert_eq!(e2.amount_charged, price(&t, &s, 5), "start + extensions = the whole stay at once");

    // The receipt lists every purchase; each one's lines sum to its amount, and the
    // extensions' turns carry on the hour count.
    let r = d.session(s.id).await.unwrap();
    assert_eq!(r.purchases.iter().map(|p| p.turns).collect::<Vec<_>>(), [2, 1, 2]);
    assert_eq!(
        r.purchases.iter().map(|p| p.amount).collect::<Vec<_>>(),
        [price(&t, &s, 2), cost, price(&t, &s, 5) - price(&t, &s, 3)]
    );
    assert_eq!(r.purchases.iter().map(|p| p.amount).sum::<i64>(), r.amount_charged);
    for p in &r.purchases {
        assert_eq!(p.lines.iter().map(|l| l.amount).sum::<i64>(), p.amount, "{p:?}");
    }
    assert_eq!(r.purchases[1].paid_until, s.started_at + Duration::hours(3));
    assert_eq!(r.purchases[1].lines.iter().filter_map(|l| l.hour_of_stay).collect::<Vec<_>>(), [3]);
    assert_eq!(r.purchases[2].lines.iter().filter_map(|l| l.turn).collect::<Vec<_>>(), [4, 5]);

    // Beyond the 24 h maximum stay: refused, nothing charged.
    let before = wallet(&d).await;
    assert_eq!(api_code(d.extend_session(s.id, &turns(20), "ext-3").await.unwrap_err()), (422, "stay_too_long".into()));
    assert_eq!(wallet(&d).await, before);
    // Up to 24 h exactly is fine.
    let full = d.extend_session(s.id, &turns(19), "ext-4").await.unwrap();
    assert_eq!((full.turns, full.amount_charged), (24, price(&t, &s, 24)));
    t.assert_ledger_sound().await;
});

matrix!(stop_refunds_unused_whole_turns, |t| {
    let (d, token) = login(&t, "0912000120").await;
    d.sandbox_topup(1_000_000, "fund").await.unwrap();
    let s = d.start_session(&start("HK009", "30A12012", 3), "start").await.unwrap();
    assert_eq!(live_occupancy(&t, "HK009").await, 1);
    let path = format!("/v1/sessions/{}/stop", s.id);
    let first = post(&t, &token, &path, Some("stop-1"), &json!({})).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let stopped: SessionView = serde_json::from_value(first.body.clone()).unwrap();
    let refund = price(&t, &s, 3) - price(&t, &s, 1);
    assert!(refund > 0);
    assert_eq!((stopped.status, stopped.end_reason.as_deref()), (SessionStatus::Ended, Some("stopped")));
    assert_eq!((stopped.amount_charged, stopped.amount_refunded), (price(&t, &s, 3), refund));
    let ended_at = stopped.ended_at.expect("ended_at");
    assert!(ended_at >= s.started_at && ended_at < s.started_at + Duration::minutes(1), "{ended_at}");
    let w = wallet(&d).await;
    assert_eq!(w.balance, 1_000_000 - price(&t, &s, 3) + refund);
    let m = &w.movements[0];
    assert_eq!((m.kind.as_str(), m.amount, m.session_id), ("session_refund", refund, Some(s.id)));
    assert_eq!(live_occupancy(&t, "HK009").await, 0);

    // Stopping again (new key): the same ended session, no more money.
    let again = d.stop_session(s.id, "stop-2").await.unwrap();
    assert_eq!(again, stopped);
    assert_eq!(wallet(&d).await, w);
    // The first stop retried with its key: replayed.
    let replay = post(&t, &token, &path, Some("stop-1"), &json!({})).await;
    assert_eq!((replay.status, replay.replayed.as_deref()), (200, Some("true")));
    assert_eq!(replay.body, first.body);
    assert_eq!(wallet(&d).await, w);
    assert_eq!(live_occupancy(&t, "HK009").await, 0, "released once");

    // One turn bought: at least one turn is kept, nothing refunded, no movement.
    let one = d.start_session(&start("HK009", "30A12013", 1), "one").await.unwrap();
    let stopped_one = d.stop_session(one.id, "stop-one").await.unwrap();
    assert_eq!((stopped_one.amount_refunded, stopped_one.amount_charged), (0, one.amount_charged));
    let w = wallet(&d).await;
    assert_eq!(w.movements[0].kind, "session_start", "no zero refund posted: {:?}", w.movements[0]);

    // A started turn counts as used: after 61 minutes of 3 turns, one turn comes back.
    let s3 = d.start_session(&start("HK009", "30A12014", 3), "three").await.unwrap();
    t.clock.advance(Duration::minutes(61));
    let late = d.stop_session(s3.id, "stop-late").await.unwrap();
    assert_eq!(late.amount_refunded, price(&t, &s3, 3) - price(&t, &s3, 2));
    assert_eq!(wallet(&d).await.balance, w.balance - s3.amount_charged + late.amount_refunded);
    t.assert_ledger_sound().await;
});

// ---- live occupancy and expiry ---------------------------------------------------------------------

matrix!(occupancy_follows_starts_and_stops, |t| {
    let capacity = t.client.point("HK003").await.unwrap().capacity;
    assert_eq!(capacity, 12);
    assert_eq!((live_occupancy(&t, "HK003").await, free_spaces(&t, "HK003").await), (0, 12));
    let a = t.funded_driver("0912000130", 200_000).await;
    let b = t.funded_driver("0912000131", 200_000).await;
    let sa = a.start_session(&start("HK003", "30A13001", 1), "a").await.unwrap();
    assert_eq!((live_occupancy(&t, "HK003").await, free_spaces(&t, "HK003").await), (1, capacity - 1));
    let sb = b.start_session(&start("HK003", "30A13002", 2), "b").await.unwrap();
    assert_eq!((live_occupancy(&t, "HK003").await, free_spaces(&t, "HK003").await), (2, capacity - 2));
    assert_eq!(db_active(&t, "HK003").await, 2);
    // Refused starts and extensions take no space.
    assert!(b.start_session(&start("HK003", "30A13001", 1), "dup").await.is_err());
    b.extend_session(sb.id, &turns(1), "ext").await.unwrap();
    assert_eq!(live_occupancy(&t, "HK003").await, 2);
    a.stop_session(sa.id, "stop-a").await.unwrap();
    assert_eq!((live_occupancy(&t, "HK003").await, free_spaces(&t, "HK003").await), (1, capacity - 1));
    b.stop_session(sb.id, "stop-b").await.unwrap();
    b.stop_session(sb.id, "stop-b-again").await.unwrap();
    assert_eq!((live_occupancy(&t, "HK003").await, free_spaces(&t, "HK003").await), (0, capacity));
    assert_eq!(db_active(&t, "HK003").await, 0);
    t.assert_ledger_sound().await;
});

matrix!(sessions_expire_by_themselves, |t| {
    let d = t.funded_driver("0912000140", 200_000).await;
    let s = d.start_session(&start("HK010", "30A14014", 1), "start").await.unwrap();
    assert_eq!(live_occupancy(&t, "HK010").await, 1);

    // Past paid_until but within the 10 minutes' grace: still active.
    t.clock.advance(Duration::minutes(65));
    tokio::time::sleep(StdDuration::from_millis(600)).await;
    assert!(t.app.store.session(s.id).await.unwrap().unwrap().active, "closed during the grace period");
    assert_eq!(d.session(s.id).await.unwrap().status, SessionStatus::Active);
    assert_eq!(live_occupancy(&t, "HK010").await, 1);

    // Past expires_at: the expiry job ends it and frees the space.
    t.clock.advance(Duration::minutes(6));
    let (id, tr) = (s.id, &t);
    eventually("the expiry job closes the session", || async move {
        !tr.app.store.session(id).await.unwrap().unwrap().active
    })
    .await;
    eventually("the live occupancy goes back down", || async move { live_occupancy(tr, "HK010").await == 0 }).await;
    assert_eq!(db_active(&t, "HK010").await, 0);
    assert_eq!(free_spaces(&t, "HK010").await, t.client.point("HK010").await.unwrap().capacity);
    let e = d.session(s.id).await.unwrap();
    assert_eq!(
        (e.status, e.end_reason.as_deref(), e.ended_at),
        (SessionStatus::Ended, Some("expired"), Some(s.paid_until))
    );
    assert_eq!((e.amount_charged, e.amount_refunded), (s.amount_charged, 0), "an expired stay was used in full");
    assert!(d.sessions(&SessionListQuery { status: Some(SessionStatus::Active) }).await.unwrap().is_empty());
    let ended = d.sessions(&SessionListQuery { status: Some(SessionStatus::Ended) }).await.unwrap();
    assert_eq!(ended.iter().map(|s| s.id).collect::<Vec<_>>(), [s.id]);
    // Extending it is refused; stopping it answers it as it is.
    assert_eq!(
        api_code(d.extend_session(s.id, &turns(1), "late-ext").await.unwrap_err()),
        (409, "session_ended".into())
    );
    assert_eq!(d.stop_session(s.id, "late-stop").await.unwrap().amount_refunded, 0);
    let w = wallet(&d).await;
    assert_eq!(w.balance, 200_000 - s.amount_charged);
    assert!(w.movements.iter().all(|m| m.kind != "session_refund"));

    // The plate parks again, here.
    let again = d.start_session(&start("HK010", "30A14014", 1), "again").await.unwrap();
    assert_eq!(again.status, SessionStatus::Active);
    assert_eq!(live_occupancy(&t, "HK010").await, 1);
    t.assert_ledger_sound().await;
});

// ---- a start past an expired session the job has not closed ---------------------------

/// On PostgreSQL a start is one call to `iparking_try_start_session` (migration 0012); a point
/// or plate with a session past its expiry but still open sends it down the statement path,
/// which closes that session first. Both must answer what they store.
async fn start_past_an_unclosed_expired_session(db: iparking_tests::Db, live: iparking_tests::Live) {
    let mut opts = iparking_tests::Options::default();
    // The expiry job does not run during the test: the expired session stays open.
    opts.settings.expiry_interval = StdDuration::from_secs(3600);
    let t = TestApp::start_with(db, live, opts).await;
    let d = t.funded_driver("0912000150", 300_000).await;
    let first = d.start_session(&start("HK011", "30A15015", 1), "first").await.unwrap();
    let other = d.start_session(&start("HK012", "30A15016", 1), "other").await.unwrap();
    if db == iparking_tests::Db::Postgres {
        // The node reserved a block of session ids with its first start and took the next
        // one from it: the one-call path, not the sequence's default.
        assert_eq!(other.id, first.id + 1);
        assert_eq!(t.sql_i64("SELECT last_value FROM sessions_id_seq").await, first.id + 15);
    }
    assert_eq!(d.session(first.id).await.unwrap().started_at, first.started_at, "stored as answered");

    t.clock.advance(Duration::minutes(75));
    assert!(t.app.store.session(first.id).await.unwrap().unwrap().active, "the job closed it");
    let again = d.start_session(&start("HK011", "30A15015", 1), "again").await.unwrap();
    assert_ne!(again.id, first.id);
    let closed = d.session(first.id).await.unwrap();
    assert_eq!(
        (closed.status, closed.end_reason.as_deref(), closed.ended_at),
        (SessionStatus::Ended, Some("expired"), Some(first.paid_until))
    );
    let got = d.session(again.id).await.unwrap();
    assert_eq!(
        (got.status, got.started_at, got.paid_until, got.amount_charged),
        (SessionStatus::Active, again.started_at, again.paid_until, again.amount_charged)
    );
    assert_eq!(db_active(&t, "HK011").await, 1);
    assert_eq!(live_occupancy(&t, "HK011").await, 1);
    // Its replay is its first answer; the wallet paid three starts once each.
    assert_eq!(d.start_session(&start("HK011", "30A15015", 1), "again").await.unwrap(), again);
    let charged = first.amount_charged + other.amount_charged + again.amount_charged;
    assert_eq!(wallet(&d).await.balance, 300_000 - charged);
    t.assert_ledger_sound().await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_past_an_unclosed_expired_session_sqlite_memory() {
    start_past_an_unclosed_expired_session(iparking_tests::Db::Sqlite, iparking_tests::Live::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_past_an_unclosed_expired_session_postgres_redis() {
    start_past_an_unclosed_expired_session(iparking_tests::Db::Postgres, iparking_tests::Live::Redis).await;
}

// A wallet start claims its key in the write (no lookup first): a retry must still get the
// first answer when a new start would now be refused, before the write or in it.
matrix!(a_retry_gets_the_first_answer_where_a_new_start_is_refused, |t| {
    let d = t.funded_driver("0912000151", 200_000).await;
    let body = start("HK013", "30A15017", 1);
    let first = d.start_session(&body, "k-first").await.unwrap();
    // Refused in the write: the plate is parked (by this very start).
    assert_eq!(d.start_session(&body, "k-first").await.unwrap(), first);
    let (status, e) = api_code(d.start_session(&body, "k-second").await.unwrap_err());
    assert_eq!((status, e.as_str()), (409, "plate_active"));
    // Refused before the write: the point closed since.
    t.admin.close_point("HK013").await.expect("close");
    let (status, e) = api_code(d.start_session(&start("HK013", "30A15018", 1), "k-third").await.unwrap_err());
    assert_eq!((status, e.as_str()), (409, "point_closed"));
    assert_eq!(d.start_session(&body, "k-first").await.unwrap(), first);
    // A malformed body under a used key is that key's reuse for another request.
    let (_, token) = login(&t, "0912000151").await;
    let answer = post(&t, &token, "/v1/sessions", Some("k-first"), &json!({"point_code": "HK013"})).await;
    assert_error(&answer.pair(), 422, "idempotency_key_reused");
    assert_eq!(answer.replayed, None);
    assert_eq!(wallet(&d).await.balance, 200_000 - first.amount_charged, "charged once");
    t.assert_ledger_sound().await;
});

// ---- refusals are not errors in PostgreSQL's log ---------------------------------------------

/// PostgreSQL's log, which `scripts/test` names (the test fails without it: it never skips).
fn pg_log() -> String {
    let path = std::env::var("IPARKING_TEST_PG_LOG").expect("IPARKING_TEST_PG_LOG (set by scripts/test)");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// On PostgreSQL the one-call start returns its refusals (migrations 0012, 0015). Raised, each
/// full point, parked plate, closed point, empty wallet or used key was an ERROR with its
/// statement in the database's log:
/// thousands under load, among which a real error is hard to see. The refusals still answer
/// what they did, write nothing, and a retry still gets its first answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_starts_leave_no_error_in_postgres_log_postgres_redis() {
    let t = TestApp::start(iparking_tests::Db::Postgres, iparking_tests::Live::Redis).await;
    small_point(&t, "HK981", 1, 21.0241, 105.8466).await;
    small_point(&t, "HK982", 1, 21.0243, 105.8468).await;
    let d = t.funded_driver("0912000160", 300_000).await;
    let first = d.start_session(&start("HK981", "30A16016", 1), "r-first").await.unwrap();
    let keys = t.sql_i64("SELECT count(*) FROM idempotency_keys").await;

    // Full, parked elsewhere, closed: each refused by the function, which wrote nothing.
    let (status, e) = api_code(d.start_session(&start("HK981", "30A16017", 1), "r-full").await.unwrap_err());
    assert_eq!((status, e.as_str()), (409, "point_full"));
    let (status, e) = api_code(d.start_session(&start("HK982", "30A16016", 1), "r-parked").await.unwrap_err());
    assert_eq!((status, e.as_str()), (409, "plate_active"));
    t.admin.close_point("HK982").await.expect("close");
    let (status, e) = api_code(d.start_session(&start("HK982", "30A16018", 1), "r-closed").await.unwrap_err());
    assert_eq!((status, e.as_str()), (409, "point_closed"));
    assert_eq!(t.sql_i64("SELECT count(*) FROM idempotency_keys").await, keys, "no key kept for a refusal");
    assert_eq!(t.sql_i64("SELECT count(*) FROM sessions WHERE plate LIKE '30A1601%'").await, 1);

    // A retry of the first start is still its first answer, where a new start is refused.
    assert_eq!(d.start_session(&start("HK981", "30A16016", 1), "r-first").await.unwrap(), first);
    assert_eq!(wallet(&d).await.balance, 300_000 - first.amount_charged, "charged once");
    // A wallet that cannot pay is refused by the function too (migration 0015), and the key
    // is not kept.
    small_point(&t, "HK983", 5, 21.0245, 105.8470).await;
    let broke = t.funded_driver("0912000161", 1_234).await;
    let (status, e) = api_code(broke.start_session(&start("HK983", "30A16019", 8), "r-broke").await.unwrap_err());
    assert_eq!((status, e.as_str()), (402, "insufficient_funds"));
    assert_eq!(wallet(&broke).await.balance, 1_234, "nothing charged");

    // Migration 0011's function raised these as `point_full`, `point_closed` and the parked
    // session's id.
    let log = pg_log();
    for raised in ["ERROR:  point_full", "ERROR:  point_closed", &format!("ERROR:  {}", first.id), "ERROR:  1234"] {
        assert!(!log.lines().any(|l| l.ends_with(raised)), "PostgreSQL logged {raised:?}");
    }
    // Migration 0012's function raised a used key as a unique violation, whose DETAIL names it.
    assert!(!log.lines().any(|l| l.contains(", r-first) already exists")), "PostgreSQL logged the used key");
    t.assert_ledger_sound().await;
    t.stop().await;
}

/// A debit of the same wallet committed between the one-call start's read of the wallet and
/// its own debit (two starts of one driver at two points, or a start and an extension) was
/// raised as IPK05, an ERROR in PostgreSQL's log, after the session and its ledger transaction
/// had been written. Migration 0016 catches it inside the function: the writes are rolled back,
/// the key is taken back, and the start is answered 402 with the balance the debit found.
/// Made deterministic here by holding the wallet's row lock from a second connection until the
/// start waits on it, then emptying the wallet there (and restoring it after).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_debit_beaten_by_a_concurrent_one_is_refused_without_error_postgres_redis() {
    use sqlx::{Connection, Row};
    let t = TestApp::start(iparking_tests::Db::Postgres, iparking_tests::Live::Redis).await;
    small_point(&t, "HK985", 5, 21.0247, 105.8472).await;
    let d = t.funded_driver("0912000163", 60_000).await;
    let keys = t.sql_i64("SELECT count(*) FROM idempotency_keys").await;
    let sessions = t.sql_i64("SELECT count(*) FROM sessions").await;
    let transactions = t.sql_i64("SELECT count(*) FROM ledger_transactions").await;

    let mut holder = sqlx::PgConnection::connect(&t.db.url).await.expect("connect PostgreSQL");
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    let wallet_row =
        sqlx::query("SELECT id, balance FROM accounts WHERE kind = 'wallet' AND balance = 60000 FOR UPDATE")
            .fetch_one(&mut holder)
            .await
            .expect("the driver's wallet");
    let (account, funded): (i64, i64) = (wallet_row.get(0), wallet_row.get(1));

    let starter = d.clone();
    let started = tokio::spawn(async move { starter.start_session(&start("HK985", "30A16020", 1), "r-beaten").await });
    // The start has read 60,000 đ and waits for the row to debit it.
    let mut waited = 0;
    while t
        .sql_i64(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
             AND query LIKE '%iparking_try_start_session2%'",
        )
        .await
        == 0
    {
        waited += 1;
        assert!(waited < 200, "the start never waited for the wallet's row");
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    sqlx::query("UPDATE accounts SET balance = 4321 WHERE id = $1").bind(account).execute(&mut holder).await.unwrap();
    sqlx::query("COMMIT").execute(&mut holder).await.unwrap();

    let (status, code, body) = api_error(started.await.unwrap().unwrap_err());
    assert_eq!((status, code.as_str()), (402, "insufficient_funds"), "{body}");
    assert!(body.to_string().contains("4321"), "the balance the debit found: {body}");
    assert_eq!(t.sql_i64("SELECT count(*) FROM idempotency_keys").await, keys, "the key is taken back");
    assert_eq!(t.sql_i64("SELECT count(*) FROM sessions").await, sessions, "no session is left");
    assert_eq!(t.sql_i64("SELECT count(*) FROM ledger_transactions").await, transactions, "no transaction is left");
    assert!(!pg_log().lines().any(|l| l.ends_with("ERROR:  4321")), "PostgreSQL logged the refused debit");

    // The wallet as it was (the emptying above was this test's, not a movement), then the same
    // key starts the session: nothing of the refused try remains in the way.
    sqlx::query("UPDATE accounts SET balance = $2 WHERE id = $1")
        .bind(account)
        .bind(funded)
        .execute(&mut holder)
        .await
        .unwrap();
    let s = d.start_session(&start("HK985", "30A16020", 1), "r-beaten").await.expect("started on retry");
    assert_eq!(wallet(&d).await.balance, funded - s.amount_charged);
    t.assert_ledger_sound().await;
    t.stop().await;
}

matrix!(extension_and_stop_quotes_are_what_extend_and_stop_then_do, |t| {
    let d = t.funded_driver("0912000071", 300_000).await;
    let token = d.token().unwrap().to_owned();
    let get = |path: String| {
        let req = reqwest::Client::new().get(t.url(&path)).header("Authorization", format!("Bearer {token}"));
        iparking_tests::raw(req)
    };
    let s = d.start_session(&start("hk003", "30A-777.71", 3), "q-start").await.unwrap();

    // The extension's price is what the extension charges.
    let (status, q) = get(format!("/v1/sessions/{}/extension-quote?minutes=90", s.id)).await;
    assert_eq!(status, 200, "{q}");
    assert_eq!(q["turns"], 2, "90 minutes are two whole turns");
    let priced = q["total"].as_i64().unwrap();
    assert!(priced > 0);
    let lines: i64 = q["lines"].as_array().unwrap().iter().map(|l| l["amount"].as_i64().unwrap()).sum();
    assert_eq!(lines, priced, "the lines add up");
    let after =
        d.extend_session(s.id, &ExtendSession { minutes: Some(90), ..Default::default() }, "q-extend").await.unwrap();
    assert_eq!(after.amount_charged - s.amount_charged, priced);
    assert_eq!(
        after.paid_until.to_rfc3339(),
        chrono::DateTime::parse_from_rfc3339(q["end"].as_str().unwrap()).unwrap().to_rfc3339()
    );

    // The stop's refund is what the stop gives back.
    let (status, sq) = get(format!("/v1/sessions/{}/stop-quote", s.id)).await;
    assert_eq!(status, 200, "{sq}");
    let refund = sq["refund"].as_i64().unwrap();
    assert!(refund > 0, "four of five turns unused: {sq}");
    let stopped = d.stop_session(s.id, "q-stop").await.unwrap();
    assert_eq!(stopped.amount_refunded, refund);

    // Refusals: both or neither of minutes and turns, another driver's session, an ended one.
    let other = t.funded_driver("0912000072", 100_000).await;
    let s2 = other.start_session(&start("hk003", "30A-777.72", 1), "q-other").await.unwrap();
    let (status, e) = get(format!("/v1/sessions/{}/extension-quote?minutes=60&turns=1", s2.id)).await;
    assert_eq!(status, 404, "another driver's session is not found: {e}");
    let s3 = d.start_session(&start("hk003", "30A-777.73", 1), "q-start-3").await.unwrap();
    for query in ["minutes=60&turns=1", "", "minutes=0"] {
        let (status, e) = get(format!("/v1/sessions/{}/extension-quote?{query}", s3.id)).await;
        assert_eq!(status, 400, "{query}: {e}");
        assert!(e["error"]["code"].is_string(), "{e}");
    }
    for path in
        [format!("/v1/sessions/{}/extension-quote?minutes=60", s.id), format!("/v1/sessions/{}/stop-quote", s.id)]
    {
        let (status, e) = get(path.clone()).await;
        iparking_tests::assert_error(&(status, e), 409, "session_ended");
    }
    let (status, _) =
        iparking_tests::raw(reqwest::Client::new().get(t.url(&format!("/v1/sessions/{}/stop-quote", s3.id)))).await;
    assert_eq!(status, 401, "a driver's token is needed");
});
