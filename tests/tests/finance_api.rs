//! Black-box tests of finance (docs/finance.md): revenue reports from the ledger (JSON and
//! CSV), carrier settlement files, reconciliation of the processor, the carriers and the
//! wardens' cash, resolving discrepancies, period close, adjustments and refund requests, on
//! SQLite + in-process live state and on PostgreSQL + Redis.
//!
//! Prices depend on the Hanoi time of day and the tests run at the real time: expected amounts
//! come from the sessions the server answered and from the ledger's postings (read by SQL),
//! never typed in.

use std::{collections::BTreeSet, sync::Arc, time::Duration as StdDuration};

use chrono::{Duration, NaiveDate};
use iparking::payments::{SandboxGateway, StripeGateway};
use iparking_mobile_api::{
    AdjustmentView, CardPayment, CardView, Client, ClientError, CloseShift, DiscrepancyView, PaymentSource, PeriodView,
    QuoteRequest, ReconciliationReport, RefundRequestView, RevenueChannel, RevenueReport, RevenueRow, SessionView,
    SettlementView, StaffRole, StartSession, SyncAction, SyncBatch, SyncKind, VehicleClass,
};
use iparking_tests::{
    Db, Live, Options, TestApp, assert_error,
    fake_stripe::{FakeCard, FakeStripe},
    finance::*,
    matrix, raw,
};
use serde_json::{Value, json};

// ---- harness ---------------------------------------------------------------------------

const WHSEC: &str = "whsec_test_secret";

/// A server with the real Stripe adapter pointed at a new fake Stripe (clock set to the
/// server's; background sweeps and imports never run by themselves during a test).
async fn start_stripe(db: Db, live: Live) -> (TestApp, FakeStripe) {
    let fake = FakeStripe::start().await;
    let gateway =
        StripeGateway::new("sk_test_fake", Some(&fake.base)).unwrap().with_backoff(StdDuration::from_millis(10));
    let mut opts =
        Options { payments: Some(Arc::new(gateway)), stripe_webhook_secret: Some(WHSEC.into()), ..Options::default() };
    opts.settings.sweep_interval = StdDuration::from_secs(3600);
    opts.settings.settlement_interval = StdDuration::from_secs(3600);
    let t = TestApp::start_with(db, live, opts).await;
    fake.set_now(now(&t).timestamp());
    (t, fake)
}

/// Like `matrix!`, with a fake Stripe: runs on SQLite + memory and PostgreSQL + Redis.
macro_rules! with_stripe {
    ($name:ident, |$t:ident, $fake:ident| $body:block) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite_memory() {
                let ($t, $fake) = start_stripe(Db::Sqlite, Live::Memory).await;
                $body
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres_redis() {
                let ($t, $fake) = start_stripe(Db::Postgres, Live::Redis).await;
                $body
            }
        }
    };
}

/// Decodes a 200 answer into a contract type, with the body in the failure message.
macro_rules! ok {
    ($answer:expr, $what:expr) => {{
        let (status, body): (u16, Value) = $answer;
        assert_eq!(status, 200, "{}: {body}", $what);
        serde_json::from_value(body.clone()).unwrap_or_else(|e| panic!("{}: not the contract ({e}): {body}", $what))
    }};
}

/// Decodes a 201 answer into a contract type.
macro_rules! created {
    ($answer:expr, $what:expr) => {{
        let (status, body): (u16, Value) = $answer;
        assert_eq!(status, 201, "{}: {body}", $what);
        serde_json::from_value(body.clone()).unwrap_or_else(|e| panic!("{}: not the contract ({e}): {body}", $what))
    }};
}

/// Asserts the one error shape and the status, for answers whose code the spec leaves open.
#[track_caller]
fn assert_error_shape(answer: &(u16, Value), status: u16) {
    let code = answer.1["error"]["code"].as_str().unwrap_or("").to_owned();
    assert!(!code.is_empty(), "error without a code (HTTP {}): {}", answer.0, answer.1);
    assert_error(answer, status, &code);
}

// ---- finance calls ----------------------------------------------------------------------

async fn revenue(t: &TestApp, token: &str, query: &str) -> RevenueReport {
    ok!(get(t, Some(token), &format!("/v1/finance/revenue?{query}")).await, format!("revenue?{query}"))
}

async fn reconcile(t: &TestApp, token: &str, query: &str) -> ReconciliationReport {
    ok!(get(t, Some(token), &format!("/v1/finance/reconciliation?{query}")).await, format!("reconciliation?{query}"))
}

fn settlement_path(carrier: &str, month: &str) -> String {
    format!("/v1/finance/carriers/{carrier}/settlements?month={month}")
}

async fn upload(t: &TestApp, token: &str, carrier: &str, month: &str, key: &str, csv: &str) -> (u16, Value) {
    post_csv(t, Some(token), &settlement_path(carrier, month), Some(key), csv).await
}

async fn resolve(t: &TestApp, token: &str, id: i64, key: &str, note: &str) -> (u16, Value) {
    post(t, Some(token), &format!("/v1/finance/discrepancies/{id}/resolve"), Some(key), &json!({ "note": note })).await
}

async fn adjust(t: &TestApp, token: &str, key: &str, body: &Value) -> (u16, Value) {
    post(t, Some(token), "/v1/finance/adjustments", Some(key), body).await
}

async fn close(t: &TestApp, token: &str, month: &str, key: &str, body: &Value) -> (u16, Value) {
    post(t, Some(token), &format!("/v1/finance/periods/{month}/close"), Some(key), body).await
}

async fn decide(t: &TestApp, token: &str, id: i64, verdict: &str, key: &str, note: &str) -> (u16, Value) {
    post(t, Some(token), &format!("/v1/finance/refund-requests/{id}/{verdict}"), Some(key), &json!({ "note": note }))
        .await
}

async fn request_refund(t: &TestApp, driver_token: &str, key: &str, body: &Value) -> (u16, Value) {
    post(t, Some(driver_token), "/v1/me/refund-requests", Some(key), body).await
}

/// `from=D&to=D` for one local day.
fn day_query(d: NaiveDate) -> String {
    format!("from={d}&to={d}")
}

/// The discrepancy of a kind and subject in a report (panics with the list if absent).
#[track_caller]
fn finding<'a>(r: &'a ReconciliationReport, kind: &str, subject: &str) -> &'a DiscrepancyView {
    r.discrepancies.iter().find(|d| d.kind == kind && d.subject == subject).unwrap_or_else(|| {
        let seen: Vec<(&str, &str, &str)> =
            r.discrepancies.iter().map(|d| (d.kind.as_str(), d.subject.as_str(), d.status.as_str())).collect();
        panic!("no {kind} {subject} among {seen:?}")
    })
}

/// Sums of the rows, to compare with `totals`.
fn sum_rows(rows: &[RevenueRow]) -> (i64, i64, i64, i64) {
    rows.iter().fold((0, 0, 0, 0), |(g, c, n, p), r| {
        (g + r.sums.gross, c + r.sums.carrier_share, n + r.sums.net, p + r.sums.postings)
    })
}

/// Every row's `net` is `gross - carrier_share`, and the totals are the rows' sums.
#[track_caller]
fn assert_report_adds_up(r: &RevenueReport) {
    for row in &r.rows {
        assert_eq!(row.sums.net, row.sums.gross - row.sums.carrier_share, "net of {row:?}");
    }
    let (g, c, n, p) = sum_rows(&r.rows);
    assert_eq!(
        (r.totals.gross, r.totals.carrier_share, r.totals.net, r.totals.postings),
        (g, c, n, p),
        "totals are the sum of the rows: {r:?}"
    );
}

fn channel_row(r: &RevenueReport, c: RevenueChannel) -> Option<&RevenueRow> {
    r.rows.iter().find(|row| row.channel == Some(c))
}

/// The amount a session earned (charged minus refunded), from the database.
async fn session_net(t: &TestApp, id: i64) -> i64 {
    t.sql_i64(&format!("SELECT amount_charged - amount_refunded FROM sessions WHERE id = {id}")).await
}

// ---- Stripe helpers (as the app and Stripe do it) ----------------------------------------

async fn stripe_event(t: &TestApp, fake: &FakeStripe, id: &str, kind: &str, object: Value) -> String {
    let (payload, sig) = fake.event_object(id, kind, object, WHSEC, None);
    let (status, body) =
        raw(reqwest::Client::new().post(t.url("/webhooks/stripe")).header("Stripe-Signature", sig).body(payload)).await;
    assert_eq!(status, 200, "{kind} {id}: {body}");
    body["outcome"].as_str().unwrap_or_default().to_owned()
}

async fn save_card(t: &TestApp, fake: &FakeStripe, d: &Client, key: &str) -> CardView {
    let setup = d.create_card_setup(key).await.expect("card setup");
    fake.complete_setup(&setup.setup_id, FakeCard::Ok);
    let outcome = stripe_event(
        t,
        fake,
        &format!("evt_{}", setup.setup_id),
        "setup_intent.succeeded",
        fake.setup_intent(&setup.setup_id),
    )
    .await;
    assert_eq!(outcome, "card_saved");
    d.cards().await.expect("cards").into_iter().max_by_key(|c| c.id).expect("a card")
}

async fn card_session(d: &Client, card: &CardView, point: &str, plate: &str, turns: u32, key: &str) -> SessionView {
    let body = StartSession { payment: Some(PaymentSource::Card), card_id: Some(card.id), ..car(point, plate, turns) };
    match d.start_session_by_card(&body, key).await {
        Ok(CardPayment::Paid(s)) => *s,
        other => panic!("expected a card-paid session at {point}, got {other:?}"),
    }
}

/// A card top-up, authenticated and credited by Stripe's webhook; returns the intent id.
async fn card_topup(t: &TestApp, fake: &FakeStripe, d: &Client, amount: i64, key: &str) -> String {
    let topup = d.topup(amount, key).await.expect("top-up");
    fake.authenticate(&topup.intent_id, true);
    let outcome = stripe_event(
        t,
        fake,
        &format!("evt_topup_{key}"),
        "payment_intent.succeeded",
        fake.payment_intent(&topup.intent_id),
    )
    .await;
    assert_eq!(outcome, "credited");
    topup.intent_id
}

async fn import_settlement(t: &TestApp, token: &str) {
    let (status, body) = post(t, Some(token), "/v1/admin/settlement/import", None, &json!({})).await;
    assert_eq!(status, 200, "settlement import: {body}");
}

// ---- 1. revenue ---------------------------------------------------------------------------

