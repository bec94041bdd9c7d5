//! Load generation against a Podium hub over the real protocol (issue #14, item 5): the library behind
//! `podium loadtest`. Pure client side: it speaks to a hub only through its websocket and its SFU.
//!
//! Each **listener** opens a websocket, sends `join` with an audience token minted from the operator's secret (HS256,
//! like `podium token`), sends `media_offer` with a str0m offer (one `recvonly` audio m-line), applies the SFU's
//! answer and hands its `Rtc` and UDP socket to a media thread. A media thread runs many listeners on one mio poll:
//! STUN, DTLS and RTCP go to the listener's `Rtc` (so ICE consent keeps working), SRTP RTP datagrams are counted
//! without decrypting them, and the RTP sequence number (in clear in the SRTP header) gives the loss.
//!
//! The optional **speaker** joins with a moderator token (on stage), unmutes itself (`set_muted`), offers
//! `sendrecv`, and sends real Opus frames (a 440 Hz tone, libopus) every 20 ms.
//!
//! Per listener, the phases are timed from the moment its join was started: websocket open, joined (the welcome),
//! answer received, connected (str0m's `Event::Connected`: ICE and DTLS done), first audio packet.
//!
//! Not yet (later slices of item 5): end-to-end audio delay, decrypting a sample, listener churn and reconnect
//! storms, stage changes, the hub's CPU and memory, many loopback source addresses, answering the SFU's own
//! `media_offer` events (a listener has one slot, which one speaker fills).

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, ToSocketAddrs as _, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use mio::{Events, Interest, Poll, Token, Waker};
use serde::Serialize;
use serde_json::{Value, json};
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use tokio_tungstenite::tungstenite::Message;

/// What to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// The hub's websocket URL, e.g. `ws://127.0.0.1:7880/v1/ws` (a bare `ws://host:port` gets `/v1/ws`).
    pub url: String,
    /// The hub's `auth.secret`: tokens are minted from it.
    pub secret: String,
    /// The room every participant joins.
    pub room: String,
    /// How many listeners join.
    pub listeners: usize,
    /// Joins started per second.
    pub rate: f64,
    /// How long the run lasts, from the first join (the storm included).
    pub duration: Duration,
    /// Also join one speaker that sends Opus.
    pub speaker: bool,
    /// Media threads the listeners are spread over (at least 1).
    pub media_threads: usize,
}

/// The phases a listener goes through, in order.
pub const PHASES: [&str; 5] = ["websocket open", "joined", "answer", "connected", "first audio"];

/// Live counts for a progress display: how many listeners reached each phase, and failures.
#[derive(Debug, Default)]
pub struct Progress {
    /// Listeners whose join was started.
    pub started: AtomicUsize,
    /// Per phase of [`PHASES`].
    pub reached: [AtomicUsize; 5],
    /// Listeners that failed (their error is in the report).
    pub failed: AtomicUsize,
    /// RTP packets counted by all listeners.
    pub packets: AtomicU64,
}

/// One listener's outcome.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ListenerReport {
    /// Milliseconds from the start of its join to each phase of [`PHASES`], `None` when not reached.
    pub phases_ms: [Option<f64>; 5],
    /// SRTP RTP packets received.
    pub packets: u64,
    /// Packets missing by RTP sequence number (between the first and the last seen).
    pub lost: u64,
    /// Why it stopped early, if it did.
    pub error: Option<String>,
}

/// Latency statistics of one phase over the listeners that reached it.
#[derive(Clone, Debug, Serialize)]
pub struct PhaseStats {
    pub phase: &'static str,
    pub reached: usize,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

/// The whole run's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub listeners: usize,
    pub failed: usize,
    pub phases: Vec<PhaseStats>,
    /// Packets received per listener (over listeners that connected): min, p50, max.
    pub packets_min: u64,
    pub packets_p50: u64,
    pub packets_max: u64,
    /// Loss per listener in percent (over listeners that heard audio): p50, p99, max; and over all of them.
    pub loss_p50_pct: Option<f64>,
    pub loss_p99_pct: Option<f64>,
    pub loss_max_pct: Option<f64>,
    pub loss_total_pct: Option<f64>,
    /// Frames the speaker sent (`None` without `--speaker`).
    pub speaker_sent: Option<u64>,
    pub speaker_error: Option<String>,
    pub per_listener: Vec<ListenerReport>,
}

