//! A fake Stripe on 127.0.0.1: the subset of the API the adapter calls, with idempotency keys,
//! scripted faults, a clock, test controls that play the parts of the driver's phone and of
//! Stripe's back office, and signed webhook events. The real async-stripe client talks to it
//! through `STRIPE_API_BASE`-style configuration.
//!
//! Endpoints (form-encoded bodies, query strings for GET, like the real API):
//!
//! - `POST /v1/customers`
//! - `POST /v1/setup_intents`, `GET /v1/setup_intents/{id}` (`expand[]=payment_method`)
//! - `POST /v1/payment_methods/{id}/detach`
//! - `POST /v1/payment_intents` (a top-up without `confirm`; an off-session charge with
//!   `confirm=true`), `GET /v1/payment_intents/{id}`, `GET /v1/payment_intents` (list),
//!   `POST /v1/payment_intents/{id}/cancel`
//! - `POST /v1/refunds`
//! - `GET /v1/balance_transactions`, `GET /v1/payouts` (lists)
//!
//! Lists are newest first (ties: the later object first), filtered by `created[gte|gt|lte|lt]`
//! (or `created=ts`), paginated by `limit` (1..=100, default 10), `starting_after` and
//! `ending_before`, answered as `{"object":"list","data":[..],"has_more":..,"url":..}`.
//!
//! Every POST with an `Idempotency-Key` stores its first answer (2xx and 402 card errors, as
//! Stripe does; not 400 validation errors nor injected 500s) and replays it, with the header
//! `Idempotent-Replayed: true`; the same key with other parameters or on another endpoint is
//! refused with 400 `idempotency_error`.

use std::{
    cmp::Reverse,
    collections::HashMap,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, HeaderValue, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

/// The API version the client parses events of.
pub const API_VERSION: &str = "2026-09-30.endive";

/// A request the fake received: its idempotency key and its form fields.
pub type SeenRequest = (Option<String>, HashMap<String, String>);

/// Seconds in a day.
const DAY: i64 = 86_400;

/// Any request the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenCall {
    /// `GET` or `POST`.
    pub method: String,
    /// The path, e.g. `/v1/payment_intents/pi_fake_1/cancel`.
    pub path: String,
    /// The `Idempotency-Key` header.
    pub key: Option<String>,
    /// The form fields (POST) or query parameters (GET), decoded: `metadata[driver_id]` -> `7`.
    pub params: HashMap<String, String>,
}

/// How a saved card behaves when it is charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeCard {
    /// Charges succeed (visa 4242).
    Ok,
    /// Declined, `insufficient_funds` (visa 9995).
    Declined,
    /// Needs 3-D Secure (visa 3184): off-session a 402 `authentication_required`.
    Requires3ds,
    /// Declined, `lost_card` (visa 9987).
    Lost,
}

impl FakeCard {
    /// The card's last four digits.
    pub fn last4(self) -> &'static str {
        match self {
            FakeCard::Ok => "4242",
            FakeCard::Declined => "9995",
            FakeCard::Requires3ds => "3184",
            FakeCard::Lost => "9987",
        }
    }

    /// The card's brand.
    pub fn brand(self) -> &'static str {
        "visa"
    }
}

#[derive(Default)]
struct Clock {
    /// Added to the wall clock.
    offset: i64,
    /// The last timestamp handed out: the clock never goes back.
    last: i64,
}

/// An answer stored for an idempotency key.
struct Stored {
    route: String,
    params: HashMap<String, String>,
    status: u16,
    body: Value,
}

/// What the fake has seen and how it should misbehave.
#[derive(Default)]
pub struct FakeStripeState {
    /// Every `POST /v1/payment_intents` request: (idempotency key, form fields), faulted ones too.
    pub requests: Mutex<Vec<SeenRequest>>,
    /// Payment intents by id.
    pub intents: Mutex<HashMap<String, Value>>,
    /// Answers by idempotency key (Stripe replays the first answer). Its lock also serializes
    /// every request and test control, so each runs alone.
    by_key: Mutex<HashMap<String, Stored>>,
    /// Answer 500 to this many next requests (any endpoint), doing nothing, storing nothing.
    pub fail_next: AtomicU32,
    /// Do the work of this many next requests (and store the answer for the key) but answer
    /// 500: "charged, but the answer was lost".
    pub fail_after_next: AtomicU32,
    /// Sleep [`FakeStripeState::delay`] before answering this many next requests (after doing
    /// the work).
    pub delay_next: AtomicU32,
    /// How long `delay_next` sleeps.
    pub delay: Mutex<Duration>,
    /// Answer 402 `card_declined`/`insufficient_funds` to this many next payment intent creations.
    pub decline_next: AtomicU32,
    /// A card needing 3-D Secure charged off-session answers 200 `requires_action` (as Stripe
    /// does on-session) instead of 402 `authentication_required`.
    pub three_ds_as_requires_action: AtomicBool,
    /// Customers by id.
    pub customers: Mutex<HashMap<String, Value>>,
    /// Setup intents by id.
    pub setup_intents: Mutex<HashMap<String, Value>>,
    /// Payment methods by id.
    pub payment_methods: Mutex<HashMap<String, Value>>,
    /// How each payment method behaves.
    cards: Mutex<HashMap<String, FakeCard>>,
    /// Payment methods detached, in order.
    pub detached: Mutex<Vec<String>>,
    /// Refunds by id.
    pub refunds: Mutex<HashMap<String, Value>>,
    /// Every `POST /v1/refunds` request: (idempotency key, form fields), faulted ones too.
    pub refund_requests: Mutex<Vec<SeenRequest>>,
    /// Balance transactions, oldest first.
    pub balance_transactions: Mutex<Vec<Value>>,
    /// Payouts, oldest first.
    pub payouts: Mutex<Vec<Value>>,
    /// `GET /v1/balance_transactions` and `GET /v1/payouts` requests received (faulted ones too).
    pub list_calls: AtomicU32,
    /// Every request received, in order.
    pub calls: Mutex<Vec<SeenCall>>,
    next_id: AtomicU32,
    clock: Mutex<Clock>,
}

