//! Storage of finance: revenue grouped from the ledger's postings, the facts reconciliation
//! matches, discrepancies, closed periods, adjustments, carrier settlements, refund requests
//! and the audit trail (`docs/finance.md`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{
    StoreResult,
    cards::RefundRow,
    drivers::{Answer, IdemClaim},
};
pub use crate::domain::finance::SettlementLine;
use crate::domain::{
    finance::{DiscrepancyStatus, RequestKind, RequestStatus},
    ledger::Account,
    money::Vnd,
};

/// A dimension of a revenue report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RevenueDim {
    /// District (code, name).
    District,
    /// Street (id, name, district code).
    Street,
    /// Point (code, name, street, district).
    Point,
    /// Channel.
    Channel,
    /// Local day of the ledger transaction.
    Day,
    /// Vehicle class of the session.
    VehicleClass,
}

impl RevenueDim {
    /// The query-string name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::District => "district",
            Self::Street => "street",
            Self::Point => "point",
            Self::Channel => "channel",
            Self::Day => "day",
            Self::VehicleClass => "vehicle_class",
        }
    }

    /// Every dimension, in the order of their names in the docs.
    pub const ALL: [RevenueDim; 6] =
        [Self::District, Self::Street, Self::Point, Self::Channel, Self::Day, Self::VehicleClass];

    /// From the query-string name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

/// What a revenue report covers.
#[derive(Debug, Clone)]
pub struct RevenueFilter {
    /// First instant (inclusive).
    pub from: DateTime<Utc>,
    /// Last instant (exclusive).
    pub to: DateTime<Utc>,
    /// Grouping, in order.
    pub dims: Vec<RevenueDim>,
    /// Only these district codes (empty: all).
    pub districts: Vec<String>,
    /// Only this street.
    pub street_id: Option<i64>,
}

/// One group of a revenue report, as the database sums it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevenueRaw {
    /// District code.
    pub district_code: Option<String>,
    /// District name.
    pub district_name: Option<String>,
    /// Street id.
    pub street_id: Option<i64>,
    /// Street name.
    pub street_name: Option<String>,
    /// Point code.
    pub point_code: Option<String>,
    /// Point name.
    pub point_name: Option<String>,
    /// Channel name.
    pub channel: Option<String>,
    /// Local day `YYYY-MM-DD`.
    pub day: Option<String>,
    /// Vehicle class name.
    pub vehicle_class: Option<String>,
    /// Sum of the points' revenue postings.
    pub gross: i64,
    /// Sum of the carriers' shares (positive).
    pub carrier_share: i64,
    /// Revenue postings counted.
    pub postings: i64,
}

/// Our side of the processor: a card top-up, a card-paid session charge, or a refund the
/// processor confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessorItem {
    /// `topup`, `session_charge` or `refund`.
    pub kind: String,
    /// Our id (intent id, card charge id, refund id).
    pub reference: String,
    /// The processor's id its balance transaction names as source (`ch_…`, `re_…`).
    pub source: Option<String>,
    /// Signed: charges positive, refunds negative.
    pub amount: i64,
    /// When it happened in our books.
    pub at: DateTime<Utc>,
}

/// An imported Stripe balance transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceTxn {
    /// `txn_…`.
    pub id: String,
    /// `charge`, `payment`, `refund`, `payout`, …
    pub kind: String,
    /// Signed amount.
    pub amount: i64,
    /// Stripe's fee.
    pub fee: i64,
    /// The charge, refund or payout it is for.
    pub source: Option<String>,
    /// Created at Stripe.
    pub created: DateTime<Utc>,
}

/// An imported Stripe payout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutRow {
    /// `po_…`.
    pub id: String,
    /// Amount.
    pub amount: i64,
    /// `paid`, `pending`, `in_transit`, `failed`, `canceled`.
    pub status: String,
    /// Arrival.
    pub arrival_date: DateTime<Utc>,
}

