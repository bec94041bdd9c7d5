//! Fan-out benchmark: one speaker forwarded to N listeners over loopback, sweeping N.
//!
//! `cargo bench -p podium-media --bench fanout`
//!
//! Knobs: `PODIUM_BENCH_LISTENERS` (comma-separated sweep, default `250,500,1000,1500,2000,3000`),
//! `PODIUM_BENCH_SECS` (measured seconds per N, default 10), `PODIUM_BENCH_PPS` (speaker packets/s, default 50),
//! `PODIUM_BENCH_PAYLOAD` (bytes, default 80), `PODIUM_BENCH_GEN` (`tick`, `wake` or `spin`, default `tick`, see
//! below), `PODIUM_BENCH_SERVER_CORE` / `PODIUM_BENCH_LOAD_CORE` (default 0 / 1).
//!
//! Every N runs in two fresh processes (this binary re-executed), so memory and CPU are read apart:
//! * the **server** process starts `Media` with one worker, pins the worker thread (`podium-media-0`) to the server
//!   core and everything else to the load core, and answers the generator's offers (signaling over pipes);
//! * the **generator** process, pinned to the load core, runs the speaker and N listeners, each a str0m `Rtc` with
//!   its own loopback socket. A listener completes ICE + DTLS, then counts SRTP RTP datagrams without decrypting
//!   them; only STUN, DTLS and RTCP reach its `Rtc`, so ICE consent keeps working.
//!
//! On loopback the receiving half of every datagram (UDP lookup, enqueue, waking the reader) runs in the
//! *sender's* syscall, i.e. on the server's core. A real NIC takes the wake-up off the server. So by default
//! (`tick`) the generator never blocks in epoll once connected: it sleeps 1 ms and then polls without waiting,
//! and the server's sends find no sleeping reader to wake. `wake` blocks in epoll (the server pays a wake-up of
//! the generator whenever it had caught up and slept: a loopback-only cost, the conservative number); `spin`
//! polls without sleeping at all (100 % of the load core).
//!
//! Reported per N: forwarded packets/s (counted by the listeners over the window, late arrivals included), the SFU
//! worker thread's CPU (from `/proc/self/task/<tid>/schedstat`) and so packets/s per busy core, loss, the
//! server-side fan-out time (receipt of the speaker's packet → return of the `sendmmsg` carrying its last copy,
//! from [`MediaStats::fanout`]) and the server's heap (a counting allocator) and RSS growth per listener, and how
//! much of the server core other processes took (`/proc/stat` busy time minus the worker's): a run where that is
//! more than a few % was disturbed, and its loss and fan-out times are not the SFU's.

#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::alloc::System;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cap::Cap;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use nix::sched::{CpuSet, sched_setaffinity};
use nix::unistd::Pid;
use podium_media::{Media, MediaConfig, MediaStats};
use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

/// Counts the live heap bytes of this process.
#[global_allocator]
static HEAP: Cap<System> = Cap::new(System, usize::MAX);

fn heap_bytes() -> i64 {
    HEAP.allocated() as i64
}

fn env_str(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn pin(tid: i32, core: usize) {
    let mut set = CpuSet::new();
    set.set(core).unwrap();
    sched_setaffinity(Pid::from_raw(tid), &set).unwrap();
}

/// Thread ids of this process whose name starts with `prefix`.
fn threads(prefix: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let name = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if name.trim_end().starts_with(prefix) {
            out.push(t.file_name().to_string_lossy().parse().unwrap());
        }
    }
    out
}

/// CPU time of one thread (`schedstat`, ns resolution).
fn thread_cpu(tid: i32) -> Duration {
    let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).unwrap();
    Duration::from_nanos(s.split_whitespace().next().unwrap().parse().unwrap())
}

/// utime + stime of the whole process.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let f: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// Busy time of one core (all processes), from `/proc/stat`.
fn core_busy(core: usize) -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let line = stat.lines().find(|l| l.starts_with(&format!("cpu{core} "))).unwrap();
    let f: Vec<u64> = line.split_whitespace().skip(1).map(|x| x.parse().unwrap()).collect();
    let busy: u64 = f.iter().sum::<u64>() - f[3] - f[4];
    Duration::from_millis(busy * 10)
}

