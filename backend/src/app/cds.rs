//! The Curb Data Specification 1.1 feeds (issue 34; docs/open-data.md, decision 0027):
//! Curbs (zones from points, areas from districts, policies from tariffs), Events
//! (`park_start`/`park_end` from sessions, `vehicle_detected` from plate checks,
//! `citation_issued` from violations) and Metrics (sessions, and aggregates per zone and
//! local hour with the ledger's revenue). Nothing that identifies a person is read or sent:
//! no plate, phone, driver, staff or row id; events' ids are derived with the deployment's
//! key ([`cds::keyed_id`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Datelike as _, Duration, NaiveDate, TimeZone, Timelike, Utc};
use iparking_mobile_api::{PointStatus, StaffRole, VehicleClass, Weekday};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::{
    App,
    domain::{
        cds,
        tariff::{LOCAL_TZ, Tariff, resolve},
    },
    error::AppError,
    store::{
        District, PointRecord, Principal,
        cds::{EventFact, EventSource, PlaceFilter, SessionSpan},
    },
};

/// Most events in one page (`limit`).
pub const MAX_EVENTS_PAGE: i64 = 1000;
/// Events in a page when `limit` is not given.
pub const DEFAULT_EVENTS_PAGE: i64 = 500;
/// Most metric sessions in one page.
pub const MAX_SESSIONS_PAGE: i64 = 5000;
/// The widest Metrics query (`end_time - start_time`).
pub const MAX_METRICS_SPAN: Duration = Duration::days(7);
/// Most rows in one aggregates answer (else 422 `too_many_rows`).
pub const MAX_AGGREGATE_ROWS: usize = 100_000;
/// The Metrics window when `start_time` is not given: the day before `end_time`.
pub const DEFAULT_METRICS_SPAN: Duration = Duration::hours(24);

/// Whether a licence URL is acceptable for `license_url` (an http(s) URL, no spaces).
pub fn is_licence_url(s: &str) -> bool {
    (s.starts_with("https://") || s.starts_with("http://"))
        && s.len() > "https://".len()
        && s.len() <= 2000
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// May this caller read the Events and Metrics feeds? Anyone when the operator opened them
/// (`IPARKING_OPEN_DATA=public`); otherwise a staff member of the role `data` (401 without a
/// valid token, 403 with another role's).
pub fn check_reader(app: &App, caller: Option<&Principal>) -> Result<(), AppError> {
    if app.settings.open_data_public {
        return Ok(());
    }
    match caller {
        None => Err(AppError::unauthorized()),
        Some(p) if p.role == StaffRole::Data => Ok(()),
        Some(_) => Err(AppError::forbidden(
            "Chỉ vai trò data (hoặc khi dữ liệu mở công khai) mới đọc được dữ liệu sự kiện và số liệu CDS.",
            "Only the role data may read the CDS events and metrics (unless the operator made them public).",
        )),
    }
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The envelope every CDS JSON answer carries.
fn envelope(app: &App, last_updated: DateTime<Utc>, data: Value) -> Value {
    let mut m = Map::new();
    m.insert("version".into(), json!(cds::VERSION));
    m.insert("time_zone".into(), json!(LOCAL_TZ.name()));
    m.insert("last_updated".into(), json!(ms(last_updated)));
    m.insert("currency".into(), json!("VND"));
    if !app.settings.data_author.is_empty() {
        m.insert("author".into(), json!(app.settings.data_author));
    }
    m.insert("license_url".into(), json!(app.settings.data_license_url));
    m.insert("data".into(), data);
    Value::Object(m)
}

fn bad_param(field: &str, vi: impl Into<String>, en: impl Into<String>) -> AppError {
    AppError::bad_request("invalid_parameter", vi.into(), en.into()).with_details(json!({ "field": field }))
}

fn parse_num(field: &str, v: &str) -> Result<f64, AppError> {
    v.trim().parse::<f64>().ok().filter(|x| x.is_finite()).ok_or_else(|| {
        bad_param(
            field,
            format!("Tham số {field} phải là một số."),
            format!("Query parameter {field} must be a number."),
        )
    })
}

fn parse_uuid(field: &str, v: &str) -> Result<Uuid, AppError> {
    Uuid::try_parse(v.trim()).map_err(|_| {
        bad_param(
            field,
            format!("Tham số {field} phải là một UUID."),
            format!("Query parameter {field} must be a UUID."),
        )
    })
}

fn parse_bool(field: &str, v: &str) -> Result<bool, AppError> {
    match v.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(bad_param(
            field,
            format!("Tham số {field} phải là true hoặc false."),
            format!("Query parameter {field} must be true or false."),
        )),
    }
}

/// A CDS timestamp: whole milliseconds since the Unix epoch, between 2000 and 2200.
fn parse_ms(field: &str, v: &str) -> Result<DateTime<Utc>, AppError> {
    v.trim()
        .parse::<i64>()
        .ok()
        .filter(|m| (946_684_800_000..7_258_118_400_000).contains(m))
        .and_then(|m| Utc.timestamp_millis_opt(m).single())
        .ok_or_else(|| {
            bad_param(
                field,
                format!("Tham số {field} phải là thời điểm tính bằng mili giây từ 1970 (CDS timestamp)."),
                format!("Query parameter {field} must be a timestamp in milliseconds since 1970 (CDS timestamp)."),
            )
        })
}

/// The spatial filter of the Curbs queries: a bounding box, or a circle (radius in
/// centimetres, CDS's unit).
#[derive(Debug, Clone, Copy)]
enum Spatial {
    None,
    Box { min_lat: f64, min_lng: f64, max_lat: f64, max_lng: f64 },
    Circle { lat: f64, lng: f64, radius_m: f64 },
}

/// The query of `GET /cds/curbs/zones` (and the spatial part of `/cds/curbs/areas`).
#[derive(Debug, Default, Deserialize)]
pub struct ZonesQuery {
    /// A Curb Area (district) id.
    pub area: Option<String>,
    /// Bounding box.
    pub min_lat: Option<String>,
    /// Bounding box.
    pub min_lng: Option<String>,
    /// Bounding box.
    pub max_lat: Option<String>,
    /// Bounding box.
    pub max_lng: Option<String>,
    /// Circle centre.
    pub lat: Option<String>,
    /// Circle centre.
    pub lng: Option<String>,
    /// Circle radius, centimetres.
    pub radius: Option<String>,
    /// `false`: no geometry.
    pub include_geometry: Option<String>,
    /// Zones valid at this time (CDS timestamp); policies in force then.
    pub time: Option<String>,
    /// `GET /cds/curbs/zones/{id}` only: retired zones too (we retire none).
    pub show_historic: Option<String>,
}

fn spatial(q: &ZonesQuery) -> Result<Spatial, AppError> {
    let bbox = [&q.min_lat, &q.min_lng, &q.max_lat, &q.max_lng];
    let circle = [&q.lat, &q.lng, &q.radius];
    let some = |xs: &[&Option<String>]| xs.iter().filter(|x| x.is_some()).count();
    let (nb, nc) = (some(&bbox), some(&circle));
    if nb > 0 && nc > 0 {
        return Err(bad_param(
            "lat",
            "Không dùng cùng lúc khung (min_lat…) và vòng tròn (lat, lng, radius).",
            "A bounding box (min_lat…) and a circle (lat, lng, radius) cannot be used together.",
        ));
    }
    if nb > 0 {
        if nb < 4 {
            return Err(bad_param(
                "min_lat",
                "Khung cần đủ min_lat, min_lng, max_lat và max_lng.",
                "A bounding box needs all of min_lat, min_lng, max_lat and max_lng.",
            ));
        }
        let v = |n: &str, x: &Option<String>| parse_num(n, x.as_deref().unwrap_or_default());
        let (min_lat, min_lng) = (v("min_lat", &q.min_lat)?, v("min_lng", &q.min_lng)?);
        let (max_lat, max_lng) = (v("max_lat", &q.max_lat)?, v("max_lng", &q.max_lng)?);
        if !(-90.0..=90.0).contains(&min_lat)
            || !(-90.0..=90.0).contains(&max_lat)
            || !(-180.0..=180.0).contains(&min_lng)
            || !(-180.0..=180.0).contains(&max_lng)
            || min_lat > max_lat
            || min_lng > max_lng
        {
            return Err(bad_param(
                "min_lat",
                "Khung không hợp lệ (vĩ độ −90…90, kinh độ −180…180, min ≤ max).",
                "Invalid bounding box (latitude −90…90, longitude −180…180, min ≤ max).",
            ));
        }
        return Ok(Spatial::Box { min_lat, min_lng, max_lat, max_lng });
    }
    if nc > 0 {
        if nc < 3 {
            return Err(bad_param(
                "lat",
                "Vòng tròn cần đủ lat, lng và radius.",
                "A circle needs all of lat, lng and radius.",
            ));
        }
        let lat = parse_num("lat", q.lat.as_deref().unwrap_or_default())?;
        let lng = parse_num("lng", q.lng.as_deref().unwrap_or_default())?;
        let radius = parse_num("radius", q.radius.as_deref().unwrap_or_default())?;
        if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lng) {
            return Err(bad_param("lat", "Tọa độ không hợp lệ.", "Invalid coordinates."));
        }
        if !(0.0..=10_000_000.0).contains(&radius) {
            return Err(bad_param(
                "radius",
                "radius tính bằng xentimét, từ 0 đến 100 km.",
                "radius is in centimetres, from 0 to 100 km.",
            ));
        }
        return Ok(Spatial::Circle { lat, lng, radius_m: radius / 100.0 });
    }
    Ok(Spatial::None)
}

