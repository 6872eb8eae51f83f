//! Input as an attacker or a careless client sends it (issue 30): control characters in
//! paths, queries, JSON and forms; JSON that is not an object of the documented fields;
//! errors that name the field in both languages; and what a timed-out request leaves.
//! Each case changes nothing and answers a 4xx in the one error shape, on SQLite and on
//! PostgreSQL (where a NUL in text used to be a 500 and two ERROR lines in its log).

use std::time::Duration;

use iparking::Settings;
use iparking_mobile_api::{StartSession, VehicleClass};
use iparking_tests::{Db, Live, Options, TestApp, assert_error, matrix, raw};
use serde_json::{Value, json};
use sqlx::Connection;

fn car(point: &str, plate: &str) -> StartSession {
    StartSession {
        point_code: point.into(),
        plate: plate.into(),
        vehicle_class: Some(VehicleClass::Car),
        minutes: None,
        turns: Some(1),
        payment: None,
        card_id: None,
        lat: None,
        lon: None,
    }
}

/// The lines of PostgreSQL's log that a NUL in text makes (none expected).
fn nul_errors_in_pg_log() -> usize {
    let path = std::env::var("IPARKING_TEST_PG_LOG").expect("IPARKING_TEST_PG_LOG (set by ./scripts/test)");
    let log = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    log.lines().filter(|l| l.contains("invalid byte sequence") && l.contains("0x00")).count()
}

matrix!(control_characters_are_refused_where_text_enters, |t| {
    let http = reqwest::Client::new();
    let driver = t.driver_token("0912300001").await;
    let before = nul_errors_in_pg_log();
    let json_post = |path: &str, body: Value| http.post(t.url(path)).json(&body);

    let cases: Vec<(&str, reqwest::RequestBuilder)> = vec![
        ("path", http.get(t.url("/v1/points/HK%00"))),
        ("path, newline", http.get(t.url("/v1/points/HK%0A001"))),
        ("receipt path", http.get(t.url("/v1/receipts/R%00?code=1234"))),
        ("query", http.get(t.url("/v1/points?lat=21.02&lon=105.85&vehicle_class=car%00"))),
        ("tariff query", http.get(t.url("/v1/points/HK001/tariff?vehicle_class=car&at=%00"))),
        ("quote", json_post("/v1/quotes", json!({"point_code": "HK\u{0}001", "vehicle_class": "car", "minutes": 60}))),
        (
            "warden login",
            json_post("/v1/warden/auth/token", json!({"username": "a\u{0}", "password": "x", "device": "d"})),
        ),
        (
            "SMS message id",
            json_post(
                "/webhooks/sms/viettel",
                json!({"message_id": "m\u{0}", "from": "0912300002", "text": "IP25HK 001 30A12345"}),
            )
            .header("X-Carrier-Secret", iparking_tests::VIETTEL_SECRET),
        ),
        (
            "session start",
            http.post(t.url("/v1/sessions"))
                .bearer_auth(&driver)
                .header("Idempotency-Key", "nul-1")
                .json(&json!({"point_code": "HK001", "plate": "30A\u{0}12345", "turns": 1})),
        ),
        (
            "free text with a NUL",
            http.post(t.url("/v1/me/refund-requests"))
                .bearer_auth(&driver)
                .header("Idempotency-Key", "nul-2")
                .json(&json!({"kind": "wallet_balance", "reason": "please\u{0}"})),
        ),
        (
            "a line break in a code",
            json_post("/v1/quotes", json!({"point_code": "HK001\n", "vehicle_class": "car", "minutes": 60})),
        ),
        (
            "admin point name",
            t.admin_request(reqwest::Method::PATCH, "/v1/admin/points/HK001").json(&json!({"name": "Tên\u{1}"})),
        ),
    ];
    for (what, req) in cases {
        let answer = raw(req).await;
        assert_error(&answer, 400, "invalid_characters");
        assert!(answer.1["error"]["message"].as_str().unwrap().contains("NUL"), "{what}: {}", answer.1);
    }
    assert_eq!(t.sql_i64("SELECT COUNT(*) FROM sessions").await, 0, "nothing written");
    assert_eq!(t.sql_i64("SELECT COUNT(*) FROM refund_requests").await, 0, "nothing written");
    let name = t.client.point("HK001").await.unwrap().name;
    assert!(!name.contains('\u{1}'), "{name}");
    // A path has no field to name.
    let answer = raw(http.get(t.url("/v1/points/HK%00"))).await;
    assert!(answer.1["error"].get("details").is_none(), "{}", answer.1);
    // The field at fault is named.
    let answer =
        raw(json_post("/v1/quotes", json!({"point_code": "HK\u{0}1", "vehicle_class": "car", "minutes": 60}))).await;
    assert_eq!(answer.1["error"]["details"]["field"], "point_code", "{}", answer.1);

    // Free text keeps its line breaks and tabs (a driver's reason, here).
    let funded = t.funded_driver("0912300003", 50_000).await;
    let token = funded.token().expect("driver token").to_owned();
    let answer = raw(http
        .post(t.url("/v1/me/refund-requests"))
        .bearer_auth(&token)
        .header("Idempotency-Key", "multi-line")
        .json(&json!({"kind": "wallet_balance", "reason": "Line one\n\tline two\r\n"})))
    .await;
    assert_eq!(answer.0, 201, "{}", answer.1);
    assert_eq!(nul_errors_in_pg_log(), before, "no NUL reached PostgreSQL");
});

