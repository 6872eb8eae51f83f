//! The SQL shared by both stores.
//!
//! SQLite and PostgreSQL accept the same statements here (`$n` placeholders, `RETURNING`,
//! `ON CONFLICT`), so the implementation is written once as a macro and instantiated for
//! each pool type: two real, separately compiled implementations with no dynamic
//! dispatch on the query path and no `Any` driver (which lacks chrono).

use chrono::{DateTime, Utc};
use iparking_mobile_api::{PointStatus, StaffRole};

use super::{District, PointRecord, StoreError, Street};
use crate::domain::city::classes_from_db;

pub(crate) const POINT_SELECT: &str = "SELECT p.id, p.code, p.name, p.street_id, s.name AS street_name, \
     d.id AS district_id, d.code AS district_code, d.name AS district_name, \
     p.lat, p.lon, p.curb, p.capacity, p.vehicle_classes, p.status, p.updated_at \
     FROM points p JOIN streets s ON s.id = p.street_id JOIN districts d ON d.id = s.district_id";

#[derive(sqlx::FromRow)]
pub(crate) struct PointRow {
    pub id: i64,
    pub code: String,
    pub name: String,
    pub street_id: i64,
    pub street_name: String,
    pub district_id: i64,
    pub district_code: String,
    pub district_name: String,
    pub lat: f64,
    pub lon: f64,
    pub curb: Option<String>,
    pub capacity: i32,
    pub vehicle_classes: String,
    pub status: String,
    pub updated_at: DateTime<Utc>,
}

impl TryFrom<PointRow> for PointRecord {
    type Error = StoreError;

