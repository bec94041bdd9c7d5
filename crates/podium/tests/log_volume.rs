//! Issue 10, item 3: no remote input produces unbounded log volume.
//!
//! A real `podium serve` process runs with the log level operators get by default (no `RUST_LOG`) and one media
//! worker; its stderr lines are counted. A moderator (the control participant) and two speakers join a room over
//! real websockets; each speaker negotiates media with a real str0m peer over loopback UDP through `media_offer`.
//!
//! - The first one completes ICE only (its DTLS packets are never sent), so the SFU has bound its address and waits
//!   for its DTLS ClientHello. From that socket it sends 10,000 DTLS handshake records (content type 22) that the
//!   SFU's DTLS stack queues and refuses once its queue is full: without the default filter's caps, one WARN line
//!   per datagram (the bug).
//! - The second one completes ICE and DTLS; from its socket come 10,000 more handshake records and 10,000 garbage
//!   datagrams (random bytes, truncated STUN, RTP and RTCP that is no valid SRTP).
//! - A socket the SFU has never seen sends 10,000 of both kinds.
//!
//! At most a handful of log lines may result, and the control participant's websocket keeps answering
//! `get_state` throughout, with the room unchanged.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use podium_hub::Role;
use podium_hub::auth::{TokenKeys, claims_for};
use serde_json::json;
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, RtcConfig};

#[allow(dead_code)]
#[path = "../../../tests/it/support.rs"]
mod support;

// The SFU tests' str0m client (it allows its own dead code).
#[path = "../../podium-media/tests/common/mod.rs"]
mod peer;

const SECRET: &str = "log-volume-secret";
/// "A handful": what the whole flood may add to the log.
const MAX_LINES: usize = 5;
/// Datagrams of each kind.
const FLOOD: usize = 10_000;

