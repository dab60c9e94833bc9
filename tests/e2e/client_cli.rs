//! `gatewayworker client` as a script calls it (a web backend's cron job or deploy
//! script): the real binary against our register and two gateways on 127.0.0.1, with real
//! WebSocket clients (and, for binary messages, a `frame://` client) checking what arrives.
//!
//! - every send, close and `ungroup` prints what the original returns (`true`, `false`,
//!   `null`) and the exit code follows it (3 for `false`);
//! - the message comes from stdin or a file, binary and NUL bytes included, beyond argv's
//!   131,071 bytes, and a message over the package size is refused before anything is sent;
//! - several uids or groups in one call;
//! - an explicitly empty `--client-ids` list sends to nobody;
//! - each call prints one JSON type whatever the data (`{}` for an empty map, an object
//!   for a map whose keys are 0, 1...);
//! - a missing argument is named.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::client_sockets::{
    cluster, eventually, next_text, start_register, worker_link, Cluster, SECRET,
};
use crate::common::*;
use gatewayworker::client::GatewayClient;
use gatewayworker::gateway::PublicProtocol;

/// Runs `gatewayworker client --secret .. --register REGISTER ARGS` with `stdin`, bounded
/// by [`WAIT`] (on a blocking thread: the cluster runs on the test's runtime).
async fn gw(register: SocketAddr, args: &[&str], stdin: Option<Vec<u8>>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gatewayworker"));
    command
        .args(["client", "--secret", SECRET, "--register"])
        .arg(register.to_string())
        .args(args);
    tokio::task::spawn_blocking(move || run(command, stdin))
        .await
        .unwrap()
}

fn run(mut command: Command, stdin: Option<Vec<u8>>) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        if let Some(bytes) = stdin {
            // The child may refuse before reading everything: a broken pipe is fine.
            let _ = input.write_all(&bytes);
        }
    });
    let deadline = Instant::now() + WAIT * 2;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("client call did not end in time");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    writer.join().unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Exit code and stdout, the two things a script looks at.
fn result(output: &Output) -> (Option<i32>, String) {
    (output.status.code(), stdout(output))
}

