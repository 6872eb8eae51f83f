//! Storage of drivers, vehicles, the ledger, sessions and idempotency records.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use iparking_mobile_api::VehicleClass;

use super::StoreResult;
use crate::domain::{
    ledger::Entry,
    money::Vnd,
    plate::Plate,
    session::{EndReason, SessionChannel},
};

/// A driver resolved from a bearer token.
#[derive(Debug, Clone)]
pub struct DriverPrincipal {
    /// Driver id.
    pub driver_id: i64,
    /// The token row that authenticated the call.
    pub token_id: i64,
}

/// A registered vehicle.
#[derive(Debug, Clone, PartialEq)]
pub struct Vehicle {
    /// Id.
    pub id: i64,
    /// Normalised plate.
    pub plate: Plate,
    /// Class.
    pub vehicle_class: VehicleClass,
    /// Registered at.
    pub created_at: DateTime<Utc>,
}

/// Outcome of adding a vehicle.
#[derive(Debug, Clone, PartialEq)]
pub enum AddVehicle {
    /// Added.
    Added(Vehicle),
    /// The account already has this plate.
    Duplicate,
    /// The account has the most vehicles allowed.
    TooMany,
}

/// One movement of a wallet.
#[derive(Debug, Clone, PartialEq)]
pub struct WalletLine {
    /// Ledger transaction.
    pub transaction_id: i64,
    /// What happened (`sandbox_topup`, `session_start`, …).
    pub kind: String,
    /// Signed amount (positive = into the wallet).
    pub amount: Vnd,
    /// Session paid or refunded, if any.
    pub session_id: Option<i64>,
    /// When.
    pub at: DateTime<Utc>,
}

/// Renders the answer to a session start (status, JSON body), stored with its key.
pub type StartAnswer<'a> = dyn for<'r> Fn(&'r SessionRow) -> StoreResult<(u16, String)> + Send + Sync + 'a;

/// Renders the answer (status, JSON body) of a keyed call from `T`, what its transaction
/// wrote, inside that transaction: the store writes it with the key before the commit, so a
/// crash after the commit leaves the key answered, never "in progress" (issue 30, bug 7).
pub type Answer<'a, T> = dyn Fn(&T) -> StoreResult<(u16, String)> + Send + Sync + 'a;

/// Renders the answer to a change of a session (extend, stop) from the row as the change
/// left it: stored with the key in the change's own transaction.
pub type SessionAnswer<'a> = StartAnswer<'a>;

/// The [`WalletAnswer`] of a movement made without a key (seeds, tests): never called.
pub fn no_wallet_answer(_: Vnd, _: &[WalletLine]) -> StoreResult<(u16, String)> {
    Err(super::StoreError::Internal("a movement without a key has no answer to store".into()))
}

/// The [`Answer`] of a call made without a key (dashboard forms, seeds, tests): never
/// called, as there is no key to store it with.
pub fn no_answer<T: ?Sized>(_: &T) -> StoreResult<(u16, String)> {
    Err(super::StoreError::Internal("a call without a key has no answer to store".into()))
}

/// How many movements a wallet answer lists (newest first).
pub const WALLET_ANSWER_LINES: i64 = 100;

/// Renders the answer to a wallet movement from the wallet as the movement left it
/// (balance, newest movements): stored with the key in the movement's own transaction.
pub type WalletAnswer<'a> = dyn Fn(Vnd, &[WalletLine]) -> StoreResult<(u16, String)> + Send + Sync + 'a;

/// A payment intent the processor created, to record ([`DriverStore::record_intent`]).
#[derive(Debug, Clone)]
pub struct NewIntent<'a> {
    /// The processor's id.
    pub id: &'a str,
    /// Whose wallet it tops up.
    pub driver_id: i64,
    /// How much.
    pub amount: Vnd,
    /// Which gateway (`stripe`, `sandbox`).
    pub gateway: &'a str,
    /// The processor's status at creation.
    pub status: &'a str,
    /// With `Some(event id)`: the intent already succeeded (the SANDBOX gateway, which no
    /// processor calls back for) and is applied as that event, in the recording transaction.
    pub applied_event: Option<&'a str>,
}

/// What one payment of a session bought: a line of its receipt (`session_purchases`).
#[derive(Debug, Clone, Copy)]
pub struct Purchase<'a> {
    /// The session.
    pub session_id: i64,
    /// Turns bought.
    pub turns: u32,
    /// Paid.
    pub amount: Vnd,
    /// Paid until.
    pub paid_until: DateTime<Utc>,
    /// The priced stay, line by line (JSON).
    pub quote: &'a str,
    /// Its ledger transaction (0: none, a free turn).
    pub transaction_id: i64,
}

