//! What every page reads from the request and how it answers: the language, typed query strings
//! and form bodies, the dashboard's cookies and headers, redirects and error pages.

use std::collections::HashSet;

use axum::{
    body::Bytes,
    http::{HeaderMap, HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use cookie::{Cookie, SameSite, time::Duration};
use maud::Markup;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, de::DeserializeOwned};

use super::{
    CSP, FORM_MAX, LANG_COOKIE, SESSION_COOKIE,
    guard::post_allowed,
    labels::{Lang, Month},
    views,
};
use crate::{App, domain::tariff::LOCAL_TZ, error::AppError, store::Principal};

/// What a URL component may hold as it is: RFC 3986's unreserved characters.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Percent-encodes a query component (everything but the unreserved characters).
pub fn enc(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

/// The value of cookie `name` in the request's `Cookie` headers (the first one sent).
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| Cookie::split_parse(v).filter_map(Result::ok))
        .find(|c| c.name() == name)
        .map(|c| c.value_trimmed().to_owned())
}

/// Typed fields of `application/x-www-form-urlencoded` text (a query string or a form body).
///
/// Of a field sent twice the first counts, as it always has on the dashboard (a derived
/// struct would refuse the whole request), so the later ones are dropped before reading.
pub(super) fn read_fields<T: DeserializeOwned>(raw: &[u8]) -> Result<T, serde_urlencoded::de::Error> {
    let mut seen = HashSet::new();
    let firsts = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form_urlencoded::parse(raw).filter(|(name, _)| seen.insert(name.clone())))
        .finish();
    serde_urlencoded::from_str(&firsts)
}

/// The query field every page reads.
#[derive(Deserialize)]
struct LangQuery {
    /// `vi` or `en`: switch, and remember it.
    lang: Option<String>,
}

/// The query of the pages that show a month.
#[derive(Deserialize)]
pub(super) struct MonthQuery {
    /// `YYYY-MM`; none or empty: this month.
    pub month: Option<String>,
}

/// What every page needs from the request.
pub(super) struct Ctx {
    pub lang: Lang,
    /// Set the language cookie (the query chose a language).
    remember_lang: bool,
    path: String,
    /// The query as sent.
    raw_query: String,
    /// Its fields in order, to link to this page again.
    query: Vec<(String, String)>,
    secure: bool,
}

impl Ctx {
    pub fn new(headers: &HeaderMap, uri: &Uri) -> Self {
        let raw_query = uri.query().unwrap_or("").to_owned();
        let query = form_urlencoded::parse(raw_query.as_bytes()).into_owned().collect();
        // A query that does not read is the page's own error to show; here it chooses nothing.
        let asked = read_fields::<LangQuery>(raw_query.as_bytes()).ok().and_then(|q| q.lang);
        let asked = asked.as_deref().and_then(Lang::parse);
        let lang =
            asked.or_else(|| cookie_value(headers, LANG_COOKIE).as_deref().and_then(Lang::parse)).unwrap_or(Lang::Vi);
        let secure = headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"));
        Self { lang, remember_lang: asked.is_some(), path: uri.path().to_owned(), raw_query, query, secure }
    }