matrix!(json_bodies_are_objects_of_the_documented_fields, |t| {
    let http = reqwest::Client::new();
    let d = t.funded_driver("0912300010", 100_000).await;
    let token = d.token().unwrap().to_owned();

    // An array where an object belongs: refused, nothing done.
    let tariff_id = t.sql_i64("SELECT MIN(id) FROM tariffs").await;
    let answer =
        raw(t.admin_request(reqwest::Method::POST, &format!("/v1/admin/tariffs/{tariff_id}/retire")).json(&json!([])))
            .await;
    assert_error(&answer, 400, "invalid_body");
    assert!(answer.1["error"]["message"].as_str().unwrap().contains("đối tượng JSON"), "{}", answer.1);
    assert_eq!(
        t.sql_i64(&format!("SELECT COUNT(*) FROM tariffs WHERE id = {tariff_id} AND valid_until IS NULL")).await,
        1
    );
    let answer = raw(http.post(t.url("/v1/me/vehicles")).bearer_auth(&token).json(&json!(["30B-999.98", "car"]))).await;
    assert_error(&answer, 400, "invalid_body");
    assert!(d.vehicles().await.unwrap().is_empty(), "no vehicle added");

    // Unknown fields: named, in both languages.
    let quote = json!({"point_code": "HK001", "vehicle_class": "car", "minutes": 60, "discount": 100});
    let answer = raw(http.post(t.url("/v1/quotes")).header("Accept-Language", "en").json(&quote)).await;
    assert_error(&answer, 400, "invalid_body");
    assert_eq!(answer.1["error"]["details"]["field"], "discount");
    assert!(answer.1["error"]["message"].as_str().unwrap().starts_with("Unknown field `discount`"), "{}", answer.1);
    let answer = raw(http.post(t.url("/v1/quotes")).json(&quote)).await;
    assert!(answer.1["error"]["message"].as_str().unwrap().contains("`discount` không có"), "{}", answer.1);

    // A key twice: refused, nothing started (the last value does not silently win).
    let body = r#"{"point_code":"HK001","plate":"30A-111.22","plate":"30A-333.44","turns":1}"#;
    let answer = raw(http
        .post(t.url("/v1/sessions"))
        .bearer_auth(&token)
        .header("Idempotency-Key", "dup-1")
        .header("content-type", "application/json")
        .body(body))
    .await;
    assert_error(&answer, 400, "invalid_body");
    assert_eq!(answer.1["error"]["details"]["field"], "plate");
    assert_eq!(t.sql_i64("SELECT COUNT(*) FROM sessions").await, 0);

    // A call documented without a body takes nothing but `{}`: a stop with fields is
    // refused and the session goes on.
    let s = d.start_session(&car("HK001", "30A-555.66"), "s1").await.unwrap();
    let answer = raw(http
        .post(t.url(&format!("/v1/sessions/{}/stop", s.id)))
        .bearer_auth(&token)
        .header("Idempotency-Key", "stop-1")
        .json(&json!({"refund": "all"})))
    .await;
    assert_error(&answer, 400, "invalid_body");
    assert_eq!(answer.1["error"]["details"]["field"], "refund");
    assert_eq!(d.session(s.id).await.unwrap().status, iparking_mobile_api::SessionStatus::Active);
    let answer = raw(http
        .post(t.url(&format!("/v1/sessions/{}/stop", s.id)))
        .bearer_auth(&token)
        .header("Idempotency-Key", "stop-2")
        .json(&json!({})))
    .await;
    assert_eq!(answer.0, 200, "{}", answer.1);

    // Query errors name the parameter, in our own words in both languages.
    let answer = raw(t.admin_request(reqwest::Method::GET, "/v1/admin/streets")).await;
    assert_error(&answer, 400, "invalid_query");
    assert_eq!(answer.1["error"]["message"], "Thiếu tham số truy vấn `district`.");
    let answer = raw(t.admin_request(reqwest::Method::GET, "/v1/admin/streets").header("Accept-Language", "en")).await;
    assert_eq!(answer.1["error"]["message"], "Missing query parameter `district`.");
    let answer = raw(http.get(t.url("/v1/points?lat=21.02&lon=east"))).await;
    assert_error(&answer, 400, "invalid_query");
    assert_eq!(answer.1["error"]["details"]["field"], "lon", "{}", answer.1);
    assert!(!answer.1["error"]["message"].as_str().unwrap().contains("deserialize"), "{}", answer.1);
});

