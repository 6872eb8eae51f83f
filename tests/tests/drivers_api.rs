//! Black-box tests of the driver routes: phone login with one-time codes, logout, vehicles,
//! the wallet and its sandbox top-ups, on SQLite + in-process live state and on
//! PostgreSQL + Redis.

use iparking::domain::{phone::Phone, plate::Plate};
use iparking_mobile_api::{Client, ClientError, DriverToken, ErrorDetail, VehicleClass, WalletView};
use iparking_tests::{Db, Live, Options, TestApp, assert_error, matrix, raw};
use serde_json::json;

const TOPUPS: &str = "/v1/me/wallet/sandbox-topups";

#[track_caller]
fn api(e: ClientError) -> (u16, ErrorDetail) {
    match e {
        ClientError::Api { status, error } => (status, error),
        other => panic!("expected an API error, got {other}"),
    }
}

#[track_caller]
fn api_code(e: ClientError) -> (u16, String) {
    let (status, error) = api(e);
    (status, error.code)
}

/// The one run of exactly six digits in an SMS text.
#[track_caller]
fn code_in(text: &str) -> String {
    let runs: Vec<&str> = text.split(|c: char| !c.is_ascii_digit()).filter(|r| r.len() == 6).collect();
    assert_eq!(runs.len(), 1, "expected one 6-digit code in {text:?}");
    runs[0].to_owned()
}

/// The code of the last SMS to `e164`.
#[track_caller]
fn last_code(t: &TestApp, e164: &str) -> String {
    code_in(&t.sms.last_to(e164).unwrap_or_else(|| panic!("no SMS to {e164}")))
}

/// A 6-digit code that differs from `code`.
fn wrong(code: &str) -> String {
    let last = code.as_bytes()[5] - b'0';
    format!("{}{}", &code[..5], (last + 1) % 10)
}

/// Logs in through the OTP flow and returns the client and the raw token answer.
async fn login(t: &TestApp, phone: &str) -> (Client, DriverToken) {
    t.client.send_otp(phone).await.expect("send otp");
    let e164 = Phone::parse(phone).expect("phone").as_str().to_owned();
    let code = last_code(t, &e164);
    let tok = t.client.login(phone, &code).await.expect("login");
    (t.client.with_token(tok.token.clone()), tok)
}

/// Raw login attempt.
async fn raw_login(t: &TestApp, phone: &str, code: &str) -> (u16, serde_json::Value) {
    raw(reqwest::Client::new().post(t.url("/v1/auth/token")).json(&json!({"phone": phone, "code": code}))).await
}

fn movements_sum(w: &WalletView) -> i64 {
    w.movements.iter().map(|m| m.amount).sum()
}

// ---- Phone login ----------------------------------------------------------------------

matrix!(phone_login_sends_a_code_and_returns_a_working_token, |t| {
    let sent = t.client.send_otp("0912 345 678").await.unwrap();
    assert_eq!(sent.phone, "+84•••••5678");
    assert_eq!(sent.expires_in_seconds, 300);
    let msgs = t.sms.messages();
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(msgs[0].0, "+84912345678", "the SMS goes to the E.164 number");
    let code = code_in(&msgs[0].1);

    // The answer is 202 and never carries the full number.
    let a = raw(reqwest::Client::new().post(t.url("/v1/auth/otp")).json(&json!({"phone": "+84912345678"}))).await;
    assert_eq!(a.0, 202, "{}", a.1);
    assert_eq!(a.1["phone"], "+84•••••5678");
    assert!(!a.1.to_string().contains("912345678"), "{}", a.1);
    // The second request replaced the first code.
    let code2 = last_code(&t, "+84912345678");
    assert_eq!(t.sms.messages().len(), 2);

    let tok = t.client.login("+84912345678", &code2).await.unwrap();
    assert!(tok.token.starts_with("ipk_drv_"), "{}", tok.token);
    assert_eq!(tok.token.len(), "ipk_drv_".len() + 64, "{}", tok.token);
    let me = t.client.with_token(tok.token.clone());
    assert_eq!(me.vehicles().await.unwrap(), vec![]);
    if code != code2 {
        // The first code was replaced (and the second used): it no longer logs in.
        let e = t.client.login("0912345678", &code).await.unwrap_err();
        assert_eq!(api_code(e), (401, "otp_expired".into()));
    }

    // Other formats of the same number are the same driver, with a new token.
    for phone in ["84912345678", "+84 91 234 5678", "(091) 234.5678"] {
        t.client.send_otp(phone).await.unwrap();
        let again = t.client.login(phone, &last_code(&t, "+84912345678")).await.unwrap();
        assert_eq!(again.driver_id, tok.driver_id, "{phone}");
        assert_ne!(again.token, tok.token, "{phone}");
        assert!(t.client.with_token(again.token).wallet().await.is_ok());
    }
    // The first token still works: logging in again does not revoke it.
    assert!(me.vehicles().await.is_ok());
    // Another number is another driver.
    let (_, other) = login(&t, "0352 345 678").await;
    assert_ne!(other.driver_id, tok.driver_id);
    assert_eq!(t.sms.last_to("+84352345678").map(|s| code_in(&s).len()), Some(6));
    // A code is trimmed: surrounding spaces are fine (as the OpenAPI document's pattern says).
    t.client.send_otp("0987654321").await.unwrap();
    let c = last_code(&t, "+84987654321");
    let spaced = t.client.login("0987654321", &format!(" {c} ")).await.unwrap();
    assert_ne!(spaced.driver_id, tok.driver_id);
});

