//! Black-box tests of the `iparking` command line: the real binary, a fresh SQLite
//! database under a temporary `--data-dir` per test. The effects are checked by reading
//! that database back through the library's store after the process has exited.

use std::{
    path::Path,
    process::{Command, Output},
};

use iparking::{
    auth::token_hash,
    store::{PointRecord, Principal, SqliteStore, Store},
};
use iparking_mobile_api::{StaffRole, VehicleClass};

const CSV_HEADER: &str = "code,name,district,street,lat,lon,capacity,vehicle_classes";

/// Runs the binary with `--data-dir dir` and `args`, isolated from the caller's
/// environment (a `DATABASE_URL` there would send the test to another database).
fn iparking(dir: &Path, args: &[&str]) -> Output {
    command(dir, args).env("RUST_LOG", "warn").output().expect("running the iparking binary")
}

/// The command [`iparking`] runs, without `RUST_LOG` (the binary's own default).
fn command(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_iparking"));
    c.arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("IPARKING_DATA_DIR")
        .env_remove("IPARKING_DB_MAX_CONNECTIONS")
        .env_remove("RUST_LOG");
    c
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("stderr is UTF-8")
}

/// Asserts success and returns stdout.
#[track_caller]
fn ok(o: &Output) -> String {
    assert!(o.status.success(), "expected success, got {:?}\nstdout: {}\nstderr: {}", o.status, stdout(o), stderr(o));
    stdout(o)
}

fn block_on<T>(f: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

/// The points stored in the database under `dir`, by code.
fn stored_points(dir: &Path) -> Vec<PointRecord> {
    block_on(async {
        let store = SqliteStore::open_in(dir).await.unwrap();
        let mut points = store.points().await.unwrap();
        points.sort_by(|a, b| a.code.cmp(&b.code));
        points
    })
}

fn stored_codes(dir: &Path) -> Vec<String> {
    stored_points(dir).into_iter().map(|p| p.code).collect()
}

fn stored_point(dir: &Path, code: &str) -> Option<PointRecord> {
    stored_points(dir).into_iter().find(|p| p.code == code)
}

fn principal(dir: &Path, token: &str) -> Option<Principal> {
    block_on(async {
        let store = SqliteStore::open_in(dir).await.unwrap();
        store.principal_by_token(&token_hash(token)).await.unwrap()
    })
}

/// A fresh data directory with Hanoi's pilot seeded (districts HK, BD, HBT, DD).
fn seeded() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    ok(&iparking(dir.path(), &["seed", "hanoi-pilot"]));
    dir
}

fn write(dir: &Path, name: &str, contents: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path.to_str().unwrap().to_owned()
}

fn csv(rows: &[&str]) -> String {
    let mut s = String::from(CSV_HEADER);
    for r in rows {
        s.push('\n');
        s.push_str(r);
    }
    s.push('\n');
    s
}

const SEEDED_POINTS: usize = 27;

#[test]
fn migrate_creates_the_database_and_seeding_twice_keeps_what_is_there() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nested").join("data");

    let out = iparking(&data, &["migrate"]);
    ok(&out);
    assert!(stderr(&out).contains("migrations applied"), "{}", stderr(&out));
    assert!(data.join("iparking.db").is_file(), "migrate should create iparking.db under --data-dir");
    assert!(stored_points(&data).is_empty());
    // Migrating an up-to-date database again is fine.
    ok(&iparking(&data, &["migrate"]));

    let out = iparking(&data, &["seed", "hanoi-pilot"]);
    assert_eq!(ok(&out), "districts created: 4, points created: 27, points already present: 0, tariffs published: 7\n");
    let points = stored_points(&data);
    assert_eq!(points.len(), SEEDED_POINTS);
    let hk: Vec<&PointRecord> = points.iter().filter(|p| p.district_code == "HK").collect();
    assert_eq!(hk.len(), 17);
    assert_eq!(hk.iter().map(|p| p.capacity).sum::<i32>(), 248);
    let mut districts: Vec<&str> = points.iter().map(|p| p.district_code.as_str()).collect();
    districts.sort_unstable();
    districts.dedup();
    assert_eq!(districts, ["BD", "DD", "HBT", "HK"]);

    let out = iparking(&data, &["seed", "hanoi-pilot"]);
    assert_eq!(ok(&out), "districts created: 0, points created: 0, points already present: 27, tariffs published: 0\n");
    assert_eq!(stored_points(&data), points, "a second seed must leave the points as they were");
}

