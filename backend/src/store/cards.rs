//! Storage of saved cards, card charges for sessions, refunds through the processor, job
//! leases and the processor's settlement data.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use iparking_mobile_api::VehicleClass;
use serde::{Deserialize, Serialize};

use super::{
    StoreResult,
    drivers::{Answer, IdemClaim, SessionRow},
};
use crate::{
    domain::{
        charge::{RefundSource, RefundStatus},
        money::Vnd,
    },
    payments::{BalanceTxn, CardInfo, Payout},
};

/// A saved card (never its number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedCard {
    /// Id.
    pub id: i64,
    /// Owner.
    pub driver_id: i64,
    /// The processor's payment method.
    pub payment_method_id: String,
    /// Brand.
    pub brand: String,
    /// Last four digits.
    pub last4: String,
    /// Expiry month.
    pub exp_month: i32,
    /// Expiry year.
    pub exp_year: i32,
    /// Saved at.
    pub created_at: DateTime<Utc>,
}

/// What a card charge buys, decided and priced before the card is charged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChargePlan {
    /// A new session.
    Start {
        /// Plate (normalised).
        plate: String,
        /// Class.
        vehicle_class: VehicleClass,
        /// Point.
        point_id: i64,
        /// The point's capacity when priced.
        capacity: i32,
        /// Tariff.
        tariff_id: i64,
        /// Start.
        started_at: DateTime<Utc>,
        /// Paid until.
        paid_until: DateTime<Utc>,
        /// Expiry (paid until plus grace).
        expires_at: DateTime<Utc>,
        /// Turns.
        turns: u32,
        /// The quote (JSON) for the receipt.
        quote: String,
    },
    /// More turns on a session.
    Extend {
        /// Session.
        session_id: i64,
        /// Turns when priced: if the session changed since, the charge is refunded.
        turns_before: u32,
        /// Turns after.
        turns_after: u32,
        /// Paid until after.
        paid_until: DateTime<Utc>,
        /// Expiry after.
        expires_at: DateTime<Utc>,
        /// The quote (JSON).
        quote: String,
    },
}

/// A charge to record before the processor is called.
#[derive(Debug, Clone)]
pub struct NewCharge {
    /// Driver.
    pub driver_id: i64,
    /// Card.
    pub card_id: i64,
    /// Amount.
    pub amount: Vnd,
    /// What it buys.
    pub plan: ChargePlan,
    /// After this, an unfinished 3-D Secure is cancelled by the sweeper.
    pub action_deadline: DateTime<Utc>,
}

/// A card charge.
#[derive(Debug, Clone, PartialEq)]
pub struct ChargeRow {
    /// Id.
    pub id: i64,
    /// Driver.
    pub driver_id: i64,
    /// Card.
    pub card_id: i64,
    /// The card's payment method.
    pub payment_method_id: String,
    /// The driver's customer at the processor.
    pub customer_id: Option<String>,
    /// Amount.
    pub amount: Vnd,
    /// What it buys.
    pub plan: ChargePlan,
    /// The session started or extended, once applied.
    pub session_id: Option<i64>,
    /// The processor's intent, once known.
    pub intent_id: Option<String>,
    /// Where it stands.
    pub status: crate::domain::charge::ChargeStatus,
    /// Decline code or reason.
    pub failure_code: Option<String>,
    /// Refunded so far.
    pub amount_refunded: Vnd,
    /// The driver's idempotency key.
    pub idem_key: String,
    /// 3-D Secure deadline.
    pub action_deadline: DateTime<Utc>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl ChargeRow {
    /// Our idempotency key for the processor's intent of this charge.
    pub fn processor_key(&self) -> String {
        format!("charge-{}", self.id)
    }
}

/// What settling a successful charge did.
#[derive(Debug, Clone)]
pub enum SettleOutcome {
    /// This event was processed before.
    Duplicate,
    /// No such charge.
    Unknown,
    /// The session started (`true`) or was extended (`false`) now, with the sessions that
    /// expired on the way.
    Applied(SessionRow, Vec<SessionRow>, bool),
    /// It was applied before.
    AlreadyApplied(Option<SessionRow>),
    /// Paid, but what it bought can no longer be given (plate parked, point full, window
    /// over, session changed, charge given up): booked as owed back, and a refund created.
    RefundDue {
        /// The refund to submit.
        refund_id: i64,
        /// Why (`plate_active`, `point_full`, `window_passed`, `session_changed`, `abandoned`).
        reason: String,
    },
    /// A refund was created for it before.
    AlreadyRefundDue(String),
}

/// What recording a non-success did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkOutcome {
    /// This event was processed before.
    Duplicate,
    /// No such charge.
    Unknown,
    /// Recorded.
    Updated,
    /// The charge had reached a final state (a success is never undone).
    Final(String),
}

