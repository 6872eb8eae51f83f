//! Store conformance: one suite of checks of the [`Store`] contract, run against both
//! SQLite and PostgreSQL. Every check gets a fresh, migrated database; each runs as
//! `<check>_sqlite` and `<check>_postgres`.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Debug,
    future::Future,
    sync::Arc,
};

use chrono::{DateTime, Utc};
use iparking::{
    registry::{self, SeedReport},
    seed,
    store::{
        District, NewPoint, NewPointOnStreet, NewStaff, PointPatch, PointRecord, Principal, Store, StoreError,
        StoreResult, Street,
    },
};
use iparking_mobile_api::{
    PointStatus, StaffRole,
    VehicleClass::{self, Car, Large, Minibus, Motorbike},
};
use iparking_tests::{Db, TestDb};

/// Runs `check` on a fresh migrated store of `db`, keeping the database alive meanwhile.
async fn with_store<F, Fut>(db: Db, check: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let test_db = TestDb::create(db).await;
    let store = test_db.store().await;
    let expected = match db {
        Db::Sqlite => "sqlite",
        Db::Postgres => "postgres",
    };
    assert_eq!(store.backend(), expected);
    check(store).await;
    drop(test_db);
}

/// `conformance!(check_fn => name_sqlite, name_postgres;)` makes one test per database.
macro_rules! conformance {
    ($($check:ident => $sqlite:ident, $postgres:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            with_store(Db::Sqlite, $check).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $postgres() {
            with_store(Db::Postgres, $check).await;
        }
    )*};
}

conformance! {
    check_migrate_and_ping => migrate_and_ping_sqlite, migrate_and_ping_postgres;
    check_districts => districts_sqlite, districts_postgres;
    check_streets => streets_sqlite, streets_postgres;
    check_create_point => create_point_sqlite, create_point_postgres;
    check_insert_points_batch => insert_points_batch_sqlite, insert_points_batch_postgres;
    check_insert_points_all_or_nothing => insert_points_all_or_nothing_sqlite, insert_points_all_or_nothing_postgres;
    check_update_point => update_point_sqlite, update_point_postgres;
    check_set_point_status => set_point_status_sqlite, set_point_status_postgres;
    check_registry_version => registry_version_sqlite, registry_version_postgres;
    check_staff_tokens => staff_tokens_sqlite, staff_tokens_postgres;
    check_occupied_by_point => occupied_by_point_sqlite, occupied_by_point_postgres;
    check_seed_hanoi_pilot => seed_hanoi_pilot_sqlite, seed_hanoi_pilot_postgres;
    check_seed_synthetic => seed_synthetic_sqlite, seed_synthetic_postgres;
    check_job_leases => job_leases_sqlite, job_leases_postgres;
    check_settlement_import_resumes => settlement_import_resumes_sqlite, settlement_import_resumes_postgres;
    check_closed_period_refuses_postings => closed_period_refuses_postings_sqlite, closed_period_refuses_postings_postgres;
    check_keyed_movement_commits_its_answer => keyed_movement_commits_its_answer_sqlite, keyed_movement_commits_its_answer_postgres;
    check_keyed_adjustment_commits_its_answer => keyed_adjustment_commits_its_answer_sqlite, keyed_adjustment_commits_its_answer_postgres;
    check_keyed_refund_request_commits_its_answer => keyed_refund_request_commits_its_answer_sqlite, keyed_refund_request_commits_its_answer_postgres;
    check_keyed_intent_commits_its_answer => keyed_intent_commits_its_answer_sqlite, keyed_intent_commits_its_answer_postgres;
    check_keyed_setup_commits_its_answer => keyed_setup_commits_its_answer_sqlite, keyed_setup_commits_its_answer_postgres;
}

// ---- helpers -----------------------------------------------------------------------------

/// A fixed instant `minutes` after 2026-01-01T00:00:00.123456Z. Whole microseconds, the
/// precision PostgreSQL keeps, so that timestamps compare exactly on both databases.
fn at(minutes: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600 + minutes * 60, 123_456_000).expect("valid instant")
}

/// A decimal degree with 6 digits (survey precision), as the nearest `f64`.
fn deg(micro_degrees: i64) -> f64 {
    micro_degrees as f64 / 1e6
}

#[track_caller]
fn assert_conflict<T: Debug>(result: StoreResult<T>, constraint: &str) {
    match result {
        Err(StoreError::Conflict(name)) => assert_eq!(name, constraint, "constraint name"),
        other => panic!("expected Conflict({constraint}), got {other:?}"),
    }
}

async fn version(store: &Arc<dyn Store>) -> i64 {
    store.registry_version().await.expect("registry_version")
}

/// Asserts the registry version went up since `before`; returns the new one.
#[track_caller]
fn assert_bumped(before: i64, after: i64, what: &str) -> i64 {
    assert!(after > before, "registry_version did not increase on {what}: {before} -> {after}");
    after
}

async fn district(store: &Arc<dyn Store>, code: &str, name: &str) -> District {
    store.create_district(code, name, at(0)).await.expect("create district")
}

async fn street(store: &Arc<dyn Store>, district_id: i64, name: &str) -> Street {
    store.create_street(district_id, name, at(0)).await.expect("create street")
}

fn new_point(code: &str, street_id: i64) -> NewPoint {
    NewPoint {
        code: code.to_owned(),
        name: format!("Điểm {code}"),
        street_id,
        lat: deg(21_025_700),
        lon: deg(105_846_000),
        curb: Some(vec![[deg(105_845_850), deg(21_025_700)], [deg(105_846_150), deg(21_025_700)]]),
        capacity: 16,
        vehicle_classes: vec![Car, Minibus],
    }
}

/// The record `store` should return for `p` created on `street` in `district` at `now`.
fn expected_record(id: i64, p: &NewPoint, street: &Street, district: &District, now: DateTime<Utc>) -> PointRecord {
    PointRecord {
        id,
        code: p.code.clone(),
        name: p.name.clone(),
        street_id: street.id,
        street_name: street.name.clone(),
        district_id: district.id,
        district_code: district.code.clone(),
        district_name: district.name.clone(),
        lat: p.lat,
        lon: p.lon,
        curb: p.curb.clone(),
        capacity: p.capacity,
        vehicle_classes: p.vehicle_classes.clone(),
        status: PointStatus::Open,
        updated_at: now,
    }
}

async fn point_count(store: &Arc<dyn Store>) -> usize {
    let points = store.points().await.expect("points").len();
    let codes = store.point_codes().await.expect("point_codes").len();
    assert_eq!(points, codes, "points() and point_codes() disagree");
    points
}

async fn sorted_codes(store: &Arc<dyn Store>) -> Vec<String> {
    let mut codes = store.point_codes().await.expect("point_codes");
    codes.sort();
    codes
}

/// A batch row: deterministic fields derived from `i`.
fn batch_row(district_id: i64, street_name: &str, code: String, i: i64) -> NewPointOnStreet {
    let lat = deg(21_000_000 + i * 37);
    let lon = deg(105_800_000 + i * 53);
    let classes: &[VehicleClass] = match i % 4 {
        0 => &[Car],
        1 => &[Car, Minibus],
        2 => &[Car, Motorbike],
        _ => &[Car, Minibus, Large, Motorbike],
    };
    NewPointOnStreet {
        district_id,
        street_name: street_name.to_owned(),
        name: format!("Điểm lô {code}"),
        code,
        lat,
        lon,
        curb: (i % 2 == 0).then(|| vec![[lon, lat], [deg(105_800_000 + i * 53 + 150), lat]]),
        capacity: (i % 41) as i32,
        vehicle_classes: classes.to_vec(),
    }
}

