//! A third WebRTC stack as a listener: a Rust client on the `webrtc` crate (webrtc-rs, independent of str0m, which
//! the SFU runs on) that speaks Podium's protocol as documented in `proto/PROTOCOL.md`, over a plain websocket:
//!
//! - `join` (with `resume` and the last `resume_token` when it comes back), then one peer connection with one
//!   `recvonly` audio transceiver, offered with `media_offer` (an `unavailable` answer is retried every 300 ms for
//!   up to 10 s, as [Media] step 5 says);
//! - the SFU's own `media_offer` events (a new downstream slot) are answered with `media_answer`;
//! - `media_moved`, or a welcome whose `media_epoch` differs from the peer connection's: the peer connection is
//!   closed and a new one negotiated;
//! - a closed or dropped websocket: reconnect and resume, at once to another hub when it knows several (always after
//!   4007), else after a first backoff step of 0.5 s; the peer connection is kept unless the epoch changed;
//! - an ICE restart on request, and when `media_state` says `failed`: `create_offer` with `ice_restart: true`, sent as
//!   a `media_offer`.
//!
//! webrtc-rs decrypts the SRTP; each received track's RTP is checked for sequence and timestamp continuity and its
//! Opus decoded with libopus (the `opus` crate). Every 0.5 s and per (peer connection, mid) the listener reports, in
//! the same shape as `tests/media/peer.py`'s `audio` lines, the dominant frequency (Goertzel over the decoded PCM) and
//! RMS of what it decoded, so the helpers of `aiortc.rs` (`is_tone`, ...) read its reports too.
//!
//! [Media]: ../../proto/PROTOCOL.md#media

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use rtc::ice::mdns::MulticastDnsMode;
use rtc::peer_connection::configuration::RTCOfferOptions;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState,
    RTCPeerConnectionState, RTCSessionDescription, Registry, SettingEngineBuilder, register_default_interceptors,
};
use webrtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};

use crate::aiortc::{Harness, Runner, longest_silence, now_unix};

/// Frequency tolerance of the webrtc-rs listener's checks (issue #13: ±10 Hz).
pub(crate) const TOLERANCE_HZ: f64 = 10.0;
/// Seconds of audio per report.
const WINDOW: Duration = Duration::from_millis(500);
/// A decoded 20 ms frame counts as loud above this RMS (int16 scale), as `peer.py --loud`'s default.
const LOUD_FRAME_RMS: f64 = 300.0;
/// Opus at 48 kHz: RTP timestamp units per 20 ms frame.
const FRAME_TICKS: u32 = 960;
/// How long `media_offer` is retried while it is answered `unavailable` (PROTOCOL.md, Media step 5).
const OFFER_RETRY_FOR: Duration = Duration::from_secs(10);
/// How long the listener keeps trying to reconnect.
const RECONNECT_FOR: Duration = Duration::from_secs(30);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Events = mpsc::UnboundedSender<Value>;

fn emit(tx: &Events, event: &str, mut fields: Value) {
    fields["event"] = json!(event);
    fields["t"] = json!(now_unix());
    let _ = tx.send(fields);
}

/// What the test asks of the listener's task.
enum Command {
    /// A protocol request on the listener's websocket; the hub's reply comes back.
    Request(Value, oneshot::Sender<Value>),
    /// An ICE restart on the current peer connection; the result (`ok` or why not) comes back.
    IceRestart(oneshot::Sender<Value>),
}

/// The webrtc-rs listener, run by a task of the test's runtime; its events (JSON, like `peer.py`'s lines) arrive on a
/// channel. Dropping it ends the task and closes its peer connection.
pub(crate) type Listener = Harness<ListenerTask>;

/// What runs a [`Listener`]: its task, and the channel of the test's commands to it.
pub(crate) struct ListenerTask {
    commands: mpsc::UnboundedSender<Command>,
    task: tokio::task::JoinHandle<()>,
}

impl Runner for ListenerTask {
    fn ended(&mut self) -> String {
        format!("task finished: {}", self.task.is_finished())
    }

    fn diagnostics(listener: &Listener) -> String {
        format!("--- {} last events:\n{}", listener.name, listener.last_events(30, 6))
    }
}

impl Drop for ListenerTask {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Listener {
    /// A listener that joins `room` at the first of `urls` with `token`; the other URLs are the hubs it may reconnect
    /// to.
    pub(crate) fn spawn(name: &str, urls: &[String], token: &str) -> Self {
        let (tx, lines) = mpsc::unbounded_channel();
        let (commands, rx) = mpsc::unbounded_channel();
        let session = Session::new(urls.to_vec(), token.to_owned(), tx);
        let task = tokio::spawn(session.run(rx));
        Self::new(name, lines, ListenerTask { commands, task })
    }

