//! The SQL of [`super::wardens::WardenStore`], shared by both databases like
//! `sql_drivers.rs`. It is instantiated in the same modules, so it reuses their helpers
//! (`claim`, `post`, `lock_plate`, `insert_session`, `apply_extension`, `session_where`,
//! `expire_in`).

use chrono::{DateTime, Utc};

use super::{
    StoreError,
    wardens::{ReceiptRow, ShiftRow, ViolationRow},
};
use crate::domain::{money::Vnd, plate::Plate};

pub(crate) const SHIFT_SELECT: &str = "SELECT w.id, w.staff_id, w.device, w.status, w.opened_at, w.closed_at, \
     w.expected_cash, w.declared_cash, w.difference, w.note, w.close_note, \
     (SELECT COUNT(*) FROM cash_collections c WHERE c.shift_id = w.id AND c.payment = 'cash') AS collections, \
     (SELECT CAST(COALESCE(SUM(c.amount), 0) AS BIGINT) FROM cash_collections c WHERE c.shift_id = w.id \
        AND c.payment = 'cash') AS running, \
     (SELECT CAST(COALESCE(SUM(c.amount), 0) AS BIGINT) FROM cash_collections c WHERE c.shift_id = w.id \
        AND c.payment = 'cash' AND w.closed_at IS NOT NULL AND c.synced_at > w.closed_at) AS late \
     FROM warden_shifts w";

#[derive(sqlx::FromRow)]
pub(crate) struct ShiftDbRow {
    pub id: i64,
    pub staff_id: i64,
    pub device: String,
    pub status: String,
    pub opened_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub expected_cash: Option<i64>,
    pub declared_cash: Option<i64>,
    pub difference: Option<i64>,
    pub note: Option<String>,
    pub close_note: Option<String>,
    pub collections: i64,
    pub running: i64,
    pub late: i64,
}

impl From<ShiftDbRow> for ShiftRow {
    fn from(r: ShiftDbRow) -> Self {
        ShiftRow {
            id: r.id,
            staff_id: r.staff_id,
            device: r.device,
            open: r.status == "open",
            opened_at: r.opened_at,
            closed_at: r.closed_at,
            collections: r.collections,
            expected_cash: Vnd(r.expected_cash.unwrap_or(r.running)),
            declared_cash: r.declared_cash.map(Vnd),
            difference: r.difference.map(Vnd),
            late_cash: Vnd(r.late),
            note: r.note,
            close_note: r.close_note,
        }
    }
}

pub(crate) const RECEIPT_SELECT: &str = "SELECT c.id, c.number, c.verification_code, c.kind, c.status, c.staff_id, \
     st.name AS staff_name, c.shift_id, c.session_id, c.point_id, p.code AS point_code, p.name AS point_name, \
     s.name AS street, d.code AS district, c.plate, c.turns, c.amount, c.paid_until, c.issued_at, c.transaction_id, \
     c.payment FROM cash_collections c JOIN staff st ON st.id = c.staff_id JOIN points p ON p.id = c.point_id \
     JOIN streets s ON s.id = p.street_id JOIN districts d ON d.id = s.district_id";

#[derive(sqlx::FromRow)]
pub(crate) struct ReceiptDbRow {
    pub id: i64,
    pub number: Option<String>,
    pub verification_code: String,
    pub kind: String,
    pub status: String,
    pub staff_id: i64,
    pub staff_name: String,
    pub shift_id: Option<i64>,
    pub session_id: Option<i64>,
    pub point_id: i64,
    pub point_code: String,
    pub point_name: String,
    pub street: String,
    pub district: String,
    pub plate: String,
    pub turns: i32,
    pub amount: i64,
    pub paid_until: DateTime<Utc>,
    pub issued_at: DateTime<Utc>,
    pub transaction_id: Option<i64>,
    pub payment: String,
}

impl TryFrom<ReceiptDbRow> for ReceiptRow {
    type Error = StoreError;
    fn try_from(r: ReceiptDbRow) -> Result<Self, StoreError> {
        Ok(ReceiptRow {
            kind: super::stored_name(crate::domain::session::PaymentKind::parse, &r.kind, "cash collection", r.id)?,
            id: r.id,
            number: r.number.unwrap_or_default(),
            verification_code: r.verification_code,
            applied: r.status == "applied",
            staff_id: r.staff_id,
            staff_name: r.staff_name,
            shift_id: r.shift_id,
            session_id: r.session_id,
            point_id: r.point_id,
            point_code: r.point_code,
            point_name: r.point_name,
            street: r.street,
            district: r.district,
            plate: Plate::from_db(r.plate),
            turns: u32::try_from(r.turns).unwrap_or(0),
            amount: Vnd(r.amount),
            paid_until: r.paid_until,
            issued_at: r.issued_at,
            transaction_id: r.transaction_id,
            by_float: r.payment == "float",
        })
    }
}

pub(crate) const VIOLATION_SELECT: &str = "SELECT v.id, v.number, v.staff_id, p.code AS point_code, \
     p.name AS point_name, s.name AS street, s.id AS street_id, d.code AS district, v.plate, v.kind, v.note, \
     v.lat, v.lon, v.issued_at, v.verification_code \
     FROM violations v JOIN points p ON p.id = v.point_id JOIN streets s ON s.id = p.street_id \
     JOIN districts d ON d.id = s.district_id";

#[derive(sqlx::FromRow)]
pub(crate) struct ViolationDbRow {
    pub id: i64,
    pub number: Option<String>,
    pub staff_id: i64,
    pub point_code: String,
    pub point_name: String,
    pub street: String,
    pub street_id: i64,
    pub district: String,
    pub plate: String,
    pub kind: String,
    pub note: String,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub issued_at: DateTime<Utc>,
    pub verification_code: Option<String>,
}

impl TryFrom<ViolationDbRow> for ViolationRow {
    type Error = StoreError;

    fn try_from(r: ViolationDbRow) -> Result<Self, StoreError> {
        Ok(ViolationRow {
            id: r.id,
            number: r.number.unwrap_or_default(),
            staff_id: r.staff_id,
            point_code: r.point_code,
            point_name: r.point_name,
            street: r.street,
            street_id: r.street_id,
            district: r.district,
            plate: Plate::from_db(r.plate),
            kind: iparking_mobile_api::ViolationKind::parse(&r.kind)
                .ok_or_else(|| StoreError::Internal(format!("violation {} has kind {}", r.id, r.kind)))?,
            note: r.note,
            lat: r.lat,
            lon: r.lon,
            issued_at: r.issued_at,
            verification_code: r.verification_code.unwrap_or_default(),
            photos: Vec::new(),
        })
    }
}

/// A session as a fact for the check logic.
/// A session row tagged with the fact it answers (1: covering, 2: last here).
#[derive(sqlx::FromRow)]
pub(crate) struct FactDbRow {
    pub which: i32,
    #[sqlx(flatten)]
    pub row: super::sql_drivers::SessionDbRow,
}

pub(crate) fn fact(s: &super::drivers::SessionRow) -> crate::domain::check::SessionFact {
    crate::domain::check::SessionFact {
        session_id: s.id,
        point_id: s.point_id,
        point_code: s.point_code.clone(),
        paid_until: s.paid_until,
        expires_at: s.expires_at,
        active: s.active,
        end_reason: s.end_reason,
    }
}

