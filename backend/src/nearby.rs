//! The in-memory spatial index of parking points, for "nearest points" queries.
//!
//! Points are placed on the unit sphere scaled to the Earth's mean radius (3-D
//! Cartesian, ECEF-like) in an R-tree. The straight-line (chord) distance between two
//! such points grows strictly with their great-circle distance, so the R-tree's
//! nearest-neighbour order *is* the haversine order: no projection error, no degree
//! scaling by latitude, correct across the antimeridian. The reported distance is then
//! the haversine distance from `geo`, and the radius is checked on it.

use std::sync::Arc;

use iparking_mobile_api::{PointStatus, VehicleClass};
use rstar::{RTree, primitives::GeomWithData};

use crate::store::PointRecord;

/// geo's mean Earth radius (IUGG), the one `Haversine` uses.
const EARTH_RADIUS_M: f64 = 6_371_008.8;

type Entry = GeomWithData<[f64; 3], u32>;

/// An immutable snapshot of the registry's points, indexed for nearest queries.
/// Rebuilt and swapped in whole when the registry changes.
pub struct PointIndex {
    tree: RTree<Entry>,
    points: Vec<Arc<PointRecord>>,
    by_code: std::collections::HashMap<String, u32>,
    by_id: std::collections::HashMap<i64, u32>,
    version: i64,
}

/// One nearest-query hit.
#[derive(Debug, Clone)]
pub struct Hit {
    /// The point.
    pub point: Arc<PointRecord>,
    /// Haversine distance in metres.
    pub distance_m: f64,
}

fn to_xyz(lat: f64, lon: f64) -> [f64; 3] {
    let (lat, lon) = (lat.to_radians(), lon.to_radians());
    [EARTH_RADIUS_M * lat.cos() * lon.cos(), EARTH_RADIUS_M * lat.cos() * lon.sin(), EARTH_RADIUS_M * lat.sin()]
}

/// Chord length for a great-circle distance: 2R·sin(d / 2R).
fn chord_for(distance_m: f64) -> f64 {
    let half_angle = (distance_m / (2.0 * EARTH_RADIUS_M)).min(std::f64::consts::FRAC_PI_2);
    2.0 * EARTH_RADIUS_M * half_angle.sin()
}

impl PointIndex {
    /// An index over `points` at registry `version`.
    pub fn build(points: Vec<PointRecord>, version: i64) -> Self {
        let points: Vec<Arc<PointRecord>> = points.into_iter().map(Arc::new).collect();
        let entries =
            points.iter().enumerate().map(|(i, p)| GeomWithData::new(to_xyz(p.lat, p.lon), i as u32)).collect();
        let by_code = points.iter().enumerate().map(|(i, p)| (p.code.clone(), i as u32)).collect();
        let by_id = points.iter().enumerate().map(|(i, p)| (p.id, i as u32)).collect();
        Self { tree: RTree::bulk_load(entries), points, by_code, by_id, version }
    }

    /// The point with this code (open or closed), as of this snapshot.
    pub fn point(&self, code: &str) -> Option<Arc<PointRecord>> {
        self.by_code.get(code).map(|&i| self.points[i as usize].clone())
    }

    /// The point with this row id, as of this snapshot.
    pub fn point_by_id(&self, id: i64) -> Option<Arc<PointRecord>> {
        self.by_id.get(&id).map(|&i| self.points[i as usize].clone())
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

    /// Up to `limit` open points within `radius_m` of `(lat, lon)`, nearest first,
    /// optionally only those allowing `class`.
    pub fn nearest(&self, lat: f64, lon: f64, radius_m: f64, limit: usize, class: Option<VehicleClass>) -> Vec<Hit> {
        let origin = to_xyz(lat, lon);
        // A hair of slack on the chord bound for floating point; the haversine check below
        // is the exact one.
        let max_chord2 = {
            let c = chord_for(radius_m) * (1.0 + 1e-9) + 1e-6;
            c * c
        };
        let mut out = Vec::with_capacity(limit.min(64));
        for (entry, d2) in self.tree.nearest_neighbor_iter_with_distance_2(&origin) {
            if d2 > max_chord2 || out.len() >= limit {
                break;
            }
            let p = &self.points[entry.data as usize];
            if p.status != PointStatus::Open || class.is_some_and(|c| !p.vehicle_classes.contains(&c)) {
                continue;
            }
            // The great-circle distance from the chord, on the same sphere as geo's
            // Haversine (equal to it up to float rounding, without its trigonometry).
            let distance_m = 2.0 * EARTH_RADIUS_M * (d2.sqrt() / (2.0 * EARTH_RADIUS_M)).min(1.0).asin();
            if distance_m <= radius_m {
                out.push(Hit { point: Arc::clone(p), distance_m });
            }
        }
        out
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