    /// Waits until the current peer connection is connected (ICE and DTLS up).
    pub(crate) async fn ready(&mut self, timeout: Duration) -> Value {
        self.wait_for("a connected peer connection", timeout, |v| v["event"] == "pc_state" && v["state"] == "connected")
            .await
    }

    /// Sends a protocol request through the listener's websocket; returns the hub's reply.
    pub(crate) async fn request(&mut self, body: Value) -> Value {
        let (tx, rx) = oneshot::channel();
        self.runner.commands.send(Command::Request(body.clone(), tx)).expect("the listener's task is running");
        tokio::time::timeout(Duration::from_secs(15), rx)
            .await
            .unwrap_or_else(|_| panic!("{}: no reply to {body} within 15 s\n{}", self.name, self.diagnostics()))
            .expect("the listener's task answers")
    }

    /// Restarts ICE on the current peer connection; returns what the task reports (`{"ok": true, ...}`).
    pub(crate) async fn ice_restart(&mut self) -> Value {
        let (tx, rx) = oneshot::channel();
        self.runner.commands.send(Command::IceRestart(tx)).expect("the listener's task is running");
        tokio::time::timeout(Duration::from_secs(20), rx)
            .await
            .unwrap_or_else(|_| {
                panic!("{}: the ICE restart did not finish within 20 s\n{}", self.name, self.diagnostics())
            })
            .expect("the listener's task answers")
    }

    /// Waits until `STEADY_REPORTS` consecutive reports of one (peer connection, mid) carry `hz` (± `TOLERANCE_HZ`)
    /// loudly, on a peer connection of generation `min_gen` or later; returns that mid and the reports.
    pub(crate) async fn until_heard(&mut self, hz: f64, min_gen: u64, timeout: Duration) -> (String, Vec<Value>) {
        self.steady_tone(hz, TOLERANCE_HZ, min_gen, timeout).await.unwrap_or_else(|| {
            panic!(
                "{}: did not hear {hz} Hz ± {TOLERANCE_HZ} steadily within {timeout:?}\n{}",
                self.name,
                self.diagnostics()
            )
        })
    }

    /// The participant the latest `media_tracks` puts on `mid`.
    pub(crate) fn track_owner(&self, mid: &str) -> Option<String> {
        let last = self.hub_events("media_tracks").last()?;
        last["tracks"]
            .as_array()?
            .iter()
            .find(|t| t["mid"] == mid)
            .and_then(|t| t["participant"].as_str().map(str::to_owned))
    }

    /// The audio reports of peer connection `gen` on `mid` whose window ended within `from..=to` (Unix seconds).
    pub(crate) fn reports_on(&self, gen_: u64, mid: &str, from: f64, to: f64) -> Vec<&Value> {
        self.seen_events("audio")
            .filter(|r| r["gen"] == gen_ && r["mid"] == mid)
            .filter(|r| r["t"].as_f64().is_some_and(|t| (from..=to).contains(&t)))
            .collect()
    }

    /// The longest stretch within `from..=to` (Unix seconds) in which no loud frame was decoded on (`gen`, `mid`), or
    /// on any track when `track` is None; and when it started ([`crate::aiortc::longest_silence`], a report's longest
    /// wait between two loud frames counting only when it lies within the stretch).
    pub(crate) fn longest_silence(&self, track: Option<(u64, &str)>, from: f64, to: f64) -> (f64, f64) {
        let reports = self.seen_events("audio").filter(|r| track.is_none_or(|(g, m)| r["gen"] == g && r["mid"] == m));
        longest_silence(reports, from, to, to)
    }

    /// The last loud frame decoded on (`gen`, `mid`) over the whole run (Unix seconds; NaN if none).
    pub(crate) fn last_loud_on(&self, gen_: u64, mid: &str) -> f64 {
        self.seen_events("audio")
            .filter(|r| r["gen"] == gen_ && r["mid"] == mid)
            .filter_map(|r| r["last_loud_t"].as_f64())
            .fold(f64::NAN, f64::max)
    }

