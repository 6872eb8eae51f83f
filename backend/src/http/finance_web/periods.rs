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
use crate::{error::AppError, http::AppState, http::finance, store::Principal};

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
    match finance::period(&app, &p, &month.key()).await {
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
    match finance::close_period(&app, &p, &month.key(), &body).await {
        Ok(_) => ctx.redirect(&format!("/finance/periods/{}?closed=1", month.key())),
        Err(e) => {
            let notice = close_refused(&ctx, month, &e);
            match finance::period(&app, &p, &month.key()).await {
                Ok(v) => ctx.html(e.status, render_period(&ctx, &p, month, &v, Some(notice))),
                Err(_) => ctx.error_page(Some(&p), Some(month), &e),
            }
        }
    }
}
