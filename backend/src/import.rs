//! Reading point files: GeoJSON FeatureCollections and CSV. Parsing checks each row on
//! its own (shape, types, ranges); checks against the registry (district exists, code
//! unused) are done by `registry::import_drafts`.

use iparking_mobile_api::{ImportFormat, ImportRowError};
use serde_json::Value;

use crate::domain::city::{
    self, curb_midpoint, validate_capacity, validate_classes, validate_curb, validate_name, validate_position,
};

/// A point row as read from a file, checked on its own.
#[derive(Debug, Clone, PartialEq)]
pub struct PointDraft {
    /// CSV line (header = 1) or feature index + 1.
    pub line: u64,
    /// Signboard code (upper-cased, trimmed).
    pub code: String,
    /// Display name.
    pub name: String,
    /// District code.
    pub district: String,
    /// Street name.
    pub street: String,
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lon: f64,
    /// Curb line.
    pub curb: Option<Vec<[f64; 2]>>,
    /// Spaces.
    pub capacity: i32,
    /// Allowed classes.
    pub vehicle_classes: Vec<iparking_mobile_api::VehicleClass>,
}

/// A file that cannot be read at all (not a row problem).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError(pub String);

/// The rows of a file: each either a draft or the reason it was rejected.
pub type ParsedRows = Vec<Result<PointDraft, ImportRowError>>;

/// Parses `bytes` in `format`.
pub fn parse(format: ImportFormat, bytes: &[u8]) -> Result<ParsedRows, FileError> {
    match format {
        ImportFormat::Geojson => parse_geojson(bytes),
        ImportFormat::Csv => parse_csv(bytes),
    }
}

fn row_err(line: u64, code: Option<&str>, message: impl Into<String>) -> ImportRowError {
    ImportRowError { line, code: code.map(str::to_owned), message: message.into() }
}

/// Fields common to both formats, before the checks.
struct RawRow<'a> {
    line: u64,
    code: Option<&'a str>,
    name: Option<&'a str>,
    district: Option<&'a str>,
    street: Option<&'a str>,
    position: Option<(f64, f64)>,
    curb: Option<Vec<[f64; 2]>>,
    capacity: Option<i64>,
    classes: Result<Vec<iparking_mobile_api::VehicleClass>, String>,
}

fn check_row(raw: RawRow<'_>) -> Result<PointDraft, ImportRowError> {
    let line = raw.line;
    let code = raw.code.map(|c| c.trim().to_uppercase());
    let code_ref = code.as_deref();
    let missing = |field: &str| row_err(line, code_ref, format!("missing field `{field}`"));
    let code = code.clone().filter(|c| !c.is_empty()).ok_or_else(|| missing("code"))?;
    let name =
        validate_name("name", raw.name.ok_or_else(|| missing("name"))?).map_err(|e| row_err(line, code_ref, e.en))?;
    let district = raw.district.map(|d| d.trim().to_uppercase()).ok_or_else(|| missing("district"))?;
    city::validate_district_code(&district).map_err(|e| row_err(line, code_ref, e.en))?;
    city::validate_point_code(&code, &district).map_err(|e| row_err(line, code_ref, e.en))?;
    let street = validate_name("street", raw.street.ok_or_else(|| missing("street"))?)
        .map_err(|e| row_err(line, code_ref, e.en))?;
    if let Some(curb) = &raw.curb {
        validate_curb(curb).map_err(|e| row_err(line, code_ref, e.en))?;
    }
    let (lat, lon) = match (raw.position, &raw.curb) {
        (Some(p), _) => p,
        (None, Some(curb)) => curb_midpoint(curb),
        (None, None) => return Err(missing("lat/lon")),
    };
    validate_position(lat, lon).map_err(|e| row_err(line, code_ref, e.en))?;
    let capacity = validate_capacity(raw.capacity.ok_or_else(|| missing("capacity"))?)
        .map_err(|e| row_err(line, code_ref, e.en))?;
    let classes = raw.classes.map_err(|m| row_err(line, code_ref, m))?;
    let vehicle_classes = validate_classes(&classes).map_err(|e| row_err(line, code_ref, e.en))?;
    Ok(PointDraft { line, code, name, district, street, lat, lon, curb: raw.curb, capacity, vehicle_classes })
}

fn parse_geojson(bytes: &[u8]) -> Result<ParsedRows, FileError> {
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| FileError(format!("not valid JSON: {e}")))?;
    if doc.get("type").and_then(Value::as_str) != Some("FeatureCollection") {
        return Err(FileError("a GeoJSON FeatureCollection is expected (\"type\": \"FeatureCollection\")".into()));
    }
    let features = doc
        .get("features")
        .and_then(Value::as_array)
        .ok_or_else(|| FileError("the FeatureCollection has no \"features\" array".into()))?;
    Ok(features.iter().enumerate().map(|(i, f)| geojson_feature(i as u64 + 1, f)).collect())
}

