//! `gatewayworker gateway`: runs `count` gateway shards until SIGINT/SIGTERM.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use gatewayworker::gateway::shards::{self, GatewaySettings};
use gatewayworker::gateway::{CompressionMode, RoutingMode};
use gatewayworker::net::bind_std;
use gatewayworker::net::tls::TlsSettings;

use super::address::public_listen;
use super::args::{Compression, GatewayArgs, Router};
use super::error::CliError;
use super::metrics::{MetricsServer, Source};
use super::register::positive;
use super::signals::Termination;

/// Default `--listen`.
pub const LISTEN_DEFAULT: &str = "websocket://0.0.0.0:8282";
/// Default `--lan-ip` (the original's `lanIp`).
pub const LAN_IP_DEFAULT: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// Default `--start-port` (the original's `startPort`).
pub const START_PORT_DEFAULT: u16 = 2000;
/// Default `--register` (the original's `registerAddress`).
pub const REGISTER_DEFAULT: &str = "127.0.0.1:1236";
/// Most shards one gateway runs: each is a thread with its own lan port.
pub const COUNT_MAX: usize = 1024;

/// Turns merged flags into the gateway's settings (defaults for what is unset).
pub fn settings(args: &GatewayArgs) -> Result<GatewaySettings, CliError> {
    let listen = args.listen.as_deref().unwrap_or(LISTEN_DEFAULT);
    let (protocol, public) = public_listen(listen).map_err(|message| CliError::BadSetting {
        setting: "--listen",
        message,
    })?;
    let lan_ip = args.lan_ip.unwrap_or(LAN_IP_DEFAULT);
    let start_port = args.start_port.unwrap_or(START_PORT_DEFAULT);
    let count = args.count.unwrap_or(1);
    if !(1..=COUNT_MAX).contains(&count) {
        return Err(CliError::BadSetting {
            setting: "--count",
            message: format!("must be between 1 and {COUNT_MAX}"),
        });
    }
    if start_port != 0 && usize::from(start_port) + count - 1 > usize::from(u16::MAX) {
        return Err(CliError::BadSetting {
            setting: "--start-port",
            message: format!("{start_port} + {count} shards runs past port 65535"),
        });
    }
    let mut settings = GatewaySettings::new(public, lan_ip, start_port, count);
    let core = &mut settings.core;
    core.protocol = protocol;
    core.register_addresses = match &args.register {
        Some(list) if list.is_empty() => {
            return Err(CliError::BadSetting {
                setting: "--register",
                message: "needs at least one address".to_owned(),
            })
        }
        Some(list) => list.clone(),
        None => vec![REGISTER_DEFAULT.to_owned()],
    };
    core.secret_key = Bytes::from(args.secret.clone().unwrap_or_default());
    core.ping_interval = Duration::from_secs(args.ping_interval.unwrap_or(0));
    core.ping_not_response_limit = args.ping_not_response_limit.unwrap_or(0);
    core.ping_data = Bytes::from(args.ping_data.clone().unwrap_or_default());
    core.routing = match args.router.unwrap_or(Router::LeastConnections) {
        Router::LeastConnections => RoutingMode::LeastConnections,
        Router::Random => RoutingMode::Random {
            seed: args.router_seed.unwrap_or_else(clock_seed),
        },
    };
    let bounds = [
        (
            &mut core.client_pending_max,
            args.client_pending_max,
            "--client-pending-max",
        ),
        (
            &mut core.pending_before_handshake_max,
            args.pending_before_handshake_max,
            "--pending-before-handshake-max",
        ),
        (
            &mut core.link_pending_max,
            args.link_pending_max,
            "--link-pending-max",
        ),
        (
            &mut core.package_size_max,
            args.package_size_max,
            "--package-size-max",
        ),
        (&mut core.clients_max, args.clients_max, "--clients-max"),
        (&mut core.links_max, args.links_max, "--links-max"),
    ];
    for (field, value, setting) in bounds {
        if let Some(n) = value {
            *field = positive(setting, n)?;
        }
    }
    if let Some(seconds) = args.handshake_timeout {
        core.handshake_timeout = Duration::from_secs(seconds);
    }
    if let Some(ms) = args.link_pause_max_ms {
        core.link_pause_max = Duration::from_millis(ms);
    }
    if let Some(mode) = args.compression {
        core.compression = match mode {
            Compression::Off => CompressionMode::Off,
            Compression::NoContextTakeover => CompressionMode::NoContextTakeover,
            Compression::ContextTakeover => CompressionMode::ContextTakeover,
        };
    }
    if let Some(bytes) = args.compression_min_size {
        core.compression_min_size = bytes;
    }
    settings.tls = tls_settings(args)?;
    let core = &mut settings.core;
    if core.package_size_max > u32::MAX as usize {
        return Err(CliError::BadSetting {
            setting: "--package-size-max",
            message: format!("must be at most {}", u32::MAX),
        });
    }
    Ok(settings)
}

