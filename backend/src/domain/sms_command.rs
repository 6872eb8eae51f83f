//! The SMS channel's message syntax (iParking's most used channel in the pilot):
//! `IP25HK 001 30A12345` buys one turn at 25,000 VND at point HK001 for plate 30A12345.
//!
//! The keyword is `IP` + the price in thousands of VND + the district code; then the point
//! number and the plate (which may be written with separators, in one or several words).
//! A trailing `EN` asks for the reply in English.

use super::{city::Invalid, money::Vnd, plate::Plate};

/// A parsed SMS purchase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsCommand {
    /// The price the keyword carries (what the carrier charges).
    pub price: Vnd,
    /// The point code (district code + number).
    pub point_code: String,
    /// The plate.
    pub plate: Plate,
    /// Reply in English.
    pub english: bool,
}

/// Why a message is not a purchase; the reply explains it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsSyntaxError {
    /// Vietnamese reply.
    pub vi: String,
    /// English reply.
    pub en: String,
}

const HOW: (&str, &str) = (
    "Cú pháp: IP<giá nghìn đồng><mã quận> <số điểm> <biển số>, ví dụ IP25HK 001 30A12345.",
    "Format: IP<price in thousands><district> <point number> <plate>, e.g. IP25HK 001 30A12345.",
);

fn syntax(vi: &str, en: &str) -> SmsSyntaxError {
    SmsSyntaxError { vi: format!("{vi} {}", HOW.0), en: format!("{en} {}", HOW.1) }
}

impl SmsCommand {
    /// Parses a message text.
    pub fn parse(text: &str) -> Result<SmsCommand, SmsSyntaxError> {
        if text.len() > 160 {
            return Err(syntax("Tin nhắn quá dài.", "The message is too long."));
        }
        let mut words: Vec<String> = text.split_whitespace().map(str::to_uppercase).collect();
        let english = words.last().is_some_and(|w| w == "EN");
        if english {
            words.pop();
        }
        let [keyword, number, plate_words @ ..] = words.as_slice() else {
            return Err(syntax("Thiếu nội dung.", "Something is missing."));
        };
        let rest = keyword.strip_prefix("IP").ok_or_else(|| syntax("Sai từ khóa.", "Wrong keyword."))?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let district = &rest[digits.len()..];
        let thousands: i64 =
            digits.parse().map_err(|_| syntax("Thiếu giá trong từ khóa.", "The keyword lacks the price."))?;
        if thousands == 0 || thousands > 1_000 {
            return Err(syntax("Giá trong từ khóa không hợp lệ.", "The price in the keyword is invalid."));
        }
        if super::city::validate_district_code(district).is_err() {
            return Err(syntax("Sai mã quận trong từ khóa.", "Wrong district code in the keyword."));
        }
        if !(1..=6).contains(&number.len()) || !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err(syntax("Sai số điểm đỗ.", "Wrong point number."));
        }
        let point_code = format!("{district}{:0>3}", number);
        if plate_words.is_empty() {
            return Err(syntax("Thiếu biển số.", "The plate is missing."));
        }
        let plate = Plate::parse(&plate_words.concat()).map_err(|e: Invalid| SmsSyntaxError { vi: e.vi, en: e.en })?;
        Ok(SmsCommand { price: Vnd(thousands * 1_000), point_code, plate, english })
    }

    /// The message that buys one turn at `price` for `plate` at the point `point_code` of
    /// district `district_code`, e.g. `IP35HK 001 30A12345`, when the syntax can say that
    /// price (whole thousands from 1,000 to 1,000,000 VND); `None` otherwise (a free turn, an
    /// odd amount). The text is parsed back, so a reply never suggests a message the parser
    /// refuses.
    pub fn message_for(price: Vnd, district_code: &str, point_code: &str, plate: &Plate) -> Option<String> {
        let number = point_code.strip_prefix(district_code)?;
        if price.get() <= 0 || price.get() % 1_000 != 0 {
            return None;
        }
        let text = format!("IP{}{district_code} {number} {}", price.get() / 1_000, plate.as_str());
        let back = SmsCommand::parse(&text).ok()?;
        (back.price == price && back.point_code == point_code && back.plate == *plate && !back.english).then_some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_pilot_syntax() {
        let c = SmsCommand::parse("IP25HK 001 30A12345").unwrap();
        assert_eq!(
            (c.price, c.point_code.as_str(), c.plate.as_str(), c.english),
            (Vnd(25_000), "HK001", "30A12345", false)
        );
        let c = SmsCommand::parse("  ip35hbt 3 29h1-234.56 en ").unwrap();
        assert_eq!(
            (c.price, c.point_code.as_str(), c.plate.as_str(), c.english),
            (Vnd(35_000), "HBT003", "29H123456", true)
        );
        let c = SmsCommand::parse("IP25DD 002 30A 123.45").unwrap();
        assert_eq!(c.plate.as_str(), "30A12345");
    }

    #[test]
    fn suggests_only_messages_it_accepts() {
        let plate = Plate::parse("30A-123.45").unwrap();
        let msg =
            |price: i64, district: &str, point: &str| SmsCommand::message_for(Vnd(price), district, point, &plate);
        assert_eq!(msg(35_000, "HK", "HK001").as_deref(), Some("IP35HK 001 30A12345"));
        assert_eq!(msg(1_000_000, "HBT", "HBT0042").as_deref(), Some("IP1000HBT 0042 30A12345"));
        // A free turn, an amount the keyword cannot carry, a point of another district: no
        // message (the parser would refuse `IP0…`, `IP1001…`, and cannot say 25,500).
        for (price, district, point) in
            [(0, "HK", "HK001"), (-1_000, "HK", "HK001"), (25_500, "HK", "HK001"), (1_001_000, "HK", "HK001")]
        {
            assert_eq!(msg(price, district, point), None, "{price} {point}");
        }
        assert_eq!(msg(25_000, "BD", "HK001"), None);
        for price in (0..=1_002).map(|k| k * 1_000).chain([500, 25_500]) {
            if let Some(text) = msg(price, "HK", "HK001") {
                let c = SmsCommand::parse(&text).unwrap();
                assert_eq!((c.price, c.point_code.as_str()), (Vnd(price), "HK001"));
            }
        }
    }

    #[test]
    fn explains_mistakes() {
        for (text, why) in [
            ("", "missing"),
            ("HELLO", "missing"),
            ("XX25HK 001 30A12345", "keyword"),
            ("IPHK 001 30A12345", "price"),
            ("IP0HK 001 30A12345", "price"),
            ("IP25 001 30A12345", "district"),
            ("IP25HK A01 30A12345", "point number"),
            ("IP25HK 001", "missing"),
            ("IP25HK 001 ABC", "Plate"),
        ] {
            let e = SmsCommand::parse(text).unwrap_err();
            assert!(e.en.contains(why), "{text}: {}", e.en);
            assert!(!e.vi.is_empty());
        }
    }
}
