//! The flags, as clap derives them. Each subcommand's flags are also the keys of its table
//! in the config file (same struct, deserialized by serde), so the two cannot drift apart.
//!
//! Every field is an `Option`: `None` means "not given here", which is what lets
//! [`merge`](GatewayArgs::merge) apply the precedence flag > config file > default.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;

/// Shown at the end of `--help`.
const SETTINGS_HELP: &str = "\
Settings:
  Every flag of a subcommand can also be set in a TOML file given with --config, in the
  table named after the subcommand, with the flag's name as key (without the dashes):

      log-format = \"json\"
      [gateway]
      listen = \"websocket://0.0.0.0:8282\"
      register = [\"10.0.0.1:1236\"]
      count = 4

  Precedence: a command-line flag wins over the config file, which wins over the
  default. An unknown key in the file is an error naming the key.

Logs go to stderr; filter them with RUST_LOG (e.g. RUST_LOG=debug, default info).";

/// What `--version` prints after the name: the crate version and the git revision the
/// binary was built from (`unknown` in a build without git, see build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("GATEWAYWORKER_GIT_REV"),
    ")"
);

/// GatewayWorker-compatible register, gateway and business workers (wasm plugins).
#[derive(Debug, Parser)]
#[command(
    name = "gatewayworker",
    version = VERSION,
    after_help = SETTINGS_HELP,
    arg_required_else_help = true
)]
pub struct Cli {
    /// Read settings from this TOML file (flags given here still win).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Log line format [default: text].
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[allow(clippy::large_enum_variant)] // One value per process, parsed once.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a register: the directory where gateways announce themselves and workers look
    /// them up.
    #[command(
        after_help = "Every flag is also a key of the [register] table of the --config file.\nPrecedence: flag > config file > default."
    )]
    Register(RegisterArgs),
    /// Run a gateway: holds the client connections and forwards their events to workers.
    #[command(
        after_help = "Every flag is also a key of the [gateway] table of the --config file.\nPrecedence: flag > config file > default."
    )]
    Gateway(GatewayArgs),
    /// Ask a register for its gateways and each gateway for its client count.
    #[command(
        after_help = "Every flag is also a key of the [status] table of the --config file.\nPrecedence: flag > config file > default."
    )]
    Status(StatusArgs),
    /// Run business workers: `count` instances of a .wasm module, each linked to every
    /// gateway the register lists.
    #[command(
        after_help = "Every flag is also a key of the [worker] table of the --config file.\nPrecedence: flag > config file > default."
    )]
    Worker(WorkerArgs),
    /// Call the Gateway API from the shell, as a GatewayClient: send-to-group,
    /// online-count, get-session... Query results are printed as JSON.
    #[command(
        after_help = "The flags before the call are also keys of the [client] table of the --config file.\nPrecedence: flag > config file > default; --register or --gateway on the command line\nreplaces both keys of the file."
    )]
    #[command(subcommand_value_name = "CALL", subcommand_help_heading = "Calls")]
    Client(ClientArgs),
    /// Register + gateway + workers in one process, for a single machine. With no flags it
    /// runs the bundled chat example (wasm-workers/dist/chat.wasm) on the default ports.
    #[command(
        after_help = "Every flag is also a key of the [start] table of the --config file.\nPrecedence: flag > config file > default."
    )]
    Start(StartArgs),
    /// Check a .wasm module against the gw ABI before deploying it: the ABI version, the
    /// exports and imports with their signatures, the memory. Prints every problem with its
    /// fix (exit 1), or one line saying what the module implements (exit 0).
    #[command(name = "check-wasm")]
    CheckWasm(CheckWasmArgs),
}

/// `gatewayworker check-wasm`.
#[derive(Debug, Clone, Args)]
pub struct CheckWasmArgs {
    /// The module: a .wasm file (or WAT text).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The worker's memory limit per instance, in MiB, that the module must start within
    /// [default: the worker's, 128].
    #[arg(long, value_name = "MIB")]
    pub memory_mib: Option<u64>,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// How a gateway chooses a worker for a new client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Router {
    /// The worker with the fewest clients bound by this gateway process (the original's default).
    LeastConnections,
    /// A uniformly random worker.
    Random,
}

