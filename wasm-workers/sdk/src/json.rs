//! A tiny JSON codec over [`Value`], shaped like PHP's `json_decode($text, true)` and
//! `json_encode($value, JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES)`: objects become
//! arrays with string keys (canonical integer keys become ints), arrays whose keys are
//! exactly 0..n-1 encode as JSON lists, every other array as an object.

use crate::value::{Key, Value};

/// Nesting deeper than this is refused by the parser.
pub const DEPTH_MAX: usize = 64;

/// Parses one JSON document; `None` when the text is not JSON.
pub fn parse(text: &[u8]) -> Option<Value> {
    let mut p = Parser { s: text, at: 0 };
    p.ws();
    let v = p.value(0)?;
    p.ws();
    if p.at == text.len() {
        Some(v)
    } else {
        None
    }
}

/// The JSON text of `value` (non-UTF-8 bytes in strings become U+FFFD; NaN and infinities
/// become `null`, where PHP would fail).
pub fn encode(value: &Value) -> String {
    let mut out = String::new();
    encode_into(value, &mut out);
    out
}

fn encode_into(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(n) => out.push_str(&n.to_string()),
        Value::Float(f) => encode_float(*f, out),
        Value::Str(s) => encode_str(s, out),
        Value::Array(entries) => {
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
                    encode_str(&k.to_bytes(), out);
                    out.push(':');
                }
                encode_into(v, out);
            }
            out.push(if is_list { ']' } else { '}' });
        }
    }
}

fn encode_float(f: f64, out: &mut String) {
    if !f.is_finite() {
        out.push_str("null");
    } else if f == f.trunc() && f.abs() < 1e15 {
        // PHP prints integral floats with ".0" under serialize_precision -1.
        out.push_str(&format!("{:.1}", f));
    } else {
        out.push_str(&format!("{}", f));
    }
}

fn encode_str(s: &[u8], out: &mut String) {
    let text = String::from_utf8_lossy(s);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
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

    fn value(&mut self, depth: usize) -> Option<Value> {
        if depth > DEPTH_MAX {
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

    fn number(&mut self) -> Option<Value> {
        let start = self.at;
        let mut float = false;
        while let Some(c) = self.peek() {
            match c {
                b'0'..=b'9' | b'-' | b'+' => {}
                b'.' | b'e' | b'E' => float = true,
                _ => break,
            }
            self.at += 1;
        }
        let text = std::str::from_utf8(&self.s[start..self.at]).ok()?;
        if text.is_empty() {
            return None;
        }
        if !float {
            if let Ok(n) = text.parse::<i64>() {
                return Some(Value::Int(n));
            }
        }
        // Integers beyond i64 become floats, as in PHP.
        text.parse::<f64>().ok().map(Value::Float)
    }
}
