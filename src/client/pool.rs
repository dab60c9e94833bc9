//! Idle gateway connections kept for reuse in persistent mode (the original's
//! `$persistentConnection`): a request takes a connection out, and puts it back only after
//! a clean exchange, so a connection is never shared by two requests in flight.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use super::exchange::Stream;

/// Default bound on idle connections kept per gateway: enough for a few concurrent calls.
pub const IDLE_PER_GATEWAY_MAX_DEFAULT: usize = 4;

/// The idle connections, per dialled address.
#[derive(Debug)]
pub struct Pool {
    idle: Mutex<HashMap<SocketAddr, Vec<Stream>>>,
    idle_per_gateway_max: usize,
}

impl Pool {
    /// An empty pool keeping at most `idle_per_gateway_max` connections per address.
    pub fn new(idle_per_gateway_max: usize) -> Pool {
        Pool {
            idle: Mutex::new(HashMap::new()),
            idle_per_gateway_max,
        }
    }

    /// An idle connection to `addr` that still looks usable, if any.
    ///
    /// A gateway never writes on an API link unasked, so a readable connection is either
    /// closed (a restart, a secret mismatch) or out of step: both are dropped.
    pub fn take(&self, addr: SocketAddr) -> Option<Stream> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(&addr)?;
        while let Some(stream) = list.pop() {
            if stream.idle_usable() {
                return Some(stream);
            }
        }
        None
    }

    /// Keeps `stream` for the next request to `addr`, unless enough are kept already.
    pub fn put(&self, addr: SocketAddr, stream: Stream) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(addr).or_default();
        if list.len() < self.idle_per_gateway_max {
            list.push(stream);
        }
    }

    /// Idle connections kept for `addr`.
    pub fn idle(&self, addr: SocketAddr) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.get(&addr).map_or(0, Vec::len)
    }
}