/// permessage-deflate (RFC 7692) on the websocket port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Compression {
    /// Never negotiated (the original's behaviour).
    Off,
    /// Accepted without context takeover in either direction: one compressor and one
    /// decompressor per shard, nothing per connection.
    NoContextTakeover,
    /// Accepted with context takeover where the client allows it: better ratio, a
    /// compressor and a decompressor per connection.
    ContextTakeover,
}

/// A feature switched on or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnOff {
    /// Switched on.
    On,
    /// Switched off.
    Off,
}

/// `gatewayworker register`.
#[derive(Debug, Default, Clone, Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RegisterArgs {
    /// Address to listen on, `text://HOST:PORT` or `HOST:PORT` [default: text://0.0.0.0:1236].
    #[arg(long, value_name = "ADDRESS")]
    pub listen: Option<String>,
    /// Secret key gateways and workers must present [default: none].
    #[arg(long, value_name = "KEY")]
    pub secret: Option<String>,
    /// Seconds a new connection has to send its first line [default: 10].
    #[arg(long, value_name = "SECONDS")]
    pub first_line_timeout: Option<u64>,
    /// Longest line accepted, in bytes [default: 10485760].
    #[arg(long, value_name = "BYTES")]
    pub line_length_max: Option<usize>,
    /// Unsent output per connection before lines are dropped, in bytes [default: 1048576].
    #[arg(long, value_name = "BYTES")]
    pub pending_max: Option<usize>,
    /// Most connections at once [default: 10000].
    #[arg(long, value_name = "N")]
    pub connections_max: Option<usize>,
    /// Serve Prometheus metrics at http://ADDRESS/metrics [default: off].
    #[arg(long, value_name = "ADDRESS")]
    pub metrics: Option<SocketAddr>,
}

