//! A compressed summit week (issue #12): 168 back-to-back one-hour sessions on one stage, run by the summit
//! scheduler on two hubs sharing one Redis, with listener churn and one hub restart per simulated day.
//!
//! Method:
//!
//! - **Processes.** A `redis-server` (the store crate's test helper: AOF, `appendfsync always`) and two `podium serve
//!   --store redis://…` processes, hub A and hub B (media off: signaling only). Both run the summit scheduler with the
//!   test-only accelerated clock: `PODIUM_SUMMIT__TIME_SCALE` (`PODIUM_BENCH_SCALE`, default 600: one scheduler hour
//!   is 6 s of real time, the week 16.8 min) from the same `PODIUM_SUMMIT__CLOCK_ORIGIN_MS` (the bench's start),
//!   `PODIUM_SUMMIT__TICK_MS` 50 (`PODIUM_BENCH_TICK_MS`; 30 scheduler seconds at scale 600) and
//!   `PODIUM_SUMMIT__LEASE_MS` 500 (`PODIUM_BENCH_LEASE_MS`; at least three ticks). Everything that is not the
//!   scheduler (tokens, grace periods, leases of rooms, reconnect back-off, a hub's restart) stays on real time, so
//!   at scale 600 a second of it is ten scheduler minutes.
//! - **Schedule.** Summit `wk`, stage `main` in room `wk-main`: 168 sessions of one hour, back to back, each with a
//!   host (`h<i>`, moderator ceiling) and a speaker (`s<i>`, speaker ceiling); backstage 30 min before, check-in
//!   deadline 10 min before, hard stop. Written through hub A's admin API (`PUT …/schedule`) and released (`POST
//!   …/releases`); the first slot starts on the first full scheduler hour at least `PODIUM_BENCH_LEAD_SECS` (20) real
//!   seconds after the release.
//! - **People.** 50 scheduler minutes before its slot each person opens two websockets, one joining the stage room
//!   as audience and one joining the backstage room (checking in), on hub A for even sessions and hub B for odd
//!   ones; they leave (`leave`) 5 minutes after the slot's end. A dropped connection (a drain's 4007, a killed hub)
//!   reconnects at once to the other hub and joins again with the same identity (a resume).
//! - **Listener churn.** `PODIUM_BENCH_LISTENERS` (default 100) workers, each in a loop: a fresh identity joins the
//!   stage room as audience on a random hub, stays 1-6 s (real), then half of them `leave` and half just drop the
//!   socket (kept for the 30 s grace, then gone). Failed joins are counted and retried after 200 ms.
//! - **Restarts.** Once per simulated day, at 12:xx of the day (the minute varies by day), one hub is restarted:
//!   hub A on odd days, hub B on even days; SIGTERM (drain: 4007 to its clients, then exit) on days 1, 4, 5, `kill
//!   -9` on days 2, 3, 6, 7; a new process is started as soon as the old one is gone.
//! - **Handovers.** Counted failed when a slot is not `completed` in `GET /v1/admin/summits/wk` at the end, has no
//!   `actual_start`, reports a no-show or a substitute, or when its host never saw `you` with role `moderator` (its
//!   speaker `speaker`) on its stage-room connection before the slot's end. Lateness is reported from the runner's
//!   `handover` log lines (`late_ms`: scheduler time from the output's due time to the room command's answer) and
//!   from the host's client (the `you` event's arrival, real time, minus the slot's start converted to real time).
//!   The records' `actual_start − start` is printed too, but it is always 0: the run stamps the due time.
//! - **Resources.** At 23:20 of every simulated day the churn pauses (workers leave politely); at 23:50 (3 s real
//!   later at scale 600) the bench reads each hub's `VmRSS` and open fds (`/proc/<pid>/status`, `/proc/<pid>/fd`),
//!   Redis `DBSIZE`, `used_memory` and the keys grouped by pattern, then the churn resumes. The hub restarted that
//!   day has run 11-12 scheduler hours (~70 s real) then, the other one about 36 (day 1: 24); compare hub A on days
//!   1, 3, 5 and 7 (each freshly restarted that day) and day-to-day the older process.
//!
//! Run: `cargo bench -p podium --bench summit_week`. Needs `redis-server` and `redis-cli` on PATH. Hubs, Redis and
//! the clients share the machine's cores. Hub logs (`RUST_LOG=warn,podium_hub::summit=info`) go to
//! `$PODIUM_BENCH_LOGS` (default `target/summit-week-logs`).

use std::collections::{BTreeMap, HashMap};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt as _, StreamExt as _};
use podium_hub::Role;
use podium_hub::auth::{TokenKeys, claims_for};
use podium_store::redis_server::RedisServer;
use podium_summit::{Person, PersonId, Schedule, Session, SessionCode, SessionRole, Stage, StageId, Summit};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

mod common;

use common::{Serve, UNLIMITED_SOURCES, Ws, env_or, serve};

