//! The PHP value model: the subset of PHP values that GatewayWorker puts on the wire.
//!
//! PHP arrays are ordered maps whose keys are ints or byte strings; a string key that is
//! the canonical decimal form of an `i64` is stored as an int key (spec 7.3). Strings are
//! byte strings, not UTF-8.
//!
//! * [`serialize`] / [`unserialize`]: PHP's `serialize()` format (spec 7.1), with a
//!   strict decoder (typed errors, bounded) and the lenient one GatewayWorker relies on.
//! * [`float`]: PHP's float-to-text conversions (14 digits for strings, shortest for
//!   serialize and JSON).
//! * [`body`]: frame bodies (spec 1.2).
//! * [`merge`]: `array_replace_recursive` and the session update of cmd 9 (spec 7.4).
//! * [`json`]: `json_encode`/`json_decode` as PHP does them, and a checked mapping to
//!   `serde_json::Value`.
//!
//! # Depth bounds
//!
//! Depth is counted in nested arrays, the outermost array counting 1 (a scalar is depth
//! 0). Every decoder that builds a [`PhpValue`] from untrusted bytes bounds it:
//!
//! | decoder | bound | past it |
//! | --- | --- | --- |
//! | [`unserialize`] (strict and lenient) | [`UnserializeLimits::DEPTH_MAX_DEFAULT`](unserialize::UnserializeLimits::DEPTH_MAX_DEFAULT) = 512 non-empty arrays (+1 empty) | error / `false` |
//! | [`json::json_decode`], [`json::from_json_value`] | [`json::JSON_DEPTH_MAX_ARRAYS`] = 512 | error |
//! | `parse_str` (websocket query string) | `PARSE_STR_NESTING_MAX_LEVELS` = 64 brackets | the variable is deleted, as in PHP |
//! | GWV (guest values, `wasm::value`) | `GWV_DEPTH_MAX_ARRAYS` = 64 | error |
//! | [`merge::array_replace_recursive`] | result no deeper than its deepest input | — |
//!
//! So a value a peer can make us build, even wrapped in the few arrays the gateway and
//! worker put around it, stays under [`PEER_VALUE_DEPTH_MAX_ARRAYS`]. The recursive
//! consumers (`serialize`, `json_encode`, `to_json_value`, GWV `encode`, `Clone`,
//! `PartialEq`, `Debug`) recurse once per level, and are tested at that depth on a 2 MiB
//! stack (the default of the gateway's and worker's threads) in a debug build. Dropping is iterative (see [`PhpArray`]'s `Drop`), so
//! even a hand-built value of any depth drops in constant stack space.

pub mod body;
pub mod float;
pub mod json;
pub mod merge;
pub mod serialize;
pub mod unserialize;

use std::collections::hash_map::RandomState;

use bytes::Bytes;

/// The deepest array nesting (outermost array = 1) that a value built from peer input can
/// reach, with a wide margin: the decoders stop at 513 (see the module's depth table),
/// and the gateway and worker wrap such values in at most a few more arrays. Recursive
/// consumers are safe up to this depth (tested on a 2 MiB stack, debug build).
pub const PEER_VALUE_DEPTH_MAX_ARRAYS: usize = 1024;

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
///
/// Small arrays are searched linearly; from [`PhpArray::INDEX_FROM_LEN`] entries on a hash
/// index maps keys to positions so lookups stay O(1) however hostile the keys' order.
/// The index uses std's randomly keyed SipHash (`RandomState`): keys come from peers (a
/// client's JSON, a session), and with fixed keys colliding ones could be computed
/// offline. The index never decides iteration order, so nothing observable depends on
/// the random key.
#[derive(Clone, Default)]
pub struct PhpArray {
    entries: Vec<(PhpKey, PhpValue)>,
    /// Key → position in `entries`; present once the array reached `INDEX_FROM_LEN`.
    index: Option<KeyIndex>,
    /// PHP's `nNextFreeElement`: one past the largest int key ever inserted (at least 0);
    /// wider than `i64` so that "`i64::MAX` is taken" is representable.
    next_free: i128,
}

type KeyIndex = hashbrown::HashMap<PhpKey, usize, RandomState>;