/// An idempotency key claimed by a state-changing call, inserted in the same transaction.
#[derive(Debug, Clone)]
pub struct IdemClaim {
    /// Who (e.g. `driver:12`): keys are per caller.
    pub scope: String,
    /// The client's key.
    pub key: String,
    /// SHA-256 of method, path and body.
    pub request_hash: String,
}

/// A stored idempotency record.
#[derive(Debug, Clone)]
pub struct IdemRecord {
    /// Hash of the first request.
    pub request_hash: String,
    /// The first answer's status, once known.
    pub status: Option<u16>,
    /// The first answer's body, once known.
    pub response: Option<String>,
}

/// What the live state holds of an active session ([`DriverStore::active_plates`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivePlate {
    /// The plate, normalised.
    pub plate: String,
    /// The session.
    pub session_id: i64,
    /// Its point.
    pub point_id: i64,
    /// Its point's code.
    pub point_code: String,
    /// Paid until.
    pub paid_until: DateTime<Utc>,
    /// Paid until plus grace.
    pub expires_at: DateTime<Utc>,
}

/// A parking session.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    /// Id.
    pub id: i64,
    /// Driver (none for SMS and warden sessions).
    pub driver_id: Option<i64>,
    /// Plate.
    pub plate: Plate,
    /// Class.
    pub vehicle_class: VehicleClass,
    /// Point id.
    pub point_id: i64,
    /// Point code.
    pub point_code: String,
    /// Tariff (version) that priced it.
    pub tariff_id: i64,
    /// Where it was bought.
    pub channel: SessionChannel,
    /// Active until stopped or expired.
    pub active: bool,
    /// Start.
    pub started_at: DateTime<Utc>,
    /// Paid until.
    pub paid_until: DateTime<Utc>,
    /// Paid until plus grace.
    pub expires_at: DateTime<Utc>,
    /// Turns bought.
    pub turns: u32,
    /// Charged in all.
    pub amount_charged: Vnd,
    /// Refunded in all.
    pub amount_refunded: Vnd,
    /// End.
    pub ended_at: Option<DateTime<Utc>>,
    /// Why it ended.
    pub end_reason: Option<EndReason>,
    /// When the plate was corrected, if it was.
    pub plate_corrected_at: Option<DateTime<Utc>>,
}

/// A session to start, priced, with its ledger entry.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// Driver.
    pub driver_id: Option<i64>,
    /// Plate.
    pub plate: Plate,
    /// Class.
    pub vehicle_class: VehicleClass,
    /// Point id.
    pub point_id: i64,
    /// Tariff id.
    pub tariff_id: i64,
    /// Where it is bought.
    pub channel: SessionChannel,
    /// Start.
    pub started_at: DateTime<Utc>,
    /// Paid until.
    pub paid_until: DateTime<Utc>,
    /// Paid until plus grace.
    pub expires_at: DateTime<Utc>,
    /// Turns.
    pub turns: u32,
    /// Price.
    pub amount: Vnd,
    /// The priced quote (JSON) for the receipt.
    pub quote: String,
    /// The payment.
    pub entry: Entry,
    /// Where reminders go when there is no driver account (SMS sender).
    pub notify_phone: Option<String>,
}

