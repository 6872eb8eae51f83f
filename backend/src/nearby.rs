//! The in-memory spatial index of parking points, for "nearest points" queries.
//!
//! Points are placed on the unit sphere scaled to the Earth's mean radius (3-D
//! Cartesian, ECEF-like). The straight-line (chord) distance between two such points grows
//! strictly with their great-circle distance, so ordering by chord *is* the haversine
//! order: no projection error, no degree scaling by latitude, correct across the
//! antimeridian. The reported distance is the great-circle distance derived from the
//! chord, on the same sphere as `geo`'s Haversine, and the radius is checked on it.
//!
//! **Layout.** The points are bucketed in rows of `ROW_DEG` degrees of latitude, each
//! row sorted by longitude, in flat arrays. A search over a spherical cap takes, in every
//! row the cap reaches, the longitudes of the cap's exact bounding box (found by binary
//! search), and compares the chord of every point in them: sequential reads, no heap, no
//! pointer chasing.
//!
//! **Search.** A query does not scan its whole radius. It searches a small cap first
//! (`FIRST_CAP_M`) and doubles it until `limit` matching points are inside or the cap is
//! the radius. Nothing outside a cap can be nearer than what is inside it, so the `limit`
//! nearest of a cap that holds `limit` matches are the answer. In a city of 100,000 points
//! a 1 km query compares a few dozen points, not the thousand in its radius.
//!
//! Results are ordered by distance, ties by the point's position in the snapshot.

use std::{collections::HashMap, f64::consts::FRAC_PI_2, ops::Range, sync::Arc};

use iparking_mobile_api::{PointStatus, VehicleClass};

use crate::store::PointRecord;

/// geo's mean Earth radius (IUGG), the one `Haversine` uses.
const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Height of a row, degrees of latitude (about 220 m).
const ROW_DEG: f64 = 0.002;

/// Radius of the first cap a query searches, metres (doubled until it holds `limit`).
const FIRST_CAP_M: f64 = 200.0;

/// Flag bit: the point is open.
const OPEN: u8 = 1;

/// Flag bit of a vehicle class.
fn class_bit(c: VehicleClass) -> u8 {
    match c {
        VehicleClass::Car => 1 << 1,
        VehicleClass::Minibus => 1 << 2,
        VehicleClass::Large => 1 << 3,
        VehicleClass::Motorbike => 1 << 4,
    }
}

/// A point as the search loop sees it: position, filter flags, and where its record is.
#[derive(Debug, Clone, Copy)]
struct Entry {
    xyz: [f64; 3],
    slot: u32,
    flags: u8,
}

/// An immutable snapshot of the registry's points, indexed for nearest queries.
/// Rebuilt and swapped in whole when the registry changes.
pub struct PointIndex {
    /// Row number (`floor(lat / ROW_DEG)`) of the first row.
    first_row: i64,
    /// Where each row starts in `entries`, and one more: the end.
    row_start: Vec<u32>,
    /// Each entry's longitude in [-180, 180), ascending within a row.
    lon: Vec<f64>,
    entries: Vec<Entry>,
    /// Points whose position has no row (not finite, or beyond ±90°): compared on every
    /// query, so the index answers like a full scan even for a bad record.
    outside: Vec<Entry>,
    points: Vec<Arc<PointRecord>>,
    by_code: HashMap<String, u32>,
    by_id: HashMap<i64, u32>,
    /// Each point's code, name, street and district, folded for search (same order).
    folded: Vec<String>,
    version: i64,
}

/// One nearest-query hit, borrowed from the snapshot (no reference count to touch on a
/// record that is rarely in the CPU's cache).
#[derive(Debug, Clone, Copy)]
pub struct Hit<'a> {
    /// The point.
    pub point: &'a PointRecord,
    /// Haversine distance in metres.
    pub distance_m: f64,
}

fn to_xyz(lat: f64, lon: f64) -> [f64; 3] {
    let (lat, lon) = (lat.to_radians(), lon.to_radians());
    [EARTH_RADIUS_M * lat.cos() * lon.cos(), EARTH_RADIUS_M * lat.cos() * lon.sin(), EARTH_RADIUS_M * lat.sin()]
}

