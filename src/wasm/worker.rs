//! One wasm instance of a business worker: its own `Store` (isolated memory, fuel, limits),
//! fed one [`WorkerEvent`] at a time. A failed event costs only itself: the instance is
//! discarded and a fresh one (with `on_worker_start`) is made before the next event.
#![allow(
    clippy::disallowed_methods,
    reason = "the wasm host sets each event's time budget from the clock"
)]

use wasmtime::{Instance, Store, Trap, TypedFunc};

use super::event::{ClientInfo, EventFailure, EventKind, EventOutcome, FailureKind, WorkerEvent};
use super::handler::ApiHandler;
use super::host::{Plugin, WasmHost};
use super::imports::AbiViolation;
use super::reload::PluginSlot;
use super::session::SessionState;
use super::store::{EventContext, StoreData};
use super::{abi, value};
use crate::api::CurrentClient;
use crate::protocol::client_id::client_address;
use crate::protocol::php::PhpValue;

/// `on_message(id_ptr, id_len, body_ptr, body_len, flags)`.
type OnMessage = TypedFunc<(i32, i32, i32, i32, i32), ()>;
/// `on_websocket_connect(id_ptr, id_len, data_ptr, data_len)`.
type OnWebSocketConnect = TypedFunc<(i32, i32, i32, i32), ()>;

/// The typed exports of an instance (ABI.md 5); the `on_*` are optional.
struct Exports {
    alloc: TypedFunc<i32, i32>,
    free: TypedFunc<(i32, i32), ()>,
    on_worker_start: Option<TypedFunc<(), ()>>,
    on_worker_stop: Option<TypedFunc<(), ()>>,
    on_connect: Option<TypedFunc<(i32, i32), ()>>,
    on_close: Option<TypedFunc<(i32, i32), ()>>,
    on_message: Option<OnMessage>,
    on_websocket_connect: Option<OnWebSocketConnect>,
}

impl Exports {
    fn get<H: ApiHandler>(
        store: &mut Store<StoreData<H>>,
        instance: &Instance,
    ) -> wasmtime::Result<Exports> {
        // Types were checked at compile time (host::check_exports); these cannot fail
        // for a module that passed, so an error here is reported as an ABI violation.
        Ok(Exports {
            alloc: instance.get_typed_func(&mut *store, "gw_alloc")?,
            free: instance.get_typed_func(&mut *store, "gw_free")?,
            on_worker_start: instance.get_typed_func(&mut *store, "on_worker_start").ok(),
            on_worker_stop: instance.get_typed_func(&mut *store, "on_worker_stop").ok(),
            on_connect: instance.get_typed_func(&mut *store, "on_connect").ok(),
            on_close: instance.get_typed_func(&mut *store, "on_close").ok(),
            on_message: instance.get_typed_func(&mut *store, "on_message").ok(),
            on_websocket_connect: instance
                .get_typed_func(&mut *store, "on_websocket_connect")
                .ok(),
        })
    }
}

struct Live<H: ApiHandler> {
    store: Store<StoreData<H>>,
    exports: Exports,
    generation: u64,
}

enum State<H: ApiHandler> {
    /// An instance is ready for the next event.
    Live(Box<Live<H>>),
    /// No instance (not started yet, or discarded after a failure or a reload); the
    /// store data (and the handler in it) waits for the next instantiation.
    Parked(Box<StoreData<H>>),
    /// Transient, only while switching states.
    Switching,
}

/// Counters of one worker instance's life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InstanceStats {
    /// Events handled successfully.
    pub events_ok: u64,
    /// Events that failed (trap, fuel, memory, ABI).
    pub events_failed: u64,
    /// Instances created (first start, after failures, after reloads).
    pub instantiations: u64,
    /// Module swaps picked up from the slot.
    pub reloads: u64,
    /// Reloaded modules that failed to start and were rolled back by this instance.
    pub rollbacks: u64,
}

/// One isolated instance of a wasm business worker.
pub struct WasmWorker<H: ApiHandler> {
    host: WasmHost<H>,
    slot: PluginSlot<H>,
    state: State<H>,
    stats: InstanceStats,
}

impl<H: ApiHandler> WasmWorker<H> {
    /// A worker running `slot`'s module, calling `handler` for the Gateway API. Nothing is
    /// instantiated until [`Self::start`] or the first event.
    pub fn new(host: &WasmHost<H>, slot: &PluginSlot<H>, handler: H) -> WasmWorker<H> {
        WasmWorker {
            host: host.clone(),
            slot: slot.clone(),
            state: State::Parked(Box::new(StoreData::new(handler, host.config()))),
            stats: InstanceStats::default(),
        }
    }

