//! PHP-flavoured JSON (spec 6.3, 7.5): `json_encode` with PHP's escaping and list
//! detection, `json_decode($text, true)` with PHP's key normalisation, and a checked
//! mapping to and from [`serde_json::Value`].

use std::io::Write;

use bytes::Bytes;
use serde_json::{Map, Number, Value};

use super::float::to_json_repr;
use super::{PhpArray, PhpKey, PhpValue};

/// PHP's default `$depth` of `json_encode` and `json_decode`, in nested arrays/objects
/// (the outermost counts 1); also the bound of [`to_json_value`] and [`from_json_value`].
pub const JSON_DEPTH_MAX_ARRAYS: usize = 512;

/// The same bound under its historical name.
pub const JSON_DEPTH_MAX_DEFAULT: usize = JSON_DEPTH_MAX_ARRAYS;

/// Flags of [`json_encode`]; the default is PHP's `json_encode($value)` without flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonEncodeOptions {
    /// `JSON_UNESCAPED_UNICODE`: write non-ASCII characters as UTF-8 instead of `\uXXXX`
    /// (U+2028 and U+2029 stay escaped, as PHP does without
    /// `JSON_UNESCAPED_LINE_TERMINATORS`).
    pub unescaped_unicode: bool,
    /// `JSON_UNESCAPED_SLASHES`: write `/` instead of `\/`.
    pub unescaped_slashes: bool,
    /// Deepest array nesting written; deeper values fail with [`JsonEncodeError::TooDeep`].
    pub depth_max: usize,
}

impl Default for JsonEncodeOptions {
    fn default() -> JsonEncodeOptions {
        JsonEncodeOptions {
            unescaped_unicode: false,
            unescaped_slashes: false,
            depth_max: JSON_DEPTH_MAX_DEFAULT,
        }
    }
}

impl JsonEncodeOptions {
    /// `JSON_UNESCAPED_UNICODE`, what a gateway uses for array messages to websocket
    /// clients (spec 6.3).
    pub fn unescaped_unicode() -> JsonEncodeOptions {
        JsonEncodeOptions {
            unescaped_unicode: true,
            ..JsonEncodeOptions::default()
        }
    }
}

/// Why [`json_encode`] failed (PHP returns `false` in each case).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonEncodeError {
    /// A float is NaN or infinite (`JSON_ERROR_INF_OR_NAN`).
    #[error("json_encode: NAN or INF cannot be encoded")]
    InfOrNan,
    /// A string or key is not valid UTF-8 (`JSON_ERROR_UTF8`).
    #[error("json_encode: malformed UTF-8")]
    InvalidUtf8,
    /// Arrays nested deeper than the depth limit (`JSON_ERROR_DEPTH`).
    #[error("json_encode: nesting deeper than {depth_max}")]
    TooDeep {
        /// The limit that was exceeded.
        depth_max: usize,
    },
}

/// `json_encode($value, $flags)`.
pub fn json_encode(
    value: &PhpValue,
    options: JsonEncodeOptions,
) -> Result<Vec<u8>, JsonEncodeError> {
    let mut out = Vec::new();
    encode_value(value, &options, 0, &mut out)?;
    Ok(out)
}

fn encode_value(
    value: &PhpValue,
    options: &JsonEncodeOptions,
    depth: usize,
    out: &mut Vec<u8>,
) -> Result<(), JsonEncodeError> {
    match value {
        PhpValue::Null => out.extend_from_slice(b"null"),
        PhpValue::Bool(true) => out.extend_from_slice(b"true"),
        PhpValue::Bool(false) => out.extend_from_slice(b"false"),
        PhpValue::Int(n) => {
            let _ = write!(out, "{n}");
        }
        PhpValue::Float(x) => {
            let text = to_json_repr(*x).ok_or(JsonEncodeError::InfOrNan)?;
            out.extend_from_slice(text.as_bytes());
        }
        PhpValue::Str(s) => encode_string(s, options, out)?,
        PhpValue::Array(array) => {
            let depth = depth + 1;
            if depth > options.depth_max {
                return Err(JsonEncodeError::TooDeep {
                    depth_max: options.depth_max,
                });
            }
            let list = array.is_list();
            out.push(if list { b'[' } else { b'{' });
            for (i, (key, value)) in array.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                if !list {
                    encode_string(&key.to_bytes(), options, out)?;
                    out.push(b':');
                }
                encode_value(value, options, depth, out)?;
            }
            out.push(if list { b']' } else { b'}' });
        }
    }
    Ok(())
}

