//! Web Push reminders (RFC 8030/8291/8292) and "log out on every device", through the real
//! server: a push service on 127.0.0.1 in the test receives the reminder, checks its VAPID
//! signature and decrypts it with the browser's keys, as a browser would.

use std::sync::{Arc, Mutex};

use axum::{Router, body::Bytes, extract::State, http::HeaderMap, routing::post};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use chrono::Duration;
use iparking::push::WebPush;
use iparking_mobile_api::{Client, PushSubscriptionBody, PushSubscriptionKeys, StartSession};
use iparking_tests::{Db, Live, Options, TestApp, assert_error, raw};
use p256::ecdsa::{Signature, VerifyingKey, signature::Verifier as _};
use serde_json::Value;

/// What the fake push service received: `(path, headers, body)`.
type Seen = Arc<Mutex<Vec<(String, HeaderMap, Vec<u8>)>>>;

/// A push service: `/ok/…` accepts (201), `/gone/…` answers 410, `/down/…` 503.
async fn push_service() -> (String, Seen) {
    let seen: Seen = Arc::default();
    async fn receive(
        State(seen): State<Seen>,
        uri: axum::http::Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> axum::http::StatusCode {
        seen.lock().unwrap().push((uri.path().to_owned(), headers, body.to_vec()));
        match uri.path().split('/').nth(1) {
            Some("ok") => axum::http::StatusCode::CREATED,
            Some("gone") => axum::http::StatusCode::GONE,
            _ => axum::http::StatusCode::SERVICE_UNAVAILABLE,
        }
    }
    let app = Router::new().route("/{*path}", post(receive)).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, seen)
}

/// A browser's push keys: its P-256 secret and auth secret, and what it sends the server.
struct Browser {
    secret: p256::SecretKey,
    auth: [u8; 16],
}

impl Browser {
    fn new() -> Self {
        use rand::RngCore as _;
        let mut scalar = [0u8; 32];
        let secret = loop {
            rand::rng().fill_bytes(&mut scalar);
            if let Ok(s) = p256::SecretKey::from_slice(&scalar) {
                break s;
            }
        };
        let mut auth = [0u8; 16];
        rand::rng().fill_bytes(&mut auth);
        Browser { secret, auth }
    }

    fn subscription(&self, endpoint: &str, lang: &str) -> PushSubscriptionBody {
        use p256::elliptic_curve::sec1::ToEncodedPoint as _;
        PushSubscriptionBody {
            endpoint: endpoint.to_owned(),
            expiration_time: None,
            keys: PushSubscriptionKeys {
                p256dh: B64.encode(self.secret.public_key().to_encoded_point(false).as_bytes()),
                auth: B64.encode(self.auth),
            },
            lang: Some(lang.to_owned()),
        }
    }

    /// RFC 8291: what the service worker's `push` event would get.
    fn decrypt(&self, body: &[u8]) -> Value {
        let plain = web_push_native::decrypt(body.to_vec(), &self.secret, &web_push_native::Auth::from(self.auth))
            .expect("decrypts");
        serde_json::from_slice(&plain).expect("a JSON payload")
    }
}

async fn app_with_push(db: Db, live: Live) -> TestApp {
    let push = WebPush::from_private_key(&iparking::push::generate_private_key(), "mailto:ops@example.org")
        .unwrap()
        .allow_loopback_http();
    TestApp::start_with(db, live, Options { web_push: Some(Arc::new(push)), ..Options::default() }).await
}

fn an_hour_at(point: &str, plate: &str) -> StartSession {
    iparking_tests::finance::car_minutes(point, plate, 60)
}

