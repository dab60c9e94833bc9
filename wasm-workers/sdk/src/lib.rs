//! Guest SDK for gatewayworker wasm business workers (ABI version 1, see `../ABI.md`).
//!
//! Write a type with the [`Events`] you care about, export it with [`export_worker!`], call
//! the Gateway API through [`gateway`], and reach `$_SESSION` through [`session`]:
//!
//! ```ignore
//! #[derive(Default)]
//! struct Echo;
//! impl gw_sdk::Events for Echo {
//!     fn on_message(&mut self, _client_id: &str, message: gw_sdk::Message<'_>) {
//!         let _ = gw_sdk::gateway::send_to_current_client(message.data, message.binary);
//!     }
//! }
//! gw_sdk::export_worker!(Echo);
//! ```
//!
//! Builds with Rust 1.63 and newer, no dependencies.

#![warn(missing_docs)]

pub mod float;
pub mod gateway;
pub mod json;
pub mod sys;
pub mod value;

pub use value::{Key, Value};

/// The ABI version this SDK implements (the value of the `gw_abi_version` export).
pub const ABI_VERSION: i32 = 1;

/// Event flag on `on_message`: the client sent a binary websocket message.
pub const EVENT_FLAG_BINARY: i32 = 0x04;

/// One message from a client.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// The message bytes, exactly as the client sent them.
    pub data: &'a [u8],
    /// True for a binary websocket message, false for text (and other protocols).
    pub binary: bool,
}

impl<'a> Message<'a> {
    /// The message as text, when it is UTF-8.
    pub fn text(&self) -> Option<&'a str> {
        std::str::from_utf8(self.data).ok()
    }
}

/// The worker's event handlers, each a no-op by default (like the original's `Events` class).
pub trait Events {
    /// The instance started (also after a crash or a reload replaced it).
    fn on_worker_start(&mut self) {}
    /// A client connected (for websocket: before the handshake).
    fn on_connect(&mut self, client_id: &str) {
        let _ = client_id;
    }
    /// A client sent a message.
    fn on_message(&mut self, client_id: &str, message: Message<'_>) {
        let _ = (client_id, message);
    }
    /// A client is gone; [`session::get`] still shows its last session.
    fn on_close(&mut self, client_id: &str) {
        let _ = client_id;
    }
    /// A websocket handshake completed; `data` holds `get`, `server`, `cookie` arrays.
    fn on_websocket_connect(&mut self, client_id: &str, data: Value) {
        let _ = (client_id, data);
    }
    /// The instance is about to stop (shutdown or reload).
    fn on_worker_stop(&mut self) {}
}

/// `$_SESSION` of the current client: read it, change it; the host writes it back to the
/// gateway after the event when it changed (like the original worker).
pub mod session {
    use crate::gateway::{status_to_result, Result};
    use crate::sys;
    use crate::value::Value;

    /// The current session: null when the client has none, else an array.
    pub fn get() -> Result<Value> {
        // SAFETY: no pointers involved.
        let bytes = status_to_result(unsafe { sys::session_get() })?;
        Ok(Value::decode(&bytes).unwrap_or(Value::Null))
    }

    /// Replaces the session (null or an array).
    pub fn set(session: &Value) -> Result<()> {
        let bytes = session.encode();
        // SAFETY: the host reads `bytes.len()` bytes at `bytes.as_ptr()` during the call.
        status_to_result(unsafe { sys::session_set(bytes.as_ptr(), bytes.len()) }).map(|_| ())
    }

    /// Reads, changes with `f`, writes back; returns what `f` returned.
    pub fn update<R>(f: impl FnOnce(&mut Value) -> R) -> Result<R> {
        let mut s = get()?;
        let r = f(&mut s);
        set(&s)?;
        Ok(r)
    }
}

/// Log lines, written by the host with the current client id.
pub mod log {
    use crate::sys;