/// A JSON string literal with PHP's escapes (lower-case hex, `\/` unless unescaped).
fn encode_string(
    bytes: &[u8],
    options: &JsonEncodeOptions,
    out: &mut Vec<u8>,
) -> Result<(), JsonEncodeError> {
    let text = std::str::from_utf8(bytes).map_err(|_| JsonEncodeError::InvalidUtf8)?;
    out.push(b'"');
    for c in text.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '/' if !options.unescaped_slashes => out.extend_from_slice(b"\\/"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => write_u16_escape(c as u16, out),
            c if c.is_ascii() => out.push(c as u8),
            '\u{2028}' | '\u{2029}' => write_u16_escape(c as u16, out),
            c if options.unescaped_unicode => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write_u16_escape(*unit, out);
                }
            }
        }
    }
    out.push(b'"');
    Ok(())
}

fn write_u16_escape(unit: u16, out: &mut Vec<u8>) {
    let _ = write!(out, "\\u{unit:04x}");
}

/// Why [`json_decode`] failed (PHP returns `null` in each case).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonDecodeError {
    /// Not JSON at byte `offset` (`JSON_ERROR_SYNTAX`, also for empty input).
    #[error("json_decode: syntax error at byte {offset}")]
    Syntax {
        /// Byte offset of the first unexpected byte.
        offset: usize,
    },
    /// A control character inside a string (`JSON_ERROR_CTRL_CHAR`).
    #[error("json_decode: control character at byte {offset}")]
    ControlCharacter {
        /// Byte offset of the character.
        offset: usize,
    },
    /// Malformed UTF-8 (`JSON_ERROR_UTF8`).
    #[error("json_decode: malformed UTF-8 at byte {offset}")]
    InvalidUtf8 {
        /// Byte offset of the bad sequence.
        offset: usize,
    },
    /// A `\u` escape that is a lone surrogate (`JSON_ERROR_UTF16`).
    #[error("json_decode: lone UTF-16 surrogate at byte {offset}")]
    LoneSurrogate {
        /// Byte offset of the escape.
        offset: usize,
    },
    /// Arrays/objects nested deeper than the limit (`JSON_ERROR_DEPTH`).
    #[error("json_decode: nesting deeper than {depth_max}")]
    TooDeep {
        /// The limit that was exceeded.
        depth_max: usize,
    },
}

/// `json_decode($text, true)`: objects become arrays whose keys are normalised like PHP
/// array keys (`{"7":7}` has the int key 7), in document order, a repeated key keeping
/// its first position with the last value; integers beyond `i64` become floats.
pub fn json_decode(text: &[u8]) -> Result<PhpValue, JsonDecodeError> {
    json_decode_with_depth(text, JSON_DEPTH_MAX_DEFAULT)
}

/// [`json_decode`] with PHP's `$depth` argument: at most `depth_max` nested arrays or
/// objects.
pub fn json_decode_with_depth(text: &[u8], depth_max: usize) -> Result<PhpValue, JsonDecodeError> {
    let mut parser = Parser {
        input: text,
        pos: 0,
        depth_max,
    };
    parser.skip_whitespace();
    let value = parser.value(0)?;
    parser.skip_whitespace();
    if parser.pos != text.len() {
        return Err(parser.syntax());
    }
    Ok(value)
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    depth_max: usize,
}

