//! Public registry reads for drivers: nearby search, one point, the districts.

use axum::{
    extract::State,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use iparking_mobile_api::{DistrictView, ErrorBody, NearbyQuery, NearbyResponse, PointSearchQuery, PointView};

use super::{
    AppState,
    extract::{Json, Path, Query},
};
use crate::{
    app::points::{normalise_code, point_not_found},
    app::views::{free_spaces, point_view},
    domain::city,
    error::AppError,
    nearby::Hit,
};

/// Default and maximum search radius, metres.
pub const DEFAULT_RADIUS_M: f64 = 1_000.0;
/// Largest radius accepted, metres.
pub const MAX_RADIUS_M: f64 = 50_000.0;
/// Default and maximum number of results.
pub const DEFAULT_LIMIT: u32 = 20;
/// Largest `limit` accepted.
pub const MAX_LIMIT: u32 = 100;

// The nearby answer is the busiest read of the API, and serialising it was most of its
// CPU. It is written by hand from the index's records: no `PointView` per point (a copy of
// every string), field names as constants, strings that need no escape (nearly all) copied
// whole, timestamps in one piece. The bytes are the same as serde's for `NearbyResponse`: a
// unit test compares the two on hard strings, so a field added to `PointView` and
// `point_view` and not here fails it.

/// The JSON of the [`NearbyResponse`] for `hits`, with `occupancy[i]` for `hits[i]`: the
/// same bytes as serialising it from [`point_view`]s.
fn nearby_json(hits: &[Hit], occupancy: Option<&[i64]>, radius_m: f64) -> Result<Vec<u8>, serde_json::Error> {
    // About 400 bytes a point: one allocation, no regrowth.
    let mut out = Vec::with_capacity(64 + 512 * hits.len());
    out.extend_from_slice(b"{\"points\":[");
    for (i, h) in hits.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let p = h.point;
        out.extend_from_slice(b"{\"distance_m\":");
        write_f64(&mut out, (h.distance_m * 10.0).round() / 10.0);
        out.extend_from_slice(b",\"point\":{\"code\":");
        write_str(&mut out, &p.code)?;
        out.extend_from_slice(b",\"name\":");
        write_str(&mut out, &p.name)?;
        out.extend_from_slice(b",\"street\":{\"id\":");
        write_int(&mut out, p.street_id);
        out.extend_from_slice(b",\"name\":");
        write_str(&mut out, &p.street_name)?;
        out.extend_from_slice(b",\"district_code\":");
        write_str(&mut out, &p.district_code)?;
        out.extend_from_slice(b"},\"district_name\":");
        write_str(&mut out, &p.district_name)?;
        out.extend_from_slice(b",\"lat\":");
        write_f64(&mut out, p.lat);
        out.extend_from_slice(b",\"lon\":");
        write_f64(&mut out, p.lon);
        out.extend_from_slice(b",\"curb\":");
        match &p.curb {
            None => out.extend_from_slice(b"null"),
            Some(line) => {
                out.push(b'[');
                for (j, [x, y]) in line.iter().enumerate() {
                    if j > 0 {
                        out.push(b',');
                    }
                    out.push(b'[');
                    write_f64(&mut out, *x);
                    out.push(b',');
                    write_f64(&mut out, *y);
                    out.push(b']');
                }
                out.push(b']');
            }
        }
        out.extend_from_slice(b",\"capacity\":");
        write_int(&mut out, p.capacity);
        out.extend_from_slice(b",\"free_spaces\":");
        match occupancy.and_then(|o| o.get(i)) {
            Some(&o) => write_int(&mut out, free_spaces(p.capacity, o)),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"vehicle_classes\":");
        serde_json::to_writer(&mut out, &p.vehicle_classes)?;
        out.extend_from_slice(b",\"status\":");
        serde_json::to_writer(&mut out, &p.status)?;
        out.extend_from_slice(b",\"updated_at\":");
        let mut buf = [0u8; 30];
        match rfc3339(&p.updated_at, &mut buf) {
            Some(text) => write_str(&mut out, text)?,
            None => serde_json::to_writer(&mut out, &p.updated_at)?,
        }
        out.extend_from_slice(b"}}");
    }
    out.extend_from_slice(b"],\"radius_m\":");
    write_f64(&mut out, radius_m);
    out.push(b'}');
    Ok(out)
}

