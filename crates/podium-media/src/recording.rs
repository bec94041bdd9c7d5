//! Recording: each recorded publisher's Opus packets, as received (the RTP payload, no transcoding), written to Ogg
//! Opus files (RFC 7845) by one writer thread.
//!
//! # Design
//!
//! * **The packet path only queues.** A worker that receives a frame from a peer whose `record` flag is set (the
//!   hub sets it through [`Media::set_record`](crate::Media::set_record): the media plane knows tracks, not roles
//!   or opt-outs) hands it to the writer with `try_send` on one bounded channel
//!   ([`MediaConfig::record_queue`](crate::MediaConfig::record_queue) entries, preallocated by `sync_channel`).
//!   The message holds `Arc` clones of the room, the identity and the payload that the path already has: no
//!   allocation, no lock, no IO. A full queue drops the packet and counts it ([`MediaStats::record_dropped`]
//!   (crate::MediaStats::record_dropped)); the worker never waits.
//! * **One writer thread** (`podium-recorder`) owns every open file. Control messages (start, stop) travel on the
//!   same channel, so a stop is processed after every packet queued before it. They are sent with a blocking
//!   `send` (bounded: the writer drains the queue), like the other control calls of [`Media`](crate::Media).
//! * **Files.** A recording is a directory (`<dir>/<id>/`) holding one Ogg Opus file per *segment*: a publisher's
//!   continuous stretch of audio, `<n>-<identity hash>.opus`. Each file has one logical stream: an `OpusHead` page
//!   (channels from the first packet's TOC, pre-skip 0, 48 kHz, mapping family 0), an `OpusTags` page (vendor
//!   `podium`), then the packets, a page ended every 50 packets (about one second, so a crash loses at most that)
//!   and at the end (end-of-stream flag).
//! * **Time.** The granule position counts 48 kHz samples from the segment's start. A packet's place comes from its
//!   RTP time (str0m's extended 48 kHz timestamp) relative to the previous packet of the segment, checked against
//!   the wall clock: when they disagree by more than [`RESYNC_SAMPLES`] (a new RTP stream after a reconnect, a
//!   sender's clock jump) the wall clock wins. A gap (DTX, mute, packet loss) is filled with 20 ms Opus silence
//!   frames (`F8 FF FE`: CELT fullband, mono, which decodes to digital silence at any channel count), so the file
//!   plays with the right timing; a gap longer than [`SEGMENT_GAP`] (the speaker left the stage, stepped down or was
//!   muted a long time) closes the segment instead, and the next packet starts a new one. Each segment records its
//!   start offset from the recording's start, which the mixer uses as its delay.
//! * **Bounds.** At most [`MAX_RECORDINGS`] recordings at once and [`MAX_OPEN_SEGMENTS`] open files per recording;
//!   packets beyond them are dropped and counted. Write errors (disk full) close the segment and are reported with
//!   the recording's result; they never stop the thread.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::oneshot;

use crate::filler::opus_ticks;

/// Default of [`MediaConfig::record_queue`](crate::MediaConfig::record_queue): 4096 packets, about 80 s of one
/// speaker or 4 s of 20 speakers of backlog for the writer.
pub const DEFAULT_RECORD_QUEUE: usize = 4096;
/// A silence longer than this (48 kHz samples: 5 s) ends a segment; the next packet starts a new file.
pub const SEGMENT_GAP: u64 = 5 * 48_000;
/// RTP and wall-clock positions further apart than this (48 kHz samples: 0.5 s) re-anchor on the wall clock.
pub const RESYNC_SAMPLES: u64 = 24_000;
/// Recordings open at once.
pub const MAX_RECORDINGS: usize = 64;
/// Segments (files) open at once in one recording.
pub const MAX_OPEN_SEGMENTS: usize = 64;
/// A page is ended after this many packets.
const PACKETS_PER_PAGE: u32 = 50;
/// 20 ms of Opus silence (TOC: config 31, CELT fullband 20 ms, mono, one frame).
const SILENCE: [u8; 3] = [0xf8, 0xff, 0xfe];
const SILENCE_SAMPLES: u64 = 960;
const HZ: u64 = 48_000;

