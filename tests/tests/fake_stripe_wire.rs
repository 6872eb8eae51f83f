//! The fake Stripe speaks Stripe's wire format: every endpoint through raw HTTP and through the
//! real async-stripe client (so each answer, errors included, deserializes into its types),
//! idempotency-key replays, scripted faults, the clock, and signed events.

use std::{
    collections::HashMap,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use iparking_tests::fake_stripe::{FakeCard, FakeStripe};
use serde_json::Value;
use stripe::{Client, ClientBuilder, StripeError};
use stripe_client_core::{IdempotencyKey, RequestStrategy, StripeRequest};
use stripe_core::{
    balance_transaction::ListBalanceTransaction,
    customer::CreateCustomer,
    payment_intent::{
        CancelPaymentIntent, CreatePaymentIntent, CreatePaymentIntentAutomaticPaymentMethods,
        CreatePaymentIntentAutomaticPaymentMethodsAllowRedirects, CreatePaymentIntentOffSession, ListPaymentIntent,
        RetrievePaymentIntent,
    },
    payout::ListPayout,
    refund::CreateRefund,
    setup_intent::{CreateSetupIntent, CreateSetupIntentUsage, RetrieveSetupIntent},
};
use stripe_payment::payment_method::DetachPaymentMethod;
use stripe_shared::ApiErrors;
use stripe_types::{Currency, RangeQueryTs, Timestamp};
use stripe_webhook::{EventObject, Webhook};

const WHSEC: &str = "whsec_wire";

fn client(fake: &FakeStripe) -> Client {
    iparking_mobile_api::install_tls_provider();
    ClientBuilder::new("sk_test_fake").url(&fake.base).build().unwrap()
}

fn client_with_timeout(fake: &FakeStripe, timeout: Duration) -> Client {
    iparking_mobile_api::install_tls_provider();
    ClientBuilder::new("sk_test_fake").url(&fake.base).timeout(timeout).build().unwrap()
}

fn http() -> reqwest::Client {
    iparking_mobile_api::install_tls_provider();
    reqwest::Client::new()
}

fn key(k: &str) -> RequestStrategy {
    RequestStrategy::Idempotent(IdempotencyKey::new(k).unwrap())
}

fn meta(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// A raw POST: (status, body, `Idempotent-Replayed` header).
async fn post(fake: &FakeStripe, path: &str, form: &[(&str, &str)], key: Option<&str>) -> (u16, Value, bool) {
    fn enc(s: &str) -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    }
    let body: Vec<String> = form.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect();
    let mut req = http()
        .post(format!("{}{path}", fake.base))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body.join("&"));
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let replayed = res.headers().get("idempotent-replayed").is_some_and(|v| v == "true");
    (status, res.json().await.unwrap(), replayed)
}

