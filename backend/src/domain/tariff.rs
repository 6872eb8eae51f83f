//! The tariff engine: Hanoi Decision 44/2017 and what other cities use.
//!
//! A tariff prices a stay turn by turn (a "lượt", 60 minutes by default). Each turn is
//! priced by the window of the week it starts in (day 06:00–18:00, night 18:00–06:00, …)
//! and by the hour of the stay it starts in (hours 1–2: 25,000; 3–4: 35,000; 5+: 45,000).
//! Then, in this order:
//! 1. **block**: one occurrence of a window costs at most its block price (overnight
//!    18:00–06:00 for 150,000);
//! 2. **daily cap**: one local calendar day costs at most the cap (a turn counts to the day
//!    it starts on);
//! 3. **minimum charge** for the whole stay;
//! 4. **channel surcharge** per turn (SMS), outside the caps.
//!
//! Blocks and caps are allocated turn by turn in time order (a turn pays what is left
//! under the block or cap). A later turn therefore never changes what an earlier one paid:
//! extending a stay prices the new turns exactly as if the whole stay had been bought at
//! once, continuing the hour count (hour 3 of a stay is hour 3 whether it was bought at the
//! start or by extension). All local time is Asia/Ho_Chi_Minh, whatever the server's zone.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, Timelike, Utc};
use chrono_tz::{Asia::Ho_Chi_Minh, Tz};
use iparking_mobile_api::{Channel, TariffScope, TariffSpec, TierSpec, VehicleClass, Weekday, WindowSpec};

use super::{city::Invalid, money::Vnd};

/// The city's time zone.
pub const LOCAL_TZ: Tz = Ho_Chi_Minh;
/// A moment as people read it: Hanoi time, `HH:MM` when it falls on `now`'s local day,
/// with the day (`HH:MM dd/mm`, and the year when it differs) otherwise.
pub fn local_time_for_people(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let (local, today) = (t.with_timezone(&LOCAL_TZ), now.with_timezone(&LOCAL_TZ));
    if local.date_naive() == today.date_naive() {
        local.format("%H:%M").to_string()
    } else if local.year() == today.year() {
        local.format("%H:%M %d/%m").to_string()
    } else {
        local.format("%H:%M %d/%m/%Y").to_string()
    }
}

/// Default turn length.
pub const DEFAULT_TURN_MINUTES: u32 = 60;
/// Default grace period.
pub const DEFAULT_GRACE_MINUTES: u32 = 10;
/// Largest price, block, cap or surcharge accepted (a sanity bound).
pub const MAX_PRICE: i64 = 100_000_000;
/// Longest stay any tariff can sell, whatever its own maximum: 31 days.
pub const ABSOLUTE_MAX_STAY_MINUTES: u32 = 31 * 24 * 60;
const MINUTES_PER_DAY: u32 = 1440;
const MINUTES_PER_WEEK: usize = 7 * 1440;
const MAX_WINDOWS: usize = 16;
const MAX_TIERS: usize = 24;

const WEEKDAYS: [Weekday; 7] =
    [Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri, Weekday::Sat, Weekday::Sun];

fn weekday_index(d: Weekday) -> usize {
    WEEKDAYS.iter().position(|w| *w == d).unwrap_or(0)
}

fn weekday_name(i: usize) -> &'static str {
    ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"][i % 7]
}

/// One price tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tier {
    /// First hour of stay (1-based).
    pub from_hour: u32,
    /// Price per turn.
    pub price: Vnd,
}

/// A window of the week.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Label shown to drivers.
    pub label: String,
    /// Days (Mon = 0) on which an occurrence starts.
    pub days: [bool; 7],
    /// Local start, minutes after midnight.
    pub start_min: u32,
    /// Length in minutes, 1..=1440.
    pub len_min: u32,
    /// Tiers, ascending, the first from hour 1.
    pub tiers: Vec<Tier>,
    /// Most one occurrence costs.
    pub block_price: Option<Vnd>,
}

impl Window {
    /// The tier for an hour of stay: `(tier's from_hour, price)`.
    pub fn tier(&self, hour_of_stay: u32) -> (u32, Vnd) {
        let t = self.tiers.iter().rev().find(|t| t.from_hour <= hour_of_stay).unwrap_or(&self.tiers[0]);
        (t.from_hour, t.price)
    }

