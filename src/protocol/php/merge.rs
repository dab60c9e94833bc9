//! PHP `array_replace_recursive($base, $patch)` (spec 7.4), used by the gateway to merge
//! a session update (cmd 9) into the stored session.

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
