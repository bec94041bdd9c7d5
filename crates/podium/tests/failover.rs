//! Issue #4's acceptance tests: a live room survives losing the hub that runs its media. Two `podium serve`
//! processes (hub A and hub B, media enabled) share a `redis-server` started here (AOF, `appendfsync always`). A
//! moderator on a plain websocket creates the room on A, so A holds the room's lease and runs its media. An aiortc
//! speaker on B (its negotiation relayed to A) is promoted and sends 440 Hz; an aiortc listener on A raises a hand
//! and decodes the tone. The peers run `tests/media/peer.py --auto-reconnect` with both hubs' URLs, as an app would:
//! they reconnect and resume after a dropped websocket or 4007, and negotiate a new peer connection when the room's
//! media epoch changes. The moderator reconnects to B by hand.
//!
//! - `kill -9` of A: everyone formerly on A resumes on B within 3 s, roles and hand position intact, B takes the
//!   media over and the listener hears the tone again.
//! - SIGTERM of A (drain): everyone formerly on A ends up on B with its role, the listener never misses the tone
//!   for more than 3 s, and A exits by itself with status 0.
//!
//! Two more without aiortc, on the protocol alone (issue #10):
//!
//! - a Redis outage (paused or killed for 10 s, six times) moves no media: the lease and the media epoch stay with
//!   the hub that had them, and no client sees `media_moved`;
//! - presence follows a session that resumes on another hub at once, so that a later drain (or hub death) takes
//!   nobody for gone: no `stage` event with cause `disconnected` or `reconnected`.
//!
//! Needs `redis-server` on PATH and the aiortc venv (see `tests/it/aiortc.rs`; `tests/run` sets both up). The
//! tests run one at a time: each runs two or three hubs, Redis, and some two aiortc peers whose audio numbers are
//! strict.

use std::collections::VecDeque;
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use podium_hub::Role;
use podium_hub::auth::{TokenKeys, claims_for};
use podium_store::redis_server::RedisServer;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

// The aiortc harness of the end-to-end tests, shared with `tests/it` (it needs that crate's `support` module).
#[allow(dead_code)]
#[path = "../../../tests/it/aiortc.rs"]
mod aiortc;
#[allow(dead_code)]
#[path = "../../../tests/it/support.rs"]
mod support;

use aiortc::{HEAR_TIMEOUT, Peer, TOLERANCE_HZ, is_tone, longest_silence, now_unix, require_aiortc};

const SECRET: &str = "failover-secret";
/// Clients formerly on the lost hub must have resumed on the other within this long (seconds).
const RESUME_WITHIN: f64 = 3.0;
/// The longest the listener may go without hearing the tone during a drain (seconds).
const MAX_DRAIN_GAP: f64 = 3.0;
/// A draining hub must exit by itself within this long of SIGTERM.
const EXIT_WITHIN: Duration = Duration::from_secs(10);
/// Setup steps (process start, first Redis connection, a peer's `ready`) may take this long on a loaded machine.
const SETUP: Duration = Duration::from_secs(30);
/// Waiting for things after the hub was lost; the assertions on the times are separate and strict.
const AFTER: Duration = Duration::from_secs(20);

/// The tests run one at a time (see the module comment).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A `podium serve` child process with media on ephemeral loopback UDP ports; killed on drop.
struct HubProcess {
    name: &'static str,
    child: Child,
    /// Its websocket URL (as it printed it).
    url: String,
    /// Its SFU's UDP addresses (as it printed them).
    media: String,
    /// What it records in the node registry (`server.public_url`), to find its node id there.
    public_url: String,
    /// The last lines of its log (stderr), printed when a test fails.
    log: Arc<Mutex<VecDeque<String>>>,
}

impl HubProcess {
    async fn start(name: &'static str, store: &str) -> Self {
        let public_url = format!("ws://{name}.failover.invalid/v1/ws");
        let mut child = Command::new(env!("CARGO_BIN_EXE_podium"))
            .args(["serve", "--listen", "127.0.0.1:0", "--store", store])
            .env_remove("PODIUM_CONFIG")
            .env("PODIUM_AUTH__SECRET", SECRET)
            .env("PODIUM_MEDIA__ENABLED", "true")
            .env("PODIUM_MEDIA__BIND", "127.0.0.1")
            .env("PODIUM_MEDIA__PORT", "0")
            .env("PODIUM_MEDIA__WORKERS", "1")
            .env("PODIUM_SERVER__PUBLIC_URL", &public_url)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start podium serve");
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let tail = Arc::clone(&log);
        let stderr = child.stderr.take().expect("piped stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut tail = tail.lock().expect("log lock");
                if tail.len() == 400 {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        });
        // stdout: the websocket URL, then the media line; drained to the end so the hub never blocks on it.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let stdout = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut process = Self { name, child, url: String::new(), media: String::new(), public_url, log };
        let deadline = Instant::now() + SETUP;
        while process.url.is_empty() || process.media.is_empty() {
            let line = tokio::time::timeout_at(deadline, rx.recv()).await.ok().flatten();
            let Some(line) = line else { panic!("{name}: no URL and media line from podium serve within {SETUP:?}") };
            if let Some(url) = line.strip_prefix("Podium is listening: ") {
                process.url = url.trim().to_owned();
            } else if let Some(media) = line.strip_prefix("Media (WebRTC audio, UDP): ") {
                process.media = media.trim().to_owned();
            } else if line.starts_with("Media: disabled") {
                panic!("{name}: media is disabled");
            }
        }
        process
    }

