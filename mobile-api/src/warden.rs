//! The wardens' handheld contract: login, plate checks, point rosters, cash paid on a
//! driver's behalf (thanh toán hộ) with slips, violations, offline sync, shifts.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{ErrorDetail, SessionView, StaffRole, VehicleClass};

/// Body of `POST /v1/warden/auth/token`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WardenLogin {
    /// The staff member's username.
    pub username: String,
    /// The password.
    pub password: String,
    /// A name for the handheld, shown in audits (e.g. `HK-handheld-07`).
    pub device: String,
}

/// Answer of `POST /v1/warden/auth/token`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WardenToken {
    /// The bearer token (stored only as a hash; shown once).
    pub token: String,
    /// Id of the token, for revocation.
    pub token_id: i64,
    /// Staff id.
    pub staff_id: i64,
    /// Display name.
    pub name: String,
    /// `warden` or `inspector`.
    pub role: StaffRole,
    /// District codes assigned (empty with no streets: city-wide).
    pub districts: Vec<String>,
    /// Street ids assigned.
    pub streets: Vec<i64>,
}

/// Query of `GET /v1/warden/checks`.
#[derive(Debug, Clone, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PlateCheckQuery {
    /// Plate as read (any written form).
    pub plate: String,
    /// Point code where the vehicle stands.
    pub point: String,
}

/// What a plate check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckVerdict {
    /// Paid at this point until `paid_until`.
    Valid,
    /// The paid time ended less than the grace period ago: not finable yet.
    Grace,
    /// The paid time at this point ended; `minutes_over` says by how much.
    Expired,
    /// No payment for this plate.
    Unpaid,
    /// Paid, but at another point (`elsewhere` names it).
    Elsewhere,
}

/// Another point where the plate is paid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ElsewherePoint {
    /// Point code.
    pub code: String,
    /// Point name.
    pub name: String,
    /// Street name.
    pub street: String,
}

/// A plate with an active session at the point that differs from the checked plate by one
/// character or a common confusion (O/0, I/1, B/8…): likely the same car, mistyped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NearMiss {
    /// The plate on the session.
    pub plate: String,
    /// Its session.
    pub session_id: i64,
    /// Paid until.
    pub paid_until: DateTime<Utc>,
    /// Its verdict at the point (`valid`, `grace` or `expired`).
    pub verdict: CheckVerdict,
}

/// Answer of `GET /v1/warden/checks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PlateCheckView {
    /// The plate, normalised.
    pub plate: String,
    /// The point checked.
    pub point_code: String,
    /// The verdict.
    pub verdict: CheckVerdict,
    /// The session found (at this point, or elsewhere).
    pub session_id: Option<i64>,
    /// Paid until (valid, grace, expired, elsewhere).
    pub paid_until: Option<DateTime<Utc>>,
    /// End of the grace period (valid, grace).
    pub grace_until: Option<DateTime<Utc>>,
    /// Whole minutes past the paid time (grace, expired).
    pub minutes_over: Option<i64>,
    /// Where the plate is paid instead (elsewhere).
    pub elsewhere: Option<ElsewherePoint>,
    /// Likely typos: plates parked here that nearly match.
    pub near_misses: Vec<NearMiss>,
    /// When the check was made.
    pub checked_at: DateTime<Utc>,
}

/// One vehicle that should be at a point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RosterVehicle {
    /// Session id.
    pub session_id: i64,
    /// Plate.
    pub plate: String,
    /// Class.
    pub vehicle_class: VehicleClass,
    /// `app`, `sms`, `warden_cash`.
    pub channel: String,
    /// Start.
    pub started_at: DateTime<Utc>,
    /// Paid until.
    pub paid_until: DateTime<Utc>,
    /// End of the grace period.
    pub expires_at: DateTime<Utc>,
    /// `valid` or `grace` now.
    pub verdict: CheckVerdict,
}

/// Answer of `GET /v1/warden/points/{code}/vehicles`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PointRoster {
    /// Point code.
    pub point_code: String,
    /// Point name.
    pub point_name: String,
    /// Street name.
    pub street: String,
    /// District code.
    pub district: String,
    /// Spaces.
    pub capacity: i32,
    /// Spaces taken by paid (or in-grace) vehicles.
    pub occupied: i64,
    /// Spaces free.
    pub free: i64,
    /// The vehicles, by paid-until (soonest first).
    pub vehicles: Vec<RosterVehicle>,
}

/// How a warden takes payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WardenPayment {
    /// Cash handed to the warden.
    #[default]
    Cash,
    /// The warden's own prepaid float (never below zero): no cash for the city to count.
    Float,
}

