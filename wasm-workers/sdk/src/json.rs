//! A tiny JSON codec over [`Value`], shaped like PHP's `json_decode($text, true)` and
//! `json_encode($value, JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES)`: objects become
//! arrays with string keys (canonical integer keys become ints), arrays whose keys are
//! exactly 0..n-1 encode as JSON lists, every other array as an object.

use crate::value::{Key, Value};

/// Nesting deeper than this is refused by the parser.
pub const DEPTH_MAX: usize = 64;

/// Parses one JSON document; `None` when the text is not JSON.
pub fn parse(text: &[u8]) -> Option<Value> {
    parse_with_depth(text, DEPTH_MAX)
}

/// [`parse`] allowing arrays and objects to nest `depth_max` deep (PHP's `json_decode`
/// allows [`PHP_DEPTH_MAX`]).
pub fn parse_with_depth(text: &[u8], depth_max: usize) -> Option<Value> {
    let mut p = Parser {
        s: text,
        at: 0,
        depth_max,
    };
    p.ws();
    let v = p.value(0)?;
    p.ws();
    if p.at == text.len() {
        Some(v)
    } else {
        None
    }
}

/// PHP's default nesting limit of `json_encode` and `json_decode` (`$depth = 512`).
pub const PHP_DEPTH_MAX: usize = 512;

/// Why PHP's `json_encode` would return `false` for a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// A float is NaN or infinite ("Inf and NaN cannot be JSON encoded").
    NonFinite,
    /// Arrays nest deeper than [`PHP_DEPTH_MAX`] ("Maximum stack depth exceeded").
    Depth,
}

/// The JSON text of `value`, lenient: NaN and infinities become `null` (where PHP would
/// fail), no depth limit. Otherwise byte for byte [`encode_php`].
pub fn encode(value: &Value) -> String {
    let mut out = String::new();
    let _ = write_value(value, 0, true, &mut out);
    out
}

/// Exactly `json_encode($value, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE |
/// JSON_INVALID_UTF8_SUBSTITUTE)`, or the reason PHP would return `false`.
pub fn encode_php(value: &Value) -> Result<String, EncodeError> {
    let mut out = String::new();
    encode_value_into(value, 0, &mut out)?;
    Ok(out)
}

/// Appends the JSON text of `value` found inside `depth` enclosing arrays (for callers that
/// build their own outer objects and must keep PHP's depth limit).
pub fn encode_value_into(value: &Value, depth: usize, out: &mut String) -> Result<(), EncodeError> {
    write_value(value, depth, false, out)
}

fn write_value(
    value: &Value,
    depth: usize,
    lenient: bool,
    out: &mut String,
) -> Result<(), EncodeError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(n) => out.push_str(&n.to_string()),
        Value::Float(f) => match crate::float::json_repr(*f) {
            Some(text) => out.push_str(&text),
            None if lenient => out.push_str("null"),
            None => return Err(EncodeError::NonFinite),
        },
        Value::Str(s) => encode_str_into(s, out),
        Value::Array(entries) => {
            if depth >= PHP_DEPTH_MAX && !lenient {
                return Err(EncodeError::Depth);
            }
            let is_list = entries
                .iter()
                .enumerate()
                .all(|(i, (k, _))| *k == Key::Int(i as i64));
            out.push(if is_list { '[' } else { '{' });
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                if !is_list {
                    encode_str_into(&k.to_bytes(), out);
                    out.push(':');
                }
                write_value(v, depth + 1, lenient, out)?;
            }
            out.push(if is_list { ']' } else { '}' });
        }
    }
    Ok(())
}

/// Appends `s` as a JSON string the way PHP escapes it with `JSON_UNESCAPED_SLASHES |
/// JSON_UNESCAPED_UNICODE | JSON_INVALID_UTF8_SUBSTITUTE`: `"` `\\` and control characters
/// escaped (`\b \f \n \r \t`, else `\u00xx`), U+2028/U+2029 escaped, every invalid UTF-8
/// sequence replaced by one U+FFFD using PHP's decoder's notion of a sequence.
pub fn encode_str_into(s: &[u8], out: &mut String) {
    out.push('"');
    let mut pos = 0;
    while pos < s.len() {
        let c = s[pos];
        if c < 0x80 {
            match c {
                b'"' => out.push_str("\\\""),
                b'\\' => out.push_str("\\\\"),
                0x08 => out.push_str("\\b"),
                0x0c => out.push_str("\\f"),
                b'\n' => out.push_str("\\n"),
                b'\r' => out.push_str("\\r"),
                b'\t' => out.push_str("\\t"),
                c if c < 0x20 => out.push_str(&format!("\\u{:04x}", c)),
                c => out.push(c as char),
            }
            pos += 1;
            continue;
        }
        match next_utf8(s, pos) {
            Ok((ch, len)) => {
                if ch == '\u{2028}' || ch == '\u{2029}' {
                    out.push_str(&format!("\\u{:04x}", ch as u32));
                } else {
                    out.push(ch);
                }
                pos += len;
            }
            Err(skip) => {
                out.push('\u{fffd}');
                pos += skip;
            }
        }
    }
    out.push('"');
}