/// `--tls-cert` and `--tls-key` (both or neither), checked by loading them now so a bad
/// file is reported against its flag.
fn tls_settings(args: &GatewayArgs) -> Result<Option<TlsSettings>, CliError> {
    let (cert, key) = match (&args.tls_cert, &args.tls_key) {
        (None, None) => {
            for (value, setting) in [
                (
                    args.tls_handshake_timeout.is_some(),
                    "--tls-handshake-timeout",
                ),
                (args.tls_handshakes_max.is_some(), "--tls-handshakes-max"),
            ] {
                if value {
                    return Err(CliError::BadSetting {
                        setting,
                        message: "needs --tls-cert and --tls-key".to_owned(),
                    });
                }
            }
            return Ok(None);
        }
        (Some(cert), Some(key)) => (cert, key),
        (Some(_), None) => {
            return Err(CliError::BadSetting {
                setting: "--tls-cert",
                message: "needs --tls-key too".to_owned(),
            })
        }
        (None, Some(_)) => {
            return Err(CliError::BadSetting {
                setting: "--tls-key",
                message: "needs --tls-cert too".to_owned(),
            })
        }
    };
    let mut tls = TlsSettings::new(cert, key);
    if let Some(seconds) = args.tls_handshake_timeout {
        tls.handshake_time_max = Duration::from_secs(seconds);
    }
    if let Some(n) = args.tls_handshakes_max {
        tls.handshakes_max = positive("--tls-handshakes-max", n)?;
    }
    tls.acceptor().map_err(|e| CliError::BadSetting {
        setting: "--tls-cert/--tls-key",
        message: e.to_string(),
    })?;
    Ok(Some(tls))
}

/// A seed for the random router when none is given: the clock and the process id, so
/// two gateways started together still differ. (Only the binary draws on the clock; the
/// core takes the seed as a setting and stays deterministic.)
#[allow(
    clippy::disallowed_methods,
    reason = "the binary seeds the router from the clock; the core takes the seed"
)]
fn clock_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}

/// Finds out which address is taken before starting, so the error can name it.
///
/// The public listeners use `SO_REUSEPORT`, which would let a second gateway bind the
/// same port silently (and steal half the clients); a plain probe bind refuses any port
/// someone already listens on, with or without `SO_REUSEPORT`.
pub fn probe_addresses(settings: &GatewaySettings) -> Result<(), CliError> {
    let mut addrs = Vec::new();
    if settings.listen.port() != 0 {
        addrs.push(settings.listen);
    }
    if settings.start_port != 0 {
        for i in 0..settings.count {
            let port = settings.start_port + i as u16; // range checked in `settings`
            addrs.push(SocketAddr::new(settings.lan_bind, port));
        }
    }
    for addr in addrs {
        bind_std(addr, false).map_err(|e| CliError::bind(addr, e))?;
    }
    Ok(())
}

