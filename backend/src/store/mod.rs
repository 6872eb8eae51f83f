//! Durable storage: the [`Store`] trait and its two implementations, SQLite (the embedded
//! default) and PostgreSQL (production). Both share their SQL (see `sql.rs`): every query
//! binds its parameters, none is formatted from input.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use iparking_mobile_api::{PointStatus, StaffRole, VehicleClass};

use crate::domain::tariff::Tariff;

pub mod cards;
pub mod cds;
pub mod chain;
pub mod drivers;
pub mod finance;
mod postgres;
mod sql;
mod sql_cards;
pub(crate) mod sql_chain;
mod sql_drivers;
pub(crate) mod sql_finance;
mod sql_wardens;
mod sqlite;
pub mod wardens;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// What a storage call can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached (connection refused, pool timed out). Retryable.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A uniqueness rule was broken; carries the constraint name.
    #[error("constraint violated: {0}")]
    Conflict(String),
    /// Anything else: a bug or a corrupt row.
    #[error("database error: {0}")]
    Internal(String),
}

/// Result of a storage call.
pub type StoreResult<T> = Result<T, StoreError>;

/// A district.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct District {
    /// Row id.
    pub id: i64,
    /// Short code, e.g. `HK`.
    pub code: String,
    /// Name, e.g. `Hoàn Kiếm`.
    pub name: String,
}

/// A street and its district.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Street {
    /// Row id.
    pub id: i64,
    /// Name, unique within its district.
    pub name: String,
    /// District row id.
    pub district_id: i64,
    /// District code.
    pub district_code: String,
}

/// A parking point with its street and district.
#[derive(Debug, Clone, PartialEq)]
pub struct PointRecord {
    /// Row id (internal; the public id is `code`).
    pub id: i64,
    /// Signboard code.
    pub code: String,
    /// Display name.
    pub name: String,
    /// Street row id.
    pub street_id: i64,
    /// Street name.
    pub street_name: String,
    /// District row id.
    pub district_id: i64,
    /// District code.
    pub district_code: String,
    /// District name.
    pub district_name: String,
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lon: f64,
    /// Curb line as `[lon, lat]` pairs.
    pub curb: Option<Vec<[f64; 2]>>,
    /// Spaces.
    pub capacity: i32,
    /// Allowed classes.
    pub vehicle_classes: Vec<VehicleClass>,
    /// Open or closed.
    pub status: PointStatus,
    /// Last registry change.
    pub updated_at: DateTime<Utc>,
}

/// A validated point to create on an existing street.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPoint {
    /// Signboard code (validated against the street's district).
    pub code: String,
    /// Display name.
    pub name: String,
    /// Street row id.
    pub street_id: i64,
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lon: f64,
    /// Curb line.
    pub curb: Option<Vec<[f64; 2]>>,
    /// Spaces.
    pub capacity: i32,
    /// Allowed classes (non-empty, sorted).
    pub vehicle_classes: Vec<VehicleClass>,
}

/// A validated point to create on a street named within a district; the street is
/// created when missing. Used by imports and seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPointOnStreet {
    /// District row id.
    pub district_id: i64,
    /// Street name.
    pub street_name: String,
    /// Signboard code.
    pub code: String,
    /// Display name.
    pub name: String,
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lon: f64,
    /// Curb line.
    pub curb: Option<Vec<[f64; 2]>>,
    /// Spaces.
    pub capacity: i32,
    /// Allowed classes.
    pub vehicle_classes: Vec<VehicleClass>,
}

/// A validated change to a point; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PointPatch {
    /// New name.
    pub name: Option<String>,
    /// New `(lat, lon)`.
    pub position: Option<(f64, f64)>,
    /// New curb line; `Some(None)` removes it.
    pub curb: Option<Option<Vec<[f64; 2]>>>,
    /// New capacity.
    pub capacity: Option<i32>,
    /// New classes.
    pub vehicle_classes: Option<Vec<VehicleClass>>,
}

/// A staff member to create.
#[derive(Debug, Clone)]
pub struct NewStaff {
    /// Display name.
    pub name: String,
    /// Role.
    pub role: StaffRole,
    /// District row ids of the scope; empty (with no streets) means city-wide.
    pub district_ids: Vec<i64>,
    /// Street row ids assigned (wardens).
    pub street_ids: Vec<i64>,
    /// Username for password login.
    pub username: Option<String>,
    /// argon2 PHC string of the password.
    pub password_hash: Option<String>,
}

/// Who is calling, resolved from a bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Staff row id.
    pub staff_id: i64,
    /// Display name.
    pub name: String,
    /// Role.
    pub role: StaffRole,
    /// District codes of the scope; empty (with no streets) means city-wide.
    pub district_codes: Vec<String>,
    /// Street ids assigned, besides whole districts.
    pub street_ids: Vec<i64>,
    /// The token row that authenticated this call.
    pub token_id: i64,
}

impl Principal {
    /// Whether the principal may act in district `code` (as a whole).
    pub fn covers_district(&self, code: &str) -> bool {
        self.is_city_wide() || self.district_codes.iter().any(|c| c == code)
    }

