//! Hostile clients, with raw sockets against a real hub: malformed websocket frames get their close codes, and the
//! per-source limits on connections that have not joined refuse with `429`. Each test keeps a control client in the
//! same room and checks that it keeps working and that the room's state did not change.
//! (Non-reading clients and the log volume are tested against a `podium serve` process, in
//! `crates/podium/tests/abuse.rs`, where the hub's own file descriptors and log lines can be counted.)

use std::net::IpAddr;
use std::time::Duration;

use podium_hub::Role;
use serde_json::{Value, json};

use crate::raw::{BINARY, PING, Raw, TEXT};
use crate::support::{Client, TestHub};

const WITHIN: Duration = Duration::from_secs(5);

fn ip(s: &str) -> IpAddr {
    s.parse().expect("literal address")
}

/// The parts of a room's state that hostile connections must not change (counts aside).
async fn room_state(m: &mut Client) -> Value {
    let s = m.ok(json!({"type": "get_state"})).await["result"].clone();
    json!({"stage": s["stage"], "hands": s["hands"], "settings": s["settings"], "you": s["you"]})
}

#[tokio::test]
async fn websocket_protocol_errors_close_with_their_codes() {
    let hub = TestHub::start_with(|c| {
        c.limits.max_message_bytes = 1024;
        c.limits.max_frame_bytes = 4096;
        // The moderator checks the room after every case.
        c.limits.request_burst = 1000;
    })
    .await;
    let (mut m, _) = hub.join("mod", "frames", Role::Moderator).await;
    let (mut s, _) = hub.join("spk", "frames", Role::Speaker).await;
    s.ok(json!({"type": "raise_hand"})).await;
    let before = room_state(&mut m).await;
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("invalid UTF-8 in a text frame", Raw::frame(TEXT, &[b'"', 0xff, 0xfe, b'"'], true), 1007),
        (
            "invalid UTF-8 across fragments",
            [Raw::frame(0x01, &[0xe2, 0x82], true), Raw::frame(0x80, &[0x28], true)].concat(),
            1007,
        ),
        ("an unmasked client frame", Raw::frame(TEXT, br#"{"type":"ping","id":1}"#, false), 1002),
        ("reserved bits set", Raw::frame(0xc1, br#"{"type":"ping","id":1}"#, true), 1002),
        ("an unknown data opcode", Raw::frame(0x83, b"x", true), 1002),
        ("an unknown control opcode", Raw::frame(0x8b, b"", true), 1002),
        ("a control frame over 125 bytes", Raw::frame(PING, &[7; 126], true), 1002),
        ("a fragmented control frame", Raw::frame(0x09, b"", true), 1002),
        ("a continuation with nothing to continue", Raw::frame(0x80, b"x", true), 1002),
        (
            "a new message inside a fragmented one",
            [Raw::frame(0x01, b"{", true), Raw::frame(BINARY, b"x", true)].concat(),
            1002,
        ),
        ("a frame over the hard limit", Raw::frame(TEXT, &[b'x'; 10_000], true), 1009),
    ];
    for (i, (what, bytes, code)) in cases.iter().enumerate() {
        // Before joining, and joined (as a listener).
        for joined in [false, true] {
            let mut raw = Raw::connect(hub.addr).await;
            if joined {
                let token = hub.token(&format!("l{i}"), "frames", Role::Audience);
                raw.send_text(&json!({"type": "join", "id": 1, "token": token}).to_string()).await;
                let (_, reply) = raw.next_frame(WITHIN).await.expect("join reply");
                assert!(String::from_utf8_lossy(&reply).contains(r#""type":"ok""#), "join failed");
            }
            raw.send(bytes).await.expect("send");
            assert_eq!(raw.close_code(WITHIN).await, Some(*code), "{what} (joined: {joined})");
            // The room and its other clients never noticed.
            m.ok(json!({"type": "ping"})).await;
            assert_eq!(room_state(&mut m).await, before, "{what}");
        }
    }
    s.ok(json!({"type": "lower_hand"})).await;
    m.event("hand_queue", |e| e["queue"]["total"] == 0).await;
    hub.stop().await;
}

#[tokio::test]
async fn connections_not_joined_are_limited_per_source() {
    let hub = TestHub::start_with(|c| c.limits.pending_per_source = 3).await;
    let (mut m, _) = hub.join("mod", "pending", Role::Moderator).await;
    let before = room_state(&mut m).await;
    let src = Some(ip("127.0.0.9"));
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(Raw::connect_with(hub.addr, src, &[], None).await.expect("within the limit"));
    }
    let refused = Raw::connect_with(hub.addr, src, &[], None).await.err().expect("over the limit");
    assert_eq!(refused.status, 429, "{refused:?}");
    assert!(refused.response.contains("Retry-After: 1"), "{refused:?}");
    assert!(refused.response.contains("have not joined yet"), "{refused:?}");
    // Other sources are not affected.
    let _other = Raw::connect_with(hub.addr, Some(ip("127.0.0.10")), &[], None).await.expect("another source");
    // A connection that joins no longer counts: the source may open another.
    let token = hub.token("joiner", "pending", Role::Audience);
    held[0].send_text(&json!({"type": "join", "id": 1, "token": token}).to_string()).await;
    held[0].next_frame(WITHIN).await.expect("join reply");
    let _again = Raw::connect_with(hub.addr, src, &[], None).await.expect("a joined connection frees its place");
    // So does one that ends.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _after_close = Raw::connect_with(hub.addr, src, &[], None).await.expect("a closed connection frees its place");
    m.ok(json!({"type": "ping"})).await;
    assert_eq!(room_state(&mut m).await, before);
    hub.stop().await;
}

#[tokio::test]
async fn new_connections_are_rate_limited_per_source() {
    let hub = TestHub::start_with(|c| {
        c.limits.connects_per_source_per_second = 4;
        c.limits.connect_burst_per_source = 6;
    })
    .await;
    let (mut m, _) = hub.join("mod", "rate", Role::Moderator).await;
    let src = Some(ip("127.0.0.11"));
    for i in 0..6 {
        let c = Raw::connect_with(hub.addr, src, &[], None).await;
        assert!(c.is_ok(), "connection {i} is within the burst: {:?}", c.err());
    }
    let refused = Raw::connect_with(hub.addr, src, &[], None).await.err().expect("over the burst");
    assert_eq!(refused.status, 429, "{refused:?}");
    assert!(refused.response.contains("slow down"), "{refused:?}");
    // Plain HTTP requests count too (they are connections).
    let page = http_get(hub.addr, src, "/").await;
    assert!(page.starts_with("HTTP/1.1 429"), "{page}");
    // The bucket refills at 4 per second.
    tokio::time::sleep(Duration::from_millis(600)).await;
    Raw::connect_with(hub.addr, src, &[], None).await.expect("the bucket refilled");
    // Another source, and the room, are unaffected.
    Raw::connect_with(hub.addr, Some(ip("127.0.0.12")), &[], None).await.expect("another source");
    m.ok(json!({"type": "ping"})).await;
    hub.stop().await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_address_counts() {
    let hub = TestHub::start_with(|c| {
        c.limits.pending_per_source = 1;
        c.server.trusted_proxies = vec!["127.0.0.13/32".parse().expect("cidr")];
    })
    .await;
    let proxy = Some(ip("127.0.0.13"));
    let xff = |client: &'static str| [("X-Forwarded-For", client)];
    // Each client behind the proxy is its own source (the client may have put its own guess in front).
    let _a = Raw::connect_with(hub.addr, proxy, &xff("198.51.100.7, 203.0.113.1"), None).await.expect("client 1");
    let _b = Raw::connect_with(hub.addr, proxy, &xff("203.0.113.2"), None).await.expect("client 2");
    let refused = Raw::connect_with(hub.addr, proxy, &xff("203.0.113.1"), None).await.err().expect("client 1 again");
    assert_eq!(refused.status, 429, "{refused:?}");
    // `Forwarded` is not the configured header, so it does not count: this is the proxy itself, once.
    let _p = Raw::connect_with(hub.addr, proxy, &[("Forwarded", "for=203.0.113.3")], None).await.expect("proxy");
    assert_eq!(Raw::connect_with(hub.addr, proxy, &[], None).await.err().map(|r| r.status), Some(429));
    // From a peer that is not a trusted proxy the header is ignored: the peer's own address counts.
    let untrusted = Some(ip("127.0.0.14"));
    let _u = Raw::connect_with(hub.addr, untrusted, &xff("203.0.113.4"), None).await.expect("first");
    let second = Raw::connect_with(hub.addr, untrusted, &xff("203.0.113.5"), None).await;
    assert_eq!(second.err().map(|r| r.status), Some(429), "a forged X-Forwarded-For must not help");
    hub.stop().await;
}

/// A plain HTTP GET from `from`; the whole response.
async fn http_get(addr: std::net::SocketAddr, from: Option<IpAddr>, path: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    if let Some(ip) = from {
        socket.bind(std::net::SocketAddr::new(ip, 0)).expect("bind");
    }
    let mut stream = socket.connect(addr).await.expect("connect");
    let _ = stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WITHIN, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}
