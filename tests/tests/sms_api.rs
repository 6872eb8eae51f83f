//! Black-box tests of the SMS channel (carrier webhook) and expiry reminders, on SQLite +
//! in-process live state and on PostgreSQL + Redis.

use chrono::Duration;
use iparking::domain::tariff::LOCAL_TZ;
use iparking::store::drivers::SessionRow;
use iparking_mobile_api::{Channel, QuoteRequest, SmsReply, VehicleClass};
use iparking_tests::{MOBIFONE_SECRET, TestApp, VIETTEL_SECRET, assert_error, finance, matrix, raw};
use serde_json::json;

async fn deliver(
    t: &TestApp,
    carrier: &str,
    secret: &str,
    id: &str,
    from: &str,
    text: &str,
) -> (u16, serde_json::Value) {
    raw(reqwest::Client::new()
        .post(t.url(&format!("/webhooks/sms/{carrier}")))
        .header("X-Carrier-Secret", secret)
        .json(&json!({"message_id": id, "from": from, "text": text})))
    .await
}

async fn sms(t: &TestApp, id: &str, text: &str) -> SmsReply {
    let (status, body) = deliver(t, "viettel", VIETTEL_SECRET, id, "0987654321", text).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_value(body).unwrap()
}

/// The SMS price of the next turn at a point now (depends on the time of day in Hanoi).
async fn next_turn_price(t: &TestApp, point: &str) -> i64 {
    let q = QuoteRequest {
        point_code: point.into(),
        vehicle_class: VehicleClass::Car,
        start: Some(iparking::Clock::now(t.clock.as_ref())),
        minutes: Some(60),
        amount: None,
        channel: Some(Channel::Sms),
    };
    t.client.quote(&q).await.unwrap().total
}

fn keyword(price: i64, district: &str) -> String {
    format!("IP{}{district}", price / 1000)
}

matrix!(an_sms_buys_a_turn_once_and_extends, |t| {
    let price = next_turn_price(&t, "HK001").await;
    let text = format!("{} 001 30A-123.45", keyword(price, "HK"));
    let r = sms(&t, "m-1", &text).await;
    assert_eq!((r.outcome.as_str(), r.duplicate), ("started", false), "{}", r.reply);
    assert!(r.reply.contains("30A12345") && r.reply.contains("HK001"), "{}", r.reply);
    let session_id = r.session_id.unwrap();
    let point = t.app.store.point("HK001").await.unwrap().unwrap();
    assert_eq!(t.app.live.occupancy(&[point.id]).await.unwrap(), [1]);
    // A repeated delivery does nothing twice and answers the same reply.
    let again = sms(&t, "m-1", &text).await;
    assert_eq!((again.duplicate, again.reply.as_str(), again.session_id), (true, r.reply.as_str(), Some(session_id)));
    let s = t.app.store.session(session_id).await.unwrap().unwrap();
    assert_eq!((s.turns, s.amount_charged.get(), s.channel.as_str()), (1, price, "sms"));
    assert!(s.driver_id.is_none());
    // The carrier's share: the point earns the gross, the carrier owes the net.
    let report = t.app.store.ledger_report().await.unwrap();
    assert!(report.is_sound(), "{report:?}");
    assert_eq!(report.revenue_vs_sessions, (price, price));
    // A second message for the same plate at the same point extends by one turn.
    let second = next_turn_price_for(&t, &s).await;
    let r2 = sms(&t, "m-2", &format!("{} 1 30A12345", keyword(second, "HK"))).await;
    assert_eq!(r2.outcome, "extended", "{}", r2.reply);
    let s2 = t.app.store.session(session_id).await.unwrap().unwrap();
    assert_eq!((s2.turns, s2.amount_charged.get()), (2, price + second));
    assert_eq!(s2.paid_until - s.paid_until, Duration::minutes(60));
    assert_eq!(t.app.live.occupancy(&[point.id]).await.unwrap(), [1], "an extension takes no new space");
    t.assert_ledger_sound().await;
});

/// The price of the turn after those a session has, by SMS.
async fn next_turn_price_for(t: &TestApp, s: &SessionRow) -> i64 {
    let book = t.app.tariffs();
    let tariff = book.get(s.tariff_id).unwrap();
    tariff.price(s.started_at, s.turns, 1, Channel::Sms).unwrap().total.get()
}

