//! A real str0m WebRTC client over a real loopback UDP socket, driven by its own thread.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use podium_media::{Media, MediaConfig, MediaEvent, MediaEvents};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive, Transmit};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

/// A frame the client received.
#[derive(Debug, Clone)]
pub struct Got {
    pub mid: Mid,
    /// RTP time (48 kHz).
    pub time: u64,
    pub data: Vec<u8>,
}

pub struct State {
    pub rtc: Rtc,
    pub connected: bool,
    pub got: Vec<Got>,
    pub send_mid: Option<Mid>,
    pub seq: u64,
}

pub struct Client {
    pub state: Arc<Mutex<State>>,
    pub addr: SocketAddr,
    pub socket: Arc<UdpSocket>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Client {
    pub fn new() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let mut rtc = RtcConfig::new().clear_codecs().enable_opus(true, false).build(Instant::now());
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        let state = Arc::new(Mutex::new(State { rtc, connected: false, got: Vec::new(), send_mid: None, seq: 0 }));
        let socket = Arc::new(socket);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, socket, stop) = (state.clone(), socket.clone(), stop.clone());
            std::thread::spawn(move || drive(state, socket, addr, stop))
        };
        Self { state, addr, socket, stop, thread: Some(thread) }
    }

    /// Makes an offer with one audio m-line of `dir`.
    pub fn make_offer(&self, dir: Direction) -> (String, SdpPendingOffer) {
        let mut st = self.state.lock().unwrap();
        let mut api = st.rtc.sdp_api();
        let mid = api.add_media(MediaKind::Audio, dir, None, None, None);
        let (offer, pending) = api.apply().unwrap();
        if dir.is_sending() {
            st.send_mid = Some(mid);
        }
        (offer.to_sdp_string(), pending)
    }

    /// An offer restarting ICE (new credentials), no media change.
    pub fn ice_restart_offer(&self) -> (String, SdpPendingOffer) {
        let mut st = self.state.lock().unwrap();
        let mut api = st.rtc.sdp_api();
        api.ice_restart(true);
        let (offer, pending) = api.apply().unwrap();
        (offer.to_sdp_string(), pending)
    }

    pub fn accept_answer(&self, pending: SdpPendingOffer, sdp: &str) {
        let mut st = self.state.lock().unwrap();
        st.rtc.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(sdp).unwrap()).unwrap();
    }

    pub fn accept_offer(&self, sdp: &str) -> String {
        let mut st = self.state.lock().unwrap();
        let answer = st.rtc.sdp_api().accept_offer(SdpOffer::from_sdp_string(sdp).unwrap()).unwrap();
        answer.to_sdp_string()
    }

    /// Offers `dir`, gets the answer from the SFU, applies it.
    pub async fn join(&self, media: &Media, room: &str, identity: &str, dir: Direction) {
        let (offer, pending) = self.make_offer(dir);
        let answer = media.offer(room, identity, &offer).await.unwrap();
        self.accept_answer(pending, &answer);
    }

    pub fn connected(&self) -> bool {
        self.state.lock().unwrap().connected
    }

    /// Sends one Opus-like 20 ms frame: `[tag, seq bytes.., filler]`, with an RFC 6464 level of -20 dBov.
    pub fn send_frame(&self, tag: u8) -> bool {
        let mut st = self.state.lock().unwrap();
        let Some(mid) = st.send_mid else { return false };
        let seq = st.seq;
        st.seq += 1;
        let now = Instant::now();
        let Some(w) = st.rtc.writer(mid) else { return false };
        let Some(pt) = w.payload_params().find(|p| p.spec().codec == Codec::Opus).map(|p| p.pt()) else {
            return false;
        };
        let mut data = vec![tag; 80];
        data[1..9].copy_from_slice(&seq.to_be_bytes());
        let ok = w
            .audio_level(-20, true)
            .write(pt, now, MediaTime::new(seq * 960, Frequency::FORTY_EIGHT_KHZ), data)
            .is_ok();
        let _ = st.rtc.handle_input(Input::Timeout(now));
        ok
    }

    pub fn got(&self) -> Vec<Got> {
        self.state.lock().unwrap().got.clone()
    }

    pub fn count_from(&self, tag: u8) -> usize {
        self.state.lock().unwrap().got.iter().filter(|g| g.data.first() == Some(&tag)).count()
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Drains `rtc`'s outputs (transmits to `send`, events to `event`) until it asks for time; returns when.
pub fn poll_rtc(rtc: &mut Rtc, mut send: impl FnMut(&Transmit), mut event: impl FnMut(Event)) -> Instant {
    loop {
        match rtc.poll_output() {
            Ok(Output::Timeout(t)) => return t,
            Ok(Output::Transmit(t)) => send(&t),
            Ok(Output::Event(e)) => event(e),
            Err(_) => return Instant::now() + Duration::from_millis(5),
        }
    }
}

fn drive(state: Arc<Mutex<State>>, socket: Arc<UdpSocket>, local: SocketAddr, stop: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 2000];
    while !stop.load(Ordering::Acquire) {
        let next = {
            let mut guard = state.lock().unwrap();
            let st = &mut *guard;
            let (connected, got) = (&mut st.connected, &mut st.got);
            poll_rtc(
                &mut st.rtc,
                |t| {
                    let _ = socket.send_to(&t.contents, t.destination);
                },
                |e| match e {
                    Event::Connected => *connected = true,
                    Event::MediaData(d) => got.push(Got {
                        mid: d.mid,
                        time: d.time.rebase(Frequency::FORTY_EIGHT_KHZ).numer(),
                        data: d.data.to_vec(),
                    }),
                    _ => {}
                },
            )
        };
        let wait =
            next.saturating_duration_since(Instant::now()).clamp(Duration::from_millis(1), Duration::from_millis(5));
        socket.set_read_timeout(Some(wait)).unwrap();
        match socket.recv_from(&mut buf) {
            Ok((n, source)) => {
                let mut st = state.lock().unwrap();
                if let Ok(r) = Receive::new(Protocol::Udp, source, local, &buf[..n]) {
                    let _ = st.rtc.handle_input(Input::Receive(Instant::now(), r));
                }
            }
            Err(_) => {
                let mut st = state.lock().unwrap();
                let _ = st.rtc.handle_input(Input::Timeout(Instant::now()));
            }
        }
    }
}

/// Starts a media plane on loopback with `workers` workers.
pub fn start(workers: usize) -> (Media, MediaEvents) {
    Media::start(MediaConfig { workers, active_speaker_interval_ms: 100, ..MediaConfig::default() }).unwrap()
}

/// Polls `f` until true or the deadline.
pub async fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends `n` frames from `c` tagged `tag`, 20 ms apart.
pub async fn talk(c: &Client, tag: u8, n: usize) {
    for _ in 0..n {
        c.send_frame(tag);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Collects the events available right now (waits up to `wait` for the first).
pub async fn drain_events(ev: &mut MediaEvents, wait: Duration) -> Vec<MediaEvent> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(e)) = tokio::time::timeout_at(deadline, ev.recv()).await {
        out.push(e);
    }
    out
}

/// The media events seen so far, in order.
pub type Log = Arc<Mutex<Vec<MediaEvent>>>;

/// Collects every media event into a [`Log`] on a task of its own.
pub fn collect(mut ev: MediaEvents) -> Log {
    let log: Log = Arc::default();
    let l = log.clone();
    tokio::spawn(async move {
        while let Some(e) = ev.recv().await {
            l.lock().unwrap().push(e);
        }
    });
    log
}

/// The tests' patience for anything to happen.
pub const T: Duration = Duration::from_secs(10);