    /// Whether the principal may act at a point of street `street_id` in district `code`:
    /// inspectors everywhere, others by district or by street.
    pub fn covers_point(&self, district_code: &str, street_id: i64) -> bool {
        self.role == StaffRole::Inspector
            || self.is_city_wide()
            || self.district_codes.iter().any(|c| c == district_code)
            || self.street_ids.contains(&street_id)
    }

    /// No district and no street assigned.
    pub fn is_city_wide(&self) -> bool {
        self.district_codes.is_empty() && self.street_ids.is_empty()
    }
}

/// Durable storage of the city registry and staff.
#[async_trait]
pub trait Store:
    drivers::DriverStore
    + cards::CardStore
    + wardens::WardenStore
    + finance::FinanceStore
    + cds::CdsStore
    + chain::ChainStore
    + Send
    + Sync
    + 'static
{
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    /// Applies the embedded migrations (safe to run on every start and from many nodes).
    async fn migrate(&self) -> StoreResult<()>;
    /// A round trip to the database.
    async fn ping(&self) -> StoreResult<()>;

    /// Creates a district.
    async fn create_district(&self, code: &str, name: &str, now: DateTime<Utc>) -> StoreResult<District>;
    /// All districts, by code.
    async fn districts(&self) -> StoreResult<Vec<District>>;
    /// A secret every node shares (`name`): `candidate` is stored if none is yet, and the
    /// stored one is returned (the first node to start picks it).
    async fn server_secret(&self, name: &str, candidate: &str, now: DateTime<Utc>) -> StoreResult<String>;
    /// Creates a street in a district.
    async fn create_street(&self, district_id: i64, name: &str, now: DateTime<Utc>) -> StoreResult<Street>;
    /// Streets of one district (or all), by name.
    async fn streets(&self, district_id: Option<i64>) -> StoreResult<Vec<Street>>;
    /// One street.
    async fn street(&self, id: i64) -> StoreResult<Option<Street>>;

    /// Creates a point on an existing street.
    async fn create_point(&self, point: &NewPoint, now: DateTime<Utc>) -> StoreResult<PointRecord>;
    /// Creates many points in one transaction, creating missing streets; all or none.
    async fn insert_points(&self, points: &[NewPointOnStreet], now: DateTime<Utc>) -> StoreResult<u64>;
    /// Changes a point; `None` if there is no such code.
    async fn update_point(
        &self,
        code: &str,
        patch: &PointPatch,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<PointRecord>>;
    /// Opens or closes a point; `None` if there is no such code.
    async fn set_point_status(
        &self,
        code: &str,
        status: PointStatus,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<PointRecord>>;
    /// One point by code.
    async fn point(&self, code: &str) -> StoreResult<Option<PointRecord>>;
    /// Every point (to build the in-memory index).
    async fn points(&self) -> StoreResult<Vec<PointRecord>>;
    /// Every point code (to check an import before writing).
    async fn point_codes(&self) -> StoreResult<Vec<String>>;
    /// A counter bumped by every registry change.
    async fn registry_version(&self) -> StoreResult<i64>;
    /// Occupied spaces per point id: active sessions. The live state's occupancy counters
    /// are rebuilt from this at start.
    async fn occupied_by_point(&self) -> StoreResult<Vec<(i64, i64)>>;

    /// Publishes a tariff (validated, id 0) unless it overlaps a tariff of the same scope,
    /// class and time: then nothing is written and the overlapping ids are returned.
    async fn publish_tariff(
        &self,
        tariff: &Tariff,
        published_by: Option<i64>,
        now: DateTime<Utc>,
    ) -> StoreResult<Result<Tariff, Vec<i64>>>;
    /// Every tariff ever published (they are few; each node keeps them in memory).
    async fn tariffs(&self) -> StoreResult<Vec<Tariff>>;
    /// Ends a tariff's validity at `at` (not before it starts, never later than an earlier
    /// end). `None` if there is no such tariff.
    async fn retire_tariff(
        &self,
        id: i64,
        at: DateTime<Utc>,
        by: Option<i64>,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Tariff>>;
    /// A counter bumped by every tariff change.
    async fn tariff_version(&self) -> StoreResult<i64>;

    /// Creates a staff member with a first token (its SHA-256). Returns `(staff_id, token_id)`.
    async fn create_staff(&self, staff: &NewStaff, token_hash: &str, now: DateTime<Utc>) -> StoreResult<(i64, i64)>;
    /// The principal holding an unrevoked token with this hash.
    async fn principal_by_token(&self, token_hash: &str) -> StoreResult<Option<Principal>>;
    /// Revokes a token; `false` if there was no such unrevoked token.
    async fn revoke_token(&self, token_id: i64, now: DateTime<Utc>) -> StoreResult<bool>;
}

/// Reads a stored status back by its name (`parse` of a `stored_names!` enum), or fails
/// naming the row: the tables' CHECK constraints keep other text out, so this is a bug.
pub(crate) fn stored_name<T>(parse: fn(&str) -> Option<T>, text: &str, table: &str, id: i64) -> StoreResult<T> {
    parse(text).ok_or_else(|| StoreError::Internal(format!("{table} {id} holds an unknown name {text:?}")))
}

/// Maps a sqlx error to a [`StoreError`], naming the constraint of a unique violation
/// the same way on both databases (SQLite reports `table.column`, not the name).
pub(crate) fn map_sqlx(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            let name = db.constraint().map(str::to_owned).unwrap_or_else(|| sqlite_constraint(db.message()));
            StoreError::Conflict(name)
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
            StoreError::Unavailable(e.to_string())
        }
        sqlx::Error::Database(db) if is_pg_unavailable(db.code().as_deref()) => StoreError::Unavailable(e.to_string()),
        // A deadlock or serialisation failure rolled the transaction back: nothing was
        // written, and the call can be retried (with the same idempotency key).
        sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40P01" | "40001")) => {
            StoreError::Unavailable(e.to_string())
        }
        // SQLite's write lock still held by another writer past the busy timeout
        // (SQLITE_BUSY, SQLITE_LOCKED and their extended codes): nothing was written, and
        // the call can be retried (with the same idempotency key).
        sqlx::Error::Database(db)
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() && is_sqlite_busy(db.code().as_deref()) =>
        {
            StoreError::Unavailable(e.to_string())
        }
        // The closed-period triggers (migration 0008), on both databases.
        sqlx::Error::Database(db) if db.message().starts_with("period_closed") => {
            StoreError::Conflict("period_closed".into())
        }
        _ => StoreError::Internal(e.to_string()),
    }
}