/// PHP's `php_next_utf8_char` at `pos` (a non-ASCII byte): the character and its length,
/// or how many bytes the invalid sequence covers (UTR #36 strategy 2: a following byte
/// that could start a valid sequence is not swallowed).
fn next_utf8(s: &[u8], pos: usize) -> Result<(char, usize), usize> {
    let lead = |b: u8| b < 0x80 || (0xc2..=0xf4).contains(&b);
    let trail = |b: u8| (0x80..=0xbf).contains(&b);
    let avail = s.len() - pos;
    let at = |i: usize| s[pos + i];
    let c = at(0);
    let (need, init) = match c {
        0xc2..=0xdf => (2, (c & 0x1f) as u32),
        0xe0..=0xef => (3, (c & 0x0f) as u32),
        0xf0..=0xf4 => (4, (c & 0x07) as u32),
        _ => return Err(1),
    };
    if (1..need).any(|i| i >= avail || !trail(at(i))) {
        // The sequence ends before the first missing byte or byte that could start one.
        let end = (1..need).find(|&i| i >= avail || lead(at(i)));
        return Err(end.unwrap_or(need));
    }
    let mut cp = init;
    for i in 1..need {
        cp = (cp << 6) | (at(i) & 0x3f) as u32;
    }
    let min = [0, 0, 0x80, 0x800, 0x10000][need];
    if cp < min || cp > 0x10ffff || (0xd800..=0xdfff).contains(&cp) {
        return Err(need);
    }
    char::from_u32(cp).map(|ch| (ch, need)).ok_or(need)
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
    /// Arrays and objects may nest this deep.
    depth_max: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    fn eat(&mut self, lit: &[u8]) -> Option<()> {
        if self.s.get(self.at..self.at + lit.len())? == lit {
            self.at += lit.len();
            Some(())
        } else {
            None
        }
    }

    /// A value inside `depth` enclosing arrays and objects.
    fn value(&mut self, depth: usize) -> Option<Value> {
        let opens = matches!(self.peek()?, b'[' | b'{');
        if opens && depth >= self.depth_max {
            return None;
        }
        match self.peek()? {
            b'n' => self.eat(b"null").map(|_| Value::Null),
            b't' => self.eat(b"true").map(|_| Value::Bool(true)),
            b'f' => self.eat(b"false").map(|_| Value::Bool(false)),
            b'"' => self.string().map(Value::Str),
            b'[' => self.list(depth),
            b'{' => self.object(depth),
            _ => self.number(),
        }
    }

    fn list(&mut self, depth: usize) -> Option<Value> {
        self.at += 1;
        let mut items = Vec::new();
        self.ws();
        if self.peek()? == b']' {
            self.at += 1;
            return Some(Value::list(items));
        }
        loop {
            self.ws();
            items.push(self.value(depth + 1)?);
            self.ws();
            match self.peek()? {
                b',' => self.at += 1,
                b']' => {
                    self.at += 1;
                    return Some(Value::list(items));
                }
                _ => return None,
            }
        }
    }

    fn object(&mut self, depth: usize) -> Option<Value> {
        self.at += 1;
        let mut obj = Value::array();
        self.ws();
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(obj);
        }
        loop {
            self.ws();
            if self.peek()? != b'"' {
                return None;
            }
            let key = self.string()?;
            self.ws();
            self.eat(b":")?;
            self.ws();
            let v = self.value(depth + 1)?;
            // Later duplicates overwrite earlier ones, in place (as PHP does).
            let key = Key::from_str_like(&key);
            if let Value::Array(entries) = &mut obj {
                match entries.iter_mut().find(|(k, _)| *k == key) {
                    Some(slot) => slot.1 = v,
                    None => entries.push((key, v)),
                }
            }
            self.ws();
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Some(obj);
                }
                _ => return None,
            }
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let h = self.s.get(self.at..self.at + 4)?;
        let h = std::str::from_utf8(h).ok()?;
        let n = u32::from_str_radix(h, 16).ok()?;
        self.at += 4;
        Some(n)
    }

    fn string(&mut self) -> Option<Vec<u8>> {
        self.at += 1;
        let mut out = Vec::new();
        loop {
            let c = self.peek()?;
            self.at += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let e = self.peek()?;
                    self.at += 1;
                    match e {
                        b'"' => out.push(b'"'),
                        b'\\' => out.push(b'\\'),
                        b'/' => out.push(b'/'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let mut cp = self.hex4()?;
                            if (0xD800..0xDC00).contains(&cp) {
                                self.eat(b"\\u")?;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return None;
                                }
                                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                            }
                            let ch = char::from_u32(cp)?;
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return None,
                    }
                }
                c if c < 0x20 => return None,
                c => out.push(c),
            }
        }
        std::str::from_utf8(&out).ok()?;
        Some(out)
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
        self.at - start
    }

    /// RFC 8259 numbers only (`-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`), as PHP's
    /// scanner: ints that fit i64 are ints, everything else a float.
    fn number(&mut self) -> Option<Value> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        let int_start = self.at;
        if self.digits() == 0 || (self.s[int_start] == b'0' && self.at - int_start > 1) {
            return None;
        }
        let mut float = false;
        if self.peek() == Some(b'.') {
            self.at += 1;
            if self.digits() == 0 {
                return None;
            }
            float = true;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            if self.digits() == 0 {
                return None;
            }
            float = true;
        }
        let text = std::str::from_utf8(&self.s[start..self.at]).ok()?;
        if !float {
            if let Ok(n) = text.parse::<i64>() {
                return Some(Value::Int(n));
            }
        }
        // Integers beyond i64 become floats, as in PHP.
        text.parse::<f64>().ok().map(Value::Float)
    }
}