    fn write(level: i32, text: &str) {
        // SAFETY: the host reads `text.len()` bytes at `text.as_ptr()` during the call.
        unsafe { sys::log(level, text.as_ptr(), text.len()) }
    }

    /// An error line.
    pub fn error(text: &str) {
        write(0, text)
    }
    /// A warning line.
    pub fn warn(text: &str) {
        write(1, text)
    }
    /// An info line.
    pub fn info(text: &str) {
        write(2, text)
    }
    /// A debug line.
    pub fn debug(text: &str) {
        write(3, text)
    }
}

/// The event's time in Unix milliseconds, as the host gave it (deterministic under simulation).
pub fn now_ms() -> i64 {
    // SAFETY: no pointers involved.
    unsafe { sys::now_ms() }
}

/// Suspends this instance for `ms` milliseconds (at most 2000) on the worker's clock
/// (simulated under simulation); other instances keep running.
pub fn sleep_ms(ms: u32) -> gateway::Result<()> {
    let ms = ms.min(i32::MAX as u32) as i32;
    // SAFETY: no pointers involved.
    let status = unsafe { sys::sleep_ms(ms) };
    gateway::status_to_result(status).map(|_| ())
}

/// Support for [`export_worker!`]; not for direct use.
#[doc(hidden)]
pub mod rt {
    use std::cell::UnsafeCell;

    /// The worker value, created on first use. Wasm instances are single-threaded and the
    /// host never re-enters an export, so one `&mut` at a time is guaranteed.
    pub struct Slot<T>(UnsafeCell<Option<T>>);

    // SAFETY: a wasm32 instance runs on one thread (see above).
    unsafe impl<T> Sync for Slot<T> {}

    impl<T> Slot<T> {
        /// An empty slot.
        #[allow(clippy::new_without_default)] // const fn for a static; Default is not const
        pub const fn new() -> Slot<T> {
            Slot(UnsafeCell::new(None))
        }
    }

    impl<T: Default> Slot<T> {
        /// The worker, created with `Default` on first use.
        #[allow(clippy::mut_from_ref)]
        pub fn get(&self) -> &mut T {
            // SAFETY: single-threaded and never re-entered (see the type's doc).
            let slot = unsafe { &mut *self.0.get() };
            if slot.is_none() {
                *slot = Some(T::default());
            }
            slot.as_mut().unwrap()
        }
    }

    /// `gw_alloc`: `len` bytes aligned to 1; 0 when out of memory; a dangling non-zero
    /// pointer for `len == 0`.
    pub fn alloc(len: i32) -> i32 {
        if len <= 0 {
            return 1;
        }
        let layout = match std::alloc::Layout::from_size_align(len as usize, 1) {
            Ok(l) => l,
            Err(_) => return 0,
        };
        // SAFETY: `layout` has a non-zero size.
        unsafe { std::alloc::alloc(layout) as usize as i32 }
    }

    /// `gw_free`: releases what [`alloc`] returned for the same `len`.
    pub fn free(ptr: i32, len: i32) {
        if len <= 0 || ptr == 0 {
            return;
        }
        let layout = std::alloc::Layout::from_size_align(len as usize, 1).unwrap();
        // SAFETY: the host passes back a pointer and length it got from `alloc`.
        unsafe { std::alloc::dealloc(ptr as usize as *mut u8, layout) }
    }

    /// The bytes at (`ptr`, `len`) in this module's memory.
    ///
    /// # Safety
    /// The host guarantees the range is a live buffer for the duration of the export call.
    pub unsafe fn bytes<'a>(ptr: i32, len: i32) -> &'a [u8] {
        if len <= 0 {
            return &[];
        }
        std::slice::from_raw_parts(ptr as usize as *const u8, len as usize)
    }

    /// A client id passed to an event (ASCII hex; anything else reads as "").
    ///
    /// # Safety
    /// As [`bytes`].
    pub unsafe fn client_id<'a>(ptr: i32, len: i32) -> &'a str {
        std::str::from_utf8(bytes(ptr, len)).unwrap_or("")
    }

