//! The finance contract: revenue reports from the ledger, reconciliation against the card
//! processor, the carriers and the wardens' cash, discrepancies, period close, adjustments
//! and refund requests. Amounts are whole VND. Local days are Asia/Ho_Chi_Minh.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::VehicleClass;

/// How a payment reached the city (DOMAIN.md's channels). `adjustment` is a correction
/// posted by finance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RevenueChannel {
    /// One SMS turn charged to the phone balance.
    Sms,
    /// The app wallet's balance.
    Wallet,
    /// A card paid by the driver.
    Card,
    /// Cash taken by a warden on the driver's behalf (thanh toán hộ).
    WardenCash,
    /// Paid by a warden on the driver's behalf from the warden's own prepaid float.
    WardenFloat,
    /// A correction posted by finance.
    Adjustment,
}

impl RevenueChannel {
    /// The wire and database name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sms => "sms",
            Self::Wallet => "wallet",
            Self::Card => "card",
            Self::WardenCash => "warden_cash",
            Self::WardenFloat => "warden_float",
            Self::Adjustment => "adjustment",
        }
    }

    /// From the database name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "sms" => Self::Sms,
            "wallet" => Self::Wallet,
            "card" => Self::Card,
            "warden_cash" => Self::WardenCash,
            "warden_float" => Self::WardenFloat,
            "adjustment" => Self::Adjustment,
            _ => return None,
        })
    }
}

/// Query of `GET /v1/finance/revenue`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RevenueQuery {
    /// First local day, `YYYY-MM-DD` (inclusive).
    pub from: Option<String>,
    /// Last local day, `YYYY-MM-DD` (inclusive); at most 366 days after `from`.
    pub to: Option<String>,
    /// Comma-separated dimensions: `district`, `street`, `point`, `channel`, `day`,
    /// `vehicle_class` (any combination, each once). Empty: one total row.
    pub group_by: Option<String>,
    /// Only this district (code).
    pub district: Option<String>,
    /// Only this street (id).
    pub street: Option<i64>,
    /// `json` (default) or `csv` (UTF-8 with BOM).
    pub format: Option<String>,
}

/// Sums of one group (or of the whole report).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RevenueSums {
    /// Earned, net of refunds: the sum of the points' revenue postings.
    pub gross: i64,
    /// The carriers' share of SMS revenue.
    pub carrier_share: i64,
    /// `gross - carrier_share`: what the city keeps.
    pub net: i64,
    /// Revenue postings counted (payments, refunds, adjustments).
    pub postings: i64,
}

/// One row of a revenue report: the dimensions asked for, then the sums.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RevenueRow {
    /// District code (`district`, `street` or `point` grouping).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub district_code: Option<String>,
    /// District name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub district_name: Option<String>,
    /// Street id (`street` or `point` grouping).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street_id: Option<i64>,
    /// Street name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street_name: Option<String>,
    /// Point code (`point` grouping).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point_code: Option<String>,
    /// Point name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point_name: Option<String>,
    /// Channel (`channel` grouping).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<RevenueChannel>,
    /// Local day (`day` grouping).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day: Option<NaiveDate>,
    /// Vehicle class of the session (`vehicle_class` grouping); none for adjustments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vehicle_class: Option<VehicleClass>,
    /// The sums.
    #[serde(flatten)]
    pub sums: RevenueSums,
}

/// Answer of `GET /v1/finance/revenue`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RevenueReport {
    /// First local day.
    pub from: NaiveDate,
    /// Last local day.
    pub to: NaiveDate,
    /// The dimensions, in the order asked.
    pub group_by: Vec<String>,
    /// District codes the caller's scope limited the report to (empty: city-wide).
    pub scope: Vec<String>,
    /// Rows, ordered by the dimensions.
    pub rows: Vec<RevenueRow>,
    /// Sum of all rows.
    pub totals: RevenueSums,
}

/// Query of `GET /v1/finance/reconciliation`: exactly one of `date` or `month`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReconciliationQuery {
    /// One local day, `YYYY-MM-DD`.
    pub date: Option<String>,
    /// One month, `YYYY-MM`.
    pub month: Option<String>,
    /// `json` (default) or `csv` (the discrepancies, UTF-8 with BOM).
    pub format: Option<String>,
}