matrix!(malformed_phone_and_code_are_rejected, |t| {
    let http = reqwest::Client::new();
    for phone in ["", "12345", "0212345678", "091234567", "09123456789", "+1 415 555 0100", "0912a45678", "+0912345678"]
    {
        let a = raw(http.post(t.url("/v1/auth/otp")).json(&json!({ "phone": phone }))).await;
        assert_error(&a, 400, "invalid_phone");
        let a = raw_login(&t, phone, "123456").await;
        assert_error(&a, 400, "invalid_phone");
    }
    assert!(t.sms.messages().is_empty(), "no SMS for a malformed number: {:?}", t.sms.messages());
    let en = t.client.with_language("en").send_otp("12345").await.unwrap_err();
    let (status, err) = api(en);
    assert_eq!((status, err.code.as_str()), (400, "invalid_phone"));
    assert!(err.message.contains("Vietnamese mobile number"), "{}", err.message);

    t.client.send_otp("0912345678").await.unwrap();
    let code = last_code(&t, "+84912345678");
    for bad in ["12345", "1234567", "abcdef", "12a456", "12 345", "", "１２３４５６"] {
        let a = raw_login(&t, "0912345678", bad).await;
        assert_error(&a, 400, "invalid_code");
    }
    // A missing field is a malformed body.
    let a = raw(http.post(t.url("/v1/auth/token")).json(&json!({"phone": "0912345678"}))).await;
    assert_error(&a, 400, "invalid_body");
    // Malformed codes used no attempt: the first wrong code leaves 4.
    let a = raw_login(&t, "0912345678", &wrong(&code)).await;
    assert_error(&a, 401, "otp_invalid");
    assert_eq!(a.1["error"]["details"]["attempts_left"], 4, "{}", a.1);
    assert!(t.client.login("0912345678", &code).await.is_ok());
});

matrix!(wrong_codes_count_down_then_lock, |t| {
    t.client.send_otp("0912345678").await.unwrap();
    let code = last_code(&t, "+84912345678");
    let bad = wrong(&code);
    for left in [4, 3, 2, 1] {
        let a = raw_login(&t, "+84912345678", &bad).await;
        assert_error(&a, 401, "otp_invalid");
        assert_eq!(a.1["error"]["details"]["attempts_left"], left, "{}", a.1);
    }
    let a = raw_login(&t, "+84912345678", &bad).await;
    assert_error(&a, 429, "otp_locked");
    // The code is destroyed: even the right one fails now.
    let e = t.client.login("0912345678", &code).await.unwrap_err();
    assert_eq!(api_code(e), (401, "otp_expired".into()));
    let e = t.client.login("0912345678", &bad).await.unwrap_err();
    assert_eq!(api_code(e), (401, "otp_expired".into()));
    // A new code starts afresh.
    t.client.send_otp("0912345678").await.unwrap();
    let fresh = last_code(&t, "+84912345678");
    let a = raw_login(&t, "0912345678", &wrong(&fresh)).await;
    assert_eq!(a.1["error"]["details"]["attempts_left"], 4, "{}", a.1);
    assert!(t.client.login("0912345678", &fresh).await.is_ok());
});

matrix!(a_code_works_once_and_only_for_its_phone, |t| {
    t.client.send_otp("0912345678").await.unwrap();
    let code = last_code(&t, "+84912345678");
    // Another phone cannot use it (it has no code at all).
    let e = t.client.login("0987654321", &code).await.unwrap_err();
    assert_eq!(api_code(e), (401, "otp_expired".into()));
    let first = t.client.login("0912345678", &code).await.unwrap();
    let a = raw_login(&t, "0912345678", &code).await;
    assert_error(&a, 401, "otp_expired");
    // The token of the first login still works.
    assert!(t.client.with_token(first.token).vehicles().await.is_ok());
    // Never requested: expired/missing.
    let e = t.client.login("0933333333", "123456").await.unwrap_err();
    assert_eq!(api_code(e), (401, "otp_expired".into()));
});

