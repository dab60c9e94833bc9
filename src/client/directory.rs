//! Where the gateways are: a fixed list, or the register's list fetched the way the
//! original GatewayClient does (`worker_connect`, one `broadcast_addresses` line back) and
//! kept for a short while.
#![allow(
    clippy::disallowed_methods,
    reason = "the GatewayClient driver ages its cached gateway list by the clock"
)]

use std::net::{SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::time::Instant;

use super::error::{ClientError, LinkFailure};
use super::exchange;
use crate::protocol::client_id::GatewayAddr;
use crate::protocol::register::{decode_from_register, FromRegister, ToRegister};

/// The source of the gateway list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gateways {
    /// Ask these registers, in order, until one answers.
    Register(Vec<String>),
    /// These gateway lan addresses (`lanIp:lanPort`), never refreshed.
    Fixed(Vec<GatewayAddr>),
}

/// Timeouts and bounds of a register lookup.
#[derive(Debug, Clone, Copy)]
pub struct LookupLimits {
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Wait for the line after connecting.
    pub reply_timeout: Duration,
    /// Longest line accepted from the register.
    pub register_line_bytes_max: usize,
    /// How long a fetched list is reused.
    pub register_cache_ttl: Duration,
}

/// The gateway list and its cache.
#[derive(Debug)]
pub struct Directory {
    source: Gateways,
    secret_key: String,
    limits: LookupLimits,
    cached: Mutex<Cache>,
    connector: Arc<dyn exchange::Connector>,
}

/// The register list as last fetched, and whether it may be reused.
#[derive(Debug, Default)]
struct Cache {
    /// The list reusable until `register_cache_ttl` after the instant.
    fresh: Option<(Instant, Vec<GatewayAddr>)>,
    /// The list of the last lookup, cached or not.
    last: Vec<GatewayAddr>,
}

impl Cache {
    /// Takes a new list. A list that lacks a gateway the last one had is not cached (a
    /// *difference*: the original caches every list for its second): after a register
    /// restart the first lists are partial while the gateways re-register, and a cached
    /// partial list would make every call of the next second miss those gateways'
    /// clients, silently. The next call asks again; a gateway that is really gone is
    /// missing from that list too, which is then cached as usual.
    fn store(&mut self, list: &[GatewayAddr], now: Instant) {
        let shrunk = self.last.iter().any(|g| !list.contains(g));
        if shrunk {
            tracing::debug!(
                before = self.last.len(),
                now = list.len(),
                "the register's list lost gateways: not cached, asked again next call"
            );
            self.fresh = None;
        } else {
            self.fresh = Some((now, list.to_vec()));
        }
        self.last = list.to_vec();
    }
}

impl Directory {
    /// A directory reading `source`, presenting `secret_key` to registers.
    pub fn new(source: Gateways, secret_key: String, limits: LookupLimits) -> Directory {
        Directory::with_connector(
            source,
            secret_key,
            limits,
            Arc::new(exchange::TokioConnector),
        )
    }

    /// [`Directory::new`] reaching registers through `connector`.
    pub fn with_connector(
        source: Gateways,
        secret_key: String,
        limits: LookupLimits,
        connector: Arc<dyn exchange::Connector>,
    ) -> Directory {
        Directory {
            source,
            secret_key,
            limits,
            cached: Mutex::new(Cache::default()),
            connector,
        }
    }

    /// The gateways now: the fixed list, the cached register list if fresh, else a new
    /// lookup. An empty register list is an error, as in the original.
    pub async fn gateways(&self) -> Result<Vec<GatewayAddr>, ClientError> {
        let registers = match &self.source {
            Gateways::Fixed(list) => return Ok(list.clone()),
            Gateways::Register(registers) => registers,
        };
        if let Some((at, list)) = &self.cached.lock().unwrap_or_else(|p| p.into_inner()).fresh {
            if at.elapsed() < self.limits.register_cache_ttl {
                return Ok(list.clone());
            }
        }
        let Some(first) = registers.first() else {
            return Err(ClientError::NotConfigured);
        };
        let mut last_error = None;
        for register in registers {
            match self.ask(register).await {
                Ok(list) if list.is_empty() => {
                    return Err(ClientError::NoGateway {
                        register: register.clone(),
                    })
                }
                Ok(list) => {
                    self.cached
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .store(&list, Instant::now());
                    return Ok(list);
                }
                Err(reason) => {
                    tracing::debug!(%register, %reason, "register lookup failed");
                    last_error = Some(ClientError::Register {
                        register: register.clone(),
                        reason,
                    });
                }
            }
        }
        Err(last_error.unwrap_or_else(|| ClientError::Register {
            register: first.clone(),
            reason: "no answer".to_owned(),
        }))
    }

    /// One lookup at `register`.
    async fn ask(&self, register: &str) -> Result<Vec<GatewayAddr>, String> {
        let addr = self.connector.resolve(register).await?;
        let mut request = BytesMut::new();
        ToRegister::WorkerConnect {
            secret_key: self.secret_key.clone(),
        }
        .encode(&mut request);
        let limits = &self.limits;
        let line = exchange::line(
            &*self.connector,
            addr,
            &request,
            limits.connect_timeout,
            limits.reply_timeout,
            limits.register_line_bytes_max,
        )
        .await
        .map_err(|e| match e {
            LinkFailure::Closed => {
                "closed the connection without a list (wrong secret key?)".into()
            }
            other => other.to_string(),
        })?;
        let addresses = match decode_from_register(&line) {
            Ok(FromRegister::BroadcastAddresses(list)) => list,
            Ok(FromRegister::Other { event }) => return Err(format!("unexpected event `{event}`")),
            Err(e) => return Err(e.to_string()),
        };
        Ok(addresses
            .iter()
            .filter_map(|a| match a.parse::<SocketAddrV4>() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    // A client id can only name an ipv4:port gateway (spec 3).
                    tracing::warn!(address = %a, "register lists a gateway that is not ipv4:port; skipped");
                    None
                }
            })
            .collect())
    }
}

/// `host:port` → the first socket address it resolves to.
pub async fn resolve(address: &str) -> Result<SocketAddr, String> {
    tokio::net::lookup_host(address)
        .await
        .map_err(|e| format!("bad address `{address}`: {e}"))?
        .next()
        .ok_or_else(|| format!("bad address `{address}`: resolves to nothing"))
}
