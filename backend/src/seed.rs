//! Seed data: Hanoi's 2017 pilot and its first extension, and a synthetic city for load tests.

use chrono::{DateTime, TimeZone, Utc};
use iparking_mobile_api::{
    TariffScope, TariffSpec, TierSpec,
    VehicleClass::{self, Car, Large, Minibus, Motorbike},
    WindowSpec,
};
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::domain::tariff::LOCAL_TZ;

use crate::{import::PointDraft, registry::Seed};

/// The four districts of the September 2017 extension.
const DISTRICTS: [(&str, &str); 4] =
    [("HK", "Hoàn Kiếm"), ("BD", "Ba Đình"), ("HBT", "Hai Bà Trưng"), ("DD", "Đống Đa")];

/// Hanoi's pilot (Hoàn Kiếm, from mid-2017): 17 points with 248 car spaces on Lý Thường
/// Kiệt and Trần Hưng Đạo, plus a few points on streets of Ba Đình, Hai Bà Trưng and
/// Đống Đa. Coordinates follow the streets west to east; each point has a short curb line
/// along the street.
pub fn hanoi_pilot() -> Seed {
    let mut points = Vec::new();
    // Lý Thường Kiệt: 9 points, 135 spaces, from Lê Duẩn to Lê Thánh Tông.
    let ltk = [
        ("Lê Duẩn", 16),
        ("Trần Bình Trọng", 14),
        ("Quán Sứ", 12),
        ("Thợ Nhuộm", 18),
        ("Quang Trung", 15),
        ("Bà Triệu", 13),
        ("Hàng Bài", 17),
        ("Ngô Quyền", 14),
        ("Lê Thánh Tông", 16),
    ];
    for (i, (cross, capacity)) in ltk.iter().enumerate() {
        let t = i as f64 / (ltk.len() - 1) as f64;
        let (lat, lon) = (round6(21.0257 - 0.0013 * t), round6(105.8460 + 0.0100 * t));
        points.push(point(i + 1, "Lý Thường Kiệt", cross, lat, lon, *capacity, &[Car, Minibus]));
    }
    // Trần Hưng Đạo: 8 points, 113 spaces, from Quán Sứ to Phan Chu Trinh.
    let thd = [
        ("Quán Sứ", 15),
        ("Thợ Nhuộm", 12),
        ("Phố Huế", 14),
        ("Quang Trung", 16),
        ("Bà Triệu", 13),
        ("Hàng Bài", 15),
        ("Ngô Quyền", 12),
        ("Phan Chu Trinh", 16),
    ];
    for (i, (cross, capacity)) in thd.iter().enumerate() {
        let t = i as f64 / (thd.len() - 1) as f64;
        let (lat, lon) = (round6(21.0228 - 0.0018 * t), round6(105.8465 + 0.0105 * t));
        points.push(point(ltk.len() + i + 1, "Trần Hưng Đạo", cross, lat, lon, *capacity, &[Car, Minibus]));
    }
    // (code, street, near, lat, lon, capacity, classes)
    type Row<'a> = (&'a str, &'a str, &'a str, f64, f64, i32, &'a [VehicleClass]);
    let others: [Row<'_>; 10] = [
        ("BD001", "Phan Đình Phùng", "Hoàng Diệu", 21.0399, 105.8402, 20, &[Car]),
        ("BD002", "Phan Đình Phùng", "Quán Thánh", 21.0401, 105.8458, 18, &[Car, Minibus]),
        ("BD003", "Điện Biên Phủ", "Trần Phú", 21.0322, 105.8419, 14, &[Car]),
        ("BD004", "Điện Biên Phủ", "Nguyễn Thái Học", 21.0305, 105.8446, 12, &[Car, Motorbike]),
        ("HBT001", "Bà Triệu", "Nguyễn Du", 21.0152, 105.8497, 10, &[Car]),
        ("HBT002", "Bà Triệu", "Thái Phiên", 21.0121, 105.8495, 12, &[Car, Motorbike]),
        ("HBT003", "Lê Đại Hành", "Vincom", 21.0108, 105.8461, 25, &[Car, Minibus, Motorbike]),
        ("DD001", "Tôn Đức Thắng", "Văn Miếu", 21.0251, 105.8331, 16, &[Car]),
        ("DD002", "Tôn Đức Thắng", "Hàng Bột", 21.0201, 105.8312, 14, &[Car, Minibus]),
        ("DD003", "Xã Đàn", "Phương Mai", 21.0149, 105.8362, 30, &[Car, Motorbike]),
    ];
    for (i, (code, street, cross, lat, lon, capacity, classes)) in others.iter().enumerate() {
        points.push(PointDraft {
            line: (18 + i) as u64,
            code: (*code).to_owned(),
            name: format!("{street} – gần {cross}"),
            district: code.trim_end_matches(|c: char| c.is_ascii_digit()).to_owned(),
            street: (*street).to_owned(),
            lat: *lat,
            lon: *lon,
            curb: Some(curb_along(*lat, *lon)),
            capacity: *capacity,
            vehicle_classes: classes.to_vec(),
        });
    }
    let mut tariffs: Vec<TariffSpec> = ["HK", "BD", "HBT"]
        .iter()
        .map(|d| {
            decision44(
                &format!("QĐ 44/2017 – {d} (nội thành) – ô tô đến 9 chỗ"),
                TariffScope::District { district: (*d).to_owned() },
                vec![Car],
                [25_000, 35_000, 45_000],
                150_000,
                Some(300_000),
            )
        })
        .collect();
    tariffs.push(decision44(
        "QĐ 44/2017 – Đống Đa – ô tô đến 9 chỗ",
        TariffScope::District { district: "DD".into() },
        vec![Car],
        [25_000, 35_000, 45_000],
        150_000,
        None,
    ));
    tariffs.extend(other_classes());
    Seed { districts: DISTRICTS.iter().map(|(c, n)| ((*c).to_owned(), (*n).to_owned())).collect(), points, tariffs }
}