matrix!(a_new_code_replaces_the_old_one, |t| {
    t.client.send_otp("0912345678").await.unwrap();
    let old = last_code(&t, "+84912345678");
    let mut new = old.clone();
    // Two codes drawn at random can coincide (one in a million): draw again then.
    for _ in 0..3 {
        t.client.send_otp("0912 345 678").await.unwrap();
        new = last_code(&t, "+84912345678");
        if new != old {
            break;
        }
    }
    assert_ne!(new, old);
    // The old code is now just a wrong code for the new one.
    let a = raw_login(&t, "0912345678", &old).await;
    assert_error(&a, 401, "otp_invalid");
    assert_eq!(a.1["error"]["details"]["attempts_left"], 4, "{}", a.1);
    let tok = t.client.login("0912345678", &new).await.unwrap();
    assert!(tok.token.starts_with("ipk_drv_"));
});

// ---- Rate limits ------------------------------------------------------------------------

matrix!(code_requests_are_rate_limited_per_phone, |t| {
    // Five requests in the window, in any format of the number, are fine.
    for phone in ["0912345678", "+84912345678", "84912345678", "0912 345 678", "+84 91 234 5678"] {
        t.client.send_otp(phone).await.unwrap_or_else(|e| panic!("{phone}: {e}"));
    }
    let fifth = last_code(&t, "+84912345678");
    let a = raw(reqwest::Client::new().post(t.url("/v1/auth/otp")).json(&json!({"phone": "0912.345.678"}))).await;
    assert_error(&a, 429, "rate_limited");
    let e = t.client.send_otp("0912345678").await.unwrap_err();
    assert_eq!(api_code(e), (429, "rate_limited".into()));
    // No SMS went out for the refused requests, and the last code sent still works.
    assert_eq!(t.sms.messages().iter().filter(|(p, _)| p == "+84912345678").count(), 5);
    assert_eq!(last_code(&t, "+84912345678"), fifth);
    assert!(t.client.login("0912345678", &fifth).await.is_ok());
    // Another phone is not limited.
    let sent = t.client.send_otp("0987654321").await.unwrap();
    assert_eq!(sent.phone, "+84•••••4321");
    assert!(t.client.login("0987654321", &last_code(&t, "+84987654321")).await.is_ok());
});

matrix!(code_requests_are_rate_limited_per_client_address, |t| {
    // 30 requests from one address in the window, each for a different phone.
    for i in 0..30 {
        let phone = format!("09120000{i:02}");
        t.client.send_otp(&phone).await.unwrap_or_else(|e| panic!("request {i}: {e}"));
    }
    let e = t.client.send_otp("0987654321").await.unwrap_err();
    assert_eq!(api_code(e), (429, "rate_limited".into()));
    assert_eq!(t.sms.messages().len(), 30);
    assert!(t.sms.last_to("+84987654321").is_none());
});

// ---- Logout and authentication ------------------------------------------------------------

matrix!(logout_revokes_only_that_token, |t| {
    let (me, tok) = login(&t, "0912345678").await;
    let (other_session, _) = login(&t, "0912345678").await;
    assert!(me.vehicles().await.is_ok());
    me.logout().await.unwrap();
    let e = me.vehicles().await.unwrap_err();
    assert_eq!(api_code(e), (401, "unauthorized".into()));
    let e = me.wallet().await.unwrap_err();
    assert_eq!(api_code(e), (401, "unauthorized".into()));
    let e = me.logout().await.unwrap_err();
    assert_eq!(api_code(e), (401, "unauthorized".into()));
    let a = raw(reqwest::Client::new().get(t.url("/v1/me/vehicles")).bearer_auth(&tok.token)).await;
    assert_error(&a, 401, "unauthorized");
    // The driver's other login is untouched.
    assert!(other_session.vehicles().await.is_ok());
    // Logging in again gives a working token.
    let (again, again_tok) = login(&t, "0912345678").await;
    assert_eq!(again_tok.driver_id, tok.driver_id);
    assert!(again.vehicles().await.is_ok());
});

