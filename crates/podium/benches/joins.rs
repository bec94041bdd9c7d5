//! Join benchmark (issue #4): two hubs (`podium serve --store redis://…`, separate processes) on one
//! `redis-server` this program starts, and a steady stream of joins split across both hubs: each join a fresh
//! websocket connection with its own token (an audience member) into one of a few rooms. The joined connections
//! stay open (and are read) until the end.
//!
//! Reports, over the measured joins:
//! - the hubs' own join handling time (`handled_us` of each hub's `joined` log line: from the room task taking the
//!   join until it sends the welcome, the Redis commit included; the wait in the room's inbox is not included);
//! - the join latency seen by the client, from sending `join` on an open websocket until the welcome arrives (the
//!   server's whole handling, token check and inbox wait included, plus loopback; the TCP and websocket handshakes
//!   are not included);
//! - Redis round trips: every top-level command Redis received during the run (counted with `MONITOR`; commands run
//!   inside Lua scripts are not round trips and are not counted), per join, by command, and the idle background
//!   rate (timer leases, head counts) measured before the joins start.
//!
//! Run: `cargo bench -p podium --bench joins` (defaults: 100 joins/s for 30 s into 4 rooms).
//! Environment: `PODIUM_BENCH_RATE` (joins per second), `PODIUM_BENCH_SECS`, `PODIUM_BENCH_ROOMS`. Needs
//! `redis-server` on PATH. The hubs, Redis and the clients share this machine's cores.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpStream;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use podium_hub::Role;
use podium_hub::auth::{TokenKeys, claims_for};
use podium_store::redis_server::RedisServer;

mod common;

use common::{Serve, UNLIMITED_SOURCES, drain, env_or, join, percentile, serve};

const SECRET: &str = "bench-secret";

/// One `podium serve` process; its `handled_us` values are collected from its log.
struct Hub {
    serve: Serve,
    handled_us: Arc<Mutex<Vec<u64>>>,
}

fn start_hub(store: &str) -> Hub {
    let mut envs = vec![
        ("PODIUM_AUTH__SECRET", SECRET),
        ("PODIUM_MEDIA__ENABLED", "false"),
        ("RUST_LOG", "warn,podium_hub::room_task=info"),
        ("NO_COLOR", "1"),
    ];
    envs.extend(UNLIMITED_SOURCES);
    let mut serve = serve(&["serve", "--listen", "127.0.0.1:0", "--store", store], &envs, Stdio::piped());
    let handled_us = Arc::new(Mutex::new(Vec::new()));
    let stderr = serve.child.stderr.take().expect("piped stderr");
    let sink = Arc::clone(&handled_us);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(v) = line.split("handled_us=").nth(1) {
                let digits: String = v.chars().take_while(char::is_ascii_digit).collect();
                if let Ok(us) = digits.parse() {
                    sink.lock().expect("not poisoned").push(us);
                }
            } else if line.contains("WARN") || line.contains("ERROR") {
                eprintln!("hub: {line}");
            }
        }
    });
    Hub { serve, handled_us }
}

type Counts = Arc<Mutex<BTreeMap<String, u64>>>;

/// Counts the top-level commands Redis receives (by name, `EVALSHA`s by script digest) into `counts`.
fn monitor(port: u16, counts: Counts, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect for MONITOR");
        s.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
        s.write_all(b"MONITOR\r\n").expect("MONITOR");
        let mut reader = BufReader::new(s);
        let mut line = String::new();
        while !stop.load(Ordering::Relaxed) {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) => break,
                Ok(_) => {}
                Err(_) => continue,
            }
            // `+1700000000.123456 [0 127.0.0.1:5555] "evalsha" "abc..." ...`; script-run commands say `[0 lua]`.
            if line.contains(" lua] ") || !line.starts_with('+') || line.contains("\"monitor\"") {
                continue;
            }
            let mut args = line.split("] ").nth(1).unwrap_or("").split(' ');
            let name = args.next().unwrap_or("").trim_matches('"').to_ascii_lowercase();
            let key = if name == "evalsha" {
                let digest: String = args.next().unwrap_or("").trim_matches('"').chars().take(8).collect();
                format!("evalsha {digest}")
            } else {
                name
            };
            *counts.lock().expect("not poisoned").entry(key).or_insert(0) += 1;
        }
    })
}

fn summary(name: &str, mut v: Vec<u64>) {
    v.sort_unstable();
    println!(
        "{name}: n={} p50={:.2} ms p90={:.2} ms p99={:.2} ms max={:.2} ms",
        v.len(),
        percentile(&v, 0.5) as f64 / 1000.0,
        percentile(&v, 0.9) as f64 / 1000.0,
        percentile(&v, 0.99) as f64 / 1000.0,
        v.last().copied().unwrap_or(0) as f64 / 1000.0
    );
}

