//! The `gatewayworker` binary as a person runs it: flags, config file, errors, signals,
//! the status query and the metrics endpoint, all over real processes and sockets on
//! 127.0.0.1. Every wait is bounded by `WAIT`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::free_port;

use bytes::BytesMut;
use gatewayworker::protocol::frame::{self, encode_frame, Header, FLAG_BODY_IS_SCALAR};

/// Longest a test waits for any one thing.
const WAIT: Duration = Duration::from_secs(10);

fn bin() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gatewayworker"));
    command.env("RUST_LOG", "info");
    command
}

/// Runs a command that is expected to end on its own, killing it after `WAIT`.
fn run(command: &mut Command) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("command did not end within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn stderr_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A long-running subcommand with its stderr lines delivered through a channel.
struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Server {
    fn start(command: &mut Command) -> Server {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if send.send(line).is_err() {
                    return;
                }
            }
        });
        Server {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a stderr line containing `needle`; panics with what was seen.
    fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("no `{needle}` within {WAIT:?}; stderr: {:#?}", self.seen),
            }
        }
    }

    /// Sends SIGTERM and waits (bounded) for the exit.
    fn terminate(&mut self) -> ExitStatus {
        self.signal("-TERM")
    }

    /// Sends `signal` (as `kill` spells it) and waits (bounded) for the exit.
    fn signal(&mut self, signal: &str) -> ExitStatus {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "no exit within {WAIT:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn start_register(port: u16, extra: &[&str]) -> Server {
    let mut server = Server::start(
        bin()
            .args(["register", "--listen"])
            .arg(format!("text://127.0.0.1:{port}"))
            .args(extra),
    );
    server.wait_for("register ready");
    server
}

fn start_gateway(public: u16, lan: u16, register: u16, extra: &[&str]) -> Server {
    let mut server = Server::start(
        bin()
            .args(["gateway", "--listen"])
            .arg(format!("text://127.0.0.1:{public}"))
            .args(["--start-port", &lan.to_string()])
            .args(["--register", &format!("127.0.0.1:{register}")])
            .args(extra),
    );
    server.wait_for("gateway ready");
    server
}

/// Retries `check` until it returns `Some` or `WAIT` passes.
fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One plain HTTP/1.1 GET; returns the whole response.
fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect_timeout(&addr, WAIT).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn write_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("gatewayworker-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A worker link: WORKER_CONNECT on the gateway's lan port, so clients get a worker.
/// `secret_json` is the key as JSON text (PHP escapes `/` as `\/`).
fn worker_link(lan: u16, secret_json: &str) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", lan)).unwrap();
    let mut header = Header::new(frame::Command::WorkerConnect);
    header.flag = FLAG_BODY_IS_SCALAR;
    let mut out = BytesMut::new();
    let body = format!(r#"{{"worker_key":"cli-test:0","secret_key":"{secret_json}"}}"#);
    encode_frame(&mut out, &header, b"", body.as_bytes());
    stream.write_all(&out).unwrap();
    stream
}

#[test]
fn help_lists_the_subcommands_and_the_precedence() {
    let output = run(bin().arg("--help"));
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for subcommand in ["register", "gateway", "status", "worker", "client", "start"] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(subcommand)),
            "{subcommand} missing from:\n{help}"
        );
    }
    assert!(!help.contains("(coming)"), "{help}");
    assert!(help.contains("Precedence"), "{help}");
}

#[test]
fn a_bad_flag_is_one_line_and_exit_2() {
    let output = run(bin().args(["gateway", "--bogus"]));
    assert_eq!(output.status.code(), Some(2));
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("--bogus"), "{lines:?}");

    let output = run(bin().args(["gateway", "--router", "round-robin"]));
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(stderr_lines(&output).len(), 1);

    let output = run(bin().args(["gateway", "--listen", "http://127.0.0.1:1"]));
    assert_eq!(output.status.code(), Some(1));
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("--listen") && lines[0].contains("`http`"),
        "{lines:?}"
    );
}

#[test]
fn client_without_a_cluster_is_one_line_naming_the_register() {
    let port = free_port();
    let output = run(bin()
        .args(["client", "--register", &format!("127.0.0.1:{port}")])
        .arg("online-count"));
    assert_eq!(output.status.code(), Some(1));
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!(
            "gatewayworker: register 127.0.0.1:{port}: cannot connect"
        )),
        "{lines:?}"
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn port_in_use_is_reported_by_address() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();

    let output = run(bin()
        .args(["gateway", "--start-port", "0", "--listen"])
        .arg(format!("websocket://127.0.0.1:{port}")));
    assert_eq!(output.status.code(), Some(1));
    let lines = stderr_lines(&output);
    assert_eq!(
        lines,
        vec![format!("gatewayworker: address 127.0.0.1:{port} is in use")]
    );

    let output = run(bin()
        .args([
            "gateway",
            "--listen",
            "websocket://127.0.0.1:0",
            "--start-port",
        ])
        .arg(port.to_string()));
    assert_eq!(
        stderr_lines(&output),
        vec![format!("gatewayworker: address 127.0.0.1:{port} is in use")]
    );

    let output = run(bin()
        .args(["register", "--listen"])
        .arg(format!("127.0.0.1:{port}")));
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr_lines(&output),
        vec![format!("gatewayworker: address 127.0.0.1:{port} is in use")]
    );
}

