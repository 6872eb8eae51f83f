//! Period close: a month's state, and the form that closes it (with an override and a reason).

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, Uri},
    response::Response,
};
use iparking_mobile_api::{ClosePeriod, PeriodView, StaffRole};
use maud::{Markup, html};
use serde::Deserialize;

use super::{
    access::{read_only, require_user, require_user_back},
    labels::{Lang, Month, status_label},
    request::{Ctx, MonthQuery, invalid_month, month_param},
    views::{Flash, error_flash, flash, layout, month_nav},
};
use crate::{
    app::finance::periods::{close_period, period},
    error::AppError,
    http::AppState,
    store::Principal,
};

/// The query of a period's page.
#[derive(Deserialize)]
struct PeriodQuery {
    /// Present right after the month was closed, to say so.
    closed: Option<String>,
}

/// The close form.
#[derive(Deserialize)]
struct CloseForm {
    /// Any value: close despite open discrepancies.
    override_open_discrepancies: Option<String>,
    /// Why (required with the override).
    reason: Option<String>,
}

/// Links to discrepancies on the month's reconciliation page: `#3, #7`.
fn discrepancy_links(month: Month, ids: &[i64]) -> Markup {
    html! {
        @for (i, id) in ids.iter().enumerate() {
            @if i > 0 { ", " }
            a href={ "/finance/reconciliation?month=" (month.key()) "#d-" (id) } { "#" (id) }
        }
    }
}

fn render_period(ctx: &Ctx, p: &Principal, month: Month, v: &PeriodView, notice: Option<Markup>) -> Markup {
    let mk = month.key();
    let title = format!("{} {}", ctx.t("Khóa sổ", "Period close,"), month.label(ctx.lang));
    let closed = v.status == "closed";
    let body = html! {
        h1 { (title) }
        (month_nav(ctx, "/finance/periods", month))
        @if let Some(n) = notice {
            (n)
        }
        section class="card" id="period" {
            table class="kv" {
                tr {
                    th { (ctx.t("Trạng thái", "Status")) }
                    td {
                        @if closed {
                            span class="badge closed" { (status_label("closed", ctx.lang)) }
                        } @else {
                            span class="badge open" { (ctx.t("Đang mở", "Open")) }
                        }
                    }
                }
                @if closed {
                    tr { th { (ctx.t("Người khóa sổ", "Closed by")) } td { (v.closed_by.as_deref().unwrap_or("—")) } }
                    tr { th { (ctx.t("Thời điểm", "Closed at")) } td { (v.closed_at.map(|t| ctx.lang.time(t)).unwrap_or_default()) } }
                    tr {
                        th { (ctx.t("Bỏ qua sai lệch", "Override")) }
                        td { (if v.overridden { ctx.t("Có", "Yes") } else { ctx.t("Không", "No") }) }
                    }
                    tr { th { (ctx.t("Lý do", "Reason")) } td { (v.override_reason.as_deref().unwrap_or("—")) } }
                    tr {
                        th { (ctx.t("Sai lệch còn mở khi khóa", "Open at closing")) }
                        td {
                            @if v.open_discrepancy_ids.is_empty() {
                                "—"
                            } @else {
                                (discrepancy_links(month, &v.open_discrepancy_ids))
                            }
                        }
                    }
                }
            }
        }
        @if !closed {
            @if p.role == StaffRole::Finance {
                section class="card" id="close" {
                    h2 { (ctx.t("Khóa sổ tháng", "Close the month")) }
                    p {
                        (ctx.t(
                            "Sau khi khóa sổ, không bút toán nào được ghi vào tháng này nữa. Tháng phải kết thúc và không còn sai lệch chưa xử lý (hoặc chọn bỏ qua, kèm lý do).",
                            "Once closed, nothing can be posted into this month. The month must have ended and have no open discrepancies (or override them, with a reason)."
                        ))
                    }
                    form method="post" action={ "/finance/periods/" (mk) "/close" } class="close" {
                        label class="check" {
                            input type="checkbox" name="override_open_discrepancies" value="1";
                            " " (ctx.t("Khóa sổ dù còn sai lệch chưa xử lý", "Close despite open discrepancies"))
                        }
                        label {
                            (ctx.t("Lý do (bắt buộc khi bỏ qua)", "Reason (required with the override)"))
                            textarea name="reason" maxlength="1000" rows="3" {}
                        }
                        button type="submit" class="danger" {
                            @match ctx.lang {
                                Lang::Vi => { "Khóa sổ " (month.label(ctx.lang)) }
                                Lang::En => { "Close " (month.label(ctx.lang)) }
                            }
                        }
                    }
                }
            } @else {
                p class="hint" { (ctx.t("Tài khoản quản trị chỉ được xem.", "Admin accounts are read only.")) }
            }
        }
        p { a href={ "/finance/reconciliation?month=" (mk) } { (ctx.t("← Đối soát tháng này", "← This month's reconciliation")) } }
    };
    layout(ctx, Some(p), Some(month), &title, body)
}

