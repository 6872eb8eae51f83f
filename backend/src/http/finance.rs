//! Finance: revenue reports from the ledger, reconciliation, discrepancies, period close,
//! adjustments, carrier settlements and refund requests (`docs/finance.md`).
//!
//! The `pub` functions without an HTTP extractor are the service layer: the JSON routes and
//! the dashboard (`finance_web`) both call them.

use std::collections::{HashMap, HashSet};

use axum::{
    body::{Body, Bytes, to_bytes},
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Duration, Utc};
use iparking_mobile_api::{
    AdjustmentAccount, AdjustmentRequest, AdjustmentView, CarrierSection, CashSection, ClosePeriod, DiscrepancyView,
    ErrorBody, LedgerSection, PeriodView, ProcessorSection, ReconciliationQuery, ReconciliationReport, RefundDecision,
    RefundRequestBody, RefundRequestQuery, RefundRequestView, ResolveDiscrepancy, RevenueChannel, RevenueQuery,
    RevenueReport, RevenueRow, RevenueSums, SettlementQuery, SettlementView, StaffRole, VehicleClass,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use utoipa::IntoParams;

use super::{
    AppState,
    drivers::Driver,
    extract::{Json, Path, Query, Staff},
    idempotency::{Idempotency, answered, rendered},
    input::parse_json,
};
use crate::{
    App,
    app::charges::{sandbox_refunds, submit_refund},
    domain::{
        finance::{self as fin, Csv, DayRange, RangeError},
        ledger::Account,
        money::Vnd,
    },
    error::AppError,
    store::{
        Principal, StoreError,
        drivers::IdemClaim,
        finance::{
            AdjustmentRow, DecideOutcome, DiscrepancyRow, Finding, NewAdjustment, NewClose, NewRefundRequest,
            PeriodRow, RefundRequestRow, RequestOutcome, ResolveOutcome, RevenueDim, RevenueFilter, RunScope,
            SettlementRow,
        },
    },
};

// ---- who may do what -------------------------------------------------------------------

/// Finance staff, or an admin reading.
fn reader(p: &Principal) -> Result<(), AppError> {
    if matches!(p.role, StaffRole::Finance | StaffRole::Admin) {
        Ok(())
    } else {
        Err(AppError::forbidden("Cần quyền tài chính.", "This needs the finance role."))
    }
}

/// Finance staff (any scope).
fn writer(p: &Principal) -> Result<(), AppError> {
    if p.role == StaffRole::Finance {
        Ok(())
    } else {
        Err(AppError::forbidden("Cần quyền tài chính.", "This needs the finance role."))
    }
}

/// City-wide finance staff.
fn city_writer(p: &Principal) -> Result<(), AppError> {
    writer(p)?;
    if p.is_city_wide() {
        Ok(())
    } else {
        Err(AppError::forbidden(
            "Việc này dành cho cán bộ tài chính toàn thành phố.",
            "This is for city-wide finance staff.",
        ))
    }
}

fn out_of_scope(what: &str) -> AppError {
    AppError::new(
        StatusCode::FORBIDDEN,
        "out_of_scope",
        format!("Tài khoản của bạn không quản lý {what}."),
        format!("Your account does not cover {what}."),
    )
}

fn visible(p: &Principal, district_code: Option<&str>) -> bool {
    p.is_city_wide() || district_code.is_some_and(|c| p.district_codes.iter().any(|d| d == c))
}

fn invalid_format() -> AppError {
    AppError::bad_request("invalid_format", "Định dạng là json hoặc csv.", "The format is json or csv.")
}

/// `true` for CSV, `false` for JSON.
/// 400 (unknown) or 422 (repeated) for a revenue dimension.
fn bad_group(name: &str, allowed: &[&str], status: StatusCode) -> AppError {
    AppError::new(
        status,
        "invalid_group",
        format!("Không nhóm được theo `{name}` (không có hoặc bị lặp)."),
        format!("Cannot group by `{name}` (unknown or repeated)."),
    )
    .with_details(serde_json::json!({ "group": name, "allowed": allowed }))
}

fn wants_csv(format: Option<&str>) -> Result<bool, AppError> {
    match format {
        None | Some("") | Some("json") => Ok(false),
        Some("csv") => Ok(true),
        _ => Err(invalid_format()),
    }
}

fn note_of(note: &str, code: &'static str) -> Result<String, AppError> {
    if !crate::domain::city::text_fits(note, 1000) {
        return Err(AppError::bad_request(
            code,
            "Cần ghi chú (1–1000 ký tự).",
            "A note is needed (1–1000 characters).",
        ));
    }
    Ok(crate::domain::city::trim_blank(note).to_owned())
}

fn parse_month(month: &str) -> Result<DayRange, AppError> {
    fin::parse_month(month).ok_or_else(|| {
        AppError::bad_request("invalid_period", "Tháng có dạng YYYY-MM.", "A month is written YYYY-MM.")
            .with_details(serde_json::json!({ "month": month }))
    })
}

// ---- revenue ---------------------------------------------------------------------------

/// The revenue report for a caller (scope applied).
pub async fn revenue_report(app: &App, p: &Principal, q: &RevenueQuery) -> Result<RevenueReport, AppError> {
    reader(p)?;
    let day = |v: &Option<String>, name: &str| {
        v.as_deref().and_then(fin::parse_day).ok_or_else(|| {
            AppError::bad_request(
                "invalid_date",
                format!("Cần ngày `{name}` dạng YYYY-MM-DD."),
                format!("`{name}` must be a day written YYYY-MM-DD."),
            )
        })
    };
    let (from, to) = (day(&q.from, "from")?, day(&q.to, "to")?);
    let range = fin::check_range(from, to).map_err(|e| match e {
        RangeError::Reversed => {
            AppError::unprocessable("invalid_range", "Ngày `to` đứng trước `from`.", "`to` is before `from`.")
        }
        RangeError::TooLong => AppError::unprocessable(
            "invalid_range",
            format!("Khoảng thời gian tối đa {} ngày.", fin::MAX_RANGE_DAYS),
            format!("A report covers at most {} days.", fin::MAX_RANGE_DAYS),
        ),
    })?;
    let mut dims = Vec::new();
    for name in q.group_by.as_deref().unwrap_or("").split(',').map(|s| s.trim_matches(' ')).filter(|s| !s.is_empty()) {
        let allowed: Vec<&str> = RevenueDim::ALL.iter().map(|d| d.as_str()).collect();
        let dim = RevenueDim::parse(name).ok_or_else(|| bad_group(name, &allowed, StatusCode::BAD_REQUEST))?;
        if dims.contains(&dim) {
            // Each dimension well-formed; grouping by one twice is a rule between items (422).
            return Err(bad_group(name, &allowed, StatusCode::UNPROCESSABLE_ENTITY));
        }
        dims.push(dim);
    }
    wants_csv(q.format.as_deref())?;
    let mut districts: Vec<String> = p.district_codes.clone();
    if let Some(code) = q.district.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
        if !app.store.districts().await?.iter().any(|d| d.code == code) {
            return Err(AppError::not_found("district_not_found", "Không có quận này.", "No such district."));
        }
        if !visible(p, Some(code)) {
            return Err(out_of_scope(&format!("quận {code}")));
        }
        districts = vec![code.to_owned()];
    }
    if let Some(street) = q.street {
        let s = app
            .store
            .street(street)
            .await?
            .ok_or_else(|| AppError::not_found("street_not_found", "Không có tuyến phố này.", "No such street."))?;
        if !visible(p, Some(&s.district_code)) {
            return Err(out_of_scope(&format!("quận {}", s.district_code)));
        }
    }
    let filter =
        RevenueFilter { from: range.start(), to: range.end(), dims: dims.clone(), districts, street_id: q.street };
    let raw = app.store.revenue(&filter).await?;
    let mut rows: Vec<RevenueRow> = raw
        .into_iter()
        .map(|r| RevenueRow {
            district_code: r.district_code,
            district_name: r.district_name,
            street_id: r.street_id,
            street_name: r.street_name,
            point_code: r.point_code,
            point_name: r.point_name,
            channel: r.channel.as_deref().and_then(RevenueChannel::parse),
            day: r.day.as_deref().and_then(fin::parse_day),
            vehicle_class: r.vehicle_class.as_deref().and_then(VehicleClass::parse),
            sums: RevenueSums {
                gross: r.gross,
                carrier_share: r.carrier_share,
                net: r.gross - r.carrier_share,
                postings: r.postings,
            },
        })
        .filter(|r| dims.is_empty() || r.sums.postings > 0 || r.sums.gross != 0 || r.sums.carrier_share != 0)
        .collect();
    rows.sort_by(|a, b| {
        for d in &dims {
            let o = match d {
                RevenueDim::District => a.district_code.cmp(&b.district_code),
                RevenueDim::Street => a
                    .district_code
                    .cmp(&b.district_code)
                    .then(a.street_name.cmp(&b.street_name))
                    .then(a.street_id.cmp(&b.street_id)),
                RevenueDim::Point => a.point_code.cmp(&b.point_code),
                RevenueDim::Channel => a.channel.map(|c| c.as_str()).cmp(&b.channel.map(|c| c.as_str())),
                RevenueDim::Day => a.day.cmp(&b.day),
                RevenueDim::VehicleClass => {
                    a.vehicle_class.map(|c| c.as_str()).cmp(&b.vehicle_class.map(|c| c.as_str()))
                }
            };
            if o.is_ne() {
                return o;
            }
        }
        std::cmp::Ordering::Equal
    });
    let totals = rows.iter().fold(RevenueSums::default(), |t, r| RevenueSums {
        gross: t.gross + r.sums.gross,
        carrier_share: t.carrier_share + r.sums.carrier_share,
        net: t.net + r.sums.net,
        postings: t.postings + r.sums.postings,
    });
    Ok(RevenueReport {
        from: range.from,
        to: range.to,
        group_by: dims.iter().map(|d| d.as_str().to_owned()).collect(),
        scope: p.district_codes.clone(),
        rows,
        totals,
    })
}