    /// Its node id, read from the node registry once it has heartbeat (which also shows it reaches Redis).
    async fn node_id(&self, redis: &RedisServer) -> String {
        let deadline = Instant::now() + SETUP;
        loop {
            let reply = redis.command(&["HGETALL", "podium:nodes"]);
            // `*N`, then `$len` / value lines: id, record, id, record, ...
            let values: Vec<&str> =
                reply.split("\r\n").filter(|l| !l.is_empty() && !l.starts_with('*') && !l.starts_with('$')).collect();
            if let Some(pair) = values.chunks(2).find(|pair| pair.len() == 2 && pair[1].contains(&self.public_url)) {
                return pair[0].to_owned();
            }
            assert!(Instant::now() < deadline, "{} never heartbeat into the node registry: {reply:?}", self.name);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn sigterm(&self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("running kill");
        assert!(status.success(), "kill -TERM {}: {status}", self.child.id());
    }

    /// Its exit status, if it exits within `limit`.
    async fn exit_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn log_tail(&self) -> String {
        self.log.lock().map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n")).unwrap_or_default()
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- {} ({}, media {}) log tail:\n{}", self.name, self.url, self.media, self.log_tail());
        }
        self.kill9();
    }
}

fn token(room: &str, identity: &str, role: Role) -> String {
    TokenKeys::new(SECRET.as_bytes())
        .mint(&claims_for(identity, Some(&identity.to_uppercase()), room, role, Duration::from_secs(600)))
        .expect("mint")
}

/// The moderator's client: a plain websocket speaking raw JSON, as a third-party app would.
struct Ws {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    /// Messages read while waiting for something else.
    seen: Vec<Value>,
}

impl Ws {
    async fn connect(url: &str) -> Result<Self, String> {
        let (ws, _) = tokio_tungstenite::connect_async(url).await.map_err(|e| e.to_string())?;
        Ok(Self { ws, next_id: 1, seen: Vec::new() })
    }

    /// The next JSON message, or the close code (1006 when the connection ended without a close frame).
    async fn read(&mut self, deadline: Instant) -> Result<Value, u16> {
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next()).await.expect("timed out waiting for a message");
            match msg {
                Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(&t).expect("hub sent invalid JSON")),
                Some(Ok(Message::Close(frame))) => return Err(frame.map_or(1005, |f| u16::from(f.code))),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Err(1006),
            }
        }
    }

    async fn request(&mut self, mut body: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        body["id"] = json!(id);
        self.ws.send(Message::Text(body.to_string().into())).await.expect("send");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let msg = self.read(deadline).await.unwrap_or_else(|code| panic!("closed ({code}) before the reply"));
            if (msg["type"] == "ok" || msg["type"] == "error") && msg["id"] == json!(id) {
                return msg;
            }
            self.seen.push(msg);
        }
    }

    async fn ok(&mut self, body: Value) -> Value {
        let reply = self.request(body.clone()).await;
        assert_eq!(reply["type"], "ok", "moderator: expected ok for {body}, got {reply}");
        reply
    }

    async fn event(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.seen.iter().position(&pred) {
            return self.seen.remove(i);
        }
        let deadline = Instant::now() + AFTER;
        loop {
            let msg = self.read(deadline).await.unwrap_or_else(|code| panic!("closed ({code}) waiting for {what}"));
            if pred(&msg) {
                return msg;
            }
            self.seen.push(msg);
        }
    }

    /// Reads until the connection ends (keeping what it read in `seen`); returns the close code.
    async fn closed(&mut self, limit: Duration) -> u16 {
        let deadline = Instant::now() + limit;
        loop {
            match self.read(deadline).await {
                Ok(msg) => self.seen.push(msg),
                Err(code) => {
                    // Complete the closing handshake, as a well-behaved client does (the hub waits for it).
                    let _ = self.ws.close(None).await;
                    return code;
                }
            }
        }
    }
}