/// A point as a zone: its id, polygon and distance from a circle's centre.
struct Zone<'p> {
    point: &'p PointRecord,
    id: Uuid,
    polygon: Vec<Vec<[f64; 2]>>,
    distance_m: f64,
}

impl Spatial {
    fn keeps(&self, z: &mut Zone<'_>) -> bool {
        match *self {
            Self::None => true,
            Self::Box { min_lat, min_lng, max_lat, max_lng } => cds::bbox(&z.polygon)
                .is_some_and(|(a, b, c, d)| a <= max_lng && c >= min_lng && b <= max_lat && d >= min_lat),
            Self::Circle { lat, lng, radius_m } => {
                z.distance_m = cds::distance_m(lat, lng, z.point.lat, z.point.lon);
                z.distance_m <= radius_m
            }
        }
    }
}

/// The registry as the Curbs feed reads it.
struct Registry {
    points: Vec<PointRecord>,
    districts: Vec<District>,
    point_created: HashMap<i64, DateTime<Utc>>,
    district_created: HashMap<i64, DateTime<Utc>>,
}

async fn registry(app: &App) -> Result<Registry, AppError> {
    let mut points = app.store.points().await?;
    points.sort_by(|a, b| a.code.cmp(&b.code));
    let districts = app.store.districts().await?;
    let dates = app.store.cds_place_dates().await?;
    Ok(Registry {
        points,
        districts,
        point_created: dates.points.into_iter().collect(),
        district_created: dates.districts.into_iter().collect(),
    })
}

impl Registry {
    fn created(&self, p: &PointRecord) -> DateTime<Utc> {
        self.point_created.get(&p.id).copied().unwrap_or(p.updated_at)
    }

    fn last_updated(&self, tariffs: &[Tariff]) -> DateTime<Utc> {
        let points = self.points.iter().map(|p| p.updated_at);
        let published = tariffs.iter().filter_map(|t| t.published_at);
        points.chain(published).chain(self.district_created.values().copied()).max().unwrap_or(DateTime::UNIX_EPOCH)
    }
}

fn zone_of(p: &PointRecord) -> Zone<'_> {
    Zone {
        point: p,
        id: cds::zone_id(&p.code),
        polygon: cds::zone_polygon(p.lat, p.lon, p.curb.as_deref()),
        distance_m: 0.0,
    }
}

fn polygon(rings: &[Vec<[f64; 2]>]) -> Value {
    json!({ "type": "Polygon", "coordinates": rings })
}

/// The tariffs pricing point `p` at `at`, one per vehicle class it takes (deduplicated).
fn tariffs_of<'t>(tariffs: &'t [Tariff], p: &PointRecord, at: DateTime<Utc>) -> Vec<&'t Tariff> {
    let r = super::points::point_ref(p);
    let mut out: Vec<&Tariff> = Vec::new();
    for class in &p.vehicle_classes {
        if let Some(t) = resolve(tariffs, &r, *class, at)
            && !out.iter().any(|o| o.id == t.id)
        {
            out.push(t);
        }
    }
    out
}

fn policy_ids(t: &Tariff) -> Vec<Uuid> {
    (0..t.windows.len()).map(|i| cds::policy_id(t.id, i, t.valid_until.map(ms))).collect()
}

