//! The worker's driver: a [`WorkerCore`] and the sockets it asked for, run by whoever owns
//! the [`WorkerDriver`] — one task, no channels.
//!
//! The business code holds the driver and calls it directly:
//! [`WorkerDriver::next_event`] waits for a client event, [`WorkerDriver::call`] runs a
//! Gateway API call and waits for its result, [`WorkerDriver::end_event`] ends an event
//! (writes its session back). While it waits, in any of them, the driver does the links'
//! I/O: it reads every link into one scratch buffer and feeds the core, writes what the
//! core transmits, connects, and fires the core's timer. So a query suspends only the
//! task that made it (the instance's guest), and link I/O goes on meanwhile; nothing
//! crosses a thread or a channel on the way from a gateway's bytes to the guest and back.
//!
//! Batching: a send completes as soon as the core has queued its frame; writes happen
//! when the driver next waits. A business loop that handles every event it has before
//! waiting again therefore answers a read of N events with one vectored write per link.
//!
//! Events are all-or-nothing: between [`WorkerDriver::begin_event`] and
//! [`WorkerDriver::end_event`] the core stages the frames of the event's calls (a query
//! commits what is staged before it); [`WorkerDriver::fail_event`] discards them. Only
//! committed frames ever reach the write queues, so [`WorkerDriver::flush`] during a long
//! event writes earlier events' replies, never the running event's frames.
//!
//! Generic over [`Net`] so the same code runs on tokio sockets and under turmoil. The
//! driver is `Send` when the streams are (a wasm store may hold it), but it is meant for
//! one thread: connection attempts run as local tasks (`spawn_local`), so it must be used
//! inside a [`tokio::task::LocalSet`].
//!
//! Bounds: events wait in a queue of at most [`DriverConfig::events_pending_max`]; the
//! core holds the rest ([`WorkerCore::set_event_room`]) up to `held_events_bytes_max`
//! bytes, and only past that does the driver stop reading links (gateways then see TCP
//! backpressure). Bytes towards a link are bounded by the core's window. Reads per link
//! and per wake-up are bounded by [`READS_PER_TURN_MAX`].
//!
//! Memory after a backlog: the driver counts the bytes it read since the incoming side
//! (its event queue, the core's held events and every link's parked events) was last
//! found empty. When the business code finds no event and the core holds none either, a
//! run of at least [`memory::BACKLOG_BYTES`] has drained: the queues give back what they
//! grew (at most [`EVENT_SLOTS_KEPT`] slots kept, [`WorkerCore::shrink_incoming`]) and the
//! freed events are handed back to the system ([`memory::backlog_drained`]). Events that
//! keep up empty the queues at every turn and never count as a backlog, so this costs the
//! per-message path one addition per read and one look at the core per empty turn.
//!
//! Panics: a panic while the core handles one link's bytes is caught; that link is
//! closed (the core's link-closed path runs: its pending calls fail, it is reconnected),
//! logged and counted (`gatewayworker_connection_panics_total`). Other links carry on.
#![allow(
    clippy::disallowed_methods,
    reason = "the driver reads the clock and hands `now` to the core"
)]

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, Sleep};

use super::core::{
    Action, CallDone, CallId, ClientEvent, ClientEventKind, GatewayLinkId, Peer, RolledBack,
    WorkerConfig, WorkerCore,
};
use crate::api::{ApiCall, ApiError, ApiResult, CurrentClient};
use crate::net::{memory, Net, NetStream, WriteQueue};
use crate::protocol::php::PhpValue;

/// Reads served per link in one pass before the others get theirs (fairness bound).
pub const READS_PER_TURN_MAX: usize = 4;

/// Passes of I/O in one wake-up before the driver yields to its runtime (so a link that
/// never runs dry cannot starve the timer or the business code).
const PASSES_PER_WAKE_MAX: usize = 16;

/// Event slots the incoming queues (the driver's, the core's held and parked ones) keep
/// once a backlog has drained; a backlog of more gives the rest back then.
pub const EVENT_SLOTS_KEPT: usize = 64;

/// Bytes of a link's empty input buffer kept once a backlog has drained (a read's worth
/// by default); a larger one (a long frame's leftover) is let go.
const INBOUND_BYTES_KEPT: usize = 64 * 1024;

