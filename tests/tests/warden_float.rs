//! The warden float (issue 33): a prepaid account per warden, topped up by finance, from
//! which a warden pays parking on a driver's behalf. It never goes below zero, its payments
//! are a channel of their own in revenue, and they are no cash for the shift to hand over.

use iparking_mobile_api::{
    Client, ClientError, CloseShift, OpenShift, StaffRole, VehicleClass, WardenExtendSession, WardenPayment,
    WardenStartSession,
};
use iparking_tests::{TestApp, matrix, raw};
use serde_json::{Value, json};

fn by_float(point: &str, plate: &str, turns: u32) -> WardenStartSession {
    WardenStartSession {
        point_code: point.into(),
        plate: plate.into(),
        vehicle_class: VehicleClass::Car,
        turns: Some(turns),
        minutes: None,
        payment: WardenPayment::Float,
    }
}

#[track_caller]
fn refused(e: ClientError) -> (u16, String, Value) {
    match e {
        ClientError::Api { status, error } => (status, error.code, error.details.unwrap_or_default()),
        other => panic!("expected an API error, got {other}"),
    }
}

async fn float(t: &TestApp, w: &Client) -> Value {
    let (status, body) =
        raw(reqwest::Client::new().get(t.url("/v1/warden/float")).bearer_auth(w.token().unwrap())).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn top_up(t: &TestApp, finance: &Client, staff_id: i64, amount: i64, key: &str) -> (u16, Value) {
    raw(reqwest::Client::new()
        .post(t.url("/v1/finance/adjustments"))
        .bearer_auth(finance.token().unwrap())
        .header("Idempotency-Key", key)
        .json(&json!({
            "debit": { "kind": "cash_office" },
            "credit": { "kind": "warden_float", "staff_id": staff_id },
            "amount": amount,
            "reason": "Nạp tài khoản thanh toán hộ",
        })))
    .await
}

fn today() -> String {
    chrono::Utc::now().with_timezone(&iparking::domain::tariff::LOCAL_TZ).format("%Y-%m-%d").to_string()
}

matrix!(a_warden_pays_from_the_float_topped_up_by_finance_never_below_zero, |t| {
    let (w, login) = t.warden_with(StaffRole::Warden, "hk.float", &["HK"], &[]).await;
    let finance = t.staff(StaffRole::Finance, &[]).await;
    w.open_shift(&OpenShift::default(), "shift").await.unwrap();
    assert_eq!(float(&t, &w).await["balance"], 0);

    // An empty float pays nothing, and nothing is written.
    let (status, code, details) =
        refused(w.warden_start_session(&by_float("HK003", "30A-600.01", 2), "f-1").await.unwrap_err());
    assert_eq!((status, code.as_str(), details["balance"].as_i64()), (402, "insufficient_float", Some(0)));
    assert_eq!(t.sql_i64("SELECT COUNT(*) FROM sessions").await, 0);
    assert_eq!(t.sql_i64("SELECT COUNT(*) FROM cash_collections").await, 0);

    // Finance tops it up from the cash office (an adjustment, with its author and reason).
    let (status, body) = top_up(&t, &finance, login.staff_id, 100_000, "top-1").await;
    assert_eq!(status, 201, "{body}");
    let (status, again) = top_up(&t, &finance, login.staff_id, 100_000, "top-1").await;
    assert_eq!((status, &again), (201, &body), "the same key, the same top-up");
    let f = float(&t, &w).await;
    assert_eq!(f["balance"], 100_000);
    assert_eq!(
        (f["movements"][0]["kind"].as_str(), f["movements"][0]["amount"].as_i64()),
        (Some("finance_adjustment"), Some(100_000))
    );

    // Paid from the float: the slip says so, the float goes down, the shift has no cash more.
    let paid = w.warden_start_session(&by_float("HK003", "30A-600.01", 2), "f-2").await.unwrap();
    let price = paid.receipt.amount;
    assert!(price > 0);
    assert_eq!(paid.receipt.payment, WardenPayment::Float);
    assert_eq!(paid.session.channel, "warden_float");
    assert_eq!(float(&t, &w).await["balance"], 100_000 - price);
    let cash = w
        .warden_start_session(
            &WardenStartSession { payment: WardenPayment::Cash, ..by_float("HK003", "30A-600.02", 1) },
            "c-1",
        )
        .await
        .unwrap();
    let shift = w.current_shift().await.unwrap();
    assert_eq!(
        (shift.expected_cash, shift.collections),
        (cash.receipt.amount, 1),
        "the float is not cash to hand over"
    );

    // Never below zero: an extension the float cannot pay is refused, and nothing moves.
    let left = 100_000 - price;
    let big = WardenExtendSession { turns: Some(20), minutes: None, payment: WardenPayment::Float };
    let (status, code, details) = refused(w.warden_extend_session(paid.session.id, &big, "f-3").await.unwrap_err());
    assert_eq!((status, code.as_str(), details["balance"].as_i64()), (402, "insufficient_float", Some(left)));
    assert_eq!(float(&t, &w).await["balance"], left);
    assert_eq!(t.sql_i64("SELECT COUNT(*) FROM cash_collections").await, 2);
    // Nor can finance take more out of it than it holds.
    let (status, body) = raw(reqwest::Client::new()
        .post(t.url("/v1/finance/adjustments"))
        .bearer_auth(finance.token().unwrap())
        .header("Idempotency-Key", "back-1")
        .json(&json!({
            "debit": { "kind": "warden_float", "staff_id": login.staff_id },
            "credit": { "kind": "cash_office" },
            "amount": left + 1,
            "reason": "Trả lại",
        })))
    .await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("insufficient_balance")), "{body}");
    assert_eq!(float(&t, &w).await["balance"], left);

    // Revenue shows the float apart from cash.
    let (status, report) = raw(reqwest::Client::new()
        .get(t.url(&format!("/v1/finance/revenue?from={d}&to={d}&group_by=channel", d = today())))
        .bearer_auth(finance.token().unwrap()))
    .await;
    assert_eq!(status, 200, "{report}");
    let gross = |channel: &str| {
        report["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["channel"] == channel)
            .map(|r| r["gross"].as_i64().unwrap())
    };
    assert_eq!(gross("warden_float"), Some(price));
    assert_eq!(gross("warden_cash"), Some(cash.receipt.amount));

    // An offline float payment for a plate paid meanwhile is refused at sync, the float
    // untouched (never held in suspense like cash).
    let action = json!({ "actions": [{
        "id": "8c1f4d7e-0000-4000-8000-000000000001",
        "device_time": chrono::Utc::now().to_rfc3339(),
        "kind": "cash_session",
        "payload": { "point_code": "HK003", "plate": "30A-600.01", "vehicle_class": "car", "turns": 1, "payment": "float" },
    }] });
    let (status, synced) =
        raw(reqwest::Client::new().post(t.url("/v1/warden/sync")).bearer_auth(w.token().unwrap()).json(&action)).await;
    assert_eq!(status, 200, "{synced}");
    assert_eq!(synced["results"][0]["status"], "rejected", "{synced}");
    assert_eq!(float(&t, &w).await["balance"], left);

    // The shift closes with its cash only: no difference for finance.
    let body = CloseShift { cash_handed_over: cash.receipt.amount, note: None };
    let closed = w.close_shift(shift.id, &body, "close").await.unwrap();
    assert_eq!(closed.difference, Some(0));
    t.assert_ledger_sound().await;
});
