//! The wardens' handheld app at `/warden/`, driven in headless Chromium at a handheld's
//! viewport (360×740), on SQLite and on PostgreSQL + Redis: a whole shift online, a shift's
//! work offline and synced exactly once, and a revoked token.

use std::time::Duration;

use iparking_mobile_api::{StaffRole, StartSession, VehicleClass};
use iparking_tests::{
    TestApp, WARDEN_PASSWORD, matrix, tiny_png, vnd,
    webdriver::{Browser, assert_accessible, set_select, wait_until},
};
use serde_json::{Value, json};

/// The app's own first load (page, JS, CSS; compressed), as in the drivers' app (issue 32).
const FIRST_LOAD_BUDGET: u64 = 150 * 1024;

/// Two photo files on disk, for the file input.
fn photo_files(dir: &std::path::Path, seed: u8) -> String {
    let paths: Vec<String> = (0..2)
        .map(|i| {
            let p = dir.join(format!("photo-{seed}-{i}.png"));
            std::fs::write(&p, tiny_png(seed + i)).unwrap();
            p.display().to_string()
        })
        .collect();
    paths.join("\n")
}

fn start(point: &str, plate: &str) -> StartSession {
    StartSession {
        point_code: point.into(),
        plate: plate.into(),
        vehicle_class: Some(VehicleClass::Car),
        minutes: Some(120),
        turns: None,
        payment: None,
        card_id: None,
        lat: None,
        lon: None,
    }
}

/// A handheld at 360×740 with the warden logged in through the login screen.
async fn logged_in(t: &TestApp, username: &str) -> Browser {
    let b = Browser::launch().await.expect("headless Chromium (scripts/test installs it)");
    b.set_window_size(360, 740).await.unwrap();
    b.goto(&t.url("/warden")).await.unwrap();
    b.wait_for_text("h1", "Đăng nhập nhân viên").await.unwrap();
    assert!(b.url().await.unwrap().ends_with("/warden/"), "/warden redirects into the app's scope");
    // A wrong password first: refused in words.
    b.type_into(&b.find("#username").await.unwrap(), username).await.unwrap();
    b.type_into(&b.find("#password").await.unwrap(), "not the password").await.unwrap();
    b.click(&b.find("#login-form button[type=submit]").await.unwrap()).await.unwrap();
    b.wait_for_text("#login-status .error", "Sai tên đăng nhập").await.unwrap();
    let password = b.find("#password").await.unwrap();
    b.clear(&password).await.unwrap();
    b.type_into(&password, WARDEN_PASSWORD).await.unwrap();
    let device = b.find("#device").await.unwrap();
    b.clear(&device).await.unwrap();
    b.type_into(&device, "HK-handheld-07").await.unwrap();
    b.click(&b.find("#login-form button[type=submit]").await.unwrap()).await.unwrap();
    b.wait_for("#shift").await.unwrap();
    b
}

async fn check(b: &Browser, plate: &str) -> String {
    let input = b.find("#plate").await.unwrap();
    b.clear(&input).await.unwrap();
    b.execute("document.getElementById('verdict').replaceChildren()", json!([])).await.unwrap();
    b.type_into(&input, plate).await.unwrap();
    b.click(&b.find("#check-form button[type=submit]").await.unwrap()).await.unwrap();
    let card = b.wait_for("#verdict-card").await.unwrap();
    b.attribute(&card, "data-verdict").await.unwrap().unwrap_or_default()
}