const SECRET: &str = "bench-secret";
const KEY: &str = "pdm_bench_admin_key_0123456789";
const SUMMIT: &str = "wk";
const ROOM: &str = "wk-main";
const BACKSTAGE: &str = "wk-main.backstage";
const HOUR: i64 = 3_600_000;
const MIN: i64 = 60_000;
const SLOTS: i64 = 168;
/// Hosts and speakers: `h0..h23`, `s0..s23`, each on once a day (slot `i` has host `h{i mod 24}`). 168 distinct
/// hosts and speakers would make the schedule document 73 KB, over the admin API's 64 KiB body limit.
const CAST: i64 = 24;

fn now_ms() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis()).expect("ms")
}

/// The accelerated clock, as the hubs compute it (`podium_hub::summit::Clock`).
#[derive(Clone, Copy)]
struct Clock {
    origin: i64,
    scale: i64,
}

impl Clock {
    fn sched(&self, real: i64) -> i64 {
        self.origin + (real - self.origin) * self.scale
    }
    fn real(&self, sched: i64) -> i64 {
        self.origin + (sched - self.origin) / self.scale
    }
    async fn sleep_until_sched(&self, sched: i64) {
        let wait = self.real(sched) - now_ms();
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(u64::try_from(wait).unwrap_or(0))).await;
        }
    }
}

/// xorshift64*: the bench's only randomness (no `rand` in this crate).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Shared by every client task.
struct World {
    /// The hubs' websocket URLs (a restarted hub gets a new port).
    urls: RwLock<[String; 2]>,
    keys: TokenKeys,
    /// The listener churn is paused (for a measurement).
    paused: AtomicBool,
    stop: AtomicBool,
    listener_seq: AtomicU64,
    listener_joins: AtomicU64,
    listener_join_errors: AtomicU64,
    listener_leaves: AtomicU64,
    listener_drops: AtomicU64,
    listener_active: AtomicU64,
    person_reconnects: AtomicU64,
    person_join_errors: AtomicU64,
    /// Per person identity: when (real ms) they first saw each role in the stage room.
    promoted: Mutex<HashMap<String, BTreeMap<String, i64>>>,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl World {
    fn url(&self, hub: usize) -> String {
        self.urls.read().expect("urls")[hub % 2].clone()
    }
    fn token(&self, identity: &str, room: &str, role: Role) -> String {
        self.keys.mint(&claims_for(identity, None, room, role, Duration::from_secs(7_200))).expect("mint")
    }
    fn error(&self, what: String) {
        *self.errors.lock().expect("errors").entry(what).or_default() += 1;
    }
}

/// Opens a websocket to `url` and joins with `token` as audience; the welcome's `you.role` with the socket.
async fn join(url: &str, token: &str) -> Result<(Ws, String), String> {
    let (mut ws, _) = tokio::time::timeout(Duration::from_secs(5), tokio_tungstenite::connect_async(url))
        .await
        .map_err(|_| "connect timeout".to_owned())?
        .map_err(|e| format!("connect: {}", short(&e.to_string())))?;
    let request = json!({"type": "join", "id": 1, "token": token, "role": "audience"}).to_string();
    ws.send(Message::Text(request.into())).await.map_err(|e| format!("send: {e}"))?;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .map_err(|_| "no welcome within 10 s".to_owned())?;
        let Some(Ok(Message::Text(text))) = msg else {
            if matches!(msg, None | Some(Err(_)) | Some(Ok(Message::Close(_)))) {
                return Err(format!("closed before the welcome: {}", short(&format!("{msg:?}"))));
            }
            continue;
        };
        let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        if v["id"] == 1 {
            if v["type"] == "ok" {
                let role = v["result"]["state"]["you"]["role"].as_str().unwrap_or_default().to_owned();
                return Ok((ws, role));
            }
            return Err(format!("join refused: {}", v["code"].as_str().unwrap_or("?")));
        }
    }
}

fn short(s: &str) -> String {
    s.chars().take(60).collect()
}

/// Sends `leave` and waits (briefly) for the close.
async fn leave(mut ws: Ws) {
    let _ = ws.send(Message::Text(json!({"type": "leave", "id": 2}).to_string().into())).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), async { while let Some(Ok(_)) = ws.next().await {} }).await;
}

/// One person's connection to one room, from `from` (real ms) until `until`: joins (preferring hub `hub`),
/// reconnects to the other hub when dropped, records the roles it is given in the stage room, then leaves.
async fn person_conn(
    world: Arc<World>,
    identity: String,
    key: String,
    room: &'static str,
    ceiling: Role,
    hub: usize,
    until: i64,
) {
    let token = world.token(&identity, room, ceiling);
    let mut hub = hub;
    let mut first = true;
    loop {
        if now_ms() >= until {
            return;
        }
        if !first {
            world.person_reconnects.fetch_add(1, Ordering::Relaxed);
        }
        first = false;
        let (mut ws, role) = match join(&world.url(hub), &token).await {
            Ok(ok) => ok,
            Err(e) => {
                world.person_join_errors.fetch_add(1, Ordering::Relaxed);
                world.error(format!("person join: {e}"));
                hub += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let record = |role: &str| {
            if room == ROOM {
                let mut p = world.promoted.lock().expect("promoted");
                p.entry(key.clone()).or_default().entry(role.to_owned()).or_insert_with(now_ms);
            }
        };
        record(&role);
        let left = loop {
            let wait = Duration::from_millis(u64::try_from((until - now_ms()).max(0)).unwrap_or(0));
            match tokio::time::timeout(wait, ws.next()).await {
                Err(_) => break true,
                Ok(Some(Ok(Message::Text(t)))) => {
                    if t.contains("\"type\":\"you\"")
                        && let Ok(v) = serde_json::from_str::<Value>(&t)
                        && let Some(r) = v["you"]["role"].as_str()
                    {
                        record(r);
                    }
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_)) | None) => break false,
            }
        };
        if left {
            leave(ws).await;
            return;
        }
        // Dropped (drain's 4007 or a dead hub): the other hub at once.
        hub += 1;
    }
}

