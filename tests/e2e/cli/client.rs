//! The `client` subcommand: the Gateway API from the command line.

use super::*;

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