#[test]
fn a_valid_csv_imports_every_row_and_a_second_import_is_refused() {
    let dir = seeded();
    let file = write(
        dir.path(),
        "points.csv",
        &csv(&[
            "HK501,Hàng Bài – gần Tràng Tiền,HK,Hàng Bài,21.0241,105.8530,12,car;motorbike",
            "bd502,Quán Thánh – gần Hàng Bún,BD,Quán Thánh,21.0420,105.8450,8,car",
            "HBT503,Lò Đúc – gần Trần Xuân Soạn,HBT,Lò Đúc,21.0160,105.8560,20,\"car,minibus\"",
        ]),
    );

    let out = iparking(dir.path(), &["import", "points", &file]);
    assert_eq!(ok(&out), "rows: 3, imported: 3, rejected: 0\n");
    assert_eq!(stored_points(dir.path()).len(), SEEDED_POINTS + 3);

    let p = stored_point(dir.path(), "HK501").expect("HK501 imported");
    assert_eq!(p.name, "Hàng Bài – gần Tràng Tiền");
    assert_eq!(p.district_code, "HK");
    assert_eq!(p.street_name, "Hàng Bài");
    assert_eq!((p.lat, p.lon), (21.0241, 105.8530));
    assert_eq!(p.capacity, 12);
    assert_eq!(p.vehicle_classes, [VehicleClass::Car, VehicleClass::Motorbike]);
    assert_eq!(p.curb, None);
    // Codes are upper-cased on the way in.
    let p = stored_point(dir.path(), "BD502").expect("bd502 imported as BD502");
    assert_eq!((p.district_code.as_str(), p.capacity), ("BD", 8));
    let p = stored_point(dir.path(), "HBT503").expect("HBT503 imported");
    assert_eq!(p.vehicle_classes, [VehicleClass::Car, VehicleClass::Minibus]);

    // The same file again: every code is taken, nothing is written, exit 2 (nothing imported).
    let out = iparking(dir.path(), &["import", "points", &file]);
    assert_eq!(out.status.code(), Some(2), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), "rows: 3, imported: 0, rejected: 3\n");
    let err = stderr(&out);
    for (line, code) in [(2, "HK501"), (3, "BD502"), (4, "HBT503")] {
        assert!(err.contains(&format!("line {line}: {code}: point {code} already exists")), "{err}");
    }
    assert_eq!(stored_points(dir.path()).len(), SEEDED_POINTS + 3);
}

#[test]
fn a_bad_row_stops_an_all_or_nothing_import_and_is_skipped_in_valid_only_mode() {
    let dir = seeded();
    let file = write(
        dir.path(),
        "points.csv",
        &csv(&[
            "HK601,Điểm A,HK,Hàng Bài,21.0241,105.8530,12,car",
            "HK602,Điểm B,HK,Hàng Bài,21.0242,105.8531,-3,car",
            "DD603,Điểm C,DD,Xã Đàn,21.0150,105.8370,9,car;motorbike",
        ]),
    );

    // Default mode is all-or-nothing: the bad row (CSV line 3) is reported, nothing written.
    let out = iparking(dir.path(), &["import", "points", &file]);
    assert_eq!(out.status.code(), Some(2), "stdout: {}\nstderr: {}", stdout(&out), stderr(&out));
    assert_eq!(stdout(&out), "rows: 3, imported: 0, rejected: 1\n");
    let err = stderr(&out);
    assert!(err.contains("line 3: HK602: Capacity must be between 0 and 10000"), "{err}");
    assert!(!err.contains("line 2") && !err.contains("line 4"), "only line 3 is bad: {err}");
    let codes = stored_codes(dir.path());
    assert_eq!(codes.len(), SEEDED_POINTS);
    assert!(!codes.iter().any(|c| c == "HK601" || c == "DD603"), "{codes:?}");

    // The same, spelled out.
    let out = iparking(dir.path(), &["import", "points", &file, "--mode", "all-or-nothing"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stored_points(dir.path()).len(), SEEDED_POINTS);

    // Valid-only: the two good rows go in, the bad one is reported, exit 1.
    let out = iparking(dir.path(), &["import", "points", &file, "--mode", "valid-only"]);
    assert_eq!(out.status.code(), Some(1), "stdout: {}\nstderr: {}", stdout(&out), stderr(&out));
    assert_eq!(stdout(&out), "rows: 3, imported: 2, rejected: 1\n");
    assert!(stderr(&out).contains("line 3: HK602:"), "{}", stderr(&out));
    let codes = stored_codes(dir.path());
    assert_eq!(codes.len(), SEEDED_POINTS + 2);
    assert!(codes.iter().any(|c| c == "HK601") && codes.iter().any(|c| c == "DD603"), "{codes:?}");
    assert!(!codes.iter().any(|c| c == "HK602"), "{codes:?}");
    assert_eq!(
        stored_point(dir.path(), "DD603").unwrap().vehicle_classes,
        [VehicleClass::Car, VehicleClass::Motorbike]
    );
}

#[test]
fn rows_naming_an_unknown_district_or_a_code_of_another_district_are_rejected() {
    let dir = seeded();
    let file = write(
        dir.path(),
        "points.csv",
        &csv(&["ZZ701,Điểm A,ZZ,Phố Z,21.02,105.85,5,car", "BD702,Điểm B,HK,Hàng Bài,21.02,105.85,5,car"]),
    );
    let out = iparking(dir.path(), &["import", "points", &file, "--mode", "valid-only"]);
    assert_eq!(out.status.code(), Some(2), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), "rows: 2, imported: 0, rejected: 2\n");
    let err = stderr(&out);
    assert!(err.contains("line 2: ZZ701: unknown district ZZ"), "{err}");
    assert!(err.contains("line 3: BD702:") && err.contains("district code HK"), "{err}");
    assert_eq!(stored_points(dir.path()).len(), SEEDED_POINTS);
}