/// `gatewayworker gateway`.
#[derive(Debug, Default, Clone, Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GatewayArgs {
    /// Public address and protocol: `websocket://`, `text://` or `frame://` + HOST:PORT
    /// [default: websocket://0.0.0.0:8282].
    #[arg(long, value_name = "URL")]
    pub listen: Option<String>,
    /// IPv4 address workers reach this gateway at, announced to the register (lanIp)
    /// [default: 127.0.0.1].
    #[arg(long, value_name = "IPV4")]
    pub lan_ip: Option<Ipv4Addr>,
    /// First internal port; process i listens on start-port + i (startPort) [default: 2000].
    #[arg(long, value_name = "PORT")]
    pub start_port: Option<u16>,
    /// Number of gateway processes (shards) sharing the public port (count) [default: 1].
    #[arg(long, value_name = "N")]
    pub count: Option<usize>,
    /// Register address HOST:PORT; repeat for several (registerAddress)
    /// [default: 127.0.0.1:1236].
    #[arg(long, value_name = "ADDRESS")]
    pub register: Option<Vec<String>>,
    /// Secret key shared with workers, API callers and the register (secretKey)
    /// [default: none].
    #[arg(long, value_name = "KEY")]
    pub secret: Option<String>,
    /// Client heartbeat period in seconds, 0 = off (pingInterval) [default: 0].
    #[arg(long, value_name = "SECONDS")]
    pub ping_interval: Option<u64>,
    /// Pings a client may leave unanswered before it is closed, 0 = never
    /// (pingNotResponseLimit) [default: 0].
    #[arg(long, value_name = "N")]
    pub ping_not_response_limit: Option<u32>,
    /// Text sent to clients as the heartbeat, empty = none (pingData) [default: empty].
    #[arg(long, value_name = "TEXT")]
    pub ping_data: Option<String>,
    /// Worker choice for new clients (router) [default: least-connections].
    #[arg(long, value_enum, value_name = "ROUTER")]
    pub router: Option<Router>,
    /// Seed of the random router [default: from the clock].
    #[arg(long, value_name = "N")]
    pub router_seed: Option<u64>,
    /// Seconds a websocket client has to complete its handshake, 0 = no limit
    /// [default: 10].
    #[arg(long, value_name = "SECONDS")]
    pub handshake_timeout: Option<u64>,
    /// PEM certificate chain: serve the public port over TLS (wss://), with --tls-key
    /// [default: off].
    #[arg(long, value_name = "PATH")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert [default: off].
    #[arg(long, value_name = "PATH")]
    pub tls_key: Option<PathBuf>,
    /// Seconds a client has to complete its TLS handshake [default: 10].
    #[arg(long, value_name = "SECONDS")]
    pub tls_handshake_timeout: Option<u64>,
    /// TLS handshakes in progress at once per shard; more wait in the backlog
    /// [default: 1024].
    #[arg(long, value_name = "N")]
    pub tls_handshakes_max: Option<usize>,
    /// Unsent bytes per client before messages to it are dropped [default: 1024000].
    #[arg(long, value_name = "BYTES")]
    pub client_pending_max: Option<usize>,
    /// Bytes queued for a websocket client before its handshake [default: 1024000].
    #[arg(long, value_name = "BYTES")]
    pub pending_before_handshake_max: Option<usize>,
    /// Unsent bytes per worker link before frames to it are dropped [default: 10240000].
    #[arg(long, value_name = "BYTES")]
    pub link_pending_max: Option<usize>,
    /// Longest pause, in milliseconds, of reading a worker link while a client it feeds
    /// is over 3/4 of --client-pending-max (pacing); past it that client falls back to
    /// drop-and-count until it drains to 1/4; 0 = no pacing [default: 1000].
    #[arg(long, value_name = "MS")]
    pub link_pause_max_ms: Option<u64>,
    /// Largest internal frame and client message; larger closes the connection
    /// [default: 10485760].
    #[arg(long, value_name = "BYTES")]
    pub package_size_max: Option<usize>,
    /// permessage-deflate on the websocket port [default: off].
    #[arg(long, value_enum, value_name = "MODE")]
    pub compression: Option<Compression>,
    /// Messages to clients shorter than this go out uncompressed [default: 64].
    #[arg(long, value_name = "BYTES")]
    pub compression_min_size: Option<usize>,
    /// Most clients per gateway process [default: 1000000].
    #[arg(long, value_name = "N")]
    pub clients_max: Option<usize>,
    /// Most worker/API links per gateway process [default: 10000].
    #[arg(long, value_name = "N")]
    pub links_max: Option<usize>,
    /// Serve Prometheus metrics at http://ADDRESS/metrics [default: off].
    #[arg(long, value_name = "ADDRESS")]
    pub metrics: Option<SocketAddr>,
}

/// `gatewayworker status`.
#[derive(Debug, Default, Clone, Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StatusArgs {
    /// Register address HOST:PORT [default: 127.0.0.1:1236].
    #[arg(long, value_name = "ADDRESS")]
    pub register: Option<String>,
    /// Secret key of the cluster [default: none].
    #[arg(long, value_name = "KEY")]
    pub secret: Option<String>,
    /// Seconds to wait for the register and for each gateway [default: 5].
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
}

/// `a.field = a.field.or(b.field)` for every field: the first source that has a value
/// wins. `b` is destructured exhaustively, so a new field left out here does not compile.
macro_rules! merge_fields {
    ($a:ident, $b:ident: $ty:ident; $($field:ident),* $(,)?) => {
        let $ty { $($field),* } = $b;
        $( $a.$field = $a.$field.or($field); )*
    };
}

impl RegisterArgs {
    /// These flags over `file` (flags win field by field).
    pub fn merge(mut self, file: RegisterArgs) -> RegisterArgs {
        merge_fields!(self, file: RegisterArgs; listen, secret, first_line_timeout, line_length_max,
            pending_max, connections_max, metrics);
        self
    }
}