    /// The latest RTP continuity counters of each (gen, mid, ssrc) seen in the reports.
    pub(crate) fn continuity(&self) -> BTreeMap<(u64, String, u64), Value> {
        let mut out = BTreeMap::new();
        for r in self.seen_events("audio") {
            let Some(ssrc) = r["ssrc"].as_u64() else { continue };
            let key = (r["gen"].as_u64().unwrap_or(0), r["mid"].as_str().unwrap_or_default().to_owned(), ssrc);
            out.insert(key, r["rtp"].clone());
        }
        out
    }
}

/// The listener's current peer connection.
struct Media {
    pc: Arc<dyn PeerConnection>,
    /// 1 for the first peer connection, +1 for each new one.
    generation: u64,
    /// The room's media epoch it was negotiated in.
    epoch: u64,
    /// How many times ICE gathering completed on it.
    gathered: Arc<AtomicU64>,
}

/// The listener's side of the protocol, run by one task.
struct Session {
    urls: Vec<String>,
    url_index: usize,
    token: String,
    tx: Events,
    ws: Option<Ws>,
    next_id: u64,
    resume: Option<String>,
    /// Hub messages read while waiting for a reply, handled next.
    deferred: VecDeque<Value>,
    media: Option<Media>,
    generations: u64,
    audio: Arc<Mutex<Audio>>,
}

/// Why a request got no reply: the websocket closed with this code (1006 without a close frame).
struct Closed(u16);

impl Session {
    fn new(urls: Vec<String>, token: String, tx: Events) -> Self {
        Self {
            urls,
            url_index: 0,
            token,
            tx: tx.clone(),
            ws: None,
            next_id: 1,
            resume: None,
            deferred: VecDeque::new(),
            media: None,
            generations: 0,
            audio: Arc::new(Mutex::new(Audio::new(tx))),
        }
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let reporter = tokio::spawn(report_every_window(Arc::clone(&self.audio)));
        let welcome = match self.connect_and_join(self.url_index).await {
            Ok(welcome) => welcome,
            Err(why) => {
                emit(&self.tx, "error", json!({"what": "join", "why": why}));
                return;
            }
        };
        let epoch = welcome["state"]["media_epoch"].as_u64().unwrap_or(0);
        self.negotiate(epoch).await;
        loop {
            if let Some(msg) = self.deferred.pop_front() {
                self.handle(msg).await;
                continue;
            }
            let Some(ws) = self.ws.as_mut() else {
                self.reconnect(1006).await;
                continue;
            };
            tokio::select! {
                command = commands.recv() => match command {
                    None => break,
                    Some(Command::Request(body, reply)) => {
                        let answer = match self.request(body).await {
                            Ok(answer) => answer,
                            Err(Closed(code)) => {
                                self.reconnect(code).await;
                                json!({"type": "error", "code": "closed", "close": code})
                            }
                        };
                        let _ = reply.send(answer);
                    }
                    Some(Command::IceRestart(reply)) => {
                        let result = self.ice_restart().await;
                        let _ = reply.send(result);
                    }
                },
                msg = read(ws) => match msg {
                    Ok(msg) => self.handle(msg).await,
                    Err(Closed(code)) => self.reconnect(code).await,
                },
            }
        }
        reporter.abort();
        if let Some(media) = self.media.take() {
            let _ = media.pc.close().await;
        }
        if let Some(mut ws) = self.ws.take() {
            let _ = ws.close(None).await;
        }
    }

    /// Opens a websocket to `urls[index]` and joins (resuming when it has a resume token); returns the welcome.
    async fn connect_and_join(&mut self, index: usize) -> Result<Value, String> {
        let url = self.urls[index].clone();
        let (ws, _) = tokio_tungstenite::connect_async(&url).await.map_err(|e| format!("connect {url}: {e}"))?;
        self.ws = Some(ws);
        self.url_index = index;
        let mut join = json!({"type": "join", "token": self.token});
        if let Some(resume) = &self.resume {
            join["resume"] = json!(resume);
        }
        let reply = self.request(join).await.map_err(|Closed(code)| format!("closed ({code}) before the welcome"))?;
        if reply["type"] != "ok" {
            self.ws = None;
            return Err(format!("join on {url}: {reply}"));
        }
        let welcome = reply["result"].clone();
        self.resume = welcome["resume_token"].as_str().map(str::to_owned);
        emit(&self.tx, "joined", json!({"url": url, "welcome": welcome}));
        Ok(welcome)
    }

    /// Sends a request with a fresh id and waits for its reply; other messages are kept for later.
    async fn request(&mut self, mut body: Value) -> Result<Value, Closed> {
        let id = self.next_id;
        self.next_id += 1;
        body["id"] = json!(id);
        let ws = self.ws.as_mut().ok_or(Closed(1006))?;
        ws.send(Message::Text(body.to_string().into())).await.map_err(|_| Closed(1006))?;
        loop {
            let ws = self.ws.as_mut().ok_or(Closed(1006))?;
            let msg = match read(ws).await {
                Ok(msg) => msg,
                Err(closed) => {
                    self.ws = None;
                    return Err(closed);
                }
            };
            if (msg["type"] == "ok" || msg["type"] == "error") && msg["id"] == json!(id) {
                return Ok(msg);
            }
            self.deferred.push_back(msg);
        }
    }

