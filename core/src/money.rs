//! Money: integer minor units with an ISO 4217 currency. Never floats.
//!
//! Arithmetic is checked: adding two currencies or overflowing `i64` is an
//! error, not a silent wrap or a conversion.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An ISO 4217 alphabetic code, upper-case ASCII, e.g. `EUR`.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    pub const EUR: Currency = Currency(*b"EUR");
    pub const USD: Currency = Currency(*b"USD");

    /// Parses a three-letter upper-case code.
    pub fn parse(code: &str) -> Result<Currency, MoneyError> {
        let bytes = code.as_bytes();
        if bytes.len() != 3 || !bytes.iter().all(u8::is_ascii_uppercase) {
            return Err(MoneyError::BadCurrency(code.to_string()));
        }
        Ok(Currency([bytes[0], bytes[1], bytes[2]]))
    }

    pub fn as_str(&self) -> &str {
        // The constructor admits only ASCII upper-case letters.
        std::str::from_utf8(&self.0).expect("currency code is ASCII")
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = String::deserialize(d)?;
        Currency::parse(&code).map_err(serde::de::Error::custom)
    }
}

/// An amount in minor units (cents for EUR) of one currency.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    pub minor: i64,
    pub currency: Currency,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("currency mismatch: {0} vs {1}")]
    CurrencyMismatch(Currency, Currency),
    #[error("money overflow")]
    Overflow,
    #[error("not an ISO 4217 currency code: {0:?}")]
    BadCurrency(String),
    #[error("not a decimal amount: {0:?}")]
    BadAmount(String),
}

impl Money {
    pub const fn new(minor: i64, currency: Currency) -> Money {
        Money { minor, currency }
    }

    pub const fn zero(currency: Currency) -> Money {
        Money { minor: 0, currency }
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(self.currency, other.currency));
        }
        let minor = self.minor.checked_add(other.minor).ok_or(MoneyError::Overflow)?;
        Ok(Money::new(minor, self.currency))
    }

    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.checked_add(Money::new(other.minor.checked_neg().ok_or(MoneyError::Overflow)?, other.currency))
    }

    /// Parses a decimal major-unit string as APIs send it ("12.34", "7", "0.5")
    /// into minor units with two decimals, exactly (no float on the way).
    pub fn parse_decimal(text: &str, currency: Currency) -> Result<Money, MoneyError> {
        let bad = || MoneyError::BadAmount(text.to_string());
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if whole.is_empty() || frac.len() > 2 {
            return Err(bad());
        }
        if !whole.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let whole: i64 = whole.parse().map_err(|_| bad())?;
        let frac_minor: i64 = match frac.len() {
            0 => 0,
            1 => frac.parse::<i64>().map_err(|_| bad())? * 10,
            _ => frac.parse().map_err(|_| bad())?,
        };
        let minor = whole.checked_mul(100).and_then(|w| w.checked_add(frac_minor)).ok_or(MoneyError::Overflow)?;
        Ok(Money::new(if negative { -minor } else { minor }, currency))
    }

    /// Formats as a decimal major-unit string with two decimals ("12.34").
    pub fn to_decimal(&self) -> String {
        decimal(self.minor)
    }
}

/// Minor units as a decimal major-unit string with two decimals ("12.34",
/// "-0.05").
pub fn decimal(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.to_decimal(), self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decimal_round_trip_table() {
        for (text, minor) in [("12.34", 1234), ("7", 700), ("0.5", 50), ("-3.01", -301)] {
            let m = Money::parse_decimal(text, Currency::EUR).unwrap();
            assert_eq!(m.minor, minor, "{text}");
        }
        for bad in ["", ".5", "1.234", "1e3", "abc", "1.-2", "--1"] {
            assert!(Money::parse_decimal(bad, Currency::EUR).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn currencies_do_not_mix() {
        let e = Money::new(1, Currency::EUR);
        let u = Money::new(1, Currency::USD);
        assert_eq!(e.checked_add(u), Err(MoneyError::CurrencyMismatch(Currency::EUR, Currency::USD)));
        assert!(Currency::parse("eur").is_err());
        assert!(Money::new(i64::MAX, Currency::EUR).checked_add(e).is_err());
    }

    proptest! {
        #[test]
        fn format_then_parse_is_identity(minor in -10_000_000_000i64..10_000_000_000) {
            let m = Money::new(minor, Currency::EUR);
            prop_assert_eq!(Money::parse_decimal(&m.to_decimal(), Currency::EUR).unwrap(), m);
        }
    }
}