/// A raw GET: (status, body).
async fn get(fake: &FakeStripe, path_and_query: &str) -> (u16, Value) {
    let res = http().get(format!("{}{path_and_query}", fake.base)).send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

fn stripe_err(e: StripeError) -> (Box<ApiErrors>, u16) {
    match e {
        StripeError::Stripe(api, status) => (api, status),
        other => panic!("expected a Stripe error, got {other:?}"),
    }
}

/// A customer with a saved card that charges like `card`: (customer, payment method).
async fn saved_card(fake: &FakeStripe, c: &Client, card: FakeCard) -> (String, String) {
    let cus = CreateCustomer::new().metadata(meta(&[("driver_id", "7")])).send(c).await.unwrap();
    let si = CreateSetupIntent::new()
        .customer(cus.id.as_str())
        .usage(CreateSetupIntentUsage::OffSession)
        .send(c)
        .await
        .unwrap();
    let pm = fake.complete_setup(si.id.as_str(), card);
    (cus.id.to_string(), pm)
}

/// The adapter's off-session charge.
fn charge(customer: &str, pm: &str, amount: i64) -> CreatePaymentIntent {
    CreatePaymentIntent::new(amount, Currency::VND)
        .customer(customer)
        .payment_method(pm)
        .confirm(true)
        .off_session(CreatePaymentIntentOffSession::Bool(true))
        .automatic_payment_methods(CreatePaymentIntentAutomaticPaymentMethods {
            allow_redirects: Some(CreatePaymentIntentAutomaticPaymentMethodsAllowRedirects::Never),
            enabled: true,
        })
        .metadata(meta(&[("charge_id", "5")]))
}

#[tokio::test]
async fn customers_setup_intents_and_payment_methods() {
    let fake = FakeStripe::start().await;
    let c = client(&fake);
    fake.set_now(1_800_000_000);

    // A customer, with an idempotency key: the retry answers the same customer.
    let create = CreateCustomer::new().description("iParking driver 7").metadata(meta(&[("driver_id", "7")]));
    let cus = create.customize().request_strategy(key("cus-7")).send(&c).await.unwrap();
    assert!(cus.id.as_str().starts_with("cus_fake_"), "{}", cus.id);
    // From the clock set (which runs on with the wall clock: a loaded machine may pass a
    // second before the request), never later than the clock now.
    assert!((1_800_000_000..=fake.now()).contains(&cus.created), "created {}", cus.created);
    assert_eq!(cus.metadata.as_ref().unwrap()["driver_id"], "7");
    assert_eq!(cus.description.as_deref(), Some("iParking driver 7"));
    let again = create.customize().request_strategy(key("cus-7")).send(&c).await.unwrap();
    assert_eq!(again.id, cus.id);
    assert_eq!(fake.state.customers.lock().unwrap().len(), 1);
    // The same key with other parameters: idempotency_error.
    let other = CreateCustomer::new().metadata(meta(&[("driver_id", "8")]));
    let (api, status) = stripe_err(other.customize().request_strategy(key("cus-7")).send(&c).await.unwrap_err());
    assert_eq!((status, api.type_.as_str()), (400, "idempotency_error"));
    {
        let calls = fake.state.calls.lock().unwrap();
        let first = &calls[0];
        assert_eq!((first.method.as_str(), first.path.as_str()), ("POST", "/v1/customers"));
        assert_eq!(first.key.as_deref(), Some("cus-7"));
        assert_eq!(first.params["metadata[driver_id]"], "7");
    }

    // A setup intent for that customer.
    let si = CreateSetupIntent::new()
        .customer(cus.id.as_str())
        .usage(CreateSetupIntentUsage::OffSession)
        .metadata(meta(&[("purpose", "save_card")]))
        .customize()
        .request_strategy(key("seti-7"))
        .send(&c)
        .await
        .unwrap();
    assert!(si.id.as_str().starts_with("seti_fake_"));
    assert_eq!(si.status.as_str(), "requires_payment_method");
    assert_eq!(si.client_secret.as_deref(), Some(format!("{}_secret_test", si.id).as_str()));
    assert_eq!(si.customer.as_ref().map(|c| c.id().to_string()), Some(cus.id.to_string()));
    assert_eq!(si.usage, "off_session");
    assert!(si.payment_method.is_none());
    let seen = RetrieveSetupIntent::new(si.id.as_str()).send(&c).await.unwrap();
    assert_eq!(seen.status.as_str(), "requires_payment_method");

    // The driver enters a card in the app.
    let pm = fake.complete_setup(si.id.as_str(), FakeCard::Ok);
    assert!(pm.starts_with("pm_fake_"));
    assert_eq!(fake.setup_intent(si.id.as_str())["status"], "succeeded");
    // Without expand: the payment method's id; with: the object.
    let plain = RetrieveSetupIntent::new(si.id.as_str()).send(&c).await.unwrap();
    assert_eq!(plain.status.as_str(), "succeeded");
    assert!(plain.payment_method.as_ref().is_some_and(|p| !p.is_object() && p.id().as_str() == pm));
    let full =
        RetrieveSetupIntent::new(si.id.as_str()).expand(vec!["payment_method".to_owned()]).send(&c).await.unwrap();
    let obj = full.payment_method.as_ref().and_then(|p| p.as_object()).expect("expanded");
    let card = obj.card.as_ref().unwrap();
    assert_eq!((card.brand.as_str(), card.last4.as_str(), card.exp_month, card.exp_year), ("visa", "4242", 12, 2030));
    assert_eq!(obj.customer.as_ref().map(|c| c.id().to_string()), Some(cus.id.to_string()));
    assert_eq!(obj.type_.as_str(), "card");
    let (status, raw) = get(&fake, &format!("/v1/setup_intents/{}?expand[0]=payment_method", si.id)).await;
    assert_eq!((status, raw["payment_method"]["card"]["last4"].as_str()), (200, Some("4242")));
    let (status, raw) = get(&fake, "/v1/setup_intents/seti_nope").await;
    assert_eq!((status, raw["error"]["code"].as_str()), (404, Some("resource_missing")));
    for (card, last4) in [(FakeCard::Declined, "9995"), (FakeCard::Requires3ds, "3184"), (FakeCard::Lost, "9987")] {
        let (_, pm) = saved_card(&fake, &c, card).await;
        assert_eq!(fake.state.payment_methods.lock().unwrap()[&pm]["card"]["last4"], last4);
    }

    // Detaching: the customer is gone, the card is recorded, and charging it fails.
    let detached = DetachPaymentMethod::new(pm.as_str()).send(&c).await.unwrap();
    assert_eq!(detached.id.as_str(), pm);
    assert!(detached.customer.is_none());
    assert_eq!(*fake.state.detached.lock().unwrap(), vec![pm.clone()]);
    let (api, status) = stripe_err(DetachPaymentMethod::new(pm.as_str()).send(&c).await.unwrap_err());
    assert_eq!((status, api.type_.as_str()), (400, "invalid_request_error"));
    let (api, status) = stripe_err(charge(cus.id.as_str(), &pm, 10_000).send(&c).await.unwrap_err());
    assert_eq!((status, api.type_.as_str()), (400, "invalid_request_error"));
    assert_eq!(api.code.as_ref().map(|c| c.as_str()), Some("resource_missing"));
    assert!(api.payment_intent.is_none());
    let (api, status) = stripe_err(DetachPaymentMethod::new("pm_nope").send(&c).await.unwrap_err());
    assert_eq!((status, api.code.as_ref().map(|c| c.as_str())), (404, Some("resource_missing")));

    // Unknown customers are refused.
    let (api, status) = stripe_err(CreateSetupIntent::new().customer("cus_nope").send(&c).await.unwrap_err());
    assert_eq!((status, api.code.as_ref().map(|c| c.as_str())), (400, Some("resource_missing")));
}

#[tokio::test]
async fn off_session_charges_by_card() {
    let fake = FakeStripe::start().await;
    let c = client(&fake);

    // A good card: succeeded at once, with a charge and a pending balance transaction.
    let (cus, pm) = saved_card(&fake, &c, FakeCard::Ok).await;
    let pi = charge(&cus, &pm, 10_000).customize().request_strategy(key("charge-1")).send(&c).await.unwrap();
    assert_eq!(pi.status.as_str(), "succeeded");
    assert_eq!((pi.amount, pi.amount_received), (10_000, 10_000));
    let ch = pi.latest_charge.as_ref().map(|c| c.id().to_string()).unwrap();
    assert!(ch.starts_with("ch_fake_"));
    assert_eq!(pi.customer.as_ref().map(|c| c.id().to_string()), Some(cus.clone()));
    assert_eq!(pi.payment_method.as_ref().map(|p| p.id().to_string()), Some(pm.clone()));
    assert_eq!(pi.metadata["charge_id"], "5");
    {
        let requests = fake.state.requests.lock().unwrap();
        let (k, form) = requests.last().unwrap();
        assert_eq!(k.as_deref(), Some("charge-1"));
        assert_eq!((form["confirm"].as_str(), form["off_session"].as_str()), ("true", "true"));
        assert_eq!(form["payment_method"], pm);
        assert_eq!(form["metadata[charge_id]"], "5");
    }
    let txns = fake.state.balance_transactions.lock().unwrap().clone();
    let t = txns.last().unwrap();
    assert_eq!((t["type"].as_str(), t["source"].as_str()), (Some("charge"), Some(ch.as_str())));
    assert_eq!((t["amount"].as_i64(), t["fee"].as_i64(), t["net"].as_i64()), (Some(10_000), Some(300), Some(9_700)));
    assert_eq!((t["status"].as_str(), t["reporting_category"].as_str()), (Some("pending"), Some("charge")));
    assert_eq!(t["available_on"].as_i64().unwrap(), t["created"].as_i64().unwrap() + 2 * 86_400);
    // The retry answers the first answer: no second charge.
    let again = charge(&cus, &pm, 10_000).customize().request_strategy(key("charge-1")).send(&c).await.unwrap();
    assert_eq!(again.id, pi.id);
    assert_eq!(fake.state.balance_transactions.lock().unwrap().len(), txns.len());
    let got = RetrievePaymentIntent::new(pi.id.as_str()).send(&c).await.unwrap();
    assert_eq!((got.id.as_str(), got.status.as_str()), (pi.id.as_str(), "succeeded"));

    // Declined and lost cards: 402 card_error with the intent, which is stored.
    for (card, decline) in [(FakeCard::Declined, "insufficient_funds"), (FakeCard::Lost, "lost_card")] {
        let (cus, pm) = saved_card(&fake, &c, card).await;
        let k = format!("charge-{decline}");
        let request = charge(&cus, &pm, 20_000);
        let (api, status) = stripe_err(request.customize().request_strategy(key(&k)).send(&c).await.unwrap_err());
        assert_eq!(status, 402);
        assert_eq!(api.type_.as_str(), "card_error");
        assert_eq!(api.code.as_ref().map(|c| c.as_str()), Some("card_declined"));
        assert_eq!(api.decline_code.as_deref(), Some(decline));
        assert!(api.message.is_some());
        let pi = api.payment_intent.as_ref().expect("the intent comes with the error");
        assert_eq!(pi.status.as_str(), "requires_payment_method");
        let last = pi.last_payment_error.as_ref().unwrap();
        assert_eq!(last.decline_code.as_deref(), Some(decline));
        assert_eq!(fake.payment_intent(pi.id.as_str())["status"], "requires_payment_method");
        // Stripe replays the 402 for the same key.
        let (api2, status2) = stripe_err(request.customize().request_strategy(key(&k)).send(&c).await.unwrap_err());
        assert_eq!((status2, api2.payment_intent.as_ref().map(|p| p.id.clone())), (402, Some(pi.id.clone())));
    }
    // decline_next declines whatever the card.
    fake.state.decline_next.store(1, Ordering::SeqCst);
    let (api, status) = stripe_err(charge(&cus, &pm, 10_000).send(&c).await.unwrap_err());
    assert_eq!((status, api.decline_code.as_deref()), (402, Some("insufficient_funds")));
    assert!(api.payment_intent.is_some());

    // 3-D Secure off-session: 402 authentication_required with the intent and its secret.
    let (cus3, pm3) = saved_card(&fake, &c, FakeCard::Requires3ds).await;
    let (api, status) = stripe_err(charge(&cus3, &pm3, 30_000).send(&c).await.unwrap_err());
    assert_eq!(status, 402);
    assert_eq!(api.code.as_ref().map(|c| c.as_str()), Some("authentication_required"));
    assert_eq!(api.decline_code.as_deref(), Some("authentication_required"));
    assert_eq!(api.message.as_deref(), Some("This payment requires authentication."));
    let pi3 = api.payment_intent.clone().unwrap();
    assert_eq!(pi3.status.as_str(), "requires_payment_method");
    assert!(pi3.client_secret.is_some());
    // The driver authenticates in the app.
    fake.authenticate(pi3.id.as_str(), true);
    let done = RetrievePaymentIntent::new(pi3.id.as_str()).send(&c).await.unwrap();
    assert_eq!((done.status.as_str(), done.amount_received), ("succeeded", 30_000));
    assert!(done.latest_charge.is_some());
    // ... or the on-session behaviour: 200 requires_action.
    fake.state.three_ds_as_requires_action.store(true, Ordering::SeqCst);
    let pi4 = charge(&cus3, &pm3, 40_000).send(&c).await.unwrap();
    assert_eq!(pi4.status.as_str(), "requires_action");
    assert_eq!(pi4.next_action.as_ref().map(|n| n.type_.as_str()), Some("use_stripe_sdk"));
    fake.authenticate(pi4.id.as_str(), false);
    let failed = RetrievePaymentIntent::new(pi4.id.as_str()).send(&c).await.unwrap();
    assert_eq!(failed.status.as_str(), "requires_payment_method");
    assert_eq!(
        failed.last_payment_error.as_ref().and_then(|e| e.code.as_ref()).map(|c| c.as_str()),
        Some("payment_intent_authentication_failure")
    );
    assert!(failed.next_action.is_none());

    // Unknown intents: 404 resource_missing.
    let (api, status) = stripe_err(RetrievePaymentIntent::new("pi_nope").send(&c).await.unwrap_err());
    assert_eq!((status, api.code.as_ref().map(|c| c.as_str())), (404, Some("resource_missing")));
    // A payment method of another customer, and an unknown one.
    let (api, status) = stripe_err(charge(&cus, &pm3, 10_000).send(&c).await.unwrap_err());
    assert_eq!((status, api.type_.as_str()), (400, "invalid_request_error"));
    let (api, status) = stripe_err(charge(&cus, "pm_nope", 10_000).send(&c).await.unwrap_err());
    assert_eq!((status, api.code.as_ref().map(|c| c.as_str())), (400, Some("resource_missing")));
}

#[tokio::test]
async fn topups_cancel_and_list_intents() {
    let fake = FakeStripe::start().await;
    let c = client(&fake);
    // A top-up (no confirm): requires_payment_method, as before.
    let topup = CreatePaymentIntent::new(50_000, Currency::VND)
        .metadata(meta(&[("purpose", "wallet_topup")]))
        .send(&c)
        .await
        .unwrap();
    assert_eq!(topup.status.as_str(), "requires_payment_method");
    assert!(topup.client_secret.as_deref().is_some_and(|s| s.contains("_secret_")));
    let cancelled = CancelPaymentIntent::new(topup.id.as_str())
        .customize()
        .request_strategy(key(&format!("cancel-{}", topup.id)))
        .send(&c)
        .await
        .unwrap();
    assert_eq!(cancelled.status.as_str(), "canceled");
    assert!(cancelled.canceled_at.is_some());
    // The retry with the same key replays; another cancel is refused.
    let again = CancelPaymentIntent::new(topup.id.as_str())
        .customize()
        .request_strategy(key(&format!("cancel-{}", topup.id)))
        .send(&c)
        .await
        .unwrap();
    assert_eq!(again.status.as_str(), "canceled");
    let (api, status) = stripe_err(CancelPaymentIntent::new(topup.id.as_str()).send(&c).await.unwrap_err());
    assert_eq!((status, api.code.as_ref().map(|c| c.as_str())), (400, Some("payment_intent_unexpected_state")));
    let (cus, pm) = saved_card(&fake, &c, FakeCard::Ok).await;
    let paid = charge(&cus, &pm, 10_000).send(&c).await.unwrap();
    let (api, status) = stripe_err(CancelPaymentIntent::new(paid.id.as_str()).send(&c).await.unwrap_err());
    assert_eq!((status, api.code.as_ref().map(|c| c.as_str())), (400, Some("payment_intent_unexpected_state")));
    let (api, status) = stripe_err(CancelPaymentIntent::new("pi_nope").send(&c).await.unwrap_err());
    assert_eq!((status, api.code.as_ref().map(|c| c.as_str())), (404, Some("resource_missing")));

    // Lists: newest first, by customer and creation time, in pages.
    let t0 = fake.now() + 100;
    fake.set_now(t0);
    let mut ids = Vec::new();
    for i in 0..5 {
        let pi = charge(&cus, &pm, 10_000 + i).send(&c).await.unwrap();
        ids.push(pi.id.to_string());
    }
    let (other, other_pm) = saved_card(&fake, &c, FakeCard::Ok).await;
    charge(&other, &other_pm, 10_000).send(&c).await.unwrap();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut request =
            ListPaymentIntent::new().customer(cus.as_str()).created(RangeQueryTs::gte(Timestamp::from(t0))).limit(2);
        if let Some(a) = &after {
            request = request.starting_after(a.clone());
        }
        let page = request.send(&c).await.unwrap();
        pages += 1;
        assert_eq!(page.url, "/v1/payment_intents");
        seen.extend(page.data.iter().map(|pi| pi.id.to_string()));
        after = page.data.last().map(|pi| pi.id.to_string());
        if !page.has_more {
            break;
        }
    }
    ids.reverse();
    assert_eq!((seen, pages), (ids.clone(), 3), "newest first, the older `paid` one filtered out");
    {
        let calls = fake.state.calls.lock().unwrap();
        let list = calls.iter().rfind(|c| c.method == "GET" && c.path == "/v1/payment_intents").unwrap();
        assert_eq!(list.params["customer"], cus);
        assert_eq!(list.params["created[gte]"], t0.to_string());
        assert_eq!(list.params["limit"], "2");
        assert_eq!(list.params["starting_after"], ids[3]);
    }
    let (status, raw) = get(&fake, &format!("/v1/payment_intents?customer={cus}&limit=100")).await;
    assert_eq!((status, raw["object"].as_str(), raw["has_more"].as_bool()), (200, Some("list"), Some(false)));
    assert_eq!(raw["data"].as_array().unwrap().len(), 6);
    let (status, raw) = get(&fake, "/v1/payment_intents?limit=101").await;
    assert_eq!((status, raw["error"]["type"].as_str()), (400, Some("invalid_request_error")));
    let (status, raw) = get(&fake, "/v1/payment_intents?starting_after=pi_nope").await;
    assert_eq!((status, raw["error"]["code"].as_str()), (400, Some("resource_missing")));
    let (status, raw) =
        get(&fake, &format!("/v1/payment_intents?customer={cus}&ending_before={}&limit=2", ids[2])).await;
    let before: Vec<&str> = raw["data"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!((status, before), (200, vec![ids[0].as_str(), ids[1].as_str()]));
}

#[tokio::test]
async fn refunds() {
    let fake = FakeStripe::start().await;
    let c = client(&fake);
    let (cus, pm) = saved_card(&fake, &c, FakeCard::Ok).await;
    let pi = charge(&cus, &pm, 10_000).send(&c).await.unwrap();
    let ch = pi.latest_charge.as_ref().unwrap().id().to_string();

    let request =
        CreateRefund::new().payment_intent(pi.id.as_str()).amount(4_000).metadata(meta(&[("refund_id", "1")]));
    let re = request.customize().request_strategy(key("refund-1")).send(&c).await.unwrap();
    assert!(re.id.as_str().starts_with("re_fake_"));
    assert_eq!((re.amount, re.status.as_deref()), (4_000, Some("pending")));
    assert_eq!(re.charge.as_ref().map(|c| c.id().to_string()), Some(ch));
    assert_eq!(re.payment_intent.as_ref().map(|p| p.id().to_string()), Some(pi.id.to_string()));
    assert_eq!(re.metadata.as_ref().unwrap()["refund_id"], "1");
    assert_eq!(re.currency, Currency::VND);
    let again = request.customize().request_strategy(key("refund-1")).send(&c).await.unwrap();
    assert_eq!(again.id, re.id);
    assert_eq!(fake.state.refunds.lock().unwrap().len(), 1);
    {
        let requests = fake.state.refund_requests.lock().unwrap();
        assert_eq!(requests.len(), 2);
        let (k, form) = &requests[0];
        assert_eq!(k.as_deref(), Some("refund-1"));
        assert_eq!((form["payment_intent"].as_str(), form["amount"].as_str()), (pi.id.as_str(), "4000"));
        assert_eq!(form["metadata[refund_id]"], "1");
    }
    // More than what is left: amount_too_large.
    let (api, status) =
        stripe_err(CreateRefund::new().payment_intent(pi.id.as_str()).amount(6_001).send(&c).await.unwrap_err());
    assert_eq!((status, api.code.as_ref().map(|c| c.as_str())), (400, Some("amount_too_large")));
    // A failed refund gives its amount back.
    fake.settle_refund(re.id.as_str(), false);
    let failed = fake.refund(re.id.as_str());
    assert_eq!(
        (failed["status"].as_str(), failed["failure_reason"].as_str()),
        (Some("failed"), Some("expired_or_canceled_card"))
    );
    let full = CreateRefund::new().payment_intent(pi.id.as_str()).amount(10_000).send(&c).await.unwrap();
    fake.settle_refund(full.id.as_str(), true);
    let settled = fake.refund(full.id.as_str());
    assert_eq!(settled["status"], "succeeded");
    let txn = fake.state.balance_transactions.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        (txn["type"].as_str(), txn["amount"].as_i64(), txn["net"].as_i64()),
        (Some("refund"), Some(-10_000), Some(-10_000))
    );
    assert_eq!((txn["source"].as_str(), txn["reporting_category"].as_str()), (Some(full.id.as_str()), Some("refund")));
    assert_eq!(settled["balance_transaction"], txn["id"]);
    let (api, status) =
        stripe_err(CreateRefund::new().payment_intent(pi.id.as_str()).amount(1).send(&c).await.unwrap_err());
    assert_eq!((status, api.code.as_ref().map(|c| c.as_str())), (400, Some("amount_too_large")));
    // An intent that did not succeed cannot be refunded; an unknown one does not exist.
    let topup = CreatePaymentIntent::new(50_000, Currency::VND).send(&c).await.unwrap();
    let (api, status) =
        stripe_err(CreateRefund::new().payment_intent(topup.id.as_str()).amount(1).send(&c).await.unwrap_err());
    assert_eq!((status, api.type_.as_str()), (400, "invalid_request_error"));
    let (api, status) = stripe_err(CreateRefund::new().payment_intent("pi_nope").send(&c).await.unwrap_err());
    assert_eq!((status, api.code.as_ref().map(|c| c.as_str())), (400, Some("resource_missing")));
}