    /// The API handler.
    pub fn handler(&self) -> &H {
        match &self.state {
            State::Live(live) => &live.store.data().handler,
            State::Parked(data) => &data.handler,
            State::Switching => unreachable!("state observed mid-switch"),
        }
    }

    /// The API handler, mutably (e.g. to point it at a new set of gateway links).
    pub fn handler_mut(&mut self) -> &mut H {
        match &mut self.state {
            State::Live(live) => &mut live.store.data_mut().handler,
            State::Parked(data) => &mut data.handler,
            State::Switching => unreachable!("state observed mid-switch"),
        }
    }

    /// Life counters.
    pub fn stats(&self) -> InstanceStats {
        self.stats
    }

    /// The module generation of the live instance, if one is live.
    pub fn live_generation(&self) -> Option<u64> {
        match &self.state {
            State::Live(live) => Some(live.generation),
            _ => None,
        }
    }

    /// Instantiates now (runs `on_worker_start`) if no instance of the current module is live.
    pub async fn start(&mut self, now_ms: i64) -> Result<(), EventFailure> {
        self.ensure_live(now_ms).await
    }

    /// Runs `on_worker_stop` (best effort) and drops the instance.
    pub async fn stop(&mut self, now_ms: i64) {
        if !matches!(self.state, State::Live(_)) {
            return;
        }
        let State::Live(mut live) = std::mem::replace(&mut self.state, State::Switching) else {
            unreachable!("checked live above");
        };
        if let Some(f) = live.exports.on_worker_stop.clone() {
            live.store.data_mut().now_ms = now_ms;
            let config = self.host.config();
            let r = match arm(&mut live.store, config, config.fuel_per_event) {
                Ok(()) => f.call_async(&mut live.store, ()).await,
                Err(e) => Err(e),
            };
            if let Err(e) = r {
                tracing::warn!(error = %format!("{e:#}"), "wasm on_worker_stop failed");
            }
        }
        self.park(live);
    }

    fn park(&mut self, live: Box<Live<H>>) {
        let mut data = live.store.into_data();
        data.reset();
        self.state = State::Parked(Box::new(data));
    }

    /// Handles one event. On failure the instance is discarded (logged with the client id);
    /// the next event gets a fresh instance.
    pub async fn handle(&mut self, event: &WorkerEvent) -> Result<EventOutcome, EventFailure> {
        self.ensure_live(event.now_ms).await?;
        let State::Live(live) = &mut self.state else {
            unreachable!("ensure_live leaves a live instance on success");
        };
        let config = self.host.config();
        let data = live.store.data_mut();
        data.now_ms = event.now_ms;
        data.event = Some(EventContext {
            current: current_client(&event.client),
            client: event.client.clone(),
            session: SessionState::new(event.session.clone()),
        });
        let encoded;
        let (payload, flags): (&[u8], i32) = match &event.kind {
            EventKind::Message { body, binary } => {
                (&body[..], if *binary { abi::FLAG_BINARY } else { 0 })
            }
            EventKind::WebSocketConnect { data } => {
                encoded = value::encode(data);
                (&encoded[..], 0)
            }
            EventKind::Connect | EventKind::Close => (&[], 0),
        };
        let budget = config.event_fuel(event.client.client_id.len() + payload.len());
        let result = match arm(&mut live.store, config, budget) {
            Ok(()) => run_event(live, event, payload, flags).await,
            Err(e) => Err(e),
        };
        let fuel_used = budget.saturating_sub(live.store.get_fuel().unwrap_or(0));
        let context = live.store.data_mut().event.take();
        match result {
            Ok(()) => {
                self.stats.events_ok += 1;
                let state = context.map(|c| c.session).unwrap_or_else(|| {
                    debug_assert!(false, "a client event always has a context");
                    SessionState::new(PhpValue::Null)
                });
                let (session, known_session) = (state.current, state.known);
                Ok(EventOutcome {
                    session,
                    known_session,
                    fuel_used,
                })
            }
            Err(e) => {
                let failure = failure_of(&e, live.store.data().limits.memory_refused);
                tracing::warn!(
                    client_id = %String::from_utf8_lossy(&event.client.client_id),
                    kind = ?failure.kind,
                    error = %failure.message,
                    "wasm event failed; the instance will be recreated"
                );
                self.stats.events_failed += 1;
                let State::Live(live) = std::mem::replace(&mut self.state, State::Switching) else {
                    unreachable!("live above");
                };
                self.park(live);
                Err(failure)
            }
        }
    }

