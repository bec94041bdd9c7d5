//! Fan-out benchmark: one speaker forwarded to N listeners over loopback, sweeping N, side by side with the
//! machine's bare `sendmmsg` ceiling and with Janus 1.1.2 (issue #13).
//!
//! `cargo bench -p podium-media --bench fanout`
//!
//! Knobs: `PODIUM_BENCH_LISTENERS` (comma-separated sweep, default `250,500,1000,1500,2000,3000`),
//! `PODIUM_BENCH_SECS` (measured seconds per N, default 10), `PODIUM_BENCH_PPS` (speaker packets/s, default 50),
//! `PODIUM_BENCH_PAYLOAD` (bytes, default 80), `PODIUM_BENCH_GEN` (`tick`, `wake` or `spin`, default `tick`, see
//! below), `PODIUM_BENCH_SERVER_CORE` / `PODIUM_BENCH_LOAD_CORE` (default 0 / 1), `PODIUM_BENCH_WORKERS` (1 or 2,
//! default 1), `PODIUM_BENCH_CEILING` (`1` or `0`, default 1), `PODIUM_BENCH_CEILING_SECS` (default 5),
//! `PODIUM_BENCH_CEILING_PACE` (`podium` or `max`, default `podium`, see below),
//! `PODIUM_BENCH_PEER` (`janus` or `none`, default `janus`), `PODIUM_BENCH_JANUS_MAX` (largest N run against
//! Janus, default 500), `PODIUM_BENCH_JANUS_EVENT_LOOPS` (Janus `event_loops`, default 1; 0 leaves it unset, i.e.
//! a thread per handle).
//!
//! Every N runs in fresh processes (this binary re-executed), so memory and CPU are read apart:
//! * the **server** process starts `Media` with one worker (two with `PODIUM_BENCH_WORKERS=2`, see below), pins the
//!   worker thread (`podium-media-0`) to the server core and everything else to the load core, and answers the generator's offers (signaling over pipes);
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
//! worker thread's CPU (from `/proc/self/task/<tid>/schedstat`) and so packets/s per busy core, the server
//! process's CPU (utime + stime, like Janus's), loss, the server-side fan-out time (receipt of the speaker's packet
//! → return of the `sendmmsg` carrying its last copy, from [`MediaStats::fanout`]) and the server's heap (a
//! counting allocator) and RSS growth per listener, and how much of the server core other processes took
//! (`/proc/stat` busy time minus worker 0's): a run where that is more than a few % was disturbed, and its loss
//! and fan-out times are not the SFU's.
//!
//! Side by side, per N (issue #13):
//! * **ceiling**: a `ceiling` process whose sender thread, pinned to the server core like the SFU worker, sends
//!   datagrams of the size the listeners received from Podium (SRTP RTP as forwarded) to N loopback sockets in
//!   `sendmmsg` batches of 64, paced like the SFU's fan-out (all N copies of a frame at once, `PODIUM_BENCH_PPS`
//!   frames/s; `PODIUM_BENCH_CEILING_PACE=max`: frames back to back, the most it can send), for
//!   `PODIUM_BENCH_CEILING_SECS`. A receiver thread on the load core drains the N sockets like the
//!   generator (`tick`: sleep 1 ms, then poll without waiting; `wake`/`spin`: block in epoll / never sleep), so the
//!   receiving half's cost on the sender's core is the same. Datagrams/s per busy core = datagrams sent / the
//!   sender thread's CPU (schedstat). Podium's fraction = Podium's forwarded pkt/s per busy worker core ÷ that.
//! * **Janus**: a `janus` process starts Janus 1.1.2 (`janus` on `PATH`, Debian package `janus`) from a config
//!   generated into a temporary directory from `benches/janus/` (HTTP transport and VideoRoom only, event loops
//!   per the knob, an `LD_PRELOAD` shim built with `gcc` from `benches/janus/unloop.c` so that Janus offers a
//!   127.0.0.1 candidate), pinned with `taskset` to the server core, and drives its HTTP API (reqwest): the same
//!   generator's speaker publishes (str0m offers, Janus answers) and each listener subscribes (Janus offers, str0m
//!   answers). Janus's CPU is its process's utime + stime over the same window; packets are counted by the same
//!   listeners. When `janus` is not installed that column is skipped with a note; nothing else changes.
//! * `PODIUM_BENCH_WORKERS=2`: `Media` with two workers, one pinned per core (worker 0 on the server core,
//!   worker 1 on the load core). `Media` places each new peer on its least-loaded worker, so the room's listeners
//!   alternate between the two and one packet's fan-out runs on both cores. The generator then shares the load
//!   core with worker 1 and competes with it; the "per busy core" numbers count both workers' CPU, and stderr shows
//!   each worker's CPU and the time it was runnable but waiting for its core.
//!
//! * `PODIUM_BENCH_CHURN=P` (percent of the listeners, default 0): halfway through the window the server removes
//!   P % of the listeners (odd-numbered ones first: with two workers, `Media` placed them on worker 1), so that
//!   `Media` rebalances the room by moving listeners from the busier worker while the speaker keeps sending. The
//!   generator stops counting the removed listeners; loss is counted over the listeners that stay, for the whole
//!   window, so a packet lost to a move shows. stderr gives the room's spread over the workers before and after
//!   and the moves made.
//!
//! * `PODIUM_BENCH_RECORD=1` (default 0): the server records the room (`Media::start_recording` into a temporary
//!   directory, the speaker marked with `Media::set_record`), so every packet the worker forwards is also queued to
//!   the recording writer thread, which is pinned to the load core (its file IO is not the forwarding path's
//!   cost). Compare the worker's CPU per forwarded packet with and without: the forwarding path's share of
//!   recording is one `try_send` of `Arc` clones per received packet. stderr gives the packets recorded, dropped
//!   at the queue, and the segments written.
//!
//! * **ceiling ÷ Janus**: the bare sender's CPU per datagram (1 / its datagrams/s per core) over Janus's per
//!   packet, the same run: the lowest Podium ÷ Janus that any server sending these datagrams through this machine's
//!   kernel could show. Podium ÷ Janus is to be read against it.
//! * `PODIUM_BENCH_ROUNDS=R` (default 1): each N runs Podium, the ceiling and Janus R times, alternating, and a last
//!   table gives per N the medians, and the median of the R rounds' Podium ÷ Janus ratios (each ratio from one
//!   round, so a drift of the machine between rounds does not mix into a ratio).
//!
//! A summary table (one row per N, per round) closes the output.

#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::alloc::System;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::{BufRead, BufReader, IoSlice, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cap::Cap;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use nix::sched::{CpuSet, sched_setaffinity};
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};
use nix::unistd::Pid;
use podium_media::{Media, MediaConfig, MediaStats};
use serde_json::{Value, json};
use str0m::change::{SdpAnswer, SdpOffer};
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

