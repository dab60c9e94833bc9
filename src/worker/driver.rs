//! The worker's tokio driver: owns the sockets the [`WorkerCore`] asks for, feeds it bytes
//! and time, hands client events to the business code and runs its API calls.
//!
//! Shape: one main loop owns the core; each link (register or gateway) is a local task
//! that connects, writes what the core transmits and reads into its own buffer, handing
//! the bytes to the main loop as slices of a reused staging buffer (no allocation per
//! read once the main loop keeps up). Generic over [`Net`], so the same code runs on tokio sockets and under
//! turmoil. Everything runs on a `LocalSet` of its own (the `Net` futures need not be
//! `Send`), so [`run`] can be awaited from a current-thread runtime or a turmoil host.
//!
//! Bounds: link chunks travel through a channel of `link_inbox_max` messages; events
//! wait in a queue of at most `events_pending_max` for the business code. While it is
//! full the loop keeps reading links, so the replies and acknowledgements the business
//! code waits for still arrive; the core holds the events it cannot hand over
//! ([`WorkerCore::set_event_room`]) up to `held_events_bytes_max` bytes, and only past
//! that does the loop stop taking link input (gateways then see TCP backpressure; a reply
//! behind the unread bytes waits, and its query may time out). Bytes towards a link are
//! bounded by the core's window.
//!
//! Panics: a panic while the core handles one link's bytes is caught; that link is
//! closed (the core's link-closed path runs: its pending calls fail, it is reconnected),
//! the panic is logged at error and counted (`gatewayworker_connection_panics_total`,
//! [`DriverConfig::connection_panics`]). Other links and the worker carry on.
//! `tokio::select!` is always `biased;` (deterministic under simulation).
#![allow(
    clippy::disallowed_methods,
    reason = "the driver reads the clock and hands `now` to the core"
)]

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::api::{ApiCall, ApiError};
use super::core::{
    Action, CallDone, CallId, ClientEvent, EventKind, LinkId, Peer, WorkerConfig, WorkerCore,
};
use super::sender::CurrentClient;
use crate::net::{Net, NetStream};
use crate::protocol::php::PhpValue;

/// Buffers handed to one vectored write on a link.
const WRITE_SLICES_MAX: usize = 64;

/// A request from the business code to the worker.
#[derive(Debug)]
pub enum ToWorker {
    /// Run an API call; its result is sent on `reply`.
    Call {
        /// The call.
        call: ApiCall,
        /// The client of the event being handled, if any.
        current: Option<CurrentClient>,
        /// Where the result goes.
        reply: oneshot::Sender<CallDone>,
    },
    /// Like `Call`, but a send reaches websocket clients as a binary frame
    /// ([`WorkerCore::call_as`]); other calls run as with `Call`.
    CallBinary {
        /// The call.
        call: ApiCall,
        /// The client of the event being handled, if any.
        current: Option<CurrentClient>,
        /// Where the result goes.
        reply: oneshot::Sender<CallDone>,
    },
    /// An event was handled: write its session back if it changed
    /// ([`WorkerCore::end_event`]).
    EndEvent {
        /// The event's client.
        client: CurrentClient,
        /// The event's kind.
        kind: EventKind,
        /// The session the handler started from (as updated by its own session calls).
        old: PhpValue,
        /// The session after the handler.
        new: PhpValue,
        /// Where the outcome goes, if anyone wants it.
        reply: Option<oneshot::Sender<Result<(), ApiError>>>,
    },
}

/// Settings of the driver itself (the core has [`WorkerConfig`]).
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// Events waiting for the business code at most; beyond, link input pauses.
    pub events_pending_max: usize,
    /// Messages from link tasks waiting for the main loop at most.
    pub link_inbox_max: usize,
    /// Bytes read per `try_read`: the size of each link's read buffer, allocated once per
    /// link. What a read returns is copied into a per-link staging buffer and handed to the
    /// main loop as a slice of it, so steady traffic allocates nothing per read.
    pub read_chunk_len: usize,
    /// Counts panics caught while handling a link's bytes (each closed that link only);
    /// shared with the metrics endpoint.
    pub connection_panics: Arc<AtomicU64>,
}