matrix!(driver_routes_need_a_driver_token, |t| {
    let http = reqwest::Client::new();
    let (_, tok) = login(&t, "0912345678").await;
    let admin_token = {
        let created = t
            .admin
            .create_staff(&iparking_mobile_api::CreateStaff::new(
                "Another admin",
                iparking_mobile_api::StaffRole::Admin,
                vec![],
            ))
            .await
            .unwrap();
        created.token
    };
    let auths: Vec<Option<String>> = vec![
        None,
        Some("Bearer ".into()),
        Some("Bearer ipk_drv_0000000000000000000000000000000000000000000000000000000000000000".into()),
        Some(format!("Bearer {}x", tok.token)),
        Some(format!("Basic {}", tok.token)),
        Some(format!("Bearer {admin_token}")),
        Some(format!("Bearer {}", "a".repeat(300))),
    ];
    for auth in &auths {
        let with = |req: reqwest::RequestBuilder| match auth {
            Some(a) => req.header("Authorization", a),
            None => req,
        };
        let calls = [
            with(http.get(t.url("/v1/me/vehicles"))),
            with(http.post(t.url("/v1/me/vehicles")).json(&json!({"plate": "30A-123.45", "vehicle_class": "car"}))),
            with(http.delete(t.url("/v1/me/vehicles/1"))),
            with(http.get(t.url("/v1/me/wallet"))),
            with(http.post(t.url(TOPUPS)).header("Idempotency-Key", "k").json(&json!({"amount": 10_000}))),
            with(http.post(t.url("/v1/auth/logout"))),
        ];
        for call in calls {
            let a = raw(call).await;
            assert_error(&a, 401, "unauthorized");
        }
    }
    // A driver token is not a staff token either.
    let a = raw(http.get(t.url("/v1/admin/streets?district=HK")).bearer_auth(&tok.token)).await;
    assert_error(&a, 401, "unauthorized");
    // Nothing was written by the refused calls.
    let me = t.client.with_token(tok.token);
    assert!(me.vehicles().await.unwrap().is_empty());
    assert_eq!(me.wallet().await.unwrap().balance, 0);
});

// ---- Vehicles --------------------------------------------------------------------------------

