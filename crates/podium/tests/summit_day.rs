//! Issue #12's acceptance test: a compressed summit day with real processes. Redis and two `podium serve` hubs (hub
//! A and hub B, media on); one stage with 24 back-to-back sessions of 20 s, written and released through the admin
//! API. 200 signaling-only websocket listeners in the stage room (three quarters on the hub that does not run the
//! scheduler, a quarter on the one that does); `tests/media/summit_day.py` runs every session's speaker with aiortc
//! (stage room as audience plus the backstage room, a sine of 440 Hz or 660 Hz, alternating per session, published
//! on both from the start) and two aiortc listeners that decode what the stage room forwards.
//!
//! - Every handover reaches every listener within 1 s of its slot's time (never before it), the session's host on
//!   stage as moderator and nobody else.
//! - No listener is disconnected or resynced (those on the hub killed below: not before the kill, and they resume on
//!   the other hub at once, without `resync`).
//! - A session's tone (published backstage and, muted, in the stage room's audience before its slot) never reaches
//!   a listener before its slot starts, and is heard within 1 s after.
//! - Session 9's host never checks in; the stage's standby host, who did, takes the slot (the status says so).
//! - Session 15's host checks in and goes on stage but never unmutes: after the stage's `dead_air_ms` the filler
//!   (an Ogg Opus 880 Hz tone made by `tests/media/make_filler.py`) plays as `~filler` and the aiortc listeners
//!   decode it; it stops with the next handover.
//! - The hub running the scheduler is killed (`kill -9`) 1 s before session 19: its handover still happens within
//!   2 s of its time (run by the other hub), and the day goes on.
//!
//! Prints the handover latency (first and last listener, p50 and max), the time to hear each session and the
//! filler. Takes about 9 minutes. Needs `redis-server` on PATH and the aiortc venv (`PODIUM_PYTHON`, see
//! `tests/it/aiortc.rs`).

use std::collections::VecDeque;
use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt as _, StreamExt as _};
use podium_hub::Role;
use podium_hub::auth::{TokenKeys, claims_for};
use podium_store::redis_server::RedisServer;
use podium_summit::{
    EmptyPolicy, Person, PersonId, Schedule, Session, SessionCode, SessionRole, Stage, StageId, Summit,
    export_podium_json,
};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "summit-day-secret";
const ADMIN_KEY: &str = "adm_summit_day_0123456789abcdef";
const SUMMIT: &str = "day";
const ROOM: &str = "day-main";
const BACKSTAGE: &str = "day-main.backstage";

const SLOTS: usize = 24;
const SLOT_MS: i64 = 20_000;
/// Backstage opens this long before a slot; a speaker arrives 1 s after that.
const BACKSTAGE_LEAD_MS: i64 = 12_000;
const CHECKIN_DEADLINE_MS: i64 = 3_000;
const DEAD_AIR_MS: i64 = 4_000;
const LISTENERS: usize = 200;
/// Listeners on the hub that runs the scheduler (killed later); the rest are on the other.
const LISTENERS_ON_RUNNER: usize = 50;
/// The session whose host never checks in (the standby host `sam` takes it).
const NO_SHOW: usize = 9;
/// The session whose host never unmutes (dead air: the filler plays).
const QUIET: usize = 15;
/// The session 1 s before which the scheduler's hub is killed.
const KILL_BEFORE: usize = 19;
const KILL_LEAD: f64 = 1.0;
const FILLER_HZ: f64 = 880.0;

/// A handover must reach every listener within this long of its slot's time (s); after the kill, within 2 s.
const HANDOVER_WITHIN: f64 = 1.0;
const HANDOVER_AFTER_KILL_WITHIN: f64 = 2.0;
/// A session's tone must be heard within this long of its slot's time (s).
const HEAR_WITHIN: f64 = 1.0;
/// The aiortc listeners' report window (s).
const WINDOW: f64 = 0.25;
/// Audio the outgoing speaker sent just before a handover may still arrive this long after it (s).
const TRAIL: f64 = 1.0;
const TOLERANCE_HZ: f64 = 8.0;
const LOUD_RMS: f64 = 1000.0;
const SETUP: Duration = Duration::from_secs(30);

fn now_unix() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs_f64()
}

fn python() -> String {
    std::env::var("PODIUM_PYTHON").ok().filter(|p| !p.is_empty()).unwrap_or_else(|| "python3".to_owned())
}

fn media_script(name: &str) -> std::path::PathBuf {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .map(|dir| dir.join("tests").join("media").join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("tests/media/{name} not found above {}", manifest.display()))
}

fn tone_of(slot: usize) -> f64 {
    if slot.is_multiple_of(2) { 440.0 } else { 660.0 }
}