impl GatewayArgs {
    /// These flags over `file` (flags win field by field).
    pub fn merge(mut self, file: GatewayArgs) -> GatewayArgs {
        merge_fields!(self, file: GatewayArgs; listen, lan_ip, start_port, count, register, secret,
            ping_interval, ping_not_response_limit, ping_data, router, router_seed,
            handshake_timeout, tls_cert, tls_key, tls_handshake_timeout, tls_handshakes_max,
            client_pending_max, pending_before_handshake_max, link_pending_max,
            link_pause_max_ms, package_size_max, compression, compression_min_size, clients_max, links_max, metrics);
        self
    }
}

impl StatusArgs {
    /// These flags over `file` (flags win field by field).
    pub fn merge(mut self, file: StatusArgs) -> StatusArgs {
        merge_fields!(self, file: StatusArgs; register, secret, timeout);
        self
    }
}

/// `gatewayworker worker`.
#[derive(Debug, Default, Clone, Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WorkerArgs {
    /// The business logic: a .wasm module speaking the gw ABI (wasm-workers/ABI.md)
    /// [required, here or in the config file].
    #[arg(long, value_name = "PATH")]
    pub wasm: Option<PathBuf>,
    /// Worker name; instance i registers with the gateways as `name:i` [default: BusinessWorker].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Number of instances, each with its own links and wasm memory (the original's count)
    /// [default: 1].
    #[arg(long, value_name = "N")]
    pub count: Option<u32>,
    /// Register address HOST:PORT; repeat for several [default: 127.0.0.1:1236].
    #[arg(long, value_name = "ADDRESS")]
    pub register: Option<Vec<String>>,
    /// Secret key shared with the register and the gateways [default: none].
    #[arg(long, value_name = "KEY")]
    pub secret: Option<String>,
    /// Check the .wasm file every SECONDS and hot-reload it when it changes [default: off].
    #[arg(long, value_name = "SECONDS")]
    pub reload_poll: Option<u64>,
    /// Milliseconds without progress after which a gateway that owes a reply is suspect:
    /// queries stop waiting for it and report it missing; 0 = off (wait for the 5 s query
    /// timeout, as the original) [default: 2000].
    #[arg(long, value_name = "MS")]
    pub suspect_after_ms: Option<u64>,
    /// Fuel (about one wasm instruction each) an event may use whatever its size
    /// [default: 100000000].
    #[arg(long, value_name = "N")]
    pub fuel_per_event: Option<u64>,
    /// Extra fuel per byte of the event's input (client id + message), so the budget grows
    /// with the message [default: 500, twice the costliest bundled guest].
    #[arg(long, value_name = "N")]
    pub fuel_per_input_byte: Option<u64>,
    /// Linear memory one wasm instance may hold, in bytes [default: 134217728 (128 MiB)].
    #[arg(long, value_name = "BYTES")]
    pub memory_max_bytes: Option<usize>,
    /// Wall-clock time one event may take, in milliseconds, 0 = no limit [default: 5000].
    #[arg(long, value_name = "MS")]
    pub event_time_max_ms: Option<u64>,
    /// Pooling instance allocator: faster instantiation, reserves address space for every
    /// instance's memory limit up front [default: off].
    #[arg(long, value_enum, value_name = "ON|OFF")]
    pub pooling: Option<OnOff>,
    /// Largest frame from or to a gateway; a client event over it fails alone, the link
    /// stays (see the gateway's flag of the same name) [default: 10485760].
    #[arg(long, value_name = "BYTES")]
    pub package_size_max: Option<usize>,
    /// Serve Prometheus metrics at http://ADDRESS/metrics [default: off].
    #[arg(long, value_name = "ADDRESS")]
    pub metrics: Option<SocketAddr>,
}