/// Why the month was not closed, with links to the discrepancies still open (if that is why).
fn close_refused(ctx: &Ctx, month: Month, e: &AppError) -> Markup {
    let ids: Vec<i64> = e
        .details
        .as_ref()
        .and_then(|d| d.get("ids"))
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(serde_json::Value::as_i64).collect())
        .unwrap_or_default();
    html! {
        (error_flash(ctx, "", e))
        @if !ids.is_empty() {
            p class="open-ids" { (ctx.t("Sai lệch còn mở:", "Open discrepancies:")) " " (discrepancy_links(month, &ids)) }
        }
    }
}

pub(super) async fn period_index(State(app): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let ctx = Ctx::new(&headers, &uri);
    match ctx.query::<MonthQuery>().and_then(|q| month_param(&app, q.month.as_deref())) {
        Ok(m) => ctx.redirect(&format!("/finance/periods/{}", m.key())),
        Err(e) => ctx.error_page(None, None, &e),
    }
}

pub(super) async fn period_page(
    State(app): State<AppState>,
    Path(month): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let ctx = Ctx::new(&headers, &uri);
    let p = match require_user(&app, &ctx, &headers).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Some(month) = Month::parse(&month) else { return ctx.error_page(Some(&p), None, &invalid_month()) };
    let q: PeriodQuery = match ctx.query() {
        Ok(q) => q,
        Err(e) => return ctx.error_page(Some(&p), Some(month), &e),
    };
    match period(&app, &p, &month.key()).await {
        Ok(v) => {
            let notice = q.closed.map(|_| flash(Flash::Ok, ctx.t("Đã khóa sổ tháng.", "The month is closed.")));
            ctx.html(StatusCode::OK, render_period(&ctx, &p, month, &v, notice))
        }
        Err(e) => ctx.error_page(Some(&p), Some(month), &e),
    }
}

