//! Signaling benchmark: N idle listener connections on one hub (a separate `podium serve` process), then stage
//! changes fanned out to all of them.
//!
//! Reports the hub's memory per idle listener connection (VmRSS growth / N) and, for each stage change, the time
//! from the moderator's request until each listener has read the `stage` event (p50/p99/max over all deliveries,
//! and the time until the last listener has it).
//!
//! With `PODIUM_BENCH_HUBS=2` (or more), it starts its own `redis-server` and that many `podium serve --store
//! redis://…` processes (media off) instead: the moderator joins hub A and listener `i` joins hub `i mod hubs`, so
//! the listeners on the other hubs get each stage event through the cross-hub announcement (Redis pub/sub). Memory is
//! then reported per hub process, and the latencies also per group of listeners (by hub).
//!
//! Run: `cargo bench -p podium --bench signaling` (defaults: 10,000 listeners, 20 stage changes, 1 hub).
//! Environment: `PODIUM_BENCH_LISTENERS`, `PODIUM_BENCH_CHANGES`, `PODIUM_BENCH_HUBS` (the two-hub mode needs
//! `redis-server` on PATH). The hubs, Redis and the clients share this machine's cores, so the latency includes the
//! clients' own work; memory is each hub process's alone.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use podium_hub::Role;
use podium_hub::auth::{TokenKeys, claims_for};
use podium_store::redis_server::RedisServer;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

mod common;

use common::{Serve, UNLIMITED_SOURCES, env_or, percentile, serve};

const SECRET: &str = "bench-secret";
const ROOM: &str = "bench";

/// Starts a hub: in-memory store by default, or on the Redis at `store` with media off.
fn start_server(store: Option<&str>) -> Serve {
    let mut envs =
        vec![("PODIUM_AUTH__SECRET", SECRET), ("PODIUM_SERVER__MAX_CONNECTIONS", "50000"), ("RUST_LOG", "warn")];
    envs.extend(UNLIMITED_SOURCES);
    let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
    if let Some(store) = store {
        args.extend(["--store", store]);
        envs.push(("PODIUM_MEDIA__ENABLED", "false"));
    }
    serve(&args, &envs, Stdio::inherit())
}