/// Reads every hit's record and one byte of each of its strings, before anything else
/// reads them. The hits are scattered over the index, so their records and strings are
/// rarely in the CPU's cache; these loads do not depend on each other, so their cache
/// misses overlap here, where the id list and the writer would wait for them one at a time
/// (measured: the writer's string copies went from 9% of the server's CPU to 2%).
fn warm(hits: &[Hit]) {
    let mut x = 0u8;
    for h in hits {
        let p = h.point;
        for s in [&p.code, &p.name, &p.street_name, &p.district_code, &p.district_name] {
            x ^= s.as_bytes().first().copied().unwrap_or(0);
        }
    }
    std::hint::black_box(x);
}

/// A JSON string as serde_json writes it: copied whole when no byte needs an escape (a
/// control character, `"` or `\`), else by serde_json.
fn write_str(out: &mut Vec<u8>, s: &str) -> Result<(), serde_json::Error> {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        Ok(())
    } else {
        serde_json::to_writer(out, s)
    }
}

/// A number as serde_json writes it (`null` when not finite).
fn write_f64(out: &mut Vec<u8>, v: f64) {
    use serde_json::ser::Formatter;
    if v.is_finite() {
        // Writing into a Vec cannot fail.
        let _ = serde_json::ser::CompactFormatter.write_f64(out, v);
    } else {
        out.extend_from_slice(b"null");
    }
}

fn write_int(out: &mut Vec<u8>, v: impl Into<i64>) {
    use serde_json::ser::Formatter;
    let _ = serde_json::ser::CompactFormatter.write_i64(out, v.into());
}

/// `t` in RFC 3339 as chrono's `Serialize` writes it (`SecondsFormat::AutoSi` with `Z`: 0,
/// 3, 6 or 9 fraction digits), in one piece: chrono writes it a character at a time, each
/// escaped on its own. `None` for a year outside 0..=9999 (which chrono writes with a sign).
fn rfc3339<'b>(t: &DateTime<Utc>, buf: &'b mut [u8; 30]) -> Option<&'b str> {
    use chrono::{Datelike, Timelike};
    let year = t.year();
    if !(0..=9999).contains(&year) {
        return None;
    }
    let (mut sec, mut nano) = (t.second(), t.nanosecond());
    if nano >= 1_000_000_000 {
        // A leap second: chrono writes it as :60.
        sec += 1;
        nano -= 1_000_000_000;
    }
    let mut put = |at: usize, value: u32, digits: usize| {
        let mut v = value;
        for i in (0..digits).rev() {
            buf[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, year as u32, 4);
    put(5, t.month(), 2);
    put(8, t.day(), 2);
    put(11, t.hour(), 2);
    put(14, t.minute(), 2);
    put(17, sec, 2);
    let frac = match nano {
        0 => 0,
        n if n % 1_000_000 == 0 => {
            put(20, n / 1_000_000, 3);
            3
        }
        n if n % 1_000 == 0 => {
            put(20, n / 1_000, 6);
            6
        }
        n => {
            put(20, n, 9);
            9
        }
    };
    for (at, c) in [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')] {
        buf[at] = c;
    }
    let mut end = 19;
    if frac > 0 {
        buf[19] = b'.';
        end = 20 + frac;
    }
    buf[end] = b'Z';
    std::str::from_utf8(&buf[..=end]).ok()
}

/// Open points near a position, nearest first, with their free spaces.
#[utoipa::path(
    get,
    path = "/v1/points",
    tag = "points",
    params(NearbyQuery),
    responses(
        (status = 200, description = "Open points within the radius, nearest first", body = NearbyResponse),
        (status = 400, description = "Coordinates, radius or limit out of range", body = ErrorBody),
    )
)]
pub async fn nearby_points(State(app): State<AppState>, Query(q): Query<NearbyQuery>) -> Result<Response, AppError> {
    city::validate_position(q.lat, q.lon).map_err(AppError::from)?;
    let radius_m = q.radius_m.unwrap_or(DEFAULT_RADIUS_M);
    if !(radius_m > 0.0 && radius_m <= MAX_RADIUS_M) {
        return Err(AppError::bad_request(
            "invalid_radius",
            format!("Bán kính phải lớn hơn 0 và không quá {MAX_RADIUS_M} m."),
            format!("radius_m must be greater than 0 and at most {MAX_RADIUS_M} m."),
        ));
    }
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(AppError::bad_request(
            "invalid_limit",
            format!("limit phải từ 1 đến {MAX_LIMIT}."),
            format!("limit must be between 1 and {MAX_LIMIT}."),
        ));
    }
    let index = app.index();
    let hits = index.nearest(q.lat, q.lon, radius_m, limit as usize, q.vehicle_class);
    warm(&hits);
    let ids: Vec<i64> = hits.iter().map(|h| h.point.id).collect();
    // Free spaces are a convenience: if the live state is down, still answer the search.
    let occupancy = match app.live.search_occupancy(&ids).await {
        Ok(o) => Some(o),
        Err(e) => {
            crate::warn_throttled!(error = %e, "live state unavailable; answering without free spaces");
            None
        }
    };
    let body = nearby_json(&hits, occupancy.as_deref(), radius_m).map_err(|e| AppError::internal(&e))?;
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response())
}