/// Holds `table` locked on the test's database (a slow database call, as the server sees
/// it) until the returned sender is dropped or fired.
async fn hold_lock(t: &TestApp, table: &str) -> tokio::sync::oneshot::Sender<()> {
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let (locked_tx, locked) = tokio::sync::oneshot::channel::<()>();
    let url = t.db.url.clone();
    let table = table.to_owned();
    tokio::spawn(async move {
        if url.starts_with("sqlite:") {
            let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query("BEGIN IMMEDIATE").execute(&mut conn).await.unwrap();
            let _ = locked_tx.send(());
            let _ = released.await;
            sqlx::query("COMMIT").execute(&mut conn).await.unwrap();
        } else {
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            let mut tx = conn.begin().await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")))
                .execute(&mut *tx)
                .await
                .unwrap();
            let _ = locked_tx.send(());
            let _ = released.await;
            tx.commit().await.unwrap();
        }
    });
    locked.await.unwrap();
    release
}

async fn timeouts(db: Db, live: Live) {
    let mut opts = Options::default();
    opts.settings = Settings { request_timeout: Duration::from_secs(1), ..opts.settings };
    let t = TestApp::start_with(db, live, opts).await;
    let d = t.funded_driver("0912300020", 10_000).await;
    let http = reqwest::Client::new();
    let token = d.token().unwrap().to_owned();
    let topup = || {
        http.post(t.url("/v1/me/wallet/sandbox-topups"))
            .bearer_auth(&token)
            .header("Idempotency-Key", "slow-topup")
            .json(&json!({"amount": 25_000}))
    };

    // A write that runs past the timeout is finished: 503 `timeout` at once, the top-up is
    // booked when the database lets it, and a retry with the same key reads its answer.
    let release = hold_lock(&t, "accounts").await;
    let started = std::time::Instant::now();
    let answer = raw(topup()).await;
    assert!(started.elapsed() < Duration::from_secs(3), "answered at the timeout");
    assert_error(&answer, 503, "timeout");
    assert!(answer.1["error"]["message"].as_str().unwrap().contains("Idempotency-Key"), "{}", answer.1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = release.send(());
    // The server finishes it by itself, with no retry: the key gets its answer.
    let answered = "SELECT COUNT(*) FROM idempotency_keys WHERE key = 'slow-topup' AND status = 201";
    let mut done = false;
    for _ in 0..100 {
        if t.sql_i64(answered).await == 1 {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(done, "the timed-out top-up was finished and its answer stored");
    let resp = topup().send().await.unwrap();
    assert_eq!(resp.status(), 201);
    let replayed = resp.headers().get("idempotent-replayed").cloned();
    let body = resp.json::<Value>().await.unwrap();
    assert_eq!(replayed.as_ref().and_then(|v| v.to_str().ok()), Some("true"), "the first answer, replayed");
    assert_eq!(body["balance"], 35_000, "{body}");
    assert_eq!(d.wallet().await.unwrap().balance, 35_000, "credited once");

    // A read that runs past the timeout is cancelled, in the same shape (PostgreSQL: in
    // SQLite's WAL mode a writer never holds readers up, so a read cannot be made slow so).
    if !t.db.url.starts_with("sqlite:") {
        let release = hold_lock(&t, "accounts").await;
        let answer = raw(http.get(t.url("/v1/me/wallet")).bearer_auth(&token)).await;
        assert_error(&answer, 503, "timeout");
        assert!(answer.1["error"]["message"].as_str().unwrap().contains("hủy"), "{}", answer.1);
        let _ = release.send(());
    }
    assert_eq!(d.wallet().await.unwrap().balance, 35_000);
    t.assert_ledger_sound().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_sqlite() {
    timeouts(Db::Sqlite, Live::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_postgres() {
    timeouts(Db::Postgres, Live::Redis).await;
}

/// Sends raw bytes and reads the whole answer (the server closes the connection).
async fn raw_http(t: &TestApp, request: &[u8]) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(t.addr).await.unwrap();
    // The server may answer and close before it has read all of a huge request.
    let _ = tcp.write_all(request).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::String(text.into_owned())))
}

// What hyper refuses before any of our code runs still answers in the error shape.
matrix!(unparsable_requests_answer_in_the_error_shape, |t| {
    let long = format!("GET /v1/points/{} HTTP/1.1\r\nhost: x\r\n\r\n", "A".repeat(70_000));
    assert_error(&raw_http(&t, long.as_bytes()).await, 414, "uri_too_long");
    let big = format!("GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n", "b".repeat(600_000));
    assert_error(&raw_http(&t, big.as_bytes()).await, 431, "headers_too_large");
    assert_error(&raw_http(&t, b"GARBAGE\r\n\r\n").await, 400, "bad_request");
    // The node still serves.
    assert_eq!(raw(reqwest::Client::new().get(t.url("/healthz"))).await.0, 200);
});