matrix!(sms_mistakes_are_explained_and_change_nothing, |t| {
    let price = next_turn_price(&t, "HK002").await;
    let kw = keyword(price, "HK");
    let wrong_kw = keyword(price + 10_000, "HK");
    for (id, text, expect) in [
        ("e-1", "hello".to_owned(), "Cú pháp"),
        ("e-2", format!("{kw} 999 30A12345"), "HK999"),
        ("e-3", format!("{kw} 002 ABC"), "Biển số"),
        ("e-4", format!("{wrong_kw} 002 30A12345"), &format!("IP{}HK 002 30A12345", price / 1000)),
        ("e-5", format!("{kw} 002 30A12345 EN").replace("HK 002", "HK 777"), "no parking point"),
    ] {
        let r = sms(&t, id, &text).await;
        assert_eq!(r.outcome, "refused", "{text}: {}", r.reply);
        assert!(r.reply.contains(expect), "{text}: {}", r.reply);
        assert!(r.session_id.is_none());
    }
    // A plate parked elsewhere is named.
    let price1 = next_turn_price(&t, "HK001").await;
    sms(&t, "p-1", &format!("{} 001 51F12345", keyword(price1, "HK"))).await;
    let r = sms(&t, "p-2", &format!("{kw} 002 51F12345")).await;
    assert_eq!(r.outcome, "refused");
    assert!(r.reply.contains("HK001"), "{}", r.reply);
    let report = t.app.store.ledger_report().await.unwrap();
    assert_eq!(report.revenue_vs_sessions, (price1, price1), "only the one good message was charged");
    t.assert_ledger_sound().await;
});

matrix!(carriers_are_authenticated_and_separate, |t| {
    let price = next_turn_price(&t, "HK003").await;
    let text = format!("{} 003 29H1-234.56", keyword(price, "HK"));
    let a = deliver(&t, "viettel", "wrong-secret", "c-1", "0987654321", &text).await;
    assert_error(&a, 401, "unauthorized");
    let a = deliver(&t, "viettel", "", "c-1", "0987654321", &text).await;
    assert_error(&a, 401, "unauthorized");
    let a = deliver(&t, "unknown", VIETTEL_SECRET, "c-1", "0987654321", &text).await;
    assert_error(&a, 404, "carrier_not_found");
    let a = deliver(&t, "mobifone", VIETTEL_SECRET, "c-1", "0987654321", &text).await;
    assert_error(&a, 401, "unauthorized");
    let a = deliver(&t, "viettel", VIETTEL_SECRET, "", "0987654321", &text).await;
    assert_error(&a, 400, "invalid_body");
    let a = deliver(&t, "viettel", VIETTEL_SECRET, "c-1", "not-a-phone", &text).await;
    assert_error(&a, 400, "invalid_phone");
    assert_eq!(t.app.store.ledger_report().await.unwrap().revenue_vs_sessions, (0, 0), "nothing was charged");
    // The same message id from two carriers are two messages.
    let (s1, b1) = deliver(&t, "viettel", VIETTEL_SECRET, "same-id", "0987654321", &text).await;
    assert_eq!((s1, b1["outcome"].as_str()), (200, Some("started")), "{b1}");
    let price4 = next_turn_price(&t, "HK004").await;
    let (s2, b2) = deliver(
        &t,
        "mobifone",
        MOBIFONE_SECRET,
        "same-id",
        "0987000111",
        &format!("{} 004 29H1-999.99", keyword(price4, "HK")),
    )
    .await;
    assert_eq!((s2, b2["outcome"].as_str(), b2["duplicate"].as_bool()), (200, Some("started"), Some(false)), "{b2}");
    t.assert_ledger_sound().await;
});

matrix!(concurrent_redelivery_charges_once, |t| {
    let price = next_turn_price(&t, "HK005").await;
    let text = format!("{} 005 30E-1234", keyword(price, "HK"));
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let url = t.url("/webhooks/sms/viettel");
        let text = text.clone();
        tasks.push(tokio::spawn(async move {
            raw(reqwest::Client::new()
                .post(url)
                .header("X-Carrier-Secret", VIETTEL_SECRET)
                .json(&json!({"message_id": "race-1", "from": "0987654321", "text": text})))
            .await
        }));
    }
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    let report = t.app.store.ledger_report().await.unwrap();
    assert_eq!(report.revenue_vs_sessions, (price, price), "charged exactly once");
    t.assert_ledger_sound().await;
});