pub(super) async fn close_submit(
    State(app): State<AppState>,
    Path(month): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let ctx = Ctx::new(&headers, &uri);
    let form: CloseForm = match ctx.read_form(&headers, &body) {
        Ok(f) => f,
        Err(e) => return ctx.error_page(None, None, &e),
    };
    let parsed = Month::parse(&month);
    let back = parsed.map_or_else(|| "/finance/periods".to_owned(), |m| format!("/finance/periods/{}", m.key()));
    let p = match require_user_back(&app, &ctx, &headers, &back).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Some(month) = parsed else { return ctx.error_page(Some(&p), None, &invalid_month()) };
    if p.role != StaffRole::Finance {
        return read_only(&ctx, &p, Some(month));
    }
    let body = ClosePeriod {
        override_open_discrepancies: form.override_open_discrepancies.is_some_and(|v| !v.is_empty()),
        reason: form.reason.as_deref().map(str::trim).filter(|r| !r.is_empty()).map(str::to_owned),
    };
    match close_period(&app, &p, &month.key(), &body).await {
        Ok(_) => ctx.redirect(&format!("/finance/periods/{}?closed=1", month.key())),
        Err(e) => {
            let notice = close_refused(&ctx, month, &e);
            match period(&app, &p, &month.key()).await {
                Ok(v) => ctx.html(e.status, render_period(&ctx, &p, month, &v, Some(notice))),
                Err(_) => ctx.error_page(Some(&p), Some(month), &e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, Uri};
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::http::finance_web::{access::test_user, request::read_fields};

    fn ctx(uri: &str) -> Ctx {
        Ctx::new(&HeaderMap::new(), &uri.parse::<Uri>().unwrap())
    }

    fn view(status: &str) -> PeriodView {
        PeriodView {
            month: "2026-10".into(),
            status: status.into(),
            closed_by: None,
            closed_at: None,
            overridden: false,
            override_reason: None,
            open_discrepancy_ids: vec![],
        }
    }

    #[test]
    fn an_open_month_has_the_close_form_for_finance_only() {
        let ctx = ctx("/finance/periods/2026-10");
        let month = Month::parse("2026-10").unwrap();
        let page = render_period(&ctx, &test_user(StaffRole::Finance, &[]), month, &view("open"), None).into_string();
        assert!(page.contains("<td><span class=\"badge open\">Đang mở</span></td>"), "{page}");
        assert!(
            page.contains(
                "<form method=\"post\" action=\"/finance/periods/2026-10/close\" class=\"close\">\
                 <label class=\"check\"><input type=\"checkbox\" name=\"override_open_discrepancies\" value=\"1\"> \
                 Khóa sổ dù còn sai lệch chưa xử lý</label><label>Lý do (bắt buộc khi bỏ qua)\
                 <textarea name=\"reason\" maxlength=\"1000\" rows=\"3\"></textarea></label>\
                 <button type=\"submit\" class=\"danger\">Khóa sổ tháng 10/2026</button></form>"
            ),
            "{page}"
        );
        assert!(page.contains("<p><a href=\"/finance/reconciliation?month=2026-10\">← Đối soát tháng này</a></p>"));
        let admin = render_period(&ctx, &test_user(StaffRole::Admin, &[]), month, &view("open"), None).into_string();
        assert!(!admin.contains("<form method=\"post\" action=\"/finance/periods/"), "{admin}");
        assert!(admin.contains("<p class=\"hint\">Tài khoản quản trị chỉ được xem.</p>"), "{admin}");
    }

    #[test]
    fn a_closed_month_says_by_whom_when_and_what_was_left_open() {
        let ctx = ctx("/finance/periods/2026-10?lang=en");
        let month = Month::parse("2026-10").unwrap();
        let mut v = view("closed");
        v.closed_by = Some("Kế <Toán>".into());
        v.closed_at = Some(Utc.with_ymd_and_hms(2026, 11, 2, 1, 5, 0).unwrap());
        v.overridden = true;
        v.override_reason = Some("Chờ <ngân hàng>".into());
        v.open_discrepancy_ids = vec![3, 8];
        let page = render_period(&ctx, &test_user(StaffRole::Finance, &[]), month, &v, None).into_string();
        assert!(
            page.contains(
                "<tr><th>Status</th><td><span class=\"badge closed\">Closed</span></td></tr>\
                 <tr><th>Closed by</th><td>Kế &lt;Toán&gt;</td></tr>\
                 <tr><th>Closed at</th><td>2026-11-02 08:05</td></tr>\
                 <tr><th>Override</th><td>Yes</td></tr>\
                 <tr><th>Reason</th><td>Chờ &lt;ngân hàng&gt;</td></tr>\
                 <tr><th>Open at closing</th><td><a href=\"/finance/reconciliation?month=2026-10#d-3\">#3</a>, \
                 <a href=\"/finance/reconciliation?month=2026-10#d-8\">#8</a></td></tr>"
            ),
            "{page}"
        );
        assert!(!page.contains("class=\"close\"") && !page.contains("class=\"hint\""), "{page}");
        v.open_discrepancy_ids.clear();
        let page = render_period(&ctx, &test_user(StaffRole::Finance, &[]), month, &v, None).into_string();
        assert!(page.contains("<tr><th>Open at closing</th><td>—</td></tr>"), "{page}");
    }

    #[test]
    fn a_refused_close_links_the_open_discrepancies() {
        let ctx = ctx("/finance/periods/2026-10/close");
        let month = Month::parse("2026-10").unwrap();
        let e = AppError::new(StatusCode::CONFLICT, "open_discrepancies", "Còn sai lệch.", "Still open.")
            .with_details(serde_json::json!({ "ids": [5, 6] }));
        assert_eq!(
            close_refused(&ctx, month, &e).into_string(),
            "<p class=\"flash error\" role=\"alert\">Còn sai lệch. <code>open_discrepancies</code></p>\
             <p class=\"open-ids\">Sai lệch còn mở: <a href=\"/finance/reconciliation?month=2026-10#d-5\">#5</a>, \
             <a href=\"/finance/reconciliation?month=2026-10#d-6\">#6</a></p>"
        );
        let e = AppError::new(StatusCode::CONFLICT, "period_not_ended", "Chưa hết tháng.", "Not ended.");
        assert_eq!(
            close_refused(&ctx, month, &e).into_string(),
            "<p class=\"flash error\" role=\"alert\">Chưa hết tháng. <code>period_not_ended</code></p>"
        );
    }

    #[test]
    fn the_close_form_reads_the_override_and_reason() {
        let f: CloseForm =
            read_fields(b"override_open_discrepancies=1&reason=+Ch%E1%BB%9D+ng%C3%A2n+h%C3%A0ng+").unwrap();
        assert_eq!(
            (f.override_open_discrepancies.as_deref(), f.reason.as_deref()),
            (Some("1"), Some(" Chờ ngân hàng "))
        );
        let f: CloseForm = read_fields(b"").unwrap();
        assert_eq!((f.override_open_discrepancies, f.reason), (None, None));
    }
}
