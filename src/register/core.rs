//! [`RegisterCore`]: the connection table, the gateway and worker registries and the
//! address broadcast, as a state machine with no sockets and no clock.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::action::{Action, CloseReason, PeerId, Refused, RegisterStats};
use super::config::RegisterConfig;
use crate::protocol::register::{
    classify_request, encode_bad_request, encode_broadcast_addresses, unique_with_indexes,
    LineDecodeError, LineDecoder, RegisterRequest,
};

/// One open connection, whatever it turns out to be.
#[derive(Debug)]
struct Conn {
    peer: SocketAddr,
    /// Bytes of an incomplete line (empty, and unallocated, between lines).
    input: BytesMut,
    lines: LineDecoder,
    /// When the connection is closed if no line has arrived by then.
    first_line_deadline: Option<Duration>,
    /// Registered as a gateway: its place in registration order and its address.
    gateway: Option<(u64, String)>,
    /// Registered as a worker: its place in registration order.
    worker: Option<u64>,
    /// Bytes handed to the driver and not yet reported flushed.
    pending: usize,
    /// The core closed it; input is ignored until the driver reports the end.
    closing: bool,
    /// What this connection adds to `RegisterCore::unregistered_input` now.
    counted: usize,
}

impl Conn {
    /// Bytes of input buffer it holds while not registered as a gateway or worker
    /// (the allocation, not only the bytes in it); 0 once registered or closing.
    fn unregistered_input(&self) -> usize {
        if self.gateway.is_none() && self.worker.is_none() && !self.closing {
            self.input.capacity()
        } else {
            0
        }
    }
}

/// The register's state machine: no sockets, no clock.
///
/// # Driving it
///
/// Every input is a `handle_*` call carrying `now`, a monotonic time (for example the
/// time since the driver started) that never goes back. After **each** input the driver
/// drains [`poll_action`](Self::poll_action) until it returns `None`, carrying the actions
/// out in order, then asks [`poll_timeout`](Self::poll_timeout) for the next deadline and
/// calls [`handle_timeout`](Self::handle_timeout) when it passes (early or repeated calls
/// are harmless).
///
/// * [`handle_connected`](Self::handle_connected) at accept: the core allocates the id
///   (from 1, like workerman) and starts the 10 s first-line timer, or refuses the
///   connection at `connections_max`.
/// * [`handle_bytes`](Self::handle_bytes) with whatever was read: lines may be split or
///   merged at will.
/// * [`handle_written`](Self::handle_written) with the number of bytes written.
/// * [`handle_closed`](Self::handle_closed) when the socket is gone, for any reason,
///   including after a `Close` action (the id counts towards `connections_max` until then).
///
/// Closing is logical and immediate: when the core closes a connection it emits `Close`,
/// forgets the connection's registrations at once and, if it was a gateway, broadcasts
/// the new list to the workers (the original does this in `onClose`, once the socket
/// is flushed; only the timing differs).
#[derive(Debug)]
pub struct RegisterCore {
    config: RegisterConfig,
    conns: BTreeMap<PeerId, Conn>,
    next_id: u64,
    /// Gateways in registration order (PHP keeps the first insertion's place when a
    /// connection registers again).
    gateways: BTreeMap<u64, PeerId>,
    /// Workers in registration order.
    workers: BTreeMap<u64, PeerId>,
    next_seq: u64,
    /// Pending first-line deadlines.
    deadlines: BTreeSet<(Duration, PeerId)>,
    /// Input buffered by connections not registered (yet) as gateway or worker, all
    /// together: bounded by `unregistered_input_bytes_max`.
    unregistered_input: usize,
    actions: VecDeque<Action>,
    stats: RegisterStats,
}

impl RegisterCore {
    /// A register with no connections.
    pub fn new(config: RegisterConfig) -> RegisterCore {
        RegisterCore {
            config,
            conns: BTreeMap::new(),
            next_id: 1,
            gateways: BTreeMap::new(),
            workers: BTreeMap::new(),
            next_seq: 0,
            deadlines: BTreeSet::new(),
            unregistered_input: 0,
            actions: VecDeque::new(),
            stats: RegisterStats::default(),
        }
    }

    /// The settings it was created with.
    pub fn config(&self) -> &RegisterConfig {
        &self.config
    }

    /// Counters of dropped lines, refused and closed connections.
    pub fn stats(&self) -> RegisterStats {
        self.stats
    }

