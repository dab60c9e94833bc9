//! What each instance's `Store` carries: the handler, the limits, the current event's
//! context and the result slot of ABI.md 4.1.

use wasmtime::{Memory, ResourceLimiter};

use super::event::ClientInfo;
use super::handler::ApiHandler;
use super::session::SessionState;

/// Per-instance limits, and a record of a refused growth so a trap that follows can be
/// reported as a memory-limit failure.
#[derive(Debug)]
pub(crate) struct Limits {
    pub memory_size_max: usize,
    pub table_elements_max: usize,
    pub memory_refused: bool,
}

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.memory_size_max;
        self.memory_refused |= !allowed;
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.table_elements_max)
    }

    fn instances(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        4
    }
}

/// The client event being handled.
pub(crate) struct EventContext {
    pub client: ClientInfo,
    pub session: SessionState,
}

/// The data of one instance's store.
pub struct StoreData<H: ApiHandler> {
    pub(crate) handler: H,
    pub(crate) limits: Limits,
    /// The guest's exported memory, once instantiated.
    pub(crate) memory: Option<Memory>,
    /// Set during client events; `None` in worker start/stop.
    pub(crate) event: Option<EventContext>,
    pub(crate) now_ms: i64,
    /// The result slot: the last result (GWV) or error text.
    pub(crate) result: Vec<u8>,
    pub(crate) request_size_max: usize,
    /// The epoch ticker's period (deadlines are rounded up to whole ticks).
    pub(crate) epoch_tick: std::time::Duration,
    /// When the current event's wall-clock budget runs out. Set when an event starts,
    /// pushed back by the time each API call waited for its reply (`imports::run_call`),
    /// never by a `gw.sleep_ms`: sleeping counts (see [`super::HostConfig::epoch_deadline`]).
    pub(crate) event_deadline: Option<std::time::Instant>,
}

impl<H: ApiHandler> StoreData<H> {
    pub(crate) fn new(handler: H, config: &super::HostConfig) -> StoreData<H> {
        StoreData {
            handler,
            limits: Limits {
                memory_size_max: config.memory_size_max,
                table_elements_max: config.table_elements_max,
                memory_refused: false,
            },
            memory: None,
            event: None,
            now_ms: 0,
            result: Vec::new(),
            request_size_max: config.request_size_max,
            epoch_tick: config.epoch_tick,
            event_deadline: None,
        }
    }

    /// Forgets everything tied to a discarded instance; keeps the handler.
    pub(crate) fn reset(&mut self) {
        self.limits.memory_refused = false;
        self.memory = None;
        self.event = None;
        self.result = Vec::new();
        self.event_deadline = None;
    }

    /// Epoch ticks left until `event_deadline` (rounded up; 0 once it passed).
    pub(crate) fn ticks_left(&self, now: std::time::Instant) -> Option<u64> {
        let deadline = self.event_deadline?;
        let left = deadline.saturating_duration_since(now).as_nanos();
        let tick = self.epoch_tick.as_nanos().max(1);
        Some(u64::try_from(left.div_ceil(tick)).unwrap_or(u64::MAX))
    }
}