impl Parser<'_> {
    fn syntax(&self) -> JsonDecodeError {
        JsonDecodeError::Syntax { offset: self.pos }
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn literal(&mut self, word: &[u8], value: PhpValue) -> Result<PhpValue, JsonDecodeError> {
        if self.input[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(value)
        } else {
            Err(self.syntax())
        }
    }

    fn value(&mut self, depth: usize) -> Result<PhpValue, JsonDecodeError> {
        match self.peek().ok_or_else(|| self.syntax())? {
            b'n' => self.literal(b"null", PhpValue::Null),
            b't' => self.literal(b"true", PhpValue::Bool(true)),
            b'f' => self.literal(b"false", PhpValue::Bool(false)),
            b'"' => Ok(PhpValue::Str(Bytes::from(self.string()?))),
            b'[' => self.list(depth + 1),
            b'{' => self.object(depth + 1),
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(self.syntax()),
        }
    }

    fn enter(&self, depth: usize) -> Result<(), JsonDecodeError> {
        if depth > self.depth_max {
            return Err(JsonDecodeError::TooDeep {
                depth_max: self.depth_max,
            });
        }
        Ok(())
    }

    fn list(&mut self, depth: usize) -> Result<PhpValue, JsonDecodeError> {
        self.enter(depth)?;
        self.pos += 1;
        let mut array = PhpArray::new();
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(PhpValue::Array(array));
        }
        loop {
            self.skip_whitespace();
            let value = self.value(depth)?;
            array.push_unique(PhpKey::Int(array.len() as i64), value);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(PhpValue::Array(array));
                }
                _ => return Err(self.syntax()),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<PhpValue, JsonDecodeError> {
        self.enter(depth)?;
        self.pos += 1;
        let mut array = PhpArray::new();
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(PhpValue::Array(array));
        }
        loop {
            self.skip_whitespace();
            if self.peek() != Some(b'"') {
                return Err(self.syntax());
            }
            let key = PhpKey::from_shared(Bytes::from(self.string()?));
            self.skip_whitespace();
            if self.peek() != Some(b':') {
                return Err(self.syntax());
            }
            self.pos += 1;
            self.skip_whitespace();
            let value = self.value(depth)?;
            array.insert(key, value);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(PhpValue::Array(array));
                }
                _ => return Err(self.syntax()),
            }
        }
    }

    /// JSON number grammar; integers that fit `i64` stay ints (`-0` is int 0, as in PHP).
    fn number(&mut self) -> Result<PhpValue, JsonDecodeError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.skip_digits(),
            _ => return Err(self.syntax()),
        }
        let mut is_int = true;
        if self.peek() == Some(b'.') {
            is_int = false;
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.syntax());
            }
            self.skip_digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            is_int = false;
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.syntax());
            }
            self.skip_digits();
        }
        let text = std::str::from_utf8(&self.input[start..self.pos]).expect("ascii number");
        if is_int {
            if let Ok(n) = text.parse::<i64>() {
                return Ok(PhpValue::Int(n));
            }
        }
        let x: f64 = text
            .parse()
            .map_err(|_| JsonDecodeError::Syntax { offset: start })?;
        Ok(PhpValue::Float(x))
    }

    fn skip_digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
    }

    /// A string literal starting at the opening quote, unescaped to UTF-8 bytes.
    fn string(&mut self) -> Result<Vec<u8>, JsonDecodeError> {
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let at = self.pos;
            let byte = self.peek().ok_or_else(|| self.syntax())?;
            match byte {
                b'"' => {
                    self.pos += 1;
                    return Ok(out);
                }
                b'\\' => self.escape(&mut out)?,
                0x00..=0x1f => return Err(JsonDecodeError::ControlCharacter { offset: at }),
                0x20..=0x7f => {
                    out.push(byte);
                    self.pos += 1;
                }
                _ => {
                    let len = utf8_sequence_len(&self.input[at..])
                        .ok_or(JsonDecodeError::InvalidUtf8 { offset: at })?;
                    out.extend_from_slice(&self.input[at..at + len]);
                    self.pos += len;
                }
            }
        }
    }

    fn escape(&mut self, out: &mut Vec<u8>) -> Result<(), JsonDecodeError> {
        let at = self.pos;
        self.pos += 1;
        let byte = self.peek().ok_or_else(|| self.syntax())?;
        self.pos += 1;
        let simple = match byte {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let unit = self.hex4()?;
                let c = match unit {
                    0xd800..=0xdbff => {
                        if !self.input[self.pos..].starts_with(b"\\u") {
                            return Err(JsonDecodeError::LoneSurrogate { offset: at });
                        }
                        self.pos += 2;
                        let low = self.hex4()?;
                        if !(0xdc00..=0xdfff).contains(&low) {
                            return Err(JsonDecodeError::LoneSurrogate { offset: at });
                        }
                        let code = 0x10000
                            + ((u32::from(unit) - 0xd800) << 10)
                            + (u32::from(low) - 0xdc00);
                        char::from_u32(code).expect("valid surrogate pair")
                    }
                    0xdc00..=0xdfff => return Err(JsonDecodeError::LoneSurrogate { offset: at }),
                    _ => char::from_u32(u32::from(unit)).expect("not a surrogate"),
                };
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                return Ok(());
            }
            _ => return Err(JsonDecodeError::Syntax { offset: at }),
        };
        out.push(simple);
        Ok(())
    }

    fn hex4(&mut self) -> Result<u16, JsonDecodeError> {
        let digits = self
            .input
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.syntax())?;
        let text = std::str::from_utf8(digits).map_err(|_| self.syntax())?;
        if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(self.syntax());
        }
        let unit = u16::from_str_radix(text, 16).map_err(|_| self.syntax())?;
        self.pos += 4;
        Ok(unit)
    }
}