    /// One message from the hub, not a reply.
    async fn handle(&mut self, msg: Value) {
        emit(&self.tx, "ws", json!({"msg": msg}));
        match msg["type"].as_str() {
            Some("media_offer") if msg.get("id").is_none() => self.answer_server_offer(&msg).await,
            Some("media_moved") => {
                let epoch = msg["media_epoch"].as_u64().unwrap_or(0);
                if self.media.as_ref().is_some_and(|m| m.epoch != epoch) {
                    self.negotiate(epoch).await;
                }
            }
            Some("media_state") if msg["state"] == "failed" => {
                // PROTOCOL.md, Media step 4: a new offer with an ICE restart.
                let result = self.ice_restart().await;
                emit(&self.tx, "failed_restart", result);
            }
            Some("resync") => {
                let epoch = msg["state"]["media_epoch"].as_u64().unwrap_or(0);
                if self.media.as_ref().is_some_and(|m| m.epoch != epoch) {
                    self.negotiate(epoch).await;
                }
            }
            _ => {}
        }
    }

    /// The SFU offers another downstream slot: answer it on the current peer connection.
    async fn answer_server_offer(&mut self, msg: &Value) {
        let Some(media) = &self.media else { return };
        let pc = Arc::clone(&media.pc);
        let generation = media.generation;
        let sdp = msg["sdp"].as_str().unwrap_or_default().to_owned();
        let answer = async {
            let offer = RTCSessionDescription::offer(sdp).map_err(|e| e.to_string())?;
            pc.set_remote_description(offer).await.map_err(|e| e.to_string())?;
            let answer = pc.create_answer(None).await.map_err(|e| e.to_string())?;
            pc.set_local_description(answer).await.map_err(|e| e.to_string())?;
            let local = pc.local_description().await.ok_or("no local description")?;
            Ok::<_, String>(local.sdp)
        }
        .await;
        let sdp = match answer {
            Ok(sdp) => sdp,
            Err(why) => {
                emit(&self.tx, "error", json!({"what": "answering the SFU's offer", "why": why}));
                return;
            }
        };
        let mlines = sdp.matches("\nm=audio").count();
        match self.request(json!({"type": "media_answer", "sdp": sdp})).await {
            Ok(reply) => emit(&self.tx, "server_offer", json!({"gen": generation, "mlines": mlines, "reply": reply})),
            Err(Closed(code)) => self.reconnect(code).await,
        }
    }

