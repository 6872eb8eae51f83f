//! A fake Stripe on 127.0.0.1: the subset of the API the adapter calls (PaymentIntents, with
//! idempotency keys), scripted faults, and signed webhook events. The real async-stripe
//! client talks to it through `STRIPE_API_BASE`-style configuration.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
};

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use serde_json::{Value, json};

/// The API version the client parses events of.
pub const API_VERSION: &str = "2026-09-30.endive";

/// A request the fake received: its idempotency key and its form fields.
pub type SeenRequest = (Option<String>, HashMap<String, String>);

/// What the fake has seen and how it should misbehave.
#[derive(Default)]
pub struct FakeStripeState {
    /// Every create request: (idempotency key, form fields).
    pub requests: Mutex<Vec<SeenRequest>>,
    /// Intents by id.
    pub intents: Mutex<HashMap<String, Value>>,
    /// Answers by idempotency key (Stripe replays the first answer).
    by_key: Mutex<HashMap<String, Value>>,
    /// Answer 500 to this many next requests.
    pub fail_next: AtomicU32,
    /// Answer 402 card_declined to this many next requests.
    pub decline_next: AtomicU32,
    next_id: AtomicU32,
}

/// A running fake Stripe.
pub struct FakeStripe {
    /// Base URL (no path), for the client's `url(...)`.
    pub base: String,
    /// Its state.
    pub state: Arc<FakeStripeState>,
}

fn payment_intent(id: &str, amount: i64, status: &str, metadata: &HashMap<String, String>) -> Value {
    json!({
        "id": id,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_received": if status == "succeeded" { amount } else { 0 },
        "capture_method": "automatic",
        "client_secret": format!("{id}_secret_test"),
        "confirmation_method": "automatic",
        "created": 1_763_800_000,
        "currency": "vnd",
        "livemode": false,
        "metadata": metadata,
        "payment_method_types": ["card"],
        "status": status,
    })
}

async fn create_payment_intent(State(s): State<Arc<FakeStripeState>>, headers: HeaderMap, body: String) -> Response {
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let form: HashMap<String, String> = url_decode(&body);
    s.requests.lock().unwrap().push((key.clone(), form.clone()));
    if s.fail_next.load(Ordering::SeqCst) > 0 {
        s.fail_next.fetch_sub(1, Ordering::SeqCst);
        let err = json!({"error": {"type": "api_error", "message": "fake outage"}});
        return (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(err)).into_response();
    }
    if s.decline_next.load(Ordering::SeqCst) > 0 {
        s.decline_next.fetch_sub(1, Ordering::SeqCst);
        let err = json!({"error": {"type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds",
                                   "message": "Your card has insufficient funds."}});
        return (StatusCode::PAYMENT_REQUIRED, axum::Json(err)).into_response();
    }
    if let Some(k) = &key
        && let Some(first) = s.by_key.lock().unwrap().get(k)
    {
        return axum::Json(first.clone()).into_response();
    }
    let amount: i64 = form.get("amount").and_then(|a| a.parse().ok()).unwrap_or(0);
    let metadata: HashMap<String, String> = form
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("metadata[").and_then(|k| k.strip_suffix(']')).map(|k| (k.to_owned(), v.clone()))
        })
        .collect();
    let id = format!("pi_fake_{}", s.next_id.fetch_add(1, Ordering::SeqCst) + 1);
    let pi = payment_intent(&id, amount, "requires_payment_method", &metadata);
    s.intents.lock().unwrap().insert(id, pi.clone());
    if let Some(k) = key {
        s.by_key.lock().unwrap().insert(k, pi.clone());
    }
    axum::Json(pi).into_response()
}

fn url_decode(body: &str) -> HashMap<String, String> {
    fn dec(s: &str) -> String {
        let bytes = s.replace('+', " ").into_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%'
                && i + 2 < bytes.len()
                && let Ok(b) = u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16)
            {
                out.push(b);
                i += 3;
                continue;
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    body.split('&').filter(|p| !p.is_empty()).filter_map(|p| p.split_once('=')).map(|(k, v)| (dec(k), dec(v))).collect()
}

impl FakeStripe {
    /// Starts the fake on 127.0.0.1:0.
    pub async fn start() -> FakeStripe {
        let state = Arc::new(FakeStripeState::default());
        let app = Router::new().route("/v1/payment_intents", post(create_payment_intent)).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind fake Stripe");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeStripe { base, state }
    }

    /// A signed event about an intent, as Stripe would send it: `(payload, signature header)`.
    pub fn event(
        &self,
        event_id: &str,
        kind: &str,
        intent_id: &str,
        status: &str,
        secret: &str,
        at: Option<i64>,
    ) -> (String, String) {
        let intents = self.state.intents.lock().unwrap();
        let pi =
            intents.get(intent_id).cloned().unwrap_or_else(|| payment_intent(intent_id, 1, status, &HashMap::new()));
        let amount = pi["amount"].as_i64().unwrap_or(0);
        let metadata: HashMap<String, String> = serde_json::from_value(pi["metadata"].clone()).unwrap_or_default();
        let object = payment_intent(intent_id, amount, status, &metadata);
        let payload = json!({
            "id": event_id,
            "object": "event",
            "api_version": API_VERSION,
            "created": chrono::Utc::now().timestamp(),
            "livemode": false,
            "pending_webhooks": 1,
            "type": kind,
            "data": {"object": object},
        })
        .to_string();
        let header = stripe_webhook::Webhook::generate_test_header(&payload, secret, at);
        (payload, header)
    }
}