impl Default for DriverConfig {
    fn default() -> DriverConfig {
        DriverConfig {
            events_pending_max: 1024,
            link_inbox_max: 256,
            read_chunk_len: 64 * 1024,
            connection_panics: Arc::new(AtomicU64::new(0)),
        }
    }
}

/// What a link task tells the main loop.
#[derive(Debug)]
enum FromLink {
    Connected(LinkId),
    Bytes(LinkId, Bytes),
    Written(LinkId, usize),
    Closed(LinkId),
}

/// Runs a worker until the business code drops its command sender or the event receiver.
pub async fn run<N: Net>(
    net: N,
    config: WorkerConfig,
    driver: DriverConfig,
    events: mpsc::Sender<ClientEvent>,
    commands: mpsc::Receiver<ToWorker>,
) {
    let (connected, _) = watch::channel(0);
    run_watched(net, config, driver, events, commands, connected).await;
}

/// [`run`], publishing the number of established gateway links on `connected` whenever it
/// changes (a process can tell when its worker is reachable from every gateway).
pub async fn run_watched<N: Net>(
    net: N,
    config: WorkerConfig,
    driver: DriverConfig,
    events: mpsc::Sender<ClientEvent>,
    commands: mpsc::Receiver<ToWorker>,
    connected: watch::Sender<usize>,
) {
    let local = tokio::task::LocalSet::new();
    local
        .run_until(run_local(net, config, driver, events, commands, connected))
        .await;
}

struct Driver<N: Net> {
    net: N,
    config: DriverConfig,
    core: WorkerCore,
    origin: Instant,
    links: HashMap<LinkId, mpsc::UnboundedSender<Bytes>>,
    inbox: mpsc::Sender<FromLink>,
    calls: HashMap<CallId, oneshot::Sender<CallDone>>,
    pending_events: VecDeque<ClientEvent>,
}

/// [`run_watched`] on the caller's `LocalSet` (it spawns its link tasks with
/// `spawn_local`). A business worker runs it as a local task next to its business code,
/// so a hand-off between them is a local wake-up, not a round trip through the runtime.
pub(crate) async fn run_local<N: Net>(
    net: N,
    config: WorkerConfig,
    driver_config: DriverConfig,
    events: mpsc::Sender<ClientEvent>,
    mut commands: mpsc::Receiver<ToWorker>,
    connected: watch::Sender<usize>,
) {
    let origin = Instant::now();
    let (inbox, mut from_links) = mpsc::channel(driver_config.link_inbox_max.max(1));
    let mut d = Driver {
        net,
        core: WorkerCore::new(config, Duration::ZERO),
        config: driver_config,
        origin,
        links: HashMap::new(),
        inbox,
        calls: HashMap::new(),
        pending_events: VecDeque::new(),
    };
    // One timer for the loop's life, moved only when the core's deadline moves: a fresh
    // `sleep_until` per turn would register and deregister a timer several times per event.
    let timer = tokio::time::sleep_until(origin);
    tokio::pin!(timer);
    let mut timer_at = None;
    loop {
        d.dispatch();
        // The core hands over no more events than the queue has room for and holds the
        // rest, so link input (replies included) keeps flowing while events wait.
        let room = d
            .config
            .events_pending_max
            .saturating_sub(d.pending_events.len());
        d.core.set_event_room(room);
        d.dispatch();
        let deadline = d.core.poll_timeout().map(|at| d.origin + at);
        if deadline != timer_at {
            if let Some(at) = deadline {
                timer.as_mut().reset(at);
            }
            timer_at = deadline;
        }
        let take_input = !d.core.input_paused();
        tokio::select! {
            biased;
            permit = events.reserve(), if !d.pending_events.is_empty() => {
                let Ok(permit) = permit else { return };
                if let Some(event) = d.pending_events.pop_front() {
                    permit.send(event);
                }
            }
            Some(message) = from_links.recv(), if take_input => {
                d.on_link(message);
                let now = d.core.connected_gateway_count();
                connected.send_if_modified(|n| std::mem::replace(n, now) != now);
            }
            command = commands.recv() => match command {
                Some(command) => d.on_command(command),
                None => return,
            },
            () = &mut timer, if deadline.is_some() => {
                let now = d.now();
                d.core.handle_timeout(now);
            }
        }
    }
}