    /// Sends `sdp` as a `media_offer` until it is answered: `unavailable` is retried every 300 ms for up to 10 s; on
    /// `conflict` the SFU's pending offer is answered first. Returns the SFU's answer, or the last error.
    async fn offer(&mut self, sdp: &str) -> Result<String, Value> {
        let until = Instant::now() + OFFER_RETRY_FOR;
        loop {
            let reply = match self.request(json!({"type": "media_offer", "sdp": sdp})).await {
                Ok(reply) => reply,
                Err(Closed(code)) => {
                    self.reconnect(code).await;
                    continue;
                }
            };
            if reply["type"] == "ok" {
                return Ok(reply["result"]["sdp"].as_str().unwrap_or_default().to_owned());
            }
            match reply["code"].as_str() {
                Some("unavailable") if Instant::now() < until => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Some("conflict") if Instant::now() < until => {
                    let pending =
                        self.deferred.iter().position(|m| m["type"] == "media_offer" && m.get("id").is_none());
                    if let Some(i) = pending {
                        let offer = self.deferred.remove(i).expect("found");
                        emit(&self.tx, "ws", json!({"msg": offer}));
                        self.answer_server_offer(&offer).await;
                    } else {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                _ => return Err(reply),
            }
        }
    }

    /// A new peer connection for media epoch `epoch` (closing the old one): one recvonly audio transceiver, offered.
    async fn negotiate(&mut self, epoch: u64) {
        let started = now_unix();
        if let Some(old) = self.media.take() {
            let _ = old.pc.close().await;
        }
        self.generations += 1;
        let generation = self.generations;
        let gathered = Arc::new(AtomicU64::new(0));
        let pc = match build_pc(generation, &self.tx, &gathered, &self.audio).await {
            Ok(pc) => pc,
            Err(why) => {
                emit(&self.tx, "error", json!({"what": "building a peer connection", "why": why}));
                return;
            }
        };
        let offer = async {
            let init = RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Recvonly,
                streams: vec![],
                send_encodings: vec![],
            };
            pc.add_transceiver_from_kind(RtpCodecKind::Audio, Some(init)).await.map_err(|e| e.to_string())?;
            let offer = pc.create_offer(None).await.map_err(|e| e.to_string())?;
            pc.set_local_description(offer).await.map_err(|e| e.to_string())?;
            gathering_done(&pc, &gathered, 0).await
        }
        .await;
        let sdp = match offer {
            Ok(sdp) => sdp,
            Err(why) => {
                emit(&self.tx, "error", json!({"what": "creating the offer", "why": why}));
                return;
            }
        };
        self.media = Some(Media { pc: Arc::clone(&pc), generation, epoch, gathered });
        let answer = match self.offer(&sdp).await {
            Ok(answer) => answer,
            Err(reply) => {
                emit(&self.tx, "error", json!({"what": "media_offer", "reply": reply}));
                return;
            }
        };
        let answer_ufrag = ice_ufrag(&answer);
        let applied = match RTCSessionDescription::answer(answer) {
            Ok(answer) => pc.set_remote_description(answer).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(why) = applied {
            emit(&self.tx, "error", json!({"what": "applying the SFU's answer", "why": why}));
            return;
        }
        let event = if generation == 1 { "negotiated" } else { "renegotiated" };
        let fields = json!({"gen": generation, "epoch": epoch, "started": started, "answer_ufrag": answer_ufrag});
        emit(&self.tx, event, fields);
    }

    /// An ICE restart of the current peer connection, offered as documented: a `media_offer` with new credentials.
    async fn ice_restart(&mut self) -> Value {
        let Some(media) = &self.media else { return json!({"ok": false, "why": "no peer connection"}) };
        let pc = Arc::clone(&media.pc);
        let generation = media.generation;
        let gathered = Arc::clone(&media.gathered);
        let before = pc.local_description().await.map(|d| ice_ufrag(&d.sdp)).unwrap_or_default();
        let started = now_unix();
        let offer = async {
            let done = gathered.load(Ordering::SeqCst);
            let offer =
                pc.create_offer(Some(RTCOfferOptions { ice_restart: true })).await.map_err(|e| e.to_string())?;
            pc.set_local_description(offer).await.map_err(|e| e.to_string())?;
            gathering_done(&pc, &gathered, done).await
        }
        .await;
        let sdp = match offer {
            Ok(sdp) => sdp,
            Err(why) => return json!({"ok": false, "why": why}),
        };
        let answer = match self.offer(&sdp).await {
            Ok(answer) => answer,
            Err(reply) => return json!({"ok": false, "reply": reply}),
        };
        let answer_ufrag = ice_ufrag(&answer);
        let applied = match RTCSessionDescription::answer(answer) {
            Ok(answer) => pc.set_remote_description(answer).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(why) = applied {
            return json!({"ok": false, "why": why});
        }
        let result = json!({
            "ok": true,
            "gen": generation,
            "started": started,
            "answered": now_unix(),
            "ufrag_before": before,
            "ufrag_after": ice_ufrag(&sdp),
            "answer_ufrag": answer_ufrag,
        });
        emit(&self.tx, "ice_restarted", result.clone());
        result
    }

    /// The websocket closed with `code` (1006: dropped): reconnect and resume as documented, at once to another hub
    /// when there is one, else after a first backoff step of 0.5 s; then renegotiate if the media epoch moved on.
    async fn reconnect(&mut self, code: u16) {
        self.ws = None;
        let lost_at = now_unix();
        emit(&self.tx, "ws_closed", json!({"code": code, "url": self.urls[self.url_index]}));
        let deadline = Instant::now() + RECONNECT_FOR;
        let mut backoff = Duration::from_millis(500);
        let mut attempts = 0;
        let mut index = self.url_index;
        if self.urls.len() == 1 {
            tokio::time::sleep(backoff).await;
        }
        loop {
            attempts += 1;
            index = (index + 1) % self.urls.len();
            match self.connect_and_join(index).await {
                Ok(welcome) => {
                    emit(
                        &self.tx,
                        "reconnected",
                        json!({
                            "url": self.urls[index],
                            "code": code,
                            "resumed": welcome["resumed"],
                            "attempts": attempts,
                            "lost_at": lost_at,
                        }),
                    );
                    let epoch = welcome["state"]["media_epoch"].as_u64().unwrap_or(0);
                    if self.media.as_ref().is_none_or(|m| m.epoch != epoch) {
                        // Boxed: negotiating may need to reconnect again.
                        Box::pin(self.negotiate(epoch)).await;
                    }
                    return;
                }
                Err(why) => {
                    emit(&self.tx, "reconnect_failed", json!({"attempt": attempts, "why": why}));
                    if Instant::now() >= deadline {
                        emit(&self.tx, "error", json!({"what": "reconnect", "why": "gave up"}));
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                    // Another hub right away; around the list, back off.
                    if index == self.url_index || self.urls.len() == 1 {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(4));
                    }
                }
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(media) = self.media.take() {
            let pc = media.pc;
            tokio::spawn(async move {
                let _ = pc.close().await;
            });
        }
    }
}

/// The next JSON message from the hub, or the close code.
async fn read(ws: &mut Ws) -> Result<Value, Closed> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                return serde_json::from_str(&t).map_err(|_| Closed(1007));
            }
            Some(Ok(Message::Close(frame))) => return Err(Closed(frame.map_or(1005, |f| u16::from(f.code)))),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return Err(Closed(1006)),
        }
    }
}

/// The `a=ice-ufrag` of an SDP (the first one).
fn ice_ufrag(sdp: &str) -> String {
    sdp.lines().find_map(|l| l.strip_prefix("a=ice-ufrag:")).unwrap_or_default().trim().to_owned()
}

/// Waits until ICE gathering completed more than `done` times (non-trickle: the SFU gets every candidate in the
/// offer), at most 5 s; returns the local description's SDP.
async fn gathering_done(pc: &Arc<dyn PeerConnection>, gathered: &AtomicU64, done: u64) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while gathered.load(Ordering::SeqCst) <= done && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let sdp = pc.local_description().await.ok_or("no local description")?.sdp;
    if !sdp.contains("a=candidate") {
        return Err(format!("no ICE candidate gathered within 5 s: {sdp}"));
    }
    Ok(sdp)
}

/// The peer connection's events: connection state changes, gathering, and received tracks.
struct Handler {
    generation: u64,
    tx: Events,
    gathered: Arc<AtomicU64>,
    tracks: mpsc::UnboundedSender<Arc<dyn TrackRemote>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.gathered.fetch_add(1, Ordering::SeqCst);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        emit(&self.tx, "pc_state", json!({"gen": self.generation, "state": state.to_string()}));
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        // Read elsewhere: blocking here would stall the connection's driver.
        let _ = self.tracks.send(track);
    }
}