/// One listener-churn worker.
async fn listener_worker(world: Arc<World>, seed: u64) {
    let mut rng = Rng(seed | 1);
    while !world.stop.load(Ordering::Relaxed) {
        if world.paused.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let n = world.listener_seq.fetch_add(1, Ordering::Relaxed);
        let identity = format!("l{n}");
        let token = world.token(&identity, ROOM, Role::Audience);
        let hub = usize::try_from(rng.below(2)).unwrap_or(0);
        let mut ws = match join(&world.url(hub), &token).await {
            Ok((ws, _)) => ws,
            Err(e) => {
                world.listener_join_errors.fetch_add(1, Ordering::Relaxed);
                world.error(format!("listener join: {e}"));
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        world.listener_joins.fetch_add(1, Ordering::Relaxed);
        world.listener_active.fetch_add(1, Ordering::Relaxed);
        let stay = tokio::time::Instant::now() + Duration::from_millis(1_000 + rng.below(5_000));
        let mut dropped_by_hub = false;
        loop {
            if world.paused.load(Ordering::Relaxed) || world.stop.load(Ordering::Relaxed) {
                break;
            }
            match tokio::time::timeout_at(stay.min(tokio::time::Instant::now() + Duration::from_millis(50)), ws.next())
                .await
            {
                Err(_) if tokio::time::Instant::now() >= stay => break,
                Err(_) | Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_)) | None) => {
                    dropped_by_hub = true;
                    break;
                }
            }
        }
        world.listener_active.fetch_sub(1, Ordering::Relaxed);
        if dropped_by_hub {
            continue;
        }
        // Half leave, half drop (kept for the grace period); during a pause everybody leaves.
        if world.paused.load(Ordering::Relaxed) || rng.below(2) == 0 {
            world.listener_leaves.fetch_add(1, Ordering::Relaxed);
            leave(ws).await;
        } else {
            world.listener_drops.fetch_add(1, Ordering::Relaxed);
            drop(ws);
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("VmRSS:")).map(str::to_owned))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(Iterator::count).unwrap_or(0)
}

/// Established TCP connections whose local port is `port` (the hub's accepted client connections), from
/// `/proc/net/tcp` and `/proc/net/tcp6`.
fn accepted(port: u16) -> usize {
    let port = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .map(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .skip(1)
                .filter(|l| {
                    let cols: Vec<&str> = l.split_whitespace().collect();
                    cols.len() > 3 && cols[1].ends_with(&port) && cols[3] == "01"
                })
                .count()
        })
        .sum()
}

fn port_of(url: &str) -> u16 {
    url.rsplit_once(':').and_then(|(_, rest)| rest.split('/').next()?.parse().ok()).unwrap_or(0)
}

fn redis_field(info: &str, field: &str) -> u64 {
    info.lines().find_map(|l| l.strip_prefix(&format!("{field}:"))).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// Redis keys grouped by pattern (`{…}` hash tags and digit runs folded): how many, and their `MEMORY USAGE` in all.
fn key_patterns(port: u16) -> BTreeMap<String, (u64, u64)> {
    let out = Command::new("redis-cli").args(["-p", &port.to_string(), "--scan"]).output().expect("redis-cli");
    let keys: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
    // One redis-cli for every key's MEMORY USAGE (the keys have no spaces).
    let mut child = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("redis-cli");
    let script: String = keys.iter().map(|k| format!("MEMORY USAGE {k}\n")).collect();
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write as _;
        let _ = stdin.write_all(script.as_bytes());
    }
    let sizes = child.wait_with_output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    let sizes: Vec<u64> = sizes.lines().map(|l| l.trim().parse().unwrap_or(0)).collect();
    let mut groups = BTreeMap::new();
    for (i, key) in keys.iter().enumerate() {
        let mut pattern = String::new();
        let mut in_tag = false;
        for c in key.chars() {
            match c {
                '{' => {
                    in_tag = true;
                    pattern.push_str("{…}");
                }
                '}' => in_tag = false,
                _ if in_tag => {}
                c if c.is_ascii_digit() => {
                    if !pattern.ends_with('#') {
                        pattern.push('#');
                    }
                }
                _ => pattern.push(c),
            }
        }
        let entry: &mut (u64, u64) = groups.entry(pattern).or_default();
        entry.0 += 1;
        entry.1 += sizes.get(i).copied().unwrap_or(0);
    }
    groups
}

