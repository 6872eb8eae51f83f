//! The tariff engine through the crate's public API: table tests built from Hanoi Decision
//! 44/2017/QĐ-UBND (Đống Đa: cars up to 9 seats 25,000 VND per turn for hours 1–2, 35,000
//! for hours 3–4, 45,000 from hour 5; overnight 18:00–06:00 block 150,000; central
//! districts capped at 300,000 a day), validation, scope resolution, and property tests
//! over random valid tariffs checked against an independent model of the pricing rules.
//!
//! Every instant is written with an explicit offset; local time is Asia/Ho_Chi_Minh
//! (UTC+7, no DST). The independent model computes local time as UTC + 7 h by plain
//! arithmetic, so it does not rely on the engine's time-zone handling.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, NaiveDateTime, Timelike, Utc};
use iparking::domain::{
    city::Invalid,
    money::Vnd,
    tariff::{ABSOLUTE_MAX_STAY_MINUTES, Line, PointRef, Priced, QuoteError, Tariff, resolve},
};
use iparking_mobile_api::{Channel, TariffScope, TariffSpec, TierSpec, VehicleClass, Weekday, WindowSpec};
use proptest::{prelude::*, test_runner::TestCaseError};

// ---------------------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------------------

/// An instant given with an explicit offset, e.g. `2026-03-02T08:00:00+07:00`.
fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("bad instant {s}: {e}")).to_utc()
}

/// A local (Hanoi) wall-clock time, as the engine reports block occurrences.
fn local(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap_or_else(|e| panic!("bad local time {s}: {e}"))
}

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn tier(from_hour: u32, price: i64) -> TierSpec {
    TierSpec { from_hour, price }
}

/// Decision 44, Đống Đa, cars up to 9 seats: 25,000 (hours 1–2), 35,000 (3–4), 45,000 (5+).
fn tiers_44() -> Vec<TierSpec> {
    vec![tier(1, 25_000), tier(3, 35_000), tier(5, 45_000)]
}

fn window(label: &str, start: &str, end: &str, tiers: Vec<TierSpec>, block_price: Option<i64>) -> WindowSpec {
    WindowSpec { label: label.into(), days: Vec::new(), start: start.into(), end: end.into(), tiers, block_price }
}

fn window_on(days: &[Weekday], label: &str, start: &str, end: &str, tiers: Vec<TierSpec>) -> WindowSpec {
    WindowSpec { days: days.to_vec(), ..window(label, start, end, tiers, None) }
}

/// Đống Đa style: day 06:00–18:00 and night 18:00–06:00 with the same tiers, the night sold
/// as a 150,000 block. No cap.
fn dong_da_spec() -> TariffSpec {
    TariffSpec {
        name: "QĐ 44/2017 – Đống Đa – ô tô đến 9 chỗ".into(),
        scope: TariffScope::District { district: "DD".into() },
        vehicle_classes: vec![VehicleClass::Car],
        valid_from: at("2018-01-01T00:00:00+07:00"),
        valid_until: None,
        turn_minutes: None,
        windows: vec![
            window("Ban ngày", "06:00", "18:00", tiers_44(), None),
            window("Ban đêm", "18:00", "06:00", tiers_44(), Some(150_000)),
        ],
        daily_cap: None,
        minimum_charge: None,
        max_stay_minutes: None,
        grace_minutes: None,
        sms_surcharge_per_turn: None,
    }
}

/// Hoàn Kiếm style: Đống Đa plus the central districts' 300,000 daily cap.
fn hoan_kiem_spec() -> TariffSpec {
    TariffSpec {
        name: "QĐ 44/2017 – Hoàn Kiếm – ô tô đến 9 chỗ".into(),
        scope: TariffScope::District { district: "HK".into() },
        daily_cap: Some(300_000),
        ..dong_da_spec()
    }
}

/// One window all day long at a flat price per turn.
fn flat_spec(price: i64) -> TariffSpec {
    TariffSpec { windows: vec![window("Cả ngày", "00:00", "24:00", vec![tier(1, price)], None)], ..dong_da_spec() }
}

fn tariff(spec: &TariffSpec) -> Tariff {
    Tariff::from_spec(1, spec).unwrap_or_else(|e| panic!("valid spec refused: {} ({})", e.code, e.en))
}

fn invalid(spec: &TariffSpec) -> Invalid {
    match Tariff::from_spec(1, spec) {
        Ok(t) => panic!("invalid spec accepted: {t:?}"),
        Err(e) => e,
    }
}

/// The turn line of a one-hour turn.
fn turn(n: u32, from: &str, window: usize, hour_of_stay: u32, tier_from_hour: u32, amount: i64) -> Line {
    let from = at(from);
    Line::Turn { n, from, to: from + Duration::minutes(60), window, hour_of_stay, tier_from_hour, amount: Vnd(amount) }
}

fn lines_sum(p: &Priced) -> Vnd {
    p.lines.iter().map(Line::amount).sum()
}

fn non_turn_lines(p: &Priced) -> Vec<Line> {
    p.lines.iter().filter(|l| !matches!(l, Line::Turn { .. })).cloned().collect()
}

fn turn_amounts(p: &Priced) -> Vec<i64> {
    p.lines.iter().filter_map(|l| if let Line::Turn { amount, .. } = l { Some(amount.get()) } else { None }).collect()
}

const MON_0800: &str = "2026-03-02T08:00:00+07:00";

// ---------------------------------------------------------------------------------------
// (a) Decision 44 tables
// ---------------------------------------------------------------------------------------

#[test]
fn dong_da_daytime_hours_follow_the_decision() {
    let t = tariff(&dong_da_spec());
    let all = [
        turn(1, "2026-03-02T08:00:00+07:00", 0, 1, 1, 25_000),
        turn(2, "2026-03-02T09:00:00+07:00", 0, 2, 1, 25_000),
        turn(3, "2026-03-02T10:00:00+07:00", 0, 3, 3, 35_000),
        turn(4, "2026-03-02T11:00:00+07:00", 0, 4, 3, 35_000),
        turn(5, "2026-03-02T12:00:00+07:00", 0, 5, 5, 45_000),
    ];
    for (hours, total) in [(1u32, 25_000), (2, 50_000), (3, 85_000), (4, 120_000), (5, 165_000)] {
        let p = t.quote(at(MON_0800), hours * 60, Channel::App).unwrap();
        assert_eq!(p.total, Vnd(total), "{hours} h");
        assert_eq!(p.lines, all[..hours as usize].to_vec(), "{hours} h");
        assert_eq!(p.turns, hours);
        assert_eq!(p.already, 0);
        assert_eq!(p.stay_start, at(MON_0800));
        assert_eq!(p.from, at(MON_0800));
        assert_eq!(p.until, at(MON_0800) + Duration::hours(i64::from(hours)));
    }
}

#[test]
fn from_hour_5_every_turn_costs_45_000() {
    let t = tariff(&dong_da_spec());
    // 08:00–18:00: 25 + 25 + 35 + 35 + 6 × 45 = 390,000.
    let p = t.quote(at(MON_0800), 600, Channel::App).unwrap();
    assert_eq!(p.total, Vnd(390_000));
    assert_eq!(turn_amounts(&p), [25_000, 25_000, 35_000, 35_000, 45_000, 45_000, 45_000, 45_000, 45_000, 45_000]);
    assert!(non_turn_lines(&p).is_empty());
}

#[test]
fn three_hours_from_17_00_cross_into_the_night_window_continuing_the_hour_count() {
    let t = tariff(&dong_da_spec());
    let p = t.quote(at("2026-03-02T17:00:00+07:00"), 180, Channel::App).unwrap();
    assert_eq!(
        p.lines,
        [
            turn(1, "2026-03-02T17:00:00+07:00", 0, 1, 1, 25_000),
            turn(2, "2026-03-02T18:00:00+07:00", 1, 2, 1, 25_000),
            turn(3, "2026-03-02T19:00:00+07:00", 1, 3, 3, 35_000),
        ]
    );
    assert_eq!(p.total, Vnd(85_000));
}

#[test]
fn windows_follow_hanoi_time_not_utc() {
    let t = tariff(&dong_da_spec());
    // 10:59 UTC is 17:59 in Hanoi (day); 11:00 UTC is 18:00 (night).
    let day = t.quote(at("2026-03-02T10:59:00Z"), 60, Channel::App).unwrap();
    let night = t.quote(at("2026-03-02T11:00:00Z"), 60, Channel::App).unwrap();
    assert!(matches!(day.lines[0], Line::Turn { window: 0, .. }), "{:?}", day.lines);
    assert!(matches!(night.lines[0], Line::Turn { window: 1, .. }), "{:?}", night.lines);
    // 23:00 UTC on Sunday is 06:00 Monday in Hanoi.
    let p = t.quote(at("2026-03-01T23:00:00Z"), 60, Channel::App).unwrap();
    assert_eq!(p.lines, [turn(1, "2026-03-02T06:00:00+07:00", 0, 1, 1, 25_000)]);
}

