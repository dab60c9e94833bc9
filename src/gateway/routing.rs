//! Worker selection (spec 5.1-5.3): the registered worker keys in insertion order with
//! their least-connections counts, and the sticky choice for a client.
//!
//! The original keeps two PHP arrays (`_workerConnections` and the static
//! `leastConnectionsRecord`) that always hold the same keys in the same order; one
//! ordered table holds both here. Worker counts are small (tens), so the table is a
//! `Vec` searched linearly.

use bytes::Bytes;

use super::action::LinkId;
use super::config::RoutingMode;
use crate::splitmix::SplitMix64;

/// One registered worker key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEntry {
    /// `<peer ip>:<worker_key>`.
    pub key: Bytes,
    /// The link currently registered under the key.
    pub link: LinkId,
    /// Clients bound by a least-connections choice and not yet closed.
    pub count: u32,
}

/// The routing table.
#[derive(Debug, Clone)]
pub struct Router {
    mode: RoutingMode,
    entries: Vec<RouteEntry>,
    rng: SplitMix64,
}

impl Router {
    /// An empty table.
    pub fn new(mode: RoutingMode) -> Router {
        let seed = match mode {
            RoutingMode::Random { seed } => seed,
            RoutingMode::LeastConnections => 0,
        };
        Router {
            mode,
            entries: Vec::new(),
            rng: SplitMix64(seed),
        }
    }

    /// Registered keys in tie order.
    pub fn entries(&self) -> &[RouteEntry] {
        &self.entries
    }

    /// True when no worker is registered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn position(&self, key: &[u8]) -> Option<usize> {
        self.entries.iter().position(|e| e.key == key)
    }

    /// The link registered under `key`.
    pub fn link_for(&self, key: &[u8]) -> Option<LinkId> {
        self.position(key).map(|i| self.entries[i].link)
    }

    /// Registers `link` under `key` with count 0: in place when the key is present
    /// (the old link's close is still pending), else appended.
    pub fn register(&mut self, key: Bytes, link: LinkId) {
        match self.position(&key) {
            Some(i) => {
                self.entries[i].link = link;
                self.entries[i].count = 0;
            }
            None => self.entries.push(RouteEntry {
                key,
                link,
                count: 0,
            }),
        }
    }

    /// Removes `key` if it still maps to `link`. The original removes it whatever it maps
    /// to (quirk 10), which drops a worker that re-registered while the old link was
    /// still flushing.
    pub fn unregister(&mut self, key: &[u8], link: LinkId) {
        if let Some(i) = self.position(key) {
            if self.entries[i].link == link {
                self.entries.remove(i);
            }
        }
    }

    /// Chooses a key for a client; `None` when no worker is registered.
    pub fn choose(&mut self) -> Option<Bytes> {
        if self.entries.is_empty() {
            return None;
        }
        match self.mode {
            RoutingMode::LeastConnections => {
                // `min_by_key` keeps the last of equal minima; ties go to the first.
                let mut best = 0;
                for (i, e) in self.entries.iter().enumerate() {
                    if e.count < self.entries[best].count {
                        best = i;
                    }
                }
                let entry = &mut self.entries[best];
                entry.count = entry.count.saturating_add(1);
                Some(entry.key.clone())
            }
            RoutingMode::Random { .. } => {
                let i = self.rng.below(self.entries.len() as u64) as usize;
                Some(self.entries[i].key.clone())
            }
        }
    }

    /// A bound client of `key` closed: decrement its count if present and non-zero.
    pub fn release(&mut self, key: &[u8]) {
        if self.mode != RoutingMode::LeastConnections {
            return;
        }
        if let Some(i) = self.position(key) {
            let entry = &mut self.entries[i];
            entry.count = entry.count.saturating_sub(1);
        }
    }
}
