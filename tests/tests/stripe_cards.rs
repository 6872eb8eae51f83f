//! Saved cards, sessions paid by card, refunds, the payments sweeper and the settlement
//! import, through the real Stripe client against a fake Stripe on 127.0.0.1, with signed
//! webhooks (docs/payments.md). Every test runs on SQLite + in-process live state and on
//! PostgreSQL + Redis.
//!
//! Money is checked four ways: the answers, what the fake Stripe saw (requests, keys,
//! intents, refunds), the wallet, and the ledger (the harness's invariants plus the card
//! accounts: `refunds:card` holds exactly the refunds not final yet, and processor clearing
//! follows charges, top-ups and settled refunds).
//!
//! Prices depend on the Hanoi time of day: expected amounts come from the tariff engine.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration as StdDuration,
};

use chrono::Duration;
use iparking::{
    Clock,
    payments::{SandboxGateway, StripeGateway},
};
use iparking_mobile_api::{
    CardChargeView, CardPayment, CardView, Channel, Client, ClientError, ExtendSession, PaymentSource,
    SessionListQuery, SessionStatus, SessionView, StaffRefundRequest, StaffRole, StartSession, VehicleClass,
};
use iparking_tests::{
    Db, Live, Options, TestApp, VIETTEL_SECRET, assert_error,
    fake_stripe::{FakeCard, FakeStripe, SeenCall},
    raw,
};
use serde_json::{Value, json};

const WHSEC: &str = "whsec_test_secret";

// ---- harness ---------------------------------------------------------------------------

/// A server with the real Stripe adapter pointed at a new fake Stripe (whose clock is set
/// to the server's). The background jobs first run one interval after the start; with an
/// hour's interval they never run during a test (so none consumes a fault a test scripts):
/// the tests run the sweeper and the import on demand.
async fn start(db: Db, live: Live, timeout: Option<StdDuration>) -> (TestApp, FakeStripe) {
    let fake = FakeStripe::start().await;
    let gateway = match timeout {
        None => StripeGateway::new("sk_test_fake", Some(&fake.base)),
        Some(t) => StripeGateway::with_timeout("sk_test_fake", Some(&fake.base), t),
    }
    .unwrap()
    .with_backoff(StdDuration::from_millis(10));
    let mut opts =
        Options { payments: Some(Arc::new(gateway)), stripe_webhook_secret: Some(WHSEC.into()), ..Options::default() };
    opts.settings.sweep_interval = StdDuration::from_secs(3600);
    opts.settings.settlement_interval = StdDuration::from_secs(3600);
    let t = TestApp::start_with(db, live, opts).await;
    fake.set_now(t.clock.now().timestamp());
    (t, fake)
}

/// Runs an async test body on SQLite + memory and PostgreSQL + Redis.
macro_rules! both {
    ($name:ident, |$t:ident, $fake:ident| $body:block) => {
        both!($name, None, |$t, $fake| $body);
    };
    ($name:ident, $timeout:expr, |$t:ident, $fake:ident| $body:block) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite_memory() {
                let ($t, $fake) = start(Db::Sqlite, Live::Memory, $timeout).await;
                $body
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres_redis() {
                let ($t, $fake) = start(Db::Postgres, Live::Redis, $timeout).await;
                $body
            }
        }
    };
}

// ---- helpers ---------------------------------------------------------------------------

async fn deliver(t: &TestApp, payload: &str, signature: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new().post(t.url("/webhooks/stripe")).body(payload.to_owned());
    if let Some(sig) = signature {
        req = req.header("Stripe-Signature", sig);
    }
    raw(req).await
}

/// Delivers a correctly signed event about `object`; asserts 200 and returns the outcome.
async fn event(t: &TestApp, fake: &FakeStripe, id: &str, kind: &str, object: Value) -> String {
    let (payload, sig) = fake.event_object(id, kind, object, WHSEC, None);
    let (status, body) = deliver(t, &payload, Some(&sig)).await;
    assert_eq!(status, 200, "{kind} {id}: {body}");
    assert_eq!(body["received"], true, "{body}");
    body["outcome"].as_str().unwrap_or_default().to_owned()
}

/// Saves a card the way the app does: setup, the card form (the fake), Stripe's webhook.
async fn save_card(t: &TestApp, fake: &FakeStripe, d: &Client, card: FakeCard, key: &str) -> CardView {
    let setup = d.create_card_setup(key).await.expect("card setup");
    let pm = fake.complete_setup(&setup.setup_id, card);
    let outcome = event(
        t,
        fake,
        &format!("evt_{}", setup.setup_id),
        "setup_intent.succeeded",
        fake.setup_intent(&setup.setup_id),
    )
    .await;
    assert_eq!(outcome, "card_saved", "setup {} ({pm})", setup.setup_id);
    let cards = d.cards().await.expect("cards");
    cards.into_iter().filter(|c| c.last4 == card.last4()).max_by_key(|c| c.id).expect("the card is listed")
}

/// Logs a driver in like the harness does, keeping the token for raw requests.
async fn login(t: &TestApp, phone: &str) -> (Client, String) {
    t.client.send_otp(phone).await.expect("send otp");
    let e164 = iparking::domain::phone::Phone::parse(phone).expect("phone").as_str().to_owned();
    let text = t.sms.last_to(&e164).expect("an SMS with the code");
    let code: String = text.chars().filter(char::is_ascii_digit).take(6).collect();
    let token = t.client.login(phone, &code).await.expect("login").token;
    (t.client.with_token(token.clone()), token)
}

async fn driver_id(t: &TestApp, phone: &str) -> i64 {
    let e164 = iparking::domain::phone::Phone::parse(phone).expect("phone").as_str().to_owned();
    t.sql_i64(&format!("SELECT id FROM drivers WHERE phone = '{e164}'")).await
}

/// A staff token of `role`, limited to `districts` (none: city-wide).
async fn staff_token(t: &TestApp, role: StaffRole, districts: &[&str]) -> String {
    let districts: Vec<String> = districts.iter().map(|d| (*d).to_owned()).collect();
    iparking::app::staff::add_staff(
        &t.app,
        iparking::app::staff::StaffSpec::new(format!("{} (cards test)", role.as_str()), role, &districts),
    )
    .await
    .expect("staff")
    .token
}

async fn admin_post(t: &TestApp, token: &str, path: &str) -> (u16, Value) {
    raw(reqwest::Client::new().post(t.url(path)).bearer_auth(token)).await
}

/// Runs the payments sweeper on demand; returns its report.
async fn sweep(t: &TestApp, token: &str) -> Value {
    let (status, body) = admin_post(t, token, "/v1/admin/payments/sweep").await;
    assert_eq!(status, 200, "sweep: {body}");
    body
}

/// The sweep report's counters, in the order of `SweepReport`.
fn counts(r: &Value) -> [i64; 7] {
    [
        "charges_settled",
        "charges_failed",
        "charges_canceled",
        "charges_abandoned",
        "refunds_submitted",
        "topups_credited",
        "deferred",
    ]
    .map(|k| r[k].as_i64().unwrap_or_else(|| panic!("sweep report without {k}: {r}")))
}

