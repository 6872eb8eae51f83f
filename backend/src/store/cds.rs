//! Storage reads of the Curb Data Specification feeds (`/cds/…`, `app::cds`): sessions,
//! plate checks and violations by time, and revenue by point and local hour, with nothing
//! that identifies a person (no plate, driver, phone or staff column is ever selected).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;

/// Which facts an events query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventSource {
    /// Sessions by start (`park_start`).
    SessionStarts,
    /// Ended sessions by end (`park_end`).
    SessionEnds,
    /// Plate checks (`vehicle_detected`).
    Checks,
    /// Violations (`citation_issued`).
    Violations,
}

/// Where the facts happened: anywhere, at one point, or in one district.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PlaceFilter {
    /// Anywhere.
    #[default]
    All,
    /// At this point (row id).
    Point(i64),
    /// In this district (row id).
    District(i64),
}

impl PlaceFilter {
    /// The point and district ids to bind (0 for none).
    pub fn binds(self) -> (i64, i64) {
        match self {
            Self::All => (0, 0),
            Self::Point(p) => (p, 0),
            Self::District(d) => (0, d),
        }
    }
}

/// One fact an event is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFact {
    /// Row id in its table (never published; ids are derived from it with a key).
    pub id: i64,
    /// Point row id.
    pub point_id: i64,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// When the database had it.
    pub published_at: DateTime<Utc>,
    /// A session's vehicle class, a check's verdict or a violation's kind.
    pub detail: String,
    /// A session's channel, when a session's.
    pub channel: Option<String>,
    /// A session's end reason, when an ended session's.
    pub end_reason: Option<String>,
    /// What a session paid, net of refunds (sessions only).
    pub paid: Option<i64>,
}

/// A session as the metrics read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSpan {
    /// Row id (never published).
    pub id: i64,
    /// Point row id.
    pub point_id: i64,
    /// Vehicle class.
    pub vehicle_class: String,
    /// Start.
    pub started_at: DateTime<Utc>,
    /// Paid until.
    pub paid_until: DateTime<Utc>,
    /// End, when ended (an expired session ends at its paid-until).
    pub ended_at: Option<DateTime<Utc>>,
    /// Charged, net of refunds.
    pub paid: i64,
}

/// Revenue of one point in one local hour: the sum of its revenue postings, as finance reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourRevenue {
    /// Point row id.
    pub point_id: i64,
    /// Local hour, `YYYY-MM-DD HH` (Asia/Ho_Chi_Minh).
    pub local_hour: String,
    /// Gross revenue (payments net of refunds), VND.
    pub gross: i64,
}

/// How many facts one point had in one local hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourCount {
    /// Point row id.
    pub point_id: i64,
    /// Local hour, `YYYY-MM-DD HH` (Asia/Ho_Chi_Minh).
    pub local_hour: String,
    /// How many.
    pub count: i64,
}

/// When each point and district was created (the CDS `published_date`s).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlaceDates {
    /// `(point id, created_at)`.
    pub points: Vec<(i64, DateTime<Utc>)>,
    /// `(district id, created_at)`.
    pub districts: Vec<(i64, DateTime<Utc>)>,
}

/// The CDS feeds' reads.
#[async_trait]
pub trait CdsStore: Send + Sync {
    /// Creation times of every point and district.
    async fn cds_place_dates(&self) -> StoreResult<PlaceDates>;

    /// Facts of `source` with `from <= at < to`, before the cursor `(at, id)` in the order
    /// `at DESC, id DESC` (`at < before.0`, or `at = before.0` and `id < before.1`), in
    /// `place`, newest first, at most `limit`.
    async fn cds_events(
        &self,
        source: EventSource,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        before: (DateTime<Utc>, i64),
        place: PlaceFilter,
        limit: i64,
    ) -> StoreResult<Vec<EventFact>>;

    /// Sessions that started in `[from, to)` after the cursor `(started_at, id)` in the
    /// order `started_at, id`, in `place`, oldest first, at most `limit`.
    async fn cds_sessions_started(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        after: (DateTime<Utc>, i64),
        place: PlaceFilter,
        limit: i64,
    ) -> StoreResult<Vec<SessionSpan>>;

    /// Every session whose paid stay overlaps `[from, to)`: started before `to`, and not
    /// ended (or ended after `from`), in `place`.
    async fn cds_sessions_overlapping(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        place: PlaceFilter,
    ) -> StoreResult<Vec<SessionSpan>>;

    /// How many plate checks and violations each point had in each local hour of `[from, to)`.
    async fn cds_enforcement_counts(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        place: PlaceFilter,
    ) -> StoreResult<Vec<HourCount>>;

    /// Revenue by point and local hour of the ledger transactions in `[from, to)`.
    async fn cds_revenue(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        place: PlaceFilter,
    ) -> StoreResult<Vec<HourRevenue>>;
}

/// The place condition on a column holding a point id, `$a` the point and `$b` the district
/// (0: no condition).
pub(crate) fn place_sql(col: &str, a: usize, b: usize) -> String {
    format!(
        "(${a} = 0 OR {col} = ${a}) AND (${b} = 0 OR {col} IN \
         (SELECT pp.id FROM points pp JOIN streets ss ON ss.id = pp.street_id WHERE ss.district_id = ${b}))"
    )
}