/// Free spaces of each zone now, from the live state: `None` for a past `time` (CDS gives
/// availability as of the time asked, which we do not keep) or when the live state is
/// unreachable (then the zones are published without it rather than not at all).
async fn free_now(app: &App, zones: &[Zone<'_>], past: bool) -> Vec<Option<i64>> {
    if past {
        return vec![None; zones.len()];
    }
    let ids: Vec<i64> = zones.iter().map(|z| z.point.id).collect();
    match app.live.occupancy(&ids).await {
        Ok(occupied) if occupied.len() == zones.len() => zones
            .iter()
            .zip(occupied)
            .map(|(z, o)| {
                let open = z.point.status == PointStatus::Open;
                Some(if open { i64::from(super::views::free_spaces(z.point.capacity, o)) } else { 0 })
            })
            .collect(),
        _ => vec![None; zones.len()],
    }
}

fn zone_json(
    reg: &Registry,
    z: &Zone<'_>,
    tariffs: &[Tariff],
    at: DateTime<Utc>,
    geometry: bool,
    free: Option<i64>,
) -> Value {
    let p = z.point;
    let policies: Vec<String> =
        tariffs_of(tariffs, p, at).into_iter().flat_map(policy_ids).map(|u| u.to_string()).collect();
    let created = ms(reg.created(p));
    let mut m = Map::new();
    m.insert("curb_zone_id".into(), json!(z.id.to_string()));
    if geometry {
        m.insert("geometry".into(), polygon(&z.polygon));
    }
    m.insert("curb_policy_ids".into(), json!(policies));
    m.insert("published_date".into(), json!(created));
    m.insert("last_updated_date".into(), json!(ms(p.updated_at)));
    m.insert("start_date".into(), json!(created));
    m.insert("name".into(), json!(p.name));
    m.insert("user_zone_id".into(), json!(p.code));
    m.insert("street_name".into(), json!(p.street_name));
    m.insert("num_spaces".into(), json!(p.capacity));
    m.insert("available".into(), json!(p.status == PointStatus::Open));
    if let Some(free) = free {
        m.insert("available_spaces".into(), json!(free));
        m.insert("availability_time".into(), json!(ms(at)));
    }
    m.insert("jurisdiction_type".into(), json!("public"));
    m.insert("curb_area_ids".into(), json!([cds::area_id(&p.district_code).to_string()]));
    let mut custom = Map::new();
    custom.insert("district".into(), json!(p.district_name));
    custom.insert(
        "vehicle_classes".into(),
        json!(p.vehicle_classes.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(";")),
    );
    let from_line = p.curb.as_deref().is_some_and(|c| cds::line_length_cm(c) > 0);
    if from_line {
        let len = p.curb.as_deref().map(cds::line_length_cm).unwrap_or_default();
        m.insert("length".into(), json!(len));
        m.insert("width".into(), json!((cds::CURB_HALF_WIDTH_M * 200.0).round() as i64));
    }
    custom.insert("geometry_source".into(), json!(if from_line { "curb_line" } else { "signboard_box" }));
    m.insert("custom_attributes".into(), Value::Object(custom));
    Value::Object(m)
}

fn curbs_time(q: &ZonesQuery, now: DateTime<Utc>) -> Result<DateTime<Utc>, AppError> {
    q.time.as_deref().map_or(Ok(now), |t| parse_ms("time", t))
}

/// `GET /cds/curbs/zones`.
pub async fn zones(app: &App, q: &ZonesQuery) -> Result<Value, AppError> {
    let spatial = spatial(q)?;
    let at = curbs_time(q, app.clock.now())?;
    let geometry = q.include_geometry.as_deref().map_or(Ok(true), |v| parse_bool("include_geometry", v))?;
    let area = q.area.as_deref().map(|a| parse_uuid("area", a)).transpose()?;
    let reg = registry(app).await?;
    let book = app.tariffs();
    let mut zones: Vec<Zone<'_>> = reg
        .points
        .iter()
        .filter(|p| reg.created(p) <= at)
        .filter(|p| area.is_none_or(|a| cds::area_id(&p.district_code) == a))
        .map(zone_of)
        .filter_map(|mut z| spatial.keeps(&mut z).then_some(z))
        .collect();
    if matches!(spatial, Spatial::Circle { .. }) {
        zones.sort_by(|a, b| a.distance_m.total_cmp(&b.distance_m));
    }
    let free = free_now(app, &zones, q.time.is_some()).await;
    let list: Vec<Value> =
        zones.iter().zip(free).map(|(z, f)| zone_json(&reg, z, &book.tariffs, at, geometry, f)).collect();
    Ok(envelope(app, reg.last_updated(&book.tariffs), json!({ "zones": list })))
}

fn zone_not_found() -> AppError {
    AppError::not_found("zone_not_found", "Không có vùng đỗ (curb zone) này.", "No such curb zone.")
}

/// `GET /cds/curbs/zones/{id}`.
pub async fn zone(app: &App, id: &str, q: &ZonesQuery) -> Result<Value, AppError> {
    let at = curbs_time(q, app.clock.now())?;
    if let Some(h) = q.show_historic.as_deref() {
        parse_bool("show_historic", h)?;
    }
    let Ok(id) = Uuid::try_parse(id) else { return Err(zone_not_found()) };
    let reg = registry(app).await?;
    let book = app.tariffs();
    let z = reg.points.iter().map(zone_of).find(|z| z.id == id).ok_or_else(zone_not_found)?;
    if reg.created(z.point) > at {
        return Err(zone_not_found());
    }
    let free = free_now(app, std::slice::from_ref(&z), q.time.is_some()).await;
    let body = zone_json(&reg, &z, &book.tariffs, at, true, free[0]);
    Ok(envelope(app, reg.last_updated(&book.tariffs), body))
}

/// `GET /cds/curbs/areas`: one per district with points, its geometry the box around its zones.
pub async fn areas(app: &App, q: &ZonesQuery) -> Result<Value, AppError> {
    let spatial = spatial(q)?;
    let reg = registry(app).await?;
    let book = app.tariffs();
    let mut list = Vec::new();
    let mut districts: Vec<&District> = reg.districts.iter().collect();
    districts.sort_by(|a, b| a.code.cmp(&b.code));
    for d in districts {
        let mut zones: Vec<Zone<'_>> = reg.points.iter().filter(|p| p.district_id == d.id).map(zone_of).collect();
        let rings: Vec<Vec<[f64; 2]>> = zones.iter().flat_map(|z| z.polygon.clone()).collect();
        let Some(bbox) = cds::bbox(&rings) else { continue };
        if !zones.iter_mut().any(|z| spatial.keeps(z)) {
            continue;
        }
        let created = reg.district_created.get(&d.id).copied().unwrap_or(DateTime::UNIX_EPOCH);
        let updated = zones.iter().map(|z| z.point.updated_at).chain([created]).max().unwrap_or(created);
        list.push(json!({
            "curb_area_id": cds::area_id(&d.code).to_string(),
            "geometry": polygon(&cds::bbox_polygon(bbox)),
            "name": d.name,
            "published_date": ms(created),
            "last_updated_date": ms(updated),
            "curb_zone_ids": zones.iter().map(|z| z.id.to_string()).collect::<Vec<_>>(),
            "custom_attributes": { "district_code": d.code },
        }));
    }
    Ok(envelope(app, reg.last_updated(&book.tariffs), json!({ "areas": list })))
}

/// `GET /cds/curbs/areas/{id}`.
pub async fn area(app: &App, id: &str) -> Result<Value, AppError> {
    let not_found = || AppError::not_found("area_not_found", "Không có khu vực (curb area) này.", "No such curb area.");
    let id = Uuid::try_parse(id).map_err(|_| not_found())?.to_string();
    let mut all = areas(app, &ZonesQuery::default()).await?;
    let found = all
        .pointer_mut("/data/areas")
        .and_then(Value::as_array_mut)
        .and_then(|a| a.iter().position(|x| x["curb_area_id"] == id.as_str()).map(|i| a.swap_remove(i)))
        .ok_or_else(not_found)?;
    all["data"] = found;
    Ok(all)
}

/// `GET /cds/curbs/policies/{id}`: a policy of a tariff in force.
pub async fn policy(app: &App, id: &str) -> Result<Value, AppError> {
    let not_found =
        || AppError::not_found("policy_not_found", "Không có chính sách (curb policy) này.", "No such curb policy.");
    let id = Uuid::try_parse(id).map_err(|_| not_found())?;
    let mut all = policies(app, &PoliciesQuery { ids: Some(id.to_string()) }).await?;
    let found =
        all.pointer_mut("/data/policies").and_then(Value::as_array_mut).and_then(|a| a.pop()).ok_or_else(not_found)?;
    all["data"] = found;
    Ok(all)
}

/// The query of `GET /cds/curbs/policies`.
#[derive(Debug, Default, Deserialize)]
pub struct PoliciesQuery {
    /// Comma-separated policy ids.
    pub ids: Option<String>,
}

fn day_name(d: Weekday) -> &'static str {
    match d {
        Weekday::Mon => "mon",
        Weekday::Tue => "tue",
        Weekday::Wed => "wed",
        Weekday::Thu => "thu",
        Weekday::Fri => "fri",
        Weekday::Sat => "sat",
        Weekday::Sun => "sun",
    }
}

const WEEK: [Weekday; 7] =
    [Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri, Weekday::Sat, Weekday::Sun];

