//! Filler audio: an Ogg Opus file played into a room as a virtual publisher, heard by real str0m clients, and
//! stopped by real speech.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Client, Log, T, collect, start, talk, wait_for};
use ogg::writing::{PacketWriteEndInfo, PacketWriter};
use podium_media::{FillerSource, FillerStopReason, MediaError, MediaEvent};
use str0m::media::Direction;

/// TOC byte of a CELT fullband 20 ms mono Opus packet with one frame (RFC 6716 §3.1: config 31, code 0).
const TOC: u8 = 31 << 3;

/// The fixture's Opus packets: the classic silence frame, tagged with its index in a trailing byte.
fn fixture_packets(n: u8) -> Vec<Vec<u8>> {
    (0..n).map(|i| vec![TOC, 0xff, 0xfe, i]).collect()
}

/// An Ogg Opus file (RFC 7845) made with the `ogg` crate's writer: OpusHead, OpusTags, then `packets`.
fn ogg_opus(packets: &[Vec<u8>]) -> Vec<u8> {
    let serial = 0x5eed;
    let mut w = PacketWriter::new(Vec::new());
    let mut head = b"OpusHead".to_vec();
    head.extend_from_slice(&[1, 1]); // version 1, mono
    head.extend_from_slice(&312u16.to_le_bytes()); // pre-skip
    head.extend_from_slice(&48_000u32.to_le_bytes());
    head.extend_from_slice(&0u16.to_le_bytes()); // output gain
    head.push(0); // channel mapping family 0
    w.write_packet(head, serial, PacketWriteEndInfo::EndPage, 0).unwrap();
    let mut tags = b"OpusTags".to_vec();
    tags.extend_from_slice(&6u32.to_le_bytes());
    tags.extend_from_slice(b"podium");
    tags.extend_from_slice(&0u32.to_le_bytes());
    w.write_packet(tags, serial, PacketWriteEndInfo::EndPage, 0).unwrap();
    let mut gp = 0;
    for (i, p) in packets.iter().enumerate() {
        gp += 960;
        let end = if i + 1 == packets.len() { PacketWriteEndInfo::EndStream } else { PacketWriteEndInfo::NormalPacket };
        w.write_packet(p.clone(), serial, end, gp).unwrap();
    }
    w.into_inner()
}

fn filler_count(c: &Client) -> usize {
    c.count_from(TOC)
}

fn stopped(log: &Log, room: &str, why: FillerStopReason) -> bool {
    log.lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e, MediaEvent::FillerStopped { room: r, reason } if r == room && *reason == why))
}

fn started(log: &Log, room: &str) -> bool {
    log.lock().unwrap().iter().any(|e| matches!(e, MediaEvent::FillerStarted { room: r } if r == room))
}

#[test]
fn loads_the_fixture() {
    let packets = fixture_packets(10);
    let bytes = ogg_opus(&packets);
    assert!(bytes.len() < 50 * 1024);
    let src = FillerSource::from_ogg(&bytes).unwrap();
    assert_eq!(src.packets(), 10);
    assert!(src.packet_data().eq(packets.iter().map(|p| &p[..])));
    assert_eq!(src.duration(), Duration::from_millis(200));
}