async fn finance_report(t: &TestApp) -> Value {
    let finance = t.staff(StaffRole::Finance, &[]).await;
    let day = chrono::Utc::now().with_timezone(&iparking::domain::tariff::LOCAL_TZ).format("%Y-%m-%d").to_string();
    let r = reqwest::Client::new()
        .get(t.url(&format!("/v1/finance/reconciliation?date={day}")))
        .bearer_auth(finance.token().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

matrix!(a_warden_works_a_whole_shift_on_the_handheld, |t| {
    // The street: a paid car at HK001, one paid at HK002, and the rest unpaid.
    let d = t.funded_driver("0912700001", 500_000).await;
    d.start_session(&start("HK001", "30A-123.45"), "paid-here").await.unwrap();
    d.start_session(&start("HK002", "30A-555.77"), "paid-there").await.unwrap();
    let (_, login) = t.warden_with(StaffRole::Warden, "hk.lan", &["HK"], &[]).await;
    // Finance put 100,000 on the warden's float.
    let finance = t.staff(StaffRole::Finance, &[]).await;
    let topped = reqwest::Client::new()
        .post(t.url("/v1/finance/adjustments"))
        .bearer_auth(finance.token().unwrap())
        .header("Idempotency-Key", "float-hk.lan")
        .json(&json!({ "debit": { "kind": "cash_office" }, "credit": { "kind": "warden_float", "staff_id": login.staff_id },
                       "amount": 100_000, "reason": "float" }))
        .send()
        .await
        .unwrap();
    assert_eq!(topped.status(), 201);
    let b = logged_in(&t, "hk.lan").await;
    b.wait_for_text("#float-balance", "100.000 đ").await.unwrap();
    assert_accessible(&b, "home, no shift (vi)").await;

    // The first load, as the browser measured it.
    let own = b
        .execute(
            "return performance.getEntriesByType('resource').concat(performance.getEntriesByType('navigation')) \
               .filter(e => /\\/warden\\/$|\\.(m?js|css)$/.test(new URL(e.name).pathname)) \
               .reduce((s, e) => s + e.encodedBodySize, 0);",
            json!([]),
        )
        .await
        .unwrap()
        .as_u64()
        .unwrap();
    eprintln!("wardens' app first load: {own} bytes compressed (budget {FIRST_LOAD_BUDGET})");
    assert!(own > 5_000 && own <= FIRST_LOAD_BUDGET, "first load {own} bytes");

    // Open a shift: nothing collected yet.
    b.click(&b.find("#open-shift").await.unwrap()).await.unwrap();
    b.wait_for_text("#expected-cash", "0 đ").await.unwrap();

    // HK001 by its code: the roster, soonest to end first.
    b.type_into(&b.find("#point-code").await.unwrap(), "hk001").await.unwrap();
    b.click(&b.find("#pick-point button").await.unwrap()).await.unwrap();
    b.wait_for("#roster li[data-plate='30A12345']").await.unwrap();
    assert_accessible(&b, "a point (vi)").await;

    // Four checks. The plate is formatted as it is typed.
    let input = b.find("#plate").await.unwrap();
    b.type_into(&input, "30a12345").await.unwrap();
    assert_eq!(b.execute("return document.getElementById('plate').value", json!([])).await.unwrap(), "30A-123.45");
    assert_eq!(check(&b, "30A12345").await, "valid");
    assert_accessible(&b, "a valid verdict").await;
    assert_eq!(check(&b, "30A99999").await, "unpaid");
    assert_eq!(check(&b, "30A12346").await, "unpaid", "one digit off is not the paid car");
    let near = b.wait_for(".near-miss[data-plate='30A12345']").await.unwrap();
    b.click(&near).await.unwrap();
    b.wait_for_text("#verdict-card", "Hợp lệ").await.unwrap();
    assert_eq!(check(&b, "30A55577").await, "elsewhere");
    b.wait_for_text("#verdict-card", "HK002").await.unwrap();

    // Cash for 2 turns on the unpaid car: priced before it is confirmed, then the slip.
    assert_eq!(check(&b, "30A99999").await, "unpaid");
    b.click(&b.find("#to-collect").await.unwrap()).await.unwrap();
    b.wait_for("#collect-form").await.unwrap();
    wait_until(
        &b,
        "return /100\\.000/.test(document.querySelector('#payment option[value=float]').textContent)",
        "the float in the choices",
    )
    .await;
    set_select(&b, "#turns", "2").await;
    wait_until(&b, "return !document.getElementById('confirm-collect').disabled && /đ/.test(document.getElementById('collect-price').textContent)", "the price").await;
    let price = b.text(&b.find("#collect-price .big").await.unwrap()).await.unwrap();
    assert_accessible(&b, "collect cash").await;
    b.click(&b.find("#confirm-collect").await.unwrap()).await.unwrap();
    b.wait_for("#slip svg.qr").await.unwrap();
    let slip = b.text(&b.find("#slip").await.unwrap()).await.unwrap();
    assert!(slip.contains(&price) && slip.contains("30A-999.99") && slip.contains("NV-"), "{slip}");
    assert_accessible(&b, "the slip").await;

    // The QR code opens the slip's public page: for people, with the plate masked.
    let url = b.read_qr("#slip svg.qr").await.unwrap();
    assert!(url.starts_with(&t.url("/r/")) && url.contains("?code="), "{url}");
    let page = reqwest::Client::new().get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let page = page.text().await.unwrap();
    let number = url.trim_start_matches(&t.url("/r/")).split('?').next().unwrap().to_owned();
    assert!(page.contains(&number) && page.contains("•••••999") && page.contains("NV-0"), "{page}");
    assert!(!page.contains("30A99999") && !page.contains("hk.lan test"), "no plate, no name: {page}");
    let txn = t
        .sql_i64(&format!("SELECT CAST(transaction_id AS BIGINT) FROM cash_collections WHERE number = '{number}'"))
        .await;
    assert!(page.contains(&format!("#{txn}")), "the ledger transaction #{txn}: {page}");
    let wrong = reqwest::Client::new().get(url.replace("?code=", "?code=X")).send().await.unwrap();
    assert_eq!(wrong.status(), 404);
    assert!(wrong.text().await.unwrap().contains("Không tìm thấy"));

    // A violation with 2 photos on another unpaid car.
    b.goto(&t.url("/warden/#/point/HK001")).await.unwrap();
    b.wait_for("#check-form").await.unwrap();
    assert_eq!(check(&b, "30A88888").await, "unpaid");
    b.click(&b.find("#to-violation").await.unwrap()).await.unwrap();
    b.wait_for("#violation-form").await.unwrap();
    set_select(&b, "#reason", "unpaid").await;
    b.type_into(&b.find("#note").await.unwrap(), "Đỗ không trả tiền, chủ xe vắng mặt").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    b.type_into(&b.find("#photos").await.unwrap(), &photo_files(dir.path(), 1)).await.unwrap();
    assert_accessible(&b, "record a violation").await;
    b.click(&b.find("#submit-violation").await.unwrap()).await.unwrap();
    let citation = b.text(&b.wait_for("#citation-number").await.unwrap()).await.unwrap();
    let photos = t.sql_i64(&format!(
        "SELECT COUNT(*) FROM violation_photos p JOIN violations v ON v.id = p.violation_id WHERE v.number = '{citation}'"
    ))
    .await;
    assert_eq!(photos, 2);

    // The shift's history: the checks, the slip and the citation.
    b.goto(&t.url("/warden/#/history")).await.unwrap();
    b.wait_for_text("#history-slips", &number).await.unwrap();
    b.wait_for_text("#history-citations", &citation).await.unwrap();
    wait_until(&b, "return document.querySelectorAll('#history-checks li').length >= 6", "the checks in the history")
        .await;
    assert_accessible(&b, "history").await;

    // Close the shift 5,000 short: the difference shown and confirmed twice.
    b.goto(&t.url("/warden/#/")).await.unwrap();
    let expected: i64 = t.sql_i64("SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM cash_collections").await;
    b.wait_for_text("#expected-cash", &vnd(expected)).await.unwrap();
    b.type_into(&b.find("#cash-counted").await.unwrap(), &(expected - 5_000).to_string()).await.unwrap();
    b.click(&b.find("#close-shift").await.unwrap()).await.unwrap();
    b.wait_for_text("#difference", "Thiếu 5.000 đ").await.unwrap();
    b.click(&b.find("#close-shift").await.unwrap()).await.unwrap();
    b.wait_for_text("#difference", "Xác nhận lần nữa").await.unwrap();
    assert_eq!(
        t.sql_i64("SELECT COUNT(*) FROM warden_shifts WHERE status = 'closed'").await,
        0,
        "not before the third tap"
    );
    b.click(&b.find("#close-shift").await.unwrap()).await.unwrap();
    b.wait_for_text("#closed-difference", "-5.000 đ").await.unwrap();
    assert_accessible(&b, "shift closed").await;

    t.assert_ledger_sound().await;
    let report = finance_report(&t).await;
    let short = report["discrepancies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["kind"] == "cash_difference")
        .unwrap_or_else(|| panic!("finance sees the shortfall: {report}"));
    assert_eq!((short["expected"].as_i64(), short["actual"].as_i64()), (Some(expected), Some(expected - 5_000)));

    // Both languages have the same strings.
    let keys = b
        .execute(
            "const src = document.querySelector('script[type=module]').src.replace('app.js', 'i18n.js'); \
             return import(src).then(m => [Object.keys(m.STRINGS.vi).sort(), Object.keys(m.STRINGS.en).sort()]);",
            json!([]),
        )
        .await
        .unwrap();
    assert!(keys[0].as_array().is_some_and(|k| k.len() > 50), "{keys}");
    assert_eq!(keys[0], keys[1], "the Vietnamese and English keys differ");
    b.click(&b.find("#lang").await.unwrap()).await.unwrap();
    b.wait_for_text("h1", "Hello").await.unwrap();
    assert_accessible(&b, "home (en)").await;
    b.quit().await.unwrap();
});

async fn offline(b: &Browser, off: bool) {
    b.cdp("Network.enable", json!({})).await.unwrap();
    b.cdp(
        "Network.emulateNetworkConditions",
        json!({ "offline": off, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1 }),
    )
    .await
    .unwrap();
}

matrix!(offline_work_is_queued_survives_a_reload_and_syncs_once, |t| {
    let d = t.funded_driver("0912700002", 500_000).await;
    d.start_session(&start("HK001", "30A-246.80"), "rostered").await.unwrap();
    t.warden_with(StaffRole::Warden, "hk.offline", &["HK"], &[]).await;
    let b = logged_in(&t, "hk.offline").await;
    b.click(&b.find("#open-shift").await.unwrap()).await.unwrap();
    b.wait_for("#expected-cash").await.unwrap();
    b.goto(&t.url("/warden/#/point/HK001")).await.unwrap();
    b.wait_for("#roster li[data-plate='30A24680']").await.unwrap();
    wait_until(&b, "return !!(navigator.serviceWorker && navigator.serviceWorker.controller)", "the service worker")
        .await;

    // The network off (DevTools Protocol): a rostered plate is answered from the roster.
    offline(&b, true).await;
    wait_until(&b, "return navigator.onLine === false", "the browser to be offline").await;
    assert_eq!(check(&b, "30A24680").await, "valid");
    b.wait_for_text("#offline-answer", "Ngoại tuyến, theo danh sách lúc").await.unwrap();
    assert_accessible(&b, "an offline answer").await;

    // Cash and a violation: queued on the handheld.
    assert_eq!(check(&b, "30A13579").await, "unpaid");
    b.click(&b.find("#to-collect").await.unwrap()).await.unwrap();
    b.wait_for("#collect-form").await.unwrap();
    set_select(&b, "#turns", "2").await;
    wait_until(&b, "return !document.getElementById('confirm-collect').disabled", "the collect button").await;
    b.click(&b.find("#confirm-collect").await.unwrap()).await.unwrap();
    b.wait_for("#queued-note").await.unwrap();
    // Cash for the rostered car too (the warden could not know it was paid): a conflict.
    b.goto(&t.url("/warden/#/collect/HK001/30A24680")).await.unwrap();
    wait_until(
        &b,
        "return !!document.getElementById('confirm-collect') && !document.getElementById('confirm-collect').disabled",
        "the collect button",
    )
    .await;
    b.click(&b.find("#confirm-collect").await.unwrap()).await.unwrap();
    b.wait_for("#queued-note").await.unwrap();
    b.goto(&t.url("/warden/#/violation/HK001/30A13580")).await.unwrap();
    b.wait_for("#violation-form").await.unwrap();
    b.type_into(&b.find("#note").await.unwrap(), "Không trả tiền").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    b.type_into(&b.find("#photos").await.unwrap(), &photo_files(dir.path(), 7)).await.unwrap();
    b.click(&b.find("#submit-violation").await.unwrap()).await.unwrap();
    b.wait_for("#queued-note").await.unwrap();
    // The two checks made offline are queued too: they stay in the trace.
    b.wait_for_text("#queue-count", "5").await.unwrap();
    assert_eq!(t.sql_i64("SELECT COUNT(*) FROM cash_collections").await, 0);
    assert_eq!(t.sql_i64("SELECT COUNT(*) FROM violations").await, 0);

    // A reload (the app closed and opened again): nothing queued is lost.
    b.refresh().await.unwrap();
    b.wait_for_text("#queue-count", "5").await.unwrap();
    let queued = b
        .execute(
            "return new Promise((ok, no) => { const r = indexedDB.open('iparking-warden'); r.onerror = no; \
               r.onsuccess = () => { const q = r.result.transaction('queue').objectStore('queue').getAll(); \
               q.onsuccess = () => ok(q.result); q.onerror = no; }; });",
            json!([]),
        )
        .await
        .unwrap();
    assert_eq!(queued.as_array().unwrap().len(), 5, "{queued}");

    // The network back: the queue goes through /v1/warden/sync, once.
    offline(&b, false).await;
    b.goto(&t.url("/warden/#/history")).await.unwrap();
    b.click(&b.wait_for("#sync-now").await.unwrap()).await.unwrap();
    wait_until(&b, "return document.getElementById('queue').hidden", "the queue to empty").await;
    // The conflict the server reported is shown to the warden: the cash is in suspense.
    let conflicts = b.text(&b.wait_for("#conflicts").await.unwrap()).await.unwrap();
    assert!(conflicts.contains("Ghi khác đi") && conflicts.contains("xe đã trả tiền"), "{conflicts}");
    assert_accessible(&b, "history with a conflict").await;
    assert_eq!(t.sql_i64("SELECT COUNT(*) FROM cash_collections WHERE status = 'applied'").await, 1);
    assert_eq!(t.sql_i64("SELECT COUNT(*) FROM cash_collections WHERE status = 'unapplied'").await, 1);
    assert_eq!(t.sql_i64("SELECT COUNT(*) FROM violations").await, 1);
    assert_eq!(t.sql_i64("SELECT COUNT(*) FROM violation_photos").await, 2);
    let synced_checks = "SELECT COUNT(*) FROM plate_checks WHERE source = 'sync'";
    for _ in 0..50 {
        if t.sql_i64(synced_checks).await == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(t.sql_i64(synced_checks).await, 2, "the offline checks, recorded");

    // The same actions sent again (an answer lost on the way): nothing changes.
    let token = b.execute("return localStorage.getItem('iparking.warden.token')", json!([])).await.unwrap();
    let actions: Vec<Value> = queued
        .as_array()
        .unwrap()
        .iter()
        .map(|a| json!({ "id": a["id"], "device_time": a["device_time"], "kind": a["kind"], "payload": a["payload"] }))
        .collect();
    let again: Value = reqwest::Client::new()
        .post(t.url("/v1/warden/sync"))
        .bearer_auth(token.as_str().unwrap())
        .json(&json!({ "actions": actions }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let results = again["results"].as_array().unwrap();
    assert_eq!(results.len(), 5);
    assert!(results.iter().all(|r| r["replayed"] == true), "{again}");
    assert_eq!(t.sql_i64("SELECT COUNT(*) FROM cash_collections").await, 2);
    assert_eq!(t.sql_i64("SELECT COUNT(*) FROM violations").await, 1);
    assert_eq!(t.sql_i64(synced_checks).await, 2);
    t.assert_ledger_sound().await;
    b.quit().await.unwrap();
});

matrix!(a_revoked_token_sends_the_handheld_to_the_login_screen, |t| {
    t.warden_with(StaffRole::Warden, "hk.revoked", &["HK"], &[]).await;
    let b = logged_in(&t, "hk.revoked").await;
    let me = b.execute("return JSON.parse(localStorage.getItem('iparking.warden.me'))", json!([])).await.unwrap();
    t.admin.revoke_token(me["token_id"].as_i64().expect("the token's id")).await.unwrap();
    b.goto(&t.url("/warden/#/point/HK001")).await.unwrap();
    b.wait_for_text("#login-status .error", "đã bị thu hồi").await.unwrap();
    assert_eq!(
        b.execute("return localStorage.getItem('iparking.warden.token')", json!([])).await.unwrap(),
        Value::Null
    );
    assert_accessible(&b, "login after revocation").await;
    b.quit().await.unwrap();
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wardens_app_is_served_in_its_own_scope_and_locked_down() {
    let t = TestApp::start(iparking_tests::Db::Sqlite, iparking_tests::Live::Memory).await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = http.get(t.url("/warden")).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.headers()["location"].to_str().unwrap()), (308, "/warden/"));
    let page = http.get(t.url("/warden/")).send().await.unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(
        csp.contains("script-src 'self';") && csp.contains("default-src 'none'") && !csp.contains("unsafe"),
        "{csp}"
    );
    assert_eq!(page.headers()["cache-control"], "no-cache");
    let html = page.text().await.unwrap();
    assert!(html.contains("data-token-key=\"iparking.warden.token\"") && !html.contains("{{"), "{html}");
    let manifest: Value = http.get(t.url("/warden/manifest.webmanifest")).send().await.unwrap().json().await.unwrap();
    assert_eq!((manifest["start_url"].as_str(), manifest["scope"].as_str()), (Some("/warden/"), Some("/warden/")));
    assert_eq!(manifest["display"], "standalone");
    let sw = http.get(t.url("/warden/sw.js")).send().await.unwrap().text().await.unwrap();
    let build = html.split("/assets/").nth(1).unwrap().split('/').next().unwrap().to_owned();
    for file in ["app.js", "queue.js", "api.js", "vendor/qrcode-generator/qrcode.mjs", "slip.css"] {
        let url = format!("/assets/{build}/{file}");
        assert!(sw.contains(&url), "the worker keeps {url}");
        let r = http.get(t.url(&url)).header("Accept-Encoding", "gzip").send().await.unwrap();
        assert_eq!(r.status(), 200, "{url}");
        assert_eq!(r.headers()["cache-control"], "public, max-age=31536000, immutable", "{url}");
    }
    // The drivers' app keeps its own build and scope.
    let driver = http.get(t.url("/")).send().await.unwrap().text().await.unwrap();
    assert!(!driver.contains(&format!("/assets/{build}/")), "each app has its own build");
    // A slip that does not exist: a page for people, "not found", in the error's status.
    let missing = http.get(t.url("/r/HK-20260101-000001?code=ABCD1234")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let en = http.get(t.url("/r/HK-20260101-000001?code=ABCD1234&lang=en")).send().await.unwrap().text().await.unwrap();
    assert!(en.contains("Slip not found"), "{en}");
}

matrix!(a_car_in_its_grace_period_gets_more_time_on_its_session, |t| {
    let d = t.funded_driver("0912700003", 500_000).await;
    let mut body = start("HK004", "30A-321.09");
    body.minutes = Some(60);
    let s = d.start_session(&body, "grace").await.unwrap();
    t.warden_with(StaffRole::Warden, "hk.grace", &["HK"], &[]).await;
    let b = logged_in(&t, "hk.grace").await;
    b.click(&b.find("#open-shift").await.unwrap()).await.unwrap();
    b.wait_for("#expected-cash").await.unwrap();
    // Just past the paid hour: in grace.
    t.clock.advance(chrono::Duration::minutes(61));
    b.goto(&t.url("/warden/#/point/HK004")).await.unwrap();
    b.wait_for("#check-form").await.unwrap();
    assert_eq!(check(&b, "30A32109").await, "grace");
    b.click(&b.find("#to-collect").await.unwrap()).await.unwrap();
    b.wait_for_text("h1", "Thu thêm giờ").await.unwrap();
    wait_until(&b, "return !document.getElementById('confirm-collect').disabled && /đ/.test(document.getElementById('collect-price').textContent)", "the extension's price").await;
    let price = b.text(&b.find("#collect-price .big").await.unwrap()).await.unwrap();
    b.click(&b.find("#confirm-collect").await.unwrap()).await.unwrap();
    b.wait_for("#slip svg.qr").await.unwrap();
    let after = d.session(s.id).await.unwrap();
    assert!(after.paid_until > s.paid_until, "the same session, extended");
    assert!(
        price.contains(&vnd(after.amount_charged - s.amount_charged)),
        "charged {} after showing {price}",
        after.amount_charged - s.amount_charged
    );
    assert_eq!(t.sql_i64("SELECT COUNT(*) FROM sessions").await, 1, "no second session");
    t.assert_ledger_sound().await;
    b.quit().await.unwrap();
});
