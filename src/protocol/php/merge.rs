//! PHP `array_replace_recursive($base, $patch)` (spec 7.4), used by the gateway to merge
//! a session update (cmd 9) into the stored session.

#[cfg(test)]
use super::PhpKey;
use super::{PhpArray, PhpValue};

/// `array_replace_recursive($base, $patch)`: patch entries overwrite base entries in
/// place (new keys are appended), and where both sides hold arrays they merge recursively.
/// Int keys are matched, never renumbered; `null` is an ordinary value.
pub fn array_replace_recursive(base: &PhpArray, patch: &PhpArray) -> PhpArray {
    let mut merged = base.clone();
    replace_recursive_in_place(&mut merged, patch);
    merged
}

/// [`array_replace_recursive`] applied to `base` itself.
///
/// Depth: it recurses only where both sides hold arrays, so at most as deep as the
/// shallower input, and the result is no deeper than the deeper input; merging values from
/// the bounded decoders (see the depth table in [`super`]) stays bounded, however often a
/// session is merged.
pub fn replace_recursive_in_place(base: &mut PhpArray, patch: &PhpArray) {
    for (key, value) in patch.iter() {
        if let (Some(PhpValue::Array(inner)), PhpValue::Array(patch_inner)) =
            (base.get_mut(key), value)
        {
            replace_recursive_in_place(inner, patch_inner);
            continue;
        }
        base.insert(key.clone(), value.clone());
    }
}

/// Why [`merge_session`] refused an update.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionMergeError {
    /// The stored session is non-empty but does not unserialize to an array.
    #[error("stored session is not a serialized array")]
    CurrentNotArray,
    /// The update does not unserialize to an array.
    #[error("session update is not a serialized array")]
    UpdateNotArray,
}

/// The gateway's session update (cmd 9, spec 9 item 6): a PHP-falsy stored session (`""`
/// or `"0"`) is replaced by `update` verbatim; otherwise both are unserialized, merged
/// with [`array_replace_recursive`] and serialized again.
///
/// Difference from the original: where PHP's `array_replace_recursive` would throw a
/// `TypeError` on a non-array side (stopping the gateway process), this returns an error
/// and the caller keeps the stored session unchanged.
pub fn merge_session(current: &[u8], update: &[u8]) -> Result<Vec<u8>, SessionMergeError> {
    if super::is_empty_bytes(current) {
        return Ok(update.to_vec());
    }
    let PhpValue::Array(mut base) = super::unserialize::unserialize_lenient(current) else {
        return Err(SessionMergeError::CurrentNotArray);
    };
    let PhpValue::Array(patch) = super::unserialize::unserialize_lenient(update) else {
        return Err(SessionMergeError::UpdateNotArray);
    };
    replace_recursive_in_place(&mut base, &patch);
    Ok(super::serialize::serialize(&PhpValue::Array(base)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_or_zero_session_is_replaced_verbatim() {
        // Verbatim means even an update that is not an array is stored as is.
        assert_eq!(merge_session(b"", b"garbage"), Ok(b"garbage".to_vec()));
        assert_eq!(merge_session(b"0", b"a:0:{}"), Ok(b"a:0:{}".to_vec()));
    }

    #[test]
    fn non_empty_sessions_merge() {
        let merged = merge_session(b"a:1:{s:1:\"a\";i:1;}", b"a:1:{s:1:\"b\";N;}");
        assert_eq!(merged, Ok(b"a:2:{s:1:\"a\";i:1;s:1:\"b\";N;}".to_vec()));
    }

    #[test]
    fn non_array_sides_are_refused() {
        assert_eq!(
            merge_session(b"i:5;", b"a:0:{}"),
            Err(SessionMergeError::CurrentNotArray)
        );
        assert_eq!(
            merge_session(b"a:0:{}", b"xyz"),
            Err(SessionMergeError::UpdateNotArray)
        );
    }

    #[test]
    fn deep_patch_merges_only_where_both_are_arrays() {
        let mut inner = PhpArray::new();
        inner.insert(PhpKey::Int(0), PhpValue::str("x"));
        let mut base = PhpArray::new();
        base.insert(PhpKey::from_bytes(b"k"), PhpValue::Array(inner.clone()));
        let mut patch = PhpArray::new();
        patch.insert(PhpKey::from_bytes(b"k"), PhpValue::Array(PhpArray::new()));
        assert_eq!(array_replace_recursive(&base, &patch), base);
    }
}