/// Asserts that `rec` holds exactly the fields of batch row `row` written at `now`.
#[track_caller]
fn assert_matches_row(rec: &PointRecord, row: &NewPointOnStreet, district: &District, now: DateTime<Utc>) {
    let expected = PointRecord {
        id: rec.id,
        code: row.code.clone(),
        name: row.name.clone(),
        street_id: rec.street_id,
        street_name: row.street_name.clone(),
        district_id: district.id,
        district_code: district.code.clone(),
        district_name: district.name.clone(),
        lat: row.lat,
        lon: row.lon,
        curb: row.curb.clone(),
        capacity: row.capacity,
        vehicle_classes: row.vehicle_classes.clone(),
        status: PointStatus::Open,
        updated_at: now,
    };
    assert_eq!(rec, &expected, "point {}", row.code);
}

// ---- checks ------------------------------------------------------------------------------

async fn check_migrate_and_ping(store: Arc<dyn Store>) {
    store.ping().await.expect("ping");
    assert_eq!(version(&store).await, 0, "a fresh registry starts at version 0");
    // The harness migrated once already: running again (and concurrently) is a no-op.
    store.migrate().await.expect("second migrate");
    let (a, b) = tokio::join!(store.migrate(), store.migrate());
    a.expect("concurrent migrate a");
    b.expect("concurrent migrate b");
    assert_eq!(version(&store).await, 0, "migrate must not touch the version");
    assert!(store.districts().await.expect("districts").is_empty());

    // Data survives a re-run of the migrations, and the version row is not reset.
    let hk = district(&store, "HK", "Hoàn Kiếm").await;
    store.migrate().await.expect("migrate with data");
    assert_eq!(store.districts().await.expect("districts"), vec![hk]);
    assert_eq!(version(&store).await, 1);
    store.ping().await.expect("ping after migrate");
}

async fn check_districts(store: Arc<dyn Store>) {
    assert!(store.districts().await.expect("districts").is_empty());
    let mut created = Vec::new();
    for (code, name) in [("HK", "Hoàn Kiếm"), ("BD", "Ba Đình"), ("HBT", "Hai Bà Trưng"), ("DD", "Đống Đa")]
    {
        let d = store.create_district(code, name, at(1)).await.expect("create district");
        assert_eq!((d.code.as_str(), d.name.as_str()), (code, name));
        created.push(d);
    }
    let ids: BTreeSet<i64> = created.iter().map(|d| d.id).collect();
    assert_eq!(ids.len(), created.len(), "district ids must be distinct");

    let mut by_code = created.clone();
    by_code.sort_by(|a, b| a.code.cmp(&b.code));
    let listed = store.districts().await.expect("districts");
    assert_eq!(listed, by_code);
    assert_eq!(listed.iter().map(|d| d.code.as_str()).collect::<Vec<_>>(), ["BD", "DD", "HBT", "HK"]);

    // Same code, even with another name: a conflict named like PostgreSQL's constraint.
    assert_conflict(store.create_district("HK", "Hoàn Kiếm 2", at(2)).await, "districts_code_key");
    assert_eq!(store.districts().await.expect("districts"), by_code, "a failed create changed the districts");
}

async fn check_streets(store: Arc<dyn Store>) {
    let hk = district(&store, "HK", "Hoàn Kiếm").await;
    let bd = district(&store, "BD", "Ba Đình").await;
    assert!(store.streets(None).await.expect("streets").is_empty());

    let thd = street(&store, hk.id, "Trần Hưng Đạo").await;
    assert_eq!(thd.name, "Trần Hưng Đạo");
    assert_eq!((thd.district_id, thd.district_code.as_str()), (hk.id, "HK"));
    let ltk = street(&store, hk.id, "Lý Thường Kiệt").await;
    // The same name in another district is another street.
    let thd_bd = street(&store, bd.id, "Trần Hưng Đạo").await;
    assert_eq!((thd_bd.district_id, thd_bd.district_code.as_str()), (bd.id, "BD"));
    assert_ne!(thd_bd.id, thd.id);

    assert_conflict(store.create_street(hk.id, "Trần Hưng Đạo", at(1)).await, "streets_district_name_key");
    // A street of an unknown district is refused, and is no conflict.
    let orphan = store.create_street(hk.id.max(bd.id) + 1000, "Phố ma", at(1)).await;
    assert!(orphan.is_err() && !matches!(orphan, Err(StoreError::Conflict(_))), "orphan street: {orphan:?}");

    // By district, then by name.
    assert_eq!(store.streets(Some(hk.id)).await.expect("streets HK"), vec![ltk.clone(), thd.clone()]);
    assert_eq!(store.streets(Some(bd.id)).await.expect("streets BD"), vec![thd_bd.clone()]);
    assert_eq!(store.streets(None).await.expect("all streets"), vec![thd_bd.clone(), ltk.clone(), thd.clone()]);
    assert!(store.streets(Some(hk.id.max(bd.id) + 1000)).await.expect("streets of unknown district").is_empty());

    assert_eq!(store.street(thd.id).await.expect("street"), Some(thd.clone()));
    assert_eq!(store.street(thd_bd.id).await.expect("street"), Some(thd_bd.clone()));
    let unknown = thd.id.max(ltk.id).max(thd_bd.id) + 1000;
    assert_eq!(store.street(unknown).await.expect("unknown street"), None);
}

async fn check_create_point(store: Arc<dyn Store>) {
    let hk = district(&store, "HK", "Hoàn Kiếm").await;
    let bd = district(&store, "BD", "Ba Đình").await;
    let ltk = street(&store, hk.id, "Lý Thường Kiệt").await;
    let pdp = street(&store, bd.id, "Phan Đình Phùng").await;
    assert_eq!(store.point("HK001").await.expect("point"), None);

    // Curb present, every class in tariff order.
    let a = NewPoint {
        code: "HK001".into(),
        name: "Lý Thường Kiệt – gần Lê Duẩn".into(),
        street_id: ltk.id,
        lat: deg(21_025_700),
        lon: deg(105_846_000),
        curb: Some(vec![
            [deg(105_845_850), deg(21_025_700)],
            [deg(105_846_150), deg(21_025_700)],
            [deg(105_846_301), deg(21_025_749)],
        ]),
        capacity: 16,
        vehicle_classes: VehicleClass::ALL.to_vec(),
    };
    let rec_a = store.create_point(&a, at(1)).await.expect("create point a");
    assert_eq!(rec_a, expected_record(rec_a.id, &a, &ltk, &hk, at(1)));
    assert_eq!(store.point("HK001").await.expect("point a"), Some(rec_a.clone()));

    // No curb, zero capacity, one class, coordinates at the edge of the valid range.
    let b = NewPoint {
        code: "BD001".into(),
        name: "Phan Đình Phùng – gần Hoàng Diệu".into(),
        street_id: pdp.id,
        lat: -90.0,
        lon: 180.0,
        curb: None,
        capacity: 0,
        vehicle_classes: vec![Motorbike],
    };
    let rec_b = store.create_point(&b, at(2)).await.expect("create point b");
    assert_eq!(rec_b, expected_record(rec_b.id, &b, &pdp, &bd, at(2)));
    assert_eq!(store.point("BD001").await.expect("point b"), Some(rec_b.clone()));

    // Two classes, not all: the order given is the order read back.
    let c = NewPoint { code: "HK002".into(), vehicle_classes: vec![Car, Motorbike], ..new_point("HK002", ltk.id) };
    let rec_c = store.create_point(&c, at(3)).await.expect("create point c");
    assert_eq!(rec_c, expected_record(rec_c.id, &c, &ltk, &hk, at(3)));
    assert_ne!(rec_a.id, rec_b.id);
    assert_ne!(rec_b.id, rec_c.id);

    // Duplicate code, even on another street: refused, nothing changed.
    let dup = NewPoint { name: "Bản sao".into(), ..new_point("HK001", pdp.id) };
    assert_conflict(store.create_point(&dup, at(4)).await, "points_code_key");
    assert_eq!(store.point("HK001").await.expect("point a"), Some(rec_a.clone()));

    assert_eq!(store.points().await.expect("points"), vec![rec_a, rec_b, rec_c], "points() by id");
    assert_eq!(sorted_codes(&store).await, ["BD001", "HK001", "HK002"]);
    assert_eq!(store.point("HK999").await.expect("unknown point"), None);
    assert_eq!(store.point("").await.expect("empty code"), None);
}

