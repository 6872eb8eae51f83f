//! The templates every page shares: the page around the content, notices, the month switcher
//! and the revenue figures. maud escapes every interpolated string.

use iparking_mobile_api::RevenueSums;
use maud::{DOCTYPE, Markup, html};

use super::{
    labels::{Lang, Month, group_thousands, money, role_label},
    request::Ctx,
};
use crate::{error::AppError, store::Principal};

/// A page's `<head>` (the dashboard's and the public pages' style sheet).
pub(super) fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · iParking" }
            link rel="stylesheet" href="/finance/assets/finance.css";
        }
    }
}

/// The link to this page in the other language.
pub(super) fn lang_switch(ctx: &Ctx) -> Markup {
    html! {
        a id="lang-switch" class="lang" href=(ctx.other_lang_href())
            hreflang=(if ctx.lang == Lang::Vi { "en" } else { "vi" }) {
            (ctx.t("English", "Tiếng Việt"))
        }
    }
}

/// The page around `body`: head, header with navigation, language switch, logout.
pub(super) fn layout(ctx: &Ctx, user: Option<&Principal>, month: Option<Month>, title: &str, body: Markup) -> Markup {
    let month_query = month.map(|m| format!("?month={}", m.key())).unwrap_or_default();
    let period = month.map_or_else(|| "/finance/periods".to_owned(), |m| format!("/finance/periods/{}", m.key()));
    html! {
        (DOCTYPE)
        html lang=(ctx.lang.code()) {
            (head(title))
            body {
                header class="top" {
                    a class="brand" href="/finance" { "iParking " span { (ctx.t("Tài chính", "Finance")) } }
                    @if user.is_some() {
                        nav {
                            a href={ "/finance" (month_query) } { (ctx.t("Doanh thu", "Revenue")) }
                            a href={ "/finance/reconciliation" (month_query) } { (ctx.t("Đối soát", "Reconciliation")) }
                            a href=(period) { (ctx.t("Khóa sổ", "Period close")) }
                        }
                    }
                    div class="who" {
                        @if let Some(p) = user {
                            span class="user" { (p.name) }
                            " "
                            span class="role" {
                                (role_label(p.role, ctx.lang)) " · "
                                @if p.is_city_wide() {
                                    (ctx.t("toàn thành phố", "city-wide"))
                                } @else {
                                    (p.district_codes.join(", "))
                                }
                            }
                            form method="post" action="/finance/logout" class="inline" {
                                button type="submit" { (ctx.t("Đăng xuất", "Log out")) }
                            }
                        }
                        " "
                        (lang_switch(ctx))
                    }
                }
                main { (body) }
                footer {
                    (ctx.t(
                        "Số liệu lấy từ sổ cái kép; giờ Hà Nội (UTC+7); đơn vị: đồng.",
                        "Figures come from the double-entry ledger; Hanoi time (UTC+7); amounts in VND."
                    ))
                }
            }
        }
    }
}

/// The content of an error page.
pub(super) fn error_body(ctx: &Ctx, title: &str, e: &AppError) -> Markup {
    html! {
        h1 { (title) }
        p class="flash error" role="alert" { (e.message(ctx.lang == Lang::En)) " " code { (e.code) } }
        p { a href="/finance" { (ctx.t("Về trang doanh thu", "Back to revenue")) } }
    }
}

/// What a notice tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flash {
    /// Done.
    Ok,
    /// Worth knowing.
    Info,
    /// Not done.
    Error,
}

/// A notice above a page; screen readers read it out (an error at once).
pub(super) fn flash(kind: Flash, text: &str) -> Markup {
    let (class, role) = match kind {
        Flash::Ok => ("flash ok", "status"),
        Flash::Info => ("flash info", "alert"),
        Flash::Error => ("flash error", "alert"),
    };
    html! { p class=(class) role=(role) { (text) } }
}

/// A service error shown above a page: the message and its stable code.
pub(super) fn error_flash(ctx: &Ctx, prefix: &str, e: &AppError) -> Markup {
    html! {
        p class="flash error" role="alert" { (prefix) (e.message(ctx.lang == Lang::En)) " " code { (e.code) } }
    }
}

