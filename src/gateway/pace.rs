//! Pacing (issue 18): a worker link is read at the pace of the clients it feeds.
//!
//! The rule, per client send buffer (its unflushed output, `pending`):
//!
//! * **Hold.** When a message from link `L` leaves client `C` with `pending` at or over
//!   the high-water mark ([`GatewayCore::pace_high_water`], 3/4 of `client_pending_max`),
//!   `C` holds `L` (unless `C` is *unpaced*, below). A link held by at least one client is
//!   **paused**: the core emits [`Action::PauseLink`] when the first hold starts a pause
//!   episode and the driver stops reading that link's socket, so the worker's frames wait
//!   in TCP and then in the worker's own bounded link queue. The read the core already has
//!   in hand is still executed (at most one driver read, 64 KiB, plus a partial frame).
//! * **Release.** When `C`'s `pending` drains to the low-water mark
//!   ([`GatewayCore::pace_low_water`], 1/4) or `C` closes, it releases every link it holds;
//!   a link with no holder left is resumed ([`Action::ResumeLink`]). A link that closes
//!   ends its episode and its holds.
//! * **Bound.** An episode lasts at most [`GatewayConfig::link_pause_max`]
//!   (default 1 s): at that time the link is resumed and every client still holding it
//!   becomes *unpaced*: it releases all its holds (on any link), and until it drains to
//!   the low-water mark it pauses nothing; messages to it are dropped and counted at
//!   `client_pending_max`, the original's policy. So a slow client makes the other clients
//!   of a link wait at most `link_pause_max` per episode, and it cannot start the next
//!   episode before it has drained half its buffer (high- to low-water).
//!
//! Zero `link_pause_max` turns pacing off. Pauses and their time are counted in
//! [`GatewayStats`](super::GatewayStats) and logged at most once per
//! [`DROP_LOG_INTERVAL`] ([`PaceLog`]). Every map here is ordered (`BTreeMap`), so what the
//! core emits never depends on a hash order.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::action::{Action, LinkId};
use super::GatewayCore;
use crate::drop_log::DROP_LOG_INTERVAL;

#[cfg(doc)]
use super::GatewayConfig;

/// One pause episode of a link.
#[derive(Debug)]
pub(super) struct Pause {
    /// When the episode started.
    since: Duration,
    /// The clients holding the link (never empty while the episode lasts).
    holders: BTreeSet<u32>,
}

/// The pacing state of a core; see the module documentation.
#[derive(Debug, Default)]
pub(super) struct Pacing {
    /// Paused links by id.
    paused: BTreeMap<u64, Pause>,
    /// Client → the links it holds (never empty; each link lists the client back).
    holds: BTreeMap<u32, Vec<u64>>,
    /// Clients past an episode's bound, not yet drained to the low-water mark.
    unpaced: BTreeSet<u32>,
    /// The link whose frames are being executed: messages to clients come from it (set
    /// by `handle_link_bytes` only, for the length of the call).
    pub(super) feeding: Option<LinkId>,
    /// The latest `now` of an input (episodes are timed with it).
    pub(super) clock: Duration,
    log: PaceLog,
}

impl Pacing {
    /// Nothing is held and nobody is unpaced (the common case: one branch per flush).
    fn idle(&self) -> bool {
        self.holds.is_empty() && self.unpaced.is_empty()
    }
}

/// Pause episodes not yet reported: at most one line per [`DROP_LOG_INTERVAL`], on the
/// drop log's schedule (the first episode after a quiet interval at once, the next ones
/// with the next report).
#[derive(Debug, Default)]
struct PaceLog {
    /// Episodes started, ended by draining, ended at the bound, and their time.
    started: u64,
    drained: u64,
    at_bound: u64,
    paused: Duration,
    /// Time paused per link in this interval (for the worst link), bounded by
    /// [`PACE_LOG_LINKS_MAX`].
    per_link: BTreeMap<u64, Duration>,
    last_report: Option<Duration>,
}

/// Links tracked per report for the "worst link" figure.
const PACE_LOG_LINKS_MAX: usize = 1024;

impl PaceLog {
    fn pending(&self) -> bool {
        self.started + self.drained + self.at_bound > 0
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if !self.pending() {
            return None;
        }
        Some(match self.last_report {
            Some(t) => t.saturating_add(DROP_LOG_INTERVAL),
            None => Duration::ZERO,
        })
    }