async fn check_insert_points_batch(store: Arc<dyn Store>) {
    let hk = district(&store, "HK", "Hoàn Kiếm").await;
    let bd = district(&store, "BD", "Ba Đình").await;
    // One street exists already: the batch must reuse it, not create it again.
    let existing = street(&store, hk.id, "Phố có sẵn").await;
    let hk_streets = ["Phố có sẵn", "Lý Thường Kiệt", "Trần Hưng Đạo", "Hàng Bài"];
    let bd_streets = ["Phan Đình Phùng", "Điện Biên Phủ", "Hoàng Diệu"];

    const N: i64 = 1_234; // three chunks of at most 500 rows
    let rows: Vec<NewPointOnStreet> = (0..N)
        .map(|i| {
            if i % 3 == 0 {
                batch_row(bd.id, bd_streets[(i / 3) as usize % bd_streets.len()], format!("BD{i:05}"), i)
            } else {
                batch_row(hk.id, hk_streets[i as usize % hk_streets.len()], format!("HK{i:05}"), i)
            }
        })
        .collect();
    let v0 = version(&store).await;
    let inserted = store.insert_points(&rows, at(5)).await.expect("insert_points");
    assert_eq!(inserted, N as u64);
    assert_bumped(v0, version(&store).await, "insert_points");
    assert_eq!(point_count(&store).await, N as usize);

    // Exactly the new streets were created, each once, in the right district.
    let streets = store.streets(None).await.expect("streets");
    let got: BTreeSet<(String, String)> = streets.iter().map(|s| (s.district_code.clone(), s.name.clone())).collect();
    let want: BTreeSet<(String, String)> = hk_streets
        .iter()
        .map(|s| ("HK".to_owned(), (*s).to_owned()))
        .chain(bd_streets.iter().map(|s| ("BD".to_owned(), (*s).to_owned())))
        .collect();
    assert_eq!(streets.len(), want.len(), "a street was created twice: {streets:?}");
    assert_eq!(got, want);
    let street_ids: BTreeMap<(i64, String), i64> =
        streets.iter().map(|s| ((s.district_id, s.name.clone()), s.id)).collect();
    assert_eq!(street_ids[&(hk.id, "Phố có sẵn".to_owned())], existing.id, "the existing street was not reused");

    // Every field of every row, in every chunk.
    let records: BTreeMap<String, PointRecord> =
        store.points().await.expect("points").into_iter().map(|p| (p.code.clone(), p)).collect();
    assert_eq!(records.len(), N as usize);
    for row in &rows {
        let rec = records.get(&row.code).unwrap_or_else(|| panic!("point {} missing", row.code));
        let d = if row.district_id == hk.id { &hk } else { &bd };
        assert_matches_row(rec, row, d, at(5));
        assert_eq!(rec.street_id, street_ids[&(row.district_id, row.street_name.clone())], "street of {}", row.code);
    }
    // point(code) agrees with points() on both sides of the chunk boundaries.
    for i in [0, 1, 499, 500, 501, 999, 1000, N - 1] {
        let row = &rows[i as usize];
        assert_eq!(store.point(&row.code).await.expect("point").as_ref(), records.get(&row.code));
    }

    // A second batch onto the same street names adds points but no street.
    let more: Vec<NewPointOnStreet> =
        (0..10).map(|i| batch_row(hk.id, hk_streets[i as usize % 4], format!("HK9{i:04}"), N + i)).collect();
    assert_eq!(store.insert_points(&more, at(6)).await.expect("second batch"), 10);
    assert_eq!(store.streets(None).await.expect("streets").len(), want.len());
    assert_eq!(point_count(&store).await, N as usize + 10);
}

async fn check_insert_points_all_or_nothing(store: Arc<dyn Store>) {
    let hk = district(&store, "HK", "Hoàn Kiếm").await;
    let bd = district(&store, "BD", "Ba Đình").await;
    let first: Vec<NewPointOnStreet> =
        (0..20).map(|i| batch_row(hk.id, "Lý Thường Kiệt", format!("HK{i:05}"), i)).collect();
    assert_eq!(store.insert_points(&first, at(1)).await.expect("first batch"), 20);
    let points_before = store.points().await.expect("points");
    let streets_before = store.streets(None).await.expect("streets");
    let v0 = version(&store).await;

    // 700 new rows on new streets, and one code that exists already in the second chunk
    // (the first chunk of 500 is written before the failure and must be rolled back).
    let mut batch: Vec<NewPointOnStreet> = (0..700)
        .map(|i| {
            let street = if i % 2 == 0 { "Phố mới tinh" } else { "Đường chưa có" };
            batch_row(bd.id, street, format!("BD{i:05}"), 100 + i)
        })
        .collect();
    batch.insert(650, batch_row(hk.id, "Phố mới của HK", "HK00007".into(), 7));
    assert_conflict(store.insert_points(&batch, at(2)).await, "points_code_key");
    assert_eq!(store.points().await.expect("points"), points_before, "a failed batch changed the points");
    assert_eq!(store.streets(None).await.expect("streets"), streets_before, "a failed batch left new streets");
    assert_eq!(version(&store).await, v0, "a failed batch bumped the version");
    assert_eq!(store.point("BD00000").await.expect("point"), None);
    assert_eq!(store.point("BD00699").await.expect("point"), None);

    // A code repeated inside one batch: refused as well, nothing written.
    let twice = vec![
        batch_row(bd.id, "Phố mới tinh", "BD10000".into(), 1),
        batch_row(bd.id, "Phố mới tinh", "BD10001".into(), 2),
        batch_row(bd.id, "Phố mới tinh", "BD10000".into(), 3),
    ];
    assert_conflict(store.insert_points(&twice, at(3)).await, "points_code_key");
    assert_eq!(store.points().await.expect("points"), points_before);
    assert_eq!(store.streets(None).await.expect("streets"), streets_before);
    assert_eq!(version(&store).await, v0);

    // The same batch without the duplicate goes through whole.
    batch.remove(650);
    assert_eq!(store.insert_points(&batch, at(4)).await.expect("batch without the duplicate"), 700);
    assert_eq!(point_count(&store).await, 720);
    assert_eq!(store.streets(Some(bd.id)).await.expect("streets").len(), 2);
}