/// The month switcher: the month before, a month field, the month after.
pub(super) fn month_nav(ctx: &Ctx, base: &str, month: Month) -> Markup {
    let sep = if base.contains('?') { '&' } else { '?' };
    let (prev, next) = (month.prev(), month.next());
    html! {
        form class="month-nav" method="get" action=(base.split('?').next().unwrap_or(base)) {
            a href={ (base) (sep) "month=" (prev.key()) } rel="prev" { "← " (prev.label(ctx.lang)) }
            label {
                (ctx.t("Tháng", "Month")) " "
                input type="month" name="month" value=(month.key()) min="2000-01" max="9999-12";
            }
            button type="submit" { (ctx.t("Xem", "Show")) }
            a href={ (base) (sep) "month=" (next.key()) } rel="next" { (next.label(ctx.lang)) " →" }
        }
    }
}

/// The four totals of a revenue report, large.
pub(super) fn totals_cards(ctx: &Ctx, t: &RevenueSums) -> Markup {
    let cards = [
        (ctx.t("Doanh thu", "Gross revenue"), money(t.gross), "gross"),
        (ctx.t("Phần nhà mạng", "Carrier share"), money(t.carrier_share), "share"),
        (ctx.t("Thực thu", "Net"), money(t.net), "net"),
        (ctx.t("Số bút toán", "Postings"), group_thousands(t.postings), "postings"),
    ];
    html! {
        div class="stats" {
            @for (label, value, class) in cards {
                div class={ "stat " (class) } { span { (label) } strong { (value) } }
            }
        }
    }
}

