//! The production SMS gateway adapter (per-carrier HTTP gateways) and the push webhook,
//! against a fake gateway on 127.0.0.1. Gateways do not depend on the database, so these run
//! on SQLite + in-process live state only.

use std::sync::{Arc, Mutex};

use axum::{Router, extract::State, http::HeaderMap, routing::post};
use chrono::Duration;
use iparking::sms::{HttpSms, PushWebhook};
use iparking_mobile_api::{StartSession, VehicleClass};
use iparking_tests::{Db, Live, Options, TestApp, assert_error, raw};

type Seen = Arc<Mutex<Vec<(String, String, serde_json::Value)>>>;

/// A fake gateway: records `(path, authorization, body)`; `/broken` answers 500.
async fn fake_gateway() -> (String, Seen) {
    let seen: Seen = Arc::default();
    async fn record(
        State(seen): State<Seen>,
        uri: axum::http::Uri,
        headers: HeaderMap,
        axum::Json(body): axum::Json<serde_json::Value>,
    ) -> axum::http::StatusCode {
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        seen.lock().unwrap().push((uri.path().to_owned(), auth, body));
        if uri.path() == "/broken" { axum::http::StatusCode::INTERNAL_SERVER_ERROR } else { axum::http::StatusCode::OK }
    }
    let app = Router::new().route("/{*path}", post(record)).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, seen)
}

async fn app_with(sms: &str, push: Option<String>) -> TestApp {
    let opts = Options {
        sms: Some(Arc::new(HttpSms::from_config(sms).unwrap())),
        push: push.map(|p| PushWebhook::from_config(&p).unwrap()),
        ..Options::default()
    };
    TestApp::start_with(Db::Sqlite, Live::Memory, opts).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_codes_go_through_the_carriers_gateway() {
    let (base, seen) = fake_gateway().await;
    let t = app_with(&format!("viettel={base}/viettel|tok-viettel,default={base}/default|tok-default"), None).await;
    t.client.send_otp("0987654321").await.unwrap();
    t.client.send_otp("0912345678").await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let (path, auth, body) = &seen[0];
    assert_eq!((path.as_str(), auth.as_str()), ("/viettel", "Bearer tok-viettel"));
    assert_eq!(body["to"], "+84987654321");
    let code: String = body["text"].as_str().unwrap().chars().filter(char::is_ascii_digit).take(6).collect();
    assert_eq!(code.len(), 6);
    assert_eq!((seen[1].0.as_str(), seen[1].1.as_str()), ("/default", "Bearer tok-default"));
    // The code that went through the gateway logs the driver in.
    let token = t.client.login("0987654321", &code).await.unwrap();
    assert!(token.token.starts_with("ipk_drv_"));
    assert!(t.sms.messages().is_empty(), "nothing went to the in-memory outbox");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_gateway_is_retried_once_then_answers_503() {
    let (base, seen) = fake_gateway().await;
    let t = app_with(&format!("default={base}/broken|tok"), None).await;
    let a =
        raw(reqwest::Client::new().post(t.url("/v1/auth/otp")).json(&serde_json::json!({"phone": "0912345678"}))).await;
    assert_error(&a, 503, "service_unavailable");
    assert_eq!(seen.lock().unwrap().len(), 2, "one retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_reminders_go_to_the_push_webhook() {
    let (base, seen) = fake_gateway().await;
    let t = app_with(&format!("default={base}/sms|tok-sms"), Some(format!("{base}/push|tok-push"))).await;
    t.client.send_otp("0912000555").await.unwrap();
    let code: String =
        seen.lock().unwrap()[0].2["text"].as_str().unwrap().chars().filter(char::is_ascii_digit).take(6).collect();
    let d = t.client.with_token(t.client.login("0912000555", &code).await.unwrap().token);
    d.sandbox_topup(200_000, "fund").await.unwrap();
    let s = d
        .start_session(
            &StartSession {
                point_code: "HK012".into(),
                plate: "30A-777.77".into(),
                vehicle_class: Some(VehicleClass::Car),
                minutes: Some(60),
                turns: None,
                payment: None,
                card_id: None,
                lat: None,
                lon: None,
            },
            "start",
        )
        .await
        .unwrap();
    t.clock.advance(Duration::minutes(55));
    let mut push = None;
    for _ in 0..40 {
        push = seen.lock().unwrap().iter().find(|(p, _, _)| p == "/push").cloned();
        if push.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (_, auth, body) = push.expect("a push reminder");
    assert_eq!(auth, "Bearer tok-push");
    assert_eq!((body["session_id"].as_i64(), body["driver_id"].is_i64()), (Some(s.id), true));
    assert!(body["text"].as_str().unwrap().contains("30A77777"), "{body}");
    let sms_reminders = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(p, _, b)| p == "/sms" && b["text"].as_str().unwrap_or("").contains("het gio"))
        .count();
    assert_eq!(sms_reminders, 0, "app drivers are reminded by push when it is configured");
}
