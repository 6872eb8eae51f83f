//! The finance dashboard (`/finance`, docs/finance.md "Dashboard") in a real browser: headless
//! Chromium driven through chromedriver by the small WebDriver client in
//! `iparking_tests::webdriver`. The test **fails** when Chromium or chromedriver is missing
//! (`scripts/test` installs the Debian packages `chromium` and `chromium-driver`).
//!
//! Revenue is made through the real routes (a wallet session, an SMS turn, a warden's cash
//! session); the warden's shift is closed 5.000 ₫ short, which reconciliation reports as a
//! `cash_difference`. In the browser a finance user signs in, reads the month's revenue by
//! district and street, drills down to a street, resolves the discrepancy with a note,
//! switches to English (remembered), takes a screenshot and logs out.

use std::time::Duration;

use chrono::Datelike;

use iparking::domain::tariff::LOCAL_TZ;
use iparking_mobile_api::{
    Channel, CloseShift, CreateStaff, OpenShift, QuoteRequest, StaffRole, StartSession, VehicleClass,
    WardenStartSession,
};
use iparking_tests::{Db, Live, TestApp, VIETTEL_SECRET, webdriver::Browser};
use serde_json::json;

const FINANCE_USER: &str = "ketoan.hn";
const FINANCE_NAME: &str = "Nguyễn Thị Kế Toán";
const FINANCE_PASSWORD: &str = "so-cai-kep-2026";

/// VND as the dashboard writes it (written independently of the server's helper).
fn money(v: i64) -> String {
    let digits = v.unsigned_abs().to_string();
    let mut groups: Vec<&str> = Vec::new();
    let mut end = digits.len();
    while end > 3 {
        groups.push(&digits[end - 3..end]);
        end -= 3;
    }
    groups.push(&digits[..end]);
    groups.reverse();
    format!("{}{} ₫", if v < 0 { "-" } else { "" }, groups.join("."))
}

#[test]
fn money_is_written_the_vietnamese_way() {
    assert_eq!(money(1_250_000), "1.250.000 ₫");
    assert_eq!(money(-5_000), "-5.000 ₫");
    assert_eq!(money(900), "900 ₫");
}

