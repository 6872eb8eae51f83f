//! The public revenue page, `/public` (issue 34): what each district and street earned, per
//! day and month, straight from the ledger, for anyone, with no login and no personal data
//! (sums of the points' revenue postings only). Downloads as CSV and JSON.

use axum::{
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use chrono::Duration;
use iparking_mobile_api::{RevenueQuery, RevenueReport, RevenueRow};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

use super::{
    chart::bar_chart,
    labels::{Lang, Month, channel_label, money},
    request::{Ctx, month_param},
    views::{head, lang_switch, month_nav, totals_cards},
};
use crate::{
    App,
    app::finance::revenue::{public_report, revenue_csv},
    domain::finance as fin,
    error::AppError,
    http::{AppState, csv::csv_response},
};

/// The page's query.
#[derive(Deserialize)]
struct PageQuery {
    /// `YYYY-MM`; none or empty: this month.
    month: Option<String>,
    #[allow(dead_code)]
    lang: Option<String>,
}

/// A download's query.
#[derive(Deserialize)]
struct DownloadQuery {
    /// `YYYY-MM`; none or empty: this month.
    month: Option<String>,
    /// `district`, `street`, `day` or `channel`, or a comma-separated combination of them.
    group_by: Option<String>,
    #[allow(dead_code)]
    lang: Option<String>,
}

/// The dimensions the public may group by (no point: a point's figures are the street's).
const PUBLIC_DIMS: [&str; 4] = ["district", "street", "day", "channel"];

async fn month_report(app: &App, month: Month, group_by: &str) -> Result<RevenueReport, AppError> {
    let q = RevenueQuery {
        from: Some(month.first().to_string()),
        to: Some(month.last().to_string()),
        group_by: Some(group_by.to_owned()),
        district: None,
        street: None,
        format: None,
    };
    public_report(app, &q).await
}

/// The last 30 local days, ending today, by day.
async fn last_30_days(app: &App) -> Result<RevenueReport, AppError> {
    let today = fin::local_day(app.clock.now());
    let q = RevenueQuery {
        from: Some((today - Duration::days(29)).to_string()),
        to: Some(today.to_string()),
        group_by: Some("day".to_owned()),
        district: None,
        street: None,
        format: None,
    };
    public_report(app, &q).await
}

fn sums_head(ctx: &Ctx) -> Markup {
    html! {
        th scope="col" class="num" { (ctx.t("Doanh thu", "Gross")) }
        th scope="col" class="num" { (ctx.t("Phần nhà mạng", "Carrier share")) }
        th scope="col" class="num" { (ctx.t("Thực thu", "Net")) }
    }
}

fn sums_cells(r: &RevenueRow) -> Markup {
    html! {
        td class="num" { (money(r.sums.gross)) }
        td class="num" { (money(r.sums.carrier_share)) }
        td class="num" { (money(r.sums.net)) }
    }
}

fn table(
    ctx: &Ctx,
    id: &str,
    caption: &str,
    heads: &[&str],
    r: &RevenueReport,
    cells: impl Fn(&RevenueRow) -> Vec<String>,
) -> Markup {
    html! {
        section id=(id) {
            @if r.rows.is_empty() {
                h2 { (caption) }
                p class="empty" { (ctx.t("Chưa có doanh thu trong kỳ này.", "No revenue in this period yet.")) }
            } @else {
                // A wide table scrolls on a phone: the region takes the keyboard's focus.
                div class="scroll" tabindex="0" role="region" aria-label=(caption) {
                    table {
                        caption { (caption) }
                        thead { tr { @for h in heads { th scope="col" { (h) } } (sums_head(ctx)) } }
                        tbody { @for row in &r.rows { tr { @for c in cells(row) { td { (c) } } (sums_cells(row)) } } }
                    }
                }
            }
        }
    }
}

fn downloads(ctx: &Ctx, month: Month) -> Markup {
    let m = month.key();
    html! {
        section id="downloads" {
            h2 { (ctx.t("Tải dữ liệu", "Downloads")) }
            ul {
                @for (group, vi, en) in [
                    ("district", "Theo quận", "By district"),
                    ("district,street", "Theo tuyến phố", "By street"),
                    ("day", "Theo ngày", "By day"),
                    ("channel", "Theo kênh thanh toán", "By payment channel"),
                ] {
                    li {
                        (ctx.t(vi, en)) ": "
                        a href={ "/public/revenue.csv?month=" (m) "&group_by=" (group) } download { "CSV" }
                        " · "
                        a href={ "/public/revenue.json?month=" (m) "&group_by=" (group) } { "JSON" }
                    }
                }
            }
        }
    }
}

pub(super) fn page(ctx: &Ctx, licence: &str, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(ctx.lang.code()) {
            (head(title))
            body {
                header class="top" {
                    a class="brand" href="/public" { "iParking " span { (ctx.t("Công khai", "Open data")) } }
                    div class="who" {
                        (lang_switch(ctx))
                    }
                }
                main { (body) }
                footer {
                    (ctx.t(
                        "Số liệu cộng thẳng từ sổ cái kép của thành phố (không có dữ liệu cá nhân); giờ Hà Nội (UTC+7); đơn vị: đồng. \
                         Doanh thu = tiền gửi xe đã thu, trừ tiền hoàn; phần nhà mạng là phí của nhà mạng trên lượt SMS.",
                        "Sums straight from the city's double-entry ledger (no personal data); Hanoi time (UTC+7); amounts in VND. \
                         Gross = parking paid, net of refunds; the carrier share is the carriers' fee on SMS turns."
                    ))
                    " "
                    (ctx.t("Công bố theo", "Published under"))
                    " "
                    a href=(licence) rel="license" { (ctx.t("giấy phép dữ liệu", "the data licence")) }
                    "."
                }
            }
        }
    }
}

