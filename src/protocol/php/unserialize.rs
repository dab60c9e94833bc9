//! PHP `unserialize()` for the value subset (spec 7.1).
//!
//! [`unserialize`] is the strict decoder: typed errors, bounded depth and element count,
//! no trailing bytes. [`unserialize_lenient`] is what GatewayWorker gets from PHP's
//! `unserialize($body, ['allowed_classes' => false])`: `false` for anything invalid and
//! trailing bytes after a complete value ignored.
//!
//! Work is linear in the input: an array header's count is only trusted as far as the
//! remaining input could hold that many entries (each needs at least 4 bytes), and
//! repeated keys overwrite in place through [`PhpArray`]'s hash index.

use bytes::Bytes;

use super::{PhpArray, PhpKey, PhpValue};

/// Bounds applied while decoding untrusted serialized data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnserializeLimits {
    /// Deepest nesting of non-empty arrays accepted; a top-level scalar is depth 0,
    /// `a:1:{i:0;N;}` depth 1 (an empty array, like in PHP, is never too deep).
    pub depth_max: usize,
    /// Most values (array entries and scalars, keys not counted) in one input.
    pub elements_max: usize,
}

impl UnserializeLimits {
    /// PHP's `unserialize_max_depth` default is 4096; we stop at 512 nested arrays, far
    /// beyond any session or message GatewayWorker produces, to keep recursion shallow.
    pub const DEPTH_MAX_DEFAULT: usize = 512;
    /// Enough for any value that fits a 10 MiB frame (an entry takes at least 6 bytes).
    pub const ELEMENTS_MAX_DEFAULT: usize = 2_000_000;
}

impl Default for UnserializeLimits {
    fn default() -> UnserializeLimits {
        UnserializeLimits {
            depth_max: UnserializeLimits::DEPTH_MAX_DEFAULT,
            elements_max: UnserializeLimits::ELEMENTS_MAX_DEFAULT,
        }
    }
}

/// Why a serialized value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnserializeError {
    /// The bytes at `offset` do not follow the grammar (this includes empty input).
    #[error("unserialize: syntax error at byte {offset}")]
    Syntax {
        /// Byte offset of the first unexpected byte.
        offset: usize,
    },
    /// An object (`O:`, `C:`) or enum (`E:`) at `offset`; classes are never allowed.
    #[error("unserialize: object at byte {offset} rejected")]
    Object {
        /// Byte offset of the type tag.
        offset: usize,
    },
    /// A reference (`r:`, `R:`) at `offset`; the subset has no references.
    #[error("unserialize: reference at byte {offset} rejected")]
    Reference {
        /// Byte offset of the type tag.
        offset: usize,
    },
    /// Arrays nested deeper than `depth_max`.
    #[error("unserialize: nesting deeper than {depth_max}")]
    TooDeep {
        /// The limit that was exceeded.
        depth_max: usize,
    },
    /// More values than `elements_max`.
    #[error("unserialize: more than {elements_max} elements")]
    TooManyElements {
        /// The limit that was exceeded.
        elements_max: usize,
    },
    /// A string length or array count at `offset` exceeds what the remaining input holds.
    #[error("unserialize: length at byte {offset} runs past the input")]
    LengthBeyondInput {
        /// Byte offset of the length field.
        offset: usize,
    },
    /// An `i:` value or key at `offset` does not fit a signed 64-bit integer.
    #[error("unserialize: integer at byte {offset} out of range")]
    IntOutOfRange {
        /// Byte offset of the number.
        offset: usize,
    },
    /// A complete value ends at `offset` but more bytes follow (strict mode only).
    #[error("unserialize: trailing bytes from byte {offset}")]
    TrailingBytes {
        /// Byte offset just past the value.
        offset: usize,
    },
}

/// Strictly decodes one serialized value that must span all of `input`.
pub fn unserialize(input: &[u8], limits: &UnserializeLimits) -> Result<PhpValue, UnserializeError> {
    let (value, used) = unserialize_prefix(input, limits)?;
    if used != input.len() {
        return Err(UnserializeError::TrailingBytes { offset: used });
    }
    Ok(value)
}