impl<N: Net> Driver<N> {
    fn now(&self) -> Duration {
        Instant::now().saturating_duration_since(self.origin)
    }

    fn on_link(&mut self, message: FromLink) {
        let now = self.now();
        match message {
            FromLink::Connected(link) => self.core.handle_connected(now, link),
            FromLink::Bytes(link, bytes) => {
                let core = &mut self.core;
                // `catch_panic` also counts it in the process-wide
                // `gatewayworker_connection_panics_total` the metrics endpoint renders.
                let handled = crate::net::catch_panic(|| {
                    #[cfg(test)]
                    tests::panic_hook(&bytes);
                    core.handle_bytes(now, link, &bytes);
                });
                if let Err(panicked) = handled {
                    self.config
                        .connection_panics
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::error!(?link, %panicked, "panic while handling a link's bytes: link closed");
                    // Dropping the sender ends the link task; the core forgets the link
                    // (pending calls fail) and reconnects as after any close.
                    self.links.remove(&link);
                    self.core.handle_closed(now, link);
                }
            }
            FromLink::Written(link, n) => self.core.handle_written(now, link, n),
            FromLink::Closed(link) => {
                self.links.remove(&link);
                self.core.handle_closed(now, link);
            }
        }
    }

    fn on_command(&mut self, command: ToWorker) {
        let now = self.now();
        match command {
            ToWorker::Call {
                call,
                current,
                reply,
            } => {
                let id = self.core.call(now, &call, current.as_ref());
                self.calls.insert(id, reply);
            }
            ToWorker::CallBinary {
                call,
                current,
                reply,
            } => {
                let id = self.core.call_as(now, &call, current.as_ref(), true);
                self.calls.insert(id, reply);
            }
            ToWorker::EndEvent {
                client,
                kind,
                old,
                new,
                reply,
            } => {
                let outcome = self.core.end_event(now, &client, kind, &old, &new);
                if let Some(reply) = reply {
                    let _ = reply.send(outcome);
                }
            }
        }
    }

    /// Carries out everything the core asked for.
    fn dispatch(&mut self) {
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::Connect { link, peer } => {
                    let address = match peer {
                        Peer::Register(a) => a,
                        Peer::Gateway(a) => a.to_string(),
                    };
                    let (outbox, rx) = mpsc::unbounded_channel();
                    self.links.insert(link, outbox);
                    let task = link_task(
                        self.net.clone(),
                        link,
                        address,
                        rx,
                        self.inbox.clone(),
                        self.config.read_chunk_len,
                    );
                    tokio::task::spawn_local(task);
                }
                Action::Transmit { link, bytes } => {
                    if let Some(outbox) = self.links.get(&link) {
                        // Bounded by the core's window: it hands out no more until
                        // `handle_written` confirms.
                        let _ = outbox.send(bytes);
                    }
                }
                Action::Close { link, reason } => {
                    tracing::info!(?link, ?reason, "closing link");
                    // Dropping the sender ends the task, which drops the stream.
                    self.links.remove(&link);
                }
                Action::Event(event) => self.pending_events.push_back(event),
                Action::CallDone(done) => {
                    if let Some(reply) = self.calls.remove(&done.id) {
                        let _ = reply.send(done);
                    }
                }
            }
        }
    }
}

/// Why a link task ended.
enum LinkEnd {
    /// The core closed it (its sender was dropped): nothing to report.
    ClosedByCore,
    /// The peer closed or an error happened: report it.
    Lost(Option<io::Error>),
}

async fn link_task<N: Net>(
    net: N,
    link: LinkId,
    address: String,
    mut outbox: mpsc::UnboundedReceiver<Bytes>,
    inbox: mpsc::Sender<FromLink>,
    read_chunk_len: usize,
) {
    let end = match net.connect(&address).await {
        Ok(mut stream) => {
            if inbox.send(FromLink::Connected(link)).await.is_err() {
                return;
            }
            link_loop(link, &mut stream, &mut outbox, &inbox, read_chunk_len).await
        }
        Err(e) => LinkEnd::Lost(Some(e)),
    };
    if let LinkEnd::Lost(error) = end {
        tracing::debug!(?link, %address, ?error, "link lost");
        let _ = inbox.send(FromLink::Closed(link)).await;
    }
}

