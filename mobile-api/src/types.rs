use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The one error shape of every 4xx and 5xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// A stable, machine-readable code and a message in the caller's language.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable code, e.g. `point_not_found`. Clients branch on this, never on the message.
    #[schema(example = "point_not_found")]
    pub code: String,
    /// Human-readable message, Vietnamese by default, English with `Accept-Language: en`.
    pub message: String,
    /// Machine-readable facts for some codes (e.g. the amount missing, alternative points).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

/// Vehicle classes of Hanoi Decision 44/2017/QĐ-UBND.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VehicleClass {
    /// Cars of up to 9 seats and trucks under 2 tonnes.
    Car,
    /// Passenger vehicles of 10 to 16 seats.
    Minibus,
    /// Passenger vehicles over 16 seats and trucks of 2 tonnes or more.
    Large,
    /// Motorbikes and scooters.
    Motorbike,
}

impl VehicleClass {
    /// Every class, in tariff order.
    pub const ALL: [VehicleClass; 4] = [Self::Car, Self::Minibus, Self::Large, Self::Motorbike];

    /// The wire name (`car`, `minibus`, `large`, `motorbike`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Car => "car",
            Self::Minibus => "minibus",
            Self::Large => "large",
            Self::Motorbike => "motorbike",
        }
    }

    /// Parses a wire name; `None` when it is not a class.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s.trim())
    }
}

/// Whether a point takes new sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PointStatus {
    /// Open for parking.
    Open,
    /// Closed by the city (works, events); not offered to drivers.
    Closed,
}

impl PointStatus {
    /// The wire and database name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }
}

/// A district (quận) of the city.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DistrictView {
    /// Short code used as the prefix of its point codes, e.g. `HK` for Hoàn Kiếm.
    #[schema(example = "HK")]
    pub code: String,
    /// Name, e.g. `Hoàn Kiếm`.
    pub name: String,
}

/// Body of `POST /v1/admin/districts`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDistrict {
    /// 2 to 4 upper-case ASCII letters, e.g. `HK`, `HBT`.
    pub code: String,
    /// Display name.
    pub name: String,
}

/// A street, belonging to one district.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StreetView {
    /// Street id.
    pub id: i64,
    /// Street name, e.g. `Lý Thường Kiệt`.
    pub name: String,
    /// Code of the district it belongs to.
    pub district_code: String,
}

/// Body of `POST /v1/admin/streets`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateStreet {
    /// District code, e.g. `HK`.
    pub district_code: String,
    /// Street name, unique within the district.
    pub name: String,
}

/// A street parking point as drivers and staff see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PointView {
    /// Signboard code, e.g. `HK001`: the district code followed by digits.
    #[schema(example = "HK001")]
    pub code: String,
    /// Name shown on the app and the signboard.
    pub name: String,
    /// The street the point is on.
    pub street: StreetView,
    /// The district's name (its code is in `street.district_code`).
    pub district_name: String,
    /// Latitude (WGS 84) of the signboard.
    pub lat: f64,
    /// Longitude (WGS 84) of the signboard.
    pub lon: f64,
    /// Curb line as `[lon, lat]` pairs, when the city surveyed it.
    pub curb: Option<Vec<[f64; 2]>>,
    /// Number of spaces.
    pub capacity: i32,
    /// Free spaces now, from the live state; `null` if the live state cannot be reached. In a
    /// nearby search, up to about a second behind starts and stops on other API nodes.
    pub free_spaces: Option<i32>,
    /// Vehicle classes allowed to park here.
    pub vehicle_classes: Vec<VehicleClass>,
    /// Open or closed.
    pub status: PointStatus,
    /// Last change to the point's registry entry.
    pub updated_at: DateTime<Utc>,
}

/// Query of `GET /v1/points/search`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PointSearchQuery {
    /// Words of a signboard code, street, point or district name (1–60 characters; case and
    /// Vietnamese diacritics ignored, each word matching the start of a word).
    pub q: String,
    /// How many points at most, 1..=50. Default 20.
    pub limit: Option<u32>,
}