/// Who the handover of `slot` puts on stage.
fn person_of(slot: usize) -> String {
    match slot {
        NO_SHOW => "sam".to_owned(),
        _ => format!("h{slot:02}"),
    }
}

/// Who `slot`'s schedule names as host.
fn host_of(slot: usize) -> String {
    match slot {
        NO_SHOW => "ghost".to_owned(),
        _ => format!("h{slot:02}"),
    }
}

fn token(room: &str, identity: &str, role: Role) -> String {
    TokenKeys::new(SECRET.as_bytes())
        .mint(&claims_for(identity, Some(&identity.to_uppercase()), room, role, Duration::from_secs(3_600)))
        .expect("mint")
}

/// A `podium serve` child process with media on ephemeral loopback UDP ports and the admin key; killed on drop.
struct HubProcess {
    name: &'static str,
    child: Child,
    url: String,
    http: String,
    public_url: String,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl HubProcess {
    async fn start(name: &'static str, store: &str) -> Self {
        let public_url = format!("ws://{name}.summit-day.invalid/v1/ws");
        let keys =
            format!(r#"[{{name = "ops", sha256 = "{}", scope = "admin"}}]"#, podium_hub::admin_key_hash(ADMIN_KEY));
        let mut child = Command::new(env!("CARGO_BIN_EXE_podium"))
            .args(["serve", "--listen", "127.0.0.1:0", "--store", store])
            .env_remove("PODIUM_CONFIG")
            .env("PODIUM_AUTH__SECRET", SECRET)
            .env("PODIUM_ADMIN__KEYS", keys)
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
                if tail.len() == 600 {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        });
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let stdout = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut process = Self { name, child, url: String::new(), http: String::new(), public_url, log };
        let deadline = Instant::now() + SETUP;
        let mut media = false;
        while process.url.is_empty() || !media {
            let line = tokio::time::timeout_at(deadline, rx.recv()).await.ok().flatten();
            let Some(line) = line else { panic!("{name}: no URL and media line from podium serve within {SETUP:?}") };
            if let Some(url) = line.strip_prefix("Podium is listening: ") {
                process.url = url.trim().to_owned();
            } else if line.starts_with("Media (WebRTC audio, UDP): ") {
                media = true;
            } else if line.starts_with("Media: disabled") {
                panic!("{name}: media is disabled");
            }
        }
        let addr = process.url.trim_start_matches("ws://").split('/').next().expect("host:port").to_owned();
        process.http = format!("http://{addr}");
        process
    }

    async fn node_id(&self, redis: &RedisServer) -> String {
        let deadline = Instant::now() + SETUP;
        loop {
            let reply = redis.command(&["HGETALL", "podium:nodes"]);
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

    fn log_tail(&self) -> String {
        self.log.lock().map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n")).unwrap_or_default()
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- {} ({}) log tail:\n{}", self.name, self.url, self.log_tail());
        }
        self.kill9();
    }
}

/// The admin API of one hub.
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn new(hub: &HubProcess) -> Self {
        Self { http: reqwest::Client::new(), base: format!("{}/v1/admin/summits", hub.http) }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<String>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(ADMIN_KEY);
        if let Some(body) = body {
            req = req.header("content-type", "application/json").body(body);
        }
        let resp = req.send().await.expect("admin request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}

fn pid(s: &str) -> PersonId {
    PersonId::new(s).expect("person id")
}

/// The day: stage `main` in room `day-main`, 24 sessions of 20 s from `t0` (ms), hosts h00..h23 except session 9's
/// (`ghost`), standby host `sam`, the filler on dead air.
fn schedule(t0: i64, filler: &str) -> Schedule {
    let mut s = Schedule::new(Summit::new(SUMMIT, "A compressed day", "Europe/Berlin").expect("summit"));
    let main = StageId::new("main").expect("id");
    let mut stage = Stage::new(main.clone(), ROOM).expect("stage");
    stage.backstage_lead_ms = BACKSTAGE_LEAD_MS;
    stage.checkin_deadline_ms = CHECKIN_DEADLINE_MS;
    stage.standby_hosts = vec![pid("sam")];
    stage.empty = EmptyPolicy::Filler { file: filler.to_owned() };
    stage.dead_air_ms = DEAD_AIR_MS;
    for name in (0..SLOTS).map(host_of).chain(["sam".to_owned()]) {
        s.put_person(Person::new(pid(&name), &name.to_uppercase()).expect("person")).expect("person");
    }
    s.put_stage(stage).expect("stage");
    for slot in 0..SLOTS {
        let code = SessionCode::new(format!("s{slot:02}")).expect("code");
        let session = Session::new(
            code.clone(),
            &format!("Session {slot}"),
            SLOT_MS,
            vec![(pid(&host_of(slot)), SessionRole::Host)],
        )
        .expect("session");
        s.add_session(session).expect("add");
        s.place(&code, &main, t0 + i64::try_from(slot).expect("slot") * SLOT_MS).expect("place");
    }
    s
}

/// What one signaling-only listener saw.
#[derive(Default)]
struct ListenerLog {
    /// Which hub it joined first (0: the scheduler's, killed later; 1: the other).
    on_runner: bool,
    /// `stage` events with cause `handover`: (time, stage member ids, their roles).
    handovers: Vec<(f64, Vec<String>, Vec<String>)>,
    /// Other `stage` events (cause kind, time).
    other_stage: Vec<(String, f64)>,
    resyncs: Vec<f64>,
    /// Closes: (time, code).
    closes: Vec<(f64, u16)>,
    /// Resumes after a close: (time, resumed).
    resumes: Vec<(f64, bool)>,
    connected: bool,
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects and joins as audience (resuming with `resume`), retrying while the hub is not ready; the websocket, the
/// welcome.
async fn join(url: &str, identity: &str, resume: Option<&str>, limit: Duration) -> Result<(Ws, Value), String> {
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    while Instant::now() < deadline {
        match tokio_tungstenite::connect_async(url).await {
            Ok((mut ws, _)) => {
                let mut body = json!({"type": "join", "id": 1, "token": token(ROOM, identity, Role::Audience)});
                if let Some(resume) = resume {
                    body["resume"] = json!(resume);
                }
                ws.send(Message::Text(body.to_string().into())).await.map_err(|e| e.to_string())?;
                loop {
                    match tokio::time::timeout_at(deadline, ws.next()).await {
                        Ok(Some(Ok(Message::Text(t)))) => {
                            let v: Value = serde_json::from_str(&t).map_err(|e| e.to_string())?;
                            if v["id"] == 1 && v["type"] == "ok" {
                                return Ok((ws, v["result"].clone()));
                            }
                            if v["id"] == 1 {
                                last = v.to_string();
                                break;
                            }
                        }
                        Ok(Some(Ok(_))) => {}
                        Ok(Some(Err(e))) => {
                            last = e.to_string();
                            break;
                        }
                        Ok(None) => {
                            last = "closed".into();
                            break;
                        }
                        Err(_) => return Err(format!("join timed out: {last}")),
                    }
                }
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last)
}

/// One listener for the whole day: joins on `url`, records what it sees; after a close, resumes on `fallback`.
async fn listen(
    identity: String,
    url: String,
    fallback: String,
    log: Arc<Mutex<ListenerLog>>,
    stop: Arc<tokio::sync::Notify>,
) {
    let (mut ws, welcome) = join(&url, &identity, None, SETUP).await.unwrap_or_else(|e| panic!("{identity}: {e}"));
    let mut resume = welcome["resume_token"].as_str().unwrap_or_default().to_owned();
    log.lock().expect("log").connected = true;
    let stopped = stop.notified();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            () = &mut stopped => {
                let _ = ws.send(Message::Text(json!({"type": "leave", "id": 2}).to_string().into())).await;
                let _ = ws.close(None).await;
                return;
            }
            msg = ws.next() => {
                let t = now_unix();
                let code = match msg {
                    Some(Ok(Message::Text(text))) => {
                        let v: Value = serde_json::from_str(&text).expect("hub sent invalid JSON");
                        let mut l = log.lock().expect("log");
                        match v["type"].as_str() {
                            Some("stage") => {
                                let members = v["stage"].as_array().cloned().unwrap_or_default();
                                let kind = v["cause"]["kind"].as_str().unwrap_or_default().to_owned();
                                if kind == "handover" {
                                    let ids = members.iter().map(|m| m["id"].as_str().unwrap_or_default().to_owned()).collect();
                                    let roles = members.iter().map(|m| m["role"].as_str().unwrap_or_default().to_owned()).collect();
                                    l.handovers.push((t, ids, roles));
                                } else {
                                    l.other_stage.push((kind, t));
                                }
                            }
                            Some("resync") => l.resyncs.push(t),
                            _ => {}
                        }
                        continue;
                    }
                    Some(Ok(Message::Close(frame))) => frame.map_or(1005, |f| u16::from(f.code)),
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => 1006,
                };
                {
                    let mut l = log.lock().expect("log");
                    l.closes.push((t, code));
                    l.connected = false;
                }
                match join(&fallback, &identity, Some(&resume), Duration::from_secs(20)).await {
                    Ok((again, welcome)) => {
                        ws = again;
                        resume = welcome["resume_token"].as_str().unwrap_or_default().to_owned();
                        let mut l = log.lock().expect("log");
                        l.resumes.push((now_unix(), welcome["resumed"] == true));
                        l.connected = true;
                    }
                    Err(e) => {
                        eprintln!("{identity}: could not resume on {fallback}: {e}");
                        return;
                    }
                }
            }
        }
    }
}

/// The aiortc process (`tests/media/summit_day.py`): stdin commands; its stdout lines kept with their arrival time.
struct Aiortc {
    child: Child,
    stdin: ChildStdin,
    lines: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<VecDeque<String>>>,
}

impl Aiortc {
    fn spawn() -> Self {
        let script = media_script("summit_day.py");
        let mut child = Command::new(python())
            .arg("-u")
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {} {}: {e}", python(), script.display()));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v = serde_json::from_str(&line).unwrap_or_else(|_| json!({"event": "raw", "line": line}));
                sink.lock().expect("lines").push(v);
            }
        });
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let tail = Arc::clone(&stderr);
        let err = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                let mut tail = tail.lock().expect("stderr");
                if tail.len() == 80 {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        });
        let stdin = child.stdin.take().expect("stdin");
        Self { child, stdin, lines, stderr }
    }

    fn command(&mut self, cmd: &Value) {
        writeln!(self.stdin, "{cmd}").and_then(|()| self.stdin.flush()).expect("write to summit_day.py");
    }

    fn events(&self, kind: &str) -> Vec<Value> {
        self.lines.lock().expect("lines").iter().filter(|v| v["event"] == kind).cloned().collect()
    }

    async fn wait_for(&self, what: &str, limit: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(v) = self.lines.lock().expect("lines").iter().find(|v| pred(v)) {
                return v.clone();
            }
            assert!(Instant::now() < deadline, "summit_day.py: no {what} within {limit:?}\n{}", self.diagnostics());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn diagnostics(&self) -> String {
        let lines = self.lines.lock().expect("lines");
        let other: Vec<String> = lines.iter().filter(|v| v["event"] != "audio").map(Value::to_string).collect();
        let stderr: Vec<String> = self.stderr.lock().expect("stderr").iter().cloned().collect();
        format!(
            "--- summit_day.py stdout (not audio, tail):\n{}\n--- stderr (tail):\n{}",
            other[other.len().saturating_sub(40)..].join("\n"),
            stderr.join("\n")
        )
    }
}

impl Drop for Aiortc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.diagnostics());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_tone(r: &Value, hz: f64) -> bool {
    r["rms"].as_f64().unwrap_or(0.0) > LOUD_RMS
        && r["frames"].as_u64().unwrap_or(0) >= 8
        && r["freq"].as_f64().is_some_and(|f| (f - hz).abs() <= TOLERANCE_HZ)
}

/// When the loud audio of report `r` began: its first loud frame, else the start of its window.
fn loud_from(r: &Value) -> f64 {
    let t = r["t"].as_f64().unwrap_or(f64::NAN);
    r["first_loud_t"].as_f64().unwrap_or(t - WINDOW)
}

/// Whether `reports[i]` is the stale tail of an earlier stream rather than audio sent now: a short burst after more
/// than a second without loud audio on its track, with no loud audio in the track's next report. aiortc's audio
/// jitter buffer holds a stream's last few packets until more arrive on that receiver, so when the SFU switches an
/// idle downstream slot to another source (the filler, say), the previous speaker's last ~100 ms are decoded then.
fn stale_tail(reports: &[Value], i: usize) -> bool {
    let r = &reports[i];
    let after_silence = r["max_loud_gap"].as_f64().is_some_and(|g| g > 1.0);
    let span = r["last_loud_t"].as_f64().unwrap_or(0.0) - r["first_loud_t"].as_f64().unwrap_or(0.0);
    let next = reports[i + 1..].iter().find(|n| n["mid"] == r["mid"] && n["gen"] == r["gen"]);
    let next_loud = next.is_some_and(|n| {
        n["first_loud_t"].as_f64().is_some()
            && n["freq"].as_f64().zip(r["freq"].as_f64()).is_some_and(|(a, b)| (a - b).abs() <= TOLERANCE_HZ)
    });
    after_silence && span < 0.25 && !next_loud
}

fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    v[rank.min(v.len() - 1)]
}