async fn link_loop<S: NetStream>(
    link: LinkId,
    stream: &mut S,
    outbox: &mut mpsc::UnboundedReceiver<Bytes>,
    inbox: &mpsc::Sender<FromLink>,
    read_chunk_len: usize,
) -> LinkEnd {
    let mut queue: VecDeque<Bytes> = VecDeque::new();
    // One zeroed read buffer per link for its whole life, and a staging buffer the read
    // bytes are copied into and split off from (see `read_chunk_len`).
    let mut read_buf = vec![0u8; read_chunk_len.max(1)];
    let mut staging = BytesMut::with_capacity(read_chunk_len.max(1));
    loop {
        tokio::select! {
            biased;
            bytes = outbox.recv() => match bytes {
                Some(bytes) => {
                    queue.push_back(bytes);
                    // Write once the thread has nothing else to run: `yield_now` defers
                    // this task until the runtime ran out of ready tasks and polled the
                    // network. The business code meanwhile handles every event of the
                    // read that woke it, so their replies leave in one vectored write
                    // (and reach the gateway as one read) instead of one syscall each.
                    // A call that waits (a query, a sleep) empties the run queue, so
                    // nothing waits on this for long.
                    tokio::task::yield_now().await;
                    loop {
                        match outbox.try_recv() {
                            Ok(bytes) => queue.push_back(bytes),
                            Err(mpsc::error::TryRecvError::Empty) => break,
                            Err(mpsc::error::TryRecvError::Disconnected) => {
                                return LinkEnd::ClosedByCore
                            }
                        }
                    }
                }
                None => return LinkEnd::ClosedByCore,
            },
            ready = stream.write_ready(), if !queue.is_empty() => {
                if let Err(e) = ready {
                    return LinkEnd::Lost(Some(e));
                }
                match write_some(stream, &mut queue) {
                    Ok(0) => {}
                    Ok(n) => {
                        if inbox.send(FromLink::Written(link, n)).await.is_err() {
                            return LinkEnd::ClosedByCore;
                        }
                    }
                    Err(e) => return LinkEnd::Lost(Some(e)),
                }
            }
            ready = stream.read_ready() => {
                if let Err(e) = ready {
                    return LinkEnd::Lost(Some(e));
                }
                match stream.try_read(&mut read_buf) {
                    Ok(0) => return LinkEnd::Lost(None),
                    Ok(n) => {
                        // Reclaims the staging buffer in place once the main loop has
                        // dropped the chunks it handed out: no allocation per read.
                        staging.extend_from_slice(&read_buf[..n]);
                        let chunk = staging.split().freeze();
                        if inbox.send(FromLink::Bytes(link, chunk)).await.is_err() {
                            return LinkEnd::ClosedByCore;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return LinkEnd::Lost(Some(e)),
                }
            }
        }
    }
}

/// Writes what the socket takes now from the front of `queue`; the count written.
fn write_some<S: NetStream>(stream: &mut S, queue: &mut VecDeque<Bytes>) -> io::Result<usize> {
    // A fixed array, not a Vec: no allocation per write.
    let mut slices = [IoSlice::new(&[]); WRITE_SLICES_MAX];
    let mut count = 0;
    for (slot, bytes) in slices.iter_mut().zip(queue.iter()) {
        *slot = IoSlice::new(bytes);
        count += 1;
    }
    let n = match stream.try_write_vectored(&slices[..count]) {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut left = n;
    while left > 0 {
        let Some(front) = queue.front_mut() else {
            break;
        };
        if front.len() <= left {
            left -= front.len();
            queue.pop_front();
        } else {
            let _ = front.split_to(left);
            left = 0;
        }
    }
    Ok(n)
}

#[cfg(test)]
#[path = "driver_tests.rs"]
mod tests;
