//! Storage of the wardens' flows: password logins, plate checks, cash collections with
//! their slips, violations and their photos, shifts, and flags for finance.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use iparking_mobile_api::{CheckVerdict, StaffRole};

use super::{
    StoreResult,
    drivers::{Answer, IdemClaim, NewSession, PriceChange, SessionRow},
};
use crate::domain::{
    check::{CheckSource, SessionFact},
    money::Vnd,
    plate::Plate,
    session::PaymentKind,
};

/// What a password login needs to know of a username.
#[derive(Clone)]
pub struct StaffLogin {
    /// Staff id.
    pub staff_id: i64,
    /// Role.
    pub role: StaffRole,
    /// The argon2 PHC string.
    pub password_hash: String,
}

impl std::fmt::Debug for StaffLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaffLogin").field("staff_id", &self.staff_id).field("role", &self.role).finish_non_exhaustive()
    }
}

/// What the database knows of a plate at a point at a time (see [`crate::domain::check`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlateFacts {
    /// The plate's session covering the time (any point).
    pub covering: Option<SessionFact>,
    /// The plate's latest session at the point started by then.
    pub last_here: Option<SessionFact>,
}

/// One question of [`WardenStore::plate_facts_batch`]: a plate, at a point, at a time.
#[derive(Debug, Clone)]
pub struct FactAsk {
    /// The plate checked.
    pub plate: Plate,
    /// The point it was checked at.
    pub point_id: i64,
    /// When.
    pub at: DateTime<Utc>,
}

/// One plate check, to be written by the batch writer.
#[derive(Debug, Clone)]
pub struct CheckRecord {
    /// Warden or inspector.
    pub staff_id: i64,
    /// Point.
    pub point_id: i64,
    /// Plate checked.
    pub plate: Plate,
    /// Verdict.
    pub verdict: CheckVerdict,
    /// The session it rested on.
    pub session_id: Option<i64>,
    /// Near-miss plates listed.
    pub near_misses: u32,
    /// Online, or from a sync batch.
    pub source: CheckSource,
    /// When.
    pub checked_at: DateTime<Utc>,
}

/// A warden's shift, with its cash so far.
#[derive(Debug, Clone, PartialEq)]
pub struct ShiftRow {
    /// Id.
    pub id: i64,
    /// Warden.
    pub staff_id: i64,
    /// Handheld.
    pub device: String,
    /// Open (not closed).
    pub open: bool,
    /// Opened at.
    pub opened_at: DateTime<Utc>,
    /// Closed at.
    pub closed_at: Option<DateTime<Utc>>,
    /// Cash collections in the shift.
    pub collections: i64,
    /// Their sum (recorded at closing; the running sum while open).
    pub expected_cash: Vnd,
    /// Declared at closing.
    pub declared_cash: Option<Vnd>,
    /// Declared minus expected.
    pub difference: Option<Vnd>,
    /// Cash synced into the shift after it closed.
    pub late_cash: Vnd,
    /// Opening note.
    pub note: Option<String>,
    /// Closing note.
    pub close_note: Option<String>,
}

/// Outcome of opening a shift.
#[derive(Debug, Clone)]
pub enum OpenShiftOutcome {
    /// Opened.
    Opened(ShiftRow),
    /// The warden already has an open shift.
    AlreadyOpen(ShiftRow),
}

/// A cash collection to record, with its slip: what it paid for, and whether it was
/// applied to a session or kept in suspense (offline conflicts).
#[derive(Debug, Clone, Copy)]
pub struct NewCollection<'a> {
    /// The warden's shift (offline: the one covering the time, if any).
    pub shift_id: Option<i64>,
    /// What it pays for.
    pub kind: PaymentKind,
    /// Applied to the session (or kept in suspense).
    pub applied: bool,
    /// The session paid for, once applied.
    pub session_id: Option<i64>,
    /// The point.
    pub point_id: i64,
    /// The plate.
    pub plate: &'a Plate,
    /// Turns paid.
    pub turns: u32,
    /// Cash taken.
    pub amount: Vnd,
    /// Paid until.
    pub paid_until: DateTime<Utc>,
    /// Its ledger transaction, if any.
    pub transaction_id: Option<i64>,
}

/// A warden's shift closed with the cash handed over.
#[derive(Debug, Clone, Copy)]
pub struct ShiftClose<'a> {
    /// The shift.
    pub id: i64,
    /// Its warden (another's shift is not found).
    pub staff_id: i64,
    /// The cash handed over.
    pub declared: Vnd,
    /// The warden's note.
    pub note: Option<&'a str>,
}

