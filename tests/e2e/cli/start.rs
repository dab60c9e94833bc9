//! The `start` subcommand: register, gateway and the chat worker in one process, its metrics and the demo page.

use super::*;

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
        "gatewayworker_worker_frames_dropped_total{instance=\"0\"} 0",
        "gatewayworker_worker_queries_incomplete_total{instance=\"1\"} 0",
        "# TYPE gatewayworker_worker_link_protocol_errors_total counter",
        "# TYPE gatewayworker_worker_session_reloads_total counter",
        "# TYPE gatewayworker_worker_calls_refused_busy_total counter",
        "# TYPE gatewayworker_worker_frames_rolled_back_total counter",
        "gatewayworker_worker_bytes_rolled_back_total{instance=\"1\"} 0",
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

    // The gateway refuses a request that is no websocket upgrade and closes; the close may
    // come as a reset (it did not read the whole request), so read what arrives until then.
    let mut stream = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], public))).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{public}\r\n\r\n").as_bytes())
        .unwrap();
    let mut gateway = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = stream.read(&mut buf) {
        gateway.extend_from_slice(&buf[..n]);
    }
    let gateway = String::from_utf8_lossy(&gateway);
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