async fn sleep_until_unix(t: f64) {
    let wait = t - now_unix();
    if wait > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_summit_day_runs_on_time_through_a_no_show_dead_air_and_a_kill_9() {
    let check = Command::new(python())
        .args(["-c", "import aiortc, av, numpy, websockets"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{}`: {e}", python()));
    assert!(
        check.status.success(),
        "this test needs Python with aiortc, numpy and websockets (PODIUM_PYTHON; `tests/run` sets up .venv-media): {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let redis = RedisServer::start();
    let mut a = HubProcess::start("hub-a", &redis.url()).await;
    let mut b = HubProcess::start("hub-b", &redis.url()).await;
    let a_id = a.node_id(&redis).await;
    let b_id = b.node_id(&redis).await;

    // The filler: 30 s of 880 Hz, Ogg Opus.
    let filler = std::env::temp_dir().join(format!("podium-summit-day-{}.ogg", std::process::id()));
    let out = Command::new(python())
        .arg(media_script("make_filler.py"))
        .arg(&filler)
        .args(["--freq", "880", "--seconds", "30"])
        .output()
        .expect("run make_filler.py");
    assert!(out.status.success(), "make_filler.py: {}", String::from_utf8_lossy(&out.stderr));
    let filler_path = filler.to_str().expect("utf-8 temp path").to_owned();

    // The schedule, released on A; whichever hub takes the summit's lease runs it.
    let api_a = Api::new(&a);
    let t0_ms =
        i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis()).expect("ms") + 35_000;
    let slot_t = |slot: usize| (t0_ms + i64::try_from(slot).expect("slot") * SLOT_MS) as f64 / 1000.0;
    let body = export_podium_json(&schedule(t0_ms, &filler_path));
    let (status, reply) = api_a.call(reqwest::Method::PUT, "/day/schedule?expect_version=0", Some(body)).await;
    assert_eq!(status, 200, "{reply}");
    let (status, release) =
        api_a.call(reqwest::Method::POST, "/day/releases", Some(json!({"comment": "the day"}).to_string())).await;
    assert_eq!(status, 201, "{release}");
    let runner = {
        let deadline = Instant::now() + SETUP;
        loop {
            let (status, list) = api_a.call(reqwest::Method::GET, "", None).await;
            assert_eq!(status, 200, "{list}");
            if let Some(r) =
                list.as_array().and_then(|l| l.iter().find(|s| s["id"] == SUMMIT)).and_then(|s| s["runner"].as_str())
            {
                break r.to_owned();
            }
            assert!(Instant::now() < deadline, "nobody took the summit's lease: {list}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let runner_is_a = if runner == a_id {
        true
    } else {
        assert_eq!(runner, b_id, "the runner is neither hub (A {a_id}, B {b_id})");
        false
    };
    let (runner_hub, other_hub) = if runner_is_a { (&mut a, &mut b) } else { (&mut b, &mut a) };
    eprintln!("the scheduler runs on {} ({runner}); {} is the other", runner_hub.name, other_hub.name);
    let runner_url = runner_hub.url.clone();
    let other_url = other_hub.url.clone();
    let api = Api::new(other_hub);

    // 200 listeners: 50 on the runner's hub, 150 on the other.
    let stop = Arc::new(tokio::sync::Notify::new());
    let mut logs = Vec::new();
    let mut tasks = Vec::new();
    for n in 0..LISTENERS {
        let on_runner = n < LISTENERS_ON_RUNNER;
        let log = Arc::new(Mutex::new(ListenerLog { on_runner, ..ListenerLog::default() }));
        logs.push(Arc::clone(&log));
        let (url, fallback) =
            if on_runner { (runner_url.clone(), other_url.clone()) } else { (other_url.clone(), other_url.clone()) };
        tasks.push(tokio::spawn(listen(format!("lis{n:03}"), url, fallback, log, Arc::clone(&stop))));
        if n % 20 == 19 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let deadline = Instant::now() + SETUP;
    while logs.iter().any(|l| !l.lock().expect("log").connected) {
        assert!(Instant::now() < deadline, "not every listener joined within {SETUP:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let owner = |room: &str| {
        let reply = redis.command(&["GET", &format!("podium:{{{room}}}:owner")]);
        let node = reply.split("\r\n").nth(1).unwrap_or_default().to_owned();
        if node == a_id {
            "hub-a".to_owned()
        } else if node == b_id {
            "hub-b".to_owned()
        } else {
            node
        }
    };
    eprintln!(
        "{LISTENERS} listeners joined; the day starts in {:.1} s; the stage room's lease is on {}, the backstage's on {}",
        slot_t(0) - now_unix(),
        owner(ROOM),
        owner(BACKSTAGE)
    );

    // The aiortc side, on the other hub: two listeners now, each speaker when its backstage opens.
    let mut py = Aiortc::spawn();
    for n in 0..2 {
        py.command(&json!({"listener": format!("alis{n}"), "url": other_url, "token": token(ROOM, &format!("alis{n}"), Role::Audience), "window": WINDOW}));
    }
    for n in 0..2 {
        let who = format!("alis{n}");
        py.wait_for("listener ready", SETUP, |v| v["event"] == "ready" && v["who"] == who).await;
    }
    assert!(now_unix() < slot_t(0) - BACKSTAGE_LEAD_MS as f64 / 1000.0, "setup took too long");

    // The day: each speaker arrives 1 s after its backstage opens; the scheduler's hub dies KILL_LEAD before session
    // KILL_BEFORE.
    let mut killed_at = f64::NAN;
    for slot in 0..SLOTS {
        sleep_until_unix(slot_t(slot) - BACKSTAGE_LEAD_MS as f64 / 1000.0 + 1.0).await;
        let who = person_of(slot);
        py.command(&json!({
            "speaker": who, "url": other_url, "tone": tone_of(slot), "silent": slot == QUIET,
            "stage_token": token(ROOM, &who, Role::Moderator), "back_token": token(BACKSTAGE, &who, Role::Moderator),
        }));
        if slot == KILL_BEFORE {
            sleep_until_unix(slot_t(KILL_BEFORE) - KILL_LEAD).await;
            let (status, list) = api.call(reqwest::Method::GET, "", None).await;
            assert_eq!(status, 200, "{list}");
            assert_eq!(list[0]["runner"], json!(runner), "the runner moved before the kill: {list}");
            killed_at = now_unix();
            runner_hub.kill9();
            eprintln!(
                "kill -9 of {} (the scheduler's hub) {:.3} s before session {KILL_BEFORE}",
                runner_hub.name,
                slot_t(KILL_BEFORE) - killed_at
            );
        }
    }
    sleep_until_unix(slot_t(SLOTS) + 3.0).await;

    // What the runner recorded.
    let (status, st) = api.call(reqwest::Method::GET, "/day", None).await;
    assert_eq!(status, 200, "{st}");
    let (_, list) = api.call(reqwest::Method::GET, "", None).await;
    let other_id = if runner_is_a { b_id.clone() } else { a_id.clone() };
    stop.notify_waiters();
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    let _ = std::fs::remove_file(&filler);

    let mut failures: Vec<String> = Vec::new();
    let mut fail = |what: String| {
        if failures.len() < 60 {
            eprintln!("FAIL: {what}");
        }
        failures.push(what);
    };

    // Handovers, as every listener saw them.
    let mut first_latency = Vec::new();
    let mut last_latency = Vec::new();
    for slot in 0..SLOTS {
        let t = slot_t(slot);
        let who = person_of(slot);
        let mut lats = Vec::new();
        for (n, log) in logs.iter().enumerate() {
            let l = log.lock().expect("log");
            if slot == KILL_BEFORE && l.on_runner {
                continue; // resuming on the other hub around then: the handover may come in their welcome
            }
            match l.handovers.iter().find(|(at, ids, _)| *at >= t - 10.0 && ids.contains(&who)) {
                None => fail(format!("lis{n:03} saw no handover to {who} (session {slot})")),
                Some((at, ids, roles)) => {
                    lats.push(at - t);
                    if ids != std::slice::from_ref(&who) || roles != &["moderator".to_owned()] {
                        fail(format!("lis{n:03}: session {slot}'s stage is {ids:?} {roles:?}"));
                    }
                }
            }
        }
        let lo = lats.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = lats.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let limit = if slot == KILL_BEFORE { HANDOVER_AFTER_KILL_WITHIN } else { HANDOVER_WITHIN };
        if lo < -0.05 || hi > limit {
            fail(format!("session {slot}: handover seen {lo:.3} to {hi:.3} s from its time (limit {limit} s)"));
        }
        first_latency.push(lo);
        last_latency.push(hi);
    }

    // Nobody disconnected or resynced: those on the killed hub only by the kill, and they resumed at once.
    let mut resume_took = Vec::new();
    for (n, log) in logs.iter().enumerate() {
        let l = log.lock().expect("log");
        if !l.resyncs.is_empty() {
            fail(format!("lis{n:03} got resync at {:?}", l.resyncs.iter().map(|t| t - killed_at).collect::<Vec<_>>()));
        }
        let drops: Vec<&(String, f64)> =
            l.other_stage.iter().filter(|(k, _)| k == "disconnected" || k == "reconnected").collect();
        if !drops.is_empty() && n == 0 {
            eprintln!("note: lis000 saw stage causes {drops:?}");
        }
        if l.on_runner {
            let ok = l.closes.len() == 1 && l.closes[0].0 >= killed_at && l.resumes.len() == 1 && l.resumes[0].1;
            if ok {
                resume_took.push(l.resumes[0].0 - killed_at);
            } else {
                fail(format!("lis{n:03} (on the killed hub): closes {:?}, resumes {:?}", l.closes, l.resumes));
            }
        } else if !l.closes.is_empty() {
            fail(format!("lis{n:03} was disconnected: {:?}", l.closes));
        }
    }
    if let Some(max) = resume_took.iter().copied().reduce(f64::max)
        && max > 3.0
    {
        fail(format!("a listener of the killed hub took {max:.3} s to resume"));
    }

    // Audio, as the aiortc listeners decoded it.
    let tracks = py.events("tracks");
    let mut hear = Vec::new();
    let mut filler_heard = Vec::new();
    let mut hear_per_slot = Vec::new();
    for n in 0..2 {
        let who = format!("alis{n}");
        let reports: Vec<Value> = py.events("audio").into_iter().filter(|r| r["who"] == who.as_str()).collect();
        for slot in 0..SLOTS {
            let t = slot_t(slot);
            let hz = tone_of(slot);
            let quiet_from = if slot == 0 { 0.0 } else { slot_t(slot - 1) + TRAIL };
            let quiet_until = if slot == QUIET { slot_t(slot + 1) } else { t };
            if let Some(r) = reports.iter().enumerate().find(|&(i, r)| {
                is_tone(r, hz) && (quiet_from..quiet_until).contains(&loud_from(r)) && !stale_tail(&reports, i)
            }) {
                fail(format!(
                    "{who}: session {slot}'s {hz} Hz heard {:.3} s before its slot: {}",
                    t - loud_from(r.1),
                    r.1
                ));
            }
            if slot == QUIET {
                continue;
            }
            let first =
                reports.iter().find(|r| is_tone(r, hz) && r["t"].as_f64().is_some_and(|e| e > t && e < t + 10.0));
            let heard = first.map_or(f64::NAN, |r| {
                let from = loud_from(r);
                if from >= t { from - t } else { r["t"].as_f64().unwrap_or(f64::NAN) - WINDOW / 2.0 - t }
            });
            let limit = if slot == KILL_BEFORE { HANDOVER_AFTER_KILL_WITHIN + 1.0 } else { HEAR_WITHIN };
            if heard.is_nan() || heard > limit {
                fail(format!("{who}: session {slot}'s {hz} Hz heard {heard:.3} s after its time (limit {limit} s)"));
            }
            hear.push(heard);
            if n == 0 {
                hear_per_slot.push(format!("{slot}:{heard:.2}"));
            }
            // And it stays heard through its slot.
            let mid: Vec<&Value> = reports
                .iter()
                .filter(|r| r["t"].as_f64().is_some_and(|e| e > t + 2.5 && e < t + SLOT_MS as f64 / 1000.0 - 0.5))
                .filter(|r| r["frames"].as_u64().unwrap_or(0) > 0)
                .collect();
            let heard_mid = mid.iter().filter(|r| is_tone(r, hz)).count();
            if slot != KILL_BEFORE && heard_mid * 10 < mid.len() * 9 {
                fail(format!("{who}: session {slot}'s {hz} Hz in only {heard_mid} of {} reports mid-slot", mid.len()));
            }
        }
        // The filler in the quiet session, not after it.
        let dead_air = slot_t(QUIET) + DEAD_AIR_MS as f64 / 1000.0;
        let first = reports.iter().find(|r| {
            is_tone(r, FILLER_HZ) && r["t"].as_f64().is_some_and(|e| e > slot_t(QUIET) && e <= slot_t(QUIET + 1) + 0.5)
        });
        match first {
            None => fail(format!("{who} never heard the filler ({FILLER_HZ} Hz) in session {QUIET}")),
            Some(r) => filler_heard.push(loud_from(r) - dead_air),
        }
        if let Some((_, r)) = reports.iter().enumerate().find(|&(i, r)| {
            is_tone(r, FILLER_HZ)
                && r["t"].as_f64().is_some_and(|e| e > slot_t(QUIET + 1) + 2.0 && e < slot_t(QUIET + 2))
                && !stale_tail(&reports, i)
        }) {
            fail(format!("{who}: the filler still played after session {}'s start: {r}", QUIET + 1));
        }
        let named = tracks.iter().any(|v| {
            v["who"] == who.as_str()
                && v["msg"]["tracks"].as_array().is_some_and(|ts| ts.iter().any(|t| t["participant"] == "~filler"))
        });
        if !named {
            fail(format!("{who}: no media_tracks naming ~filler"));
        }
    }

    let p = |v: &[f64], q: f64| percentile(v, q);

    // For a closer look: PODIUM_SUMMIT_DAY_DUMP=FILE writes every line of the aiortc process there.
    if let Some(path) = std::env::var_os("PODIUM_SUMMIT_DAY_DUMP") {
        let lines = py.lines.lock().expect("lines").iter().map(Value::to_string).collect::<Vec<_>>().join("\n");
        std::fs::write(&path, lines).expect("write the dump");
    }

    // Every speaker checked in and did the mic check backstage (on the backstage stage, unmuted) before its slot,
    // and unmuted on the stage after the handover (but the quiet one).
    let roles = py.events("role");
    let unmuted = py.events("unmuted");
    for slot in 0..SLOTS {
        let who = person_of(slot);
        let t = slot_t(slot);
        let on_back = roles.iter().any(|v| {
            v["who"] == who.as_str() && v["conn"] == "back" && v["role"] != "audience" && v["t"].as_f64() < Some(t)
        });
        let live_back = unmuted
            .iter()
            .any(|v| v["who"] == who.as_str() && v["conn"] == "back" && v["ok"] == true && v["t"].as_f64() < Some(t));
        if !on_back || !live_back {
            fail(format!("{who} (session {slot}) was not on the backstage stage unmuted before its slot"));
        }
        let live = unmuted.iter().any(|v| v["who"] == who.as_str() && v["conn"] == "stage" && v["ok"] == true);
        if live == (slot == QUIET) {
            fail(format!("{who} (session {slot}) unmuted on stage: {live}"));
        }
    }

    // The status: every session completed, the no-show substituted; the other hub runs the summit now.
    let slots = st["stages"][0]["slots"].as_array().cloned().unwrap_or_default();
    if slots.len() != SLOTS {
        fail(format!("the status lists {} slots: {st}", slots.len()));
    }
    for (i, s) in slots.iter().enumerate() {
        if s["status"] != "completed" {
            fail(format!("slot {i} is {}: {s}", s["status"]));
        }
    }
    let ns = slots.get(NO_SHOW).cloned().unwrap_or_default();
    if ns["substitute"] != "sam" || !ns["no_show"].as_array().is_some_and(|a| a.iter().any(|p| p == "ghost")) {
        fail(format!("session {NO_SHOW} should show ghost as a no-show and sam as substitute: {ns}"));
    }
    if list[0]["runner"] != json!(other_id) {
        fail(format!("the surviving hub ({other_id}) should run the summit now: {list}"));
    }
    let renegotiated: Vec<f64> =
        py.events("renegotiated").iter().filter_map(|v| v["t"].as_f64()).map(|t| t - killed_at).collect();
    eprintln!(
        "the stage room's media moved with the kill: the aiortc connections renegotiated {} times, {:.3}-{:.3} s \
         after it",
        renegotiated.len(),
        p(&renegotiated, 0.0),
        p(&renegotiated, 100.0)
    );
    let errors = py.events("error");
    if !errors.is_empty() {
        eprintln!("summit_day.py errors: {errors:?}");
    }

    eprintln!(
        "handover latency (s), first listener: p50 {:.3} max {:.3}; last of {LISTENERS} listeners: p50 {:.3} max {:.3}; \
         session {KILL_BEFORE} (after the kill -9 {KILL_LEAD} s before it): first {:.3} last {:.3}",
        p(&first_latency, 50.0),
        p(&first_latency, 100.0),
        p(&last_latency, 50.0),
        p(&last_latency, 100.0),
        first_latency[KILL_BEFORE],
        last_latency[KILL_BEFORE],
    );
    eprintln!(
        "time to hear a session's tone (s): p50 {:.3} p90 {:.3} max {:.3}; the filler heard {:?} s after the dead air \
         began; listeners of the killed hub resumed {:.3}-{:.3} s after the kill",
        p(&hear, 50.0),
        p(&hear, 90.0),
        p(&hear, 100.0),
        filler_heard.iter().map(|x| (x * 1000.0).round() / 1000.0).collect::<Vec<_>>(),
        p(&resume_took, 0.0),
        p(&resume_took, 100.0),
    );
    eprintln!(
        "per session (first/last listener handover, s): {}",
        (0..SLOTS).map(|s| format!("{s}:{:.2}/{:.2}", first_latency[s], last_latency[s])).collect::<Vec<_>>().join(" ")
    );
    eprintln!("per session (time to hear on alis0, s): {}", hear_per_slot.join(" "));
    assert!(failures.is_empty(), "{} failures, first: {:#?}", failures.len(), &failures[..failures.len().min(20)]);
    drop((py, a, b, redis));
}