/// Query of `GET /v1/points`.
#[derive(Debug, Clone, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NearbyQuery {
    /// Latitude of the driver, -90..=90.
    pub lat: f64,
    /// Longitude of the driver, -180..=180.
    pub lon: f64,
    /// Search radius in metres, greater than 0 and at most 50,000. Default 1,000.
    pub radius_m: Option<f64>,
    /// How many points at most, 1..=100. Default 20.
    pub limit: Option<u32>,
    /// Only points that allow this vehicle class.
    pub vehicle_class: Option<VehicleClass>,
}

/// One result of a nearby search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NearbyPoint {
    /// Great-circle (haversine) distance from the query position, in metres.
    pub distance_m: f64,
    /// The point.
    pub point: PointView,
}

/// Answer of `GET /v1/points`: open points, nearest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NearbyResponse {
    /// Points within the radius, nearest first.
    pub points: Vec<NearbyPoint>,
    /// The radius that was searched, in metres.
    pub radius_m: f64,
}

/// Body of `POST /v1/admin/points`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePoint {
    /// Signboard code: the street's district code followed by 3 to 6 digits.
    pub code: String,
    /// Display name.
    pub name: String,
    /// Street id (see `POST /v1/admin/streets`).
    pub street_id: i64,
    /// Latitude of the signboard.
    pub lat: f64,
    /// Longitude of the signboard.
    pub lon: f64,
    /// Optional curb line as `[lon, lat]` pairs (2 to 500 of them).
    #[serde(default)]
    pub curb: Option<Vec<[f64; 2]>>,
    /// Number of spaces, 0..=10,000.
    pub capacity: i32,
    /// Allowed vehicle classes (at least one).
    pub vehicle_classes: Vec<VehicleClass>,
}

/// Body of `PATCH /v1/admin/points/{code}`: every field is optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePoint {
    /// New display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New latitude (give `lon` too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lat: Option<f64>,
    /// New longitude (give `lat` too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lon: Option<f64>,
    /// New curb line; an empty list removes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub curb: Option<Vec<[f64; 2]>>,
    /// New capacity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<i32>,
    /// New allowed vehicle classes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vehicle_classes: Option<Vec<VehicleClass>>,
}

/// File format of a point import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImportFormat {
    /// GeoJSON FeatureCollection of Point or LineString features.
    Geojson,
    /// CSV with a header row.
    Csv,
}

/// What to do when some rows of an import are invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImportMode {
    /// Import nothing if any row is invalid (the default).
    #[default]
    AllOrNothing,
    /// Import the valid rows and report the others.
    ValidOnly,
}

/// Query of `POST /v1/admin/points/import`.
#[derive(Debug, Clone, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// `geojson` or `csv`.
    pub format: ImportFormat,
    /// `all_or_nothing` (default) or `valid_only`.
    pub mode: Option<ImportMode>,
}

/// One rejected row of an import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImportRowError {
    /// Line of the CSV file (1 is the header), or feature index + 1 in the GeoJSON.
    pub line: u64,
    /// Point code of the row, when it could be read.
    pub code: Option<String>,
    /// Why the row was rejected.
    pub message: String,
}

/// Result of an import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImportReport {
    /// The mode that was applied.
    pub mode: ImportMode,
    /// Rows read from the file.
    pub rows: u64,
    /// Points created.
    pub imported: u64,
    /// Rows rejected, with their line and reason.
    pub rejected: Vec<ImportRowError>,
}

/// Staff roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StaffRole {
    /// City administrator: districts, streets, points, tariffs, staff.
    Admin,
    /// Finance staff: revenue, reconciliation, period close.
    Finance,
    /// Parking warden: checks, cash, violations in assigned districts.
    Warden,
    /// Inspector: city-wide checks.
    Inspector,
    /// Open-data reader: the CDS Events and Metrics feeds (`/cds/events`, `/cds/metrics`).
    Data,
}