/// The report as CSV (UTF-8 with BOM).
pub fn revenue_csv(r: &RevenueReport) -> String {
    let mut header: Vec<&str> = Vec::new();
    for g in &r.group_by {
        match g.as_str() {
            "district" => header.extend(["district_code", "district_name"]),
            "street" => header.extend(["street_id", "street_name"]),
            "point" => header.extend(["point_code", "point_name"]),
            other => header.push(match other {
                "channel" => "channel",
                "day" => "day",
                _ => "vehicle_class",
            }),
        }
    }
    header.extend(["gross", "carrier_share", "net", "postings"]);
    let mut csv = Csv::new(&header);
    let sums =
        |s: &RevenueSums| [s.gross.to_string(), s.carrier_share.to_string(), s.net.to_string(), s.postings.to_string()];
    for row in &r.rows {
        let mut f: Vec<String> = Vec::new();
        for g in &r.group_by {
            match g.as_str() {
                "district" => {
                    f.push(row.district_code.clone().unwrap_or_default());
                    f.push(row.district_name.clone().unwrap_or_default());
                }
                "street" => {
                    f.push(row.street_id.map(|i| i.to_string()).unwrap_or_default());
                    f.push(row.street_name.clone().unwrap_or_default());
                }
                "point" => {
                    f.push(row.point_code.clone().unwrap_or_default());
                    f.push(row.point_name.clone().unwrap_or_default());
                }
                "channel" => f.push(row.channel.map(|c| c.as_str().to_owned()).unwrap_or_default()),
                "day" => f.push(row.day.map(|d| d.to_string()).unwrap_or_default()),
                _ => f.push(row.vehicle_class.map(|c| c.as_str().to_owned()).unwrap_or_default()),
            }
        }
        f.extend(sums(&row.sums));
        csv.row(f);
    }
    // A report without dimensions is its total row already.
    if !r.group_by.is_empty() {
        let mut total = vec![String::new(); header.len() - 4];
        total[0] = "TOTAL".into();
        total.extend(sums(&r.totals));
        csv.row(total);
    }
    csv.finish()
}

/// A CSV download: `text/csv; charset=utf-8`, attachment named `filename`.
pub fn csv_response(filename: &str, body: String) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

/// Revenue earned per district, street, point, channel, day or vehicle class (any
/// combination), from the ledger's postings. Finance staff scoped to districts see only
/// theirs. `format=csv` gives a spreadsheet (UTF-8 with BOM).
#[utoipa::path(
    get, path = "/v1/finance/revenue", tag = "finance", params(RevenueQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "The report (JSON, or CSV with format=csv)", body = RevenueReport),
        (status = 400, description = "Bad dates, range, group or format", body = ErrorBody),
        (status = 403, description = "Not finance or admin; a district outside the scope", body = ErrorBody),
        (status = 404, description = "Unknown district or street filter", body = ErrorBody),
    )
)]
pub async fn get_revenue(
    State(app): State<AppState>,
    Staff(p): Staff,
    Query(q): Query<RevenueQuery>,
) -> Result<Response, AppError> {
    let report = revenue_report(&app, &p, &q).await?;
    if wants_csv(q.format.as_deref())? {
        return Ok(csv_response(&format!("revenue-{}-{}.csv", report.from, report.to), revenue_csv(&report)));
    }
    Ok(Json(report).into_response())
}

// ---- reconciliation --------------------------------------------------------------------

fn day_str(at: DateTime<Utc>) -> String {
    fin::local_day(at).format("%Y-%m-%d").to_string()
}

struct Run {
    processor: ProcessorSection,
    carriers: Vec<CarrierSection>,
    cash: CashSection,
    ledger: LedgerSection,
}

#[allow(clippy::too_many_arguments)]
fn finding(
    section: &'static str,
    kind: &'static str,
    subject: String,
    day: String,
    district_id: Option<i64>,
    expected: Option<i64>,
    actual: Option<i64>,
    details: serde_json::Value,
) -> Finding {
    Finding {
        section,
        kind,
        subject,
        period: day[..7].to_owned(),
        day,
        district_id,
        expected,
        actual,
        details: details.to_string(),
    }
}

