//! Hostile clients against a `podium serve` process, where what they cost the hub can be counted from outside: its
//! open file descriptors (`/proc/<pid>/fd`) and its log lines (stderr, at the default level).
//!
//! - Clients that flood frames without a token and never read their replies are all dropped within the auth timeout
//!   plus the write timeout, and the hub's descriptors return to where they were.
//! - A joined client that floods requests and stops reading loses its socket within the write timeout; its room and
//!   the other clients in it carry on.
//! - Hundreds of refused tokens from one address make one summary line, not one line each.
//!
//! Every test keeps a control client (a moderator) in the room and checks it still works and the stage is unchanged.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use podium_hub::Role;
use podium_hub::auth::{TokenKeys, claims_for};
use serde_json::json;
use tokio::io::AsyncWriteExt as _;
use tokio::time::Instant;

#[path = "../benches/common/mod.rs"]
mod common;
#[allow(dead_code)]
#[path = "../../../tests/it/raw.rs"]
mod raw;
#[allow(dead_code)]
#[path = "../../../tests/it/support.rs"]
mod support;

use raw::{Raw, TEXT};
use support::Client;

const SECRET: &str = "abuse-secret";
const AUTH_TIMEOUT_MS: u64 = 1_000;
const WRITE_TIMEOUT_MS: u64 = 2_000;
/// Slack on top of the documented bounds, for a loaded 2-core CI machine.
const SLACK: Duration = Duration::from_secs(5);