#[test]
fn a_geojson_line_string_imports_with_its_curb_and_midpoint() {
    let dir = seeded();
    let doc = serde_json::json!({
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "LineString", "coordinates": [[105.8500, 21.0200], [105.8520, 21.0200]]},
                "properties": {"code": "HK801", "name": "Tràng Tiền – gần Nhà hát", "district": "HK",
                               "street": "Tràng Tiền", "capacity": 10, "vehicle_classes": ["car", "minibus"]}
            },
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [105.8410, 21.0400]},
                "properties": {"code": "BD802", "name": "Hoàng Diệu – gần Cửa Bắc", "district": "BD",
                               "street": "Hoàng Diệu", "capacity": 6, "vehicle_classes": "car"}
            }
        ]
    });
    let file = write(dir.path(), "points.geojson", &doc.to_string());

    let out = iparking(dir.path(), &["import", "points", &file]);
    assert_eq!(ok(&out), "rows: 2, imported: 2, rejected: 0\n");

    let p = stored_point(dir.path(), "HK801").expect("HK801 imported");
    assert_eq!(p.curb, Some(vec![[105.8500, 21.0200], [105.8520, 21.0200]]));
    // The signboard sits halfway along the line.
    assert!((p.lat - 21.0200).abs() < 1e-9 && (p.lon - 105.8510).abs() < 1e-6, "({}, {})", p.lat, p.lon);
    assert_eq!((p.capacity, p.street_name.as_str()), (10, "Tràng Tiền"));
    assert_eq!(p.vehicle_classes, [VehicleClass::Car, VehicleClass::Minibus]);
    let p = stored_point(dir.path(), "BD802").expect("BD802 imported");
    // GeoJSON positions are [lon, lat].
    assert_eq!((p.lat, p.lon, p.curb), (21.0400, 105.8410, None));

    // `.json` is GeoJSON too.
    let doc = serde_json::json!({"type": "FeatureCollection", "features": [{
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [105.8420, 21.0410]},
        "properties": {"code": "BD803", "name": "C", "district": "BD", "street": "Hoàng Diệu",
                       "capacity": 4, "vehicle_classes": ["car"]}
    }]});
    let file = write(dir.path(), "more.json", &doc.to_string());
    assert_eq!(ok(&iparking(dir.path(), &["import", "points", &file])), "rows: 1, imported: 1, rejected: 0\n");
    assert_eq!(stored_points(dir.path()).len(), SEEDED_POINTS + 3);
}

#[test]
fn an_unknown_extension_needs_format() {
    let dir = seeded();
    let file = write(dir.path(), "points.txt", &csv(&["HK901,Điểm A,HK,Hàng Bài,21.0241,105.8530,12,car"]));

    let out = iparking(dir.path(), &["import", "points", &file]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("cannot tell the format from the file name") && err.contains("--format"), "{err}");
    assert_eq!(stdout(&out), "");
    assert_eq!(stored_points(dir.path()).len(), SEEDED_POINTS);

    // Told the format, the same file imports.
    let out = iparking(dir.path(), &["import", "points", &file, "--format", "csv"]);
    assert_eq!(ok(&out), "rows: 1, imported: 1, rejected: 0\n");
    assert!(stored_point(dir.path(), "HK901").is_some());
}

