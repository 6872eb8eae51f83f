//! Pure rules of the Curb Data Specification (CDS 1.1) feeds: the stable identifiers of
//! curb places and policies, the keyed identifiers of events, and the zones' geometry.
//! See docs/decisions/0027-cds-feeds.md.

use uuid::Uuid;

/// The CDS version the feeds conform to (the answers' `version`).
pub const VERSION: &str = "1.1.0";
/// The media type of the JSON answers.
pub const JSON_MEDIA_TYPE: &str = "application/vnd.cds+json;version=1.1";
/// The media type of the Metrics answers as CSV.
pub const CSV_MEDIA_TYPE: &str = "application/vnd.cds+csv;version=1.1";

/// The namespace of every name-based (v5) identifier of the Curbs feed: the v5 UUID of the
/// URL `urn:iparking:cds` in RFC 4122's URL namespace. Fixed forever: changing it changes
/// every published id.
pub fn namespace() -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_URL, b"urn:iparking:cds")
}

/// A Curb Zone's id: v5 of `zone:{code}`. A point's signboard code never changes and is
/// public already, so the id is the same on every node, across restarts and re-imports of
/// the same point.
pub fn zone_id(point_code: &str) -> Uuid {
    Uuid::new_v5(&namespace(), format!("zone:{point_code}").as_bytes())
}

/// A Curb Area's id (one per district): v5 of `area:{district code}`.
pub fn area_id(district_code: &str) -> Uuid {
    Uuid::new_v5(&namespace(), format!("area:{district_code}").as_bytes())
}

/// A Curb Policy's id: v5 of the tariff version, the window and the end of validity. A
/// published tariff never changes but its end can be brought forward (retiring it); the
/// policy then changes, so its id does too (CDS: two policies with one id are identical).
pub fn policy_id(tariff_id: i64, window: usize, valid_until_ms: Option<i64>) -> Uuid {
    let until = valid_until_ms.map_or_else(|| "open".to_owned(), |ms| ms.to_string());
    Uuid::new_v5(&namespace(), format!("policy:{tariff_id}:{window}:{until}").as_bytes())
}

/// The one data source device of each kind of fact. A handheld is carried by one warden, so
/// its own id would follow a person: every check and citation names the wardens' service.
pub fn device_id(kind: &str) -> Uuid {
    Uuid::new_v5(&namespace(), format!("device:{kind}").as_bytes())
}