    /// Local start as `HH:MM`.
    pub fn start_hhmm(&self) -> String {
        hhmm(self.start_min)
    }

    /// Local end as `HH:MM`.
    pub fn end_hhmm(&self) -> String {
        hhmm((self.start_min + self.len_min) % MINUTES_PER_DAY)
    }
}

fn hhmm(m: u32) -> String {
    format!("{:02}:{:02}", m / 60, m % 60)
}

fn parse_hhmm(s: &str, allow_24: bool) -> Option<u32> {
    let (h, m) = s.trim().split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) if allow_24 => Some(MINUTES_PER_DAY),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

/// A validated, immutable tariff.
#[derive(Debug, Clone, PartialEq)]
pub struct Tariff {
    /// Id (the version sessions record); 0 before it is published.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Scope.
    pub scope: TariffScope,
    /// Vehicle classes priced.
    pub classes: Vec<VehicleClass>,
    /// In force from.
    pub valid_from: DateTime<Utc>,
    /// In force until (exclusive).
    pub valid_until: Option<DateTime<Utc>>,
    /// Minutes per turn.
    pub turn_minutes: u32,
    /// Windows tiling the week.
    pub windows: Vec<Window>,
    /// Cap per local day.
    pub daily_cap: Option<Vnd>,
    /// Minimum per stay.
    pub minimum_charge: Option<Vnd>,
    /// Longest stay, minutes.
    pub max_stay_minutes: Option<u32>,
    /// Grace period, minutes.
    pub grace_minutes: u32,
    /// Extra per SMS turn.
    pub sms_surcharge: Option<Vnd>,
    /// When it was published (`None` for a draft).
    pub published_at: Option<DateTime<Utc>>,
}

/// Drops sub-microsecond precision: PostgreSQL keeps microseconds, so every stored instant is
/// cut to them on the way in and both databases hold the same value.
pub fn truncate_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.with_nanosecond(t.nanosecond() / 1_000 * 1_000).unwrap_or(t)
}

fn bad(code: &'static str, vi: String, en: String) -> Invalid {
    Invalid::new(code, vi, en)
}

fn money(field: &str, v: i64) -> Result<Vnd, Invalid> {
    if (0..=MAX_PRICE).contains(&v) {
        Ok(Vnd(v))
    } else {
        Err(bad(
            "invalid_price",
            format!("{field} phải từ 0 đến {MAX_PRICE} đồng."),
            format!("{field} must be between 0 and {MAX_PRICE} VND."),
        ))
    }
}

/// One line of a priced stay.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// One turn at its tier price.
    Turn {
        /// Turn number within the whole stay (1-based).
        n: u32,
        /// Start.
        from: DateTime<Utc>,
        /// End.
        to: DateTime<Utc>,
        /// Window index.
        window: usize,
        /// Hour of the stay the turn starts in.
        hour_of_stay: u32,
        /// The tier applied.
        tier_from_hour: u32,
        /// Price.
        amount: Vnd,
    },
    /// Reduction to the block price of a window occurrence.
    BlockDiscount {
        /// Window index.
        window: usize,
        /// Local start of the occurrence.
        occurrence_start: NaiveDateTime,
        /// Negative amount.
        amount: Vnd,
    },
    /// Reduction to the daily cap.
    DailyCapDiscount {
        /// Local day.
        date: NaiveDate,
        /// Negative amount.
        amount: Vnd,
    },
    /// Top-up to the minimum charge (negative on an extension already covered by it).
    MinimumCharge {
        /// Amount.
        amount: Vnd,
    },
    /// Channel surcharge.
    SmsSurcharge {
        /// Turns charged.
        turns: u32,
        /// Per turn.
        per_turn: Vnd,
        /// Amount.
        amount: Vnd,
    },
}

impl Line {
    /// The line's amount.
    pub fn amount(&self) -> Vnd {
        match self {
            Line::Turn { amount, .. }
            | Line::BlockDiscount { amount, .. }
            | Line::DailyCapDiscount { amount, .. }
            | Line::MinimumCharge { amount }
            | Line::SmsSurcharge { amount, .. } => *amount,
        }
    }
}

