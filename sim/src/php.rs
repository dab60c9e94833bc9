//! The model's own small reference of the PHP array semantics sessions go through,
//! written from the PHP manual, independent of the library's `protocol::php` (a model
//! that reused the library's code could not catch a bug in it):
//!
//! * `json_decode($json, true)`: objects become arrays in member order; a member name
//!   that is a canonical decimal integer (`"7"`, `"-3"`, not `"07"`, `"-0"`, `"+1"`,
//!   `"1.5"`, nor one outside the integer range) becomes an integer key; lists become
//!   arrays keyed `0..n`.
//! * `json_encode`: an array whose keys are exactly `0..n` in order is a JSON list, any
//!   other a JSON object in key order (an empty array is `[]`).
//! * `array_replace_recursive($base, $replacement)`: every key of the replacement
//!   replaces the base's value in place, or is appended; where both values are arrays,
//!   they are merged the same way, recursively (lists merge by index).

use serde_json::{Map, Value};

/// An array key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// An integer key.
    Int(i64),
    /// A string key.
    Str(String),
}

impl Key {
    /// The key PHP makes of the string `s` (numeric strings become integers).
    pub fn from_name(s: &str) -> Key {
        let digits = s.strip_prefix('-').unwrap_or(s);
        let canonical = !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && (digits == "0" || !digits.starts_with('0'))
            && s != "-0";
        match canonical.then(|| s.parse::<i64>().ok()).flatten() {
            Some(n) => Key::Int(n),
            None => Key::Str(s.to_string()),
        }
    }

    /// The key as a JSON member name.
    pub fn name(&self) -> String {
        match self {
            Key::Int(n) => n.to_string(),
            Key::Str(s) => s.clone(),
        }
    }
}

/// A PHP value as sessions hold it.
#[derive(Debug, Clone, PartialEq)]
pub enum Php {
    /// `null`.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// An ordered array.
    Arr(Array),
}

/// An ordered PHP array.
pub type Array = Vec<(Key, Php)>;

/// `json_decode($v, true)`.
pub fn from_json(v: &Value) -> Php {
    match v {
        Value::Null => Php::Null,
        Value::Bool(b) => Php::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Php::Int(i),
            None => Php::Float(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => Php::Str(s.clone()),
        Value::Array(items) => Php::Arr(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| (Key::Int(i as i64), from_json(v)))
                .collect(),
        ),
        Value::Object(map) => Php::Arr(array_from_object(map)),
    }
}

/// `json_decode` of an object: its array.
pub fn array_from_object(map: &Map<String, Value>) -> Array {
    let mut out: Array = Vec::new();
    for (name, v) in map {
        set(&mut out, Key::from_name(name), from_json(v));
    }
    out
}

/// `$array[$key] = $value`: in place if the key exists, else appended.
fn set(array: &mut Array, key: Key, value: Php) {
    match array.iter_mut().find(|(k, _)| *k == key) {
        Some(slot) => slot.1 = value,
        None => array.push((key, value)),
    }
}

/// `json_encode`.
pub fn to_json(v: &Php) -> Value {
    match v {
        Php::Null => Value::Null,
        Php::Bool(b) => Value::Bool(*b),
        Php::Int(i) => Value::from(*i),
        Php::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Php::Str(s) => Value::String(s.clone()),
        Php::Arr(a) => {
            let list = a
                .iter()
                .enumerate()
                .all(|(i, (k, _))| *k == Key::Int(i as i64));
            if list {
                Value::Array(a.iter().map(|(_, v)| to_json(v)).collect())
            } else {
                object(a)
            }
        }
    }
}

/// An array as a JSON object (the top level of a normalised session), in key order.
pub fn object(a: &Array) -> Value {
    Value::Object(a.iter().map(|(k, v)| (k.name(), to_json(v))).collect())
}

/// `array_replace_recursive($base, $replacement)`, into `base`.
pub fn replace_recursive(base: &mut Array, replacement: &Array) {
    for (key, value) in replacement {
        let slot = base.iter_mut().find(|(k, _)| k == key);
        match (slot, value) {
            (Some((_, Php::Arr(inner))), Php::Arr(more)) => replace_recursive(inner, more),
            (Some(slot), _) => slot.1 = value.clone(),
            (None, _) => base.push((key.clone(), value.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn arr(v: Value) -> Array {
        match from_json(&v) {
            Php::Arr(a) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn numeric_names_become_integer_keys() {
        for (name, key) in [
            ("7", Key::Int(7)),
            ("-3", Key::Int(-3)),
            ("0", Key::Int(0)),
            ("07", Key::Str("07".into())),
            ("-0", Key::Str("-0".into())),
            ("+1", Key::Str("+1".into())),
            ("1.5", Key::Str("1.5".into())),
            ("", Key::Str("".into())),
            (
                "99999999999999999999",
                Key::Str("99999999999999999999".into()),
            ),
        ] {
            assert_eq!(Key::from_name(name), key, "{name}");
        }
    }

    #[test]
    fn replace_recursive_merges_maps_and_lists_by_index() {
        let mut base = arr(json!({"a": {"x": 1, "y": [1, 2]}, "b": 1, "1": "one"}));
        replace_recursive(
            &mut base,
            &arr(json!({"a": {"y": [9], "z": null}, "1": {"n": []}, "c": {}})),
        );
        assert_eq!(
            object(&base).to_string(),
            r#"{"a":{"x":1,"y":[9,2],"z":null},"b":1,"1":{"n":[]},"c":[]}"#
        );
        // A non-array replaces an array and the other way round.
        let mut base = arr(json!({"a": [1], "b": 2}));
        replace_recursive(&mut base, &arr(json!({"a": 5, "b": [3]})));
        assert_eq!(object(&base).to_string(), r#"{"a":5,"b":[3]}"#);
    }

    #[test]
    fn lists_only_when_keys_run_from_zero() {
        assert_eq!(to_json(&from_json(&json!({"0": 1, "1": 2}))), json!([1, 2]));
        assert_eq!(
            to_json(&from_json(&json!({"1": 1, "0": 2}))).to_string(),
            r#"{"1":1,"0":2}"#
        );
        assert_eq!(to_json(&from_json(&json!({}))), json!([]));
    }
}