    /// Open connections, including those the core is closing.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Registered gateway addresses in registration order, duplicates removed (the
    /// values of the list the workers receive).
    pub fn addresses(&self) -> Vec<String> {
        unique_with_indexes(self.gateway_addresses())
            .into_iter()
            .map(|(_, address)| address.to_owned())
            .collect()
    }

    /// Registered workers (and API callers still connected), in registration order.
    pub fn workers(&self) -> Vec<PeerId> {
        self.workers.values().copied().collect()
    }

    /// The next instruction for the driver.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The earliest first-line deadline, if any connection is still silent.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.deadlines.first().map(|(at, _)| *at)
    }

    /// A connection was accepted from `peer`.
    pub fn handle_connected(&mut self, now: Duration, peer: SocketAddr) -> Result<PeerId, Refused> {
        if self.conns.len() >= self.config.connections_max {
            self.stats.connections_refused += 1;
            return Err(Refused::ConnectionsMax);
        }
        let id = PeerId(self.next_id);
        self.next_id += 1;
        let deadline = now + self.config.first_line_timeout;
        self.deadlines.insert((deadline, id));
        self.conns.insert(
            id,
            Conn {
                peer,
                input: BytesMut::new(),
                lines: LineDecoder::new(self.config.line_bytes_max),
                first_line_deadline: Some(deadline),
                gateway: None,
                worker: None,
                pending: 0,
                closing: false,
                counted: 0,
            },
        );
        Ok(id)
    }

    /// Input buffered now by connections not registered as gateway or worker, all
    /// together (bounded by `unregistered_input_bytes_max`).
    pub fn unregistered_input(&self) -> usize {
        self.unregistered_input
    }

    /// Bytes read from `id`; complete lines are handled in order. Unknown or closing
    /// connections are ignored.
    pub fn handle_bytes(&mut self, now: Duration, id: PeerId, bytes: &[u8]) {
        let _ = now;
        self.take_bytes(id, bytes);
        self.recount(id);
        self.enforce_unregistered_budget();
    }

    /// Brings `id`'s share of `unregistered_input` up to date.
    fn recount(&mut self, id: PeerId) {
        if let Some(conn) = self.conns.get_mut(&id) {
            let now_counted = conn.unregistered_input();
            self.unregistered_input = self.unregistered_input - conn.counted + now_counted;
            conn.counted = now_counted;
        }
    }

    /// Over `unregistered_input_bytes_max`, closes the unregistered connections holding the
    /// most input, largest first, until the total fits again: a flood of half-sent lines
    /// from many connections costs the flooders their connections, and a registering
    /// gateway or worker (whose first line is short) is the last to go.
    fn enforce_unregistered_budget(&mut self) {
        while self.unregistered_input > self.config.unregistered_input_bytes_max {
            let largest = self
                .conns
                .iter()
                .filter(|(_, conn)| conn.counted > 0)
                .max_by_key(|(_, conn)| conn.counted)
                .map(|(id, _)| *id);
            let Some(id) = largest else {
                return;
            };
            tracing::warn!(
                conn = id.0,
                budget = self.config.unregistered_input_bytes_max,
                "register: input of unregistered connections over budget; closing the largest"
            );
            self.stats.unregistered_input_closes += 1;
            self.close(id, CloseReason::UnregisteredInputBudget);
        }
    }

    fn take_bytes(&mut self, id: PeerId, bytes: &[u8]) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.closing {
            return;
        }
        conn.input.extend_from_slice(bytes);
        loop {
            let Some(conn) = self.conns.get_mut(&id).filter(|c| !c.closing) else {
                return;
            };
            match conn.lines.decode(&mut conn.input) {
                Ok(Some(line)) => {
                    if let Some(deadline) = conn.first_line_deadline.take() {
                        self.deadlines.remove(&(deadline, id));
                    }
                    self.handle_line(id, &line);
                }
                Ok(None) => return,
                Err(LineDecodeError::TooLong { line_length_max }) => {
                    tracing::warn!(conn = id.0, line_length_max, "register line too long");
                    self.close(id, CloseReason::LineTooLong);
                    return;
                }
            }
        }
    }

    /// `bytes` of the output queued for `id` were written to its socket.
    pub fn handle_written(&mut self, now: Duration, id: PeerId, bytes: usize) {
        let _ = now;
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.pending = conn.pending.saturating_sub(bytes);
        }
    }

    /// The socket of `id` is gone. A gateway's departure is broadcast to the workers.
    pub fn handle_closed(&mut self, now: Duration, id: PeerId) {
        let _ = now;
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        if !conn.closing {
            self.forget(id);
        }
        if let Some(conn) = self.conns.remove(&id) {
            self.unregistered_input -= conn.counted;
        }
    }

    /// Closes every connection whose first-line deadline is at or before `now`.
    pub fn handle_timeout(&mut self, now: Duration) {
        while let Some(&(at, id)) = self.deadlines.first() {
            if at > now {
                return;
            }
            if let Some(conn) = self.conns.get(&id) {
                tracing::info!(peer = %conn.peer.ip(), "register auth timeout");
            }
            self.close(id, CloseReason::FirstLineTimeout);
        }
    }

    /// One complete line from `id`, terminators stripped (spec 8 table).
    fn handle_line(&mut self, id: PeerId, line: &[u8]) {
        match classify_request(line) {
            RegisterRequest::BadRequest => {
                let Some(conn) = self.conns.get(&id) else {
                    return;
                };
                let mut answer = BytesMut::new();
                encode_bad_request(&conn.peer.ip().to_string(), line, &mut answer);
                tracing::warn!(
                    peer = %conn.peer.ip(),
                    line = %String::from_utf8_lossy(line),
                    "bad request for the register"
                );
                self.transmit(id, answer.freeze());
                self.close(id, CloseReason::BadRequest);
            }
            RegisterRequest::GatewayConnect {
                address,
                secret_key,
            } => {
                // The original checks the address before the key.
                let Some(address) = address else {
                    tracing::warn!(conn = id.0, "gateway_connect without address");
                    return self.close(id, CloseReason::NoAddress);
                };
                if !self.key_matches(secret_key.as_deref()) {
                    tracing::warn!(conn = id.0, "register: key does not match");
                    return self.close(id, CloseReason::BadSecret);
                }
                self.register_gateway(id, address);
                self.broadcast();
            }
            RegisterRequest::WorkerConnect { secret_key } => {
                if !self.key_matches(secret_key.as_deref()) {
                    tracing::warn!(conn = id.0, "register: key does not match");
                    return self.close(id, CloseReason::BadSecret);
                }
                self.register_worker(id);
                let list = self.encoded_addresses();
                self.transmit(id, list);
            }
            RegisterRequest::Ping => {}
            RegisterRequest::UnknownEvent { event } => {
                tracing::warn!(conn = id.0, %event, "register: unknown event");
                self.close(id, CloseReason::UnknownEvent);
            }
        }
    }

    /// PHP's `$secret_key !== $this->secretKey`, negated: a non-string key (`None`) never
    /// matches.
    fn key_matches(&self, secret_key: Option<&str>) -> bool {
        secret_key == Some(self.config.secret_key.as_str())
    }

    /// `_gatewayConnections[id] = address`: a connection registering again keeps its place.
    fn register_gateway(&mut self, id: PeerId, address: String) {
        let seq = self.next_seq;
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        match &mut conn.gateway {
            Some((_, current)) => *current = address,
            None => {
                conn.gateway = Some((seq, address));
                self.gateways.insert(seq, id);
                self.next_seq += 1;
            }
        }
    }

    /// `_workerConnections[id] = connection`: a connection registering again keeps its place.
    fn register_worker(&mut self, id: PeerId) {
        let seq = self.next_seq;
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.worker.is_none() {
            conn.worker = Some(seq);
            self.workers.insert(seq, id);
            self.next_seq += 1;
        }
    }

    fn gateway_addresses(&self) -> impl Iterator<Item = &str> {
        self.gateways.values().filter_map(|id| {
            self.conns
                .get(id)
                .and_then(|c| c.gateway.as_ref())
                .map(|(_, address)| address.as_str())
        })
    }

    /// The `broadcast_addresses` line for the current registrations.
    fn encoded_addresses(&self) -> Bytes {
        let entries = unique_with_indexes(self.gateway_addresses());
        let mut line = BytesMut::new();
        encode_broadcast_addresses(&entries, &mut line);
        line.freeze()
    }

    /// Sends the list to every worker, in registration order, the same bytes to each.
    fn broadcast(&mut self) {
        let list = self.encoded_addresses();
        let workers: Vec<PeerId> = self.workers.values().copied().collect();
        for worker in workers {
            self.transmit(worker, list.clone());
        }
    }

    /// Queues `bytes` for `id` unless its unflushed output has reached `pending_bytes_max`
    /// (workerman drops a send when its send buffer is full).
    fn transmit(&mut self, id: PeerId, bytes: Bytes) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.closing {
            return;
        }
        if conn.pending >= self.config.pending_bytes_max {
            self.stats.lines_dropped += 1;
            tracing::warn!(conn = id.0, "register output full; line dropped");
            return;
        }
        conn.pending += bytes.len();
        self.actions.push_back(Action::Transmit { to: id, bytes });
    }

    /// Closes `id` after flushing, and forgets its registrations at once.
    fn close(&mut self, id: PeerId, reason: CloseReason) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.closing {
            return;
        }
        conn.closing = true;
        conn.input = BytesMut::new();
        self.stats.connections_closed_by_register += 1;
        self.recount(id);
        self.actions.push_back(Action::Close {
            id,
            after_flush: true,
            reason,
        });
        self.forget(id);
    }

    /// Removes `id` from the timers and registries; a gateway leaving is broadcast. The
    /// worker entry goes first: a connection that was both does not hear its own leaving.
    fn forget(&mut self, id: PeerId) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if let Some(deadline) = conn.first_line_deadline.take() {
            self.deadlines.remove(&(deadline, id));
        }
        if let Some(seq) = conn.worker.take() {
            self.workers.remove(&seq);
        }
        if let Some((seq, _)) = conn.gateway.take() {
            self.gateways.remove(&seq);
            self.broadcast();
        }
    }

    /// Panics when internal structures disagree (the unit-test harness calls it after
    /// every input):
    ///
    /// * the gateway and worker registries, the first-line timers and the connections
    ///   point at each other one to one (every registry entry is a live connection whose
    ///   own record names the same place, and every such record is in its registry);
    /// * a closing connection holds no registration, timer or input;
    /// * `unregistered_input` is the sum of the per-connection shares, each share is
    ///   what the connection holds now, and the total is within `unregistered_input_bytes_max`;
    /// * every partial line is under `line_bytes_max`, the connection count within
    ///   `connections_max`, and ids and registration places were all handed out below
    ///   `next_id` and `next_seq`.
    pub fn check_invariants(&self) {
        assert!(
            self.conns.len() <= self.config.connections_max,
            "{} connections over connections_max",
            self.conns.len()
        );
        let mut counted = 0usize;
        let (mut gateways, mut workers, mut deadlines) = (0usize, 0usize, 0usize);
        for (id, conn) in &self.conns {
            assert!(id.0 >= 1 && id.0 < self.next_id, "id {id:?} not allocated");
            if conn.closing {
                assert!(
                    conn.gateway.is_none() && conn.worker.is_none(),
                    "closing {id:?} still registered"
                );
                assert!(
                    conn.first_line_deadline.is_none(),
                    "closing {id:?} has a timer"
                );
                assert!(conn.input.is_empty(), "closing {id:?} keeps input");
            }
            assert!(
                conn.input.len() < self.config.line_bytes_max,
                "{id:?} holds a partial line of {} bytes",
                conn.input.len()
            );
            assert_eq!(
                conn.counted,
                conn.unregistered_input(),
                "{id:?}'s share of unregistered_input is stale"
            );
            counted += conn.counted;
            if let Some((seq, _)) = &conn.gateway {
                assert!(*seq < self.next_seq, "gateway place {seq} not allocated");
                assert_eq!(
                    self.gateways.get(seq),
                    Some(id),
                    "{id:?} missing from gateways"
                );
                gateways += 1;
            }
            if let Some(seq) = conn.worker {
                assert!(seq < self.next_seq, "worker place {seq} not allocated");
                assert_eq!(
                    self.workers.get(&seq),
                    Some(id),
                    "{id:?} missing from workers"
                );
                workers += 1;
            }
            if let Some(at) = conn.first_line_deadline {
                assert!(
                    self.deadlines.contains(&(at, *id)),
                    "{id:?}'s deadline not armed"
                );
                deadlines += 1;
            }
        }
        assert_eq!(
            gateways,
            self.gateways.len(),
            "gateway registry has stale entries"
        );
        assert_eq!(
            workers,
            self.workers.len(),
            "worker registry has stale entries"
        );
        assert_eq!(
            deadlines,
            self.deadlines.len(),
            "stale first-line deadlines"
        );
        assert_eq!(counted, self.unregistered_input, "unregistered_input total");
        assert!(
            self.unregistered_input <= self.config.unregistered_input_bytes_max,
            "unregistered input {} over unregistered_input_bytes_max",
            self.unregistered_input
        );
    }
}
