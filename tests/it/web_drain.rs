//! The web SDK survives a hub drain like a real app, in Debian's headless Chromium driven by Playwright
//! (`web/e2e/drain.mjs`): two in-process hubs with media share a `redis-server` started here. A moderator, a speaker
//! (invited to the stage, unmuted, publishing the fake microphone) and a listener connect with the SDK's
//! `urls: [hubA, hubB]`, so they join on hub A, which creates the room and runs its media. Once the listener hears
//! the speaker, hub A drains (`ShutdownHandle::drain`, what SIGTERM does). Every page must end up connected to hub B
//! with its role and the new media epoch, the listener must receive the speaker's audio with no gap longer than 3 s
//! (getStats() every 200 ms: packets and audio energy; the measured gaps are printed), each page may create at most
//! one new peer connection, and hub A must stop by itself.
//!
//! Needs Node.js and `web/node_modules`, Chromium (`/usr/bin/chromium` or `PODIUM_CHROMIUM`) and `redis-server`.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use podium_hub::auth::{TokenKeys, claims_for};
use podium_hub::{Config, Hub, Role, ShutdownHandle};
use podium_store::redis_server::RedisServer;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::support::Client;

pub(crate) const SECRET: &str = "web-drain-secret";
/// The whole browser scenario's time limit.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(150);
/// A draining hub must stop by itself within this long.
const EXIT_WITHIN: Duration = Duration::from_secs(15);
/// The hubs' first connection to Redis.
const SETUP: Duration = Duration::from_secs(20);

/// An in-process hub with media on a shared Redis store (also the drain test of `media_webrtcrs`).
pub(crate) struct Node {
    pub(crate) http: String,
    pub(crate) ws: String,
    pub(crate) stop: ShutdownHandle,
    pub(crate) task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Node {
    pub(crate) async fn start(store: &str) -> Self {
        let mut config = Config::default();
        config.server.listen = "127.0.0.1:0".parse().expect("literal address");
        config.server.shutdown_grace_ms = 500;
        config.auth.secret = Some(SECRET.into());
        // The page the browser loads is the demo app, off by default once a secret is configured.
        config.server.demo = Some(true);
        config.store.url = store.into();
        config.media.enabled = true;
        config.media.bind = [127, 0, 0, 1].into();
        config.media.port = 0;
        config.media.workers = 1;
        let hub = Hub::bind(config).await.expect("bind hub");
        let addr = hub.local_addr();
        let stop = hub.shutdown_handle();
        let task = tokio::spawn(hub.run());
        Self { http: format!("http://{addr}"), ws: format!("ws://{addr}{}", podium_hub::WS_PATH), stop, task }
    }

    /// Waits until the hub answers a join (it connects to Redis in the background), in a room of its own.
    pub(crate) async fn wait_up(&self, keys: &TokenKeys) {
        let deadline = Instant::now() + SETUP;
        let token =
            keys.mint(&claims_for("probe", None, "probe", Role::Audience, Duration::from_secs(60))).expect("mint");
        loop {
            let mut c = Client::connect(&self.ws).await;
            let reply = c.request(json!({"type": "join", "token": token})).await;
            if reply["type"] == "ok" {
                c.request(json!({"type": "leave"})).await;
                return;
            }
            assert!(Instant::now() < deadline, "{} did not connect to Redis within {SETUP:?}: {reply}", self.ws);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sdk_in_chromium_survives_a_hub_drain() {
    let _heavy = crate::support::HEAVY.lock().await;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_owned();
    let web = root.join("web");
    assert!(
        web.join("node_modules/playwright-core").is_dir(),
        "web/node_modules is missing: run `bash tests/run` (it runs `npm ci` in web/), or `cd web && npm ci`"
    );
    let chromium = std::env::var("PODIUM_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(Path::new(&chromium).exists(), "Chromium not found at {chromium}; `.ci/run` installs it");

    let redis = RedisServer::start();
    let store = redis.url();
    let a = Node::start(&store).await;
    let b = Node::start(&store).await;
    let keys = TokenKeys::new(SECRET.as_bytes());
    a.wait_up(&keys).await;
    b.wait_up(&keys).await;

    let room = format!("web-drain-{}", std::process::id());
    let token = |identity: &str, role: Role| {
        keys.mint(&claims_for(identity, Some(&identity.to_uppercase()), &room, role, Duration::from_secs(600)))
            .expect("mint")
    };
    let tokens = json!({
        "mod": token("mod", Role::Moderator),
        "spk": token("spk", Role::Speaker),
        "lis": token("lis", Role::Audience),
    });

    let mut child = Command::new("node")
        .arg(web.join("e2e/drain.mjs"))
        .current_dir(&web)
        .env("PODIUM_HUB_A", &a.http)
        .env("PODIUM_HUB_B", &b.http)
        .env("PODIUM_ROOM", &room)
        .env("PODIUM_TOKENS", tokens.to_string())
        .env("PODIUM_CHROMIUM", &chromium)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node (Node.js is needed for the browser test)");
    let pid = child.id();
    let mut stdin = child.stdin.take().expect("stdin");
    let (lines_tx, mut lines) = mpsc::unbounded_channel::<String>();
    let stdout = child.stdout.take().expect("stdout");
    let out_thread = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            eprintln!("[drain.mjs] {line}");
            all.push_str(&line);
            all.push('\n');
            let _ = lines_tx.send(line);
        }
        all
    });
    let stderr = child.stderr.take().expect("stderr");
    let err_thread = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[drain.mjs stderr] {line}");
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let kill = || {
        let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    };

    // The script says when the listener hears the speaker on hub A: drain hub A then.
    let deadline = Instant::now() + SCENARIO_TIMEOUT;
    let mut drained_at = None;
    while let Ok(Some(line)) = tokio::time::timeout_at(deadline, lines.recv()).await {
        if line.trim() == "DRAIN" {
            a.stop.drain();
            drained_at = Some(Instant::now());
            writeln!(stdin, "DRAINED").expect("tell the script");
            stdin.flush().expect("flush");
            break;
        }
    }
    if drained_at.is_none() {
        // The script failed (or hung) before the drain: its output says why.
        kill();
    }

    let status = match tokio::time::timeout_at(deadline, tokio::task::spawn_blocking(move || child.wait())).await {
        Ok(status) => status.expect("join").expect("wait for node"),
        Err(_) => {
            kill();
            panic!("the browser scenario did not finish within {SCENARIO_TIMEOUT:?}");
        }
    };
    drop(stdin);
    let stdout = out_thread.join().expect("stdout reader");
    let stderr = err_thread.join().expect("stderr reader");
    assert!(status.success(), "the browser scenario failed ({status}):\n{stdout}\n{stderr}");
    assert!(stdout.contains("PASS"), "no PASS from the browser scenario:\n{stdout}\n{stderr}");
    let drained_at = drained_at.expect("drained");

    // Hub A stops by itself once its clients moved.
    let exited = tokio::time::timeout_at(drained_at + EXIT_WITHIN, a.task).await;
    match exited {
        Ok(result) => result.expect("join hub A").expect("hub A ran without error"),
        Err(_) => panic!("hub A did not stop within {EXIT_WITHIN:?} of the drain"),
    }
    b.stop.shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(10), b.task).await;
    drop(redis);
}
