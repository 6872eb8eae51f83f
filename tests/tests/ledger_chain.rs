//! The tamper-evident ledger (issue 34): every ledger transaction sealed in one SHA-256
//! chain, the daily digests published at /public/ledger/digests, `verify` naming the first
//! broken link, and a day's export re-hashed by the independent Python script in docs/.

use std::process::Command;

use iparking::{
    app::ledger_chain::{self, day_bounds},
    domain::tariff::LOCAL_TZ,
};
use iparking_mobile_api::{StaffRole, StartSession, VehicleClass, WardenPayment, WardenStartSession};
use iparking_tests::{matrix, raw, webdriver::Browser};

fn start(point: &str, plate: &str) -> StartSession {
    iparking_tests::finance::car_minutes(point, plate, 60)
}

/// Runs docs/ledger-rehash.py on `export` (and the digests file): its exit status and output.
fn python_rehash(export: &str, digests: Option<&serde_json::Value>) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("day.txt");
    std::fs::write(&file, export).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/ledger-rehash.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script).arg(&file);
    if let Some(d) = digests {
        let path = dir.path().join("digests.json");
        std::fs::write(&path, d.to_string()).unwrap();
        cmd.arg(path);
    }
    let out = cmd.output().expect("python3 runs (the test script installs it)");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

