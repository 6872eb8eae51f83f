//! Issue 34: the Curb Data Specification 1.1 feeds at `/cds/…`. Every answer is validated
//! against the standard's own YAML schemas (vendored unchanged under tests/standards/cds/,
//! `$ref`s resolved here, the corrections of tests/standards/cds-corrections.yaml applied in
//! memory), on SQLite + in-process live state and on PostgreSQL + Redis; with sessions
//! started and stopped, warden cash, plate checks and a citation in the data. Also: no
//! personal data anywhere, access (public Curbs; `data` role or `IPARKING_OPEN_DATA=public`
//! for Events and Metrics), time-bounded and paginated events, metrics equal to the
//! sessions and the ledger, and the migration that allows the role on SQLite.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::{Path, PathBuf},
};

use iparking_mobile_api::{
    PhotoUpload, StaffRole, StartSession, VehicleClass, ViolationForm, ViolationKind, WardenPayment, WardenStartSession,
};
use iparking_tests::{Db, Live, Options, TestApp, assert_error, matrix, raw, tiny_png};
use serde_json::{Value, json};

// ---- The standard's schemas ----

fn standards() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("standards")
}

/// Every file under `dir`, as paths relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The CDS documents, by path relative to `standards/cds` (`APIs/Curbs API.yaml`), as JSON.
struct Cds {
    docs: HashMap<String, Value>,
}

impl Cds {
    /// The vendored documents, with the corrections applied (or not).
    fn load(corrected: bool) -> Self {
        let root = standards().join("cds");
        let mut docs = HashMap::new();
        for f in files_under(&root).into_iter().filter(|f| f.ends_with(".yaml")) {
            let text = std::fs::read_to_string(root.join(&f)).unwrap();
            let v: Value = serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{f}: {e}"));
            docs.insert(f, v);
        }
        assert!(docs.len() >= 40, "the CDS documents are vendored ({} files)", docs.len());
        let mut cds = Self { docs };
        if corrected {
            let text = std::fs::read_to_string(standards().join("cds-corrections.yaml")).unwrap();
            let fixes: Vec<Value> = serde_norway::from_str(&text).unwrap();
            assert!(!fixes.is_empty());
            for fix in fixes {
                let file = fix["file"].as_str().unwrap();
                let pointer = fix["pointer"].as_str().unwrap();
                assert!(!fix["reason"].as_str().unwrap_or_default().is_empty(), "{file}{pointer}: a reason");
                let doc = cds.docs.get_mut(file).unwrap_or_else(|| panic!("correction of a missing file {file}"));
                let slot = doc.pointer_mut(pointer).unwrap_or_else(|| panic!("stale correction {file}{pointer}"));
                *slot = fix["value"].clone();
            }
        }
        cds
    }

    /// `value` (found in `file`) with every `$ref` replaced by what it names, resolved
    /// relative to the file that holds it: `{"allOf": [target], …siblings}`.
    fn bundle(&self, file: &str, value: &Value, depth: usize) -> Value {
        assert!(depth < 40, "$ref cycle near {file}");
        match value {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    let (target_file, target) = self.target(file, r);
                    let mut out = serde_json::Map::new();
                    for (k, v) in m {
                        if k != "$ref" {
                            out.insert(k.clone(), self.bundle(file, v, depth + 1));
                        }
                    }
                    out.insert("allOf".into(), json!([self.bundle(&target_file, &target, depth + 1)]));
                    return Value::Object(out);
                }
                Value::Object(m.iter().map(|(k, v)| (k.clone(), self.bundle(file, v, depth + 1))).collect())
            }
            Value::Array(a) => Value::Array(a.iter().map(|v| self.bundle(file, v, depth + 1)).collect()),
            other => other.clone(),
        }
    }

    /// The file and value a `$ref` names from `file`.
    fn target(&self, file: &str, r: &str) -> (String, Value) {
        let (path, fragment) = r.split_once('#').unwrap_or((r, ""));
        let target_file = if path.is_empty() {
            file.to_owned()
        } else {
            let mut parts: Vec<&str> = file.split('/').collect();
            parts.pop();
            for seg in path.split('/') {
                match seg {
                    "." | "" => {}
                    ".." => {
                        parts.pop();
                    }
                    s => parts.push(s),
                }
            }
            parts.join("/")
        };
        let doc = self.docs.get(&target_file).unwrap_or_else(|| panic!("{file}: $ref to a missing {target_file}"));
        let v = if fragment.is_empty() { doc } else { doc.pointer(fragment).unwrap_or_else(|| panic!("{r}")) };
        (target_file, v.clone())
    }

    /// The 200 JSON answer's schema of `GET {path}` in `APIs/{api} API.yaml`.
    fn answer(&self, api: &str, path: &str) -> Value {
        let file = format!("APIs/{api} API.yaml");
        let pointer = format!("/paths/{}/get/responses/200/content/application~1json/schema", path.replace('/', "~1"));
        let schema = self.docs[&file].pointer(&pointer).unwrap_or_else(|| panic!("{file}{pointer}"));
        self.bundle(&file, schema, 0)
    }

    /// A shared data model or a REST response field, bundled.
    fn model(&self, file: &str) -> Value {
        self.bundle(file, &self.docs[file], 0)
    }

    /// The envelope general-information.md requires of every JSON answer, around `data`
    /// holding `key`: an array of `item`s (the Metrics API documents only its CSV form).
    fn envelope_of(&self, key: &str, item: &str) -> Value {
        let r = |name: &str| self.model(&format!("Rest Responses/rest_response_{name}.yaml"));
        json!({
            "type": "object",
            "required": ["version", "time_zone", "last_updated", "currency", "data"],
            "properties": {
                "version": r("version"), "time_zone": r("time_zone"), "last_updated": r("last_updated"),
                "currency": r("currency"), "author": r("author"), "license_url": r("license_url"),
                "data": {
                    "type": "object",
                    "required": [key],
                    "properties": { key: { "type": "array", "items": self.model(&format!("Shared Data Models/{item}.yaml")) } }
                }
            }
        })
    }
}