/// One window of a tariff as a CDS policy. What CDS cannot say (the daily cap, the minimum
/// charge, the SMS surcharge, the grace period, a block over a whole window occurrence) is
/// in `custom_attributes` (docs/open-data.md, "The CDS mapping table").
fn policy_json(t: &Tariff, i: usize) -> Value {
    let w = &t.windows[i];
    let hourly = t.turn_minutes == 60;
    let (unit, per_unit) = if hourly { ("hour", 60) } else { ("minute", 1) };
    let rates: Vec<Value> = w
        .tiers
        .iter()
        .enumerate()
        .map(|(k, tier)| {
            let start_min = i64::from(tier.from_hour - 1) * 60;
            let mut r = Map::new();
            let price = tier.price.0;
            // Per rate unit: the turn's price per hour, or per minute (rounded) for turns of
            // another length; the exact turn price is in custom_attributes.
            let rate = if hourly { price } else { (price as f64 / f64::from(t.turn_minutes)).round() as i64 };
            r.insert("rate".into(), json!(rate));
            r.insert("rate_unit".into(), json!(unit));
            r.insert("rate_unit_period".into(), json!("rolling"));
            r.insert("increment_duration".into(), json!(if hourly { 1 } else { i64::from(t.turn_minutes) }));
            r.insert("start_duration".into(), json!(start_min / per_unit));
            if let Some(next) = w.tiers.get(k + 1) {
                r.insert("end_duration".into(), json!(i64::from(next.from_hour - 1) * 60 / per_unit));
            }
            if let Some(block) = w.block_price {
                r.insert("maximum_fee".into(), json!(block.0));
            }
            Value::Object(r)
        })
        .collect();
    let mut rule = Map::new();
    rule.insert("activity".into(), json!("parking"));
    rule.insert("user_classes".into(), json!(t.classes.iter().map(|c| c.as_str()).collect::<Vec<_>>()));
    if let Some(m) = t.max_stay_minutes {
        rule.insert("max_stay".into(), json!(m));
        rule.insert("max_stay_unit".into(), json!("minute"));
    }
    rule.insert("rate".into(), json!(rates));
    let mut span = Map::new();
    span.insert("start_date".into(), json!(ms(t.valid_from)));
    if let Some(u) = t.valid_until {
        span.insert("end_date".into(), json!(ms(u)));
    }
    span.insert(
        "days_of_week".into(),
        json!(WEEK.iter().enumerate().filter(|(d, _)| w.days[*d]).map(|(_, d)| day_name(*d)).collect::<Vec<_>>()),
    );
    if w.len_min < 24 * 60 {
        span.insert("time_of_day_start".into(), json!(w.start_hhmm()));
        span.insert("time_of_day_end".into(), json!(w.end_hhmm()));
    }
    let mut custom = Map::new();
    custom.insert("tariff_id".into(), json!(t.id.to_string()));
    custom.insert("window".into(), json!(w.label));
    custom.insert("turn_minutes".into(), json!(t.turn_minutes.to_string()));
    custom.insert(
        "tiers".into(),
        json!(w.tiers.iter().map(|x| format!("{}:{}", x.from_hour, x.price.0)).collect::<Vec<_>>().join(";")),
    );
    if let Some(b) = w.block_price {
        custom.insert("block_price".into(), json!(b.0.to_string()));
    }
    if let Some(c) = t.daily_cap {
        custom.insert("daily_cap".into(), json!(c.0.to_string()));
    }
    if let Some(c) = t.minimum_charge {
        custom.insert("minimum_charge".into(), json!(c.0.to_string()));
    }
    if let Some(c) = t.sms_surcharge {
        custom.insert("sms_surcharge_per_turn".into(), json!(c.0.to_string()));
    }
    custom.insert("grace_minutes".into(), json!(t.grace_minutes.to_string()));
    let mut m = Map::new();
    m.insert("curb_policy_id".into(), json!(cds::policy_id(t.id, i, t.valid_until.map(ms)).to_string()));
    m.insert("name".into(), json!(format!("{}: {}", t.name, w.label)));
    m.insert(
        "description".into(),
        json!(format!(
            "Paid parking by turns of {} minutes, priced by the hour of the stay in which a turn starts{}{}.",
            t.turn_minutes,
            w.block_price
                .map(|b| format!("; one occurrence of this window costs at most {} VND", b.0))
                .unwrap_or_default(),
            t.daily_cap.map(|c| format!("; one local day costs at most {} VND", c.0)).unwrap_or_default(),
        )),
    );
    m.insert("published_date".into(), json!(ms(t.published_at.unwrap_or(t.valid_from))));
    m.insert("priority".into(), json!(1));
    m.insert("rules".into(), json!([Value::Object(rule)]));
    m.insert("time_spans".into(), json!([Value::Object(span)]));
    m.insert("custom_attributes".into(), Value::Object(custom));
    Value::Object(m)
}

/// `GET /cds/curbs/policies`: every window of every tariff in force now (with `ids`, of any
/// published tariff).
pub async fn policies(app: &App, q: &PoliciesQuery) -> Result<Value, AppError> {
    let wanted: Option<BTreeSet<Uuid>> = q
        .ids
        .as_deref()
        .map(|ids| ids.split(',').filter(|s| !s.trim().is_empty()).map(|s| parse_uuid("ids", s)).collect())
        .transpose()?;
    let now = app.clock.now();
    let book = app.tariffs();
    let mut list = Vec::new();
    // The list is the tariffs in force; asked by id, any published version answers, so that
    // the ids of zones asked at a past or future `time` resolve too.
    let listed = |t: &Tariff| t.published_at.is_some() && (wanted.is_some() || t.in_force_at(now));
    for t in book.tariffs.iter().filter(|t| listed(t)) {
        for (i, id) in policy_ids(t).into_iter().enumerate() {
            if wanted.as_ref().is_none_or(|w| w.contains(&id)) {
                list.push(policy_json(t, i));
            }
        }
    }
    let last = book.tariffs.iter().filter_map(|t| t.published_at).max().unwrap_or(DateTime::UNIX_EPOCH);
    Ok(envelope(app, last, json!({ "policies": list })))
}

// ---- Events ----

/// The query of `GET /cds/events/events`.
#[derive(Debug, Default, Deserialize)]
pub struct EventsQuery {
    /// One UTC hour, `YYYY-MM-DDTHH`; none: the last 60 minutes.
    pub event_time: Option<String>,
    /// A Curb Area (district) id.
    pub curb_area_id: Option<String>,
    /// A Curb Zone (point) id.
    pub curb_zone_id: Option<String>,
    /// A Curb Space id (we publish none: no events).
    pub curb_space_id: Option<String>,
    /// A Curb Object id (we publish none: no events).
    pub curb_object_id: Option<String>,
    /// Events per page, 1–1000 (500).
    pub limit: Option<String>,
    /// Where the next page starts (from `links.next`).
    pub cursor: Option<String>,
}

/// A page of a paginated answer: the envelope, and the cursors of its first and next pages.
#[derive(Debug)]
pub struct Page {
    /// The answer without its `links`.
    pub body: Value,
    /// The cursor of the first page of the same query.
    pub first: String,
    /// The cursor of the next page; `None` on the last.
    pub next: Option<String>,
    /// The rows (events or metrics), also under `body.data`.
    pub rows: usize,
}

const SOURCES: [EventSource; 4] =
    [EventSource::SessionStarts, EventSource::SessionEnds, EventSource::Checks, EventSource::Violations];