async fn check_update_point(store: Arc<dyn Store>) {
    let hk = district(&store, "HK", "Hoàn Kiếm").await;
    let ltk = street(&store, hk.id, "Lý Thường Kiệt").await;
    let a = store.create_point(&new_point("HK001", ltk.id), at(0)).await.expect("create a");
    let b = store.create_point(&new_point("HK002", ltk.id), at(0)).await.expect("create b");
    let mut v = version(&store).await;
    let mut expected = a.clone();

    async fn apply(
        store: &Arc<dyn Store>,
        patch: PointPatch,
        now: DateTime<Utc>,
        expected: &PointRecord,
    ) -> PointRecord {
        let rec = store.update_point("HK001", &patch, now).await.expect("update_point").expect("point exists");
        assert_eq!(&rec, expected, "after {patch:?}");
        assert_eq!(store.point("HK001").await.expect("point").as_ref(), Some(&rec), "point() after {patch:?}");
        rec
    }

    // Name only.
    expected.name = "Tên mới".into();
    expected.updated_at = at(1);
    let rec =
        apply(&store, PointPatch { name: Some("Tên mới".into()), ..PointPatch::default() }, at(1), &expected).await;
    assert!(rec.updated_at > a.updated_at, "updated_at did not advance");
    v = assert_bumped(v, version(&store).await, "update_point(name)");

    // Position only: the curb stays.
    expected.lat = deg(21_030_001);
    expected.lon = deg(105_850_002);
    expected.updated_at = at(2);
    let patch = PointPatch { position: Some((deg(21_030_001), deg(105_850_002))), ..PointPatch::default() };
    apply(&store, patch, at(2), &expected).await;
    v = assert_bumped(v, version(&store).await, "update_point(position)");

    // A new curb.
    let curb = vec![[deg(105_849_900), deg(21_030_001)], [deg(105_850_100), deg(21_030_001)]];
    expected.curb = Some(curb.clone());
    expected.updated_at = at(3);
    apply(&store, PointPatch { curb: Some(Some(curb)), ..PointPatch::default() }, at(3), &expected).await;
    v = assert_bumped(v, version(&store).await, "update_point(curb)");

    // Capacity and classes together.
    expected.capacity = 3;
    expected.vehicle_classes = vec![Car, Large, Motorbike];
    expected.updated_at = at(4);
    let patch =
        PointPatch { capacity: Some(3), vehicle_classes: Some(vec![Car, Large, Motorbike]), ..PointPatch::default() };
    apply(&store, patch, at(4), &expected).await;
    v = assert_bumped(v, version(&store).await, "update_point(capacity, classes)");

    // `Some(None)` removes the curb.
    expected.curb = None;
    expected.updated_at = at(5);
    apply(&store, PointPatch { curb: Some(None), ..PointPatch::default() }, at(5), &expected).await;
    v = assert_bumped(v, version(&store).await, "update_point(remove curb)");

    // An empty patch changes nothing but updated_at (the removed curb stays removed).
    expected.updated_at = at(6);
    apply(&store, PointPatch::default(), at(6), &expected).await;
    v = assert_bumped(v, version(&store).await, "update_point(empty)");

    // A closed point stays closed through an update.
    let closed = store.set_point_status("HK001", PointStatus::Closed, at(7)).await.expect("close").expect("exists");
    assert_eq!(closed.status, PointStatus::Closed);
    v = assert_bumped(v, version(&store).await, "set_point_status");
    expected.status = PointStatus::Closed;
    expected.capacity = 4;
    expected.updated_at = at(8);
    apply(&store, PointPatch { capacity: Some(4), ..PointPatch::default() }, at(8), &expected).await;
    v = assert_bumped(v, version(&store).await, "update_point(closed point)");

    // Unknown code: None, and no version bump.
    let patch = PointPatch { name: Some("x".into()), ..PointPatch::default() };
    assert_eq!(store.update_point("HK999", &patch, at(9)).await.expect("update unknown"), None);
    assert_eq!(store.point("HK999").await.expect("point"), None);
    assert_eq!(version(&store).await, v, "updating an unknown point bumped the version");

    // The other point was never touched.
    assert_eq!(store.point("HK002").await.expect("point b"), Some(b));
}

async fn check_set_point_status(store: Arc<dyn Store>) {
    let hk = district(&store, "HK", "Hoàn Kiếm").await;
    let ltk = street(&store, hk.id, "Lý Thường Kiệt").await;
    let a = store.create_point(&new_point("HK001", ltk.id), at(0)).await.expect("create a");
    let b = store.create_point(&new_point("HK002", ltk.id), at(0)).await.expect("create b");
    assert_eq!(a.status, PointStatus::Open);
    let mut v = version(&store).await;

    let closed = store.set_point_status("HK001", PointStatus::Closed, at(1)).await.expect("close").expect("exists");
    assert_eq!(closed, PointRecord { status: PointStatus::Closed, updated_at: at(1), ..a.clone() });
    assert_eq!(store.point("HK001").await.expect("point"), Some(closed.clone()));
    v = assert_bumped(v, version(&store).await, "close");

    // Closing again is harmless.
    let again = store.set_point_status("HK001", PointStatus::Closed, at(2)).await.expect("close").expect("exists");
    assert_eq!(again, PointRecord { updated_at: at(2), ..closed.clone() });

    let open = store.set_point_status("HK001", PointStatus::Open, at(3)).await.expect("open").expect("exists");
    assert_eq!(open, PointRecord { updated_at: at(3), ..a.clone() });
    assert_eq!(store.point("HK001").await.expect("point"), Some(open));
    v = assert_bumped(v, version(&store).await, "reopen");

    assert_eq!(store.set_point_status("HK999", PointStatus::Closed, at(4)).await.expect("unknown"), None);
    assert_eq!(version(&store).await, v, "closing an unknown point bumped the version");
    assert_eq!(store.point("HK002").await.expect("point b"), Some(b), "the other point changed");
}

async fn check_registry_version(store: Arc<dyn Store>) {
    let mut v = version(&store).await;
    assert_eq!(v, 0);

    let hk = district(&store, "HK", "Hoàn Kiếm").await;
    v = assert_bumped(v, version(&store).await, "create_district");
    let ltk = street(&store, hk.id, "Lý Thường Kiệt").await;
    v = assert_bumped(v, version(&store).await, "create_street");
    store.create_point(&new_point("HK001", ltk.id), at(1)).await.expect("create point");
    v = assert_bumped(v, version(&store).await, "create_point");
    let batch: Vec<NewPointOnStreet> = (0..3).map(|i| batch_row(hk.id, "Hàng Bài", format!("HK1{i:04}"), i)).collect();
    store.insert_points(&batch, at(2)).await.expect("insert_points");
    v = assert_bumped(v, version(&store).await, "insert_points");
    let patch = PointPatch { capacity: Some(9), ..PointPatch::default() };
    store.update_point("HK001", &patch, at(3)).await.expect("update").expect("exists");
    v = assert_bumped(v, version(&store).await, "update_point");
    store.set_point_status("HK001", PointStatus::Closed, at(4)).await.expect("close").expect("exists");
    v = assert_bumped(v, version(&store).await, "set_point_status");

    // Reads do not move it.
    store.districts().await.expect("districts");
    store.streets(None).await.expect("streets");
    store.streets(Some(hk.id)).await.expect("streets");
    store.street(ltk.id).await.expect("street");
    store.point("HK001").await.expect("point");
    store.points().await.expect("points");
    store.point_codes().await.expect("codes");
    store.occupied_by_point().await.expect("occupied");
    store.principal_by_token("no such token").await.expect("principal");
    store.ping().await.expect("ping");
    assert_eq!(version(&store).await, v, "a read changed the registry version");

    // Nor do staff writes: they are not part of the registry.
    let staff = NewStaff {
        name: "Cán bộ".into(),
        role: StaffRole::Warden,
        district_ids: vec![hk.id],
        street_ids: vec![],
        username: None,
        password_hash: None,
    };
    let (_, token_id) = store.create_staff(&staff, &"ab".repeat(32), at(5)).await.expect("create_staff");
    assert!(store.revoke_token(token_id, at(6)).await.expect("revoke"));
    assert_eq!(version(&store).await, v, "a staff write changed the registry version");

    // Nor do failed writes.
    assert_conflict(store.create_district("HK", "x", at(7)).await, "districts_code_key");
    assert_conflict(store.create_street(hk.id, "Lý Thường Kiệt", at(7)).await, "streets_district_name_key");
    assert_conflict(store.create_point(&new_point("HK001", ltk.id), at(7)).await, "points_code_key");
    assert_eq!(version(&store).await, v, "a failed write changed the registry version");

    // Strictly increasing over many writes, never repeating.
    let mut seen = BTreeSet::from([v]);
    for i in 0..5 {
        store.set_point_status("HK001", PointStatus::Open, at(10 + i)).await.expect("open").expect("exists");
        let next = version(&store).await;
        v = assert_bumped(v, next, "repeated set_point_status");
        assert!(seen.insert(next));
    }
}

