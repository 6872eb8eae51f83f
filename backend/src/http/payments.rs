//! Card payments: wallet top-ups through the processor, and the processor's webhooks.

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
};
use iparking_mobile_api::{ErrorBody, TopupRequest, TopupView};
use stripe_webhook::{EventObject, Webhook, WebhookError};

use super::{
    AppState,
    extract::{Driver, Json},
    idempotency::Idempotency,
    input::parse_json,
};
use crate::{
    app::charges,
    domain::money::Vnd,
    error::AppError,
    payments::{IntentState, PaymentError},
    store::drivers::{IntentEventOutcome, NewIntent},
};

/// Tops up the wallet by card: creates a payment intent with the processor (with our own
/// idempotency key) and returns what the app needs to collect the card. The wallet is
/// credited only when the processor's signed webhook reports success, exactly once. In the
/// demo SANDBOX the intent succeeds at once (play money). Needs an `Idempotency-Key`.
#[utoipa::path(
    post, path = "/v1/me/wallet/topups", tag = "drivers", request_body = TopupRequest, security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, description = "Unique per top-up; retries reuse it")),
    responses(
        (status = 201, description = "Payment intent created", body = TopupView),
        (status = 400, description = "Amount out of range, missing Idempotency-Key", body = ErrorBody),
        (status = 402, description = "Refused by the processor", body = ErrorBody),
        (status = 404, description = "Card payments are not configured", body = ErrorBody),
        (status = 503, description = "The processor is unavailable (retry with the same key)", body = ErrorBody),
    )
)]
pub async fn create_topup(
    State(app): State<AppState>,
    Driver(d): Driver,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let Some(gateway) = app.payments.clone() else {
        return Err(AppError::not_found(
            "payments_disabled",
            "Máy chủ này chưa cấu hình thanh toán thẻ.",
            "Card payments are not configured on this server.",
        ));
    };
    let idem = match Idempotency::for_driver(&app, d.driver_id, &headers, "/v1/me/wallet/topups", &body).await? {
        Ok(idem) => idem,
        Err(replayed) => return Ok(replayed),
    };
    let req: TopupRequest = parse_json(&headers, &body)?;
    let (min, max) = (app.settings.topup_min, app.settings.topup_max);
    if !(min..=max).contains(&req.amount) {
        return Err(AppError::bad_request(
            "invalid_amount",
            format!("Số tiền nạp phải từ {} đến {}.", Vnd(min).display(false), Vnd(max).display(false)),
            format!("A top-up must be between {} and {}.", Vnd(min).display(true), Vnd(max).display(true)),
        ));
    }
    let amount = Vnd(req.amount);
    // Our key for the processor: per driver and client key, so a retry reaches the same intent.
    let processor_key = format!("topup-{}-{}", d.driver_id, idem.claim().key);
    let intent = gateway.create_topup(d.driver_id, amount, &processor_key).await.map_err(|e| match e {
        PaymentError::Refused { code, message } => {
            tracing::info!(driver.id = d.driver_id, payment.code = %code, "top-up refused by the processor");
            AppError::new(
                StatusCode::PAYMENT_REQUIRED,
                "payment_refused",
                "Đơn vị thanh toán từ chối giao dịch.",
                "The payment processor refused the payment.",
            )
            .with_details(serde_json::json!({ "processor_code": code, "processor_message": message }))
        }
        PaymentError::Unavailable(cause) => {
            crate::warn_throttled!(error = %cause, "payment processor unavailable");
            AppError::unavailable("payment processor")
        }
    })?;
    let now = app.clock.now();
    let sandbox_event = format!("sandbox_evt_{}", intent.id);
    let record = NewIntent {
        id: &intent.id,
        driver_id: d.driver_id,
        amount,
        gateway: gateway.name(),
        status: &intent.status,
        // SANDBOX: no processor will call back; the success is applied as its webhook would,
        // in the transaction that records the intent and the key's answer.
        applied_event: (gateway.is_sandbox() && intent.status == "succeeded").then_some(sandbox_event.as_str()),
    };
    let view = |status: &str| TopupView {
        intent_id: intent.id.clone(),
        client_secret: intent.client_secret.clone(),
        status: status.to_owned(),
        amount: amount.get(),
        gateway: gateway.name().into(),
        sandbox: gateway.is_sandbox(),
    };
    let answer = |status: &str| super::idempotency::rendered(StatusCode::CREATED, &view(status));
    if let Err(e) = app.store.record_intent(&record, Some(idem.claim()), &answer, now).await {
        return idem.on_store_error(&app, e).await;
    }
    let status = if record.applied_event.is_some() { "succeeded" } else { intent.status.as_str() };
    tracing::info!(
        driver.id = d.driver_id,
        amount_vnd = amount.get(),
        gateway = gateway.name(),
        "top-up intent created"
    );
    let (code, json) = answer(status)?;
    Ok(Idempotency::stored_answer(code, json))
}

