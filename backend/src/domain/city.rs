//! The city registry: districts, streets and parking points, and the rules their data obey.

use geo::{Distance, Haversine, Point};
use iparking_mobile_api::VehicleClass;

/// Largest capacity a single point may declare (a sanity bound, not a city rule).
pub const MAX_CAPACITY: i32 = 10_000;
/// Most vertices accepted in a curb line.
pub const MAX_CURB_VERTICES: usize = 500;
/// Longest name accepted for a point, street or district, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// A rule a piece of registry data broke, with messages in both languages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Stable error code.
    pub code: &'static str,
    /// Vietnamese message.
    pub vi: String,
    /// English message.
    pub en: String,
}

impl Invalid {
    pub(crate) fn new(code: &'static str, vi: impl Into<String>, en: impl Into<String>) -> Self {
        Self { code, vi: vi.into(), en: en.into() }
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.en)
    }
}

/// A district code: 2 to 4 upper-case ASCII letters (`HK`, `BD`, `HBT`, `DD`).
pub fn validate_district_code(code: &str) -> Result<(), Invalid> {
    if (2..=4).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(Invalid::new(
            "invalid_district_code",
            format!("Mã quận \"{}\" không hợp lệ: cần 2–4 chữ cái in hoa, ví dụ HK.", truncate(code)),
            format!("District code \"{}\" is invalid: use 2–4 upper-case letters, e.g. HK.", truncate(code)),
        ))
    }
}

/// A point code is its district's code followed by 3 to 6 digits, e.g. `HK001`.
///
/// SMS messages carry the district in the keyword and the number in the text
/// (`IP25HK 001 …`), so the prefix must be the district of the point's street.
pub fn validate_point_code(code: &str, district_code: &str) -> Result<(), Invalid> {
    let digits = code.strip_prefix(district_code).unwrap_or("");
    if code.starts_with(district_code) && (3..=6).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
    {
        Ok(())
    } else {
        Err(Invalid::new(
            "invalid_point_code",
            format!(
                "Mã điểm \"{}\" không hợp lệ: cần mã quận {district_code} và 3–6 chữ số, ví dụ {district_code}001.",
                truncate(code)
            ),
            format!(
                "Point code \"{}\" is invalid: use the district code {district_code} and 3–6 digits, e.g. {district_code}001.",
                truncate(code)
            ),
        ))
    }
}

/// Whether `c` counts as blank around text people type: Unicode white space, and the byte
/// order mark (which JSON Schema's `\s`, and so the OpenAPI document, counts as space).
pub fn is_blank(c: char) -> bool {
    c.is_whitespace() || c == '\u{feff}'
}

/// `s` without blank characters around it ([`is_blank`]).
pub fn trim_blank(s: &str) -> &str {
    s.trim_matches(is_blank)
}

/// Whether `s` is free text of 1..=`max` characters (as sent, blanks around included) with
/// something in it besides blanks: the rule of names, notes and reasons, which the OpenAPI
/// document states as a pattern and a `maxLength`.
pub fn text_fits(s: &str, max: usize) -> bool {
    !trim_blank(s).is_empty() && s.chars().count() <= max
}

/// A display name: 1..=200 characters, not blank, no control characters; kept trimmed.
pub fn validate_name(field: &'static str, name: &str) -> Result<String, Invalid> {
    let trimmed = trim_blank(name);
    if !text_fits(name, MAX_NAME_CHARS) || trimmed.chars().any(char::is_control) {
        return Err(Invalid::new(
            "invalid_name",
            format!("Trường {field} cần 1–{MAX_NAME_CHARS} ký tự, không có ký tự điều khiển."),
            format!("Field {field} needs 1–{MAX_NAME_CHARS} characters and no control characters."),
        ));
    }
    Ok(trimmed.to_owned())
}

/// Latitude in -90..=90 and longitude in -180..=180, both finite.
pub fn validate_position(lat: f64, lon: f64) -> Result<(), Invalid> {
    if lat.is_finite() && lon.is_finite() && (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) {
        Ok(())
    } else {
        Err(Invalid::new(
            "invalid_coordinates",
            "Tọa độ không hợp lệ: vĩ độ trong [-90, 90], kinh độ trong [-180, 180].",
            "Invalid coordinates: latitude must be in [-90, 90] and longitude in [-180, 180].",
        ))
    }
}

/// Capacity in 0..=10,000.
pub fn validate_capacity(capacity: i64) -> Result<i32, Invalid> {
    if (0..=i64::from(MAX_CAPACITY)).contains(&capacity) {
        Ok(capacity as i32)
    } else {
        Err(Invalid::new(
            "invalid_capacity",
            format!("Số chỗ đỗ phải từ 0 đến {MAX_CAPACITY}."),
            format!("Capacity must be between 0 and {MAX_CAPACITY}."),
        ))
    }
}