async fn check_staff_tokens(store: Arc<dyn Store>) {
    let hk = district(&store, "HK", "Hoàn Kiếm").await;
    let bd = district(&store, "BD", "Ba Đình").await;
    district(&store, "DD", "Đống Đa").await;
    let hash_w = "1f".repeat(32);
    let hash_a = "a0".repeat(32);

    // A warden scoped to two districts (given out of code order).
    let warden = NewStaff {
        name: "Nguyễn Văn Giám".into(),
        role: StaffRole::Warden,
        district_ids: vec![hk.id, bd.id],
        street_ids: vec![],
        username: None,
        password_hash: None,
    };
    let (warden_id, warden_token) = store.create_staff(&warden, &hash_w, at(1)).await.expect("create warden");
    let principal = store.principal_by_token(&hash_w).await.expect("principal").expect("warden token is valid");
    assert_eq!(
        principal,
        Principal {
            staff_id: warden_id,
            name: "Nguyễn Văn Giám".into(),
            role: StaffRole::Warden,
            district_codes: vec!["BD".into(), "HK".into()],
            street_ids: vec![],
            token_id: warden_token,
        }
    );
    assert!(principal.covers_district("HK") && principal.covers_district("BD") && !principal.covers_district("DD"));

    // A city-wide admin.
    let admin = NewStaff {
        name: "Quản trị".into(),
        role: StaffRole::Admin,
        district_ids: vec![],
        street_ids: vec![],
        username: None,
        password_hash: None,
    };
    let (admin_id, admin_token) = store.create_staff(&admin, &hash_a, at(2)).await.expect("create admin");
    assert_ne!(admin_id, warden_id);
    assert_ne!(admin_token, warden_token);
    assert_eq!(
        store.principal_by_token(&hash_a).await.expect("principal"),
        Some(Principal {
            staff_id: admin_id,
            name: "Quản trị".into(),
            role: StaffRole::Admin,
            district_codes: vec![],
            street_ids: vec![],
            token_id: admin_token,
        })
    );

    // Unknown hashes (including a prefix of a real one) resolve to nobody.
    assert_eq!(store.principal_by_token(&"00".repeat(32)).await.expect("unknown"), None);
    assert_eq!(store.principal_by_token(&hash_w[..32]).await.expect("prefix"), None);
    assert_eq!(store.principal_by_token("").await.expect("empty"), None);

    // A token hash is unique, with the same constraint name on both databases.
    let other = NewStaff {
        name: "Kẻ trùng".into(),
        role: StaffRole::Inspector,
        district_ids: vec![],
        street_ids: vec![],
        username: None,
        password_hash: None,
    };
    assert_conflict(store.create_staff(&other, &hash_w, at(3)).await, "staff_tokens_hash_key");

    // Revoking: once true, then the token is dead, then false.
    assert!(store.revoke_token(warden_token, at(4)).await.expect("revoke"));
    assert_eq!(store.principal_by_token(&hash_w).await.expect("revoked"), None);
    assert!(!store.revoke_token(warden_token, at(5)).await.expect("revoke again"));
    assert!(!store.revoke_token(admin_token.max(warden_token) + 1000, at(5)).await.expect("revoke unknown"));
    // The other token lives on.
    assert_eq!(store.principal_by_token(&hash_a).await.expect("admin").map(|p| p.token_id), Some(admin_token));
}

async fn check_occupied_by_point(store: Arc<dyn Store>) {
    store.occupied_by_point().await.expect("occupied_by_point on an empty registry");
    registry::load_seed(store.as_ref(), seed::hanoi_pilot(), at(0)).await.expect("seed");
    store.occupied_by_point().await.expect("occupied_by_point with points");
}

async fn check_seed_hanoi_pilot(store: Arc<dyn Store>) {
    let report = registry::load_seed(store.as_ref(), seed::hanoi_pilot(), at(1)).await.expect("first seed");
    assert_eq!(
        report,
        SeedReport { districts_created: 4, points_created: 27, points_present: 0, tariffs_published: 7 }
    );
    let codes: Vec<String> = store.districts().await.expect("districts").into_iter().map(|d| d.code).collect();
    assert_eq!(codes, ["BD", "DD", "HBT", "HK"]);

    let points = store.points().await.expect("points");
    assert_eq!(points.len(), 27);
    let hk: Vec<&PointRecord> = points.iter().filter(|p| p.district_code == "HK").collect();
    assert_eq!(hk.len(), 17, "Hoàn Kiếm pilot points");
    assert_eq!(hk.iter().map(|p| i64::from(p.capacity)).sum::<i64>(), 248, "Hoàn Kiếm pilot spaces");
    let hk_streets: BTreeSet<&str> = hk.iter().map(|p| p.street_name.as_str()).collect();
    assert_eq!(hk_streets, BTreeSet::from(["Lý Thường Kiệt", "Trần Hưng Đạo"]));
    for (code, n) in [("BD", 4), ("HBT", 3), ("DD", 3)] {
        assert_eq!(points.iter().filter(|p| p.district_code == code).count(), n, "points of {code}");
    }
    assert!(points.iter().all(|p| p.status == PointStatus::Open && p.updated_at == at(1)));
    assert!(points.iter().all(|p| p.code.starts_with(p.district_code.as_str())), "code prefix = district");

    // Every field as the seed gives it.
    let by_code: BTreeMap<&str, &PointRecord> = points.iter().map(|p| (p.code.as_str(), p)).collect();
    for d in seed::hanoi_pilot().points {
        let p = by_code.get(d.code.as_str()).unwrap_or_else(|| panic!("seed point {} missing", d.code));
        assert_eq!(
            (&p.name, &p.district_code, &p.street_name, p.lat, p.lon, &p.curb, p.capacity, &p.vehicle_classes),
            (&d.name, &d.district, &d.street, d.lat, d.lon, &d.curb, d.capacity, &d.vehicle_classes),
            "seed point {}",
            d.code
        );
    }

    // A second run creates nothing and changes nothing.
    let v = version(&store).await;
    let again = registry::load_seed(store.as_ref(), seed::hanoi_pilot(), at(2)).await.expect("second seed");
    assert_eq!(again, SeedReport { districts_created: 0, points_created: 0, points_present: 27, tariffs_published: 0 });
    assert_eq!(store.points().await.expect("points"), points, "a second seed changed the points");
    assert_eq!(point_count(&store).await, 27);
    assert_eq!(version(&store).await, v, "a no-op seed bumped the registry version");
}

async fn check_seed_synthetic(store: Arc<dyn Store>) {
    const N: usize = 1_100;
    let report = registry::load_seed(store.as_ref(), seed::synthetic(N, 42), at(1)).await.expect("synthetic seed");
    assert_eq!(
        report,
        SeedReport {
            districts_created: seed::SYNTHETIC_DISTRICTS,
            points_created: N as u64,
            points_present: 0,
            tariffs_published: 4,
        }
    );
    let points = store.points().await.expect("points");
    assert_eq!(points.len(), N);
    let by_code: BTreeMap<&str, &PointRecord> = points.iter().map(|p| (p.code.as_str(), p)).collect();
    for d in seed::synthetic(N, 42).points {
        let p = by_code.get(d.code.as_str()).unwrap_or_else(|| panic!("synthetic point {} missing", d.code));
        assert_eq!(
            (&p.name, &p.district_code, &p.street_name, p.lat, p.lon, &p.curb, p.capacity, &p.vehicle_classes),
            (&d.name, &d.district, &d.street, d.lat, d.lon, &d.curb, d.capacity, &d.vehicle_classes),
            "synthetic point {}",
            d.code
        );
    }
    let again = registry::load_seed(store.as_ref(), seed::synthetic(N, 42), at(2)).await.expect("second seed");
    assert_eq!(again, SeedReport { districts_created: 0, points_created: 0, points_present: N, tariffs_published: 0 });
    assert_eq!(point_count(&store).await, N);
}