#[test]
fn a_file_that_is_not_what_its_extension_says_is_refused_whole() {
    let dir = seeded();
    let file = write(dir.path(), "points.geojson", &csv(&["HK951,Điểm A,HK,Hàng Bài,21.0241,105.8530,12,car"]));
    let out = iparking(dir.path(), &["import", "points", &file]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not valid JSON"), "{}", stderr(&out));

    let file = write(dir.path(), "bad.csv", "code,name\nHK952,A\n");
    let out = iparking(dir.path(), &["import", "points", &file]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("the CSV header lacks column(s) district"), "{}", stderr(&out));

    let out = iparking(dir.path(), &["import", "points", &dir.path().join("missing.csv").to_string_lossy()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("reading"), "{}", stderr(&out));
    assert_eq!(stored_points(dir.path()).len(), SEEDED_POINTS);
}

/// `staff add` prints the token, and only the token, on stdout; the token id on stderr.
fn staff_add(dir: &Path, args: &[&str]) -> (String, i64) {
    let mut all = vec!["staff", "add"];
    all.extend_from_slice(args);
    let out = iparking(dir, &all);
    let stdout = ok(&out);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "stdout must be exactly the token: {stdout:?}");
    assert!(stdout.ends_with('\n'));
    let token = lines[0].to_owned();
    let secret = token.strip_prefix("ipk_staff_").unwrap_or_else(|| panic!("not a staff token: {token}"));
    assert!(secret.len() == 64 && secret.bytes().all(|b| b.is_ascii_hexdigit()), "{token}");
    let err = stderr(&out);
    let token_id = err
        .split("token id ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no token id on stderr: {err}"));
    (token, token_id)
}

