//! Rooms at platform scale (issue #11): many persistent rooms, few of them active, on two hubs sharing one Redis.
//!
//! Method: starts `redis-server` and two `podium serve --store redis://…` processes (separate processes, in-memory
//! nothing), creates `PODIUM_BENCH_ROOMS` persistent rooms (default 10,000) through hub A's admin API (64 requests
//! in flight), then makes `PODIUM_BENCH_ACTIVE` of them (default 1 %) active: one listener each, connected to hub A
//! or hub B in turn, kept open and read. After 5 s of settling it counts the commands Redis processed over
//! `PODIUM_BENCH_SECS` (default 20 s; Redis's `MONITOR` stream: top-level commands (each command of a pipeline
//! counts, so this is more than the round trips: a hub's lease renewals are one pipeline per 0.5 s), and separately
//! all commands including those Lua scripts run) and divides by the number of rooms: the idle Redis cost per room. Memory is each hub's `VmRSS` before the rooms were
//! created and after, divided by the number of rooms, and Redis's `used_memory` the same way. Last, it joins
//! `PODIUM_BENCH_WAKES` (default 200) idle rooms, one listener each, 8 at a time, alternating hubs, and reports the
//! join latency (websocket open to welcome: the room wakes on demand, loading from Redis) p50 / p99 / max.
//!
//! Run: `cargo bench -p podium --bench rooms`. Needs `redis-server` on PATH. Hubs, Redis and clients share the
//! machine's cores, so latencies include the clients' own scheduling.

use std::io::{Read as _, Write as _};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use podium_hub::Role;
use podium_hub::auth::{TokenKeys, claims_for};
use podium_store::redis_server::RedisServer;
use tokio_tungstenite::tungstenite::Message;

mod common;

use common::{UNLIMITED_SOURCES, env_or, percentile, serve};

const SECRET: &str = "bench-secret";
const KEY: &str = "pdm_bench_admin_key_0123456789";

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("VmRSS:")).map(str::to_owned))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// One `INFO` field from Redis (inline command over a plain socket).
fn redis_info(port: u16, section: &str, field: &str) -> u64 {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("redis");
    s.write_all(format!("INFO {section}\r\n").as_bytes()).expect("write");
    s.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    let mut buf = vec![0u8; 64 * 1024];
    let mut text = String::new();
    while !text.contains(&format!("{field}:")) || !text.ends_with("\r\n") {
        let n = s.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in INFO {section}"))
}

async fn join(
    url: &str,
    token: &str,
) -> (Duration, tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>) {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("connect");
    let started = Instant::now();
    let join = serde_json::json!({"type": "join", "id": 1, "token": token}).to_string();
    ws.send(Message::text(join)).await.expect("send");
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.contains("\"type\":\"ok\"") => return (started.elapsed(), ws),
            Some(Ok(Message::Text(t))) if t.contains("\"type\":\"error\"") => panic!("join refused: {t}"),
            Some(Ok(_)) => {}
            other => panic!("connection ended during join: {other:?}"),
        }
    }
}

/// Top-level commands Redis receives in `window` (its `MONITOR` stream, without the commands Lua scripts run), and
/// all commands including those.
fn redis_monitor(port: u16, window: Duration) -> (u64, u64) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("redis");
    s.write_all(b"MONITOR\r\n").expect("write");
    s.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    let deadline = Instant::now() + window;
    let (mut top, mut all) = (0u64, 0u64);
    let mut pending = String::new();
    let mut buf = vec![0u8; 64 * 1024];
    while Instant::now() < deadline {
        let n = match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(_) => continue,
        };
        pending.push_str(&String::from_utf8_lossy(&buf[..n]));
        while let Some(end) = pending.find("\r\n") {
            let line: String = pending.drain(..end + 2).collect();
            if line.starts_with('+') && line.contains('[') {
                all += 1;
                if !line.contains(" lua]") {
                    top += 1;
                }
            }
        }
    }
    (top, all)
}