async fn check_job_leases(store: Arc<dyn Store>) {
    let ttl = chrono::Duration::minutes(3);
    assert!(store.try_lease("sweeper", "node-a", at(0) + ttl, at(0)).await.unwrap(), "a free lease is taken");
    assert!(!store.try_lease("sweeper", "node-b", at(1) + ttl, at(1)).await.unwrap(), "held by another node");
    assert!(store.try_lease("import", "node-b", at(1) + ttl, at(1)).await.unwrap(), "leases are per job");
    assert!(store.try_lease("sweeper", "node-a", at(2) + ttl, at(2)).await.unwrap(), "the holder renews it");
    // node-a's renewal runs until minute 5: node-b still cannot take it at minute 4...
    assert!(!store.try_lease("sweeper", "node-b", at(4) + ttl, at(4)).await.unwrap());
    // ...but can once it lapsed, and then node-a cannot.
    assert!(store.try_lease("sweeper", "node-b", at(6) + ttl, at(6)).await.unwrap(), "a lapsed lease is taken over");
    assert!(!store.try_lease("sweeper", "node-a", at(7) + ttl, at(7)).await.unwrap());
}

fn txn(id: &str, created: i64) -> iparking::payments::BalanceTxn {
    iparking::payments::BalanceTxn {
        id: id.into(),
        type_: "charge".into(),
        reporting_category: "charge".into(),
        amount: 50_000,
        fee: 1_500,
        net: 48_500,
        currency: "vnd".into(),
        status: "pending".into(),
        source: Some(format!("ch_{id}")),
        created,
        available_on: created + 172_800,
    }
}

async fn check_settlement_import_resumes(store: Arc<dyn Store>) {
    use iparking::store::cards::{ImportState, SettlementPage};
    let kind = "balance_transactions";
    assert_eq!(store.import_state(kind).await.unwrap(), ImportState::default());
    // A run from 0 stores its first page (newest first) and is interrupted.
    let page1 = vec![txn("t5", 1_000_500), txn("t4", 1_000_400)];
    assert_eq!(store.import_page(kind, 0, &SettlementPage::Balance(page1), false, at(0)).await.unwrap(), 2);
    let state = store.import_state(kind).await.unwrap();
    assert_eq!(state.high_water, 0, "not advanced before the run ends");
    assert_eq!(state.run, Some((0, Some("t4".into()), 1_000_500)), "resumes after the last id stored");
    // The resumed run stores the rest and ends: the next run starts at the newest seen.
    let page2 = vec![txn("t3", 1_000_300), txn("t2", 1_000_200)];
    assert_eq!(store.import_page(kind, 0, &SettlementPage::Balance(page2), true, at(1)).await.unwrap(), 2);
    let state = store.import_state(kind).await.unwrap();
    assert_eq!(state, ImportState { high_water: 1_000_500, run: None });
    // Listing an object again (the lookback) updates it instead of duplicating it.
    let mut again = txn("t5", 1_000_500);
    again.status = "available".into();
    store
        .import_page(kind, 1_000_000, &SettlementPage::Balance(vec![again, txn("t6", 1_000_600)]), true, at(2))
        .await
        .unwrap();
    assert_eq!(store.import_state(kind).await.unwrap().high_water, 1_000_600);
    // Payouts keep their own progress.
    assert_eq!(store.import_state("payouts").await.unwrap(), ImportState::default());
    let payout = iparking::payments::Payout {
        id: "po_1".into(),
        amount: 90_000,
        currency: "vnd".into(),
        status: "in_transit".into(),
        arrival_date: 1_000_900,
        balance_transaction: Some("t7".into()),
        created: 1_000_700,
    };
    store.import_page("payouts", 0, &SettlementPage::Payouts(vec![payout]), true, at(3)).await.unwrap();
    assert_eq!(store.import_state("payouts").await.unwrap().high_water, 1_000_700);
    assert_eq!(store.import_state(kind).await.unwrap().high_water, 1_000_600);
}

/// A closed month refuses every ledger write dated inside it, whatever the code path: the
/// database's triggers, not the API, enforce it.
async fn check_closed_period_refuses_postings(store: Arc<dyn Store>) {
    use iparking::{
        domain::{finance::parse_month, ledger::Entry, money::Vnd},
        store::finance::NewClose,
    };
    let local = |s: &str| DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc);
    let finance = NewStaff {
        name: "Kế toán".into(),
        role: StaffRole::Finance,
        district_ids: vec![],
        street_ids: vec![],
        username: None,
        password_hash: None,
    };
    let (staff_id, _) =
        store.create_staff(&finance, &"cd".repeat(32), local("2026-11-01T08:00:00+07:00")).await.expect("staff");
    let driver = store.upsert_driver("+84912345678", local("2026-11-02T08:00:00+07:00")).await.expect("driver");
    let topup = |n| Entry::sandbox_topup(driver, Vnd(n)).expect("entry");
    // Last second of November, local time: still November.
    let late_nov = local("2026-11-30T23:59:59+07:00");
    store
        .sandbox_topup(driver, &topup(10_000), None, &iparking::store::drivers::no_wallet_answer, late_nov)
        .await
        .expect("an open month takes postings");
    let nov = parse_month("2026-11").expect("month");
    let close = NewClose {
        month: "2026-11".into(),
        starts_at: nov.start(),
        ends_at: nov.end(),
        staff_id,
        overridden: false,
        override_reason: None,
        open_discrepancy_ids: vec![],
    };
    let closed = store
        .close_period(&close, None, &iparking::store::drivers::no_answer, local("2026-12-01T09:00:00+07:00"))
        .await
        .expect("close");
    assert_eq!(closed.closed_by, "Kế toán");
    assert!(matches!(
        store.close_period(&close, None, &iparking::store::drivers::no_answer, local("2026-12-01T09:01:00+07:00")).await,
        Err(StoreError::Conflict(c)) if c == "period_closed"
    ));
    for at in ["2026-11-01T00:00:00+07:00", "2026-11-30T23:59:59+07:00"] {
        match store
            .sandbox_topup(driver, &topup(5_000), None, &iparking::store::drivers::no_wallet_answer, local(at))
            .await
        {
            Err(StoreError::Conflict(c)) => assert_eq!(c, "period_closed", "{at}"),
            other => panic!("posting at {at} into a closed month: {other:?}"),
        }
    }
    // Nothing of the refused writes stayed: the balance is the November top-up alone.
    let (balance, _) = store.wallet(driver, 10).await.expect("wallet");
    assert_eq!(balance, Vnd(10_000));
    // The first instant of December, and the last of October, are outside the closed month.
    store
        .sandbox_topup(
            driver,
            &topup(1_000),
            None,
            &iparking::store::drivers::no_wallet_answer,
            local("2026-12-01T00:00:00+07:00"),
        )
        .await
        .expect("december");
    store
        .sandbox_topup(
            driver,
            &topup(1_000),
            None,
            &iparking::store::drivers::no_wallet_answer,
            local("2026-10-31T23:59:59+07:00"),
        )
        .await
        .expect("october");
    assert_eq!(store.wallet(driver, 10).await.expect("wallet").0, Vnd(12_000));
    assert!(store.ledger_report().await.expect("report").is_sound());
}

