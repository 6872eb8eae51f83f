//! Vietnamese number plates: normalise (`30A-123.45` → `30A12345`) and validate.
//!
//! A plate is personal data: never log one.

use super::city::Invalid;

/// A normalised, valid plate (upper-case, no separators).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Plate(String);

impl std::fmt::Debug for Plate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Debug output ends up in logs: keep the plate out.
        f.write_str("Plate(…)")
    }
}

impl Plate {
    /// The normalised text, e.g. `30A12345`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Wraps an already normalised plate read from the database.
    pub fn from_db(s: String) -> Self {
        Plate(s)
    }

    /// Normalises and validates what a driver or warden typed.
    ///
    /// Accepted after normalising: a two-digit province code (11–99), a series of one or two
    /// letters, optionally one more digit, then 4 or 5 digits: `30A12345`, `29H123456`,
    /// `51F12345`, `30E1234`, `80NG12345` (diplomatic), `29B112345` (motorbike).
    pub fn parse(input: &str) -> Result<Plate, Invalid> {
        // The grammar is exactly `crate::http::openapi::PLATE` (tested there), 32 characters
        // at most.
        let shown: String = input.chars().take(20).collect();
        let norm: String = input
            .chars()
            .filter(|c| !matches!(c, '-' | '.' | ' ' | '_' | '/' | '\u{00B7}'))
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let reject = |vi: &str, en: &str| {
            Invalid::new(
                "invalid_plate",
                format!("Biển số \"{shown}\" không hợp lệ: {vi}. Ví dụ: 30A-123.45."),
                format!("Plate \"{shown}\" is invalid: {en}. Example: 30A-123.45."),
            )
        };
        if norm.is_empty() {
            return Err(reject("chưa nhập biển số", "it is empty"));
        }
        if input.chars().count() > 32 {
            return Err(reject("quá dài", "it is too long"));
        }
        if let Some(c) = norm.chars().find(|c| !c.is_ascii_alphanumeric()) {
            let _ = c;
            return Err(reject("chỉ dùng chữ cái, chữ số và dấu - .", "use only letters, digits, '-' and '.'"));
        }
        if !(7..=10).contains(&norm.len()) {
            return Err(reject("độ dài không đúng", "it has the wrong length"));
        }
        let b = norm.as_bytes();
        if !(b[0].is_ascii_digit() && b[1].is_ascii_digit()) {
            return Err(reject("phải bắt đầu bằng mã tỉnh 2 chữ số", "it must start with a two-digit province code"));
        }
        let province = u32::from(b[0] - b'0') * 10 + u32::from(b[1] - b'0');
        if province < 11 {
            return Err(reject("mã tỉnh phải từ 11 đến 99", "the province code must be 11–99"));
        }
        let rest = &b[2..];
        let letters = rest.iter().take_while(|c| c.is_ascii_uppercase()).count();
        if !(1..=2).contains(&letters) {
            return Err(reject(
                "sau mã tỉnh cần 1–2 chữ cái sê-ri",
                "the province code must be followed by a 1–2 letter series",
            ));
        }
        let digits = &rest[letters..];
        if !digits.iter().all(u8::is_ascii_digit) {
            return Err(reject("phần sau sê-ri chỉ gồm chữ số", "only digits may follow the series"));
        }
        // An optional series digit (29H1, 29B1) then a 4- or 5-digit number.
        if !(4..=6).contains(&digits.len()) {
            return Err(reject("số đăng ký cần 4 hoặc 5 chữ số", "the registration number needs 4 or 5 digits"));
        }
        Ok(Plate(norm))
    }

    /// Whether two plates differ by one character, or only by a confusion wardens and
    /// drivers make (O/0, I/1, B/8, S/5, Z/2, D/0, G/6): a likely typo.
    pub fn near_miss(&self, other: &Plate) -> bool {
        self.near_miss_str(&other.0)
    }