/// `GET /public`: this month's revenue by district, by street and by channel, and the last
/// 30 days.
pub async fn public_page(State(app): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let ctx = Ctx::new(&headers, &uri);
    match render(&app, &ctx).await {
        Ok(body) => ctx.html(StatusCode::OK, body),
        Err(e) => {
            let status = StatusCode::from_u16(e.status.as_u16()).unwrap_or(StatusCode::BAD_REQUEST);
            let body = html! { h1 { (ctx.t("Không hiển thị được", "Cannot show this")) } p class="error" { (e.message(ctx.lang == Lang::En)) } };
            ctx.html(
                status,
                page(&ctx, &app.settings.data_license_url, ctx.t("Doanh thu công khai", "Public revenue"), body),
            )
        }
    }
}

async fn render(app: &App, ctx: &Ctx) -> Result<Markup, AppError> {
    let q: PageQuery = ctx.query()?;
    let month = month_param(app, q.month.as_deref())?;
    let by_district = month_report(app, month, "district").await?;
    let by_street = month_report(app, month, "district,street").await?;
    let by_channel = month_report(app, month, "channel").await?;
    let days = last_30_days(app).await?;
    let title = ctx.t("Doanh thu gửi xe công khai", "Public parking revenue");
    let chart_rows: Vec<(String, i64)> =
        days.rows.iter().filter_map(|r| r.day.map(|d| (d.format("%d/%m").to_string(), r.sums.net))).collect();
    let district =
        |r: &RevenueRow| vec![r.district_name.clone().or_else(|| r.district_code.clone()).unwrap_or_default()];
    let street = |r: &RevenueRow| {
        vec![
            r.district_name.clone().or_else(|| r.district_code.clone()).unwrap_or_default(),
            r.street_name.clone().unwrap_or_default(),
        ]
    };
    let channel = |r: &RevenueRow| vec![r.channel.map(|c| channel_label(c, ctx.lang).to_owned()).unwrap_or_default()];
    let body = html! {
        h1 { (title) " · " (month.label(ctx.lang)) }
        p { (ctx.t(
            "Mỗi đồng thu ở lề đường được ghi vào sổ cái; trang này cộng sổ cái theo quận, tuyến phố, ngày và kênh thanh toán.",
            "Every đồng taken at the curb is written in the ledger; this page adds the ledger up by district, street, day and payment channel."
        )) }
        (month_nav(ctx, "/public", month))
        (totals_cards(ctx, &by_district.totals))
        section id="last-30-days" {
            h2 { (ctx.t("Thực thu 30 ngày qua", "Net revenue, last 30 days")) }
            @if chart_rows.is_empty() {
                p class="empty" { (ctx.t("Chưa có doanh thu trong 30 ngày qua.", "No revenue in the last 30 days yet.")) }
            } @else {
                div class="scroll" tabindex="0" role="region" aria-label=(ctx.t("Biểu đồ thực thu", "Net revenue chart")) { (bar_chart(ctx.t("Thực thu theo ngày", "Net revenue by day"), &chart_rows)) }
            }
        }
        (table(ctx, "by-district", ctx.t("Theo quận", "By district"), &[ctx.t("Quận", "District")], &by_district, district))
        (table(ctx, "by-street", ctx.t("Theo tuyến phố", "By street"), &[ctx.t("Quận", "District"), ctx.t("Tuyến phố", "Street")], &by_street, street))
        (table(ctx, "by-channel", ctx.t("Theo kênh thanh toán", "By payment channel"), &[ctx.t("Kênh", "Channel")], &by_channel, channel))
        (downloads(ctx, month))
        p { a href={ "/public/ledger/digests" @if ctx.lang == Lang::En { "?lang=en" } } { (ctx.t(
            "Dấu vân tay sổ cái hằng ngày: kiểm chứng rằng không giao dịch nào bị sửa sau đó",
            "Daily ledger digests: proof that no transaction was changed afterwards"
        )) } }
    };
    Ok(page(ctx, &app.settings.data_license_url, title, body))
}