#[test]
fn window_at_reports_the_window_and_its_occurrence() {
    let t = tariff(&dong_da_spec());
    assert_eq!(t.window_at(local("2026-03-02 05:59")), Some((1, local("2026-03-01 18:00"))));
    assert_eq!(t.window_at(local("2026-03-02 06:00")), Some((0, local("2026-03-02 06:00"))));
    assert_eq!(t.window_at(local("2026-03-02 17:59")), Some((0, local("2026-03-02 06:00"))));
    assert_eq!(t.window_at(local("2026-03-02 18:00")), Some((1, local("2026-03-02 18:00"))));
    assert_eq!(t.window_at(local("2026-03-02 23:59")), Some((1, local("2026-03-02 18:00"))));
    assert_eq!(t.window_at(local("2026-03-03 00:00")), Some((1, local("2026-03-02 18:00"))));
}

#[test]
fn overnight_18_to_06_is_the_150_000_block() {
    let t = tariff(&dong_da_spec());
    let p = t.quote(at("2026-03-02T18:00:00+07:00"), 12 * 60, Channel::App).unwrap();
    // 25 + 25 + 35 + 35 + 8 × 45 = 480,000 of turns, reduced to the block.
    assert_eq!(
        turn_amounts(&p),
        [25_000, 25_000, 35_000, 35_000, 45_000, 45_000, 45_000, 45_000, 45_000, 45_000, 45_000, 45_000]
    );
    assert!(p.lines[..12].iter().all(|l| matches!(l, Line::Turn { window: 1, .. })));
    assert_eq!(
        non_turn_lines(&p),
        [Line::BlockDiscount { window: 1, occurrence_start: local("2026-03-02 18:00"), amount: Vnd(-330_000) }]
    );
    assert_eq!(p.total, Vnd(150_000));
}

#[test]
fn a_stay_around_the_night_pays_the_block_for_the_night_part_only() {
    let t = tariff(&dong_da_spec());
    // 16:00–08:00: day 25 + 25; night hours 3–14 = 35 + 35 + 10 × 45 = 520,000 → 150,000;
    // next morning hours 15–16 at 45,000.
    let p = t.quote(at("2026-03-02T16:00:00+07:00"), 16 * 60, Channel::App).unwrap();
    assert_eq!(
        non_turn_lines(&p),
        [Line::BlockDiscount { window: 1, occurrence_start: local("2026-03-02 18:00"), amount: Vnd(-370_000) }]
    );
    assert_eq!(p.lines[15], turn(16, "2026-03-03T07:00:00+07:00", 0, 16, 5, 45_000));
    assert_eq!(p.total, Vnd(50_000 + 150_000 + 90_000));
}

#[test]
fn a_night_under_the_block_is_not_discounted() {
    let t = tariff(&dong_da_spec());
    // 18:00–22:00: 25 + 25 + 35 + 35 = 120,000 < 150,000.
    let p = t.quote(at("2026-03-02T18:00:00+07:00"), 240, Channel::App).unwrap();
    assert_eq!(p.total, Vnd(120_000));
    assert!(non_turn_lines(&p).is_empty());
}

#[test]
fn a_long_day_in_hoan_kiem_stops_at_the_300_000_cap() {
    let t = tariff(&hoan_kiem_spec());
    // 08:00–18:00 costs 390,000 uncapped.
    let p = t.quote(at(MON_0800), 600, Channel::App).unwrap();
    assert_eq!(non_turn_lines(&p), [Line::DailyCapDiscount { date: date("2026-03-02"), amount: Vnd(-90_000) }]);
    assert_eq!(p.total, Vnd(300_000));
    // The same stay in Đống Đa (no cap).
    assert_eq!(tariff(&dong_da_spec()).quote(at(MON_0800), 600, Channel::App).unwrap().total, Vnd(390_000));
}

#[test]
fn a_full_local_day_in_hoan_kiem_costs_the_cap() {
    let t = tariff(&hoan_kiem_spec());
    // Monday 00:00–24:00: the tail of Sunday's night (hours 1–6: 210,000 → block 150,000),
    // the day (12 × 45,000), the start of Monday's night (6 × 45,000 → block 150,000), then
    // the cap on Monday.
    let p = t.quote(at("2026-03-02T00:00:00+07:00"), 24 * 60, Channel::App).unwrap();
    assert_eq!(p.turns, 24);
    assert_eq!(
        non_turn_lines(&p),
        [
            Line::BlockDiscount { window: 1, occurrence_start: local("2026-03-01 18:00"), amount: Vnd(-60_000) },
            Line::DailyCapDiscount { date: date("2026-03-02"), amount: Vnd(-540_000) },
            Line::BlockDiscount { window: 1, occurrence_start: local("2026-03-02 18:00"), amount: Vnd(-120_000) },
        ]
    );
    assert_eq!(p.total, Vnd(300_000));
    assert_eq!(lines_sum(&p), p.total);
}

#[test]
fn a_turn_counts_to_the_local_day_it_starts_on() {
    // 30,000 a turn, capped at 100,000 a day, no windows to get in the way.
    let t = tariff(&TariffSpec { daily_cap: Some(100_000), ..flat_spec(30_000) });
    // 20:30, 21:30, 22:30 and 23:30 (ending 00:30 Tuesday) count to Monday: 120,000 → cap;
    // 00:30 counts to Tuesday.
    let p = t.quote(at("2026-03-02T20:30:00+07:00"), 5 * 60, Channel::App).unwrap();
    assert_eq!(non_turn_lines(&p), [Line::DailyCapDiscount { date: date("2026-03-02"), amount: Vnd(-20_000) }]);
    assert_eq!(p.total, Vnd(130_000));
    // From 21:00, three turns on Monday and one on Tuesday: no cap reached.
    let p = t.quote(at("2026-03-02T21:00:00+07:00"), 4 * 60, Channel::App).unwrap();
    assert!(non_turn_lines(&p).is_empty(), "{:?}", p.lines);
    assert_eq!(p.total, Vnd(120_000));
    // Four turns on each side of midnight: each day capped separately.
    let p = t.quote(at("2026-03-02T20:30:00+07:00"), 8 * 60, Channel::App).unwrap();
    assert_eq!(
        non_turn_lines(&p),
        [
            Line::DailyCapDiscount { date: date("2026-03-02"), amount: Vnd(-20_000) },
            Line::DailyCapDiscount { date: date("2026-03-03"), amount: Vnd(-20_000) },
        ]
    );
    assert_eq!(p.total, Vnd(200_000));
    // The day is the Hanoi day: 16:30 UTC Monday is 23:30 Monday in Hanoi, 17:30 UTC is
    // 00:30 Tuesday.
    let p = t.quote(at("2026-03-02T13:30:00Z"), 5 * 60, Channel::App).unwrap();
    assert_eq!(non_turn_lines(&p), [Line::DailyCapDiscount { date: date("2026-03-02"), amount: Vnd(-20_000) }]);
}

#[test]
fn a_50_hour_stay_is_capped_day_by_day() {
    let t = tariff(&hoan_kiem_spec());
    // Mon 08:00 → Wed 10:00. Monday: 390,000 of day turns + 150,000 of night block → 300,000;
    // Tuesday: 0 (rest of Monday's block) + 540,000 + 150,000 → 300,000; Wednesday:
    // 0 (rest of Tuesday's block) + 4 × 45,000 = 180,000.
    let p = t.quote(at(MON_0800), 50 * 60, Channel::App).unwrap();
    assert_eq!(p.turns, 50);
    assert_eq!(
        non_turn_lines(&p),
        [
            Line::DailyCapDiscount { date: date("2026-03-02"), amount: Vnd(-240_000) },
            Line::BlockDiscount { window: 1, occurrence_start: local("2026-03-02 18:00"), amount: Vnd(-390_000) },
            Line::DailyCapDiscount { date: date("2026-03-03"), amount: Vnd(-390_000) },
            Line::BlockDiscount { window: 1, occurrence_start: local("2026-03-03 18:00"), amount: Vnd(-390_000) },
        ]
    );
    assert_eq!(p.lines[49], turn(50, "2026-03-04T09:00:00+07:00", 0, 50, 5, 45_000));
    assert_eq!(p.total, Vnd(300_000 + 300_000 + 180_000));
    assert_eq!(lines_sum(&p), p.total);
}

