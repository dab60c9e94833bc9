//! What each instance's `Store` carries: the handler, the limits, the current event's
//! context and the result slot of ABI.md 4.1.

use wasmtime::{Memory, ResourceLimiter};

use super::event::ClientInfo;
use super::handler::ApiHandler;
use super::session::SessionState;
use crate::api::CurrentClient;

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
    /// The client as API calls name it (its gateway and connection come from its id);
    /// `None` when the id is malformed (calls on the current client then fail).
    pub current: Option<CurrentClient>,
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
}
