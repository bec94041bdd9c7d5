//! Webhook throughput (issue #11): a steady stream of joins into ONE room, every one a webhook event.
//!
//! Method: starts `redis-server` and one `podium serve --store redis://…` (media off) with one webhook endpoint
//! pointing at a receiver in this program (a minimal HTTP/1.1 server on 127.0.0.1:0, on its own thread and
//! runtime, answering 204 at once and recording each request's arrival time, `webhook-id` and body). A moderator
//! opens the room, then `PODIUM_BENCH_RATE` joins/s (default 1,000) for `PODIUM_BENCH_SECS` (default 10 s), spread
//! over 8 client tasks: each join a fresh websocket with its own audience token, kept open and read. After the last
//! join it waits until every joined participant's `participant.joined` arrived (or nothing arrived for
//! `PODIUM_BENCH_DRAIN_SECS`, default 15 s).
//!
//! Passes: `PODIUM_BENCH_AUDIENCE` (default `on,coalesced`), each with a fresh Redis and hub; `coalesced` uses
//! `webhooks.audience_interval_ms = 1000` (the default is 10 s, longer than the run) and checks that the
//! summaries' `joined` counts add up instead.
//!
//! `PODIUM_BENCH_FSYNC` (e.g. `everysec`) sets Redis's `appendfsync` (the test helper's is `always`).
//!
//! Reports: joins achieved/s; events delivered/s while joining and until drained; delivery lag from the event's own
//! `timestamp` and from the join being sent to the request's arrival, p50/p99/max; the time from the last join to
//! the last event; missing `participant.joined`; duplicates (same `webhook-id` twice: delivery is at-least-once);
//! per-room order (`(seq, index)` must increase in arrival order, duplicates aside); the delivery cycle (time
//! between consecutive requests, and the hub's part of it: from the receiver's 204 to the next request's first
//! byte); and the CPU the hub and Redis used (`/proc/<pid>/stat`, utime+stime, 100 ticks/s assumed).
//!
//! Run: `cargo bench -p podium --bench webhooks`. Needs `redis-server` on PATH. The hub, Redis, the clients and the
//! receiver share this machine's cores.

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use podium_hub::Role;
use podium_hub::auth::{TokenKeys, claims_for};
use podium_store::redis_server::RedisServer;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

mod common;

use common::{UNLIMITED_SOURCES, drain, env_or, join, percentile, serve};

const SECRET: &str = "bench-secret";
const HOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ROOM: &str = "stage";
const CLIENT_TASKS: u64 = 8;

/// One request the receiver got.
struct Arrival {
    /// Wall clock, µs since the Unix epoch.
    at_us: u64,
    id: String,
    body: Vec<u8>,
}

#[derive(Default)]
struct Received {
    arrivals: Vec<Arrival>,
    /// µs from the receiver's previous 204 to the first byte of the next request (the hub's part of a cycle).
    gaps_us: Vec<u64>,
    last_answer: Option<Instant>,
}

type Shared = Arc<Mutex<Received>>;

fn wall_us() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_micros()).unwrap_or(u64::MAX)
}

/// Starts the receiver on its own thread; returns its port.
fn receiver(shared: Shared) -> u16 {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind receiver");
    std_listener.set_nonblocking(true).expect("nonblocking");
    let port = std_listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("receiver runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
            loop {
                let Ok((conn, _)) = listener.accept().await else { continue };
                tokio::spawn(serve_conn(conn, Arc::clone(&shared)));
            }
        });
    });
    port
}

/// HTTP/1.1 keep-alive: reads requests (headers, `content-length` body), answers each 204 at once.
async fn serve_conn(mut conn: tokio::net::TcpStream, shared: Shared) {
    let _ = conn.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 16384];
    loop {
        // Headers.
        let head_end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            let was_empty = buf.is_empty();
            let n = match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if was_empty {
                let mut s = shared.lock().expect("not poisoned");
                if let Some(t) = s.last_answer.take() {
                    s.gaps_us.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
                }
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let header = |name: &str| {
            head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
        };
        let len: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        let id = header("webhook-id").unwrap_or_default();
        while buf.len() < head_end + len {
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let at_us = wall_us();
        let body = buf[head_end..head_end + len].to_vec();
        buf.drain(..head_end + len);
        if conn.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await.is_err() {
            return;
        }
        let mut s = shared.lock().expect("not poisoned");
        s.arrivals.push(Arrival { at_us, id, body });
        s.last_answer = Some(Instant::now());
    }
}

/// `2026-12-05T17:00:00.123Z` → ms since the Unix epoch.
fn iso_ms(s: &str) -> Option<u64> {
    let (date, time) = s.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<i64>());
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let ms: i64 = format!("{frac:0<3}")[..3].parse().ok()?;
    // Days from civil (Howard Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(((days * 24 + hh) * 60 + mm) * 60_000 + ss * 1000 + ms).ok()
}