#[test]
fn staff_tokens_are_printed_once_and_can_be_revoked_once() {
    let dir = seeded();

    let (admin, admin_token_id) = staff_add(dir.path(), &["--role", "admin", "--name", "Ops"]);
    let p = principal(dir.path(), &admin).expect("the printed token authenticates");
    assert_eq!((p.name.as_str(), p.role, p.token_id), ("Ops", StaffRole::Admin, admin_token_id));
    assert!(p.district_codes.is_empty(), "no --district means city-wide: {:?}", p.district_codes);

    let (warden, warden_token_id) =
        staff_add(dir.path(), &["--role", "warden", "--name", "W", "--district", "hk", "--district", "BD"]);
    assert_ne!(warden, admin);
    assert_ne!(warden_token_id, admin_token_id);
    let p = principal(dir.path(), &warden).expect("the warden's token authenticates");
    assert_eq!(p.role, StaffRole::Warden);
    assert_eq!(p.district_codes, ["BD", "HK"]);

    // An unknown district: refused, nothing printed on stdout.
    let out = iparking(dir.path(), &["staff", "add", "--role", "warden", "--name", "W", "--district", "ZZ"]);
    assert!(!out.status.success());
    assert_eq!(stdout(&out), "", "no token may be printed for a refused staff member");
    assert!(stderr(&out).contains("No district with code ZZ"), "{}", stderr(&out));

    // Revoke the admin's token: once.
    let id = admin_token_id.to_string();
    let out = iparking(dir.path(), &["staff", "revoke", "--token-id", &id]);
    assert_eq!(ok(&out), format!("token {id} revoked\n"));
    assert!(principal(dir.path(), &admin).is_none(), "a revoked token must not authenticate");
    assert!(principal(dir.path(), &warden).is_some(), "revoking one token leaves the others");

    let out = iparking(dir.path(), &["staff", "revoke", "--token-id", &id]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains(&format!("no active token with id {id}")), "{}", stderr(&out));

    let out = iparking(dir.path(), &["staff", "revoke", "--token-id", "999"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no active token with id 999"), "{}", stderr(&out));
}

#[test]
fn the_first_token_of_a_fresh_database_is_id_1() {
    let dir = tempfile::tempdir().unwrap();
    let (_, token_id) = staff_add(dir.path(), &["--role", "admin", "--name", "Ops"]);
    assert_eq!(token_id, 1);
    ok(&iparking(dir.path(), &["staff", "revoke", "--token-id", "1"]));
    let out = iparking(dir.path(), &["staff", "revoke", "--token-id", "1"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no active token with id 1"), "{}", stderr(&out));
}

#[test]
fn a_bad_staff_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = iparking(dir.path(), &["staff", "add", "--role", "admin", "--name", "   "]);
    assert!(!out.status.success());
    assert_eq!(stdout(&out), "");
    assert!(stderr(&out).contains("Field name needs"), "{}", stderr(&out));
}

/// The log's `INFO` lines in a command's stderr.
fn info_lines(o: &Output) -> Vec<String> {
    stderr(o).lines().filter(|l| l.split_whitespace().nth(1) == Some("INFO")).map(str::to_owned).collect()
}

#[test]
fn commands_other_than_serve_log_warnings_and_errors_only_unless_rust_log_says() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| command(dir.path(), args).output().expect("running the iparking binary");
    for args in [&["migrate"][..], &["seed", "hanoi-pilot"], &["staff", "add", "--role", "admin", "--name", "Ops"]] {
        let out = run(args);
        ok(&out);
        assert_eq!(info_lines(&out), Vec::<String>::new(), "{args:?} without RUST_LOG: {}", stderr(&out));
    }
    let out = run(&["staff", "revoke", "--token-id", "1"]);
    ok(&out);
    assert_eq!(info_lines(&out), Vec::<String>::new(), "staff revoke: {}", stderr(&out));
    let file = write(dir.path(), "points.csv", &csv(&["HK901,Test,HK,Hàng Bài,21.02,105.85,5,car"]));
    let out = run(&["import", "points", &file]);
    ok(&out);
    assert_eq!(info_lines(&out), Vec::<String>::new(), "import: {}", stderr(&out));

    // RUST_LOG still decides when it is set.
    let out = command(dir.path(), &["staff", "add", "--role", "admin", "--name", "Ops"])
        .env("RUST_LOG", "info")
        .output()
        .expect("running the iparking binary");
    ok(&out);
    assert!(!info_lines(&out).is_empty(), "RUST_LOG=info asks for INFO lines: {}", stderr(&out));
}

/// Outside the embedded default the sandbox is off, so `serve` without an SMS gateway
/// refuses to start, and says how to try it locally.
#[test]
fn serve_on_postgres_without_an_sms_gateway_names_the_sandbox_switch() {
    use sqlx::{Connection, Executor, PgConnection};
    let admin = std::env::var("IPARKING_TEST_PG_URL").unwrap_or_else(|_| {
        panic!("IPARKING_TEST_PG_URL is not set. Run ./scripts/test, which starts PostgreSQL for the tests.")
    });
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let name = format!("iparking_cli_{}_{nanos}", std::process::id());
    block_on(async {
        let mut conn = PgConnection::connect(&admin).await.expect("connect to the test PostgreSQL");
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.expect("create a database");
    });
    let url = match admin.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{name}"),
        None => panic!("no database in {admin}"),
    };
    let dir = tempfile::tempdir().unwrap();
    let out = command(dir.path(), &["serve", "--listen", "127.0.0.1:0"])
        .env("DATABASE_URL", &url)
        .env_remove("IPARKING_SMS_GATEWAYS")
        .env_remove("IPARKING_SANDBOX_PAYMENTS")
        .env_remove("REDIS_URL")
        .output()
        .expect("running the iparking binary");
    block_on(async {
        let mut conn = PgConnection::connect(&admin).await.expect("connect to the test PostgreSQL");
        conn.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).await.unwrap();
    });
    assert!(!out.status.success(), "serve must refuse to start: {}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("IPARKING_SMS_GATEWAYS"), "{err}");
    assert!(err.contains("IPARKING_SANDBOX_PAYMENTS=true"), "{err}");
}

/// Writes two balanced ledger transactions two days ago straight into the database under
/// `dir` (a top-up and a payment), seals them and makes the days' digests through the
/// library, as a serving node's jobs would. Returns the Hanoi day and the payment's id.
fn two_days_of_ledger(dir: &Path) -> (chrono::NaiveDate, i64) {
    block_on(async {
        let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(SqliteStore::open_in(dir).await.unwrap());
        store.migrate().await.unwrap();
        let at = chrono::Utc::now() - chrono::Duration::days(2);
        let url = format!("sqlite://{}", dir.join("iparking.db").display());
        let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url).await.unwrap();
        let account = |kind: &'static str, r: &'static str| {
            sqlx::query_scalar::<_, i64>(
                "INSERT INTO accounts (kind, ref, balance, created_at) VALUES ($1, $2, 0, $3) RETURNING id",
            )
            .bind(kind)
            .bind(r)
            .bind(at)
        };
        let funding = account("sandbox_funding", "").fetch_one(&mut conn).await.unwrap();
        let wallet = account("wallet", "7").fetch_one(&mut conn).await.unwrap();
        let revenue = account("refunds", "card").fetch_one(&mut conn).await.unwrap();
        let mut ids = Vec::new();
        for (kind, from, to, amount) in
            [("sandbox_topup", funding, wallet, 50_000), ("test_payment", wallet, revenue, 20_000)]
        {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO ledger_transactions (kind, session_id, created_at) VALUES ($1, NULL, $2) RETURNING id",
            )
            .bind(kind)
            .bind(at)
            .fetch_one(&mut conn)
            .await
            .unwrap();
            for (account, amount) in [(from, -amount), (to, amount)] {
                sqlx::query("INSERT INTO postings (transaction_id, account_id, amount) VALUES ($1, $2, $3)")
                    .bind(id)
                    .bind(account)
                    .bind(amount)
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
            ids.push(id);
        }
        let app = iparking::App::new(
            store,
            std::sync::Arc::new(iparking::live::MemoryLive::new()),
            std::sync::Arc::new(iparking::SystemClock),
            iparking::Settings { check_journal_dir: Some(dir.join("checks-journal")), ..iparking::Settings::default() },
        )
        .await
        .unwrap();
        assert_eq!(iparking::app::ledger_chain::seal(&app).await.unwrap(), 2);
        assert!(!iparking::app::ledger_chain::make_digests(&app).await.unwrap().is_empty());
        let digests = serde_json::json!({ "digests": app.store.digests(100).await.unwrap() });
        std::fs::write(dir.join("digests.json"), digests.to_string()).unwrap();
        (at.with_timezone(&iparking::domain::tariff::LOCAL_TZ).date_naive(), ids[1])
    })
}