/// A priced stay (or extension).
#[derive(Debug, Clone, PartialEq)]
pub struct Priced {
    /// Start of the whole stay.
    pub stay_start: DateTime<Utc>,
    /// Start of the turns priced here (after the ones already bought).
    pub from: DateTime<Utc>,
    /// Paid until.
    pub until: DateTime<Utc>,
    /// Turns priced here.
    pub turns: u32,
    /// Turns bought before these.
    pub already: u32,
    /// Sum of the lines.
    pub total: Vnd,
    /// Breakdown.
    pub lines: Vec<Line>,
}

/// Why a stay cannot be priced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuoteError {
    /// Zero minutes or zero turns.
    ZeroDuration,
    /// Longer than the tariff's (or the absolute) maximum stay.
    TooLong {
        /// The maximum, minutes.
        max_minutes: u32,
    },
    /// The budget does not buy a single turn.
    BudgetTooSmall {
        /// Price of the first turn.
        first_turn: Vnd,
    },
    /// The tariff does not cover this instant (cannot happen for a validated tariff).
    Uncovered,
}

/// One turn as the walker sees it.
struct TurnStep {
    n: u32,
    from: DateTime<Utc>,
    window: usize,
    occurrence: NaiveDateTime,
    date: NaiveDate,
    hour_of_stay: u32,
    tier_from_hour: u32,
    base: Vnd,
    after_block: Vnd,
    charged: Vnd,
}

/// Walks the turns of a stay in time order, allocating blocks and caps.
struct TurnWalker<'a> {
    t: &'a Tariff,
    start: DateTime<Utc>,
    n: u32,
    occ: Option<(usize, NaiveDateTime, Vnd)>,
    day: Option<(NaiveDate, Vnd)>,
}

impl<'a> TurnWalker<'a> {
    fn new(t: &'a Tariff, start: DateTime<Utc>) -> Self {
        Self { t, start, n: 0, occ: None, day: None }
    }

    fn next_turn(&mut self) -> Result<TurnStep, QuoteError> {
        let t = self.t;
        self.n += 1;
        let n = self.n;
        let from = self.start + Duration::minutes(i64::from((n - 1) * t.turn_minutes));
        let local = from.with_timezone(&LOCAL_TZ).naive_local();
        let (window, occurrence) = t.window_at(local).ok_or(QuoteError::Uncovered)?;
        let hour_of_stay = (n - 1) * t.turn_minutes / 60 + 1;
        let (tier_from_hour, base) = t.windows[window].tier(hour_of_stay);
        let after_block = match t.windows[window].block_price {
            Some(block) => {
                let spent = match self.occ {
                    Some((w, o, s)) if w == window && o == occurrence => s,
                    _ => Vnd::ZERO,
                };
                let b = base.min((block - spent).max(Vnd::ZERO));
                self.occ = Some((window, occurrence, spent + b));
                b
            }
            None => base,
        };
        let date = local.date();
        let charged = match t.daily_cap {
            Some(cap) => {
                let spent = match self.day {
                    Some((d, s)) if d == date => s,
                    _ => Vnd::ZERO,
                };
                let c = after_block.min((cap - spent).max(Vnd::ZERO));
                self.day = Some((date, spent + c));
                c
            }
            None => after_block,
        };
        Ok(TurnStep { n, from, window, occurrence, date, hour_of_stay, tier_from_hour, base, after_block, charged })
    }
}

