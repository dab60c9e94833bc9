//! Every bound of the gateway and what happens at it.

use super::*;
use crate::protocol::frame::Command;

#[test]
fn client_pending_max_drops_messages_and_keeps_the_client() {
    let mut c = config();
    c.client_pending_max = 100;
    let mut gw = Gw::new(c);
    let w = gw.worker("10.0.0.9:40000", "BW:0");
    let a = gw.client("203.0.113.7:5000");
    gw.auto_flush = false;
    let big = vec![b'x'; 80];
    assert_eq!(
        client_bytes(&gw.cmd(w, Command::SendToOne, a.0, S, b"", &big), a).len(),
        1
    );
    // 82 bytes pending: under the bound, this one still goes (like workerman)...
    assert_eq!(
        client_bytes(&gw.cmd(w, Command::SendToOne, a.0, S, b"", &big), a).len(),
        1
    );
    // ...164 pending: at the bound, dropped and counted.
    assert!(client_bytes(&gw.cmd(w, Command::SendToOne, a.0, S, b"", &big), a).is_empty());
    assert_eq!(gw.core.stats().client_messages_dropped, 1);
    assert_eq!(gw.query(w, Command::IsOnline, a.0, b""), b"i:1;");
    gw.core.handle_client_flushed(gw.now, a, 164);
    assert_eq!(
        client_bytes(&gw.cmd(w, Command::SendToOne, a.0, S, b"", &big), a).len(),
        1
    );
}

#[test]
fn pending_before_handshake_max_bounds_the_queue() {
    let mut c = config();
    c.pending_before_handshake_max = 10;
    let mut gw = Gw::new(c);
    let w = gw.worker("10.0.0.9:40000", "BW:0");
    let id = gw
        .core
        .handle_client_connected(gw.now, "203.0.113.7:1".parse().unwrap())
        .unwrap();
    gw.drain();
    for _ in 0..3 {
        gw.cmd(w, Command::SendToOne, id.0, S, b"", b"1234");
    }
    assert_eq!(
        gw.core.stats().client_messages_dropped,
        1,
        "12 bytes queued: the third is dropped"
    );
    let writes = client_bytes(&gw.client_sends(id, HANDSHAKE), id);
    assert_eq!(
        writes.len(),
        2,
        "101, then the two queued messages in one write"
    );
    assert_eq!(
        writes[1].to_vec(),
        [ws_text(b"1234"), ws_text(b"1234")].concat()
    );
}

#[test]
fn link_pending_max_drops_events_and_keeps_the_client() {
    let mut c = config();
    c.link_pending_max = 40;
    let mut gw = Gw::new(c);
    let w = gw.worker("10.0.0.9:40000", "BW:0");
    gw.auto_flush = false;
    let a = gw.client("203.0.113.7:5000"); // ON_CONNECT (28) + ON_WEBSOCKET_CONNECT: over 40
    let actions = gw.client_sends(a, &ws_client_frame(1, b"m"));
    assert!(link_frames(&actions, w).is_empty());
    assert_eq!(gw.core.stats().link_frames_dropped, 1);
    assert_eq!(gw.core.client_count(), 1);
}

#[test]
fn package_size_max_closes_the_connection_that_exceeds_it_quirk_20() {
    let mut c = config();
    c.package_size_max = 128;
    let mut gw = Gw::new(c);
    let w = gw.worker("10.0.0.9:40000", "BW:0");
    let a = gw.client("203.0.113.7:5000");
    let actions = gw.client_sends(a, &ws_client_frame(1, &[b'x'; 129]));
    assert_eq!(
        closes(&actions),
        vec![(a, true, CloseReason::ProtocolError)]
    );
    let actions = gw.send(w, &frame(5, 1, S, b"", &[b'x'; 101]));
    assert_eq!(link_closes(&actions), vec![w]);
    assert!(gw.core.snapshot().workers.is_empty());
}