#[tokio::test]
async fn balance_transactions_and_payouts() {
    let fake = FakeStripe::start().await;
    let c = client(&fake);
    let t0 = 1_900_000_000;
    fake.set_now(t0 - 10);
    let early = fake.add_balance_transaction("adjustment", -500, 0, None);
    fake.set_now(t0);
    let (cus, pm) = saved_card(&fake, &c, FakeCard::Ok).await;
    let pi = charge(&cus, &pm, 100_000).send(&c).await.unwrap();
    let po = fake.add_payout(90_000);
    let fee = fake.add_balance_transaction("stripe_fee", -1_000, 0, None);
    assert!(po.starts_with("po_fake_") && fee.starts_with("txn_fake_") && early.starts_with("txn_fake_"));

    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut request = ListBalanceTransaction::new().created(RangeQueryTs::gte(Timestamp::from(t0))).limit(2);
        if let Some(a) = &after {
            request = request.starting_after(a.clone());
        }
        let page = request.send(&c).await.unwrap();
        assert_eq!(page.url, "/v1/balance_transactions");
        seen.extend(page.data.iter().map(|t| {
            (t.type_.as_str().to_owned(), t.amount, t.fee, t.net, t.source.as_ref().map(|s| s.id().to_string()))
        }));
        after = page.data.last().map(|t| t.id.to_string());
        if !page.has_more {
            break;
        }
    }
    assert_eq!(fake.state.list_calls.load(Ordering::SeqCst), 2);
    let ch = pi.latest_charge.as_ref().unwrap().id().to_string();
    assert_eq!(
        seen,
        vec![
            ("stripe_fee".to_owned(), -1_000, 0, -1_000, None),
            ("payout".to_owned(), -90_000, 0, -90_000, Some(po.clone())),
            ("charge".to_owned(), 100_000, 3_000, 97_000, Some(ch)),
        ],
        "newest first (same second: the later first), the earlier one filtered out"
    );
    let all = ListBalanceTransaction::new().limit(100).send(&c).await.unwrap();
    assert_eq!((all.data.len(), all.has_more), (4, false));
    assert_eq!(all.data[3].id.as_str(), early);
    // The charge's funds become available two days later.
    let charge_txn = |page: &stripe_types::List<stripe_shared::BalanceTransaction>| {
        page.data.iter().find(|t| t.type_.as_str() == "charge").map(|t| t.status.clone()).unwrap()
    };
    assert_eq!(charge_txn(&all), "pending");
    // Two days after the charge, which a loaded machine may have made a second or more
    // after t0 (the fake's clock runs on with the wall clock).
    fake.set_now(t0 + 2 * 86_400 + 60);
    assert_eq!(charge_txn(&ListBalanceTransaction::new().send(&c).await.unwrap()), "available");

    let payouts = ListPayout::new().created(RangeQueryTs::gte(Timestamp::from(t0))).limit(10).send(&c).await.unwrap();
    assert_eq!(payouts.url, "/v1/payouts");
    assert_eq!(payouts.data.len(), 1);
    let p = &payouts.data[0];
    assert_eq!(
        (p.id.as_str(), p.amount, p.status.as_str(), p.currency.clone()),
        (po.as_str(), 90_000, "paid", Currency::VND)
    );
    assert_eq!(
        p.balance_transaction.as_ref().map(|b| b.id().to_string()),
        all.data.iter().find(|t| t.type_.as_str() == "payout").map(|t| t.id.to_string())
    );
    assert!(p.arrival_date >= p.created);
    let none = ListPayout::new().created(RangeQueryTs::gte(Timestamp::from(t0 + 10 * 86_400))).send(&c).await.unwrap();
    assert!(none.data.is_empty() && !none.has_more);
    let (status, raw) = get(&fake, &format!("/v1/balance_transactions?created[gte]={t0}&limit=1")).await;
    assert_eq!(
        (status, raw["has_more"].as_bool(), raw["data"][0]["id"].as_str()),
        (200, Some(true), Some(fee.as_str()))
    );
    let (status, raw) = get(&fake, "/v1/balance_transactions?starting_after=txn_nope").await;
    assert_eq!((status, raw["error"]["code"].as_str()), (400, Some("resource_missing")));
}