#[test]
fn a_second_gateway_on_the_same_public_port_is_refused() {
    // SO_REUSEPORT would let it bind; the probe must still refuse it.
    let (public, lan, register) = (free_port(), free_port(), free_port());
    let _gateway = start_gateway(public, lan, register, &[]);
    let other_lan = free_port();
    let output = run(bin()
        .args(["gateway", "--listen"])
        .arg(format!("text://127.0.0.1:{public}"))
        .args(["--start-port", &other_lan.to_string()]));
    assert_eq!(
        stderr_lines(&output),
        vec![format!(
            "gatewayworker: address 127.0.0.1:{public} is in use"
        )]
    );
}

#[test]
fn an_unknown_config_key_is_named() {
    let path = write_file("unknown.toml", "[gateway]\ncount = 1\nstart_prot = 3000\n");
    let output = run(bin().arg("--config").arg(&path).arg("gateway"));
    assert_eq!(output.status.code(), Some(1));
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("unknown key `start_prot`"), "{lines:?}");
    assert!(lines[0].contains("line 3"), "{lines:?}");

    let output = run(bin().args(["--config", "/nonexistent/gw.toml", "status"]));
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stderr_lines(&output).len(), 1);
}

#[test]
fn a_flag_wins_over_the_config_file_which_wins_over_the_default() {
    let (file_public, flag_public, file_lan, register) =
        (free_port(), free_port(), free_port(), free_port());
    let path = write_file(
        "precedence.toml",
        &format!(
            "[gateway]\nlisten = \"text://127.0.0.1:{file_public}\"\nstart-port = {file_lan}\n\
             register = [\"127.0.0.1:{register}\"]\n"
        ),
    );
    let mut gateway = Server::start(
        bin()
            .arg("gateway")
            .arg("--config")
            .arg(&path)
            .arg("--listen")
            .arg(format!("text://127.0.0.1:{flag_public}")),
    );
    let ready = gateway.wait_for("gateway ready");
    // The flag's public port, the file's lan port (no flag), the default lan ip.
    assert!(
        ready.contains(&format!("public=127.0.0.1:{flag_public}")),
        "{ready}"
    );
    assert!(ready.contains(&format!("127.0.0.1:{file_lan}")), "{ready}");
    TcpStream::connect(("127.0.0.1", flag_public)).expect("flag's port listens");
    TcpStream::connect(("127.0.0.1", file_lan)).expect("file's lan port listens");
    assert!(TcpStream::connect(("127.0.0.1", file_public)).is_err());
    assert_eq!(gateway.terminate().code(), Some(0));
}

#[test]
fn register_and_gateway_find_each_other_and_status_counts_clients() {
    let (register_port, public, lan) = (free_port(), free_port(), free_port());
    let mut register = start_register(register_port, &["--secret", "k/1"]);
    let mut gateway = start_gateway(public, lan, register_port, &["--secret", "k/1"]);

    // A worker link, then a text client it will receive (without a worker the gateway
    // would drop the client at once).
    let _worker = worker_link(lan, r"k\/1");
    // Until the gateway has read the worker's handshake it destroys new clients; a
    // client still open after a short read timeout has been given to the worker.
    let _client = eventually("client accepted", || {
        let mut client = TcpStream::connect(("127.0.0.1", public)).ok()?;
        client.write_all(b"hello\n").ok()?;
        client
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        match client.read(&mut [0u8; 16]) {
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Some(client)
            }
            _ => None,
        }
    });

    let stdout = eventually("status lists the gateway with its client", || {
        let output = run(bin()
            .args(["status", "--secret", "k/1", "--register"])
            .arg(format!("127.0.0.1:{register_port}")));
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let row = format!("127.0.0.1:{lan}");
        let has_row = stdout
            .lines()
            .any(|l| l.starts_with(&row) && l.split_whitespace().nth(1) == Some("1"));
        (output.status.success() && has_row).then_some(stdout)
    });
    assert!(stdout.contains("1 gateway(s)"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["total", "1"]),
        "{stdout}"
    );

    // A wrong secret: the register closes the connection; one line, exit 1.
    let output = run(bin()
        .args(["status", "--secret", "nope", "--register"])
        .arg(format!("127.0.0.1:{register_port}")));
    assert_eq!(output.status.code(), Some(1));
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("wrong secret"), "{lines:?}");

    assert_eq!(gateway.terminate().code(), Some(0));
    gateway.wait_for("gateway stopped");
    assert_eq!(register.terminate().code(), Some(0));
}

