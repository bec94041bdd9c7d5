//! Fan-out measurement (ignored by default): one speaker, N listeners, real str0m clients over loopback.
//!
//! `PODIUM_BENCH_LISTENERS=500 PODIUM_BENCH_WORKERS=2 cargo test --release -p podium-media --test bench \
//!  -- --ignored --nocapture`
//!
//! All clients run on one driver thread (mio), so the SFU threads' CPU can be read apart from the load
//! generator's (from /proc/self/task/*/stat, threads named `podium-media-*`).

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use podium_media::{Media, MediaConfig};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

struct C {
    rtc: Rtc,
    socket: UdpSocket,
    addr: SocketAddr,
    next: Instant,
    connected: bool,
    got: u64,
    send_mid: Option<Mid>,
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// utime+stime of the SFU worker threads, in seconds.
fn sfu_cpu() -> f64 {
    let mut ticks = 0u64;
    for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else { continue };
        let Some(open) = stat.find('(') else { continue };
        let Some(close) = stat.rfind(')') else { continue };
        if !stat[open + 1..close].starts_with("podium-media") {
            continue;
        }
        let f: Vec<&str> = stat[close + 2..].split(' ').collect();
        ticks += f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    }
    ticks as f64 / 100.0
}

fn pump(c: &mut C, now: Instant) {
    loop {
        match c.rtc.poll_output() {
            Ok(Output::Timeout(t)) => {
                c.next = t;
                break;
            }
            Ok(Output::Transmit(t)) => {
                let _ = c.socket.send_to(&t.contents, t.destination);
            }
            Ok(Output::Event(Event::Connected)) => c.connected = true,
            Ok(Output::Event(Event::MediaData(_))) => c.got += 1,
            Ok(Output::Event(_)) => {}
            Err(_) => {
                c.next = now + Duration::from_millis(10);
                break;
            }
        }
    }
}

fn read_all(c: &mut C, buf: &mut [u8]) {
    while let Ok((len, from)) = c.socket.recv_from(buf) {
        let now = Instant::now();
        if let Ok(r) = Receive::new(Protocol::Udp, from, c.addr, &buf[..len]) {
            let _ = c.rtc.handle_input(Input::Receive(now, r));
        }
        pump(c, now);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
#[ignore = "measurement; run explicitly in release mode"]
async fn bench_fanout() {
    let n = env("PODIUM_BENCH_LISTENERS", 300);
    let workers = env("PODIUM_BENCH_WORKERS", 2);
    let secs = env("PODIUM_BENCH_SECS", 5) as u64;
    let (media, mut ev) = Media::start(MediaConfig { workers, ..MediaConfig::default() }).unwrap();
    tokio::spawn(async move { while ev.recv().await.is_some() {} });
    media.set_publish("bench", "speaker", true);

    let mut clients = Vec::with_capacity(n + 1);
    let t0 = Instant::now();
    for i in 0..=n {
        let socket = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = socket.local_addr().unwrap();
        let mut rtc = RtcConfig::new().clear_codecs().enable_opus(true, false).build(Instant::now());
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        let dir = if i == 0 { Direction::SendOnly } else { Direction::RecvOnly };
        let mut api = rtc.sdp_api();
        let mid = api.add_media(MediaKind::Audio, dir, None, None, None);
        let (offer, pending) = api.apply().unwrap();
        let who = if i == 0 { "speaker".to_owned() } else { format!("l{i}") };
        let answer = media.offer("bench", &who, &offer.to_sdp_string()).await.unwrap();
        rtc.sdp_api().accept_answer(pending, str0m::change::SdpAnswer::from_sdp_string(&answer).unwrap()).unwrap();
        clients.push(C {
            rtc,
            socket,
            addr,
            next: Instant::now(),
            connected: false,
            got: 0,
            send_mid: (i == 0).then_some(mid),
        });
    }
    let setup = t0.elapsed();

    let result = tokio::task::spawn_blocking(move || {
        let mut poll = Poll::new().unwrap();
        for (i, c) in clients.iter_mut().enumerate() {
            poll.registry().register(&mut c.socket, Token(i), Interest::READABLE).unwrap();
        }
        let mut events = Events::with_capacity(1024);
        let mut buf = vec![0u8; 2000];
        let start = Instant::now();
        let mut connected_at = None;
        let mut measure: Option<(Instant, f64, u64)> = None;
        let mut next_frame = Instant::now();
        let mut seq = 0u64;
        let mut sent = 0u64;
        loop {
            let now = Instant::now();
            for c in clients.iter_mut() {
                if c.next <= now {
                    let _ = c.rtc.handle_input(Input::Timeout(now));
                    pump(c, now);
                }
            }
            if connected_at.is_none() && clients.iter().all(|c| c.connected) {
                connected_at = Some(start.elapsed());
            }
            if connected_at.is_none() && start.elapsed() > Duration::from_secs(60) {
                panic!("not all connected: {}", clients.iter().filter(|c| c.connected).count());
            }
            if connected_at.is_some() && now >= next_frame {
                if measure.is_none() && seq == 50 {
                    measure = Some((now, sfu_cpu(), clients[1..].iter().map(|c| c.got).sum()));
                    sent = 0;
                }
                let sp = &mut clients[0];
                let mid = sp.send_mid.unwrap();
                let w = sp.rtc.writer(mid).unwrap();
                let pt = w.payload_params().find(|p| p.spec().codec == Codec::Opus).unwrap().pt();
                let data = vec![7u8; 80];
                w.audio_level(-30, true)
                    .write(pt, now, MediaTime::new(seq * 960, Frequency::FORTY_EIGHT_KHZ), data)
                    .unwrap();
                let _ = sp.rtc.handle_input(Input::Timeout(now));
                pump(sp, now);
                seq += 1;
                sent += 1;
                next_frame += Duration::from_millis(20);
                if let Some((t, _, _)) = measure
                    && now.duration_since(t) >= Duration::from_secs(secs)
                {
                    break;
                }
            }
            let wake = clients.iter().map(|c| c.next).min().unwrap().min(next_frame);
            let timeout = wake.saturating_duration_since(Instant::now()).min(Duration::from_millis(5));
            poll.poll(&mut events, Some(timeout)).unwrap();
            for e in events.iter() {
                read_all(&mut clients[e.token().0], &mut buf);
            }
        }
        // Let the last packets land.
        let tail = Instant::now() + Duration::from_millis(200);
        while Instant::now() < tail {
            poll.poll(&mut events, Some(Duration::from_millis(5))).unwrap();
            for e in events.iter() {
                read_all(&mut clients[e.token().0], &mut buf);
            }
        }
        let (t, cpu0, got0) = measure.unwrap();
        let wall = t.elapsed().as_secs_f64() - 0.2;
        let cpu = sfu_cpu() - cpu0;
        let got: u64 = clients[1..].iter().map(|c| c.got).sum::<u64>() - got0;
        (connected_at.unwrap(), wall, cpu, got, sent)
    })
    .await
    .unwrap();
    let (connect, wall, cpu, got, sent) = result;
    let expected = sent * n as u64;
    let st = media.stats();
    println!(
        "listeners={n} workers={workers} setup={setup:?} connect_all={connect:?} window={wall:.2}s \
         delivered={got}/{expected} ({:.2} %) fwd_pkt/s={:.0} sfu_cpu={:.1} % of one core \
         ({:.2} us per forwarded packet) stats={st:?}",
        100.0 * got as f64 / expected as f64,
        got as f64 / wall,
        100.0 * cpu / wall,
        1e6 * cpu / got.max(1) as f64,
    );
    media.shutdown();
}