/// Every error of `instance` against `schema` (JSON Schema 2020-12, formats asserted).
fn errors(schema: &Value, instance: &Value) -> Vec<String> {
    let v = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(schema)
        .unwrap_or_else(|e| panic!("the schema compiles: {e}"));
    v.iter_errors(instance).map(|e| format!("{} at {}", e, e.instance_path())).collect()
}

#[track_caller]
fn assert_valid(schema: &Value, instance: &Value, what: &str) {
    let errs = errors(schema, instance);
    assert!(errs.is_empty(), "{what} breaks the CDS schema:\n{}\n{instance:#}", errs.join("\n"));
}

// ---- Requests ----

async fn get(t: &TestApp, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut r = reqwest::Client::new().get(t.url(path));
    if let Some(tok) = token {
        r = r.bearer_auth(tok);
    }
    raw(r).await
}

async fn get_csv(t: &TestApp, path: &str, token: &str) -> (u16, String, String) {
    let r = reqwest::Client::new()
        .get(t.url(path))
        .bearer_auth(token)
        .header("accept", "application/vnd.cds+csv;version=1.1")
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let ct = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (status, ct, r.text().await.unwrap())
}

/// The rows of a CSV answer as objects typed by `item`'s properties (numbers, integers,
/// `;`-separated arrays; empty cells absent), for validation against the CDS schema.
fn csv_rows(csv: &str, item: &Value) -> Vec<Value> {
    let kind = |prop: &Value| -> String {
        let mut p = prop;
        loop {
            if let Some(t) = p.get("type").and_then(Value::as_str) {
                return t.to_owned();
            }
            match p.get("allOf").and_then(|a| a.get(0)) {
                Some(inner) => p = inner,
                None => return "string".into(),
            }
        }
    };
    let props = item.get("properties").cloned().unwrap_or_default();
    let mut r = csv::Reader::from_reader(csv.as_bytes());
    let headers = r.headers().unwrap().clone();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            let mut m = serde_json::Map::new();
            for (h, cell) in headers.iter().zip(rec.iter()) {
                if cell.is_empty() {
                    continue;
                }
                let v = match props.get(h).map(kind).as_deref() {
                    Some("integer") => json!(cell.parse::<i64>().unwrap_or_else(|_| panic!("{h}={cell}"))),
                    Some("number") => json!(cell.parse::<f64>().unwrap_or_else(|_| panic!("{h}={cell}"))),
                    Some("array") => json!(cell.split(';').collect::<Vec<_>>()),
                    _ => match h {
                        "actual_cost" | "revenue" => json!(cell.parse::<i64>().unwrap()),
                        _ => json!(cell),
                    },
                };
                m.insert(h.to_owned(), v);
            }
            Value::Object(m)
        })
        .collect()
}

fn assert_envelope(body: &Value, license: &str) {
    assert_eq!(body["version"], "1.1.0", "{body}");
    assert_eq!(body["time_zone"], "Asia/Ho_Chi_Minh");
    assert_eq!(body["currency"], "VND");
    assert_eq!(body["license_url"], license);
    assert_eq!(body["author"], "iParking");
    let updated = body["last_updated"].as_i64().expect("last_updated in ms");
    assert!(updated > 1_500_000_000_000 && updated <= chrono::Utc::now().timestamp_millis() + 60_000, "{updated}");
}

/// Strings that must appear in no answer: plates as typed and stored, phones, usernames.
fn assert_private(text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!text.contains(s), "{s:?} published in {text}");
    }
}

fn start(point: &str, plate: &str, minutes: u32) -> StartSession {
    iparking_tests::finance::car_minutes(point, plate, minutes)
}

fn zone_id(code: &str) -> String {
    iparking::domain::cds::zone_id(code).to_string()
}

// ---- Curbs ----