/// Waits for the push service to receive something at a path starting with `prefix`.
async fn received(seen: &Seen, prefix: &str) -> Option<(String, HeaderMap, Vec<u8>)> {
    for _ in 0..60 {
        if let Some(hit) = seen.lock().unwrap().iter().find(|(p, _, _)| p.starts_with(prefix)).cloned() {
            return Some(hit);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    None
}

fn sms_reminders(t: &TestApp) -> usize {
    t.sms.messages().iter().filter(|(_, text)| text.contains("het gio")).count()
}

async fn reminder_is_pushed_signed_and_encrypted(db: Db, live: Live) {
    let (base, seen) = push_service().await;
    let t = app_with_push(db, live).await;
    let d = t.funded_driver("0912000777", 200_000).await;
    let key = d.push_key().await.unwrap().public_key;
    let (phone, gone_browser) = (Browser::new(), Browser::new());
    let sub = d.subscribe_push(&phone.subscription(&format!("{base}/ok/phone-1"), "en")).await.unwrap();
    assert_eq!(sub.lang, "en");
    let stale = d.subscribe_push(&gone_browser.subscription(&format!("{base}/gone/old-laptop"), "vi")).await.unwrap();
    // The same endpoint again is the same subscription (a retry is harmless).
    let again = d.subscribe_push(&phone.subscription(&format!("{base}/ok/phone-1"), "en")).await.unwrap();
    assert_eq!(again.id, sub.id);
    assert_eq!(d.push_subscriptions().await.unwrap().len(), 2);

    let s = d.start_session(&an_hour_at("HK012", "30A-777.78"), "start").await.unwrap();
    t.clock.advance(Duration::minutes(55));
    let (_, headers, body) = received(&seen, "/ok/phone-1").await.expect("the reminder reaches the push service");
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert_eq!(header("content-encoding"), "aes128gcm");
    let ttl: u64 = header("ttl").parse().expect("a TTL");
    assert!((60..=3600).contains(&ttl), "a reminder is useless after its session: TTL {ttl}");

    // RFC 8292: `vapid t=<JWT>, k=<our public key>`, the JWT signed by that key for the
    // push service's origin.
    let auth = header("authorization");
    let rest = auth.strip_prefix("vapid t=").expect("a VAPID authorization");
    let (jwt, k) = rest.split_once(", k=").expect("t and k");
    assert_eq!(k, key, "the key the app subscribed with");
    let (input, sig) = jwt.rsplit_once('.').unwrap();
    let verifying = VerifyingKey::from_sec1_bytes(&B64.decode(k).unwrap()).unwrap();
    verifying.verify(input.as_bytes(), &Signature::from_slice(&B64.decode(sig).unwrap()).unwrap()).expect("signed");
    let part =
        |i: usize| -> Value { serde_json::from_slice(&B64.decode(input.split('.').nth(i).unwrap()).unwrap()).unwrap() };
    assert_eq!(part(0)["alg"], "ES256");
    let claims = part(1);
    assert_eq!(claims["aud"].as_str(), Some(base.as_str()));
    let exp = claims["exp"].as_i64().unwrap() - chrono::Utc::now().timestamp();
    assert!((0..=24 * 3600).contains(&exp), "exp within 24 hours: {exp}");
    assert_eq!(claims["sub"], "mailto:ops@example.org");

    // RFC 8291: only the browser's keys open it.
    let message = phone.decrypt(&body);
    assert_eq!(message["kind"], "session_ending");
    assert_eq!(message["session_id"].as_i64(), Some(s.id));
    assert_eq!(message["url"], format!("/#/sessions/{}", s.id));
    let text = message["body"].as_str().unwrap();
    assert!(text.contains("30A77778") && text.contains("HK012") && text.contains("Open iParking"), "{message}");
    assert!(
        web_push_native::decrypt(body.clone(), &gone_browser.secret, &web_push_native::Auth::from(gone_browser.auth))
            .is_err()
    );

    // The push service dropped the other browser (410): forgotten. One browser took the
    // reminder, so no SMS.
    received(&seen, "/gone/old-laptop").await.expect("tried the other browser too");
    let left: Vec<i64> = d.push_subscriptions().await.unwrap().iter().map(|s| s.id).collect();
    assert_eq!(left, vec![sub.id], "the dropped subscription {} is forgotten", stale.id);
    assert_eq!(sms_reminders(&t), 0, "reminded by push, not SMS");
    let pushes = seen.lock().unwrap().iter().filter(|(p, _, _)| p.starts_with("/ok/")).count();
    assert_eq!(pushes, 1, "one reminder per session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reminder_is_pushed_signed_and_encrypted_on_sqlite() {
    reminder_is_pushed_signed_and_encrypted(Db::Sqlite, Live::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reminder_is_pushed_signed_and_encrypted_on_postgres() {
    reminder_is_pushed_signed_and_encrypted(Db::Postgres, Live::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_push_fails_the_reminder_goes_by_sms() {
    let (base, seen) = push_service().await;
    let t = app_with_push(Db::Sqlite, Live::Memory).await;
    let d = t.funded_driver("0912000778", 200_000).await;
    d.subscribe_push(&Browser::new().subscription(&format!("{base}/down/phone"), "vi")).await.unwrap();
    d.start_session(&an_hour_at("HK012", "30A-777.79"), "start").await.unwrap();
    t.clock.advance(Duration::minutes(55));
    received(&seen, "/down/phone").await.expect("push was tried first");
    let mut reminded = 0;
    for _ in 0..60 {
        reminded = sms_reminders(&t);
        if reminded > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(reminded, 1, "the SMS fallback");
    assert_eq!(d.push_subscriptions().await.unwrap().len(), 1, "a service that is down keeps its subscription");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_checked_and_private() {
    let t = app_with_push(Db::Sqlite, Live::Memory).await;
    let (a, b) = (t.driver("0912000781").await, t.driver("0912000782").await);
    let browser = Browser::new();
    let post = |d: &Client, body: Value| {
        reqwest::Client::new().post(t.url("/v1/me/push-subscriptions")).bearer_auth(d.token().unwrap()).json(&body)
    };
    let good = serde_json::to_value(browser.subscription("https://fcm.googleapis.com/fcm/send/abc", "vi")).unwrap();
    let with = |field: &str, value: Value| {
        let mut v = good.clone();
        v[field] = value;
        v
    };
    for (body, code) in [
        (with("endpoint", "http://fcm.googleapis.com/fcm/send/abc".into()), "invalid_push_endpoint"),
        // Only the browsers' push services: never an address the client makes up.
        (with("endpoint", "https://intranet.example/admin".into()), "invalid_push_endpoint"),
        (with("endpoint", "http://10.1.2.3/abc".into()), "invalid_push_endpoint"),
        (with("endpoint", format!("https://fcm.googleapis.com/{}", "a".repeat(1000)).into()), "invalid_push_endpoint"),
        (
            with("keys", serde_json::json!({"p256dh": B64.encode([4u8; 65]), "auth": B64.encode([1u8; 16])})),
            "invalid_push_keys",
        ),
        (
            with("keys", serde_json::json!({"p256dh": good["keys"]["p256dh"], "auth": B64.encode([1u8; 8])})),
            "invalid_push_keys",
        ),
        (with("lang", "fr".into()), "invalid_lang"),
    ] {
        assert_error(&raw(post(&a, body.clone())).await, 400, code);
    }
    assert_eq!(raw(post(&a, with("surprise", 1.into()))).await.0, 400);
    assert!(a.push_subscriptions().await.unwrap().is_empty(), "nothing stored by a refused call");
    let anonymous = raw(reqwest::Client::new().post(t.url("/v1/me/push-subscriptions")).json(&good)).await;
    assert_eq!(anonymous.0, 401);

    let sub = a.subscribe_push(&browser.subscription("https://fcm.googleapis.com/fcm/send/abc", "vi")).await.unwrap();
    let other = raw(reqwest::Client::new()
        .delete(t.url(&format!("/v1/me/push-subscriptions/{}", sub.id)))
        .bearer_auth(b.token().unwrap()))
    .await;
    assert_error(&other, 404, "push_subscription_not_found");
    assert_eq!(a.push_subscriptions().await.unwrap().len(), 1, "another driver cannot remove it");
    // The same browser, now logged in as b, takes the subscription over.
    b.subscribe_push(&browser.subscription("https://fcm.googleapis.com/fcm/send/abc", "en")).await.unwrap();
    assert!(a.push_subscriptions().await.unwrap().is_empty());
    let taken = b.push_subscriptions().await.unwrap();
    assert_eq!(taken.len(), 1);
    b.unsubscribe_push(taken[0].id).await.unwrap();
    assert!(b.push_subscriptions().await.unwrap().is_empty());

    // Without a key, the API says push is off (the app then offers SMS reminders only).
    let plain = TestApp::start(Db::Sqlite, Live::Memory).await;
    assert_error(&raw(reqwest::Client::new().get(plain.url("/v1/push/key"))).await, 404, "push_disabled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_out_everywhere_ends_every_session_of_the_driver() {
    let t = app_with_push(Db::Postgres, Live::Redis).await;
    let phone = t.driver("0912000790").await;
    let laptop = t.driver("0912000790").await;
    let someone_else = t.driver("0912000791").await;
    phone.subscribe_push(&Browser::new().subscription("https://fcm.googleapis.com/fcm/send/p", "vi")).await.unwrap();
    assert!(laptop.wallet().await.is_ok());
    let out = phone.logout_everywhere().await.unwrap();
    assert_eq!(out.tokens_revoked, 2);
    for d in [&phone, &laptop] {
        let answer = raw(reqwest::Client::new().get(t.url("/v1/me/wallet")).bearer_auth(d.token().unwrap())).await;
        assert_eq!(answer.0, 401, "{answer:?}");
    }
    assert!(someone_else.wallet().await.is_ok(), "another driver stays logged in");
    let again = t.driver("0912000790").await;
    assert!(again.push_subscriptions().await.unwrap().is_empty(), "its browsers get no more reminders");
}
