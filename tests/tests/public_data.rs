//! Open data (issue 34): the public revenue page `/public` and its downloads, for anyone,
//! with no personal data, equal to what finance reads from the same ledger.

use iparking_mobile_api::{StaffRole, StartSession, VehicleClass, WardenPayment, WardenStartSession};
use iparking_tests::{grouped, matrix, raw, webdriver::Browser};

matrix!(the_public_page_adds_up_the_ledger_with_no_personal_data, |t| {
    let month = chrono::Utc::now().with_timezone(&iparking::domain::tariff::LOCAL_TZ).format("%Y-%m").to_string();
    let driver = t.funded_driver("0912555001", 500_000).await;
    let start = StartSession {
        point_code: "HK001".into(),
        plate: "30A-432.10".into(),
        vehicle_class: Some(VehicleClass::Car),
        minutes: Some(120),
        turns: None,
        payment: None,
        card_id: None,
        lat: None,
        lon: None,
    };
    let wallet = driver.start_session(&start, "pub-1").await.unwrap().amount_charged;
    let (warden, _) = t.warden_with(StaffRole::Warden, "hk.public", &["HK"], &[]).await;
    warden.open_shift(&Default::default(), "pub-shift").await.unwrap();
    let cash_body = WardenStartSession {
        point_code: "HK002".into(),
        plate: "30A-432.11".into(),
        vehicle_class: VehicleClass::Car,
        turns: Some(1),
        minutes: None,
        payment: WardenPayment::Cash,
    };
    let cash = warden.warden_start_session(&cash_body, "pub-cash").await.unwrap().receipt.amount;

    // The page: no login, the month's total and the streets', no plate, no phone.
    let page = reqwest::Client::new().get(t.url("/public")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("default-src 'none'") && !csp.contains("unsafe"), "{csp}");
    let html = page.text().await.unwrap();
    assert!(html.contains(&format!("{} ₫", grouped(wallet + cash))), "the total {}: {html}", grouped(wallet + cash));
    assert!(html.contains("Hoàn Kiếm"), "{html}");
    for secret in ["30A43210", "30A-432.10", "912555001", "hk.public"] {
        assert!(!html.contains(secret), "{secret} on the public page");
    }
    // The licence the figures are published under, on the page and on each download.
    let licence = t.app.settings.data_license_url.clone();
    assert!(html.contains(&format!("href=\"{licence}\" rel=\"license\"")), "{html}");
    for path in ["/public/revenue.json", "/public/revenue.csv", "/public/ledger/digests.json"] {
        let r = reqwest::get(t.url(path)).await.unwrap();
        assert_eq!(r.headers()["link"], format!("<{licence}>; rel=\"license\"").as_str(), "{path}");
    }
    let en = reqwest::Client::new().get(t.url("/public?lang=en")).send().await.unwrap().text().await.unwrap();
    assert!(en.contains("Public parking revenue"), "{en}");

    // The downloads equal finance's own report of the same ledger.
    let finance = t.staff(StaffRole::Finance, &[]).await;
    for group in ["district", "district,street", "day", "channel"] {
        let (status, public) =
            raw(reqwest::Client::new().get(t.url(&format!("/public/revenue.json?month={month}&group_by={group}"))))
                .await;
        assert_eq!(status, 200, "{public}");
        let last = chrono::NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d").unwrap()
            + chrono::Months::new(1)
            - chrono::Duration::days(1);
        let (_, internal) = raw(reqwest::Client::new()
            .get(t.url(&format!("/v1/finance/revenue?from={month}-01&to={last}&group_by={group}")))
            .bearer_auth(finance.token().unwrap()))
        .await;
        assert_eq!(public["rows"], internal["rows"], "{group}");
        assert_eq!(public["totals"]["gross"].as_i64(), Some(wallet + cash), "{group}");
    }
    let csv = reqwest::Client::new()
        .get(t.url(&format!("/public/revenue.csv?month={month}&group_by=channel")))
        .send()
        .await
        .unwrap();
    assert_eq!(csv.headers()["access-control-allow-origin"], "*");
    let csv = csv.text().await.unwrap();
    assert!(csv.starts_with("\u{feff}channel,gross,carrier_share,net,postings"), "{csv}");
    assert!(csv.contains(&format!("warden_cash,{cash},0,{cash},1")), "{csv}");
    // Points are not published one by one, and a bad month is refused in the one shape.
    let (status, body) = raw(reqwest::Client::new().get(t.url("/public/revenue.json?group_by=point"))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_group")), "{body}");
    let (status, _) = raw(reqwest::Client::new().get(t.url("/public/revenue.json?month=2026-13"))).await;
    assert_eq!(status, 400);
    // A street's takings by channel would show one warden's day: not published.
    let (status, body) =
        raw(reqwest::Client::new().get(t.url("/public/revenue.json?group_by=street,channel,day"))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("invalid_group")), "{body}");

    // Accessible on a phone.
    let b = Browser::launch().await.expect("headless Chromium (scripts/test installs it)");
    b.set_window_size(390, 844).await.unwrap();
    b.goto(&t.url("/public")).await.unwrap();
    b.wait_for("#by-street").await.unwrap();
    let found = b.axe_violations().await.unwrap();
    assert!(found.is_empty(), "{}", serde_json::to_string_pretty(&found).unwrap());
    b.quit().await.unwrap();
});