with_stripe!(revenue_splits_every_channel_by_street_district_point_class_and_day, |t, fake| {
    let fin = finance(&t, "Kế toán Thành phố").await;
    let d = t.funded_driver("0912700001", 2_000_000).await;
    // Wallet: three turns at HK001 (Lý Thường Kiệt), stopped at once: two come back.
    let w1 = wallet_session(&d, &car("HK001", "30A70001", 3), "w1").await;
    let stopped = d.stop_session(w1.id, "w1-stop").await.expect("stop");
    assert!(stopped.amount_refunded > 0, "two unused turns are refunded: {stopped:?}");
    // Wallet: a minibus at HK003, a car at HBT003 (Lê Đại Hành).
    let bus_body = StartSession { vehicle_class: Some(VehicleClass::Minibus), ..car("HK003", "30B70002", 1) };
    let bus = wallet_session(&d, &bus_body, "w2").await;
    let w3 = wallet_session(&d, &car("HBT003", "30A70003", 2), "w3").await;
    // SMS on Trần Hưng Đạo through both carriers.
    let (sms1, _) = sms_turn(&t, "viettel", "fin-m1", "HK010", "30A70004").await;
    let (sms2, _) = sms_turn(&t, "mobifone", "fin-m2", "HK011", "30A70005").await;
    // A card at HBT001 (Bà Triệu).
    let dc = t.driver("0912700002").await;
    let card = save_card(&t, &fake, &dc, "setup").await;
    let cs = card_session(&dc, &card, "HBT001", "30A70006", 1, "c1").await;
    // Cash taken by a warden at HK012 (Trần Hưng Đạo).
    let (w, _, _) = warden_on_shift(&t, "hk.revenue", &["HK"]).await;
    let cash = cash_session(&w, "HK012", "30A70007", 2, "cash-1").await;

    let wallet_net = session_net(&t, w1.id).await + bus.amount_charged + w3.amount_charged;
    assert_eq!(session_net(&t, w1.id).await, w1.amount_charged - stopped.amount_refunded);
    let (sms1_gross, sms2_gross) = (session_net(&t, sms1).await, session_net(&t, sms2).await);
    let sms_gross = sms1_gross + sms2_gross;
    let card_gross = cs.amount_charged;
    let cash_gross = cash.receipt.amount;
    let all = wallet_net + sms_gross + card_gross + cash_gross;
    assert_eq!(ledger_gross(&t, "1=1").await, all, "the books hold what the sessions earned");
    let share = ledger_carrier_share(&t).await;
    // The pilot's carrier keeps 10%, the other 12% (the test carriers' shares).
    assert_eq!(share, sms1_gross / 10 + sms2_gross * 12 / 100, "carrier shares in the books");

    let today = today(&t);
    let q = day_query(today);

    // By channel: one row per channel, by channel name; gross, share, net, postings.
    let r = revenue(&t, &fin.token, &format!("{q}&group_by=channel")).await;
    assert_eq!((r.from, r.to, r.group_by.clone(), r.scope.clone()), (today, today, vec!["channel".into()], vec![]));
    assert_report_adds_up(&r);
    let channels: Vec<_> = r.rows.iter().map(|row| row.channel).collect();
    use RevenueChannel::*;
    assert_eq!(channels, [Some(Card), Some(Sms), Some(Wallet), Some(WardenCash)], "{r:?}");
    let sums = |c: RevenueChannel| {
        let row = channel_row(&r, c).expect("row");
        (row.sums.gross, row.sums.carrier_share, row.sums.net, row.sums.postings)
    };
    assert_eq!(sums(Card), (card_gross, 0, card_gross, 1));
    assert_eq!(sums(Sms), (sms_gross, share, sms_gross - share, 2));
    assert_eq!(sums(Wallet), (wallet_net, 0, wallet_net, 4), "three starts and one refund");
    assert_eq!(sums(WardenCash), (cash_gross, 0, cash_gross, 1));
    for c in ["card", "sms", "wallet", "warden_cash"] {
        let filter = format!("p.channel = '{c}'");
        let row = r.rows.iter().find(|row| row.channel.map(|x| x.as_str()) == Some(c)).expect("row");
        assert_eq!(row.sums.gross, ledger_gross(&t, &filter).await, "{c}: the report is the ledger");
        assert_eq!(row.sums.postings, ledger_postings(&t, &filter).await, "{c}: postings");
    }
    assert_eq!((r.totals.gross, r.totals.carrier_share), (all, share));
    assert_eq!(r.totals.postings, ledger_postings(&t, "1=1").await);
    assert!(r.rows.iter().all(|row| row.district_code.is_none() && row.street_id.is_none() && row.day.is_none()));

    // By district.
    let r = revenue(&t, &fin.token, &format!("{q}&group_by=district")).await;
    assert_report_adds_up(&r);
    let got: Vec<_> =
        r.rows.iter().map(|row| (row.district_code.clone(), row.district_name.clone(), row.sums.gross)).collect();
    assert_eq!(
        got,
        [
            (Some("HBT".into()), Some("Hai Bà Trưng".into()), ledger_gross(&t, "d.code = 'HBT'").await),
            (Some("HK".into()), Some("Hoàn Kiếm".into()), ledger_gross(&t, "d.code = 'HK'").await),
        ]
    );
    assert_eq!(got[0].2, w3.amount_charged + card_gross);
    assert_eq!(r.totals.gross, all);

    // By street and channel: streets by name, then channels.
    let r = revenue(&t, &fin.token, &format!("{q}&group_by=street,channel")).await;
    assert_report_adds_up(&r);
    assert_eq!(r.group_by, ["street", "channel"]);
    let got: Vec<_> = r
        .rows
        .iter()
        .map(|row| (row.street_name.clone().unwrap_or_default(), row.channel, row.sums.gross, row.sums.carrier_share))
        .collect();
    let want = vec![
        ("Bà Triệu".to_owned(), Some(Card), card_gross, 0),
        ("Lê Đại Hành".to_owned(), Some(Wallet), w3.amount_charged, 0),
        ("Lý Thường Kiệt".to_owned(), Some(Wallet), session_net(&t, w1.id).await + bus.amount_charged, 0),
        ("Trần Hưng Đạo".to_owned(), Some(Sms), sms_gross, share),
        ("Trần Hưng Đạo".to_owned(), Some(WardenCash), cash_gross, 0),
    ];
    assert_eq!(got, want, "{r:?}");
    for row in &r.rows {
        let name = row.street_name.clone().expect("street name");
        assert_eq!(row.street_id, Some(street_id(&t, &name).await), "{name}");
        let district = if name == "Bà Triệu" || name == "Lê Đại Hành" { "HBT" } else { "HK" };
        assert_eq!(row.district_code.as_deref(), Some(district), "{name}");
        assert!(row.point_code.is_none(), "{row:?}");
    }

    // By channel then district: the order asked.
    let r = revenue(&t, &fin.token, &format!("{q}&group_by=channel,district")).await;
    let got: Vec<_> = r.rows.iter().map(|row| (row.channel, row.district_code.clone().unwrap_or_default())).collect();
    assert_eq!(
        got,
        [
            (Some(Card), "HBT".to_owned()),
            (Some(Sms), "HK".to_owned()),
            (Some(Wallet), "HBT".to_owned()),
            (Some(Wallet), "HK".to_owned()),
            (Some(WardenCash), "HK".to_owned()),
        ]
    );
    assert_report_adds_up(&r);

    // By point: point codes, names, and each point's postings.
    let r = revenue(&t, &fin.token, &format!("{q}&group_by=point")).await;
    assert_report_adds_up(&r);
    let codes: Vec<_> = r.rows.iter().map(|row| row.point_code.clone().unwrap_or_default()).collect();
    assert_eq!(codes, ["HBT001", "HBT003", "HK001", "HK003", "HK010", "HK011", "HK012"]);
    for row in &r.rows {
        let code = row.point_code.clone().expect("code");
        let id = point_id(&t, &code).await;
        assert_eq!(row.sums.gross, ledger_gross(&t, &format!("pt.id = {id}")).await, "{code}");
        let name = t.sql_text(&format!("SELECT name FROM points WHERE id = {id}")).await;
        assert_eq!(row.point_name, name, "{code}");
        assert!(row.street_name.is_some() && row.district_code.is_some(), "{row:?}");
    }
    assert_eq!(r.rows[2].sums.postings, 2, "HK001: the start and its refund");

    // By vehicle class.
    let r = revenue(&t, &fin.token, &format!("{q}&group_by=vehicle_class")).await;
    assert_report_adds_up(&r);
    let got: Vec<_> = r.rows.iter().map(|row| (row.vehicle_class, row.sums.gross)).collect();
    assert_eq!(
        got,
        [(Some(VehicleClass::Car), all - bus.amount_charged), (Some(VehicleClass::Minibus), bus.amount_charged)]
    );

    // By day: all of it today.
    let r = revenue(&t, &fin.token, &format!("{q}&group_by=day")).await;
    let got: Vec<_> = r.rows.iter().map(|row| (row.day, row.sums.gross)).collect();
    assert_eq!(got, [(Some(today), all)]);

    // No grouping: one total row.
    let r = revenue(&t, &fin.token, &q).await;
    assert_eq!(r.rows.len(), 1, "{r:?}");
    assert_eq!(r.rows[0].sums, r.totals);
    assert_eq!((r.totals.gross, r.totals.carrier_share, r.totals.net), (all, share, all - share));
    let r2 = revenue(&t, &fin.token, &format!("{q}&group_by=")).await;
    assert_eq!(r2.totals, r.totals, "an empty group_by is one total row too");

    // Filters: a district, a street.
    let r = revenue(&t, &fin.token, &format!("{q}&group_by=channel&district=HK")).await;
    assert_eq!(r.totals.gross, ledger_gross(&t, "d.code = 'HK'").await);
    assert!(channel_row(&r, Card).is_none(), "the card was paid in HBT: {r:?}");
    let thd = street_id(&t, "Trần Hưng Đạo").await;
    let r = revenue(&t, &fin.token, &format!("{q}&group_by=channel&street={thd}")).await;
    assert_eq!((r.totals.gross, r.totals.carrier_share), (sms_gross + cash_gross, share));
    assert_eq!(r.rows.len(), 2, "{r:?}");

    // A day with nothing: no rows, zero totals.
    let r = revenue(&t, &fin.token, &format!("{}&group_by=channel", day_query(today - Duration::days(3)))).await;
    assert!(r.rows.is_empty(), "groups without postings do not appear: {r:?}");
    assert_eq!((r.totals.gross, r.totals.postings), (0, 0));

    // The city's admin reads the same report.
    let admin = staff(&t, StaffRole::Admin, &[], "Quản trị").await;
    let r = revenue(&t, &admin.token, &format!("{q}&group_by=channel")).await;
    assert_eq!((r.totals.gross, r.totals.carrier_share), (all, share));
    t.assert_ledger_sound().await;
});

matrix!(a_local_day_ends_at_midnight_in_hanoi, |t| {
    let fin = finance(&t, "Kế toán").await;
    let d = t.funded_driver("0912700011", 2_000_000).await;
    // 23:30 and 00:30 local are the same UTC day (16:30 and 17:30 UTC) but two local days.
    let mut day = today(&t);
    if local(day.and_hms_opt(23, 30, 0).unwrap()) <= now(&t) + Duration::minutes(1) {
        day += Duration::days(1);
    }
    advance_to(&t, day.and_hms_opt(23, 30, 0).unwrap());
    let late = wallet_session(&d, &car("HK001", "30A71001", 1), "late").await;
    advance_to(&t, (day + Duration::days(1)).and_hms_opt(0, 30, 0).unwrap());
    let early = wallet_session(&d, &car("HK002", "30A71002", 1), "early").await;
    let next = day + Duration::days(1);
    assert_eq!(late.started_at.date_naive(), early.started_at.date_naive(), "one UTC day");

    let r = revenue(&t, &fin.token, &format!("from={day}&to={next}&group_by=day")).await;
    let got: Vec<_> = r.rows.iter().map(|row| (row.day, row.sums.gross, row.sums.postings)).collect();
    assert_eq!(got, [(Some(day), late.amount_charged, 1), (Some(next), early.amount_charged, 1)]);
    assert_report_adds_up(&r);
    // One day alone has only its own postings; the day before has nothing.
    let r = revenue(&t, &fin.token, &day_query(day)).await;
    assert_eq!(r.totals.gross, late.amount_charged);
    let r = revenue(&t, &fin.token, &format!("{}&group_by=day,point", day_query(next))).await;
    let got: Vec<_> = r.rows.iter().map(|row| (row.day, row.point_code.clone(), row.sums.gross)).collect();
    assert_eq!(got, [(Some(next), Some("HK002".into()), early.amount_charged)]);
    let r = revenue(&t, &fin.token, &day_query(day - Duration::days(1))).await;
    assert_eq!(r.totals.gross, 0);
    assert_eq!(ledger_gross(&t, "1=1").await, late.amount_charged + early.amount_charged);
    t.assert_ledger_sound().await;
});