/// Thread ids of this process whose name starts with `prefix`, ordered by name.
fn threads(prefix: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let name = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if name.trim_end().starts_with(prefix) {
            out.push((name.trim_end().to_owned(), t.file_name().to_string_lossy().parse().unwrap()));
        }
    }
    out.sort();
    out.into_iter().map(|(_, tid)| tid).collect()
}

/// CPU time of one thread (`schedstat`, ns resolution).
fn thread_cpu(tid: i32) -> Duration {
    let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).unwrap();
    Duration::from_nanos(s.split_whitespace().next().unwrap().parse().unwrap())
}

/// Time one thread spent runnable but waiting for a core (`schedstat`'s second field, ns).
fn thread_wait(tid: i32) -> Duration {
    let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).unwrap();
    Duration::from_nanos(s.split_whitespace().nth(1).unwrap().parse().unwrap())
}

/// CPU time of the calling thread (`schedstat`, ns resolution).
fn own_thread_cpu() -> Duration {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
    Duration::from_nanos(s.split_whitespace().next().unwrap().parse().unwrap())
}

/// utime + stime of a whole process (`self` or a pid), 10 ms ticks.
fn process_cpu_of(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some(close) = stat.rfind(')') else { return Duration::ZERO };
    let f: Vec<&str> = stat[close + 2..].split(' ').collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// Run time of all live threads of a process (`schedstat`, ns resolution; threads that ended are not in it).
fn tasks_cpu_of(pid: &str) -> Duration {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Duration::ZERO };
    dir.flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .map(Duration::from_nanos)
        .sum()
}

fn process_cpu() -> Duration {
    process_cpu_of("self")
}

/// Busy time of one core (all processes), from `/proc/stat`.
fn core_busy(core: usize) -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let line = stat.lines().find(|l| l.starts_with(&format!("cpu{core} "))).unwrap();
    let f: Vec<u64> = line.split_whitespace().skip(1).map(|x| x.parse().unwrap()).collect();
    let busy: u64 = f.iter().sum::<u64>() - f[3] - f[4];
    Duration::from_millis(busy * 10)
}

/// `RcvbufErrors` of `/proc/net/snmp` (all UDP sockets of the machine): datagrams dropped for a full receive buffer.
fn udp_rcvbuf_errors() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else { return 0 };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(k, _)| *k == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
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
        Ok("ceiling") => ceiling(),
        Ok("janus") => janus_peer(),
        _ => orchestrate(),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Orchestrator: per N one server process (which starts its generator), one ceiling process, one Janus process.

/// The `RES k=v ...` line a role prints last.
fn results(stdout: &[u8]) -> Option<HashMap<String, String>> {
    let text = String::from_utf8_lossy(stdout);
    let line = text.lines().find_map(|l| l.strip_prefix("RES "))?;
    Some(line.split(' ').filter_map(|p| p.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect())
}

/// Runs this binary in `role`; prints its `ROW` line (if any) and returns its `RES` line.
fn run_role(role: &str, n: usize, extra: &[(&str, String)]) -> Option<HashMap<String, String>> {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env("PODIUM_FANOUT_ROLE", role).env("PODIUM_FANOUT_N", n.to_string()).stderr(Stdio::inherit());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    if let Some(row) = text.lines().find_map(|l| l.strip_prefix("ROW ")) {
        println!("{row}");
    }
    let res = results(&out.stdout);
    if res.is_none() {
        println!("| {n} | {role} failed: {} |", out.status);
    }
    res
}

/// Where `janus` is, if installed.
fn janus_binary() -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| std::path::Path::new(d).join("janus")).find(|p| p.is_file())
}

fn orchestrate() {
    let sweep = env_str("PODIUM_BENCH_LISTENERS", "250,500,1000,1500,2000,3000");
    let secs = env_num("PODIUM_BENCH_SECS", 10);
    let pps = env_num("PODIUM_BENCH_PPS", 50);
    let workers = env_num("PODIUM_BENCH_WORKERS", 1).clamp(1, 2);
    let mode = env_str("PODIUM_BENCH_GEN", "tick");
    let ceiling_on = env_num("PODIUM_BENCH_CEILING", 1) != 0;
    let janus_max = env_num("PODIUM_BENCH_JANUS_MAX", 500) as usize;
    let janus_off = if env_str("PODIUM_BENCH_PEER", "janus") != "janus" {
        Some("PODIUM_BENCH_PEER=none")
    } else if janus_binary().is_none() {
        println!(
            "NOTE: `janus` is not installed (Debian: `apt-get install janus`, Janus 1.1.2): the Janus column is skipped."
        );
        Some("janus not installed")
    } else {
        None
    };
    let largest = sweep.split(',').filter_map(|s| s.trim().parse::<u64>().ok()).max().unwrap_or(0);
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let nofile = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(limit) = nofile.filter(|l| *l < largest + 100) {
        println!(
            "NOTE: `ulimit -n` is {limit}, below N + 100 = {}: raise it, or the largest N will fail.",
            largest + 100
        );
    }
    println!(
        "fan-out: 1 speaker at {pps} pkt/s to N listeners, {secs} s measured per N, {workers} SFU worker(s), \
         generator `{mode}`"
    );
    if workers == 2 {
        println!(
            "NOTE: two workers, one pinned per core: the generator (and worker 1) share the load core, so the \
             generator's CPU competes with the SFU's and fan-out times include that sharing."
        );
    }
    println!(
        "| N | offered pkt/s | forwarded pkt/s | SFU worker CPU | fwd pkt/s per busy core | CPU µs/pkt | loss | \
         fan-out p50 / p99 / max | heap / listener | RSS / listener | generator CPU | other load on server core |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|");
    let rounds = env_num("PODIUM_BENCH_ROUNDS", 1).max(1) as usize;
    let mut rows = Vec::new();
    for n in sweep.split(',').filter_map(|s| s.trim().parse::<usize>().ok()) {
        for round in 0..rounds {
            if rounds > 1 {
                println!("| {n} | round {} of {rounds} | | | | | | | | | | |", round + 1);
            }
            let podium = run_role("server", n, &[]);
            let size = podium.as_ref().and_then(|r| r.get("rtp_len")).and_then(|v| v.parse::<f64>().ok());
            let ceiling = if ceiling_on {
                // The size the listeners received from Podium, else 80 B payload + 12 B RTP header + 8 B header
                // extensions (audio level, mid) + 16 B SRTP (AEAD-GCM) tag.
                let size = size.map_or(116, |s| s.round() as usize);
                run_role("ceiling", n, &[("PODIUM_FANOUT_SIZE", size.to_string())])
            } else {
                None
            };
            let janus = if janus_off.is_none() && n <= janus_max { run_role("janus", n, &[]) } else { None };
            rows.push((n, podium, ceiling, janus));
        }
    }
    summary(&rows, janus_off, janus_max);
    if rounds > 1 {
        medians(&rows, rounds);
    }
}