/// utime + stime of a process, in ticks (100/s).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = after.split_whitespace().map(|v| v.parse().unwrap_or(0)).collect();
    // After the command: state is field 3, utime 14 and stime 15 (1-based over the whole line).
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn lags(name: &str, mut v: Vec<u64>) {
    v.sort_unstable();
    println!(
        "{name}: n={} p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        v.len(),
        ms(percentile(&v, 0.5)),
        ms(percentile(&v, 0.99)),
        ms(v.last().copied().unwrap_or(0))
    );
}

fn pass(audience: &str, rate: u64, secs: u64, drain_secs: u64) {
    let shared: Shared = Arc::default();
    let port = receiver(Arc::clone(&shared));
    let redis = RedisServer::start();
    if let Ok(fsync) = std::env::var("PODIUM_BENCH_FSYNC") {
        println!("redis appendfsync {fsync}: {}", redis.command(&["CONFIG", "SET", "appendfsync", &fsync]).trim());
    }
    let store = redis.url();
    let endpoints = format!(
        "[{{name = \"bench\", url = \"http://127.0.0.1:{port}/hooks\", secrets = [\"{HOOK_SECRET}\"], timeout_ms = 15000}}]"
    );
    let mut envs = vec![
        ("PODIUM_AUTH__SECRET", SECRET),
        ("PODIUM_MEDIA__ENABLED", "false"),
        ("PODIUM_WEBHOOKS__ENDPOINTS", endpoints.as_str()),
        ("PODIUM_WEBHOOKS__AUDIENCE", audience),
        ("PODIUM_WEBHOOKS__AUDIENCE_INTERVAL_MS", "1000"),
        ("RUST_LOG", "warn"),
    ];
    envs.extend(UNLIMITED_SOURCES);
    let hub = serve(&["serve", "--listen", "127.0.0.1:0", "--store", &store], &envs, Stdio::inherit());
    let (hub_pid, redis_pid) = (hub.child.id(), redis.pid().unwrap_or(0));
    let url = hub.url.clone();
    let keys = Arc::new(TokenKeys::new(SECRET.as_bytes()));
    let ttl = Duration::from_secs(3600);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let total = rate * secs;
    println!(
        "\n## webhooks benchmark, audience = \"{audience}\": {total} joins at {rate}/s over {secs} s into one room"
    );

    // The room's host, then the joins.
    let sent_us: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let (cpu0, rcpu0) = (cpu_ticks(hub_pid), cpu_ticks(redis_pid));
    let (started, started_us, joins_done_us, joins_secs) = rt.block_on(async {
        let token = keys.mint(&claims_for("host", None, ROOM, Role::Moderator, ttl)).expect("token");
        let host = tokio::spawn(drain(join(&url, &token).await.expect("host joins").0));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let started = Instant::now();
        let started_us = wall_us();
        let mut drivers = Vec::new();
        for lane in 0..CLIENT_TASKS {
            let (url, keys, sent_us, failures) =
                (url.clone(), Arc::clone(&keys), Arc::clone(&sent_us), Arc::clone(&failures));
            drivers.push(tokio::spawn(async move {
                let period = Duration::from_secs_f64(CLIENT_TASKS as f64 / rate as f64);
                let mut tick = tokio::time::interval_at(
                    tokio::time::Instant::now() + period.mul_f64(lane as f64 / CLIENT_TASKS as f64),
                    period,
                );
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                let mut joins = Vec::new();
                for i in (lane..total).step_by(CLIENT_TASKS as usize) {
                    tick.tick().await;
                    let who = format!("user-{i}");
                    let token = keys.mint(&claims_for(&who, None, ROOM, Role::Audience, ttl)).expect("token");
                    let (url, sent_us, failures) = (url.clone(), Arc::clone(&sent_us), Arc::clone(&failures));
                    joins.push(tokio::spawn(async move {
                        sent_us.lock().expect("not poisoned").insert(who.clone(), wall_us());
                        match join(&url, &token).await {
                            Ok((ws, _)) => Ok(ws),
                            Err(e) => {
                                sent_us.lock().expect("not poisoned").remove(&who);
                                failures.lock().expect("not poisoned").push(e);
                                Err(())
                            }
                        }
                    }));
                }
                let mut open = Vec::new();
                for j in joins {
                    if let Ok(Ok(ws)) = j.await {
                        open.push(tokio::spawn(drain(ws)));
                    }
                }
                open
            }));
        }
        let mut open = vec![host];
        for d in drivers {
            open.extend(d.await.expect("driver"));
        }
        let joins_secs = started.elapsed().as_secs_f64();
        let joins_done_us = wall_us();
        // Wait for the events: all joins' participant.joined (or, coalesced, their count), or no progress.
        let expected: HashSet<String> = sent_us.lock().expect("not poisoned").keys().cloned().collect();
        let (mut last_len, mut last_change) = (0, Instant::now());
        let mut seen = HashSet::new();
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let len = {
                let r = shared.lock().expect("not poisoned");
                seen.extend(joined_ids_in(&r.arrivals[last_len..]));
                r.arrivals.len()
            };
            if len != last_len {
                (last_len, last_change) = (len, Instant::now());
            }
            if audience == "on" && expected.iter().all(|e| seen.contains(e)) {
                break;
            }
            if last_change.elapsed() >= Duration::from_secs(drain_secs) {
                break;
            }
        }
        for t in open {
            t.abort();
        }
        (started, started_us, joins_done_us, joins_secs)
    });
    let (cpu1, rcpu1) = (cpu_ticks(hub_pid), cpu_ticks(redis_pid));
    let run_secs = started.elapsed().as_secs_f64();
    drop(rt);
    drop(hub);
    drop(redis);

    let failures = failures.lock().expect("not poisoned").clone();
    let sent_us = sent_us.lock().expect("not poisoned").clone();
    let joined = sent_us.len() as u64;
    println!(
        "joins: {joined} succeeded, {} failed, in {joins_secs:.2} s: {:.0} joins/s achieved",
        failures.len(),
        joined as f64 / joins_secs
    );
    for f in failures.iter().take(3) {
        println!("  failure: {f}");
    }

    let r = shared.lock().expect("not poisoned");
    let mut seen_ids = HashSet::new();
    let (mut duplicates, mut order_violations, mut unreadable) = (0u64, 0u64, 0u64);
    let mut last_pos: HashMap<String, (u64, u64)> = HashMap::new();
    let mut types: HashMap<String, u64> = HashMap::new();
    let (mut event_lag, mut join_lag) = (Vec::new(), Vec::new());
    let mut summary_joined = 0u64;
    let mut joined_ids = HashSet::new();
    for a in &r.arrivals {
        if !seen_ids.insert(a.id.clone()) {
            duplicates += 1;
            continue;
        }
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&a.body) else {
            unreadable += 1;
            continue;
        };
        let kind = v["type"].as_str().unwrap_or("").to_owned();
        let d = &v["data"];
        if d["id"].as_str() != Some(a.id.as_str()) {
            unreadable += 1;
        }
        if let Some(room) = d["room"].as_str() {
            let pos = (d["seq"].as_u64().unwrap_or(0), d["index"].as_u64().unwrap_or(0));
            if let Some(prev) = last_pos.insert(room.to_owned(), pos)
                && prev >= pos
            {
                order_violations += 1;
            }
        }
        if let Some(t) = v["timestamp"].as_str().and_then(iso_ms) {
            event_lag.push(a.at_us.saturating_sub(t * 1000));
        }
        if kind == "participant.joined"
            && let Some(who) = d["participant"]["id"].as_str()
        {
            joined_ids.insert(who.to_owned());
            if let Some(sent) = sent_us.get(who) {
                join_lag.push(a.at_us.saturating_sub(*sent));
            }
        }
        if kind == "audience.summary" {
            summary_joined += d["audience"]["joined"].as_u64().unwrap_or(0);
        }
        *types.entry(kind).or_insert(0) += 1;
    }
    let delivered = r.arrivals.len() as u64;
    let while_joining = r.arrivals.iter().filter(|a| a.at_us <= joins_done_us).count();
    let last_us = r.arrivals.iter().map(|a| a.at_us).max().unwrap_or(joins_done_us);
    let first_us = r.arrivals.iter().map(|a| a.at_us).min().unwrap_or(started_us);
    println!("events received: {delivered} ({} distinct) {types:?}", seen_ids.len());
    println!(
        "delivered/s: {:.0} while joining ({while_joining} in {joins_secs:.2} s), {:.0} from the first event to the last \
         ({:.2} s)",
        while_joining as f64 / joins_secs,
        delivered as f64 / ((last_us - first_us) as f64 / 1e6).max(1e-3),
        (last_us - first_us) as f64 / 1e6
    );
    println!(
        "last event arrived {:.2} s after the last join completed",
        last_us.saturating_sub(joins_done_us) as f64 / 1e6
    );
    lags("lag, event timestamp -> arrival", event_lag);
    lags("lag, join sent -> its participant.joined arrives", join_lag);
    if audience == "on" {
        let missing = sent_us.keys().filter(|w| !joined_ids.contains(*w)).count();
        println!("missing participant.joined: {missing} of {joined}");
    } else {
        println!(
            "audience.summary joined counts add up to {summary_joined} of {joined} joins (the last summary waits for a \
             transition after the interval)"
        );
    }
    println!(
        "duplicates: {duplicates}; per-room (seq, index) order violations: {order_violations}; unreadable: {unreadable}"
    );
    let mut gaps = r.gaps_us.clone();
    gaps.sort_unstable();
    let mut cycles: Vec<u64> = r.arrivals.windows(2).map(|w| w[1].at_us.saturating_sub(w[0].at_us)).collect();
    cycles.sort_unstable();
    println!(
        "delivery cycle (request to request): p50 {:.2} ms, p99 {:.2} ms → {:.0} events/s at p50; hub's part (204 sent \
         -> next request's first byte): p50 {:.2} ms, p99 {:.2} ms",
        ms(percentile(&cycles, 0.5)),
        ms(percentile(&cycles, 0.99)),
        1e6 / percentile(&cycles, 0.5).max(1) as f64,
        ms(percentile(&gaps, 0.5)),
        ms(percentile(&gaps, 0.99))
    );
    let mut drain_cycles: Vec<u64> = r
        .arrivals
        .windows(2)
        .filter(|w| w[0].at_us > joins_done_us)
        .map(|w| w[1].at_us.saturating_sub(w[0].at_us))
        .collect();
    drain_cycles.sort_unstable();
    if drain_cycles.is_empty() {
        println!("delivery cycle after the last join: no backlog was left");
    } else {
        println!(
            "delivery cycle after the last join (backlog, no join load): n={} p50 {:.2} ms, p99 {:.2} ms → {:.0} \
             events/s",
            drain_cycles.len(),
            ms(percentile(&drain_cycles, 0.5)),
            ms(percentile(&drain_cycles, 0.99)),
            1e6 / percentile(&drain_cycles, 0.5).max(1) as f64
        );
    }
    println!(
        "CPU over {run_secs:.1} s (joins and drain): hub {:.2} s ({:.0} % of one core), redis {:.2} s ({:.0} %)",
        (cpu1 - cpu0) as f64 / 100.0,
        (cpu1 - cpu0) as f64 / run_secs,
        (rcpu1 - rcpu0) as f64 / 100.0,
        (rcpu1 - rcpu0) as f64 / run_secs
    );
}

/// The participant ids of the `participant.joined` events in `arrivals`.
fn joined_ids_in(arrivals: &[Arrival]) -> Vec<String> {
    arrivals
        .iter()
        .filter_map(|a| {
            let v: serde_json::Value = serde_json::from_slice(&a.body).ok()?;
            (v["type"] == "participant.joined").then(|| v["data"]["participant"]["id"].as_str().map(str::to_owned))?
        })
        .collect()
}

fn main() {
    let rate: u64 = env_or("PODIUM_BENCH_RATE", 1000).max(1);
    let secs: u64 = env_or("PODIUM_BENCH_SECS", 10).max(1);
    let drain_secs: u64 = env_or("PODIUM_BENCH_DRAIN_SECS", 15).max(1);
    let modes = std::env::var("PODIUM_BENCH_AUDIENCE").unwrap_or_else(|_| "on,coalesced".into());
    for mode in modes.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        pass(mode, rate, secs, drain_secs);
    }
}
