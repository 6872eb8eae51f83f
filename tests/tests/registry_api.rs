//! Black-box tests of the registry API through the real server, on SQLite + in-process
//! live state and on PostgreSQL + Redis.

use iparking_mobile_api::{
    ClientError, CreateDistrict, CreatePoint, CreateStreet, ImportFormat, ImportMode, NearbyQuery, PointStatus,
    StaffRole, UpdatePoint, VehicleClass,
};
use iparking_tests::{Db, Live, Options, TestApp, assert_error, matrix, raw};
use serde_json::json;

fn near(lat: f64, lon: f64, radius_m: f64) -> NearbyQuery {
    NearbyQuery { lat, lon, radius_m: Some(radius_m), limit: Some(100), vehicle_class: None }
}

async fn point_count(t: &TestApp) -> usize {
    t.app.store.points().await.unwrap().len()
}

#[track_caller]
fn api_code(e: ClientError) -> (u16, String) {
    match e {
        ClientError::Api { status, error } => (status, error.code),
        other => panic!("expected an API error, got {other}"),
    }
}

matrix!(nearby_finds_the_pilot_points_sorted, |t| {
    // The README's example query: Lý Thường Kiệt near Hàng Bài.
    let r = t.client.nearby_points(&near(21.0245, 105.8530, 1000.0)).await.unwrap();
    let codes: Vec<&str> = r.points.iter().map(|p| p.point.code.as_str()).collect();
    assert_eq!(r.points.len(), 17, "{codes:?}");
    assert!(codes.iter().all(|c| c.starts_with("HK")), "{codes:?}");
    assert_eq!(r.points.iter().map(|p| p.point.capacity).sum::<i32>(), 248);
    assert!(r.points.windows(2).all(|w| w[0].distance_m <= w[1].distance_m), "not sorted");
    assert!(r.points.iter().all(|p| p.distance_m <= 1000.0));
    assert_eq!(r.points[0].point.code, "HK007");
    for p in &r.points {
        assert_eq!(p.point.free_spaces, Some(p.point.capacity), "nothing is parked yet");
        assert!(p.point.curb.is_some());
    }
    // The default radius is 1 km and the default limit 20.
    let d = t.client.nearby_points(&NearbyQuery { radius_m: None, limit: None, ..near(21.0245, 105.8530, 0.0) }).await;
    assert_eq!(d.unwrap().points.len(), 17);
    // A limit cuts the nearest first.
    let three =
        t.client.nearby_points(&NearbyQuery { limit: Some(3), ..near(21.0245, 105.8530, 1000.0) }).await.unwrap();
    assert_eq!(three.points.iter().map(|p| &p.point.code).collect::<Vec<_>>(), codes[..3].iter().collect::<Vec<_>>());
    // Far from any point: nothing.
    assert!(t.client.nearby_points(&near(10.77, 106.70, 5000.0)).await.unwrap().points.is_empty());
});

matrix!(nearby_filters_by_vehicle_class, |t| {
    let q = NearbyQuery { vehicle_class: Some(VehicleClass::Motorbike), ..near(21.0120, 105.8480, 3000.0) };
    let r = t.client.nearby_points(&q).await.unwrap();
    assert!(!r.points.is_empty());
    assert!(r.points.iter().all(|p| p.point.vehicle_classes.contains(&VehicleClass::Motorbike)));
    let codes: Vec<&str> = r.points.iter().map(|p| p.point.code.as_str()).collect();
    assert!(codes.contains(&"HBT003") && !codes.contains(&"HBT001"), "{codes:?}");
});