/// An SMS purchase we charged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsCharge {
    /// Carrier.
    pub carrier: String,
    /// The carrier's message id.
    pub message_id: String,
    /// Gross charged.
    pub amount: i64,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
    /// District of the session's point.
    pub district_id: Option<i64>,
}

/// A stored settlement file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementRow {
    /// Id.
    pub id: i64,
    /// Carrier.
    pub carrier: String,
    /// `YYYY-MM`.
    pub month: String,
    /// Lines.
    pub lines: i64,
    /// Gross.
    pub gross: i64,
    /// Share.
    pub share: i64,
    /// Net.
    pub net: i64,
    /// The file it replaced.
    pub replaces: Option<i64>,
    /// Uploader's name.
    pub uploaded_by: String,
    /// When.
    pub uploaded_at: DateTime<Utc>,
}

/// A warden shift closed in a period, with its cash recomputed from the slips.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShiftCash {
    /// Shift id.
    pub shift_id: i64,
    /// Warden.
    pub staff_id: i64,
    /// Warden's name.
    pub staff_name: String,
    /// Closed at.
    pub closed_at: DateTime<Utc>,
    /// Cash collected per the slips.
    pub collected: i64,
    /// Declared at closing.
    pub declared: i64,
    /// Districts of the points collected at.
    pub district_ids: Vec<i64>,
}

/// An unresolved flag from the handhelds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagRow {
    /// Flag id.
    pub id: i64,
    /// Kind.
    pub kind: String,
    /// Warden.
    pub staff_id: i64,
    /// Details (JSON text).
    pub details: String,
    /// Cash amount involved, if any.
    pub amount: Option<i64>,
    /// District of the point involved.
    pub district_id: Option<i64>,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// Ledger integrity facts for a period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerFacts {
    /// Unbalanced transactions: (id, sum, created_at).
    pub unbalanced: Vec<(i64, i64, DateTime<Utc>)>,
    /// Accounts whose balance differs from their postings: (id, balance, sum).
    pub balance_mismatches: Vec<(i64, i64, i64)>,
    /// Streets whose revenue (sessions started in the period) differs from their sessions'
    /// charges: (street id, district id, revenue, charges).
    pub street_mismatches: Vec<(i64, i64, i64, i64)>,
}

/// What one reconciliation run found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `processor`, `carrier`, `cash`, `ledger`.
    pub section: &'static str,
    /// Kind.
    pub kind: &'static str,
    /// Stable subject.
    pub subject: String,
    /// `YYYY-MM`.
    pub period: String,
    /// `YYYY-MM-DD`.
    pub day: String,
    /// District row id.
    pub district_id: Option<i64>,
    /// Ours.
    pub expected: Option<i64>,
    /// Theirs.
    pub actual: Option<i64>,
    /// JSON text.
    pub details: String,
}

/// Which stored findings a run replaces: those of these sections with a day in the range.
#[derive(Debug, Clone)]
pub struct RunScope {
    /// Sections computed.
    pub sections: Vec<&'static str>,
    /// Kinds this run does not look for (left as they are).
    pub skip_kinds: Vec<&'static str>,
    /// First day `YYYY-MM-DD`.
    pub from_day: String,
    /// Last day `YYYY-MM-DD` (inclusive).
    pub to_day: String,
}

/// A stored discrepancy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscrepancyRow {
    /// Id.
    pub id: i64,
    /// Section.
    pub section: String,
    /// Kind.
    pub kind: String,
    /// Subject.
    pub subject: String,
    /// Month.
    pub period: String,
    /// Day.
    pub day: String,
    /// District code.
    pub district_code: Option<String>,
    /// Ours.
    pub expected: Option<i64>,
    /// Theirs.
    pub actual: Option<i64>,
    /// JSON text.
    pub details: String,
    /// Where it stands.
    pub status: DiscrepancyStatus,
    /// First found.
    pub detected_at: DateTime<Utc>,
    /// Resolver's name.
    pub resolved_by: Option<String>,
    /// When.
    pub resolved_at: Option<DateTime<Utc>>,
    /// Note.
    pub resolution_note: Option<String>,
}