/// At least one vehicle class; duplicates are removed and the list sorted.
pub fn validate_classes(classes: &[VehicleClass]) -> Result<Vec<VehicleClass>, Invalid> {
    let mut v = classes.to_vec();
    v.sort();
    v.dedup();
    if v.is_empty() {
        return Err(Invalid::new(
            "invalid_vehicle_classes",
            "Cần ít nhất một loại xe (car, minibus, large, motorbike).",
            "At least one vehicle class is needed (car, minibus, large, motorbike).",
        ));
    }
    Ok(v)
}

/// Parses a list of class names separated by `;`, `,` or `|`.
pub fn parse_classes(s: &str) -> Result<Vec<VehicleClass>, Invalid> {
    let mut out = Vec::new();
    for part in s.split([';', ',', '|']).map(str::trim).filter(|p| !p.is_empty()) {
        match VehicleClass::parse(part) {
            Some(c) => out.push(c),
            None => {
                return Err(Invalid::new(
                    "invalid_vehicle_classes",
                    format!("Loại xe \"{}\" không tồn tại (car, minibus, large, motorbike).", truncate(part)),
                    format!("Unknown vehicle class \"{}\" (car, minibus, large, motorbike).", truncate(part)),
                ));
            }
        }
    }
    validate_classes(&out)
}

/// Stores classes as a comma-separated list.
pub fn classes_to_db(classes: &[VehicleClass]) -> String {
    classes.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(",")
}

/// Reads classes written by [`classes_to_db`]; unknown names are skipped.
pub fn classes_from_db(s: &str) -> Vec<VehicleClass> {
    s.split(',').filter_map(VehicleClass::parse).collect()
}

/// A curb line: 2..=500 vertices of `[lon, lat]`, each a valid position.
pub fn validate_curb(curb: &[[f64; 2]]) -> Result<(), Invalid> {
    if curb.len() < 2 || curb.len() > MAX_CURB_VERTICES {
        return Err(Invalid::new(
            "invalid_curb",
            format!("Đường mép vỉa hè cần 2–{MAX_CURB_VERTICES} điểm [kinh độ, vĩ độ]."),
            format!("A curb line needs 2–{MAX_CURB_VERTICES} vertices of [lon, lat]."),
        ));
    }
    for [lon, lat] in curb {
        validate_position(*lat, *lon)?;
    }
    Ok(())
}

/// The point halfway along a curb line, measured by haversine length: where the
/// signboard of a point imported as a line is placed. Returns `(lat, lon)`.
pub fn curb_midpoint(curb: &[[f64; 2]]) -> (f64, f64) {
    let pts: Vec<Point> = curb.iter().map(|[lon, lat]| Point::new(*lon, *lat)).collect();
    let lengths: Vec<f64> = pts.windows(2).map(|w| Haversine.distance(w[0], w[1])).collect();
    let total: f64 = lengths.iter().sum();
    if total <= 0.0 {
        return (curb[0][1], curb[0][0]);
    }
    let mut remaining = total / 2.0;
    for (i, len) in lengths.iter().enumerate() {
        if remaining <= *len && *len > 0.0 {
            let t = remaining / len;
            let (a, b) = (pts[i], pts[i + 1]);
            return (a.y() + (b.y() - a.y()) * t, a.x() + (b.x() - a.x()) * t);
        }
        remaining -= len;
    }
    let last = curb[curb.len() - 1];
    (last[1], last[0])
}