impl PartialEq for PhpArray {
    /// Same entries in the same order (the index and the next free key are bookkeeping).
    fn eq(&self, other: &PhpArray) -> bool {
        self.entries == other.entries
    }
}

impl std::fmt::Debug for PhpArray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(k, v)| (k, v)))
            .finish()
    }
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
    /// Length from which lookups go through the hash index instead of a linear scan.
    pub const INDEX_FROM_LEN: usize = 16;

    /// An empty array.
    pub fn new() -> PhpArray {
        PhpArray::default()
    }

    /// An empty array with room for `capacity` entries.
    pub fn with_capacity(capacity: usize) -> PhpArray {
        PhpArray {
            entries: Vec::with_capacity(capacity),
            index: None,
            next_free: 0,
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
        match &self.index {
            Some(index) => index.get(key).copied(),
            None => self.entries.iter().position(|(k, _)| k == key),
        }
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

    /// True when `key` is present (PHP's `array_key_exists`).
    pub fn contains_key(&self, key: &PhpKey) -> bool {
        self.position(key).is_some()
    }

    /// `$array[key] = value`: overwrites in place when `key` exists, else appends.
    pub fn insert(&mut self, key: PhpKey, value: PhpValue) {
        match self.position(&key) {
            Some(i) => self.entries[i].1 = value,
            None => self.append(key, value),
        }
    }

    /// Appends without looking for an existing key. The caller guarantees `key` is new
    /// (decoders of formats with unique keys use this to stay linear).
    pub fn push_unique(&mut self, key: PhpKey, value: PhpValue) {
        debug_assert!(
            self.position(&key).is_none(),
            "push_unique with an existing key"
        );
        self.append(key, value);
    }

    /// `$array[] = value`: appends under the next int key (one past the largest int key
    /// ever used, or 0) and returns that key. Once `i64::MAX` has been used nothing is
    /// added and `None` is returned, as in PHP (which warns "next element is already
    /// occupied").
    pub fn push(&mut self, value: PhpValue) -> Option<i64> {
        let next = i64::try_from(self.next_free).ok()?;
        self.append(PhpKey::Int(next), value);
        Some(next)
    }

    /// Removes `key`, returning its value (O(n): later entries move up).
    pub fn remove(&mut self, key: &PhpKey) -> Option<PhpValue> {
        let i = self.position(key)?;
        let (_, value) = self.entries.remove(i);
        if let Some(index) = &mut self.index {
            index.remove(key);
            for position in index.values_mut() {
                if *position > i {
                    *position -= 1;
                }
            }
        }
        Some(value)
    }

    /// Entries in PHP iteration order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&PhpKey, &PhpValue)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// Consumes the array into its entries, in order.
    pub fn into_entries(mut self) -> Vec<(PhpKey, PhpValue)> {
        std::mem::take(&mut self.entries)
    }

    /// True when the keys are exactly 0, 1, …, n−1 in this order (PHP's
    /// `array_is_list`, which decides between a JSON list and a JSON object).
    pub fn is_list(&self) -> bool {
        self.entries
            .iter()
            .enumerate()
            .all(|(i, (k, _))| *k == PhpKey::Int(i as i64))
    }

    fn append(&mut self, key: PhpKey, value: PhpValue) {
        if let PhpKey::Int(n) = key {
            self.next_free = self.next_free.max(i128::from(n) + 1);
        }
        if let Some(index) = &mut self.index {
            index.insert(key.clone(), self.entries.len());
        }
        self.entries.push((key, value));
        if self.index.is_none() && self.entries.len() >= PhpArray::INDEX_FROM_LEN {
            self.build_index();
        }
    }

    fn build_index(&mut self) {
        let mut index = KeyIndex::with_capacity_and_hasher(self.entries.len(), Default::default());
        for (i, (k, _)) in self.entries.iter().enumerate() {
            index.insert(k.clone(), i);
        }
        self.index = Some(index);
    }
}

impl Drop for PhpArray {
    /// Drops nested arrays iteratively: the entries of every nested non-empty array are
    /// moved onto an explicit heap stack before their owner is freed, so each array's own
    /// drop finds no entries and never recurses. A value of any depth (even one built by
    /// hand, far beyond what the decoders accept) drops in constant stack space.
    fn drop(&mut self) {
        fn has_nested(entries: &[(PhpKey, PhpValue)]) -> bool {
            entries
                .iter()
                .any(|(_, v)| matches!(v, PhpValue::Array(a) if !a.entries.is_empty()))
        }
        if !has_nested(&self.entries) {
            return;
        }
        let mut pending = vec![std::mem::take(&mut self.entries)];
        while let Some(mut entries) = pending.pop() {
            for (_, value) in &mut entries {
                if let PhpValue::Array(inner) = value {
                    if !inner.entries.is_empty() {
                        pending.push(std::mem::take(&mut inner.entries));
                    }
                }
            }
            // `entries` drops here; every array in it is empty by now.
        }
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
    /// The array nesting depth of the value (scalar 0, `[]` 1, `[[1]]` 2), computed
    /// without recursion.
    pub fn depth_arrays(&self) -> usize {
        let mut deepest = 0;
        let mut pending: Vec<(&PhpValue, usize)> = vec![(self, 0)];
        while let Some((value, depth)) = pending.pop() {
            if let PhpValue::Array(array) = value {
                let depth = depth + 1;
                deepest = deepest.max(depth);
                pending.extend(array.entries.iter().map(|(_, v)| (v, depth)));
            }
        }
        deepest
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_arrays_keep_order_and_find_keys_through_the_index() {
        let n = 1000;
        let mut array = PhpArray::new();
        for i in (0..n).rev() {
            array.insert(PhpKey::Int(i), PhpValue::Int(i));
        }
        array.insert(PhpKey::from_bytes(b"x"), PhpValue::Null);
        assert!(array.index.is_some());
        assert_eq!(array.get(&PhpKey::Int(3)), Some(&PhpValue::Int(3)));
        // Overwrite keeps position; removal shifts later positions.
        array.insert(PhpKey::Int(n - 1), PhpValue::Bool(true));
        assert_eq!(array.iter().next().unwrap().1, &PhpValue::Bool(true));
        assert_eq!(array.remove(&PhpKey::Int(500)), Some(PhpValue::Int(500)));
        assert_eq!(array.get(&PhpKey::Int(500)), None);
        assert_eq!(array.get(&PhpKey::Int(499)), Some(&PhpValue::Int(499)));
        assert_eq!(array.get_str("x"), Some(&PhpValue::Null));
        assert_eq!(array.len(), n as usize);
        let linear: PhpArray = array.clone().into_entries().into_iter().take(3).collect();
        assert!(linear.index.is_none());
        assert_eq!(linear.get(&PhpKey::Int(n - 2)), Some(&PhpValue::Int(n - 2)));
    }

    #[test]
    fn push_uses_the_next_free_int_key_like_php_8_2() {
        let mut array = PhpArray::new();
        array.insert(PhpKey::Int(-5), PhpValue::Null);
        array.push(PhpValue::Int(1));
        assert_eq!(array.get(&PhpKey::Int(0)), Some(&PhpValue::Int(1)));
        array.insert(PhpKey::Int(10), PhpValue::Null);
        array.remove(&PhpKey::Int(10));
        array.push(PhpValue::Int(2));
        // The removed 10 still counts: PHP's nNextFreeElement never goes back.
        assert_eq!(array.get(&PhpKey::Int(11)), Some(&PhpValue::Int(2)));
        array.insert(PhpKey::Int(i64::MAX), PhpValue::Null);
        array.push(PhpValue::Int(3));
        assert_eq!(array.len(), 4);
        assert_eq!(array.get(&PhpKey::Int(i64::MAX)), Some(&PhpValue::Null));
    }

    #[test]
    fn empty_follows_php_so_the_string_zero_is_empty() {
        // Spec 9 item 1: uid "0" and group "0" count as empty.
        assert!(PhpValue::str("0").is_empty());
        assert!(!PhpValue::str("00").is_empty());
        assert!(!PhpValue::str(" ").is_empty());
        assert!(PhpValue::Float(-0.0).is_empty());
        assert!(PhpValue::Array(PhpArray::new()).is_empty());
        assert!(!PhpValue::Float(f64::NAN).is_empty());
    }

    /// `levels` arrays, each holding the next under key 0, around `null`.
    fn nested(levels: usize) -> PhpValue {
        let mut value = PhpValue::Null;
        for _ in 0..levels {
            let mut array = PhpArray::with_capacity(1);
            array.push_unique(PhpKey::Int(0), value);
            value = PhpValue::Array(array);
        }
        value
    }

    /// Runs `f` on a fresh thread with a `stack_bytes` stack; a stack overflow aborts the
    /// whole test binary, which fails the run.
    fn on_small_stack(stack_bytes: usize, f: impl FnOnce() + Send + 'static) {
        std::thread::Builder::new()
            .stack_size(stack_bytes)
            .spawn(f)
            .expect("spawn")
            .join()
            .expect("no panic");
    }

    #[test]
    fn a_million_deep_value_drops_on_a_64_kib_stack() {
        // Built on the test thread (iteratively), dropped on a 64 KiB stack: the default
        // recursive drop would need hundreds of bytes per level.
        let value = nested(1_000_000);
        assert_eq!(value.depth_arrays(), 1_000_000);
        on_small_stack(64 * 1024, move || drop(value));
        // Wide and deep mixed: many nested arrays side by side in one array.
        let mut wide = PhpArray::new();
        for i in 0..1000 {
            wide.insert(PhpKey::Int(i), nested(1000));
        }
        on_small_stack(64 * 1024, move || drop(wide));
    }

    /// The stack of a gateway shard or worker thread: `std::thread::Builder`'s default.
    const SHARD_STACK_BYTES: usize = 2 * 1024 * 1024;

    #[test]
    fn recursive_consumers_are_safe_at_the_peer_depth_bound() {
        on_small_stack(SHARD_STACK_BYTES, || {
            let value = nested(PEER_VALUE_DEPTH_MAX_ARRAYS);
            let bytes = serialize::serialize(&value);
            assert_eq!(
                bytes.len(),
                PEER_VALUE_DEPTH_MAX_ARRAYS * "a:1:{i:0;}".len() + 2
            );
            let copy = value.clone();
            assert_eq!(copy, value);
            assert!(format!("{value:?}").len() > PEER_VALUE_DEPTH_MAX_ARRAYS);
            assert_eq!(
                json::json_encode(&value, json::JsonEncodeOptions::default()),
                Err(json::JsonEncodeError::TooDeep {
                    depth_max: json::JSON_DEPTH_MAX_ARRAYS
                })
            );
            assert_eq!(
                json::to_json_value(&value),
                Err(json::JsonValueError::TooDeep)
            );
            let mut merged = match nested(PEER_VALUE_DEPTH_MAX_ARRAYS) {
                PhpValue::Array(a) => a,
                _ => unreachable!(),
            };
            let PhpValue::Array(patch) = &value else {
                unreachable!()
            };
            merge::replace_recursive_in_place(&mut merged, patch);
            assert_eq!(PhpValue::Array(merged), value);
        });
    }

    /// Written for mutants that survived `scripts/mutants` (sim/README.md, Mutation testing).
    #[test]
    fn keys_normalise_like_php_and_arrays_compare_and_answer_by_content() {
        // Only the canonical decimal form is an int key: "0" is, "-0", "00", "01" are not.
        assert_eq!(PhpKey::from_bytes(b"0"), PhpKey::Int(0));
        assert_eq!(PhpKey::from_bytes(b"-7"), PhpKey::Int(-7));
        for text in [&b"-0"[..], b"00", b"01", b"-01"] {
            assert_eq!(
                PhpKey::from_bytes(text),
                PhpKey::Str(Bytes::copy_from_slice(text))
            );
        }
        let mut a = PhpArray::new();
        assert!(a.is_empty());
        a.insert(PhpKey::Int(1), PhpValue::Null);
        assert!(!a.is_empty());
        assert!(a.contains_key(&PhpKey::Int(1)));
        assert!(!a.contains_key(&PhpKey::Int(2)));
        assert_ne!(a, PhpArray::new());
        let mut b = PhpArray::new();
        b.insert(PhpKey::Int(1), PhpValue::Bool(false));
        assert_ne!(a, b, "same keys, other values");
    }

    #[test]
    fn equality_ignores_bookkeeping() {
        let mut a = PhpArray::new();
        a.insert(PhpKey::Int(7), PhpValue::Null);
        a.remove(&PhpKey::Int(7));
        assert_eq!(a, PhpArray::new());
    }
}