/// `{prefix}-{district}-{local yyyymmdd}-{id:06}`: unique (the id), readable, sortable per day.
pub(crate) fn document_number(prefix: &str, district: &str, at: DateTime<Utc>, id: i64) -> String {
    let day = at.with_timezone(&crate::domain::tariff::LOCAL_TZ).format("%Y%m%d");
    if prefix.is_empty() { format!("{district}-{day}-{id:06}") } else { format!("{prefix}-{district}-{day}-{id:06}") }
}

/// A session row tagged with the question it answers (`n`, 1-based) and the fact (`which`).
#[derive(sqlx::FromRow)]
pub(crate) struct BatchFactDbRow {
    pub n: i64,
    pub which: i32,
    #[sqlx(flatten)]
    pub row: super::sql_drivers::SessionDbRow,
}

/// The two facts of a check, as one statement of `SESSION_SELECT` rows tagged `which` (1: the
/// session covering `at` anywhere, 2: the last one at the point), for the given SQL
/// expressions of the plate, the time and the point.
pub(crate) fn facts_sql(plate: &str, at: &str, point: &str) -> String {
    let select =
        |which: u8| super::sql_drivers::SESSION_SELECT.replacen("SELECT ", &format!("SELECT {which} AS which, "), 1);
    format!(
        "SELECT * FROM ({} WHERE s.plate = {plate} AND s.started_at <= {at} \
         AND COALESCE(s.ended_at, s.expires_at) > {at} ORDER BY s.started_at DESC LIMIT 1) AS covering \
         UNION ALL \
         SELECT * FROM ({} WHERE s.plate = {plate} AND s.started_at <= {at} AND s.point_id = {point} \
         ORDER BY s.started_at DESC LIMIT 1) AS here",
        select(1),
        select(2),
    )
}

/// [`super::wardens::WardenStore::plate_facts_batch`] on PostgreSQL: the single question's
/// two facts, asked for each question of the batch, in one statement whatever the batch's
/// size (so it is prepared once).
///
/// The questions travel as one JSON array, not as arrays unnested. `UNNEST` of an array
/// parameter lets the planner count its elements in a custom plan but not in the generic
/// one, so the generic plan always looks dearer and every call is planned anew (about half
/// a millisecond for this statement). `jsonb_to_recordset` is estimated alike in both, so
/// the statement settles on the generic plan like any other.
pub(crate) async fn plate_facts_json(
    pool: &sqlx::PgPool,
    asks: &[super::wardens::FactAsk],
) -> super::StoreResult<Vec<super::wardens::PlateFacts>> {
    use std::sync::OnceLock;
    static SQL: OnceLock<String> = OnceLock::new();
    let sql = SQL.get_or_init(|| {
        format!(
            "SELECT q.n, f.* FROM ROWS FROM (jsonb_to_recordset($1::jsonb) AS (plate text, point_id int8, \
             at timestamptz)) WITH ORDINALITY AS q(plate, point_id, at, n) CROSS JOIN LATERAL ({}) AS f",
            facts_sql("q.plate", "q.at", "q.point_id")
        )
    });
    // Times at the microsecond, truncated as sqlx truncates a bound timestamp (PostgreSQL
    // would round more digits).
    let questions: Vec<serde_json::Value> = asks
        .iter()
        .map(|a| {
            use chrono::SubsecRound;
            serde_json::json!({
                "plate": a.plate.as_str(),
                "point_id": a.point_id,
                "at": a.at.trunc_subsecs(6).to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            })
        })
        .collect();
    let rows: Vec<BatchFactDbRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
        .bind(serde_json::Value::Array(questions).to_string())
        .fetch_all(pool)
        .await
        .map_err(super::map_sqlx)?;
    let mut answers = vec![super::wardens::PlateFacts::default(); asks.len()];
    for r in rows {
        let slot = usize::try_from(r.n - 1)
            .ok()
            .and_then(|i| answers.get_mut(i))
            .ok_or_else(|| StoreError::Internal(format!("a fact for question {} of {}", r.n, asks.len())))?;
        let row: super::drivers::SessionRow = r.row.try_into()?;
        let f = Some(fact(&row));
        if r.which == 1 { slot.covering = f } else { slot.last_here = f }
    }
    Ok(answers)
}

/// [`super::wardens::WardenStore::plate_facts_batch`] where a statement costs no round trip
/// (SQLite, in the process): one question at a time.
pub(crate) async fn plate_facts_each<S: super::wardens::WardenStore + ?Sized>(
    store: &S,
    asks: &[super::wardens::FactAsk],
) -> super::StoreResult<Vec<super::wardens::PlateFacts>> {
    let mut answers = Vec::with_capacity(asks.len());
    for a in asks {
        answers.push(store.plate_facts(&a.plate, a.point_id, a.at).await?);
    }
    Ok(answers)
}

const INSERT_CHECKS: &str =
    "INSERT INTO plate_checks (staff_id, point_id, plate, verdict, session_id, near_misses, source, checked_at) ";

/// Most plate checks in one `COPY` ([`insert_checks_copy`]).
///
/// sqlx 0.9.0 leaves Nagle's algorithm on (transact-rs/sqlx#4335, fixed upstream after the
/// release), so the `CopyDone` after the data waits for the server's delayed ACK: a `COPY`
/// takes some 40 ms however small. The writer absorbs it (`check_log`): its batches grow to
/// [`COPY_CHUNK`] rows, so one `COPY` in flight keeps up with any load a node takes.
pub(crate) const COPY_CHUNK: usize = 10_000;

/// Writes a batch of plate checks on PostgreSQL with `COPY … FROM STDIN`: the cheapest way
/// in for rows, at about half the database's CPU a check of an `INSERT … SELECT FROM
/// UNNEST` (measured in the load test's sixth pass: `git show cc73593:docs/performance.md`). One statement, atomic on its own.
pub(crate) async fn insert_checks_copy(
    conn: &mut sqlx::PgConnection,
    checks: &[super::wardens::CheckRecord],
) -> Result<u64, sqlx::Error> {
    let mut data = String::with_capacity(checks.len() * 96);
    for c in checks {
        copy_row(&mut data, c);
    }
    let mut copy = conn
        .copy_in_raw(
            "COPY plate_checks (staff_id, point_id, plate, verdict, session_id, near_misses, source, checked_at) \
             FROM STDIN",
        )
        .await?;
    copy.send(data.into_bytes()).await?;
    copy.finish().await
}