impl StaffRole {
    /// The wire and database name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Finance => "finance",
            Self::Warden => "warden",
            Self::Inspector => "inspector",
            Self::Data => "data",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Admin, Self::Finance, Self::Warden, Self::Inspector, Self::Data].into_iter().find(|r| r.as_str() == s)
    }
}

/// Body of `POST /v1/admin/staff`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateStaff {
    /// Display name.
    pub name: String,
    /// Role.
    pub role: StaffRole,
    /// District codes the principal is limited to; empty (with no streets) means city-wide.
    #[serde(default)]
    pub districts: Vec<String>,
    /// Street ids the principal is assigned to (wardens), besides whole districts.
    #[serde(default)]
    pub streets: Vec<i64>,
    /// Username for password login (wardens and inspectors on handhelds): 3–64 of
    /// `a-z 0-9 . _ -`.
    #[serde(default)]
    pub username: Option<String>,
    /// Password for the username: 10–128 characters. Stored only as an argon2 hash.
    #[serde(default)]
    pub password: Option<String>,
}

impl CreateStaff {
    /// A staff member with a role and districts, no streets and no password login.
    pub fn new(name: impl Into<String>, role: StaffRole, districts: Vec<String>) -> Self {
        Self { name: name.into(), role, districts, streets: Vec::new(), username: None, password: None }
    }
}

/// Answer of `POST /v1/admin/staff`: the bearer token is shown this once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StaffCreated {
    /// Staff id.
    pub id: i64,
    /// Display name.
    pub name: String,
    /// Role.
    pub role: StaffRole,
    /// District scope; empty (with no streets) means city-wide.
    pub districts: Vec<String>,
    /// Street ids assigned.
    #[serde(default)]
    pub streets: Vec<i64>,
    /// Username for password login, if set.
    #[serde(default)]
    pub username: Option<String>,
    /// Id of the token, for revocation.
    pub token_id: i64,
    /// The bearer token. It is stored only as a hash and cannot be shown again.
    pub token: String,
}

/// Answer of `/healthz`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HealthView {
    /// Always `ok` when the process answers.
    pub status: String,
}

/// Answer of `/readyz`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReadyView {
    /// `ok` or `unavailable`.
    pub database: String,
    /// `ok` or `unavailable`.
    pub live_state: String,
    /// Storage backend: `sqlite` or `postgres`.
    pub database_backend: String,
    /// Live state backend: `memory` or `redis`.
    pub live_state_backend: String,
}

/// Body of `POST /v1/auth/otp`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OtpRequest {
    /// Vietnamese mobile number, any common format (`0912 345 678`, `+84912345678`).
    pub phone: String,
}

/// Answer of `POST /v1/auth/otp`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OtpSent {
    /// The number the code went to, masked.
    pub phone: String,
    /// Seconds the code stays valid.
    pub expires_in_seconds: u64,
}

/// Body of `POST /v1/auth/token`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The same number as for the code.
    pub phone: String,
    /// The 6-digit code.
    pub code: String,
}

/// Answer of `POST /v1/auth/token`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DriverToken {
    /// Bearer token for the driver routes. Shown once; stored only as a hash.
    pub token: String,
    /// Driver id.
    pub driver_id: i64,
}

/// The server's Web Push key (`GET /v1/push/key`): the app's `applicationServerKey`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PushKeyView {
    /// The VAPID public key: base64url of the uncompressed P-256 point.
    pub public_key: String,
}

/// A browser's keys, as `PushSubscription.toJSON()` gives them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushSubscriptionKeys {
    /// The browser's P-256 public key (base64url).
    pub p256dh: String,
    /// The browser's 16-byte auth secret (base64url).
    pub auth: String,
}

/// Body of `POST /v1/me/push-subscriptions`: `PushSubscription.toJSON()` and the language
/// reminders are to be written in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushSubscriptionBody {
    /// The push service's URL for this browser (https).
    pub endpoint: String,
    /// When the browser says the subscription expires (milliseconds since the epoch).
    #[serde(default, rename = "expirationTime")]
    pub expiration_time: Option<f64>,
    /// The browser's keys.
    pub keys: PushSubscriptionKeys,
    /// `vi` (default) or `en`.
    #[serde(default)]
    pub lang: Option<String>,
}

