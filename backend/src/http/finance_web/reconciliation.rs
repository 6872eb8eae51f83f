//! Reconciliation: the month's sections (card processor, carriers, cash, ledger) and its
//! discrepancies, each open one with a resolve form; and their CSV download.

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, Uri},
    response::Response,
};
use iparking_mobile_api::{DiscrepancyView, MatchSummary, ReconciliationQuery, ReconciliationReport, StaffRole};
use maud::{Markup, html};
use serde::Deserialize;

use super::{
    access::{read_only, require_user, require_user_back},
    labels::{Lang, Month, group_thousands, kind_label, money, money_opt, section_label, status_label},
    request::{Ctx, MonthQuery, current_month, month_param},
    views::{Flash, error_flash, flash, layout, month_nav, scope_note},
};
use crate::{
    App,
    app::finance::reconciliation::{discrepancies_csv, reconciliation, resolve_discrepancy},
    error::AppError,
    http::{AppState, csv::csv_response},
    store::Principal,
};

/// The query of the reconciliation page.
#[derive(Deserialize)]
struct ReconciliationPageQuery {
    /// `YYYY-MM`; none or empty: this month.
    month: Option<String>,
    /// The discrepancy just resolved (its id), to say so.
    resolved: Option<String>,
}

/// The resolve form of a discrepancy.
#[derive(Deserialize)]
struct ResolveForm {
    /// The month of the page the form is on (`YYYY-MM`).
    month: Option<String>,
    /// How it was resolved.
    #[serde(default)]
    note: String,
}

fn summary_rows(ctx: &Ctx, s: &MatchSummary, ours: &str, theirs: &str) -> Markup {
    html! {
        tr { th { (ctx.t("Khớp", "Matched")) } td class="num" { (group_thousands(s.matched)) } }
        tr { th { (ours) } td class="num" { (money(s.ledger_total)) } }
        tr { th { (theirs) } td class="num" { (money(s.external_total)) } }
        tr { th { (ctx.t("Chênh lệch", "Difference")) } td class="num" { (money(s.external_total - s.ledger_total)) } }
        tr {
            th { (ctx.t("Sai lệch chưa xử lý", "Open discrepancies")) }
            td class="num" { (group_thousands(s.open_discrepancies)) }
        }
    }
}

fn yes_no(ctx: &Ctx, v: bool) -> Markup {
    html! {
        @if v {
            span class="ok" { (ctx.t("Đúng", "Yes")) }
        } @else {
            span class="bad" { (ctx.t("Không", "No")) }
        }
    }
}

fn discrepancy_row(ctx: &Ctx, d: &DiscrepancyView, month: Month, can_act: bool) -> Markup {
    let has_details = !d.details.is_null() && d.details != serde_json::json!({});
    html! {
        tr id={ "d-" (d.id) } class={ "status-" (d.status) } {
            td { (d.id) }
            td { (section_label(&d.section, ctx.lang)) }
            td { (kind_label(&d.kind, ctx.lang)) }
            td {
                code { (d.subject) }
                @if has_details {
                    details {
                        summary { (ctx.t("Chi tiết", "Details")) }
                        pre { (serde_json::to_string_pretty(&d.details).unwrap_or_default()) }
                    }
                }
            }
            td { (ctx.lang.day(d.day)) }
            td { (d.district_code.as_deref().unwrap_or("—")) }
            td class="num" { (money_opt(d.expected)) }
            td class="num" { (money_opt(d.actual)) }
            td class="num diff" { (money_opt(d.difference)) }
            td class="status" { span class={ "badge " (d.status) } { (status_label(&d.status, ctx.lang)) } }
            td {
                @if d.status == "open" && can_act {
                    form method="post" action={ "/finance/discrepancies/" (d.id) "/resolve" } class="resolve" {
                        input type="hidden" name="month" value=(month.key());
                        label {
                            (ctx.t("Ghi chú xử lý", "Resolution note"))
                            textarea name="note" required maxlength="1000" rows="2" {}
                        }
                        button type="submit" { (ctx.t("Xác nhận đã xử lý", "Mark resolved")) }
                    }
                } @else if d.status == "resolved" {
                    p class="resolution" {
                        span class="by" { (d.resolved_by.as_deref().unwrap_or("—")) }
                        " · "
                        span class="at" { (d.resolved_at.map(|t| ctx.lang.time(t)).unwrap_or_default()) }
                    }
                    p class="note" { (d.resolution_note.as_deref().unwrap_or("")) }
                }
            }
        }
    }
}