matrix!(reminders_go_out_once_before_expiry, |t| {
    // An app session of 1 turn and an SMS session of 1 turn; move to 5 minutes before the end.
    let d = t.funded_driver("0912000777", 500_000).await;
    let start = iparking_mobile_api::StartSession {
        point_code: "HK006".into(),
        plate: "30A-555.55".into(),
        vehicle_class: Some(VehicleClass::Car),
        minutes: Some(60),
        turns: None,
        payment: None,
        card_id: None,
        lat: None,
        lon: None,
    };
    let s = d.start_session(&start, "rem-1").await.unwrap();
    let price = next_turn_price(&t, "HK007").await;
    sms(&t, "rem-sms", &format!("{} 007 51F-222.22", keyword(price, "HK"))).await;
    assert!(t.sms.messages().iter().all(|(_, text)| !text.contains("het gio")), "no reminder yet");
    t.clock.advance(Duration::minutes(55));
    let mut reminders = Vec::new();
    for _ in 0..40 {
        reminders = t.sms.messages().into_iter().filter(|(_, text)| text.contains("het gio")).collect();
        if reminders.len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(reminders.len(), 2, "{reminders:?}");
    let app_reminder = reminders.iter().find(|(p, _)| p == "+84912000777").expect("to the driver");
    assert!(app_reminder.1.contains("30A55555") && app_reminder.1.contains("HK006"), "{}", app_reminder.1);
    let local_end = s.paid_until.with_timezone(&LOCAL_TZ).format("%H:%M").to_string();
    assert!(app_reminder.1.contains(&local_end), "{} lacks {local_end}", app_reminder.1);
    let sms_reminder = reminders.iter().find(|(p, _)| p == "+84987654321").expect("to the SMS sender");
    assert!(sms_reminder.1.contains("HK 007 51F22222"), "says how to extend: {}", sms_reminder.1);
    // Once only.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(t.sms.messages().iter().filter(|(_, text)| text.contains("het gio")).count(), 2);
    // An extension moves the end, so a new reminder is due before the new end.
    d.extend_session(
        s.id,
        &iparking_mobile_api::ExtendSession { minutes: None, turns: Some(1), ..Default::default() },
        "rem-ext",
    )
    .await
    .unwrap();
    t.clock.advance(Duration::minutes(60));
    let mut count = 0;
    for _ in 0..40 {
        count = t.sms.messages().iter().filter(|(p, text)| p == "+84912000777" && text.contains("het gio")).count();
        if count == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(count, 2, "a second reminder after the extension");
    t.assert_ledger_sound().await;
});

// ---- a free turn (the daily cap or the night block used up) --------------------------------

/// Moves the clock to the next local `hh:mm` (today's if still ahead, else tomorrow's).
fn advance_to_next(t: &TestApp, hour: u32, minute: u32) {
    let mut day = finance::today(t);
    if finance::local(day.and_hms_opt(hour, minute, 0).unwrap()) <= finance::now(t) + Duration::minutes(1) {
        day += Duration::days(1);
    }
    finance::advance_to(t, day.and_hms_opt(hour, minute, 0).unwrap());
}

/// Starts an SMS session for `plate` at HK001 and extends it, each message with the keyword
/// of the price the next turn costs, until the next turn costs nothing. Returns the session
/// and the driver's usual message (the one that started it).
async fn buy_until_the_next_turn_is_free(t: &TestApp, plate: &str, ids: &str) -> (SessionRow, String) {
    let usual = format!("{} 001 {plate}", keyword(next_turn_price(t, "HK001").await, "HK"));
    let r = sms(t, &format!("{ids}-1"), &usual).await;
    assert_eq!(r.outcome, "started", "{}", r.reply);
    let id = r.session_id.unwrap();
    for n in 2..=12 {
        let s = t.app.store.session(id).await.unwrap().unwrap();
        let next = next_turn_price_for(t, &s).await;
        if next == 0 {
            return (s, usual);
        }
        let r = sms(t, &format!("{ids}-{n}"), &format!("{} 001 {plate}", keyword(next, "HK"))).await;
        assert_eq!(r.outcome, "extended", "turn {n}: {}", r.reply);
    }
    panic!("no free turn within 12 turns");
}

/// The usual message extends the session by a free turn: amount 0 on the message and the
/// receipt, no ledger posting, a reply that says so and names no `IP0…` keyword; again, and
/// in English, and a redelivery does nothing twice.
async fn usual_message_buys_the_free_turn(t: &TestApp, s: &SessionRow, usual: &str, ids: &str, why: &str) {
    let postings = t.sql_i64("SELECT COUNT(*) FROM postings").await;
    let revenue = t.app.store.ledger_report().await.unwrap().revenue_vs_sessions;
    let r = sms(t, &format!("{ids}-free"), usual).await;
    assert_eq!((r.outcome.as_str(), r.session_id), ("extended", Some(s.id)), "{}", r.reply);
    assert!(r.reply.contains("miễn phí") && !r.reply.contains("IP0"), "{}", r.reply);
    let after = t.app.store.session(s.id).await.unwrap().unwrap();
    assert_eq!((after.turns, after.amount_charged), (s.turns + 1, s.amount_charged));
    assert_eq!(after.paid_until - s.paid_until, Duration::minutes(60));
    let message = |id: String| {
        format!(
            "sms_messages WHERE message_id = '{id}' AND outcome = 'extended' AND amount = 0 AND session_id = {}",
            s.id
        )
    };
    assert_eq!(t.sql_i64(&format!("SELECT COUNT(*) FROM {}", message(format!("{ids}-free")))).await, 1);
    let free_receipts = format!(
        "SELECT COUNT(*) FROM session_purchases WHERE session_id = {} AND amount = 0 AND transaction_id IS NULL",
        s.id
    );
    assert_eq!(t.sql_i64(&free_receipts).await, 1, "the receipt records the free turn");
    assert_eq!(t.sql_i64("SELECT COUNT(*) FROM postings").await, postings, "no zero-amount posting");
    assert_eq!(t.app.store.ledger_report().await.unwrap().revenue_vs_sessions, revenue);
    // A repeated delivery answers the same and extends nothing.
    let again = sms(t, &format!("{ids}-free"), usual).await;
    assert_eq!((again.duplicate, again.reply.as_str()), (true, r.reply.as_str()));
    assert_eq!(t.app.store.session(s.id).await.unwrap().unwrap().turns, s.turns + 1);
    // The next turn is free too: the same message again, in English this time.
    let r = sms(t, &format!("{ids}-free-2"), &format!("{usual} EN")).await;
    assert_eq!(r.outcome, "extended", "{}", r.reply);
    assert!(r.reply.contains("This turn is free") && r.reply.contains(why) && !r.reply.contains("IP0"), "{}", r.reply);
    let after = t.app.store.session(s.id).await.unwrap().unwrap();
    assert_eq!((after.turns, after.amount_charged), (s.turns + 2, s.amount_charged));
    assert_eq!(t.sql_i64(&free_receipts).await, 2);
    assert_eq!(t.app.store.ledger_report().await.unwrap().revenue_vs_sessions, revenue);
    t.assert_ledger_sound().await;
}

matrix!(at_the_daily_cap_the_usual_message_extends_free, |t| {
    // From 06:05: 25 + 25 + 35 + 35 + 45 × 4 = 300,000, the central daily cap, in 8 turns.
    advance_to_next(&t, 6, 5);
    let (s, usual) = buy_until_the_next_turn_is_free(&t, "30A-123.45", "cap").await;
    assert_eq!((s.turns, s.amount_charged.get()), (8, 300_000));
    usual_message_buys_the_free_turn(&t, &s, &usual, "cap", "daily cap").await;
});

matrix!(after_the_night_block_the_usual_message_extends_free, |t| {
    // From 18:05: 25 + 25 + 35 + 35 + 30 = 150,000, the overnight block, in 5 turns.
    advance_to_next(&t, 18, 5);
    let (s, usual) = buy_until_the_next_turn_is_free(&t, "51F-123.45", "night").await;
    assert_eq!((s.turns, s.amount_charged.get()), (5, 150_000));
    usual_message_buys_the_free_turn(&t, &s, &usual, "night", "block").await;
});

matrix!(a_free_first_turn_is_refused_without_a_keyword_the_parser_refuses, |t| {
    // A point tariff whose first hours are free (a city may publish one). SMS cannot start a
    // stay without a charge: the reply says the turn is free and names no `IP0…` keyword.
    let from = finance::now(&t) + Duration::minutes(1);
    let mut spec = iparking::seed::decision44(
        "Test – HK008 – free first hours",
        iparking_mobile_api::TariffScope::Point { point: "HK008".into() },
        vec![VehicleClass::Car],
        [0, 10_000, 20_000],
        150_000,
        None,
    );
    spec.valid_from = from;
    t.admin.publish_tariff(&spec).await.unwrap();
    t.clock.advance(Duration::minutes(2));
    assert_eq!(next_turn_price(&t, "HK008").await, 0);
    let r = sms(&t, "free-start", "IP25HK 008 30A-999.99 EN").await;
    assert_eq!((r.outcome.as_str(), r.session_id), ("refused", None), "{}", r.reply);
    assert!(r.reply.contains("is free") && r.reply.contains("app") && !r.reply.contains("IP0"), "{}", r.reply);
    let r = sms(&t, "free-start-vi", "IP25HK 008 30A-999.99").await;
    assert!(r.reply.contains("miễn phí") && !r.reply.contains("IP0"), "{}", r.reply);
    t.assert_ledger_sound().await;
});