/// Great-circle distance in metres between two `(lat, lon)` positions.
pub fn distance_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    Haversine.distance(Point::new(a.1, a.0), Point::new(b.1, b.0))
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn district_codes() {
        for ok in ["HK", "BD", "HBT", "DD", "ABCD"] {
            assert!(validate_district_code(ok).is_ok(), "{ok}");
        }
        for bad in ["", "H", "hk", "HK1", "ABCDE", "Hà", "H K"] {
            assert_eq!(validate_district_code(bad).unwrap_err().code, "invalid_district_code", "{bad}");
        }
    }

    #[test]
    fn point_codes_carry_their_district() {
        assert!(validate_point_code("HK001", "HK").is_ok());
        assert!(validate_point_code("HBT123456", "HBT").is_ok());
        for bad in ["HK01", "BD001", "HK0001234", "HKA01", "hk001", "HK", "001"] {
            assert!(validate_point_code(bad, "HK").is_err(), "{bad}");
        }
    }

    #[test]
    fn positions_and_capacity() {
        assert!(validate_position(21.0245, 105.853).is_ok());
        assert!(validate_position(90.0, -180.0).is_ok());
        for (lat, lon) in [(90.1, 0.0), (0.0, 180.5), (f64::NAN, 0.0), (0.0, f64::INFINITY)] {
            assert!(validate_position(lat, lon).is_err());
        }
        assert_eq!(validate_capacity(0).unwrap(), 0);
        assert_eq!(validate_capacity(10_000).unwrap(), 10_000);
        assert!(validate_capacity(-1).is_err());
        assert!(validate_capacity(10_001).is_err());
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(validate_name("name", "  Lý Thường Kiệt ").unwrap(), "Lý Thường Kiệt");
        assert!(validate_name("name", "   ").is_err());
        assert!(validate_name("name", "a\u{0}b").is_err());
        assert!(validate_name("name", &"ư".repeat(201)).is_err());
        assert!(validate_name("name", &"ư".repeat(200)).is_ok());
    }

    #[test]
    fn classes_parse_and_round_trip() {
        let c = parse_classes("motorbike; car,car").unwrap();
        assert_eq!(c, vec![VehicleClass::Car, VehicleClass::Motorbike]);
        assert_eq!(classes_from_db(&classes_to_db(&c)), c);
        assert!(parse_classes("").is_err());
        assert_eq!(parse_classes("car;tank").unwrap_err().code, "invalid_vehicle_classes");
    }

    #[test]
    fn curb_midpoint_is_halfway_along_the_line() {
        // An L-shaped line: 100 m north then ~100 m east. Halfway is the corner.
        let north = 100.0 / 111_195.0;
        let east = 100.0 / (111_195.0 * 21.0f64.to_radians().cos());
        let line = [[105.85, 21.0], [105.85, 21.0 + north], [105.85 + east, 21.0 + north]];
        let (lat, lon) = curb_midpoint(&line);
        let corner = (21.0 + north, 105.85);
        assert!(distance_m((lat, lon), corner) < 1.0, "midpoint {lat},{lon}");
        // A degenerate line is its first vertex.
        assert_eq!(curb_midpoint(&[[1.0, 2.0], [1.0, 2.0]]), (2.0, 1.0));
        assert!(validate_curb(&[[1.0, 2.0]]).is_err());
        assert!(validate_curb(&[[1.0, 2.0], [200.0, 2.0]]).is_err());
    }

    #[test]
    fn haversine_distance_is_metres() {
        // One degree of latitude is about 111.2 km.
        let d = distance_m((21.0, 105.85), (22.0, 105.85));
        assert!((d - 111_195.0).abs() < 100.0, "{d}");
    }
}

/// Text folded for searching: lower case, Vietnamese diacritics removed (`Lý Thường Kiệt` →
/// `ly thuong kiet`, `đ` → `d`), runs of anything but letters and digits as one space.
pub fn fold_for_search(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = true;
    for c in text.chars().flat_map(char::to_lowercase) {
        let base = match c {
            'à' | 'á' | 'ả' | 'ã' | 'ạ' | 'ă' | 'ằ' | 'ắ' | 'ẳ' | 'ẵ' | 'ặ' | 'â' | 'ầ' | 'ấ' | 'ẩ' | 'ẫ' | 'ậ' => {
                'a'
            }
            'è' | 'é' | 'ẻ' | 'ẽ' | 'ẹ' | 'ê' | 'ề' | 'ế' | 'ể' | 'ễ' | 'ệ' => 'e',
            'ì' | 'í' | 'ỉ' | 'ĩ' | 'ị' => 'i',
            'ò' | 'ó' | 'ỏ' | 'õ' | 'ọ' | 'ô' | 'ồ' | 'ố' | 'ổ' | 'ỗ' | 'ộ' | 'ơ' | 'ờ' | 'ớ' | 'ở' | 'ỡ' | 'ợ' => {
                'o'
            }
            'ù' | 'ú' | 'ủ' | 'ũ' | 'ụ' | 'ư' | 'ừ' | 'ứ' | 'ử' | 'ữ' | 'ự' => 'u',
            'ỳ' | 'ý' | 'ỷ' | 'ỹ' | 'ỵ' => 'y',
            'đ' => 'd',
            c => c,
        };
        if base.is_alphanumeric() {
            out.push(base);
            space = false;
        } else if !space {
            out.push(' ');
            space = true;
        }
    }
    if out.ends_with(' ') {
        out.pop();
    }
    out
}

#[cfg(test)]
mod search_tests {
    use super::fold_for_search;

    #[test]
    fn vietnamese_is_folded_for_search() {
        assert_eq!(fold_for_search("Lý Thường Kiệt"), "ly thuong kiet");
        assert_eq!(fold_for_search("  ĐINH  Tiên-Hoàng!"), "dinh tien hoang");
        assert_eq!(fold_for_search("HK007"), "hk007");
        assert_eq!(fold_for_search("Phố Hàng Bài, Hoàn Kiếm"), "pho hang bai hoan kiem");
        assert_eq!(fold_for_search("…"), "");
    }
}
