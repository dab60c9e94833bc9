//! The raw host imports of ABI version 1 (module `gw`), exactly as ABI.md lists them.
//! Pointers and lengths are offsets and byte counts in this module's linear memory.

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "gw")]
extern "C" {
    /// Runs Gateway API call `op` with GWV-encoded positional `args`; see ABI.md 4.2.
    pub fn api(op: i32, args_ptr: *const u8, args_len: usize) -> i32;
    /// Hot path: `sendToCurrentClient` of a byte string; `flags`: 0x02 raw, 0x04 binary.
    pub fn send_to_current_client(ptr: *const u8, len: usize, flags: i32) -> i32;
    /// Length of the result slot (the last call's result or error text).
    pub fn result_len() -> i32;
    /// Copies up to `len` bytes of the result slot to `dst`; returns the count copied.
    pub fn result_read(dst: *mut u8, len: usize) -> i32;
    /// Puts the current client's address info into the result slot.
    pub fn client_info() -> i32;
    /// Puts the current `$_SESSION` into the result slot.
    pub fn session_get() -> i32;
    /// Replaces `$_SESSION` (GWV null or array).
    pub fn session_set(ptr: *const u8, len: usize) -> i32;
    /// Writes a log line at `level` (0 error, 1 warn, 2 info, 3 debug).
    pub fn log(level: i32, ptr: *const u8, len: usize);
    /// The event's time, Unix milliseconds, as the host gave it.
    pub fn now_ms() -> i64;
    /// Waits `ms` milliseconds (clamped to 0..=2000); 0, or -2 when the host offers no sleep.
    pub fn sleep_ms(ms: i32) -> i32;
}

// Off wasm (e.g. `cargo test` of the SDK on the build machine) the imports do not exist:
// these stand-ins let the pure parts (values, JSON) be unit tested.
#[cfg(not(target_arch = "wasm32"))]
mod stand_ins {
    #![allow(missing_docs, clippy::missing_safety_doc)]
    pub unsafe fn api(_: i32, _: *const u8, _: usize) -> i32 {
        -2
    }
    pub unsafe fn send_to_current_client(_: *const u8, _: usize, _: i32) -> i32 {
        -2
    }
    pub unsafe fn result_len() -> i32 {
        0
    }
    pub unsafe fn result_read(_: *mut u8, _: usize) -> i32 {
        0
    }
    pub unsafe fn client_info() -> i32 {
        -1
    }
    pub unsafe fn session_get() -> i32 {
        -1
    }
    pub unsafe fn session_set(_: *const u8, _: usize) -> i32 {
        -1
    }
    pub unsafe fn log(_: i32, _: *const u8, _: usize) {}
    pub unsafe fn now_ms() -> i64 {
        0
    }
    pub unsafe fn sleep_ms(_: i32) -> i32 {
        -2
    }
}
#[cfg(not(target_arch = "wasm32"))]
pub use stand_ins::*;