    /// Routes panic messages to the host's log before the instance traps.
    pub fn init() {
        std::panic::set_hook(Box::new(|info| {
            crate::log::error(&format!("guest panic: {}", info));
        }));
    }
}

/// Exports a type implementing [`Events`] + `Default` as the module's worker: defines
/// `gw_abi_version`, `gw_alloc`, `gw_free` and every `on_*` export of ABI.md.
#[macro_export]
macro_rules! export_worker {
    ($ty:ty) => {
        static __GW_WORKER: $crate::rt::Slot<$ty> = $crate::rt::Slot::new();

        #[no_mangle]
        pub extern "C" fn gw_abi_version() -> i32 {
            $crate::ABI_VERSION
        }

        #[no_mangle]
        pub extern "C" fn gw_alloc(len: i32) -> i32 {
            $crate::rt::alloc(len)
        }

        #[no_mangle]
        pub extern "C" fn gw_free(ptr: i32, len: i32) {
            $crate::rt::free(ptr, len)
        }

        #[no_mangle]
        pub extern "C" fn on_worker_start() {
            $crate::rt::init();
            $crate::Events::on_worker_start(__GW_WORKER.get())
        }

        #[no_mangle]
        pub extern "C" fn on_worker_stop() {
            $crate::Events::on_worker_stop(__GW_WORKER.get())
        }

        #[no_mangle]
        pub extern "C" fn on_connect(id_ptr: i32, id_len: i32) {
            // SAFETY: the host passes a live buffer (ABI.md 5).
            let id = unsafe { $crate::rt::client_id(id_ptr, id_len) };
            $crate::Events::on_connect(__GW_WORKER.get(), id)
        }

        #[no_mangle]
        pub extern "C" fn on_message(id_ptr: i32, id_len: i32, ptr: i32, len: i32, flags: i32) {
            // SAFETY: the host passes live buffers (ABI.md 5).
            let id = unsafe { $crate::rt::client_id(id_ptr, id_len) };
            let data = unsafe { $crate::rt::bytes(ptr, len) };
            let binary = flags & $crate::EVENT_FLAG_BINARY != 0;
            $crate::Events::on_message(__GW_WORKER.get(), id, $crate::Message { data, binary })
        }

        #[no_mangle]
        pub extern "C" fn on_close(id_ptr: i32, id_len: i32) {
            // SAFETY: the host passes a live buffer (ABI.md 5).
            let id = unsafe { $crate::rt::client_id(id_ptr, id_len) };
            $crate::Events::on_close(__GW_WORKER.get(), id)
        }

        #[no_mangle]
        pub extern "C" fn on_websocket_connect(id_ptr: i32, id_len: i32, ptr: i32, len: i32) {
            // SAFETY: the host passes live buffers (ABI.md 5).
            let id = unsafe { $crate::rt::client_id(id_ptr, id_len) };
            let data = unsafe { $crate::rt::bytes(ptr, len) };
            let data = $crate::Value::decode(data).unwrap_or($crate::Value::Null);
            $crate::Events::on_websocket_connect(__GW_WORKER.get(), id, data)
        }
    };
}

#[cfg(test)]
mod tests {
    use super::json;
    use super::value::{Key, Value};

    #[test]
    fn gwv_round_trips_nested_values() {
        let v = Value::Array(vec![
            (Key::Int(0), Value::Null),
            (Key::Str(b"k".to_vec()), Value::Bool(true)),
            (Key::Int(-3), Value::Float(1.5)),
            (Key::Str(vec![0xff]), Value::Str(vec![0, 1, 2])),
            (Key::Int(9), Value::list(vec![Value::Int(i64::MIN)])),
        ]);
        assert_eq!(Value::decode(&v.encode()), Some(v));
    }

    #[test]
    fn gwv_refuses_truncated_and_oversized_counts() {
        let bytes = Value::list(vec![Value::str("abc")]).encode();
        for cut in 0..bytes.len() {
            assert_eq!(Value::decode(&bytes[..cut]), None, "cut at {}", cut);
        }
        assert_eq!(Value::decode(&[6, 0xff, 0xff, 0xff, 0x7f]), None);
    }

