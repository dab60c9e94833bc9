//! The seam between the wasm host and the worker: every Gateway API call a guest makes is
//! handed to an [`ApiHandler`], which the worker driver implements by sending frames to
//! gateways and awaiting their replies.

use std::future::Future;
use std::time::Duration;

use crate::api::{ApiCall, ApiResult, ClientIdText, CurrentClient};

/// One API call from a guest, with the context the call was made in.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiRequest {
    /// The call, with the original library's argument shapes.
    pub call: ApiCall,
    /// Our extension: deliver the message as a binary websocket frame (FLAG_BINARY).
    /// Only meaningful for send calls.
    pub binary: bool,
    /// The client of the event being handled (`Context::$client_id`), if any: calls on
    /// the "current client" resolve to it. Its `session` is the guest's `$_SESSION` at
    /// the time of the call (`getAllClientSessions` reports it for the current client).
    pub current: Option<CurrentClient>,
}

/// Severity of a guest log line (`gw.log` levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// 0.
    Error,
    /// 1.
    Warn,
    /// 2.
    Info,
    /// 3 (and anything larger).
    Debug,
}

impl LogLevel {
    /// The level of the ABI number `n`.
    pub fn from_abi(n: i32) -> LogLevel {
        match n {
            i32::MIN..=0 => LogLevel::Error,
            1 => LogLevel::Warn,
            2 => LogLevel::Info,
            _ => LogLevel::Debug,
        }
    }
}

/// Runs the guests' Gateway API calls. One handler per wasm instance; the instance awaits
/// each call, so a query suspends only that instance (the future must not block a thread).
pub trait ApiHandler: Send + 'static {
    /// Performs `request` and returns what the original library returns (sends return
    /// `true` or null; queries their PHP values).
    fn call(&mut self, request: ApiRequest) -> impl Future<Output = ApiResult> + Send + '_;

    /// `gw.sleep_ms`: waits `duration` (the driver's clock: simulated under simulation) and
    /// returns true, or returns false at once when sleeping is not offered. The default
    /// offers no sleep: the host has no clock of its own.
    fn sleep(&mut self, duration: Duration) -> impl Future<Output = bool> + Send + '_ {
        let _ = duration;
        std::future::ready(false)
    }

    /// Called from the host's epoch callback while a guest computes for longer than one
    /// epoch tick: push out what is ready (replies to earlier events) without waiting.
    /// By default nothing.
    fn flush(&mut self) {}

    /// A log line from the guest (`gw.log`, guest panics). By default it goes to `tracing`.
    fn log(&mut self, level: LogLevel, client: Option<&ClientIdText>, text: &str) {
        let client = client.map(|c| String::from_utf8_lossy(c).into_owned());
        match level {
            LogLevel::Error => tracing::error!(?client, "wasm guest: {text}"),
            LogLevel::Warn => tracing::warn!(?client, "wasm guest: {text}"),
            LogLevel::Info => tracing::info!(?client, "wasm guest: {text}"),
            LogLevel::Debug => tracing::debug!(?client, "wasm guest: {text}"),
        }
    }
}
