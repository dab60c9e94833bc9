//! One instance of a BusinessWorker: a wasm instance whose store holds the instance's
//! [`WorkerDriver`], run as one task.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;

use super::metrics::{EventMetrics, InstanceCounters};
use super::BusinessSettings;
use crate::api::ApiResult;
use crate::net::Net;
use crate::protocol::php::PhpValue;
use crate::wasm::{
    ApiHandler, ApiRequest, ClientInfo, EventKind as GuestEventKind, InstanceStats, PluginSlot,
    WasmHost, WasmWorker, WorkerEvent,
};
use crate::worker::core::{ClientEvent, ClientEventKind};
use crate::worker::WorkerDriver;

/// The Gateway API of one instance: the guest's calls go straight into the instance's
/// [`WorkerDriver`], which the wasm store holds (so a host function reaches it through
/// the store, with no channel and no lock).
pub struct BusinessApi<N: Net> {
    driver: WorkerDriver<N>,
}

impl<N: Net> BusinessApi<N> {
    /// The API over `driver`.
    pub fn new(driver: WorkerDriver<N>) -> BusinessApi<N> {
        BusinessApi { driver }
    }

    /// The driver, for the business loop between events.
    pub fn driver(&mut self) -> &mut WorkerDriver<N> {
        &mut self.driver
    }
}

impl<N: Net> ApiHandler for BusinessApi<N> {
    async fn call(&mut self, request: ApiRequest) -> ApiResult {
        let driver = &mut self.driver;
        driver
            .call_result(&request.call, request.current.as_ref(), request.binary)
            .await
    }

    async fn sleep(&mut self, duration: Duration) -> bool {
        self.driver.sleep(duration).await;
        true
    }

    fn flush(&mut self) {
        self.driver.flush();
    }
}

/// One instance and what it reports to its process.
pub(super) struct Instance<N: Net> {
    pub index: u32,
    pub host: WasmHost<BusinessApi<N>>,
    pub slot: PluginSlot<BusinessApi<N>>,
    pub settings: BusinessSettings,
    pub stats: Arc<Mutex<Vec<InstanceCounters>>>,
    pub events: Arc<EventMetrics>,
    pub stopped: watch::Receiver<bool>,
    pub connected: watch::Sender<usize>,
    /// The guests' wall clock, Unix ms.
    pub clock: fn() -> i64,
}

/// Runs instance `index` of a BusinessWorker on the current task: its driver over `net`
/// and its wasm instance, with `clock` (Unix milliseconds) as the guests' time. This is
/// what [`super::start`] runs on each of its threads (over [`crate::net::TokioNet`], with
/// the system clock); a simulation runs it inside a simulated host instead (its network,
/// its clock, a host built with [`crate::wasm::HostConfig::deterministic`]). Returns once
/// `stopped` turns true and the instance has stopped; the instance's counters come back.
pub async fn run_instance<N: Net>(
    net: N,
    host: WasmHost<BusinessApi<N>>,
    slot: PluginSlot<BusinessApi<N>>,
    settings: BusinessSettings,
    index: u32,
    stopped: watch::Receiver<bool>,
    clock: fn() -> i64,
) -> InstanceStats {
    let stats = Arc::new(Mutex::new(vec![
        InstanceCounters::default();
        index as usize + 1
    ]));
    let (connected, _) = watch::channel(0);
    let instance = Instance {
        index,
        host,
        slot,
        settings,
        stats: stats.clone(),
        events: Arc::new(EventMetrics::default()),
        stopped,
        connected,
        clock,
    };
    instance.run(net).await;
    let all = stats.lock().unwrap_or_else(|e| e.into_inner());
    all[index as usize].wasm
}

impl<N: Net> Instance<N> {
    /// The instance's one task (on a `LocalSet`: the driver's connection attempts are
    /// local tasks).
    pub async fn run(self, net: N) {
        let local = tokio::task::LocalSet::new();
        local.run_until(self.serve(net)).await;
    }

