//! Writes seed inputs for the two media fuzz targets from a real exchange: a str0m client (as a browser would be)
//! and a str0m server configured like the SFU's worker (ICE-lite, RTP mode, Opus), talking in memory until connected, with a few Opus
//! frames sent. Every client→server datagram is recorded (STUN checks, DTLS flights, SRTP, SRTCP).
//!
//! `cargo run -p podium-fuzz --example seed_corpus -- fuzz/corpus` writes `sdp_offer/seed-*` (the client's
//! offers) and `media_datagram/seed-*` (one file per recorded datagram and one with the whole sequence, in the
//! target's format: flags byte, then `[header, len lo, len hi, bytes]` per datagram). Run `cargo fuzz cmin`
//! afterwards to keep the corpus small.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

/// Target format of one datagram from the client's (bound) address, arriving right away.
fn framed(data: &[u8]) -> Vec<u8> {
    let len = u16::try_from(data.len()).unwrap();
    let mut v = vec![0x80];
    v.extend_from_slice(&len.to_le_bytes());
    v.extend_from_slice(data);
    v
}

/// Sends every pending transmit of `from` into `to`; returns the datagrams.
fn pump(from: &mut Rtc, to: &mut Rtc, now: Instant) -> (Vec<Vec<u8>>, bool) {
    let mut sent = Vec::new();
    let mut connected = false;
    loop {
        match from.poll_output().unwrap() {
            Output::Transmit(t) => {
                let data = t.contents.to_vec();
                let r = Receive::new(Protocol::Udp, t.source, t.destination, &data).unwrap();
                to.handle_input(Input::Receive(now, r)).unwrap();
                sent.push(data);
            }
            Output::Event(Event::Connected) => connected = true,
            Output::Event(_) => {}
            Output::Timeout(_) => return (sent, connected),
        }
    }
}

fn main() {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "fuzz/corpus".into()));
    str0m::crypto::from_feature_flags().install_process_default();
    let client_addr: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let server_addr: SocketAddr = "127.0.0.1:50000".parse().unwrap();
    let mut now = Instant::now();
    let mut client = RtcConfig::new().clear_codecs().enable_opus(true, false).build(now);
    client.add_local_candidate(Candidate::host(client_addr, "udp").unwrap());
    let mut server =
        RtcConfig::new().set_ice_lite(true).set_rtp_mode(true).clear_codecs().enable_opus(true, false).build(now);
    server.add_local_candidate(Candidate::host(server_addr, "udp").unwrap());

    let mut api = client.sdp_api();
    let mid = api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    let (offer, pending) = api.apply().unwrap();
    let offer_sdp = offer.to_sdp_string();
    std::fs::write(out.join("sdp_offer/seed-str0m-sendrecv"), &offer_sdp).unwrap();
    let answer = server.sdp_api().accept_offer(offer).unwrap();
    client.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&answer.to_sdp_string()).unwrap()).unwrap();

    let mut recorded = Vec::new();
    let mut connected = false;
    for i in 0..400u64 {
        now += Duration::from_millis(10);
        client.handle_input(Input::Timeout(now)).unwrap();
        server.handle_input(Input::Timeout(now)).unwrap();
        let (sent, c1) = pump(&mut client, &mut server, now);
        recorded.extend(sent);
        let (_, c2) = pump(&mut server, &mut client, now);
        connected |= c1 || c2;
        if connected && i % 2 == 0 {
            let Some(w) = client.writer(mid) else { continue };
            let pt = w.payload_params().find(|p| p.spec().codec == Codec::Opus).map(|p| p.pt()).unwrap();
            let time = MediaTime::new(i * 960, Frequency::FORTY_EIGHT_KHZ);
            w.audio_level(-20, true).write(pt, now, time, vec![0x78; 60]).unwrap();
        }
        if recorded.len() > 40 {
            break;
        }
    }
    assert!(connected, "the seed exchange did not connect");
    let dir = out.join("media_datagram");
    let mut all = vec![3u8];
    for (i, d) in recorded.iter().enumerate() {
        let mut one = vec![3u8];
        one.extend(framed(d));
        std::fs::write(dir.join(format!("seed-{i:02}")), one).unwrap();
        all.extend(framed(d));
    }
    std::fs::write(dir.join("seed-all"), all).unwrap();
    println!("{} datagrams recorded", recorded.len());
}
