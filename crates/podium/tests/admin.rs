//! Issue #11's acceptance tests for the admin API with real processes: `podium serve` hubs (configured through the
//! environment, on port 0) share a `redis-server` started here (AOF, `appendfsync always`), with participants on
//! plain websockets and the API over HTTP.
//!
//! - An administrator acting through hub B on participants connected to hub A (mute, move to the audience, kick,
//!   ban): hub A's participants see it at once, the kicked client gets 4004, and the ban holds on both hubs.
//! - A revocation through hub B cuts off an identity connected to hub A (4012); its old token is refused on both
//!   hubs, a token issued later joins. The same for one token id.
//! - A persistent room (created through the API, with settings, a ban and guests) left empty survives a restart of
//!   both hubs (one SIGTERM, one `kill -9`) and a restart of Redis (SIGTERM, then loading its AOF), while an ad hoc
//!   room ends after its empty timeout.
//!
//! Idempotent retries of a create (`Idempotency-Key`) are not tested here: the API does not implement them yet.
//!
//! Needs `redis-server` on PATH (`tests/run` installs it). Timing margins are generous (CI's two cores are shared
//! with browsers and aiortc): "at once" means well under [`AT_ONCE`], and waits poll against deadlines.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use podium_hub::Role;
use podium_hub::auth::{TokenKeys, claims_for};
use podium_store::redis_server::RedisServer;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::time::Instant;

#[allow(dead_code)]
#[path = "../../../tests/it/support.rs"]
mod support;

use support::Client;

const SECRET: &str = "admin-processes-secret";
const ADMIN_KEY: &str = "adm_processes_0123456789abcdef";
/// Process start, the first Redis connection, a Redis restart may take this long on a loaded machine.
const SETUP: Duration = Duration::from_secs(30);
/// An action through one hub must reach the participants on the other within this long.
const AT_ONCE: Duration = Duration::from_secs(2);
/// The ad hoc rooms' empty timeout (and everyone's grace period) in these tests.
const EMPTY_TIMEOUT_MS: u64 = 500;

/// A `podium serve` child process (media off); killed on drop. Its log (stderr) goes to a file named at start, kept
/// when the test fails.
struct Hub {
    child: Child,
    log: std::path::PathBuf,
    /// Its websocket URL, as it printed it.
    url: String,
    /// `http://127.0.0.1:PORT`.
    base: String,
}

