//! The hub's own websocket framing (`conn::frames`), from a raw socket: frames near the size limit, frames cut into
//! many tiny TCP writes, fragmented messages with control frames between their fragments, pipelined requests, pings
//! and the close handshake all behave as RFC 6455 says, on a connection that keeps no read buffer while idle.

use std::time::Duration;

use podium_hub::Role;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;

use crate::raw::{PING, Raw, TEXT};
use crate::support::TestHub;

const WITHIN: Duration = Duration::from_secs(10);
const CONTINUATION: u8 = 0x00;
const FIN: u8 = 0x80;

/// The next text frame from the hub, as JSON (pongs and other frames are returned to the caller as errors).
async fn next_json(raw: &mut Raw) -> Value {
    let (opcode, payload) = raw.next_frame(WITHIN).await.expect("a frame from the hub");
    assert_eq!(opcode, 1, "expected a text frame, got opcode {opcode}: {:?}", String::from_utf8_lossy(&payload));
    serde_json::from_slice(&payload).expect("JSON")
}

/// A `ping` request of `len` bytes in all (padded with an unknown field, which the hub ignores).
fn padded_ping(id: u64, len: usize) -> String {
    let head = format!(r#"{{"type":"ping","id":{id},"pad":""#);
    let pad = len - head.len() - 2;
    format!("{head}{}\"}}", "x".repeat(pad))
}

#[tokio::test]
async fn frames_of_every_shape_are_read_and_answered() {
    let max_frame = 64 * 1024;
    let hub = TestHub::start_with(|c| {
        c.limits.max_frame_bytes = max_frame;
        c.limits.max_message_bytes = max_frame;
        c.limits.request_burst = 1000;
    })
    .await;
    let mut raw = Raw::connect(hub.addr).await;
    raw.stream.set_nodelay(true).expect("nodelay");
    let token = hub.token("lis", "frames", Role::Audience);
    raw.send_text(&json!({"type": "join", "id": 1, "token": token}).to_string()).await;
    let welcome = next_json(&mut raw).await;
    assert_eq!(welcome["type"], "ok", "{welcome}");

    // One frame just under the limit, in one write.
    let big = padded_ping(2, max_frame - 10);
    raw.send(&Raw::frame(TEXT, big.as_bytes(), true)).await.expect("send");
    let reply = next_json(&mut raw).await;
    assert_eq!((reply["type"].as_str(), reply["id"].as_u64()), (Some("ok"), Some(2)), "{reply}");

    // The same size in three fragments, with a ping between them: the pong (same payload) comes first.
    let big = padded_ping(3, max_frame - 10);
    let (a, rest) = big.as_bytes().split_at(20_000);
    let (b, c) = rest.split_at(30_000);
    let bytes = [
        Raw::frame(0x01, a, true),
        Raw::frame(PING, b"are you there", true),
        Raw::frame(CONTINUATION, b, true),
        Raw::frame(FIN | CONTINUATION, c, true),
    ]
    .concat();
    raw.send(&bytes).await.expect("send");
    assert_eq!(raw.next_frame(WITHIN).await, Some((0x0a, b"are you there".to_vec())), "the pong");
    let reply = next_json(&mut raw).await;
    assert_eq!(reply["id"], 3, "{reply}");

    // A request cut into one TCP write per byte (headers included).
    let frame = Raw::frame(TEXT, json!({"type": "ping", "id": 4}).to_string().as_bytes(), true);
    for byte in &frame {
        raw.stream.write_all(std::slice::from_ref(byte)).await.expect("send");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(next_json(&mut raw).await["id"], 4);

    // Twenty requests in one write (and a large one among them), answered in order.
    let mut bytes = Vec::new();
    for id in 10..30 {
        let text = if id == 20 { padded_ping(id, 40_000) } else { json!({"type": "ping", "id": id}).to_string() };
        bytes.extend(Raw::frame(TEXT, text.as_bytes(), true));
    }
    raw.send(&bytes).await.expect("send");
    for id in 10..30 {
        let reply = next_json(&mut raw).await;
        assert_eq!((reply["type"].as_str(), reply["id"].as_u64()), (Some("ok"), Some(id)), "{reply}");
    }

    // Closing: the hub answers with the client's own code and reason, and closes the socket.
    let mut close = 4000u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"bye");
    raw.send(&Raw::frame(0x88, &close, true)).await.expect("send");
    assert_eq!(raw.next_frame(WITHIN).await, Some((0x08, close)), "the close answer");
    assert_eq!(raw.next_frame(WITHIN).await, None, "the socket closes after the close handshake");
    hub.stop().await;
}

#[tokio::test]
async fn a_close_without_a_code_is_answered_without_one() {
    let hub = TestHub::start().await;
    let mut raw = Raw::connect(hub.addr).await;
    raw.send_text(&json!({"type": "ping", "id": 1}).to_string()).await;
    assert_eq!(next_json(&mut raw).await["id"], 1);
    raw.send(&Raw::frame(0x88, b"", true)).await.expect("send");
    assert_eq!(raw.next_frame(WITHIN).await, Some((0x08, Vec::new())));
    hub.stop().await;
}

#[tokio::test]
async fn frames_sent_with_the_upgrade_request_are_read() {
    use tokio::io::AsyncReadExt as _;
    let hub = TestHub::start().await;
    let mut stream = tokio::net::TcpStream::connect(hub.addr).await.expect("connect");
    let addr = hub.addr;
    let mut bytes = format!(
        "GET /v1/ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes();
    // Two requests in the same write as the upgrade: hyper reads them past the request head.
    for id in [1, 2] {
        bytes.extend(Raw::frame(TEXT, json!({"type": "ping", "id": id}).to_string().as_bytes(), true));
    }
    stream.write_all(&bytes).await.expect("send");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).await.expect("read"), 1, "the hub closed during the upgrade");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    // The rest through the raw client's frame reader.
    let mut raw = Raw::from_stream(stream);
    assert_eq!(next_json(&mut raw).await["id"], 1);
    assert_eq!(next_json(&mut raw).await["id"], 2);
    hub.stop().await;
}