/// A keyed wallet movement stores its answer in its own transaction: once the call has
/// returned (committed), the key is answered, with the balance the movement left; nothing
/// is left "in progress" for a crash to strand (issue 30, bug 7). A refused movement keeps
/// neither the key nor the money.
async fn check_keyed_movement_commits_its_answer(store: Arc<dyn Store>) {
    use iparking::{
        domain::{ledger::Entry, money::Vnd},
        store::drivers::{IdemClaim, WalletLine},
    };
    let now = Utc::now();
    let driver = store.upsert_driver("+84912345679", now).await.expect("driver");
    let claim = |key: &str| IdemClaim { scope: format!("driver:{driver}"), key: key.into(), request_hash: "h".into() };
    let answer = |balance: Vnd, lines: &[WalletLine]| Ok((201, format!("{}/{}", balance.get(), lines.len())));
    let entry = Entry::sandbox_topup(driver, Vnd(12_000)).expect("entry");
    let rendered = store.sandbox_topup(driver, &entry, Some(&claim("k1")), &answer, now).await.expect("top-up");
    assert_eq!(rendered, Some((201, "12000/1".to_owned())), "rendered from the wallet inside the transaction");
    let rec = store.idempotency_get(&format!("driver:{driver}"), "k1").await.expect("get").expect("the key");
    assert_eq!((rec.status, rec.response.as_deref()), (Some(201), Some("12000/1")), "the key is answered at commit");
    // An answer that cannot be rendered rolls the movement back with the key.
    let failing = |_: Vnd, _: &[WalletLine]| Err(StoreError::Internal("cannot render".into()));
    assert!(store.sandbox_topup(driver, &entry, Some(&claim("k2")), &failing, now).await.is_err());
    assert!(store.idempotency_get(&format!("driver:{driver}"), "k2").await.expect("get").is_none());
    // A key already used: the key's conflict, which the callers replay, and nothing moves
    // (found without a unique violation, so PostgreSQL logs no error for it).
    let again = store.sandbox_topup(driver, &entry, Some(&claim("k1")), &answer, now).await;
    assert!(matches!(&again, Err(StoreError::Conflict(c)) if c == "idempotency_keys_pkey"), "{again:?}");
    assert_eq!(store.wallet(driver, 10).await.expect("wallet").0, Vnd(12_000), "credited once");
}

/// A keyed card top-up records its intent and stores its answer in one transaction; a
/// sandbox intent that succeeded at once is credited in that transaction too, so a crash
/// after the commit leaves neither the key "in progress" nor a credit without its answer
/// (issue 30, bug 7). An answer that cannot be rendered records nothing.
async fn check_keyed_intent_commits_its_answer(store: Arc<dyn Store>) {
    use iparking::{
        domain::money::Vnd,
        store::drivers::{IdemClaim, IntentEventOutcome, NewIntent},
    };
    let now = Utc::now();
    let driver = store.upsert_driver("+84912345681", now).await.expect("driver");
    let scope = format!("driver:{driver}");
    let claim = |key: &str| IdemClaim { scope: scope.clone(), key: key.into(), request_hash: "h".into() };
    let answer = |status: &str| Ok((201, format!("intent {status}")));
    let failing = |_: &str| Err(StoreError::Internal("cannot render".into()));
    // A processor intent waiting for the card: answered with its status, nothing credited.
    let pending = NewIntent {
        id: "pi_pending",
        driver_id: driver,
        amount: Vnd(50_000),
        gateway: "stripe",
        status: "requires_payment_method",
        applied_event: None,
    };
    assert!(store.record_intent(&pending, Some(&claim("t0")), &failing, now).await.is_err());
    assert!(store.idempotency_get(&scope, "t0").await.expect("get").is_none(), "rolled back with the key");
    store.record_intent(&pending, Some(&claim("t1")), &answer, now).await.expect("record");
    let rec = store.idempotency_get(&scope, "t1").await.expect("get").expect("the key");
    assert_eq!((rec.status, rec.response.as_deref()), (Some(201), Some("intent requires_payment_method")));
    assert_eq!(store.wallet(driver, 10).await.expect("wallet").0, Vnd(0));
    // A sandbox intent that succeeded at once: recorded, credited and answered together.
    let sandbox = NewIntent {
        id: "sb_1",
        driver_id: driver,
        amount: Vnd(30_000),
        gateway: "sandbox",
        status: "succeeded",
        applied_event: Some("sandbox_evt_sb_1"),
    };
    store.record_intent(&sandbox, Some(&claim("t2")), &answer, now).await.expect("record");
    let rec = store.idempotency_get(&scope, "t2").await.expect("get").expect("the key");
    assert_eq!((rec.status, rec.response.as_deref()), (Some(201), Some("intent succeeded")));
    assert_eq!(store.wallet(driver, 10).await.expect("wallet").0, Vnd(30_000), "credited in the same commit");
    // The event it was applied as is known: a later delivery of it is a duplicate.
    let again = store
        .apply_intent_event("sandbox_evt_sb_1", "payment_intent.succeeded", "sb_1", "succeeded", None, now)
        .await
        .expect("event");
    assert_eq!(again, IntentEventOutcome::Duplicate);
    // A reused key: the key's conflict, nothing credited twice.
    let sandbox2 = NewIntent { id: "sb_2", applied_event: Some("sandbox_evt_sb_2"), ..sandbox.clone() };
    let reused = store.record_intent(&sandbox2, Some(&claim("t2")), &answer, now).await;
    assert!(matches!(&reused, Err(StoreError::Conflict(c)) if c == "idempotency_keys_pkey"), "{reused:?}");
    assert_eq!(store.wallet(driver, 10).await.expect("wallet").0, Vnd(30_000), "credited once");
    assert!(store.ledger_report().await.expect("report").is_sound());
}

/// A keyed card setup stores its answer in the transaction that records it; a sandbox
/// setup's play card is saved in that transaction too (issue 30, bug 7).
async fn check_keyed_setup_commits_its_answer(store: Arc<dyn Store>) {
    use iparking::{
        payments::CardInfo,
        store::cards::{SavedCard, SetupRecord},
        store::drivers::IdemClaim,
    };
    let now = Utc::now();
    let driver = store.upsert_driver("+84912345682", now).await.expect("driver");
    let scope = format!("driver:{driver}");
    let claim = |key: &str| IdemClaim { scope: scope.clone(), key: key.into(), request_hash: "h".into() };
    let answer = |card: &Option<SavedCard>| Ok((201, format!("card {:?}", card.as_ref().map(|c| c.last4.clone()))));
    let failing = |_: &Option<SavedCard>| Err(StoreError::Internal("cannot render".into()));
    let card = CardInfo {
        payment_method: "pm_sandbox_1".into(),
        brand: "visa".into(),
        last4: "4242".into(),
        exp_month: 12,
        exp_year: 2030,
    };
    assert!(
        store
            .record_setup(
                &SetupRecord { setup_id: "seti_0", driver_id: driver, status: "succeeded", sandbox_card: Some(&card) },
                Some(&claim("s0")),
                &failing,
                now,
            )
            .await
            .is_err()
    );
    assert!(store.idempotency_get(&scope, "s0").await.expect("get").is_none());
    assert!(store.cards(driver).await.expect("cards").is_empty(), "rolled back with the key");
    let saved = store
        .record_setup(
            &SetupRecord { setup_id: "seti_1", driver_id: driver, status: "succeeded", sandbox_card: Some(&card) },
            Some(&claim("s1")),
            &answer,
            now,
        )
        .await
        .expect("setup");
    assert_eq!(saved.as_ref().map(|c| c.last4.as_str()), Some("4242"));
    let rec = store.idempotency_get(&scope, "s1").await.expect("get").expect("the key");
    assert_eq!((rec.status, rec.response.as_deref()), (Some(201), Some("card Some(\"4242\")")));
    assert_eq!(store.cards(driver).await.expect("cards").len(), 1, "saved in the same commit");
    // A processor's setup waits for the card: answered, nothing saved yet.
    let none = store
        .record_setup(
            &SetupRecord {
                setup_id: "seti_2",
                driver_id: driver,
                status: "requires_payment_method",
                sandbox_card: None,
            },
            Some(&claim("s2")),
            &answer,
            now,
        )
        .await
        .expect("setup");
    assert!(none.is_none());
    let rec = store.idempotency_get(&scope, "s2").await.expect("get").expect("the key");
    assert_eq!(rec.response.as_deref(), Some("card None"));
}