    #[test]
    fn json_parses_like_php_assoc_decode() {
        let v = json::parse(br#"{"type":"say","7":[1,2.5,"x\u00e9"],"n":null}"#).unwrap();
        assert_eq!(v.get("type"), Some(&Value::str("say")));
        assert_eq!(v.entries().unwrap()[1].0, Key::Int(7));
        assert_eq!(
            json::encode(&v),
            "{\"type\":\"say\",\"7\":[1,2.5,\"xé\"],\"n\":null}"
        );
        assert_eq!(json::parse(b"{\"a\":1"), None);
        assert_eq!(json::parse(b"[1,]"), None);
    }

    #[test]
    fn json_strings_escape_like_php() {
        let enc = |b: &[u8]| json::encode(&Value::Str(b.to_vec()));
        assert_eq!(enc(b"a/b\"c\\"), "\"a/b\\\"c\\\\\"");
        assert_eq!(
            enc(b"\x08\x0c\n\r\t\x01\x1f\x7f"),
            "\"\\b\\f\\n\\r\\t\\u0001\\u001f\x7f\""
        );
        assert_eq!(enc("é€😀".as_bytes()), "\"é€😀\"");
        assert_eq!(enc("\u{2028}x\u{2029}".as_bytes()), "\"\\u2028x\\u2029\"");
        // PHP's decoder: one U+FFFD per invalid sequence, whose length PHP decides.
        let cases: &[(&[u8], &str)] = &[
            (b"\xff", "\u{fffd}"),
            (b"\xc0\x80", "\u{fffd}\u{fffd}"),
            (b"\xe0\x80\x80", "\u{fffd}"),
            (b"\xed\xa0\x80", "\u{fffd}"),
            (b"\xf4\x90\x80\x80", "\u{fffd}"),
            (b"\xf0\x9f\x98", "\u{fffd}"),
            (b"\xc3A", "\u{fffd}A"),
            (b"\xc3\xff", "\u{fffd}"),
            (b"\xe3\x80A", "\u{fffd}A"),
            (b"\xe3\xff\x80", "\u{fffd}"),
            (b"a\xe2\x82", "a\u{fffd}"),
        ];
        for (input, want) in cases {
            assert_eq!(enc(input), format!("\"{}\"", want), "{:?}", input);
        }
    }

    #[test]
    fn json_numbers_are_strict_and_floats_print_like_php() {
        for bad in [
            "01", "1.", ".5", "+1", "-", "1e", "1e+", "--1", "0x1", "1.e3",
        ] {
            assert_eq!(json::parse(bad.as_bytes()), None, "{}", bad);
        }
        assert_eq!(json::parse(b"-0"), Some(Value::Int(0)));
        assert_eq!(json::parse(b"1E2"), Some(Value::Float(100.0)));
        assert_eq!(
            json::parse(b"9223372036854775808"),
            Some(Value::Float(9223372036854775808.0))
        );
        assert_eq!(json::encode(&Value::Float(1.0)), "1");
        assert_eq!(json::encode(&Value::Float(1e100)), "1.0e+100");
        assert_eq!(
            json::encode_php(&Value::Float(f64::INFINITY)),
            Err(json::EncodeError::NonFinite)
        );
    }

    #[test]
    fn json_depth_limits_match_php() {
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        let at = json::PHP_DEPTH_MAX;
        let v = json::parse_with_depth(nested(at).as_bytes(), at).expect("512 deep parses");
        assert!(json::parse_with_depth(nested(at + 1).as_bytes(), at).is_none());
        assert_eq!(json::encode_php(&v).as_deref(), Ok(nested(at).as_str()));
        let deeper = Value::list(vec![v]);
        assert_eq!(json::encode_php(&deeper), Err(json::EncodeError::Depth));
    }
}