#[test]
fn malformed_frame_lengths_close_the_link_quirk_18() {
    let (mut gw, _) = Gw::with_worker();
    let l = gw.link("10.0.0.10:1");
    let mut short = frame(11, 0, S, b"", b"");
    short[3] = 27;
    assert_eq!(link_closes(&gw.send(l, &short)), vec![l]);
    let l = gw.link("10.0.0.10:2");
    let mut zero = frame(11, 0, S, b"", b"");
    zero[..4].copy_from_slice(&[0; 4]);
    assert_eq!(
        link_closes(&gw.send(l, &zero)),
        vec![l],
        "0 no longer stalls"
    );
    let l = gw.link("10.0.0.10:3");
    let mut ext = frame(11, 0, S, b"ab", b"");
    ext[27] = 3;
    assert_eq!(link_closes(&gw.send(l, &ext)), vec![l]);
    // Frames after the bad one in the same read are not executed.
    let l = gw.link("10.0.0.10:4");
    let mut wire = short.clone();
    wire.extend(frame(11, 0, S, b"", b""));
    let actions = gw.send(l, &wire);
    assert_eq!(actions.len(), 1);
}

#[test]
fn clients_max_and_links_max_refuse_at_accept() {
    let mut c = config();
    c.clients_max = 2;
    c.links_max = 1;
    let mut gw = Gw::new(c);
    gw.worker("10.0.0.9:40000", "BW:0");
    assert_eq!(
        gw.core
            .handle_link_connected(gw.now, "10.0.0.9:1".parse().unwrap()),
        Err(Refused::LinksMax)
    );
    let a = gw.client("203.0.113.7:1");
    gw.client("203.0.113.7:2");
    assert_eq!(
        gw.core
            .handle_client_connected(gw.now, "203.0.113.7:3".parse().unwrap()),
        Err(Refused::ClientsMax)
    );
    assert!(gw.drain().is_empty(), "a refused client reaches no worker");
    // A destroyed client still holds its slot until the driver reports it closed.
    gw.core
        .handle_link_bytes(gw.now, LinkId(1), &frame(8, a.0, S, b"", b""));
    gw.drain();
    assert_eq!(
        gw.core
            .handle_client_connected(gw.now, "203.0.113.7:3".parse().unwrap()),
        Err(Refused::ClientsMax)
    );
    gw.core.handle_client_closed(gw.now, a);
    assert!(gw
        .core
        .handle_client_connected(gw.now, "203.0.113.7:3".parse().unwrap())
        .is_ok());
}

#[test]
fn idle_client_state_is_small() {
    // The table entry of an idle websocket client: the struct plus its map slots.
    let size = std::mem::size_of::<super::clients::Client>();
    assert!(size <= 320, "Client is {size} bytes");
}