/// `gatewayworker start`.
#[derive(Debug, Default, Clone, Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StartArgs {
    /// The business logic [default: wasm-workers/dist/chat.wasm].
    #[arg(long, value_name = "PATH")]
    pub wasm: Option<PathBuf>,
    /// Public address and protocol of the gateway [default: websocket://0.0.0.0:8282].
    #[arg(long, value_name = "URL")]
    pub listen: Option<String>,
    /// Register address to listen on and to use [default: 127.0.0.1:1236].
    #[arg(long, value_name = "ADDRESS")]
    pub register: Option<SocketAddr>,
    /// First lan port of the gateway shards [default: 2000].
    #[arg(long, value_name = "PORT")]
    pub start_port: Option<u16>,
    /// Gateway shards [default: 1].
    #[arg(long, value_name = "N")]
    pub gateway_count: Option<usize>,
    /// Worker instances [default: 2].
    #[arg(long, value_name = "N")]
    pub worker_count: Option<u32>,
    /// Secret key shared by the three roles [default: none].
    #[arg(long, value_name = "KEY")]
    pub secret: Option<String>,
    /// Serve Prometheus metrics of all three roles at http://ADDRESS/metrics [default: off].
    #[arg(long, value_name = "ADDRESS")]
    pub metrics: Option<SocketAddr>,
    /// permessage-deflate on the websocket port, as `gateway --compression` [default: off].
    #[arg(long, value_enum, value_name = "MODE")]
    pub compression: Option<Compression>,
    /// Largest client message and internal frame, for the gateway and the workers alike
    /// [default: 10485760].
    #[arg(long, value_name = "BYTES")]
    pub package_size_max: Option<usize>,
    /// Fuel (about one wasm instruction each) an event may use whatever its size
    /// [default: 100000000].
    #[arg(long, value_name = "N")]
    pub fuel_per_event: Option<u64>,
    /// Extra fuel per byte of the event's input (client id + message), so the budget grows
    /// with the message [default: 500, twice the costliest bundled guest].
    #[arg(long, value_name = "N")]
    pub fuel_per_input_byte: Option<u64>,
    /// Linear memory one wasm instance may hold, in bytes [default: 134217728 (128 MiB)].
    #[arg(long, value_name = "BYTES")]
    pub memory_max_bytes: Option<usize>,
    /// Wall-clock time one event may take, in milliseconds, 0 = no limit [default: 5000].
    #[arg(long, value_name = "MS")]
    pub event_time_max_ms: Option<u64>,
    /// Pooling instance allocator: faster instantiation, reserves address space for every
    /// instance's memory limit up front [default: off].
    #[arg(long, value_enum, value_name = "ON|OFF")]
    pub pooling: Option<OnOff>,
    /// Serve the demo chat page at http://ADDRESS/ (needs a websocket:// gateway)
    /// [default: 0.0.0.0:55151].
    #[arg(long, value_name = "ADDRESS", conflicts_with = "no_demo")]
    pub demo_listen: Option<SocketAddr>,
    /// Do not serve the demo chat page.
    #[arg(long)]
    #[serde(default)]
    pub no_demo: bool,
}

impl WorkerArgs {
    /// These flags over `file` (flags win field by field).
    pub fn merge(mut self, file: WorkerArgs) -> WorkerArgs {
        merge_fields!(self, file: WorkerArgs; wasm, name, count, register, secret, reload_poll,
            suspect_after_ms,
            fuel_per_event, fuel_per_input_byte, memory_max_bytes, event_time_max_ms, pooling,
            package_size_max, metrics);
        self
    }
}

impl StartArgs {
    /// These flags over `file` (flags win field by field).
    pub fn merge(mut self, file: StartArgs) -> StartArgs {
        let StartArgs {
            wasm,
            listen,
            register,
            start_port,
            gateway_count,
            worker_count,
            secret,
            metrics,
            compression,
            package_size_max,
            fuel_per_event,
            fuel_per_input_byte,
            memory_max_bytes,
            event_time_max_ms,
            pooling,
            demo_listen,
            no_demo,
        } = file;
        self.compression = self.compression.or(compression);
        self.package_size_max = self.package_size_max.or(package_size_max);
        self.fuel_per_event = self.fuel_per_event.or(fuel_per_event);
        self.fuel_per_input_byte = self.fuel_per_input_byte.or(fuel_per_input_byte);
        self.memory_max_bytes = self.memory_max_bytes.or(memory_max_bytes);
        self.event_time_max_ms = self.event_time_max_ms.or(event_time_max_ms);
        self.pooling = self.pooling.or(pooling);
        self.wasm = self.wasm.or(wasm);
        self.listen = self.listen.or(listen);
        self.register = self.register.or(register);
        self.start_port = self.start_port.or(start_port);
        self.gateway_count = self.gateway_count.or(gateway_count);
        self.worker_count = self.worker_count.or(worker_count);
        self.secret = self.secret.or(secret);
        self.metrics = self.metrics.or(metrics);
        // The demo page is one setting: `--no-demo` or `--demo-listen` on the command line
        // replaces both keys of the file.
        if !self.no_demo && self.demo_listen.is_none() {
            self.demo_listen = demo_listen;
            self.no_demo = no_demo;
        }
        self
    }
}