/// Why a discrepancy could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveOutcome {
    /// Resolved now.
    Resolved(Box<DiscrepancyRow>),
    /// No such discrepancy.
    NotFound,
    /// It is `resolved` or `cleared` already.
    NotOpen(Box<DiscrepancyRow>),
}

/// A closed month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodRow {
    /// `YYYY-MM`.
    pub month: String,
    /// Closer's name.
    pub closed_by: String,
    /// When.
    pub closed_at: DateTime<Utc>,
    /// Closed over open discrepancies.
    pub overridden: bool,
    /// Why.
    pub override_reason: Option<String>,
    /// Discrepancies open at closing.
    pub open_discrepancy_ids: Vec<i64>,
}

/// A month to close.
#[derive(Debug, Clone)]
pub struct NewClose {
    /// `YYYY-MM`.
    pub month: String,
    /// First instant.
    pub starts_at: DateTime<Utc>,
    /// End (exclusive).
    pub ends_at: DateTime<Utc>,
    /// Finance user.
    pub staff_id: i64,
    /// Closed over open discrepancies.
    pub overridden: bool,
    /// Why.
    pub override_reason: Option<String>,
    /// Those discrepancies.
    pub open_discrepancy_ids: Vec<i64>,
}

/// An adjustment to post.
#[derive(Debug, Clone)]
pub struct NewAdjustment {
    /// Account losing the amount (credit side goes down).
    pub debit: Account,
    /// Account gaining it.
    pub credit: Account,
    /// The point, when one side is a point's revenue.
    pub point_id: Option<i64>,
    /// JSON of the debit side as asked.
    pub debit_json: String,
    /// JSON of the credit side as asked.
    pub credit_json: String,
    /// Amount.
    pub amount: Vnd,
    /// Why.
    pub reason: String,
    /// Finance user.
    pub author_id: i64,
    /// `YYYY-MM`.
    pub period: String,
    /// The ledger transaction's date (inside `period`).
    pub booked_at: DateTime<Utc>,
    /// The discrepancy it corrects.
    pub discrepancy_id: Option<i64>,
}

/// A posted adjustment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdjustmentRow {
    /// Id.
    pub id: i64,
    /// Ledger transaction.
    pub transaction_id: i64,
    /// Month.
    pub period: String,
    /// JSON of the debit side.
    pub debit_json: String,
    /// JSON of the credit side.
    pub credit_json: String,
    /// Amount.
    pub amount: i64,
    /// Why.
    pub reason: String,
    /// Author's name.
    pub author: String,
    /// Discrepancy.
    pub discrepancy_id: Option<i64>,
    /// When.
    pub created_at: DateTime<Utc>,
    /// The one district it belongs to: the district of the points whose revenue it posts to
    /// and of the discrepancy it corrects, when they are all in one district; `None` (city-wide
    /// finance only) when it touches no district or several.
    pub district_code: Option<String>,
}

/// The one district among `codes` (absent ones ignored), or `None` for none or several.
pub fn one_district<const N: usize>(codes: [Option<String>; N]) -> Option<String> {
    let mut districts: Vec<String> = codes.into_iter().flatten().collect();
    districts.sort();
    districts.dedup();
    if districts.len() == 1 { districts.pop() } else { None }
}

/// A refund request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequestRow {
    /// Id.
    pub id: i64,
    /// Driver.
    pub driver_id: i64,
    /// What it is for.
    pub kind: RequestKind,
    /// Session.
    pub session_id: Option<i64>,
    /// District code of the session's point.
    pub district_code: Option<String>,
    /// Amount.
    pub amount: i64,
    /// Driver's reason.
    pub reason: String,
    /// Where it stands.
    pub status: RequestStatus,
    /// Decider's name.
    pub decided_by: Option<String>,
    /// When.
    pub decided_at: Option<DateTime<Utc>>,
    /// Note.
    pub decision_note: Option<String>,
    /// Back to the wallet.
    pub to_wallet: i64,
    /// Back to cards (or the sandbox).
    pub to_cards: i64,
    /// Processor refunds made on approval.
    pub refund_ids: Vec<i64>,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// A carrier's settlement file to store, its lines validated.