fn rank(s: EventSource) -> i64 {
    match s {
        EventSource::SessionStarts => 0,
        EventSource::SessionEnds => 1,
        EventSource::Checks => 2,
        EventSource::Violations => 3,
    }
}

fn nanos(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

fn bad_cursor() -> AppError {
    bad_param(
        "cursor",
        "Tham số cursor không hợp lệ: dùng liên kết links.next của trang trước.",
        "Invalid cursor: use the previous page's links.next.",
    )
}

/// A position in a paginated query, with the query's window pinned: `from.to.at.rank.id`
/// (nanoseconds and ids as integers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cursor {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    at: DateTime<Utc>,
    rank: i64,
    id: i64,
}

impl Cursor {
    fn encode(&self) -> String {
        format!("{}.{}.{}.{}.{}", nanos(self.from), nanos(self.to), nanos(self.at), self.rank, self.id)
    }

    fn decode(s: &str, widest: Duration) -> Result<Self, AppError> {
        let parts: Vec<i64> =
            s.split('.').map(|p| p.parse::<i64>().map_err(|_| bad_cursor())).collect::<Result<_, _>>()?;
        let [from, to, at, rank, id] = parts[..] else { return Err(bad_cursor()) };
        let t = |n: i64| Utc.timestamp_nanos(n);
        let c = Cursor { from: t(from), to: t(to), at: t(at), rank, id };
        if from >= to || c.to - c.from > widest || !(0..=4).contains(&rank) || from < 0 {
            return Err(bad_cursor());
        }
        Ok(c)
    }
}

/// The window of an events query: the UTC hour `YYYY-MM-DDTHH`, or the last 60 minutes.
fn events_window(q: &EventsQuery, now: DateTime<Utc>) -> Result<(DateTime<Utc>, DateTime<Utc>), AppError> {
    let Some(h) = q.event_time.as_deref() else { return Ok((now - Duration::minutes(60), now)) };
    let bad = || {
        bad_param(
            "event_time",
            "event_time là một giờ UTC dạng YYYY-MM-DDTHH (ví dụ 2026-12-01T07).",
            "event_time is one UTC hour as YYYY-MM-DDTHH (e.g. 2026-12-01T07).",
        )
    };
    let (day, hour) = h.split_once('T').ok_or_else(bad)?;
    if hour.len() != 2 || !hour.bytes().all(|b| b.is_ascii_digit()) || day.len() != 10 {
        return Err(bad());
    }
    let day = NaiveDate::parse_from_str(day, "%Y-%m-%d").map_err(|_| bad())?;
    let hour: u32 = hour.parse().map_err(|_| bad())?;
    let start = day.and_hms_opt(hour, 0, 0).ok_or_else(bad)?.and_utc();
    if !(2000..2200).contains(&day.year_ce().1) {
        return Err(bad());
    }
    Ok((start, start + Duration::hours(1)))
}

/// The place of a query: a zone (point), an area (district), or one we do not publish
/// (a space or an object: nothing happens there), or anywhere.
enum Place {
    Filter(PlaceFilter),
    Nowhere,
}

fn place_of(reg_points: &[PointRecord], districts: &[District], zone: Option<Uuid>, area: Option<Uuid>) -> Place {
    let mut filter = PlaceFilter::All;
    if let Some(z) = zone {
        match reg_points.iter().find(|p| cds::zone_id(&p.code) == z) {
            Some(p) => filter = PlaceFilter::Point(p.id),
            None => return Place::Nowhere,
        }
    }
    if let Some(a) = area {
        let Some(d) = districts.iter().find(|d| cds::area_id(&d.code) == a) else { return Place::Nowhere };
        match filter {
            PlaceFilter::Point(pid) => {
                if reg_points.iter().find(|p| p.id == pid).is_none_or(|p| p.district_id != d.id) {
                    return Place::Nowhere;
                }
            }
            _ => filter = PlaceFilter::District(d.id),
        }
    }
    Place::Filter(filter)
}

fn vehicle_type(class: &str) -> &'static str {
    match VehicleClass::parse(class) {
        Some(VehicleClass::Car) => "car",
        Some(VehicleClass::Minibus) => "bus",
        Some(VehicleClass::Motorbike) => "motorcycle",
        _ => "other",
    }
}

/// A session's channel as CDS's payment channel and method.
fn payment(channel: &str) -> (&'static str, &'static str) {
    match channel {
        "sms" => ("sms", "billing"),
        "wallet" => ("mobile_app", "digital_wallet"),
        "card" => ("mobile_app", "credit_card"),
        "warden_cash" => ("other", "cash"),
        _ => ("other", "other"),
    }
}

fn violation_name(kind: &str) -> &'static str {
    match kind {
        "unpaid" => "Parked without paying",
        "overstay" => "Stayed past the paid time",
        "wrong_vehicle_class" => "Vehicle class not allowed at this point",
        "outside_bay" => "Parked outside the marked bay",
        "obstruction" => "Obstruction",
        _ => "Other",
    }
}

fn point_geo(p: &PointRecord) -> Value {
    json!({ "type": "Point", "coordinates": [p.lon, p.lat] })
}

fn event_json(app: &App, key: &[u8], source: EventSource, f: &EventFact, p: &PointRecord) -> Value {
    let (kind, label) = match source {
        EventSource::SessionStarts => ("park_start", "park_start"),
        EventSource::SessionEnds => ("park_end", "park_end"),
        EventSource::Checks => ("vehicle_detected", "check"),
        EventSource::Violations => ("citation_issued", "violation"),
    };
    let mut m = Map::new();
    m.insert("event_id".into(), json!(cds::keyed_id(key, &format!("{label}:{}", f.id)).to_string()));
    m.insert("event_type".into(), json!(kind));
    m.insert("event_location".into(), point_geo(p));
    m.insert("event_time".into(), json!(ms(f.at)));
    m.insert("event_publication_time".into(), json!(ms(f.published_at.max(f.at))));
    m.insert("curb_zone_id".into(), json!(cds::zone_id(&p.code).to_string()));
    m.insert("curb_area_ids".into(), json!([cds::area_id(&p.district_code).to_string()]));
    m.insert("data_source_operator_name".into(), json!(app.settings.data_author));
    let mut custom = Map::new();
    match source {
        EventSource::SessionStarts | EventSource::SessionEnds => {
            m.insert("event_purpose".into(), json!("parking"));
            m.insert("event_session_id".into(), json!(cds::keyed_id(key, &format!("session:{}", f.id)).to_string()));
            m.insert("data_source_type".into(), json!("payment"));
            m.insert("data_source_device_id".into(), json!(cds::device_id("payments").to_string()));
            m.insert("vehicle_type".into(), json!(vehicle_type(&f.detail)));
            custom.insert("vehicle_class".into(), json!(f.detail));
            if let Some(c) = &f.channel {
                let (channel, method) = payment(c);
                m.insert("payment_channel".into(), json!(channel));
                m.insert("payment_method".into(), json!(method));
                custom.insert("channel".into(), json!(c));
            }
            if source == EventSource::SessionEnds {
                if let Some(paid) = f.paid {
                    m.insert("actual_cost".into(), json!(paid));
                }
                if let Some(r) = &f.end_reason {
                    custom.insert("end_reason".into(), json!(r));
                }
            }
        }
        EventSource::Checks => {
            m.insert("data_source_type".into(), json!("in_person"));
            m.insert("data_source_device_id".into(), json!(cds::device_id("wardens").to_string()));
            m.insert(
                "enforcement".into(),
                json!({ "enforcement_id": cds::keyed_id(key, &format!("check:{}", f.id)).to_string() }),
            );
            custom.insert("verdict".into(), json!(f.detail));
        }
        EventSource::Violations => {
            m.insert("data_source_type".into(), json!("in_person"));
            m.insert("data_source_device_id".into(), json!(cds::device_id("wardens").to_string()));
            m.insert(
                "enforcement".into(),
                json!({
                    "enforcement_id": cds::keyed_id(key, &format!("violation:{}", f.id)).to_string(),
                    "is_warning": false,
                    "action_taken": "citation_registered",
                    "violations": [{ "violation_code": f.detail, "violation_name": violation_name(&f.detail) }],
                }),
            );
        }
    }
    m.insert("custom_attributes".into(), Value::Object(custom));
    Value::Object(m)
}