/// Runs the gateway until a termination signal, then stops accepting and flushes.
pub fn run(args: GatewayArgs) -> Result<(), CliError> {
    let settings = settings(&args)?;
    let termination = Termination::install()?;
    let source = Source::gateway(settings.count);
    let metrics = args
        .metrics
        .map(|addr| MetricsServer::start(addr, source.clone()))
        .transpose()?;
    probe_addresses(&settings)?;
    let listen = settings.listen;
    let lan_bind: IpAddr = settings.lan_bind;
    let running = shards::start_observed(settings.clone(), |i| source.gateway_observer(i))
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                CliError::io(
                    format!(
                        "address {listen} or a lan port on {lan_bind} from {}",
                        settings.start_port
                    ),
                    e,
                )
            } else {
                CliError::bind(listen, e)
            }
        })?;
    tracing::info!(
        public = %running.public_addr,
        protocol = ?settings.core.protocol,
        tls = settings.tls.is_some(),
        lan = ?running.lan_addrs,
        register = ?settings.core.register_addresses,
        metrics = ?metrics.as_ref().map(|m| m.addr),
        "gateway ready"
    );
    let signal = termination.wait(|| running.is_finished());
    if let Some(signal) = signal {
        tracing::info!(signal, "gateway stopping: no new connections, flushing");
    }
    let result = match (running.shutdown(), signal) {
        (Err(e), _) => Err(CliError::io("gateway", e)),
        (Ok(()), None) => Err(CliError::io(
            "gateway",
            std::io::Error::other("stopped unexpectedly"),
        )),
        (Ok(()), Some(_)) => Ok(()),
    };
    if let Some(metrics) = metrics {
        metrics.shutdown();
    }
    result?;
    tracing::info!("gateway stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_originals() {
        let s = settings(&GatewayArgs::default()).unwrap();
        assert_eq!(s.listen, "0.0.0.0:8282".parse().unwrap());
        assert_eq!(s.start_port, 2000);
        assert_eq!(s.count, 1);
        assert_eq!(s.core.lan_ip, Ipv4Addr::LOCALHOST);
        assert_eq!(s.core.register_addresses, vec!["127.0.0.1:1236".to_owned()]);
        assert_eq!(s.core.routing, RoutingMode::LeastConnections);
        assert!(s.core.secret_key.is_empty());
        assert_eq!(s.core.ping_interval, Duration::ZERO);
    }

    #[test]
    fn flags_reach_the_core() {
        let args = GatewayArgs {
            listen: Some("text://127.0.0.1:9000".to_owned()),
            count: Some(3),
            start_port: Some(4000),
            router: Some(Router::Random),
            router_seed: Some(42),
            ping_interval: Some(10),
            ping_not_response_limit: Some(2),
            ping_data: Some("{\"type\":\"ping\"}".to_owned()),
            clients_max: Some(5),
            ..GatewayArgs::default()
        };
        let s = settings(&args).unwrap();
        assert_eq!(
            s.core.protocol,
            gatewayworker::gateway::PublicProtocol::Text
        );
        assert_eq!(s.count, 3);
        assert_eq!(s.core.routing, RoutingMode::Random { seed: 42 });
        assert_eq!(s.core.heartbeat_period(), Some(Duration::from_secs(5)));
        assert_eq!(&s.core.ping_data[..], b"{\"type\":\"ping\"}");
        assert_eq!(s.core.clients_max, 5);
    }

    #[test]
    fn bad_values_name_the_flag() {
        let zero = GatewayArgs {
            links_max: Some(0),
            ..GatewayArgs::default()
        };
        assert!(settings(&zero)
            .unwrap_err()
            .to_string()
            .starts_with("--links-max"));
        let overflow = GatewayArgs {
            start_port: Some(65535),
            count: Some(2),
            ..GatewayArgs::default()
        };
        assert!(settings(&overflow)
            .unwrap_err()
            .to_string()
            .starts_with("--start-port"));
        let none = GatewayArgs {
            register: Some(vec![]),
            ..GatewayArgs::default()
        };
        assert!(settings(&none)
            .unwrap_err()
            .to_string()
            .starts_with("--register"));
    }
}