/// SQLite's primary result codes 5 (`SQLITE_BUSY`) and 6 (`SQLITE_LOCKED`), also as the low
/// byte of an extended code (e.g. 517 `SQLITE_BUSY_SNAPSHOT`).
fn is_sqlite_busy(code: Option<&str>) -> bool {
    code.and_then(|c| c.parse::<i32>().ok()).is_some_and(|c| matches!(c & 0xff, 5 | 6))
}

/// PostgreSQL SQLSTATE classes 08 (connection) and 57P (operator intervention: shutdown).
fn is_pg_unavailable(code: Option<&str>) -> bool {
    code.is_some_and(|c| c.starts_with("08") || c.starts_with("57P"))
}

fn sqlite_constraint(message: &str) -> String {
    // "UNIQUE constraint failed: points.code" -> the PostgreSQL constraint name.
    let cols = message.rsplit(": ").next().unwrap_or("");
    match cols {
        "points.code" => "points_code_key",
        "districts.code" => "districts_code_key",
        "streets.district_id, streets.name" => "streets_district_name_key",
        "staff_tokens.token_hash" => "staff_tokens_hash_key",
        "idempotency_keys.scope, idempotency_keys.key" => "idempotency_keys_pkey",
        "sessions.plate" => "sessions_active_plate_key",
        "drivers.phone" => "drivers_phone_key",
        "vehicles.driver_id, vehicles.plate" => "vehicles_driver_plate_key",
        "driver_tokens.token_hash" => "driver_tokens_hash_key",
        "sms_messages.carrier, sms_messages.message_id" => "sms_messages_pkey",
        "staff.username" => "staff_username_key",
        "warden_shifts.staff_id" => "warden_shifts_open_key",
        "refund_requests.session_id" => "refund_requests_pending_session_key",
        "discrepancies.kind, discrepancies.subject" => "discrepancies_kind_subject_key",
        "carrier_settlements.carrier, carrier_settlements.month" => "carrier_settlements_current_key",
        other => other,
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn sqlite_busy_codes() {
        for code in ["5", "6", "517", "261", "773", "262"] {
            assert!(super::is_sqlite_busy(Some(code)), "{code}");
        }
        for code in ["1", "19", "2067", "", "x"] {
            assert!(!super::is_sqlite_busy(Some(code)), "{code}");
        }
        assert!(!super::is_sqlite_busy(None));
    }

    use super::*;

    #[test]
    fn sqlite_constraint_names_match_postgres() {
        assert_eq!(sqlite_constraint("UNIQUE constraint failed: points.code"), "points_code_key");
        assert_eq!(
            sqlite_constraint("UNIQUE constraint failed: streets.district_id, streets.name"),
            "streets_district_name_key"
        );
    }

    #[test]
    fn principal_scope() {
        let mut p = Principal {
            staff_id: 1,
            name: "a".into(),
            role: StaffRole::Admin,
            district_codes: vec![],
            street_ids: vec![],
            token_id: 1,
        };
        assert!(p.covers_district("HK"));
        p.district_codes = vec!["BD".into()];
        assert!(!p.covers_district("HK"));
        assert!(p.covers_district("BD"));
        p.role = StaffRole::Warden;
        p.district_codes = vec![];
        p.street_ids = vec![4];
        assert!(p.covers_point("HK", 4));
        assert!(!p.covers_point("HK", 5), "a street warden covers only the street");
        assert!(!p.covers_district("HK"));
        p.role = StaffRole::Inspector;
        assert!(p.covers_point("DD", 9), "inspectors are city-wide");
    }
}
