//! Reply merges: order, client id reconstruction, the `getAllGroup*` scan quirk.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::*;

fn addr(ip: u8, port: u16) -> GatewayAddr {
    SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, ip), port)
}

fn arr(entries: Vec<(PhpKey, PhpValue)>) -> PhpValue {
    PhpValue::Array(entries.into_iter().collect())
}

fn k(s: &str) -> PhpKey {
    PhpKey::from_bytes(s.as_bytes())
}

fn s(text: &str) -> PhpValue {
    PhpValue::str(text)
}

fn list(values: Vec<PhpValue>) -> PhpValue {
    let mut a = PhpArray::new();
    for v in values {
        a.push(v);
    }
    PhpValue::Array(a)
}

fn row(uid: PhpValue, groups: PhpValue) -> PhpValue {
    arr(vec![(k("uid"), uid), (k("groups"), groups)])
}

fn groups(names: &[&str]) -> PhpValue {
    arr(names.iter().map(|g| (k(g), s(g))).collect())
}

fn keys(v: &PhpValue) -> Vec<PhpKey> {
    match v {
        PhpValue::Array(a) => a.iter().map(|(k, _)| k.clone()).collect(),
        other => panic!("not an array: {other:?}"),
    }
}

#[test]
fn replies_are_visited_grouped_by_ip_like_the_original() {
    let replies = vec![
        (addr(5, 2900), list(vec![PhpValue::Int(1)])),
        (addr(6, 2900), list(vec![PhpValue::Int(2)])),
        (addr(5, 2901), list(vec![PhpValue::Int(3)])),
    ];
    assert_eq!(
        Merge::ClientIdList.merge(&replies),
        list(vec![
            s("0a0000050b5400000001"),
            s("0a0000050b5500000003"),
            s("0a0000060b5400000002"),
        ])
    );
    assert_eq!(Merge::IsUidOnline.merge(&replies), PhpValue::Int(1));
    assert_eq!(Merge::IsUidOnline.merge(&[]), PhpValue::Int(0));
}

#[test]
fn counts_sum_and_skip_failed_replies() {
    let replies = vec![
        (addr(5, 2900), PhpValue::Int(2)),
        (addr(5, 2901), PhpValue::Bool(false)),
        (addr(5, 2902), PhpValue::Int(5)),
    ];
    assert_eq!(Merge::Count.merge(&replies), PhpValue::Int(7));
    assert_eq!(
        Merge::IsOnline.merge(&[(addr(5, 2900), PhpValue::Int(1))]),
        PhpValue::Int(1)
    );
    assert_eq!(Merge::Single.merge(&[]), PhpValue::Bool(false));
}

#[test]
fn sessions_decode_text_and_report_the_current_client_as_it_is_now() {
    let own_id = Bytes::from_static(b"0a0000050b5400000002");
    let own_session = arr(vec![(k("fresh"), PhpValue::Bool(true))]);
    let reply = arr(vec![
        (PhpKey::Int(1), s("a:1:{s:1:\"a\";i:1;}")),
        (PhpKey::Int(2), s("a:1:{s:1:\"a\";i:2;}")),
        (PhpKey::Int(3), s("")),
        (PhpKey::Int(4), s("garbage")),
    ]);
    let merged = Merge::Sessions {
        own: Some((own_id, own_session.clone())),
    }
    .merge(&[(addr(5, 2900), reply)]);
    assert_eq!(
        merged,
        arr(vec![
            (
                k("0a0000050b5400000001"),
                arr(vec![(k("a"), PhpValue::Int(1))])
            ),
            (k("0a0000050b5400000002"), own_session),
            (k("0a0000050b5400000003"), PhpValue::Array(PhpArray::new())),
            (k("0a0000050b5400000004"), PhpValue::Bool(false)),
        ])
    );
}

#[test]
fn group_ids_keep_first_occurrence_with_php_keys() {
    let replies = vec![
        (addr(5, 2900), list(vec![PhpValue::Int(7), s("room")])),
        (addr(5, 2901), list(vec![s("room"), PhpValue::Int(8)])),
    ];
    let merged = Merge::GroupIdList.merge(&replies);
    assert_eq!(
        keys(&merged),
        vec![PhpKey::Int(7), k("room"), PhpKey::Int(8)]
    );
}

#[test]
fn group_scan_complete_or_stopping_at_the_first_gap() {
    // Rows in connection order: the second client has no uid.
    let reply = arr(vec![
        (PhpKey::Int(1), row(s("alice"), groups(&["g1"]))),
        (PhpKey::Int(2), row(PhpValue::Null, groups(&["g1"]))),
        (PhpKey::Int(3), row(s("bob"), groups(&["g1", "g2"]))),
    ]);
    let replies = vec![(addr(5, 2900), reply)];
    let complete = Merge::GroupUids {
        count: true,
        scan: GroupScan::Complete,
    }
    .merge(&replies);
    assert_eq!(
        complete,
        arr(vec![
            (k("g1"), PhpValue::Int(2)),
            (k("g2"), PhpValue::Int(1))
        ])
    );
    let original = Merge::GroupUids {
        count: true,
        scan: GroupScan::StopAtFirstGap,
    }
    .merge(&replies);
    assert_eq!(original, arr(vec![(k("g1"), PhpValue::Int(1))]));

    let ids = Merge::GroupClientIds {
        count: false,
        scan: GroupScan::Complete,
    }
    .merge(&replies);
    let PhpValue::Array(ids) = ids else { panic!() };
    assert_eq!(keys(ids.get(&k("g1")).unwrap()).len(), 3);
    let stopped = Merge::GroupClientIds {
        count: true,
        scan: GroupScan::StopAtFirstGap,
    }
    .merge(&[(
        addr(5, 2900),
        arr(vec![
            (PhpKey::Int(1), row(PhpValue::Null, PhpValue::Null)),
            (PhpKey::Int(2), row(PhpValue::Null, groups(&["g1"]))),
        ]),
    )]);
    assert_eq!(stopped, PhpValue::Array(PhpArray::new()));
}