#[test]
fn ledger_verify_and_export_find_a_changed_transaction_in_the_database_and_in_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let (day, payment) = two_days_of_ledger(dir.path());
    let sound = ok(&iparking(dir.path(), &["ledger", "verify"]));
    assert!(sound.starts_with("ledger chain sound: 2 transactions (places 1..2)"), "{sound}");
    let digests = dir.path().join("digests.json");
    let with_anchor = ok(&iparking(dir.path(), &["ledger", "verify", "--digests", digests.to_str().unwrap()]));
    assert!(with_anchor.contains("digests match"), "{with_anchor}");

    // The day's export re-hashes, in the binary and against the digests kept aside.
    let export = dir.path().join("day.txt");
    let day_arg = day.to_string();
    ok(&iparking(dir.path(), &["ledger", "export", "--day", &day_arg, "--out", export.to_str().unwrap()]));
    let text = std::fs::read_to_string(&export).unwrap();
    assert!(text.contains("|sandbox_topup|-|sandbox_funding:=-50000/-/-;wallet:~"), "{text}");
    assert!(!text.contains("wallet:7"), "the wallet's owner is not in the export: {text}");
    let file_check = ok(&iparking(
        dir.path(),
        &["ledger", "verify", "--file", export.to_str().unwrap(), "--digests", digests.to_str().unwrap()],
    ));
    assert!(file_check.contains("2 transactions re-hashed") && file_check.contains("published digest"), "{file_check}");

    // The export changed by hand: the file check names the transaction.
    std::fs::write(&export, text.replace("=20000/", "=2000/")).unwrap();
    let o = iparking(dir.path(), &["ledger", "verify", "--file", export.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains(&format!("BROKEN: {}: line", export.display())), "{}", stdout(&o));
    assert!(stdout(&o).contains(&format!("transaction {payment} (place 2)")), "{}", stdout(&o));

    // The database changed behind the server's back: verify names the transaction.
    block_on(async {
        let url = format!("sqlite://{}", dir.path().join("iparking.db").display());
        let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url).await.unwrap();
        sqlx::query("UPDATE postings SET amount = amount / 10 WHERE transaction_id = $1")
            .bind(payment)
            .execute(&mut conn)
            .await
            .unwrap();
    });
    let o = iparking(dir.path(), &["ledger", "verify"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains(&format!("BROKEN: transaction {payment} (place 2) was changed")), "{}", stdout(&o));

    // A day with no digest cannot be exported.
    let o = iparking(dir.path(), &["ledger", "export", "--day", "2001-01-01"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("2001-01-01 has no digest yet"), "{}", stderr(&o));
}