#[tokio::test]
async fn faults_and_replays() {
    let fake = FakeStripe::start().await;
    let c = client(&fake);
    let (cus, pm) = saved_card(&fake, &c, FakeCard::Ok).await;
    let request = charge(&cus, &pm, 10_000);

    // fail_next: 500, nothing done, nothing stored for the key.
    fake.state.fail_next.store(1, Ordering::SeqCst);
    let (api, status) = stripe_err(request.customize().request_strategy(key("k1")).send(&c).await.unwrap_err());
    assert_eq!((status, api.type_.as_str()), (500, "api_error"));
    assert!(fake.state.intents.lock().unwrap().is_empty());
    let pi = request.customize().request_strategy(key("k1")).send(&c).await.unwrap();
    assert_eq!(pi.status.as_str(), "succeeded");

    // fail_after_next: charged, but the answer was lost; the retry gets the charge.
    fake.state.fail_after_next.store(1, Ordering::SeqCst);
    let (_, status) = stripe_err(request.customize().request_strategy(key("k2")).send(&c).await.unwrap_err());
    assert_eq!(status, 500);
    assert_eq!(fake.state.intents.lock().unwrap().len(), 2, "the work was done");
    let retry = request.customize().request_strategy(key("k2")).send(&c).await.unwrap();
    assert_eq!(fake.state.intents.lock().unwrap().len(), 2, "and not twice");
    assert_eq!(retry.status.as_str(), "succeeded");

    // delay_next: the client times out, the charge is done; the retry replays it.
    *fake.state.delay.lock().unwrap() = Duration::from_millis(800);
    fake.state.delay_next.store(1, Ordering::SeqCst);
    let slow = client_with_timeout(&fake, Duration::from_millis(200));
    let started = Instant::now();
    let e = request.customize().request_strategy(key("k3")).send(&slow).await.unwrap_err();
    assert!(matches!(e, StripeError::Timeout), "{e:?}");
    assert!(started.elapsed() < Duration::from_millis(700));
    let replayed = request.customize().request_strategy(key("k3")).send(&slow).await.unwrap();
    assert_eq!(replayed.status.as_str(), "succeeded");
    assert_eq!(fake.state.intents.lock().unwrap().len(), 3);

    // Faults apply to every endpoint, GETs too, one per request, in order.
    fake.state.fail_next.store(1, Ordering::SeqCst);
    fake.state.fail_after_next.store(1, Ordering::SeqCst);
    let (_, s1) = stripe_err(ListPayout::new().send(&c).await.unwrap_err());
    let (_, s2) = stripe_err(CreateCustomer::new().send(&c).await.unwrap_err());
    assert_eq!((s1, s2), (500, 500));
    assert_eq!(fake.state.customers.lock().unwrap().len(), 2, "fail_after_next created the customer");
    assert!(ListPayout::new().send(&c).await.is_ok());

    // Raw: replays say so; the original top-up decline (no intent) still works.
    let form = [("amount", "50000"), ("currency", "vnd"), ("metadata[purpose]", "wallet_topup")];
    let (s, first, replayed) = post(&fake, "/v1/payment_intents", &form, Some("raw-1")).await;
    assert_eq!((s, replayed), (200, false));
    let (s, second, replayed) = post(&fake, "/v1/payment_intents", &form, Some("raw-1")).await;
    assert_eq!((s, replayed, second["id"].clone()), (200, true, first["id"].clone()));
    let (s, other, _) = post(&fake, "/v1/customers", &form, Some("raw-1")).await;
    assert_eq!((s, other["error"]["type"].as_str()), (400, Some("idempotency_error")));
    fake.state.decline_next.store(1, Ordering::SeqCst);
    let before = fake.state.intents.lock().unwrap().len();
    let (s, declined, _) = post(&fake, "/v1/payment_intents", &form, Some("raw-2")).await;
    assert_eq!((s, declined["error"]["decline_code"].as_str()), (402, Some("insufficient_funds")));
    assert_eq!(fake.state.intents.lock().unwrap().len(), before);
    let (s, replay, replayed) = post(&fake, "/v1/payment_intents", &form, Some("raw-2")).await;
    assert_eq!((s, replayed, replay), (402, true, declined));
    let (s, body) = get(&fake, "/v1/charges").await;
    assert_eq!((s, body["error"]["type"].as_str()), (404, Some("invalid_request_error")));
}

