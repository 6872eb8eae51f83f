//! The SQL of [`super::finance::FinanceStore`], shared by both databases like
//! `sql_drivers.rs`. It is instantiated in the same modules, so it reuses their helpers
//! (`claim`, `post`, `session_where`, `allocate_refund`, `refund_to_origin`).
//!
//! `$local_day` is the dialect's expression of a timestamp's local day (Asia/Ho_Chi_Minh,
//! UTC+7 all year) as `YYYY-MM-DD`, with `COL` standing for the column.

use super::finance::RevenueDim;

/// The SELECT of one revenue query: grouping columns, sums, joins and filters are composed
/// from fixed fragments (never from input; values are bound). Returns the SQL and how many
/// district codes to bind after `$1` (from), `$2` (to) and, with a street, `$3`.
pub(crate) fn revenue_sql(dims: &[RevenueDim], districts: usize, street: bool, local_day: &str) -> String {
    let mut cols: Vec<String> = Vec::new();
    let mut group: Vec<String> = Vec::new();
    let need_place = districts > 0
        || street
        || dims.iter().any(|d| matches!(d, RevenueDim::District | RevenueDim::Street | RevenueDim::Point));
    let day = local_day.replace("COL", "t.created_at");
    let mut put = |col: &str, alias: &str| {
        cols.push(format!("{col} AS {alias}"));
        group.push(col.to_owned());
    };
    for d in dims {
        match d {
            RevenueDim::District => {
                put("d.code", "district_code");
                put("d.name", "district_name");
            }
            RevenueDim::Street => {
                put("d.code", "district_code");
                put("st.id", "street_id");
                put("st.name", "street_name");
            }
            RevenueDim::Point => {
                put("d.code", "district_code");
                put("st.id", "street_id");
                put("st.name", "street_name");
                put("pt.code", "point_code");
                put("pt.name", "point_name");
            }
            RevenueDim::Channel => put("p.channel", "channel"),
            RevenueDim::Day => put(&day, "day"),
            RevenueDim::VehicleClass => put("s.vehicle_class", "vehicle_class"),
        }
    }
    // A column asked twice through two dimensions (street and point both carry the district)
    // is selected once.
    let mut seen = std::collections::HashSet::new();
    let mut select = Vec::new();
    let mut group_by = Vec::new();
    for (c, g) in cols.into_iter().zip(group) {
        if seen.insert(g.clone()) {
            select.push(c);
            group_by.push(g);
        }
    }
    select.push(
        "CAST(COALESCE(SUM(CASE WHEN a.kind = 'point_revenue' THEN p.amount ELSE 0 END), 0) AS BIGINT) AS gross".into(),
    );
    select.push(
        "CAST(COALESCE(SUM(CASE WHEN a.kind = 'carrier_fee' THEN -p.amount ELSE 0 END), 0) AS BIGINT) AS carrier_share"
            .into(),
    );
    select.push(
        "CAST(COALESCE(SUM(CASE WHEN a.kind = 'point_revenue' THEN 1 ELSE 0 END), 0) AS BIGINT) AS postings".into(),
    );
    let mut sql = format!(
        "SELECT {} FROM postings p JOIN ledger_transactions t ON t.id = p.transaction_id \
         JOIN accounts a ON a.id = p.account_id",
        select.join(", ")
    );
    if need_place {
        sql.push_str(
            " JOIN points pt ON pt.id = p.point_id JOIN streets st ON st.id = pt.street_id \
             JOIN districts d ON d.id = st.district_id",
        );
    }
    if dims.contains(&RevenueDim::VehicleClass) {
        sql.push_str(" LEFT JOIN sessions s ON s.id = t.session_id");
    }
    sql.push_str(" WHERE p.point_id IS NOT NULL AND t.created_at >= $1 AND t.created_at < $2");
    let mut n = 3;
    if street {
        sql.push_str(" AND st.id = $3");
        n = 4;
    }
    if districts > 0 {
        let marks: Vec<String> = (0..districts).map(|i| format!("${}", n + i)).collect();
        sql.push_str(&format!(" AND d.code IN ({})", marks.join(", ")));
    }
    if !group_by.is_empty() {
        sql.push_str(&format!(" GROUP BY {}", group_by.join(", ")));
    }
    sql
}

