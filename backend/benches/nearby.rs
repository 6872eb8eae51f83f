//! Nearest-points query throughput.
//!
//! Target (issue): nearest 20 points within 1 km among 100,000 synthetic points, at least
//! 100,000 queries per second on one core, in process. The index (latitude rows) is measured
//! against a brute-force linear haversine scan over the same points in the same run, so
//! the report can give a ratio measured on the same machine at the same time.
//!
//! Run: `cargo bench -p iparking --bench nearby -- --warm-up-time 2 --measurement-time 5`

use std::{collections::HashMap, hint::black_box};

use chrono::{TimeZone, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use iparking::{domain::city::distance_m, nearby::PointIndex, seed, store::PointRecord};
use iparking_mobile_api::PointStatus;

const POINTS: usize = 100_000;
const RNG_SEED: u64 = 2017;
const RADIUS_M: f64 = 1000.0;
const LIMIT: usize = 20;
/// Distinct query positions, cycled through so no single query is measured over and over.
const QUERIES: usize = 1024;
/// The synthetic city's box (see `seed::synthetic`).
const LAT: (f64, f64) = (20.92, 21.12);
const LON: (f64, f64) = (105.74, 105.95);

/// The synthetic city as registry rows: ids 1..=n, all open.
fn records() -> Vec<PointRecord> {
    let seed = seed::synthetic(POINTS, RNG_SEED);
    let district_ids: HashMap<&str, i64> =
        seed.districts.iter().enumerate().map(|(i, (code, _))| (code.as_str(), i as i64 + 1)).collect();
    let district_names: HashMap<&str, &str> = seed.districts.iter().map(|(c, n)| (c.as_str(), n.as_str())).collect();
    let updated_at = Utc.with_ymd_and_hms(2017, 9, 1, 0, 0, 0).unwrap();
    seed.points
        .iter()
        .enumerate()
        .map(|(i, d)| PointRecord {
            id: i as i64 + 1,
            code: d.code.clone(),
            name: d.name.clone(),
            street_id: 1,
            street_name: d.street.clone(),
            district_id: district_ids[d.district.as_str()],
            district_code: d.district.clone(),
            district_name: district_names[d.district.as_str()].to_owned(),
            lat: d.lat,
            lon: d.lon,
            curb: d.curb.clone(),
            capacity: d.capacity,
            vehicle_classes: d.vehicle_classes.clone(),
            status: PointStatus::Open,
            updated_at,
        })
        .collect()
}

/// Deterministic query positions spread evenly over the city's box (the R2
/// low-discrepancy sequence: no RNG, the same list on every run).
fn query_positions() -> Vec<(f64, f64)> {
    const G: f64 = 1.324_717_957_244_746; // plastic number
    let (a1, a2) = (1.0 / G, 1.0 / (G * G));
    (0..QUERIES)
        .map(|i| {
            let n = i as f64 + 1.0;
            let (u, v) = ((0.5 + a1 * n).fract(), (0.5 + a2 * n).fract());
            (LAT.0 + u * (LAT.1 - LAT.0), LON.0 + v * (LON.1 - LON.0))
        })
        .collect()
}

/// The baseline: haversine distance to every point, keep those in the radius, the
/// `limit` nearest by distance. Returns `(id, distance_m)`, nearest first.
fn brute_force(points: &[PointRecord], lat: f64, lon: f64, radius_m: f64, limit: usize) -> Vec<(i64, f64)> {
    let mut within: Vec<(i64, f64)> = points
        .iter()
        .filter(|p| p.status == PointStatus::Open)
        .map(|p| (p.id, distance_m((lat, lon), (p.lat, p.lon))))
        .filter(|(_, d)| *d <= radius_m)
        .collect();
    if within.len() > limit {
        within.select_nth_unstable_by(limit, |a, b| a.1.total_cmp(&b.1));
        within.truncate(limit);
    }
    within.sort_by(|a, b| a.1.total_cmp(&b.1));
    within
}

/// Checked once, outside the timed loops: the index answers what the scan answers, and
/// the workload is the intended one (a full page of 20 hits per query).
fn assert_index_matches_brute_force(index: &PointIndex, points: &[PointRecord], queries: &[(f64, f64)]) {
    // A spread of the benchmark's own queries, plus the box's corners (fewer points in reach).
    let mut checked: Vec<(f64, f64)> = queries.iter().step_by(64).copied().collect();
    checked.extend([(LAT.0, LON.0), (LAT.0, LON.1), (LAT.1, LON.0), (LAT.1, LON.1)]);
    for &(lat, lon) in &checked {
        let got: Vec<(i64, f64)> =
            index.nearest(lat, lon, RADIUS_M, LIMIT, None).iter().map(|h| (h.point.id, h.distance_m)).collect();
        let want = brute_force(points, lat, lon, RADIUS_M, LIMIT);
        assert_eq!(got.len(), LIMIT, "query ({lat}, {lon}): expected a full page of {LIMIT} hits");
        let mut got_ids: Vec<i64> = got.iter().map(|h| h.0).collect();
        let mut want_ids: Vec<i64> = want.iter().map(|h| h.0).collect();
        got_ids.sort_unstable();
        want_ids.sort_unstable();
        assert_eq!(got_ids, want_ids, "query ({lat}, {lon}): the index and the scan disagree on the result set");
        for (g, w) in got.iter().zip(&want) {
            assert!((g.1 - w.1).abs() < 1e-6, "query ({lat}, {lon}): distance order differs: {g:?} vs {w:?}");
        }
    }
}

fn bench_nearest(c: &mut Criterion) {
    let points = records();
    let index = PointIndex::build(points.clone(), 1);
    assert_eq!(index.len(), POINTS);
    let queries = query_positions();
    assert_index_matches_brute_force(&index, &points, &queries);

    let mut group = c.benchmark_group("nearest_20_within_1km_of_100k");
    group.throughput(Throughput::Elements(1));
    group.bench_function("grid_index", |b| {
        let mut i = 0usize;
        b.iter(|| {
            let (lat, lon) = queries[i % QUERIES];
            i = i.wrapping_add(1);
            index.nearest(black_box(lat), black_box(lon), black_box(RADIUS_M), black_box(LIMIT), black_box(None))
        });
    });
    group.finish();

    // Same query, same points, same run; a few milliseconds per query, so fewer samples.
    let mut group = c.benchmark_group("nearest_20_within_1km_of_100k_baseline");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.bench_function("brute_force_haversine_scan", |b| {
        let mut i = 0usize;
        b.iter(|| {
            let (lat, lon) = queries[i % QUERIES];
            i = i.wrapping_add(1);
            brute_force(black_box(&points), black_box(lat), black_box(lon), black_box(RADIUS_M), black_box(LIMIT))
        });
    });
    group.finish();
}

criterion_group!(benches, bench_nearest);
criterion_main!(benches);
