//! Revenue: the month by district, street and channel, a street's points and days, and their
//! CSV downloads.

use axum::{
    extract::{Path, State},
    http::{HeaderMap, StatusCode, Uri},
    response::Response,
};
use iparking_mobile_api::{RevenueQuery, RevenueReport, RevenueRow, RevenueSums};
use maud::{Markup, html};
use serde::Deserialize;

use super::{
    access::require_user,
    chart::bar_chart,
    labels::{Month, channel_label, group_thousands, money},
    request::{Ctx, MonthQuery, month_param},
    views::{layout, month_nav, scope_note, totals_cards},
};
use crate::{
    App,
    app::finance::revenue::{self, revenue_report},
    error::AppError,
    http::{AppState, csv::csv_response},
    store::Principal,
};

/// The query of a revenue CSV download.
#[derive(Deserialize)]
struct RevenueCsvQuery {
    /// `YYYY-MM`; none or empty: this month.
    month: Option<String>,
    /// The grouping, as the API takes it (`district,street`).
    group_by: Option<String>,
    /// Only this district.
    district: Option<String>,
    /// Only this street (its id).
    street: Option<String>,
}

async fn report(
    app: &App,
    p: &Principal,
    month: Month,
    group_by: &str,
    street: Option<i64>,
) -> Result<RevenueReport, AppError> {
    let q = RevenueQuery {
        from: Some(month.first().to_string()),
        to: Some(month.last().to_string()),
        group_by: Some(group_by.to_owned()),
        district: None,
        street,
        format: None,
    };
    revenue_report(app, p, &q).await
}

fn sums_cells(s: &RevenueSums) -> Markup {
    html! {
        td class="num" { (money(s.gross)) }
        td class="num" { (money(s.carrier_share)) }
        td class="num" { (money(s.net)) }
        td class="num" { (group_thousands(s.postings)) }
    }
}

fn sums_head(ctx: &Ctx) -> Markup {
    html! {
        th class="num" { (ctx.t("Doanh thu", "Gross")) }
        th class="num" { (ctx.t("Phần nhà mạng", "Carrier share")) }
        th class="num" { (ctx.t("Thực thu", "Net")) }
        th class="num" { (ctx.t("Bút toán", "Postings")) }
    }
}

/// A revenue table: the first columns from `dims` (header, cells per row), then the sums,
/// a total row and a CSV link.
fn revenue_table(
    ctx: &Ctx,
    id: &str,
    caption: &str,
    dims: &[&str],
    r: &RevenueReport,
    cells: impl Fn(&RevenueRow) -> Vec<Markup>,
    csv_href: &str,
) -> Markup {
    html! {
        section id=(id) {
            div class="section-head" {
                h2 { (caption) }
                a class="csv" href=(csv_href) download { "CSV" }
            }
            @if r.rows.is_empty() {
                p class="empty" { (ctx.t("Không có doanh thu trong kỳ này.", "No revenue in this period.")) }
            } @else {
                div class="scroll" {
                    table {
                        thead { tr { @for d in dims { th { (d) } } (sums_head(ctx)) } }
                        tbody {
                            @for row in &r.rows {
                                tr { @for c in cells(row) { td { (c) } } (sums_cells(&row.sums)) }
                            }
                        }
                        tfoot { tr { th colspan=(dims.len()) { (ctx.t("Tổng", "Total")) } (sums_cells(&r.totals)) } }
                    }
                }
            }
        }
    }
}

/// A text cell, `—` when there is nothing.
fn text_or_dash(v: Option<&str>) -> Markup {
    html! { (v.unwrap_or("—")) }
}

fn district_name(r: &RevenueRow) -> String {
    r.district_name.clone().or_else(|| r.district_code.clone()).unwrap_or_else(|| "—".to_owned())
}

fn channel_cell(ctx: &Ctx, r: &RevenueRow) -> Vec<Markup> {
    vec![text_or_dash(r.channel.map(|c| channel_label(c, ctx.lang)))]
}

/// The reports of the revenue page.
struct MonthRevenue {
    districts: RevenueReport,
    streets: RevenueReport,
    channels: RevenueReport,
}