matrix!(nearby_rejects_bad_input_in_the_error_shape, |t| {
    let http = reqwest::Client::new();
    let cases = [
        ("lat=91&lon=105.85", "invalid_coordinates"),
        ("lat=21&lon=-180.5", "invalid_coordinates"),
        ("lat=21&lon=105.85&radius_m=0", "invalid_radius"),
        ("lat=21&lon=105.85&radius_m=-5", "invalid_radius"),
        ("lat=21&lon=105.85&radius_m=50001", "invalid_radius"),
        ("lat=21&lon=105.85&radius_m=NaN", "invalid_radius"),
        ("lat=21&lon=105.85&limit=0", "invalid_limit"),
        ("lat=21&lon=105.85&limit=101", "invalid_limit"),
        ("lat=abc&lon=105.85", "invalid_query"),
        ("lon=105.85", "invalid_query"),
        ("lat=21&lon=105.85&vehicle_class=tank", "invalid_query"),
        ("lat=21&lon=105.85&limit=-1", "invalid_query"),
    ];
    for (q, code) in cases {
        let a = raw(http.get(t.url(&format!("/v1/points?{q}")))).await;
        assert_error(&a, 400, code);
    }
    // Vietnamese by default, English on request.
    let vi = raw(http.get(t.url("/v1/points?lat=91&lon=0"))).await;
    assert!(vi.1["error"]["message"].as_str().unwrap().contains("Tọa độ"), "{}", vi.1);
    let en = raw(http.get(t.url("/v1/points?lat=91&lon=0")).header("Accept-Language", "en-US,en;q=0.9")).await;
    assert!(en.1["error"]["message"].as_str().unwrap().starts_with("Invalid coordinates"), "{}", en.1);
});

matrix!(get_point_by_code, |t| {
    let p = t.client.point("hk003").await.unwrap();
    assert_eq!(p.code, "HK003");
    assert_eq!(p.street.name, "Lý Thường Kiệt");
    assert_eq!(p.street.district_code, "HK");
    assert_eq!(p.district_name, "Hoàn Kiếm");
    assert_eq!(p.free_spaces, Some(p.capacity));
    let e = t.client.point("HK999").await.unwrap_err();
    assert_eq!(api_code(e), (404, "point_not_found".into()));
    let a = raw(reqwest::Client::new().get(t.url("/v1/points/%E2%9C%93%20x"))).await;
    assert_error(&a, 404, "point_not_found");
    let districts = t.client.districts().await.unwrap();
    assert_eq!(districts.iter().map(|d| d.code.as_str()).collect::<Vec<_>>(), ["BD", "DD", "HBT", "HK"]);
});

matrix!(admin_routes_need_an_admin_token, |t| {
    let body = CreateDistrict { code: "TH".into(), name: "Thanh Xuân".into() };
    let e = t.client.create_district(&body).await.unwrap_err();
    assert_eq!(api_code(e), (401, "unauthorized".into()));
    let e = t.client.with_token("ipk_staff_not_a_real_token").create_district(&body).await.unwrap_err();
    assert_eq!(api_code(e), (401, "unauthorized".into()));
    let warden = t.staff(StaffRole::Warden, &["HK"]).await;
    let e = warden.create_district(&body).await.unwrap_err();
    assert_eq!(api_code(e), (403, "forbidden".into()));
    let e = t.staff(StaffRole::Finance, &[]).await.close_point("HK001").await.unwrap_err();
    assert_eq!(api_code(e), (403, "forbidden".into()));
    assert_eq!(t.app.store.districts().await.unwrap().len(), 4, "nothing created");
    assert_eq!(t.client.point("HK001").await.unwrap().status, PointStatus::Open, "nothing closed");
    // A revoked token stops working at once.
    let created =
        t.admin.create_staff(&iparking_mobile_api::CreateStaff::new("Temp", StaffRole::Admin, vec![])).await.unwrap();
    let temp = t.client.with_token(&created.token);
    temp.create_district(&body).await.unwrap();
    t.admin.revoke_token(created.token_id).await.unwrap();
    let e = temp.create_district(&CreateDistrict { code: "LB".into(), name: "Long Biên".into() }).await.unwrap_err();
    assert_eq!(api_code(e), (401, "unauthorized".into()));
    let e = t.admin.revoke_token(created.token_id).await.unwrap_err();
    assert_eq!(api_code(e), (404, "token_not_found".into()));
});

