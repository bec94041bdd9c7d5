//! Webhooks end to end: two `podium serve` processes on a test `redis-server` deliver signed events to a receiver
//! in Python that verifies every request with the `standardwebhooks` package from PyPI (`tests/webhooks/receiver.py`,
//! not Podium's code). The hubs sign with two secrets (a rotation); the receiver knows only the second.
//!
//! Events are made on both hubs in two rooms; then the receiver goes down for [`OUTAGE`] while more events are made,
//! and the hub delivering the busiest room is `kill -9`ed during the outage (its participants' grace periods then
//! run out: more events). After the receiver is back, every event each room ever queued (the outbox counts them)
//! must have arrived, verified, with first arrivals in per-room `(seq, index)` order, and the outboxes must be empty.
//! The retry schedule and the lease are shortened for the test; the mechanism is the production one.
//!
//! Needs `redis-server` and Python with `standardwebhooks` (`.venv-media`, made by `tests/run`; or `PODIUM_PYTHON`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use podium_hub::Role;
use podium_hub::auth::{TokenKeys, claims_for};
use podium_store::redis_server::RedisServer;
use serde_json::{Value, json};
use tokio::time::Instant;

#[allow(dead_code)]
#[path = "../../../tests/it/support.rs"]
mod support;

use support::Client;

const SECRET: &str = "webhooks-secret";
/// The old secret (the receiver does not know it) and the new one (it does).
const OLD_KEY: &str = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const NEW_KEY: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// How long the receiver is down.
const OUTAGE: Duration = Duration::from_secs(60);
const SETUP: Duration = Duration::from_secs(30);
/// Every event must have arrived within this long of the receiver's return.
const CATCH_UP: Duration = Duration::from_secs(40);

fn python() -> String {
    std::env::var("PODIUM_PYTHON").ok().filter(|p| !p.is_empty()).unwrap_or_else(|| {
        let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv-media/bin/python");
        if std::path::Path::new(venv).exists() { venv.to_owned() } else { "python3".to_owned() }
    })
}

/// The receiver process; what it printed goes to `log`.
struct Receiver {
    child: Child,
    port: u16,
}

impl Receiver {
    fn start(port: u16, log: &Arc<Mutex<Vec<Value>>>) -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/webhooks/receiver.py");
        let mut child = Command::new(python())
            .args([script, &port.to_string(), NEW_KEY])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the webhook receiver (python with standardwebhooks)");
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        let port: Value = serde_json::from_str(&first).unwrap_or_else(|_| {
            panic!(
                "the receiver did not start ({first:?}); it needs `standardwebhooks` (pip install -r \
                 tests/media/requirements.txt into .venv-media, or set PODIUM_PYTHON)"
            )
        });
        let port = u16::try_from(port["port"].as_u64().expect("port")).expect("port");
        let log = Arc::clone(log);
        std::thread::spawn(move || {
            for line in lines {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str(&line) {
                    log.lock().expect("log").push(v);
                }
            }
        });
        Self { child, port }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.kill9();
    }
}

struct Hub {
    child: Child,
    url: String,
    public_url: String,
}

