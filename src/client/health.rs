//! Each gateway's health as one [`GatewayClient`](super::GatewayClient) has seen it,
//! across all the calls the program makes through it (issue 18; the worker's suspect
//! links, `crate::worker::core`, in the client's terms).
//!
//! Every exchange with a gateway (a query, a send, a probe) is registered here when it
//! starts and removed when it ends. A gateway *owes* something while an exchange to it is
//! in flight; it *makes progress* when a byte (or the end of the stream) is read from it.
//! A gateway that owed something for [`suspect_after`](super::ClientSettings::suspect_after)
//! without progress (a query written and nothing back, or a connect that hangs) is
//! **suspect**:
//!
//! * a call waiting for it stops waiting at that moment: a query part counts as missing
//!   ([`LinkFailure::Suspect`], then the [`TimeoutPolicy`](crate::api::gather::TimeoutPolicy)),
//!   a send part is left to finish in the background;
//! * later calls do not wait for it: query parts are not sent and count as missing at once,
//!   send parts are sent in the background (at most [`SUSPECT_IN_FLIGHT_MAX`] exchanges in
//!   flight to a suspect gateway; beyond, not sent: [`LinkFailure::Suspect`]);
//! * one probe at a time (a `getAllClientCount` frame, answer discarded) asks it whether it
//!   is back: any byte read from it, from the probe or from an exchange started before,
//!   clears the mark.
//!
//! A completed connect or write is not progress: the kernel of a stopped (`SIGSTOP`)
//! gateway completes both while its backlog and buffers have room.
#![allow(
    clippy::disallowed_methods,
    reason = "the GatewayClient driver measures how long a gateway has owed an answer; \
              tokio's clock, so the turmoil simulation stays deterministic"
)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::error::LinkFailure;
use crate::protocol::client_id::GatewayAddr;

/// Default `suspect_after`: the worker's
/// ([`crate::worker::core::SUSPECT_AFTER_DEFAULT`]), well under the 5 s reply timeout.
pub const SUSPECT_AFTER_DEFAULT: Duration = Duration::from_secs(2);

/// Exchanges in flight to a suspect gateway at most (background sends, the probe, parts
/// started before the mark): a send beyond it is not sent and fails with
/// [`LinkFailure::Suspect`]. Each holds a socket for at most the connect timeout plus
/// the reply (or write) timeout.
pub const SUSPECT_IN_FLIGHT_MAX: usize = 64;

/// Gateways tracked at most; beyond, the idle ones (nothing in flight, at most a suspect
/// mark) are forgotten, so a forgotten suspect gateway is waited for again.
pub const TRACKED_GATEWAYS_MAX: usize = 4096;

/// The current clock: tokio's (paused in tests, simulated under turmoil).
pub(crate) fn now() -> Instant {
    Instant::now()
}

/// What a [`GatewayClient`](super::GatewayClient) did about slow gateways, since it was
/// made ([`GatewayClient::stats`](super::GatewayClient::stats)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Times a gateway became suspect (owed an answer for `suspect_after`).
    pub gateways_suspected: u64,
    /// Times a suspect gateway answered again (the mark cleared).
    pub gateways_cleared: u64,
    /// Query parts answered as missing because their gateway was suspect (not sent) or
    /// became suspect while the call waited (sent; the late answer is discarded).
    pub query_parts_suspect: u64,
    /// Send parts the call did not wait for: sent to a suspect gateway in the background.
    pub send_parts_background: u64,
    /// Send parts not sent: their suspect gateway had [`SUSPECT_IN_FLIGHT_MAX`] exchanges
    /// in flight already (the call failed with [`LinkFailure::Suspect`]).
    pub send_parts_dropped: u64,
    /// Exchanges left in the background that failed in the end (connect or write failure
    /// or timeout); the first after each suspicion is logged.
    pub background_failures: u64,
    /// Probes sent to suspect gateways.
    pub probes: u64,
}

/// What a call does with one part for a gateway ([`Health::admit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Send it and wait for it (exchange id).
    Wait(u64),
    /// Send it without waiting (a send to a suspect gateway; exchange id).
    Background(u64),
    /// Do not send it: the gateway is suspect (a query part, or a send over the bound).
    Skip,
}

/// How long a call may keep waiting for a gateway ([`Health::check`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Suspect: stop waiting.
    Suspect,
    /// Suspect at this instant unless it makes progress before.
    Until(Instant),
    /// No limit (suspicion off).
    Unlimited,
}

#[derive(Debug, Default)]
struct Gateway {
    /// Exchanges in flight: id → start. Ids grow with time, so the first is the oldest.
    in_flight: BTreeMap<u64, Instant>,
    /// Last byte (or end of stream) read from it.
    progress_at: Option<Instant>,
    suspect: bool,
    /// When it became suspect (for the log).
    suspect_since: Option<Instant>,
    probing: bool,
    /// A background failure was logged since it became suspect.
    failure_logged: bool,
}

impl Gateway {
    fn idle(&self) -> bool {
        self.in_flight.is_empty() && !self.probing
    }