matrix!(admin_manages_streets_and_points, |t| {
    let d = t.admin.create_district(&CreateDistrict { code: "CG".into(), name: "Cầu Giấy".into() }).await.unwrap();
    assert_eq!(d.code, "CG");
    let e = t.admin.create_district(&CreateDistrict { code: "CG".into(), name: "Again".into() }).await.unwrap_err();
    assert_eq!(api_code(e), (409, "district_code_taken".into()));
    let e = t.admin.create_district(&CreateDistrict { code: "cg1".into(), name: "x".into() }).await.unwrap_err();
    assert_eq!(api_code(e), (400, "invalid_district_code".into()));

    let s =
        t.admin.create_street(&CreateStreet { district_code: "cg".into(), name: " Xuân Thủy ".into() }).await.unwrap();
    assert_eq!((s.name.as_str(), s.district_code.as_str()), ("Xuân Thủy", "CG"));
    let e = t
        .admin
        .create_street(&CreateStreet { district_code: "CG".into(), name: "Xuân Thủy".into() })
        .await
        .unwrap_err();
    assert_eq!(api_code(e), (409, "street_exists".into()));
    let e = t.admin.create_street(&CreateStreet { district_code: "ZZ".into(), name: "X".into() }).await.unwrap_err();
    assert_eq!(api_code(e), (404, "district_not_found".into()));
    assert_eq!(t.admin.streets("CG").await.unwrap(), vec![s.clone()]);

    let new_point = |code: &str| CreatePoint {
        code: code.into(),
        name: "Xuân Thủy – ĐH Quốc gia".into(),
        street_id: s.id,
        lat: 21.0368,
        lon: 105.7826,
        // Full-precision coordinates must come back bit-for-bit (JSON float round trip).
        curb: Some(vec![[105.87289333593561, 21.0368123456789], [105.7828, 21.0368]]),
        capacity: 12,
        vehicle_classes: vec![VehicleClass::Car, VehicleClass::Car],
    };
    let before = point_count(&t).await;
    for (body, status, code) in [
        (CreatePoint { capacity: -1, ..new_point("CG001") }, 400, "invalid_capacity"),
        (CreatePoint { lat: 95.0, ..new_point("CG001") }, 400, "invalid_coordinates"),
        // Well-formed, but not the street's district: 422 (decision 0016).
        (new_point("HK900"), 422, "invalid_point_code"),
        (new_point("CG1"), 400, "invalid_point_code"),
        (CreatePoint { vehicle_classes: vec![], ..new_point("CG001") }, 400, "invalid_vehicle_classes"),
        (CreatePoint { curb: Some(vec![[105.78, 21.03]]), ..new_point("CG001") }, 400, "invalid_curb"),
        (CreatePoint { name: "  ".into(), ..new_point("CG001") }, 400, "invalid_name"),
        (CreatePoint { street_id: 999_999, ..new_point("CG001") }, 404, "street_not_found"),
    ] {
        let e = t.admin.create_point(&body).await.unwrap_err();
        assert_eq!(api_code(e), (status, code.into()));
    }
    assert_eq!(point_count(&t).await, before, "rejected creates changed nothing");

    let p = t.admin.create_point(&new_point("cg001")).await.unwrap();
    assert_eq!((p.code.as_str(), p.capacity, p.free_spaces), ("CG001", 12, Some(12)));
    assert_eq!(p.vehicle_classes, vec![VehicleClass::Car]);
    assert_eq!(p.curb, Some(vec![[105.87289333593561, 21.0368123456789], [105.7828, 21.0368]]));
    assert_eq!(t.client.point("CG001").await.unwrap().curb, p.curb);
    let e = t.admin.create_point(&new_point("CG001")).await.unwrap_err();
    assert_eq!(api_code(e), (409, "point_code_taken".into()));
    // The node that wrote sees the point at once in nearby search.
    let r = t.client.nearby_points(&near(21.0368, 105.7826, 200.0)).await.unwrap();
    assert_eq!(r.points.iter().map(|p| p.point.code.as_str()).collect::<Vec<_>>(), ["CG001"]);

    // Patch: only given fields change; an empty curb removes it.
    let patched = t
        .admin
        .update_point("CG001", &UpdatePoint { capacity: Some(20), curb: Some(vec![]), ..UpdatePoint::default() })
        .await
        .unwrap();
    assert_eq!((patched.capacity, patched.curb.as_ref(), patched.name.as_str()), (20, None, p.name.as_str()));
    assert!(patched.updated_at >= p.updated_at);
    let e = t.admin.update_point("CG001", &UpdatePoint { lat: Some(21.0), ..UpdatePoint::default() }).await;
    assert_eq!(api_code(e.unwrap_err()), (400, "invalid_coordinates".into()));
    let e = t.admin.update_point("CG001", &UpdatePoint { capacity: Some(-4), ..UpdatePoint::default() }).await;
    assert_eq!(api_code(e.unwrap_err()), (400, "invalid_capacity".into()));
    let e = t.admin.update_point("CG404", &UpdatePoint { capacity: Some(4), ..UpdatePoint::default() }).await;
    assert_eq!(api_code(e.unwrap_err()), (404, "point_not_found".into()));
    assert_eq!(t.client.point("CG001").await.unwrap().capacity, 20, "rejected patches changed nothing");
    // Moving the point moves it in search.
    t.admin
        .update_point("CG001", &UpdatePoint { lat: Some(21.0300), lon: Some(105.8000), ..UpdatePoint::default() })
        .await
        .unwrap();
    assert!(t.client.nearby_points(&near(21.0368, 105.7826, 200.0)).await.unwrap().points.is_empty());
    assert_eq!(t.client.nearby_points(&near(21.0300, 105.8000, 50.0)).await.unwrap().points.len(), 1);

    // Closing hides it from search but not from lookup; twice is fine; reopening restores.
    assert_eq!(t.admin.close_point("CG001").await.unwrap().status, PointStatus::Closed);
    assert_eq!(t.admin.close_point("CG001").await.unwrap().status, PointStatus::Closed);
    assert!(t.client.nearby_points(&near(21.0300, 105.8000, 50.0)).await.unwrap().points.is_empty());
    assert_eq!(t.client.point("CG001").await.unwrap().status, PointStatus::Closed);
    t.admin.open_point("CG001").await.unwrap();
    assert_eq!(t.client.nearby_points(&near(21.0300, 105.8000, 50.0)).await.unwrap().points.len(), 1);
    assert_eq!(api_code(t.admin.close_point("CG404").await.unwrap_err()), (404, "point_not_found".into()));
});