/// One written segment: a publisher's continuous stretch of audio in one Ogg Opus file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The publisher.
    pub identity: String,
    /// The file.
    pub path: PathBuf,
    /// Where it starts, in milliseconds from the recording's start.
    pub start_ms: u64,
    /// Its length in milliseconds (its last granule position).
    pub duration_ms: u64,
    /// Opus packets written (received ones, not counting inserted silence).
    pub packets: u64,
}

/// What a recording wrote, when it stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedTracks {
    /// The recording's id.
    pub id: String,
    /// Its directory.
    pub dir: PathBuf,
    /// When it started (wall clock).
    pub started_at: SystemTime,
    /// How long it ran, in milliseconds.
    pub duration_ms: u64,
    /// The segments, by start.
    pub segments: Vec<Segment>,
    /// Packets of this recording dropped by the writer (too many open files, write errors).
    pub dropped: u64,
    /// The first write error, if any (the segments listed are complete up to it).
    pub error: Option<String>,
}

/// A packet on its way to the writer.
pub(crate) struct RecPacket {
    pub(crate) room: Arc<str>,
    pub(crate) identity: Arc<str>,
    /// RTP time in 48 kHz ticks.
    pub(crate) time: u64,
    pub(crate) at: Instant,
    pub(crate) data: Arc<[u8]>,
}

pub(crate) enum RecMsg {
    Packet(RecPacket),
    Start { room: Arc<str>, id: String, dir: PathBuf },
    Stop { room: Arc<str>, reply: oneshot::Sender<Option<RecordedTracks>> },
}

/// The workers' end of the queue.
#[derive(Clone)]
pub(crate) struct RecQueue {
    tx: SyncSender<RecMsg>,
    pub(crate) dropped: Arc<AtomicU64>,
    pub(crate) queued: Arc<AtomicU64>,
}