#[test]
fn status_reports_an_unreachable_register_in_one_line() {
    let port = free_port();
    let output = run(bin()
        .args(["status", "--register"])
        .arg(format!("127.0.0.1:{port}")));
    assert_eq!(output.status.code(), Some(1));
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!(
            "gatewayworker: register 127.0.0.1:{port}: cannot connect"
        )),
        "{lines:?}"
    );
}

#[test]
fn sigterm_stops_a_register_with_exit_0() {
    let mut register = start_register(free_port(), &[]);
    assert_eq!(register.terminate().code(), Some(0));
    register.wait_for("register stopped");
}

#[test]
fn sigint_stops_a_gateway_with_exit_0_after_flushing() {
    let (public, lan, register) = (free_port(), free_port(), free_port());
    let mut gateway = start_gateway(public, lan, register, &["--count", "2"]);
    assert_eq!(gateway.signal("-INT").code(), Some(0));
    gateway.wait_for("gateway stopped");
    // The ports are free again.
    TcpListener::bind(("127.0.0.1", public)).expect("public port released");
    TcpListener::bind(("127.0.0.1", lan)).expect("lan port released");
}

#[test]
fn metrics_endpoints_answer_with_the_documented_names() {
    let (register_port, register_metrics) = (free_port(), free_port());
    let (public, lan, gateway_metrics) = (free_port(), free_port(), free_port());
    let metrics_flag = |port: u16| format!("127.0.0.1:{port}");
    let mut register = start_register(
        register_port,
        &["--metrics", &metrics_flag(register_metrics)],
    );
    let mut gateway = start_gateway(
        public,
        lan,
        register_port,
        &["--count", "1", "--metrics", &metrics_flag(gateway_metrics)],
    );

    let gateway_addr: SocketAddr = metrics_flag(gateway_metrics).parse().unwrap();
    let response = http_get(gateway_addr, "/metrics");
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.contains("Content-Type: text/plain; version=0.0.4"));
    for name in [
        "# TYPE gatewayworker_clients gauge",
        "# TYPE gatewayworker_links gauge",
        "# TYPE gatewayworker_messages_dropped_total counter",
        "gatewayworker_messages_dropped_total{shard=\"0\",kind=\"client\"} 0",
        "gatewayworker_messages_dropped_total{shard=\"0\",kind=\"link\"} 0",
        "# TYPE gatewayworker_client_messages_unencodable_total counter",
        "# TYPE gatewayworker_clients_without_worker_total counter",
        "# TYPE gatewayworker_unknown_commands_total counter",
        "gatewayworker_build_info{version=\"0.1.0\",role=\"gateway\"} 1",
    ] {
        assert!(response.contains(name), "{name} missing:\n{response}");
    }
    // The numbers are live: a link shows up within a publish period or two.
    let _worker = worker_link(lan, "");
    eventually("links gauge at 1", || {
        http_get(gateway_addr, "/metrics")
            .contains("gatewayworker_links{shard=\"0\"} 1\n")
            .then_some(())
    });
    assert!(http_get(gateway_addr, "/").starts_with("HTTP/1.1 404"));

    let register_addr: SocketAddr = metrics_flag(register_metrics).parse().unwrap();
    let response = eventually("register counts the gateway", || {
        let response = http_get(register_addr, "/metrics");
        response
            .contains("gatewayworker_register_gateways 1\n")
            .then_some(response)
    });
    for name in [
        "# TYPE gatewayworker_register_connections gauge",
        "# TYPE gatewayworker_register_workers gauge",
        "# TYPE gatewayworker_register_lines_dropped_total counter",
        "# TYPE gatewayworker_register_connections_refused_total counter",
        "# TYPE gatewayworker_register_connections_closed_total counter",
    ] {
        assert!(response.contains(name), "{name} missing:\n{response}");
    }

    assert_eq!(gateway.terminate().code(), Some(0));
    assert_eq!(register.terminate().code(), Some(0));
}

#[test]
fn json_logs_are_one_object_per_line() {
    let mut register = Server::start(
        bin()
            .args(["--log-format", "json", "register", "--listen"])
            .arg(format!("127.0.0.1:{}", free_port())),
    );
    let line = register.wait_for("register ready");
    let value: serde_json::Value = serde_json::from_str(&line).expect(&line);
    assert_eq!(value["level"], "INFO");
    assert_eq!(value["fields"]["message"], "register ready");
    assert_eq!(register.terminate().code(), Some(0));

    // From the config file; a flag still wins over it.
    let path = write_file("logs.toml", "log-format = \"json\"\n");
    let mut register = Server::start(
        bin()
            .arg("--config")
            .arg(&path)
            .args(["register", "--listen"])
            .arg(format!("127.0.0.1:{}", free_port())),
    );
    let line = register.wait_for("register ready");
    assert!(
        serde_json::from_str::<serde_json::Value>(&line).is_ok(),
        "{line}"
    );
    assert_eq!(register.terminate().code(), Some(0));
    let mut register = Server::start(
        bin()
            .arg("--config")
            .arg(&path)
            .args(["register", "--log-format", "text", "--listen"])
            .arg(format!("127.0.0.1:{}", free_port())),
    );
    let line = register.wait_for("register ready");
    assert!(line.contains(" INFO "), "{line}");
    assert!(
        serde_json::from_str::<serde_json::Value>(&line).is_err(),
        "{line}"
    );
    assert_eq!(register.terminate().code(), Some(0));
}