fn main() {
    let rooms: usize = env_or("PODIUM_BENCH_ROOMS", 10_000);
    let active: usize = env_or("PODIUM_BENCH_ACTIVE", rooms / 100);
    let secs: u64 = env_or("PODIUM_BENCH_SECS", 20);
    let wakes: usize = env_or("PODIUM_BENCH_WAKES", 200).min(rooms - active);
    let redis = RedisServer::start();
    let store = redis.url();
    let keys_env = format!("[{{name=\"bench\",sha256=\"{}\",scope=\"admin\"}}]", podium_hub::admin_key_hash(KEY));
    let mut envs = vec![
        ("PODIUM_AUTH__SECRET", SECRET),
        ("PODIUM_MEDIA__ENABLED", "false"),
        ("PODIUM_ADMIN__KEYS", keys_env.as_str()),
        // The bench creates its rooms as fast as the hub takes them: no per-caller request rate.
        ("PODIUM_ADMIN__REQUESTS_PER_SECOND", "0"),
        ("RUST_LOG", "warn"),
    ];
    envs.extend(UNLIMITED_SOURCES);
    let hubs = [
        serve(&["serve", "--listen", "127.0.0.1:0", "--store", &store], &envs, Stdio::null()),
        serve(&["serve", "--listen", "127.0.0.1:0", "--store", &store], &envs, Stdio::null()),
    ];
    let ws_urls: Vec<String> = hubs.iter().map(|h| h.url.clone()).collect();
    let http_a = ws_urls[0].replace("ws://", "http://").replace("/v1/ws", "");
    let pids: Vec<u32> = hubs.iter().map(|h| h.child.id()).collect();
    let keys = TokenKeys::new(SECRET.as_bytes());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss_before: Vec<u64> = pids.iter().map(|p| rss_kib(*p)).collect();
        let redis_before = redis_info(redis.port(), "memory", "used_memory");

        // Create the rooms.
        let http = reqwest::Client::new();
        let created = Instant::now();
        let names: Arc<Vec<String>> = Arc::new((0..rooms).map(|i| format!("room-{i:05}")).collect());
        let mut tasks = Vec::new();
        for lane in 0..64 {
            let (http, names, base) = (http.clone(), Arc::clone(&names), http_a.clone());
            tasks.push(tokio::spawn(async move {
                for name in names.iter().skip(lane).step_by(64) {
                    let r = http
                        .post(format!("{base}/v1/admin/rooms"))
                        .bearer_auth(KEY)
                        .json(&serde_json::json!({"name": name}))
                        .send()
                        .await
                        .expect("create");
                    assert_eq!(r.status().as_u16(), 201, "{}", r.text().await.unwrap_or_default());
                }
            }));
        }
        for t in tasks {
            t.await.expect("creator");
        }
        let create_secs = created.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss_idle: Vec<u64> = pids.iter().map(|p| rss_kib(*p)).collect();
        let redis_after = redis_info(redis.port(), "memory", "used_memory");

        // Make some active: one listener each, alternating hubs, kept open and read.
        let mut listeners = Vec::new();
        for (i, name) in names.iter().take(active).enumerate() {
            let token = keys
                .mint(&claims_for(&format!("l{i}"), None, name, Role::Audience, Duration::from_secs(3600)))
                .expect("mint");
            let (_, ws) = join(&ws_urls[i % 2], &token).await;
            let (_sink, mut stream) = ws.split();
            listeners.push(tokio::spawn(async move {
                let _sink = _sink;
                while let Some(Ok(_)) = stream.next().await {}
            }));
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        let port = redis.port();
        let (commands, all_commands) =
            tokio::task::spawn_blocking(move || redis_monitor(port, Duration::from_secs(secs))).await.expect("monitor");
        let per_sec = commands as f64 / secs as f64;
        let all_per_sec = all_commands as f64 / secs as f64;

        // Wake idle rooms with joins.
        let mut latencies = Vec::new();
        let wake_names: Vec<String> = names.iter().skip(active).take(wakes).cloned().collect();
        for chunk in wake_names.chunks(8) {
            let mut batch = Vec::new();
            for (j, name) in chunk.iter().enumerate() {
                let token = keys
                    .mint(&claims_for(&format!("w{j}"), None, name, Role::Audience, Duration::from_secs(3600)))
                    .expect("mint");
                let url = ws_urls[j % 2].clone();
                batch.push(tokio::spawn(async move { join(&url, &token).await.0 }));
            }
            for b in batch {
                latencies.push(b.await.expect("join").as_micros() as u64);
            }
        }
        latencies.sort_unstable();

        println!("## rooms benchmark");
        println!(
            "rooms: {rooms} persistent ({:.0} created/s through one hub's admin API), {active} active (one listener each, over 2 hubs)",
            rooms as f64 / create_secs
        );
        println!(
            "redis top-level commands: {commands} in {secs} s = {per_sec:.1}/s → {:.4} per room per second \
             ({:.2} per active room)",
            per_sec / rooms as f64,
            per_sec / active.max(1) as f64
        );
        println!(
            "redis commands including those run inside scripts: {all_per_sec:.1}/s → {:.4} per room per second",
            all_per_sec / rooms as f64
        );
        for (i, (b, a)) in rss_before.iter().zip(&rss_idle).enumerate() {
            println!(
                "hub {}: RSS {b} → {a} KiB after creating the rooms: {:.0} bytes per idle room",
                ["A", "B"][i],
                (a.saturating_sub(*b) * 1024) as f64 / rooms as f64
            );
        }
        println!(
            "redis used_memory: {redis_before} → {redis_after} bytes: {:.0} bytes per room",
            redis_after.saturating_sub(redis_before) as f64 / rooms as f64
        );
        println!(
            "join into an idle room (wakes on demand), {} joins, 8 at a time: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            latencies.len(),
            percentile(&latencies, 0.50) as f64 / 1000.0,
            percentile(&latencies, 0.99) as f64 / 1000.0,
            latencies.last().copied().unwrap_or(0) as f64 / 1000.0
        );
        for l in listeners {
            l.abort();
        }
    });
    drop(hubs);
}