/// The longest search query, in characters.
pub const SEARCH_MAX_CHARS: usize = 60;
/// The most points a search answers.
pub const SEARCH_MAX_LIMIT: u32 = 50;

/// Points by signboard code, street, point or district name, anywhere in the city: open
/// before closed, codes that start with the query first, with their free spaces.
#[utoipa::path(
    get,
    path = "/v1/points/search",
    tag = "points",
    params(PointSearchQuery),
    responses(
        (status = 200, description = "Matching points", body = [PointView]),
        (status = 400, description = "An empty or too long query, or limit out of range", body = ErrorBody),
    )
)]
pub async fn search_points(
    State(app): State<AppState>,
    Query(q): Query<PointSearchQuery>,
) -> Result<Json<Vec<PointView>>, AppError> {
    // As sent: 1–60 characters, not all blank (the document's pattern and maxLength).
    if !city::text_fits(&q.q, SEARCH_MAX_CHARS) {
        return Err(AppError::bad_request(
            "invalid_query",
            "Từ khoá tìm kiếm dài 1–60 ký tự.",
            "The search words are 1–60 characters long.",
        ));
    }
    let limit = q.limit.unwrap_or(20);
    if !(1..=SEARCH_MAX_LIMIT).contains(&limit) {
        return Err(AppError::bad_request(
            "invalid_limit",
            "limit phải từ 1 đến 50.",
            "limit must be between 1 and 50.",
        ));
    }
    let found = app.index().search(&q.q, limit as usize);
    let ids: Vec<i64> = found.iter().map(|p| p.id).collect();
    let occupancy = app.live.search_occupancy(&ids).await.ok();
    Ok(Json(found.iter().enumerate().map(|(i, p)| point_view(p, occupancy.as_ref().map(|o| o[i]))).collect()))
}

/// One point by its signboard code (case-insensitive).
#[utoipa::path(
    get,
    path = "/v1/points/{code}",
    tag = "points",
    params(("code" = String, Path, description = "Signboard code, e.g. HK001")),
    responses(
        (status = 200, description = "The point", body = PointView),
        (status = 404, description = "No such point", body = ErrorBody),
    )
)]
pub async fn get_point(State(app): State<AppState>, Path(code): Path<String>) -> Result<Json<PointView>, AppError> {
    let code = normalise_code(&code);
    let p = app.store.point(&code).await?.ok_or_else(|| point_not_found(&code))?;
    let occupied = app.live.occupancy(&[p.id]).await.ok().map(|o| o[0]);
    Ok(Json(point_view(&p, occupied)))
}