/// Decodes the serialized value at the start of `input`, returning it and the number of
/// bytes it took; what follows is not looked at (PHP 8.2 ignores it).
pub fn unserialize_prefix(
    input: &[u8],
    limits: &UnserializeLimits,
) -> Result<(PhpValue, usize), UnserializeError> {
    decode_prefix(input, limits, IntOverflow::Reject)
}

fn decode_prefix(
    input: &[u8],
    limits: &UnserializeLimits,
    int_overflow: IntOverflow,
) -> Result<(PhpValue, usize), UnserializeError> {
    let mut decoder = Decoder {
        input,
        pos: 0,
        limits: *limits,
        elements: 0,
        int_overflow,
    };
    let value = decoder.value(0)?;
    Ok((value, decoder.pos))
}

/// What to do with an `i:` beyond `i64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IntOverflow {
    /// Fail with [`UnserializeError::IntOutOfRange`].
    Reject,
    /// Saturate to `i64::MIN`/`i64::MAX`, as PHP does (with a warning).
    Saturate,
}

/// PHP's `unserialize()` as GatewayWorker sees it: the value, or `false` when the input
/// is empty or invalid (indistinguishable from `b:0;`); trailing bytes are ignored and an
/// out-of-range `i:` saturates to `i64::MIN`/`i64::MAX` as in PHP.
///
/// Differences from PHP: nesting beyond [`UnserializeLimits::DEPTH_MAX_DEFAULT`] (PHP:
/// 4096) and string lengths that overflow 64 bits (PHP wraps them) are `false`.
pub fn unserialize_lenient(input: &[u8]) -> PhpValue {
    decode_prefix(input, &UnserializeLimits::default(), IntOverflow::Saturate)
        .map(|(value, _)| value)
        .unwrap_or(PhpValue::Bool(false))
}

/// A lower bound on the bytes of one array entry (the smallest, `i:0;N;`, takes 6), so a
/// count above `remaining / ENTRY_BYTES_MIN` cannot be honest.
const ENTRY_BYTES_MIN: usize = 4;

struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
    limits: UnserializeLimits,
    elements: usize,
    int_overflow: IntOverflow,
}

