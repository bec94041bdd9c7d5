//! ICE-TCP (RFC 6544, RFC 4571 framing): a str0m client that has only a TCP candidate (its UDP "blocked") joins
//! over the SFU's passive TCP candidate and hears a UDP speaker; bad framing closes only the offending connection;
//! removing the peer closes its connection.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{Client, T, poll_rtc, start, talk, wait_for};
use podium_media::{Media, MediaConfig};
use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::{Candidate, Event, Input, Rtc, RtcConfig};

/// The SFU's passive TCP candidate in an answer.
fn tcp_candidate(answer: &str) -> SocketAddr {
    let line = answer
        .lines()
        .find(|l| l.starts_with("a=candidate:") && l.contains(" tcp ") && l.contains("tcptype passive"))
        .unwrap_or_else(|| panic!("no passive TCP candidate in {answer}"));
    let p: Vec<&str> = line.split_whitespace().collect();
    format!("{}:{}", p[4], p[5]).parse().unwrap()
}

struct TcpState {
    rtc: Rtc,
    connected: bool,
    /// Tags of the frames received.
    got: Vec<u8>,
}

/// A str0m client whose only candidate is an active TCP one.
struct TcpClient {
    state: Arc<Mutex<TcpState>>,
    stop: Arc<AtomicBool>,
    closed_by_server: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TcpClient {
    async fn join(media: &Media, room: &str, who: &str) -> Self {
        let mut rtc = RtcConfig::new().clear_codecs().enable_opus(true, false).build(Instant::now());
        // The active side's port is not known before connecting: 9, as RFC 6544 says.
        let local: SocketAddr = "127.0.0.1:9".parse().unwrap();
        rtc.add_local_candidate(Candidate::builder().tcp().host(local).tcptype(TcpType::Active).build().unwrap());
        let mut api = rtc.sdp_api();
        api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        let (offer, pending) = api.apply().unwrap();
        let answer = media.offer(room, who, &offer.to_sdp_string()).await.unwrap();
        rtc.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap()).unwrap();
        let server = tcp_candidate(&answer);
        let stream = TcpStream::connect(server).unwrap();
        stream.set_nodelay(true).unwrap();
        let state = Arc::new(Mutex::new(TcpState { rtc, connected: false, got: Vec::new() }));
        let stop = Arc::new(AtomicBool::new(false));
        let closed_by_server = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop, closed) = (state.clone(), stop.clone(), closed_by_server.clone());
            std::thread::spawn(move || drive(state, stream, local, server, stop, closed))
        };
        Self { state, stop, closed_by_server, thread: Some(thread) }
    }

    fn connected(&self) -> bool {
        self.state.lock().unwrap().connected
    }

    fn count_from(&self, tag: u8) -> usize {
        self.state.lock().unwrap().got.iter().filter(|t| **t == tag).count()
    }
}

