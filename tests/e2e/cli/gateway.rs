//! The `gateway` subcommand: refusing a taken port, signals, the metrics endpoints, TLS.

use super::*;

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