/// The four sections: card processor, carriers, cash, ledger.
fn sections(ctx: &Ctx, r: &ReconciliationReport) -> Markup {
    html! {
        div class="sections" {
            @if let Some(proc_) = &r.processor {
                section class="card" id="sec-processor" {
                    h2 { (ctx.t("Cổng thanh toán thẻ (Stripe)", "Card processor (Stripe)")) }
                    table class="kv" {
                        (summary_rows(ctx, &proc_.summary, ctx.t("Sổ sách", "Our books"), ctx.t("Stripe ghi nhận", "Stripe")))
                        tr { th { (ctx.t("Phí Stripe", "Stripe fees")) } td class="num" { (money(proc_.fees)) } }
                        tr {
                            th { (ctx.t("Đã chuyển về ngân hàng", "Paid out")) }
                            td class="num" { (money(proc_.payouts_total)) }
                        }
                    }
                }
            }
            @for c in &r.carriers {
                section class="card" id={ "sec-carrier-" (c.carrier) } {
                    h2 { (ctx.t("Nhà mạng", "Carrier")) " " (c.carrier) }
                    p {
                        @if c.settlement_received {
                            (ctx.t("Đã nhận file đối soát.", "Settlement file received."))
                        } @else {
                            span class="bad" { (ctx.t("Chưa có file đối soát.", "No settlement file.")) }
                        }
                    }
                    table class="kv" {
                        (summary_rows(
                            ctx,
                            &c.summary,
                            ctx.t("Sổ sách (thực thu)", "Our books (net)"),
                            ctx.t("Nhà mạng báo", "Carrier"),
                        ))
                    }
                }
            }
            section class="card" id="sec-cash" {
                h2 { (ctx.t("Tiền mặt (ca trực)", "Cash (warden shifts)")) }
                table class="kv" {
                    (summary_rows(
                        ctx,
                        &r.cash.summary,
                        ctx.t("Đã thu theo biên lai", "Collected (slips)"),
                        ctx.t("Đã nộp", "Declared"),
                    ))
                    tr {
                        th { (ctx.t("Ca chưa đóng", "Shifts still open")) }
                        td class="num" { (group_thousands(r.cash.open_shifts)) }
                    }
                }
            }
            @if let Some(l) = &r.ledger {
                section class="card" id="sec-ledger" {
                    h2 { (ctx.t("Toàn vẹn sổ cái", "Ledger integrity")) }
                    table class="kv" {
                        tr {
                            th { (ctx.t("Mọi bút toán cân", "Every transaction balances")) }
                            td { (yes_no(ctx, l.transactions_balance)) }
                        }
                        tr {
                            th { (ctx.t("Số dư khớp bút toán", "Balances match postings")) }
                            td { (yes_no(ctx, l.balances_match_postings)) }
                        }
                        tr {
                            th { (ctx.t("Doanh thu tuyến phố khớp lượt đỗ", "Street revenue matches sessions")) }
                            td { (yes_no(ctx, l.street_revenue_matches_sessions)) }
                        }
                        tr {
                            th { (ctx.t("Sai lệch chưa xử lý", "Open discrepancies")) }
                            td class="num" { (group_thousands(l.open_discrepancies)) }
                        }
                    }
                }
            }
        }
    }
}