impl Drop for TcpClient {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn drive(
    state: Arc<Mutex<TcpState>>,
    mut stream: TcpStream,
    local: SocketAddr,
    server: SocketAddr,
    stop: Arc<AtomicBool>,
    closed: Arc<AtomicBool>,
) {
    let mut rbuf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 4096];
    while !stop.load(Ordering::Acquire) {
        let next = {
            let mut guard = state.lock().unwrap();
            let st = &mut *guard;
            let (connected, got) = (&mut st.connected, &mut st.got);
            poll_rtc(
                &mut st.rtc,
                |t| {
                    // RFC 4571: a 16-bit length, then the packet.
                    let mut framed = (t.contents.len() as u16).to_be_bytes().to_vec();
                    framed.extend_from_slice(&t.contents);
                    let _ = stream.write_all(&framed);
                },
                |e| match e {
                    Event::Connected => *connected = true,
                    Event::MediaData(d) => got.extend(d.data.first()),
                    _ => {}
                },
            )
        };
        let wait =
            next.saturating_duration_since(Instant::now()).clamp(Duration::from_millis(1), Duration::from_millis(5));
        stream.set_read_timeout(Some(wait)).unwrap();
        match stream.read(&mut chunk) {
            Ok(0) => {
                closed.store(true, Ordering::Release);
                return;
            }
            Ok(n) => rbuf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => {
                closed.store(true, Ordering::Release);
                return;
            }
        }
        let mut st = state.lock().unwrap();
        while rbuf.len() >= 2 {
            let len = usize::from(u16::from_be_bytes([rbuf[0], rbuf[1]]));
            if rbuf.len() < 2 + len {
                break;
            }
            if let Ok(r) = Receive::new(Protocol::Tcp, server, local, &rbuf[2..2 + len]) {
                let _ = st.rtc.handle_input(Input::Receive(Instant::now(), r));
            }
            rbuf.drain(..2 + len);
        }
        let _ = st.rtc.handle_input(Input::Timeout(Instant::now()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_without_udp_hears_the_stage_over_ice_tcp() {
    let (media, _ev) = start(2);
    media.set_publish("r", "alice", true);
    let alice = Client::new();
    alice.join(&media, "r", "alice", Direction::SendOnly).await;
    let bob = TcpClient::join(&media, "r", "bob").await;
    wait_for("alice and bob connected", T, || alice.connected() && bob.connected()).await;
    assert!(media.stats().tcp_accepted >= 1);

    talk(&alice, 1, 50).await;
    wait_for("bob hears alice over TCP", T, || bob.count_from(1) >= 45).await;

    // A connection with a frame longer than any packet is closed; bob hears on.
    let server = {
        let (offer, _) = Client::new().make_offer(Direction::RecvOnly);
        tcp_candidate(&media.offer("r", "probe", &offer).await.unwrap())
    };
    media.remove_peer("r", "probe");
    let mut bad = TcpStream::connect(server).unwrap();
    bad.write_all(&[0xff, 0xff, 1, 2, 3]).unwrap();
    bad.set_read_timeout(Some(T)).unwrap();
    let mut b = [0u8; 16];
    assert!(matches!(bad.read(&mut b), Ok(0) | Err(_)), "the server closes a connection with an oversized frame");
    let before = bob.count_from(1);
    talk(&alice, 1, 25).await;
    wait_for("bob still hears alice", T, || bob.count_from(1) >= before + 20).await;

    // Removing bob closes his connection.
    media.remove_peer("r", "bob");
    wait_for("bob's connection closed by the SFU", T, || bob.closed_by_server.load(Ordering::Acquire)).await;
    media.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_tcp_off_offers_no_tcp_candidate_and_connections_past_the_limit_are_closed() {
    let (media, _ev) = Media::start(MediaConfig { workers: 1, tcp: false, ..MediaConfig::default() }).unwrap();
    let (offer, _) = Client::new().make_offer(Direction::RecvOnly);
    let answer = media.offer("r", "x", &offer).await.unwrap();
    assert!(!answer.contains(" tcp "), "no TCP candidate when ICE-TCP is off: {answer}");
    media.shutdown();

    let (media, _ev) =
        Media::start(MediaConfig { workers: 1, max_tcp_connections: 2, ..MediaConfig::default() }).unwrap();
    let (offer, _) = Client::new().make_offer(Direction::RecvOnly);
    let server = tcp_candidate(&media.offer("r", "x", &offer).await.unwrap());
    let _a = TcpStream::connect(server).unwrap();
    let _b = TcpStream::connect(server).unwrap();
    wait_for("two accepted", T, || media.stats().tcp_accepted == 2).await;
    let mut c = TcpStream::connect(server).unwrap();
    c.set_read_timeout(Some(T)).unwrap();
    let mut b = [0u8; 4];
    assert!(matches!(c.read(&mut b), Ok(0) | Err(_)), "the third connection is closed");
    // Counted right after the close the client just saw.
    wait_for("the refusal counted", T, || media.stats().tcp_refused == 1).await;
    media.shutdown();
}