fn parse_limit(v: Option<&str>, default: i64, max: i64) -> Result<i64, AppError> {
    let Some(v) = v else { return Ok(default) };
    v.trim().parse::<i64>().ok().filter(|n| (1..=max).contains(n)).ok_or_else(|| {
        bad_param(
            "limit",
            format!("limit là số nguyên từ 1 đến {max}."),
            format!("limit is a whole number from 1 to {max}."),
        )
    })
}

/// `GET /cds/events/events`: the events of one UTC hour (or the last 60 minutes), newest
/// first, in pages of `limit` with a cursor (`links.next`).
pub async fn events(app: &App, q: &EventsQuery) -> Result<Page, AppError> {
    let now = app.clock.now();
    let limit = parse_limit(q.limit.as_deref(), DEFAULT_EVENTS_PAGE, MAX_EVENTS_PAGE)?;
    let zone = q.curb_zone_id.as_deref().map(|z| parse_uuid("curb_zone_id", z)).transpose()?;
    let area = q.curb_area_id.as_deref().map(|a| parse_uuid("curb_area_id", a)).transpose()?;
    let elsewhere = [("curb_space_id", &q.curb_space_id), ("curb_object_id", &q.curb_object_id)];
    let mut nowhere = false;
    for (name, v) in elsewhere {
        if let Some(v) = v {
            parse_uuid(name, v)?;
            nowhere = true;
        }
    }
    let (from, to) = events_window(q, now)?;
    let start = Cursor { from, to, at: to, rank: 4, id: i64::MAX };
    let cursor = match q.cursor.as_deref() {
        Some(c) => {
            let c = Cursor::decode(c, Duration::hours(1))?;
            if q.event_time.is_some() && (c.from, c.to) != (from, to) {
                return Err(bad_cursor());
            }
            c
        }
        None => start,
    };
    let first = Cursor { from: cursor.from, to: cursor.to, at: cursor.to, rank: 4, id: i64::MAX };
    let reg_points = app.store.points().await?;
    let districts = app.store.districts().await?;
    let place = if nowhere { Place::Nowhere } else { place_of(&reg_points, &districts, zone, area) };
    let mut facts: Vec<(EventSource, EventFact)> = Vec::new();
    if let Place::Filter(filter) = place {
        for s in SOURCES {
            let r = rank(s);
            let id_bound = match r.cmp(&cursor.rank) {
                std::cmp::Ordering::Less => i64::MAX,
                std::cmp::Ordering::Equal => cursor.id,
                std::cmp::Ordering::Greater => i64::MIN,
            };
            let rows =
                app.store.cds_events(s, cursor.from, cursor.to, (cursor.at, id_bound), filter, limit + 1).await?;
            facts.extend(rows.into_iter().map(|f| (s, f)));
        }
    }
    facts.sort_by_key(|(s, f)| std::cmp::Reverse((f.at, rank(*s), f.id)));
    let more = facts.len() as i64 > limit;
    facts.truncate(limit as usize);
    let next = if more {
        facts
            .last()
            .map(|(s, f)| Cursor { from: cursor.from, to: cursor.to, at: f.at, rank: rank(*s), id: f.id }.encode())
    } else {
        None
    };
    let by_id: HashMap<i64, &PointRecord> = reg_points.iter().map(|p| (p.id, p)).collect();
    let key = app.receipt_key.as_slice();
    let list: Vec<Value> =
        facts.iter().filter_map(|(s, f)| by_id.get(&f.point_id).map(|p| event_json(app, key, *s, f, p))).collect();
    let rows = list.len();
    Ok(Page { body: envelope(app, now, json!({ "events": list })), first: first.encode(), next, rows })
}

// ---- Metrics ----

/// The query of `GET /cds/metrics/sessions` and `/cds/metrics/aggregates`.
#[derive(Debug, Default, Deserialize)]
pub struct MetricsQuery {
    /// `zone` or `area` (`space` and `object`: we publish none).
    pub curb_place_type: Option<String>,
    /// The place's id.
    pub curb_place_id: Option<String>,
    /// Aggregates only: one metric.
    pub metric_type: Option<String>,
    /// Inclusive start, CDS timestamp (default: 24 hours before the end).
    pub start_time: Option<String>,
    /// Exclusive end, CDS timestamp (default: now).
    pub end_time: Option<String>,
    /// Sessions only: rows per page, 1–5000 (5000).
    pub limit: Option<String>,
    /// Sessions only: where the next page starts.
    pub cursor: Option<String>,
    /// Not supported (400): a bounding box.
    pub min_lat: Option<String>,
    /// Not supported (400).
    pub min_lng: Option<String>,
    /// Not supported (400).
    pub max_lat: Option<String>,
    /// Not supported (400).
    pub max_lng: Option<String>,
    /// Not supported (400): a circle.
    pub lat: Option<String>,
    /// Not supported (400).
    pub lng: Option<String>,
    /// Not supported (400).
    pub radius: Option<String>,
}

/// A metrics answer: its rows as CDS objects (JSON), in CSV's column order.
#[derive(Debug)]
pub struct Table {
    /// CSV columns, in order.
    pub columns: &'static [&'static str],
    /// The JSON answer (envelope, `data.sessions` or `data.aggregates`), and pagination.
    pub page: Page,
}

/// The columns of a metric session, CDS's order, then ours (`actual_cost`).
pub const SESSION_COLUMNS: &[&str] = &[
    "session_type",
    "event_session_id",
    "event_id_start",
    "event_id_end",
    "event_location_start_latitude",
    "event_location_start_longitude",
    "event_location_end_latitude",
    "event_location_end_longitude",
    "event_time_start",
    "event_time_end",
    "curb_zone_id",
    "curb_area_ids",
    "vehicle_type",
    "actual_cost",
];

/// The columns of an aggregate, CDS's order, then ours (`revenue`).
pub const AGGREGATE_COLUMNS: &[&str] =
    &["curb_place_type", "curb_place_id", "metric_type", "date", "hour", "value", "revenue"];

/// The metrics published per zone (or area) and local hour.
pub const METRIC_TYPES: [&str; 5] =
    ["total_sessions", "total_events", "turnover", "average_dwell_time", "occupancy_percent"];

struct MetricsScope {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    place: Place,
    area_level: bool,
}