/// Matches everything for the range and stores the findings.
async fn run(app: &App, range: DayRange, month_run: bool) -> Result<Run, AppError> {
    let (start, end) = (range.start(), range.end());
    let now = app.clock.now();
    let margin = Duration::days(31);
    let mut findings = Vec::new();

    // Processor.
    let ours_all = app.store.processor_items(start - margin, end + margin).await?;
    let theirs_all = app.store.balance_transactions(start - margin, end + margin).await?;
    let money = |k: &str| matches!(k, "charge" | "payment" | "refund" | "payment_refund");
    let theirs_by_source: HashMap<&str, _> =
        theirs_all.iter().filter(|t| money(&t.kind)).filter_map(|t| t.source.as_deref().map(|s| (s, t))).collect();
    let ours_sources: HashSet<&str> = ours_all.iter().filter_map(|o| o.source.as_deref()).collect();
    let mut processor = ProcessorSection::default();
    for o in ours_all.iter().filter(|o| o.at >= start && o.at < end) {
        processor.summary.ledger_total += o.amount;
        let kind = if o.amount < 0 { "refund" } else { "charge" };
        let details = serde_json::json!({ "item": o.kind, "reference": o.reference, "source": o.source });
        match o.source.as_deref().and_then(|s| theirs_by_source.get(s)) {
            Some(t) if t.amount == o.amount => processor.summary.matched += 1,
            Some(t) => findings.push(finding(
                "processor",
                "amount_mismatch",
                format!("{kind}:{}", o.source.as_deref().unwrap_or("")),
                day_str(o.at),
                None,
                Some(o.amount),
                Some(t.amount),
                serde_json::json!({ "item": o.kind, "reference": o.reference, "balance_transaction": t.id }),
            )),
            None => findings.push(finding(
                "processor",
                "missing_at_processor",
                match &o.source {
                    Some(s) => format!("{kind}:{s}"),
                    None => format!("{}:{}", o.kind, o.reference),
                },
                day_str(o.at),
                None,
                Some(o.amount),
                None,
                details,
            )),
        }
    }
    for t in theirs_all.iter().filter(|t| t.created >= start && t.created < end) {
        processor.fees += t.fee;
        if !money(&t.kind) {
            continue;
        }
        processor.summary.external_total += t.amount;
        if !t.source.as_deref().is_some_and(|s| ours_sources.contains(s)) {
            findings.push(finding(
                "processor",
                "missing_in_ledger",
                format!("balance_transaction:{}", t.id),
                day_str(t.created),
                None,
                None,
                Some(t.amount),
                serde_json::json!({ "type": t.kind, "source": t.source }),
            ));
        }
    }
    for po in app.store.payouts(start, end).await? {
        match po.status.as_str() {
            "failed" | "canceled" => findings.push(finding(
                "processor",
                "payout_failed",
                format!("payout:{}", po.id),
                day_str(po.arrival_date),
                None,
                Some(po.amount),
                Some(0),
                serde_json::json!({ "status": po.status }),
            )),
            "paid" => processor.payouts_total += po.amount,
            _ => {}
        }
    }

    // Carriers.
    let sms_all = app.store.sms_charges(start - margin, end + margin).await?;
    let mut names: Vec<String> = app.settings.carriers.iter().map(|c| c.name.clone()).collect();
    for s in &sms_all {
        if !names.contains(&s.carrier) {
            names.push(s.carrier.clone());
        }
    }
    names.sort();
    let month = fin::month_of(range.from);
    let month_range = fin::parse_month(&month).unwrap_or(range);
    let mut carriers = Vec::new();
    for name in names {
        let pct = app.settings.carriers.iter().find(|c| c.name == name).map_or(0, |c| c.share_percent);
        let net_of = |gross: i64| gross - fin::carrier_share(gross, pct);
        let ours: Vec<_> =
            sms_all.iter().filter(|s| s.carrier == name && s.received_at >= start && s.received_at < end).collect();
        let mut section = CarrierSection { carrier: name.clone(), ..CarrierSection::default() };
        section.summary.ledger_total = ours.iter().map(|s| net_of(s.amount)).sum();
        // A day's or a month's reconciliation compares against the month's file (a range
        // spanning months is only ever one month here).
        let file = app.store.settlement(&name, &month).await?;
        match file {
            None => {
                if month_run && now >= month_range.end() && !ours.is_empty() {
                    findings.push(finding(
                        "carrier",
                        "settlement_missing",
                        format!("settlement:{name}:{month}"),
                        month_range.to_str(),
                        None,
                        Some(section.summary.ledger_total),
                        None,
                        serde_json::json!({ "carrier": name, "month": month, "messages": ours.len() }),
                    ));
                }
            }
            Some((_, lines)) => {
                section.settlement_received = true;
                let by_id: HashMap<&str, _> = lines.iter().map(|l| (l.message_id.as_str(), l)).collect();
                let ours_ids: HashSet<&str> =
                    sms_all.iter().filter(|s| s.carrier == name).map(|s| s.message_id.as_str()).collect();
                for s in &ours {
                    let expected = net_of(s.amount);
                    let subject = format!("sms:{name}:{}", s.message_id);
                    match by_id.get(s.message_id.as_str()) {
                        Some(l) if l.net == expected => section.summary.matched += 1,
                        Some(l) => findings.push(finding(
                            "carrier",
                            "amount_mismatch",
                            subject,
                            day_str(s.received_at),
                            None,
                            Some(expected),
                            Some(l.net),
                            serde_json::json!({ "carrier": name, "message_id": s.message_id, "gross": s.amount,
                                "their_gross": l.gross, "their_share": l.share, "line": l.line }),
                        )),
                        None => findings.push(finding(
                            "carrier",
                            "missing_in_settlement",
                            subject,
                            day_str(s.received_at),
                            None,
                            Some(expected),
                            None,
                            serde_json::json!({ "carrier": name, "message_id": s.message_id, "gross": s.amount }),
                        )),
                    }
                }
                for l in lines.iter().filter(|l| l.received_at >= start && l.received_at < end) {
                    section.summary.external_total += l.net;
                    if !ours_ids.contains(l.message_id.as_str()) {
                        findings.push(finding(
                            "carrier",
                            "missing_in_ledger",
                            format!("sms:{name}:{}", l.message_id),
                            day_str(l.received_at),
                            None,
                            None,
                            Some(l.net),
                            serde_json::json!({ "carrier": name, "message_id": l.message_id, "line": l.line }),
                        ));
                    }
                }
            }
        }
        carriers.push(section);
    }

    // Cash.
    let mut cash = CashSection::default();
    for s in app.store.closed_shifts(start, end).await? {
        cash.summary.ledger_total += s.collected;
        cash.summary.external_total += s.declared;
        if s.collected == s.declared {
            cash.summary.matched += 1;
            continue;
        }
        let district = (s.district_ids.len() == 1).then(|| s.district_ids[0]);
        findings.push(finding(
            "cash",
            "cash_difference",
            format!("shift:{}", s.shift_id),
            day_str(s.closed_at),
            district,
            Some(s.collected),
            Some(s.declared),
            serde_json::json!({ "shift_id": s.shift_id, "staff_id": s.staff_id, "warden": s.staff_name }),
        ));
    }
    cash.open_shifts = app.store.open_shifts(end).await?;
    for f in app.store.open_flags(start, end).await? {
        let details: serde_json::Value = serde_json::from_str(&f.details).unwrap_or(serde_json::Value::Null);
        findings.push(finding(
            "cash",
            "warden_flag",
            format!("flag:{}", f.id),
            day_str(f.created_at),
            f.district_id,
            f.amount,
            None,
            serde_json::json!({ "flag": f.kind, "staff_id": f.staff_id, "flag_details": details }),
        ));
    }

    // Ledger integrity.
    let facts = app.store.ledger_facts(start, end).await?;
    for (id, sum, at) in &facts.unbalanced {
        findings.push(finding(
            "ledger",
            "unbalanced_transaction",
            format!("transaction:{id}"),
            day_str(*at),
            None,
            Some(0),
            Some(*sum),
            serde_json::json!({ "transaction_id": id }),
        ));
    }
    for (id, balance, sum) in &facts.balance_mismatches {
        findings.push(finding(
            "ledger",
            "balance_mismatch",
            format!("account:{id}"),
            range.to_str(),
            None,
            Some(*sum),
            Some(*balance),
            serde_json::json!({ "account_id": id }),
        ));
    }
    for (street, district, revenue, charges) in &facts.street_mismatches {
        findings.push(finding(
            "ledger",
            "street_revenue_mismatch",
            format!("street:{street}:{}:{}", range.from_str(), range.to_str()),
            range.from_str(),
            Some(*district),
            Some(*charges),
            Some(*revenue),
            serde_json::json!({ "street_id": street }),
        ));
    }
    let ledger = LedgerSection {
        transactions_balance: facts.unbalanced.is_empty(),
        balances_match_postings: facts.balance_mismatches.is_empty(),
        street_revenue_matches_sessions: facts.street_mismatches.is_empty(),
        open_discrepancies: 0,
    };
    let mut skip_kinds = Vec::new();
    if !month_run {
        skip_kinds.push("settlement_missing");
    }
    let scope = RunScope {
        sections: vec!["processor", "carrier", "cash", "ledger"],
        skip_kinds,
        from_day: range.from_str(),
        to_day: range.to_str(),
    };
    app.store.record_findings(&scope, &findings, now).await?;
    Ok(Run { processor, carriers, cash, ledger })
}

