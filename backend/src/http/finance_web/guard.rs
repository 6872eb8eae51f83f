//! Where requests may come from and lead to: a POST only from our own pages, and after login
//! only back to a dashboard page.

use axum::http::{HeaderMap, header};

/// Whether a POST comes from our own pages, by OWASP's CSRF cheat sheet (a Fetch Metadata
/// resource isolation policy, then Origin verification):
/// - `Sec-Fetch-Site`, when sent, must be `same-origin`, or `none` (the user's own action,
///   e.g. a reload). `same-site` is refused too: a sibling subdomain is another site here.
/// - `Origin`, when sent, must name this host ([`origin_allowed`]).
/// - One of the two must be sent. Browsers send `Origin` with every form POST (and
///   current ones `Sec-Fetch-Site` too), so a POST with neither comes from no page of ours.
pub fn post_allowed(headers: &HeaderMap) -> bool {
    let fetch_site = headers.get("sec-fetch-site");
    if let Some(site) = fetch_site {
        let Ok(site) = site.to_str() else { return false };
        if !(site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none")) {
            return false;
        }
    }
    match headers.get(header::ORIGIN) {
        Some(_) => origin_allowed(headers),
        None => fetch_site.is_some(),
    }
}

/// Whether the request's `Origin` names the host of the request (`Host`), default ports
/// aside. `Origin: null` never matches, and neither does a missing `Origin`.
pub fn origin_allowed(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else { return false };
    let (Ok(origin), Some(host)) = (origin.to_str(), headers.get(header::HOST).and_then(|h| h.to_str().ok())) else {
        return false;
    };
    let Some((scheme, authority)) = origin.split_once("://") else { return false };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => "80",
        "https" => "443",
        _ => return false,
    };
    let with_port = |a: &str| -> String {
        let a = a.trim().to_ascii_lowercase();
        // An IPv6 literal's colons are inside brackets.
        let has_port = a.rsplit_once(':').is_some_and(|(h, p)| !p.is_empty() && !h.ends_with(':') && !p.contains(']'));
        if has_port { a } else { format!("{a}:{default_port}") }
    };
    !authority.contains('/') && with_port(authority) == with_port(host)
}

/// Where to go after login: a dashboard path only (never another site).
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if (n == "/finance" || n.starts_with("/finance?") || n.starts_with("/finance/"))
                && !n.contains("//")
                && !n.contains('\\')
                && !n.starts_with("/finance/login")
                && !n.starts_with("/finance/logout")
                && n.chars().all(|c| !c.is_control()) =>
        {
            n.to_owned()
        }
        _ => "/finance".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn posts_need_fetch_metadata_or_origin_from_this_host() {
        let h = |origin: Option<&'static str>, site: Option<&'static str>| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
            if let Some(o) = origin {
                h.insert(header::ORIGIN, HeaderValue::from_static(o));
            }
            if let Some(s) = site {
                h.insert("sec-fetch-site", HeaderValue::from_static(s));
            }
            post_allowed(&h)
        };
        let ours = Some("http://127.0.0.1:8080");
        // A browser's form post from our page, old and new.
        assert!(h(ours, Some("same-origin")));
        assert!(h(ours, None));
        assert!(h(None, Some("same-origin")));
        assert!(h(ours, Some("none")));
        // Neither header: no page of ours sent it.
        assert!(!h(None, None));
        // Another site, by either header.
        for site in ["cross-site", "same-site", "CROSS-SITE", "bogus"] {
            assert!(!h(ours, Some(site)), "{site}");
            assert!(!h(None, Some(site)), "{site}");
        }
        assert!(!h(Some("http://evil.example"), Some("same-origin")));
        assert!(!h(Some("http://evil.example"), None));
        assert!(!h(Some("null"), None));
    }

    #[test]
    fn origin_must_name_the_host() {
        let h = |origin: Option<&'static str>, host: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_static(host));
            if let Some(o) = origin {
                h.insert(header::ORIGIN, HeaderValue::from_static(o));
            }
            origin_allowed(&h)
        };
        assert!(!h(None, "127.0.0.1:8080"));
        assert!(h(Some("http://127.0.0.1:8080"), "127.0.0.1:8080"));
        assert!(h(Some("https://finance.hanoi.gov.vn"), "finance.hanoi.gov.vn"));
        assert!(h(Some("https://finance.hanoi.gov.vn:443"), "finance.hanoi.gov.vn"));
        assert!(h(Some("http://[::1]:8080"), "[::1]:8080"));
        assert!(!h(Some("http://127.0.0.1:9090"), "127.0.0.1:8080"));
        assert!(!h(Some("http://evil.example"), "127.0.0.1:8080"));
        assert!(!h(Some("null"), "127.0.0.1:8080"));
        assert!(!h(Some("http://127.0.0.1:8080.evil.example"), "127.0.0.1:8080"));
        assert!(!h(Some("ftp://127.0.0.1:8080"), "127.0.0.1:8080"));
    }

    #[test]
    fn login_returns_only_to_dashboard_pages() {
        assert_eq!(safe_next(Some("/finance/reconciliation?month=2026-11")), "/finance/reconciliation?month=2026-11");
        assert_eq!(safe_next(Some("/finance")), "/finance");
        assert_eq!(safe_next(Some("https://evil.example/")), "/finance");
        assert_eq!(safe_next(Some("//evil.example")), "/finance");
        assert_eq!(safe_next(Some("/finance//evil.example")), "/finance");
        assert_eq!(safe_next(Some("/financeevil")), "/finance");
        assert_eq!(safe_next(Some("/finance/logout")), "/finance");
        assert_eq!(safe_next(None), "/finance");
    }
}