matrix!(district_finance_sees_only_its_district, |t| {
    let hk = staff(&t, StaffRole::Finance, &["HK"], "Kế toán Hoàn Kiếm").await;
    let city = finance(&t, "Kế toán Thành phố").await;
    let d = t.funded_driver("0912700021", 1_000_000).await;
    let a = wallet_session(&d, &car("HK004", "30A72001", 1), "a").await;
    let b = wallet_session(&d, &car("HBT001", "30A72002", 2), "b").await;
    let q = day_query(today(&t));

    let r = revenue(&t, &hk.token, &format!("{q}&group_by=district")).await;
    assert_eq!(r.scope, ["HK"]);
    let got: Vec<_> = r.rows.iter().map(|row| (row.district_code.clone(), row.sums.gross)).collect();
    assert_eq!(got, [(Some("HK".into()), a.amount_charged)], "only Hoàn Kiếm");
    assert_eq!(r.totals.gross, a.amount_charged);
    let r = revenue(&t, &hk.token, &format!("{q}&group_by=point")).await;
    assert!(r.rows.iter().all(|row| row.district_code.as_deref() == Some("HK")), "{r:?}");
    let r = revenue(&t, &hk.token, &format!("{q}&district=HK")).await;
    assert_eq!(r.totals.gross, a.amount_charged);
    // Another district's filter: refused.
    let other = get(&t, Some(&hk.token), &format!("/v1/finance/revenue?{q}&district=HBT")).await;
    assert_error(&other, 403, "out_of_scope");
    let ba_trieu = street_id(&t, "Bà Triệu").await;
    let other = get(&t, Some(&hk.token), &format!("/v1/finance/revenue?{q}&street={ba_trieu}")).await;
    assert_error(&other, 403, "out_of_scope");
    // City-wide finance sees both.
    let r = revenue(&t, &city.token, &format!("{q}&group_by=district")).await;
    assert_eq!(r.scope, Vec::<String>::new());
    assert_eq!(r.totals.gross, a.amount_charged + b.amount_charged);
    let r = revenue(&t, &city.token, &format!("{q}&district=HBT")).await;
    assert_eq!(r.totals.gross, b.amount_charged);

    // Reconciliation for a district: only the cash section and its discrepancies.
    let rec = reconcile(&t, &hk.token, &format!("date={}", today(&t))).await;
    assert_eq!(rec.scope, ["HK"]);
    assert!(rec.processor.is_none() && rec.ledger.is_none() && rec.carriers.is_empty(), "{rec:?}");
    let rec = reconcile(&t, &city.token, &format!("date={}", today(&t))).await;
    assert!(rec.processor.is_some() && rec.ledger.is_some(), "{rec:?}");
    let carriers: BTreeSet<_> = rec.carriers.iter().map(|c| c.carrier.clone()).collect();
    assert_eq!(carriers, BTreeSet::from(["mobifone".to_owned(), "viettel".to_owned()]));

    // Adjustments: a district's staff list those of their districts (a point's revenue there,
    // or one of their discrepancies corrected); city-wide ones only city-wide staff.
    let (shift, warden) = short_shift(&t, "hk.scope", "HK005", "30A72003", 4_000).await;
    let rec = reconcile(&t, &city.token, &format!("date={}", today(&t))).await;
    let short = finding(&rec, "cash_difference", &format!("shift:{shift}")).clone();
    assert_eq!(short.district_code.as_deref(), Some("HK"));
    let to_point = |point: &str| json!({"debit": {"kind": "write_off"}, "credit": {"kind": "point_revenue", "point": point}, "amount": 11_000});
    let bodies = [
        ("hk", to_point("HK004"), Some("HK")),
        ("hbt", to_point("HBT001"), Some("HBT")),
        ("bd", to_point("BD001"), Some("BD")),
        ("city", json!({"debit": {"kind": "write_off"}, "credit": {"kind": "cash_office"}, "amount": 3_000}), None),
        (
            "hk-shortfall",
            json!({"debit": {"kind": "write_off"}, "credit": {"kind": "warden_cash", "staff_id": warden},
                   "amount": 4_000, "discrepancy_id": short.id}),
            Some("HK"),
        ),
    ];
    for (reason, body, district) in &bodies {
        let mut body = body.clone();
        body["reason"] = json!(reason);
        let v: AdjustmentView = created!(adjust(&t, &city.token, reason, &body).await, reason);
        assert_eq!(v.district_code.as_deref(), *district, "{reason}");
    }
    let month = month_of(today(&t));
    let hbt_bd = staff(&t, StaffRole::Finance, &["HBT", "BD"], "Kế toán HBT và BD").await;
    let bd_admin = staff(&t, StaffRole::Admin, &["BD"], "Quản trị Ba Đình").await;
    let city_admin = staff(&t, StaffRole::Admin, &[], "Quản trị Thành phố").await;
    let everything = vec!["bd", "city", "hbt", "hk", "hk-shortfall"];
    for (who, token, want) in [
        ("city finance", &city.token, everything.clone()),
        ("city admin", &city_admin.token, everything),
        ("HK finance", &hk.token, vec!["hk", "hk-shortfall"]),
        ("HBT+BD finance", &hbt_bd.token, vec!["bd", "hbt"]),
        ("BD admin", &bd_admin.token, vec!["bd"]),
    ] {
        let listed: Vec<AdjustmentView> =
            ok!(get(&t, Some(token), &format!("/v1/finance/adjustments?month={month}")).await, who);
        let got: BTreeSet<&str> = listed.iter().map(|a| a.reason.as_str()).collect();
        assert_eq!(got, want.into_iter().collect::<BTreeSet<_>>(), "{who}");
    }
    t.assert_ledger_sound().await;
});

matrix!(revenue_refuses_bad_queries_and_strangers, |t| {
    let fin = finance(&t, "Kế toán").await;
    let d = t.funded_driver("0912700031", 500_000).await;
    wallet_session(&d, &car("HK001", "30A73001", 1), "a").await;
    let day = today(&t);
    let q = day_query(day);
    let before = (count(&t, "ledger_transactions").await, count(&t, "discrepancies").await);
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "invalid_date"),
        (format!("from={day}"), "invalid_date"),
        (format!("to={day}"), "invalid_date"),
        (format!("from=2026-13-01&to={day}"), "invalid_date"),
        (format!("from={}&to={day}", day.format("%d/%m/%Y")), "invalid_date"),
        (format!("from={day}&to=tomorrow"), "invalid_date"),
        (format!("{q}&group_by=plate"), "invalid_group"),
        (format!("{q}&format=xml"), "invalid_format"),
    ];
    for (query, code) in &cases {
        let a = get(&t, Some(&fin.token), &format!("/v1/finance/revenue?{query}")).await;
        assert_error(&a, 400, code);
    }
    // Each field well-formed, their combination refused: 422 (decision 0016).
    let between = [
        (format!("from={}&to={day}", day + Duration::days(1)), "invalid_range"),
        (format!("from={}&to={day}", day - Duration::days(367)), "invalid_range"),
        (format!("{q}&group_by=street,street"), "invalid_group"),
        (format!("{q}&group_by=channel,day,channel"), "invalid_group"),
    ];
    for (query, code) in &between {
        let a = get(&t, Some(&fin.token), &format!("/v1/finance/revenue?{query}")).await;
        assert_error(&a, 422, code);
    }
    // The group error lists the allowed dimensions.
    let a = get(&t, Some(&fin.token), &format!("/v1/finance/revenue?{q}&group_by=plate")).await;
    let details = a.1["error"]["details"].to_string();
    for dim in ["district", "street", "point", "channel", "day", "vehicle_class"] {
        assert!(details.contains(dim), "details name {dim}: {}", a.1);
    }
    // English on request.
    let en = raw(reqwest::Client::new()
        .get(t.url(&format!("/v1/finance/revenue?{q}&group_by=plate")))
        .bearer_auth(&fin.token)
        .header("Accept-Language", "en"))
    .await;
    assert_error(&en, 400, "invalid_group");
    assert_ne!(en.1["error"]["message"], a.1["error"]["message"], "Vietnamese first, English on request");
    // 366 days is the longest report.
    let r = revenue(&t, &fin.token, &format!("from={}&to={day}", day - Duration::days(366))).await;
    assert!(r.totals.gross > 0);
    // Unknown filters.
    assert_error(
        &get(&t, Some(&fin.token), &format!("/v1/finance/revenue?{q}&district=ZZ")).await,
        404,
        "district_not_found",
    );
    assert_error(
        &get(&t, Some(&fin.token), &format!("/v1/finance/revenue?{q}&street=999999")).await,
        404,
        "street_not_found",
    );

    // Who may ask.
    let path = format!("/v1/finance/revenue?{q}");
    assert_error(&get(&t, None, &path).await, 401, "unauthorized");
    let (_, driver) = driver_login(&t, "0912700032").await;
    let a = get(&t, Some(&driver), &path).await;
    assert!(matches!(a.0, 401 | 403), "a driver token: {a:?}");
    assert_error_shape(&a, a.0);
    let (_, warden) = t.warden_with(StaffRole::Warden, "hk.nofinance", &["HK"], &[]).await;
    assert_error(&get(&t, Some(&warden.token), &path).await, 403, "forbidden");
    let (_, inspector) = t.warden_with(StaffRole::Inspector, "insp.nofinance", &[], &[]).await;
    assert_error(&get(&t, Some(&inspector.token), &path).await, 403, "forbidden");
    assert_error(&get(&t, Some("not-a-token"), &path).await, 401, "unauthorized");

    // Reconciliation: exactly one of date or month.
    for query in [String::new(), format!("date={day}&month={}", month_of(day))] {
        let a = get(&t, Some(&fin.token), &format!("/v1/finance/reconciliation?{query}")).await;
        assert_error(&a, 422, "invalid_period");
    }
    for query in ["date=2026-02-30", "month=2026-13", "month=december", "date=yesterday"] {
        let a = get(&t, Some(&fin.token), &format!("/v1/finance/reconciliation?{query}")).await;
        assert_error_shape(&a, 400);
    }
    let a = get(&t, Some(&fin.token), &format!("/v1/finance/reconciliation?date={day}&format=pdf")).await;
    assert_error(&a, 400, "invalid_format");
    assert_error(
        &get(&t, Some(&warden.token), &format!("/v1/finance/reconciliation?date={day}")).await,
        403,
        "forbidden",
    );
    assert_error(&get(&t, None, &format!("/v1/finance/reconciliation?date={day}")).await, 401, "unauthorized");
    let a = get(&t, Some(&fin.token), &format!("/v1/finance/discrepancies?status=lost&month={}", month_of(day))).await;
    assert_error_shape(&a, 400);
    assert_eq!(
        (count(&t, "ledger_transactions").await, count(&t, "discrepancies").await),
        before,
        "refused queries change nothing"
    );
});

matrix!(revenue_csv_is_ready_for_a_spreadsheet, |t| {
    let fin = finance(&t, "Kế toán").await;
    let d = t.funded_driver("0912700041", 1_000_000).await;
    wallet_session(&d, &car("HK001", "30A74001", 2), "a").await;
    wallet_session(&d, &car("HBT003", "30A74002", 1), "b").await;
    // A street whose name needs quoting.
    let street = t
        .admin
        .create_street(&iparking_mobile_api::CreateStreet {
            district_code: "HK".into(),
            name: "Ngõ 5, Hàng Bài".into(),
        })
        .await
        .expect("street");
    t.admin
        .create_point(&iparking_mobile_api::CreatePoint {
            code: "HK950".into(),
            name: "Ngõ 5 – đầu ngõ".into(),
            street_id: street.id,
            lat: 21.0230,
            lon: 105.8520,
            curb: None,
            capacity: 5,
            vehicle_classes: vec![VehicleClass::Car],
        })
        .await
        .expect("point");
    wallet_session(&d, &car("HK950", "30A74003", 1), "c").await;
    let day = today(&t);
    let q = day_query(day);

    let json_report = revenue(&t, &fin.token, &format!("{q}&group_by=district,channel")).await;
    let (status, headers, body) =
        download(&t, &fin.token, &format!("/v1/finance/revenue?{q}&group_by=district,channel&format=csv")).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let ctype = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_lowercase();
    assert!(ctype.starts_with("text/csv") && ctype.contains("charset=utf-8"), "{ctype}");
    let disposition = headers.get("content-disposition").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(disposition.starts_with("attachment"), "{disposition}");
    assert!(disposition.contains(&format!("revenue-{day}-{day}.csv")), "{disposition}");
    assert_eq!(&body[..3], &[0xEF, 0xBB, 0xBF], "UTF-8 BOM first");
    let text = String::from_utf8(body[3..].to_vec()).expect("UTF-8");
    let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).filter(|l| !l.is_empty()).collect();
    assert_eq!(lines[0], "district_code,district_name,channel,gross,carrier_share,net,postings");
    assert_eq!(lines.len(), json_report.rows.len() + 2, "header, rows, TOTAL: {text}");
    for (line, row) in lines[1..lines.len() - 1].iter().zip(&json_report.rows) {
        let want = format!(
            "{},{},{},{},{},{},{}",
            row.district_code.clone().unwrap_or_default(),
            row.district_name.clone().unwrap_or_default(),
            row.channel.map(|c| c.as_str()).unwrap_or_default(),
            row.sums.gross,
            row.sums.carrier_share,
            row.sums.net,
            row.sums.postings
        );
        assert_eq!(*line, want);
    }
    assert!(text.contains("Hai Bà Trưng") && text.contains("Hoàn Kiếm"), "diacritics kept: {text}");
    let total: Vec<&str> = lines[lines.len() - 1].split(',').collect();
    assert_eq!(total[0], "TOTAL", "{text}");
    let tail: Vec<i64> = total[total.len() - 4..].iter().map(|x| x.parse().expect("number")).collect();
    let tt = &json_report.totals;
    assert_eq!(tail, [tt.gross, tt.carrier_share, tt.net, tt.postings]);

    // Street names: Vietnamese intact, quoted when they hold a comma.
    let (status, _, body) =
        download(&t, &fin.token, &format!("/v1/finance/revenue?{q}&group_by=street&format=csv")).await;
    assert_eq!(status, 200);
    assert_eq!(&body[..3], &[0xEF, 0xBB, 0xBF]);
    let text = String::from_utf8(body[3..].to_vec()).expect("UTF-8");
    let header = text.lines().next().unwrap_or_default().trim_end_matches('\r');
    assert!(header.contains("street_id,street_name"), "{header}");
    assert!(header.ends_with("gross,carrier_share,net,postings"), "{header}");
    assert!(text.contains("Lý Thường Kiệt") && text.contains("Lê Đại Hành"), "{text}");
    assert!(text.contains("\"Ngõ 5, Hàng Bài\""), "a comma is quoted (RFC 4180): {text}");
    assert!(!text.contains(",Ngõ 5, Hàng Bài,"), "{text}");
    // Errors stay JSON.
    let a = get(&t, Some(&fin.token), &format!("/v1/finance/revenue?{q}&group_by=plate&format=csv")).await;
    assert_error(&a, 400, "invalid_group");
});

// ---- 2. carrier settlements ---------------------------------------------------------------

