//! Cards: saved cards (`/v1/me/cards`), card charges (`/v1/me/charges/{id}`), refunds and
//! account closing, and the payments jobs' manual runs: the HTTP side of `app::charges`
//! and `app::refunds`.

pub mod charges;
pub mod jobs;
pub mod refunds;

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
};
use iparking_mobile_api::{CardSetupView, CardView, ErrorBody};

use super::{
    AppState,
    extract::{Driver, Json, Path},
    idempotency::{Idempotency, rendered},
};
use crate::{
    app::charges::{card_not_found, customer, gateway, unavailable},
    error::AppError,
    payments::PaymentError,
    store::cards::{SavedCard, SetupRecord},
};

pub use charges::{charge_response, keyed_charge_response};

fn card_view(c: &SavedCard) -> CardView {
    CardView {
        id: c.id,
        brand: c.brand.clone(),
        last4: c.last4.clone(),
        exp_month: c.exp_month,
        exp_year: c.exp_year,
        created_at: c.created_at,
    }
}

/// Starts saving a card: creates the processor's setup (Stripe SetupIntent, for off-session
/// use) and returns what the app needs to collect the card. The card is saved when the
/// processor's signed webhook reports the setup succeeded (SANDBOX: at once, a play card).
/// Needs an `Idempotency-Key`.
#[utoipa::path(
    post, path = "/v1/me/cards/setups", tag = "drivers", security(("bearer" = [])),
    request_body(content = Option<super::input::EmptyBody>, content_type = "application/json", description = "None, or `{}`"),
    params(("Idempotency-Key" = String, Header, description = "Unique per setup")),
    responses(
        (status = 201, description = "Setup created", body = CardSetupView),
        (status = 400, description = "Missing Idempotency-Key", body = ErrorBody),
        (status = 404, description = "Card payments are not configured", body = ErrorBody),
        (status = 503, description = "The processor is unavailable (retry with the same key)", body = ErrorBody),
    )
)]
pub async fn create_setup(
    State(app): State<AppState>,
    Driver(d): Driver,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let gw = gateway(&app)?;
    super::input::require_empty_body(&headers, &body)?;
    let idem = match Idempotency::for_driver(&app, d.driver_id, &headers, "/v1/me/cards/setups", &body).await? {
        Ok(idem) => idem,
        Err(replayed) => return Ok(replayed),
    };
    let customer = customer(&app, gw.as_ref(), d.driver_id).await?;
    let key = format!("setup-{}-{}", d.driver_id, idem.claim().key);
    let setup = gw.create_setup(&customer, d.driver_id, &key).await.map_err(|e| match e {
        PaymentError::Unavailable(_) => unavailable(&e),
        PaymentError::Refused { code, message } => AppError::new(
            StatusCode::PAYMENT_REQUIRED,
            "payment_refused",
            "Đơn vị thanh toán từ chối yêu cầu.",
            "The payment processor refused the request.",
        )
        .with_details(serde_json::json!({ "processor_code": code, "processor_message": message })),
    })?;
    let now = app.clock.now();
    // SANDBOX: no processor will call back; the play card is saved as its webhook would, in
    // the transaction that records the setup and the key's answer.
    let sandbox_card = setup.card.as_ref().filter(|_| gw.is_sandbox());
    let view = |card: &Option<SavedCard>| CardSetupView {
        setup_id: setup.id.clone(),
        client_secret: setup.client_secret.clone(),
        status: setup.status.clone(),
        card: card.as_ref().map(card_view),
        gateway: gw.name().into(),
        sandbox: gw.is_sandbox(),
    };
    let answer = |card: &Option<SavedCard>| rendered(StatusCode::CREATED, &view(card));
    let saved = match app
        .store
        .record_setup(
            &SetupRecord { setup_id: &setup.id, driver_id: d.driver_id, status: &setup.status, sandbox_card },
            Some(idem.claim()),
            &answer,
            now,
        )
        .await
    {
        Ok(saved) => saved,
        Err(e) => return idem.on_store_error(&app, e).await,
    };
    let (code, json) = answer(&saved)?;
    Ok(Idempotency::stored_answer(code, json))
}

/// The driver's saved cards (brand, last four digits, expiry: never the number).
#[utoipa::path(
    get, path = "/v1/me/cards", tag = "drivers", security(("bearer" = [])),
    responses((status = 200, description = "Saved cards", body = [CardView]))
)]
pub async fn list_cards(State(app): State<AppState>, Driver(d): Driver) -> Result<Json<Vec<CardView>>, AppError> {
    Ok(Json(app.store.cards(d.driver_id).await?.iter().map(card_view).collect()))
}

/// Removes a saved card: it is detached at the processor and never charged again.
#[utoipa::path(
    delete, path = "/v1/me/cards/{id}", tag = "drivers", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Card id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such card (or another driver's)", body = ErrorBody),
    )
)]
pub async fn remove_card(
    State(app): State<AppState>,
    Driver(d): Driver,
    Path(id): Path<i64>,
) -> Result<StatusCode, AppError> {
    let removed = app.store.remove_card(d.driver_id, id, app.clock.now()).await?.ok_or_else(card_not_found)?;
    if let Some(gw) = &app.payments
        && let Err(e) = gw.detach_card(&removed.payment_method_id).await
    {
        // We never charge it again whatever happens; the processor keeps a dormant card.
        tracing::warn!(error = %e, card.id = removed.id, "card removed here but not detached at the processor");
    }
    Ok(StatusCode::NO_CONTENT)
}