fn geojson_feature(line: u64, f: &Value) -> Result<PointDraft, ImportRowError> {
    let props = f.get("properties").and_then(Value::as_object);
    let prop_str = |k: &str| props.and_then(|p| p.get(k)).and_then(Value::as_str);
    let code = prop_str("code");
    if f.get("type").and_then(Value::as_str) != Some("Feature") {
        return Err(row_err(line, code, "not a GeoJSON Feature"));
    }
    let geometry = f.get("geometry").ok_or_else(|| row_err(line, code, "missing geometry"))?;
    let coords = geometry.get("coordinates");
    let as_pair = |v: &Value| -> Option<[f64; 2]> {
        let a = v.as_array()?;
        // GeoJSON positions are [lon, lat] with an optional altitude.
        if a.len() < 2 || a.len() > 3 {
            return None;
        }
        Some([a[0].as_f64()?, a[1].as_f64()?])
    };
    let (position, curb) = match geometry.get("type").and_then(Value::as_str) {
        Some("Point") => {
            let [lon, lat] = coords
                .and_then(as_pair)
                .ok_or_else(|| row_err(line, code, "Point coordinates must be [longitude, latitude]"))?;
            (Some((lat, lon)), None)
        }
        Some("LineString") => {
            let line_coords: Option<Vec<[f64; 2]>> =
                coords.and_then(Value::as_array).map(|a| a.iter().map(as_pair).collect()).unwrap_or(None);
            let line_coords = line_coords
                .ok_or_else(|| row_err(line, code, "LineString coordinates must be [[longitude, latitude], …]"))?;
            (None, Some(line_coords))
        }
        Some(other) => {
            return Err(row_err(line, code, format!("geometry type {other} is not supported (Point or LineString)")));
        }
        None => return Err(row_err(line, code, "geometry has no type")),
    };
    let capacity = match props.and_then(|p| p.get("capacity")) {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_i64().ok_or_else(|| row_err(line, code, "capacity must be a whole number"))?),
    };
    let classes = match props.and_then(|p| p.get("vehicle_classes")) {
        None | Some(Value::Null) => Err("missing field `vehicle_classes`".to_owned()),
        Some(Value::String(s)) => city::parse_classes(s).map_err(|e| e.en),
        Some(Value::Array(a)) => {
            let names: Option<Vec<&str>> = a.iter().map(Value::as_str).collect();
            match names {
                Some(names) => city::parse_classes(&names.join(";")).map_err(|e| e.en),
                None => Err("vehicle_classes must be a list of names".to_owned()),
            }
        }
        Some(_) => Err("vehicle_classes must be a list of names".to_owned()),
    };
    check_row(RawRow {
        line,
        code,
        name: prop_str("name"),
        district: prop_str("district"),
        street: prop_str("street"),
        position,
        curb,
        capacity,
        classes,
    })
}

const CSV_REQUIRED: [&str; 8] = ["code", "name", "district", "street", "lat", "lon", "capacity", "vehicle_classes"];

