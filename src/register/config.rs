//! Register settings: the cluster secret, the first-line timeout and every bound.

use std::time::Duration;

use crate::protocol::register::LINE_LENGTH_MAX_DEFAULT;

/// Everything a [`RegisterCore`](super::RegisterCore) needs to know, fixed at creation.
#[derive(Debug, Clone)]
pub struct RegisterConfig {
    /// `secretKey`: compared strictly with the `secret_key` of `gateway_connect` and
    /// `worker_connect` (a missing key counts as `""`); empty = none.
    pub secret_key: String,
    /// A new connection must send its first line within this time, else it is closed;
    /// the original's 10 s.
    pub first_line_timeout: Duration,
    /// Longest line, `\n` included, default 10 485 760 bytes (workerman's
    /// `maxPackageSize`). A connection that sends a longer one is closed without a message.
    pub line_bytes_max: usize,
    /// Per-connection output not yet reported flushed, default 1 048 576 bytes
    /// (workerman's `maxSendBufferSize`). A line for a connection whose unflushed output
    /// has reached it is dropped (counted in `lines_dropped`); the connection stays open.
    pub pending_bytes_max: usize,
    /// Most connections at once (gateways, workers and not yet identified ones), default
    /// 10 000. At the bound a new connection is refused at accept (the driver drops the
    /// socket). The original has no bound besides the process's file limit.
    pub connections_max: usize,
    /// Input buffered at once by all connections not registered as a gateway or worker
    /// (the allocation of their partial lines), default 16 777 216 bytes. Without it,
    /// `connections_max` connections could each hold a partial line just short of
    /// `line_bytes_max` (10 000 × 10 MiB). When a read takes the total over it, the
    /// unregistered connections holding the most are closed (largest first, without a
    /// message, counted in `unregistered_input_closes`) until it fits; the check runs
    /// after every read, so in between the total can exceed it by one connection's last
    /// read and the growth of its buffer (the allocation at most doubles, and one
    /// connection's buffer stays under `line_bytes_max`). Registered
    /// gateways and workers are not counted (their lines are still bounded by
    /// `line_bytes_max` each). Keep it at or above `line_bytes_max` so that one
    /// maximal line still fits.
    pub unregistered_input_bytes_max: usize,
    /// Tests only: the driver panics (after the core took the bytes) when a connection's
    /// input contains this sequence, to prove panic containment. `None` by default; no
    /// setting or command-line flag reaches it.
    #[doc(hidden)]
    pub test_panic_trigger: Option<Vec<u8>>,
    /// Tests and simulation only: the driver calls this with the core after every input
    /// (bytes, closes, timers, accepts), e.g. to run
    /// [`RegisterCore::check_invariants`](super::RegisterCore::check_invariants) and to
    /// observe what it would announce. `None` by default; no setting reaches it.
    #[doc(hidden)]
    pub after_input: Option<fn(&super::RegisterCore)>,
}

impl Default for RegisterConfig {
    fn default() -> RegisterConfig {
        RegisterConfig::new("")
    }
}

impl RegisterConfig {
    /// The original's defaults with the given secret key (`""` = none).
    pub fn new(secret_key: impl Into<String>) -> RegisterConfig {
        RegisterConfig {
            secret_key: secret_key.into(),
            first_line_timeout: Duration::from_secs(10),
            line_bytes_max: LINE_LENGTH_MAX_DEFAULT,
            pending_bytes_max: 1_048_576,
            connections_max: 10_000,
            unregistered_input_bytes_max: 16 * 1024 * 1024,
            test_panic_trigger: None,
            after_input: None,
        }
    }
}