/// Mints an HS256 access token (the claims of proto/PROTOCOL.md, "Authentication"), valid for an hour.
pub fn mint_token(secret: &str, identity: &str, room: &str, role: &str) -> anyhow::Result<String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).context("clock")?.as_secs();
    let claims = json!({"sub": identity, "room": room, "role": role, "iat": now, "exp": now + 3600});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .context("minting a token")
}

/// Runs the load test; `progress` is updated as it goes.
pub fn run(config: &Config, progress: Arc<Progress>) -> anyhow::Result<Report> {
    let url = ws_url(&config.url)?;
    let local_ip = local_ip_towards(&url)?;
    let stop = Arc::new(AtomicBool::new(false));
    let threads = config.media_threads.max(1);
    let mut media = Vec::new();
    for t in 0..threads {
        let poll = Poll::new().context("mio poll")?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).context("mio waker")?);
        let (tx, rx) = mpsc::channel::<Peer>();
        let (stop, progress) = (Arc::clone(&stop), Arc::clone(&progress));
        let handle = std::thread::Builder::new()
            .name(format!("podium-load-{t}"))
            .spawn(move || media_loop(poll, rx, stop, progress))
            .context("spawning a media thread")?;
        media.push((tx, waker, handle));
    }
    let senders: Vec<(mpsc::Sender<Peer>, Arc<Waker>)> =
        media.iter().map(|(tx, w, _)| (tx.clone(), Arc::clone(w))).collect();

    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().context("tokio runtime")?;
    let signal = runtime.block_on(async {
        let start = tokio::time::Instant::now();
        let run_id = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        let (done_tx, done_rx) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        let speaker = if config.speaker {
            let token = mint_token(&config.secret, &format!("load-{run_id}-speaker"), &config.room, "moderator")?;
            let (tx, waker) = senders[0].clone();
            let ctx = Signal {
                url: url.clone(),
                room: config.room.clone(),
                token,
                local_ip,
                index: usize::MAX,
                media: tx,
                waker,
                done: done_rx.clone(),
            };
            let p = Arc::new(Progress::default());
            let handle = tokio::spawn(async move {
                let mut rep = SignalReport::default();
                let r = signal(ctx, true, &mut rep, &p).await;
                (rep, r.err().map(|e| format!("{e:#}")))
            });
            // Let the speaker take the stage before the storm.
            tokio::time::sleep(Duration::from_millis(500)).await;
            Some(handle)
        } else {
            None
        };
        let interval = Duration::from_secs_f64(1.0 / config.rate.max(0.001));
        for i in 0..config.listeners {
            tokio::time::sleep_until(start + interval.mul_f64(i as f64)).await;
            let token = mint_token(&config.secret, &format!("load-{run_id}-{i}"), &config.room, "audience")?;
            let (tx, waker) = senders[i % senders.len()].clone();
            let ctx = Signal {
                url: url.clone(),
                room: config.room.clone(),
                token,
                local_ip,
                index: i,
                media: tx,
                waker,
                done: done_rx.clone(),
            };
            progress.started.fetch_add(1, Ordering::Relaxed);
            let p = Arc::clone(&progress);
            tasks.push(tokio::spawn(async move {
                let mut rep = SignalReport::default();
                let r = signal(ctx, false, &mut rep, &p).await;
                if r.is_err() {
                    p.failed.fetch_add(1, Ordering::Relaxed);
                }
                (rep, r.err().map(|e| format!("{e:#}")))
            }));
        }
        tokio::time::sleep_until(start + config.duration).await;
        let _ = done_tx.send(true);
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap_or_else(|e| (SignalReport::default(), Some(format!("task: {e}")))));
        }
        let speaker = match speaker {
            Some(h) => Some(h.await.unwrap_or_else(|e| (SignalReport::default(), Some(format!("task: {e}"))))),
            None => None,
        };
        anyhow::Ok((out, speaker))
    });
    stop.store(true, Ordering::Relaxed);
    for (_, w, _) in &media {
        let _ = w.wake();
    }
    drop(senders);
    let mut media_reports: HashMap<usize, MediaReport> = HashMap::new();
    for (tx, _, handle) in media {
        drop(tx);
        let reports = handle.join().map_err(|_| anyhow::anyhow!("a media thread panicked"))?;
        media_reports.extend(reports);
    }
    let (signal, speaker) = signal?;
    Ok(summarize(config, signal, speaker, &media_reports))
}