impl RecQueue {
    /// Queues a packet without waiting: `false` (counted) when the queue is full or the writer is gone.
    pub(crate) fn push(&self, packet: RecPacket) -> bool {
        match self.tx.try_send(RecMsg::Packet(packet)) {
            Ok(()) => {
                self.queued.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// A control message: waits while the queue is full (the writer drains it).
    pub(crate) fn control(&self, msg: RecMsg) -> bool {
        self.tx.send(msg).is_ok()
    }
}

/// A bounded queue of `capacity` messages and its receiving end (for the writer thread).
pub(crate) fn queue(capacity: usize) -> (RecQueue, Receiver<RecMsg>) {
    let (tx, rx) = std::sync::mpsc::sync_channel(capacity.max(1));
    (RecQueue { tx, dropped: Arc::default(), queued: Arc::default() }, rx)
}

/// Starts the writer thread on `rx`; it ends when every sender is gone.
pub(crate) fn spawn_writer(rx: Receiver<RecMsg>) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("podium-recorder".into()).spawn(move || Writer::default().run(&rx))
}

#[derive(Default)]
struct Writer {
    rooms: HashMap<Arc<str>, Rec>,
}

struct Rec {
    id: String,
    dir: PathBuf,
    started: Instant,
    started_at: SystemTime,
    open: HashMap<Arc<str>, OggSegment>,
    done: Vec<Segment>,
    next_file: u32,
    dropped: u64,
    error: Option<String>,
}

impl Writer {
    fn run(mut self, rx: &Receiver<RecMsg>) {
        while let Ok(msg) = rx.recv() {
            self.handle(msg);
        }
        // Every sender is gone (the media plane shut down): close what is open.
        for (_, rec) in self.rooms.drain() {
            rec.finish();
        }
    }

    fn handle(&mut self, msg: RecMsg) {
        match msg {
            RecMsg::Packet(p) => self.packet(p),
            RecMsg::Start { room, id, dir } => self.start(room, id, dir),
            RecMsg::Stop { room, reply } => {
                let _ = reply.send(self.rooms.remove(&room).map(Rec::finish));
            }
        }
    }

    fn start(&mut self, room: Arc<str>, id: String, dir: PathBuf) {
        if self.rooms.len() >= MAX_RECORDINGS && !self.rooms.contains_key(&room) {
            tracing::warn!(room = %room, recording = %id, "too many recordings at once: not recording");
            return;
        }
        let now = Instant::now();
        let rec = Rec {
            id,
            dir,
            started: now,
            started_at: SystemTime::now(),
            open: HashMap::new(),
            done: Vec::new(),
            next_file: 0,
            dropped: 0,
            error: None,
        };
        // A second start for the same room replaces the first (which is closed and forgotten).
        if let Some(old) = self.rooms.insert(room, rec) {
            old.finish();
        }
    }

    fn packet(&mut self, p: RecPacket) {
        let Some(rec) = self.rooms.get_mut(&p.room) else { return };
        rec.packet(p);
    }
}

impl Rec {
    fn packet(&mut self, p: RecPacket) {
        let Some(ticks) = opus_ticks(&p.data) else {
            self.dropped += 1;
            return;
        };
        let wall = samples_between(self.started, p.at);
        // The open segment, unless the gap since it is too long (then it is closed here).
        let mut gap_closed = false;
        if let Some(seg) = self.open.get_mut(&p.identity) {
            let pos = seg.place(p.time, wall);
            if pos > seg.written.saturating_add(SEGMENT_GAP) {
                gap_closed = true;
            }
        }
        if gap_closed && let Some(seg) = self.open.remove(&p.identity) {
            self.close(seg);
        }
        if !self.open.contains_key(&p.identity) {
            // After a file error (a full disk, a lost directory) no new segment is tried: it would fail again, with
            // a file and a log line per packet. The recording reports the first error.
            if self.open.len() >= MAX_OPEN_SEGMENTS || self.error.is_some() {
                self.dropped += 1;
                return;
            }
            let name = format!("{:04}-{:016x}.opus", self.next_file, fnv(p.identity.as_bytes()));
            self.next_file += 1;
            let path = self.dir.join(name);
            let stereo = p.data.first().is_some_and(|toc| toc & 0x04 != 0);
            match OggSegment::create(&path, &p.identity, wall, p.time, stereo) {
                Ok(seg) => {
                    self.open.insert(p.identity.clone(), seg);
                }
                Err(e) => {
                    self.fail(&path, &e);
                    self.dropped += 1;
                    return;
                }
            }
        }
        let Some(seg) = self.open.get_mut(&p.identity) else { return };
        if let Err(e) = seg.write(&p.data, u64::from(ticks), p.time, wall) {
            let seg = self.open.remove(&p.identity);
            if let Some(seg) = seg {
                self.fail(&seg.path.clone(), &e);
                self.close(seg);
            }
            self.dropped += 1;
        }
    }

    /// Notes a file error: the first is logged and reported with the recording, later ones are only counted.
    fn fail(&mut self, path: &Path, e: &std::io::Error) {
        if self.error.is_none() {
            tracing::warn!(recording = %self.id, path = %path.display(), error = %e, "recording write failed");
            self.error = Some(format!("{}: {e}", path.display()));
        }
    }

    fn close(&mut self, seg: OggSegment) {
        match seg.finish() {
            Ok(s) => self.done.push(s),
            Err((s, e)) => {
                self.fail(&s.path.clone(), &e);
                self.done.push(s);
            }
        }
    }

    fn finish(mut self) -> RecordedTracks {
        let open: Vec<OggSegment> = self.open.drain().map(|(_, s)| s).collect();
        for seg in open {
            self.close(seg);
        }
        let mut segments = std::mem::take(&mut self.done);
        segments.retain(|s| s.packets > 0);
        segments.sort_by(|a, b| (a.start_ms, &a.identity).cmp(&(b.start_ms, &b.identity)));
        RecordedTracks {
            id: self.id,
            dir: self.dir,
            started_at: self.started_at,
            duration_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            segments,
            dropped: self.dropped,
            error: self.error,
        }
    }
}

/// 48 kHz samples from `from` to `to` (0 when `to` is earlier).
fn samples_between(from: Instant, to: Instant) -> u64 {
    let d = to.saturating_duration_since(from);
    u64::try_from(d.as_micros().saturating_mul(u128::from(HZ)) / 1_000_000).unwrap_or(u64::MAX)
}

/// FNV-1a, to name files without putting identities (any text) into paths.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// One open Ogg Opus file.
pub(crate) struct OggSegment {
    identity: String,
    path: PathBuf,
    writer: ogg::PacketWriter<'static, BufWriter<File>>,
    serial: u32,
    /// Where the segment starts, in samples from the recording's start.
    start: u64,
    /// Samples written so far (the granule position of the last packet).
    written: u64,
    /// RTP time of the last packet, and the segment position it was placed at.
    last_rtp: u64,
    last_pos: u64,
    in_page: u32,
    packets: u64,
    /// A packet held back, so the last one can carry the end-of-stream flag: (data, granule after it).
    held: Option<(Vec<u8>, u64)>,
}

impl OggSegment {
    /// Creates the file and writes the two header pages. `start` and `rtp` place its first packet.
    pub(crate) fn create(path: &Path, identity: &str, start: u64, rtp: u64, stereo: bool) -> std::io::Result<Self> {
        let file = File::create(path)?;
        let serial = u32::try_from(fnv(path.as_os_str().as_encoded_bytes()) & 0xffff_ffff).unwrap_or(1);
        let mut writer = ogg::PacketWriter::new(BufWriter::new(file));
        let mut head = Vec::with_capacity(19);
        head.extend_from_slice(b"OpusHead");
        head.push(1); // version
        head.push(if stereo { 2 } else { 1 });
        head.extend_from_slice(&0u16.to_le_bytes()); // pre-skip: the sender's encoder delay is unknown here
        head.extend_from_slice(&48_000u32.to_le_bytes()); // input sample rate (informational)
        head.extend_from_slice(&0i16.to_le_bytes()); // output gain
        head.push(0); // mapping family 0: mono or stereo
        writer.write_packet(head, serial, ogg::PacketWriteEndInfo::EndPage, 0)?;
        let mut tags = Vec::with_capacity(24);
        tags.extend_from_slice(b"OpusTags");
        let vendor = b"podium";
        tags.extend_from_slice(&u32::try_from(vendor.len()).unwrap_or(0).to_le_bytes());
        tags.extend_from_slice(vendor);
        tags.extend_from_slice(&0u32.to_le_bytes()); // no comments
        writer.write_packet(tags, serial, ogg::PacketWriteEndInfo::EndPage, 0)?;
        Ok(Self {
            identity: identity.to_owned(),
            path: path.to_owned(),
            writer,
            serial,
            start,
            written: 0,
            last_rtp: rtp,
            last_pos: 0,
            in_page: 0,
            packets: 0,
            held: None,
        })
    }

    /// Where a packet with RTP time `rtp` received at `wall` (samples since the recording started) belongs in the
    /// segment: after the previous packet by the RTP difference, unless that disagrees with the wall clock by more
    /// than [`RESYNC_SAMPLES`].
    fn place(&self, rtp: u64, wall: u64) -> u64 {
        let by_wall = wall.saturating_sub(self.start);
        let by_rtp = rtp.checked_sub(self.last_rtp).map(|d| self.last_pos.saturating_add(d));
        match by_rtp {
            Some(pos) if pos.abs_diff(by_wall) <= RESYNC_SAMPLES => pos,
            _ => by_wall,
        }
    }

    /// Writes one packet of `ticks` samples, after silence for any gap before it.
    pub(crate) fn write(&mut self, data: &[u8], ticks: u64, rtp: u64, wall: u64) -> std::io::Result<()> {
        let pos = if self.packets == 0 { 0 } else { self.place(rtp, wall) };
        // Fill a gap of a frame or more (half a frame of slack: timing jitter is not a gap).
        while pos >= self.written + SILENCE_SAMPLES / 2 {
            self.push(SILENCE.to_vec(), SILENCE_SAMPLES)?;
        }
        // Where it really goes: right after what is written (a packet early by less than a frame, or reordered,
        // is not allowed to overlap).
        let at = self.written;
        self.push(data.to_vec(), ticks)?;
        self.packets += 1;
        self.last_rtp = rtp;
        self.last_pos = at;
        Ok(())
    }

    fn push(&mut self, data: Vec<u8>, ticks: u64) -> std::io::Result<()> {
        if let Some((prev, granule)) = self.held.take() {
            self.in_page += 1;
            let end = if self.in_page >= PACKETS_PER_PAGE {
                self.in_page = 0;
                ogg::PacketWriteEndInfo::EndPage
            } else {
                ogg::PacketWriteEndInfo::NormalPacket
            };
            self.writer.write_packet(prev, self.serial, end, granule)?;
        }
        self.written += ticks;
        self.held = Some((data, self.written));
        Ok(())
    }

    /// Writes the last packet with the end-of-stream flag and flushes.
    pub(crate) fn finish(mut self) -> Result<Segment, (Segment, std::io::Error)> {
        let res = (|| {
            if let Some((prev, granule)) = self.held.take() {
                self.writer.write_packet(prev, self.serial, ogg::PacketWriteEndInfo::EndStream, granule)?;
            }
            self.writer.inner_mut().flush()
        })();
        let segment = Segment {
            identity: self.identity,
            path: self.path,
            start_ms: self.start * 1000 / HZ,
            duration_ms: self.written * 1000 / HZ,
            packets: self.packets,
        };
        match res {
            Ok(()) => Ok(segment),
            Err(e) => Err((segment, e)),
        }
    }
}

/// How long to wait for the writer to answer a stop (it may be working through a full queue).
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A 20 ms CELT mono frame (not valid audio beyond its TOC, which is all the writer reads).
    fn frame() -> Arc<[u8]> {
        Arc::from(&[0xf8u8, 0xff, 0xfe][..])
    }

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("podium-rec-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        let (q, rx) = queue(4);
        let room: Arc<str> = Arc::from("r");
        let who: Arc<str> = Arc::from("a");
        let p = || RecPacket { room: room.clone(), identity: who.clone(), time: 0, at: Instant::now(), data: frame() };
        let t = Instant::now();
        let accepted = (0..10).filter(|_| q.push(p())).count();
        assert!(t.elapsed() < Duration::from_secs(1), "push never waits");
        assert_eq!(accepted, 4);
        assert_eq!(q.dropped.load(Ordering::Relaxed), 6);
        assert_eq!(q.queued.load(Ordering::Relaxed), 4);
        // Drained, it takes packets again; with the writer gone, pushes are dropped (counted), not errors.
        while rx.try_recv().is_ok() {}
        assert!(q.push(p()));
        drop(rx);
        assert!(!q.push(p()));
        assert_eq!(q.dropped.load(Ordering::Relaxed), 7);
    }

    #[test]
    fn gaps_become_silence_and_long_gaps_new_segments() {
        let dir = tmp("gaps");
        let mut w = Writer::default();
        let room: Arc<str> = Arc::from("r");
        let who: Arc<str> = Arc::from("alice");
        w.start(room.clone(), "rec_t".into(), dir.clone());
        let t0 = w.rooms[&room].started;
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let send = |w: &mut Writer, ms: u64, rtp: u64| {
            w.packet(RecPacket { room: room.clone(), identity: who.clone(), time: rtp, at: at(ms), data: frame() });
        };
        // 1 s of audio from 100 ms, a 1 s gap (RTP and wall clock agree), 1 s more; then 6 s of nothing and a new
        // stream whose RTP time jumped (a reconnect).
        for i in 0..50 {
            send(&mut w, 100 + i * 20, 10_000 + i * 960);
        }
        for i in 0..50 {
            send(&mut w, 2_100 + i * 20, 10_000 + (100 + i) * 960);
        }
        for i in 0..10 {
            send(&mut w, 9_100 + i * 20, 7 + i * 960);
        }
        let (tx, mut rx) = oneshot::channel();
        w.handle(RecMsg::Stop { room: room.clone(), reply: tx });
        let rec = rx.try_recv().unwrap().unwrap();
        assert_eq!(rec.id, "rec_t");
        assert_eq!(rec.segments.len(), 2, "{:?}", rec.segments);
        let (a, b) = (&rec.segments[0], &rec.segments[1]);
        assert_eq!((a.start_ms, a.packets), (100, 100));
        assert_eq!(a.duration_ms, 3_000, "1 s + 1 s of silence + 1 s");
        assert_eq!((b.start_ms, b.packets, b.duration_ms), (9_100, 10, 200));
        for s in &rec.segments {
            check_with_ffprobe(&s.path, s.duration_ms);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A directory that cannot take files (here: under a regular file) fails the recording once: one attempt, one
    /// error reported, and the packets after it dropped and counted, not a file and a log line each.
    #[test]
    fn a_file_error_is_tried_once_and_reported() {
        let base = tmp("unwritable");
        let file = base.join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let mut w = Writer::default();
        let room: Arc<str> = Arc::from("r");
        let who: Arc<str> = Arc::from("alice");
        w.start(room.clone(), "rec_e".into(), file.join("sub"));
        let t0 = w.rooms[&room].started;
        for i in 0..50u64 {
            let at = t0 + Duration::from_millis(100 + i * 20);
            w.packet(RecPacket { room: room.clone(), identity: who.clone(), time: i * 960, at, data: frame() });
        }
        assert_eq!(w.rooms[&room].next_file, 1, "one segment file attempted");
        assert_eq!(w.rooms[&room].dropped, 50);
        let (tx, mut rx) = oneshot::channel();
        w.handle(RecMsg::Stop { room: room.clone(), reply: tx });
        let rec = rx.try_recv().unwrap().unwrap();
        assert!(rec.segments.is_empty(), "{:?}", rec.segments);
        assert!(rec.error.as_deref().is_some_and(|e| e.contains("not-a-dir")), "{:?}", rec.error);
        let _ = std::fs::remove_dir_all(&base);
    }

    /// The file parses with a third-party reader (ffprobe, when installed) as Ogg Opus of the expected length.
    fn check_with_ffprobe(path: &Path, duration_ms: u64) {
        let out = std::process::Command::new("ffprobe")
            .args(["-v", "error", "-show_entries", "stream=codec_name,channels:format=format_name,duration"])
            .args(["-of", "default=noprint_wrappers=1"])
            .arg(path)
            .output();
        let Ok(out) = out else {
            eprintln!("ffprobe not installed: skipping the third-party check");
            return;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "ffprobe failed on {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
        assert!(text.contains("codec_name=opus"), "{text}");
        assert!(text.contains("format_name=ogg"), "{text}");
        assert!(text.contains("channels=1"), "{text}");
        let secs: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("duration="))
            .and_then(|d| d.parse().ok())
            .unwrap_or_else(|| panic!("no duration: {text}"));
        let want = duration_ms as f64 / 1000.0;
        assert!((secs - want).abs() < 0.05, "ffprobe says {secs} s, the writer {want} s");
        // And it decodes to that many samples.
        let out = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(path)
            .args(["-f", "s16le", "-ac", "1", "-ar", "48000", "-"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let samples = out.stdout.len() as u64 / 2;
        assert!(samples.abs_diff(duration_ms * 48) <= 960, "{samples} samples decoded, {duration_ms} ms written");
    }
}