/// A difference between what the ledger says and what arrived, kept until resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DiscrepancyView {
    /// Id.
    pub id: i64,
    /// `processor`, `carrier`, `cash` or `ledger`.
    pub section: String,
    /// What is wrong, e.g. `missing_at_processor`, `missing_in_ledger`, `amount_mismatch`,
    /// `payout_failed`, `settlement_missing`, `cash_difference`, `warden_flag`,
    /// `unbalanced_transaction`, `balance_mismatch`, `street_revenue_mismatch`.
    pub kind: String,
    /// What it is about, stable across runs (e.g. `charge:ch_123`, `shift:7`).
    pub subject: String,
    /// Month it belongs to, `YYYY-MM`.
    pub period: String,
    /// Local day it belongs to.
    pub day: NaiveDate,
    /// District code, when it belongs to one district.
    pub district_code: Option<String>,
    /// What our books say (VND), when there is an amount.
    pub expected: Option<i64>,
    /// What arrived (VND), when there is an amount.
    pub actual: Option<i64>,
    /// `actual - expected`.
    pub difference: Option<i64>,
    /// Facts for the reader (ids, carrier, warden, flag details).
    pub details: serde_json::Value,
    /// `open`, `resolved`, or `cleared` (no longer found by a later run).
    pub status: String,
    /// First found.
    pub detected_at: DateTime<Utc>,
    /// Who resolved it.
    pub resolved_by: Option<String>,
    /// When.
    pub resolved_at: Option<DateTime<Utc>>,
    /// The resolution note.
    pub resolution_note: Option<String>,
}

/// One section's matching summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MatchSummary {
    /// Items on both sides with the same amount.
    pub matched: i64,
    /// Our side's total (VND).
    pub ledger_total: i64,
    /// The other side's total (VND).
    pub external_total: i64,
    /// Open discrepancies of the section in this period.
    pub open_discrepancies: i64,
}

/// Processor (Stripe) section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProcessorSection {
    /// Card top-ups, card-paid sessions and card refunds matched against balance transactions.
    pub summary: MatchSummary,
    /// Stripe's fees on the matched charges.
    pub fees: i64,
    /// Payouts to the city's bank that arrived in the period.
    pub payouts_total: i64,
}

/// One carrier's section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CarrierSection {
    /// Carrier name.
    pub carrier: String,
    /// Whether a settlement file covers the period.
    pub settlement_received: bool,
    /// Matched per message; totals are the carrier's net (gross minus share).
    pub summary: MatchSummary,
}

/// Cash section: warden shifts closed in the period.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CashSection {
    /// Shifts closed; `ledger_total` is the cash collected, `external_total` what was declared.
    pub summary: MatchSummary,
    /// Shifts still open at the end of the period.
    pub open_shifts: i64,
}

/// Ledger integrity section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LedgerSection {
    /// Every transaction balances.
    pub transactions_balance: bool,
    /// Every account's balance equals the sum of its postings (wallets included).
    pub balances_match_postings: bool,
    /// Revenue per street equals the sum of its sessions' charges (sessions started in the
    /// period).
    pub street_revenue_matches_sessions: bool,
    /// Open discrepancies of the section.
    pub open_discrepancies: i64,
}

/// Answer of `GET /v1/finance/reconciliation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReconciliationReport {
    /// First local day.
    pub from: NaiveDate,
    /// Last local day.
    pub to: NaiveDate,
    /// District codes of the caller's scope (empty: city-wide). District-scoped finance
    /// sees only the cash section and discrepancies of its districts.
    pub scope: Vec<String>,
    /// Processor; absent for district-scoped callers.
    pub processor: Option<ProcessorSection>,
    /// Carriers; empty for district-scoped callers.
    pub carriers: Vec<CarrierSection>,
    /// Cash.
    pub cash: CashSection,
    /// Ledger integrity; absent for district-scoped callers.
    pub ledger: Option<LedgerSection>,
    /// The discrepancies of the period (open, resolved and cleared), by id.
    pub discrepancies: Vec<DiscrepancyView>,
    /// Whether the month is closed.
    pub period_closed: bool,
}

/// Body of `POST /v1/finance/discrepancies/{id}/resolve`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveDiscrepancy {
    /// What was found and done (1–1000 characters).
    pub note: String,
}

/// Body of `POST /v1/finance/periods/{month}/close`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClosePeriod {
    /// Close even with open discrepancies (recorded with their ids).
    #[serde(default)]
    pub override_open_discrepancies: bool,
    /// Required with the override (1–1000 characters).
    #[serde(default)]
    pub reason: Option<String>,
}

/// A month's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PeriodView {
    /// `YYYY-MM`.
    pub month: String,
    /// `open` or `closed`.
    pub status: String,
    /// Who closed it.
    pub closed_by: Option<String>,
    /// When.
    pub closed_at: Option<DateTime<Utc>>,
    /// Whether it was closed over open discrepancies.
    pub overridden: bool,
    /// The override's reason.
    pub override_reason: Option<String>,
    /// The discrepancies open at closing (ids).
    pub open_discrepancy_ids: Vec<i64>,
}