/// With `PODIUM_BENCH_ROUNDS` > 1: per N, the median over the rounds of Podium's and Janus's µs/pkt and of the
/// ratio of each round (Podium and Janus measured minutes apart on a machine whose loopback cost drifts, so each
/// round's ratio is taken before the median).
fn medians(rows: &[(usize, Res, Res, Res)], rounds: usize) {
    let num = |r: &Res, k: &str| r.as_ref().and_then(|m| m.get(k)).and_then(|v| v.parse::<f64>().ok());
    let median = |mut v: Vec<f64>| -> Option<f64> {
        v.sort_by(f64::total_cmp);
        (!v.is_empty())
            .then(|| if v.len() % 2 == 1 { v[v.len() / 2] } else { (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0 })
    };
    let f = |v: Option<f64>, d: usize| v.map_or("-".to_owned(), |v| format!("{v:.d$}"));
    println!();
    println!("Medians over {rounds} rounds (each round: Podium, the ceiling, Janus, one after the other):");
    println!(
        "| N | Podium µs/pkt process | fraction of ceiling | Janus µs/pkt | Podium ÷ Janus (median of the rounds' \
         ratios) | ceiling ÷ Janus | ratios |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---|");
    for chunk in rows.chunks(rounds) {
        let n = chunk[0].0;
        let pod: Vec<f64> = chunk.iter().filter_map(|(_, p, _, _)| num(p, "us_proc")).collect();
        let frac: Vec<f64> = chunk
            .iter()
            .filter_map(|(_, p, c, _)| num(p, "per_core").zip(num(c, "ceil_dps")).map(|(a, b)| 100.0 * a / b))
            .collect();
        let jan: Vec<f64> = chunk.iter().filter_map(|(_, _, _, j)| num(j, "janus_us")).collect();
        let ratios: Vec<f64> = chunk
            .iter()
            .filter_map(|(_, p, _, j)| num(p, "us_proc").zip(num(j, "janus_us")).map(|(a, b)| a / b))
            .collect();
        let floors: Vec<f64> = chunk
            .iter()
            .filter_map(|(_, _, c, j)| num(c, "ceil_dps").zip(num(j, "janus_us")).map(|(d, b)| 1e6 / d / b))
            .collect();
        let list = ratios.iter().map(|r| format!("{r:.3}")).collect::<Vec<_>>().join(", ");
        println!(
            "| {n} | {} | {} % | {} | {} | {} | {list} |",
            f(median(pod), 2),
            f(median(frac), 0),
            f(median(jan), 1),
            f(median(ratios), 3),
            f(median(floors), 3)
        );
    }
}

type Res = Option<HashMap<String, String>>;

fn summary(rows: &[(usize, Res, Res, Res)], janus_off: Option<&str>, janus_max: usize) {
    let num = |r: &Res, k: &str| r.as_ref().and_then(|m| m.get(k)).and_then(|v| v.parse::<f64>().ok());
    // A value with its unit, or "-" when it was not measured.
    let f = |v: Option<f64>, d: usize, unit: &str| v.map_or("-".to_owned(), |v| format!("{v:.d$}{unit}"));
    println!();
    println!("Summary (µs/pkt: worker = the SFU worker threads' schedstat; process = utime + stime of the whole");
    println!("process, as for Janus; ceiling and Podium's fraction use the sending threads' CPU):");
    println!(
        "| N | Podium µs/pkt worker / process | ceiling datagrams/s per core (size) | Podium fraction of ceiling | \
         Janus µs/pkt process | Podium ÷ Janus (process) | ceiling ÷ Janus | loss Podium / Janus / ceiling | \
         fan-out p50 / p99 | heap / RSS per listener |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---|---|---|");
    for (n, p, c, j) in rows {
        let ceil = num(c, "ceil_dps");
        let frac = num(p, "per_core").zip(ceil).map(|(a, b)| 100.0 * a / b);
        let ratio = num(p, "us_proc").zip(num(j, "janus_us")).map(|(a, b)| a / b);
        // The bare sender's cost per datagram over Janus's per packet: the lowest ratio any server sending these
        // datagrams through this machine's kernel could reach in this run.
        let floor = ceil.zip(num(j, "janus_us")).map(|(d, b)| 1e6 / d / b);
        let janus_us = match janus_off {
            Some(why) => format!("- ({why})"),
            None if *n > janus_max => format!("- (N > {janus_max})"),
            None => f(num(j, "janus_us"), 1, ""),
        };
        println!(
            "| {n} | {} / {} | {} ({}) | {} | {janus_us} | {} | {} | {} / {} / {} | {} / {} | {} / {} |",
            f(num(p, "us_worker"), 2, ""),
            f(num(p, "us_proc"), 2, ""),
            f(ceil, 0, ""),
            f(num(c, "size"), 0, " B"),
            f(frac, 0, " %"),
            f(ratio, 3, ""),
            f(floor, 3, ""),
            f(num(p, "loss"), 3, " %"),
            f(num(j, "janus_loss"), 3, " %"),
            f(num(c, "ceil_loss"), 3, " %"),
            f(num(p, "p50"), 2, ""),
            f(num(p, "p99"), 2, " ms"),
            f(num(p, "heap"), 1, ""),
            f(num(p, "rss"), 1, " KiB"),
        );
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Server: Media with one (or two) pinned workers; answers the generator's offers; reads the counters at its marks.

struct Mark {
    at: Instant,
    /// The workers' CPU, summed.
    cpu: Duration,
    /// The CPU of the worker pinned to the server core (worker 0).
    cpu0: Duration,
    /// Per worker: CPU and time runnable but waiting for its core.
    each: Vec<(Duration, Duration)>,
    /// utime + stime of this process.
    proc: Duration,
    /// UDP receive-buffer drops, system-wide.
    rcvbuf_errors: u64,
    core: Duration,
    stats: MediaStats,
}

/// Parses the generator's `END k=v ...` fields.
fn end_fields<'a>(parts: impl Iterator<Item = &'a str>) -> HashMap<&'a str, f64> {
    parts.flat_map(|p| p.split(' ')).filter_map(|p| p.split_once('=')).map(|(k, v)| (k, v.parse().unwrap())).collect()
}

fn spawn_generator(n: usize, peer: &str) -> std::process::Child {
    // With two workers the generator shares core 1 with worker 1. It stands in for remote clients, so by default it
    // runs at nice 19 and the worker gets the core whenever it is runnable (PODIUM_BENCH_GEN_NICE overrides).
    let two_workers = env_num("PODIUM_BENCH_WORKERS", 1) >= 2;
    let nice = env_num("PODIUM_BENCH_GEN_NICE", if two_workers { 19 } else { 0 });
    let mut cmd = if nice > 0 {
        let mut c = Command::new("nice");
        c.arg("-n").arg(nice.to_string()).arg(std::env::current_exe().unwrap());
        c
    } else {
        Command::new(std::env::current_exe().unwrap())
    };
    cmd.env("PODIUM_FANOUT_ROLE", "gen")
        .env("PODIUM_FANOUT_N", n.to_string())
        .env("PODIUM_FANOUT_PEER", peer)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

fn server() {
    let n: usize = env_num("PODIUM_FANOUT_N", 1000) as usize;
    let server_core = env_num("PODIUM_BENCH_SERVER_CORE", 0) as usize;
    let load_core = env_num("PODIUM_BENCH_LOAD_CORE", 1) as usize;
    let n_workers = env_num("PODIUM_BENCH_WORKERS", 1).clamp(1, 2) as usize;
    let (media, mut events) = Media::start(MediaConfig { workers: n_workers, ..MediaConfig::default() }).unwrap();
    // The workers name themselves once they run.
    let mut workers = threads("podium-media");
    for _ in 0..100 {
        if workers.len() == n_workers {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        workers = threads("podium-media");
    }
    assert_eq!(workers.len(), n_workers, "worker threads");
    // Worker 0 on the server core; with two, worker 1 on the load core (shared with the generator).
    pin(workers[0], server_core);
    if n_workers == 2 {
        pin(workers[1], load_core);
    }
    pin(0, load_core); // this thread; threads started from now on inherit it
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async { while events.recv().await.is_some() {} });
    });
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    media.set_publish("bench", "speaker", true);
    let record = env_num("PODIUM_BENCH_RECORD", 0) != 0;
    let rec_dir = std::env::temp_dir().join(format!("podium-bench-rec-{}", std::process::id()));
    if record {
        for t in threads("podium-recorder") {
            pin(t, load_core);
        }
        media.start_recording("bench", "bench", &rec_dir).unwrap();
        media.set_record("bench", "speaker", true);
    }
    std::thread::sleep(Duration::from_millis(200));
    let heap0 = heap_bytes();
    let rss0 = rss_bytes();

    let mut child = spawn_generator(n, "podium");
    let mut to_child = child.stdin.take().unwrap();
    let from_child = BufReader::new(child.stdout.take().unwrap());
    let workers_cpu = || workers.iter().map(|w| thread_cpu(*w)).sum::<Duration>();
    let mark = || Mark {
        at: Instant::now(),
        cpu: workers_cpu(),
        cpu0: thread_cpu(workers[0]),
        each: workers.iter().map(|w| (thread_cpu(*w), thread_wait(*w))).collect(),
        proc: process_cpu(),
        rcvbuf_errors: udp_rcvbuf_errors(),
        core: core_busy(server_core),
        stats: media.stats(),
    };
    let t0 = Instant::now();
    let mut start = None;
    let mut stop = None;
    let mut mem = (0i64, 0i64);
    let mut connect = Duration::ZERO;
    let mut churn = None;
    // Worker CPU from the first offer until all are connected (answers, ICE, DTLS).
    let mut join_cpu = workers_cpu();
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
                join_cpu = workers_cpu() - join_cpu;
            }
            "START" => {
                mem = (heap_bytes() - heap0, rss_bytes() - rss0);
                start = Some(mark());
            }
            "CHURN" => {
                let before = media.room_spread("bench");
                let moved = media.stats().peers_moved;
                let t = Instant::now();
                for i in churned(n) {
                    media.remove_peer("bench", &format!("l{i}"));
                }
                churn = Some((before, moved, t.elapsed()));
            }
            "STOP" => stop = Some(mark()),
            "END" => {
                let kv = end_fields(parts);
                let (a, b) = (start.take().unwrap(), stop.take().unwrap());
                // The moves ran on the workers while the speaker kept sending.
                if let Some((before, moved, took)) = churn.take() {
                    eprintln!(
                        "N={n}: churn: removed {} listeners in {took:.1?}; spread over workers {before:?} -> {:?}; \
                         {} listeners moved",
                        churned(n).len(),
                        media.room_spread("bench"),
                        media.stats().peers_moved - moved
                    );
                }
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
    if record {
        let tracks = rt.block_on(media.stop_recording("bench"));
        let stats = media.stats();
        let written: u64 = tracks.as_ref().map_or(0, |t| t.segments.iter().map(|s| s.packets).sum());
        eprintln!(
            "N={n}: recording: {} packets queued, {} dropped at the queue, {written} written in {} segment(s)",
            stats.record_queued,
            stats.record_dropped,
            tracks.map_or(0, |t| t.segments.len())
        );
        let _ = std::fs::remove_dir_all(&rec_dir);
    }
    media.shutdown();
}