#[test]
fn minutes_are_rounded_up_to_whole_turns() {
    let t = tariff(&dong_da_spec());
    for (minutes, turns, total) in
        [(1u32, 1u32, 25_000), (59, 1, 25_000), (60, 1, 25_000), (61, 2, 50_000), (120, 2, 50_000), (121, 3, 85_000)]
    {
        let p = t.quote(at(MON_0800), minutes, Channel::App).unwrap();
        assert_eq!((p.turns, p.total), (turns, Vnd(total)), "{minutes} min");
        assert_eq!(p.until, at(MON_0800) + Duration::minutes(i64::from(turns) * 60), "{minutes} min");
        assert_eq!(p, t.price(at(MON_0800), 0, turns, Channel::App).unwrap(), "{minutes} min");
    }
}

#[test]
fn half_hour_turns_are_priced_by_the_hour_of_stay_they_start_in() {
    let half = |p: i64| vec![tier(1, p), tier(3, p * 7 / 5), tier(5, p * 9 / 5)];
    let t = tariff(&TariffSpec {
        turn_minutes: Some(30),
        windows: vec![
            window("Ban ngày", "06:00", "18:00", half(12_500), None),
            window("Ban đêm", "18:00", "06:00", half(12_500), Some(150_000)),
        ],
        ..dong_da_spec()
    });
    // 61 minutes → 3 half-hour turns: hours 1, 1, 2.
    let p = t.quote(at(MON_0800), 61, Channel::App).unwrap();
    let hours: Vec<u32> = p
        .lines
        .iter()
        .filter_map(|l| if let Line::Turn { hour_of_stay, .. } = l { Some(*hour_of_stay) } else { None })
        .collect();
    assert_eq!(hours, [1, 1, 2]);
    assert_eq!(p.total, Vnd(37_500));
    assert_eq!(p.until, at("2026-03-02T09:30:00+07:00"));
    // 2.5 hours: hours 1, 1, 2, 2, 3 → 4 × 12,500 + 17,500.
    assert_eq!(t.quote(at(MON_0800), 150, Channel::App).unwrap().total, Vnd(67_500));
}

#[test]
fn the_minimum_charge_tops_up_a_short_stay_and_is_not_charged_twice() {
    let t = tariff(&TariffSpec { minimum_charge: Some(40_000), ..dong_da_spec() });
    let first = t.quote(at(MON_0800), 60, Channel::App).unwrap();
    assert_eq!(
        first.lines,
        [turn(1, "2026-03-02T08:00:00+07:00", 0, 1, 1, 25_000), Line::MinimumCharge { amount: Vnd(15_000) }]
    );
    assert_eq!(first.total, Vnd(40_000));
    // Extending by one turn: the stay now costs 50,000 in all, 40,000 of it already paid.
    let ext = t.price(at(MON_0800), 1, 1, Channel::App).unwrap();
    assert_eq!(
        ext.lines,
        [turn(2, "2026-03-02T09:00:00+07:00", 0, 2, 1, 25_000), Line::MinimumCharge { amount: Vnd(-15_000) }]
    );
    assert_eq!(ext.total, Vnd(10_000));
    assert_eq!((ext.already, ext.turns), (1, 1));
    assert_eq!(ext.from, at("2026-03-02T09:00:00+07:00"));
    assert_eq!(ext.until, at("2026-03-02T10:00:00+07:00"));
    assert_eq!(first.total + ext.total, t.quote(at(MON_0800), 120, Channel::App).unwrap().total);
    // A stay above the minimum has no minimum line.
    let p = t.quote(at(MON_0800), 120, Channel::App).unwrap();
    assert!(non_turn_lines(&p).is_empty());
    assert_eq!(p.total, Vnd(50_000));
}

#[test]
fn the_minimum_charge_applies_to_the_whole_stay_not_to_each_extension() {
    let t = tariff(&TariffSpec { minimum_charge: Some(60_000), ..dong_da_spec() });
    // 25,000 → 60,000; +25,000 still under → 0 due; +35,000 → 85,000 in all, 25,000 due.
    let a = t.price(at(MON_0800), 0, 1, Channel::App).unwrap();
    let b = t.price(at(MON_0800), 1, 1, Channel::App).unwrap();
    let c = t.price(at(MON_0800), 2, 1, Channel::App).unwrap();
    assert_eq!((a.total, b.total, c.total), (Vnd(60_000), Vnd(0), Vnd(25_000)));
    assert_eq!(non_turn_lines(&b), [Line::MinimumCharge { amount: Vnd(-25_000) }]);
    assert_eq!(non_turn_lines(&c), [Line::MinimumCharge { amount: Vnd(-10_000) }]);
    assert_eq!(a.total + b.total + c.total, t.quote(at(MON_0800), 180, Channel::App).unwrap().total);
}

#[test]
fn the_sms_surcharge_is_charged_per_turn_on_sms_only_and_outside_the_cap() {
    let t = tariff(&TariffSpec { sms_surcharge_per_turn: Some(2_000), ..dong_da_spec() });
    for channel in [Channel::App, Channel::Warden] {
        let p = t.quote(at(MON_0800), 180, channel).unwrap();
        assert_eq!(p.total, Vnd(85_000), "{channel:?}");
        assert!(non_turn_lines(&p).is_empty(), "{channel:?}");
    }
    let p = t.quote(at(MON_0800), 180, Channel::Sms).unwrap();
    assert_eq!(non_turn_lines(&p), [Line::SmsSurcharge { turns: 3, per_turn: Vnd(2_000), amount: Vnd(6_000) }]);
    assert_eq!(p.total, Vnd(91_000));
    // An SMS extension pays the surcharge on its own turns only.
    let ext = t.price(at(MON_0800), 3, 2, Channel::Sms).unwrap();
    assert_eq!(non_turn_lines(&ext), [Line::SmsSurcharge { turns: 2, per_turn: Vnd(2_000), amount: Vnd(4_000) }]);
    assert_eq!(ext.total, Vnd(35_000 + 45_000 + 4_000));
    // Capped day by SMS: 300,000 + 10 × 2,000.
    let hk = tariff(&TariffSpec { sms_surcharge_per_turn: Some(2_000), ..hoan_kiem_spec() });
    assert_eq!(hk.quote(at(MON_0800), 600, Channel::Sms).unwrap().total, Vnd(320_000));
    // No surcharge configured: SMS costs the same as the app.
    let plain = tariff(&dong_da_spec());
    assert_eq!(
        plain.quote(at(MON_0800), 180, Channel::Sms).unwrap(),
        plain.quote(at(MON_0800), 180, Channel::App).unwrap()
    );
}

#[test]
fn the_maximum_stay_is_enforced() {
    let t = tariff(&TariffSpec { max_stay_minutes: Some(120), ..dong_da_spec() });
    assert_eq!(t.quote(at(MON_0800), 120, Channel::App).unwrap().total, Vnd(50_000));
    assert_eq!(t.quote(at(MON_0800), 121, Channel::App), Err(QuoteError::TooLong { max_minutes: 120 }));
    assert_eq!(t.price(at(MON_0800), 2, 1, Channel::App), Err(QuoteError::TooLong { max_minutes: 120 }));
    assert_eq!(t.price(at(MON_0800), 0, 3, Channel::App), Err(QuoteError::TooLong { max_minutes: 120 }));
    // A large budget buys up to the maximum.
    let p = t.affordable(at(MON_0800), 0, Vnd(1_000_000), Channel::App).unwrap();
    assert_eq!((p.turns, p.total), (2, Vnd(50_000)));
    // Without a maximum of its own, a tariff sells at most 31 days.
    let open = tariff(&dong_da_spec());
    assert!(open.quote(at(MON_0800), ABSOLUTE_MAX_STAY_MINUTES, Channel::App).is_ok());
    assert_eq!(
        open.quote(at(MON_0800), ABSOLUTE_MAX_STAY_MINUTES + 1, Channel::App),
        Err(QuoteError::TooLong { max_minutes: ABSOLUTE_MAX_STAY_MINUTES })
    );
    assert_eq!(
        open.price(at(MON_0800), 744, 1, Channel::App),
        Err(QuoteError::TooLong { max_minutes: ABSOLUTE_MAX_STAY_MINUTES })
    );
    assert_eq!(
        open.price(at(MON_0800), u32::MAX, 1, Channel::App),
        Err(QuoteError::TooLong { max_minutes: ABSOLUTE_MAX_STAY_MINUTES })
    );
}

#[test]
fn zero_duration_is_refused() {
    let t = tariff(&dong_da_spec());
    assert_eq!(t.quote(at(MON_0800), 0, Channel::App), Err(QuoteError::ZeroDuration));
    assert_eq!(t.price(at(MON_0800), 0, 0, Channel::App), Err(QuoteError::ZeroDuration));
    assert_eq!(t.price(at(MON_0800), 3, 0, Channel::Sms), Err(QuoteError::ZeroDuration));
}