    pub fn t(&self, vi: &'static str, en: &'static str) -> &'static str {
        self.lang.t(vi, en)
    }

    /// The query's fields as `T`.
    pub fn query<T: DeserializeOwned>(&self) -> Result<T, AppError> {
        read_fields(self.raw_query.as_bytes()).map_err(|_| {
            AppError::bad_request("invalid_query", "Tham số truy vấn không hợp lệ.", "Invalid query parameters.")
        })
    }

    /// The query without `lang`, encoded again.
    fn query_without_lang(&self) -> Vec<String> {
        self.query.iter().filter(|(k, _)| k != "lang").map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect()
    }

    /// This page in the other language.
    pub fn other_lang_href(&self) -> String {
        let other = match self.lang {
            Lang::Vi => "en",
            Lang::En => "vi",
        };
        let mut q = self.query_without_lang();
        q.push(format!("lang={other}"));
        format!("{}?{}", self.path, q.join("&"))
    }

    /// The path and query of this request (for the login's way back).
    pub fn here(&self) -> String {
        let q = self.query_without_lang();
        if q.is_empty() { self.path.clone() } else { format!("{}?{}", self.path, q.join("&")) }
    }

    /// A cookie of the dashboard: only for its pages, never for scripts nor other sites, and
    /// over HTTPS only when the request came that way.
    fn cookie(&self, name: &'static str, value: String) -> cookie::CookieBuilder<'static> {
        Cookie::build((name, value)).path("/finance").http_only(true).same_site(SameSite::Strict).secure(self.secure)
    }

    /// Signs in: the session cookie carries the staff token until the browser closes.
    pub fn set_session_cookie(&self, r: &mut Response, token: &str) {
        append_cookie(r, &self.cookie(SESSION_COOKIE, token.to_owned()).build());
    }

    /// Signs out: an empty session cookie that expires at once.
    pub fn clear_session_cookie(&self, r: &mut Response) {
        append_cookie(r, &self.cookie(SESSION_COOKIE, String::new()).max_age(Duration::ZERO).build());
    }

    fn add_lang_cookie(&self, r: &mut Response) {
        if self.remember_lang {
            let c = self.cookie(LANG_COOKIE, self.lang.code().to_owned()).max_age(Duration::days(365)).build();
            append_cookie(r, &c);
        }
    }

    /// An HTML answer with the dashboard's headers.
    pub fn html(&self, status: StatusCode, page: Markup) -> Response {
        let mut r = (status, page.into_string()).into_response();
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
        h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
        h.insert(header::CONTENT_LANGUAGE, HeaderValue::from_static(self.lang.code()));
        self.add_lang_cookie(&mut r);
        r
    }

    /// A 303 to `location`, keeping a language just chosen.
    pub fn redirect(&self, location: &str) -> Response {
        let mut r = see_other(location);
        self.add_lang_cookie(&mut r);
        r
    }

    /// An error page for a service error.
    pub fn error_page(&self, user: Option<&Principal>, month: Option<Month>, e: &AppError) -> Response {
        let title = self.t("Không thực hiện được", "Something went wrong");
        self.html(e.status, views::layout(self, user, month, title, views::error_body(self, title, e)))
    }

    /// The form in `body` as `T`, once the request has shown it comes from our pages and every
    /// field is text without control characters.
    pub fn read_form<T: DeserializeOwned>(&self, headers: &HeaderMap, body: &Bytes) -> Result<T, AppError> {
        if !post_allowed(headers) {
            return Err(foreign_origin());
        }
        if body.len() > FORM_MAX {
            return Err(AppError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Nội dung biểu mẫu quá lớn.",
                "The form is too large.",
            ));
        }
        for (name, value) in form_urlencoded::parse(body) {
            crate::http::input::check_text(&name, &value)?;
        }
        read_fields(body)
            .map_err(|_| AppError::bad_request("invalid_body", "Biểu mẫu không hợp lệ.", "The form is not valid."))
    }
}

/// 403 for a POST that did not come from our pages ([`post_allowed`]).
pub(super) fn foreign_origin() -> AppError {
    AppError::forbidden(
        "Yêu cầu không đến từ trang của bảng điều khiển (Origin hoặc Sec-Fetch-Site không khớp).",
        "The request did not come from the dashboard's pages (Origin or Sec-Fetch-Site does not match).",
    )
}