/// The SELECT of one events source: columns `id, point_id, at, published_at, detail,
/// channel, end_reason, paid`; binds `$1` from, `$2` to, `$3`/`$4` the cursor, `$5`/`$6` the
/// place, `$7` the limit.
pub(crate) fn events_sql(source: EventSource) -> String {
    let (cols, table, at) = match source {
        EventSource::SessionStarts => (
            "id, point_id, started_at AS at, created_at AS published_at, vehicle_class AS detail, channel, \
             CAST(NULL AS TEXT) AS end_reason, CAST(amount_charged - amount_refunded AS BIGINT) AS paid",
            "sessions",
            "started_at",
        ),
        EventSource::SessionEnds => (
            "id, point_id, ended_at AS at, ended_at AS published_at, vehicle_class AS detail, channel, \
             end_reason, CAST(amount_charged - amount_refunded AS BIGINT) AS paid",
            "sessions",
            "ended_at",
        ),
        EventSource::Checks => (
            "id, point_id, checked_at AS at, checked_at AS published_at, verdict AS detail, \
             CAST(NULL AS TEXT) AS channel, CAST(NULL AS TEXT) AS end_reason, CAST(NULL AS BIGINT) AS paid",
            "plate_checks",
            "checked_at",
        ),
        EventSource::Violations => (
            "id, point_id, issued_at AS at, synced_at AS published_at, kind AS detail, \
             CAST(NULL AS TEXT) AS channel, CAST(NULL AS TEXT) AS end_reason, CAST(NULL AS BIGINT) AS paid",
            "violations",
            "issued_at",
        ),
    };
    format!(
        "SELECT {cols} FROM {table} WHERE {at} >= $1 AND {at} < $2 AND ({at} < $3 OR ({at} = $3 AND id < $4)) \
         AND {} ORDER BY {at} DESC, id DESC LIMIT $7",
        place_sql("point_id", 5, 6)
    )
}

/// The columns of a [`SessionSpan`].
pub(crate) const SPAN_COLS: &str = "id, point_id, vehicle_class, started_at, paid_until, ended_at, \
     CAST(amount_charged - amount_refunded AS BIGINT) AS paid";

/// A row of [`SPAN_COLS`].
pub(crate) type SpanRow = (i64, i64, String, DateTime<Utc>, DateTime<Utc>, Option<DateTime<Utc>>, i64);

/// [`SpanRow`]s as [`SessionSpan`]s.
pub(crate) fn spans(rows: Vec<SpanRow>) -> Vec<SessionSpan> {
    rows.into_iter()
        .map(|(id, point_id, vehicle_class, started_at, paid_until, ended_at, paid)| SessionSpan {
            id,
            point_id,
            vehicle_class,
            started_at,
            paid_until,
            ended_at,
            paid,
        })
        .collect()
}

