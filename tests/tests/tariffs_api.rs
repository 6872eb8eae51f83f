//! Black-box tests of quotes and tariff administration, on SQLite + in-process live state
//! and on PostgreSQL + Redis.

use chrono::{DateTime, Duration, FixedOffset, Utc};
use iparking::seed::decision44;
use iparking_mobile_api::{
    Channel, ClientError, PointTariffQuery, QuoteLineKind, QuoteRequest, RetireTariff, StaffRole, TariffListQuery,
    TariffScope, TariffSpec, TariffStatus, TierSpec, VehicleClass,
};
use iparking_tests::{Db, Live, Options, TestApp, assert_error, matrix, raw};
use serde_json::json;

fn hanoi(s: &str) -> DateTime<Utc> {
    DateTime::<FixedOffset>::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// Tomorrow (Hanoi) at `hh:mm`, so quotes are always in the accepted future range.
fn tomorrow_at(hh: u32, mm: u32) -> DateTime<Utc> {
    let local = (Utc::now() + Duration::days(1)).with_timezone(&iparking::domain::tariff::LOCAL_TZ).date_naive();
    let s = format!("{}T{hh:02}:{mm:02}:00+07:00", local.format("%Y-%m-%d"));
    hanoi(&s)
}

fn quote_req(point: &str, start: DateTime<Utc>, minutes: u32) -> QuoteRequest {
    QuoteRequest {
        point_code: point.into(),
        vehicle_class: VehicleClass::Car,
        start: Some(start),
        minutes: Some(minutes),
        amount: None,
        channel: None,
    }
}

#[track_caller]
fn api_code(e: ClientError) -> (u16, String) {
    match e {
        ClientError::Api { status, error } => (status, error.code),
        other => panic!("expected an API error, got {other}"),
    }
}

fn point_tariff_spec(point: &str, from: DateTime<Utc>, h1: i64) -> TariffSpec {
    let mut t = decision44(
        &format!("Test – {point} – {h1}"),
        TariffScope::Point { point: point.into() },
        vec![VehicleClass::Car],
        [h1, h1 + 10_000, h1 + 20_000],
        150_000,
        None,
    );
    t.valid_from = from;
    t
}

matrix!(quote_prices_by_decision_44, |t| {
    // 16:30 for 3 hours crosses from day into night: hours 1–2 at 25,000, hour 3 at 35,000.
    let start = tomorrow_at(16, 30);
    let q = t.client.with_language("en").quote(&quote_req("hk007", start, 180)).await.unwrap();
    assert_eq!((q.point_code.as_str(), q.turns, q.turn_minutes, q.total), ("HK007", 3, 60, 85_000));
    assert_eq!(q.currency, "VND");
    assert_eq!(q.end - q.start, Duration::hours(3));
    assert_eq!(q.start, start);
    assert_eq!(q.lines.iter().map(|l| l.amount).sum::<i64>(), q.total);
    let windows: Vec<&str> = q.lines.iter().map(|l| l.window.as_deref().unwrap()).collect();
    assert_eq!(windows, ["Ban ngày", "Ban ngày", "Qua đêm"]);
    assert_eq!(q.lines.iter().map(|l| l.hour_of_stay.unwrap()).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(q.lines[2].description.contains("hour 3"), "{}", q.lines[2].description);
    assert!(q.tariff_name.contains("HK"), "{}", q.tariff_name);
    // Minutes round up to whole turns.
    let q = t.client.quote(&quote_req("HK007", tomorrow_at(8, 0), 61)).await.unwrap();
    assert_eq!((q.turns, q.total), (2, 50_000));
    assert!(q.lines[0].description.contains("Lượt 1"), "Vietnamese by default: {}", q.lines[0].description);
    // A full day in central Hoàn Kiếm hits the 300,000 cap and the overnight block.
    let q = t.client.quote(&quote_req("HK007", tomorrow_at(8, 0), 1440)).await.unwrap();
    assert_eq!(q.total, 390_000);
    assert!(q.lines.iter().any(|l| l.kind == QuoteLineKind::DailyCapDiscount && l.amount == -240_000));
    assert!(q.lines.iter().any(|l| l.kind == QuoteLineKind::BlockDiscount && l.amount == -390_000));
    assert_eq!(q.lines.iter().map(|l| l.amount).sum::<i64>(), q.total);
    // Đống Đa has no daily cap: the same day costs more.
    let dd = t.client.quote(&quote_req("DD001", tomorrow_at(8, 0), 1440)).await.unwrap();
    assert_eq!(dd.total, 390_000 + 150_000 + 90_000);
    assert!(dd.lines.iter().all(|l| l.kind != QuoteLineKind::DailyCapDiscount));
    // Other classes use the city-wide tariff.
    let bus = QuoteRequest { vehicle_class: VehicleClass::Minibus, ..quote_req("DD002", tomorrow_at(8, 0), 60) };
    assert_eq!(t.client.quote(&bus).await.unwrap().total, 35_000);
});

matrix!(quote_by_amount, |t| {
    let req = QuoteRequest { minutes: None, amount: Some(100_000), ..quote_req("HK003", tomorrow_at(8, 0), 0) };
    let q = t.client.quote(&req).await.unwrap();
    assert_eq!((q.turns, q.total), (3, 85_000), "100,000 buys 3 turns (85,000), not 4 (120,000)");
    let e = t.client.quote(&QuoteRequest { amount: Some(10_000), ..req.clone() }).await.unwrap_err();
    assert_eq!(api_code(e), (422, "amount_too_small".into()));
    let e = t.client.quote(&QuoteRequest { amount: Some(0), ..req }).await.unwrap_err();
    assert_eq!(api_code(e), (400, "invalid_amount".into()));
});

matrix!(quote_rejects_bad_input, |t| {
    let start = tomorrow_at(9, 0);
    for (req, status, code) in [
        (quote_req("HK999", start, 60), 404, "point_not_found"),
        (
            QuoteRequest { vehicle_class: VehicleClass::Motorbike, ..quote_req("HK001", start, 60) },
            422,
            "vehicle_class_not_allowed",
        ),
        (quote_req("HK001", start, 0), 400, "invalid_duration"),
        (QuoteRequest { minutes: None, ..quote_req("HK001", start, 0) }, 400, "invalid_duration"),
        (QuoteRequest { amount: Some(50_000), ..quote_req("HK001", start, 60) }, 400, "invalid_duration"),
        (quote_req("HK001", start, 24 * 60 + 1), 422, "stay_too_long"),
        (quote_req("HK001", Utc::now() + Duration::days(400), 60), 400, "invalid_start"),
        (quote_req("HK001", hanoi("1999-12-31T10:00:00+07:00"), 60), 400, "invalid_start"),
    ] {
        let e = t.client.quote(&req).await.unwrap_err();
        assert_eq!(api_code(e), (status, code.into()), "{req:?}");
    }
    let e = t.client.with_language("en").quote(&quote_req("HK001", start, 24 * 60 + 1)).await.unwrap_err();
    match e {
        ClientError::Api { error, .. } => assert!(error.message.contains("1440 minutes"), "{}", error.message),
        other => panic!("{other}"),
    }
    let http = reqwest::Client::new();
    for body in [
        json!({"point_code": "HK001", "vehicle_class": "car", "minutes": "sixty"}),
        json!({"point_code": "HK001", "vehicle_class": "tank", "minutes": 60}),
        json!({"point_code": "HK001", "vehicle_class": "car", "minutes": -5}),
        json!({"point_code": "HK001", "vehicle_class": "car", "minutes": 60, "start": "tomorrow"}),
        json!({"point_code": "HK001", "vehicle_class": "car", "minutes": 60, "surprise": true}),
        json!({"vehicle_class": "car", "minutes": 60}),
    ] {
        let a = raw(http.post(t.url("/v1/quotes")).json(&body)).await;
        assert_error(&a, 400, "invalid_body");
    }
    t.admin.close_point("HK001").await.unwrap();
    assert_eq!(
        api_code(t.client.quote(&quote_req("HK001", start, 60)).await.unwrap_err()),
        (409, "point_closed".into())
    );
});

matrix!(point_tariff_for_apps, |t| {
    let v = t.client.point_tariff("hk001", &PointTariffQuery::default()).await.unwrap();
    assert_eq!(v.point_code, "HK001");
    let classes: Vec<VehicleClass> = v.classes.iter().map(|c| c.vehicle_class).collect();
    assert_eq!(classes, [VehicleClass::Car, VehicleClass::Minibus]);
    let car = &v.classes[0];
    assert_eq!(
        (car.daily_cap, car.turn_minutes, car.grace_minutes, car.max_stay_minutes),
        (Some(300_000), 60, 10, Some(1440))
    );
    assert_eq!(car.windows.len(), 2);
    assert_eq!((car.windows[0].start.as_str(), car.windows[0].end.as_str()), ("06:00", "18:00"));
    let tiers: Vec<(u32, Option<u32>, i64)> =
        car.windows[0].tiers.iter().map(|t| (t.from_hour, t.to_hour, t.price)).collect();
    assert_eq!(tiers, [(1, Some(2), 25_000), (3, Some(4), 35_000), (5, None, 45_000)]);
    assert_eq!(car.windows[1].block_price, Some(150_000));
    let dd = t.client.point_tariff("DD001", &PointTariffQuery::default()).await.unwrap();
    assert_eq!(dd.classes[0].daily_cap, None);
    let q = PointTariffQuery { vehicle_class: Some(VehicleClass::Motorbike), date: None };
    assert_eq!(
        api_code(t.client.point_tariff("HK001", &q).await.unwrap_err()),
        (422, "vehicle_class_not_allowed".into())
    );
    let q = PointTariffQuery { vehicle_class: Some(VehicleClass::Car), date: Some("2026-01-05".parse().unwrap()) };
    let v = t.client.point_tariff("HBT003", &q).await.unwrap();
    assert_eq!((v.date.to_string().as_str(), v.classes.len()), ("2026-01-05", 1));
    assert_eq!(api_code(t.client.point_tariff("XX001", &PointTariffQuery::default()).await.unwrap_err()).0, 404);
    let a = raw(reqwest::Client::new().get(t.url("/v1/points/HK001/tariff?date=yesterday"))).await;
    assert_error(&a, 400, "invalid_query");
});

matrix!(publish_resolve_and_retire, |t| {
    let now = Utc::now();
    // A point-scope tariff from tomorrow: it wins over the district's from then on only.
    let from = now + Duration::days(1);
    let published = t.admin.publish_tariff(&point_tariff_spec("HK002", from, 30_000)).await.unwrap();
    assert_eq!(published.status, TariffStatus::Scheduled);
    assert_eq!(published.spec.turn_minutes, Some(60), "defaults are filled in");
    let before = t.client.quote(&quote_req("HK002", now + Duration::hours(2), 60)).await.unwrap();
    assert_eq!((before.total, before.tariff_id == published.id), (25_000, false));
    let after = t.client.quote(&quote_req("HK002", from + Duration::hours(1), 60)).await.unwrap();
    assert_eq!((after.total, after.tariff_id), (30_000, published.id));
    let other_point = t.client.quote(&quote_req("HK003", from + Duration::hours(1), 60)).await.unwrap();
    assert_eq!(other_point.total, 25_000, "scope is one point only");

    // Same scope, class and time: refused, naming the tariff.
    let e = t.admin.publish_tariff(&point_tariff_spec("HK002", from + Duration::days(3), 40_000)).await.unwrap_err();
    match e {
        ClientError::Api { status, error } => {
            assert_eq!((status, error.code.as_str()), (409, "tariff_overlap"));
            assert!(error.message.contains(&published.id.to_string()), "{}", error.message);
        }
        other => panic!("{other}"),
    }
    // Another class at the same scope and time is fine.
    let mut bus = point_tariff_spec("HK002", from, 60_000);
    bus.vehicle_classes = vec![VehicleClass::Minibus];
    t.admin.publish_tariff(&bus).await.unwrap();

    // Retire the car tariff at a future instant: after it, the district tariff prices again.
    let end = iparking::domain::tariff::truncate_micros(from + Duration::days(2));
    let retired = t.admin.retire_tariff(published.id, &RetireTariff { at: Some(end) }).await.unwrap();
    assert_eq!(retired.spec.valid_until, Some(end));
    assert_eq!(t.client.quote(&quote_req("HK002", end + Duration::hours(1), 60)).await.unwrap().total, 25_000);
    assert_eq!(t.client.quote(&quote_req("HK002", from + Duration::hours(1), 60)).await.unwrap().total, 30_000);
    // Now a new tariff may follow it without overlap.
    t.admin.publish_tariff(&point_tariff_spec("HK002", end, 40_000)).await.unwrap();
    assert_eq!(t.client.quote(&quote_req("HK002", end + Duration::hours(1), 60)).await.unwrap().total, 40_000);

    let e = t.admin.retire_tariff(published.id, &RetireTariff { at: Some(now - Duration::hours(1)) }).await;
    assert_eq!(api_code(e.unwrap_err()), (422, "retire_in_past".into()));
    assert_eq!(api_code(t.admin.retire_tariff(999_999, &RetireTariff::default()).await.unwrap_err()).0, 404);

    let all = t.admin.tariffs(&TariffListQuery::default()).await.unwrap();
    assert_eq!(all.len(), 7 + 3);
    assert_eq!(all[0].id, all.iter().map(|v| v.id).max().unwrap(), "newest first");
    assert!(all.iter().all(|v| v.published_at <= Utc::now()));
});

matrix!(publish_rejects_bad_tariffs_and_changes_nothing, |t| {
    let count = || async { t.admin.tariffs(&TariffListQuery::default()).await.unwrap().len() };
    let before = count().await;
    let now = Utc::now();
    let good = point_tariff_spec("HK004", now + Duration::hours(1), 30_000);
    let mut gap = good.clone();
    gap.windows[1].end = "05:00".into();
    let mut overlap = good.clone();
    overlap.windows[1].start = "17:00".into();
    let mut tiers = good.clone();
    tiers.windows[0].tiers = vec![TierSpec { from_hour: 1, price: 1 }, TierSpec { from_hour: 1, price: 2 }];
    let mut first_tier = good.clone();
    first_tier.windows[0].tiers = vec![TierSpec { from_hour: 2, price: 1 }];
    let mut negative = good.clone();
    negative.windows[0].tiers[0].price = -1;
    let mut validity = good.clone();
    validity.valid_until = Some(validity.valid_from);
    let mut past = good.clone();
    past.valid_from = now - Duration::days(1);
    let mut unknown_point = good.clone();
    unknown_point.scope = TariffScope::Point { point: "HK999".into() };
    let mut unknown_district = good.clone();
    unknown_district.scope = TariffScope::District { district: "ZZ".into() };
    for (spec, status, code) in [
        // The tariff's own rules (windows, tiers, prices, validity): 422 (decision 0016).
        (gap, 422, "invalid_windows"),
        (overlap, 422, "invalid_windows"),
        (tiers, 422, "invalid_tiers"),
        (first_tier, 422, "invalid_tiers"),
        (negative, 422, "invalid_price"),
        (validity, 422, "invalid_validity"),
        (past, 422, "valid_from_in_past"),
        (unknown_point, 404, "point_not_found"),
        (unknown_district, 404, "district_not_found"),
    ] {
        let e = t.admin.publish_tariff(&spec).await.unwrap_err();
        assert_eq!(api_code(e), (status, code.into()));
    }
    // Roles and scopes.
    assert_eq!(api_code(t.client.publish_tariff(&good).await.unwrap_err()).0, 401);
    let warden = t.staff(StaffRole::Warden, &[]).await;
    assert_eq!(api_code(warden.publish_tariff(&good).await.unwrap_err()).0, 403);
    let dd_admin = t.staff(StaffRole::Admin, &["DD"]).await;
    assert_eq!(api_code(dd_admin.publish_tariff(&good).await.unwrap_err()).0, 403);
    let mut city = good.clone();
    city.scope = TariffScope::City;
    city.vehicle_classes = vec![VehicleClass::Large];
    assert_eq!(api_code(dd_admin.publish_tariff(&city).await.unwrap_err()).0, 403);
    assert_eq!(count().await, before, "nothing was published");
    // The district's own admin may publish for a point in it.
    let hk_admin = t.staff(StaffRole::Admin, &["HK"]).await;
    hk_admin.publish_tariff(&good).await.unwrap();
    assert_eq!(count().await, before + 1);
});

matrix!(sms_surcharge_only_on_sms, |t| {
    let mut spec = point_tariff_spec("HK005", Utc::now(), 25_000);
    spec.sms_surcharge_per_turn = Some(2_000);
    spec.minimum_charge = Some(30_000);
    t.admin.publish_tariff(&spec).await.unwrap();
    let start = tomorrow_at(9, 0);
    let app = t.client.quote(&quote_req("HK005", start, 60)).await.unwrap();
    assert_eq!(app.total, 30_000, "minimum charge tops up one 25,000 turn");
    assert!(app.lines.iter().any(|l| l.kind == QuoteLineKind::MinimumCharge && l.amount == 5_000));
    let sms =
        t.client.quote(&QuoteRequest { channel: Some(Channel::Sms), ..quote_req("HK005", start, 120) }).await.unwrap();
    assert_eq!(sms.total, 50_000 + 4_000);
    assert_eq!(sms.channel, Channel::Sms);
    assert!(sms.lines.iter().any(|l| l.kind == QuoteLineKind::SmsSurcharge && l.amount == 4_000));
});

/// A tariff published on one node prices quotes on another at once (within its refresh).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_node_sees_new_tariffs() {
    let a = TestApp::start(Db::Postgres, Live::Redis).await;
    let b = TestApp::start_with(
        Db::Postgres,
        Live::Redis,
        Options {
            seed_pilot: false,
            share_db: Some(a.db.clone()),
            redis_prefix: a.redis_prefix.clone(),
            ..Options::default()
        },
    )
    .await;
    let start = Utc::now() + Duration::hours(1);
    assert_eq!(b.client.quote(&quote_req("HK006", start, 60)).await.unwrap().total, 25_000);
    a.admin.publish_tariff(&point_tariff_spec("HK006", Utc::now(), 31_000)).await.unwrap();
    let mut total = 0;
    for _ in 0..50 {
        total = b.client.quote(&quote_req("HK006", start, 60)).await.unwrap().total;
        if total == 31_000 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(total, 31_000, "node B never priced with the tariff published on node A");
    b.stop().await;
    a.stop().await;
}
