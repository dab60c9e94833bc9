//! The guest limits and the worker's frame size as an operator sets them: `worker` and
//! `start` flags, their keys in the config file, what `--help` says, and what each limit
//! does to real events through the real binary.

use super::*;

const FLAGS: [(&str, &str); 6] = [
    ("--fuel-per-event", "[default: 100000000]"),
    ("--fuel-per-input-byte", "[default: 500"),
    ("--memory-max-bytes", "[default: 134217728"),
    ("--event-time-max-ms", "[default: 5000]"),
    ("--pooling", "[default: off]"),
    ("--package-size-max", "[default: 10485760]"),
];

fn dist(name: &str) -> String {
    format!(
        "{}/wasm-workers/dist/{name}.wasm",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn worker_and_start_help_show_every_limit_with_its_default() {
    for subcommand in ["worker", "start"] {
        let output = run(bin().args([subcommand, "--help"]));
        assert!(output.status.success());
        // Help text wraps: join the lines to find each flag's default after its name.
        let help = String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        for (flag, default) in FLAGS {
            let at = help
                .find(&format!("{flag} <"))
                .unwrap_or_else(|| panic!("{subcommand}: {flag} missing:\n{help}"));
            let rest = &help[at..];
            let end = rest[2..].find(" --").map_or(rest.len(), |i| i + 2);
            assert!(
                rest[..end].contains(default),
                "{subcommand} {flag}: {default} missing from {}",
                &rest[..end]
            );
        }
    }
}

/// The startup line of `worker` names every limit in effect: from flags, from the
/// `[worker]` table, flags winning.
#[test]
fn every_limit_is_a_worker_flag_and_a_worker_key() {
    let register = free_port().to_string();
    let register = format!("127.0.0.1:{register}");
    let flags = [
        "--fuel-per-event",
        "7000000",
        "--fuel-per-input-byte",
        "3",
        "--memory-max-bytes",
        "33554432",
        "--event-time-max-ms",
        "250",
        "--pooling",
        "on",
        "--package-size-max",
        "20971520",
    ];
    let expected = "fuel-per-event=7000000 fuel-per-input-byte=3 memory-max-bytes=33554432 \
                    event-time-max-ms=250 pooling=on package-size-max=20971520";
    let mut server = Server::start(
        bin()
            .args(["worker", "--wasm", &dist("echo"), "--register", &register])
            .args(flags),
    );
    let line = server.wait_for("business worker ready");
    assert!(line.contains(expected), "{line}");
    assert_eq!(server.terminate().code(), Some(0));

    let config = write_file(
        "limits-worker.toml",
        "[worker]\nfuel-per-event = 7000000\nfuel-per-input-byte = 3\n\
         memory-max-bytes = 33554432\nevent-time-max-ms = 250\npooling = \"on\"\n\
         package-size-max = 20971520\n",
    );
    let mut server = Server::start(
        bin()
            .args(["worker", "--wasm", &dist("echo"), "--register", &register])
            .arg("--config")
            .arg(&config),
    );
    let line = server.wait_for("business worker ready");
    assert!(line.contains(expected), "{line}");
    assert_eq!(server.terminate().code(), Some(0));

    // A flag wins over the file, key by key; 0 turns the time limit off.
    let mut server = Server::start(
        bin()
            .args(["worker", "--wasm", &dist("echo"), "--register", &register])
            .args(["--fuel-per-event", "9", "--event-time-max-ms", "0"])
            .arg("--config")
            .arg(&config),
    );
    let line = server.wait_for("business worker ready");
    assert!(
        line.contains(
            "fuel-per-event=9 fuel-per-input-byte=3 memory-max-bytes=33554432 \
             event-time-max-ms=0 pooling=on package-size-max=20971520"
        ),
        "{line}"
    );
    assert_eq!(server.terminate().code(), Some(0));

    // The defaults, named the same way.
    let mut server =
        Server::start(bin().args(["worker", "--wasm", &dist("echo"), "--register", &register]));
    let line = server.wait_for("business worker ready");
    assert!(
        line.contains(
            "fuel-per-event=100000000 fuel-per-input-byte=500 memory-max-bytes=134217728 \
             event-time-max-ms=5000 pooling=off package-size-max=10485760"
        ),
        "{line}"
    );
    assert_eq!(server.terminate().code(), Some(0));
}

#[test]
fn bad_limit_values_name_their_flag() {
    for (args, message) in [
        (
            ["--fuel-per-event", "0"],
            "gatewayworker: --fuel-per-event: must be at least 1",
        ),
        (
            ["--memory-max-bytes", "100"],
            "gatewayworker: --memory-max-bytes: must be at least 65536",
        ),
        (
            ["--package-size-max", "27"],
            "gatewayworker: --package-size-max: must be at least 28",
        ),
    ] {
        let output = run(bin().args(["worker", "--wasm", &dist("echo")]).args(args));
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let lines = stderr_lines(&output);
        assert!(lines.iter().any(|l| l == message), "{args:?}: {lines:?}");
    }
    let output = run(bin().args(["worker", "--wasm", &dist("echo"), "--pooling", "maybe"]));
    assert_eq!(output.status.code(), Some(2));
}

/// A line client of a `start --listen text://` system.
struct Line {
    reader: BufReader<TcpStream>,
}

impl Line {
    fn connect(port: u16) -> Option<Line> {
        let stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        Some(Line {
            reader: BufReader::new(stream),
        })
    }

    fn send(&mut self, line: &str) {
        let _ = self
            .reader
            .get_mut()
            .write_all(format!("{line}\n").as_bytes());
    }

    fn next(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(n) if n > 0 => Some(line.trim_end().to_owned()),
            _ => None,
        }
    }
}

/// `start` with `wasm` and `extra` flags on free ports, text protocol, no demo page;
/// returns the server, the public port and the startup line once a client gets through to
/// a worker (the guest's answer to `probe` is `answer`).
fn start_system(wasm: &str, extra: &[&str], probe: &str, answer: &str) -> (Server, u16, String) {
    let (register, public, lan) = (free_port(), free_port(), free_port());
    let mut server = Server::start(
        bin()
            .args([
                "start",
                "--wasm",
                &dist(wasm),
                "--no-demo",
                "--worker-count",
                "1",
            ])
            .args(["--register", &format!("127.0.0.1:{register}")])
            .args(["--listen", &format!("text://127.0.0.1:{public}")])
            .args(["--start-port", &lan.to_string()])
            .args(extra),
    );
    let started = server.wait_for("gatewayworker started");
    eventually("a worker answers", || {
        let mut client = Line::connect(public)?;
        client.send(probe);
        (client.next()? == answer).then_some(())
    });
    (server, public, started)
}

/// `start`'s own flags and `[start]` keys reach the worker: a time limit from the file
/// stops `spin.wasm`'s endless loop by the clock (Deadline) where the default would stop
/// it by fuel, because the file also raised the fuel; and the startup line says so.
#[test]
fn start_takes_the_limits_from_its_table_and_they_bind() {
    let config = write_file(
        "limits-start.toml",
        "[start]\nfuel-per-event = 1000000000000\nevent-time-max-ms = 300\n\
         fuel-per-input-byte = 0\nmemory-max-bytes = 33554432\npooling = \"on\"\n\
         package-size-max = 1048576\n",
    );
    let config = config.to_string_lossy().into_owned();
    let (mut server, public, started) = start_system("spin", &["--config", &config], "hi", "hi#1");
    assert!(
        started.contains(
            "fuel-per-event=1000000000000 fuel-per-input-byte=0 memory-max-bytes=33554432 \
             event-time-max-ms=300 pooling=on package-size-max=1048576"
        ),
        "{started}"
    );
    let mut client = Line::connect(public).unwrap();
    client.send("spin");
    let failed = server.wait_for("wasm event failed");
    assert!(failed.contains("kind=Deadline"), "{failed}");
    // The instance is recreated: the next message is its first.
    client.send("again");
    assert_eq!(client.next().as_deref(), Some("again#1"));
    assert_eq!(server.terminate().code(), Some(0));
}

/// `start` flags: the fuel budget of a message grows with its size only by
/// `--fuel-per-input-byte`: the chat's `say` of 20 KB (about 150 fuel per byte) fails on
/// a flat 1 M budget and passes with 100 fuel per byte on top.
#[test]
fn start_fuel_flags_size_the_budget_by_the_message() {
    let login = r#"{"type":"login","room":"r","name":"ann"}"#;
    let say = format!(r#"{{"type":"say","text":"{}"}}"#, "x".repeat(20_000));
    for (per_byte, answered) in [("0", false), ("100", true)] {
        let (register, public, lan) = (free_port(), free_port(), free_port());
        let mut server = Server::start(
            bin()
                .args([
                    "start",
                    "--wasm",
                    &dist("chat"),
                    "--no-demo",
                    "--worker-count",
                    "1",
                ])
                .args(["--register", &format!("127.0.0.1:{register}")])
                .args(["--listen", &format!("text://127.0.0.1:{public}")])
                .args(["--start-port", &lan.to_string()])
                .args([
                    "--fuel-per-event",
                    "1000000",
                    "--fuel-per-input-byte",
                    per_byte,
                ]),
        );
        let line = server.wait_for("gatewayworker started");
        assert!(
            line.contains(&format!(
                "fuel-per-event=1000000 fuel-per-input-byte={per_byte} "
            )),
            "{line}"
        );
        let mut client = eventually("a worker answers", || {
            let mut client = Line::connect(public)?;
            client.send(login);
            client.next()?.contains("welcome").then_some(client)
        });
        client.send(&say);
        if answered {
            let said = client.next().expect("the say comes back");
            assert!(said.contains(r#""type":"say""#), "{said}");
        } else {
            let failed = server.wait_for("wasm event failed");
            assert!(failed.contains("kind=OutOfFuel"), "{failed}");
        }
        assert_eq!(server.terminate().code(), Some(0));
    }
}

/// `--memory-max-bytes` below what the module starts with is refused at load, naming the
/// limit; `--pooling on` serves events.
#[test]
fn memory_and_pooling_flags_bind() {
    let (register, public, lan) = (free_port(), free_port(), free_port());
    let output = run(bin()
        .args(["start", "--wasm", &dist("chat"), "--no-demo"])
        .args(["--register", &format!("127.0.0.1:{register}")])
        .args(["--listen", &format!("text://127.0.0.1:{public}")])
        .args(["--start-port", &lan.to_string()])
        .args(["--memory-max-bytes", "65536"]));
    assert_eq!(output.status.code(), Some(1));
    let text = stderr_lines(&output).join("\n");
    assert!(
        text.contains("above the worker's memory limit of 64 KiB"),
        "{text}"
    );

    let (mut server, _, started) = start_system("echo", &["--pooling", "on"], "pooled", "pooled");
    assert!(started.contains("pooling=on"), "{started}");
    assert_eq!(server.terminate().code(), Some(0));
}

/// The same `--package-size-max` for the gateway and the worker of `start`: a 12 MiB
/// message (over the 10 MiB default) goes to the guest and its reply comes back whole; the
/// worker's link queue holds a reply of that size.
#[test]
fn start_package_size_max_carries_a_12_mib_message_both_ways() {
    let (mut server, public, started) = start_system(
        "echo",
        &["--package-size-max", "20971520"],
        "small",
        "small",
    );
    assert!(started.contains("package-size-max=20971520"), "{started}");
    let mut client = Line::connect(public).unwrap();
    client
        .reader
        .get_ref()
        .set_read_timeout(Some(WAIT))
        .unwrap();
    let big = "x".repeat(12 << 20);
    client.send(&big);
    let back = client.next().expect("the 12 MiB echo");
    assert_eq!(back.len(), big.len());
    assert!(back == big);
    assert_eq!(server.terminate().code(), Some(0));
}

/// A client message the gateway accepts but whose frame (28-byte header + message) is over
/// the worker's `--package-size-max` costs that event only: logged with its client id,
/// counted in the metrics, and the same client's next message is answered on the same link.
#[test]
fn an_event_over_the_worker_frame_limit_fails_alone_over_real_sockets() {
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (mut server, public, _) = start_system(
        "echo",
        &[
            "--package-size-max",
            "1048576",
            "--metrics",
            &metrics.to_string(),
        ],
        "small",
        "small",
    );
    let mut client = Line::connect(public).unwrap();
    // The gateway takes a line shorter than the limit with its newline; the frame to the
    // worker (28-byte header + the line) is over it.
    client.send(&"y".repeat(1048576 - 2));
    let skipped = server.wait_for("client event skipped: frame too large");
    assert!(skipped.contains("client_id="), "{skipped}");
    client.send("still here");
    assert_eq!(client.next().as_deref(), Some("still here"));
    eventually("the skipped event counted", || {
        http_get(metrics, "/metrics")
            .contains("\ngatewayworker_worker_events_too_large_total 1\n")
            .then_some(())
    });
    assert!(
        !server.seen.iter().any(|l| l.contains("closing link")),
        "{:#?}",
        server.seen
    );
    assert_eq!(server.terminate().code(), Some(0));
}