/// 1 Jan 2018, 00:00 in Hanoi: Decision 44/2017/QĐ-UBND takes effect.
pub fn decision44_effective() -> DateTime<Utc> {
    LOCAL_TZ.with_ymd_and_hms(2018, 1, 1, 0, 0, 0).single().map_or_else(Utc::now, |d| d.with_timezone(&Utc))
}

/// A Decision 44/2017 style tariff: day 06:00–18:00 and night 18:00–06:00, hourly tiers
/// for hours 1–2, 3–4 and 5+, the night sold at most as one block, an optional daily cap.
pub fn decision44(
    name: &str,
    scope: TariffScope,
    classes: Vec<VehicleClass>,
    [h1, h3, h5]: [i64; 3],
    night_block: i64,
    daily_cap: Option<i64>,
) -> TariffSpec {
    let tiers = vec![
        TierSpec { from_hour: 1, price: h1 },
        TierSpec { from_hour: 3, price: h3 },
        TierSpec { from_hour: 5, price: h5 },
    ];
    TariffSpec {
        name: name.to_owned(),
        scope,
        vehicle_classes: classes,
        valid_from: decision44_effective(),
        valid_until: None,
        turn_minutes: Some(60),
        windows: vec![
            WindowSpec {
                label: "Ban ngày".into(),
                days: vec![],
                start: "06:00".into(),
                end: "18:00".into(),
                tiers: tiers.clone(),
                block_price: None,
            },
            WindowSpec {
                label: "Qua đêm".into(),
                days: vec![],
                start: "18:00".into(),
                end: "06:00".into(),
                tiers,
                block_price: Some(night_block),
            },
        ],
        daily_cap,
        minimum_charge: None,
        max_stay_minutes: Some(24 * 60),
        grace_minutes: Some(10),
        sms_surcharge_per_turn: None,
    }
}

/// City-wide tariffs for the classes other than cars. Demo values in the Decision's shape
/// (its table prices each class separately); a city publishes its own.
fn other_classes() -> Vec<TariffSpec> {
    vec![
        decision44(
            "Minh họa – toàn thành phố – xe 10–16 chỗ",
            TariffScope::City,
            vec![Minibus],
            [35_000, 45_000, 55_000],
            200_000,
            Some(400_000),
        ),
        decision44(
            "Minh họa – toàn thành phố – xe trên 16 chỗ, tải từ 2 tấn",
            TariffScope::City,
            vec![Large],
            [50_000, 60_000, 70_000],
            300_000,
            Some(600_000),
        ),
        decision44(
            "Minh họa – toàn thành phố – xe máy",
            TariffScope::City,
            vec![Motorbike],
            [5_000, 5_000, 5_000],
            20_000,
            Some(30_000),
        ),
    ]
}