/// Length of the valid UTF-8 sequence at the start of `bytes` (which starts with a
/// non-ASCII byte), or `None`.
fn utf8_sequence_len(bytes: &[u8]) -> Option<usize> {
    let len = match bytes[0] {
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return None,
    };
    let sequence = bytes.get(..len)?;
    std::str::from_utf8(sequence).ok().map(|_| len)
}

/// Why a value could not be mapped between [`PhpValue`] and [`serde_json::Value`]
/// without losing information.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonValueError {
    /// A string or key is not valid UTF-8; JSON strings are Unicode.
    #[error("PHP string is not UTF-8")]
    InvalidUtf8,
    /// A float is NaN or infinite; JSON has no such numbers.
    #[error("NAN or INF has no JSON form")]
    InfOrNan,
    /// A string key that PHP would store as an int (only constructible by hand); it
    /// would come back as an int key.
    #[error("string key {0:?} would come back as an int key")]
    NumericStringKey(String),
    /// An integer beyond `i64`; PHP would make it a float and lose digits.
    #[error("integer {0} does not fit i64")]
    IntOutOfRange(String),
    /// Arrays nested deeper than [`JSON_DEPTH_MAX_ARRAYS`] (what PHP's `json_encode` and
    /// `json_decode` refuse too).
    #[error("nesting deeper than {JSON_DEPTH_MAX_ARRAYS} arrays")]
    TooDeep,
}

/// Maps a PHP value to a [`serde_json::Value`], failing instead of losing data.
///
/// Mapping (and its inverse [`from_json_value`]): null, bool, int (`i64`), float (`f64`,
/// kept as a float number even when integral) and UTF-8 strings map one to one. An array
/// whose keys are exactly 0..n−1 in order becomes a JSON array, any other array a JSON
/// object whose keys are the PHP keys as decimal text, in PHP order; both come back as
/// the same PHP array because object keys are re-normalised (spec 7.3), so the int/string
/// distinction of keys survives as long as string keys are not canonical integers.
/// Errors: non-UTF-8 strings or keys, NaN/INF, and canonical-integer string keys.
/// Arrays nested deeper than [`JSON_DEPTH_MAX_ARRAYS`] fail with
/// [`JsonValueError::TooDeep`], so the recursion is bounded whatever the value.
pub fn to_json_value(value: &PhpValue) -> Result<Value, JsonValueError> {
    to_json_value_at(value, 0)
}

fn to_json_value_at(value: &PhpValue, depth: usize) -> Result<Value, JsonValueError> {
    let depth = match value {
        PhpValue::Array(_) if depth >= JSON_DEPTH_MAX_ARRAYS => {
            return Err(JsonValueError::TooDeep)
        }
        PhpValue::Array(_) => depth + 1,
        _ => depth,
    };
    Ok(match value {
        PhpValue::Null => Value::Null,
        PhpValue::Bool(b) => Value::Bool(*b),
        PhpValue::Int(n) => Value::Number(Number::from(*n)),
        PhpValue::Float(x) => Value::Number(Number::from_f64(*x).ok_or(JsonValueError::InfOrNan)?),
        PhpValue::Str(s) => Value::String(utf8(s)?),
        PhpValue::Array(array) if array.is_list() => Value::Array(
            array
                .iter()
                .map(|(_, v)| to_json_value_at(v, depth))
                .collect::<Result<_, _>>()?,
        ),
        PhpValue::Array(array) => {
            let mut map = Map::with_capacity(array.len());
            for (key, value) in array.iter() {
                let name = match key {
                    PhpKey::Int(n) => n.to_string(),
                    PhpKey::Str(s) => {
                        let name = utf8(s)?;
                        if matches!(PhpKey::from_bytes(s), PhpKey::Int(_)) {
                            return Err(JsonValueError::NumericStringKey(name));
                        }
                        name
                    }
                };
                map.insert(name, to_json_value_at(value, depth)?);
            }
            Value::Object(map)
        }
    })
}