fn parse_csv(bytes: &[u8]) -> Result<ParsedRows, FileError> {
    // Spreadsheet exports often start with a UTF-8 BOM.
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut rdr = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(bytes);
    let headers = rdr.headers().map_err(|e| FileError(format!("cannot read the CSV header: {e}")))?.clone();
    let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let missing: Vec<&str> = CSV_REQUIRED.iter().copied().filter(|c| col(c).is_none()).collect();
    if !missing.is_empty() {
        return Err(FileError(format!(
            "the CSV header lacks column(s) {}; expected {} (and optionally curb)",
            missing.join(", "),
            CSV_REQUIRED.join(",")
        )));
    }
    let idx: Vec<usize> = CSV_REQUIRED.iter().map(|c| col(c).unwrap_or_default()).collect();
    let curb_col = col("curb");
    let mut rows = Vec::new();
    for (n, rec) in rdr.records().enumerate() {
        let fallback_line = n as u64 + 2;
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(fallback_line, |p| p.line());
                rows.push(Err(row_err(line, None, format!("unreadable CSV row: {e}"))));
                continue;
            }
        };
        let line = rec.position().map_or(fallback_line, |p| p.line());
        let get = |i: usize| rec.get(idx[i]).filter(|s| !s.is_empty());
        let num = |i: usize, what: &str| -> Result<Option<f64>, ImportRowError> {
            get(i)
                .map(|s| s.parse::<f64>().map_err(|_| row_err(line, get(0), format!("{what} is not a number"))))
                .transpose()
        };
        let parsed = (|| {
            let lat = num(4, "lat")?;
            let lon = num(5, "lon")?;
            let capacity = get(6)
                .map(|s| s.parse::<i64>().map_err(|_| row_err(line, get(0), "capacity must be a whole number")))
                .transpose()?;
            let curb = match curb_col.and_then(|c| rec.get(c)).filter(|s| !s.is_empty()) {
                Some(s) => Some(
                    serde_json::from_str::<Vec<[f64; 2]>>(s)
                        .map_err(|_| row_err(line, get(0), "curb must be a JSON list of [longitude, latitude]"))?,
                ),
                None => None,
            };
            let position = match (lat, lon) {
                (Some(lat), Some(lon)) => Some((lat, lon)),
                (None, None) => None,
                _ => return Err(row_err(line, get(0), "give both lat and lon")),
            };
            check_row(RawRow {
                line,
                code: get(0),
                name: get(1),
                district: get(2),
                street: get(3),
                position,
                curb,
                capacity,
                classes: get(7)
                    .map(|s| city::parse_classes(s).map_err(|e| e.en))
                    .unwrap_or_else(|| Err("missing field `vehicle_classes`".to_owned())),
            })
        })();
        rows.push(parsed);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use iparking_mobile_api::VehicleClass;

    use super::*;

    #[test]
    fn csv_rows_report_their_line() {
        let csv = "\u{feff}code,name,district,street,lat,lon,capacity,vehicle_classes\n\
                   hk101,Điểm A,HK,Hàng Bài,21.02,105.85,12,car;motorbike\n\
                   HK102,Điểm B,HK,Hàng Bài,abc,105.85,12,car\n\
                   HK103,Điểm C,HK,Hàng Bài,21.02,105.85,-3,car\n\
                   BD104,Điểm D,HK,Hàng Bài,21.02,105.85,3,car\n\
                   HK105,Điểm E,HK,Hàng Bài,21.02,105.85,3,tank\n";
        let rows = parse(ImportFormat::Csv, csv.as_bytes()).unwrap();
        assert_eq!(rows.len(), 5);
        let ok = rows[0].as_ref().unwrap();
        assert_eq!(ok.code, "HK101");
        assert_eq!(ok.line, 2);
        assert_eq!(ok.vehicle_classes, vec![VehicleClass::Car, VehicleClass::Motorbike]);
        let errs: Vec<(u64, String)> =
            rows[1..].iter().map(|r| r.as_ref().unwrap_err()).map(|e| (e.line, e.message.clone())).collect();
        assert_eq!(errs[0].0, 3);
        assert!(errs[0].1.contains("lat"), "{:?}", errs[0]);
        assert_eq!(errs[1].0, 4);
        assert!(errs[1].1.contains("Capacity"), "{:?}", errs[1]);
        assert!(errs[2].1.contains("district code HK"), "{:?}", errs[2]);
        assert!(errs[3].1.contains("tank"), "{:?}", errs[3]);
    }

    #[test]
    fn csv_without_required_columns_is_refused_whole() {
        let err = parse(ImportFormat::Csv, b"code,name\nHK001,A\n").unwrap_err();
        assert!(err.0.contains("district"), "{}", err.0);
    }

    #[test]
    fn geojson_points_and_lines() {
        let doc = serde_json::json!({
            "type": "FeatureCollection",
            "features": [
                {"type": "Feature", "geometry": {"type": "Point", "coordinates": [105.85, 21.02]},
                 "properties": {"code": "HK201", "name": "A", "district": "HK", "street": "Tràng Tiền",
                                "capacity": 10, "vehicle_classes": ["car"]}},
                {"type": "Feature", "geometry": {"type": "LineString", "coordinates": [[105.85, 21.02], [105.852, 21.02]]},
                 "properties": {"code": "HK202", "name": "B", "district": "HK", "street": "Tràng Tiền",
                                "capacity": 8, "vehicle_classes": "car;minibus"}},
                {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": []},
                 "properties": {"code": "HK203"}},
                {"type": "Feature", "geometry": {"type": "Point", "coordinates": [105.85, 95.0]},
                 "properties": {"code": "HK204", "name": "D", "district": "HK", "street": "X", "capacity": 1,
                                "vehicle_classes": ["car"]}}
            ]
        });
        let rows = parse(ImportFormat::Geojson, doc.to_string().as_bytes()).unwrap();
        assert_eq!(rows[0].as_ref().unwrap().lat, 21.02);
        let b = rows[1].as_ref().unwrap();
        assert!((b.lon - 105.851).abs() < 1e-6 && b.curb.as_ref().unwrap().len() == 2);
        assert_eq!(rows[2].as_ref().unwrap_err().line, 3);
        assert!(rows[2].as_ref().unwrap_err().message.contains("Polygon"));
        assert!(rows[3].as_ref().unwrap_err().message.contains("coordinates"));
        assert!(parse(ImportFormat::Geojson, b"{\"type\":\"Feature\"}").is_err());
        assert!(parse(ImportFormat::Geojson, b"not json").is_err());
    }
}