impl NewSession {
    /// The session as stored: its id, its point's code and its times as the database keeps them.
    pub fn row(
        &self,
        id: i64,
        point_code: String,
        started_at: DateTime<Utc>,
        paid_until: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> SessionRow {
        SessionRow {
            id,
            driver_id: self.driver_id,
            plate: self.plate.clone(),
            vehicle_class: self.vehicle_class,
            point_id: self.point_id,
            point_code,
            tariff_id: self.tariff_id,
            channel: self.channel,
            active: true,
            started_at,
            paid_until,
            expires_at,
            turns: self.turns,
            amount_charged: self.amount,
            amount_refunded: Vnd(0),
            ended_at: None,
            end_reason: None,
            plate_corrected_at: None,
        }
    }
}

/// Outcome of starting a session.
#[derive(Debug, Clone)]
pub enum StartOutcome {
    /// Started; also the sessions that had expired and were closed on the way, and the
    /// answer rendered (status, JSON body), as stored with the claim.
    Started(SessionRow, Vec<SessionRow>, (u16, String)),
    /// The plate already has an active session.
    PlateActive(SessionRow),
    /// The point is full.
    PointFull,
    /// The point is closed (or unknown) in the database.
    PointClosed,
    /// The wallet lacks money.
    InsufficientFunds {
        /// Balance now.
        balance: Vnd,
    },
}

/// A priced change to a session (extension or stop), computed from the locked row.
#[derive(Debug, Clone)]
pub struct PricedChange {
    /// Turns after the change.
    pub turns: u32,
    /// Paid until after the change.
    pub paid_until: DateTime<Utc>,
    /// Expiry after the change.
    pub expires_at: DateTime<Utc>,
    /// Money moved: charged (extension) or refunded (stop).
    pub amount: Vnd,
    /// The ledger entry (empty when nothing moves).
    pub entry: Option<Entry>,
    /// Quote JSON for the receipt (extensions).
    pub quote: Option<String>,
}

/// Outcome of changing a session.
#[derive(Debug, Clone)]
pub enum ChangeOutcome {
    /// Done.
    Done(SessionRow),
    /// No such session for this driver.
    NotFound,
    /// The session has ended (stop: returned as it is, nothing moved).
    Ended(SessionRow),
    /// The wallet lacks money.
    InsufficientFunds {
        /// Balance now.
        balance: Vnd,
    },
    /// The pricing callback refused (e.g. beyond the maximum stay).
    Refused(crate::domain::tariff::QuoteError),
}

/// Outcome of a plate correction.
#[derive(Debug, Clone)]
pub enum CorrectPlate {
    /// Corrected.
    Done(SessionRow),
    /// No such session for this driver.
    NotFound,
    /// The correction window has passed, or the plate was corrected already.
    TooLate,
    /// The session has ended.
    Ended,
    /// The new plate has an active session.
    PlateActive(SessionRow),
}

/// Ledger integrity findings (all empty when the books are sound).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerReport {
    /// Transactions whose postings do not sum to zero.
    pub unbalanced_transactions: Vec<i64>,
    /// Accounts whose balance differs from the sum of their postings: (id, balance, sum).
    pub balance_mismatches: Vec<(i64, i64, i64)>,
    /// Wallets (and wardens' floats) below zero.
    pub negative_wallets: Vec<i64>,
    /// Point revenue in the ledger, and charged minus refunded over all sessions.
    pub revenue_vs_sessions: (i64, i64),
}

impl LedgerReport {
    /// Whether every invariant holds.
    pub fn is_sound(&self) -> bool {
        self.unbalanced_transactions.is_empty()
            && self.balance_mismatches.is_empty()
            && self.negative_wallets.is_empty()
            && self.revenue_vs_sessions.0 == self.revenue_vs_sessions.1
    }
}

/// An incoming SMS purchase.
#[derive(Debug, Clone)]
pub struct SmsIncoming {
    /// Carrier name.
    pub carrier: String,
    /// The carrier's message id (deduplication key).
    pub message_id: String,
    /// SHA-256 of the sender's number.
    pub sender_hash: String,
    /// The sender's number (E.164), for reminders.
    pub sender: String,
}

/// What to do with an SMS purchase, decided from the locked state.
#[derive(Debug, Clone)]
pub enum SmsPlan {
    /// Start a session.
    Start(Box<NewSession>, String),
    /// Extend the plate's active session here.
    Extend(PricedChange, String),
    /// Refuse, with this reply.
    Refuse(String),
}

/// Outcome of an SMS purchase.
#[derive(Debug, Clone)]
pub struct SmsOutcome {
    /// The reply to send back.
    pub reply: String,
    /// `started`, `extended`, `refused`.
    pub outcome: String,
    /// The session started or extended.
    pub session: Option<SessionRow>,
    /// Sessions that expired and were closed on the way.
    pub expired: Vec<SessionRow>,
    /// Whether this was a repeated delivery (nothing was done again).
    pub duplicate: bool,
}

/// The decision callback of [`DriverStore::sms_purchase`]: given the plate's active
/// session (if any) and the point's occupied spaces, what to do.
pub type SmsDecide<'a> = &'a (dyn Fn(Option<&SessionRow>, i64) -> SmsPlan + Send + Sync);

/// What applying a processor event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntentEventOutcome {
    /// This event id was processed before: nothing done.
    Duplicate,
    /// The intent is not ours (recorded, acknowledged).
    UnknownIntent,
    /// The intent succeeded and the wallet was credited now.
    Credited {
        /// Driver.
        driver_id: i64,
        /// Amount credited.
        amount: Vnd,
    },
    /// The status was recorded (no money moved: failed, or already credited).
    Updated,
}

/// A pricing callback for [`DriverStore::extend_session`] and [`DriverStore::stop_session`]:
/// given the locked session row, what changes.
pub type PriceChange<'a> =
    &'a (dyn Fn(&SessionRow) -> Result<PricedChange, crate::domain::tariff::QuoteError> + Send + Sync);