/// One hub process with its restart generation.
struct Hub {
    name: &'static str,
    serve: Serve,
    generation: u32,
    started_real: i64,
}

fn start_hub(name: &'static str, generation: u32, store: &str, envs: &[(String, String)], logs: &str) -> Hub {
    let public_url = format!("ws://{name}-{generation}.week.invalid/v1/ws");
    let mut envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    envs.push(("PODIUM_SERVER__PUBLIC_URL", &public_url));
    let log = std::fs::File::create(format!("{logs}/hub-{name}-{generation}.log")).expect("log file");
    let serve = serve(&["serve", "--listen", "127.0.0.1:0", "--store", store], &envs, Stdio::from(log));
    Hub { name, serve, generation, started_real: now_ms() }
}

#[derive(Clone, Debug)]
struct Sample {
    day: i64,
    rss: [u64; 2],
    fds: [usize; 2],
    /// Client websockets open on each hub then (part of `fds`).
    conns: [usize; 2],
    generation: [u32; 2],
    uptime_sched_h: [f64; 2],
    dbsize: u64,
    used_memory: u64,
    nodes: u64,
    patterns: BTreeMap<String, (u64, u64)>,
    grace_leftover: u64,
}

struct Admin {
    http: reqwest::Client,
}

impl Admin {
    async fn call(&self, base: &str, method: reqwest::Method, path: &str, body: Option<String>) -> (u16, String) {
        let mut req = self.http.request(method, format!("{base}/v1/admin/summits{path}")).bearer_auth(KEY);
        if let Some(body) = body {
            req = req.header("content-type", "application/json").body(body);
        }
        match req.send().await {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(e) => (0, e.to_string()),
        }
    }
}

fn http_of(ws: &str) -> String {
    ws.replace("ws://", "http://").replace("/v1/ws", "")
}

fn build_schedule(t0: i64) -> Schedule {
    let pid = |s: &str| PersonId::new(s).expect("person id");
    let mut s = Schedule::new(Summit::new(SUMMIT, "A week on one stage", "UTC").expect("summit"));
    let main = StageId::new("main").expect("stage id");
    let mut stage = Stage::new(main.clone(), ROOM).expect("stage");
    stage.backstage_lead_ms = 30 * MIN;
    stage.checkin_deadline_ms = 10 * MIN;
    s.put_stage(stage).expect("stage");
    for i in 0..CAST {
        s.put_person(Person::new(pid(&format!("h{i}")), &format!("H{i}")).expect("person")).expect("person");
        s.put_person(Person::new(pid(&format!("s{i}")), &format!("S{i}")).expect("person")).expect("person");
    }
    for i in 0..SLOTS {
        let (host, speaker) = (format!("h{}", i % CAST), format!("s{}", i % CAST));
        let code = SessionCode::new(format!("x{i}")).expect("code");
        let session = Session::new(
            code.clone(),
            &format!("S{i}"),
            HOUR,
            vec![(pid(&host), SessionRole::Host), (pid(&speaker), SessionRole::Speaker)],
        )
        .expect("session");
        s.add_session(session).expect("add");
        s.place(&code, &main, t0 + i * HOUR).expect("place");
    }
    s
}

/// What the hubs' logs say: every `handover` line's `late_ms`, how often a hub took the summit over and lost its
/// lease, and the other warnings (message text, counted).
struct Logged {
    late_ms: Vec<i64>,
    took_over: u64,
    lost_lease: u64,
    warnings: BTreeMap<String, u64>,
}

fn hub_logs(dir: &str) -> Logged {
    let mut out = Logged { late_ms: Vec::new(), took_over: 0, lost_lease: 0, warnings: BTreeMap::new() };
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for entry in entries.flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for line in text.lines() {
            // Without the ANSI colours.
            let mut plain = String::new();
            let mut esc = false;
            for c in line.chars() {
                match c {
                    '\u{1b}' => esc = true,
                    'm' if esc => esc = false,
                    _ if esc => {}
                    _ => plain.push(c),
                }
            }
            if plain.contains(" handover ")
                && let Some(v) = plain.split("late_ms=").nth(1)
                && let Ok(ms) = v.split_whitespace().next().unwrap_or_default().parse::<i64>()
            {
                out.late_ms.push(ms);
            } else if plain.contains("running the summit on this hub") {
                out.took_over += 1;
            } else if plain.contains("lost the lease") {
                out.lost_lease += 1;
            } else if plain.contains(" WARN ") || plain.contains(" ERROR ") {
                // The message without its fields (`name=value`, which vary).
                let message = plain.split_once(": ").map_or(plain.as_str(), |(_, m)| m);
                let message = match message.split_once('=') {
                    Some((head, _)) => head.rsplit_once(' ').map_or(head, |(m, _)| m),
                    None => message,
                };
                let message: String = message.chars().take(90).collect();
                *out.warnings.entry(message).or_default() += 1;
            }
        }
    }
    out
}