/// A peer connection on loopback with Opus, whose received tracks are read and decoded into `audio`.
async fn build_pc(
    generation: u64,
    tx: &Events,
    gathered: &Arc<AtomicU64>,
    audio: &Arc<Mutex<Audio>>,
) -> Result<Arc<dyn PeerConnection>, String> {
    let mut media_engine = MediaEngine::default();
    media_engine.register_default_codecs().map_err(|e| e.to_string())?;
    let registry = register_default_interceptors(Registry::new(), &mut media_engine).map_err(|e| e.to_string())?;
    let (tracks_tx, mut tracks) = mpsc::unbounded_channel();
    let handler = Handler { generation, tx: tx.clone(), gathered: Arc::clone(gathered), tracks: tracks_tx };
    // No mDNS: the candidates are loopback addresses, and a test sends nothing beyond loopback (the default opens a
    // multicast socket).
    let settings = SettingEngineBuilder::new().with_multicast_dns_mode(MulticastDnsMode::Disabled).build();
    let pc = PeerConnectionBuilder::new()
        .with_setting_engine(settings)
        .with_media_engine(media_engine)
        .with_interceptor_registry(registry)
        .with_handler(Arc::new(handler))
        .with_udp_addrs(vec!["127.0.0.1:0"])
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let pc: Arc<dyn PeerConnection> = Arc::new(pc);
    let weak = Arc::downgrade(&pc);
    let tx = tx.clone();
    let audio = Arc::clone(audio);
    tokio::spawn(async move {
        while let Some(track) = tracks.recv().await {
            tokio::spawn(read_track(generation, track, weak.clone(), tx.clone(), Arc::clone(&audio)));
        }
    });
    Ok(pc)
}

/// The mid of the transceiver whose receiver carries `track`.
async fn mid_of(pc: &Arc<dyn PeerConnection>, track: &Arc<dyn TrackRemote>) -> Option<String> {
    let id = track.track_id().await;
    for transceiver in pc.get_transceivers().await {
        let Ok(Some(receiver)) = transceiver.receiver().await else { continue };
        if receiver.track().track_id().await == id {
            return transceiver.mid().await.ok().flatten();
        }
    }
    None
}