    fn try_from(r: PointRow) -> Result<Self, StoreError> {
        let curb = match r.curb {
            Some(text) => Some(
                serde_json::from_str(&text)
                    .map_err(|e| StoreError::Internal(format!("point {} has a corrupt curb: {e}", r.id)))?,
            ),
            None => None,
        };
        let status = match r.status.as_str() {
            "open" => PointStatus::Open,
            "closed" => PointStatus::Closed,
            other => return Err(StoreError::Internal(format!("point {} has status {other}", r.id))),
        };
        Ok(PointRecord {
            id: r.id,
            code: r.code,
            name: r.name,
            street_id: r.street_id,
            street_name: r.street_name,
            district_id: r.district_id,
            district_code: r.district_code,
            district_name: r.district_name,
            lat: r.lat,
            lon: r.lon,
            curb,
            capacity: r.capacity,
            vehicle_classes: classes_from_db(&r.vehicle_classes),
            status,
            updated_at: r.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct DistrictRow {
    pub id: i64,
    pub code: String,
    pub name: String,
}

impl From<DistrictRow> for District {
    fn from(r: DistrictRow) -> Self {
        District { id: r.id, code: r.code, name: r.name }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct StreetRow {
    pub id: i64,
    pub name: String,
    pub district_id: i64,
    pub district_code: String,
}

impl From<StreetRow> for Street {
    fn from(r: StreetRow) -> Self {
        Street { id: r.id, name: r.name, district_id: r.district_id, district_code: r.district_code }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct PrincipalRow {
    pub token_id: i64,
    pub staff_id: i64,
    pub name: String,
    pub role: String,
}

#[derive(sqlx::FromRow)]
pub(crate) struct TariffRow {
    pub id: i64,
    pub spec: String,
    pub valid_until: Option<DateTime<Utc>>,
    pub published_at: DateTime<Utc>,
}

impl TryFrom<TariffRow> for crate::domain::tariff::Tariff {
    type Error = StoreError;

    fn try_from(r: TariffRow) -> Result<Self, StoreError> {
        let mut spec: iparking_mobile_api::TariffSpec = serde_json::from_str(&r.spec)
            .map_err(|e| StoreError::Internal(format!("tariff {} has a corrupt spec: {e}", r.id)))?;
        spec.valid_until = r.valid_until;
        let mut t = crate::domain::tariff::Tariff::from_spec(r.id, &spec)
            .map_err(|e| StoreError::Internal(format!("tariff {} no longer validates: {e}", r.id)))?;
        t.published_at = Some(r.published_at);
        Ok(t)
    }
}

/// `(scope_kind, scope_ref)` columns of a scope.
pub(crate) fn scope_columns(scope: &iparking_mobile_api::TariffScope) -> (&'static str, String) {
    use iparking_mobile_api::TariffScope;
    match scope {
        TariffScope::City => ("city", String::new()),
        TariffScope::District { district } => ("district", district.clone()),
        TariffScope::Street { street_id } => ("street", street_id.to_string()),
        TariffScope::Point { point } => ("point", point.clone()),
    }
}

pub(crate) fn role_from_db(s: &str) -> Result<StaffRole, StoreError> {
    StaffRole::parse(s).ok_or_else(|| StoreError::Internal(format!("unknown staff role {s}")))
}

pub(crate) fn curb_to_db(curb: &Option<Vec<[f64; 2]>>) -> Option<String> {
    curb.as_ref().map(|c| serde_json::to_string(c).unwrap_or_default())
}

/// Rows per multi-row INSERT: 11 binds each keeps us far below both databases' limits.
pub(crate) const INSERT_CHUNK: usize = 500;

/// Implements [`super::Store`] for a store type with a `pool` field of `sqlx::Pool<$db>`.
macro_rules! sql_store_impl {
    ($store:ty, $db:ty, backend = $backend:literal) => {
        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            async fn migrate(&self) -> $crate::store::StoreResult<()> {
                self.migrator().run(&self.pool).await.map_err(|e| match e {
                    sqlx::migrate::MigrateError::Execute(e) => $crate::store::map_sqlx(e),
                    other => $crate::store::StoreError::Internal(other.to_string()),
                })
            }

            async fn ping(&self) -> $crate::store::StoreResult<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await.map_err($crate::store::map_sqlx)?;
                Ok(())
            }

            async fn create_district(
                &self,
                code: &str,
                name: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<$crate::store::District> {
                let mut tx = self.pool.begin().await.map_err($crate::store::map_sqlx)?;
                // A code already taken is found without a unique violation (no error in the
                // database's log for a client's duplicate).
                let row: Option<$crate::store::sql::DistrictRow> = sqlx::query_as(
                    "INSERT INTO districts (code, name, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (code) DO NOTHING RETURNING id, code, name",
                )
                .bind(code)
                .bind(name)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await
                .map_err($crate::store::map_sqlx)?;
                let row = row.ok_or_else(|| $crate::store::StoreError::Conflict("districts_code_key".into()))?;
                bump_version(&mut tx).await?;
                tx.commit().await.map_err($crate::store::map_sqlx)?;
                Ok(row.into())
            }

            async fn server_secret(
                &self,
                name: &str,
                candidate: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<String> {
                sqlx::query(
                    "INSERT INTO server_secrets (name, value, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
                )
                .bind(name)
                .bind(candidate)
                .bind(now)
                .execute(&self.pool)
                .await
                .map_err($crate::store::map_sqlx)?;
                sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = $1")
                    .bind(name)
                    .fetch_one(&self.pool)
                    .await
                    .map_err($crate::store::map_sqlx)
            }

            async fn districts(&self) -> $crate::store::StoreResult<Vec<$crate::store::District>> {
                let rows: Vec<$crate::store::sql::DistrictRow> =
                    sqlx::query_as("SELECT id, code, name FROM districts ORDER BY code")
                        .fetch_all(&self.pool)
                        .await
                        .map_err($crate::store::map_sqlx)?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn create_street(
                &self,
                district_id: i64,
                name: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<$crate::store::Street> {
                let mut tx = self.pool.begin().await.map_err($crate::store::map_sqlx)?;
                let id: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO streets (district_id, name, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (district_id, name) DO NOTHING RETURNING id",
                )
                .bind(district_id)
                .bind(name)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await
                .map_err($crate::store::map_sqlx)?;
                let id = id.ok_or_else(|| $crate::store::StoreError::Conflict("streets_district_name_key".into()))?;
                bump_version(&mut tx).await?;
                let row: $crate::store::sql::StreetRow = sqlx::query_as(
                    "SELECT s.id, s.name, s.district_id, d.code AS district_code \
                     FROM streets s JOIN districts d ON d.id = s.district_id WHERE s.id = $1",
                )
                .bind(id)
                .fetch_one(&mut *tx)
                .await
                .map_err($crate::store::map_sqlx)?;
                tx.commit().await.map_err($crate::store::map_sqlx)?;
                Ok(row.into())
            }

            async fn streets(
                &self,
                district_id: Option<i64>,
            ) -> $crate::store::StoreResult<Vec<$crate::store::Street>> {
                let rows: Vec<$crate::store::sql::StreetRow> = sqlx::query_as(
                    "SELECT s.id, s.name, s.district_id, d.code AS district_code \
                     FROM streets s JOIN districts d ON d.id = s.district_id \
                     WHERE ($1 IS NULL OR s.district_id = $1) ORDER BY d.code, s.name",
                )
                .bind(district_id)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::store::map_sqlx)?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn street(&self, id: i64) -> $crate::store::StoreResult<Option<$crate::store::Street>> {
                let row: Option<$crate::store::sql::StreetRow> = sqlx::query_as(
                    "SELECT s.id, s.name, s.district_id, d.code AS district_code \
                     FROM streets s JOIN districts d ON d.id = s.district_id WHERE s.id = $1",
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::store::map_sqlx)?;
                Ok(row.map(Into::into))
            }

            async fn create_point(
                &self,
                p: &$crate::store::NewPoint,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<$crate::store::PointRecord> {
                let mut tx = self.pool.begin().await.map_err($crate::store::map_sqlx)?;
                let inserted = sqlx::query(
                    "INSERT INTO points (code, name, street_id, lat, lon, curb, capacity, vehicle_classes, \
                     status, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'open', $9, $9) \
                     ON CONFLICT (code) DO NOTHING",
                )
                .bind(&p.code)
                .bind(&p.name)
                .bind(p.street_id)
                .bind(p.lat)
                .bind(p.lon)
                .bind($crate::store::sql::curb_to_db(&p.curb))
                .bind(p.capacity)
                .bind($crate::domain::city::classes_to_db(&p.vehicle_classes))
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err($crate::store::map_sqlx)?
                .rows_affected();
                if inserted == 0 {
                    return Err($crate::store::StoreError::Conflict("points_code_key".into()));
                }
                bump_version(&mut tx).await?;
                let rec = point_in(&mut tx, &p.code).await?;
                tx.commit().await.map_err($crate::store::map_sqlx)?;
                rec.ok_or_else(|| $crate::store::StoreError::Internal("inserted point vanished".into()))
            }

            async fn insert_points(
                &self,
                points: &[$crate::store::NewPointOnStreet],
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<u64> {
                use std::collections::HashMap;
                let mut tx = self.pool.begin().await.map_err($crate::store::map_sqlx)?;
                let mut street_ids: HashMap<(i64, &str), i64> = HashMap::new();
                for p in points {
                    let key = (p.district_id, p.street_name.as_str());
                    if street_ids.contains_key(&key) {
                        continue;
                    }
                    sqlx::query(
                        "INSERT INTO streets (district_id, name, created_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (district_id, name) DO NOTHING",
                    )
                    .bind(p.district_id)
                    .bind(&p.street_name)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::store::map_sqlx)?;
                    let id: i64 = sqlx::query_scalar("SELECT id FROM streets WHERE district_id = $1 AND name = $2")
                        .bind(p.district_id)
                        .bind(&p.street_name)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err($crate::store::map_sqlx)?;
                    street_ids.insert(key, id);
                }
                let mut inserted = 0u64;
                for chunk in points.chunks($crate::store::sql::INSERT_CHUNK) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO points (code, name, street_id, lat, lon, curb, capacity, vehicle_classes, \
                         status, created_at, updated_at) ",
                    );
                    qb.push_values(chunk, |mut b, p| {
                        b.push_bind(p.code.clone())
                            .push_bind(p.name.clone())
                            .push_bind(street_ids[&(p.district_id, p.street_name.as_str())])
                            .push_bind(p.lat)
                            .push_bind(p.lon)
                            .push_bind($crate::store::sql::curb_to_db(&p.curb))
                            .push_bind(p.capacity)
                            .push_bind($crate::domain::city::classes_to_db(&p.vehicle_classes))
                            .push_bind("open")
                            .push_bind(now)
                            .push_bind(now);
                    });
                    inserted += qb.build().execute(&mut *tx).await.map_err($crate::store::map_sqlx)?.rows_affected();
                }
                bump_version(&mut tx).await?;
                tx.commit().await.map_err($crate::store::map_sqlx)?;
                Ok(inserted)
            }

            async fn update_point(
                &self,
                code: &str,
                patch: &$crate::store::PointPatch,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<Option<$crate::store::PointRecord>> {
                let (lat, lon) = patch.position.unzip();
                let curb_given = patch.curb.is_some();
                let curb = patch.curb.as_ref().and_then($crate::store::sql::curb_to_db);
                let classes = patch.vehicle_classes.as_deref().map($crate::domain::city::classes_to_db);
                let mut tx = self.pool.begin().await.map_err($crate::store::map_sqlx)?;
                let n = sqlx::query(
                    "UPDATE points SET name = COALESCE($2, name), lat = COALESCE($3, lat), lon = COALESCE($4, lon), \
                     curb = CASE WHEN $5 THEN $6 ELSE curb END, capacity = COALESCE($7, capacity), \
                     vehicle_classes = COALESCE($8, vehicle_classes), updated_at = $9 WHERE code = $1",
                )
                .bind(code)
                .bind(patch.name.as_deref())
                .bind(lat)
                .bind(lon)
                .bind(curb_given)
                .bind(curb)
                .bind(patch.capacity)
                .bind(classes)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err($crate::store::map_sqlx)?
                .rows_affected();
                if n == 0 {
                    return Ok(None);
                }
                bump_version(&mut tx).await?;
                let rec = point_in(&mut tx, code).await?;
                tx.commit().await.map_err($crate::store::map_sqlx)?;
                Ok(rec)
            }

            async fn set_point_status(
                &self,
                code: &str,
                status: iparking_mobile_api::PointStatus,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<Option<$crate::store::PointRecord>> {
                let mut tx = self.pool.begin().await.map_err($crate::store::map_sqlx)?;
                let n = sqlx::query("UPDATE points SET status = $2, updated_at = $3 WHERE code = $1")
                    .bind(code)
                    .bind(status.as_str())
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::store::map_sqlx)?
                    .rows_affected();
                if n == 0 {
                    return Ok(None);
                }
                bump_version(&mut tx).await?;
                let rec = point_in(&mut tx, code).await?;
                tx.commit().await.map_err($crate::store::map_sqlx)?;
                Ok(rec)
            }

            async fn point(&self, code: &str) -> $crate::store::StoreResult<Option<$crate::store::PointRecord>> {
                let sql = sqlx::AssertSqlSafe(format!("{} WHERE p.code = $1", $crate::store::sql::POINT_SELECT));
                let row: Option<$crate::store::sql::PointRow> =
                    sqlx::query_as(sql).bind(code).fetch_optional(&self.pool).await.map_err($crate::store::map_sqlx)?;
                row.map(TryInto::try_into).transpose()
            }

            async fn points(&self) -> $crate::store::StoreResult<Vec<$crate::store::PointRecord>> {
                let sql = sqlx::AssertSqlSafe(format!("{} ORDER BY p.id", $crate::store::sql::POINT_SELECT));
                let rows: Vec<$crate::store::sql::PointRow> =
                    sqlx::query_as(sql).fetch_all(&self.pool).await.map_err($crate::store::map_sqlx)?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn point_codes(&self) -> $crate::store::StoreResult<Vec<String>> {
                sqlx::query_scalar("SELECT code FROM points")
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::store::map_sqlx)
            }

            async fn registry_version(&self) -> $crate::store::StoreResult<i64> {
                sqlx::query_scalar("SELECT version FROM registry_meta WHERE id = 1")
                    .fetch_one(&self.pool)
                    .await
                    .map_err($crate::store::map_sqlx)
            }

            async fn occupied_by_point(&self) -> $crate::store::StoreResult<Vec<(i64, i64)>> {
                sqlx::query_as("SELECT point_id, COUNT(*) FROM sessions WHERE status = 'active' GROUP BY point_id")
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::store::map_sqlx)
            }

            async fn publish_tariff(
                &self,
                tariff: &$crate::domain::tariff::Tariff,
                published_by: Option<i64>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<Result<$crate::domain::tariff::Tariff, Vec<i64>>> {
                let (kind, scope_ref) = $crate::store::sql::scope_columns(&tariff.scope);
                let mut tx = self.pool.begin().await.map_err($crate::store::map_sqlx)?;
                // First statement is a write: it takes the row lock (PostgreSQL) or the write
                // lock (SQLite), so concurrent publishers run the overlap check one at a time.
                bump_tariff_version(&mut tx).await?;
                let same_scope: Vec<$crate::store::sql::TariffRow> = sqlx::query_as(
                    "SELECT id, spec, valid_until, published_at FROM tariffs WHERE scope_kind = $1 AND scope_ref = $2",
                )
                .bind(kind)
                .bind(&scope_ref)
                .fetch_all(&mut *tx)
                .await
                .map_err($crate::store::map_sqlx)?;
                let mut conflicts = Vec::new();
                for row in same_scope {
                    let existing: $crate::domain::tariff::Tariff = row.try_into()?;
                    if existing.overlaps(tariff) {
                        conflicts.push(existing.id);
                    }
                }
                if !conflicts.is_empty() {
                    tx.rollback().await.map_err($crate::store::map_sqlx)?;
                    return Ok(Err(conflicts));
                }
                let spec = serde_json::to_string(&tariff.to_spec())
                    .map_err(|e| $crate::store::StoreError::Internal(e.to_string()))?;
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO tariffs (name, scope_kind, scope_ref, vehicle_classes, valid_from, valid_until, spec, \
                     published_at, published_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
                )
                .bind(&tariff.name)
                .bind(kind)
                .bind(&scope_ref)
                .bind($crate::domain::city::classes_to_db(&tariff.classes))
                .bind(tariff.valid_from)
                .bind(tariff.valid_until)
                .bind(spec)
                .bind(now)
                .bind(published_by)
                .fetch_one(&mut *tx)
                .await
                .map_err($crate::store::map_sqlx)?;
                tx.commit().await.map_err($crate::store::map_sqlx)?;
                Ok(Ok($crate::domain::tariff::Tariff { id, published_at: Some(now), ..tariff.clone() }))
            }

            async fn tariffs(&self) -> $crate::store::StoreResult<Vec<$crate::domain::tariff::Tariff>> {
                let rows: Vec<$crate::store::sql::TariffRow> =
                    sqlx::query_as("SELECT id, spec, valid_until, published_at FROM tariffs ORDER BY id")
                        .fetch_all(&self.pool)
                        .await
                        .map_err($crate::store::map_sqlx)?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn retire_tariff(
                &self,
                id: i64,
                at: chrono::DateTime<chrono::Utc>,
                by: Option<i64>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<Option<$crate::domain::tariff::Tariff>> {
                let mut tx = self.pool.begin().await.map_err($crate::store::map_sqlx)?;
                bump_tariff_version(&mut tx).await?;
                let row: Option<$crate::store::sql::TariffRow> =
                    sqlx::query_as("SELECT id, spec, valid_until, published_at FROM tariffs WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err($crate::store::map_sqlx)?;
                let Some(row) = row else { return Ok(None) };
                let current: $crate::domain::tariff::Tariff = row.try_into()?;
                let end = at.max(current.valid_from);
                if current.valid_until.is_none_or(|u| end < u) {
                    sqlx::query("UPDATE tariffs SET valid_until = $2, retired_at = $3, retired_by = $4 WHERE id = $1")
                        .bind(id)
                        .bind(end)
                        .bind(now)
                        .bind(by)
                        .execute(&mut *tx)
                        .await
                        .map_err($crate::store::map_sqlx)?;
                }
                let row: $crate::store::sql::TariffRow =
                    sqlx::query_as("SELECT id, spec, valid_until, published_at FROM tariffs WHERE id = $1")
                        .bind(id)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err($crate::store::map_sqlx)?;
                tx.commit().await.map_err($crate::store::map_sqlx)?;
                Ok(Some(row.try_into()?))
            }

            async fn tariff_version(&self) -> $crate::store::StoreResult<i64> {
                sqlx::query_scalar("SELECT version FROM tariff_meta WHERE id = 1")
                    .fetch_one(&self.pool)
                    .await
                    .map_err($crate::store::map_sqlx)
            }

            async fn create_staff(
                &self,
                staff: &$crate::store::NewStaff,
                token_hash: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<(i64, i64)> {
                let mut tx = self.pool.begin().await.map_err($crate::store::map_sqlx)?;
                // A username already taken is found without a unique violation (no error in
                // the database's log for a client's duplicate).
                let staff_id: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO staff (name, role, username, password_hash, created_at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (username) WHERE username IS NOT NULL DO NOTHING RETURNING id",
                )
                .bind(&staff.name)
                .bind(staff.role.as_str())
                .bind(staff.username.as_deref())
                .bind(staff.password_hash.as_deref())
                .bind(now)
                .fetch_optional(&mut *tx)
                .await
                .map_err($crate::store::map_sqlx)?;
                let staff_id =
                    staff_id.ok_or_else(|| $crate::store::StoreError::Conflict("staff_username_key".into()))?;
                for s in &staff.street_ids {
                    sqlx::query("INSERT INTO staff_streets (staff_id, street_id) VALUES ($1, $2)")
                        .bind(staff_id)
                        .bind(*s)
                        .execute(&mut *tx)
                        .await
                        .map_err($crate::store::map_sqlx)?;
                }
                for d in &staff.district_ids {
                    sqlx::query("INSERT INTO staff_districts (staff_id, district_id) VALUES ($1, $2)")
                        .bind(staff_id)
                        .bind(*d)
                        .execute(&mut *tx)
                        .await
                        .map_err($crate::store::map_sqlx)?;
                }
                let token_id: i64 = sqlx::query_scalar(
                    "INSERT INTO staff_tokens (staff_id, token_hash, created_at) VALUES ($1, $2, $3) RETURNING id",
                )
                .bind(staff_id)
                .bind(token_hash)
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .map_err($crate::store::map_sqlx)?;
                tx.commit().await.map_err($crate::store::map_sqlx)?;
                Ok((staff_id, token_id))
            }

            async fn principal_by_token(
                &self,
                token_hash: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::Principal>> {
                let row: Option<$crate::store::sql::PrincipalRow> = sqlx::query_as(
                    "SELECT t.id AS token_id, s.id AS staff_id, s.name, s.role FROM staff_tokens t \
                     JOIN staff s ON s.id = t.staff_id WHERE t.token_hash = $1 AND t.revoked_at IS NULL",
                )
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::store::map_sqlx)?;
                let Some(row) = row else { return Ok(None) };
                let district_codes: Vec<String> = sqlx::query_scalar(
                    "SELECT d.code FROM staff_districts sd JOIN districts d ON d.id = sd.district_id \
                     WHERE sd.staff_id = $1 ORDER BY d.code",
                )
                .bind(row.staff_id)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::store::map_sqlx)?;
                let street_ids: Vec<i64> =
                    sqlx::query_scalar("SELECT street_id FROM staff_streets WHERE staff_id = $1 ORDER BY street_id")
                        .bind(row.staff_id)
                        .fetch_all(&self.pool)
                        .await
                        .map_err($crate::store::map_sqlx)?;
                Ok(Some($crate::store::Principal {
                    staff_id: row.staff_id,
                    name: row.name,
                    role: $crate::store::sql::role_from_db(&row.role)?,
                    district_codes,
                    street_ids,
                    token_id: row.token_id,
                }))
            }

            async fn revoke_token(
                &self,
                token_id: i64,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<bool> {
                let n = sqlx::query("UPDATE staff_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                    .bind(token_id)
                    .bind(now)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::store::map_sqlx)?
                    .rows_affected();
                Ok(n == 1)
            }
        }

        async fn bump_version(tx: &mut sqlx::Transaction<'_, $db>) -> $crate::store::StoreResult<()> {
            sqlx::query("UPDATE registry_meta SET version = version + 1 WHERE id = 1")
                .execute(&mut **tx)
                .await
                .map_err($crate::store::map_sqlx)?;
            Ok(())
        }

        async fn bump_tariff_version(tx: &mut sqlx::Transaction<'_, $db>) -> $crate::store::StoreResult<()> {
            sqlx::query("UPDATE tariff_meta SET version = version + 1 WHERE id = 1")
                .execute(&mut **tx)
                .await
                .map_err($crate::store::map_sqlx)?;
            Ok(())
        }

        async fn point_in(
            tx: &mut sqlx::Transaction<'_, $db>,
            code: &str,
        ) -> $crate::store::StoreResult<Option<$crate::store::PointRecord>> {
            let sql = sqlx::AssertSqlSafe(format!("{} WHERE p.code = $1", $crate::store::sql::POINT_SELECT));
            let row: Option<$crate::store::sql::PointRow> =
                sqlx::query_as(sql).bind(code).fetch_optional(&mut **tx).await.map_err($crate::store::map_sqlx)?;
            row.map(TryInto::try_into).transpose()
        }
    };
}

pub(crate) use sql_store_impl;