    /// [`near_miss`](Self::near_miss) with a plate as stored (normalised): no copy to make.
    pub fn near_miss_str(&self, other: &str) -> bool {
        // Plates are ASCII (see `parse`), so this works on bytes and allocates nothing: it
        // runs for every vehicle at the point on every check.
        fn canon(c: u8) -> u8 {
            match c {
                b'O' | b'D' => b'0',
                b'I' => b'1',
                b'B' => b'8',
                b'S' => b'5',
                b'Z' => b'2',
                b'G' => b'6',
                c => c,
            }
        }
        if self.0 == other {
            return false;
        }
        let same = |x: &u8, y: &u8| canon(*x) == canon(*y);
        let (a, b) = (self.0.as_bytes(), other.as_bytes());
        match a.len().abs_diff(b.len()) {
            // Equal up to look-alikes, or one character off.
            0 => a.iter().zip(b).filter(|(x, y)| !same(x, y)).count() <= 1,
            // One character dropped or added: past the first difference, the rest lines up.
            1 => {
                let (short, long) = if a.len() < b.len() { (a, b) } else { (b, a) };
                let i = short.iter().zip(long).position(|(x, y)| !same(x, y)).unwrap_or(short.len());
                short[i..].iter().zip(&long[i + 1..]).all(|(x, y)| same(x, y))
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_the_written_forms() {
        for (input, want) in [
            ("30A-123.45", "30A12345"),
            ("29H1-234.56", "29H123456"),
            ("51f-123.45", "51F12345"),
            ("30E-1234", "30E1234"),
            ("80NG-123-45", "80NG12345"),
            (" 29-B1 123.45 ", "29B112345"),
            ("30LD 12345", "30LD12345"),
        ] {
            assert_eq!(Plate::parse(input).unwrap().as_str(), want, "{input}");
        }
    }

    #[test]
    fn rejects_what_cannot_be_a_plate_and_says_why() {
        for (input, why) in [
            ("", "empty"),
            ("30A-12", "length"),
            ("30A-1234567", "digits"),
            ("30A-123456789", "length"),
            ("A30-12345", "province"),
            ("05A-123.45", "11–99"),
            ("30-123456", "series"),
            ("30ABC-12345", "series"),
            ("30A-12B45", "digits"),
            ("30A-123.45!", "letters, digits"),
            ("30Ă-123.45", "letters, digits"),
        ] {
            let e = Plate::parse(input).unwrap_err();
            assert_eq!(e.code, "invalid_plate");
            assert!(e.en.contains(why), "{input}: {}", e.en);
        }
    }

    /// The matching as first written (on chars, with allocations), kept as the reference.
    fn near_miss_reference(x: &Plate, y: &Plate) -> bool {
        let canon = |s: &str| -> String {
            s.chars()
                .map(|c| match c {
                    'O' | 'D' => '0',
                    'I' => '1',
                    'B' => '8',
                    'S' => '5',
                    'Z' => '2',
                    'G' => '6',
                    c => c,
                })
                .collect()
        };
        if x == y {
            return false;
        }
        let (a, b) = (canon(&x.0), canon(&y.0));
        if a == b {
            return true;
        }
        let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
        match a.len().abs_diff(b.len()) {
            0 => a.iter().zip(&b).filter(|(x, y)| x != y).count() == 1,
            1 => {
                let (short, long) = if a.len() < b.len() { (&a, &b) } else { (&b, &a) };
                (0..long.len())
                    .any(|skip| long.iter().enumerate().filter(|(i, _)| *i != skip).map(|(_, c)| c).eq(short.iter()))
            }
            _ => false,
        }
    }

    proptest::proptest! {
        #[test]
        fn near_miss_agrees_with_the_reference(a in "[0-9]{2}[ABDGIOSZ0-9]{1,2}[0-9BDGIOSZ]{4,5}", b in "[0-9]{2}[ABDGIOSZ0-9]{1,2}[0-9BDGIOSZ]{4,5}") {
            let (a, b) = (Plate::from_db(a), Plate::from_db(b));
            proptest::prop_assert_eq!(a.near_miss(&b), near_miss_reference(&a, &b), "{} vs {}", a.as_str(), b.as_str());
            // And for a one-character edit of a, which the random pairs rarely give.
            let mut edited = a.as_str().to_owned();
            edited.remove(edited.len() / 2);
            let e = Plate::from_db(edited);
            proptest::prop_assert_eq!(a.near_miss(&e), near_miss_reference(&a, &e));
            proptest::prop_assert!(a.near_miss(&e));
        }
    }

    #[test]
    fn near_misses() {
        let p = |s| Plate::parse(s).unwrap();
        assert!(p("30A12345").near_miss(&p("30A12346")));
        assert!(p("30A12345").near_miss(&p("30A1234")));
        assert!(p("30B12345").near_miss(&p("30D12345")), "one letter of the series");
        assert!(p("29H123456").near_miss(&p("29H12345")), "a dropped digit");
        assert!(!p("30A12345").near_miss(&p("31B12345")), "two differences");
        assert!(!p("30A12345").near_miss(&p("30A12345")));
        assert!(!p("30A12345").near_miss(&p("30A54321")));
        assert_eq!(format!("{:?}", p("30A12345")), "Plate(…)");
    }
}