/// A stored push subscription (its endpoint is not shown back).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PushSubscriptionView {
    /// Id (to remove it).
    pub id: i64,
    /// The language of its reminders.
    pub lang: String,
}

/// Answer of `GET /v1/sessions/{id}/receipt`: the session's receipt number and check code,
/// and its public page (what the receipt's QR code opens).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SessionReceiptView {
    /// `IP-00000042`.
    pub number: String,
    /// The check code printed with it.
    pub code: String,
    /// `/r/{number}?code={code}`.
    pub public_path: String,
}

/// Answer of `POST /v1/auth/logout-all`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LoggedOutEverywhere {
    /// How many sessions (tokens, this one included) were ended.
    pub tokens_revoked: u64,
}

/// A driver's vehicle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VehicleView {
    /// Id.
    pub id: i64,
    /// Normalised plate, e.g. `30A12345`.
    pub plate: String,
    /// Class.
    pub vehicle_class: VehicleClass,
    /// Registered at.
    pub created_at: DateTime<Utc>,
}

/// Body of `POST /v1/me/vehicles`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddVehicle {
    /// Plate as written (`30A-123.45`).
    pub plate: String,
    /// Class.
    pub vehicle_class: VehicleClass,
}

/// One wallet movement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WalletMovement {
    /// Ledger transaction id.
    pub transaction_id: i64,
    /// `sandbox_topup`, `session_start`, `session_extend`, `session_refund`, …
    pub kind: String,
    /// VND, positive into the wallet.
    pub amount: i64,
    /// Session concerned.
    pub session_id: Option<i64>,
    /// When.
    pub at: DateTime<Utc>,
}

/// Answer of `GET /v1/me/wallet`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WalletView {
    /// Balance, VND.
    pub balance: i64,
    /// Always `VND`.
    pub currency: String,
    /// Whether play-money top-ups (demo sandbox) are on for this server.
    pub sandbox: bool,
    /// Latest movements, newest first.
    pub movements: Vec<WalletMovement>,
}

/// Body of `POST /v1/me/wallet/sandbox-topups` (demo sandbox only).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SandboxTopup {
    /// VND, 1,000 to 10,000,000.
    pub amount: i64,
}

/// How a session is paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentSource {
    /// The driver's prepaid wallet.
    #[default]
    Wallet,
    /// A saved card (give `card_id`), charged off-session when the session starts.
    Card,
}

/// Body of `POST /v1/sessions`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartSession {
    /// Point code from the signboard.
    pub point_code: String,
    /// Plate as written.
    pub plate: String,
    /// Class; default: the class of the registered vehicle with this plate.
    #[serde(default)]
    pub vehicle_class: Option<VehicleClass>,
    /// Minutes wanted (rounded up to whole turns). Give this or `turns`.
    #[serde(default)]
    pub minutes: Option<u32>,
    /// Turns wanted. Give this or `minutes`.
    #[serde(default)]
    pub turns: Option<u32>,
    /// Payment source (default wallet).
    #[serde(default)]
    pub payment: Option<PaymentSource>,
    /// The saved card to charge when `payment` is `card`.
    #[serde(default)]
    pub card_id: Option<i64>,
    /// The driver's latitude, to warn when far from the point.
    #[serde(default)]
    pub lat: Option<f64>,
    /// The driver's longitude.
    #[serde(default)]
    pub lon: Option<f64>,
}

/// Body of `POST /v1/sessions/{id}/extend`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendSession {
    /// Minutes to add (rounded up to whole turns). Give this or `turns`.
    #[serde(default)]
    pub minutes: Option<u32>,
    /// Turns to add.
    #[serde(default)]
    pub turns: Option<u32>,
    /// Payment source (default wallet).
    #[serde(default)]
    pub payment: Option<PaymentSource>,
    /// The saved card to charge when `payment` is `card`.
    #[serde(default)]
    pub card_id: Option<i64>,
}