impl Tariff {
    /// Validates a spec. `id` is the published id (0 for a draft).
    pub fn from_spec(id: i64, spec: &TariffSpec) -> Result<Tariff, Invalid> {
        let name = super::city::validate_name("name", &spec.name)?;
        let classes = super::city::validate_classes(&spec.vehicle_classes)?;
        match &spec.scope {
            TariffScope::District { district } => super::city::validate_district_code(district)?,
            TariffScope::Point { point } if point.trim().is_empty() => {
                return Err(bad("invalid_scope", "Thiếu mã điểm đỗ.".into(), "The point code is missing.".into()));
            }
            _ => {}
        }
        if spec.valid_until.is_some_and(|u| u <= spec.valid_from) {
            return Err(bad(
                "invalid_validity",
                "valid_until phải sau valid_from.".into(),
                "valid_until must be after valid_from.".into(),
            ));
        }
        let turn_minutes = spec.turn_minutes.unwrap_or(DEFAULT_TURN_MINUTES);
        if !(5..=MINUTES_PER_DAY).contains(&turn_minutes) {
            return Err(bad(
                "invalid_turn",
                "Độ dài một lượt phải từ 5 đến 1440 phút.".into(),
                "turn_minutes must be between 5 and 1440.".into(),
            ));
        }
        if spec.windows.is_empty() || spec.windows.len() > MAX_WINDOWS {
            return Err(bad(
                "invalid_windows",
                format!("Cần 1–{MAX_WINDOWS} khung giờ."),
                format!("A tariff needs 1–{MAX_WINDOWS} windows."),
            ));
        }
        let windows = spec.windows.iter().map(window_from_spec).collect::<Result<Vec<_>, _>>()?;
        check_tiling(&windows)?;
        let daily_cap = spec.daily_cap.map(|v| money("daily_cap", v)).transpose()?;
        let minimum_charge = spec.minimum_charge.map(|v| money("minimum_charge", v)).transpose()?;
        if let (Some(cap), Some(min)) = (daily_cap, minimum_charge)
            && min > cap
        {
            return Err(bad(
                "invalid_price",
                "Phí tối thiểu không được lớn hơn mức trần một ngày.".into(),
                "minimum_charge cannot exceed daily_cap.".into(),
            ));
        }
        if let Some(max) = spec.max_stay_minutes
            && !(turn_minutes..=ABSOLUTE_MAX_STAY_MINUTES).contains(&max)
        {
            return Err(bad(
                "invalid_max_stay",
                format!("Thời gian đỗ tối đa phải từ một lượt đến {ABSOLUTE_MAX_STAY_MINUTES} phút."),
                format!("max_stay_minutes must be between one turn and {ABSOLUTE_MAX_STAY_MINUTES}."),
            ));
        }
        let grace_minutes = spec.grace_minutes.unwrap_or(DEFAULT_GRACE_MINUTES);
        if grace_minutes > 120 {
            return Err(bad(
                "invalid_grace",
                "Thời gian ân hạn tối đa 120 phút.".into(),
                "grace_minutes must be at most 120.".into(),
            ));
        }
        let sms_surcharge = spec.sms_surcharge_per_turn.map(|v| money("sms_surcharge_per_turn", v)).transpose()?;
        Ok(Tariff {
            id,
            name,
            scope: normalise_scope(&spec.scope),
            classes,
            valid_from: truncate_micros(spec.valid_from),
            valid_until: spec.valid_until.map(truncate_micros),
            turn_minutes,
            windows,
            daily_cap,
            minimum_charge,
            max_stay_minutes: spec.max_stay_minutes,
            grace_minutes,
            sms_surcharge,
            published_at: None,
        })
    }

    /// The spec with every default filled in (what is stored and shown).
    pub fn to_spec(&self) -> TariffSpec {
        TariffSpec {
            name: self.name.clone(),
            scope: self.scope.clone(),
            vehicle_classes: self.classes.clone(),
            valid_from: self.valid_from,
            valid_until: self.valid_until,
            turn_minutes: Some(self.turn_minutes),
            windows: self
                .windows
                .iter()
                .map(|w| WindowSpec {
                    label: w.label.clone(),
                    days: if w.days.iter().all(|d| *d) {
                        Vec::new()
                    } else {
                        (0..7).filter(|i| w.days[*i]).map(|i| WEEKDAYS[i]).collect()
                    },
                    start: w.start_hhmm(),
                    end: w.end_hhmm(),
                    tiers: w.tiers.iter().map(|t| TierSpec { from_hour: t.from_hour, price: t.price.get() }).collect(),
                    block_price: w.block_price.map(Vnd::get),
                })
                .collect(),
            daily_cap: self.daily_cap.map(Vnd::get),
            minimum_charge: self.minimum_charge.map(Vnd::get),
            max_stay_minutes: self.max_stay_minutes,
            grace_minutes: Some(self.grace_minutes),
            sms_surcharge_per_turn: self.sms_surcharge.map(Vnd::get),
        }
    }