/// A refund through the processor.
#[derive(Debug, Clone, PartialEq)]
pub struct RefundRow {
    /// Id.
    pub id: i64,
    /// What it pays back.
    pub source: RefundSource,
    /// The card charge refunded.
    pub charge_id: Option<i64>,
    /// The processor's intent refunded.
    pub intent_id: String,
    /// Driver.
    pub driver_id: i64,
    /// Session, if any.
    pub session_id: Option<i64>,
    /// Amount.
    pub amount: Vnd,
    /// Why.
    pub reason: String,
    /// Who asked (`driver:N`, `staff:N`, `system`).
    pub requested_by: String,
    /// The processor's refund id, once submitted.
    pub processor_refund_id: Option<String>,
    /// Where it stands.
    pub status: RefundStatus,
    /// Why it failed.
    pub failure_reason: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
}

impl RefundRow {
    /// Our idempotency key for the processor's refund.
    pub fn processor_key(&self) -> String {
        format!("refund-{}", self.id)
    }
}

/// What settling a refund did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundSettle {
    /// This event was processed before.
    Duplicate,
    /// No such refund.
    Unknown,
    /// The status was recorded; not final yet.
    Pending,
    /// Final now: `true` if the money went back to the card, `false` if the refund failed
    /// and the amount was credited to the driver's wallet instead.
    Settled(bool),
    /// It was final before.
    AlreadyFinal,
}

/// A refund to record, to submit to the processor.
#[derive(Debug, Clone, Copy)]
pub struct NewRefund<'a> {
    /// `topup` or `card_charge`.
    pub source: &'a str,
    /// The card charge refunded, if any.
    pub charge_id: Option<i64>,
    /// The processor's intent refunded.
    pub intent_id: &'a str,
    /// Whose money.
    pub driver_id: i64,
    /// The session, if any.
    pub session_id: Option<i64>,
    /// How much.
    pub amount: Vnd,
    /// Why.
    pub reason: &'a str,
    /// Who asked (`driver:N`, `staff:N`, `system`).
    pub requested_by: &'a str,
}

/// A driver's money held in `from` (the wallet, or a refund hold) to send back where it
/// came from: card top-ups, newest first, then (demo only, `sandbox`) the sandbox; what
/// neither can take stays in the wallet (moved there when `rest_to_wallet`). One ledger
/// entry of kind `kind`.
#[derive(Debug, Clone)]
pub struct BackToOriginOrder<'a> {
    /// Whose money.
    pub driver_id: i64,
    /// Where it is held.
    pub from: crate::domain::ledger::Account,
    /// How much.
    pub amount: Vnd,
    /// Play money may go back to the sandbox (the demo).
    pub sandbox: bool,
    /// What is left goes to the wallet.
    pub rest_to_wallet: bool,
    /// The ledger entry's kind.
    pub kind: &'static str,
    /// Why (each refund's reason).
    pub reason: &'a str,
    /// Who asked.
    pub requested_by: &'a str,
}

/// A card setup to record: its processor id, driver and status; in the demo, the sandbox
/// card it saves.
#[derive(Debug, Clone, Copy)]
pub struct SetupRecord<'a> {
    /// The processor's setup id.
    pub setup_id: &'a str,
    /// Whose card.
    pub driver_id: i64,
    /// The processor's status of the setup.
    pub status: &'a str,
    /// The SANDBOX card saved at once (the demo's gateway, which no processor calls back for).
    pub sandbox_card: Option<&'a crate::payments::CardInfo>,
}

/// Part or all of a session to refund, by whom and why.
#[derive(Debug, Clone, Copy)]
pub struct SessionRefundOrder<'a> {
    /// The session.
    pub session_id: i64,
    /// How much.
    pub amount: Vnd,
    /// Why.
    pub reason: &'a str,
    /// Who asked (`staff:N`).
    pub requested_by: &'a str,
}