/// `gatewayworker client [OPTIONS] <CALL> [ARGS]`.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Where the cluster is and how long to wait.
    #[command(flatten)]
    pub options: ClientOptions,
    /// The Gateway API call.
    #[command(subcommand)]
    pub call: ClientCall,
}

/// The flags of `gatewayworker client`, also the keys of the `[client]` table.
#[derive(Debug, Default, Clone, Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ClientOptions {
    /// Register address HOST:PORT to find the gateways; repeat for fallbacks
    /// [default: 127.0.0.1:1236].
    #[arg(long, value_name = "ADDRESS")]
    pub register: Option<Vec<String>>,
    /// Gateway lan address IP:PORT to use instead of a register; repeat for every gateway
    /// (shard) of the cluster [default: none].
    #[arg(long, value_name = "ADDRESS", conflicts_with = "register")]
    pub gateway: Option<Vec<String>>,
    /// Secret key of the cluster (secretKey) [default: none].
    #[arg(long, value_name = "KEY")]
    pub secret: Option<String>,
    /// Seconds to wait for a connection (connectTimeout) [default: 3].
    #[arg(long, value_name = "SECONDS")]
    pub connect_timeout: Option<u64>,
    /// Seconds to wait for an answer once connected [default: 5].
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Print what the answering gateways said when some do not answer, like the original,
    /// instead of failing [default: false].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub partial: Option<bool>,
    /// Milliseconds a gateway may owe an answer (or a connect) before it is suspect: the
    /// call stops waiting for it and reports it missing; 0 = off (wait for --timeout, as
    /// the original) [default: 2000].
    #[arg(long, value_name = "MS")]
    pub suspect_after_ms: Option<u64>,
}

impl ClientOptions {
    /// These flags over `file`; a `--register` or `--gateway` flag replaces both keys of
    /// the file (one source of gateways, the one the command line names).
    pub fn merge(mut self, file: ClientOptions) -> ClientOptions {
        let ClientOptions {
            register,
            gateway,
            secret,
            connect_timeout,
            timeout,
            partial,
            suspect_after_ms,
        } = file;
        if self.register.is_none() && self.gateway.is_none() {
            self.register = register;
            self.gateway = gateway;
        }
        self.secret = self.secret.or(secret);
        self.connect_timeout = self.connect_timeout.or(connect_timeout);
        self.timeout = self.timeout.or(timeout);
        self.partial = self.partial.or(partial);
        self.suspect_after_ms = self.suspect_after_ms.or(suspect_after_ms);
        self
    }
}