/// Body of `PATCH /v1/sessions/{id}`: fix a mistyped plate within 5 minutes of the start.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CorrectPlate {
    /// The right plate.
    pub plate: String,
}

/// Session state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    /// Paid and running (or within the grace period).
    Active,
    /// Stopped or expired.
    Ended,
}

/// One purchase of a session (the start or an extension), for the receipt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SessionPurchase {
    /// Turns bought.
    pub turns: u32,
    /// Amount, VND.
    pub amount: i64,
    /// Paid until after it.
    pub paid_until: DateTime<Utc>,
    /// When.
    pub at: DateTime<Utc>,
    /// The priced lines.
    pub lines: Vec<crate::QuoteLine>,
}

/// A parking session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SessionView {
    /// Id.
    pub id: i64,
    /// Status.
    pub status: SessionStatus,
    /// Point code.
    pub point_code: String,
    /// Plate.
    pub plate: String,
    /// Class.
    pub vehicle_class: VehicleClass,
    /// Tariff (version) that priced it.
    pub tariff_id: i64,
    /// `app`, `sms` or `warden_cash`.
    pub channel: String,
    /// Start.
    pub started_at: DateTime<Utc>,
    /// Paid until.
    pub paid_until: DateTime<Utc>,
    /// Paid until plus the grace period.
    pub expires_at: DateTime<Utc>,
    /// Turns bought.
    pub turns: u32,
    /// Charged in all, VND.
    pub amount_charged: i64,
    /// Refunded in all, VND.
    pub amount_refunded: i64,
    /// End.
    pub ended_at: Option<DateTime<Utc>>,
    /// `stopped` or `expired`.
    pub end_reason: Option<String>,
    /// Warnings, e.g. far from the point.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Purchases (receipt), on `GET /v1/sessions/{id}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub purchases: Vec<SessionPurchase>,
}

/// Query of `GET /v1/sessions/{id}/extension-quote`: the price of adding time, before
/// paying it. Give `minutes` or `turns`, as for the extension itself.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExtensionQuoteQuery {
    /// Minutes to add (rounded up to whole turns).
    pub minutes: Option<u32>,
    /// Turns to add.
    pub turns: Option<u32>,
}

/// Answer of `GET /v1/sessions/{id}/stop-quote`: what stopping now would give back (the
/// unused whole turns), before the driver confirms it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StopQuote {
    /// Session id.
    pub session_id: i64,
    /// The refund if stopped now, VND (0 when every bought turn has started).
    pub refund: i64,
    /// `VND`.
    pub currency: String,
    /// The paid time the session holds now.
    pub paid_until: DateTime<Utc>,
}

/// Query of `GET /v1/sessions`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SessionListQuery {
    /// `active` or `ended`; default both.
    pub status: Option<SessionStatus>,
}

/// Body of `POST /webhooks/sms/{carrier}`: a mobile-originated message, as the carrier
/// delivers it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SmsDelivery {
    /// The carrier's id of the message (a repeated delivery carries the same id).
    pub message_id: String,
    /// Sender's number.
    pub from: String,
    /// The short code it was sent to.
    #[serde(default)]
    pub to: Option<String>,
    /// The text, e.g. `IP25HK 001 30A12345`.
    pub text: String,
}

/// Answer to a carrier: the reply to send to the driver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SmsReply {
    /// Text to send back to the sender.
    pub reply: String,
    /// `started`, `extended` or `refused`.
    pub outcome: String,
    /// The session started or extended.
    pub session_id: Option<i64>,
    /// Whether this message id was seen before (nothing was done again).
    pub duplicate: bool,
}

/// Body of `POST /v1/me/wallet/topups`: top up the wallet by card.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TopupRequest {
    /// VND (whole đồng; Stripe treats VND as zero-decimal).
    pub amount: i64,
}

