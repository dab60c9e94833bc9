//! Giving memory back to the system once a backlog has drained.
//!
//! A burst (a stalled gateway, a client that stops reading) fills write queues with
//! megabytes of frames; once they are written the frames are freed, but glibc's `malloc`
//! keeps freed blocks inside its arenas (one per thread that allocates, so every gateway
//! shard and worker instance has its own) and only hands back the free space at the very
//! top of a heap. A few live blocks above the freed megabytes pin them, so the process's
//! resident size stays at its peak for good (measured: a worker at 22 MB went to 32 MB
//! behind a stalled gateway, and stayed there after the backlog drained).
//!
//! [`backlog_drained`] is how a driver says "a backlog of at least [`BACKLOG_BYTES`] just
//! drained (or was dropped)": [`crate::net::WriteQueue`] calls it when it runs empty after
//! such a run, and the worker's driver ([`crate::worker::driver`]) when its incoming events
//! (queued for the business code, held or parked by the core) run out after it read such a
//! run (measured: a worker whose guest fell behind went from 30 to 82 MB with 26 MB of
//! events waiting, and stayed there once they had run). On Linux with glibc, a small thread of its own (started at the first
//! request) then waits [`SETTLE`] for the other queues of the same burst to drain, and
//! calls `malloc_trim(0)`, which releases every whole free page of every arena to the
//! kernel (`MADV_DONTNEED`), not just the top of each heap. Requests made meanwhile are
//! served by that one trim, and trims are at least [`TRIM_INTERVAL_MIN`] apart, so a
//! process under sustained backpressure trims at most once per second, whatever its
//! connection count. The drivers' own threads never trim and never wait: a request is one
//! `try_send` on a channel of capacity one, made only at the end of a backlog, never on
//! the per-message path.
//!
//! Elsewhere (other C libraries, other systems) [`backlog_drained`] does nothing: their
//! allocators have their own policies, and the queues still shrink (see
//! [`crate::net::WriteQueue`]).
#![allow(
    clippy::disallowed_methods,
    reason = "the trimmer is a thread of its own, outside every core, and paces itself by the clock"
)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A queue that took at least this many bytes since it was last empty was working
/// through a backlog: when it runs empty (or is dropped), memory is worth giving back.
/// Half the gateway's per-client bound (`client_pending_max`, 1,024,000), so a client
/// that filled its buffer counts; traffic that keeps up never queues this much on one
/// connection.
pub const BACKLOG_BYTES: usize = 512 << 10;

/// How long the trimmer waits after a request before trimming: the other queues of the
/// same burst (every client of a resumed gateway, every link of a worker) drain within
/// it and are served by the same trim.
pub const SETTLE: Duration = Duration::from_millis(200);

/// Trims are at least this far apart (the rate bound under sustained backpressure).
pub const TRIM_INTERVAL_MIN: Duration = Duration::from_secs(1);

/// `malloc_trim` calls made in this process so far.
static TRIMS: AtomicU64 = AtomicU64::new(0);

/// Trims done so far in this process (zero where trimming is not supported).
pub fn trims_total() -> u64 {
    TRIMS.load(Ordering::Relaxed)
}

/// A backlog of at least [`BACKLOG_BYTES`] drained: asks for freed memory to be handed
/// back to the system within about [`TRIM_INTERVAL_MIN`] (Linux with glibc; a no-op
/// elsewhere). Never blocks.
pub fn backlog_drained() {
    imp::request();
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod imp {
    use std::sync::atomic::Ordering;
    use std::sync::mpsc::{self, Receiver, SyncSender};
    use std::sync::OnceLock;

    use super::{SETTLE, TRIMS, TRIM_INTERVAL_MIN};

    /// The trimmer's request channel; `None` when its thread could not be started.
    static TRIMMER: OnceLock<Option<SyncSender<()>>> = OnceLock::new();

    pub(super) fn request() {
        let trimmer = TRIMMER.get_or_init(|| {
            let (requests, received) = mpsc::sync_channel(1);
            let started = std::thread::Builder::new()
                .name("memory-trim".to_owned())
                .stack_size(256 * 1024)
                .spawn(move || run(&received));
            match started {
                Ok(_) => Some(requests),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start the memory trimmer thread; freed memory stays with the allocator");
                    None
                }
            }
        });
        if let Some(requests) = trimmer {
            // Full: a trim is already due, and it will serve this request too.
            let _ = requests.try_send(());
        }
    }

    fn run(requests: &Receiver<()>) {
        while requests.recv().is_ok() {
            std::thread::sleep(SETTLE);
            // Requests made while settling are served by this trim.
            while requests.try_recv().is_ok() {}
            // SAFETY: `malloc_trim` takes no pointer and may be called from any thread at
            // any time; it locks each arena while it walks it.
            #[allow(unsafe_code, reason = "glibc's malloc_trim: FFI without arguments")]
            unsafe {
                libc::malloc_trim(0);
            }
            TRIMS.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(TRIM_INTERVAL_MIN.saturating_sub(SETTLE));
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    pub(super) fn request() {}
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// A request is served by a trim within the settle time and the rate bound.
    #[test]
    fn a_request_is_served_by_a_trim() {
        let before = trims_total();
        backlog_drained();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while trims_total() == before {
            assert!(
                std::time::Instant::now() < deadline,
                "no trim within 10 s of a request"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
