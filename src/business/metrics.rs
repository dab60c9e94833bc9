//! What a running BusinessWorker counts about its events, for the metrics endpoint: how
//! long each event took in the business code (a fixed-bucket histogram), and how many
//! failed, by kind. Instances record into one shared [`EventMetrics`] with relaxed atomic
//! adds, so a scrape never waits for an event and an event never waits for a scrape.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::wasm::{FailureKind, InstanceStats};
use crate::worker::core::WorkerStats;

/// Upper bounds of the event duration buckets, in microseconds (the last bucket, `+Inf`,
/// is implicit). From a fast echo (tens of µs) to a query waiting on a slow gateway.
pub const EVENT_BUCKETS_US: [u64; 12] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 250_000, 1_000_000,
];

/// Every failure kind, in the order of [`EventMetricsSnapshot::failures`].
pub const FAILURE_KINDS: [FailureKind; 6] = [
    FailureKind::OutOfFuel,
    FailureKind::Deadline,
    FailureKind::MemoryLimit,
    FailureKind::Trap,
    FailureKind::Abi,
    FailureKind::Start,
];

/// The label of a failure kind in the metrics.
pub fn failure_label(kind: FailureKind) -> &'static str {
    match kind {
        FailureKind::OutOfFuel => "out_of_fuel",
        FailureKind::Deadline => "deadline",
        FailureKind::MemoryLimit => "memory_limit",
        FailureKind::Trap => "trap",
        FailureKind::Abi => "abi",
        FailureKind::Start => "start",
    }
}

fn failure_index(kind: FailureKind) -> usize {
    FAILURE_KINDS
        .iter()
        .position(|k| *k == kind)
        .expect("every kind is listed")
}

/// Event durations and failures of all instances of a worker.
#[derive(Debug, Default)]
pub struct EventMetrics {
    /// Events per bucket (not cumulative); index `EVENT_BUCKETS_US.len()` is `+Inf`.
    buckets: [AtomicU64; EVENT_BUCKETS_US.len() + 1],
    duration_sum_us: AtomicU64,
    failures: [AtomicU64; FAILURE_KINDS.len()],
    too_large: AtomicU64,
}

/// A copy of [`EventMetrics`] at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMetricsSnapshot {
    /// Cumulative counts per bucket bound of [`EVENT_BUCKETS_US`], then `+Inf` (= count).
    pub cumulative: Vec<u64>,
    /// Sum of all durations, in microseconds.
    pub duration_sum_us: u64,
    /// Failures per kind, in the order of [`FAILURE_KINDS`].
    pub failures: Vec<u64>,
    /// Client events skipped because their frame was over the worker's package size
    /// ([`crate::worker::core::WorkerStats::events_too_large`], all instances).
    pub too_large: u64,
}

impl EventMetrics {
    /// Records one event that took `elapsed` in the business code (failed or not).
    pub fn record(&self, elapsed: Duration, failure: Option<FailureKind>) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = EVENT_BUCKETS_US
            .iter()
            .position(|&bound| us <= bound)
            .unwrap_or(EVENT_BUCKETS_US.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.duration_sum_us.fetch_add(us, Ordering::Relaxed);
        if let Some(kind) = failure {
            self.failures[failure_index(kind)].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Adds `n` client events skipped for their size.
    pub fn add_too_large(&self, n: u64) {
        self.too_large.fetch_add(n, Ordering::Relaxed);
    }

    /// The counters now (each one read atomically; together they may be an event apart).
    pub fn snapshot(&self) -> EventMetricsSnapshot {
        let mut total = 0;
        let cumulative = self
            .buckets
            .iter()
            .map(|b| {
                total += b.load(Ordering::Relaxed);
                total
            })
            .collect();
        EventMetricsSnapshot {
            cumulative,
            duration_sum_us: self.duration_sum_us.load(Ordering::Relaxed),
            failures: self
                .failures
                .iter()
                .map(|f| f.load(Ordering::Relaxed))
                .collect(),
            too_large: self.too_large.load(Ordering::Relaxed),
        }
    }
}

/// What one instance last reported: its wasm instance's counters and its engine's
/// ([`WorkerStats`]: frames dropped at a full link queue, incomplete queries, link protocol
/// errors, session reloads, calls refused for size or for too many awaited replies).
#[derive(Debug, Clone, Default)]
pub struct InstanceCounters {
    /// The wasm instance's life counters.
    pub wasm: InstanceStats,
    /// The worker core's counters.
    pub engine: WorkerStats,
}

/// A read-only view of a running worker for observers (the metrics endpoint): cheap to
/// clone, usable from any thread, alive as long as the observer keeps it.
#[derive(Debug, Clone)]
pub struct WorkerObserver {
    pub(super) stats: Arc<Mutex<Vec<InstanceCounters>>>,
    pub(super) connected: Vec<watch::Receiver<usize>>,
    pub(super) events: Arc<EventMetrics>,
}

/// The metric family of [`WorkerObserver::connection_panics`] (the gateway's has the
/// same name).
pub const CONNECTION_PANICS_METRIC: &str = "gatewayworker_connection_panics_total";

impl WorkerObserver {
    /// Life counters of each instance, by index.
    pub fn stats(&self) -> Vec<InstanceStats> {
        let all = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        all.iter().map(|c| c.wasm).collect()
    }

    /// The worker core's counters of each instance, by index.
    pub fn engine_stats(&self) -> Vec<WorkerStats> {
        let all = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        all.iter().map(|c| c.engine.clone()).collect()
    }

    /// Established gateway links of each instance, by index.
    pub fn connected_gateways(&self) -> Vec<usize> {
        self.connected.iter().map(|c| *c.borrow()).collect()
    }

    /// Event durations and failures of all instances.
    pub fn events(&self) -> EventMetricsSnapshot {
        self.events.snapshot()
    }

    /// Panics caught while a driver handled a link's bytes (each closed that link only):
    /// [`CONNECTION_PANICS_METRIC`], counted process-wide
    /// ([`crate::net::connection_panics_total`]: in a `start` process this includes the
    /// gateway's and the register's).
    pub fn connection_panics(&self) -> u64 {
        crate::net::connection_panics_total()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_fall_in_the_first_bucket_that_holds_them() {
        let m = EventMetrics::default();
        m.record(Duration::from_micros(50), None);
        m.record(Duration::from_micros(51), None);
        m.record(Duration::from_secs(5), Some(FailureKind::OutOfFuel));
        m.record(Duration::ZERO, Some(FailureKind::Start));
        let s = m.snapshot();
        assert_eq!(s.cumulative.len(), EVENT_BUCKETS_US.len() + 1);
        assert_eq!(s.cumulative[0], 2, "0 and 50 µs are ≤ 50");
        assert_eq!(s.cumulative[1], 3, "51 µs is ≤ 100");
        assert_eq!(s.cumulative[EVENT_BUCKETS_US.len() - 1], 3);
        assert_eq!(*s.cumulative.last().unwrap(), 4, "+Inf holds every event");
        assert_eq!(s.duration_sum_us, 5_000_101);
        assert_eq!(s.failures, vec![1, 0, 0, 0, 0, 1]);
        assert!(s.cumulative.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn every_kind_has_a_distinct_label() {
        let mut labels: Vec<&str> = FAILURE_KINDS.iter().map(|k| failure_label(*k)).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), FAILURE_KINDS.len());
    }
}
