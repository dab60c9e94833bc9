//! What the core asks its driver to do, and the handles it names connections by.

use std::fmt;

use bytes::Bytes;

/// A peer connected to the register (a gateway, a worker or a client asking for the list),
/// allocated by the core from 1 upward (like workerman's connection ids), never reused.
/// Named `PeerId`, not `ConnectionId`: that name is the gateway's client connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u64);

/// Why the core closes a connection (for logs and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// No complete line within `first_line_timeout` of the connect.
    FirstLineTimeout,
    /// A line longer than `line_bytes_max`.
    LineTooLong,
    /// Not JSON, not an object, or a PHP-empty `event`: the error line was sent first.
    BadRequest,
    /// `gateway_connect` or `worker_connect` with a key other than the configured one.
    BadSecret,
    /// `gateway_connect` with a PHP-empty (or non-string) `address`.
    NoAddress,
    /// A non-empty `event` the register does not know.
    UnknownEvent,
    /// The input buffered by unregistered connections went over
    /// `unregistered_input_bytes_max`, and this one held the most.
    UnregisteredInputBudget,
}

/// One instruction for the driver; see the drain contract on
/// [`RegisterCore`](super::RegisterCore).
#[derive(Clone, PartialEq, Eq)]
pub enum Action {
    /// Write `bytes` to `to`, after earlier transmits to it. A broadcast hands the same
    /// `Bytes` to every worker.
    Transmit {
        /// Recipient.
        to: PeerId,
        /// Whole lines, each ending in `\n`.
        bytes: Bytes,
    },
    /// Close `id`. With `after_flush` write what is queued first (the register always
    /// asks for it, as workerman's `close()` does). The driver then reports the end with
    /// `handle_closed`.
    Close {
        /// The connection.
        id: PeerId,
        /// Flush pending output before closing.
        after_flush: bool,
        /// Why.
        reason: CloseReason,
    },
}

impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Transmit { to, bytes } => {
                write!(
                    f,
                    "Transmit({}, {:?})",
                    to.0,
                    String::from_utf8_lossy(bytes)
                )
            }
            Action::Close {
                id,
                after_flush,
                reason,
            } => write!(f, "Close({}, after_flush={after_flush}, {reason:?})", id.0),
        }
    }
}

/// Why an accept was refused; the driver drops the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// `connections_max` connections are open.
    #[error("connections_max reached")]
    ConnectionsMax,
}

/// Counters of what the core dropped or refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegisterStats {
    /// Lines not queued because the connection's output had reached `pending_bytes_max`.
    pub lines_dropped: u64,
    /// Connects refused at `connections_max`.
    pub connections_refused: u64,
    /// Connections closed, by any reason the core decided.
    pub connections_closed_by_register: u64,
    /// Of those, unregistered connections closed because the input buffered by all
    /// unregistered connections went over `unregistered_input_bytes_max`.
    pub unregistered_input_closes: u64,
}