fn report(n: usize, connect: Duration, a: &Mark, b: &Mark, kv: &HashMap<&str, f64>, (heap, rss): (i64, i64)) {
    let wall = b.at.duration_since(a.at).as_secs_f64();
    let cpu = (b.cpu - a.cpu).as_secs_f64();
    let proc = (b.proc - a.proc).as_secs_f64();
    let got = kv["got"];
    // Listeners that stayed to the end (all of them unless `PODIUM_BENCH_CHURN` removed some).
    let kept = kv.get("kept").copied().unwrap_or(n as f64);
    let expected = kv["sent"] * kept;
    let fwd = got / wall;
    let busy = cpu / wall;
    let loss = 100.0 * (1.0 - got / expected).max(0.0);
    let h = b.stats.fanout.since(&a.stats.fanout);
    let q = |x: f64| h.quantile(x).map_or("-".to_owned(), |d| format!("{:.2}", d.as_secs_f64() * 1e3));
    let peers = (n + 1) as f64;
    let d = |f: fn(&MediaStats) -> u64| f(&b.stats) - f(&a.stats);
    eprintln!(
        "N={n}: connected all in {connect:.1?}; window {wall:.2} s; sent {} frames ({} RTP datagrams); \
         got {got} of {expected} ({:.1} B each); min per listener {}; sendmmsg calls {}, send_dropped {}, datagrams \
         in {}, forwarded (written) {}, fan-outs {}, cross-worker dropped {}; UDP receive-buffer drops (machine) {}; \
         server core busy {:.1} % (workers {:.1} %, process {:.1} %); per worker, CPU / runnable but waiting for a \
         core: {}; media_in {}, garbage {}, unknown {}, unpublished {}; heap {:.1} KiB, RSS {:.1} KiB per \
         peer",
        kv["sent"],
        kv["rtp_out"],
        kv["rtp_len"],
        kv["min"],
        d(|s| s.send_calls),
        d(|s| s.send_dropped),
        d(|s| s.datagrams_in),
        d(|s| s.forwarded),
        h.count(),
        d(|s| s.cross_worker_dropped),
        b.rcvbuf_errors - a.rcvbuf_errors,
        100.0 * (b.core - a.core).as_secs_f64() / wall,
        100.0 * busy,
        100.0 * proc / wall,
        a.each
            .iter()
            .zip(&b.each)
            .map(|((ca, wa), (cb, wb))| format!(
                "{:.1} % / {:.1} %",
                100.0 * (*cb - *ca).as_secs_f64() / wall,
                100.0 * (*wb - *wa).as_secs_f64() / wall
            ))
            .collect::<Vec<_>>()
            .join(", "),
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
        100.0 * ((b.core - a.core).as_secs_f64() - (b.cpu0 - a.cpu0).as_secs_f64()).max(0.0) / wall,
    );
    println!(
        "RES n={n} fwd={fwd:.0} per_core={:.0} us_worker={:.3} us_proc={:.3} loss={loss:.3} p50={} p99={} heap={:.1} \
         rss={:.1} rtp_len={:.1}",
        fwd / busy,
        1e6 * cpu / got.max(1.0),
        1e6 * proc / got.max(1.0),
        q(0.5),
        q(0.99),
        heap as f64 / peers / 1024.0,
        rss as f64 / peers / 1024.0,
        kv["rtp_len"],
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Ceiling: bare `sendmmsg` from one thread on the server core to N loopback sockets drained like the listeners.

fn ceiling() {
    let n: usize = env_num("PODIUM_FANOUT_N", 1000) as usize;
    let size = env_num("PODIUM_FANOUT_SIZE", 116) as usize;
    let secs = env_num("PODIUM_BENCH_CEILING_SECS", 5);
    let pps = env_num("PODIUM_BENCH_PPS", 50).max(1);
    let mode = env_str("PODIUM_BENCH_GEN", "tick");
    // `podium`: N copies per frame at the speaker's rate, like the SFU; `max`: back to back, as fast as it goes.
    let paced = env_str("PODIUM_BENCH_CEILING_PACE", "podium") != "max";
    let server_core = env_num("PODIUM_BENCH_SERVER_CORE", 0) as usize;
    let load_core = env_num("PODIUM_BENCH_LOAD_CORE", 1) as usize;
    pin(0, load_core);

    let mut poll = Poll::new().unwrap();
    let mut sockets = Vec::with_capacity(n);
    let mut dests = Vec::with_capacity(n);
    for i in 0..n {
        let mut s = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        dests.push(SockaddrStorage::from(s.local_addr().unwrap()));
        poll.registry().register(&mut s, Token(i), Interest::READABLE).unwrap();
        sockets.push(s);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let counting = Arc::new(AtomicBool::new(false));
    let receiver = {
        let (stop, received, counting) = (stop.clone(), received.clone(), counting.clone());
        std::thread::spawn(move || {
            let mut events = Events::with_capacity(1024);
            let mut buf = vec![0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                let timeout = match mode.as_str() {
                    "tick" => {
                        std::thread::sleep(Duration::from_millis(1));
                        Duration::ZERO
                    }
                    "spin" => Duration::ZERO,
                    _ => Duration::from_millis(5),
                };
                poll.poll(&mut events, Some(timeout)).unwrap();
                let mut got = 0;
                for e in events.iter() {
                    while sockets[e.token().0].recv_from(&mut buf).is_ok() {
                        got += 1;
                    }
                }
                if counting.load(Ordering::Relaxed) {
                    received.fetch_add(got, Ordering::Relaxed);
                }
            }
        })
    };
    let sender = std::thread::spawn(move || {
        pin(0, server_core);
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        // As the SFU's socket.
        let _ = nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::SndBuf, &(4 << 20));
        let fd = socket.as_raw_fd();
        let data = vec![0x90u8; size];
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(64, None);
        let frame = Duration::from_secs(1) / pps as u32;
        let began = Instant::now();
        let (warm, end) = (began + Duration::from_secs(1), began + Duration::from_secs(1 + secs));
        let (mut sent, mut dropped, mut calls) = (0u64, 0u64, 0u64);
        let (mut t0, mut cpu0) = (began, own_thread_cpu());
        let mut warming = true;
        let mut next = began;
        // One second of warm-up, then the window; a frame every 1/pps s (paced) or back to back.
        while Instant::now() < end {
            if warming && Instant::now() >= warm {
                warming = false;
                (sent, dropped, calls) = (0, 0, 0);
                (t0, cpu0) = (Instant::now(), own_thread_cpu());
                counting.store(true, Ordering::Relaxed);
            }
            // One fan-out: N copies in batches of 64, as the SFU's flush builds them.
            let mut start = 0;
            while start < n {
                let count = (n - start).min(64);
                let slices: [[IoSlice<'_>; 1]; 64] = std::array::from_fn(|_| [IoSlice::new(&data)]);
                let addrs: [Option<SockaddrStorage>; 64] =
                    std::array::from_fn(|i| dests.get(start + i).copied().filter(|_| i < count));
                match sendmmsg(fd, &mut headers, slices[..count].iter(), &addrs[..count], [], MsgFlags::MSG_DONTWAIT) {
                    Ok(r) => {
                        calls += 1;
                        let k = r.count();
                        sent += k as u64;
                        if k == 0 {
                            dropped += count as u64;
                            break;
                        }
                        start += k;
                    }
                    Err(nix::errno::Errno::EINTR) => {}
                    Err(_) => {
                        dropped += 1;
                        start += 1;
                    }
                }
            }
            next += frame;
            let now = Instant::now();
            if paced && next > now {
                std::thread::sleep(next - now);
            }
        }
        let wall = t0.elapsed().as_secs_f64();
        let cpu = (own_thread_cpu() - cpu0).as_secs_f64();
        (sent, dropped, calls, wall, cpu)
    });
    let (sent, dropped, calls, wall, cpu) = sender.join().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    receiver.join().unwrap();
    let got = received.load(Ordering::Relaxed) as f64;
    let dps = sent as f64 / cpu.max(1e-9);
    let loss = 100.0 * (1.0 - got / (sent + dropped).max(1) as f64).max(0.0);
    eprintln!(
        "N={n}: ceiling ({}): {size} B datagrams, {sent} sent ({dropped} EAGAIN-dropped) in {calls} sendmmsg calls over \
         {wall:.2} s; sender thread CPU {:.1} % of its core, {:.2} µs per datagram, {dps:.0} datagrams/s per busy \
         core; receivers got {got} ({loss:.3} % lost)",
        if paced { "paced like the SFU" } else { "back to back" },
        100.0 * cpu / wall,
        1e6 * cpu / sent.max(1) as f64,
    );
    println!("RES n={n} size={size} ceil_dps={dps:.0} ceil_busy={:.3} ceil_loss={loss:.3}", cpu / wall);
}

// ---------------------------------------------------------------------------------------------------------------
// Janus peer: Janus 1.1.2 (VideoRoom over its HTTP API) pinned to the server core; the same generator.

/// Janus's HTTP API: requests on this thread, the session's long-poll on a thread of its own.
struct JanusApi {
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    base: String,
    session: u64,
    next_txn: u64,
    events: std::sync::mpsc::Receiver<Value>,
    /// Events with a transaction nobody has waited for yet.
    pending: HashMap<String, Value>,
    /// Events without a transaction (webrtcup, media, hangup, ...), by kind.
    other: HashMap<String, u64>,
}

impl JanusApi {
    /// Creates a session and starts its long-poll.
    fn connect(base: String) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        let (tx, events) = std::sync::mpsc::channel();
        let mut api =
            Self { rt, http, base, session: 0, next_txn: 0, events, pending: HashMap::new(), other: HashMap::new() };
        let created = api.post("", json!({"janus": "create"})).1;
        api.session = created["data"]["id"].as_u64().expect("session id");
        let url = format!("{}/{}?maxev=50", api.base, api.session);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
            rt.block_on(async move {
                loop {
                    let body = match http.get(&url).send().await {
                        Ok(r) => r.text().await.unwrap_or_default(),
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                    let list = match v {
                        Value::Array(a) => a,
                        Value::Null => continue,
                        v => vec![v],
                    };
                    for e in list {
                        if tx.send(e).is_err() {
                            return;
                        }
                    }
                }
            });
        });
        api
    }

    /// POSTs `body` (with a fresh transaction) to `base` + `path`; returns the transaction and the reply.
    fn post(&mut self, path: &str, mut body: Value) -> (String, Value) {
        self.next_txn += 1;
        let txn = format!("t{}", self.next_txn);
        body["transaction"] = json!(txn);
        let url = format!("{}{path}", self.base);
        let req = self.http.post(&url).body(body.to_string());
        let text = self.rt.block_on(async { req.send().await.unwrap().text().await.unwrap() });
        let reply: Value = serde_json::from_str(&text).unwrap();
        assert_ne!(reply["janus"], "error", "Janus refused {body}: {reply}");
        (txn, reply)
    }

    /// A plugin message to `handle`; `jsep` optional.
    fn message(&mut self, handle: u64, body: Value, jsep: Option<Value>) -> (String, Value) {
        let mut m = json!({"janus": "message", "body": body});
        if let Some(j) = jsep {
            m["jsep"] = j;
        }
        let path = format!("/{}/{handle}", self.session);
        self.post(&path, m)
    }

    fn attach(&mut self) -> u64 {
        let path = format!("/{}", self.session);
        let r = self.post(&path, json!({"janus": "attach", "plugin": "janus.plugin.videoroom"})).1;
        r["data"]["id"].as_u64().expect("handle id")
    }

    /// The asynchronous event answering `txn` (from the long-poll); a plugin error panics.
    fn wait(&mut self, txn: &str) -> Value {
        let e = self.wait_any(txn);
        assert!(e["plugindata"]["data"]["error"].is_null(), "Janus error for {txn}: {e}");
        e
    }

    /// The asynchronous event answering `txn`, a plugin error included.
    fn wait_any(&mut self, txn: &str) -> Value {
        if let Some(v) = self.pending.remove(txn) {
            return v;
        }
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let e = self.events.recv_timeout(left).unwrap_or_else(|_| panic!("no Janus event for {txn}"));
            match e["transaction"].as_str() {
                Some(t) if t == txn => return e,
                Some(t) => {
                    self.pending.insert(t.to_owned(), e);
                }
                None => self.note(&e),
            }
        }
    }

    fn note(&mut self, e: &Value) {
        let kind = e["janus"].as_str().unwrap_or("?").to_owned();
        *self.other.entry(kind).or_default() += 1;
    }

    /// Counts the events that arrived without anyone waiting.
    fn drain(&mut self) {
        while let Ok(e) = self.events.try_recv() {
            if e["transaction"].is_null() {
                self.note(&e);
            }
        }
    }
}

/// Writes Janus's configuration into `dir` and builds the loopback shim; returns the shim's path.
fn janus_setup(dir: &std::path::Path, port: u16) -> Result<std::path::PathBuf, String> {
    let loops = env_num("PODIUM_BENCH_JANUS_EVENT_LOOPS", 1);
    let loops = if loops == 0 { String::new() } else { format!("event_loops = {loops}") };
    let d = dir.to_str().unwrap();
    let files = [
        ("janus.jcfg", include_str!("janus/janus.jcfg").replace("@DIR@", d).replace("@EVENT_LOOPS@", &loops)),
        (
            "janus.transport.http.jcfg",
            include_str!("janus/janus.transport.http.jcfg").replace("@PORT@", &port.to_string()),
        ),
        ("janus.plugin.videoroom.jcfg", include_str!("janus/janus.plugin.videoroom.jcfg").to_owned()),
        ("unloop.c", include_str!("janus/unloop.c").to_owned()),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), text).map_err(|e| e.to_string())?;
    }
    let shim = dir.join("libunloop.so");
    let gcc = Command::new("gcc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&shim)
        .arg(dir.join("unloop.c"))
        .arg("-ldl")
        .status()
        .map_err(|e| format!("gcc (needed for Janus's loopback shim): {e}"))?;
    if !gcc.success() {
        return Err(format!("gcc failed building the loopback shim: {gcc}"));
    }
    Ok(shim)
}

