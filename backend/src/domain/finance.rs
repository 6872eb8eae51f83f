//! Finance's pure parts: local days and months, CSV with a BOM, the carriers' settlement
//! files, and the matching rules of reconciliation.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};

use super::tariff::LOCAL_TZ;

/// The longest report range: 366 days between `from` and `to`.
pub const MAX_RANGE_DAYS: i64 = 366;

/// A range of local days, both inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayRange {
    /// First day.
    pub from: NaiveDate,
    /// Last day.
    pub to: NaiveDate,
}

impl DayRange {
    /// The first instant of `from`, local.
    pub fn start(&self) -> DateTime<Utc> {
        local_midnight(self.from)
    }

    /// The first instant after `to`, local.
    pub fn end(&self) -> DateTime<Utc> {
        local_midnight(self.to + Duration::days(1))
    }

    /// `YYYY-MM-DD` of `from`.
    pub fn from_str(&self) -> String {
        self.from.format("%Y-%m-%d").to_string()
    }

    /// `YYYY-MM-DD` of `to`.
    pub fn to_str(&self) -> String {
        self.to.format("%Y-%m-%d").to_string()
    }
}

stored_names! {
    /// Where a reconciliation discrepancy stands (stored as `discrepancies.status`).
    pub enum DiscrepancyStatus {
        /// Found, not explained yet: it holds the period open.
        Open => "open",
        /// Explained by a person, with a note (and possibly an adjustment).
        Resolved => "resolved",
        /// Gone by itself: a later import or run matched it.
        Cleared => "cleared",
    }
}

stored_names! {
    /// Where a driver's refund request stands (stored as `refund_requests.status`).
    pub enum RequestStatus {
        /// Waiting for finance.
        Pending => "pending",
        /// Approved and paid back.
        Approved => "approved",
        /// Refused, with a note.
        Rejected => "rejected",
    }
}

stored_names! {
    /// What a driver's refund request is for (stored as `refund_requests.kind`).
    pub enum RequestKind {
        /// The whole wallet balance (closing the account).
        WalletBalance => "wallet_balance",
        /// One session's payment.
        Session => "session",
    }
}

/// Local midnight starting `day`, in UTC.
pub fn local_midnight(day: NaiveDate) -> DateTime<Utc> {
    let naive = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    LOCAL_TZ
        .from_local_datetime(&naive)
        .earliest()
        .map_or_else(|| Utc.from_utc_datetime(&naive), |t| t.with_timezone(&Utc))
}

/// The local day of an instant.
pub fn local_day(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&LOCAL_TZ).date_naive()
}

/// `YYYY-MM` of a day.
pub fn month_of(day: NaiveDate) -> String {
    format!("{:04}-{:02}", day.year(), day.month())
}

/// Whether `s` is digits and dashes laid out as `shape` (`9999-99`): no sign, no space.
fn shaped(s: &str, shape: &str) -> bool {
    s.len() == shape.len()
        && s.bytes().zip(shape.bytes()).all(|(c, k)| if k == b'9' { c.is_ascii_digit() } else { c == k })
}

/// A strict `YYYY-MM-DD` (a day that exists).
pub fn parse_day(s: &str) -> Option<NaiveDate> {
    if !shaped(s, "9999-99-99") {
        return None;
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

/// A strict `YYYY-MM`: its days.
pub fn parse_month(s: &str) -> Option<DayRange> {
    if !shaped(s, "9999-99") {
        return None;
    }
    let (y, m) = s.split_once('-')?;
    let first = NaiveDate::from_ymd_opt(y.parse().ok()?, m.parse().ok()?, 1)?;
    let next = if first.month() == 12 {
        NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)?
    } else {
        NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)?
    };
    Some(DayRange { from: first, to: next - Duration::days(1) })
}

/// Why a range was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeError {
    /// `to` before `from`.
    Reversed,
    /// More than [`MAX_RANGE_DAYS`].
    TooLong,
}

/// Checks a report range.
pub fn check_range(from: NaiveDate, to: NaiveDate) -> Result<DayRange, RangeError> {
    if to < from {
        return Err(RangeError::Reversed);
    }
    if (to - from).num_days() > MAX_RANGE_DAYS {
        return Err(RangeError::TooLong);
    }
    Ok(DayRange { from, to })
}

/// The carrier's share of an SMS turn, as the ledger books it (rounded to the đồng).
pub fn carrier_share(gross: i64, percent: u32) -> i64 {
    (gross * i64::from(percent) + 50) / 100
}

/// A CSV document that spreadsheet software opens as UTF-8: it starts with the BOM.
#[derive(Debug, Default)]
pub struct Csv {
    out: String,
}

impl Csv {
    /// A document with its header row.
    pub fn new(header: &[&str]) -> Self {
        let mut c = Csv { out: String::from('\u{FEFF}') };
        c.row(header.iter().copied());
        c
    }