macro_rules! sql_cds_store_impl {
    ($store:ty, $db:ty, local_hour = $local_hour:literal $(,)?) => {
        #[async_trait::async_trait]
        impl $crate::store::cds::CdsStore for $store {
            async fn cds_place_dates(&self) -> $crate::store::StoreResult<$crate::store::cds::PlaceDates> {
                let points: Vec<(i64, chrono::DateTime<chrono::Utc>)> =
                    sqlx::query_as("SELECT id, created_at FROM points ORDER BY id")
                        .fetch_all(&self.pool)
                        .await
                        .map_err($crate::store::map_sqlx)?;
                let districts: Vec<(i64, chrono::DateTime<chrono::Utc>)> =
                    sqlx::query_as("SELECT id, created_at FROM districts ORDER BY id")
                        .fetch_all(&self.pool)
                        .await
                        .map_err($crate::store::map_sqlx)?;
                Ok($crate::store::cds::PlaceDates { points, districts })
            }

            async fn cds_events(
                &self,
                source: $crate::store::cds::EventSource,
                from: chrono::DateTime<chrono::Utc>,
                to: chrono::DateTime<chrono::Utc>,
                before: (chrono::DateTime<chrono::Utc>, i64),
                place: $crate::store::cds::PlaceFilter,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::cds::EventFact>> {
                type Row = (
                    i64,
                    i64,
                    chrono::DateTime<chrono::Utc>,
                    chrono::DateTime<chrono::Utc>,
                    String,
                    Option<String>,
                    Option<String>,
                    Option<i64>,
                );
                let sql = $crate::store::cds::events_sql(source);
                let (point, district) = place.binds();
                let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(from)
                    .bind(to)
                    .bind(before.0)
                    .bind(before.1)
                    .bind(point)
                    .bind(district)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::store::map_sqlx)?;
                Ok(rows
                    .into_iter()
                    .map(|(id, point_id, at, published_at, detail, channel, end_reason, paid)| {
                        $crate::store::cds::EventFact {
                            id,
                            point_id,
                            at,
                            published_at,
                            detail,
                            channel,
                            end_reason,
                            paid,
                        }
                    })
                    .collect())
            }

            async fn cds_sessions_started(
                &self,
                from: chrono::DateTime<chrono::Utc>,
                to: chrono::DateTime<chrono::Utc>,
                after: (chrono::DateTime<chrono::Utc>, i64),
                place: $crate::store::cds::PlaceFilter,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::cds::SessionSpan>> {
                let sql = format!(
                    "SELECT {} FROM sessions WHERE started_at >= $1 AND started_at < $2 \
                     AND (started_at > $3 OR (started_at = $3 AND id > $4)) AND {} \
                     ORDER BY started_at, id LIMIT $7",
                    $crate::store::cds::SPAN_COLS,
                    $crate::store::cds::place_sql("point_id", 5, 6)
                );
                let (point, district) = place.binds();
                let rows: Vec<$crate::store::cds::SpanRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(from)
                    .bind(to)
                    .bind(after.0)
                    .bind(after.1)
                    .bind(point)
                    .bind(district)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::store::map_sqlx)?;
                Ok($crate::store::cds::spans(rows))
            }

            async fn cds_sessions_overlapping(
                &self,
                from: chrono::DateTime<chrono::Utc>,
                to: chrono::DateTime<chrono::Utc>,
                place: $crate::store::cds::PlaceFilter,
            ) -> $crate::store::StoreResult<Vec<$crate::store::cds::SessionSpan>> {
                // A session's stay is at most 31 days (ABSOLUTE_MAX_STAY_MINUTES), so the
                // starts read are bounded below and the index on started_at serves.
                let sql = format!(
                    "SELECT {} FROM sessions WHERE started_at < $2 AND started_at >= $3 \
                     AND (ended_at IS NULL OR ended_at > $1) AND {} ORDER BY id",
                    $crate::store::cds::SPAN_COLS,
                    $crate::store::cds::place_sql("point_id", 4, 5)
                );
                let (point, district) = place.binds();
                let earliest =
                    from - chrono::Duration::minutes(i64::from($crate::domain::tariff::ABSOLUTE_MAX_STAY_MINUTES));
                let rows: Vec<$crate::store::cds::SpanRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(from)
                    .bind(to)
                    .bind(earliest)
                    .bind(point)
                    .bind(district)
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::store::map_sqlx)?;
                Ok($crate::store::cds::spans(rows))
            }

            async fn cds_enforcement_counts(
                &self,
                from: chrono::DateTime<chrono::Utc>,
                to: chrono::DateTime<chrono::Utc>,
                place: $crate::store::cds::PlaceFilter,
            ) -> $crate::store::StoreResult<Vec<$crate::store::cds::HourCount>> {
                let mut out = Vec::new();
                for (table, col) in [("plate_checks", "checked_at"), ("violations", "issued_at")] {
                    let hour = $local_hour.replace("COL", col);
                    let sql = format!(
                        "SELECT point_id, {hour} AS local_hour, CAST(COUNT(*) AS BIGINT) FROM {table} \
                         WHERE {col} >= $1 AND {col} < $2 AND {} GROUP BY point_id, {hour}",
                        $crate::store::cds::place_sql("point_id", 3, 4)
                    );
                    let (point, district) = place.binds();
                    let rows: Vec<(i64, String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                        .bind(from)
                        .bind(to)
                        .bind(point)
                        .bind(district)
                        .fetch_all(&self.pool)
                        .await
                        .map_err($crate::store::map_sqlx)?;
                    out.extend(rows.into_iter().map(|(point_id, local_hour, count)| $crate::store::cds::HourCount {
                        point_id,
                        local_hour,
                        count,
                    }));
                }
                Ok(out)
            }

            async fn cds_revenue(
                &self,
                from: chrono::DateTime<chrono::Utc>,
                to: chrono::DateTime<chrono::Utc>,
                place: $crate::store::cds::PlaceFilter,
            ) -> $crate::store::StoreResult<Vec<$crate::store::cds::HourRevenue>> {
                let hour = $local_hour.replace("COL", "t.created_at");
                let sql = format!(
                    "SELECT p.point_id, {hour} AS local_hour, CAST(SUM(p.amount) AS BIGINT) AS gross \
                     FROM postings p JOIN ledger_transactions t ON t.id = p.transaction_id \
                     JOIN accounts a ON a.id = p.account_id AND a.kind = 'point_revenue' \
                     WHERE p.point_id IS NOT NULL AND t.created_at >= $1 AND t.created_at < $2 AND {} \
                     GROUP BY p.point_id, {hour} ORDER BY p.point_id, local_hour",
                    $crate::store::cds::place_sql("p.point_id", 3, 4)
                );
                let (point, district) = place.binds();
                let rows: Vec<(i64, String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(from)
                    .bind(to)
                    .bind(point)
                    .bind(district)
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::store::map_sqlx)?;
                Ok(rows
                    .into_iter()
                    .map(|(point_id, local_hour, gross)| $crate::store::cds::HourRevenue {
                        point_id,
                        local_hour,
                        gross,
                    })
                    .collect())
            }
        }
    };
}

pub(crate) use sql_cds_store_impl;
