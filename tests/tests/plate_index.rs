//! The live state's plate → active session index and occupancy follow every session change
//! and are rebuilt from the database (SQLite + in-process, PostgreSQL + Redis).

use chrono::Duration;
use iparking::live::{LiveState, PlateEntry};
use iparking_mobile_api::{ExtendSession, StartSession, VehicleClass};
use iparking_tests::{Live, TestApp, live_state, matrix};

fn start(point: &str, plate: &str) -> StartSession {
    StartSession {
        point_code: point.into(),
        plate: plate.into(),
        vehicle_class: Some(VehicleClass::Car),
        minutes: None,
        turns: Some(2),
        payment: None,
        card_id: None,
        lat: None,
        lon: None,
    }
}

async fn occupied(t: &TestApp, point: &str) -> i64 {
    let id = t.app.store.point(point).await.unwrap().unwrap().id;
    t.app.live.occupancy(&[id]).await.unwrap()[0]
}

matrix!(plate_index_follows_sessions, |t| {
    let d = t.funded_driver("0912111222", 1_000_000).await;
    assert_eq!(t.app.live.active_plate("30A12345").await.unwrap(), None);
    let s = d.start_session(&start("HK008", "30A-123.45"), "p-1").await.unwrap();
    let e = t.app.live.active_plate("30A12345").await.unwrap().expect("indexed at start");
    assert_eq!(
        (e.session_id, e.point_code.as_str(), e.paid_until_us),
        (s.id, "HK008", s.paid_until.timestamp_micros())
    );
    assert_eq!(occupied(&t, "HK008").await, 1);
    // Extension moves the paid time in the index.
    let x = d
        .extend_session(s.id, &ExtendSession { minutes: None, turns: Some(1), ..Default::default() }, "p-2")
        .await
        .unwrap();
    assert_eq!(
        t.app.live.active_plate("30A12345").await.unwrap().unwrap().paid_until_us,
        x.paid_until.timestamp_micros()
    );
    // A plate correction moves the entry to the right plate.
    d.correct_plate(s.id, "30A-123.46").await.unwrap();
    assert_eq!(t.app.live.active_plate("30A12345").await.unwrap(), None);
    assert_eq!(t.app.live.active_plate("30A12346").await.unwrap().unwrap().session_id, s.id);
    // Stop clears it and frees the space.
    d.stop_session(s.id, "p-3").await.unwrap();
    assert_eq!(t.app.live.active_plate("30A12346").await.unwrap(), None);
    assert_eq!(occupied(&t, "HK008").await, 0);
    // Expiry (by the job) clears it too.
    let s2 = d.start_session(&start("HK009", "51F-123.45"), "p-4").await.unwrap();
    assert!(t.app.live.active_plate("51F12345").await.unwrap().is_some());
    t.clock.advance(Duration::hours(2) + Duration::minutes(11));
    let mut gone = false;
    for _ in 0..40 {
        if t.app.live.active_plate("51F12345").await.unwrap().is_none() {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(gone, "expired session {} still indexed", s2.id);
    assert_eq!(occupied(&t, "HK009").await, 0);
    t.assert_ledger_sound().await;
});

matrix!(lost_live_state_is_rebuilt_from_the_database, |t| {
    let d = t.funded_driver("0912333444", 1_000_000).await;
    let a = d.start_session(&start("HK010", "29H1-234.56"), "r-1").await.unwrap();
    d.start_session(&start("HK010", "30E-1234"), "r-2").await.unwrap();
    let ended = d.start_session(&start("HK011", "30A-999.99"), "r-3").await.unwrap();
    d.stop_session(ended.id, "r-4").await.unwrap();
    // Lose everything in the live state (a Redis flush, a restart of the in-process state).
    t.app.live.reset_occupancy(&[]).await.unwrap();
    t.app.live.reset_active_plates(&[]).await.unwrap();
    assert_eq!(occupied(&t, "HK010").await, 0);
    iparking::live::rebuild_occupancy(t.app.store.as_ref(), t.app.live.as_ref()).await.unwrap();
    assert_eq!(occupied(&t, "HK010").await, 2);
    assert_eq!(occupied(&t, "HK011").await, 0);
    let e = t.app.live.active_plate("29H123456").await.unwrap().unwrap();
    assert_eq!((e.session_id, e.point_code.as_str()), (a.id, "HK010"));
    assert!(t.app.live.active_plate("30E1234").await.unwrap().is_some());
    assert_eq!(t.app.live.active_plate("30A99999").await.unwrap(), None, "stopped sessions are not rebuilt");
});

/// Conformance of the plate index on both live states.
async fn check_plate_index(live: &dyn LiveState) {
    let e = |id: i64| PlateEntry {
        session_id: id,
        point_id: 7,
        point_code: "HK007".into(),
        paid_until_us: 100,
        expires_at_us: 700,
    };
    assert_eq!(live.active_plate("30A12345").await.unwrap(), None);
    live.set_active_plate("30A12345", &e(1)).await.unwrap();
    assert_eq!(live.active_plate("30A12345").await.unwrap(), Some(e(1)));
    // Clearing an older session leaves a newer entry alone.
    live.set_active_plate("30A12345", &e(2)).await.unwrap();
    live.clear_active_plate("30A12345", 1).await.unwrap();
    assert_eq!(live.active_plate("30A12345").await.unwrap(), Some(e(2)));
    live.clear_active_plate("30A12345", 2).await.unwrap();
    assert_eq!(live.active_plate("30A12345").await.unwrap(), None);
    live.set_active_plate("51F12345", &e(3)).await.unwrap();
    live.reset_active_plates(&[("29H123456".into(), e(4))]).await.unwrap();
    assert_eq!(live.active_plate("51F12345").await.unwrap(), None, "reset replaces everything");
    assert_eq!(live.active_plate("29H123456").await.unwrap(), Some(e(4)));

    // A session opened: its point's counter up by one, its plate's entry, its roster line;
    // the plate's earlier session leaves the roster of its point.
    let at = |id: i64, point_id: i64| PlateEntry { point_id, point_code: format!("HK{point_id:03}"), ..e(id) };
    live.reset_occupancy(&[(7, 2)]).await.unwrap();
    live.session_opened("30A55555", &at(5, 7)).await.unwrap();
    assert_eq!(live.occupancy(&[7, 8]).await.unwrap(), [3, 0]);
    assert_eq!(live.active_plate("30A55555").await.unwrap(), Some(at(5, 7)));
    let seen = live.plate_lookup("30A55555", 7).await.unwrap();
    assert_eq!(seen.entry, Some(at(5, 7)));
    assert!(seen.roster.contains(&("30A55555".to_owned(), at(5, 7))), "{:?}", seen.roster);
    live.session_opened("30A55555", &at(6, 8)).await.unwrap();
    assert_eq!(live.occupancy(&[7, 8]).await.unwrap(), [3, 1]);
    assert!(!live.plate_lookup("30A55555", 7).await.unwrap().roster.iter().any(|(p, _)| p == "30A55555"));
    assert_eq!(live.plate_lookup("30A55555", 8).await.unwrap().roster, [("30A55555".to_owned(), at(6, 8))]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plate_index_conformance_memory() {
    check_plate_index(live_state(Live::Memory, None).await.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plate_index_conformance_redis() {
    check_plate_index(live_state(Live::Redis, None).await.as_ref()).await;
}
