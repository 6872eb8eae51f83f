//! Reconciliation: our ledger against the processor's balance transactions and payouts,
//! the carriers' settlement files and the wardens' declared cash, and the ledger's own
//! integrity. Each run stores its findings as discrepancies with stable ids, which finance
//! resolves with a note.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use iparking_mobile_api::{
    CarrierSection, CashSection, DiscrepancyView, LedgerSection, ProcessorSection, ReconciliationQuery,
    ReconciliationReport,
};

use super::{note_of, out_of_scope, parse_month, reader, visible, wants_csv, writer};
use crate::{
    App,
    app::{Keyed, keyed},
    domain::finance::{self as fin, Csv, DayRange, DiscrepancyStatus},
    error::AppError,
    store::{
        Principal, StoreError,
        drivers::{Answer, IdemClaim},
        finance::{DiscrepancyRow, Finding, ResolveOutcome, RunScope},
    },
};

fn day_str(at: DateTime<Utc>) -> String {
    fin::local_day(at).format("%Y-%m-%d").to_string()
}

/// What one reconciliation run matched, by section (its findings are stored).
pub(super) struct Run {
    processor: ProcessorSection,
    carriers: Vec<CarrierSection>,
    cash: CashSection,
    ledger: LedgerSection,
}

/// A finding of `section` about `subject` on `day`, with what we expected and what was
/// there (`None` where one side has nothing); of no district unless set.
fn finding(
    section: &'static str,
    kind: &'static str,
    subject: String,
    day: String,
    (expected, actual): (Option<i64>, Option<i64>),
    details: serde_json::Value,
) -> Finding {
    Finding {
        section,
        kind,
        subject,
        period: day[..7].to_owned(),
        day,
        district_id: None,
        expected,
        actual,
        details: details.to_string(),
    }
}