matrix!(district_scoped_admin_stays_in_its_district, |t| {
    let hk_admin = t.staff(StaffRole::Admin, &["HK"]).await;
    let e = hk_admin.close_point("DD001").await.unwrap_err();
    assert_eq!(api_code(e), (403, "forbidden".into()));
    assert_eq!(t.client.point("DD001").await.unwrap().status, PointStatus::Open);
    hk_admin.close_point("HK001").await.unwrap();
    let e = hk_admin.create_street(&CreateStreet { district_code: "DD".into(), name: "Khâm Thiên".into() }).await;
    assert_eq!(api_code(e.unwrap_err()), (403, "forbidden".into()));
    hk_admin.create_street(&CreateStreet { district_code: "HK".into(), name: "Tràng Tiền".into() }).await.unwrap();
    // Scoped admins cannot create districts or staff (no escalation).
    let e = hk_admin.create_district(&CreateDistrict { code: "TX".into(), name: "Thanh Xuân".into() }).await;
    assert_eq!(api_code(e.unwrap_err()), (403, "forbidden".into()));
    let e = hk_admin.create_staff(&iparking_mobile_api::CreateStaff::new("x", StaffRole::Admin, vec![])).await;
    assert_eq!(api_code(e.unwrap_err()), (403, "forbidden".into()));
    // Import rows outside the scope are rejected with their line.
    let csv = "code,name,district,street,lat,lon,capacity,vehicle_classes\n\
               HK601,A,HK,Tràng Tiền,21.0245,105.8540,5,car\n\
               DD601,B,DD,Khâm Thiên,21.0190,105.8380,5,car\n";
    let r = hk_admin.import_points(ImportFormat::Csv, ImportMode::ValidOnly, csv.into()).await;
    let e = r.unwrap_err();
    assert_eq!(e.status(), Some(422));
    assert!(t.client.point("HK601").await.is_ok());
    assert!(t.client.point("DD601").await.is_err());
    // Unknown district in a staff scope.
    let e =
        t.admin.create_staff(&iparking_mobile_api::CreateStaff::new("x", StaffRole::Warden, vec!["ZZ".into()])).await;
    assert_eq!(api_code(e.unwrap_err()), (404, "district_not_found".into()));
});

