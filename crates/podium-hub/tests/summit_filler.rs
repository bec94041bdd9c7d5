//! A summit stage's filler, reconciled by the room's media hub with the stage control record, against a real SFU
//! and a `redis-server` this test starts: a new `filler` value plays its Ogg Opus file once (not again every
//! second), clearing the field stops it, and a file that cannot be played is reported once. What the SFU did is
//! read from the hub's own log of its filler events (this test binary captures every log event of the process).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use podium_hub::Role;
use podium_store::redis_server::RedisServer;
use serde_json::json;
use tracing::field::{Field, Visit};
use tracing::span;

mod common;

use common::{Node, ROOM, TIMEOUT};

/// Every log event of the process, as `LEVEL field=value ...`.
static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// A subscriber that keeps every event in [`LOG`] (spans are not followed).
struct Capture;

struct Line<'a>(&'a mut String);

impl Visit for Line<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, "{}={value:?} ", field.name());
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }
    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut line = format!("{} ", event.metadata().level());
        event.record(&mut Line(&mut line));
        LOG.lock().unwrap().push(line);
    }
    fn enter(&self, _: &span::Id) {}
    fn exit(&self, _: &span::Id) {}
}

fn count(pred: impl Fn(&str) -> bool) -> usize {
    LOG.lock().unwrap().iter().filter(|l| pred(l)).count()
}

/// The SFU's filler events for the test's room, as the hub logs them.
fn filler_events(kind: &str) -> usize {
    count(|l| l.contains("filler event") && l.contains(kind) && l.contains(&format!("room: \"{ROOM}\"")))
}

async fn eventually(what: &str, pred: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !pred() {
        assert!(tokio::time::Instant::now() < deadline, "no {what} in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The Ogg CRC-32 (polynomial 0x04c11db7, no reflection, initial value 0).
fn ogg_crc(bytes: &[u8]) -> u32 {
    let mut crc = 0u32;
    for b in bytes {
        crc ^= u32::from(*b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 { (crc << 1) ^ 0x04c1_1db7 } else { crc << 1 };
        }
    }
    crc
}

/// An Ogg Opus file (RFC 7845): OpusHead, OpusTags, then `n` 20 ms mono silence packets, one packet per page.
fn ogg_opus(n: u8) -> Vec<u8> {
    let mut head = b"OpusHead".to_vec();
    head.extend_from_slice(&[1, 1]);
    head.extend_from_slice(&312u16.to_le_bytes());
    head.extend_from_slice(&48_000u32.to_le_bytes());
    head.extend_from_slice(&0u16.to_le_bytes());
    head.push(0);
    let mut tags = b"OpusTags".to_vec();
    tags.extend_from_slice(&6u32.to_le_bytes());
    tags.extend_from_slice(b"podium");
    tags.extend_from_slice(&0u32.to_le_bytes());
    // TOC byte of a CELT fullband 20 ms mono packet with one frame (config 31, code 0).
    let mut packets = vec![(head, 0u64), (tags, 0)];
    packets.extend((0..n).map(|i| (vec![31 << 3, 0xff, 0xfe, i], 960 * (u64::from(i) + 1))));
    let mut file = Vec::new();
    let last = packets.len() - 1;
    for (seq, (packet, granule)) in packets.into_iter().enumerate() {
        let header_type: u8 = match seq {
            0 => 0x02,
            s if s == last => 0x04,
            _ => 0,
        };
        let mut page = b"OggS".to_vec();
        page.push(0);
        page.push(header_type);
        page.extend_from_slice(&granule.to_le_bytes());
        page.extend_from_slice(&0x5eed_u32.to_le_bytes());
        page.extend_from_slice(&u32::try_from(seq).unwrap().to_le_bytes());
        page.extend_from_slice(&[0; 4]);
        page.push(1);
        page.push(u8::try_from(packet.len()).unwrap());
        page.extend_from_slice(&packet);
        let crc = ogg_crc(&page);
        page[22..26].copy_from_slice(&crc.to_le_bytes());
        file.extend_from_slice(&page);
    }
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_media_hub_plays_each_filler_request_once_and_stops_it_when_cleared() {
    tracing::subscriber::set_global_default(Capture).unwrap();
    let dir = std::env::temp_dir().join(format!("podium-filler-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("break.opus");
    std::fs::write(&file, ogg_opus(50)).unwrap();

    let redis = RedisServer::start();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("podium:{{{ROOM}}}:stagectl");
    let schedule = json!({
        "type": "schedule", "summit": "s1", "stage": "main", "room": ROOM, "backstage": format!("{ROOM}.backstage"),
        "release": 1, "next": [], "server_time_ms": 1
    });
    let filler = format!("t1 {}", file.display());
    let _: i64 = redis::cmd("HSET")
        .arg(&key)
        .arg("schedule")
        .arg(schedule.to_string())
        .arg("filler")
        .arg(&filler)
        .query_async(&mut con)
        .await
        .unwrap();

    let node = Node::start(&redis.url(), |c| {
        c.media.enabled = true;
        c.media.bind = [127, 0, 0, 1].into();
        c.media.port = 0;
        c.media.workers = 1;
    })
    .await;
    // The room's task starts with the join; it runs the room's media and finds the room a stage.
    let (_alice, _) = node.join("alice", Role::Moderator).await;
    eventually("filler start", || filler_events("FillerStarted") == 1).await;
    // The same value is not played again at the next reconciliations.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(filler_events("FillerStarted"), 1, "played once per value");
    assert_eq!(filler_events("FillerStopped"), 0);

    // Cleared: the filler stops.
    let _: i64 = redis::cmd("HDEL").arg(&key).arg("filler").query_async(&mut con).await.unwrap();
    eventually("filler stop", || filler_events("Stopped }") == 1).await;

    // A file that cannot be played: reported once, not at every reconciliation.
    let missing = format!("t2 {}", dir.join("missing.opus").display());
    let _: i64 = redis::cmd("HSET").arg(&key).arg("filler").arg(&missing).query_async(&mut con).await.unwrap();
    let cannot = || count(|l| l.starts_with("WARN") && l.contains("the filler file cannot be played"));
    eventually("the warning about the missing file", || cannot() == 1).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(cannot(), 1, "warned once for the value");

    // A new request for the first file plays it again.
    let again = format!("t3 {}", file.display());
    let _: i64 = redis::cmd("HSET").arg(&key).arg("filler").arg(&again).query_async(&mut con).await.unwrap();
    eventually("the second start", || filler_events("FillerStarted") == 2).await;
    node.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