/// The districts of the city.
#[utoipa::path(
    get,
    path = "/v1/districts",
    tag = "points",
    responses((status = 200, description = "Districts by code", body = [DistrictView]))
)]
pub async fn list_districts(State(app): State<AppState>) -> Result<Json<Vec<DistrictView>>, AppError> {
    let ds = app.store.districts().await?;
    Ok(Json(ds.into_iter().map(|d| DistrictView { code: d.code, name: d.name }).collect()))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use iparking_mobile_api::{NearbyPoint, PointStatus, VehicleClass};

    use super::*;
    use crate::store::PointRecord;

    fn record(id: i64, name: &str, curb: Option<Vec<[f64; 2]>>, classes: Vec<VehicleClass>) -> PointRecord {
        PointRecord {
            id,
            code: format!("HK{id:03}"),
            name: name.into(),
            street_id: 7 + id,
            street_name: format!("Phố \"{name}\"\\"),
            district_id: 1,
            district_code: "HK".into(),
            district_name: "Hoàn Kiếm".into(),
            lat: 21.0245 + id as f64 * 1e-4,
            lon: 105.853 - id as f64 * 3e-5,
            curb,
            capacity: 3 + id as i32,
            vehicle_classes: classes,
            status: if id % 2 == 0 { PointStatus::Open } else { PointStatus::Closed },
            updated_at: Utc.with_ymd_and_hms(2017, 9, 1, 7, 30, 0).unwrap() + chrono::Duration::microseconds(id * 1234),
        }
    }

    #[test]
    fn timestamps_are_written_as_chrono_writes_them() {
        let chrono_json = |t: &DateTime<Utc>| serde_json::to_string(t).unwrap();
        let ours = |t: &DateTime<Utc>| {
            let mut buf = [0u8; 30];
            let mut out = Vec::new();
            match rfc3339(t, &mut buf) {
                Some(text) => write_str(&mut out, text).unwrap(),
                None => serde_json::to_writer(&mut out, t).unwrap(),
            }
            String::from_utf8(out).unwrap()
        };
        let mut cases: Vec<DateTime<Utc>> = vec![
            Utc.with_ymd_and_hms(2017, 9, 1, 7, 30, 0).unwrap(),
            Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap() + chrono::Duration::nanoseconds(999_999_999),
            Utc.with_ymd_and_hms(-1, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap(),
            // A leap second (nanoseconds past 10⁹).
            chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
                .unwrap()
                .and_hms_nano_opt(23, 59, 59, 1_500_000_000)
                .unwrap()
                .and_utc(),
        ];
        let mut x: u64 = 7;
        for _ in 0..2000 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            // From 0000-01-01 to 9999-12-31.
            let secs = (x >> 20) as i64 % (253_402_300_799 + 62_167_219_200) - 62_167_219_200;
            let nanos = match x % 4 {
                0 => 0,
                1 => (x >> 5) as u32 % 1000 * 1_000_000,
                2 => (x >> 7) as u32 % 1_000_000 * 1000,
                _ => (x >> 9) as u32 % 1_000_000_000,
            };
            cases.push(DateTime::from_timestamp(secs, nanos).unwrap());
        }
        for t in &cases {
            assert_eq!(ours(t), chrono_json(t), "{t:?}");
        }
    }

    #[test]
    fn the_nearby_answer_is_what_serde_writes_for_the_response_type() {
        use VehicleClass::*;
        let records: Vec<PointRecord> = vec![
            record(1, "Lý Thường Kiệt", None, vec![Car]),
            record(
                2,
                "a,\"free_spaces\":null,\"b",
                Some(vec![[105.85, 21.02], [105.851, 21.021]]),
                vec![Car, Motorbike],
            ),
            record(3, "tab\there \u{1F697} </script>", None, vec![Minibus, Large]),
            record(4, "", Some(vec![[-0.0, 1e-7], [180.0, -90.0]]), vec![]),
        ];
        let hits: Vec<Hit> = records
            .iter()
            .enumerate()
            .map(|(i, p)| Hit { point: p, distance_m: 12.345_67 * i as f64 + 0.05 })
            .collect();
        for n in [0, 1, 4] {
            let hits = &hits[..n];
            for occupancy in [None, Some(vec![0, 2, 100, -4][..n].to_vec())] {
                let expected = NearbyResponse {
                    points: hits
                        .iter()
                        .enumerate()
                        .map(|(i, h)| NearbyPoint {
                            distance_m: (h.distance_m * 10.0).round() / 10.0,
                            point: point_view(h.point, occupancy.as_ref().map(|o| o[i])),
                        })
                        .collect(),
                    radius_m: 55.5,
                };
                let got = nearby_json(hits, occupancy.as_deref(), 55.5).unwrap();
                assert_eq!(String::from_utf8(got).unwrap(), serde_json::to_string(&expected).unwrap());
                // And the free spaces are the clamped ones.
                if let (Some(_), 4) = (&occupancy, n) {
                    let frees: Vec<_> = expected.points.iter().map(|p| p.point.free_spaces).collect();
                    assert_eq!(frees, vec![Some(4), Some(3), Some(0), Some(7)]);
                }
            }
        }
    }
}
