//! The Prometheus endpoint: `GET /metrics` over plain HTTP/1.1, answered by a tiny
//! hand-written responder on its own thread.
//!
//! Numbers come from the counters the cores already keep. Each gateway shard (and the
//! register) copies them into its own `Arc<[AtomicU64]>` once a second through the
//! driver's `Observer` hook; the responder only loads atomics, so a scrape never touches
//! a shard's thread and a shard never waits for a scrape.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::error::CliError;
use super::http::{request_target, Handler, HttpListener, HttpServer, Limits, Response};
use gatewayworker::business::metrics::{
    failure_label, WorkerObserver, EVENT_BUCKETS_US, FAILURE_KINDS,
};
use gatewayworker::gateway::{driver as gateway_driver, GatewayCore};
use gatewayworker::register::{driver as register_driver, RegisterCore};
use gatewayworker::worker::core::WorkerStats;

/// How often drivers copy their counters for the endpoint.
pub const PUBLISH_PERIOD: Duration = Duration::from_secs(1);
/// Longest request head read (request line and headers).
pub const REQUEST_HEAD_MAX: usize = 8 * 1024;
/// Time a scraper has to send its request head.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Scrapes served at once; more connections are closed at once.
pub const CONNECTIONS_MAX: usize = 16;

/// Published counters of one shard (or of the register), indexed by a `*_SLOT` constant.
pub type Slots = Arc<[AtomicU64]>;

/// One line family in the output: which slot, under which name and labels.
struct Metric {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    /// Extra `label="value"` pairs, for families split by kind.
    label: Option<&'static str>,
    slot: usize,
}

const GATEWAY_CLIENTS: usize = 0;
const GATEWAY_LINKS: usize = 1;
const GATEWAY_CLIENT_MESSAGES_DROPPED: usize = 2;
const GATEWAY_LINK_FRAMES_DROPPED: usize = 3;
const GATEWAY_UNENCODABLE: usize = 4;
const GATEWAY_WITHOUT_WORKER: usize = 5;
const GATEWAY_UNKNOWN_COMMANDS: usize = 6;
const GATEWAY_CLIENT_MESSAGES_IN: usize = 7;
const GATEWAY_CLIENT_MESSAGES_OUT: usize = 8;
const GATEWAY_CLIENT_BYTES_IN: usize = 9;
const GATEWAY_CLIENT_BYTES_OUT: usize = 10;
const GATEWAY_LINK_BYTES_IN: usize = 11;
const GATEWAY_LINK_BYTES_OUT: usize = 12;
const GATEWAY_CLIENT_QUEUED: usize = 13;
const GATEWAY_LINK_QUEUED: usize = 14;
const GATEWAY_LINKS_PAUSED: usize = 15;
const GATEWAY_LINK_PAUSES: usize = 16;
const GATEWAY_LINK_PAUSES_AT_BOUND: usize = 17;
const GATEWAY_LINK_PAUSED_MS: usize = 18;
const GATEWAY_SLOTS: usize = 19;