matrix!(vehicles_add_list_remove, |t| {
    let http = reqwest::Client::new();
    let (me, tok) = login(&t, "0912345678").await;
    let me_en = me.with_language("en");
    let a = raw(http
        .post(t.url("/v1/me/vehicles"))
        .bearer_auth(&tok.token)
        .json(&json!({"plate": "30A-123.45", "vehicle_class": "car"})))
    .await;
    assert_eq!(a.0, 201, "{}", a.1);
    assert_eq!(a.1["plate"], "30A12345");
    assert_eq!(a.1["vehicle_class"], "car");
    let first_id = a.1["id"].as_i64().unwrap();
    let bike = me.add_vehicle(" 29-b1 123.45 ", VehicleClass::Motorbike).await.unwrap();
    assert_eq!((bike.plate.as_str(), bike.vehicle_class), ("29B112345", VehicleClass::Motorbike));
    assert_ne!(bike.id, first_id);
    let list = me.vehicles().await.unwrap();
    assert_eq!(
        list.iter().map(|v| (v.id, v.plate.as_str())).collect::<Vec<_>>(),
        [(first_id, "30A12345"), (bike.id, "29B112345")]
    );
    assert_eq!(list[1], bike);

    // The same plate in another spelling is a duplicate, whatever the class.
    for (plate, class) in [("30a 12345", VehicleClass::Car), ("30A-123-45", VehicleClass::Minibus)] {
        let e = me.add_vehicle(plate, class).await.unwrap_err();
        assert_eq!(api_code(e), (409, "vehicle_exists".into()), "{plate}");
    }
    // Not a plate: 400, and the message says why.
    for (plate, why) in [
        ("", "empty"),
        ("30A-12", "length"),
        ("A30-12345", "province code"),
        ("05A-123.45", "11–99"),
        ("30ABC-12345", "series"),
        ("30A-12B45", "only digits"),
        ("30A-123.45!", "letters, digits"),
    ] {
        let (status, err) = api(me_en.add_vehicle(plate, VehicleClass::Car).await.unwrap_err());
        assert_eq!((status, err.code.as_str()), (400, "invalid_plate"), "{plate}");
        assert!(err.message.contains(why), "{plate}: {}", err.message);
    }
    let (_, vi) = api(me.add_vehicle("A30-12345", VehicleClass::Car).await.unwrap_err());
    assert!(vi.message.contains("mã tỉnh"), "Vietnamese by default: {}", vi.message);
    // Unknown class, unknown field, missing field: a malformed body.
    for body in [
        json!({"plate": "30A-999.99", "vehicle_class": "spaceship"}),
        json!({"plate": "30A-999.99", "vehicle_class": "car", "colour": "red"}),
        json!({"plate": "30A-999.99"}),
    ] {
        let a = raw(http.post(t.url("/v1/me/vehicles")).bearer_auth(&tok.token).json(&body)).await;
        assert_error(&a, 400, "invalid_body");
    }
    let a = raw(http
        .post(t.url("/v1/me/vehicles"))
        .bearer_auth(&tok.token)
        .header("content-type", "text/plain")
        .body(r#"{"plate": "30A-999.99", "vehicle_class": "car"}"#))
    .await;
    assert_error(&a, 415, "unsupported_media_type");
    // Nothing changed on the rejected requests.
    assert_eq!(me.vehicles().await.unwrap(), list);

    // Remove: 204, then gone.
    let a = raw(http.delete(t.url(&format!("/v1/me/vehicles/{first_id}"))).bearer_auth(&tok.token)).await;
    assert_eq!(a.0, 204, "{}", a.1);
    assert_eq!(me.vehicles().await.unwrap(), vec![bike.clone()]);
    let a = raw(http.delete(t.url(&format!("/v1/me/vehicles/{first_id}"))).bearer_auth(&tok.token)).await;
    assert_error(&a, 404, "vehicle_not_found");
    let e = me.remove_vehicle(999_999).await.unwrap_err();
    assert_eq!(api_code(e), (404, "vehicle_not_found".into()));
    let a = raw(http.delete(t.url("/v1/me/vehicles/abc")).bearer_auth(&tok.token)).await;
    assert_error(&a, 400, "invalid_path");
    assert_eq!(me.vehicles().await.unwrap(), vec![bike.clone()]);
    // A removed plate can be registered again, under a new id.
    let back = me.add_vehicle("30A12345", VehicleClass::Car).await.unwrap();
    assert_ne!(back.id, first_id);
    assert_eq!(back.plate, "30A12345");
    assert_eq!(me.vehicles().await.unwrap().len(), 2);
});

matrix!(at_most_ten_vehicles, |t| {
    let me = t.driver("0912345678").await;
    for i in 0..10 {
        me.add_vehicle(&format!("30A-100.{i:02}"), VehicleClass::Car).await.unwrap_or_else(|e| panic!("{i}: {e}"));
    }
    let e = me.add_vehicle("30A-200.00", VehicleClass::Car).await.unwrap_err();
    assert_eq!(api_code(e), (422, "too_many_vehicles".into()));
    // A duplicate is still reported as a duplicate at the limit.
    let e = me.add_vehicle("30A-100.00", VehicleClass::Car).await.unwrap_err();
    assert_eq!(api_code(e), (409, "vehicle_exists".into()));
    let list = me.vehicles().await.unwrap();
    assert_eq!(list.len(), 10);
    assert!(list.iter().all(|v| v.plate != "30A20000"));
    // Another driver is not affected by this one's limit.
    let other = t.driver("0987654321").await;
    assert!(other.add_vehicle("30A-200.00", VehicleClass::Car).await.is_ok());
    // Removing one makes room for one.
    me.remove_vehicle(list[3].id).await.unwrap();
    me.add_vehicle("30A-200.00", VehicleClass::Car).await.unwrap();
    let e = me.add_vehicle("30A-200.01", VehicleClass::Car).await.unwrap_err();
    assert_eq!(api_code(e), (422, "too_many_vehicles".into()));
    assert_eq!(me.vehicles().await.unwrap().len(), 10);
});

matrix!(concurrent_adds_cannot_pass_the_limit, |t| {
    let me = t.driver("0912345678").await;
    for i in 0..8 {
        me.add_vehicle(&format!("30A-100.{i:02}"), VehicleClass::Car).await.unwrap();
    }
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let me = me.clone();
            tokio::spawn(async move { me.add_vehicle(&format!("51F-300.{i:02}"), VehicleClass::Car).await })
        })
        .collect();
    let mut added = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => added += 1,
            Err(e) => assert_eq!(api_code(e), (422, "too_many_vehicles".into())),
        }
    }
    assert_eq!(added, 2);
    assert_eq!(me.vehicles().await.unwrap().len(), 10);
});

matrix!(another_drivers_vehicle_is_invisible, |t| {
    let a = t.driver("0912345678").await;
    let b = t.driver("0987654321").await;
    let car = a.add_vehicle("30A-123.45", VehicleClass::Car).await.unwrap();
    assert!(b.vehicles().await.unwrap().is_empty(), "B sees none of A's vehicles");
    let e = b.remove_vehicle(car.id).await.unwrap_err();
    assert_eq!(api_code(e), (404, "vehicle_not_found".into()));
    // Not deleted: the owner still has it.
    assert_eq!(a.vehicles().await.unwrap(), vec![car.clone()]);
    a.remove_vehicle(car.id).await.unwrap();
    assert!(a.vehicles().await.unwrap().is_empty());
});

// ---- Wallet -------------------------------------------------------------------------------------

matrix!(wallet_starts_empty_in_the_sandbox, |t| {
    let me = t.driver("0912345678").await;
    let w = me.wallet().await.unwrap();
    assert_eq!(w, WalletView { balance: 0, currency: "VND".into(), sandbox: true, movements: vec![] });
    t.assert_ledger_sound().await;
});

