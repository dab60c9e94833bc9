//! Running a gateway on real sockets: `count` independent shards, the way the original
//! runs `count` processes.
//!
//! Each shard is a thread with a current-thread tokio runtime, its own [`GatewayCore`](super::GatewayCore),
//! its own lan port (`start_port + i`) and a public listener bound with `SO_REUSEPORT`
//! on the shared public port, so the kernel spreads clients over shards. Shards share
//! nothing: client ids carry the lan port, so a worker addresses the right shard.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::thread::JoinHandle;

use tokio::sync::watch;

use super::{driver, GatewayConfig, HashKey};
use crate::net::tls::{TlsListener, TlsSettings};
use crate::net::{bind_std, TokioListener, TokioNet};

/// Where and how many shards to run.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// The public address clients connect to (port 0 picks a free port for all shards).
    pub listen: SocketAddr,
    /// The address the lan listeners bind to (usually `lan_ip`, or 0.0.0.0).
    pub lan_bind: IpAddr,
    /// First lan port; shard `i` listens on `start_port + i` (0 = pick free ports).
    pub start_port: u16,
    /// Number of shards (the original's `count`), at least 1.
    pub count: usize,
    /// The core's settings; `lan_port` and `gateway_port` are filled in per shard.
    pub core: GatewayConfig,
    /// `Some` serves the public port as `wss://` (TLS, then the same protocol); `None`
    /// serves plain TCP. Links on the lan ports are never TLS.
    pub tls: Option<TlsSettings>,
}

impl GatewaySettings {
    /// Settings for `count` shards serving `listen`, announcing `lan_ip`.
    pub fn new(
        listen: SocketAddr,
        lan_ip: Ipv4Addr,
        start_port: u16,
        count: usize,
    ) -> GatewaySettings {
        GatewaySettings {
            listen,
            lan_bind: IpAddr::V4(lan_ip),
            start_port,
            count,
            core: GatewayConfig {
                // Names from clients key the uid and group maps: a random key per
                // process, so colliding names cannot be computed offline.
                hash_key: HashKey::random(),
                // Register retry jitter: its own random seed (not derived from the key).
                jitter_seed: HashKey::random().0[0],
                ..GatewayConfig::new(lan_ip, start_port, listen.port())
            },
            tls: None,
        }
    }
}

impl HashKey {
    /// A key from the operating system's randomness (the per-process random keys of
    /// std's `RandomState`, which come from the OS). For drivers, never the core: it lives
    /// here, on the driver side, so the core's files hold no source of randomness.
    #[allow(
        clippy::disallowed_methods,
        reason = "the production driver draws the per-process hash key; the core only takes it"
    )]
    pub fn random() -> HashKey {
        use std::hash::{BuildHasher, Hasher};
        // Each `RandomState::new()` on a thread differs from the previous one (std bumps
        // its random per-thread key), so two of them give two independent words.
        let word = |salt: u64| {
            let mut hasher = std::hash::RandomState::new().build_hasher();
            hasher.write_u64(salt);
            hasher.finish()
        };
        HashKey([word(0x6761_7465), word(0x7761_7973)])
    }
}

/// A running gateway; dropping it does not stop it, call [`RunningGateway::shutdown`].
#[derive(Debug)]
pub struct RunningGateway {
    /// The public address clients connect to.
    pub public_addr: SocketAddr,
    /// Each shard's lan address (`lan_ip:lan_port`), as announced to the register.
    pub lan_addrs: Vec<SocketAddr>,
    stop: watch::Sender<bool>,
    threads: Vec<JoinHandle<io::Result<()>>>,
}

impl RunningGateway {
    /// Stops accepting, lets every connection flush, and waits for the shards.
    pub fn shutdown(self) -> io::Result<()> {
        let _ = self.stop.send(true);
        self.join()
    }

    /// Whether some shard has ended (before shutdown: on a fatal error); `join` then says why.
    pub fn is_finished(&self) -> bool {
        self.threads.iter().any(|t| t.is_finished())
    }

    /// Waits for the shards to end (they end on shutdown or on a fatal error).
    pub fn join(self) -> io::Result<()> {
        let mut result = Ok(());
        for thread in self.threads {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(e),
                Err(_) => result = Err(io::Error::other("a gateway shard panicked")),
            }
        }
        result
    }
}

/// Binds every listener and loads the TLS certificate (errors such as "address in use"
/// or a bad PEM file come back here, before anything runs) and starts the shards.
pub fn start(settings: GatewaySettings) -> io::Result<RunningGateway> {
    start_observed(settings, |_| None)
}

/// [`start`], giving shard `i` the [`Observer`](driver::Observer) `observer_for(i)`
/// returns (e.g. one that publishes its counters for a metrics endpoint).
pub fn start_observed(
    settings: GatewaySettings,
    mut observer_for: impl FnMut(usize) -> Option<driver::Observer>,
) -> io::Result<RunningGateway> {
    assert!(settings.count >= 1, "a gateway needs at least one shard");
    let tls = match &settings.tls {
        Some(tls) => Some((tls.acceptor()?, tls.clone())),
        None => None,
    };
    let mut public_addr = settings.listen;
    let mut bound = Vec::with_capacity(settings.count);
    for i in 0..settings.count {
        let public = bind_std(public_addr, true)?;
        public_addr = public.local_addr()?;
        let lan_port = match settings.start_port {
            0 => 0,
            start => start
                .checked_add(u16::try_from(i).map_err(|_| io::Error::other("count too large"))?)
                .ok_or_else(|| io::Error::other("start_port + count overflows"))?,
        };
        let lan = bind_std(SocketAddr::new(settings.lan_bind, lan_port), false)?;
        bound.push((public, lan));
    }
    let (stop, stopped) = watch::channel(false);
    let mut lan_addrs = Vec::with_capacity(settings.count);
    let mut threads = Vec::with_capacity(settings.count);
    for (i, (public, lan)) in bound.into_iter().enumerate() {
        let lan_port = lan.local_addr()?.port();
        let mut config = settings.core.clone();
        config.lan_port = lan_port;
        config.gateway_port = public_addr.port();
        lan_addrs.push(SocketAddr::new(IpAddr::V4(config.lan_ip), lan_port));
        let mut stopped = stopped.clone();
        let observer = observer_for(i);
        let tls = tls.clone();
        let thread = std::thread::Builder::new()
            .name(format!("gateway-{i}"))
            .stack_size(crate::net::ROLE_THREAD_STACK_BYTES)
            .spawn(move || -> io::Result<()> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(async move {
                    let public = TokioListener::from_std(public)?;
                    let lan = TokioListener::from_std(lan)?;
                    let shutdown = async move {
                        let _ = stopped.wait_for(|stop| *stop).await;
                    };
                    match tls {
                        Some((acceptor, tls)) => {
                            let public = TlsListener::new(public, acceptor, tls);
                            driver::serve_observed(
                                TokioNet, config, public, lan, shutdown, observer,
                            )
                            .await
                        }
                        None => {
                            driver::serve_observed(
                                TokioNet, config, public, lan, shutdown, observer,
                            )
                            .await
                        }
                    }
                })
            })?;
        threads.push(thread);
    }
    Ok(RunningGateway {
        public_addr,
        lan_addrs,
        stop,
        threads,
    })
}