/// `ws://host:port` → `ws://host:port/v1/ws`; anything with a path is kept.
fn ws_url(url: &str) -> anyhow::Result<String> {
    let Some(rest) = url.strip_prefix("ws://").or_else(|| url.strip_prefix("wss://")) else {
        bail!("--url must start with ws:// or wss://");
    };
    Ok(if rest.contains('/') { url.to_owned() } else { format!("{url}/v1/ws") })
}

/// The local address a socket would use to reach the hub's host (the listeners' host candidate).
fn local_ip_towards(url: &str) -> anyhow::Result<std::net::IpAddr> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    let with_port = if authority.contains(':') { authority.to_owned() } else { format!("{authority}:80") };
    let hub = with_port.to_socket_addrs().context("resolving the hub")?.next().context("the hub has no address")?;
    let probe = UdpSocket::bind(if hub.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }).context("probe socket")?;
    probe.connect(hub).context("no route to the hub")?;
    Ok(probe.local_addr().context("probe address")?.ip())
}

const WAKER: Token = Token(usize::MAX);
/// The speaker's index in the media thread.
const SPEAKER: usize = usize::MAX - 1;

/// What a signaling task needs.
struct Signal {
    url: String,
    room: String,
    token: String,
    local_ip: std::net::IpAddr,
    index: usize,
    media: mpsc::Sender<Peer>,
    waker: Arc<Waker>,
    done: tokio::sync::watch::Receiver<bool>,
}

#[derive(Debug, Default)]
struct SignalReport {
    /// Websocket open, joined, answer.
    phases: [Option<Duration>; 3],
}

/// A negotiated peer handed to a media thread.
struct Peer {
    index: usize,
    rtc: Rtc,
    socket: Option<UdpSocket>,
    started: Instant,
    /// The speaker's sending m-line.
    send: Option<Mid>,
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Sends a request and waits for its `ok` (events before it are skipped); an `error` fails.
async fn request(ws: &mut Ws, msg: Value) -> anyhow::Result<Value> {
    let id = msg["id"].clone();
    ws.send(Message::text(msg.to_string())).await.context("websocket send")?;
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .context("no answer within 15 s")?
            .context("websocket closed")?
            .context("websocket")?;
        let Message::Text(text) = frame else { continue };
        let v: Value = serde_json::from_str(&text).context("hub sent invalid JSON")?;
        if v["id"] != id {
            continue;
        }
        match v["type"].as_str() {
            Some("ok") => return Ok(v["result"].clone()),
            Some("error") => bail!("{} refused: {}", msg["type"], v),
            _ => {}
        }
    }
}

/// One participant's signaling: join, (speaker: unmute), media_offer, hand-off to media, then hold the websocket
/// open (answering the hub's pings) until the run is over.
async fn signal(mut ctx: Signal, speaker: bool, rep: &mut SignalReport, progress: &Progress) -> anyhow::Result<()> {
    let started = Instant::now();
    let (mut ws, _) = tokio_tungstenite::connect_async(ctx.url.as_str()).await.context("websocket open")?;
    rep.phases[0] = Some(started.elapsed());
    progress.reached[0].fetch_add(1, Ordering::Relaxed);
    request(&mut ws, json!({"type": "join", "id": 1, "token": ctx.token, "room": ctx.room})).await?;
    rep.phases[1] = Some(started.elapsed());
    progress.reached[1].fetch_add(1, Ordering::Relaxed);
    if speaker {
        request(&mut ws, json!({"type": "set_muted", "id": 2, "muted": false})).await?;
    }
    let socket = UdpSocket::bind(SocketAddr::new(ctx.local_ip, 0)).context("binding a UDP socket")?;
    socket.set_nonblocking(true).context("nonblocking")?;
    let local = socket.local_addr().context("local address")?;
    let mut rtc = RtcConfig::new().clear_codecs().enable_opus(true, false).build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").context("candidate")?);
    let mut api = rtc.sdp_api();
    let dir = if speaker { Direction::SendRecv } else { Direction::RecvOnly };
    let mid = api.add_media(MediaKind::Audio, dir, None, None, None);
    let (offer, pending): (_, SdpPendingOffer) = api.apply().context("no offer")?;
    let result = request(&mut ws, json!({"type": "media_offer", "id": 3, "sdp": offer.to_sdp_string()})).await?;
    let answer = SdpAnswer::from_sdp_string(result["sdp"].as_str().context("no sdp in the answer")?)
        .context("the SFU's answer does not parse")?;
    rtc.sdp_api().accept_answer(pending, answer).context("the SFU's answer was not accepted")?;
    rep.phases[2] = Some(started.elapsed());
    progress.reached[2].fetch_add(1, Ordering::Relaxed);
    let index = if speaker { SPEAKER } else { ctx.index };
    ctx.media
        .send(Peer { index, rtc, socket: Some(socket), started, send: speaker.then_some(mid) })
        .map_err(|_| anyhow::anyhow!("media thread gone"))?;
    let _ = ctx.waker.wake();
    loop {
        tokio::select! {
            _ = ctx.done.changed() => break,
            frame = ws.next() => match frame {
                Some(Ok(_)) => {}
                Some(Err(e)) => bail!("websocket: {e}"),
                None => bail!("the hub closed the websocket"),
            },
        }
    }
    let _ = ws.close(None).await;
    Ok(())
}