/// Maps a [`serde_json::Value`] to a PHP value as `json_decode($text, true)` would, except
/// that an integer beyond `i64` is an error rather than a float (see [`to_json_value`]).
/// Arrays/objects nested deeper than [`JSON_DEPTH_MAX_ARRAYS`] fail with
/// [`JsonValueError::TooDeep`] (`serde_json` itself parses at most 128 levels, but a
/// `Value` can be built by other means).
pub fn from_json_value(value: &Value) -> Result<PhpValue, JsonValueError> {
    from_json_value_at(value, 0)
}

fn from_json_value_at(value: &Value, depth: usize) -> Result<PhpValue, JsonValueError> {
    let depth = match value {
        Value::Array(_) | Value::Object(_) if depth >= JSON_DEPTH_MAX_ARRAYS => {
            return Err(JsonValueError::TooDeep)
        }
        Value::Array(_) | Value::Object(_) => depth + 1,
        _ => depth,
    };
    Ok(match value {
        Value::Null => PhpValue::Null,
        Value::Bool(b) => PhpValue::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                PhpValue::Int(i)
            } else if n.is_f64() {
                PhpValue::Float(n.as_f64().ok_or(JsonValueError::InfOrNan)?)
            } else {
                return Err(JsonValueError::IntOutOfRange(n.to_string()));
            }
        }
        Value::String(s) => PhpValue::str(s),
        Value::Array(items) => {
            let mut array = PhpArray::with_capacity(items.len());
            for item in items {
                let value = from_json_value_at(item, depth)?;
                array.push(value);
            }
            PhpValue::Array(array)
        }
        Value::Object(map) => {
            let mut array = PhpArray::with_capacity(map.len());
            for (name, item) in map {
                // "5" and "05" are distinct JSON keys, but a key like "5" could collide
                // with nothing else in a map, so insert() never overwrites here.
                array.insert(
                    PhpKey::from_bytes(name.as_bytes()),
                    from_json_value_at(item, depth)?,
                );
            }
            PhpValue::Array(array)
        }
    })
}