macro_rules! sql_finance_store_impl {
    ($store:ty, $db:ty, lock = $lock:literal, local_day = $local_day:literal $(,)?) => {
        #[async_trait::async_trait]
        impl $crate::store::finance::FinanceStore for $store {
            async fn revenue(
                &self,
                f: &$crate::store::finance::RevenueFilter,
            ) -> $crate::store::StoreResult<Vec<$crate::store::finance::RevenueRaw>> {
                use sqlx::Row;
                use $crate::store::finance::{RevenueDim, RevenueRaw};
                let sql = $crate::store::sql_finance::revenue_sql(&f.dims, f.districts.len(), f.street_id.is_some(), $local_day);
                // Planned for each call's dates: a cached generic plan cannot know how much of
                // the ledger a range covers and picks index lookups for a month of postings
                // (1.7× slower over a million sessions; docs/performance.md).
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false).bind(f.from).bind(f.to);
                if let Some(street) = f.street_id {
                    q = q.bind(street);
                }
                for d in &f.districts {
                    q = q.bind(d.clone());
                }
                let rows = q.fetch_all(&self.pool).await.map_err($crate::store::map_sqlx)?;
                let has = |d: RevenueDim| f.dims.contains(&d);
                let place = has(RevenueDim::Street) || has(RevenueDim::Point);
                let mut out = Vec::with_capacity(rows.len());
                for r in rows {
                    let text = |c: &str| -> $crate::store::StoreResult<Option<String>> {
                        r.try_get::<Option<String>, _>(c).map_err($crate::store::map_sqlx)
                    };
                    let sums = RevenueRaw {
                        gross: r.try_get("gross").map_err($crate::store::map_sqlx)?,
                        carrier_share: r.try_get("carrier_share").map_err($crate::store::map_sqlx)?,
                        postings: r.try_get("postings").map_err($crate::store::map_sqlx)?,
                        ..RevenueRaw::default()
                    };
                    out.push(RevenueRaw {
                        district_code: if has(RevenueDim::District) || place { text("district_code")? } else { None },
                        district_name: if has(RevenueDim::District) { text("district_name")? } else { None },
                        street_id: if place { r.try_get("street_id").map_err($crate::store::map_sqlx)? } else { None },
                        street_name: if place { text("street_name")? } else { None },
                        point_code: if has(RevenueDim::Point) { text("point_code")? } else { None },
                        point_name: if has(RevenueDim::Point) { text("point_name")? } else { None },
                        channel: if has(RevenueDim::Channel) { text("channel")? } else { None },
                        day: if has(RevenueDim::Day) { text("day")? } else { None },
                        vehicle_class: if has(RevenueDim::VehicleClass) { text("vehicle_class")? } else { None },
                        ..sums
                    });
                }
                Ok(out)
            }

            async fn processor_items(
                &self,
                from: chrono::DateTime<chrono::Utc>,
                to: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<Vec<$crate::store::finance::ProcessorItem>> {
                let rows: Vec<(String, String, Option<String>, i64, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
                    "SELECT 'topup', id, charge_ref, amount, credited_at FROM payment_intents \
                     WHERE gateway <> 'sandbox' AND credited_at >= $1 AND credited_at < $2 \
                     UNION ALL SELECT 'session_charge', CAST(id AS TEXT), charge_ref, amount, created_at FROM card_charges \
                     WHERE status IN ('succeeded', 'refund_due') AND created_at >= $1 AND created_at < $2 \
                     UNION ALL SELECT 'refund', CAST(id AS TEXT), processor_refund_id, -amount, settled_at FROM refunds \
                     WHERE status = 'succeeded' AND settled_at >= $1 AND settled_at < $2",
                )
                .bind(from)
                .bind(to)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::store::map_sqlx)?;
                Ok(rows
                    .into_iter()
                    .map(|(kind, reference, source, amount, at)| $crate::store::finance::ProcessorItem {
                        kind,
                        reference,
                        source,
                        amount,
                        at,
                    })
                    .collect())
            }

            async fn balance_transactions(
                &self,
                from: chrono::DateTime<chrono::Utc>,
                to: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<Vec<$crate::store::finance::BalanceTxn>> {
                let rows: Vec<(String, String, i64, i64, Option<String>, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
                    "SELECT id, type, amount, fee, source, created FROM stripe_balance_transactions \
                     WHERE created >= $1 AND created < $2 ORDER BY created, id",
                )
                .bind(from)
                .bind(to)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::store::map_sqlx)?;
                Ok(rows
                    .into_iter()
                    .map(|(id, kind, amount, fee, source, created)| $crate::store::finance::BalanceTxn {
                        id,
                        kind,
                        amount,
                        fee,
                        source,
                        created,
                    })
                    .collect())
            }

            async fn payouts(
                &self,
                from: chrono::DateTime<chrono::Utc>,
                to: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<Vec<$crate::store::finance::PayoutRow>> {
                let rows: Vec<(String, i64, String, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
                    "SELECT id, amount, status, arrival_date FROM stripe_payouts \
                     WHERE arrival_date >= $1 AND arrival_date < $2 ORDER BY arrival_date, id",
                )
                .bind(from)
                .bind(to)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::store::map_sqlx)?;
                Ok(rows
                    .into_iter()
                    .map(|(id, amount, status, arrival_date)| $crate::store::finance::PayoutRow { id, amount, status, arrival_date })
                    .collect())
            }

            async fn sms_charges(
                &self,
                from: chrono::DateTime<chrono::Utc>,
                to: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<Vec<$crate::store::finance::SmsCharge>> {
                let rows: Vec<(String, String, i64, chrono::DateTime<chrono::Utc>, Option<i64>)> = sqlx::query_as(
                    "SELECT m.carrier, m.message_id, m.amount, m.received_at, st.district_id FROM sms_messages m \
                     LEFT JOIN sessions s ON s.id = m.session_id LEFT JOIN points pt ON pt.id = s.point_id \
                     LEFT JOIN streets st ON st.id = pt.street_id \
                     WHERE m.outcome IN ('started', 'extended') AND m.amount > 0 AND m.received_at >= $1 AND m.received_at < $2 \
                     ORDER BY m.received_at, m.message_id",
                )
                .bind(from)
                .bind(to)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::store::map_sqlx)?;
                Ok(rows
                    .into_iter()
                    .map(|(carrier, message_id, amount, received_at, district_id)| $crate::store::finance::SmsCharge {
                        carrier,
                        message_id,
                        amount,
                        received_at,
                        district_id,
                    })
                    .collect())
            }

            async fn closed_shifts(
                &self,
                from: chrono::DateTime<chrono::Utc>,
                to: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<Vec<$crate::store::finance::ShiftCash>> {
                let rows: Vec<(i64, i64, String, chrono::DateTime<chrono::Utc>, i64, i64)> = sqlx::query_as(
                    "SELECT w.id, w.staff_id, sf.name, w.closed_at, \
                     (SELECT CAST(COALESCE(SUM(c.amount), 0) AS BIGINT) FROM cash_collections c WHERE c.shift_id = w.id \
                        AND c.payment = 'cash'), \
                     COALESCE(w.declared_cash, 0) \
                     FROM warden_shifts w JOIN staff sf ON sf.id = w.staff_id \
                     WHERE w.status = 'closed' AND w.closed_at >= $1 AND w.closed_at < $2 ORDER BY w.id",
                )
                .bind(from)
                .bind(to)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::store::map_sqlx)?;
                let places: Vec<(i64, i64)> = sqlx::query_as(
                    "SELECT DISTINCT c.shift_id, st.district_id FROM cash_collections c \
                     JOIN warden_shifts w ON w.id = c.shift_id JOIN points pt ON pt.id = c.point_id \
                     JOIN streets st ON st.id = pt.street_id \
                     WHERE w.status = 'closed' AND w.closed_at >= $1 AND w.closed_at < $2",
                )
                .bind(from)
                .bind(to)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::store::map_sqlx)?;
                Ok(rows
                    .into_iter()
                    .map(|(shift_id, staff_id, staff_name, closed_at, collected, declared)| {
                        let mut district_ids: Vec<i64> =
                            places.iter().filter(|(s, _)| *s == shift_id).map(|(_, d)| *d).collect();
                        district_ids.sort_unstable();
                        $crate::store::finance::ShiftCash {
                            shift_id,
                            staff_id,
                            staff_name,
                            closed_at,
                            collected,
                            declared,
                            district_ids,
                        }
                    })
                    .collect())
            }

            async fn open_shifts(&self, at: chrono::DateTime<chrono::Utc>) -> $crate::store::StoreResult<i64> {
                sqlx::query_scalar("SELECT COUNT(*) FROM warden_shifts WHERE status = 'open' AND opened_at < $1")
                    .bind(at)
                    .fetch_one(&self.pool)
                    .await
                    .map_err($crate::store::map_sqlx)
            }

            async fn open_flags(
                &self,
                from: chrono::DateTime<chrono::Utc>,
                to: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<Vec<$crate::store::finance::FlagRow>> {
                let rows: Vec<(i64, String, i64, String, Option<i64>, Option<i64>, chrono::DateTime<chrono::Utc>)> =
                    sqlx::query_as(
                        "SELECT f.id, f.kind, f.staff_id, f.details, c.amount, COALESCE(sc.district_id, ss.district_id), \
                         f.created_at FROM warden_flags f \
                         LEFT JOIN cash_collections c ON c.id = f.collection_id \
                         LEFT JOIN points pc ON pc.id = c.point_id LEFT JOIN streets sc ON sc.id = pc.street_id \
                         LEFT JOIN sessions s ON s.id = f.session_id \
                         LEFT JOIN points ps ON ps.id = s.point_id LEFT JOIN streets ss ON ss.id = ps.street_id \
                         WHERE f.resolved_at IS NULL AND f.created_at >= $1 AND f.created_at < $2 ORDER BY f.id",
                    )
                    .bind(from)
                    .bind(to)
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::store::map_sqlx)?;
                Ok(rows
                    .into_iter()
                    .map(|(id, kind, staff_id, details, amount, district_id, created_at)| $crate::store::finance::FlagRow {
                        id,
                        kind,
                        staff_id,
                        details,
                        amount,
                        district_id,
                        created_at,
                    })
                    .collect())
            }

            async fn ledger_facts(
                &self,
                from: chrono::DateTime<chrono::Utc>,
                to: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<$crate::store::finance::LedgerFacts> {
                let unbalanced: Vec<(i64, i64, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
                    "SELECT t.id, CAST(SUM(p.amount) AS BIGINT), t.created_at FROM ledger_transactions t \
                     JOIN postings p ON p.transaction_id = t.id WHERE t.created_at >= $1 AND t.created_at < $2 \
                     GROUP BY t.id, t.created_at HAVING SUM(p.amount) <> 0",
                )
                .bind(from)
                .bind(to)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::store::map_sqlx)?;
                let balance_mismatches = balance_mismatches(&self.pool).await?;
                let revenue: Vec<(i64, i64, i64)> = sqlx::query_as(
                    "SELECT st.id, st.district_id, CAST(COALESCE(SUM(p.amount), 0) AS BIGINT) FROM sessions s \
                     JOIN ledger_transactions t ON t.session_id = s.id JOIN postings p ON p.transaction_id = t.id \
                     JOIN accounts a ON a.id = p.account_id AND a.kind = 'point_revenue' \
                     JOIN points pt ON pt.id = p.point_id JOIN streets st ON st.id = pt.street_id \
                     WHERE s.started_at >= $1 AND s.started_at < $2 AND t.kind <> 'finance_adjustment' \
                     GROUP BY st.id, st.district_id",
                )
                .bind(from)
                .bind(to)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::store::map_sqlx)?;
                let charges: Vec<(i64, i64, i64)> = sqlx::query_as(
                    "SELECT st.id, st.district_id, CAST(COALESCE(SUM(s.amount_charged - s.amount_refunded), 0) AS BIGINT) \
                     FROM sessions s JOIN points pt ON pt.id = s.point_id JOIN streets st ON st.id = pt.street_id \
                     WHERE s.started_at >= $1 AND s.started_at < $2 GROUP BY st.id, st.district_id",
                )
                .bind(from)
                .bind(to)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::store::map_sqlx)?;
                let mut streets: std::collections::BTreeMap<i64, (i64, i64, i64)> = std::collections::BTreeMap::new();
                for (id, district, sum) in revenue {
                    streets.entry(id).or_insert((district, 0, 0)).1 += sum;
                }
                for (id, district, sum) in charges {
                    streets.entry(id).or_insert((district, 0, 0)).2 += sum;
                }
                let street_mismatches = streets
                    .into_iter()
                    .filter(|(_, (_, r, c))| r != c)
                    .map(|(id, (d, r, c))| (id, d, r, c))
                    .collect();
                Ok($crate::store::finance::LedgerFacts { unbalanced, balance_mismatches, street_mismatches })
            }

            async fn record_findings(
                &self,
                scope: &$crate::store::finance::RunScope,
                findings: &[$crate::store::finance::Finding],
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<()> {
                let mut tx = self.begin_write().await?;
                for f in findings {
                    sqlx::query(
                        "INSERT INTO discrepancies (section, kind, subject, period, day, district_id, expected, actual, \
                         details, status, detected_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'open', $10, $10) \
                         ON CONFLICT (kind, subject) DO UPDATE SET period = excluded.period, day = excluded.day, \
                         district_id = excluded.district_id, expected = excluded.expected, actual = excluded.actual, \
                         details = excluded.details, status = 'open', updated_at = excluded.updated_at \
                         WHERE discrepancies.status <> 'resolved'",
                    )
                    .bind(f.section)
                    .bind(f.kind)
                    .bind(&f.subject)
                    .bind(&f.period)
                    .bind(&f.day)
                    .bind(f.district_id)
                    .bind(f.expected)
                    .bind(f.actual)
                    .bind(&f.details)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::store::map_sqlx)?;
                }
                let open: Vec<(i64, String, String, String)> = sqlx::query_as(
                    "SELECT id, section, kind, subject FROM discrepancies WHERE status = 'open' AND day >= $1 AND day <= $2",
                )
                .bind(&scope.from_day)
                .bind(&scope.to_day)
                .fetch_all(&mut *tx)
                .await
                .map_err($crate::store::map_sqlx)?;
                let found: std::collections::HashSet<(&str, &str)> =
                    findings.iter().map(|f| (f.kind, f.subject.as_str())).collect();
                for (id, section, kind, subject) in open {
                    if scope.sections.contains(&section.as_str())
                        && !scope.skip_kinds.contains(&kind.as_str())
                        && !found.contains(&(kind.as_str(), subject.as_str())) {
                        sqlx::query("UPDATE discrepancies SET status = 'cleared', updated_at = $2 WHERE id = $1")
                            .bind(id)
                            .bind(now)
                            .execute(&mut *tx)
                            .await
                            .map_err($crate::store::map_sqlx)?;
                    }
                }
                tx.commit().await.map_err($crate::store::map_sqlx)?;
                Ok(())
            }

            async fn discrepancies(
                &self,
                from_day: &str,
                to_day: &str,
            ) -> $crate::store::StoreResult<Vec<$crate::store::finance::DiscrepancyRow>> {
                discrepancies_where(&self.pool, "d.day >= $1 AND d.day <= $2", from_day, to_day).await
            }

            async fn discrepancy(&self, id: i64) -> $crate::store::StoreResult<Option<$crate::store::finance::DiscrepancyRow>> {
                Ok(discrepancies_where(&self.pool, "d.id = $1 AND d.id = $2", id, id).await?.pop())
            }

            async fn resolve_discrepancy(
                &self,
                id: i64,
                staff_id: i64,
                note: &str,
                idem: Option<&$crate::store::drivers::IdemClaim>,
                answer: &$crate::store::drivers::Answer<'_, $crate::store::finance::DiscrepancyRow>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<$crate::store::finance::ResolveOutcome> {
                use $crate::store::finance::ResolveOutcome;
                let mut tx = self.begin_write().await?;
                claim(&mut tx, idem, now).await?;
                let locked = sqlx::AssertSqlSafe(format!("SELECT status, kind, subject FROM discrepancies WHERE id = $1{}", $lock));
                let row: Option<(String, String, String)> =
                    sqlx::query_as(locked).bind(id).fetch_optional(&mut *tx).await.map_err($crate::store::map_sqlx)?;
                let Some((status, kind, subject)) = row else { return Ok(ResolveOutcome::NotFound) };
                if status != "open" {
                    let row = discrepancies_where(&mut *tx, "d.id = $1 AND d.id = $2", id, id).await?.pop()
                        .ok_or_else(|| $crate::store::StoreError::Internal("locked discrepancy vanished".into()))?;
                    return Ok(ResolveOutcome::NotOpen(Box::new(row)));
                }
                sqlx::query(
                    "UPDATE discrepancies SET status = 'resolved', resolved_by = $2, resolved_at = $3, resolution_note = $4, \
                     updated_at = $3 WHERE id = $1",
                )
                .bind(id)
                .bind(staff_id)
                .bind(now)
                .bind(note)
                .execute(&mut *tx)
                .await
                .map_err($crate::store::map_sqlx)?;
                if kind == "warden_flag"
                    && let Some(flag) = subject.strip_prefix("flag:").and_then(|f| f.parse::<i64>().ok())
                {
                    sqlx::query(
                        "UPDATE warden_flags SET resolved_at = $2, resolved_by = $3, resolution = $4 \
                         WHERE id = $1 AND resolved_at IS NULL",
                    )
                    .bind(flag)
                    .bind(now)
                    .bind(staff_id)
                    .bind(note)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::store::map_sqlx)?;
                }
                finance_audit(&mut tx, staff_id, "resolve_discrepancy", &format!("discrepancy:{id}"),
                    &serde_json::json!({ "kind": kind, "subject": subject, "note": note }), now).await?;
                let row = discrepancies_where(&mut *tx, "d.id = $1 AND d.id = $2", id, id).await?.pop()
                    .ok_or_else(|| $crate::store::StoreError::Internal("discrepancy vanished".into()))?;
                answer_claim(&mut tx, idem, answer, &row).await?;
                tx.commit().await.map_err($crate::store::map_sqlx)?;
                Ok(ResolveOutcome::Resolved(Box::new(row)))
            }

            async fn period(&self, month: &str) -> $crate::store::StoreResult<Option<$crate::store::finance::PeriodRow>> {
                period_where(&self.pool, month).await
            }

            async fn close_period(
                &self,
                close: &$crate::store::finance::NewClose,
                idem: Option<&$crate::store::drivers::IdemClaim>,
                answer: &$crate::store::drivers::Answer<'_, $crate::store::finance::PeriodRow>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<$crate::store::finance::PeriodRow> {
                let mut tx = self.begin_write().await?;
                claim(&mut tx, idem, now).await?;
                if period_where(&mut *tx, &close.month).await?.is_some() {
                    return Err($crate::store::StoreError::Conflict("period_closed".into()));
                }
                let ids = serde_json::to_string(&close.open_discrepancy_ids).unwrap_or_else(|_| "[]".into());
                sqlx::query(
                    "INSERT INTO finance_periods (month, starts_at, ends_at, closed_by, closed_at, overridden, override_reason, \
                     open_discrepancy_ids) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&close.month)
                .bind(close.starts_at)
                .bind(close.ends_at)
                .bind(close.staff_id)
                .bind(now)
                .bind(close.overridden)
                .bind(&close.override_reason)
                .bind(&ids)
                .execute(&mut *tx)
                .await
                .map_err(|e| match $crate::store::map_sqlx(e) {
                    $crate::store::StoreError::Conflict(_) => $crate::store::StoreError::Conflict("period_closed".into()),
                    other => other,
                })?;
                finance_audit(&mut tx, close.staff_id, "close_period", &format!("period:{}", close.month),
                    &serde_json::json!({
                        "overridden": close.overridden,
                        "reason": close.override_reason,
                        "open_discrepancy_ids": close.open_discrepancy_ids,
                    }), now).await?;
                let row = period_where(&mut *tx, &close.month).await?
                    .ok_or_else(|| $crate::store::StoreError::Internal("closed period vanished".into()))?;
                answer_claim(&mut tx, idem, answer, &row).await?;
                tx.commit().await.map_err($crate::store::map_sqlx)?;
                Ok(row)
            }

            async fn post_adjustment(
                &self,
                adj: &$crate::store::finance::NewAdjustment,
                idem: Option<&$crate::store::drivers::IdemClaim>,
                answer: &$crate::store::drivers::Answer<'_, $crate::store::finance::AdjustmentRow>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<$crate::store::finance::AdjustmentRow> {
                use $crate::domain::ledger::{AccountKind, Entry, Posting, RevenueChannel};
                let side = |account: &$crate::domain::ledger::Account, amount| match (account.kind, adj.point_id) {
                    (AccountKind::PointRevenue, Some(point)) => Posting::revenue(point, RevenueChannel::Adjustment, amount),
                    _ => Posting::plain(account.clone(), amount),
                };
                let entry = Entry::new("finance_adjustment", vec![side(&adj.debit, -adj.amount), side(&adj.credit, adj.amount)])
                    .map_err(|e| $crate::store::StoreError::Internal(e.to_string()))?;
                let mut tx = self.begin_write().await?;
                claim(&mut tx, idem, now).await?;
                let txn = match post(&mut tx, &entry, None, adj.booked_at).await? {
                    Ok(txn) => txn,
                    // A warden's float debited below zero: refused, nothing written.
                    Err(_) => return Err($crate::store::StoreError::Conflict("balance_short".into())),
                };
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO finance_adjustments (transaction_id, period, debit, credit, amount, reason, author_id, \
                     discrepancy_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
                )
                .bind(txn)
                .bind(&adj.period)
                .bind(&adj.debit_json)
                .bind(&adj.credit_json)
                .bind(adj.amount.get())
                .bind(&adj.reason)
                .bind(adj.author_id)
                .bind(adj.discrepancy_id)
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .map_err($crate::store::map_sqlx)?;
                finance_audit(&mut tx, adj.author_id, "adjustment", &format!("adjustment:{id}"),
                    &serde_json::json!({
                        "amount": adj.amount.get(),
                        "debit": adj.debit_json,
                        "credit": adj.credit_json,
                        "reason": adj.reason,
                        "period": adj.period,
                        "transaction_id": txn,
                    }), now).await?;
                let row = adjustments_where(&mut *tx, "j.id = $1", id).await?.pop()
                    .ok_or_else(|| $crate::store::StoreError::Internal("adjustment vanished".into()))?;
                answer_claim(&mut tx, idem, answer, &row).await?;
                tx.commit().await.map_err($crate::store::map_sqlx)?;
                Ok(row)
            }

            async fn adjustments(&self, period: &str) -> $crate::store::StoreResult<Vec<$crate::store::finance::AdjustmentRow>> {
                adjustments_where(&self.pool, "j.period = $1", period.to_owned()).await
            }

            async fn store_settlement(
                &self,
                file: &$crate::store::finance::NewSettlement<'_>,
                idem: Option<&$crate::store::drivers::IdemClaim>,
                answer: &$crate::store::drivers::Answer<'_, $crate::store::finance::SettlementRow>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<$crate::store::finance::SettlementRow> {
                let $crate::store::finance::NewSettlement { carrier, month, lines, sha256, staff_id } = *file;
                let mut tx = self.begin_write().await?;
                claim(&mut tx, idem, now).await?;
                let locked = sqlx::AssertSqlSafe(format!(
                    "SELECT id FROM carrier_settlements WHERE carrier = $1 AND month = $2 AND superseded_at IS NULL{}",
                    $lock
                ));
                let previous: Option<i64> = sqlx::query_scalar(locked)
                    .bind(carrier)
                    .bind(month)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err($crate::store::map_sqlx)?;
                if let Some(prev) = previous {
                    sqlx::query("UPDATE carrier_settlements SET superseded_at = $2 WHERE id = $1")
                        .bind(prev)
                        .bind(now)
                        .execute(&mut *tx)
                        .await
                        .map_err($crate::store::map_sqlx)?;
                }
                let (gross, share, net) =
                    lines.iter().fold((0i64, 0i64, 0i64), |(g, s, n), l| (g + l.gross, s + l.share, n + l.net));
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO carrier_settlements (carrier, month, lines, gross, share, net, sha256, replaces, uploaded_by, \
                     uploaded_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
                )
                .bind(carrier)
                .bind(month)
                .bind(lines.len() as i64)
                .bind(gross)
                .bind(share)
                .bind(net)
                .bind(sha256)
                .bind(previous)
                .bind(staff_id)
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .map_err($crate::store::map_sqlx)?;
                for chunk in lines.chunks(1000) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO carrier_settlement_lines (settlement_id, line, message_id, received_at, gross, share, net) ",
                    );
                    qb.push_values(chunk, |mut b, l| {
                        b.push_bind(id)
                            .push_bind(l.line)
                            .push_bind(l.message_id.clone())
                            .push_bind(l.received_at)
                            .push_bind(l.gross)
                            .push_bind(l.share)
                            .push_bind(l.net);
                    });
                    qb.build().execute(&mut *tx).await.map_err($crate::store::map_sqlx)?;
                }
                finance_audit(&mut tx, staff_id, "carrier_settlement", &format!("settlement:{id}"),
                    &serde_json::json!({
                        "carrier": carrier, "month": month, "lines": lines.len(), "net": net, "sha256": sha256,
                        "replaces": previous,
                    }), now).await?;
                let row = settlement_where(&mut *tx, "c.id = $1", id).await?
                    .ok_or_else(|| $crate::store::StoreError::Internal("settlement vanished".into()))?;
                answer_claim(&mut tx, idem, answer, &row).await?;
                tx.commit().await.map_err($crate::store::map_sqlx)?;
                Ok(row)
            }

            async fn settlement(
                &self,
                carrier: &str,
                month: &str,
            ) -> $crate::store::StoreResult<
                Option<($crate::store::finance::SettlementRow, Vec<$crate::store::finance::SettlementLine>)>,
            > {
                let id: Option<i64> = sqlx::query_scalar(
                    "SELECT id FROM carrier_settlements WHERE carrier = $1 AND month = $2 AND superseded_at IS NULL",
                )
                .bind(carrier)
                .bind(month)
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::store::map_sqlx)?;
                let Some(id) = id else { return Ok(None) };
                let Some(row) = settlement_where(&self.pool, "c.id = $1", id).await? else { return Ok(None) };
                let lines: Vec<(i64, String, chrono::DateTime<chrono::Utc>, i64, i64, i64)> = sqlx::query_as(
                    "SELECT CAST(line AS BIGINT), message_id, received_at, gross, share, net FROM carrier_settlement_lines \
                     WHERE settlement_id = $1 ORDER BY line",
                )
                .bind(id)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::store::map_sqlx)?;
                let lines = lines
                    .into_iter()
                    .map(|(line, message_id, received_at, gross, share, net)| $crate::store::finance::SettlementLine {
                        line,
                        message_id,
                        received_at,
                        gross,
                        share,
                        net,
                    })
                    .collect();
                Ok(Some((row, lines)))
            }

            async fn create_refund_request(
                &self,
                req: &$crate::store::finance::NewRefundRequest,
                idem: Option<&$crate::store::drivers::IdemClaim>,
                answer: &$crate::store::drivers::Answer<'_, $crate::store::finance::RefundRequestRow>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<$crate::store::finance::RequestOutcome> {
                use $crate::domain::{ledger::{Account, Entry}, money::Vnd};
                use $crate::store::finance::RequestOutcome;
                let mut tx = self.begin_write().await?;
                claim(&mut tx, idem, now).await?;
                let amount = if req.kind == $crate::domain::finance::RequestKind::WalletBalance {
                    let locked = sqlx::AssertSqlSafe(format!(
                        "SELECT balance FROM accounts WHERE kind = 'wallet' AND ref = $1{}",
                        $lock
                    ));
                    let balance: Option<i64> = sqlx::query_scalar(locked)
                        .bind(req.driver_id.to_string())
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err($crate::store::map_sqlx)?;
                    let balance = balance.unwrap_or(0);
                    // What the cards can take back, less what pending requests already hold.
                    let cards: i64 = sqlx::query_scalar(
                        "SELECT CAST(COALESCE(SUM(amount - amount_refunded), 0) AS BIGINT) FROM payment_intents \
                         WHERE driver_id = $1 AND credited_at IS NOT NULL AND gateway <> 'sandbox'",
                    )
                    .bind(req.driver_id)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err($crate::store::map_sqlx)?;
                    let held: i64 = sqlx::query_scalar(
                        "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM refund_requests \
                         WHERE driver_id = $1 AND kind = 'wallet_balance' AND status = 'pending'",
                    )
                    .bind(req.driver_id)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err($crate::store::map_sqlx)?;
                    let most = if req.sandbox { balance } else { balance.min((cards - held).max(0)) };
                    let amount = req.amount.map_or(most, |a| a.get());
                    if most <= 0 {
                        return Ok(RequestOutcome::NotRefundable);
                    }
                    if amount > most {
                        return Ok(RequestOutcome::TooLarge(Vnd(most)));
                    }
                    let entry = Entry::transfer("refund_hold", Account::wallet(req.driver_id), Account::refund_hold(req.driver_id), Vnd(amount))
                        .map_err(|e| $crate::store::StoreError::Internal(e.to_string()))?;
                    if post(&mut tx, &entry, None, now).await?.is_err() {
                        return Ok(RequestOutcome::TooLarge(Vnd(balance)));
                    }
                    amount
                } else {
                    let Some(session_id) = req.session_id else { return Ok(RequestOutcome::SessionNotFound) };
                    let locked = sqlx::AssertSqlSafe(format!("SELECT id FROM sessions WHERE id = $1{ROW_LOCK}"));
                    let found: Option<i64> =
                        sqlx::query_scalar(locked).bind(session_id).fetch_optional(&mut *tx).await.map_err($crate::store::map_sqlx)?;
                    if found.is_none() {
                        return Ok(RequestOutcome::SessionNotFound);
                    }
                    let row = session_where(&mut *tx, "s.id = $1", session_id).await?
                        .ok_or_else(|| $crate::store::StoreError::Internal("locked session vanished".into()))?;
                    if row.driver_id != Some(req.driver_id) {
                        return Ok(RequestOutcome::SessionNotFound);
                    }
                    // One pending request per session, checked under the session's lock
                    // rather than left to the unique index (whose violation is an ERROR in
                    // PostgreSQL's log for what is only a driver asking twice).
                    let pending: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM refund_requests WHERE session_id = $1 AND status = 'pending'",
                    )
                    .bind(session_id)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err($crate::store::map_sqlx)?;
                    if pending > 0 {
                        return Err($crate::store::StoreError::Conflict("refund_requests_pending_session_key".into()));
                    }
                    let most = (row.amount_charged - row.amount_refunded).get();
                    if row.channel != $crate::domain::session::SessionChannel::App || most <= 0 {
                        return Ok(RequestOutcome::NotRefundable);
                    }
                    let amount = req.amount.map_or(most, |a| a.get());
                    if amount > most {
                        return Ok(RequestOutcome::TooLarge(Vnd(most)));
                    }
                    amount
                };
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO refund_requests (driver_id, kind, session_id, amount, reason, status, created_at) \
                     VALUES ($1, $2, $3, $4, $5, 'pending', $6) RETURNING id",
                )
                .bind(req.driver_id)
                .bind(req.kind.as_str())
                .bind(req.session_id.filter(|_| req.kind == $crate::domain::finance::RequestKind::Session))
                .bind(amount)
                .bind(&req.reason)
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .map_err($crate::store::map_sqlx)?;
                let row = refund_requests_where(&mut *tx, "r.id = $1", id).await?.pop()
                    .ok_or_else(|| $crate::store::StoreError::Internal("refund request vanished".into()))?;
                answer_claim(&mut tx, idem, answer, &row).await?;
                tx.commit().await.map_err($crate::store::map_sqlx)?;
                Ok(RequestOutcome::Created(Box::new(row)))
            }

            async fn refund_requests(
                &self,
                driver_id: Option<i64>,
                status: Option<$crate::domain::finance::RequestStatus>,
            ) -> $crate::store::StoreResult<Vec<$crate::store::finance::RefundRequestRow>> {
                let rows = match (driver_id, status) {
                    (Some(d), _) => refund_requests_where(&self.pool, "r.driver_id = $1", d).await?,
                    (None, Some(s)) => return refund_requests_where(&self.pool, "r.status = $1", s.as_str()).await,
                    (None, None) => refund_requests_where(&self.pool, "r.id > $1", 0i64).await?,
                };
                Ok(rows.into_iter().filter(|r| status.is_none_or(|s| r.status == s)).collect())
            }

            async fn refund_request(&self, id: i64) -> $crate::store::StoreResult<Option<$crate::store::finance::RefundRequestRow>> {
                Ok(refund_requests_where(&self.pool, "r.id = $1", id).await?.pop())
            }

            async fn decide_refund_request(
                &self,
                decision: &$crate::store::finance::RefundDecision<'_>,
                idem: Option<&$crate::store::drivers::IdemClaim>,
                answer: &$crate::store::drivers::Answer<'_, $crate::store::finance::RefundRequestRow>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<$crate::store::finance::DecideOutcome> {
                let $crate::store::finance::RefundDecision { id, approve, staff_id, note, sandbox } = *decision;
                use $crate::domain::{ledger::{Account, Entry}, money::Vnd};
                use $crate::store::finance::DecideOutcome;
                let mut tx = self.begin_write().await?;
                claim(&mut tx, idem, now).await?;
                let locked = sqlx::AssertSqlSafe(format!(
                    "SELECT status, kind, driver_id, session_id, amount FROM refund_requests WHERE id = $1{}",
                    $lock
                ));
                let row: Option<(String, String, i64, Option<i64>, i64)> =
                    sqlx::query_as(locked).bind(id).fetch_optional(&mut *tx).await.map_err($crate::store::map_sqlx)?;
                let Some((status, kind, driver_id, session_id, amount)) = row else { return Ok(DecideOutcome::NotFound) };
                if status != "pending" {
                    let row = refund_requests_where(&mut *tx, "r.id = $1", id).await?.pop()
                        .ok_or_else(|| $crate::store::StoreError::Internal("locked request vanished".into()))?;
                    return Ok(DecideOutcome::AlreadyDecided(Box::new(row)));
                }
                let requested_by = format!("staff:{staff_id}");
                let (mut to_wallet, mut to_cards, mut refunds) = (0i64, 0i64, Vec::new());
                match (kind.as_str(), approve) {
                    ("wallet_balance", true) => {
                        let order = $crate::store::cards::BackToOriginOrder {
                            driver_id, from: Account::refund_hold(driver_id), amount: Vnd(amount), sandbox, rest_to_wallet: true,
                            kind: "refund_request_approved", reason: "refund_request", requested_by: &requested_by,
                        };
                        let back = refund_to_origin(&mut tx, &order, now).await?;
                        to_cards = (back.to_cards + back.to_sandbox).get();
                        to_wallet = back.left.get();
                        refunds = back.refunds;
                    }
                    ("wallet_balance", false) => {
                        let entry = Entry::transfer("refund_request_rejected", Account::refund_hold(driver_id), Account::wallet(driver_id), Vnd(amount))
                            .map_err(|e| $crate::store::StoreError::Internal(e.to_string()))?;
                        if post(&mut tx, &entry, None, now).await?.is_err() {
                            return Err($crate::store::StoreError::Internal("returning a hold cannot overdraw".into()));
                        }
                    }
                    (_, true) => {
                        let session_id = session_id.ok_or_else(|| $crate::store::StoreError::Internal("session request without a session".into()))?;
                        let locked = sqlx::AssertSqlSafe(format!("SELECT id FROM sessions WHERE id = $1{ROW_LOCK}"));
                        let _: Option<i64> =
                            sqlx::query_scalar(locked).bind(session_id).fetch_optional(&mut *tx).await.map_err($crate::store::map_sqlx)?;
                        let row = session_where(&mut *tx, "s.id = $1", session_id).await?
                            .ok_or_else(|| $crate::store::StoreError::Internal("session vanished".into()))?;
                        // Refunds since the request (the driver stopped early) lower what is left.
                        let take = amount.min((row.amount_charged - row.amount_refunded).get()).max(0);
                        refunds = allocate_refund(&mut tx, &row, Vnd(take), "dispute", &requested_by, now).await?;
                        sqlx::query("UPDATE sessions SET amount_refunded = amount_refunded + $2 WHERE id = $1")
                            .bind(session_id)
                            .bind(take)
                            .execute(&mut *tx)
                            .await
                            .map_err($crate::store::map_sqlx)?;
                        to_cards = refunds.iter().map(|r| r.amount.get()).sum();
                        to_wallet = take - to_cards;
                    }
                    (_, false) => {}
                }
                for r in &refunds {
                    sqlx::query("UPDATE refunds SET request_id = $2 WHERE id = $1")
                        .bind(r.id)
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .map_err($crate::store::map_sqlx)?;
                }
                sqlx::query(
                    "UPDATE refund_requests SET status = $2, decided_by = $3, decided_at = $4, decision_note = $5, \
                     to_wallet = $6, to_cards = $7 WHERE id = $1",
                )
                .bind(id)
                .bind(if approve { "approved" } else { "rejected" })
                .bind(staff_id)
                .bind(now)
                .bind(note)
                .bind(to_wallet)
                .bind(to_cards)
                .execute(&mut *tx)
                .await
                .map_err($crate::store::map_sqlx)?;
                finance_audit(&mut tx, staff_id, if approve { "approve_refund" } else { "reject_refund" },
                    &format!("refund_request:{id}"),
                    &serde_json::json!({ "kind": kind, "amount": amount, "to_wallet": to_wallet, "to_cards": to_cards, "note": note }),
                    now).await?;
                let row = refund_requests_where(&mut *tx, "r.id = $1", id).await?.pop()
                    .ok_or_else(|| $crate::store::StoreError::Internal("request vanished".into()))?;
                answer_claim(&mut tx, idem, answer, &row).await?;
                tx.commit().await.map_err($crate::store::map_sqlx)?;
                Ok(DecideOutcome::Decided(Box::new(row), refunds))
            }

            async fn is_warden(&self, id: i64) -> $crate::store::StoreResult<bool> {
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM staff WHERE id = $1 AND role = 'warden'")
                    .bind(id)
                    .fetch_one(&self.pool)
                    .await
                    .map_err($crate::store::map_sqlx)?;
                Ok(n > 0)
            }

            async fn audit(
                &self,
                from: chrono::DateTime<chrono::Utc>,
                to: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<Vec<$crate::store::finance::AuditRow>> {
                let rows: Vec<(i64, String, i64, String, String, String, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
                    "SELECT a.id, sf.name, a.staff_id, a.action, a.subject, a.details, a.created_at FROM finance_audit a \
                     JOIN staff sf ON sf.id = a.staff_id WHERE a.created_at >= $1 AND a.created_at < $2 ORDER BY a.id",
                )
                .bind(from)
                .bind(to)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::store::map_sqlx)?;
                Ok(rows
                    .into_iter()
                    .map(|(id, staff_name, staff_id, action, subject, details, created_at)| $crate::store::finance::AuditRow {
                        id,
                        staff_name,
                        staff_id,
                        action,
                        subject,
                        details,
                        created_at,
                    })
                    .collect())
            }
        }

        /// Writes one audit row in the action's transaction.
        async fn finance_audit(
            tx: &mut sqlx::Transaction<'_, $db>,
            staff_id: i64,
            action: &str,
            subject: &str,
            details: &serde_json::Value,
            now: chrono::DateTime<chrono::Utc>,
        ) -> $crate::store::StoreResult<()> {
            sqlx::query("INSERT INTO finance_audit (staff_id, action, subject, details, created_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(staff_id)
                .bind(action)
                .bind(subject)
                .bind(details.to_string())
                .bind(now)
                .execute(&mut **tx)
                .await
                .map_err($crate::store::map_sqlx)?;
            Ok(())
        }

        async fn discrepancies_where<'c, E, A>(
            conn: E,
            condition: &str,
            a: A,
            b: A,
        ) -> $crate::store::StoreResult<Vec<$crate::store::finance::DiscrepancyRow>>
        where
            E: sqlx::Executor<'c, Database = $db>,
            A: for<'q> sqlx::Encode<'q, $db> + sqlx::Type<$db> + Send + 'c,
        {
            type Raw = (
                i64, String, String, String, String, String, Option<String>, Option<i64>, Option<i64>, String, String,
                chrono::DateTime<chrono::Utc>, Option<String>, Option<chrono::DateTime<chrono::Utc>>, Option<String>,
            );
            let sql = sqlx::AssertSqlSafe(format!(
                "SELECT d.id, d.section, d.kind, d.subject, d.period, d.day, dist.code, d.expected, d.actual, d.details, \
                 d.status, d.detected_at, sf.name, d.resolved_at, d.resolution_note FROM discrepancies d \
                 LEFT JOIN districts dist ON dist.id = d.district_id LEFT JOIN staff sf ON sf.id = d.resolved_by \
                 WHERE {condition} ORDER BY d.id"
            ));
            let rows: Vec<Raw> = sqlx::query_as(sql).bind(a).bind(b).fetch_all(conn).await.map_err($crate::store::map_sqlx)?;
            rows.into_iter()
                .map(|r| {
                    Ok($crate::store::finance::DiscrepancyRow {
                    id: r.0,
                    section: r.1,
                    kind: r.2,
                    subject: r.3,
                    period: r.4,
                    day: r.5,
                    district_code: r.6,
                    expected: r.7,
                    actual: r.8,
                    details: r.9,
                    status: $crate::store::stored_name(
                        $crate::domain::finance::DiscrepancyStatus::parse,
                        &r.10,
                        "discrepancy",
                        r.0,
                    )?,
                    detected_at: r.11,
                    resolved_by: r.12,
                    resolved_at: r.13,
                    resolution_note: r.14,
                })
                })
                .collect()
        }

        async fn period_where<'c, E>(conn: E, month: &str) -> $crate::store::StoreResult<Option<$crate::store::finance::PeriodRow>>
        where
            E: sqlx::Executor<'c, Database = $db>,
        {
            let row: Option<(String, String, chrono::DateTime<chrono::Utc>, bool, Option<String>, String)> = sqlx::query_as(
                "SELECT f.month, sf.name, f.closed_at, f.overridden, f.override_reason, f.open_discrepancy_ids \
                 FROM finance_periods f JOIN staff sf ON sf.id = f.closed_by WHERE f.month = $1",
            )
            .bind(month.to_owned())
            .fetch_optional(conn)
            .await
            .map_err($crate::store::map_sqlx)?;
            Ok(row.map(|(month, closed_by, closed_at, overridden, override_reason, ids)| $crate::store::finance::PeriodRow {
                month,
                closed_by,
                closed_at,
                overridden,
                override_reason,
                open_discrepancy_ids: serde_json::from_str(&ids).unwrap_or_default(),
            }))
        }

        async fn adjustments_where<'c, E, A>(
            conn: E,
            condition: &str,
            arg: A,
        ) -> $crate::store::StoreResult<Vec<$crate::store::finance::AdjustmentRow>>
        where
            E: sqlx::Executor<'c, Database = $db>,
            A: for<'q> sqlx::Encode<'q, $db> + sqlx::Type<$db> + Send + 'c,
        {
            type Raw = (
                i64,
                i64,
                String,
                String,
                String,
                i64,
                String,
                String,
                Option<i64>,
                chrono::DateTime<chrono::Utc>,
                Option<String>,
                Option<String>,
                Option<String>,
            );
            // The districts of the points the adjustment posts to (lowest and highest code:
            // equal when there is one) and of the discrepancy it corrects.
            const POINT_DISTRICTS: &str = "FROM postings p JOIN points pt ON pt.id = p.point_id \
                 JOIN streets st ON st.id = pt.street_id JOIN districts d ON d.id = st.district_id \
                 WHERE p.transaction_id = j.transaction_id";
            let sql = sqlx::AssertSqlSafe(format!(
                "SELECT j.id, j.transaction_id, j.period, j.debit, j.credit, j.amount, j.reason, sf.name, j.discrepancy_id, \
                 j.created_at, (SELECT MIN(d.code) {POINT_DISTRICTS}), (SELECT MAX(d.code) {POINT_DISTRICTS}), dd.code \
                 FROM finance_adjustments j JOIN staff sf ON sf.id = j.author_id \
                 LEFT JOIN discrepancies dc ON dc.id = j.discrepancy_id LEFT JOIN districts dd ON dd.id = dc.district_id \
                 WHERE {condition} ORDER BY j.id"
            ));
            let rows: Vec<Raw> = sqlx::query_as(sql).bind(arg).fetch_all(conn).await.map_err($crate::store::map_sqlx)?;
            Ok(rows
                .into_iter()
                .map(|r| $crate::store::finance::AdjustmentRow {
                    district_code: $crate::store::finance::one_district([r.10, r.11, r.12]),
                    id: r.0,
                    transaction_id: r.1,
                    period: r.2,
                    debit_json: r.3,
                    credit_json: r.4,
                    amount: r.5,
                    reason: r.6,
                    author: r.7,
                    discrepancy_id: r.8,
                    created_at: r.9,
                })
                .collect())
        }

        async fn settlement_where<'c, E>(
            conn: E,
            condition: &str,
            id: i64,
        ) -> $crate::store::StoreResult<Option<$crate::store::finance::SettlementRow>>
        where
            E: sqlx::Executor<'c, Database = $db>,
        {
            type Raw = (i64, String, String, i64, i64, i64, i64, Option<i64>, String, chrono::DateTime<chrono::Utc>);
            let sql = sqlx::AssertSqlSafe(format!(
                "SELECT c.id, c.carrier, c.month, c.lines, c.gross, c.share, c.net, c.replaces, sf.name, c.uploaded_at \
                 FROM carrier_settlements c JOIN staff sf ON sf.id = c.uploaded_by WHERE {condition}"
            ));
            let row: Option<Raw> = sqlx::query_as(sql).bind(id).fetch_optional(conn).await.map_err($crate::store::map_sqlx)?;
            Ok(row.map(|r| $crate::store::finance::SettlementRow {
                id: r.0,
                carrier: r.1,
                month: r.2,
                lines: r.3,
                gross: r.4,
                share: r.5,
                net: r.6,
                replaces: r.7,
                uploaded_by: r.8,
                uploaded_at: r.9,
            }))
        }

        async fn refund_requests_where<'c, E, A>(
            conn: E,
            condition: &str,
            arg: A,
        ) -> $crate::store::StoreResult<Vec<$crate::store::finance::RefundRequestRow>>
        where
            E: sqlx::Executor<'c, Database = $db>,
            A: for<'q> sqlx::Encode<'q, $db> + sqlx::Type<$db> + Send + 'c,
        {
            type Raw = (
                i64, i64, String, Option<i64>, Option<String>, i64, String, String, Option<String>,
                Option<chrono::DateTime<chrono::Utc>>, Option<String>, i64, i64, Option<String>, chrono::DateTime<chrono::Utc>,
            );
            // The processor refunds made on approval, as a comma list (both databases).
            let sql = sqlx::AssertSqlSafe(format!(
                "SELECT r.id, r.driver_id, r.kind, r.session_id, d.code, r.amount, r.reason, r.status, sf.name, r.decided_at, \
                 r.decision_note, r.to_wallet, r.to_cards, \
                 (SELECT {agg} FROM refunds f WHERE f.request_id = r.id), r.created_at \
                 FROM refund_requests r LEFT JOIN sessions s ON s.id = r.session_id \
                 LEFT JOIN points pt ON pt.id = s.point_id LEFT JOIN streets st ON st.id = pt.street_id \
                 LEFT JOIN districts d ON d.id = st.district_id LEFT JOIN staff sf ON sf.id = r.decided_by \
                 WHERE {condition} ORDER BY r.id",
                agg = $crate::store::sql_finance::ID_LIST,
            ));
            let rows: Vec<Raw> = sqlx::query_as(sql).bind(arg).fetch_all(conn).await.map_err($crate::store::map_sqlx)?;
            rows.into_iter()
                .map(|r| {
                    Ok($crate::store::finance::RefundRequestRow {
                    id: r.0,
                    driver_id: r.1,
                    kind: $crate::store::stored_name(
                        $crate::domain::finance::RequestKind::parse,
                        &r.2,
                        "refund request",
                        r.0,
                    )?,
                    session_id: r.3,
                    district_code: r.4,
                    amount: r.5,
                    reason: r.6,
                    status: $crate::store::stored_name(
                        $crate::domain::finance::RequestStatus::parse,
                        &r.7,
                        "refund request",
                        r.0,
                    )?,
                    decided_by: r.8,
                    decided_at: r.9,
                    decision_note: r.10,
                    to_wallet: r.11,
                    to_cards: r.12,
                    refund_ids: r.13.as_deref().unwrap_or("").split(',').filter_map(|s| s.trim().parse().ok()).collect(),
                    created_at: r.14,
                })
                })
                .collect()
        }
    };
}

/// Aggregates `f.id` into a comma list on both databases (`string_agg` and SQLite's
/// two-argument `group_concat` both exist under these names in PostgreSQL 9+ and SQLite).
pub(crate) const ID_LIST: &str = "CAST(string_agg(CAST(f.id AS TEXT), ',') AS TEXT)";

pub(crate) use sql_finance_store_impl;