impl Decoder<'_> {
    fn syntax(&self) -> UnserializeError {
        UnserializeError::Syntax { offset: self.pos }
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn expect(&mut self, byte: u8) -> Result<(), UnserializeError> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.syntax())
        }
    }

    fn count_element(&mut self) -> Result<(), UnserializeError> {
        self.elements += 1;
        if self.elements > self.limits.elements_max {
            return Err(UnserializeError::TooManyElements {
                elements_max: self.limits.elements_max,
            });
        }
        Ok(())
    }

    fn value(&mut self, depth: usize) -> Result<PhpValue, UnserializeError> {
        self.count_element()?;
        let start = self.pos;
        let tag = self.peek().ok_or_else(|| self.syntax())?;
        match tag {
            b'O' | b'C' | b'E' | b'o' => return Err(UnserializeError::Object { offset: start }),
            b'r' | b'R' => return Err(UnserializeError::Reference { offset: start }),
            _ => {}
        }
        if tag == b'N' {
            self.pos += 1;
            self.expect(b';')?;
            return Ok(PhpValue::Null);
        }
        self.pos += 1;
        self.expect(b':')?;
        match tag {
            b'b' => {
                let b = match self.peek() {
                    Some(b'0') => false,
                    Some(b'1') => true,
                    _ => return Err(self.syntax()),
                };
                self.pos += 1;
                self.expect(b';')?;
                Ok(PhpValue::Bool(b))
            }
            b'i' => {
                let n = self.int()?;
                self.expect(b';')?;
                Ok(PhpValue::Int(n))
            }
            b'd' => self.float(),
            b's' => Ok(PhpValue::Str(self.string_body()?)),
            b'S' => Ok(PhpValue::Str(self.escaped_string_body()?)),
            b'a' => self.array(depth + 1),
            _ => {
                self.pos = start;
                Err(self.syntax())
            }
        }
    }

    /// `[+-]?[0-9]+` as an `i64`.
    fn int(&mut self) -> Result<i64, UnserializeError> {
        let start = self.pos;
        if matches!(self.peek(), Some(b'+' | b'-')) {
            self.pos += 1;
        }
        let digits_start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        if self.pos == digits_start {
            return Err(self.syntax());
        }
        let text = std::str::from_utf8(&self.input[start..self.pos]).expect("ascii digits");
        match text.parse::<i64>() {
            Ok(n) => Ok(n),
            Err(_) if self.int_overflow == IntOverflow::Saturate => Ok(if text.starts_with('-') {
                i64::MIN
            } else {
                i64::MAX
            }),
            Err(_) => Err(UnserializeError::IntOutOfRange { offset: start }),
        }
    }

    /// `[0-9]+` as a length or count.
    fn unsigned(&mut self) -> Result<usize, UnserializeError> {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.syntax());
        }
        let text = std::str::from_utf8(&self.input[start..self.pos]).expect("ascii digits");
        text.parse::<usize>()
            .map_err(|_| UnserializeError::LengthBeyondInput { offset: start })
    }

    /// After `d:`: `NAN`, `INF`, `-INF` or a decimal number with optional exponent, then `;`.
    fn float(&mut self) -> Result<PhpValue, UnserializeError> {
        let start = self.pos;
        let end = self.input[start..]
            .iter()
            .position(|&b| b == b';')
            .map(|i| start + i)
            .ok_or(UnserializeError::Syntax {
                offset: self.input.len(),
            })?;
        let text = &self.input[start..end];
        let x = match text {
            b"NAN" => f64::NAN,
            b"INF" => f64::INFINITY,
            b"-INF" => f64::NEG_INFINITY,
            _ if is_php_number(text) => std::str::from_utf8(text)
                .ok()
                .and_then(|t| t.parse::<f64>().ok())
                .ok_or(UnserializeError::Syntax { offset: start })?,
            _ => return Err(UnserializeError::Syntax { offset: start }),
        };
        self.pos = end + 1;
        Ok(PhpValue::Float(x))
    }

    /// After `s:`: `<len>:"<len bytes>";`.
    fn string_body(&mut self) -> Result<Bytes, UnserializeError> {
        let len_at = self.pos;
        let len = self.unsigned()?;
        self.expect(b':')?;
        self.expect(b'"')?;
        let remaining = self.input.len() - self.pos;
        if len > remaining {
            return Err(UnserializeError::LengthBeyondInput { offset: len_at });
        }
        let bytes = Bytes::copy_from_slice(&self.input[self.pos..self.pos + len]);
        self.pos += len;
        self.expect(b'"')?;
        self.expect(b';')?;
        Ok(bytes)
    }

    /// After `S:` (PHP's legacy escaped string): `<len>:"<len chars>";` where a char is a
    /// byte other than `\` or a `\` followed by two hex digits.
    fn escaped_string_body(&mut self) -> Result<Bytes, UnserializeError> {
        let len_at = self.pos;
        let len = self.unsigned()?;
        self.expect(b':')?;
        self.expect(b'"')?;
        if len > self.input.len() - self.pos {
            return Err(UnserializeError::LengthBeyondInput { offset: len_at });
        }
        let mut bytes = Vec::with_capacity(len);
        for _ in 0..len {
            let byte = self.peek().ok_or_else(|| self.syntax())?;
            self.pos += 1;
            if byte != b'\\' {
                bytes.push(byte);
                continue;
            }
            let hex = self
                .input
                .get(self.pos..self.pos + 2)
                .ok_or_else(|| self.syntax())?;
            let value = std::str::from_utf8(hex)
                .ok()
                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| self.syntax())?;
            bytes.push(value);
            self.pos += 2;
        }
        self.expect(b'"')?;
        self.expect(b';')?;
        Ok(Bytes::from(bytes))
    }

    fn key(&mut self) -> Result<PhpKey, UnserializeError> {
        let tag = self.peek().ok_or_else(|| self.syntax())?;
        if !matches!(tag, b'i' | b's' | b'S') {
            return Err(self.syntax());
        }
        self.pos += 1;
        self.expect(b':')?;
        match tag {
            b'i' => {
                let n = self.int()?;
                self.expect(b';')?;
                Ok(PhpKey::Int(n))
            }
            b's' => Ok(PhpKey::from_shared(self.string_body()?)),
            _ => Ok(PhpKey::from_shared(self.escaped_string_body()?)),
        }
    }

    /// After `a:`: `<count>:{` count × (key value) `}`.
    fn array(&mut self, depth: usize) -> Result<PhpValue, UnserializeError> {
        let count_at = self.pos;
        let count = self.unsigned()?;
        self.expect(b':')?;
        self.expect(b'{')?;
        // Like PHP, only an array with entries counts against the depth limit.
        if count > 0 && depth > self.limits.depth_max {
            return Err(UnserializeError::TooDeep {
                depth_max: self.limits.depth_max,
            });
        }
        let remaining = self.input.len() - self.pos;
        if count > remaining / ENTRY_BYTES_MIN {
            return Err(UnserializeError::LengthBeyondInput { offset: count_at });
        }
        let mut array = PhpArray::with_capacity(count);
        for _ in 0..count {
            let key = self.key()?;
            let value = self.value(depth)?;
            // PHP overwrites a repeated key in place.
            array.insert(key, value);
        }
        self.expect(b'}')?;
        Ok(PhpValue::Array(array))
    }
}