/// Stripe's webhooks. The raw body's signature is verified (with the 300 s tolerance) before
/// anything is parsed; events are deduplicated by id; a `payment_intent.succeeded` credits
/// the wallet once, whatever the order of events; other types are acknowledged and ignored.
#[utoipa::path(
    post, path = "/webhooks/stripe", tag = "webhooks",
    request_body(content = String, content_type = "application/json", description = "Stripe event, signed"),
    params(("Stripe-Signature" = String, Header, description = "Stripe's signature header")),
    responses(
        (status = 200, description = "Processed (or a duplicate)"),
        (status = 400, description = "Bad or stale signature, unreadable event", body = ErrorBody),
        (status = 404, description = "Stripe is not configured", body = ErrorBody),
    )
)]
pub async fn stripe_event(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, AppError> {
    let bad = |why: &str| {
        tracing::warn!(reason = why, "Stripe webhook refused");
        AppError::bad_request("invalid_signature", "Chữ ký webhook không hợp lệ.", format!("Invalid webhook: {why}."))
    };
    // The request's shape first (a missing signature is the sender's error), then whether
    // Stripe is configured here.
    let payload = std::str::from_utf8(&body).map_err(|_| bad("body is not UTF-8"))?;
    let signature =
        headers.get("stripe-signature").and_then(|v| v.to_str().ok()).ok_or_else(|| bad("no Stripe-Signature"))?;
    let Some(secret) = app.stripe_webhook_secret() else {
        return Err(AppError::not_found("payments_disabled", "Chưa cấu hình Stripe.", "Stripe is not configured."));
    };
    let event = Webhook::construct_event(payload, signature, secret).map_err(|e| match e {
        WebhookError::BadTimestamp(_) => bad("stale timestamp"),
        WebhookError::BadParse(_) => bad("unreadable event"),
        _ => bad("bad signature"),
    })?;
    let event_id = event.id.to_string();
    let event_type = event.type_.as_str().to_owned();
    let now = app.clock.now();
    let (intent, status) = match &event.data.object {
        EventObject::PaymentIntentSucceeded(pi)
        | EventObject::PaymentIntentPaymentFailed(pi)
        | EventObject::PaymentIntentCanceled(pi)
        | EventObject::PaymentIntentRequiresAction(pi) => (pi, pi.status.as_str().to_owned()),
        EventObject::RefundCreated(r)
        | EventObject::RefundUpdated(r)
        | EventObject::RefundFailed(r)
        | EventObject::ChargeRefundUpdated(r) => {
            let status = r.status.clone().unwrap_or_else(|| "pending".into());
            let word = charges::refund_event(
                &app,
                &event_id,
                &event_type,
                r.id.as_str(),
                &status,
                r.failure_reason.as_deref(),
                r.metadata.as_ref(),
            )
            .await?;
            return Ok(Json(serde_json::json!({ "received": true, "outcome": word })));
        }
        EventObject::SetupIntentSucceeded(si) => {
            let word = charges::setup_event(&app, &event_id, &event_type, si.id.as_str()).await?;
            return Ok(Json(serde_json::json!({ "received": true, "outcome": word })));
        }
        _ => {
            tracing::info!(stripe.event = %event_type, "Stripe event acknowledged and ignored");
            return Ok(Json(serde_json::json!({ "received": true, "outcome": "ignored" })));
        }
    };
    let intent_id = intent.id.to_string();
    let state = IntentState {
        id: intent_id.clone(),
        status: status.clone(),
        amount: intent.amount,
        amount_received: intent.amount_received,
        charge: intent.latest_charge.as_ref().map(|c| c.id().to_string()),
        metadata: intent.metadata.clone(),
        client_secret: None,
        created: intent.created,
        last_error: intent.last_payment_error.as_ref().and_then(|e| {
            e.decline_code
                .clone()
                .filter(|c| c == "authentication_required")
                .or_else(|| e.code.as_ref().map(|c| c.as_str().to_owned()))
        }),
    };
    let charge = state.charge.clone();
    // A session paid by card?
    if let Some(word) = charges::charge_event(&app, &event_id, &event_type, state).await? {
        return Ok(Json(serde_json::json!({ "received": true, "outcome": word })));
    }
    if event_type == "payment_intent.requires_action" {
        return Ok(Json(serde_json::json!({ "received": true, "outcome": "ignored" })));
    }
    let mut outcome =
        app.store.apply_intent_event(&event_id, &event_type, &intent_id, &status, charge.as_deref(), now).await?;
    if outcome == IntentEventOutcome::UnknownIntent
        && status == "succeeded"
        && intent.metadata.get("purpose").map(String::as_str) == Some("wallet_topup")
        && let Some(driver_id) = intent.metadata.get("driver_id").and_then(|d| d.parse::<i64>().ok())
        && app.store.driver_phone(driver_id).await?.is_some()
        && intent.amount > 0
    {
        // Our top-up whose record was never written (the answer to the app was lost after
        // Stripe created the intent): our metadata says whose it is. Record it and credit.
        let gateway = app.payments.as_ref().map_or("stripe", |g| g.name());
        let record = NewIntent {
            id: &intent_id,
            driver_id,
            amount: Vnd(intent.amount),
            gateway,
            status: &status,
            applied_event: None,
        };
        app.store.record_intent(&record, None, &crate::store::drivers::no_answer, now).await?;
        outcome = app
            .store
            .apply_intent_event(&format!("{event_id}:orphan"), &event_type, &intent_id, &status, charge.as_deref(), now)
            .await?;
    }
    let word = match &outcome {
        IntentEventOutcome::Duplicate => "duplicate",
        IntentEventOutcome::UnknownIntent => "unknown_intent",
        IntentEventOutcome::Credited { .. } => "credited",
        IntentEventOutcome::Updated => "updated",
    };
    if let IntentEventOutcome::Credited { driver_id, amount } = outcome {
        tracing::info!(driver.id = driver_id, amount_vnd = amount.get(), "wallet credited by card top-up");
    }
    Ok(Json(serde_json::json!({ "received": true, "outcome": word })))
}
