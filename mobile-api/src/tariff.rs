//! Tariffs and quotes on the wire.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::VehicleClass;

/// Where a tariff applies. The most specific scope wins: point > street > district > city.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TariffScope {
    /// Every point of the city.
    City,
    /// Every point of a district.
    District {
        /// District code, e.g. `DD`.
        district: String,
    },
    /// Every point of a street.
    Street {
        /// Street id.
        street_id: i64,
    },
    /// One point.
    Point {
        /// Point code, e.g. `HK001`.
        point: String,
    },
}

/// A day of the week (local time, Asia/Ho_Chi_Minh).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Weekday {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

/// One price tier: from this hour of the stay on, each turn costs `price`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TierSpec {
    /// First hour of the stay (1-based) this price applies to. The first tier starts at 1;
    /// tiers ascend strictly.
    pub from_hour: u32,
    /// Price of one turn, whole VND.
    pub price: i64,
}

/// A time window of the week with its own rates, e.g. day 06:00–18:00.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// Shown to drivers, e.g. `Ban ngày` (day).
    pub label: String,
    /// Days on which the window starts; empty means every day. A window crossing midnight
    /// (18:00–06:00) belongs to the day it starts on.
    #[serde(default)]
    pub days: Vec<Weekday>,
    /// Local start, `HH:MM`.
    #[schema(example = "06:00")]
    pub start: String,
    /// Local end, `HH:MM` (`24:00` allowed); before `start` means it ends the next day; equal
    /// to `start` means 24 hours.
    #[schema(example = "18:00")]
    pub end: String,
    /// Hourly tiers by hour of stay.
    pub tiers: Vec<TierSpec>,
    /// Optional flat block: the most one occurrence of this window costs (e.g. overnight
    /// 18:00–06:00 for 150,000).
    #[serde(default)]
    pub block_price: Option<i64>,
}

/// Body of `POST /v1/admin/tariffs`: a tariff to publish. Published tariffs never change;
/// only their end of validity can be brought forward (retire).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TariffSpec {
    /// Name, e.g. `QĐ 44/2017 – Đống Đa – ô tô đến 9 chỗ`.
    pub name: String,
    /// Where it applies.
    pub scope: TariffScope,
    /// Vehicle classes it prices (at least one).
    pub vehicle_classes: Vec<VehicleClass>,
    /// In force from this instant.
    pub valid_from: DateTime<Utc>,
    /// In force until this instant (exclusive); none means until retired.
    #[serde(default)]
    pub valid_until: Option<DateTime<Utc>>,
    /// Length of one turn in minutes (default 60). Stays are bought in whole turns.
    #[serde(default)]
    pub turn_minutes: Option<u32>,
    /// Windows covering every minute of the week exactly once.
    pub windows: Vec<WindowSpec>,
    /// Most charged per local calendar day (turns count to the day they start).
    #[serde(default)]
    pub daily_cap: Option<i64>,
    /// Least charged for a stay.
    #[serde(default)]
    pub minimum_charge: Option<i64>,
    /// Longest stay that can be bought, minutes.
    #[serde(default)]
    pub max_stay_minutes: Option<u32>,
    /// Minutes after expiry before a vehicle counts as overstaying (default 10).
    #[serde(default)]
    pub grace_minutes: Option<u32>,
    /// Extra per turn bought by SMS.
    #[serde(default)]
    pub sms_surcharge_per_turn: Option<i64>,
}

/// Whether a tariff is in force now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TariffStatus {
    /// In force now.
    Active,
    /// Starts in the future.
    Scheduled,
    /// Its validity has ended (or it was retired).
    Ended,
}

/// A published tariff.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TariffView {
    /// Tariff id: the version a session records.
    pub id: i64,
    /// Status now.
    pub status: TariffStatus,
    /// When it was published.
    pub published_at: DateTime<Utc>,
    /// The definition, with defaults filled in.
    pub spec: TariffSpec,
}

/// Query of `GET /v1/admin/tariffs`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TariffListQuery {
    /// Only tariffs whose validity has not ended (default false: all).
    pub current_only: Option<bool>,
}

/// How a stay is paid for (some channels carry a surcharge).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// The app (wallet or card).
    #[default]
    App,
    /// SMS charged to the phone balance.
    Sms,
    /// Paid to a warden.
    Warden,
}

