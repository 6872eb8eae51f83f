//! Adjustments: a correction between two ledger accounts, posted in an open month (never an
//! edit of a past entry), with its reason and author.

use chrono::Duration;
use iparking_mobile_api::{AdjustmentAccount, AdjustmentRequest, AdjustmentView};

use super::{city_writer, note_of, parse_month, period_closed, reader, visible};
use crate::{
    App,
    app::{Keyed, keyed},
    domain::{finance as fin, ledger::Account, money::Vnd},
    error::AppError,
    store::{
        Principal, StoreError,
        drivers::{Answer, IdemClaim},
        finance::{AdjustmentRow, NewAdjustment},
    },
};

/// The ledger account an adjustment names, and its point if it is a point's revenue.
async fn account_of(app: &App, a: &AdjustmentAccount) -> Result<(Account, Option<i64>), AppError> {
    let bad = || {
        AppError::bad_request(
            "invalid_account",
            "Tài khoản điều chỉnh: point_revenue (kèm point), unapplied_cash, warden_cash hoặc warden_float (kèm staff_id), cash_office, write_off.",
            "Adjustment accounts: point_revenue (with point), unapplied_cash, warden_cash or warden_float (with staff_id), cash_office, write_off.",
        )
    };
    match (a.kind.as_str(), a.point.as_deref(), a.staff_id) {
        ("point_revenue", Some(code), None) => {
            let point = app.store.point(code.trim()).await?.ok_or_else(|| {
                AppError::not_found("point_not_found", "Không có điểm đỗ này.", "No such parking point.")
            })?;
            Ok((Account::point_revenue(point.id), Some(point.id)))
        }
        ("warden_cash", None, Some(staff)) => {
            if !app.store.is_warden(staff).await? {
                return Err(AppError::not_found("staff_not_found", "Không có warden này.", "No such warden."));
            }
            Ok((Account::warden_cash(staff), None))
        }
        // A warden's float: finance tops it up from the cash office (the warden handed the
        // money over), or pays it back.
        ("warden_float", None, Some(staff)) => {
            if !app.store.is_warden(staff).await? {
                return Err(AppError::not_found("staff_not_found", "Không có warden này.", "No such warden."));
            }
            Ok((Account::warden_float(staff), None))
        }
        ("unapplied_cash", None, None) => Ok((Account::unapplied_cash(), None)),
        ("cash_office", None, None) => Ok((Account::cash_office(), None)),
        ("write_off", None, None) => Ok((Account::write_off(), None)),
        _ => Err(bad()),
    }
}

/// An adjustment as finance reads it.
pub fn adjustment_view(r: AdjustmentRow) -> AdjustmentView {
    let side = |s: &str| {
        serde_json::from_str(s).unwrap_or(AdjustmentAccount { kind: String::new(), point: None, staff_id: None })
    };
    AdjustmentView {
        id: r.id,
        transaction_id: r.transaction_id,
        period: r.period,
        debit: side(&r.debit_json),
        credit: side(&r.credit_json),
        amount: r.amount,
        reason: r.reason,
        author: r.author,
        discrepancy_id: r.discrepancy_id,
        created_at: r.created_at,
        district_code: r.district_code,
    }
}

/// Posts an adjustment (city-wide finance): `answer` is rendered inside its transaction and
/// stored with the key there, so a crash after the commit leaves the key answered.
pub async fn adjust(
    app: &App,
    p: &Principal,
    req: &AdjustmentRequest,
    idem: &IdemClaim,
    answer: &Answer<'_, AdjustmentRow>,
) -> Result<Keyed<AdjustmentView>, AppError> {
    city_writer(p)?;
    if req.amount <= 0 || req.amount > 10_000_000_000 {
        return Err(AppError::bad_request(
            "invalid_amount",
            "Số tiền phải là số nguyên dương (đồng).",
            "The amount must be a positive whole number of đồng.",
        ));
    }
    let reason = note_of(&req.reason, "invalid_reason")?;
    if req.debit == req.credit {
        // Each side well-formed, the pair not: a rule between fields (422).
        return Err(AppError::unprocessable(
            "invalid_account",
            "Hai tài khoản phải khác nhau.",
            "The two accounts must differ.",
        ));
    }
    let (debit, dp) = account_of(app, &req.debit).await?;
    let (credit, cp) = account_of(app, &req.credit).await?;
    let now = app.clock.now();
    let current = fin::month_of(fin::local_day(now));
    let period = req.period.clone().unwrap_or_else(|| current.clone());
    let range = parse_month(&period)?;
    let period = fin::month_of(range.from);
    let booked_at = if period == current {
        now
    } else if period < current {
        range.end() - Duration::seconds(1)
    } else {
        return Err(AppError::bad_request(
            "invalid_period",
            "Không điều chỉnh vào tháng chưa tới.",
            "Adjustments cannot be booked into a future month.",
        ));
    };
    if app.store.period(&period).await?.is_some() {
        return Err(period_closed());
    }
    if let Some(d) = req.discrepancy_id
        && app.store.discrepancy(d).await?.is_none()
    {
        return Err(AppError::not_found("discrepancy_not_found", "Không có chênh lệch này.", "No such discrepancy."));
    }
    let adj = NewAdjustment {
        debit,
        credit,
        point_id: dp.or(cp),
        debit_json: serde_json::to_string(&req.debit).unwrap_or_default(),
        credit_json: serde_json::to_string(&req.credit).unwrap_or_default(),
        amount: Vnd(req.amount),
        reason,
        author_id: p.staff_id,
        period,
        booked_at,
        discrepancy_id: req.discrepancy_id,
    };
    let posted = match app.store.post_adjustment(&adj, Some(idem), answer, now).await {
        Err(StoreError::Conflict(c)) if c == "period_closed" => return Err(period_closed()),
        Err(StoreError::Conflict(c)) if c == "balance_short" => {
            return Err(AppError::unprocessable(
                "insufficient_balance",
                "Tài khoản bị ghi nợ không đủ số dư (ví hoặc tài khoản nhân viên không được âm).",
                "The debited account does not hold enough (a wallet or a warden's float never goes below zero).",
            ));
        }
        other => other,
    };
    let row = match keyed(posted)? {
        Keyed::Done(r) => r,
        Keyed::Taken => return Ok(Keyed::Taken),
    };
    tracing::info!(staff.id = p.staff_id, adjustment.id = row.id, amount_vnd = row.amount, "adjustment posted");
    Ok(Keyed::Done(adjustment_view(row)))
}

/// The adjustments booked in a month, in the caller's scope: staff scoped to districts see
/// only the adjustments of their districts (those moving a point's revenue there, or
/// correcting one of their discrepancies); city-wide ones only city-wide staff.
pub async fn adjustments(app: &App, p: &Principal, month: &str) -> Result<Vec<AdjustmentView>, AppError> {
    reader(p)?;
    let range = parse_month(month)?;
    let rows = app.store.adjustments(&fin::month_of(range.from)).await?;
    Ok(rows.into_iter().filter(|r| visible(p, r.district_code.as_deref())).map(adjustment_view).collect())
}
