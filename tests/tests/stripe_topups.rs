//! Card top-ups through the real Stripe client against a fake Stripe on 127.0.0.1, with
//! signed webhooks: credited once, whatever the retries, duplicates and order.

use std::{sync::Arc, time::Duration};

use iparking::payments::{SandboxGateway, StripeGateway};
use iparking_tests::{Db, Live, Options, TestApp, assert_error, fake_stripe::FakeStripe, raw};

const WHSEC: &str = "whsec_test_secret";

async fn start(db: Db, live: Live) -> (TestApp, FakeStripe) {
    let fake = FakeStripe::start().await;
    let gateway = StripeGateway::new("sk_test_fake", Some(&fake.base)).unwrap().with_backoff(Duration::from_millis(10));
    let opts =
        Options { payments: Some(Arc::new(gateway)), stripe_webhook_secret: Some(WHSEC.into()), ..Options::default() };
    (TestApp::start_with(db, live, opts).await, fake)
}

async fn deliver(t: &TestApp, payload: &str, signature: Option<&str>) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new().post(t.url("/webhooks/stripe")).body(payload.to_owned());
    if let Some(sig) = signature {
        req = req.header("Stripe-Signature", sig);
    }
    raw(req).await
}

/// Runs an async test body on SQLite + memory and PostgreSQL + Redis.
macro_rules! both {
    ($name:ident, |$t:ident, $fake:ident| $body:block) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite_memory() {
                let ($t, $fake) = start(Db::Sqlite, Live::Memory).await;
                $body
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres_redis() {
                let ($t, $fake) = start(Db::Postgres, Live::Redis).await;
                $body
            }
        }
    };
}

both!(topup_is_credited_once_by_the_verified_webhook, |t, fake| {
    let d = t.driver("0912345001").await;
    let me = d.wallet().await.unwrap();
    let topup = d.topup(50_000, "k1").await.unwrap();
    assert_eq!(
        (topup.status.as_str(), topup.gateway.as_str(), topup.sandbox),
        ("requires_payment_method", "stripe", false)
    );
    assert!(topup.client_secret.as_deref().is_some_and(|s| s.contains("_secret_")));
    assert_eq!(d.wallet().await.unwrap().balance, me.balance, "nothing credited before the webhook");
    {
        let requests = fake.state.requests.lock().unwrap();
        assert_eq!(requests.len(), 1);
        let (key, form) = &requests[0];
        assert!(key.as_deref().is_some_and(|k| k.starts_with("topup-") && k.ends_with("-k1")), "{key:?}");
        assert_eq!((form["amount"].as_str(), form["currency"].as_str()), ("50000", "vnd"));
        assert_eq!(form["metadata[purpose]"], "wallet_topup");
    }
    let (payload, sig) = fake.event("evt_1", "payment_intent.succeeded", &topup.intent_id, "succeeded", WHSEC, None);
    let a = deliver(&t, &payload, Some(&sig)).await;
    assert_eq!((a.0, a.1["outcome"].as_str()), (200, Some("credited")), "{}", a.1);
    let w = d.wallet().await.unwrap();
    assert_eq!(w.balance, 50_000);
    assert_eq!(w.movements[0].kind, "card_topup");
    // The same event again, and another event for the same success: nothing more.
    let a = deliver(&t, &payload, Some(&sig)).await;
    assert_eq!(a.1["outcome"], "duplicate");
    let (p2, s2) = fake.event("evt_2", "payment_intent.succeeded", &topup.intent_id, "succeeded", WHSEC, None);
    assert_eq!(deliver(&t, &p2, Some(&s2)).await.1["outcome"], "updated");
    assert_eq!(d.wallet().await.unwrap().balance, 50_000);
    // A replayed top-up call answers the first answer without reaching Stripe again.
    let again = d.topup(50_000, "k1").await.unwrap();
    assert_eq!(again, topup);
    assert_eq!(fake.state.requests.lock().unwrap().len(), 1);
    t.assert_ledger_sound().await;
});

both!(events_out_of_order_never_undo_a_success, |t, fake| {
    let d = t.driver("0912345002").await;
    let a = d.topup(20_000, "a").await.unwrap();
    let b = d.topup(30_000, "b").await.unwrap();
    // A: failed (a first attempt), then succeeded (the retry) -> credited.
    let (p, s) =
        fake.event("evt_a1", "payment_intent.payment_failed", &a.intent_id, "requires_payment_method", WHSEC, None);
    assert_eq!(deliver(&t, &p, Some(&s)).await.1["outcome"], "updated");
    let (p, s) = fake.event("evt_a2", "payment_intent.succeeded", &a.intent_id, "succeeded", WHSEC, None);
    assert_eq!(deliver(&t, &p, Some(&s)).await.1["outcome"], "credited");
    // B: succeeded, then a late failed -> stays credited.
    let (p, s) = fake.event("evt_b1", "payment_intent.succeeded", &b.intent_id, "succeeded", WHSEC, None);
    assert_eq!(deliver(&t, &p, Some(&s)).await.1["outcome"], "credited");
    let (p, s) =
        fake.event("evt_b2", "payment_intent.payment_failed", &b.intent_id, "requires_payment_method", WHSEC, None);
    assert_eq!(deliver(&t, &p, Some(&s)).await.1["outcome"], "updated");
    assert_eq!(d.wallet().await.unwrap().balance, 50_000);
    // An intent that is not ours is acknowledged and changes nothing.
    let (p, s) = fake.event("evt_x", "payment_intent.succeeded", "pi_not_ours", "succeeded", WHSEC, None);
    assert_eq!(deliver(&t, &p, Some(&s)).await.1["outcome"], "unknown_intent");
    assert_eq!(d.wallet().await.unwrap().balance, 50_000);
    t.assert_ledger_sound().await;
});