fn render_revenue(ctx: &Ctx, p: &Principal, month: Month, r: &MonthRevenue) -> Markup {
    let mk = month.key();
    let title = format!("{} {}", ctx.t("Doanh thu", "Revenue,"), month.label(ctx.lang));
    let chart = (!r.districts.rows.is_empty()).then(|| {
        let bars: Vec<(String, i64)> = r.districts.rows.iter().map(|r| (district_name(r), r.sums.gross)).collect();
        let title = format!("{} {}", ctx.t("Doanh thu theo quận,", "Revenue by district,"), month.label(ctx.lang));
        bar_chart(&title, &bars)
    });
    let street_cells = |r: &RevenueRow| {
        let name = r.street_name.as_deref().unwrap_or("—");
        let street = match r.street_id {
            Some(id) => html! { a class="street-link" href={ "/finance/streets/" (id) "?month=" (mk) } { (name) } },
            None => html! { (name) },
        };
        vec![text_or_dash(r.district_code.as_deref()), street]
    };
    let body = html! {
        h1 { (title) }
        (month_nav(ctx, "/finance", month))
        (scope_note(ctx, &r.districts.scope))
        (totals_cards(ctx, &r.districts.totals))
        @if let Some(chart) = chart {
            figure class="chart-box" { (chart) }
        }
        (revenue_table(
            ctx,
            "by-district",
            ctx.t("Theo quận", "By district"),
            &[ctx.t("Mã", "Code"), ctx.t("Quận", "District")],
            &r.districts,
            |r| vec![text_or_dash(r.district_code.as_deref()), html! { (district_name(r)) }],
            &format!("/finance/revenue.csv?month={mk}&group_by=district"),
        ))
        (revenue_table(
            ctx,
            "by-street",
            ctx.t("Theo tuyến phố", "By street"),
            &[ctx.t("Quận", "District"), ctx.t("Tuyến phố", "Street")],
            &r.streets,
            street_cells,
            &format!("/finance/revenue.csv?month={mk}&group_by=district,street"),
        ))
        (revenue_table(
            ctx,
            "by-channel",
            ctx.t("Theo kênh thanh toán", "By channel"),
            &[ctx.t("Kênh", "Channel")],
            &r.channels,
            |r| channel_cell(ctx, r),
            &format!("/finance/revenue.csv?month={mk}&group_by=channel"),
        ))
    };
    layout(ctx, Some(p), Some(month), &title, body)
}

pub(super) async fn revenue_page(State(app): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let ctx = Ctx::new(&headers, &uri);
    let p = match require_user(&app, &ctx, &headers).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let month = match ctx.query::<MonthQuery>().and_then(|q| month_param(&app, q.month.as_deref())) {
        Ok(m) => m,
        Err(e) => return ctx.error_page(Some(&p), None, &e),
    };
    let (districts, streets, channels) = match tokio::try_join!(
        report(&app, &p, month, "district", None),
        report(&app, &p, month, "street", None),
        report(&app, &p, month, "channel", None),
    ) {
        Ok(r) => r,
        Err(e) => return ctx.error_page(Some(&p), Some(month), &e),
    };
    let page = render_revenue(&ctx, &p, month, &MonthRevenue { districts, streets, channels });
    ctx.html(StatusCode::OK, page)
}

/// A street and its reports.
struct StreetRevenue {
    id: i64,
    name: String,
    district_name: String,
    points: RevenueReport,
    days: RevenueReport,
    channels: RevenueReport,
}