const SETTLEMENT_HEADER: &str = "message_id,received_at,gross,share,net";

fn settlement(lines: &[String]) -> String {
    let mut s = String::from(SETTLEMENT_HEADER);
    for l in lines {
        s.push('\n');
        s.push_str(l);
    }
    s.push('\n');
    s
}

#[track_caller]
fn assert_bad_lines(answer: &(u16, Value), want: &[(i64, &str)]) {
    assert_error(answer, 422, "invalid_settlement");
    let lines =
        answer.1["error"]["details"]["lines"].as_array().unwrap_or_else(|| panic!("details.lines: {}", answer.1));
    for entry in lines {
        assert!(entry["line"].as_i64().is_some(), "line number: {entry}");
        assert!(entry["message"].as_str().is_some_and(|m| !m.is_empty()), "message: {entry}");
    }
    for (line, column) in want {
        let hit = lines
            .iter()
            .any(|e| e["line"].as_i64() == Some(*line) && (column.is_empty() || e["column"].as_str() == Some(*column)));
        assert!(hit, "no entry for line {line} column {column:?}: {}", answer.1);
    }
}

matrix!(carrier_settlement_files_are_validated_line_by_line, |t| {
    let fin = finance(&t, "Kế toán Thành phố").await;
    let day = today(&t);
    let month = month_of(day);
    let at = rfc3339_local(now(&t));
    let outside = rfc3339_local(local(previous_month_start(day).and_hms_opt(12, 0, 0).unwrap()));
    let good = settlement(&[format!("mo-1,{at},25000,2500,22500"), format!("mo-2,{at},35000,3500,31500")]);

    // The key is required.
    let a = post_csv(&t, Some(&fin.token), &settlement_path("viettel", &month), None, &good).await;
    assert_error(&a, 400, "idempotency_key_required");
    assert_eq!(count(&t, "carrier_settlements").await, 0);

    let first: SettlementView = created!(upload(&t, &fin.token, "viettel", &month, "s-1", &good).await, "upload");
    assert_eq!(
        (first.carrier.as_str(), first.month.as_str(), first.lines, first.gross, first.share, first.net),
        ("viettel", month.as_str(), 2, 60_000, 6_000, 54_000)
    );
    assert_eq!((first.replaces, first.uploaded_by.as_str()), (None, fin.name.as_str()));
    // A replay answers the same and stores nothing more.
    let again = upload(&t, &fin.token, "viettel", &month, "s-1", &good).await;
    assert_eq!(again.0, 201, "{}", again.1);
    assert_eq!(serde_json::from_value::<SettlementView>(again.1).expect("view"), first);
    assert_eq!((count(&t, "carrier_settlements").await, count(&t, "carrier_settlement_lines").await), (1, 2));
    let audits = count(&t, &format!("finance_audit WHERE staff_id = {}", fin.id)).await;
    assert_eq!(audits, 1, "the upload is audited once");

    // Bad files: every bad line is named, nothing is stored.
    let long_id = "m".repeat(129);
    let cases: Vec<(String, Vec<(i64, &str)>)> = vec![
        (format!("message_id,received_at,gross,net,share\nmo-1,{at},25000,22500,2500\n"), vec![(1, "")]),
        (format!("message_id,received_at,gross,share\nmo-1,{at},25000,2500\n"), vec![(1, "")]),
        (settlement(&[format!("mo-1,{at},25000,2500,22500"), format!("mo-2,{at},abc,2500,22500")]), vec![(3, "gross")]),
        (settlement(&[format!("mo-1,{at},25000,2500,22000")]), vec![(2, "net")]),
        (
            settlement(&[format!("mo-1,{at},25000,2500,22500"), format!("mo-1,{at},25000,2500,22500")]),
            vec![(3, "message_id")],
        ),
        (settlement(&[format!("mo-1,{outside},25000,2500,22500")]), vec![(2, "received_at")]),
        (settlement(&["mo-1,03/11/2026 08:15,25000,2500,22500".to_owned()]), vec![(2, "received_at")]),
        (settlement(&[format!("mo-1,{at},0,0,0")]), vec![(2, "gross")]),
        (settlement(&[format!("mo-1,{at},25000,-1,25001")]), vec![(2, "share")]),
        (settlement(&[format!("mo-1,{at},25000.5,2500,22500.5")]), vec![(2, "gross")]),
        (settlement(&[format!(",{at},25000,2500,22500")]), vec![(2, "message_id")]),
        (settlement(&[format!("{long_id},{at},25000,2500,22500")]), vec![(2, "message_id")]),
        (settlement(&[format!("mo-1,{at},25000,2500")]), vec![(2, "")]),
        (
            settlement(&[
                format!("mo-1,{at},x,2500,22500"),
                format!("mo-2,{at},25000,2500,22500"),
                format!("mo-3,{at},25000,2500,1"),
            ]),
            vec![(2, "gross"), (4, "net")],
        ),
    ];
    for (i, (csv, want)) in cases.iter().enumerate() {
        let a = upload(&t, &fin.token, "viettel", &month, &format!("bad-{i}"), csv).await;
        assert_bad_lines(&a, want);
    }
    assert_eq!((count(&t, "carrier_settlements").await, count(&t, "carrier_settlement_lines").await), (1, 2));
    assert_eq!(count(&t, &format!("finance_audit WHERE staff_id = {}", fin.id)).await, audits);

    // Unknown carrier; bad month.
    assert_error(&upload(&t, &fin.token, "vinaphone", &month, "x-1", &good).await, 404, "carrier_not_found");
    assert_error_shape(&upload(&t, &fin.token, "viettel", "2026-13", "x-2", &good).await, 400);
    // Only city-wide finance uploads.
    let hk = staff(&t, StaffRole::Finance, &["HK"], "Kế toán HK").await;
    assert_error(&upload(&t, &hk.token, "viettel", &month, "x-3", &good).await, 403, "forbidden");
    let admin = staff(&t, StaffRole::Admin, &[], "Quản trị").await;
    assert_error(&upload(&t, &admin.token, "viettel", &month, "x-4", &good).await, 403, "forbidden");
    assert_eq!(post_csv(&t, None, &settlement_path("viettel", &month), Some("x-5"), &good).await.0, 401);

    // A new file for the month (with a BOM) replaces the first; the first is kept.
    let second_csv = format!("\u{feff}{}", settlement(&[format!("mo-1,{at},25000,2500,22500")]));
    let second: SettlementView =
        created!(upload(&t, &fin.token, "viettel", &month, "s-2", &second_csv).await, "replace");
    assert_eq!((second.lines, second.net, second.replaces), (1, 22_500, Some(first.id)));
    assert_ne!(second.id, first.id);
    assert_eq!(count(&t, "carrier_settlements").await, 2, "the replaced file is kept");
    // A header-only file is valid: the carrier settled nothing.
    let empty: SettlementView =
        created!(upload(&t, &fin.token, "mobifone", &month, "s-3", &format!("{SETTLEMENT_HEADER}\n")).await, "empty");
    assert_eq!(
        (empty.carrier.as_str(), empty.lines, empty.gross, empty.net, empty.replaces),
        ("mobifone", 0, 0, 0, None)
    );
    assert_eq!(count(&t, &format!("finance_audit WHERE staff_id = {}", fin.id)).await, audits + 2);
});

matrix!(carrier_reconciliation_finds_missing_extra_and_wrong_messages, |t| {
    let fin = finance(&t, "Kế toán Thành phố").await;
    let (sa, _) = sms_turn(&t, "viettel", "m-a", "HK001", "30A75001").await;
    let (sb, _) = sms_turn(&t, "viettel", "m-b", "HK002", "30A75002").await;
    let (sc, _) = sms_turn(&t, "viettel", "m-c", "HK003", "30A75003").await;
    sms_turn(&t, "mobifone", "n-1", "HK004", "30A75004").await;
    let (ga, gb, gc) = (session_net(&t, sa).await, session_net(&t, sb).await, session_net(&t, sc).await);
    let net = |g: i64| g - g / 10;
    let day = today(&t);
    let month = month_of(day);
    let at = rfc3339_local(now(&t));

    // Before any file: a day reconciliation compares nothing for the carriers.
    let r = reconcile(&t, &fin.token, &format!("date={day}")).await;
    assert!(r.discrepancies.iter().all(|d| d.section != "carrier"), "{:?}", r.discrepancies);
    assert!(r.carriers.iter().all(|c| !c.settlement_received), "{:?}", r.carriers);

    // m-a right, m-b settled without the share (another net), m-c missing, m-x not ours.
    let file = settlement(&[
        format!("m-a,{at},{ga},{},{}", ga / 10, net(ga)),
        format!("m-b,{at},{gb},0,{gb}"),
        format!("m-x,{at},20000,2000,18000"),
    ]);
    let _: SettlementView = created!(upload(&t, &fin.token, "viettel", &month, "f-1", &file).await, "upload");
    let r = reconcile(&t, &fin.token, &format!("date={day}")).await;
    assert_eq!((r.from, r.to), (day, day));
    let viettel = r.carriers.iter().find(|c| c.carrier == "viettel").expect("viettel section");
    assert!(viettel.settlement_received);
    assert_eq!(viettel.summary.matched, 1, "{viettel:?}");
    assert_eq!(viettel.summary.ledger_total, net(ga) + net(gb) + net(gc), "our nets");
    assert_eq!(viettel.summary.external_total, net(ga) + gb + 18_000, "the carrier's nets");
    assert_eq!(viettel.summary.open_discrepancies, 3);
    let mobifone = r.carriers.iter().find(|c| c.carrier == "mobifone").expect("mobifone section");
    assert!(!mobifone.settlement_received);
    assert!(r.discrepancies.iter().all(|d| !d.subject.starts_with("sms:mobifone")), "no file, no comparison");

    let missing = finding(&r, "missing_in_settlement", "sms:viettel:m-c").clone();
    assert_eq!(
        (missing.section.as_str(), missing.expected, missing.status.as_str()),
        ("carrier", Some(net(gc)), "open")
    );
    let extra = finding(&r, "missing_in_ledger", "sms:viettel:m-x").clone();
    assert_eq!(extra.actual, Some(18_000));
    let wrong = finding(&r, "amount_mismatch", "sms:viettel:m-b").clone();
    assert_eq!((wrong.expected, wrong.actual, wrong.difference), (Some(net(gb)), Some(gb), Some(gb - net(gb))));
    for d in [&missing, &extra, &wrong] {
        assert_eq!((d.period.as_str(), d.day), (month.as_str(), day), "{d:?}");
        assert_eq!((d.resolved_by.as_deref(), d.resolved_at), (None, None));
    }
    assert!(r.discrepancies.iter().all(|d| d.subject != "sms:viettel:m-a"), "m-a matched");

    // Again, and for the month: the same findings, the same ids, nothing added.
    let rows = count(&t, "discrepancies").await;
    let r2 = reconcile(&t, &fin.token, &format!("date={day}")).await;
    assert_eq!(finding(&r2, "missing_in_settlement", "sms:viettel:m-c").id, missing.id);
    assert_eq!(finding(&r2, "amount_mismatch", "sms:viettel:m-b").id, wrong.id);
    let rm = reconcile(&t, &fin.token, &format!("month={month}")).await;
    assert_eq!(finding(&rm, "missing_in_ledger", "sms:viettel:m-x").id, extra.id);
    assert_eq!(count(&t, "discrepancies").await, rows);
    assert!(!rm.period_closed);

    // The corrected file: the findings are no longer there, so they are cleared.
    let fixed = settlement(&[
        format!("m-a,{at},{ga},{},{}", ga / 10, net(ga)),
        format!("m-b,{at},{gb},{},{}", gb / 10, net(gb)),
        format!("m-c,{at},{gc},{},{}", gc / 10, net(gc)),
    ]);
    let v: SettlementView = created!(upload(&t, &fin.token, "viettel", &month, "f-2", &fixed).await, "fixed");
    assert!(v.replaces.is_some());
    let r = reconcile(&t, &fin.token, &format!("date={day}")).await;
    for d in [&missing, &extra, &wrong] {
        let now_ = r.discrepancies.iter().find(|x| x.id == d.id).unwrap_or_else(|| panic!("{d:?} still listed"));
        assert_eq!(now_.status, "cleared", "{now_:?}");
    }
    let viettel = r.carriers.iter().find(|c| c.carrier == "viettel").expect("viettel");
    assert_eq!((viettel.summary.matched, viettel.summary.open_discrepancies), (3, 0));
    let listed: Vec<DiscrepancyView> = ok!(
        get(&t, Some(&fin.token), &format!("/v1/finance/discrepancies?status=cleared&month={month}")).await,
        "list"
    );
    let ids: BTreeSet<i64> = listed.iter().map(|d| d.id).collect();
    assert_eq!(ids, BTreeSet::from([missing.id, extra.id, wrong.id]));
    let open: Vec<DiscrepancyView> =
        ok!(get(&t, Some(&fin.token), &format!("/v1/finance/discrepancies?status=open&month={month}")).await, "list");
    assert!(open.iter().all(|d| d.section != "carrier"), "{open:?}");
    // A cleared finding cannot be resolved.
    let a = resolve(&t, &fin.token, missing.id, "res-cleared", "đã kiểm tra").await;
    assert_error(&a, 409, "not_open");
    // Sound books: the ledger section says so.
    let ledger = r.ledger.clone().expect("ledger section");
    assert!(ledger.transactions_balance && ledger.balances_match_postings && ledger.street_revenue_matches_sessions);
    assert_eq!(ledger.open_discrepancies, 0);
    t.assert_ledger_sound().await;
});