/// Reads one received track to its end: every RTP packet into `audio`, keyed by (generation, mid).
async fn read_track(
    generation: u64,
    track: Arc<dyn TrackRemote>,
    pc: std::sync::Weak<dyn PeerConnection>,
    tx: Events,
    audio: Arc<Mutex<Audio>>,
) {
    let mut mid: Option<String> = None;
    while let Some(event) = track.poll().await {
        let TrackRemoteEvent::OnRtpPacket(packet) = event else { continue };
        if mid.is_none() {
            let Some(pc) = pc.upgrade() else { return };
            mid = mid_of(&pc, &track).await;
            emit(&tx, "track", json!({"gen": generation, "mid": mid, "ssrc": packet.header.ssrc}));
        }
        let Some(mid) = &mid else { continue };
        let now = now_unix();
        audio.lock().expect("audio lock").packet(generation, mid, &packet, now);
    }
    emit(&tx, "track_ended", json!({"gen": generation, "mid": mid}));
}

/// Every received track's state, keyed by (peer connection generation, mid).
struct Audio {
    tx: Events,
    tracks: BTreeMap<(u64, String), TrackAudio>,
}

/// One (generation, mid): its RTP continuity, its decoder, and the current window's audio.
struct TrackAudio {
    ssrc: u32,
    decoder: opus::Decoder,
    last_seq: Option<u16>,
    last_ts: Option<u32>,
    packets: u64,
    /// Packets missing in the sequence (forward jumps of more than one).
    lost: u64,
    /// Packets that came with a sequence number not after the last one (duplicates, reordering, resets).
    out_of_order: u64,
    /// Packets whose timestamp did not advance by 960 per sequence number (a new talk spurt after silence, a jump).
    ts_jumps: u64,
    /// Opus packets libopus refused.
    decode_errors: u64,
    ssrc_changes: u64,
    pcm: Vec<i16>,
    frames: u64,
    first_loud: Option<f64>,
    last_loud: Option<f64>,
    max_loud_gap: f64,
    /// The last loud frame before this window (for gaps across windows).
    prev_loud: Option<f64>,
}

impl Audio {
    fn new(tx: Events) -> Self {
        Self { tx, tracks: BTreeMap::new() }
    }

    fn packet(&mut self, generation: u64, mid: &str, packet: &rtc::rtp::Packet, now: f64) {
        let header = &packet.header;
        let key = (generation, mid.to_owned());
        let track = match self.tracks.entry(key) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => match TrackAudio::new(header.ssrc) {
                Ok(t) => e.insert(t),
                Err(why) => {
                    emit(&self.tx, "error", json!({"what": "opus decoder", "why": why}));
                    return;
                }
            },
        };
        if track.ssrc != header.ssrc {
            // Another source on this slot: its own sequence; a fresh decoder.
            track.ssrc = header.ssrc;
            track.ssrc_changes += 1;
            track.last_seq = None;
            track.last_ts = None;
            if let Ok(decoder) = opus::Decoder::new(48_000, opus::Channels::Mono) {
                track.decoder = decoder;
            }
        }
        track.packets += 1;
        if let (Some(last_seq), Some(last_ts)) = (track.last_seq, track.last_ts) {
            let delta = header.sequence_number.wrapping_sub(last_seq);
            if delta == 0 || delta >= 0x8000 {
                track.out_of_order += 1;
                return;
            }
            track.lost += u64::from(delta - 1);
            if header.timestamp.wrapping_sub(last_ts) != FRAME_TICKS.wrapping_mul(u32::from(delta)) {
                track.ts_jumps += 1;
            }
        }
        track.last_seq = Some(header.sequence_number);
        track.last_ts = Some(header.timestamp);
        let mut out = [0i16; 5760];
        match track.decoder.decode(&packet.payload, &mut out, false) {
            Ok(n) => {
                let frame = &out[..n];
                track.pcm.extend_from_slice(frame);
                track.frames += 1;
                if rms(frame) > LOUD_FRAME_RMS {
                    if let Some(prev) = track.last_loud.or(track.prev_loud) {
                        track.max_loud_gap = track.max_loud_gap.max(now - prev);
                    }
                    track.first_loud.get_or_insert(now);
                    track.last_loud = Some(now);
                }
            }
            Err(_) => track.decode_errors += 1,
        }
    }

    /// One `audio` report per track for the window that just ended; starts the next window.
    fn report(&mut self) {
        let now = now_unix();
        for ((generation, mid), track) in &mut self.tracks {
            let pcm = std::mem::take(&mut track.pcm);
            let level = rms(&pcm);
            let freq = if pcm.len() >= 4800 { dominant_frequency(&pcm, 48_000.0) } else { None };
            let _ = self.tx.send(json!({
                "event": "audio",
                "t": now,
                "gen": generation,
                "mid": mid,
                "ssrc": track.ssrc,
                "freq": freq,
                "rms": level,
                "frames": track.frames,
                "first_loud_t": track.first_loud,
                "last_loud_t": track.last_loud,
                "max_loud_gap": if track.first_loud.is_some() { Some(track.max_loud_gap) } else { None },
                "rtp": {
                    "packets": track.packets,
                    "lost": track.lost,
                    "out_of_order": track.out_of_order,
                    "ts_jumps": track.ts_jumps,
                    "ssrc_changes": track.ssrc_changes,
                    "decode_errors": track.decode_errors,
                },
            }));
            track.frames = 0;
            if track.last_loud.is_some() {
                track.prev_loud = track.last_loud;
            }
            track.first_loud = None;
            track.last_loud = None;
            track.max_loud_gap = 0.0;
        }
    }
}