/// A `podium serve` child with the default log filter; its stderr lines are counted. Killed on drop.
struct Serve {
    child: Child,
    url: String,
    media: SocketAddr,
    lines: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Serve {
    fn start() -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_podium"))
            .args(["serve", "--listen", "127.0.0.1:0", "--media-port", "0"])
            .env_remove("PODIUM_CONFIG")
            .env_remove("RUST_LOG")
            .env("PODIUM_AUTH__SECRET", SECRET)
            .env("PODIUM_MEDIA__WORKERS", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start podium serve");
        let lines = Arc::new(AtomicUsize::new(0));
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        {
            let (lines, log) = (Arc::clone(&lines), Arc::clone(&log));
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    lines.fetch_add(1, Ordering::AcqRel);
                    let mut log = log.lock().expect("log lock");
                    if log.len() < 200 {
                        log.push(line);
                    }
                }
            });
        }
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let (mut url, mut media) = (None, None);
        while url.is_none() || media.is_none() {
            let line = stdout.next().expect("podium serve printed its addresses").expect("stdout");
            if let Some(u) = line.strip_prefix("Podium is listening: ") {
                url = Some(u.trim().to_owned());
            } else if let Some(m) = line.strip_prefix("Media (WebRTC audio, UDP): ") {
                media = Some(m.trim().parse().expect("one media address"));
            }
        }
        // Keep draining stdout so the hub never blocks on it.
        std::thread::spawn(move || for _ in stdout {});
        Self { child, url: url.unwrap_or_default(), media: media.expect("media address"), lines, log }
    }

    fn lines(&self) -> usize {
        self.lines.load(Ordering::Acquire)
    }

    fn log_since(&self, from: usize) -> String {
        self.log.lock().expect("log lock").iter().skip(from).cloned().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn join(serve: &Serve, identity: &str, role: Role) -> support::Client {
    let token = TokenKeys::new(SECRET.as_bytes())
        .mint(&claims_for(identity, None, "flood", role, Duration::from_secs(600)))
        .expect("mint");
    let mut c = support::Client::connect(&serve.url).await;
    c.ok(json!({"type": "join", "token": token})).await;
    c
}

/// A DTLS 1.2 handshake record (content type 22) with a ClientHello-looking body of `len` bytes.
fn dtls_handshake(seq: u64, len: usize) -> Vec<u8> {
    let mut r = vec![22, 0xfe, 0xfd, 0, 0];
    r.extend_from_slice(&seq.to_be_bytes()[2..]);
    r.extend_from_slice(&(len as u16).to_be_bytes());
    let mut body = vec![1u8, 0, 0, (len - 12) as u8, 0, (seq % 65_536) as u8, 0, 0, 0, 0, 0, (len - 12) as u8];
    body.resize(len, 0x5a);
    r.extend_from_slice(&body);
    r
}

/// Garbage of several kinds: pseudo-random bytes, truncated STUN, RTP (and RTCP) that is no valid SRTP.
fn garbage(i: usize) -> Vec<u8> {
    let x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    match i % 4 {
        0 => (0..(16 + i % 200)).map(|k| (x >> (k % 56)) as u8 ^ k as u8).collect(),
        1 => vec![0x00, 0x01, 0x00, 0x40, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3],
        2 => {
            let mut p = vec![0x80, 111, (i >> 8) as u8, i as u8, 0, 0, 3, 0xc0, 0xde, 0xad, 0xbe, 0xef];
            p.extend(std::iter::repeat_n(0xab, 60));
            p
        }
        _ => {
            let mut p = vec![0x80, 200, 0, 6, 0xde, 0xad, 0xbe, 0xef];
            p.extend(std::iter::repeat_n(0xcd, 40));
            p
        }
    }
}

/// A str0m peer that runs ICE but never sends DTLS: negotiates through `media_offer` on `ws`, then answers and
/// sends only STUN from its socket until ICE is connected. Returns the socket (bound at the SFU by then).
async fn ice_only_peer(ws: &mut support::Client) -> Arc<UdpSocket> {
    let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").expect("bind"));
    let local = socket.local_addr().expect("local addr");
    let mut rtc = RtcConfig::new().clear_codecs().enable_opus(true, false).build(std::time::Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").expect("candidate"));
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    let (offer, pending) = api.apply().expect("an offer");
    let reply = ws.ok(json!({"type": "media_offer", "sdp": offer.to_sdp_string()})).await;
    let answer = str0m::change::SdpAnswer::from_sdp_string(reply["result"]["sdp"].as_str().expect("answer"))
        .expect("the SFU's answer parses");
    rtc.sdp_api().accept_answer(pending, answer).expect("answer accepted");
    let sock = Arc::clone(&socket);
    let ice = std::thread::spawn(move || {
        let mut buf = vec![0u8; 2000];
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while std::time::Instant::now() < deadline {
            loop {
                match rtc.poll_output() {
                    Ok(Output::Timeout(_)) | Err(_) => break,
                    // STUN only (RFC 7983: first byte 0..=3); DTLS stays unsent.
                    Ok(Output::Transmit(t)) if t.contents.first().is_some_and(|b| *b < 4) => {
                        let _ = sock.send_to(&t.contents, t.destination);
                    }
                    Ok(Output::Transmit(_)) => {}
                    Ok(Output::Event(Event::IceConnectionStateChange(
                        IceConnectionState::Connected | IceConnectionState::Completed,
                    ))) => return true,
                    Ok(Output::Event(_)) => {}
                }
            }
            sock.set_read_timeout(Some(Duration::from_millis(5))).expect("timeout");
            let now = std::time::Instant::now();
            match sock.recv_from(&mut buf) {
                Ok((n, from)) => {
                    if let Ok(r) = Receive::new(Protocol::Udp, from, local, &buf[..n]) {
                        let _ = rtc.handle_input(Input::Receive(now, r));
                    }
                }
                Err(_) => {
                    let _ = rtc.handle_input(Input::Timeout(now));
                }
            }
        }
        false
    });
    let connected = tokio::task::spawn_blocking(move || ice.join().expect("ICE thread")).await.expect("join");
    assert!(connected, "ICE did not connect");
    socket
}

/// Sends `n` datagrams made by `make` from `socket` to `to`, pausing now and then so the kernel buffers keep up.
async fn flood(socket: &UdpSocket, to: SocketAddr, n: usize, make: impl Fn(usize) -> Vec<u8>) {
    for i in 0..n {
        let _ = socket.send_to(&make(i), to);
        if i % 200 == 199 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_of_dtls_and_garbage_datagrams_log_at_most_a_handful_of_lines() {
    let serve = Serve::start();
    let mut control = join(&serve, "moderator", Role::Moderator).await;
    let mut speaker = join(&serve, "speaker", Role::Speaker).await;
    let mut half = join(&serve, "half", Role::Speaker).await;
    let half_socket = ice_only_peer(&mut half).await;

    // The speaker's real peer connection, negotiated over the websocket.
    let pc = peer::Client::new();
    let (offer, pending) = pc.make_offer(Direction::SendRecv);
    let reply = speaker.ok(json!({"type": "media_offer", "sdp": offer})).await;
    pc.accept_answer(pending, reply["result"]["sdp"].as_str().expect("answer sdp"));
    peer::wait_for("ICE and DTLS up", Duration::from_secs(15), || pc.connected()).await;
    let before_state = control.ok(json!({"type": "get_state"})).await;

    // Let the joins and the connection log what they log, then count from here.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base = serve.lines();

    // Handshake records the SFU's DTLS server queues (message_seq 1.. while it waits for 0) until its queue is full.
    flood(&half_socket, serve.media, FLOOD, |i| dtls_handshake(i as u64 + 1, 100 + i % 100)).await;
    control.ok(json!({"type": "get_state"})).await;
    flood(&pc.socket, serve.media, FLOOD, |i| dtls_handshake(i as u64, 100 + i % 100)).await;
    control.ok(json!({"type": "get_state"})).await;
    flood(&pc.socket, serve.media, FLOOD, garbage).await;
    let stranger = UdpSocket::bind("127.0.0.1:0").expect("bind");
    flood(&stranger, serve.media, FLOOD, |i| if i % 2 == 0 { dtls_handshake(i as u64, 120) } else { garbage(i) }).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let added = serve.lines() - base;
    assert!(
        added <= MAX_LINES,
        "{added} log lines for {} datagrams (at most {MAX_LINES}):\n{}",
        5 * FLOOD,
        serve.log_since(base)
    );
    // The control participant's websocket still answers, and the room is as it was.
    let after_state = control.ok(json!({"type": "get_state"})).await;
    assert_eq!(after_state["result"]["stage"], before_state["result"]["stage"]);
    assert_eq!(after_state["result"]["counts"], before_state["result"]["counts"]);
    speaker.ok(json!({"type": "ping"})).await;
    half.ok(json!({"type": "ping"})).await;
}
