//! The trace: every event the harness observes, in order, stamped with simulated time.
//!
//! Two runs of one seed must produce the same trace line for line; its [`Trace::hash`]
//! (FNV-1a, a fixed function unlike std's seeded hasher) is what the determinism tests
//! compare. Lines hold what the harness saw (replies, pushes, faults), never real time or
//! addresses drawn from outside the simulation.

use std::fmt::Write as _;
use std::time::Duration;

/// Lines kept for a failure report.
pub const TAIL_LEN: usize = 50;

/// The ordered events of one run.
#[derive(Debug, Default, Clone)]
pub struct Trace {
    lines: Vec<(Duration, String)>,
}

impl Trace {
    /// Records `what` seen by `who` now (simulated time).
    pub fn record(&mut self, who: &str, what: impl AsRef<str>) {
        self.lines
            .push((turmoil::elapsed(), format!("{who} {}", what.as_ref())));
    }

    /// Records at an explicit time (for events recorded from outside any host).
    pub fn record_at(&mut self, at: Duration, who: &str, what: impl AsRef<str>) {
        self.lines.push((at, format!("{who} {}", what.as_ref())));
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// FNV-1a over every line with its time.
    pub fn hash(&self) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for (at, line) in &self.lines {
            let nanos = at.as_nanos().to_le_bytes();
            for byte in nanos.iter().chain(line.as_bytes()).chain(b"\n") {
                hash ^= u64::from(*byte);
                hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        hash
    }

    /// The last `n` events, one per line, readable.
    pub fn tail(&self, n: usize) -> String {
        let start = self.lines.len().saturating_sub(n);
        let mut out = String::new();
        for (at, line) in &self.lines[start..] {
            let _ = writeln!(out, "{:>10.3}s {line}", at.as_secs_f64());
        }
        out
    }
}
