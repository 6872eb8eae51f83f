//! Two API nodes on one PostgreSQL database and one Redis behave as one service (issue 8,
//! part 1): what one node writes the other sees at once; rate limits, one-time-code attempts
//! and idempotency keys are shared; the background jobs (expiry, reminders) act once per
//! session whichever node runs them. Each node is a whole server (its own pool, live-state
//! connection, jobs and listener) in this process, sharing the test clock.

use std::time::Duration as StdDuration;

use chrono::Duration;
use iparking_mobile_api::Client;
use iparking_mobile_api::{CheckVerdict, SessionStatus, StaffRole, StartSession, VehicleClass};
use iparking_tests::{Db, Live, Options, TestApp, assert_error, raw};
use serde_json::{Value, json};

/// A raw POST with JSON to `path` of node `t`.
async fn post(t: &TestApp, path: &str, token: Option<&str>, key: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = reqwest::Client::new().post(t.url(path)).json(&body);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(key) = key {
        req = req.header("idempotency-key", key);
    }
    raw(req).await
}

/// Two server nodes on one PostgreSQL database, one Redis prefix and one clock.
async fn two_nodes(settings: Option<iparking::Settings>) -> (TestApp, TestApp) {
    let base = Options::default();
    let settings = settings.unwrap_or(base.settings.clone());
    let a =
        TestApp::start_with(Db::Postgres, Live::Redis, Options { settings: settings.clone(), ..base.clone() }).await;
    let b = TestApp::start_with(
        Db::Postgres,
        Live::Redis,
        Options {
            seed_pilot: false,
            share_db: Some(a.db.clone()),
            redis_prefix: a.redis_prefix.clone(),
            clock: Some(a.clock.clone()),
            settings,
            ..base
        },
    )
    .await;
    (a, b)
}

fn start(point: &str, plate: &str, turns: u32) -> StartSession {
    StartSession {
        point_code: point.into(),
        plate: plate.into(),
        vehicle_class: Some(VehicleClass::Car),
        minutes: None,
        turns: Some(turns),
        payment: None,
        card_id: None,
        lat: None,
        lon: None,
    }
}

