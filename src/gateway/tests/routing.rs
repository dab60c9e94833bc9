//! Worker selection and registration: no worker, least connections, re-registration, random.

use bytes::Bytes;

use super::*;

#[test]
fn no_worker_destroys_the_client_even_on_message_quirk_25() {
    let mut gw = Gw::new(config());
    let id = gw
        .core
        .handle_client_connected(gw.now, "203.0.113.7:5000".parse().unwrap())
        .unwrap();
    assert_eq!(
        closes(&gw.drain()),
        vec![(id, false, CloseReason::NoWorker)]
    );
    // A client whose worker left is destroyed on its next message.
    let w = gw.worker("10.0.0.9:40000", "BW:0");
    let b = gw.client("203.0.113.8:5000");
    gw.core.handle_link_closed(gw.now, w);
    gw.drain();
    let actions = gw.client_sends(b, &ws_client_frame(1, b"m"));
    assert_eq!(closes(&actions), vec![(b, false, CloseReason::NoWorker)]);
    assert_eq!(gw.core.stats().clients_without_worker, 2);
}

#[test]
fn least_connections_counts_are_released_on_close_and_rebinding_is_lazy_quirk_11() {
    let mut gw = Gw::new(config());
    let w1 = gw.worker("10.0.0.21:40000", "BW:0");
    let w2 = gw.worker("10.0.0.21:40001", "BW:1");
    let a = gw.client("203.0.113.7:5000");
    let b = gw.client("203.0.113.8:5000");
    let counts = |gw: &Gw| {
        gw.core
            .snapshot()
            .workers
            .iter()
            .map(|w| w.count)
            .collect::<Vec<_>>()
    };
    assert_eq!(counts(&gw), vec![1, 1]);
    gw.core.handle_client_closed(gw.now, a);
    assert_eq!(link_frames(&gw.drain(), w1)[0].cmd, 4);
    assert_eq!(counts(&gw), vec![0, 1]);
    // w2 leaves: b's ON_CLOSE goes to w1 (count +1 then -1).
    gw.core.handle_link_closed(gw.now, w2);
    gw.core.handle_client_closed(gw.now, b);
    let actions = gw.drain();
    assert_eq!(link_frames(&actions, w1)[0].cid, b.0);
    assert_eq!(counts(&gw), vec![0]);
}

#[test]
fn reregistration_with_pending_output_keeps_the_key_on_the_new_link_fix_of_quirk_10() {
    let mut gw = Gw::new(config());
    gw.auto_flush = false;
    let old = gw.worker("10.0.0.21:40000", "BW:0");
    let _a = gw.client("203.0.113.7:5000"); // output to `old` stays unflushed
    let new = gw.worker("10.0.0.21:40100", "BW:0");
    assert_eq!(gw.core.snapshot().workers[0].link, new);
    gw.core.handle_link_closed(gw.now, old);
    gw.drain();
    assert_eq!(gw.core.snapshot().workers.len(), 1, "the key stays");
    assert_eq!(gw.core.snapshot().workers[0].link, new);
}

#[test]
fn random_routing_is_deterministic_for_a_seed() {
    let run = |seed: u64| {
        let mut c = config();
        c.routing = RoutingMode::Random { seed };
        let mut gw = Gw::new(c);
        for i in 0..4 {
            gw.worker(&format!("10.0.0.{}:40000", 20 + i), "BW:0");
        }
        (0..32)
            .map(|i| {
                gw.client(&format!("203.0.113.{i}:5000"));
                gw.core
                    .snapshot()
                    .clients
                    .last()
                    .unwrap()
                    .worker_key
                    .clone()
                    .unwrap()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
    let keys: std::collections::BTreeSet<_> = run(7).into_iter().collect();
    assert!(keys.len() > 1, "random mode spreads clients");
}

#[test]
fn a_worker_registering_again_on_the_same_link_keeps_one_key() {
    let mut gw = Gw::new(config());
    let w = gw.worker("10.0.0.9:40000", "BW:0");
    // Same key again: the original would close the link itself; we just reset the count.
    let again = frame(
        200,
        0,
        S,
        b"",
        b"{\"worker_key\":\"BW:0\",\"secret_key\":\"\"}",
    );
    assert!(gw.send(w, &again).is_empty());
    // Another key: the link leaves its old key (the original leaves it dangling).
    let other = frame(
        200,
        0,
        S,
        b"",
        b"{\"worker_key\":\"BW:1\",\"secret_key\":\"\"}",
    );
    assert!(gw.send(w, &other).is_empty());
    let keys: Vec<Bytes> = gw
        .core
        .snapshot()
        .workers
        .iter()
        .map(|e| e.key.clone())
        .collect();
    assert_eq!(keys, vec![Bytes::from_static(b"10.0.0.9:BW:1")]);
    // A non-string worker_key is converted like PHP's string concatenation.
    let l = gw.link("10.0.0.8:1");
    gw.send(
        l,
        &frame(200, 0, S, b"", b"{\"worker_key\":5,\"secret_key\":\"\"}"),
    );
    assert_eq!(
        gw.core.snapshot().workers[1].key,
        Bytes::from_static(b"10.0.0.8:5")
    );
}

#[test]
fn a_worker_closed_for_a_bad_frame_leaves_routing_at_once_even_while_flushing() {
    let mut gw = Gw::new(config());
    gw.auto_flush = false;
    let w1 = gw.worker("10.0.0.21:40000", "BW:0");
    let w2 = gw.worker("10.0.0.22:40000", "BW:0");
    let a = gw.client("203.0.113.7:5000"); // bound to w1, whose output stays unflushed
    let mut bad = frame(11, 0, S, b"", b"");
    bad[3] = 1;
    assert_eq!(link_closes(&gw.send(w1, &bad)), vec![w1]);
    assert_eq!(gw.core.snapshot().workers.len(), 1);
    let frames = link_frames(&gw.client_sends(a, &ws_client_frame(1, b"m")), w2);
    assert_eq!(
        (frames[0].cmd, frames[0].cid),
        (3, a.0),
        "the client moved to w2"
    );
    gw.core.handle_link_closed(gw.now, w1);
    gw.drain();
    assert_eq!(gw.core.link_count(), 1);
}