fn pct(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn main() {
    let scale: i64 = env_or("PODIUM_BENCH_SCALE", 600);
    let tick_ms: u64 = env_or("PODIUM_BENCH_TICK_MS", 50);
    let lease_ms: u64 = env_or("PODIUM_BENCH_LEASE_MS", 500);
    let listeners: u64 = env_or("PODIUM_BENCH_LISTENERS", 100);
    let lead_secs: i64 = env_or("PODIUM_BENCH_LEAD_SECS", 20);
    let days: i64 = env_or("PODIUM_BENCH_DAYS", 7).clamp(1, 7);
    let logs = std::env::var("PODIUM_BENCH_LOGS")
        .unwrap_or_else(|_| format!("{}/../../target/summit-week-logs", env!("CARGO_MANIFEST_DIR")));
    let _ = std::fs::remove_dir_all(&logs);
    std::fs::create_dir_all(&logs).expect("log dir");

    let redis = RedisServer::start();
    let store = redis.url();
    let origin = now_ms();
    let clock = Clock { origin, scale };
    let keys_env = format!("[{{name=\"bench\",sha256=\"{}\",scope=\"admin\"}}]", podium_hub::admin_key_hash(KEY));
    let mut envs: Vec<(String, String)> = vec![
        ("PODIUM_AUTH__SECRET".into(), SECRET.into()),
        ("PODIUM_MEDIA__ENABLED".into(), "false".into()),
        ("PODIUM_ADMIN__KEYS".into(), keys_env),
        ("PODIUM_ADMIN__REQUESTS_PER_SECOND".into(), "0".into()),
        ("PODIUM_SUMMIT__TIME_SCALE".into(), scale.to_string()),
        ("PODIUM_SUMMIT__CLOCK_ORIGIN_MS".into(), origin.to_string()),
        ("PODIUM_SUMMIT__TICK_MS".into(), tick_ms.to_string()),
        ("PODIUM_SUMMIT__LEASE_MS".into(), lease_ms.to_string()),
        ("RUST_LOG".into(), "warn,podium_hub::summit=info".into()),
    ];
    envs.extend(UNLIMITED_SOURCES.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    let mut hubs = [start_hub("A", 0, &store, &envs, &logs), start_hub("B", 0, &store, &envs, &logs)];
    let world = Arc::new(World {
        urls: RwLock::new([hubs[0].serve.url.clone(), hubs[1].serve.url.clone()]),
        keys: TokenKeys::new(SECRET.as_bytes()),
        paused: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        listener_seq: AtomicU64::new(0),
        listener_joins: AtomicU64::new(0),
        listener_join_errors: AtomicU64::new(0),
        listener_leaves: AtomicU64::new(0),
        listener_drops: AtomicU64::new(0),
        listener_active: AtomicU64::new(0),
        person_reconnects: AtomicU64::new(0),
        person_join_errors: AtomicU64::new(0),
        promoted: Mutex::new(HashMap::new()),
        errors: Mutex::new(BTreeMap::new()),
    });

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let admin = Admin { http: reqwest::Client::new() };
        // The first slot: the first full scheduler hour at least `lead_secs` real seconds from now.
        let earliest = clock.sched(now_ms() + lead_secs * 1_000);
        let t0 = (earliest / HOUR + 1) * HOUR;
        // `export_podium_json` pretty-prints (134 KB for this week); compact, it is under the API's body limit.
        let pretty = podium_summit::export_podium_json(&build_schedule(t0));
        let body = serde_json::from_str::<Value>(&pretty).expect("schedule json").to_string();
        println!("schedule document: {} bytes ({} pretty-printed)", body.len(), pretty.len());
        let base_a = http_of(&world.url(0));
        let (status, text) =
            admin.call(&base_a, reqwest::Method::PUT, &format!("/{SUMMIT}/schedule?expect_version=0"), Some(body)).await;
        assert_eq!(status, 200, "schedule: {text}");
        let (status, text) = admin
            .call(&base_a, reqwest::Method::POST, &format!("/{SUMMIT}/releases"), Some(json!({"name": "week"}).to_string()))
            .await;
        assert_eq!(status, 201, "release: {text}");
        let released_real = now_ms();
        // The runner creates the rooms: wait until its record shows the stage.
        loop {
            let (status, text) = admin.call(&base_a, reqwest::Method::GET, &format!("/{SUMMIT}"), None).await;
            if status == 200
                && serde_json::from_str::<Value>(&text).is_ok_and(|v| v["stages"].as_array().is_some_and(|s| !s.is_empty()))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!(
            "## summit week: scale {scale}× (1 scheduler hour = {:.1} s real), tick {tick_ms} ms = {:.0} scheduler s, \
             lease {lease_ms} ms = {:.1} scheduler min; first slot in {:.1} s real; runner up {:.1} s after the release",
            3_600.0 / scale as f64,
            tick_ms as f64 * scale as f64 / 1_000.0,
            lease_ms as f64 * scale as f64 / 60_000.0,
            (clock.real(t0) - now_ms()) as f64 / 1_000.0,
            (now_ms() - released_real) as f64 / 1_000.0,
        );

        // People: hosts and speakers, both rooms each.
        let mut people = Vec::new();
        let slots = (days * 24).min(SLOTS);
        for i in 0..slots {
            let start = t0 + i * HOUR;
            let (from, until) = (clock.real(start - 50 * MIN), clock.real(start + HOUR + 5 * MIN));
            let cast = [
                (format!("h{}", i % CAST), format!("h{i}"), Role::Moderator),
                (format!("s{}", i % CAST), format!("s{i}"), Role::Speaker),
            ];
            for (identity, key, ceiling) in cast {
                for room in [ROOM, BACKSTAGE] {
                    let (world, identity, key) = (Arc::clone(&world), identity.clone(), key.clone());
                    let hub = usize::try_from(i % 2).unwrap_or(0);
                    people.push(tokio::spawn(async move {
                        let wait = from - now_ms();
                        if wait > 0 {
                            tokio::time::sleep(Duration::from_millis(u64::try_from(wait).unwrap_or(0))).await;
                        }
                        person_conn(world, identity, key, room, ceiling, hub, until).await;
                    }));
                }
            }
        }
        // Listener churn.
        let mut workers = Vec::new();
        for w in 0..listeners {
            workers.push(tokio::spawn(listener_worker(Arc::clone(&world), 0x9E37_79B9_7F4A_7C15 ^ ((w + 1) * 7_919))));
        }

        // Days: one restart each, one measurement at the end of each.
        let kinds = ["SIGTERM", "kill -9", "kill -9", "SIGTERM", "SIGTERM", "kill -9", "kill -9"];
        let mut samples: Vec<Sample> = Vec::new();
        let mut restarts = Vec::new();
        let week_started = now_ms();
        for day in 1..=days {
            let day_start = t0 + (day - 1) * 24 * HOUR;
            let at = day_start + 12 * HOUR + ((day * 13) % 60) * MIN;
            clock.sleep_until_sched(at).await;
            let which = usize::from(day % 2 == 0);
            let kind = kinds[usize::try_from(day - 1).unwrap_or(0)];
            let t_real = now_ms();
            let old_pid = hubs[which].serve.child.id();
            if kind == "SIGTERM" {
                let _ = Command::new("kill").args(["-TERM", &old_pid.to_string()]).status();
            } else {
                let _ = Command::new("kill").args(["-KILL", &old_pid.to_string()]).status();
            }
            let name = hubs[which].name;
            let generation = hubs[which].generation + 1;
            let (store2, envs2, logs2) = (store.clone(), envs.clone(), logs.clone());
            // The new process starts once the old one is gone (exited: a zombie until we reap it below). Meanwhile
            // the URL still points at the old one; clients fall back to the other hub.
            let new = tokio::task::spawn_blocking(move || {
                let deadline = std::time::Instant::now() + Duration::from_secs(30);
                while std::time::Instant::now() < deadline
                    && std::fs::read_to_string(format!("/proc/{old_pid}/status"))
                        .is_ok_and(|s| !s.contains("State:\tZ"))
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                start_hub(name, generation, &store2, &envs2, &logs2)
            })
            .await
            .expect("restart");
            let mut old = std::mem::replace(&mut hubs[which], new);
            let exit = old.serve.child.wait().ok();
            drop(old);
            let exited_ms = now_ms() - t_real;
            world.urls.write().expect("urls")[which] = hubs[which].serve.url.clone();
            println!(
                "day {day}: {kind} hub {name} at scheduler {:02}:{:02} (real +{:.1} s); new process up {:.2} s real \
                 ({:.0} scheduler min) later; old exit {exit:?}",
                ((at - day_start) / HOUR),
                ((at - day_start) % HOUR) / MIN,
                (t_real - week_started) as f64 / 1_000.0,
                exited_ms as f64 / 1_000.0,
                exited_ms as f64 * scale as f64 / 60_000.0
            );
            restarts.push((day, name, kind, at, exited_ms));

            // End of day: pause the churn at 23:20, measure at 23:50.
            clock.sleep_until_sched(day_start + 23 * HOUR + 20 * MIN).await;
            world.paused.store(true, Ordering::Relaxed);
            clock.sleep_until_sched(day_start + 23 * HOUR + 50 * MIN).await;
            let pids = [hubs[0].serve.child.id(), hubs[1].serve.child.id()];
            let info = redis.info("memory");
            let dbsize = redis
                .command(&["DBSIZE"])
                .trim()
                .trim_start_matches(':')
                .parse()
                .unwrap_or(0);
            let nodes = redis.command(&["HLEN", "podium:nodes"]).trim().trim_start_matches(':').parse().unwrap_or(0);
            let now = now_ms();
            let sample = Sample {
                day,
                rss: [rss_kib(pids[0]), rss_kib(pids[1])],
                fds: [fds(pids[0]), fds(pids[1])],
                conns: [0usize, 1].map(|i| accepted(port_of(&hubs[i].serve.url))),
                generation: [hubs[0].generation, hubs[1].generation],
                uptime_sched_h: [0usize, 1].map(|i| (now - hubs[i].started_real) as f64 * scale as f64 / HOUR as f64),
                dbsize,
                used_memory: redis_field(&info, "used_memory"),
                nodes,
                patterns: key_patterns(redis.port()),
                grace_leftover: world.listener_active.load(Ordering::Relaxed),
            };
            println!(
                "day {day} end: hub A (gen {}, up {:.0} h) RSS {} KiB, {} fds; hub B (gen {}, up {:.0} h) RSS {} KiB, \
                 {} fds; redis DBSIZE {}, used_memory {} B, nodes {}; listener joins so far {}",
                sample.generation[0],
                sample.uptime_sched_h[0],
                sample.rss[0],
                sample.fds[0],
                sample.generation[1],
                sample.uptime_sched_h[1],
                sample.rss[1],
                sample.fds[1],
                sample.dbsize,
                sample.used_memory,
                sample.nodes,
                world.listener_joins.load(Ordering::Relaxed)
            );
            samples.push(sample);
            world.paused.store(false, Ordering::Relaxed);
        }
        let week_real = now_ms() - week_started;

        // The last slot's end, its people gone; then the records.
        clock.sleep_until_sched(t0 + slots * HOUR + 10 * MIN).await;
        world.stop.store(true, Ordering::Relaxed);
        for p in people {
            let _ = p.await;
        }
        for w in workers {
            let _ = w.await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (status, text) = admin.call(&http_of(&world.url(1)), reqwest::Method::GET, &format!("/{SUMMIT}"), None).await;
        assert_eq!(status, 200, "status: {text}");
        let st: Value = serde_json::from_str(&text).expect("status json");
        let slot_records = st["stages"][0]["slots"].as_array().cloned().unwrap_or_default();
        let promoted = world.promoted.lock().expect("promoted").clone();
        let mut failed = Vec::new();
        let (mut late_sched, mut late_client_real) = (Vec::new(), Vec::new());
        let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
        for i in 0..slots {
            let start = t0 + i * HOUR;
            let rec = slot_records.iter().find(|s| s["planned_start"].as_i64() == Some(start));
            let Some(rec) = rec else {
                failed.push(format!("slot {i}: no record"));
                continue;
            };
            let status = rec["status"].as_str().unwrap_or("?").to_owned();
            *statuses.entry(status.clone()).or_default() += 1;
            let mut why = Vec::new();
            if status != "completed" {
                why.push(format!("status {status}"));
            }
            match rec["actual_start"].as_i64() {
                Some(a) => late_sched.push(a - rec["start"].as_i64().unwrap_or(start)),
                None => why.push("no actual_start".into()),
            }
            if rec["no_show"].as_array().is_some_and(|a| !a.is_empty()) {
                why.push(format!("no_show {}", rec["no_show"]));
            }
            if !rec["substitute"].is_null() {
                why.push(format!("substitute {}", rec["substitute"]));
            }
            let end_real = clock.real(start + HOUR);
            match promoted.get(&format!("h{i}")).and_then(|r| r.get("moderator")) {
                Some(at) if *at <= end_real => late_client_real.push(*at - clock.real(start)),
                Some(at) => why.push(format!("host promoted {} ms real after the end", at - end_real)),
                None => why.push("host never moderator".into()),
            }
            match promoted.get(&format!("s{i}")).and_then(|r| r.get("speaker")) {
                Some(at) if *at <= end_real => {}
                _ => why.push("speaker never on stage".into()),
            }
            if !why.is_empty() {
                failed.push(format!("slot {i} ({} UTC+{}h): {}", rec["guid"], i, why.join(", ")));
            }
        }
        late_sched.sort_unstable();
        late_client_real.sort_unstable();

        println!();
        println!("## results");
        println!(
            "week: {slots} slots in {:.1} s real; slot statuses {statuses:?}; failed handovers: {}",
            week_real as f64 / 1_000.0,
            failed.len()
        );
        for f in &failed {
            println!("  FAILED {f}");
        }
        let min = |ms: i64| ms as f64 / 60_000.0;
        println!(
            "handover lateness, runner records (actual_start − start), scheduler time: p50 {:.1} / p99 {:.1} / max {:.1} \
             min (= real {:.0} / {:.0} / {:.0} ms)",
            min(pct(&late_sched, 0.5)),
            min(pct(&late_sched, 0.99)),
            min(late_sched.last().copied().unwrap_or(0)),
            pct(&late_sched, 0.5) as f64 / scale as f64,
            pct(&late_sched, 0.99) as f64 / scale as f64,
            late_sched.last().copied().unwrap_or(0) as f64 / scale as f64,
        );
        println!(
            "host sees `you` moderator, from the slot's start, real time: p50 {} / p99 {} / max {} ms (= scheduler {:.1} / \
             {:.1} / {:.1} min)",
            pct(&late_client_real, 0.5),
            pct(&late_client_real, 0.99),
            late_client_real.last().copied().unwrap_or(0),
            min(pct(&late_client_real, 0.5) * scale),
            min(pct(&late_client_real, 0.99) * scale),
            min(late_client_real.last().copied().unwrap_or(0) * scale),
        );
        let mut worst: Vec<(i64, i64)> = (0..slots)
            .filter_map(|i| {
                let rec = slot_records.iter().find(|s| s["planned_start"].as_i64() == Some(t0 + i * HOUR))?;
                Some((rec["actual_start"].as_i64()? - rec["start"].as_i64()?, i))
            })
            .collect();
        worst.sort_unstable();
        let worst: Vec<String> = worst
            .iter()
            .rev()
            .take(8)
            .map(|(late, i)| format!("slot {i} (day {} {:02}:00) {:.1} min", i / 24 + 1, i % 24, min(*late)))
            .collect();
        println!("latest handovers by the records: {}", worst.join("; "));
        let logged = hub_logs(&logs);
        let mut late_log = logged.late_ms.clone();
        late_log.sort_unstable();
        println!(
            "handovers done by the runner (its `handover` log lines, `late_ms` = scheduler time from the output's due \
             time to the room command's answer): {} lines; p50 {:.1} / p99 {:.1} / max {:.1} scheduler min \
             (= real {:.0} / {:.0} / {:.0} ms)",
            late_log.len(),
            min(pct(&late_log, 0.5)),
            min(pct(&late_log, 0.99)),
            min(late_log.last().copied().unwrap_or(0)),
            pct(&late_log, 0.5) as f64 / scale as f64,
            pct(&late_log, 0.99) as f64 / scale as f64,
            late_log.last().copied().unwrap_or(0) as f64 / scale as f64,
        );
        println!(
            "runner moves: {} times a hub started running the summit, {} lost its lease while running it; \
             other warnings in the hubs' logs: {:?}",
            logged.took_over, logged.lost_lease, logged.warnings
        );
        for (day, name, kind, at, down) in &restarts {
            let hour = (at - t0) / HOUR;
            println!(
                "restart day {day}: {kind} hub {name} at slot {hour} +{} min; replacement up after {down} ms real",
                ((at - t0) % HOUR) / MIN
            );
        }
        println!(
            "listener churn: {} joins ({:.1}/s), {} join errors, {} leaves, {} drops; people: {} reconnects, {} join errors",
            world.listener_joins.load(Ordering::Relaxed),
            world.listener_joins.load(Ordering::Relaxed) as f64 / (week_real as f64 / 1_000.0),
            world.listener_join_errors.load(Ordering::Relaxed),
            world.listener_leaves.load(Ordering::Relaxed),
            world.listener_drops.load(Ordering::Relaxed),
            world.person_reconnects.load(Ordering::Relaxed),
            world.person_join_errors.load(Ordering::Relaxed),
        );
        for (e, n) in world.errors.lock().expect("errors").iter() {
            println!("  error ×{n}: {e}");
        }
        println!();
        println!(
            "| Day | Hub A gen / up (sched h) | Hub A RSS KiB | Hub A fds (client sockets) | Hub B gen / up | Hub B RSS KiB | Hub B fds (client sockets) | \
             Redis DBSIZE | used_memory B | audit streams B | podium:nodes |"
        );
        println!("|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---:|");
        for s in &samples {
            println!(
                "| {} | {} / {:.0} | {} | {} ({}) | {} / {:.0} | {} | {} ({}) | {} | {} | {} | {} |",
                s.day,
                s.generation[0],
                s.uptime_sched_h[0],
                s.rss[0],
                s.fds[0],
                s.conns[0],
                s.generation[1],
                s.uptime_sched_h[1],
                s.rss[1],
                s.fds[1],
                s.conns[1],
                s.dbsize,
                s.used_memory,
                s.patterns.iter().filter(|(p, _)| p.ends_with(":audit")).map(|(_, (_, b))| b).sum::<u64>(),
                s.nodes
            );
        }
        if let (Some(first), Some(last)) = (samples.first(), samples.last()) {
            let d = |a: f64, b: f64| if a == 0.0 { 0.0 } else { (b - a) / a * 100.0 };
            println!(
                "day {} vs day 1: hub A RSS {:+.1} %, fds {:+.1} %; hub B RSS {:+.1} %, fds {:+.1} %; DBSIZE {:+.1} %, \
                 used_memory {:+.1} %",
                last.day,
                d(first.rss[0] as f64, last.rss[0] as f64),
                d(first.fds[0] as f64, last.fds[0] as f64),
                d(first.rss[1] as f64, last.rss[1] as f64),
                d(first.fds[1] as f64, last.fds[1] as f64),
                d(first.dbsize as f64, last.dbsize as f64),
                d(first.used_memory as f64, last.used_memory as f64),
            );
            println!("redis keys by pattern (hash tags and digits folded), day 1 → day {}:", last.day);
            let mut all: Vec<&String> = first.patterns.keys().chain(last.patterns.keys()).collect();
            all.sort();
            all.dedup();
            for p in all {
                let (k0, b0) = first.patterns.get(p).copied().unwrap_or_default();
                let (k1, b1) = last.patterns.get(p).copied().unwrap_or_default();
                println!("  {p}: {k0} → {k1} keys, {b0} → {b1} bytes (MEMORY USAGE)");
            }
            println!(
                "listeners still counted active at the measurements (should be 0): {:?}",
                samples.iter().map(|s| s.grace_leftover).collect::<Vec<_>>()
            );
        }
    });
    drop(hubs);
    drop(redis);
}