/// Settings of the driver itself (the core has [`WorkerConfig`]).
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// Events waiting for the business code at most; the core holds the rest.
    pub events_pending_max: usize,
    /// Bytes read per `try_read`: the size of the one scratch buffer every link is read
    /// into (allocated once per driver).
    pub read_chunk_bytes: usize,
    /// Tests and simulation only: called with the core after every input the driver
    /// hands it (bytes, connects, closes, timers, calls), e.g. to check its invariants
    /// and observe its links. `None` by default; no setting reaches it.
    #[doc(hidden)]
    pub after_input: Option<fn(&WorkerCore)>,
}

impl Default for DriverConfig {
    fn default() -> DriverConfig {
        DriverConfig {
            events_pending_max: 1024,
            read_chunk_bytes: 64 * 1024,
            after_input: None,
        }
    }
}

/// A connection attempt's outcome, sent by its local task.
type Connected<S> = (GatewayLinkId, io::Result<S>);

/// One link's I/O state.
struct LinkIo<S> {
    /// `None` while connecting.
    stream: Option<S>,
    /// The connection attempt, aborted if the core gives up on the link first.
    connecting: Option<JoinHandle<()>>,
    /// What the core transmitted and the socket did not take yet.
    out: WriteQueue,
}

impl<S> Drop for LinkIo<S> {
    fn drop(&mut self) {
        if let Some(attempt) = self.connecting.take() {
            attempt.abort();
        }
    }
}

/// A worker core with its links; see the module documentation.
pub struct WorkerDriver<N: Net> {
    net: N,
    config: DriverConfig,
    core: WorkerCore,
    origin: Instant,
    /// By id: a deterministic order for reads and writes.
    links: BTreeMap<GatewayLinkId, LinkIo<N::Stream>>,
    connects_tx: mpsc::UnboundedSender<Connected<N::Stream>>,
    connects: mpsc::UnboundedReceiver<Connected<N::Stream>>,
    /// Every link is read into this buffer; the core copies what it keeps.
    scratch: Vec<u8>,
    timer: Pin<Box<Sleep>>,
    timer_at: Option<Duration>,
    events: VecDeque<ClientEvent>,
    /// Bytes read since the incoming side (`events`, the core's held and parked events)
    /// was last found empty (saturating): the size of the backlog it is working through.
    incoming_run: usize,
    /// Incoming backlogs of at least [`memory::BACKLOG_BYTES`] that drained.
    incoming_backlogs: u64,
    /// The call being waited for, and its result once the core finished it.
    awaited: Option<CallId>,
    done: Option<CallDone>,
}

impl<N: Net> WorkerDriver<N> {
    /// A driver whose core starts connecting to the registers at once (on first use).
    pub fn new(net: N, core: WorkerConfig, config: DriverConfig) -> WorkerDriver<N> {
        let origin = Instant::now();
        let (connects_tx, connects) = mpsc::unbounded_channel();
        let scratch = vec![0u8; config.read_chunk_bytes.max(1)];
        WorkerDriver {
            net,
            core: WorkerCore::new(core, Duration::ZERO),
            config,
            origin,
            links: BTreeMap::new(),
            connects_tx,
            connects,
            scratch,
            timer: Box::pin(tokio::time::sleep_until(origin)),
            timer_at: None,
            events: VecDeque::new(),
            incoming_run: 0,
            incoming_backlogs: 0,
            awaited: None,
            done: None,
        }
    }

    /// The core (counters, gateway list).
    pub fn core(&self) -> &WorkerCore {
        &self.core
    }

    /// Gateway links whose connection is established.
    pub fn connected_gateway_count(&self) -> usize {
        self.core.connected_gateway_count()
    }

    /// Incoming backlogs (at least [`memory::BACKLOG_BYTES`] read while events waited)
    /// that drained so far, each followed by a shrink of the queues and a trim request.
    pub fn incoming_backlogs_drained(&self) -> u64 {
        self.incoming_backlogs
    }

    /// The next client event, if one is ready now (no I/O).
    pub fn try_event(&mut self) -> Option<ClientEvent> {
        let event = self.events.pop_front();
        if event.is_some() {
            self.dispatch();
        } else if self.incoming_run > 0 {
            self.incoming_ran_empty();
        }
        event
    }