// ---- 3. processor -------------------------------------------------------------------------

with_stripe!(processor_reconciliation_matches_stripe_and_finds_strangers, |t, fake| {
    let fin = finance(&t, "Kế toán Thành phố").await;
    let d = t.driver("0912700051").await;
    let card = save_card(&t, &fake, &d, "setup").await;
    let s1 = card_session(&d, &card, "HK001", "30A76001", 2, "c1").await;
    card_topup(&t, &fake, &d, 50_000, "t1").await;
    import_settlement(&t, &fin.token).await;
    let day = today(&t);

    let r = reconcile(&t, &fin.token, &format!("date={day}")).await;
    let p = r.processor.clone().expect("processor section");
    assert_eq!(p.summary.matched, 2, "the card session and the top-up: {p:?}");
    assert_eq!(
        (p.summary.ledger_total, p.summary.external_total),
        (s1.amount_charged + 50_000, s1.amount_charged + 50_000)
    );
    assert_eq!(p.summary.open_discrepancies, 0, "{:?}", r.discrepancies);
    let fees = t.sql_i64("SELECT CAST(COALESCE(SUM(fee), 0) AS BIGINT) FROM stripe_balance_transactions").await;
    assert_eq!(p.fees, fees, "Stripe's fees on the period's balance transactions");
    assert!(r.discrepancies.iter().all(|x| x.section != "processor"), "{:?}", r.discrepancies);

    // A balance transaction we have nothing for; a card charge Stripe has not reported yet.
    let stranger = fake.add_balance_transaction("charge", 77_000, 2_000, Some("ch_not_ours"));
    import_settlement(&t, &fin.token).await;
    let s2 = card_session(&d, &card, "HK002", "30A76002", 1, "c2").await;
    let charge_ref = t
        .sql_text(&format!("SELECT charge_ref FROM card_charges WHERE session_id = {} AND status = 'succeeded'", s2.id))
        .await
        .expect("charge id kept");
    let r = reconcile(&t, &fin.token, &format!("date={day}")).await;
    let strange = finding(&r, "missing_in_ledger", &format!("balance_transaction:{stranger}")).clone();
    assert_eq!(
        (strange.section.as_str(), strange.actual, strange.status.as_str()),
        ("processor", Some(77_000), "open")
    );
    let unseen = finding(&r, "missing_at_processor", &format!("charge:{charge_ref}")).clone();
    assert_eq!((unseen.expected, unseen.status.as_str()), (Some(s2.amount_charged), "open"));
    let p = r.processor.clone().expect("processor");
    assert_eq!(p.summary.matched, 2);
    assert_eq!(p.summary.open_discrepancies, 2);
    assert_eq!(p.fees, fees + 2_000);

    // Once Stripe's side is imported, the charge matches and its finding is cleared.
    import_settlement(&t, &fin.token).await;
    let r = reconcile(&t, &fin.token, &format!("date={day}")).await;
    let again = finding(&r, "missing_at_processor", &format!("charge:{charge_ref}"));
    assert_eq!((again.id, again.status.as_str()), (unseen.id, "cleared"));
    let still = finding(&r, "missing_in_ledger", &format!("balance_transaction:{stranger}"));
    assert_eq!((still.id, still.status.as_str()), (strange.id, "open"));
    assert_eq!(r.processor.clone().expect("processor").summary.matched, 3);
    // The stranger is resolved with a note; a later run keeps it resolved.
    let v: DiscrepancyView =
        ok!(resolve(&t, &fin.token, strange.id, "r-1", "Giao dịch thử của Stripe").await, "resolve");
    assert_eq!((v.status.as_str(), v.resolved_by.as_deref()), ("resolved", Some(fin.name.as_str())));
    let r = reconcile(&t, &fin.token, &format!("date={day}")).await;
    assert_eq!(finding(&r, "missing_in_ledger", &format!("balance_transaction:{stranger}")).status, "resolved");
    let ledger = r.ledger.expect("ledger");
    assert!(ledger.transactions_balance && ledger.balances_match_postings && ledger.street_revenue_matches_sessions);
    t.assert_ledger_sound().await;
});

// ---- 4. cash ------------------------------------------------------------------------------

matrix!(cash_reconciliation_recounts_the_slips_and_lists_the_flags, |t| {
    let fin = finance(&t, "Kế toán Thành phố").await;
    let hk = staff(&t, StaffRole::Finance, &["HK"], "Kế toán Hoàn Kiếm").await;
    let hbt = staff(&t, StaffRole::Finance, &["HBT"], "Kế toán Hai Bà Trưng").await;
    // Cash taken with no shift open: recorded and flagged by the handheld sync.
    let (w, login) = t.warden_with(StaffRole::Warden, "hk.cashrec", &["HK"], &[]).await;
    let body = json!({"point_code": "HK005", "plate": "30A-770.01", "vehicle_class": "car", "turns": 1});
    let r = w
        .sync(&SyncBatch {
            actions: vec![SyncAction { id: uuid(), device_time: now(&t), kind: SyncKind::CashSession, payload: body }],
        })
        .await
        .expect("sync");
    assert!(r.results[0].flags.iter().any(|f| f == "outside_shift"), "{r:?}");
    let flag = t
        .sql_i64(&format!("SELECT id FROM warden_flags WHERE staff_id = {} AND kind = 'outside_shift'", login.staff_id))
        .await;
    // A shift 5,000 short; another one exact; a third still open.
    let shift = w.open_shift(&iparking_mobile_api::OpenShift { note: None }, "open").await.expect("shift").id;
    let a1 = cash_session(&w, "HK001", "30A77002", 2, "c1").await;
    let a2 = cash_session(&w, "HK006", "30A77003", 1, "c2").await;
    let collected = a1.receipt.amount + a2.receipt.amount;
    w.close_shift(shift, &CloseShift { cash_handed_over: collected - 5_000, note: Some("thiếu".into()) }, "close")
        .await
        .expect("close");
    let (w2, _, shift2) = warden_on_shift(&t, "hk.cashok", &["HK"]).await;
    let b1 = cash_session(&w2, "HK007", "30A77004", 1, "c3").await;
    w2.close_shift(shift2, &CloseShift { cash_handed_over: b1.receipt.amount, note: None }, "close")
        .await
        .expect("close");
    let (w3, _, _) = warden_on_shift(&t, "hk.cashopen", &["HK"]).await;
    cash_session(&w3, "HK008", "30A77005", 1, "c4").await;
    // The value stored at closing is not trusted: the slips are recounted.
    let tampered = t
        .sql_i64(&format!("UPDATE warden_shifts SET expected_cash = declared_cash WHERE id = {shift} RETURNING id"))
        .await;
    assert_eq!(tampered, shift);

    let day = today(&t);
    let r = reconcile(&t, &fin.token, &format!("date={day}")).await;
    let cash = &r.cash;
    assert_eq!(cash.summary.matched, 1, "the exact shift: {cash:?}");
    assert_eq!(cash.summary.ledger_total, collected + b1.receipt.amount, "collected, from the slips");
    assert_eq!(cash.summary.external_total, collected - 5_000 + b1.receipt.amount, "declared");
    assert_eq!(cash.open_shifts, 1);
    let short = finding(&r, "cash_difference", &format!("shift:{shift}")).clone();
    assert_eq!(
        (short.section.as_str(), short.expected, short.actual, short.difference),
        ("cash", Some(collected), Some(collected - 5_000), Some(-5_000))
    );
    assert_eq!(short.district_code.as_deref(), Some("HK"));
    assert!(r.discrepancies.iter().all(|d| d.subject != format!("shift:{shift2}")), "an exact shift is no finding");
    let flagged = finding(&r, "warden_flag", &format!("flag:{flag}")).clone();
    assert_eq!(
        (flagged.section.as_str(), flagged.district_code.as_deref(), flagged.status.as_str()),
        ("cash", Some("HK"), "open")
    );
    assert_eq!(cash.summary.open_discrepancies, 2);

    // District finance: its own findings only.
    let rh = reconcile(&t, &hk.token, &format!("date={day}")).await;
    let ids: BTreeSet<i64> = rh.discrepancies.iter().map(|d| d.id).collect();
    assert_eq!(ids, BTreeSet::from([short.id, flagged.id]));
    let rb = reconcile(&t, &hbt.token, &format!("date={day}")).await;
    assert!(rb.discrepancies.is_empty(), "{:?}", rb.discrepancies);
    assert_error(&resolve(&t, &hbt.token, short.id, "hbt-1", "không phải của tôi").await, 403, "out_of_scope");

    // Resolving the flag's finding resolves the flag, by the finance user.
    let v: DiscrepancyView =
        ok!(resolve(&t, &hk.token, flagged.id, "flag-1", "Đã đối chiếu biên lai").await, "resolve");
    assert_eq!((v.status.as_str(), v.resolved_by.as_deref()), ("resolved", Some(hk.name.as_str())));
    let resolved_by = t.sql_i64(&format!("SELECT COALESCE(resolved_by, 0) FROM warden_flags WHERE id = {flag}")).await;
    assert_eq!(resolved_by, hk.id, "the flag row is resolved too");
    assert_eq!(count(&t, &format!("warden_flags WHERE id = {flag} AND resolved_at IS NOT NULL")).await, 1);
    // Ids are stable; the resolved one stays resolved; the ledger is sound.
    let r = reconcile(&t, &fin.token, &format!("date={day}")).await;
    assert_eq!(finding(&r, "warden_flag", &format!("flag:{flag}")).status, "resolved");
    assert_eq!(finding(&r, "cash_difference", &format!("shift:{shift}")).id, short.id);
    let ledger = r.ledger.expect("ledger");
    assert!(ledger.transactions_balance && ledger.balances_match_postings && ledger.street_revenue_matches_sessions);
    t.assert_ledger_sound().await;
});

/// A closed shift `short` VND short; returns its id.
async fn short_shift(t: &TestApp, username: &str, point: &str, plate: &str, short: i64) -> (i64, i64) {
    let (w, login, shift) = warden_on_shift(t, username, &["HK"]).await;
    let paid = cash_session(&w, point, plate, 1, "cash").await;
    w.close_shift(shift, &CloseShift { cash_handed_over: paid.receipt.amount - short, note: None }, "close")
        .await
        .expect("close");
    (shift, login.staff_id)
}