#[inline]
fn chord2(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    let (dx, dy, dz) = (a[0] - b[0], a[1] - b[1], a[2] - b[2]);
    dx * dx + dy * dy + dz * dz
}

/// Chord length for a great-circle distance: 2R·sin(d / 2R).
fn chord_for(distance_m: f64) -> f64 {
    let half_angle = (distance_m / (2.0 * EARTH_RADIUS_M)).min(FRAC_PI_2);
    2.0 * EARTH_RADIUS_M * half_angle.sin()
}

/// Great-circle distance for a squared chord.
fn distance_for(chord2: f64) -> f64 {
    2.0 * EARTH_RADIUS_M * (chord2.sqrt() / (2.0 * EARTH_RADIUS_M)).min(1.0).asin()
}

/// The squared chord a search of `distance_m` compares against: a hair of slack for
/// floating point (the distance check on the result is the exact one).
fn chord2_bound(distance_m: f64) -> f64 {
    let c = chord_for(distance_m) * (1.0 + 1e-9) + 1e-6;
    c * c
}

/// Longitude in [-180, 180).
fn normalise_lon(lon: f64) -> f64 {
    (lon + 180.0).rem_euclid(360.0) - 180.0
}

fn has_row(lat: f64, lon: f64) -> bool {
    lat.is_finite() && lon.is_finite() && (-90.0..=90.0).contains(&lat)
}

fn row_of(lat: f64) -> i64 {
    (lat / ROW_DEG).floor() as i64
}

/// The part of the rows a cap can reach: a range of rows and, in each, up to two
/// longitude spans (two when the cap crosses the antimeridian).
struct Reach {
    rows: Range<usize>,
    spans: [(f64, f64); 2],
    n_spans: usize,
}