fn metrics_scope(
    q: &MetricsQuery,
    now: DateTime<Utc>,
    points: &[PointRecord],
    districts: &[District],
) -> Result<MetricsScope, AppError> {
    for (name, v) in [
        ("min_lat", &q.min_lat),
        ("min_lng", &q.min_lng),
        ("max_lat", &q.max_lat),
        ("max_lng", &q.max_lng),
        ("lat", &q.lat),
        ("lng", &q.lng),
        ("radius", &q.radius),
    ] {
        if v.is_some() {
            return Err(bad_param(
                name,
                "Số liệu CDS chưa lọc theo khung hay vòng tròn: dùng curb_place_type và curb_place_id.",
                "The CDS metrics do not filter by box or circle yet: use curb_place_type and curb_place_id.",
            ));
        }
    }
    let to = q.end_time.as_deref().map_or(Ok(now), |t| parse_ms("end_time", t))?;
    let from = q.start_time.as_deref().map_or(Ok(to - DEFAULT_METRICS_SPAN), |t| parse_ms("start_time", t))?;
    if from >= to {
        return Err(AppError::unprocessable(
            "invalid_range",
            "start_time phải trước end_time.",
            "start_time must be before end_time.",
        )
        .with_details(json!({ "field": "start_time" })));
    }
    if to - from > MAX_METRICS_SPAN {
        return Err(AppError::unprocessable(
            "range_too_wide",
            "Khoảng thời gian tối đa 7 ngày.",
            "The time range is at most 7 days.",
        )
        .with_details(json!({ "field": "end_time" })));
    }
    let kind = q.curb_place_type.as_deref();
    let id = q.curb_place_id.as_deref().map(|i| parse_uuid("curb_place_id", i)).transpose()?;
    let (place, area_level) = match (kind, id) {
        (None, None) => (Place::Filter(PlaceFilter::All), false),
        (Some("zone"), None) => (Place::Filter(PlaceFilter::All), false),
        (Some("area"), None) => (Place::Filter(PlaceFilter::All), true),
        (Some("zone"), Some(z)) => (place_of(points, districts, Some(z), None), false),
        (Some("area"), Some(a)) => (place_of(points, districts, None, Some(a)), true),
        (Some("space" | "object"), _) => (Place::Nowhere, false),
        (None, Some(_)) => {
            return Err(bad_param(
                "curb_place_type",
                "curb_place_id cần curb_place_type.",
                "curb_place_id needs curb_place_type.",
            ));
        }
        (Some(_), _) => {
            return Err(bad_param(
                "curb_place_type",
                "curb_place_type là zone, area, space hoặc object.",
                "curb_place_type is zone, area, space or object.",
            ));
        }
    };
    Ok(MetricsScope { from, to, place, area_level })
}

/// When a session's paid stay ends as the metrics count it: its end, or (still active) the
/// earlier of its paid-until and now.
fn span_end(s: &SessionSpan, now: DateTime<Utc>) -> DateTime<Utc> {
    s.ended_at.unwrap_or_else(|| s.paid_until.min(now)).max(s.started_at)
}

fn session_json(key: &[u8], s: &SessionSpan, p: &PointRecord) -> Value {
    let mut m = Map::new();
    m.insert("session_type".into(), json!("parking"));
    m.insert("event_session_id".into(), json!(cds::keyed_id(key, &format!("session:{}", s.id)).to_string()));
    m.insert("event_id_start".into(), json!(cds::keyed_id(key, &format!("park_start:{}", s.id)).to_string()));
    m.insert("event_location_start_latitude".into(), json!(p.lat));
    m.insert("event_location_start_longitude".into(), json!(p.lon));
    m.insert("event_time_start".into(), json!(ms(s.started_at)));
    if let Some(end) = s.ended_at {
        m.insert("event_id_end".into(), json!(cds::keyed_id(key, &format!("park_end:{}", s.id)).to_string()));
        m.insert("event_location_end_latitude".into(), json!(p.lat));
        m.insert("event_location_end_longitude".into(), json!(p.lon));
        m.insert("event_time_end".into(), json!(ms(end)));
    }
    m.insert("curb_zone_id".into(), json!(cds::zone_id(&p.code).to_string()));
    m.insert("curb_area_ids".into(), json!([cds::area_id(&p.district_code).to_string()]));
    m.insert("vehicle_type".into(), json!(vehicle_type(&s.vehicle_class)));
    m.insert("actual_cost".into(), json!(s.paid));
    Value::Object(m)
}

/// `GET /cds/metrics/sessions`: the sessions that started in the window, oldest first, in
/// pages (cursor).
pub async fn metric_sessions(app: &App, q: &MetricsQuery) -> Result<Table, AppError> {
    let now = app.clock.now();
    let points = app.store.points().await?;
    let districts = app.store.districts().await?;
    let scope = metrics_scope(q, now, &points, &districts)?;
    let limit = parse_limit(q.limit.as_deref(), MAX_SESSIONS_PAGE, MAX_SESSIONS_PAGE)?;
    let start = Cursor { from: scope.from, to: scope.to, at: scope.from, rank: 0, id: 0 };
    let cursor = match q.cursor.as_deref() {
        Some(c) => {
            let c = Cursor::decode(c, MAX_METRICS_SPAN)?;
            if (q.start_time.is_some() && c.from != scope.from) || (q.end_time.is_some() && c.to != scope.to) {
                return Err(bad_cursor());
            }
            c
        }
        None => start,
    };
    let first = Cursor { at: cursor.from, rank: 0, id: 0, ..cursor };
    let mut spans = match scope.place {
        Place::Filter(f) => {
            app.store.cds_sessions_started(cursor.from, cursor.to, (cursor.at, cursor.id), f, limit + 1).await?
        }
        Place::Nowhere => Vec::new(),
    };
    let more = spans.len() as i64 > limit;
    spans.truncate(limit as usize);
    let next = if more {
        spans.last().map(|s| Cursor { at: s.started_at, rank: 0, id: s.id, ..cursor }.encode())
    } else {
        None
    };
    let by_id: HashMap<i64, &PointRecord> = points.iter().map(|p| (p.id, p)).collect();
    let key = app.receipt_key.as_slice();
    let list: Vec<Value> =
        spans.iter().filter_map(|s| by_id.get(&s.point_id).map(|p| session_json(key, s, p))).collect();
    let rows = list.len();
    Ok(Table {
        columns: SESSION_COLUMNS,
        page: Page { body: envelope(app, now, json!({ "sessions": list })), first: first.encode(), next, rows },
    })
}

/// One place's figures in one local hour.
#[derive(Debug, Default, Clone)]
struct HourFigures {
    started: i64,
    events: i64,
    dwell_of_started_s: i64,
    occupied_s: i64,
    revenue: i64,
}

fn local_hour_start(t: DateTime<Utc>) -> DateTime<Utc> {
    let local = t.with_timezone(&LOCAL_TZ);
    let floored = local.with_minute(0).and_then(|l| l.with_second(0)).and_then(|l| l.with_nanosecond(0));
    floored.map_or(t, |l| l.with_timezone(&Utc))
}

