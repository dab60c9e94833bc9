//! PHP's text forms of a float: `json_encode` / `serialize` (shortest round-trip digits,
//! `serialize_precision = -1`) and the string cast `(string)$f` (`precision = 14`).
//!
//! Both are PHP's `zend_gcvt` layout over a digit string: plain decimal while the decimal
//! exponent is in range, else `d.ddde+X` (one digit gets `.0`: `1.0e+17`). Rust's own
//! formatting gives the digits (shortest round-trip, or correctly rounded to n digits with
//! ties to even), which are the digits PHP's `zend_dtoa` produces in modes 0 and 2.

/// The JSON text of a finite float as PHP's `json_encode` writes it (without
/// `JSON_PRESERVE_ZERO_FRACTION`): `1.0` → `1`, `0.1+0.2` → `0.30000000000000004`,
/// `1e17` → `1.0e+17`, `1e-5` → `1.0e-5`, `-0.0` → `-0`. `None` for NaN and infinities,
/// which `json_encode` refuses.
pub fn json_repr(f: f64) -> Option<String> {
    if !f.is_finite() {
        return None;
    }
    let (digits, decpt) = shortest_digits(f);
    Some(layout(f.is_sign_negative(), &digits, decpt, 17, 'e'))
}

/// `(string)$f` with PHP's default `precision = 14`: `0.1+0.2` → `0.3`, `1e15` →
/// `1.0E+15`, `INF`, `-INF`, `NAN`.
pub fn to_php_string(f: f64) -> String {
    if f.is_nan() {
        return String::from("NAN");
    }
    if f.is_infinite() {
        return String::from(if f > 0.0 { "INF" } else { "-INF" });
    }
    let (digits, decpt) = rounded_digits(f, 14);
    layout(f.is_sign_negative(), &digits, decpt, 14, 'E')
}

/// Digits (no trailing zeros) and decimal point position (`value = 0.d1d2.. × 10^decpt`)
/// of the shortest decimal that reads back as `f`.
fn shortest_digits(f: f64) -> (Vec<u8>, i32) {
    split_exp(&format!("{:e}", f.abs()))
}

/// As [`shortest_digits`], rounded to `n` significant digits.
fn rounded_digits(f: f64, n: usize) -> (Vec<u8>, i32) {
    split_exp(&format!("{:.*e}", n - 1, f.abs()))
}

/// Splits Rust's `d.ddde<exp>` into digits and PHP's `decpt`.
fn split_exp(text: &str) -> (Vec<u8>, i32) {
    let (mantissa, exp) = match text.find('e') {
        Some(i) => (&text[..i], text[i + 1..].parse::<i32>().unwrap_or(0)),
        None => (text, 0),
    };
    let mut digits: Vec<u8> = mantissa.bytes().filter(|c| c.is_ascii_digit()).collect();
    while digits.len() > 1 && digits.last() == Some(&b'0') {
        digits.pop();
    }
    if digits == b"0" {
        // zend_dtoa gives "0" with the point after it.
        return (digits, 1);
    }
    (digits, exp + 1)
}

/// `zend_gcvt`'s layout: exponent form when `decpt > ndigit` or `decpt < -3`.
fn layout(negative: bool, digits: &[u8], decpt: i32, ndigit: i32, exp_char: char) -> String {
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    let text = |d: &[u8]| String::from_utf8_lossy(d).into_owned();
    if decpt > ndigit || decpt < -3 {
        let e = decpt - 1;
        out.push(digits[0] as char);
        out.push('.');
        if digits.len() == 1 {
            out.push('0');
        } else {
            out.push_str(&text(&digits[1..]));
        }
        out.push(exp_char);
        out.push(if e < 0 { '-' } else { '+' });
        out.push_str(&e.abs().to_string());
    } else if decpt <= 0 {
        out.push_str("0.");
        for _ in 0..(-decpt) {
            out.push('0');
        }
        out.push_str(&text(digits));
    } else {
        let whole = decpt as usize;
        for i in 0..whole {
            out.push(*digits.get(i).unwrap_or(&b'0') as char);
        }
        if digits.len() > whole {
            out.push('.');
            out.push_str(&text(&digits[whole..]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_repr_thresholds_like_php() {
        let cases: &[(f64, &str)] = &[
            (1.0, "1"),
            (0.0, "0"),
            (-0.0, "-0"),
            (0.5, "0.5"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1e16, "10000000000000000"),
            (12345678901234567.0, "12345678901234568"),
            (1e17, "1.0e+17"),
            (0.0001, "0.0001"),
            (1e-5, "1.0e-5"),
            (1.5e-5, "1.5e-5"),
            (5e-324, "5.0e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (-1e17, "-1.0e+17"),
        ];
        for (f, want) in cases {
            assert_eq!(json_repr(*f).as_deref(), Some(*want), "{:e}", f);
        }
        assert_eq!(json_repr(f64::NAN), None);
        assert_eq!(json_repr(f64::INFINITY), None);
    }

    #[test]
    fn string_cast_uses_fourteen_digits() {
        let cases: &[(f64, &str)] = &[
            (0.1 + 0.2, "0.3"),
            (1e14, "1.0E+14"),
            (99999999999999.0, "99999999999999"),
            (12345678901234.5, "12345678901234"),
            (12345678901233.5, "12345678901234"),
            (1e-5, "1.0E-5"),
            (-0.0, "-0"),
            (f64::NEG_INFINITY, "-INF"),
        ];
        for (f, want) in cases {
            assert_eq!(to_php_string(*f), *want, "{:e}", f);
        }
    }
}
