//! Kubernetes resource quantities (`100m`, `1.5`, `256Mi`, `1e3`), read exactly, so that a value
//! the API server would refuse is refused here naming the setting or annotation it came from, and
//! a request can be compared with its limit before the API server does it with a message about
//! `spec.initContainers[1]` that names nothing the user wrote.

use std::cmp::Ordering;
use std::fmt;

/// A valid, non-negative quantity: its text as written and its value in units of 10⁻⁹.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quantity {
    text: String,
    nanos: i128,
}

/// Why a quantity is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a resource quantity (a non-negative number with an optional suffix: 250m, 0.5, 128Mi, 1G)"
)]
pub struct InvalidQuantity(pub String);

/// Longer than any quantity anyone writes; bounds the work on hostile input.
const MAX_LEN: usize = 64;

// === impl Quantity ===

impl Quantity {
    pub fn parse(text: &str) -> Result<Quantity, InvalidQuantity> {
        let invalid = || InvalidQuantity(text.chars().take(MAX_LEN).collect());
        if text.is_empty() || text.len() > MAX_LEN {
            return Err(invalid());
        }
        let number_end = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+'))
            .unwrap_or(text.len());
        let (number, suffix) = text.split_at(number_end);
        let number = number.strip_prefix('+').unwrap_or(number);
        let nanos = mantissa_nanos(number).ok_or_else(invalid)?;
        let nanos = scale(nanos, suffix).ok_or_else(invalid)?;
        Ok(Quantity {
            text: text.to_string(),
            nanos,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// `12`, `1.5`, `.5`, `5.` in units of 10⁻⁹ (digits past the ninth decimal round up, as the API
/// server rounds a quantity up to its precision).
fn mantissa_nanos(number: &str) -> Option<i128> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return None;
    }
    if !whole
        .bytes()
        .chain(fraction.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole: i128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let kept = &fraction[..fraction.len().min(9)];
    let mut nanos: i128 = if kept.is_empty() {
        0
    } else {
        kept.parse().ok()?
    };
    nanos *= 10_i128.pow(9 - kept.len() as u32);
    if fraction.len() > 9 && fraction[9..].bytes().any(|b| b != b'0') {
        nanos += 1;
    }
    whole.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// Applies a suffix: binary (`Ki` … `Ei`), decimal (`n` `u` `m` `k` `M` `G` `T` `P` `E`) or an
/// exponent (`e3`, `E-2`).
fn scale(nanos: i128, suffix: &str) -> Option<i128> {
    let binary = |power: u32| nanos.checked_mul(1_i128 << (10 * power));
    match suffix {
        "" => Some(nanos),
        "Ki" => binary(1),
        "Mi" => binary(2),
        "Gi" => binary(3),
        "Ti" => binary(4),
        "Pi" => binary(5),
        "Ei" => binary(6),
        "n" => decimal(nanos, -9),
        "u" => decimal(nanos, -6),
        "m" => decimal(nanos, -3),
        "k" => decimal(nanos, 3),
        "M" => decimal(nanos, 6),
        "G" => decimal(nanos, 9),
        "T" => decimal(nanos, 12),
        "P" => decimal(nanos, 15),
        "E" => decimal(nanos, 18),
        _ => {
            let exponent = suffix.strip_prefix(['e', 'E'])?;
            let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
            if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            decimal(nanos, exponent.parse().ok()?)
        }
    }
}

/// `nanos × 10^exponent`, rounding a division up; `None` when it does not fit.
fn decimal(nanos: i128, exponent: i32) -> Option<i128> {
    let factor = 10_i128.checked_pow(exponent.unsigned_abs())?;
    if exponent >= 0 {
        nanos.checked_mul(factor)
    } else {
        Some((nanos + factor - 1) / factor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(text: &str) -> Quantity {
        Quantity::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn equal_amounts_written_differently_compare_equal() {
        assert_eq!(q("100m").cmp(&q("0.1")), Ordering::Equal);
        assert_eq!(q("1Ki").cmp(&q("1024")), Ordering::Equal);
        assert_eq!(q("1k").cmp(&q("1e3")), Ordering::Equal);
        assert_eq!(q("2").cmp(&q("2000m")), Ordering::Equal);
        assert_eq!(q("1Gi").cmp(&q("1073741824")), Ordering::Equal);
        assert_eq!(q(".5").cmp(&q("500m")), Ordering::Equal);
        assert_eq!(q("+5.").cmp(&q("5")), Ordering::Equal);
    }

    #[test]
    fn orders_by_amount() {
        assert!(q("10m") < q("2"));
        assert!(q("256Mi") > q("40Mi"));
        assert!(q("1G") < q("1Gi"));
        assert!(q("1n") > q("0"));
        assert!(q("1Ei") > q("1E"));
        assert!(q("0.0000000001") > q("0"), "rounds up, like the API server");
    }

    #[test]
    fn refuses_what_the_api_server_refuses() {
        for bad in [
            "", "-1", "1.2.3", "abc", "1 Gi", "1gi", "1KB", "0x10", "1e", "1e1000", ".", "m",
            "1e+", "12Mi ", "1Mi1", "²",
        ] {
            assert!(Quantity::parse(bad).is_err(), "{bad:?} was accepted");
        }
        let huge = "9".repeat(65);
        assert!(Quantity::parse(&huge).is_err());
        assert!(
            Quantity::parse("99999999999999999999Ei").is_err(),
            "overflow is an error"
        );
    }

    #[test]
    fn the_error_quotes_the_value() {
        let e = Quantity::parse("lots").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("\"lots\" is not a resource quantity"),
            "{e}"
        );
    }
}