impl Hub {
    async fn start(name: &str, store: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let log = std::env::temp_dir().join(format!(
            "podium-admin-{}-{name}-{}.log",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        eprintln!("hub {name}: log in {}", log.display());
        let keys =
            format!(r#"[{{name = "ops", sha256 = "{}", scope = "admin"}}]"#, podium_hub::admin_key_hash(ADMIN_KEY));
        let mut child = Command::new(env!("CARGO_BIN_EXE_podium"))
            .args(["serve", "--listen", "127.0.0.1:0", "--store", store])
            .env_remove("PODIUM_CONFIG")
            .env("PODIUM_AUTH__SECRET", SECRET)
            .env("PODIUM_MEDIA__ENABLED", "false")
            .env("PODIUM_SERVER__PUBLIC_URL", format!("ws://{name}.admin.invalid/v1/ws"))
            .env("PODIUM_ADMIN__KEYS", keys)
            .env("PODIUM_ROOM__EMPTY_TIMEOUT_MS", EMPTY_TIMEOUT_MS.to_string())
            .env("PODIUM_ROOM__GRACE_MS", EMPTY_TIMEOUT_MS.to_string())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("creating the hub's log"))
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
        let deadline = Instant::now() + SETUP;
        let url = loop {
            let line = tokio::time::timeout_at(deadline, rx.recv()).await.ok().flatten();
            let Some(line) = line else { panic!("{name}: no URL from podium serve within {SETUP:?}") };
            if let Some(url) = line.strip_prefix("Podium is listening: ") {
                break url.trim().to_owned();
            }
        };
        // Keep draining stdout so the hub never blocks on it.
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let base = url.strip_prefix("ws://").and_then(|rest| rest.split_once('/')).map(|(host, _)| host);
        let base = format!("http://{}", base.expect("ws://HOST:PORT/PATH"));
        Self { child, log, url, base }
    }

    /// SIGTERM (a drain), then waits for the process to exit by itself.
    async fn terminate(mut self) {
        let status = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().expect("kill");
        assert!(status.success(), "kill -TERM: {status}");
        let deadline = Instant::now() + SETUP;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "the hub exited with {status} after SIGTERM");
                return;
            }
            assert!(Instant::now() < deadline, "the hub did not exit within {SETUP:?} of SIGTERM");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// One admin API call with the admin key: status and JSON body (`null` when empty). Problems are
    /// `application/problem+json` carrying the status.
    async fn api(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = reqwest::Client::new()
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(ADMIN_KEY)
            .timeout(Duration::from_secs(10));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("admin API request");
        let status = resp.status();
        let problem = resp.headers().get("content-type").is_some_and(|v| v == "application/problem+json");
        let text = resp.text().await.expect("body");
        let value = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).expect("a JSON body") };
        if !status.is_success() {
            assert!(problem, "{status} answered as problem+json: {text}");
        }
        (status, value)
    }

    /// An API call that must answer `expected`; retried while the hub answers 503 (not connected to Redis yet, or
    /// reconnecting).
    async fn api_ok(&self, method: Method, path: &str, body: Option<Value>, expected: StatusCode) -> Value {
        let deadline = Instant::now() + SETUP;
        loop {
            let (status, value) = self.api(method.clone(), path, body.clone()).await;
            if status == expected {
                return value;
            }
            assert!(
                status == StatusCode::SERVICE_UNAVAILABLE && Instant::now() < deadline,
                "{method} {path}: expected {expected}, got {status} {value}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Joins `room` with `token`, retrying while the hub cannot reach Redis (`unavailable`); the join's reply.
    async fn join_with(&self, token: &str) -> (Client, Value) {
        let deadline = Instant::now() + SETUP;
        loop {
            let mut c = Client::connect(&self.url).await;
            let reply = c.request(json!({"type": "join", "token": token})).await;
            if reply["code"] != "unavailable" || Instant::now() >= deadline {
                return (c, reply);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Joins `room` as `identity` with a fresh token; the join must succeed.
    async fn join(&self, room: &str, identity: &str, role: Role) -> Client {
        let (c, reply) = self.join_with(&token(room, identity, role)).await;
        assert_eq!(reply["type"], "ok", "join of {identity} to {room}: {reply}");
        c
    }

    /// A join of `room` with `token` must fail with `code`.
    async fn refused(&self, token: &str, code: &str) {
        let (_, reply) = self.join_with(token).await;
        assert_eq!((reply["type"].as_str(), reply["code"].as_str()), (Some("error"), Some(code)), "{reply}");
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.kill9();
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

fn token(room: &str, identity: &str, role: Role) -> String {
    TokenKeys::new(SECRET.as_bytes())
        .mint(&claims_for(identity, Some(&identity.to_uppercase()), room, role, Duration::from_secs(600)))
        .expect("mint")
}

/// Redis, hubs A and B on it, and a room created through B's API (persistent by default).
async fn two_hubs_with_room(name: &str) -> (RedisServer, Hub, Hub) {
    let redis = RedisServer::start();
    let a = Hub::start("a", &redis.url()).await;
    let b = Hub::start("b", &redis.url()).await;
    let room = b.api_ok(Method::POST, "/v1/admin/rooms", Some(json!({"name": name})), StatusCode::CREATED).await;
    assert_eq!(room["persistent"], true, "{room}");
    (redis, a, b)
}

/// Runs `action` (an API call), then waits for `client`'s next `kind` event matching `pred`; asserts that it came
/// within [`AT_ONCE`] of the call.
async fn reaches(
    client: &mut Client,
    action: impl Future<Output = Value>,
    kind: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    action.await;
    let event = client.event(kind, pred).await;
    let took = start.elapsed();
    assert!(took < AT_ONCE, "{kind} arrived {took:?} after the API call: {event}");
    event
}

/// Waits for the hub to close `client`'s connection; asserts the code and that it came within [`AT_ONCE`] of `start`.
async fn closed_with(client: &mut Client, code: u16, start: Instant) {
    let (got, reason) = client.closed().await;
    let took = start.elapsed();
    assert_eq!(got, code, "close code (reason {reason:?})");
    assert!(took < AT_ONCE, "closed {took:?} after the API call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_actions_through_hub_b_reach_participants_on_hub_a_at_once() {
    let (_redis, a, b) = two_hubs_with_room("summit").await;
    let mut moderator = a.join("summit", "mod", Role::Moderator).await;
    let mut sam = a.join("summit", "sam", Role::Speaker).await;
    let mut bo = a.join("summit", "bo", Role::Audience).await;

    // Onto the stage through B; sam (on A) accepts and speaks.
    let invited = reaches(
        &mut sam,
        b.api_ok(Method::POST, "/v1/admin/rooms/summit/participants/sam/invite_to_stage", None, StatusCode::NO_CONTENT),
        "you",
        |e| !e["you"]["invite"].is_null(),
    )
    .await;
    assert_eq!(invited["you"]["invite"]["by_admin"], "ops", "{invited}");
    sam.ok(json!({"type": "accept_invite"})).await;
    sam.ok(json!({"type": "set_muted", "muted": false})).await;
    let speaking =
        |e: &Value| e["stage"].as_array().is_some_and(|s| s.iter().any(|m| m["id"] == "sam" && m["muted"] == false));
    moderator.event("stage", speaking).await;

    // Mute, through B, with a reason: A's participants see it at once, named as the administrator.
    let mute = json!({"reason": "feedback"});
    let muted = reaches(
        &mut moderator,
        b.api_ok(Method::POST, "/v1/admin/rooms/summit/participants/sam/mute", Some(mute), StatusCode::NO_CONTENT),
        "stage",
        |e| e["cause"]["kind"] == "muted",
    )
    .await;
    assert_eq!(
        (&muted["cause"]["participant"], &muted["cause"]["by_admin"], &muted["cause"]["reason"]),
        (&json!("sam"), &json!("ops"), &json!("feedback")),
        "{muted}"
    );
    sam.event("stage", |e| e["cause"]["kind"] == "muted").await;

    // The hubs, as B sees them: A holds the room's lease (its participants are there), B none (it ran the room
    // only for the requests); both heartbeat.
    let nodes = b.api_ok(Method::GET, "/v1/admin/nodes", None, StatusCode::OK).await;
    let rows = nodes["nodes"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{nodes}");
    for n in rows {
        assert_eq!(n["leases"], if n["this"] == true { 0 } else { 1 }, "{nodes}");
        assert!(n["heartbeat_age_ms"].as_u64().unwrap() < 3_000, "{nodes}");
    }

    // Back to the audience.
    let moved = reaches(
        &mut moderator,
        b.api_ok(
            Method::POST,
            "/v1/admin/rooms/summit/participants/sam/move_to_audience",
            None,
            StatusCode::NO_CONTENT,
        ),
        "stage",
        |e| e["cause"]["kind"] == "moved_to_audience",
    )
    .await;
    assert_eq!(moved["cause"]["by_admin"], "ops", "{moved}");
    let you = sam.event("you", |e| e["you"]["role"] == "audience").await;
    assert_eq!(you["you"]["role"], "audience", "{you}");

    // Kick: bo's connection on A closes with 4004, and the stage sees bo leave.
    let start = Instant::now();
    b.api_ok(Method::POST, "/v1/admin/rooms/summit/participants/bo/kick", None, StatusCode::NO_CONTENT).await;
    closed_with(&mut bo, 4004, start).await;
    moderator.event("participant_left", |e| e["participant"] == "bo").await;

    // A ban through B holds on both hubs.
    b.api_ok(Method::PUT, "/v1/admin/rooms/summit/bans/bo", None, StatusCode::NO_CONTENT).await;
    let bo_token = token("summit", "bo", Role::Audience);
    a.refused(&bo_token, "banned").await;
    b.refused(&bo_token, "banned").await;
    let shown = a.api_ok(Method::GET, "/v1/admin/rooms/summit", None, StatusCode::OK).await;
    assert_eq!(shown["bans"], json!(["bo"]), "{shown}");
    // Unbanned through A, bo joins through B.
    a.api_ok(Method::DELETE, "/v1/admin/rooms/summit/bans/bo", None, StatusCode::NO_CONTENT).await;
    let _bo = b.join("summit", "bo", Role::Audience).await;
    moderator.event("participant_joined", |e| e.to_string().contains("\"bo\"")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_through_hub_b_cuts_an_identity_off_on_every_hub() {
    let (_redis, a, b) = two_hubs_with_room("town").await;
    let mut moderator = a.join("town", "mod", Role::Moderator).await;

    // By identity: al's session on A ends with 4012, and the token al had is refused on both hubs.
    let old = token("town", "al", Role::Audience);
    let (mut al, reply) = a.join_with(&old).await;
    assert_eq!(reply["type"], "ok", "{reply}");
    moderator.event("participant_joined", |e| e.to_string().contains("\"al\"")).await;
    let start = Instant::now();
    let revoke = json!({"identity": "al", "reason": "leaked"});
    b.api_ok(Method::POST, "/v1/admin/rooms/town/revocations", Some(revoke), StatusCode::NO_CONTENT).await;
    closed_with(&mut al, 4012, start).await;
    moderator.event("participant_left", |e| e["participant"] == "al").await;
    a.refused(&old, "unauthorized").await;
    b.refused(&old, "unauthorized").await;
    // A token issued after the revocation joins (issue times are whole seconds), on either hub.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let _al = a.join("town", "al", Role::Audience).await;

    // By token id: a token minted through the API (on A), used on A, revoked through B.
    let minted = a
        .api_ok(
            Method::POST,
            "/v1/admin/tokens",
            Some(json!({"identity": "tia", "room": "town", "role": "audience"})),
            StatusCode::CREATED,
        )
        .await;
    let tia_token = minted["token"].as_str().expect("token").to_owned();
    let (mut tia, reply) = a.join_with(&tia_token).await;
    assert_eq!(reply["type"], "ok", "{reply}");
    let start = Instant::now();
    let revoke = json!({"token_id": minted["token_id"]});
    b.api_ok(Method::POST, "/v1/admin/rooms/town/revocations", Some(revoke), StatusCode::NO_CONTENT).await;
    closed_with(&mut tia, 4012, start).await;
    a.refused(&tia_token, "unauthorized").await;
    b.refused(&tia_token, "unauthorized").await;
    // Another token for the same identity is not that token id: it joins at once.
    let _tia = b.join("town", "tia", Role::Audience).await;
}

/// What a room's restart must keep: its name, persistence, settings, bans and guests (sorted).
fn kept(room: &Value) -> Value {
    let sorted = |v: &Value| {
        let mut names: Vec<String> =
            v.as_array().map(|a| a.iter().filter_map(|n| n.as_str().map(str::to_owned)).collect()).unwrap_or_default();
        names.sort();
        json!(names)
    };
    json!({
        "name": room["name"],
        "persistent": room["persistent"],
        "settings": room["settings"],
        "bans": sorted(&room["bans"]),
        "guests": sorted(&room["guests"]),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_rooms_survive_hub_and_redis_restarts_and_ad_hoc_rooms_end() {
    let mut redis = RedisServer::start();
    let a = Hub::start("a", &redis.url()).await;
    let mut b = Hub::start("b", &redis.url()).await;

    let create = json!({"name": "keep", "open_mic": true, "closed": true, "stage_capacity": 3,
        "guests": ["gus", "mod"]});
    b.api_ok(Method::POST, "/v1/admin/rooms", Some(create), StatusCode::CREATED).await;
    b.api_ok(Method::PUT, "/v1/admin/rooms/keep/bans/troll", None, StatusCode::NO_CONTENT).await;
    b.api_ok(Method::PUT, "/v1/admin/rooms/keep/guests/gail", None, StatusCode::NO_CONTENT).await;
    let expected = json!({
        "name": "keep",
        "persistent": true,
        "settings": {"open_mic": true, "closed": true, "stage_capacity": 3, "chat": true, "chat_slow_mode_ms": 0},
        "bans": ["troll"],
        "guests": ["gail", "gus", "mod"],
    });
    let shown = a.api_ok(Method::GET, "/v1/admin/rooms/keep", None, StatusCode::OK).await;
    assert_eq!(kept(&shown), expected, "{shown}");

    // People come and go on both hubs, in the persistent room and in an ad hoc one.
    let mut moderator = a.join("keep", "mod", Role::Moderator).await;
    let mut gus = b.join("keep", "gus", Role::Speaker).await;
    let mut passer = a.join("adhoc", "pat", Role::Moderator).await;
    b.refused(&token("keep", "stranger", Role::Audience), "not_invited").await;
    for c in [&mut moderator, &mut gus, &mut passer] {
        c.ok(json!({"type": "leave"})).await;
    }

    // The ad hoc room ends after its empty timeout; the persistent one stays, empty.
    let deadline = Instant::now() + SETUP;
    loop {
        let (status, value) = a.api(Method::GET, "/v1/admin/rooms/adhoc", None).await;
        if status == StatusCode::NOT_FOUND {
            break;
        }
        assert!(Instant::now() < deadline, "the empty ad hoc room did not end: {status} {value}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(2 * EMPTY_TIMEOUT_MS)).await;
    let shown = b.api_ok(Method::GET, "/v1/admin/rooms/keep", None, StatusCode::OK).await;
    assert_eq!(kept(&shown), expected, "{shown}");
    assert_eq!(shown["counts"]["total"], 0, "{shown}");
    let list = a.api_ok(Method::GET, "/v1/admin/rooms", None, StatusCode::OK).await;
    let names: Vec<&str> = list["rooms"].as_array().expect("rooms").iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, ["keep"], "{list}");

    // Both hubs go (one drains on SIGTERM, one is killed) and come back.
    a.terminate().await;
    b.kill9();
    drop(b);
    let a = Hub::start("a2", &redis.url()).await;
    let mut b = Hub::start("b2", &redis.url()).await;
    for hub in [&a, &b] {
        let shown = hub.api_ok(Method::GET, "/v1/admin/rooms/keep", None, StatusCode::OK).await;
        assert_eq!(kept(&shown), expected, "after the hubs' restart: {shown}");
    }

    // Redis restarts (SIGTERM, then it loads its AOF); the hubs reconnect and find the room as it was.
    let pid = redis.pid().expect("redis-server runs");
    let status = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().expect("kill");
    assert!(status.success(), "kill -TERM redis-server: {status}");
    let deadline = Instant::now() + SETUP;
    while std::net::TcpStream::connect(("127.0.0.1", redis.port())).is_ok() {
        assert!(Instant::now() < deadline, "redis-server did not exit within {SETUP:?} of SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    redis.restart();
    for hub in [&a, &b] {
        let shown = hub.api_ok(Method::GET, "/v1/admin/rooms/keep", None, StatusCode::OK).await;
        assert_eq!(kept(&shown), expected, "after the Redis restart: {shown}");
    }
    let list = b.api_ok(Method::GET, "/v1/admin/rooms", None, StatusCode::OK).await;
    assert_eq!(list["rooms"].as_array().map(Vec::len), Some(1), "{list}");
    // It still works as configured: guests join (on either hub), the banned and strangers do not.
    let _gail = a.join("keep", "gail", Role::Audience).await;
    b.refused(&token("keep", "troll", Role::Audience), "banned").await;
    a.refused(&token("keep", "stranger", Role::Audience), "not_invited").await;
    let (_, welcome) = b.join_with(&token("keep", "gus", Role::Speaker)).await;
    assert_eq!(welcome["type"], "ok", "{welcome}");
    b.kill9();
}

/// A departure committed on one hub a moment after another hub's commit, before its announcement arrived, loses the
/// commit race: it must run again on the newer room, not vanish (the participant would stay in the room, connected,
/// with no connection anywhere; in a persistent room, for good).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn departures_right_after_a_commit_on_the_other_hub_are_not_lost() {
    let (_redis, a, b) = two_hubs_with_room("busy").await;
    for round in 0..12 {
        let mut x = a.join("busy", "x", Role::Audience).await;
        let mut y = b.join("busy", "y", Role::Audience).await;
        x.ok(json!({"type": "leave"})).await;
        if round % 2 == 0 {
            y.ok(json!({"type": "leave"})).await;
        } else {
            // A dropped connection: its grace period must start (and end).
            drop(y);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let room = b.api_ok(Method::GET, "/v1/admin/rooms/busy", None, StatusCode::OK).await;
            if room["counts"]["total"] == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "round {round}: someone stayed after leaving: {room}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