fn discrepancy_view(d: DiscrepancyRow) -> DiscrepancyView {
    DiscrepancyView {
        id: d.id,
        section: d.section,
        kind: d.kind,
        subject: d.subject,
        period: d.period,
        day: fin::parse_day(&d.day).unwrap_or_default(),
        district_code: d.district_code,
        difference: match (d.expected, d.actual) {
            (Some(e), Some(a)) => Some(a - e),
            (Some(e), None) => Some(-e),
            (None, Some(a)) => Some(a),
            (None, None) => None,
        },
        expected: d.expected,
        actual: d.actual,
        details: serde_json::from_str(&d.details).unwrap_or(serde_json::Value::Null),
        status: d.status,
        detected_at: d.detected_at,
        resolved_by: d.resolved_by,
        resolved_at: d.resolved_at,
        resolution_note: d.resolution_note,
    }
}

/// The range of `date=` or `month=` (exactly one), and whether it is a month.
fn recon_range(q: &ReconciliationQuery) -> Result<(DayRange, bool), AppError> {
    let bad = || {
        AppError::bad_request(
            "invalid_period",
            "Cần đúng một trong hai: date=YYYY-MM-DD hoặc month=YYYY-MM.",
            "Give exactly one of date=YYYY-MM-DD or month=YYYY-MM.",
        )
    };
    match (q.date.as_deref(), q.month.as_deref()) {
        (Some(d), None) => {
            let day = fin::parse_day(d).ok_or_else(bad)?;
            Ok((DayRange { from: day, to: day }, false))
        }
        (None, Some(m)) => Ok((fin::parse_month(m).ok_or_else(bad)?, true)),
        // Each well-formed, but not exactly one: a rule between fields (422, docs/decisions/0016).
        _ => Err(AppError { status: StatusCode::UNPROCESSABLE_ENTITY, ..bad() }),
    }
}

/// Runs the reconciliation of a day or month and returns it (scope applied).
pub async fn reconciliation(
    app: &App,
    p: &Principal,
    q: &ReconciliationQuery,
) -> Result<ReconciliationReport, AppError> {
    reader(p)?;
    let (range, month_run) = recon_range(q)?;
    wants_csv(q.format.as_deref())?;
    let mut r = run(app, range, month_run).await?;
    let discrepancies: Vec<DiscrepancyView> = app
        .store
        .discrepancies(&range.from_str(), &range.to_str())
        .await?
        .into_iter()
        .filter(|d| visible(p, d.district_code.as_deref()))
        .map(discrepancy_view)
        .collect();
    let open =
        |section: &str| discrepancies.iter().filter(|d| d.section == section && d.status == "open").count() as i64;
    r.processor.summary.open_discrepancies = open("processor");
    r.cash.summary.open_discrepancies = open("cash");
    r.ledger.open_discrepancies = open("ledger");
    for c in &mut r.carriers {
        c.summary.open_discrepancies = discrepancies
            .iter()
            .filter(|d| d.section == "carrier" && d.status == "open" && d.details["carrier"] == c.carrier.as_str())
            .count() as i64;
    }
    let city = p.is_city_wide();
    let closed = app.store.period(&fin::month_of(range.from)).await?.is_some();
    Ok(ReconciliationReport {
        from: range.from,
        to: range.to,
        scope: p.district_codes.clone(),
        processor: city.then_some(r.processor),
        carriers: if city { r.carriers } else { Vec::new() },
        cash: r.cash,
        ledger: city.then_some(r.ledger),
        discrepancies,
        period_closed: closed && month_run,
    })
}

/// Discrepancies as CSV (UTF-8 with BOM).
pub fn discrepancies_csv(d: &[DiscrepancyView]) -> String {
    let mut csv = Csv::new(&[
        "id",
        "section",
        "kind",
        "subject",
        "period",
        "day",
        "district_code",
        "expected",
        "actual",
        "difference",
        "status",
        "resolved_by",
        "resolved_at",
        "resolution_note",
    ]);
    let num = |v: Option<i64>| v.map(|n| n.to_string()).unwrap_or_default();
    for x in d {
        csv.row([
            x.id.to_string(),
            x.section.clone(),
            x.kind.clone(),
            x.subject.clone(),
            x.period.clone(),
            x.day.to_string(),
            x.district_code.clone().unwrap_or_default(),
            num(x.expected),
            num(x.actual),
            num(x.difference),
            x.status.clone(),
            x.resolved_by.clone().unwrap_or_default(),
            x.resolved_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
            x.resolution_note.clone().unwrap_or_default(),
        ]);
    }
    csv.finish()
}

/// Reconciles a day or a month: our ledger against the processor's balance transactions
/// and payouts, the carriers' settlement files and the wardens' declared cash, and checks
/// the ledger's integrity. Findings are kept as discrepancies with stable ids.
#[utoipa::path(
    get, path = "/v1/finance/reconciliation", tag = "finance", params(ReconciliationQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "The reconciliation (JSON, or the discrepancies as CSV)", body = ReconciliationReport),
        (status = 400, description = "Not exactly one of date or month; bad format", body = ErrorBody),
        (status = 403, description = "Not finance or admin", body = ErrorBody),
    )
)]
pub async fn get_reconciliation(
    State(app): State<AppState>,
    Staff(p): Staff,
    Query(q): Query<ReconciliationQuery>,
) -> Result<Response, AppError> {
    let report = reconciliation(&app, &p, &q).await?;
    if wants_csv(q.format.as_deref())? {
        let name = format!("reconciliation-{}-{}.csv", report.from, report.to);
        return Ok(csv_response(&name, discrepancies_csv(&report.discrepancies)));
    }
    Ok(Json(report).into_response())
}