    /// Whether the tariff is in force at `t`.
    pub fn in_force_at(&self, t: DateTime<Utc>) -> bool {
        self.valid_from <= t && self.valid_until.is_none_or(|u| t < u)
    }

    /// The window a local instant falls in, and the local start of that occurrence.
    pub fn window_at(&self, local: NaiveDateTime) -> Option<(usize, NaiveDateTime)> {
        let minute = local.hour() * 60 + local.minute();
        let today = local.weekday().num_days_from_monday() as usize;
        for (i, w) in self.windows.iter().enumerate() {
            for back in 0..2u32 {
                let day = (today + 7 - back as usize) % 7;
                if !w.days[day] {
                    continue;
                }
                let offset = i64::from(minute + back * MINUTES_PER_DAY) - i64::from(w.start_min);
                if (0..i64::from(w.len_min)).contains(&offset) {
                    let start_date = local.date() - Duration::days(i64::from(back));
                    let occ = start_date.and_hms_opt(w.start_min / 60, w.start_min % 60, 0)?;
                    return Some((i, occ));
                }
            }
        }
        None
    }

    /// Whole turns needed for `minutes` (rounded up).
    pub fn turns_for_minutes(&self, minutes: u32) -> u32 {
        minutes.div_ceil(self.turn_minutes)
    }

    fn check_length(&self, total_turns: u32) -> Result<(), QuoteError> {
        let max = self.max_stay_minutes.unwrap_or(ABSOLUTE_MAX_STAY_MINUTES).min(ABSOLUTE_MAX_STAY_MINUTES);
        if u64::from(total_turns) * u64::from(self.turn_minutes) > u64::from(max) {
            return Err(QuoteError::TooLong { max_minutes: max });
        }
        Ok(())
    }

    /// Prices `add` turns of a stay that started at `stay_start` and already has
    /// `already` turns paid. `already = 0` is a new stay.
    pub fn price(
        &self,
        stay_start: DateTime<Utc>,
        already: u32,
        add: u32,
        channel: Channel,
    ) -> Result<Priced, QuoteError> {
        if add == 0 {
            return Err(QuoteError::ZeroDuration);
        }
        self.check_length(already.saturating_add(add))?;
        let mut walker = TurnWalker::new(self, stay_start);
        let mut lines = Vec::with_capacity(add as usize + 2);
        let mut discounts: Vec<Line> = Vec::new();
        let (mut paid_before, mut paid_after) = (Vnd::ZERO, Vnd::ZERO);
        let turn = Duration::minutes(i64::from(self.turn_minutes));
        for _ in 0..already + add {
            let s = walker.next_turn()?;
            paid_after += s.charged;
            if s.n <= already {
                paid_before += s.charged;
                continue;
            }
            lines.push(Line::Turn {
                n: s.n,
                from: s.from,
                to: s.from + turn,
                window: s.window,
                hour_of_stay: s.hour_of_stay,
                tier_from_hour: s.tier_from_hour,
                amount: s.base,
            });
            if s.base > s.after_block {
                add_discount(
                    &mut discounts,
                    Line::BlockDiscount {
                        window: s.window,
                        occurrence_start: s.occurrence,
                        amount: s.after_block - s.base,
                    },
                );
            }
            if s.after_block > s.charged {
                add_discount(
                    &mut discounts,
                    Line::DailyCapDiscount { date: s.date, amount: s.charged - s.after_block },
                );
            }
        }
        lines.extend(discounts);
        if let Some(delta) = self.minimum_delta(already, paid_before, paid_after) {
            lines.push(Line::MinimumCharge { amount: delta });
        }
        if let (Channel::Sms, Some(per_turn)) = (channel, self.sms_surcharge)
            && per_turn > Vnd::ZERO
        {
            lines.push(Line::SmsSurcharge { turns: add, per_turn, amount: Vnd(per_turn.get() * i64::from(add)) });
        }
        let total = lines.iter().map(Line::amount).sum();
        Ok(Priced {
            stay_start,
            from: stay_start + turn * already as i32,
            until: stay_start + turn * (already + add) as i32,
            turns: add,
            already,
            total,
            lines,
        })
    }