impl Hub {
    async fn start(name: &str, store: &str, receiver_port: u16) -> Self {
        let public_url = format!("ws://{name}.invalid/v1/ws");
        let endpoints = format!(
            r#"[{{name = "app", url = "http://127.0.0.1:{receiver_port}/hook", secrets = ["{OLD_KEY}", "{NEW_KEY}"], timeout_ms = 2000}}]"#
        );
        let mut child = Command::new(env!("CARGO_BIN_EXE_podium"))
            .args(["serve", "--listen", "127.0.0.1:0", "--store", store])
            .env("PODIUM_AUTH__SECRET", SECRET)
            .env("PODIUM_MEDIA__ENABLED", "false")
            .env("PODIUM_SERVER__PUBLIC_URL", &public_url)
            .env("PODIUM_ROOM__GRACE_MS", "2000")
            .env("PODIUM_WEBHOOKS__ENDPOINTS", endpoints)
            .env("PODIUM_WEBHOOKS__RETRY_SCHEDULE_MS", format!("[{}]", ["1000"; 120].join(",")))
            .env("PODIUM_WEBHOOKS__RETRY_JITTER", "0.2")
            .env("PODIUM_WEBHOOKS__LEASE_MS", "3000")
            .env("PODIUM_WEBHOOKS__POLL_INTERVAL_MS", "200")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start podium serve");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let stdout = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut hub = Self { child, url: String::new(), public_url };
        let deadline = Instant::now() + SETUP;
        while hub.url.is_empty() {
            let line = tokio::time::timeout_at(deadline, rx.recv()).await.ok().flatten();
            let Some(line) = line else { panic!("{name}: no URL from podium serve within {SETUP:?}") };
            if let Some(url) = line.strip_prefix("Podium is listening: ") {
                hub.url = url.trim().to_owned();
            }
        }
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        hub
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn token(room: &str, identity: &str, role: Role) -> String {
    TokenKeys::new(SECRET.as_bytes())
        .mint(&claims_for(identity, Some(&identity.to_uppercase()), room, role, Duration::from_secs(600)))
        .expect("mint")
}

/// Joins, retrying while the hub has not reached Redis yet.
async fn join(hub: &Hub, room: &str, identity: &str, role: Role) -> Client {
    let deadline = Instant::now() + SETUP;
    loop {
        let mut c = Client::connect(&hub.url).await;
        let reply = c.request(json!({"type": "join", "token": token(room, identity, role)})).await;
        if reply["type"] == "ok" {
            return c;
        }
        assert!(Instant::now() < deadline, "join of {identity} failed: {reply}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn redis_value(redis: &RedisServer, args: &[&str]) -> String {
    let reply = redis.command(args);
    reply.split("\r\n").find(|l| !l.is_empty() && !l.starts_with('$') && !l.starts_with('*')).unwrap_or("").to_owned()
}

/// Verified deliveries so far: per room, event ids in first-arrival order with their `(seq, index)` and type.
/// Per room: event ids in first-arrival order, with their `(seq, index)` and type.
type Arrivals = BTreeMap<String, Vec<(String, (u64, u64), String)>>;

fn arrivals(log: &Arc<Mutex<Vec<Value>>>) -> Arrivals {
    let log = log.lock().expect("log");
    let mut seen = HashSet::new();
    let mut rooms: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for record in log.iter() {
        assert_eq!(record["ok"], true, "the receiver refused a request: {record}");
        let p = &record["payload"];
        let id = record["id"].as_str().unwrap_or_default().to_owned();
        assert_eq!(p["data"]["id"], id.as_str(), "payload id and webhook-id differ: {record}");
        assert_eq!(record["signatures"], 2, "one signature per secret: {record}");
        if !seen.insert(id.clone()) {
            continue;
        }
        let Some(room) = p["data"]["room"].as_str() else { continue };
        let key = (p["data"]["seq"].as_u64().unwrap_or(0), p["data"]["index"].as_u64().unwrap_or(0));
        rooms.entry(room.to_owned()).or_default().push((id, key, p["type"].as_str().unwrap_or("").to_owned()));
    }
    rooms
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_in_order_through_a_receiver_outage_and_a_hub_kill() {
    let redis = RedisServer::start();
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut receiver = Receiver::start(0, &log);
    let port = receiver.port;
    let mut a = Hub::start("a", &redis.url(), port).await;
    let b = Hub::start("b", &redis.url(), port).await;

    // Phase 1: the receiver is up. Room r1 spans both hubs; r2 lives on b.
    let mut m1 = join(&a, "r1", "mod1", Role::Moderator).await;
    let mut l1 = join(&b, "r1", "lis1", Role::Speaker).await;
    l1.ok(json!({"type": "raise_hand"})).await;
    // Hub a's copy of the room follows b's commit a moment later: approve once the moderator saw the hand.
    m1.event("hand_queue", |e| e["queue"]["total"] == 1).await;
    m1.ok(json!({"type": "approve_hand", "participant": "lis1"})).await;
    let mut m2 = join(&b, "r2", "mod2", Role::Moderator).await;
    let _l2 = join(&b, "r2", "lis2", Role::Audience).await;
    m2.event("participant_joined", |e| e.to_string().contains("lis2")).await;
    let deadline = Instant::now() + SETUP;
    while arrivals(&log).get("r1").map_or(0, Vec::len) < 5 {
        assert!(Instant::now() < deadline, "first events never arrived: {:?}", arrivals(&log));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Phase 2: the receiver goes away; events keep coming on both hubs.
    receiver.kill9();
    let outage_start = Instant::now();
    l1.event("you", |e| e["you"]["role"] == "speaker").await;
    l1.ok(json!({"type": "set_muted", "muted": false})).await;
    let unmuted =
        |e: &Value| e["stage"].as_array().is_some_and(|s| s.iter().any(|m| m["id"] == "lis1" && m["muted"] == false));
    m1.event("stage", unmuted).await;
    m1.ok(json!({"type": "mute", "participant": "lis1"})).await;
    m1.ok(json!({"type": "move_to_audience", "participant": "lis1"})).await;
    m1.ok(json!({"type": "ban", "participant": "troll"})).await;
    let _l3 = join(&a, "r1", "lis3", Role::Audience).await;
    m2.ok(json!({"type": "kick", "participant": "lis2"})).await;
    m2.ok(json!({"type": "ban", "participant": "troll"})).await;
    // Let the hubs try (and fail) a few times, then kill the hub delivering r1 (or a, if none holds it now).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let holder = redis_value(&redis, &["GET", "podium:{r1}:hooklease"]);
    let registry = redis.command(&["HGET", "podium:nodes", &holder]);
    let kill_a = holder.is_empty() || registry.contains(&a.public_url);
    let (mut survivor_mod, survivor) = if kill_a {
        a.kill9();
        (m2, &b)
    } else {
        drop(b);
        (m1, &a)
    };
    // More events while one hub is dead and the receiver is down (the killed hub's participants leave when their
    // grace period ends, which the survivor's timers commit).
    let room = if kill_a { "r2" } else { "r1" };
    let _late = join(survivor, room, "late", Role::Audience).await;
    survivor_mod.ok(json!({"type": "unban", "participant": "troll"})).await;
    tokio::time::sleep(OUTAGE.saturating_sub(outage_start.elapsed())).await;

    // Phase 3: the receiver is back on the same port.
    let _receiver = Receiver::start(port, &log);
    let deadline = Instant::now() + CATCH_UP;
    let expected = |room: &str| redis_value(&redis, &["HGET", &format!("podium:{{{room}}}:hookstate"), "next"]);
    loop {
        let got = arrivals(&log);
        let done = ["r1", "r2"].iter().all(|room| {
            let queued: usize = expected(room).parse().unwrap_or(usize::MAX);
            got.get(*room).map_or(0, Vec::len) == queued
                && redis_value(&redis, &["LLEN", &format!("podium:{{{room}}}:hooks")]) == ":0"
        });
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every event arrived within {CATCH_UP:?} of the receiver's return: r1 queued {}, r2 queued {}, \
             got {got:#?}",
            expected("r1"),
            expected("r2")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let got = arrivals(&log);
    let mut kinds: HashMap<&str, usize> = HashMap::new();
    for (room, events) in &got {
        let keys: Vec<(u64, u64)> = events.iter().map(|(_, k, _)| *k).collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(keys, sorted, "{room}: events out of order: {events:#?}");
        for (_, _, kind) in events {
            *kinds.entry(kind.as_str()).or_default() += 1;
        }
    }
    for kind in [
        "room.started",
        "participant.joined",
        "hand.raised",
        "participant.promoted",
        "participant.muted",
        "participant.moved_to_audience",
        "participant.kicked",
        "participant.left",
        "participant.banned",
        "participant.unbanned",
    ] {
        assert!(kinds.contains_key(kind), "no {kind} arrived: {kinds:?}");
    }
    // The moderation actions are in the rooms' audit logs too.
    let audit: usize = ["r1", "r2"]
        .iter()
        .map(|room| {
            redis_value(&redis, &["XLEN", &format!("podium:{{{room}}}:audit")])
                .trim_start_matches(':')
                .parse()
                .unwrap_or(0)
        })
        .sum();
    assert!(audit >= 6, "audit entries: {audit}");
    let duplicates = log.lock().expect("log").len() - got.values().map(Vec::len).sum::<usize>();
    eprintln!("delivered {:?} ({duplicates} redeliveries), audit entries {audit}", kinds);
}