matrix!(resolving_a_discrepancy_is_audited_and_happens_once, |t| {
    let fin = finance(&t, "Nguyễn Thị Kế Toán").await;
    let (shift, _) = short_shift(&t, "hk.resolve", "HK001", "30A78001", 2_000).await;
    let day = today(&t);
    let r = reconcile(&t, &fin.token, &format!("date={day}")).await;
    let d = finding(&r, "cash_difference", &format!("shift:{shift}")).clone();
    let path = format!("/v1/finance/discrepancies/{}/resolve", d.id);
    let audits = count(&t, "finance_audit").await;

    // Refusals change nothing.
    assert_error(
        &post(&t, Some(&fin.token), &path, None, &json!({"note": "x"})).await,
        400,
        "idempotency_key_required",
    );
    assert_error(&resolve(&t, &fin.token, d.id, "k-empty", "").await, 400, "invalid_note");
    assert_error(&resolve(&t, &fin.token, d.id, "k-long", &"x".repeat(1001)).await, 400, "invalid_note");
    assert_error_shape(&post(&t, Some(&fin.token), &path, Some("k-none"), &json!({})).await, 400);
    assert_error(&resolve(&t, &fin.token, 999_999, "k-404", "ghi chú").await, 404, "discrepancy_not_found");
    let admin = staff(&t, StaffRole::Admin, &[], "Quản trị").await;
    assert_error(&resolve(&t, &admin.token, d.id, "k-admin", "ghi chú").await, 403, "forbidden");
    let (_, warden) = t.warden_with(StaffRole::Warden, "hk.noresolve", &["HK"], &[]).await;
    assert_error(&resolve(&t, &warden.token, d.id, "k-warden", "ghi chú").await, 403, "forbidden");
    assert_eq!(resolve(&t, "nope", d.id, "k-anon", "ghi chú").await.0, 401);
    let bd = staff(&t, StaffRole::Finance, &["BD"], "Kế toán Ba Đình").await;
    assert_error(&resolve(&t, &bd.token, d.id, "k-bd", "ghi chú").await, 403, "out_of_scope");
    assert_eq!(count(&t, "finance_audit").await, audits);
    let open: Vec<DiscrepancyView> = ok!(
        get(&t, Some(&fin.token), &format!("/v1/finance/discrepancies?status=open&month={}", month_of(day))).await,
        "list"
    );
    assert!(open.iter().any(|x| x.id == d.id));

    // Resolved, with the note and who did it, audited once.
    let note = "Ca thiếu 2.000đ, đã thu lại của nhân viên";
    let first = resolve(&t, &fin.token, d.id, "k-1", note).await;
    let v: DiscrepancyView = ok!(first.clone(), "resolve");
    assert_eq!((v.id, v.status.as_str(), v.resolution_note.as_deref()), (d.id, "resolved", Some(note)));
    assert_eq!(v.resolved_by.as_deref(), Some(fin.name.as_str()));
    assert!(v.resolved_at.is_some());
    assert_eq!(
        (v.kind.as_str(), v.subject.as_str(), v.expected, v.actual),
        (d.kind.as_str(), d.subject.as_str(), d.expected, d.actual)
    );
    assert_eq!(count(&t, "finance_audit").await, audits + 1);
    assert_eq!(count(&t, &format!("finance_audit WHERE staff_id = {}", fin.id)).await, 1);
    let stored = t.sql_text(&format!("SELECT resolution_note FROM discrepancies WHERE id = {}", d.id)).await;
    assert_eq!(stored.as_deref(), Some(note));
    // The same key: the same answer, no second audit. Another key: already resolved.
    let replay = resolve(&t, &fin.token, d.id, "k-1", note).await;
    assert_eq!(replay, first);
    assert_eq!(count(&t, "finance_audit").await, audits + 1);
    assert_error(&resolve(&t, &fin.token, d.id, "k-2", "lần hai").await, 409, "already_resolved");
    // A re-run keeps it resolved under the same id.
    let r = reconcile(&t, &fin.token, &format!("date={day}")).await;
    let again = finding(&r, "cash_difference", &format!("shift:{shift}"));
    assert_eq!((again.id, again.status.as_str(), again.resolution_note.as_deref()), (d.id, "resolved", Some(note)));
    let resolved: Vec<DiscrepancyView> = ok!(
        get(&t, Some(&fin.token), &format!("/v1/finance/discrepancies?status=resolved&month={}", month_of(day))).await,
        "list"
    );
    assert_eq!(resolved.iter().map(|x| x.id).collect::<Vec<_>>(), [d.id]);
    let all: Vec<DiscrepancyView> = ok!(
        get(&t, Some(&fin.token), &format!("/v1/finance/discrepancies?status=all&month={}", month_of(day))).await,
        "list"
    );
    assert!(all.iter().any(|x| x.id == d.id));
    // The discrepancies as CSV, with the BOM.
    let (status, headers, body) =
        download(&t, &fin.token, &format!("/v1/finance/reconciliation?date={day}&format=csv")).await;
    assert_eq!(status, 200);
    assert!(headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().starts_with("text/csv"));
    assert_eq!(&body[..3], &[0xEF, 0xBB, 0xBF]);
    let text = String::from_utf8(body[3..].to_vec()).expect("UTF-8");
    assert_eq!(
        text.lines().next().unwrap_or_default().trim_end_matches('\r'),
        "id,section,kind,subject,period,day,district_code,expected,actual,difference,status,resolved_by,resolved_at,resolution_note"
    );
    assert!(text.contains(&format!("shift:{shift}")) && text.contains(note) && text.contains(&fin.name), "{text}");
});

// ---- 5. period close and adjustments ---------------------------------------------------------

matrix!(closing_a_month_locks_its_books, |t| {
    let fin = finance(&t, "Trưởng phòng Kế toán").await;
    let hk = staff(&t, StaffRole::Finance, &["HK"], "Kế toán HK").await;
    let day = today(&t);
    let m0 = month_of(day);

    // The month has not ended.
    assert_error(&close(&t, &fin.token, &m0, "c-now", &json!({})).await, 409, "period_not_ended");
    assert_error(
        &post(&t, Some(&fin.token), &format!("/v1/finance/periods/{m0}/close"), None, &json!({})).await,
        400,
        "idempotency_key_required",
    );
    assert_error(&close(&t, &hk.token, &m0, "c-hk", &json!({})).await, 403, "forbidden");
    let admin = staff(&t, StaffRole::Admin, &[], "Quản trị").await;
    assert_error(&close(&t, &admin.token, &m0, "c-admin", &json!({})).await, 403, "forbidden");
    let p: PeriodView = ok!(get(&t, Some(&fin.token), &format!("/v1/finance/periods/{m0}")).await, "period");
    assert_eq!(
        (p.month.as_str(), p.status.as_str(), p.closed_by.as_deref(), p.overridden),
        (m0.as_str(), "open", None, false)
    );

    // The month's business: a wallet session, an SMS turn (no carrier file), a short shift.
    let d = t.funded_driver("0912700061", 1_000_000).await;
    let s = wallet_session(&d, &car("HK001", "30A79001", 1), "s").await;
    let (sms, _) = sms_turn(&t, "viettel", "close-m1", "HK002", "30A79002").await;
    let (shift, warden) = short_shift(&t, "hk.close", "HK003", "30A79003", 3_000).await;
    let m0_gross = ledger_gross(&t, "1=1").await;
    assert_eq!(
        m0_gross,
        s.amount_charged
            + session_net(&t, sms).await
            + t.sql_i64(&format!("SELECT CAST(SUM(amount) AS BIGINT) FROM cash_collections WHERE shift_id = {shift}"))
                .await
    );

    // The next month begins.
    let m1_start = next_month_start(day);
    advance_to(&t, m1_start.and_hms_opt(1, 0, 0).unwrap());
    let m1 = month_of(m1_start);
    assert_error(&close(&t, &fin.token, &m1, "c-m1", &json!({})).await, 409, "period_not_ended");

    // Open findings block the close, and are named.
    let a = close(&t, &fin.token, &m0, "c-1", &json!({})).await;
    assert_error(&a, 409, "open_discrepancies");
    let named: BTreeSet<i64> = a.1["error"]["details"]["ids"]
        .as_array()
        .unwrap_or_else(|| panic!("details.ids: {}", a.1))
        .iter()
        .filter_map(Value::as_i64)
        .collect();
    let r = reconcile(&t, &fin.token, &format!("month={m0}")).await;
    let missing_file = finding(&r, "settlement_missing", &format!("settlement:viettel:{m0}")).clone();
    let short = finding(&r, "cash_difference", &format!("shift:{shift}")).clone();
    let open: BTreeSet<i64> = r.discrepancies.iter().filter(|d| d.status == "open").map(|d| d.id).collect();
    assert_eq!(named, open, "the close names the open findings");
    assert!(named.contains(&missing_file.id) && named.contains(&short.id), "{named:?}");
    assert!(!r.period_closed);
    // An override needs a reason.
    let body = json!({"override_open_discrepancies": true});
    assert_error(&close(&t, &fin.token, &m0, "c-2", &body).await, 400, "invalid_reason");
    let body = json!({"override_open_discrepancies": true, "reason": ""});
    assert_error(&close(&t, &fin.token, &m0, "c-3", &body).await, 400, "invalid_reason");
    assert_eq!(count(&t, "finance_periods").await, 0, "not closed");

    // Resolve one finding; override the other with a reason.
    let _: DiscrepancyView = ok!(resolve(&t, &fin.token, short.id, "r-short", "Đã thu đủ").await, "resolve");
    let reason = "Viettel gửi file muộn; đối chiếu tháng sau";
    let body = json!({"override_open_discrepancies": true, "reason": reason});
    let closed = close(&t, &fin.token, &m0, "c-4", &body).await;
    let p: PeriodView = ok!(closed.clone(), "close");
    assert_eq!(
        (p.month.as_str(), p.status.as_str(), p.closed_by.as_deref(), p.overridden, p.override_reason.as_deref()),
        (m0.as_str(), "closed", Some(fin.name.as_str()), true, Some(reason))
    );
    assert!(p.closed_at.is_some());
    let recorded: BTreeSet<i64> = p.open_discrepancy_ids.iter().copied().collect();
    let still_open: BTreeSet<i64> = named.iter().copied().filter(|id| *id != short.id).collect();
    assert_eq!(recorded, still_open, "the open ids at closing are recorded");
    assert_eq!(close(&t, &fin.token, &m0, "c-4", &body).await, closed, "a replay answers the same");
    let read: PeriodView = ok!(get(&t, Some(&fin.token), &format!("/v1/finance/periods/{m0}")).await, "period");
    assert_eq!(read, p);
    assert_error(&close(&t, &fin.token, &m0, "c-5", &json!({})).await, 409, "period_closed");
    let r = reconcile(&t, &fin.token, &format!("month={m0}")).await;
    assert!(r.period_closed);

    // Nothing more goes into the closed month.
    let txns = count(&t, "ledger_transactions").await;
    let into_m0 = json!({
        "debit": {"kind": "write_off"}, "credit": {"kind": "warden_cash", "staff_id": warden},
        "amount": 3_000, "reason": "Xoá khoản thiếu", "period": m0,
    });
    assert_error(&adjust(&t, &fin.token, "adj-m0", &into_m0).await, 409, "period_closed");
    assert_eq!(count(&t, "ledger_transactions").await, txns, "the ledger is unchanged");
    assert_eq!(count(&t, "finance_adjustments").await, 0);
    let m0_range = format!("from={}&to={}", month_start(day), month_end(day));
    assert_eq!(revenue(&t, &fin.token, &m0_range).await.totals.gross, m0_gross, "the closed month's revenue stands");

    // The open month takes the correction, and it shows as an adjustment.
    let into_m1 = json!({
        "debit": {"kind": "write_off"}, "credit": {"kind": "point_revenue", "point": "HK001"},
        "amount": 10_000, "reason": "Thu tiền mặt bổ sung",
    });
    let v: AdjustmentView = created!(adjust(&t, &fin.token, "adj-m1", &into_m1).await, "adjust");
    assert_eq!((v.period.as_str(), v.amount, v.author.as_str()), (m1.as_str(), 10_000, fin.name.as_str()));
    let r = revenue(&t, &fin.token, &format!("from={m1_start}&to={}&group_by=channel,point", today(&t))).await;
    let got: Vec<_> = r.rows.iter().map(|row| (row.channel, row.point_code.clone(), row.sums.gross)).collect();
    assert!(got.contains(&(Some(RevenueChannel::Adjustment), Some("HK001".into()), 10_000)), "{got:?}");
    assert_eq!(revenue(&t, &fin.token, &m0_range).await.totals.gross, m0_gross);
    t.assert_ledger_sound().await;
});