    /// Makes sure an instance of the slot's current module is live: swaps modules after a
    /// reload (stopping the old instance) and recreates after a failure.
    async fn ensure_live(&mut self, now_ms: i64) -> Result<(), EventFailure> {
        loop {
            let (generation, plugin) = self.slot.current();
            if let State::Live(live) = &self.state {
                if live.generation == generation {
                    return Ok(());
                }
                self.stop(now_ms).await;
                self.stats.reloads += 1;
            }
            let State::Parked(data) = std::mem::replace(&mut self.state, State::Switching) else {
                unreachable!("not live means parked");
            };
            self.stats.instantiations += 1;
            match instantiate(&self.host, &plugin, *data, now_ms).await {
                Ok((store, exports)) => {
                    self.state = State::Live(Box::new(Live {
                        store,
                        exports,
                        generation,
                    }));
                    self.slot.started(generation);
                    return Ok(());
                }
                Err((mut data, e)) => {
                    let mut failure = failure_of(&e, data.limits.memory_refused);
                    failure.kind = FailureKind::Start;
                    tracing::warn!(source = %plugin.source, error = %failure.message, "wasm instance failed to start");
                    data.reset();
                    self.state = State::Parked(Box::new(data));
                    if self.slot.start_failed(generation) {
                        // Rolled back: start the previous module for this same event.
                        self.stats.rollbacks += 1;
                        continue;
                    }
                    return Err(failure);
                }
            }
        }
    }
}

/// Gives the store a fresh budget for one call sequence: `fuel`, epoch deadline, and a
/// clean memory-refusal flag.
fn arm<H: ApiHandler>(
    store: &mut Store<StoreData<H>>,
    config: &super::HostConfig,
    fuel: u64,
) -> wasmtime::Result<()> {
    store.data_mut().limits.memory_refused = false;
    store.set_fuel(fuel)?;
    if let Some(ticks) = config.epoch_deadline_ticks() {
        // The callback runs at every tick of guest time (`on_epoch_tick`).
        store.set_epoch_deadline(1);
        let budget = config
            .epoch_tick
            .saturating_mul(u32::try_from(ticks).unwrap_or(u32::MAX));
        store.data_mut().event_deadline = std::time::Instant::now().checked_add(budget);
    }
    Ok(())
}

/// The epoch callback, at each tick while the guest runs: past the event's wall-clock
/// deadline the event traps ([`FailureKind::Deadline`]); before it, the handler may push
/// out what is ready ([`ApiHandler::flush`]: a long event does not hold back the replies
/// of the events before it) and the guest goes on for one more tick.
fn on_epoch_tick<H: ApiHandler>(
    mut store: wasmtime::StoreContextMut<'_, StoreData<H>>,
) -> wasmtime::Result<wasmtime::UpdateDeadline> {
    let data = store.data_mut();
    match data.event_deadline {
        Some(deadline) if std::time::Instant::now() >= deadline => {
            Err(wasmtime::Error::from(Trap::Interrupt))
        }
        _ => {
            data.handler.flush();
            Ok(wasmtime::UpdateDeadline::Continue(1))
        }
    }
}

/// The current client of an event as API calls need it: gateway and connection come from
/// the client id (the gateway made the id from them).
fn current_client(client: &ClientInfo) -> Option<CurrentClient> {
    let (gateway, connection_id) = client_address(&client.client_id)?;
    Some(CurrentClient {
        client_id: client.client_id.clone(),
        gateway,
        connection_id,
        session: PhpValue::Null,
    })
}

type Instantiated<H> = (Store<StoreData<H>>, Exports);

async fn instantiate<H: ApiHandler>(
    host: &WasmHost<H>,
    plugin: &Plugin<H>,
    data: StoreData<H>,
    now_ms: i64,
) -> Result<Instantiated<H>, (StoreData<H>, wasmtime::Error)> {
    let mut store = Store::new(host.engine(), data);
    store.limiter(|d| &mut d.limits);
    store.epoch_deadline_callback(on_epoch_tick);
    match start_instance(&mut store, plugin, host.config(), now_ms).await {
        Ok(exports) => Ok((store, exports)),
        Err(e) => Err((store.into_data(), e)),
    }
}