/// Every client's next message is `end` after one last broadcast: nothing else arrived.
async fn nothing_else_arrived(c: &mut Cluster) {
    c.client.send_to_all(b"end", &[]).await.unwrap();
    for ws in &mut c.clients {
        assert_eq!(next_text(ws).await, "end");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_print_the_originals_result_and_the_exit_code_follows_it() {
    let mut c = cluster().await;
    let (register, id) = (c.register.addr, c.ids.clone());

    let out = gw(register, &["send-to-client", &id[0], "one"], None).await;
    assert_eq!(result(&out), (Some(0), "true\n".into()), "{out:?}");
    assert_eq!(next_text(&mut c.clients[0]).await, "one");

    for args in [
        &["send-to-all", "all"][..],
        &["send-to-uid", "nobody", "x"],
        &["send-to-group", "g", "x"],
        &["bind-uid", &id[1], "u1"],
        &["join-group", &id[1], "g"],
        &["ungroup", "g"],
    ] {
        let out = gw(register, args, None).await;
        assert_eq!(
            result(&out),
            (Some(0), "null\n".into()),
            "{args:?}: {out:?}"
        );
    }
    for ws in &mut c.clients {
        assert_eq!(next_text(ws).await, "all");
    }

    // A PHP-empty group name: the original returns false and sends nothing.
    for args in [
        &["send-to-group", "", "x"][..],
        &["send-to-group", "0", "x"],
        &["ungroup", ""],
        &["ungroup", "0"],
    ] {
        let out = gw(register, args, None).await;
        assert_eq!(
            result(&out),
            (Some(3), "false\n".into()),
            "{args:?}: {out:?}"
        );
        assert!(
            stderr(&out).contains("returned false"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    // The list form with a name "0" is PHP-truthy: sent, to nobody here.
    let out = gw(register, &["send-to-group", "0", "g", "x"], None).await;
    assert_eq!(result(&out), (Some(0), "null\n".into()));

    let out = gw(register, &["close-client", &id[2], "bye"], None).await;
    assert_eq!(result(&out), (Some(0), "true\n".into()));
    assert_eq!(next_text(&mut c.clients[2]).await, "bye");
    let out = gw(register, &["destroy-client", &id[3]], None).await;
    assert_eq!(result(&out), (Some(0), "true\n".into()));

    // Only clients 0 and 1 are left, and nothing reached them but what was asserted.
    c.client.send_to_all(b"end", &[]).await.unwrap();
    for ws in &mut c.clients[..2] {
        assert_eq!(next_text(ws).await, "end");
    }
    c.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicitly_empty_client_list_sends_to_nobody() {
    let mut c = cluster().await;
    let (register, id) = (c.register.addr, c.ids.clone());

    let out = gw(
        register,
        &["send-to-all", "--client-ids", "", "nobody"],
        None,
    )
    .await;
    assert_eq!(result(&out), (Some(0), "null\n".into()), "{out:?}");
    let out = gw(
        register,
        &["send-to-all", "--client-ids", " , ", "nobody"],
        None,
    )
    .await;
    assert_eq!(result(&out), (Some(0), "null\n".into()), "{out:?}");

    // A list built by a script: commas and spaces, one client on each gateway.
    let list = format!("{}, {}", id[0], id[3]);
    let out = gw(
        register,
        &["send-to-all", "--client-ids", &list, "listed"],
        None,
    )
    .await;
    assert_eq!(result(&out), (Some(0), "null\n".into()));
    assert_eq!(next_text(&mut c.clients[0]).await, "listed");
    assert_eq!(next_text(&mut c.clients[3]).await, "listed");

    // --client-ids and --client-id are one setting: both at once is refused.
    let out = gw(
        register,
        &[
            "send-to-all",
            "--client-ids",
            "",
            "--client-id",
            &id[0],
            "x",
        ],
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(2));

    nothing_else_arrived(&mut c).await;
    c.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_uids_and_groups_in_one_call() {
    let mut c = cluster().await;
    let (register, id) = (c.register.addr, c.ids.clone());
    let client = c.client.clone();
    // Clients 0 and 1 are on the first gateway, 2 and 3 on the second.
    client.bind_uid(&id[0], "u1").await.unwrap();
    client.bind_uid(&id[2], "u2").await.unwrap();
    client.bind_uid(&id[3], "u3").await.unwrap();
    client.join_group(&id[1], "g1").await.unwrap();
    client.join_group(&id[3], "g2").await.unwrap();
    eventually("bound and joined", || async {
        client.get_all_uid_count().await.unwrap() == 3
            && client.get_all_group_id_list().await.unwrap().len() == 2
    })
    .await;

    let out = gw(register, &["send-to-uid", "u1", "u2", "to uids"], None).await;
    assert_eq!(result(&out), (Some(0), "null\n".into()), "{out:?}");
    assert_eq!(next_text(&mut c.clients[0]).await, "to uids");
    assert_eq!(next_text(&mut c.clients[2]).await, "to uids");

    let out = gw(register, &["send-to-group", "g1", "g2", "to groups"], None).await;
    assert_eq!(result(&out), (Some(0), "null\n".into()));
    assert_eq!(next_text(&mut c.clients[1]).await, "to groups");
    assert_eq!(next_text(&mut c.clients[3]).await, "to groups");

    // With --message-file every argument is a name.
    let stdin = Some(b"from stdin".to_vec());
    let out = gw(
        register,
        &["send-to-uid", "--message-file", "-", "u1", "u3"],
        stdin,
    )
    .await;
    assert_eq!(result(&out), (Some(0), "null\n".into()), "{out:?}");
    assert_eq!(next_text(&mut c.clients[0]).await, "from stdin");
    assert_eq!(next_text(&mut c.clients[3]).await, "from stdin");

    nothing_else_arrived(&mut c).await;
    c.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_prints_one_json_type_whatever_the_data() {
    let c = cluster().await;
    let (register, id) = (c.register.addr, c.ids.clone());
    let call = |args: Vec<String>| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = gw(register, &args, None).await;
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
        stdout(&out)
    };
    let s = |list: &[&str]| list.iter().map(|a| a.to_string()).collect::<Vec<_>>();

    // Empty maps are objects (PHP's json_encode writes `[]`), empty lists arrays.
    for (args, empty) in [
        (s(&["get-all-uid-list"]), "{}"),
        (s(&["get-all-group-id-list"]), "{}"),
        (s(&["get-all-group-uid-list"]), "{}"),
        (s(&["get-all-group-client-id-list"]), "{}"),
        (s(&["get-all-group-uid-count"]), "{}"),
        (s(&["get-all-group-client-id-count"]), "{}"),
        (s(&["get-client-id-list-by-group", "g"]), "{}"),
        (s(&["get-client-sessions-by-group", "g"]), "{}"),
        (s(&["get-uid-list-by-group", "g"]), "{}"),
        (s(&["get-client-id-by-uid", "nobody"]), "[]"),
        (s(&["get-session", &id[0]]), "{}"),
        (s(&["get-uid-by-client-id", &id[0]]), "null"),
        (s(&["get-all-uid-count"]), "0"),
    ] {
        assert_eq!(call(args.clone()).await, format!("{empty}\n"), "{args:?}");
    }

    // Keys 0, 1 (PHP-empty "0" is no uid or group, but a name asked about is): PHP
    // would write the lists [0,0]; these calls print objects.
    assert_eq!(
        call(s(&["is-uids-online", "0", "1"])).await,
        "{\"0\":0,\"1\":0}\n"
    );
    assert_eq!(
        call(s(&["batch-get-client-id-count-by-group", "0", "1"])).await,
        "{\"0\":0,\"1\":0}\n"
    );
    let client = c.client.clone();
    client.bind_uid(&id[0], "u").await.unwrap();
    client.join_group(&id[0], "g").await.unwrap();
    eventually("bound and joined", || async {
        client.get_all_uid_count().await.unwrap() == 1
            && client.get_client_count_by_group("g").await.unwrap() == 1
    })
    .await;
    assert_eq!(call(s(&["get-all-uid-list"])).await, "{\"u\":\"u\"}\n");
    assert_eq!(call(s(&["get-all-group-id-list"])).await, "{\"g\":\"g\"}\n");
    assert_eq!(
        call(s(&["get-all-group-uid-list"])).await,
        "{\"g\":{\"u\":\"u\"}}\n"
    );
    assert_eq!(
        call(s(&["get-client-id-by-uid", "u"])).await,
        format!("[\"{}\"]\n", id[0])
    );
    assert_eq!(
        call(s(&["batch-get-client-id-by-uid", "u"])).await,
        format!("{{\"u\":[\"{}\"]}}\n", id[0])
    );
    // A session that is a list is still printed as an object.
    let out = gw(register, &["set-session", &id[1], "[\"a\",\"b\"]"], None).await;
    assert_eq!(result(&out), (Some(0), "null\n".into()));
    let session = eventually_output(register, &["get-session", &id[1]], "{}\n").await;
    assert_eq!(session, "{\"0\":\"a\",\"1\":\"b\"}\n");
    c.shutdown();
}

/// Retries a call until its stdout differs from `not`.
async fn eventually_output(register: SocketAddr, args: &[&str], not: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let out = stdout(&gw(register, args, None).await);
        if out != not {
            return out;
        }
        assert!(Instant::now() < deadline, "{args:?} stayed {not:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A `frame://` client (u32 total length, then the payload): binary-safe, so the bytes a
/// client receives can be compared with the bytes the script gave.
struct FrameClient(TcpStream);

impl FrameClient {
    fn next(&mut self) -> Vec<u8> {
        let mut head = [0u8; 4];
        self.0.read_exact(&mut head).unwrap();
        let len = u32::from_be_bytes(head) as usize;
        let mut body = vec![0u8; len - 4];
        self.0.read_exact(&mut body).unwrap();
        body
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_message_comes_from_stdin_or_a_file_binary_beyond_argv() {
    let register = start_register(SECRET);
    let gateway = start_gateway(1, |s| {
        s.core.register_addresses = vec![register.addr.to_string()];
        s.core.secret_key = bytes::Bytes::copy_from_slice(SECRET.as_bytes());
        s.core.protocol = PublicProtocol::Frame;
    });
    let _worker = worker_link(gateway.lan_addrs[0], SECRET).await;
    let client = GatewayClient::builder()
        .register(register.addr.to_string())
        .secret(SECRET)
        .build()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let public = gateway.public_addr;
    let mut frame_client = tokio::task::spawn_blocking(move || {
        let stream = TcpStream::connect(public).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        FrameClient(stream)
    })
    .await
    .unwrap();
    eventually("the client is counted", || async {
        client.get_all_client_count().await.ok() == Some(1)
    })
    .await;
    let id = client.get_all_client_id_list().await.unwrap().remove(0);

    // 300 KB (argv takes 131,071 bytes at most), every byte value, NUL and invalid UTF-8.
    let message: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let out = gw(
        register.addr,
        &["send-to-client", "--message-file", "-", &id],
        Some(message.clone()),
    )
    .await;
    assert_eq!(result(&out), (Some(0), "true\n".into()), "{}", stderr(&out));
    let mut frame_client = tokio::task::spawn_blocking(move || {
        assert!(frame_client.next() == message, "stdin bytes arrive intact");
        frame_client
    })
    .await
    .unwrap();

    // From a file, to a uid.
    client.bind_uid(&id, "u").await.unwrap();
    eventually("bound", || async {
        client.is_uid_online("u").await.unwrap()
    })
    .await;
    let path = std::env::temp_dir().join(format!("gw-client-msg-{}", std::process::id()));
    std::fs::write(&path, b"\0file\xff\0").unwrap();
    let out = gw(
        register.addr,
        &["send-to-uid", "--message-file", path.to_str().unwrap(), "u"],
        None,
    )
    .await;
    assert_eq!(result(&out), (Some(0), "null\n".into()), "{}", stderr(&out));
    let mut frame_client = tokio::task::spawn_blocking(move || {
        assert_eq!(frame_client.next(), b"\0file\xff\0");
        frame_client
    })
    .await
    .unwrap();

    // Over the package size (10 MiB): refused, naming the flag and the bound, nothing sent.
    let big = vec![b'x'; 10 * 1024 * 1024 + 1];
    let out = gw(
        register.addr,
        &["send-to-client", "--message-file", "-", &id],
        Some(big),
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    assert!(
        err.contains("--message-file") && err.contains("10485760"),
        "{err}"
    );
    // A file that does not exist is named.
    let out = gw(
        register.addr,
        &["send-to-client", "--message-file", "/nonexistent/m", &id],
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("/nonexistent/m"), "{}", stderr(&out));

    // The next frame the client gets is this one: the refused message never went out.
    client.send_to_client(&id, b"after").await.unwrap();
    tokio::task::spawn_blocking(move || assert_eq!(frame_client.next(), b"after"))
        .await
        .unwrap();
    let _ = std::fs::remove_file(path);
    gateway.shutdown().unwrap();
    register.shutdown().unwrap();
}

/// A missing argument is an error naming it, exit 2, one line.
#[test]
fn a_missing_argument_is_named() {
    for (args, named) in [
        (&["send-to-uid", "u1"][..], "<MESSAGE>"),
        (&["send-to-group", "g"], "<MESSAGE>"),
        (&["send-to-all"], "<MESSAGE>"),
        (&["send-to-client"], "<CLIENT_ID>"),
        (&["send-to-client", "0123456789abcdef0123"], "<MESSAGE>"),
        (&["bind-uid", "0123456789abcdef0123"], "<UID>"),
        (&["send-to-uid"], "<UID>"),
    ] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_gatewayworker"));
        command.arg("client").args(args);
        let out = run(command, None);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(named), "{args:?} should name {named}: {err}");
    }
}