/// Hub `h`'s name in the report: A, B, …
fn hub_name(h: usize) -> char {
    char::from(b'A' + h as u8)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Extracts `"seq":N` from a stage event without a full parse (clients must stay cheap).
fn stage_seq(text: &str) -> Option<u64> {
    if !text.starts_with(r#"{"type":"stage""#) {
        return None;
    }
    let rest = &text[text.find(r#""seq":"#)? + 6..];
    let end = rest.find(|c: char| !c.is_ascii_digit())?;
    rest[..end].parse().ok()
}

fn main() {
    let n = env_or("PODIUM_BENCH_LISTENERS", 10_000);
    let changes = env_or("PODIUM_BENCH_CHANGES", 20);
    let hubs = env_or("PODIUM_BENCH_HUBS", 1_usize).clamp(1, 26);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    // One hub: in-memory store. More: all on one redis-server of our own.
    let redis = (hubs > 1).then(RedisServer::start);
    let servers: Vec<Serve> = match &redis {
        None => vec![start_server(None)],
        Some(redis) => (0..hubs).map(|_| start_server(Some(&redis.url()))).collect(),
    };
    let keys = TokenKeys::new(SECRET.as_bytes());
    runtime.block_on(run(&servers, &keys, n, changes));
    drop(servers);
    drop(redis);
}

/// Delivery times of the measured stage changes to one group of listeners, in ns after the request was sent.
struct Deliveries {
    /// Every delivery, sorted.
    all: Vec<u64>,
    /// Per change, the time until the group's last listener had it; sorted.
    to_last: Vec<u64>,
    missing: usize,
}

impl Deliveries {
    /// Collects the listeners `i` for which `member(i)`; the first change (a warm-up) is left out.
    fn collect(received: &[Vec<AtomicU64>], sent_at: &[u64], member: impl Fn(usize) -> bool) -> Self {
        let mut d = Self { all: Vec::new(), to_last: Vec::new(), missing: 0 };
        for (k, times) in received.iter().enumerate().skip(1) {
            let mut last = 0;
            for (_, r) in times.iter().enumerate().filter(|&(i, _)| member(i)) {
                let at = r.load(Ordering::Acquire);
                if at == 0 {
                    d.missing += 1;
                    continue;
                }
                let dt = at.saturating_sub(sent_at[k]);
                d.all.push(dt);
                last = last.max(dt);
            }
            d.to_last.push(last);
        }
        d.all.sort_unstable();
        d.to_last.sort_unstable();
        d
    }

    /// p50, p99 and max of `v`, in ms.
    fn summary(v: &[u64]) -> String {
        let ms = |p| percentile(v, p) as f64 / 1e6;
        format!("p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms", ms(0.5), ms(0.99), ms(1.0))
    }
}

async fn connect(
    url: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true).await.expect("connect");
    ws
}

/// Joins; returns how many times the join was refused as `unavailable` and sent again (with several hubs, a join can
/// lose a race with another hub's commit in the same room; a client then retries).
async fn join(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    token: &str,
) -> usize {
    let req = format!(r#"{{"type":"join","id":1,"token":"{token}"}}"#);
    for retries in 0..50 {
        ws.send(Message::Text(req.clone().into())).await.expect("send join");
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) if t.starts_with(r#"{"type":"ok""#) => return retries,
                Some(Ok(Message::Text(t))) if t.starts_with(r#"{"type":"error""#) => {
                    assert!(t.contains(r#""code":"unavailable""#), "join failed: {t}");
                    break;
                }
                Some(Ok(_)) => {}
                other => panic!("connection ended during join: {other:?}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("join refused as unavailable 50 times");
}

async fn run(servers: &[Serve], keys: &TokenKeys, n: usize, changes: usize) {
    let token =
        |id: &str, role: Role| keys.mint(&claims_for(id, None, ROOM, role, Duration::from_secs(3600))).expect("mint");
    let hubs = servers.len();
    let rss = || servers.iter().map(|s| rss_kib(s.child.id())).collect::<Vec<_>>();

    // The moderator first (on hub A), so the room exists and its fixed costs are not counted per listener.
    let mut moderator = connect(&servers[0].url).await;
    join(&mut moderator, &token("moderator", Role::Moderator)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_before = rss();

    // Listeners: each task records when it read the stage event with a given sequence number.
    let base = Instant::now();
    let received: Arc<Vec<Vec<AtomicU64>>> =
        Arc::new((0..changes).map(|_| (0..n).map(|_| AtomicU64::new(0)).collect()).collect());
    let first_seq = Arc::new(AtomicU64::new(u64::MAX));
    let joined = Arc::new(AtomicUsize::new(0));
    let join_retries = Arc::new(AtomicUsize::new(0));
    let join_started = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    let semaphore = Arc::new(tokio::sync::Semaphore::new(256));
    for i in 0..n {
        let url = servers[i % hubs].url.clone();
        let token = token(&format!("listener-{i}"), Role::Speaker);
        let received = Arc::clone(&received);
        let first_seq = Arc::clone(&first_seq);
        let joined = Arc::clone(&joined);
        let join_retries = Arc::clone(&join_retries);
        let permit = Arc::clone(&semaphore).acquire_owned().await.expect("semaphore");
        tasks.push(tokio::spawn(async move {
            let mut ws = connect(&url).await;
            let retries = join(&mut ws, &token).await;
            join_retries.fetch_add(retries, Ordering::Relaxed);
            drop(permit);
            joined.fetch_add(1, Ordering::Relaxed);
            while let Some(Ok(msg)) = ws.next().await {
                if let Message::Text(t) = msg
                    && let Some(seq) = stage_seq(&t)
                {
                    let first = first_seq.load(Ordering::Acquire);
                    if first != u64::MAX && seq >= first {
                        let k = (seq - first) as usize;
                        if k < received.len() {
                            received[k][i].store(base.elapsed().as_nanos() as u64, Ordering::Release);
                        }
                    }
                }
            }
        }));
    }
    while joined.load(Ordering::Relaxed) < n {
        let done = joined.load(Ordering::Relaxed);
        assert!(join_started.elapsed() < Duration::from_secs(120), "only {done} of {n} listeners joined in 120 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let join_secs = join_started.elapsed().as_secs_f64();
    // Let coalesced counts settle and allocator caches fill, then measure.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = rss();

    // Drain what the moderator was sent while the listeners joined (its own join's stage event among it): the reply
    // to a ping comes after everything queued before it.
    moderator.send(Message::Text(r#"{"type":"ping","id":99}"#.into())).await.expect("send ping");
    loop {
        match moderator.next().await {
            Some(Ok(Message::Text(t))) if t.starts_with(r#"{"type":"ok","id":99"#) => break,
            Some(Ok(_)) => {}
            other => panic!("moderator connection ended: {other:?}"),
        }
    }

    // Stage changes: the moderator toggles their own mute; each toggle is one `stage` event to everyone.
    let mut sent_at = Vec::with_capacity(changes);
    let mut seqs = Vec::with_capacity(changes);
    for k in 0..changes {
        let muted = k % 2 == 1;
        let req = format!(r#"{{"type":"set_muted","id":{},"muted":{muted}}}"#, 100 + k);
        let t0 = base.elapsed().as_nanos() as u64;
        moderator.send(Message::Text(req.into())).await.expect("send");
        // Read until our own stage event (it carries the seq the listeners will see).
        let seq = loop {
            match moderator.next().await {
                Some(Ok(Message::Text(t))) => {
                    if let Some(seq) = stage_seq(&t) {
                        break seq;
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("moderator connection ended: {other:?}"),
            }
        };
        if k == 0 {
            first_seq.store(seq, Ordering::Release);
        }
        seqs.push(seq);
        sent_at.push(t0);
        // Wait until everyone has it (bounded), then pause so changes do not overlap.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && received[k].iter().any(|r| r.load(Ordering::Acquire) == 0) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The first change raced with publishing `first_seq`; it is a warm-up and is left out.
    let everyone = Deliveries::collect(&received, &sent_at, |_| true);
    println!("## signaling benchmark");
    println!("listeners: {n}, stage changes measured: {}", changes.saturating_sub(1));
    if hubs > 1 {
        println!(
            "hubs: {hubs} `podium serve --store redis://…` (media off) on one redis-server; moderator on hub A, \
             listener i on hub i mod {hubs}"
        );
    }
    println!("joins: {n} in {join_secs:.1} s ({:.0} joins/s, 256 in flight)", n as f64 / join_secs);
    if hubs > 1 {
        let retries = join_retries.load(Ordering::Relaxed);
        println!("joins refused as unavailable (lost a race with the other hub's commit) and sent again: {retries}");
    }
    for h in 0..hubs {
        let listeners = (h..n).step_by(hubs).count();
        let per_conn = rss_after[h].saturating_sub(rss_before[h]) as f64 * 1024.0 / listeners.max(1) as f64;
        let label = if hubs == 1 { "hub".to_owned() } else { format!("hub {} ({listeners} listeners)", hub_name(h)) };
        println!(
            "{label} RSS: {} KiB before, {} KiB after → {per_conn:.0} bytes ({:.1} KiB) per idle listener",
            rss_before[h],
            rss_after[h],
            per_conn / 1024.0
        );
    }
    println!(
        "stage event delivery (request sent → listener read), all deliveries: {}",
        Deliveries::summary(&everyone.all)
    );
    println!("time until the last listener had it, per change: {}", Deliveries::summary(&everyone.to_last));
    println!("missing deliveries: {}", everyone.missing);
    if hubs > 1 {
        for h in 0..hubs {
            let group = Deliveries::collect(&received, &sent_at, |i| i % hubs == h);
            println!(
                "listeners on hub {}: delivery {}; until the last of them {}; missing {}",
                hub_name(h),
                Deliveries::summary(&group.all),
                Deliveries::summary(&group.to_last),
                group.missing
            );
        }
    }
    for t in tasks {
        t.abort();
    }
}