/// A Web Push subscription to store (see [`DriverStore::save_push_subscription`]).
#[derive(Debug, Clone, Copy)]
pub struct NewPushSubscription<'a> {
    /// The push service's URL.
    pub endpoint: &'a str,
    /// The browser's public key (base64url).
    pub p256dh: &'a str,
    /// The browser's auth secret (base64url).
    pub auth: &'a str,
    /// `vi` or `en`.
    pub lang: &'a str,
}

/// Drivers, vehicles, the ledger, sessions.
#[async_trait]
pub trait DriverStore: Send + Sync {
    /// The driver with this phone, created if new.
    async fn upsert_driver(&self, phone: &str, now: DateTime<Utc>) -> StoreResult<i64>;
    /// Stores a driver token's hash.
    async fn create_driver_token(&self, driver_id: i64, token_hash: &str, now: DateTime<Utc>) -> StoreResult<i64>;
    /// The driver holding an unrevoked token with this hash.
    async fn driver_by_token(&self, token_hash: &str) -> StoreResult<Option<DriverPrincipal>>;
    /// Revokes a driver token.
    async fn revoke_driver_token(&self, token_id: i64, now: DateTime<Utc>) -> StoreResult<bool>;
    /// A driver's phone (E.164).
    async fn driver_phone(&self, driver_id: i64) -> StoreResult<Option<String>>;
    /// Revokes every token of a driver ("log out on every device") and forgets the
    /// driver's push subscriptions, in one transaction. Returns how many tokens it revoked.
    async fn revoke_driver_tokens(&self, driver_id: i64, now: DateTime<Utc>) -> StoreResult<u64>;

    /// Stores a Web Push subscription of the driver. An endpoint already stored (one
    /// browser, another driver logged in on it before) is taken over. A driver keeps at most
    /// `max`: the oldest go. Returns its id.
    async fn save_push_subscription(
        &self,
        driver_id: i64,
        sub: &NewPushSubscription<'_>,
        max: usize,
        now: DateTime<Utc>,
    ) -> StoreResult<i64>;
    /// A driver's push subscriptions, oldest first.
    async fn push_subscriptions(&self, driver_id: i64) -> StoreResult<Vec<crate::push::Subscription>>;
    /// Removes a push subscription of this driver; `false` if there is none.
    async fn remove_push_subscription(&self, driver_id: i64, id: i64) -> StoreResult<bool>;
    /// Forgets a subscription the push service dropped.
    async fn forget_push_subscription(&self, id: i64) -> StoreResult<()>;

    /// A driver's vehicles.
    async fn vehicles(&self, driver_id: i64) -> StoreResult<Vec<Vehicle>>;
    /// Adds a vehicle unless the plate is there already or the account has `max`.
    async fn add_vehicle(
        &self,
        driver_id: i64,
        plate: &Plate,
        class: VehicleClass,
        max: usize,
        now: DateTime<Utc>,
    ) -> StoreResult<AddVehicle>;
    /// Removes a vehicle of this driver; `false` if there is none.
    async fn remove_vehicle(&self, driver_id: i64, vehicle_id: i64, now: DateTime<Utc>) -> StoreResult<bool>;