/// One check as a line of `COPY`'s text format: tab-separated, `\N` for null, text escaped.
/// Times at the microsecond, truncated as sqlx truncates a bound timestamp.
fn copy_row(out: &mut String, c: &super::wardens::CheckRecord) {
    use chrono::SubsecRound;
    use std::fmt::Write;
    let _ = write!(out, "{}\t{}\t", c.staff_id, c.point_id);
    copy_text(out, c.plate.as_str());
    out.push('\t');
    copy_text(out, super::wardens::verdict_name(c.verdict));
    match c.session_id {
        Some(id) => {
            let _ = write!(out, "\t{id}\t");
        }
        None => out.push_str("\t\\N\t"),
    }
    let _ = write!(out, "{}\t", c.near_misses);
    copy_text(out, c.source.as_str());
    out.push('\t');
    let _ = write!(out, "{}", c.checked_at.trunc_subsecs(6).to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
    out.push('\n');
}

/// A text value in `COPY`'s text format: backslash, tab, newline and carriage return escaped.
fn copy_text(out: &mut String, v: &str) {
    for ch in v.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// Writes a batch of plate checks on SQLite (a multi-row `VALUES`).
pub(crate) async fn insert_checks_values(
    tx: &mut sqlx::SqliteConnection,
    checks: &[super::wardens::CheckRecord],
) -> Result<u64, sqlx::Error> {
    let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new(INSERT_CHECKS);
    qb.push_values(checks, |mut b, c| {
        b.push_bind(c.staff_id)
            .push_bind(c.point_id)
            .push_bind(c.plate.as_str().to_owned())
            .push_bind(super::wardens::verdict_name(c.verdict))
            .push_bind(c.session_id)
            .push_bind(c.near_misses as i32)
            .push_bind(c.source.as_str())
            .push_bind(c.checked_at);
    });
    Ok(qb.build().execute(tx).await?.rows_affected())
}

/// Implements [`super::wardens::WardenStore`] for a store whose module also instantiates
/// `sql_driver_store_impl!` (whose helpers it uses).
macro_rules! sql_warden_store_impl {
    (
        $store:ty,
        $db:ty,
        lock = $lock:literal,
        insert_checks = $insert_checks:path,
        checks_chunk = $checks_chunk:expr,
        facts_batch = $facts_batch:expr $(,)?
    ) => {
        #[async_trait::async_trait]
        impl $crate::store::wardens::WardenStore for $store {
            async fn staff_by_username(
                &self,
                username: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::wardens::StaffLogin>> {
                let row: Option<(i64, String, Option<String>)> =
                    sqlx::query_as("SELECT id, role, password_hash FROM staff WHERE username = $1")
                        .bind(username)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err($crate::store::map_sqlx)?;
                let Some((staff_id, role, Some(password_hash))) = row else { return Ok(None) };
                Ok(Some($crate::store::wardens::StaffLogin {
                    staff_id,
                    role: $crate::store::sql::role_from_db(&role)?,
                    password_hash,
                }))
            }

            async fn create_staff_token(
                &self,
                staff_id: i64,
                token_hash: &str,
                device: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<i64> {
                sqlx::query_scalar(
                    "INSERT INTO staff_tokens (staff_id, token_hash, device, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
                )
                .bind(staff_id)
                .bind(token_hash)
                .bind(device)
                .bind(now)
                .fetch_one(&self.pool)
                .await
                .map_err($crate::store::map_sqlx)
            }

            async fn staff_name(&self, staff_id: i64) -> $crate::store::StoreResult<Option<String>> {
                sqlx::query_scalar("SELECT name FROM staff WHERE id = $1")
                    .bind(staff_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::store::map_sqlx)
            }

            async fn token_device(&self, token_id: i64) -> $crate::store::StoreResult<Option<String>> {
                let d: Option<Option<String>> = sqlx::query_scalar("SELECT device FROM staff_tokens WHERE id = $1")
                    .bind(token_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::store::map_sqlx)?;
                Ok(d.flatten())
            }

            async fn plate_facts(
                &self,
                plate: &$crate::domain::plate::Plate,
                point_id: i64,
                at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<$crate::store::wardens::PlateFacts> {
                // Both facts in one statement (one round trip).
                let sql = sqlx::AssertSqlSafe($crate::store::sql_wardens::facts_sql("$1", "$2", "$3"));
                let rows: Vec<$crate::store::sql_wardens::FactDbRow> = sqlx::query_as(sql)
                    .bind(plate.as_str())
                    .bind(at)
                    .bind(point_id)
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::store::map_sqlx)?;
                let (mut covering, mut last_here) = (None, None);
                for r in rows {
                    let row: $crate::store::drivers::SessionRow = r.row.try_into()?;
                    if r.which == 1 { covering = Some(row) } else { last_here = Some(row) }
                }
                Ok($crate::store::wardens::PlateFacts {
                    covering: covering.as_ref().map($crate::store::sql_wardens::fact),
                    last_here: last_here.as_ref().map($crate::store::sql_wardens::fact),
                })
            }

            async fn plate_facts_batch(
                &self,
                asks: &[$crate::store::wardens::FactAsk],
            ) -> $crate::store::StoreResult<Vec<$crate::store::wardens::PlateFacts>> {
                if asks.is_empty() {
                    return Ok(Vec::new());
                }
                let batch = $facts_batch;
                batch(self, asks).await
            }

            async fn point_sessions(
                &self,
                point_id: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::drivers::SessionRow>> {
                let sql = sqlx::AssertSqlSafe(format!(
                    "{} WHERE s.point_id = $1 AND s.status = 'active' ORDER BY s.paid_until, s.id",
                    $crate::store::sql_drivers::SESSION_SELECT
                ));
                let rows: Vec<$crate::store::sql_drivers::SessionDbRow> =
                    sqlx::query_as(sql).bind(point_id).fetch_all(&self.pool).await.map_err($crate::store::map_sqlx)?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn record_checks(
                &self,
                checks: &[$crate::store::wardens::CheckRecord],
                journal_mark: Option<(&str, i64)>,
            ) -> $crate::store::StoreResult<u64> {
                if checks.is_empty() {
                    return Ok(0);
                }
                // A batch that fits one statement and moves no journal mark is one round trip
                // (a statement is atomic on its own); otherwise a transaction, so that the
                // rows and the mark commit together.
                if checks.len() <= $checks_chunk && journal_mark.is_none() {
                    let mut conn = self.pool.acquire().await.map_err($crate::store::map_sqlx)?;
                    return $insert_checks(&mut *conn, checks).await.map_err($crate::store::map_sqlx);
                }
                let mut written = 0;
                let mut tx = self.begin_write().await?;
                for chunk in checks.chunks($checks_chunk) {
                    written += $insert_checks(&mut *tx, chunk).await.map_err($crate::store::map_sqlx)?;
                }
                if let Some((journal, upto)) = journal_mark {
                    sqlx::query(
                        "INSERT INTO check_journal_marks (journal, upto) VALUES ($1, $2) \
                         ON CONFLICT (journal) DO UPDATE SET upto = excluded.upto",
                    )
                    .bind(journal)
                    .bind(upto)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::store::map_sqlx)?;
                }
                tx.commit().await.map_err($crate::store::map_sqlx)?;
                Ok(written)
            }

            async fn check_journal_mark(&self, journal: &str) -> $crate::store::StoreResult<u64> {
                let upto: Option<i64> = sqlx::query_scalar("SELECT upto FROM check_journal_marks WHERE journal = $1")
                    .bind(journal)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::store::map_sqlx)?;
                Ok(upto.map_or(0, |u| u.max(0) as u64))
            }

            async fn forget_check_journal(&self, journal: &str) -> $crate::store::StoreResult<()> {
                sqlx::query("DELETE FROM check_journal_marks WHERE journal = $1")
                    .bind(journal)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::store::map_sqlx)?;
                Ok(())
            }

            async fn open_shift(
                &self,
                staff_id: i64,
                device: &str,
                note: Option<&str>,
                idem: Option<&$crate::store::drivers::IdemClaim>,
                answer: &$crate::store::drivers::Answer<'_, $crate::store::wardens::ShiftRow>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<$crate::store::wardens::OpenShiftOutcome> {
                use $crate::store::wardens::OpenShiftOutcome;
                let mut tx = self.begin_write().await?;
                claim(&mut tx, idem, now).await?;
                if let Some(open) = w_shift_where(&mut *tx, "w.staff_id = $1 AND w.status = 'open'", staff_id).await? {
                    return Ok(OpenShiftOutcome::AlreadyOpen(open));
                }
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO warden_shifts (staff_id, device, status, opened_at, note) VALUES ($1, $2, 'open', $3, $4) \
                     RETURNING id",
                )
                .bind(staff_id)
                .bind(device)
                .bind(now)
                .bind(note)
                .fetch_one(&mut *tx)
                .await
                .map_err($crate::store::map_sqlx)?;
                let row = w_shift_where(&mut *tx, "w.id = $1", id)
                    .await?
                    .ok_or_else(|| $crate::store::StoreError::Internal("inserted shift vanished".into()))?;
                answer_claim(&mut tx, idem, answer, &row).await?;
                tx.commit().await.map_err($crate::store::map_sqlx)?;
                Ok(OpenShiftOutcome::Opened(row))
            }

            async fn shift(&self, id: i64) -> $crate::store::StoreResult<Option<$crate::store::wardens::ShiftRow>> {
                let mut conn = self.pool.acquire().await.map_err($crate::store::map_sqlx)?;
                w_shift_where(&mut *conn, "w.id = $1", id).await
            }

            async fn warden_float(
                &self,
                staff_id: i64,
                limit: i64,
            ) -> $crate::store::StoreResult<($crate::domain::money::Vnd, Vec<(i64, String, i64, chrono::DateTime<chrono::Utc>)>)> {
                let mut tx = self.pool.begin().await.map_err($crate::store::map_sqlx)?;
                let balance: i64 = sqlx::query_scalar(
                    "SELECT COALESCE((SELECT balance FROM accounts WHERE kind = 'warden_float' AND ref = $1), 0)",
                )
                .bind(staff_id.to_string())
                .fetch_one(&mut *tx)
                .await
                .map_err($crate::store::map_sqlx)?;
                let lines: Vec<(i64, String, i64, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
                    "SELECT t.id, t.kind, p.amount, t.created_at FROM postings p \
                     JOIN ledger_transactions t ON t.id = p.transaction_id \
                     WHERE p.account_id = (SELECT id FROM accounts WHERE kind = 'warden_float' AND ref = $1) \
                     ORDER BY t.created_at DESC, t.id DESC LIMIT $2",
                )
                .bind(staff_id.to_string())
                .bind(limit)
                .fetch_all(&mut *tx)
                .await
                .map_err($crate::store::map_sqlx)?;
                tx.commit().await.map_err($crate::store::map_sqlx)?;
                Ok(($crate::domain::money::Vnd(balance), lines))
            }

            async fn open_shift_of(&self, staff_id: i64) -> $crate::store::StoreResult<Option<$crate::store::wardens::ShiftRow>> {
                let mut conn = self.pool.acquire().await.map_err($crate::store::map_sqlx)?;
                w_shift_where(&mut *conn, "w.staff_id = $1 AND w.status = 'open'", staff_id).await
            }

            async fn shift_history(
                &self,
                shift: &$crate::store::wardens::ShiftRow,
                until: chrono::DateTime<chrono::Utc>,
                limit: i64,
            ) -> $crate::store::StoreResult<$crate::store::wardens::ShiftHistory> {
                let mut tx = self.pool.begin().await.map_err($crate::store::map_sqlx)?;
                let checks: Vec<(String, String, String, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
                    "SELECT c.plate, p.code, c.verdict, c.checked_at FROM plate_checks c JOIN points p ON p.id = c.point_id \
                     WHERE c.staff_id = $1 AND c.checked_at >= $2 AND c.checked_at <= $3 \
                     ORDER BY c.checked_at DESC, c.id DESC LIMIT $4",
                )
                .bind(shift.staff_id)
                .bind(shift.opened_at)
                .bind(until)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await
                .map_err($crate::store::map_sqlx)?;
                let sql = sqlx::AssertSqlSafe(format!(
                    "{} WHERE c.shift_id = $1 ORDER BY c.issued_at DESC, c.id DESC LIMIT $2",
                    $crate::store::sql_wardens::RECEIPT_SELECT
                ));
                let rows: Vec<$crate::store::sql_wardens::ReceiptDbRow> = sqlx::query_as(sql)
                    .bind(shift.id)
                    .bind(limit)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err($crate::store::map_sqlx)?;
                let receipts = rows.into_iter().map(TryInto::try_into).collect::<Result<Vec<_>, _>>()?;
                let sql = sqlx::AssertSqlSafe(format!(
                    "{} WHERE v.staff_id = $1 AND v.issued_at >= $2 AND v.issued_at <= $3 \
                     ORDER BY v.issued_at DESC, v.id DESC LIMIT $4",
                    $crate::store::sql_wardens::VIOLATION_SELECT
                ));
                let rows: Vec<$crate::store::sql_wardens::ViolationDbRow> = sqlx::query_as(sql)
                    .bind(shift.staff_id)
                    .bind(shift.opened_at)
                    .bind(until)
                    .bind(limit)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err($crate::store::map_sqlx)?;
                let mut violations = Vec::with_capacity(rows.len());
                for r in rows {
                    let mut v: $crate::store::wardens::ViolationRow = r.try_into()?;
                    v.photos = w_photos(&mut tx, v.id).await?;
                    violations.push(v);
                }
                tx.commit().await.map_err($crate::store::map_sqlx)?;
                let checks = checks
                    .into_iter()
                    .map(|(plate, point_code, verdict, at)| $crate::store::wardens::CheckLine { plate, point_code, verdict, at })
                    .collect();
                Ok($crate::store::wardens::ShiftHistory { checks, receipts, violations })
            }

            async fn close_shift(
                &self,
                close: &$crate::store::wardens::ShiftClose<'_>,
                idem: Option<&$crate::store::drivers::IdemClaim>,
                answer: &$crate::store::drivers::Answer<'_, $crate::store::wardens::ShiftRow>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<$crate::store::wardens::CloseShiftOutcome> {
                use $crate::store::wardens::CloseShiftOutcome;
                let $crate::store::wardens::ShiftClose { id, staff_id, declared, note } = *close;
                let mut tx = self.begin_write().await?;
                claim(&mut tx, idem, now).await?;
                let locked = sqlx::AssertSqlSafe(format!(
                    "SELECT status FROM warden_shifts WHERE id = $1 AND staff_id = $2{}",
                    $lock
                ));
                let status: Option<String> = sqlx::query_scalar(locked)
                    .bind(id)
                    .bind(staff_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err($crate::store::map_sqlx)?;
                match status.as_deref() {
                    None => return Ok(CloseShiftOutcome::NotFound),
                    Some("closed") => {
                        let row = w_shift_where(&mut *tx, "w.id = $1", id)
                            .await?
                            .ok_or_else(|| $crate::store::StoreError::Internal("shift vanished".into()))?;
                        return Ok(CloseShiftOutcome::AlreadyClosed(row));
                    }
                    Some(_) => {}
                }
                let expected: i64 = sqlx::query_scalar(
                    "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM cash_collections WHERE shift_id = $1 \
                     AND payment = 'cash'",
                )
                .bind(id)
                .fetch_one(&mut *tx)
                .await
                .map_err($crate::store::map_sqlx)?;
                let entry = $crate::domain::ledger::Entry::cash_handover(staff_id, declared)
                    .map_err(|e| $crate::store::StoreError::Internal(e.to_string()))?;
                let txn = if entry.is_empty() {
                    None
                } else {
                    match post(&mut tx, &entry, None, now).await? {
                        Ok(t) => Some(t),
                        Err(_) => return Err($crate::store::StoreError::Internal("a handover cannot overdraw".into())),
                    }
                };
                sqlx::query(
                    "UPDATE warden_shifts SET status = 'closed', closed_at = $2, expected_cash = $3, declared_cash = $4, \
                     difference = $5, transaction_id = $6, close_note = $7 WHERE id = $1",
                )
                .bind(id)
                .bind(now)
                .bind(expected)
                .bind(declared.get())
                .bind(declared.get() - expected)
                .bind(txn)
                .bind(note)
                .execute(&mut *tx)
                .await
                .map_err($crate::store::map_sqlx)?;
                let row = w_shift_where(&mut *tx, "w.id = $1", id)
                    .await?
                    .ok_or_else(|| $crate::store::StoreError::Internal("shift vanished".into()))?;
                answer_claim(&mut tx, idem, answer, &row).await?;
                tx.commit().await.map_err($crate::store::map_sqlx)?;
                Ok(CloseShiftOutcome::Closed(row))
            }

            async fn cash_start(
                &self,
                new: &$crate::store::drivers::NewSession,
                capacity: i32,
                ctx: &$crate::store::wardens::CashContext,
                idem: Option<&$crate::store::drivers::IdemClaim>,
                answer: &$crate::store::drivers::Answer<'_, $crate::store::wardens::CashOutcome>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<$crate::store::wardens::CashOutcome> {
                use $crate::store::wardens::{CashOutcome, ShiftRule};
                let mut tx = self.begin_write().await?;
                claim(&mut tx, idem, now).await?;
                let mut flags = Vec::new();
                let Some(shift_id) = w_find_shift(&mut tx, ctx, &mut flags).await? else {
                    return Ok(CashOutcome::NoOpenShift);
                };
                lock_plate(&mut tx, new.plate.as_str()).await?;
                let locked = sqlx::AssertSqlSafe(format!("SELECT id FROM points WHERE id = $1{ROW_LOCK}"));
                sqlx::query(locked).bind(new.point_id).execute(&mut *tx).await.map_err($crate::store::map_sqlx)?;
                let expired = expire_in(&mut tx, "(s.plate = $2 OR s.point_id = $3)", Some((new.plate.as_str(), new.point_id)), now).await?;
                let offline = ctx.shift == ShiftRule::Covering;
                // A session of the plate overlapping the time paid for (any point): online this
                // is the active one; offline it may be one the driver paid meanwhile.
                let overlap_sql = sqlx::AssertSqlSafe(format!(
                    "{} WHERE s.plate = $1 AND s.started_at < $2 AND COALESCE(s.ended_at, s.expires_at) > $3 \
                     ORDER BY s.started_at DESC LIMIT 1",
                    $crate::store::sql_drivers::SESSION_SELECT
                ));
                let overlapping: Option<$crate::store::sql_drivers::SessionDbRow> = sqlx::query_as(overlap_sql)
                    .bind(new.plate.as_str())
                    .bind(new.paid_until)
                    .bind(new.started_at)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err($crate::store::map_sqlx)?;
                let overlapping: Option<$crate::store::drivers::SessionRow> = overlapping.map(TryInto::try_into).transpose()?;
                if let Some(other) = overlapping {
                    if !offline || ctx.by_float {
                        return Ok(CashOutcome::PlateActive(other));
                    }
                    flags.push("already_paid".to_owned());
                    let entry = $crate::domain::ledger::Entry::cash_unapplied(ctx.staff_id, new.amount)
                        .map_err(|e| $crate::store::StoreError::Internal(e.to_string()))?;
                    let txn = if entry.is_empty() { None } else {
                        post(&mut tx, &entry, None, now).await?.ok()
                    };
                    let c = $crate::store::wardens::NewCollection {
                        shift_id, kind: $crate::domain::session::PaymentKind::Start, applied: false, session_id: None, point_id: new.point_id, plate: &new.plate,
                        turns: new.turns, amount: new.amount, paid_until: new.paid_until, transaction_id: txn,
                    };
                    let receipt = w_insert_collection(&mut tx, ctx, &c, now).await?;
                    w_flags(&mut tx, ctx, shift_id, Some(other.id), &flags, &receipt, now).await?;
                    let outcome = CashOutcome::Unapplied { receipt, existing: Some(other), flags };
                    answer_claim(&mut tx, idem, answer, &outcome).await?;
                    tx.commit().await.map_err($crate::store::map_sqlx)?;
                    return Ok(outcome);
                }
                let occupied: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE point_id = $1 AND status = 'active'")
                        .bind(new.point_id)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err($crate::store::map_sqlx)?;
                let historic = offline && new.expires_at <= now;
                if !historic && occupied >= i64::from(capacity) {
                    if !offline {
                        return Ok(CashOutcome::PointFull);
                    }
                    // The car was there: record it, and tell finance the point was full.
                    flags.push("over_capacity".to_owned());
                }
                let id = match insert_session(&mut tx, new, now).await? {
                    Ok(inserted) => inserted.id,
                    // Only a float can be short (cash is what the warden holds): nothing is kept.
                    Err(balance) if ctx.by_float => return Ok(CashOutcome::FloatShort(balance)),
                    Err(_) => return Err($crate::store::StoreError::Internal("a cash payment cannot overdraw".into())),
                };
                if historic {
                    // Synced after its paid time: it is history, not a car parked now.
                    sqlx::query(
                        "UPDATE sessions SET status = 'ended', end_reason = 'expired', ended_at = paid_until WHERE id = $1",
                    )
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::store::map_sqlx)?;
                }
                let txn: Option<i64> = sqlx::query_scalar(
                    "SELECT transaction_id FROM session_purchases WHERE session_id = $1 ORDER BY id DESC LIMIT 1",
                )
                .bind(id)
                .fetch_one(&mut *tx)
                .await
                .map_err($crate::store::map_sqlx)?;
                let c = $crate::store::wardens::NewCollection {
                    shift_id, kind: $crate::domain::session::PaymentKind::Start, applied: true, session_id: Some(id), point_id: new.point_id, plate: &new.plate,
                    turns: new.turns, amount: new.amount, paid_until: new.paid_until, transaction_id: txn,
                };
                let receipt = w_insert_collection(&mut tx, ctx, &c, now).await?;
                w_flags(&mut tx, ctx, shift_id, Some(id), &flags, &receipt, now).await?;
                let session = session_where(&mut *tx, "s.id = $1", id)
                    .await?
                    .ok_or_else(|| $crate::store::StoreError::Internal("inserted session vanished".into()))?;
                let outcome = CashOutcome::Paid { session, receipt, expired, historic, flags };
                answer_claim(&mut tx, idem, answer, &outcome).await?;
                tx.commit().await.map_err($crate::store::map_sqlx)?;
                Ok(outcome)
            }

            async fn cash_extend(
                &self,
                session_id: i64,
                price: $crate::store::drivers::PriceChange<'_>,
                ctx: &$crate::store::wardens::CashContext,
                idem: Option<&$crate::store::drivers::IdemClaim>,
                answer: &$crate::store::drivers::Answer<'_, $crate::store::wardens::CashOutcome>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<$crate::store::wardens::CashOutcome> {
                use $crate::store::wardens::{CashOutcome, ShiftRule};
                let mut tx = self.begin_write().await?;
                claim(&mut tx, idem, now).await?;
                let mut flags = Vec::new();
                let Some(shift_id) = w_find_shift(&mut tx, ctx, &mut flags).await? else {
                    return Ok(CashOutcome::NoOpenShift);
                };
                let locked = sqlx::AssertSqlSafe(format!("SELECT id FROM sessions WHERE id = $1{ROW_LOCK}"));
                let found: Option<i64> = sqlx::query_scalar(locked)
                    .bind(session_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err($crate::store::map_sqlx)?;
                let Some(found) = found else { return Ok(CashOutcome::NotFound) };
                let row = session_where(&mut *tx, "s.id = $1", found)
                    .await?
                    .ok_or_else(|| $crate::store::StoreError::Internal("session vanished".into()))?;
                let change = match price(&row) {
                    Ok(c) => c,
                    Err(e) => return Ok(CashOutcome::Refused(e)),
                };
                if !row.active || row.expires_at <= now {
                    if ctx.shift != ShiftRule::Covering || ctx.by_float {
                        return Ok(CashOutcome::Ended(row));
                    }
                    // Offline: the cash was taken, but the session is over by now.
                    flags.push("session_ended".to_owned());
                    let entry = $crate::domain::ledger::Entry::cash_unapplied(ctx.staff_id, change.amount)
                        .map_err(|e| $crate::store::StoreError::Internal(e.to_string()))?;
                    let txn = if entry.is_empty() { None } else { post(&mut tx, &entry, None, now).await?.ok() };
                    let added = change.turns.saturating_sub(row.turns).max(1);
                    let c = $crate::store::wardens::NewCollection {
                        shift_id, kind: $crate::domain::session::PaymentKind::Extension, applied: false, session_id: None, point_id: row.point_id, plate: &row.plate,
                        turns: added, amount: change.amount, paid_until: change.paid_until, transaction_id: txn,
                    };
                    let receipt = w_insert_collection(&mut tx, ctx, &c, now).await?;
                    w_flags(&mut tx, ctx, shift_id, Some(row.id), &flags, &receipt, now).await?;
                    let outcome = CashOutcome::Unapplied { receipt, existing: Some(row), flags };
                    answer_claim(&mut tx, idem, answer, &outcome).await?;
                    tx.commit().await.map_err($crate::store::map_sqlx)?;
                    return Ok(outcome);
                }
                if let Err(balance) = apply_extension(&mut tx, &row, &change, now).await? {
                    if ctx.by_float {
                        return Ok(CashOutcome::FloatShort(balance));
                    }
                    return Err($crate::store::StoreError::Internal("a cash payment cannot overdraw".into()));
                }
                let txn: Option<i64> = sqlx::query_scalar(
                    "SELECT transaction_id FROM session_purchases WHERE session_id = $1 ORDER BY id DESC LIMIT 1",
                )
                .bind(row.id)
                .fetch_one(&mut *tx)
                .await
                .map_err($crate::store::map_sqlx)?;
                let added = change.turns.saturating_sub(row.turns).max(1);
                let c = $crate::store::wardens::NewCollection {
                    shift_id, kind: $crate::domain::session::PaymentKind::Extension, applied: true, session_id: Some(row.id), point_id: row.point_id,
                    plate: &row.plate, turns: added, amount: change.amount, paid_until: change.paid_until, transaction_id: txn,
                };
                let receipt = w_insert_collection(&mut tx, ctx, &c, now).await?;
                w_flags(&mut tx, ctx, shift_id, Some(row.id), &flags, &receipt, now).await?;
                let session = session_where(&mut *tx, "s.id = $1", row.id)
                    .await?
                    .ok_or_else(|| $crate::store::StoreError::Internal("session vanished".into()))?;
                let outcome = CashOutcome::Paid { session, receipt, expired: Vec::new(), historic: false, flags };
                answer_claim(&mut tx, idem, answer, &outcome).await?;
                tx.commit().await.map_err($crate::store::map_sqlx)?;
                Ok(outcome)
            }

            async fn receipt(&self, number: &str) -> $crate::store::StoreResult<Option<$crate::store::wardens::ReceiptRow>> {
                let mut conn = self.pool.acquire().await.map_err($crate::store::map_sqlx)?;
                w_receipt_where(&mut *conn, "c.number = $1", number.to_owned()).await
            }

            async fn issue_violation(
                &self,
                v: &$crate::store::wardens::NewViolation,
                action_id: Option<&str>,
                idem: Option<&$crate::store::drivers::IdemClaim>,
                answer: &$crate::store::drivers::Answer<'_, $crate::store::wardens::ViolationOutcome>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<$crate::store::wardens::ViolationOutcome> {
                use $crate::store::wardens::ViolationOutcome;
                let mut tx = self.begin_write().await?;
                claim(&mut tx, idem, now).await?;
                // The plate is locked, so a driver paying right now is either committed
                // (and seen here) or waits for this citation.
                lock_plate(&mut tx, v.plate.as_str()).await?;
                let paid = w_session_at(
                    &mut *tx,
                    "s.plate = $1 AND s.started_at <= $2 AND COALESCE(s.ended_at, s.expires_at) > $2 \
                     AND s.point_id = $3 ORDER BY s.started_at DESC LIMIT 1",
                    v.plate.as_str(),
                    v.issued_at,
                    v.point_id,
                )
                .await?;
                if let Some(s) = paid {
                    if let Some(action) = action_id {
                        let flag = $crate::store::wardens::NewFlag {
                            kind: "paid_at_device_time".into(),
                            staff_id: v.staff_id,
                            shift_id: None,
                            session_id: Some(s.id),
                            violation_id: None,
                            action_id: Some(action.to_owned()),
                            details: serde_json::json!({ "point_id": v.point_id, "kind": v.kind.as_str() }).to_string(),
                        };
                        w_insert_flag(&mut tx, &flag, None, now).await?;
                        let outcome = ViolationOutcome::SessionValid(s);
                        answer_claim(&mut tx, idem, answer, &outcome).await?;
                        tx.commit().await.map_err($crate::store::map_sqlx)?;
                        return Ok(outcome);
                    }
                    return Ok(ViolationOutcome::SessionValid(s));
                }
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO violations (staff_id, point_id, plate, kind, note, lat, lon, issued_at, synced_at, \
                     verification_code) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
                )
                .bind(v.staff_id)
                .bind(v.point_id)
                .bind(v.plate.as_str())
                .bind(v.kind.as_str())
                .bind(&v.note)
                .bind(v.position.map(|p| p.0))
                .bind(v.position.map(|p| p.1))
                .bind(v.issued_at)
                .bind(now)
                .bind(&v.verification_code)
                .fetch_one(&mut *tx)
                .await
                .map_err($crate::store::map_sqlx)?;
                let number = $crate::store::sql_wardens::document_number("VP", &v.district_code, v.issued_at, id);
                sqlx::query("UPDATE violations SET number = $2 WHERE id = $1")
                    .bind(id)
                    .bind(&number)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::store::map_sqlx)?;
                for (i, (sha, ct, size)) in v.photos.iter().enumerate() {
                    sqlx::query(
                        "INSERT INTO violation_photos (violation_id, sha256, content_type, size, position) \
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(id)
                    .bind(sha)
                    .bind(ct)
                    .bind(*size)
                    .bind(i as i32)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::store::map_sqlx)?;
                }
                let row = w_violation_where(&mut tx, "v.id = $1", id)
                    .await?
                    .into_iter()
                    .next()
                    .ok_or_else(|| $crate::store::StoreError::Internal("inserted violation vanished".into()))?;
                let outcome = ViolationOutcome::Issued(row);
                answer_claim(&mut tx, idem, answer, &outcome).await?;
                tx.commit().await.map_err($crate::store::map_sqlx)?;
                Ok(outcome)
            }

            async fn violation(&self, number: &str) -> $crate::store::StoreResult<Option<$crate::store::wardens::ViolationRow>> {
                let mut tx = self.pool.begin().await.map_err($crate::store::map_sqlx)?;
                let rows = w_violation_where(&mut tx, "v.number = $1", number.to_owned()).await?;
                tx.commit().await.map_err($crate::store::map_sqlx)?;
                Ok(rows.into_iter().next())
            }

            async fn photo_scopes(&self, sha256: &str) -> $crate::store::StoreResult<Vec<(String, i64)>> {
                sqlx::query_as(
                    "SELECT d.code, s.id FROM violation_photos vp JOIN violations v ON v.id = vp.violation_id \
                     JOIN points p ON p.id = v.point_id JOIN streets s ON s.id = p.street_id \
                     JOIN districts d ON d.id = s.district_id WHERE vp.sha256 = $1",
                )
                .bind(sha256)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::store::map_sqlx)
            }

            async fn driver_citations(
                &self,
                driver_id: i64,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::wardens::ViolationRow>> {
                let mut tx = self.pool.begin().await.map_err($crate::store::map_sqlx)?;
                let sql = sqlx::AssertSqlSafe(format!(
                    "{} WHERE v.plate IN (SELECT plate FROM vehicles WHERE driver_id = $1 AND removed_at IS NULL) \
                     ORDER BY v.issued_at DESC, v.id DESC LIMIT $2",
                    $crate::store::sql_wardens::VIOLATION_SELECT
                ));
                let rows: Vec<$crate::store::sql_wardens::ViolationDbRow> = sqlx::query_as(sql)
                    .bind(driver_id)
                    .bind(limit)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err($crate::store::map_sqlx)?;
                let mut out = Vec::with_capacity(rows.len());
                for r in rows {
                    let mut v: $crate::store::wardens::ViolationRow = r.try_into()?;
                    v.photos = w_photos(&mut tx, v.id).await?;
                    out.push(v);
                }
                tx.commit().await.map_err($crate::store::map_sqlx)?;
                Ok(out)
            }

            async fn raise_flag(
                &self,
                flag: &$crate::store::wardens::NewFlag,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<i64> {
                let mut tx = self.begin_write().await?;
                let id = w_insert_flag(&mut tx, flag, None, now).await?;
                tx.commit().await.map_err($crate::store::map_sqlx)?;
                Ok(id)
            }

            async fn record_answer(
                &self,
                claim: &$crate::store::drivers::IdemClaim,
                status: u16,
                response: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "INSERT INTO idempotency_keys (scope, key, request_hash, status, response, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (scope, key) DO NOTHING",
                )
                .bind(&claim.scope)
                .bind(&claim.key)
                .bind(&claim.request_hash)
                .bind(i32::from(status))
                .bind(response)
                .bind(now)
                .execute(&self.pool)
                .await
                .map_err($crate::store::map_sqlx)?;
                Ok(())
            }
        }

        /// One session matching `condition` over `$1` (text), `$2` (time), `$3` (id).
        async fn w_session_at<'c, E>(
            conn: E,
            condition: &str,
            text: &str,
            at: chrono::DateTime<chrono::Utc>,
            id: i64,
        ) -> $crate::store::StoreResult<Option<$crate::store::drivers::SessionRow>>
        where
            E: sqlx::Executor<'c, Database = $db>,
        {
            let sql = sqlx::AssertSqlSafe(format!(
                "{} WHERE $3 = $3 AND {condition}",
                $crate::store::sql_drivers::SESSION_SELECT
            ));
            let row: Option<$crate::store::sql_drivers::SessionDbRow> = sqlx::query_as(sql)
                .bind(text.to_owned())
                .bind(at)
                .bind(id)
                .fetch_optional(conn)
                .await
                .map_err($crate::store::map_sqlx)?;
            row.map(TryInto::try_into).transpose()
        }

        async fn w_shift_where<'c, E, A>(
            conn: E,
            condition: &str,
            arg: A,
        ) -> $crate::store::StoreResult<Option<$crate::store::wardens::ShiftRow>>
        where
            E: sqlx::Executor<'c, Database = $db>,
            A: for<'q> sqlx::Encode<'q, $db> + sqlx::Type<$db> + Send + 'c,
        {
            let sql = sqlx::AssertSqlSafe(format!("{} WHERE {condition}", $crate::store::sql_wardens::SHIFT_SELECT));
            let row: Option<$crate::store::sql_wardens::ShiftDbRow> =
                sqlx::query_as(sql).bind(arg).fetch_optional(conn).await.map_err($crate::store::map_sqlx)?;
            Ok(row.map(Into::into))
        }

        async fn w_receipt_where<'c, E, A>(
            conn: E,
            condition: &str,
            arg: A,
        ) -> $crate::store::StoreResult<Option<$crate::store::wardens::ReceiptRow>>
        where
            E: sqlx::Executor<'c, Database = $db>,
            A: for<'q> sqlx::Encode<'q, $db> + sqlx::Type<$db> + Send + 'c,
        {
            let sql = sqlx::AssertSqlSafe(format!("{} WHERE {condition}", $crate::store::sql_wardens::RECEIPT_SELECT));
            let row: Option<$crate::store::sql_wardens::ReceiptDbRow> =
                sqlx::query_as(sql).bind(arg).fetch_optional(conn).await.map_err($crate::store::map_sqlx)?;
            row.map(TryInto::try_into).transpose()
        }

        async fn w_violation_where<A>(
            tx: &mut sqlx::Transaction<'_, $db>,
            condition: &str,
            arg: A,
        ) -> $crate::store::StoreResult<Vec<$crate::store::wardens::ViolationRow>>
        where
            A: for<'q> sqlx::Encode<'q, $db> + sqlx::Type<$db> + Send,
        {
            let sql = sqlx::AssertSqlSafe(format!("{} WHERE {condition}", $crate::store::sql_wardens::VIOLATION_SELECT));
            let rows: Vec<$crate::store::sql_wardens::ViolationDbRow> =
                sqlx::query_as(sql).bind(arg).fetch_all(&mut **tx).await.map_err($crate::store::map_sqlx)?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let mut v: $crate::store::wardens::ViolationRow = r.try_into()?;
                v.photos = w_photos(tx, v.id).await?;
                out.push(v);
            }
            Ok(out)
        }

        async fn w_photos(
            tx: &mut sqlx::Transaction<'_, $db>,
            violation_id: i64,
        ) -> $crate::store::StoreResult<Vec<(String, String, i64)>> {
            sqlx::query_as(
                "SELECT sha256, content_type, size FROM violation_photos WHERE violation_id = $1 ORDER BY position",
            )
            .bind(violation_id)
            .fetch_all(&mut **tx)
            .await
            .map_err($crate::store::map_sqlx)
        }

        /// The shift cash belongs to. Online: the warden's open shift (`None` when there is
        /// none). Offline: the shift covering the device time, flagged when it has closed since,
        /// or no shift at all (flagged).
        async fn w_find_shift(
            tx: &mut sqlx::Transaction<'_, $db>,
            ctx: &$crate::store::wardens::CashContext,
            flags: &mut Vec<String>,
        ) -> $crate::store::StoreResult<Option<Option<i64>>> {
            use $crate::store::wardens::ShiftRule;
            match ctx.shift {
                ShiftRule::OpenRequired => {
                    let locked = sqlx::AssertSqlSafe(format!(
                        "SELECT id FROM warden_shifts WHERE staff_id = $1 AND status = 'open'{}",
                        $lock
                    ));
                    let id: Option<i64> = sqlx::query_scalar(locked)
                        .bind(ctx.staff_id)
                        .fetch_optional(&mut **tx)
                        .await
                        .map_err($crate::store::map_sqlx)?;
                    Ok(id.map(Some))
                }
                ShiftRule::Covering => {
                    let row: Option<(i64, String)> = sqlx::query_as(
                        "SELECT id, status FROM warden_shifts WHERE staff_id = $1 AND opened_at <= $2 \
                         AND (closed_at IS NULL OR closed_at >= $2) ORDER BY opened_at DESC LIMIT 1",
                    )
                    .bind(ctx.staff_id)
                    .bind(ctx.issued_at)
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err($crate::store::map_sqlx)?;
                    match row {
                        Some((id, status)) => {
                            if status == "closed" {
                                flags.push("after_shift_close".to_owned());
                            }
                            Ok(Some(Some(id)))
                        }
                        None => {
                            flags.push("outside_shift".to_owned());
                            Ok(Some(None))
                        }
                    }
                }
            }
        }

        /// Records a cash collection and numbers its slip.
        async fn w_insert_collection(
            tx: &mut sqlx::Transaction<'_, $db>,
            ctx: &$crate::store::wardens::CashContext,
            c: &$crate::store::wardens::NewCollection<'_>,
            now: chrono::DateTime<chrono::Utc>,
        ) -> $crate::store::StoreResult<$crate::store::wardens::ReceiptRow> {
            let $crate::store::wardens::NewCollection {
                shift_id, kind, applied, session_id, point_id, plate, turns, amount, paid_until, transaction_id,
            } = *c;
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO cash_collections (verification_code, kind, status, staff_id, shift_id, session_id, point_id, \
                 plate, turns, amount, paid_until, transaction_id, issued_at, synced_at, payment) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING id",
            )
            .bind(&ctx.verification_code)
            .bind(kind.as_str())
            .bind(if applied { "applied" } else { "unapplied" })
            .bind(ctx.staff_id)
            .bind(shift_id)
            .bind(session_id)
            .bind(point_id)
            .bind(plate.as_str())
            .bind(turns as i32)
            .bind(amount.get())
            .bind(paid_until)
            .bind(transaction_id)
            .bind(ctx.issued_at)
            .bind(now)
            .bind(if ctx.by_float { "float" } else { "cash" })
            .fetch_one(&mut **tx)
            .await
            .map_err($crate::store::map_sqlx)?;
            let number = $crate::store::sql_wardens::document_number("", &ctx.district_code, ctx.issued_at, id);
            sqlx::query("UPDATE cash_collections SET number = $2 WHERE id = $1")
                .bind(id)
                .bind(&number)
                .execute(&mut **tx)
                .await
                .map_err($crate::store::map_sqlx)?;
            w_receipt_where(&mut **tx, "c.id = $1", id)
                .await?
                .ok_or_else(|| $crate::store::StoreError::Internal("inserted collection vanished".into()))
        }

        async fn w_insert_flag(
            tx: &mut sqlx::Transaction<'_, $db>,
            flag: &$crate::store::wardens::NewFlag,
            collection_id: Option<i64>,
            now: chrono::DateTime<chrono::Utc>,
        ) -> $crate::store::StoreResult<i64> {
            sqlx::query_scalar(
                "INSERT INTO warden_flags (kind, staff_id, shift_id, session_id, collection_id, violation_id, action_id, \
                 details, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
            )
            .bind(&flag.kind)
            .bind(flag.staff_id)
            .bind(flag.shift_id)
            .bind(flag.session_id)
            .bind(collection_id)
            .bind(flag.violation_id)
            .bind(flag.action_id.as_deref())
            .bind(&flag.details)
            .bind(now)
            .fetch_one(&mut **tx)
            .await
            .map_err($crate::store::map_sqlx)
        }

        /// One flag row per flag raised on a cash collection.
        async fn w_flags(
            tx: &mut sqlx::Transaction<'_, $db>,
            ctx: &$crate::store::wardens::CashContext,
            shift_id: Option<i64>,
            session_id: Option<i64>,
            flags: &[String],
            receipt: &$crate::store::wardens::ReceiptRow,
            now: chrono::DateTime<chrono::Utc>,
        ) -> $crate::store::StoreResult<()> {
            for kind in flags {
                let flag = $crate::store::wardens::NewFlag {
                    kind: kind.clone(),
                    staff_id: ctx.staff_id,
                    shift_id,
                    session_id,
                    violation_id: None,
                    action_id: ctx.action_id.clone(),
                    details: serde_json::json!({
                        "receipt": receipt.number,
                        "amount": receipt.amount.get(),
                        "point_code": receipt.point_code,
                        "issued_at": receipt.issued_at,
                    })
                    .to_string(),
                };
                w_insert_flag(tx, &flag, Some(receipt.id), now).await?;
            }
            Ok(())
        }
    };
}