    /// Prices a new stay of `minutes` (rounded up to whole turns).
    pub fn quote(&self, start: DateTime<Utc>, minutes: u32, channel: Channel) -> Result<Priced, QuoteError> {
        if minutes == 0 {
            return Err(QuoteError::ZeroDuration);
        }
        self.price(start, 0, self.turns_for_minutes(minutes), channel)
    }

    /// The most turns `budget` buys after `already` turns of a stay started at `stay_start`
    /// (bounded by the maximum stay), priced.
    pub fn affordable(
        &self,
        stay_start: DateTime<Utc>,
        already: u32,
        budget: Vnd,
        channel: Channel,
    ) -> Result<Priced, QuoteError> {
        let max = self.max_stay_minutes.unwrap_or(ABSOLUTE_MAX_STAY_MINUTES).min(ABSOLUTE_MAX_STAY_MINUTES);
        let max_turns = max / self.turn_minutes;
        let mut walker = TurnWalker::new(self, stay_start);
        let (mut paid_before, mut paid_after) = (Vnd::ZERO, Vnd::ZERO);
        let surcharge = if channel == Channel::Sms { self.sms_surcharge.unwrap_or(Vnd::ZERO) } else { Vnd::ZERO };
        let mut best = 0u32;
        let mut first_turn = None;
        for k in 1..=max_turns {
            let s = walker.next_turn()?;
            paid_after += s.charged;
            if k <= already {
                paid_before += s.charged;
                continue;
            }
            let add = k - already;
            let cost = (paid_after - paid_before)
                + self.minimum_delta(already, paid_before, paid_after).unwrap_or(Vnd::ZERO)
                + Vnd(surcharge.get() * i64::from(add));
            first_turn.get_or_insert(cost);
            if cost > budget {
                break;
            }
            best = add;
        }
        if best == 0 {
            return match first_turn {
                Some(first_turn) => Err(QuoteError::BudgetTooSmall { first_turn }),
                None => Err(QuoteError::TooLong { max_minutes: max }),
            };
        }
        self.price(stay_start, already, best, channel)
    }

    fn minimum_delta(&self, already: u32, paid_before: Vnd, paid_after: Vnd) -> Option<Vnd> {
        let min = self.minimum_charge?;
        let charged_before = if already > 0 { paid_before.max(min) } else { Vnd::ZERO };
        let charged_after = paid_after.max(min);
        let delta = (charged_after - charged_before) - (paid_after - paid_before);
        (delta != Vnd::ZERO).then_some(delta)
    }

    /// Windows with an occurrence starting on local `date`, by start time.
    pub fn windows_on(&self, date: NaiveDate) -> Vec<&Window> {
        let day = date.weekday().num_days_from_monday() as usize;
        let mut ws: Vec<&Window> = self.windows.iter().filter(|w| w.days[day]).collect();
        ws.sort_by_key(|w| w.start_min);
        ws
    }

    /// How specific the scope is for a point: 3 point, 2 street, 1 district, 0 city;
    /// `None` if the tariff does not apply to the point.
    pub fn scope_rank(&self, point: &PointRef<'_>) -> Option<u8> {
        match &self.scope {
            TariffScope::City => Some(0),
            TariffScope::District { district } => (district == point.district_code).then_some(1),
            TariffScope::Street { street_id } => (*street_id == point.street_id).then_some(2),
            TariffScope::Point { point: code } => (code == point.code).then_some(3),
        }
    }

    /// Whether two tariffs would both price the same vehicle at the same scope and time.
    pub fn overlaps(&self, other: &Tariff) -> bool {
        self.scope == other.scope
            && self.classes.iter().any(|c| other.classes.contains(c))
            && other.valid_until.is_none_or(|u| self.valid_from < u)
            && self.valid_until.is_none_or(|u| other.valid_from < u)
    }

