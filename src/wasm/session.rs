//! `$_SESSION` bookkeeping inside an event, as the original worker does it: the session
//! arrives with the event, the guest may change it, and it is written back only if changed.

use crate::protocol::php::{PhpArray, PhpValue};

/// The session state of the event being handled.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SessionState {
    /// `$_SESSION`.
    pub current: PhpValue,
    /// `Context::$old_session`: what the gateway is known to hold.
    pub known: PhpValue,
}

impl SessionState {
    /// The state at the start of an event.
    pub fn new(session: PhpValue) -> SessionState {
        SessionState {
            known: session.clone(),
            current: session,
        }
    }

    /// `setSession` on the current client: both `$_SESSION` and the known copy change
    /// (the call itself updates the gateway, so no write-back is due).
    pub fn api_set(&mut self, session: &PhpValue) {
        self.current = session.clone();
        self.known = session.clone();
    }

    /// `updateSession` on the current client: merged into `$_SESSION`, which becomes known.
    pub fn api_update(&mut self, partial: &PhpValue) {
        let mut base = match std::mem::replace(&mut self.current, PhpValue::Null) {
            PhpValue::Array(a) => a,
            _ => PhpArray::new(),
        };
        if let PhpValue::Array(patch) = partial {
            replace_recursive(&mut base, patch);
        }
        self.current = PhpValue::Array(base);
        self.known = self.current.clone();
    }
}

/// PHP's `array_replace_recursive(base, patch)` in place (spec 7.4).
pub(crate) fn replace_recursive(base: &mut PhpArray, patch: &PhpArray) {
    for (k, v) in patch.iter() {
        match (base.get_mut(k), v) {
            (Some(PhpValue::Array(b)), PhpValue::Array(p)) => replace_recursive(b, p),
            _ => base.insert(k.clone(), v.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::vectors::{php, section};

    #[test]
    fn replace_recursive_matches_php_vectors() {
        for v in section("array_replace_recursive") {
            let (PhpValue::Array(mut base), PhpValue::Array(patch)) =
                (php(&v["input"]["base"]), php(&v["input"]["patch"]))
            else {
                panic!("{}: arrays expected", v["name"]);
            };
            replace_recursive(&mut base, &patch);
            assert_eq!(
                PhpValue::Array(base),
                php(&v["expected"]["result"]),
                "{}",
                v["name"]
            );
        }
    }

    #[test]
    fn changed_only_when_the_guest_changed_it() {
        let s = |n: i64| {
            PhpValue::Array(
                [(crate::protocol::php::PhpKey::Int(0), PhpValue::Int(n))]
                    .into_iter()
                    .collect(),
            )
        };
        let changed = |st: &SessionState| st.current != st.known;
        assert!(!changed(&SessionState::new(s(1))));
        let mut st = SessionState::new(s(1));
        st.current = s(2);
        assert!(changed(&st));
        let mut st = SessionState::new(s(1));
        st.current = PhpValue::Null;
        assert!(changed(&st));
        // updateSession on a null session starts from an empty array and counts as known.
        let mut st = SessionState::new(PhpValue::Null);
        st.api_update(&s(5));
        assert_eq!(st.current, s(5));
        assert!(!changed(&st));
    }
}
