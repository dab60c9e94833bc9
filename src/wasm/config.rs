//! Limits and knobs of the wasm host, each with the reason for its default.

use std::time::Duration;

/// Default of [`HostConfig::fuel_per_input_byte`]: twice the costliest bundled guest.
/// Measured on 10 MiB messages (`tests/e2e/guest_limits.rs`, `guest_fuel.rs`): echo in
/// Rust/C ≈ 0/B, in AssemblyScript 2/B; chat `say` 148/B in Rust, 242/B in
/// AssemblyScript, 123/B in C; probe's JSON `echo` 146/B.
pub const FUEL_PER_INPUT_BYTE_DEFAULT: u64 = 500;

/// Default of [`HostConfig::memory_size_max`], 128 MiB: a 10 MiB chat message needs more
/// than 64 MiB in every language (the message, its parse and the reply being built).
pub const MEMORY_SIZE_MAX_DEFAULT: usize = 128 << 20;

/// How the host runs guests. Every limit applies per instance.
#[derive(Debug, Clone, PartialEq)]
pub struct HostConfig {
    /// Fuel (≈ wasm instructions) one event may use whatever its size, including the
    /// buffer copies in and out (plus [`Self::fuel_per_input_byte`] per input byte).
    /// Deterministic: the simulation's CPU budget. 100 M ≈ tens of ms of guest code.
    pub fuel_per_event: u64,
    /// Extra fuel per byte of the event's input (the client id and the message, or the
    /// encoded websocket-connect data): an event's budget is `fuel_per_event` plus this
    /// times its input length, so the budget grows with the message. See
    /// [`FUEL_PER_INPUT_BYTE_DEFAULT`] for the figures behind the default.
    pub fuel_per_input_byte: u64,
    /// Wall-clock bound on one event (epoch interruption): catches what fuel cannot (a
    /// slow machine, a fuel budget set too high, a guest looping on `gw.sleep_ms`).
    /// Counted from the start of the event; the time an API call waits for its reply is
    /// given back (the deadline moves by that much, so waiting for gateways, itself bounded
    /// by the worker's query timeout, does not use it up); time in guest code and in
    /// `gw.sleep_ms` is not. A sleep that would outlast the budget sleeps what is left and
    /// ends the event. At the bound the event fails with [`super::FailureKind::Deadline`]
    /// and its instance is recreated. Rounded up to whole `epoch_tick`s.
    /// `None` turns epochs off, as the simulation requires (epochs tick on a real thread).
    pub epoch_deadline: Option<Duration>,
    /// Period of the epoch ticker thread; the deadline is rounded up to whole ticks.
    pub epoch_tick: Duration,
    /// Bytes of linear memory one instance may hold; growing beyond fails (`memory.grow`
    /// returns -1, which Rust guests turn into a trap).
    pub memory_size_max: usize,
    /// Elements of tables one instance may hold.
    pub table_elements_max: usize,
    /// Largest buffer a guest may hand to one host call (messages, arguments, logs): the
    /// internal frame limit, 10 MiB.
    pub request_size_max: usize,
    /// Pooling allocator with room for this many instances (`None`: on-demand
    /// allocation). Pooling reserves virtual memory up front for faster instantiation.
    pub pooling_instances_max: Option<u32>,
    /// Let other tasks on the thread run every this much fuel during a long event
    /// (`None`: an event runs to completion or to its fuel limit without yielding).
    pub fuel_yield_interval: Option<u64>,
}

impl Default for HostConfig {
    fn default() -> HostConfig {
        HostConfig {
            fuel_per_event: 100_000_000,
            fuel_per_input_byte: FUEL_PER_INPUT_BYTE_DEFAULT,
            epoch_deadline: Some(Duration::from_secs(5)),
            epoch_tick: Duration::from_millis(10),
            memory_size_max: MEMORY_SIZE_MAX_DEFAULT,
            table_elements_max: 100_000,
            request_size_max: 10 << 20,
            pooling_instances_max: None,
            fuel_yield_interval: None,
        }
    }
}

impl HostConfig {
    /// The fuel budget of an event whose input (client id + payload) is `input_len` bytes.
    pub fn event_fuel(&self, input_len: usize) -> u64 {
        let extra = self
            .fuel_per_input_byte
            .saturating_mul(u64::try_from(input_len).unwrap_or(u64::MAX));
        self.fuel_per_event.saturating_add(extra)
    }

    /// The configuration for deterministic simulation: no wall-clock epoch deadline.
    pub fn deterministic() -> HostConfig {
        HostConfig {
            epoch_deadline: None,
            ..HostConfig::default()
        }
    }

    /// Epoch ticks that make up the deadline (at least one).
    pub(crate) fn epoch_deadline_ticks(&self) -> Option<u64> {
        let deadline = self.epoch_deadline?;
        let tick = self.epoch_tick.as_nanos().max(1);
        Some((deadline.as_nanos().div_ceil(tick)).max(1) as u64)
    }
}