fn render_reconciliation(
    ctx: &Ctx,
    p: &Principal,
    month: Month,
    r: &ReconciliationReport,
    notice: Option<Markup>,
) -> Markup {
    let mk = month.key();
    let title = format!("{} {}", ctx.t("Đối soát", "Reconciliation,"), month.label(ctx.lang));
    let open = r.discrepancies.iter().filter(|d| d.status == "open").count();
    let can_act = p.role == StaffRole::Finance && !r.period_closed;
    let body = html! {
        h1 { (title) }
        (month_nav(ctx, "/finance/reconciliation", month))
        @if let Some(n) = notice {
            (n)
        }
        (scope_note(ctx, &r.scope))
        @if r.period_closed {
            (flash(Flash::Info, ctx.t("Kỳ này đã khóa sổ.", "This period is closed.")))
        }
        (sections(ctx, r))
        section id="discrepancies" {
            div class="section-head" {
                h2 { (ctx.t("Sai lệch", "Discrepancies")) " " span class="count" { "(" (open) " " (ctx.t("chưa xử lý", "open")) ")" } }
                a class="csv" href={ "/finance/reconciliation.csv?month=" (mk) } download { "CSV" }
            }
            @if r.discrepancies.is_empty() {
                p class="empty" { (ctx.t("Không có sai lệch.", "No discrepancies.")) }
            } @else {
                div class="scroll" {
                    table class="discrepancies" {
                        thead {
                            tr {
                                th { "#" }
                                th { (ctx.t("Mục", "Section")) }
                                th { (ctx.t("Loại", "Kind")) }
                                th { (ctx.t("Đối tượng", "Subject")) }
                                th { (ctx.t("Ngày", "Day")) }
                                th { (ctx.t("Quận", "District")) }
                                th class="num" { (ctx.t("Sổ sách", "Expected")) }
                                th class="num" { (ctx.t("Thực tế", "Actual")) }
                                th class="num" { (ctx.t("Chênh lệch", "Difference")) }
                                th { (ctx.t("Trạng thái", "Status")) }
                                th { (ctx.t("Xử lý", "Resolution")) }
                            }
                        }
                        tbody {
                            @for d in &r.discrepancies {
                                (discrepancy_row(ctx, d, month, can_act))
                            }
                        }
                    }
                }
            }
        }
        p { a href={ "/finance/periods/" (mk) } { (ctx.t("Khóa sổ kỳ này →", "Close this period →")) } }
    };
    layout(ctx, Some(p), Some(month), &title, body)
}

async fn run_reconciliation(app: &App, p: &Principal, month: Month) -> Result<ReconciliationReport, AppError> {
    let q = ReconciliationQuery { date: None, month: Some(month.key()), format: None };
    reconciliation(app, p, &q).await
}

pub(super) async fn reconciliation_page(State(app): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let ctx = Ctx::new(&headers, &uri);
    let p = match require_user(&app, &ctx, &headers).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (q, month) = match ctx.query::<ReconciliationPageQuery>().and_then(|q| {
        let month = month_param(&app, q.month.as_deref())?;
        Ok((q, month))
    }) {
        Ok(v) => v,
        Err(e) => return ctx.error_page(Some(&p), None, &e),
    };
    let report = match run_reconciliation(&app, &p, month).await {
        Ok(r) => r,
        Err(e) => return ctx.error_page(Some(&p), Some(month), &e),
    };
    let notice = q.resolved.and_then(|id| id.parse::<i64>().ok()).map(|id| {
        let text = match ctx.lang {
            Lang::Vi => format!("Đã ghi nhận xử lý sai lệch #{id}."),
            Lang::En => format!("Discrepancy #{id} resolved."),
        };
        flash(Flash::Ok, &text)
    });
    ctx.html(StatusCode::OK, render_reconciliation(&ctx, &p, month, &report, notice))
}

pub(super) async fn reconciliation_csv(State(app): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let ctx = Ctx::new(&headers, &uri);
    let p = match require_user(&app, &ctx, &headers).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let month = match ctx.query::<MonthQuery>().and_then(|q| month_param(&app, q.month.as_deref())) {
        Ok(m) => m,
        Err(e) => return ctx.error_page(Some(&p), None, &e),
    };
    match run_reconciliation(&app, &p, month).await {
        Ok(r) => csv_response(&format!("discrepancies-{}.csv", month.key()), discrepancies_csv(&r.discrepancies)),
        Err(e) => ctx.error_page(Some(&p), Some(month), &e),
    }
}