matrix!(adjustments_are_new_balanced_transactions_with_a_reason, |t| {
    let fin = finance(&t, "Kế toán Thành phố").await;
    let (_, warden) = short_shift(&t, "hk.adjust", "HK004", "30A79101", 5_000).await;
    assert_eq!(balance(&t, "warden_cash", &warden.to_string()).await, -5_000, "the warden owes the shortfall");
    let day = today(&t);
    let month = month_of(day);
    let before = (count(&t, "ledger_transactions").await, count(&t, "finance_adjustments").await);

    let write_off = |amount: i64| {
        json!({"debit": {"kind": "write_off"}, "credit": {"kind": "warden_cash", "staff_id": warden},
               "amount": amount, "reason": "Xoá khoản thiếu ca"})
    };
    // Refusals: each a 4xx in the one shape, nothing booked.
    let bad: Vec<(Value, u16, &str)> = vec![
        (
            json!({"debit": {"kind": "write_off"}, "credit": {"kind": "write_off"}, "amount": 1000, "reason": "x"}),
            // Each side well-formed, the pair not: a rule between fields (decision 0016).
            422,
            "invalid_account",
        ),
        (
            json!({"debit": {"kind": "wallet"}, "credit": {"kind": "write_off"}, "amount": 1000, "reason": "x"}),
            400,
            "invalid_account",
        ),
        (
            json!({"debit": {"kind": "write_off"}, "credit": {"kind": "point_revenue"}, "amount": 1000, "reason": "x"}),
            400,
            "invalid_account",
        ),
        (
            json!({"debit": {"kind": "write_off"}, "credit": {"kind": "warden_cash"}, "amount": 1000, "reason": "x"}),
            400,
            "invalid_account",
        ),
        (
            json!({"debit": {"kind": "write_off"}, "credit": {"kind": "point_revenue", "point": "HK999"}, "amount": 1000, "reason": "x"}),
            404,
            "point_not_found",
        ),
        (
            json!({"debit": {"kind": "write_off"}, "credit": {"kind": "warden_cash", "staff_id": 999_999}, "amount": 1000, "reason": "x"}),
            404,
            "staff_not_found",
        ),
        (write_off(0), 400, "invalid_amount"),
        (write_off(-5_000), 400, "invalid_amount"),
        (
            json!({"debit": {"kind": "write_off"}, "credit": {"kind": "cash_office"}, "amount": 1000, "reason": ""}),
            400,
            "invalid_reason",
        ),
        (
            json!({"debit": {"kind": "write_off"}, "credit": {"kind": "cash_office"}, "amount": 1000, "reason": "x", "period": month_of(next_month_start(day))}),
            400,
            "invalid_period",
        ),
        (
            json!({"debit": {"kind": "write_off"}, "credit": {"kind": "cash_office"}, "amount": 1000, "reason": "x", "period": "2026-13"}),
            400,
            "invalid_period",
        ),
        (
            json!({"debit": {"kind": "write_off"}, "credit": {"kind": "cash_office"}, "amount": 1000, "reason": "x", "discrepancy_id": 999_999}),
            404,
            "discrepancy_not_found",
        ),
    ];
    for (i, (body, status, code)) in bad.iter().enumerate() {
        let a = adjust(&t, &fin.token, &format!("bad-{i}"), body).await;
        assert_error(&a, *status, code);
    }
    assert_error(
        &post(&t, Some(&fin.token), "/v1/finance/adjustments", None, &write_off(5_000)).await,
        400,
        "idempotency_key_required",
    );
    let hk = staff(&t, StaffRole::Finance, &["HK"], "Kế toán HK").await;
    assert_error(&adjust(&t, &hk.token, "hk", &write_off(5_000)).await, 403, "forbidden");
    let admin = staff(&t, StaffRole::Admin, &[], "Quản trị").await;
    assert_error(&adjust(&t, &admin.token, "admin", &write_off(5_000)).await, 403, "forbidden");
    assert_eq!((count(&t, "ledger_transactions").await, count(&t, "finance_adjustments").await), before);
    assert_eq!(count(&t, "finance_audit").await, 0);

    // Writing off the warden's shortfall: the warden owes nothing, the city's loss is booked.
    let first = adjust(&t, &fin.token, "w-1", &write_off(5_000)).await;
    let v: AdjustmentView = created!(first.clone(), "write off");
    assert_eq!(
        (v.period.as_str(), v.amount, v.author.as_str(), v.reason.as_str()),
        (month.as_str(), 5_000, fin.name.as_str(), "Xoá khoản thiếu ca")
    );
    assert_eq!(
        (v.debit.kind.as_str(), v.credit.kind.as_str(), v.credit.staff_id),
        ("write_off", "warden_cash", Some(warden))
    );
    assert_eq!(balance(&t, "warden_cash", &warden.to_string()).await, 0);
    assert_eq!(kind_balance(&t, "write_off").await, -5_000);
    let sum = t
        .sql_i64(&format!(
            "SELECT CAST(SUM(amount) AS BIGINT) FROM postings WHERE transaction_id = {}",
            v.transaction_id
        ))
        .await;
    assert_eq!(sum, 0, "the adjustment balances");
    let replay = adjust(&t, &fin.token, "w-1", &write_off(5_000)).await;
    assert_eq!(replay, first, "a replay books nothing twice");
    assert_eq!(count(&t, "finance_adjustments").await, 1);

    // Into a point's revenue (and back out): the revenue report shows channel `adjustment`.
    let to_point = json!({"debit": {"kind": "write_off"}, "credit": {"kind": "point_revenue", "point": "HK005"},
                          "amount": 12_000, "reason": "Tiền mặt chưa ghi nhận"});
    let up: AdjustmentView = created!(adjust(&t, &fin.token, "p-1", &to_point).await, "to point");
    let back = json!({"debit": {"kind": "point_revenue", "point": "HK005"}, "credit": {"kind": "write_off"},
                      "amount": 2_000, "reason": "Ghi nhầm"});
    let down: AdjustmentView = created!(adjust(&t, &fin.token, "p-2", &back).await, "from point");
    assert_eq!(up.credit.point.as_deref(), Some("HK005"));
    let hk005 = point_id(&t, "HK005").await;
    assert_eq!(balance(&t, "point_revenue", &hk005.to_string()).await, 10_000);
    let q = day_query(day);
    let r = revenue(&t, &fin.token, &format!("{q}&group_by=point,channel")).await;
    let got: Vec<_> = r
        .rows
        .iter()
        .filter(|row| row.point_code.as_deref() == Some("HK005"))
        .map(|row| (row.channel, row.sums.gross, row.sums.postings))
        .collect();
    assert_eq!(got, [(Some(RevenueChannel::Adjustment), 10_000, 2)]);
    let r = revenue(&t, &fin.token, &format!("{q}&group_by=vehicle_class")).await;
    let unclassed: Vec<_> = r.rows.iter().filter(|row| row.vehicle_class.is_none()).map(|row| row.sums.gross).collect();
    assert_eq!(unclassed, [10_000], "adjustments have no vehicle class: {r:?}");

    // A past open month is booked at its last instant.
    let prev = previous_month_start(day);
    let body = json!({"debit": {"kind": "write_off"}, "credit": {"kind": "point_revenue", "point": "HK006"},
                      "amount": 7_000, "reason": "Bổ sung tháng trước", "period": month_of(prev)});
    let past: AdjustmentView = created!(adjust(&t, &fin.token, "past", &body).await, "past month");
    assert_eq!(past.period, month_of(prev));
    let r = revenue(&t, &fin.token, &format!("from={prev}&to={}&group_by=day,channel", month_end(prev))).await;
    let got: Vec<_> = r.rows.iter().map(|row| (row.day, row.channel, row.sums.gross)).collect();
    assert_eq!(got, [(Some(month_end(prev)), Some(RevenueChannel::Adjustment), 7_000)]);

    // Listed by month, audited.
    let listed: Vec<AdjustmentView> =
        ok!(get(&t, Some(&fin.token), &format!("/v1/finance/adjustments?month={month}")).await, "list");
    let ids: BTreeSet<i64> = listed.iter().map(|a| a.id).collect();
    assert_eq!(ids, BTreeSet::from([v.id, up.id, down.id]));
    let listed: Vec<AdjustmentView> =
        ok!(get(&t, Some(&fin.token), &format!("/v1/finance/adjustments?month={}", month_of(prev))).await, "list");
    assert_eq!(listed.iter().map(|a| a.id).collect::<Vec<_>>(), [past.id]);
    assert_eq!(count(&t, &format!("finance_audit WHERE staff_id = {}", fin.id)).await, 4);
    let audit: Value = ok!(get(&t, Some(&fin.token), &format!("/v1/finance/audit?month={month}")).await, "audit");
    assert!(audit.as_array().is_some_and(|a| a.len() >= 3), "{audit}");
    assert_error(&get(&t, Some(&hk.token), &format!("/v1/finance/audit?month={month}")).await, 403, "forbidden");
    t.assert_ledger_sound().await;

    // A warden's cash account is a warden's: another staff member's id is not one.
    let booked = (count(&t, "ledger_transactions").await, count(&t, "finance_adjustments").await);
    let not_a_warden = json!({"debit": {"kind": "write_off"}, "credit": {"kind": "warden_cash", "staff_id": fin.id},
                              "amount": 1000, "reason": "x"});
    assert_error(&adjust(&t, &fin.token, "not-a-warden", &not_a_warden).await, 404, "staff_not_found");
    assert_eq!((count(&t, "ledger_transactions").await, count(&t, "finance_adjustments").await), booked);
});

// ---- 6. refund requests ---------------------------------------------------------------------

/// The demo's configuration (`main.rs` with sandbox payments): the sandbox gateway.
async fn start_sandbox(db: Db, live: Live) -> TestApp {
    let opts = Options { payments: Some(Arc::new(SandboxGateway)), ..Options::default() };
    TestApp::start_with(db, live, opts).await
}