impl TrackAudio {
    fn new(ssrc: u32) -> Result<Self, String> {
        let decoder = opus::Decoder::new(48_000, opus::Channels::Mono).map_err(|e| e.to_string())?;
        Ok(Self {
            ssrc,
            decoder,
            last_seq: None,
            last_ts: None,
            packets: 0,
            lost: 0,
            out_of_order: 0,
            ts_jumps: 0,
            decode_errors: 0,
            ssrc_changes: 0,
            pcm: Vec::new(),
            frames: 0,
            first_loud: None,
            last_loud: None,
            max_loud_gap: 0.0,
            prev_loud: None,
        })
    }
}

async fn report_every_window(audio: Arc<Mutex<Audio>>) {
    let mut tick = tokio::time::interval(WINDOW);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        audio.lock().expect("audio lock").report();
    }
}

fn rms(pcm: &[i16]) -> f64 {
    if pcm.is_empty() {
        return 0.0;
    }
    let sum: f64 = pcm.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    (sum / pcm.len() as f64).sqrt()
}

/// The frequency (Hz) with the most energy between 50 Hz and 2 kHz: the PCM is averaged down by 6 (to 8 kHz, enough
/// for tones under 2 kHz and cheap in a debug build), Hann-windowed, scanned with the Goertzel algorithm every 5 Hz,
/// then around the best bin every 0.25 Hz.
fn dominant_frequency(pcm: &[i16], rate: f64) -> Option<f64> {
    const DECIMATE: usize = 6;
    let rate = rate / DECIMATE as f64;
    let samples: Vec<f64> =
        pcm.chunks_exact(DECIMATE).map(|c| c.iter().map(|&s| f64::from(s)).sum::<f64>() / DECIMATE as f64).collect();
    let n = samples.len();
    if n < 64 {
        return None;
    }
    let windowed: Vec<f64> = samples
        .iter()
        .enumerate()
        .map(|(i, s)| s * (0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / (n - 1) as f64).cos()))
        .collect();
    let power = |hz: f64| {
        let coeff = 2.0 * (2.0 * std::f64::consts::PI * hz / rate).cos();
        let (mut s1, mut s2) = (0.0, 0.0);
        for x in &windowed {
            let s0 = x + coeff * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        s1 * s1 + s2 * s2 - coeff * s1 * s2
    };
    let best = |from: f64, to: f64, step: f64| {
        let mut best = (from, f64::MIN);
        let mut hz = from;
        while hz <= to {
            let p = power(hz);
            if p > best.1 {
                best = (hz, p);
            }
            hz += step;
        }
        best
    };
    let (coarse, p) = best(50.0, 2000.0, 5.0);
    if p <= 0.0 {
        return None;
    }
    let (fine, _) = best(coarse - 5.0, coarse + 5.0, 0.25);
    Some((fine * 100.0).round() / 100.0)
}

#[cfg(test)]
mod tests {
    use super::dominant_frequency;

    #[test]
    fn goertzel_finds_a_sine_within_a_hertz() {
        for hz in [300.0, 440.0, 523.3, 660.0, 1000.0] {
            let pcm: Vec<i16> = (0..24_000)
                .map(|i| (8000.0 * (2.0 * std::f64::consts::PI * hz * f64::from(i) / 48_000.0).sin()) as i16)
                .collect();
            let found = dominant_frequency(&pcm, 48_000.0).expect("a frequency");
            assert!((found - hz).abs() < 1.0, "{hz} Hz found as {found} Hz");
        }
        assert_eq!(dominant_frequency(&[0; 100], 48_000.0), None);
    }
}