    /// Appends a row; fields are quoted (RFC 4180) when they need it.
    pub fn row<I, S>(&mut self, fields: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut first = true;
        for f in fields {
            if !first {
                self.out.push(',');
            }
            first = false;
            let f = f.as_ref();
            // A leading = + - @ would be run as a formula by spreadsheets: quote-prefix it.
            let f = if f.starts_with(['=', '+', '@']) || (f.starts_with('-') && f.parse::<i64>().is_err()) {
                format!("'{f}")
            } else {
                f.to_owned()
            };
            if f.contains([',', '"', '\n', '\r']) {
                self.out.push('"');
                self.out.push_str(&f.replace('"', "\"\""));
                self.out.push('"');
            } else {
                self.out.push_str(&f);
            }
        }
        self.out.push_str("\r\n");
    }

    /// The document.
    pub fn finish(self) -> String {
        self.out
    }
}

/// One validated line of a settlement file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementLine {
    /// Line number (header = 1).
    pub line: i64,
    /// Message id.
    pub message_id: String,
    /// When the carrier received it.
    pub received_at: DateTime<Utc>,
    /// Gross.
    pub gross: i64,
    /// Share.
    pub share: i64,
    /// Net.
    pub net: i64,
}

/// A problem on one line of a settlement file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LineError {
    /// Line number (header = 1).
    pub line: u64,
    /// Column name, when one column is at fault.
    pub column: Option<&'static str>,
    /// What is wrong (English; the code says it in both languages).
    pub message: String,
}

/// The settlement file's columns.
pub const SETTLEMENT_HEADER: [&str; 5] = ["message_id", "received_at", "gross", "share", "net"];

/// At most this many problems are reported.
const MAX_ERRORS: usize = 100;