fn car(point: &str, plate: &str, turns: u32) -> StartSession {
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

fn by_card(point: &str, plate: &str, turns: u32, card: i64) -> StartSession {
    StartSession { payment: Some(PaymentSource::Card), card_id: Some(card), ..car(point, plate, turns) }
}

fn extend_by_card(turns: u32, card: i64) -> ExtendSession {
    ExtendSession { turns: Some(turns), payment: Some(PaymentSource::Card), card_id: Some(card), ..Default::default() }
}

fn wallet_turns(turns: u32) -> ExtendSession {
    ExtendSession { turns: Some(turns), ..Default::default() }
}

/// `(status, code, details, message)` of an API error.
#[track_caller]
fn api_error<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (u16, String, Value, String) {
    match r {
        Err(ClientError::Api { status, error }) => {
            (status, error.code, error.details.unwrap_or(Value::Null), error.message)
        }
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[track_caller]
fn paid(r: Result<CardPayment, ClientError>) -> SessionView {
    match r {
        Ok(CardPayment::Paid(s)) => *s,
        other => panic!("expected a paid session, got {other:?}"),
    }
}

#[track_caller]
fn pending(r: Result<CardPayment, ClientError>) -> CardChargeView {
    match r {
        Ok(CardPayment::Pending(c)) => c,
        other => panic!("expected a charge waiting (202), got {other:?}"),
    }
}

fn calls(fake: &FakeStripe, method: &str, path: &str) -> Vec<SeenCall> {
    fake.state.calls.lock().unwrap().iter().filter(|c| c.method == method && c.path == path).cloned().collect()
}

/// Every `POST /v1/payment_intents` the fake received (faulted ones too).
fn intent_posts(fake: &FakeStripe) -> Vec<SeenCall> {
    calls(fake, "POST", "/v1/payment_intents")
}

/// Every `POST /v1/refunds` the fake received (faulted ones too).
fn refund_posts(fake: &FakeStripe) -> Vec<SeenCall> {
    calls(fake, "POST", "/v1/refunds")
}

/// The charge id of the last card charge sent to the fake (from our metadata).
fn last_charge_id(fake: &FakeStripe) -> i64 {
    let posts = intent_posts(fake);
    let last = posts.last().expect("a payment intent request");
    last.params.get("metadata[charge_id]").and_then(|c| c.parse().ok()).expect("metadata charge_id")
}

/// The intents the fake holds for our charge `id`.
fn intents_of_charge(fake: &FakeStripe, id: i64) -> Vec<Value> {
    let id = id.to_string();
    fake.state
        .intents
        .lock()
        .unwrap()
        .values()
        .filter(|pi| pi["metadata"]["charge_id"] == id.as_str())
        .cloned()
        .collect()
}

/// The refunds the fake holds against intent `pi`, oldest first.
fn fake_refunds(fake: &FakeStripe, pi: &str) -> Vec<Value> {
    let mut v: Vec<Value> =
        fake.state.refunds.lock().unwrap().values().filter(|r| r["payment_intent"] == pi).cloned().collect();
    v.sort_by_key(|r| r["id"].as_str().and_then(|id| id.rsplit('_').next()?.parse::<u64>().ok()).unwrap_or(0));
    v
}

/// The intent that paid a card session (its first card charge).
async fn session_intent(t: &TestApp, session_id: i64) -> String {
    t.sql_text(&format!("SELECT intent_id FROM card_charges WHERE session_id = {session_id} ORDER BY id LIMIT 1"))
        .await
        .expect("the session's card charge has an intent")
}

fn tariff(t: &TestApp, id: i64) -> iparking::domain::tariff::Tariff {
    t.app.tariffs().get(id).cloned().unwrap_or_else(|| panic!("tariff {id} is not loaded"))
}

/// What `n` turns of a new stay cost by the session's tariff from the session's start.
fn price(t: &TestApp, s: &SessionView, n: u32) -> i64 {
    tariff(t, s.tariff_id).price(s.started_at, 0, n, Channel::App).expect("price").total.get()
}

async fn all_sessions(c: &Client) -> Vec<SessionView> {
    c.sessions(&SessionListQuery::default()).await.expect("sessions")
}

async fn ledger_transactions(t: &TestApp) -> i64 {
    t.sql_i64("SELECT COUNT(*) FROM ledger_transactions").await
}

async fn active_with_plate(t: &TestApp, plate: &str) -> usize {
    t.app.store.active_sessions().await.expect("active sessions").iter().filter(|s| s.plate.as_str() == plate).count()
}

/// Occupied spaces of a point in the live state (in process or Redis).
async fn occupancy(t: &TestApp, code: &str) -> i64 {
    let id = t.app.store.point(code).await.expect("point").unwrap_or_else(|| panic!("no point {code}")).id;
    t.app.live.occupancy(&[id]).await.expect("live occupancy")[0]
}

async fn balance_of(t: &TestApp, driver: i64) -> i64 {
    t.app.store.wallet(driver, 1).await.expect("wallet").0.get()
}

/// The harness's ledger invariants, plus the card accounts:
/// - `refunds:card` is exactly what is owed back on refunds not final yet;
/// - processor clearing is minus what Stripe took (charges paid, top-ups credited) plus the
///   refunds it paid back;
/// - each card charge's `amount_refunded` is the sum of its refunds.
async fn assert_money_sound(t: &TestApp) {
    t.assert_ledger_sound().await;
    let sum = |sql: &str| format!("SELECT CAST(COALESCE(SUM({sql}), 0) AS BIGINT)");
    let owed = t.sql_i64(&(sum("balance") + " FROM accounts WHERE kind = 'refunds' AND ref = 'card'")).await;
    let open = t.sql_i64(&(sum("amount") + " FROM refunds WHERE status IN ('pending', 'submitted')")).await;
    assert_eq!(owed, open, "refunds:card must hold exactly the refunds not final yet");
    let clearing = t.sql_i64(&(sum("balance") + " FROM accounts WHERE kind = 'processor_clearing'")).await;
    let charged = t.sql_i64(&(sum("amount") + " FROM card_charges WHERE status IN ('succeeded', 'refund_due')")).await;
    let topups = t.sql_i64(&(sum("amount") + " FROM payment_intents WHERE credited_at IS NOT NULL")).await;
    let refunded = t.sql_i64(&(sum("amount") + " FROM refunds WHERE status = 'succeeded'")).await;
    assert_eq!(clearing, -(charged + topups) + refunded, "processor clearing vs charges, top-ups and refunds");
    let off = t
        .sql_i64(
            "SELECT COUNT(*) FROM card_charges c WHERE c.amount_refunded <> \
             (SELECT COALESCE(SUM(r.amount), 0) FROM refunds r WHERE r.charge_id = c.id)",
        )
        .await;
    assert_eq!(off, 0, "a card charge's amount_refunded differs from its refunds");
}

/// Settles a refund at the fake and delivers Stripe's event; returns the outcome.
async fn settle_refund(t: &TestApp, fake: &FakeStripe, re: &str, ok: bool, event_id: &str) -> String {
    fake.settle_refund(re, ok);
    let kind = if ok { "refund.updated" } else { "refund.failed" };
    event(t, fake, event_id, kind, fake.refund(re)).await
}

/// Creates a payment intent straight at the fake (not through our server), e.g. one whose
/// creation answer we "lost"; `succeeded` pays it.
async fn intent_at_fake(fake: &FakeStripe, amount: i64, metadata: &[(&str, &str)], succeeded: bool) -> String {
    let mut body = format!("amount={amount}&currency=vnd");
    for (k, v) in metadata {
        body.push_str(&format!("&metadata%5B{k}%5D={v}"));
    }
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/payment_intents", fake.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("fake Stripe");
    let pi: Value = resp.json().await.expect("intent");
    let id = pi["id"].as_str().expect("intent id").to_owned();
    if succeeded {
        fake.authenticate(&id, true);
    }
    id
}

// ---- 1. saving, listing and removing cards -------------------------------------------

both!(cards_are_saved_once_listed_without_number_and_removed, |t, fake| {
    let (d, token) = login(&t, "0912300001").await;
    let setup = d.create_card_setup("setup-1").await.unwrap();
    assert_eq!(
        (setup.gateway.as_str(), setup.sandbox, setup.status.as_str()),
        ("stripe", false, "requires_payment_method")
    );
    assert!(setup.setup_id.starts_with("seti_"), "{setup:?}");
    assert!(setup.client_secret.as_deref().is_some_and(|s| s.contains("_secret_")), "{setup:?}");
    assert!(setup.card.is_none(), "no card before Stripe's webhook");
    // The same key again: the same setup, nothing new at Stripe.
    assert_eq!(d.create_card_setup("setup-1").await.unwrap(), setup);
    assert_eq!(calls(&fake, "POST", "/v1/setup_intents").len(), 1);
    assert_eq!(calls(&fake, "POST", "/v1/customers").len(), 1);
    {
        let setups = calls(&fake, "POST", "/v1/setup_intents");
        assert_eq!(setups[0].params.get("usage").map(String::as_str), Some("off_session"), "{:?}", setups[0]);
    }
    assert!(d.cards().await.unwrap().is_empty(), "nothing saved before the webhook");

    let pm = fake.complete_setup(&setup.setup_id, FakeCard::Ok);
    let object = fake.setup_intent(&setup.setup_id);
    assert_eq!(event(&t, &fake, "evt_setup_1", "setup_intent.succeeded", object.clone()).await, "card_saved");
    // The same event again, and another event for the same setup: still one card.
    assert_eq!(event(&t, &fake, "evt_setup_1", "setup_intent.succeeded", object.clone()).await, "duplicate");
    event(&t, &fake, "evt_setup_1_again", "setup_intent.succeeded", object).await;
    let cards = d.cards().await.unwrap();
    assert_eq!(cards.len(), 1, "{cards:?}");
    let card = cards[0].clone();
    assert_eq!((card.brand.as_str(), card.last4.as_str(), card.exp_month, card.exp_year), ("visa", "4242", 12, 2030));
    // The listing holds brand, last four and expiry: never the number.
    let (status, listed) = raw(reqwest::Client::new().get(t.url("/v1/me/cards")).bearer_auth(&token)).await;
    assert_eq!(status, 200, "{listed}");
    let mut keys: Vec<&str> = listed[0].as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["brand", "created_at", "exp_month", "exp_year", "id", "last4"], "{listed}");

    // A second card reuses the driver's customer.
    let second = save_card(&t, &fake, &d, FakeCard::Declined, "setup-2").await;
    assert_eq!(calls(&fake, "POST", "/v1/customers").len(), 1, "one Stripe customer per driver");
    assert_eq!(d.cards().await.unwrap().len(), 2);

    // A setup we never started is acknowledged and saves nothing.
    let mut stranger = fake.setup_intent(&setup.setup_id);
    stranger["id"] = json!("seti_not_ours");
    assert_eq!(event(&t, &fake, "evt_setup_x", "setup_intent.succeeded", stranger).await, "unknown_setup");
    assert_eq!(d.cards().await.unwrap().len(), 2);

    // Another driver can neither see, remove nor pay with it.
    let other = t.driver("0912300002").await;
    assert!(other.cards().await.unwrap().is_empty());
    let (status, code, ..) = api_error(other.remove_card(card.id).await);
    assert_eq!((status, code.as_str()), (404, "card_not_found"));
    let (status, code, ..) =
        api_error(other.start_session_by_card(&by_card("HK001", "30A10009", 1, card.id), "steal").await);
    assert_eq!((status, code.as_str()), (404, "card_not_found"));
    assert_eq!(d.cards().await.unwrap().len(), 2, "the owner still has it");

    // Paying by card needs a card id; a card id goes with payment card.
    let no_card = StartSession { card_id: None, ..by_card("HK001", "30A10001", 1, 0) };
    let (status, code, ..) = api_error(d.start_session_by_card(&no_card, "no-card").await);
    assert_eq!((status, code.as_str()), (400, "card_required"));
    let wallet_with_card =
        StartSession { payment: Some(PaymentSource::Wallet), ..by_card("HK001", "30A10001", 1, card.id) };
    let (status, code, ..) = api_error(d.start_session_by_card(&wallet_with_card, "mixed").await);
    assert_eq!((status, code.as_str()), (400, "invalid_payment"));

    // Removing detaches it at Stripe; it is never charged again.
    d.remove_card(card.id).await.unwrap();
    assert_eq!(*fake.state.detached.lock().unwrap(), vec![pm]);
    assert_eq!(d.cards().await.unwrap().iter().map(|c| c.id).collect::<Vec<_>>(), vec![second.id]);
    let (status, code, ..) = api_error(d.remove_card(card.id).await);
    assert_eq!((status, code.as_str()), (404, "card_not_found"));
    let (status, code, ..) =
        api_error(d.start_session_by_card(&by_card("HK001", "30A10001", 1, card.id), "removed").await);
    assert_eq!((status, code.as_str()), (404, "card_not_found"));
    assert!(intent_posts(&fake).is_empty(), "no charge was ever attempted");
    // A late redelivery of its setup event does not bring it back.
    event(&t, &fake, "evt_setup_1_late", "setup_intent.succeeded", fake.setup_intent(&setup.setup_id)).await;
    assert_eq!(d.cards().await.unwrap().iter().map(|c| c.id).collect::<Vec<_>>(), vec![second.id]);
    assert!(all_sessions(&d).await.is_empty());
    assert_eq!(ledger_transactions(&t).await, 0);
});

both!(setup_webhook_and_removal_while_stripe_is_down, |t, fake| {
    let d = t.driver("0912300003").await;
    let setup = d.create_card_setup("s").await.unwrap();
    let pm = fake.complete_setup(&setup.setup_id, FakeCard::Ok);
    let (payload, sig) =
        fake.event_object("evt_down", "setup_intent.succeeded", fake.setup_intent(&setup.setup_id), WHSEC, None);
    // Stripe cannot be asked for the card: 503, so Stripe delivers the event again.
    fake.state.fail_next.store(3, Ordering::SeqCst);
    let (status, body) = deliver(&t, &payload, Some(&sig)).await;
    assert_eq!(status, 503, "{body}");
    assert!(d.cards().await.unwrap().is_empty());
    let (status, body) = deliver(&t, &payload, Some(&sig)).await;
    assert_eq!((status, body["outcome"].as_str()), (200, Some("card_saved")), "{body}");
    let card = d.cards().await.unwrap()[0].clone();
    // Removing while Stripe is down: removed here anyway, never charged again.
    fake.state.fail_next.store(3, Ordering::SeqCst);
    d.remove_card(card.id).await.unwrap();
    assert!(d.cards().await.unwrap().is_empty());
    assert!(fake.state.detached.lock().unwrap().is_empty(), "the detach failed at Stripe ({pm})");
    let (status, code, ..) = api_error(d.start_session_by_card(&by_card("HK001", "30A10002", 1, card.id), "k").await);
    assert_eq!((status, code.as_str()), (404, "card_not_found"));
    assert!(intent_posts(&fake).is_empty());
});

// ---- 2. a card-paid start --------------------------------------------------------------

both!(card_start_charges_once_off_session_and_starts_the_session, |t, fake| {
    let phone = "0912300010";
    let (d, token) = login(&t, phone).await;
    let me = driver_id(&t, phone).await;
    let card = save_card(&t, &fake, &d, FakeCard::Ok, "setup").await;
    let body = by_card("HK001", "30A20001", 2, card.id);
    let s = paid(d.start_session_by_card(&body, "start-1").await);
    assert_eq!(
        (s.status, s.turns, s.channel.as_str(), s.point_code.as_str(), s.plate.as_str(), s.amount_refunded),
        (SessionStatus::Active, 2, "app", "HK001", "30A20001", 0)
    );
    assert_eq!(s.amount_charged, price(&t, &s, 2));

    let posts = intent_posts(&fake);
    assert_eq!(posts.len(), 1, "{posts:?}");
    let p = &posts[0];
    let charge_id = last_charge_id(&fake);
    let key = format!("charge-{charge_id}");
    assert_eq!(p.key.as_deref(), Some(key.as_str()));
    let param = |k: &str| p.params.get(k).map(String::as_str);
    assert_eq!(param("confirm"), Some("true"), "{p:?}");
    assert_eq!(param("off_session"), Some("true"), "{p:?}");
    assert_eq!(param("amount"), Some(s.amount_charged.to_string().as_str()));
    assert_eq!(param("currency"), Some("vnd"));
    assert_eq!(param("metadata[driver_id]"), Some(me.to_string().as_str()));
    assert_eq!(param("metadata[purpose]"), Some("session_start"));
    assert!(param("customer").is_some_and(|c| c.starts_with("cus_")), "{p:?}");
    assert!(param("payment_method").is_some_and(|c| c.starts_with("pm_")), "{p:?}");

    let charge = d.card_charge(charge_id).await.unwrap();
    assert_eq!(
        (charge.status.as_str(), charge.amount, charge.purpose.as_str()),
        ("succeeded", s.amount_charged, "session_start")
    );
    assert_eq!(charge.session.as_ref().map(|x| x.id), Some(s.id));
    let pi = charge.intent_id.clone().expect("intent id recorded");
    assert_eq!(fake.payment_intent(&pi)["status"], "succeeded");
    assert!(charge.client_secret.is_none(), "no client secret once paid");
    // Stripe's charge id is kept for settlement matching.
    let charge_ref = t.sql_text(&format!("SELECT charge_ref FROM card_charges WHERE id = {charge_id}")).await;
    assert_eq!(charge_ref.as_deref(), fake.payment_intent(&pi)["latest_charge"].as_str());
    assert!(charge_ref.is_some());

    // The wallet is untouched.
    let w = d.wallet().await.unwrap();
    assert_eq!((w.balance, w.movements.len()), (0, 0), "{w:?}");
    assert_eq!(active_with_plate(&t, "30A20001").await, 1);

    // The same Idempotency-Key again: the same session, no second charge.
    let again = paid(d.start_session_by_card(&body, "start-1").await);
    assert_eq!((again.id, again.amount_charged, again.turns), (s.id, s.amount_charged, s.turns));
    let (status, replay) = raw(reqwest::Client::new()
        .post(t.url("/v1/sessions"))
        .bearer_auth(&token)
        .header("Idempotency-Key", "start-1")
        .json(&body))
    .await;
    assert_eq!((status, replay["id"].as_i64()), (201, Some(s.id)), "{replay}");
    assert_eq!(intent_posts(&fake).len(), 1, "a replay never charges again");
    assert_eq!(all_sessions(&d).await.len(), 1);
    // Another driver cannot read the charge.
    let other = t.driver("0912300011").await;
    let (status, code, ..) = api_error(other.card_charge(charge_id).await);
    assert_eq!((status, code.as_str()), (404, "charge_not_found"));
    assert_money_sound(&t).await;
});

both!(a_card_start_is_validated_like_a_wallet_start_before_any_charge, |t, fake| {
    let d = t.driver("0912300013").await;
    let card = save_card(&t, &fake, &d, FakeCard::Ok, "setup").await;
    t.admin.close_point("HK002").await.unwrap();
    let (status, code, ..) =
        api_error(d.start_session_by_card(&by_card("HK002", "30A20010", 1, card.id), "closed").await);
    assert_eq!((status, code.as_str()), (409, "point_closed"));
    let (status, code, ..) =
        api_error(d.start_session_by_card(&by_card("HK001", "30A20010", 25, card.id), "long").await);
    assert_eq!((status, code.as_str()), (422, "stay_too_long"));
    let (status, ..) = api_error(d.start_session_by_card(&by_card("HK001", "not a plate", 1, card.id), "plate").await);
    assert_eq!(status, 400);
    let (status, ..) = api_error(d.start_session_by_card(&by_card("HK999", "30A20010", 1, card.id), "nowhere").await);
    assert_eq!(status, 404);
    assert!(intent_posts(&fake).is_empty(), "nothing charged for a refused request");
    // Far from the point: the session starts, with the same warning as a wallet start.
    let p = t.client.point("HK001").await.unwrap();
    let far = StartSession { lat: Some(p.lat + 0.01), lon: Some(p.lon), ..by_card("HK001", "30A20011", 1, card.id) };
    let s = paid(d.start_session_by_card(&far, "far").await);
    assert_eq!(s.status, SessionStatus::Active);
    // A card start carries the same location warning as a wallet start.
    assert_eq!(s.warnings.len(), 1, "a card start 1.1 km from HK001 should warn like a wallet start: {:?}", s.warnings);
});

both!(a_lost_charge_answer_is_settled_by_its_webhook, |t, fake| {
    let d = t.driver("0912300014").await;
    let card = save_card(&t, &fake, &d, FakeCard::Ok, "setup").await;
    fake.state.fail_after_next.store(3, Ordering::SeqCst);
    let body = by_card("HK001", "30A20012", 2, card.id);
    let (status, ..) = api_error(d.start_session_by_card(&body, "lost").await);
    assert_eq!(status, 503);
    let n = last_charge_id(&fake);
    let pi = intents_of_charge(&fake, n)[0]["id"].as_str().unwrap().to_owned();
    // The webhook names the charge in its metadata (we never learnt the intent's id).
    assert_eq!(event(&t, &fake, "evt_lost", "payment_intent.succeeded", fake.payment_intent(&pi)).await, "applied");
    let c = d.card_charge(n).await.unwrap();
    assert_eq!((c.status.as_str(), c.intent_id.as_deref()), ("succeeded", Some(pi.as_str())));
    let s = c.session.expect("session");
    assert_eq!(occupancy(&t, "HK001").await, 1);
    assert_eq!(paid(d.start_session_by_card(&body, "lost").await).id, s.id);
    let admin = staff_token(&t, StaffRole::Admin, &[]).await;
    t.clock.advance(Duration::minutes(3));
    assert_eq!(counts(&sweep(&t, &admin).await), [0; 7]);
    assert_eq!(intents_of_charge(&fake, n).len(), 1);
    assert_eq!(all_sessions(&d).await.len(), 1);
    assert_money_sound(&t).await;
});

both!(a_retry_while_the_first_request_runs_resumes_the_same_charge, |t, fake| {
    let d = t.driver("0912300012").await;
    let card = save_card(&t, &fake, &d, FakeCard::Ok, "setup").await;
    let body = by_card("HK001", "30A20002", 1, card.id);
    *fake.state.delay.lock().unwrap() = StdDuration::from_millis(800);
    fake.state.delay_next.store(1, Ordering::SeqCst);
    let first = {
        let (d, body) = (d.clone(), body.clone());
        tokio::spawn(async move { d.start_session_by_card(&body, "same").await })
    };
    let deadline = std::time::Instant::now() + StdDuration::from_secs(10);
    while intent_posts(&fake).is_empty() {
        assert!(std::time::Instant::now() < deadline, "the first request never reached Stripe");
        tokio::time::sleep(StdDuration::from_millis(5)).await;
    }
    // The first request is waiting for Stripe's answer: the retry resumes its charge.
    let second = paid(d.start_session_by_card(&body, "same").await);
    let first = paid(first.await.unwrap());
    assert_eq!(first.id, second.id);
    assert_eq!(intents_of_charge(&fake, last_charge_id(&fake)).len(), 1, "one payment intent");
    assert!(intent_posts(&fake).iter().all(|p| p.key == intent_posts(&fake)[0].key), "one key");
    assert_eq!(all_sessions(&d).await.len(), 1);
    assert_money_sound(&t).await;
});

// ---- 3. declines -----------------------------------------------------------------------

both!(declined_cards_answer_402_in_words_and_change_nothing, |t, fake| {
    let d = t.driver("0912300020").await;
    let en = d.with_language("en");
    for (kind, decline, words, plate) in [
        (FakeCard::Declined, "insufficient_funds", "insufficient funds", "30A30001"),
        (FakeCard::Lost, "lost_card", "reported lost", "30A30002"),
    ] {
        let card = save_card(&t, &fake, &d, kind, &format!("setup-{decline}")).await;
        let before = (ledger_transactions(&t).await, intent_posts(&fake).len());
        let key = format!("start-{decline}");
        let (status, code, details, message) =
            api_error(en.start_session_by_card(&by_card("HK002", plate, 1, card.id), &key).await);
        assert_eq!((status, code.as_str()), (402, "card_declined"), "{details}");
        assert_eq!(details["decline_code"], decline, "{details}");
        assert!(message.contains(words), "a specific English message for {decline}: {message}");
        let charge_id = details["charge_id"].as_i64().expect("details.charge_id");
        assert_eq!(intent_posts(&fake).len(), before.1 + 1);
        let charge = d.card_charge(charge_id).await.unwrap();
        assert_eq!((charge.status.as_str(), charge.failure_code.as_deref()), ("failed", Some(decline)));
        assert!(charge.session.is_none());
        // Nothing started, nothing booked.
        assert!(all_sessions(&d).await.is_empty());
        assert_eq!(active_with_plate(&t, plate).await, 0);
        assert_eq!(ledger_transactions(&t).await, before.0);
        // The key's answer stays that 402 (in Vietnamese by default), without a new charge.
        let (status, code, details2, vi) =
            api_error(d.start_session_by_card(&by_card("HK002", plate, 1, card.id), &key).await);
        assert_eq!((status, code.as_str(), &details2["decline_code"]), (402, "card_declined", &json!(decline)));
        assert_ne!(vi, message, "Vietnamese by default");
        assert_eq!(intent_posts(&fake).len(), before.1 + 1, "a retry with the key never charges again");
    }
    assert_eq!(d.wallet().await.unwrap().balance, 0);
    assert_money_sound(&t).await;
});

// ---- 4, 5. 3-D Secure ------------------------------------------------------------------

/// A card needing 3-D Secure: 202 and no session; the success webhook starts the session
/// once; a failed authentication starts nothing.
async fn three_d_secure(t: &TestApp, fake: &FakeStripe, as_requires_action: bool) {
    fake.state.three_ds_as_requires_action.store(as_requires_action, Ordering::SeqCst);
    let d = t.driver("0912300030").await;
    let card = save_card(t, fake, &d, FakeCard::Requires3ds, "setup").await;
    let body = by_card("HK003", "30A40001", 2, card.id);
    let ledger_before = ledger_transactions(t).await;
    let ch = pending(d.start_session_by_card(&body, "3ds-1").await);
    assert_eq!((ch.status.as_str(), ch.purpose.as_str()), ("requires_action", "session_start"), "{ch:?}");
    let pi = ch.intent_id.clone().expect("the intent to confirm");
    assert!(ch.client_secret.as_deref().is_some_and(|s| s.starts_with(&pi) && s.contains("_secret_")), "{ch:?}");
    assert!(ch.session.is_none());
    assert!(all_sessions(&d).await.is_empty(), "no session while 3-D Secure is pending");
    assert_eq!(active_with_plate(t, "30A40001").await, 0, "the plate is not parked");
    assert_eq!(occupancy(t, "HK003").await, 0, "no space taken");
    assert_eq!(ledger_transactions(t).await, ledger_before);
    // Polling, and the same request again: still waiting, never a second charge.
    let polled = d.card_charge(ch.id).await.unwrap();
    assert_eq!((polled.status.as_str(), polled.client_secret.is_some()), ("requires_action", true));
    let again = pending(d.start_session_by_card(&body, "3ds-1").await);
    assert_eq!((again.id, again.status.as_str()), (ch.id, "requires_action"));
    assert_eq!(intent_posts(fake).len(), 1);
    if !as_requires_action {
        // Stripe reports the off-session attempt that needs authentication as a failed
        // payment: the driver can still authenticate.
        let failed_attempt = fake.payment_intent(&pi);
        assert_eq!(failed_attempt["last_payment_error"]["code"], "authentication_required");
        event(t, fake, "evt_3ds_offsession", "payment_intent.payment_failed", failed_attempt).await;
        let c = d.card_charge(ch.id).await.unwrap();
        assert_eq!((c.status.as_str(), c.client_secret.is_some()), ("requires_action", true), "{c:?}");
    }

    // The driver authenticates in the app; Stripe's webhook starts the session.
    fake.authenticate(&pi, true);
    assert_eq!(event(t, fake, "evt_3ds_ok", "payment_intent.succeeded", fake.payment_intent(&pi)).await, "applied");
    let done = d.card_charge(ch.id).await.unwrap();
    assert_eq!(done.status, "succeeded");
    let s = done.session.clone().expect("the session, once paid");
    assert_eq!(
        (s.turns, s.amount_charged, s.plate.as_str(), s.status),
        (2, ch.amount, "30A40001", SessionStatus::Active)
    );
    assert_eq!(s.amount_charged, price(t, &s, 2));
    let charge_ref = t.sql_text(&format!("SELECT charge_ref FROM card_charges WHERE id = {}", ch.id)).await;
    assert!(charge_ref.is_some(), "Stripe's charge id is kept");
    assert_eq!(charge_ref.as_deref(), fake.payment_intent(&pi)["latest_charge"].as_str());
    assert_eq!(active_with_plate(t, "30A40001").await, 1);
    assert_eq!(occupancy(t, "HK003").await, 1, "the live state follows the session started by the webhook");
    // Delivered twice, or another event for the same success: applied once.
    let ledger_after = ledger_transactions(t).await;
    assert_eq!(event(t, fake, "evt_3ds_ok", "payment_intent.succeeded", fake.payment_intent(&pi)).await, "duplicate");
    assert_ne!(event(t, fake, "evt_3ds_ok_2", "payment_intent.succeeded", fake.payment_intent(&pi)).await, "applied");
    assert_eq!(all_sessions(&d).await.len(), 1);
    assert_eq!(occupancy(t, "HK003").await, 1, "taken once");
    assert_eq!(ledger_transactions(t).await, ledger_after);
    // A late failure of an earlier attempt never undoes it.
    let mut late = fake.payment_intent(&pi);
    late["status"] = json!("requires_payment_method");
    event(t, fake, "evt_3ds_late_fail", "payment_intent.payment_failed", late).await;
    assert_eq!(d.card_charge(ch.id).await.unwrap().status, "succeeded");
    // The key now answers the session.
    assert_eq!(paid(d.start_session_by_card(&body, "3ds-1").await).id, s.id);
    assert_eq!(intent_posts(fake).len(), 1);

    assert_money_sound(t).await;
}

both!(three_d_secure_402_authentication_required, |t, fake| {
    three_d_secure(&t, &fake, false).await;
});

both!(three_d_secure_requires_action, |t, fake| {
    three_d_secure(&t, &fake, true).await;
});

both!(a_failed_3ds_authentication_fails_the_charge, |t, fake| {
    let d = t.driver("0912300033").await;
    let card = save_card(&t, &fake, &d, FakeCard::Requires3ds, "setup").await;
    for (mode, plate) in [(false, "30A40011"), (true, "30A40012")] {
        fake.state.three_ds_as_requires_action.store(mode, Ordering::SeqCst);
        let body = by_card("HK003", plate, 1, card.id);
        let key = format!("3ds-fail-{mode}");
        let ch = pending(d.start_session_by_card(&body, &key).await);
        let pi = ch.intent_id.clone().unwrap();
        fake.authenticate(&pi, false);
        let failed_auth = fake.payment_intent(&pi);
        assert_eq!(failed_auth["last_payment_error"]["code"], "payment_intent_authentication_failure");
        event(&t, &fake, &format!("evt_fail_{mode}"), "payment_intent.payment_failed", failed_auth).await;
        assert_eq!(active_with_plate(&t, plate).await, 0, "nothing started");
        assert!(all_sessions(&d).await.is_empty());
        assert_money_sound(&t).await;
        let c = d.card_charge(ch.id).await.unwrap();
        // A failed authentication fails the charge at once (only the off-session
        // `authentication_required` attempt keeps it waiting).
        assert_eq!(
            (c.status.as_str(), c.client_secret.is_some()),
            ("failed", false),
            "a payment_failed whose last_payment_error is not authentication_required (here the driver failed \
             3-D Secure: payment_intent_authentication_failure) should fail the charge: {c:?}"
        );
        let (status, ..) = api_error(d.start_session_by_card(&body, &key).await);
        assert_eq!(status, 402, "the key then answers the decline");
    }
    assert_eq!(intent_posts(&fake).len(), 2);
});

both!(unfinished_3ds_is_cancelled_and_a_late_success_refunded, |t, fake| {
    let d = t.driver("0912300031").await;
    let card = save_card(&t, &fake, &d, FakeCard::Requires3ds, "setup").await;
    let body = by_card("HK003", "30A40003", 1, card.id);
    let ch = pending(d.start_session_by_card(&body, "3ds-late").await);
    let pi = ch.intent_id.clone().unwrap();
    let admin = staff_token(&t, StaffRole::Admin, &[]).await;
    // Past the sweeper's delay but within the 15 minutes: left alone.
    t.clock.advance(Duration::minutes(3));
    assert_eq!(counts(&sweep(&t, &admin).await), [0; 7]);
    assert_eq!(d.card_charge(ch.id).await.unwrap().status, "requires_action");
    assert_ne!(fake.payment_intent(&pi)["status"], "canceled");
    // Past the deadline: cancelled at Stripe.
    t.clock.advance(Duration::minutes(13));
    let r = sweep(&t, &admin).await;
    assert_eq!(r["charges_canceled"], 1, "{r}");
    assert_eq!(fake.payment_intent(&pi)["status"], "canceled");
    assert_eq!(calls(&fake, "POST", &format!("/v1/payment_intents/{pi}/cancel")).len(), 1);
    let c = d.card_charge(ch.id).await.unwrap();
    assert_eq!(c.status, "canceled", "{c:?}");
    assert!(c.session.is_none() && c.client_secret.is_none());
    let (status, code, ..) = api_error(d.start_session_by_card(&body, "3ds-late").await);
    assert_eq!((status, code.as_str()), (409, "charge_canceled"));
    assert_eq!(counts(&sweep(&t, &admin).await), [0; 7], "nothing left to sweep");

    // A success arriving after we gave up: refunded in full, no session.
    fake.authenticate(&pi, true);
    assert_eq!(
        event(&t, &fake, "evt_after_cancel", "payment_intent.succeeded", fake.payment_intent(&pi)).await,
        "refund_due"
    );
    let c = d.card_charge(ch.id).await.unwrap();
    assert_eq!(c.status, "refund_due", "{c:?}");
    assert_eq!(c.refunds.iter().map(|r| r.amount).collect::<Vec<_>>(), vec![ch.amount]);
    let posts = refund_posts(&fake);
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert_eq!(posts[0].key.as_deref(), Some(format!("refund-{}", c.refunds[0].id).as_str()));
    assert_eq!(posts[0].params.get("payment_intent"), Some(&pi));
    assert_eq!(posts[0].params.get("amount"), Some(&ch.amount.to_string()));
    assert!(all_sessions(&d).await.is_empty());
    assert_eq!(active_with_plate(&t, "30A40003").await, 0);
    assert_money_sound(&t).await;
});

both!(the_sweeper_applies_a_3ds_success_whose_webhook_was_lost, |t, fake| {
    let d = t.driver("0912300032").await;
    let card = save_card(&t, &fake, &d, FakeCard::Requires3ds, "setup").await;
    let ch = pending(d.start_session_by_card(&by_card("HK003", "30A40004", 2, card.id), "3ds").await);
    fake.authenticate(ch.intent_id.as_deref().unwrap(), true);
    let admin = staff_token(&t, StaffRole::Admin, &[]).await;
    t.clock.advance(Duration::minutes(3));
    let r = sweep(&t, &admin).await;
    assert_eq!(r["charges_settled"], 1, "{r}");
    let c = d.card_charge(ch.id).await.unwrap();
    assert_eq!(c.status, "succeeded");
    assert_eq!(c.session.map(|s| s.turns), Some(2));
    assert_eq!(all_sessions(&d).await.len(), 1);
    // The webhook arriving after all: nothing more.
    let pi = ch.intent_id.unwrap();
    assert_ne!(
        event(&t, &fake, "evt_late_hook", "payment_intent.succeeded", fake.payment_intent(&pi)).await,
        "applied"
    );
    assert_eq!(all_sessions(&d).await.len(), 1);
    assert_money_sound(&t).await;
});

both!(concurrent_webhooks_and_sweeps_apply_a_payment_once, |t, fake| {
    let d = t.driver("0912300034").await;
    let card = save_card(&t, &fake, &d, FakeCard::Requires3ds, "setup").await;
    let ch = pending(d.start_session_by_card(&by_card("HK003", "30A40021", 2, card.id), "3ds").await);
    let pi = ch.intent_id.clone().unwrap();
    fake.authenticate(&pi, true);
    let admin = staff_token(&t, StaffRole::Admin, &[]).await;
    t.clock.advance(Duration::minutes(3));
    let object = fake.payment_intent(&pi);
    let signed: Vec<(String, String)> = ["evt_c1", "evt_c1", "evt_c2", "evt_c3"]
        .iter()
        .map(|id| fake.event_object(id, "payment_intent.succeeded", object.clone(), WHSEC, None))
        .collect();
    let (a, b, c, e, s1, s2) = tokio::join!(
        deliver(&t, &signed[0].0, Some(&signed[0].1)),
        deliver(&t, &signed[1].0, Some(&signed[1].1)),
        deliver(&t, &signed[2].0, Some(&signed[2].1)),
        deliver(&t, &signed[3].0, Some(&signed[3].1)),
        admin_post(&t, &admin, "/v1/admin/payments/sweep"),
        admin_post(&t, &admin, "/v1/admin/payments/sweep"),
    );
    for (status, body) in [a, b, c, e, s1, s2] {
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(all_sessions(&d).await.len(), 1, "one session");
    assert_eq!(occupancy(&t, "HK003").await, 1);
    assert_eq!(d.card_charge(ch.id).await.unwrap().status, "succeeded");
    assert_eq!(t.sql_i64("SELECT COUNT(*) FROM ledger_transactions WHERE kind = 'card_session_start'").await, 1);
    assert_money_sound(&t).await;
});

// ---- 6. processor faults ---------------------------------------------------------------

both!(processor_faults_are_retried_with_the_same_key, |t, fake| {
    let d = t.driver("0912300040").await;
    let card = save_card(&t, &fake, &d, FakeCard::Ok, "setup").await;
    // Two 500s, then success: three requests with one key, one intent.
    fake.state.fail_next.store(2, Ordering::SeqCst);
    let s1 = paid(d.start_session_by_card(&by_card("HK004", "30A60001", 1, card.id), "f-1").await);
    let n1 = last_charge_id(&fake);
    let key1 = format!("charge-{n1}");
    assert_eq!(intent_posts(&fake).iter().filter(|p| p.key.as_deref() == Some(key1.as_str())).count(), 3);
    assert_eq!(intent_posts(&fake).len(), 3);
    assert_eq!(intents_of_charge(&fake, n1).len(), 1);

    // Five 500s: 503 after three attempts, the charge stays pending; the same request again
    // (same key) succeeds with one intent.
    fake.state.fail_next.store(5, Ordering::SeqCst);
    let body2 = by_card("HK004", "30A60002", 1, card.id);
    let (status, code, ..) = api_error(d.start_session_by_card(&body2, "f-2").await);
    assert_eq!((status, code.as_str()), (503, "service_unavailable"));
    let n2 = last_charge_id(&fake);
    let c = d.card_charge(n2).await.unwrap();
    assert_eq!((c.status.as_str(), c.intent_id.as_deref()), ("pending", None), "{c:?}");
    assert_eq!(all_sessions(&d).await.len(), 1);
    assert_eq!(active_with_plate(&t, "30A60002").await, 0);
    let s2 = paid(d.start_session_by_card(&body2, "f-2").await);
    let key2 = format!("charge-{n2}");
    assert_eq!(intent_posts(&fake).iter().filter(|p| p.key.as_deref() == Some(key2.as_str())).count(), 6);
    assert_eq!(intents_of_charge(&fake, n2).len(), 1, "exactly one intent charged");
    assert_eq!(d.card_charge(n2).await.unwrap().session.map(|s| s.id), Some(s2.id));

    // Charged, but the answer was lost: the retry gets Stripe's recorded answer.
    fake.state.fail_after_next.store(1, Ordering::SeqCst);
    let s3 = paid(d.start_session_by_card(&by_card("HK004", "30A60003", 1, card.id), "f-3").await);
    let n3 = last_charge_id(&fake);
    let key3 = format!("charge-{n3}");
    assert_eq!(intent_posts(&fake).iter().filter(|p| p.key.as_deref() == Some(key3.as_str())).count(), 2);
    assert_eq!(intents_of_charge(&fake, n3).len(), 1);
    let sessions = all_sessions(&d).await;
    assert_eq!(sessions.len(), 3);
    assert!([s1.id, s2.id, s3.id].iter().all(|id| sessions.iter().any(|s| s.id == *id)));
    assert_eq!(fake.state.intents.lock().unwrap().len(), 3, "three sessions, three intents");
    assert_money_sound(&t).await;
});

both!(processor_timeouts_are_retried_with_the_same_key, Some(StdDuration::from_millis(300)), |t, fake| {
    let d = t.driver("0912300041").await;
    let card = save_card(&t, &fake, &d, FakeCard::Ok, "setup").await;
    *fake.state.delay.lock().unwrap() = StdDuration::from_millis(1000);
    // The first attempt times out after Stripe charged: the retry gets the same intent.
    fake.state.delay_next.store(1, Ordering::SeqCst);
    paid(d.start_session_by_card(&by_card("HK004", "30A60011", 1, card.id), "t-1").await);
    let n1 = last_charge_id(&fake);
    assert_eq!(intent_posts(&fake).len(), 2);
    assert_eq!(intents_of_charge(&fake, n1).len(), 1);
    // Every attempt times out: 503, pending; the same request later: one intent.
    fake.state.delay_next.store(3, Ordering::SeqCst);
    let body = by_card("HK004", "30A60012", 1, card.id);
    let (status, code, ..) = api_error(d.start_session_by_card(&body, "t-2").await);
    assert_eq!((status, code.as_str()), (503, "service_unavailable"));
    let n2 = last_charge_id(&fake);
    assert_eq!(d.card_charge(n2).await.unwrap().status, "pending");
    assert_eq!(active_with_plate(&t, "30A60012").await, 0);
    let s2 = paid(d.start_session_by_card(&body, "t-2").await);
    assert_eq!(intents_of_charge(&fake, n2).len(), 1);
    assert_eq!(d.card_charge(n2).await.unwrap().session.map(|s| s.id), Some(s2.id));
    assert_eq!(all_sessions(&d).await.len(), 2);
    assert_money_sound(&t).await;
});

// ---- 7. the sweeper finds lost charges ---------------------------------------------------

both!(the_sweeper_settles_a_charge_whose_answer_was_lost_and_abandons_one_never_sent, |t, fake| {
    let d = t.driver("0912300050").await;
    let card = save_card(&t, &fake, &d, FakeCard::Ok, "setup").await;
    let admin = staff_token(&t, StaffRole::Admin, &[]).await;
    // Stripe charged on the first attempt; every answer was lost.
    fake.state.fail_after_next.store(3, Ordering::SeqCst);
    let body = by_card("HK005", "30A70001", 2, card.id);
    let (status, ..) = api_error(d.start_session_by_card(&body, "o-1").await);
    assert_eq!(status, 503);
    let n = last_charge_id(&fake);
    let c = d.card_charge(n).await.unwrap();
    assert_eq!((c.status.as_str(), c.intent_id.as_deref()), ("pending", None));
    assert_eq!(intents_of_charge(&fake, n).len(), 1, "Stripe did charge");
    assert!(all_sessions(&d).await.is_empty());
    // Too early for the sweeper.
    assert_eq!(counts(&sweep(&t, &admin).await), [0; 7]);
    t.clock.advance(Duration::minutes(3));
    // Two sweeps at once (two nodes): settled once.
    let (r, r2) = tokio::join!(sweep(&t, &admin), sweep(&t, &admin));
    assert!(r["charges_settled"] == 1 || r2["charges_settled"] == 1, "{r} {r2}");
    assert_eq!(occupancy(&t, "HK005").await, 1, "the live state follows the session the sweeper started");
    let sessions = all_sessions(&d).await;
    assert_eq!(sessions.len(), 1);
    assert_eq!((sessions[0].plate.as_str(), sessions[0].turns), ("30A70001", 2));
    let c = d.card_charge(n).await.unwrap();
    assert_eq!(c.status, "succeeded");
    assert_eq!(c.session.map(|s| s.id), Some(sessions[0].id));
    assert_eq!(c.intent_id.as_deref(), intents_of_charge(&fake, n)[0]["id"].as_str());
    assert_eq!(intents_of_charge(&fake, n).len(), 1);
    assert_eq!(intent_posts(&fake).len(), 3, "the sweeper looks up, never charges");
    // The driver's retry now answers the session; another sweep does nothing.
    assert_eq!(paid(d.start_session_by_card(&body, "o-1").await).id, sessions[0].id);
    assert_eq!(intent_posts(&fake).len(), 3);
    assert_eq!(counts(&sweep(&t, &admin).await), [0; 7]);
    assert_money_sound(&t).await;

    // A charge that never reached Stripe: abandoned, nothing charged.
    fake.state.fail_next.store(3, Ordering::SeqCst);
    let body2 = by_card("HK005", "30A70002", 1, card.id);
    let (status, ..) = api_error(d.start_session_by_card(&body2, "o-2").await);
    assert_eq!(status, 503);
    let n2 = last_charge_id(&fake);
    t.clock.advance(Duration::minutes(3));
    let r = sweep(&t, &admin).await;
    assert_eq!(counts(&r), [0, 0, 0, 1, 0, 0, 0], "{r}");
    assert_eq!(d.card_charge(n2).await.unwrap().status, "abandoned");
    assert!(intents_of_charge(&fake, n2).is_empty(), "nothing charged");
    let (status, ..) = api_error(d.start_session_by_card(&body2, "o-2").await);
    assert_eq!(status, 409, "an abandoned charge is never resumed: a new key is needed");
    assert!(intents_of_charge(&fake, n2).is_empty());
    assert_eq!(all_sessions(&d).await.len(), 1);
    assert_money_sound(&t).await;

    // Declined, and the answer lost: the sweeper finds the declined intent.
    let declined = save_card(&t, &fake, &d, FakeCard::Declined, "setup-declined").await;
    fake.state.fail_after_next.store(3, Ordering::SeqCst);
    let body3 = by_card("HK005", "30A70003", 1, declined.id);
    let (status, ..) = api_error(d.start_session_by_card(&body3, "o-3").await);
    assert_eq!(status, 503);
    let n3 = last_charge_id(&fake);
    t.clock.advance(Duration::minutes(3));
    let r = sweep(&t, &admin).await;
    assert_eq!(counts(&r), [0, 1, 0, 0, 0, 0, 0], "{r}");
    assert_eq!(d.card_charge(n3).await.unwrap().status, "failed");
    let (status, code, ..) = api_error(d.start_session_by_card(&body3, "o-3").await);
    assert_eq!((status, code.as_str()), (402, "card_declined"));

    // Paid, found by the sweeper after the paid window is over: refunded in full.
    fake.state.fail_after_next.store(3, Ordering::SeqCst);
    let body4 = by_card("HK005", "30A70004", 1, card.id);
    let (status, ..) = api_error(d.start_session_by_card(&body4, "o-4").await);
    assert_eq!(status, 503);
    let n4 = last_charge_id(&fake);
    t.clock.advance(Duration::minutes(61));
    let r = sweep(&t, &admin).await;
    assert_eq!(r["charges_settled"], 1, "{r}");
    let c = d.card_charge(n4).await.unwrap();
    assert_eq!((c.status.as_str(), c.failure_code.as_deref()), ("refund_due", Some("window_passed")), "{c:?}");
    let pi4 = intents_of_charge(&fake, n4)[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        fake_refunds(&fake, &pi4).iter().map(|r| r["amount"].as_i64().unwrap()).collect::<Vec<_>>(),
        vec![c.amount]
    );
    assert_eq!(active_with_plate(&t, "30A70004").await, 0);
    assert_money_sound(&t).await;
});

both!(the_sweeper_credits_a_top_up_whose_webhook_was_lost, |t, fake| {
    let d = t.driver("0912300052").await;
    let admin = staff_token(&t, StaffRole::Admin, &[]).await;
    let topup = d.topup(60_000, "t").await.unwrap();
    fake.authenticate(&topup.intent_id, true);
    let unpaid = d.topup(40_000, "unpaid").await.unwrap();
    assert_eq!(counts(&sweep(&t, &admin).await), [0; 7], "too early");
    t.clock.advance(Duration::minutes(3));
    let r = sweep(&t, &admin).await;
    assert_eq!(r["topups_credited"], 1, "{r}");
    assert_eq!(d.wallet().await.unwrap().balance, 60_000);
    // The webhook arriving after all, and another sweep: nothing more.
    event(&t, &fake, "evt_topup_late", "payment_intent.succeeded", fake.payment_intent(&topup.intent_id)).await;
    assert_eq!(sweep(&t, &admin).await["topups_credited"], 0);
    assert_eq!(d.wallet().await.unwrap().balance, 60_000);
    assert_eq!(fake.payment_intent(&unpaid.intent_id)["status"], "requires_payment_method");
    assert_money_sound(&t).await;
});

both!(paid_but_point_full_is_refunded_in_full, |t, fake| {
    let d = t.funded_driver("0912300062", 2_000_000).await;
    let card = save_card(&t, &fake, &d, FakeCard::Requires3ds, "setup").await;
    let capacity = t.app.store.point("HBT001").await.unwrap().unwrap().capacity;
    let ch = pending(d.start_session_by_card(&by_card("HBT001", "30A80100", 1, card.id), "card").await);
    // While the driver authenticates, the point fills up.
    for i in 0..capacity {
        d.start_session(&car("HBT001", &format!("30A80{:03}", 200 + i), 1), &format!("fill-{i}")).await.unwrap();
    }
    let pi = ch.intent_id.clone().unwrap();
    fake.authenticate(&pi, true);
    assert_eq!(event(&t, &fake, "evt_full", "payment_intent.succeeded", fake.payment_intent(&pi)).await, "refund_due");
    let c = d.card_charge(ch.id).await.unwrap();
    assert_eq!((c.status.as_str(), c.failure_code.as_deref()), ("refund_due", Some("point_full")), "{c:?}");
    assert_eq!(
        fake_refunds(&fake, &pi).iter().map(|r| r["amount"].as_i64().unwrap()).collect::<Vec<_>>(),
        vec![c.amount]
    );
    assert_eq!(active_with_plate(&t, "30A80100").await, 0);
    assert_eq!(occupancy(&t, "HBT001").await, i64::from(capacity), "never over capacity");
    let (status, code, details, _) =
        api_error(d.start_session_by_card(&by_card("HBT001", "30A80100", 1, card.id), "card").await);
    assert_eq!((status, code.as_str(), &details["reason"]), (409, "paid_not_applied", &json!("point_full")));
    assert_money_sound(&t).await;
});

both!(sweep_and_import_need_city_wide_money_staff, |t, fake| {
    let (_d, driver_token) = login(&t, "0912300051").await;
    let warden = staff_token(&t, StaffRole::Warden, &[]).await;
    let hk_admin = staff_token(&t, StaffRole::Admin, &["HK"]).await;
    let finance = staff_token(&t, StaffRole::Finance, &[]).await;
    for path in ["/v1/admin/payments/sweep", "/v1/admin/settlement/import"] {
        let a = raw(reqwest::Client::new().post(t.url(path))).await;
        assert_error(&a, 401, "unauthorized");
        let a = admin_post(&t, &driver_token, path).await;
        assert_eq!(a.0, 401, "{path}: a driver token: {}", a.1);
        assert_error(&admin_post(&t, &warden, path).await, 403, "forbidden");
        assert_error(&admin_post(&t, &hk_admin, path).await, 403, "forbidden");
        let (status, body) = admin_post(&t, &finance, path).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    let _ = fake;
});

// ---- 8. paid, but not applicable -----------------------------------------------------------

both!(paid_but_plate_parked_is_refunded_in_full, |t, fake| {
    let a = t.funded_driver("0912300060", 500_000).await;
    let b = t.driver("0912300061").await;
    let card = save_card(&t, &fake, &b, FakeCard::Ok, "setup").await;
    let parked = a.start_session(&car("HK006", "30A80001", 2), "a-1").await.unwrap();

    let body = by_card("HK007", "30A80001", 1, card.id);
    let (status, code, details, _) = api_error(b.with_language("en").start_session_by_card(&body, "b-1").await);
    assert_eq!((status, code.as_str()), (409, "paid_not_applied"), "{details}");
    assert_eq!(details["reason"], "plate_active", "{details}");
    let refunds = details["refunds"].as_array().expect("details.refunds").clone();
    assert_eq!(refunds.len(), 1, "{details}");
    let charge_id = details["charge_id"].as_i64().unwrap();
    let charge = b.card_charge(charge_id).await.unwrap();
    assert_eq!(charge.status, "refund_due");
    assert_eq!(refunds[0]["amount"].as_i64(), Some(charge.amount));
    let pi = charge.intent_id.clone().unwrap();
    assert_eq!(fake.payment_intent(&pi)["status"], "succeeded", "the card was charged");
    // The refund went to Stripe with our key, for the full amount, against the intent.
    let posts = refund_posts(&fake);
    assert_eq!(posts.len(), 1);
    let refund_id = refunds[0]["id"].as_i64().unwrap();
    assert_eq!(posts[0].key.as_deref(), Some(format!("refund-{refund_id}").as_str()));
    assert_eq!(posts[0].params.get("payment_intent"), Some(&pi));
    assert_eq!(posts[0].params.get("amount"), Some(&charge.amount.to_string()));
    let listed = b.refunds().await.unwrap();
    assert_eq!(
        (listed.len(), listed[0].status.as_str(), listed[0].reason.as_str(), listed[0].amount),
        (1, "submitted", "plate_active", charge.amount)
    );
    // Nothing given to B; A's session is untouched.
    assert!(all_sessions(&b).await.is_empty());
    assert_eq!(a.session(parked.id).await.unwrap().status, SessionStatus::Active);
    assert_eq!(active_with_plate(&t, "30A80001").await, 1);
    assert_eq!(occupancy(&t, "HK007").await, 0, "no space taken for a charge refunded");
    assert_money_sound(&t).await;
    // The same key again: the same answer, nothing charged or refunded again.
    let (status, code, details2, _) = api_error(b.start_session_by_card(&body, "b-1").await);
    assert_eq!((status, code.as_str(), &details2["reason"]), (409, "paid_not_applied", &json!("plate_active")));
    assert_eq!((intent_posts(&fake).len(), refund_posts(&fake).len()), (1, 1));

    // Stripe confirms the refund.
    let re = fake_refunds(&fake, &pi)[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(settle_refund(&t, &fake, &re, true, "evt_re_ok").await, "refunded");
    assert_eq!(event(&t, &fake, "evt_re_ok", "refund.updated", fake.refund(&re)).await, "duplicate");
    let listed = b.refunds().await.unwrap();
    assert_eq!(listed[0].status, "succeeded");
    assert_eq!(b.wallet().await.unwrap().balance, 0, "a card refund does not go to the wallet");
    assert_money_sound(&t).await;

    // A refund that fails at Stripe: the driver gets it in the wallet.
    a.start_session(&car("HK006", "30A80002", 1), "a-2").await.unwrap();
    let (status, code, details, _) =
        api_error(b.start_session_by_card(&by_card("HK007", "30A80002", 1, card.id), "b-2").await);
    assert_eq!((status, code.as_str()), (409, "paid_not_applied"));
    let amount = details["refunds"][0]["amount"].as_i64().unwrap();
    let pi2 = b.card_charge(details["charge_id"].as_i64().unwrap()).await.unwrap().intent_id.unwrap();
    let re2 = fake_refunds(&fake, &pi2)[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(settle_refund(&t, &fake, &re2, false, "evt_re_fail").await, "refund_failed");
    let w = b.wallet().await.unwrap();
    assert_eq!(w.balance, amount);
    assert_eq!(w.movements[0].kind, "card_refund_failed");
    let failed = b.refunds().await.unwrap().into_iter().find(|r| r.amount == amount && r.status == "failed");
    assert!(failed.is_some(), "{:?}", b.refunds().await.unwrap());
    // A later "succeeded" for the failed refund changes nothing.
    let mut late = fake.refund(&re2);
    late["status"] = json!("succeeded");
    event(&t, &fake, "evt_re_late", "refund.updated", late).await;
    assert_eq!(b.wallet().await.unwrap().balance, amount);
    assert_money_sound(&t).await;
});

// ---- 9. extensions by card -----------------------------------------------------------------

both!(card_extension_adds_turns_and_refuses_ended_sessions, |t, fake| {
    let (d, token) = login(&t, "0912300070").await;
    let card = save_card(&t, &fake, &d, FakeCard::Ok, "setup").await;
    let s = paid(d.start_session_by_card(&by_card("HK008", "30A90001", 1, card.id), "start").await);
    let ext = paid(d.extend_session_by_card(s.id, &extend_by_card(2, card.id), "ext-1").await);
    assert_eq!((ext.id, ext.turns, ext.amount_charged), (s.id, 3, price(&t, &s, 3)));
    assert!(ext.paid_until > s.paid_until);
    let posts = intent_posts(&fake);
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[1].params.get("metadata[purpose]").map(String::as_str), Some("session_extend"));
    assert_eq!(posts[1].params.get("amount"), Some(&(price(&t, &s, 3) - price(&t, &s, 1)).to_string()));
    // 200 for an extension, and a replay charges nothing more.
    let (status, replay) = raw(reqwest::Client::new()
        .post(t.url(&format!("/v1/sessions/{}/extend", s.id)))
        .bearer_auth(&token)
        .header("Idempotency-Key", "ext-1")
        .json(&extend_by_card(2, card.id)))
    .await;
    assert_eq!((status, replay["turns"].as_u64()), (200, Some(3)), "{replay}");
    assert_eq!(intent_posts(&fake).len(), 2);
    assert_eq!(d.wallet().await.unwrap().balance, 0);
    assert_money_sound(&t).await;

    // An ended session: 409, nothing charged.
    d.stop_session(s.id, "stop").await.unwrap();
    let (status, code, ..) = api_error(d.extend_session_by_card(s.id, &extend_by_card(1, card.id), "ext-2").await);
    assert_eq!((status, code.as_str()), (409, "session_ended"));
    assert_eq!(intent_posts(&fake).len(), 2);
    assert_money_sound(&t).await;
});

both!(a_session_changed_during_3ds_refunds_the_extension, |t, fake| {
    let d = t.funded_driver("0912300071", 500_000).await;
    let card = save_card(&t, &fake, &d, FakeCard::Requires3ds, "setup").await;
    let s = d.start_session(&car("HK008", "30A90002", 1), "start").await.unwrap();
    let ch = pending(d.extend_session_by_card(s.id, &extend_by_card(1, card.id), "card-ext").await);
    assert_eq!(ch.purpose, "session_extend");
    // Meanwhile the driver extends from the wallet.
    let w = d.extend_session(s.id, &wallet_turns(1), "wallet-ext").await.unwrap();
    assert_eq!(w.turns, 2);
    let pi = ch.intent_id.clone().unwrap();
    fake.authenticate(&pi, true);
    assert_eq!(event(&t, &fake, "evt_ext", "payment_intent.succeeded", fake.payment_intent(&pi)).await, "refund_due");
    let c = d.card_charge(ch.id).await.unwrap();
    assert_eq!((c.status.as_str(), c.failure_code.as_deref()), ("refund_due", Some("session_changed")), "{c:?}");
    assert_eq!(d.session(s.id).await.unwrap().turns, 2, "the card extension was not given");
    let posts = refund_posts(&fake);
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].params.get("amount"), Some(&ch.amount.to_string()));
    assert_money_sound(&t).await;
});

// ---- 10. stopping a card-paid session --------------------------------------------------------

both!(stopping_a_card_session_refunds_unused_turns_to_the_card, |t, fake| {
    let d = t.driver("0912300080").await;
    let card = save_card(&t, &fake, &d, FakeCard::Ok, "setup").await;
    let s = paid(d.start_session_by_card(&by_card("HK009", "30A11001", 3, card.id), "start").await);
    let pi = session_intent(&t, s.id).await;
    t.clock.advance(Duration::minutes(20));
    let stopped = d.stop_session(s.id, "stop").await.unwrap();
    let expected = price(&t, &s, 3) - price(&t, &s, 1);
    assert!(expected > 0);
    assert_eq!(
        (stopped.status, stopped.amount_charged, stopped.amount_refunded),
        (SessionStatus::Ended, s.amount_charged, expected)
    );
    let posts = refund_posts(&fake);
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert_eq!(posts[0].params.get("payment_intent"), Some(&pi));
    assert_eq!(posts[0].params.get("amount"), Some(&expected.to_string()));
    let refunds = d.refunds().await.unwrap();
    assert_eq!(refunds.len(), 1);
    let r = &refunds[0];
    assert_eq!(
        (r.amount, r.status.as_str(), r.reason.as_str(), r.session_id),
        (expected, "submitted", "unused_turns", Some(s.id))
    );
    assert_eq!(posts[0].key.as_deref(), Some(format!("refund-{}", r.id).as_str()));
    let w = d.wallet().await.unwrap();
    assert_eq!((w.balance, w.movements.len()), (0, 0), "nothing through the wallet: {w:?}");
    assert_money_sound(&t).await;
    // Stopping again: nothing more.
    d.stop_session(s.id, "stop-2").await.unwrap();
    assert_eq!(refund_posts(&fake).len(), 1);
    let re = fake_refunds(&fake, &pi)[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(settle_refund(&t, &fake, &re, true, "evt_stop_re").await, "refunded");
    assert_eq!(d.refunds().await.unwrap()[0].status, "succeeded");
    assert_money_sound(&t).await;
});

both!(a_refund_stripe_could_not_take_is_resent_by_the_sweeper, |t, fake| {
    let d = t.driver("0912300081").await;
    let card = save_card(&t, &fake, &d, FakeCard::Ok, "setup").await;
    let s = paid(d.start_session_by_card(&by_card("HK009", "30A11002", 3, card.id), "start").await);
    fake.state.fail_next.store(3, Ordering::SeqCst);
    let stopped = d.stop_session(s.id, "stop").await.unwrap();
    assert!(stopped.amount_refunded > 0);
    let r = d.refunds().await.unwrap()[0].clone();
    assert_eq!(r.status, "pending");
    assert!(fake.state.refunds.lock().unwrap().is_empty());
    let key = format!("refund-{}", r.id);
    assert!(refund_posts(&fake).iter().all(|p| p.key.as_deref() == Some(key.as_str())));
    let admin = staff_token(&t, StaffRole::Admin, &[]).await;
    t.clock.advance(Duration::minutes(1));
    let report = sweep(&t, &admin).await;
    assert_eq!(report["refunds_submitted"], 1, "{report}");
    let pi = session_intent(&t, s.id).await;
    let at_stripe = fake_refunds(&fake, &pi);
    assert_eq!(at_stripe.len(), 1);
    assert_eq!(at_stripe[0]["amount"].as_i64(), Some(stopped.amount_refunded));
    assert!(refund_posts(&fake).iter().all(|p| p.key.as_deref() == Some(key.as_str())), "the same key");
    assert_eq!(d.refunds().await.unwrap()[0].status, "submitted");
    assert_eq!(sweep(&t, &admin).await["refunds_submitted"], 0);
    assert_money_sound(&t).await;
});

both!(a_refund_whose_answer_was_lost_is_matched_by_its_webhook, |t, fake| {
    let d = t.driver("0912300083").await;
    let card = save_card(&t, &fake, &d, FakeCard::Ok, "setup").await;
    let s = paid(d.start_session_by_card(&by_card("HK009", "30A11005", 3, card.id), "start").await);
    let pi = session_intent(&t, s.id).await;
    // Stripe refunded, but every answer was lost.
    fake.state.fail_after_next.store(3, Ordering::SeqCst);
    let stopped = d.stop_session(s.id, "stop").await.unwrap();
    assert_eq!(d.refunds().await.unwrap()[0].status, "pending");
    let at_stripe = fake_refunds(&fake, &pi);
    assert_eq!(at_stripe.len(), 1);
    assert_eq!(at_stripe[0]["amount"].as_i64(), Some(stopped.amount_refunded));
    // Stripe's webhook names our refund in its metadata.
    let re = at_stripe[0]["id"].as_str().unwrap().to_owned();
    fake.settle_refund(&re, true);
    assert_eq!(event(&t, &fake, "evt_lost_re", "charge.refund.updated", fake.refund(&re)).await, "refunded");
    assert_eq!(d.refunds().await.unwrap()[0].status, "succeeded");
    let admin = staff_token(&t, StaffRole::Admin, &[]).await;
    t.clock.advance(Duration::minutes(1));
    assert_eq!(sweep(&t, &admin).await["refunds_submitted"], 0, "nothing to resend");
    assert_eq!(refund_posts(&fake).len(), 3);
    assert_eq!(fake_refunds(&fake, &pi).len(), 1);
    assert_money_sound(&t).await;
});

both!(a_refund_stripe_refuses_goes_to_the_wallet, |t, fake| {
    let d = t.driver("0912300084").await;
    let card = save_card(&t, &fake, &d, FakeCard::Ok, "setup").await;
    let s = paid(d.start_session_by_card(&by_card("HK009", "30A11006", 3, card.id), "start").await);
    let pi = session_intent(&t, s.id).await;
    // Someone refunded the whole charge in Stripe's dashboard: Stripe refuses ours.
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/refunds", fake.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("payment_intent={pi}"))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let stopped = d.stop_session(s.id, "stop").await.unwrap();
    assert!(stopped.amount_refunded > 0);
    let r = d.refunds().await.unwrap()[0].clone();
    assert_eq!(r.status, "failed", "{r:?}");
    let w = d.wallet().await.unwrap();
    assert_eq!(w.balance, stopped.amount_refunded);
    assert_eq!(w.movements[0].kind, "card_refund_failed");
    assert_money_sound(&t).await;
});

both!(stop_refunds_each_part_the_way_it_was_paid, |t, fake| {
    // Wallet start, card extension: the unused turns were paid by card.
    let d = t.funded_driver("0912300082", 500_000).await;
    let card = save_card(&t, &fake, &d, FakeCard::Ok, "setup").await;
    let s = d.start_session(&car("HK010", "30A11003", 2), "w-start").await.unwrap();
    paid(d.extend_session_by_card(s.id, &extend_by_card(2, card.id), "c-ext").await);
    let (p1, p2, p4) = (price(&t, &s, 1), price(&t, &s, 2), price(&t, &s, 4));
    let stopped = d.stop_session(s.id, "stop").await.unwrap();
    assert_eq!(stopped.amount_refunded, p4 - p1);
    let pi = session_intent(&t, s.id).await;
    let to_card: i64 = fake_refunds(&fake, &pi).iter().map(|r| r["amount"].as_i64().unwrap()).sum();
    assert_eq!(to_card, p4 - p2, "the card-paid turns 3-4 go back to the card");
    assert_eq!(d.wallet().await.unwrap().balance, 500_000 - p2 + (p2 - p1), "turn 2 back to the wallet");
    assert_money_sound(&t).await;

    // Card start, wallet extension: the unused turns 3-4 were paid from the wallet.
    let s = paid(d.start_session_by_card(&by_card("HK010", "30A11004", 2, card.id), "c-start").await);
    let before = d.wallet().await.unwrap().balance;
    d.extend_session(s.id, &wallet_turns(2), "w-ext").await.unwrap();
    let (p1, p2, p4) = (price(&t, &s, 1), price(&t, &s, 2), price(&t, &s, 4));
    let stopped = d.stop_session(s.id, "stop-2").await.unwrap();
    assert_eq!(stopped.amount_refunded, p4 - p1);
    let pi = session_intent(&t, s.id).await;
    let to_card: i64 = fake_refunds(&fake, &pi).iter().map(|r| r["amount"].as_i64().unwrap()).sum();
    let to_wallet = d.wallet().await.unwrap().balance - (before - (p4 - p2));
    // The unused turns are the newest (wallet-paid): each purchase goes back the way it was
    // paid.
    assert_eq!(
        (to_card, to_wallet),
        (p2 - p1, p4 - p2),
        "stop after a card start and a wallet extension: turn 2 (card) should go back to the card and \
         turns 3-4 (wallet) to the wallet (docs/payments.md: card-paid turns to their charges, wallet-paid \
         ones to the wallet)"
    );
    assert_money_sound(&t).await;
});

// ---- 11. staff refunds -----------------------------------------------------------------------

both!(staff_refunds_part_of_a_card_session, |t, fake| {
    let d = t.driver("0912300090").await;
    let card = save_card(&t, &fake, &d, FakeCard::Ok, "setup").await;
    let s = paid(d.start_session_by_card(&by_card("HK011", "30A12001", 3, card.id), "start").await);
    let pi = session_intent(&t, s.id).await;
    let admin = staff_token(&t, StaffRole::Admin, &[]).await;
    let path = format!("/v1/admin/sessions/{}/refunds", s.id);
    let post = |token: &str, key: Option<&str>, body: Value| {
        let mut req = reqwest::Client::new().post(t.url(&path)).bearer_auth(token).json(&body);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        raw(req)
    };
    let first = post(&admin, Some("r-1"), json!({"amount": 10_000, "reason": "disputed: sign unclear"})).await;
    assert_eq!(first.0, 201, "{}", first.1);
    assert_eq!(first.1["session"]["amount_refunded"], 10_000);
    assert_eq!(first.1["refunds"].as_array().map(Vec::len), Some(1), "{}", first.1);
    assert_eq!(first.1["refunds"][0]["amount"], 10_000);
    let posts = refund_posts(&fake);
    assert_eq!(posts.len(), 1);
    assert_eq!(
        (posts[0].params.get("payment_intent"), posts[0].params.get("amount")),
        (Some(&pi), Some(&"10000".to_owned()))
    );
    let (reason, by) = (
        t.sql_text("SELECT reason FROM refunds ORDER BY id DESC LIMIT 1").await,
        t.sql_text("SELECT requested_by FROM refunds ORDER BY id DESC LIMIT 1").await,
    );
    assert_eq!(reason.as_deref(), Some("disputed: sign unclear"));
    assert!(by.as_deref().is_some_and(|b| b.starts_with("staff:")), "{by:?}");
    // Replayed: the same answer, one refund.
    let again = post(&admin, Some("r-1"), json!({"amount": 10_000, "reason": "disputed: sign unclear"})).await;
    assert_eq!((again.0, &again.1), (201, &first.1));
    assert_eq!(refund_posts(&fake).len(), 1);

    let snapshot = (d.session(s.id).await.unwrap(), ledger_transactions(&t).await);
    // More than is left: 422 with what is refundable, nothing changed.
    let left = s.amount_charged - 10_000;
    let a = post(&admin, Some("r-2"), json!({"amount": left + 1, "reason": "too much"})).await;
    assert_error(&a, 422, "refund_too_large");
    assert_eq!(a.1["error"]["details"]["refundable"], left, "{}", a.1);
    // Bad requests.
    for (body, code) in [
        (json!({"amount": 0, "reason": "x"}), "invalid_amount"),
        (json!({"amount": -5, "reason": "x"}), "invalid_amount"),
        (json!({"amount": 1000, "reason": "   "}), "invalid_reason"),
    ] {
        assert_error(&post(&admin, Some("bad"), body).await, 400, code);
    }
    let a = post(&admin, Some("no-reason"), json!({"amount": 1000})).await;
    assert_eq!(a.0, 400, "{}", a.1);
    let a = post(&admin, None, json!({"amount": 1000, "reason": "no key"})).await;
    assert_eq!(a.0, 400, "{}", a.1);
    // Not staff, wrong role, another district.
    let (_, driver_token) = login(&t, "0912300091").await;
    let a = post(&driver_token, Some("driver"), json!({"amount": 1000, "reason": "x"})).await;
    assert!(a.0 == 401 || a.0 == 403, "{}", a.1);
    let warden = staff_token(&t, StaffRole::Warden, &[]).await;
    assert_error(&post(&warden, Some("warden"), json!({"amount": 1000, "reason": "x"})).await, 403, "forbidden");
    let bd_admin = staff_token(&t, StaffRole::Admin, &["BD"]).await;
    assert_error(&post(&bd_admin, Some("bd"), json!({"amount": 1000, "reason": "x"})).await, 403, "forbidden");
    let missing = raw(reqwest::Client::new()
        .post(t.url("/v1/admin/sessions/999999/refunds"))
        .bearer_auth(&admin)
        .header("Idempotency-Key", "missing")
        .json(&json!({"amount": 1000, "reason": "x"})))
    .await;
    assert_error(&missing, 404, "session_not_found");
    assert_eq!((d.session(s.id).await.unwrap(), ledger_transactions(&t).await), snapshot, "refusals change nothing");
    assert_eq!(refund_posts(&fake).len(), 1, "no refund reached Stripe");

    // Finance (city-wide) refunds exactly what is left.
    let finance = staff_token(&t, StaffRole::Finance, &[]).await;
    let rest = t
        .client
        .with_token(finance)
        .staff_refund(s.id, &StaffRefundRequest { amount: left, reason: "refund the rest".into() }, "r-3")
        .await
        .unwrap();
    assert_eq!(rest.session.amount_refunded, s.amount_charged);
    assert_eq!(rest.refunds.iter().map(|r| r.amount).collect::<Vec<_>>(), vec![left]);
    let to_card: i64 = fake_refunds(&fake, &pi).iter().map(|r| r["amount"].as_i64().unwrap()).sum();
    assert_eq!(to_card, s.amount_charged);
    assert_error(&post(&admin, Some("r-4"), json!({"amount": 1, "reason": "more"})).await, 422, "refund_too_large");
    assert_money_sound(&t).await;
    // Stopping now refunds nothing more.
    let stopped = d.stop_session(s.id, "stop").await.unwrap();
    assert_eq!(stopped.amount_refunded, s.amount_charged);
    assert_eq!(fake_refunds(&fake, &pi).len(), 2);
    assert_money_sound(&t).await;
});

both!(a_staff_refund_and_a_stop_at_once_never_refund_more_than_paid, |t, fake| {
    let d = t.driver("0912300093").await;
    let card = save_card(&t, &fake, &d, FakeCard::Ok, "setup").await;
    let s = paid(d.start_session_by_card(&by_card("HK011", "30A12003", 3, card.id), "start").await);
    let admin = t.client.with_token(staff_token(&t, StaffRole::Admin, &[]).await);
    let all = StaffRefundRequest { amount: s.amount_charged, reason: "all of it".into() };
    let (refund, stop) = tokio::join!(admin.staff_refund(s.id, &all, "all"), d.stop_session(s.id, "stop"));
    let stopped = stop.unwrap();
    let after = d.session(s.id).await.unwrap();
    assert_eq!(after.status, SessionStatus::Ended);
    match refund {
        Ok(v) => assert_eq!(v.session.amount_refunded, s.amount_charged),
        Err(e) => assert_eq!(e.code(), Some("refund_too_large"), "{e}"),
    }
    assert!(after.amount_refunded <= s.amount_charged, "{after:?} {stopped:?}");
    let pi = session_intent(&t, s.id).await;
    let to_card: i64 = fake_refunds(&fake, &pi).iter().map(|r| r["amount"].as_i64().unwrap()).sum();
    assert_eq!(to_card, after.amount_refunded, "what Stripe refunds is what the session says");
    assert!(to_card <= s.amount_charged);
    assert_money_sound(&t).await;
});

both!(staff_refunds_of_wallet_sessions_go_to_the_wallet, |t, fake| {
    let d = t.funded_driver("0912300092", 300_000).await;
    let s = d.start_session(&car("HK011", "30A12002", 2), "start").await.unwrap();
    let admin = t.client.with_token(staff_token(&t, StaffRole::Admin, &["HK"]).await);
    let view = admin
        .staff_refund(s.id, &StaffRefundRequest { amount: 5_000, reason: "wrong sign".into() }, "r")
        .await
        .unwrap();
    assert!(view.refunds.is_empty(), "nothing through Stripe: {view:?}");
    assert_eq!(view.session.amount_refunded, 5_000);
    let w = d.wallet().await.unwrap();
    assert_eq!(w.balance, 300_000 - s.amount_charged + 5_000);
    assert_eq!(w.movements[0].kind, "session_refund");
    assert!(refund_posts(&fake).is_empty());
    assert_money_sound(&t).await;
});

both!(staff_refunds_of_sms_sessions_are_refused, |t, fake| {
    let q = iparking_mobile_api::QuoteRequest {
        point_code: "HK012".into(),
        vehicle_class: VehicleClass::Car,
        start: Some(t.clock.now()),
        minutes: Some(60),
        amount: None,
        channel: Some(Channel::Sms),
    };
    let price = t.client.quote(&q).await.unwrap().total;
    let (status, reply) = raw(reqwest::Client::new()
        .post(t.url("/webhooks/sms/viettel"))
        .header("X-Carrier-Secret", VIETTEL_SECRET)
        .json(
            &json!({"message_id": "m-1", "from": "0987654321", "text": format!("IP{}HK 012 30A12099", price / 1000)}),
        ))
    .await;
    assert_eq!(status, 200, "{reply}");
    let session_id = reply["session_id"].as_i64().unwrap_or_else(|| panic!("an SMS session: {reply}"));
    let admin = staff_token(&t, StaffRole::Admin, &[]).await;
    let a = raw(reqwest::Client::new()
        .post(t.url(&format!("/v1/admin/sessions/{session_id}/refunds")))
        .bearer_auth(&admin)
        .header("Idempotency-Key", "sms")
        .json(&json!({"amount": 1000, "reason": "x"})))
    .await;
    assert_error(&a, 422, "not_refundable_here");
    assert!(refund_posts(&fake).is_empty());
    t.assert_ledger_sound().await;
});

// ---- 12. closing an account ----------------------------------------------------------------

both!(closing_an_account_refunds_the_wallet_to_the_top_up_cards, |t, fake| {
    let phone = "0912300100";
    let (d, token) = login(&t, phone).await;
    let me = driver_id(&t, phone).await;
    let mut topups = Vec::new();
    for (amount, key) in [(50_000, "t-1"), (100_000, "t-2")] {
        let topup = d.topup(amount, key).await.unwrap();
        fake.authenticate(&topup.intent_id, true);
        let outcome =
            event(&t, &fake, &format!("evt_{key}"), "payment_intent.succeeded", fake.payment_intent(&topup.intent_id))
                .await;
        assert_eq!(outcome, "credited");
        topups.push(topup.intent_id);
        t.clock.advance(Duration::minutes(1));
    }
    assert_eq!(d.wallet().await.unwrap().balance, 150_000);
    let s = d.start_session(&car("HK013", "30A13001", 1), "spend").await.unwrap();
    let spent = s.amount_charged;

    // An active session: refused, nothing changed.
    let before = (d.wallet().await.unwrap(), ledger_transactions(&t).await);
    let (status, code, ..) = api_error(d.close_account("close-1").await);
    assert_eq!((status, code.as_str()), (409, "active_sessions"));
    assert_eq!((d.wallet().await.unwrap(), ledger_transactions(&t).await), before, "nothing changed");
    assert!(refund_posts(&fake).is_empty());
    assert!(d.refunds().await.unwrap().is_empty());

    d.stop_session(s.id, "stop").await.unwrap();
    let balance = 150_000 - spent;
    let view = d.close_account("close-2").await.unwrap();
    assert_eq!(view.remaining_balance, 0, "{view:?}");
    let amounts: Vec<i64> = view.refunds.iter().map(|r| r.amount).collect();
    assert_eq!(amounts, vec![100_000, balance - 100_000], "newest top-up first: {view:?}");
    assert!(view.refunds.iter().all(|r| r.reason == "account_closed"), "{view:?}");
    let newest = fake_refunds(&fake, &topups[1]);
    let oldest = fake_refunds(&fake, &topups[0]);
    assert_eq!(newest.iter().map(|r| r["amount"].as_i64().unwrap()).collect::<Vec<_>>(), vec![100_000]);
    assert_eq!(oldest.iter().map(|r| r["amount"].as_i64().unwrap()).collect::<Vec<_>>(), vec![balance - 100_000]);
    assert!(
        refund_posts(&fake).iter().all(|p| p.key.as_deref().is_some_and(|k| k.starts_with("refund-"))),
        "{:?}",
        refund_posts(&fake)
    );
    // Every token is revoked; the wallet is empty.
    let (status, code, ..) = api_error(d.wallet().await);
    assert_eq!((status, code.as_str()), (401, "unauthorized"));
    let (status, _) = raw(reqwest::Client::new().get(t.url("/v1/me/cards")).bearer_auth(&token)).await;
    assert_eq!(status, 401);
    assert_eq!(balance_of(&t, me).await, 0);
    assert_money_sound(&t).await;
    let first = newest[0]["id"].as_str().unwrap();
    assert_eq!(event(&t, &fake, "evt_close_created", "refund.created", fake.refund(first)).await, "updated");
    assert_money_sound(&t).await;
    for (i, re) in newest.iter().chain(oldest.iter()).enumerate() {
        let id = re["id"].as_str().unwrap();
        assert_eq!(settle_refund(&t, &fake, id, true, &format!("evt_close_{i}")).await, "refunded");
    }
    assert_eq!(balance_of(&t, me).await, 0);
    assert_money_sound(&t).await;
});

both!(closing_with_a_card_payment_awaiting_3ds_never_parks_the_closed_account, |t, fake| {
    let d = t.driver("0912300101").await;
    let card = save_card(&t, &fake, &d, FakeCard::Requires3ds, "setup").await;
    let ch = pending(d.start_session_by_card(&by_card("HK013", "30A13002", 1, card.id), "3ds").await);
    // Closing is refused while the driver is authenticating, and nothing changes: the
    // account stays open, and the payment, once authenticated, parks the car.
    match d.close_account("close").await {
        Err(ClientError::Api { status, error }) => {
            assert_eq!((status, error.code.as_str()), (409, "payment_in_progress"), "{error:?}");
        }
        other => panic!("closing with a card payment awaiting 3-D Secure must be refused: {other:?}"),
    }
    d.wallet().await.expect("the account is still open: its token works");
    let pi = ch.intent_id.clone().unwrap();
    fake.authenticate(&pi, true);
    event(&t, &fake, "evt_after_refusal", "payment_intent.succeeded", fake.payment_intent(&pi)).await;
    assert_eq!(active_with_plate(&t, "30A13002").await, 1, "the authenticated payment parks the car");
    assert_money_sound(&t).await;
});

// ---- 13. webhooks ------------------------------------------------------------------------------

both!(webhooks_for_unknown_refunds_and_orphan_top_ups, |t, fake| {
    let phone = "0912300110";
    let d = t.driver(phone).await;
    let me = driver_id(&t, phone).await;
    // A refund we never made: acknowledged, nothing changed.
    let pi = intent_at_fake(&fake, 20_000, &[], true).await;
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/refunds", fake.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("payment_intent={pi}"))
        .send()
        .await
        .unwrap();
    let re: Value = resp.json().await.unwrap();
    let re = re["id"].as_str().unwrap().to_owned();
    let ledger = ledger_transactions(&t).await;
    assert_eq!(settle_refund(&t, &fake, &re, true, "evt_unknown_ok").await, "unknown_refund");
    assert_eq!(event(&t, &fake, "evt_unknown_fail", "refund.failed", fake.refund(&re)).await, "unknown_refund");
    assert_eq!(ledger_transactions(&t).await, ledger);

    // A top-up Stripe took whose record we never wrote: our metadata names the driver.
    let orphan =
        intent_at_fake(&fake, 70_000, &[("purpose", "wallet_topup"), ("driver_id", &me.to_string())], true).await;
    assert_eq!(
        event(&t, &fake, "evt_orphan", "payment_intent.succeeded", fake.payment_intent(&orphan)).await,
        "credited"
    );
    assert_eq!(d.wallet().await.unwrap().balance, 70_000);
    assert_eq!(
        event(&t, &fake, "evt_orphan", "payment_intent.succeeded", fake.payment_intent(&orphan)).await,
        "duplicate"
    );
    event(&t, &fake, "evt_orphan_2", "payment_intent.succeeded", fake.payment_intent(&orphan)).await;
    assert_eq!(d.wallet().await.unwrap().balance, 70_000, "credited once");
    // One naming no driver of ours: nothing.
    let stranger = intent_at_fake(&fake, 30_000, &[("purpose", "wallet_topup"), ("driver_id", "999999")], true).await;
    assert_eq!(
        event(&t, &fake, "evt_stranger", "payment_intent.succeeded", fake.payment_intent(&stranger)).await,
        "unknown_intent"
    );
    assert_money_sound(&t).await;
});

both!(a_refund_event_naming_our_refund_but_another_stripe_refund_changes_nothing, |t, fake| {
    let d = t.driver("0912300111").await;
    let card = save_card(&t, &fake, &d, FakeCard::Ok, "setup").await;
    let s = paid(d.start_session_by_card(&by_card("HK014", "30A14001", 3, card.id), "start").await);
    d.stop_session(s.id, "stop").await.unwrap();
    let ours = d.refunds().await.unwrap()[0].clone();
    assert_eq!(ours.status, "submitted");
    // Another Stripe refund (not the one we submitted) carrying our refund's metadata.
    let pi = intent_at_fake(&fake, 50_000, &[], true).await;
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/refunds", fake.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("payment_intent={pi}&metadata%5Brefund_id%5D={}", ours.id))
        .send()
        .await
        .unwrap();
    let other: Value = resp.json().await.unwrap();
    let other = other["id"].as_str().unwrap().to_owned();
    let ledger = ledger_transactions(&t).await;
    let outcome = settle_refund(&t, &fake, &other, false, "evt_other_re").await;
    // An event about another Stripe refund that carries our metadata never settles ours.
    assert_eq!(
        (outcome.as_str(), d.refunds().await.unwrap()[0].status.as_str(), ledger_transactions(&t).await),
        ("unknown_refund", "submitted", ledger),
        "an event about a Stripe refund other than the one our refund was submitted as must not settle our refund"
    );
    assert_eq!(d.wallet().await.unwrap().balance, 0);
    assert_money_sound(&t).await;
});

both!(badly_signed_card_events_are_refused_and_change_nothing, |t, fake| {
    let d = t.driver("0912300112").await;
    let ok_card = save_card(&t, &fake, &d, FakeCard::Ok, "setup-ok").await;
    let card = save_card(&t, &fake, &d, FakeCard::Requires3ds, "setup-3ds").await;
    // A setup, a 3-D Secure success and a refund, each with a wrong, a stale and no signature.
    let setup = d.create_card_setup("setup-x").await.unwrap();
    fake.complete_setup(&setup.setup_id, FakeCard::Lost);
    let ch = pending(d.start_session_by_card(&by_card("HK015", "30A15001", 1, card.id), "3ds").await);
    let pi = ch.intent_id.clone().unwrap();
    fake.authenticate(&pi, true);
    let s = paid(d.start_session_by_card(&by_card("HK015", "30A15002", 3, ok_card.id), "ok").await);
    d.stop_session(s.id, "stop").await.unwrap();
    let session_pi = session_intent(&t, s.id).await;
    let re = fake_refunds(&fake, &session_pi)[0]["id"].as_str().unwrap().to_owned();
    fake.settle_refund(&re, true);
    let objects = [
        ("evt_bad_setup", "setup_intent.succeeded", fake.setup_intent(&setup.setup_id), "card_saved"),
        ("evt_bad_pi", "payment_intent.succeeded", fake.payment_intent(&pi), "applied"),
        ("evt_bad_re", "refund.updated", fake.refund(&re), "refunded"),
    ];
    let ledger = ledger_transactions(&t).await;
    for (id, kind, object, _) in &objects {
        let (payload, _) = fake.event_object(id, kind, object.clone(), WHSEC, None);
        let (_, wrong) = fake.event_object(id, kind, object.clone(), "whsec_other", None);
        let stale_at = chrono::Utc::now().timestamp() - 600;
        let (stale_payload, stale) = fake.event_object(id, kind, object.clone(), WHSEC, Some(stale_at));
        assert_error(&deliver(&t, &payload, Some(&wrong)).await, 400, "invalid_signature");
        assert_error(&deliver(&t, &stale_payload, Some(&stale)).await, 400, "invalid_signature");
        assert_error(&deliver(&t, &payload, None).await, 400, "invalid_signature");
    }
    assert_eq!(d.cards().await.unwrap().len(), 2, "no card saved");
    assert_eq!(d.card_charge(ch.id).await.unwrap().status, "requires_action", "no session started");
    assert_eq!(d.refunds().await.unwrap()[0].status, "submitted", "no refund settled");
    assert_eq!(ledger_transactions(&t).await, ledger);
    // The genuine events still work (the refused ones were not recorded).
    for (id, kind, object, outcome) in objects {
        assert_eq!(event(&t, &fake, id, kind, object).await, outcome, "{kind}");
    }
    assert_eq!(d.cards().await.unwrap().len(), 3);
    assert_money_sound(&t).await;
});

// ---- 14. settlement import -------------------------------------------------------------------

async fn rows(t: &TestApp, table: &str) -> i64 {
    t.sql_i64(&format!("SELECT COUNT(*) FROM {table}")).await
}

async fn import(t: &TestApp, token: &str) -> (u16, Value) {
    admin_post(t, token, "/v1/admin/settlement/import").await
}

both!(settlement_import_pages_resumes_and_upserts, |t, fake| {
    let finance = staff_token(&t, StaffRole::Finance, &[]).await;
    // 120 balance transactions, then, ten days later, recent ones and payouts.
    for i in 0..120 {
        fake.add_balance_transaction("charge", 10_000 + i, 300, Some(&format!("ch_old_{i}")));
    }
    fake.advance(10 * 86_400);
    for i in 0..10 {
        fake.add_balance_transaction("charge", 20_000 + i, 600, Some(&format!("ch_new_{i}")));
    }
    // A card payment: its charge's funds are pending for two days.
    let paid_pi = intent_at_fake(&fake, 30_000, &[], true).await;
    let paid_ch = fake.payment_intent(&paid_pi)["latest_charge"].as_str().unwrap().to_owned();
    let po1 = fake.add_payout(500_000);
    let po2 = fake.add_payout(700_000);
    let total_txns = fake.state.balance_transactions.lock().unwrap().len() as i64;
    assert_eq!(total_txns, 133);
    let newest = fake.state.balance_transactions.lock().unwrap().iter().filter_map(|b| b["created"].as_i64()).max();
    let newest = newest.unwrap();

    // Page 1 is stored, then Stripe fails on page 2: 503, page 1 kept with the cursor.
    let lists_before = fake.state.list_calls.load(Ordering::SeqCst);
    *fake.state.delay.lock().unwrap() = StdDuration::from_millis(500);
    fake.state.delay_next.store(1, Ordering::SeqCst);
    let run = {
        let (url, token) = (t.url("/v1/admin/settlement/import"), finance.clone());
        tokio::spawn(async move { raw(reqwest::Client::new().post(url).bearer_auth(token)).await })
    };
    let deadline = std::time::Instant::now() + StdDuration::from_secs(10);
    while fake.state.list_calls.load(Ordering::SeqCst) == lists_before {
        assert!(std::time::Instant::now() < deadline, "the import never listed");
        tokio::time::sleep(StdDuration::from_millis(2)).await;
    }
    fake.state.fail_next.store(3, Ordering::SeqCst);
    let (status, body) = run.await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(rows(&t, "stripe_balance_transactions").await, 100, "the first page is kept");
    assert_eq!(rows(&t, "stripe_payouts").await, 0);
    let cursor = t.sql_text("SELECT cursor FROM stripe_import_state WHERE kind = 'balance_transactions'").await;
    assert!(cursor.is_some(), "the run's cursor is stored");

    // The next run resumes after page 1.
    let (status, report) = import(&t, &finance).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!((report["balance_transactions"].as_i64(), report["payouts"].as_i64()), (Some(33), Some(2)), "{report}");
    let bt_lists = calls(&fake, "GET", "/v1/balance_transactions");
    let resumed = &bt_lists[bt_lists.len() - 1];
    assert_eq!(resumed.params.get("starting_after"), cursor.as_ref(), "{resumed:?}");
    assert_eq!(rows(&t, "stripe_balance_transactions").await, total_txns);
    assert_eq!(rows(&t, "stripe_payouts").await, 2);
    assert!(bt_lists.iter().all(|c| c.params.get("limit").map(String::as_str) == Some("100")), "{bt_lists:?}");
    let stored = t.sql_text(&format!("SELECT status FROM stripe_payouts WHERE id = '{po1}'")).await;
    assert_eq!(stored.as_deref(), Some("paid"));
    let fee = t.sql_i64("SELECT fee FROM stripe_balance_transactions WHERE source = 'ch_new_3'").await;
    assert_eq!(fee, 600);

    let status_of = |id: &str| format!("SELECT status FROM stripe_balance_transactions WHERE source = '{id}'");
    assert_eq!(t.sql_text(&status_of(&paid_ch)).await.as_deref(), Some("pending"));

    // Two days later, new objects: the next run lists from 3 days before the newest seen,
    // picking up status changes and upserting.
    fake.advance(2 * 86_400 + 3600);
    for i in 0..3 {
        fake.add_balance_transaction("refund", -(5_000 + i), 0, Some(&format!("re_x_{i}")));
    }
    let po3 = fake.add_payout(100_000);
    let (status, report) = import(&t, &finance).await;
    assert_eq!(status, 200, "{report}");
    // The 13 recent ones again (lookback) and the 4 new: never the 120 old ones.
    assert_eq!((report["balance_transactions"].as_i64(), report["payouts"].as_i64()), (Some(17), Some(3)), "{report}");
    assert_eq!(t.sql_text(&status_of(&paid_ch)).await.as_deref(), Some("available"), "status changes picked up");
    let last = calls(&fake, "GET", "/v1/balance_transactions").last().cloned().unwrap();
    let gte: i64 = last.params.get("created[gte]").and_then(|g| g.parse().ok()).expect("created[gte]");
    assert_eq!(gte, newest - 3 * 86_400, "the run starts 3 days before the newest object seen");
    assert_eq!(rows(&t, "stripe_balance_transactions").await, total_txns + 4, "upserted, never duplicated");
    assert_eq!(rows(&t, "stripe_payouts").await, 3);
    assert!(t.sql_text(&format!("SELECT id FROM stripe_payouts WHERE id = '{po3}'")).await.is_some());
    assert!(t.sql_text(&format!("SELECT id FROM stripe_payouts WHERE id = '{po2}'")).await.is_some());
    // Nothing new: the same rows again.
    let (status, _) = import(&t, &finance).await;
    assert_eq!(status, 200);
    assert_eq!(rows(&t, "stripe_balance_transactions").await, total_txns + 4);
});

// ---- 15. the sandbox ---------------------------------------------------------------------------

async fn sandbox_cards(db: Db, live: Live) {
    let opts = Options { payments: Some(Arc::new(SandboxGateway)), ..Options::default() };
    let t = TestApp::start_with(db, live, opts).await;
    let d = t.driver("0912300120").await;
    let setup = d.create_card_setup("sb").await.unwrap();
    assert_eq!((setup.gateway.as_str(), setup.sandbox, setup.status.as_str()), ("sandbox", true, "succeeded"));
    let card = setup.card.clone().expect("a play card saved at once");
    assert_eq!(card.brand, "sandbox");
    assert_eq!(d.cards().await.unwrap(), vec![card.clone()]);
    assert_eq!(d.create_card_setup("sb").await.unwrap(), setup, "replayed");
    assert_eq!(d.cards().await.unwrap().len(), 1);
    let s = paid(d.start_session_by_card(&by_card("HK016", "30A16001", 3, card.id), "start").await);
    assert_eq!((s.turns, s.amount_charged), (3, price(&t, &s, 3)));
    assert_eq!(d.wallet().await.unwrap().balance, 0);
    let ext = paid(d.extend_session_by_card(s.id, &extend_by_card(1, card.id), "ext").await);
    assert_eq!((ext.turns, ext.amount_charged), (4, price(&t, &s, 4)));
    let stopped = d.stop_session(s.id, "stop").await.unwrap();
    assert_eq!(stopped.amount_refunded, price(&t, &s, 4) - price(&t, &s, 1));
    let refunds = d.refunds().await.unwrap();
    assert!(!refunds.is_empty());
    assert!(refunds.iter().all(|r| r.status == "succeeded"), "{refunds:?}");
    assert_eq!(refunds.iter().map(|r| r.amount).sum::<i64>(), stopped.amount_refunded);
    assert_money_sound(&t).await;
    d.remove_card(card.id).await.unwrap();
    assert!(d.cards().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_saves_play_cards_and_pays_at_once_sqlite_memory() {
    sandbox_cards(Db::Sqlite, Live::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_saves_play_cards_and_pays_at_once_postgres_redis() {
    sandbox_cards(Db::Postgres, Live::Redis).await;
}