/// Gateway metrics, one line per shard (`shard="i"`); same-named entries are adjacent.
const GATEWAY_METRICS: &[Metric] = &[
    Metric {
        name: "gatewayworker_clients",
        help: "Clients connected on the public port.",
        kind: "gauge",
        label: None,
        slot: GATEWAY_CLIENTS,
    },
    Metric {
        name: "gatewayworker_links",
        help: "Internal links (business workers and API callers) connected.",
        kind: "gauge",
        label: None,
        slot: GATEWAY_LINKS,
    },
    Metric {
        name: "gatewayworker_messages_dropped_total",
        help: "Messages dropped because the receiver's unsent output was at its bound \
               (kind=client: client_pending_max or pending_before_handshake_max; \
               kind=link: link_pending_max).",
        kind: "counter",
        label: Some(r#"kind="client""#),
        slot: GATEWAY_CLIENT_MESSAGES_DROPPED,
    },
    Metric {
        name: "gatewayworker_messages_dropped_total",
        help: "",
        kind: "counter",
        label: Some(r#"kind="link""#),
        slot: GATEWAY_LINK_FRAMES_DROPPED,
    },
    Metric {
        name: "gatewayworker_client_messages_unencodable_total",
        help: "Messages that could not be encoded for a client's protocol.",
        kind: "counter",
        label: None,
        slot: GATEWAY_UNENCODABLE,
    },
    Metric {
        name: "gatewayworker_clients_without_worker_total",
        help: "Clients destroyed because no business worker was registered.",
        kind: "counter",
        label: None,
        slot: GATEWAY_WITHOUT_WORKER,
    },
    Metric {
        name: "gatewayworker_unknown_commands_total",
        help: "Frames with an unknown command number received on links.",
        kind: "counter",
        label: None,
        slot: GATEWAY_UNKNOWN_COMMANDS,
    },
    Metric {
        name: "gatewayworker_client_messages_total",
        help: "Client messages (direction=in: decoded from clients and forwarded to workers; \
               direction=out: queued for clients, one per recipient).",
        kind: "counter",
        label: Some(r#"direction="in""#),
        slot: GATEWAY_CLIENT_MESSAGES_IN,
    },
    Metric {
        name: "gatewayworker_client_messages_total",
        help: "",
        kind: "counter",
        label: Some(r#"direction="out""#),
        slot: GATEWAY_CLIENT_MESSAGES_OUT,
    },
    Metric {
        name: "gatewayworker_bytes_total",
        help: "Bytes read (direction=in) and written (direction=out), on client connections \
               (peer=client) and worker/API links (peer=link).",
        kind: "counter",
        label: Some(r#"peer="client",direction="in""#),
        slot: GATEWAY_CLIENT_BYTES_IN,
    },
    Metric {
        name: "gatewayworker_bytes_total",
        help: "",
        kind: "counter",
        label: Some(r#"peer="client",direction="out""#),
        slot: GATEWAY_CLIENT_BYTES_OUT,
    },
    Metric {
        name: "gatewayworker_bytes_total",
        help: "",
        kind: "counter",
        label: Some(r#"peer="link",direction="in""#),
        slot: GATEWAY_LINK_BYTES_IN,
    },
    Metric {
        name: "gatewayworker_bytes_total",
        help: "",
        kind: "counter",
        label: Some(r#"peer="link",direction="out""#),
        slot: GATEWAY_LINK_BYTES_OUT,
    },
    Metric {
        name: "gatewayworker_queued_bytes",
        help: "Bytes queued and not yet written (peer=client: to clients, incl. before their \
               handshake; peer=link: to workers and API callers).",
        kind: "gauge",
        label: Some(r#"peer="client""#),
        slot: GATEWAY_CLIENT_QUEUED,
    },
    Metric {
        name: "gatewayworker_queued_bytes",
        help: "",
        kind: "gauge",
        label: Some(r#"peer="link""#),
        slot: GATEWAY_LINK_QUEUED,
    },
    Metric {
        name: "gatewayworker_links_paused",
        help: "Worker links not being read now because a client they feed is over its \
               high-water mark (pacing, --link-pause-max-ms).",
        kind: "gauge",
        label: None,
        slot: GATEWAY_LINKS_PAUSED,
    },
    Metric {
        name: "gatewayworker_link_pauses_total",
        help: "Pause episodes of worker links (end=drained: every client holding the link \
               drained to its low-water mark, or the link or clients closed; end=bound: \
               ended at --link-pause-max-ms, its clients fell back to drop-and-count). \
               Episodes in progress are in neither.",
        kind: "counter",
        label: Some(r#"end="drained""#),
        slot: GATEWAY_LINK_PAUSES,
    },
    Metric {
        name: "gatewayworker_link_pauses_total",
        help: "",
        kind: "counter",
        label: Some(r#"end="bound""#),
        slot: GATEWAY_LINK_PAUSES_AT_BOUND,
    },
    Metric {
        name: "gatewayworker_link_paused_milliseconds_total",
        help: "Time worker links spent paused, counted when each episode ends.",
        kind: "counter",
        label: None,
        slot: GATEWAY_LINK_PAUSED_MS,
    },
];

const REGISTER_CONNECTIONS: usize = 0;
const REGISTER_GATEWAYS: usize = 1;
const REGISTER_WORKERS: usize = 2;
const REGISTER_LINES_DROPPED: usize = 3;
const REGISTER_REFUSED: usize = 4;
const REGISTER_CLOSED: usize = 5;
const REGISTER_UNREGISTERED_INPUT: usize = 6;
const REGISTER_UNREGISTERED_CLOSES: usize = 7;
const REGISTER_SLOTS: usize = 8;

const REGISTER_METRICS: &[Metric] = &[
    Metric {
        name: "gatewayworker_register_connections",
        help: "Connections to the register (gateways, workers, API callers, not yet identified).",
        kind: "gauge",
        label: None,
        slot: REGISTER_CONNECTIONS,
    },
    Metric {
        name: "gatewayworker_register_gateways",
        help: "Distinct gateway addresses registered.",
        kind: "gauge",
        label: None,
        slot: REGISTER_GATEWAYS,
    },
    Metric {
        name: "gatewayworker_register_workers",
        help: "Connections registered as workers (GatewayClient callers count while connected).",
        kind: "gauge",
        label: None,
        slot: REGISTER_WORKERS,
    },
    Metric {
        name: "gatewayworker_register_lines_dropped_total",
        help: "Lines dropped because a connection's unsent output was at pending_max.",
        kind: "counter",
        label: None,
        slot: REGISTER_LINES_DROPPED,
    },
    Metric {
        name: "gatewayworker_register_connections_refused_total",
        help: "Connections refused at connections_max.",
        kind: "counter",
        label: None,
        slot: REGISTER_REFUSED,
    },
    Metric {
        name: "gatewayworker_register_connections_closed_total",
        help: "Connections the register closed (bad secret, bad request, first-line timeout...).",
        kind: "counter",
        label: None,
        slot: REGISTER_CLOSED,
    },
    Metric {
        name: "gatewayworker_register_unregistered_input_bytes",
        help: "Input buffered by connections not registered as gateway or worker (bounded by unregistered_input_max).",
        kind: "gauge",
        label: None,
        slot: REGISTER_UNREGISTERED_INPUT,
    },
    Metric {
        name: "gatewayworker_register_unregistered_input_closes_total",
        help: "Unregistered connections closed because their input, all together, was over unregistered_input_max.",
        kind: "counter",
        label: None,
        slot: REGISTER_UNREGISTERED_CLOSES,
    },
];

/// One source of numbers: its shard index (none for the register) and its slots.
type ShardSlots<'a> = (Option<usize>, &'a Slots);

/// What an endpoint reports.
#[derive(Debug, Clone)]
pub enum Source {
    /// A gateway's shards, in shard order.
    Gateway(Vec<Slots>),
    /// A register.
    Register(Slots),
    /// A business worker's instances.
    Worker(WorkerObserver),
    /// Several roles in one process (`start`), each rendered in turn.
    All(Vec<Source>),
}

fn new_slots(n: usize) -> Slots {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

fn store(slots: &Slots, slot: usize, value: impl TryInto<u64>) {
    slots[slot].store(value.try_into().unwrap_or(u64::MAX), Ordering::Relaxed);
}

impl Source {
    /// A gateway source with `count` shards, all zero until the shards publish.
    pub fn gateway(count: usize) -> Source {
        Source::Gateway((0..count).map(|_| new_slots(GATEWAY_SLOTS)).collect())
    }

    /// A register source, zero until the register publishes.
    pub fn register() -> Source {
        Source::Register(new_slots(REGISTER_SLOTS))
    }

    /// The observer that shard `shard` of a gateway runs (None for other sources).
    pub fn gateway_observer(&self, shard: usize) -> Option<gateway_driver::Observer> {
        let shards = match self {
            Source::Gateway(shards) => shards,
            Source::All(sources) => {
                return sources.iter().find_map(|s| s.gateway_observer(shard));
            }
            _ => return None,
        };
        let slots = shards.get(shard)?.clone();
        Some(gateway_driver::Observer {
            period: PUBLISH_PERIOD,
            publish: Box::new(move |core: &GatewayCore| {
                let stats = core.stats();
                store(&slots, GATEWAY_CLIENTS, core.client_count());
                store(&slots, GATEWAY_LINKS, core.link_count());
                store(
                    &slots,
                    GATEWAY_CLIENT_MESSAGES_DROPPED,
                    stats.client_messages_dropped,
                );
                store(
                    &slots,
                    GATEWAY_LINK_FRAMES_DROPPED,
                    stats.link_frames_dropped,
                );
                store(
                    &slots,
                    GATEWAY_UNENCODABLE,
                    stats.client_messages_unencodable,
                );
                store(&slots, GATEWAY_WITHOUT_WORKER, stats.clients_without_worker);
                store(&slots, GATEWAY_UNKNOWN_COMMANDS, stats.unknown_commands);
                store(&slots, GATEWAY_CLIENT_MESSAGES_IN, stats.client_messages_in);
                store(
                    &slots,
                    GATEWAY_CLIENT_MESSAGES_OUT,
                    stats.client_messages_out,
                );
                store(&slots, GATEWAY_CLIENT_BYTES_IN, stats.client_bytes_in);
                store(&slots, GATEWAY_CLIENT_BYTES_OUT, stats.client_bytes_out);
                store(&slots, GATEWAY_LINK_BYTES_IN, stats.link_bytes_in);
                store(&slots, GATEWAY_LINK_BYTES_OUT, stats.link_bytes_out);
                let (to_clients, to_links) = core.queued_bytes();
                store(&slots, GATEWAY_CLIENT_QUEUED, to_clients);
                store(&slots, GATEWAY_LINK_QUEUED, to_links);
                store(&slots, GATEWAY_LINKS_PAUSED, core.paused_link_count());
                let paused_now = u64::try_from(core.paused_link_count()).unwrap_or(u64::MAX);
                let ended = stats.link_pauses.saturating_sub(paused_now);
                store(
                    &slots,
                    GATEWAY_LINK_PAUSES,
                    ended.saturating_sub(stats.link_pauses_at_bound),
                );
                store(
                    &slots,
                    GATEWAY_LINK_PAUSES_AT_BOUND,
                    stats.link_pauses_at_bound,
                );
                store(
                    &slots,
                    GATEWAY_LINK_PAUSED_MS,
                    stats.link_paused_micros / 1000,
                );
            }),
        })
    }

    /// The observer the register runs (None for other sources).
    pub fn register_observer(&self) -> Option<register_driver::Observer> {
        let slots = match self {
            Source::Register(slots) => slots,
            Source::All(sources) => return sources.iter().find_map(|s| s.register_observer()),
            _ => return None,
        };
        let slots = slots.clone();
        Some(register_driver::Observer {
            period: PUBLISH_PERIOD,
            publish: Box::new(move |core: &RegisterCore| {
                let stats = core.stats();
                store(&slots, REGISTER_CONNECTIONS, core.connection_count());
                store(&slots, REGISTER_GATEWAYS, core.addresses().len());
                store(&slots, REGISTER_WORKERS, core.workers().len());
                store(&slots, REGISTER_LINES_DROPPED, stats.lines_dropped);
                store(&slots, REGISTER_REFUSED, stats.connections_refused);
                store(
                    &slots,
                    REGISTER_CLOSED,
                    stats.connections_closed_by_register,
                );
                store(
                    &slots,
                    REGISTER_UNREGISTERED_INPUT,
                    core.unregistered_input(),
                );
                store(
                    &slots,
                    REGISTER_UNREGISTERED_CLOSES,
                    stats.unregistered_input_closes,
                );
            }),
        })
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let role = match self {
            Source::Gateway(_) => "gateway",
            Source::Register(_) => "register",
            Source::Worker(_) => "worker",
            Source::All(_) => "start",
        };
        out.push_str("# HELP gatewayworker_build_info The running program; always 1.\n");
        out.push_str("# TYPE gatewayworker_build_info gauge\n");
        let _ = writeln!(
            out,
            "gatewayworker_build_info{{version=\"{}\",role=\"{role}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        out.push_str(
            "# HELP gatewayworker_connection_panics_total Panics caught while handling one \
             connection (that connection was closed; the process went on).\n",
        );
        out.push_str("# TYPE gatewayworker_connection_panics_total counter\n");
        let _ = writeln!(
            out,
            "gatewayworker_connection_panics_total {}",
            gatewayworker::net::connection_panics_total()
        );
        self.render_families(&mut out);
        out
    }

    fn render_families(&self, out: &mut String) {
        match self {
            Source::Gateway(shards) => {
                let shards: Vec<ShardSlots> = shards
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (Some(i), s))
                    .collect();
                render_slots(out, GATEWAY_METRICS, &shards);
            }
            Source::Register(slots) => render_slots(out, REGISTER_METRICS, &[(None, slots)]),
            Source::Worker(worker) => render_worker(out, worker),
            Source::All(sources) => {
                for source in sources {
                    source.render_families(out);
                }
            }
        }
    }
}

fn render_slots(out: &mut String, metrics: &[Metric], shards: &[ShardSlots]) {
    let mut previous = "";
    for metric in metrics {
        if metric.name != previous {
            let _ = writeln!(out, "# HELP {} {}", metric.name, metric.help);
            let _ = writeln!(out, "# TYPE {} {}", metric.name, metric.kind);
            previous = metric.name;
        }
        for (shard, slots) in shards {
            let mut labels = Vec::new();
            if let Some(i) = shard {
                labels.push(format!("shard=\"{i}\""));
            }
            if let Some(pairs) = metric.label {
                labels.push(pairs.to_owned());
            }
            let labels = if labels.is_empty() {
                String::new()
            } else {
                format!("{{{}}}", labels.join(","))
            };
            let value = slots[metric.slot].load(Ordering::Relaxed);
            let _ = writeln!(out, "{}{labels} {value}", metric.name);
        }
    }
}

/// Writes the `# HELP` and `# TYPE` lines of a family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A worker-core counter on the endpoint: its name, its help, how to read it.
type EngineCounter = (&'static str, &'static str, fn(&WorkerStats) -> u64);

fn render_worker(out: &mut String, worker: &WorkerObserver) {
    let stats = worker.stats();
    let per_instance =
        |out: &mut String, name: &str, kind: &str, help: &str, value: &dyn Fn(usize) -> u64| {
            family(out, name, kind, help);
            for i in 0..stats.len() {
                let _ = writeln!(out, "{name}{{instance=\"{i}\"}} {}", value(i));
            }
        };
    let links = worker.connected_gateways();
    per_instance(
        out,
        "gatewayworker_worker_gateway_links",
        "gauge",
        "Established links to gateway shards, per instance.",
        &|i| links.get(i).copied().unwrap_or(0) as u64,
    );
    family(
        out,
        "gatewayworker_worker_events_total",
        "counter",
        "Client events run through the business code, per instance (result=failed: the \
         event trapped, ran out of fuel or memory, broke the ABI, or its instance failed to start).",
    );
    for (i, s) in stats.iter().enumerate() {
        let _ = writeln!(
            out,
            "gatewayworker_worker_events_total{{instance=\"{i}\",result=\"ok\"}} {}",
            s.events_ok
        );
        let _ = writeln!(
            out,
            "gatewayworker_worker_events_total{{instance=\"{i}\",result=\"failed\"}} {}",
            s.events_failed
        );
    }
    per_instance(
        out,
        "gatewayworker_wasm_instantiations_total",
        "counter",
        "Wasm instances created (first start, after a failure, after a reload), per instance.",
        &|i| stats[i].instantiations,
    );
    per_instance(
        out,
        "gatewayworker_wasm_reloads_total",
        "counter",
        "Module swaps picked up after a hot reload, per instance.",
        &|i| stats[i].reloads,
    );
    per_instance(
        out,
        "gatewayworker_wasm_rollbacks_total",
        "counter",
        "Reloaded modules that failed to start and were rolled back, per instance.",
        &|i| stats[i].rollbacks,
    );
    let engine = worker.engine_stats();
    let engine_counters: [EngineCounter; 11] = [
        (
            "gatewayworker_worker_frames_dropped_total",
            "Frames to gateways dropped at a full link queue (link-queue bound), per instance.",
            |s| s.frames_dropped,
        ),
        (
            "gatewayworker_worker_bytes_dropped_total",
            "Bytes of those dropped frames, per instance.",
            |s| s.bytes_dropped,
        ),
        (
            "gatewayworker_worker_queries_incomplete_total",
            "Queries answered without every gateway's reply (timeout or closed link), per instance.",
            |s| s.queries_incomplete,
        ),
        (
            "gatewayworker_worker_link_protocol_errors_total",
            "Links to gateways or registers closed for bytes that break the protocol, per instance.",
            |s| s.protocol_errors,
        ),
        (
            "gatewayworker_worker_session_reloads_total",
            "Sessions reloaded from the gateway before an event (a stale session), per instance.",
            |s| s.session_reloads,
        ),
        (
            "gatewayworker_worker_frames_too_large_total",
            "Calls refused because their frame would exceed the package size, per instance.",
            |s| s.frames_too_large,
        ),
        (
            "gatewayworker_worker_calls_refused_busy_total",
            "Queries refused because a link already awaited its maximum of replies, per instance.",
            |s| s.calls_refused_busy,
        ),
        (
            "gatewayworker_worker_reloads_skipped_busy_total",
            "Session reloads skipped for the same reason, per instance.",
            |s| s.reloads_skipped_busy,
        ),
        (
            "gatewayworker_worker_session_writes_link_gone_total",
            "Session write-backs dropped because the event's gateway link closed while it ran, per instance.",
            |s| s.session_writes_link_gone,
        ),
        (
            "gatewayworker_worker_frames_rolled_back_total",
            "Frames of failed events discarded unsent (an event's effects are all-or-nothing), \
             per instance.",
            |s| s.frames_rolled_back,
        ),
        (
            "gatewayworker_worker_bytes_rolled_back_total",
            "Bytes of those discarded frames, per instance.",
            |s| s.bytes_rolled_back,
        ),
    ];
    for (name, help, value) in engine_counters {
        per_instance(out, name, "counter", help, &|i| {
            engine.get(i).map(value).unwrap_or(0)
        });
    }
    let events = worker.events();
    family(
        out,
        "gatewayworker_wasm_failures_total",
        "counter",
        "Failed events by kind (traps and the limits that stopped them), all instances.",
    );
    for (kind, n) in FAILURE_KINDS.iter().zip(&events.failures) {
        let _ = writeln!(
            out,
            "gatewayworker_wasm_failures_total{{kind=\"{}\"}} {n}",
            failure_label(*kind)
        );
    }
    family(
        out,
        "gatewayworker_worker_events_too_large_total",
        "counter",
        "Client events skipped because their frame was over the worker's package size, \
         all instances.",
    );
    let _ = writeln!(
        out,
        "gatewayworker_worker_events_too_large_total {}",
        events.too_large
    );
    let name = "gatewayworker_worker_event_duration_seconds";
    family(
        out,
        name,
        "histogram",
        "Time an event spent in the business code (guest run and the API calls it waited for), \
         all instances.",
    );
    for (bound, count) in EVENT_BUCKETS_US.iter().zip(&events.cumulative) {
        let le = *bound as f64 / 1e6;
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {count}");
    }
    let count = events.cumulative.last().copied().unwrap_or(0);
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum {}", events.duration_sum_us as f64 / 1e6);
    let _ = writeln!(out, "{name}_count {count}");
}

/// A running metrics endpoint.
#[derive(Debug)]
pub struct MetricsServer {
    /// The address it answers on.
    pub addr: SocketAddr,
    server: HttpServer,
}

impl MetricsServer {
    /// Binds `addr` (errors such as "in use" come back here) and serves `source` on a
    /// thread of its own.
    pub fn start(addr: SocketAddr, source: Source) -> Result<MetricsServer, CliError> {
        let limits = Limits {
            head_max: REQUEST_HEAD_MAX,
            timeout: REQUEST_TIMEOUT,
            connections_max: CONNECTIONS_MAX,
        };
        let server = HttpListener::bind(addr, "metrics")?.serve("metrics", limits, source)?;
        Ok(MetricsServer {
            addr: server.addr,
            server,
        })
    }

    /// Stops answering and waits for the thread.
    pub fn shutdown(self) {
        self.server.shutdown();
    }
}

impl Handler for Source {
    fn respond(&self, head: &[u8]) -> Response {
        route(head, self)
    }
}

fn route(head: &[u8], source: &Source) -> Response {
    let (method, path) = request_target(head);
    match (method.as_str(), path.as_str()) {
        ("GET", "/metrics") => Response {
            status: "200 OK",
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: source.render(),
        },
        ("GET", _) => Response::text("404 Not Found", "try /metrics\n"),
        _ => Response::text("405 Method Not Allowed", "only GET\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_render_has_one_line_per_shard_and_kind() {
        let source = Source::gateway(2);
        let Source::Gateway(shards) = &source else {
            unreachable!()
        };
        store(&shards[1], GATEWAY_CLIENTS, 7u64);
        store(&shards[0], GATEWAY_LINK_FRAMES_DROPPED, 3u64);
        store(&shards[0], GATEWAY_LINK_PAUSES_AT_BOUND, 2u64);
        let text = source.render();
        assert!(
            text.contains("gatewayworker_link_pauses_total{shard=\"0\",end=\"bound\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("gatewayworker_link_pauses_total{shard=\"1\",end=\"drained\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("gatewayworker_clients{shard=\"1\"} 7\n"),
            "{text}"
        );
        assert!(
            text.contains("gatewayworker_clients{shard=\"0\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("gatewayworker_messages_dropped_total{shard=\"0\",kind=\"link\"} 3\n")
        );
        assert_eq!(
            text.matches("# TYPE gatewayworker_messages_dropped_total counter")
                .count(),
            1
        );
    }

    #[test]
    fn register_render_has_no_shard_label() {
        let source = Source::register();
        let text = source.render();
        assert!(
            text.contains("gatewayworker_register_gateways 0\n"),
            "{text}"
        );
        assert!(text.contains("role=\"register\""));
        assert!(
            text.contains("gatewayworker_register_unregistered_input_bytes 0\n"),
            "{text}"
        );
    }

    /// Every role's endpoint exposes the process's contained panics, once.
    #[test]
    fn connection_panics_are_exposed_once_per_process() {
        for source in [
            Source::register(),
            Source::gateway(2),
            Source::All(vec![Source::register(), Source::gateway(1)]),
        ] {
            let text = source.render();
            assert_eq!(
                text.matches("\ngatewayworker_connection_panics_total ")
                    .count(),
                1,
                "{text}"
            );
            assert!(text.contains("# TYPE gatewayworker_connection_panics_total counter\n"));
        }
    }

    #[test]
    fn routes() {
        let source = Source::register();
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\n\r\n", &source).status,
            "200 OK"
        );
        assert_eq!(
            route(b"GET /metrics?x=1 HTTP/1.1\r\n\r\n", &source).status,
            "200 OK"
        );
        assert_eq!(
            route(b"GET / HTTP/1.1\r\n\r\n", &source).status,
            "404 Not Found"
        );
        assert_eq!(
            route(b"POST /metrics HTTP/1.1\r\n\r\n", &source).status,
            "405 Method Not Allowed"
        );
        assert_eq!(route(b"", &source).status, "405 Method Not Allowed");
    }
}
