//! Issue 30, bug 7: a warden's keyed call (shift opened or closed, cash taken) stores its
//! answer with its key in the transaction of its effect. When the store call returns, the
//! key is answered: no later update is needed, so a crash between the commit and the
//! handler's reply cannot leave the key "in progress" for ever. Run on SQLite and
//! PostgreSQL, on the store itself (no handler completes anything afterwards).

use std::sync::Arc;

use chrono::{Duration, Utc};
use iparking::{
    domain::{ledger::Entry, money::Vnd, plate::Plate},
    registry, seed,
    store::{
        NewStaff, Store, StoreError,
        drivers::{IdemClaim, NewSession},
        wardens::{CashContext, CashOutcome, CloseShiftOutcome, OpenShiftOutcome, ShiftClose, ShiftRow, ShiftRule},
    },
};
use iparking_mobile_api::{StaffRole, VehicleClass};
use iparking_tests::{Db, TestDb};

async fn check_warden_keys_are_answered_at_commit(store: Arc<dyn Store>) {
    let now = Utc::now();
    registry::load_seed(store.as_ref(), seed::hanoi_pilot(), now - Duration::hours(1)).await.expect("seed");
    let point = store.points().await.expect("points").into_iter().next().expect("a point");
    let tariff = store.tariffs().await.expect("tariffs").into_iter().next().expect("a tariff");
    let warden = NewStaff {
        name: "Nguyễn Văn Thu".into(),
        role: StaffRole::Warden,
        district_ids: vec![point.district_id],
        street_ids: vec![],
        username: None,
        password_hash: None,
    };
    let (staff_id, _) = store.create_staff(&warden, &"ef".repeat(32), now).await.expect("warden");
    let scope = format!("staff:{staff_id}");
    let claim = |key: &str| IdemClaim { scope: scope.clone(), key: key.into(), request_hash: "h".into() };
    let answered = |key: &'static str| {
        let store = store.clone();
        let scope = scope.clone();
        async move {
            let rec = store.idempotency_get(&scope, key).await.expect("get").expect("the key");
            (rec.status, rec.response)
        }
    };

    // A shift opened: answered from the shift the transaction wrote.
    let shift_answer = |s: &ShiftRow| Ok((201, format!("shift {} {}", s.id, s.open)));
    let opened = store.open_shift(staff_id, "handheld-1", None, Some(&claim("open")), &shift_answer, now).await;
    let shift = match opened.expect("open") {
        OpenShiftOutcome::Opened(s) => s,
        other => panic!("not opened: {other:?}"),
    };
    let expected = format!("shift {} {}", shift.id, shift.open);
    assert_eq!(answered("open").await, (Some(201), Some(expected)), "the opening's key is answered at commit");

    // Cash taken for a session: answered from the payment's outcome.
    let amount = Vnd(10_000);
    let new = NewSession {
        driver_id: None,
        plate: Plate::parse("29A12345").expect("plate"),
        vehicle_class: VehicleClass::Motorbike,
        point_id: point.id,
        tariff_id: tariff.id,
        channel: iparking::domain::session::SessionChannel::WardenCash,
        started_at: now,
        paid_until: now + Duration::hours(1),
        expires_at: now + Duration::minutes(70),
        turns: 1,
        amount,
        quote: "{}".into(),
        entry: Entry::cash_payment("cash_session_start", staff_id, point.id, amount).expect("entry"),
        notify_phone: None,
    };
    let ctx = CashContext {
        staff_id,
        shift: ShiftRule::OpenRequired,
        issued_at: now,
        district_code: point.district_code.clone(),
        verification_code: "123456".into(),
        action_id: None,
        by_float: false,
    };
    let cash_answer = |o: &CashOutcome| match o {
        CashOutcome::Paid { session, receipt, .. } => {
            Ok((201, format!("session {} receipt {}", session.id, receipt.number)))
        }
        other => Err(StoreError::Internal(format!("no answer for {other:?}"))),
    };
    let paid = store.cash_start(&new, 100, &ctx, Some(&claim("cash")), &cash_answer, now).await.expect("cash start");
    let CashOutcome::Paid { session, receipt, .. } = paid else { panic!("not paid: {paid:?}") };
    let expected = format!("session {} receipt {}", session.id, receipt.number);
    assert_eq!(answered("cash").await, (Some(201), Some(expected)), "the payment's key is answered at commit");

    // An answer that cannot be rendered rolls the payment back with its key.
    let failing = |_: &CashOutcome| Err(StoreError::Internal("cannot render".into()));
    let other = NewSession { plate: Plate::parse("30B67890").expect("plate"), ..new.clone() };
    assert!(store.cash_start(&other, 100, &ctx, Some(&claim("cash-2")), &failing, now).await.is_err());
    assert!(store.idempotency_get(&scope, "cash-2").await.expect("get").is_none(), "the key rolled back");
    let active = store.active_sessions().await.expect("active sessions");
    assert!(active.iter().all(|s| s.plate.as_str() != other.plate.as_str()), "nothing was paid");

    // The shift closed: answered from the closed shift.
    let closed = store
        .close_shift(
            &ShiftClose { id: shift.id, staff_id, declared: amount, note: None },
            Some(&claim("close")),
            &shift_answer,
            now,
        )
        .await
        .expect("close");
    let CloseShiftOutcome::Closed(closed) = closed else { panic!("not closed: {closed:?}") };
    let expected = format!("shift {} {}", closed.id, closed.open);
    assert_eq!(answered("close").await, (Some(201), Some(expected)), "the closing's key is answered at commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warden_keys_are_answered_at_commit_sqlite() {
    let db = TestDb::create(Db::Sqlite).await;
    check_warden_keys_are_answered_at_commit(db.store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warden_keys_are_answered_at_commit_postgres() {
    let db = TestDb::create(Db::Postgres).await;
    check_warden_keys_are_answered_at_commit(db.store().await).await;
}