/// Query of `GET /v1/finance/discrepancies`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DiscrepancyQuery {
    /// `open` (default), `resolved`, `cleared` or `all`.
    pub status: Option<String>,
    /// `YYYY-MM` (default: every month).
    pub month: Option<String>,
}

/// The discrepancies (of a month) as the last reconciliation left them.
#[utoipa::path(
    get, path = "/v1/finance/discrepancies", tag = "finance", params(DiscrepancyQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "Discrepancies", body = Vec<DiscrepancyView>),
        (status = 400, description = "Bad month or status", body = ErrorBody),
        (status = 403, description = "Not finance or admin", body = ErrorBody),
    )
)]
pub async fn list_discrepancies(
    State(app): State<AppState>,
    Staff(p): Staff,
    Query(q): Query<DiscrepancyQuery>,
) -> Result<Json<Vec<DiscrepancyView>>, AppError> {
    reader(&p)?;
    let (from, to) = match q.month.as_deref() {
        Some(m) => {
            let range = parse_month(m)?;
            (range.from_str(), range.to_str())
        }
        None => ("0000-01-01".to_owned(), "9999-12-31".to_owned()),
    };
    let status = q.status.as_deref().unwrap_or("open");
    if !matches!(status, "open" | "resolved" | "cleared" | "all") {
        return Err(AppError::bad_request(
            "invalid_status",
            "Trạng thái là open, resolved, cleared hoặc all.",
            "The status is open, resolved, cleared or all.",
        ));
    }
    let rows = app.store.discrepancies(&from, &to).await?;
    Ok(Json(
        rows.into_iter()
            .filter(|d| visible(&p, d.district_code.as_deref()) && (status == "all" || d.status == status))
            .map(discrepancy_view)
            .collect(),
    ))
}

async fn resolve_inner(
    app: &App,
    p: &Principal,
    id: i64,
    note: &str,
    idem: Option<&IdemClaim>,
) -> Result<DiscrepancyView, AppError> {
    writer(p)?;
    let note = note_of(note, "invalid_note")?;
    let not_found = || AppError::not_found("discrepancy_not_found", "Không có chênh lệch này.", "No such discrepancy.");
    let d = app.store.discrepancy(id).await?.ok_or_else(not_found)?;
    if !visible(p, d.district_code.as_deref()) {
        return Err(out_of_scope("chênh lệch này"));
    }
    // With a key, the answer is stored with it in the resolution's transaction.
    let answer = |row: &DiscrepancyRow| rendered(StatusCode::OK, &discrepancy_view(row.clone()));
    match app.store.resolve_discrepancy(id, p.staff_id, &note, idem, &answer, app.clock.now()).await? {
        ResolveOutcome::Resolved(row) => {
            tracing::info!(discrepancy.id = id, staff.id = p.staff_id, "discrepancy resolved");
            Ok(discrepancy_view(*row))
        }
        ResolveOutcome::NotFound => Err(not_found()),
        ResolveOutcome::NotOpen(row) if row.status == "resolved" => Err(AppError::conflict(
            "already_resolved",
            "Chênh lệch này đã được xử lý.",
            "This discrepancy is already resolved.",
        )
        .with_details(serde_json::json!({ "resolved_by": row.resolved_by, "resolved_at": row.resolved_at }))),
        ResolveOutcome::NotOpen(_) => Err(AppError::conflict(
            "not_open",
            "Chênh lệch này không còn nữa (lần đối soát sau không thấy lại).",
            "This discrepancy is no longer found (a later reconciliation cleared it).",
        )),
    }
}

/// Resolves a discrepancy with a note (audited).
pub async fn resolve_discrepancy(app: &App, p: &Principal, id: i64, note: &str) -> Result<DiscrepancyView, AppError> {
    resolve_inner(app, p, id, note, None).await
}

/// Resolves a discrepancy: who, when and the note are kept (and audited); a warden flag
/// behind it is resolved too. Needs an `Idempotency-Key`.
#[utoipa::path(
    post, path = "/v1/finance/discrepancies/{id}/resolve", tag = "finance", request_body = ResolveDiscrepancy,
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "Discrepancy id"), ("Idempotency-Key" = String, Header, description = "Unique per action")),
    responses(
        (status = 200, description = "Resolved", body = DiscrepancyView),
        (status = 400, description = "No note; missing Idempotency-Key", body = ErrorBody),
        (status = 403, description = "Not finance; another district", body = ErrorBody),
        (status = 404, description = "No such discrepancy", body = ErrorBody),
        (status = 409, description = "Already resolved, or cleared", body = ErrorBody),
    )
)]
pub async fn post_resolve(
    State(app): State<AppState>,
    Staff(p): Staff,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    writer(&p)?;
    let path = format!("/v1/finance/discrepancies/{id}/resolve");
    let idem = Idempotency::from_request(format!("staff:{}", p.staff_id), &headers, "POST", &path, &body)?;
    if let Some(replayed) = idem.replay(&app).await? {
        return Ok(replayed);
    }
    let req: ResolveDiscrepancy = parse_json(&headers, &body)?;
    let view = match resolve_inner(&app, &p, id, &req.note, Some(idem.claim())).await {
        Ok(v) => v,
        Err(e) if e.code == "idempotency_in_progress" => {
            return idem.on_store_error(&app, StoreError::Conflict("idempotency_keys_pkey".into())).await;
        }
        Err(e) => return Err(e),
    };
    answered(rendered(StatusCode::OK, &view))
}

// ---- periods ---------------------------------------------------------------------------

fn period_view(month: &str, row: Option<PeriodRow>) -> PeriodView {
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

fn period_closed() -> AppError {
    AppError::conflict(
        "period_closed",
        "Kỳ kế toán này đã khóa sổ: không thể ghi thêm vào đó.",
        "This accounting period is closed: nothing can be posted into it.",
    )
}

async fn close_inner(
    app: &App,
    p: &Principal,
    month: &str,
    body: &ClosePeriod,
    idem: Option<&IdemClaim>,
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
    run(app, range, true).await?;
    let open: Vec<i64> = app
        .store
        .discrepancies(&range.from_str(), &range.to_str())
        .await?
        .into_iter()
        .filter(|d| d.status == "open")
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
    // With a key, the answer is stored with it in the closing transaction.
    let answer = |row: &PeriodRow| rendered(StatusCode::OK, &period_view(&month, Some(row.clone())));
    let row = app.store.close_period(&close, idem, &answer, now).await.map_err(|e| match e {
        StoreError::Conflict(c) if c == "period_closed" => period_closed(),
        other => other.into(),
    })?;
    tracing::info!(staff.id = p.staff_id, overridden = row.overridden, "period closed");
    Ok(period_view(&month, Some(row)))
}

/// Closes a month (`YYYY-MM`).
pub async fn close_period(app: &App, p: &Principal, month: &str, body: &ClosePeriod) -> Result<PeriodView, AppError> {
    close_inner(app, p, month, body, None).await
}

/// A month: open, or closed (by whom, when, over which discrepancies).
#[utoipa::path(
    get, path = "/v1/finance/periods/{month}", tag = "finance", security(("bearer" = [])),
    params(("month" = String, Path, description = "YYYY-MM")),
    responses(
        (status = 200, description = "The period", body = PeriodView),
        (status = 400, description = "Bad month", body = ErrorBody),
        (status = 403, description = "Not finance or admin", body = ErrorBody),
    )
)]
pub async fn get_period(
    State(app): State<AppState>,
    Staff(p): Staff,
    Path(month): Path<String>,
) -> Result<Json<PeriodView>, AppError> {
    Ok(Json(period(&app, &p, &month).await?))
}