pub(super) async fn resolve_submit(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let ctx = Ctx::new(&headers, &uri);
    let form: ResolveForm = match ctx.read_form(&headers, &body) {
        Ok(f) => f,
        Err(e) => return ctx.error_page(None, None, &e),
    };
    let month = form.month.as_deref().and_then(Month::parse).unwrap_or_else(|| current_month(&app));
    let back = format!("/finance/reconciliation?month={}", month.key());
    let p = match require_user_back(&app, &ctx, &headers, &back).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    if p.role != StaffRole::Finance {
        return read_only(&ctx, &p, Some(month));
    }
    let Ok(id) = id.parse::<i64>() else {
        let e = AppError::not_found("discrepancy_not_found", "Không có sai lệch này.", "No such discrepancy.");
        return ctx.error_page(Some(&p), Some(month), &e);
    };
    match resolve_discrepancy(&app, &p, id, form.note.trim()).await {
        Ok(_) => ctx.redirect(&format!("/finance/reconciliation?month={}&resolved={id}#d-{id}", month.key())),
        Err(e) => {
            // The page again, with the reason it did not work.
            let notice = error_flash(&ctx, &format!("#{id}: "), &e);
            match run_reconciliation(&app, &p, month).await {
                Ok(r) => ctx.html(e.status, render_reconciliation(&ctx, &p, month, &r, Some(notice))),
                Err(_) => ctx.error_page(Some(&p), Some(month), &e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, Uri};
    use chrono::{NaiveDate, TimeZone, Utc};
    use iparking_mobile_api::{CashSection, LedgerSection};

    use super::*;
    use crate::http::finance_web::{access::test_user, request::read_fields};

    fn ctx(uri: &str) -> Ctx {
        Ctx::new(&HeaderMap::new(), &uri.parse::<Uri>().unwrap())
    }

    fn discrepancy(id: i64, status: &str) -> DiscrepancyView {
        DiscrepancyView {
            id,
            section: "cash".into(),
            kind: "cash_difference".into(),
            subject: "shift:<1>".into(),
            period: "2026-11".into(),
            day: NaiveDate::from_ymd_opt(2026, 11, 17).unwrap(),
            district_code: Some("HK".into()),
            expected: Some(30_000),
            actual: Some(25_000),
            difference: Some(-5_000),
            details: serde_json::json!({ "warden": "<b>Lan</b>" }),
            status: status.into(),
            detected_at: Utc.with_ymd_and_hms(2026, 11, 17, 10, 0, 0).unwrap(),
            resolved_by: None,
            resolved_at: None,
            resolution_note: None,
        }
    }

    fn report(discrepancies: Vec<DiscrepancyView>, period_closed: bool) -> ReconciliationReport {
        let day = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        ReconciliationReport {
            from: day,
            to: day,
            scope: vec![],
            processor: None,
            carriers: vec![],
            cash: CashSection::default(),
            ledger: Some(LedgerSection { transactions_balance: true, ..Default::default() }),
            discrepancies,
            period_closed,
        }
    }

    #[test]
    fn open_discrepancies_have_a_resolve_form_for_finance_only() {
        let ctx = ctx("/finance/reconciliation?month=2026-11");
        let month = Month::parse("2026-11").unwrap();
        let mut resolved = discrepancy(4, "resolved");
        resolved.resolved_by = Some("Kế <Toán>".into());
        resolved.resolved_at = Some(Utc.with_ymd_and_hms(2026, 11, 18, 2, 30, 0).unwrap());
        resolved.resolution_note = Some("Đã nộp <b>ok</b> & \"xong\"".into());
        let r = report(vec![discrepancy(3, "open"), resolved], false);

        let page = render_reconciliation(&ctx, &test_user(StaffRole::Finance, &[]), month, &r, None).into_string();
        assert!(page.contains("<h2>Sai lệch <span class=\"count\">(1 chưa xử lý)</span></h2>"), "{page}");
        assert!(
            page.contains(
                "<tr id=\"d-3\" class=\"status-open\"><td>3</td><td>Tiền mặt</td><td>Chênh lệch tiền mặt ca trực</td>\
                 <td><code>shift:&lt;1&gt;</code><details><summary>Chi tiết</summary><pre>{\n  &quot;warden&quot;: \
                 &quot;&lt;b&gt;Lan&lt;/b&gt;&quot;\n}</pre></details></td><td>17/11/2026</td><td>HK</td>\
                 <td class=\"num\">30.000 ₫</td><td class=\"num\">25.000 ₫</td><td class=\"num diff\">-5.000 ₫</td>\
                 <td class=\"status\"><span class=\"badge open\">Chưa xử lý</span></td>"
            ),
            "{page}"
        );
        assert!(
            page.contains(
                "<form method=\"post\" action=\"/finance/discrepancies/3/resolve\" class=\"resolve\">\
                 <input type=\"hidden\" name=\"month\" value=\"2026-11\"><label>Ghi chú xử lý\
                 <textarea name=\"note\" required maxlength=\"1000\" rows=\"2\"></textarea></label>\
                 <button type=\"submit\">Xác nhận đã xử lý</button></form>"
            ),
            "{page}"
        );
        assert_eq!(page.matches("<form method=\"post\" action=\"/finance/discrepancies/").count(), 1, "{page}");
        // Resolved: who, when (Hanoi time), and the note as text.
        assert!(
            page.contains(
                "<p class=\"resolution\"><span class=\"by\">Kế &lt;Toán&gt;</span> · <span class=\"at\">09:30 18/11/2026</span></p>\
                 <p class=\"note\">Đã nộp &lt;b&gt;ok&lt;/b&gt; &amp; &quot;xong&quot;</p>"
            ),
            "{page}"
        );
        assert!(page.contains("<td><span class=\"ok\">Đúng</span></td>"), "{page}");
        assert!(page.contains("<td><span class=\"bad\">Không</span></td>"), "{page}");
        assert!(page.contains("href=\"/finance/reconciliation.csv?month=2026-11\" download>CSV</a>"), "{page}");
        assert!(page.contains("<p><a href=\"/finance/periods/2026-11\">Khóa sổ kỳ này →</a></p>"), "{page}");

        // Admins read only; a closed period takes no resolution either, and says it is closed.
        let admin = render_reconciliation(&ctx, &test_user(StaffRole::Admin, &[]), month, &r, None).into_string();
        assert!(admin.contains("id=\"d-3\"") && !admin.contains("/resolve"), "{admin}");
        let closed = report(vec![discrepancy(3, "open")], true);
        let page = render_reconciliation(&ctx, &test_user(StaffRole::Finance, &[]), month, &closed, None).into_string();
        assert!(!page.contains("/resolve"), "{page}");
        assert!(page.contains("<p class=\"flash info\" role=\"alert\">Kỳ này đã khóa sổ.</p>"), "{page}");
    }

    #[test]
    fn a_notice_comes_after_the_month_switcher() {
        let ctx = ctx("/finance/reconciliation?month=2026-11&lang=en");
        let month = Month::parse("2026-11").unwrap();
        let notice = html! { p class="flash ok" { "done" } };
        let page = render_reconciliation(
            &ctx,
            &test_user(StaffRole::Finance, &[]),
            month,
            &report(vec![], false),
            Some(notice),
        )
        .into_string();
        assert!(page.contains("</form><p class=\"flash ok\">done</p><div class=\"sections\">"), "{page}");
        assert!(page.contains("<p class=\"empty\">No discrepancies.</p>"), "{page}");
        assert!(page.contains("<h2>Discrepancies <span class=\"count\">(0 open)</span></h2>"), "{page}");
        assert!(page.contains("<section class=\"card\" id=\"sec-cash\"><h2>Cash (warden shifts)</h2>"), "{page}");
    }

    #[test]
    fn the_resolve_form_reads_vietnamese_notes() {
        let f: ResolveForm = read_fields(b"month=2026-11&note=%C4%90%C3%A3+n%E1%BB%99p+%3Cb%3E").unwrap();
        assert_eq!((f.month.as_deref(), f.note.as_str()), (Some("2026-11"), "Đã nộp <b>"));
        let f: ResolveForm = read_fields(b"").unwrap();
        assert_eq!((f.month, f.note.as_str()), (None, ""));
    }
}