fn render_street(ctx: &Ctx, p: &Principal, month: Month, s: &StreetRevenue) -> Markup {
    let mk = month.key();
    let title = format!("{} — {}", s.name, month.label(ctx.lang));
    let csv = |g: &str| format!("/finance/revenue.csv?month={mk}&group_by={g}&street={}", s.id);
    let day = |r: &RevenueRow| r.day.map_or_else(|| "—".to_owned(), |d| ctx.lang.day(d));
    let chart = (!s.days.rows.is_empty()).then(|| {
        let bars: Vec<(String, i64)> = s.days.rows.iter().map(|r| (day(r), r.sums.gross)).collect();
        let title = format!("{} {}", ctx.t("Doanh thu theo ngày:", "Revenue by day:"), s.name);
        bar_chart(&title, &bars)
    });
    let body = html! {
        p class="crumbs" {
            a href={ "/finance?month=" (mk) } { (ctx.t("Doanh thu", "Revenue")) }
            " › " (s.district_name) " › " (s.name)
        }
        h1 { (title) }
        (month_nav(ctx, &format!("/finance/streets/{}", s.id), month))
        (totals_cards(ctx, &s.points.totals))
        (revenue_table(
            ctx,
            "by-point",
            ctx.t("Theo điểm đỗ", "By parking point"),
            &[ctx.t("Mã điểm", "Point"), ctx.t("Tên", "Name")],
            &s.points,
            |r| vec![text_or_dash(r.point_code.as_deref()), text_or_dash(r.point_name.as_deref())],
            &csv("point"),
        ))
        @if let Some(chart) = chart {
            figure class="chart-box" { (chart) }
        }
        (revenue_table(
            ctx,
            "by-day",
            ctx.t("Theo ngày", "By day"),
            &[ctx.t("Ngày", "Day")],
            &s.days,
            |r| vec![html! { (day(r)) }],
            &csv("day"),
        ))
        (revenue_table(
            ctx,
            "by-channel",
            ctx.t("Theo kênh thanh toán", "By channel"),
            &[ctx.t("Kênh", "Channel")],
            &s.channels,
            |r| channel_cell(ctx, r),
            &csv("channel"),
        ))
    };
    layout(ctx, Some(p), Some(month), &title, body)
}

pub(super) async fn street_page(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let ctx = Ctx::new(&headers, &uri);
    let p = match require_user(&app, &ctx, &headers).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let month = match ctx.query::<MonthQuery>().and_then(|q| month_param(&app, q.month.as_deref())) {
        Ok(m) => m,
        Err(e) => return ctx.error_page(Some(&p), None, &e),
    };
    let not_found = || {
        AppError::not_found(
            "street_not_found",
            format!("Không có tuyến phố số {id}."),
            format!("No street with id {id}."),
        )
    };
    let Ok(street_id) = id.parse::<i64>() else { return ctx.error_page(Some(&p), Some(month), &not_found()) };
    let street = match app.store.street(street_id).await {
        Ok(Some(s)) => s,
        Ok(None) => return ctx.error_page(Some(&p), Some(month), &not_found()),
        Err(e) => return ctx.error_page(Some(&p), Some(month), &e.into()),
    };
    if !p.covers_district(&street.district_code) {
        let e = AppError::new(
            StatusCode::FORBIDDEN,
            "out_of_scope",
            format!("Quận {} nằm ngoài phạm vi của bạn.", street.district_code),
            format!("District {} is outside your scope.", street.district_code),
        );
        return ctx.error_page(Some(&p), Some(month), &e);
    }
    let district_name = match app.store.districts().await {
        Ok(all) => all.into_iter().find(|d| d.code == street.district_code).map(|d| d.name),
        Err(e) => return ctx.error_page(Some(&p), Some(month), &e.into()),
    }
    .unwrap_or_else(|| street.district_code.clone());
    let s = Some(street_id);
    let (points, days, channels) = match tokio::try_join!(
        report(&app, &p, month, "point", s),
        report(&app, &p, month, "day", s),
        report(&app, &p, month, "channel", s),
    ) {
        Ok(r) => r,
        Err(e) => return ctx.error_page(Some(&p), Some(month), &e),
    };
    let street = StreetRevenue { id: street_id, name: street.name, district_name, points, days, channels };
    ctx.html(StatusCode::OK, render_street(&ctx, &p, month, &street))
}