/// Closes a month that has ended: afterwards nothing can be posted into it. Open
/// discrepancies block it unless overridden with a reason (recorded). City-wide finance;
/// needs an `Idempotency-Key`.
#[utoipa::path(
    post, path = "/v1/finance/periods/{month}/close", tag = "finance", request_body = ClosePeriod,
    security(("bearer" = [])),
    params(("month" = String, Path, description = "YYYY-MM"), ("Idempotency-Key" = String, Header, description = "Unique per action")),
    responses(
        (status = 200, description = "Closed", body = PeriodView),
        (status = 400, description = "Bad month; override without a reason", body = ErrorBody),
        (status = 403, description = "Not city-wide finance", body = ErrorBody),
        (status = 409, description = "Not ended, already closed, or open discrepancies", body = ErrorBody),
    )
)]
pub async fn post_close(
    State(app): State<AppState>,
    Staff(p): Staff,
    Path(month): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    city_writer(&p)?;
    let path = format!("/v1/finance/periods/{month}/close");
    let idem = Idempotency::from_request(format!("staff:{}", p.staff_id), &headers, "POST", &path, &body)?;
    if let Some(replayed) = idem.replay(&app).await? {
        return Ok(replayed);
    }
    let req: ClosePeriod =
        if body.iter().all(u8::is_ascii_whitespace) { ClosePeriod::default() } else { parse_json(&headers, &body)? };
    let view = close_inner(&app, &p, &month, &req, Some(idem.claim())).await?;
    answered(rendered(StatusCode::OK, &view))
}

// ---- adjustments -----------------------------------------------------------------------

async fn account_of(app: &App, a: &AdjustmentAccount) -> Result<(Account, Option<i64>), AppError> {
    let bad = || {
        AppError::bad_request(
            "invalid_account",
            "Tài khoản điều chỉnh: point_revenue (kèm point), unapplied_cash, warden_cash (kèm staff_id), cash_office, write_off.",
            "Adjustment accounts: point_revenue (with point), unapplied_cash, warden_cash (with staff_id), cash_office, write_off.",
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
        ("unapplied_cash", None, None) => Ok((Account::unapplied_cash(), None)),
        ("cash_office", None, None) => Ok((Account::cash_office(), None)),
        ("write_off", None, None) => Ok((Account::write_off(), None)),
        _ => Err(bad()),
    }
}

fn adjustment_view(r: AdjustmentRow) -> AdjustmentView {
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

/// Posts a correction between two ledger accounts in an open month (never an edit of a
/// past entry), with reason and author. City-wide finance; needs an `Idempotency-Key`.
#[utoipa::path(
    post, path = "/v1/finance/adjustments", tag = "finance", request_body = AdjustmentRequest,
    security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, description = "Unique per adjustment")),
    responses(
        (status = 201, description = "Posted", body = AdjustmentView),
        (status = 400, description = "Bad account, amount, reason or period", body = ErrorBody),
        (status = 403, description = "Not city-wide finance", body = ErrorBody),
        (status = 404, description = "Unknown point, staff member or discrepancy", body = ErrorBody),
        (status = 409, description = "The month is closed", body = ErrorBody),
    )
)]
pub async fn post_adjustment(
    State(app): State<AppState>,
    Staff(p): Staff,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    city_writer(&p)?;
    let idem =
        Idempotency::from_request(format!("staff:{}", p.staff_id), &headers, "POST", "/v1/finance/adjustments", &body)?;
    if let Some(replayed) = idem.replay(&app).await? {
        return Ok(replayed);
    }
    let req: AdjustmentRequest = parse_json(&headers, &body)?;
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
    let (debit, dp) = account_of(&app, &req.debit).await?;
    let (credit, cp) = account_of(&app, &req.credit).await?;
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
    // The answer is rendered inside the adjustment's transaction and stored with its key
    // there: a crash after the commit leaves the key answered.
    let answer = |row: &AdjustmentRow| rendered(StatusCode::CREATED, &adjustment_view(row.clone()));
    let row = match app.store.post_adjustment(&adj, Some(idem.claim()), &answer, now).await {
        Ok(r) => r,
        Err(StoreError::Conflict(c)) if c == "period_closed" => return Err(period_closed()),
        Err(e) => return idem.on_store_error(&app, e).await,
    };
    tracing::info!(staff.id = p.staff_id, adjustment.id = row.id, amount_vnd = row.amount, "adjustment posted");
    answered(answer(&row))
}

/// Query with a month.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MonthQuery {
    /// `YYYY-MM`.
    pub month: String,
}

/// The adjustments booked in a month, in the caller's scope: staff scoped to districts see
/// only the adjustments of their districts (those moving a point's revenue there, or
/// correcting one of their discrepancies); city-wide ones only city-wide staff.
#[utoipa::path(
    get, path = "/v1/finance/adjustments", tag = "finance", params(MonthQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "Adjustments", body = Vec<AdjustmentView>),
        (status = 400, description = "Bad month", body = ErrorBody),
        (status = 403, description = "Not finance or admin", body = ErrorBody),
    )
)]
pub async fn list_adjustments(
    State(app): State<AppState>,
    Staff(p): Staff,
    Query(q): Query<MonthQuery>,
) -> Result<Json<Vec<AdjustmentView>>, AppError> {
    reader(&p)?;
    let range = parse_month(&q.month)?;
    let rows = app.store.adjustments(&fin::month_of(range.from)).await?;
    Ok(Json(rows.into_iter().filter(|r| visible(&p, r.district_code.as_deref())).map(adjustment_view).collect()))
}

// ---- carrier settlements ---------------------------------------------------------------

fn settlement_view(r: SettlementRow) -> SettlementView {
    SettlementView {
        id: r.id,
        carrier: r.carrier,
        month: r.month,
        lines: r.lines,
        gross: r.gross,
        share: r.share,
        net: r.net,
        replaces: r.replaces,
        uploaded_by: r.uploaded_by,
        uploaded_at: r.uploaded_at,
    }
}

/// The most a settlement file may weigh.
const SETTLEMENT_LIMIT: usize = 5 * 1024 * 1024;