    fn ended(&mut self, link: u64, paused: Duration, at_bound: bool) {
        if at_bound {
            self.at_bound += 1;
        } else {
            self.drained += 1;
        }
        self.paused = self.paused.saturating_add(paused);
        let tracked = self.per_link.len() < PACE_LOG_LINKS_MAX;
        match self.per_link.get_mut(&link) {
            Some(d) => *d = d.saturating_add(paused),
            None if tracked => {
                self.per_link.insert(link, paused);
            }
            None => {}
        }
    }

    fn handle_timeout(&mut self, now: Duration) {
        if self.poll_timeout().is_none_or(|at| at > now) {
            return;
        }
        let worst = self
            .per_link
            .iter()
            .fold(None, |best: Option<(u64, Duration)>, (&l, &d)| match best {
                Some((_, m)) if m >= d => best,
                _ => Some((l, d)),
            })
            .unwrap_or_default();
        let since = self.last_report.map(|t| now.saturating_sub(t));
        if self.at_bound > 0 {
            tracing::warn!(
                started = self.started,
                drained = self.drained,
                at_bound = self.at_bound,
                paused = ?self.paused,
                worst_link = worst.0,
                worst_paused = ?worst.1,
                since_last_report = ?since,
                "worker links paused for slow clients; some pauses reached link_pause_max \
                 (those clients fall back to drop-and-count); one line per {:?} at most",
                DROP_LOG_INTERVAL
            );
        } else {
            tracing::info!(
                started = self.started,
                drained = self.drained,
                paused = ?self.paused,
                worst_link = worst.0,
                worst_paused = ?worst.1,
                since_last_report = ?since,
                "worker links paused for slow clients; one line per {:?} at most",
                DROP_LOG_INTERVAL
            );
        }
        *self = PaceLog {
            last_report: Some(now),
            ..PaceLog::default()
        };
    }
}

impl GatewayCore {
    /// The high-water mark of a client's unflushed output: 3/4 of `client_pending_max`.
    pub fn pace_high_water(&self) -> usize {
        let max = self.config.client_pending_max;
        max - max / 4
    }

    /// The low-water mark: 1/4 of `client_pending_max`.
    pub fn pace_low_water(&self) -> usize {
        self.config.client_pending_max / 4
    }

    /// Number of links paused now.
    pub fn paused_link_count(&self) -> usize {
        self.pacing.paused.len()
    }

    /// Links paused now, in id order.
    pub fn paused_links(&self) -> Vec<LinkId> {
        self.pacing.paused.keys().map(|&l| LinkId(l)).collect()
    }

    /// A message from the feeding link (if any) was offered to client `id`, which now has
    /// `pending` bytes unflushed: hold that link at the high-water mark.
    pub(super) fn pace_offered(&mut self, id: u32, pending: usize) {
        let Some(link) = self.pacing.feeding else {
            return;
        };
        if pending < self.pace_high_water()
            || self.config.link_pause_max.is_zero()
            || self.pacing.unpaced.contains(&id)
        {
            return;
        }
        if self.links.get(&link.0).is_none_or(|l| l.closing) {
            return;
        }
        let held = self.pacing.holds.entry(id).or_default();
        if held.contains(&link.0) {
            return;
        }
        held.push(link.0);
        match self.pacing.paused.get_mut(&link.0) {
            Some(pause) => {
                pause.holders.insert(id);
            }
            None => {
                self.pacing.paused.insert(
                    link.0,
                    Pause {
                        since: self.pacing.clock,
                        holders: BTreeSet::from([id]),
                    },
                );
                self.stats.link_pauses += 1;
                self.pacing.log.started += 1;
                self.actions.push_back(Action::PauseLink { id: link });
            }
        }
    }

    /// Client `id` has `pending` bytes unflushed after a flush: at the low-water mark it
    /// releases its holds and is paced again.
    pub(super) fn pace_flushed(&mut self, id: u32, pending: usize) {
        if self.pacing.idle() || pending > self.pace_low_water() {
            return;
        }
        self.pacing.unpaced.remove(&id);
        self.pace_release(self.pacing.clock, id);
    }

    /// Client `id` is gone: its holds end.
    pub(super) fn pace_client_gone(&mut self, id: u32) {
        if self.pacing.idle() {
            return;
        }
        self.pacing.unpaced.remove(&id);
        self.pace_release(self.pacing.clock, id);
    }

