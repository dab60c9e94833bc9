//! What the worker hands to a wasm instance (one [`WorkerEvent`] per client event) and what
//! comes back ([`EventOutcome`] or [`EventFailure`]).

use bytes::Bytes;

use crate::api::ClientIdText;
use crate::protocol::php::PhpValue;

/// The address facts of the client an event is about (PHP's `$_SERVER` in an event).
#[derive(Debug, Clone, PartialEq)]
pub struct ClientInfo {
    /// The 20-hex-character client id.
    pub client_id: ClientIdText,
    /// `REMOTE_ADDR`: the client's IP as text.
    pub remote_addr: String,
    /// `REMOTE_PORT`.
    pub remote_port: u16,
    /// `GATEWAY_ADDR`: the gateway's lan IP as text.
    pub gateway_addr: String,
    /// `GATEWAY_PORT`: the gateway's public port.
    pub gateway_port: u16,
}

impl ClientInfo {
    /// Info with only a client id (tests, callers that lack the addresses).
    pub fn from_id(client_id: impl Into<ClientIdText>) -> ClientInfo {
        ClientInfo {
            client_id: client_id.into(),
            remote_addr: String::new(),
            remote_port: 0,
            gateway_addr: String::new(),
            gateway_port: 0,
        }
    }
}

/// Which handler an event runs.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// `onConnect`.
    Connect,
    /// `onMessage` with the client's bytes; `binary` for a binary websocket message.
    Message {
        /// The message bytes.
        body: Bytes,
        /// The FLAG_BINARY extension bit of the event frame.
        binary: bool,
    },
    /// `onClose`.
    Close,
    /// `onWebSocketConnect` with the handshake array (`get`, `server`, `cookie`).
    WebSocketConnect {
        /// The body of the ON_WEBSOCKET_CONNECT frame, unserialized.
        data: PhpValue,
    },
}

/// One client event for a wasm instance.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerEvent {
    /// Which handler runs.
    pub kind: EventKind,
    /// The client the event is about (the "current client" of API calls).
    pub client: ClientInfo,
    /// `$_SESSION` as the event arrived: null when the client has no session, else an array.
    pub session: PhpValue,
    /// Wall time of the event in Unix milliseconds, given by the driver (simulated time
    /// under simulation); the guest reads it with `gw.now_ms`.
    pub now_ms: i64,
}

/// A handled event.
#[derive(Debug, Clone, PartialEq)]
pub struct EventOutcome {
    /// `$_SESSION` when the handler returned.
    pub session: PhpValue,
    /// What the gateway is known to hold: the event's session, updated by the handler's own
    /// setSession/updateSession on its client (`Context::$old_session`); the pair
    /// (`known_session`, `session`) is what `WorkerCore::end_event` takes.
    pub known_session: PhpValue,
    /// Fuel the event consumed (deterministic CPU cost).
    pub fuel_used: u64,
}

impl EventOutcome {
    /// The session the worker writes back to the gateway (SET_SESSION) for this event:
    /// `$_SESSION` when the handler changed it from what the gateway is known to hold
    /// (`Some(Null)` clears it), else `None`. The worker core decides the same from the
    /// pair (`known_session`, `session`), and writes nothing after a Close event.
    pub fn session_write(&self) -> Option<&PhpValue> {
        (self.session != self.known_session).then_some(&self.session)
    }
}

/// How an event failed. The instance that ran it is discarded and recreated before the
/// next event; other instances are not affected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The event used up its fuel budget (a runaway loop).
    OutOfFuel,
    /// The wall-clock epoch deadline passed (the production backstop).
    Deadline,
    /// The guest asked for more memory than the limit, then trapped.
    MemoryLimit,
    /// Any other trap: a panic (`unreachable`), out-of-bounds access, stack overflow...
    Trap,
    /// The guest broke the ABI (bad pointer, oversized buffer, allocation failure...).
    Abi,
    /// The module could not be instantiated or its `on_worker_start` failed.
    Start,
}

/// A failed event: why, and the text to log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("wasm event failed ({kind:?}): {message}")]
pub struct EventFailure {
    /// The class of failure.
    pub kind: FailureKind,
    /// Details (trap text, ABI violation).
    pub message: String,
}