#[test]
fn a_malformed_rust_log_is_one_line() {
    let output =
        run(bin()
            .env("RUST_LOG", "foo=bar=baz")
            .args(["status", "--register", "127.0.0.1:1"]));
    assert_eq!(output.status.code(), Some(1));
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("gatewayworker: RUST_LOG: `foo=bar=baz`"),
        "{lines:?}"
    );
}

#[test]
fn tls_flags_serve_the_public_port_over_tls() {
    use tokio_rustls::rustls::{self, pki_types::ServerName, ClientConfig, RootCertStore};

    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = write_file("cert.pem", &certified.cert.pem());
    let key = write_file("key.pem", &certified.signing_key.serialize_pem());
    let (public, lan, register) = (free_port(), free_port(), free_port());
    let mut gateway = Server::start(
        bin()
            .args(["gateway", "--listen"])
            .arg(format!("websocket://127.0.0.1:{public}"))
            .args(["--start-port", &lan.to_string()])
            .args(["--register", &format!("127.0.0.1:{register}")])
            .arg("--tls-cert")
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key),
    );
    let ready = gateway.wait_for("gateway ready");
    assert!(ready.contains("tls=true"), "{ready}");

    let mut roots = RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", public))
            .await
            .unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        tokio::time::timeout(WAIT, connector.connect(name, tcp))
            .await
            .expect("TLS handshake within WAIT")
            .expect("TLS handshake with the flag's certificate");
    });
    assert_eq!(gateway.terminate().code(), Some(0));
}

#[test]
fn tls_flag_errors_name_the_flag() {
    let output = run(bin().args(["gateway", "--tls-cert", "/nonexistent/cert.pem"]));
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr_lines(&output),
        vec!["gatewayworker: --tls-cert: needs --tls-key too".to_owned()]
    );
    let output = run(bin().args([
        "gateway",
        "--tls-cert",
        "/nonexistent/cert.pem",
        "--tls-key",
        "/nonexistent/key.pem",
    ]));
    assert_eq!(output.status.code(), Some(1));
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("gatewayworker: --tls-cert/--tls-key: "),
        "{lines:?}"
    );
    assert!(lines[0].contains("/nonexistent/cert.pem"), "{lines:?}");
}

#[test]
fn status_marks_a_gateway_that_does_not_answer() {
    let register_port = free_port();
    let mut register = start_register(register_port, &[]);
    // Announce a gateway nobody listens for, the way a gateway announces itself.
    let dead = free_port();
    let mut announcer = TcpStream::connect(("127.0.0.1", register_port)).unwrap();
    writeln!(
        announcer,
        "{{\"event\":\"gateway_connect\", \"address\":\"127.0.0.1:{dead}\", \"secret_key\":\"\"}}"
    )
    .unwrap();
    let output = eventually("status sees the announced gateway", || {
        let output = run(bin()
            .args(["status", "--timeout", "2", "--register"])
            .arg(format!("127.0.0.1:{register_port}")));
        String::from_utf8_lossy(&output.stdout)
            .contains("1 gateway(s)")
            .then_some(output)
    });
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let row = stdout
        .lines()
        .find(|l| l.starts_with(&format!("127.0.0.1:{dead}")))
        .unwrap_or_else(|| panic!("no row for the dead gateway:\n{stdout}"));
    assert!(row.contains("? (cannot connect"), "{row}");
    assert_eq!(
        stderr_lines(&output),
        vec!["gatewayworker: 1 gateway(s) did not answer".to_owned()]
    );
    drop(announcer);
    assert_eq!(register.terminate().code(), Some(0));
}

/// A text-protocol chat client: one JSON line per message.
struct ChatClient {
    reader: std::io::BufReader<TcpStream>,
}

