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

/// A saved card as the processor describes it (never the number: brand, last four, expiry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardInfo {
    /// The processor's payment method id (`pm_…`).
    pub payment_method: String,
    /// Brand (`visa`, …).
    pub brand: String,
    /// Last four digits.
    pub last4: String,
    /// Expiry month.
    pub exp_month: i32,
    /// Expiry year.
    pub exp_year: i32,
}

/// A card setup (Stripe SetupIntent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setup {
    /// The processor's id (`seti_…`).
    pub id: String,
    /// What the app needs to collect the card.
    pub client_secret: Option<String>,
    /// Status (`requires_payment_method`, `succeeded`, …).
    pub status: String,
    /// The customer it belongs to.
    pub customer: Option<String>,
    /// The card saved, once it succeeded.
    pub card: Option<CardInfo>,
}

/// A payment intent's state at the processor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntentState {
    /// Id (`pi_…`).
    pub id: String,
    /// Status.
    pub status: String,
    /// Amount.
    pub amount: i64,
    /// Amount received.
    pub amount_received: i64,
    /// The successful charge (`ch_…`), for settlement matching.
    pub charge: Option<String>,
    /// Our metadata.
    pub metadata: std::collections::HashMap<String, String>,
    /// What the app needs to finish it on-session.
    pub client_secret: Option<String>,
    /// Created (unix seconds).
    pub created: i64,
    /// The last attempt's error code (`authentication_required`, a decline code, …).
    pub last_error: Option<String>,
}

impl IntentState {
    /// Whether the last attempt failed only for want of 3-D Secure (the driver can still
    /// authenticate on-session).
    pub fn needs_authentication(&self) -> bool {
        self.last_error.as_deref() == Some("authentication_required")
    }
}

/// What an off-session card charge came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeResult {
    /// Paid.
    Succeeded(IntentState),
    /// The bank wants the driver to authenticate (3-D Secure): the app confirms the intent
    /// with its client secret, and the processor's webhook reports the result.
    RequiresAction(IntentState),
    /// Declined: the processor's decline code and message.
    Declined {
        /// The intent, when the processor created one.
        intent: Option<IntentState>,
        /// Decline code (`insufficient_funds`, `card_declined`, …).
        code: String,
        /// The processor's message.
        message: String,
    },
    /// Still processing (the webhook reports the result).
    Processing(IntentState),
}

/// A charge to make with a saved card.
#[derive(Debug, Clone)]
pub struct ChargeRequest<'a> {
    /// The driver's customer.
    pub customer: &'a str,
    /// The saved card.
    pub payment_method: &'a str,
    /// Amount.
    pub amount: Vnd,
    /// Metadata linking the intent to our records.
    pub metadata: Vec<(&'static str, String)>,
    /// Our idempotency key.
    pub idempotency_key: &'a str,
}

/// A refund at the processor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundState {
    /// Id (`re_…`).
    pub id: String,
    /// Status (`pending`, `succeeded`, `failed`, `canceled`, `requires_action`).
    pub status: String,
    /// Amount.
    pub amount: i64,
    /// Why it failed, when it did.
    pub failure_reason: Option<String>,
    /// Our metadata.
    pub metadata: std::collections::HashMap<String, String>,
}

/// A balance transaction (settlement data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceTxn {
    /// Id (`txn_…`).
    pub id: String,
    /// Type (`charge`, `refund`, `payout`, …).
    pub type_: String,
    /// Reporting category.
    pub reporting_category: String,
    /// Gross amount.
    pub amount: i64,
    /// Fees.
    pub fee: i64,
    /// Net.
    pub net: i64,
    /// Currency.
    pub currency: String,
    /// `pending` or `available`.
    pub status: String,
    /// The object it comes from (`ch_…`, `re_…`, `po_…`).
    pub source: Option<String>,
    /// Created (unix seconds).
    pub created: i64,
    /// Available on (unix seconds).
    pub available_on: i64,
}

/// A payout to the city's bank account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payout {
    /// Id (`po_…`).
    pub id: String,
    /// Amount.
    pub amount: i64,
    /// Currency.
    pub currency: String,
    /// Status.
    pub status: String,
    /// Arrival date (unix seconds).
    pub arrival_date: i64,
    /// Its balance transaction.
    pub balance_transaction: Option<String>,
    /// Created (unix seconds).
    pub created: i64,
}

/// One page of a list, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// Items.
    pub items: Vec<T>,
    /// Whether more follow (older).
    pub has_more: bool,
}

/// A card processor. Every state-changing call takes our idempotency key: the same key
/// always reaches the same object, so a retried call never charges or refunds twice.
#[async_trait]
pub trait PaymentGateway: Send + Sync + 'static {
    /// `stripe` or `sandbox`.
    fn name(&self) -> &'static str;
    /// Whether this is the demo sandbox (no real money).
    fn is_sandbox(&self) -> bool;
    /// Creates a payment intent to top up `driver_id`'s wallet by `amount`. The same
    /// `idempotency_key` always yields the same intent.
    async fn create_topup(&self, driver_id: i64, amount: Vnd, idempotency_key: &str) -> Result<Intent, PaymentError>;
    /// Creates the driver's customer.
    async fn create_customer(&self, driver_id: i64, idempotency_key: &str) -> Result<String, PaymentError>;
    /// Starts saving a card for later off-session charges.
    async fn create_setup(&self, customer: &str, driver_id: i64, idempotency_key: &str) -> Result<Setup, PaymentError>;
    /// A setup's state, with the card once saved.
    async fn setup(&self, id: &str) -> Result<Setup, PaymentError>;
    /// Detaches a saved card from its customer: it can no longer be charged.
    async fn detach_card(&self, payment_method: &str) -> Result<(), PaymentError>;
    /// Charges a saved card off-session, confirming at once.
    async fn charge(&self, req: &ChargeRequest<'_>) -> Result<ChargeResult, PaymentError>;
    /// A payment intent's state.
    async fn intent(&self, id: &str) -> Result<Option<IntentState>, PaymentError>;
    /// The customer's intents created at or after `created_gte`, newest first (for the
    /// sweeper to find an intent whose creation answer was lost).
    async fn customer_intents(&self, customer: &str, created_gte: i64) -> Result<Vec<IntentState>, PaymentError>;
    /// Cancels an intent that was never paid; returns its state afterwards.
    async fn cancel_intent(&self, id: &str) -> Result<IntentState, PaymentError>;
    /// Refunds `amount` of a paid intent.
    async fn refund(
        &self,
        intent_id: &str,
        amount: Vnd,
        metadata: Vec<(&'static str, String)>,
        idempotency_key: &str,
    ) -> Result<RefundState, PaymentError>;
    /// Balance transactions created at or after `created_gte`, newest first, after the
    /// cursor `starting_after`.
    async fn balance_transactions(
        &self,
        created_gte: i64,
        starting_after: Option<&str>,
        limit: i64,
    ) -> Result<Page<BalanceTxn>, PaymentError>;
    /// Payouts, as for balance transactions.
    async fn payouts(
        &self,
        created_gte: i64,
        starting_after: Option<&str>,
        limit: i64,
    ) -> Result<Page<Payout>, PaymentError>;
}