/// A media thread's outcome for one peer.
#[derive(Debug, Default)]
struct MediaReport {
    connected: Option<Duration>,
    first_audio: Option<Duration>,
    packets: u64,
    lost: u64,
    /// Frames sent (the speaker).
    sent: u64,
    error: Option<String>,
}

/// RTP sequence tracking: extended first and highest sequence numbers.
#[derive(Debug, Default)]
struct Seq {
    first: Option<u64>,
    max: u64,
}

impl Seq {
    fn see(&mut self, seq: u16) {
        let Some(_) = self.first else {
            self.first = Some(u64::from(seq) + (1 << 16));
            self.max = u64::from(seq) + (1 << 16);
            return;
        };
        // Extend against the highest seen: the nearest value with these low 16 bits.
        let base = self.max & !0xffff;
        let candidates = [base.wrapping_sub(1 << 16), base, base + (1 << 16)];
        let ext =
            candidates.iter().map(|b| b + u64::from(seq)).min_by_key(|e| e.abs_diff(self.max)).unwrap_or(self.max);
        if ext > self.max {
            self.max = ext;
        }
    }

    fn expected(&self) -> u64 {
        self.first.map_or(0, |f| self.max.saturating_sub(f) + 1)
    }
}

struct Live {
    peer: Peer,
    socket: mio::net::UdpSocket,
    local: SocketAddr,
    connected: bool,
    next: Instant,
    seq: Seq,
    report: MediaReport,
    /// The speaker's encoder and frame counter.
    tone: Option<Tone>,
}

/// A 440 Hz tone encoded with libopus, one 20 ms frame at a time.
struct Tone {
    encoder: opus::Encoder,
    frame: u64,
    next: Instant,
}

impl Tone {
    fn new() -> anyhow::Result<Self> {
        let encoder = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).context("opus")?;
        Ok(Self { encoder, frame: 0, next: Instant::now() })
    }

    fn encode(&mut self) -> anyhow::Result<Vec<u8>> {
        let start = self.frame * 960;
        let pcm: Vec<i16> = (0..960u64)
            .map(|i| {
                let t = (start + i) as f64 / 48_000.0;
                ((t * 440.0 * std::f64::consts::TAU).sin() * 8000.0) as i16
            })
            .collect();
        let mut out = vec![0u8; 400];
        let n = self.encoder.encode(&pcm, &mut out).context("opus encode")?;
        out.truncate(n);
        Ok(out)
    }
}

/// Drives `rtc` until it wants to wait; returns when it next wants a timeout.
fn drive(live: &mut Live, now: Instant) -> Instant {
    loop {
        match live.peer.rtc.poll_output() {
            Ok(Output::Timeout(t)) => return t,
            Ok(Output::Transmit(t)) => {
                let _ = live.socket.send_to(&t.contents, t.destination);
            }
            Ok(Output::Event(Event::Connected)) => {
                live.connected = true;
                live.report.connected = Some(now.duration_since(live.peer.started));
            }
            Ok(Output::Event(_)) => {}
            Err(e) => {
                live.report.error.get_or_insert_with(|| format!("rtc: {e}"));
                return now + Duration::from_secs(3600);
            }
        }
    }
}