/// Outcome of a refund of a session (stop, or staff).
#[derive(Debug, Clone)]
pub enum SessionRefund {
    /// Done: the session and the processor refunds to submit.
    Done(Box<SessionRow>, Vec<RefundRow>),
    /// No such session.
    NotFound,
    /// More than what is left to refund.
    TooLarge {
        /// What can still be refunded.
        refundable: Vnd,
    },
    /// Nothing paid by wallet or card (SMS, cash).
    NotRefundable,
}

/// Outcome of closing a driver's account.
#[derive(Debug, Clone)]
pub enum CloseAccount {
    /// Closed: the refunds to submit and what is left in the wallet (not refundable by card).
    Closed(Vec<RefundRow>, Vnd),
    /// The driver has active sessions.
    ActiveSessions,
    /// A card payment is still open (e.g. waiting for 3-D Secure).
    PaymentInProgress,
    /// Closed before.
    AlreadyClosed,
}

/// The progress of a paginated settlement import.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportState {
    /// The next run lists objects created at or after this (unix seconds).
    pub high_water: i64,
    /// A run in progress: its lower bound, its cursor, the newest `created` it saw.
    pub run: Option<(i64, Option<String>, i64)>,
}

/// A page of settlement data.
#[derive(Debug, Clone)]
pub enum SettlementPage {
    /// Balance transactions.
    Balance(Vec<BalanceTxn>),
    /// Payouts.
    Payouts(Vec<Payout>),
}

