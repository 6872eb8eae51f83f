//! Quote throughput.
//!
//! Target (issue): a quote for a 3-hour stay crossing a window boundary, at least 500,000
//! quotes per second on one core. The tariff is Hanoi Decision 44/2017 for Đống Đa cars up
//! to 9 seats: day 06:00–18:00 and night 18:00–06:00, 25,000 VND per turn for hours 1–2,
//! 35,000 for hours 3–4, 45,000 from hour 5, the night sold as a 150,000 block. Every stay
//! starts at 16:30 Hanoi time (on 256 different dates, cycled through) and so crosses the
//! 18:00 boundary: 25,000 + 25,000 + 35,000 = 85,000.
//!
//! The baseline, measured in the same run so the report can give a ratio from the same
//! machine at the same time, is the least work such a quote needs: three turns, each
//! converted to Hanoi time with chrono-tz and priced by a tier lookup, summed. No
//! validation, no breakdown, no blocks or caps.
//!
//! Run: `cargo bench -p iparking --bench quote -- --warm-up-time 2 --measurement-time 5`

use std::hint::black_box;

use chrono::{DateTime, Duration, TimeZone, Timelike, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use iparking::domain::{
    money::Vnd,
    tariff::{LOCAL_TZ, Line, Tariff},
};
use iparking_mobile_api::{Channel, TariffScope, TariffSpec, TierSpec, VehicleClass, WindowSpec};

/// Distinct starts, cycled through so no single start is measured over and over.
const STARTS: usize = 256;
/// The stay: 3 hours.
const MINUTES: u32 = 180;
/// What Decision 44 charges for 16:30–19:30 in Đống Đa.
const EXPECTED_TOTAL: Vnd = Vnd(85_000);

fn tiers() -> Vec<TierSpec> {
    vec![
        TierSpec { from_hour: 1, price: 25_000 },
        TierSpec { from_hour: 3, price: 35_000 },
        TierSpec { from_hour: 5, price: 45_000 },
    ]
}

fn decision_44() -> Tariff {
    let window = |label: &str, start: &str, end: &str, block_price| WindowSpec {
        label: label.into(),
        days: Vec::new(),
        start: start.into(),
        end: end.into(),
        tiers: tiers(),
        block_price,
    };
    let spec = TariffSpec {
        name: "QĐ 44/2017 – Đống Đa – ô tô đến 9 chỗ".into(),
        scope: TariffScope::District { district: "DD".into() },
        vehicle_classes: vec![VehicleClass::Car],
        valid_from: Utc.with_ymd_and_hms(2017, 12, 31, 17, 0, 0).unwrap(),
        valid_until: None,
        turn_minutes: None,
        windows: vec![window("Ban ngày", "06:00", "18:00", None), window("Ban đêm", "18:00", "06:00", Some(150_000))],
        daily_cap: None,
        minimum_charge: None,
        max_stay_minutes: None,
        grace_minutes: None,
        sms_surcharge_per_turn: None,
    };
    Tariff::from_spec(1, &spec).expect("the Decision 44 tariff is valid")
}

/// 16:30 Hanoi time on 256 consecutive days from 1 March 2026.
fn starts() -> Vec<DateTime<Utc>> {
    let first = LOCAL_TZ.with_ymd_and_hms(2026, 3, 1, 16, 30, 0).unwrap().with_timezone(&Utc);
    (0..STARTS as i64).map(|d| first + Duration::days(d)).collect()
}

/// The baseline: three one-hour turns, each converted to Hanoi time and priced by the tier
/// for its hour of the stay in the day (06:00–18:00) or night table. Both tables are the
/// same in Decision 44, but the lookup still picks one.
fn baseline(start: DateTime<Utc>, day: &[(u32, i64)], night: &[(u32, i64)]) -> i64 {
    (0..3u32)
        .map(|k| {
            let local = (start + Duration::hours(i64::from(k))).with_timezone(&LOCAL_TZ);
            let minute = local.hour() * 60 + local.minute();
            let table = if (360..1080).contains(&minute) { day } else { night };
            let hour = k + 1;
            table.iter().rev().find(|(from, _)| *from <= hour).map_or(0, |(_, p)| *p)
        })
        .sum()
}

fn bench_quote(c: &mut Criterion) {
    let tariff = decision_44();
    let starts = starts();
    let table: Vec<(u32, i64)> = tiers().iter().map(|t| (t.from_hour, t.price)).collect();

    // Checked once, outside the timing: every benched quote is what the Decision gives and
    // does cross from the day window into the night window; the baseline agrees.
    for &start in &starts {
        let p = tariff.quote(start, MINUTES, Channel::App).unwrap();
        assert_eq!(p.total, EXPECTED_TOTAL, "quote from {start}");
        let windows: Vec<usize> = p
            .lines
            .iter()
            .filter_map(|l| if let Line::Turn { window, .. } = l { Some(*window) } else { None })
            .collect();
        assert_eq!(windows, [0, 0, 1], "quote from {start}");
        assert_eq!(baseline(start, &table, &table), EXPECTED_TOTAL.get(), "baseline from {start}");
    }

    let mut group = c.benchmark_group("quote_3h_across_18h");
    group.throughput(Throughput::Elements(1));
    group.bench_function("Tariff::quote", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % STARTS;
            tariff.quote(black_box(starts[i]), black_box(MINUTES), black_box(Channel::App))
        })
    });
    group.bench_function("baseline_3_turns_chrono_tz_tier_lookup", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % STARTS;
            baseline(black_box(starts[i]), black_box(&table), black_box(&table))
        })
    });
    group.finish();
}

criterion_group!(benches, bench_quote);
criterion_main!(benches);