    /// Explains a line in words.
    pub fn describe(&self, line: &Line, english: bool) -> String {
        let local = |t: DateTime<Utc>| t.with_timezone(&LOCAL_TZ).format("%H:%M %d/%m").to_string();
        match line {
            Line::Turn { n, from, to, window, hour_of_stay, tier_from_hour, amount, .. } => {
                let w = &self.windows[*window];
                if english {
                    format!(
                        "Turn {n} ({}–{}): hour {hour_of_stay} of the stay, {} window, tier from hour {tier_from_hour}: {}",
                        local(*from),
                        local(*to),
                        w.label,
                        amount.display(true)
                    )
                } else {
                    format!(
                        "Lượt {n} ({}–{}): giờ thứ {hour_of_stay} của lượt đỗ, khung {}, bậc từ giờ {tier_from_hour}: {}",
                        local(*from),
                        local(*to),
                        w.label,
                        amount.display(false)
                    )
                }
            }
            Line::BlockDiscount { window, occurrence_start, amount } => {
                let w = &self.windows[*window];
                let block = w.block_price.unwrap_or_default();
                let when = occurrence_start.format("%d/%m").to_string();
                if english {
                    format!(
                        "{} block {}–{} from {when} costs at most {}: {}",
                        w.label,
                        w.start_hhmm(),
                        w.end_hhmm(),
                        block.display(true),
                        amount.display(true)
                    )
                } else {
                    format!(
                        "Trọn gói {} {}–{} từ {when} tối đa {}: {}",
                        w.label,
                        w.start_hhmm(),
                        w.end_hhmm(),
                        block.display(false),
                        amount.display(false)
                    )
                }
            }
            Line::DailyCapDiscount { date, amount } => {
                let cap = self.daily_cap.unwrap_or_default();
                let d = date.format("%d/%m/%Y");
                if english {
                    format!("Daily cap for {d} is {}: {}", cap.display(true), amount.display(true))
                } else {
                    format!("Mức trần ngày {d} là {}: {}", cap.display(false), amount.display(false))
                }
            }
            Line::MinimumCharge { amount } => {
                let min = self.minimum_charge.unwrap_or_default();
                if english {
                    format!("Minimum charge per stay {}: {}", min.display(true), amount.display(true))
                } else {
                    format!("Phí tối thiểu mỗi lượt đỗ {}: {}", min.display(false), amount.display(false))
                }
            }
            Line::SmsSurcharge { turns, per_turn, amount } => {
                if english {
                    format!("SMS surcharge {} × {turns} turns: {}", per_turn.display(true), amount.display(true))
                } else {
                    format!("Phụ phí SMS {} × {turns} lượt: {}", per_turn.display(false), amount.display(false))
                }
            }
        }
    }
}

/// Merges a discount into the line for the same occurrence or day (turns arrive in order,
/// so only the last line of the same kind can match).
fn add_discount(discounts: &mut Vec<Line>, line: Line) {
    let merged =
        match (discounts.iter_mut().rev().find(|l| std::mem::discriminant(*l) == std::mem::discriminant(&line)), &line)
        {
            (
                Some(Line::BlockDiscount { window: w, occurrence_start: o, amount: a }),
                Line::BlockDiscount { window, occurrence_start, amount },
            ) if w == window && o == occurrence_start => {
                *a += *amount;
                true
            }
            (Some(Line::DailyCapDiscount { date: d, amount: a }), Line::DailyCapDiscount { date, amount })
                if d == date =>
            {
                *a += *amount;
                true
            }
            _ => false,
        };
    if !merged {
        discounts.push(line);
    }
}

/// What a scope is matched against.
#[derive(Debug, Clone, Copy)]
pub struct PointRef<'a> {
    /// Point code.
    pub code: &'a str,
    /// Street id.
    pub street_id: i64,
    /// District code.
    pub district_code: &'a str,
}

/// The tariff that prices `class` at `point` at instant `at`: the most specific scope in
/// force (publishing refuses overlaps, so there is at most one per scope).
pub fn resolve<'t>(
    tariffs: impl IntoIterator<Item = &'t Tariff>,
    point: &PointRef<'_>,
    class: VehicleClass,
    at: DateTime<Utc>,
) -> Option<&'t Tariff> {
    tariffs
        .into_iter()
        .filter(|t| t.classes.contains(&class) && t.in_force_at(at))
        .filter_map(|t| t.scope_rank(point).map(|r| (r, t)))
        .max_by_key(|(r, t)| (*r, t.id))
        .map(|(_, t)| t)
}