/// Cards, charges, refunds, leases, settlement.
#[async_trait]
pub trait CardStore: Send + Sync {
    /// The driver's customer at the processor.
    async fn processor_customer(&self, driver_id: i64) -> StoreResult<Option<String>>;
    /// Records the driver's customer; if another was recorded first, returns that one.
    async fn put_processor_customer(
        &self,
        driver_id: i64,
        customer: &str,
        gateway: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<String>;
    /// Records a card setup started by a driver; claims `idem` and stores the answer
    /// `answer` renders, in the same transaction. A SANDBOX setup's play card
    /// (`sandbox_card`, no processor calls back) is saved in that transaction too.
    async fn record_setup(
        &self,
        setup: &SetupRecord<'_>,
        idem: Option<&IdemClaim>,
        answer: &super::drivers::Answer<'_, Option<SavedCard>>,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<SavedCard>>;
    /// The driver who started a setup.
    async fn setup_driver(&self, setup_id: &str) -> StoreResult<Option<i64>>;
    /// Saves the card of a succeeded setup, once (per event and per payment method).
    async fn save_card(
        &self,
        setup_id: &str,
        card: &CardInfo,
        event: Option<(&str, &str)>,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<SavedCard>>;
    /// A driver's cards.
    async fn cards(&self, driver_id: i64) -> StoreResult<Vec<SavedCard>>;
    /// Removes a driver's card (it is never charged again).
    async fn remove_card(&self, driver_id: i64, card_id: i64, now: DateTime<Utc>) -> StoreResult<Option<SavedCard>>;

    /// Records a pending charge and claims `idem`, in one transaction, before the processor
    /// is called.
    async fn create_charge(&self, new: &NewCharge, idem: &IdemClaim, now: DateTime<Utc>) -> StoreResult<ChargeRow>;
    /// The charge made under a driver's idempotency key.
    async fn charge_by_idem(&self, scope: &str, key: &str) -> StoreResult<Option<ChargeRow>>;
    /// A charge.
    async fn charge(&self, id: i64) -> StoreResult<Option<ChargeRow>>;
    /// The charge of a processor intent.
    async fn charge_by_intent(&self, intent_id: &str) -> StoreResult<Option<ChargeRow>>;
    /// Records a non-success (`requires_action`, `failed`, `canceled`, `abandoned`,
    /// `pending` with an intent) unless the charge is final; once per event.
    async fn mark_charge(
        &self,
        id: i64,
        intent_id: Option<&str>,
        status: crate::domain::charge::ChargeStatus,
        failure_code: Option<&str>,
        event: Option<(&str, &str)>,
        now: DateTime<Utc>,
    ) -> StoreResult<MarkOutcome>;
    /// The processor says the charge succeeded: applies what it bought (session start or
    /// extension, paid from processor clearing) in one transaction, or, if that can no
    /// longer be given, books the amount as owed back and creates its refund.
    async fn settle_charge(
        &self,
        id: i64,
        intent_id: &str,
        charge_ref: Option<&str>,
        event: Option<(&str, &str)>,
        now: DateTime<Utc>,
    ) -> StoreResult<SettleOutcome>;
    /// Charges still open (`pending`, `requires_action`) last changed before `before`.
    async fn open_charges(&self, before: DateTime<Utc>, limit: i64) -> StoreResult<Vec<ChargeRow>>;

    /// Refunds `amount` of a session by a staff decision: card-paid parts go back to their
    /// cards (newest charge first), the rest to the wallet. (A driver's stop refunds the
    /// same way, inside `stop_session`.) With a key, `answer` renders the answer from the
    /// session and its new refunds (`pending`, by id) as the transaction left them, and it is
    /// stored with the key before the commit.
    async fn refund_session(
        &self,
        refund: &SessionRefundOrder<'_>,
        idem: Option<&IdemClaim>,
        answer: &Answer<'_, (SessionRow, Vec<RefundRow>)>,
        now: DateTime<Utc>,
    ) -> StoreResult<SessionRefund>;
    /// Closes a driver's account: the wallet goes back to the card top-ups (newest first);
    /// with `sandbox`, what is left (SANDBOX play money) goes back to the sandbox. With a
    /// key, `answer` renders the answer from the refunds (`pending`, by id) and what is left,
    /// and it is stored with the key before the commit.
    async fn close_account(
        &self,
        driver_id: i64,
        sandbox: bool,
        idem: Option<&IdemClaim>,
        answer: &Answer<'_, (Vec<RefundRow>, Vnd)>,
        now: DateTime<Utc>,
    ) -> StoreResult<CloseAccount>;
    /// Refunds of a session.
    async fn session_refunds(&self, session_id: i64) -> StoreResult<Vec<RefundRow>>;
    /// A driver's refunds, newest first.
    async fn driver_refunds(&self, driver_id: i64) -> StoreResult<Vec<RefundRow>>;
    /// A refund by the processor's id.
    async fn refund_by_processor_id(&self, processor_refund_id: &str) -> StoreResult<Option<RefundRow>>;
    /// A refund.
    async fn refund(&self, id: i64) -> StoreResult<Option<RefundRow>>;
    /// Refunds not yet accepted by the processor, created before `before`.
    async fn unsubmitted_refunds(&self, before: DateTime<Utc>, limit: i64) -> StoreResult<Vec<RefundRow>>;
    /// Records the processor's refund id and status after submitting.
    async fn refund_submitted(&self, id: i64, processor_refund_id: &str, now: DateTime<Utc>) -> StoreResult<()>;
    /// A refund's final status (`succeeded`, `failed`, `canceled`) or progress: the ledger
    /// follows it (owed → processor clearing; or, failed, owed → the driver's wallet).
    async fn settle_refund(
        &self,
        id: i64,
        status: &str,
        failure_reason: Option<&str>,
        event: Option<(&str, &str)>,
        now: DateTime<Utc>,
    ) -> StoreResult<RefundSettle>;
    /// Top-up intents not credited, created between `from` and `before` (for the sweeper).
    async fn uncredited_topups(&self, from: DateTime<Utc>, before: DateTime<Utc>) -> StoreResult<Vec<String>>;

    /// Takes or renews the lease `name` for `holder` until `until`; `false` if another
    /// holder's lease is still running.
    async fn try_lease(&self, name: &str, holder: &str, until: DateTime<Utc>, now: DateTime<Utc>) -> StoreResult<bool>;

    /// The progress of the `kind` import (`balance_transactions`, `payouts`).
    async fn import_state(&self, kind: &str) -> StoreResult<ImportState>;
    /// Stores a page and the run's progress in one transaction; `done` ends the run (the
    /// next one starts at the newest `created` seen).
    async fn import_page(
        &self,
        kind: &str,
        run_from: i64,
        page: &SettlementPage,
        done: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<usize>;
}

/// Where a refund of wallet money went (see `refund_to_origin` in the SQL stores).
#[derive(Debug, Clone)]
pub struct BackToOrigin {
    /// Processor refunds to submit (card top-ups).
    pub refunds: Vec<RefundRow>,
    /// Sent back to cards.
    pub to_cards: Vnd,
    /// Demo only: play money back to the sandbox.
    pub to_sandbox: Vnd,
    /// Neither could take it: it is (or stays) in the wallet.
    pub left: Vnd,
}