fn append_cookie(r: &mut Response, c: &Cookie<'_>) {
    if let Ok(v) = HeaderValue::from_str(&c.to_string()) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// A 303 to `location`, never stored.
pub(super) fn see_other(location: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The month asked for (`month=`), or the current local month.
pub(super) fn month_param(app: &App, month: Option<&str>) -> Result<Month, AppError> {
    match month.filter(|m| !m.is_empty()) {
        Some(m) => Month::parse(m).ok_or_else(invalid_month),
        None => Ok(current_month(app)),
    }
}

pub(super) fn current_month(app: &App) -> Month {
    Month::of(app.clock.now().with_timezone(&LOCAL_TZ).date_naive())
}

pub(super) fn invalid_month() -> AppError {
    AppError::bad_request("invalid_period", "Tháng cần dạng YYYY-MM.", "A month is written YYYY-MM.")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A form as the dashboard's are: every field text, some optional.
    #[derive(Debug, Deserialize, PartialEq)]
    struct Form {
        #[serde(default)]
        note: String,
        month: Option<String>,
        empty: Option<String>,
        flag: Option<String>,
        missing: Option<String>,
    }

    async fn body_text(r: Response) -> String {
        let bytes = axum::body::to_bytes(r.into_body(), usize::MAX).await.unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn set_cookies(r: &Response) -> Vec<String> {
        r.headers().get_all(header::SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_owned()).collect()
    }

    #[test]
    fn forms_decode_percent_and_plus() {
        let f: Form = read_fields(b"note=%C4%90%C3%A3+n%E1%BB%99p+%26+ok&month=2026-11&empty=&flag").unwrap();
        assert_eq!(f.note, "Đã nộp & ok");
        assert_eq!(f.month.as_deref(), Some("2026-11"));
        assert_eq!(f.empty.as_deref(), Some(""));
        assert_eq!(f.flag.as_deref(), Some(""));
        assert_eq!(f.missing, None);
        // Broken escapes stay as they are; `%25` is a percent sign; unknown fields are ignored.
        let f: Form = read_fields(b"note=%zz%4&month=100%25&other=1").unwrap();
        assert_eq!((f.note.as_str(), f.month.as_deref()), ("%zz%4", Some("100%")));
        // Nothing sent: the defaults.
        assert_eq!(
            read_fields::<Form>(b"").unwrap(),
            Form { note: String::new(), month: None, empty: None, flag: None, missing: None }
        );
        // Bytes that are not UTF-8 become U+FFFD rather than failing the form.
        let f: Form = read_fields(b"note=a%FFb").unwrap();
        assert_eq!(f.note, "a\u{FFFD}b");
    }

    #[test]
    fn a_field_sent_twice_counts_once_the_first_time() {
        let f: Form = read_fields(b"month=2026-01&note=a&month=2026-02&note=b").unwrap();
        assert_eq!((f.month.as_deref(), f.note.as_str()), (Some("2026-01"), "a"));
        // Only the name counts: `month` and `Month` are two fields.
        let f: Form = read_fields(b"Month=x&month=2026-03").unwrap();
        assert_eq!(f.month.as_deref(), Some("2026-03"));
    }

    #[test]
    fn a_query_that_does_not_fit_its_type_is_a_bad_request() {
        #[derive(Debug, Deserialize)]
        struct Typed {
            n: i64,
        }
        let ctx = Ctx::new(&HeaderMap::new(), &"/finance?n=x".parse().unwrap());
        let e = ctx.query::<Typed>().unwrap_err();
        assert_eq!((e.status, e.code), (StatusCode::BAD_REQUEST, "invalid_query"));
        let ctx = Ctx::new(&HeaderMap::new(), &"/finance?n=7&n=x".parse().unwrap());
        assert_eq!(ctx.query::<Typed>().unwrap().n, 7);
    }

    #[test]
    fn components_are_percent_encoded_but_the_unreserved() {
        assert_eq!(enc("a b/c"), "a%20b%2Fc");
        assert_eq!(enc("Đ+&=?#*"), "%C4%90%2B%26%3D%3F%23%2A");
        assert_eq!(enc("AZaz09-._~"), "AZaz09-._~");
        let round = "Trần Hưng Đạo & co/?=#";
        let decoded: Vec<(String, String)> =
            form_urlencoded::parse(format!("k={}", enc(round)).as_bytes()).into_owned().collect();
        assert_eq!(decoded, vec![("k".to_owned(), round.to_owned())]);
    }

    #[test]
    fn cookies_are_found_by_name() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1;  xiparking_finance=no ;iparking_finance=ipk_staff_abc ; b=2"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("iparking_finance_lang=\"en\"; iparking_finance=second"));
        assert_eq!(cookie_value(&h, SESSION_COOKIE).as_deref(), Some("ipk_staff_abc"));
        assert_eq!(cookie_value(&h, LANG_COOKIE).as_deref(), Some("en"));
        assert_eq!(cookie_value(&h, "b").as_deref(), Some("2"));
        assert_eq!(cookie_value(&h, "c"), None);
        // Pieces that are no cookie are skipped, not the header.
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("junk; =x; ; iparking_finance=t"));
        assert_eq!(cookie_value(&h, SESSION_COOKIE).as_deref(), Some("t"));
        assert_eq!(cookie_value(&HeaderMap::new(), SESSION_COOKIE), None);
    }

    #[test]
    fn cookies_set_are_for_the_dashboard_only() {
        let plain = Ctx::new(&HeaderMap::new(), &"/finance/login?lang=en".parse().unwrap());
        let mut r = plain.redirect("/finance");
        plain.set_session_cookie(&mut r, "ipk_staff_abc");
        let set = set_cookies(&r);
        assert_eq!(set.len(), 2, "{set:?}");
        for (c, name, value, max_age) in
            [(&set[0], LANG_COOKIE, "en", Some(31_536_000)), (&set[1], SESSION_COOKIE, "ipk_staff_abc", None)]
        {
            let parsed = Cookie::parse(c.as_str()).unwrap();
            assert_eq!((parsed.name(), parsed.value()), (name, value), "{c}");
            assert_eq!(parsed.path(), Some("/finance"), "{c}");
            assert_eq!(parsed.http_only(), Some(true), "{c}");
            assert_eq!(parsed.same_site(), Some(SameSite::Strict), "{c}");
            assert_eq!(parsed.secure(), None, "{c}: plain HTTP");
            assert_eq!(parsed.max_age().map(|d| d.whole_seconds()), max_age, "{c}");
            assert!(c.starts_with(&format!("{name}={value}; ")), "{c}");
        }
        // Behind an HTTPS proxy, Secure too; signing out empties and expires the session.
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-proto", HeaderValue::from_static("HTTPS"));
        let https = Ctx::new(&h, &"/finance/logout".parse().unwrap());
        let mut r = https.redirect("/finance/login");
        https.clear_session_cookie(&mut r);
        let set = set_cookies(&r);
        assert_eq!(set.len(), 1, "no language chosen, no language cookie: {set:?}");
        let parsed = Cookie::parse(set[0].as_str()).unwrap();
        assert_eq!((parsed.name(), parsed.value()), (SESSION_COOKIE, ""));
        assert_eq!(parsed.max_age().map(|d| d.whole_seconds()), Some(0));
        assert_eq!((parsed.secure(), parsed.http_only(), parsed.path()), (Some(true), Some(true), Some("/finance")));
        assert_eq!(parsed.same_site(), Some(SameSite::Strict));
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(r.headers()[header::LOCATION], "/finance/login");
    }

    #[test]
    fn language_links_keep_the_query() {
        let uri: Uri = "/finance/reconciliation?month=2026-11&lang=vi".parse().unwrap();
        let ctx = Ctx::new(&HeaderMap::new(), &uri);
        assert_eq!(ctx.lang, Lang::Vi);
        assert_eq!(ctx.other_lang_href(), "/finance/reconciliation?month=2026-11&lang=en");
        assert_eq!(ctx.here(), "/finance/reconciliation?month=2026-11");
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("iparking_finance_lang=en"));
        let ctx = Ctx::new(&h, &"/finance".parse().unwrap());
        assert_eq!((ctx.lang, ctx.remember_lang), (Lang::En, false));
        assert_eq!(ctx.other_lang_href(), "/finance?lang=vi");
        // The query is decoded and encoded again, in order; an unknown language is no choice.
        let ctx = Ctx::new(&h, &"/finance/streets/1?a=%C4%90+%26x&lang=fr&month=2026-11".parse().unwrap());
        assert_eq!((ctx.lang, ctx.remember_lang), (Lang::En, false));
        assert_eq!(ctx.here(), "/finance/streets/1?a=%C4%90%20%26x&month=2026-11");
        // The first `lang` counts, as for every field.
        let ctx = Ctx::new(&h, &"/finance?lang=vi&lang=en".parse().unwrap());
        assert_eq!((ctx.lang, ctx.remember_lang), (Lang::Vi, true));
    }

    #[tokio::test]
    async fn pages_carry_the_dashboard_headers() {
        let ctx = Ctx::new(&HeaderMap::new(), &"/finance?lang=en".parse().unwrap());
        let r = ctx.html(StatusCode::CREATED, maud::html! { p { "x" } });
        assert_eq!(r.status(), StatusCode::CREATED);
        let h = r.headers();
        assert_eq!(h[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(h[header::CACHE_CONTROL], "no-store");
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], CSP);
        assert!(CSP.starts_with("default-src 'none';") && !CSP.contains("script-src"));
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(h[header::REFERRER_POLICY], "same-origin");
        assert_eq!(h[header::CONTENT_LANGUAGE], "en");
        assert_eq!(set_cookies(&r).len(), 1);
        assert_eq!(body_text(r).await, "<p>x</p>");
    }

    #[tokio::test]
    async fn forms_are_read_only_from_our_pages_small_and_without_control_characters() {
        let mut ours = HeaderMap::new();
        ours.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        ours.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:8080"));
        let ctx = Ctx::new(&ours, &"/finance/periods/2026-11/close?lang=en".parse().unwrap());
        let body = Bytes::from_static(b"note=line%0Anext&month=2026-11");
        let f: Form = ctx.read_form(&ours, &body).unwrap();
        assert_eq!((f.note.as_str(), f.month.as_deref()), ("line\nnext", Some("2026-11")));

        let mut evil = ours.clone();
        evil.insert(header::ORIGIN, HeaderValue::from_static("http://evil.example"));
        let e = ctx.read_form::<Form>(&evil, &body).unwrap_err();
        assert_eq!((e.status, e.code), (StatusCode::FORBIDDEN, "forbidden"));
        // Answered as an HTML page in the user's language.
        let r = ctx.error_page(None, None, &e);
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
        let page = body_text(r).await;
        assert!(page.contains("<html lang=\"en\">") && page.contains("Origin or Sec-Fetch-Site"), "{page}");

        let big = Bytes::from(format!("note={}", "a".repeat(FORM_MAX)));
        let e = ctx.read_form::<Form>(&ours, &big).unwrap_err();
        assert_eq!((e.status, e.code), (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"));
        let fits = Bytes::from(format!("note={}", "a".repeat(FORM_MAX - 5)));
        assert_eq!(ctx.read_form::<Form>(&ours, &fits).unwrap().note.len(), FORM_MAX - 5);

        // A control character in any field, read or not; a line break only in free text.
        for bad in ["month=2026%0A11", "other=a%00b", "note=a%01b"] {
            let e = ctx.read_form::<Form>(&ours, &Bytes::from(bad)).unwrap_err();
            assert_eq!((e.status, e.code), (StatusCode::BAD_REQUEST, "invalid_characters"), "{bad}");
        }
    }
}
