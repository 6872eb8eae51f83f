//! Accounting periods: a month is open until city-wide finance closes it; afterwards nothing
//! can be posted into it. Open discrepancies block the close unless overridden with a
//! reason, which is recorded.

use iparking_mobile_api::{ClosePeriod, PeriodView};

use super::{city_writer, note_of, parse_month, period_closed, reader, reconciliation::reconcile};
use crate::{
    App,
    domain::finance as fin,
    error::AppError,
    store::{
        Principal, StoreError,
        drivers::{Answer, IdemClaim},
        finance::{NewClose, PeriodRow},
    },
};

/// A month's state as finance reads it.
pub fn period_view(month: &str, row: Option<PeriodRow>) -> PeriodView {
    match row {
        None => PeriodView {
            month: month.to_owned(),
            status: "open".into(),
            closed_by: None,
            closed_at: None,
            overridden: false,
            override_reason: None,
            open_discrepancy_ids: Vec::new(),
        },
        Some(r) => PeriodView {
            month: r.month,
            status: "closed".into(),
            closed_by: Some(r.closed_by),
            closed_at: Some(r.closed_at),
            overridden: r.overridden,
            override_reason: r.override_reason,
            open_discrepancy_ids: r.open_discrepancy_ids,
        },
    }
}

/// A month's state (`YYYY-MM`).
pub async fn period(app: &App, p: &Principal, month: &str) -> Result<PeriodView, AppError> {
    reader(p)?;
    let range = parse_month(month)?;
    let month = fin::month_of(range.from);
    Ok(period_view(&month, app.store.period(&month).await?))
}

/// Closes a month (`YYYY-MM`) that has ended. With a key, `answer` is stored with it in the
/// closing transaction.
pub async fn close(
    app: &App,
    p: &Principal,
    month: &str,
    body: &ClosePeriod,
    idem: Option<&IdemClaim>,
    answer: &Answer<'_, PeriodRow>,
) -> Result<PeriodView, AppError> {
    city_writer(p)?;
    let range = parse_month(month)?;
    let month = fin::month_of(range.from);
    let now = app.clock.now();
    if now < range.end() {
        return Err(AppError::conflict(
            "period_not_ended",
            "Tháng này chưa kết thúc: chỉ khóa sổ được tháng đã qua.",
            "This month has not ended: only past months can be closed.",
        ));
    }
    if app.store.period(&month).await?.is_some() {
        return Err(period_closed());
    }
    let reason = match (body.override_open_discrepancies, body.reason.as_deref()) {
        (true, r) => Some(note_of(r.unwrap_or(""), "invalid_reason")?),
        (false, _) => None,
    };
    reconcile(app, range, true).await?;
    let open: Vec<i64> = app
        .store
        .discrepancies(&range.from_str(), &range.to_str())
        .await?
        .into_iter()
        .filter(|d| d.status == fin::DiscrepancyStatus::Open)
        .map(|d| d.id)
        .collect();
    if !open.is_empty() && !body.override_open_discrepancies {
        return Err(AppError::conflict(
            "open_discrepancies",
            format!("Còn {} chênh lệch chưa xử lý; xử lý chúng hoặc khóa sổ với lý do.", open.len()),
            format!(
                "{} discrepancies are still open: resolve them, or close with an override and a reason.",
                open.len()
            ),
        )
        .with_details(serde_json::json!({ "ids": open })));
    }
    let close = NewClose {
        month: month.clone(),
        starts_at: range.start(),
        ends_at: range.end(),
        staff_id: p.staff_id,
        overridden: body.override_open_discrepancies && !open.is_empty(),
        override_reason: reason,
        open_discrepancy_ids: open,
    };
    let row = app.store.close_period(&close, idem, answer, now).await.map_err(|e| match e {
        StoreError::Conflict(c) if c == "period_closed" => period_closed(),
        other => other.into(),
    })?;
    tracing::info!(staff.id = p.staff_id, overridden = row.overridden, "period closed");
    Ok(period_view(&month, Some(row)))
}

/// Closes a month without a key (the dashboard's form).
pub async fn close_period(app: &App, p: &Principal, month: &str, body: &ClosePeriod) -> Result<PeriodView, AppError> {
    close(app, p, month, body, None, &super::unkeyed).await
}