#[test]
fn affordable_buys_the_most_turns_within_the_budget() {
    let t = tariff(&dong_da_spec());
    let start = at(MON_0800);
    for (budget, turns, total) in [
        (25_000, 1u32, 25_000),
        (49_999, 1, 25_000),
        (50_000, 2, 50_000),
        (100_000, 3, 85_000),
        (119_999, 3, 85_000),
        (120_000, 4, 120_000),
        (165_000, 5, 165_000),
    ] {
        let p = t.affordable(start, 0, Vnd(budget), Channel::App).unwrap();
        assert_eq!((p.turns, p.total), (turns, Vnd(total)), "budget {budget}");
        assert_eq!(p, t.price(start, 0, turns, Channel::App).unwrap(), "budget {budget}");
    }
    for budget in [0, 1, 24_999] {
        assert_eq!(
            t.affordable(start, 0, Vnd(budget), Channel::App),
            Err(QuoteError::BudgetTooSmall { first_turn: Vnd(25_000) }),
            "budget {budget}"
        );
    }
    // Extending: hours 3 and 4 cost 35,000 each, hour 5 costs 45,000.
    let p = t.affordable(start, 2, Vnd(70_000), Channel::App).unwrap();
    assert_eq!((p.already, p.turns, p.total), (2, 2, Vnd(70_000)));
    assert_eq!(
        t.affordable(start, 4, Vnd(44_999), Channel::App),
        Err(QuoteError::BudgetTooSmall { first_turn: Vnd(45_000) })
    );
    // The overnight block makes a big budget go a long way: 18:00 + 150,000 → 06:00.
    let p = t.affordable(at("2026-03-02T18:00:00+07:00"), 0, Vnd(150_000), Channel::App).unwrap();
    assert_eq!((p.turns, p.total), (12, Vnd(150_000)));
}

#[test]
fn affordable_counts_the_minimum_charge_and_the_sms_surcharge() {
    let t = tariff(&TariffSpec { minimum_charge: Some(40_000), sms_surcharge_per_turn: Some(2_000), ..dong_da_spec() });
    let start = at(MON_0800);
    assert_eq!(
        t.affordable(start, 0, Vnd(39_999), Channel::App),
        Err(QuoteError::BudgetTooSmall { first_turn: Vnd(40_000) })
    );
    assert_eq!(t.affordable(start, 0, Vnd(49_999), Channel::App).unwrap().turns, 1);
    assert_eq!(t.affordable(start, 0, Vnd(50_000), Channel::App).unwrap().turns, 2);
    assert_eq!(
        t.affordable(start, 0, Vnd(41_999), Channel::Sms),
        Err(QuoteError::BudgetTooSmall { first_turn: Vnd(42_000) })
    );
    // 2 turns by SMS: 50,000 + 4,000.
    assert_eq!(t.affordable(start, 0, Vnd(53_999), Channel::Sms).unwrap().turns, 1);
    let p = t.affordable(start, 0, Vnd(54_000), Channel::Sms).unwrap();
    assert_eq!((p.turns, p.total), (2, Vnd(54_000)));
    // An extension under the minimum already paid: the second turn costs 10,000.
    let p = t.affordable(start, 1, Vnd(10_000), Channel::App).unwrap();
    assert_eq!((p.turns, p.total), (1, Vnd(10_000)));
}

#[test]
fn affordable_is_bounded_by_the_absolute_maximum() {
    let t = tariff(&hoan_kiem_spec());
    let p = t.affordable(at(MON_0800), 0, Vnd(1_000_000_000), Channel::App).unwrap();
    assert_eq!(p.turns, ABSOLUTE_MAX_STAY_MINUTES / 60);
    assert_eq!(p.total, t.price(at(MON_0800), 0, p.turns, Channel::App).unwrap().total);
    assert_eq!(
        t.affordable(at(MON_0800), ABSOLUTE_MAX_STAY_MINUTES / 60, Vnd(1_000_000), Channel::App),
        Err(QuoteError::TooLong { max_minutes: ABSOLUTE_MAX_STAY_MINUTES })
    );
}

#[test]
fn describe_explains_lines_in_both_languages() {
    let t = tariff(&hoan_kiem_spec());
    let p = t.quote(at("2026-03-02T17:00:00+07:00"), 180, Channel::App).unwrap();
    let en = t.describe(&p.lines[2], true);
    assert!(en.contains("Turn 3"), "{en}");
    assert!(en.contains("19:00 02/03"), "{en}");
    assert!(en.contains("hour 3"), "{en}");
    assert!(en.contains("Ban đêm"), "{en}");
    assert!(en.contains("35,000 VND"), "{en}");
    let vi = t.describe(&p.lines[2], false);
    assert!(vi.contains("Lượt 3"), "{vi}");
    assert!(vi.contains("35.000 đ"), "{vi}");
    let block = Line::BlockDiscount { window: 1, occurrence_start: local("2026-03-02 18:00"), amount: Vnd(-330_000) };
    let en = t.describe(&block, true);
    assert!(en.contains("18:00–06:00"), "{en}");
    assert!(en.contains("150,000 VND"), "{en}");
    assert!(en.contains("-330,000 VND"), "{en}");
    let cap = Line::DailyCapDiscount { date: date("2026-03-02"), amount: Vnd(-90_000) };
    let en = t.describe(&cap, true);
    assert!(en.contains("02/03/2026") && en.contains("300,000 VND") && en.contains("-90,000 VND"), "{en}");
}

// ---------------------------------------------------------------------------------------
// (b) Validation
// ---------------------------------------------------------------------------------------

#[test]
fn the_decision_44_specs_are_valid() {
    for spec in [dong_da_spec(), hoan_kiem_spec(), flat_spec(30_000)] {
        let t = tariff(&spec);
        assert_eq!(t.turn_minutes, 60);
        assert_eq!(t.grace_minutes, 10);
    }
    let t = tariff(&dong_da_spec());
    assert_eq!((t.windows[0].start_min, t.windows[0].len_min), (360, 720));
    assert_eq!((t.windows[1].start_min, t.windows[1].len_min), (1080, 720));
    assert_eq!(t.windows[1].block_price, Some(Vnd(150_000)));
    assert_eq!(t.windows[0].tier(1), (1, Vnd(25_000)));
    assert_eq!(t.windows[0].tier(4), (3, Vnd(35_000)));
    assert_eq!(t.windows[0].tier(99), (5, Vnd(45_000)));
    assert_eq!((t.windows[1].start_hhmm(), t.windows[1].end_hhmm()), ("18:00".to_owned(), "06:00".to_owned()));
}

#[test]
fn windows_leaving_a_gap_are_refused_naming_where() {
    let mut spec = dong_da_spec();
    spec.windows[1].start = "19:00".into();
    let e = invalid(&spec);
    assert_eq!(e.code, "invalid_windows");
    assert!(e.en.contains("gap at Mon 18:00"), "{}", e.en);
    assert!(e.vi.contains("18:00"), "{}", e.vi);
    // Day windows on weekdays only: the weekend days are uncovered.
    let mut spec = dong_da_spec();
    spec.windows[0].days = vec![Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri];
    let e = invalid(&spec);
    assert_eq!(e.code, "invalid_windows");
    assert!(e.en.contains("gap at Sat 06:00"), "{}", e.en);
}

#[test]
fn overlapping_windows_are_refused_naming_where() {
    let mut spec = dong_da_spec();
    spec.windows[1].start = "17:00".into();
    let e = invalid(&spec);
    assert_eq!(e.code, "invalid_windows");
    assert!(e.en.contains("overlap at Mon 17:00"), "{}", e.en);
    assert!(e.en.contains("Ban ngày") && e.en.contains("Ban đêm"), "{}", e.en);
    // A night window reaching 06:30 overlaps the next morning.
    let mut spec = dong_da_spec();
    spec.windows[1].end = "06:30".into();
    let e = invalid(&spec);
    assert_eq!(e.code, "invalid_windows");
    assert!(e.en.contains("overlap at Tue 06:00"), "{}", e.en);
    // The same window twice.
    let mut spec = flat_spec(10_000);
    spec.windows.push(spec.windows[0].clone());
    assert_eq!(invalid(&spec).code, "invalid_windows");
    // No window at all.
    let spec = TariffSpec { windows: Vec::new(), ..dong_da_spec() };
    assert_eq!(invalid(&spec).code, "invalid_windows");
}

#[test]
fn bad_times_are_refused() {
    for (start, end) in [
        ("6:00", "18:00"),
        ("06:00", "18:0"),
        ("24:00", "18:00"),
        ("25:00", "18:00"),
        ("06:60", "18:00"),
        ("06:00", "24:01"),
        ("ab:cd", "18:00"),
        ("", "18:00"),
        ("06h00", "18:00"),
        ("-6:00", "18:00"),
    ] {
        let mut spec = dong_da_spec();
        spec.windows[0].start = start.into();
        spec.windows[0].end = end.into();
        assert_eq!(invalid(&spec).code, "invalid_windows", "{start}–{end}");
    }
    // 24:00 is a valid end.
    let spec = TariffSpec { windows: vec![window("Cả ngày", "00:00", "24:00", tiers_44(), None)], ..dong_da_spec() };
    assert_eq!(tariff(&spec).windows[0].len_min, 1440);
}