impl ChatClient {
    /// Connects and logs in; `None` while no worker is linked yet (the gateway then drops
    /// the client at once, spec 5.2).
    fn login(port: u16, room: &str, name: &str) -> Option<ChatClient> {
        let stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut client = ChatClient {
            reader: std::io::BufReader::new(stream),
        };
        client.send(&format!(
            r#"{{"type":"login","room":"{room}","name":"{name}"}}"#
        ));
        let welcome = client.next_line()?;
        assert!(welcome.contains(r#""type":"welcome""#), "{welcome}");
        Some(client)
    }

    fn send(&mut self, line: &str) {
        let _ = self
            .reader
            .get_mut()
            .write_all(format!("{line}\n").as_bytes());
    }

    fn next_line(&mut self) -> Option<String> {
        use std::io::BufRead;
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(n) if n > 0 => Some(line.trim_end().to_owned()),
            _ => None,
        }
    }
}

/// `start` runs a whole system in one process: two chat clients on the text protocol log
/// into a room through the real register, gateway and wasm business workers (the bundled
/// chat.wasm), hear each other, and SIGTERM stops it all with exit 0.
#[test]
fn start_runs_register_gateway_and_the_chat_worker_in_one_process() {
    let (register, public, lan) = (free_port(), free_port(), free_port());
    let wasm = concat!(env!("CARGO_MANIFEST_DIR"), "/wasm-workers/dist/chat.wasm");
    let mut server = Server::start(
        bin()
            .args(["start", "--wasm", wasm])
            .args(["--register", &format!("127.0.0.1:{register}")])
            .args(["--listen", &format!("text://127.0.0.1:{public}")])
            .args(["--start-port", &lan.to_string()]),
    );
    server.wait_for("gatewayworker started");
    let mut alice = eventually("a worker linked to the gateway", || {
        ChatClient::login(public, "r1", "alice")
    });
    let mut bob = ChatClient::login(public, "r1", "bob").expect("bob logs in");
    let join = alice.next_line().expect("alice hears bob join");
    assert!(
        join.contains(r#""type":"join""#) && join.contains("bob"),
        "{join}"
    );
    bob.send(r#"{"type":"say","text":"hi alice"}"#);
    for who in [&mut alice, &mut bob] {
        let said = who.next_line().expect("the room hears bob");
        assert!(
            said.contains(r#""type":"say""#) && said.contains("hi alice"),
            "{said}"
        );
    }
    assert_eq!(server.terminate().code(), Some(0));
}

/// A text client of the gateway's public port that reads lines.
struct LineClient {
    reader: BufReader<TcpStream>,
}

impl LineClient {
    fn next_line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        line.trim_end().to_owned()
    }
}

/// `client` runs one Gateway API call against a real register and gateway: every call
/// prints one line of JSON (a send what the original returns), errors are one line with
/// exit 1 (2 for a bad argument).
#[test]
fn client_subcommand_calls_the_gateway_api() {
    let (register_port, public, lan) = (free_port(), free_port(), free_port());
    let _register = start_register(register_port, &["--secret", "k"]);
    let _gateway = start_gateway(public, lan, register_port, &["--secret", "k"]);
    let _worker = worker_link(lan, "k");
    let register = format!("127.0.0.1:{register_port}");
    let client = |args: &[&str]| {
        run(bin()
            .args(["client", "--secret", "k", "--register", &register])
            .args(args))
    };
    let stdout = |output: &Output| String::from_utf8_lossy(&output.stdout).into_owned();

    let mut text = eventually("a client kept by the gateway", || {
        let mut stream = TcpStream::connect(("127.0.0.1", public)).ok()?;
        stream.write_all(b"hello\n").ok()?;
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        match stream.read(&mut [0u8; 16]) {
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                stream.set_read_timeout(Some(WAIT)).unwrap();
                Some(LineClient {
                    reader: BufReader::new(stream),
                })
            }
            _ => None,
        }
    });
    let count = eventually("the register lists the gateway", || {
        let output = client(&["online-count"]);
        output.status.success().then(|| stdout(&output))
    });
    assert_eq!(count, "1\n");
    let output = client(&["get-all-client-count"]);
    assert_eq!(stdout(&output), "1\n");

    let list = stdout(&client(&["get-all-client-id-list"]));
    let id = list[2..22].to_owned();
    assert_eq!(list, format!("{{\"{id}\":\"{id}\"}}\n"));

    let output = client(&["send-to-client", &id, "hi you"]);
    assert!(
        output.status.success() && output.stdout == b"true\n",
        "{output:?}"
    );
    assert_eq!(text.next_line(), "hi you");

    let output = client(&["join-group", &id, "room1"]);
    assert!(output.status.success() && output.stdout == b"null\n");
    let groups = eventually("joined", || {
        let out = stdout(&client(&["get-all-group-count"]));
        (out != "{}\n").then_some(out)
    });
    assert_eq!(groups, "{\"room1\":1}\n");
    assert!(client(&["send-to-group", "room1", "hi room"])
        .status
        .success());
    assert_eq!(text.next_line(), "hi room");
    assert!(client(&["send-to-all", "hi all"]).status.success());
    assert_eq!(text.next_line(), "hi all");

    assert!(client(&["bind-uid", &id, "u/1"]).status.success());
    let ids = eventually("bound", || {
        let out = stdout(&client(&["get-client-id-by-uid", "u/1"]));
        (out != "[]\n").then_some(out)
    });
    assert_eq!(ids, format!("[\"{id}\"]\n"));
    assert!(client(&["send-to-uid", "u/1", "hi uid"]).status.success());
    assert_eq!(text.next_line(), "hi uid");
    assert_eq!(stdout(&client(&["is-uid-online", "u/1"])), "1\n");
    assert_eq!(stdout(&client(&["get-uid-by-client-id", &id])), "\"u/1\"\n");

    assert!(client(&["set-session", &id, r#"{"name":"ann","n":1}"#])
        .status
        .success());
    let session = eventually("session set", || {
        let out = stdout(&client(&["get-session", &id]));
        (out != "{}\n").then_some(out)
    });
    assert_eq!(session, "{\"name\":\"ann\",\"n\":1}\n");
    assert!(client(&["update-session", &id, r#"{"n":2}"#])
        .status
        .success());
    let session = eventually("session updated", || {
        let out = stdout(&client(&["get-session", &id]));
        out.contains("2").then_some(out)
    });
    assert_eq!(session, "{\"name\":\"ann\",\"n\":2}\n");

    // A fixed gateway list instead of the register.
    let output = run(bin()
        .args([
            "client",
            "--secret",
            "k",
            "--gateway",
            &format!("127.0.0.1:{lan}"),
        ])
        .args(["batch-get-client-id-count-by-group", "room1", "none"]));
    assert_eq!(stdout(&output), "{\"room1\":1,\"none\":0}\n");

    // Bad input: a session that is not JSON (usage, exit 2), a malformed client id.
    let output = client(&["set-session", &id, "{nope"]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(stderr_lines(&output).len(), 1);
    let output = client(&["is-online", "abc"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr_lines(&output),
        ["gatewayworker: malformed client id"]
    );

    // A wrong secret: one line naming the register, exit 1.
    let output = run(bin()
        .args(["client", "--secret", "nope", "--register", &register])
        .arg("online-count"));
    assert_eq!(output.status.code(), Some(1));
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains(&register) && lines[0].contains("wrong secret"),
        "{lines:?}"
    );

    // A wrong secret straight to the gateway: it closes the query's connection.
    let output = run(bin()
        .args([
            "client",
            "--secret",
            "nope",
            "--gateway",
            &format!("127.0.0.1:{lan}"),
        ])
        .arg("get-all-uid-count"));
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr_lines(&output),
        [format!(
            "gatewayworker: gateway 127.0.0.1:{lan}: closed the connection before answering (wrong secret key?)"
        )]
    );

    // The [client] table of a config file; the flag still wins over it.
    let config = write_file(
        "client.toml",
        &format!("[client]\nregister = [\"{register}\"]\nsecret = \"nope\"\ntimeout = 2\n"),
    );
    let output = run(bin()
        .args([
            "--config",
            config.to_str().unwrap(),
            "client",
            "--secret",
            "k",
        ])
        .arg("online-count"));
    assert_eq!(stdout(&output), "1\n", "{output:?}");

    assert!(client(&["close-client", &id, "bye"]).status.success());
    assert_eq!(text.next_line(), "bye");
    eventually("client gone", || {
        (stdout(&client(&["is-online", &id])) == "0\n").then_some(())
    });
}

/// `start --metrics`: one endpoint with the three roles, the worker's event counters and
/// duration histogram included, all moving with real traffic.
#[test]
fn start_metrics_cover_register_gateway_and_worker_events() {
    let (register, public, lan, metrics) = (free_port(), free_port(), free_port(), free_port());
    let wasm = concat!(env!("CARGO_MANIFEST_DIR"), "/wasm-workers/dist/chat.wasm");
    let metrics_addr: SocketAddr = format!("127.0.0.1:{metrics}").parse().unwrap();
    let mut server = Server::start(
        bin()
            .args(["start", "--wasm", wasm])
            .args(["--register", &format!("127.0.0.1:{register}")])
            .args(["--listen", &format!("text://127.0.0.1:{public}")])
            .args(["--start-port", &lan.to_string()])
            .args(["--metrics", &metrics_addr.to_string()]),
    );
    server.wait_for("gatewayworker started");
    let mut alice = eventually("a worker linked to the gateway", || {
        ChatClient::login(public, "r1", "alice")
    });
    alice.send(r#"{"type":"say","text":"counted"}"#);
    let said = alice.next_line().expect("alice hears herself");
    assert!(said.contains("counted"), "{said}");

    // Counters are published once a second; wait for the gateway's to include the message.
    let response = eventually("gateway counters published", || {
        let response = http_get(metrics_addr, "/metrics");
        response
            .contains("gatewayworker_client_messages_total{shard=\"0\",direction=\"in\"} 2\n")
            .then_some(response)
    });
    for name in [
        "gatewayworker_build_info{version=\"0.1.0\",role=\"start\"} 1",
        "# TYPE gatewayworker_register_gateways gauge",
        "# TYPE gatewayworker_clients gauge",
        "# TYPE gatewayworker_bytes_total counter",
        "# TYPE gatewayworker_queued_bytes gauge",
        "gatewayworker_worker_gateway_links{instance=\"0\"} 1",
        "gatewayworker_worker_gateway_links{instance=\"1\"} 1",
        "# TYPE gatewayworker_worker_events_total counter",
        "# TYPE gatewayworker_wasm_instantiations_total counter",
        "# TYPE gatewayworker_wasm_reloads_total counter",
        "# TYPE gatewayworker_wasm_rollbacks_total counter",
        "gatewayworker_wasm_failures_total{kind=\"trap\"} 0",
        "gatewayworker_wasm_failures_total{kind=\"out_of_fuel\"} 0",
        "# TYPE gatewayworker_worker_event_duration_seconds histogram",
    ] {
        assert!(response.contains(name), "{name} missing:\n{response}");
    }
    // connect + login + say, on whichever instance: at least three events, all ok, all
    // in the histogram.
    let value = |prefix: &str| -> u64 {
        response
            .lines()
            .filter(|l| l.starts_with(prefix))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum()
    };
    let ok = value("gatewayworker_worker_events_total{instance=\"0\",result=\"ok\"}")
        + value("gatewayworker_worker_events_total{instance=\"1\",result=\"ok\"}");
    assert!(ok >= 3, "events ok {ok}:\n{response}");
    assert_eq!(
        value("gatewayworker_worker_event_duration_seconds_count"),
        ok,
        "every event timed"
    );
    assert_eq!(
        value("gatewayworker_worker_event_duration_seconds_bucket{le=\"+Inf\"}"),
        ok
    );
    assert_eq!(server.terminate().code(), Some(0));
}

/// `start` with a websocket gateway and the demo page on free ports; returns the server
/// (once started), the gateway's public port and the demo page's address.
fn start_with_demo_page() -> (Server, u16, SocketAddr) {
    let (register, public, lan, demo) = (free_port(), free_port(), free_port(), free_port());
    let wasm = concat!(env!("CARGO_MANIFEST_DIR"), "/wasm-workers/dist/chat.wasm");
    let mut server = Server::start(
        bin()
            .args(["start", "--wasm", wasm])
            .args(["--register", &format!("127.0.0.1:{register}")])
            .args(["--listen", &format!("websocket://127.0.0.1:{public}")])
            .args(["--start-port", &lan.to_string()])
            .args(["--demo-listen", &format!("127.0.0.1:{demo}")]),
    );
    let started = server.wait_for("gatewayworker started");
    assert!(
        started.contains(&format!("http://127.0.0.1:{demo}/")),
        "{started}"
    );
    (server, public, SocketAddr::from(([127, 0, 0, 1], demo)))
}

/// Sends `request` as is and returns the whole response.
fn http_raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect_timeout(&addr, WAIT).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(request).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// The demo page: `GET /` is the chat page with the gateway's websocket URL built from the
/// request's Host name and the gateway's port; any other path is a 404; every answer
/// closes the connection; the gateway's own port does not serve the page.
#[test]
fn start_serves_the_demo_page_pointing_at_the_gateway_websocket() {
    let (mut server, public, demo) = start_with_demo_page();

    let page = http_get(demo, "/");
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    let (head, body) = page.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("\r\nContent-Type: text/html; charset=utf-8\r\n"));
    assert!(head.contains("\r\nConnection: close"));
    assert!(head.contains(&format!("\r\nContent-Length: {}", body.len())));
    assert!(body.contains("<title>gatewayworker chat</title>"));
    let url = format!(r#"<meta name="gw-websocket" content="ws://127.0.0.1:{public}/">"#);
    assert!(body.contains(&url), "no {url} in the page");

    // Reached under another name (from another machine): the page follows that name.
    let remote = http_raw(
        demo,
        b"GET /?room=lobby HTTP/1.1\r\nHost: chat.example:55151\r\n\r\n",
    );
    assert!(remote.starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(remote.contains(&format!(r#"content="ws://chat.example:{public}/""#)));
    // A Host header that would break out of the attribute is not used.
    let hostile = http_raw(
        demo,
        b"GET / HTTP/1.1\r\nHost: \"><script>x</script>\r\n\r\n",
    );
    assert!(hostile.contains(&url), "{hostile}");
    assert!(!hostile.contains("<script>x"));

    for path in ["/favicon.ico", "/chat.html", "/../Cargo.toml"] {
        let other = http_get(demo, path);
        assert!(
            other.starts_with("HTTP/1.1 404 Not Found\r\n"),
            "{path}: {other}"
        );
    }
    let post = http_raw(demo, b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert!(post.starts_with("HTTP/1.1 405 "), "{post}");

    let gateway = http_get(SocketAddr::from(([127, 0, 0, 1], public)), "/");
    assert!(!gateway.contains("gatewayworker chat"), "{gateway}");
    assert_eq!(server.terminate().code(), Some(0));
}

/// The request head is bounded (8 KiB, `demo::REQUEST_HEAD_MAX`): a head of exactly that
/// size is served, one that has not ended by then is answered 431 and closed.
#[test]
fn the_demo_page_rejects_an_oversized_request_head() {
    const REQUEST_HEAD_MAX: usize = 8 * 1024;
    let (mut server, _public, demo) = start_with_demo_page();
    let head_of = |len: usize, end: &str| {
        let start = "GET / HTTP/1.1\r\nX-Pad: ";
        let pad = "a".repeat(len - start.len() - end.len());
        format!("{start}{pad}{end}").into_bytes()
    };

    let at_bound = head_of(REQUEST_HEAD_MAX, "\r\n\r\n");
    assert_eq!(at_bound.len(), REQUEST_HEAD_MAX);
    let served = http_raw(demo, &at_bound);
    assert!(served.starts_with("HTTP/1.1 200 OK\r\n"), "{served}");

    let unended = head_of(REQUEST_HEAD_MAX, "");
    let refused = http_raw(demo, &unended);
    assert!(
        refused.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{refused}"
    );
    assert!(refused.contains("\r\nConnection: close"));
    assert_eq!(server.terminate().code(), Some(0));
}

/// `--no-demo` serves no page; a demo port in use, or `--demo-listen` with a gateway that
/// does not speak websocket, is refused in one line naming the flag.
#[test]
fn the_demo_page_can_be_turned_off_and_needs_a_websocket_gateway() {
    let (register, public, lan, demo) = (free_port(), free_port(), free_port(), free_port());
    let wasm = concat!(env!("CARGO_MANIFEST_DIR"), "/wasm-workers/dist/chat.wasm");
    let start = |listen: String, demo_flags: &[String]| {
        let mut command = bin();
        command
            .args(["start", "--wasm", wasm])
            .args(["--register", &format!("127.0.0.1:{register}")])
            .args(["--listen", &listen])
            .args(["--start-port", &lan.to_string()])
            .args(demo_flags);
        command
    };

    let mut off = Server::start(&mut start(
        format!("websocket://127.0.0.1:{public}"),
        &["--no-demo".to_owned()],
    ));
    let started = off.wait_for("gatewayworker started");
    assert!(started.contains("demo=off"), "{started}");
    assert!(TcpStream::connect(("127.0.0.1", demo)).is_err());
    assert_eq!(off.terminate().code(), Some(0));

    let taken = TcpListener::bind(("127.0.0.1", demo)).unwrap();
    let in_use = run(&mut start(
        format!("websocket://127.0.0.1:{public}"),
        &["--demo-listen".to_owned(), format!("127.0.0.1:{demo}")],
    ));
    drop(taken);
    assert_eq!(in_use.status.code(), Some(1));
    let lines = stderr_lines(&in_use);
    assert_eq!(
        lines.last().unwrap(),
        &format!(
            "gatewayworker: --demo-listen: address 127.0.0.1:{demo} is in use \
             (another --demo-listen ADDRESS, or --no-demo)"
        ),
        "{lines:?}"
    );

    let refused = run(&mut start(
        format!("text://127.0.0.1:{public}"),
        &["--demo-listen".to_owned(), format!("127.0.0.1:{demo}")],
    ));
    assert_eq!(refused.status.code(), Some(1));
    let lines = stderr_lines(&refused);
    let last = lines.last().unwrap();
    assert!(
        last.starts_with("gatewayworker: --demo-listen: the demo page needs a websocket://"),
        "{lines:?}"
    );
}

/// Silent connections are bounded twice: each is closed unanswered after the 5 s request
/// timeout (`demo::REQUEST_TIMEOUT`), and while 64 of them (`demo::CONNECTIONS_MAX`) are
/// open a further connection is closed at once; once they are gone the page is served again.
#[test]
fn the_demo_page_closes_silent_connections_and_bounds_them() {
    const CONNECTIONS_MAX: usize = 64;
    const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
    let (mut server, _public, demo) = start_with_demo_page();
    let opened = Instant::now();
    let mut silent: Vec<TcpStream> = (0..CONNECTIONS_MAX)
        .map(|_| TcpStream::connect_timeout(&demo, WAIT).unwrap())
        .collect();
    // Connections are accepted in order, so these all hold a slot before the next one.
    std::thread::sleep(Duration::from_millis(300));

    let mut over = TcpStream::connect_timeout(&demo, WAIT).unwrap();
    over.set_read_timeout(Some(WAIT)).unwrap();
    let _ = over.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut answer = Vec::new();
    let _ = over.read_to_end(&mut answer); // EOF or reset: either way, no answer
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    assert!(opened.elapsed() < REQUEST_TIMEOUT, "refused at once");

    for stream in &mut silent {
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    }
    let closed_after = opened.elapsed();
    assert!(
        closed_after >= REQUEST_TIMEOUT - Duration::from_millis(500) && closed_after < WAIT,
        "silent connections closed after {closed_after:?}"
    );
    eventually("the page served again", || {
        http_get(demo, "/")
            .starts_with("HTTP/1.1 200 OK\r\n")
            .then_some(())
    });
    assert_eq!(server.terminate().code(), Some(0));
}