/// The tests run one at a time: the floods are CPU-heavy, and the bounds are timings.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A `podium serve` process (media off) with short auth and write timeouts, its stderr collected.
struct Hub {
    serve: common::Serve,
    addr: std::net::SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Hub {
    fn start(extra: &[(&str, &str)]) -> Self {
        let auth = AUTH_TIMEOUT_MS.to_string();
        let write = WRITE_TIMEOUT_MS.to_string();
        let mut envs = vec![
            ("PODIUM_AUTH__SECRET", SECRET),
            ("PODIUM_MEDIA__ENABLED", "false"),
            ("PODIUM_AUTH__AUTH_TIMEOUT_MS", auth.as_str()),
            ("PODIUM_LIMITS__WRITE_TIMEOUT_MS", write.as_str()),
            ("NO_COLOR", "1"),
        ];
        envs.extend_from_slice(extra);
        // No RUST_LOG: the default log level, as operators run it.
        let mut serve = common::serve(&["serve", "--listen", "127.0.0.1:0"], &envs, Stdio::piped());
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        let stderr = serve.child.stderr.take().expect("piped stderr");
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().expect("log lock").push(line);
            }
        });
        let addr = serve
            .url
            .trim_start_matches("ws://")
            .trim_end_matches(podium_hub::WS_PATH)
            .parse()
            .expect("the printed URL has an address");
        Self { serve, addr, log }
    }

    fn url(&self) -> String {
        format!("ws://{}{}", self.addr, podium_hub::WS_PATH)
    }

    fn token(identity: &str, room: &str, role: Role) -> String {
        TokenKeys::new(SECRET.as_bytes())
            .mint(&claims_for(identity, None, room, role, Duration::from_secs(600)))
            .expect("mint")
    }

    async fn join(&self, identity: &str, room: &str, role: Role) -> Client {
        let mut c = Client::connect(&self.url()).await;
        c.ok(json!({"type": "join", "token": Self::token(identity, room, role)})).await;
        c
    }

    /// The hub process's open file descriptors.
    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.serve.child.id())).map(Iterator::count).unwrap_or(0)
    }

    /// Waits (bounded) until the hub's descriptors are back to `baseline`; the last count.
    async fn fds_back_to(&self, baseline: usize) -> usize {
        let deadline = Instant::now() + SLACK;
        loop {
            let n = self.fds();
            if n <= baseline || Instant::now() > deadline {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_lines(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
    }
}

/// How long a flooding client was kept.
#[derive(Debug)]
struct Held {
    /// From the start of the flood until the hub dropped the connection.
    total: Duration,
    /// From when the hub stopped reading (a write waited 200 ms) until it dropped the connection.
    after_stall: Duration,
}

/// Writes `frame` over and over, never reading, until the hub drops the connection (a write fails) or `limit`
/// passes (`None`).
async fn flood(mut raw: Raw, frame: Vec<u8>, limit: Duration) -> Option<Held> {
    let start = Instant::now();
    let mut stalled = None;
    let chunk: Vec<u8> = frame.iter().copied().cycle().take(frame.len() * 1000).collect();
    loop {
        if start.elapsed() > limit {
            return None;
        }
        match tokio::time::timeout(Duration::from_millis(200), raw.stream.write_all(&chunk)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                let after_stall = stalled.map_or(Duration::ZERO, |at: Instant| at.elapsed());
                return Some(Held { total: start.elapsed(), after_stall });
            }
            // The hub stopped reading.
            Err(_) => {
                stalled.get_or_insert_with(|| Instant::now() - Duration::from_millis(200));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_flooders_that_never_read_are_dropped_and_their_descriptors_freed() {
    let _serial = SERIAL.lock().await;
    let hub = Hub::start(&[]);
    let mut m = hub.join("mod", "flood", Role::Moderator).await;
    let stage = m.ok(json!({"type": "get_state"})).await["result"]["stage"].clone();
    let baseline = hub.fds();
    // 20 clients on 20 addresses, tiny receive buffers so the hub's replies back up at once.
    let frame = Raw::frame(TEXT, b"x", true);
    let mut floods = Vec::new();
    for i in 0..20u8 {
        let from = Some(std::net::IpAddr::from([127, 0, 1, 10 + i]));
        let raw = Raw::connect_with(hub.addr, from, &[], Some(4096)).await.expect("upgrade");
        floods.push(tokio::spawn(flood(raw, frame.clone(), Duration::from_secs(30))));
    }
    let bound = Duration::from_millis(AUTH_TIMEOUT_MS + WRITE_TIMEOUT_MS) + SLACK;
    let mut times = Vec::new();
    for f in floods {
        times.push(f.await.expect("flood task").expect("the hub never dropped a flooding client"));
    }
    let worst = times.iter().map(|h| h.total).max().unwrap_or_default();
    eprintln!("flooders dropped after {times:?}");
    assert!(worst <= bound, "a flooder was held {worst:?}, more than auth timeout + write timeout (+ slack) {bound:?}");
    let after = hub.fds_back_to(baseline).await;
    assert!(after <= baseline, "the hub holds {after} descriptors, {baseline} before the flood");
    // The room and its moderator never noticed.
    let state = m.ok(json!({"type": "get_state"})).await;
    assert_eq!(state["result"]["stage"], stage);
    assert_eq!(state["result"]["counts"]["total"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joined_client_that_stops_reading_loses_its_socket_and_the_room_carries_on() {
    let _serial = SERIAL.lock().await;
    let hub =
        Hub::start(&[("PODIUM_LIMITS__REQUEST_BURST", "100000"), ("PODIUM_LIMITS__REQUESTS_PER_SECOND", "100000")]);
    let mut m = hub.join("mod", "reader", Role::Moderator).await;
    let mut s = hub.join("spk", "reader", Role::Speaker).await;
    s.ok(json!({"type": "raise_hand"})).await;
    m.ok(json!({"type": "approve_hand", "participant": "spk"})).await;
    let stage = m.ok(json!({"type": "get_state"})).await["result"]["stage"].clone();
    let baseline = hub.fds();
    // A listener joins, then floods requests with large replies (snapshots) and never reads another byte.
    let mut raw = Raw::connect_with(hub.addr, None, &[], Some(4096)).await.expect("upgrade");
    raw.send_text(&json!({"type": "join", "id": 1, "token": Hub::token("hog", "reader", Role::Audience)}).to_string())
        .await;
    raw.next_frame(Duration::from_secs(5)).await.expect("welcome");
    let get_state = Raw::frame(TEXT, br#"{"type":"get_state","id":2}"#, true);
    let held = tokio::spawn(flood(raw, get_state, Duration::from_secs(60)));
    // Meanwhile the room works: the moderator mutes and unmutes the speaker, who hears of it.
    for _ in 0..3 {
        m.ok(json!({"type": "mute", "participant": "spk"})).await;
        s.event("you", |e| e["you"]["muted"] == true).await;
        s.ok(json!({"type": "set_muted", "muted": false})).await;
    }
    let held = held.await.expect("flood task").expect("the hub kept a client that does not read");
    eprintln!("the non-reading client was dropped: {held:?}");
    // Once the writer is stuck on a full socket, the write timeout is the bound. Seen from here, the hub stops reading
    // a little earlier (its writer behind, the outbox full) and the kernel's buffers (megabytes) still fill after
    // that, hence the extra slack.
    let bound = Duration::from_millis(WRITE_TIMEOUT_MS) + 2 * SLACK;
    assert!(held.after_stall <= bound, "held {:?} after the hub stopped reading, bound {bound:?}", held.after_stall);
    let after = hub.fds_back_to(baseline).await;
    assert!(after <= baseline, "the hub holds {after} descriptors, {baseline} before");
    let state = m.ok(json!({"type": "get_state"})).await;
    let muted_flip = |v: &serde_json::Value| v.to_string().replace("\"muted\":true", "\"muted\":false");
    assert_eq!(muted_flip(&state["result"]["stage"]), muted_flip(&stage));
    m.ok(json!({"type": "move_to_audience", "participant": "spk"})).await;
    s.event("you", |e| e["you"]["role"] == "audience").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_tokens_are_logged_as_one_summary_not_one_line_each() {
    let _serial = SERIAL.lock().await;
    let hub = Hub::start(&[]);
    let mut m = hub.join("mod", "tokens", Role::Moderator).await;
    let forged = TokenKeys::new(b"not-the-secret")
        .mint(&claims_for("evil", None, "tokens", Role::Moderator, Duration::from_secs(60)))
        .expect("mint");
    let before = hub.log_lines().len();
    let attempts: u64 = 300;
    for i in 0..attempts {
        let mut raw = Raw::connect(hub.addr).await;
        raw.send_text(&json!({"type": "join", "id": i, "token": forged}).to_string()).await;
        assert_eq!(raw.close_code(Duration::from_secs(5)).await, Some(4000));
    }
    // The summary comes within one sweep interval (10 s); the attempts may straddle two intervals, so two summaries.
    let failures_in = |line: &String| -> u64 {
        line.split_whitespace().find_map(|w| w.strip_prefix("failures=")).and_then(|n| n.parse().ok()).unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(25);
    let summaries = loop {
        let lines = hub.log_lines();
        let summaries: Vec<String> = lines[before..].iter().filter(|l| l.contains("tokens refused")).cloned().collect();
        if summaries.iter().map(failures_in).sum::<u64>() >= attempts {
            break summaries;
        }
        assert!(Instant::now() < deadline, "no summary of all refused tokens: {:?}", &lines[before..]);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(summaries.iter().map(failures_in).sum::<u64>(), attempts, "{summaries:?}");
    assert!(summaries.len() <= 2, "{summaries:?}");
    assert!(summaries.iter().all(|s| s.contains("top_source=127.0.0.1")), "{summaries:?}");
    let lines = hub.log_lines();
    let new = &lines[before..];
    assert!(new.len() <= 4, "{} attempts logged {} lines: {new:?}", attempts, new.len());
    m.ok(json!({"type": "ping"})).await;
}