#[test]
fn tiers_must_start_at_hour_1_and_ascend() {
    for tiers in [
        vec![],
        vec![tier(2, 25_000)],
        vec![tier(0, 25_000), tier(3, 35_000)],
        vec![tier(1, 25_000), tier(3, 35_000), tier(3, 45_000)],
        vec![tier(1, 25_000), tier(5, 45_000), tier(3, 35_000)],
    ] {
        let mut spec = dong_da_spec();
        spec.windows[1].tiers = tiers.clone();
        assert_eq!(invalid(&spec).code, "invalid_tiers", "{tiers:?}");
    }
}

#[test]
fn negative_or_absurd_prices_are_refused() {
    let cases: Vec<(&str, TariffSpec)> = vec![
        ("tier", {
            let mut s = dong_da_spec();
            s.windows[0].tiers[1].price = -35_000;
            s
        }),
        ("tier too large", {
            let mut s = dong_da_spec();
            s.windows[0].tiers[0].price = 100_000_001;
            s
        }),
        ("block", {
            let mut s = dong_da_spec();
            s.windows[1].block_price = Some(-1);
            s
        }),
        ("cap", TariffSpec { daily_cap: Some(-300_000), ..dong_da_spec() }),
        ("minimum", TariffSpec { minimum_charge: Some(-1), ..dong_da_spec() }),
        ("sms", TariffSpec { sms_surcharge_per_turn: Some(-500), ..dong_da_spec() }),
        ("minimum above cap", TariffSpec { minimum_charge: Some(300_001), ..hoan_kiem_spec() }),
    ];
    for (what, spec) in cases {
        assert_eq!(invalid(&spec).code, "invalid_price", "{what}");
    }
    // Zero prices and a minimum equal to the cap are fine.
    tariff(&TariffSpec { minimum_charge: Some(300_000), ..hoan_kiem_spec() });
    tariff(&flat_spec(0));
}

#[test]
fn validity_must_end_after_it_starts() {
    let from = at("2026-01-01T00:00:00+07:00");
    for until in [from, from - Duration::seconds(1)] {
        let spec = TariffSpec { valid_from: from, valid_until: Some(until), ..dong_da_spec() };
        assert_eq!(invalid(&spec).code, "invalid_validity", "{until}");
    }
    tariff(&TariffSpec { valid_from: from, valid_until: Some(from + Duration::seconds(1)), ..dong_da_spec() });
}

#[test]
fn turn_length_must_be_5_to_1440_minutes() {
    for m in [0, 1, 4, 1441, u32::MAX] {
        assert_eq!(invalid(&TariffSpec { turn_minutes: Some(m), ..dong_da_spec() }).code, "invalid_turn", "{m}");
    }
    for m in [5, 30, 60, 1440] {
        assert_eq!(tariff(&TariffSpec { turn_minutes: Some(m), ..dong_da_spec() }).turn_minutes, m);
    }
}

#[test]
fn other_fields_are_checked() {
    assert_eq!(invalid(&TariffSpec { max_stay_minutes: Some(59), ..dong_da_spec() }).code, "invalid_max_stay");
    assert_eq!(
        invalid(&TariffSpec { max_stay_minutes: Some(ABSOLUTE_MAX_STAY_MINUTES + 1), ..dong_da_spec() }).code,
        "invalid_max_stay"
    );
    assert_eq!(invalid(&TariffSpec { grace_minutes: Some(121), ..dong_da_spec() }).code, "invalid_grace");
    assert_eq!(invalid(&TariffSpec { name: "  ".into(), ..dong_da_spec() }).code, "invalid_name");
    assert_eq!(invalid(&TariffSpec { vehicle_classes: vec![], ..dong_da_spec() }).code, "invalid_vehicle_classes");
    let spec = TariffSpec { scope: TariffScope::District { district: "dd".into() }, ..dong_da_spec() };
    assert_eq!(invalid(&spec).code, "invalid_district_code");
    let spec = TariffSpec { scope: TariffScope::Point { point: " ".into() }, ..dong_da_spec() };
    assert_eq!(invalid(&spec).code, "invalid_scope");
    // Point codes are normalised.
    let spec = TariffSpec { scope: TariffScope::Point { point: " hk001 ".into() }, ..dong_da_spec() };
    assert_eq!(tariff(&spec).scope, TariffScope::Point { point: "HK001".into() });
}

/// Weekdays: day 06:00–18:00, evening 18:00–24:00, early 00:00–06:00; weekend: all day.
fn weekday_weekend_spec() -> TariffSpec {
    use Weekday::*;
    let wd = [Mon, Tue, Wed, Thu, Fri];
    TariffSpec {
        windows: vec![
            window_on(&wd, "Ngày thường", "06:00", "18:00", tiers_44()),
            window_on(&wd, "Tối", "18:00", "24:00", vec![tier(1, 20_000)]),
            window_on(&wd, "Sáng sớm", "00:00", "06:00", vec![tier(1, 10_000)]),
            window_on(&[Sat, Sun], "Cuối tuần", "00:00", "00:00", vec![tier(1, 15_000)]),
        ],
        ..dong_da_spec()
    }
}

/// Day every day; night Mon–Fri (Friday's runs into Saturday) and a weekend night.
fn weekend_night_spec() -> TariffSpec {
    use Weekday::*;
    TariffSpec {
        windows: vec![
            window("Ban ngày", "06:00", "18:00", tiers_44(), None),
            WindowSpec {
                block_price: Some(150_000),
                ..window_on(&[Mon, Tue, Wed, Thu, Fri], "Đêm", "18:00", "06:00", tiers_44())
            },
            WindowSpec {
                block_price: Some(100_000),
                ..window_on(&[Sat, Sun], "Đêm cuối tuần", "18:00", "06:00", tiers_44())
            },
        ],
        ..dong_da_spec()
    }
}

#[test]
fn windows_restricted_to_days_that_tile_the_week_are_accepted() {
    let t = tariff(&weekday_weekend_spec());
    // Friday 2026-03-06 23:00 → evening; Saturday 00:00 → weekend; Monday 05:00 → early.
    let p = t.quote(at("2026-03-06T23:00:00+07:00"), 180, Channel::App).unwrap();
    let windows: Vec<usize> =
        p.lines.iter().filter_map(|l| if let Line::Turn { window, .. } = l { Some(*window) } else { None }).collect();
    assert_eq!(windows, [1, 3, 3]);
    assert_eq!(p.total, Vnd(20_000 + 15_000 + 15_000));
    let p = t.quote(at("2026-03-09T05:00:00+07:00"), 120, Channel::App).unwrap();
    assert_eq!(p.total, Vnd(10_000 + 25_000));
    assert_eq!(t.window_at(local("2026-03-08 23:59")), Some((3, local("2026-03-08 00:00"))));

    let t = tariff(&weekend_night_spec());
    // Friday night belongs to the weekday night (its block), Saturday night to the weekend one.
    assert_eq!(t.window_at(local("2026-03-07 03:00")), Some((1, local("2026-03-06 18:00"))));
    assert_eq!(t.window_at(local("2026-03-07 20:00")), Some((2, local("2026-03-07 18:00"))));
    assert_eq!(t.window_at(local("2026-03-09 05:59")), Some((2, local("2026-03-08 18:00"))));
    let p = t.quote(at("2026-03-07T18:00:00+07:00"), 12 * 60, Channel::App).unwrap();
    assert_eq!(p.total, Vnd(100_000));
    let p = t.quote(at("2026-03-06T18:00:00+07:00"), 12 * 60, Channel::App).unwrap();
    assert_eq!(p.total, Vnd(150_000));
}

#[test]
fn to_spec_round_trips() {
    let specs = [
        dong_da_spec(),
        hoan_kiem_spec(),
        flat_spec(5_000),
        weekday_weekend_spec(),
        weekend_night_spec(),
        TariffSpec {
            scope: TariffScope::Point { point: "dd012".into() },
            valid_until: Some(at("2030-01-01T00:00:00+07:00")),
            turn_minutes: Some(30),
            minimum_charge: Some(20_000),
            max_stay_minutes: Some(240),
            grace_minutes: Some(0),
            sms_surcharge_per_turn: Some(1_500),
            daily_cap: Some(200_000),
            ..dong_da_spec()
        },
        TariffSpec { scope: TariffScope::City, ..dong_da_spec() },
        TariffSpec { scope: TariffScope::Street { street_id: 42 }, ..dong_da_spec() },
    ];
    for spec in specs {
        let t = Tariff::from_spec(17, &spec).unwrap();
        let again = Tariff::from_spec(0, &t.to_spec()).unwrap();
        assert_eq!(Tariff { id: 17, ..again.clone() }, t, "{}", spec.name);
        // And the filled-in spec is stable.
        assert_eq!(again.to_spec(), t.to_spec());
    }
    // Defaults are filled in.
    let s = tariff(&dong_da_spec()).to_spec();
    assert_eq!((s.turn_minutes, s.grace_minutes), (Some(60), Some(10)));
    assert_eq!(s.windows[1].end, "06:00");
}