#[derive(Debug, Clone, Copy)]
pub struct NewSettlement<'a> {
    /// The carrier's name.
    pub carrier: &'a str,
    /// `YYYY-MM`.
    pub month: &'a str,
    /// Its lines.
    pub lines: &'a [SettlementLine],
    /// SHA-256 of the file (hex).
    pub sha256: &'a str,
    /// Who uploaded it.
    pub staff_id: i64,
}

/// Finance's decision on a pending refund request.
#[derive(Debug, Clone, Copy)]
pub struct RefundDecision<'a> {
    /// The request.
    pub id: i64,
    /// Approve, or reject.
    pub approve: bool,
    /// Who decides.
    pub staff_id: i64,
    /// Why.
    pub note: &'a str,
    /// Card refunds are settled by the sandbox gateway (the demo), not the processor.
    pub sandbox: bool,
}

/// A refund request to create.
#[derive(Debug, Clone)]
pub struct NewRefundRequest {
    /// Driver.
    pub driver_id: i64,
    /// What it is for.
    pub kind: RequestKind,
    /// The disputed session.
    pub session_id: Option<i64>,
    /// Amount (`None`: all that can be).
    pub amount: Option<Vnd>,
    /// Reason.
    pub reason: String,
    /// Demo: sandbox money can go back to the sandbox.
    pub sandbox: bool,
}

/// What creating a refund request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestOutcome {
    /// Created (pending).
    Created(Box<RefundRequestRow>),
    /// Not the driver's session, or no such session.
    SessionNotFound,
    /// More than what can be refunded: the most that can.
    TooLarge(Vnd),
    /// Nothing of this can be refunded this way (SMS or cash session; no refundable balance).
    NotRefundable,
}

/// What deciding a refund request came to.
#[derive(Debug, Clone)]
pub enum DecideOutcome {
    /// Decided now; processor refunds to submit.
    Decided(Box<RefundRequestRow>, Vec<RefundRow>),
    /// No such request.
    NotFound,
    /// Decided before.
    AlreadyDecided(Box<RefundRequestRow>),
}

/// An audit row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    /// Id.
    pub id: i64,
    /// Staff's name.
    pub staff_name: String,
    /// Staff id.
    pub staff_id: i64,
    /// Action.
    pub action: String,
    /// Subject.
    pub subject: String,
    /// JSON text.
    pub details: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// Finance's storage.
#[async_trait]
pub trait FinanceStore: Send + Sync {
    /// Revenue grouped by the filter's dimensions, ordered by them.
    async fn revenue(&self, f: &RevenueFilter) -> StoreResult<Vec<RevenueRaw>>;