matrix!(every_session_has_a_receipt_anyone_can_check_and_lookups_are_limited, |t| {
    let driver = t.funded_driver("0912555101", 500_000).await;
    let start = iparking_tests::finance::car_minutes("HK003", "30A-777.12", 60);
    let s = driver.start_session(&start, "rcpt").await.unwrap();
    let get = |path: String, token: Option<String>| {
        let mut r = reqwest::Client::new().get(t.url(&path));
        if let Some(tok) = token {
            r = r.bearer_auth(tok);
        }
        r
    };
    let (status, r) = raw(get(format!("/v1/sessions/{}/receipt", s.id), driver.token().map(str::to_owned))).await;
    assert_eq!(status, 200, "{r}");
    let number = r["number"].as_str().unwrap().to_owned();
    let code = r["code"].as_str().unwrap().to_owned();
    assert_eq!(number, format!("IP-{:08}", s.id));
    assert_eq!(r["public_path"], format!("/r/{number}?code={code}"));
    // Another driver cannot read it.
    let other = t.driver("0912555102").await;
    let (status, _) = raw(get(format!("/v1/sessions/{}/receipt", s.id), other.token().map(str::to_owned))).await;
    assert_eq!(status, 404);

    // The page: what was paid, where, until when, the ledger's transaction; the plate masked.
    let page = get(format!("/r/{number}?code={code}"), None).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let txn = t
        .sql_i64(&format!("SELECT CAST(MIN(id) AS BIGINT) FROM ledger_transactions WHERE session_id = {}", s.id))
        .await;
    assert!(html.contains(&number) && html.contains("•••••712") && html.contains(&format!("#{txn}")), "{html}");
    assert!(!html.contains("30A77712") && !html.contains("912555101"), "{html}");
    // A wrong code, or a code of another session, reads "not found".
    let wrong = format!("/r/{number}?code={}", if code == "AAAAAAAA" { "BBBBBBBB" } else { "AAAAAAAA" });
    assert_eq!(get(wrong, None).send().await.unwrap().status(), 404);
    let next = format!("/r/IP-{:08}?code={code}", s.id + 1);
    assert_eq!(get(next, None).send().await.unwrap().status(), 404);

    // Lookups are limited per client address: pages and the slips' API together (the three
    // pages above counted).
    let limit = iparking::app::receipts::LOOKUPS_PER_WINDOW as usize;
    let mut statuses = Vec::new();
    for i in 0..limit - 3 {
        let path = if i % 2 == 0 {
            format!("/r/{number}?code={code}")
        } else {
            "/v1/receipts/HK-20260101-000001?code=ABCDEFGH".to_owned()
        };
        statuses.push(get(path, None).send().await.unwrap().status().as_u16());
    }
    assert!(statuses.iter().all(|s| *s != 429), "{statuses:?}");
    let page = get(format!("/r/{number}?code={code}"), None).send().await.unwrap();
    assert_eq!(page.status(), 429);
    let (status, body) = raw(get("/v1/receipts/HK-20260101-000001?code=ABCDEFGH".into(), None)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (429, Some("rate_limited")), "{body}");
});
