//! The PHP value model: the subset of PHP values that GatewayWorker puts on the wire.
//!
//! PHP arrays are ordered maps whose keys are ints or byte strings; a string key that is
//! the canonical decimal form of an `i64` is stored as an int key (spec 7.3). Strings are
//! byte strings, not UTF-8.

pub mod body;

use bytes::Bytes;

/// One PHP value of the subset GatewayWorker uses.
#[derive(Debug, Clone, PartialEq)]
pub enum PhpValue {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A signed 64-bit integer.
    Int(i64),
    /// An IEEE 754 double.
    Float(f64),
    /// A byte string (not necessarily UTF-8).
    Str(Bytes),
    /// An ordered array with int or string keys.
    Array(PhpArray),
}

/// A PHP array key: ints and byte strings are distinct keys (`1` and `"a"`), while the
/// string `"1"` is normalised to the int `1` by [`PhpKey::from_bytes`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PhpKey {
    /// An int key.
    Int(i64),
    /// A string key that is not the canonical decimal form of an `i64`.
    Str(Bytes),
}

/// An ordered PHP array: insertion order is iteration order; assigning to an existing
/// key keeps its position.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PhpArray {
    entries: Vec<(PhpKey, PhpValue)>,
}

impl PhpKey {
    /// The key PHP stores for the string `bytes`: an int key when `bytes` is the canonical
    /// decimal form of an `i64` (`"123"`, `"-5"`; not `"0123"`, `"-0"`, `" 7"`), else a
    /// string key.
    pub fn from_bytes(bytes: &[u8]) -> PhpKey {
        match canonical_i64(bytes) {
            Some(n) => PhpKey::Int(n),
            None => PhpKey::Str(Bytes::copy_from_slice(bytes)),
        }
    }

    /// Like [`PhpKey::from_bytes`], reusing `bytes` without copying when it stays a string.
    pub fn from_shared(bytes: Bytes) -> PhpKey {
        match canonical_i64(&bytes) {
            Some(n) => PhpKey::Int(n),
            None => PhpKey::Str(bytes),
        }
    }

    /// The key as PHP prints it (`(string)$key`).
    pub fn to_bytes(&self) -> Bytes {
        match self {
            PhpKey::Int(n) => Bytes::from(n.to_string()),
            PhpKey::Str(s) => s.clone(),
        }
    }
}

/// Parses `bytes` as PHP's canonical decimal integer string, the only strings PHP turns
/// into int array keys.
fn canonical_i64(bytes: &[u8]) -> Option<i64> {
    let digits = bytes.strip_prefix(b"-").unwrap_or(bytes);
    let first = *digits.first()?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // "0" is canonical, "-0" and "01" are not.
    if first == b'0' && (digits.len() > 1 || bytes.len() != digits.len()) {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse::<i64>().ok()
}

impl PhpArray {
    /// An empty array.
    pub fn new() -> PhpArray {
        PhpArray {
            entries: Vec::new(),
        }
    }

    /// An empty array with room for `capacity` entries.
    pub fn with_capacity(capacity: usize) -> PhpArray {
        PhpArray {
            entries: Vec::with_capacity(capacity),
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the array has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn position(&self, key: &PhpKey) -> Option<usize> {
        self.entries.iter().position(|(k, _)| k == key)
    }

    /// The value stored under `key`.
    pub fn get(&self, key: &PhpKey) -> Option<&PhpValue> {
        self.position(key).map(|i| &self.entries[i].1)
    }

    /// The value stored under `key`, mutably.
    pub fn get_mut(&mut self, key: &PhpKey) -> Option<&mut PhpValue> {
        self.position(key).map(move |i| &mut self.entries[i].1)
    }

    /// The value stored under the string key `key` (normalised like PHP does).
    pub fn get_str(&self, key: &str) -> Option<&PhpValue> {
        self.get(&PhpKey::from_bytes(key.as_bytes()))
    }

    /// `$array[key] = value`: overwrites in place when `key` exists, else appends.
    pub fn insert(&mut self, key: PhpKey, value: PhpValue) {
        match self.position(&key) {
            Some(i) => self.entries[i].1 = value,
            None => self.entries.push((key, value)),
        }
    }

    /// Appends without looking for an existing key. The caller guarantees `key` is new
    /// (decoders of formats with unique keys use this to stay linear).
    pub fn push_unique(&mut self, key: PhpKey, value: PhpValue) {
        debug_assert!(
            self.position(&key).is_none(),
            "push_unique with an existing key"
        );
        self.entries.push((key, value));
    }

    /// `$array[] = value`: appends under the next int key (one past the largest int key
    /// ever used, or 0).
    pub fn push(&mut self, value: PhpValue) {
        let next = self
            .entries
            .iter()
            .filter_map(|(k, _)| match k {
                PhpKey::Int(n) => Some(n.saturating_add(1)),
                PhpKey::Str(_) => None,
            })
            .max()
            .unwrap_or(0)
            .max(0);
        self.entries.push((PhpKey::Int(next), value));
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &PhpKey) -> Option<PhpValue> {
        self.position(key).map(|i| self.entries.remove(i).1)
    }

    /// Entries in PHP iteration order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&PhpKey, &PhpValue)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// Consumes the array into its entries, in order.
    pub fn into_entries(self) -> Vec<(PhpKey, PhpValue)> {
        self.entries
    }
}

impl FromIterator<(PhpKey, PhpValue)> for PhpArray {
    fn from_iter<I: IntoIterator<Item = (PhpKey, PhpValue)>>(iter: I) -> PhpArray {
        let mut array = PhpArray::new();
        for (k, v) in iter {
            array.insert(k, v);
        }
        array
    }
}

impl PhpValue {
    /// A string value from UTF-8 text.
    pub fn str(text: &str) -> PhpValue {
        PhpValue::Str(Bytes::copy_from_slice(text.as_bytes()))
    }

    /// PHP's `empty()`/falsy test: null, false, 0, 0.0, `""`, `"0"` and `[]` are empty.
    pub fn is_empty(&self) -> bool {
        match self {
            PhpValue::Null => true,
            PhpValue::Bool(b) => !b,
            PhpValue::Int(n) => *n == 0,
            PhpValue::Float(f) => *f == 0.0,
            PhpValue::Str(s) => is_empty_bytes(s),
            PhpValue::Array(a) => a.is_empty(),
        }
    }
}

/// PHP's `empty()` on a string: `""` and `"0"` are empty.
pub fn is_empty_bytes(bytes: &[u8]) -> bool {
    bytes.is_empty() || bytes == b"0"
}
