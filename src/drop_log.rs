//! Drop logging at a bounded rate (issue 18): every dropped message is counted by the
//! core's stats; this turns the drops into at most one log line per interval, with the
//! counts per kind and the connection that lost the most, instead of one line per
//! message. Sans-IO: it never reads a clock. Recording needs no time; the owner's
//! `poll_timeout` includes [`DropLog::poll_timeout`] and its `handle_timeout` calls
//! [`DropLog::handle_timeout`], which writes the line.
//!
//! Schedule: the first drop after a quiet interval is reported at once (the next timer
//! turn); drops that follow within `interval` of a report wait for the next report,
//! `interval` after it. So a burst of any size yields one line at its start and one per
//! interval while it lasts. Shared by the gateway core (client send buffers, queues before
//! the handshake, worker link queues) and the worker core (gateway link queues).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// Connections tracked per interval for the "worst connection" figure; drops on further
/// connections are still counted per kind.
pub const DROP_LOG_CONNECTIONS_MAX: usize = 1024;

/// Default interval between two drop reports.
pub const DROP_LOG_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, Default)]
struct KindCount {
    messages: u64,
    bytes: u64,
}

/// Counts of drops not yet reported; see the module documentation.
#[derive(Debug)]
pub struct DropLog {
    /// Who is reporting ("gateway", "worker").
    role: &'static str,
    interval: Duration,
    /// Kinds in first-drop order (a handful at most).
    kinds: Vec<(&'static str, KindCount)>,
    /// Drops per connection (of a kind: ids of clients and links may coincide) in this
    /// interval (bounded by [`DROP_LOG_CONNECTIONS_MAX`]).
    per_connection: BTreeMap<(&'static str, u64), u64>,
    last_report: Option<Duration>,
    /// Lines written so far.
    reports: u64,
}

impl DropLog {
    /// A log for `role` writing at most one line per `interval`.
    pub fn new(role: &'static str, interval: Duration) -> DropLog {
        DropLog {
            role,
            interval,
            kinds: Vec::new(),
            per_connection: BTreeMap::new(),
            last_report: None,
            reports: 0,
        }
    }

    /// One message of `bytes` bytes of `kind` was dropped on connection `connection`.
    pub fn record(&mut self, kind: &'static str, connection: u64, bytes: usize) {
        let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
        match self.kinds.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, c)) => {
                c.messages = c.messages.saturating_add(1);
                c.bytes = c.bytes.saturating_add(bytes);
            }
            None => self.kinds.push((kind, KindCount { messages: 1, bytes })),
        }
        let tracked = self.per_connection.len() < DROP_LOG_CONNECTIONS_MAX;
        match self.per_connection.get_mut(&(kind, connection)) {
            Some(n) => *n = n.saturating_add(1),
            None if tracked => {
                self.per_connection.insert((kind, connection), 1);
            }
            None => {}
        }
    }

    /// When [`DropLog::handle_timeout`] has a line to write: `None` while nothing is
    /// waiting; a time already past for the first drop after a quiet interval.
    pub fn poll_timeout(&self) -> Option<Duration> {
        if self.kinds.is_empty() {
            return None;
        }
        Some(match self.last_report {
            Some(t) => t.saturating_add(self.interval),
            None => Duration::ZERO,
        })
    }

    /// Writes the line if one is due.
    pub fn handle_timeout(&mut self, now: Duration) {
        if self.poll_timeout().is_some_and(|at| at <= now) {
            self.report(now);
        }
    }

    /// Lines written so far.
    pub fn reports(&self) -> u64 {
        self.reports
    }

    fn report(&mut self, now: Duration) {
        let mut counts = String::new();
        for (kind, c) in &self.kinds {
            let sep = if counts.is_empty() { "" } else { ", " };
            let _ = write!(counts, "{sep}{kind}: {} ({} bytes)", c.messages, c.bytes);
        }
        // Ties go to the lowest id (the map's order), so the line is deterministic.
        let worst = self
            .per_connection
            .iter()
            .fold(None, |best, (&key, &n)| match best {
                Some((_, m)) if m >= n => best,
                _ => Some((key, n)),
            });
        let ((worst_kind, worst_connection), worst_drops) = worst.unwrap_or_default();
        let since = match self.last_report {
            Some(t) => now.saturating_sub(t),
            None => Duration::ZERO,
        };
        tracing::warn!(
            role = self.role,
            dropped = %counts,
            worst_kind,
            worst_connection,
            worst_drops,
            since_last_report = ?since,
            "messages dropped (one line per {:?} at most)",
            self.interval
        );
        self.reports = self.reports.saturating_add(1);
        self.kinds.clear();
        self.per_connection.clear();
        self.last_report = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::core::fault_tests::capture_logs;

    /// A burst of 10 000 drops over 25 s gives one line at its start and one per interval,
    /// with the counts per kind and the worst connection.
    #[test]
    fn a_burst_of_drops_yields_one_line_per_interval_with_counts() {
        let interval = Duration::from_secs(10);
        let (log, lines) = capture_logs(|| {
            let mut log = DropLog::new("gateway", interval);
            let mut now = Duration::from_secs(100);
            for i in 0..10_000u64 {
                now += Duration::from_micros(2_500); // 25 s in all
                let (kind, conn) = if i % 4 == 0 {
                    ("link_queue", 7)
                } else {
                    ("client_send_buffer", 1 + i % 2)
                };
                log.record(kind, conn, 100);
                if log.poll_timeout().is_some_and(|at| at <= now) {
                    log.handle_timeout(now);
                }
            }
            // The rest is reported when its interval is up.
            let at = log.poll_timeout().expect("drops waiting");
            log.handle_timeout(at);
            assert_eq!(log.poll_timeout(), None);
            log
        });
        assert_eq!(log.reports(), 4);
        assert_eq!(lines.len(), 4, "{lines:#?}");
        assert!(lines
            .iter()
            .all(|l| l.contains("WARN") && l.contains("messages dropped")));
        // The first drop is reported alone, at once.
        assert!(
            lines[0].contains("link_queue: 1 (100 bytes)")
                && lines[0].contains("worst_connection=7"),
            "{}",
            lines[0]
        );
        // Every drop is in exactly one line.
        let total: u64 = lines
            .iter()
            .flat_map(|l| {
                ["link_queue: ", "client_send_buffer: "].map(|k| {
                    l.split(k)
                        .nth(1)
                        .and_then(|rest| rest.split(' ').next())
                        .map_or(0, |n| n.parse::<u64>().unwrap())
                })
            })
            .sum();
        assert_eq!(total, 10_000);
        // The second line: drops 1..=4000, 1 000 on link 7, 1 000 on client 1 and 2 000
        // on client 2, the worst.
        assert!(
            lines[1].contains("link_queue: 1000 (100000 bytes)"),
            "{}",
            lines[1]
        );
        assert!(
            lines[1].contains("client_send_buffer: 3000"),
            "{}",
            lines[1]
        );
        assert!(
            lines[1].contains("worst_connection=2 worst_drops=2000"),
            "{}",
            lines[1]
        );
    }

    #[test]
    fn connections_tracked_are_bounded_and_quiet_log_has_no_timer() {
        let mut log = DropLog::new("worker", DROP_LOG_INTERVAL);
        assert_eq!(log.poll_timeout(), None);
        for c in 0..(DROP_LOG_CONNECTIONS_MAX as u64 * 3) {
            log.record("link_queue", c, 1);
        }
        assert_eq!(log.per_connection.len(), DROP_LOG_CONNECTIONS_MAX);
        assert_eq!(log.kinds[0].1.messages, DROP_LOG_CONNECTIONS_MAX as u64 * 3);
        assert_eq!(log.poll_timeout(), Some(Duration::ZERO));
    }
}