fn utf8(bytes: &[u8]) -> Result<String, JsonValueError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| JsonValueError::InvalidUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(value: &PhpValue) -> String {
        String::from_utf8(json_encode(value, JsonEncodeOptions::default()).unwrap()).unwrap()
    }

    fn array(entries: &[(PhpKey, PhpValue)]) -> PhpValue {
        PhpValue::Array(entries.iter().cloned().collect())
    }

    #[test]
    fn default_escaping_is_php_json_encode() {
        let value = PhpValue::str("a/b\"\\\n\u{1}é😀\u{2028}\u{7f}");
        assert_eq!(
            encode(&value),
            "\"a\\/b\\\"\\\\\\n\\u0001\\u00e9\\ud83d\\ude00\\u2028\u{7f}\""
        );
        let unescaped = JsonEncodeOptions {
            unescaped_slashes: true,
            ..JsonEncodeOptions::unescaped_unicode()
        };
        let text = String::from_utf8(json_encode(&value, unescaped).unwrap()).unwrap();
        assert_eq!(text, "\"a/b\\\"\\\\\\n\\u0001é😀\\u2028\u{7f}\"");
        assert_eq!(
            json_encode(
                &PhpValue::Str(Bytes::from_static(b"\xff")),
                JsonEncodeOptions::default()
            ),
            Err(JsonEncodeError::InvalidUtf8)
        );
    }

    #[test]
    fn only_control_characters_below_space_are_escaped() {
        assert_eq!(encode(&PhpValue::str(" a b~")), "\" a b~\"");
        assert_eq!(encode(&PhpValue::str("\u{1f}")), "\"\\u001f\"");
    }

    #[test]
    fn lists_only_for_keys_zero_to_n_in_order() {
        assert_eq!(encode(&array(&[])), "[]");
        let list = array(&[
            (PhpKey::Int(0), PhpValue::Int(1)),
            (PhpKey::Int(1), PhpValue::Null),
        ]);
        assert_eq!(encode(&list), "[1,null]");
        let swapped = array(&[
            (PhpKey::Int(1), PhpValue::Int(1)),
            (PhpKey::Int(0), PhpValue::Null),
        ]);
        assert_eq!(encode(&swapped), r#"{"1":1,"0":null}"#);
        let map = array(&[(PhpKey::Int(7), PhpValue::Int(7))]);
        assert_eq!(
            encode(&array(&[(PhpKey::from_bytes(b"connections"), map)])),
            r#"{"connections":{"7":7}}"#
        );
        assert_eq!(encode(&PhpValue::Float(1e17)), "1.0e+17");
        assert_eq!(encode(&PhpValue::Float(3.0)), "3");
        assert_eq!(
            json_encode(&PhpValue::Float(f64::NAN), JsonEncodeOptions::default()),
            Err(JsonEncodeError::InfOrNan)
        );
    }

    #[test]
    fn encode_depth_is_bounded() {
        let mut value = PhpValue::Null;
        for _ in 0..3 {
            value = array(&[(PhpKey::Int(0), value)]);
        }
        let options = |depth_max| JsonEncodeOptions {
            depth_max,
            ..JsonEncodeOptions::default()
        };
        assert_eq!(json_encode(&value, options(3)).unwrap(), b"[[[null]]]");
        assert_eq!(
            json_encode(&value, options(2)),
            Err(JsonEncodeError::TooDeep { depth_max: 2 })
        );
    }

    #[test]
    fn decode_normalises_keys_and_keeps_order() {
        let decoded =
            json_decode(br#" {"7":7,"07":1,"b":[1,2.5,"\u00e9\/"],"7":8,"":null} "#).unwrap();
        let expected = array(&[
            (PhpKey::Int(7), PhpValue::Int(8)),
            (PhpKey::from_bytes(b"07"), PhpValue::Int(1)),
            (
                PhpKey::from_bytes(b"b"),
                array(&[
                    (PhpKey::Int(0), PhpValue::Int(1)),
                    (PhpKey::Int(1), PhpValue::Float(2.5)),
                    (PhpKey::Int(2), PhpValue::str("é/")),
                ]),
            ),
            (PhpKey::from_bytes(b""), PhpValue::Null),
        ]);
        assert_eq!(decoded, expected);
    }

    #[test]
    fn decode_numbers_like_php() {
        assert_eq!(json_decode(b"-0"), Ok(PhpValue::Int(0)));
        assert_eq!(
            json_decode(b"9223372036854775807"),
            Ok(PhpValue::Int(i64::MAX))
        );
        assert_eq!(
            json_decode(b"9223372036854775808"),
            Ok(PhpValue::Float(9_223_372_036_854_775_808.0))
        );
        assert_eq!(json_decode(b"1e2"), Ok(PhpValue::Float(100.0)));
        for bad in [
            &b""[..],
            b"01",
            b"1.",
            b".5",
            b"+1",
            b"1e",
            b"[1,]",
            b"{\"a\"}",
            b"nul",
            b"1 2",
        ] {
            assert!(json_decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn decode_rejects_bad_strings_with_typed_errors() {
        assert_eq!(
            json_decode(b"\"\\ud83d\""),
            Err(JsonDecodeError::LoneSurrogate { offset: 1 })
        );
        assert_eq!(
            json_decode(b"\"\\ude00\""),
            Err(JsonDecodeError::LoneSurrogate { offset: 1 })
        );
        assert_eq!(
            json_decode(b"\"\xff\""),
            Err(JsonDecodeError::InvalidUtf8 { offset: 1 })
        );
        assert_eq!(
            json_decode(b"\"\xed\xa0\x80\""),
            Err(JsonDecodeError::InvalidUtf8 { offset: 1 })
        );
        assert_eq!(
            json_decode(b"\"a\nb\""),
            Err(JsonDecodeError::ControlCharacter { offset: 2 })
        );
        assert_eq!(json_decode(b"\"\\ud83d\\ude00\""), Ok(PhpValue::str("😀")));
    }

    #[test]
    fn decode_copies_raw_utf8_and_unescapes_every_simple_escape() {
        // Raw multi-byte UTF-8 (2, 3 and 4 bytes) is copied as is, between ASCII.
        assert_eq!(
            json_decode("\"aé€😀z\"".as_bytes()),
            Ok(PhpValue::str("aé€😀z"))
        );
        assert_eq!(
            json_decode(br#""\"\\\/\b\f\n\r\t""#),
            Ok(PhpValue::Str(Bytes::from_static(b"\"\\/\x08\x0c\n\r\t")))
        );
    }

    #[test]
    fn decode_literals_empty_objects_exponents_and_object_depth() {
        assert_eq!(
            json_decode(b"[true,false,null]"),
            Ok(array(&[
                (PhpKey::Int(0), PhpValue::Bool(true)),
                (PhpKey::Int(1), PhpValue::Bool(false)),
                (PhpKey::Int(2), PhpValue::Null),
            ]))
        );
        assert_eq!(
            json_decode(br#"{ "a" : { } , "b" : [ ] }"#),
            Ok(array(&[
                (PhpKey::from_bytes(b"a"), PhpValue::Array(PhpArray::new())),
                (PhpKey::from_bytes(b"b"), PhpValue::Array(PhpArray::new())),
            ]))
        );
        assert_eq!(json_decode(b"{}"), Ok(PhpValue::Array(PhpArray::new())));
        // Signed exponents.
        assert_eq!(json_decode(b"1e-2"), Ok(PhpValue::Float(0.01)));
        assert_eq!(json_decode(b"2E+1"), Ok(PhpValue::Float(20.0)));
        assert!(json_decode_with_depth(br#"{"a":{"b":1}}"#, 2).is_ok());
        assert_eq!(
            json_decode_with_depth(br#"{"a":{"b":1}}"#, 1),
            Err(JsonDecodeError::TooDeep { depth_max: 1 })
        );
    }

    #[test]
    fn decode_depth_is_bounded_at_the_limit() {
        assert!(json_decode_with_depth(b"[[1]]", 2).is_ok());
        assert_eq!(
            json_decode_with_depth(b"[[[1]]]", 2),
            Err(JsonDecodeError::TooDeep { depth_max: 2 })
        );
        let deep = format!(
            "{}{}",
            "[".repeat(JSON_DEPTH_MAX_DEFAULT),
            "]".repeat(JSON_DEPTH_MAX_DEFAULT)
        );
        assert!(json_decode(deep.as_bytes()).is_ok());
        let deeper = format!("[{deep}]");
        assert!(json_decode(deeper.as_bytes()).is_err());
    }

    #[test]
    fn serde_mapping_refuses_lossy_values() {
        assert_eq!(
            to_json_value(&PhpValue::Float(f64::INFINITY)),
            Err(JsonValueError::InfOrNan)
        );
        assert_eq!(
            to_json_value(&PhpValue::Str(Bytes::from_static(b"\xc3"))),
            Err(JsonValueError::InvalidUtf8)
        );
        let odd_key = array(&[(PhpKey::Str(Bytes::from_static(b"5")), PhpValue::Null)]);
        assert!(matches!(
            to_json_value(&odd_key),
            Err(JsonValueError::NumericStringKey(_))
        ));
        let big: Value = serde_json::from_str("18446744073709551615").unwrap();
        assert!(matches!(
            from_json_value(&big),
            Err(JsonValueError::IntOutOfRange(_))
        ));
        let map = array(&[
            (PhpKey::Int(1), PhpValue::Float(3.0)),
            (PhpKey::from_bytes(b"05"), PhpValue::Int(3)),
        ]);
        let json = to_json_value(&map).unwrap();
        assert_eq!(json.to_string(), r#"{"1":3.0,"05":3}"#);
        assert_eq!(from_json_value(&json), Ok(map));
    }

    #[test]
    fn serde_mapping_is_bounded_at_json_depth_max_arrays() {
        let mut php = PhpValue::Null;
        let mut json = Value::Null;
        for _ in 0..JSON_DEPTH_MAX_ARRAYS {
            php = array(&[(PhpKey::Int(0), php)]);
            json = Value::Array(vec![json]);
        }
        assert_eq!(to_json_value(&php), Ok(json.clone()));
        assert_eq!(from_json_value(&json), Ok(php.clone()));
        let deeper_php = array(&[(PhpKey::Int(0), php)]);
        assert_eq!(to_json_value(&deeper_php), Err(JsonValueError::TooDeep));
        let deeper_json = Value::Array(vec![json.clone()]);
        assert_eq!(from_json_value(&deeper_json), Err(JsonValueError::TooDeep));
        let mut object = Map::new();
        object.insert("k".to_string(), json);
        assert_eq!(
            from_json_value(&Value::Object(object)),
            Err(JsonValueError::TooDeep)
        );
    }
}