both!(bad_webhooks_are_refused_and_change_nothing, |t, fake| {
    let d = t.driver("0912345003").await;
    let topup = d.topup(40_000, "k").await.unwrap();
    let (payload, good) = fake.event("evt_1", "payment_intent.succeeded", &topup.intent_id, "succeeded", WHSEC, None);
    let (_, wrong_secret) =
        fake.event("evt_1", "payment_intent.succeeded", &topup.intent_id, "succeeded", "whsec_other", None);
    let stale_at = chrono::Utc::now().timestamp() - 600;
    let (stale_payload, stale) =
        fake.event("evt_1", "payment_intent.succeeded", &topup.intent_id, "succeeded", WHSEC, Some(stale_at));
    assert_error(&deliver(&t, &payload, Some(&wrong_secret)).await, 400, "invalid_signature");
    assert_error(&deliver(&t, &stale_payload, Some(&stale)).await, 400, "invalid_signature");
    assert_error(&deliver(&t, &payload, None).await, 400, "invalid_signature");
    assert_error(&deliver(&t, &payload.replace("40000", "4000000"), Some(&good)).await, 400, "invalid_signature");
    assert_eq!(d.wallet().await.unwrap().balance, 0, "nothing credited");
    // The genuine event still works afterwards (the refused ones were not recorded).
    assert_eq!(deliver(&t, &payload, Some(&good)).await.1["outcome"], "credited");
    assert_eq!(d.wallet().await.unwrap().balance, 40_000);
    t.assert_ledger_sound().await;
});

both!(processor_faults_are_retried_with_the_same_key, |t, fake| {
    let d = t.driver("0912345004").await;
    // Two 500s, then success: one top-up, three requests, one key.
    fake.state.fail_next.store(2, std::sync::atomic::Ordering::SeqCst);
    let topup = d.topup(60_000, "retry").await.unwrap();
    {
        let requests = fake.state.requests.lock().unwrap();
        assert_eq!(requests.len(), 3);
        assert!(requests.iter().all(|(k, _)| k == &requests[0].0), "same idempotency key on every attempt");
    }
    assert_eq!(fake.state.intents.lock().unwrap().len(), 1);
    assert!(topup.intent_id.starts_with("pi_fake_"));
    // Three 500s: 503, nothing recorded; the same key works once Stripe is back.
    fake.state.fail_next.store(3, std::sync::atomic::Ordering::SeqCst);
    let e = d.topup(70_000, "outage").await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(503), Some("service_unavailable")));
    let later = d.topup(70_000, "outage").await.unwrap();
    assert_eq!(later.amount, 70_000);
    // A decline: 402 with Stripe's decline code.
    fake.state.decline_next.store(1, std::sync::atomic::Ordering::SeqCst);
    match d.topup(80_000, "declined").await.unwrap_err() {
        iparking_mobile_api::ClientError::Api { status, error } => {
            assert_eq!((status, error.code.as_str()), (402, "payment_refused"));
            assert_eq!(error.details.unwrap()["processor_code"], "insufficient_funds");
        }
        other => panic!("{other}"),
    }
    assert_eq!(d.wallet().await.unwrap().balance, 0, "no webhook yet: nothing credited");
    t.assert_ledger_sound().await;
});

both!(topup_bad_input, |t, fake| {
    let d = t.driver("0912345005").await;
    for amount in [0, 9_999, 5_000_001, -1] {
        let e = d.topup(amount, &format!("bad-{amount}")).await.unwrap_err();
        assert_eq!((e.status(), e.code()), (Some(400), Some("invalid_amount")), "{amount}");
    }
    let a =
        raw(reqwest::Client::new().post(t.url("/v1/me/wallet/topups")).json(&serde_json::json!({"amount": 50_000})))
            .await;
    assert_error(&a, 401, "unauthorized");
    assert!(fake.state.requests.lock().unwrap().is_empty(), "nothing reached Stripe");
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_processor_topups_and_webhooks_are_off() {
    let t = TestApp::start(Db::Sqlite, Live::Memory).await;
    let d = t.driver("0912345006").await;
    let e = d.topup(50_000, "k").await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(404), Some("payments_disabled")));
    assert_error(&deliver(&t, "{}", Some("t=1,v1=00")).await, 404, "payments_disabled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_credits_at_once_and_says_so() {
    let opts = Options { payments: Some(Arc::new(SandboxGateway)), ..Options::default() };
    let t = TestApp::start_with(Db::Sqlite, Live::Memory, opts).await;
    let d = t.driver("0912345007").await;
    let topup = d.topup(30_000, "s").await.unwrap();
    assert_eq!((topup.status.as_str(), topup.gateway.as_str(), topup.sandbox), ("succeeded", "sandbox", true));
    assert!(topup.intent_id.starts_with("sandbox_pi_"));
    assert_eq!(d.wallet().await.unwrap().balance, 30_000);
    assert_eq!(d.topup(30_000, "s").await.unwrap(), topup);
    assert_eq!(d.wallet().await.unwrap().balance, 30_000, "a replay credits nothing");
    t.assert_ledger_sound().await;
}