/// The districts a user with a limited scope sees (nothing for city-wide users).
pub(super) fn scope_note(ctx: &Ctx, scope: &[String]) -> Markup {
    html! {
        @if !scope.is_empty() {
            p class="scope" { (ctx.t("Phạm vi của bạn: quận", "Your scope: districts")) " " (scope.join(", ")) }
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, Uri};
    use iparking_mobile_api::StaffRole;

    use super::*;
    use crate::http::finance_web::access::test_user;

    fn ctx(uri: &str) -> Ctx {
        Ctx::new(&HeaderMap::new(), &uri.parse::<Uri>().unwrap())
    }

    #[test]
    fn the_page_around_names_the_user_and_links_the_month() {
        let ctx = ctx("/finance/reconciliation?month=2026-11&q=%3Cx%3E");
        let month = Month::parse("2026-11");
        let p = test_user(StaffRole::Finance, &["HK", "BD"]);
        let page = layout(&ctx, Some(&p), month, "Đối soát <tháng>", html! { p { "nội dung" } }).into_string();
        assert!(page.starts_with("<!DOCTYPE html><html lang=\"vi\"><head><meta charset=\"utf-8\">"), "{page}");
        assert!(page.contains("<title>Đối soát &lt;tháng&gt; · iParking</title>"), "{page}");
        assert!(page.contains("<link rel=\"stylesheet\" href=\"/finance/assets/finance.css\">"), "{page}");
        assert!(
            page.contains(
                "<nav><a href=\"/finance?month=2026-11\">Doanh thu</a>\
                 <a href=\"/finance/reconciliation?month=2026-11\">Đối soát</a>\
                 <a href=\"/finance/periods/2026-11\">Khóa sổ</a></nav>"
            ),
            "{page}"
        );
        assert!(
            page.contains(
                "<span class=\"user\">Nguyễn &lt;Kế&gt; &amp; &quot;Toán&quot;</span> \
                 <span class=\"role\">Tài chính · HK, BD</span>"
            ),
            "{page}"
        );
        assert!(page.contains("<form method=\"post\" action=\"/finance/logout\" class=\"inline\">"), "{page}");
        // The language switch keeps the query, escaped in the attribute.
        assert!(
            page.contains(
                " <a id=\"lang-switch\" class=\"lang\" href=\"/finance/reconciliation?month=2026-11&amp;q=%3Cx%3E&amp;lang=en\" hreflang=\"en\">English</a></div></header>"
            ),
            "{page}"
        );
        assert!(page.contains("<main><p>nội dung</p></main><footer>Số liệu lấy từ sổ cái kép;"), "{page}");
        assert!(page.ends_with("</footer></body></html>"), "{page}");
    }

    #[test]
    fn signed_out_the_page_has_no_navigation_nor_logout() {
        let ctx = ctx("/finance/login?lang=en");
        let admin = test_user(StaffRole::Admin, &[]);
        let page = layout(&ctx, None, None, "Sign in", html! {}).into_string();
        assert!(page.contains("<html lang=\"en\">"), "{page}");
        assert!(!page.contains("<nav>") && !page.contains("/finance/logout"), "{page}");
        assert!(page.contains("<div class=\"who\"> <a id=\"lang-switch\""), "{page}");
        assert!(page.contains("href=\"/finance/login?lang=vi\" hreflang=\"vi\">Tiếng Việt</a>"), "{page}");
        assert!(page.contains("Figures come from the double-entry ledger"), "{page}");
        // Without a month, the period link goes to the period index; city-wide users say so.
        let page = layout(&ctx, Some(&admin), None, "t", html! {}).into_string();
        assert!(page.contains("<a href=\"/finance\">Revenue</a>"), "{page}");
        assert!(page.contains("<a href=\"/finance/periods\">Period close</a>"), "{page}");
        assert!(page.contains("<span class=\"role\">Admin (read only) · city-wide</span>"), "{page}");
    }

    #[test]
    fn errors_and_notices_are_announced() {
        let ctx = ctx("/finance?lang=en");
        let e = AppError::bad_request("invalid_period", "Tháng <sai>.", "Bad <month>.");
        let body = error_body(&ctx, "Something went wrong", &e).into_string();
        assert_eq!(
            body,
            "<h1>Something went wrong</h1><p class=\"flash error\" role=\"alert\">Bad &lt;month&gt;. \
             <code>invalid_period</code></p><p><a href=\"/finance\">Back to revenue</a></p>"
        );
        assert_eq!(
            error_flash(&ctx, "#3: ", &e).into_string(),
            "<p class=\"flash error\" role=\"alert\">#3: Bad &lt;month&gt;. <code>invalid_period</code></p>"
        );
        assert_eq!(flash(Flash::Ok, "a & b").into_string(), "<p class=\"flash ok\" role=\"status\">a &amp; b</p>");
        assert_eq!(flash(Flash::Info, "i").into_string(), "<p class=\"flash info\" role=\"alert\">i</p>");
        assert_eq!(flash(Flash::Error, "e").into_string(), "<p class=\"flash error\" role=\"alert\">e</p>");
    }

    #[test]
    fn the_month_switcher_steps_and_labels_its_field() {
        let nav = month_nav(&ctx("/finance"), "/finance/streets/4", Month::parse("2026-12").unwrap()).into_string();
        assert_eq!(
            nav,
            "<form class=\"month-nav\" method=\"get\" action=\"/finance/streets/4\">\
             <a href=\"/finance/streets/4?month=2026-11\" rel=\"prev\">← tháng 11/2026</a>\
             <label>Tháng <input type=\"month\" name=\"month\" value=\"2026-12\" min=\"2000-01\" max=\"9999-12\"></label>\
             <button type=\"submit\">Xem</button>\
             <a href=\"/finance/streets/4?month=2027-01\" rel=\"next\">tháng 01/2027 →</a></form>"
        );
        let nav = month_nav(&ctx("/finance?lang=en"), "/finance?x=1", Month::parse("2026-01").unwrap()).into_string();
        assert!(nav.contains("action=\"/finance\""), "{nav}");
        assert!(nav.contains("href=\"/finance?x=1&amp;month=2025-12\" rel=\"prev\">← December 2025</a>"), "{nav}");
    }

    #[test]
    fn totals_and_scope() {
        let ctx = ctx("/finance");
        let t = RevenueSums { gross: 1_250_000, carrier_share: 125_000, net: 1_125_000, postings: 1_234 };
        assert_eq!(
            totals_cards(&ctx, &t).into_string(),
            "<div class=\"stats\"><div class=\"stat gross\"><span>Doanh thu</span><strong>1.250.000 ₫</strong></div>\
             <div class=\"stat share\"><span>Phần nhà mạng</span><strong>125.000 ₫</strong></div>\
             <div class=\"stat net\"><span>Thực thu</span><strong>1.125.000 ₫</strong></div>\
             <div class=\"stat postings\"><span>Số bút toán</span><strong>1.234</strong></div></div>"
        );
        assert_eq!(scope_note(&ctx, &[]).into_string(), "");
        assert_eq!(
            scope_note(&ctx, &["HK".to_owned(), "<BD>".to_owned()]).into_string(),
            "<p class=\"scope\">Phạm vi của bạn: quận HK, &lt;BD&gt;</p>"
        );
    }
}