// ---------------------------------------------------------------------------------------
// (c) resolve and overlaps
// ---------------------------------------------------------------------------------------

fn scoped(id: i64, scope: TariffScope, classes: &[VehicleClass], from: &str, until: Option<&str>) -> Tariff {
    let spec = TariffSpec {
        name: format!("tariff {id}"),
        scope,
        vehicle_classes: classes.to_vec(),
        valid_from: at(from),
        valid_until: until.map(at),
        ..dong_da_spec()
    };
    Tariff::from_spec(id, &spec).unwrap()
}

const SINCE_2018: &str = "2018-01-01T00:00:00+07:00";

#[test]
fn resolve_prefers_point_then_street_then_district_then_city() {
    use VehicleClass::*;
    let tariffs = [
        scoped(1, TariffScope::City, &[Car, Motorbike], SINCE_2018, None),
        scoped(2, TariffScope::District { district: "DD".into() }, &[Car], SINCE_2018, None),
        scoped(3, TariffScope::Street { street_id: 42 }, &[Car], SINCE_2018, None),
        scoped(4, TariffScope::Point { point: "DD001".into() }, &[Car], SINCE_2018, None),
    ];
    let now = at("2026-03-02T08:00:00+07:00");
    let id = |code: &str, street_id: i64, district_code: &str, class: VehicleClass| {
        resolve(&tariffs, &PointRef { code, street_id, district_code }, class, now).map(|t| t.id)
    };
    assert_eq!(id("DD001", 42, "DD", Car), Some(4));
    assert_eq!(id("DD002", 42, "DD", Car), Some(3));
    assert_eq!(id("DD003", 7, "DD", Car), Some(2));
    assert_eq!(id("HK001", 9, "HK", Car), Some(1));
    // Class filtering: only the city tariff prices motorbikes; nothing prices minibuses.
    assert_eq!(id("DD001", 42, "DD", Motorbike), Some(1));
    assert_eq!(id("DD001", 42, "DD", Minibus), None);
    // Order of the input does not matter.
    let reversed: Vec<&Tariff> = tariffs.iter().rev().collect();
    let p = PointRef { code: "DD001", street_id: 42, district_code: "DD" };
    assert_eq!(resolve(reversed, &p, Car, now).map(|t| t.id), Some(4));
    assert_eq!(resolve(Vec::<&Tariff>::new(), &p, Car, now), None);
}

#[test]
fn resolve_skips_tariffs_not_in_force() {
    use VehicleClass::*;
    let from = "2026-04-01T00:00:00+07:00";
    let until = "2026-03-01T00:00:00+07:00";
    let tariffs = [
        scoped(1, TariffScope::City, &[Car], SINCE_2018, None),
        // The district tariff ended on 1 March; the street one starts on 1 April.
        scoped(2, TariffScope::District { district: "DD".into() }, &[Car], SINCE_2018, Some(until)),
        scoped(3, TariffScope::Street { street_id: 42 }, &[Car], from, None),
    ];
    let p = PointRef { code: "DD001", street_id: 42, district_code: "DD" };
    let id = |when: &str| resolve(&tariffs, &p, Car, at(when)).map(|t| t.id);
    assert_eq!(id("2026-02-28T23:59:59+07:00"), Some(2));
    assert_eq!(id(until), Some(1), "valid_until is exclusive");
    assert_eq!(id("2026-03-15T12:00:00+07:00"), Some(1));
    assert_eq!(id("2026-03-31T23:59:59+07:00"), Some(1));
    assert_eq!(id(from), Some(3), "valid_from is inclusive");
    assert_eq!(id("2017-12-31T23:59:59+07:00"), None, "before any tariff");
    // in_force_at agrees.
    assert!(tariffs[1].in_force_at(at("2026-02-28T23:59:59+07:00")));
    assert!(!tariffs[1].in_force_at(at(until)));
    assert!(!tariffs[2].in_force_at(at("2026-03-31T23:59:59+07:00")));
    assert!(tariffs[2].in_force_at(at(from)));
}

#[test]
fn overlaps_needs_same_scope_shared_class_and_intersecting_validity() {
    use VehicleClass::*;
    let dd = || TariffScope::District { district: "DD".into() };
    let a = scoped(1, dd(), &[Car, Minibus], "2026-01-01T00:00:00+07:00", Some("2026-07-01T00:00:00+07:00"));
    let cases = [
        ("same everything", scoped(2, dd(), &[Car, Minibus], "2026-01-01T00:00:00+07:00", None), true),
        ("shares one class", scoped(2, dd(), &[Minibus, Large], "2026-03-01T00:00:00+07:00", None), true),
        ("inside", scoped(2, dd(), &[Car], "2026-02-01T00:00:00+07:00", Some("2026-03-01T00:00:00+07:00")), true),
        ("open-ended before", scoped(2, dd(), &[Car], SINCE_2018, None), true),
        ("starts as a ends", scoped(2, dd(), &[Car], "2026-07-01T00:00:00+07:00", None), false),
        ("ends as a starts", scoped(2, dd(), &[Car], SINCE_2018, Some("2026-01-01T00:00:00+07:00")), false),
        ("one second of overlap", scoped(2, dd(), &[Car], "2026-06-30T23:59:59+07:00", None), true),
        ("other classes", scoped(2, dd(), &[Large, Motorbike], "2026-01-01T00:00:00+07:00", None), false),
        (
            "other district",
            scoped(2, TariffScope::District { district: "HK".into() }, &[Car], "2026-01-01T00:00:00+07:00", None),
            false,
        ),
        ("city scope", scoped(2, TariffScope::City, &[Car], "2026-01-01T00:00:00+07:00", None), false),
    ];
    for (what, b, expected) in cases {
        assert_eq!(a.overlaps(&b), expected, "{what}");
        assert_eq!(b.overlaps(&a), expected, "{what} (reversed)");
    }
    // Scopes compare after normalisation.
    let p1 = scoped(1, TariffScope::Point { point: "hk001".into() }, &[Car], SINCE_2018, None);
    let p2 = scoped(2, TariffScope::Point { point: "HK001".into() }, &[Car], SINCE_2018, None);
    assert!(p1.overlaps(&p2));
}

// ---------------------------------------------------------------------------------------
// (d) Properties over random valid tariffs
// ---------------------------------------------------------------------------------------

/// A random valid tariff and the cut points (local minutes of the day, ascending) its
/// windows were built from.
///
/// Daily (`weekend_cuts` is `None`): window `i` runs from `cuts[i]` to `cuts[i + 1]`, the last
/// one wraps round to `cuts[0]` the next day, and every window applies every day.
///
/// Weekly: `cuts` and `weekend_cuts` both start at 00:00; Monday to Friday are cut by `cuts`
/// (windows `0..cuts.len()`), Saturday and Sunday by `weekend_cuts` (the windows after those),
/// and the last window of each day ends at 24:00.
#[derive(Debug, Clone)]
struct Gen {
    spec: TariffSpec,
    cuts: Vec<u32>,
    weekend_cuts: Option<Vec<u32>>,
}

impl Gen {
    fn tariff(&self) -> Tariff {
        Tariff::from_spec(9, &self.spec).unwrap_or_else(|e| panic!("generated spec refused: {} {:?}", e.en, self.spec))
    }

    fn turn_minutes(&self) -> u32 {
        self.spec.turn_minutes.unwrap()
    }
}

fn hhmm(m: u32) -> String {
    format!("{:02}:{:02}", m / 60, m % 60)
}

fn arb_tiers() -> impl Strategy<Value = Vec<TierSpec>> {
    prop::collection::vec((1u32..=4, 0i64..=100), 1..=4).prop_map(|v| {
        let mut from = 1;
        v.into_iter()
            .enumerate()
            .map(|(i, (step, thousands))| {
                if i > 0 {
                    from += step;
                }
                tier(from, thousands * 1_000)
            })
            .collect()
    })
}

/// Tiers and an optional block price for one window.
fn arb_rates() -> impl Strategy<Value = (Vec<TierSpec>, Option<i64>)> {
    (arb_tiers(), prop::option::of((0i64..=300).prop_map(|b| b * 1_000)))
}