#[test]
fn uid_maps_skip_php_empty_uids_and_normalise_keys() {
    let reply = arr(vec![
        (PhpKey::Int(1), row(s("1002"), PhpValue::Null)),
        (PhpKey::Int(2), row(s("0"), PhpValue::Null)),
        (PhpKey::Int(3), row(s("1002"), PhpValue::Null)),
    ]);
    let merged = Merge::UidMap { count: false }.merge(&[(addr(5, 2900), reply.clone())]);
    assert_eq!(merged, arr(vec![(PhpKey::Int(1002), s("1002"))]));
    assert_eq!(
        Merge::UidMap { count: true }.merge(&[(addr(5, 2900), reply)]),
        PhpValue::Int(1)
    );
    let first = Merge::FirstUid.merge(&[
        (addr(5, 2900), PhpValue::Array(PhpArray::new())),
        (
            addr(5, 2901),
            arr(vec![(PhpKey::Int(4), row(s("x"), PhpValue::Null))]),
        ),
    ]);
    assert_eq!(first, s("x"));
    assert_eq!(Merge::FirstUid.merge(&[]), PhpValue::Null);
}

#[test]
fn batch_merges() {
    let replies = vec![
        (
            addr(5, 2900),
            arr(vec![
                (k("u"), list(vec![PhpValue::Int(1)])),
                (k("v"), list(vec![])),
            ]),
        ),
        (
            addr(5, 2901),
            arr(vec![
                (k("u"), list(vec![PhpValue::Int(2)])),
                (k("v"), list(vec![])),
            ]),
        ),
    ];
    assert_eq!(
        Merge::BatchClientIds.merge(&replies),
        arr(vec![
            (
                k("u"),
                list(vec![s("0a0000050b5400000001"), s("0a0000050b5500000002")])
            ),
            (k("v"), list(vec![])),
        ])
    );
    assert_eq!(
        Merge::UidsOnline.merge(&replies),
        arr(vec![(k("u"), PhpValue::Int(1)), (k("v"), PhpValue::Int(0))])
    );
    let counts = vec![
        (
            addr(5, 2900),
            arr(vec![
                (k("g"), PhpValue::Int(2)),
                (PhpKey::Int(7), PhpValue::Int(0)),
            ]),
        ),
        (addr(5, 2901), arr(vec![(k("g"), PhpValue::Int(3))])),
    ];
    assert_eq!(
        Merge::BatchCounts.merge(&counts),
        arr(vec![
            (k("g"), PhpValue::Int(5)),
            (PhpKey::Int(7), PhpValue::Int(0))
        ])
    );
}

#[test]
fn replies_are_cast_to_int_like_php() {
    let one = |v: PhpValue| Merge::IsOnline.merge(&[(addr(5, 2900), v)]);
    // (int) of a float truncates towards zero; NAN and the infinities are 0 in PHP 8.
    assert_eq!(one(PhpValue::Float(2.9)), PhpValue::Int(2));
    assert_eq!(one(PhpValue::Float(-2.9)), PhpValue::Int(-2));
    assert_eq!(one(PhpValue::Float(f64::INFINITY)), PhpValue::Int(0));
    assert_eq!(one(PhpValue::Float(f64::NEG_INFINITY)), PhpValue::Int(0));
    // (int) of a string: its leading integer, after leading blanks, with its sign.
    assert_eq!(one(s(" 12abc")), PhpValue::Int(12));
    assert_eq!(one(s("+7")), PhpValue::Int(7));
    assert_eq!(one(s("-12abc")), PhpValue::Int(-12));
    assert_eq!(one(s("abc")), PhpValue::Int(0));
    assert_eq!(one(s("99999999999999999999")), PhpValue::Int(i64::MAX));
    assert_eq!(one(s("-99999999999999999999")), PhpValue::Int(i64::MIN));
    // (int) of an array: 1 when it has entries; of null and false: 0.
    assert_eq!(one(list(vec![PhpValue::Null])), PhpValue::Int(1));
    assert_eq!(one(list(vec![])), PhpValue::Int(0));
    assert_eq!(one(PhpValue::Null), PhpValue::Int(0));
    assert_eq!(one(PhpValue::Bool(true)), PhpValue::Int(1));
    // Counts sum the truthy replies, whatever their type.
    let replies = vec![
        (addr(5, 2900), s("3")),
        (addr(5, 2901), s("-1")),
        (addr(5, 2902), PhpValue::Float(2.5)),
    ];
    assert_eq!(Merge::Count.merge(&replies), PhpValue::Int(4));
}

#[test]
fn uid_counts_count_distinct_uids() {
    let reply = arr(vec![
        (PhpKey::Int(1), row(s("alice"), PhpValue::Null)),
        (PhpKey::Int(2), row(s("bob"), PhpValue::Null)),
        (PhpKey::Int(3), row(s("alice"), PhpValue::Null)),
    ]);
    assert_eq!(
        Merge::UidMap { count: true }.merge(&[(addr(5, 2900), reply)]),
        PhpValue::Int(2)
    );
}