/// A running fake Stripe.
pub struct FakeStripe {
    /// Base URL (no path), for the client's `url(...)`.
    pub base: String,
    /// Its state.
    pub state: Arc<FakeStripeState>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn take(counter: &AtomicU32) -> bool {
    counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
}

/// The number at the end of a fake id (`pi_fake_12` -> 12), for ordering ties.
fn seq(id: &str) -> u64 {
    id.rsplit('_').next().and_then(|n| n.parse().ok()).unwrap_or(0)
}

fn api_error(type_: &str, code: Option<&str>, message: impl Into<String>) -> Value {
    let mut e = json!({"type": type_, "message": message.into()});
    if let Some(c) = code {
        e["code"] = json!(c);
    }
    e
}

fn error(status: u16, error: Value) -> (u16, Value) {
    (status, json!({ "error": error }))
}

fn invalid(code: Option<&str>, message: impl Into<String>) -> (u16, Value) {
    error(400, api_error("invalid_request_error", code, message))
}

fn no_such(status: u16, what: &str, id: &str, param: Option<&str>) -> (u16, Value) {
    let mut e = api_error("invalid_request_error", Some("resource_missing"), format!("No such {what}: '{id}'"));
    if let Some(p) = param {
        e["param"] = json!(p);
    }
    error(status, e)
}

/// `metadata[k]=v` fields as a map.
fn metadata(form: &HashMap<String, String>) -> HashMap<String, String> {
    form.iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("metadata[").and_then(|k| k.strip_suffix(']')).map(|k| (k.to_owned(), v.clone()))
        })
        .collect()
}

/// The values of an array parameter: `expand[0]=a&expand[1]=b` (or `expand[]=a`).
fn array(form: &HashMap<String, String>, name: &str) -> Vec<String> {
    let mut items: Vec<(u64, &String)> = form
        .iter()
        .filter_map(|(k, v)| {
            let rest = k.strip_prefix(name)?.strip_prefix('[')?.strip_suffix(']')?;
            Some((rest.parse().unwrap_or(0), v))
        })
        .collect();
    items.sort();
    items.into_iter().map(|(_, v)| v.clone()).collect()
}

fn payment_intent(id: &str, amount: i64, status: &str, metadata: &HashMap<String, String>, created: i64) -> Value {
    json!({
        "id": id,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_received": if status == "succeeded" { amount } else { 0 },
        "canceled_at": null,
        "cancellation_reason": null,
        "capture_method": "automatic",
        "client_secret": format!("{id}_secret_test"),
        "confirmation_method": "automatic",
        "created": created,
        "currency": "vnd",
        "customer": null,
        "description": null,
        "last_payment_error": null,
        "latest_charge": null,
        "livemode": false,
        "metadata": metadata,
        "next_action": null,
        "payment_method": null,
        "payment_method_types": ["card"],
        "setup_future_usage": null,
        "status": status,
    })
}