/// Everything but the windows: turn length, cap, minimum (never above the cap), SMS surcharge.
fn arb_base() -> impl Strategy<Value = TariffSpec> {
    (
        prop::sample::select(vec![15u32, 20, 30, 45, 60, 60, 60, 90, 120]),
        prop::option::of(0i64..=600),
        prop::option::of(0i64..=100),
        prop::option::of(0i64..=5),
    )
        .prop_map(|(turn_minutes, cap, min, sms)| {
            let daily_cap = cap.map(|c| c * 1_000);
            let minimum_charge = min.map(|m| m * 1_000).map(|m| daily_cap.map_or(m, |c| m.min(c)));
            TariffSpec {
                name: "random".into(),
                turn_minutes: Some(turn_minutes),
                daily_cap,
                minimum_charge,
                sms_surcharge_per_turn: sms.map(|s| s * 1_000),
                ..dong_da_spec()
            }
        })
}

/// Half-hour cut points: `count` distinct ones, or with 00:00 always among them.
fn arb_cuts(count: std::ops::RangeInclusive<usize>, from_midnight: bool) -> impl Strategy<Value = Vec<u32>> {
    prop::collection::btree_set(0u32..48, count).prop_map(move |set| {
        let mut cuts: Vec<u32> = set.into_iter().map(|h| h * 30).collect();
        if from_midnight && cuts[0] != 0 {
            cuts.insert(0, 0);
            cuts.truncate(3);
        }
        cuts
    })
}

fn arb_daily() -> impl Strategy<Value = Gen> {
    (arb_base(), arb_cuts(1..=3, false), prop::collection::vec(arb_rates(), 3)).prop_map(|(base, cuts, rates)| {
        let windows = rates
            .into_iter()
            .take(cuts.len())
            .enumerate()
            .map(|(i, (tiers, block))| {
                window(&format!("W{i}"), &hhmm(cuts[i]), &hhmm(cuts[(i + 1) % cuts.len()]), tiers, block)
            })
            .collect();
        Gen { spec: TariffSpec { windows, ..base }, cuts, weekend_cuts: None }
    })
}

fn arb_weekly() -> impl Strategy<Value = Gen> {
    use Weekday::*;
    (arb_base(), arb_cuts(1..=3, true), arb_cuts(1..=3, true), prop::collection::vec(arb_rates(), 6)).prop_map(
        |(base, weekday, weekend, rates)| {
            let mut rates = rates.into_iter();
            let mut windows = Vec::new();
            for (cuts, days, name) in [(&weekday, &[Mon, Tue, Wed, Thu, Fri][..], "WD"), (&weekend, &[Sat, Sun], "WE")]
            {
                for (i, start) in cuts.iter().enumerate() {
                    let end = cuts.get(i + 1).map_or("24:00".to_owned(), |e| hhmm(*e));
                    let (tiers, block) = rates.next().unwrap();
                    windows.push(WindowSpec {
                        block_price: block,
                        ..window_on(days, &format!("{name}{i}"), &hhmm(*start), &end, tiers)
                    });
                }
            }
            Gen { spec: TariffSpec { windows, ..base }, cuts: weekday, weekend_cuts: Some(weekend) }
        },
    )
}

/// Random valid tariffs: windows every day, or different windows on weekdays and weekends.
fn arb_gen() -> impl Strategy<Value = Gen> {
    prop_oneof![3 => arb_daily(), 1 => arb_weekly()]
}

/// A start between 2018 and 2031, to the second.
fn arb_start() -> impl Strategy<Value = DateTime<Utc>> {
    (1_514_764_800i64..1_924_992_000).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap())
}

fn arb_channel() -> impl Strategy<Value = Channel> {
    prop::sample::select(vec![Channel::App, Channel::Sms, Channel::Warden])
}

/// Hanoi wall-clock time by plain arithmetic: UTC + 7 h (Vietnam has no DST).
fn hanoi(t: DateTime<Utc>) -> NaiveDateTime {
    t.naive_utc() + Duration::hours(7)
}

/// The model's window for a local time, and the local start of its occurrence.
fn model_window(g: &Gen, at: NaiveDateTime) -> (usize, NaiveDateTime) {
    let minute = at.hour() * 60 + at.minute();
    let day = at.date();
    let (cuts, first) = match &g.weekend_cuts {
        Some(weekend) if at.weekday().num_days_from_monday() >= 5 => (weekend, g.cuts.len()),
        _ => (&g.cuts, 0),
    };
    let (i, occ_day) = match cuts.iter().rposition(|c| *c <= minute) {
        Some(i) => (i, day),
        None => (cuts.len() - 1, day.pred_opt().unwrap()),
    };
    (first + i, occ_day.and_hms_opt(cuts[i] / 60, cuts[i] % 60, 0).unwrap())
}

/// Every turn of a stay by the model: `(local start, window, hour of stay, base price, charged)`.
fn model_turns(g: &Gen, start: DateTime<Utc>, turns: u32) -> Vec<(NaiveDateTime, usize, u32, i64, i64)> {
    let tm = g.turn_minutes();
    let mut occ_spent: BTreeMap<(usize, NaiveDateTime), i64> = BTreeMap::new();
    let mut day_spent: BTreeMap<NaiveDate, i64> = BTreeMap::new();
    (0..turns)
        .map(|k| {
            let at = hanoi(start + Duration::minutes(i64::from(k * tm)));
            let (w, occ) = model_window(g, at);
            let hour = k * tm / 60 + 1;
            let ws = &g.spec.windows[w];
            let base = ws.tiers.iter().rev().find(|t| t.from_hour <= hour).unwrap().price;
            let mut charged = base;
            if let Some(block) = ws.block_price {
                let spent = occ_spent.entry((w, occ)).or_default();
                charged = charged.min(block - *spent);
                *spent += charged;
            }
            if let Some(cap) = g.spec.daily_cap {
                let spent = day_spent.entry(at.date()).or_default();
                charged = charged.min(cap - *spent);
                *spent += charged;
            }
            (at, w, hour, base, charged)
        })
        .collect()
}

/// The model's price of a whole new stay.
fn model_total(g: &Gen, start: DateTime<Utc>, turns: u32, channel: Channel) -> i64 {
    let paid: i64 = model_turns(g, start, turns).iter().map(|t| t.4).sum();
    let sms = if channel == Channel::Sms { g.spec.sms_surcharge_per_turn.unwrap_or(0) * i64::from(turns) } else { 0 };
    paid.max(g.spec.minimum_charge.unwrap_or(0)) + sms
}

fn total(t: &Tariff, start: DateTime<Utc>, already: u32, add: u32, channel: Channel) -> Result<i64, TestCaseError> {
    t.price(start, already, add, channel).map(|p| p.total.get()).map_err(|e| TestCaseError::fail(format!("{e:?}")))
}