    /// Our processor items in `[from, to)`.
    async fn processor_items(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> StoreResult<Vec<ProcessorItem>>;
    /// Imported balance transactions created in `[from, to)`.
    async fn balance_transactions(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> StoreResult<Vec<BalanceTxn>>;
    /// Imported payouts arriving in `[from, to)`.
    async fn payouts(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> StoreResult<Vec<PayoutRow>>;
    /// SMS purchases charged in `[from, to)`.
    async fn sms_charges(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> StoreResult<Vec<SmsCharge>>;
    /// Warden shifts closed in `[from, to)`.
    async fn closed_shifts(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> StoreResult<Vec<ShiftCash>>;
    /// Shifts opened before `at` and still open.
    async fn open_shifts(&self, at: DateTime<Utc>) -> StoreResult<i64>;
    /// Unresolved warden flags created in `[from, to)`.
    async fn open_flags(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> StoreResult<Vec<FlagRow>>;
    /// Ledger integrity facts (street revenue for sessions started in `[from, to)`).
    async fn ledger_facts(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> StoreResult<LedgerFacts>;

    /// Stores a run's findings (new ones open, known ones updated unless resolved) and marks
    /// the scope's open findings not found again as cleared. Returns nothing; read after.
    async fn record_findings(&self, scope: &RunScope, findings: &[Finding], now: DateTime<Utc>) -> StoreResult<()>;
    /// Discrepancies with a day in `[from_day, to_day]`, by id.
    async fn discrepancies(&self, from_day: &str, to_day: &str) -> StoreResult<Vec<DiscrepancyRow>>;
    /// One discrepancy.
    async fn discrepancy(&self, id: i64) -> StoreResult<Option<DiscrepancyRow>>;
    /// Resolves an open discrepancy (and its warden flag), audited.
    async fn resolve_discrepancy(
        &self,
        id: i64,
        staff_id: i64,
        note: &str,
        idem: Option<&IdemClaim>,
        answer: &Answer<'_, DiscrepancyRow>,
        now: DateTime<Utc>,
    ) -> StoreResult<ResolveOutcome>;

    /// A closed month, if it is.
    async fn period(&self, month: &str) -> StoreResult<Option<PeriodRow>>;
    /// Closes a month, audited; `Conflict("period_closed")` if it was.
    async fn close_period(
        &self,
        close: &NewClose,
        idem: Option<&IdemClaim>,
        answer: &Answer<'_, PeriodRow>,
        now: DateTime<Utc>,
    ) -> StoreResult<PeriodRow>;

    /// Posts an adjustment, audited; `Conflict("period_closed")` into a closed month.
    async fn post_adjustment(
        &self,
        adj: &NewAdjustment,
        idem: Option<&IdemClaim>,
        answer: &Answer<'_, AdjustmentRow>,
        now: DateTime<Utc>,
    ) -> StoreResult<AdjustmentRow>;
    /// Adjustments booked in a month.
    async fn adjustments(&self, period: &str) -> StoreResult<Vec<AdjustmentRow>>;

    /// Stores a settlement file (replacing the month's earlier one), audited.
    async fn store_settlement(
        &self,
        file: &NewSettlement<'_>,
        idem: Option<&IdemClaim>,
        answer: &Answer<'_, SettlementRow>,
        now: DateTime<Utc>,
    ) -> StoreResult<SettlementRow>;
    /// The month's current settlement file of a carrier and its lines.
    async fn settlement(&self, carrier: &str, month: &str)
    -> StoreResult<Option<(SettlementRow, Vec<SettlementLine>)>>;

    /// Creates a refund request (holding wallet money at once).
    async fn create_refund_request(
        &self,
        req: &NewRefundRequest,
        idem: Option<&IdemClaim>,
        answer: &Answer<'_, RefundRequestRow>,
        now: DateTime<Utc>,
    ) -> StoreResult<RequestOutcome>;
    /// Refund requests: of a driver, or (`None`) all; `status` `None` = any.
    async fn refund_requests(
        &self,
        driver_id: Option<i64>,
        status: Option<RequestStatus>,
    ) -> StoreResult<Vec<RefundRequestRow>>;
    /// One refund request.
    async fn refund_request(&self, id: i64) -> StoreResult<Option<RefundRequestRow>>;
    /// Approves or rejects a pending request, audited; the money moves in the same
    /// transaction.
    async fn decide_refund_request(
        &self,
        decision: &RefundDecision<'_>,
        idem: Option<&IdemClaim>,
        answer: &Answer<'_, RefundRequestRow>,
        now: DateTime<Utc>,
    ) -> StoreResult<DecideOutcome>;

    /// Whether a staff member exists with the role warden.
    async fn is_warden(&self, id: i64) -> StoreResult<bool>;

    /// Audit rows created in `[from, to)`.
    async fn audit(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> StoreResult<Vec<AuditRow>>;
}
