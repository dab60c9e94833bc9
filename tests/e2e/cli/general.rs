//! Options every subcommand shares: help, flag errors, the config file and its precedence, logs, ports in use.

use super::*;

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
