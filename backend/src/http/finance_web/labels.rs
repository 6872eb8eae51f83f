//! What the pages write: amounts, months, dates, and the words for the service's codes, in
//! Vietnamese or English.

use chrono::{DateTime, Datelike, Months, NaiveDate, Utc};
use iparking_mobile_api::{RevenueChannel, StaffRole};

use crate::domain::tariff::LOCAL_TZ;

/// A whole number with `.` between thousands: `1250000` → `1.250.000`.
pub fn group_thousands(v: i64) -> String {
    crate::domain::money::group_digits(v, '.')
}

/// An amount of VND: `1.250.000 ₫`.
pub fn money(v: i64) -> String {
    format!("{} ₫", group_thousands(v))
}

/// An optional amount (`—` when there is none).
pub(super) fn money_opt(v: Option<i64>) -> String {
    v.map_or_else(|| "—".to_owned(), money)
}

/// A calendar month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Month {
    first: NaiveDate,
}

impl Month {
    /// From `YYYY-MM`.
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 7 || b[4] != b'-' || !b.iter().enumerate().all(|(i, c)| i == 4 || c.is_ascii_digit()) {
            return None;
        }
        let year: i32 = s[..4].parse().ok()?;
        let month: u32 = s[5..].parse().ok()?;
        if year < 1970 {
            return None;
        }
        NaiveDate::from_ymd_opt(year, month, 1).map(|first| Self { first })
    }

    /// The month of a day.
    pub fn of(day: NaiveDate) -> Self {
        Self { first: day.with_day(1).unwrap_or(day) }
    }

    /// First day.
    pub fn first(self) -> NaiveDate {
        self.first
    }

    /// Last day.
    pub fn last(self) -> NaiveDate {
        self.next().first.pred_opt().unwrap_or(self.first)
    }

    /// The month before.
    pub fn prev(self) -> Self {
        Self { first: self.first.checked_sub_months(Months::new(1)).unwrap_or(self.first) }
    }

    /// The month after.
    pub fn next(self) -> Self {
        Self { first: self.first.checked_add_months(Months::new(1)).unwrap_or(self.first) }
    }

    /// `YYYY-MM`.
    pub fn key(self) -> String {
        self.first.format("%Y-%m").to_string()
    }

    /// `tháng 11/2026` or `November 2026`.
    pub fn label(self, lang: Lang) -> String {
        match lang {
            Lang::Vi => format!("tháng {}", self.first.format("%m/%Y")),
            Lang::En => self.first.format("%B %Y").to_string(),
        }
    }
}

/// The page language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// Vietnamese (the default).
    Vi,
    /// English.
    En,
}

impl Lang {
    /// The text in this language.
    pub fn t(self, vi: &'static str, en: &'static str) -> &'static str {
        match self {
            Lang::Vi => vi,
            Lang::En => en,
        }
    }

    /// `vi` or `en`.
    pub fn code(self) -> &'static str {
        self.t("vi", "en")
    }

    /// From `vi` or `en`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "vi" => Some(Lang::Vi),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// A day: `17/11/2026` or `2026-11-17`.
    pub fn day(self, d: NaiveDate) -> String {
        d.format(self.t("%d/%m/%Y", "%Y-%m-%d")).to_string()
    }

    /// A moment, in Hanoi time.
    pub fn time(self, t: DateTime<Utc>) -> String {
        t.with_timezone(&LOCAL_TZ).format(self.t("%H:%M %d/%m/%Y", "%Y-%m-%d %H:%M")).to_string()
    }
}

pub(super) fn channel_label(c: RevenueChannel, lang: Lang) -> &'static str {
    match c {
        RevenueChannel::Sms => lang.t("SMS (tài khoản điện thoại)", "SMS (phone balance)"),
        RevenueChannel::Wallet => lang.t("Ví iParking", "iParking wallet"),
        RevenueChannel::Card => lang.t("Thẻ (tài xế trả)", "Card (paid by driver)"),
        RevenueChannel::WardenCash => lang.t("Tiền mặt (thanh toán hộ)", "Cash via warden"),
        RevenueChannel::WardenFloat => {
            lang.t("Tài khoản nhân viên (thanh toán hộ)", "Warden's float (paid on the driver's behalf)")
        }
        RevenueChannel::Adjustment => lang.t("Điều chỉnh", "Adjustment"),
    }
}