/// Issue 18 item 3: a burst of drops (two clients that read nothing, a worker link that
/// takes nothing) is logged as one line at its start and one per 10 s while it lasts,
/// with the counts per kind and the worst connection, never one line per message.
#[test]
fn a_burst_of_drops_is_logged_at_a_bounded_rate_with_counts() {
    let (stats, lines) = crate::worker::core::fault_tests::capture_logs(|| {
        let mut c = config();
        c.client_pending_max = 100;
        c.link_pending_max = 40;
        c.lan_ip = std::net::Ipv4Addr::LOCALHOST; // no worker pings
        let mut gw = Gw::new(c);
        let w = gw.worker("10.0.0.9:40000", "BW:0");
        let a = gw.client("203.0.113.7:5000");
        let b = gw.client("203.0.113.7:5001");
        gw.auto_flush = false;
        let big = vec![b'x'; 80];
        // 20 s: every 10 ms, a message to both clients and to `b` alone; `a` sends a
        // message that its worker link cannot take.
        for _ in 0..2000 {
            gw.cmd(w, Command::SendToAll, 0, S, b"", &big);
            gw.cmd(w, Command::SendToOne, b.0, S, b"", &big);
            gw.client_sends(a, &ws_client_frame(1, b"m"));
            let at = gw.now + Duration::from_millis(10);
            while let Some(due) = gw.core.poll_timeout().filter(|t| *t <= at) {
                gw.advance(due.saturating_sub(gw.now));
            }
            gw.now = at;
        }
        let due = gw
            .core
            .poll_timeout()
            .expect("the rest of the burst is reported");
        gw.advance(due.saturating_sub(gw.now));
        assert_eq!(gw.core.poll_timeout(), None, "nothing more to report");
        gw.core.stats()
    });
    let lines: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("messages dropped"))
        .collect();
    // At the first drop, then 10 s and 20 s later.
    assert_eq!(lines.len(), 3, "{lines:#?}");
    let count = |kind: &str| -> u64 {
        lines
            .iter()
            .filter_map(|l| l.split(&format!("{kind}: ")).nth(1))
            .map(|rest| rest.split(' ').next().unwrap().parse::<u64>().unwrap())
            .sum()
    };
    // Client `a` got 1 message in (82 bytes pending), `b` got 1 too; every later one dropped.
    assert_eq!(
        count("client_send_buffer"),
        3 * 2000 - 4,
        "two in for each, then full"
    );
    assert_eq!(
        count("client_send_buffer"),
        stats.client_messages_dropped,
        "every counted drop is in a line"
    );
    assert_eq!(count("worker_link_queue"), stats.link_frames_dropped);
    assert!(stats.link_frames_dropped >= 1990, "{stats:?}");
    // `b` loses the most: it is the worst connection of the full intervals.
    assert!(lines[1].contains("worst_connection=2 "), "{}", lines[1]);
}

/// `transmit_reply`'s defensive branch, driven directly: no input we know of sends a reply
/// to a closing link (sim/README.md, Mutation testing), but if one did, the reply would be
/// dropped (nothing more goes out on a closing link) and counted, never silent.
#[test]
fn a_reply_to_a_closing_link_is_dropped_and_counted() {
    let (mut gw, w) = Gw::with_worker();
    gw.auto_flush = false;
    // An unflushed reply keeps the closed link (closing) until the driver reports it.
    assert_eq!(gw.query(w, Command::IsOnline, 1, b""), b"i:0;");
    gw.core.close_link(w, CloseReason::BadFrame);
    assert_eq!(link_closes(&gw.drain()), vec![w]);
    assert_eq!(gw.core.stats().link_frames_dropped, 0);
    gw.core.transmit_reply(w, wire::encode_reply(b"i:1;"));
    assert!(link_bytes(&gw.drain(), w).is_empty());
    assert_eq!(gw.core.stats().link_frames_dropped, 1);
}

/// What the metrics read: bytes queued per direction until the driver reports them
/// written, and the bytes written to links.
#[test]
fn queued_bytes_and_link_bytes_out_follow_writes_and_flushes() {
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    gw.auto_flush = false;
    assert_eq!(gw.core.queued_bytes(), (0, 0));
    let out_before = gw.core.stats().link_bytes_out;
    assert!(out_before > 0, "the client's connect events were written");
    let to_a = client_bytes(&gw.cmd(w, Command::SendToOne, a.0, S, b"", b"hello"), a);
    let to_w = link_bytes(&gw.client_sends(a, &ws_client_frame(1, b"m")), w);
    let client_len: usize = to_a.iter().map(|b| b.len()).sum();
    let link_len: usize = to_w.iter().map(|b| b.len()).sum();
    assert!(client_len > 0 && link_len > 0);
    assert_eq!(gw.core.queued_bytes(), (client_len, link_len));
    gw.core.handle_link_flushed(gw.now, w, link_len);
    gw.core.handle_client_flushed(gw.now, a, client_len);
    assert_eq!(gw.core.queued_bytes(), (0, 0));
    assert_eq!(gw.core.stats().link_bytes_out, out_before + link_len as u64);
}