/// Body of `POST /v1/finance/adjustments`: a correction between two ledger accounts.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustmentRequest {
    /// `point_revenue` (with `point`), `unapplied_cash`, `warden_cash` or `warden_float`
    /// (with `staff_id`), `cash_office` or `write_off`.
    pub debit: AdjustmentAccount,
    /// The account credited.
    pub credit: AdjustmentAccount,
    /// VND, positive.
    pub amount: i64,
    /// Why (1–1000 characters).
    pub reason: String,
    /// Month to book it in, `YYYY-MM` (default: the current one); must be open.
    #[serde(default)]
    pub period: Option<String>,
    /// The discrepancy it corrects, if any (recorded; resolve it separately).
    #[serde(default)]
    pub discrepancy_id: Option<i64>,
}

/// An account an adjustment may touch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustmentAccount {
    /// Account kind (see [`AdjustmentRequest`]).
    pub kind: String,
    /// Point code, for `point_revenue`.
    #[serde(default)]
    pub point: Option<String>,
    /// Warden's staff id, for `warden_cash` and `warden_float`.
    #[serde(default)]
    pub staff_id: Option<i64>,
}

/// A posted adjustment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AdjustmentView {
    /// Id.
    pub id: i64,
    /// The ledger transaction.
    pub transaction_id: i64,
    /// Month booked in.
    pub period: String,
    /// Debit side.
    pub debit: AdjustmentAccount,
    /// Credit side.
    pub credit: AdjustmentAccount,
    /// VND.
    pub amount: i64,
    /// Why.
    pub reason: String,
    /// Who.
    pub author: String,
    /// The discrepancy it corrects.
    pub discrepancy_id: Option<i64>,
    /// When.
    pub created_at: DateTime<Utc>,
    /// The district it belongs to (the district of the points whose revenue it moves and of
    /// the discrepancy it corrects, when that is one district); absent when it is city-wide.
    /// Finance staff and admins scoped to districts list only their districts' adjustments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub district_code: Option<String>,
}

/// Answer of `POST /v1/finance/carriers/{carrier}/settlements`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SettlementView {
    /// Id.
    pub id: i64,
    /// Carrier.
    pub carrier: String,
    /// `YYYY-MM`.
    pub month: String,
    /// Lines (messages) in the file.
    pub lines: i64,
    /// Sum of gross amounts.
    pub gross: i64,
    /// Sum of the carrier's shares.
    pub share: i64,
    /// Sum of net amounts (what the carrier pays).
    pub net: i64,
    /// An earlier file for the same month that this one replaces.
    pub replaces: Option<i64>,
    /// Who uploaded it.
    pub uploaded_by: String,
    /// When.
    pub uploaded_at: DateTime<Utc>,
}

/// Query of `POST /v1/finance/carriers/{carrier}/settlements`.
#[derive(Debug, Clone, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SettlementQuery {
    /// The month settled, `YYYY-MM`.
    pub month: String,
}

/// Body of `POST /v1/me/refund-requests`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundRequestBody {
    /// `wallet_balance` (unused balance back to the cards it came from) or `session`
    /// (a disputed session).
    pub kind: String,
    /// VND; for `wallet_balance`, at most the balance (default: all of it); for `session`,
    /// at most what is left of the charge (default: all of it).
    #[serde(default)]
    pub amount: Option<i64>,
    /// The disputed session (`session`).
    #[serde(default)]
    pub session_id: Option<i64>,
    /// The driver's reason (1–500 characters).
    pub reason: String,
}

/// A refund request waiting for (or decided by) finance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RefundRequestView {
    /// Id.
    pub id: i64,
    /// `wallet_balance` or `session`.
    pub kind: String,
    /// VND.
    pub amount: i64,
    /// The session, for `session`.
    pub session_id: Option<i64>,
    /// District code of the session's point, for `session`.
    pub district_code: Option<String>,
    /// The driver's reason.
    pub reason: String,
    /// `pending`, `approved` or `rejected`.
    pub status: String,
    /// Who decided.
    pub decided_by: Option<String>,
    /// When.
    pub decided_at: Option<DateTime<Utc>>,
    /// Finance's note.
    pub decision_note: Option<String>,
    /// Refunds sent through the processor on approval (card part).
    pub refund_ids: Vec<i64>,
    /// Part returned to the wallet on approval (wallet-paid turns of a session).
    pub to_wallet: i64,
    /// Part returned to cards (or, in the demo, to the sandbox).
    pub to_cards: i64,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// Body of `POST /v1/finance/refund-requests/{id}/approve` and `.../reject`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundDecision {
    /// Finance's note (1–1000 characters).
    pub note: String,
}

/// Query of `GET /v1/finance/refund-requests`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RefundRequestQuery {
    /// `pending` (default), `approved`, `rejected` or `all`.
    pub status: Option<String>,
}