/// Waits up to 5 s for `check` to hold.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + StdDuration::from_secs(5);
    loop {
        if check().await {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_started_on_one_node_is_checked_and_replayed_on_the_other() {
    let (a, b) = two_nodes(None).await;
    let token = a.driver_token("0912800001").await;
    let d: Client = a.client.with_token(token.clone());
    d.sandbox_topup(300_000, "fund").await.expect("top-up on A");
    let on_b = b.client.with_token(token.clone());
    let (w, _) = b.warden_with(StaffRole::Warden, "hk.multi", &["HK"], &[]).await;

    // Started on node A, checked on node B at once (no sleep, no refresh).
    let s = d.start_session(&start("HK001", "30A-555.66", 1), "same-key").await.expect("start on A");
    let c = w.check_plate("30A-555.66", "HK001").await.expect("check on B");
    assert_eq!((c.verdict, c.session_id), (CheckVerdict::Valid, Some(s.id)));
    // Free spaces agree: the occupancy counter is shared.
    let (pa, pb) = (a.client.point("HK001").await.expect("A"), b.client.point("HK001").await.expect("B"));
    assert_eq!(pa.free_spaces, pb.free_spaces);
    assert_eq!(pa.free_spaces, Some(pa.capacity - 1));

    // The same Idempotency-Key and body on node B: the stored answer, not a second session.
    let again = on_b.start_session(&start("HK001", "30A-555.66", 1), "same-key").await.expect("replay on B");
    assert_eq!(again.id, s.id);
    assert_eq!(again.amount_charged, s.amount_charged);
    assert_eq!(
        a.sql_i64("SELECT COUNT(*) FROM sessions WHERE plate = '30A55566'").await,
        1,
        "one session whichever node the retry reached"
    );
    let wallet = on_b.wallet().await.expect("wallet");
    assert_eq!(wallet.balance, 300_000 - s.amount_charged, "charged once");
    // The same key with another body is refused on node B too.
    let other = post(
        &b,
        "/v1/sessions",
        Some(&token),
        Some("same-key"),
        json!({ "point_code": "HK002", "plate": "30A-555.66", "vehicle_class": "car", "turns": 1 }),
    )
    .await;
    assert_error(&other, 422, "idempotency_key_reused");

    // Stopped on node B: node A's check sees it ended at once.
    on_b.stop_session(s.id, "stop").await.expect("stop on B");
    let (wa, _) = a.warden_with(StaffRole::Warden, "hk.multi2", &["HK"], &[]).await;
    let c = wa.check_plate("30A-555.66", "HK001").await.expect("check on A");
    assert_ne!(c.verdict, CheckVerdict::Valid, "a stopped session is not valid on the other node");
    a.flush_checks().await;
    b.flush_checks().await;
    a.assert_ledger_sound().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_requests_and_wrong_codes_count_across_nodes() {
    let (a, b) = two_nodes(None).await;
    let limit = a.app.settings.otp_per_phone;
    assert!(limit >= 2, "the test needs a limit of at least 2 codes");
    // Code requests for one phone, alternating nodes: the limit is one, shared.
    for i in 0..limit {
        let node = if i % 2 == 0 { &a } else { &b };
        let r = post(node, "/v1/auth/otp", None, None, json!({ "phone": "0912800002" })).await;
        assert_eq!(r.0, 202, "request {i}: {:?}", r.1);
    }
    let over = post(&b, "/v1/auth/otp", None, None, json!({ "phone": "0912800002" })).await;
    assert_error(&over, 429, "rate_limited");
    let over = post(&a, "/v1/auth/otp", None, None, json!({ "phone": "0912800002" })).await;
    assert_error(&over, 429, "rate_limited");

    // Wrong codes against one code, alternating nodes: the attempts are one budget.
    let r = post(&a, "/v1/auth/otp", None, None, json!({ "phone": "0912800003" })).await;
    assert_eq!(r.0, 202, "{:?}", r.1);
    let text = a.sms.last_to("+84912800003").expect("the code went out from node A");
    let code: String = text.chars().filter(char::is_ascii_digit).take(6).collect();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let attempts = iparking::http::drivers::OTP_ATTEMPTS;
    for i in 0..attempts {
        let node = if i % 2 == 0 { &b } else { &a };
        let r = post(node, "/v1/auth/token", None, None, json!({ "phone": "0912800003", "code": wrong })).await;
        if i + 1 < attempts {
            assert_error(&r, 401, "otp_invalid");
            assert_eq!(r.1["error"]["details"]["attempts_left"], json!(attempts - i - 1), "attempt {i}");
        } else {
            // The last attempt of the budget, whichever node it reaches, locks the code.
            assert_error(&r, 429, "otp_locked");
        }
    }
    // The code is destroyed for both nodes: even the right one fails now.
    for node in [&a, &b] {
        let r = post(node, "/v1/auth/token", None, None, json!({ "phone": "0912800003", "code": code })).await;
        assert_error(&r, 401, "otp_expired");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_and_reminders_act_once_whichever_node_runs_them() {
    // Both nodes run their expiry and reminder loops every 50 ms.
    let mut settings = Options::default().settings;
    settings.expiry_interval = StdDuration::from_millis(50);
    let (a, b) = two_nodes(Some(settings)).await;
    let reminder_before = Duration::from_std(a.app.settings.reminder_before).expect("duration");
    let drivers = ["0912800011", "0912800012", "0912800013", "0912800014"];
    let mut sessions = Vec::new();
    for (i, phone) in drivers.iter().enumerate() {
        let node = if i % 2 == 0 { &a } else { &b };
        let d = node.funded_driver(phone, 200_000).await;
        let s = d.start_session(&start(&format!("HK00{}", i + 1), &format!("30A-777.{:02}", 10 + i), 1), "s").await;
        sessions.push((d, s.expect("start")));
    }
    // Into the reminder window of every session: each driver gets exactly one reminder, from
    // one node or the other.
    a.clock.advance(Duration::minutes(60) - reminder_before + Duration::minutes(1));
    let reminders = |t: &TestApp| t.sms.messages().into_iter().filter(|(_, text)| text.contains("het gio")).count();
    let (ra, rb) = (&a, &b);
    eventually("every driver is reminded", || async move { reminders(ra) + reminders(rb) >= drivers.len() }).await;
    // Several more ticks of both loops: nobody is reminded twice.
    tokio::time::sleep(StdDuration::from_millis(400)).await;
    let mut to: Vec<String> = a
        .sms
        .messages()
        .into_iter()
        .chain(b.sms.messages())
        .filter(|(_, t)| t.contains("het gio"))
        .map(|(p, _)| p)
        .collect();
    to.sort();
    let mut expected: Vec<String> =
        drivers.iter().map(|p| iparking::domain::phone::Phone::parse(p).expect("phone").as_str().to_owned()).collect();
    expected.sort();
    assert_eq!(to, expected, "one reminder per driver across both nodes");

    // Past the grace period: every session ends once, used in full, its space freed once.
    a.clock.advance(Duration::minutes(30));
    for (_, s) in &sessions {
        let (id, ta) = (s.id, &a);
        eventually("the session expires", || async move { !ta.app.store.session(id).await.unwrap().unwrap().active })
            .await;
    }
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    for (d, s) in &sessions {
        let e = d.session(s.id).await.expect("session");
        assert_eq!((e.status, e.end_reason.as_deref()), (SessionStatus::Ended, Some("expired")));
        assert_eq!(e.amount_refunded, 0);
    }
    for i in 1..=drivers.len() {
        let code = format!("HK00{i}");
        let (pa, pb) = (a.client.point(&code).await.expect("A"), b.client.point(&code).await.expect("B"));
        assert_eq!(pa.free_spaces, Some(pa.capacity), "{code}: freed exactly once");
        assert_eq!(pb.free_spaces, pa.free_spaces);
    }
    a.assert_ledger_sound().await;
}

/// A node whose Stripe jobs (sweeper, settlement import) run every 100 ms against its own
/// fake Stripe, so the calls each node makes can be told apart.
async fn stripe_node(share: Option<&TestApp>) -> (TestApp, iparking_tests::fake_stripe::FakeStripe) {
    use std::sync::Arc;
    let fake = iparking_tests::fake_stripe::FakeStripe::start().await;
    let gateway = iparking::payments::StripeGateway::new("sk_test_fake", Some(&fake.base))
        .expect("gateway")
        .with_backoff(StdDuration::from_millis(10));
    let mut opts = Options {
        payments: Some(Arc::new(gateway)),
        stripe_webhook_secret: Some("whsec_test_secret".into()),
        ..Options::default()
    };
    opts.settings.sweep_interval = StdDuration::from_millis(100);
    opts.settings.settlement_interval = StdDuration::from_millis(100);
    if let Some(a) = share {
        opts.seed_pilot = false;
        opts.share_db = Some(a.db.clone());
        opts.redis_prefix = a.redis_prefix.clone();
        opts.clock = Some(a.clock.clone());
    }
    let t = TestApp::start_with(Db::Postgres, Live::Redis, opts).await;
    fake.set_now(iparking::Clock::now(t.clock.as_ref()).timestamp());
    (t, fake)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_jobs_run_on_one_node_and_move_when_it_goes() {
    use std::sync::atomic::Ordering;
    let (a, fake_a) = stripe_node(None).await;
    let (b, fake_b) = stripe_node(Some(&a)).await;
    assert_ne!(a.app.node_id, b.app.node_id);
    let calls = |f: &iparking_tests::fake_stripe::FakeStripe| f.state.list_calls.load(Ordering::SeqCst);
    // Both nodes tick every 100 ms; only the lease holder imports.
    let (fa, fb) = (&fake_a, &fake_b);
    eventually("one node imports", || async move { calls(fa) + calls(fb) >= 4 }).await;
    tokio::time::sleep(StdDuration::from_millis(500)).await;
    let (ca, cb) = (calls(&fake_a), calls(&fake_b));
    assert!((ca > 0) != (cb > 0), "exactly one node ran the import (A: {ca} calls, B: {cb})");
    let holder = a.sql_text("SELECT holder FROM job_leases WHERE name = 'settlement_import'").await;
    let sweeper = a.sql_text("SELECT holder FROM job_leases WHERE name = 'payments_sweeper'").await;
    let (running, idle, idle_fake, running_id) =
        if ca > 0 { (a, b, fake_b, holder.clone()) } else { (b, a, fake_a, holder.clone()) };
    assert_eq!(running_id.as_deref(), Some(running.app.node_id.as_str()), "the lease names the node that runs");
    // The sweeper has its own lease, held by one of the two (whichever ticked first).
    assert!(
        sweeper.as_deref() == Some(running.app.node_id.as_str())
            || sweeper.as_deref() == Some(idle.app.node_id.as_str()),
        "{sweeper:?}"
    );

    // The holder goes away; once its lease has run out, the other node takes the jobs over.
    running.stop().await;
    let before = calls(&idle_fake);
    assert_eq!(before, 0);
    idle.clock.advance(Duration::seconds(1));
    let f = &idle_fake;
    eventually("the other node takes over", || async move { calls(f) >= 2 }).await;
    let holder = idle.sql_text("SELECT holder FROM job_leases WHERE name = 'settlement_import'").await;
    assert_eq!(holder.as_deref(), Some(idle.app.node_id.as_str()));
}

/// Each node keeps a staff token's principal a short while (`staff_token_cache`), so plate
/// checks need no database round trip to authenticate. A token revoked on one node stops
/// there at once and on the other within that time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_staff_token_stops_on_every_node_within_the_cache_time() {
    let settings = iparking::Settings { staff_token_cache: StdDuration::from_secs(2), ..Options::default().settings };
    let (a, b) = two_nodes(Some(settings)).await;
    let (on_a, login) = a.warden_with(StaffRole::Warden, "w.cache", &["HK"], &[]).await;
    let on_b = b.client.with_token(login.token.clone());
    on_b.check_plate("30A12345", "HK001").await.expect("B knows the token (and caches it)");
    on_a.check_plate("30A12345", "HK001").await.expect("A too");

    on_a.warden_logout().await.expect("logout on A");
    let revoked_at = std::time::Instant::now();
    let e = on_a.check_plate("30A12345", "HK001").await.expect_err("revoked on A: refused there at once");
    assert_eq!(e.status(), Some(401), "{e:?}");
    // B answers from its cache (no database round trip) until the entry expires, never after.
    if revoked_at.elapsed() < StdDuration::from_millis(1500) {
        on_b.check_plate("30A12345", "HK001").await.expect("B's cached entry is still fresh");
    }
    eventually("B refuses the revoked token", || async {
        on_b.check_plate("30A12345", "HK001").await.is_err_and(|e| e.status() == Some(401))
    })
    .await;
    assert!(revoked_at.elapsed() <= StdDuration::from_secs(4), "B refused it only after {:?}", revoked_at.elapsed());
    a.stop().await;
    b.stop().await;
}

/// Drivers' tokens are cached the same way (`driver_token_cache`). A logout on one node
/// stops the token there at once and on the other within that time; closing an account
/// forgets every token of the driver on that node at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logged_out_driver_token_stops_on_every_node_within_the_cache_time() {
    let settings = iparking::Settings { driver_token_cache: StdDuration::from_secs(2), ..Options::default().settings };
    let (a, b) = two_nodes(Some(settings)).await;
    let token = a.driver_token("0912000301").await;
    let (on_a, on_b) = (a.client.with_token(token.clone()), b.client.with_token(token));
    on_b.wallet().await.expect("B knows the token (and caches it)");
    on_a.wallet().await.expect("A too");

    on_a.logout().await.expect("logout on A");
    let revoked_at = std::time::Instant::now();
    let e = on_a.wallet().await.expect_err("logged out on A: refused there at once");
    assert_eq!(e.status(), Some(401), "{e:?}");
    if revoked_at.elapsed() < StdDuration::from_millis(1500) {
        on_b.wallet().await.expect("B's cached entry is still fresh");
    }
    eventually("B refuses the logged-out token", || async {
        on_b.wallet().await.is_err_and(|e| e.status() == Some(401))
    })
    .await;
    assert!(revoked_at.elapsed() <= StdDuration::from_secs(4), "B refused it only after {:?}", revoked_at.elapsed());

    // Two devices of one driver, both cached on A; the account is closed from one.
    let first = a.client.with_token(a.driver_token("0912000302").await);
    let second = a.client.with_token(a.driver_token("0912000302").await);
    first.wallet().await.expect("first device");
    second.wallet().await.expect("second device");
    first.close_account("close-302").await.expect("close the account");
    let e = second.wallet().await.expect_err("every token of a closed account stops on this node at once");
    assert_eq!(e.status(), Some(401), "{e:?}");
    a.stop().await;
    b.stop().await;
}

/// A start is checked against the point as the database has it, under the point's lock, not
/// as this node's index last saw it: a point closed through node A refuses starts on node B
/// at once, though B's index (refreshed hourly here) still has it open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_point_closed_on_one_node_refuses_starts_on_the_other_at_once() {
    let mut settings = Options::default().settings;
    settings.index_refresh = StdDuration::from_secs(3600);
    let (a, b) = two_nodes(Some(settings)).await;
    let token = b.driver_token("0912000401").await;
    b.client.with_token(token.clone()).sandbox_topup(300_000, "fund").await.expect("top-up");

    a.admin.close_point("HK002").await.expect("close on A");
    let seen_by_b = b.app.index().point("HK002").expect("in B's index").status;
    assert_eq!(seen_by_b, iparking_mobile_api::PointStatus::Open, "B's index has not seen the closing");
    let body = json!({ "point_code": "HK002", "plate": "30A-777.01", "vehicle_class": "car", "turns": 1 });
    let refused = post(&b, "/v1/sessions", Some(&token), Some("closed-1"), body.clone()).await;
    assert_error(&refused, 409, "point_closed");
    let on_b = b.client.with_token(token.clone());
    assert_eq!(on_b.wallet().await.expect("wallet").balance, 300_000, "nothing charged");
    let none = on_b.sessions(&Default::default()).await.expect("sessions");
    assert!(none.is_empty(), "no session: {none:?}");

    a.admin.open_point("HK002").await.expect("open on A");
    let (status, started) = post(&b, "/v1/sessions", Some(&token), Some("closed-2"), body).await;
    assert_eq!(status, 201, "{started}");
    a.stop().await;
    b.stop().await;
}