    /// Since when it owes something without progress, if it owes anything.
    fn owing_since(&self) -> Option<Instant> {
        let oldest = *self.in_flight.values().next()?;
        Some(self.progress_at.map_or(oldest, |p| p.max(oldest)))
    }
}

#[derive(Debug, Default)]
struct State {
    gateways: HashMap<GatewayAddr, Gateway>,
    next_id: u64,
    stats: ClientStats,
}

/// The health of every gateway a client talks to; one lock, held for a few map operations.
#[derive(Debug)]
pub struct Health {
    after: Option<Duration>,
    state: Mutex<State>,
}

impl Health {
    /// Gateways owing an answer for `after` become suspect; `None` never.
    pub fn new(after: Option<Duration>) -> Health {
        Health {
            after: after.filter(|a| !a.is_zero()),
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The gateway's entry, made room for within [`TRACKED_GATEWAYS_MAX`].
    fn entry(state: &mut State, gateway: GatewayAddr) -> &mut Gateway {
        if !state.gateways.contains_key(&gateway) && state.gateways.len() >= TRACKED_GATEWAYS_MAX {
            state.gateways.retain(|_, g| !g.idle());
        }
        state.gateways.entry(gateway).or_default()
    }

    /// Marks `gateway` suspect if it owed something for `after` by `now`.
    fn check_in(&self, state: &mut State, gateway: GatewayAddr, now: Instant) -> Check {
        let Some(g) = state.gateways.get_mut(&gateway) else {
            return Check::Unlimited;
        };
        if g.suspect {
            return Check::Suspect;
        }
        let (Some(after), Some(since)) = (self.after, g.owing_since()) else {
            return Check::Unlimited;
        };
        let due = since + after;
        if due > now {
            return Check::Until(due);
        }
        g.suspect = true;
        g.suspect_since = Some(now);
        g.failure_logged = false;
        state.stats.gateways_suspected += 1;
        tracing::warn!(
            %gateway,
            silent_for = ?now.saturating_duration_since(since),
            in_flight = g.in_flight.len(),
            "gateway suspect: no answer; calls stop waiting for it until it answers again"
        );
        Check::Suspect
    }

    /// How long a call may wait for `gateway` now (marks it suspect when due).
    pub fn check(&self, gateway: GatewayAddr, now: Instant) -> Check {
        let mut state = self.lock();
        self.check_in(&mut state, gateway, now)
    }

    /// A call's part for `gateway` (`query`: it expects an answer) at `now`, and whether a
    /// probe should be started (its exchange id): the gateway is suspect and none is in
    /// flight. An admitted exchange must be [`Health::end`]ed.
    pub fn admit(&self, gateway: GatewayAddr, query: bool, now: Instant) -> (Admit, Option<u64>) {
        let mut state = self.lock();
        let suspect = self.check_in(&mut state, gateway, now) == Check::Suspect;
        let mut id = || {
            state.next_id += 1;
            state.next_id
        };
        let (part, probe) = (id(), id());
        let g = Health::entry(&mut state, gateway);
        if !suspect {
            g.in_flight.insert(part, now);
            return (Admit::Wait(part), None);
        }
        let probe = (!g.probing).then(|| {
            g.probing = true;
            g.in_flight.insert(probe, now);
            probe
        });
        let admit = if query {
            Admit::Skip
        } else if g.in_flight.len() < SUSPECT_IN_FLIGHT_MAX {
            g.in_flight.insert(part, now);
            Admit::Background(part)
        } else {
            Admit::Skip
        };
        let stats = &mut state.stats;
        stats.probes += u64::from(probe.is_some());
        match (admit, query) {
            (Admit::Skip, true) => stats.query_parts_suspect += 1,
            (Admit::Skip, false) => stats.send_parts_dropped += 1,
            _ => stats.send_parts_background += 1,
        }
        (admit, probe)
    }

    /// A call stopped waiting for a part of `gateway` because it became suspect.
    pub fn abandoned(&self, query: bool) {
        let mut state = self.lock();
        if query {
            state.stats.query_parts_suspect += 1;
        } else {
            state.stats.send_parts_background += 1;
        }
    }

    /// Something was read from `gateway` at `now`: it is alive; a suspect mark clears.
    pub fn progress(&self, gateway: GatewayAddr, now: Instant) {
        let mut state = self.lock();
        let Some(g) = state.gateways.get_mut(&gateway) else {
            return;
        };
        g.progress_at = Some(g.progress_at.map_or(now, |p| p.max(now)));
        if g.suspect {
            g.suspect = false;
            let suspect_for = g
                .suspect_since
                .take()
                .map(|s| now.saturating_duration_since(s));
            state.stats.gateways_cleared += 1;
            tracing::info!(%gateway, ?suspect_for, "gateway answered again: no longer suspect");
        }
    }

    /// Exchange `id` with `gateway` ended (`probe`: it was the probe).
    pub fn end(&self, gateway: GatewayAddr, id: u64, probe: bool) {
        let mut state = self.lock();
        let Some(g) = state.gateways.get_mut(&gateway) else {
            return;
        };
        g.in_flight.remove(&id);
        if probe {
            g.probing = false;
        }
        if g.idle() && !g.suspect {
            state.gateways.remove(&gateway);
        }
    }

    /// An exchange with `gateway` nobody waited for any more failed with `reason`.
    pub fn background_failed(&self, gateway: GatewayAddr, reason: &LinkFailure) {
        let mut state = self.lock();
        state.stats.background_failures += 1;
        if let Some(g) = state.gateways.get_mut(&gateway) {
            if !g.failure_logged {
                g.failure_logged = true;
                tracing::warn!(
                    %gateway,
                    %reason,
                    "an exchange left to finish in the background failed (further ones are \
                     counted in the client's stats until the gateway is suspected again)"
                );
            }
        }
    }

    /// Gateways suspect now.
    pub fn suspects(&self) -> Vec<GatewayAddr> {
        let state = self.lock();
        let mut list: Vec<GatewayAddr> = state
            .gateways
            .iter()
            .filter(|(_, g)| g.suspect)
            .map(|(a, _)| *a)
            .collect();
        list.sort();
        list
    }

    /// The counters so far.
    pub fn stats(&self) -> ClientStats {
        self.lock().stats.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AFTER: Duration = Duration::from_millis(300);

    fn gateway(port: u16) -> GatewayAddr {
        GatewayAddr::new(std::net::Ipv4Addr::LOCALHOST, port)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn owing_without_progress_for_suspect_after_makes_a_gateway_suspect() {
        let health = Health::new(Some(AFTER));
        let (g, t0) = (gateway(1), Instant::now());
        let (Admit::Wait(query), None) = health.admit(g, true, t0) else {
            panic!("a healthy gateway is waited for")
        };
        assert_eq!(health.check(g, t0 + ms(299)), Check::Until(t0 + AFTER));
        // A send that completes is no progress (a stopped gateway's kernel completes it).
        let (Admit::Wait(send), None) = health.admit(g, false, t0 + ms(100)) else {
            panic!()
        };
        health.end(g, send, false);
        assert_eq!(health.check(g, t0 + ms(299)), Check::Until(t0 + AFTER));
        // A byte read is: the clock restarts from it.
        health.progress(g, t0 + ms(200));
        assert_eq!(health.check(g, t0 + ms(400)), Check::Until(t0 + ms(500)));
        assert_eq!(health.check(g, t0 + ms(500)), Check::Suspect);
        assert_eq!(health.suspects(), vec![g]);
        assert_eq!(health.stats().gateways_suspected, 1);

        // Suspect: a query part is skipped and one probe starts; a send goes on in the
        // background; a second call starts no second probe.
        let (Admit::Skip, Some(probe)) = health.admit(g, true, t0 + ms(600)) else {
            panic!()
        };
        let (Admit::Background(background), None) = health.admit(g, false, t0 + ms(600)) else {
            panic!()
        };
        assert_eq!(health.admit(g, true, t0 + ms(700)), (Admit::Skip, None));
        let stats = health.stats();
        assert_eq!(
            (
                stats.query_parts_suspect,
                stats.send_parts_background,
                stats.probes
            ),
            (2, 1, 1)
        );

        // The probe's answer clears the mark; the gateway is waited for again.
        health.progress(g, t0 + ms(800));
        health.end(g, probe, true);
        assert!(health.suspects().is_empty());
        assert_eq!(health.stats().gateways_cleared, 1);
        // Still owing (the first query, the background send): counted from the answer.
        assert_eq!(health.check(g, t0 + ms(900)), Check::Until(t0 + ms(1100)));
        health.end(g, query, false);
        health.end(g, background, false);
        assert_eq!(health.check(g, t0 + ms(5000)), Check::Unlimited);
        assert!(matches!(
            health.admit(g, true, t0 + ms(5000)),
            (Admit::Wait(_), None)
        ));
    }

    #[test]
    fn sends_to_a_suspect_gateway_are_bounded_and_off_means_never_suspect() {
        let health = Health::new(Some(AFTER));
        let (g, t0) = (gateway(2), Instant::now());
        let _ = health.admit(g, true, t0);
        assert_eq!(health.check(g, t0 + AFTER), Check::Suspect);
        let mut background = 0;
        for _ in 0..SUSPECT_IN_FLIGHT_MAX + 5 {
            if let (Admit::Background(_), _) = health.admit(g, false, t0 + AFTER) {
                background += 1;
            }
        }
        // The stuck query and the probe count too.
        assert_eq!(background, SUSPECT_IN_FLIGHT_MAX - 2);
        assert_eq!(health.stats().send_parts_dropped, 7);

        for off in [None, Some(Duration::ZERO)] {
            let health = Health::new(off);
            let _ = health.admit(g, true, t0);
            assert_eq!(health.check(g, t0 + ms(60_000)), Check::Unlimited);
        }
    }
}