/// Matches everything for the range and stores the findings.
pub(super) async fn reconcile(app: &App, range: DayRange, month_run: bool) -> Result<Run, AppError> {
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
                (Some(o.amount), Some(t.amount)),
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
                (Some(o.amount), None),
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
                (None, Some(t.amount)),
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
                (Some(po.amount), Some(0)),
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
                        (Some(section.summary.ledger_total), None),
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
                            (Some(expected), Some(l.net)),
                            serde_json::json!({ "carrier": name, "message_id": s.message_id, "gross": s.amount,
                                "their_gross": l.gross, "their_share": l.share, "line": l.line }),
                        )),
                        None => findings.push(finding(
                            "carrier",
                            "missing_in_settlement",
                            subject,
                            day_str(s.received_at),
                            (Some(expected), None),
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
                            (None, Some(l.net)),
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
        findings.push(Finding {
            district_id: district,
            ..finding(
                "cash",
                "cash_difference",
                format!("shift:{}", s.shift_id),
                day_str(s.closed_at),
                (Some(s.collected), Some(s.declared)),
                serde_json::json!({ "shift_id": s.shift_id, "staff_id": s.staff_id, "warden": s.staff_name }),
            )
        });
    }
    cash.open_shifts = app.store.open_shifts(end).await?;
    for f in app.store.open_flags(start, end).await? {
        let details: serde_json::Value = serde_json::from_str(&f.details).unwrap_or(serde_json::Value::Null);
        findings.push(Finding {
            district_id: f.district_id,
            ..finding(
                "cash",
                "warden_flag",
                format!("flag:{}", f.id),
                day_str(f.created_at),
                (f.amount, None),
                serde_json::json!({ "flag": f.kind, "staff_id": f.staff_id, "flag_details": details }),
            )
        });
    }

    // Ledger integrity.
    let facts = app.store.ledger_facts(start, end).await?;
    for (id, sum, at) in &facts.unbalanced {
        findings.push(finding(
            "ledger",
            "unbalanced_transaction",
            format!("transaction:{id}"),
            day_str(*at),
            (Some(0), Some(*sum)),
            serde_json::json!({ "transaction_id": id }),
        ));
    }
    for (id, balance, sum) in &facts.balance_mismatches {
        findings.push(finding(
            "ledger",
            "balance_mismatch",
            format!("account:{id}"),
            range.to_str(),
            (Some(*sum), Some(*balance)),
            serde_json::json!({ "account_id": id }),
        ));
    }
    for (street, district, revenue, charges) in &facts.street_mismatches {
        findings.push(Finding {
            district_id: Some(*district),
            ..finding(
                "ledger",
                "street_revenue_mismatch",
                format!("street:{street}:{}:{}", range.from_str(), range.to_str()),
                range.from_str(),
                (Some(*charges), Some(*revenue)),
                serde_json::json!({ "street_id": street }),
            )
        });
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

/// A discrepancy as finance reads it.
pub fn discrepancy_view(d: DiscrepancyRow) -> DiscrepancyView {
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
        status: d.status.as_str().to_owned(),
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
        _ => Err(AppError::unprocessable(
            "invalid_period",
            "Cần đúng một trong hai: date=YYYY-MM-DD hoặc month=YYYY-MM.",
            "Give exactly one of date=YYYY-MM-DD or month=YYYY-MM.",
        )),
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
    let mut r = reconcile(app, range, month_run).await?;
    let discrepancies: Vec<DiscrepancyView> = app
        .store
        .discrepancies(&range.from_str(), &range.to_str())
        .await?
        .into_iter()
        .filter(|d| visible(p, d.district_code.as_deref()))
        .map(discrepancy_view)
        .collect();
    let open = |section: &str| {
        discrepancies.iter().filter(|d| d.section == section && d.status == DiscrepancyStatus::Open.as_str()).count()
            as i64
    };
    r.processor.summary.open_discrepancies = open("processor");
    r.cash.summary.open_discrepancies = open("cash");
    r.ledger.open_discrepancies = open("ledger");
    for c in &mut r.carriers {
        c.summary.open_discrepancies = discrepancies
            .iter()
            .filter(|d| {
                d.section == "carrier"
                    && d.status == DiscrepancyStatus::Open.as_str()
                    && d.details["carrier"] == c.carrier.as_str()
            })
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

/// The discrepancies of a month (every month when `None`) with a status: `open` (the
/// default), `resolved`, `cleared` or `all`, in the caller's scope.
pub async fn discrepancies(
    app: &App,
    p: &Principal,
    month: Option<&str>,
    status: Option<&str>,
) -> Result<Vec<DiscrepancyView>, AppError> {
    reader(p)?;
    let (from, to) = match month {
        Some(m) => {
            let range = parse_month(m)?;
            (range.from_str(), range.to_str())
        }
        None => ("0000-01-01".to_owned(), "9999-12-31".to_owned()),
    };
    let status = match status.unwrap_or("open") {
        "all" => None,
        s => Some(DiscrepancyStatus::parse(s).ok_or_else(|| {
            AppError::bad_request(
                "invalid_status",
                "Trạng thái là open, resolved, cleared hoặc all.",
                "The status is open, resolved, cleared or all.",
            )
        })?),
    };
    let rows = app.store.discrepancies(&from, &to).await?;
    Ok(rows
        .into_iter()
        .filter(|d| visible(p, d.district_code.as_deref()) && status.is_none_or(|s| d.status == s))
        .map(discrepancy_view)
        .collect())
}

/// Resolves a discrepancy with a note: who, when and the note are kept (and audited); a
/// warden flag behind it is resolved too. With a key, `answer` is stored with it in the
/// resolution's transaction.
pub async fn resolve(
    app: &App,
    p: &Principal,
    id: i64,
    note: &str,
    idem: Option<&IdemClaim>,
    answer: &Answer<'_, DiscrepancyRow>,
) -> Result<Keyed<DiscrepancyView>, AppError> {
    writer(p)?;
    let note = note_of(note, "invalid_note")?;
    let not_found = || AppError::not_found("discrepancy_not_found", "Không có chênh lệch này.", "No such discrepancy.");
    let d = app.store.discrepancy(id).await?.ok_or_else(not_found)?;
    if !visible(p, d.district_code.as_deref()) {
        return Err(out_of_scope("chênh lệch này"));
    }
    let outcome =
        match keyed(app.store.resolve_discrepancy(id, p.staff_id, &note, idem, answer, app.clock.now()).await)? {
            Keyed::Done(o) => o,
            Keyed::Taken => return Ok(Keyed::Taken),
        };
    match outcome {
        ResolveOutcome::Resolved(row) => {
            tracing::info!(discrepancy.id = id, staff.id = p.staff_id, "discrepancy resolved");
            Ok(Keyed::Done(discrepancy_view(*row)))
        }
        ResolveOutcome::NotFound => Err(not_found()),
        ResolveOutcome::NotOpen(row) if row.status == DiscrepancyStatus::Resolved => Err(AppError::conflict(
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

/// Resolves a discrepancy with a note, without a key (the dashboard's form).
pub async fn resolve_discrepancy(app: &App, p: &Principal, id: i64, note: &str) -> Result<DiscrepancyView, AppError> {
    match resolve(app, p, id, note, None, &super::unkeyed).await? {
        Keyed::Done(v) => Ok(v),
        // Without a key nothing can be taken.
        Keyed::Taken => Err(StoreError::Conflict("idempotency_keys_pkey".into()).into()),
    }
}