matrix!(curbs_zones_areas_and_policies_follow_the_schemas_and_are_public, |t| {
    let cds = Cds::load(true);
    let points = t.sql_i64("SELECT COUNT(*) FROM points").await;

    // Zones: one per point, no login, the envelope, RFC 7946 polygons.
    let resp = reqwest::Client::new().get(t.url("/cds/curbs/zones")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/vnd.cds+json;version=1.1");
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    let zones: Value = resp.json().await.unwrap();
    assert_valid(&cds.answer("Curbs", "/curbs/zones"), &zones, "GET /cds/curbs/zones");
    assert_envelope(&zones, "https://creativecommons.org/licenses/by/4.0/");
    let list = zones["data"]["zones"].as_array().unwrap();
    assert_eq!(list.len() as i64, points);
    // The validation bites: a zone without a field the schema requires fails it.
    let mut lacking = zones.clone();
    lacking["data"]["zones"][0].as_object_mut().unwrap().remove("published_date");
    assert!(!errors(&cds.answer("Curbs", "/curbs/zones"), &lacking).is_empty(), "a missing required field fails");
    let hk001 = list.iter().find(|z| z["user_zone_id"] == "HK001").expect("HK001");
    assert_eq!(hk001["curb_zone_id"], zone_id("HK001"));
    assert_eq!(hk001["street_name"], "Lý Thường Kiệt");
    assert_eq!(hk001["jurisdiction_type"], "public");
    assert!(hk001["length"].as_i64().unwrap() > 2000, "the seeded curb line is ~30 m: {hk001}");
    let ring = hk001["geometry"]["coordinates"][0].as_array().unwrap();
    assert_eq!(ring.first(), ring.last(), "a closed ring");
    let pts: Vec<[f64; 2]> = ring.iter().map(|p| [p[0].as_f64().unwrap(), p[1].as_f64().unwrap()]).collect();
    assert!(iparking::domain::cds::signed_area2(&pts) > 0.0, "counter-clockwise exterior");
    let ids: BTreeSet<&str> = list.iter().map(|z| z["curb_zone_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), list.len(), "one id per zone");
    assert_eq!(hk001["available_spaces"], hk001["num_spaces"], "no session yet");

    // One zone by id: the same object; unknown ids are 404 in our error shape.
    let (status, one) = get(&t, &format!("/cds/curbs/zones/{}", zone_id("HK001")), None).await;
    assert_eq!(status, 200, "{one}");
    assert_valid(&cds.answer("Curbs", "/curbs/zones/{id}"), &one, "GET /cds/curbs/zones/{id}");
    assert_eq!(&one["data"]["user_zone_id"], "HK001");
    assert_eq!(one["data"]["geometry"], hk001["geometry"]);
    assert_eq!(one["data"]["curb_policy_ids"], hk001["curb_policy_ids"]);
    // A session takes a space: the zone's free spaces follow the live state.
    let driver = t.funded_driver("0912777301", 500_000).await;
    driver.start_session(&start("HK001", "30A-555.31", 60), "cds-free").await.unwrap();
    let (_, after) = get(&t, &format!("/cds/curbs/zones/{}", zone_id("HK001")), None).await;
    assert_eq!(after["data"]["available_spaces"].as_i64(), hk001["num_spaces"].as_i64().map(|n| n - 1), "{after}");
    assert_valid(&cds.answer("Curbs", "/curbs/zones/{id}"), &after, "GET /cds/curbs/zones/{id}");
    assert_error(&get(&t, "/cds/curbs/zones/00000000-0000-4000-8000-000000000000", None).await, 404, "zone_not_found");
    assert_error(&get(&t, "/cds/curbs/zones/HK001", None).await, 404, "zone_not_found");

    // The query parameters the Curbs API defines.
    let lat = hk001["geometry"]["coordinates"][0][0][1].as_f64().unwrap();
    let lon = hk001["geometry"]["coordinates"][0][0][0].as_f64().unwrap();
    let (status, near) = get(&t, &format!("/cds/curbs/zones?lat={lat}&lng={lon}&radius=100000"), None).await;
    assert_eq!(status, 200, "{near}");
    let near = near["data"]["zones"].as_array().unwrap().clone();
    assert!(!near.is_empty() && (near.len() as i64) < points, "within 1 km: {}", near.len());
    assert_eq!(near[0]["user_zone_id"], "HK001", "nearest first");
    let (_, boxed) = get(
        &t,
        &format!(
            "/cds/curbs/zones?min_lat={}&min_lng={}&max_lat={}&max_lng={}",
            lat - 0.0001,
            lon - 0.0001,
            lat + 0.0001,
            lon + 0.0001
        ),
        None,
    )
    .await;
    let boxed: Vec<&str> =
        boxed["data"]["zones"].as_array().unwrap().iter().map(|z| z["user_zone_id"].as_str().unwrap()).collect();
    assert!(boxed.contains(&"HK001") && (boxed.len() as i64) < points, "{boxed:?}");
    let hk_area = hk001["curb_area_ids"][0].as_str().unwrap().to_owned();
    let (_, in_area) = get(&t, &format!("/cds/curbs/zones?area={hk_area}"), None).await;
    let in_area = in_area["data"]["zones"].as_array().unwrap();
    let hk_points = t.sql_i64("SELECT COUNT(*) FROM points p JOIN streets s ON s.id = p.street_id JOIN districts d ON d.id = s.district_id WHERE d.code = 'HK'").await;
    assert_eq!(in_area.len() as i64, hk_points);
    assert!(in_area.iter().all(|z| z["user_zone_id"].as_str().unwrap().starts_with("HK")));
    let (_, bare) = get(&t, "/cds/curbs/zones?include_geometry=false", None).await;
    assert!(bare["data"]["zones"].as_array().unwrap().iter().all(|z| z.get("geometry").is_none()));
    let (_, before) = get(&t, "/cds/curbs/zones?time=1000000000000", None).await;
    assert_eq!(before["data"]["zones"], json!([]), "no zone existed in 2001");
    for bad in [
        "/cds/curbs/zones?min_lat=21",
        "/cds/curbs/zones?lat=21&lng=105&radius=10&min_lat=1&min_lng=1&max_lat=2&max_lng=2",
        "/cds/curbs/zones?lat=abc&lng=105&radius=10",
        "/cds/curbs/zones?area=not-a-uuid",
        "/cds/curbs/zones?time=yesterday",
        "/cds/curbs/zones?include_geometry=maybe",
        "/cds/curbs/policies?ids=1,2",
    ] {
        assert_error(&get(&t, bad, None).await, 400, "invalid_parameter");
    }

    // Areas: one per district with points, holding all of its zones.
    let (status, areas) = get(&t, "/cds/curbs/areas", None).await;
    assert_eq!(status, 200, "{areas}");
    assert_valid(&cds.answer("Curbs", "/curbs/areas"), &areas, "GET /cds/curbs/areas");
    let area_list = areas["data"]["areas"].as_array().unwrap();
    assert_eq!(area_list.len(), 4, "HK, BD, HBT, DD");
    let in_areas: BTreeSet<&str> =
        area_list.iter().flat_map(|a| a["curb_zone_ids"].as_array().unwrap()).map(|z| z.as_str().unwrap()).collect();
    assert_eq!(in_areas, ids);
    let (status, one_area) = get(&t, &format!("/cds/curbs/areas/{hk_area}"), None).await;
    assert_eq!(status, 200, "{one_area}");
    assert_valid(&cds.answer("Curbs", "/curbs/areas/{id}"), &one_area, "GET /cds/curbs/areas/{id}");
    assert_eq!(one_area["data"]["name"], "Hoàn Kiếm");
    assert_eq!(one_area["data"]["curb_zone_ids"].as_array().unwrap().len() as i64, hk_points);
    assert_error(&get(&t, &format!("/cds/curbs/areas/{}", zone_id("HK001")), None).await, 404, "area_not_found");

    // Policies: the tariffs in force, every zone's policy ids resolvable.
    let (status, policies) = get(&t, "/cds/curbs/policies", None).await;
    assert_eq!(status, 200, "{policies}");
    assert_valid(&cds.answer("Curbs", "/curbs/policies"), &policies, "GET /cds/curbs/policies");
    let by_id: HashMap<&str, &Value> = policies["data"]["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["curb_policy_id"].as_str().unwrap(), p))
        .collect();
    for z in list {
        let ids = z["curb_policy_ids"].as_array().unwrap();
        assert!(!ids.is_empty(), "{z}");
        for id in ids {
            assert!(by_id.contains_key(id.as_str().unwrap()), "{id} of {} is listed", z["user_zone_id"]);
        }
    }
    // Hoàn Kiếm's cars: 25,000/h for hours 1–2, 35,000 for 3–4, 45,000 from hour 5; the night
    // block as the rates' maximum fee; the daily cap only in custom_attributes.
    let car_policies: Vec<&&Value> = hk001["curb_policy_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| &by_id[id.as_str().unwrap()])
        .filter(|p| p["rules"][0]["user_classes"].as_array().unwrap().contains(&json!("car")))
        .collect();
    let day = car_policies.iter().find(|p| p["time_spans"][0]["time_of_day_start"] == "06:00").expect("day window");
    let rates: Vec<(i64, i64)> = day["rules"][0]["rate"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["rate"].as_i64().unwrap(), r["start_duration"].as_i64().unwrap()))
        .collect();
    assert_eq!(rates, vec![(25_000, 0), (35_000, 2), (45_000, 4)]);
    assert_eq!(day["rules"][0]["rate"][0]["rate_unit"], "hour");
    assert_eq!(day["custom_attributes"]["daily_cap"], "300000");
    let night = car_policies.iter().find(|p| p["time_spans"][0]["time_of_day_start"] == "18:00").expect("night window");
    assert_eq!(night["time_spans"][0]["time_of_day_end"], "06:00");
    assert_eq!(night["rules"][0]["rate"][0]["maximum_fee"], 150_000);
    assert_eq!(night["custom_attributes"]["block_price"], "150000");
    let one_id = day["curb_policy_id"].as_str().unwrap();
    let (_, only) = get(&t, &format!("/cds/curbs/policies?ids={one_id}"), None).await;
    assert_eq!(only["data"]["policies"].as_array().unwrap().len(), 1);
    let (status, single) = get(&t, &format!("/cds/curbs/policies/{one_id}"), None).await;
    assert_eq!(status, 200, "{single}");
    assert_valid(&cds.answer("Curbs", "/curbs/policies/{id}"), &single, "GET /cds/curbs/policies/{id}");
    assert_eq!(&single["data"], **day);
    assert_error(&get(&t, &format!("/cds/curbs/policies/{}", zone_id("HK001")), None).await, 404, "policy_not_found");
    assert_error(&get(&t, "/cds/curbs/policies/nope", None).await, 404, "policy_not_found");

    // Versions and optional endpoints.
    let v10 = reqwest::Client::new()
        .get(t.url("/cds/curbs/zones"))
        .header("accept", "application/vnd.cds+json;version=1.0")
        .send()
        .await
        .unwrap();
    assert_eq!(v10.status(), 406);
    let v10: Value = v10.json().await.unwrap();
    assert_eq!(v10["error"]["code"], "not_acceptable");
    assert_error(&get(&t, "/cds/curbs/spaces", None).await, 501, "not_implemented");
    assert_error(&get(&t, "/cds/events/status", None).await, 501, "not_implemented");
});

// ---- Events and Metrics ----

/// Sessions (two from the wallet, one stopped; one paid in cash to a warden), two plate
/// checks and a citation. Returns the data reader's token and the secrets that must never
/// be published.
async fn activity(t: &TestApp) -> (String, Vec<&'static str>, i64) {
    let driver = t.funded_driver("0912777001", 1_000_000).await;
    let a = driver.start_session(&start("HK001", "30A-555.01", 120), "cds-a").await.unwrap();
    let b = driver.start_session(&start("HK002", "30A-555.02", 60), "cds-b").await.unwrap();
    let stopped = driver.stop_session(b.id, "cds-b-stop").await.unwrap();
    let (warden, _) = t.warden_with(StaffRole::Warden, "cds.warden", &["HK"], &[]).await;
    warden.open_shift(&Default::default(), "cds-shift").await.unwrap();
    let cash = WardenStartSession {
        point_code: "HK003".into(),
        plate: "30A-555.03".into(),
        vehicle_class: VehicleClass::Car,
        turns: Some(1),
        minutes: None,
        payment: WardenPayment::Cash,
    };
    let cash = warden.warden_start_session(&cash, "cds-cash").await.unwrap().receipt.amount;
    warden.check_plate("30A-555.01", "HK001").await.unwrap();
    warden.check_plate("29H-999.88", "HK001").await.unwrap();
    let form = ViolationForm {
        plate: "29H-999.88".into(),
        point: "HK001".into(),
        kind: ViolationKind::Unpaid,
        note: "Không trả tiền, chủ xe 0912777001 vắng mặt".into(),
        lat: Some(21.0257),
        lon: Some(105.846),
        photos: vec![PhotoUpload { filename: "p.png".into(), content_type: "image/png".into(), bytes: tiny_png(7) }],
    };
    warden.create_violation(&form, "cds-violation").await.unwrap();
    t.flush_checks().await;
    let total = a.amount_charged + stopped.amount_charged - stopped.amount_refunded + cash;
    let data = t.staff(StaffRole::Data, &[]).await.token().unwrap().to_owned();
    let secrets = vec![
        "30A55501",
        "30A-555.01",
        "555.01",
        "30A55502",
        "555.02",
        "30A55503",
        "555.03",
        "29H99988",
        "999.88",
        "912777001",
        "0912777001",
        "cds.warden",
        "cds.warden test",
        "data test",
        "IP-0",
    ];
    (data, secrets, total)
}

matrix!(events_and_metrics_follow_the_schemas_hold_no_personal_data_and_add_up, |t| {
    let cds = Cds::load(true);
    let (data, secrets, total) = activity(&t).await;

    // Events: one per session start and end, check and citation, in the last 60 minutes.
    let (status, events) = get(&t, "/cds/events/events", Some(&data)).await;
    assert_eq!(status, 200, "{events}");
    assert_valid(&cds.answer("Events", "/events/events"), &events, "GET /cds/events/events");
    assert_envelope(&events, "https://creativecommons.org/licenses/by/4.0/");
    assert_private(&events.to_string(), &secrets);
    assert_eq!(events["links"]["next"], Value::Null, "one page");
    let list = events["data"]["events"].as_array().unwrap();
    let count = |kind: &str| list.iter().filter(|e| e["event_type"] == kind).count() as i64;
    assert_eq!(count("park_start"), t.sql_i64("SELECT COUNT(*) FROM sessions").await);
    assert_eq!(count("park_start"), 3);
    assert_eq!(count("park_end"), 1, "the stopped session");
    assert_eq!(count("vehicle_detected"), t.sql_i64("SELECT COUNT(*) FROM plate_checks").await);
    assert!(count("vehicle_detected") >= 2);
    assert_eq!(count("citation_issued"), 1);
    let times: Vec<i64> = list.iter().map(|e| e["event_time"].as_i64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first: {times:?}");
    // A session's start and end share its opaque session id; the end carries what it cost.
    let end = list.iter().find(|e| e["event_type"] == "park_end").unwrap();
    let start_of = list
        .iter()
        .find(|e| e["event_type"] == "park_start" && e["event_session_id"] == end["event_session_id"])
        .expect("the stopped session's start");
    assert_eq!(start_of["curb_zone_id"], zone_id("HK002"));
    assert_eq!(end["custom_attributes"]["end_reason"], "stopped");
    assert!(end["actual_cost"].as_i64().unwrap() >= 0);
    let citation = list.iter().find(|e| e["event_type"] == "citation_issued").unwrap();
    assert_eq!(citation["enforcement"]["violations"][0]["violation_code"], "unpaid");
    assert_eq!(citation["data_source_type"], "in_person");
    let ids: BTreeSet<&str> = list.iter().map(|e| e["event_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), list.len(), "unique event ids");
    // Filters: a zone, an area, and places we do not publish.
    let (_, at_hk002) = get(&t, &format!("/cds/events/events?curb_zone_id={}", zone_id("HK002")), Some(&data)).await;
    assert_eq!(at_hk002["data"]["events"].as_array().unwrap().len(), 2, "HK002's start and end");
    let bd = iparking::domain::cds::area_id("BD");
    let (_, in_bd) = get(&t, &format!("/cds/events/events?curb_area_id={bd}"), Some(&data)).await;
    assert_eq!(in_bd["data"]["events"], json!([]));
    let (_, space) = get(&t, &format!("/cds/events/events?curb_space_id={bd}"), Some(&data)).await;
    assert_eq!(space["data"]["events"], json!([]));

    // Metric sessions, as JSON and as CDS CSV: every row valid, costs as charged.
    let session_item = cds.model("Shared Data Models/session.yaml");
    let (status, sessions) = get(&t, "/cds/metrics/sessions", Some(&data)).await;
    assert_eq!(status, 200, "{sessions}");
    assert_valid(&cds.envelope_of("sessions", "session"), &sessions, "GET /cds/metrics/sessions");
    assert_envelope(&sessions, "https://creativecommons.org/licenses/by/4.0/");
    assert_private(&sessions.to_string(), &secrets);
    let rows = sessions["data"]["sessions"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows.iter().map(|r| r["actual_cost"].as_i64().unwrap()).sum::<i64>(), total);
    let session_ids: BTreeSet<&str> = rows.iter().map(|r| r["event_session_id"].as_str().unwrap()).collect();
    let event_session_ids: BTreeSet<&str> = list
        .iter()
        .filter(|e| e["event_type"] == "park_start")
        .map(|e| e["event_session_id"].as_str().unwrap())
        .collect();
    assert_eq!(session_ids, event_session_ids, "the metrics' sessions are the events' sessions");
    let (status, ct, csv) = get_csv(&t, "/cds/metrics/sessions", &data).await;
    assert_eq!((status, ct.as_str()), (200, "application/vnd.cds+csv;version=1.1"), "{csv}");
    assert!(csv.starts_with("session_type,event_session_id,event_id_start,event_id_end,"), "{csv}");
    assert_private(&csv, &secrets);
    let typed = csv_rows(&csv, &session_item);
    assert_eq!(typed.len(), 3);
    for r in &typed {
        assert_valid(&session_item, r, "a metric session (CSV)");
    }
    assert_eq!(typed.iter().map(|r| r["actual_cost"].as_i64().unwrap()).sum::<i64>(), total);

    // Aggregates per zone and local hour: sessions, occupancy and the ledger's revenue, half
    // an hour later (a running session occupies its space up to now).
    t.clock.advance(chrono::Duration::minutes(30));
    let aggregate_item = cds.model("Shared Data Models/aggregate.yaml");
    let (status, agg) = get(&t, "/cds/metrics/aggregates", Some(&data)).await;
    assert_eq!(status, 200, "{agg}");
    assert_valid(&cds.envelope_of("aggregates", "aggregate"), &agg, "GET /cds/metrics/aggregates");
    assert_private(&agg.to_string(), &secrets);
    let rows = agg["data"]["aggregates"].as_array().unwrap();
    let sum = |metric: &str, zone: Option<&str>| -> f64 {
        rows.iter()
            .filter(|r| r["metric_type"] == metric && zone.is_none_or(|z| r["curb_place_id"] == z))
            .map(|r| r["value"].as_f64().unwrap())
            .sum()
    };
    assert_eq!(sum("total_sessions", None), 3.0);
    assert_eq!(sum("total_sessions", Some(&zone_id("HK002"))), 1.0);
    // Every event of the Events feed, counted where and when it happened.
    assert_eq!(sum("total_events", None), list.len() as f64);
    assert_eq!(sum("total_events", Some(&zone_id("HK002"))), 2.0, "HK002's start and end");
    let occupancy: Vec<f64> =
        rows.iter().filter(|r| r["metric_type"] == "occupancy_percent").map(|r| r["value"].as_f64().unwrap()).collect();
    assert!(occupancy.iter().all(|v| (0.0..=100.0).contains(v)), "{occupancy:?}");
    // HK001's running session: 30 minutes of one space in the zone's hours.
    let capacity = t.sql_i64("SELECT CAST(capacity AS BIGINT) FROM points WHERE code = 'HK001'").await as f64;
    let occupied_s = sum("occupancy_percent", Some(&zone_id("HK001"))) / 100.0 * capacity * 3600.0;
    assert!((occupied_s - 1800.0).abs() <= 2.0 * 0.0001 * capacity * 3600.0 + 2.0, "{occupied_s} s occupied at HK001");
    let dwell = sum("average_dwell_time", Some(&zone_id("HK001")));
    assert!((dwell - 30.0).abs() < 0.1, "HK001's session has lasted 30 minutes: {dwell}");
    // Revenue: one figure per zone-hour (repeated on its metric rows), summing to the ledger's.
    let mut revenue: BTreeMap<(String, String, i64), i64> = BTreeMap::new();
    for r in rows {
        let key = (
            r["curb_place_id"].as_str().unwrap().to_owned(),
            r["date"].as_str().unwrap().to_owned(),
            r["hour"].as_i64().unwrap(),
        );
        let v = r["revenue"].as_i64().unwrap();
        assert_eq!(*revenue.entry(key).or_insert(v), v, "one revenue per zone-hour");
    }
    let ledger = t
        .sql_i64(
            "SELECT CAST(COALESCE(SUM(p.amount), 0) AS BIGINT) FROM postings p JOIN accounts a ON a.id = p.account_id \
             WHERE a.kind = 'point_revenue'",
        )
        .await;
    assert_eq!(revenue.values().sum::<i64>(), ledger);
    assert_eq!(ledger, total, "the sessions' charges");
    let hk001: i64 = revenue.iter().filter(|((z, _, _), _)| *z == zone_id("HK001")).map(|(_, v)| v).sum();
    assert_eq!(hk001, rows_paid_at(&sessions, &zone_id("HK001")));
    let (status, _, csv) = get_csv(&t, "/cds/metrics/aggregates", &data).await;
    assert_eq!(status, 200);
    assert!(csv.starts_with("curb_place_type,curb_place_id,metric_type,date,hour,value,revenue"), "{csv}");
    let typed_agg = csv_rows(&csv, &aggregate_item);
    assert_eq!(typed_agg.len(), rows.len());
    for r in &typed_agg {
        assert_valid(&aggregate_item, r, "an aggregate (CSV)");
    }
    // By area, and one metric.
    let hk = iparking::domain::cds::area_id("HK");
    let (_, by_area) = get(
        &t,
        &format!("/cds/metrics/aggregates?curb_place_type=area&curb_place_id={hk}&metric_type=total_sessions"),
        Some(&data),
    )
    .await;
    let by_area = by_area["data"]["aggregates"].as_array().unwrap();
    assert!(by_area.iter().all(|r| r["curb_place_type"] == "area" && r["metric_type"] == "total_sessions"));
    assert_eq!(by_area.iter().map(|r| r["value"].as_f64().unwrap()).sum::<f64>(), 3.0);
});

/// What the metric sessions at `zone` paid.
fn rows_paid_at(sessions: &Value, zone: &str) -> i64 {
    sessions["data"]["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["curb_zone_id"] == zone)
        .map(|r| r["actual_cost"].as_i64().unwrap())
        .sum()
}

matrix!(events_are_time_bounded_and_pages_visit_every_event_once, |t| {
    let (data, _, _) = activity(&t).await;
    let (warden, _) = t.warden_with(StaffRole::Warden, "cds.pager", &["HK"], &[]).await;
    for i in 0..14 {
        warden.check_plate(&format!("30A-600.{i:02}"), "HK004").await.unwrap();
    }
    t.flush_checks().await;
    let (_, all) = get(&t, "/cds/events/events?limit=1000", Some(&data)).await;
    let all: Vec<String> =
        all["data"]["events"].as_array().unwrap().iter().map(|e| e["event_id"].as_str().unwrap().to_owned()).collect();
    let expected = t.sql_i64("SELECT COUNT(*) FROM plate_checks").await + 3 + 1 + 1;
    assert_eq!(all.len() as i64, expected);

    // Pages of 4, following links.next until it is null: every event exactly once, in order.
    let mut seen: Vec<String> = Vec::new();
    let mut url = "/cds/events/events?limit=4".to_owned();
    let mut pages = 0;
    loop {
        let (status, page) = get(&t, &url, Some(&data)).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        let events = page["data"]["events"].as_array().unwrap();
        assert!(events.len() <= 4);
        seen.extend(events.iter().map(|e| e["event_id"].as_str().unwrap().to_owned()));
        assert!(page["links"]["first"].as_str().unwrap().starts_with("/cds/events/events?"));
        match page["links"]["next"].as_str() {
            Some(next) => url = next.to_owned(),
            None => break,
        }
        assert!(pages < 50, "pagination ends");
    }
    assert_eq!(seen, all, "the pages are the whole answer, in order, each event once");
    assert_eq!(pages, all.len().div_ceil(4));

    // Time-bounded: an hour is one UTC hour; without one, the last 60 minutes.
    let hour = chrono::Utc::now().format("%Y-%m-%dT%H").to_string();
    let (status, this_hour) = get(&t, &format!("/cds/events/events?event_time={hour}&limit=1000"), Some(&data)).await;
    assert_eq!(status, 200, "{this_hour}");
    let in_hour = this_hour["data"]["events"].as_array().unwrap().len();
    assert!(in_hour > 0 && in_hour <= all.len());
    let (_, long_ago) = get(&t, "/cds/events/events?event_time=2019-10-01T07", Some(&data)).await;
    assert_eq!(long_ago["data"]["events"], json!([]));
    t.clock.advance(chrono::Duration::hours(2));
    let (_, later) = get(&t, "/cds/events/events", Some(&data)).await;
    assert_eq!(later["data"]["events"], json!([]), "nothing in the last 60 minutes any more");
    let (_, again) = get(&t, &format!("/cds/events/events?event_time={hour}&limit=1000"), Some(&data)).await;
    assert_eq!(again["data"]["events"].as_array().unwrap().len(), in_hour, "an hour's events stay");
    for bad in [
        "/cds/events/events?event_time=2026-12-01",
        "/cds/events/events?event_time=2026-12-01T7",
        "/cds/events/events?event_time=2026-12-01T07:00:00Z",
        "/cds/events/events?event_time=1764572400000",
        "/cds/events/events?limit=0",
        "/cds/events/events?limit=1001",
        "/cds/events/events?cursor=garbage",
        "/cds/events/events?cursor=0.7200000000000.0.4.1",
        "/cds/events/events?curb_zone_id=HK001",
    ] {
        assert_error(&get(&t, bad, Some(&data)).await, 400, "invalid_parameter");
    }

    // Metrics: bounded windows, refused in the one shape.
    let now = chrono::Utc::now().timestamp_millis();
    let week = 7 * 24 * 3_600_000;
    assert_error(
        &get(&t, &format!("/cds/metrics/aggregates?start_time={now}&end_time={}", now - 1000), Some(&data)).await,
        422,
        "invalid_range",
    );
    assert_error(
        &get(&t, &format!("/cds/metrics/sessions?start_time={}&end_time={now}", now - week - 1), Some(&data)).await,
        422,
        "range_too_wide",
    );
    for bad in [
        "/cds/metrics/sessions?start_time=yesterday",
        "/cds/metrics/sessions?end_time=99999999999999999999",
        "/cds/metrics/aggregates?metric_type=revenue",
        "/cds/metrics/aggregates?curb_place_type=street&curb_place_id=00000000-0000-4000-8000-000000000000",
        "/cds/metrics/aggregates?curb_place_id=00000000-0000-4000-8000-000000000000",
        "/cds/metrics/sessions?lat=21&lng=105&radius=100",
        "/cds/metrics/sessions?limit=-1",
    ] {
        assert_error(&get(&t, bad, Some(&data)).await, 400, "invalid_parameter");
    }
    // Metric sessions page too: two pages of 2 cover the three sessions once each.
    let (_, p1) =
        get(&t, &format!("/cds/metrics/sessions?limit=2&start_time={}", now - 3 * 3_600_000), Some(&data)).await;
    let next = p1["links"]["next"].as_str().expect("a second page").to_owned();
    let (_, p2) = get(&t, &next, Some(&data)).await;
    assert_eq!(p2["links"]["next"], Value::Null);
    let mut ids: Vec<&str> =
        p1["data"]["sessions"].as_array().unwrap().iter().map(|r| r["event_session_id"].as_str().unwrap()).collect();
    ids.extend(p2["data"]["sessions"].as_array().unwrap().iter().map(|r| r["event_session_id"].as_str().unwrap()));
    assert_eq!(ids.len(), 3);
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 3);
});

// ---- Access ----

const FEEDS: [&str; 3] = ["/cds/events/events", "/cds/metrics/sessions", "/cds/metrics/aggregates"];

matrix!(events_and_metrics_need_the_data_role, |t| {
    for path in FEEDS {
        assert_error(&get(&t, path, None).await, 401, "unauthorized");
        assert_error(&get(&t, path, Some("ipk_staff_not-a-token")).await, 401, "unauthorized");
        for role in [StaffRole::Finance, StaffRole::Admin, StaffRole::Inspector] {
            let other = t.staff(role, &[]).await;
            assert_error(&get(&t, path, other.token()).await, 403, "forbidden");
        }
        let data = t.staff(StaffRole::Data, &[]).await;
        let (status, body) = get(&t, path, data.token()).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    // A data token opens nothing else a staff token does: no photos, finance, admin or handheld.
    let data = t.staff(StaffRole::Data, &[]).await;
    for path in [
        format!("/v1/warden/photos/{}", "ab".repeat(32)),
        "/v1/finance/revenue?from=2026-12-01&to=2026-12-31".to_owned(),
        "/v1/admin/streets".to_owned(),
        "/v1/warden/points/HK001/vehicles".to_owned(),
    ] {
        assert_error(&get(&t, &path, data.token()).await, 403, "forbidden");
    }
    // The role is stored as such (the CHECK of migration 0021 lets it in).
    assert!(t.sql_i64("SELECT COUNT(*) FROM staff WHERE role = 'data'").await >= 3);
    // Curbs stays public.
    assert_eq!(get(&t, "/cds/curbs/policies", None).await.0, 200);
    // The feeds are the whole city's: a data token scoped to a district is refused, not made.
    let before = t.sql_i64("SELECT COUNT(*) FROM staff").await;
    let scoped = iparking_mobile_api::CreateStaff::new("Scoped reader", StaffRole::Data, vec!["HK".into()]);
    let answer = raw(t.admin_request(reqwest::Method::POST, "/v1/admin/staff").json(&scoped)).await;
    assert_error(&answer, 422, "invalid_scope");
    assert_eq!(t.sql_i64("SELECT COUNT(*) FROM staff").await, before);
});

async fn open_data_is_public_when_the_operator_says_so(db: Db, live: Live) {
    let mut opts = Options::default();
    opts.settings.open_data_public = true;
    opts.settings.data_license_url = "https://data.hanoi.example/licence".into();
    let t = TestApp::start_with(db, live, opts).await;
    for path in FEEDS {
        let resp = reqwest::Client::new().get(t.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(resp.headers()["access-control-allow-origin"], "*");
        let body: Value = resp.json().await.unwrap();
        assert_envelope(&body, "https://data.hanoi.example/licence");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_data_public_sqlite_memory() {
    open_data_is_public_when_the_operator_says_so(Db::Sqlite, Live::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_data_public_postgres_redis() {
    open_data_is_public_when_the_operator_says_so(Db::Postgres, Live::Redis).await;
}

// ---- The standard itself ----

/// The vendored CDS documents are the shared ones, byte for byte (when `../shared` is there:
/// CI's clean clone may not have it).
#[test]
fn vendored_cds_documents_equal_the_shared_copy() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/standards/cds");
    let ours = standards().join("cds");
    if !shared.is_dir() {
        eprintln!("{} not found: nothing to compare", shared.display());
        return;
    }
    let (theirs, mine) = (files_under(&shared), files_under(&ours));
    assert_eq!(theirs, mine, "the same files");
    for f in &theirs {
        assert_eq!(std::fs::read(shared.join(f)).unwrap(), std::fs::read(ours.join(f)).unwrap(), "{f} differs");
    }
}

/// Why the polygon correction exists: as published, no RFC 7946 polygon (what the feed
/// emits) is a valid curb zone geometry, and the published flat ring is not RFC 7946.
#[test]
fn the_published_polygon_schema_admits_no_polygon_and_the_corrected_one_does() {
    let ring = iparking::domain::cds::zone_polygon(21.0245, 105.853, None);
    let rfc = json!({ "type": "Polygon", "coordinates": ring });
    let flat = json!({ "type": "Polygon", "coordinates": ring[0] });
    let geometry = |cds: &Cds| {
        cds.bundle(
            "Shared Data Models/curb_zone.yaml",
            &cds.docs["Shared Data Models/curb_zone.yaml"]["properties"]["geometry"],
            0,
        )
    };
    let published = geometry(&Cds::load(false));
    assert!(!errors(&published, &rfc).is_empty(), "published: an RFC 7946 polygon fails");
    assert!(!errors(&published, &flat).is_empty(), "published: a flat ring matches both branches of oneOf");
    let corrected = geometry(&Cds::load(true));
    assert_valid(&corrected, &rfc, "an RFC 7946 polygon");
    assert!(!errors(&corrected, &flat).is_empty(), "corrected: a flat ring is no polygon");
    let line = json!({ "type": "LineString", "coordinates": [[105.85, 21.02], [105.851, 21.02]] });
    assert_valid(&corrected, &line, "a LineString");
    let point = json!({ "type": "Point", "coordinates": [105.85, 21.02] });
    let event_location = Cds::load(true).model("Shared Data Models/geoJSON_point.yaml");
    assert_valid(&event_location, &point, "a GeoJSON point");
    assert!(!errors(&event_location, &json!({ "type": "Polygon", "coordinates": [105.85, 21.02] })).is_empty());
}

// ---- The migration ----

/// Migration 0021 rebuilds SQLite's `staff` to widen its CHECK: the rows, their ids and
/// everything that references them survive, the username stays unique, and `data` is
/// accepted (PostgreSQL only swaps the constraint: no row is touched).
#[tokio::test]
async fn sqlite_migration_0021_keeps_staff_and_their_references() {
    use sqlx::{Connection, Row};
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("m.db").display());
    let mut m =
        sqlx::migrate::Migrator::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations/sqlite")).await.unwrap();
    m.migrations = m.migrations.iter().filter(|x| x.version < 21).cloned().collect::<Vec<_>>().into();
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    m.run(&mut conn).await.unwrap();
    let now = "2026-12-01T00:00:00+00:00";
    for sql in [
        "INSERT INTO districts (id, code, name, created_at) VALUES (1, 'HK', 'Hoàn Kiếm', '2026-12-01T00:00:00+00:00')",
        "INSERT INTO staff (id, name, role, created_at, username, password_hash) VALUES (7, 'Lan', 'warden', '2026-12-01T00:00:00+00:00', 'lan', 'x')",
        "INSERT INTO staff (id, name, role, created_at) VALUES (9, 'Hà', 'finance', '2026-12-01T00:00:00+00:00')",
        "INSERT INTO staff_districts (staff_id, district_id) VALUES (7, 1)",
        "INSERT INTO staff_tokens (id, staff_id, token_hash, created_at) VALUES (3, 7, 'h7', '2026-12-01T00:00:00+00:00')",
        "INSERT INTO staff_tokens (id, staff_id, token_hash, created_at) VALUES (4, 9, 'h9', '2026-12-01T00:00:00+00:00')",
    ] {
        sqlx::query(sql).execute(&mut conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let refused = sqlx::query("INSERT INTO staff (name, role, created_at) VALUES ('D', 'data', $1)")
        .bind(now)
        .execute(&mut conn)
        .await;
    assert!(refused.is_err(), "before 0021 the role is refused");
    conn.close().await.unwrap();

    let store = iparking::store::SqliteStore::connect(&url).await.unwrap();
    iparking::store::Store::migrate(&store).await.unwrap();
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let staff: Vec<(i64, String, String, Option<String>)> =
        sqlx::query_as("SELECT id, name, role, username FROM staff ORDER BY id").fetch_all(&mut conn).await.unwrap();
    assert_eq!(
        staff,
        vec![(7, "Lan".into(), "warden".into(), Some("lan".into())), (9, "Hà".into(), "finance".into(), None)]
    );
    let orphans = sqlx::query("PRAGMA foreign_key_check").fetch_all(&mut conn).await.unwrap();
    assert!(orphans.is_empty(), "{} dangling references", orphans.len());
    let tokens: Vec<(i64, i64)> =
        sqlx::query_as("SELECT t.id, s.id FROM staff_tokens t JOIN staff s ON s.id = t.staff_id ORDER BY t.id")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(tokens, vec![(3, 7), (4, 9)]);
    sqlx::query("PRAGMA foreign_keys = ON").execute(&mut conn).await.unwrap();
    let id = sqlx::query("INSERT INTO staff (name, role, created_at) VALUES ('Data', 'data', $1) RETURNING id")
        .bind(now)
        .fetch_one(&mut conn)
        .await
        .unwrap()
        .get::<i64, _>(0);
    assert!(id > 9, "ids go on after the old ones: {id}");
    assert!(
        sqlx::query("INSERT INTO staff (name, role, created_at) VALUES ('X', 'boss', $1)")
            .bind(now)
            .execute(&mut conn)
            .await
            .is_err()
    );
    assert!(
        sqlx::query("INSERT INTO staff (name, role, created_at, username) VALUES ('Y', 'warden', $1, 'lan')")
            .bind(now)
            .execute(&mut conn)
            .await
            .is_err(),
        "usernames stay unique"
    );
    assert!(
        sqlx::query("INSERT INTO staff_tokens (staff_id, token_hash, created_at) VALUES (999, 'h', $1)")
            .bind(now)
            .execute(&mut conn)
            .await
            .is_err(),
        "references to staff are still enforced"
    );
}