    /// The business code found no event: when the core holds none either, the run of
    /// incoming bytes ends, and one of [`memory::BACKLOG_BYTES`] or more gives back what
    /// it grew (see the module documentation).
    fn incoming_ran_empty(&mut self) {
        if !self.events.is_empty() || !self.core.incoming_drained() {
            return;
        }
        if self.incoming_run >= memory::BACKLOG_BYTES {
            if self.events.capacity() > EVENT_SLOTS_KEPT {
                self.events.shrink_to(EVENT_SLOTS_KEPT);
            }
            self.core
                .shrink_incoming(EVENT_SLOTS_KEPT, INBOUND_BYTES_KEPT);
            self.incoming_backlogs = self.incoming_backlogs.saturating_add(1);
            tracing::debug!(
                bytes = self.incoming_run,
                "incoming backlog drained: queues shrunk, memory trim asked"
            );
            memory::backlog_drained();
        }
        self.incoming_run = 0;
    }

    /// Waits for the next client event, doing link I/O meanwhile. Cancel-safe.
    pub async fn next_event(&mut self) -> ClientEvent {
        std::future::poll_fn(|cx| {
            if let Some(event) = self.try_event() {
                return Poll::Ready(event);
            }
            let _ = self.poll_io(cx);
            match self.try_event() {
                Some(event) => Poll::Ready(event),
                None => Poll::Pending,
            }
        })
        .await
    }

    /// Ready when something happened (an event is ready, or link I/O was done), doing the
    /// link I/O possible now; otherwise registers `cx`. For owners that wait on other
    /// things too (a stop signal).
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let progress = self.poll_io(cx);
        if progress || !self.events.is_empty() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Waits until something happened ([`WorkerDriver::poll_ready`]).
    pub async fn wait(&mut self) {
        std::future::poll_fn(|cx| self.poll_ready(cx)).await
    }

    /// Waits, doing link I/O, until `n` gateway links are established.
    pub async fn wait_for_gateways(&mut self, n: usize) {
        while self.connected_gateway_count() < n {
            self.wait().await;
        }
    }

    /// Runs one API call for the business code and waits for its result (doing link I/O
    /// meanwhile). `current` is the client of the event being handled, with the
    /// handler's `$_SESSION` now; with `binary`, a send reaches websocket clients as a
    /// binary frame (our FLAG_BINARY extension). Sends complete at once; their frames
    /// leave when the driver next waits.
    pub async fn call(
        &mut self,
        call: &ApiCall,
        current: Option<&CurrentClient>,
        binary: bool,
    ) -> CallDone {
        let now = self.now();
        let id = self.core.call_as(now, call, current, binary);
        self.awaited = Some(id);
        self.done = None;
        self.dispatch();
        std::future::poll_fn(|cx| {
            if let Some(done) = self.take_done(id) {
                return Poll::Ready(done);
            }
            let _ = self.poll_io(cx);
            match self.take_done(id) {
                Some(done) => Poll::Ready(done),
                None => Poll::Pending,
            }
        })
        .await
    }

    /// [`WorkerDriver::call`], returning only the result.
    pub async fn call_result(
        &mut self,
        call: &ApiCall,
        current: Option<&CurrentClient>,
        binary: bool,
    ) -> ApiResult {
        self.call(call, current, binary).await.result
    }

    /// The business code starts running an event ([`WorkerCore::begin_event`]): the frames
    /// of its calls wait for its end ([`WorkerDriver::end_event`] commits them,
    /// [`WorkerDriver::fail_event`] discards them). Optional: without it, calls go out as
    /// they are made.
    pub fn begin_event(&mut self) {
        self.core.begin_event();
        self.dispatch();
    }

    /// Ends the event of `client` after its handler failed ([`WorkerCore::fail_event`]):
    /// what it staged is discarded unsent, nothing is written back, and the client's next
    /// event goes through. Returns what was discarded.
    pub fn fail_event(&mut self, client: &CurrentClient, kind: ClientEventKind) -> RolledBack {
        let now = self.now();
        let rolled = self.core.fail_event(now, client, kind);
        self.dispatch();
        rolled
    }