/// Body of `POST /v1/warden/sessions`: a session paid to the warden on the driver's behalf.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WardenStartSession {
    /// Point code.
    pub point_code: String,
    /// Plate as read.
    pub plate: String,
    /// Class of the vehicle.
    pub vehicle_class: VehicleClass,
    /// Turns paid. Give this or `minutes`.
    #[serde(default)]
    pub turns: Option<u32>,
    /// Minutes paid (rounded up to whole turns).
    #[serde(default)]
    pub minutes: Option<u32>,
    /// `cash` (default) or `float`.
    #[serde(default)]
    pub payment: WardenPayment,
}

/// Body of `POST /v1/warden/sessions/{id}/extend`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WardenExtendSession {
    /// Turns added. Give this or `minutes`.
    #[serde(default)]
    pub turns: Option<u32>,
    /// Minutes added.
    #[serde(default)]
    pub minutes: Option<u32>,
    /// `cash` (default) or `float`.
    #[serde(default)]
    pub payment: WardenPayment,
}

/// Whether a cash payment paid for a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptStatus {
    /// It started or extended the session.
    Applied,
    /// It could not be applied (the plate was already paid; recorded offline): the cash
    /// is held in suspense for finance to settle.
    Unapplied,
}

/// The slip of a cash payment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReceiptView {
    /// Receipt number, e.g. `HK-20261201-000042`.
    pub number: String,
    /// Code printed on the slip; with the number it proves the slip.
    pub verification_code: String,
    /// What the slip's QR code holds: `IPK1|number|code`.
    pub qr_payload: String,
    /// Where a driver or inspector checks the slip (JSON).
    pub verify_path: String,
    /// The slip's public page for people, what its QR code opens: `/r/{number}?code=…`.
    pub public_path: String,
    /// `start` or `extension`.
    pub kind: String,
    /// `cash` (handed to the warden) or `float` (the warden's prepaid float).
    pub payment: WardenPayment,
    /// Applied or unapplied.
    pub status: ReceiptStatus,
    /// Amount, VND.
    pub amount: i64,
    /// Turns paid.
    pub turns: u32,
    /// Paid until (after this payment).
    pub paid_until: DateTime<Utc>,
    /// Plate.
    pub plate: String,
    /// Point code.
    pub point_code: String,
    /// Point name.
    pub point_name: String,
    /// Street name.
    pub street: String,
    /// District code.
    pub district: String,
    /// The session paid for (none when unapplied).
    pub session_id: Option<i64>,
    /// Warden who took the cash.
    pub collected_by: i64,
    /// Warden's name.
    pub collected_by_name: String,
    /// The warden's badge number (`NV-` and the staff id), printed on the slip and its public
    /// page instead of the name.
    pub badge: String,
    /// The ledger transaction that moved the money (none for a slip not yet posted).
    pub transaction_id: Option<i64>,
    /// The shift it belongs to.
    pub shift_id: Option<i64>,
    /// When the cash was taken.
    pub issued_at: DateTime<Utc>,
}

/// Answer of `POST /v1/warden/sessions` and `/extend`: the session and the slip to print.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CashPaymentView {
    /// The session after the payment.
    pub session: SessionView,
    /// The slip.
    pub receipt: ReceiptView,
}

/// Query of `GET /v1/receipts/{number}`.
#[derive(Debug, Clone, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReceiptQuery {
    /// The verification code printed on the slip.
    #[serde(default)]
    pub code: String,
}

/// Answer of `GET /v1/receipts/{number}`: the slip is genuine, and what it paid for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReceiptCheckView {
    /// Receipt number.
    pub number: String,
    /// Applied or unapplied.
    pub status: ReceiptStatus,
    /// Amount, VND.
    pub amount: i64,
    /// Turns.
    pub turns: u32,
    /// Plate, all but its last 3 characters hidden (`•••••345`).
    pub plate: String,
    /// Point code.
    pub point_code: String,
    /// Point name.
    pub point_name: String,
    /// Paid until (after this payment).
    pub paid_until: DateTime<Utc>,
    /// The session's current paid-until (later extensions included).
    pub session_paid_until: Option<DateTime<Utc>>,
    /// Whether the session is still active.
    pub session_active: bool,
    /// When the cash was taken.
    pub issued_at: DateTime<Utc>,
}

/// Kinds of violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ViolationKind {
    /// Parked with no payment.
    Unpaid,
    /// Stayed past the paid time and the grace period.
    Overstay,
    /// A vehicle class the point does not take.
    WrongVehicleClass,
    /// Parked outside the marked bays.
    OutsideBay,
    /// Blocking traffic, a driveway or a pavement.
    Obstruction,
}