/// An identifier derived from our row ids with the deployment's secret key: HMAC-SHA256 of
/// `cds:{label}` cut to 128 bits as an RFC 9562 version 8 (custom) UUID. Every node derives
/// the same one, and nobody without the key can tell which row, session or driver it names.
pub fn keyed_id(key: &[u8], label: &str) -> Uuid {
    let mac = super::receipt::hmac_sha256(key, format!("cds:{label}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&mac[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    Uuid::from_bytes(b)
}

/// Metres per degree of latitude (mean).
const M_PER_DEG: f64 = 111_320.0;

/// Half the width of a zone around its curb line, metres (a parking lane of 2.5 m).
pub const CURB_HALF_WIDTH_M: f64 = 1.25;
/// Half the side of the square around a signboard when a point has no curb line, metres.
pub const BOX_HALF_SIDE_M: f64 = 5.0;

/// A zone's geometry: an RFC 7946 Polygon as `[[[lon, lat], …]]`, one closed exterior ring,
/// counter-clockwise. With a curb line (`[lon, lat]` pairs), the line buffered by
/// [`CURB_HALF_WIDTH_M`] on each side (flat ends); without one (or with a degenerate one), a
/// square of 2 × [`BOX_HALF_SIDE_M`] around the signboard at `(lat, lon)`.
pub fn zone_polygon(lat: f64, lon: f64, curb: Option<&[[f64; 2]]>) -> Vec<Vec<[f64; 2]>> {
    let line: Vec<[f64; 2]> = curb.map(dedup).unwrap_or_default();
    let ring = if line.len() >= 2 { buffer_line(&line, CURB_HALF_WIDTH_M) } else { square(lat, lon, BOX_HALF_SIDE_M) };
    vec![counter_clockwise(close(ring))]
}

/// The length of a curb line in centimetres (0 without one).
pub fn line_length_cm(curb: &[[f64; 2]]) -> i64 {
    let line = dedup(curb);
    let Some(first) = line.first() else { return 0 };
    let lat0 = first[1];
    let sum: f64 = line
        .windows(2)
        .map(|w| {
            let (a, b) = (to_m(w[0], lat0), to_m(w[1], lat0));
            (b.0 - a.0).hypot(b.1 - a.1)
        })
        .sum();
    (sum * 100.0).round() as i64
}

/// The bounding box `(min_lon, min_lat, max_lon, max_lat)` of rings.
pub fn bbox(rings: &[Vec<[f64; 2]>]) -> Option<(f64, f64, f64, f64)> {
    let mut it = rings.iter().flatten();
    let first = it.next()?;
    Some(it.fold((first[0], first[1], first[0], first[1]), |(a, b, c, d), p| {
        (a.min(p[0]), b.min(p[1]), c.max(p[0]), d.max(p[1]))
    }))
}

/// A closed counter-clockwise rectangle over a bounding box.
pub fn bbox_polygon((min_lon, min_lat, max_lon, max_lat): (f64, f64, f64, f64)) -> Vec<Vec<[f64; 2]>> {
    vec![vec![[min_lon, min_lat], [max_lon, min_lat], [max_lon, max_lat], [min_lon, max_lat], [min_lon, min_lat]]]
}

/// Great-circle distance in metres (haversine).
pub fn distance_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let (dp, dl) = ((lat2 - lat1).to_radians(), (lon2 - lon1).to_radians());
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6_371_008.8 * a.sqrt().asin()
}

fn dedup(line: &[[f64; 2]]) -> Vec<[f64; 2]> {
    let mut out: Vec<[f64; 2]> = Vec::with_capacity(line.len());
    for p in line {
        if p.iter().all(|c| c.is_finite())
            && out.last().is_none_or(|q| (q[0] - p[0]).abs() + (q[1] - p[1]).abs() > 1e-9)
        {
            out.push(*p);
        }
    }
    out
}

/// Local metres east and north of `(0, lat0)`: an equirectangular projection, exact enough
/// over a curb's few hundred metres.
fn to_m(p: [f64; 2], lat0: f64) -> (f64, f64) {
    (p[0] * M_PER_DEG * lat0.to_radians().cos(), p[1] * M_PER_DEG)
}

fn from_m((x, y): (f64, f64), lat0: f64) -> [f64; 2] {
    [round7(x / (M_PER_DEG * lat0.to_radians().cos())), round7(y / M_PER_DEG)]
}

/// Seven decimals: about a centimetre, as precise as a position needs to be.
fn round7(v: f64) -> f64 {
    (v * 1e7).round() / 1e7
}

fn square(lat: f64, lon: f64, half: f64) -> Vec<[f64; 2]> {
    let c = to_m([lon, lat], lat);
    [(-half, -half), (half, -half), (half, half), (-half, half)]
        .iter()
        .map(|(dx, dy)| from_m((c.0 + dx, c.1 + dy), lat))
        .collect()
}

/// The line offset by `half` to its left, then back along its right: at each vertex along
/// the mean of the neighbouring segments' normals, scaled so the offset stays `half` from
/// both (mitre), and capped at 4 × `half` on hairpins.
fn buffer_line(line: &[[f64; 2]], half: f64) -> Vec<[f64; 2]> {
    let lat0 = line[0][1];
    let pts: Vec<(f64, f64)> = line.iter().map(|p| to_m(*p, lat0)).collect();
    let normal = |a: (f64, f64), b: (f64, f64)| {
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        let len = dx.hypot(dy).max(1e-9);
        (-dy / len, dx / len)
    };
    let n = pts.len();
    let offsets: Vec<(f64, f64)> = (0..n)
        .map(|i| {
            let before = if i > 0 { Some(normal(pts[i - 1], pts[i])) } else { None };
            let after = if i + 1 < n { Some(normal(pts[i], pts[i + 1])) } else { None };
            match (before, after) {
                (Some(a), Some(b)) => {
                    let (mx, my) = (a.0 + b.0, a.1 + b.1);
                    let len = mx.hypot(my);
                    if len < 1e-6 {
                        (a.0 * half, a.1 * half)
                    } else {
                        let (ux, uy) = (mx / len, my / len);
                        let cos = (ux * a.0 + uy * a.1).max(0.25);
                        (ux * half / cos, uy * half / cos)
                    }
                }
                (Some(a), None) | (None, Some(a)) => (a.0 * half, a.1 * half),
                (None, None) => (0.0, 0.0),
            }
        })
        .collect();
    let left = pts.iter().zip(&offsets).map(|(p, o)| from_m((p.0 + o.0, p.1 + o.1), lat0));
    let right: Vec<[f64; 2]> = pts.iter().zip(&offsets).map(|(p, o)| from_m((p.0 - o.0, p.1 - o.1), lat0)).collect();
    left.chain(right.into_iter().rev()).collect()
}

fn close(mut ring: Vec<[f64; 2]>) -> Vec<[f64; 2]> {
    if let (Some(first), Some(last)) = (ring.first().copied(), ring.last())
        && first != *last
    {
        ring.push(first);
    }
    ring
}

/// Twice the signed area (shoelace): positive for a counter-clockwise ring.
pub fn signed_area2(ring: &[[f64; 2]]) -> f64 {
    ring.windows(2).map(|w| w[0][0] * w[1][1] - w[1][0] * w[0][1]).sum()
}

fn counter_clockwise(mut ring: Vec<[f64; 2]>) -> Vec<[f64; 2]> {
    if signed_area2(&ring) < 0.0 {
        ring.reverse();
    }
    ring
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct() {
        assert_eq!(zone_id("HK001"), zone_id("HK001"));
        assert_ne!(zone_id("HK001"), zone_id("HK002"));
        assert_ne!(zone_id("HK"), area_id("HK"));
        assert_eq!(zone_id("HK001").get_version_num(), 5);
        // Pinned: a published id must never change with a new build.
        assert_eq!(zone_id("HK007").to_string(), "a404c8ef-040f-5d58-bca2-9528cfd476e1");
        assert_eq!(area_id("HK").to_string(), "bcc898e6-e64e-5e86-9122-902378f772f1");
        assert_eq!(policy_id(1, 0, None).to_string(), "2839601f-61a7-5bc1-bdf6-364205e85cf8");
        assert_ne!(policy_id(1, 0, None), policy_id(1, 0, Some(5)), "retiring a tariff changes its policies");
    }

    #[test]
    fn keyed_ids_need_the_key() {
        let a = keyed_id(b"key-a", "park_start:1");
        assert_eq!(a, keyed_id(b"key-a", "park_start:1"));
        assert_ne!(a, keyed_id(b"key-b", "park_start:1"));
        assert_ne!(a, keyed_id(b"key-a", "park_start:2"));
        assert_eq!(a.get_version_num(), 8);
        assert_eq!(a.get_variant(), uuid::Variant::RFC4122);
    }

    #[test]
    fn a_curb_line_becomes_a_closed_counter_clockwise_strip() {
        // About 100 m along a Hanoi street, eastwards then bending north.
        let line = [[105.8500, 21.0250], [105.8509, 21.0250], [105.8509, 21.0252]];
        let poly = zone_polygon(21.0250, 105.8500, Some(&line));
        assert_eq!(poly.len(), 1);
        let ring = &poly[0];
        assert_eq!(ring.first(), ring.last(), "closed");
        assert_eq!(ring.len(), 2 * line.len() + 1);
        assert!(signed_area2(ring) > 0.0, "counter-clockwise");
        // Every vertex is 1.25 m from its line vertex (1.77 m at the right-angle bend).
        for (i, q) in ring.iter().enumerate() {
            let d = line.iter().map(|p| distance_m(p[1], p[0], q[1], q[0])).fold(f64::MAX, f64::min);
            assert!(d > 1.2 && d < 1.9, "{i}: {d}");
        }
        let len = line_length_cm(&line);
        assert!((11_500..11_700).contains(&len), "{len}");
    }

    #[test]
    fn no_line_gives_a_ten_metre_square() {
        let poly = zone_polygon(21.0245, 105.853, None);
        let ring = &poly[0];
        assert_eq!(ring.len(), 5);
        assert!(signed_area2(ring) > 0.0);
        let side = distance_m(ring[0][1], ring[0][0], ring[1][1], ring[1][0]);
        assert!((side - 10.0).abs() < 0.05, "{side}");
        // A line of one repeated point is no line.
        assert_eq!(zone_polygon(21.0245, 105.853, Some(&[[105.853, 21.0245], [105.853, 21.0245]])), poly);
    }
}