fn janus_peer() {
    let n: usize = env_num("PODIUM_FANOUT_N", 100) as usize;
    let server_core = env_num("PODIUM_BENCH_SERVER_CORE", 0) as usize;
    let load_core = env_num("PODIUM_BENCH_LOAD_CORE", 1) as usize;
    pin(0, load_core);
    let dir = std::env::temp_dir().join(format!("podium-fanout-janus-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let shim = match janus_setup(&dir, port) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("N={n}: Janus skipped: {e}");
            println!("RES n={n} janus_skipped=1");
            let _ = std::fs::remove_dir_all(&dir);
            return;
        }
    };
    let child = Command::new("taskset")
        .args(["-c", &server_core.to_string(), "janus", "-C"])
        .arg(dir.join("janus.jcfg"))
        .arg("-F")
        .arg(&dir)
        .arg("-L")
        .arg(dir.join("janus.log"))
        .arg("-o")
        .env("LD_PRELOAD", &shim)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id().to_string(); // taskset execs janus
    let mut janus = JanusProcess { child, pid: pid.clone(), dir: dir.clone() };
    let base = format!("http://127.0.0.1:{port}/janus");
    // Wait for the HTTP transport.
    let probe = SocketAddr::from(([127, 0, 0, 1], port));
    let t = Instant::now();
    while std::net::TcpStream::connect_timeout(&probe, Duration::from_millis(100)).is_err() {
        if t.elapsed() > Duration::from_secs(20) || janus.child.try_wait().unwrap().is_some() {
            let log = std::fs::read_to_string(dir.join("janus.log")).unwrap_or_default();
            panic!("Janus did not start; its log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut api = JanusApi::connect(base);
    let publisher = api.attach();
    let room = 4242;
    let created = api
        .message(
            publisher,
            json!({"request": "create", "room": room, "description": "podium bench", "publishers": 1,
                   "audiocodec": "opus", "bitrate": 64000, "is_private": false, "permanent": false}),
            None,
        )
        .1;
    assert_eq!(created["plugindata"]["data"]["videoroom"], "created", "room: {created}");

    let mut child = spawn_generator(n, "janus");
    let mut to_child = child.stdin.take().unwrap();
    let from_child = BufReader::new(child.stdout.take().unwrap());
    let mut feed = 0u64;
    let mut handles: HashMap<String, u64> = HashMap::new();
    let t0 = Instant::now();
    let mut connect = Duration::ZERO;
    let mut start: Option<(Instant, Duration, Duration)> = None;
    let mut stop: Option<(Instant, Duration, Duration)> = None;
    for line in from_child.lines() {
        let line = line.unwrap();
        let mut parts = line.splitn(3, ' ');
        match parts.next().unwrap() {
            // The speaker's offer: join as publisher, then publish with it.
            "OFFER" => {
                let i = parts.next().unwrap();
                let sdp = parts.next().unwrap().replace('|', "\r\n");
                let (txn, _) = api.message(
                    publisher,
                    json!({"request": "join", "ptype": "publisher", "room": room, "display": "speaker"}),
                    None,
                );
                let joined = api.wait(&txn);
                feed = joined["plugindata"]["data"]["id"].as_u64().expect("feed id");
                let (txn, _) = api.message(
                    publisher,
                    json!({"request": "publish", "audiocodec": "opus", "bitrate": 64000}),
                    Some(json!({"type": "offer", "sdp": sdp, "trickle": false})),
                );
                let ev = api.wait(&txn);
                let answer = ev["jsep"]["sdp"].as_str().unwrap_or_else(|| panic!("no answer: {ev}"));
                writeln!(to_child, "ANSWER {i} {}", answer.replace("\r\n", "|")).unwrap();
                to_child.flush().unwrap();
            }
            // A listener: subscribe; Janus offers, the listener answers.
            "JOIN" => {
                let i = parts.next().unwrap().to_owned();
                let h = api.attach();
                // Janus registers the feed only once the publisher's media is up, which can come a moment after
                // the speaker's ICE: "No such feed" (error 428) then means "not yet", so ask again, for a while.
                let mut tries = 0;
                let ev = loop {
                    let (txn, _) = api.message(
                        h,
                        json!({"request": "join", "ptype": "subscriber", "room": room, "streams": [{"feed": feed}]}),
                        None,
                    );
                    let ev = api.wait_any(&txn);
                    tries += 1;
                    if ev["plugindata"]["data"]["error_code"].as_u64() == Some(428) && tries < 100 {
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                    let data = &ev["plugindata"]["data"];
                    assert!(data["error"].is_null(), "Janus error for the subscriber {i}: {ev}");
                    break ev;
                };
                let offer = ev["jsep"]["sdp"].as_str().unwrap_or_else(|| panic!("no offer: {ev}"));
                writeln!(to_child, "OFFER {i} {}", offer.replace("\r\n", "|")).unwrap();
                to_child.flush().unwrap();
                handles.insert(i, h);
            }
            "ANSWER" => {
                let i = parts.next().unwrap();
                let sdp = parts.next().unwrap().replace('|', "\r\n");
                let h = handles[i];
                api.message(
                    h,
                    json!({"request": "start"}),
                    Some(json!({"type": "answer", "sdp": sdp, "trickle": false})),
                );
            }
            "CONNECTED" => connect = t0.elapsed(),
            "START" => start = Some((Instant::now(), process_cpu_of(&pid), tasks_cpu_of(&pid))),
            "STOP" => stop = Some((Instant::now(), process_cpu_of(&pid), tasks_cpu_of(&pid))),
            "END" => {
                let kv = end_fields(parts);
                let ((a, ca, ta), (b, cb, tb)) = (start.take().unwrap(), stop.take().unwrap());
                let threads = (tb.saturating_sub(ta)).as_secs_f64();
                let wall = b.duration_since(a).as_secs_f64();
                let cpu = (cb - ca).as_secs_f64();
                let got = kv["got"];
                // Listeners that stayed to the end (all of them unless `PODIUM_BENCH_CHURN` removed some).
                let kept = kv.get("kept").copied().unwrap_or(n as f64);
                let expected = kv["sent"] * kept;
                let loss = 100.0 * (1.0 - got / expected).max(0.0);
                api.drain();
                eprintln!(
                    "N={n}: Janus ({}): connected all in {connect:.1?}; window {wall:.2} s; got {got} of {expected} \
                     ({:.1} B each); min per listener {}; Janus process CPU {:.1} % of a core, {:.2} µs per forwarded \
                     packet (its threads' schedstat: {:.2} µs); generator CPU {:.0} %; events without a transaction: {:?}",
                    match env_num("PODIUM_BENCH_JANUS_EVENT_LOOPS", 1) {
                        0 => "thread per handle".to_owned(),
                        l => format!("event_loops = {l}"),
                    },
                    kv["rtp_len"],
                    kv["min"],
                    100.0 * cpu / wall,
                    1e6 * cpu / got.max(1.0),
                    1e6 * threads / got.max(1.0),
                    kv["gen_cpu"],
                    api.other,
                );
                println!(
                    "RES n={n} janus_us={:.3} janus_loss={loss:.3} janus_fwd={:.0} janus_busy={:.3} janus_len={:.1}",
                    1e6 * cpu / got.max(1.0),
                    got / wall,
                    cpu / wall,
                    kv["rtp_len"],
                );
                break;
            }
            other => panic!("generator said {other:?}"),
        }
    }
    let _ = child.wait();
    let _ = api.post(&format!("/{}", api.session), json!({"janus": "destroy"}));
    drop(janus);
}

/// The Janus process: stopped (and its directory removed) however the run ends, so that no Janus is left on the
/// SFU core holding its ports. After a panic the directory, with `janus.log`, is kept.
struct JanusProcess {
    child: std::process::Child,
    pid: String,
    dir: std::path::PathBuf,
}

impl Drop for JanusProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.pid]).status();
        // Shutdown takes a few seconds; the next run must not find its ports taken.
        let t = Instant::now();
        while matches!(self.child.try_wait(), Ok(None)) {
            if t.elapsed() > Duration::from_secs(15) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if std::thread::panicking() {
            eprintln!("Janus's configuration and log are kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Generator: the speaker and N counting listeners, one thread, one socket per client.

struct Client {
    rtc: Rtc,
    socket: UdpSocket,
    addr: SocketAddr,
    next: Instant,
    connected: bool,
    /// Removed by the churn (`PODIUM_BENCH_CHURN`): no longer read or counted.
    gone: bool,
    got: u64,
    /// Bytes of the RTP datagrams counted in `got`.
    got_bytes: u64,
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

/// The generator's event loop state: the clients' sockets and timers.
struct Io {
    poll: Poll,
    events: Events,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    buf: Vec<u8>,
}

impl Io {
    /// Feeds the due timeouts to their clients.
    fn timers(&mut self, clients: &mut [Client], now: Instant) {
        while let Some(Reverse((t, i))) = self.timers.peek().copied() {
            if t > now {
                break;
            }
            self.timers.pop();
            let c = &mut clients[i];
            if c.next != t || c.gone {
                continue;
            }
            let _ = c.rtc.handle_input(Input::Timeout(now));
            let next = pump(c, now);
            self.timers.push(Reverse((next, i)));
        }
    }

    /// Waits up to `timeout` in epoll, then reads every ready socket: RTP is counted, the rest goes to its `Rtc`.
    fn receive(&mut self, clients: &mut [Client], timeout: Duration) {
        self.poll.poll(&mut self.events, Some(timeout)).unwrap();
        for e in self.events.iter() {
            let i = e.token().0;
            let c = &mut clients[i];
            while let Ok((len, from)) = c.socket.recv_from(&mut self.buf) {
                if is_rtp(&self.buf[..len]) {
                    c.got += 1;
                    c.got_bytes += len as u64;
                    continue;
                }
                let now = Instant::now();
                if let Ok(r) = Receive::new(Protocol::Udp, from, c.addr, &self.buf[..len]) {
                    let _ = c.rtc.handle_input(Input::Receive(now, r));
                }
                let next = pump(c, now);
                self.timers.push(Reverse((next, i)));
            }
        }
        // Stale timer entries pile up; rebuild when the heap grows large.
        if self.timers.len() > 8 * clients.len() + 64 {
            self.timers = clients.iter().enumerate().map(|(i, c)| Reverse((c.next, i))).collect();
        }
    }
}

fn generator() {
    let n: usize = env_num("PODIUM_FANOUT_N", 1000) as usize;
    let secs = env_num("PODIUM_BENCH_SECS", 10);
    let pps = env_num("PODIUM_BENCH_PPS", 50).max(1);
    let payload = env_num("PODIUM_BENCH_PAYLOAD", 80) as usize;
    let mode = env_str("PODIUM_BENCH_GEN", "tick");
    // `janus`: listeners are offered to (JOIN i → OFFER i → ANSWER i) and the speaker connects before them.
    let janus = env_str("PODIUM_FANOUT_PEER", "podium") == "janus";
    pin(0, env_num("PODIUM_BENCH_LOAD_CORE", 1) as usize);
    let stdin = std::io::stdin();
    let mut answers = stdin.lock().lines();
    let mut out = std::io::stdout().lock();
    let mut read_sdp = || answers.next().unwrap().unwrap().splitn(3, ' ').nth(2).unwrap().replace('|', "\r\n");

    let mut io = Io {
        poll: Poll::new().unwrap(),
        events: Events::with_capacity(1024),
        timers: BinaryHeap::new(),
        buf: vec![0u8; 2048],
    };
    let mut clients = Vec::with_capacity(n + 1);
    let mut speaker_mid: Option<Mid> = None;
    for i in 0..=n {
        let mut socket = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = socket.local_addr().unwrap();
        let mut rtc = RtcConfig::new().clear_codecs().enable_opus(true, false).build(Instant::now());
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        if janus && i > 0 {
            writeln!(out, "JOIN {i}").unwrap();
            out.flush().unwrap();
            let offer = SdpOffer::from_sdp_string(&read_sdp()).unwrap();
            let answer = rtc.sdp_api().accept_offer(offer).unwrap();
            writeln!(out, "ANSWER {i} {}", answer.to_sdp_string().replace("\r\n", "|")).unwrap();
            out.flush().unwrap();
        } else {
            let dir = if i == 0 { Direction::SendOnly } else { Direction::RecvOnly };
            let mut api = rtc.sdp_api();
            let mid = api.add_media(MediaKind::Audio, dir, None, None, None);
            let (offer, pending) = api.apply().unwrap();
            if i == 0 {
                speaker_mid = Some(mid);
            }
            writeln!(out, "OFFER {i} {}", offer.to_sdp_string().replace("\r\n", "|")).unwrap();
            out.flush().unwrap();
            let answer = SdpAnswer::from_sdp_string(&read_sdp()).unwrap();
            rtc.sdp_api().accept_answer(pending, answer).unwrap();
        }
        io.poll.registry().register(&mut socket, Token(i), Interest::READABLE).unwrap();
        let now = Instant::now();
        clients.push(Client {
            rtc,
            socket,
            addr,
            next: now,
            connected: false,
            gone: false,
            got: 0,
            got_bytes: 0,
            sent_rtp: 0,
        });
        io.timers.push(Reverse((now, i)));
        if janus {
            // Janus subscribes listeners to a feed that is up: connect the speaker first; keep everyone's ICE and
            // DTLS going while the others join.
            let t = Instant::now();
            loop {
                io.timers(&mut clients, Instant::now());
                let wait = if i == 0 { Duration::from_millis(2) } else { Duration::ZERO };
                io.receive(&mut clients, wait);
                if i > 0 || clients[0].connected {
                    break;
                }
                assert!(t.elapsed() < Duration::from_secs(30), "the speaker did not connect to Janus");
            }
        }
    }

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
    // The listeners removed halfway through the window (`PODIUM_BENCH_CHURN`): odd-numbered first, then even.
    let churn = churned(n);
    let churn_at = warmup + secs * pps / 2;
    loop {
        let now = Instant::now();
        io.timers(&mut clients, now);
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
                    c.got_bytes = 0;
                    c.sent_rtp = 0;
                }
                gen_cpu0 = process_cpu();
                window_start = now;
            }
            if seq == churn_at && !churn.is_empty() {
                writeln!(out, "CHURN").unwrap();
                out.flush().unwrap();
                for &i in &churn {
                    clients[i].gone = true;
                    io.poll.registry().deregister(&mut clients[i].socket).unwrap();
                }
            }
            let sp = &mut clients[0];
            let w = sp.rtc.writer(speaker_mid.unwrap()).unwrap();
            let pt = w.payload_params().find(|p| p.spec().codec == Codec::Opus).unwrap().pt();
            w.audio_level(-30, true)
                .write(pt, now, MediaTime::new(seq * 960, Frequency::FORTY_EIGHT_KHZ), data.clone())
                .unwrap();
            let _ = sp.rtc.handle_input(Input::Timeout(now));
            let next = pump(sp, now);
            io.timers.push(Reverse((next, 0)));
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
        let mut wake = io.timers.peek().map_or(now + Duration::from_millis(5), |Reverse((t, _))| *t);
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
        io.receive(&mut clients, timeout);
    }
    let gen_cpu = (process_cpu() - gen_cpu0).as_secs_f64() / window_start.elapsed().as_secs_f64();
    let kept = || clients[1..].iter().filter(|c| !c.gone);
    let got: u64 = kept().map(|c| c.got).sum();
    let got_bytes: u64 = kept().map(|c| c.got_bytes).sum();
    let min = kept().map(|c| c.got).min().unwrap_or(0);
    let rtp_out = clients[0].sent_rtp;
    writeln!(
        out,
        "END sent={window_sent} rtp_out={rtp_out} got={got} min={min} gen_cpu={:.1} rtp_len={:.1} kept={}",
        100.0 * gen_cpu,
        got_bytes as f64 / got.max(1) as f64,
        kept().count()
    )
    .unwrap();
    out.flush().unwrap();
}

/// The listeners `PODIUM_BENCH_CHURN` removes: that percentage of `1..=n`, odd-numbered first.
fn churned(n: usize) -> Vec<usize> {
    let k = (n * env_num("PODIUM_BENCH_CHURN", 0).min(100) as usize) / 100;
    (1..=n).step_by(2).chain((2..=n).step_by(2)).take(k).collect()
}