impl ViolationKind {
    /// The wire and database name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unpaid => "unpaid",
            Self::Overstay => "overstay",
            Self::WrongVehicleClass => "wrong_vehicle_class",
            Self::OutsideBay => "outside_bay",
            Self::Obstruction => "obstruction",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Unpaid, Self::Overstay, Self::WrongVehicleClass, Self::OutsideBay, Self::Obstruction]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// A photo of a violation (served to staff only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PhotoRef {
    /// SHA-256 of the content, hex.
    pub sha256: String,
    /// `image/jpeg` or `image/png`.
    pub content_type: String,
    /// Bytes.
    pub size: i64,
    /// Where staff fetch it: `/v1/warden/photos/{sha256}`.
    pub path: String,
}

/// A citation, as staff see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ViolationView {
    /// Citation number, e.g. `VP-HK-20261201-000007`.
    pub number: String,
    /// Plate.
    pub plate: String,
    /// Point code.
    pub point_code: String,
    /// Point name.
    pub point_name: String,
    /// Street name.
    pub street: String,
    /// District code.
    pub district: String,
    /// Kind.
    pub kind: ViolationKind,
    /// The warden's note.
    pub note: String,
    /// Where the warden stood.
    pub lat: Option<f64>,
    /// Where the warden stood.
    pub lon: Option<f64>,
    /// Issuing warden.
    pub issued_by: i64,
    /// When.
    pub issued_at: DateTime<Utc>,
    /// Photo evidence.
    pub photos: Vec<PhotoRef>,
    /// Code printed on the ticket: with the number and the plate it opens the citation's
    /// details for the driver (`GET /v1/citations/{number}?plate=&code=`).
    #[serde(default)]
    pub verification_code: String,
    /// Where whoever holds the ticket opens the details: `/v1/citations/{number}?plate=&code=`.
    #[serde(default)]
    pub verify_path: String,
}

/// A citation on one of the driver's plates (`GET /v1/me/citations`): what identifies no
/// one. Adding a plate to an account needs no proof, so the list says only that a citation
/// exists; its reason, note and photos open with the ticket ([`CitationDetails`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DriverCitation {
    /// Citation number.
    pub number: String,
    /// Plate (one the driver registered).
    pub plate: String,
    /// Point code.
    pub point_code: String,
    /// Point name.
    pub point_name: String,
    /// When.
    pub issued_at: DateTime<Utc>,
}

/// Query of `GET /v1/citations/{number}` and its photos: what is printed on the ticket.
#[derive(Debug, Clone, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CitationQuery {
    /// The plate cited (any spelling the plate rules accept: `30A-123.45`, `30a12345`).
    #[serde(default)]
    pub plate: String,
    /// The verification code printed on the ticket.
    #[serde(default)]
    pub code: String,
}

/// A photo of a citation, for whoever holds the ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CitationPhoto {
    /// `image/jpeg` or `image/png`.
    pub content_type: String,
    /// Bytes.
    pub size: i64,
    /// Where to fetch it: `/v1/citations/{number}/photos/{index}?plate=&code=`.
    pub path: String,
}

/// Answer of `GET /v1/citations/{number}`: the citation as the ticket's holder sees it
/// (no warden identity, no position).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CitationDetails {
    /// Citation number.
    pub number: String,
    /// Plate.
    pub plate: String,
    /// Point code.
    pub point_code: String,
    /// Point name.
    pub point_name: String,
    /// Street name.
    pub street: String,
    /// The reason.
    pub kind: ViolationKind,
    /// The warden's note.
    pub note: String,
    /// When.
    pub issued_at: DateTime<Utc>,
    /// Photo evidence, in the order taken.
    pub photos: Vec<CitationPhoto>,
}

/// Kinds of offline action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SyncKind {
    /// A plate check: payload `{plate, point}`.
    Check,
    /// Cash for a new session: payload as `POST /v1/warden/sessions`.
    CashSession,
    /// Cash for an extension: payload `{session_id, turns | minutes}`.
    CashExtension,
    /// A violation: payload `{plate, point, kind, note, lat, lon, photos: [base64]}`.
    Violation,
}

/// One action recorded on the handheld while offline.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncAction {
    /// The handheld's UUID for the action; a retry sends the same one.
    pub id: String,
    /// When it happened, by the handheld's clock.
    pub device_time: DateTime<Utc>,
    /// Kind.
    pub kind: SyncKind,
    /// The action's fields (see [`SyncKind`]).
    pub payload: serde_json::Value,
}

/// Body of `POST /v1/warden/sync`: at most 100 actions.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncBatch {
    /// Actions, oldest first.
    pub actions: Vec<SyncAction>,
}

/// What became of one action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SyncStatus {
    /// Applied as recorded.
    Applied,
    /// Applied safely but differently (e.g. the plate was already paid: the cash is held
    /// in suspense); `flags` say why, and finance sees it.
    Conflict,
    /// Not applied (e.g. unknown point); `error` says why.
    Rejected,
}