/// Parses and validates a settlement file for `month`. Every line is checked; any problem
/// refuses the whole file.
pub fn parse_settlement(bytes: &[u8], month: &DayRange) -> Result<Vec<SettlementLine>, Vec<LineError>> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut errors = Vec::new();
    let push = |errors: &mut Vec<LineError>, line: u64, column: Option<&'static str>, message: String| {
        if errors.len() < MAX_ERRORS {
            errors.push(LineError { line, column, message });
        }
    };
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(bytes);
    let mut records = reader.byte_records();
    match records.next() {
        None => {
            return Err(vec![LineError {
                line: 1,
                column: None,
                message: "the file is empty: a header row is needed".into(),
            }]);
        }
        Some(Err(e)) => return Err(vec![LineError { line: 1, column: None, message: format!("unreadable: {e}") }]),
        Some(Ok(h)) => {
            let names: Vec<String> = h.iter().map(|f| String::from_utf8_lossy(f).trim().to_ascii_lowercase()).collect();
            if names != SETTLEMENT_HEADER {
                return Err(vec![LineError {
                    line: 1,
                    column: None,
                    message: format!("the header must be `{}`", SETTLEMENT_HEADER.join(",")),
                }]);
            }
        }
    }
    let (start, end) = (month.start(), month.end());
    let mut seen = std::collections::HashMap::new();
    let mut lines = Vec::new();
    for (i, rec) in records.enumerate() {
        let line = i as u64 + 2;
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                push(&mut errors, line, None, format!("unreadable: {e}"));
                continue;
            }
        };
        if rec.iter().all(|f| f.iter().all(u8::is_ascii_whitespace)) {
            continue;
        }
        if rec.len() != SETTLEMENT_HEADER.len() {
            push(&mut errors, line, None, format!("expected 5 fields, found {}", rec.len()));
            continue;
        }
        let field = |k: usize| std::str::from_utf8(&rec[k]).map(str::trim);
        let mut ok = true;
        let message_id = match field(0) {
            Ok(m) if (1..=128).contains(&m.len()) && !m.chars().any(char::is_control) => m.to_owned(),
            _ => {
                push(&mut errors, line, Some("message_id"), "1–128 characters needed".into());
                ok = false;
                String::new()
            }
        };
        let received_at = match field(1).ok().and_then(|s| DateTime::parse_from_rfc3339(s).ok()) {
            Some(t) => {
                let t = t.with_timezone(&Utc);
                if t < start || t >= end {
                    push(&mut errors, line, Some("received_at"), "outside the month settled".into());
                    ok = false;
                }
                t
            }
            None => {
                push(&mut errors, line, Some("received_at"), "an RFC 3339 time is needed".into());
                ok = false;
                start
            }
        };
        let mut amount = |k: usize, name: &'static str, min: i64| -> i64 {
            match field(k).ok().and_then(|s| s.parse::<i64>().ok()) {
                Some(v) if v >= min && v <= 1_000_000_000 => v,
                _ => {
                    push(&mut errors, line, Some(name), format!("a whole number of đồng ≥ {min} is needed"));
                    ok = false;
                    0
                }
            }
        };
        let gross = amount(2, "gross", 1);
        let share = amount(3, "share", 0);
        let net = amount(4, "net", 0);
        if ok && net != gross - share {
            push(&mut errors, line, Some("net"), format!("net must be gross − share = {}", gross - share));
            ok = false;
        }
        if ok && share > gross {
            push(&mut errors, line, Some("share"), "the share exceeds the gross".into());
            ok = false;
        }
        if !message_id.is_empty()
            && let Some(first) = seen.insert(message_id.clone(), line)
        {
            push(&mut errors, line, Some("message_id"), format!("duplicate of line {first}"));
            ok = false;
        }
        if ok {
            lines.push(SettlementLine { line: line as i64, message_id, received_at, gross, share, net });
        }
    }
    if errors.is_empty() { Ok(lines) } else { Err(errors) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_days_and_months() {
        let nov = parse_month("2026-11").unwrap();
        assert_eq!(nov.from, NaiveDate::from_ymd_opt(2026, 11, 1).unwrap());
        assert_eq!(nov.to, NaiveDate::from_ymd_opt(2026, 11, 30).unwrap());
        assert_eq!(nov.start().to_rfc3339(), "2026-10-31T17:00:00+00:00");
        assert_eq!(nov.end().to_rfc3339(), "2026-11-30T17:00:00+00:00");
        let dec = parse_month("2026-12").unwrap();
        assert_eq!(dec.to, NaiveDate::from_ymd_opt(2026, 12, 31).unwrap());
        for bad in ["2026-13", "2026-1", "26-11", "2026/11", "", "2026-11-01"] {
            assert!(parse_month(bad).is_none(), "{bad}");
        }
        assert!(parse_day("2026-02-30").is_none());
        assert!(parse_day("2026-2-3").is_none());
        let late = Utc.with_ymd_and_hms(2026, 11, 30, 16, 59, 59).unwrap();
        assert_eq!(local_day(late), NaiveDate::from_ymd_opt(2026, 11, 30).unwrap());
        assert_eq!(local_day(late + Duration::seconds(1)), NaiveDate::from_ymd_opt(2026, 12, 1).unwrap());
        let d = |s| parse_day(s).unwrap();
        assert_eq!(check_range(d("2026-01-02"), d("2026-01-01")), Err(RangeError::Reversed));
        assert!(check_range(d("2026-01-01"), d("2027-01-02")).is_ok(), "366 days after");
        assert_eq!(check_range(d("2026-01-01"), d("2027-01-03")), Err(RangeError::TooLong));
    }

    #[test]
    fn csv_has_a_bom_and_quotes() {
        let mut c = Csv::new(&["street", "gross"]);
        c.row(["Lý Thường Kiệt, đoạn 1", "1000"]);
        c.row(["=HYPERLINK(\"x\")", "-5"]);
        let s = c.finish();
        assert!(s.as_bytes().starts_with(b"\xEF\xBB\xBF"));
        assert_eq!(
            s.trim_start_matches('\u{FEFF}'),
            "street,gross\r\n\"Lý Thường Kiệt, đoạn 1\",1000\r\n\"'=HYPERLINK(\"\"x\"\")\",-5\r\n"
        );
    }

    #[test]
    fn settlement_lines_are_validated_one_by_one() {
        let nov = parse_month("2026-11").unwrap();
        let good = "\u{FEFF}message_id,received_at,gross,share,net\n\
                    m1,2026-11-03T08:15:00+07:00,25000,2500,22500\n\
                    m2,2026-11-30T23:59:00+07:00,25000,2500,22500\n";
        let lines = parse_settlement(good.as_bytes(), &nov).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].line, 3);
        assert_eq!(lines[0].net, 22_500);
        let bad = "message_id,received_at,gross,share,net\n\
                   m1,2026-11-03T08:15:00+07:00,25000,2500,22000\n\
                   m1,2026-11-04T08:15:00+07:00,25000,2500,22500\n\
                   m3,2026-12-01T00:00:00+07:00,25000,2500,22500\n\
                   m4,yesterday,abc,2500,22500\n\
                   m5,2026-11-04T08:15:00+07:00,25000\n";
        let errors = parse_settlement(bad.as_bytes(), &nov).unwrap_err();
        let at: Vec<(u64, Option<&str>)> = errors.iter().map(|e| (e.line, e.column)).collect();
        assert_eq!(
            at,
            [
                (2, Some("net")),
                (3, Some("message_id")),
                (4, Some("received_at")),
                (5, Some("received_at")),
                (5, Some("gross")),
                (6, None)
            ]
        );
        let header = parse_settlement(b"id,when,amount\n", &nov).unwrap_err();
        assert_eq!(header[0].line, 1);
        assert!(parse_settlement(b"", &nov).is_err());
        assert_eq!(parse_settlement(b"message_id,received_at,gross,share,net\n", &nov).unwrap(), vec![]);
    }

    #[test]
    fn carrier_share_rounds_like_the_ledger() {
        assert_eq!(carrier_share(25_000, 10), 2_500);
        assert_eq!(carrier_share(25_005, 10), 2_501);
        assert_eq!(carrier_share(25_004, 10), 2_500);
    }
}