fn form_body(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    pairs.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

/// A raw form POST without following redirects: `(status, content type, body)`.
async fn post_form(t: &TestApp, path: &str, origin: Option<&str>, pairs: &[(&str, &str)]) -> (u16, String, String) {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut req =
        http.post(t.url(path)).header("Content-Type", "application/x-www-form-urlencoded").body(form_body(pairs));
    if let Some(o) = origin {
        req = req.header("Origin", o);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    (status, ct, resp.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finance_dashboard_in_a_browser() {
    let t = TestApp::start(Db::Sqlite, Live::Memory).await;
    let today = iparking::Clock::now(t.clock.as_ref()).with_timezone(&LOCAL_TZ).date_naive();
    let month = today.format("%Y-%m").to_string();
    let last_month = today.with_day(1).unwrap().pred_opt().unwrap();
    let prev = last_month.format("%Y-%m").to_string();
    let prev_label = last_month.format("%m/%Y").to_string();

    // ---- data ------------------------------------------------------------------------
    let mut body = CreateStaff::new(FINANCE_NAME, StaffRole::Finance, vec![]);
    body.username = Some(FINANCE_USER.into());
    body.password = Some(FINANCE_PASSWORD.into());
    let finance = t.admin.create_staff(&body).await.expect("create the finance user");

    // A wallet session on Lý Thường Kiệt (HK001).
    let driver = t.funded_driver("0912345678", 500_000).await;
    let start = StartSession {
        point_code: "HK001".into(),
        plate: "30A-123.45".into(),
        vehicle_class: Some(VehicleClass::Car),
        minutes: None,
        turns: Some(2),
        payment: None,
        card_id: None,
        lat: None,
        lon: None,
    };
    let wallet = driver.start_session(&start, "browser-start-1").await.expect("wallet session").amount_charged;
    assert!(wallet > 0);

    // An SMS turn on Trần Hưng Đạo (HK010).
    let quote = QuoteRequest {
        point_code: "HK010".into(),
        vehicle_class: VehicleClass::Car,
        start: Some(iparking::Clock::now(t.clock.as_ref())),
        minutes: Some(60),
        amount: None,
        channel: Some(Channel::Sms),
    };
    let sms_price = t.client.quote(&quote).await.expect("SMS quote").total;
    let text = format!("IP{}HK 010 29H1-234.56", sms_price / 1000);
    let resp = reqwest::Client::new()
        .post(t.url("/webhooks/sms/viettel"))
        .header("X-Carrier-Secret", VIETTEL_SECRET)
        .json(&json!({"message_id": "browser-mo-1", "from": "0987654321", "text": text}))
        .send()
        .await
        .expect("SMS delivery");
    assert_eq!(resp.status().as_u16(), 200);
    let reply: serde_json::Value = resp.json().await.expect("SMS reply");
    assert_eq!(reply["outcome"], "started", "{reply}");
    let sms_session = reply["session_id"].as_i64().expect("SMS session id");
    let sms = t.app.store.session(sms_session).await.expect("session").expect("SMS session").amount_charged.get();
    assert_eq!(sms, sms_price);

    // A warden takes cash on Lý Thường Kiệt (HK002) and hands over 5.000 ₫ less.
    let (warden, _) = t.warden_with(StaffRole::Warden, "hk.tienmat", &["HK"], &[]).await;
    let shift = warden.open_shift(&OpenShift { note: Some("Ca sáng".into()) }, "browser-open").await.expect("shift");
    let cash_body = WardenStartSession {
        point_code: "HK002".into(),
        plate: "30E-555.66".into(),
        vehicle_class: VehicleClass::Car,
        turns: Some(1),
        minutes: None,
        payment: Default::default(),
    };
    let cash = warden.warden_start_session(&cash_body, "browser-cash-1").await.expect("cash").receipt.amount;
    let handed = cash - 5_000;
    let close = CloseShift { cash_handed_over: handed, note: Some("Thiếu 5.000đ".into()) };
    warden.close_shift(shift.id, &close, "browser-close").await.expect("close the shift");

    let ltk = wallet + cash;
    let thd = sms;
    let hk = ltk + thd;

    // ---- the dashboard over plain HTTP ---------------------------------------------------
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = http.get(t.url("/finance")).send().await.expect("GET /finance");
    assert_eq!(r.status().as_u16(), 303, "signed out: to the login page");
    assert_eq!(r.headers()["location"], "/finance/login?next=%2Ffinance");
    let css = http.get(t.url("/finance/assets/finance.css")).send().await.expect("css");
    assert_eq!(
        (css.status().as_u16(), css.headers()["content-type"].to_str().unwrap()),
        (200, "text/css; charset=utf-8")
    );
    // Forms as a browser posts them: with this host as their `Origin`.
    let ours = t.url("");
    let ours = Some(ours.as_str());
    // A wrong password: the login page again (HTML, not the JSON error shape), 401.
    let (status, ct, page) =
        post_form(&t, "/finance/login", ours, &[("username", FINANCE_USER), ("password", "wrong password!")]).await;
    assert_eq!(status, 401, "{page}");
    assert!(ct.starts_with("text/html"), "{ct}");
    assert!(page.contains("Sai tên đăng nhập hoặc mật khẩu."), "{page}");
    // Another site's form: refused before anything else.
    let evil = [("username", FINANCE_USER), ("password", FINANCE_PASSWORD)];
    let (status, ct, _) = post_form(&t, "/finance/login", Some("http://evil.example"), &evil).await;
    assert_eq!(status, 403);
    assert!(ct.starts_with("text/html"), "{ct}");
    // A form posted while signed out changes nothing and leads to the login page.
    let (status, _, _) =
        post_form(&t, "/finance/discrepancies/1/resolve", ours, &[("month", &month), ("note", "x")]).await;
    assert_eq!(status, 303);
    // A warden's right password does not open the dashboard.
    let w = [("username", "hk.tienmat"), ("password", iparking_tests::WARDEN_PASSWORD)];
    assert_eq!(post_form(&t, "/finance/login", ours, &w).await.0, 403);

    // ---- the browser ---------------------------------------------------------------------
    let b = Browser::launch()
        .await
        .expect("start headless Chromium through chromedriver (./scripts/test installs chromium and chromium-driver)");

    // Signing in returns to the page asked for.
    b.goto(&t.url(&format!("/finance?month={month}"))).await.unwrap();
    let user = b.wait_for("input[name=username]").await.unwrap();
    assert!(b.url().await.unwrap().contains("/finance/login?next="), "{}", b.url().await.unwrap());
    b.wait_for_text("h1", "Đăng nhập").await.unwrap();
    b.type_into(&user, FINANCE_USER).await.unwrap();
    b.type_into(&b.find("input[name=password]").await.unwrap(), FINANCE_PASSWORD).await.unwrap();
    b.click(&b.find("#login-submit").await.unwrap()).await.unwrap();
    b.wait_for("#by-district").await.unwrap();
    assert!(b.url().await.unwrap().ends_with(&format!("/finance?month={month}")));

    // The session cookie: HttpOnly, SameSite=Strict, only for /finance.
    let c = b.cookie("iparking_finance").await.unwrap().expect("session cookie");
    assert_eq!(
        (c["httpOnly"].as_bool(), c["sameSite"].as_str(), c["path"].as_str()),
        (Some(true), Some("Strict"), Some("/finance")),
        "{c}"
    );
    let token = c["value"].as_str().unwrap().to_owned();

    // Revenue by district (with its chart) and by street.
    let page = b.body_text().await.unwrap();
    assert!(page.contains(FINANCE_NAME), "{page}");
    let district = b.text(&b.find("#by-district").await.unwrap()).await.unwrap();
    assert!(district.contains("Hoàn Kiếm") && district.contains(&money(hk)), "by district, {}:\n{district}", money(hk));
    let streets = b.text(&b.find("#by-street").await.unwrap()).await.unwrap();
    for (name, amount) in [("Lý Thường Kiệt", ltk), ("Trần Hưng Đạo", thd)] {
        let line = streets.lines().find(|l| l.contains(name)).unwrap_or_else(|| panic!("no {name} in:\n{streets}"));
        assert!(line.contains(&money(amount)), "{name} should show {}: {line}", money(amount));
    }
    let chart = b.find("figure.chart-box svg.chart").await.expect("the district chart");
    assert!(b.text(&chart).await.unwrap().contains("Hoàn Kiếm"));
    assert!(!b.find_all("svg.chart rect.bar").await.unwrap().is_empty());
    let channels = b.text(&b.find("#by-channel").await.unwrap()).await.unwrap();
    assert!(channels.contains("SMS") && channels.contains(&money(sms)), "{channels}");

    // Drill down to Lý Thường Kiệt: its points.
    let mut link = None;
    for a in b.find_all("a.street-link").await.unwrap() {
        if b.text(&a).await.unwrap().contains("Lý Thường Kiệt") {
            link = Some(a);
        }
    }
    b.click(&link.expect("a link to Lý Thường Kiệt")).await.unwrap();
    b.wait_for("#by-point").await.unwrap();
    assert!(b.url().await.unwrap().contains("/finance/streets/"));
    b.wait_for_text("h1", "Lý Thường Kiệt").await.unwrap();
    let points = b.text(&b.find("#by-point").await.unwrap()).await.unwrap();
    for (code, amount) in [("HK001", wallet), ("HK002", cash)] {
        let line = points.lines().find(|l| l.contains(code)).unwrap_or_else(|| panic!("no {code} in:\n{points}"));
        assert!(line.contains(&money(amount)), "{code} should show {}: {line}", money(amount));
    }
    assert!(!points.contains("HK010"), "Trần Hưng Đạo's point is not on Lý Thường Kiệt:\n{points}");
    assert!(b.text(&b.find("#by-day").await.unwrap()).await.unwrap().contains(&money(ltk)));

    // Reconciliation: the short shift is an open cash discrepancy; resolve it with a note.
    b.click(&b.find("header nav a[href^='/finance/reconciliation']").await.unwrap()).await.unwrap();
    b.wait_for("#discrepancies").await.unwrap();
    b.wait_for("#sec-cash").await.unwrap();
    let subject = format!("shift:{}", shift.id);
    let id = t
        .sql_i64(&format!("SELECT id FROM discrepancies WHERE kind = 'cash_difference' AND subject = '{subject}'"))
        .await;
    let row_css = format!("#d-{id}");
    let row = b.wait_for(&format!("{row_css}.status-open")).await.unwrap();
    let row_text = b.text(&row).await.unwrap();
    assert!(row_text.contains(&subject) && row_text.contains("Chưa xử lý"), "{row_text}");
    assert!(
        row_text.contains(&money(cash)) && row_text.contains(&money(handed)) && row_text.contains("-5.000 ₫"),
        "{row_text}"
    );
    let note = "Nhân viên nộp bổ sung 5.000 ₫ ngày hôm sau <b>ok</b>";
    b.type_into(&b.find_in(&row, "textarea[name=note]").await.unwrap(), note).await.unwrap();
    b.click(&b.find_in(&row, "button[type=submit]").await.unwrap()).await.unwrap();
    let row = b.wait_for(&format!("{row_css}.status-resolved")).await.unwrap();
    let row_text = b.text(&row).await.unwrap();
    assert!(row_text.contains("Đã xử lý"), "{row_text}");
    assert!(row_text.contains(note), "the note, escaped and shown as text: {row_text}");
    assert!(row_text.contains(FINANCE_NAME), "{row_text}");
    assert!(b.find_all(&format!("{row_css} form")).await.unwrap().is_empty(), "no resolve form once resolved");
    b.wait_for_text(".flash.ok", &format!("#{id}")).await.unwrap();
    let resolved_by = t.sql_i64(&format!("SELECT COALESCE(resolved_by, 0) FROM discrepancies WHERE id = {id}")).await;
    assert_eq!(resolved_by, finance.id, "discrepancies.resolved_by is the finance user");
    let stored = t.sql_text(&format!("SELECT resolution_note FROM discrepancies WHERE id = {id}")).await;
    assert_eq!(stored.as_deref(), Some(note));
    assert_eq!(
        t.sql_text(&format!("SELECT status FROM discrepancies WHERE id = {id}")).await.as_deref(),
        Some("resolved")
    );

    // Period close: this month has not ended, so the page says why and nothing is closed…
    b.click(&b.find("header nav a[href^='/finance/periods/']").await.unwrap()).await.unwrap();
    b.wait_for("#period").await.unwrap();
    assert!(b.text(&b.find("#period").await.unwrap()).await.unwrap().contains("Đang mở"));
    b.click(&b.find("form.close button[type=submit]").await.unwrap()).await.unwrap();
    b.wait_for_text(".flash.error", "period_not_ended").await.unwrap();
    assert_eq!(t.sql_i64("SELECT COUNT(*) FROM finance_periods").await, 0);
    // … while last month can be closed (nothing open there).
    b.click(&b.find(".month-nav a[rel=prev]").await.unwrap()).await.unwrap();
    b.wait_for_text("h1", &prev_label).await.unwrap();
    b.click(&b.find("form.close button[type=submit]").await.unwrap()).await.unwrap();
    b.wait_for(".flash.ok").await.unwrap();
    let period = b.text(&b.find("#period").await.unwrap()).await.unwrap();
    assert!(period.contains("Đã khóa sổ") && period.contains(FINANCE_NAME), "{period}");
    assert!(b.find_all("form.close").await.unwrap().is_empty(), "no close form once closed");
    let closed_by = t.sql_i64(&format!("SELECT closed_by FROM finance_periods WHERE month = '{prev}'")).await;
    assert_eq!(closed_by, finance.id);

    // The CSV links answer with the cookie (and only with it).
    let cookie = format!("iparking_finance={token}");
    for (path, needle) in [
        (format!("/finance/revenue.csv?month={month}&group_by=district,street"), "Lý Thường Kiệt"),
        (format!("/finance/reconciliation.csv?month={month}"), "cash_difference"),
    ] {
        let r = http.get(t.url(&path)).header("Cookie", &cookie).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/csv"), "{path}");
        let bytes = r.bytes().await.unwrap();
        assert!(bytes.starts_with(b"\xEF\xBB\xBF"), "{path}: the UTF-8 BOM");
        assert!(String::from_utf8_lossy(&bytes).contains(needle), "{path}: {needle}");
        assert_eq!(http.get(t.url(&path)).send().await.unwrap().status().as_u16(), 303, "{path} signed out");
    }
    // A form posted from another site with the session cookie: refused.
    let r = http
        .post(t.url(&format!("/finance/periods/{month}/close")))
        .header("Cookie", &cookie)
        .header("Origin", "http://evil.example")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("override_open_discrepancies=1&reason=x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);

    // An administrator reads but cannot act.
    let mut body = CreateStaff::new("Quản trị viên", StaffRole::Admin, vec![]);
    body.username = Some("quantri.hn".into());
    body.password = Some(FINANCE_PASSWORD.into());
    t.admin.create_staff(&body).await.expect("create an admin with a password");
    let r = http
        .post(t.url("/finance/login"))
        .header("Origin", t.url(""))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form_body(&[("username", "quantri.hn"), ("password", FINANCE_PASSWORD)]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/finance"), "{set}");
    let admin_cookie = set.split(';').next().unwrap().to_owned();
    let r = http
        .get(t.url(&format!("/finance/reconciliation?month={month}")))
        .header("Cookie", &admin_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let html = r.text().await.unwrap();
    assert!(
        html.contains(&subject) && !html.contains("action=\"/finance/discrepancies/"),
        "admins get no resolve forms"
    );
    let r = http
        .post(t.url(&format!("/finance/periods/{month}/close")))
        .header("Cookie", &admin_cookie)
        .header("Origin", t.url(""))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(r.text().await.unwrap().contains("chỉ được xem"), "refused as read only, not by origin");

    // Back to this month's reconciliation.
    b.goto(&t.url(&format!("/finance/reconciliation?month={month}"))).await.unwrap();
    b.wait_for(&row_css).await.unwrap();

    // English, remembered across pages.
    b.click(&b.find("#lang-switch").await.unwrap()).await.unwrap();
    b.wait_for_text("h1", "Reconciliation").await.unwrap();
    let row_text = b.text(&b.find(&row_css).await.unwrap()).await.unwrap();
    assert!(row_text.contains("Resolved") && row_text.contains("Shift cash difference"), "{row_text}");
    assert_eq!(b.find("html").await.map(|_| ()).ok(), Some(()));
    b.goto(&t.url(&format!("/finance?month={month}"))).await.unwrap();
    b.wait_for_text("h1", "Revenue").await.unwrap();
    let page = b.body_text().await.unwrap();
    assert!(page.contains("By district") && page.contains("By street") && page.contains("Log out"), "{page}");
    assert!(page.contains(&money(hk)), "{page}");
    let lang = b.attribute(&b.find("html").await.unwrap(), "lang").await.unwrap();
    assert_eq!(lang.as_deref(), Some("en"));

    // A screenshot of the English revenue page.
    let png = b.screenshot().await.unwrap();
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/finance-dashboard.png");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::write(&out, &png).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(png.len() > 10 * 1024, "a {} byte screenshot is too small to show the page", png.len());

    // Logging out revokes the token.
    b.click(&b.find("header form[action='/finance/logout'] button").await.unwrap()).await.unwrap();
    b.wait_for("input[name=username]").await.unwrap();
    let hash = iparking::auth::token_hash(&token);
    assert!(t.app.store.principal_by_token(&hash).await.unwrap().is_none(), "the token is revoked");
    b.goto(&t.url("/finance")).await.unwrap();
    b.wait_for("input[name=username]").await.unwrap();
    assert!(b.url().await.unwrap().contains("/finance/login"));

    b.quit().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    t.stop().await;
}

/// A raw form POST with `headers`, without following redirects: `(status, body)`.
async fn post_with(t: &TestApp, path: &str, headers: &[(&str, &str)], pairs: &[(&str, &str)]) -> (u16, String) {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut req =
        http.post(t.url(path)).header("Content-Type", "application/x-www-form-urlencoded").body(form_body(pairs));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request");
    (resp.status().as_u16(), resp.text().await.unwrap_or_default())
}

/// Cross-site request forgery, without a browser: a POST must show it comes from the
/// dashboard's own pages (Fetch Metadata or `Origin`), and `GET /finance/logout` changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_posts_come_from_its_pages_and_get_never_logs_out() {
    let t = TestApp::start(Db::Sqlite, Live::Memory).await;
    let mut body = CreateStaff::new(FINANCE_NAME, StaffRole::Finance, vec![]);
    body.username = Some(FINANCE_USER.into());
    body.password = Some(FINANCE_PASSWORD.into());
    t.admin.create_staff(&body).await.expect("create the finance user");
    let login = [("username", FINANCE_USER), ("password", FINANCE_PASSWORD)];
    let ours = t.url("");

    // Refused before the password is even looked at: neither header, another site by Fetch
    // Metadata (with or without an Origin), a sibling site, another Origin.
    let refused: [&[(&str, &str)]; 6] = [
        &[],
        &[("Sec-Fetch-Site", "cross-site")],
        &[("Sec-Fetch-Site", "cross-site"), ("Origin", &ours)],
        &[("Sec-Fetch-Site", "same-site")],
        &[("Origin", "http://evil.example")],
        &[("Origin", "null"), ("Sec-Fetch-Site", "same-origin")],
    ];
    for headers in refused {
        let (status, page) = post_with(&t, "/finance/login", headers, &login).await;
        assert_eq!(status, 403, "{headers:?}: {page}");
        assert!(page.contains("Sec-Fetch-Site"), "{headers:?}: {page}");
    }
    assert_eq!(t.sql_i64("SELECT COUNT(*) FROM staff_tokens WHERE device = 'finance-dashboard'").await, 0);

    // A browser's own form post: Origin and Sec-Fetch-Site (or either alone) from this host.
    let accepted: [&[(&str, &str)]; 3] = [
        &[("Origin", &ours), ("Sec-Fetch-Site", "same-origin")],
        &[("Origin", &ours)],
        &[("Sec-Fetch-Site", "same-origin")],
    ];
    let mut cookies = Vec::new();
    for headers in accepted {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let mut req = http.post(t.url("/finance/login")).header("Content-Type", "application/x-www-form-urlencoded");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.body(form_body(&login)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 303, "{headers:?}");
        let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
        cookies.push(set.split(';').next().unwrap().to_owned());
    }
    let cookie = cookies[0].clone();
    let token = cookie.strip_prefix("iparking_finance=").unwrap().to_owned();
    let signed_in =
        || async { t.app.store.principal_by_token(&iparking::auth::token_hash(&token)).await.unwrap().is_some() };
    assert!(signed_in().await);

    // A signed-in user's form posted by another site: refused, nothing changes.
    let month = "2020-01";
    for site in ["cross-site", "same-site"] {
        let headers = [("Cookie", cookie.as_str()), ("Sec-Fetch-Site", site)];
        let (status, _) = post_with(&t, &format!("/finance/periods/{month}/close"), &headers, &[]).await;
        assert_eq!(status, 403, "{site}");
        let (status, _) = post_with(&t, "/finance/logout", &headers, &[]).await;
        assert_eq!(status, 403, "{site}");
    }
    let (status, _) = post_with(&t, "/finance/logout", &[("Cookie", cookie.as_str())], &[]).await;
    assert_eq!(status, 403, "a logout with neither header");
    assert_eq!(t.sql_i64("SELECT COUNT(*) FROM finance_periods").await, 0);
    assert!(signed_in().await);

    // GET /finance/logout (a link, a prefetch, another site's <img>): a page with the button,
    // and the token still works.
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = http.get(t.url("/finance/logout")).header("Cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers().get("set-cookie").is_none(), "GET must not clear the cookie");
    let page = r.text().await.unwrap();
    assert!(page.contains("<form method=\"post\" action=\"/finance/logout\""), "{page}");
    assert!(signed_in().await, "GET /finance/logout must not revoke the token");
    let r = http.get(t.url("/finance")).header("Cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "still signed in");
    // Signed out, it leads to the login page.
    let r = http.get(t.url("/finance/logout")).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.headers()["location"].to_str().unwrap()), (303, "/finance/login"));

    // The POST form logs out.
    let headers = [("Cookie", cookie.as_str()), ("Origin", ours.as_str()), ("Sec-Fetch-Site", "same-origin")];
    let (status, _) = post_with(&t, "/finance/logout", &headers, &[]).await;
    assert_eq!(status, 303);
    assert!(!signed_in().await, "the POST revokes the token");

    tokio::time::sleep(Duration::from_millis(50)).await;
    t.stop().await;
}
