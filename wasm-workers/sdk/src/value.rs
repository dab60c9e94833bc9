//! PHP-shaped values and their wire encoding across the ABI ("GWV", see ABI.md section 3).
//!
//! A [`Value`] is what a PHP worker would hold in a variable: null, bool, int, float, byte
//! string, or an ordered array keyed by ints or byte strings. Sessions, messages and query
//! results all travel as values.

use std::vec::Vec;

/// An array key: PHP keeps int keys and string keys apart (`1` and `"a"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// An int key.
    Int(i64),
    /// A byte-string key.
    Str(Vec<u8>),
}

/// One PHP value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A 64-bit int.
    Int(i64),
    /// A double.
    Float(f64),
    /// A byte string (not necessarily UTF-8).
    Str(Vec<u8>),
    /// An ordered array.
    Array(Vec<(Key, Value)>),
}

const TAG_NULL: u8 = 0x00;
const TAG_FALSE: u8 = 0x01;
const TAG_TRUE: u8 = 0x02;
const TAG_INT: u8 = 0x03;
const TAG_FLOAT: u8 = 0x04;
const TAG_STR: u8 = 0x05;
const TAG_ARRAY: u8 = 0x06;

/// Nesting deeper than this is refused by the decoder (the host applies the same bound).
pub const DEPTH_MAX: usize = 64;

impl Key {
    /// The key PHP stores for the string `s`: canonical decimal integers become int keys.
    pub fn from_str_like(s: &[u8]) -> Key {
        match canonical_int(s) {
            Some(n) => Key::Int(n),
            None => Key::Str(s.to_vec()),
        }
    }

    /// The key as text (`(string)$key`).
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Key::Int(n) => n.to_string().into_bytes(),
            Key::Str(s) => s.clone(),
        }
    }
}

fn canonical_int(s: &[u8]) -> Option<i64> {
    let digits = if s.first() == Some(&b'-') { &s[1..] } else { s };
    if digits.is_empty() || !digits.iter().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if digits[0] == b'0' && (digits.len() > 1 || digits.len() != s.len()) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse::<i64>().ok()
}

impl Value {
    /// A string value from text.
    pub fn str(s: &str) -> Value {
        Value::Str(s.as_bytes().to_vec())
    }

    /// An empty array.
    pub fn array() -> Value {
        Value::Array(Vec::new())
    }

    /// A list (keys 0..n) of values.
    pub fn list(items: Vec<Value>) -> Value {
        Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| (Key::Int(i as i64), v))
                .collect(),
        )
    }

    /// The bytes of a string value.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The text of a string value that is UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The int of an int value.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            _ => None,
        }
    }

    /// The entries of an array value.
    pub fn entries(&self) -> Option<&[(Key, Value)]> {
        match self {
            Value::Array(e) => Some(e),
            _ => None,
        }
    }

    /// `$array[key]` for a string key (normalised like PHP: `"7"` finds int key 7).
    pub fn get(&self, key: &str) -> Option<&Value> {
        let key = Key::from_str_like(key.as_bytes());
        self.entries()?
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    /// `$array[key] = value`; a non-array becomes an empty array first (like PHP on null).
    pub fn set(&mut self, key: &str, value: Value) {
        if !matches!(self, Value::Array(_)) {
            *self = Value::array();
        }
        let key = Key::from_str_like(key.as_bytes());
        if let Value::Array(entries) = self {
            match entries.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = value,
                None => entries.push((key, value)),
            }
        }
    }

    /// `unset($array[key])`.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let key = Key::from_str_like(key.as_bytes());
        if let Value::Array(entries) = self {
            let i = entries.iter().position(|(k, _)| *k == key)?;
            return Some(entries.remove(i).1);
        }
        None
    }

    /// The values of an array (keys dropped), or the value itself as a one-item list.
    pub fn values(&self) -> Vec<&Value> {
        match self {
            Value::Array(e) => e.iter().map(|(_, v)| v).collect(),
            other => vec![other],
        }
    }

    /// Appends the GWV encoding of `self` to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Null => out.push(TAG_NULL),
            Value::Bool(false) => out.push(TAG_FALSE),
            Value::Bool(true) => out.push(TAG_TRUE),
            Value::Int(n) => {
                out.push(TAG_INT);
                out.extend_from_slice(&n.to_le_bytes());
            }
            Value::Float(f) => {
                out.push(TAG_FLOAT);
                out.extend_from_slice(&f.to_le_bytes());
            }
            Value::Str(s) => encode_str(s, out),
            Value::Array(entries) => {
                out.push(TAG_ARRAY);
                out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
                for (k, v) in entries {
                    match k {
                        Key::Int(n) => {
                            out.push(TAG_INT);
                            out.extend_from_slice(&n.to_le_bytes());
                        }
                        Key::Str(s) => encode_str(s, out),
                    }
                    v.encode_into(out);
                }
            }
        }
    }

    /// The GWV encoding of `self`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Decodes one GWV value that fills `bytes` exactly; `None` when malformed.
    pub fn decode(bytes: &[u8]) -> Option<Value> {
        let mut r = Reader { bytes, at: 0 };
        let v = r.value(0)?;
        if r.at == bytes.len() {
            Some(v)
        } else {
            None
        }
    }
}

fn encode_str(s: &[u8], out: &mut Vec<u8>) {
    out.push(TAG_STR);
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let s = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(s)
    }

    fn u32(&mut self) -> Option<usize> {
        let b = self.take(4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    fn u64(&mut self) -> Option<[u8; 8]> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Some(a)
    }

    fn value(&mut self, depth: usize) -> Option<Value> {
        let tag = *self.take(1)?.first()?;
        Some(match tag {
            TAG_NULL => Value::Null,
            TAG_FALSE => Value::Bool(false),
            TAG_TRUE => Value::Bool(true),
            TAG_INT => Value::Int(i64::from_le_bytes(self.u64()?)),
            TAG_FLOAT => Value::Float(f64::from_le_bytes(self.u64()?)),
            TAG_STR => {
                let n = self.u32()?;
                Value::Str(self.take(n)?.to_vec())
            }
            TAG_ARRAY => {
                if depth >= DEPTH_MAX {
                    return None;
                }
                let count = self.u32()?;
                // Every entry takes at least two bytes: refuse counts the input cannot hold.
                if count > (self.bytes.len() - self.at) / 2 {
                    return None;
                }
                let mut entries = Vec::with_capacity(count);
                for _ in 0..count {
                    let key = match *self.take(1)?.first()? {
                        TAG_INT => Key::Int(i64::from_le_bytes(self.u64()?)),
                        TAG_STR => {
                            let n = self.u32()?;
                            Key::Str(self.take(n)?.to_vec())
                        }
                        _ => return None,
                    };
                    let v = self.value(depth + 1)?;
                    entries.push((key, v));
                }
                Value::Array(entries)
            }
            _ => return None,
        })
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::str(s)
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Str(s.into_bytes())
    }
}

impl From<Vec<u8>> for Value {
    fn from(s: Vec<u8>) -> Value {
        Value::Str(s)
    }
}

impl From<&[u8]> for Value {
    fn from(s: &[u8]) -> Value {
        Value::Str(s.to_vec())
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Value {
        Value::Int(n)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}