pub(super) fn section_label(s: &str, lang: Lang) -> String {
    match s {
        "processor" => lang.t("Cổng thanh toán thẻ", "Card processor"),
        "carrier" => lang.t("Nhà mạng", "Carriers"),
        "cash" => lang.t("Tiền mặt", "Cash"),
        "ledger" => lang.t("Sổ cái", "Ledger"),
        other => return other.to_owned(),
    }
    .to_owned()
}

pub(super) fn kind_label(k: &str, lang: Lang) -> String {
    match k {
        "missing_at_processor" => lang.t("Không có ở cổng thanh toán", "Missing at processor"),
        "missing_in_ledger" => lang.t("Không có trong sổ cái", "Missing in ledger"),
        "amount_mismatch" => lang.t("Lệch số tiền", "Amount mismatch"),
        "payout_failed" => lang.t("Chuyển tiền về thất bại", "Payout failed"),
        "missing_in_settlement" => lang.t("Nhà mạng chưa đối soát", "Missing in settlement"),
        "settlement_missing" => lang.t("Thiếu file đối soát nhà mạng", "Settlement file missing"),
        "cash_difference" => lang.t("Chênh lệch tiền mặt ca trực", "Shift cash difference"),
        "warden_flag" => lang.t("Cảnh báo từ thiết bị cầm tay", "Handheld flag"),
        "unbalanced_transaction" => lang.t("Bút toán không cân", "Unbalanced transaction"),
        "balance_mismatch" => lang.t("Số dư lệch bút toán", "Balance mismatch"),
        "street_revenue_mismatch" => lang.t("Doanh thu tuyến phố lệch", "Street revenue mismatch"),
        other => return other.to_owned(),
    }
    .to_owned()
}

pub(super) fn status_label(s: &str, lang: Lang) -> String {
    match s {
        "open" => lang.t("Chưa xử lý", "Open"),
        "resolved" => lang.t("Đã xử lý", "Resolved"),
        "cleared" => lang.t("Đã tự khớp", "Cleared"),
        "closed" => lang.t("Đã khóa sổ", "Closed"),
        other => return other.to_owned(),
    }
    .to_owned()
}

pub(super) fn role_label(r: StaffRole, lang: Lang) -> &'static str {
    match r {
        StaffRole::Finance => lang.t("Tài chính", "Finance"),
        StaffRole::Admin => lang.t("Quản trị (chỉ xem)", "Admin (read only)"),
        StaffRole::Warden => "warden",
        StaffRole::Inspector => "inspector",
        StaffRole::Data => lang.t("Dữ liệu mở", "Open data"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_groups_thousands_with_dots() {
        assert_eq!(money(1_250_000), "1.250.000 ₫");
        assert_eq!(money(0), "0 ₫");
        assert_eq!(money(999), "999 ₫");
        assert_eq!(money(1_000), "1.000 ₫");
        assert_eq!(money(-5_000), "-5.000 ₫");
        assert_eq!(money(2_000_000_000), "2.000.000.000 ₫");
        assert_eq!(group_thousands(i64::MIN), "-9.223.372.036.854.775.808");
        assert_eq!(group_thousands(123_456), "123.456");
        assert_eq!(money_opt(None), "—");
    }

    #[test]
    fn months_parse_and_step() {
        let m = Month::parse("2026-11").unwrap();
        assert_eq!((m.first().to_string(), m.last().to_string()), ("2026-11-01".into(), "2026-11-30".into()));
        assert_eq!(m.next().key(), "2026-12");
        assert_eq!(m.next().next().key(), "2027-01");
        assert_eq!(Month::parse("2024-02").unwrap().last().to_string(), "2024-02-29");
        assert_eq!(Month::parse("2026-01").unwrap().prev().key(), "2025-12");
        for bad in ["2026-13", "2026-00", "2026-1", "26-11", "2026/11", "2026-11-01", "+202-11", ""] {
            assert_eq!(Month::parse(bad), None, "{bad}");
        }
        assert_eq!(Month::of(NaiveDate::from_ymd_opt(2026, 11, 17).unwrap()).key(), "2026-11");
        assert_eq!(m.label(Lang::Vi), "tháng 11/2026");
        assert_eq!(m.label(Lang::En), "November 2026");
    }
}