/// Sends the speaker's due frames.
fn speak(live: &mut Live, now: Instant) {
    let (Some(mid), Some(tone)) = (live.peer.send, live.tone.as_mut()) else { return };
    if !live.connected {
        tone.next = now + Duration::from_millis(20);
        return;
    }
    while tone.next <= now {
        let Ok(data) = tone.encode() else { return };
        let Some(w) = live.peer.rtc.writer(mid) else { return };
        let Some(pt) = w.payload_params().find(|p| p.spec().codec == Codec::Opus).map(|p| p.pt()) else { return };
        let t = MediaTime::new(tone.frame * 960, Frequency::FORTY_EIGHT_KHZ);
        if w.audio_level(-20, true).write(pt, now, t, data).is_ok() {
            live.report.sent += 1;
        }
        tone.frame += 1;
        tone.next += Duration::from_millis(20);
    }
}

fn media_loop(
    mut poll: Poll,
    rx: mpsc::Receiver<Peer>,
    stop: Arc<AtomicBool>,
    progress: Arc<Progress>,
) -> HashMap<usize, MediaReport> {
    let mut live: HashMap<usize, Live> = HashMap::new();
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 2048];
    // The earliest timeout (or speaker frame) of any peer: the timeouts are scanned only once it has passed, not
    // on every wake-up.
    let mut due = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let wait = due.saturating_duration_since(now).min(Duration::from_millis(50));
        let _ = poll.poll(&mut events, Some(wait));
        while let Ok(mut peer) = rx.try_recv() {
            let token = Token(peer.index);
            let Some(std_socket) = peer.socket.take() else { continue };
            let Ok(local) = std_socket.local_addr() else { continue };
            let mut socket = mio::net::UdpSocket::from_std(std_socket);
            if poll.registry().register(&mut socket, token, Interest::READABLE).is_err() {
                continue;
            }
            let tone = if peer.send.is_some() { Tone::new().ok() } else { None };
            let mut l = Live {
                peer,
                socket,
                local,
                connected: false,
                next: Instant::now(),
                seq: Seq::default(),
                report: MediaReport::default(),
                tone,
            };
            l.next = drive(&mut l, Instant::now());
            due = due.min(l.next);
            live.insert(token.0, l);
        }
        let now = Instant::now();
        for ev in &events {
            let Some(l) = live.get_mut(&ev.token().0) else { continue };
            loop {
                let (n, from) = match l.socket.recv_from(&mut buf) {
                    Ok(r) => r,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => break,
                };
                let d = &buf[..n];
                // SRTP RTP (RFC 7983: 128..=191; RTCP's packet types 192..=223 in the second byte): count only.
                if l.connected && n >= 12 && (128..=191).contains(&d[0]) && !(192..=223).contains(&d[1]) {
                    if l.report.packets == 0 {
                        l.report.first_audio = Some(now.duration_since(l.peer.started));
                        if l.peer.index != SPEAKER {
                            progress.reached[4].fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    l.report.packets += 1;
                    progress.packets.fetch_add(1, Ordering::Relaxed);
                    l.seq.see(u16::from_be_bytes([d[2], d[3]]));
                    continue;
                }
                if let Ok(r) = Receive::new(Protocol::Udp, from, l.local, d) {
                    let _ = l.peer.rtc.handle_input(Input::Receive(now, r));
                }
                let was = l.connected;
                l.next = drive(l, now);
                due = due.min(l.next);
                if !was && l.connected && l.peer.index != SPEAKER {
                    progress.reached[3].fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let now = Instant::now();
        if now < due {
            continue;
        }
        due = now + Duration::from_millis(50);
        for l in live.values_mut() {
            speak(l, now);
            if l.next <= now || l.peer.send.is_some() {
                let _ = l.peer.rtc.handle_input(Input::Timeout(now));
                let was = l.connected;
                l.next = drive(l, now);
                if !was && l.connected && l.peer.index != SPEAKER {
                    progress.reached[3].fetch_add(1, Ordering::Relaxed);
                }
            }
            due = due.min(l.next);
            if let Some(t) = &l.tone {
                due = due.min(t.next);
            }
        }
    }
    live.into_iter()
        .map(|(i, mut l)| {
            l.report.lost = l.seq.expected().saturating_sub(l.report.packets);
            (i, l.report)
        })
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[i])
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn summarize(
    config: &Config,
    signal: Vec<(SignalReport, Option<String>)>,
    speaker: Option<(SignalReport, Option<String>)>,
    media: &HashMap<usize, MediaReport>,
) -> Report {
    let empty = MediaReport::default();
    let per_listener: Vec<ListenerReport> = signal
        .into_iter()
        .enumerate()
        .map(|(i, (s, err))| {
            let m = media.get(&i).unwrap_or(&empty);
            let p = [s.phases[0], s.phases[1], s.phases[2], m.connected, m.first_audio];
            ListenerReport {
                phases_ms: p.map(|d| d.map(ms)),
                packets: m.packets,
                lost: m.lost,
                error: err.or_else(|| m.error.clone()),
            }
        })
        .collect();
    let phases = (0..PHASES.len())
        .map(|k| {
            let mut v: Vec<f64> = per_listener.iter().filter_map(|l| l.phases_ms[k]).collect();
            v.sort_by(f64::total_cmp);
            PhaseStats {
                phase: PHASES[k],
                reached: v.len(),
                p50_ms: percentile(&v, 0.5),
                p99_ms: percentile(&v, 0.99),
                max_ms: v.last().copied(),
            }
        })
        .collect();
    let mut packets: Vec<u64> = per_listener.iter().filter(|l| l.phases_ms[3].is_some()).map(|l| l.packets).collect();
    packets.sort_unstable();
    let heard: Vec<&ListenerReport> = per_listener.iter().filter(|l| l.packets > 0).collect();
    let mut loss: Vec<f64> = heard.iter().map(|l| 100.0 * l.lost as f64 / (l.lost + l.packets) as f64).collect();
    loss.sort_by(f64::total_cmp);
    let (lost, got) = heard.iter().fold((0u64, 0u64), |(a, b), l| (a + l.lost, b + l.packets));
    let speaker_media = media.get(&SPEAKER);
    Report {
        listeners: config.listeners,
        failed: per_listener.iter().filter(|l| l.error.is_some()).count(),
        phases,
        packets_min: packets.first().copied().unwrap_or(0),
        packets_p50: packets.get(packets.len() / 2).copied().unwrap_or(0),
        packets_max: packets.last().copied().unwrap_or(0),
        loss_p50_pct: percentile(&loss, 0.5),
        loss_p99_pct: percentile(&loss, 0.99),
        loss_max_pct: loss.last().copied(),
        loss_total_pct: (got > 0).then(|| 100.0 * lost as f64 / (lost + got) as f64),
        speaker_sent: speaker.as_ref().map(|_| speaker_media.map_or(0, |m| m.sent)),
        speaker_error: speaker.and_then(|(_, e)| e).or_else(|| speaker_media.and_then(|m| m.error.clone())),
        per_listener,
    }
}

/// A plain-text summary table.
pub fn table(report: &Report) -> String {
    use std::fmt::Write as _;
    let f = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
    let mut s = String::new();
    let _ = writeln!(s, "{:<16} {:>8} {:>10} {:>10} {:>10}", "PHASE", "REACHED", "P50 ms", "P99 ms", "MAX ms");
    for p in &report.phases {
        let _ = writeln!(
            s,
            "{:<16} {:>8} {:>10} {:>10} {:>10}",
            p.phase,
            format!("{}/{}", p.reached, report.listeners),
            f(p.p50_ms),
            f(p.p99_ms),
            f(p.max_ms)
        );
    }
    let _ = writeln!(
        s,
        "packets per listener: min {} p50 {} max {}",
        report.packets_min, report.packets_p50, report.packets_max
    );
    if let Some(sent) = report.speaker_sent {
        let _ = writeln!(s, "speaker: {sent} frames sent");
        let _ = writeln!(
            s,
            "loss per listener %: p50 {} p99 {} max {} (all: {})",
            f(report.loss_p50_pct),
            f(report.loss_p99_pct),
            f(report.loss_max_pct),
            f(report.loss_total_pct)
        );
    }
    if let Some(e) = &report.speaker_error {
        let _ = writeln!(s, "speaker error: {e}");
    }
    let _ = writeln!(s, "failed listeners: {}", report.failed);
    for (i, l) in report.per_listener.iter().enumerate().filter(|(_, l)| l.error.is_some()).take(5) {
        let _ = writeln!(s, "  listener {i}: {}", l.error.as_deref().unwrap_or(""));
    }
    s
}