async fn start_instance<H: ApiHandler>(
    store: &mut Store<StoreData<H>>,
    plugin: &Plugin<H>,
    config: &super::HostConfig,
    now_ms: i64,
) -> wasmtime::Result<Exports> {
    if let Some(interval) = config.fuel_yield_interval {
        store.fuel_async_yield_interval(Some(interval))?;
    }
    arm(store, config, config.fuel_per_event)?;
    let instance = plugin.pre.instantiate_async(&mut *store).await?;
    let memory = instance
        .get_memory(&mut *store, "memory")
        .ok_or_else(|| wasmtime::Error::new(AbiViolation("no memory export".into())))?;
    store.data_mut().memory = Some(memory);
    store.data_mut().now_ms = now_ms;
    let version: TypedFunc<(), i32> = instance.get_typed_func(&mut *store, "gw_abi_version")?;
    let v = version.call_async(&mut *store, ()).await?;
    if v != abi::ABI_VERSION {
        return Err(wasmtime::Error::new(AbiViolation(format!(
            "module speaks ABI version {v}, host speaks {}",
            abi::ABI_VERSION
        ))));
    }
    let exports = Exports::get(store, &instance)?;
    if let Some(f) = &exports.on_worker_start {
        f.call_async(&mut *store, ()).await?;
    }
    Ok(exports)
}

/// Copies the client id and `payload` (the message, or the encoded websocket-connect
/// data) into one guest buffer, runs the event's export, frees the buffer. A missing
/// export makes the event a no-op.
async fn run_event<H: ApiHandler>(
    live: &mut Live<H>,
    event: &WorkerEvent,
    payload: &[u8],
    flags: i32,
) -> wasmtime::Result<()> {
    let id = &event.client.client_id[..];
    let e = &live.exports;
    let present = match &event.kind {
        EventKind::Connect => e.on_connect.is_some(),
        EventKind::Close => e.on_close.is_some(),
        EventKind::Message { .. } => e.on_message.is_some(),
        EventKind::WebSocketConnect { .. } => e.on_websocket_connect.is_some(),
    };
    if !present {
        return Ok(());
    }
    let total = id.len() + payload.len();
    let total_i32 = i32::try_from(total)
        .map_err(|_| wasmtime::Error::new(AbiViolation("event larger than 2 GiB".into())))?;
    let store = &mut live.store;
    let ptr = e.alloc.call_async(&mut *store, total_i32).await?;
    if ptr == 0 && total > 0 {
        return Err(wasmtime::Error::new(AbiViolation(format!(
            "gw_alloc({total}) returned 0"
        ))));
    }
    let memory = store.data().memory.expect("memory set at instantiation");
    let start = ptr as u32 as usize;
    let buffer = memory
        .data_mut(&mut *store)
        .get_mut(start..start + total)
        .ok_or_else(|| {
            wasmtime::Error::new(AbiViolation(format!(
                "gw_alloc returned {start}+{total}, outside memory"
            )))
        })?;
    buffer[..id.len()].copy_from_slice(id);
    buffer[id.len()..].copy_from_slice(payload);
    let (id_ptr, id_len) = (ptr, id.len() as i32);
    let (body_ptr, body_len) = (ptr.wrapping_add(id_len), payload.len() as i32);
    match &event.kind {
        EventKind::Connect => {
            let f = e.on_connect.as_ref().expect("present");
            f.call_async(&mut *store, (id_ptr, id_len)).await?
        }
        EventKind::Close => {
            let f = e.on_close.as_ref().expect("present");
            f.call_async(&mut *store, (id_ptr, id_len)).await?
        }
        EventKind::Message { .. } => {
            let f = e.on_message.as_ref().expect("present");
            let args = (id_ptr, id_len, body_ptr, body_len, flags);
            f.call_async(&mut *store, args).await?
        }
        EventKind::WebSocketConnect { .. } => {
            let f = e.on_websocket_connect.as_ref().expect("present");
            let args = (id_ptr, id_len, body_ptr, body_len);
            f.call_async(&mut *store, args).await?
        }
    }
    e.free.call_async(&mut *store, (ptr, total_i32)).await
}

/// Names the failure behind `error` (see [`FailureKind`]).
fn failure_of(error: &wasmtime::Error, memory_refused: bool) -> EventFailure {
    let kind = if let Some(trap) = error.downcast_ref::<Trap>() {
        match trap {
            Trap::OutOfFuel => FailureKind::OutOfFuel,
            Trap::Interrupt => FailureKind::Deadline,
            _ if memory_refused => FailureKind::MemoryLimit,
            _ => FailureKind::Trap,
        }
    } else if memory_refused {
        FailureKind::MemoryLimit
    } else if error.downcast_ref::<AbiViolation>().is_some() {
        FailureKind::Abi
    } else {
        FailureKind::Trap
    };
    EventFailure {
        kind,
        message: format!("{error:#}"),
    }
}