const CSV_HEADER: &str = "code,name,district,street,lat,lon,capacity,vehicle_classes\n";

matrix!(import_csv_all_or_nothing_and_valid_only, |t| {
    let body = format!(
        "{CSV_HEADER}HK501,Hàng Khay 1,HK,Hàng Khay,21.0262,105.8525,10,car\n\
         HK502,Hàng Khay 2,HK,Hàng Khay,21.0263,105.8530,-3,car\n\
         HK503,Hàng Khay 3,HK,Hàng Khay,21.0264,105.8535,8,car;motorbike\n\
         HK501,Duplicate,HK,Hàng Khay,21.0262,105.8525,10,car\n\
         HK001,Existing,HK,Hàng Khay,21.0262,105.8525,10,car\n\
         XY504,Unknown district,XY,Nowhere,21.0262,105.8525,10,car\n"
    );
    let http = reqwest::Client::new();
    let before = point_count(&t).await;
    let version = t.app.store.registry_version().await.unwrap();
    let a = raw(http
        .post(t.url("/v1/admin/points/import?format=csv"))
        .bearer_auth(admin_token(&t).await)
        .body(body.clone()))
    .await;
    assert_eq!(a.0, 422, "{}", a.1);
    assert_eq!(a.1["imported"], 0);
    assert_eq!(a.1["rows"], 6);
    assert_eq!(a.1["mode"], "all_or_nothing");
    let lines: Vec<u64> = a.1["rejected"].as_array().unwrap().iter().map(|r| r["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, [3, 5, 6, 7]);
    assert!(a.1["rejected"][1]["message"].as_str().unwrap().contains("line 2"), "{}", a.1);
    assert_eq!(point_count(&t).await, before, "all_or_nothing imported nothing");
    assert_eq!(t.app.store.registry_version().await.unwrap(), version);

    let r = t.admin.import_points(ImportFormat::Csv, ImportMode::ValidOnly, body.into_bytes()).await.unwrap_err();
    assert_eq!(r.status(), Some(422));
    assert_eq!(point_count(&t).await, before + 2);
    let p = t.client.point("HK503").await.unwrap();
    assert_eq!(p.street.name, "Hàng Khay");
    assert_eq!(p.vehicle_classes, vec![VehicleClass::Car, VehicleClass::Motorbike]);
    // Imported points are searchable at once.
    let near_them = t.client.nearby_points(&near(21.0263, 105.8530, 60.0)).await.unwrap();
    let mut codes: Vec<String> = near_them.points.into_iter().map(|p| p.point.code).collect();
    codes.sort();
    assert_eq!(codes, ["HK501", "HK503"]);

    // A clean file answers 200 with nothing rejected.
    let ok = format!("{CSV_HEADER}HK510,Hàng Khay 10,HK,Hàng Khay,21.0265,105.8540,4,car\n");
    let rep = t.admin.import_points(ImportFormat::Csv, ImportMode::AllOrNothing, ok.into_bytes()).await.unwrap();
    assert_eq!((rep.rows, rep.imported, rep.rejected.len()), (1, 1, 0));
});

async fn admin_token(t: &TestApp) -> String {
    iparking::app::staff::add_staff(&t.app, iparking::app::staff::StaffSpec::new("raw".into(), StaffRole::Admin, &[]))
        .await
        .unwrap()
        .token
}

matrix!(import_geojson_with_curb_lines, |t| {
    let doc = json!({
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "geometry": {"type": "LineString",
                "coordinates": [[105.8560, 21.0270], [105.8566, 21.0270]]},
             "properties": {"code": "HK701", "name": "Tràng Tiền 1", "district": "HK", "street": "Tràng Tiền",
                            "capacity": 9, "vehicle_classes": ["car", "minibus"]}},
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [105.8570, 21.0271]},
             "properties": {"code": "HK702", "name": "Tràng Tiền 2", "district": "HK", "street": "Tràng Tiền",
                            "capacity": 6, "vehicle_classes": "car"}}
        ]
    });
    let rep =
        t.admin.import_points(ImportFormat::Geojson, ImportMode::AllOrNothing, doc.to_string().into()).await.unwrap();
    assert_eq!(rep.imported, 2);
    let p = t.client.point("HK701").await.unwrap();
    assert_eq!(p.curb.as_ref().unwrap().len(), 2);
    assert!((p.lon - 105.8563).abs() < 1e-6 && (p.lat - 21.0270).abs() < 1e-9, "{} {}", p.lat, p.lon);

    let http = reqwest::Client::new();
    let token = admin_token(&t).await;
    let bad =
        raw(http.post(t.url("/v1/admin/points/import?format=geojson")).bearer_auth(&token).body("{not json")).await;
    // A well-formed request whose file cannot be read as its format: 422 (decision 0016).
    assert_error(&bad, 422, "invalid_file");
    let bad = raw(http.post(t.url("/v1/admin/points/import?format=xml")).bearer_auth(&token).body("<a/>")).await;
    assert_error(&bad, 400, "invalid_query");
    let no_auth = raw(http.post(t.url("/v1/admin/points/import?format=csv")).body(CSV_HEADER)).await;
    assert_error(&no_auth, 401, "unauthorized");
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_malformed_bodies_are_refused() {
    let t = TestApp::start_with(
        Db::Sqlite,
        Live::Memory,
        Options {
            settings: iparking::Settings { import_body_limit: 4096, ..Options::default().settings },
            ..Options::default()
        },
    )
    .await;
    let http = reqwest::Client::new();
    let token = admin_token(&t).await;
    let big = format!("{CSV_HEADER}{}", "HK801,A,HK,Tràng Tiền,21.02,105.85,1,car\n".repeat(200));
    let a = raw(http.post(t.url("/v1/admin/points/import?format=csv")).bearer_auth(&token).body(big)).await;
    assert_error(&a, 413, "payload_too_large");
    assert!(t.client.point("HK801").await.is_err());
    // JSON bodies are capped at 64 KiB.
    let huge_name = "x".repeat(70 * 1024);
    let a = raw(http
        .post(t.url("/v1/admin/districts"))
        .bearer_auth(&token)
        .json(&json!({"code": "AB", "name": huge_name})))
    .await;
    assert_error(&a, 413, "payload_too_large");
    let a = raw(http
        .post(t.url("/v1/admin/districts"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{\"code\": \"AB\""))
    .await;
    assert_error(&a, 400, "invalid_body");
    let a = raw(http.post(t.url("/v1/admin/districts")).bearer_auth(&token).json(&json!({"code": "AB"}))).await;
    assert_error(&a, 400, "invalid_body");
    let a = raw(http
        .post(t.url("/v1/admin/districts"))
        .bearer_auth(&token)
        .json(&json!({"code": "AB", "name": "x", "extra": 1})))
    .await;
    assert_error(&a, 400, "invalid_body");
    let a = raw(http.post(t.url("/v1/admin/districts")).bearer_auth(&token).body("code=AB")).await;
    assert_error(&a, 415, "unsupported_media_type");
    let a = raw(http.delete(t.url("/v1/points/HK001"))).await;
    assert_error(&a, 405, "method_not_allowed");
    let a = raw(http.get(t.url("/v1/nothing-here"))).await;
    assert_error(&a, 404, "route_not_found");
    let a = raw(http.delete(t.url("/v1/admin/tokens/abc")).bearer_auth(&token)).await;
    assert_error(&a, 400, "invalid_path");
    assert_eq!(t.app.store.districts().await.unwrap().len(), 4, "nothing was created");
}

matrix!(ops_endpoints, |t| {
    assert_eq!(t.client.healthz().await.unwrap().status, "ok");
    let ready = t.client.readyz().await.unwrap();
    assert_eq!((ready.database.as_str(), ready.live_state.as_str()), ("ok", "ok"));
    let expected = if t.redis_prefix.is_some() { ("postgres", "redis") } else { ("sqlite", "memory") };
    assert_eq!((ready.database_backend.as_str(), ready.live_state_backend.as_str()), expected);

    t.client.point("HK001").await.unwrap();
    let http = reqwest::Client::new();
    let resp = http.get(t.metrics_url()).send().await.unwrap();
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = resp.text().await.unwrap();
    assert!(text.contains("http_requests_total"), "{text}");
    assert!(text.contains("route=\"/v1/points/{code}\""), "route label missing: {text}");
    assert!(!text.contains("HK001"), "metrics must not carry path values");
    // The API's listener never serves them (issue 30): they are for the operator's network.
    let public = http.get(t.url("/metrics")).send().await.unwrap();
    assert_eq!(public.status(), 404, "metrics on the public listener");

    let resp = http.get(t.url("/v1/points/HK001")).send().await.unwrap();
    assert!(resp.headers().contains_key("x-request-id"));

    let doc: serde_json::Value = http.get(t.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    for path in [
        "/v1/points",
        "/v1/points/{code}",
        "/v1/admin/points",
        "/v1/admin/points/import",
        "/readyz",
        "/v1/warden/checks",
        "/v1/warden/sync",
        "/v1/warden/violations",
        "/v1/receipts/{number}",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing from OpenAPI");
    }
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    let docs = http.get(t.url("/docs/")).send().await.unwrap();
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("swagger"), "Swagger UI page");
    // Swagger UI served as it is would send every reader's browser to validator.swagger.io.
    let init = http.get(t.url("/docs/swagger-initializer.js")).send().await.unwrap();
    assert_eq!(init.status(), 200);
    let init = init.text().await.unwrap();
    assert!(init.contains("\"validatorUrl\": \"none\""), "the validator must be off: {init}");
    assert!(init.contains("\"url\": \"/openapi.json\""), "the document is still ours: {init}");
});

/// Two API nodes on one PostgreSQL and one Redis: a point created through one is found
/// by nearby search on the other once its index refresh runs (100 ms in tests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_node_sees_registry_changes() {
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
    let q = near(21.0290, 105.8600, 100.0);
    assert!(b.client.nearby_points(&q).await.unwrap().points.is_empty());
    let street = a.admin.create_street(&CreateStreet { district_code: "HK".into(), name: "Hai Bà Trưng".into() }).await;
    a.admin
        .create_point(&CreatePoint {
            code: "HK900".into(),
            name: "Hai Bà Trưng 1".into(),
            street_id: street.unwrap().id,
            lat: 21.0290,
            lon: 105.8600,
            curb: None,
            capacity: 3,
            vehicle_classes: vec![VehicleClass::Car],
        })
        .await
        .unwrap();
    let mut seen = false;
    for _ in 0..50 {
        if b.client.nearby_points(&q).await.unwrap().points.len() == 1 {
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(seen, "node B never saw the point created on node A");
    // Occupancy is shared through Redis: a space taken via A's live state shows on B.
    let id = a.app.store.point("HK900").await.unwrap().unwrap().id;
    assert!(a.app.live.try_occupy(id, 3).await.unwrap());
    assert_eq!(b.client.point("HK900").await.unwrap().free_spaces, Some(2));
    b.stop().await;
    a.stop().await;
}

/// A client's duplicate district, street or point is answered 409 and found without a unique
/// violation: PostgreSQL's log gets no ERROR for it (issue 30). The log's DETAIL line would
/// name the duplicated key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_leave_no_error_in_postgres_log_postgres_redis() {
    let t = TestApp::start(Db::Postgres, Live::Redis).await;
    let district = CreateDistrict { code: "QZ".into(), name: "Quận thử".into() };
    t.admin.create_district(&district).await.unwrap();
    assert_eq!(api_code(t.admin.create_district(&district).await.unwrap_err()), (409, "district_code_taken".into()));
    let street = CreateStreet { district_code: "QZ".into(), name: "Phố Thử Trùng".into() };
    let s = t.admin.create_street(&street).await.unwrap();
    assert_eq!(api_code(t.admin.create_street(&street).await.unwrap_err()), (409, "street_exists".into()));
    let point = CreatePoint {
        code: "QZ901".into(),
        name: "Điểm thử".into(),
        street_id: s.id,
        lat: 21.03,
        lon: 105.85,
        curb: None,
        capacity: 3,
        vehicle_classes: vec![VehicleClass::Car],
    };
    t.admin.create_point(&point).await.unwrap();
    assert_eq!(api_code(t.admin.create_point(&point).await.unwrap_err()), (409, "point_code_taken".into()));
    let path = std::env::var("IPARKING_TEST_PG_LOG").expect("IPARKING_TEST_PG_LOG (set by scripts/test)");
    let log = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    for key in ["Key (code)=(QZ) already exists", "Phố Thử Trùng) already exists", "Key (code)=(QZ901) already exists"]
    {
        assert!(!log.contains(key), "PostgreSQL logged a duplicate: {key}");
    }
    t.stop().await;
}

matrix!(points_are_searched_by_street_and_code_city_wide, |t| {
    let get = |path: &str| iparking_tests::raw(reqwest::Client::new().get(t.url(path)));
    let codes = |v: &serde_json::Value| -> Vec<String> {
        v.as_array().expect("a list").iter().map(|p| p["code"].as_str().unwrap().to_owned()).collect()
    };
    // Without diacritics or case, word starts: "dien bien" is Điện Biên Phủ's two points.
    let (status, found) = get("/v1/points/search?q=dien%20bien").await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(codes(&found), vec!["BD003", "BD004"]);
    assert!(found[0]["free_spaces"].is_i64(), "with free spaces: {found}");
    let (_, same) = get("/v1/points/search?q=%C4%90I%E1%BB%86N%20Bi%C3%AAn").await;
    assert_eq!(codes(&same), vec!["BD003", "BD004"], "ĐIỆN Biên, as typed");
    // A code's start, and words across street and point name.
    let (_, hk) = get("/v1/points/search?q=hk00&limit=50").await;
    let hk = codes(&hk);
    assert!(hk.len() >= 9 && hk.iter().all(|c| c.starts_with("HK00")), "{hk:?}");
    let (_, both) = get("/v1/points/search?q=ton%20duc%20thang%20van%20mieu").await;
    assert_eq!(codes(&both), vec!["DD001"]);
    let (_, none) = get("/v1/points/search?q=khong%20co%20pho%20nay").await;
    assert_eq!(none, serde_json::json!([]));
    // The limit holds.
    let (_, two) = get("/v1/points/search?q=hk&limit=2").await;
    assert_eq!(codes(&two).len(), 2);
    // Refusals in the error shape.
    for (query, code) in
        [("q=%20%20", "invalid_query"), ("q=hk&limit=0", "invalid_limit"), ("q=hk&limit=51", "invalid_limit")]
    {
        let answer = get(&format!("/v1/points/search?{query}")).await;
        iparking_tests::assert_error(&answer, 400, code);
    }
    let long = "a".repeat(61);
    iparking_tests::assert_error(&get(&format!("/v1/points/search?q={long}")).await, 400, "invalid_query");
    let (status, _) = get("/v1/points/search").await;
    assert_eq!(status, 400, "q is required");
});