/// Uploads a carrier's monthly settlement file (CSV: `message_id,received_at,gross,share,net`).
/// Every line is validated; one bad line refuses the file and every problem is listed. A
/// new file for the same month replaces the earlier one. City-wide finance; needs an
/// `Idempotency-Key`.
#[utoipa::path(
    post, path = "/v1/finance/carriers/{carrier}/settlements", tag = "finance", params(SettlementQuery,
        ("carrier" = String, Path, description = "Carrier name"),
        ("Idempotency-Key" = String, Header, description = "Unique per upload")),
    request_body(content = String, content_type = "text/csv", description = "The settlement file"),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Stored", body = SettlementView),
        (status = 400, description = "Bad month; missing Idempotency-Key", body = ErrorBody),
        (status = 403, description = "Not city-wide finance", body = ErrorBody),
        (status = 404, description = "Unknown carrier", body = ErrorBody),
        (status = 413, description = "Over 5 MB", body = ErrorBody),
        (status = 422, description = "Bad lines (details.lines: line, column, message)", body = ErrorBody),
    )
)]
pub async fn post_settlement(
    State(app): State<AppState>,
    Staff(p): Staff,
    Path(carrier): Path<String>,
    Query(q): Query<SettlementQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    city_writer(&p)?;
    let bytes = to_bytes(body, SETTLEMENT_LIMIT).await.map_err(|_| {
        AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "Tệp quá lớn (tối đa 5 MB).",
            "The file is too large (at most 5 MB).",
        )
    })?;
    let path = format!("/v1/finance/carriers/{carrier}/settlements?month={}", q.month);
    let idem = Idempotency::from_request(format!("staff:{}", p.staff_id), &headers, "POST", &path, &bytes)?;
    if let Some(replayed) = idem.replay(&app).await? {
        return Ok(replayed);
    }
    if !app.settings.carriers.iter().any(|c| c.name == carrier) {
        return Err(AppError::not_found("carrier_not_found", "Không có nhà mạng này.", "No such carrier."));
    }
    let range = parse_month(&q.month)?;
    let month = fin::month_of(range.from);
    let lines = fin::parse_settlement(&bytes, &range).map_err(|errors| {
        AppError::unprocessable(
            "invalid_settlement",
            format!("Tệp đối soát có {} lỗi; không lưu gì.", errors.len()),
            format!("The settlement file has {} problems; nothing was stored.", errors.len()),
        )
        .with_details(serde_json::json!({ "lines": errors }))
    })?;
    let sha = hex::encode(Sha256::digest(&bytes));
    let now = app.clock.now();
    let answer = |row: &SettlementRow| rendered(StatusCode::CREATED, &settlement_view(row.clone()));
    let row = match app
        .store
        .store_settlement(&carrier, &month, &lines, &sha, p.staff_id, Some(idem.claim()), &answer, now)
        .await
    {
        Ok(r) => r,
        Err(e) => return idem.on_store_error(&app, e).await,
    };
    tracing::info!(staff.id = p.staff_id, settlement.id = row.id, lines = row.lines, "carrier settlement stored");
    answered(answer(&row))
}

// ---- refund requests -------------------------------------------------------------------

fn request_view(r: RefundRequestRow) -> RefundRequestView {
    RefundRequestView {
        id: r.id,
        kind: r.kind,
        amount: r.amount,
        session_id: r.session_id,
        district_code: r.district_code,
        reason: r.reason,
        status: r.status,
        decided_by: r.decided_by,
        decided_at: r.decided_at,
        decision_note: r.decision_note,
        refund_ids: r.refund_ids,
        to_wallet: r.to_wallet,
        to_cards: r.to_cards,
        created_at: r.created_at,
    }
}

/// Asks finance for a refund: the wallet's unused balance (back to the cards it came from)
/// or a disputed session. Wallet money is held at once. Needs an `Idempotency-Key`.
#[utoipa::path(
    post, path = "/v1/me/refund-requests", tag = "drivers", request_body = RefundRequestBody,
    security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, description = "Unique per request")),
    responses(
        (status = 201, description = "Waiting for finance", body = RefundRequestView),
        (status = 400, description = "Bad kind, amount or reason; missing Idempotency-Key", body = ErrorBody),
        (status = 404, description = "No such session of yours", body = ErrorBody),
        (status = 409, description = "The session already has a pending request", body = ErrorBody),
        (status = 422, description = "More than can be refunded; not refundable this way", body = ErrorBody),
    )
)]
pub async fn create_refund_request(
    State(app): State<AppState>,
    Driver(d): Driver,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let idem = match Idempotency::for_driver(&app, d.driver_id, &headers, "/v1/me/refund-requests", &body).await? {
        Ok(i) => i,
        Err(replayed) => return Ok(replayed),
    };
    let req: RefundRequestBody = parse_json(&headers, &body)?;
    let reason = crate::domain::city::trim_blank(&req.reason);
    if !crate::domain::city::text_fits(&req.reason, 500) {
        return Err(AppError::bad_request(
            "invalid_reason",
            "Cần lý do (1–500 ký tự).",
            "Give a reason (1–500 characters).",
        ));
    }
    if req.amount.is_some_and(|a| a <= 0) {
        return Err(AppError::bad_request(
            "invalid_amount",
            "Số tiền hoàn phải là số nguyên dương (đồng).",
            "A refund must be a positive whole number of đồng.",
        ));
    }
    match (req.kind.as_str(), req.session_id) {
        ("wallet_balance", None) | ("session", Some(_)) => {}
        _ => {
            return Err(AppError::bad_request(
                "invalid_kind",
                "Loại yêu cầu: wallet_balance (không kèm session_id) hoặc session (kèm session_id).",
                "The kind is wallet_balance (without session_id) or session (with session_id).",
            ));
        }
    }
    let new = NewRefundRequest {
        driver_id: d.driver_id,
        kind: req.kind.clone(),
        session_id: req.session_id,
        amount: req.amount.map(Vnd),
        reason: reason.to_owned(),
        sandbox: sandbox_refunds(&app),
    };
    // The answer is rendered inside the transaction that holds the money and stored with
    // its key there.
    let answer = |row: &RefundRequestRow| rendered(StatusCode::CREATED, &request_view(row.clone()));
    let outcome = match app.store.create_refund_request(&new, Some(idem.claim()), &answer, app.clock.now()).await {
        Ok(o) => o,
        Err(e) => return idem.on_store_error(&app, e).await,
    };
    match outcome {
        RequestOutcome::Created(row) => {
            tracing::info!(driver.id = d.driver_id, request.id = row.id, amount_vnd = row.amount, "refund requested");
            answered(answer(&row))
        }
        RequestOutcome::SessionNotFound => {
            Err(AppError::not_found("session_not_found", "Không tìm thấy lượt đỗ này.", "No such parking session."))
        }
        RequestOutcome::TooLarge(most) => Err(AppError::unprocessable(
            if req.kind == "session" { "exceeds_refundable" } else { "insufficient_balance" },
            format!("Chỉ hoàn được tối đa {} đồng.", most.get()),
            format!("At most {} đồng can be refunded.", most.get()),
        )
        .with_details(serde_json::json!({ "refundable": most.get() }))),
        RequestOutcome::NotRefundable => Err(AppError::unprocessable(
            "not_refundable",
            "Khoản này không hoàn được qua ứng dụng (SMS, tiền mặt, hoặc không còn gì để hoàn).",
            "This cannot be refunded through the app (SMS, cash, or nothing left to refund).",
        )),
    }
}