/// The result of one action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SyncActionResult {
    /// The action's UUID.
    pub id: String,
    /// Applied, conflict or rejected.
    pub status: SyncStatus,
    /// Whether this is the stored result of an earlier delivery (nothing was done again).
    pub replayed: bool,
    /// The action's answer: a check, a cash payment, a violation.
    pub result: Option<serde_json::Value>,
    /// Why it was rejected.
    pub error: Option<ErrorDetail>,
    /// Flags raised for finance (`already_paid`, `over_capacity`, `outside_shift`,
    /// `after_shift_close`, `paid_at_device_time`).
    pub flags: Vec<String>,
}

/// Answer of `POST /v1/warden/sync`: one result per action, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SyncResultView {
    /// Results.
    pub results: Vec<SyncActionResult>,
}

/// One movement of a warden's float.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FloatMovement {
    /// The ledger transaction.
    pub transaction_id: i64,
    /// `float_session_start`, `float_session_extend`, `finance_adjustment` (a top-up), …
    pub kind: String,
    /// Signed VND: positive in, negative out.
    pub amount: i64,
    /// When.
    pub at: DateTime<Utc>,
}

/// Answer of `GET /v1/warden/float`: the warden's prepaid float.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WardenFloatView {
    /// VND, never below zero.
    pub balance: i64,
    /// The latest movements, newest first (at most 20).
    pub movements: Vec<FloatMovement>,
}

/// One plate check in a shift's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HistoryCheck {
    /// Plate, normalised.
    pub plate: String,
    /// Point code.
    pub point_code: String,
    /// Verdict.
    pub verdict: CheckVerdict,
    /// When.
    pub at: DateTime<Utc>,
}

/// Answer of `GET /v1/warden/shifts/{id}/history`: what the warden did in the shift, newest
/// first (at most 200 of each).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ShiftHistoryView {
    /// The shift.
    pub shift: ShiftView,
    /// Plate checks (written in batches: a check shows within a second or so).
    pub checks: Vec<HistoryCheck>,
    /// Cash slips.
    pub slips: Vec<ReceiptView>,
    /// Citations.
    pub citations: Vec<ViolationView>,
}

/// Body of `POST /v1/warden/shifts`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenShift {
    /// A note (e.g. the area covered).
    #[serde(default)]
    pub note: Option<String>,
}

/// Body of `POST /v1/warden/shifts/{id}/close`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseShift {
    /// Cash handed over at the end of the shift, VND (0 or more).
    pub cash_handed_over: i64,
    /// A note (e.g. why the cash differs).
    #[serde(default)]
    pub note: Option<String>,
}

/// Shift state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ShiftStatus {
    /// Running.
    Open,
    /// Closed with the cash handed over.
    Closed,
}

/// A warden's shift.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ShiftView {
    /// Id.
    pub id: i64,
    /// Warden.
    pub staff_id: i64,
    /// Open or closed.
    pub status: ShiftStatus,
    /// The handheld it was opened on.
    pub device: String,
    /// Opened at.
    pub opened_at: DateTime<Utc>,
    /// Closed at.
    pub closed_at: Option<DateTime<Utc>>,
    /// Cash payments taken in the shift.
    pub collections: i64,
    /// Their sum, VND: the cash the warden should hand over.
    pub expected_cash: i64,
    /// Cash handed over at closing.
    pub declared_cash: Option<i64>,
    /// Handed over minus expected (negative: short).
    pub difference: Option<i64>,
    /// Cash recorded in this shift after it closed (late offline sync), VND.
    pub late_cash: i64,
    /// Notes.
    pub note: Option<String>,
    /// Closing note.
    pub close_note: Option<String>,
}

/// A photo to upload with a violation (client side of the multipart form).
#[derive(Debug, Clone)]
pub struct PhotoUpload {
    /// File name sent in the form (the server checks the content, not the name).
    pub filename: String,
    /// Content type sent in the form.
    pub content_type: String,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// The fields of `POST /v1/warden/violations` (a `multipart/form-data` form with fields
/// `plate`, `point`, `kind`, `note`, `lat`, `lon` and 1–5 `photo` files).
#[derive(Debug, Clone)]
pub struct ViolationForm {
    /// Plate as read.
    pub plate: String,
    /// Point code.
    pub point: String,
    /// Kind.
    pub kind: ViolationKind,
    /// Note.
    pub note: String,
    /// Latitude of the warden.
    pub lat: Option<f64>,
    /// Longitude of the warden.
    pub lon: Option<f64>,
    /// Photos (JPEG or PNG, 5 MB each at most).
    pub photos: Vec<PhotoUpload>,
}