fn rss_bytes() -> i64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<i64>().unwrap() * 1024
}

fn main() {
    match std::env::var("PODIUM_FANOUT_ROLE").as_deref() {
        Ok("server") => server(),
        Ok("gen") => generator(),
        _ => orchestrate(),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Orchestrator: one server process (which starts its generator) per N.

fn orchestrate() {
    let sweep = env_str("PODIUM_BENCH_LISTENERS", "250,500,1000,1500,2000,3000");
    let exe = std::env::current_exe().unwrap();
    let secs = env_num("PODIUM_BENCH_SECS", 10);
    let pps = env_num("PODIUM_BENCH_PPS", 50);
    println!("fan-out: 1 speaker at {pps} pkt/s to N listeners, {secs} s measured per N, 1 SFU worker");
    println!(
        "| N | offered pkt/s | forwarded pkt/s | SFU worker CPU | fwd pkt/s per busy core | CPU µs/pkt | loss | \
         fan-out p50 / p99 / max | heap / listener | RSS / listener | generator CPU | other load on server core |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|");
    for n in sweep.split(',').filter_map(|s| s.trim().parse::<usize>().ok()) {
        let out = Command::new(&exe)
            .env("PODIUM_FANOUT_ROLE", "server")
            .env("PODIUM_FANOUT_N", n.to_string())
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        match text.lines().find_map(|l| l.strip_prefix("ROW ")) {
            Some(row) => println!("{row}"),
            None => println!("| {n} | failed: {} |", out.status),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Server: Media with one pinned worker; answers the generator's offers; reads the counters at its marks.

struct Mark {
    at: Instant,
    cpu: Duration,
    core: Duration,
    stats: MediaStats,
}

fn server() {
    let n: usize = env_num("PODIUM_FANOUT_N", 1000) as usize;
    let server_core = env_num("PODIUM_BENCH_SERVER_CORE", 0) as usize;
    let load_core = env_num("PODIUM_BENCH_LOAD_CORE", 1) as usize;
    let (media, mut events) = Media::start(MediaConfig { workers: 1, ..MediaConfig::default() }).unwrap();
    // The worker names itself once it runs.
    let mut workers = threads("podium-media");
    for _ in 0..100 {
        if !workers.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        workers = threads("podium-media");
    }
    assert_eq!(workers.len(), 1, "one worker thread");
    let worker = workers[0];
    pin(worker, server_core);
    pin(0, load_core); // this thread; threads started from now on inherit it
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async { while events.recv().await.is_some() {} });
    });
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    media.set_publish("bench", "speaker", true);
    std::thread::sleep(Duration::from_millis(200));
    let heap0 = heap_bytes();
    let rss0 = rss_bytes();

    let addr = media.local_addrs()[0];
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env("PODIUM_FANOUT_ROLE", "gen")
        .env("PODIUM_FANOUT_N", n.to_string())
        .env("PODIUM_FANOUT_SFU", addr.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut to_child = child.stdin.take().unwrap();
    let from_child = BufReader::new(child.stdout.take().unwrap());
    let mark =
        || Mark { at: Instant::now(), cpu: thread_cpu(worker), core: core_busy(server_core), stats: media.stats() };
    let t0 = Instant::now();
    let mut start = None;
    let mut stop = None;
    let mut mem = (0i64, 0i64);
    let mut connect = Duration::ZERO;
    // Worker CPU from the first offer until all are connected (answers, ICE, DTLS).
    let mut join_cpu = thread_cpu(worker);
    for line in from_child.lines() {
        let line = line.unwrap();
        let mut parts = line.splitn(3, ' ');
        match parts.next().unwrap() {
            "OFFER" => {
                let i = parts.next().unwrap();
                let sdp = parts.next().unwrap().replace('|', "\r\n");
                let who = if i == "0" { "speaker".to_owned() } else { format!("l{i}") };
                let answer = rt.block_on(media.offer("bench", &who, &sdp)).unwrap();
                writeln!(to_child, "ANSWER {i} {}", answer.replace("\r\n", "|")).unwrap();
                to_child.flush().unwrap();
            }
            "CONNECTED" => {
                connect = t0.elapsed();
                join_cpu = thread_cpu(worker) - join_cpu;
            }
            "START" => {
                mem = (heap_bytes() - heap0, rss_bytes() - rss0);
                start = Some(mark());
            }
            "STOP" => stop = Some(mark()),
            "END" => {
                let kv: std::collections::HashMap<&str, f64> = parts
                    .flat_map(|p| p.split(' '))
                    .filter_map(|p| p.split_once('='))
                    .map(|(k, v)| (k, v.parse().unwrap()))
                    .collect();
                let (a, b) = (start.take().unwrap(), stop.take().unwrap());
                eprintln!(
                    "N={n}: worker CPU per join (offer/answer + ICE + DTLS): {:.0} µs",
                    join_cpu.as_secs_f64() * 1e6 / (n + 1) as f64
                );
                report(n, connect, &a, &b, &kv, mem);
                break;
            }
            other => panic!("generator said {other:?}"),
        }
    }
    let _ = child.wait();
    media.shutdown();
}

fn report(
    n: usize,
    connect: Duration,
    a: &Mark,
    b: &Mark,
    kv: &std::collections::HashMap<&str, f64>,
    (heap, rss): (i64, i64),
) {
    let wall = b.at.duration_since(a.at).as_secs_f64();
    let cpu = (b.cpu - a.cpu).as_secs_f64();
    let got = kv["got"];
    let expected = kv["sent"] * n as f64;
    let fwd = got / wall;
    let busy = cpu / wall;
    let loss = 100.0 * (1.0 - got / expected).max(0.0);
    let h = b.stats.fanout.since(&a.stats.fanout);
    let q = |x: f64| h.quantile(x).map_or("-".to_owned(), |d| format!("{:.2}", d.as_secs_f64() * 1e3));
    let peers = (n + 1) as f64;
    let d = |f: fn(&MediaStats) -> u64| f(&b.stats) - f(&a.stats);
    eprintln!(
        "N={n}: connected all in {connect:.1?}; window {wall:.2} s; sent {} frames ({} RTP datagrams); \
         got {got} of {expected}; min per listener {}; sendmmsg calls {}, send_dropped {}, datagrams in {}, \
         forwarded (written) {}, fan-outs {}; server core busy {:.1} % (worker {:.1} %); media_in {}, garbage {}, \
         unknown {}, unpublished {}; heap {:.1} KiB, RSS {:.1} KiB per peer",
        kv["sent"],
        kv["rtp_out"],
        kv["min"],
        d(|s| s.send_calls),
        d(|s| s.send_dropped),
        d(|s| s.datagrams_in),
        d(|s| s.forwarded),
        h.count(),
        100.0 * (b.core - a.core).as_secs_f64() / wall,
        100.0 * busy,
        d(|s| s.media_in),
        d(|s| s.garbage_dropped),
        d(|s| s.unknown_dropped),
        d(|s| s.unpublished_dropped),
        heap as f64 / peers / 1024.0,
        rss as f64 / peers / 1024.0,
    );
    println!(
        "ROW | {n} | {:.0} | {fwd:.0} | {:.1} % | {:.0} | {:.2} | {loss:.3} % | {} / {} / {} ms | {:.1} KiB \
         | {:.1} KiB | {:.0} % | {:.0} % |",
        kv["sent"] * n as f64 / wall,
        100.0 * busy,
        fwd / busy,
        1e6 * cpu / got.max(1.0),
        q(0.5),
        q(0.99),
        q(1.0),
        heap as f64 / peers / 1024.0,
        rss as f64 / peers / 1024.0,
        kv["gen_cpu"],
        100.0 * ((b.core - a.core).as_secs_f64() / wall - busy).max(0.0),
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Generator: the speaker and N counting listeners, one thread, one socket per client.

struct Client {
    rtc: Rtc,
    socket: UdpSocket,
    addr: SocketAddr,
    next: Instant,
    connected: bool,
    got: u64,
    /// RTP datagrams this client sent (the speaker).
    sent_rtp: u64,
}

/// SRTP RTP (not RTCP, STUN or DTLS), by RFC 7983 / 5761 demultiplexing.
fn is_rtp(b: &[u8]) -> bool {
    b.len() >= 12 && (128..=191).contains(&b[0]) && !(64..=95).contains(&(b[1] & 0x7f))
}

/// Drains a client's `Rtc`; returns its next deadline.
fn pump(c: &mut Client, now: Instant) -> Instant {
    loop {
        match c.rtc.poll_output() {
            Ok(Output::Timeout(t)) => {
                c.next = t;
                return t;
            }
            Ok(Output::Transmit(t)) => {
                let ok = c.socket.send_to(&t.contents, t.destination).is_ok();
                if is_rtp(&t.contents) && ok {
                    c.sent_rtp += 1;
                }
            }
            Ok(Output::Event(Event::Connected)) => c.connected = true,
            Ok(Output::Event(_)) => {}
            Err(_) => {
                c.next = now + Duration::from_millis(10);
                return c.next;
            }
        }
    }
}

fn generator() {
    let n: usize = env_num("PODIUM_FANOUT_N", 1000) as usize;
    let secs = env_num("PODIUM_BENCH_SECS", 10);
    let pps = env_num("PODIUM_BENCH_PPS", 50).max(1);
    let payload = env_num("PODIUM_BENCH_PAYLOAD", 80) as usize;
    let mode = env_str("PODIUM_BENCH_GEN", "tick");
    pin(0, env_num("PODIUM_BENCH_LOAD_CORE", 1) as usize);
    let stdin = std::io::stdin();
    let mut answers = stdin.lock().lines();
    let mut out = std::io::stdout().lock();

    let mut clients = Vec::with_capacity(n + 1);
    let mut speaker_mid: Option<Mid> = None;
    for i in 0..=n {
        let socket = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = socket.local_addr().unwrap();
        let mut rtc = RtcConfig::new().clear_codecs().enable_opus(true, false).build(Instant::now());
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        let dir = if i == 0 { Direction::SendOnly } else { Direction::RecvOnly };
        let mut api = rtc.sdp_api();
        let mid = api.add_media(MediaKind::Audio, dir, None, None, None);
        let (offer, pending) = api.apply().unwrap();
        if i == 0 {
            speaker_mid = Some(mid);
        }
        writeln!(out, "OFFER {i} {}", offer.to_sdp_string().replace("\r\n", "|")).unwrap();
        out.flush().unwrap();
        let line = answers.next().unwrap().unwrap();
        let sdp = line.splitn(3, ' ').nth(2).unwrap().replace('|', "\r\n");
        rtc.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&sdp).unwrap()).unwrap();
        clients.push(Client { rtc, socket, addr, next: Instant::now(), connected: false, got: 0, sent_rtp: 0 });
    }

    let mut poll = Poll::new().unwrap();
    for (i, c) in clients.iter_mut().enumerate() {
        poll.registry().register(&mut c.socket, Token(i), Interest::READABLE).unwrap();
    }
    let mut timers: BinaryHeap<Reverse<(Instant, usize)>> =
        clients.iter().enumerate().map(|(i, c)| Reverse((c.next, i))).collect();
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 2048];
    let frame = Duration::from_secs(1) / pps as u32;
    let data = vec![7u8; payload];
    let began = Instant::now();
    let mut connected_at: Option<Instant> = None;
    let mut next_frame = Instant::now();
    let mut seq = 0u64;
    let warmup = pps; // one second
    let total = warmup + secs * pps;
    let mut window_sent = 0u64;
    let mut gen_cpu0 = Duration::ZERO;
    let mut tail_until: Option<Instant> = None;
    let mut window_start = Instant::now();
    loop {
        let now = Instant::now();
        while let Some(Reverse((t, i))) = timers.peek().copied() {
            if t > now {
                break;
            }
            timers.pop();
            let c = &mut clients[i];
            if c.next != t {
                continue;
            }
            let _ = c.rtc.handle_input(Input::Timeout(now));
            let next = pump(c, now);
            timers.push(Reverse((next, i)));
        }
        if connected_at.is_none() {
            if clients.iter().all(|c| c.connected) {
                connected_at = Some(now);
                writeln!(out, "CONNECTED {}", began.elapsed().as_millis()).unwrap();
                out.flush().unwrap();
                next_frame = now;
            } else if began.elapsed() > Duration::from_secs(180) {
                panic!("only {} of {} connected", clients.iter().filter(|c| c.connected).count(), n + 1);
            }
        }
        if connected_at.is_some() && tail_until.is_none() && now >= next_frame {
            if seq == warmup {
                writeln!(out, "START").unwrap();
                out.flush().unwrap();
                for c in &mut clients {
                    c.got = 0;
                    c.sent_rtp = 0;
                }
                gen_cpu0 = process_cpu();
                window_start = now;
            }
            let sp = &mut clients[0];
            let w = sp.rtc.writer(speaker_mid.unwrap()).unwrap();
            let pt = w.payload_params().find(|p| p.spec().codec == Codec::Opus).unwrap().pt();
            w.audio_level(-30, true)
                .write(pt, now, MediaTime::new(seq * 960, Frequency::FORTY_EIGHT_KHZ), data.clone())
                .unwrap();
            let _ = sp.rtc.handle_input(Input::Timeout(now));
            let next = pump(sp, now);
            timers.push(Reverse((next, 0)));
            seq += 1;
            if seq > warmup {
                window_sent += 1;
            }
            next_frame += frame;
            if seq == total {
                writeln!(out, "STOP").unwrap();
                out.flush().unwrap();
                tail_until = Some(Instant::now() + Duration::from_millis(500));
            }
        }
        if let Some(t) = tail_until
            && now >= t
        {
            break;
        }
        let mut wake = timers.peek().map_or(now + Duration::from_millis(5), |Reverse((t, _))| *t);
        if connected_at.is_some() && tail_until.is_none() {
            wake = wake.min(next_frame);
        }
        let wait = wake.saturating_duration_since(Instant::now()).min(Duration::from_millis(5));
        // See the module docs: once connected, "tick" and "spin" never block in epoll, so the server's sends do
        // not have to wake this thread.
        let timeout = match mode.as_str() {
            "tick" if connected_at.is_some() => {
                std::thread::sleep(wait.min(Duration::from_millis(1)));
                Duration::ZERO
            }
            "spin" if connected_at.is_some() => Duration::ZERO,
            _ => wait,
        };
        poll.poll(&mut events, Some(timeout)).unwrap();
        for e in events.iter() {
            let i = e.token().0;
            let c = &mut clients[i];
            while let Ok((len, from)) = c.socket.recv_from(&mut buf) {
                if is_rtp(&buf[..len]) {
                    c.got += 1;
                    continue;
                }
                let now = Instant::now();
                if let Ok(r) = Receive::new(Protocol::Udp, from, c.addr, &buf[..len]) {
                    let _ = c.rtc.handle_input(Input::Receive(now, r));
                }
                let next = pump(c, now);
                timers.push(Reverse((next, i)));
            }
        }
        // Stale timer entries pile up; rebuild when the heap grows large.
        if timers.len() > 8 * clients.len() {
            timers = clients.iter().enumerate().map(|(i, c)| Reverse((c.next, i))).collect();
        }
    }
    let gen_cpu = (process_cpu() - gen_cpu0).as_secs_f64() / window_start.elapsed().as_secs_f64();
    let got: u64 = clients[1..].iter().map(|c| c.got).sum();
    let min = clients[1..].iter().map(|c| c.got).min().unwrap_or(0);
    let rtp_out = clients[0].sent_rtp;
    writeln!(out, "END sent={window_sent} rtp_out={rtp_out} got={got} min={min} gen_cpu={:.1}", 100.0 * gen_cpu)
        .unwrap();
    out.flush().unwrap();
}