matrix!(sandbox_topup_credits_once_per_key, |t| {
    let http = reqwest::Client::new();
    let (me, tok) = login(&t, "0912345678").await;
    let a = raw(http
        .post(t.url(TOPUPS))
        .bearer_auth(&tok.token)
        .header("Idempotency-Key", "k1")
        .json(&json!({"amount": 50_000})))
    .await;
    assert_eq!(a.0, 201, "{}", a.1);
    let first: WalletView = serde_json::from_value(a.1.clone()).unwrap();
    assert_eq!((first.balance, first.currency.as_str(), first.sandbox), (50_000, "VND", true));
    assert_eq!(first.movements.len(), 1);
    let m = &first.movements[0];
    assert_eq!((m.kind.as_str(), m.amount, m.session_id), ("sandbox_topup", 50_000, None));
    assert_eq!(me.wallet().await.unwrap(), first);

    // A retry with the same key and body: the same answer, marked as a replay, no second credit.
    let resp = http
        .post(t.url(TOPUPS))
        .bearer_auth(&tok.token)
        .header("Idempotency-Key", "k1")
        .json(&json!({"amount": 50_000}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    assert_eq!(resp.headers().get("idempotent-replayed").map(|v| v.to_str().unwrap()), Some("true"));
    let replay: WalletView = resp.json().await.unwrap();
    assert_eq!(replay, first);
    assert_eq!(me.sandbox_topup(50_000, "k1").await.unwrap(), first);
    let w = me.wallet().await.unwrap();
    assert_eq!((w.balance, w.movements.len()), (50_000, 1));

    // Another key credits again; newest movement first.
    let second = me.sandbox_topup(20_000, "k2").await.unwrap();
    assert_eq!(second.balance, 70_000);
    assert_eq!(second.movements.iter().map(|m| m.amount).collect::<Vec<_>>(), [20_000, 50_000]);
    assert!(second.movements[0].transaction_id > second.movements[1].transaction_id);
    // The first key still replays its own first answer.
    assert_eq!(me.sandbox_topup(50_000, "k1").await.unwrap(), first);

    // The same key for a different amount: refused, nothing credited.
    let a = raw(http
        .post(t.url(TOPUPS))
        .bearer_auth(&tok.token)
        .header("Idempotency-Key", "k1")
        .json(&json!({"amount": 60_000})))
    .await;
    assert_error(&a, 422, "idempotency_key_reused");
    let e = me.sandbox_topup(20_001, "k2").await.unwrap_err();
    assert_eq!(api_code(e), (422, "idempotency_key_reused".into()));
    let w = me.wallet().await.unwrap();
    assert_eq!((w.balance, w.movements.len()), (70_000, 2));
    assert_eq!(movements_sum(&w), w.balance);
    t.assert_ledger_sound().await;
});

matrix!(wallet_lists_its_newest_hundred_movements, |t| {
    let me = t.driver("0912345678").await;
    let other = t.driver("0987654321").await;
    let mut total = 0;
    for i in 0..103 {
        let amount = 1_000 + i;
        me.sandbox_topup(amount, &format!("w{i}")).await.unwrap();
        total += amount;
        if i % 50 == 0 {
            other.sandbox_topup(7_000, &format!("o{i}")).await.unwrap();
        }
    }
    let w = me.wallet().await.unwrap();
    // The whole balance, and only this wallet's newest 100 movements, newest first.
    assert_eq!(w.balance, total);
    assert_eq!(w.movements.iter().map(|m| m.amount).collect::<Vec<_>>(), (1_003..1_103).rev().collect::<Vec<_>>());
    assert!(w.movements.windows(2).all(|p| p[0].transaction_id > p[1].transaction_id));
    let o = other.wallet().await.unwrap();
    assert_eq!((o.balance, o.movements.len()), (21_000, 3));
    t.assert_ledger_sound().await;
});

matrix!(sandbox_topup_rejects_bad_requests, |t| {
    let http = reqwest::Client::new();
    let (me, tok) = login(&t, "0912345678").await;
    let post = |key: Option<&str>| {
        let req = http.post(t.url(TOPUPS)).bearer_auth(&tok.token);
        match key {
            Some(k) => req.header("Idempotency-Key", k),
            None => req,
        }
    };
    let a = raw(post(None).json(&json!({"amount": 10_000}))).await;
    assert_error(&a, 400, "idempotency_key_required");
    let long = "k".repeat(256);
    for key in ["", "has space", "ключ", long.as_str()] {
        let a = raw(post(Some(key)).json(&json!({"amount": 10_000}))).await;
        assert_error(&a, 400, "invalid_idempotency_key");
    }
    for amount in [0, 999, 10_000_001, -5, i64::MIN] {
        let e = me.sandbox_topup(amount, &format!("bad-{amount}")).await.unwrap_err();
        assert_eq!(api_code(e), (400, "invalid_amount".into()), "{amount}");
    }
    let a = raw(post(Some("plain")).header("content-type", "text/plain").body(r#"{"amount": 10000}"#)).await;
    assert_error(&a, 415, "unsupported_media_type");
    let a = raw(post(Some("none")).body(r#"{"amount": 10000}"#)).await;
    assert_error(&a, 415, "unsupported_media_type");
    for body in [r#"{"amount": 10000"#, r#"{"amount": "10000"}"#, r#"{"amount": 10000, "x": 1}"#, r#"{}"#] {
        let a = raw(post(Some("broken")).header("content-type", "application/json").body(body)).await;
        assert_error(&a, 400, "invalid_body");
    }
    // Nothing was credited by the rejected calls.
    let w = me.wallet().await.unwrap();
    assert_eq!((w.balance, w.movements.len()), (0, 0));
    // A rejected call does not use up its key.
    let w = me.sandbox_topup(1_000, "bad-999").await.unwrap();
    assert_eq!(w.balance, 1_000);
    let w = me.sandbox_topup(10_000_000, "plain").await.unwrap();
    assert_eq!(w.balance, 10_001_000);
    let w = me.wallet().await.unwrap();
    assert_eq!(w.movements.len(), 2);
    assert_eq!(movements_sum(&w), w.balance);
    t.assert_ledger_sound().await;
});

matrix!(idempotency_keys_are_per_driver, |t| {
    let a = t.driver("0912345678").await;
    let b = t.driver("0987654321").await;
    let wa = a.sandbox_topup(10_000, "shared-key").await.unwrap();
    // The same key and body from another driver is that driver's own top-up, not a replay.
    let wb = b.sandbox_topup(10_000, "shared-key").await.unwrap();
    assert_eq!(wb.balance, 10_000);
    assert_ne!(wb.movements[0].transaction_id, wa.movements[0].transaction_id);
    // And a different amount under the same key is not a reuse across drivers.
    let wb = b.sandbox_topup(5_000, "other-key").await.unwrap();
    assert_eq!(wb.balance, 15_000);
    let wa2 = a.sandbox_topup(7_000, "other-key").await.unwrap();
    assert_eq!(wa2.balance, 17_000);
    assert_eq!(a.wallet().await.unwrap().movements.len(), 2);
    assert_eq!(b.wallet().await.unwrap().movements.len(), 2);
    t.assert_ledger_sound().await;
});

matrix!(concurrent_topups_with_one_key_credit_once, |t| {
    let me = t.driver("0912345678").await;
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let me = me.clone();
            tokio::spawn(async move { me.sandbox_topup(25_000, "same-key").await })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(w) => answers.push(w),
            // The documented answer while the first request with the key is still running.
            Err(e) => assert_eq!(api_code(e), (409, "idempotency_in_progress".into())),
        }
    }
    assert!(!answers.is_empty(), "at least one request succeeds");
    for w in &answers {
        assert_eq!(w, &answers[0], "every success is the same answer");
        assert_eq!((w.balance, w.movements.len()), (25_000, 1));
    }
    let w = me.wallet().await.unwrap();
    assert_eq!((w.balance, w.movements.len()), (25_000, 1));
    assert_eq!(movements_sum(&w), w.balance);
    // A later retry replays the same answer.
    assert_eq!(me.sandbox_topup(25_000, "same-key").await.unwrap(), answers[0]);
    t.assert_ledger_sound().await;
});

matrix!(concurrent_topups_with_distinct_keys_all_credit, |t| {
    let me = t.driver("0912345678").await;
    let tasks: Vec<_> = (1..=10_i64)
        .map(|i| {
            let me = me.clone();
            tokio::spawn(async move { me.sandbox_topup(i * 1_000, &format!("key-{i}")).await })
        })
        .collect();
    for (i, task) in (1..=10_i64).zip(tasks) {
        let w = task.await.unwrap().unwrap();
        // Each answer is read after its own credit committed, and its balance and movements
        // come from one snapshot, so they agree even under concurrent writes.
        assert!((i * 1_000..=55_000).contains(&w.balance), "{i}: {}", w.balance);
        assert_eq!(movements_sum(&w), w.balance, "{i}: balance and movements disagree: {w:?}");
        assert!(w.movements.iter().any(|m| m.amount == i * 1_000 && m.kind == "sandbox_topup"), "{i}: {w:?}");
    }
    let w = me.wallet().await.unwrap();
    assert_eq!(w.balance, 55_000);
    assert_eq!(w.movements.len(), 10);
    assert_eq!(movements_sum(&w), w.balance);
    let mut amounts: Vec<i64> = w.movements.iter().map(|m| m.amount).collect();
    amounts.sort_unstable();
    assert_eq!(amounts, (1..=10).map(|i| i * 1_000).collect::<Vec<_>>());
    assert!(w.movements.iter().all(|m| m.kind == "sandbox_topup"));
    t.assert_ledger_sound().await;
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_off_refuses_topups() {
    let opts = Options {
        settings: iparking::Settings { sandbox_payments: false, ..Options::default().settings },
        ..Options::default()
    };
    let t = TestApp::start_with(Db::Sqlite, Live::Memory, opts).await;
    let (me, tok) = login(&t, "0912345678").await;
    let w = me.wallet().await.unwrap();
    assert_eq!((w.balance, w.sandbox, w.movements.len()), (0, false, 0));
    let e = me.sandbox_topup(10_000, "k1").await.unwrap_err();
    assert_eq!(api_code(e), (404, "sandbox_disabled".into()));
    let a = raw(reqwest::Client::new()
        .post(t.url(TOPUPS))
        .bearer_auth(&tok.token)
        .header("Idempotency-Key", "k2")
        .json(&json!({"amount": 10_000})))
    .await;
    assert_error(&a, 404, "sandbox_disabled");
    let w = me.wallet().await.unwrap();
    assert_eq!((w.balance, w.sandbox, w.movements.len()), (0, false, 0));
    t.assert_ledger_sound().await;
}

// ---- Privacy ------------------------------------------------------------------------------------

#[test]
fn debug_output_hides_phones_and_plates() {
    let phone = Phone::parse("0912 345 678").unwrap();
    assert_eq!(phone.as_str(), "+84912345678");
    let shown = format!("{phone:?} {phone:#?}");
    assert!(!shown.contains("912345"), "{shown}");
    assert!(!shown.contains("0912"), "{shown}");
    assert!(shown.contains("+84•••••5678"), "{shown}");
    let plate = Plate::parse("30A-123.45").unwrap();
    assert_eq!(plate.as_str(), "30A12345");
    let shown = format!("{plate:?} {plate:#?} {:?}", vec![plate.clone()]);
    assert!(!shown.contains("30A"), "{shown}");
    assert!(!shown.contains("12345"), "{shown}");
    // Nor through the types that carry them.
    let shown = format!("{:?}", (Some(&phone), [&plate]));
    assert!(!shown.contains("912345") && !shown.contains("12345"), "{shown}");
}

/// A key used twice at once collides in the database: the second claim finds the first's
/// row. That is found without an error (`ON CONFLICT DO NOTHING`), so PostgreSQL's log gets
/// no `duplicate key value violates unique constraint "idempotency_keys_pkey"` per replay,
/// and the replay still gets the first answer with one credit per key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_replays_leave_no_duplicate_key_error_in_postgres_log() {
    let path = std::env::var("IPARKING_TEST_PG_LOG").expect("IPARKING_TEST_PG_LOG (set by scripts/test)");
    // This run's part of the log: from its length now.
    let start = std::fs::metadata(&path).unwrap_or_else(|e| panic!("{path}: {e}")).len() as usize;
    let t = TestApp::start(Db::Postgres, Live::Memory).await;
    let (me, tok) = login(&t, "0912345601").await;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let prefix = format!("race-{nanos}-");
    const KEYS: usize = 12;
    const COPIES: usize = 4;
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..KEYS {
        for _ in 0..COPIES {
            let (url, token, key) = (t.url(TOPUPS), tok.token.clone(), format!("{prefix}{k}"));
            tasks.spawn(async move {
                let r = reqwest::Client::new()
                    .post(url)
                    .bearer_auth(token)
                    .header("Idempotency-Key", &key)
                    .json(&json!({"amount": 10_000}))
                    .send()
                    .await
                    .unwrap();
                (key, r.status().as_u16(), r.text().await.unwrap())
            });
        }
    }
    let mut answers: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
    while let Some(done) = tasks.join_next().await {
        let (key, status, body) = done.unwrap();
        assert_eq!(status, 201, "{key}: {body}");
        answers.entry(key).or_default().push(body);
    }
    for (key, bodies) in &answers {
        assert!(bodies.iter().all(|b| b == &bodies[0]), "{key}: every copy gets the first answer: {bodies:?}");
    }
    assert_eq!(me.wallet().await.unwrap().balance, 10_000 * KEYS as i64, "one credit per key");

    // PostgreSQL writes its log itself; give it a moment.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let log = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let log = String::from_utf8_lossy(&log[start.min(log.len())..]).into_owned();
    let lines: Vec<&str> = log.lines().collect();
    let ours: Vec<&[&str]> = lines
        .windows(2)
        .filter(|w| w[0].contains("duplicate key value violates unique constraint \"idempotency_keys_pkey\""))
        .filter(|w| w[1].contains(&prefix))
        .collect();
    assert!(ours.is_empty(), "PostgreSQL logged a duplicate key for a replay: {ours:?}");
    t.assert_ledger_sound().await;
    t.stop().await;
}