#[test]
fn refuses_non_opus_malformed_and_oversized_files() {
    let refused = |bytes: &[u8]| matches!(FillerSource::from_ogg(bytes), Err(MediaError::BadFiller(_)));
    assert!(refused(b""));
    assert!(refused(b"RIFF\0\0\0\0WAVEfmt not ogg at all"));
    // Ogg, but Vorbis.
    let mut w = PacketWriter::new(Vec::new());
    w.write_packet(b"\x01vorbis\0\0\0\0\x01\x44\xac\0\0".to_vec(), 1, PacketWriteEndInfo::EndStream, 0).unwrap();
    let vorbis = w.into_inner();
    assert!(refused(&vorbis));
    let err = FillerSource::from_ogg(&vorbis).unwrap_err().to_string();
    assert!(err.contains("not Ogg Opus"), "{err}");
    // Opus headers but no audio.
    assert!(refused(&ogg_opus(&[])));
    // A malformed Opus packet (code 3 with zero frames), and an empty one.
    let mut bad = fixture_packets(3);
    bad[1] = vec![TOC | 3, 0];
    assert!(refused(&ogg_opus(&bad)));
    bad[1] = vec![];
    assert!(refused(&ogg_opus(&bad)));
    // A packet too large for one datagram.
    bad[1] = vec![TOC; 1500];
    assert!(refused(&ogg_opus(&bad)));
    // Corrupted page bytes (the CRC no longer matches) and truncations: refused or shorter, never a panic.
    let good = ogg_opus(&fixture_packets(50));
    let mut corrupt = good.clone();
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 0x55;
    let _ = FillerSource::from_ogg(&corrupt);
    for cut in [1, 10, 27, 40, 100, good.len() / 2, good.len() - 1] {
        if let Ok(s) = FillerSource::from_ogg(&good[..cut]) {
            assert!(s.packets() < 50);
        }
    }
    // Files over the bound are refused before being read (a sparse file: no disk used).
    let dir = std::env::temp_dir().join(format!("podium-filler-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let big = dir.join("big.opus");
    std::fs::File::create(&big).unwrap().set_len(podium_media::MAX_FILLER_BYTES + 1).unwrap();
    let err = FillerSource::open(&big).unwrap_err();
    assert!(matches!(err, MediaError::BadFiller(ref m) if m.contains("larger than")), "{err}");
    let ok = dir.join("ok.opus");
    std::fs::write(&ok, ogg_opus(&fixture_packets(4))).unwrap();
    assert_eq!(FillerSource::open(&ok).unwrap().packets(), 4);
    assert!(matches!(FillerSource::open(dir.join("missing.opus")), Err(MediaError::Io(_))));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The listener got the file's packets, in the file's (looping) order.
fn assert_file_order(c: &Client, n: u8) {
    let got: Vec<Vec<u8>> = c.got().into_iter().map(|g| g.data).filter(|d| d.first() == Some(&TOC)).collect();
    assert!(!got.is_empty());
    for d in &got {
        assert!(d.len() == 4 && d[1..3] == [0xff, 0xfe] && d[3] < n, "not a packet of the file: {d:?}");
    }
    let in_order = got.windows(2).filter(|w| w[1][3] == (w[0][3] + 1) % n).count();
    assert!(in_order * 10 >= (got.len() - 1) * 9, "{in_order} of {} in order", got.len() - 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filler_is_paced_heard_and_stopped() {
    let (media, ev) = start(2);
    let log = collect(ev);
    let src = FillerSource::from_ogg(&ogg_opus(&fixture_packets(7))).unwrap();
    let bob = Client::new();
    bob.join(&media, "r", "bob", Direction::RecvOnly).await;
    wait_for("bob connected", T, || bob.connected()).await;

    media.play_filler("r", &src).unwrap();
    wait_for("FillerStarted", T, || started(&log, "r")).await;
    wait_for("bob hears the filler", T, || filler_count(&bob) >= 5).await;
    // Paced by the file: ~50 packets a second (generous margins: a loaded 2-core machine).
    let (c0, t0) = (filler_count(&bob), Instant::now());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rate = (filler_count(&bob) - c0) as f64 / t0.elapsed().as_secs_f64();
    assert!((35.0..=65.0).contains(&rate), "{rate} packets/s");
    assert_file_order(&bob, 7);
    assert!(log.lock().unwrap().iter().any(|e| matches!(e, MediaEvent::Tracks { identity, tracks, .. }
        if identity == "bob" && tracks.iter().any(|(_, s)| s.as_deref() == Some(podium_media::FILLER_IDENTITY)))));

    // stop_filler: the event, and no more packets.
    media.stop_filler("r");
    wait_for("FillerStopped(Stopped)", T, || stopped(&log, "r", FillerStopReason::Stopped)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let c1 = filler_count(&bob);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(filler_count(&bob) <= c1 + 1, "still playing: {} more", filler_count(&bob) - c1);

    // Again, then remove_room stops it.
    let c2 = filler_count(&bob);
    media.play_filler("r", &src).unwrap();
    wait_for("bob hears it again", T, || filler_count(&bob) >= c2 + 10).await;
    media.remove_room("r");
    wait_for("FillerStopped(Removed)", T, || stopped(&log, "r", FillerStopReason::Removed)).await;
    let started_n = log.lock().unwrap().iter().filter(|e| matches!(e, MediaEvent::FillerStarted { .. })).count();
    let stopped_n = log.lock().unwrap().iter().filter(|e| matches!(e, MediaEvent::FillerStopped { .. })).count();
    assert_eq!((started_n, stopped_n), (2, 2));
    media.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speech_on_another_worker_stops_the_filler_and_takes_the_slot() {
    let (media, ev) = start(2);
    let log = collect(ev);
    let src = FillerSource::from_ogg(&ogg_opus(&fixture_packets(5))).unwrap();
    // bob alone: the filler is hosted on his worker; alice, the publisher, lands on the other one.
    let bob = Client::new();
    bob.join(&media, "r", "bob", Direction::RecvOnly).await;
    media.play_filler("r", &src).unwrap();
    media.set_publish("r", "alice", true);
    let alice = Client::new();
    alice.join(&media, "r", "alice", Direction::SendRecv).await;
    // carol joins while the filler plays: she hears it too.
    let carol = Client::new();
    carol.join(&media, "r", "carol", Direction::RecvOnly).await;
    wait_for("connected", T, || bob.connected() && alice.connected() && carol.connected()).await;
    wait_for("bob and carol hear the filler", T, || filler_count(&bob) >= 20 && filler_count(&carol) >= 20).await;
    assert_file_order(&carol, 5);
    // The publisher hears it as well (it is any listener's audio), but never itself.
    wait_for("alice hears the filler", T, || filler_count(&alice) >= 5).await;
    assert!(!stopped(&log, "r", FillerStopReason::Speech));

    // alice speaks (RFC 6464 level -20 dBov): the filler stops at once and she gets the one slot bob has.
    talk(&alice, 1, 40).await;
    wait_for("FillerStopped(Speech)", T, || stopped(&log, "r", FillerStopReason::Speech)).await;
    wait_for("bob and carol hear alice", T, || bob.count_from(1) >= 30 && carol.count_from(1) >= 30).await;
    let (b, c) = (filler_count(&bob), filler_count(&carol));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(filler_count(&bob) <= b + 1 && filler_count(&carol) <= c + 1, "the filler went on");
    // No more than a few filler packets after alice's first frame (the stop crossed workers).
    let got = bob.got();
    let first_alice = got.iter().position(|g| g.data.first() == Some(&1)).unwrap();
    let after = got[first_alice..].iter().filter(|g| g.data.first() == Some(&TOC)).count();
    assert!(after <= 3, "{after} filler packets after speech");
    // stop_filler after it stopped: no second event.
    media.stop_filler("r");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stops = log.lock().unwrap().iter().filter(|e| matches!(e, MediaEvent::FillerStopped { .. })).count();
    assert_eq!(stops, 1);
    media.shutdown();
}
