//! PHP's two float-to-text conversions.
//!
//! * [`to_php_string`]: `(string)$float` / `echo`, used for scalar frame bodies (spec 1.2):
//!   14 significant digits (PHP's `precision` ini), exponent form when the decimal exponent
//!   of the rounded value is below −4 or at least 14.
//! * [`to_serialize_repr`] / [`to_json_repr`]: `serialize()` and `json_encode()` (spec 7.1):
//!   the shortest digits that read back as the same double (`serialize_precision = -1`),
//!   exponent form below −4 or from 17 on; `E` for serialize, `e` for JSON.
//!
//! Both digit strings come from Rust's float formatting: `{:e}` yields the shortest
//! round-trip digits and `{:.13e}` rounds the exact binary value correctly with ties to
//! even (checked by the `scalar_body_float` tie vectors), which is what PHP's `zend_dtoa`
//! does in modes 0 and 2.

use std::fmt::Write;

/// Significant digits of PHP's `precision` ini default, used by `(string)$float`.
pub const STRING_DIGITS: usize = 14;

/// Decimal exponent from which `(string)$float` switches to exponent form.
const STRING_EXP_FORM_FROM: i32 = 14;

/// Decimal exponent from which `serialize`/`json_encode` switch to exponent form.
const SHORTEST_EXP_FORM_FROM: i32 = 17;

/// Decimal exponent below which every form switches to exponent form.
const EXP_FORM_BELOW: i32 = -4;

/// `(string)$x` in PHP 8: 14 significant digits, `NAN`, `INF`, `-INF`, `-0`.
pub fn to_php_string(x: f64) -> String {
    if let Some(special) = special(x) {
        return special;
    }
    let text = format!("{:.*e}", STRING_DIGITS - 1, x.abs());
    let (digits, exp) = split_scientific(&text);
    layout(
        x.is_sign_negative(),
        &digits,
        exp,
        STRING_EXP_FORM_FROM,
        'E',
    )
}

/// The `repr` of `d:<repr>;` in PHP 8 `serialize()`: shortest round-trip digits.
pub fn to_serialize_repr(x: f64) -> String {
    special(x).unwrap_or_else(|| shortest(x, 'E'))
}

/// `json_encode($x)` of a finite float (shortest digits, lower-case `e`); `None` for NaN
/// and infinities, which `json_encode` refuses.
pub fn to_json_repr(x: f64) -> Option<String> {
    if !x.is_finite() {
        return None;
    }
    Some(special(x).unwrap_or_else(|| shortest(x, 'e')))
}

fn shortest(x: f64, exp_char: char) -> String {
    let text = format!("{:e}", x.abs());
    let (digits, exp) = split_scientific(&text);
    layout(
        x.is_sign_negative(),
        &digits,
        exp,
        SHORTEST_EXP_FORM_FROM,
        exp_char,
    )
}

/// The spellings of NaN, the infinities and the zeros, shared by every conversion.
fn special(x: f64) -> Option<String> {
    let text = if x.is_nan() {
        "NAN"
    } else if x == f64::INFINITY {
        "INF"
    } else if x == f64::NEG_INFINITY {
        "-INF"
    } else if x == 0.0 {
        if x.is_sign_negative() {
            "-0"
        } else {
            "0"
        }
    } else {
        return None;
    };
    Some(text.to_string())
}

/// Splits Rust's `d.ddde±x` into its digits without trailing zeros and the exponent.
fn split_scientific(text: &str) -> (String, i32) {
    let (mantissa, exp) = text.split_once('e').expect("`{:e}` output has an exponent");
    let exp: i32 = exp.parse().expect("`{:e}` exponent is an integer");
    let mut digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    while digits.len() > 1 && digits.ends_with('0') {
        digits.pop();
    }
    (digits, exp)
}

/// PHP's `smart_str_append_double` layout of `0.<digits> × 10^(exp+1)`.
fn layout(negative: bool, digits: &str, exp: i32, exp_form_from: i32, exp_char: char) -> String {
    let mut out = String::with_capacity(digits.len() + 8);
    if negative {
        out.push('-');
    }
    if exp < EXP_FORM_BELOW || exp >= exp_form_from {
        let (first, rest) = digits.split_at(1);
        out.push_str(first);
        out.push('.');
        out.push_str(if rest.is_empty() { "0" } else { rest });
        let sign = if exp < 0 { '-' } else { '+' };
        let _ = write!(out, "{exp_char}{sign}{}", exp.unsigned_abs());
    } else if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(digits);
    } else {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            out.push_str(digits);
            for _ in digits.len()..int_len {
                out.push('0');
            }
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fourteen_digit_ties_round_to_even() {
        assert_eq!(to_php_string(12345678901234.5), "12345678901234");
        assert_eq!(to_php_string(12345678901233.5), "12345678901234");
        assert_eq!(to_php_string(99999999999999.98), "1.0E+14");
    }

    #[test]
    fn shortest_thresholds() {
        assert_eq!(to_serialize_repr(1e16), "10000000000000000");
        assert_eq!(to_serialize_repr(1e17), "1.0E+17");
        assert_eq!(to_serialize_repr(0.0001), "0.0001");
        assert_eq!(to_serialize_repr(1e-5), "1.0E-5");
        assert_eq!(to_json_repr(1e17).as_deref(), Some("1.0e+17"));
        assert_eq!(to_json_repr(f64::NAN), None);
    }

    #[test]
    fn nan_infinities_and_zeros_have_php_spellings() {
        for (x, text) in [
            (f64::NAN, "NAN"),
            (f64::INFINITY, "INF"),
            (f64::NEG_INFINITY, "-INF"),
            (0.0, "0"),
            (-0.0, "-0"),
        ] {
            assert_eq!(to_php_string(x), text);
            assert_eq!(to_serialize_repr(x), text);
        }
        assert_eq!(to_json_repr(f64::INFINITY), None);
        assert_eq!(to_json_repr(-0.0).as_deref(), Some("-0"));
    }
}