/// The driver's refund requests.
#[utoipa::path(
    get, path = "/v1/me/refund-requests", tag = "drivers", security(("bearer" = [])),
    responses((status = 200, description = "Requests, oldest first", body = Vec<RefundRequestView>))
)]
pub async fn my_refund_requests(
    State(app): State<AppState>,
    Driver(d): Driver,
) -> Result<Json<Vec<RefundRequestView>>, AppError> {
    let rows = app.store.refund_requests(Some(d.driver_id), None).await?;
    Ok(Json(rows.into_iter().map(request_view).collect()))
}

fn request_visible(p: &Principal, r: &RefundRequestRow) -> bool {
    p.is_city_wide() || (r.kind == "session" && visible(p, r.district_code.as_deref()))
}

/// Refund requests waiting for (or decided by) finance, in the caller's scope.
#[utoipa::path(
    get, path = "/v1/finance/refund-requests", tag = "finance", params(RefundRequestQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "Requests, oldest first", body = Vec<RefundRequestView>),
        (status = 400, description = "Bad status", body = ErrorBody),
        (status = 403, description = "Not finance or admin", body = ErrorBody),
    )
)]
pub async fn list_refund_requests(
    State(app): State<AppState>,
    Staff(p): Staff,
    Query(q): Query<RefundRequestQuery>,
) -> Result<Json<Vec<RefundRequestView>>, AppError> {
    reader(&p)?;
    let status = match q.status.as_deref().unwrap_or("pending") {
        "all" => None,
        s @ ("pending" | "approved" | "rejected") => Some(s),
        _ => {
            return Err(AppError::bad_request(
                "invalid_status",
                "Trạng thái là pending, approved, rejected hoặc all.",
                "The status is pending, approved, rejected or all.",
            ));
        }
    };
    let rows = app.store.refund_requests(None, status).await?;
    Ok(Json(rows.into_iter().filter(|r| request_visible(&p, r)).map(request_view).collect()))
}

async fn decide(
    app: &AppState,
    p: &Principal,
    id: i64,
    approve: bool,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, AppError> {
    writer(p)?;
    let path = format!("/v1/finance/refund-requests/{id}/{}", if approve { "approve" } else { "reject" });
    let idem = Idempotency::from_request(format!("staff:{}", p.staff_id), headers, "POST", &path, body)?;
    if let Some(replayed) = idem.replay(app).await? {
        return Ok(replayed);
    }
    let req: RefundDecision = parse_json(headers, body)?;
    let note = note_of(&req.note, "invalid_note")?;
    let not_found =
        || AppError::not_found("refund_request_not_found", "Không có yêu cầu này.", "No such refund request.");
    let r = app.store.refund_request(id).await?.ok_or_else(not_found)?;
    if !request_visible(p, &r) {
        return Err(out_of_scope("yêu cầu này"));
    }
    // The answer (the request as decided; card refunds are submitted afterwards and do not
    // change it) is rendered inside the decision's transaction and stored with its key.
    let answer = |row: &RefundRequestRow| rendered(StatusCode::OK, &request_view(row.clone()));
    let outcome = match app
        .store
        .decide_refund_request(
            id,
            approve,
            p.staff_id,
            &note,
            sandbox_refunds(app),
            Some(idem.claim()),
            &answer,
            app.clock.now(),
        )
        .await
    {
        Ok(o) => o,
        Err(e) => return idem.on_store_error(app, e).await,
    };
    match outcome {
        DecideOutcome::Decided(row, refunds) => {
            for r in &refunds {
                submit_refund(app, r.id).await;
            }
            tracing::info!(request.id = id, staff.id = p.staff_id, approve, "refund request decided");
            answered(answer(&row))
        }
        DecideOutcome::NotFound => Err(not_found()),
        DecideOutcome::AlreadyDecided(row) => Err(AppError::conflict(
            "already_decided",
            "Yêu cầu này đã được quyết định.",
            "This request has already been decided.",
        )
        .with_details(serde_json::json!({ "status": row.status, "decided_by": row.decided_by }))),
    }
}

/// Approves a refund request: the money goes back through the channel it came from (cards
/// through the processor; wallet-paid turns to the wallet). Needs an `Idempotency-Key`.
#[utoipa::path(
    post, path = "/v1/finance/refund-requests/{id}/approve", tag = "finance", request_body = RefundDecision,
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "Request id"), ("Idempotency-Key" = String, Header, description = "Unique per decision")),
    responses(
        (status = 200, description = "Approved; processor refunds under way", body = RefundRequestView),
        (status = 400, description = "No note; missing Idempotency-Key", body = ErrorBody),
        (status = 403, description = "Not finance; another district", body = ErrorBody),
        (status = 404, description = "No such request", body = ErrorBody),
        (status = 409, description = "Already decided", body = ErrorBody),
    )
)]
pub async fn approve_refund_request(
    State(app): State<AppState>,
    Staff(p): Staff,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    decide(&app, &p, id, true, &headers, &body).await
}

/// Rejects a refund request: held wallet money goes back to the wallet. Needs an
/// `Idempotency-Key`.
#[utoipa::path(
    post, path = "/v1/finance/refund-requests/{id}/reject", tag = "finance", request_body = RefundDecision,
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "Request id"), ("Idempotency-Key" = String, Header, description = "Unique per decision")),
    responses(
        (status = 200, description = "Rejected", body = RefundRequestView),
        (status = 400, description = "No note; missing Idempotency-Key", body = ErrorBody),
        (status = 403, description = "Not finance; another district", body = ErrorBody),
        (status = 404, description = "No such request", body = ErrorBody),
        (status = 409, description = "Already decided", body = ErrorBody),
    )
)]
pub async fn reject_refund_request(
    State(app): State<AppState>,
    Staff(p): Staff,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    decide(&app, &p, id, false, &headers, &body).await
}

// ---- audit -----------------------------------------------------------------------------

/// One finance action.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct AuditView {
    /// Id.
    pub id: i64,
    /// Staff id.
    pub staff_id: i64,
    /// Staff name.
    pub staff_name: String,
    /// `carrier_settlement`, `resolve_discrepancy`, `adjustment`, `close_period`,
    /// `approve_refund`, `reject_refund`.
    pub action: String,
    /// What it was about.
    pub subject: String,
    /// Facts.
    pub details: serde_json::Value,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// The finance actions of a month. City-wide finance.
#[utoipa::path(
    get, path = "/v1/finance/audit", tag = "finance", params(MonthQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "Audit rows, oldest first", body = Vec<AuditView>),
        (status = 400, description = "Bad month", body = ErrorBody),
        (status = 403, description = "Not city-wide finance", body = ErrorBody),
    )
)]
pub async fn list_audit(
    State(app): State<AppState>,
    Staff(p): Staff,
    Query(q): Query<MonthQuery>,
) -> Result<Json<Vec<AuditView>>, AppError> {
    city_writer(&p)?;
    let range = parse_month(&q.month)?;
    let rows = app.store.audit(range.start(), range.end()).await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| AuditView {
                id: r.id,
                staff_id: r.staff_id,
                staff_name: r.staff_name,
                action: r.action,
                subject: r.subject,
                details: serde_json::from_str(&r.details).unwrap_or(serde_json::Value::Null),
                created_at: r.created_at,
            })
            .collect(),
    ))
}
