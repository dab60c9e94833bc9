//! The `status` subcommand: counts, an unreachable register, a gateway that does not answer.

use super::*;

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