matrix!(the_chain_seals_every_transaction_and_verify_names_what_was_changed, |t| {
    // A day's money: a top-up, a wallet start and its extension, a warden's cash payment.
    let driver = t.funded_driver("0912777001", 300_000).await;
    let s = driver.start_session(&start("HK001", "30A-777.01"), "chain-1").await.unwrap();
    let more = iparking_mobile_api::ExtendSession { minutes: Some(60), turns: None, payment: None, card_id: None };
    driver.extend_session(s.id, &more, "chain-2").await.unwrap();
    let (warden, _) = t.warden_with(StaffRole::Warden, "hk.chain", &["HK"], &[]).await;
    warden.open_shift(&Default::default(), "chain-shift").await.unwrap();
    let cash = WardenStartSession {
        point_code: "HK002".into(),
        plate: "30A-777.02".into(),
        vehicle_class: VehicleClass::Car,
        turns: Some(1),
        minutes: None,
        payment: WardenPayment::Cash,
    };
    warden.warden_start_session(&cash, "chain-cash").await.unwrap();
    let written = t.sql_i64("SELECT COUNT(*) FROM ledger_transactions").await;
    assert!(written >= 4, "{written} transactions");
    let day = t.app.clock.now().with_timezone(&LOCAL_TZ).date_naive();

    // The day ends; the sealer (a node's job, called here at once) and the digest follow.
    t.clock.advance(chrono::Duration::days(1) + chrono::Duration::minutes(5));
    ledger_chain::seal(&t.app).await.unwrap();
    assert_eq!(t.sql_i64("SELECT COUNT(*) FROM ledger_transactions WHERE chain_seq IS NULL").await, 0);
    assert_eq!(t.sql_i64("SELECT MAX(chain_seq) FROM ledger_transactions").await, written, "places 1..n, no gap");
    ledger_chain::make_digests(&t.app).await.unwrap();
    let report = ledger_chain::verify_store(t.app.store.as_ref(), &t.app.receipt_key, &[]).await.unwrap();
    assert_eq!(report.broken, None, "{report:?}");
    assert_eq!(report.checked, written);
    assert!(report.digests_checked >= 1, "{report:?}");

    // The published digest: the day's totals, straight from the ledger.
    let (status, digests) = raw(reqwest::Client::new().get(t.url("/public/ledger/digests.json"))).await;
    assert_eq!(status, 200, "{digests}");
    let key = day.format("%Y-%m-%d").to_string();
    let digest = digests["digests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["day"] == key.as_str())
        .expect("the day's digest")
        .clone();
    let (from, to) = day_bounds(day);
    assert!(
        from <= t.app.clock.now() - chrono::Duration::days(1) && t.app.clock.now() - chrono::Duration::days(1) < to
    );
    assert_eq!(digest["transactions"], written, "{digest}");
    let moved = t.sql_i64("SELECT CAST(SUM(amount) AS BIGINT) FROM postings WHERE amount > 0").await;
    assert_eq!(digest["moved"], moved, "{digest}");
    assert_eq!(digest["to_seq"], written);
    let page = reqwest::get(t.url("/public/ledger/digests")).await.unwrap().text().await.unwrap();
    assert!(page.contains(digest["last_hash"].as_str().unwrap()), "the page shows the day's hash");
    let csv = reqwest::get(t.url("/public/ledger/digests.csv")).await.unwrap().text().await.unwrap();
    assert!(
        csv.contains(&format!("{key},1,{written},{written},{moved},{}", digest["last_hash"].as_str().unwrap())),
        "{csv}"
    );

    // The day's export: no plate, no phone, no warden, no driver's account number; the
    // independent Python script re-hashes it to the published digest.
    let export =
        ledger_chain::export_day(t.app.store.as_ref(), &t.app.receipt_key, day).await.unwrap().expect("an export");
    for secret in ["30A77701", "30A-777.01", "912777001", "hk.chain"] {
        assert!(!export.contains(secret), "{secret} in the export");
    }
    let driver_id = t.sql_i64("SELECT CAST(ref AS BIGINT) FROM accounts WHERE kind = 'wallet' LIMIT 1").await;
    assert!(!export.contains(&format!("wallet:{driver_id}=")), "the wallet is named by a pseudonym: {export}");
    assert!(export.contains("wallet:~"), "{export}");
    assert_eq!(export.lines().filter(|l| !l.starts_with('#') && !l.starts_with("prev ")).count() as i64, written);
    // Anyone can download the same export from the public page.
    let public = reqwest::get(t.url(&format!("/public/ledger/days/{key}.txt"))).await.unwrap();
    assert_eq!(public.status(), 200);
    assert_eq!(public.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(public.text().await.unwrap(), export);
    assert!(page.contains(&format!("href=\"/public/ledger/days/{key}.txt\"")), "the page links the day's export");
    for missing in ["2001-01-01.txt", "not-a-day.txt", "2026-12-04"] {
        let (status, body) = raw(reqwest::Client::new().get(t.url(&format!("/public/ledger/days/{missing}")))).await;
        assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")), "{missing}: {body}");
    }
    // The digests page is accessible on a phone, in both languages.
    let b = Browser::launch().await.expect("headless Chromium (scripts/test installs it)");
    b.set_window_size(390, 844).await.unwrap();
    for path in ["/public/ledger/digests", "/public/ledger/digests?lang=en"] {
        b.goto(&t.url(path)).await.unwrap();
        b.wait_for("#digests").await.unwrap();
        let found = b.axe_violations().await.unwrap();
        assert!(found.is_empty(), "{path}: {}", serde_json::to_string_pretty(&found).unwrap());
    }
    b.quit().await.unwrap();
    // The script is served as shipped in docs/.
    let script = reqwest::get(t.url("/public/ledger/ledger-rehash.py")).await.unwrap().text().await.unwrap();
    assert_eq!(
        script,
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/ledger-rehash.py")).unwrap()
    );
    assert!(page.contains("href=\"/public/ledger/ledger-rehash.py\""));
    // Each export reads a whole day: 20 an hour per client address, then 429.
    let mut statuses = Vec::new();
    for _ in 0..20 {
        statuses.push(reqwest::get(t.url(&format!("/public/ledger/days/{key}.txt"))).await.unwrap().status().as_u16());
    }
    let limited = statuses.iter().position(|s| *s == 429).expect("a 429 among 20 more downloads");
    assert!(limited >= 15 && statuses[..limited].iter().all(|s| *s == 200), "{statuses:?}");
    let (ok, out) = python_rehash(&export, Some(&digests));
    assert!(ok, "{out}");
    assert!(out.contains(digest["last_hash"].as_str().unwrap()), "{out}");
    assert_eq!(ledger_chain::verify_export(&export).unwrap().last_hash, digest["last_hash"].as_str().unwrap());

    // An intruder adds 1,000 VND to one posting of the extension: verify names it, and the
    // re-hash of a new export fails at it too.
    let extension = t.sql_i64(&format!("SELECT MAX(id) FROM ledger_transactions WHERE session_id = {} ", s.id)).await;
    let posting = t.sql_i64(&format!("SELECT MIN(id) FROM postings WHERE transaction_id = {extension}")).await;
    assert_eq!(t.sql_exec(&format!("UPDATE postings SET amount = amount + 1000 WHERE id = {posting}")).await, 1);
    let report = ledger_chain::verify_store(t.app.store.as_ref(), &t.app.receipt_key, &[]).await.unwrap();
    let broken = report.broken.expect("verify finds the change");
    assert!(broken.contains(&format!("transaction {extension} ")), "{broken}");
    let tampered = ledger_chain::export_day(t.app.store.as_ref(), &t.app.receipt_key, day).await.unwrap().unwrap();
    let (ok, out) = python_rehash(&tampered, None);
    assert!(!ok && out.contains(&format!("transaction {extension} ")), "{out}");
    // Put back, the chain is sound again.
    t.sql_exec(&format!("UPDATE postings SET amount = amount - 1000 WHERE id = {posting}")).await;
    let report = ledger_chain::verify_store(t.app.store.as_ref(), &t.app.receipt_key, &[]).await.unwrap();
    assert_eq!(report.broken, None);

    // Rewriting the chain after the change (new hashes from there on) does not help: the
    // published digest no longer matches.
    let anchors: Vec<iparking::store::chain::DigestRow> = serde_json::from_value(digests["digests"].clone()).unwrap();
    t.sql_exec("UPDATE ledger_digests SET last_hash = 'f00d' WHERE 1 = 1").await;
    let report = ledger_chain::verify_store(t.app.store.as_ref(), &t.app.receipt_key, &anchors).await.unwrap();
    assert!(report.broken.as_deref().unwrap_or("").contains("the digest of"), "{report:?}");
    t.sql_exec(&format!(
        "UPDATE ledger_digests SET last_hash = '{}' WHERE day = '{key}'",
        digest["last_hash"].as_str().unwrap()
    ))
    .await;

    // A transaction deleted (the top-up, with its postings): verify names the gap.
    let topup = t.sql_i64("SELECT MIN(id) FROM ledger_transactions").await;
    let place = t.sql_i64(&format!("SELECT chain_seq FROM ledger_transactions WHERE id = {topup}")).await;
    let next = t.sql_i64(&format!("SELECT id FROM ledger_transactions WHERE chain_seq = {}", place + 1)).await;
    t.sql_exec(&format!("DELETE FROM postings WHERE transaction_id = {topup}")).await;
    t.sql_exec(&format!("DELETE FROM ledger_transactions WHERE id = {topup}")).await;
    let report = ledger_chain::verify_store(t.app.store.as_ref(), &t.app.receipt_key, &[]).await.unwrap();
    let broken = report.broken.expect("verify finds the gap");
    assert!(
        broken.contains(&format!("gap: place {place} is missing")) && broken.contains(&format!("transaction {next}")),
        "{broken}"
    );
    let export = ledger_chain::export_day(t.app.store.as_ref(), &t.app.receipt_key, day).await.unwrap().unwrap();
    let (ok, out) = python_rehash(&export, None);
    assert!(!ok && (out.contains("places are missing") || out.contains("does not give its hash")), "{out}");
});

matrix!(the_chain_goes_on_across_seals_and_a_deleted_last_transaction_is_missed, |t| {
    let driver = t.funded_driver("0912777002", 200_000).await;
    driver.start_session(&start("HK003", "30A-777.03"), "chain-a").await.unwrap();
    t.clock.advance(chrono::Duration::seconds(5));
    ledger_chain::seal(&t.app).await.unwrap();
    let sealed = t.sql_i64("SELECT COUNT(*) FROM ledger_transactions WHERE chain_seq IS NOT NULL").await;
    assert_eq!(sealed, t.sql_i64("SELECT COUNT(*) FROM ledger_transactions").await);
    // No digest for a day that has not ended.
    ledger_chain::make_digests(&t.app).await.unwrap();
    assert_eq!(t.sql_i64("SELECT COUNT(*) FROM ledger_digests").await, 0);
    // More money; sealed after the first ones, continuing the chain.
    driver.start_session(&start("HK004", "30A-777.04"), "chain-b").await.unwrap();
    t.clock.advance(chrono::Duration::seconds(5));
    ledger_chain::seal(&t.app).await.unwrap();
    let report = ledger_chain::verify_store(t.app.store.as_ref(), &t.app.receipt_key, &[]).await.unwrap();
    assert_eq!((report.broken.clone(), report.checked), (None, sealed + 1), "{report:?}");
    // The chain's last transaction deleted: nothing follows it, but the head remembers.
    let last = t.sql_i64("SELECT id FROM ledger_transactions ORDER BY chain_seq DESC LIMIT 1").await;
    t.sql_exec(&format!("DELETE FROM postings WHERE transaction_id = {last}")).await;
    t.sql_exec(&format!("UPDATE session_purchases SET transaction_id = NULL WHERE transaction_id = {last}")).await;
    t.sql_exec(&format!("DELETE FROM ledger_transactions WHERE id = {last}")).await;
    let report = ledger_chain::verify_store(t.app.store.as_ref(), &t.app.receipt_key, &[]).await.unwrap();
    let broken = report.broken.expect("verify finds the missing end");
    assert!(
        broken.contains(&format!("place {} is missing", sealed + 1)) && broken.contains("the chain's head"),
        "{broken}"
    );
});