#[tokio::test]
async fn events_parse_as_stripe_events() {
    let fake = FakeStripe::start().await;
    let c = client(&fake);
    let (cus, pm) = saved_card(&fake, &c, FakeCard::Ok).await;
    let pi = charge(&cus, &pm, 10_000).send(&c).await.unwrap();

    // event(): the stored intent, with the status asked for.
    let (payload, sig) = fake.event("evt_1", "payment_intent.succeeded", pi.id.as_str(), "succeeded", WHSEC, None);
    let event = Webhook::construct_event(&payload, &sig, WHSEC).unwrap();
    match event.data.object {
        EventObject::PaymentIntentSucceeded(got) => {
            assert_eq!(
                (got.id.as_str(), got.status.as_str(), got.amount_received),
                (pi.id.as_str(), "succeeded", 10_000)
            );
            assert_eq!(got.latest_charge.map(|c| c.id().to_string()), pi.latest_charge.map(|c| c.id().to_string()));
            assert_eq!(got.customer.map(|c| c.id().to_string()), Some(cus.clone()));
            assert_eq!(got.metadata["charge_id"], "5");
        }
        other => panic!("{other:?}"),
    }
    // event() about an unknown intent still works (made up).
    let (payload, sig) = fake.event("evt_2", "payment_intent.succeeded", "pi_other", "succeeded", WHSEC, None);
    assert!(matches!(
        Webhook::construct_event(&payload, &sig, WHSEC).unwrap().data.object,
        EventObject::PaymentIntentSucceeded(_)
    ));

    // event_object(): any object, e.g. a 3-D Secure charge completed in the app.
    let (cus3, pm3) = saved_card(&fake, &c, FakeCard::Requires3ds).await;
    let (api, _) = stripe_err(charge(&cus3, &pm3, 20_000).send(&c).await.unwrap_err());
    let id = api.payment_intent.unwrap().id;
    fake.authenticate(id.as_str(), true);
    let (payload, sig) =
        fake.event_object("evt_3", "payment_intent.succeeded", fake.payment_intent(id.as_str()), WHSEC, None);
    match Webhook::construct_event(&payload, &sig, WHSEC).unwrap().data.object {
        EventObject::PaymentIntentSucceeded(got) => assert_eq!(got.status.as_str(), "succeeded"),
        other => panic!("{other:?}"),
    }
    // A declined intent (with last_payment_error) as a payment_failed event.
    let (cusd, pmd) = saved_card(&fake, &c, FakeCard::Lost).await;
    let (api, _) = stripe_err(charge(&cusd, &pmd, 20_000).send(&c).await.unwrap_err());
    let declined = fake.payment_intent(api.payment_intent.unwrap().id.as_str());
    let (payload, sig) = fake.event_object("evt_4", "payment_intent.payment_failed", declined, WHSEC, None);
    match Webhook::construct_event(&payload, &sig, WHSEC).unwrap().data.object {
        EventObject::PaymentIntentPaymentFailed(got) => {
            assert_eq!(got.last_payment_error.and_then(|e| e.decline_code).as_deref(), Some("lost_card"));
        }
        other => panic!("{other:?}"),
    }
    // Setup intents (expanded or not) and refunds.
    let si = CreateSetupIntent::new().customer(cus.as_str()).send(&c).await.unwrap();
    fake.complete_setup(si.id.as_str(), FakeCard::Ok);
    let (payload, sig) =
        fake.event_object("evt_5", "setup_intent.succeeded", fake.setup_intent(si.id.as_str()), WHSEC, None);
    match Webhook::construct_event(&payload, &sig, WHSEC).unwrap().data.object {
        EventObject::SetupIntentSucceeded(got) => assert_eq!(got.status.as_str(), "succeeded"),
        other => panic!("{other:?}"),
    }
    let re = CreateRefund::new().payment_intent(pi.id.as_str()).amount(1_000).send(&c).await.unwrap();
    fake.settle_refund(re.id.as_str(), false);
    let (payload, sig) = fake.event_object("evt_6", "refund.updated", fake.refund(re.id.as_str()), WHSEC, None);
    match Webhook::construct_event(&payload, &sig, WHSEC).unwrap().data.object {
        EventObject::RefundUpdated(got) => {
            assert_eq!(
                (got.status.as_deref(), got.failure_reason.as_deref()),
                (Some("failed"), Some("expired_or_canceled_card"))
            );
        }
        other => panic!("{other:?}"),
    }
    let (payload, sig) = fake.event_object("evt_7", "charge.refund.updated", fake.refund(re.id.as_str()), WHSEC, None);
    assert!(matches!(
        Webhook::construct_event(&payload, &sig, WHSEC).unwrap().data.object,
        EventObject::ChargeRefundUpdated(_)
    ));
    // A stale signature is refused.
    let (payload, sig) =
        fake.event_object("evt_8", "refund.updated", fake.refund(re.id.as_str()), WHSEC, Some(fake.now() - 3_600));
    assert!(Webhook::construct_event(&payload, &sig, WHSEC).is_err());
}