async fn download(app: &App, ctx: &Ctx) -> Result<(Month, RevenueReport), AppError> {
    let q: DownloadQuery = ctx.query()?;
    let month = month_param(app, q.month.as_deref())?;
    let group_by = q.group_by.unwrap_or_else(|| "district".to_owned());
    let dims: Vec<&str> = group_by.split(',').map(str::trim).filter(|g| !g.is_empty()).collect();
    if dims.contains(&"street") && dims.contains(&"channel") {
        // A street's takings per channel (per day) would show what one warden collected.
        return Err(AppError::unprocessable(
            "invalid_group",
            "Trang công khai không chia tuyến phố theo kênh thanh toán.",
            "The public figures do not split a street by payment channel.",
        ));
    }
    for g in dims {
        if !PUBLIC_DIMS.contains(&g) {
            return Err(AppError::bad_request(
                "invalid_group",
                format!("Trang công khai nhóm theo: {}.", PUBLIC_DIMS.join(", ")),
                format!("The public figures group by: {}.", PUBLIC_DIMS.join(", ")),
            ));
        }
    }
    Ok((month, month_report(app, month, &group_by).await?))
}

pub(super) fn open_data_headers(app: &App, mut r: Response) -> Response {
    let h = r.headers_mut();
    if let Ok(link) = HeaderValue::from_str(&format!("<{}>; rel=\"license\"", app.settings.data_license_url)) {
        h.insert(header::LINK, link);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r
}

/// `GET /public/revenue.csv?month=&group_by=`: the month's figures as CSV (UTF-8 with BOM).
pub async fn public_csv(State(app): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let ctx = Ctx::new(&headers, &uri);
    match download(&app, &ctx).await {
        Ok((month, r)) => {
            open_data_headers(&app, csv_response(&format!("iparking-revenue-{}.csv", month.key()), revenue_csv(&r)))
        }
        Err(e) => e.into_response(),
    }
}

/// `GET /public/revenue.json?month=&group_by=`: the month's figures as JSON (the finance
/// API's report shape, city-wide).
pub async fn public_json(State(app): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let ctx = Ctx::new(&headers, &uri);
    match download(&app, &ctx).await {
        Ok((_, r)) => open_data_headers(&app, axum::Json(r).into_response()),
        Err(e) => e.into_response(),
    }
}