mod a_wallet_refund_request_holds_the_money_until_finance_decides {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_memory() {
        wallet_refund_body(start_sandbox(Db::Sqlite, Live::Memory).await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_redis() {
        wallet_refund_body(start_sandbox(Db::Postgres, Live::Redis).await).await;
    }
}

async fn wallet_refund_body(t: TestApp) {
    let fin = finance(&t, "Kế toán Thành phố").await;
    let (d, token) = driver_login(&t, "0912700071").await;
    d.sandbox_topup(200_000, "fund").await.expect("top-up");
    let body = json!({"kind": "wallet_balance", "amount": 150_000, "reason": "Không dùng ứng dụng nữa"});
    assert_error(&post(&t, Some(&token), "/v1/me/refund-requests", None, &body).await, 400, "idempotency_key_required");
    let first = request_refund(&t, &token, "rq-1", &body).await;
    let rq: RefundRequestView = created!(first.clone(), "request");
    assert_eq!(
        (rq.kind.as_str(), rq.amount, rq.status.as_str(), rq.session_id),
        ("wallet_balance", 150_000, "pending", None)
    );
    assert_eq!(request_refund(&t, &token, "rq-1", &body).await, first, "a replay holds nothing twice");
    // Held at once: the wallet shows the rest, and the held money cannot be spent.
    assert_eq!(d.wallet().await.expect("wallet").balance, 50_000);
    assert_eq!(kind_balance(&t, "refund_hold").await, 150_000);
    let six_hours = t
        .client
        .quote(&QuoteRequest {
            point_code: "HK001".into(),
            vehicle_class: VehicleClass::Car,
            start: None,
            minutes: Some(360),
            amount: None,
            channel: None,
        })
        .await
        .expect("quote")
        .total;
    assert!(six_hours > 50_000);
    let spend = d.start_session(&car("HK001", "30A80001", 6), "spend").await;
    assert!(matches!(&spend, Err(ClientError::Api { status, .. }) if (400..500).contains(status)), "{spend:?}");
    assert_eq!(d.wallet().await.expect("wallet").balance, 50_000);
    let more =
        request_refund(&t, &token, "rq-2", &json!({"kind": "wallet_balance", "amount": 60_000, "reason": "thêm"}))
            .await;
    assert_error(&more, 422, "insufficient_balance");

    // Only city-wide finance decides wallet requests.
    let hk = staff(&t, StaffRole::Finance, &["HK"], "Kế toán HK").await;
    assert_error_shape(&decide(&t, &hk.token, rq.id, "approve", "hk", "ok").await, 403);
    let admin = staff(&t, StaffRole::Admin, &[], "Quản trị").await;
    assert_error_shape(&decide(&t, &admin.token, rq.id, "approve", "admin", "ok").await, 403);
    assert_eq!(decide(&t, &token, rq.id, "approve", "self", "ok").await.0 / 100, 4, "a driver cannot decide");
    assert_error(
        &post(
            &t,
            Some(&fin.token),
            &format!("/v1/finance/refund-requests/{}/reject", rq.id),
            None,
            &json!({"note": "x"}),
        )
        .await,
        400,
        "idempotency_key_required",
    );
    let pending: Vec<RefundRequestView> =
        ok!(get(&t, Some(&fin.token), "/v1/finance/refund-requests?status=pending").await, "list");
    assert!(pending.iter().any(|x| x.id == rq.id));
    assert_eq!(d.wallet().await.expect("wallet").balance, 50_000, "nothing moved");

    // Rejected: the hold comes back. Deciding again is refused.
    let v: RefundRequestView =
        ok!(decide(&t, &fin.token, rq.id, "reject", "rej-1", "Tài khoản còn phiên đang mở").await, "reject");
    assert_eq!(
        (v.status.as_str(), v.decided_by.as_deref(), v.decision_note.as_deref()),
        ("rejected", Some(fin.name.as_str()), Some("Tài khoản còn phiên đang mở"))
    );
    assert_eq!(d.wallet().await.expect("wallet").balance, 200_000);
    assert_eq!(kind_balance(&t, "refund_hold").await, 0);
    assert_error(&decide(&t, &fin.token, rq.id, "reject", "rej-2", "lại").await, 409, "already_decided");
    assert_error(&decide(&t, &fin.token, rq.id, "approve", "app-0", "lại").await, 409, "already_decided");

    // The whole balance by default; approved: the sandbox's play money goes back to it.
    let rq2: RefundRequestView = created!(
        request_refund(&t, &token, "rq-3", &json!({"kind": "wallet_balance", "reason": "Đóng ví"})).await,
        "request"
    );
    assert_eq!(rq2.amount, 200_000);
    assert_eq!(d.wallet().await.expect("wallet").balance, 0);
    let v: RefundRequestView = ok!(decide(&t, &fin.token, rq2.id, "approve", "app-1", "Đồng ý").await, "approve");
    assert_eq!((v.status.as_str(), v.to_cards, v.to_wallet), ("approved", 200_000, 0));
    assert_eq!(d.wallet().await.expect("wallet").balance, 0);
    assert_eq!((kind_balance(&t, "refund_hold").await, kind_balance(&t, "sandbox_funding").await), (0, 0));
    assert_error(&decide(&t, &fin.token, rq2.id, "approve", "app-2", "lại").await, 409, "already_decided");
    // Nothing left to refund.
    let none = request_refund(&t, &token, "rq-4", &json!({"kind": "wallet_balance", "reason": "hết"})).await;
    assert_error_shape(&none, 422);
    let mine: Vec<RefundRequestView> = ok!(get(&t, Some(&token), "/v1/me/refund-requests").await, "mine");
    let statuses: BTreeSet<(i64, String)> = mine.iter().map(|x| (x.id, x.status.clone())).collect();
    assert_eq!(statuses, BTreeSet::from([(rq.id, "rejected".to_owned()), (rq2.id, "approved".to_owned())]));
    let (_, other) = driver_login(&t, "0912700072").await;
    let theirs: Vec<RefundRequestView> = ok!(get(&t, Some(&other), "/v1/me/refund-requests").await, "theirs");
    assert!(theirs.is_empty());
    assert_eq!(count(&t, &format!("finance_audit WHERE staff_id = {}", fin.id)).await, 2, "two decisions");
    t.assert_ledger_sound().await;
}

with_stripe!(an_approved_wallet_refund_goes_back_to_the_top_up_card, |t, fake| {
    let fin = finance(&t, "Kế toán Thành phố").await;
    let (d, token) = driver_login(&t, "0912700081").await;
    let intent = card_topup(&t, &fake, &d, 100_000, "t1").await;
    let rq: RefundRequestView = created!(
        request_refund(&t, &token, "rq", &json!({"kind": "wallet_balance", "amount": 60_000, "reason": "Hoàn tiền"}))
            .await,
        "request"
    );
    assert_eq!(d.wallet().await.expect("wallet").balance, 40_000);
    assert!(fake.state.refunds.lock().unwrap().is_empty(), "nothing refunded before the decision");
    let v: RefundRequestView =
        ok!(decide(&t, &fin.token, rq.id, "approve", "ok", "Đồng ý hoàn về thẻ").await, "approve");
    assert_eq!((v.status.as_str(), v.to_cards, v.to_wallet, v.refund_ids.len()), ("approved", 60_000, 0, 1));
    let refunds: Vec<Value> = fake.state.refunds.lock().unwrap().values().cloned().collect();
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    assert_eq!(
        (refunds[0]["payment_intent"].as_str(), refunds[0]["amount"].as_i64()),
        (Some(intent.as_str()), Some(60_000))
    );
    assert_eq!(count(&t, &format!("refunds WHERE request_id = {} AND amount = 60000", rq.id)).await, 1);
    assert_eq!(d.wallet().await.expect("wallet").balance, 40_000);
    // Stripe settles it.
    let re = refunds[0]["id"].as_str().expect("refund id").to_owned();
    fake.settle_refund(&re, true);
    stripe_event(&t, &fake, "evt_re_1", "refund.updated", fake.refund(&re)).await;
    assert_eq!(kind_balance(&t, "refund_hold").await, 0);

    // A disputed card session: approved, the card gets its part back and the card channel earns less.
    let card = save_card(&t, &fake, &d, "setup").await;
    let s = card_session(&d, &card, "HK001", "30A82001", 2, "c1").await;
    let intent = t
        .sql_text(&format!("SELECT intent_id FROM card_charges WHERE session_id = {} AND status = 'succeeded'", s.id))
        .await
        .expect("the charge's intent");
    let q = day_query(today(&t));
    let card_gross = |r: &RevenueReport| channel_row(r, RevenueChannel::Card).map_or(0, |row| row.sums.gross);
    let before = revenue(&t, &fin.token, &format!("{q}&group_by=channel")).await;
    assert_eq!(card_gross(&before), s.amount_charged);
    let part = s.amount_charged / 2;
    let body = json!({"kind": "session", "session_id": s.id, "amount": part, "reason": "Không đỗ xe"});
    let rq: RefundRequestView = created!(request_refund(&t, &token, "rq-s", &body).await, "session request");
    let v: RefundRequestView = ok!(decide(&t, &fin.token, rq.id, "approve", "ok-s", "Đồng ý").await, "approve");
    assert_eq!((v.status.as_str(), v.to_cards, v.to_wallet, v.refund_ids.len()), ("approved", part, 0, 1));
    let to_card: Vec<Value> = fake
        .state
        .refunds
        .lock()
        .unwrap()
        .values()
        .filter(|r| r["payment_intent"] == intent.as_str())
        .cloned()
        .collect();
    assert_eq!(to_card.iter().map(|r| r["amount"].as_i64()).collect::<Vec<_>>(), [Some(part)], "{to_card:?}");
    let after = revenue(&t, &fin.token, &format!("{q}&group_by=channel")).await;
    assert_eq!(card_gross(&after), s.amount_charged - part, "the card turns' refund reduces the card channel");
    assert_eq!(d.wallet().await.expect("wallet").balance, 40_000, "nothing went to the wallet");
    t.assert_ledger_sound().await;
});

matrix!(a_disputed_session_is_refunded_and_its_revenue_goes_down, |t| {
    let city = finance(&t, "Kế toán Thành phố").await;
    let hk = staff(&t, StaffRole::Finance, &["HK"], "Kế toán Hoàn Kiếm").await;
    let hbt = staff(&t, StaffRole::Finance, &["HBT"], "Kế toán Hai Bà Trưng").await;
    let (a, token) = driver_login(&t, "0912700091").await;
    a.sandbox_topup(500_000, "fund").await.expect("top-up");
    let s = wallet_session(&a, &car("HK001", "30A81001", 2), "s").await;
    let (b, _) = driver_login(&t, "0912700092").await;
    b.sandbox_topup(500_000, "fund").await.expect("top-up");
    let theirs = wallet_session(&b, &car("HBT001", "30A81002", 1), "s").await;
    let (sms, _) = sms_turn(&t, "viettel", "disp-1", "HK002", "30A81003").await;
    let balance_before = a.wallet().await.expect("wallet").balance;

    let session_body = |id: i64, amount: Option<i64>| {
        let mut b = json!({"kind": "session", "session_id": id, "reason": "Tôi không đỗ xe ở đây"});
        if let Some(x) = amount {
            b["amount"] = json!(x);
        }
        b
    };
    assert_error(&request_refund(&t, &token, "x-1", &session_body(theirs.id, None)).await, 404, "session_not_found");
    assert_error(&request_refund(&t, &token, "x-2", &session_body(sms, None)).await, 404, "session_not_found");
    assert_error(
        &request_refund(&t, &token, "x-3", &session_body(s.id, Some(s.amount_charged + 1))).await,
        422,
        "exceeds_refundable",
    );
    assert_error(&request_refund(&t, &token, "x-4", &session_body(999_999, None)).await, 404, "session_not_found");
    assert_eq!(count(&t, "refund_requests").await, 0);

    let part = s.amount_charged / 2;
    let rq: RefundRequestView =
        created!(request_refund(&t, &token, "rq-1", &session_body(s.id, Some(part))).await, "request");
    assert_eq!(
        (rq.kind.as_str(), rq.amount, rq.session_id, rq.district_code.as_deref()),
        ("session", part, Some(s.id), Some("HK"))
    );
    assert_eq!(a.wallet().await.expect("wallet").balance, balance_before, "a session request holds nothing");
    assert_error(&request_refund(&t, &token, "rq-2", &session_body(s.id, Some(1_000))).await, 409, "request_pending");

    // Scope: Hai Bà Trưng cannot decide a Hoàn Kiếm session.
    assert_error(&decide(&t, &hbt.token, rq.id, "approve", "hbt", "ok").await, 403, "out_of_scope");
    let listed: Vec<RefundRequestView> =
        ok!(get(&t, Some(&hbt.token), "/v1/finance/refund-requests?status=all").await, "hbt list");
    assert!(listed.iter().all(|x| x.id != rq.id), "{listed:?}");
    let listed: Vec<RefundRequestView> = ok!(get(&t, Some(&hk.token), "/v1/finance/refund-requests").await, "hk list");
    assert!(listed.iter().any(|x| x.id == rq.id), "{listed:?}");

    // Approved by Hoàn Kiếm: the wallet gets it back, the point earns less.
    let q = day_query(today(&t));
    let r0 = revenue(&t, &city.token, &format!("{q}&group_by=point,channel")).await;
    let hk001 = |r: &RevenueReport| {
        r.rows
            .iter()
            .find(|row| row.point_code.as_deref() == Some("HK001") && row.channel == Some(RevenueChannel::Wallet))
            .map(|row| (row.sums.gross, row.sums.postings))
            .unwrap_or((0, 0))
    };
    assert_eq!(hk001(&r0), (s.amount_charged, 1));
    let v: RefundRequestView =
        ok!(decide(&t, &hk.token, rq.id, "approve", "ok", "Đúng, xe không có ở điểm").await, "approve");
    assert_eq!(
        (v.status.as_str(), v.to_wallet, v.to_cards, v.decided_by.as_deref()),
        ("approved", part, 0, Some(hk.name.as_str()))
    );
    assert_eq!(a.wallet().await.expect("wallet").balance, balance_before + part);
    assert_eq!(a.session(s.id).await.expect("session").amount_refunded, part);
    let r1 = revenue(&t, &city.token, &format!("{q}&group_by=point,channel")).await;
    assert_eq!(hk001(&r1), (s.amount_charged - part, 2), "the refund is a wallet posting at the point");
    assert_eq!(r1.totals.gross, r0.totals.gross - part);
    assert_eq!(ledger_gross(&t, &format!("pt.id = {}", point_id(&t, "HK001").await)).await, s.amount_charged - part);
    assert_error(&decide(&t, &hk.token, rq.id, "approve", "ok-2", "lại").await, 409, "already_decided");
    assert_error(&decide(&t, &city.token, rq.id, "reject", "no-2", "lại").await, 409, "already_decided");

    // What is left, by default; rejected: nothing moves. More than what is left: refused.
    let rest: RefundRequestView = created!(request_refund(&t, &token, "rq-3", &session_body(s.id, None)).await, "rest");
    assert_eq!(rest.amount, s.amount_charged - part);
    let _: RefundRequestView =
        ok!(decide(&t, &city.token, rest.id, "reject", "no", "Đã hoàn một phần").await, "reject");
    assert_eq!(a.wallet().await.expect("wallet").balance, balance_before + part);
    assert_error(
        &request_refund(&t, &token, "rq-4", &session_body(s.id, Some(s.amount_charged - part + 1))).await,
        422,
        "exceeds_refundable",
    );
    let r2 = revenue(&t, &city.token, &format!("{q}&group_by=point,channel")).await;
    assert_eq!(r2.totals, r1.totals, "a rejection changes no revenue");
    t.assert_ledger_sound().await;
});

// Payouts: the processor's failed payout to the city's bank is a discrepancy; paid ones add up.
// The fake Stripe only pays out, so the failed one is written as the settlement import would
// store it.
matrix!(a_failed_payout_is_a_discrepancy_and_paid_ones_add_up, |t| {
    let f = finance(&t, "Kế toán Payout").await;
    let day = today(&t);
    let at = now(&t).to_rfc3339();
    for (id, amount, status) in [
        ("po_paid_1", 900_000, "paid"),
        ("po_paid_2", 100_000, "paid"),
        ("po_failed_1", 400_000, "failed"),
        ("po_transit_1", 50_000, "in_transit"),
    ] {
        t.sql_i64(&format!(
            "INSERT INTO stripe_payouts (id, amount, currency, status, arrival_date, created, imported_at) \
             VALUES ('{id}', {amount}, 'vnd', '{status}', '{at}', '{at}', '{at}') RETURNING amount"
        ))
        .await;
    }
    let r = reconcile(&t, &f.token, &format!("date={day}")).await;
    let processor = r.processor.as_ref().expect("city-wide finance sees the processor");
    assert_eq!(processor.payouts_total, 1_000_000, "the two paid payouts; neither the failed nor the one in transit");
    let failed = finding(&r, "payout_failed", "payout:po_failed_1");
    assert_eq!((failed.expected, failed.actual, failed.status.as_str()), (Some(400_000), Some(0), "open"));
    assert_eq!(failed.section, "processor");
    assert!(
        !r.discrepancies.iter().any(|d| d.subject.starts_with("payout:po_paid") || d.subject == "payout:po_transit_1")
    );
    // Stripe retries and the payout is paid: the next run clears the finding, same id.
    t.sql_i64("UPDATE stripe_payouts SET status = 'paid' WHERE id = 'po_failed_1' RETURNING amount").await;
    let again = reconcile(&t, &f.token, &format!("date={day}")).await;
    let cleared = again.discrepancies.iter().find(|d| d.id == failed.id).expect("kept, not deleted");
    assert_eq!(cleared.status, "cleared");
    assert_eq!(again.processor.as_ref().expect("processor").payouts_total, 1_400_000);
});