pub(super) async fn revenue_csv(State(app): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let ctx = Ctx::new(&headers, &uri);
    let p = match require_user(&app, &ctx, &headers).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (q, month) = match ctx.query::<RevenueCsvQuery>().and_then(|q| {
        let month = month_param(&app, q.month.as_deref())?;
        Ok((q, month))
    }) {
        Ok(v) => v,
        Err(e) => return ctx.error_page(Some(&p), None, &e),
    };
    let street = match q.street.filter(|s| !s.is_empty()).map(|s| s.parse::<i64>()) {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => {
            let e = AppError::bad_request("invalid_query", "Mã tuyến phố không hợp lệ.", "Invalid street id.");
            return ctx.error_page(Some(&p), Some(month), &e);
        }
    };
    let q = RevenueQuery {
        from: Some(month.first().to_string()),
        to: Some(month.last().to_string()),
        group_by: Some(q.group_by.unwrap_or_default()),
        district: q.district.filter(|d| !d.is_empty()),
        street,
        format: Some("csv".to_owned()),
    };
    match revenue_report(&app, &p, &q).await {
        Ok(r) => csv_response(&format!("revenue-{}-{}.csv", r.from, r.to), revenue::revenue_csv(&r)),
        Err(e) => ctx.error_page(Some(&p), Some(month), &e),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, Uri};
    use chrono::NaiveDate;
    use iparking_mobile_api::{RevenueChannel, StaffRole};

    use super::*;
    use crate::http::finance_web::access::test_user;

    fn ctx(uri: &str) -> Ctx {
        Ctx::new(&HeaderMap::new(), &uri.parse::<Uri>().unwrap())
    }

    fn sums(gross: i64) -> RevenueSums {
        RevenueSums { gross, carrier_share: gross / 10, net: gross - gross / 10, postings: 2 }
    }

    fn row(f: impl FnOnce(&mut RevenueRow)) -> RevenueRow {
        let mut r = RevenueRow {
            district_code: None,
            district_name: None,
            street_id: None,
            street_name: None,
            point_code: None,
            point_name: None,
            channel: None,
            day: None,
            vehicle_class: None,
            sums: sums(0),
        };
        f(&mut r);
        r
    }

    fn report(rows: Vec<RevenueRow>) -> RevenueReport {
        let day = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        let gross = rows.iter().map(|r| r.sums.gross).sum();
        RevenueReport { from: day, to: day, group_by: vec![], scope: vec![], rows, totals: sums(gross) }
    }

    #[test]
    fn street_names_are_escaped_in_the_table_and_link_to_the_street() {
        let ctx = ctx("/finance?month=2026-11");
        let month = Month::parse("2026-11").unwrap();
        let p = test_user(StaffRole::Finance, &[]);
        let evil = "<script>&\"'";
        let reports = MonthRevenue {
            districts: report(vec![row(|r| {
                r.district_code = Some("HK".into());
                r.district_name = Some("Hoàn <Kiếm>".into());
                r.sums = sums(1_250_000);
            })]),
            streets: report(vec![
                row(|r| {
                    r.district_code = Some("HK".into());
                    r.street_id = Some(12);
                    r.street_name = Some(evil.into());
                    r.sums = sums(1_000_000);
                }),
                row(|r| {
                    r.street_name = Some("Không mã".into());
                    r.sums = sums(250_000);
                }),
            ]),
            channels: report(vec![row(|r| {
                r.channel = Some(RevenueChannel::Sms);
                r.sums = sums(1_250_000);
            })]),
        };
        let page = render_revenue(&ctx, &p, month, &reports).into_string();
        assert!(!page.contains("<script>"), "{page}");
        assert!(
            page.contains(
                "<tr><td>HK</td><td><a class=\"street-link\" href=\"/finance/streets/12?month=2026-11\">\
                 &lt;script&gt;&amp;&quot;'</a></td><td class=\"num\">1.000.000 ₫</td>\
                 <td class=\"num\">100.000 ₫</td><td class=\"num\">900.000 ₫</td><td class=\"num\">2</td></tr>"
            ),
            "{page}"
        );
        // A street without an id has no link; a missing district is a dash.
        assert!(page.contains("<tr><td>—</td><td>Không mã</td>"), "{page}");
        // Headers, total row, CSV link.
        assert!(
            page.contains(
                "<section id=\"by-street\"><div class=\"section-head\"><h2>Theo tuyến phố</h2>\
                 <a class=\"csv\" href=\"/finance/revenue.csv?month=2026-11&amp;group_by=district,street\" download>CSV</a>"
            ),
            "{page}"
        );
        assert!(page.contains("<thead><tr><th>Quận</th><th>Tuyến phố</th><th class=\"num\">Doanh thu</th>"), "{page}");
        assert!(page.contains("<tfoot><tr><th colspan=\"2\">Tổng</th><td class=\"num\">1.250.000 ₫</td>"), "{page}");
        // The district chart, its names escaped; the channel in words.
        assert!(page.contains("<figure class=\"chart-box\"><svg class=\"chart\""), "{page}");
        assert!(page.contains("aria-label=\"Doanh thu theo quận, tháng 11/2026\""), "{page}");
        assert!(page.contains(">Hoàn &lt;Kiếm&gt;</text>"), "{page}");
        assert!(page.contains("<td>SMS (tài khoản điện thoại)</td>"), "{page}");
        assert!(page.contains("<h1>Doanh thu tháng 11/2026</h1>"), "{page}");
    }

    #[test]
    fn an_empty_month_says_so_without_chart_or_table() {
        let ctx = ctx("/finance?month=2020-01&lang=en");
        let month = Month::parse("2020-01").unwrap();
        let p = test_user(StaffRole::Admin, &["HK"]);
        let mut districts = report(vec![]);
        districts.scope = vec!["HK".into()];
        let reports = MonthRevenue { districts, streets: report(vec![]), channels: report(vec![]) };
        let page = render_revenue(&ctx, &p, month, &reports).into_string();
        assert_eq!(page.matches("<p class=\"empty\">No revenue in this period.</p>").count(), 3, "{page}");
        assert!(!page.contains("<table") && !page.contains("<svg"), "{page}");
        assert!(page.contains("<p class=\"scope\">Your scope: districts HK</p>"), "{page}");
        assert!(page.contains("<h1>Revenue, January 2020</h1>"), "{page}");
    }

    #[test]
    fn a_street_page_shows_points_and_days() {
        let ctx = ctx("/finance/streets/12?month=2026-11&lang=en");
        let month = Month::parse("2026-11").unwrap();
        let p = test_user(StaffRole::Finance, &[]);
        let day = NaiveDate::from_ymd_opt(2026, 11, 17);
        let street = StreetRevenue {
            id: 12,
            name: "Lý <Thường> Kiệt".into(),
            district_name: "Hoàn Kiếm".into(),
            points: report(vec![row(|r| {
                r.point_code = Some("HK001".into());
                r.sums = sums(50_000);
            })]),
            days: report(vec![row(|r| {
                r.day = day;
                r.sums = sums(50_000);
            })]),
            channels: report(vec![]),
        };
        let page = render_street(&ctx, &p, month, &street).into_string();
        assert!(
            page.contains(
                "<p class=\"crumbs\"><a href=\"/finance?month=2026-11\">Revenue</a> › Hoàn Kiếm › Lý &lt;Thường&gt; Kiệt</p>\
                 <h1>Lý &lt;Thường&gt; Kiệt — November 2026</h1>"
            ),
            "{page}"
        );
        assert!(page.contains("<form class=\"month-nav\" method=\"get\" action=\"/finance/streets/12\">"), "{page}");
        assert!(page.contains("<tr><td>HK001</td><td>—</td><td class=\"num\">50.000 ₫</td>"), "{page}");
        assert!(page.contains("href=\"/finance/revenue.csv?month=2026-11&amp;group_by=day&amp;street=12\""), "{page}");
        assert!(page.contains("<tr><td>2026-11-17</td>"), "{page}");
        assert!(page.contains("aria-label=\"Revenue by day: Lý &lt;Thường&gt; Kiệt\""), "{page}");
        // The chart comes after the points, before the days.
        let (points, chart, days) =
            (page.find("id=\"by-point\"").unwrap(), page.find("<svg").unwrap(), page.find("id=\"by-day\"").unwrap());
        assert!(points < chart && chart < days);
    }
}