pub(crate) use sql_warden_store_impl;

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use iparking_mobile_api::CheckVerdict;

    use super::{copy_row, copy_text};
    use crate::{domain::plate::Plate, store::wardens::CheckRecord};

    #[test]
    fn copy_text_escapes_what_the_text_format_reads_as_structure() {
        let mut out = String::new();
        copy_text(&mut out, "a\\b\tc\nd\re ễ");
        assert_eq!(out, "a\\\\b\\tc\\nd\\re ễ");
    }

    #[test]
    fn a_check_is_one_line_of_copy_text_with_nulls_and_microseconds() {
        let at: DateTime<Utc> = "2026-06-01T08:00:00.123456789Z".parse().expect("a time");
        let mut c = CheckRecord {
            staff_id: 7,
            point_id: 42,
            plate: Plate::parse("30A-123.45").expect("a plate"),
            verdict: CheckVerdict::Unpaid,
            session_id: None,
            near_misses: 2,
            source: crate::domain::check::CheckSource::Online,
            checked_at: at,
        };
        let mut out = String::new();
        copy_row(&mut out, &c);
        c.session_id = Some(9);
        c.verdict = CheckVerdict::Valid;
        copy_row(&mut out, &c);
        assert_eq!(
            out,
            "7\t42\t30A12345\tunpaid\t\\N\t2\tonline\t2026-06-01T08:00:00.123456Z\n\
             7\t42\t30A12345\tvalid\t9\t2\tonline\t2026-06-01T08:00:00.123456Z\n"
        );
    }
}