/// Answer of `POST /v1/me/wallet/topups`: what the app needs to let the driver pay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TopupView {
    /// The processor's payment intent id.
    pub intent_id: String,
    /// For the app's card form (Stripe `client_secret`); none in the sandbox.
    pub client_secret: Option<String>,
    /// The processor's status; the wallet is credited when it reports `succeeded`.
    pub status: String,
    /// VND.
    pub amount: i64,
    /// `stripe` or `sandbox` (SANDBOX: play money, credited at once).
    pub gateway: String,
    /// Whether this is the demo sandbox.
    pub sandbox: bool,
}

/// Answer of `POST /v1/me/cards/setups`: what the app needs to collect a card to save.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CardSetupView {
    /// The processor's setup id (Stripe SetupIntent).
    pub setup_id: String,
    /// For the app's card form (Stripe `client_secret`); none in the sandbox.
    pub client_secret: Option<String>,
    /// The processor's status; the card is saved when it reports `succeeded`.
    pub status: String,
    /// The card saved, when it is already (SANDBOX: at once).
    pub card: Option<CardView>,
    /// `stripe` or `sandbox`.
    pub gateway: String,
    /// Whether this is the demo sandbox (a play card, no money).
    pub sandbox: bool,
}

/// A saved card: never its number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CardView {
    /// Id, to pay with (`card_id`).
    pub id: i64,
    /// Brand (`visa`, …; `sandbox` for the demo's play card).
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

/// A refund through the processor (or, when the card cannot take it, to the wallet).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RefundView {
    /// Id.
    pub id: i64,
    /// VND.
    pub amount: i64,
    /// `pending` (not yet accepted by the processor), `submitted`, `succeeded`, or `failed`
    /// (then the amount went to the wallet).
    pub status: String,
    /// Why (`unused_turns`, `account_closed`, `plate_active`, a staff reason, …).
    pub reason: String,
    /// The session refunded, if any.
    pub session_id: Option<i64>,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// A session start or extension paid by card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CardChargeView {
    /// Id.
    pub id: i64,
    /// `pending`, `requires_action` (the driver must authenticate: confirm `intent_id` with
    /// `client_secret` in the app, 3-D Secure), `succeeded`, `failed`, `canceled`,
    /// `refund_due` (paid but could not be given: refunded), `abandoned`.
    pub status: String,
    /// VND.
    pub amount: i64,
    /// `session_start` or `session_extend`.
    pub purpose: String,
    /// The processor's payment intent.
    pub intent_id: Option<String>,
    /// For the app to finish 3-D Secure (only while `requires_action`).
    pub client_secret: Option<String>,
    /// The session, once paid.
    pub session: Option<SessionView>,
    /// Decline code or why it was refunded.
    pub failure_code: Option<String>,
    /// Refunds of this charge.
    pub refunds: Vec<RefundView>,
    /// Until when the driver can authenticate (then the charge is cancelled).
    pub action_deadline: DateTime<Utc>,
}

/// Answer of `POST /v1/me/close`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CloseAccountView {
    /// The refunds of the wallet to the cards that topped it up.
    pub refunds: Vec<RefundView>,
    /// What could not go back to a card (kept for finance to pay out).
    pub remaining_balance: i64,
}

/// Body of `POST /v1/admin/sessions/{id}/refunds`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StaffRefundRequest {
    /// VND, at most what is left to refund.
    pub amount: i64,
    /// Why (kept in the audit trail).
    pub reason: String,
}

/// Answer of `POST /v1/admin/sessions/{id}/refunds`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StaffRefundView {
    /// The session after the refund.
    pub session: SessionView,
    /// The processor refunds made (the wallet part, if any, is credited at once).
    pub refunds: Vec<RefundView>,
}

/// What a card-paid start or extension came to.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // a short-lived return value
pub enum CardPayment {
    /// Paid: the session (201 for a start, 200 for an extension).
    Paid(Box<SessionView>),
    /// 202: waiting for the driver's 3-D Secure (or the processor): poll the charge.
    Pending(CardChargeView),
}