fn main() {
    let rate = env_or("PODIUM_BENCH_RATE", 100).max(1);
    let secs = env_or("PODIUM_BENCH_SECS", 30).max(1);
    let rooms = env_or("PODIUM_BENCH_ROOMS", 4).max(1);
    let redis = RedisServer::start();
    let port: u16 = redis.url().trim_end_matches('/').rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
    let hubs = [start_hub(&redis.url()), start_hub(&redis.url())];
    let keys = TokenKeys::new(SECRET.as_bytes());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let counts: Counts = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let monitor = monitor(port, Arc::clone(&counts), Arc::clone(&stop));
    let take = || std::mem::take(&mut *counts.lock().expect("not poisoned"));

    // A moderator per room on each hub (so both hubs run every room), then an idle window for the background rate.
    let urls: Vec<String> = hubs.iter().map(|h| h.serve.url.clone()).collect();
    let mut keep = Vec::new();
    rt.block_on(async {
        for r in 0..rooms {
            for (n, url) in urls.iter().enumerate() {
                let token = keys
                    .mint(&claims_for(&format!("mod-{r}-{n}"), None, &format!("room-{r}"), Role::Moderator, ttl()))
                    .expect("token");
                let (ws, _) = join(url, &token).await.expect("moderator joins");
                keep.push(tokio::spawn(drain(ws)));
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    take();
    let idle = Duration::from_secs(5);
    std::thread::sleep(idle);
    let idle_counts = take();
    for h in &hubs {
        h.handled_us.lock().expect("not poisoned").clear();
    }

    // The joins: `rate` per second, alternating hubs, round-robin over the rooms.
    let total = rate * secs;
    println!("joins: {total} at {rate}/s over {secs} s, {rooms} rooms, 2 hubs, 1 redis-server");
    let client_us: Arc<Mutex<Vec<u64>>> = Arc::new(Mutex::new(Vec::new()));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let started = Instant::now();
    rt.block_on(async {
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut tasks = Vec::new();
        for i in 0..total {
            tick.tick().await;
            let url = urls[(i % 2) as usize].clone();
            let room = format!("room-{}", (i / 2) % rooms);
            let token =
                keys.mint(&claims_for(&format!("user-{i}"), None, &room, Role::Audience, ttl())).expect("token");
            let (client_us, failures) = (Arc::clone(&client_us), Arc::clone(&failures));
            tasks.push(tokio::spawn(async move {
                match join(&url, &token).await {
                    Ok((ws, us)) => {
                        client_us.lock().expect("not poisoned").push(us);
                        drain(ws).await;
                    }
                    Err(e) => failures.lock().expect("not poisoned").push(e),
                }
            }));
        }
        // Let the last joins finish.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let elapsed = started.elapsed();
        println!("offered {total} joins in {:.1} s", elapsed.as_secs_f64());
        for t in tasks.iter().chain(&keep) {
            t.abort();
        }
    });
    let run_secs = started.elapsed().as_secs_f64();
    let run_counts = take();
    stop.store(true, Ordering::Relaxed);
    monitor.join().expect("monitor thread");

    let failures = failures.lock().expect("not poisoned").clone();
    let client = client_us.lock().expect("not poisoned").clone();
    let joined = client.len() as u64;
    println!("joined: {joined}, failed: {}", failures.len());
    for f in failures.iter().take(5) {
        println!("  failure: {f}");
    }
    let mut handled: Vec<u64> = Vec::new();
    for h in &hubs {
        handled.extend(h.handled_us.lock().expect("not poisoned").iter());
    }
    summary("hub join handling (room task, commit included)", handled);
    summary("client join latency (join sent -> welcome)", client);

    let idle_total: u64 = idle_counts.values().sum();
    let idle_rate = idle_total as f64 / idle.as_secs_f64();
    let run_total: u64 = run_counts.values().sum();
    println!(
        "redis top-level commands while idle: {idle_total} in {:.0} s ({idle_rate:.1}/s): {idle_counts:?}",
        idle.as_secs_f64()
    );
    println!("redis top-level commands during the joins: {run_total} in {run_secs:.1} s: {run_counts:?}");
    let background = idle_rate * run_secs;
    println!(
        "round trips per join: {:.2} all included, {:.2} without the idle background ({background:.0} commands)",
        run_total as f64 / joined.max(1) as f64,
        (run_total as f64 - background).max(0.0) / joined.max(1) as f64
    );
    drop(hubs);
    drop(redis);
}

fn ttl() -> Duration {
    Duration::from_secs(3600)
}
