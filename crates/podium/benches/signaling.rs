//! Signaling benchmark: N idle listener connections on one hub (a separate `podium serve` process), then stage
//! changes fanned out to all of them.
//!
//! Reports the hub's memory per idle listener connection (VmRSS growth / N) and, for each stage change, the time
//! from the moderator's request until each listener has read the `stage` event (p50/p99/max over all deliveries,
//! and the time until the last listener has it).
//!
//! Run: `cargo bench -p podium --bench signaling` (defaults: 10,000 listeners, 20 stage changes).
//! Environment: `PODIUM_BENCH_LISTENERS`, `PODIUM_BENCH_CHANGES`. The hub and the clients share this machine's
//! cores, so the latency includes the clients' own work; memory is the hub process's alone.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use podium_hub::Role;
use podium_hub::auth::{TokenKeys, claims_for};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

mod common;

use common::{Serve, env_or, percentile, serve};

const SECRET: &str = "bench-secret";
const ROOM: &str = "bench";

fn start_server() -> Serve {
    let envs = [("PODIUM_AUTH__SECRET", SECRET), ("PODIUM_SERVER__MAX_CONNECTIONS", "50000"), ("RUST_LOG", "warn")];
    serve(&["serve", "--listen", "127.0.0.1:0"], &envs, Stdio::inherit())
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
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let server = start_server();
    let pid = server.child.id();
    let keys = TokenKeys::new(SECRET.as_bytes());
    runtime.block_on(run(&server.url, pid, &keys, n, changes));
}

async fn connect(
    url: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true).await.expect("connect");
    ws
}

async fn join(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    token: &str,
) {
    let req = format!(r#"{{"type":"join","id":1,"token":"{token}"}}"#);
    ws.send(Message::Text(req.into())).await.expect("send join");
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.starts_with(r#"{"type":"ok""#) => return,
            Some(Ok(Message::Text(t))) if t.starts_with(r#"{"type":"error""#) => panic!("join failed: {t}"),
            Some(Ok(_)) => {}
            other => panic!("connection ended during join: {other:?}"),
        }
    }
}

async fn run(url: &str, pid: u32, keys: &TokenKeys, n: usize, changes: usize) {
    let token =
        |id: &str, role: Role| keys.mint(&claims_for(id, None, ROOM, role, Duration::from_secs(3600))).expect("mint");

    // The moderator first, so the room exists and its fixed costs are not counted per listener.
    let mut moderator = connect(url).await;
    join(&mut moderator, &token("moderator", Role::Moderator)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_before = rss_kib(pid);

    // Listeners: each task records when it read the stage event with a given sequence number.
    let base = Instant::now();
    let received: Arc<Vec<Vec<AtomicU64>>> =
        Arc::new((0..changes).map(|_| (0..n).map(|_| AtomicU64::new(0)).collect()).collect());
    let first_seq = Arc::new(AtomicU64::new(u64::MAX));
    let joined = Arc::new(AtomicUsize::new(0));
    let join_started = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    let semaphore = Arc::new(tokio::sync::Semaphore::new(256));
    for i in 0..n {
        let url = url.to_owned();
        let token = token(&format!("listener-{i}"), Role::Speaker);
        let received = Arc::clone(&received);
        let first_seq = Arc::clone(&first_seq);
        let joined = Arc::clone(&joined);
        let permit = Arc::clone(&semaphore).acquire_owned().await.expect("semaphore");
        tasks.push(tokio::spawn(async move {
            let mut ws = connect(&url).await;
            join(&mut ws, &token).await;
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
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let join_secs = join_started.elapsed().as_secs_f64();
    // Let coalesced counts settle and allocator caches fill, then measure.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = rss_kib(pid);
    let per_conn = (rss_after.saturating_sub(rss_before)) as f64 * 1024.0 / n as f64;

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
    let mut all = Vec::new();
    let mut to_last = Vec::new();
    let mut missing = 0usize;
    for k in 1..changes {
        let mut last = 0;
        for r in &received[k] {
            let at = r.load(Ordering::Acquire);
            if at == 0 {
                missing += 1;
                continue;
            }
            let d = at.saturating_sub(sent_at[k]);
            all.push(d);
            last = last.max(d);
        }
        to_last.push(last);
    }
    all.sort_unstable();
    to_last.sort_unstable();
    let ms = |ns: u64| ns as f64 / 1e6;
    println!("## signaling benchmark");
    println!("listeners: {n}, stage changes measured: {}", changes.saturating_sub(1));
    println!("joins: {n} in {join_secs:.1} s ({:.0} joins/s, 256 in flight)", n as f64 / join_secs);
    println!(
        "hub RSS: {rss_before} KiB before, {rss_after} KiB after → {per_conn:.0} bytes ({:.1} KiB) per idle listener",
        per_conn / 1024.0
    );
    println!(
        "stage event delivery (request sent → listener read), all deliveries: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(percentile(&all, 0.5)),
        ms(percentile(&all, 0.99)),
        ms(percentile(&all, 1.0))
    );
    println!(
        "time until the last listener had it, per change: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(percentile(&to_last, 0.5)),
        ms(percentile(&to_last, 0.99)),
        ms(percentile(&to_last, 1.0))
    );
    println!("missing deliveries: {missing}");
    for t in tasks {
        t.abort();
    }
}