/// One Gateway API call, named like the original's method in kebab-case.
///
/// Every call prints one line of JSON on stdout, of the type given in its help; the calls
/// that send print what the original's method returns (`true`, `false` or `null`) and
/// exit with 3 when that is `false`.
#[derive(Debug, Clone, Subcommand)]
pub enum ClientCall {
    /// sendToAll: MESSAGE to every client (or only to --client-id / --client-ids ones), but
    /// --exclude ones. Prints null.
    SendToAll {
        /// The message (or give --message-file).
        #[arg(required_unless_present = "message_file")]
        message: Option<String>,
        /// Read the message from this file, `-` for stdin: any bytes, up to the package
        /// size (10 MiB).
        #[arg(long, value_name = "PATH", conflicts_with = "message")]
        message_file: Option<PathBuf>,
        /// Send only to this client; repeat for several.
        #[arg(long = "client-id", value_name = "CLIENT_ID")]
        client_ids: Vec<String>,
        /// Send only to these clients, separated by commas or spaces; an empty LIST sends
        /// to nobody (never to everyone), like the original's empty array.
        #[arg(
            long = "client-ids",
            value_name = "LIST",
            conflicts_with = "client_ids"
        )]
        client_id_list: Option<String>,
        /// Do not send to this client; repeat for several.
        #[arg(long, value_name = "CLIENT_ID")]
        exclude: Vec<String>,
        /// Write the bytes as is, without the client protocol's framing.
        #[arg(long)]
        raw: bool,
    },
    /// sendToClient: MESSAGE to one client. Prints true.
    SendToClient {
        /// The client id (20 hex characters).
        client_id: String,
        /// The message (or give --message-file).
        #[arg(required_unless_present = "message_file")]
        message: Option<String>,
        /// Read the message from this file, `-` for stdin: any bytes, up to the package
        /// size (10 MiB).
        #[arg(long, value_name = "PATH", conflicts_with = "message")]
        message_file: Option<PathBuf>,
    },
    /// sendToUid: MESSAGE to every client bound to one of the UIDs. Prints null.
    #[command(
        override_usage = "gatewayworker client send-to-uid <UID>... <MESSAGE>\n       \
                                gatewayworker client send-to-uid --message-file <PATH> <UID>..."
    )]
    SendToUid {
        /// The uids, then the message (unless --message-file gives it).
        #[arg(required = true, value_name = "UID")]
        args: Vec<String>,
        /// Read the message from this file, `-` for stdin: any bytes, up to the package
        /// size (10 MiB).
        #[arg(long, value_name = "PATH")]
        message_file: Option<PathBuf>,
    },
    /// sendToGroup: MESSAGE to every member of the GROUPs, but --exclude ones. Prints
    /// null, or false (exit 3) for one PHP-empty group name ("" or "0"), as the original.
    #[command(
        override_usage = "gatewayworker client send-to-group [OPTIONS] <GROUP>... <MESSAGE>\n       \
                                gatewayworker client send-to-group [OPTIONS] --message-file <PATH> <GROUP>..."
    )]
    SendToGroup {
        /// The groups, then the message (unless --message-file gives it).
        #[arg(required = true, value_name = "GROUP")]
        args: Vec<String>,
        /// Read the message from this file, `-` for stdin: any bytes, up to the package
        /// size (10 MiB).
        #[arg(long, value_name = "PATH")]
        message_file: Option<PathBuf>,
        /// Do not send to this client; repeat for several.
        #[arg(long, value_name = "CLIENT_ID")]
        exclude: Vec<String>,
        /// Write the bytes as is, without the client protocol's framing.
        #[arg(long)]
        raw: bool,
    },
    /// bindUid: binds a client to a uid. Prints null.
    BindUid {
        /// The client id.
        client_id: String,
        /// The uid.
        uid: String,
    },
    /// unbindUid: unbinds a client from its uid. Prints null.
    UnbindUid {
        /// The client id.
        client_id: String,
        /// The uid (ignored by the gateway, as in the original).
        uid: String,
    },
    /// joinGroup: adds a client to a group. Prints null.
    JoinGroup {
        /// The client id.
        client_id: String,
        /// The group.
        group: String,
    },
    /// leaveGroup: removes a client from a group. Prints null.
    LeaveGroup {
        /// The client id.
        client_id: String,
        /// The group.
        group: String,
    },
    /// ungroup: dissolves a group. Prints null, or false (exit 3) for a PHP-empty name.
    Ungroup {
        /// The group.
        group: String,
    },
    /// setSession: replaces a client's session with a JSON object. Prints null.
    SetSession {
        /// The client id.
        client_id: String,
        /// The session, a JSON object (or list), e.g. '{"name":"ann"}'.
        json: String,
    },
    /// updateSession: merges a JSON object into a client's session. Prints null.
    UpdateSession {
        /// The client id.
        client_id: String,
        /// The keys to set, a JSON object.
        json: String,
    },
    /// getSession: a client's session, an object ({} when empty), or null for an unknown
    /// client.
    GetSession {
        /// The client id.
        client_id: String,
    },
    /// closeClient: closes a client, after MESSAGE if given. Prints true.
    CloseClient {
        /// The client id.
        client_id: String,
        /// A last message.
        message: Option<String>,
        /// Read the last message from this file, `-` for stdin.
        #[arg(long, value_name = "PATH", conflicts_with = "message")]
        message_file: Option<PathBuf>,
    },
    /// destoryClient: closes a client at once. Prints true.
    DestroyClient {
        /// The client id.
        client_id: String,
    },
    /// isOnline: 1 when the client is connected, else 0 (a number).
    IsOnline {
        /// The client id.
        client_id: String,
    },
    /// isUidOnline: 1 when a client is bound to UID, else 0 (a number).
    IsUidOnline {
        /// The uid.
        uid: String,
    },
    /// getClientIdByUid: the client ids bound to UID, an array.
    GetClientIdByUid {
        /// The uid.
        uid: String,
    },
    /// getUidByClientId: the uid of a client (a string), or null.
    GetUidByClientId {
        /// The client id.
        client_id: String,
    },
    /// getClientIdListByGroup: client_id => client_id of GROUP's members, an object.
    GetClientIdListByGroup {
        /// The group.
        group: String,
    },
    /// getClientSessionsByGroup: client_id => session (object) of GROUP's members, an object.
    GetClientSessionsByGroup {
        /// The group.
        group: String,
    },
    /// getClientCountByGroup: members of GROUP, a number.
    #[command(visible_alias = "get-client-id-count-by-group")]
    GetClientCountByGroup {
        /// The group.
        group: String,
    },
    /// getAllClientIdList: client_id => client_id of every client, an object.
    GetAllClientIdList,
    /// getAllClientSessions: client_id => session (object) of every client (or of GROUP's),
    /// an object.
    GetAllClientSessions {
        /// Only this group's members.
        group: Option<String>,
    },
    /// getAllClientCount: clients online in the cluster, a number.
    #[command(visible_aliases = ["online-count", "get-all-client-id-count"])]
    GetAllClientCount,
    /// getAllUidList: uid => uid of every bound uid, an object.
    GetAllUidList,
    /// getAllUidCount: bound uids, a number.
    GetAllUidCount,
    /// getUidListByGroup: uid => uid of GROUP's members, an object.
    GetUidListByGroup {
        /// The group.
        group: String,
    },
    /// getUidCountByGroup: uids in GROUP, a number.
    GetUidCountByGroup {
        /// The group.
        group: String,
    },
    /// getAllGroupIdList: group => group of the groups with members, an object.
    GetAllGroupIdList,
    /// getAllGroupUidList: group => (uid => uid), an object of objects.
    GetAllGroupUidList,
    /// getAllGroupUidCount: group => uids, an object of numbers.
    GetAllGroupUidCount,
    /// getAllGroupClientIdList: group => (client_id => client_id), an object of objects.
    GetAllGroupClientIdList,
    /// getAllGroupClientIdCount: group => clients, an object of numbers.
    #[command(visible_alias = "get-all-group-count")]
    GetAllGroupClientIdCount,
    /// batchGetClientIdByUid: uid => array of client ids, for each UID, an object.
    BatchGetClientIdByUid {
        /// The uids.
        #[arg(required = true)]
        uids: Vec<String>,
    },
    /// batchGetClientIdCountByGroup: group => count, for each GROUP, an object.
    BatchGetClientIdCountByGroup {
        /// The groups.
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// isUidsOnline: uid => 0/1, for each UID, an object.
    IsUidsOnline {
        /// The uids.
        #[arg(required = true)]
        uids: Vec<String>,
    },
}