fn normalise_scope(s: &TariffScope) -> TariffScope {
    match s {
        TariffScope::District { district } => TariffScope::District { district: district.trim().to_uppercase() },
        TariffScope::Point { point } => TariffScope::Point { point: point.trim().to_uppercase() },
        other => other.clone(),
    }
}

fn window_from_spec(w: &WindowSpec) -> Result<Window, Invalid> {
    let label = super::city::validate_name("window label", &w.label)?;
    let bad_time = |s: &str| {
        bad(
            "invalid_windows",
            format!("Giờ \"{}\" của khung {label} không hợp lệ (HH:MM).", s.chars().take(10).collect::<String>()),
            format!("Time \"{}\" of window {label} is invalid (HH:MM).", s.chars().take(10).collect::<String>()),
        )
    };
    let start_min = parse_hhmm(&w.start, false).ok_or_else(|| bad_time(&w.start))?;
    let end_min = parse_hhmm(&w.end, true).ok_or_else(|| bad_time(&w.end))?;
    let len = (i64::from(end_min) - i64::from(start_min)).rem_euclid(i64::from(MINUTES_PER_DAY)) as u32;
    let len_min = if len == 0 { MINUTES_PER_DAY } else { len };
    let mut days = [w.days.is_empty(); 7];
    for d in &w.days {
        days[weekday_index(*d)] = true;
    }
    if w.tiers.is_empty() || w.tiers.len() > MAX_TIERS {
        return Err(bad(
            "invalid_tiers",
            format!("Khung {label} cần 1–{MAX_TIERS} bậc giá."),
            format!("Window {label} needs 1–{MAX_TIERS} tiers."),
        ));
    }
    if w.tiers[0].from_hour != 1 || w.tiers.windows(2).any(|p| p[1].from_hour <= p[0].from_hour) {
        return Err(bad(
            "invalid_tiers",
            format!("Bậc giá của khung {label} phải bắt đầu từ giờ 1 và tăng dần."),
            format!("Tiers of window {label} must start at hour 1 and ascend strictly."),
        ));
    }
    let tiers = w
        .tiers
        .iter()
        .map(|t| Ok(Tier { from_hour: t.from_hour, price: money("tier price", t.price)? }))
        .collect::<Result<Vec<_>, Invalid>>()?;
    let block_price = w.block_price.map(|v| money("block_price", v)).transpose()?;
    Ok(Window { label, days, start_min, len_min, tiers, block_price })
}

/// Every minute of the week must fall in exactly one window.
fn check_tiling(windows: &[Window]) -> Result<(), Invalid> {
    let mut owner = vec![u8::MAX; MINUTES_PER_WEEK];
    for (i, w) in windows.iter().enumerate() {
        for day in (0..7).filter(|d| w.days[*d]) {
            for m in 0..w.len_min {
                let at = (day * MINUTES_PER_DAY as usize + (w.start_min + m) as usize) % MINUTES_PER_WEEK;
                if owner[at] != u8::MAX {
                    let other = &windows[owner[at] as usize].label;
                    let when = format!("{} {}", weekday_name(at / 1440), hhmm((at % 1440) as u32));
                    return Err(bad(
                        "invalid_windows",
                        format!("Khung {} và {other} chồng nhau lúc {when}.", w.label),
                        format!("Windows {} and {other} overlap at {when}.", w.label),
                    ));
                }
                owner[at] = i as u8;
            }
        }
    }
    if let Some(at) = owner.iter().position(|o| *o == u8::MAX) {
        let when = format!("{} {}", weekday_name(at / 1440), hhmm((at % 1440) as u32));
        return Err(bad(
            "invalid_windows",
            format!("Các khung giờ bỏ trống lúc {when}: cần phủ mọi phút trong tuần."),
            format!("The windows leave a gap at {when}: they must cover every minute of the week."),
        ));
    }
    Ok(())
}