/// PHP's unserialize float grammar: `[+-]?` then `D+`, `D*.D+` or `D+.D*`, then an
/// optional `[eE][+-]?D+`.
fn is_php_number(text: &[u8]) -> bool {
    let mut i = 0;
    if matches!(text.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let int_digits = digits_from(text, i);
    i += int_digits;
    let mut frac_digits = 0;
    if text.get(i) == Some(&b'.') {
        i += 1;
        frac_digits = digits_from(text, i);
        i += frac_digits;
    }
    if int_digits == 0 && frac_digits == 0 {
        return false;
    }
    if matches!(text.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(text.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp_digits = digits_from(text, i);
        if exp_digits == 0 {
            return false;
        }
        i += exp_digits;
    }
    i == text.len()
}

fn digits_from(text: &[u8], start: usize) -> usize {
    text.get(start..)
        .map_or(0, |t| t.iter().take_while(|b| b.is_ascii_digit()).count())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict(input: &[u8]) -> Result<PhpValue, UnserializeError> {
        unserialize(input, &UnserializeLimits::default())
    }

    fn nested(depth: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..depth {
            out.extend_from_slice(b"a:1:{i:0;");
        }
        out.extend_from_slice(b"N;");
        out.extend(std::iter::repeat_n(b'}', depth));
        out
    }

    #[test]
    fn float_forms_a_decoder_must_accept() {
        let cases: [(&[u8], f64); 9] = [
            (b"d:0.5;", 0.5),
            (b"d:1.0E+25;", 1e25),
            (b"d:1e3;", 1000.0),
            (b"d:-.5;", -0.5),
            (b"d:5.;", 5.0),
            (b"d:+2;", 2.0),
            (b"d:INF;", f64::INFINITY),
            (b"d:-INF;", f64::NEG_INFINITY),
            (b"d:-0;", -0.0),
        ];
        for (input, x) in cases {
            match strict(input) {
                Ok(PhpValue::Float(y)) => assert_eq!(y.to_bits(), x.to_bits(), "{input:?}"),
                other => panic!("{input:?}: {other:?}"),
            }
        }
        assert!(matches!(strict(b"d:NAN;"), Ok(PhpValue::Float(x)) if x.is_nan()));
        for bad in [
            &b"d:;"[..],
            b"d:.;",
            b"d:1e;",
            b"d:inf;",
            b"d:nan;",
            b"d:1.5",
            b"d:0x10;",
        ] {
            assert!(
                matches!(strict(bad), Err(UnserializeError::Syntax { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn typed_errors_carry_offsets() {
        assert_eq!(strict(b""), Err(UnserializeError::Syntax { offset: 0 }));
        assert_eq!(strict(b"i:5"), Err(UnserializeError::Syntax { offset: 3 }));
        assert_eq!(
            strict(b"i:5;x"),
            Err(UnserializeError::TrailingBytes { offset: 4 })
        );
        assert_eq!(
            strict(b"a:1:{i:0;O:8:\"stdClass\":0:{}}"),
            Err(UnserializeError::Object { offset: 9 })
        );
        assert_eq!(
            strict(b"C:1:\"a\":0:{}"),
            Err(UnserializeError::Object { offset: 0 })
        );
        assert_eq!(
            strict(b"a:1:{i:0;r:1;}"),
            Err(UnserializeError::Reference { offset: 9 })
        );
        assert_eq!(
            strict(b"s:10:\"abc\";"),
            Err(UnserializeError::LengthBeyondInput { offset: 2 })
        );
        assert_eq!(
            strict(b"i:9223372036854775808;"),
            Err(UnserializeError::IntOutOfRange { offset: 2 })
        );
        assert_eq!(
            strict(b"i:-9223372036854775808;"),
            Ok(PhpValue::Int(i64::MIN))
        );
        // Keys must be int or string.
        assert_eq!(
            strict(b"a:1:{N;i:1;}"),
            Err(UnserializeError::Syntax { offset: 5 })
        );
        // The count must match the entries.
        assert!(strict(b"a:2:{i:0;N;}").is_err());
        assert!(strict(b"a:1:{i:0;N;i:1;N;}").is_err());
    }

    #[test]
    fn lenient_mirrors_php_integer_saturation_and_escaped_strings() {
        assert_eq!(
            unserialize_lenient(b"i:99999999999999999999;"),
            PhpValue::Int(i64::MAX)
        );
        assert_eq!(
            unserialize_lenient(b"i:-99999999999999999999;"),
            PhpValue::Int(i64::MIN)
        );
        assert_eq!(unserialize_lenient(b"i:+007;"), PhpValue::Int(7));
        assert_eq!(strict(b"S:3:\"a\\41b\";"), Ok(PhpValue::str("aAb")));
        assert_eq!(strict(b"a:1:{S:1:\"\\35\";N;}"), strict(b"a:1:{i:5;N;}"));
        assert!(strict(b"S:1:\"\\4g\";").is_err());
        assert!(strict(b"S:2:\"\\4\";").is_err());
    }

    #[test]
    fn depth_is_bounded_at_depth_max() {
        let limits = UnserializeLimits {
            depth_max: 8,
            ..UnserializeLimits::default()
        };
        assert!(unserialize(&nested(8), &limits).is_ok());
        let mut empty_innermost = b"a:1:{i:0;".repeat(8);
        empty_innermost.extend_from_slice(b"a:0:{}");
        empty_innermost.extend_from_slice(&b"}".repeat(8));
        assert!(unserialize(&empty_innermost, &limits).is_ok());
        assert_eq!(
            unserialize(&nested(9), &limits),
            Err(UnserializeError::TooDeep { depth_max: 8 })
        );
        let default_max = UnserializeLimits::DEPTH_MAX_DEFAULT;
        assert!(strict(&nested(default_max)).is_ok());
        assert!(strict(&nested(default_max + 1)).is_err());
        assert_eq!(
            unserialize_lenient(&nested(default_max + 1)),
            PhpValue::Bool(false)
        );
    }

    #[test]
    fn elements_are_bounded_at_elements_max() {
        let limits = UnserializeLimits {
            elements_max: 4,
            ..UnserializeLimits::default()
        };
        // The array itself and its three values: four elements.
        assert!(unserialize(b"a:3:{i:0;N;i:1;N;i:2;N;}", &limits).is_ok());
        assert_eq!(
            unserialize(b"a:4:{i:0;N;i:1;N;i:2;N;i:3;N;}", &limits),
            Err(UnserializeError::TooManyElements { elements_max: 4 })
        );
    }

    #[test]
    fn a_huge_count_header_is_refused_before_allocating() {
        assert_eq!(
            strict(b"a:1000000:{i:0;N;}"),
            Err(UnserializeError::LengthBeyondInput { offset: 2 })
        );
        assert!(strict(b"a:99999999999999999999999:{}").is_err());
    }

    #[test]
    fn repeated_keys_overwrite_in_place_in_linear_time() {
        assert_eq!(
            serialize_of(b"a:3:{i:1;s:1:\"a\";i:2;N;s:1:\"1\";s:1:\"b\";}"),
            b"a:2:{i:1;s:1:\"b\";i:2;N;}".to_vec()
        );
        // 200k entries on 2 distinct keys and 200k distinct keys both decode quickly
        // (quadratic lookups would take minutes here in a debug build).
        let n = 200_000;
        for distinct in [2, n] {
            let mut input = format!("a:{n}:{{").into_bytes();
            for i in 0..n {
                input.extend_from_slice(format!("i:{};N;", i % distinct).as_bytes());
            }
            input.push(b'}');
            match strict(&input) {
                Ok(PhpValue::Array(a)) => assert_eq!(a.len(), distinct),
                other => panic!("{other:?}"),
            }
        }
    }

    fn serialize_of(input: &[u8]) -> Vec<u8> {
        crate::protocol::php::serialize::serialize(&strict(input).unwrap())
    }

    #[test]
    fn s_keys_are_raw_bytes_and_only_capital_s_keys_unescape() {
        // `s:` keeps a backslash as a byte; `S:` reads `\41` as one char, `A`.
        let raw = strict(b"a:1:{s:3:\"\\41\";N;}");
        let mut expected = PhpArray::new();
        expected.insert(PhpKey::from_bytes(b"\\41"), PhpValue::Null);
        assert_eq!(raw, Ok(PhpValue::Array(expected)));
        let escaped = strict(b"a:1:{S:1:\"\\41\";N;}");
        let mut expected = PhpArray::new();
        expected.insert(PhpKey::from_bytes(b"A"), PhpValue::Null);
        assert_eq!(escaped, Ok(PhpValue::Array(expected)));
    }

    #[test]
    fn booleans_decode_and_only_zero_and_one_are_booleans() {
        assert_eq!(strict(b"b:0;"), Ok(PhpValue::Bool(false)));
        assert_eq!(strict(b"b:1;"), Ok(PhpValue::Bool(true)));
        assert_eq!(
            strict(b"a:2:{i:0;b:1;i:1;b:0;}"),
            Ok(PhpValue::Array(
                [
                    (PhpKey::Int(0), PhpValue::Bool(true)),
                    (PhpKey::Int(1), PhpValue::Bool(false)),
                ]
                .into_iter()
                .collect()
            ))
        );
        assert_eq!(strict(b"b:2;"), Err(UnserializeError::Syntax { offset: 2 }));
        assert_eq!(strict(b"b:1"), Err(UnserializeError::Syntax { offset: 3 }));
    }

    #[test]
    fn lengths_are_checked_against_the_input_left() {
        // A string that fits exactly is read; what it lacks after is a syntax error.
        for input in [&b"s:3:\"abc"[..], b"S:3:\"abc"] {
            assert_eq!(strict(input), Err(UnserializeError::Syntax { offset: 8 }));
        }
        // One byte more than the input holds is the length's fault, for `S:` too.
        assert_eq!(
            strict(b"S:4:\"abc"),
            Err(UnserializeError::LengthBeyondInput { offset: 2 })
        );
        assert_eq!(
            strict(b"S:10:\"abc\";"),
            Err(UnserializeError::LengthBeyondInput { offset: 2 })
        );
        // A count more than a quarter of the input left (7 bytes: at most one entry).
        assert_eq!(
            strict(b"a:2:{i:0;N;}"),
            Err(UnserializeError::LengthBeyondInput { offset: 2 })
        );
        assert_eq!(
            strict(b"a:3:{i:0;N;}"),
            Err(UnserializeError::LengthBeyondInput { offset: 2 })
        );
    }
}