/// Body of `POST /v1/quotes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuoteRequest {
    /// Point code.
    pub point_code: String,
    /// Vehicle class.
    pub vehicle_class: VehicleClass,
    /// Start of the stay; default now.
    #[serde(default)]
    pub start: Option<DateTime<Utc>>,
    /// Minutes wanted (rounded up to whole turns). Give this or `amount`.
    #[serde(default)]
    pub minutes: Option<u32>,
    /// Or: a budget in VND; the answer is the longest stay it buys. Give this or `minutes`.
    #[serde(default)]
    pub amount: Option<i64>,
    /// Payment channel (default `app`).
    #[serde(default)]
    pub channel: Option<Channel>,
}

/// What a line of a quote is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QuoteLineKind {
    /// One turn at its tier price.
    Turn,
    /// Reduction so one window occurrence costs no more than its block price.
    BlockDiscount,
    /// Reduction so one local day costs no more than the daily cap.
    DailyCapDiscount,
    /// Top-up to the minimum charge (negative on an extension when already paid).
    MinimumCharge,
    /// Channel surcharge.
    SmsSurcharge,
}

/// One line of a quote; the lines sum to the total.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QuoteLine {
    /// What the line is.
    pub kind: QuoteLineKind,
    /// Amount in VND (negative for discounts).
    pub amount: i64,
    /// Why this amount applies, in the caller's language.
    pub description: String,
    /// Turn number within the stay (1-based), for turn lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub turn: Option<u32>,
    /// Hour of the stay the turn falls in, for turn lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hour_of_stay: Option<u32>,
    /// Window label, for turn and block lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// Start of the turn.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<DateTime<Utc>>,
    /// End of the turn.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<DateTime<Utc>>,
    /// Local day, for daily-cap lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date: Option<NaiveDate>,
}

/// A priced stay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QuoteView {
    /// The tariff (version) that priced it.
    pub tariff_id: i64,
    /// Its name.
    pub tariff_name: String,
    /// Point code.
    pub point_code: String,
    /// Vehicle class.
    pub vehicle_class: VehicleClass,
    /// Channel priced for.
    pub channel: Channel,
    /// Start of the stay.
    pub start: DateTime<Utc>,
    /// Paid until (start + turns × turn length).
    pub end: DateTime<Utc>,
    /// Whole turns bought.
    pub turns: u32,
    /// Minutes per turn.
    pub turn_minutes: u32,
    /// Total in whole VND.
    pub total: i64,
    /// Always `VND`.
    pub currency: String,
    /// Line-by-line breakdown; sums to `total`.
    pub lines: Vec<QuoteLine>,
}

/// One tier as an app shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TierView {
    /// First hour of the stay.
    pub from_hour: u32,
    /// Last hour of the stay, if the tier ends.
    pub to_hour: Option<u32>,
    /// Price per turn, VND.
    pub price: i64,
}

/// A window as an app shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WindowView {
    /// Label.
    pub label: String,
    /// Local start `HH:MM`.
    pub start: String,
    /// Local end `HH:MM`.
    pub end: String,
    /// Tiers.
    pub tiers: Vec<TierView>,
    /// Flat block price of one occurrence, if any.
    pub block_price: Option<i64>,
}

/// The prices of one vehicle class at a point on a day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClassPrices {
    /// Vehicle class.
    pub vehicle_class: VehicleClass,
    /// Tariff id.
    pub tariff_id: i64,
    /// Tariff name.
    pub tariff_name: String,
    /// Minutes per turn.
    pub turn_minutes: u32,
    /// Windows starting that day.
    pub windows: Vec<WindowView>,
    /// Daily cap.
    pub daily_cap: Option<i64>,
    /// Minimum charge.
    pub minimum_charge: Option<i64>,
    /// Longest stay, minutes.
    pub max_stay_minutes: Option<u32>,
    /// Grace period, minutes.
    pub grace_minutes: u32,
    /// SMS surcharge per turn.
    pub sms_surcharge_per_turn: Option<i64>,
}

/// Answer of `GET /v1/points/{code}/tariff`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PointTariffView {
    /// Point code.
    pub point_code: String,
    /// Local date the prices are for.
    pub date: NaiveDate,
    /// One entry per allowed vehicle class that has a tariff.
    pub classes: Vec<ClassPrices>,
}

/// Query of `GET /v1/points/{code}/tariff`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PointTariffQuery {
    /// Local date (default today in Hanoi).
    pub date: Option<NaiveDate>,
    /// Only this class.
    pub vehicle_class: Option<VehicleClass>,
}

/// Body of `POST /v1/admin/tariffs/{id}/retire`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetireTariff {
    /// When the tariff stops being in force (default now; not in the past).
    #[serde(default)]
    pub at: Option<DateTime<Utc>>,
}