    /// A wallet's balance and latest movements (newest first).
    async fn wallet(&self, driver_id: i64, limit: i64) -> StoreResult<(Vnd, Vec<WalletLine>)>;
    /// Demo only: credits play money. With a claim, `answer` renders the answer from the
    /// wallet as the credit left it (its newest `WALLET_ANSWER_LINES` movements), stored
    /// with the claim in the same transaction. Returns the rendered answer, if any.
    async fn sandbox_topup(
        &self,
        driver_id: i64,
        entry: &Entry,
        idem: Option<&IdemClaim>,
        answer: &WalletAnswer<'_>,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<(u16, String)>>;

    /// An idempotency record.
    async fn idempotency_get(&self, scope: &str, key: &str) -> StoreResult<Option<IdemRecord>>;
    /// Stores the first answer of a claimed key.
    async fn idempotency_complete(&self, scope: &str, key: &str, status: u16, response: &str) -> StoreResult<()>;

    /// Starts a session: the point's status and capacity (as the database has them, under
    /// the point's lock), one active session per plate and the payment are checked and
    /// written in one transaction.
    ///
    /// With a claim, `answer` renders the response to a start (status, JSON body) and it is
    /// stored with the claim in the same transaction: one commit, and a retry after a crash
    /// gets the answer. `point_code` is the point's code as the caller knows it: on
    /// PostgreSQL the answer is rendered with it before the one call that starts the
    /// session (a point whose code differs in the database takes the statement path).
    async fn start_session(
        &self,
        new: &NewSession,
        point_code: &str,
        idem: Option<&IdemClaim>,
        answer: &StartAnswer<'_>,
        now: DateTime<Utc>,
    ) -> StoreResult<StartOutcome>;
    /// Extends an active session of `driver_id`, priced from the locked row. With a claim,
    /// `answer` renders the answer from the extended row, stored with the claim in the same
    /// transaction (a crash after the commit leaves the key answered, never in progress).
    async fn extend_session(
        &self,
        session_id: i64,
        driver_id: i64,
        price: PriceChange<'_>,
        idem: Option<&IdemClaim>,
        answer: &SessionAnswer<'_>,
        now: DateTime<Utc>,
    ) -> StoreResult<ChangeOutcome>;
    /// Stops an active session of `driver_id`, refunding what `price` says; `answer` as for
    /// [`DriverStore::extend_session`].
    async fn stop_session(
        &self,
        session_id: i64,
        driver_id: i64,
        price: PriceChange<'_>,
        idem: Option<&IdemClaim>,
        answer: &SessionAnswer<'_>,
        now: DateTime<Utc>,
    ) -> StoreResult<ChangeOutcome>;
    /// Corrects the plate of an active session started less than `window` ago (once).
    async fn correct_plate(
        &self,
        session_id: i64,
        driver_id: i64,
        plate: &Plate,
        window: chrono::Duration,
        now: DateTime<Utc>,
    ) -> StoreResult<CorrectPlate>;
    /// One session.
    async fn session(&self, id: i64) -> StoreResult<Option<SessionRow>>;
    /// A driver's sessions, newest first; `active` filters.
    async fn driver_sessions(&self, driver_id: i64, active: Option<bool>, limit: i64) -> StoreResult<Vec<SessionRow>>;
    /// Purchases of a session (turns, amount, paid until, quote JSON, at), oldest first.
    async fn session_purchases(
        &self,
        session_id: i64,
    ) -> StoreResult<Vec<(u32, Vnd, DateTime<Utc>, String, DateTime<Utc>)>>;
    /// The ids of a session's ledger transactions (payments and refunds), oldest first.
    async fn session_transactions(&self, session_id: i64) -> StoreResult<Vec<i64>>;
    /// Every active session.
    async fn active_sessions(&self) -> StoreResult<Vec<SessionRow>>;
    /// What the live state holds of every active session, by session id: the live-state
    /// rebuild reads this, not [`active_sessions`](Self::active_sessions), so a node never
    /// holds every active session's whole row at once.
    async fn active_plates(&self) -> StoreResult<Vec<ActivePlate>>;
    /// Ends every active session whose expiry has passed; returns them.
    async fn expire_sessions(&self, now: DateTime<Utc>) -> StoreResult<Vec<SessionRow>>;
    /// Applies an SMS purchase at a point in one transaction, once per message id.
    async fn sms_purchase(
        &self,
        msg: &SmsIncoming,
        point_id: i64,
        plate: &Plate,
        decide: SmsDecide<'_>,
        now: DateTime<Utc>,
    ) -> StoreResult<SmsOutcome>;
    /// Records a refused SMS (once per message id); returns the reply stored first.
    async fn sms_refuse(&self, msg: &SmsIncoming, reply: &str, now: DateTime<Utc>) -> StoreResult<String>;
    /// Active sessions ending within `within` that have not been reminded; each returned
    /// one is marked reminded (so every node sends at most one reminder per session).
    async fn claim_reminders(
        &self,
        now: DateTime<Utc>,
        within: chrono::Duration,
        limit: i64,
    ) -> StoreResult<Vec<(SessionRow, Option<String>)>>;
    /// Records a payment intent created with the processor (once per id); claims `idem` and
    /// stores the answer `answer` renders from the intent's status, in the same transaction.
    /// A sandbox intent that succeeded at once (`intent.applied_event`) is credited in that
    /// transaction too: the key, its answer and the credit commit together (issue 30, bug 7).
    async fn record_intent(
        &self,
        intent: &NewIntent<'_>,
        idem: Option<&IdemClaim>,
        answer: &Answer<'_, str>,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Applies a processor event about a payment intent, once per event id: on success the
    /// wallet is credited in the same transaction (once per intent, whatever the order of
    /// events); a failure never undoes a success.
    async fn apply_intent_event(
        &self,
        event_id: &str,
        event_type: &str,
        intent_id: &str,
        status: &str,
        charge_ref: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<IntentEventOutcome>;
    /// Checks the ledger's invariants.
    async fn ledger_report(&self) -> StoreResult<LedgerReport>;
}