/// Connects to `url` and joins (resuming with `resume` if given), retrying while the hub is not up or not connected
/// to Redis yet; returns the client and the welcome.
async fn join(url: &str, room: &str, identity: &str, role: Role, resume: Option<&str>) -> (Ws, Value) {
    let deadline = Instant::now() + SETUP;
    loop {
        let last = match Ws::connect(url).await {
            Ok(mut ws) => {
                let mut join = json!({"type": "join", "token": token(room, identity, role)});
                if let Some(resume) = resume {
                    join["resume"] = json!(resume);
                }
                let reply = ws.request(join).await;
                if reply["type"] == "ok" {
                    return (ws, reply["result"].clone());
                }
                assert_eq!(reply["code"], "unavailable", "join of {identity} on {url}: {reply}");
                reply.to_string()
            }
            Err(e) => e,
        };
        assert!(Instant::now() < deadline, "{identity} could not join on {url} within {SETUP:?}: {last}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A Redis string value (`GET`), or "" when missing.
fn redis_get(redis: &RedisServer, key: &str) -> String {
    let reply = redis.command(&["GET", key]);
    reply.split("\r\n").nth(1).unwrap_or_default().to_owned()
}

fn lease_holder(redis: &RedisServer, room: &str) -> String {
    redis_get(redis, &format!("podium:{{{room}}}:owner"))
}

/// A room live on two hubs: the moderator (on A, which created the room and runs its media), a promoted, unmuted
/// speaker sending 440 Hz (on B), a listener with a raised hand who hears the tone (on A).
struct LiveRoom {
    room: &'static str,
    redis: RedisServer,
    a: HubProcess,
    b: HubProcess,
    a_id: String,
    b_id: String,
    m: Ws,
    m_resume: String,
    spk: Peer,
    lis: Peer,
    /// The room's media epoch while A runs its media.
    epoch: u64,
}

/// Two hubs on a new Redis, and a moderator who created `room` on A (A's room task claims the lease before
/// welcoming it): Redis, A, B, their node ids, the moderator, its welcome and the room's media epoch.
async fn two_hubs_and_a_room(room: &str) -> (RedisServer, HubProcess, HubProcess, String, String, Ws, Value, u64) {
    let redis = RedisServer::start();
    let a = HubProcess::start("hub-a", &redis.url()).await;
    let b = HubProcess::start("hub-b", &redis.url()).await;
    let a_id = a.node_id(&redis).await;
    let b_id = b.node_id(&redis).await;
    let (m, welcome) = join(&a.url, room, "mod", Role::Moderator, None).await;
    let epoch = welcome["state"]["media_epoch"].as_u64().unwrap_or(0);
    assert!(epoch > 0, "the welcome has no media epoch: {welcome}");
    assert_eq!(lease_holder(&redis, room), a_id, "hub A created the room, so it should hold its lease");
    (redis, a, b, a_id, b_id, m, welcome, epoch)
}

async fn live_room(room: &'static str) -> LiveRoom {
    require_aiortc();
    let (redis, a, b, a_id, b_id, mut m, welcome, epoch) = two_hubs_and_a_room(room).await;
    let m_resume = welcome["resume_token"].as_str().expect("resume token").to_owned();

    // Both peers know both hubs; the speaker starts on B (its media relayed to A), the listener on A.
    let urls = format!("{},{}", a.url, b.url);
    let common = ["--urls", urls.as_str(), "--auto-reconnect"];
    let mut spk = Peer::spawn_at(
        "spk",
        &b.url,
        &token(room, "spk", Role::Speaker),
        &[&["--tone", "440"][..], &common[..]].concat(),
    );
    let mut lis =
        Peer::spawn_at("lis", &a.url, &token(room, "lis", Role::Speaker), &[&["--recv"][..], &common[..]].concat());
    spk.ready().await;
    lis.ready().await;
    for p in [&spk, &lis] {
        let joined = p.seen_events("joined").next().expect("a welcome");
        assert_eq!(joined["welcome"]["state"]["media_epoch"], json!(epoch), "{}: {joined}", p.name);
    }

    // The speaker raises a hand, the moderator approves it, the speaker unmutes.
    spk.ok(json!({"type": "raise_hand"})).await;
    m.event("spk's raised hand", |e| {
        e["type"] == "hand_queue" && e["queue"]["hands"].as_array().is_some_and(|h| h.iter().any(|x| x["id"] == "spk"))
    })
    .await;
    m.ok(json!({"type": "approve_hand", "participant": "spk"})).await;
    spk.wait_for("promotion", SETUP, |v| {
        v["event"] == "ws" && v["msg"]["type"] == "you" && v["msg"]["you"]["role"] == "speaker"
    })
    .await;
    spk.ok(json!({"type": "set_muted", "muted": false})).await;
    // The listener raises a hand: first in the queue.
    let hand = lis.ok(json!({"type": "raise_hand"})).await;
    assert_eq!(hand["result"]["position"], 1, "lis's hand: {hand}");

    let (mid, _) = lis.until_heard(440.0, HEAR_TIMEOUT).await;
    eprintln!("setup: lis hears spk's 440 Hz on mid {mid} (media on hub A, epoch {epoch}; spk's media relayed by B)");
    LiveRoom { room, redis, a, b, a_id, b_id, m, m_resume, spk, lis, epoch }
}

/// The first `renegotiated` line of `p` (seen already, or waited for), which must be for `epoch`.
async fn renegotiated(p: &mut Peer, epoch: u64) -> Value {
    let seen = p.seen_events("renegotiated").next().cloned();
    let line = match seen {
        Some(line) => line,
        None => p.wait_for("`renegotiated`", AFTER, |v| v["event"] == "renegotiated").await,
    };
    assert_eq!(line["epoch"], json!(epoch), "{}: renegotiated for another epoch: {line}", p.name);
    line
}

/// Exactly one renegotiation per new epoch: `p` renegotiated once, for `epoch`.
fn renegotiated_once(p: &Peer, epoch: u64) {
    let all: Vec<&Value> = p.seen_events("renegotiated").collect();
    assert!(all.len() == 1 && all[0]["epoch"] == json!(epoch), "{}: renegotiations {all:?}", p.name);
}

/// Waits until `p` hears 440 Hz steadily on a peer connection of generation `generation` or later; returns the time
/// of the first loud frame of that steady run.
async fn tone_back(p: &mut Peer, generation: u64) -> f64 {
    let Some((_, run)) = p.steady_tone(440.0, TOLERANCE_HZ, generation, HEAR_TIMEOUT).await else {
        panic!(
            "{}: no steady 440 Hz on a peer connection ≥ {generation} within {HEAR_TIMEOUT:?}\n{}",
            p.name,
            p.diagnostics()
        );
    };
    run[0]["first_loud_t"].as_f64().expect("a loud report has first_loud_t")
}

fn you(state: &Value) -> (String, Option<u64>, bool) {
    let you = &state["you"];
    (you["role"].as_str().unwrap_or_default().to_owned(), you["hand_position"].as_u64(), you["muted"] == true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_media_hub_resumes_everyone_on_the_other_hub_and_audio_comes_back() {
    let _serial = SERIAL.lock().await;
    let LiveRoom { room, redis, mut a, b, b_id, mut m, m_resume, mut spk, mut lis, epoch, .. } =
        live_room("failover-kill").await;

    let killed_at = now_unix();
    a.kill9();
    eprintln!("kill -9 of hub A (media hub)");

    // The moderator's websocket (on A) drops; it reconnects to B at once and resumes.
    let code = m.closed(AFTER).await;
    assert_eq!(code, 1006, "the moderator's websocket should just drop");
    drop(m);
    let (mut m, welcome) = join(&b.url, room, "mod", Role::Moderator, Some(&m_resume)).await;
    let m_after = now_unix() - killed_at;
    assert_eq!(welcome["resumed"], true, "the moderator should resume on B: {welcome}");
    assert_eq!(you(&welcome["state"]).0, "moderator", "{welcome}");

    // The listener (on A) reconnects to B by itself and resumes, hand still raised first in the queue.
    let rec = lis.wait_for("`reconnected`", AFTER, |v| v["event"] == "reconnected").await;
    let lis_after = rec["t"].as_f64().expect("t") - killed_at;
    assert_eq!((&rec["url"], &rec["resumed"]), (&json!(b.url), &json!(true)), "lis: {rec}");
    let welcome = lis.seen_events("joined").last().expect("the welcome on B")["welcome"].clone();
    assert_eq!(you(&welcome["state"]), ("audience".to_owned(), Some(1), true), "lis's welcome on B: {welcome}");
    eprintln!(
        "resumed on B: moderator {m_after:.3} s, lis {lis_after:.3} s after the kill ({} attempts)",
        rec["attempts"]
    );
    assert!(m_after <= RESUME_WITHIN, "the moderator resumed {m_after:.3} s after the kill (limit {RESUME_WITHIN} s)");
    assert!(lis_after <= RESUME_WITHIN, "lis resumed {lis_after:.3} s after the kill (limit {RESUME_WITHIN} s)");

    // B takes the lease over, the epoch moves on, and both peers negotiate anew with B's SFU, once.
    let spk_new = renegotiated(&mut spk, epoch + 1).await;
    let lis_new = renegotiated(&mut lis, epoch + 1).await;
    let moved_at = spk.seen_events("ws").find(|v| v["msg"]["type"] == "media_moved").and_then(|v| v["t"].as_f64());
    let back = tone_back(&mut lis, lis_new["gen"].as_u64().expect("gen")).await;
    let last_before = lis
        .seen_events("audio")
        .filter_map(|r| r["last_loud_t"].as_f64())
        .filter(|t| *t <= killed_at + 0.5)
        .fold(f64::NAN, f64::max);
    eprintln!(
        "after the kill: media_moved at spk {:.3} s; spk renegotiated {:.3} s, lis {:.3} s; 440 Hz back at lis {:.3} s \
         (audio gap {:.3} s from the last loud frame before the kill)",
        moved_at.map_or(f64::NAN, |t| t - killed_at),
        spk_new["t"].as_f64().unwrap_or(f64::NAN) - killed_at,
        lis_new["t"].as_f64().unwrap_or(f64::NAN) - killed_at,
        back - killed_at,
        back - last_before,
    );
    assert_eq!(lease_holder(&redis, room), b_id, "hub B should hold the room's lease now");

    // Past the point where B finds A gone from the node registry (3 s without heartbeat): nobody who resumed is
    // taken for gone with it.
    let settle = killed_at + 5.0 - now_unix();
    if settle > 0.0 {
        lis.collect(Duration::from_secs_f64(settle)).await;
    }
    let state = spk.ok(json!({"type": "get_state"})).await["result"].clone();
    assert_eq!(you(&state), ("speaker".to_owned(), None, false), "spk's state on B: {state}");
    assert_eq!(state["media_epoch"], json!(epoch + 1), "{state}");
    let state = lis.ok(json!({"type": "get_state"})).await["result"].clone();
    assert_eq!(you(&state), ("audience".to_owned(), Some(1), true), "lis's state on B: {state}");
    assert_eq!(state["media_epoch"], json!(epoch + 1), "{state}");
    let state = m.ok(json!({"type": "get_state"})).await["result"].clone();
    let stage: Vec<(String, String, bool, bool)> = state["stage"]
        .as_array()
        .expect("stage")
        .iter()
        .map(|s| {
            let id = s["id"].as_str().unwrap_or_default().to_owned();
            (id, s["role"].as_str().unwrap_or_default().to_owned(), s["muted"] == true, s["connected"] == true)
        })
        .collect();
    assert_eq!(
        stage,
        [("mod".to_owned(), "moderator".to_owned(), true, true), ("spk".to_owned(), "speaker".to_owned(), false, true)],
        "the stage after the failover: {state}"
    );
    assert_eq!(state["hands"]["hands"][0]["id"], "lis", "the hand queue after the failover: {state}");
    assert_eq!(state["counts"]["total"], 3, "{state}");

    // Still hearing it, and each peer renegotiated exactly once.
    let more = lis.collect(Duration::from_millis(1500)).await;
    assert!(more.iter().filter(|r| is_tone(r, 440.0, TOLERANCE_HZ)).count() >= 2, "lis lost the tone again: {more:?}");
    renegotiated_once(&spk, epoch + 1);
    renegotiated_once(&lis, epoch + 1);
    drop((spk, lis, b, redis));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_media_hub_without_an_audio_gap_and_everyone_resumes_on_the_other_hub() {
    let _serial = SERIAL.lock().await;
    let LiveRoom { room, redis, mut a, b, a_id, b_id, mut m, m_resume, mut spk, mut lis, epoch } =
        live_room("failover-drain").await;

    let term_at = now_unix();
    a.sigterm();
    eprintln!("SIGTERM to hub A (media hub): drain");

    // The moderator (on A) is told 4007 and moves to B.
    let code = m.closed(AFTER).await;
    let m_closed = now_unix() - term_at;
    assert_eq!(code, 4007, "the moderator's websocket should close with server_shutdown");
    drop(m);
    let (mut m, welcome) = join(&b.url, room, "mod", Role::Moderator, Some(&m_resume)).await;
    let m_after = now_unix() - term_at;
    assert_eq!(welcome["resumed"], true, "the moderator should resume on B: {welcome}");
    assert_eq!(you(&welcome["state"]).0, "moderator", "{welcome}");

    // The listener (on A) is told 4007 too and moves to B by itself.
    let rec = lis.wait_for("`reconnected`", AFTER, |v| v["event"] == "reconnected").await;
    let lis_after = rec["t"].as_f64().expect("t") - term_at;
    assert_eq!((&rec["url"], &rec["resumed"], &rec["code"]), (&json!(b.url), &json!(true), &json!(4007)), "lis: {rec}");
    let welcome = lis.seen_events("joined").last().expect("the welcome on B")["welcome"].clone();
    assert_eq!(you(&welcome["state"]), ("audience".to_owned(), Some(1), true), "lis's welcome on B: {welcome}");
    assert_eq!(welcome["state"]["media_epoch"], json!(epoch + 1), "{welcome}");

    // The media moved to B once: each peer renegotiated once, for the next epoch.
    let spk_new = renegotiated(&mut spk, epoch + 1).await;
    let lis_new = renegotiated(&mut lis, epoch + 1).await;
    let status = a.exit_within(EXIT_WITHIN).await;
    let exited = now_unix() - term_at;
    let status = status.unwrap_or_else(|| panic!("hub A did not exit within {EXIT_WITHIN:?} of SIGTERM"));
    assert!(status.success(), "hub A exited with {status}");
    assert_eq!(lease_holder(&redis, room), b_id, "hub B should hold the room's lease now (A was {a_id})");

    // The listener hears the tone all along (on its first peer connection, then on its second): no silence longer
    // than MAX_DRAIN_GAP from just before SIGTERM until well after everyone moved.
    tone_back(&mut lis, lis_new["gen"].as_u64().expect("gen")).await;
    let until = term_at.max(rec["t"].as_f64().unwrap_or(term_at)).max(lis_new["t"].as_f64().unwrap_or(term_at)) + 3.0;
    let wait = until + 0.6 - now_unix();
    if wait > 0.0 {
        lis.collect(Duration::from_secs_f64(wait)).await;
    }
    // Over all of lis's peer connections and tracks; a report's longest wait between two loud frames counts whole
    // even when it runs on past `until`.
    let (gap, gap_at) = longest_silence(lis.seen_events("audio"), term_at - 0.5, until, f64::INFINITY);
    eprintln!(
        "drain: moderator closed (4007) at {m_closed:.3} s, resumed on B at {m_after:.3} s; lis renegotiated at \
         {:.3} s (seen {:.3} s), reconnected (4007) at {lis_after:.3} s; spk renegotiated at {:.3} s; hub A exited \
         ({status}) at {exited:.3} s; lis's longest silence {gap:.3} s, from {:.3} s",
        lis_new["t"].as_f64().unwrap_or(f64::NAN) - term_at,
        lis_new["started"].as_f64().unwrap_or(f64::NAN) - term_at,
        spk_new["t"].as_f64().unwrap_or(f64::NAN) - term_at,
        gap_at - term_at,
    );
    for r in lis.seen_events("audio").filter(|r| r["t"].as_f64().is_some_and(|t| t >= term_at - 0.5 && t <= until)) {
        let rel = |key: &str| r[key].as_f64().map_or("-".to_owned(), |t| format!("{:.3}", t - term_at));
        eprintln!(
            "  lis report at {}: gen {} mid {} freq {} rms {} frames {} loud {}..{} (longest wait between loud frames \
             {})",
            rel("t"),
            r["gen"],
            r["mid"],
            r["freq"],
            r["rms"],
            r["frames"],
            rel("first_loud_t"),
            rel("last_loud_t"),
            r["max_loud_gap"]
        );
    }
    assert!(gap <= MAX_DRAIN_GAP, "lis heard no tone for {gap:.3} s during the drain (limit {MAX_DRAIN_GAP} s)");

    // Roles on B.
    let state = spk.ok(json!({"type": "get_state"})).await["result"].clone();
    assert_eq!(you(&state), ("speaker".to_owned(), None, false), "spk's state on B: {state}");
    let state = m.ok(json!({"type": "get_state"})).await["result"].clone();
    assert_eq!(state["hands"]["hands"][0]["id"], "lis", "the hand queue after the drain: {state}");
    assert_eq!(state["media_epoch"], json!(epoch + 1), "{state}");
    renegotiated_once(&spk, epoch + 1);
    renegotiated_once(&lis, epoch + 1);
    drop((spk, lis, b, redis));
}

impl Ws {
    /// Reads for `window`, keeping everything in `seen`; the close code if the connection ended.
    async fn gather(&mut self, window: Duration) -> Option<u16> {
        let deadline = Instant::now() + window;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return None,
                Ok(Some(Ok(Message::Text(t)))) => {
                    self.seen.push(serde_json::from_str(&t).expect("hub sent invalid JSON"))
                }
                Ok(Some(Ok(Message::Close(frame)))) => {
                    let _ = self.ws.close(None).await;
                    return Some(frame.map_or(1005, |f| u16::from(f.code)));
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_)) | None) => return Some(1006),
            }
        }
    }

    /// The `stage` events seen whose cause is `disconnected` or `reconnected`.
    fn drops_seen(&self) -> Vec<Value> {
        self.seen
            .iter()
            .filter(|e| {
                e["type"] == "stage" && matches!(e["cause"]["kind"].as_str(), Some("disconnected" | "reconnected"))
            })
            .cloned()
            .collect()
    }
}

/// A Redis hash (`HGETALL`) as field → value.
fn redis_hash(redis: &RedisServer, key: &str) -> std::collections::BTreeMap<String, String> {
    let reply = redis.command(&["HGETALL", key]);
    let values: Vec<&str> =
        reply.split("\r\n").filter(|l| !l.is_empty() && !l.starts_with('*') && !l.starts_with('$')).collect();
    values.chunks_exact(2).map(|pair| (pair[0].to_owned(), pair[1].to_owned())).collect()
}

/// The room's media key, `(epoch, node)`.
fn media_of(redis: &RedisServer, room: &str) -> (u64, String) {
    let value = redis_get(redis, &format!("podium:{{{room}}}:media"));
    let (epoch, node) = value.split_once(' ').unwrap_or(("0", ""));
    (epoch.parse().unwrap_or(0), node.to_owned())
}

/// Issue #10 (a): a Redis outage moves no media. Two hubs, a room created on A (A holds its lease and runs its
/// media) with a client on each hub, so both hubs' room tasks contend for the lease. Redis goes away for 10 s,
/// alternately paused (SIGSTOP: connections stay open, commands stall and run when it wakes) and killed and
/// restarted on the same port (its AOF keeps the keys), three times each. Each time, once Redis is back, both hubs race
/// for the lapsed lease: A must get it back in the same media epoch, and no client may see `media_moved`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_moves_no_media() {
    let _serial = SERIAL.lock().await;
    let room = "outage-stays";
    let (mut redis, a, b, a_id, b_id, mut on_a, _, epoch) = two_hubs_and_a_room(room).await;
    let (mut on_b, welcome) = join(&b.url, room, "lis", Role::Audience, None).await;
    assert_eq!(welcome["state"]["media_epoch"], json!(epoch), "{welcome}");

    for round in 1..=6 {
        let paused = round % 2 == 1;
        if paused {
            redis.pause();
        } else {
            redis.kill9();
        }
        let how = if paused { "paused (SIGSTOP)" } else { "killed" };
        eprintln!("round {round}: redis {how} for 10 s");
        // Both clients stay connected throughout (the hubs serve them degraded).
        for ws in [&mut on_a, &mut on_b] {
            assert_eq!(ws.gather(Duration::from_secs(5)).await, None, "a client was disconnected in round {round}");
        }
        if paused {
            redis.resume();
        } else {
            redis.restart();
        }
        let back = Instant::now();
        // Somebody holds the lease again once the hubs are reconnected; then give a contender more than the grace
        // window (3 s) to take it, had it been allowed to.
        let deadline = back + SETUP;
        while lease_holder(&redis, room).is_empty() {
            assert!(Instant::now() < deadline, "round {round}: nobody claimed the lease after the outage");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let claimed = back.elapsed();
        for ws in [&mut on_a, &mut on_b] {
            assert_eq!(ws.gather(Duration::from_secs(3)).await, None, "a client was disconnected in round {round}");
        }
        let holder = lease_holder(&redis, room);
        let media = media_of(&redis, room);
        eprintln!(
            "round {round}: lease re-claimed {:.3} s after redis came back, by {}; media key {media:?}",
            claimed.as_secs_f64(),
            if holder == a_id { "A" } else { "B" }
        );
        assert_eq!(media, (epoch, a_id.clone()), "round {round}: the media moved (A is {a_id}, B is {b_id})");
        assert_eq!(holder, a_id, "round {round}: the lease went to B ({b_id}), though A never died");
        for ws in [&on_a, &on_b] {
            let moved: Vec<&Value> = ws.seen.iter().filter(|e| e["type"] == "media_moved").collect();
            assert!(moved.is_empty(), "round {round}: a client was told the media moved: {moved:?}");
        }
    }
    for ws in [&mut on_a, &mut on_b] {
        let state = ws.ok(json!({"type": "get_state"})).await["result"].clone();
        assert_eq!(state["media_epoch"], json!(epoch), "{state}");
    }
    drop((a, b, redis));
}

/// Issue #10 (b): presence follows the connection at once. Two stage members on hub A and an audience member on
/// hub B. A drains (SIGTERM): its clients are closed with 4007 and resume on B while the room still counts them as
/// connected (a takeover: no transition). The room's presence must name B for them at once. Then a third hub C
/// starts and B drains too: C takes the room's lease over and checks presence against the node registry, where A is
/// gone. Nobody may be taken for gone on the way: no `stage` event with cause `disconnected` or `reconnected`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_follows_resumed_sessions_and_drains_disconnect_nobody() {
    let _serial = SERIAL.lock().await;
    let room = "presence-follows";
    let redis = RedisServer::start();
    let mut a = HubProcess::start("hub-a", &redis.url()).await;
    let mut b = HubProcess::start("hub-b", &redis.url()).await;
    let a_id = a.node_id(&redis).await;
    let b_id = b.node_id(&redis).await;
    let presence_key = format!("podium:{{{room}}}:presence");

    let (m, welcome) = join(&a.url, room, "mod", Role::Moderator, None).await;
    let mut resume = std::collections::HashMap::new();
    resume.insert("mod", welcome["resume_token"].as_str().expect("resume token").to_owned());
    // A moderator token joins onto the stage.
    let (spk, welcome) = join(&a.url, room, "spk", Role::Moderator, None).await;
    resume.insert("spk", welcome["resume_token"].as_str().expect("resume token").to_owned());
    let (mut obs, welcome) = join(&b.url, room, "obs", Role::Audience, None).await;
    let obs_resume = welcome["resume_token"].as_str().expect("resume token").to_owned();
    let stage: Vec<&str> =
        welcome["state"]["stage"].as_array().expect("stage").iter().filter_map(|s| s["id"].as_str()).collect();
    assert_eq!(stage, ["mod", "spk"], "{welcome}");
    let before = redis_hash(&redis, &presence_key);
    assert_eq!(before.get("mod"), Some(&a_id), "presence before the drain: {before:?}");

    // A drains: its clients are told 4007 and resume on B.
    a.sigterm();
    let mut moved = Vec::new();
    for (name, mut ws) in [("mod", m), ("spk", spk)] {
        assert_eq!(ws.closed(AFTER).await, 4007, "{name} should be closed with server_shutdown");
        let (mut again, welcome) = join(&b.url, room, name, Role::Moderator, Some(&resume[name])).await;
        assert_eq!(welcome["resumed"], true, "{name} should resume on B: {welcome}");
        resume.insert(name, welcome["resume_token"].as_str().expect("resume token").to_owned());
        again.seen.append(&mut ws.seen);
        moved.push((name, again));
    }
    let presence = redis_hash(&redis, &presence_key);
    assert_eq!(presence.get("mod"), Some(&b_id), "presence right after mod resumed on B (A is {a_id}): {presence:?}");
    assert_eq!(presence.get("spk"), Some(&b_id), "presence right after spk resumed on B (A is {a_id}): {presence:?}");
    let status = a.exit_within(EXIT_WITHIN).await.expect("hub A exits after its drain");
    assert!(status.success(), "hub A exited with {status}");

    // C starts; B drains; C adopts the room (A is gone from the registry by then) and everyone resumes on C.
    let c = HubProcess::start("hub-c", &redis.url()).await;
    let c_id = c.node_id(&redis).await;
    // Let B see A gone from the registry (3 s without heartbeat).
    obs.gather(Duration::from_secs(4)).await;
    b.sigterm();
    let (_, m) = moved.remove(0);
    let (_, spk) = moved.remove(0);
    let mut finals = Vec::new();
    for (name, mut ws, token) in
        [("mod", m, resume["mod"].clone()), ("spk", spk, resume["spk"].clone()), ("obs", obs, obs_resume)]
    {
        assert_eq!(ws.closed(AFTER).await, 4007, "{name} should be closed with server_shutdown by B");
        let role = if name == "obs" { Role::Audience } else { Role::Moderator };
        let (mut again, welcome) = join(&c.url, room, name, role, Some(&token)).await;
        assert_eq!(welcome["resumed"], true, "{name} should resume on C: {welcome}");
        again.seen.append(&mut ws.seen);
        finals.push((name, again));
    }
    assert_eq!(lease_holder(&redis, room), c_id, "hub C should hold the room's lease");
    let status = b.exit_within(EXIT_WITHIN).await.expect("hub B exits after its drain");
    assert!(status.success(), "hub B exited with {status}");
    // Past C's registry reading that finds B gone.
    for (_, ws) in &mut finals {
        ws.gather(Duration::from_millis(1500)).await;
    }
    finals[2].1.gather(Duration::from_secs(3)).await;
    let presence = redis_hash(&redis, &presence_key);
    for name in ["mod", "spk", "obs"] {
        assert_eq!(presence.get(name), Some(&c_id), "presence at the end: {presence:?}");
    }
    for (name, ws) in &finals {
        let drops = ws.drops_seen();
        assert!(drops.is_empty(), "{name} saw stage members taken for disconnected: {drops:?}");
    }
    let state = finals[0].1.ok(json!({"type": "get_state"})).await["result"].clone();
    let connected: Vec<bool> =
        state["stage"].as_array().expect("stage").iter().map(|s| s["connected"] == true).collect();
    assert_eq!(connected, [true, true], "{state}");
    for hub in [&b, &c] {
        let log = hub.log_tail();
        assert!(!log.contains("taken for gone") && !log.contains("took this hub for gone"), "{}: {log}", hub.name);
    }
    drop((b, c));
}