/// A finance user (city-wide) and a driver with 20 000 đ of sandbox money, for the keyed
/// finance calls below.
async fn finance_and_driver(store: &Arc<dyn Store>, now: DateTime<Utc>) -> (i64, i64) {
    use iparking::{
        domain::{ledger::Entry, money::Vnd},
        store::drivers::no_wallet_answer,
    };
    let finance = NewStaff {
        name: "Kế toán".into(),
        role: StaffRole::Finance,
        district_ids: vec![],
        street_ids: vec![],
        username: None,
        password_hash: None,
    };
    let (staff_id, _) = store.create_staff(&finance, &"ef".repeat(32), now).await.expect("staff");
    let driver = store.upsert_driver("+84912345680", now).await.expect("driver");
    let entry = Entry::sandbox_topup(driver, Vnd(20_000)).expect("entry");
    store.sandbox_topup(driver, &entry, None, &no_wallet_answer, now).await.expect("top-up");
    (staff_id, driver)
}

/// A keyed adjustment stores its answer in its own transaction: once `post_adjustment` has
/// returned (committed), the key is answered with what the answer rendered from the row it
/// wrote; nothing is left "in progress" for a crash to strand (issue 30, bug 7). An answer
/// that cannot be rendered rolls back the adjustment with the key.
async fn check_keyed_adjustment_commits_its_answer(store: Arc<dyn Store>) {
    use iparking::{
        domain::{finance as fin, ledger::Account, money::Vnd},
        store::{
            drivers::IdemClaim,
            finance::{AdjustmentRow, NewAdjustment},
        },
    };
    let now = Utc::now();
    let (staff_id, driver) = finance_and_driver(&store, now).await;
    let scope = format!("staff:{staff_id}");
    let claim = |key: &str| IdemClaim { scope: scope.clone(), key: key.into(), request_hash: "h".into() };
    let adj = NewAdjustment {
        debit: Account::wallet(driver),
        credit: Account::write_off(),
        point_id: None,
        debit_json: "{\"kind\":\"wallet\"}".into(),
        credit_json: "{\"kind\":\"write_off\"}".into(),
        amount: Vnd(3_000),
        reason: "test".into(),
        author_id: staff_id,
        period: fin::month_of(fin::local_day(now)),
        booked_at: now,
        discrepancy_id: None,
    };
    let answer = |row: &AdjustmentRow| Ok((201, format!("adjustment {} of {}", row.id, row.amount)));
    let row = store.post_adjustment(&adj, Some(&claim("a1")), &answer, now).await.expect("adjustment");
    let rec = store.idempotency_get(&scope, "a1").await.expect("get").expect("the key");
    let expected = format!("adjustment {} of 3000", row.id);
    assert_eq!((rec.status, rec.response.as_deref()), (Some(201), Some(expected.as_str())), "answered at commit");
    assert_eq!(store.wallet(driver, 10).await.expect("wallet").0, Vnd(17_000));
    // An answer that cannot be rendered rolls the adjustment back with the key.
    let failing = |_: &AdjustmentRow| Err(StoreError::Internal("cannot render".into()));
    assert!(store.post_adjustment(&adj, Some(&claim("a2")), &failing, now).await.is_err());
    assert!(store.idempotency_get(&scope, "a2").await.expect("get").is_none());
    assert_eq!(store.adjustments(&adj.period).await.expect("adjustments").len(), 1, "posted once");
    // Without a key there is no answer to store: it is not called.
    store.post_adjustment(&adj, None, &iparking::store::drivers::no_answer, now).await.expect("an unkeyed adjustment");
    assert_eq!(store.wallet(driver, 10).await.expect("wallet").0, Vnd(14_000));
    assert!(store.ledger_report().await.expect("report").is_sound());
}

/// A keyed refund request (which holds wallet money at once) and its keyed decision store
/// their answers in their own transactions: once the store call has returned, the key is
/// answered (issue 30, bug 7). A request whose answer cannot be rendered holds nothing and
/// leaves no key.
async fn check_keyed_refund_request_commits_its_answer(store: Arc<dyn Store>) {
    use iparking::{
        domain::money::Vnd,
        store::{
            drivers::IdemClaim,
            finance::{DecideOutcome, NewRefundRequest, RefundDecision, RefundRequestRow, RequestOutcome},
        },
    };
    let now = Utc::now();
    let (staff_id, driver) = finance_and_driver(&store, now).await;
    let driver_scope = format!("driver:{driver}");
    let claim = |scope: &str, key: &str| IdemClaim { scope: scope.into(), key: key.into(), request_hash: "h".into() };
    let new = NewRefundRequest {
        driver_id: driver,
        kind: iparking::domain::finance::RequestKind::WalletBalance,
        session_id: None,
        amount: Some(Vnd(5_000)),
        reason: "leaving the city".into(),
        sandbox: true,
    };
    let answer = |row: &RefundRequestRow| Ok((201, format!("request {} {} {}", row.id, row.amount, row.status)));
    let failing = |_: &RefundRequestRow| Err(StoreError::Internal("cannot render".into()));
    assert!(store.create_refund_request(&new, Some(&claim(&driver_scope, "r0")), &failing, now).await.is_err());
    assert!(store.idempotency_get(&driver_scope, "r0").await.expect("get").is_none());
    assert_eq!(store.wallet(driver, 10).await.expect("wallet").0, Vnd(20_000), "nothing held");
    let outcome =
        store.create_refund_request(&new, Some(&claim(&driver_scope, "r1")), &answer, now).await.expect("request");
    let RequestOutcome::Created(row) = outcome else { panic!("not created: {outcome:?}") };
    let rec = store.idempotency_get(&driver_scope, "r1").await.expect("get").expect("the key");
    let expected = format!("request {} 5000 pending", row.id);
    assert_eq!((rec.status, rec.response.as_deref()), (Some(201), Some(expected.as_str())), "answered at commit");
    assert_eq!(store.wallet(driver, 10).await.expect("wallet").0, Vnd(15_000), "held once");
    // The decision: approved, the held money goes back (to the sandbox here).
    let staff_scope = format!("staff:{staff_id}");
    let decided = |row: &RefundRequestRow| Ok((200, format!("request {} {}", row.id, row.status)));
    let outcome = store
        .decide_refund_request(
            &RefundDecision { id: row.id, approve: true, staff_id, note: "ok", sandbox: true },
            Some(&claim(&staff_scope, "d1")),
            &decided,
            now,
        )
        .await
        .expect("decision");
    assert!(matches!(outcome, DecideOutcome::Decided(..)), "{outcome:?}");
    let rec = store.idempotency_get(&staff_scope, "d1").await.expect("get").expect("the key");
    let expected = format!("request {} approved", row.id);
    assert_eq!((rec.status, rec.response.as_deref()), (Some(200), Some(expected.as_str())), "answered at commit");
    assert!(store.ledger_report().await.expect("report").is_sound());
}