/// Outcome of closing a shift.
#[derive(Debug, Clone)]
pub enum CloseShiftOutcome {
    /// Closed now.
    Closed(ShiftRow),
    /// No such shift of this warden.
    NotFound,
    /// Closed before.
    AlreadyClosed(ShiftRow),
}

/// Which shift cash belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShiftRule {
    /// Online: the warden's open shift, required.
    OpenRequired,
    /// Offline sync: the shift covering the device time, if any (flagged otherwise).
    Covering,
}

/// Context of a cash payment.
#[derive(Debug, Clone)]
pub struct CashContext {
    /// Warden.
    pub staff_id: i64,
    /// Shift rule.
    pub shift: ShiftRule,
    /// When the cash was taken (device time offline).
    pub issued_at: DateTime<Utc>,
    /// District code of the point (receipt numbers).
    pub district_code: String,
    /// The slip's verification code.
    pub verification_code: String,
    /// The offline action's id, for flags.
    pub action_id: Option<String>,
    /// Paid from the warden's float instead of cash: no cash to count, never in suspense (a
    /// float payment that cannot be applied is refused, and the float is untouched).
    pub by_float: bool,
}

/// A cash payment's slip.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiptRow {
    /// Collection id.
    pub id: i64,
    /// Receipt number.
    pub number: String,
    /// Verification code.
    pub verification_code: String,
    /// What it paid for.
    pub kind: PaymentKind,
    /// Whether it paid for the session.
    pub applied: bool,
    /// Warden.
    pub staff_id: i64,
    /// Warden's name.
    pub staff_name: String,
    /// Shift.
    pub shift_id: Option<i64>,
    /// Session paid for.
    pub session_id: Option<i64>,
    /// Point id.
    pub point_id: i64,
    /// Point code.
    pub point_code: String,
    /// Point name.
    pub point_name: String,
    /// Street name.
    pub street: String,
    /// District code.
    pub district: String,
    /// Plate.
    pub plate: Plate,
    /// Turns.
    pub turns: u32,
    /// Amount.
    pub amount: Vnd,
    /// Paid until after it.
    pub paid_until: DateTime<Utc>,
    /// When the cash was taken.
    pub issued_at: DateTime<Utc>,
    /// The ledger transaction that moved the cash.
    pub transaction_id: Option<i64>,
    /// Paid from the warden's float (not cash).
    pub by_float: bool,
}

/// Outcome of a cash payment.
#[derive(Debug, Clone)]
pub enum CashOutcome {
    /// Paid: the session, its slip, sessions expired on the way, and flags raised.
    Paid {
        /// The session after the payment.
        session: SessionRow,
        /// The slip.
        receipt: ReceiptRow,
        /// Sessions closed by expiry on the way (for the live state).
        expired: Vec<SessionRow>,
        /// Whether the session was recorded as already ended (offline, synced late).
        historic: bool,
        /// Flags raised for finance.
        flags: Vec<String>,
    },
    /// Recorded but not applied (offline conflict): the cash is held in suspense.
    Unapplied {
        /// The slip (status unapplied).
        receipt: ReceiptRow,
        /// The session that already paid for the plate.
        existing: Option<SessionRow>,
        /// Flags raised.
        flags: Vec<String>,
    },
    /// The plate has an active session (online).
    PlateActive(SessionRow),
    /// The point is full (online).
    PointFull,
    /// No open shift (online).
    NoOpenShift,
    /// No such session (extension).
    NotFound,
    /// The session has ended (online extension).
    Ended(SessionRow),
    /// The pricing refused.
    Refused(crate::domain::tariff::QuoteError),
    /// The warden's float is short of the price: its balance.
    FloatShort(Vnd),
}

/// A violation to issue.
#[derive(Debug, Clone)]
pub struct NewViolation {
    /// Warden.
    pub staff_id: i64,
    /// Point.
    pub point_id: i64,
    /// District code (numbers).
    pub district_code: String,
    /// Plate.
    pub plate: Plate,
    /// Kind.
    pub kind: iparking_mobile_api::ViolationKind,
    /// Note.
    pub note: String,
    /// Position.
    pub position: Option<(f64, f64)>,
    /// Stored photos: (sha256, content type, size).
    pub photos: Vec<(String, String, i64)>,
    /// When (device time offline).
    pub issued_at: DateTime<Utc>,
    /// The code printed on the ticket: with the number and the plate it opens the details.
    pub verification_code: String,
}

