//! Card payments: the [`PaymentGateway`] trait, the Stripe adapter and the demo sandbox.
//!
//! A wallet top-up is a payment intent created with the processor; the wallet is credited
//! only when the processor's signed webhook says the intent succeeded (see
//! `http::webhooks::stripe_event`), exactly once, in the same transaction as the event's
//! deduplication record.

use async_trait::async_trait;

use crate::domain::money::Vnd;

mod sandbox;
mod stripe;

pub use sandbox::SandboxGateway;
pub use stripe::StripeGateway;

/// A payment intent as the app needs it to let the driver pay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    /// The processor's id (`pi_…`).
    pub id: String,
    /// What the app needs to confirm the payment (Stripe's `client_secret`).
    pub client_secret: Option<String>,
    /// The processor's status (`requires_payment_method`, `succeeded`, …).
    pub status: String,
}

/// What can go wrong talking to the processor.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PaymentError {
    /// The processor refused (card declined, invalid request): not retryable as is.
    #[error("refused by the processor: {code}: {message}")]
    Refused {
        /// The processor's code (e.g. `card_declined`).
        code: String,
        /// Its message.
        message: String,
    },
    /// The processor could not be reached or failed after the retries.
    #[error("processor unavailable: {0}")]
    Unavailable(String),
}

/// A card processor.
#[async_trait]
pub trait PaymentGateway: Send + Sync + 'static {
    /// `stripe` or `sandbox`.
    fn name(&self) -> &'static str;
    /// Whether this is the demo sandbox (no real money).
    fn is_sandbox(&self) -> bool;
    /// Creates a payment intent to top up `driver_id`'s wallet by `amount`. The same
    /// `idempotency_key` always yields the same intent.
    async fn create_topup(&self, driver_id: i64, amount: Vnd, idempotency_key: &str) -> Result<Intent, PaymentError>;
}
