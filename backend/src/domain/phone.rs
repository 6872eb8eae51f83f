//! Vietnamese mobile numbers in E.164 (`+84…`). A phone number is personal data: never log
//! one; [`Phone::masked`] is what may appear in support views.

use super::city::Invalid;

/// A normalised Vietnamese mobile number, `+84` and 9 digits.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Phone(String);

impl std::fmt::Debug for Phone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Phone({})", self.masked())
    }
}

impl Phone {
    /// Parses `0912 345 678`, `84912345678`, `+84 91 234 5678` and the like.
    pub fn parse(input: &str) -> Result<Phone, Invalid> {
        let bad = || {
            Invalid::new(
                "invalid_phone",
                "Số điện thoại không hợp lệ: cần số di động Việt Nam, ví dụ 0912 345 678.",
                "Invalid phone number: a Vietnamese mobile number is needed, e.g. 0912 345 678.",
            )
        };
        // The grammar is exactly `crate::http::openapi::PHONE` (tested there): spaces,
        // then an optional `+` (which must be followed by 84), then digits with spaces,
        // dots, dashes and brackets anywhere between; 32 characters at most.
        if input.len() > 32 {
            return Err(bad());
        }
        let s = input.trim_start_matches(' ');
        let (plus, body) = match s.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        if !body.chars().all(|c| c.is_ascii_digit() || matches!(c, ' ' | '.' | '-' | '(' | ')')) {
            return Err(bad());
        }
        let digits: String = body.chars().filter(char::is_ascii_digit).collect();
        let national = if plus || digits.len() == 11 { digits.strip_prefix("84") } else { digits.strip_prefix('0') };
        let Some(national) = national else {
            return Err(bad());
        };
        // Mobile ranges since the 2018 renumbering: 3x, 5x, 7x, 8x, 9x.
        if national.len() != 9 || !matches!(national.as_bytes()[0], b'3' | b'5' | b'7' | b'8' | b'9') {
            return Err(bad());
        }
        Ok(Phone(format!("+84{national}")))
    }

    /// Wraps a number read from the database.
    pub fn from_db(s: String) -> Self {
        Phone(s)
    }

    /// The E.164 text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `+84•••••5678`: safe to show, never enough to identify.
    pub fn masked(&self) -> String {
        let tail: String = self.0.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
        format!("+84•••••{tail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_to_e164() {
        for input in
            ["0912345678", "0912 345 678", "+84 912 345 678", "84912345678", "+84-91-234-5678", "(091) 234.5678"]
        {
            assert_eq!(Phone::parse(input).unwrap().as_str(), "+84912345678", "{input}");
        }
        assert_eq!(Phone::parse("0352345678").unwrap().as_str(), "+84352345678");
    }

    #[test]
    fn rejects_non_mobile_and_malformed() {
        for input in
            ["", "12345", "0212345678", "091234567", "09123456789", "+1 415 555 0100", "0912a45678", "+0912345678"]
        {
            assert_eq!(Phone::parse(input).unwrap_err().code, "invalid_phone", "{input}");
        }
    }

    #[test]
    fn masked_and_debug_hide_the_number() {
        let p = Phone::parse("0912345678").unwrap();
        assert_eq!(p.masked(), "+84•••••5678");
        assert!(!format!("{p:?}").contains("912345"));
    }
}