/// A stored violation.
#[derive(Debug, Clone, PartialEq)]
pub struct ViolationRow {
    /// Id.
    pub id: i64,
    /// Number.
    pub number: String,
    /// Warden.
    pub staff_id: i64,
    /// Point code.
    pub point_code: String,
    /// Point name.
    pub point_name: String,
    /// Street.
    pub street: String,
    /// Street id.
    pub street_id: i64,
    /// District code.
    pub district: String,
    /// Plate.
    pub plate: Plate,
    /// Kind.
    pub kind: iparking_mobile_api::ViolationKind,
    /// Note.
    pub note: String,
    /// Latitude.
    pub lat: Option<f64>,
    /// Longitude.
    pub lon: Option<f64>,
    /// When.
    pub issued_at: DateTime<Utc>,
    /// The code printed on the ticket (empty only if the database has none: such a
    /// citation's details never open without staff).
    pub verification_code: String,
    /// Photos: (sha256, content type, size).
    pub photos: Vec<(String, String, i64)>,
}

/// One plate check in a shift's history.
#[derive(Debug, Clone)]
pub struct CheckLine {
    /// Plate, normalised.
    pub plate: String,
    /// Point code.
    pub point_code: String,
    /// Verdict.
    pub verdict: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// What a warden did in a shift.
#[derive(Debug, Clone)]
pub struct ShiftHistory {
    /// Plate checks.
    pub checks: Vec<CheckLine>,
    /// Cash slips.
    pub receipts: Vec<ReceiptRow>,
    /// Citations.
    pub violations: Vec<ViolationRow>,
}

/// Outcome of issuing a violation.
#[derive(Debug, Clone)]
pub enum ViolationOutcome {
    /// Issued.
    Issued(ViolationRow),
    /// The plate has a valid (or in-grace) session at the point then.
    SessionValid(SessionRow),
}

/// A flag for finance.
#[derive(Debug, Clone)]
pub struct NewFlag {
    /// Kind (`already_paid`, `over_capacity`, …).
    pub kind: String,
    /// Warden.
    pub staff_id: i64,
    /// Shift.
    pub shift_id: Option<i64>,
    /// Session concerned.
    pub session_id: Option<i64>,
    /// Violation concerned.
    pub violation_id: Option<i64>,
    /// Offline action.
    pub action_id: Option<String>,
    /// JSON details.
    pub details: String,
}

/// The wardens' storage.
#[async_trait]
pub trait WardenStore: Send + Sync {
    /// The login record of a username.
    async fn staff_by_username(&self, username: &str) -> StoreResult<Option<StaffLogin>>;
    /// Stores a staff token (its hash) issued to a device.
    async fn create_staff_token(
        &self,
        staff_id: i64,
        token_hash: &str,
        device: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<i64>;
    /// A staff member's display name.
    async fn staff_name(&self, staff_id: i64) -> StoreResult<Option<String>>;
    /// The device a staff token was issued to.
    async fn token_device(&self, token_id: i64) -> StoreResult<Option<String>>;

    /// The plate's sessions relevant to a check at `point_id` at `at`.
    async fn plate_facts(&self, plate: &Plate, point_id: i64, at: DateTime<Utc>) -> StoreResult<PlateFacts>;
    /// [`WardenStore::plate_facts`] for many questions, answered in their order: one
    /// statement on PostgreSQL (see [`crate::fact_batch`]).
    async fn plate_facts_batch(&self, asks: &[FactAsk]) -> StoreResult<Vec<PlateFacts>>;
    /// Active sessions at a point, soonest paid-until first.
    async fn point_sessions(&self, point_id: i64) -> StoreResult<Vec<SessionRow>>;
    /// Writes plate checks (one multi-row insert per chunk).
    async fn record_checks(&self, checks: &[CheckRecord], journal_mark: Option<(&str, i64)>) -> StoreResult<u64>;
    /// The last sequence number of journal `journal` written (0 when none is).
    async fn check_journal_mark(&self, journal: &str) -> StoreResult<u64>;
    /// Forgets a replayed journal's mark.
    async fn forget_check_journal(&self, journal: &str) -> StoreResult<()>;

    /// Opens a shift unless the warden has one open. With a claim, `answer` renders the
    /// answer from the opened shift, stored with the claim in the same transaction (a crash
    /// after the commit leaves the key answered, never in progress: issue 30, bug 7).
    async fn open_shift(
        &self,
        staff_id: i64,
        device: &str,
        note: Option<&str>,
        idem: Option<&IdemClaim>,
        answer: &Answer<'_, ShiftRow>,
        now: DateTime<Utc>,
    ) -> StoreResult<OpenShiftOutcome>;
    /// One shift.
    async fn shift(&self, id: i64) -> StoreResult<Option<ShiftRow>>;
    /// A warden's float: its balance and latest movements (newest first): `(transaction id,
    /// transaction kind, signed amount, when)`.
    async fn warden_float(
        &self,
        staff_id: i64,
        limit: i64,
    ) -> StoreResult<(Vnd, Vec<(i64, String, i64, DateTime<Utc>)>)>;
    /// The warden's open shift, if any.
    async fn open_shift_of(&self, staff_id: i64) -> StoreResult<Option<ShiftRow>>;
    /// What the warden did in a shift (up to `until`): checks, slips and citations, newest
    /// first, at most `limit` of each.
    async fn shift_history(&self, shift: &ShiftRow, until: DateTime<Utc>, limit: i64) -> StoreResult<ShiftHistory>;
    /// Closes a shift of `staff_id` with the cash handed over (ledger included); `answer`
    /// (from the closed shift) as for [`WardenStore::open_shift`].
    async fn close_shift(
        &self,
        close: &ShiftClose<'_>,
        idem: Option<&IdemClaim>,
        answer: &Answer<'_, ShiftRow>,
        now: DateTime<Utc>,
    ) -> StoreResult<CloseShiftOutcome>;

    /// A cash payment for a new session. `capacity` `None` records it even over capacity
    /// (offline: flagged). Offline, a plate already paid makes it unapplied (suspense).
    /// With a claim, `answer` renders the answer from the outcome that commits (`Paid` or
    /// `Unapplied`), stored with the claim in the same transaction.
    async fn cash_start(
        &self,
        new: &NewSession,
        capacity: i32,
        ctx: &CashContext,
        idem: Option<&IdemClaim>,
        answer: &Answer<'_, CashOutcome>,
        now: DateTime<Utc>,
    ) -> StoreResult<CashOutcome>;
    /// A cash payment extending a session (any channel), priced from the locked row; the
    /// callback's entry must be the cash entry. `answer` as for [`WardenStore::cash_start`].
    async fn cash_extend(
        &self,
        session_id: i64,
        price: PriceChange<'_>,
        ctx: &CashContext,
        idem: Option<&IdemClaim>,
        answer: &Answer<'_, CashOutcome>,
        now: DateTime<Utc>,
    ) -> StoreResult<CashOutcome>;
    /// A slip by number.
    async fn receipt(&self, number: &str) -> StoreResult<Option<ReceiptRow>>;

    /// Issues a violation unless the plate has a valid session at the point then. With a
    /// claim, `answer` renders the answer from the outcome that commits (`Issued`, or
    /// `SessionValid` with an action id: its flag), stored with the claim in the same
    /// transaction.
    async fn issue_violation(
        &self,
        v: &NewViolation,
        action_id: Option<&str>,
        idem: Option<&IdemClaim>,
        answer: &Answer<'_, ViolationOutcome>,
        now: DateTime<Utc>,
    ) -> StoreResult<ViolationOutcome>;
    /// A violation by number.
    async fn violation(&self, number: &str) -> StoreResult<Option<ViolationRow>>;
    /// (district code, street id) of every violation using a photo.
    async fn photo_scopes(&self, sha256: &str) -> StoreResult<Vec<(String, i64)>>;
    /// Violations on a driver's registered plates, newest first.
    async fn driver_citations(&self, driver_id: i64, limit: i64) -> StoreResult<Vec<ViolationRow>>;

    /// Records a flag for finance.
    async fn raise_flag(&self, flag: &NewFlag, now: DateTime<Utc>) -> StoreResult<i64>;
    /// Claims `claim` and stores its answer at once (an action rejected before any effect,
    /// so a replay gets the same answer). Does nothing if the key was claimed already.
    async fn record_answer(
        &self,
        claim: &IdemClaim,
        status: u16,
        response: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
}

/// The verdict a stored name stands for ([`verdict_name`]'s inverse).
pub fn verdict_from_name(name: &str) -> Option<CheckVerdict> {
    [CheckVerdict::Valid, CheckVerdict::Grace, CheckVerdict::Expired, CheckVerdict::Unpaid, CheckVerdict::Elsewhere]
        .into_iter()
        .find(|v| verdict_name(*v) == name)
}

/// The database and metrics name of a verdict.
pub fn verdict_name(v: CheckVerdict) -> &'static str {
    match v {
        CheckVerdict::Valid => "valid",
        CheckVerdict::Grace => "grace",
        CheckVerdict::Expired => "expired",
        CheckVerdict::Unpaid => "unpaid",
        CheckVerdict::Elsewhere => "elsewhere",
    }
}