fn point(
    n: usize,
    street: &str,
    cross: &str,
    lat: f64,
    lon: f64,
    capacity: i32,
    classes: &[VehicleClass],
) -> PointDraft {
    PointDraft {
        line: n as u64,
        code: format!("HK{n:03}"),
        name: format!("{street} – gần {cross}"),
        district: "HK".to_owned(),
        street: street.to_owned(),
        lat,
        lon,
        curb: Some(curb_along(lat, lon)),
        capacity,
        vehicle_classes: classes.to_vec(),
    }
}

/// Survey precision: 6 decimals of a degree is about 0.1 m.
fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// A ~30 m east–west curb line centred on the signboard.
fn curb_along(lat: f64, lon: f64) -> Vec<[f64; 2]> {
    vec![[round6(lon - 0.00015), lat], [round6(lon + 0.00015), lat]]
}

/// Number of districts of the synthetic city (`SYA` … `SYJ`).
pub const SYNTHETIC_DISTRICTS: usize = 10;

/// A synthetic city of `n` points (at most 9,999,990) spread over a 22 × 21 km box around
/// Hanoi, in 10 districts of 100 streets each. The same `rng_seed` gives the same city.
pub fn synthetic(n: usize, rng_seed: u64) -> Seed {
    let mut rng = StdRng::seed_from_u64(rng_seed);
    let districts: Vec<(String, String)> = (0..SYNTHETIC_DISTRICTS)
        .map(|i| {
            let letter = (b'A' + i as u8) as char;
            (format!("SY{letter}"), format!("Quận tổng hợp {letter}"))
        })
        .collect();
    let points = (0..n)
        .map(|i| {
            let (district, _) = &districts[i % SYNTHETIC_DISTRICTS];
            let number = i / SYNTHETIC_DISTRICTS + 1;
            let street = rng.random_range(1..=100);
            let motorbikes = rng.random_bool(0.2);
            PointDraft {
                line: i as u64 + 1,
                code: format!("{district}{number:06}"),
                name: format!("Điểm tổng hợp {district}-{number}"),
                district: district.clone(),
                street: format!("Phố tổng hợp {street}"),
                lat: rng.random_range(20.92..21.12),
                lon: rng.random_range(105.74..105.95),
                curb: None,
                capacity: rng.random_range(5..=40),
                vehicle_classes: if motorbikes { vec![Car, Motorbike] } else { vec![Car] },
            }
        })
        .collect();
    let mut tariffs = vec![decision44(
        "QĐ 44/2017 – thành phố tổng hợp – ô tô đến 9 chỗ",
        TariffScope::City,
        vec![Car],
        [25_000, 35_000, 45_000],
        150_000,
        Some(300_000),
    )];
    tariffs.extend(other_classes());
    Seed { districts, points, tariffs }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pilot_matches_the_2017_figures() {
        let seed = hanoi_pilot();
        let hk: Vec<&PointDraft> = seed.points.iter().filter(|p| p.district == "HK").collect();
        assert_eq!(hk.len(), 17);
        assert_eq!(hk.iter().map(|p| p.capacity).sum::<i32>(), 248);
        let streets: std::collections::BTreeSet<&str> = hk.iter().map(|p| p.street.as_str()).collect();
        assert_eq!(streets.into_iter().collect::<Vec<_>>(), vec!["Lý Thường Kiệt", "Trần Hưng Đạo"]);
        for d in ["BD", "HBT", "DD"] {
            assert!(seed.points.iter().any(|p| p.district == d), "{d}");
        }
        // Every class allowed at a point has a tariff, and every tariff validates.
        let tariffs: Vec<crate::domain::tariff::Tariff> =
            seed.tariffs.iter().map(|t| crate::domain::tariff::Tariff::from_spec(0, t).unwrap()).collect();
        for p in &seed.points {
            let at = crate::domain::tariff::PointRef { code: &p.code, street_id: 0, district_code: &p.district };
            for c in &p.vehicle_classes {
                assert!(crate::domain::tariff::resolve(&tariffs, &at, *c, Utc::now()).is_some(), "{} {c:?}", p.code);
            }
        }
        for p in &seed.points {
            crate::domain::city::validate_point_code(&p.code, &p.district).unwrap();
        }
    }

    #[test]
    fn synthetic_is_deterministic_and_unique() {
        let a = synthetic(2000, 7);
        let b = synthetic(2000, 7);
        assert_eq!(a.points, b.points);
        let codes: std::collections::HashSet<&str> = a.points.iter().map(|p| p.code.as_str()).collect();
        assert_eq!(codes.len(), 2000);
        for p in &a.points {
            crate::domain::city::validate_point_code(&p.code, &p.district).unwrap();
        }
    }
}
