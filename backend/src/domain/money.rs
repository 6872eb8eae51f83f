//! Money: whole Vietnamese đồng. VND has no minor unit (Stripe treats it as zero-decimal).

use std::{
    fmt,
    iter::Sum,
    ops::{Add, AddAssign, Neg, Sub, SubAssign},
};

/// An amount of VND. Signed, so discounts and refunds are plain negatives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Vnd(pub i64);

impl Vnd {
    /// Zero đồng.
    pub const ZERO: Vnd = Vnd(0);

    /// The amount as an integer.
    pub fn get(self) -> i64 {
        self.0
    }

    /// `max(self, other)`.
    pub fn max(self, other: Vnd) -> Vnd {
        Vnd(self.0.max(other.0))
    }

    /// `min(self, other)`.
    pub fn min(self, other: Vnd) -> Vnd {
        Vnd(self.0.min(other.0))
    }

    /// Formats with thousands separators: `25.000 đ` (Vietnamese) or `25,000 VND` (English).
    pub fn display(self, english: bool) -> String {
        let mut out = group_digits(self.0, if english { ',' } else { '.' });
        out.push_str(if english { " VND" } else { " đ" });
        out
    }
}

/// A whole number with `sep` between thousands: `1250000` → `1.250.000` (Vietnamese) or
/// `1,250,000` (English).
pub fn group_digits(v: i64, sep: char) -> String {
    let digits = v.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if v < 0 {
        out.push('-');
    }
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(sep);
        }
        out.push(d);
    }
    out
}

impl fmt::Display for Vnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display(true))
    }
}

impl Add for Vnd {
    type Output = Vnd;
    fn add(self, rhs: Vnd) -> Vnd {
        Vnd(self.0 + rhs.0)
    }
}

impl AddAssign for Vnd {
    fn add_assign(&mut self, rhs: Vnd) {
        self.0 += rhs.0;
    }
}

impl Sub for Vnd {
    type Output = Vnd;
    fn sub(self, rhs: Vnd) -> Vnd {
        Vnd(self.0 - rhs.0)
    }
}

impl SubAssign for Vnd {
    fn sub_assign(&mut self, rhs: Vnd) {
        self.0 -= rhs.0;
    }
}

impl Neg for Vnd {
    type Output = Vnd;
    fn neg(self) -> Vnd {
        Vnd(-self.0)
    }
}

impl Sum for Vnd {
    fn sum<I: Iterator<Item = Vnd>>(iter: I) -> Vnd {
        Vnd(iter.map(|v| v.0).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_groups_thousands() {
        assert_eq!(Vnd(25_000).display(false), "25.000 đ");
        assert_eq!(Vnd(25_000).display(true), "25,000 VND");
        assert_eq!(Vnd(2_000_000_000).display(true), "2,000,000,000 VND");
        assert_eq!(Vnd(-150_000).display(false), "-150.000 đ");
        assert_eq!(Vnd(0).display(true), "0 VND");
        assert_eq!(Vnd(999).display(true), "999 VND");
    }

    #[test]
    fn arithmetic() {
        assert_eq!([Vnd(1), Vnd(2), Vnd(-4)].into_iter().sum::<Vnd>(), Vnd(-1));
        assert_eq!(Vnd(5) - Vnd(7), Vnd(-2));
        assert_eq!(Vnd(5).max(Vnd(7)), Vnd(7));
    }
}