impl PointIndex {
    /// An index over `points` at registry `version`.
    pub fn build(points: Vec<PointRecord>, version: i64) -> Self {
        let points: Vec<Arc<PointRecord>> = points.into_iter().map(Arc::new).collect();
        let flags = |p: &PointRecord| {
            let open = if p.status == PointStatus::Open { OPEN } else { 0 };
            p.vehicle_classes.iter().fold(open, |f, &c| f | class_bit(c))
        };
        let mut placed = Vec::with_capacity(points.len());
        let mut outside = Vec::new();
        for (slot, p) in points.iter().enumerate() {
            let entry = Entry { xyz: to_xyz(p.lat, p.lon), slot: slot as u32, flags: flags(p) };
            if has_row(p.lat, p.lon) {
                placed.push((row_of(p.lat), normalise_lon(p.lon), entry));
            } else {
                outside.push(entry);
            }
        }
        placed.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.slot.cmp(&b.2.slot)));
        let first_row = placed.first().map_or(0, |p| p.0);
        let last_row = placed.last().map_or(-1, |p| p.0);
        let mut row_start = Vec::with_capacity((last_row - first_row + 2).max(1) as usize);
        let mut i = 0;
        for row in first_row..=last_row + 1 {
            while i < placed.len() && placed[i].0 < row {
                i += 1;
            }
            row_start.push(i as u32);
        }
        let lon = placed.iter().map(|p| p.1).collect();
        let entries = placed.into_iter().map(|p| p.2).collect();
        let by_code = points.iter().enumerate().map(|(i, p)| (p.code.clone(), i as u32)).collect();
        let by_id = points.iter().enumerate().map(|(i, p)| (p.id, i as u32)).collect();
        let folded = points
            .iter()
            .map(|p| {
                crate::domain::city::fold_for_search(&format!(
                    "{} {} {} {}",
                    p.code, p.street_name, p.name, p.district_name
                ))
            })
            .collect();
        Self { first_row, row_start, lon, entries, outside, points, by_code, by_id, folded, version }
    }

    /// The point with this code (open or closed), as of this snapshot.
    pub fn point(&self, code: &str) -> Option<Arc<PointRecord>> {
        self.by_code.get(code).map(|&i| self.points[i as usize].clone())
    }

    /// The point with this row id, as of this snapshot.
    pub fn point_by_id(&self, id: i64) -> Option<Arc<PointRecord>> {
        self.by_id.get(&id).map(|&i| self.points[i as usize].clone())
    }

    /// Points whose code, street, name or district hold every word of `query` (folded:
    /// case and Vietnamese diacritics ignored), at most `limit`: open before closed, a code
    /// that starts with the query first, then by code.
    pub fn search(&self, query: &str, limit: usize) -> Vec<Arc<PointRecord>> {
        let words: Vec<String> = crate::domain::city::fold_for_search(query)
            .split(' ')
            .filter(|w| !w.is_empty())
            .map(str::to_owned)
            .collect();
        if words.is_empty() {
            return Vec::new();
        }
        let first = words.concat();
        let mut hits: Vec<(bool, bool, &Arc<PointRecord>)> = self
            .folded
            .iter()
            .zip(&self.points)
            .filter(|(text, _)| words.iter().all(|w| text.split(' ').any(|t| t.starts_with(w.as_str()))))
            .map(|(_, p)| (p.status != PointStatus::Open, !p.code.to_lowercase().starts_with(&first), p))
            .collect();
        hits.sort_by(|a, b| (a.0, a.1, &a.2.code).cmp(&(b.0, b.1, &b.2.code)));
        hits.into_iter().take(limit).map(|(_, _, p)| p.clone()).collect()
    }

    /// An empty index.
    pub fn empty() -> Self {
        Self::build(Vec::new(), -1)
    }

    /// The registry version this snapshot was built from.
    pub fn version(&self) -> i64 {
        self.version
    }

    /// Number of points indexed.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether no point is indexed.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    fn rows(&self) -> usize {
        self.row_start.len() - 1
    }

    /// The rows and longitudes a cap of `distance_m` around `(lat, lon)` can reach: its
    /// latitude band and its exact bounding box in longitude, widened so that rounding
    /// never leaves a point out (the chord comparison is the exact test).
    fn reach(&self, lat: f64, lon: f64, distance_m: f64) -> Reach {
        let whole = [(f64::NEG_INFINITY, f64::INFINITY), (0.0, 0.0)];
        let nothing = Reach { rows: 0..0, spans: whole, n_spans: 0 };
        if self.rows() == 0 {
            return nothing;
        }
        let theta = (distance_m / EARTH_RADIUS_M).min(std::f64::consts::PI) * (1.0 + 1e-7) + 1e-9;
        let phi = lat.to_radians();
        if !(-90.0..=90.0).contains(&lat) || !lon.is_finite() {
            return Reach { rows: 0..self.rows(), spans: whole, n_spans: 1 };
        }
        let (south, north) = (phi - theta, phi + theta);
        let last_row = self.first_row + self.rows() as i64 - 1;
        let row_lo = ((south.to_degrees() / ROW_DEG).floor() as i64).max(self.first_row);
        let row_hi = ((north.to_degrees() / ROW_DEG).floor() as i64).min(last_row);
        if row_lo > row_hi {
            return nothing;
        }
        let rows = (row_lo - self.first_row) as usize..(row_hi - self.first_row + 1) as usize;
        // A cap that holds no pole spans asin(sin θ / cos φ) of longitude either side (a cap
        // that holds one has a ratio of 1 or more: the pole test only guards rounding).
        let ratio = theta.sin() / phi.cos();
        if south <= -FRAC_PI_2 || north >= FRAC_PI_2 || theta >= FRAC_PI_2 || ratio.is_nan() || ratio >= 1.0 {
            return Reach { rows, spans: whole, n_spans: 1 };
        }
        let half = ratio.asin().to_degrees() * (1.0 + 1e-7) + 1e-7;
        let centre = normalise_lon(lon);
        let (west, east) = (centre - half, centre + half);
        let (spans, n_spans) = if west < -180.0 {
            ([(-180.0, east), (west + 360.0, 180.0)], 2)
        } else if east >= 180.0 {
            ([(-180.0, east - 360.0), (west, 180.0)], 2)
        } else {
            ([(west, east), (0.0, 0.0)], 1)
        };
        Reach { rows, spans, n_spans }
    }

    /// Every entry within squared chord `bound` of `origin` that `wanted` accepts, in the
    /// rows and longitudes `reach` covers and among the entries without a row.
    fn collect(&self, reach: &Reach, origin: &[f64; 3], bound: f64, wanted: u8, out: &mut Vec<(f64, u32)>) {
        out.clear();
        let mut take = |e: &Entry| {
            if e.flags & wanted == wanted {
                let d2 = chord2(origin, &e.xyz);
                if d2 <= bound {
                    out.push((d2, e.slot));
                }
            }
        };
        for row in reach.rows.clone() {
            let (start, end) = (self.row_start[row] as usize, self.row_start[row + 1] as usize);
            let lons = &self.lon[start..end];
            for &(west, east) in &reach.spans[..reach.n_spans] {
                let lo = lons.partition_point(|&l| l < west);
                let hi = lons.partition_point(|&l| l <= east);
                self.entries[start + lo..start + hi.max(lo)].iter().for_each(&mut take);
            }
        }
        self.outside.iter().for_each(take);
    }

    /// Up to `limit` open points within `radius_m` of `(lat, lon)`, nearest first,
    /// optionally only those allowing `class`.
    pub fn nearest(
        &self,
        lat: f64,
        lon: f64,
        radius_m: f64,
        limit: usize,
        class: Option<VehicleClass>,
    ) -> Vec<Hit<'_>> {
        if limit == 0 || radius_m.is_nan() || radius_m < 0.0 {
            return Vec::new();
        }
        let origin = to_xyz(lat, lon);
        let wanted = OPEN | class.map_or(0, class_bit);
        let mut found = Vec::new();
        let mut cap = FIRST_CAP_M.min(radius_m);
        loop {
            self.collect(&self.reach(lat, lon, cap), &origin, chord2_bound(cap), wanted, &mut found);
            // A cap of half the Earth's circumference already reaches every point.
            if found.len() >= limit || cap >= radius_m || cap >= std::f64::consts::PI * EARTH_RADIUS_M {
                break;
            }
            cap = (cap * 2.0).min(radius_m);
        }
        let by_distance = |a: &(f64, u32), b: &(f64, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
        if found.len() > limit {
            found.select_nth_unstable_by(limit - 1, by_distance);
            found.truncate(limit);
        }
        found.sort_unstable_by(by_distance);
        found
            .into_iter()
            .map(|(d2, slot)| (distance_for(d2), slot))
            .filter(|&(distance_m, _)| distance_m <= radius_m)
            .map(|(distance_m, slot)| Hit { point: &self.points[slot as usize], distance_m })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::domain::city::distance_m;

    fn point(id: i64, lat: f64, lon: f64, classes: Vec<VehicleClass>, status: PointStatus) -> PointRecord {
        PointRecord {
            id,
            code: format!("HK{id:03}"),
            name: format!("P{id}"),
            street_id: 1,
            street_name: "S".into(),
            district_id: 1,
            district_code: "HK".into(),
            district_name: "Hoàn Kiếm".into(),
            lat,
            lon,
            curb: None,
            capacity: 10,
            vehicle_classes: classes,
            status,
            updated_at: Utc::now(),
        }
    }

    /// A deterministic scatter of points (no RNG dependency in unit tests).
    fn scatter(n: i64) -> Vec<PointRecord> {
        (0..n)
            .map(|i| {
                let a = (i as f64 * 0.618_033_988_75).fract();
                let b = (i as f64 * 0.414_213_562_37).fract();
                point(i, 21.0 + a * 0.05, 105.83 + b * 0.05, vec![VehicleClass::Car], PointStatus::Open)
            })
            .collect()
    }

    #[test]
    fn matches_a_brute_force_haversine_scan() {
        let pts = scatter(3000);
        let idx = PointIndex::build(pts.clone(), 1);
        for (lat, lon, r, limit) in
            [(21.02, 105.85, 1000.0, 20), (21.0, 105.83, 300.0, 100), (21.05, 105.88, 2500.0, 7)]
        {
            let got: Vec<(i64, f64)> =
                idx.nearest(lat, lon, r, limit, None).iter().map(|h| (h.point.id, h.distance_m)).collect();
            let mut want: Vec<(i64, f64)> =
                pts.iter().map(|p| (p.id, distance_m((lat, lon), (p.lat, p.lon)))).filter(|(_, d)| *d <= r).collect();
            want.sort_by(|a, b| a.1.total_cmp(&b.1));
            want.truncate(limit);
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                assert!((g.1 - w.1).abs() < 1e-6, "distance order differs: {g:?} vs {w:?}");
            }
            assert!(got.windows(2).all(|w| w[0].1 <= w[1].1), "not sorted");
        }
    }

    /// A small deterministic generator (no RNG dependency in unit tests).
    struct Lcg(u64);
    impl Lcg {
        fn unit(&mut self) -> f64 {
            self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
        fn range(&mut self, lo: f64, hi: f64) -> f64 {
            lo + self.unit() * (hi - lo)
        }
    }

    fn brute(pts: &[PointRecord], lat: f64, lon: f64, r: f64, limit: usize, class: Option<VehicleClass>) -> Vec<f64> {
        let mut want: Vec<f64> = pts
            .iter()
            .filter(|p| p.status == PointStatus::Open && class.is_none_or(|c| p.vehicle_classes.contains(&c)))
            .map(|p| distance_m((lat, lon), (p.lat, p.lon)))
            .filter(|d| *d <= r)
            .collect();
        want.sort_by(f64::total_cmp);
        want.truncate(limit);
        want
    }

    #[test]
    fn matches_a_brute_force_scan_anywhere_on_earth() {
        use VehicleClass::*;
        let mut rng = Lcg(2017);
        // Clusters at the poles, on the antimeridian, on the equator and in Hanoi, and a
        // sprinkle over the whole globe; some closed, classes mixed.
        let centres = [(89.99, 0.0), (-89.95, 120.0), (0.0, 179.999), (-10.0, -179.99), (0.0, 0.0), (21.03, 105.85)];
        let mut pts = Vec::new();
        for i in 0..4000 {
            let (lat, lon) = if i % 5 == 0 {
                (rng.range(-90.0, 90.0), rng.range(-180.0, 180.0))
            } else {
                let (clat, clon) = centres[i % centres.len()];
                let lat = (clat + rng.range(-0.05, 0.05)).clamp(-90.0, 90.0);
                (lat, normalise_lon(clon + rng.range(-0.05, 0.05)))
            };
            let classes = [vec![Car], vec![Motorbike], vec![Car, Minibus, Large]][i % 3].clone();
            let status = if i % 7 == 0 { PointStatus::Closed } else { PointStatus::Open };
            pts.push(point(i as i64, lat, lon, classes, status));
        }
        pts.push(point(9001, 90.0, 0.0, vec![Car], PointStatus::Open));
        pts.push(point(9002, -90.0, 180.0, vec![Car], PointStatus::Open));
        pts.push(point(9003, 0.0, 180.0, vec![Car], PointStatus::Open));
        pts.push(point(9004, 0.0, -180.0, vec![Car], PointStatus::Open));
        let idx = PointIndex::build(pts.clone(), 1);
        let mut queries: Vec<(f64, f64)> = centres.to_vec();
        queries.extend([(90.0, 45.0), (-90.0, 0.0), (0.0, 180.0), (0.0, -180.0), (21.0, -179.9999)]);
        for _ in 0..60 {
            let (clat, clon) = centres[(rng.unit() * centres.len() as f64) as usize % centres.len()];
            queries
                .push(((clat + rng.range(-0.1, 0.1)).clamp(-90.0, 90.0), normalise_lon(clon + rng.range(-0.1, 0.1))));
            queries.push((rng.range(-90.0, 90.0), rng.range(-180.0, 180.0)));
        }
        let mut compared = 0;
        for (qi, &(lat, lon)) in queries.iter().enumerate() {
            for (r, limit) in
                [(50.0, 5), (1000.0, 20), (5000.0, 100), (50_000.0, 3), (2.0e7, 10), (3.0e6, 1), (f64::INFINITY, 5000)]
            {
                if r.is_infinite() && qi % 10 != 0 {
                    continue; // every point, sorted: a few queries are enough
                }
                let class = [None, Some(Car), Some(Large)][qi % 3];
                let got: Vec<f64> = idx.nearest(lat, lon, r, limit, class).iter().map(|h| h.distance_m).collect();
                let want = brute(&pts, lat, lon, r, limit, class);
                assert_eq!(got.len(), want.len(), "count at ({lat}, {lon}) r={r} limit={limit} {class:?}");
                for (g, w) in got.iter().zip(&want) {
                    assert!((g - w).abs() <= 1e-6 + w * 1e-9, "({lat}, {lon}) r={r}: {g} vs {w}");
                }
                compared += got.len();
            }
        }
        assert!(compared > 3000, "the queries found too little to prove anything: {compared}");
    }

    #[test]
    fn points_without_a_row_are_still_found() {
        let pts = vec![
            point(1, f64::NAN, 105.85, vec![VehicleClass::Car], PointStatus::Open),
            point(2, 21.0, 105.85, vec![VehicleClass::Car], PointStatus::Open),
        ];
        let idx = PointIndex::build(pts, 1);
        let ids: Vec<i64> = idx.nearest(21.0, 105.85, 100.0, 10, None).iter().map(|h| h.point.id).collect();
        assert_eq!(ids, vec![2], "a point with no position is never within a radius");
        assert!(PointIndex::empty().nearest(21.0, 105.85, 1000.0, 10, None).is_empty());
        assert!(idx.nearest(21.0, 105.85, 1000.0, 0, None).is_empty());
    }

    #[test]
    fn a_dense_city_is_answered_from_a_small_cap_with_the_same_result() {
        // 20,000 points in 2 km × 2 km: the nearest 20 are within a few dozen metres, and
        // the answer equals the brute force over the whole 1 km radius.
        let pts: Vec<PointRecord> = scatter(20_000)
            .into_iter()
            .map(|mut p| {
                p.lat = 21.0 + (p.lat - 21.0) * 0.36;
                p.lon = 105.83 + (p.lon - 105.83) * 0.38;
                p
            })
            .collect();
        let idx = PointIndex::build(pts.clone(), 1);
        for (lat, lon) in [(21.009, 105.839), (21.0, 105.83), (21.018, 105.849), (21.2, 105.83)] {
            let got: Vec<f64> = idx.nearest(lat, lon, 1000.0, 20, None).iter().map(|h| h.distance_m).collect();
            let want = brute(&pts, lat, lon, 1000.0, 20, None);
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-6, "{g} vs {w}");
            }
        }
    }

    #[test]
    fn skips_closed_points_and_other_classes() {
        let pts = vec![
            point(1, 21.0, 105.85, vec![VehicleClass::Car], PointStatus::Closed),
            point(2, 21.0001, 105.85, vec![VehicleClass::Motorbike], PointStatus::Open),
            point(3, 21.0002, 105.85, vec![VehicleClass::Car, VehicleClass::Motorbike], PointStatus::Open),
        ];
        let idx = PointIndex::build(pts, 1);
        let ids = |c| idx.nearest(21.0, 105.85, 500.0, 10, c).iter().map(|h| h.point.id).collect::<Vec<_>>();
        assert_eq!(ids(None), vec![2, 3]);
        assert_eq!(ids(Some(VehicleClass::Car)), vec![3]);
        assert_eq!(ids(Some(VehicleClass::Large)), Vec::<i64>::new());
    }

    #[test]
    fn radius_is_exact_in_metres() {
        // A point 1000 m north: inside at 1001 m, outside at 999 m.
        let north = 1000.0 / (EARTH_RADIUS_M.to_radians());
        let idx =
            PointIndex::build(vec![point(1, 21.0 + north, 105.85, vec![VehicleClass::Car], PointStatus::Open)], 1);
        assert_eq!(idx.nearest(21.0, 105.85, 1001.0, 5, None).len(), 1);
        assert_eq!(idx.nearest(21.0, 105.85, 999.0, 5, None).len(), 0);
        // Across the antimeridian.
        let idx = PointIndex::build(vec![point(1, 0.0, 179.9999, vec![VehicleClass::Car], PointStatus::Open)], 1);
        let hits = idx.nearest(0.0, -179.9999, 100.0, 5, None);
        assert_eq!(hits.len(), 1);
        assert!(hits[0].distance_m < 25.0);
    }
}