/// From the lines alone (and the documented rule that a turn pays what is left under its
/// block, in time order): each local day's turn charges after block and cap discounts,
/// without the SMS surcharge, never exceed the cap. Checks along the way that each block
/// and cap line is what the rule gives.
fn check_daily_cap(t: &Tariff, p: &Priced) -> Result<(), TestCaseError> {
    let mut occ_spent: BTreeMap<(usize, NaiveDateTime), i64> = BTreeMap::new();
    let mut block_due: BTreeMap<(usize, NaiveDateTime), i64> = BTreeMap::new();
    let mut day_sum: BTreeMap<NaiveDate, i64> = BTreeMap::new();
    for line in &p.lines {
        if let Line::Turn { from, window, amount, .. } = line {
            let at = hanoi(*from);
            let w = &t.windows[*window];
            let minute = at.hour() * 60 + at.minute();
            let occ_day = if minute >= w.start_min { at.date() } else { at.date().pred_opt().unwrap() };
            let occ = occ_day.and_hms_opt(w.start_min / 60, w.start_min % 60, 0).unwrap();
            let after = match w.block_price {
                Some(block) => {
                    let spent = occ_spent.entry((*window, occ)).or_default();
                    let after = amount.get().min(block.get() - *spent);
                    *spent += after;
                    *block_due.entry((*window, occ)).or_default() += after - amount.get();
                    after
                }
                None => amount.get(),
            };
            *day_sum.entry(at.date()).or_default() += after;
        }
    }
    let mut block_lines = BTreeMap::new();
    let mut cap_lines = BTreeMap::new();
    for line in &p.lines {
        match line {
            Line::BlockDiscount { window, occurrence_start, amount } => {
                prop_assert!(amount.get() < 0, "{line:?}");
                prop_assert!(
                    block_lines.insert((*window, *occurrence_start), amount.get()).is_none(),
                    "duplicate {line:?}"
                );
            }
            Line::DailyCapDiscount { date, amount } => {
                prop_assert!(amount.get() < 0, "{line:?}");
                prop_assert!(cap_lines.insert(*date, amount.get()).is_none(), "duplicate {line:?}");
            }
            _ => {}
        }
    }
    block_due.retain(|_, v| *v != 0);
    prop_assert_eq!(block_lines, block_due, "block lines");
    match t.daily_cap {
        None => prop_assert!(cap_lines.is_empty()),
        Some(cap) => {
            for d in cap_lines.keys() {
                prop_assert!(day_sum.contains_key(d), "cap line for a day without turns: {d}");
            }
            for (d, sum) in &day_sum {
                let discount = cap_lines.get(d).copied().unwrap_or(0);
                let charged = sum + discount;
                prop_assert!(charged <= cap.get(), "{d}: {charged} > cap {cap}");
                if discount < 0 {
                    prop_assert_eq!(charged, cap.get(), "{}: discounted below the cap", d);
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The engine agrees with an independent model of the documented rules, turn by turn,
    /// and the windows it uses are those of Hanoi local time.
    #[test]
    fn engine_matches_the_model(g in arb_gen(), start in arb_start(), n in 1u32..=60, channel in arb_channel()) {
        let t = g.tariff();
        let p = t.price(start, 0, n, channel).unwrap();
        prop_assert_eq!(p.total.get(), model_total(&g, start, n, channel));
        let model = model_turns(&g, start, n);
        let turns: Vec<&Line> = p.lines.iter().filter(|l| matches!(l, Line::Turn { .. })).collect();
        prop_assert_eq!(turns.len(), n as usize);
        let tm = Duration::minutes(i64::from(g.turn_minutes()));
        for (k, (line, (at, w, hour, base, _))) in turns.iter().zip(&model).enumerate() {
            let Line::Turn { n: nn, from, to, window, hour_of_stay, amount, .. } = line else { unreachable!() };
            prop_assert_eq!(*nn, k as u32 + 1);
            prop_assert_eq!(*from, start + tm * k as i32);
            prop_assert_eq!(*to, *from + tm);
            prop_assert_eq!(hanoi(*from), *at);
            prop_assert_eq!(*window, *w, "turn {} at {}", k + 1, at);
            prop_assert_eq!(*hour_of_stay, *hour);
            prop_assert_eq!(amount.get(), *base);
        }
        prop_assert_eq!(p.until, start + tm * n as i32);
        // quote() is price() after rounding the minutes up.
        let minutes = n * g.turn_minutes() - (start.timestamp() as u32 % g.turn_minutes());
        prop_assert_eq!(t.quote(start, minutes, channel).unwrap(), p);
    }

    #[test]
    fn a_longer_stay_never_costs_less(g in arb_gen(), start in arb_start(), n in 1u32..=60, channel in arb_channel()) {
        let t = g.tariff();
        let totals = (1..=n).map(|k| total(&t, start, 0, k, channel)).collect::<Result<Vec<_>, _>>()?;
        for (k, pair) in totals.windows(2).enumerate() {
            prop_assert!(pair[1] >= pair[0], "{} turns cost {} but {} cost {}", k + 2, pair[1], k + 1, pair[0]);
        }
    }

    #[test]
    fn the_daily_cap_is_never_exceeded(g in arb_gen(), start in arb_start(), n in 1u32..=60, channel in arb_channel()) {
        let t = g.tariff();
        let p = t.price(start, 0, n, channel).unwrap();
        check_daily_cap(&t, &p)?;
    }

    #[test]
    fn the_breakdown_sums_to_the_total(
        g in arb_gen(), start in arb_start(), already in 0u32..=30, n in 1u32..=30, channel in arb_channel(),
        budget in 0i64..=1_000_000,
    ) {
        let t = g.tariff();
        let p = t.price(start, already, n, channel).unwrap();
        prop_assert_eq!(lines_sum(&p), p.total);
        prop_assert_eq!((p.already, p.turns), (already, n));
        if let Ok(p) = t.affordable(start, already, Vnd(budget), channel) {
            prop_assert_eq!(lines_sum(&p), p.total);
        }
        // Only SMS stays carry a surcharge line, and only when there is a surcharge.
        let sms_lines = p.lines.iter().filter(|l| matches!(l, Line::SmsSurcharge { .. })).count();
        let expected = usize::from(channel == Channel::Sms && g.spec.sms_surcharge_per_turn.unwrap_or(0) > 0);
        prop_assert_eq!(sms_lines, expected);
    }

    #[test]
    fn booking_once_equals_booking_by_extensions(
        g in arb_gen(), start in arb_start(), a in 1u32..=25, b in 1u32..=25, c in 1u32..=25, channel in arb_channel(),
    ) {
        let t = g.tariff();
        let whole2 = total(&t, start, 0, a + b, channel)?;
        prop_assert_eq!(total(&t, start, 0, a, channel)? + total(&t, start, a, b, channel)?, whole2);
        let whole3 = total(&t, start, 0, a + b + c, channel)?;
        let split3 =
            total(&t, start, 0, a, channel)? + total(&t, start, a, b, channel)? + total(&t, start, a + b, c, channel)?;
        prop_assert_eq!(split3, whole3);
        // The extension's turn lines are the whole stay's.
        let ext = t.price(start, a, b, channel).unwrap();
        let all = t.price(start, 0, a + b, channel).unwrap();
        let turns = |p: &Priced| p.lines.iter().filter(|l| matches!(l, Line::Turn { .. })).cloned().collect::<Vec<_>>();
        prop_assert_eq!(turns(&ext), turns(&all)[a as usize..].to_vec());
        prop_assert_eq!(ext.until, all.until);
        prop_assert_eq!(ext.from, all.lines.iter().find_map(|l| match l {
            Line::Turn { n, from, .. } if *n == a + 1 => Some(*from),
            _ => None,
        }).unwrap());
    }

    #[test]
    fn a_quote_depends_only_on_the_instant_and_hanoi_local_time(
        g in arb_gen(), start in arb_start(), n in 1u32..=40, channel in arb_channel(),
        offset_min in -12 * 60i32..=14 * 60,
    ) {
        let t = g.tariff();
        let p = t.price(start, 0, n, channel).unwrap();
        // The same instant written with another offset, through its RFC 3339 text.
        let offset = FixedOffset::east_opt(offset_min * 60).unwrap();
        let text = start.with_timezone(&offset).to_rfc3339();
        let same = DateTime::parse_from_rfc3339(&text).unwrap().to_utc();
        prop_assert_eq!(same, start);
        prop_assert_eq!(t.price(same, 0, n, channel).unwrap(), p.clone());
        // Whole days later the Hanoi wall clock reads the same: the same turns and amounts,
        // shifted. A week later for every tariff, a day later when the windows are the same
        // every day.
        let shifts: &[i64] = if g.weekend_cuts.is_none() { &[1, 7] } else { &[7, 28] };
        for &days in shifts {
            let shift = Duration::days(days);
            let q = t.price(start + shift, 0, n, channel).unwrap();
            prop_assert_eq!(q.total, p.total);
            let shifted: Vec<Line> = p.lines.iter().map(|l| match l.clone() {
                Line::Turn { n, from, to, window, hour_of_stay, tier_from_hour, amount } =>
                    Line::Turn { n, from: from + shift, to: to + shift, window, hour_of_stay, tier_from_hour, amount },
                Line::BlockDiscount { window, occurrence_start, amount } =>
                    Line::BlockDiscount { window, occurrence_start: occurrence_start + shift, amount },
                Line::DailyCapDiscount { date, amount } => Line::DailyCapDiscount { date: date + shift, amount },
                other => other,
            }).collect();
            prop_assert_eq!(q.lines, shifted);
        }
    }

    #[test]
    fn affordable_buys_the_largest_stay_within_the_budget(
        g in arb_gen(), start in arb_start(), already in 0u32..=10, max_turns in 1u32..=50,
        budget in 0i64..=800_000, exact in prop::option::of((any::<prop::sample::Index>(), -1i64..=1)),
        channel in arb_channel(),
    ) {
        let max_turns = max_turns + already;
        let spec = TariffSpec { max_stay_minutes: Some(max_turns * g.turn_minutes()), ..g.spec.clone() };
        let t = Tariff::from_spec(1, &spec).unwrap();
        let totals =
            (1..=max_turns - already).map(|k| total(&t, start, already, k, channel)).collect::<Result<Vec<_>, _>>()?;
        // Half the time the budget is one of the prices, give or take one đồng.
        let budget = match exact {
            Some((pick, delta)) => (*pick.get(&totals) + delta).max(0),
            None => budget,
        };
        let best = totals.iter().rposition(|c| *c <= budget).map(|i| i as u32 + 1);
        match (best, t.affordable(start, already, Vnd(budget), channel)) {
            (Some(n), Ok(p)) => {
                prop_assert_eq!(p.turns, n);
                prop_assert_eq!(p.clone(), t.price(start, already, n, channel).unwrap());
                prop_assert!(p.total.get() <= budget);
            }
            (None, Err(QuoteError::BudgetTooSmall { first_turn })) => {
                prop_assert_eq!(first_turn.get(), totals[0]);
                prop_assert!(first_turn.get() > budget);
            }
            (best, got) => return Err(TestCaseError::fail(format!("expected {best:?} turns, got {got:?}"))),
        }
    }
}