    /// Ends the event of `client` ([`WorkerCore::end_event`]): writes its session back if
    /// it changed, commits the event's frames (see [`WorkerDriver::begin_event`]), and lets
    /// the client's next event through.
    pub fn end_event(
        &mut self,
        client: &CurrentClient,
        kind: ClientEventKind,
        old: &PhpValue,
        new: &PhpValue,
    ) -> Result<(), ApiError> {
        let now = self.now();
        let outcome = self.core.end_event(now, client, kind, old, new);
        self.dispatch();
        outcome
    }

    /// Waits `duration` on the driver's clock (simulated under simulation), doing link I/O
    /// meanwhile.
    pub async fn sleep(&mut self, duration: Duration) {
        let mut sleep = Box::pin(tokio::time::sleep(duration));
        std::future::poll_fn(|cx| {
            let _ = self.poll_io(cx);
            sleep.as_mut().poll(cx)
        })
        .await
    }

    /// Writes what the sockets take now, without waiting and without reading (for a long
    /// computation that wants the replies before it out). Only committed frames are in
    /// the write queues: the running event's staged frames stay staged.
    pub fn flush(&mut self) {
        let now = self.now();
        let mut lost = Vec::new();
        for (&link, io) in self.links.iter_mut() {
            if let Some(stream) = io.stream.as_mut() {
                while !io.out.is_empty() {
                    match io.out.write_to(stream) {
                        Ok(n) => self.core.handle_written(now, link, n),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            lost.push((link, Some(e)));
                            break;
                        }
                    }
                }
            }
        }
        for (link, error) in lost {
            self.link_lost(now, link, error);
        }
        self.dispatch();
    }

    fn take_done(&mut self, id: CallId) -> Option<CallDone> {
        match &self.done {
            Some(done) if done.id == id => {
                self.awaited = None;
                self.done.take()
            }
            _ => None,
        }
    }

    fn now(&self) -> Duration {
        Instant::now().saturating_duration_since(self.origin)
    }

    /// Does all the link I/O possible now, registering `cx` for what it waits on; true
    /// when anything was done (the caller re-checks what it waits for).
    fn poll_io(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        for _ in 0..PASSES_PER_WAKE_MAX {
            // Reads before the timer: after a long turn of the business code, what the
            // gateways sent meanwhile counts (as progress, as replies) before deadlines
            // and suspicion are judged.
            let pass = self.poll_connects(cx) | self.poll_writes(cx) | self.poll_reads(cx);
            let pass = pass | self.poll_timer(cx);
            self.dispatch();
            if !pass {
                return progress;
            }
            progress = true;
        }
        // Still busy: let the runtime run its other work, and come back at once.
        cx.waker().wake_by_ref();
        progress
    }

    fn poll_connects(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        while let Poll::Ready(Some((link, result))) = self.connects.poll_recv(cx) {
            progress = true;
            let now = self.now();
            let Some(io) = self.links.get_mut(&link) else {
                continue; // the core gave up on it meanwhile
            };
            io.connecting = None;
            match result {
                Ok(stream) => {
                    io.stream = Some(stream);
                    self.core.handle_connected(now, link);
                }
                Err(e) => self.link_lost(now, link, Some(e)),
            }
        }
        progress
    }

    fn poll_timer(&mut self, cx: &mut Context<'_>) -> bool {
        let deadline = self.core.poll_timeout();
        if deadline != self.timer_at {
            if let Some(at) = deadline {
                self.timer.as_mut().reset(self.origin + at);
            }
            self.timer_at = deadline;
        }
        if self.timer_at.is_some() && self.timer.as_mut().poll(cx).is_ready() {
            let now = self.now();
            self.core.handle_timeout(now);
            self.timer_at = None;
            return true;
        }
        false
    }

    fn poll_writes(&mut self, cx: &mut Context<'_>) -> bool {
        let now = self.now();
        let mut progress = false;
        let mut lost = None;
        for (&link, io) in self.links.iter_mut() {
            let Some(stream) = io.stream.as_mut() else {
                continue;
            };
            while !io.out.is_empty() {
                match stream.poll_write_ready(cx) {
                    Poll::Pending => break,
                    Poll::Ready(Err(e)) => {
                        lost = Some((link, Some(e)));
                        break;
                    }
                    Poll::Ready(Ok(())) => match io.out.write_to(stream) {
                        Ok(n) => {
                            progress = true;
                            self.core.handle_written(now, link, n);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => {
                            lost = Some((link, Some(e)));
                            break;
                        }
                    },
                }
            }
            if lost.is_some() {
                break;
            }
        }
        if let Some((link, error)) = lost {
            self.link_lost(now, link, error);
            progress = true;
        }
        progress
    }

    fn poll_reads(&mut self, cx: &mut Context<'_>) -> bool {
        if self.core.input_paused() {
            return false;
        }
        let now = self.now();
        let mut progress = false;
        let mut lost = None;
        'links: for (&link, io) in self.links.iter_mut() {
            let Some(stream) = io.stream.as_mut() else {
                continue;
            };
            for _ in 0..READS_PER_TURN_MAX {
                match stream.poll_read_ready(cx) {
                    Poll::Pending => break,
                    Poll::Ready(Err(e)) => {
                        lost = Some((link, Some(e)));
                        break 'links;
                    }
                    Poll::Ready(Ok(())) => {}
                }
                match stream.try_read(&mut self.scratch) {
                    Ok(0) => {
                        lost = Some((link, None));
                        break 'links;
                    }
                    Ok(n) => {
                        progress = true;
                        self.incoming_run = self.incoming_run.saturating_add(n);
                        let (core, bytes) = (&mut self.core, &self.scratch[..n]);
                        // `catch_panic` also counts it in the process-wide
                        // `gatewayworker_connection_panics_total`.
                        let handled = crate::net::catch_panic(|| {
                            #[cfg(test)]
                            tests::panic_hook(bytes);
                            core.handle_bytes(now, link, bytes);
                        });
                        if let Err(panicked) = handled {
                            tracing::error!(?link, %panicked, "panic while handling a link's bytes: link closed");
                            lost = Some((link, None));
                            break 'links;
                        }
                        if self.core.input_paused() {
                            break 'links;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        lost = Some((link, Some(e)));
                        break 'links;
                    }
                }
            }
        }
        if let Some((link, error)) = lost {
            self.link_lost(now, link, error);
            progress = true;
        }
        progress
    }

    /// The socket of `link` failed or ended: forget it; the core reconnects as after any
    /// close.
    fn link_lost(&mut self, now: Duration, link: GatewayLinkId, error: Option<io::Error>) {
        tracing::debug!(?link, ?error, "link lost");
        self.links.remove(&link);
        self.core.handle_closed(now, link);
    }

    /// Carries out everything the core asked for.
    fn dispatch(&mut self) {
        loop {
            while let Some(action) = self.core.poll_action() {
                self.act(action);
            }
            // The core hands over no more events than the queue has room for and holds
            // the rest, so link input (replies included) keeps flowing while events wait.
            let room = self
                .config
                .events_pending_max
                .saturating_sub(self.events.len());
            self.core.set_event_room(room);
            if !self.core.has_actions() {
                // Tests and simulation only (`None` by default).
                if let Some(after_input) = self.config.after_input {
                    after_input(&self.core);
                }
                return;
            }
        }
    }

    fn act(&mut self, action: Action) {
        match action {
            Action::Connect { link, peer } => {
                let address = match peer {
                    Peer::Register(a) => a,
                    Peer::Gateway(a) => a.to_string(),
                };
                let (net, done) = (self.net.clone(), self.connects_tx.clone());
                let attempt = tokio::task::spawn_local(async move {
                    let result = net.connect(&address).await;
                    let _ = done.send((link, result));
                });
                let io = LinkIo {
                    stream: None,
                    connecting: Some(attempt),
                    out: WriteQueue::default(),
                };
                self.links.insert(link, io);
            }
            Action::Transmit { link, bytes } => {
                if let Some(io) = self.links.get_mut(&link) {
                    // Bounded by the core's window: it hands out no more until
                    // `handle_written` confirms.
                    io.out.push(bytes);
                }
            }
            Action::Close { link, reason } => {
                tracing::info!(?link, ?reason, "closing link");
                self.links.remove(&link);
            }
            Action::Event(event) => self.events.push_back(event),
            Action::CallDone(done) => {
                if self.awaited == Some(done.id) {
                    self.done = Some(done);
                } else {
                    tracing::debug!(call = ?done.id, "result of an abandoned call dropped");
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "driver_tests.rs"]
mod tests;