/// `GET /cds/metrics/aggregates`: per zone (or area, `curb_place_type=area`) and local hour
/// that had any parking, event or revenue in the window (hours are whole: the window is
/// widened to them): sessions started, events (session starts and ends, checks, citations),
/// turnover, average dwell time (minutes), occupancy (percent of the spaces' time) and, an
/// iParking extension, the hour's revenue from the ledger (VND).
pub async fn aggregates(app: &App, q: &MetricsQuery) -> Result<Table, AppError> {
    let now = app.clock.now();
    let points = app.store.points().await?;
    let districts = app.store.districts().await?;
    let scope = metrics_scope(q, now, &points, &districts)?;
    if let Some(m) = q.metric_type.as_deref()
        && !METRIC_TYPES.contains(&m)
    {
        return Err(bad_param(
            "metric_type",
            "metric_type là total_sessions, total_events, turnover, average_dwell_time hoặc occupancy_percent.",
            "metric_type is total_sessions, total_events, turnover, average_dwell_time or occupancy_percent.",
        ));
    }
    let from = local_hour_start(scope.from);
    let to = {
        let t = local_hour_start(scope.to);
        if t < scope.to { t + Duration::hours(1) } else { t }
    };
    let (spans, revenue, enforcement) = match scope.place {
        Place::Filter(f) => (
            app.store.cds_sessions_overlapping(from, to, f).await?,
            app.store.cds_revenue(from, to, f).await?,
            app.store.cds_enforcement_counts(from, to, f).await?,
        ),
        Place::Nowhere => (Vec::new(), Vec::new(), Vec::new()),
    };
    let by_id: HashMap<i64, &PointRecord> = points.iter().map(|p| (p.id, p)).collect();
    // The place a point's figures go to: its zone, or its district's area.
    let place_of_point = |pid: i64| -> Option<(Uuid, i64)> {
        let p = by_id.get(&pid)?;
        Some(if scope.area_level {
            (cds::area_id(&p.district_code), p.district_id)
        } else {
            (cds::zone_id(&p.code), p.id)
        })
    };
    let mut capacity: HashMap<Uuid, i64> = HashMap::new();
    for p in &points {
        if let Some((u, _)) = place_of_point(p.id) {
            *capacity.entry(u).or_default() += i64::from(p.capacity);
        }
    }
    let mut figures: BTreeMap<(DateTime<Utc>, Uuid), HourFigures> = BTreeMap::new();
    for s in &spans {
        let Some((place, _)) = place_of_point(s.point_id) else { continue };
        let end = span_end(s, now);
        if s.started_at >= from && s.started_at < to {
            let f = figures.entry((local_hour_start(s.started_at), place)).or_default();
            f.started += 1;
            f.events += 1;
            f.dwell_of_started_s += (end - s.started_at).num_seconds();
        }
        if let Some(ended) = s.ended_at
            && ended >= from
            && ended < to
        {
            figures.entry((local_hour_start(ended), place)).or_default().events += 1;
        }
        let mut h = local_hour_start(s.started_at.max(from));
        while h < end.min(to) {
            let next = h + Duration::hours(1);
            let overlap = (end.min(next) - s.started_at.max(h)).num_seconds();
            if overlap > 0 {
                figures.entry((h, place)).or_default().occupied_s += overlap;
            }
            h = next;
        }
    }
    let hour_of = |local_hour: &str| -> Result<Option<DateTime<Utc>>, AppError> {
        let local = chrono::NaiveDateTime::parse_from_str(&format!("{local_hour}:00:00"), "%Y-%m-%d %H:%M:%S")
            .map_err(|_| AppError::internal(&format!("bad local hour {local_hour:?}")))?;
        Ok(LOCAL_TZ.from_local_datetime(&local).single().map(|h| h.with_timezone(&Utc)))
    };
    for r in &revenue {
        let Some((place, _)) = place_of_point(r.point_id) else { continue };
        let Some(h) = hour_of(&r.local_hour)? else { continue };
        figures.entry((h, place)).or_default().revenue += r.gross;
    }
    for c in &enforcement {
        let Some((place, _)) = place_of_point(c.point_id) else { continue };
        let Some(h) = hour_of(&c.local_hour)? else { continue };
        figures.entry((h, place)).or_default().events += c.count;
    }
    let per_place_hour = if q.metric_type.is_some() { 1 } else { METRIC_TYPES.len() };
    if figures.len().saturating_mul(per_place_hour) > MAX_AGGREGATE_ROWS {
        return Err(AppError::unprocessable(
            "too_many_rows",
            format!("Quá {MAX_AGGREGATE_ROWS} dòng: thu hẹp khoảng thời gian, chọn một nơi hoặc một chỉ số."),
            format!("Over {MAX_AGGREGATE_ROWS} rows: narrow the time range, or choose a place or a metric."),
        ));
    }
    let kind = if scope.area_level { "area" } else { "zone" };
    let mut list = Vec::new();
    for ((hour, place), f) in &figures {
        let local = hour.with_timezone(&LOCAL_TZ);
        let cap = capacity.get(place).copied().unwrap_or(0);
        let mut values: Vec<(&str, f64)> = vec![
            ("total_sessions", f.started as f64),
            ("total_events", f.events as f64),
            ("turnover", f.started as f64),
        ];
        if f.started > 0 {
            values.push(("average_dwell_time", round2(f.dwell_of_started_s as f64 / 60.0 / f.started as f64)));
        }
        if cap > 0 {
            values.push(("occupancy_percent", round2(100.0 * f.occupied_s as f64 / (cap as f64 * 3600.0))));
        }
        for (metric, value) in values {
            if q.metric_type.as_deref().is_some_and(|m| m != metric) {
                continue;
            }
            list.push(json!({
                "curb_place_type": kind,
                "curb_place_id": place.to_string(),
                "metric_type": metric,
                "date": local.format("%Y-%m-%d").to_string(),
                "hour": local.hour(),
                "value": value,
                "revenue": f.revenue,
            }));
        }
    }
    let rows = list.len();
    Ok(Table {
        columns: AGGREGATE_COLUMNS,
        page: Page { body: envelope(app, now, json!({ "aggregates": list })), first: String::new(), next: None, rows },
    })
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_junk() {
        let t = |s: i64| Utc.timestamp_opt(s, 123_456_000).single().unwrap();
        let c = Cursor { from: t(1_800_000_000), to: t(1_800_003_600), at: t(1_800_001_000), rank: 2, id: 42 };
        assert_eq!(Cursor::decode(&c.encode(), Duration::hours(1)).unwrap(), c);
        for junk in ["", "1.2.3", "a.b.c.d.e", "5.1.3.0.1", "0.1.1.9.1", "1.2.3.4.5.6"] {
            assert!(Cursor::decode(junk, Duration::hours(1)).is_err(), "{junk}");
        }
        // A window wider than the query's own is refused (no unbounded scans by hand).
        let wide = Cursor { to: t(1_800_000_000 + 7200), ..c };
        assert!(Cursor::decode(&wide.encode(), Duration::hours(1)).is_err());
    }

    #[test]
    fn event_time_is_one_utc_hour() {
        let now = Utc::now();
        let q = |s: &str| EventsQuery { event_time: Some(s.into()), ..EventsQuery::default() };
        let (from, to) = events_window(&q("2026-12-01T07"), now).unwrap();
        assert_eq!(from.to_rfc3339(), "2026-12-01T07:00:00+00:00");
        assert_eq!(to - from, Duration::hours(1));
        for bad in ["2026-12-01", "2026-12-01T24", "2026-12-01T7", "2026-13-01T07", "x", "2026-12-01T07:00"] {
            assert!(events_window(&q(bad), now).is_err(), "{bad}");
        }
        let (from, to) = events_window(&EventsQuery::default(), now).unwrap();
        assert_eq!((to, to - from), (now, Duration::minutes(60)));
    }

    #[test]
    fn licence_urls() {
        assert!(is_licence_url(crate::DEFAULT_DATA_LICENSE_URL));
        assert!(!is_licence_url("ftp://x"));
        assert!(!is_licence_url("https://a b"));
        assert!(!is_licence_url("https://"));
    }
}