fn card_error(code: &str, decline_code: &str, message: &str, pm: &Value, charge: Option<&str>) -> Value {
    json!({
        "type": "card_error",
        "code": code,
        "decline_code": decline_code,
        "message": message,
        "charge": charge,
        "doc_url": format!("https://stripe.com/docs/error-codes/{code}"),
        "payment_method": pm,
    })
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

/// One request, decoded.
struct Req {
    /// Path segments after `/v1/`.
    segs: Vec<String>,
    params: HashMap<String, String>,
    /// `decline_next` was consumed by this request (payment intent creations only).
    decline: bool,
}

impl Req {
    fn get(&self, k: &str) -> Option<&str> {
        self.params.get(k).map(String::as_str).filter(|v| !v.is_empty())
    }
    fn flag(&self, k: &str) -> bool {
        self.get(k) == Some("true")
    }
    fn id(&self) -> &str {
        self.segs.get(1).map(String::as_str).unwrap_or_default()
    }
}

type Work = fn(&FakeStripeState, &Req) -> (u16, Value);

enum Fault {
    None,
    FailAfter,
    Delay,
}

impl FakeStripeState {
    fn new_id(&self, prefix: &str) -> String {
        format!("{prefix}_fake_{}", self.next_id.fetch_add(1, Ordering::SeqCst) + 1)
    }

    /// The clock: wall time plus the offset `set_now` set, never going back.
    fn now(&self) -> i64 {
        let mut c = lock(&self.clock);
        let t = (chrono::Utc::now().timestamp() + c.offset).max(c.last);
        c.last = t;
        t
    }

    fn set_now(&self, ts: i64) {
        lock(&self.clock).offset = ts - chrono::Utc::now().timestamp();
    }

    /// A balance transaction; `pending` ones become available two days later, others at once.
    fn add_txn(
        &self,
        type_: &str,
        category: &str,
        amount: i64,
        fee: i64,
        source: Option<&str>,
        pending: bool,
    ) -> String {
        let (status, available_in) = if pending { ("pending", 2 * DAY) } else { ("available", 0) };
        let id = self.new_id("txn");
        let created = self.now();
        let fee_details = if fee == 0 {
            json!([])
        } else {
            json!([{"amount": fee, "application": null, "currency": "vnd",
                     "description": "Stripe processing fees", "type": "stripe_fee"}])
        };
        lock(&self.balance_transactions).push(json!({
            "id": id,
            "object": "balance_transaction",
            "amount": amount,
            "available_on": created + available_in,
            "balance_type": "payments",
            "created": created,
            "currency": "vnd",
            "description": null,
            "exchange_rate": null,
            "fee": fee,
            "fee_details": fee_details,
            "net": amount - fee,
            "reporting_category": category,
            "source": source,
            "status": status,
            "type": type_,
        }));
        id
    }

    /// A successful charge of a payment intent: `succeeded`, a charge id, a balance transaction.
    fn succeed(&self, pi: &mut Value) {
        let amount = pi["amount"].as_i64().unwrap_or(0);
        let charge = self.new_id("ch");
        // Stripe's fee, rounded to the nearest đồng.
        let fee = (amount * 3 + 50).div_euclid(100);
        self.add_txn("charge", "charge", amount, fee, Some(&charge), true);
        pi["status"] = json!("succeeded");
        pi["amount_received"] = json!(amount);
        pi["latest_charge"] = json!(charge);
        pi["last_payment_error"] = Value::Null;
        pi["next_action"] = Value::Null;
    }

    fn pm_card(&self, pm: &str) -> Option<FakeCard> {
        lock(&self.cards).get(pm).copied()
    }

    fn store_intent(&self, pi: &Value) {
        lock(&self.intents).insert(pi["id"].as_str().unwrap_or_default().to_owned(), pi.clone());
    }
}

// ---- endpoints ----

fn create_customer(s: &FakeStripeState, r: &Req) -> (u16, Value) {
    let id = s.new_id("cus");
    let c = json!({
        "id": id,
        "object": "customer",
        "address": null,
        "balance": 0,
        "created": s.now(),
        "currency": null,
        "default_source": null,
        "delinquent": false,
        "description": r.get("description"),
        "email": r.get("email"),
        "invoice_prefix": format!("FAKE{}", seq(&id)),
        "livemode": false,
        "metadata": metadata(&r.params),
        "name": r.get("name"),
        "phone": r.get("phone"),
        "preferred_locales": [],
        "shipping": null,
        "tax_exempt": "none",
    });
    lock(&s.customers).insert(id, c.clone());
    (200, c)
}

fn create_setup_intent(s: &FakeStripeState, r: &Req) -> (u16, Value) {
    if let Some(c) = r.get("customer")
        && !lock(&s.customers).contains_key(c)
    {
        return no_such(400, "customer", c, Some("customer"));
    }
    let id = s.new_id("seti");
    let mut types = array(&r.params, "payment_method_types");
    if types.is_empty() {
        types.push("card".into());
    }
    let si = json!({
        "id": id,
        "object": "setup_intent",
        "application": null,
        "cancellation_reason": null,
        "client_secret": format!("{id}_secret_test"),
        "created": s.now(),
        "customer": r.get("customer"),
        "description": r.get("description"),
        "flow_directions": null,
        "last_setup_error": null,
        "latest_attempt": null,
        "livemode": false,
        "mandate": null,
        "metadata": metadata(&r.params),
        "next_action": null,
        "on_behalf_of": null,
        "payment_method": null,
        "payment_method_types": types,
        "single_use_mandate": null,
        "status": "requires_payment_method",
        "usage": r.get("usage").unwrap_or("off_session"),
    });
    lock(&s.setup_intents).insert(id, si.clone());
    (200, si)
}

fn retrieve_setup_intent(s: &FakeStripeState, r: &Req) -> (u16, Value) {
    let Some(mut si) = lock(&s.setup_intents).get(r.id()).cloned() else {
        return no_such(404, "setup_intent", r.id(), Some("intent"));
    };
    if array(&r.params, "expand").iter().any(|e| e == "payment_method")
        && let Some(pm) = si["payment_method"].as_str()
    {
        si["payment_method"] = lock(&s.payment_methods).get(pm).cloned().unwrap_or(Value::Null);
    }
    (200, si)
}

fn detach_payment_method(s: &FakeStripeState, r: &Req) -> (u16, Value) {
    let id = r.id().to_owned();
    let mut pms = lock(&s.payment_methods);
    let Some(pm) = pms.get_mut(&id) else {
        return no_such(404, "PaymentMethod", &id, Some("payment_method"));
    };
    if pm["customer"].is_null() {
        return invalid(
            Some("payment_method_unexpected_state"),
            "The payment method you provided is not attached to a customer so detachment is impossible.",
        );
    }
    pm["customer"] = Value::Null;
    lock(&s.detached).push(id);
    (200, pm.clone())
}

fn create_payment_intent(s: &FakeStripeState, r: &Req) -> (u16, Value) {
    if r.decline && !r.flag("confirm") {
        // A top-up refused at creation (the original behaviour): no intent.
        return error(
            402,
            json!({"type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds",
                   "message": "Your card has insufficient funds."}),
        );
    }
    let amount: i64 = r.get("amount").and_then(|a| a.parse().ok()).unwrap_or(0);
    if amount < 1 {
        return error(
            400,
            json!({"type": "invalid_request_error", "code": "parameter_invalid_integer", "param": "amount",
                   "message": "This value must be greater than or equal to 1."}),
        );
    }
    if let Some(c) = r.get("customer")
        && !lock(&s.customers).contains_key(c)
    {
        return no_such(400, "customer", c, Some("customer"));
    }
    let pm_id = r.get("payment_method");
    let pm = match pm_id {
        None => None,
        Some(id) => match lock(&s.payment_methods).get(id).cloned() {
            None => return no_such(400, "PaymentMethod", id, Some("payment_method")),
            Some(pm) => Some(pm),
        },
    };
    if let (Some(pm), Some(id)) = (&pm, pm_id) {
        if pm["customer"].is_null() && lock(&s.detached).iter().any(|d| d == id) {
            let mut e = api_error(
                "invalid_request_error",
                Some("resource_missing"),
                format!("No such PaymentMethod: '{id}'; it was detached from its customer and cannot be used again."),
            );
            e["param"] = json!("payment_method");
            return error(400, e);
        }
        if let Some(c) = r.get("customer")
            && pm["customer"].as_str() != Some(c)
        {
            let mut e = api_error(
                "invalid_request_error",
                None,
                format!("The provided PaymentMethod {id} belongs to another Customer than {c}."),
            );
            e["param"] = json!("payment_method");
            return error(400, e);
        }
    }
    let confirm = r.flag("confirm");
    let (Some(pm), Some(pm_id)) = (pm, pm_id) else {
        if confirm {
            return invalid(
                Some("payment_intent_unexpected_state"),
                "You cannot confirm this PaymentIntent because it's missing a payment method.",
            );
        }
        // A top-up: the app confirms it with the client secret.
        let id = s.new_id("pi");
        let mut pi = payment_intent(&id, amount, "requires_payment_method", &metadata(&r.params), s.now());
        pi["customer"] = json!(r.get("customer"));
        pi["description"] = json!(r.get("description"));
        s.store_intent(&pi);
        return (200, pi);
    };
    let id = s.new_id("pi");
    let status = if confirm { "processing" } else { "requires_confirmation" };
    let mut pi = payment_intent(&id, amount, status, &metadata(&r.params), s.now());
    pi["customer"] = json!(r.get("customer"));
    pi["payment_method"] = json!(pm_id);
    pi["description"] = json!(r.get("description"));
    if !confirm {
        s.store_intent(&pi);
        return (200, pi);
    }
    let card = if r.decline { FakeCard::Declined } else { s.pm_card(pm_id).unwrap_or(FakeCard::Ok) };
    let off_session = r.flag("off_session");
    match card {
        FakeCard::Ok => {
            s.succeed(&mut pi);
            s.store_intent(&pi);
            (200, pi)
        }
        FakeCard::Declined | FakeCard::Lost => {
            let (decline, message) = if card == FakeCard::Lost {
                ("lost_card", "Your card has been declined.")
            } else {
                ("insufficient_funds", "Your card has insufficient funds.")
            };
            // Stripe records the attempt as a failed charge.
            let charge = s.new_id("ch");
            pi["status"] = json!("requires_payment_method");
            pi["latest_charge"] = json!(charge);
            pi["last_payment_error"] = card_error("card_declined", decline, message, &pm, Some(&charge));
            s.store_intent(&pi);
            let mut e = card_error("card_declined", decline, message, &pm, Some(&charge));
            e["payment_intent"] = pi;
            error(402, e)
        }
        FakeCard::Requires3ds => {
            if !off_session || s.three_ds_as_requires_action.load(Ordering::SeqCst) {
                pi["status"] = json!("requires_action");
                pi["next_action"] = json!({"type": "use_stripe_sdk", "use_stripe_sdk": {}});
                s.store_intent(&pi);
                return (200, pi);
            }
            let message = "This payment requires authentication.";
            pi["status"] = json!("requires_payment_method");
            pi["last_payment_error"] =
                card_error("authentication_required", "authentication_required", message, &pm, None);
            s.store_intent(&pi);
            let mut e = card_error("authentication_required", "authentication_required", message, &pm, None);
            e["payment_intent"] = pi;
            error(402, e)
        }
    }
}

fn retrieve_payment_intent(s: &FakeStripeState, r: &Req) -> (u16, Value) {
    match lock(&s.intents).get(r.id()) {
        Some(pi) => (200, pi.clone()),
        None => no_such(404, "payment_intent", r.id(), Some("intent")),
    }
}

fn cancel_payment_intent(s: &FakeStripeState, r: &Req) -> (u16, Value) {
    let now = s.now();
    let mut intents = lock(&s.intents);
    let Some(pi) = intents.get_mut(r.id()) else {
        return no_such(404, "payment_intent", r.id(), Some("intent"));
    };
    let status = pi["status"].as_str().unwrap_or_default().to_owned();
    if status == "succeeded" || status == "canceled" {
        let mut e = api_error(
            "invalid_request_error",
            Some("payment_intent_unexpected_state"),
            format!(
                "You cannot cancel this PaymentIntent because it has a status of {status}. Only a PaymentIntent \
                 with one of the following statuses may be canceled: requires_payment_method, requires_capture, \
                 requires_confirmation, requires_action, processing."
            ),
        );
        e["payment_intent"] = pi.clone();
        return error(400, e);
    }
    pi["status"] = json!("canceled");
    pi["canceled_at"] = json!(now);
    pi["cancellation_reason"] = json!(r.get("cancellation_reason"));
    pi["next_action"] = Value::Null;
    (200, pi.clone())
}

fn create_refund(s: &FakeStripeState, r: &Req) -> (u16, Value) {
    let pi = match (r.get("payment_intent"), r.get("charge")) {
        (Some(id), _) => match lock(&s.intents).get(id) {
            Some(pi) => pi.clone(),
            None => return no_such(400, "payment_intent", id, Some("payment_intent")),
        },
        (None, Some(ch)) => match lock(&s.intents).values().find(|pi| pi["latest_charge"].as_str() == Some(ch)) {
            Some(pi) => pi.clone(),
            None => return no_such(400, "charge", ch, Some("charge")),
        },
        (None, None) => return invalid(Some("parameter_missing"), "One of `charge` or `payment_intent` is required."),
    };
    let pi_id = pi["id"].as_str().unwrap_or_default().to_owned();
    if pi["status"] != "succeeded" {
        return invalid(
            Some("payment_intent_unexpected_state"),
            format!("This PaymentIntent ({pi_id}) does not have a successful charge to refund."),
        );
    }
    let received = pi["amount_received"].as_i64().unwrap_or(0);
    let refunded: i64 = lock(&s.refunds)
        .values()
        .filter(|re| re["payment_intent"].as_str() == Some(&pi_id) && re["status"] != "failed")
        .map(|re| re["amount"].as_i64().unwrap_or(0))
        .sum();
    let left = received - refunded;
    let amount = match r.get("amount") {
        None => left,
        Some(a) => match a.parse::<i64>() {
            Ok(a) if a >= 1 => a,
            _ => {
                let mut e = api_error(
                    "invalid_request_error",
                    Some("parameter_invalid_integer"),
                    "This value must be greater than or equal to 1.",
                );
                e["param"] = json!("amount");
                return error(400, e);
            }
        },
    };
    if amount > left || left <= 0 {
        let mut e = api_error(
            "invalid_request_error",
            Some("amount_too_large"),
            format!(
                "Refund amount ({amount} VND) is greater than unrefunded amount on charge ({left} VND) of \
                 PaymentIntent {pi_id}."
            ),
        );
        e["param"] = json!("amount");
        return error(400, e);
    }
    let id = s.new_id("re");
    let re = json!({
        "id": id,
        "object": "refund",
        "amount": amount,
        "balance_transaction": null,
        "charge": pi["latest_charge"],
        "created": s.now(),
        "currency": "vnd",
        "description": null,
        "failure_balance_transaction": null,
        "failure_reason": null,
        "metadata": metadata(&r.params),
        "payment_intent": pi_id,
        "reason": r.get("reason"),
        "receipt_number": null,
        "source_transfer_reversal": null,
        "status": "pending",
        "transfer_reversal": null,
    });
    lock(&s.refunds).insert(id, re.clone());
    (200, re)
}

/// Applies `created[..]`, cursors and `limit` to `items` (all of one kind), newest first.
fn list(r: &Req, url: &str, mut items: Vec<Value>, keep: impl Fn(&Value) -> bool) -> (u16, Value) {
    let limit = match r.get("limit").map(str::parse::<i64>) {
        None => 10,
        Some(Ok(n)) if (1..=100).contains(&n) => n as usize,
        Some(_) => {
            let mut e = api_error(
                "invalid_request_error",
                Some("parameter_invalid_integer"),
                "Invalid integer: limit must be between 1 and 100.",
            );
            e["param"] = json!("limit");
            return error(400, e);
        }
    };
    let key = |v: &Value| (v["created"].as_i64().unwrap_or(0), seq(v["id"].as_str().unwrap_or_default()));
    items.sort_by_key(|v| Reverse(key(v)));
    let cursor = |param: &str| -> Result<Option<(i64, u64)>, (u16, Value)> {
        let Some(id) = r.get(param) else { return Ok(None) };
        match items.iter().find(|v| v["id"] == id) {
            Some(v) => Ok(Some(key(v))),
            None => Err(no_such(400, url.trim_start_matches("/v1/").trim_end_matches('s'), id, Some(param))),
        }
    };
    let after = match cursor("starting_after") {
        Ok(c) => c,
        Err(e) => return e,
    };
    let before = match cursor("ending_before") {
        Ok(c) => c,
        Err(e) => return e,
    };
    let bound = |op: &str| r.get(&format!("created[{op}]")).and_then(|v| v.parse::<i64>().ok());
    let exact = r.get("created").and_then(|v| v.parse::<i64>().ok());
    let (gte, gt, lte, lt) = (bound("gte"), bound("gt"), bound("lte"), bound("lt"));
    let matching: Vec<Value> = items
        .into_iter()
        .filter(|v| {
            let c = v["created"].as_i64().unwrap_or(0);
            exact.is_none_or(|x| c == x)
                && gte.is_none_or(|x| c >= x)
                && gt.is_none_or(|x| c > x)
                && lte.is_none_or(|x| c <= x)
                && lt.is_none_or(|x| c < x)
                && keep(v)
        })
        .filter(|v| after.is_none_or(|a| key(v) < a) && before.is_none_or(|b| key(v) > b))
        .collect();
    let has_more = matching.len() > limit;
    let data: Vec<Value> = if before.is_some() {
        // The page just before the cursor: the `limit` oldest of the newer ones.
        matching[matching.len().saturating_sub(limit)..].to_vec()
    } else {
        matching.into_iter().take(limit).collect()
    };
    (200, json!({"object": "list", "data": data, "has_more": has_more, "url": url}))
}

fn list_payment_intents(s: &FakeStripeState, r: &Req) -> (u16, Value) {
    let items: Vec<Value> = lock(&s.intents).values().cloned().collect();
    let customer = r.get("customer").map(str::to_owned);
    list(r, "/v1/payment_intents", items, |pi| customer.as_deref().is_none_or(|c| pi["customer"] == c))
}

fn list_balance_transactions(s: &FakeStripeState, r: &Req) -> (u16, Value) {
    let now = s.now();
    let items: Vec<Value> = lock(&s.balance_transactions)
        .iter()
        .cloned()
        .map(|mut t| {
            // Pending funds become available on their day, as the clock passes it.
            if t["status"] == "pending" && t["available_on"].as_i64().is_some_and(|a| a <= now) {
                t["status"] = json!("available");
            }
            t
        })
        .collect();
    let type_ = r.get("type").map(str::to_owned);
    let source = r.get("source").map(str::to_owned);
    list(r, "/v1/balance_transactions", items, |t| {
        type_.as_deref().is_none_or(|x| t["type"] == x) && source.as_deref().is_none_or(|x| t["source"] == x)
    })
}

fn list_payouts(s: &FakeStripeState, r: &Req) -> (u16, Value) {
    let items: Vec<Value> = lock(&s.payouts).clone();
    let status = r.get("status").map(str::to_owned);
    list(r, "/v1/payouts", items, |p| status.as_deref().is_none_or(|x| p["status"] == x))
}

/// The endpoint for a request: (route name, work).
fn route(method: &Method, segs: &[&str]) -> Option<(&'static str, Work)> {
    let post = *method == Method::POST;
    let get = *method == Method::GET;
    Some(match segs {
        ["customers"] if post => ("create_customer", create_customer),
        ["setup_intents"] if post => ("create_setup_intent", create_setup_intent),
        ["setup_intents", _] if get => ("retrieve_setup_intent", retrieve_setup_intent),
        ["payment_methods", _, "detach"] if post => ("detach_payment_method", detach_payment_method),
        ["payment_intents"] if post => ("create_payment_intent", create_payment_intent),
        ["payment_intents"] if get => ("list_payment_intents", list_payment_intents),
        ["payment_intents", _] if get => ("retrieve_payment_intent", retrieve_payment_intent),
        ["payment_intents", _, "cancel"] if post => ("cancel_payment_intent", cancel_payment_intent),
        ["refunds"] if post => ("create_refund", create_refund),
        ["balance_transactions"] if get => ("list_balance_transactions", list_balance_transactions),
        ["payouts"] if get => ("list_payouts", list_payouts),
        _ => return None,
    })
}

fn respond(status: u16, body: Value, replayed: bool) -> Response {
    let mut res =
        (StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), axum::Json(body)).into_response();
    if replayed {
        res.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    res
}

async fn dispatch(
    State(s): State<Arc<FakeStripeState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    let path = uri.path().to_owned();
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let params = if method == Method::GET { url_decode(uri.query().unwrap_or_default()) } else { url_decode(&body) };
    lock(&s.calls).push(SeenCall {
        method: method.to_string(),
        path: path.clone(),
        key: key.clone(),
        params: params.clone(),
    });
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let Some(("v1", rest)) = segs.split_first().map(|(a, b)| (*a, b)) else {
        return respond(404, unrecognized(&method, &path), false);
    };
    let Some((name, work)) = route(&method, rest) else {
        return respond(404, unrecognized(&method, &path), false);
    };
    match name {
        "create_payment_intent" => lock(&s.requests).push((key.clone(), params.clone())),
        "create_refund" => lock(&s.refund_requests).push((key.clone(), params.clone())),
        "list_balance_transactions" | "list_payouts" => {
            s.list_calls.fetch_add(1, Ordering::SeqCst);
        }
        _ => {}
    }
    // One fault per request, the first scripted in this order.
    if take(&s.fail_next) {
        return respond(500, json!({"error": api_error("api_error", None, "fake outage")}), false);
    }
    let fault = if take(&s.fail_after_next) {
        Fault::FailAfter
    } else if take(&s.delay_next) {
        Fault::Delay
    } else {
        Fault::None
    };
    let decline = matches!(fault, Fault::None) && name == "create_payment_intent" && take(&s.decline_next);
    let req = Req { segs: rest.iter().map(|s| (*s).to_owned()).collect(), params, decline };
    let (status, body, replayed) = {
        // Serializes every request: an idempotency key is used by one request at a time.
        let mut keys = lock(&s.by_key);
        let route_id = format!("{method} {path}");
        match key.as_ref().filter(|_| method == Method::POST).map(|k| (k, keys.get(k))) {
            Some((_, Some(first))) if first.route == route_id && first.params == req.params => {
                (first.status, first.body.clone(), true)
            }
            Some((k, Some(_))) => {
                let (status, body) = error(
                    400,
                    api_error(
                        "idempotency_error",
                        None,
                        format!(
                            "Keys for idempotent requests can only be used with the same parameters they were \
                             first used with. Try using a key other than '{k}' if you meant to execute a \
                             different request."
                        ),
                    ),
                );
                (status, body, false)
            }
            stored => {
                let (status, body) = work(&s, &req);
                // Stripe saves the result once the endpoint started executing: successes and
                // card errors, not validation errors.
                if let Some((k, None)) = stored
                    && (status < 400 || status == 402)
                {
                    let first = Stored { route: route_id, params: req.params.clone(), status, body: body.clone() };
                    keys.insert(k.clone(), first);
                }
                (status, body, false)
            }
        }
    };
    match fault {
        Fault::FailAfter => respond(500, json!({"error": api_error("api_error", None, "fake outage")}), false),
        Fault::Delay => {
            let delay = *lock(&s.delay);
            tokio::time::sleep(delay).await;
            respond(status, body, replayed)
        }
        Fault::None => respond(status, body, replayed),
    }
}

fn unrecognized(method: &Method, path: &str) -> Value {
    json!({"error": api_error("invalid_request_error", None, format!("Unrecognized request URL ({method}: {path})."))})
}

impl FakeStripe {
    /// Starts the fake on 127.0.0.1:0.
    pub async fn start() -> FakeStripe {
        let state = Arc::new(FakeStripeState::default());
        let app = Router::new().fallback(dispatch).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind fake Stripe");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeStripe { base, state }
    }

    /// Runs a test control alone (no request in between).
    fn alone<T>(&self, f: impl FnOnce(&FakeStripeState) -> T) -> T {
        let _all = lock(&self.state.by_key);
        f(&self.state)
    }

    /// The fake's clock: the `created` of the next object (it never goes back).
    pub fn now(&self) -> i64 {
        self.state.now()
    }

    /// Sets the clock to `ts` (it then runs on with the wall clock). Objects created from now
    /// on get `created >= ts`, and never earlier than an object created before: setting it
    /// back holds it at the last timestamp handed out until it catches up.
    pub fn set_now(&self, ts: i64) {
        self.state.set_now(ts);
    }

    /// Moves the clock forward by `secs`.
    pub fn advance(&self, secs: i64) {
        lock(&self.state.clock).offset += secs;
    }

    /// The driver completes a setup intent with a card (as the app's card form would): the
    /// intent `succeeded` with a new payment method `pm_fake_N`, attached to the intent's
    /// customer, that charges like `card`. Returns the payment method's id.
    pub fn complete_setup(&self, seti_id: &str, card: FakeCard) -> String {
        self.alone(|s| {
            let pm = s.new_id("pm");
            let mut sis = lock(&s.setup_intents);
            let si = sis.get_mut(seti_id).unwrap_or_else(|| panic!("fake Stripe has no setup intent {seti_id}"));
            let object = json!({
                "id": pm,
                "object": "payment_method",
                "allow_redisplay": "unspecified",
                "billing_details": {"address": null, "email": null, "name": null, "phone": null},
                "card": {
                    "brand": card.brand(),
                    "checks": {"address_line1_check": null, "address_postal_code_check": null, "cvc_check": "pass"},
                    "country": "US",
                    "display_brand": card.brand(),
                    "exp_month": 12,
                    "exp_year": 2030,
                    "fingerprint": format!("fpfake{}", card.last4()),
                    "funding": "credit",
                    "generated_from": null,
                    "last4": card.last4(),
                    "networks": {"available": [card.brand()], "preferred": null},
                    "regulated_status": "unregulated",
                    "three_d_secure_usage": {"supported": true},
                    "wallet": null,
                },
                "created": s.now(),
                "customer": si["customer"],
                "livemode": false,
                "metadata": {},
                "type": "card",
            });
            si["status"] = json!("succeeded");
            si["payment_method"] = json!(pm);
            lock(&s.payment_methods).insert(pm.clone(), object);
            lock(&s.cards).insert(pm.clone(), card);
            pm
        })
    }

    /// The driver answers the 3-D Secure challenge of a payment intent (on-session, in the
    /// app): `ok` -> `succeeded` (a charge, a balance transaction); otherwise back to
    /// `requires_payment_method` with a `payment_intent_authentication_failure` error.
    /// Deliver the webhook with [`FakeStripe::event_object`] and [`FakeStripe::payment_intent`].
    pub fn authenticate(&self, pi_id: &str, ok: bool) {
        self.alone(|s| {
            let mut pi = lock(&s.intents)
                .get(pi_id)
                .cloned()
                .unwrap_or_else(|| panic!("fake Stripe has no payment intent {pi_id}"));
            if ok {
                s.succeed(&mut pi);
            } else {
                let pm = pi["payment_method"].as_str().and_then(|id| lock(&s.payment_methods).get(id).cloned());
                pi["status"] = json!("requires_payment_method");
                pi["next_action"] = Value::Null;
                pi["last_payment_error"] = json!({
                    "type": "invalid_request_error",
                    "code": "payment_intent_authentication_failure",
                    "message": "The provided PaymentMethod has failed authentication. You can provide \
                                payment_method_data or a new PaymentMethod to attempt to fulfill this \
                                PaymentIntent again.",
                    "payment_method": pm,
                });
            }
            s.store_intent(&pi);
        });
    }

    /// Stripe settles a refund: `ok` -> `succeeded` (and a `refund` balance transaction),
    /// otherwise `failed` with `failure_reason: expired_or_canceled_card`.
    pub fn settle_refund(&self, re_id: &str, ok: bool) {
        self.alone(|s| {
            let mut re =
                lock(&s.refunds).get(re_id).cloned().unwrap_or_else(|| panic!("fake Stripe has no refund {re_id}"));
            let amount = re["amount"].as_i64().unwrap_or(0);
            if ok {
                let txn = s.add_txn("refund", "refund", -amount, 0, Some(re_id), false);
                re["status"] = json!("succeeded");
                re["balance_transaction"] = json!(txn);
            } else {
                re["status"] = json!("failed");
                re["failure_reason"] = json!("expired_or_canceled_card");
            }
            lock(&s.refunds).insert(re_id.to_owned(), re);
        });
    }

    /// Stripe pays out `amount` to the bank: a `paid` payout `po_fake_N` and its `payout`
    /// balance transaction. Returns the payout's id.
    pub fn add_payout(&self, amount: i64) -> String {
        self.alone(|s| {
            let id = s.new_id("po");
            let txn = s.add_txn("payout", "payout", -amount, 0, Some(&id), false);
            let created = s.now();
            lock(&s.payouts).push(json!({
                "id": id,
                "object": "payout",
                "amount": amount,
                "application_fee": null,
                "application_fee_amount": null,
                "arrival_date": created + DAY,
                "automatic": true,
                "balance_transaction": txn,
                "created": created,
                "currency": "vnd",
                "description": "STRIPE PAYOUT",
                "destination": null,
                "failure_balance_transaction": null,
                "failure_code": null,
                "failure_message": null,
                "livemode": false,
                "metadata": {},
                "method": "standard",
                "original_payout": null,
                "reconciliation_status": "completed",
                "reversed_by": null,
                "source_type": "card",
                "statement_descriptor": null,
                "status": "paid",
                "trace_id": null,
                "type": "bank_account",
            }));
            id
        })
    }

    /// Any balance transaction (`type_` is also its reporting category; `available` at once).
    /// Returns its id.
    pub fn add_balance_transaction(&self, type_: &str, amount: i64, fee: i64, source: Option<&str>) -> String {
        self.alone(|s| s.add_txn(type_, type_, amount, fee, source, false))
    }

    /// A payment intent as the fake holds it now (panics if unknown).
    pub fn payment_intent(&self, id: &str) -> Value {
        lock(&self.state.intents).get(id).cloned().unwrap_or_else(|| panic!("fake Stripe has no payment intent {id}"))
    }

    /// A setup intent as the fake holds it now (panics if unknown).
    pub fn setup_intent(&self, id: &str) -> Value {
        lock(&self.state.setup_intents)
            .get(id)
            .cloned()
            .unwrap_or_else(|| panic!("fake Stripe has no setup intent {id}"))
    }

    /// A refund as the fake holds it now (panics if unknown).
    pub fn refund(&self, id: &str) -> Value {
        lock(&self.state.refunds).get(id).cloned().unwrap_or_else(|| panic!("fake Stripe has no refund {id}"))
    }

    /// A signed event about any object, as Stripe would send it: `(payload, signature header)`.
    /// `at` is the signature's timestamp (default: now).
    pub fn event_object(
        &self,
        event_id: &str,
        kind: &str,
        object: Value,
        secret: &str,
        at: Option<i64>,
    ) -> (String, String) {
        let payload = json!({
            "id": event_id,
            "object": "event",
            "api_version": API_VERSION,
            "created": self.state.now(),
            "livemode": false,
            "pending_webhooks": 1,
            "request": {"id": null, "idempotency_key": null},
            "type": kind,
            "data": {"object": object},
        })
        .to_string();
        let header = stripe_webhook::Webhook::generate_test_header(&payload, secret, at);
        (payload, header)
    }

    /// A signed event about an intent in `status` (the stored intent, with that status; an
    /// unknown id gets a made-up intent of 1 đồng): `(payload, signature header)`.
    pub fn event(
        &self,
        event_id: &str,
        kind: &str,
        intent_id: &str,
        status: &str,
        secret: &str,
        at: Option<i64>,
    ) -> (String, String) {
        let stored = lock(&self.state.intents).get(intent_id).cloned();
        let mut object = stored
            .unwrap_or_else(|| payment_intent(intent_id, 1, status, &HashMap::new(), chrono::Utc::now().timestamp()));
        let amount = object["amount"].as_i64().unwrap_or(0);
        object["status"] = json!(status);
        object["amount_received"] = json!(if status == "succeeded" { amount } else { 0 });
        self.event_object(event_id, kind, object, secret, at)
    }
}