    /// Ends every hold of client `id`, resuming links nobody holds any more.
    fn pace_release(&mut self, now: Duration, id: u32) {
        let Some(links) = self.pacing.holds.remove(&id) else {
            return;
        };
        for link in links {
            let Some(pause) = self.pacing.paused.get_mut(&link) else {
                continue;
            };
            pause.holders.remove(&id);
            if pause.holders.is_empty() {
                let since = pause.since;
                self.pacing.paused.remove(&link);
                self.end_pause(now, link, since, false);
                self.actions
                    .push_back(Action::ResumeLink { id: LinkId(link) });
            }
        }
    }

    /// Link `link` is closing or gone: its episode and the holds on it end (no resume:
    /// a closing link reads nothing).
    pub(super) fn pace_link_gone(&mut self, link: LinkId) {
        let now = self.pacing.clock;
        let Some(pause) = self.pacing.paused.remove(&link.0) else {
            return;
        };
        for id in &pause.holders {
            if let Some(held) = self.pacing.holds.get_mut(id) {
                held.retain(|l| *l != link.0);
                if held.is_empty() {
                    self.pacing.holds.remove(id);
                }
            }
        }
        self.end_pause(now, link.0, pause.since, false);
    }

    fn end_pause(&mut self, now: Duration, link: u64, since: Duration, at_bound: bool) {
        let paused = now.saturating_sub(since);
        let micros = u64::try_from(paused.as_micros()).unwrap_or(u64::MAX);
        self.stats.link_paused_micros = self.stats.link_paused_micros.saturating_add(micros);
        if at_bound {
            self.stats.link_pauses_at_bound += 1;
        }
        self.pacing.log.ended(link, paused, at_bound);
    }

    /// An input at `now` begins (times never go back; see [`GatewayCore`]).
    /// No link feeds clients until `handle_link_bytes` says so (also after a panic
    /// that left an input half done).
    pub(super) fn pace_clock(&mut self, now: Duration) {
        self.pacing.clock = self.pacing.clock.max(now);
        self.pacing.feeding = None;
    }

    /// Ends the episodes that reached `link_pause_max` by `now`; writes the pace log line
    /// when due.
    pub(super) fn pace_timeout(&mut self, now: Duration) {
        let bound = self.config.link_pause_max;
        let due: Vec<u64> = self
            .pacing
            .paused
            .iter()
            .filter(|(_, p)| p.since.saturating_add(bound) <= now)
            .map(|(&l, _)| l)
            .collect();
        for link in due {
            let Some(pause) = self.pacing.paused.remove(&link) else {
                continue;
            };
            self.end_pause(now, link, pause.since, true);
            self.actions
                .push_back(Action::ResumeLink { id: LinkId(link) });
            for id in pause.holders {
                // Slow past the bound: drop-and-count until it drains, holding nothing.
                self.pacing.unpaced.insert(id);
                self.pace_release(now, id);
            }
        }
        self.pacing.log.handle_timeout(now);
    }

    /// The next episode bound or pace log line.
    pub(super) fn pace_poll_timeout(&self) -> Option<Duration> {
        let bound = self.config.link_pause_max;
        self.pacing
            .paused
            .values()
            .map(|p| p.since.saturating_add(bound))
            .chain(self.pacing.log.poll_timeout())
            .min()
    }

    /// Panics when the pacing state disagrees with itself or with the tables.
    pub(super) fn pace_check_invariants(&self) {
        let p = &self.pacing;
        assert!(p.feeding.is_none(), "feeding link left set after an input");
        for (link, pause) in &p.paused {
            assert!(
                !pause.holders.is_empty(),
                "paused link {link} has no holder"
            );
            let l = self
                .links
                .get(link)
                .unwrap_or_else(|| panic!("paused link {link} missing"));
            assert!(!l.closing, "closing link {link} still paused");
            for id in &pause.holders {
                assert!(
                    p.holds.get(id).is_some_and(|h| h.contains(link)),
                    "holder {id} of link {link} does not list it"
                );
            }
        }
        for (id, links) in &p.holds {
            assert!(!links.is_empty(), "client {id} holds an empty list");
            assert!(self.clients.contains(*id), "holder {id} is not a client");
            assert!(!p.unpaced.contains(id), "unpaced client {id} holds links");
            let mut sorted = links.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), links.len(), "client {id} holds a link twice");
            for link in links {
                assert!(
                    p.paused.get(link).is_some_and(|q| q.holders.contains(id)),
                    "client {id} holds link {link}, which does not list it"
                );
            }
        }
        for id in &p.unpaced {
            assert!(self.clients.contains(*id), "unpaced {id} is not a client");
        }
        if self.config.link_pause_max.is_zero() {
            assert!(p.paused.is_empty() && p.unpaced.is_empty(), "pacing is off");
        }
    }
}