    async fn serve(mut self, net: N) {
        let mut config = self.settings.core.clone();
        config.index = self.index;
        let driver = WorkerDriver::new(net, config, self.settings.driver.clone());
        let mut worker = WasmWorker::new(&self.host, &self.slot, BusinessApi::new(driver));
        let started = Instant::now();
        match worker.start((self.clock)()).await {
            Ok(()) => tracing::debug!(
                index = self.index,
                instantiate_ms = started.elapsed().as_secs_f64() * 1e3,
                "wasm instance started"
            ),
            // The next event retries; the failure was logged by the host.
            Err(e) => tracing::warn!(index = self.index, error = %e, "wasm instance start failed"),
        }
        self.publish_stats(&mut worker);
        let mut stopped = self.stopped.clone();
        let stop = stopped.wait_for(|stop| *stop);
        tokio::pin!(stop);
        let mut too_large_seen = 0;
        loop {
            // Every event ready now runs before the driver waits (and writes): their
            // replies leave together.
            while let Some(event) = worker.handler_mut().driver().try_event() {
                self.handle(&mut worker, event).await;
            }
            // Client events the core skipped for their size while reading (counted there).
            let too_large = worker
                .handler_mut()
                .driver()
                .core()
                .stats()
                .events_too_large;
            self.events
                .add_too_large(too_large.saturating_sub(too_large_seen));
            too_large_seen = too_large;
            let count = worker.handler_mut().driver().connected_gateway_count();
            self.connected
                .send_if_modified(|n| std::mem::replace(n, count) != count);
            let stopping = std::future::poll_fn(|cx| {
                if stop.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(true);
                }
                worker.handler_mut().driver().poll_ready(cx).map(|()| false)
            })
            .await;
            if stopping {
                break;
            }
        }
        worker.stop((self.clock)()).await;
        self.publish_stats(&mut worker);
        // Dropping the worker drops the driver, which closes the links.
    }

    async fn handle(&mut self, worker: &mut WasmWorker<BusinessApi<N>>, mut event: ClientEvent) {
        let guest_event = guest_event(&mut event, (self.clock)());
        let started = Instant::now();
        // A fresh instance (first event, after a failure or a reload) starts before the event
        // begins: what `on_worker_start` (or the old module's `on_worker_stop`) does is not
        // part of the event.
        let live = worker.start(guest_event.now_ms).await;
        // All or nothing: the frames of the guest's calls are staged until the event ends.
        worker.handler_mut().driver().begin_event();
        let outcome = match live {
            Ok(()) => worker.handle(&guest_event).await,
            Err(failure) => Err(failure),
        };
        let failure = outcome.as_ref().err().map(|f| f.kind);
        self.events.record(started.elapsed(), failure);
        // The host tracks the original's `Context::$old_session` (the event's session,
        // updated by the guest's own session calls on its client). A failed event sends
        // nothing (what it staged is discarded), writes nothing back, but still ends: the
        // client's next events wait for it.
        let (old, new) = match outcome {
            Ok(outcome) => (outcome.known_session, outcome.session),
            Err(failure) => {
                let driver = worker.handler_mut().driver();
                let rolled = driver.fail_event(&event.client, event.kind);
                tracing::warn!(
                    index = self.index,
                    client_id = %String::from_utf8_lossy(&event.client.client_id),
                    kind = ?failure.kind,
                    frames_discarded = rolled.frames,
                    bytes_discarded = rolled.bytes,
                    "client event lost, its effects discarded: {}",
                    failure.message
                );
                self.publish_stats(worker);
                return;
            }
        };
        let driver = worker.handler_mut().driver();
        if let Err(e) = driver.end_event(&event.client, event.kind, &old, &new) {
            tracing::warn!(
                index = self.index,
                client_id = %String::from_utf8_lossy(&event.client.client_id),
                error = %e,
                "session not written back"
            );
        }
        self.publish_stats(worker);
    }

    fn publish_stats(&self, worker: &mut WasmWorker<BusinessApi<N>>) {
        let wasm = worker.stats();
        let engine = worker.handler_mut().driver().core().stats().clone();
        let mut all = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        all[self.index as usize] = InstanceCounters { wasm, engine };
    }
}

/// The wasm host's view of a driver event. The body and the session move into it; the
/// event keeps what ending it needs (the client's id, gateway and connection).
fn guest_event(event: &mut ClientEvent, now_ms: i64) -> WorkerEvent {
    let h = &event.header;
    let body = std::mem::replace(&mut event.body, PhpValue::Null);
    let kind = match event.kind {
        ClientEventKind::Connect => GuestEventKind::Connect,
        ClientEventKind::Close => GuestEventKind::Close,
        ClientEventKind::Message => GuestEventKind::Message {
            body: match body {
                PhpValue::Str(bytes) => bytes,
                // A gateway sends message bodies as raw bytes; anything else is not a
                // message a client could have sent.
                _ => Bytes::new(),
            },
            binary: event.binary,
        },
        ClientEventKind::WebSocketConnect => GuestEventKind::WebSocketConnect { data: body },
    };
    WorkerEvent {
        kind,
        client: ClientInfo {
            client_id: event.client.client_id.clone(),
            remote_addr: h.client_ip.to_string(),
            remote_port: h.client_port,
            gateway_addr: h.local_ip.to_string(),
            gateway_port: h.gateway_port,
        },
        session: std::mem::replace(&mut event.client.session, PhpValue::Null),
        now_ms,
    }
}

#[cfg(test)]
#[path = "instance_tests.rs"]
mod tests;
